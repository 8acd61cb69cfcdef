"""Reading the user's source: where a function's code is, and its syntax tree when needed.

Kale reads pipelines and steps from their source (it never runs a pipeline body), and every error
points into that source. Parsing whole files is the slow part of that (a 4,500-line module takes
~90 ms), so a function is located from its code object (first line, ``def`` line and last line)
and only its own lines are parsed, with their line and column numbers kept as in the file. The
whole file is parsed only to explain an error, and as a fallback.
"""

from __future__ import annotations

import ast
import functools
import linecache
import re
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any

from kale.errors import SourceLocation

FunctionNode = ast.FunctionDef | ast.AsyncFunctionDef
# String literals (triple-quoted or not, with escapes) and identifiers, for header_names.
_STRINGS = re.compile(
    r"""(?s)('''.*?'''|\"\"\".*?\"\"\"|'(?:\\.|[^'\\\n])*'|"(?:\\.|[^"\\\n])*")"""
)
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass
class SourceFile:
    """One whole parsed file: its lines, text, tree, functions and calls by position."""

    filename: str
    lines: list[str]
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


_files: dict[str, SourceFile] = {}


@functools.lru_cache(maxsize=4096)
def parse_step_text(text: str) -> ast.Module:
    """A step's ``def`` (its text, as ``StepSource.text``), parsed once however many parts of
    Kale read it; an empty module when it does not parse. Callers must not change the tree."""
    import textwrap

    try:
        return ast.parse(textwrap.dedent(text))
    except SyntaxError:
        return ast.Module(body=[], type_ignores=[])


def source_lines(filename: str, module_globals: dict[str, Any] | None = None) -> list[str]:
    """The lines of a file as Python's tracebacks see them ([] when unknown)."""
    return linecache.getlines(filename, module_globals)


def read_source(filename: str, module_globals: dict[str, Any] | None = None) -> SourceFile | None:
    """The whole parsed file, or None when its source cannot be read or parsed."""
    lines = source_lines(filename, module_globals)
    if not lines:
        return None
    cached = _files.get(filename)
    # linecache hands out the same list until the file changes, so identity means "unchanged".
    if cached is not None and cached.lines is lines:
        return cached
    text = "".join(lines)
    try:
        tree = ast.parse(text, filename)
    except SyntaxError:
        return None
    parsed = SourceFile(filename, lines, text, tree)
    _files[filename] = parsed
    return parsed


@dataclass
class FunctionSpan:
    """Where a function's code is in its file: first decorator, ``def`` line and last line."""

    name: str
    filename: str
    lines: list[str]
    first_line: int
    def_line: int
    end_line: int
    module_globals: dict[str, Any] | None = None
    _parsed: tuple[str, FunctionNode] | None = field(default=None, repr=False)

    @property
    def indent(self) -> int:
        line = self.lines[self.def_line - 1]
        return len(line) - len(line.lstrip())

    def text(self) -> str:
        """The ``def`` and its body, without decorators, exactly as written (indentation too:
        dedenting could change multi-line strings). ``kale.runtime`` compiles it."""
        return "".join(self.lines[self.def_line - 1 : self.end_line])

    def _parse_lines(self, first: int, last: int, tail: str = "") -> tuple[str, ast.Module]:
        """Parse lines first..last of the file so that nodes carry the file's own positions:
        blank lines stand in for what comes before, and an indented function gets a block."""
        head = self.lines[first - 1 : last]
        padding = "\n" * (first - 2) + "if 1:\n" if self.indent else "\n" * (first - 1)
        text = padding + "".join(head) + tail
        return text, ast.parse(text, self.filename)

    def parse(self) -> tuple[str, FunctionNode] | None:
        """The function's syntax tree (positions as in the file) and the text it came from."""
        if self._parsed is None:
            node = None
            try:
                text, tree = self._parse_lines(self.first_line, self.end_line)
                node = _find_function(tree, self.name, self.def_line)
            except SyntaxError:
                pass
            if node is None:  # the span was cut wrong: fall back to the whole file
                whole = read_source(self.filename, self.module_globals)
                node = whole and whole.functions.get((self.name, self.def_line))
                if node is None:
                    return None
                text = whole.text
            self._parsed = (text, node)
        return self._parsed

    def header_names(self) -> list[str] | None:
        """Identifiers in the ``def`` line(s), in order and with repeats, string literals left
        out; None when the end of the header is unclear. A cheap look before
        ``parse_header``."""
        code, depth = "", 0
        for number in range(self.def_line, min(self.def_line + 20, self.end_line) + 1):
            line = _STRINGS.sub('""', self.lines[number - 1]).split("#", 1)[0].rstrip()
            code += line + "\n"
            depth += sum(line.count(c) for c in "([{") - sum(line.count(c) for c in ")]}")
            if depth == 0 and line.endswith(":"):
                return _IDENTIFIER.findall(code)
        return None

    def parse_header(self) -> FunctionNode | None:
        """Only the ``def`` line(s) with the parameters and their defaults, parsed cheaply."""
        for last in range(self.def_line, min(self.def_line + 20, self.end_line) + 1):
            try:
                _, tree = self._parse_lines(self.def_line, last,
                                            "\n" + " " * (self.indent + 4) + "pass\n")
            except SyntaxError:
                continue
            node = _find_function(tree, self.name, self.def_line)
            if node is not None:
                return node
        parsed = self.parse()
        return parsed[1] if parsed else None


def _find_function(tree: ast.Module, name: str, line: int) -> FunctionNode | None:
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == name \
                and node.lineno == line:
            return node
    return None


def function_span(func: Any) -> FunctionSpan | None:
    """Locate a Python function in its file, or None when its source cannot be read."""
    code = getattr(func, "__code__", None)
    if code is None:
        return None
    module_globals = getattr(func, "__globals__", None)
    lines = source_lines(code.co_filename, module_globals)
    first = code.co_firstlineno
    if not lines or first > len(lines):
        return None
    def_line = next((number for number in range(first, min(first + 200, len(lines)) + 1)
                     if _defines(lines[number - 1], code.co_name)), None)
    end = _last_line(code)
    if def_line is None or end is None:
        whole = read_source(code.co_filename, module_globals)
        node = whole and whole.functions.get((code.co_name, first))
        if node is None:
            return None
        def_line, end = node.lineno, node.end_lineno
    else:
        # Lines the compiler leaves no trace of (comments, a final `pass` on older Pythons)
        # still belong to the function if they are indented under it.
        indent = len(lines[def_line - 1]) - len(lines[def_line - 1].lstrip())
        while end < len(lines):
            following = lines[end]
            stripped = following.strip()
            if stripped and len(following) - len(following.lstrip()) <= indent:
                break
            end += 1
        while end > def_line and not lines[end - 1].strip():
            end -= 1
    return FunctionSpan(code.co_name, code.co_filename, lines, first, def_line, end,
                        module_globals)


def _defines(line: str, name: str) -> bool:
    """Whether a line starts the definition of function ``name``."""
    words = line.split(None, 2)
    if words[:1] == ["async"]:
        words = [*words[1:], ""]
    if len(words) < 2 or words[0] != "def" or not words[1].startswith(name):
        return False
    rest = words[1][len(name):]
    return not rest or not (rest[0].isalnum() or rest[0] == "_")


def _last_line(code: Any) -> int | None:
    """The last source line a code object covers (3.11+: from its instruction positions)."""
    positions = getattr(code, "co_positions", None)
    if positions is None:
        return None
    # map/filter keep the walk over every instruction in C.
    return max(filter(None, map(itemgetter(1), positions())), default=None)


def function_source(func: Any) -> tuple[str, FunctionNode] | None:
    """The syntax tree of a function with positions as in its file, and the text it was parsed
    from (for ``ast.get_source_segment``); None when the source is unavailable."""
    span = function_span(func)
    return span.parse() if span is not None else None


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
