"""Compiling a Graph into a Kubeflow Pipelines (v2) package with the ``kfp`` SDK.

Each step becomes a Lightweight Python Component whose body only unpacks the project bundle and
hands over to ``kale.kfp.entry``, which runs the step with the same runtime as local runs. A first
task, ``kale-bundle``, turns the bundle (carried once, in the package) into an artifact that every
step takes. Values between steps are KFP artifacts written by ``kale.marshal``; pipeline
parameters are KFP parameters with their types and defaults, so the KFP UI shows and overrides
them; literal constants are component inputs.

kfp reads a component's source with ``inspect.getsource``, so the generated functions are
registered in ``linecache`` under a name of their own.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import linecache
import math
import os
import re
import typing
import warnings
from dataclasses import dataclass
from typing import Any

from kale.errors import CompileWarning, KaleError, SourceLocation
from kale.graph.model import (
    Argument,
    Branch,
    CollectedRef,
    Constant,
    Graph,
    ItemRef,
    Loop,
    OneOfRef,
    OutputRef,
    Parameter,
    ParameterRef,
    Step,
    StepSource,
)
from kale.items import by_position, item_tokens, numbered
from kale.kfp import server
from kale.kfp.bundle import Bundle, build_bundle, carries_kale_module
from kale.kfp.caching import CachePlan, CodeKeys
from kale.kfp.caching import plan as cache_plan
from kale.kfp.delivery import BundleDelivery, place_bundle
from kale.kfp.requirements import Environments, resolve
from kale.kfp.server import NEWEST, Target
from kale.kfp.store import configured_store
from kale.options import StepOptions, format_duration
from kale.runtime import carried_back, grace_seconds
from kale.source import parse_step_text

_PARAMETER_TYPES = {"str": "str", "int": "int", "float": "float", "bool": "bool",
                    "list": "list", "dict": "dict"}


def _identifier(name: str) -> str:
    """An ASCII Python name for ``name``: kfp accepts only ASCII in input and output names, and
    Python names may hold any letter (``entrée`` -> ``entr_u00e9_e``)."""
    return re.sub(r"[^A-Za-z0-9_]", lambda m: "_" if m.group() == "-" else
                  f"_u{ord(m.group()):04x}_", name)


# Names the generated components' annotations and kfp's executor module rely on.
_TAKEN = {"str", "int", "float", "bool", "list", "dict", "Input", "Output", "Artifact", "Dataset",
          "Model", "kfp", "dsl", "importer", "List", "NamedTuple", "OutputPath", "Metrics", "HTML",
          "Markdown", "ClassificationMetrics"}


def task_display_names(graph: Graph) -> dict[str, str]:
    """What the Kubeflow UI (and ``--wait``) calls each step's task: its display name, or its
    step name where two calls of one step would share the display name."""
    shown = [step.display_name for step in graph.steps]
    return {step.name: step.display_name if shown.count(step.display_name) == 1 else step.name
            for step in graph.steps}


def _port_names(step: Step) -> dict[tuple[str, str], str]:
    """The component's input and output names for a step's arguments and outputs, keyed by
    ("in", argument) and ("out", output): ASCII, and distinct even where encoding made two
    names alike."""
    names: dict[tuple[str, str], str] = {}
    used: set[str] = {"kale_bundle"}
    # A container step's outputs are named as it declares them (the names in the body may
    # differ): its command writes them, and the Kubeflow UI shows them.
    declared = [name for name, _ in step.container.outputs] if step.container else \
        list(step.outputs)
    for (kind, name), shown in [(("in", argument.name), argument.name)
                                for argument in step.arguments] + [
            (("out", output), declared[index]) for index, output in enumerate(step.outputs)]:
        wanted = candidate = f"{kind}_{_identifier(shown)}"
        index = 1
        while candidate in used:
            index += 1
            candidate = f"{wanted}_{index}"
        used.add(candidate)
        names[(kind, name)] = candidate
    return names


def _function_names(graph: Graph, reserved: tuple[str, ...] = ()) -> dict[str, str]:
    """Python names for the steps' components. kfp names each task after its component's
    function, so a step's task in the Kubeflow UI is the step's own name; Kale's own tasks keep
    theirs (``reserved``)."""
    import keyword

    used: set[str] = set(_TAKEN) | set(reserved)

    def unique(wanted: str) -> str:
        if not wanted.isidentifier() or keyword.iskeyword(wanted) or wanted[0].isdigit() \
                or wanted in _TAKEN or wanted in reserved:
            wanted = f"step_{wanted}"
        name, index = wanted, 1
        while name in used:
            index += 1
            name = f"{wanted}_{index}"
        used.add(name)
        return name

    # A condition's task is named apart from kfp's own groups (`condition-1`, `for-loop-2`).
    return {step.name: unique(_identifier(
        f"kale_{step.name}" if step.condition is not None else step.name))
        for step in graph.steps}


def _check_kale_imports(graph: Graph) -> None:
    """A step may use Kale's decorators and ``kale.marshal``, which travel with it; the rest of
    Kale (local runs, compiling, the graph) does not, so importing it would fail on Kubeflow."""
    for step in graph.steps:
        for module in graph.step_modules.get(step.name, ()):
            if (module == "kale" or module.startswith("kale.")) and \
                    not carries_kale_module(module):
                raise KaleError(
                    f"step `{step.name}` imports {module} (in its own code or a project module "
                    "it imports), which Kale does not carry into Kubeflow steps: only kale.sdk "
                    "and kale.marshal run there",
                    location=SourceLocation(step.function.filename, step.function.line),
                    fix="import it only in the code that defines or runs the pipeline, not in "
                    "code the steps run")


def _check_steps_travel(graph: Graph, bundle: Bundle) -> None:
    """Every step's file in the project must be in the bundle: the step, and any module that
    imports it, could not run on Kubeflow otherwise. (Code outside the project, such as a
    notebook's cells, travels in the component itself.)"""
    for step in graph.user_steps:
        relative = _bundled_path(step.function.filename, graph)
        if relative is not None and not bundle.carries(relative):
            raise KaleError(
                f"step `{step.name}` is defined in {relative}, which the project bundle leaves "
                "out (.gitignore, .kaleignore or Kale's own exclusions)",
                fix=f"let {relative} travel: remove the pattern that excludes it from "
                ".gitignore or .kaleignore",
            )


def _bundled_path(filename: str, graph: Graph) -> str | None:
    """A file's path in the bundled project, or None for code that is not in a file of the
    project (a notebook cell, an interactive definition)."""
    return _project_path(filename, graph.project_root)


# Asked for each step twice or more, mostly of the same few files: settled once per file in a
# compile (compile_graph clears it first, as files may have moved since the last one).
@functools.lru_cache(maxsize=4096)
def _project_path(filename: str, project_root: str) -> str | None:
    if not os.path.isfile(filename):
        return None
    path, root = os.path.realpath(filename), os.path.realpath(project_root)
    if os.path.commonpath([path, root]) != root:
        return None
    relative = os.path.relpath(path, root).replace(os.sep, "/")
    # Kale's own folder never travels in the bundle: code Kale generated there (a notebook's
    # module, kale.notebook) travels in the component, as a notebook cell's does.
    return None if relative.startswith(".kale/") else relative


def _code_reference(filename: str, line: int, text: str, graph: Graph) -> list[Any]:
    """Where the component finds a piece of a step's code: ``[file in the bundle, line, number
    of lines]``, or ``[name, line, the code]`` for code from outside the project's files."""
    relative = _bundled_path(filename, graph)
    if relative is None:
        # Named as the user knows it in the step's logs: `Cell In[3]` rather than the kernel's
        # temporary file.
        cell = SourceLocation(filename, line).cell
        return [cell[0].upper() + cell[1:] if cell else filename, line, text]
    # Counted as Python reads lines (entry reads the file the same way): a form feed or U+2028
    # in a string is not a line break there.
    return [relative, line, text.count("\n") + (not text.endswith("\n"))]


# What the KFP UI and lineage call a value, by the last part of its annotated type's name.
_DATASET_TYPES = {"DataFrame", "Series", "ndarray", "Table", "RecordBatch", "Dataset",
                  "DataLoader", "Tensor", "csr_matrix", "spmatrix"}
_MODEL_TYPES = {"Module", "BaseEstimator", "Pipeline", "Booster", "ScriptModule"}
_MODEL_SUFFIXES = ("Classifier", "Regressor", "Estimator", "Model", "Regression", "Clustering")


def _artifact_class(annotation: Any) -> str:
    """``Dataset``, ``Model`` or ``Artifact`` for a return annotation (an ``ast`` node)."""
    import ast

    if isinstance(annotation, ast.Constant) and isinstance(annotation.value, str):
        try:  # a quoted annotation
            annotation = ast.parse(annotation.value, mode="eval").body
        except SyntaxError:
            return "Artifact"
    if isinstance(annotation, ast.BinOp):  # X | None
        sides = [side for side in (annotation.left, annotation.right)
                 if not (isinstance(side, ast.Constant) and side.value is None)]
        return _artifact_class(sides[0]) if len(sides) == 1 else "Artifact"
    if isinstance(annotation, ast.Subscript):
        base = _artifact_class_name(annotation.value)
        if base == "Optional":
            return _artifact_class(annotation.slice)
        return _artifact_class(annotation.value) if base in _DATASET_TYPES else "Artifact"
    name = _artifact_class_name(annotation)
    if name in _DATASET_TYPES:
        return "Dataset"
    if name in _MODEL_TYPES or name.endswith(_MODEL_SUFFIXES):
        return "Model"
    return "Artifact"


def _artifact_class_name(node: Any) -> str:
    import ast

    if isinstance(node, ast.Attribute):
        return node.attr
    return node.id if isinstance(node, ast.Name) else ""


def _output_classes(step: Step) -> dict[str, str]:
    """Each output's artifact class, from the step's return annotation where it says."""
    import ast

    classes = dict.fromkeys(step.outputs, "Artifact")
    tree = parse_step_text(step.function.text)
    function = next((node for node in tree.body
                     if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))), None)
    returns = getattr(function, "returns", None)
    if returns is None or not step.outputs:
        return classes
    if step.unpacks:
        if isinstance(returns, ast.Subscript) and _artifact_class_name(returns.value) in (
                "tuple", "Tuple") and isinstance(returns.slice, ast.Tuple) and len(
                returns.slice.elts) == len(step.outputs):
            for name, element in zip(step.outputs, returns.slice.elts, strict=True):
                classes[name] = _artifact_class(element)
        return classes
    classes[step.outputs[0]] = _artifact_class(returns)
    return classes


def _kfp_default(parameter: Any) -> Any:
    """A parameter's default as KFP can carry it (tuples as lists; no None inside)."""
    def convert(value: Any) -> Any:
        if value is None:
            raise KaleError(
                f"the default of pipeline parameter `{parameter.name}` holds None, which "
                "Kubeflow parameters cannot carry",
                location=parameter.location,
                fix="leave the key out, or use a value such as '' or 0",
            )
        if isinstance(value, int) and not isinstance(value, bool) and not exact_number(value):
            raise KaleError(
                f"the default of pipeline parameter `{parameter.name}` holds {value}, which "
                f"Kubeflow would carry as {int(float(value))}: its parameters hold numbers as "
                "64-bit floats, exact only up to 2**53",
                location=parameter.location,
                fix="pass it as a string and convert it in the step: "
                f"{parameter.name}='{value}', then int({parameter.name})")
        if isinstance(value, (list, tuple)):
            return [convert(item) for item in value]
        if isinstance(value, dict):
            return {key: convert(item) for key, item in value.items()}
        return value

    return convert(parameter.default)


def _plain_constant(value: Any) -> bool:
    """Whether a constant travels as a KFP parameter of its own type; any other goes as Kale's
    tagged JSON in a string, which is exact."""
    return type(value) in (str, float, bool) or (type(value) is int and exact_number(value))


def exact_number(value: int) -> bool:
    """Whether Kubeflow carries this int exactly (its numbers are 64-bit floats)."""
    return abs(value) <= 2**53


@dataclass(frozen=True)
class _Flow:
    """What the pipeline's control flow asks of the steps' components beyond their own inputs
    and outputs."""

    #: steps whose output a comprehension collects, with that comprehension's loop: each
    #: iteration marks its outputs with its item, so the collecting step can put them in order
    collected: dict[str, Loop]
    #: (step, output) that a name bound in every branch of an ``if`` may come from
    one_of: frozenset[tuple[str, str]]


def _flow(graph: Graph) -> _Flow:
    collected: dict[str, Loop] = {}
    one_of: set[tuple[str, str]] = set()
    for step in graph.steps:
        for source in step.references():
            if isinstance(source, CollectedRef):
                collected[source.step] = graph.loop(source.loop)
            elif isinstance(source, OneOfRef):
                one_of.update((option.step, option.variable) for option in source.options)
    return _Flow(collected, frozenset(one_of))


_GATHER = "def kale_gather(values):\n    return values\n"


def _gathered(graph: Graph) -> tuple[Graph, frozenset[str]]:
    """The graph to compile, where results collected from a loop reach steps inside a block
    the loop is not in (``if t: report(results)``, a later ``for``) through a step of Kale's
    that gathers them right after the loop, and the names of those steps.

    kfp 2.17 cannot compile a ``dsl.Collected`` of artifacts that enters a nested
    ``dsl.If``/``dsl.ParallelFor`` (it types the group's input as a parameter:
    ``TypeError: 'NoneType' object cannot be interpreted as an integer``); the list as one
    artifact goes in like any other step output."""
    consumers: dict[tuple[str, str, str], list[tuple[str, str]]] = {}
    for step in graph.steps:
        for argument in step.arguments:
            source = argument.source
            if isinstance(source, CollectedRef) and \
                    len(step.scopes) > len(graph.loop(source.loop).scopes):
                consumers.setdefault((source.step, source.variable, source.loop), []).append(
                    (step.name, argument.name))
    if not consumers:
        return graph, frozenset()
    names = {step.name for step in graph.steps}
    replaced: dict[tuple[str, str], OutputRef] = {}
    after: dict[str, list[Step]] = {}  # the last step of a loop -> the gathers after it
    for (producer, variable, loop_name), users in consumers.items():
        loop = graph.loop(loop_name)
        name, index = f"{producer}-collected", 1
        while name in names:
            index += 1
            name = f"{producer}-collected-{index}"
        names.add(name)
        first = graph.step(producer)
        gather = Step(
            name=name, display_name=f"collect {variable}",
            function=StepSource(function_name="kale_gather", qualname="kale_gather",
                                module="__main__", filename=f"<kale {name}>", line=1,
                                text=_GATHER),
            arguments=(Argument("values", CollectedRef(producer, variable, loop_name),
                                first.location),),
            outputs=(variable,), unpacks=False, options=StepOptions(),
            location=loop.location, scopes=loop.scopes)
        last = [step.name for step in graph.steps if loop in step.loops][-1]
        after.setdefault(last, []).append(gather)
        for user in users:
            replaced[user] = OutputRef(name, variable)
    steps: list[Step] = []
    for step in graph.steps:
        if any((step.name, argument.name) in replaced for argument in step.arguments):
            step = dataclasses.replace(step, arguments=tuple(
                dataclasses.replace(argument, source=replaced.get(
                    (step.name, argument.name), argument.source))
                for argument in step.arguments))
        steps.append(step)
        steps.extend(after.get(step.name, ()))
    gathers = frozenset(gather.name for group in after.values() for gather in group)
    return dataclasses.replace(graph, steps=tuple(steps)), gathers


def _items_output(step: Step, output: str, ports: dict[tuple[str, str], str]) -> str:
    """The name of the component output that holds the item tokens of ``output``.

    kfp.local (2.17) iterates a task's output only if it is the return value named ``Output``
    (its loop resolves ``pipelinechannel--<task>-Output`` by name; any other name, and items
    from an ``OutputPath``, fail there), so the first iterated output of a step is its return
    value; further ones are named return values, which Kubeflow iterates alike."""
    if output == step.item_outputs[0]:
        return "Output"
    return f"kale_items_{ports[('out', output)]}"


def _loop_item_type(parameter: Parameter, loop: Loop) -> str:
    """The KFP type of the items of a list parameter a loop iterates, from its default.

    The loop hands each item to a typed component input, as Kubeflow carries it (a protobuf
    value: any number a float): the default's items say which type; the step then reads the
    item back in the default's shape (``shaped``)."""
    kinds = {"float" if type(item) in (int, float) else _PARAMETER_TYPES.get(
        "list" if isinstance(item, tuple) else type(item).__name__, "?")
        for item in parameter.default}
    if len(kinds) == 1 and "?" not in kinds:
        return kinds.pop()
    what = "is empty" if not kinds else "holds items of different types"
    raise KaleError(
        f"the loop over pipeline parameter `{parameter.name}` cannot be compiled: its default "
        f"{what}, and Kubeflow hands each item to a typed input of the step, whose type Kale "
        "takes from the default's items",
        location=loop.location,
        fix=f"give `{parameter.name}` a default with items of one type (str, number, bool, "
        "list or dict), or have a step return the list to loop over")


def _ordering(loop: Loop, local: str) -> tuple[list[str], str]:
    """How a collecting step checks and orders what Kubeflow collected from ``loop``: the
    component's extra parameters, and the order's expression (``kale.kfp.entry``). The tokens
    a loop iterates carry their position and count; a list parameter's items are matched to
    the parameter."""
    if isinstance(loop.items, ParameterRef):
        return [f"kale_order_{local}: list"], f"('values', kale_order_{local})"
    return [], "('positions', None)"


def _input(argument: Any, local: str, graph: Graph) -> tuple[list[str], str]:
    """A step argument's component parameters and its input expression (kind, payload)."""
    source = argument.source
    made = _container_output(source, graph)
    if made is not None:
        # What a container wrote: the file itself, or a value as the text of a parameter.
        producer, output, kind = made
        if kind == "file":
            return [f"{local}: Input[Artifact]"], f"('file', {local}.path)"
        return [f"{local}: str"], f"('text', ({local}, {kind!r}, {producer!r}, {output!r}))"
    if isinstance(source, (OutputRef, OneOfRef)):
        # A OneOf arrives through an importer of the chosen branch's artifact (see _one_of).
        return [f"{local}: Input[Artifact]"], f"('artifact', {local}.path)"
    if isinstance(source, ParameterRef):
        parameter = graph.parameter(source.name)
        if parameter.type in ("list", "dict"):
            # KFP carries lists and dicts as protobuf values: every number a float, keys
            # sorted. The default's shape gives the ints and the key order back.
            _kfp_default(parameter)  # checks it can be carried
            return [f"{local}: {_PARAMETER_TYPES[parameter.type]}"], \
                f"('shaped', ({local}, {parameter.default!r}))"
        return [f"{local}: {_PARAMETER_TYPES[parameter.type]}"], f"('value', {local})"
    if isinstance(source, ItemRef):
        items = source.items
        if isinstance(items, OutputRef):
            # The token; the whole list too, for an item carried by its position.
            return [f"{local}: str", f"kale_whole_{local}: Input[Artifact]"], \
                f"('item', ({local}, ('artifact', kale_whole_{local}.path)))"
        if isinstance(items, Constant):
            if by_position(item_tokens(items.value)):
                return [f"{local}: str", f"kale_whole_{local}: str"], \
                    f"('item', ({local}, ('json', kale_whole_{local})))"
            return [f"{local}: str"], f"('item', ({local}, None))"
        parameter = graph.parameter(items.name)
        kind = _loop_item_type(parameter, graph.loop(source.loop))
        template = parameter.default[0]
        if all(carried_back(item, template) for item in parameter.default):
            return [f"{local}: {kind}"], f"('shaped', ({local}, {template!r}))"
        # The first item cannot say which numbers were ints (`[2.5, 1, 3]`: 1 and 3 would
        # stay 1.0 and 3.0): the step gets the default's items, and each item the shape of
        # the one it equals.
        return [f"{local}: {kind}"], \
            f"('shaped_item', ({local}, {list(parameter.default)!r}))"
    if isinstance(source, CollectedRef):
        extra, order = _ordering(graph.loop(source.loop), local)
        return [f"{local}: Input[List[Artifact]]", *extra], \
            f"('collected', ([(part.path, part.metadata) for part in {local}], {order}))"
    if _plain_constant(source.value):
        # A literal in the pipeline body: never a macro (as in a local run).
        return [f"{local}: {type(source.value).__name__}"], f"('constant', {local})"
    # None, lists, dicts, tuples: exact, as Kale's tagged JSON in a string
    return [f"{local}: str"], f"('json', {local})"


def _container_output(source: Any, graph: Graph) -> tuple[str, str, str] | None:
    """(step, declared output, its type) when ``source`` is the output of a container step."""
    if not isinstance(source, OutputRef):
        return None
    producer = graph.step(source.step)
    if producer.container is None:
        return None
    return (producer.name, *producer.container.output_named(producer, source.variable))


def _adapted(step: Step, graph: Graph) -> list[Any]:
    """The arguments of a container step that a Kale task turns into what the container takes
    (a file, or a value's text) before it runs: the outputs of function steps and pipeline
    parameters. Literals (as text) and other containers' outputs go to it directly."""
    return [argument for argument in step.arguments
            if not isinstance(argument.source, Constant)
            and _container_output(argument.source, graph) is None]


def _container_component_source(step: Step, function_name: str) -> str:
    """A KFP container component: the step's image, its command and arguments with each
    placeholder replaced by the KFP placeholder of an input or output of the component."""
    from kale.containers import placeholder_parts

    info = step.container
    assert info is not None
    ports = _port_names(step)
    parameters, expressions = [], {}
    for name, kind in info.inputs:
        local = ports[("in", name)]
        parameters.append(f"{local}: Input[Artifact]" if kind == "file" else f"{local}: str")
        expressions[("inputs", name)] = f"str({local}.path)" if kind == "file" else \
            f"str({local})"
    for index, (name, kind) in enumerate(info.outputs):
        local = ports[("out", step.outputs[index])]
        parameters.append(f"{local}: Output[Artifact]" if kind == "file" else
                          f"{local}: OutputPath(str)")
        expressions[("outputs", name)] = f"str({local}.path)" if kind == "file" else \
            f"str({local})"

    def element(text: str) -> str:
        parts = placeholder_parts(text)
        return " + ".join(repr(part) if isinstance(part, str) else expressions[part]
                          for part in parts) or "''"

    command = ", ".join(element(text) for text in info.command)
    args = ", ".join(element(text) for text in info.args)
    return (f"def {function_name}({', '.join(parameters)}):\n"
            f"    return dsl.ContainerSpec(image={info.image!r}, command=[{command}], "
            f"args=[{args}])\n")


def _adapter_source(step: Step, graph: Graph, function_name: str) -> str:
    """The Kale task before a container step: reads the values its inputs come from (as a
    function step reads its inputs) and writes each as the container takes it: a file input as
    a file (or folder) artifact, a value input as its text (``kale.kfp.entry``)."""
    info = step.container
    assert info is not None
    ports = _port_names(step)
    parameters = ["kale_bundle: Input[Artifact]"]
    inputs, outputs = [], []
    for argument in _adapted(step, graph):
        local = ports[("in", argument.name)]
        extra, expression = _input(argument, local, graph)
        parameters.extend(extra)
        inputs.append(f"{argument.name!r}: {expression}")
        kind = info.input_type(argument.name)
        out = f"kale_out_{local}"
        parameters.append(f"{out}: Output[Artifact]" if kind == "file" else
                          f"{out}: OutputPath(str)")
        outputs.append(f"{argument.name!r}: ('file', {out}.path)" if kind == "file" else
                       f"{argument.name!r}: ('value', {out})")
    return (
        f"def {function_name}({', '.join(parameters)}):\n"
        "    import os, sys, tarfile, tempfile\n"
        "    with tempfile.TemporaryDirectory(prefix='kale-') as root:\n"
        "        with tarfile.open(kale_bundle.path) as archive:\n"
        "            archive.extractall(root)\n"
        "        sys.path.insert(0, os.path.join(root, '_kale'))\n"
        "        from kale.kfp.entry import container_inputs\n"
        f"        container_inputs({step.name!r}, root, {{{', '.join(inputs)}}},\n"
        f"                         {{{', '.join(outputs)}}},\n"
        "                         kale_bundle.metadata.get('run_id', ''),\n"
        "                         kale_bundle.metadata.get('created', ''))\n"
    )


def _iteration_type(loop: Loop, graph: Graph) -> str:
    """The type of a loop's item as a component input: a token (str), or a list parameter's
    item."""
    if isinstance(loop.items, ParameterRef):
        return _loop_item_type(graph.parameter(loop.items.name), loop)
    return "str"


def _component_source(step: Step, graph: Graph, function_name: str, flow: _Flow,
                      settings: _Settings, cached: bool = False, expects: tuple[str, ...] = ()
                      ) -> tuple[str, dict[str, Any]]:
    """The source of a step's component: typed inputs and outputs, a body that runs Kale; and
    the step's spec (what ``run_component`` reads).

    A cached step's source says nowhere where its code is (file, line, context): KFP keys the
    step by its source, and an edit elsewhere in the file must not change it. That part of the
    spec travels in the metadata of the step's own copy of the bundle (``kale.kfp.caching``)."""
    parameters = ["kale_bundle: Input[Artifact]"]
    inputs = []
    ports = _port_names(step)
    for argument in step.arguments:
        extra, expression = _input(argument, ports[("in", argument.name)], graph)
        parameters.extend(extra)
        inputs.append(f"{argument.name!r}: {expression}")
    # The artifact's metadata travels too: the step records each value's type and format there.
    outputs = [f"{name!r}: ({ports[('out', name)]}.path, {ports[('out', name)]}.metadata)"
               for name in step.outputs]
    classes = _output_classes(step)
    parameters.extend(f"{ports[('out', name)]}: Output[{classes[name]}]"
                      for name in step.outputs)
    flow_ports = []
    if step.name in flow.collected:
        parameters.append(f"kale_item: {_iteration_type(flow.collected[step.name], graph)}")
        flow_ports.append("'item': kale_item")
    uris = [name for name in step.outputs if (step.name, name) in flow.one_of]
    for name in uris:
        parameters.append(f"kale_uri_{ports[('out', name)]}: OutputPath(str)")
    from kale.kfp.logged import logged_ports

    logged, logs_port = logged_ports(step)  # what the step logs: Metrics, HTML... artifacts
    parameters.extend(logged)
    if logs_port:
        flow_ports.append(logs_port)
    if uris:
        flow_ports.append("'uris': {" + ", ".join(
            f"{name!r}: (kale_uri_{ports[('out', name)]}, {ports[('out', name)]}.uri)"
            for name in uris) + "}")
    returns = ""
    if step.condition is not None:
        # The index of the branch to run, as the return value: kfp.local (2.17) reads a task's
        # output in a dsl.If's condition only when it is named `Output`.
        returns = " -> int"
    elif len(step.item_outputs) == 1:
        returns = " -> List[str]"
    elif step.item_outputs:
        fields = ", ".join(f"({_items_output(step, name, ports)!r}, List[str])"
                           for name in step.item_outputs)
        returns = f" -> NamedTuple('Items', [{fields}])"
    function = step.function
    if step.condition is not None:
        # Generated by the parser, so in no file of the project: the code travels here, named
        # as the pipeline's file (each test sits on its own line), so a failing test reads as
        # the user's `if` in the step's log.
        relative = _bundled_path(function.filename, graph)
        file, line, lines = relative or function.filename, function.line, function.text
        context: list[Any] = []
    else:
        # The step's code travels in the bundle; the component only says where it is.
        file, line, lines = _code_reference(function.filename, function.line, function.text,
                                            graph)
        context = [_code_reference(piece.filename, piece.line, piece.text, graph)
                   for piece in function.context]
    spec = {
        "step": step.name, "function": function.function_name, "file": file, "line": line,
        "lines": lines, "module": function.module, "outputs": list(step.outputs),
        "unpacks": step.unpacks, "timeout": step.options.timeout, "grace": grace_seconds(),
        "context": context, "futures": list(function.futures),
        "item_outputs": list(step.item_outputs), "branch": step.condition is not None,
        **({"artifacts": [list(pair) for pair in function.artifacts]}
           if function.artifacts else {}),
    }
    if settings.deadline:
        # The pipeline's timeout, kept by the runtime from the run's start (see _Settings).
        spec["deadline"] = settings.deadline
    if expects:
        # --no-install: what the image must hold, checked before the step runs (entry).
        spec["expects"] = list(expects)
    if cached:
        located = {key: value for key, value in spec.items() if key not in ("timeout", "grace")}
        expression = ("{**json.loads(kale_bundle.metadata['kale_spec']), "
                      f"'timeout': {spec['timeout']!r}, 'grace': {spec['grace']!r}, "
                      "'cached': True}")
    else:
        located, expression = spec, repr(spec)
    call = (f"run_component({expression}, root,\n"
            f"                      {{{', '.join(inputs)}}},\n"
            f"                      {{{', '.join(outputs)}}},\n"
            "                      kale_bundle.metadata.get('run_id', ''),\n"
            "                      kale_bundle.metadata.get('created', ''),\n"
            f"                      {{{', '.join(flow_ports)}}})\n")
    if step.condition is not None:
        body = f"        return {call.rstrip()}['branch']\n"
    elif len(step.item_outputs) == 1:  # the tokens of the items a loop iterates
        body = f"        return {call.rstrip()}['items'][{step.item_outputs[0]!r}]\n"
    elif step.item_outputs:
        body = (f"        items = {call.rstrip()}['items']\n"
                f"        return tuple(items[name] for name in {list(step.item_outputs)!r})\n")
    else:
        body = f"        {call}"
    return (
        f"def {function_name}({', '.join(parameters)}){returns}:\n"
        f"    import {'json, ' if cached else ''}os, sys, tarfile, tempfile\n"
        # Removed at the end: kfp.local runs every step on the same machine.
        "    with tempfile.TemporaryDirectory(prefix='kale-') as root:\n"
        "        with tarfile.open(kale_bundle.path) as archive:\n"
        "            archive.extractall(root)\n"
        "        sys.path.insert(0, os.path.join(root, '_kale'))\n"
        "        from kale.kfp.entry import run_component\n"
        f"{body}"
    ), located


def _code_source(function_name: str, located: dict[str, Any]) -> str:
    """The component of a cached step's ``kale-code`` task: a copy of the run's bundle with
    where the step's code is in its metadata (``kale.kfp.caching``)."""
    import json

    return (f"def {function_name}(bundle: Input[Artifact], code: Output[Artifact]):\n"
            "    import shutil\n"
            "    shutil.copyfile(bundle.path, code.path)\n"
            f"    code.metadata['kale_spec'] = {json.dumps(located, sort_keys=True)!r}\n")


def _define(source: str, filename: str, namespace: dict[str, Any]) -> Any:
    """Define a function from generated source that ``inspect.getsource`` can read back."""
    lines = source.splitlines(keepends=True)
    linecache.cache[filename] = (len(source), None, lines, filename)
    exec(compile(source, filename, "exec", dont_inherit=True), namespace)
    return namespace[source.split("(", 1)[0].removeprefix("def ")]


#: The retry window (Argo's backoff.maxDuration) of a step without a timeout: ten years, so that
#: it never cuts retries short. Leaving it out is no way to say "none": kfp's ``RetryPolicy``
#: writes 3600s when none is given (``kfp/dsl/structures.py``), and from KFP 2.14 a task
#: without one gets the executor template's default, "0" (``addParameterDefault`` in
#: ``backend/src/v2/compiler/argocompiler/container.go@2.14.0``), which Argo reads as a window
#: that closed when the first attempt started: no retry at all.
UNBOUNDED_RETRY_WINDOW = 10 * 365 * 86400

#: Per attempt, beyond its pod's deadline: the time a retried pod may wait to be scheduled,
#: which its activeDeadlineSeconds does not count but the retry window does.
SCHEDULING_ALLOWANCE = 900


def retry_waits(options: Any) -> list[float]:
    """The waits before each retry on Kubeflow: ``retry_interval * retry_factor**(n-1)``,
    uncapped. KFP maps no per-wait cap: its ``backoff_max_duration`` becomes Argo's
    ``backoff.maxDuration``, a window from the first attempt's start, and Argo's ``backoff.cap``
    is never set (``getTaskRetryStrategyFromInput``,
    ``backend/src/v2/compiler/argocompiler/container.go@2.17.0``)."""
    return [options.retry_interval * options.retry_factor ** (n - 1)
            for n in range(1, options.retry_count + 1)]


def _retry(task: Any, step: Step, notes: list[str]) -> None:
    options = step.options
    if not options.retry_count:
        return
    waits = retry_waits(options)
    # Argo fails the node once its window has passed, counted from the first attempt's start,
    # and gives each retried pod only what is left of it as its deadline
    # (argo-workflows@v4.0.8 workflow/controller/operator.go, processNodeRetries:
    # "Max duration limit exceeded", executionDeadline). The window must hold every attempt
    # at its longest, the waits, and the time each pod may wait to be scheduled.
    if options.timeout:
        attempt = options.timeout + SETUP_ALLOWANCE + SCHEDULING_ALLOWANCE
        window = math.ceil(sum(waits) + (options.retry_count + 1) * attempt)
    else:
        window = UNBOUNDED_RETRY_WINDOW
    task.set_retry(
        num_retries=options.retry_count,
        backoff_duration=f"{int(options.retry_interval)}s",
        backoff_factor=float(options.retry_factor),
        backoff_max_duration=f"{window}s",
    )
    cap = options.retry_max_interval
    if cap is not None and any(wait > cap for wait in waits):
        shown = ", ".join(format_duration(wait) for wait in waits)
        notes.append(
            f"step `{step.name}`: retry_max_interval={format_duration(cap)} caps the waits "
            "between retries in local runs only; Kubeflow Pipelines sets no cap on a wait "
            f"(Argo's backoff.cap), so on Kubeflow the retries wait {shown}: lower retry_factor "
            "or retry_interval to shorten them")


# Seconds a step's container may take beyond the step's own timeout: unpacking the bundle and
# installing packages happen before the user's code, where the runtime's timeout starts.
SETUP_ALLOWANCE = 900


def _kubernetes(task: Any, step: Step, settings: _Settings) -> None:
    from kfp import kubernetes

    for key, value in step.options.labels.items():
        kubernetes.add_pod_label(task, key, value)
    for key, value in step.options.annotations.items():
        kubernetes.add_pod_annotation(task, key, value)
    if step.options.timeout and settings.pod_deadlines:
        # The runtime stops the user's code on time; this is the backstop for the whole pod.
        kubernetes.set_timeout(task, int(step.options.timeout) + SETUP_ALLOWANCE)


def _resources(task: Any, step: Step) -> None:
    for key, value in step.options.limits.items():
        if key == "cpu":
            task.set_cpu_limit(value)
        elif key == "memory":
            task.set_memory_limit(value)
        elif "gpu" in key:
            task.set_accelerator_type(key)
            task.set_accelerator_limit(int(value))
        else:
            warnings.warn(f"step `{step.name}`: Kubeflow cannot limit {key!r}; ignored",
                          CompileWarning, stacklevel=3)


class _Blocks:
    """The KFP groups open while the pipeline body is built (``dsl.If``/``Elif``/``Else``,
    ``dsl.ParallelFor``), kept to the scopes of the step being added. Steps come in body order,
    so a block once left never opens again, and the branches of an ``if`` chain come one after
    the other: they become one If/Elif/Else chain, which ``dsl.OneOf`` requires."""

    def __init__(self, graph: Graph, tasks: dict[str, Any],
                 ports: dict[str, dict[tuple[str, str], str]], values: dict[str, Any]) -> None:
        self.graph, self.tasks, self.ports, self.values = graph, tasks, ports, values
        self.open: list[tuple[tuple[Any, ...], Any]] = []  # (scope's key, its group)
        #: by depth: the `if` chain whose branches the groups opened last at that depth are
        #: (condition, branch indexes in order); None after any other group
        self.chains: dict[int, tuple[str, list[int]] | None] = {}
        self.loop_items: dict[str, Any] = {}  # loop name -> the channel of its item
        self.importers: dict[tuple[Any, ...], Any] = {}

    @staticmethod
    def key(scope: Branch | Loop) -> tuple[Any, ...]:
        if isinstance(scope, Loop):
            return ("loop", scope.name)
        return ("branch", scope.condition, scope.index)

    def enter(self, scopes: tuple[Branch | Loop, ...]) -> None:
        """Close the groups the next step is not in, open the ones it is in."""
        keys = [self.key(scope) for scope in scopes]
        common = 0
        while common < min(len(keys), len(self.open)) and self.open[common][0] == keys[common]:
            common += 1
        while len(self.open) > common:
            _, group = self.open.pop()
            group.__exit__(None, None, None)
            for depth in [depth for depth in self.chains if depth > len(self.open)]:
                del self.chains[depth]
        for scope in scopes[common:]:
            self.open.append((self.key(scope), self.group(scope, len(self.open))))

    def group(self, scope: Branch | Loop, depth: int) -> Any:
        from kfp import dsl

        if isinstance(scope, Loop):
            self.chains[depth] = None
            group = dsl.ParallelFor(self.items(scope.items),
                                    parallelism=self.graph.options.loop_parallelism)
            self.loop_items[scope.name] = group.__enter__()
            return group
        info = self.graph.step(scope.condition).condition
        assert info is not None
        branch = self.tasks[scope.condition].outputs["Output"]
        chain = self.chains.get(depth)
        if chain is None or chain[0] != scope.condition:
            group, before = dsl.If(branch == scope.index), []
        elif info.has_else and scope.index == len(info.tests) and chain[1] == list(
                range(scope.index)):
            # An Else negates the branches before it: only where each of them is a group.
            group, before = dsl.Else(), chain[1]
        else:
            group, before = dsl.Elif(branch == scope.index), chain[1]
        self.chains[depth] = (scope.condition, [*before, scope.index])
        group.__enter__()
        return group

    def item(self, loop: str) -> Any:
        return self.loop_items[loop]

    def output(self, ref: OutputRef) -> Any:
        """A step output's artifact."""
        return self.tasks[ref.step].outputs[self.ports[ref.step][("out", ref.variable)]]

    def items(self, items: ParameterRef | OutputRef | Constant) -> Any:
        """What a loop iterates: never the values themselves (Kubeflow makes ints floats) but
        their tokens, numbered (``kale.items``); a list parameter as it is."""
        if isinstance(items, ParameterRef):
            return self.values[items.name]
        if isinstance(items, Constant):
            return numbered(item_tokens(items.value))
        step = self.graph.step(items.step)
        return self.tasks[items.step].outputs[_items_output(step, items.variable,
                                                             self.ports[items.step])]

    def one_of(self, ref: OneOfRef) -> Any:
        """The artifact of the branch that ran.

        Not ``dsl.OneOf`` of the artifacts themselves: kfp.local 2.17 cannot run that
        ("Expected 1 artifact in ArtifactSelectorSpec"), and Kubeflow's driver took the last
        branch's artifact whichever ran until kubeflow/pipelines#13436 was fixed (#13437,
        2026; KFP 2.16 has the bug). A OneOf of parameters works on both: each branch's step
        also writes its artifact's URI, and an importer brings in the one of the branch that
        ran (as a bundle from the bundle store comes in, with the cluster's credentials)."""
        from kfp import dsl

        key = (ref, tuple(key for key, _ in self.open))
        if key not in self.importers:
            uris = [self.tasks[option.step].outputs[
                f"kale_uri_{self.ports[option.step][('out', option.variable)]}"]
                for option in ref.options]
            classes = {_output_classes(self.graph.step(option.step))[option.variable]
                       for option in ref.options}
            kind = classes.pop() if len(classes) == 1 else "Artifact"
            importer = dsl.importer(artifact_uri=dsl.OneOf(*uris),
                                    artifact_class=getattr(dsl, kind), reimport=False)
            importer.set_display_name(f"{ref.options[0].variable} (one of)")
            self.importers[key] = importer
        return self.importers[key].output


@dataclass(frozen=True)
class Compiled:
    """What went into a package: the project bundle, and the image and packages of its steps."""

    bundle: Bundle
    environment: Environments
    bundle_uri: str | None = None  # where the bundle was uploaded; None: inline
    caching: CachePlan | None = None  # the steps Kubeflow may reuse
    #: what was compiled another way than asked, for the server it is compiled for, and why
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class _Settings:
    """How the package is compiled for its server (``kale.kfp.server``)."""

    #: the pipeline's timeout as ``pipelineConfig`` (KFP 2.17 and later)
    pipeline_config: bool = True
    #: the pipeline's timeout kept by Kale's runtime instead: each step stops at the run's
    #: start (as the kale-bundle task recorded it) plus this many seconds
    deadline: float | None = None
    #: a step's timeout as its pod's activeDeadlineSeconds too (KFP 2.1 and later)
    pod_deadlines: bool = True


def uses_run_id(graph: Graph, values: dict[str, Any] | None = None) -> bool:
    """Whether a parameter's default, or a value of this run, holds ``[[RunUUID]]`` (the
    runtime expands macros in parameters only; a literal in the body is never a macro)."""
    def holds(value: Any) -> bool:
        if isinstance(value, str):
            return "[[RunUUID" in value
        if isinstance(value, dict):
            return any(holds(item) for item in value.values())
        return isinstance(value, (list, tuple)) and any(holds(item) for item in value)

    return any(holds(p.default) for p in graph.parameters) or any(
        holds(value) for value in (values or {}).values())


def _for_server(graph: Graph, target: Target) -> tuple[_Settings, list[str]]:
    """How to compile ``graph`` for ``target``, and the notes that say what was done another
    way; raises ``KaleError`` for what that server would drop or break (the rules and their
    sources are in ``kale.kfp.server``)."""
    steps = graph.user_steps
    labelled = [s.name for s in steps if s.options.labels or s.options.annotations]
    retried = [s.name for s in steps if s.options.retry_count]
    timed = [s.name for s in steps if s.options.timeout and s.container is None]
    # A container step's timeout is its pod's deadline alone: nothing of Kale runs there.
    contained = [s.name for s in steps if s.options.timeout and s.container is not None]
    refused = []

    def needs(release: server.Version, what: str, why: str, fix: str) -> None:
        if not target.supports(release):
            refused.append(f"{what} needs Kubeflow Pipelines {server.spelled(release)} or "
                           f"later ({why}); fix: {fix}")

    if labelled:
        needs(server.POD_METADATA_PER_TASK, f"the labels or annotations of {_names(labelled)}",
              "earlier releases put the first task's labels on every pod of the steps without "
              "retries, kubeflow/pipelines#12049, and 2.0.x fails the task",
              "upgrade the server, or remove labels and annotations from the steps")
    if retried:
        needs(server.RETRIES, f"the retries of {_names(retried)}",
              "earlier releases ignore a task's retry policy",
              "upgrade the server, or set retry_count=0")
    if contained:
        needs(server.STEP_POD_SETTINGS, f"the timeouts of container {_names(contained)}",
              "a container step's timeout is its pod's deadline, and 2.0.x fails a task whose "
              "pod has one", "upgrade the server, or leave the timeout out")
    if uses_run_id(graph):
        needs(server.RUN_ID, "[[RunUUID]] in a parameter's default",
              "earlier drivers do not replace the run-id placeholder Kale reads it from",
              "upgrade the server, or leave [[RunUUID]] out of the parameters")
    if refused:
        raise KaleError(f"pipeline {graph.name} cannot run as written on {target.named}: "
                        + "; ".join(refused),
                        fix="see each fix above; Kale's README lists what each release honours")
    settings, notes = _Settings(), []
    if graph.options.timeout and not target.supports(server.PIPELINE_TIMEOUT):
        settings = _Settings(pipeline_config=False, deadline=graph.options.timeout)
        notes.append(
            f"the pipeline's timeout ({format_duration(graph.options.timeout)}) is kept by "
            "Kale in each step, counted from the run's start: "
            f"{target.named} would drop the pipelineConfig that carries it (known from "
            f"{server.spelled(server.PIPELINE_TIMEOUT)}), and with it every step's timeout, "
            "labels and annotations; a step still running at the deadline is stopped and "
            "fails the run, but a step waiting for its pod is not")
    if timed and not target.supports(server.STEP_POD_SETTINGS):
        settings = _Settings(settings.pipeline_config, settings.deadline, pod_deadlines=False)
        notes.append(
            f"the timeouts of {_names(timed)} are kept by Kale's runtime alone, without the "
            f"pod deadline that backs them: {target.named} fails a task whose pod has one "
            f"(known from {server.spelled(server.STEP_POD_SETTINGS)})")
    if target.version is None:
        wanted = max([server.MINIMUM]
                     + [server.PIPELINE_TIMEOUT] * bool(graph.options.timeout)
                     + [server.POD_METADATA_PER_TASK] * bool(labelled)
                     + [server.RETRIES] * bool(retried or uses_run_id(graph))
                     + [server.STEP_POD_SETTINGS] * bool(timed or contained))
        if wanted > server.MINIMUM:
            said = f" ({target.source})" if target.source != "not known" else ""
            notes.append(f"compiled for Kubeflow Pipelines {server.spelled(wanted)} or later"
                         f"{said}; for an older server give --server-version, and Kale "
                         "compiles for it or says what it cannot run")
    return settings, notes


def _names(steps: list[str]) -> str:
    shown = ", ".join(f"`{name}`" for name in steps[:5])
    more = f" and {len(steps) - 5} more" if len(steps) > 5 else ""
    return f"step{'s' if len(steps) > 1 else ''} {shown}{more}"




def compile_graph(graph: Graph, package_path: str, *, image: str | None = None,
                  requirements: str | None = None, bundle: Bundle | None = None,
                  bundle_store: str | None = None, upload: bool = False,
                  cache: bool | None = None, values: dict[str, Any] | None = None,
                  target: Target = NEWEST, install: bool | None = None) -> Compiled:
    """Write the pipeline package (YAML) for ``graph`` to ``package_path``.

    The image and packages come from ``kale.kfp.requirements`` (flags, environment,
    ``[tool.kale]``, the project's declarations, or inferred). A bundle too big for the package
    is uploaded to the bundle store (``bundle_store``, else the configured one) when ``upload``;
    otherwise it stays inline, with a warning.

    ``cache`` (``--cache``/``--no-cache``) turns Kubeflow's caching on or off for every step;
    ``None`` leaves it to each step's ``cache`` option. ``values`` are the run's parameter
    values where known (a macro in one keeps the steps it reaches from being cached).

    ``target`` is the server it is compiled for (``kale.kfp.server``): what that release would
    drop or break is refused, or compiled another way and said in ``Compiled.notes``.
    ``install`` False (``--no-install``) installs nothing in the steps' pods."""
    try:
        from kfp import dsl
        from kfp.dsl import Artifact, Dataset, Input, Model, Output
    except ImportError as error:
        raise KaleError(f"compiling for Kubeflow needs the kfp SDK ({error})",
                        fix="pip install 'kfp>=2.17,<2.18'") from None
    _project_path.cache_clear()
    bundle = bundle or build_bundle(graph.project_root)
    _check_steps_travel(graph, bundle)
    _check_kale_imports(graph)
    settings, notes = _for_server(graph, target)
    environment = resolve(graph, image, requirements, install)
    bundle_uri = place_bundle(bundle, configured_store(graph.project_root, bundle_store),
                              upload=upload, target=target, notes=notes)
    namespace: dict[str, Any] = {"Input": Input, "Output": Output, "Artifact": Artifact,
                                 "Dataset": Dataset, "Model": Model, "List": list,
                                 "NamedTuple": typing.NamedTuple, "OutputPath": dsl.OutputPath,
                                 "Metrics": dsl.Metrics, "HTML": dsl.HTML,
                                 "Markdown": dsl.Markdown,
                                 "ClassificationMetrics": dsl.ClassificationMetrics}
    prefix = f"<kale {graph.name}"
    delivery = BundleDelivery(bundle, bundle_uri)
    delivery.define(lambda source, label: _define(source, f"{prefix} {label}>", namespace),
                    environment.image, environment.install)
    components, code_components, code_keys = {}, {}, {}
    original, (graph, gathers) = graph, _gathered(graph)
    # kfp's loader takes the component named like the pipeline for the pipeline itself.
    step_names = _function_names(graph, reserved=(*delivery.function_names,
                                                  _identifier(graph.name)))
    adapters = {}  # container step -> the component of the Kale task before it
    flow = _flow(graph)
    caching = cache_plan(graph, cache, values)
    keys = CodeKeys(graph, bundle)
    used = set(step_names.values()) | set(delivery.function_names) | {_identifier(graph.name)}
    for step in graph.steps:
        name = step_names[step.name]
        if step.container is not None:
            namespace["dsl"] = dsl
            components[step.name] = dsl.container_component(_define(
                _container_component_source(step, name), f"{prefix} {step.name}>", namespace))
            if _adapted(step, graph):
                adapter = candidate = f"kale_{name}_inputs"
                while candidate in used:
                    candidate = f"{adapter}_{len(used)}"
                used.add(candidate)
                function = _define(_adapter_source(step, graph, candidate),
                                   f"{prefix} {step.name} inputs>", namespace)
                adapters[step.name] = _python_component(function, environment.pipeline,
                                                        environment.install)
            continue
        cached = step.name in caching.cached
        # A condition reads what the steps before it made: the pipeline's packages have it all.
        # So does a gather of collected results (their types need the packages that made them).
        own = environment.of(step.name) if step.condition is None and \
            step.name not in gathers else environment.pipeline
        expects = () if environment.install else own.packages
        source, located = _component_source(step, graph, name, flow, settings, cached, expects)
        function = _define(source, f"{prefix} {step.name}>", namespace)
        if cached:
            code_name, index = f"kale_code_{name}", 1
            while code_name in used:
                index += 1
                code_name = f"kale_code_{name}_{index}"
            used.add(code_name)
            code_components[step.name] = dsl.component(
                _define(_code_source(code_name, located), f"{prefix} {step.name} code>",
                        namespace), base_image=environment.image,
                install_kfp_package=environment.install)
            code_keys[step.name] = keys.key(step, located)
        components[step.name] = _python_component(function, own, environment.install)
    display = task_display_names(graph)
    all_ports = {step.name: _port_names(step) for step in graph.steps}

    def body(**values: Any) -> None:
        source = delivery.add_tasks()
        tasks: dict[str, Any] = {}
        codes: dict[str, Any] = {}
        for step in graph.steps:  # at the root: a loop or a branch may hold the step
            if step.name in code_components:
                code = code_components[step.name](bundle=source.outputs["bundle"])
                code.set_display_name(f"kale-code-{display[step.name]}")
                code.set_caching_options(True, cache_key=code_keys[step.name])
                codes[step.name] = code
        blocks = _Blocks(graph, tasks, all_ports, values)

        def wire(argument: Any, local: str, arguments: dict[str, Any]) -> None:
            """The task argument(s) of one step input, by where its value comes from."""
            value = argument.source
            if isinstance(value, ParameterRef):
                arguments[local] = values[value.name]
            elif isinstance(value, Constant):
                constant = value.value
                arguments[local] = constant if \
                    _plain_constant(constant) else _plain_json(constant)
            elif isinstance(value, OutputRef):
                arguments[local] = tasks[value.step].outputs[
                    all_ports[value.step][("out", value.variable)]]
            elif isinstance(value, ItemRef):
                arguments[local] = blocks.item(value.loop)
                if isinstance(value.items, OutputRef):
                    arguments[f"kale_whole_{local}"] = blocks.output(value.items)
                elif isinstance(value.items, Constant) and by_position(
                        item_tokens(value.items.value)):
                    arguments[f"kale_whole_{local}"] = _plain_json(value.items.value)
            elif isinstance(value, CollectedRef):
                arguments[local] = dsl.Collected(tasks[value.step].outputs[
                    all_ports[value.step][("out", value.variable)]])
                items = graph.loop(value.loop).items
                if isinstance(items, ParameterRef):
                    arguments[f"kale_order_{local}"] = values[items.name]
            else:
                arguments[local] = blocks.one_of(value)

        for step in graph.steps:
            blocks.enter(step.scopes)
            if step.container is not None:
                tasks[step.name] = _container_task(
                    step, graph, components[step.name], adapters.get(step.name), tasks,
                    all_ports, display[step.name], wire, source.outputs["bundle"], notes)
                continue
            arguments: dict[str, Any] = {
                "kale_bundle": codes[step.name].outputs["code"] if step.name in codes
                else source.outputs["bundle"],
            }
            ports = all_ports[step.name]
            for argument in step.arguments:
                wire(argument, ports[("in", argument.name)], arguments)
            if step.name in flow.collected:
                arguments["kale_item"] = blocks.item(flow.collected[step.name].name)
            task = components[step.name](**arguments)
            task.set_display_name(display[step.name])
            # KFP's own key, which for a cached step covers its code through its code copy
            # (kale.kfp.caching); any other step runs every time, as in a local run.
            task.set_caching_options(step.name in codes)
            _retry(task, step, notes)
            _resources(task, step)
            _kubernetes(task, step, settings)
            tasks[step.name] = task
        blocks.enter(())

    pipeline_function = _pipeline_function(graph, body)
    config = dsl.PipelineConfig(active_deadline_seconds=int(graph.options.timeout)) \
        if graph.options.timeout and settings.pipeline_config else None
    decorated = dsl.pipeline(name=graph.name, display_name=graph.options.display_name,
                             description=graph.options.description or graph.docstring,
                             pipeline_config=config)(pipeline_function)
    spec = write_package(decorated, package_path)
    _check_root_size(spec, original)
    return Compiled(bundle, environment, bundle_uri, caching, tuple(notes))


def _python_component(function: Any, own: Any, install: bool) -> Any:
    """A Lightweight Python Component of Kale's, in ``own``'s image with its packages; with
    ``install`` False (``--no-install``) nothing is installed: the image holds kfp and the
    packages, and the step checks them (``kale.kfp.entry``)."""
    from kfp import dsl

    if not install:
        return dsl.component(function, base_image=own.image, install_kfp_package=False)
    return dsl.component(function, base_image=own.image,
                         packages_to_install=list(own.packages) or None,
                         pip_index_urls=list(own.index_urls) or None)


def _container_task(step: Step, graph: Graph, component: Any, adapter: Any,
                    tasks: dict[str, Any], all_ports: dict[str, dict[tuple[str, str], str]],
                    display: str, wire: Any, bundle: Any, notes: list[str]) -> Any:
    """The task of a container step, after the Kale task that prepares its inputs (if any),
    with the step's options: retries, limits, environment, pod labels and annotations, and
    its timeout as the pod's deadline (nothing of Kale runs in the image to count it)."""
    from kfp import kubernetes

    from kale.containers import value_text

    info = step.container
    assert info is not None
    ports = all_ports[step.name]
    prepared: dict[str, Any] = {}
    if adapter is not None:
        arguments: dict[str, Any] = {"kale_bundle": bundle}
        adapted = _adapted(step, graph)
        for argument in adapted:
            wire(argument, ports[("in", argument.name)], arguments)
        before = adapter(**arguments)
        before.set_display_name(f"{display} (inputs)")
        before.set_caching_options(False)
        prepared = {argument.name: before.outputs[f"kale_out_{ports[('in', argument.name)]}"]
                    for argument in adapted}
    arguments = {}
    for argument in step.arguments:
        local, value = ports[("in", argument.name)], argument.source
        if argument.name in prepared:
            arguments[local] = prepared[argument.name]
        elif isinstance(value, Constant):
            arguments[local] = value_text(value.value, f"input `{argument.name}` of container "
                                          f"step `{step.name}`")
        else:
            arguments[local] = tasks[value.step].outputs[
                all_ports[value.step][("out", value.variable)]]
    task = component(**arguments)
    task.set_display_name(display)
    task.set_caching_options(False)  # a step runs every time, as in a local run
    for key, text in info.env:
        task.set_env_variable(key, text)
    _retry(task, step, notes)
    _resources(task, step)
    for key, text in step.options.labels.items():
        kubernetes.add_pod_label(task, key, text)
    for key, text in step.options.annotations.items():
        kubernetes.add_pod_annotation(task, key, text)
    if step.options.timeout:
        kubernetes.set_timeout(task, max(1, int(step.options.timeout)))
    return task


#: Linux's limit on one command-line argument (MAX_ARG_STRLEN).
ARGUMENT_LIMIT = 128 * 1024


def _check_root_size(spec: dict[str, Any], graph: Graph) -> None:
    """Warn when the pipeline's DAG is too big for the one argument Kubeflow passes it in."""
    import json

    size = len(json.dumps(spec["root"], separators=(",", ":")))
    if size <= ARGUMENT_LIMIT * 0.9:
        return
    values = {f"the default of parameter `{p.name}`": len(json.dumps(p.default, default=str))
              for p in graph.parameters}
    for step in graph.steps:
        for argument in step.arguments:
            if isinstance(argument.source, Constant):
                values[f"the value given to `{argument.name}` of step `{step.name}`"] = len(
                    json.dumps(argument.source.value, default=str))
    biggest = max(values.items(), key=lambda item: item[1], default=("", 0))
    if biggest[1] > size / 4:
        advice = (f"{biggest[0]} alone is {biggest[1] // 1024} KB: have a step read such data "
                  "from a file or storage instead")
    else:
        advice = "split it into smaller pipelines"
    warnings.warn(
        f"the DAG of pipeline {graph.name} ({_shape(graph)}) is "
        f"{size // 1024} KB as JSON; Kubeflow hands it to the run's first driver as one "
        f"command-line argument, and Linux refuses one over {ARGUMENT_LIMIT // 1024} KB, so the "
        f"run may not start (\"argument list too long\"): {advice}",
        CompileWarning, stacklevel=3)


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


def _shape(graph: Graph) -> str:
    """``3 steps``, ``3 steps, 1 condition, 2 loops``: the user's steps, then the control flow
    (a condition is a task of its own, but not a step the user wrote)."""
    conditions = len(graph.steps) - len(graph.user_steps)
    return ", ".join([_count(len(graph.user_steps), "step"),
                      *([_count(conditions, "condition")] if conditions else []),
                      *([_count(len(graph.loops), "loop")] if graph.loops else [])])


def _comment_lines(header: str) -> str:
    """kfp's header comment with every line a comment: a default or description holding a line
    break (or another character YAML breaks lines at) would otherwise end the comment and make
    the rest of the line YAML that cannot be read (kubeflow/pipelines#10438)."""
    header = re.sub(r"[\r\x85\u2028\u2029\x00-\x08\x0b\x0c\x0e-\x1f\x7f]",
                    lambda match: repr(match.group())[1:-1], header)
    return "\n".join(line if not line or line.startswith("#") else f"#   {line}"
                     for line in header.split("\n"))


def write_package(pipeline: Any, package_path: str) -> dict[str, Any]:
    """Write a ``dsl.pipeline``'s package as ``kfp.compiler.Compiler().compile`` does, with
    libyaml's emitter when PyYAML has it.

    kfp builds the whole pipeline spec when the pipeline is defined; what is left is turning it
    into YAML, which kfp does with PyYAML's pure-Python emitter and which takes most of the
    compile time of a big pipeline. The document is the same (tests compare the two)."""
    import yaml
    from google.protobuf import json_format
    from kfp.compiler import compiler, pipeline_spec_builder

    spec = json_format.MessageToDict(pipeline.pipeline_spec)
    dumper = getattr(yaml, "CSafeDumper", None)
    if dumper is None or not package_path.lower().endswith((".yaml", ".yml")):
        compiler.Compiler().compile(pipeline, package_path)
        return spec
    documents = [spec]
    if len(pipeline.platform_spec.platforms) > 0:
        documents.append(json_format.MessageToDict(pipeline.platform_spec))
    header = pipeline_spec_builder.extract_comments_from_pipeline_spec(spec,
                                                                       pipeline.description)
    partial = f"{package_path}.{os.getpid()}.partial"  # never a half-written package
    try:
        with open(partial, "w") as handle:
            handle.write(_comment_lines(header))
            yaml.dump_all(documents, handle, Dumper=dumper, sort_keys=True)
        os.replace(partial, package_path)
    except BaseException as error:
        with contextlib.suppress(OSError):
            os.unlink(partial)
        if not isinstance(error, OSError):
            raise
        raise KaleError(f"the package cannot be written to {package_path}: {error.strerror}",
                        fix="choose a path you can write to with -o") from None
    return spec


def _plain_json(value: Any) -> str:
    import json

    from kale.marshal.codec import encode

    return json.dumps(encode(value))


def _ascii(name: str) -> str:
    import unicodedata

    # Letters NFKD does not take apart into a letter and a mark.
    spelled = name.translate(str.maketrans({"ß": "ss", "æ": "ae", "Æ": "AE", "ø": "o",
                                            "Ø": "O", "œ": "oe", "Œ": "OE", "ł": "l", "Ł": "L",
                                            "đ": "d", "þ": "th"}))
    folded = unicodedata.normalize("NFKD", spelled).encode("ascii", "ignore").decode()
    return folded if folded.isidentifier() else _identifier(name)


def _pipeline_function(graph: Graph, body: Any) -> Any:
    """A function with the pipeline's parameters, typed and with defaults, as kfp wants."""
    for parameter in graph.parameters:
        if not parameter.name.isascii():
            raise KaleError(
                f"pipeline parameter `{parameter.name}` has a name Kubeflow does not accept: "
                "its parameters are named with ASCII letters, digits and _",
                location=parameter.location,
                fix=f"rename it, for example `{_ascii(parameter.name)}`")
    parameters = ", ".join(f"{p.name}: {_PARAMETER_TYPES[p.type]} = {_kfp_default(p)!r}"
                           for p in graph.parameters)
    names = ", ".join(f"{p.name!r}: {p.name}" for p in graph.parameters)
    # Dunder names cannot be pipeline parameters (they are Kubeflow-safe names): no clash.
    source = f"def pipeline({parameters}):\n    __kale_body__(**{{{names}}})\n"
    return _define(source, f"<kale {graph.name} pipeline>", {"__kale_body__": body})


def describe(graph: Graph, compiled: Compiled, package_path: str) -> str:
    """What was compiled, for the user: steps, bundle size, options that apply."""
    timeout = f", timeout {format_duration(graph.options.timeout)}" if graph.options.timeout \
        else ""
    bundle, environment = compiled.bundle, compiled.environment
    place = f", uploaded to {compiled.bundle_uri}" if compiled.bundle_uri else ""
    lines = [f"kale: compiled pipeline {graph.name} ({_shape(graph)}{timeout}) to {package_path}; "
             f"project bundle {bundle.size / 1024:.0f} KB "
             f"({_count(len(bundle.files), 'file')}{place})",
             *([f"  kept out as secrets: "
                f"{', '.join(f'{name} ({why})' for name, why in bundle.reasons)}"]
               if bundle.withheld else []),
             f"  image {environment.image}; packages ({environment.source}): "
             f"{', '.join(environment.packages) or 'none'}" + (
                 "" if environment.install else
                 "; none installed (--no-install): the image must hold kfp and these, and "
                 "each step checks that they are there before it runs")]
    caching = compiled.caching or CachePlan(frozenset())
    if caching.cached:
        names = [step.name for step in graph.user_steps if step.name in caching.cached]
        lines.append(f"  cached on Kubeflow (unchanged steps reused): {', '.join(names)}")
    for name, why in caching.refused:
        lines.append(f"  step {name} not cached: {why}")
    for step in graph.user_steps:
        own = environment.of(step.name)
        if (own.image, own.source) != (environment.image, environment.source):
            lines.append(f"  step {step.name}: image {own.image}; packages: "
                         f"{', '.join(own.packages) or 'none'}")
    lines.extend(f"  note: {note}" for note in compiled.notes)
    return "\n".join(lines)
