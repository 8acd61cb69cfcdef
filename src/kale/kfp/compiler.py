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
import linecache
import os
import re
import warnings
from dataclasses import dataclass
from typing import Any

from kale.errors import CompileWarning, KaleError, SourceLocation
from kale.graph.model import Constant, Graph, OutputRef, ParameterRef, Step
from kale.kfp.bundle import Bundle, build_bundle, carries_kale_module
from kale.kfp.delivery import BundleDelivery, place_bundle
from kale.kfp.requirements import Environments, resolve
from kale.kfp.store import configured_store
from kale.options import format_duration
from kale.runtime import grace_seconds
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
          "Model", "kfp", "dsl", "importer"}


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
    for kind, name in [("in", argument.name) for argument in step.arguments] + [
            ("out", output) for output in step.outputs]:
        wanted = candidate = f"{kind}_{_identifier(name)}"
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

    return {step.name: unique(_identifier(step.name)) for step in graph.steps}


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
    for step in graph.steps:
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
    if not os.path.isfile(filename):
        return None
    path, root = os.path.realpath(filename), os.path.realpath(graph.project_root)
    if os.path.commonpath([path, root]) != root:
        return None
    return os.path.relpath(path, root).replace(os.sep, "/")


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


def _component_source(step: Step, graph: Graph, function_name: str) -> str:
    """The source of a step's component: typed inputs and outputs, a body that runs Kale."""
    parameters = ["kale_bundle: Input[Artifact]"]
    inputs = []
    ports = _port_names(step)
    for argument in step.arguments:
        source = argument.source
        local = ports[("in", argument.name)]
        if isinstance(source, OutputRef):
            parameters.append(f"{local}: Input[Artifact]")
            inputs.append(f"{argument.name!r}: ('artifact', {local}.path)")
        elif isinstance(source, ParameterRef):
            parameter = graph.parameter(source.name)
            parameters.append(f"{local}: {_PARAMETER_TYPES[parameter.type]}")
            if parameter.type in ("list", "dict"):
                # KFP carries lists and dicts as protobuf values: every number a float, keys
                # sorted. The default's shape gives the ints and the key order back.
                _kfp_default(parameter)  # checks it can be carried
                shape = parameter.default
                inputs.append(f"{argument.name!r}: ('shaped', ({local}, {shape!r}))")
            else:
                inputs.append(f"{argument.name!r}: ('value', {local})")
        elif _plain_constant(source.value):
            # A literal in the pipeline body: never a macro (as in a local run).
            parameters.append(f"{local}: {type(source.value).__name__}")
            inputs.append(f"{argument.name!r}: ('constant', {local})")
        else:  # None, lists, dicts, tuples: exact, as Kale's tagged JSON in a string
            parameters.append(f"{local}: str")
            inputs.append(f"{argument.name!r}: ('json', {local})")
    # The artifact's metadata travels too: the step records each value's type and format there.
    outputs = [f"{name!r}: ({ports[('out', name)]}.path, {ports[('out', name)]}.metadata)"
               for name in step.outputs]
    classes = _output_classes(step)
    parameters.extend(f"{ports[('out', name)]}: Output[{classes[name]}]"
                      for name in step.outputs)
    function = step.function
    # The step's code travels in the bundle; the component only says where it is.
    file, line, lines = _code_reference(function.filename, function.line, function.text, graph)
    spec = {
        "step": step.name, "function": function.function_name, "file": file, "line": line,
        "lines": lines, "module": function.module, "outputs": list(step.outputs),
        "unpacks": step.unpacks, "timeout": step.options.timeout, "grace": grace_seconds(),
        "context": [_code_reference(piece.filename, piece.line, piece.text, graph)
                    for piece in function.context],
        "futures": list(function.futures),
    }
    return (
        f"def {function_name}({', '.join(parameters)}):\n"
        "    import os, sys, tarfile, tempfile\n"
        # Removed at the end: kfp.local runs every step on the same machine.
        "    with tempfile.TemporaryDirectory(prefix='kale-') as root:\n"
        "        with tarfile.open(kale_bundle.path) as archive:\n"
        "            archive.extractall(root)\n"
        "        sys.path.insert(0, os.path.join(root, '_kale'))\n"
        "        from kale.kfp.entry import run_component\n"
        f"        run_component({spec!r}, root,\n"
        f"                      {{{', '.join(inputs)}}},\n"
        f"                      {{{', '.join(outputs)}}},\n"
        "                      kale_bundle.metadata.get('run_id', ''),\n"
        "                      kale_bundle.metadata.get('created', ''))\n"
    )


def _define(source: str, filename: str, namespace: dict[str, Any]) -> Any:
    """Define a function from generated source that ``inspect.getsource`` can read back."""
    lines = source.splitlines(keepends=True)
    linecache.cache[filename] = (len(source), None, lines, filename)
    exec(compile(source, filename, "exec", dont_inherit=True), namespace)
    return namespace[source.split("(", 1)[0].removeprefix("def ")]


def _retry(task: Any, step: Step) -> None:
    options = step.options
    if not options.retry_count:
        return
    # KFP's backoff_max_duration is the cap of one wait (Kale's retry_max_interval), but Argo
    # also reads it as the window for all retries; make it long enough for every attempt.
    waits = sum(options.retry_delay(n) for n in range(1, options.retry_count + 1))
    cap = options.retry_max_interval or max(options.retry_delay(options.retry_count), 1)
    window = waits + (options.retry_count + 1) * (options.timeout or 24 * 3600)
    task.set_retry(
        num_retries=options.retry_count,
        backoff_duration=f"{int(options.retry_interval)}s",
        backoff_factor=float(options.retry_factor),
        backoff_max_duration=f"{int(max(cap, window))}s",
    )


# Seconds a step's container may take beyond the step's own timeout: unpacking the bundle and
# installing packages happen before the user's code, where the runtime's timeout starts.
SETUP_ALLOWANCE = 900


def _kubernetes(task: Any, step: Step) -> None:
    from kfp import kubernetes

    for key, value in step.options.labels.items():
        kubernetes.add_pod_label(task, key, value)
    for key, value in step.options.annotations.items():
        kubernetes.add_pod_annotation(task, key, value)
    if step.options.timeout:
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


@dataclass(frozen=True)
class Compiled:
    """What went into a package: the project bundle, and the image and packages of its steps."""

    bundle: Bundle
    environment: Environments
    bundle_uri: str | None = None  # where the bundle was uploaded; None: inline


def compile_graph(graph: Graph, package_path: str, *, image: str | None = None,
                  requirements: str | None = None, bundle: Bundle | None = None,
                  bundle_store: str | None = None, upload: bool = False) -> Compiled:
    """Write the pipeline package (YAML) for ``graph`` to ``package_path``.

    The image and packages come from ``kale.kfp.requirements`` (flags, environment,
    ``[tool.kale]``, the project's declarations, or inferred). A bundle too big for the package
    is uploaded to the bundle store (``bundle_store``, else the configured one) when ``upload``;
    otherwise it stays inline, with a warning."""
    try:
        from kfp import dsl
        from kfp.dsl import Artifact, Dataset, Input, Model, Output
    except ImportError as error:
        raise KaleError(f"compiling for Kubeflow needs the kfp SDK ({error})",
                        fix="pip install 'kfp>=2.17,<2.18'") from None
    bundle = bundle or build_bundle(graph.project_root)
    _check_steps_travel(graph, bundle)
    _check_kale_imports(graph)
    environment = resolve(graph, image, requirements)
    bundle_uri = place_bundle(bundle, configured_store(graph.project_root, bundle_store),
                              upload=upload)
    namespace: dict[str, Any] = {"Input": Input, "Output": Output, "Artifact": Artifact,
                                 "Dataset": Dataset, "Model": Model}
    prefix = f"<kale {graph.name}"
    delivery = BundleDelivery(bundle, bundle_uri)
    # kfp's loader takes the component named like the pipeline for the pipeline itself.
    step_names = _function_names(graph, reserved=(*delivery.function_names,
                                                  _identifier(graph.name)))
    delivery.define(lambda source, label: _define(source, f"{prefix} {label}>", namespace),
                    environment.image)
    components = {}
    for step in graph.steps:
        name = step_names[step.name]
        function = _define(_component_source(step, graph, name), f"{prefix} {step.name}>",
                           namespace)
        own = environment.of(step.name)
        components[step.name] = dsl.component(
            function, base_image=own.image, packages_to_install=list(own.packages) or None,
            pip_index_urls=list(own.index_urls) or None)
    display = task_display_names(graph)
    all_ports = {step.name: _port_names(step) for step in graph.steps}

    def body(**values: Any) -> None:
        source = delivery.add_tasks()
        tasks: dict[str, Any] = {}
        for step in graph.steps:
            arguments: dict[str, Any] = {
                "kale_bundle": source.outputs["bundle"],
            }
            ports = all_ports[step.name]
            for argument in step.arguments:
                value = argument.source
                if isinstance(value, ParameterRef):
                    arguments[ports[("in", argument.name)]] = values[value.name]
                elif isinstance(value, Constant):
                    constant = value.value
                    arguments[ports[("in", argument.name)]] = constant if \
                        _plain_constant(constant) else _plain_json(constant)
                else:
                    producer = tasks[value.step]
                    arguments[ports[("in", argument.name)]] = producer.outputs[
                        all_ports[value.step][("out", value.variable)]]
            task = components[step.name](**arguments)
            task.set_display_name(display[step.name])
            task.set_caching_options(False)  # a step runs every time, as in a local run
            _retry(task, step)
            _resources(task, step)
            _kubernetes(task, step)
            tasks[step.name] = task

    pipeline_function = _pipeline_function(graph, body)
    config = dsl.PipelineConfig(active_deadline_seconds=int(graph.options.timeout)) \
        if graph.options.timeout else None
    decorated = dsl.pipeline(name=graph.name, display_name=graph.options.display_name,
                             description=graph.options.description or graph.docstring,
                             pipeline_config=config)(pipeline_function)
    spec = write_package(decorated, package_path)
    _check_root_size(spec, graph)
    return Compiled(bundle, environment, bundle_uri)


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
        f"the DAG of pipeline {graph.name} ({_count(len(graph.steps), 'step')}) is "
        f"{size // 1024} KB as JSON; Kubeflow hands it to the run's first driver as one "
        f"command-line argument, and Linux refuses one over {ARGUMENT_LIMIT // 1024} KB, so the "
        f"run may not start (\"argument list too long\"): {advice}",
        CompileWarning, stacklevel=3)


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


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
    steps = _count(len(graph.steps), "step")
    lines = [f"kale: compiled pipeline {graph.name} ({steps}{timeout}) to {package_path}; "
             f"project bundle {bundle.size / 1024:.0f} KB "
             f"({_count(len(bundle.files), 'file')}{place})",
             *([f"  kept out as secrets: "
                f"{', '.join(f'{name} ({why})' for name, why in bundle.reasons)}"]
               if bundle.withheld else []),
             f"  image {environment.image}; packages ({environment.source}): "
             f"{', '.join(environment.packages) or 'none'}"]
    for step in graph.steps:
        own = environment.of(step.name)
        if (own.image, own.source) != (environment.image, environment.source):
            lines.append(f"  step {step.name}: image {own.image}; packages: "
                         f"{', '.join(own.packages) or 'none'}")
    return "\n".join(lines)
