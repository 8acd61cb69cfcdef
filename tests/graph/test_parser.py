"""The pipeline language: what a @pipeline body may hold, and the errors for everything else."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from kale.errors import (
    DefinitionErrorGroup,
    PipelineDefinitionError,
)
from kale.graph import Constant, OutputRef, ParameterRef
from tests.conftest import line_of


def only(error):
    """The single error, or the first of a group."""
    return error.errors[0] if isinstance(error, DefinitionErrorGroup) else error


def assert_points_at(error, marker):
    """The error points at the last line of its file that holds ``marker``."""
    location = only(error).location
    assert location is not None
    lines = Path(location.file).read_text().splitlines()
    assert marker in lines[location.line - 1]
    assert not any(marker in line for line in lines[location.line:])


# -- what is allowed --------------------------------------------------------------------------


def test_the_three_statement_shapes_and_data_edges(project):
    graph = project.graph('''
        @pipeline(name="shapes")
        def p(source="db", iters=10):
            """A docstring is allowed."""
            data = load(source)
            first, rest = split(data)
            model = train(rest, iterations=iters)
            report(model)
    ''')
    assert [s.name for s in graph.steps] == ["load", "split", "train", "report"]
    train = graph.step("train")
    assert {a.name: a.source for a in train.arguments} == {
        "data": OutputRef("split", "rest", 1),
        "iterations": ParameterRef("iters"),
    }
    assert graph.step("load").arguments[0].source == ParameterRef("source")
    assert graph.step("split").outputs == ("first", "rest")
    assert graph.step("split").unpacks
    assert graph.step("report").outputs == ()
    assert [(e.source, e.target, e.variable, e.argument) for e in graph.edges] == [
        ("load", "split", "data", "data"),
        ("split", "train", "rest", "data"),
        ("train", "report", "model", "model"),
    ]
    assert graph.docstring == "A docstring is allowed."
    assert graph.roots == ("load",)
    assert graph.leaves == ("report",)


def test_literal_constants_of_every_kind(project):
    graph = project.graph('''
        @pipeline
        def p():
            data = load("files")
            clean(data, threshold=-0.25)
            train(data, [1, 2, 3], {"a": (1, 2), "b": None})
    ''')
    train = graph.step("train")
    values = {a.name: a.source for a in train.arguments}
    assert values["iterations"] == Constant([1, 2, 3])
    assert values["rate"] == Constant({"a": (1, 2), "b": None})
    assert graph.step("clean").arguments[1].source == Constant(-0.25)


def test_independent_calls_have_no_edge_and_share_a_level(project):
    graph = project.graph('''
        @pipeline
        def diamond():
            data = load()
            a = train(data)
            b = clean(data)
            report(a, b)
    ''')
    assert graph.levels == (("load",), ("train", "clean"), ("report",))
    assert graph.upstream("report") == {"train", "clean"}
    assert graph.downstream("load") == {"train", "clean"}
    assert graph.descendants("load") == {"train", "clean", "report"}


def test_the_same_step_twice_gets_unique_names(project):
    graph = project.graph('''
        @step(name="train-2")
        def other(x):
            return x

        @pipeline
        def p():
            data = load()
            a = train(data)
            b = train(data, 20)
            c = other(data)
            d = train(data, 30)
    ''')
    assert [s.name for s in graph.steps] == ["load", "train", "train-2", "train-2-2", "train-3"]
    assert graph.step("train-3").display_name == "train"


def test_rebinding_reads_the_latest_binding_and_never_makes_a_cycle(project):
    graph = project.graph('''
        @pipeline
        def p(source="x"):
            data = load(source)
            data = clean(data)
            data = clean(data)
            source = load(source)
            report(data, source)
    ''')
    assert graph.step("clean").arguments[0].source == OutputRef("load", "data")
    assert graph.step("clean-2").arguments[0].source == OutputRef("clean", "data")
    assert graph.step("load-2").arguments[0].source == ParameterRef("source")
    assert graph.upstream("report") == {"clean-2", "load-2"}


def test_steps_from_modules_of_the_project_and_module_attributes(project):
    project.write("mysteps/__init__.py", "")
    project.write("mysteps/train.py", '''
        from kale.sdk import step

        @step(name="fit")
        def fit(x):
            return x
    ''')
    graph = project.graph('''
        import mysteps.train
        from mysteps.train import fit

        @pipeline
        def p():
            data = load()
            a = fit(data)
            b = mysteps.train.fit(data)
    ''')
    assert [s.name for s in graph.steps] == ["load", "fit", "fit-2"]
    assert graph.step("fit").function.module == "mysteps.train"


def test_pass_and_annotated_assignment(project):
    graph = project.graph('''
        @pipeline
        def p():
            data: list = load()
            pass
    ''')
    assert graph.step("load").outputs == ("data",)


def test_step_options_merge_with_steps_defaults(project):
    graph = project.graph('''
        @step(retry_count=1, timeout="1m")
        def fit(x):
            return x

        @pipeline(steps_defaults={"timeout": 600, "retry_count": 3, "retry_interval": "5s"})
        def p():
            data = load()
            fit(data)
    ''')
    assert graph.step("load").options.timeout == 600
    assert graph.step("load").options.retry_count == 3
    fit = graph.step("fit").options
    assert (fit.timeout, fit.retry_count, fit.retry_interval) == (60, 1, 5)


def test_step_source_is_kept_without_decorators(project):
    graph = project.graph('''
        @pipeline
        def p():
            load()
    ''')
    source = graph.step("load").function
    assert source.text.startswith('def load(source="db"):')
    assert source.function_name == "load"
    assert Path(source.filename).parent == project.root


def test_a_pipeline_defined_in_a_function_can_use_steps_from_its_scope(project):
    module = project.load('''
        def build():
            @step
            def local_step():
                return 1

            @pipeline
            def inner():
                local_step()

            return inner
    ''')
    graph = module.build().graph
    assert [s.name for s in graph.steps] == ["local-step"]


# -- parameters -------------------------------------------------------------------------------


def test_parameters_take_their_type_from_their_default(project):
    graph = project.graph('''
        @pipeline
        def p(s="x", i=1, f=0.5, b=True, items=[1, 2], config={"a": 1}, pair=(1, 2),
              *, late: float = 3):
            load()
    ''')
    assert [(p.name, p.type, p.default) for p in graph.parameters] == [
        ("s", "str", "x"), ("i", "int", 1), ("f", "float", 0.5), ("b", "bool", True),
        ("items", "list", [1, 2]), ("config", "dict", {"a": 1}), ("pair", "list", [1, 2]),
        ("late", "float", 3),
    ]


def test_a_parameter_without_default_is_named(project):
    error = project.error('''
        @pipeline
        def p(ts, iters=10):
            load(ts)
    ''', PipelineDefinitionError)
    assert "pipeline parameter `ts` has no default value" in str(error)
    assert_points_at(error, "def p(ts, iters=10)")


@pytest.mark.parametrize(
    ("signature", "fragment"),
    [
        ("x=None", "defaults to None"),
        ("x=object()", "Kubeflow parameters are"),
        ("x={1, 2}", "a set"),
        ("x=[object()]", "Kubeflow parameters are"),
        ("x: int = 'a'", "annotated `int`"),
        ("*args", "cannot be collected with `*args`"),
        ("**kwargs", "cannot be collected with `**kwargs`"),
        ("x=1, /", "positional-only"),
    ],
)
def test_bad_parameters(project, signature, fragment):
    error = project.error(f'''
        @pipeline
        def p({signature}):
            load()
    ''', PipelineDefinitionError)
    assert fragment in str(error)


# -- what is rejected, each with location and fix ---------------------------------------------


@pytest.mark.parametrize(
    ("statement", "fragment", "fix"),
    [
        ("y = x * 2", "`y = x * 2` is not a step call", "compute the value inside a step"),
        ("y = x", "`y = x` is not a step call", "a pipeline body can only call steps"),
        ("x += 1", "is not a step call", "compute the new value inside a step"),
        ("print(x)", "`print` is a built-in function, not a step", "call `print` inside a step"),
        ("helper(x)", "`helper` is not a step", "decorate `helper` with @step"),
        ("x.append(1)", "calls a method of", "call the method inside the step"),
        ("x.shape", "is not a step call", "a pipeline body can only call steps"),
        ("clean(load())", "nested call `load()`", "give each step call its own line"),
        ("clean(x.shape)", "reads an attribute of `x`", "read `.shape` inside the step"),
        ("clean(x[0])", "takes an item of `x`", "unpack them"),
        ("clean(x * 2)", "`x * 2` is an expression", "compute this inside a step"),
        ("clean([x, x])", "collects pipeline values into a container", "its own argument"),
        ("clean(*[x])", "unpacks values into a step call", "its own argument"),
        ("clean(**{'data': x})", "unpacks a dict into a step call", "keyword argument"),
        ("clean(nothing)", "`nothing` is not defined", "make it a pipeline parameter"),
        ("clean(THRESHOLD)", "`THRESHOLD` is defined outside the pipeline",
         "THRESHOLD=THRESHOLD"),
        ("a, *b = split(x)", "starred target `*b` is not supported", "its own name"),
        ("a, a = split(x)", "`a` appears twice", "its own name"),
        ("(a, b), c = split(x)", "cannot receive a step output", "plain names"),
        ("x.attr = clean(x)", "cannot be stored in an attribute", "plain name"),
        ("y = z = clean(x)", "chained assignment", "one name"),
        ("while x:\n        clean(x)", "`while` statements are not supported", "inside a step"),
        ("with x:\n        clean(x)", "`with` statements are not supported", "inside the step"),
        ("try:\n        clean(x)\n    except Exception:\n        pass",
         "`try` statements are not supported", "catch the error inside the step"),
        ("return x", "cannot `return`", "remove the `return`"),
        ("import os", "imports are not allowed", "into the steps"),
        ("def f():\n        pass", "a function cannot be defined", "module level"),
        ("'text'", "a string in the middle", "comment"),
        ("del x", "`del x` is not allowed", "only call steps"),
        ("y: int", "`y: int` declares a variable without a step call", "only call steps"),
        ("x = Model()", "`Model` is a class, not a step", "inside a step"),
        ("THRESHOLD()", "`THRESHOLD` is a float, not a step", "only call steps"),
        ("source()", "is pipeline parameter `source`, not a step", "@step functions only"),
        ("x()", "output of step `load`", "@step functions only"),
        ("undefined_step(x)", "`undefined_step` is not defined", "import or define"),
        ("os.path.join(x)", "`os.path.join` is not a step", "call it inside a step"),
        ("x = Model().fit(x)", "is not a step", "by its name"),
        ("os.environ.get(x)", "calls a method, not a step", "inside a step"),
        ("os.nothing(x)", "`os.nothing` does not exist", "spelling"),
        ("other()", "`other` is a pipeline", "call its steps"),
        ("(lambda: 1)()", "is not a step", "by its name"),
        ("clean(data=x, data2=x)", "cannot be called like this", "its signature is clean("),
        ("train()", "missing a required argument: 'data'", "its signature is"),
        ("a, b = clean(x)", "", ""),
    ],
)
def test_rejected_statements(project, statement, fragment, fix):
    text = textwrap.dedent('''
        import os

        THRESHOLD = 0.5

        class Model:
            pass

        @pipeline
        def other():
            load()

        @pipeline
        def p(source="db"):
            x = load(source)
    ''') + "    " + statement + "\n"
    module = project.load(text)
    if not fragment:  # unpacking a step whose return shape is not literal is allowed
        module.p.graph
        return
    with pytest.raises(PipelineDefinitionError) as caught:
        module.p.graph
    error = only(caught.value)
    message = str(error)
    assert fragment in error.message, message
    assert fix in (error.fix or ""), message
    first_line = statement.splitlines()[0]
    assert_points_at(error, first_line)
    assert error.location.source_line.strip().startswith(first_line.strip()[:10])


def test_unpacking_checks_the_step_return_shape(project):
    error = project.error('''
        @pipeline
        def p():
            x = load()
            a, b, c = split(x)
    ''', PipelineDefinitionError)
    assert "step `split` returns 2 values but 3 names receive them" in str(error)
    error = project.error('''
        @pipeline
        def p():
            x = load()
            a, b = report(x)
    ''', PipelineDefinitionError)
    assert "returns nothing" in str(error)


def test_all_problems_are_reported_at_once_without_cascades(project):
    error = project.error('''
        @pipeline
        def p():
            x = load() * 2
            clean(x)
            print(x)
            y = helper(x)
            report(y)
    ''', DefinitionErrorGroup)
    messages = [e.message for e in error.errors]
    assert len(messages) == 3, messages  # uses of x and y after their failed binding say nothing
    assert "3 problems in pipeline `p`" in str(error)


def test_an_empty_pipeline_is_rejected(project):
    error = project.error('''
        @pipeline
        def p():
            """Nothing yet."""
    ''', PipelineDefinitionError)
    assert "calls no steps" in str(error)


def test_async_pipeline_is_rejected(project):
    error = project.error('''
        @pipeline
        async def p():
            load()
    ''', PipelineDefinitionError)
    assert "`async def`" in str(error)


def test_await_in_an_async_pipeline_is_refused_too(project):
    module = project.load('''
        @pipeline
        async def p():
            await load()
    ''')
    with pytest.raises(DefinitionErrorGroup) as caught:
        module.p.graph
    error = next(e for e in caught.value.errors if "`await`" in e.message)
    assert error.message == "`await` is not supported in a pipeline body"
    assert "asyncio.run(...)" in error.fix
    assert error.location.line == line_of(Path(module.__file__), "await load()")


def test_a_step_made_by_exec_is_refused_where_it_is_called(project):
    module = project.load('''
        exec("@step\\ndef made(x):\\n    return x\\n", globals())

        @pipeline
        def p(n=1):
            made(n)
    ''')
    with pytest.raises(PipelineDefinitionError) as caught:
        module.p.graph
    error = caught.value
    assert error.message == "Kale cannot read the source of step `made`"
    assert "not with exec()" in error.fix
    assert error.location.line == line_of(Path(module.__file__), "    made(n)")


def test_error_messages_show_file_line_caret_and_fix(project):
    error = project.error('''
        @pipeline
        def p():
            x = load()
            y = x * 2
    ''', PipelineDefinitionError)
    text = str(error)
    line = line_of(Path(error.location.file), "y = x * 2")
    assert f":{line}:9" in text
    assert f"{line} |     y = x * 2" in text
    assert "|         ^^^^^" in text
    assert "fix: " in text


@pytest.mark.parametrize("literal", ["1j", "{1, 2}", "b'x'", "...", "{1: 'a'}", "[1, {2}]"])
def test_constants_must_be_json_values(project, literal):
    error = project.error(f'''
        @pipeline
        def p():
            clean({literal})
    ''', PipelineDefinitionError)
    assert "must be JSON values" in error.message


def test_underscore_may_be_repeated_in_unpacking(project):
    graph = project.graph('''
        @step
        def three():
            return 1, 2, 3

        @pipeline
        def p():
            _, b, _ = three()
            report(_, b)
    ''')
    step = graph.step("three")
    assert step.outputs == ("_0", "b", "_")
    assert graph.step("report").arguments[0].source == OutputRef("three", "_", 2)


def test_a_call_of_a_non_step_inside_arguments_is_an_expression(project):
    error = project.error('''
        @pipeline
        def p():
            clean(float("nan"))
    ''', PipelineDefinitionError)
    assert error.message == '`float("nan")` is an expression'


def test_suffixed_names_stay_within_kubeflow_limits(project):
    name = "a" * 63
    graph = project.graph(f'''
        @step
        def {name}():
            return 1

        @pipeline
        def p():
            {name}()
            {name}()
    ''')
    assert [len(s.name) for s in graph.steps] == [63, 63]
    assert graph.steps[1].name.endswith("-2")


def test_non_finite_and_float_defaults(project):
    error = project.error('''
        @pipeline
        def p(x=float("inf")):
            load()
    ''', PipelineDefinitionError)
    assert "Kubeflow parameters are" in error.message
    graph = project.graph('''
        @pipeline
        def p(rate: float = 2):
            load()
    ''')
    assert graph.parameter("rate").default == 2.0
    assert isinstance(graph.parameter("rate").default, float)


# -- values Kubeflow cannot carry, and values no message may choke on (issue 17) ---------------


@pytest.mark.parametrize(
    ("setup", "signature", "fragment", "fix"),
    [
        ("", "n: float = 10**400", "is an int of about 401 digits", "pass it as a string"),
        ("", "n=10**5000", "is an int of about 5001 digits", "convert it in the step"),
        ("", "n=[1, float('nan')]", "holds nan at [1]", "('nan')"),
        ("", "n=-float('inf')", "is -inf", "float(value)"),
        ("", "n={'a': {1: 2}}", "holds a dict at ['a'] with the key 1, an int", "string keys"),
        ("", "n=[{1, 2}]", "holds a set at [0]", "`set(value)`"),
        ("DEEP = []\nfor _ in range(5000):\n    DEEP = [DEEP]\n", "n=DEEP",
         "nests lists or dicts too deeply", "json.loads"),
        ("DEEP = {}\nfor _ in range(40):\n    DEEP = {'k': DEEP}\n", "n=DEEP",
         "at most 50 lists or 33 dicts deep", "flatten"),
    ],
)
def test_defaults_kubeflow_cannot_carry_are_named_with_a_fix(project, setup, signature,
                                                             fragment, fix):
    error = project.error(setup + textwrap.dedent(f'''
        @pipeline
        def p({signature}):
            load()
    '''), PipelineDefinitionError)
    assert error.message.startswith("the default of pipeline parameter `n` ")
    assert fragment in error.message
    assert fix in error.fix
    assert_points_at(error, f"def p({signature})")


def test_defaults_as_deep_as_kubeflow_holds_are_kept(project):
    graph = project.graph('''
        LISTS, DICTS = [], {}
        for _ in range(49):  # 50 lists: 100 protobuf levels
            LISTS = [LISTS]
        for _ in range(32):  # 33 dicts: 99
            DICTS = {"k": DICTS}

        @pipeline
        def p(lists=LISTS, dicts=DICTS, big=10**300, pair=(1, (2, 3))):
            load()
    ''')
    assert graph.parameter("lists").default == eval("[" * 50 + "]" * 50)
    assert str(graph.parameter("dicts").default).count("{") == 33
    assert graph.parameter("big").default == 10**300
    assert graph.parameter("pair").default == [1, (2, 3)]


def test_a_default_whose_repr_fails_is_still_named(project):
    error = project.error('''
        class Odd:
            def __repr__(self):
                raise RuntimeError("no repr")

        @pipeline
        def p(n=Odd()):
            load()
    ''', PipelineDefinitionError)
    assert "pipeline parameter `n` defaults to <Odd instance at 0x" in error.message


def test_a_huge_body_constant_is_refused_with_a_fix(project):
    error = project.error(f'''
        @pipeline
        def p():
            clean({"9" * 4000})
    ''', PipelineDefinitionError)
    assert "is an int of about 4000 digits" in error.message
    assert "must be JSON values" in error.message
    assert "pass it as a string" in error.fix


def test_a_wrong_call_of_a_step_with_a_deep_default_shows_its_signature(project):
    error = project.error('''
        DEEP = []
        for _ in range(5000):
            DEEP = [DEEP]

        @step
        def deep(data, nested=DEEP, huge=10**5000):
            return data

        @pipeline
        def p():
            deep(1, 2, 3, 4)
    ''', PipelineDefinitionError)
    assert "step `deep` cannot be called like this" in error.message
    assert error.fix == ("its signature is deep(data, nested=[[[[[...]]]]], "
                         "huge=<an int of about 5001 digits>)")
