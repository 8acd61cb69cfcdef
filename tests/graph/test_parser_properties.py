"""Generated pipeline bodies: the parser returns a Graph or raises a DefinitionError, never
anything else; and for valid bodies the graph's edges are exactly the data flow."""

from __future__ import annotations

import ast
import itertools
import linecache
import os
import warnings
from pathlib import Path

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from kale.errors import DefinitionError
from kale.graph import Graph, OutputRef, ParameterRef
from kale.options import validate_pipeline_options
from kale.sdk import PipelineFunction
from tests.graph import sample_steps

ROOT = Path(__file__).resolve().parents[2]
NAMES = ["x", "y", "z", "n", "source", "undefined", "helper", "print", "len", "s0", "s1", "s2",
         "pair", "nothing", "_", "os", "sample_steps"]
STEPS = {"s0": 0, "s1": 1, "s2": 2, "pair": 1, "nothing": 1}
_counter = itertools.count()


def name(ctx=ast.Load):
    return st.sampled_from(NAMES).map(lambda n: ast.Name(n, ctx()))


literals = st.one_of(
    st.integers(-5, 5), st.text(max_size=3), st.none(), st.booleans(), st.floats(allow_nan=False)
).map(ast.Constant)


def extend(children):
    return st.one_of(
        st.builds(lambda f, a, k: ast.Call(f, a, k), name() | st.builds(
            lambda v: ast.Attribute(v, "fn", ast.Load()), name()),
            st.lists(children, max_size=3),
            st.lists(st.builds(lambda k, v: ast.keyword(k, v), st.sampled_from(["a", "b", "c"]),
                               children), max_size=2, unique_by=lambda k: k.arg)),
        st.builds(lambda a, b: ast.BinOp(a, ast.Mult(), b), children, children),
        st.builds(lambda v: ast.Attribute(v, "shape", ast.Load()), children),
        st.builds(lambda v: ast.Subscript(v, ast.Constant(0), ast.Load()), children),
        st.builds(lambda e: ast.List(e, ast.Load()), st.lists(children, max_size=3)),
        st.builds(lambda e: ast.Tuple(e, ast.Load()), st.lists(children, max_size=3)),
        st.builds(lambda v: ast.Starred(v, ast.Load()), children),
        st.builds(lambda v: ast.Lambda(ast.arguments([], [], None, [], [], None, []), v),
                  children),
    )


expressions = st.recursive(name() | literals, extend, max_leaves=6)
targets = st.one_of(
    name(ast.Store),
    st.builds(lambda e: ast.Tuple(e, ast.Store()), st.lists(name(ast.Store), min_size=1,
                                                            max_size=3)),
    st.builds(lambda v: ast.Starred(v, ast.Store()), name(ast.Store)),
    st.builds(lambda v: ast.Attribute(v, "attr", ast.Store()), name()),
)


def simple_statements():
    return st.one_of(
        st.builds(ast.Expr, expressions),
        st.builds(lambda t, v: ast.Assign([t], v), targets, expressions),
        st.builds(lambda t, v: ast.AugAssign(t, ast.Add(), v), name(ast.Store), expressions),
        st.builds(ast.Return, expressions | st.none()),
        st.just(ast.Pass()),
        st.just(ast.Import([ast.alias("json")])),
        st.builds(lambda v: ast.Delete([ast.Name(v.id, ast.Del())]), name()),
        st.builds(lambda e: ast.Assert(e, None), expressions),
        st.builds(lambda e: ast.Expr(ast.Await(e)), expressions),
    )


def blocks(body):
    return st.one_of(
        st.builds(lambda test, b: ast.If(test, b, []), expressions, body),
        st.builds(lambda t, it, b: ast.For(t, it, b, []), name(ast.Store), expressions, body),
        st.builds(lambda test, b: ast.While(test, b, []), expressions, body),
    )


statements = st.recursive(simple_statements(),
                          lambda inner: blocks(st.lists(inner, min_size=1, max_size=2)),
                          max_leaves=4)


def build(body: list[ast.stmt], parameters: str = "source='db', n=1") -> PipelineFunction:
    module = ast.Module(body=body, type_ignores=[])
    ast.fix_missing_locations(module)
    text = f"def generated({parameters}):\n"
    for line in ast.unparse(module).splitlines() or ["pass"]:
        text += "    " + line + "\n"
    filename = f"<generated-pipeline-{next(_counter)}>"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SyntaxWarning)  # e.g. `1[0]`, generated on purpose
            code = compile(text, filename, "exec")
    except SyntaxError:
        assume(False)
    lines = text.splitlines(keepends=True)
    linecache.cache[filename] = (len(text), None, lines, filename)
    namespace = {"__name__": "generated", **vars(sample_steps), "os": os,
                 "sample_steps": sample_steps}
    exec(code, namespace)
    return PipelineFunction(namespace["generated"], validate_pipeline_options("generated", {}),
                            None)


def parse_from_root(pipeline: PipelineFunction) -> Graph:
    here = os.getcwd()
    os.chdir(ROOT)  # a pipeline without a file has the working directory as its project root
    try:
        return pipeline.graph
    finally:
        os.chdir(here)


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(statements, max_size=6))
def test_any_body_gives_a_graph_or_a_definition_error(body):
    pipeline = build(body)
    try:
        graph = parse_from_root(pipeline)
    except DefinitionError as error:
        assert str(error).startswith("error: ")
        return
    assert isinstance(graph, Graph)
    assert graph.steps


@st.composite
def valid_bodies(draw):
    """Bodies made only of allowed statements, with the data flow they should produce."""
    bound: dict[str, object] = {"source": ParameterRef("source"), "n": ParameterRef("n")}
    body, expected = [], []
    counts: dict[str, int] = {}
    for _ in range(draw(st.integers(1, 8))):
        step = draw(st.sampled_from(sorted(STEPS)))
        args, refs = [], []
        for _ in range(STEPS[step]):
            choice = draw(st.sampled_from(sorted(bound)) | st.just("<literal>"))
            if choice == "<literal>":
                args.append(ast.Constant(draw(st.integers())))
                refs.append(None)
            else:
                args.append(ast.Name(choice, ast.Load()))
                refs.append(bound[choice])
        call = ast.Call(ast.Name(step, ast.Load()), args, [])
        counts[step] = counts.get(step, 0) + 1
        unique = step.replace("_", "-") + ("" if counts[step] == 1 else f"-{counts[step]}")
        shape = draw(st.sampled_from(["bare", "one", "two"] if step == "pair" else ["bare",
                                                                                    "one"]))
        if shape == "bare":
            body.append(ast.Expr(call))
        elif shape == "one":
            target = draw(st.sampled_from(["x", "y", "z", "source"]))
            body.append(ast.Assign([ast.Name(target, ast.Store())], call))
            bound[target] = OutputRef(unique, target, None)
        else:
            first, second = draw(st.permutations(["x", "y", "z"]))[:2]
            body.append(ast.Assign([ast.Tuple([ast.Name(first, ast.Store()),
                                               ast.Name(second, ast.Store())], ast.Store())], call))
            bound[first] = OutputRef(unique, first, 0)
            bound[second] = OutputRef(unique, second, 1)
        expected.append((unique, refs))
    return body, expected


@settings(max_examples=200, deadline=None)
@given(valid_bodies())
def test_valid_bodies_give_exactly_their_data_flow(drawn):
    body, expected = drawn
    graph = parse_from_root(build(body))
    assert [step.name for step in graph.steps] == [name for name, _ in expected]
    for step, (_, refs) in zip(graph.steps, expected, strict=True):
        sources = [argument.source for argument in step.arguments]
        for source, ref in zip(sources, refs, strict=True):
            assert source == ref if ref is not None else source.__class__.__name__ == "Constant"
        assert step.upstream == {ref.step for ref in refs if isinstance(ref, OutputRef)}
    order = {step.name: index for index, step in enumerate(graph.steps)}
    for edge in graph.edges:
        assert order[edge.source] < order[edge.target]
