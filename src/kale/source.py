"""Reading the user's source files: each parsed once, with an index of its function definitions.

Kale reads pipelines and steps from their source (never by running the pipeline body), and every
error points into that source, so the parse trees are shared by the parser, the step checks and
the error locations.
"""

from __future__ import annotations

import ast
import linecache
from dataclasses import dataclass, field
from typing import Any

from kale.errors import SourceLocation

FunctionNode = ast.FunctionDef | ast.AsyncFunctionDef


@dataclass
class SourceFile:
    """One parsed file: its text, its tree and where its functions are defined."""

    filename: str
    text: str
    tree: ast.Module
    functions: dict[tuple[str, int], FunctionNode] = field(default_factory=dict)
    calls: dict[tuple[int, int], ast.Call] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for node in ast.walk(self.tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                # A code object's first line is its first decorator's line; index both lines.
                self.functions[(node.name, node.lineno)] = node
                if node.decorator_list:
                    self.functions[(node.name, node.decorator_list[0].lineno)] = node
            elif isinstance(node, ast.Call):
                self.calls[(node.lineno, node.col_offset)] = node

    def segment(self, node: ast.AST) -> str:
        return ast.get_source_segment(self.text, node) or ""


_cache: dict[str, SourceFile] = {}


def read_source(filename: str, module_globals: dict[str, Any] | None = None) -> SourceFile | None:
    """The parsed file, or None when its source cannot be read (a REPL, a compiled-only module)."""
    lines = linecache.getlines(filename, module_globals)
    if not lines:
        return None
    text = "".join(lines)
    cached = _cache.get(filename)
    if cached is not None and cached.text == text:
        return cached
    try:
        tree = ast.parse(text, filename)
    except SyntaxError:
        return None
    parsed = SourceFile(filename, text, tree)
    _cache[filename] = parsed
    return parsed


def function_source(func: Any) -> tuple[SourceFile, FunctionNode] | None:
    """The file and ``def`` node of a Python function, or None when its source is unavailable."""
    code = getattr(func, "__code__", None)
    if code is None:
        return None
    source = read_source(code.co_filename, getattr(func, "__globals__", None))
    if source is None:
        return None
    node = source.functions.get((code.co_name, code.co_firstlineno))
    return None if node is None else (source, node)


def refine_location(
    location: SourceLocation, keyword: str, key: str | None = None
) -> SourceLocation:
    """Narrow the location of a call to one of its keyword arguments (and a key of its dict).

    Used to put the caret of an option error under ``retry_count=-1`` rather than under the whole
    ``@step(...)`` line. Returns ``location`` unchanged when the call cannot be found.
    """
    source = read_source(location.file)
    call = source and source.calls.get((location.line, location.column))
    if call is None:
        return location
    for argument in call.keywords:
        if argument.arg != keyword:
            continue
        if key is not None and isinstance(argument.value, ast.Dict):
            for dict_key in argument.value.keys:
                if isinstance(dict_key, ast.Constant) and dict_key.value == key:
                    return SourceLocation.of_node(dict_key, location.file)
        return SourceLocation.of_node(argument, location.file)
    return location
