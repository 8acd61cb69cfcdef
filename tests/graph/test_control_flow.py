"""Control flow in the pipeline body (issue 11): ``if``/``elif``/``else`` (a condition step),
``for`` loops and collecting comprehensions, as the parser turns them into a Graph; and every
construct it refuses, with what, where and the fix."""

from __future__ import annotations

import linecache
import traceback
from pathlib import Path

import pytest

from kale.errors import DefinitionError, DefinitionErrorGroup
from kale.graph import Constant, OutputRef, ParameterRef
from kale.graph.model import Branch, CollectedRef, ItemRef, Loop, OneOfRef
from tests.conftest import line_of


def errors_of(error):
    return list(error.errors) if isinstance(error, DefinitionErrorGroup) else [error]


def sources(step):
    return {argument.name: argument.source for argument in step.arguments}


def condition_function(step):
    """The condition step's generated function, compiled as the runtime compiles it (its text
    at its line of the pipeline's file)."""
    namespace: dict = {}
    code = compile("\n" * (step.function.line - 1) + step.function.text, step.function.filename,
                   "exec")
    exec(code, namespace)
    return namespace[step.function.function_name]


def call_condition(step, **values):
    return condition_function(step)(*(values[argument.name] for argument in step.arguments))


# -- if / elif / else ---------------------------------------------------------------------------


def test_if_on_a_step_result_and_a_parameter(project):
    module = project.load('''
        @pipeline
        def p(threshold=12):
            res = load()
            if res > threshold:
                report(res)
    ''')
    graph = module.p.graph
    assert [s.name for s in graph.steps] == ["load", "condition-1", "report"]
    condition = graph.step("condition-1")
    assert condition.condition.tests == ("res > threshold",)
    assert condition.condition.has_else is False
    assert condition.condition.branches == 1
    assert condition.display_name == "if res > threshold"
    assert condition.outputs == ()
    assert sources(condition) == {"res": OutputRef("load", "res"),
                                  "threshold": ParameterRef("threshold")}
    assert condition.upstream == {"load"}
    report = graph.step("report")
    assert report.scopes == (Branch("condition-1", 0),)
    assert sources(report) == {"model": OutputRef("load", "res")}
    assert report.upstream == {"load", "condition-1"}
    assert graph.user_steps == (graph.step("load"), report)
    assert graph.leaves == ("report",)  # a condition is never a result
    assert call_condition(condition, res=13, threshold=12) == 0
    assert call_condition(condition, res=12, threshold=12) == 1  # no branch: nothing runs
    function = condition.function
    assert function.filename == str(Path(module.__file__))
    assert function.module == "__main__"
    assert function.text.splitlines()[0] == "def condition_1(res, threshold):"


@pytest.mark.parametrize(("test", "operands", "cases"), [
    ("3 < x", {"x"}, [({"x": 4}, 0), ({"x": 3}, 1)]),
    ("'db' == source", {"source"}, [({"source": "db"}, 0), ({"source": "s3"}, 1)]),
    ("None != x", {"x"}, [({"x": 0}, 0), ({"x": None}, 1)]),
    ("flag", {"flag"}, [({"flag": True}, 0), ({"flag": False}, 1)]),
    ("not flag", {"flag"}, [({"flag": False}, 0), ({"flag": True}, 1)]),
    ("x > 1 and flag", {"x", "flag"}, [({"x": 2, "flag": True}, 0),
                                       ({"x": 2, "flag": False}, 1)]),
    ("x > 10 or flag", {"x", "flag"}, [({"x": 11, "flag": False}, 0),
                                       ({"x": 1, "flag": True}, 0),
                                       ({"x": 1, "flag": False}, 1)]),
    ("0 < x <= 5", {"x"}, [({"x": 5}, 0), ({"x": 0}, 1), ({"x": 6}, 1)]),
    ("len(x) > 2", {"x"}, [({"x": [1, 2, 3]}, 0), ({"x": [1]}, 1)]),
    ("x % 2 == 0", {"x"}, [({"x": 4}, 0), ({"x": 3}, 1)]),
    ("x['k'] == 1", {"x"}, [({"x": {"k": 1}}, 0), ({"x": {"k": 2}}, 1)]),
    ("isinstance(x, int)", {"x"}, [({"x": 1}, 0), ({"x": "1"}, 1)]),
])
def test_tests_are_evaluated_by_python_in_the_condition_step(project, test, operands, cases):
    graph = project.graph(f'''
        @pipeline
        def p(source="db", flag=True):
            x = load(source)
            if {test}:
                report(x)
    ''')
    condition = graph.step("condition-1")
    assert condition.condition.tests == (test,)
    assert {argument.name for argument in condition.arguments} == operands
    expected = {"x": OutputRef("load", "x"), "flag": ParameterRef("flag"),
                "source": ParameterRef("source")}
    assert sources(condition) == {name: expected[name] for name in operands}
    for values, branch in cases:
        assert call_condition(condition, **values) == branch, (test, values)


def test_if_elif_else_gives_one_condition_with_a_branch_each(project):
    module = project.load('''
        @pipeline
        def p(mode="fast", flag=False):
            data = load()
            if mode == "fast":
                train(data, 1)
            elif mode == "slow" and not flag:
                train(data, 100)
                clean(data)
            elif flag:
                pass
            else:
                report(data)
    ''')
    graph = module.p.graph
    condition = graph.step("condition-1")
    info = condition.condition
    assert info.tests == ("mode == \"fast\"", "mode == \"slow\" and not flag", "flag")
    assert info.has_else and info.branches == 4
    assert [info.describe(i) for i in range(4)] == [
        'if mode == "fast"', 'elif mode == "slow" and not flag', "elif flag", "else"]
    assert [(s.name, s.scopes) for s in graph.steps[2:]] == [
        ("train", (Branch("condition-1", 0),)),
        ("train-2", (Branch("condition-1", 1),)),
        ("clean", (Branch("condition-1", 1),)),
        ("report", (Branch("condition-1", 3),)),
    ]
    assert set(sources(condition)) == {"mode", "flag"}
    assert call_condition(condition, mode="fast", flag=True) == 0
    assert call_condition(condition, mode="slow", flag=False) == 1
    assert call_condition(condition, mode="slow", flag=True) == 2
    assert call_condition(condition, mode="other", flag=False) == 3  # else
    # each test on the line of its `if`/`elif`
    path = Path(module.__file__)
    function = condition_function(condition)
    lines = sorted({line for _, _, line in function.__code__.co_lines() if line})
    for marker in ('if mode == "fast"', 'elif mode == "slow"', "elif flag"):
        assert line_of(path, marker) in lines, marker
    assert condition.function.line < line_of(path, 'if mode == "fast"')
    assert condition.location.line == line_of(path, 'if mode == "fast"')


def test_a_failing_test_is_reported_at_the_users_elif_line(project):
    module = project.load('''
        @pipeline
        def p(limit=3):
            x = load()
            if x == "a":
                report(x)
            elif x > limit:
                report(x, 1)
    ''')
    condition = module.p.graph.step("condition-1")
    function = condition_function(condition)
    with pytest.raises(TypeError) as caught:
        function("text", 3)  # "text" > 3
    frame = traceback.extract_tb(caught.value.__traceback__)[-1]
    assert frame.filename == module.__file__
    assert frame.lineno == line_of(Path(module.__file__), "elif x > limit")
    # the user's own line, as a traceback shows it
    assert linecache.getline(frame.filename, frame.lineno).strip() == "elif x > limit:"


def test_a_test_written_over_several_lines_sits_on_its_first_line(project):
    module = project.load('''
        @pipeline
        def p(limit=3):
            x = load()
            if (x >
                    limit):
                report(x)
    ''')
    condition = module.p.graph.step("condition-1")
    assert condition.condition.tests == ("x > limit",)
    assert condition.display_name == "if x > limit"
    function = condition_function(condition)
    assert function(4, 3) == 0 and function(1, 3) == 1
    lines = {line for _, _, line in function.__code__.co_lines() if line}
    assert line_of(Path(module.__file__), "if (x >") + 1 in lines


def test_else_alone_and_a_nested_if_in_else_is_not_an_elif(project):
    graph = project.graph('''
        @pipeline
        def p(flag=True, other=False):
            if flag:
                load()
            else:
                if other:
                    clean([1])
    ''')
    assert [s.name for s in graph.steps] == ["condition-1", "load", "condition-2", "clean"]
    assert graph.step("condition-1").condition.tests == ("flag",)
    assert graph.step("condition-1").condition.has_else
    assert graph.step("condition-2").scopes == (Branch("condition-1", 1),)
    assert graph.step("clean").scopes == (Branch("condition-1", 1), Branch("condition-2", 0))
    assert graph.step("clean").upstream == {"condition-1", "condition-2"}


def test_a_test_on_an_unpacked_result_a_loop_variable_and_collected_results(project):
    graph = project.graph('''
        @pipeline
        def p(rates=[0.1, 0.2]):
            a, b = split([1, 2])
            if a == b:
                report(a)
            for rate in rates:
                if rate > 0.1:
                    train(a, rate=rate)
            models = [train(b, rate=r) for r in rates]
            if len(models) > 1:
                report(models)
    ''')
    first = graph.step("condition-1")
    assert sources(first) == {"a": OutputRef("split", "a", 0), "b": OutputRef("split", "b", 1)}
    inner = graph.step("condition-2")
    loop = graph.loop("loop-1")
    assert inner.scopes == (loop,)
    assert sources(inner) == {"rate": ItemRef("loop-1", "rate", ParameterRef("rates"))}
    assert graph.step("train").scopes == (loop, Branch("condition-2", 0))
    last = graph.step("condition-3")
    assert sources(last) == {"models": CollectedRef("train-2", "models", "loop-2")}
    assert last.scopes == ()


def test_two_ifs_are_two_conditions(project):
    graph = project.graph('''
        @pipeline
        def p(n=1):
            if n > 1:
                load()
            if n > 2:
                load()
    ''')
    assert [s.name for s in graph.steps] == ["condition-1", "load", "condition-2", "load-2"]
    assert graph.step("condition-2").upstream == frozenset()
    assert graph.levels[0] == ("condition-1", "condition-2")


def test_a_condition_name_never_clashes_with_a_users_step(project):
    graph = project.graph('''
        @step
        def condition_1(x):
            return x

        @pipeline
        def p(n=1):
            condition_1(n)
            if n:
                condition_1(n)
    ''')
    names = [s.name for s in graph.steps]
    assert len(set(names)) == len(names) == 3
    condition = next(s for s in graph.steps if s.condition is not None)
    assert condition.function.function_name == condition.name.replace("-", "_")
    assert call_condition(condition, n=1) == 0


# -- one of: a name bound in every branch -------------------------------------------------------


def test_a_name_bound_in_every_branch_is_one_of_them_after_the_if(project):
    graph = project.graph('''
        @pipeline
        def p(mode="a"):
            data = load()
            if mode == "a":
                model = train(data, 1)
            elif mode == "b":
                data2 = clean(data)
                model = train(data2, 2)
            else:
                model = train(data, 3)
            report(model, data)
    ''')
    report = graph.step("report")
    assert report.scopes == ()
    assert sources(report) == {
        "model": OneOfRef("condition-1", (OutputRef("train", "model"),
                                          OutputRef("train-2", "model"),
                                          OutputRef("train-3", "model"))),
        "other": OutputRef("load", "data")}  # unchanged by the branches
    assert report.upstream == {"condition-1", "train", "train-2", "train-3", "load"}
    kinds = {(e.source, e.kind) for e in graph.edges if e.target == "report"}
    assert kinds == {("train", "one-of"), ("train-2", "one-of"), ("train-3", "one-of"),
                     ("load", "output")}


def test_one_of_rebinding_a_name_and_of_unpacked_outputs(project):
    graph = project.graph('''
        @pipeline
        def p(flag=True):
            x = load()
            if flag:
                x = clean(x)
                a, b = split(x)
            else:
                a, b = split(x)
            report(a, b)
    ''')
    report = graph.step("report")
    assert sources(report) == {
        "model": OneOfRef("condition-1", (OutputRef("split", "a", 0),
                                          OutputRef("split-2", "a", 0))),
        "other": OneOfRef("condition-1", (OutputRef("split", "b", 1),
                                          OutputRef("split-2", "b", 1)))}
    # the first branch reads its own rebinding of `x`, the else the one from before
    assert sources(graph.step("split"))["data"] == OutputRef("clean", "x")
    assert sources(graph.step("split-2"))["data"] == OutputRef("load", "x")


def test_one_of_inside_a_loop_is_per_iteration(project):
    graph = project.graph('''
        @pipeline
        def p(rates=[1, 2]):
            for r in rates:
                if r > 1:
                    y = train([1], rate=r)
                else:
                    y = train([2])
                report(y)
    ''')
    loop = graph.loop("loop-1")
    assert graph.step("report").scopes == (loop,)
    assert sources(graph.step("report"))["model"] == OneOfRef("condition-1", (
        OutputRef("train", "y"), OutputRef("train-2", "y")))


# -- for loops ----------------------------------------------------------------------------------


def test_a_loop_over_a_step_result(project):
    module = project.load('''
        @pipeline
        def p(threshold=0.5):
            res = load()
            for x in res:
                y = clean(x, threshold)
                report(y, x)
            report(res)
    ''')
    graph = module.p.graph
    loop = graph.loop("loop-1")
    assert graph.loops == (loop,)
    assert loop == Loop("loop-1", "x", OutputRef("load", "res"), loop.location, (), False)
    assert loop.location.line == line_of(Path(module.__file__), "for x in res:")
    assert loop.depth == 1 and loop.needs() == {"load"}
    assert graph.step("load").item_outputs == ("res",)
    clean = graph.step("clean")
    assert clean.scopes == (loop,) and clean.loops == (loop,)
    assert sources(clean) == {"data": ItemRef("loop-1", "x", OutputRef("load", "res")),
                              "threshold": ParameterRef("threshold")}
    report = graph.step("report")
    # the same iteration's output, and the loop variable
    assert sources(report) == {"model": OutputRef("clean", "y"),
                               "other": ItemRef("loop-1", "x", OutputRef("load", "res"))}
    assert report.upstream == {"clean", "load"}
    assert graph.step("report-2").scopes == ()
    edges = {(e.source, e.target, e.argument, e.kind) for e in graph.edges}
    assert ("load", "clean", "data", "items") in edges
    assert ("clean", "report", "model", "output") in edges
    assert ("load", "report-2", "model", "output") in edges


def test_a_loop_body_that_does_not_use_the_variable_still_waits_for_the_items(project):
    graph = project.graph('''
        @pipeline
        def p():
            res = load()
            for x in res:
                report(1)
    ''')
    assert graph.step("report").upstream == {"load"}
    assert graph.step("load").item_outputs == ("res",)


@pytest.mark.parametrize(("items", "expected"), [
    ("rates", ParameterRef("rates")),
    ("[1, 'a', None, [2]]", Constant([1, "a", None, [2]])),
    ("(1, 2)", Constant([1, 2])),
    ("range(3)", Constant([0, 1, 2])),
    ("range(2, 10, 3)", Constant([2, 5, 8])),
])
def test_loops_over_a_list_parameter_and_literals(project, items, expected):
    graph = project.graph(f'''
        @pipeline
        def p(rates=[0.1, 0.2]):
            for r in {items}:
                train([1], rate=r)
    ''')
    loop = graph.loop("loop-1")
    assert loop.items == expected
    assert sources(graph.step("train"))["rate"] == ItemRef("loop-1", "r", expected)
    assert graph.step("train").upstream == frozenset()
    assert not any(edge.kind == "items" for edge in graph.edges)


def test_a_loop_over_an_unpacked_output(project):
    graph = project.graph('''
        @pipeline
        def p():
            a, b = split([1, 2])
            for x in b:
                report(x)
    ''')
    assert graph.loop("loop-1").items == OutputRef("split", "b", 1)
    assert graph.step("split").item_outputs == ("b",)


def test_nested_loops(project):
    graph = project.graph('''
        @pipeline
        def p(rates=[0.1, 0.2]):
            res = load()
            for x in res:
                for r in rates:
                    m = train(x, rate=r)
                    report(m)
                clean(x)
    ''')
    outer, inner = graph.loops
    assert (outer.name, inner.name) == ("loop-1", "loop-2")
    assert inner.scopes == (outer,) and inner.depth == 2
    assert graph.step("train").scopes == (outer, inner)
    assert sources(graph.step("train")) == {
        "data": ItemRef("loop-1", "x", OutputRef("load", "res")),
        "rate": ItemRef("loop-2", "r", ParameterRef("rates"))}
    assert graph.step("report").scopes == (outer, inner)
    assert graph.step("clean").scopes == (outer,)


def test_a_nested_loop_over_an_output_of_the_same_iteration(project):
    graph = project.graph('''
        @pipeline
        def p(sources=["a", "b"]):
            for s in sources:
                rows = load(s)
                for row in rows:
                    report(row, s)
    ''')
    inner = graph.loop("loop-2")
    assert inner.items == OutputRef("load", "rows")
    assert graph.step("load").scopes == (graph.loop("loop-1"),)
    assert graph.step("load").item_outputs == ("rows",)


def test_if_inside_for_and_for_inside_if(project):
    graph = project.graph('''
        @pipeline
        def p(flag=True, limit=0.5, rates=[1, 2]):
            res = load()
            for x in res:
                if x > limit:
                    report(x)
            if flag:
                for r in rates:
                    train(res, rate=r)
    ''')
    loop1, loop2 = graph.loops
    first = graph.step("condition-1")
    assert first.scopes == (loop1,)
    assert graph.step("report").scopes == (loop1, Branch("condition-1", 0))
    assert graph.step("report").upstream == {"condition-1", "load"}
    second = graph.step("condition-2")
    assert second.scopes == ()
    assert loop2.scopes == (Branch("condition-2", 0),)
    assert loop2.needs() == frozenset()
    assert graph.step("train").scopes == (Branch("condition-2", 0), loop2)
    assert graph.step("train").upstream == {"condition-2", "load"}


def test_the_loop_variable_may_shadow_and_be_rebound_inside_the_loop(project):
    graph = project.graph('''
        @pipeline
        def p(x=1, rates=[1]):
            for x in rates:
                x = clean(x)
                report(x)
            for x in rates:
                for x in [5]:
                    report(x)
    ''')
    assert sources(graph.step("report")) == {"model": OutputRef("clean", "x")}
    assert sources(graph.step("report-2")) == {"model": ItemRef("loop-3", "x", Constant([5]))}


# -- comprehensions -----------------------------------------------------------------------------


def test_a_comprehension_collects_one_result_per_item(project):
    graph = project.graph('''
        @pipeline
        def p(rates=[0.1, 0.2]):
            data = load()
            models = [train(data, rate=r) for r in rates]
            report(models)
    ''')
    loop = graph.loop("loop-1")
    assert loop.collects and loop.variable == "r" and loop.items == ParameterRef("rates")
    train = graph.step("train")
    assert train.scopes == (loop,) and train.outputs == ("models",)
    assert sources(train) == {"data": OutputRef("load", "data"),
                              "rate": ItemRef("loop-1", "r", ParameterRef("rates"))}
    report = graph.step("report")
    assert report.scopes == ()
    assert sources(report) == {"model": CollectedRef("train", "models", "loop-1")}
    assert report.upstream == {"train"}
    assert [(e.source, e.target, e.kind) for e in graph.edges] == [
        ("load", "train", "output"), ("train", "report", "collected")]


def test_a_comprehension_over_a_step_result_inside_a_loop_and_reading_its_own_name(project):
    graph = project.graph('''
        @pipeline
        def p(rates=[1, 2]):
            x = load()
            x = [clean(x, r) for r in rates]
            report(x)
            rows = load()
            rows = [clean(row) for row in rows]
            report(rows)
            for r in rates:
                parts = [train(rows, rate=r) for _ in range(2)]
                report(parts)
    ''')
    # `x = [clean(x, r) ...]` reads the previous `x`, as Python does
    assert sources(graph.step("clean"))["data"] == OutputRef("load", "x")
    assert sources(graph.step("report"))["model"] == CollectedRef("clean", "x", "loop-1")
    assert graph.loop("loop-2").items == OutputRef("load-2", "rows")
    assert sources(graph.step("report-2"))["model"] == CollectedRef("clean-2", "rows",
                                                                  "loop-2")
    inner = graph.loop("loop-4")
    assert inner.scopes == (graph.loop("loop-3"),) and inner.collects
    assert sources(graph.step("report-3"))["model"] == CollectedRef("train", "parts", "loop-4")
    assert graph.step("report-3").scopes == (graph.loop("loop-3"),)


def test_an_annotated_comprehension(project):
    graph = project.graph('''
        @pipeline
        def p():
            models: list = [train(i) for i in range(2)]
            report(models)
    ''')
    assert sources(graph.step("report"))["model"] == CollectedRef("train", "models", "loop-1")


# -- json: the model's description is complete --------------------------------------------------


def test_to_dict_describes_scopes_loops_and_conditions(project):
    data = project.graph('''
        @pipeline
        def p(rates=[1, 2]):
            res = load()
            for x in res:
                if x > 1:
                    y = clean(x)
                else:
                    y = clean(x, 0.1)
                report(y)
            ms = [train(res, rate=r) for r in rates]
            report(ms)
    ''').to_dict()
    steps = {step["name"]: step for step in data["steps"]}
    assert steps["condition-1"]["condition"]["tests"] == ["x > 1"]
    assert steps["condition-1"]["condition"]["else"] is True
    assert steps["clean"]["scopes"] == [{"loop": "loop-1"},
                                        {"condition": "condition-1", "branch": 0}]
    assert steps["report"]["inputs"]["model"]["one_of"][1]["step"] == "clean-2"
    assert steps["report-2"]["inputs"]["model"] == {
        "collected": {"step": "train", "output": "ms", "loop": "loop-2"}}
    assert steps["clean"]["inputs"]["data"]["item_of"] == "loop-1"
    assert [loop["name"] for loop in data["loops"]] == ["loop-1", "loop-2"]
    assert data["loops"][1]["collects"] is True


# -- refused: names that cannot be read after a block -------------------------------------------


def refused(project, body, message, fix, marker, *, signature="flag=True, rates=[1, 2], n=1",
            prefix=""):
    """The body is refused with an error whose message and fix hold these fragments, located
    at the line holding ``marker``, with the file:line shown."""
    module = project.load(prefix + f"@pipeline\ndef p({signature}):\n" + "".join(
        "    " + line + "\n" for line in body.strip("\n").splitlines()))
    with pytest.raises(DefinitionError) as caught:
        module.p.graph
    every = errors_of(caught.value)
    found = [error for error in every if message in error.message]
    assert found, [error.message for error in every]
    assert len(every) == 1, [error.message for error in every]  # no cascade
    error = found[0]
    assert fix in (error.fix or ""), error.fix
    path = Path(module.__file__)
    assert error.location.file == str(path)
    assert error.location.line == line_of(path, marker), str(error)
    text = str(caught.value)
    assert f"{path.name}:{error.location.line}:" in text and "fix: " in text
    return error


@pytest.mark.parametrize(("body", "message", "fix", "marker"), [
    ("x = load()\nif flag:\n    y = clean(x)\nreport(y)",
     "`y` is bound in only some branches of the `if` at line", "bind it in every branch",
     "report(y)"),
    ("x = load()\nif flag:\n    y = clean(x)\nelif n:\n    y = clean(x)\nreport(y)",
     "bound in only some branches", "with an `else:` too", "report(y)"),
    ("x = load()\nif flag:\n    y = clean(x)\nelse:\n    z = clean(x)\nreport(z)",
     "`z` is bound in only some branches", "use it only inside the branch", "report(z)"),
    ("x = load()\nif flag:\n    x = clean(x)\nreport(x)",
     "`x` is bound in only some branches", "every branch", "report(x)"),
    ("if flag:\n    if n:\n        y = load()\n    else:\n        y = load()\nelse:\n"
     "    y = load()\nreport(y)",
     "bound in every branch of the `if` at line", "directly in each branch", "report(y)"),
    ("if flag:\n    y = [load(i) for i in rates]\nelse:\n    y = load()\nreport(y)",
     "not by a step call of the branch itself", "directly in each branch", "report(y)"),
    ("for r in rates:\n    y = load(r)\nreport(y)",
     "`y` is bound inside the `for` loop at line", "results = [step(x) for x in items]",
     "report(y)"),
    ("for r in rates:\n    load(r)\nreport(r)",
     "`r` is bound inside the `for` loop", "comprehension", "report(r)"),
    ("if flag:\n    for r in rates:\n        y = load(r)\nreport(y)",
     "`y` is bound inside the `for` loop", "comprehension", "report(y)"),
    ("for r in rates:\n    ys = [load(i) for i in rates]\nreport(ys)",
     "`ys` is bound inside the `for` loop", "comprehension", "report(ys)"),
])
def test_names_not_visible_after_a_block(project, body, message, fix, marker):
    refused(project, body, message, fix, marker)


def test_the_partial_binding_message_names_the_if_line(project):
    error = refused(project, "x = load()\nif flag:\n    y = clean(x)\nreport(y)",
                    "only some branches", "every branch", "report(y)")
    assert f"the `if` at line {line_of(Path(error.location.file), 'if flag:')}," in \
        error.message


# -- refused: statements and loops --------------------------------------------------------------


@pytest.mark.parametrize(("body", "message", "fix", "marker"), [
    ("while flag:\n    load()", "`while` statements are not supported",
     "loop with `for x in items:`", "while flag:"),
    ("for r in rates:\n    load(r)\n    break", "`break` is not supported",
     "have a step filter the list", "break"),
    ("for r in rates:\n    load(r)\n    continue", "`continue` is not supported",
     "put the `continue` inside a step", "continue"),
    ("for r in rates:\n    load(r)\nelse:\n    report(1)", "`for ... else` is not supported",
     "put its statements after the loop", "report(1)"),
    ("for a, b in rates:\n    load(a)", "the loop unpacks each item into `a, b`",
     "unpack it inside the step", "for a, b in rates:"),
    ("for rates[0] in rates:\n    load()", "cannot be a loop variable", "plain name",
     "for rates[0] in rates:"),
    ("for x in n:\n    load(x)", "the loop iterates pipeline parameter `n`, a int",
     "give `n` a list default", "for x in n:"),
    ("for x in rates:\n    for y in x:\n        load(y)",
     "the loop iterates `x`, the variable of an enclosing loop",
     "have a step return the list to loop over", "for y in x:"),
    ("ms = [load(r) for r in rates]\nfor m in ms:\n    report(m)",
     "the loop iterates `ms`, results collected from a loop", "items = prepare(ms)",
     "for m in ms:"),
    ("if flag:\n    x = load()\nelse:\n    x = load()\nfor i in x:\n    report(i)",
     "the output of one branch of an `if`", "have a step return the list", "for i in x:"),
    ("for x in load():\n    report(x)", "the loop calls step `load` for its items",
     "bind its output first, `items = load()`", "for x in load():"),
    ("for x in range(n):\n    report(x)", "is not a range of literal ints",
     "a list parameter, or a literal list", "for x in range(n):"),
    ("for x in range(20000):\n    report(x)", "at most 10000 items", "literal list",
     "for x in range(20000):"),
    ("for x in [n, 1]:\n    report(x)", "a list built from pipeline values",
     "items = gather(n)", "for x in [n, 1]:"),
    ("for x in undefined_name:\n    report(x)", "a loop cannot iterate `undefined_name`",
     "a list parameter", "for x in undefined_name:"),
    ("for x in rates:\n    pass", "this `for` loop calls no steps", "call a step in its body",
     "for x in rates:"),
    ("if n > 1:\n    pass\nelse:\n    pass", "this `if` calls no steps in any branch",
     "call a step in one of its branches", "if n > 1:"),
])
def test_refused_loops_and_statements(project, body, message, fix, marker):
    refused(project, body, message, fix, marker)


def test_a_misspelt_loop_list_does_not_also_report_its_variable(project):
    module = project.load('''
        @pipeline
        def p():
            for x in undefined_name:
                report(x)
    ''')
    with pytest.raises(DefinitionError) as caught:
        module.p.graph
    assert len(errors_of(caught.value)) == 1


def test_async_for_in_an_async_pipeline_is_refused(project):
    module = project.load('''
        @pipeline
        async def p(rates=[1]):
            async for r in rates:
                load(r)
    ''')
    with pytest.raises(DefinitionError) as caught:
        module.p.graph
    messages = [error.message for error in errors_of(caught.value)]
    assert any("`async def`" in message for message in messages)
    error = next(e for e in errors_of(caught.value) if "`async for`" in e.message)
    assert "use `for x in items:`" in error.fix
    assert error.location.line == line_of(Path(module.__file__), "async for r in rates:")


def test_an_async_comprehension_in_an_async_pipeline_is_refused(project):
    module = project.load('''
        @pipeline
        async def p(rates=[1]):
            ms = [load(r) async for r in rates]
            report(ms)
    ''')
    with pytest.raises(DefinitionError) as caught:
        module.p.graph
    error = next(e for e in errors_of(caught.value) if "`async for`" in e.message)
    assert "use `[step(x) for x in items]`" in error.fix
    assert error.location.line == line_of(Path(module.__file__), "ms = [load(r) async for")
    # the refused comprehension leaves `ms` unusable without a second error
    assert not any("`ms`" in e.message for e in errors_of(caught.value))


# -- refused: comprehensions --------------------------------------------------------------------


@pytest.mark.parametrize(("body", "message", "fix", "marker"), [
    ("ms = [load(r) for r in rates if r > 1]\nreport(ms)",
     "the comprehension filters its items (`if r > 1`)", "have a step return only the items",
     "ms = [load(r)"),
    ("ms = [load(r) for r in rates for s in rates]\nreport(ms)",
     "loops over more than one list", "a `for` loop with a comprehension inside",
     "ms = [load(r)"),
    ("ms = [r for r in rates]\nreport(ms)", "`r` in `[r for r in rates]` is not a step call",
     "collect the results of one step call", "ms = [r for r"),
    ("ms = [helper(r) for r in rates]\nreport(ms)", "`helper` is not a step",
     "decorate `helper` with @step", "ms = [helper(r)"),
    ("ms = [load(load(r)) for r in rates]", "nested call", "give each step call its own line",
     "ms = [load(load(r))"),
    ("report([load(r) for r in rates])", "is a comprehension inside a step call",
     "bind it on a line of its own", "report([load(r)"),
    ("[load(r) for r in rates]", "are not kept", "write `for x in items:`",
     "[load(r) for r in rates]"),
    ("ms = {load(r) for r in rates}", "is not a step call", "compute the value inside a step",
     "ms = {load(r)"),
    ("ms = [load(r) for a, b in rates]", "the loop unpacks each item into `a, b`",
     "with one name", "ms = [load(r)"),
    ("ms = [load(r) for r in n]", "pipeline parameter `n`, a int", "list default",
     "ms = [load(r)"),
    ("a, b = [load(r) for r in rates]", "is not a step call", "inside a step",
     "a, b = [load(r)"),
])
def test_refused_comprehensions(project, body, message, fix, marker):
    refused(project, body, message, fix, marker)


def test_a_refused_comprehension_leaves_its_name_unusable_without_a_second_error(project):
    module = project.load('''
        @pipeline
        def p(rates=[1]):
            ms = [load(r) for r in rates if r]
            report(ms)
    ''')
    with pytest.raises(DefinitionError) as caught:
        module.p.graph
    assert len(errors_of(caught.value)) == 1


def test_a_failed_rebinding_comprehension_does_not_keep_the_old_results(project):
    module = project.load('''
        @pipeline
        def p(rates=[1]):
            ms = [load(r) for r in rates]
            ms = [load(r) for r in nowhere]
            report(ms)
    ''')
    with pytest.raises(DefinitionError) as caught:
        module.p.graph
    assert [e.message for e in errors_of(caught.value)] == ["a loop cannot iterate `nowhere`"]


# -- refused: tests -----------------------------------------------------------------------------


@pytest.mark.parametrize(("test", "message", "fix", "marker"), [
    ("load(n) > 1", "`load(n)` calls a function in the condition of an `if`",
     "call steps on lines of their own", "if load(n) > 1:"),
    ("helper(n)", "calls a function in the condition", "`ok = check(x)`, then `if ok:`",
     "if helper(n):"),
    ("print(n)", "calls a function in the condition", "a test may use only abs",
     "if print(n):"),
    ("x.count(1)", "calls a function in the condition", "test their results",
     "if x.count(1):"),
    ("(y := n)", "`y := n` assigns in the condition of an `if`",
     "bind the step's output on a line of its own", "if (y := n):"),
    ("THRESHOLD > n", "`THRESHOLD` is defined outside the pipeline; the condition of an `if` "
     "can read", "make it a pipeline parameter (`def p(..., THRESHOLD=THRESHOLD)`)",
     "if THRESHOLD > n:"),
    ("isinstance(n, bytes)", "`bytes` is a built-in a condition cannot use",
     "may use only the built-ins", "if isinstance(n, bytes):"),
    ("nowhere > n", "`nowhere` is not defined", "make it a pipeline parameter",
     "if nowhere > n:"),
    ("[i for i in x]", "is more than a condition can hold", "compute the value in a step",
     "if [i for i in x]:"),
    ("(lambda: n)()", "calls a function", "call steps on lines of their own",
     "if (lambda: n)():"),
    ("f'{n}' == '1'", "is more than a condition can hold", "in a step", "if f'{n}'"),
    ("len(len) > 1", "`len(len)` calls `len`, an output of step `load-2`,",
     "rename `len`", "if len(len) > 1:"),
])
def test_refused_tests(project, test, message, fix, marker):
    error = refused(project, f"x = load()\nlen = load()\nif {test}:\n    report(n)", message,
                    fix, marker, signature="n=1", prefix="THRESHOLD = 1\n\n")
    # the branch's steps are not reported a second time
    assert error is not None


def test_a_test_reading_a_name_bound_in_only_some_branches(project):
    refused(project, "x = load()\nif flag:\n    y = clean(x)\nif y:\n    report(1)",
            "`y` is bound in only some branches", "every branch", "if y:")


def test_several_problems_in_one_chain_are_all_reported(project):
    module = project.load('''
        @pipeline
        def p(n=1):
            if print(n):
                load()
            elif (z := n):
                load()
            else:
                while n:
                    load()
    ''')
    with pytest.raises(DefinitionErrorGroup) as caught:
        module.p.graph
    messages = " / ".join(e.message for e in caught.value.errors)
    assert "calls a function" in messages and "assigns" in messages and "`while`" in messages


def test_a_conditional_expression_chain_keeps_its_tests_on_the_users_line(project):
    module = project.load('''
        @pipeline
        def p(limit=3, mode="a"):
            x = load()
            y = clean(x) if mode == "a" else clean(x, 1) if x > limit else clean(x, 2)
            report(y)
    ''')
    graph = module.p.graph
    condition = graph.step("condition-1")
    assert condition.condition.tests == ('mode == "a"', "x > limit")
    assert condition.condition.has_else
    line = line_of(Path(module.__file__), "y = clean(x) if")
    assert condition.function.text.splitlines()[line - condition.function.line].startswith(
        "    if (_kale_branch := 0 if (mode == 'a') else 1 if (x > limit) else None)")
    values = {"mode": "b", "limit": 3}
    assert call_condition(condition, x=5, **values) == 1
    assert call_condition(condition, x=1, **values) == 2
    assert call_condition(condition, x=1, mode="a", limit=3) == 0
    with pytest.raises(TypeError) as caught:
        call_condition(condition, x="text", **values)  # "text" > 3, the second test
    frame = traceback.extract_tb(caught.value.__traceback__)[-1]
    assert (frame.filename, frame.lineno) == (module.__file__, line)
    assert sources(graph.step("report"))["model"] == OneOfRef("condition-1", (
        OutputRef("clean", "y"), OutputRef("clean-2", "y"), OutputRef("clean-3", "y")))
