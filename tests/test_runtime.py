"""The runtime that executes one step: clean namespace, inputs read back, outputs written."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from kale import marshal
from kale.runtime import StepFailure, StepTask, run_step


@pytest.fixture
def task_for(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # run_step moves to the project root; restore afterwards
    monkeypatch.setattr("sys.path", list(__import__("sys").path))

    def make(source: str, line: int = 1, **fields) -> StepTask:
        name = source.split("def ", 1)[1].split("(", 1)[0]
        defaults = dict(step=name, function_name=name, source=source,
                        filename=str(tmp_path / "steps.py"), line=line, module="steps",
                        project_root=str(tmp_path), output_dir=str(tmp_path / "out"))
        return StepTask(**{**defaults, **fields})

    return make


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
    with pytest.raises(StepFailure) as caught:
        run_step(task, lambda *_: None)
    details = caught.value.details
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
    with pytest.raises(StepFailure, match="raised SystemExit: 4"):
        run_step(task, lambda *_: None)


@pytest.mark.parametrize(("body", "message"), [
    ("raise KeyboardInterrupt('pressed')", "raised KeyboardInterrupt: pressed"),
    ("class Stop(BaseException):\n        pass\n    raise Stop('custom')", "raised Stop: custom"),
    ("class Weird(Exception):\n        def __str__(self):\n            raise RuntimeError()\n"
     "    raise Weird()", "raised Weird: <its str() failed>"),
])
def test_any_exception_from_user_code_is_the_step_failing(task_for, body, message):
    task = task_for(f"def s():\n    {body}\n")
    with pytest.raises(StepFailure) as caught:
        run_step(task, lambda *_: None)
    assert caught.value.details["message"] == message
    assert "kale/" not in caught.value.details["traceback"]


def test_an_input_whose_library_is_missing_names_it(task_for, tmp_path, monkeypatch):
    np = pytest.importorskip("numpy")
    stored = marshal.save(np.zeros(3), tmp_path / "in", "x").to_json()
    task = task_for("def s(x):\n    return 1\n", inputs={"x": ("stored", stored)})
    import sys

    monkeypatch.setitem(sys.modules, "numpy", None)
    with pytest.raises(StepFailure) as caught:
        run_step(task, lambda *_: None)
    assert "could not read its inputs: reading a numpy.ndarray needs the `numpy` library" in \
        caught.value.details["message"]
    assert "install numpy here" in caught.value.details["fix"]
