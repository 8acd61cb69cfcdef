"""A tagged notebook as a pipeline: which values flow between its steps, the Python module
generated from it (one ``@step`` per step, a ``@pipeline`` that calls them), and that module
loaded as a ``PipelineFunction``, so local runs, ``--kfp``, caching and metrics are the SDK's.

The generated module lives in ``.kale/notebooks/<notebook>.py`` beside the notebook (Kale's own
folder, never in the project bundle; the notebook's folder is the project). Each step runs its
cells' code as a notebook runs it, at module level in a namespace of its own: the ``functions``
cells first, then its cells, each compiled under the name ``notebook.ipynb, cell N``, so a
traceback names the cell and the line in it. ``imports`` cells stay real module-level code:
each step gets the names it uses (Kale's module context), and imports nothing else.
"""

from __future__ import annotations

import ast
import difflib
import os
import sys
import types
from dataclasses import dataclass, field
from typing import Any

from kale.errors import raise_all
from kale.notebook.names import BUILTINS, Names, analyze
from kale.notebook.reader import (
    Cell,
    CellLocation,
    TaggedNotebook,
    read_notebook,
)

#: Names a notebook has that a step's process has not: IPython's.
_IPYTHON_NAMES = {"display": "_kale_display", "get_ipython": None, "In": None, "Out": None}
MODULE_NAME = "__kale_notebook__"


@dataclass
class PlannedStep:
    """A step of the pipeline with what it takes and gives."""

    name: str
    function: str
    cells: list[Cell]
    parameters: list[str] = field(default_factory=list)
    inputs: dict[str, str] = field(default_factory=dict)  # variable -> step it comes from
    outputs: list[str] = field(default_factory=list)
    modules: list[str] = field(default_factory=list)  # imports cells' names it uses
    after: list[str] = field(default_factory=list)  # ordering only: steps it waits for
    metrics: list[tuple[str, str]] = field(default_factory=list)  # (metric name, variable)
    ipython: list[str] = field(default_factory=list)
    names: Names | None = None
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class Plan:
    notebook: TaggedNotebook
    steps: list[PlannedStep]
    pipeline_options: dict[str, Any]
    function_name: str


def _combined(cells: list[Cell]) -> ast.Module:
    return ast.Module(body=[statement for cell in cells if cell.tree is not None
                            for statement in cell.tree.body], type_ignores=[])


def _cell_of(node: ast.AST, cells: list[Cell]) -> Cell:
    for cell in cells:
        if cell.tree is not None and any(child is node for child in ast.walk(cell.tree)):
            return cell
    return cells[0]


def _order(notebook: TaggedNotebook) -> list[str]:
    """The steps in an order their ``prev:`` tags allow (notebook order where free); unknown
    steps and cycles are recorded as errors."""
    steps = notebook.steps
    known = list(steps)
    for step in steps.values():
        for prev, cell in step.prev:
            if prev not in steps:
                close = difflib.get_close_matches(prev, known, n=1)
                hint = f"did you mean `prev:{close[0]}`? " if close else ""
                notebook.error(f"step `{step.name}` names `prev:{prev}`, and no cell is tagged "
                               f"`step:{prev}`", cell.at(),
                               f"{hint}the steps are: {', '.join(known) or '(none)'}")
            elif prev == step.name:
                notebook.error(f"step `{step.name}` names itself in `prev:{prev}`", cell.at(),
                               f"remove the tag `prev:{prev}`")
    waiting = {name: {p for p, _ in step.prev if p in steps and p != name}
               for name, step in steps.items()}
    done: list[str] = []
    while len(done) < len(steps):
        ready = [name for name in known if name not in done and waiting[name] <= set(done)]
        if not ready:
            left = [name for name in known if name not in done]
            cycle = _cycle(left, waiting)
            first = steps[cycle[0]]
            cell = next(c for p, c in first.prev if p == cycle[1])
            notebook.error("the steps' `prev:` tags make a cycle: " + " <- ".join(
                [*cycle, cycle[0]]), cell.at(),
                f"remove one `prev:` tag of the cycle, for example `prev:{cycle[1]}` of step "
                f"`{cycle[0]}`: a step can only come after steps that do not wait for it")
            done.extend(left)
            break
        done.append(ready[0])
    return done


def _cycle(left: list[str], waiting: dict[str, set[str]]) -> list[str]:
    path = [left[0]]
    while True:
        after = sorted(waiting[path[-1]] & set(left), key=left.index)
        nxt = after[0]
        if nxt in path:
            return path[path.index(nxt):]
        path.append(nxt)


def _ancestors(name: str, notebook: TaggedNotebook) -> list[str]:
    """The steps before ``name`` by its ``prev:`` tags, nearest first (breadth first), as
    open-source Kale searches them for a variable."""
    order: list[str] = []
    frontier = [name]
    while frontier:
        following: list[str] = []
        for current in frontier:
            for prev, _ in reversed(notebook.steps[current].prev):
                if prev in notebook.steps and prev not in order and prev != name:
                    order.append(prev)
                    following.append(prev)
        frontier = following
    return order


def plan(notebook: TaggedNotebook) -> Plan:
    """Work out every step's inputs, outputs, parameters and metrics; raise every mistake at
    once (a ``NotebookError`` or a group of them)."""
    order = _order(notebook)
    if not notebook.steps and not notebook.errors:
        notebook.error(f"{notebook.file_name} has no cell tagged `step:NAME`", None,
                       "tag the first cell of each step `step:NAME` (and `prev:NAME` for the "
                       "steps it comes after), in JupyterLab's property inspector or "
                       "View > Cell Toolbar > Tags")
    imports = analyze(_combined(notebook.imports))
    module_names = imports.binds
    functions = analyze(_combined(notebook.functions), module_names)
    parameters = notebook.parameters
    planned: dict[str, PlannedStep] = {}
    binders: dict[str, list[str]] = {}
    for name in order:
        step = notebook.steps[name]
        names = analyze(_combined(step.cells), functions.binds)
        for variable in names.binds:
            binders.setdefault(variable, []).append(name)
        planned[name] = PlannedStep(name, name, step.cells, names=names)
    reported: set[tuple[str, str]] = set()
    for name in order:
        entry = planned[name]
        assert entry.names is not None
        reads: dict[str, tuple[ast.AST, list[Cell], str]] = {
            variable: (node, entry.cells, "") for variable, node in entry.names.reads.items()}
        used = set(entry.names.mentions) | set(entry.names.reads)
        pending = [fn for fn in functions.functions if fn in used]
        called: set[str] = set()
        while pending:  # the functions cells' functions it calls, and those they call
            fn = pending.pop()
            if fn in called:
                continue
            called.add(fn)
            for variable in functions.functions[fn]:
                if variable in functions.functions:
                    pending.append(variable)
                elif variable not in functions.binds:
                    reads.setdefault(variable, (None, notebook.functions, fn))  # type: ignore
        in_functions = set().union(*functions.functions.values())
        for variable, node in functions.reads.items():
            # What the functions cells read as they run (a decorator, a constant); what their
            # functions read counts only for the steps that call them (above).
            if variable not in in_functions:
                reads.setdefault(variable, (node, notebook.functions, ""))
        ancestors = _ancestors(name, notebook)
        for variable, (node, cells, via) in sorted(reads.items()):
            if variable in BUILTINS:
                continue
            if variable in parameters:
                entry.parameters.append(variable)
            elif variable in module_names:
                entry.modules.append(variable)
            elif _IPYTHON_NAMES.get(variable):
                entry.ipython.append(variable)
            else:
                source = next((a for a in ancestors if variable in planned[a].names.binds  # type: ignore
                               or variable in planned[a].inputs), None)
                if source is not None:
                    entry.inputs[variable] = source
                    if variable not in planned[source].outputs:
                        planned[source].outputs.append(variable)
                    continue
                if via and (via, variable) in reported:
                    continue  # a function's mistake is said once, not once per step
                reported.add((via, variable))
                _unresolved(notebook, name, variable, node, cells, via, binders, parameters,
                            module_names | functions.binds)
    # A step's function is named after it unless a name of the notebook is (`kid1 = ...` in
    # step `kid1`): the pipeline body's variables keep the notebook's names.
    taken = module_names | functions.binds | set(parameters) | set(binders)
    for entry in planned.values():
        if entry.name in taken or not entry.name.isidentifier():
            entry.function = f"step_{entry.name}"
    _assign_metrics(notebook, order, planned)
    _order_without_data(notebook, order, planned)
    options = _pipeline_options(notebook)
    for name, entry in planned.items():
        step = notebook.steps[name]
        own: dict[str, Any] = {}
        if step.limits:
            own["limits"] = dict(step.limits)
        if step.labels:
            own["labels"] = dict(step.labels)
        if step.annotations:
            own["annotations"] = dict(step.annotations)
        if step.cache is not None:
            own["cache"] = step.cache
        if step.image is not None:
            image, cell = step.image
            notebook.error(f"step `{name}` asks for its own image ({image}) with an `image:` "
                           "tag, which a notebook cannot set in this Kale", cell.at(),
                           f"set it in the notebook folder's pyproject.toml: "
                           f"[tool.kale.steps.{name}] image = \"{image}\" (or the notebook's "
                           "docker_image for every step), and remove the tag")
        entry.options = own
    raise_all(f"{{count}} problems in {notebook.file_name}", notebook.errors)
    stem = os.path.splitext(notebook.file_name)[0]
    function_name = "".join(c if c.isalnum() or c == "_" else "_" for c in stem) or "notebook"
    if not function_name.isidentifier():
        function_name = f"notebook_{function_name}"
    return Plan(notebook, [planned[name] for name in order], options, function_name)


def _unresolved(notebook: TaggedNotebook, step: str, variable: str, node: ast.AST | None,
                cells: list[Cell], via: str, binders: dict[str, list[str]],
                parameters: dict[str, Any], module: set[str]) -> None:
    if node is None:  # read inside a function of a `functions` cell
        cell = next((c for c in cells if c.tree is not None and any(
            isinstance(n, ast.FunctionDef) and n.name == via for n in ast.walk(c.tree))),
            cells[0])
        defined = next(n for n in ast.walk(cell.tree) if isinstance(n, ast.FunctionDef)  # type: ignore
                       and n.name == via)
        node = next((n for n in ast.walk(defined) if isinstance(n, ast.Name)
                     and n.id == variable), defined)
    else:
        cell = _cell_of(node, cells)
    where = cell.at(node=node)
    used = f"function `{via}` (called by step `{step}`)" if via else f"step `{step}`"
    others = [name for name in binders.get(variable, []) if name != step]
    if others:
        notebook.error(f"{used} uses `{variable}`, which step `{others[0]}` defines, but "
                       f"`{others[0]}` does not come before `{step}`", where,
                       f"add the tag `prev:{others[0]}` to the first cell of step `{step}`, so "
                       f"that it runs after `{others[0]}` and gets `{variable}` from it")
        return
    if variable in notebook.steps[step].cells[0].source and any(
            variable in (n.id for n in ast.walk(c.tree) if isinstance(n, ast.Name)
                         and isinstance(n.ctx, ast.Store))
            for c in notebook.steps[step].cells if c.tree is not None):
        notebook.error(f"{used} uses `{variable}` before it defines it", where,
                       f"define `{variable}` before this line, or in a step before `{step}`")
        return
    known = sorted(set(binders) | set(parameters) | module)
    close = difflib.get_close_matches(variable, known, n=1)
    hint = f"did you mean `{close[0]}`? " if close else ""
    notebook.error(f"{used} uses `{variable}`, which no cell before it defines", where,
                   f"{hint}define it in a step before `{step}` (and tag it as `prev:`), in the "
                   "`imports` or `functions` cells, or in the `pipeline-parameters` cell; a "
                   "`skip` cell never runs in the pipeline")


def _assign_metrics(notebook: TaggedNotebook, order: list[str],
                    planned: dict[str, PlannedStep]) -> None:
    """Each ``pipeline-metrics`` name is logged by the last step that has its value, as
    open-source Kale assigns them (its name with ``_`` as ``-``, as Kale names it)."""
    for variable, cell, node in notebook.metrics:
        for name in reversed(order):
            entry = planned[name]
            assert entry.names is not None
            if variable in entry.names.binds or variable in entry.inputs or \
                    variable in entry.parameters:
                entry.metrics.append((variable.replace("_", "-"), variable))
                break
        else:
            if variable in notebook.parameters:
                last = planned[order[-1]] if order else None
                if last is not None:  # a parameter no step uses: the last step reports it
                    last.parameters.append(variable)
                    last.metrics.append((variable.replace("_", "-"), variable))
                continue
            notebook.error(f"metric `{variable}` is defined by no step", cell.at(node=node),
                           f"define `{variable}` in a step, or remove it from the "
                           "`pipeline-metrics` cell")


def _order_without_data(notebook: TaggedNotebook, order: list[str],
                        planned: dict[str, PlannedStep]) -> None:
    """A ``prev:`` that passes no value still orders the steps: the earlier step hands on an
    empty marker the later one waits for (steps are ordered by their data)."""
    before: dict[str, set[str]] = {}
    for name in order:
        entry = planned[name]
        reached = set()
        for source in entry.inputs.values():
            reached |= {source} | before.get(source, set())
        for prev, _ in notebook.steps[name].prev:
            if prev in planned and prev not in reached:
                entry.after.append(prev)
                reached |= {prev} | before.get(prev, set())
        before[name] = reached


def _pipeline_options(notebook: TaggedNotebook) -> dict[str, Any]:
    metadata = notebook.metadata
    stem = os.path.splitext(notebook.file_name)[0]
    options: dict[str, Any] = {"name": metadata.get("pipeline_name") or stem}
    experiment = metadata.get("experiment_name") or \
        (metadata.get("experiment") or {}).get("name") if isinstance(
            metadata.get("experiment") or {}, dict) else metadata.get("experiment_name")
    if experiment:
        options["experiment"] = experiment
    if metadata.get("pipeline_description"):
        options["description"] = metadata["pipeline_description"]
    if metadata.get("timeout"):
        options["timeout"] = metadata["timeout"]
    defaults: dict[str, Any] = {}
    for tag in metadata.get("steps_defaults") or []:
        kind, _, rest = str(tag).partition(":")
        key, _, value = rest.partition(":")
        if kind in ("limit", "label", "annotation") and key and value:
            defaults.setdefault(f"{kind}s", {})[key] = value
        else:
            notebook.error(f"`steps_defaults` in the notebook's metadata holds {tag!r}, which "
                           "is not a limit:, label: or annotation: tag",
                           CellLocation(f"{notebook.file_name}, metadata kubeflow_notebook", 1),
                           "write each as `limit:KEY:VALUE`, `label:KEY:VALUE` or "
                           "`annotation:KEY:VALUE`")
    if defaults:
        options["steps_defaults"] = defaults
    return options


# -- the generated module ----------------------------------------------------------------------

_HELPERS = '''\
def _kale_code(source, name):
    """One cell's code, compiled under its notebook name: a traceback says
    `notebook.ipynb, cell 5`, line 2, and shows the cell's line."""
    import linecache

    linecache.cache[name] = (len(source), None, source.splitlines(True), name)
    return compile(source, name, "exec", dont_inherit=True)


def _kale_outputs(namespace, step, names, markers):
    """What the step hands on: the variables later steps read, then its order markers."""
    missing = [name for name in names if name not in namespace]
    if missing:
        raise NameError(f"step `{step}` did not define {', '.join(missing)}, which a later "
                        "step reads (a branch that did not run, or a `del`?)")
    values = tuple(namespace[name] for name in names) + (None,) * markers
    return values[0] if len(values) == 1 else (values or None)


def _kale_display(*objects, **options):
    """IPython's display() where there is no kernel: the objects are printed."""
    for item in objects:
        print(item)
'''


def _body_names(steps: list[PlannedStep], reserved: set[str]) -> dict[tuple[str, str], str]:
    """The pipeline body's variable for each (step, output): the variable's own name unless
    several steps give one of that name or it is taken."""
    count: dict[str, int] = {}
    for entry in steps:
        for variable in entry.outputs:
            count[variable] = count.get(variable, 0) + 1
    names = {}
    for entry in steps:
        for variable in entry.outputs:
            unique = count[variable] == 1 and variable not in reserved
            names[(entry.name, variable)] = variable if unique else f"{variable}_{entry.name}"
        names[(entry.name, "")] = f"kale_after_{entry.name}"
    return names


def generate(plan_: Plan) -> str:
    """The Python module of the notebook's pipeline."""
    notebook = plan_.notebook
    lines = [f'"""The pipeline of {notebook.file_name}, generated by Kale: do not edit it (edit '
             'the notebook; `kale run` writes this file again)."""',
             "",
             "from kale.sdk import has_metrics as _kale_has_metrics",
             "from kale.sdk import pipeline as _kale_pipeline",
             "from kale.sdk import step as _kale_step",
             "from kale.sdk.logging import log_metric",
             ""]
    for cell in notebook.imports:
        lines.append(f"# {cell.name} (imports)")
        lines.extend(cell.source.rstrip("\n").split("\n"))
        lines.append("")
    lines.append("")
    lines.append(_HELPERS)
    for cell in [*notebook.functions, *(c for s in plan_.steps for c in s.cells)]:
        lines.append(f"_CELL_{cell.number} = _kale_code({cell.source!r}, {cell.name!r})")
    lines.append("")
    function_names = {entry.name: entry.function for entry in plan_.steps}
    for entry in plan_.steps:
        lines.extend(_step_source(entry, plan_))
    reserved = set(function_names.values()) | set(notebook.parameters) | {plan_.function_name}
    body = _body_names(plan_.steps, reserved)
    options = ", ".join(f"{key}={value!r}" for key, value in plan_.pipeline_options.items())
    signature = ", ".join(f"{name}={value!r}" for name, (value, _, _)
                          in notebook.parameters.items())
    lines += ["", f"@_kale_pipeline({options})", f"def {plan_.function_name}({signature}):",
              f'    """The steps of {notebook.file_name}, in an order their prev: tags allow."""']
    for entry in plan_.steps:
        arguments = [f"{p}={p}" for p in entry.parameters]
        arguments += [f"{variable}={body[(source, variable)]}"
                      for variable, source in sorted(entry.inputs.items())]
        arguments += [f"kale_after_{prev}={body[(prev, '')]}" for prev in entry.after]
        targets = [body[(entry.name, variable)] for variable in entry.outputs]
        targets += [body[(entry.name, "")] for _ in _markers(entry, plan_)]
        call = f"{entry.function}({', '.join(arguments)})"
        lines.append(f"    {', '.join(targets)} = {call}" if targets else f"    {call}")
    lines.append("")
    return "\n".join(lines)


def _markers(entry: PlannedStep, plan_: Plan) -> list[str]:
    """The order markers a step hands on: one when any later step waits on it without data."""
    return [""] if any(entry.name in other.after for other in plan_.steps) else []


def _step_source(entry: PlannedStep, plan_: Plan) -> list[str]:
    notebook = plan_.notebook
    options = [f"name={entry.name!r}"] + [f"{key}={value!r}" for key, value in
                                          entry.options.items()]
    uses_logging = any("log_metric" in cell.source or "log_" in cell.source
                       for cell in entry.cells)
    lines = [""]
    if uses_logging:  # the cells call kale.sdk.logging themselves, out of the compiler's sight
        lines.append("@_kale_has_metrics")
    lines.append(f"@_kale_step({', '.join(options)})")
    parameters = [*entry.parameters, *sorted(entry.inputs),
                  *(f"kale_after_{prev}" for prev in entry.after)]
    lines.append(f"def {entry.function}({', '.join(parameters)}):")
    numbers = ", ".join(str(cell.number) for cell in entry.cells)
    lines.append(f'    """Step `{entry.name}`: cells {numbers} of {notebook.file_name}."""')
    given = {"__name__": "'__main__'"}
    given.update({name: name for name in entry.modules})
    given.update({name: name for name in (*entry.parameters, *sorted(entry.inputs))})
    given.update({name: _IPYTHON_NAMES[name] for name in entry.ipython})
    pairs = ", ".join(f"{key!r}: {value}" for key, value in given.items())
    lines.append(f"    namespace = {{{pairs}}}")
    for cell in [*notebook.functions, *entry.cells]:
        lines.append(f"    exec(_CELL_{cell.number}, namespace)")
    for metric, variable in entry.metrics:
        lines.append(f"    log_metric({metric!r}, namespace[{variable!r}])")
    lines.append(f"    return _kale_outputs(namespace, {entry.name!r}, {tuple(entry.outputs)!r}, "
                 f"{len(_markers(entry, plan_))})")
    return lines


def generated_path(notebook_path: str) -> str:
    """Where the module of a notebook is written: ``.kale/notebooks/<name>.py`` in its folder."""
    folder = os.path.dirname(os.path.abspath(notebook_path))
    stem = os.path.splitext(os.path.basename(notebook_path))[0]
    return os.path.join(folder, ".kale", "notebooks", f"{stem}.py")


def translate(notebook_path: str, overrides: dict[str, Any] | None = None
              ) -> tuple[Plan, str]:
    """Read, check and plan the notebook, write its module; returns the plan and the path.
    ``overrides`` replace fields of its ``kubeflow_notebook`` metadata (``kale --nb``'s)."""
    notebook = read_notebook(notebook_path)
    notebook.metadata.update(overrides or {})
    planned = plan(notebook)
    text = generate(planned)
    path = generated_path(notebook_path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if not _same(path, text):
        temporary = f"{path}.{os.getpid()}.tmp"
        with open(temporary, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(temporary, path)  # atomic: a run reading it never sees half a file
    return planned, path


def _same(path: str, text: str) -> bool:
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read() == text
    except OSError:
        return False


def load_pipeline(notebook_path: str, overrides: dict[str, Any] | None = None
                  ) -> tuple[Any, Plan]:
    """The notebook's ``PipelineFunction`` (and its plan), its graph parsed and checked.

    The module's top level runs without its ``imports`` cells: they run in the steps that use
    them, so the command that reads the notebook needs none of the steps' libraries."""
    planned, path = translate(notebook_path, overrides)
    with open(path, encoding="utf-8") as handle:
        text = handle.read()
    tree = ast.parse(text, filename=path)
    keep = [node for node in tree.body if not _from_imports_cell(node, text, planned)]
    module = types.ModuleType(MODULE_NAME)
    module.__file__ = path
    sys.modules[MODULE_NAME] = module
    code = compile(ast.Module(body=keep, type_ignores=[]), path, "exec", dont_inherit=True)
    exec(code, module.__dict__)
    function = getattr(module, planned.function_name)
    function.graph  # noqa: B018 (parses and checks it now, before anything runs)
    return function, planned


def _from_imports_cell(node: ast.stmt, text: str, planned: Plan) -> bool:
    """Whether a top-level statement of the generated module is an ``imports`` cell's."""
    lines = text.split("\n")
    first = next((i for i, line in enumerate(lines) if line == "def _kale_code(source, name):"),
                 len(lines))
    import_start = next((i for i, line in enumerate(lines) if line.endswith("(imports)")),
                        first)
    return bool(planned.notebook.imports) and import_start < node.lineno - 1 < first

