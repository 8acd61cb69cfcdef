"""Kale's runtime as it travels in a project bundle: its source without comments and docstrings.

Every bundle carries the modules of Kale (and cloudpickle) that run inside a step, and an inline
bundle must stay under ``kale.kfp.store.INLINE_LIMIT``: the runtime's comments and docstrings,
which are most of its text, would take most of that room. They are taken out as ``python -OO``
drops docstrings, and more: a comment goes, a module's docstring goes, and a function's or
class's becomes ``...`` (a statement that does nothing, so a body that was only a docstring
stays a body). Nothing else changes: every line keeps its number and every statement its
columns, so a traceback from a step on Kubeflow points at the same lines as Kale's own source,
and shows them.

A third-party module keeps its module docstring, where its license notice is.

Slimming reads each module twice (its tokens, its syntax tree): a few hundred milliseconds for
the whole runtime, which every compile would pay. The result, a function of the module's bytes
alone, is kept in the user's cache folder (``$XDG_CACHE_HOME/kale/slim``, else
``~/.cache/kale/slim``) under a hash of those bytes, so it is computed once per Kale version;
where that folder cannot be written, it is computed in each process.
"""

from __future__ import annotations

import ast
import contextlib
import functools
import hashlib
import io
import os
import re
import tokenize

#: A comment that Python itself reads, in the first two lines: kept.
_CODING = re.compile(r"^[ \t\f]*#.*?coding[:=]")

_WITH_DOCSTRINGS = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)


def _docstrings(tree: ast.Module, keep_module_docstring: bool) -> list[tuple[ast.expr, str]]:
    """The docstrings to take out, each with what replaces it."""
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, _WITH_DOCSTRINGS) or not node.body:
            continue
        if isinstance(node, ast.Module) and keep_module_docstring:
            continue
        first = node.body[0]
        if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and \
                isinstance(first.value.value, str):
            # A module's goes whole: `from __future__` imports must stay first.
            found.append((first.value, "" if isinstance(node, ast.Module) else "..."))
    return found


def slim_source(text: str, *, keep_module_docstring: bool = False) -> str:
    """``text`` (a module's source) without its comments and docstrings, each line at its
    number and each statement at its columns."""
    # (not str.splitlines: it would also break lines at form feeds, which Python does not)
    lines = io.StringIO(text, newline="").readlines()
    for token in tokenize.generate_tokens(io.StringIO(text).readline):
        if token.type != tokenize.COMMENT:
            continue
        row, column = token.start
        if row <= 2 and _CODING.match(lines[row - 1]):
            continue
        line = lines[row - 1]
        ending = line[len(line.rstrip("\r\n")):]
        lines[row - 1] = line[:column].rstrip() + ending
    # Later docstrings first, so that the rows of earlier ones stay where the tree says.
    for node, stand_in in sorted(_docstrings(ast.parse(text), keep_module_docstring),
                                 key=lambda found: found[0].lineno, reverse=True):
        first, last = node.lineno - 1, (node.end_lineno or node.lineno) - 1
        # The tree counts columns in UTF-8 bytes.
        head = lines[first].encode()[:node.col_offset].decode()
        tail = lines[last].encode()[node.end_col_offset or 0:].decode()
        if tail.strip() and first != last:
            continue  # code after a docstring on its last line (never seen): left as it is
        if first == last:
            lines[first] = head + stand_in + tail
        else:
            lines[first] = head + stand_in + "\n"
            lines[first + 1 : last + 1] = ["\n"] * (last - first)
    return "".join(lines)


#: Part of every cached file's name: changed whenever ``slim_source`` writes something else.
_FORMAT = "1"


def cache_folder() -> str:
    """Where slimmed modules are kept between processes."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "kale", "slim")


def _slim_bytes(data: bytes, keep_module_docstring: bool) -> bytes:
    encoding, _ = tokenize.detect_encoding(io.BytesIO(data).readline)
    text = data.decode(encoding)
    return slim_source(text, keep_module_docstring=keep_module_docstring).encode(encoding)


@functools.lru_cache(maxsize=256)
def _slimmed(path: str, _stamp: tuple[int, int], keep_module_docstring: bool) -> bytes:
    with open(path, "rb") as handle:
        data = handle.read()
    key = hashlib.sha256(data)
    key.update(f"\0{_FORMAT} {int(keep_module_docstring)}".encode())
    cached = os.path.join(cache_folder(), f"{key.hexdigest()[:40]}.py")
    try:
        with open(cached, "rb") as handle:
            return handle.read()
    except OSError:
        pass
    slim = _slim_bytes(data, keep_module_docstring)
    # Written whole or not at all (a rename): a compile running alongside reads either none or
    # all of it.
    temporary = f"{cached}.{os.getpid()}.{os.urandom(4).hex()}.tmp"
    try:
        os.makedirs(os.path.dirname(cached), exist_ok=True)
        with open(temporary, "wb") as handle:
            handle.write(slim)
        os.replace(temporary, cached)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
    return slim


def slim_file(path: str | os.PathLike[str], *, keep_module_docstring: bool = False) -> bytes:
    """The slimmed bytes of the module at ``path``, in its own encoding; computed once per
    version of the file in a process (every compile bundles the same runtime)."""
    status = os.stat(path)
    return _slimmed(os.fspath(path), (status.st_mtime_ns, status.st_size),
                    keep_module_docstring)
