"""Cache keys: a hash of everything that can change a task's result.

A key has two parts. The *step's* part is the same for every task of a step (every iteration
of a loop) and is computed once per run: the step's code and module context, the project
modules it imports, the options that change how it runs, the versions of the packages it
imports, Python's and Kale's versions and the cache's format. The *task's* part is its inputs,
by content: the hash of each stored value it reads, parameters after macro expansion,
constants, loop item tokens, the hashes of collected values in item order.

Code is keyed by its syntax tree (every node and field, as ``ast.dump`` would show them, without
line numbers), so comments, blank lines and formatting are not part of a key, while every
name, literal and docstring is. Walking a tree costs about 0.2 ms per function, so the
normalized hash of each text is kept by the hash of the text itself, in memory and in
``<cache>/code-<python>.json``; a step's ``def`` is parsed once for the graph's checks and
that tree is reused here.
"""

from __future__ import annotations

import ast
import json
import os
import sys
from typing import Any

from kale.graph.model import Graph, Step, may_be_cell
from kale.marshal.codec import encode

#: Kale's cache format: a change of what a key holds or of how entries are stored bumps it,
#: so that no entry of another format is ever taken for a hit.
FORMAT = 1

#: What a stored value's metadata holds that says nothing of the value itself: where it is,
#: its size (the hash covers it), where a Path came from, the library's version (keyed by the
#: packages) and why a backend was not taken.
_NOT_CONTENT = frozenset({"path", "size", "original", "library_version", "fallback"})
#: Top-level modules that come with Kale (its version is part of every key) or with Python.
_NOT_PACKAGES = frozenset({"kale", "rok_common", *sys.stdlib_module_names})


def new_digest() -> Any:
    """A 128-bit hash: xxh3 where xxhash is installed (it is a dependency of Kale), else
    blake2b of the standard library."""
    try:
        import xxhash
    except ImportError:  # pragma: no cover - xxhash is a dependency
        import hashlib

        return hashlib.blake2b(digest_size=16)
    return xxhash.xxh3_128()


def hash_bytes(data: bytes) -> str:
    digest = new_digest()
    digest.update(data)
    return digest.hexdigest()


def tree_text(tree: ast.AST) -> str:
    """Every node of ``tree`` with its fields, in order, without positions: what ``ast.dump``
    shows, written without recursion and faster. Unambiguous: a node's fields are fixed by its
    class, lists carry their length, values their type."""
    out: list[str] = []
    append = out.append
    stack: list[Any] = [tree]
    pop, extend = stack.pop, stack.extend
    node_type = ast.AST
    while stack:
        item = pop()
        if isinstance(item, node_type):
            kind = item.__class__
            append(kind.__name__)
            extend([getattr(item, name, None) for name in reversed(kind._fields)])
        elif isinstance(item, list):
            append(f"[{len(item)}")
            extend(reversed(item))
        else:
            append(f"{type(item).__name__}:{item!r}")
    return "\x00".join(out)


_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, default=str)


def _canonical(value: Any) -> str:
    return _ENCODER.encode(value)


class CodeHashes:
    """The normalized hash of Python source texts, kept by the hash of each text."""

    def __init__(self, folder: str | os.PathLike[str] | None = None) -> None:
        self.path = None if folder is None else os.path.join(
            os.fspath(folder), f"code-{sys.implementation.cache_tag}.json")
        self.known: dict[str, str] = {}
        self.added = False
        self.loaded = False

    def _load(self) -> None:
        self.loaded = True
        if self.path is None:
            return
        try:
            with open(self.path) as handle:
                data = json.load(handle)
        except (OSError, ValueError):
            return
        if isinstance(data, dict) and data.get("format") == FORMAT and \
                isinstance(data.get("hashes"), dict):
            self.known.update(data["hashes"])

    def of(self, text: str, *, dedent: bool = False) -> str:
        """The hash of ``text``'s syntax tree (of the text itself when it does not parse)."""
        if not self.loaded:
            self._load()
        raw = hash_bytes(text.encode("utf-8", "surrogatepass"))
        found = self.known.get(raw)
        if found is None:
            try:
                if dedent:  # a step's def: parsed already for the graph's checks
                    from kale.source import parse_step_text

                    tree = parse_step_text(text)
                    if not tree.body and text.strip():
                        raise SyntaxError("does not parse")
                else:
                    tree = ast.parse(text)
                found = "ast:" + hash_bytes(
                    tree_text(tree).encode("utf-8", "surrogatepass"))
            except (SyntaxError, ValueError, RecursionError, MemoryError):
                found = "text:" + raw
            self.known[raw] = found
            self.added = True
        return found

    def save(self) -> None:
        """Keep what was learnt for the next run (a memo: losing it to a concurrent writer
        costs time only)."""
        if self.path is None or not self.added:
            return
        from kale.marshal import atomic_write

        hashes = self.known if len(self.known) < 50_000 else {}  # bounded: start over
        text = _canonical({"format": FORMAT, "hashes": hashes})
        try:
            atomic_write(self.path, lambda handle: handle.write(text), mode="w")
        except OSError:
            return
        self.added = False


class Packages:
    """What identifies the installed code of a top-level module: its distribution and version
    (``numpy==2.1.3``) when a distribution named like it or listing it in ``top_level.txt``
    sits beside it, else the size and modification time of the module's file (a reinstall or
    an upgrade rewrites it). Looked up per module, never for every installed distribution
    (``importlib.metadata.packages_distributions()`` takes a quarter of a second)."""

    def __init__(self) -> None:
        self.found: dict[str, str] = {}
        self._folders: dict[str, dict[str, str]] = {}

    def of(self, top: str) -> str:
        if top not in self.found:
            try:
                self.found[top] = self._identify(top)
            except Exception as error:  # a broken installation: keyed as such
                self.found[top] = f"unknown:{type(error).__name__}"
        return self.found[top]

    def _identify(self, top: str) -> str:
        import importlib.util

        module = sys.modules.get(top)
        origin = getattr(module, "__file__", None) if module is not None else None
        if origin is None:
            spec = importlib.util.find_spec(top)
            if spec is None:
                return "missing"
            origin = spec.origin if spec.origin not in (None, "built-in", "frozen") else None
            if origin is None and spec.submodule_search_locations:
                origin = next(iter(spec.submodule_search_locations))
        if origin is None:
            return "built-in"
        place = os.path.dirname(origin)
        if os.path.basename(origin).startswith("__init__.") or os.path.isdir(origin):
            place = os.path.dirname(place if not os.path.isdir(origin) else origin)
        version = self._distributions(place).get(_normal(top))
        if version is not None:
            return version
        stat = os.stat(origin)
        return f"file:{stat.st_size}:{stat.st_mtime_ns}"

    def _distributions(self, folder: str) -> dict[str, str]:
        """``name==version`` of the distributions installed in ``folder``, by the normalized
        names of the modules they provide (their own name, and ``top_level.txt``)."""
        if folder not in self._folders:
            found: dict[str, str] = {}
            try:
                entries = [entry for entry in os.scandir(folder)
                           if entry.name.endswith((".dist-info", ".egg-info"))]
            except OSError:
                entries = []
            for entry in entries:
                stem = entry.name.rsplit(".", 1)[0]
                name, _, version = stem.partition("-")
                pin = f"{name}=={version.split('-')[0]}"
                found.setdefault(_normal(name), pin)
                try:
                    with open(os.path.join(entry.path, "top_level.txt")) as handle:
                        tops = handle.read().split()
                except OSError:
                    continue
                for provided in tops:
                    found.setdefault(_normal(provided), pin)
            self._folders[folder] = found
        return self._folders[folder]


def _normal(name: str) -> str:
    return name.lower().replace("-", "_").replace(".", "_")


class KeyBuilder:
    """The cache keys of one run's tasks. ``step_part`` once per step, ``key`` per task."""

    def __init__(self, graph: Graph, code: CodeHashes | None = None,
                 packages: Packages | None = None) -> None:
        self.graph = graph
        self.root = os.path.realpath(graph.project_root)
        self.code = code or CodeHashes()
        self.packages = packages or Packages()
        self._steps: dict[str, str] = {}
        self._shared: dict[tuple[Any, ...], str] = {}
        self._files: dict[str, str] = {}
        self._names: dict[str, str] = {}

    def _file_name(self, filename: str) -> str:
        """A step's file as its key holds it: relative to the project (a project that moves
        keeps its keys), ``<cell>`` for a notebook cell (their names change with the kernel)."""
        if filename not in self._names:
            if may_be_cell(filename):
                self._names[filename] = "<cell>"
            else:
                path = os.path.realpath(filename)
                self._names[filename] = os.path.relpath(path, self.root) \
                    if path.startswith(self.root + os.sep) else path
        return self._names[filename]

    def _project_file(self, path: str) -> str:
        if path not in self._files:
            try:
                with open(path, "rb") as handle:
                    data = handle.read()
                try:
                    self._files[path] = self.code.of(data.decode("utf-8"))
                except UnicodeDecodeError:
                    self._files[path] = "bytes:" + hash_bytes(data)
            except OSError:
                self._files[path] = "unreadable"
        return self._files[path]

    def describe_step(self, step: Step) -> dict[str, Any]:
        """Everything of ``step`` its key holds, but the inputs (for tests and explanations)."""
        return {**self._describe_function(step), **self._describe_call(step)}

    def _describe_function(self, step: Step) -> dict[str, Any]:
        """What every call of the step's function shares: code, context, modules, packages."""
        function = step.function
        modules = self.graph.step_modules.get(step.name, ())
        tops = sorted({module.split(".")[0] for module in modules} - _NOT_PACKAGES)
        files = self.graph.step_project_files.get(step.name, ())
        from kale import __version__

        return {
            "format": FORMAT,
            "kale": __version__,
            "python": [sys.implementation.cache_tag, sys.version.split()[0]],
            "function": function.function_name,
            "module": function.module,
            "file": self._file_name(function.filename),
            "futures": list(function.futures),
            "code": self.code.of(function.text, dedent=True),
            "context": [[self._file_name(segment.filename), self.code.of(segment.text)]
                        for segment in function.context],
            "project": [[os.path.relpath(path, self.root), self._project_file(path)]
                        for path in files],
            "packages": [[top, self.packages.of(top)] for top in tops],
        }

    @staticmethod
    def _describe_call(step: Step) -> dict[str, Any]:
        """What is the call's own: the outputs it binds, what it reports, its options."""
        return {
            "outputs": list(step.outputs),
            "unpacks": step.unpacks,
            "item_outputs": list(step.item_outputs),
            "condition": None if step.condition is None else
            [list(step.condition.tests), step.condition.has_else],
            # What changes how it runs on Kubeflow (a GPU asked for); timeouts, retries,
            # labels, annotations and the cache option itself change no result.
            "options": {"limits": sorted(step.options.limits.items())},
        }

    def step_part(self, step: Step) -> str:
        found = self._steps.get(step.name)
        if found is None:
            # Calls of one function share its part: a pipeline of 500 calls of 10 functions
            # reads and hashes 10 functions. Within one graph a function is its place.
            function = step.function
            same = (function.filename, function.line, function.qualname,
                    self.graph.step_modules.get(step.name, ()),
                    self.graph.step_project_files.get(step.name, ()))
            shared = self._shared.get(same)
            if shared is None:
                shared = self._shared[same] = hash_bytes(
                    _canonical(self._describe_function(step)).encode())
            found = self._steps[step.name] = hash_bytes(
                _canonical([shared, self._describe_call(step)]).encode())
        return found

    def key(self, step: Step, inputs: dict[str, tuple[str, Any]]) -> str | None:
        """The key of a task of ``step`` with these inputs (``kale.runtime`` input kinds, with
        parameters already expanded), or None when an input has no content hash."""
        try:
            described = {name: _input(kind, payload) for name, (kind, payload) in
                         inputs.items()}
        except _NoHash:
            return None
        text = _canonical([self.step_part(step), described])
        return hash_bytes(text.encode("utf-8", "surrogatepass"))


class _NoHash(Exception):
    """An input whose content cannot be named by a hash."""


def stored_identity(meta: Any) -> dict[str, Any]:
    """What names a stored value's content: its backend, type, content hash and the rest of
    its metadata that changes how it reads back."""
    if not isinstance(meta, dict) or not isinstance(meta.get("hash"), str):
        raise _NoHash()
    return {key: meta[key] for key in sorted(meta) if key not in _NOT_CONTENT}


def _input(kind: str, payload: Any) -> Any:
    if kind == "stored":
        return ["stored", stored_identity(payload)]
    if kind == "collected":
        return ["collected", [_input(part_kind, part) for part_kind, part in payload]]
    if kind == "item":
        # An item carried by value is the whole input; one carried by position is read from
        # the whole list, which is then part of it (kale.items).
        token, whole = payload
        by_value = isinstance(token, str) and token.startswith('{"value"')
        return ["item", token, None if whole is None or by_value else _input(*whole)]
    try:
        return [kind, encode(payload)]
    except ValueError:  # not a plain value: its repr is the best there is
        return [kind, "repr", repr(payload)]

