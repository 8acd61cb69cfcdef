"""A study's search space: ``Float``, ``Int`` and ``Choice`` (``kale.sdk.tuning`` exports them)
and the checks of a space against the pipeline's parameters.

Each class checks its own arguments when it is built (``Float(1, 0)`` fails on its own line);
``check_space`` checks the whole ``parameters={...}`` of a ``tune()`` call against the
pipeline: every name is a parameter, every range fits the parameter's type. Light: no Optuna
here, so ``kale.sdk.tuning`` imports fast.
"""

from __future__ import annotations

import math
import sys
from typing import TYPE_CHECKING, Any

from kale.errors import DefinitionError, SourceLocation

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from kale.graph.model import Graph, Parameter

__all__ = ["Choice", "Float", "Int", "Space", "TuningError", "check_space"]


class TuningError(DefinitionError):
    """A search space or a ``tune()`` setting Kale cannot tune with; found before any trial."""


def _caller() -> SourceLocation:
    # Two frames up: the user's line that built the space object.
    return SourceLocation.of_frame(sys._getframe(2))


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and \
        math.isfinite(value)


class Space:
    """One parameter's range of values; ``Float``, ``Int`` and ``Choice`` are the kinds."""

    location: SourceLocation | None = None

    def describe(self) -> str:
        raise NotImplementedError

    def to_json(self) -> dict[str, Any]:
        raise NotImplementedError

    def grid(self) -> list[Any] | None:
        """Every value, for a grid search; None when the range is continuous."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return self.describe()

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other.to_json() == self.to_json()

    def __hash__(self) -> int:
        return hash(repr(self.to_json()))


class Float(Space):
    """Real numbers from ``low`` to ``high`` (both included); ``log=True`` samples on a log
    scale (both bounds above 0), ``step`` makes it a grid of ``low, low + step, ...``."""

    def __init__(self, low: float, high: float, *, log: bool = False,
                 step: float | None = None) -> None:
        self.location = _caller()
        _check_bounds("Float", low, high, log, self.location, whole=False)
        if step is not None and (not _number(step) or step <= 0):
            raise TuningError(f"Float(..., step={step!r}): the step is a number above 0",
                              location=self.location, fix="give step=0.1 (say), or leave it out "
                              "for a continuous range")
        if step is not None and log:
            raise TuningError("Float(..., log=True, step=...): a log-scale range has no step "
                              "(Optuna and Katib take one or the other)", location=self.location,
                              fix="drop step, or drop log=True")
        self.low, self.high, self.log, self.step = float(low), float(high), bool(log), step

    def describe(self) -> str:
        extra = ", log=True" if self.log else f", step={self.step!r}" if self.step else ""
        return f"Float({self.low!r}, {self.high!r}{extra})"

    def to_json(self) -> dict[str, Any]:
        return {"kind": "float", "low": self.low, "high": self.high, "log": self.log,
                "step": self.step}

    def grid(self) -> list[Any] | None:
        if self.step is None:
            return None
        count = math.floor((self.high - self.low) / self.step + 1e-9) + 1
        return [round(self.low + index * self.step, 12) for index in range(count)]


class Int(Space):
    """Whole numbers from ``low`` to ``high`` (both included), every ``step``-th one;
    ``log=True`` samples on a log scale (``low`` at least 1, ``step`` 1)."""

    def __init__(self, low: int, high: int, *, log: bool = False, step: int = 1) -> None:
        self.location = _caller()
        _check_bounds("Int", low, high, log, self.location, whole=True)
        if not isinstance(step, int) or isinstance(step, bool) or step < 1:
            raise TuningError(f"Int(..., step={step!r}): the step is a whole number of 1 or "
                              "more", location=self.location, fix="give step=2 (say), or leave "
                              "it out (1)")
        if log and step != 1:
            raise TuningError("Int(..., log=True, step=...): a log-scale range steps by 1",
                              location=self.location, fix="drop step, or drop log=True")
        self.low, self.high, self.log, self.step = low, high, bool(log), step

    def describe(self) -> str:
        extra = ", log=True" if self.log else f", step={self.step}" if self.step != 1 else ""
        return f"Int({self.low}, {self.high}{extra})"

    def to_json(self) -> dict[str, Any]:
        return {"kind": "int", "low": self.low, "high": self.high, "log": self.log,
                "step": self.step}

    def grid(self) -> list[Any] | None:
        return list(range(self.low, self.high + 1, self.step))


class Choice(Space):
    """One of ``values`` (numbers, strings, booleans, None, or lists and dicts of them: what a
    pipeline parameter holds)."""

    def __init__(self, values: Sequence[Any]) -> None:
        self.location = _caller()
        if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
            raise TuningError(f"Choice({values!r}): Choice takes a list of the values to try",
                              location=self.location,
                              fix=f"write Choice([{values!r}, ...]) with two values or more")
        import json  # here: kale.sdk.tuning is imported with the script, keep that quick

        values = list(values)
        if len(values) < 2:
            raise TuningError(f"Choice({values!r}) has {len(values)} value"
                              f"{'' if len(values) == 1 else 's'}: there is nothing to choose",
                              location=self.location, fix="give two values or more, or leave "
                              "the parameter out of the space (it keeps its value)")
        seen = []
        for value in values:
            try:
                text = json.dumps(value, sort_keys=True, allow_nan=False)
            except (TypeError, ValueError):
                raise TuningError(f"Choice(...) holds {value!r} ({type(value).__name__}): a "
                                  "pipeline parameter holds JSON values", location=self.location,
                                  fix="use numbers, strings, booleans, or lists and dicts of "
                                  "them") from None
            if text in seen:
                raise TuningError(f"Choice(...) holds {value!r} twice", location=self.location,
                                  fix="give each value once")
            seen.append(text)
        self.values = values

    def describe(self) -> str:
        return f"Choice({self.values!r})"

    def to_json(self) -> dict[str, Any]:
        return {"kind": "choice", "values": self.values}

    def grid(self) -> list[Any] | None:
        return list(self.values)


def _check_bounds(kind: str, low: Any, high: Any, log: Any, location: SourceLocation, *,
                  whole: bool) -> None:
    example = "Int(2, 10)" if whole else "Float(0.001, 0.1)"
    for name, value in (("low", low), ("high", high)):
        if whole and (not isinstance(value, int) or isinstance(value, bool)):
            hint = "Float(...) for real numbers" if _number(value) else example
            raise TuningError(f"{kind}({low!r}, {high!r}): {name} is {value!r}, not a whole "
                              "number", location=location, fix=f"use {hint}")
        if not _number(value):
            raise TuningError(f"{kind}({low!r}, {high!r}): {name} is {value!r}, not a finite "
                              "number", location=location, fix=f"write {example}, say")
    if not low < high:
        raise TuningError(f"{kind}({low!r}, {high!r}): low must be below high",
                          location=location,
                          fix=f"write {kind}({min(low, high)!r}, {max(low, high)!r})" if
                          low != high else "give a range, or leave the parameter out of the "
                          "space (it keeps its value)")
    if not isinstance(log, bool):
        raise TuningError(f"{kind}(..., log={log!r}): log is True or False", location=location)
    if log and low <= 0:
        raise TuningError(f"{kind}({low!r}, {high!r}, log=True): a log scale needs low above 0",
                          location=location, fix="raise low above 0, or drop log=True")


def check_space(graph: Graph, parameters: Any, location: SourceLocation,
                pipeline: str) -> dict[str, Space]:
    """``parameters`` of a ``tune()`` call, checked against the pipeline's parameters: each name
    a parameter, each range one the parameter's type holds. Raises ``TuningError`` (at the
    tune() call, or at the space's own line) with the fix."""
    import difflib

    names = {parameter.name: parameter for parameter in graph.parameters}
    listing = ", ".join(names) or "(none)"
    if not isinstance(parameters, dict) or not parameters:
        raise TuningError(
            f"tune(parameters={parameters!r}): the search space is a dict of parameter names "
            "to ranges, with one entry or more", location=location,
            fix="write parameters={'lr': Float(1e-4, 1e-1, log=True), 'depth': Int(2, 10)} "
            f"(from kale.sdk.tuning import Float, Int, Choice); the parameters of `{pipeline}` "
            f"are: {listing}")
    space: dict[str, Space] = {}
    for name, given in parameters.items():
        if name not in names:
            close = difflib.get_close_matches(str(name), list(names), n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise TuningError(f"tune(parameters=...) names {name!r}, which is not a parameter "
                              f"of pipeline `{pipeline}`", location=location,
                              fix=f"{hint}its parameters are: {listing}")
        space[name] = _checked(names[name], given, location)
    return space


def _checked(parameter: Parameter, given: Any, location: SourceLocation) -> Space:
    name, kind = parameter.name, parameter.type
    where = given.location if isinstance(given, Space) and given.location else location
    default = f"(its default is {parameter.default!r})"
    if not isinstance(given, Space):
        if isinstance(given, (list, tuple, set)):
            fix = f"write {name!r}: Choice({list(given)!r})"
            if len(given) == 2 and all(_number(value) for value in given):
                low, high = sorted(given)
                whole = all(isinstance(value, int) for value in given)
                fix += f", or {name!r}: {'Int' if whole else 'Float'}({low!r}, {high!r}) for " \
                       "the range"
        else:
            fix = f"write {name!r}: Float(low, high), Int(low, high) or Choice([...])"
        raise TuningError(f"tune(parameters=...) gives {name!r} {given!r}, not a range",
                          location=location,
                          fix=fix + " (from kale.sdk.tuning import Float, Int, Choice)")
    if isinstance(given, Float) and kind != "float":
        fix = (f"use Int({math.ceil(given.low)}, {math.floor(given.high)})"
               if kind == "int" else "use Choice([...]) with values of its type")
        raise TuningError(f"parameter {name!r} is a {kind} {default}, and Float gives real "
                          "numbers", location=where, fix=fix + ", or change the parameter's "
                          "default")
    if isinstance(given, Int) and kind not in ("int", "float"):
        raise TuningError(f"parameter {name!r} is a {kind} {default}, and Int gives whole "
                          "numbers", location=where,
                          fix="use Choice([...]) with values of its type, or change the "
                          "parameter's default")
    if isinstance(given, Choice):
        for value in given.values:
            try:
                coerced = parameter.coerce(value)
            except ValueError as reason:
                raise TuningError(f"Choice(...) for parameter {name!r} holds {value!r}, which a "
                                  f"{kind} parameter {default} does not take: {reason}",
                                  location=where, fix=f"give values of type {kind}") from None
            changed = coerced != value or type(coerced) is not type(value)
            if changed and not (kind == "float" and isinstance(value, int)):
                raise TuningError(f"Choice(...) for parameter {name!r} holds {value!r} "
                                  f"({type(value).__name__}), and the parameter is a {kind} "
                                  f"{default}", location=where,
                                  fix=f"give values of type {kind}")
    return given


def space_json(space: Mapping[str, Space]) -> dict[str, Any]:
    """The space as the study record keeps it."""
    return {name: entry.to_json() for name, entry in space.items()}
