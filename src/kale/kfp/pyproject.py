"""The project's ``pyproject.toml`` as Kale reads it: ``[tool.kale]`` (image, requirements,
bundle store, per-step tables) checked, ``[project] dependencies``, and where each setting is
written, so that an error points at its line."""

from __future__ import annotations

import difflib
import os
import re
from pathlib import Path
from typing import Any

from kale.errors import KaleError, SourceLocation

#: What ``[tool.kale]`` and ``[tool.kale.steps.<name>]`` may hold.
PIPELINE_KEYS = {"image": "str", "requirements": "list", "bundle_store": "str", "steps": "table",
                 "cache": "table"}  # [tool.kale.cache] is kale.cache's (max_size)
STEP_KEYS = {"image": "str", "requirements": "list"}


_KEY_PART = re.compile(r"""\s*(?:"((?:[^"\\]|\\.)*)"|'([^']*)'|([A-Za-z0-9_-]+))\s*""")
_HEADER = re.compile(r"^\s*\[\[?([^\[\]]*)\]\]?\s*(?:#.*)?$")
_KEY_LINE = re.compile(r"^\s*([^=#\[\]]+?)\s*=")


def _key_path(text: str) -> tuple[str, ...] | None:
    """A TOML key as its parts (``tool.kale."steps"`` -> tool, kale, steps), None if not one."""
    parts: list[str] = []
    rest = text
    while True:
        match = _KEY_PART.match(rest)
        if not match or not match.group(0).strip():
            return None
        parts.append(next(group for group in match.groups() if group is not None))
        rest = rest[match.end():]
        if not rest:
            return tuple(parts)
        if rest[0] != ".":
            return None
        rest = rest[1:]


class Pyproject:
    """The project's ``pyproject.toml``: its content, and where each setting is written."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.exists = path.is_file()
        self.data = _read_toml(path) if self.exists else {}

    def location(self, *keys: str) -> SourceLocation | None:
        """The line that sets ``keys`` (a table's header, or a ``key =`` line inside its table,
        dotted keys included); else the line of the nearest enclosing table or key that is
        written out, so a message never points into another table."""
        try:
            lines = self.path.read_text().splitlines()
        except (OSError, UnicodeDecodeError):
            return None
        best: tuple[int, int] | None = None  # (how many keys matched, line number)
        table: tuple[str, ...] = ()
        for number, line in enumerate(lines, start=1):
            header = _HEADER.match(line)
            if header:
                table = _key_path(header.group(1)) or ("\0",)
                written = table
            else:
                key = _KEY_LINE.match(line)
                parsed = _key_path(key.group(1)) if key else None
                if parsed is None:
                    continue
                written = table + parsed
            if written == keys[: len(written)] and (best is None or len(written) > best[0]):
                best = (len(written), number)
                if len(written) == len(keys):
                    break
        if best is None:
            return None
        line = lines[best[1] - 1]
        return SourceLocation(str(self.path), best[1], len(line) - len(line.lstrip()))

    def table(self, *keys: str) -> dict[str, Any]:
        """The table at ``keys`` ({} when absent); an error that says where when a value on the
        way is not a table (``tool = 5``)."""
        value: Any = self.data
        for depth in range(len(keys)):
            value = value.get(keys[depth], {})
            if not isinstance(value, dict):
                name = ".".join(keys[: depth + 1])
                inside = f" in [{'.'.join(keys[:depth])}]" if depth else ""
                raise KaleError(
                    f"`{keys[depth]}`{inside} of {self.path.name} is {value!r}, not a table",
                    location=self.location(*keys[: depth + 1]),
                    fix=f"remove `{keys[depth]} = ...`, or make it a table: a [{name}] "
                    "header followed by its settings",
                )
        return value


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        import tomllib
    except ImportError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]
    try:
        with open(path, "rb") as handle:
            return tomllib.load(handle)
    except (OSError, ValueError) as error:
        raise KaleError(f"{path} cannot be read: {error}",
                        fix="correct the file's TOML syntax") from None


def _check(table: dict[str, Any], keys: dict[str, str], where: tuple[str, ...],
           pyproject: Pyproject) -> None:
    header = f"[{'.'.join(where)}]"
    for key, value in table.items():
        if key not in keys:
            close = difflib.get_close_matches(key, keys, n=1)
            raise KaleError(
                f"{header} in {pyproject.path.name} has an unknown setting `{key}`",
                location=pyproject.location(*where, key),
                fix=f"did you mean `{close[0]}`?" if close else
                f"the settings are: {', '.join(sorted(keys))}",
            )
        kind = keys[key]
        valid = (isinstance(value, str) and value.strip() if kind == "str" else
                 isinstance(value, list) and all(isinstance(item, str) for item in value)
                 if kind == "list" else isinstance(value, dict))
        if not valid:
            wanted = {"str": "a non-empty string", "table": "a table of steps",
                      "list": 'a list of requirement strings, such as ["pandas==2.2.3"]'}[kind]
            raise KaleError(
                f"`{key}` in {header} of {pyproject.path.name} is {value!r}, not {wanted}",
                location=pyproject.location(*where, key),
                fix=f"write {key} as {wanted}",
            )


def read_settings(pyproject: Pyproject) -> dict[str, Any]:
    settings = pyproject.table("tool", "kale")
    _check(settings, PIPELINE_KEYS, ("tool", "kale"), pyproject)
    for name, table in settings.get("steps", {}).items():
        if not isinstance(table, dict):
            raise KaleError(
                f"[tool.kale.steps] in {pyproject.path.name} sets `{name}` to {table!r}",
                location=pyproject.location("tool", "kale", "steps", name),
                fix=f'write a table: [tool.kale.steps.{name}] with image = "..." '
                "or requirements = [...]")
        _check(table, STEP_KEYS, ("tool", "kale", "steps", name), pyproject)
    return settings


def kale_settings(root: str | os.PathLike[str]) -> dict[str, Any]:
    """``[tool.kale]`` of the project's ``pyproject.toml``, checked ({} when there is none)."""
    return read_settings(Pyproject(Path(root) / "pyproject.toml"))


def project_dependencies(pyproject: Pyproject) -> list[str] | None:
    """``[project] dependencies``, checked (None when not written)."""
    if not pyproject.exists:
        return None
    declared = pyproject.table("project").get("dependencies")
    if declared is None:
        return None
    if not isinstance(declared, list) or not all(isinstance(item, str) for item in declared):
        raise KaleError(
            f"`dependencies` in [project] of {pyproject.path.name} is {declared!r}, not a list "
            "of requirement strings",
            location=pyproject.location("project", "dependencies"),
            fix='write dependencies as a list, such as dependencies = ["numpy==2.1.3"]',
        )
    return declared


