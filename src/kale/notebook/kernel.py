"""The IPython kernel Kale may be running in: the cells it has executed, and how errors show.

In a notebook the "module" a step lives in is the kernel's user namespace, built by the cells
executed so far, in execution order. IPython compiles every cell under a file name of its own
(ipykernel: ``/tmp/ipykernel_<pid>/<hash>.py``, named after the cell's text; plain IPython:
``<ipython-input-<n>-<hash>>``) and keeps the compiled text in ``linecache``. This module maps
those names back to cells and to the ``cell In[3]`` labels IPython's own tracebacks use, and
shows uncaught Kale errors in a cell's output as Kale's message instead of a traceback.

Everything here is a no-op outside IPython, and IPython is never imported: it is looked up in
``sys.modules``, where it is whenever Kale runs inside a kernel.
"""

from __future__ import annotations

import ast
import linecache
import os
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from kale.errors import DefinitionError, KaleError, painted


@dataclass
class Cell:
    """One execution of a code cell: the file name IPython compiled it under, its execution
    count (the ``3`` of ``In[3]``) and its lines as compiled (magics already turned into
    ``get_ipython()`` calls), each ending with a newline, as ``linecache`` holds them."""

    filename: str
    execution_count: int
    lines: list[str]

    @property
    def source(self) -> str:
        return "".join(self.lines)

    @property
    def label(self) -> str:
        return f"cell In[{self.execution_count}]"


def _shell() -> Any | None:
    """The running IPython shell, or None; never imports IPython."""
    ipython = sys.modules.get("IPython")
    get_ipython = getattr(ipython, "get_ipython", None)  # None while IPython is half-imported
    return get_ipython() if get_ipython is not None else None


def _is_user_namespace(shell: Any, module_globals: Mapping[str, Any]) -> bool:
    user_module = getattr(shell, "user_module", None)
    return module_globals is shell.user_ns or module_globals is getattr(user_module, "__dict__",
                                                                         None)


def _normalized(lines: Iterable[str]) -> tuple[str, ...]:
    """Lines compared without their newlines and trailing blank lines: IPython's history strips
    the cell's final newlines, ``linecache`` holds one newline per line."""
    stripped = [line.rstrip("\n") for line in lines]
    while stripped and not stripped[-1]:
        stripped.pop()
    return tuple(stripped)


def _compiled_names(shell: Any) -> dict[str, int]:
    """Every file name the shell compiled a cell under, with the execution count it last had.

    IPython's CachingCompiler records this in ``_filename_map`` (since IPython 8.0, with
    ``format_code_name``: ipython/ipython#13043; read here as of IPython 9.18) and there is no
    public way to list it. Older IPython has neither: no cells are found there."""
    names = getattr(getattr(shell, "compile", None), "_filename_map", None)
    return dict(names) if isinstance(names, Mapping) else {}


def kernel_cells(module_globals: Mapping[str, Any] | None = None) -> list[Cell] | None:
    """The code cells executed so far in this IPython kernel, in execution order, or None when
    not running in IPython (or when ``module_globals`` is given and is not the namespace the
    cells run in, the kernel's ``__main__``).

    A cell executed twice appears twice, once per execution count. Left out, as they define
    nothing or cannot be read: cells with a syntax error, cells that never reached the compiler
    (an input transformation failed), executions outside the history (``silent`` requests from
    front-ends) and cells whose text ``linecache`` no longer holds (``linecache.clearcache()``).
    """
    shell = _shell()
    if shell is None:
        return None
    if module_globals is not None and not _is_user_namespace(shell, module_globals):
        return None
    # ipykernel names a cell's file after its text, so a cell run twice is one file whose
    # _filename_map entry holds only the last count; the history (one entry per execution
    # count, as `%history` reads it) says which text ran when, and the text leads to the file.
    history = getattr(shell, "history_manager", None)
    if history is None:
        return []
    names = _compiled_names(shell)
    by_text: dict[tuple[str, ...], list[str]] = {}
    for name in names:
        lines = linecache.getlines(name)
        if lines:
            by_text.setdefault(_normalized(lines), []).append(name)
    cells = []
    for _session, count, text in history.get_range(0, 1, None, raw=False):
        candidates = by_text.get(_normalized(text.splitlines()))
        if not candidates:
            continue
        # Two raw cells can compile to the same text; prefer the file this count compiled.
        name = next((name for name in candidates if names[name] == count), candidates[0])
        lines = linecache.getlines(name)
        if _compiles(name, lines):
            cells.append(Cell(name, count, lines))
    return cells


# File name -> whether its text parses. IPython names a file after the text it holds, so the
# answer never changes; the text is kept too, in case a name is ever reused for another text.
_parses: dict[str, tuple[list[str], bool]] = {}


def _compiles(name: str, lines: list[str]) -> bool:
    """Whether a cell's text parses as IPython parses cells (top-level ``await`` allowed): one
    with a syntax error is compiled under its name but never executed."""
    known = _parses.get(name)
    if known is not None and known[0] == lines:
        return known[1]
    try:
        compile("".join(lines), name, "exec",
                ast.PyCF_ONLY_AST | getattr(ast, "PyCF_ALLOW_TOP_LEVEL_AWAIT", 0))
        parses = True
    except (SyntaxError, ValueError):  # ValueError: a null byte in the source
        parses = False
    _parses[name] = (lines, parses)
    return parses


def cell_label(filename: str) -> str | None:
    """``cell In[3]`` for the file name of an executed cell (its latest execution, as IPython's
    tracebacks say ``Cell In[3], line 2``), None for any other file or outside IPython."""
    shell = _shell()
    compiler = getattr(shell, "compile", None)
    if compiler is None:
        return None
    format_code_name = getattr(compiler, "format_code_name", None)
    if format_code_name is not None:  # IPython 8+
        label = format_code_name(filename)
        return f"cell {label[1]}" if label else None
    count = _compiled_names(shell).get(filename)
    return f"cell In[{count}]" if count is not None else None


# The hint for the notebook: there is no command line to put an environment variable on.
_DEBUG_HINT = "(run %env KALE_DEBUG=1 to see the Python traceback)"


def _show_kale_error(
    shell: Any,
    kind: type[BaseException],
    error: BaseException,
    tb: TracebackType | None,
    tb_offset: int | None = None,
) -> None:
    # As IPython's showtraceback does: %debug and %tb read the last exception from sys.
    sys.last_type, sys.last_value, sys.last_traceback = kind, error, tb
    if sys.version_info >= (3, 12):
        sys.last_exc = error
    if os.environ.get("KALE_DEBUG"):
        lines = shell.InteractiveTB.structured_traceback(kind, error, tb, tb_offset=tb_offset)
    else:
        lines = painted(error.render()).split("\n")
        if isinstance(error, DefinitionError):
            lines.append(_DEBUG_HINT)
    # IPython ignores what a custom handler returns: the handler must show the error itself.
    # _showtraceback is the hook each shell implements (ipykernel sends an "error" message, the
    # terminal prints), so the cell's output gets an error with Kale's lines as its traceback.
    shell._showtraceback(kind, error, lines)
    if getattr(shell, "call_pdb", False):
        shell.debugger(force=True)


def _is_kale_handler(handler: Any) -> bool:
    return getattr(getattr(handler, "__func__", None), "kale_error_display", False)


def install_error_display() -> bool:
    """Show uncaught Kale errors in IPython as Kale's message, location and fix (without the
    frames of Kale's internals; ``%env KALE_DEBUG=1`` brings the traceback back). Other
    exceptions keep IPython's traceback, and a custom handler installed before keeps its own.

    Idempotent. Returns whether Kale runs in IPython; outside it, does nothing."""
    shell = _shell()
    if shell is None or not hasattr(shell, "set_custom_exc"):
        return False
    if _is_kale_handler(getattr(shell, "CustomTB", None)):
        return True
    previous_kinds = tuple(getattr(shell, "custom_exceptions", ()) or ())
    previous = shell.CustomTB if previous_kinds else None

    def handler(shell: Any, kind: type[BaseException], error: BaseException,
                tb: TracebackType | None, tb_offset: int | None = None) -> Any:
        if previous is not None and not isinstance(error, KaleError):
            return previous(kind, error, tb, tb_offset=tb_offset)
        _show_kale_error(shell, kind, error, tb, tb_offset)
        return None

    shell.set_custom_exc((*previous_kinds, KaleError), handler)
    # set_custom_exc wraps the handler in a function of its own; mark that one, so a second call
    # can tell Kale's handler is in place (and a later set_custom_exc by someone else is seen).
    shell.CustomTB.__func__.kale_error_display = True
    return True
