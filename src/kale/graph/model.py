"""The pipeline as data: parameters, steps, where each step's inputs come from, and the edges.

A Graph is immutable and built only by the parser. It is the single description that both places
a pipeline runs from (the local runner and the Kubeflow compiler) read.

Control flow: every step carries ``scopes``, the blocks that enclose its call in the pipeline
body, outermost first: a ``Branch`` of an ``if``/``elif``/``else`` chain, or a ``Loop`` (``for``
or a list comprehension) that runs the step once per item. An ``if`` chain is itself a small
step of the graph (``Step.condition`` set), whose generated function returns the index of the
branch that holds; the steps of the other branches are skipped. So a Graph's steps are of two
kinds, both run by the one step contract (``kale.runtime``): the user's steps and conditions.
Inside a loop, ``OutputRef`` means the output of the same iteration; ``ItemRef`` is the loop's
variable, ``CollectedRef`` the list of a step's outputs over every iteration of a loop, and
``OneOfRef`` a name bound in every branch of an ``if`` chain (KFP's ``dsl.ParallelFor``,
``dsl.Collected`` and ``dsl.OneOf``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from kale.errors import SourceLocation
from kale.graph.imports import ImportReader, Missing, StepModules
from kale.options import PipelineOptions, StepOptions

#: The Python types a pipeline parameter can have (KFP's parameter types), by name.
PARAMETER_TYPES: Mapping[str, tuple[type, ...]] = {
    "str": (str,),
    "int": (int,),
    "float": (float, int),
    "bool": (bool,),
    "list": (list, tuple),
    "dict": (dict,),
}


#: How deeply a parameter value (or a constant of the body) may nest lists and dicts, counted as
#: Kubeflow's pipeline spec holds it: protobuf messages, two per list (Value, ListValue) and three
#: per dict (Value, Struct, its entry), which protobuf refuses nested deeper than about 100
#: (kfp 2.17 fails to compile a default 52 lists or 35 dicts deep). So: 50 lists, 33 dicts.
MAX_VALUE_NESTING = 100

#: The largest number Kubeflow can carry at all: its parameters hold numbers as 64-bit floats.
_FLOAT_MAX = 1.7976931348623157e308


class ValueProblem(ValueError):
    """Why a value cannot be carried as a pipeline parameter (JSON, as Kubeflow carries it).

    ``what`` continues a sentence about the value ("is nan, ...", "holds a set at [0]"),
    ``fix`` says what to write instead.
    """

    def __init__(self, what: str, fix: str) -> None:
        self.what = what
        self.fix = fix
        super().__init__(what)


class _Shown:
    """Stands in for a value in ``inspect.Signature`` text: its repr is the short one."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text


def short_repr(value: Any, limit: int = 60) -> str:
    """``repr(value)`` for a message: shortened, and never raising (a huge int has no repr
    past Python's digit limit, a deeply nested list overflows the recursion, a user's
    ``__repr__`` may fail)."""
    import reprlib

    class Short(reprlib.Repr):
        def repr_int(self, x: int, level: int) -> str:
            if x.bit_length() > 200:
                return f"<an int of about {_digits(x)} digits>"
            return super().repr_int(x, level)

    short = Short()
    short.maxlevel, short.maxstring, short.maxother, short.maxlong = 4, limit, limit, limit
    try:
        text = short.repr(value)
    except Exception:  # a message must not fail on the value it names
        text = f"<a {type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def signature_text(func: Any) -> str:
    """A function's signature as written (``(a, b=1)``), with defaults shortened so that a
    huge or deeply nested default cannot break the message that shows it."""
    import inspect

    try:
        signature = inspect.signature(func)
        return str(signature.replace(parameters=[
            parameter if parameter.default is parameter.empty else
            parameter.replace(default=_Shown(short_repr(parameter.default)))
            for parameter in signature.parameters.values()]))
    except Exception:  # an annotation with a failing repr, say
        return "(...)"


def _digits(number: int) -> int:
    # str() refuses ints past 4300 digits; the bit length gives the count to within one, and
    # one power of ten settles it.
    number = abs(number)
    digits = int(number.bit_length() * 0.30103) + 1
    return digits - 1 if digits > 1 and number < 10 ** (digits - 1) else digits


def _a(noun: str) -> str:
    return f"an {noun}" if noun[:1] in "aeiou" else f"a {noun}"


#: What Kubeflow carries, the end of most of value_problem's sentences.
_JSON = "Kubeflow parameters are JSON values: str, int, float, bool, None, lists and dicts"


def _at(chain: tuple[Any, Any] | None) -> tuple[str, str]:
    """The verb and the place of value_problem's sentence: ("is", "") for the value itself,
    ("holds", " at [1]['a']") for an item in it."""
    keys = []
    while chain is not None:
        key, chain = chain
        keys.append(f"[{short_repr(key)}]")
    return ("holds", " at " + "".join(reversed(keys))) if keys else ("is", "")


def value_problem(value: Any) -> ValueProblem | None:
    """Why ``value`` cannot be a pipeline parameter's value as the JSON Kubeflow carries (str,
    int, float, bool, None, lists or tuples, dicts with string keys), or None when it can.

    Walks the value with its own stack, not by recursion: a value passed to a pipeline call can
    be nested arbitrarily deep.
    """
    # Each entry: the item, its nesting so far, and where it is as a chain (key, parent's
    # chain), spelled out only for the item at fault, so a long list costs no strings.
    stack: list[tuple[Any, int, tuple[Any, Any] | None]] = [(value, 0, None)]
    while stack:
        item, depth, chain = stack.pop()
        if item is None or isinstance(item, (bool, str)):
            continue
        if isinstance(item, int):
            if abs(item) > _FLOAT_MAX:
                what, where = _at(chain)
                return ValueProblem(
                    f"{what} an int of about {_digits(item)} digits{where}, beyond the largest "
                    "number Kubeflow parameters can carry (they hold numbers as 64-bit floats, "
                    "up to about 1.8e308)",
                    "pass it as a string and convert it in the step: `int(value)`")
        elif isinstance(item, float):
            if item != item or item in (float("inf"), float("-inf")):
                what, where = _at(chain)
                return ValueProblem(
                    f"{what} {item!r}{where}; {_JSON}, which have no NaN or infinity",
                    f"pass it as a string ('{item!r}') and convert it in the step: "
                    "`float(value)`")
        elif isinstance(item, (list, tuple, dict)):
            depth += 3 if isinstance(item, dict) else 2
            if depth > MAX_VALUE_NESTING:
                return ValueProblem(
                    "nests lists or dicts too deeply for Kubeflow's pipeline spec, which holds "
                    f"parameter values at most {MAX_VALUE_NESTING // 2} lists or "
                    f"{MAX_VALUE_NESTING // 3} dicts deep",
                    "flatten the value, or pass it as a JSON string and parse it in the step: "
                    "`json.loads(value)`")
            if isinstance(item, dict):
                for key in item:
                    if not isinstance(key, str):
                        what, where = _at(chain)
                        return ValueProblem(
                            f"{what} a dict{where} with the key {short_repr(key)}, "
                            f"{_a(type(key).__name__)}; {_JSON}, and a dict's keys are strings",
                            "use string keys and convert them in the step, e.g. `{str(k): v for "
                            "k, v in value.items()}` to pass it, `int(key)` to read a key")
                children = list(item.items())
            else:
                children = list(enumerate(item))
            stack.extend((child, depth, (key, chain)) for key, child in reversed(children))
        else:
            fix = ("pass a list and convert it in the step: `set(value)`"
                   if isinstance(item, (set, frozenset)) else
                   "pass the plain values it is made from (str, int, float, bool, list or "
                   "dict) and build it in the step")
            what, where = _at(chain)
            return ValueProblem(f"{what} {_a(type(item).__name__)}{where} "
                                f"({short_repr(item)}); {_JSON}", fix)
    return None


@dataclass(frozen=True)
class ParameterRef:
    """A value that comes from a pipeline parameter."""

    name: str

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True)
class OutputRef:
    """A value a step returns: the whole return value, or one element of it when unpacked."""

    step: str
    variable: str
    index: int | None = None

    def __str__(self) -> str:
        return f"{self.step}.{self.variable}"


@dataclass(frozen=True)
class Constant:
    """A literal written in the pipeline body (numbers, strings, and lists/dicts/tuples of them)."""

    value: Any

    def __str__(self) -> str:
        return repr(self.value)


@dataclass(frozen=True)
class ItemRef:
    """The variable of a ``for`` loop (or comprehension): one item of its list per iteration.
    ``items`` is what the loop iterates (a step output, a list parameter, a literal list)."""

    loop: str
    variable: str
    items: ParameterRef | OutputRef | Constant

    def __str__(self) -> str:
        return self.variable


@dataclass(frozen=True)
class CollectedRef:
    """The list of a step's output over every iteration of a loop, in item order
    (``results = [train(x) for x in items]``)."""

    step: str
    variable: str
    loop: str

    def __str__(self) -> str:
        return f"[{self.step}.{self.variable} ...]"


@dataclass(frozen=True)
class OneOfRef:
    """A name bound in every branch of an ``if``/``elif``/``else`` chain: the output of the
    branch that ran. ``options`` holds one value per branch, in branch order."""

    condition: str
    options: tuple[OutputRef, ...]

    def __str__(self) -> str:
        return " | ".join(str(option) for option in self.options)


ValueSource = ParameterRef | OutputRef | Constant | ItemRef | CollectedRef | OneOfRef


def producers(source: ValueSource) -> frozenset[str]:
    """The steps (conditions included) whose results a value needs."""
    if isinstance(source, (OutputRef, CollectedRef)):
        return frozenset((source.step,))
    if isinstance(source, ItemRef):
        return producers(source.items)
    if isinstance(source, OneOfRef):
        return frozenset((source.condition, *(option.step for option in source.options)))
    return frozenset()


@dataclass(frozen=True)
class Branch:
    """A block of an ``if`` chain: its steps run when the condition step ``condition`` chooses
    branch ``index`` (0 for the ``if``, 1 for the first ``elif``...; the last is ``else``)."""

    condition: str
    index: int

    def needs(self) -> frozenset[str]:
        return frozenset((self.condition,))


@dataclass(frozen=True)
class Loop:
    """A ``for`` loop or a list comprehension of the pipeline body: its steps run once per item
    of ``items``, each iteration in parallel. ``scopes`` are the blocks that enclose the loop."""

    name: str
    variable: str
    items: ParameterRef | OutputRef | Constant
    location: SourceLocation | None = None
    scopes: tuple[Branch | Loop, ...] = ()
    #: written as a comprehension, whose results are collected
    collects: bool = False

    def needs(self) -> frozenset[str]:
        return producers(self.items)

    @property
    def depth(self) -> int:
        """How many loops enclose this one, itself included."""
        return 1 + sum(isinstance(scope, Loop) for scope in self.scopes)


Scope = Branch | Loop


@dataclass(frozen=True)
class ConditionInfo:
    """What makes a step a condition: the tests of an ``if`` chain, as written, in order, and
    whether it ends with ``else``. Its function returns the index of the branch to run."""

    tests: tuple[str, ...]
    has_else: bool

    @property
    def branches(self) -> int:
        return len(self.tests) + self.has_else

    def describe(self, index: int) -> str:
        """How the body writes branch ``index``: ``if x > 1``, ``elif ...``, ``else``."""
        if index >= len(self.tests):
            return "else"
        return f"{'if' if index == 0 else 'elif'} {self.tests[index]}"


@dataclass(frozen=True)
class ContainerInfo:
    """What makes a step a container step (``kale.containers.ContainerStep``): the image, its
    command and arguments with ``{inputs.x}``/``{outputs.y}`` placeholders, the inputs and
    outputs (name and type, in declared order) and the environment. Its ``function`` is
    generated: locally it runs the image through ``kale.local.container``."""

    image: str
    command: tuple[str, ...]
    args: tuple[str, ...]
    inputs: tuple[tuple[str, str], ...]
    outputs: tuple[tuple[str, str], ...]
    env: tuple[tuple[str, str], ...] = ()

    def input_type(self, name: str) -> str:
        return dict(self.inputs)[name]

    def output_named(self, step: Step, variable: str) -> tuple[str, str]:
        """The declared output (name, type) a step output (a name the body bound) is."""
        return self.outputs[step.outputs.index(variable)]


@dataclass(frozen=True)
class Parameter:
    """A pipeline parameter: its default fixes its type and becomes the pipeline's default."""

    name: str
    type: str
    default: Any
    location: SourceLocation | None = None

    def accepts(self, value: Any) -> bool:
        if isinstance(value, bool) and self.type != "bool":
            return False
        return isinstance(value, PARAMETER_TYPES[self.type])

    def coerce(self, value: Any) -> Any:
        """The value as this parameter's type; strings are parsed as Kubeflow's UI parses them.

        Raises ValueError with the reason when the value does not fit, a ``ValueProblem``
        (with its fix) when it fits the type but not the JSON Kubeflow carries.
        """
        coerced = self._coerce(value)
        problem = value_problem(coerced)
        if problem is not None:
            raise problem
        return coerced

    def _coerce(self, value: Any) -> Any:
        if self.accepts(value):
            if isinstance(value, tuple):
                return list(value)
            if self.type == "float" and isinstance(value, int) and abs(value) > _FLOAT_MAX:
                return value  # float() would overflow: value_problem says why it cannot go
            return float(value) if self.type == "float" else value
        if isinstance(value, str) and self.type != "str":
            text = value.strip()
            try:
                if self.type == "int":
                    return int(text)
                if self.type == "float":
                    return float(text)
                if self.type == "bool" and text.lower() in ("true", "false", "1", "0"):
                    return text.lower() in ("true", "1")
                if self.type in ("list", "dict"):
                    parsed = json.loads(text)
                    if self.accepts(parsed):
                        return parsed
            except (ValueError, RecursionError):  # RecursionError: JSON nested too deep
                pass
            raise ValueError(f"{short_repr(value)} cannot be read as {self.type}")
        raise ValueError(f"a {self.type} is expected, not {type(value).__name__} "
                         f"{short_repr(value)}")


#: Names the runtime itself defines in a step's module namespace, so a step may use them.
RUNTIME_NAMES = frozenset({"__file__", "__name__", "__package__", "__builtins__", "__spec__",
                           "__loader__", "__doc__", "__annotations__"})


def may_be_cell(filename: str) -> bool:
    """Whether code compiled under this name may be a notebook cell: cells are not files,
    except under ipykernel's temp folder, where its debugger writes them."""
    import os

    return not os.path.isfile(filename) or os.path.basename(os.path.dirname(
        filename)).startswith("ipykernel_")


@dataclass(frozen=True)
class CodeSegment:
    """Consecutive whole lines of module-level code a step runs before its own ``def``
    (``kale.graph.context`` chooses them)."""

    filename: str
    line: int  # the first line's number in its file
    text: str


@dataclass(frozen=True)
class StepSource:
    """Where a step's code lives, and the code itself (its ``def`` without decorators)."""

    function_name: str
    qualname: str
    module: str
    filename: str
    line: int
    text: str
    #: The module-level code the step needs, in module order (``kale.graph.context``).
    context: tuple[CodeSegment, ...] = ()
    #: The ``from __future__`` features of its module, which apply to that code.
    futures: tuple[str, ...] = ()
    #: Marked ``@has_metrics``, and the ``@artifact`` files it writes as (name, path).
    has_metrics: bool = False
    artifacts: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Argument:
    """One input of a step call: the step function's parameter and where its value comes from."""

    name: str
    source: ValueSource
    location: SourceLocation | None = None


@dataclass(frozen=True)
class Edge:
    """Data flowing from one step's output to another step's input."""

    source: str
    target: str
    variable: str
    argument: str
    index: int | None = None
    #: "output" (a value of the same iteration), "collected" (the list over a loop), "items"
    #: (the list a loop iterates, one item each) or "one-of" (a branch's output)
    kind: str = "output"


@dataclass(frozen=True)
class Step:
    """One call of a ``@step`` function in the pipeline body, which becomes one pipeline step."""

    name: str
    display_name: str
    function: StepSource
    arguments: tuple[Argument, ...]
    outputs: tuple[str, ...]
    unpacks: bool
    options: StepOptions
    location: SourceLocation | None = None
    #: the blocks of the body around the call, outermost first
    scopes: tuple[Scope, ...] = ()
    #: set for the step an ``if`` chain becomes
    condition: ConditionInfo | None = None
    #: outputs a ``for`` loop iterates over, whose items the step reports
    item_outputs: tuple[str, ...] = ()
    #: set for a container step (``ContainerStep``)
    container: ContainerInfo | None = None

    def references(self) -> Iterator[ValueSource]:
        for argument in self.arguments:
            yield argument.source

    @property
    def loops(self) -> tuple[Loop, ...]:
        """The loops around the step, outermost first: a task runs per item of each."""
        return tuple(scope for scope in self.scopes if isinstance(scope, Loop))

    @property
    def upstream(self) -> frozenset[str]:
        """Names of the steps (conditions included) this step needs: the producers of its
        inputs, the conditions of its branches and what its loops iterate over."""
        names: set[str] = set()
        for source in self.references():
            names |= producers(source)
        for scope in self.scopes:
            names |= scope.needs()
        return frozenset(names)


@dataclass(frozen=True)
class Graph:
    """A whole pipeline: options, parameters, and steps in the order the body calls them."""

    options: PipelineOptions
    parameters: tuple[Parameter, ...]
    steps: tuple[Step, ...]
    filename: str
    line: int
    project_root: str
    docstring: str | None = None
    #: the body's loops, in body order
    loops: tuple[Loop, ...] = ()
    _by_name: dict[str, Step] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_name", {step.name: step for step in self.steps})

    @property
    def name(self) -> str:
        return self.options.name

    def step(self, name: str) -> Step:
        return self._by_name[name]

    def parameter(self, name: str) -> Parameter:
        for parameter in self.parameters:
            if parameter.name == name:
                return parameter
        raise KeyError(name)

    def loop(self, name: str) -> Loop:
        for loop in self.loops:
            if loop.name == name:
                return loop
        raise KeyError(name)

    @property
    def user_steps(self) -> tuple[Step, ...]:
        """The steps the user wrote (conditions left out)."""
        return tuple(step for step in self.steps if step.condition is None)

    @cached_property
    def edges(self) -> tuple[Edge, ...]:
        edges = []
        for step in self.steps:
            for arg in step.arguments:
                edges.extend(_edges(arg.source, step.name, arg.name))
        return tuple(edges)

    def upstream(self, name: str) -> frozenset[str]:
        return self._by_name[name].upstream

    @cached_property
    def _downstream(self) -> dict[str, frozenset[str]]:
        children: dict[str, set[str]] = {step.name: set() for step in self.steps}
        for step in self.steps:
            for parent in step.upstream:
                children[parent].add(step.name)
        return {name: frozenset(names) for name, names in children.items()}

    def downstream(self, name: str) -> frozenset[str]:
        return self._downstream[name]

    def descendants(self, name: str) -> frozenset[str]:
        """Every step that depends on ``name``, directly or not (what a failure must skip)."""
        seen: set[str] = set()
        stack = [name]
        while stack:
            for child in self._downstream[stack.pop()]:
                if child not in seen:
                    seen.add(child)
                    stack.append(child)
        return frozenset(seen)

    @property
    def roots(self) -> tuple[str, ...]:
        return tuple(step.name for step in self.steps if not step.upstream)

    @property
    def leaves(self) -> tuple[str, ...]:
        """The user's steps nothing depends on: the pipeline's results."""
        return tuple(step.name for step in self.steps
                     if not self._downstream[step.name] and step.condition is None)

    @cached_property
    def levels(self) -> tuple[tuple[str, ...], ...]:
        """Steps grouped by depth: every step's inputs come from earlier levels.

        Steps of one level are independent of each other, so they can run in parallel. The body
        order is already topological (a name must be bound before it is used).
        """
        depth: dict[str, int] = {}
        for step in self.steps:
            depth[step.name] = 1 + max((depth[p] for p in step.upstream), default=-1)
        grouped: list[list[str]] = [[] for _ in range(max(depth.values(), default=-1) + 1)]
        for step in self.steps:
            grouped[depth[step.name]].append(step.name)
        return tuple(tuple(level) for level in grouped)

    @cached_property
    def external_imports(self) -> tuple[str, ...]:
        """The modules the steps import (top-level names) that come from outside the project:
        the standard library and installed libraries, which a step's environment must have."""
        return tuple(sorted({name for names in self.step_imports.values() for name in names}))

    @cached_property
    def step_imports(self) -> dict[str, tuple[str, ...]]:
        """``external_imports`` step by step (by step name): top-level names of
        ``step_modules``, so they include what the project's modules a step imports import."""
        return {name: tuple(sorted({module.split(".")[0] for module in modules}))
                for name, modules in self.step_modules.items()}

    @cached_property
    def step_modules(self) -> dict[str, tuple[str, ...]]:
        """The installed modules (standard library included) each step imports, by full dotted
        name: in its own source, and in the project's modules it imports, followed from file to
        file. By step name."""
        return {name: found.external for name, found in self._imports.items()}

    @cached_property
    def step_project_files(self) -> dict[str, tuple[str, ...]]:
        """The project's files each step imports (its own source, then the project's modules
        it imports, followed from file to file), as absolute paths. By step name."""
        return {name: found.project for name, found in self._imports.items()}

    @cached_property
    def missing_imports(self) -> dict[str, tuple[Missing, ...]]:
        """The imports of each step (or of a project module it imports) that are neither in the
        project nor installed here, and not guarded by ``except ImportError``. By step name."""
        return {name: found.missing for name, found in self._imports.items()}

    @cached_property
    def _imports(self) -> dict[str, StepModules]:
        reader = ImportReader(self.project_root,
                              dict.fromkeys(step.function.filename for step in self.steps))
        # A container step imports nothing: its image is what it runs.
        return {step.name: reader.step("" if step.container else step.function.text,
                                       step.function.module,
                                       [segment.text for segment in step.function.context])
                for step in self.steps}

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description of the graph (``kale graph --format json``)."""
        options = self.options
        return {
            "name": options.name,
            "display_name": options.display_name,
            "experiment": options.experiment,
            "description": options.description,
            "timeout": options.timeout,
            "loop_parallelism": options.loop_parallelism,
            "file": self.filename,
            "line": self.line,
            "project_root": self.project_root,
            "parameters": [
                {"name": p.name, "type": p.type, "default": p.default} for p in self.parameters
            ],
            "steps": [
                {
                    "name": step.name,
                    "display_name": step.display_name,
                    "function": f"{step.function.module}.{step.function.qualname}",
                    "file": step.function.filename,
                    "line": step.function.line,
                    "inputs": {
                        arg.name: _describe_source(arg.source) for arg in step.arguments
                    },
                    "outputs": list(step.outputs),
                    "unpacks": step.unpacks,
                    "upstream": sorted(step.upstream),
                    "options": _describe_options(step.options),
                    "scopes": [_describe_scope(scope) for scope in step.scopes],
                    "item_outputs": list(step.item_outputs),
                    **({"condition": {"tests": list(step.condition.tests),
                                      "else": step.condition.has_else,
                                      "branches": [step.condition.describe(index) for index
                                                   in range(step.condition.branches)],
                                      "source": step.function.text}}
                       if step.condition else {}),
                    **({"container": {"image": step.container.image,
                                      "command": list(step.container.command),
                                      "args": list(step.container.args),
                                      "inputs": dict(step.container.inputs),
                                      "outputs": dict(step.container.outputs),
                                      "env": dict(step.container.env)}}
                       if step.container else {}),
                }
                for step in self.steps
            ],
            "loops": [
                {
                    "name": loop.name,
                    "variable": loop.variable,
                    "items": _describe_source(loop.items),
                    "line": loop.location.line if loop.location else None,
                    "scopes": [_describe_scope(scope) for scope in loop.scopes],
                    "collects": loop.collects,
                }
                for loop in self.loops
            ],
            "edges": [
                {
                    "from": edge.source,
                    "to": edge.target,
                    "output": edge.variable,
                    "input": edge.argument,
                    **({"kind": edge.kind} if edge.kind != "output" else {}),
                }
                for edge in self.edges
            ],
        }


def _edges(source: ValueSource, target: str, argument: str) -> list[Edge]:
    if isinstance(source, OutputRef):
        return [Edge(source.step, target, source.variable, argument, source.index)]
    if isinstance(source, CollectedRef):
        return [Edge(source.step, target, source.variable, argument, kind="collected")]
    if isinstance(source, ItemRef) and isinstance(source.items, OutputRef):
        items = source.items
        return [Edge(items.step, target, items.variable, argument, items.index, kind="items")]
    if isinstance(source, OneOfRef):
        return [Edge(option.step, target, option.variable, argument, option.index,
                     kind="one-of") for option in source.options]
    return []


def _describe_scope(scope: Scope) -> dict[str, Any]:
    if isinstance(scope, Branch):
        return {"condition": scope.condition, "branch": scope.index}
    return {"loop": scope.name}


def _describe_source(source: ValueSource) -> dict[str, Any]:
    if isinstance(source, ParameterRef):
        return {"parameter": source.name}
    if isinstance(source, OutputRef):
        return {"step": source.step, "output": source.variable, "index": source.index}
    if isinstance(source, ItemRef):
        return {"item_of": source.loop, "variable": source.variable}
    if isinstance(source, CollectedRef):
        return {"collected": {"step": source.step, "output": source.variable,
                              "loop": source.loop}}
    if isinstance(source, OneOfRef):
        return {"one_of": [_describe_source(option) for option in source.options],
                "condition": source.condition}
    value = source.value
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        value = repr(value)
    return {"constant": value}


def _describe_options(options: StepOptions) -> dict[str, Any]:
    return {
        "timeout": options.timeout,
        "retry_count": options.retry_count,
        "retry_interval": options.retry_interval,
        "retry_factor": options.retry_factor,
        "retry_max_interval": options.retry_max_interval,
        "limits": dict(options.limits),
        "labels": dict(options.labels),
        "annotations": dict(options.annotations),
        "cache": options.cache,
    }
