"""Metrics and artifacts from a step: ``log_metric``, ``log_html``, ``log_markdown``,
``log_figure``, ``log_confusion_matrix`` and ``log_roc_curve`` (Arrikto's Kale's
``kale.sdk.logging``).

In a step of a local run, what the step logs goes to the run record, with the step and attempt
(``kale show RUN``, ``kale runs``, ``kale compare``), and each metric shows in the progress as it
arrives. On Kubeflow a step with metrics has a ``Metrics`` artifact holding them (the run's
metrics in the KFP UI), HTML and figures become ``HTML`` artifacts, Markdown ``Markdown``
artifacts, and a confusion matrix or ROC curve a ``ClassificationMetrics`` artifact; each metric
is also printed as ``name=value``, the form Katib's StdOut collector reads. Called outside a
pipeline (a step called as a plain function, in a unit test), they print what they were given
and keep nothing.

Names are 1 to 63 letters, digits, ``_`` or ``-``, starting with a letter. A name logged again
in the same step replaces what it held: the last value wins.
"""

from __future__ import annotations

from kale import logs

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any

__all__ = ["log_confusion_matrix", "log_figure", "log_html", "log_markdown", "log_metric",
           "log_roc_curve"]


def _fail(message: str, fix: str) -> Exception:
    from kale.errors import LoggingError

    return LoggingError(message, fix=fix)


def _name(caller: str, name: Any) -> None:
    why = logs.bad_name(name)
    if why is not None:
        raise _fail(f"{caller}() {logs.where()}: the name {name!r} {why}",
                    f"name it with {logs.NAME_RULE}, such as \"accuracy\" or \"val-loss\"")


def _number(caller: str, name: str, value: Any, what: str = "value") -> int | float:
    kind = type(value)
    if kind is float or kind is int:
        number = value
    elif kind is bool:
        raise _fail(f"{caller}({name!r}, {value!r}) {logs.where()}: the {what} is a bool, "
                    "not a number", f"log it as a number: {caller}({name!r}, int({value!r}))")
    else:
        number = _convert(value)
        if number is None:
            raise _fail(f"{caller}({name!r}, ...) {logs.where()}: the {what} is a "
                        f"{kind.__module__}.{kind.__qualname__}".replace("builtins.", "") +
                        ", not a number",
                        f"pass an int or a float (a numpy or torch scalar is fine too): "
                        f"{caller}({name!r}, float(...))")
    if not logs.is_number(number):
        raise _fail(f"{caller}({name!r}, {number!r}) {logs.where()}: the {what} is not a "
                    "finite number", "log a finite number: check the computation for a "
                    "division by zero or a diverging value")
    return number


def _convert(value: Any) -> int | float | None:
    """A number-like value (numpy and torch scalars, Decimal, Fraction) as an int or float."""
    import numbers

    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real) or (  # Decimal is a Number, not a Real
            isinstance(value, numbers.Number) and not isinstance(value, numbers.Complex)):
        return float(value)
    item = getattr(value, "item", None)  # 0-d arrays, one-element tensors
    if callable(item) and getattr(value, "size", 1) in (1, None):
        try:
            got = item()
        except Exception:
            return None
        if type(got) in (int, float):
            return got
    return None


def log_metric(name: str, value: int | float) -> None:
    """Record metric ``name`` of the running step (the last value of a name wins)."""
    if type(value) is float or type(value) is int:  # the common case, checked inline
        if logs.bad_name(name) is not None:
            _name("log_metric", name)
        if value != value or value in (float("inf"), float("-inf")):
            _number("log_metric", name, value)
    else:
        _name("log_metric", name)
        value = _number("log_metric", name, value)
    log = logs.current("log_metric")
    if log is None:
        print(f"{name}={value}")
        return
    log.metric(name, value)


def _text(caller: str, name: str, text: Any, what: str) -> str:
    if not isinstance(text, str):
        raise _fail(f"{caller}({name!r}, ...) {logs.where()}: the {what} is a "
                    f"{type(text).__name__}, not a string",
                    f"pass the {what} as a str")
    return text


def _write_text(caller: str, kind: str, name: str, text: str) -> None:
    log = logs.current(caller)
    if log is None:
        print(f"{caller}({name!r}): {len(text)} characters (outside a pipeline nothing is kept)")
        return
    path = log.path(name, kind, caller)
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text)
    log.keep(name, kind, path)


def log_html(name: str, html: str) -> None:
    """Keep ``html`` as the step's HTML artifact ``name`` (shown sandboxed)."""
    _name("log_html", name)
    _write_text("log_html", "html", name, _text("log_html", name, html, "HTML"))


def log_markdown(name: str, text: str) -> None:
    """Keep ``text`` as the step's Markdown artifact ``name``."""
    _name("log_markdown", name)
    _write_text("log_markdown", "markdown", name, _text("log_markdown", name, text, "Markdown"))


def log_figure(name: str, figure: Any) -> None:
    """Keep a matplotlib figure (anything with ``savefig``) as PNG, artifact ``name``."""
    _name("log_figure", name)
    if not callable(getattr(figure, "savefig", None)):
        raise _fail(f"log_figure({name!r}, ...) {logs.where()}: a "
                    f"{type(figure).__name__} is not a figure (it has no savefig())",
                    "pass a matplotlib Figure: fig, ax = plt.subplots(); ...; "
                    f"log_figure({name!r}, fig)")
    log = logs.current("log_figure")
    if log is None:
        print(f"log_figure({name!r}): a {type(figure).__name__} (outside a pipeline nothing is "
              "kept)")
        return
    path = log.path(name, "figure", "log_figure")
    figure.savefig(path, format="png", bbox_inches="tight")
    log.keep(name, "figure", path)


def _numbers(caller: str, name: str, values: Any, what: str) -> list[int | float]:
    if hasattr(values, "tolist"):
        values = values.tolist()
    if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
        raise _fail(f"{caller}({name!r}, ...) {logs.where()}: {what} is a "
                    f"{type(values).__name__}, not a list of numbers",
                    f"pass {what} as a list (or a numpy array) of numbers")
    return [_number(caller, name, value, f"{what} item") for value in values]


def _merge_classification(caller: str, name: str, key: str, value: Any) -> None:
    import json

    log = logs.current(caller)
    if log is None:
        print(f"{caller}({name!r}): {json.dumps(value)[:200]} (outside a pipeline nothing is "
              "kept)")
        return
    path = log.path(name, "classification", caller)
    data: dict[str, Any] = {}
    if name in log.artifacts:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    data[key] = value
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(data, handle)
    log.keep(name, "classification", path)


def log_confusion_matrix(name: str, categories: Sequence[str],
                         matrix: Sequence[Sequence[int | float]]) -> None:
    """Keep a confusion matrix (``matrix[i][j]``: items of ``categories[i]`` predicted as
    ``categories[j]``) as classification metrics ``name`` (KFP's ClassificationMetrics)."""
    caller = "log_confusion_matrix"
    _name(caller, name)
    if hasattr(categories, "tolist"):
        categories = categories.tolist()
    categories = list(categories) if not isinstance(categories, str) else [categories]
    if not categories or not all(isinstance(category, str) for category in categories):
        raise _fail(f"{caller}({name!r}, ...) {logs.where()}: the categories must be a "
                    "non-empty list of strings", "pass the class labels as strings: "
                    "[str(label) for label in labels]")
    if hasattr(matrix, "tolist"):
        matrix = matrix.tolist()
    rows = [_numbers(caller, name, row, "a row of the matrix") for row in matrix]
    size = len(categories)
    if len(rows) != size or any(len(row) != size for row in rows):
        raise _fail(f"{caller}({name!r}, ...) {logs.where()}: the matrix must be {size} by "
                    f"{size}, one row and one column per category",
                    "pass the matrix sklearn.metrics.confusion_matrix(y_true, y_pred, "
                    "labels=...) gives for the same labels")
    _merge_classification(caller, name, "confusion_matrix",
                          {"categories": categories, "matrix": rows})


def log_roc_curve(name: str, fpr: Sequence[float], tpr: Sequence[float],
                  thresholds: Sequence[float]) -> None:
    """Keep an ROC curve (false and true positive rates at each threshold, as
    ``sklearn.metrics.roc_curve`` returns them) as classification metrics ``name``."""
    caller = "log_roc_curve"
    _name(caller, name)
    if hasattr(thresholds, "tolist"):
        thresholds = thresholds.tolist()
    if isinstance(thresholds, (list, tuple)) and thresholds:
        # sklearn's roc_curve (1.3+) starts with inf, "no item predicted positive": as the
        # releases before did, one more than the highest threshold (JSON holds no inf).
        finite = [value for value in thresholds if type(value) in (int, float) and
                  value != float("inf")]
        top = max(finite, default=0) + 1
        thresholds = [top if value == float("inf") else value for value in thresholds]
    lists = [_numbers(caller, name, values, what) for values, what in
             ((fpr, "fpr"), (tpr, "tpr"), (thresholds, "thresholds"))]
    if len({len(values) for values in lists}) != 1 or not lists[0]:
        raise _fail(f"{caller}({name!r}, ...) {logs.where()}: fpr, tpr and thresholds "
                    "must be non-empty and of the same length",
                    "pass the three arrays sklearn.metrics.roc_curve returns")
    _merge_classification(caller, name, "roc_curve",
                          dict(zip(("fpr", "tpr", "thresholds"), lists, strict=True)))
