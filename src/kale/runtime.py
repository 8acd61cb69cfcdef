"""Executing one step, the same way wherever it runs (a local process or a Kubeflow container).

The step runs from its own source in a clean namespace: only its arguments, builtins and what it
imports. Its working directory is the project root, which is also importable, so local packages
and files such as ``settings.json`` work. Inputs are read from the run store, outputs written to
it (``kale.marshal``), so every value that crosses a step boundary is serialized and read back.

The namespace contract the static checks rely on (``kale.graph.checks``): the ``def`` is compiled
with ``from __future__ import annotations``, bound under its own name, and ``__file__``,
``__name__`` and ``__package__`` are those of the step's module.
"""

from __future__ import annotations
import __future__

import builtins
import os
import sys
import time

from kale import marshal

# Step processes import this module on their start-up path: keep it to cheap imports.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    #: What a step's report callback receives: an event name and its details.
    Report = Callable[[str, dict[str, Any]], None]

_KALE_PACKAGE = os.path.dirname(os.path.abspath(__file__)) + os.sep

class StepTask:
    """Everything a process needs to run one step attempt. Small and picklable.

    ``inputs`` maps argument names to ``("value", value)`` or ``("stored", StoredValue as a
    dict)``; ``outputs`` are the names the pipeline binds the result to (``()`` keeps the return
    value as ``"return"``); ``unpacks`` says the result is a tuple to split among them.
    """

    __slots__ = ("attempt", "filename", "function_name", "inputs", "line", "module",
                 "output_dir", "outputs", "project_root", "source", "step", "unpacks")

    def __init__(self, step: str, function_name: str, source: str, filename: str, line: int,
                 module: str, project_root: str, output_dir: str,
                 inputs: dict[str, tuple[str, Any]] | None = None,
                 outputs: tuple[str, ...] = (), unpacks: bool = False,
                 attempt: int = 1) -> None:
        self.step, self.function_name, self.source = step, function_name, source
        self.filename, self.line, self.module = filename, line, module
        self.project_root, self.output_dir = project_root, output_dir
        self.inputs = inputs or {}
        self.outputs, self.unpacks, self.attempt = outputs, unpacks, attempt


class StepFailure(Exception):
    """A step attempt failed; ``details`` is what the run record and the summary show."""

    def __init__(self, details: dict[str, Any]) -> None:
        self.details = details
        super().__init__(details["message"])


def _describe(error: BaseException) -> str:
    """``Type: message``, even for an exception whose ``str()`` fails."""
    try:
        text = str(error)
    except Exception:
        text = "<its str() failed>"
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _user_traceback(error: BaseException) -> str:
    """The traceback of the user's own frames; Kale's frames are noise to the user."""
    import traceback

    try:
        summary = traceback.TracebackException.from_exception(error)
    except Exception:
        return f"{type(error).__name__} (its traceback could not be formatted)"
    frames = [frame for frame in summary.stack if not frame.filename.startswith(_KALE_PACKAGE)]
    summary.stack = traceback.StackSummary.from_list(frames)
    return "".join(summary.format()).rstrip()


def _load_function(task: StepTask) -> Callable[..., Any]:
    package = task.module.rpartition(".")[0] if task.module not in ("__main__",) else ""
    namespace: dict[str, Any] = {
        "__name__": task.module,
        "__file__": task.filename,
        "__package__": package or None,
        "__builtins__": builtins,
    }
    # Blank lines first, so tracebacks name the step's real lines in its file; a step defined
    # in an indented block (a class, an `if`) keeps its indentation inside an `if 1:`.
    if task.source[:1].isspace():
        text = "\n" * (task.line - 2) + "if 1:\n" + task.source
    else:
        text = "\n" * (task.line - 1) + task.source
    code = compile(text, task.filename, "exec", flags=__future__.annotations.compiler_flag,
                   dont_inherit=True)
    exec(code, namespace)
    return namespace[task.function_name]


def _read_inputs(task: StepTask) -> dict[str, Any]:
    values = {}
    for name, (kind, payload) in task.inputs.items():
        values[name] = marshal.load(payload) if kind == "stored" else payload
    return values


def _save_outputs(task: StepTask, result: Any) -> dict[str, dict[str, Any]]:
    folder = task.output_dir
    if task.unpacks:
        expected = len(task.outputs)
        if not isinstance(result, (tuple, list)) or len(result) != expected:
            got = (f"a {type(result).__name__} of {len(result)} values"
                   if isinstance(result, (tuple, list)) else f"a {type(result).__name__}")
            raise StepFailure({
                "kind": "output",
                "message": f"returned {got}, but the pipeline unpacks {expected}: "
                           f"`{', '.join(task.outputs)} = {task.function_name}(...)`",
                "fix": f"return exactly {expected} values (a tuple), or change the unpacking",
            })
        named = dict(zip(task.outputs, result, strict=True))
    elif task.outputs:
        named = {task.outputs[0]: result}
    else:
        named = {} if result is None else {"return": result}
    stored = {}
    for name, value in named.items():
        try:
            stored[name] = marshal.save(value, folder, name).to_json()
        except marshal.MarshalError as error:
            raise StepFailure({
                "kind": "output",
                "message": f"returned `{name}` as a {marshal.type_name(value)}, which "
                           f"cannot be passed to another step: {error}",
                "fix": error.advice,
            }) from None
    return stored


def run_step(task: StepTask, report: Report) -> dict[str, Any]:
    """Run one attempt: read inputs, run the user's function, write outputs.

    ``report("started", {...})`` is called just before the user's code runs (the step timeout
    counts from there). Returns what was stored; raises ``StepFailure`` with the user's own
    traceback when the step fails.
    """
    os.chdir(task.project_root)
    if task.project_root not in sys.path:
        sys.path.insert(0, task.project_root)
    try:
        function = _load_function(task)
        arguments = _read_inputs(task)
    except marshal.MarshalError as error:
        raise StepFailure({"kind": "setup", "message": f"could not read its inputs: {error}",
                           "fix": error.advice}) from None
    except Exception as error:
        raise StepFailure({
            "kind": "setup",
            "message": f"could not start: {_describe(error)}",
            "traceback": _user_traceback(error),
        }) from None
    report("started", {"time": time.time()})
    started = time.perf_counter()
    try:
        result = function(**arguments)
    except BaseException as error:  # sys.exit(), even KeyboardInterrupt, end only this step
        raise StepFailure({
            "kind": "error",
            "message": f"raised {_describe(error)}",
            "traceback": _user_traceback(error),
            "duration": time.perf_counter() - started,
        }) from None
    duration = time.perf_counter() - started
    return {"outputs": _save_outputs(task, result), "duration": duration}
