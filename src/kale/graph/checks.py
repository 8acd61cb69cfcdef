"""Static checks of step functions: each must be able to run on its own, as it will on Kubeflow.

On Kubeflow a step runs from its own source in a fresh process, with nothing of the module it was
written in. So a step may use only its arguments, builtins and what it imports or defines inside
its body. Every other name it reaches for is found here (with ``symtable``, which knows Python's
scoping rules exactly) and reported at once, with where the name is defined and how to fix it.

The runtime contract these checks assume (``kale.runtime`` must keep it): a step's ``def`` is
compiled with ``from __future__ import annotations`` (so annotations are never evaluated), it is
bound under its own name (so a step may call itself), and ``__file__`` and ``__name__`` are those of
its module (``RUNTIME_NAMES``).
"""

from __future__ import annotations

import ast
import builtins
import os
import symtable
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from kale.errors import KaleError, SourceLocation, StepDefinitionError, raise_all
from kale.source import FunctionNode, SourceFile, function_source

if TYPE_CHECKING:
    from kale.graph.model import Graph
    from kale.sdk import StepFunction

#: Module-level names the runtime defines for a step, so a step may use them.
RUNTIME_NAMES = frozenset({"__file__", "__name__"})

_NESTED_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)


def _own_nodes(function: FunctionNode) -> Iterator[ast.AST]:
    """The nodes of a function's body that belong to it, not to functions or classes inside it."""
    stack: list[ast.AST] = list(function.body)
    while stack:
        node = stack.pop()
        yield node
        if not isinstance(node, _NESTED_SCOPES):
            stack.extend(ast.iter_child_nodes(node))


def return_arity(function: FunctionNode) -> int | None:
    """How many values a function returns, when its source says so plainly.

    0 when it never returns a value, n when every ``return`` has a literal n-tuple, None when it
    cannot be told (``return x``, or returns of different shapes).
    """
    arities = set()
    for node in _own_nodes(function):
        if isinstance(node, (ast.Yield, ast.YieldFrom)):
            return None
        if not isinstance(node, ast.Return):
            continue
        value = node.value
        if value is None or (isinstance(value, ast.Constant) and value.value is None):
            arities.add(0)
        elif isinstance(value, ast.Tuple) and not any(
            isinstance(element, ast.Starred) for element in value.elts
        ):
            arities.add(len(value.elts))
        else:
            return None
    if not arities:
        return 0
    return arities.pop() if len(arities) == 1 else None


_tables: dict[str, tuple[str, symtable.SymbolTable]] = {}


def _function_table(source: SourceFile, node: FunctionNode) -> symtable.SymbolTable | None:
    cached = _tables.get(source.filename)
    if cached is None or cached[0] is not source.text:
        cached = (source.text, symtable.symtable(source.text, source.filename, "exec"))
        _tables[source.filename] = cached
    stack = [cached[1]]
    while stack:
        table = stack.pop()
        if table.get_type() == "function" and table.get_name() == node.name \
                and table.get_lineno() == node.lineno:
            return table
        stack.extend(table.get_children())
    return None


def _external_names(table: symtable.SymbolTable) -> tuple[set[str], set[str]]:
    """Names a function (and everything nested in it) takes from its module, and from closures."""
    module_names = set()
    for symbol in table.get_symbols():
        if symbol.is_global() or symbol.is_declared_global():
            module_names.add(symbol.get_name())
    closure_names = {symbol.get_name() for symbol in table.get_symbols() if symbol.is_free()}
    stack = list(table.get_children())
    while stack:
        child = stack.pop()
        module_names.update(s.get_name() for s in child.get_symbols() if s.is_global())
        stack.extend(child.get_children())
    return module_names, closure_names


def _name_uses(function: FunctionNode) -> dict[str, list[ast.AST]]:
    """Where each name appears in the body, leaving out local-variable annotations, which
    Python never evaluates."""
    uses: dict[str, list[ast.AST]] = {}
    stack: list[ast.AST] = list(function.body)
    while stack:
        node = stack.pop()
        if isinstance(node, ast.Name):
            uses.setdefault(node.id, []).append(node)
        elif isinstance(node, (ast.Global, ast.Nonlocal)):
            for name in node.names:
                uses.setdefault(name, []).append(node)
        if isinstance(node, ast.AnnAssign):
            stack.extend(child for child in (node.target, node.value) if child is not None)
        else:
            stack.extend(ast.iter_child_nodes(node))
    for found in uses.values():
        found.sort(key=lambda n: (n.lineno, n.col_offset))
    return uses


_module_bindings: dict[str, tuple[str, dict[str, ast.stmt]]] = {}


def _module_binding(source: SourceFile, name: str) -> ast.stmt | None:
    """The first module-level statement of a file that binds ``name``."""
    cached = _module_bindings.get(source.filename)
    if cached is None or cached[0] is not source.text:
        bindings: dict[str, ast.stmt] = {}
        stack = list(reversed(source.tree.body))
        while stack:
            statement = stack.pop()
            for bound in _bound_names(statement):
                bindings.setdefault(bound, statement)
            if not isinstance(statement, _NESTED_SCOPES):
                for field in ("body", "orelse", "finalbody", "handlers"):
                    stack.extend(reversed(getattr(statement, field, [])))
        cached = (source.text, bindings)
        _module_bindings[source.filename] = cached
    return cached[1].get(name)


def _bound_names(statement: ast.AST) -> Iterator[str]:
    if isinstance(statement, (ast.Import, ast.ImportFrom)):
        for alias in statement.names:
            yield alias.asname or alias.name.split(".")[0]
    elif isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        yield statement.name
    elif isinstance(statement, (ast.Assign, ast.AnnAssign, ast.AugAssign, ast.For, ast.With)):
        targets = getattr(statement, "targets", None) or [
            getattr(statement, "target", None),
            *[item.optional_vars for item in getattr(statement, "items", [])],
        ]
        for target in targets:
            if target is not None:
                for node in ast.walk(target):
                    if isinstance(node, ast.Name):
                        yield node.id


def _import_text(statement: ast.Import | ast.ImportFrom, name: str) -> str:
    for alias in statement.names:
        if (alias.asname or alias.name.split(".")[0]) == name:
            rename = f" as {alias.asname}" if alias.asname else ""
            if isinstance(statement, ast.Import):
                return f"import {alias.name}{rename}"
            module = "." * statement.level + (statement.module or "")
            return f"from {module} import {alias.name}{rename}"
    return "the import"


def check_steps(graph: Graph, functions: Iterable[StepFunction]) -> None:
    """Raise every isolation problem of the pipeline's steps at once (or nothing)."""
    errors: list[KaleError] = []
    for function in functions:
        errors.extend(_check_step(function, graph))
    errors.sort(key=lambda e: (e.location.file, e.location.line, e.location.column)
                if e.location else ("", 0, 0))
    raise_all(
        f"{{count}} problems in the steps of pipeline `{graph.options.display_name}`: steps run "
        "on their own on Kubeflow, so each may use only its arguments, builtins and what it "
        "imports inside its body",
        errors,
    )


def _check_step(function: StepFunction, graph: Graph) -> Iterator[KaleError]:
    func = function.func
    found = function_source(func)
    if found is None:
        return
    source, node = found
    label = f"step `{func.__name__}`"

    def at(target: ast.AST) -> SourceLocation:
        return SourceLocation.of_node(target, source.filename)

    where = _placement_problem(source.filename, graph)
    if where:
        yield StepDefinitionError(f"{label} is defined {where}", location=at(node),
                                  fix=f"on Kubeflow a step sees only the project directory "
                                  f"{graph.project_root} (the folder of the pipeline's file); "
                                  "move the module that defines it under that directory")
    if isinstance(node, ast.AsyncFunctionDef):
        yield StepDefinitionError(f"{label} is `async def`", location=at(node),
                                  fix="define it with `def`; use asyncio.run(...) inside it if "
                                  "it needs to await")
    if any(isinstance(n, (ast.Yield, ast.YieldFrom)) for n in _own_nodes(node)):
        yield StepDefinitionError(f"{label} is a generator (it uses `yield`), and a generator "
                                  "cannot be passed to another step", location=at(node),
                                  fix="return a list (or another value) instead of yielding")
    for special, star in ((node.args.vararg, "*"), (node.args.kwarg, "**")):
        if special is not None:
            yield StepDefinitionError(f"{label} collects arguments with `{star}{special.arg}`",
                                      location=at(special), fix="Kubeflow steps have named "
                                      "inputs: list every parameter by name")
    yield from _default_problems(function, source, node, at)
    table = _function_table(source, node)
    if table is None:
        return
    module_names, closure_names = _external_names(table)
    uses = _name_uses(node)
    for name in sorted(closure_names):
        use = uses.get(name, [node])[0]
        yield StepDefinitionError(
            f"{label} uses `{name}` from the function that encloses it",
            location=at(use),
            fix=f"pass `{name}` to the step as an argument, or define it inside `{func.__name__}`",
        )
    for name in sorted(module_names):
        if name == func.__name__ or name in RUNTIME_NAMES or name not in uses:
            continue
        error = _module_name_problem(function, graph, source, name, at(uses[name][0]))
        if error is not None:
            yield error


def _placement_problem(filename: str, graph: Graph) -> str | None:
    if not os.path.isfile(filename):
        return None if not os.path.isfile(graph.filename) else "outside any file of the project"
    path = os.path.realpath(filename)
    root = os.path.realpath(graph.project_root)
    if os.path.commonpath([path, root]) != root:
        return f"in {path}, outside the project directory {root}"
    return None


def _default_problems(function: StepFunction, source: SourceFile, node: FunctionNode,
                      at: Any) -> Iterator[KaleError]:
    func = function.func
    defaults = [*node.args.defaults, *(d for d in node.args.kw_defaults if d is not None)]
    for default in defaults:
        for name_node in ast.walk(default):
            if not isinstance(name_node, ast.Name):
                continue
            name = name_node.id
            if name in func.__globals__ or not hasattr(builtins, name):
                yield StepDefinitionError(
                    f"a default value of step `{func.__name__}` uses `{name}`, which is defined "
                    "outside the step",
                    location=at(name_node),
                    fix=f"write the value itself as the default, or pass `{name}` as an "
                    "argument from the pipeline",
                )


def _module_name_problem(function: StepFunction, graph: Graph, source: SourceFile, name: str,
                         location: SourceLocation) -> KaleError | None:
    from kale.sdk import StepFunction

    func = function.func
    step = f"`{func.__name__}`"
    label = f"step {step}"
    if name not in func.__globals__:
        if hasattr(builtins, name):
            return None
        return StepDefinitionError(f"{label} uses `{name}`, which is not defined",
                                   location=location,
                                   fix=f"import or define `{name}` inside {step}")
    binding = _module_binding(source, name)
    file = SourceLocation(source.filename, 1).display_file
    line = f"line {binding.lineno} of {file}" if binding is not None else file
    if isinstance(binding, (ast.Import, ast.ImportFrom)):
        statement = _import_text(binding, name)
        return StepDefinitionError(
            f"{label} uses `{name}`, imported at module level ({line})",
            location=location, fix=f"move `{statement}` into {step}",
        )
    value = func.__globals__[name]
    if isinstance(value, StepFunction):
        return StepDefinitionError(
            f"{label} calls step `{name}` ({line}); on Kubeflow each step runs alone",
            location=location,
            fix=f"call `{name}` from the pipeline and pass its output to {step}, or move the "
            "shared code into a plain function in a module of the project",
        )
    if isinstance(binding, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) or callable(
        value
    ):
        kind = "class" if isinstance(binding, ast.ClassDef) else "function"
        module = func.__module__
        if module != "__main__" and os.path.realpath(source.filename) != os.path.realpath(
            graph.filename
        ):
            fix = f"import it inside {step}: `from {module} import {name}`"
        else:
            fix = (f"move `{name}` into a module of the project (for example helpers.py next to "
                   f"{file}) and import it inside {step}: `from helpers import {name}`")
        return StepDefinitionError(
            f"{label} uses the {kind} `{name}` defined at module level ({line})",
            location=location, fix=fix,
        )
    return StepDefinitionError(
        f"{label} uses `{name}`, a module-level variable ({line})",
        location=location,
        fix=f"pass it to {step} as an argument (a pipeline parameter can carry it), or define "
        f"it inside {step}",
    )
