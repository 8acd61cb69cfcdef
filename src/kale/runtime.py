"""Executing one step, the same way wherever it runs (a local process or a Kubeflow container).

This module owns the step contract: a ``StepInvocation`` in (the step's code and module context,
its inputs by reference, the run's id and start time for macros, the timeout and its grace
period, the outputs the pipeline binds), a result out. The local runner (``kale.local``) and the
Kubeflow component (``kale.kfp.entry``) only build an invocation and read the result, so a local
run rehearses exactly what a cluster run does.

The step runs from its own source in a module namespace of its own: the module-level statements
it needs (``kale.graph.context``) run first, then its ``def``. Its working directory is the
project root, which is also importable, so local packages and files such as ``settings.json``
work. Inputs are read with ``kale.marshal``, outputs written with it, so every value that crosses
a step boundary is serialized and read back.

The namespace contract the static checks rely on (``kale.graph.checks``): the ``def`` is compiled
with ``from __future__ import annotations``, bound under its own name, and ``__file__``,
``__name__`` and ``__package__`` are those of the step's module. A step of the script being run
sees its namespace as ``sys.modules["__main__"]``, as it would in ``python script.py``.

A timeout raises ``StepTimeout`` in the step's code (a BaseException, so ``except Exception``
does not swallow it); a step still running ``grace`` seconds later is ended with every process
it started, and its result says it timed out.
"""

from __future__ import annotations
import __future__

import builtins
import contextlib
import os
import signal
import sys
import time
import types

from kale import logs, macros, marshal

# Step processes import this module on their start-up path: keep it to cheap imports.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    #: What a step's report callback receives: an event name and its details.
    Report = Callable[[str, dict[str, Any]], None]

_KALE_PACKAGE = os.path.dirname(os.path.abspath(__file__)) + os.sep

#: Set to the step's name while a step runs, so code the step runs knows it (a pipeline must
#: never start from inside a step).
IN_STEP = "KALE_IN_STEP"

#: Seconds a timed-out step has to unwind (finally blocks, context managers) before its process
#: and everything it started are ended.
DEFAULT_GRACE = 10.0


def grace_seconds() -> float:
    """``KALE_TIMEOUT_GRACE`` or the default: read where the run is started."""
    try:
        return max(0.0, float(os.environ.get("KALE_TIMEOUT_GRACE", DEFAULT_GRACE)))
    except ValueError:
        return DEFAULT_GRACE


class StepInvocation:
    """Everything a process needs to run one step attempt. Small, picklable, and built from
    plain values only, so it can be written into a Kubeflow component too.

    ``inputs`` maps argument names to ``(kind, payload)``: ``value`` and ``constant`` (as is),
    ``parameter`` (a pipeline parameter: macros such as ``[[RunUUID]]`` expanded here), ``json``
    (Kale's tagged JSON text), ``shaped`` (a list/dict parameter as Kubeflow carried it, with
    the default that gives its shape back), ``shaped_item`` (an item of a list parameter, with
    the default's items, the one it equals giving its shape), ``stored`` (a ``StoredValue`` as a
    dict), ``artifact`` (a folder ``kale.marshal`` wrote). ``context`` is ``(filename, first
    line, text)`` of the module-level code to run before the ``def``; ``outputs`` are the names
    the pipeline binds the result to (``()`` keeps a returned value as ``"return"``);
    ``unpacks`` says the result is a tuple to split among them. ``store``, when set (a local
    run's folder), is the only place ``stored`` inputs are read from. ``item`` is one item of a
    loop: ``(token, the list or None)`` (``kale.items``), the list as an input of its own;
    ``collected`` a list of inputs, one per iteration of a loop.

    ``item_outputs`` are the outputs a loop of the pipeline iterates: the result reports their
    items' tokens (``reports``, ``"items:<output>"``). A condition step (``branch``) returns the
    index of the branch to run, reported as ``"branch"``; it stores nothing.

    What the step logs (``kale.sdk.logging``) is written to ``artifact_dir`` (by default
    ``artifacts/attempt-<n>`` beside ``output_dir``), and the result lists it (``logged``);
    ``artifacts`` are the ``@artifact`` files, (name, path), that the step must write;
    ``echo_metrics`` prints each metric as ``name=value`` (on Kubeflow, for Katib).
    """

    __slots__ = ("artifact_dir", "artifacts", "attempt", "branch", "context", "created",
                 "echo_metrics", "filename", "function_name", "futures", "grace", "inputs",
                 "item_outputs", "line", "module", "output_dir", "outputs", "project_root",
                 "result_path", "run_id", "source", "step", "store", "timeout", "unpacks")

    def __init__(self, step: str, function_name: str, source: str, filename: str, line: int,
                 module: str, project_root: str, output_dir: str,
                 inputs: dict[str, tuple[str, Any]] | None = None,
                 outputs: tuple[str, ...] = (), unpacks: bool = False, attempt: int = 1,
                 context: tuple[tuple[str, int, str], ...] = (), futures: tuple[str, ...] = (),
                 timeout: float | None = None, grace: float = DEFAULT_GRACE, run_id: str = "",
                 created: float | None = None, result_path: str | None = None,
                 store: str | None = None, item_outputs: tuple[str, ...] = (),
                 branch: bool = False, artifacts: tuple[tuple[str, str], ...] = (),
                 artifact_dir: str | None = None, echo_metrics: bool = False) -> None:
        self.step, self.function_name, self.source = step, function_name, source
        self.filename, self.line, self.module = filename, line, module
        self.project_root, self.output_dir = project_root, output_dir
        self.inputs = inputs or {}
        self.outputs, self.unpacks, self.attempt = outputs, unpacks, attempt
        self.context, self.futures = context, futures
        self.timeout, self.grace = timeout, grace
        self.run_id, self.created, self.result_path = run_id, created, result_path
        self.store = store
        self.item_outputs, self.branch = item_outputs, branch
        self.artifacts, self.echo_metrics = artifacts, echo_metrics
        self.artifact_dir = artifact_dir or attempt_artifacts(output_dir, attempt)


def attempt_artifacts(output_dir: str, attempt: int) -> str:
    """Where an attempt's logged artifacts go by default: ``artifacts/attempt-<n>`` in the
    folder of its ``outputs`` (a local run's ``steps/<step>/``)."""
    return os.path.join(os.path.dirname(os.path.normpath(output_dir)), "artifacts",
                        f"attempt-{attempt}")


class StepFailure(Exception):
    """A step attempt failed; ``details`` is what the run record and the summary show."""

    def __init__(self, details: dict[str, Any]) -> None:
        self.details = details
        super().__init__(details["message"])


class StepTimeout(BaseException):
    """The step ran longer than its timeout. A BaseException, as KeyboardInterrupt is: the
    user's own ``except Exception`` must not swallow it."""


def _describe(error: BaseException) -> str:
    """``Type: message``, even for an exception whose ``str()`` fails."""
    try:
        errors = sys.modules.get("kale.errors")
        # A Kale error's str() is its whole rendering (location, fix): the message is enough.
        text = error.message if errors is not None and isinstance(error, errors.KaleError) \
            else str(error)
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


def _compile_units(context: tuple[tuple[str, int, str], ...]) -> list[tuple[str, str]]:
    """The context as whole-file texts to compile, one per run of segments of one file in
    increasing line order: blank lines stand in for what is left out, so tracebacks and
    ``inspect`` name the file's real lines."""
    units: list[tuple[str, list[str], int]] = []
    for filename, line, text in context:
        if units and units[-1][0] == filename and units[-1][2] <= line:
            name, parts, at = units[-1]
        else:
            name, parts, at = filename, [], 1
            units.append((name, parts, at))
        parts.append("\n" * (line - at))
        parts.append(text if text.endswith("\n") else text + "\n")
        units[-1] = (name, parts, line + text.count("\n") + (not text.endswith("\n")))
    return [(name, "".join(parts)) for name, parts, _ in units]


def _future_flags(futures: tuple[str, ...]) -> int:
    flags = 0
    for feature in futures:
        flag = getattr(getattr(__future__, feature, None), "compiler_flag", 0)
        flags |= flag
    return flags


def _code_units(task: StepInvocation) -> list[tuple[str, str, int]]:
    """What a step's process compiles and runs, in order: its module context, then the step's
    own function, each as ``(filename, text, compiler flags)``."""
    flags = _future_flags(task.futures)
    units = [(filename, text, flags) for filename, text in _compile_units(task.context)]
    # Blank lines first, so tracebacks name the step's real lines in its file; a step defined
    # in an indented block (a class, an `if`) keeps its indentation inside an `if 1:`.
    if task.source[:1].isspace():
        text = "\n" * (task.line - 2) + "if 1:\n" + task.source
    else:
        text = "\n" * (task.line - 1) + task.source
    units.append((task.filename, text, flags | __future__.annotations.compiler_flag))
    return units


#: Code compiled ahead by ``precompile``, in the process the step's process is forked from.
_COMPILED: dict[tuple[str, str, int], types.CodeType] = {}
_COMPILED_LIMIT = 256


def precompile(task: StepInvocation) -> None:
    """Compile a step's code in a process its step processes are forked from (the local
    runner's zygote): each iteration of a loop, each step of a chain of one function, runs
    the code compiled once instead of compiling it again (about a tenth of a millisecond,
    and fifty copied pages, a step). What does not compile is left for the step to report."""
    for unit in _code_units(task):
        if unit not in _COMPILED and len(_COMPILED) < _COMPILED_LIMIT:
            with contextlib.suppress(Exception):
                _COMPILED[unit] = _compile(unit)


def _compile(unit: tuple[str, str, int]) -> types.CodeType:
    filename, text, flags = unit
    return compile(text, filename, "exec", flags=flags, dont_inherit=True)


def _load_function(task: StepInvocation) -> tuple[Callable[..., Any], dict[str, Any]]:
    package = task.module.rpartition(".")[0] if task.module != "__main__" else ""
    module = types.ModuleType(task.module)
    namespace = module.__dict__
    namespace.update({"__file__": task.filename, "__package__": package or None,
                      "__builtins__": builtins})
    # As `python script.py` with no arguments sees it, locally and on Kubeflow alike (a step
    # never gets the script's arguments: kale.graph.context reports a step that would read them).
    sys.argv = [task.filename]
    if task.module == "__main__":
        # As in `python script.py`: pickle and multiprocessing find the step's classes and
        # functions in __main__.
        sys.modules["__main__"] = module
    if task.context:
        from kale.marshal.backends import CLASS_HOMES

        CLASS_HOMES[task.module] = namespace
    for unit in _code_units(task):
        exec(_COMPILED.get(unit) or _compile(unit), namespace)
    return namespace[task.function_name], namespace


def shaped(value: Any, template: Any) -> Any:
    """A list or dict parameter as the step would have had it locally: Kubeflow carried it as a
    protobuf value, which makes every number a float, tuples lists, and sorts dict keys. The
    default (``template``) gives them back: a whole float becomes an int where the default had
    an int, a list a tuple where it had a tuple, and dict keys take its order. Where the value
    goes beyond the default (a longer list, a new key, as typed in the Kubeflow UI), a list's
    new items follow its last item, and a new key's whole numbers are ints."""

    def conform(item: Any, shape: Any) -> Any:
        if isinstance(item, float) and item.is_integer() and (
                shape is _NEW_KEY or (isinstance(shape, int) and not isinstance(shape, bool))):
            return int(item)
        if isinstance(item, list):
            shapes = list(shape) if isinstance(shape, (list, tuple)) else []
            items = [conform(element, shapes[index] if index < len(shapes) else
                             shapes[-1] if shapes else _NEW_KEY)
                     for index, element in enumerate(item)]
            return tuple(items) if isinstance(shape, tuple) else items
        if isinstance(item, dict):
            shapes = shape if isinstance(shape, dict) else {}
            order = [key for key in shapes if key in item] + [
                key for key in item if key not in shapes]
            return {key: conform(item[key], shapes.get(key, _NEW_KEY)) for key in order}
        return item

    return conform(value, template)


_NEW_KEY = object()  # no default to follow


def _as_carried(value: Any) -> Any:
    """``value`` with its tuples as lists, as Kubeflow carries it (its numbers compare equal
    to the floats they become)."""
    if isinstance(value, (list, tuple)):
        return [_as_carried(item) for item in value]
    if isinstance(value, dict):
        return {key: _as_carried(item) for key, item in value.items()}
    return value


def carried_back(value: Any, template: Any) -> bool:
    """Whether ``shaped`` gives ``value`` back exactly (its types too) from what Kubeflow makes
    of it (numbers floats, tuples lists), with ``template`` as the shape."""
    def carried(item: Any) -> Any:
        if isinstance(item, (int, float)) and not isinstance(item, bool):
            return float(item)
        if isinstance(item, (list, tuple)):
            return [carried(part) for part in item]
        if isinstance(item, dict):
            return {key: carried(part) for key, part in sorted(item.items())}
        return item

    return repr(shaped(carried(value), template)) == repr(value)


def read_inputs(task: StepInvocation) -> dict[str, Any]:
    """The values of a step's inputs, read as the step gets them (also for the Kale task before
    a container step on Kubeflow, ``kale.kfp.entry.container_inputs``)."""
    return {name: _read_input(kind, payload, task)
            for name, (kind, payload) in task.inputs.items()}


def _read_input(kind: str, payload: Any, task: StepInvocation) -> Any:
    if kind == "stored":
        return marshal.load(payload, store=task.store)
    if kind == "artifact":
        return marshal.load_folder(payload)
    if kind == "parameter":
        return _expand(payload, task)
    if kind == "shaped":
        return shaped(*payload)
    if kind == "shaped_item":
        # An item of a list parameter whose first item cannot shape every item back: it takes
        # the shape of the default's item it equals (as Kubeflow carried it), else the first.
        value, defaults = payload
        return shaped(value, next((item for item in defaults if _as_carried(item) == value),
                                  defaults[0]))
    if kind == "json":
        import json

        from kale.marshal.codec import decode

        return decode(json.loads(payload))
    if kind == "item":
        from kale.items import read_item

        token, whole = payload
        return read_item(token, None if whole is None else
                         lambda: _read_input(whole[0], whole[1], task))
    if kind == "collected":
        return [_read_input(part_kind, part, task) for part_kind, part in payload]
    if kind == "file":  # a container step's file output (Kubeflow): the file or folder itself
        from pathlib import Path

        return Path(payload)
    if kind == "text":  # a container step's value output (Kubeflow): the text it wrote
        from kale.containers import read_value

        text, declared, step, output = payload
        return read_value(text, declared, f"output `{output}` of container step `{step}`")
    return payload  # "value", "constant"


def _expand(value: Any, task: StepInvocation) -> Any:
    from datetime import datetime, timezone

    # In UTC, as on Kubeflow, so [[CurrentTime]] names the same moment the same way there.
    moment = datetime.fromtimestamp(task.created if task.created is not None else time.time(),
                                    timezone.utc)
    return macros.expand(value, task.run_id, moment)


def _save_outputs(task: StepInvocation, result: Any) -> dict[str, dict[str, Any]]:
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
        except marshal.NoSpaceError as error:
            raise StepFailure({"kind": "no-space",
                               "message": f"could not store its output `{name}`: {error}",
                               "fix": error.advice}) from None
        except marshal.MarshalError as error:
            raise StepFailure({
                "kind": "output",
                "message": f"returned `{name}` as a {marshal.type_name(value)}, which "
                           f"cannot be passed to another step: {error}",
                "fix": error.advice,
            }) from None
    return stored


def end_descendants() -> None:
    """Kill the processes this one started, and theirs (Linux: read from /proc)."""
    children: dict[int, list[int]] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as handle:
                fields = handle.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry))  # fields[1] is the ppid
    pending, found = [os.getpid()], []
    while pending:
        for child in children.get(pending.pop(), []):
            found.append(child)
            pending.append(child)
    for pid in found:
        with contextlib.suppress(OSError):  # gone already
            os.kill(pid, signal.SIGKILL)


def write_result(task: StepInvocation, outcome: dict[str, Any]) -> None:
    """Write a result where the invocation asks for it (atomically: a reader never sees half).

    JSON, not pickle: the result holds only plain data (statuses, messages, the outputs'
    metadata), and the process that reads it must not run code a step could have put there."""
    if task.result_path is None:
        return
    import json

    data = json.dumps(outcome, default=str).encode()
    marshal.atomic_write(task.result_path, lambda handle: handle.write(data))


class _Deadline:
    """The step's timeout: ``StepTimeout`` in its code, then, after the grace period, the end of
    its process and everything it started."""

    def __init__(self, task: StepInvocation) -> None:
        self.task = task
        self.fired = False
        self.armed = False

    def message(self) -> str:
        from kale.options import format_duration

        return f"timed out after {format_duration(self.task.timeout)}"

    def arm(self) -> None:
        if not self.task.timeout or not hasattr(signal, "setitimer"):
            return
        signal.signal(signal.SIGALRM, self.on_alarm)
        signal.setitimer(signal.ITIMER_REAL, self.task.timeout)
        self.armed = True

    def disarm(self) -> None:
        if self.armed:
            signal.setitimer(signal.ITIMER_REAL, 0)
            self.armed = False

    def on_alarm(self, *_: Any) -> None:
        task = self.task
        if self.fired:  # the step caught StepTimeout and went on
            grace = f"{task.grace:g}s"
            details = {"kind": "timeout",
                       "message": f"{self.message()} and did not stop within {grace} of being "
                                  "told to, so it was ended with the processes it started",
                       "fix": "let StepTimeout (a BaseException) propagate: catch Exception, "
                              "not BaseException, in the step"}
            with contextlib.suppress(Exception):
                os.write(2, f"Kale: step `{task.step}` {details['message']}\n".encode())
            with contextlib.suppress(OSError):  # a full disk: the exit status still tells
                write_result(task, {"status": "failed", "error": details})
            end_descendants()
            os._exit(1)
        self.fired = True
        signal.setitimer(signal.ITIMER_REAL, max(task.grace, 0.001))
        raise StepTimeout(f"step `{task.step}` {self.message()}")


def run_step(task: StepInvocation, report: Report) -> dict[str, Any]:
    """Run one attempt: set up the module context, read inputs, run the user's function, write
    outputs. Returns the result: ``{"status": "done", "outputs": ..., "duration": ...}`` or
    ``{"status": "failed", "error": {"kind", "message", "traceback", "fix"}}``, also written to
    ``task.result_path`` when set.

    ``report("started", {...})`` is called just before the user's code runs (the step timeout
    counts from there).
    """
    log = logs.StepLog(task.step, task.attempt, task.artifact_dir, report, task.echo_metrics)
    try:
        outcome: dict[str, Any] = {"status": "done", **_run(task, report, log)}
    except StepFailure as failure:
        outcome = {"status": "failed", "error": failure.details}
    logged = log.finish()
    if logged:
        outcome["logged"] = logged
    try:
        write_result(task, outcome)
    except OSError as error:
        # The disk is full, most likely (a step's log can fill it): say so through the report
        # channel, which needs no disk, in a message small enough for one pipe write.
        message = (outcome.get("error") or {}).get("message")
        report("unwritten", {
            "path": task.result_path, "reason": _describe(error)[:300],
            "no_space": error.errno in marshal.NO_SPACE,
            "message": message[:1000] if isinstance(message, str) else None})
    return outcome


def _run(task: StepInvocation, report: Report, log: logs.StepLog) -> dict[str, Any]:
    os.environ[IN_STEP] = task.step
    os.chdir(task.project_root)
    if task.project_root not in sys.path:
        sys.path.insert(0, task.project_root)
    main, argv = sys.modules.get("__main__"), sys.argv
    try:
        return _call(task, report, log)
    finally:
        if main is not None:
            sys.modules["__main__"] = main
        sys.argv = argv
        os.environ.pop(IN_STEP, None)


_NO_SPACE_FIX = ("a disk the step writes to is full (its output and log go to the run "
                 "record): free space, or set KALE_HOME to a folder on a disk with room")


_current: StepInvocation | None = None


def current_task() -> StepInvocation | None:
    """The invocation of the step running in this process (None outside a step): where its
    outputs go, for code of Kale's that a step runs (``kale.local.container``)."""
    return _current


def _call(task: StepInvocation, report: Report, log: logs.StepLog) -> dict[str, Any]:
    global _current
    _current = task
    try:
        function, _ = _load_function(task)
    except Exception as error:
        where = "its module-level code" if task.context else "its code"
        raise StepFailure({
            "kind": "setup",
            "message": f"could not start: {where} raised {_describe(error)}",
            "traceback": _user_traceback(error),
        }) from None
    try:
        arguments = read_inputs(task)
    except marshal.MarshalError as error:
        raise StepFailure({"kind": "setup", "message": f"could not read its inputs: {error}",
                           "fix": error.advice}) from None
    except Exception as error:
        raise StepFailure({
            "kind": "setup",
            "message": f"could not read its inputs: {_describe(error)}",
            "traceback": _user_traceback(error),
        }) from None
    deadline = _Deadline(task)
    report("started", {"time": time.time()})
    started = time.perf_counter()
    deadline.arm()
    logs.activate(log)
    try:
        result = function(**arguments)
    except BaseException as error:  # sys.exit(), even KeyboardInterrupt, end only this step
        logs.activate(None)
        deadline.disarm()
        if deadline.fired:
            end_descendants()  # what it started would hold its output open
        fix = _NO_SPACE_FIX if isinstance(error, OSError) and \
            error.errno in marshal.NO_SPACE else _kale_fix(error)
        raise StepFailure({
            "kind": "timeout" if deadline.fired else "error",
            "message": deadline.message() if deadline.fired else f"raised {_describe(error)}",
            "traceback": _user_traceback(error),
            "duration": time.perf_counter() - started,
            **({"fix": fix} if fix else {}),
        }) from None
    logs.activate(None)
    deadline.disarm()
    duration = time.perf_counter() - started
    if deadline.fired:  # the user's code caught StepTimeout and returned: still a timeout
        end_descendants()
        raise StepFailure({"kind": "timeout", "message": deadline.message(),
                           "fix": "let StepTimeout (a BaseException) propagate",
                           "duration": duration})
    if task.branch:
        return {"outputs": {}, "reports": {"branch": result}, "duration": duration}
    _keep_declared_artifacts(task, log)
    outcome = {"outputs": _save_outputs(task, result), "duration": duration}
    if task.item_outputs:
        outcome["reports"] = _item_reports(task, result)
    return outcome


def _kale_fix(error: BaseException) -> str | None:
    """The fix a Kale error raised in the step's code says (a bad ``log_metric``...)."""
    errors = sys.modules.get("kale.errors")
    if errors is not None and isinstance(error, errors.KaleError):
        return error.fix
    return None


def _keep_declared_artifacts(task: StepInvocation, log: logs.StepLog) -> None:
    """Keep the files of the step's ``@artifact`` marks (copied: the next run may overwrite
    them); one that is missing fails the step."""
    import shutil

    for name, path in task.artifacts:
        source = os.path.join(task.project_root, path)
        if not os.path.isfile(source):
            raise StepFailure({
                "kind": "artifact",
                "message": f"did not write {path}, its artifact {name!r} "
                           f"(@artifact(name={name!r}, path={path!r}); looked for "
                           f"{os.path.abspath(source)})",
                "fix": f"write the HTML file at {path} in the step (a relative path is the "
                       "project's folder, the step's working directory), or correct the path"})
        try:
            target = log.path(name, "file", "@artifact")
            shutil.copyfile(source, target)
            log.keep(name, "file", target, source=path)
        except Exception as error:
            raise StepFailure({"kind": "artifact",
                               "message": f"could not keep its artifact {name!r} ({path}): "
                                          f"{_describe(error)}",
                               **({"fix": _kale_fix(error)} if _kale_fix(error) else {})}
                              ) from None


def _item_reports(task: StepInvocation, result: Any) -> dict[str, list[str]]:
    """The tokens of the items of each output a loop iterates (``kale.items``)."""
    from kale.items import NotIterableError, item_tokens

    named = dict(zip(task.outputs, result, strict=True)) if task.unpacks else \
        {task.outputs[0]: result}
    reports = {}
    for name in task.item_outputs:
        try:
            reports[f"items:{name}"] = item_tokens(named[name])
        except NotIterableError as error:
            raise StepFailure({
                "kind": "output",
                "message": f"returned `{name}` as a {error}, which is not iterable, but the "
                           f"pipeline loops over it: `for ... in {name}:`",
                "fix": f"return a list from `{task.function_name}`"}) from None
    return reports
