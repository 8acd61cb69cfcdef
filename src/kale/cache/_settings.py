"""``[tool.kale.cache]`` of the project's ``pyproject.toml``: how big the cache may grow."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from kale.errors import KaleError

#: The cache's size cap when ``[tool.kale.cache] max_size`` does not set one.
DEFAULT_MAX_SIZE = 10 * 1000**3
KEYS = ("max_size",)

_SIZE = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([kmgt]i?b?|b)?\s*", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 1000, "m": 1000**2, "g": 1000**3, "t": 1000**4,
          "ki": 1024, "mi": 1024**2, "gi": 1024**3, "ti": 1024**4}
SIZE_HELP = "a number of bytes, or a size such as \"500MB\", \"10GB\" or \"1.5GiB\""


def parse_size(value: Any) -> int | None:
    """Bytes from ``10_000_000``, ``"500MB"``, ``"10GB"``, ``"1.5GiB"``; None when it is not
    a size."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value >= 0 else None
    if isinstance(value, float):
        return int(value) if value >= 0 and value == value and value != float("inf") else None
    if not isinstance(value, str):
        return None
    match = _SIZE.fullmatch(value)
    if not match:
        return None
    unit = (match.group(2) or "").lower()
    unit = unit[:-1] if unit.endswith("b") and len(unit) > 1 else unit
    return int(float(match.group(1)) * _UNITS[unit])


def format_size(size: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1000:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} TB"


def read_settings(project_root: str | os.PathLike[str]) -> dict[str, Any]:
    """``[tool.kale.cache]``, checked: ``{"max_size": bytes}``. A misspelt setting or a value
    that is not a size is an error pointing at its line."""
    from kale.kfp.pyproject import Pyproject  # reads TOML and finds lines; imports no kfp

    pyproject = Pyproject(Path(project_root) / "pyproject.toml")
    table = pyproject.table("tool", "kale", "cache") if pyproject.exists else {}
    for key in table:
        if key not in KEYS:
            import difflib

            close = difflib.get_close_matches(key, KEYS, n=1)
            raise KaleError(
                f"[tool.kale.cache] in {pyproject.path.name} has an unknown setting `{key}`",
                location=pyproject.location("tool", "kale", "cache", key),
                fix=f"did you mean `{close[0]}`?" if close else
                f"the settings are: {', '.join(KEYS)}")
    settings = {"max_size": DEFAULT_MAX_SIZE}
    if "max_size" in table:
        size = parse_size(table["max_size"])
        if size is None:
            raise KaleError(
                f"`max_size` in [tool.kale.cache] of {pyproject.path.name} is "
                f"{table['max_size']!r}, not a size",
                location=pyproject.location("tool", "kale", "cache", "max_size"),
                fix=f"write max_size as {SIZE_HELP}")
        settings["max_size"] = size
    return settings
