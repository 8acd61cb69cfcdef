"""Every error a Kale user can see, and how it is shown.

Each error says what is wrong, where (file, line, column and the source line with a caret) and how
to fix it. ``str(error)`` is the whole message, so an error caught in a notebook or a test reads
the same as one printed by the command line. Uncaught, a ``DefinitionError`` is printed without a
Python traceback and the process exits with status 2 (``KALE_DEBUG=1`` shows the traceback too).
In a Jupyter notebook an uncaught Kale error shows the same way in the cell's output, and a
location in a cell reads ``cell In[3], line 2`` as IPython's own tracebacks do.
"""

from __future__ import annotations

import contextlib
import linecache
import os
import re
import sys
import traceback
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from types import FrameType, TracebackType
from typing import Any


def display_path(path: str | os.PathLike[str]) -> str:
    """A path as the user would type it: relative to the working directory when inside it."""
    path = os.fspath(path)
    try:
        relative = os.path.relpath(path)
    except ValueError:  # another drive on Windows
        return path
    return path if relative.startswith("..") else relative


def _cell_label(file: str) -> str | None:
    # Cells are compiled under names that are not files (ipykernel writes them under its temp
    # folder only for the debugger); every ordinary file is settled by one stat, without
    # importing anything.
    if os.path.isfile(file) and not os.path.basename(os.path.dirname(file)).startswith(
            "ipykernel_"):
        return None
    from kale.notebook.kernel import cell_label

    return cell_label(file)


_TRACEBACK_FILE = re.compile(r'File "([^"]+)", line (\d+)')


def name_cells(traceback_text: str) -> str:
    """A traceback with notebook cells named as IPython names them (``Cell In[3], line 2``)
    rather than by the kernel's temporary file; unchanged outside a kernel."""
    if "IPython" not in sys.modules:
        return traceback_text

    def named(match: re.Match[str]) -> str:
        label = _cell_label(match.group(1))
        return f"{label[0].upper()}{label[1:]}, line {match.group(2)}" if label else \
            match.group(0)

    return _TRACEBACK_FILE.sub(named, traceback_text)


# The positions of the code object read last: the decorators of a module's steps all run in
# the module's code, whose positions would otherwise be walked again for each of them (a
# 500-step module: a sixth of its whole compile).
_last_positions: tuple[Any, list[Any]] = (None, [])


def _positions(code: Any) -> list[Any]:
    global _last_positions
    if _last_positions[0] is not code:
        _last_positions = (code, list(code.co_positions()))
    return _last_positions[1]


@dataclass(frozen=True)
class SourceLocation:
    """A place in the user's source: 1-based line, 0-based column (as ``ast`` counts them)."""

    file: str
    line: int
    column: int = 0
    end_line: int | None = None
    end_column: int | None = None

    @classmethod
    def of_node(cls, node: Any, file: str) -> SourceLocation:
        """The location of an ``ast`` node that was parsed from ``file``."""
        return cls(
            file=file,
            line=node.lineno,
            column=node.col_offset,
            end_line=getattr(node, "end_lineno", None),
            end_column=getattr(node, "end_col_offset", None),
        )

    @classmethod
    def of_frame(cls, frame: FrameType) -> SourceLocation:
        """The location of the call being executed in ``frame`` (exact columns on 3.11+)."""
        code = frame.f_code
        if hasattr(code, "co_positions") and frame.f_lasti >= 0:
            positions = _positions(code)
            index = frame.f_lasti // 2  # one entry per 2-byte code unit
            position = positions[index] if index < len(positions) else None
            if position is not None and position[0] is not None:
                line, end_line, column, end_column = position
                return cls(code.co_filename, line, column or 0, end_line, end_column)
        return cls(code.co_filename, frame.f_lineno)

    @property
    def cell(self) -> str | None:
        """``cell In[3]`` when the location is in a cell executed by the IPython kernel Kale
        runs in (whose file name, a temporary path, means nothing to the user), else None."""
        return _cell_label(self.file)

    @property
    def display_file(self) -> str:
        return self.cell or display_path(self.file)

    @property
    def display_line(self) -> str:
        """The file and line as a person reads them: ``path:12``, or ``cell In[3], line 2``."""
        cell = self.cell
        return f"{cell}, line {self.line}" if cell else f"{display_path(self.file)}:{self.line}"

    @property
    def source_line(self) -> str | None:
        text = linecache.getline(self.file, self.line)
        return text.rstrip("\r\n") if text else None

    def __str__(self) -> str:
        cell = self.cell
        if cell:  # as IPython's tracebacks name cells; the caret of the excerpt has the column
            return f"{cell}, line {self.line}"
        text = self.source_line
        # ast counts columns in UTF-8 bytes; people count characters.
        column = len(text.encode()[: self.column].decode(errors="ignore")) if text else \
            self.column
        return f"{self.display_file}:{self.line}:{column + 1}"

    def excerpt(self) -> str:
        """The source line with a caret under the located span, or '' when the source is unknown."""
        text = self.source_line
        if text is None:
            return ""
        gutter = str(self.line)
        pad = " " * len(gutter)
        expanded = text.expandtabs(4)

        def screen_column(offset: int) -> int:
            # ast counts UTF-8 bytes; the screen counts characters, with tabs expanded.
            prefix = text.encode()[:offset].decode(errors="ignore")
            return len(prefix.expandtabs(4))

        start = min(screen_column(self.column), len(expanded))
        if self.end_line == self.line and self.end_column is not None:
            width = max(1, screen_column(self.end_column) - start)
        else:
            width = max(1, len(expanded.rstrip()) - start)
        return f"{pad} |\n{gutter} | {expanded}\n{pad} | {' ' * start}{'^' * width}"


class KaleError(Exception):
    """The base of every error Kale raises on purpose.

    ``message`` says what is wrong, ``location`` where, ``fix`` what to do about it.
    """

    exit_code = 1

    def __init__(
        self,
        message: str,
        *,
        location: SourceLocation | None = None,
        fix: str | None = None,
    ) -> None:
        self.message = message
        self.location = location
        self.fix = fix
        super().__init__(message)

    def render(self) -> str:
        lines = [f"error: {self.message}"]
        if self.location is not None:
            lines.append(f"  --> {self.location}")
            excerpt = self.location.excerpt()
            if excerpt:
                lines.append(excerpt)
        if self.fix:
            lines.append(f"  fix: {self.fix}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.render()

    def __reduce__(self) -> tuple[Any, ...]:
        return _rebuild, (type(self), dict(self.__dict__))


def _rebuild(cls: type[KaleError], state: dict[str, Any]) -> KaleError:
    error = cls.__new__(cls)
    Exception.__init__(error, state.get("message", ""))
    error.__dict__.update(state)
    return error


class LoggingError(KaleError, ValueError):
    """A step logged a metric or an artifact Kale cannot keep (``kale.sdk.logging``): a value
    that is not a finite number, a bad name, a call from outside the step."""


class DefinitionError(KaleError):
    """A mistake in how a pipeline, a step or an option is written; found before anything runs."""

    exit_code = 2


class PipelineDefinitionError(DefinitionError):
    """The ``@pipeline`` function breaks a rule of the pipeline language."""


class StepDefinitionError(DefinitionError):
    """A ``@step`` function could not run in isolation as it is written."""


class InvalidOptionError(DefinitionError):
    """A decorator option has a value Kale (or Kubeflow) cannot use."""

    def __init__(
        self,
        option: str,
        value: Any,
        allowed: str,
        *,
        location: SourceLocation | None = None,
        fix: str | None = None,
        owner: str | None = None,
    ) -> None:
        self.option = option
        self.value = value
        self.allowed = allowed
        where = f" in {owner}" if owner else ""
        super().__init__(
            f"{option}={value!r}{where} is not valid: {allowed}", location=location, fix=fix
        )


class PipelineArgumentError(DefinitionError):
    """A pipeline was called with arguments that do not match its parameters."""


class DefinitionErrorGroup(DefinitionError):
    """Several definition errors found together, reported at once so they can be fixed at once."""

    def __init__(self, summary: str, errors: Sequence[KaleError]) -> None:
        self.errors = tuple(errors)
        super().__init__(summary)

    def render(self) -> str:
        parts = [f"error: {self.message}"]
        parts.extend(error.render() for error in self.errors)
        return "\n\n".join(parts)


def raise_all(summary: str, errors: Iterable[KaleError]) -> None:
    """Raise nothing, the single error, or a group of them."""
    errors = list(errors)
    if len(errors) == 1:
        raise errors[0]
    if errors:
        raise DefinitionErrorGroup(summary.format(count=len(errors)), errors)


def painted(text: str) -> str:
    """A rendered error with ``error:`` in red and ``fix:`` in green (unless NO_COLOR is set)."""
    if os.environ.get("NO_COLOR"):
        return text
    return text.replace("error:", "\x1b[1;31merror:\x1b[0m").replace(
        "  fix:", "  \x1b[1;32mfix:\x1b[0m"
    )


def _paint(text: str, stream: Any) -> str:
    return painted(text) if getattr(stream, "isatty", lambda: False)() else text


def _kale_excepthook(
    kind: type[BaseException], error: BaseException, tb: TracebackType | None
) -> None:
    if not isinstance(error, KaleError):
        _previous_excepthook(kind, error, tb)
        return
    if os.environ.get("KALE_DEBUG"):
        traceback.print_exception(kind, error, tb)
    else:
        sys.stderr.write(_paint(error.render(), sys.stderr) + "\n")
        if isinstance(error, DefinitionError):
            sys.stderr.write("(set KALE_DEBUG=1 to see the Python traceback)\n")
    # Python would exit with status 1 after any uncaught exception; definition errors exit with 2
    # so scripts and CI can tell "your pipeline is written wrong" from "a step failed".
    import atexit

    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):  # a closed pipe must not add a second traceback
            stream.flush()
    os._exit(error.exit_code)


_previous_excepthook = sys.excepthook


class KaleWarning(UserWarning):
    """Something Kale accepts but that does not do what the user may think."""


class CompileWarning(KaleWarning):
    """Something in the pipeline that Kubeflow cannot apply as written."""


_previous_showwarning = warnings.showwarning


def _show_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                  file: Any = None, line: str | None = None) -> None:
    if not issubclass(category, KaleWarning):
        _previous_showwarning(message, category, filename, lineno, file, line)
        return
    stream = file or sys.stderr
    text = f"warning: {message}"
    # Warnings raised from inside Kale are about the pipeline as a whole: no Kale file:line.
    if not os.path.abspath(filename).startswith(os.path.dirname(os.path.abspath(__file__))):
        text += f"\n  --> {SourceLocation(filename, lineno).display_line}"
    with contextlib.suppress(Exception):
        stream.write(text + "\n")


def install_excepthook() -> None:
    """Show uncaught Kale errors compactly, and Kale's warnings as ``warning: ...``; leave every
    other exception and warning to the previous hooks. In IPython the errors are shown by the
    shell (``kale.notebook.kernel.install_error_display``) instead of ``sys.excepthook``."""
    global _previous_excepthook, _previous_showwarning
    # In IPython (a notebook's kernel) errors of a cell never reach sys.excepthook, which
    # would end the process: the shell shows them, through a handler Kale registers with it.
    in_ipython = False
    if "IPython" in sys.modules:
        from kale.notebook.kernel import install_error_display

        in_ipython = install_error_display()
    if not in_ipython and sys.excepthook is not _kale_excepthook:
        _previous_excepthook = sys.excepthook
        sys.excepthook = _kale_excepthook
    if warnings.showwarning is not _show_warning:
        _previous_showwarning = warnings.showwarning
        warnings.showwarning = _show_warning
