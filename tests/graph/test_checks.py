"""Step checks and module context: a step gets the module-level code it uses; what its process
cannot have is reported before anything runs."""

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


def context_of(project, step_source, pipeline_body="use()", step="use", **kwargs):
    """The module-level code a step runs before its `def`, as one text."""
    text = (ISOLATION_PRELUDE + textwrap.dedent(step_source)
            + "\n\n@pipeline\ndef p():\n    " + pipeline_body + "\n")
    graph = project.pipeline(text, prelude=False, **kwargs).graph
    return "".join(segment.text for segment in graph.step(step).function.context)


@pytest.mark.parametrize(
    ("body", "statements"),
    [
        ("return json.dumps(1)", ["import json\n"]),
        ("return os.path.join('a')", ["import os.path\n"]),
        ("return nums.Number", ["import numbers as nums\n"]),
        ("return OD()", ["from collections import OrderedDict as OD\n"]),
        ("return helper(1)", ["def helper(x):\n    return x\n"]),
        ("return Box()", ["class Box:\n    pass\n"]),
        ("return LIMIT", ["LIMIT = 3\n"]),
        ("return other_step()", ["from kale.sdk import pipeline, step\n", "def other_step():"]),
        ("return [LIMIT for _ in range(2)]", ["LIMIT = 3\n"]),
        ("return (lambda: json)()", ["import json\n"]),
    ],
)
def test_module_level_names_a_step_uses_travel_with_it(project, body, statements):
    context = context_of(project, "@step\ndef use():\n    " + body + "\n")
    for statement in statements:
        assert statement in context
    # Only what the step needs: nothing else of the module.
    others = {"import json\n", "LIMIT = 3\n", "class Box:\n", "def helper(x):\n",
              "from collections import OrderedDict as OD\n"} - {s[:20] for s in statements}
    for other in others:
        if not any(other.startswith(s[:10]) for s in statements):
            assert other not in context, (other, context)


def test_what_a_step_needs_is_followed_through_helpers_and_changes(project):
    context = context_of(project, '''
        import math
        import random
        import numbers as unused

        CONFIG = {"offset": 1}
        CONFIG["scale"] = 2
        random.seed(7)            # setup: every step gets it
        EXPENSIVE = [i for i in range(10)]

        def inner(x):
            return math.sqrt(x) * CONFIG["scale"]

        def outer(x):
            return inner(x) + CONFIG["offset"]

        @step
        def use(n=LIMIT):
            return outer(n)

        if __name__ == "__main__":
            SECRET = 1
    ''')
    for expected in ("import math\n", "import random\n", "CONFIG = {", "CONFIG[\"scale\"] = 2",
                     "random.seed(7)", "def inner(x):", "def outer(x):", "LIMIT = 3\n"):
        assert expected in context, (expected, context)
    for unexpected in ("unused", "EXPENSIVE", "SECRET", "__main__", "def use"):
        assert unexpected not in context, (unexpected, context)
    assert context.index("import math") < context.index("def inner") < context.index("def outer")


def test_a_self_contained_step_in_a_plain_module_needs_no_context(project):
    graph = project.graph('''
        @pipeline
        def p():
            load()
    ''')
    assert graph.step("load").function.context == ()


@pytest.mark.parametrize(
    ("body", "message", "fix"),
    [
        ("return missing_name", "uses `missing_name`, which is not defined",
         "import or define `missing_name` at module level or inside the step"),
        ("return LIMT", "uses `LIMT`, which is not defined", "did you mean `LIMIT`?"),
        ("global LIMIT\n    LIMIT = 4", "assigns the module-level `LIMIT` (`global LIMIT`)",
         "return the value instead and pass it to the steps that need it"),
        ("return ONLY_IN_MAIN", "which is defined only under `if __name__ == \"__main__\":`",
         "define `ONLY_IN_MAIN` above the `if __name__ == \"__main__\":` block"),
        ("return RESULT", "uses `RESULT`, which is created when the pipeline runs",
         "compute `RESULT` in a step and pass it as an argument"),
        ("return MADE_LATER", "created at run time by `make_later` (`global MADE_LATER`",
         "assign `MADE_LATER` at module level"),
        ("return p()", "uses `p`, which is a pipeline; a step cannot start a pipeline",
         "call the steps of that pipeline from this pipeline's body instead"),
        ("return launch()", "uses `launch`, which runs a pipeline",
         "call the steps of that pipeline"),
    ],
)
def test_names_a_step_process_cannot_have_are_reported(project, body, message, fix):
    text = (ISOLATION_PRELUDE
            + "def make_later():\n    global MADE_LATER\n    MADE_LATER = 1\n\n"
            + "def launch():\n    return p()\n\n"
            + "@step\ndef use():\n    " + body + "\n\n"
            + "@pipeline\ndef p():\n    use()\n\n"
            + "RESULT = p.__repr__()\n\n"
            + "if __name__ == '__main__':\n    ONLY_IN_MAIN = 1\n")
    module = project.load(text, prelude=False)
    module.MADE_LATER = 1  # as if make_later() had run
    with pytest.raises((StepDefinitionError, DefinitionErrorGroup)) as caught:
        module.p.graph
    found = getattr(caught.value, "errors", [caught.value])
    assert len(found) == 1, [str(e) for e in found]
    error = found[0]
    assert message in error.message, str(error)
    assert fix in error.fix, str(error)
    lines = Path(error.location.file).read_text().splitlines()
    assert lines[error.location.line - 1].strip() == body.splitlines()[0].strip()


def test_every_problem_of_every_step_is_reported_at_once(project):
    found = problems(project, '''
        @step
        def first():
            return json.dumps(LIMT)

        @step
        def second(x):
            return helpr(x)
    ''', pipeline_body="x = first()\n    second(x)")
    assert [e.message for e in found] == [
        "step `first` uses `LIMT`, which is not defined",
        "step `second` uses `helpr`, which is not defined",
    ]
    assert "did you mean `helper`?" in found[1].fix


def test_group_message_explains_the_rule(project):
    text = ISOLATION_PRELUDE + textwrap.dedent('''
        @step
        def use():
            return json.dumps(LIMT) + nowhere

        @pipeline
        def p():
            use()
    ''')
    with pytest.raises(DefinitionErrorGroup) as caught:
        project.pipeline(text, prelude=False).graph
    assert "2 problems in the steps of pipeline `p`" in str(caught.value)
    assert "the imports, functions and constants of its module" in str(caught.value)


def test_a_name_a_helper_needs_is_reported_where_the_helper_uses_it(project):
    found = problems(project, '''
        def broken_helper():
            return undefined_thing

        @step
        def use():
            return broken_helper()
    ''')
    assert len(found) == 1
    assert "uses `undefined_thing`, which is not defined" in found[0].message
    lines = Path(found[0].location.file).read_text().splitlines()
    assert lines[found[0].location.line - 1].strip() == "return undefined_thing"


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


def test_defaults_may_use_module_names(project):
    context = context_of(project, '''
        @step
        def use(n=LIMIT, m=len, key=lambda row: row[0]):
            return n
    ''')
    assert "LIMIT = 3\n" in context


def test_a_step_in_a_project_module_gets_that_module_s_context(project):
    project.write("steps_mod.py", '''
        import json
        from kale.sdk import step

        UNUSED = open(__file__).read()

        def tool(x):
            return x

        @step
        def use():
            return tool(json.dumps(1))
    ''')
    graph = project.graph(ISOLATION_PRELUDE + "from steps_mod import use\n\n"
                          "@pipeline\ndef p():\n    use()\n", prelude=False)
    context = graph.step("use").function.context
    assert {Path(segment.filename).name for segment in context} == {"steps_mod.py"}
    text = "".join(segment.text for segment in context)
    assert "import json\n" in text and "def tool(x):" in text and "UNUSED" not in text
    assert "json" in graph.step_imports["use"]


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("@step\nasync def use():\n    return 1\n", "is `async def`"),
        ("@step\ndef use():\n    yield 1\n", "is a generator"),
        ("@step\ndef use(*args):\n    return args\n", "collects arguments with `*args`"),
        ("@step\ndef use(**kw):\n    return kw\n", "collects arguments with `**kw`"),
    ],
)
def test_step_shapes_that_cannot_run_on_kubeflow(project, source, expected):
    found = problems(project, source)
    assert any(expected in e.message for e in found), [str(e) for e in found]


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
        ("lr = 0.01\n@step\ndef use(lr=lr):\n    return lr\n", []),
        # a multi-line dict default whose value comes after a `:` inside the braces
        ('LOW = 0.1\n@step\ndef use(levels={\n        "low":\n            LOW}):\n'
         '    return levels\n', []),
        # a lambda or comprehension default binds its own names
        ("@step\ndef use(key=lambda row: row[0], cols=[c for c in 'ab']):\n    return key\n",
         []),
        # nested annotations are never evaluated (steps compile with future annotations)
        ("@step\ndef use(x=1):\n    def helper(v: nums.Number) -> Nowhere:\n"
         "        return v\n    return helper(x)\n", []),
        ("@step\ndef use(a, /, b=2):\n    return a\n", ["positional-only parameters"]),
        ("@step\ndef use(x=1):\n    global RESULT\n    RESULT = x\n",
         ["assigns the module-level `RESULT` (`global RESULT`)"]),
    ],
)
def test_step_check_corner_cases(project, source, expected):
    found = problems(project, source, pipeline_body="use(1)" if "a, /" in source else "use()")
    messages = [e.message for e in found]
    assert len(messages) == len(expected), messages
    for message, fragment in zip(messages, expected, strict=True):
        assert fragment in message


def test_fallback_imports_travel_whole(project):
    context = context_of(project, textwrap.dedent('''
        try:
            import tomllib
        except ImportError:
            tomllib = None

        @step
        def use():
            return tomllib.loads("")
    '''))
    assert "try:\n    import tomllib\nexcept ImportError:\n    tomllib = None\n" in context


def test_star_imports_and_objects_travel(project):
    context = context_of(project, textwrap.dedent('''
        from os.path import *
        from json import *

        class Scaler:
            def __call__(self, x):
                return x

        scaler = Scaler()

        @step
        def use(x=1):
            return join("a"), scaler(x)
    '''))
    assert "from os.path import *\n" in context and "from json import *" not in context
    assert "class Scaler:" in context and "scaler = Scaler()" in context


def test_the_pipeline_call_and_main_block_never_travel(project):
    module = project.load(ISOLATION_PRELUDE + textwrap.dedent('''
        import sys
        sys.path.insert(0, "lib")

        def main():
            return p()

        @step
        def use():
            return LIMIT

        @pipeline
        def p():
            use()

        p.__repr__()
        main()
        run = p.__repr__()

        if __name__ == "__main__":
            p()
    '''), prelude=False)
    context = "".join(s.text for s in module.p.graph.step("use").function.context)
    assert "sys.path.insert(0, \"lib\")" in context and "import sys\n" in context
    assert "p.__repr__" not in context and "main" not in context and "run =" not in context


def test_module_future_features_apply_to_the_context(project):
    module = project.load("from __future__ import annotations\n" + ISOLATION_PRELUDE + '''
def typed(x: Nowhere) -> Nowhere:
    return x

@step
def use():
    return typed(1)

@pipeline
def p():
    use()
''', prelude=False)
    function = module.p.graph.step("use").function
    assert function.futures == ("annotations",)
    assert "__future__" not in "".join(s.text for s in function.context)


def test_only_process_configuration_runs_in_every_step(project):
    context = context_of(project, textwrap.dedent('''
        import os
        import subprocess
        import warnings
        from random import seed
        from kale.local import default_parallelism

        seed(3)
        os.environ["MODE"] = "test"
        warnings.filterwarnings("ignore")
        subprocess.run(["true"])
        default_parallelism()
        REGISTRY = []
        REGISTRY.append(1)

        @step
        def use():
            return REGISTRY
    '''))
    for expected in ("seed(3)", 'os.environ["MODE"] = "test"', 'warnings.filterwarnings',
                     "REGISTRY.append(1)"):
        assert expected in context, (expected, context)
    assert "subprocess.run" not in context and "default_parallelism" not in context


def test_module_level_calls_that_fill_globals_travel(project):
    # `load()` assigns CONFIG with `global`; `add(...)` and the `@register` decorator change
    # REGISTRY in place; a fresh import runs them all, so the step's context does too. A
    # function that assigns a global but is never called at module level is still an error.
    context = context_of(project, textwrap.dedent('''
        REGISTRY = {}

        def add(key, value):
            REGISTRY[key] = value

        def register(fn):
            add(fn.__name__, fn)
            return fn

        def load():
            global CONFIG
            CONFIG = {"a": 1}

        add("one", 1)
        load()

        @register
        def handler():
            return "handled"

        def unrelated():
            return 0

        unrelated()

        @step
        def use():
            return CONFIG, REGISTRY
    '''))
    for expected in ("REGISTRY = {}\n", "def add(", "def register(", "def load(",
                     'add("one", 1)\n', "load()\n", "@register\ndef handler():"):
        assert expected in context, (expected, context)
    assert "unrelated" not in context


def test_a_dotted_import_is_not_replaced_by_a_later_import_of_its_package(project):
    context = context_of(project, textwrap.dedent('''
        import xml.etree.ElementTree
        import xml.dom.minidom

        @step
        def use():
            return xml.etree.ElementTree.fromstring("<a/>").tag
    '''))
    assert "import xml.etree.ElementTree\n" in context and "import xml.dom.minidom\n" in context


def test_statements_sharing_a_line_with_a_needed_one_run_with_it(project):
    # A context is made of whole lines: `X = 2; Y = helper(X)` runs whole, so `helper` travels
    # too; a pipeline call on a needed line is an error, not a NameError in the step.
    context = context_of(project, textwrap.dedent('''
        X = 2; Y = helper(X)

        @step
        def use():
            return X
    '''))
    assert "def helper(x):" in context and "X = 2; Y = helper(X)\n" in context
    module = project.load(ISOLATION_PRELUDE + textwrap.dedent('''
        @step
        def use():
            return N

        @pipeline
        def p():
            use()

        N = 2; p.__repr__()
    '''), prelude=False)
    with pytest.raises(StepDefinitionError) as caught:
        module.p.graph
    lines = Path(caught.value.location.file).read_text().splitlines()
    line = caught.value.location.line
    assert lines[line - 1] == "N = 2; p.__repr__()" and caught.value.location.column == 7
    assert f"needs line {line} of" in caught.value.message
    assert "also holds a statement that runs a pipeline" in caught.value.message
    assert "on a line of its own" in caught.value.fix


def test_a_step_whose_context_reads_the_command_line_of_a_script_given_arguments(
        project, monkeypatch):
    # A step's process gets no arguments (locally and on Kubeflow): with the script given
    # some, a step using `args` would silently see the defaults.
    step_source = '''
        import argparse
        parser = argparse.ArgumentParser()
        parser.add_argument("--epochs", type=int, default=3)
        args = parser.parse_args()

        @step
        def use():
            return args.epochs
    '''
    monkeypatch.setattr("sys.argv", ["flow.py"])
    assert "args = parser.parse_args()\n" in context_of(project, textwrap.dedent(step_source))
    monkeypatch.setattr("sys.argv", ["flow.py", "--epochs", "7"])
    found = problems(project, step_source)
    assert len(found) == 1
    assert "reads the command line, but a step's process does not get the script's " \
        "arguments (`--epochs 7`)" in found[0].message
    lines = Path(found[0].location.file).read_text().splitlines()
    assert lines[found[0].location.line - 1] == "args = parser.parse_args()"
    assert "under `if __name__ == \"__main__\":`" in found[0].fix


def test_a_deleted_or_only_annotated_module_name_is_reported(project):
    found = problems(project, '''
        TMP = 1
        del TMP
        y: int

        @step
        def use():
            return TMP, y
    ''')
    messages = sorted(error.message for error in found)
    assert len(messages) == 2, messages
    assert "uses `TMP`, which `del TMP` removes at line" in messages[0]
    assert "uses `y`, which line" in messages[1] and "only annotates" in messages[1]
