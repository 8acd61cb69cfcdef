"""From the source of a ``@pipeline`` function to a Graph, following the pipeline language's rules.

The body is read, never run. It may hold a docstring and these statements: ``step(...)``,
``x = step(...)`` and ``a, b = step(...)``, whose arguments are pipeline parameters, outputs of
earlier steps, loop variables or literal constants; ``if``/``elif``/``else`` on those values;
``for x in items:`` over a step's output, a list parameter or a literal list; and
``results = [step(x) for x in items]``, which collects one result per item. Names may be
re-bound: a use reads the latest binding, so ``x = clean(x)`` is a new step fed by the previous
``x``, never a cycle. Everything else is reported, all at once, with its file, line, the source
line and how to fix it.
"""

from __future__ import annotations

import ast
import builtins
import dataclasses
import inspect
import os
from collections.abc import Callable, Mapping
from typing import Any

from kale.containers import ContainerStep
from kale.definitions import PipelineDefinition, StepFunction
from kale.errors import PipelineDefinitionError, SourceLocation, raise_all
from kale.graph.checks import check_steps, return_arity
from kale.graph.conditions import TEST_BUILTINS, condition_source, test_problem
from kale.graph.model import (
    PARAMETER_TYPES,
    Argument,
    Branch,
    CollectedRef,
    ConditionInfo,
    Constant,
    ContainerInfo,
    Graph,
    ItemRef,
    Loop,
    OneOfRef,
    OutputRef,
    Parameter,
    ParameterRef,
    Scope,
    Step,
    StepSource,
    ValueSource,
    short_repr,
    signature_text,
    value_problem,
)
from kale.loader import SCRIPT_MODULE
from kale.options import PipelineOptions, StepOptions
from kale.source import FunctionSpan, function_source, function_span

_UNSUPPORTED_BLOCKS = {
    ast.AsyncFor: ("`async for`", "use `for x in items:`; each iteration is a step of its own"),
    ast.While: ("`while`", "a pipeline's loops run a known number of times, one task per item "
                "(as Kubeflow's ParallelFor does): loop with `for x in items:` over a step's "
                "output or a list parameter, or put the `while` inside a step"),
    ast.With: ("`with`", "put the `with` block inside the step that needs it"),
    ast.AsyncWith: ("`async with`", "put the `with` block inside the step that needs it"),
    ast.Try: ("`try`", "catch the error inside the step; a step that fails is retried with "
              "`retry_count=`, and the steps that need it are skipped"),
    ast.Match: ("`match`", "use `if`/`elif`/`else` on the value"),
}
if hasattr(ast, "TryStar"):  # Python 3.11+
    _UNSUPPORTED_BLOCKS[ast.TryStar] = _UNSUPPORTED_BLOCKS[ast.Try]

_BODY_RULE = (
    "a pipeline body can only call steps (`step(...)`, `x = step(...)`, `a, b = step(...)`), "
    "branch with `if` and loop with `for`"
)


class _Unusable:
    """A name that cannot be used: left by a statement that failed (later uses are not
    reported a second time), or bound where it is not visible (``message``/``fix`` say why)."""

    def __init__(self, message: str | None = None, fix: str = "") -> None:
        self.message = message
        self.fix = fix


_UNUSABLE = _Unusable()


def project_root_of(filename: str) -> str:
    """The project directory: the folder of the pipeline's file (the working directory for a
    pipeline defined in a notebook or an interactive session). A script run through a symbolic
    link belongs to the folder of the file it links to, where Python imports its siblings from."""
    # A notebook cell is not a file, except under ipykernel's temp folder, where its debugger
    # writes cells: the kernel's working directory is the project then too.
    if os.path.isfile(filename) and not os.path.basename(os.path.dirname(filename)).startswith(
            "ipykernel_"):
        folder = os.path.dirname(os.path.realpath(filename))
        # A module Kale generated in a project's own folder (`.kale/notebooks/<notebook>.py`,
        # kale.notebook) belongs to that project: the notebook's folder, with its data files.
        head, tail = os.path.split(folder)
        if tail == "notebooks" and os.path.basename(head) == ".kale":
            return os.path.dirname(head)
        return folder
    return os.getcwd()


def parse_pipeline(func: Callable[..., Any], options: PipelineOptions) -> Graph:
    """Build the Graph of a ``@pipeline`` function, or raise a ``DefinitionError``."""
    found = function_source(func)
    if found is None:
        raise PipelineDefinitionError(
            f"Kale cannot read the source of pipeline `{func.__name__}`",
            location=SourceLocation(func.__code__.co_filename, func.__code__.co_firstlineno),
            fix="define the pipeline in a .py file or a notebook cell, not in an interactive "
            "prompt or with exec()",
        )
    text, node = found
    parser = _Parser(func, func.__code__.co_filename, text, node, options, _namespace_of(func))
    return parser.parse()


def _namespace_of(func: Callable[..., Any]) -> Mapping[str, Any]:
    """What names mean in the pipeline body: enclosing function variables, module, builtins."""
    namespace: dict[str, Any] = dict(vars(builtins))
    namespace.update(func.__globals__)
    closure = func.__closure__ or ()
    for name, cell in zip(func.__code__.co_freevars, closure, strict=False):
        try:
            namespace[name] = cell.cell_contents
        except ValueError:  # an enclosing variable not assigned yet
            continue
    return namespace



def _plain_binding(func: Any, positional: list[Any], keywords: dict[str, Any]
                   ) -> dict[str, Any] | None:
    """The arguments of a call of a plain function (no ``*args``, ``**kwargs`` or
    positional-only parameters, nothing wrapped) that binds, by parameter in signature order,
    as ``inspect.Signature.bind(...).arguments`` has them; None for any other function or a
    call that does not bind (``inspect`` then says why). Reading a signature costs more than
    the rest of a step's call, and a pipeline of distinct steps reads each once."""
    code = getattr(func, "__code__", None)
    if code is None or code.co_flags & (inspect.CO_VARARGS | inspect.CO_VARKEYWORDS) or \
            code.co_posonlyargcount or hasattr(func, "__wrapped__") or \
            hasattr(func, "__signature__") or not inspect.isfunction(func):
        return None
    names = code.co_varnames[: code.co_argcount]
    keyword_only = code.co_varnames[code.co_argcount : code.co_argcount +
                                    code.co_kwonlyargcount]
    if len(positional) > len(names):
        return None
    given = dict(zip(names, positional, strict=False))
    for name in keywords:
        if name in given or (name not in names and name not in keyword_only):
            return None
    defaults = len(func.__defaults__ or ())
    optional_keywords = func.__kwdefaults__ or {}
    if any(name not in given and name not in keywords
           for name in names[: len(names) - defaults]) or \
            any(name not in keywords and name not in optional_keywords for name in keyword_only):
        return None
    return {name: given[name] if name in given else keywords[name]
            for name in (*names, *keyword_only) if name in given or name in keywords}


class _Parser:
    def __init__(self, func: Callable[..., Any], filename: str, text: str, node: ast.AST,
                 options: PipelineOptions, namespace: Mapping[str, Any]) -> None:
        self.func = func
        self.filename = filename
        self.source_text = text
        self.node = node
        self.options = options
        self.namespace = namespace
        self.errors: list[PipelineDefinitionError] = []
        self.bindings: dict[str, ValueSource | _Unusable] = {}
        self.steps: list[Step] = []
        self.step_names: set[str] = set()
        self.step_functions: dict[int, Any] = {}
        self.step_function_of: dict[str, int] = {}  # step name -> id of its function
        self.spans: dict[int, FunctionSpan | None] = {}
        self.signatures: dict[int, inspect.Signature] = {}  # read once, when needed
        self.scopes: list[Scope] = []  # the blocks around the statement being read
        self.loops: list[Loop] = []
        self.conditions = 0

    # -- errors -------------------------------------------------------------------------------

    def where(self, node: ast.AST) -> SourceLocation:
        return SourceLocation.of_node(node, self.filename)

    def error(self, node: ast.AST, message: str, fix: str) -> None:
        self.errors.append(PipelineDefinitionError(message, location=self.where(node), fix=fix))

    def text(self, node: ast.AST) -> str:
        text = ast.get_source_segment(self.source_text, node) or ""
        return text if len(text) <= 60 and "\n" not in text else text.split("\n")[0][:57] + "..."

    # -- the whole function -------------------------------------------------------------------

    def parse(self) -> Graph:
        node = self.node
        pipeline = f"pipeline `{node.name}`"
        if isinstance(node, ast.AsyncFunctionDef):
            self.error(node, f"{pipeline} is `async def`",
                       "define it with `def`: steps run in their own processes, not as coroutines")
        parameters = self.parameters(node)
        self.parameter_list = parameters
        body = list(node.body)
        docstring = ast.get_docstring(node)
        if docstring is not None:
            body = body[1:]
        for statement in body:
            self.statement(statement)
        if not any(step.condition is None for step in self.steps) and not self.errors:
            self.error(node, f"{pipeline} calls no steps",
                       "call at least one @step function in its body")
        raise_all(f"{{count}} problems in {pipeline}", self.errors)
        graph = Graph(
            options=self.options,
            parameters=tuple(parameters),
            steps=tuple(self.steps),
            filename=self.filename,
            line=node.lineno,
            project_root=project_root_of(self.filename),
            docstring=docstring,
            loops=tuple(self.loops),
        )
        contexts = check_steps(graph, [(func, self.spans[key])
                                       for key, func in self.step_functions.items()])
        if not any(context.segments or context.futures for context in contexts.values()):
            return graph
        steps = []
        for step in graph.steps:
            if step.condition is not None or step.container is not None:
                steps.append(step)
                continue
            context = contexts[self.step_function_of[step.name]]
            steps.append(dataclasses.replace(step, function=dataclasses.replace(
                step.function, context=context.segments, futures=context.futures)))
        return dataclasses.replace(graph, steps=tuple(steps))

    def parameters(self, node: ast.FunctionDef) -> list[Parameter]:
        args = node.args
        for special, what in ((args.vararg, "*"), (args.kwarg, "**")):
            if special is not None:
                self.error(special, f"pipeline parameters cannot be collected with `{what}"
                           f"{special.arg}`", "list every parameter by name, with a default")
        for arg in args.posonlyargs:
            self.error(arg, f"parameter `{arg.arg}` is positional-only",
                       "remove the `/` from the pipeline's signature")
        signature = inspect.signature(self.func)
        nodes = {arg.arg: arg for arg in args.args + args.kwonlyargs + args.posonlyargs}
        parameters = []
        for name, parameter in signature.parameters.items():
            if name not in nodes or parameter.kind in (parameter.VAR_POSITIONAL,
                                                       parameter.VAR_KEYWORD):
                continue
            arg = nodes[name]
            found = self.parameter(arg, parameter)
            if found is not None:
                parameters.append(found)
                self.bindings[name] = ParameterRef(name)
            else:
                self.bindings[name] = _UNUSABLE
        return parameters

    def parameter(self, arg: ast.arg, parameter: inspect.Parameter) -> Parameter | None:
        name = arg.arg
        default = parameter.default
        types = "str, int, float, bool, list or dict"
        if default is inspect.Parameter.empty:
            self.error(arg, f"pipeline parameter `{name}` has no default value",
                       f"give it a default, which also fixes its type: `{name}=...` "
                       f"(a {types}); the default is what the pipeline runs with unless a run "
                       "overrides it")
            return None
        kind = _parameter_type(default)
        if kind is None:
            self.error(arg, f"pipeline parameter `{name}` defaults to {short_repr(default)}, a "
                       f"{type(default).__name__}; Kubeflow parameters are {types} values",
                       f"use a default of one of those types (e.g. `{name}=''` or `{name}=0`), "
                       "or build the value inside a step from a simpler parameter")
            return None
        problem = value_problem(default)
        if problem is not None:
            self.error(arg, f"the default of pipeline parameter `{name}` {problem.what}",
                       problem.fix)
            return None
        annotated = _annotation_type(parameter.annotation)
        if annotated is not None and not isinstance(default, PARAMETER_TYPES[annotated]):
            self.error(arg, f"pipeline parameter `{name}` is annotated `{annotated}` but its "
                       f"default {short_repr(default)} is a {kind}",
                       "make the annotation and the default agree")
            return None
        if annotated == "float":
            kind, default = "float", float(default)
        if isinstance(default, tuple):
            default = list(default)
        return Parameter(name, kind, default, self.where(arg))

    # -- statements ---------------------------------------------------------------------------

    def statement(self, node: ast.stmt) -> None:
        if isinstance(node, ast.Expr):
            if isinstance(node.value, ast.Call):
                self.call(node.value, targets=(), unpacks=False, statement=node)
            elif isinstance(node.value, ast.Await):
                self.error(node, "`await` is not supported in a pipeline body",
                           "call steps directly; a step can use asyncio.run(...) inside")
            elif isinstance(node.value, ast.ListComp):
                self.error(node, f"the results of `{self.text(node)}` are not kept",
                           "to run a step once per item, write `for x in items:` and call it "
                           "in the loop; to collect the results, bind them: `results = "
                           "[step(x) for x in items]`")
            elif isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
                self.error(node, "a string in the middle of a pipeline body does nothing",
                           "use a `#` comment, or move the docstring to the first line")
            else:
                self.error(node, f"`{self.text(node)}` is not a step call", _BODY_RULE)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            self.assignment(node)
        elif isinstance(node, ast.Pass):
            return
        elif isinstance(node, ast.If):
            self.if_chain(node)
        elif isinstance(node, ast.For):
            self.for_loop(node)
        elif isinstance(node, (ast.Break, ast.Continue)):
            word = "break" if isinstance(node, ast.Break) else "continue"
            self.error(node, f"`{word}` is not supported in a pipeline body: every iteration "
                       "of a pipeline's loop runs, in parallel",
                       "loop over only the items to process (have a step filter the list), or "
                       f"put the `{word}` inside a step")
        elif type(node) in _UNSUPPORTED_BLOCKS:
            keyword, fix = _UNSUPPORTED_BLOCKS[type(node)]
            self.error(node, f"{keyword} statements are not supported in a pipeline body", fix)
            self.unbind_targets(node)
        elif isinstance(node, ast.Return):
            self.error(node, "a pipeline body cannot `return`",
                       "remove the `return`: the outputs of its steps are kept by Kale; "
                       "to hand a value to another step, pass the variable to it")
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            self.error(node, "imports are not allowed in a pipeline body",
                       "move the import into the steps that use it")
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            kind = "class" if isinstance(node, ast.ClassDef) else "function"
            self.error(node, f"a {kind} cannot be defined inside a pipeline body",
                       f"define `{node.name}` at module level; decorate it with @step to make "
                       "it a step")
            self.bindings[node.name] = _UNUSABLE
        elif isinstance(node, ast.AugAssign):
            self.error(node, f"`{self.text(node)}` is not a step call", _BODY_RULE
                       + "; compute the new value inside a step and return it")
        else:
            self.error(node, f"`{self.text(node)}` is not allowed in a pipeline body",
                       _BODY_RULE)

    def unbind_targets(self, node: ast.AST) -> None:
        for child in ast.walk(node):
            if isinstance(child, ast.Name) and isinstance(child.ctx, ast.Store):
                self.bindings[child.id] = _UNUSABLE

    def assignment(self, node: ast.Assign | ast.AnnAssign) -> None:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        if node.value is None:
            self.error(node, f"`{self.text(node)}` declares a variable without a step call",
                       _BODY_RULE)
            return
        if len(targets) > 1:
            self.error(node, "chained assignment (`a = b = step(...)`) is not supported",
                       "bind the step's output to one name and use that name")
            self.unbind_targets(node)
            return
        target = targets[0]
        names, unpacks = self.target_names(target)
        if names is None:
            self.unbind_targets(node)
            return
        if isinstance(node.value, ast.ListComp) and not unpacks:
            self.comprehension(node.value, names[0], node)
            return
        if isinstance(node.value, ast.IfExp):
            # `x = a() if test else b()` is the `if`/`else` that binds x in both branches.
            self.if_chain(_as_if(target, node.value, node))
            return
        if not isinstance(node.value, ast.Call):
            self.error(node.value, f"`{self.text(node)}` is not a step call", _BODY_RULE
                       + "; compute the value inside a step and return it")
            for name in names:
                self.bindings[name] = _UNUSABLE
            return
        self.call(node.value, targets=names, unpacks=unpacks, statement=node)

    def target_names(self, target: ast.expr) -> tuple[tuple[str, ...] | None, bool]:
        if isinstance(target, ast.Name):
            return (target.id,), False
        if isinstance(target, (ast.Tuple, ast.List)):
            names: list[str] = []
            for element in target.elts:
                if isinstance(element, ast.Starred):
                    self.error(element, f"starred target `{self.text(element)}` is not "
                               "supported", "unpack every output into its own name: "
                               "`a, b, c = step(...)`")
                    return None, True
                if not isinstance(element, ast.Name):
                    self.error(element, f"`{self.text(element)}` cannot receive a step output",
                               "unpack outputs into plain names: `a, b = step(...)`")
                    return None, True
                if element.id in names and element.id != "_":
                    self.error(element, f"`{element.id}` appears twice in `{self.text(target)}`",
                               "give each output its own name (use `_` for one you do not need)")
                    return None, True
                names.append(element.id)
            # Outputs are stored by name: every `_` but the last (the one `_` keeps) is renamed.
            last = len(names) - 1 - names[::-1].index("_") if "_" in names else -1
            names = [f"_{i}" if n == "_" and i != last else n for i, n in enumerate(names)]
            return tuple(names), True
        what = {ast.Attribute: "an attribute", ast.Subscript: "an item", ast.Starred: "a starred "
                "name"}.get(type(target), "this target")
        self.error(target, f"a step output cannot be stored in {what} (`{self.text(target)}`)",
                   "bind it to a plain name: `x = step(...)`")
        return None, False

    # -- control flow -------------------------------------------------------------------------

    def if_chain(self, node: ast.If) -> None:
        links = [node]
        while len(links[-1].orelse) == 1 and isinstance(links[-1].orelse[0], ast.If) and \
                links[-1].orelse[0].col_offset == links[-1].col_offset:  # an `elif`
            links.append(links[-1].orelse[0])
        else_body = links[-1].orelse
        condition = self.condition_step(links, bool(else_body))
        if condition is not None:
            self.steps.append(condition)
        steps_before, errors_before = len(self.steps), len(self.errors)
        before = dict(self.bindings)
        branches: list[dict[str, ValueSource | _Unusable]] = []
        for index, body in enumerate([link.body for link in links] + [else_body] * bool(
                else_body)):
            self.bindings = dict(before)
            if condition is not None:
                self.scopes.append(Branch(condition.name, index))
            for statement in body:
                self.statement(statement)
            if condition is not None:
                self.scopes.pop()
            branches.append(self.bindings)
        if condition is not None and len(self.steps) == steps_before and \
                len(self.errors) == errors_before:
            self.error(node, "this `if` calls no steps in any branch",
                       "call a step in one of its branches, or remove the `if`")
        self.bindings = dict(before)
        changed = dict.fromkeys(name for bound in branches for name, value in bound.items()
                                if before.get(name) is not value)
        line = node.lineno
        for name in changed:
            values = [bound.get(name) for bound in branches]
            everywhere = bool(else_body) and all(
                value is not None and value is not before.get(name) for value in values)
            unusable = [value for value in values if isinstance(value, _Unusable)]
            if condition is None or any(value is _UNUSABLE for value in values):
                self.bindings[name] = _UNUSABLE
            elif unusable:  # e.g. bound by a loop in a branch: that is what to tell
                self.bindings[name] = unusable[0]
            elif everywhere and any(self.container_output(value) for value in values):
                self.bindings[name] = _Unusable(
                    f"`{{name}}` is bound in every branch of the `if` at line {line}, but by a "
                    "container step in at least one: Kale passes on the value of the branch "
                    "that ran only from function steps",
                    "use it inside the branches, or bind it with a function step in each "
                    "branch (one can run the program with kale.cmdutils)")
            elif everywhere and all(isinstance(value, OutputRef) for value in values):
                self.bindings[name] = OneOfRef(condition.name, tuple(
                    value for value in values if isinstance(value, OutputRef)))
            elif everywhere:
                self.bindings[name] = _Unusable(
                    f"`{{name}}` is bound in every branch of the `if` at line {line}, but not "
                    "by a step call of the branch itself (in a loop or a nested `if`), so Kale "
                    "cannot pass on the value of the branch that ran",
                    "bind it with a step call directly in each branch, e.g. `x = step(...)`")
            else:
                self.bindings[name] = _Unusable(
                    f"`{{name}}` is bound in only some branches of the `if` at line {line}, so "
                    "after it, it may hold no value (or still the one from before the `if`)",
                    "bind it in every branch, with an `else:` too (Kale then passes on the "
                    "value of the branch that ran), or use it only inside the branch that "
                    "binds it")

    def condition_step(self, links: list[ast.If], has_else: bool) -> Step | None:
        """The step that evaluates an ``if`` chain's tests, or None when a test is invalid."""
        operands: dict[str, ValueSource] = {}
        tests: list[tuple[int, str]] = []
        complete = True
        for link in links:
            problem = test_problem(link.test)
            if problem is not None:
                at, what, fix = problem
                self.error(at, f"`{self.text(at)}` {what}", fix)
                complete = False
                continue
            for child in ast.walk(link.test):
                if isinstance(child, ast.Call) and isinstance(child.func, ast.Name) and \
                        child.func.id in self.bindings:
                    # `len(x)` where the body bound `len`: the test would call that value
                    self.error(child, f"`{self.text(child)}` calls "
                               f"{self.describe_binding(child.func.id)} in the condition of an "
                               "`if`", f"rename `{child.func.id}`: it hides the built-in "
                               "function of that name")
                    complete = False
                    continue
                if not isinstance(child, ast.Name) or child.id in operands:
                    continue
                if child.id not in self.bindings and child.id in TEST_BUILTINS:
                    continue
                if child.id not in self.bindings and child.id in vars(builtins):
                    self.error(child, f"`{child.id}` is a built-in a condition cannot use",
                               "a test may use only the built-ins " + ", ".join(
                                   sorted(TEST_BUILTINS)) + "; compute the value in a step "
                               "and test its result")
                    complete = False
                    continue
                if child.id not in self.bindings and child.id in self.namespace:
                    self.error(child, f"`{child.id}` is defined outside the pipeline; the "
                               "condition of an `if` can read pipeline parameters, outputs of "
                               "earlier steps, loop variables and literal values",
                               f"make it a pipeline parameter (`def {self.node.name}(..., "
                               f"{child.id}={child.id})`), or write its value")
                    complete = False
                    continue
                source = self.value(child)
                if source is None:
                    complete = False
                    continue
                operands[child.id] = source
            tests.append((link.test.lineno, ast.unparse(link.test)))
        if not complete:
            return None
        self.conditions += 1
        name = self.unique_name(f"condition-{self.conditions}")
        function_name = name.replace("-", "_")
        text, def_line = condition_source(function_name, tests, list(operands), links[0].lineno)
        # As written; a test written over several lines is shown on one.
        shown = tuple(_shorten(ast.unparse(link.test)) if link.test.lineno !=
                      link.test.end_lineno else self.text(link.test) for link in links)
        return Step(
            name=name,
            display_name=_shorten(f"if {shown[0]}"),
            function=StepSource(function_name=function_name, qualname=function_name,
                                module="__main__", filename=self.filename, line=def_line,
                                text=text),
            arguments=tuple(Argument(operand, source, self.where(links[0].test))
                            for operand, source in operands.items()),
            outputs=(),
            unpacks=False,
            options=StepOptions(),
            location=self.where(links[0]),
            scopes=tuple(self.scopes),
            condition=ConditionInfo(shown, has_else),
        )

    def for_loop(self, node: ast.For) -> None:
        if node.orelse:
            self.error(node.orelse[0], "`for ... else` is not supported in a pipeline body",
                       "remove the `else:` and put its statements after the loop (a "
                       "pipeline's loop has no `break`, so its `else` would always run)")
        variable = self.loop_variable(node.target)
        items = self.loop_items(node.iter)
        loop = self.new_loop(variable, items, node, collects=False) \
            if variable is not None and items is not None else None
        before = dict(self.bindings)
        if loop is not None:
            self.scopes.append(loop)
            self.bindings[loop.variable] = ItemRef(loop.name, loop.variable, loop.items)
        else:
            self.unbind_targets(node.target)
        steps_before, errors_before = len(self.steps), len(self.errors)
        for statement in node.body:
            self.statement(statement)
        if loop is not None:
            self.scopes.pop()
            if len(self.steps) == steps_before and len(self.errors) == errors_before:
                self.error(node, "this `for` loop calls no steps",
                           "call a step in its body, or remove the loop")
        inside, self.bindings = self.bindings, before
        for name, value in inside.items():
            if before.get(name) is not value:
                self.bindings[name] = _UNUSABLE if value is _UNUSABLE else _Unusable(
                    f"`{{name}}` is bound inside the `for` loop at line {node.lineno}, once "
                    "per item, so after the loop it holds no one value",
                    "collect the results with a comprehension, `results = [step(x) for x in "
                    "items]`, and pass `results` (a list, in item order)")

    def comprehension(self, node: ast.ListComp, target: str, statement: ast.stmt) -> None:
        """``results = [step(x) for x in items]``: a loop whose results are collected."""
        # The target is bound only once the comprehension is read: its element and items may
        # use the name's previous binding (`x = [step(x) for i in items]`), as in Python.
        collected = self.collect(node, target, statement)
        self.bindings[target] = _UNUSABLE if collected is None else collected

    def collect(self, node: ast.ListComp, target: str,
                statement: ast.stmt) -> CollectedRef | None:
        if len(node.generators) != 1:
            self.error(node, f"`{self.text(node)}` loops over more than one list",
                       "write a `for` loop with a comprehension inside for the inner list")
            return None
        generator = node.generators[0]
        if generator.is_async:
            self.error(node, "`async for` is not supported in a pipeline body",
                       "use `[step(x) for x in items]`")
            return None
        if generator.ifs:
            self.error(generator.ifs[0], f"the comprehension filters its items "
                       f"(`if {self.text(generator.ifs[0])}`)", "have a step return only the "
                       "items to process, and loop over its output")
            return None
        if not isinstance(node.elt, ast.Call):
            self.error(node.elt, f"`{self.text(node.elt)}` in `{self.text(node)}` is not a "
                       "step call", "collect the results of one step call: `results = "
                       "[step(x) for x in items]`")
            return None
        variable = self.loop_variable(generator.target)
        items = self.loop_items(generator.iter)
        if variable is None or items is None:
            return None
        loop = self.new_loop(variable, items, node, collects=True)
        before = dict(self.bindings)
        self.scopes.append(loop)
        self.bindings[variable] = ItemRef(loop.name, variable, loop.items)
        self.call(node.elt, targets=(target,), unpacks=False, statement=statement)
        self.scopes.pop()
        produced = self.bindings.get(target)
        self.bindings = before
        if not isinstance(produced, OutputRef):
            return None
        made = self.container_output(produced)
        if made is not None:
            # On Kubeflow each iteration marks the results it collects with its item, to put
            # them back in order; a container cannot.
            self.error(node.elt, f"the results of container step `{made[0].display_name}` "
                       "cannot be collected from a loop", "collect the results of a function "
                       "step instead: one that runs the program with kale.cmdutils, or that "
                       "reads the container's output in a `for` loop")
            return None
        return CollectedRef(produced.step, produced.variable, loop.name)

    def loop_variable(self, target: ast.expr) -> str | None:
        if isinstance(target, ast.Name):
            return target.id
        if isinstance(target, (ast.Tuple, ast.List)):
            self.error(target, f"the loop unpacks each item into `{self.text(target)}`",
                       "loop over the items with one name, `for item in items:`, and unpack "
                       "it inside the step that receives it")
        else:
            self.error(target, f"`{self.text(target)}` cannot be a loop variable",
                       "loop with a plain name: `for item in items:`")
        return None

    def loop_items(self, node: ast.expr) -> ParameterRef | OutputRef | Constant | None:
        """What a loop iterates: a step's output, a list parameter or a literal list."""
        fix = ("loop over a step's output (`items = list_them()`, then `for x in items:`), a "
               "list parameter, or a literal list")
        if isinstance(node, ast.Name) and node.id in self.bindings:
            bound = self.value(node)
            if bound is None:
                return None
            made = self.container_output(bound)
            if made is not None:
                self.error(node, f"the loop iterates `{node.id}`, the output `{made[1]}` of "
                           f"container step `{made[0].name}`", "pass it to a function step "
                           "that returns the list to loop over (e.g. `items = "
                           f"read_list({node.id})`), then `for x in items:`")
                return None
            if isinstance(bound, OutputRef):
                return bound
            if isinstance(bound, ParameterRef):
                kind = next(p.type for p in self.parameter_list if p.name == bound.name)
                if kind == "list":
                    return bound
                self.error(node, f"the loop iterates pipeline parameter `{node.id}`, a {kind}",
                           f"give `{node.id}` a list default to loop over its items; " + fix)
                return None
            what = {ItemRef: "the variable of an enclosing loop",
                    CollectedRef: "results collected from a loop",
                    OneOfRef: "the output of one branch of an `if`"}.get(type(bound), "a value")
            self.error(node, f"the loop iterates `{node.id}`, {what}",
                       f"have a step return the list to loop over (e.g. `items = "
                       f"prepare({node.id})`), then `for x in items:`")
            return None
        if isinstance(node, ast.Call) and _dotted_name(node.func) == ["range"] and \
                "range" not in self.bindings:
            try:
                bounds = [ast.literal_eval(arg) for arg in node.args]
                values = list(range(*bounds)) if not node.keywords and all(
                    type(b) is int for b in bounds) else None
            except (ValueError, TypeError, SyntaxError):
                values = None
            if values is None or len(values) > _MAX_LITERAL_ITEMS:
                self.error(node, f"`{self.text(node)}` is not a range of literal ints (at most "
                           f"{_MAX_LITERAL_ITEMS} items)", fix)
                return None
            return Constant(values)
        if isinstance(node, (ast.List, ast.Tuple)):
            names = [n.id for n in ast.walk(node) if isinstance(n, ast.Name)]
            if names:
                self.error(node, f"the loop iterates `{self.text(node)}`, a list built from "
                           "pipeline values", "have a step return the list (e.g. `items = "
                           f"gather({', '.join(dict.fromkeys(names))})`), then `for x in "
                           "items:`")
                return None
            constant = self.value(node)
            if constant is None:
                return None
            assert isinstance(constant, Constant)
            return Constant(list(constant.value))
        if isinstance(node, ast.Call) and self.is_step(node.func):
            self.error(node, f"the loop calls step `{self.text(node.func)}` for its items",
                       f"bind its output first, `items = {self.text(node)}`, then `for x in "
                       "items:`")
            return None
        self.error(node, f"a loop cannot iterate `{self.text(node)}`", fix)
        return None

    def new_loop(self, variable: str, items: ParameterRef | OutputRef | Constant,
                 node: ast.AST, *, collects: bool) -> Loop:
        loop = Loop(name=f"loop-{len(self.loops) + 1}", variable=variable, items=items,
                    location=self.where(node), scopes=tuple(self.scopes), collects=collects)
        self.loops.append(loop)
        if isinstance(items, OutputRef):
            for index, step in enumerate(self.steps):
                if step.name == items.step and items.variable not in step.item_outputs:
                    self.steps[index] = dataclasses.replace(
                        step, item_outputs=(*step.item_outputs, items.variable))
        return loop

    # -- calls --------------------------------------------------------------------------------

    def call(self, node: ast.Call, *, targets: tuple[str, ...], unpacks: bool,
             statement: ast.stmt) -> None:
        errors_before = len(self.errors)
        callee = self.callee(node.func)
        arguments = self.arguments(node)
        if callee is None or arguments is None or len(self.errors) > errors_before:
            for name in targets:
                self.bindings[name] = _UNUSABLE
            return
        positional, keywords = arguments
        step = self.new_step(callee, node, positional, keywords, targets, unpacks)
        if step is None:
            for name in targets:
                self.bindings[name] = _UNUSABLE
            return
        self.steps.append(step)
        for index, name in enumerate(targets):
            self.bindings[name] = OutputRef(step.name, name, index if unpacks else None)

    def callee(self, node: ast.expr) -> Any:
        dotted = _dotted_name(node)
        if dotted is None:
            self.error(node, f"`{self.text(node)}` is not a step", "call a @step function by "
                       "its name: `result = my_step(...)`")
            return None
        head, *rest = dotted
        if head in self.bindings:
            what = self.describe_binding(head)
            if rest:
                self.error(node, f"`{self.text(node)}` calls a method of {what}",
                           "call the method inside the step that receives the value")
            else:
                self.error(node, f"`{head}` is {what}, not a step", "call @step functions only; "
                           f"rename `{head}` if it hides a step of the same name")
            return None
        if head not in self.namespace:
            self.error(node, f"`{head}` is not defined", f"import or define the step `{head}` "
                       "at the top of the file")
            return None
        value = owner = self.namespace[head]
        for index, attribute in enumerate(rest):
            if not hasattr(value, attribute):
                self.error(node, f"`{'.'.join(dotted[: index + 2])}` does not exist",
                           "check the spelling of the step's name")
                return None
            owner, value = value, getattr(value, attribute)
        name = ".".join(dotted)
        if isinstance(value, (StepFunction, ContainerStep)):
            return value
        if isinstance(value, PipelineDefinition):
            self.error(node, f"`{name}` is a pipeline; pipelines cannot call other pipelines yet",
                       "call its steps from this pipeline directly")
        elif rest and not inspect.ismodule(owner):
            self.error(node, f"`{name}(...)` calls a method, not a step",
                       "call the method inside a step")
        elif value is getattr(builtins, name, None):
            self.error(node, f"`{name}` is a built-in function, not a step", _BODY_RULE
                       + f"; call `{name}` inside a step")
        elif inspect.isclass(value):
            self.error(node, f"`{name}` is a class, not a step", f"create the `{name}` object "
                       "inside a step and return it")
        elif callable(value) and self.in_project(value):
            self.error(node, f"`{name}` is not a step", f"decorate `{name}` with @step "
                       "(from kale.sdk import step), or call it inside a step")
        elif callable(value):
            self.error(node, f"`{name}` is not a step", _BODY_RULE + "; call it inside a step")
        else:
            self.error(node, f"`{name}` is a {type(value).__name__}, not a step", _BODY_RULE)
        return None

    def is_step(self, node: ast.expr) -> bool:
        dotted = _dotted_name(node)
        if not dotted or dotted[0] in self.bindings or dotted[0] not in self.namespace:
            return False
        value = self.namespace[dotted[0]]
        for attribute in dotted[1:]:
            value = getattr(value, attribute, None)
        return isinstance(value, (StepFunction, ContainerStep))

    def in_project(self, value: Any) -> bool:
        """Whether a function was written in the user's project (so it could become a step)."""
        try:
            filename = inspect.getsourcefile(value)
        except TypeError:
            return False
        if filename is None:
            return False
        root = os.path.realpath(project_root_of(self.filename))
        path = os.path.realpath(filename)
        return os.path.commonpath([path, root]) == root and "site-packages" not in path

    def describe_binding(self, name: str) -> str:
        bound = self.bindings[name]
        if isinstance(bound, ParameterRef):
            return f"pipeline parameter `{name}`"
        if isinstance(bound, OutputRef):
            return f"`{name}`, an output of step `{bound.step}`,"
        return f"`{name}`"

    def arguments(self, node: ast.Call) -> tuple[list[ValueSource], dict[str, ValueSource]] | None:
        """The values a call passes, by position and by keyword (None if any is invalid)."""
        positional: list[ValueSource] = []
        keywords: dict[str, ValueSource] = {}
        complete = True
        for arg in node.args:
            if isinstance(arg, ast.Starred):
                self.error(arg, f"`{self.text(arg)}` unpacks values into a step call",
                           "pass each value as its own argument")
                complete = False
                continue
            value = self.value(arg)
            complete &= value is not None
            positional.append(value)
        for keyword in node.keywords:
            if keyword.arg is None:
                self.error(keyword, f"`{self.text(keyword)}` unpacks a dict into a step call",
                           "pass each value as its own keyword argument")
                complete = False
                continue
            value = self.value(keyword.value)
            complete &= value is not None
            keywords[keyword.arg] = value
        return (positional, keywords) if complete else None

    def value(self, node: ast.expr) -> ValueSource | None:
        if isinstance(node, ast.Name):
            bound = self.bindings.get(node.id)
            if isinstance(bound, _Unusable):
                if bound.message:
                    self.error(node, bound.message.replace("{name}", node.id), bound.fix)
                return None
            if bound is not None:
                return bound
            if node.id in self.namespace:
                self.error(node, f"`{node.id}` is defined outside the pipeline; a step's "
                           "arguments can be pipeline parameters, outputs of earlier steps or "
                           "literal values",
                           f"make it a pipeline parameter (`def {self.node.name}(..., "
                           f"{node.id}={node.id})`), or write its value")
            else:
                self.error(node, f"`{node.id}` is not defined",
                           "bind it first with `" + node.id + " = step(...)`, or make it a "
                           "pipeline parameter")
            return None
        try:
            value = ast.literal_eval(node)
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            self.reject_value(node)
            return None
        problem = value_problem(value)
        if problem:
            self.error(node, f"`{self.text(node)}` {problem.what}; values written in a pipeline "
                       "body must be JSON values (numbers, strings, booleans, None, lists, and "
                       "dicts with string keys), as Kubeflow passes them",
                       f"{problem.fix}; or build the value inside the step")
            return None
        return Constant(value)

    def reject_value(self, node: ast.expr) -> None:
        text = self.text(node)
        names = [n.id for n in ast.walk(node) if isinstance(n, ast.Name)]
        outputs = [n for n in names if n in self.bindings]
        if isinstance(node, ast.Call) and self.is_step(node.func):
            self.error(node, f"nested call `{text}`", "give each step call its own line: "
                       "`inner = first_step(...)`, then pass `inner` to the next step")
        elif isinstance(node, (ast.ListComp, ast.GeneratorExp, ast.SetComp, ast.DictComp)):
            self.error(node, f"`{text}` is a comprehension inside a step call",
                       "bind it on a line of its own, `results = [step(x) for x in items]`, "
                       "then pass `results`")
        elif isinstance(node, ast.Attribute) and outputs:
            self.error(node, f"`{text}` reads an attribute of `{outputs[0]}`",
                       f"pass `{outputs[0]}` itself and read `.{node.attr}` inside the step "
                       "that receives it")
        elif isinstance(node, ast.Subscript) and outputs:
            self.error(node, f"`{text}` takes an item of `{outputs[0]}`",
                       f"pass `{outputs[0]}` whole, or have its step return the parts "
                       "separately and unpack them: `a, b = step(...)`")
        elif isinstance(node, (ast.List, ast.Tuple, ast.Set, ast.Dict)) and names:
            self.error(node, f"`{text}` collects pipeline values into a container",
                       "pass each value as its own argument")
        else:
            self.error(node, f"`{text}` is an expression", "a step's arguments can be pipeline "
                       "parameters, outputs of earlier steps or literal values; compute this "
                       "inside a step")

    def new_step(self, func: Any, node: ast.Call, positional: list[ValueSource],
                 keywords: dict[str, ValueSource], targets: tuple[str, ...],
                 unpacks: bool) -> Step | None:
        if isinstance(func, ContainerStep):
            return self.container_step(func, node, positional, keywords, targets, unpacks)
        if id(func) not in self.spans:
            self.spans[id(func)] = function_span(func.func)
        span = self.spans[id(func)]
        label = f"`{func.__name__}`"
        given = _plain_binding(func.func, positional, keywords)
        if given is None:
            if id(func) not in self.signatures:
                self.signatures[id(func)] = inspect.signature(func.func)
            try:
                given = self.signatures[id(func)].bind(*positional, **keywords).arguments
            except TypeError as reason:
                self.error(node, f"step {label} cannot be called like this: {reason}",
                           f"its signature is {func.__name__}{signature_text(func.func)}")
                return None
        if span is None:
            self.error(node, f"Kale cannot read the source of step {label}",
                       "define steps in .py files (or notebook cells), not with exec()")
            return None
        parsed = span.parse() if unpacks else None
        if parsed is not None:
            arity = return_arity(parsed[1])
            if arity == 0:
                self.error(node, f"step {label} returns nothing, so it cannot be unpacked into "
                           f"{len(targets)} names", f"return {len(targets)} values from "
                           f"{label}, or call it without assigning")
                return None
            if arity is not None and arity != len(targets):
                self.error(node, f"step {label} returns {arity} values but "
                           f"{len(targets)} names receive them",
                           f"unpack exactly {arity} names")
                return None
        argument_nodes = {kw.arg: kw for kw in node.keywords}
        positional_nodes = iter(node.args)
        arguments = []
        for name, value in given.items():
            if isinstance(value, (tuple, dict)):
                continue  # *args/**kwargs in a step's signature are reported by the step checks
            at = argument_nodes.get(name) or next(positional_nodes)
            arguments.append(Argument(name, value, self.where(at)))
        self.step_functions[id(func)] = func
        # Within Kubeflow's 63 characters: unique_name shortens the base, not the suffix.
        unique = self.unique_name(func.step_name)
        self.step_function_of[unique] = id(func)
        return Step(
            name=unique,
            display_name=func.display_name,
            function=StepSource(
                function_name=func.func.__code__.co_name,
                qualname=func.func.__qualname__,
                # A script loaded by `kale graph/compile` is still the script being run when
                # its steps run: `__main__`, as with `python script.py --kfp`.
                module="__main__" if func.func.__module__ == SCRIPT_MODULE
                else func.func.__module__,
                filename=span.filename,
                line=span.def_line,
                text=span.text(),
                has_metrics=bool(getattr(func.func, "__kale_has_metrics__", False)),
                artifacts=tuple(getattr(func.func, "__kale_artifacts__", ())),
            ),
            arguments=tuple(arguments),
            outputs=targets,
            unpacks=unpacks,
            options=StepOptions.resolve(func.options, self.options.steps_defaults),
            location=self.where(node),
            scopes=tuple(self.scopes),
        )

    def container_output(self, source: ValueSource) -> tuple[Step, str, str] | None:
        """For the output of a container step: the step, and the declared output's name and
        type; None for anything else."""
        if not isinstance(source, OutputRef):
            return None
        step = next((step for step in self.steps if step.name == source.step), None)
        if step is None or step.container is None:
            return None
        return (step, *step.container.output_named(step, source.variable))

    def container_step(self, func: ContainerStep, node: ast.Call,
                       positional: list[ValueSource], keywords: dict[str, ValueSource],
                       targets: tuple[str, ...], unpacks: bool) -> Step | None:
        """A call of a ``ContainerStep``: its inputs bound like a function's parameters, its
        outputs to the names that receive them; the function a local run runs is generated."""
        label = f"container step `{func.display_name}`"
        listed = ", ".join(f"{name} ({kind})" for name, kind in func.inputs.items())
        try:
            bound = func.signature.bind(*positional, **keywords)
        except TypeError as reason:
            self.error(node, f"{label} cannot be called like this: {reason}",
                       f"its inputs are: {listed or '(none)'}")
            return None
        declared = tuple(func.outputs)
        shown = ", ".join(declared)
        if unpacks and len(targets) != len(declared):
            self.error(node, f"{label} has {len(declared)} output(s) ({shown or 'none'}) but "
                       f"{len(targets)} names receive them",
                       f"unpack exactly {len(declared)} names" if declared else
                       "call it without assigning")
            return None
        if not unpacks and targets and len(declared) != 1:
            if not declared:
                self.error(node, f"{label} has no outputs, so nothing can be bound to "
                           f"`{targets[0]}`", "call it without assigning, or declare its "
                           "outputs=")
            else:
                self.error(node, f"{label} has {len(declared)} outputs ({shown}), so they "
                           f"cannot be bound to one name", f"unpack them: `{shown} = "
                           f"{self.text(node)}`")
            return None
        argument_nodes = {kw.arg: kw for kw in node.keywords}
        positional_nodes = iter(node.args)
        arguments = []
        complete = True
        for name, value in bound.arguments.items():
            at = argument_nodes.get(name) or next(positional_nodes)
            kind = func.inputs[name]
            made = self.container_output(value)
            if kind == "file" and (isinstance(value, (ParameterRef, Constant)) or (
                    isinstance(value, ItemRef) and not isinstance(value.items, OutputRef)) or (
                    made is not None and made[2] != "file")):
                what = ("a literal value" if isinstance(value, Constant) else
                        f"pipeline parameter `{value.name}`" if isinstance(value, ParameterRef)
                        else "an item of a list of values" if isinstance(value, ItemRef) else
                        f"the {made[2]} output `{made[1]}` of container step `{made[0].name}`"
                        if made else "a value")
                self.error(at, f"input `{name}` of {label} is a file, but it is given {what}",
                           "pass a file a step made: the output of a function step that "
                           "returns a pathlib.Path (or bytes, or a str: the file's content), "
                           f"or a container step's file output; or declare `{name}` as "
                           "\"value\"")
                complete = False
            elif kind == "value" and made is not None and made[2] == "file":
                self.error(at, f"input `{name}` of {label} is a value, but it is given the file "
                           f"output `{made[1]}` of container step `{made[0].name}`",
                           f"declare `{name}` as \"file\" to get the file's path, or pass a "
                           "value")
                complete = False
            arguments.append(Argument(name, value, self.where(at)))
        if not complete:
            return None
        unique = self.unique_name(func.step_name)
        function_name = func.step_name.replace("-", "_")  # `resize(...)`, as it was called
        if not function_name.isidentifier():
            function_name = f"step_{function_name}"
        location = func.location
        options = StepOptions.resolve(func.options, self.options.steps_defaults)
        spec = {**func.spec(), "step": unique, "limits": dict(options.limits)}
        inputs = ", ".join(f"{name!r}: {name}" for name in func.inputs)
        text = (f"def {function_name}({', '.join(func.inputs)}):\n"
                "    from kale.local.container import run_container\n"
                f"    return run_container({spec!r}, {{{inputs}}})\n")
        return Step(
            name=unique,
            display_name=func.display_name,
            function=StepSource(function_name=function_name, qualname=function_name,
                                module="__main__", filename=location.file,
                                line=location.line, text=text),
            arguments=tuple(arguments),
            outputs=targets if targets else declared,
            unpacks=len(declared) > 1,
            options=options,
            location=self.where(node),
            scopes=tuple(self.scopes),
            container=ContainerInfo(
                image=func.image, command=func.command, args=func.args,
                inputs=tuple(func.inputs.items()), outputs=tuple(func.outputs.items()),
                env=tuple(func.env.items())),
        )

    def unique_name(self, base: str) -> str:
        unique, suffix = base, 1
        while unique in self.step_names:
            suffix += 1
            unique = f"{base[: 63 - len(str(suffix)) - 1].rstrip('-')}-{suffix}"
        self.step_names.add(unique)
        return unique


#: The most items a literal loop (``range(...)`` included) may have: each is a task.
_MAX_LITERAL_ITEMS = 10_000


def _as_if(target: ast.expr, choice: ast.IfExp, statement: ast.stmt) -> ast.If:
    """The ``if`` statement a conditional expression assignment stands for: ``x = a() if t
    else b() if u else c()`` is ``if t: x = a()``, ``elif u: x = b()``, ``else: x = c()``."""
    def assign(value: ast.expr) -> ast.stmt:
        if isinstance(value, ast.IfExp):
            return _as_if(target, value, statement)  # same column: an `elif`
        return ast.copy_location(ast.Assign([target], value), value)

    return ast.copy_location(ast.If(choice.test, [assign(choice.body)], [assign(choice.orelse)]),
                             statement)


def _shorten(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _dotted_name(node: ast.expr) -> list[str] | None:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    parts.append(node.id)
    return parts[::-1]


def _parameter_type(value: Any) -> str | None:
    if isinstance(value, bool):
        return "bool"
    for name in ("str", "int", "float"):
        if type(value) is PARAMETER_TYPES[name][0]:
            return name
    # What a list or dict holds is value_problem's to check, without recursion.
    if isinstance(value, (list, tuple, dict)):
        return "dict" if isinstance(value, dict) else "list"
    return None


def _annotation_type(annotation: Any) -> str | None:
    """The parameter type an annotation names, when it is a plain built-in type."""
    if isinstance(annotation, str):
        return annotation if annotation in PARAMETER_TYPES else None
    for name, types in PARAMETER_TYPES.items():
        if annotation is types[0]:
            return name
    return None
