"""A step's module context: the module-level statements a step needs, read from its module.

A step runs in a process of its own: a Kubeflow container that imported nothing of the user's
script, or locally a process forked from a server that never imported it either. Kale gives the
step what a fresh import of its module would give it, limited to what the step uses: the imports,
functions, classes, constants and other module-level statements it reaches, followed
transitively (a helper that calls a helper that uses ``np`` brings ``import numpy as np``).

Why a slice of the module rather than importing it: a script's top level often does what must not
happen in a step: it runs the pipeline (a call without the ``if __name__ == "__main__":`` guard),
parses the command line, or loads data the step never uses. The slice is computed once, when the
pipeline is defined, and the same statements run locally and on Kubeflow, so side effects do not
differ between the two. What a slice holds, in module order:

- every module-level statement that binds a name the step needs (``import``, ``def``, ``class``,
  assignments; ``if``/``try``/``with``/``for`` blocks whole), and every one that changes such a
  name in place (``CONFIG["k"] = v``, ``REGISTRY.append(f)``);
- "setup" statements, a known list of calls and assignments that configure the process
  (``sys.path.insert(...)``, ``np.random.seed(0)``, ``warnings.filterwarnings(...)``,
  ``os.environ["X"] = "1"``, ``load_dotenv()``: ``_SETUP_CALLS``), in every step, since they may
  change what the step's libraries do without the step naming them. Other top-level calls on
  imports are work, not configuration (``subprocess.run``, ``run_graph``), and never travel:
  a benchmark script whose top level ran a pipeline once started it again in every step;
- never the ``if __name__ == "__main__":`` block, a statement that runs a pipeline (directly or
  through a function that does), or IPython magics.

A name a step needs that the slice cannot provide is a definition error, found before anything
runs: one that exists only under the ``__main__`` guard, one created at run time (the result of
running the pipeline, a ``global`` assignment made by a function, a magic), one defined nowhere.
"""

from __future__ import annotations

import ast
import builtins
import difflib
import importlib
import os
import symtable
import sys
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from kale.errors import KaleError, SourceLocation, StepDefinitionError
from kale.graph.model import RUNTIME_NAMES, CodeSegment, may_be_cell
from kale.source import SourceFile, read_source

_COMPREHENSIONS = (ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)
# Statements whose bindings happen for sure: the binding replaces every earlier one.
_CERTAIN = (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef,
            ast.Assign, ast.AnnAssign)


@dataclass
class _Statement:
    """One top-level statement of a module, with the names it binds, reads and changes."""

    node: ast.stmt
    source: SourceFile
    first: int
    last: int
    kind: str  # "code", "setup", "main" (the __main__ block), "pipeline", "ipython", "future"
    binds: frozenset[str] = frozenset()
    certain: bool = False
    uses: frozenset[str] = frozenset()
    mutates: frozenset[str] = frozenset()
    star: str | None = None  # the module of `from M import *`
    #: where each used name first appears, for error locations
    where: dict[str, ast.AST] = field(default_factory=dict)
    #: names the statement may bind by calling a module function that assigns them with
    #: `global` (`load()`): never a certain binding
    maybe: frozenset[str] = frozenset()

    @property
    def location(self) -> SourceLocation:
        return SourceLocation.of_node(self.node, self.source.filename)


def _is_main_guard(node: ast.stmt) -> bool:
    if not isinstance(node, ast.If) or not isinstance(node.test, ast.Compare):
        return False
    test = node.test
    if len(test.ops) != 1 or not isinstance(test.ops[0], ast.Eq):
        return False
    sides = [test.left, test.comparators[0]]
    return any(isinstance(s, ast.Name) and s.id == "__name__" for s in sides) and any(
        isinstance(s, ast.Constant) and s.value == "__main__" for s in sides)


def _root_name(node: ast.AST) -> str | None:
    """``a`` of ``a.b[c].d``; None when the chain starts with something else (a call...)."""
    while isinstance(node, (ast.Attribute, ast.Subscript)):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


class _Reader:
    """Names a top-level statement binds and reads at module level, with symtable's help for
    the scopes inside it (function bodies read globals when called, not when defined)."""

    def __init__(self, source: SourceFile, future_annotations: bool) -> None:
        self.source = source
        self.future_annotations = future_annotations
        table = symtable.symtable(source.text, source.filename, "exec")
        self.children = table.get_children()

    def scope_globals(self, first: int, last: int) -> set[str]:
        names: set[str] = set()
        stack = [t for t in self.children if first <= t.get_lineno() <= last]
        while stack:
            table = stack.pop()
            for symbol in table.get_symbols():
                if symbol.is_global() or symbol.is_declared_global():
                    names.add(symbol.get_name())
            stack.extend(table.get_children())
        return names

    def scope_global_writes(self, first: int, last: int) -> set[str]:
        """Names the scopes within these lines assign with ``global``."""
        names: set[str] = set()
        stack = [t for t in self.children if first <= t.get_lineno() <= last]
        while stack:
            table = stack.pop()
            names.update(s.get_name() for s in table.get_symbols()
                         if s.is_declared_global() and s.is_assigned())
            stack.extend(table.get_children())
        return names

    def read(self, node: ast.stmt) -> tuple[set[str], set[str], set[str], dict[str, ast.AST]]:
        """(binds, uses, mutates, first use of each name) of one top-level statement."""
        binds: set[str] = set()
        uses: set[str] = set()
        mutates: set[str] = set()
        where: dict[str, ast.AST] = {}

        def use(name: str, at: ast.AST) -> None:
            uses.add(name)
            where.setdefault(name, at)

        def visit(current: ast.AST) -> None:
            if isinstance(current, (ast.Import, ast.ImportFrom)):
                for alias in current.names:
                    if alias.name != "*":
                        binds.add(alias.asname or alias.name.split(".")[0])
                return
            if isinstance(current, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                binds.add(current.name)
                parts: list[ast.AST] = list(current.decorator_list)
                if isinstance(current, ast.ClassDef):
                    parts += [*current.bases, *current.keywords]
                else:
                    arguments = current.args
                    parts += [*arguments.defaults, *(d for d in arguments.kw_defaults if d)]
                    if not self.future_annotations:
                        parts += [a.annotation for a in (*arguments.posonlyargs,
                                                         *arguments.args,
                                                         *arguments.kwonlyargs,
                                                         arguments.vararg, arguments.kwarg)
                                  if a is not None and a.annotation is not None]
                        if current.returns is not None:
                            parts.append(current.returns)
                for part in parts:
                    visit(part)
                return
            if isinstance(current, ast.Lambda):
                for default in (*current.args.defaults,
                                *(d for d in current.args.kw_defaults if d)):
                    visit(default)
                return
            if isinstance(current, _COMPREHENSIONS):
                visit(current.generators[0].iter)  # the rest is the comprehension's own scope
                return
            if isinstance(current, ast.Name):
                if isinstance(current.ctx, ast.Store):
                    binds.add(current.id)
                else:
                    use(current.id, current)
                return
            if isinstance(current, ast.AnnAssign) and self.future_annotations:
                for child in (current.target, current.value):
                    if child is not None:
                        visit(child)
                if current.value is None and isinstance(current.target, ast.Name):
                    binds.discard(current.target.id)  # `x: int` alone binds nothing
                return
            if isinstance(current, ast.AnnAssign) and current.value is None:
                visit(current.annotation)
                return
            if isinstance(current, (ast.Assign, ast.AugAssign, ast.AnnAssign, ast.Delete,
                                    ast.For, ast.AsyncFor)):
                targets = (current.targets if isinstance(current, (ast.Assign, ast.Delete))
                           else [current.target])
                for target in targets:
                    for part in ast.walk(target):
                        if isinstance(part, (ast.Attribute, ast.Subscript)):
                            root = _root_name(part)
                            if root is not None:
                                mutates.add(root)
                if isinstance(current, ast.AugAssign) and isinstance(current.target, ast.Name):
                    use(current.target.id, current.target)
                if isinstance(current, ast.Delete):
                    for target in current.targets:
                        if isinstance(target, ast.Name):
                            use(target.id, target)
            if isinstance(current, ast.Expr) and isinstance(current.value, ast.Call):
                root = _root_name(current.value.func)
                if root is not None and isinstance(current.value.func, ast.Attribute):
                    mutates.add(root)  # `REGISTRY.append(...)`, `np.random.seed(0)`
            if isinstance(current, ast.MatchAs) and current.name:
                binds.add(current.name)
            if isinstance(current, ast.MatchStar) and current.name:
                binds.add(current.name)
            if isinstance(current, ast.MatchMapping) and current.rest:
                binds.add(current.rest)
            for child in ast.iter_child_nodes(current):
                visit(child)

        visit(node)
        first = min([node.lineno, *(d.lineno for d in getattr(node, "decorator_list", []))])
        inner = self.scope_globals(first, node.end_lineno or node.lineno) - uses
        if inner:
            # Where a function body first names it, for error locations.
            for part in sorted((n for n in ast.walk(node) if isinstance(n, ast.Name)
                                and n.id in inner), key=lambda n: (n.lineno, n.col_offset)):
                where.setdefault(part.id, part)
            uses.update(inner)
        return binds, uses, mutates, where


#: Calls and assignments that configure the process for the code that follows (by the full
#: name of what they call or assign, as imported): they run in every step. Any other top-level
#: call on an imported module or function (`subprocess.run(...)`, `run_graph(...)`,
#: `plt.show()`) is work a fresh import would do, that no step needs, and that could start
#: anything, so it stays in the script.
_SETUP_CALLS = (
    "sys.path.", "sys.setrecursionlimit", "os.environ.", "os.putenv", "site.addsitedir",
    "warnings.filterwarnings", "warnings.simplefilter", "logging.basicConfig",
    "logging.disable", "logging.captureWarnings", "random.seed", "numpy.random.seed",
    "numpy.set_printoptions", "numpy.seterr", "torch.manual_seed", "torch.set_num_threads",
    "torch.set_default_dtype", "torch.use_deterministic_algorithms", "torch.set_printoptions",
    "tensorflow.random.set_seed", "tensorflow.keras.utils.set_random_seed",
    "keras.utils.set_random_seed", "matplotlib.use", "matplotlib.rc", "pandas.set_option",
    "sklearn.set_config", "dotenv.load_dotenv", "mlflow.set_tracking_uri",
)
_SETUP_TARGETS = ("os.environ", "pandas.options.", "matplotlib.rcParams",
                  "matplotlib.pyplot.rcParams", "torch.backends.", "numpy.random.")


def _dotted(node: ast.AST, imported: Mapping[str, str]) -> str | None:
    """The full name an attribute chain stands for, through the module's imports
    (`np.random.seed` -> numpy.random.seed); None when it does not start at an import."""
    parts: list[str] = []
    while isinstance(node, (ast.Attribute, ast.Subscript)):
        if isinstance(node, ast.Attribute):
            parts.append(node.attr)
        else:
            parts.clear()  # `os.environ["X"]` is os.environ
        node = node.value
    if not isinstance(node, ast.Name) or node.id not in imported:
        return None
    return ".".join([imported[node.id], *reversed(parts)])


def _is_setup(node: ast.stmt, imported: Mapping[str, str]) -> bool:
    """A statement that configures the process through an imported module or function."""
    if isinstance(node, ast.Expr) and isinstance(node.value, ast.Call):
        name = _dotted(node.value.func, imported)
        return name is not None and name.startswith(_SETUP_CALLS)
    if isinstance(node, (ast.Assign, ast.AugAssign)):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        names = [_dotted(t, imported) if isinstance(t, (ast.Attribute, ast.Subscript)) else None
                 for t in targets]
        return all(name is not None and (name + ".").startswith(_SETUP_TARGETS)
                   for name in names)
    return False


def _first_line(node: ast.stmt) -> int:
    return min([node.lineno, *(d.lineno for d in getattr(node, "decorator_list", []))])


def _called_roots(node: ast.AST) -> set[str]:
    """The root names of every call in ``node`` (nested function bodies included)."""
    return {root for n in ast.walk(node) if isinstance(n, ast.Call)
            and (root := _root_name(n.func)) is not None}


def _invoked_roots(node: ast.stmt) -> set[str]:
    """The root names of the calls a statement makes when it runs: not those in the bodies of
    the functions and lambdas it defines, but their decorators (a decorator is called) and
    defaults, and class bodies (which run)."""
    found: set[str] = set()
    stack: list[ast.AST] = [node]
    while stack:
        current = stack.pop()
        if isinstance(current, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for decorator in current.decorator_list:
                root = _root_name(decorator)
                if root is not None:
                    found.add(root)
            stack.extend([*current.decorator_list, *current.args.defaults,
                          *(d for d in current.args.kw_defaults if d)])
            continue
        if isinstance(current, ast.ClassDef):
            for decorator in current.decorator_list:
                root = _root_name(decorator)
                if root is not None:
                    found.add(root)
        if isinstance(current, ast.Lambda):
            continue
        if isinstance(current, ast.Call):
            root = _root_name(current.func)
            if root is not None:
                found.add(root)
        stack.extend(ast.iter_child_nodes(current))
    return found


def _mutated_roots(node: ast.AST) -> set[str]:
    """Root names changed in place anywhere in ``node``: ``X[k] = v``, ``X.a = v``,
    ``del X[k]``, ``X.append(v)`` (a method call as a statement)."""
    found: set[str] = set()
    for part in ast.walk(node):
        targets: list[ast.AST] = []
        if isinstance(part, (ast.Assign, ast.Delete)):
            targets = list(part.targets)
        elif isinstance(part, (ast.AugAssign, ast.AnnAssign)):
            targets = [part.target]
        elif isinstance(part, ast.Expr) and isinstance(part.value, ast.Call) and \
                isinstance(part.value.func, ast.Attribute):
            targets = [part.value.func]
        for target in targets:
            if isinstance(target, (ast.Attribute, ast.Subscript)):
                root = _root_name(target)
                if root is not None:
                    found.add(root)
    return found


_PARSE_METHODS = frozenset({"parse_args", "parse_known_args", "parse_intermixed_args",
                            "parse_known_intermixed_args"})


def _command_line_read(node: ast.AST) -> ast.AST | None:
    """The first place in ``node`` that reads the script's command line: ``sys.argv``, or an
    argparse ``parse_args()`` given no arguments of its own."""
    for part in ast.walk(node):
        if isinstance(part, ast.Attribute) and part.attr == "argv" and \
                _root_name(part) == "sys":
            return part
        if isinstance(part, ast.ImportFrom) and part.module == "sys" and \
                any(alias.name == "argv" for alias in part.names):
            return part
        if isinstance(part, ast.Call) and isinstance(part.func, ast.Attribute) and \
                part.func.attr in _PARSE_METHODS and not part.args and \
                not any(k.arg == "args" for k in part.keywords):
            return part
    return None


def _binding_line(node: ast.stmt, name: str) -> int:
    """The line inside a statement where ``name`` is bound (the statement's own line when it
    cannot be told)."""
    for part in ast.walk(node):
        if isinstance(part, ast.Name) and part.id == name and isinstance(part.ctx, ast.Store):
            return part.lineno
        if isinstance(part, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and \
                part.name == name:
            return part.lineno
        if isinstance(part, (ast.Import, ast.ImportFrom)) and any(
                (alias.asname or alias.name.split(".")[0]) == name for alias in part.names):
            return part.lineno
    return node.lineno


def _calls_magics(node: ast.stmt) -> bool:
    return any(isinstance(n, ast.Name) and n.id == "get_ipython" for n in ast.walk(node))


class ModuleIndex:
    """The top-level statements of one module (a file, or a kernel's cells in execution order),
    with what each binds and reads, and how a step's needs are met from them."""

    def __init__(self, sources: list[SourceFile], namespace: Mapping[str, Any]) -> None:
        from kale.definitions import PipelineDefinition as PipelineFunction

        self.sources = sources
        self.namespace = namespace
        self.statements: list[_Statement] = []
        readers: list[_Reader] = []
        for source in sources:
            future_annotations = any(
                isinstance(s, ast.ImportFrom) and s.module == "__future__"
                and any(a.name == "annotations" for a in s.names) for s in source.tree.body)
            reader = _Reader(source, future_annotations)
            for node in source.tree.body:
                self.statements.append(self._statement(node, source, reader))
            readers.append(reader)
        self._add_call_effects(readers)
        self.binders: dict[str, list[int]] = {}
        for index, statement in enumerate(self.statements):
            for name in statement.binds:
                self.binders.setdefault(name, []).append(index)
        # Functions that run a pipeline when called, so statements calling them do too.
        pipelines = {name for name, value in namespace.items()
                     if isinstance(value, PipelineFunction)}
        calls = [_called_roots(statement.node) for statement in self.statements]
        changed = True
        while changed:
            changed = False
            for statement, called in zip(self.statements, calls, strict=True):
                node = statement.node
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and \
                        node.name not in pipelines and called & pipelines:
                    pipelines.add(node.name)
                    changed = True
        self.pipelines = pipelines
        # What each imported name stands for (`np` -> numpy, `seed` -> random.seed).
        imported: dict[str, str] = {}
        for statement in self.statements:
            node = statement.node
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.asname:
                        imported[alias.asname] = alias.name
                    else:
                        top = alias.name.split(".")[0]
                        imported[top] = top
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                for alias in node.names:
                    if alias.name != "*":
                        imported[alias.asname or alias.name] = f"{node.module}.{alias.name}"
        for statement, called in zip(self.statements, calls, strict=True):
            if statement.kind != "code" or isinstance(
                    statement.node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                continue
            if called & pipelines:
                statement.kind = "pipeline"
            elif _is_setup(statement.node, imported):
                statement.kind = "setup"
        self.setup = [i for i, s in enumerate(self.statements) if s.kind == "setup"]
        # `del X` at module level: X is gone for any step that uses it.
        self.deleters: dict[str, list[int]] = {}
        for index, statement in enumerate(self.statements):
            if isinstance(statement.node, ast.Delete) and statement.kind == "code":
                for target in statement.node.targets:
                    for part in ast.walk(target):
                        if isinstance(part, ast.Name) and isinstance(part.ctx, ast.Del):
                            self.deleters.setdefault(part.id, []).append(index)
        # Statements that share a line (`a = 1; b = 2`): a context is made of whole lines.
        self.line_mates: dict[int, list[int]] = {}
        for index in range(len(self.statements) - 1):
            this, after = self.statements[index], self.statements[index + 1]
            if this.source is after.source and this.last >= after.first:
                self.line_mates.setdefault(index, []).append(index + 1)
                self.line_mates.setdefault(index + 1, []).append(index)
        # Changes in place of the module's own objects (`CONFIG["k"] = v`), never calls on an
        # imported module (`subprocess.run(...)`, `plt.show()`): those are work, not state.
        self.mutators: dict[str, list[int]] = {}
        for index, statement in enumerate(self.statements):
            if statement.kind == "code":
                for name in statement.mutates - imported.keys():
                    self.mutators.setdefault(name, []).append(index)

    def _add_call_effects(self, readers: list[_Reader]) -> None:
        """Give a module-level statement that calls a function of the module (or decorates
        with one) that function's effects on module globals, as a fresh import has them:
        ``load()`` binds what ``load`` assigns with ``global``, ``@register`` changes
        ``REGISTRY`` as ``register`` does. Without this, a step needing ``CONFIG`` or
        ``REGISTRY`` would miss the call that fills it (or be told it is made at run time)."""
        by_source = {id(reader.source): reader for reader in readers}
        effects: dict[str, tuple[set[str], set[str]]] = {}  # function: (assigns, mutates)
        calls: dict[str, set[str]] = {}
        for statement in self.statements:
            node = statement.node
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            reader = by_source[id(statement.source)]
            first, last = statement.first, statement.last
            scoped = reader.scope_globals(first, last)
            assigns, mutates = effects.setdefault(node.name, (set(), set()))
            assigns.update(reader.scope_global_writes(first, last))
            mutates.update(_mutated_roots(ast.Module(body=node.body, type_ignores=[]))
                           & scoped)
            calls.setdefault(node.name, set()).update(
                _called_roots(ast.Module(body=node.body, type_ignores=[])))
        if not any(a or m for a, m in effects.values()):
            return
        changed = True
        while changed:  # a function has the effects of the module functions it calls
            changed = False
            for name, called in calls.items():
                assigns, mutates = effects[name]
                for other in called & effects.keys():
                    more_assigns, more_mutates = effects[other]
                    if not (more_assigns <= assigns and more_mutates <= mutates):
                        assigns.update(more_assigns)
                        mutates.update(more_mutates)
                        changed = True
        for statement in self.statements:
            if statement.kind == "future":
                continue
            invoked = _invoked_roots(statement.node) & effects.keys()
            if isinstance(statement.node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                invoked.discard(statement.node.name)  # its own body does not run here
            assigns = {n for f in invoked for n in effects[f][0]}
            mutates = {n for f in invoked for n in effects[f][1]}
            if assigns - statement.binds:
                statement.maybe = frozenset(assigns - statement.binds)
                statement.binds = statement.binds | statement.maybe
            if mutates:
                statement.mutates = statement.mutates | mutates

    @staticmethod
    def _statement(node: ast.stmt, source: SourceFile, reader: _Reader) -> _Statement:
        first, last = _first_line(node), node.end_lineno or node.lineno
        if isinstance(node, ast.ImportFrom) and node.module == "__future__":
            return _Statement(node, source, first, last, "future")
        kind = "main" if _is_main_guard(node) else "ipython" if _calls_magics(node) else "code"
        binds, uses, mutates, where = reader.read(node)
        star = None
        if isinstance(node, ast.ImportFrom) and any(a.name == "*" for a in node.names):
            star = "." * node.level + (node.module or "")
        # `import a` and `import a.b` bind the package `a` itself, whose submodules earlier
        # `import a.x` statements loaded: they add to those, not replace them.
        certain = isinstance(node, _CERTAIN) and not (
            isinstance(node, ast.AnnAssign) and node.value is None) and not (
            isinstance(node, ast.Import) and any(a.asname is None for a in node.names))
        return _Statement(node, source, first, last, kind, frozenset(binds), certain,
                          frozenset(uses), frozenset(mutates), star, where)

    # -- a step's needs ------------------------------------------------------------------------

    def star_binder(self, name: str, package: str | None) -> int | None:
        """The last ``from M import *`` that provides ``name``, resolved by importing M."""
        for index in range(len(self.statements) - 1, -1, -1):
            statement = self.statements[index]
            if statement.star is None or statement.kind != "code":
                continue
            try:
                module = importlib.import_module(statement.star.lstrip("."), None) \
                    if not statement.star.startswith(".") else \
                    importlib.import_module(statement.star, package)
            except Exception:
                continue
            public = getattr(module, "__all__", None)
            names = public if public is not None else [n for n in vars(module)
                                                       if not n.startswith("_")]
            if name in names:
                return index
        return None

    def slice(self, needed: Mapping[str, SourceLocation], package: str | None,
              step: str) -> tuple[list[int], list[KaleError]]:
        """The statements (indexes, in module order) that provide ``needed`` (name -> where the
        step uses it), the setup statements, and what they need in turn; and the problems."""
        wanted: dict[str, SourceLocation] = dict(needed)
        chosen: set[int] = set()
        problems: list[KaleError] = []
        reported: set[str] = set()
        shared: set[int] = set()  # statements reported for sharing a line with a needed one
        pending = list(wanted)

        def choose(index: int) -> None:
            if index in chosen:
                return
            chosen.add(index)
            statement = self.statements[index]
            for used in statement.uses | statement.mutates:
                if used not in wanted:
                    wanted[used] = SourceLocation.of_node(
                        statement.where.get(used, statement.node), statement.source.filename)
                    pending.append(used)
            # A context travels as whole lines: statements sharing a line with this one
            # (`N = 2; run = flow()`) run with it, so they need what they use, and one that
            # must never run in a step is an error.
            for mate in self.line_mates.get(index, ()):
                other = self.statements[mate]
                if other.kind in ("code", "setup"):
                    choose(mate)
                elif mate not in shared and other.kind != "future":
                    shared.add(mate)
                    what = {"main": "the `if __name__ == \"__main__\":` block",
                            "pipeline": "a statement that runs a pipeline",
                            "ipython": "an IPython magic"}[other.kind]
                    problems.append(StepDefinitionError(
                        f"step `{step}` needs line {statement.first} of "
                        f"{statement.location.display_file}, which also holds {what}; a step "
                        "runs the module-level lines it needs whole",
                        location=other.location,
                        fix="put that statement on a line of its own (no `;`)"))

        for index in self.setup:
            choose(index)
        while pending:
            name = pending.pop()
            if name in RUNTIME_NAMES:
                continue
            binders = [i for i in self.binders.get(name, ())
                       if self.statements[i].kind in ("code", "setup")]
            if not binders and hasattr(builtins, name) and \
                    self.namespace.get(name, getattr(builtins, name)) is getattr(builtins, name):
                continue  # a builtin the module does not redefine (a star import could)
            if not binders:
                star = self.star_binder(name, package)
                if star is not None:
                    binders = [star]
            if not binders:
                if name not in reported:
                    reported.add(name)
                    problem = self.missing(name, wanted[name], step)
                    if problem is not None:
                        problems.append(problem)
                continue
            deleted = [i for i in self.deleters.get(name, ()) if i > binders[-1]]
            if deleted and name not in reported:
                # `del X` after its last binding: a fresh import has no `X` either.
                reported.add(name)
                statement = self.statements[deleted[-1]]
                problems.append(StepDefinitionError(
                    f"step `{step}` uses `{name}`, which `del {name}` removes at line "
                    f"{statement.first} of {statement.location.display_file}, so the module "
                    f"has no `{name}` once imported", location=wanted[name],
                    fix=f"remove the `del {name}`, or define `{name}` again after it"))
                continue
            # From the last certain binding on: earlier ones are replaced (unless it reads the
            # name itself, `x = x + 1`, which the loop below follows).
            start = 0
            for index in reversed(binders):
                statement = self.statements[index]
                if statement.certain and name not in statement.uses and \
                        name not in statement.maybe:
                    start = index
                    break
            chosen_here = [i for i in binders if i >= start]
            chosen_here += [i for i in self.mutators.get(name, ()) if i > start]
            for index in chosen_here:
                choose(index)
        problems.extend(self._command_line_problems(chosen, step))
        return sorted(chosen), problems

    def _command_line_problems(self, chosen: Iterable[int], step: str) -> list[KaleError]:
        """A step whose context reads the command line, when the script was given arguments:
        a step's process runs with none (``sys.argv`` is ``[its file]``, as the script with no
        arguments), locally and on Kubeflow, so it would silently see the defaults."""
        arguments = sys.argv[1:]
        # A Jupyter kernel's own arguments (`ipykernel_launcher.py -f kernel.json`) are not
        # the notebook's.
        if not arguments or "ipykernel" in os.path.basename(sys.argv[0]):
            return []
        for index in sorted(chosen):
            statement = self.statements[index]
            found = _command_line_read(statement.node)
            if found is None:
                continue
            location = SourceLocation.of_node(found, statement.source.filename)
            shown = " ".join(arguments)
            return [StepDefinitionError(
                f"step `{step}` runs line {location.line} of {statement.location.display_file}, "
                "which reads the command line, but a step's process does not get the script's "
                f"arguments (`{shown[:60]}`): it would see none",
                location=location,
                fix="parse the arguments under `if __name__ == \"__main__\":` and pass their "
                "values to the pipeline as parameters")]
        return []

    def missing(self, name: str, location: SourceLocation, step: str) -> KaleError | None:
        """Why ``name`` cannot exist in the step's process (None: a builtin, all is well)."""
        label = f"step `{step}`"
        excluded = [s for s in self.statements if name in s.binds and s.kind in
                    ("main", "pipeline", "ipython")]
        if not excluded and hasattr(builtins, name):
            return None
        for statement in excluded:
            where = f"line {_binding_line(statement.node, name)} of " \
                f"{statement.location.display_file}"
            if statement.kind == "main":
                return StepDefinitionError(
                    f"{label} uses `{name}`, which is defined only under "
                    f"`if __name__ == \"__main__\":` ({where}); that block never runs in a step",
                    location=location,
                    fix=f"define `{name}` above the `if __name__ == \"__main__\":` block, or "
                    "make it a pipeline parameter and pass it in the pipeline call")
            if statement.kind == "pipeline":
                return StepDefinitionError(
                    f"{label} uses `{name}`, which is created when the pipeline runs "
                    f"({where}); a step's process never runs the pipeline",
                    location=location,
                    fix=f"compute `{name}` in a step and pass it as an argument, or make it a "
                    "pipeline parameter")
            return StepDefinitionError(
                f"{label} uses `{name}`, which an IPython magic creates ({where}); a step runs "
                "without IPython", location=location,
                fix=f"create `{name}` with plain Python code")
        writers = self.global_writers(name)
        if writers:
            function, line = writers[0]
            return StepDefinitionError(
                f"{label} uses `{name}`, which is created at run time by `{function}` "
                f"(`global {name}` at line {line}); a step's process does not run that code",
                location=location,
                fix=f"assign `{name}` at module level, or compute it in a step and pass it as an "
                "argument")
        if name in self.namespace:
            return StepDefinitionError(
                f"{label} uses `{name}`, which no statement of its module defines (it was set "
                "at run time, by code Kale cannot follow), so a step's process would not have it",
                location=location,
                fix=f"define `{name}` at module level, or pass it to the step as an argument")
        for statement in self.statements:
            node = statement.node
            if isinstance(node, ast.AnnAssign) and node.value is None and \
                    isinstance(node.target, ast.Name) and node.target.id == name:
                return StepDefinitionError(  # `y: int` alone declares, it does not assign
                    f"{label} uses `{name}`, which line {node.lineno} of "
                    f"{statement.location.display_file} only annotates (`{name}: ...` with no "
                    "value), so it is not defined", location=location,
                    fix=f"give `{name}` a value there (`{name}: ... = value`)")
        known = set(self.binders) | set(dir(builtins))
        close = difflib.get_close_matches(name, sorted(known), n=1)
        hint = f"did you mean `{close[0]}`? " if close else ""
        return StepDefinitionError(
            f"{label} uses `{name}`, which is not defined", location=location,
            fix=f"{hint}import or define `{name}` at module level or inside the step")

    def global_writers(self, name: str) -> list[tuple[str, int]]:
        """Functions of the module that assign ``name`` with ``global name``."""
        found = []
        for statement in self.statements:
            for node in ast.walk(statement.node):
                if isinstance(node, ast.Global) and name in node.names:
                    owner = next((f for f in ast.walk(statement.node)
                                  if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
                                  and node in ast.walk(f)), None)
                    found.append((owner.name if owner else "?", node.lineno))
        return found

    def segments(self, chosen: Iterable[int]) -> tuple[CodeSegment, ...]:
        """The chosen statements as code, adjacent ones merged."""
        result: list[CodeSegment] = []
        for index in chosen:
            statement = self.statements[index]
            source = statement.source
            text = "".join(source.lines[statement.first - 1 : statement.last])
            if result and result[-1].filename == source.filename and \
                    result[-1].line + result[-1].text.count("\n") == statement.first:
                previous = result.pop()
                result.append(CodeSegment(source.filename, previous.line, previous.text + text))
            elif result and result[-1].filename == source.filename and \
                    result[-1].line + result[-1].text.count("\n") > statement.first:
                continue  # on the line of the statement before (`import a; import b`)
            else:
                result.append(CodeSegment(source.filename, statement.first, text))
        return tuple(result)


_indexes: dict[tuple[str, ...], tuple[list[int], ModuleIndex]] = {}


def module_sources(func: Any) -> list[SourceFile]:
    """The source of a function's module: its file, or the kernel's cells in execution order
    for a function defined in a notebook."""
    filename = func.__code__.co_filename
    if func.__module__ == "__main__" and may_be_cell(filename):
        cells = _kernel_cells(func.__globals__)
        if cells:
            return cells
    source = read_source(filename, func.__globals__)
    return [source] if source is not None else []


def _kernel_cells(namespace: Mapping[str, Any]) -> list[SourceFile] | None:
    if "IPython" not in sys.modules:
        return None
    try:
        from kale.notebook.kernel import kernel_cells
    except ImportError:
        return None
    cells = kernel_cells(namespace)
    if not cells:
        return None
    sources = []
    for cell in cells:
        source = read_source(cell.filename)
        if source is not None:
            sources.append(source)
    return sources


def module_index(func: Any) -> ModuleIndex | None:
    """The index of a function's module, cached while its source is unchanged."""
    sources = module_sources(func)
    if not sources:
        return None
    key = tuple(source.filename for source in sources)
    cached = _indexes.get(key)
    identity = [id(source.lines) for source in sources]
    if cached is not None and cached[0] == identity and \
            cached[1].namespace is func.__globals__:
        return cached[1]
    index = ModuleIndex(sources, func.__globals__)
    _indexes[key] = (identity, index)
    return index


def iter_futures(index: ModuleIndex) -> Iterator[str]:
    """The ``from __future__`` features of the module (each segment is compiled with them)."""
    seen = set()
    for statement in index.statements:
        if statement.kind == "future":
            for alias in statement.node.names:  # type: ignore[attr-defined]
                if alias.name not in seen:
                    seen.add(alias.name)
                    yield alias.name
