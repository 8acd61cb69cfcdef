"""The tests of an ``if`` chain in a pipeline body: which expressions they may be, and the small
function a condition step runs to evaluate them.

A test is evaluated by Python, in a step of its own (locally and on Kubeflow alike), so it means
exactly what it means in Python: any comparison (chained too), ``and``/``or``/``not``,
arithmetic, items and attributes of values, and a few built-in functions. What it may read are
the pipeline's values: parameters, step outputs, loop variables, literals. What it may not do is
call a step or anything else with effects, which would run outside any step.
"""

from __future__ import annotations

import ast
from collections.abc import Sequence

#: Built-in functions a test may call: pure, and about values a step returned.
TEST_BUILTINS = frozenset({"len", "abs", "min", "max", "round", "int", "float", "str", "bool",
                           "sum", "any", "all", "isinstance", "type", "sorted", "list", "tuple",
                           "set", "dict"})

_ALLOWED = (ast.Compare, ast.BoolOp, ast.UnaryOp, ast.BinOp, ast.Constant, ast.Name,
            ast.Subscript, ast.Attribute, ast.Tuple, ast.List, ast.Set, ast.Dict, ast.Slice,
            ast.Load, ast.Call, ast.IfExp, ast.keyword, ast.boolop, ast.cmpop, ast.unaryop,
            ast.operator, ast.expr_context)


def test_problem(node: ast.expr) -> tuple[ast.AST, str, str] | None:
    """The first part of a test that cannot be evaluated as a condition: (node, what, fix)."""
    for child in ast.walk(node):
        if isinstance(child, ast.Call):
            if not (isinstance(child.func, ast.Name) and child.func.id in TEST_BUILTINS):
                return (child, "calls a function in the condition of an `if`",
                        "call steps on lines of their own and test their results: `ok = "
                        "check(x)`, then `if ok:`; a test may use only "
                        + ", ".join(sorted(TEST_BUILTINS - {"type"})))
        elif isinstance(child, (ast.NamedExpr,)):
            return child, "assigns in the condition of an `if`", \
                "bind the step's output on a line of its own before the `if`"
        elif isinstance(child, (ast.Lambda, ast.ListComp, ast.SetComp, ast.DictComp,
                                ast.GeneratorExp, ast.Await, ast.Yield, ast.YieldFrom,
                                ast.JoinedStr, ast.FormattedValue, ast.Starred)):
            return child, "is more than a condition can hold", \
                "compute the value in a step and test its result"
        elif not isinstance(child, _ALLOWED):
            return child, "is not supported in the condition of an `if`", \
                "compute the value in a step and test its result"
    return None


def condition_source(function_name: str, tests: Sequence[tuple[int, str]],
                     parameters: Sequence[str], first_line: int) -> tuple[str, int]:
    """The source of a condition step's function, and the line of its ``def``.

    Each test sits on the line of the file it was written on, so a test that fails (a
    comparison of a str and an int, the truth of an array) is reported at the user's ``if``;
    ``first_line`` is where the chain starts. Tests written on one line (``x = a() if t else
    b() if u else c()``) are evaluated by one statement on that line. Returns the index of the
    first test that holds, or the number of tests (the ``else``, or nothing) when none does."""
    def_line = max(1, first_line - 1)
    lines = [f"def {function_name}({', '.join(parameters)}):"]
    groups: list[list[tuple[int, int, str]]] = []  # tests by line: (line, index, text)
    for index, (line, text) in enumerate(tests):
        if groups and groups[-1][-1][0] >= line:
            groups[-1].append((line, index, text))
        else:
            groups.append([(line, index, text)])
    for group in groups:
        while def_line + len(lines) < group[0][0]:
            lines.append("")
        if len(group) == 1:
            _, index, text = group[0]
            lines.append(f"    if {text}: return {index}")
        else:
            chosen = " else ".join(f"{index} if ({text})" for _, index, text in group)
            lines.append(f"    if (_kale_branch := {chosen} else None) is not None: "
                         "return _kale_branch")
    lines.append(f"    return {len(tests)}")
    return "\n".join(lines) + "\n", def_line
