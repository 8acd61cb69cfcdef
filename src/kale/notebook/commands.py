"""What the ``kale`` command does with a tagged notebook: ``kale run NOTEBOOK.ipynb`` (locally,
or with ``--kfp`` and every flag a script takes), ``kale graph``/``kale compile`` of one, and
open-source Kale's own command line, ``kale --nb NOTEBOOK.ipynb [--upload_pipeline]
[--run_pipeline] ...``.
"""

from __future__ import annotations

import difflib
import os
import sys
from typing import Any

from kale import flags
from kale.errors import KaleError
from kale.flags import FlagError
from kale.notebook.translate import load_pipeline

#: ``kale --nb``'s options that override the notebook's metadata (open-source Kale's names).
OVERRIDES = ("pipeline_name", "pipeline_description", "experiment_name", "docker_image",
             "kfp_host")


def is_notebook(path: str) -> bool:
    """Whether ``path`` names a Jupyter notebook (by its suffix, as Jupyter does)."""
    return path.lower().endswith(".ipynb")


def notebook_pipeline(path: str, overrides: dict[str, Any] | None = None) -> Any:
    """The ``PipelineFunction`` of the notebook at ``path``, checked (every mistake of the
    notebook is raised at once, before anything runs)."""
    return load_pipeline(path, overrides)[0]


def _parameters(arguments: list[str], function: Any) -> dict[str, str]:
    """``-p NAME=VALUE`` (or ``--param``) pairs; anything else left is a mistake."""
    names = [parameter.name for parameter in function.graph.parameters]
    values: dict[str, str] = {}
    index = 0
    while index < len(arguments):
        argument = arguments[index]
        if argument in ("-p", "--param"):
            if index + 1 >= len(arguments):
                raise FlagError(f"{argument} needs NAME=VALUE", fix="for example: -p rate=0.1")
            pair = arguments[index + 1]
            index += 2
        elif argument.startswith("--param="):
            pair, index = argument.split("=", 1)[1], index + 1
        elif argument.startswith("-p") and len(argument) > 2:
            pair, index = argument[2:], index + 1
        else:
            close = difflib.get_close_matches(argument, ["--kfp", "--dry-run", "--output",
                                                         "--parallelism", "--cache",
                                                         "--no-cache", "-p"], n=1)
            hint = f"did you mean {close[0]}? " if close else ""
            raise FlagError(f"`kale run` does not take {argument!r}",
                            fix=f"{hint}give parameters as -p NAME=VALUE; the flags are a "
                            "script's (`kale run NOTEBOOK --kfp --help` lists those of --kfp)")
        name, equals, value = pair.partition("=")
        if not equals or not name:
            raise FlagError(f"-p takes NAME=VALUE, not {pair!r}", fix="for example: -p rate=0.1")
        if name not in names:
            close = difflib.get_close_matches(name, names, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise FlagError(f"the notebook has no pipeline parameter {name!r}",
                            fix=f"{hint}its parameters (the `pipeline-parameters` cell) are: "
                            f"{', '.join(names) or '(none)'}")
        values[name] = value
    return values


def run_notebook(path: str, arguments: list[str]) -> Any:
    """``kale run NOTEBOOK.ipynb [-p NAME=VALUE ...] [flags]``: as ``python script.py [flags]``
    runs a script's pipeline (locally; ``--kfp`` compiles and submits, ``--kfp --dry-run``
    writes the package). Returns what the pipeline call returns."""
    saved = sys.argv
    sys.argv = ["kale run", *arguments]
    try:
        flags.load_from_sys_argv()  # the same flags, read the same way, as a script's
        rest = sys.argv[1:]
    finally:
        sys.argv = saved
    function, planned = load_pipeline(path)
    values = _parameters(rest, function)
    metadata = planned.notebook.metadata
    chosen = flags.FLAGS
    if chosen.image is None and metadata.get("docker_image"):
        chosen.image = metadata["docker_image"]
    if chosen.kfp_host is None and metadata.get("kfp_host"):
        chosen.kfp_host = metadata["kfp_host"]
    try:
        function.bind_arguments(**values)
    except KaleError as error:
        raise FlagError(error.message, fix=error.fix) from None
    if metadata.get("katib_run"):
        return _tune(function, planned.notebook, values)
    return function(**values)


def _tune(function: Any, notebook: Any, values: dict[str, Any]) -> Any:
    """``katib_run: true``: the notebook's Katib search as a study (``pipeline.tune``): local
    trials, or with ``--kfp`` a Katib Experiment."""
    from kale.notebook.katib import goal_note, tune_options
    from kale.notebook.reader import CellLocation
    from kale.sdk.tuning import TuningError

    options = tune_options(notebook.metadata, function.graph, notebook.file_name)
    print(f"kale: katib_run is true in {notebook.file_name}'s metadata: tuning "
          f"{', '.join(options['parameters'])} for the {options['goal']} of "
          f"`{options['objective']}` (set katib_run to false to run the pipeline once)",
          file=sys.stderr)
    note = goal_note(notebook.metadata)
    if note:
        print(note, file=sys.stderr)
    try:
        return function.tune(**options, **values)
    except TuningError as error:
        # Checked before any trial: what is wrong is in the metadata, not in Kale's call.
        error.location = CellLocation(
            f"{notebook.file_name}, metadata kubeflow_notebook.katib_metadata", 1)
        raise


def kale_nb(path: str, *, upload_pipeline: bool = False, run_pipeline: bool = False,
            overrides: dict[str, Any] | None = None) -> Any:
    """Open-source Kale's ``kale --nb NOTEBOOK``: compile the notebook's pipeline to a package
    in ``.kale/`` beside it; ``upload_pipeline`` uploads it, ``run_pipeline`` uploads it and
    starts a run (in the experiment of the metadata or ``experiment_name``)."""
    from kale.kfp.submit import compile_package, submit_pipeline

    overrides = {key: value for key, value in (overrides or {}).items() if value is not None}
    function, planned = load_pipeline(path, overrides)
    graph = function.graph
    metadata = {**planned.notebook.metadata, **overrides}
    image = metadata.get("docker_image") or None
    host = metadata.get("kfp_host") or None
    package = os.path.join(planned.notebook.folder, ".kale", f"{graph.name}.yaml")
    if not (upload_pipeline or run_pipeline):
        return compile_package(graph, package, image=image)
    values = function.bind_arguments()
    if metadata.get("katib_run"):
        print("kale: katib_run is true: `kale --nb` runs the pipeline once; `kale run "
              f"{os.path.basename(path)} --kfp` creates the Katib Experiment of its "
              "katib_metadata", file=sys.stderr)
    return submit_pipeline(graph, values, output=package, host=host, image=image,
                           upload_only=not run_pipeline, upload_experiment=False)
