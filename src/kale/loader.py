"""Loading a user's pipeline script as a module, without running its ``__main__`` block.

``kale graph script.py`` (and later ``kale compile``) needs the script's ``@pipeline`` functions
but must not start the run the script's main block would start.
"""

from __future__ import annotations

import os
import sys
import traceback
import types

from kale.errors import KaleError, SourceLocation, display_path

SCRIPT_MODULE = "__kale_script__"


class ScriptError(KaleError):
    """The user's script could not be loaded (missing file, or it raised while importing)."""


def load_script(path: str) -> types.ModuleType:
    """Execute ``path`` as module ``__kale_script__`` with its folder importable, as
    ``python path`` would (but with ``__name__`` not ``"__main__"``)."""
    if not os.path.isfile(path):
        raise ScriptError(f"no such file: {path}", fix="give the path of a Python script that "
                          "defines a @pipeline function")
    path = os.path.abspath(path)
    with open(path, "rb") as handle:
        source = handle.read()
    try:
        code = compile(source, path, "exec")
    except SyntaxError as error:
        raise ScriptError(
            f"{path} is not valid Python: {error.msg}",
            location=SourceLocation(path, error.lineno or 1, max((error.offset or 1) - 1, 0)),
            fix="correct the syntax error",
        ) from None
    except (RecursionError, MemoryError, ValueError, OverflowError) as error:
        raise ScriptError(
            # No location: compile() names no line for these, and line 1 would be a guess.
            f"Python cannot compile {display_path(path)}: {_compile_failure(error)}",
            fix="split the deeply nested or very long expression into smaller statements"
            if isinstance(error, (RecursionError, MemoryError)) else
            "save the file as plain UTF-8 text (without null bytes)",
        ) from None
    module = types.ModuleType(SCRIPT_MODULE)
    module.__file__ = path
    root = os.path.dirname(path)
    if root not in sys.path:
        sys.path.insert(0, root)
    sys.modules[SCRIPT_MODULE] = module
    saved_argv = sys.argv
    sys.argv = [path]  # as `python script.py` with no arguments would see it
    try:
        exec(code, module.__dict__)
    except KaleError as error:
        if isinstance(error, ImportError):  # an API of another Kale (kale.not_provided)
            _name_the_scripts_line(error, path)
        raise
    except SystemExit as exit_:
        raise ScriptError(
            f"{display_path(path)} exited (status {exit_.code}) while Kale imported it",
            fix="keep argument parsing and other work under `if __name__ == \"__main__\":`",
        ) from None
    except Exception as error:
        raise ScriptError(
            f"{display_path(path)} raised {type(error).__name__} while Kale imported it:\n"
            + _user_traceback(error),
            fix="fix the error above; Kale runs the script's top level (not its "
            "`if __name__ == \"__main__\":` block) to find its pipelines",
        ) from error
    finally:
        sys.argv = saved_argv
    return module


def _compile_failure(error: BaseException) -> str:
    """Why ``compile()`` gave up on a file, in words (it names no line for these)."""
    if isinstance(error, RecursionError):
        return ("an expression or statement is nested too deeply for its compiler (maximum "
                "recursion depth exceeded)")
    if isinstance(error, MemoryError):
        return "it ran out of memory (an expression is too large or too deeply nested)"
    return str(error) or type(error).__name__


def _name_the_scripts_line(error: KaleError, path: str) -> None:
    """Make ``error`` name the script's line that led to it: as its location when it has none,
    else (when it is in a module the script imports) in its message."""
    lines = [frame.lineno for frame in traceback.extract_tb(error.__traceback__)
             if frame.filename == path and frame.lineno]
    if not lines:
        return
    if error.location is None:
        error.location = SourceLocation(path, lines[-1])
    elif os.path.abspath(error.location.file) != path:
        error.message += f" (imported by way of {display_path(path)}:{lines[-1]})"


def _user_traceback(error: BaseException) -> str:
    """The traceback without Kale's own frames: the user's code is what they need to see."""
    package = os.path.dirname(os.path.abspath(__file__))
    summary = traceback.TracebackException.from_exception(error)
    summary.stack = traceback.StackSummary.from_list(
        [frame for frame in summary.stack if not os.path.abspath(frame.filename).startswith(
            package + os.sep)]
    )
    return "".join(summary.format()).rstrip()
