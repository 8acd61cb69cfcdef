"""What a step logs besides its return value: metrics (``log_metric``) and artifacts (HTML,
Markdown, figures, classification metrics, the files of ``@artifact``).

The public functions are ``kale.sdk.logging``'s; this module holds what they share with the
runtime (which opens a ``StepLog`` around the user's function), the local scheduler (which reads
what a step logged as untrusted JSON and checks it with ``check_logged``) and the compiler
(which reads a step's source for the calls, ``declared_logs``, to give its component the
Kubeflow artifacts).

In a step, each metric is also sent to the runner as an event (``report("metric", ...)``) so
that progress shows it as it arrives; a name logged again within ``_RESEND`` seconds is sent
when it next may be, or when the step ends. The result carries the last value of every name.
On Kubeflow and outside a pipeline the metric is printed as ``name=value`` (Katib's StdOut
collector reads that form).

Step processes import this module on their start-up path: only cheap imports here.
"""

from __future__ import annotations

import math
import os
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

#: Artifact kinds as the run record names them.
KINDS = ("html", "markdown", "figure", "classification", "file")
#: The files each kind is kept in, in the attempt's artifact folder.
SUFFIXES = {"html": ".html", "markdown": ".md", "figure": ".png",
            "classification": ".classification.json", "file": ".html"}
NAME_RULE = ("1 to 63 ASCII letters, digits, '_' or '-', starting with a letter (the form "
             "Kubeflow's UI and Katib's metrics collector read)")
#: At most this many metric names, and artifacts, per step attempt.
MAX_ENTRIES = 1000
#: A metric name sent as an event is not sent again for this long (its last value is sent
#: when the wait is over or the step ends).
_RESEND = 0.05

_FUNCTIONS = ("log_metric", "log_html", "log_markdown", "log_figure", "log_confusion_matrix",
              "log_roc_curve")


def bad_name(name: Any) -> str | None:
    """Why ``name`` cannot name a metric or an artifact, or None."""
    if not isinstance(name, str):
        return f"is a {type(name).__name__}, not a string"
    if not name:
        return "is empty"
    if len(name) > 63:
        return f"is {len(name)} characters long"
    if not (name.isascii() and name[0].isalpha() and
            name.replace("_", "a").replace("-", "a").isalnum()):
        return "holds characters other than letters, digits, '_' and '-', or does not " \
               "start with a letter"
    return None


def is_number(value: Any) -> bool:
    """A finite int or float (not a bool): what the record holds as a metric."""
    return type(value) in (int, float) and math.isfinite(value)


class StepLog:
    """What one step attempt logs, kept in its process while it runs."""

    def __init__(self, step: str, attempt: int, folder: str | None,
                 report: Callable[[str, dict[str, Any]], None] | None, echo: bool) -> None:
        self.step, self.attempt, self.folder = step, attempt, folder
        self.report, self.echo = report, echo
        self.pid = os.getpid()
        self.metrics: dict[str, int | float] = {}
        self.artifacts: dict[str, dict[str, Any]] = {}
        self._sent: dict[str, float] = {}
        self._pending: set[str] = set()

    def metric(self, name: str, value: int | float) -> None:
        metrics = self.metrics
        if name not in metrics and len(metrics) >= MAX_ENTRIES:
            raise _error(f"log_metric({name!r}, ...) in step `{self.step}`: the step has "
                         f"logged {MAX_ENTRIES} metric names already",
                         "log fewer names (a name logged again keeps its last value)")
        metrics[name] = value
        if self.echo:
            print(f"{name}={value}", flush=True)
        if self.report is not None:
            now = time.monotonic()
            if now - self._sent.get(name, -1.0) >= _RESEND:
                self._sent[name] = now
                self._pending.discard(name)
                self.report("metric", {"name": name, "value": value})
            else:
                self._pending.add(name)

    def path(self, name: str, kind: str, caller: str) -> str:
        """Where to write artifact ``name``; checks the name is not taken by another kind."""
        held = self.artifacts.get(name)
        if held is not None and held["kind"] != kind:
            raise _error(f"{caller}({name!r}, ...) in step `{self.step}`: the step has logged "
                         f"a {held['kind']} artifact named {name!r} already",
                         "give each artifact of a step a name of its own")
        if held is None and len(self.artifacts) >= MAX_ENTRIES:
            raise _error(f"{caller}({name!r}, ...) in step `{self.step}`: the step has logged "
                         f"{MAX_ENTRIES} artifacts already", "log fewer artifacts")
        assert self.folder is not None
        os.makedirs(self.folder, exist_ok=True)
        return os.path.join(self.folder, name + SUFFIXES[kind])

    def keep(self, name: str, kind: str, path: str, **extra: Any) -> None:
        self.artifacts[name] = {"kind": kind, "path": path, "size": os.path.getsize(path),
                                **extra}
        if self.report is not None:
            self.report("artifact", {"name": name, "kind": kind})

    def finish(self) -> dict[str, Any]:
        """Send the metrics still waiting to be sent; what the result carries."""
        if self.report is not None:
            for name in sorted(self._pending):
                self.report("metric", {"name": name, "value": self.metrics[name]})
            self._pending.clear()
        logged: dict[str, Any] = {}
        if self.metrics:
            logged["metrics"] = dict(self.metrics)
        if self.artifacts:
            logged["artifacts"] = {name: dict(entry) for name, entry in self.artifacts.items()}
        return logged


_active: StepLog | None = None


def activate(log: StepLog | None) -> None:
    global _active
    _active = log


def current(caller: str) -> StepLog | None:
    """The log of the step running in this process, or None outside a pipeline (a step called
    as a plain function: values are printed). Raises when a pipeline's step process calls
    ``caller`` but not from the step's own run (its module's code, a process it started)."""
    log = _active
    if log is not None:
        if log.pid != os.getpid():
            raise _error(f"{caller}() was called in a process that step `{log.step}` started "
                         f"(pid {os.getpid()}), not in the step's own process, where Kale "
                         "keeps what it logs",
                         f"return the value to the step and call {caller}() there")
        return log
    step = os.environ.get("KALE_IN_STEP")
    if step:
        raise _error(f"{caller}() was called in step `{step}`'s process while the step itself "
                     "was not running (in module-level code, or after it returned)",
                     f"call {caller}() inside the step's function")
    return None


def _error(message: str, fix: str) -> Exception:
    from kale.errors import LoggingError

    return LoggingError(message, fix=fix)


def where() -> str:
    """``in step `x``` in a step, ``outside a pipeline`` otherwise, for error messages
    (``log_metric('loss', ...) in step `train`: ...``)."""
    log = _active
    return f"in step `{log.step}`" if log is not None else "outside a pipeline"


# -- what the scheduler reads --------------------------------------------------------------------


def check_logged(logged: Any, folder: str) -> dict[str, Any] | str:
    """What an attempt's result says it logged, checked as untrusted data: the metrics as
    finite numbers, the artifacts as files in the attempt's artifact folder ``folder``. Returns
    the checked entries, or what is wrong with them."""
    if logged is None:
        return {}
    if not isinstance(logged, dict) or not set(logged) <= {"metrics", "artifacts"}:
        return "reports what it logged in a form Kale does not write"
    checked: dict[str, Any] = {}
    metrics = logged.get("metrics", {})
    if not isinstance(metrics, dict) or len(metrics) > MAX_ENTRIES:
        return "reports metrics that are not a mapping of names to numbers"
    for name, value in metrics.items():
        if bad_name(name) is not None or not is_number(value):
            return f"reports metric {str(name)[:80]!r} as {str(value)[:80]}"
    if metrics:
        checked["metrics"] = dict(metrics)
    artifacts = logged.get("artifacts", {})
    if not isinstance(artifacts, dict) or len(artifacts) > MAX_ENTRIES:
        return "reports artifacts that are not a mapping of names to files"
    kept = {}
    from kale.marshal import is_inside

    for name, entry in artifacts.items():
        if bad_name(name) is not None or not isinstance(entry, dict) or \
                entry.get("kind") not in KINDS or not isinstance(entry.get("path"), str):
            return f"reports artifact {str(name)[:80]!r} without a kind and a path"
        path = entry["path"]
        if os.path.dirname(os.path.normpath(path)) != os.path.normpath(folder) or \
                not is_inside(path, folder):
            return f"points artifact {name!r} at {path[:300]}, outside the attempt's artifact " \
                   f"folder {folder}"
        kept[name] = {"kind": entry["kind"], "path": path,
                      **{key: entry[key] for key in ("size",) if type(entry.get(key)) is int},
                      **{key: entry[key] for key in ("source",)
                         if isinstance(entry.get(key), str)}}
    if kept:
        checked["artifacts"] = kept
    return checked


def check_event(kind: str, value: Any) -> tuple[str, Any] | None:
    """A live ``metric`` event's name and value, or None for one Kale did not send."""
    if kind == "metric" and isinstance(value, dict) and bad_name(value.get("name")) is None \
            and is_number(value.get("value")):
        return value["name"], value["value"]
    return None


def metric_text(value: Any) -> str:
    """A metric as progress and ``kale show`` print it: floats to 6 significant digits."""
    return f"{value:.6g}" if isinstance(value, float) else str(value)


# -- what the compiler reads ---------------------------------------------------------------------


class Declared:
    """What a step's source says it logs, for the component's Kubeflow artifacts: whether it
    has metrics, and the names of its HTML (HTML, figures, ``@artifact`` files), Markdown and
    classification artifacts; ``None`` among the names stands for names known only at run
    time (they share one artifact of their kind)."""

    def __init__(self) -> None:
        self.metrics = False
        self.html: list[str | None] = []
        self.markdown: list[str | None] = []
        self.classification: list[str | None] = []

    def add(self, kind: str, name: str | None) -> None:
        names = getattr(self, kind)
        if name not in names:
            names.append(name)

    def __bool__(self) -> bool:
        return bool(self.metrics or self.html or self.markdown or self.classification)


_KIND_OF = {"log_html": "html", "log_figure": "html", "log_markdown": "markdown",
            "log_confusion_matrix": "classification", "log_roc_curve": "classification"}


def declared_logs(text: str, has_metrics: bool = False,
                  artifacts: tuple[tuple[str, str], ...] = ()) -> Declared:
    """Read a step's ``def`` (``text``) for calls of ``kale.sdk.logging``'s functions, by name
    (``log_metric(...)`` or ``logging.log_metric(...)``)."""
    import ast

    from kale.source import parse_step_text

    declared = Declared()
    declared.metrics = has_metrics
    for name, _ in artifacts:
        declared.add("html", name)
    if "log_" not in text:  # every function looked for is named log_*: nothing to walk
        return declared
    for node in ast.walk(parse_step_text(text)):
        if not isinstance(node, ast.Call):
            continue
        function = node.func
        called = function.id if isinstance(function, ast.Name) else \
            function.attr if isinstance(function, ast.Attribute) else None
        if called == "log_metric":
            declared.metrics = True
        elif called in _KIND_OF:
            first = node.args[0] if node.args else next(
                (keyword.value for keyword in node.keywords if keyword.arg == "name"), None)
            literal = first.value if isinstance(first, ast.Constant) and \
                isinstance(first.value, str) and bad_name(first.value) is None else None
            declared.add(_KIND_OF[called], literal)
    return declared
