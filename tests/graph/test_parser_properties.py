"""Generated pipeline bodies: the parser returns a Graph or raises a DefinitionError, never
anything else; and for valid bodies the graph's edges are exactly the data flow."""

from __future__ import annotations

import ast
import inspect
import itertools
import json
import linecache
import os
import warnings
from pathlib import Path

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from kale.errors import DefinitionError, DefinitionErrorGroup, PipelineArgumentError
from kale.graph import Constant, Graph, OutputRef, ParameterRef
from kale.graph.model import Branch, CollectedRef, ItemRef, Loop, OneOfRef
from kale.options import validate_pipeline_options
from kale.sdk import PipelineFunction
from kale.sdk import step as step_decorator
from tests.graph import sample_steps

ROOT = Path(__file__).resolve().parents[2]
NAMES = ["x", "y", "z", "n", "source", "undefined", "helper", "print", "len", "s0", "s1", "s2",
         "pair", "nothing", "_", "os", "sample_steps", "items", "flag", "i", "range"]
#: the parameters of generated pipelines: a list to loop over, a bool to branch on
FLOW_PARAMETERS = "source='db', n=1, items=[1, 2], flag=True"
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
        st.builds(lambda t, c: ast.Assign([t], c), name(ast.Store), comprehensions),
        st.builds(ast.Expr, comprehensions),
        st.just(ast.Break()),
        st.just(ast.Continue()),
    )


tests_ = st.one_of(
    expressions,
    st.builds(lambda a, op, b: ast.Compare(a, [op], [b]), expressions,
              st.sampled_from([ast.Gt(), ast.Eq(), ast.NotEq(), ast.LtE(), ast.In()]),
              expressions),
    st.builds(lambda a, b, c: ast.Compare(a, [ast.Lt(), ast.Lt()], [b, c]), expressions,
              expressions, expressions),
    st.builds(lambda op, values: ast.BoolOp(op, values), st.sampled_from([ast.And(), ast.Or()]),
              st.lists(expressions, min_size=2, max_size=3)),
    st.builds(lambda v: ast.UnaryOp(ast.Not(), v), expressions),
    st.builds(lambda t, v: ast.NamedExpr(ast.Name(t.id, ast.Store()), v), name(), expressions),
)
iterables = st.one_of(
    expressions,
    st.builds(lambda n: ast.Call(ast.Name("range", ast.Load()), [ast.Constant(n)], []),
              st.integers(-1, 4)),
    st.builds(lambda e: ast.List(e, ast.Load()), st.lists(literals, max_size=3)),
)
loop_targets = st.one_of(name(ast.Store), st.builds(
    lambda e: ast.Tuple(e, ast.Store()), st.lists(name(ast.Store), min_size=2, max_size=2)))


def comprehension(element, target, iterable, ifs, second):
    generators = [ast.comprehension(target, iterable, ifs, 0)]
    if second:
        generators.append(ast.comprehension(ast.Name("k", ast.Store()), iterable, [], 0))
    return ast.ListComp(element, generators)


comprehensions = st.builds(comprehension, expressions, loop_targets, iterables,
                           st.lists(tests_, max_size=1), st.booleans())


def blocks(body):
    orelse = st.one_of(st.just([]), body, st.builds(
        lambda test, b, rest: [ast.If(test, b, rest)], tests_, body, st.just([]) | body))
    return st.one_of(
        st.builds(lambda test, b, e: ast.If(test, b, e), tests_, body, orelse),
        st.builds(lambda t, it, b, e: ast.For(t, it, b, e), loop_targets, iterables, body,
                  st.just([]) | body),
        st.builds(lambda test, b: ast.While(test, b, []), expressions, body),
        st.builds(lambda b: ast.For(ast.Name("i", ast.Store()), ast.Name("items", ast.Load()),
                                    b, []), body),
    )


statements = st.recursive(simple_statements(),
                          lambda inner: blocks(st.lists(inner, min_size=1, max_size=2)),
                          max_leaves=4)


def build(body: list[ast.stmt], parameters: str = "source='db', n=1",
          extra: dict[str, object] | None = None) -> PipelineFunction:
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
                 "sample_steps": sample_steps, **(extra or {})}
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
    pipeline = build(body, FLOW_PARAMETERS)
    try:
        graph = parse_from_root(pipeline)
    except DefinitionError as error:
        assert str(error).startswith("error: ")
        assert located(error), str(error)
        return
    assert isinstance(graph, Graph)
    assert graph.user_steps
    check_graph(graph, body)


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
                args.append(ast.Constant(draw(st.integers(-2**53, 2**53))))  # JSON numbers
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


# -- awkward values: huge numbers, deep nesting, what JSON has not (issue 17) -----------------


def nest(depth: int, kind: str, leaf: object) -> object:
    value = leaf
    for _ in range(depth):
        value = {"k": value} if kind == "dict" else (value,) if kind == "tuple" else [value]
    return value


# Powers of ten by their exponent: hypothesis shows a strategy's elements with repr(), which
# refuses ints past 4300 digits.
huge = st.builds(lambda k, sign: sign * 10**k, st.sampled_from([15, 16, 300, 308, 309, 400,
                                                                 4300, 5000]),
                 st.sampled_from([1, -1]))
scalars = st.one_of(st.integers(), huge, st.floats(),
                    st.text(max_size=3), st.booleans(), st.none())
odd = st.one_of(st.frozensets(st.integers(), max_size=2), st.builds(object),
                st.binary(max_size=2), st.complex_numbers(max_magnitude=2))
awkward = st.recursive(scalars | odd, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.tuples(inner),
    st.dictionaries(st.text(max_size=2) | st.integers(0, 3), inner, max_size=2)), max_leaves=6)
values = awkward | st.builds(nest, st.integers(1, 5000), st.sampled_from(["list", "tuple",
                                                                           "dict"]), awkward)
ANNOTATIONS = [None, "int", "float", "str", "bool", "list", "dict"]


@st.composite
def signatures(draw):
    """Pipeline parameters with awkward defaults (globals of the generated module), some
    annotated, some keyword-only."""
    count = draw(st.integers(1, 3))
    keyword_only = draw(st.integers(0, count))
    parts, extra = [], {}
    for index in range(count):
        if index == keyword_only:
            parts.append("*")
        extra[f"V{index}"] = draw(values)
        annotation = draw(st.sampled_from(ANNOTATIONS))
        parts.append(f"p{index}" + (f": {annotation}" if annotation else "") + f" = V{index}")
    return ", ".join(parts), extra


def deep_literals():
    """Literals the body may write, nested as deep as Python compiles brackets (200)."""
    leaf = st.one_of(st.sampled_from([15, 16, 300, 309, 4000]).map(lambda k: 10**k),
                     st.sampled_from([float("inf"), float("nan"), 1e308]), st.integers(-3, 3))
    return st.builds(lambda depth, value, kind: nest_ast(depth, kind, value),
                     st.integers(0, 190), leaf, st.sampled_from(["list", "tuple", "dict",
                                                                 "minus"]))


def nest_ast(depth: int, kind: str, value: object) -> ast.expr:
    node: ast.expr = ast.Constant(value)
    for _ in range(depth):
        node = {"list": lambda n: ast.List([n], ast.Load()),
                "tuple": lambda n: ast.Tuple([n], ast.Load()),
                "dict": lambda n: ast.Dict([ast.Constant("k")], [n]),
                "minus": lambda n: ast.UnaryOp(ast.USub(), n)}[kind](node)
    return node


def step_with_default(default: object):
    def odd(a, b=default):
        return a

    return step_decorator(odd)


def located(error: DefinitionError) -> bool:
    errors = error.errors if isinstance(error, DefinitionErrorGroup) else [error]
    return all(each.location is not None for each in errors)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(signatures(), values,
       st.lists(st.one_of(
           statements,
           st.builds(lambda v: ast.Expr(ast.Call(ast.Name("s1", ast.Load()), [v], [])),
                     deep_literals()),
           st.builds(lambda n: ast.Expr(ast.Call(ast.Name("odd", ast.Load()),
                                                 [ast.Constant(1)] * n, [])), st.integers(0, 4)),
       ), max_size=4))
def test_awkward_signatures_and_values_give_a_graph_or_a_located_definition_error(
        signature, step_default, body):
    parameters, extra = signature
    pipeline = build(body, parameters, {**extra, "odd": step_with_default(step_default)})
    try:
        graph = parse_from_root(pipeline)
    except DefinitionError as error:
        assert str(error).startswith("error: ")
        assert located(error), str(error)
        return
    for parameter in graph.parameters:  # what is kept, Kubeflow carries
        json.dumps(parameter.default, allow_nan=False)


CALLED = None


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(["n", "rate", "flag", "text", "items", "config"]), values | st.text())
def test_any_call_value_is_bound_as_json_or_refused_with_a_fix(name, value):
    global CALLED
    if CALLED is None:
        CALLED = build([ast.Expr(ast.Call(ast.Name("s0", ast.Load()), [], []))],
                       "n=1, rate=0.5, flag=False, text='', items=[1], config={'a': 1}")
    try:
        bound = CALLED.bind_arguments(**{name: value})
    except PipelineArgumentError as error:
        assert error.message and error.fix
        str(error)
        return
    json.dumps(bound, allow_nan=False)


# -- control flow (issue 11): graphs keep to the scope rules -----------------------------------


def prefix(shorter: tuple, longer: tuple) -> bool:
    return longer[: len(shorter)] == shorter


def check_reference(graph: Graph, step, source) -> None:
    """A value a step reads is visible where the step is: an output of the same iteration
    (same or enclosing loop) outside any branch the step is not in, the variable of a loop
    around it, results collected from a loop it is not in, a one-of after its `if`."""
    loops = {loop.name: loop for loop in graph.loops}
    if isinstance(source, ParameterRef):
        graph.parameter(source.name)
    elif isinstance(source, OutputRef):
        producer = graph.step(source.step)
        assert producer.condition is None and source.variable in producer.outputs
        assert source.index is None or producer.unpacks
        assert prefix(producer.scopes, step.scopes), (producer.scopes, step.scopes)
    elif isinstance(source, ItemRef):
        loop = loops[source.loop]
        assert loop in step.loops
        assert (source.variable, source.items) == (loop.variable, loop.items)
    elif isinstance(source, CollectedRef):
        loop = loops[source.loop]
        producer = graph.step(source.step)
        assert loop.collects and producer.scopes == (*loop.scopes, loop)
        assert prefix(loop.scopes, step.scopes) and loop not in step.scopes
    elif isinstance(source, OneOfRef):
        condition = graph.step(source.condition)
        info = condition.condition
        assert info is not None and info.has_else and len(source.options) == info.branches
        for index, option in enumerate(source.options):
            check_reference(graph, graph.step(option.step), option)
            assert graph.step(option.step).scopes == (*condition.scopes,
                                                      Branch(condition.name, index))
        assert prefix(condition.scopes, step.scopes)
        assert not any(isinstance(scope, Branch) and scope.condition == condition.name
                       for scope in step.scopes)
    else:
        assert isinstance(source, Constant)


def check_graph(graph: Graph, body: list[ast.stmt]) -> None:
    """What every graph holds: upstream steps exist and come first (body order is
    topological), scopes are consistent, every reference keeps to the scope rules, condition
    functions compile with their operands as parameters; and nothing of the body is dropped."""
    order = {step.name: index for index, step in enumerate(graph.steps)}
    assert len(order) == len(graph.steps)
    loops = {loop.name: loop for loop in graph.loops}
    for index, step in enumerate(graph.steps):
        for parent in step.upstream:
            assert order[parent] < index, (parent, step.name)
        for depth, scope in enumerate(step.scopes):
            if isinstance(scope, Loop):
                assert loops[scope.name] == scope and scope.scopes == step.scopes[:depth]
            else:
                condition = graph.step(scope.condition)
                assert condition.condition is not None and order[condition.name] < index
                assert 0 <= scope.index < condition.condition.branches
                assert condition.scopes == step.scopes[:depth]
        for source in step.references():
            check_reference(graph, step, source)
        if step.condition is not None:
            assert step.outputs == () and step.condition.tests
            namespace: dict = {}
            exec(compile("\n" * (step.function.line - 1) + step.function.text,
                         step.function.filename, "exec"), namespace)
            function = namespace[step.function.function_name]
            assert list(inspect.signature(function).parameters) == [
                argument.name for argument in step.arguments]
    for loop in graph.loops:
        if isinstance(loop.items, OutputRef):
            producer = graph.step(loop.items.step)
            assert loop.items.variable in producer.item_outputs
            assert prefix(producer.scopes, loop.scopes)
        elif isinstance(loop.items, ParameterRef):
            assert graph.parameter(loop.items.name).type == "list"
        else:
            assert isinstance(loop.items.value, list)
    # nothing dropped: a step per step call, a condition per `if` chain, a loop per `for` or
    # comprehension
    nodes = [node for statement in body for node in ast.walk(statement)]
    calls = sum(isinstance(node, ast.Call) and (
        (isinstance(node.func, ast.Name) and node.func.id in STEPS) or
        (isinstance(node.func, ast.Attribute) and node.func.attr in STEPS)) for node in nodes)
    elifs = sum(isinstance(node, ast.If) and len(node.orelse) == 1 and
                isinstance(node.orelse[0], ast.If) for node in nodes)
    ifs = sum(isinstance(node, ast.If) for node in nodes) - elifs
    # `x = a() if t else b()` is an `if` too, and a nested one in its `else` an `elif`
    ifs += sum(isinstance(node, ast.IfExp) for node in nodes) - sum(
        isinstance(node, ast.IfExp) and isinstance(node.orelse, ast.IfExp) for node in nodes)
    assert len(graph.user_steps) == calls
    assert len(graph.steps) - len(graph.user_steps) == ifs
    assert len(graph.loops) == sum(isinstance(node, (ast.For, ast.ListComp)) for node in nodes)


def _name(identifier: str) -> ast.Name:
    return ast.Name(identifier, ast.Load())


@st.composite
def flow_bodies(draw, bound=None, depth=0):
    """Bodies of step calls, `if` chains, loops and comprehensions that use names the way
    the language allows most of the time, and sometimes not (a name bound in a branch or a
    loop, iterating a loop variable...): each gives a Graph or a definition error."""
    bound = list(bound or ["source", "n", "items", "flag"])
    inner: list[str] = []  # names bound in blocks: using them after is (mostly) an error
    body: list[ast.stmt] = []

    def value():
        names = bound + (inner if draw(st.integers(0, 9)) == 0 else [])
        return draw(st.sampled_from(names).map(_name) | literals)

    def call():
        step = draw(st.sampled_from(sorted(STEPS)))
        return ast.Call(_name(step), [value() for _ in range(STEPS[step])], [])

    def test():
        kind = draw(st.integers(0, 4))
        if kind == 0:
            return value()
        if kind == 1:
            return ast.UnaryOp(ast.Not(), value())
        if kind == 2:
            return ast.BoolOp(draw(st.sampled_from([ast.And(), ast.Or()])), [value(), value()])
        if kind == 3:
            return ast.Compare(value(), [ast.Lt(), ast.LtE()], [value(), value()])
        return ast.Compare(value(), [draw(st.sampled_from([ast.Gt(), ast.Eq(), ast.NotEq()]))],
                           [value()])

    def items():
        kind = draw(st.integers(0, 3))
        if kind == 0:
            return ast.Call(_name("range"), [ast.Constant(draw(st.integers(0, 3)))], [])
        if kind == 1:
            return ast.List(draw(st.lists(literals, max_size=3)), ast.Load())
        if draw(st.integers(0, 9)) == 0:  # now and then what a loop cannot iterate
            return _name(draw(st.sampled_from(bound + inner)))
        outputs = [name for name in bound if name not in ("source", "n", "flag", "i", "j")]
        return _name(draw(st.sampled_from(outputs)))

    for _ in range(draw(st.integers(1, 3 if depth else 5))):
        kind = draw(st.sampled_from(["call", "bind", "bind", "unpack", "choose"] +
                                    (["if", "if", "for", "comp"] if depth < 3 else [])))
        if kind == "call":
            body.append(ast.Expr(call()))
        elif kind in ("bind", "unpack"):
            target = draw(st.sampled_from(["x", "y", "z"]))
            if kind == "unpack":
                second = draw(st.sampled_from(["a", "b"]))
                body.append(ast.Assign([ast.Tuple([ast.Name(target, ast.Store()),
                                                   ast.Name(second, ast.Store())], ast.Store())],
                                       ast.Call(_name("pair"), [value()], [])))
                bound.append(second)
            else:
                body.append(ast.Assign([ast.Name(target, ast.Store())], call()))
            bound.append(target)
        elif kind == "choose":  # o = a() if t else b() if u else c()
            choice: ast.expr = call()
            for _ in range(draw(st.integers(1, 2))):
                choice = ast.IfExp(test(), call(), choice)
            body.append(ast.Assign([ast.Name("o", ast.Store())], choice))
            bound.append("o")
        elif kind == "if":
            count = draw(st.integers(1, 3))
            has_else = draw(st.booleans())
            joined = draw(st.booleans())  # every branch ends binding `o`
            branches = []
            for _ in range(count + has_else):
                branch = draw(flow_bodies(bound, depth + 1))
                if joined:
                    branch.append(ast.Assign([ast.Name("o", ast.Store())], call()))
                branches.append(branch)
            orelse = branches[count] if has_else else []
            for index in reversed(range(count)):
                orelse = [ast.If(test(), branches[index], orelse)]
            body.extend(orelse)
            (bound if joined and has_else else inner).append("o")
            if joined and (has_else or draw(st.integers(0, 3)) == 0) and draw(st.booleans()):
                body.append(ast.Expr(ast.Call(_name("s1"), [_name("o")], [])))
        elif kind == "for":
            variable = draw(st.sampled_from(["i", "j"]))
            loop_body = draw(flow_bodies([*bound, variable], depth + 1))
            body.append(ast.For(ast.Name(variable, ast.Store()), items(), loop_body, []))
            inner.append(variable)
        else:
            variable = draw(st.sampled_from(["i", "j"]))
            element = ast.Call(_name(draw(st.sampled_from(["s1", "s2"]))),
                               [draw(st.sampled_from([variable, *bound]).map(_name))], [])
            body.append(ast.Assign([ast.Name("c", ast.Store())], ast.ListComp(
                element, [ast.comprehension(ast.Name(variable, ast.Store()), items(), [], 0)])))
            bound.append("c")
            if draw(st.booleans()):
                body.append(ast.Expr(ast.Call(_name("s1"), [_name("c")], [])))
    return body


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(flow_bodies())
def test_control_flow_bodies_give_graphs_that_keep_the_scope_rules(body):
    pipeline = build(body, FLOW_PARAMETERS)
    try:
        graph = parse_from_root(pipeline)
    except DefinitionError as error:
        assert str(error).startswith("error: ")
        assert located(error), str(error)
        return
    check_graph(graph, body)
