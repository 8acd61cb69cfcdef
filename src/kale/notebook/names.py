"""Which names a piece of notebook code reads, binds and mentions: the static analysis behind
the values that flow between a tagged notebook's steps.

Open-source Kale runs pyflakes over each step's code and takes its "undefined name" reports as
the names the step needs from the steps before it. This module computes the same thing with
``ast`` alone (pyflakes is not a dependency of Kale): a name read at module level before any
statement of the code binds it, or read inside a function of the code (functions run later, so
a binding anywhere in the code counts, as pyflakes judges them) without being bound there.
Class bodies and comprehensions run at once and are judged where they stand.
"""

from __future__ import annotations

import ast
import builtins
from dataclasses import dataclass, field

#: Names every module has, which no step needs to be given.
MODULE_NAMES = frozenset({"__name__", "__file__", "__doc__", "__builtins__", "__spec__",
                          "__loader__", "__package__", "__annotations__"})
BUILTINS = frozenset(dir(builtins)) | MODULE_NAMES

_DEFERRED = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)
_SCOPES = (*_DEFERRED, ast.ClassDef, ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)


@dataclass
class Names:
    """What a block of module-level code does with names.

    ``reads``: each name it needs from outside, with the node of its first such use;
    ``binds``: every name its module-level statements bind (including inside ``if``/``for``/
    ``try`` blocks, not inside functions or classes); ``mentions``: every name it loads
    anywhere; ``functions``: for each function it defines at module level, the names that
    function's body needs from outside it.
    """

    reads: dict[str, ast.AST] = field(default_factory=dict)
    binds: set[str] = field(default_factory=set)
    mentions: set[str] = field(default_factory=set)
    functions: dict[str, set[str]] = field(default_factory=dict)


def _target_names(node: ast.AST) -> set[str]:
    """The names a binding target (or any node holding ``Store`` names) binds, outside nested
    scopes."""
    names: set[str] = set()
    for child in _walk_here(node):
        if isinstance(child, ast.Name) and isinstance(child.ctx, (ast.Store, ast.Del)):
            names.add(child.id)
    return names


def _walk_here(node: ast.AST):  # type: ignore[no-untyped-def]
    """``ast.walk`` that does not enter nested scopes (it yields the scope node itself)."""
    todo = [node]
    while todo:
        current = todo.pop()
        yield current
        if current is not node and isinstance(current, _SCOPES):
            continue
        todo.extend(ast.iter_child_nodes(current))


def _bound_in(body: list[ast.stmt] | ast.AST) -> set[str]:
    """Every name a scope's own statements bind (assignments, imports, defs, ``for`` and
    ``with`` targets, ``except ... as``, walrus, ``match`` captures), outside nested scopes."""
    nodes = body if isinstance(body, list) else [body]
    names: set[str] = set()
    for statement in nodes:
        if isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(statement.name)  # its body is a scope of its own
            continue
        for child in _walk_here(statement):
            if isinstance(child, ast.Name) and isinstance(child.ctx, (ast.Store, ast.Del)):
                names.add(child.id)
            elif isinstance(child, (ast.Import, ast.ImportFrom)):
                for alias in child.names:
                    if alias.name != "*":
                        names.add((alias.asname or alias.name).split(".")[0])
            elif isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) or (
                    isinstance(child, ast.ExceptHandler) and child.name):
                names.add(child.name)  # type: ignore[arg-type]
            elif type(child).__name__ in ("MatchAs", "MatchStar") and getattr(child, "name",
                                                                             None):
                names.add(child.name)  # type: ignore[attr-defined]
            elif type(child).__name__ == "MatchMapping" and getattr(child, "rest", None):
                names.add(child.rest)  # type: ignore[attr-defined]
    return names


def _arguments(node: ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda) -> set[str]:
    args = node.args
    every = [*args.posonlyargs, *args.args, *args.kwonlyargs]
    names = {arg.arg for arg in every}
    if args.vararg:
        names.add(args.vararg.arg)
    if args.kwarg:
        names.add(args.kwarg.arg)
    return names


def _loads(node: ast.AST) -> list[ast.Name]:
    return [child for child in _walk_here(node)
            if isinstance(child, ast.Name) and isinstance(child.ctx, ast.Load)]


def scope_free(node: ast.AST) -> dict[str, ast.AST]:
    """The names a nested scope (function, lambda, class body, comprehension) reads from the
    scopes around it, each with its first use; its decorators, defaults and base classes are
    read where it is defined, and counted here too."""
    free: dict[str, ast.AST] = {}
    outside: list[ast.AST] = []
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        outside.extend(node.decorator_list)
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
        outside.extend(node.args.defaults)
        outside.extend(default for default in node.args.kw_defaults if default is not None)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            outside.extend(arg.annotation for arg in (*node.args.args, *node.args.kwonlyargs,
                                                      *node.args.posonlyargs)
                           if arg.annotation is not None)
            if node.returns is not None:
                outside.append(node.returns)
        local = _arguments(node)
        body: list[ast.AST] = list(node.body) if isinstance(node.body, list) else [node.body]
        declared_global = {name for statement in body for child in _walk_here(statement)
                           if isinstance(child, (ast.Global, ast.Nonlocal))
                           for name in child.names}
        local |= _bound_in(body) - declared_global  # type: ignore[arg-type]
    elif isinstance(node, ast.ClassDef):
        outside.extend(node.bases)
        outside.extend(keyword.value for keyword in node.keywords)
        body = list(node.body)
        local = set()  # class-level names are judged in order, as the body runs
    else:  # a comprehension: its targets are its own, its first iterator is read outside
        generators = node.generators  # type: ignore[attr-defined]
        local = set().union(*(_target_names(generator.target) for generator in generators))
        body = [node]
    for part in outside:
        for name in _loads(part):
            free.setdefault(name.id, name)
        for nested in _nested(part):
            for name, at in scope_free(nested).items():
                free.setdefault(name, at)
    if isinstance(node, ast.ClassDef):
        seen: set[str] = set()
        for statement in body:
            for name, at in _statement_reads(statement).items():
                if name not in seen:
                    free.setdefault(name, at)
            seen |= _bound_in([statement])  # type: ignore[list-item]
        return free
    for part in body:
        if part is node:  # a comprehension: walk its pieces, not itself again
            pieces: list[ast.AST] = [child for child in ast.iter_child_nodes(node)]
        else:
            pieces = [part]
        for piece in pieces:
            for name in _loads(piece):
                if name.id not in local:
                    free.setdefault(name.id, name)
            for nested in _nested(piece):
                for name, at in scope_free(nested).items():
                    if name not in local:
                        free.setdefault(name, at)
    return free


def _nested(node: ast.AST) -> list[ast.AST]:
    """The scopes directly inside ``node`` (``node`` itself when it is one)."""
    return [child for child in _walk_here(node) if isinstance(child, _SCOPES)]


def _statement_reads(statement: ast.stmt) -> dict[str, ast.AST]:
    """Names one statement reads (its nested scopes' free names included), before its own
    bindings take effect."""
    if isinstance(statement, _SCOPES):
        return scope_free(statement)
    reads: dict[str, ast.AST] = {}
    for name in _loads(statement):
        reads.setdefault(name.id, name)
    if isinstance(statement, ast.AugAssign) and isinstance(statement.target, ast.Name):
        reads.setdefault(statement.target.id, statement.target)
    for nested in _nested(statement):
        if nested is statement and not isinstance(statement, _SCOPES):
            continue
        for name, at in scope_free(nested).items():
            reads.setdefault(name, at)
    return reads


def analyze(tree: ast.Module, bound: set[str] | frozenset[str] = frozenset()) -> Names:
    """The names of a module's code; ``bound`` are names defined before it runs (they are
    never reads)."""
    result = Names()
    have = set(bound)
    deferred: list[dict[str, ast.AST]] = []

    def visit(statements: list[ast.stmt]) -> None:
        for statement in statements:
            for name in _loads(statement):
                result.mentions.add(name.id)
            if isinstance(statement, (ast.If, ast.For, ast.AsyncFor, ast.While, ast.With,
                                      ast.AsyncWith, ast.Try)) or \
                    type(statement).__name__ in ("TryStar", "Match"):
                _compound(statement)
                continue
            if isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef)):
                free = scope_free(statement)
                result.functions[statement.name] = set(free)
                deferred.append(free)
                for nested in _nested(statement):
                    result.mentions |= {n.id for n in _loads(nested)}
            else:
                for name, at in _statement_reads(statement).items():
                    if name not in have:
                        result.reads.setdefault(name, at)
            new = _bound_in([statement])
            have.update(new)
            result.binds.update(new)

    def _compound(statement: ast.stmt) -> None:
        # The header (test, iterator, context managers) is read first, then the blocks, in
        # order: a name bound in one branch counts as bound after it, as pyflakes counts it.
        headers: list[ast.AST] = []
        blocks: list[list[ast.stmt]] = []
        if isinstance(statement, (ast.If, ast.While)):
            headers, blocks = [statement.test], [statement.body, statement.orelse]
        elif isinstance(statement, (ast.For, ast.AsyncFor)):
            headers, blocks = [statement.iter], [statement.body, statement.orelse]
        elif isinstance(statement, (ast.With, ast.AsyncWith)):
            headers = [item.context_expr for item in statement.items]
            blocks = [statement.body]
        elif type(statement).__name__ == "Match":
            headers = [statement.subject]  # type: ignore[attr-defined]
            blocks = [case.body for case in statement.cases]  # type: ignore[attr-defined]
            for case in statement.cases:  # type: ignore[attr-defined]
                if case.guard is not None:
                    headers.append(case.guard)
        else:  # try
            blocks = [statement.body]  # type: ignore[attr-defined]
            blocks += [handler.body for handler in statement.handlers]  # type: ignore
            blocks += [statement.orelse, statement.finalbody]  # type: ignore[attr-defined]
            headers = [handler.type for handler in statement.handlers  # type: ignore
                       if handler.type is not None]
        for header in headers:
            for name, at in _statement_reads(ast.Expr(value=header)).items():  # type: ignore
                if name not in have:
                    result.reads.setdefault(name, at)
        targets: set[str] = set()
        if isinstance(statement, (ast.For, ast.AsyncFor)):
            targets = _target_names(statement.target)
        elif isinstance(statement, (ast.With, ast.AsyncWith)):
            for item in statement.items:
                if item.optional_vars is not None:
                    targets |= _target_names(item.optional_vars)
        elif type(statement).__name__ == "Match":
            for case in statement.cases:  # type: ignore[attr-defined]
                targets |= _bound_in(case.pattern)
        elif isinstance(statement, ast.Try) or type(statement).__name__ == "TryStar":
            targets = {handler.name for handler in statement.handlers  # type: ignore
                       if handler.name}
        have.update(targets)
        result.binds.update(targets)
        for block in blocks:
            visit(block)

    visit(list(tree.body))
    for free in deferred:  # functions run later: a binding anywhere in the code counts
        for name, at in free.items():
            if name not in have:
                result.reads.setdefault(name, at)
    for name in BUILTINS:
        result.reads.pop(name, None)
    return result
