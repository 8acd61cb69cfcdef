"""The pipeline as data: parameters, steps, where each step's inputs come from, and the edges.

A Graph is immutable and built only by the parser. It is the single description that both places
a pipeline runs from (the local runner and the Kubeflow compiler) read.

Room to grow: every step carries ``scopes``, the blocks that enclose its call in the pipeline
body, outermost first. The body language has no blocks yet, so it is always empty; a condition
on step results (``if``) or a fan-out loop over them (``for``) becomes a ``Scope`` whose
``references`` are the values it reads, which makes them dependencies of every step inside it,
exactly as KFP nests tasks in ``dsl.If`` and ``dsl.ParallelFor`` groups.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Protocol

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


ValueSource = ParameterRef | OutputRef | Constant


class Scope(Protocol):
    """A block of the pipeline body that encloses steps (a condition, a loop)."""

    def references(self) -> tuple[ValueSource, ...]:
        """The values the block reads; the steps inside depend on their producers."""
        ...


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

        Raises ValueError with the reason when the value does not fit.
        """
        if self.accepts(value):
            if isinstance(value, tuple):
                return list(value)
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
            except ValueError:
                pass
            raise ValueError(f"{value!r} cannot be read as {self.type}")
        raise ValueError(f"a {self.type} is expected, not {type(value).__name__} {value!r}")


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
    scopes: tuple[Scope, ...] = ()

    def references(self) -> Iterator[ValueSource]:
        for argument in self.arguments:
            yield argument.source
        for scope in self.scopes:
            yield from scope.references()

    @property
    def upstream(self) -> frozenset[str]:
        """Names of the steps whose outputs this step needs."""
        return frozenset(ref.step for ref in self.references() if isinstance(ref, OutputRef))


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

    @cached_property
    def edges(self) -> tuple[Edge, ...]:
        return tuple(
            Edge(arg.source.step, step.name, arg.source.variable, arg.name, arg.source.index)
            for step in self.steps
            for arg in step.arguments
            if isinstance(arg.source, OutputRef)
        )

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
        return tuple(step.name for step in self.steps if not self._downstream[step.name])

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
    def missing_imports(self) -> dict[str, tuple[Missing, ...]]:
        """The imports of each step (or of a project module it imports) that are neither in the
        project nor installed here, and not guarded by ``except ImportError``. By step name."""
        return {name: found.missing for name, found in self._imports.items()}

    @cached_property
    def _imports(self) -> dict[str, StepModules]:
        reader = ImportReader(self.project_root,
                              dict.fromkeys(step.function.filename for step in self.steps))
        return {step.name: reader.step(step.function.text, step.function.module,
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
                }
                for step in self.steps
            ],
            "edges": [
                {
                    "from": edge.source,
                    "to": edge.target,
                    "output": edge.variable,
                    "input": edge.argument,
                }
                for edge in self.edges
            ],
        }


def _describe_source(source: ValueSource) -> dict[str, Any]:
    if isinstance(source, ParameterRef):
        return {"parameter": source.name}
    if isinstance(source, OutputRef):
        return {"step": source.step, "output": source.variable, "index": source.index}
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
    }
