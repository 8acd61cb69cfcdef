"""Reading a Jupyter notebook tagged for open-source Kale: its cells, their tags and the
``kubeflow_notebook`` metadata, into a ``TaggedNotebook`` (steps, parameters, metrics).

The tag language is open-source Kale's (``backend/kale/processors/nbprocessor.py``):
``imports``, ``functions``, ``pipeline-parameters``, ``pipeline-metrics``, ``skip``,
``step:NAME`` (``block:NAME``, its older name), ``prev:NAME``, ``limit:KEY:VALUE``,
``annotation:KEY:VALUE``, ``label:KEY:VALUE``, plus ``image:IMAGE`` and
``cache:enabled|disabled``. A code cell without tags belongs to what the tagged cell above it
is; markdown and raw cells are ignored. Every mistake is collected, with its cell and line,
and raised together by the caller.
"""

from __future__ import annotations

import ast
import difflib
import linecache
import os
import re
from dataclasses import dataclass, field
from typing import Any

from kale.errors import DefinitionError, SourceLocation


class NotebookError(DefinitionError):
    """A tagged notebook cannot become a pipeline as it is written."""


@dataclass(frozen=True)
class CellLocation(SourceLocation):
    """A place in a notebook cell: ``file`` is ``notebook.ipynb, cell 5`` (the name its code is
    compiled under, so tracebacks say the same), ``line`` the line in the cell."""

    @property
    def cell(self) -> str | None:
        return self.file

    @property
    def display_line(self) -> str:
        return f"{self.file}, line {self.line}"


SPECIAL = ("imports", "functions", "pipeline-parameters", "pipeline-metrics", "skip")
_NAME = r"[_a-z][_a-z0-9]*"
_K8S_KEY = r"[a-zA-Z0-9]+([a-zA-Z0-9-_.]*[a-zA-Z0-9])?(/[a-zA-Z0-9]+([a-zA-Z0-9-_.]*[a-zA-Z0-9])?)?"
_TAGS = {
    "step": re.compile(rf"^(step|block):({_NAME})?$"),
    "prev": re.compile(rf"^prev:({_NAME})$"),
    "limit": re.compile(r"^limit:([_a-z-./]+):([_a-zA-Z0-9.]+)$"),
    "annotation": re.compile(rf"^annotation:({_K8S_KEY}):(.*)$"),
    "label": re.compile(rf"^label:({_K8S_KEY}):(.*)$"),
    "image": re.compile(r"^image:(.+)$"),
    "cache": re.compile(r"^cache:(enabled|disabled)$"),
}
_KNOWN = ", ".join((*SPECIAL, "step:NAME", "block:NAME", "prev:NAME", "limit:KEY:VALUE",
                    "annotation:KEY:VALUE", "label:KEY:VALUE", "image:IMAGE",
                    "cache:enabled|disabled"))
#: The metadata fields of open-source Kale's ``kubeflow_notebook`` that this Kale reads or
#: accepts; others are its UI's state (reported, not fatal).
METADATA_FIELDS = ("pipeline_name", "pipeline_description", "experiment_name", "experiment",
                   "docker_image", "volumes", "katib_run", "katib_metadata", "steps_defaults",
                   "kfp_host", "timeout", "autosnapshot", "snapshot_volumes", "abs_working_dir",
                   "marshal_volume", "marshal_path", "storage_class_name", "volume_access_mode",
                   "notebook_path")


@dataclass
class Cell:
    """One code cell: its 1-based position among all the notebook's cells (as one counts them
    scrolling down), its code with IPython magics commented out, and its tags."""

    number: int
    source: str
    tags: tuple[str, ...]
    name: str  # "notebook.ipynb, cell 5": what its code is compiled under
    tree: ast.Module | None = None

    def at(self, line: int = 1, column: int = 0, node: ast.AST | None = None) -> CellLocation:
        if node is not None and hasattr(node, "lineno"):
            return CellLocation(self.name, node.lineno, node.col_offset,
                                getattr(node, "end_lineno", None),
                                getattr(node, "end_col_offset", None))
        return CellLocation(self.name, line, column)


@dataclass
class NotebookStep:
    """A pipeline step: the cells tagged ``step:NAME`` (and the untagged ones after them)."""

    name: str
    cells: list[Cell] = field(default_factory=list)
    prev: list[tuple[str, Cell]] = field(default_factory=list)
    limits: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    image: tuple[str, Cell] | None = None
    cache: bool | None = None


@dataclass
class TaggedNotebook:
    """What a tagged notebook defines, before its steps' dependencies are worked out."""

    path: str
    cells: list[Cell]
    imports: list[Cell]
    functions: list[Cell]
    parameters: dict[str, tuple[Any, Cell, ast.AST]]
    metrics: list[tuple[str, Cell, ast.AST]]
    steps: dict[str, NotebookStep]
    metadata: dict[str, Any]
    errors: list[NotebookError]

    @property
    def file_name(self) -> str:
        return os.path.basename(self.path)

    @property
    def folder(self) -> str:
        return os.path.dirname(os.path.abspath(self.path))

    def error(self, message: str, where: CellLocation | None, fix: str) -> None:
        self.errors.append(NotebookError(message, location=where, fix=fix))


_MAGIC = re.compile(r"^(\s*)([%!])")


def comment_magics(source: str) -> str:
    """IPython magics and shell escapes (``%matplotlib inline``, ``!pip install x``) commented
    out, as open-source Kale does: a step's process is plain Python, not a kernel."""
    return "\n".join(_MAGIC.sub(r"\1# \2", line) for line in source.split("\n"))


def _register(cell: Cell) -> None:
    """Make the cell's lines readable by ``linecache`` under its name: error excerpts and
    tracebacks show them."""
    lines = cell.source.splitlines(keepends=True)
    linecache.cache[cell.name] = (len(cell.source), None, lines, cell.name)


def read_notebook(path: str) -> TaggedNotebook:
    """Read the notebook at ``path``; raises ``NotebookError`` when it cannot be read at all,
    and collects every other mistake in ``errors``."""
    import nbformat

    if not os.path.isfile(path):
        raise NotebookError(f"no such notebook: {path}",
                            fix="give the path of a .ipynb file tagged for Kale")
    try:
        notebook = nbformat.read(path, as_version=4)
    except Exception as error:  # nbformat raises its own, json's and OSErrors
        raise NotebookError(f"{path} is not a Jupyter notebook Kale can read: {error}",
                            fix="open and save it in Jupyter, or check that it is a .ipynb "
                            "file") from None
    name = os.path.basename(path)
    metadata = dict(notebook.metadata.get("kubeflow_notebook") or {})
    result = TaggedNotebook(path=os.path.abspath(path), cells=[], imports=[], functions=[],
                            parameters={}, metrics=[], steps={}, metadata=metadata, errors=[])
    role: str | None = None  # what an untagged cell belongs to: the tagged cell above it
    seen_metrics = False
    for index, raw in enumerate(notebook.cells):
        if raw.cell_type != "code":
            continue
        tags = raw.metadata.get("tags") or []
        cell = Cell(index + 1, comment_magics(raw.source), tuple(str(t) for t in tags),
                    f"{name}, cell {index + 1}")
        _register(cell)
        result.cells.append(cell)
        for tag in tags:
            if not isinstance(tag, str):
                result.error(f"cell {cell.number} has a tag that is not a string: {tag!r}",
                             cell.at(), "remove it in the cell's tags (View > Cell Toolbar > "
                             "Tags)")
        own = _cell_role(cell, result)
        if own == "skip":
            continue  # a skipped cell is not a step's: the next untagged one is still its
        if own is None:
            own = role
        elif seen_metrics and own not in SPECIAL:
            result.error("a step comes after the `pipeline-metrics` cell",
                         cell.at(), "move the `pipeline-metrics` cell to the end of the "
                         "notebook: metrics are the result of the whole pipeline")
        role = own
        if own is None:
            continue  # code above the first tag belongs to no step, as in open-source Kale
        try:
            cell.tree = ast.parse(cell.source, filename=cell.name)
        except SyntaxError as error:
            result.error(f"cell {cell.number} is not valid Python: {error.msg}",
                         cell.at(error.lineno or 1, max((error.offset or 1) - 1, 0)),
                         "correct the syntax error in the cell (IPython magics, lines "
                         "starting with % or !, are left out)")
            continue
        if own == "imports":
            result.imports.append(cell)
        elif own == "functions":
            result.functions.append(cell)
        elif own == "pipeline-parameters":
            _read_parameters(cell, result)
        elif own == "pipeline-metrics":
            seen_metrics = True
            _read_metrics(cell, result)
        else:
            result.steps[own].cells.append(cell)
    _check_metadata(result)
    return result


def _cell_role(cell: Cell, notebook: TaggedNotebook) -> str | None:
    """What the cell's own tags make it: a special tag, a step's name, or None (untagged, or
    only options); its step options are recorded on the step."""
    special = [tag for tag in cell.tags if tag in SPECIAL]
    names: list[str] = []
    prev: list[str] = []
    options: list[tuple[str, re.Match[str]]] = []
    for tag in cell.tags:
        if not isinstance(tag, str) or tag in SPECIAL:
            continue
        for kind, pattern in _TAGS.items():
            matched = pattern.match(tag)
            if matched:
                if kind == "step":
                    if matched.group(2):  # `block:` alone is left by the extension: no name
                        names.append(matched.group(2))
                elif kind == "prev":
                    prev.append(matched.group(1))
                else:
                    options.append((kind, matched))
                break
        else:
            _unknown_tag(tag, cell, notebook)
    if special:
        if len(special) > 1 or names:
            notebook.error(f"cell {cell.number} has tags {', '.join(special + names)}, which "
                           "exclude each other", cell.at(),
                           "keep one of them on the cell")
        return special[0]
    if len(set(names)) > 1:
        notebook.error(f"cell {cell.number} names {len(set(names))} steps: "
                       f"{', '.join(sorted(set(names)))}", cell.at(),
                       "a cell belongs to one step: keep one step: tag")
    if not names:
        if prev or options:
            what = "prev:" if prev else f"{options[0][0]}:"
            notebook.error(f"cell {cell.number} has a `{what}` tag but no `step:` tag",
                           cell.at(), "add `step:NAME` to the cell: options and `prev:` tags "
                           "belong on a step's cell")
        return None
    name = names[0]
    step = notebook.steps.setdefault(name, NotebookStep(name))
    step.prev.extend((item, cell) for item in prev)
    for kind, matched in options:
        if kind == "limit":
            step.limits[matched.group(1)] = matched.group(2)
        elif kind in ("annotation", "label"):
            key, value = matched.group(1), matched.group(matched.lastindex or 0)
            (step.annotations if kind == "annotation" else step.labels)[key] = value
        elif kind == "image":
            step.image = (matched.group(1), cell)
        elif kind == "cache":
            step.cache = matched.group(1) == "enabled"
    return name


def _unknown_tag(tag: str, cell: Cell, notebook: TaggedNotebook) -> None:
    forms = [*SPECIAL, "step:", "block:", "prev:", "limit:", "annotation:", "label:",
             "image:", "cache:"]
    head = tag.split(":", 1)[0] + (":" if ":" in tag else "")
    close = difflib.get_close_matches(head, forms, n=1) or \
        difflib.get_close_matches(tag, forms, n=1)
    if tag.split(":", 1)[0] in ("step", "block", "prev"):
        why = " (a step's name is lower-case letters, digits and _, starting with a letter or _)"
    elif tag.split(":", 1)[0] in ("limit", "annotation", "label", "cache"):
        why = f" (a `{head}` tag is {next(f for f in _KNOWN.split(', ') if f.startswith(head))})"
    else:
        why = ""
    hint = f"did you mean `{close[0]}`? " if close and not why else ""
    notebook.error(f"cell {cell.number} has tag `{tag}`, which Kale does not know{why}",
                   cell.at(), f"{hint}Kale's tags are: {_KNOWN}")


_LITERALS = (int, float, str, bool, list, dict)


def _read_parameters(cell: Cell, notebook: TaggedNotebook) -> None:
    assert cell.tree is not None
    for statement in cell.tree.body:
        if not (isinstance(statement, ast.Assign) and len(statement.targets) == 1
                and isinstance(statement.targets[0], ast.Name)):
            notebook.error("a `pipeline-parameters` cell holds only assignments of values to "
                           "names", cell.at(node=statement),
                           "write one `name = value` per line (a number, a string, True or "
                           "False, a list or a dict); compute other values in a step")
            continue
        name = statement.targets[0].id
        try:
            value = ast.literal_eval(statement.value)
        except ValueError:
            value = None
        if value is None or not isinstance(value, _LITERALS):
            notebook.error(f"pipeline parameter `{name}` is not given a plain value",
                           cell.at(node=statement.value),
                           "give it a number, a string, True or False, or a list or dict of "
                           "them (Kubeflow shows and overrides it); compute other values in a "
                           "step")
            continue
        notebook.parameters[name] = (value, cell, statement)


def _read_metrics(cell: Cell, notebook: TaggedNotebook) -> None:
    assert cell.tree is not None
    for statement in cell.tree.body:
        value = statement.value if isinstance(statement, ast.Expr) else None
        if isinstance(value, ast.Call) and isinstance(value.func, ast.Name) and \
                value.func.id == "print" and len(value.args) == 1 and not value.keywords:
            value = value.args[0]
        if not isinstance(value, ast.Name):
            notebook.error("a `pipeline-metrics` cell holds only the names of variables, one "
                           "per line", cell.at(node=statement),
                           "write `print(accuracy)` or `accuracy` on its own line for each "
                           "metric; compute it in a step")
            continue
        notebook.metrics.append((value.id, cell, value))


def _check_metadata(notebook: TaggedNotebook) -> None:
    metadata = notebook.metadata
    at = CellLocation(f"{notebook.file_name}, metadata kubeflow_notebook", 1)
    for key in ("pipeline_name", "pipeline_description", "experiment_name", "docker_image",
                "kfp_host"):
        if metadata.get(key) is not None and not isinstance(metadata[key], str):
            notebook.error(f"`{key}` in the notebook's kubeflow_notebook metadata is "
                           f"{metadata[key]!r}, not a string", at,
                           f"set `{key}` to a string (Edit > Edit Notebook Metadata)")
    volumes = metadata.get("volumes") or []
    if volumes:
        notebook.error("the notebook's metadata mounts volumes (`volumes`), which this Kale "
                       "does not create or mount", at,
                       "remove `volumes` from the kubeflow_notebook metadata: put the data the "
                       "steps read in the notebook's folder (it travels with the pipeline), or "
                       "have the steps read it from storage (a bucket, a URL)")
