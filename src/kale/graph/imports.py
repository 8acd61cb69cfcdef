"""Which modules a step needs: those its own source imports, followed through the project's modules.

A step runs from its own source, so only the imports written in it count, plus whatever the
project's own modules that it imports import in turn (``import helpers`` where ``helpers.py``
imports pandas needs pandas). Project modules are read from their files, never imported, and
each file is read once however many steps reach it.

Every import is kept by its full dotted name (``google.cloud.storage``, not ``google``): several
installed distributions can share a top-level name, and only the full name tells which one a
step uses. An import that is neither in the project nor installed here is reported as missing,
unless it is guarded (inside ``try`` with an ``except ImportError``), which is how code says a
library is optional. Imports under ``if TYPE_CHECKING:`` are never needed at run time.
"""

from __future__ import annotations

import ast
import importlib.util
import os
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from kale.source import parse_step_text

# `except` clauses that make the imports of their `try` optional.
_IMPORT_ERRORS = {"ImportError", "ModuleNotFoundError", "Exception", "BaseException"}


@dataclass(frozen=True)
class Imported:
    """One imported module, by absolute dotted name, where a file or a step imports it."""

    name: str
    optional: bool  # guarded by an `except ImportError`: missing is fine
    line: int


@dataclass(frozen=True)
class Missing:
    """An import that nothing here provides: the module, and the project file that imports it
    (``None``: the step's own source)."""

    module: str
    via: str | None = None


@dataclass(frozen=True)
class StepModules:
    """What one step's code needs to import, besides the project itself."""

    external: tuple[str, ...]  # installed modules (standard library included), dotted names
    missing: tuple[Missing, ...]
    #: the project's files the step imports, directly or through each other (absolute paths,
    #: sorted): what ``kale.cache`` keys a step by, besides its own code
    project: tuple[str, ...] = ()


def _catches_import_errors(handler: ast.ExceptHandler) -> bool:
    if handler.type is None:
        return True
    kinds = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
    return any((kind.id if isinstance(kind, ast.Name) else
                kind.attr if isinstance(kind, ast.Attribute) else None) in _IMPORT_ERRORS
               for kind in kinds)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


_STATEMENT_FIELDS = ("body", "orelse", "finalbody", "handlers", "cases")


def imports_in(tree: ast.AST, package: str | None) -> list[Imported]:
    """The imports anywhere in ``tree`` (functions included), by absolute dotted name.

    ``package`` is the package relative imports start from (``None``: they are skipped). For
    ``from a.b import c`` the name is ``a.b.c``: ``c`` may be a module, and when it is only an
    attribute the longer name still starts with the module's.
    """
    found: list[Imported] = []

    def absolute(module: str | None, level: int) -> str | None:
        if level == 0:
            return module
        if package is None:
            return None
        parts = package.split(".") if package else []
        if level - 1 > len(parts) or (level - 1 == len(parts) and not module):
            return None  # above the top-level package: Python refuses it too
        base = parts[: len(parts) - (level - 1)]
        return ".".join(base + ([module] if module else [])) or None

    def visit(node: ast.AST, optional: bool) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                visit(child, optional)
            return
        if isinstance(node, ast.Try) or type(node).__name__ == "TryStar":
            guarded = optional or any(_catches_import_errors(h) for h in node.handlers)
            for child in node.body:
                visit(child, guarded)
            for child in (*node.handlers, *node.orelse, *node.finalbody):
                visit(child, optional)
            return
        if isinstance(node, ast.Import):
            found.extend(Imported(alias.name, optional, node.lineno) for alias in node.names)
            return
        if isinstance(node, ast.ImportFrom):
            module = absolute(node.module, node.level)
            if module is None:
                return
            for alias in node.names:
                name = module if alias.name == "*" else f"{module}.{alias.name}"
                found.append(Imported(name, optional, node.lineno))
            return
        # Imports are statements: only the statement lists of a node can hold them.
        for field in _STATEMENT_FIELDS:
            for child in getattr(node, field, ()):
                visit(child, optional)

    visit(tree, False)
    return found


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


class ImportReader:
    """Reads the imports of steps, following the project's own modules from file to file."""

    def __init__(self, project_root: str, step_files: Iterable[str] = ()) -> None:
        self.root = os.path.realpath(project_root)
        # Installed code may live inside the project (a .venv in its folder): never the project.
        self.installed = {os.path.realpath(p) for p in (sys.prefix, sys.base_prefix,
                                                         sys.exec_prefix)} - {self.root}
        # Where the project's top-level modules are: its folders on sys.path (a src/ layout),
        # its root, and the folders of the files that define steps.
        bases = [os.path.realpath(p or os.getcwd()) for p in sys.path]
        bases = [p for p in bases if _inside(p, self.root)]
        bases += [self.root] + [os.path.dirname(os.path.realpath(f)) for f in step_files]
        self.bases = list(dict.fromkeys(bases))
        self._kinds: dict[str, tuple[str, str | None]] = {}
        self._files: dict[str, list[Imported]] = {}

    # -- where a module comes from -------------------------------------------------------------

    def _is_project_path(self, path: str) -> bool:
        path = os.path.realpath(path)
        if not _inside(path, self.root) or any(_inside(path, p) for p in self.installed):
            return False
        parts = path.split(os.sep)
        return "site-packages" not in parts and "dist-packages" not in parts

    def _kind(self, top: str) -> tuple[str, str | None]:
        """("stdlib" | "external" | "project" | "missing", the folder the project module is in)."""
        if top not in self._kinds:
            self._kinds[top] = self._find(top)
        return self._kinds[top]

    def _find(self, top: str) -> tuple[str, str | None]:
        if top in sys.builtin_module_names or top == "__main__":
            return "stdlib", None
        for base in self.bases:  # the project's own files come first on the step's sys.path
            if os.path.isfile(os.path.join(base, f"{top}.py")) or os.path.isfile(
                    os.path.join(base, top, "__init__.py")):
                return "project", base
        if top in sys.stdlib_module_names:
            return "stdlib", None
        try:
            spec = importlib.util.find_spec(top)
        except (ImportError, ValueError):
            spec = None
        if spec is None:
            for base in self.bases:  # a folder of modules without __init__.py
                if os.path.isdir(os.path.join(base, top)) and top.isidentifier():
                    return "project", base
            return "missing", None
        locations = list(spec.submodule_search_locations or [])
        origin = spec.origin if spec.origin not in (None, "built-in", "frozen") else None
        place = origin or next(iter(locations), None)
        if place and self._is_project_path(place):
            folder = os.path.dirname(place)
            if origin and os.path.basename(origin).startswith("__init__."):
                folder = os.path.dirname(folder)
            return "project", folder
        return "external", None

    def _project_files(self, name: str, base: str) -> Iterator[tuple[str, str, bool]]:
        """The files Python runs to import project module ``name`` from ``base``: each package's
        ``__init__.py`` on the way, then the module's own file (dotted name, path, package?)."""
        parts = name.split(".")
        folder = base
        for index, part in enumerate(parts):
            dotted = ".".join(parts[: index + 1])
            package = os.path.join(folder, part)
            if os.path.isfile(os.path.join(package, "__init__.py")):
                yield dotted, os.path.join(package, "__init__.py"), True
            elif os.path.isfile(f"{package}.py"):
                yield dotted, f"{package}.py", False
                return
            elif not os.path.isdir(package):
                return  # the rest of the name is an attribute, not a module
            folder = package

    def _read(self, path: str, module: str, is_package: bool) -> list[Imported]:
        if path not in self._files:
            try:
                with open(path, "rb") as handle:
                    tree = ast.parse(handle.read(), filename=path)
            except (OSError, SyntaxError, ValueError):
                tree = ast.Module(body=[], type_ignores=[])  # the step will say what is wrong
            package = module if is_package else module.rpartition(".")[0]
            self._files[path] = imports_in(tree, package)
        return self._files[path]

    # -- a step --------------------------------------------------------------------------------

    def step(self, source: str, module: str | None, context: Iterable[str] = ()) -> StepModules:
        """The modules the step with this source (its ``def``) needs, with the module-level
        code it runs first (``context``: its imports count as the step's own); ``module`` is the
        dotted name of the module that defines it, for its relative imports (``None``:
        unknown)."""
        package = module.rpartition(".")[0] if module and module != "__main__" else None
        own = [found for text in (source, *context)
               for found in imports_in(parse_step_text(text), package)]
        external: set[str] = set()
        missing: dict[str, Missing] = {}
        visited: set[str] = set()
        # Each project file read, with its path for messages (None: the step's own source).
        pending: list[tuple[list[Imported], str | None]] = [(own, None)]
        while pending:
            imports, where = pending.pop()
            for imported in imports:
                top = imported.name.split(".")[0]
                kind, base = self._kind(top)
                if kind in ("stdlib", "external"):
                    external.add(imported.name)
                elif kind == "missing":
                    if not imported.optional and top not in missing:
                        via = f"{where}:{imported.line}" if where else None
                        missing[top] = Missing(top, via)
                elif base is not None:
                    for dotted, path, is_package in self._project_files(imported.name, base):
                        if path not in visited:
                            visited.add(path)
                            relative = os.path.relpath(path, self.root).replace(os.sep, "/")
                            pending.append((self._read(path, dotted, is_package), relative))
        return StepModules(tuple(sorted(external)), tuple(missing.values()),
                           tuple(sorted(visited)))
