"""Static checks of step functions, and the module context each one needs to run on its own.

A step runs in a fresh process (a Kubeflow container, or a local process forked from a server
that never imported the script). It may use its arguments, builtins, what it imports or defines
in its body, and its module's imports, functions, classes and constants, which Kale runs before
it (``kale.graph.context`` picks the statements). What cannot exist in that process is reported
at once, with where it is used and how to fix it: a name from an enclosing function, a module
global the step assigns for other steps to see, a name only the ``__main__`` block or the
pipeline's run creates, a name defined nowhere.

The step's compiled code says exactly which global names it loads (a scan of its bytecode,
microseconds): a step that loads none, in a module without top-level setup code, needs no
context, and its module is not even parsed.

The runtime contract these checks assume (``kale.runtime`` must keep it): a step's ``def`` is
compiled with ``from __future__ import annotations`` (so annotations are never evaluated), it is
bound under its own name (so a step may call itself), and ``__file__`` and ``__name__`` are those of
its module (``RUNTIME_NAMES``).
"""

from __future__ import annotations

import ast
import builtins
import dis
import functools
import inspect
import os
import re
import symtable
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from types import CodeType
from typing import TYPE_CHECKING, Any

from kale.errors import KaleError, SourceLocation, StepDefinitionError, raise_all
from kale.graph.model import RUNTIME_NAMES, CodeSegment, may_be_cell
from kale.source import FunctionNode, FunctionSpan, SourceFile, read_source, source_lines

if TYPE_CHECKING:
    from kale.definitions import StepFunction
    from kale.graph.model import Graph

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


@dataclass(frozen=True)
class StepContext:
    """What a step runs before its ``def``: module-level code, and its ``__future__``
    features."""

    segments: tuple[CodeSegment, ...] = ()
    futures: tuple[str, ...] = ()


def check_steps(graph: Graph, steps: Iterable[tuple[StepFunction, FunctionSpan]]
                ) -> dict[int, StepContext]:
    """Raise every problem of the pipeline's steps at once; else return each step function's
    module context, by ``id`` of the function."""
    errors: list[KaleError] = []
    contexts: dict[int, StepContext] = {}
    _placement_problem.cache_clear()  # files may have moved since the last pipeline was read
    for function, span in steps:
        found: list[KaleError] = []
        contexts[id(function)] = _check_step(function, span, graph, found)
        errors.extend(found)
    errors.sort(key=lambda e: (e.location.file, e.location.line, e.location.column)
                if e.location else ("", 0, 0))
    raise_all(
        f"{{count}} problems in the steps of pipeline `{graph.options.display_name}`: each step "
        "runs in a process of its own, with its arguments and the imports, functions and "
        "constants of its module, but nothing created while the script runs",
        errors,
    )
    return contexts


def may_have_setup(func: Any) -> bool:
    """Whether the function's module may hold setup statements or pipeline calls at its top
    level: a cheap look at its lines, so a module of self-contained steps is never parsed."""
    filename = func.__code__.co_filename
    if func.__module__ == "__main__" and may_be_cell(filename):
        return "IPython" in sys.modules
    lines = source_lines(filename, func.__globals__)
    cached = _setup_seen.get(filename)
    if cached is None or cached[0] is not lines:  # linecache keeps the list while unchanged
        cached = (lines, _MAYBE_SETUP.search("".join(lines)) is not None)
        _setup_seen[filename] = cached
    return cached[1]


_setup_seen: dict[str, tuple[list[str], bool]] = {}


# A top-level line that may start a setup statement or a pipeline call (`x.y(...)`,
# `x[...] = `): only a module with one needs reading when no step uses a module-level name.
_MAYBE_SETUP = re.compile(r"^[A-Za-z_][\w.]*\s*[.(\[]", re.MULTILINE)


def _needed_names(func: Any, span: FunctionSpan) -> set[str]:
    """The module-level names a step's code (and its parameters' defaults) reads, per its
    bytecode: what its module context must provide. Builtins the module does not redefine are
    left out."""
    code = func.__code__
    loaded, looked_up = code_globals(code)
    module = func.__globals__
    names = {name for name in loaded
             if name != code.co_name and name not in RUNTIME_NAMES
             and (name in module or not hasattr(builtins, name))}
    names.update(name for name in looked_up if name in module and name != code.co_name)
    if func.__defaults__ or func.__kwdefaults__:
        # Defaults are evaluated where the step is defined, so in its module's context too. A
        # cheap look at the header's identifiers first: most defaults are literals.
        words = span.header_names()
        parameters = code.co_varnames[: code.co_argcount + code.co_kwonlyargcount]
        plain = {"def", "async", code.co_name, "None", "True", "False", *parameters}
        header = None
        if words is None or set(words) - plain or any(words.count(p) > 1 for p in parameters):
            header = span.parse_header()
        if header is not None:
            defaults = [*header.args.defaults,
                        *(d for d in header.args.kw_defaults if d is not None)]
            for default in defaults:
                names.update(name for name in _free_names(default)
                             if name in module or not hasattr(builtins, name))
    return names


def _check_step(function: StepFunction, span: FunctionSpan, graph: Graph,
                errors: list[KaleError]) -> StepContext:
    func = function.func
    label = f"step `{func.__name__}`"
    def_location = SourceLocation(span.filename, span.def_line, span.indent)

    where = _placement_problem(span.filename, graph.filename, graph.project_root)
    if where:
        errors.append(StepDefinitionError(
            f"{label} is defined {where}", location=def_location,
            fix=f"on Kubeflow a step sees only the project directory {graph.project_root} (the "
            "folder of the pipeline's file); move the module that defines it under that "
            "directory"))
    if inspect.iscoroutinefunction(func) or inspect.isasyncgenfunction(func):
        errors.append(StepDefinitionError(
            f"{label} is `async def`", location=def_location,
            fix="define it with `def`; use asyncio.run(...) inside it if it needs to await"))
    elif inspect.isgeneratorfunction(func):
        errors.append(StepDefinitionError(
            f"{label} is a generator (it uses `yield`), and a generator cannot be passed to "
            "another step", location=def_location,
            fix="return a list (or another value) instead of yielding"))
    code = func.__code__
    if code.co_posonlyargcount:
        errors.append(StepDefinitionError(
            f"{label} has positional-only parameters (before `/`)", location=def_location,
            fix="remove the `/`: Kale passes a step's inputs by name, as Kubeflow does"))
    if code.co_flags & (inspect.CO_VARARGS | inspect.CO_VARKEYWORDS):
        header = span.parse_header()
        for special, star in ((header.args.vararg, "*"), (header.args.kwarg, "**")):
            if special is not None:
                errors.append(StepDefinitionError(
                    f"{label} collects arguments with `{star}{special.arg}`",
                    location=SourceLocation.of_node(special, span.filename),
                    fix="Kubeflow steps have named inputs: list every parameter by name"))
    from kale.definitions import PipelineDefinition as PipelineFunction

    needed = _needed_names(func, span)
    if not needed and not code.co_freevars and not may_have_setup(func):
        return StepContext()  # a self-contained step: its module is not even read
    uses, locations = _use_locations(span, needed | set(code.co_freevars))
    if uses:  # names only in annotations are never evaluated: the def has future annotations
        needed = {name for name in needed if name in uses}
    scope_problems = list(_scope_problems(func, span, uses))
    errors.extend(error for error, _ in scope_problems)
    needed -= set(code.co_freevars) | {name for _, name in scope_problems}
    from kale.graph.context import iter_futures, module_index

    index = module_index(func)
    if index is None:
        return StepContext()
    for name in sorted(needed):
        value = func.__globals__.get(name)
        if name in index.pipelines or isinstance(value, PipelineFunction):
            runs = "is a pipeline" if isinstance(value, PipelineFunction) else \
                "runs a pipeline"
            errors.append(StepDefinitionError(
                f"{label} uses `{name}`, which {runs}; a step cannot start a pipeline",
                location=locations[name],
                fix="call the steps of that pipeline from this pipeline's body instead"))
            needed.discard(name)
    package = func.__module__.rpartition(".")[0] if func.__module__ != "__main__" else None
    chosen, problems = index.slice({name: locations[name] for name in needed}, package,
                                   func.__name__)
    errors.extend(problems)
    return StepContext(index.segments(chosen), tuple(iter_futures(index)))


def _use_locations(span: FunctionSpan, names: set[str]
                   ) -> tuple[dict[str, list[ast.AST]], dict[str, SourceLocation]]:
    """Where in the step each name is first used (the ``def`` line when it cannot be told)."""
    fallback = SourceLocation(span.filename, span.def_line, span.indent)
    parsed = span.parse()
    if parsed is None:
        return {}, dict.fromkeys(names, fallback)
    uses = _name_uses(parsed[1])
    header = span.parse_header()
    if header is not None:  # names in defaults
        for default in [*header.args.defaults, *(d for d in header.args.kw_defaults if d)]:
            for node in ast.walk(default):
                if isinstance(node, ast.Name):
                    uses.setdefault(node.id, []).append(node)
    return uses, {name: SourceLocation.of_node(uses[name][0], span.filename)
                  if uses.get(name) else fallback for name in names}


def _scope_problems(func: Any, span: FunctionSpan, uses: dict[str, list[ast.AST]]
                    ) -> Iterator[tuple[KaleError, str]]:
    """Names a step takes from an enclosing function, and module globals it assigns: each
    problem with its name."""
    label = f"step `{func.__name__}`"
    fallback = SourceLocation(span.filename, span.def_line, span.indent)

    def at(name: str) -> SourceLocation:
        found = uses.get(name)
        return SourceLocation.of_node(found[0], span.filename) if found else fallback

    for name in sorted(func.__code__.co_freevars):
        yield StepDefinitionError(
            f"{label} uses `{name}` from the function that encloses it",
            location=at(name),
            fix=f"pass `{name}` to the step as an argument, or define it inside "
            f"`{func.__name__}`"), name
    parsed = span.parse()
    source = read_source(span.filename, func.__globals__)
    if parsed is None or source is None:
        return
    table = _function_table(source, parsed[1])
    if table is None:
        return
    for scope in (table, *_nested_tables(table)):
        for symbol in scope.get_symbols():
            if symbol.is_declared_global() and symbol.is_assigned():
                name = symbol.get_name()
                found = [n for n in uses.get(name, []) if isinstance(n, ast.Global)]
                yield StepDefinitionError(
                    f"{label} assigns the module-level `{name}` (`global {name}`); each step "
                    "runs in a process of its own, so no other step would see the new value",
                    location=SourceLocation.of_node(found[0], span.filename) if found
                    else at(name),
                    fix="return the value instead and pass it to the steps that need it"), name


# Asked for every step, mostly of the same file: settled once per file (realpath walks the
# path a component at a time).
@functools.lru_cache(maxsize=4096)
def _placement_problem(filename: str, pipeline_file: str, project_root: str) -> str | None:
    if not os.path.isfile(filename):
        return None if not os.path.isfile(pipeline_file) else "outside any file of the project"
    path = os.path.realpath(filename)
    root = os.path.realpath(project_root)
    if os.path.commonpath([path, root]) != root:
        return f"in {path}, outside the project directory {root}"
    return None


def _free_names(expression: ast.expr) -> set[str]:
    """Names an expression reads from its surroundings (not those its own lambdas or
    comprehensions bind)."""
    table = symtable.symtable(ast.unparse(expression), "<default>", "eval")
    names = {symbol.get_name() for symbol in table.get_symbols() if symbol.is_referenced()}
    return names | _nested_globals(table)


