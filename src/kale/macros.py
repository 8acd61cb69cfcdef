"""Kubeflow's run macros in parameter values: ``[[RunUUID]]``, ``[[CurrentTime]]`` and friends.

Kubeflow replaces these in a run's parameter values when the run is submitted; a local run
replaces them the same way, with the local run's id and start time. ``[[CurrentTime]]`` and
``[[ScheduledTime]]`` use Kubeflow's default layout (``20060102150405``, i.e. yyyyMMddHHmmss) or
the Go time layout after a dot: ``[[CurrentTime.2006-01-02]]``. A one-off run has index 1.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from typing import Any

#: A macro in a value: its name and, for [[CurrentTime.<layout>]], the layout.
MACRO = re.compile(r"\[\[(RunUUID|CurrentTime|ScheduledTime|Index)(?:\.([^\]]+))?\]\]")
_DEFAULT_LAYOUT = "20060102150405"


def _zone(moment: datetime, colon: bool, zulu: bool) -> str:
    offset = moment.utcoffset()
    seconds = int(offset.total_seconds()) if offset is not None else 0
    if zulu and seconds == 0:
        return "Z"
    sign = "-" if seconds < 0 else "+"
    hours, minutes = divmod(abs(seconds) // 60, 60)
    return f"{sign}{hours:02d}{':' if colon else ''}{minutes:02d}"


# Go's reference time is Mon Jan 2 15:04:05 MST 2006; a layout spells the parts it wants with
# those very values. Longest tokens first, so "2006" wins over "2" and "01" over "1".
_GO_TOKENS: list[tuple[str, Callable[[datetime], str]]] = [
    ("January", lambda m: m.strftime("%B")),
    ("Monday", lambda m: m.strftime("%A")),
    ("Z07:00", lambda m: _zone(m, colon=True, zulu=True)),
    ("-07:00", lambda m: _zone(m, colon=True, zulu=False)),
    ("Z0700", lambda m: _zone(m, colon=False, zulu=True)),
    ("-0700", lambda m: _zone(m, colon=False, zulu=False)),
    ("2006", lambda m: f"{m.year:04d}"),
    (".000000", lambda m: f".{m.microsecond:06d}"),
    (".000", lambda m: f".{m.microsecond // 1000:03d}"),
    ("Jan", lambda m: m.strftime("%b")),
    ("Mon", lambda m: m.strftime("%a")),
    ("MST", lambda m: m.tzname() or "UTC"),
    ("-07", lambda m: _zone(m, colon=False, zulu=False)[:3]),
    ("_2", lambda m: f"{m.day:>2d}"),
    ("15", lambda m: f"{m.hour:02d}"),
    ("06", lambda m: f"{m.year % 100:02d}"),
    ("01", lambda m: f"{m.month:02d}"),
    ("02", lambda m: f"{m.day:02d}"),
    ("03", lambda m: f"{(m.hour % 12) or 12:02d}"),
    ("04", lambda m: f"{m.minute:02d}"),
    ("05", lambda m: f"{m.second:02d}"),
    ("PM", lambda m: "PM" if m.hour >= 12 else "AM"),
    ("pm", lambda m: "pm" if m.hour >= 12 else "am"),
    ("1", lambda m: str(m.month)),
    ("2", lambda m: str(m.day)),
    ("3", lambda m: str((m.hour % 12) or 12)),
    ("4", lambda m: str(m.minute)),
    ("5", lambda m: str(m.second)),
]


def format_go_layout(moment: datetime, layout: str) -> str:
    """Format ``moment`` with a Go time layout, as Kubeflow's macros do."""
    result, position = [], 0
    while position < len(layout):
        for token, render in _GO_TOKENS:
            if layout.startswith(token, position):
                result.append(render(moment))
                position += len(token)
                break
        else:
            result.append(layout[position])
            position += 1
    return "".join(result)


def expand(value: Any, run_id: str, started: datetime) -> Any:
    """``value`` with every macro replaced; values that are not strings are returned as they are."""
    if not isinstance(value, str) or "[[" not in value:
        return value

    def replace(match: re.Match[str]) -> str:
        name, layout = match.group(1), match.group(2)
        if name == "RunUUID":
            return run_id
        if name == "Index":
            return "1"
        return format_go_layout(started, layout or _DEFAULT_LAYOUT)

    return MACRO.sub(replace, value)
