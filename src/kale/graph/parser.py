"""From the source of a ``@pipeline`` function to a Graph, following the pipeline language's rules.

The body is read, never run. It may hold a docstring and three kinds of statement:
``step(...)``, ``x = step(...)`` and ``a, b = step(...)``, whose arguments are pipeline parameters,
outputs of earlier steps or literal constants. Names may be re-bound: a use reads the latest
binding, so ``x = clean(x)`` is a new step fed by the previous ``x``, never a cycle. Everything else
is reported, all at once, with its file, line, the source line and how to fix it.
"""

from __future__ import annotations

import ast
import builtins
import dataclasses
import inspect
import os
from collections.abc import Callable, Mapping
from typing import Any

from kale.definitions import PipelineDefinition, StepFunction
from kale.errors import PipelineDefinitionError, SourceLocation, raise_all
from kale.graph.checks import check_steps, return_arity
from kale.graph.model import (
    PARAMETER_TYPES,
    Argument,
    Constant,
    Graph,
    OutputRef,
    Parameter,
    ParameterRef,
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
    ast.If: "`if`",
    ast.For: "`for`",
    ast.AsyncFor: "`async for`",
    ast.While: "`while`",
    ast.With: "`with`",
    ast.AsyncWith: "`async with`",
    ast.Try: "`try`",
    ast.Match: "`match`",
}
if hasattr(ast, "TryStar"):  # Python 3.11+
    _UNSUPPORTED_BLOCKS[ast.TryStar] = "`try`"

_BODY_RULE = (
    "a pipeline body can only call steps: `step(...)`, `x = step(...)` or `a, b = step(...)`"
)


class _Unusable:
    """The binding left by a statement that failed: later uses are not reported a second time."""


_UNUSABLE = _Unusable()


def project_root_of(filename: str) -> str:
    """The project directory: the folder of the pipeline's file (the working directory for a
    pipeline defined in a notebook or an interactive session). A script run through a symbolic
    link belongs to the folder of the file it links to, where Python imports its siblings from."""
    # A notebook cell is not a file, except under ipykernel's temp folder, where its debugger
    # writes cells: the kernel's working directory is the project then too.
    if os.path.isfile(filename) and not os.path.basename(os.path.dirname(filename)).startswith(
            "ipykernel_"):
        return os.path.dirname(os.path.realpath(filename))
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
        body = list(node.body)
        docstring = ast.get_docstring(node)
        if docstring is not None:
            body = body[1:]
        for statement in body:
            self.statement(statement)
        if not self.steps and not self.errors:
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
        )
        contexts = check_steps(graph, [(func, self.spans[key])
                                       for key, func in self.step_functions.items()])
        if not any(context.segments or context.futures for context in contexts.values()):
            return graph
        steps = []
        for step in graph.steps:
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
            elif isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
                self.error(node, "a string in the middle of a pipeline body does nothing",
                           "use a `#` comment, or move the docstring to the first line")
            else:
                self.error(node, f"`{self.text(node)}` is not a step call", _BODY_RULE)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            self.assignment(node)
        elif isinstance(node, ast.Pass):
            return
        elif type(node) in _UNSUPPORTED_BLOCKS:
            keyword = _UNSUPPORTED_BLOCKS[type(node)]
            self.error(node, f"{keyword} statements are not supported in a pipeline body yet",
                       "put the logic inside a step; the pipeline body only wires steps "
                       "together")
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
        if isinstance(value, StepFunction):
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
        return isinstance(value, StepFunction)

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
        if id(func) not in self.spans:
            self.spans[id(func)] = function_span(func.func)
        span = self.spans[id(func)]
        label = f"`{func.__name__}`"
        try:
            bound = inspect.signature(func.func).bind(*positional, **keywords)
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
        for name, value in bound.arguments.items():
            if isinstance(value, (tuple, dict)):
                continue  # *args/**kwargs in a step's signature are reported by the step checks
            at = argument_nodes.get(name) or next(positional_nodes)
            arguments.append(Argument(name, value, self.where(at)))
        self.step_functions[id(func)] = func
        base = func.step_name
        unique, suffix = base, 1
        while unique in self.step_names:
            suffix += 1
            # Keep within Kubeflow's 63 characters: shorten the base, not the suffix.
            unique = f"{base[: 63 - len(str(suffix)) - 1].rstrip('-')}-{suffix}"
        self.step_names.add(unique)
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
            ),
            arguments=tuple(arguments),
            outputs=targets,
            unpacks=unpacks,
            options=StepOptions.resolve(func.options, self.options.steps_defaults),
            location=self.where(node),
        )


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
