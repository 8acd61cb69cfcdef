"""Static checks of step functions: each must be able to run on its own, as it will on Kubeflow.

On Kubeflow a step runs from its own source in a fresh process, with nothing of the module it was
written in. So a step may use only its arguments, builtins and what it imports or defines inside
its body. Every other name it reaches for is reported at once, with where the name is defined and
how to fix it.

Two passes keep this fast: the step's compiled code says exactly which global names it loads (a
scan of its bytecode, microseconds); only a step that loads a suspicious name is analysed from its
source with ``symtable`` (Python's own scoping rules) to explain each problem.

The runtime contract these checks assume (``kale.runtime`` must keep it): a step's ``def`` is
compiled with ``from __future__ import annotations`` (so annotations are never evaluated), it is
bound under its own name (so a step may call itself), and ``__file__`` and ``__name__`` are those of
its module (``RUNTIME_NAMES``).
"""

from __future__ import annotations

import ast
import builtins
import dis
import inspect
import os
import symtable
import sys
from collections.abc import Iterable, Iterator
from types import CodeType
from typing import TYPE_CHECKING, Any

from kale.errors import KaleError, SourceLocation, StepDefinitionError, raise_all
from kale.source import FunctionNode, FunctionSpan, SourceFile, read_source

if TYPE_CHECKING:
    from kale.definitions import StepFunction
    from kale.graph.model import Graph

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


def _declared_globals(table: symtable.SymbolTable) -> set[str]:
    return {s.get_name() for scope in (table, *_nested_tables(table))
            for s in scope.get_symbols() if s.is_declared_global()}


_tables: dict[str, tuple[str, dict[tuple[str, int], symtable.SymbolTable]]] = {}


def _function_table(source: SourceFile, node: FunctionNode) -> symtable.SymbolTable | None:
    """The symbol table of a function, from one ``symtable`` pass over its whole file."""
    cached = _tables.get(source.filename)
    if cached is None or cached[0] is not source.text:
        index = {}
        stack = [symtable.symtable(source.text, source.filename, "exec")]
        while stack:
            table = stack.pop()
            if table.get_type() == "function":
                index[(table.get_name(), table.get_lineno())] = table
            stack.extend(table.get_children())
        cached = (source.text, index)
        _tables[source.filename] = cached
    return cached[1].get((node.name, node.lineno))


def _nested_tables(table: symtable.SymbolTable) -> Iterator[symtable.SymbolTable]:
    """Every scope inside ``table`` (functions, lambdas, comprehensions, classes), any depth."""
    stack = list(table.get_children())
    while stack:
        child = stack.pop()
        yield child
        stack.extend(child.get_children())


def _nested_globals(table: symtable.SymbolTable) -> set[str]:
    return {s.get_name() for child in _nested_tables(table) for s in child.get_symbols()
            if s.is_global()}


def _external_names(table: symtable.SymbolTable) -> tuple[set[str], set[str]]:
    """Names a function (and everything nested in it) takes from its module, and from closures."""
    module_names = {symbol.get_name() for symbol in table.get_symbols()
                    if symbol.is_global() or symbol.is_declared_global()}
    closure_names = {symbol.get_name() for symbol in table.get_symbols() if symbol.is_free()}
    return module_names | _nested_globals(table), closure_names


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
        # Annotations are never evaluated: the runtime compiles steps with
        # `from __future__ import annotations`.
        if isinstance(node, ast.AnnAssign):
            stack.extend(child for child in (node.target, node.value) if child is not None)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            stack.extend(child for child in ast.iter_child_nodes(node) if child is not node.returns)
        elif not isinstance(node, ast.arg):
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
                # In source order: `try` before `except`, `if` before `else`.
                children = [child for name in ("body", "handlers", "cases", "orelse",
                                               "finalbody")
                            for child in getattr(statement, name, [])]
                stack.extend(reversed(children))
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


_OPS = dis.opmap
_LOAD_GLOBAL = _OPS["LOAD_GLOBAL"]
# From 3.11 the low bit of LOAD_GLOBAL's argument is a flag, the name index is the rest.
_LOAD_GLOBAL_SHIFT = 1 if sys.version_info >= (3, 11) else 0
_GLOBAL_OPS = bytes(_OPS[name] for name in ("STORE_GLOBAL", "DELETE_GLOBAL"))
# Class bodies look names up with LOAD_NAME (3.12+: LOAD_FROM_DICT_OR_GLOBALS), locals first.
_NAME_OPS = bytes(_OPS[name] for name in ("LOAD_NAME", "LOAD_FROM_DICT_OR_GLOBALS") if name in _OPS)


def code_globals(code: CodeType) -> tuple[set[str], set[str]]:
    """The global names a function's code (nested functions included) loads or stores, and the
    names its class bodies look up (which may be globals)."""
    found: set[str] = set()
    maybe: set[str] = set()
    stack = [code]
    while stack:
        current = stack.pop()
        raw = current.co_code
        opcodes, arguments = raw[::2], raw[1::2]
        names = current.co_names
        for targets, opcode_set, shift in ((found, bytes([_LOAD_GLOBAL]), _LOAD_GLOBAL_SHIFT),
                                           (found, _GLOBAL_OPS, 0), (maybe, _NAME_OPS, 0)):
            for opcode in opcode_set:
                index = opcodes.find(opcode)
                while index != -1:
                    argument, back = arguments[index], index - 1
                    while back >= 0 and opcodes[back] == dis.EXTENDED_ARG:
                        argument |= arguments[back] << (8 * (index - back))
                        back -= 1
                    targets.add(names[argument >> shift])
                    index = opcodes.find(opcode, index + 1)
        stack.extend(const for const in current.co_consts if isinstance(const, CodeType))
    return found, maybe


def check_steps(graph: Graph, steps: Iterable[tuple[StepFunction, FunctionSpan]]) -> None:
    """Raise every isolation problem of the pipeline's steps at once (or nothing)."""
    errors: list[KaleError] = []
    for function, span in steps:
        errors.extend(_check_step(function, span, graph))
    errors.sort(key=lambda e: (e.location.file, e.location.line, e.location.column)
                if e.location else ("", 0, 0))
    raise_all(
        f"{{count}} problems in the steps of pipeline `{graph.options.display_name}`: steps run "
        "on their own on Kubeflow, so each may use only its arguments, builtins and what it "
        "imports inside its body",
        errors,
    )


def _suspicious_names(func: Any) -> set[str]:
    """Names the step's code takes from outside it, per its bytecode: what needs explaining."""
    code = func.__code__
    loaded, looked_up = code_globals(code)
    module = func.__globals__
    suspicious = {
        name for name in loaded
        if name != code.co_name and name not in RUNTIME_NAMES
        and (name in module or not hasattr(builtins, name))
    }
    suspicious.update(name for name in looked_up if name in module and name != code.co_name)
    suspicious.update(code.co_freevars)
    return suspicious


def _check_step(function: StepFunction, span: FunctionSpan, graph: Graph
                ) -> Iterator[KaleError]:
    func = function.func
    label = f"step `{func.__name__}`"
    def_location = SourceLocation(span.filename, span.def_line, span.indent)

    where = _placement_problem(span.filename, graph)
    if where:
        yield StepDefinitionError(f"{label} is defined {where}", location=def_location,
                                  fix=f"on Kubeflow a step sees only the project directory "
                                  f"{graph.project_root} (the folder of the pipeline's file); "
                                  "move the module that defines it under that directory")
    if inspect.iscoroutinefunction(func) or inspect.isasyncgenfunction(func):
        yield StepDefinitionError(f"{label} is `async def`", location=def_location,
                                  fix="define it with `def`; use asyncio.run(...) inside it if "
                                  "it needs to await")
    elif inspect.isgeneratorfunction(func):
        yield StepDefinitionError(f"{label} is a generator (it uses `yield`), and a generator "
                                  "cannot be passed to another step", location=def_location,
                                  fix="return a list (or another value) instead of yielding")
    code = func.__code__
    if code.co_posonlyargcount:
        yield StepDefinitionError(f"{label} has positional-only parameters (before `/`)",
                                  location=def_location,
                                  fix="remove the `/`: Kale passes a step's inputs by name, as "
                                  "Kubeflow does")
    if code.co_flags & (inspect.CO_VARARGS | inspect.CO_VARKEYWORDS):
        header = span.parse_header()
        for special, star in ((header.args.vararg, "*"), (header.args.kwarg, "**")):
            if special is not None:
                yield StepDefinitionError(
                    f"{label} collects arguments with `{star}{special.arg}`",
                    location=SourceLocation.of_node(special, span.filename),
                    fix="Kubeflow steps have named inputs: list every parameter by name")
    if func.__defaults__ or func.__kwdefaults__:
        # Default values are evaluated where the step is defined, so on Kubeflow too; any name
        # in the header other than the parameters' own is worth a precise look.
        names = span.header_names()
        parameters = code.co_varnames[: code.co_argcount + code.co_kwonlyargcount]
        plain = {"def", "async", code.co_name, "None", "True", "False", *parameters}
        # A parameter named twice is used in a default too (`lr=lr`): look closer.
        if names is None or set(names) - plain or any(names.count(p) > 1 for p in parameters):
            yield from _default_problems(func, span)
    if _suspicious_names(func):
        yield from _name_problems(function, graph, span)


def _name_problems(function: StepFunction, graph: Graph, span: FunctionSpan
                   ) -> Iterator[KaleError]:
    """Explain each outside name a step uses, from its source and its file's symbol table."""
    func = function.func
    parsed = span.parse()
    source = read_source(span.filename, func.__globals__)
    if parsed is None or source is None:
        return
    node = parsed[1]
    table = _function_table(source, node)
    if table is None:
        return
    module_names, closure_names = _external_names(table)
    closure_names |= set(func.__code__.co_freevars)
    module_names -= closure_names
    declared = _declared_globals(table)
    uses = _name_uses(node)
    label = f"step `{func.__name__}`"

    def at(target: ast.AST) -> SourceLocation:
        return SourceLocation.of_node(target, span.filename)

    for name in sorted(closure_names):
        use = uses.get(name, [node])[0]
        yield StepDefinitionError(
            f"{label} uses `{name}` from the function that encloses it",
            location=at(use),
            fix=f"pass `{name}` to the step as an argument, or define it inside `{func.__name__}`",
        )
    for name in sorted(module_names):
        if name == func.__code__.co_name or name in RUNTIME_NAMES or name not in uses:
            continue
        if name in declared and name not in func.__globals__:
            yield StepDefinitionError(
                f"{label} declares `global {name}` to create module state; steps share no "
                "module state on Kubeflow (each runs in its own container)",
                location=at(uses[name][0]),
                fix="return the value instead and pass it to the steps that need it",
            )
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


def _default_problems(func: Any, span: FunctionSpan) -> Iterator[KaleError]:
    header = span.parse_header()
    if header is None:
        return
    defaults = [*header.args.defaults, *(d for d in header.args.kw_defaults if d is not None)]
    for default in defaults:
        for name in sorted(_free_names(default)):
            if name in func.__globals__ or not hasattr(builtins, name):
                name_node = next(n for n in ast.walk(default)
                                 if isinstance(n, ast.Name) and n.id == name)
                yield StepDefinitionError(
                    f"a default value of step `{func.__name__}` uses `{name}`, which is defined "
                    "outside the step",
                    location=SourceLocation.of_node(name_node, span.filename),
                    fix=f"write the value itself as the default, or pass `{name}` as an "
                    "argument from the pipeline",
                )


def _free_names(expression: ast.expr) -> set[str]:
    """Names an expression reads from its surroundings (not those its own lambdas or
    comprehensions bind)."""
    table = symtable.symtable(ast.unparse(expression), "<default>", "eval")
    names = {symbol.get_name() for symbol in table.get_symbols() if symbol.is_referenced()}
    return names | _nested_globals(table)


def _module_name_problem(function: StepFunction, graph: Graph, source: SourceFile, name: str,
                         location: SourceLocation) -> KaleError | None:
    from kale.definitions import StepFunction

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
    if binding is None:
        star = next((s for s in source.tree.body if isinstance(s, ast.ImportFrom)
                     and any(alias.name == "*" for alias in s.names)), None)
        if star is not None:
            module = "." * star.level + (star.module or "")
            return StepDefinitionError(
                f"{label} uses `{name}`, which comes from `from {module} import *` (line "
                f"{star.lineno} of {file})",
                location=location,
                fix=f"import it inside {step}: `from {module} import {name}`",
            )
    if isinstance(value, StepFunction):
        return StepDefinitionError(
            f"{label} calls step `{name}` ({line}); on Kubeflow each step runs alone",
            location=location,
            fix=f"call `{name}` from the pipeline and pass its output to {step}, or move the "
            "shared code into a plain function in a module of the project",
        )
    if isinstance(binding, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) or \
            inspect.isfunction(value) or inspect.isclass(value) or inspect.isbuiltin(value):
        kind = "class" if inspect.isclass(value) else "function"
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
    what = "variable" if isinstance(value, (int, float, str, bytes, bool, list, dict, tuple,
                                             set, type(None))) else \
        f"{type(value).__name__} object"
    return StepDefinitionError(
        f"{label} uses `{name}`, a module-level {what} ({line})",
        location=location,
        fix=f"pass it to {step} as an argument (a pipeline parameter can carry it), or define "
        f"it inside {step}",
    )
