"""The runtime that executes one step: its own module namespace with its context, inputs read
back, outputs written, timeouts with a grace period."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from kale import marshal
from kale.runtime import StepInvocation, run_step


@pytest.fixture
def task_for(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # run_step moves to the project root; restore afterwards
    monkeypatch.setattr("sys.path", list(__import__("sys").path))

    def make(source: str, line: int = 1, **fields) -> StepInvocation:
        name = source.split("def ", 1)[1].split("(", 1)[0]
        defaults = dict(step=name, function_name=name, source=source,
                        filename=str(tmp_path / "steps.py"), line=line, module="steps",
                        project_root=str(tmp_path), output_dir=str(tmp_path / "out"))
        return StepInvocation(**{**defaults, **fields})

    return make


def failure(task) -> dict:
    """The error details of a step attempt that must fail."""
    result = run_step(task, lambda *_: None)
    assert result["status"] == "failed", result
    return result["error"]


def test_an_indented_step_keeps_its_strings_exact(task_for):
    source = textwrap.indent(textwrap.dedent('''\
        def report(x):
            text = """Header

        body line
        """
            return text
    '''), "    ")
    task = task_for(source, line=3, inputs={"x": ("value", 1)}, outputs=("text",))
    result = run_step(task, lambda *_: None)
    stored = result["outputs"]["text"]
    assert marshal.load(stored) == "Header\n\n    body line\n    "


def test_the_namespace_is_clean_and_the_step_may_call_itself(task_for):
    task = task_for(textwrap.dedent('''\
        def count(n):
            if n:
                return count(n - 1)
            return sorted(k for k in globals() if not k.startswith("__"))
    '''), inputs={"n": ("value", 2)}, outputs=("x",))
    result = run_step(task, lambda *_: None)
    assert json.loads(Path(result["outputs"]["x"]["path"]).read_text()) == ["count"]


def test_failures_carry_the_user_traceback_with_real_line_numbers(task_for, tmp_path):
    task = task_for("def bad():\n    return 1 / 0\n", line=10)
    details = failure(task)
    assert details["message"] == "raised ZeroDivisionError: division by zero"
    assert f'File "{tmp_path / "steps.py"}", line 11, in bad' in details["traceback"]
    assert "kale/runtime.py" not in details["traceback"]


def test_started_is_reported_before_user_code(task_for):
    events = []
    task = task_for("def s():\n    return None\n")
    run_step(task, lambda event, details: events.append(event))
    assert events == ["started"]


def test_sys_exit_in_a_step_is_a_failure(task_for):
    task = task_for("def s():\n    import sys\n    sys.exit(4)\n")
    assert failure(task)["message"] == "raised SystemExit: 4"


@pytest.mark.parametrize(("body", "message"), [
    ("raise KeyboardInterrupt('pressed')", "raised KeyboardInterrupt: pressed"),
    ("class Stop(BaseException):\n        pass\n    raise Stop('custom')", "raised Stop: custom"),
    ("class Weird(Exception):\n        def __str__(self):\n            raise RuntimeError()\n"
     "    raise Weird()", "raised Weird: <its str() failed>"),
])
def test_any_exception_from_user_code_is_the_step_failing(task_for, body, message):
    task = task_for(f"def s():\n    {body}\n")
    details = failure(task)
    assert details["message"] == message
    assert "kale/" not in details["traceback"]


def test_an_input_whose_library_is_missing_names_it(task_for, tmp_path, monkeypatch):
    np = pytest.importorskip("numpy")
    stored = marshal.save(np.zeros(3), tmp_path / "in", "x").to_json()
    task = task_for("def s(x):\n    return 1\n", inputs={"x": ("stored", stored)})
    import sys

    monkeypatch.setitem(sys.modules, "numpy", None)
    details = failure(task)
    assert "could not read its inputs: reading a numpy.ndarray needs the `numpy` library" in \
        details["message"]
    assert "install numpy here" in details["fix"]


def test_module_context_runs_first_with_its_real_lines(task_for, tmp_path):
    context = (
        (str(tmp_path / "steps.py"), 1, "import math\nSCALE = 3\n"),
        (str(tmp_path / "steps.py"), 5, "def helper(x):\n    return math.sqrt(x) * SCALE\n"),
        (str(tmp_path / "steps.py"), 9, "def broken():\n    return 1 / 0\n"),
    )
    source = "def s(x):\n    broken() if x < 0 else None\n    return helper(x)\n"
    task = task_for(source, line=12, context=context, inputs={"x": ("value", 16)},
                    outputs=("y",))
    result = run_step(task, lambda *_: None)
    assert marshal.load(result["outputs"]["y"]) == 12.0
    task = task_for(source, line=12, context=context, inputs={"x": ("value", -1)},
                    outputs=("y",))
    trace = failure(task)["traceback"]
    assert "line 13, in s" in trace and "line 10, in broken" in trace


def test_precompiled_code_runs_without_compiling_with_its_real_lines(task_for, tmp_path,
                                                                     monkeypatch):
    from kale import runtime

    context = ((str(tmp_path / "steps.py"), 1, "SCALE = 3\n"),)
    source = "def s(x):\n    return x * SCALE if x else 1 / x\n"
    task = task_for(source, line=5, context=context, inputs={"x": ("value", 2)},
                    outputs=("y",))
    monkeypatch.setattr(runtime, "_COMPILED", {})
    runtime.precompile(task)
    assert len(runtime._COMPILED) == 2  # the context, then the step

    def no_compile(*_args, **_kwargs):
        raise AssertionError("compiled again")

    monkeypatch.setattr(runtime, "compile", no_compile, raising=False)
    assert marshal.load(run_step(task, lambda *_: None)["outputs"]["y"]) == 6
    trace = failure(task_for(source, line=5, context=context, inputs={"x": ("value", 0)},
                             outputs=("y",)))["traceback"]
    assert "line 6, in s" in trace


def test_code_that_does_not_compile_is_left_for_the_step_to_report(task_for, monkeypatch):
    from kale import runtime

    monkeypatch.setattr(runtime, "_COMPILED", {})
    task = task_for("def s(:\n    return 1\n")
    runtime.precompile(task)
    assert runtime._COMPILED == {}
    details = failure(task)
    assert details["kind"] == "setup" and "SyntaxError" in details["message"]


def test_module_level_code_that_fails_is_a_setup_failure(task_for, tmp_path):
    context = ((str(tmp_path / "steps.py"), 2, "LIMIT = int('x')\n"),)
    details = failure(task_for("def s():\n    return LIMIT\n", line=4, context=context))
    assert details["kind"] == "setup"
    assert details["message"].startswith("could not start: its module-level code raised "
                                         "ValueError")
    assert "line 2, in <module>" in details["traceback"]


def test_a_step_of_the_script_is_main_while_it_runs(task_for, tmp_path):
    import os
    import sys

    main = sys.modules["__main__"]
    context = ((str(tmp_path / "steps.py"), 1, "import pickle\nclass Box:\n    pass\n"),)
    source = ("def s():\n    import os\n"
              "    return pickle.loads(pickle.dumps(Box())).__class__ is Box, "
              "os.environ['KALE_IN_STEP']\n")
    task = task_for(source, line=5, context=context, module="__main__",
                    outputs=("same", "step"), unpacks=True)
    result = run_step(task, lambda *_: None)
    assert marshal.load(result["outputs"]["same"]) is True
    assert marshal.load(result["outputs"]["step"]) == "s"
    assert sys.modules["__main__"] is main  # given back afterwards
    assert "KALE_IN_STEP" not in os.environ


def test_a_step_sees_the_command_line_of_its_script_run_without_arguments(task_for, tmp_path):
    import sys

    argv = sys.argv
    context = ((str(tmp_path / "steps.py"), 1,
                "import argparse, sys\nparser = argparse.ArgumentParser()\n"
                "parser.add_argument('--epochs', type=int, default=3)\n"
                "args = parser.parse_args()\n"),)
    task = task_for("def s():\n    return args.epochs, sys.argv\n", line=6, context=context,
                    outputs=("epochs", "argv"), unpacks=True)
    result = run_step(task, lambda *_: None)
    assert result["status"] == "done", result
    assert marshal.load(result["outputs"]["epochs"]) == 3
    assert marshal.load(result["outputs"]["argv"]) == [str(tmp_path / "steps.py")]
    assert sys.argv is argv  # given back afterwards


def test_future_features_of_the_module_apply_to_its_context(task_for, tmp_path):
    context = ((str(tmp_path / "steps.py"), 2, "def f(x: Undefined) -> Nope:\n    return x\n"),)
    task = task_for("def s():\n    return f(2)\n", line=5, context=context,
                    futures=("annotations",), outputs=("y",))
    assert marshal.load(run_step(task, lambda *_: None)["outputs"]["y"]) == 2
    task = task_for("def s():\n    return f(2)\n", line=5, context=context, outputs=("y",))
    assert "NameError" in failure(task)["message"]


def test_parameters_have_their_macros_expanded_with_the_run(task_for):
    task = task_for("def s(name):\n    return name\n", outputs=("n",), run_id="run-1",
                    created=0.0,
                    inputs={"name": ("parameter", "x-[[RunUUID]]-[[CurrentTime]]")})
    value = marshal.load(run_step(task, lambda *_: None)["outputs"]["n"])
    assert value == "x-run-1-19700101000000"


def test_a_timeout_interrupts_the_step_and_a_caught_one_still_fails(task_for):
    task = task_for("def s():\n    import time\n    time.sleep(5)\n", timeout=0.2)
    details = failure(task)
    assert details["kind"] == "timeout" and details["message"] == "timed out after 0.2s"
    assert "StepTimeout" in details["traceback"]
    task = task_for("def s():\n    import time\n    try:\n        time.sleep(5)\n"
                    "    except BaseException:\n        return 1\n", timeout=0.2)
    assert failure(task)["kind"] == "timeout"


STUBBORN = '''
from kale.runtime import StepInvocation, run_step
source = """def s():
    import time
    while True:
        try:
            time.sleep(10)
        except BaseException:
            pass
"""
task = StepInvocation(step="s", function_name="s", source=source, filename="steps.py", line=1,
                      module="steps", project_root=ROOT, output_dir=ROOT + "/out",
                      timeout=0.2, grace=0.3, result_path=ROOT + "/result")
run_step(task, lambda *_: None)
'''


def test_a_step_that_ignores_its_timeout_is_ended_after_the_grace_period(tmp_path):
    """In a process of its own (the runtime ends it): the result says what happened."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", f"ROOT = {str(tmp_path)!r}\n" + STUBBORN],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 1
    outcome = json.loads((tmp_path / "result").read_bytes())
    assert outcome["status"] == "failed" and outcome["error"]["kind"] == "timeout"
    assert "did not stop within 0.3s" in outcome["error"]["message"]
    assert "did not stop within 0.3s" in done.stderr
