"""Step checks: a step may use only its arguments, builtins and what it imports in its body."""

from __future__ import annotations

import ast
import textwrap
from pathlib import Path

import pytest

from kale.errors import DefinitionErrorGroup, StepDefinitionError
from kale.graph.checks import return_arity

ISOLATION_PRELUDE = '''\
import json
import os.path
import numbers as nums
from collections import OrderedDict as OD
from kale.sdk import pipeline, step

LIMIT = 3


def helper(x):
    return x


class Box:
    pass


@step
def other_step():
    return 1


'''


def problems(project, step_source, pipeline_body="use()", **kwargs):
    text = (ISOLATION_PRELUDE + textwrap.dedent(step_source)
            + "\n\n@pipeline\ndef p():\n    " + pipeline_body + "\n")
    pipeline = project.pipeline(text, prelude=False, **kwargs)
    try:
        pipeline.graph
    except DefinitionErrorGroup as group:
        return group.errors
    except StepDefinitionError as error:
        return [error]
    return []


def test_a_self_contained_step_passes(project):
    assert problems(project, '''
        @step
        def use(n=3, flag=None, *, scale: float = 1.5) -> "nums.Number":
            import json
            from collections import OrderedDict as OD
            local: nums.Number = 1          # local annotations are never evaluated
            data = OD(a=json.dumps([n]))
            def inner(v):
                return len(v) + n
            values = [inner(str(k)) for k in data]
            if n > 100:
                return use(n - 1)            # a step may call itself
            return sorted(values), __file__, __name__, scale, local
    ''') == []


@pytest.mark.parametrize(
    ("body", "message", "fix"),
    [
        ("return json.dumps(1)", "uses `json`, imported at module level (line 1 of",
         "move `import json` into `use`"),
        ("return os.path.join('a')", "uses `os`, imported at module level",
         "move `import os.path` into `use`"),
        ("return nums.Number", "uses `nums`", "move `import numbers as nums` into `use`"),
        ("return OD()", "uses `OD`", "move `from collections import OrderedDict as OD` into"),
        ("return helper(1)", "uses the function `helper` defined at module level (line 10",
         "import it inside `use`: `from helpers import helper`"),
        ("return Box()", "uses the class `Box` defined at module level",
         "from helpers import Box"),
        ("return LIMIT", "uses `LIMIT`, a module-level variable (line 7",
         "pass it to `use` as an argument"),
        ("return other_step()", "calls step `other_step`", "call `other_step` from the pipeline"),
        ("return missing_name", "uses `missing_name`, which is not defined",
         "import or define `missing_name` inside `use`"),
        ("return [LIMIT for _ in range(2)]", "uses `LIMIT`", "pass it to `use`"),
        ("return (lambda: json)()", "uses `json`", "move `import json`"),
        ("global LIMIT\n    LIMIT = 4", "uses `LIMIT`", "pass it to `use`"),
    ],
)
def test_module_level_names_are_reported_with_definition_and_fix(project, body, message, fix):
    found = problems(project, "@step\ndef use():\n    " + body + "\n")
    assert len(found) == 1, [str(e) for e in found]
    error = found[0]
    assert message in error.message, str(error)
    assert fix in error.fix, str(error)
    lines = Path(error.location.file).read_text().splitlines()
    first = body.splitlines()[0].strip()
    assert lines[error.location.line - 1].strip() == first


def test_every_problem_of_every_step_is_reported_at_once(project):
    found = problems(project, '''
        @step
        def first():
            return json.dumps(LIMIT)

        @step
        def second(x):
            return helper(x)
    ''', pipeline_body="x = first()\n    second(x)")
    assert [e.message.split(",")[0] for e in found] == [
        "step `first` uses `json`",
        "step `first` uses `LIMIT`",
        "step `second` uses the function `helper` defined at module level (line 10 of "
        + found[2].message.split("line 10 of ")[1].split(")")[0] + ")",
    ]
    lines = [e.location.line for e in found]
    assert lines == sorted(lines)


def test_group_message_explains_the_rule(project):
    text = ISOLATION_PRELUDE + textwrap.dedent('''
        @step
        def use():
            return json.dumps(LIMIT)

        @pipeline
        def p():
            use()
    ''')
    with pytest.raises(DefinitionErrorGroup) as caught:
        project.pipeline(text, prelude=False).graph
    assert "2 problems in the steps of pipeline `p`" in str(caught.value)
    assert "imports inside its body" in str(caught.value)


def test_closure_variables_are_reported(project):
    module = project.load('''
        def build(factor):
            @step
            def scaled(x=1):
                return x * factor

            @pipeline
            def p():
                scaled()

            return p
    ''')
    with pytest.raises(StepDefinitionError) as caught:
        module.build(3).graph
    assert "uses `factor` from the function that encloses it" in caught.value.message
    assert "pass `factor` to the step as an argument" in caught.value.fix


def test_defaults_that_use_module_names(project):
    found = problems(project, '''
        @step
        def use(n=LIMIT, m=len):
            return n
    ''')
    assert len(found) == 1
    assert "a default value of step `use` uses `LIMIT`" in found[0].message


def test_helpers_in_a_project_module_are_suggested_by_module_name(project):
    project.write("steps_mod.py", '''
        import json
        from kale.sdk import step

        def tool(x):
            return x

        @step
        def use():
            return tool(json.dumps(1))
    ''')
    found = problems(project, "from steps_mod import use\n")
    by_name = {e.message.split("`")[3]: e for e in found}
    assert by_name["tool"].fix == "import it inside `use`: `from steps_mod import tool`"
    assert by_name["json"].fix == "move `import json` into `use`"
    assert Path(by_name["json"].location.file).name == "steps_mod.py"


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("@step\nasync def use():\n    return 1\n", "is `async def`"),
        ("@step\ndef use():\n    yield 1\n", "is a generator"),
        ("@step\ndef use(*args):\n    return args\n", "collects arguments with `*args`"),
        ("@step\ndef use(**kw):\n    return kw\n", "collects arguments with `**kw`"),
    ],
)
def test_step_shapes_that_cannot_run_on_kubeflow(project, source, message):
    found = problems(project, source)
    assert any(message in e.message for e in found), [str(e) for e in found]


def test_steps_outside_the_project_directory_are_rejected(project, tmp_path_factory):
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    (elsewhere / "far_steps.py").write_text(textwrap.dedent('''
        from kale.sdk import step

        @step
        def use():
            return 1
    '''))
    import sys

    sys.path.insert(0, str(elsewhere))
    try:
        found = problems(project, "from far_steps import use\n")
    finally:
        sys.path.remove(str(elsewhere))
    assert len(found) == 1
    assert "outside the project directory" in found[0].message
    assert str(project.root) in found[0].message or "project directory" in found[0].fix


@pytest.mark.parametrize(
    ("body", "arity"),
    [
        ("pass", 0),
        ("return", 0),
        ("return None", 0),
        ("return 1, 2", 2),
        ("if x:\n        return 1, 2\n    return 3, 4", 2),
        ("if x:\n        return 1, 2\n    return 3", None),
        ("return x", None),
        ("return (*x, 1)", None),
        ("def inner():\n        return 1, 2, 3\n    return 1, 2", 2),
        ("yield 1", None),
    ],
)
def test_return_arity(body, arity):
    tree = ast.parse(f"def f(x):\n    {body}\n")
    assert return_arity(tree.body[0]) == arity


def test_code_globals_reads_the_names_code_really_loads():
    from kale.graph.checks import code_globals

    namespace = {"Annotated": int, "DEFAULT": 1}
    source = textwrap.dedent('''
        def f(x: Annotated = DEFAULT):
            local: OnlyAnnotation = 1
            def inner():
                return Helper(x)
            class Local:
                attribute = Shared
            values = [json.dumps(v) for v in x]
            global Counter
            Counter = 1
            del Other
            return x.attribute_only, Local, inner, values
    ''')
    exec(compile(source, "<test>", "exec"), namespace)
    loaded, looked_up = code_globals(namespace["f"].__code__)
    assert loaded == {"Helper", "json", "Counter"}  # `del Other` makes Other a local
    assert "Shared" in looked_up
    assert not {"Annotated", "DEFAULT", "OnlyAnnotation", "attribute_only"} & loaded


def test_code_globals_with_more_than_256_names():
    from kale.graph.checks import code_globals

    names = [f"name_{i}" for i in range(300)]
    source = "def f():\n" + "".join(f"    x.{n}\n" for n in names) + "    return far_global\n"
    namespace = {}
    exec(source, namespace)
    loaded, _ = code_globals(namespace["f"].__code__)
    assert loaded == {"far_global", "x"}


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        # a default naming a module variable with the parameter's own name
        ("lr = 0.01\n@step\ndef use(lr=lr):\n    return lr\n", ["uses `lr`"]),
        # a multi-line dict default whose value comes after a `:` inside the braces
        ('LOW = 0.1\n@step\ndef use(levels={\n        "low":\n            LOW}):\n'
         '    return levels\n', ["uses `LOW`"]),
        # a lambda or comprehension default binds its own names
        ("@step\ndef use(key=lambda row: row[0], cols=[c for c in 'ab']):\n    return key\n",
         []),
        # nested annotations are never evaluated (steps compile with future annotations)
        ("@step\ndef use(x=1):\n    def helper(v: nums.Number) -> nums.Number:\n"
         "        return v\n    return helper(x)\n", []),
        ("@step\ndef use(a, /, b=2):\n    return a\n", ["positional-only parameters"]),
        ("@step\ndef use(x=1):\n    global RESULT\n    RESULT = x\n",
         ["declares `global RESULT` to create module state"]),
    ],
)
def test_step_check_corner_cases(project, source, expected):
    found = problems(project, source, pipeline_body="use(1)" if "a, /" in source else "use()")
    messages = [e.message for e in found]
    assert len(messages) == len(expected), messages
    for message, fragment in zip(messages, expected, strict=True):
        assert fragment in message


def test_fallback_imports_are_reported_as_imports(project):
    found = problems(project, textwrap.dedent('''
        try:
            import tomllib
        except ImportError:
            tomllib = None

        @step
        def use():
            return tomllib.loads("")
    '''))
    assert len(found) == 1
    assert "imported at module level" in found[0].message
    assert found[0].fix == "move `import tomllib` into `use`"


def test_star_imports_and_objects_are_named_for_what_they_are(project):
    found = problems(project, textwrap.dedent('''
        from os.path import *

        class Scaler:
            def __call__(self, x):
                return x

        scaler = Scaler()

        @step
        def use(x=1):
            return join("a"), scaler(x)
    '''))
    by_name = {e.message.split("`")[3]: e for e in found}
    assert "comes from `from os.path import *`" in by_name["join"].message
    assert by_name["join"].fix == "import it inside `use`: `from os.path import join`"
    assert "a module-level Scaler object" in by_name["scaler"].message
