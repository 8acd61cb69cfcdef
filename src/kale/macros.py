"""Kubeflow's run macros in parameter values: ``[[RunUUID]]``, ``[[CurrentTime]]`` and friends.

Kubeflow replaces these in a run's parameter values when the run is submitted; a local run
replaces them the same way, with the local run's id and start time. ``[[CurrentTime]]`` and
``[[ScheduledTime]]`` use Kubeflow's default layout (``20060102150405``, i.e. yyyyMMddHHmmss) or
the Go time layout after a dot: ``[[CurrentTime.2006-01-02]]``. A one-off run has index 1.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

_MACRO = re.compile(r"\[\[(RunUUID|CurrentTime|ScheduledTime|Index)(?:\.([^\]]+))?\]\]")
_DEFAULT_LAYOUT = "20060102150405"
# Go's reference-time tokens, longest first so "2006" wins over "06" and "01" over "1".
_GO_TOKENS = [
    ("January", "%B"), ("Monday", "%A"), ("2006", "%Y"), ("Jan", "%b"), ("Mon", "%a"),
    ("MST", "%Z"), ("-0700", "%z"), ("Z0700", "%z"), ("Z07:00", "%z"), ("-07:00", "%z"),
    (".000000", ".%f"), ("15", "%H"), ("06", "%y"), ("01", "%m"), ("02", "%d"), ("03", "%I"),
    ("04", "%M"), ("05", "%S"), ("PM", "%p"), ("pm", "%p"),
]


def go_layout_to_strftime(layout: str) -> str:
    """Translate a Go time layout (what Kubeflow's macros take) into a strftime format."""
    result, position = [], 0
    while position < len(layout):
        for token, directive in _GO_TOKENS:
            if layout.startswith(token, position):
                result.append(directive)
                position += len(token)
                break
        else:
            character = layout[position]
            result.append("%%" if character == "%" else character)
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
        return started.strftime(go_layout_to_strftime(layout or _DEFAULT_LAYOUT))

    return _MACRO.sub(replace, value)
