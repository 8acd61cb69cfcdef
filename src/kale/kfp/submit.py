"""``python script.py --kfp``: compile the pipeline, upload it, and start a run on Kubeflow.

With ``--dry-run`` only the package is written and nothing is contacted. Otherwise the pipeline
is uploaded (a new version when a pipeline of that name exists), the experiment is created if it
does not exist, and a run starts with the parameter values of the script's call; ``--wait``
follows it to its end. ``p.compile()`` and ``p.submit()`` (``kale.sdk``) use the same functions.

How the host, namespace and credentials are found is ``kale.kfp.connection``.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kale.errors import KaleError
from kale.graph.model import Graph
from kale.kfp.connection import connect, explain

if TYPE_CHECKING:
    from kale.kfp.run import KfpRun


class PipelinePackage(type(Path())):  # Path itself cannot be subclassed before Python 3.12
    """The path of a compiled pipeline package (a ``pathlib.Path``): what ``p.compile()``
    returns, and what calling the pipeline returns with ``--kfp --dry-run``.

    Its ``status`` is ``"compiled"``, so that a main block written for the other modes
    (``run = p(); print(run.status)``) works in a dry run too.
    """

    status = "compiled"


def package_path(graph: Graph, output: str | os.PathLike[str] | None, *,
                 option: str = "-o") -> str:
    """Where to write the package: ``output`` (``-o``), else ``<pipeline name>.yaml`` here.

    ``option`` is how the caller gave ``output`` (``-o``, or ``path=`` of ``p.compile``), for
    the fixes of the errors.
    """
    def spelled(value: str) -> str:
        return f"{option} {value}" if option.startswith("-") else f"{option}{value!r}"

    output = os.fspath(output) if output is not None else None
    path = os.path.abspath(output or f"{graph.name}.yaml")
    if output and (os.path.isdir(path) or output.endswith(("/", os.sep))):
        raise KaleError(f"{spelled(output)} is a folder; the package is a file",
                        fix=spelled(os.path.join(output, graph.name + ".yaml")))
    if not path.lower().endswith((".yaml", ".yml")):
        stem = os.path.splitext(output or graph.name)[0]
        raise KaleError(f"the package {output} would not be YAML: Kubeflow Pipelines packages "
                        "are .yaml files", fix=spelled(f"{stem}.yaml"))
    folder = os.path.dirname(path)
    if not os.path.isdir(folder):
        raise KaleError(f"the package cannot be written to {output}: the folder {folder} does "
                        "not exist", fix=f"create the folder, or choose another path with "
                        f"{option.rstrip('=')}")
    return path


#: What compiling takes besides the path, with the command-line flag that sets each.
COMPILE_OPTIONS = {"image": "--image", "requirements": "--requirements",
                   "bundle_store": "--bundle-store"}


def compile_package(graph: Graph, output: str | os.PathLike[str] | None, *,
                    image: str | None = None, requirements: str | None = None,
                    bundle_store: str | None = None, upload: bool | None = None,
                    option: str = "-o", cache: bool | None = None,
                    values: dict[str, Any] | None = None) -> PipelinePackage:
    """Write the package of ``graph`` to ``output`` (default ``<pipeline name>.yaml``) and
    describe it on stderr. A bundle too big for the package is uploaded to the bundle store
    when ``upload`` (by default: when ``bundle_store`` is given). ``cache`` is ``--cache``
    (True) or ``--no-cache`` (False); ``None`` leaves it to each step's ``cache`` option."""
    from kale.kfp.compiler import compile_graph, describe

    path = package_path(graph, output, option=option)
    compiled = compile_graph(graph, path, image=image, requirements=requirements,
                             bundle_store=bundle_store,
                             upload=bool(bundle_store) if upload is None else upload,
                             cache=cache, values=values)
    print(describe(graph, compiled, path), file=sys.stderr)
    return PipelinePackage(path)


def compile_for_kubeflow(graph: Graph, values: dict[str, Any], flags: Any
                         ) -> KfpRun | PipelinePackage:
    """``--kfp``: write the package (``--dry-run``, returns its path) or submit it (returns the
    run; ``--wait`` follows it and raises ``KubeflowError`` unless it succeeds)."""
    cache = getattr(flags, "caching", None)  # --cache / --no-cache
    try:
        if flags.dry_run:
            return compile_package(graph, flags.output, image=flags.image,
                                   requirements=flags.requirements,
                                   bundle_store=flags.bundle_store, cache=cache,
                                   values=values)
        run = submit_pipeline(graph, values, output=flags.output, host=flags.kfp_host,
                              namespace=flags.namespace, image=flags.image,
                              requirements=flags.requirements, bundle_store=flags.bundle_store,
                              cache=cache)
    except KeyboardInterrupt:
        what = ("the package was not written" if flags.dry_run else
                "no run was started (a pipeline version may have been uploaded)")
        print(f"\nkale: interrupted; {what}", file=sys.stderr)
        raise SystemExit(130) from None
    if flags.wait:
        try:
            run.wait(check=True)
        except KeyboardInterrupt:
            raise SystemExit(130) from None  # wait() said that the run goes on
    return run


def submit_pipeline(graph: Graph, values: dict[str, Any], *,
                    output: str | os.PathLike[str] | None = None, host: str | None = None,
                    namespace: str | None = None, experiment: str | None = None,
                    image: str | None = None, requirements: str | None = None,
                    bundle_store: str | None = None, cache: bool | None = None) -> KfpRun:
    """Compile ``graph`` (into ``output`` when given, else a temporary file), upload it and
    start a run with ``values``; a big bundle goes to the bundle store. ``cache`` as for
    ``compile_package``."""
    check_run_values(graph, values)
    with tempfile.TemporaryDirectory(prefix="kale-kfp-") as folder:
        package = compile_package(
            graph, output or os.path.join(folder, f"{graph.name}.yaml"), image=image,
            requirements=requirements, bundle_store=bundle_store, upload=True, cache=cache,
            values=values)
        return submit(graph, values, package, host=host, namespace=namespace,
                      experiment=experiment)


def check_run_values(graph: Graph, values: dict[str, Any]) -> None:
    """Refuse run values Kubeflow would change: its parameters hold numbers as 64-bit floats.

    Raises ``KaleError`` naming the parameter, with the fix (pass it as a string)."""
    from kale.kfp.compiler import exact_number

    def inexact(value: Any) -> int | None:
        if isinstance(value, int) and not isinstance(value, bool):
            return None if exact_number(value) else value
        items = value.values() if isinstance(value, dict) else value if isinstance(
            value, (list, tuple)) else ()
        return next((found for item in items if (found := inexact(item)) is not None), None)

    for name, value in values.items():
        number = inexact(value)
        if number is not None:
            raise KaleError(
                f"the value of pipeline parameter `{name}` holds {number}, which Kubeflow would "
                f"carry as {int(float(number))}: its parameters hold numbers as 64-bit floats, "
                "exact only up to 2**53",
                fix=f"pass it as a string and convert it in the step: {name}='{number}'")


def submit(graph: Graph, values: dict[str, Any], path: str | os.PathLike[str], *,
           host: str | None = None, namespace: str | None = None,
           experiment: str | None = None) -> KfpRun:
    """Upload the package at ``path`` and start a run with ``values`` in ``experiment`` (by
    default the pipeline's, else "Default")."""
    from kale.kfp.run import KfpRun

    path = os.fspath(path)
    client, connection = connect(host, namespace)
    experiment_name = experiment or graph.options.experiment or "Default"
    action, kind = f"look up pipeline {graph.name}", "pipeline"
    try:
        pipeline_id = client.get_pipeline_id(graph.name)
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        action = f"upload pipeline {graph.name}"
        if pipeline_id is None:
            pipeline = client.upload_pipeline(path, pipeline_name=graph.name,
                                              description=graph.options.description)
            pipeline_id = pipeline.pipeline_id
            versions = client.list_pipeline_versions(pipeline_id).pipeline_versions or []
            version_id = versions[0].pipeline_version_id if versions else None
        else:
            version = client.upload_pipeline_version(
                path, pipeline_version_name=f"{graph.name} {stamp}", pipeline_id=pipeline_id)
            version_id = version.pipeline_version_id
        action, kind = f"find or create experiment {experiment_name}", "experiment"
        created = client.create_experiment(name=experiment_name, namespace=connection.namespace)
        action, kind = f"start a run of pipeline {graph.name}", "run"
        run = client.run_pipeline(experiment_id=created.experiment_id,
                                  job_name=f"{graph.name} {stamp}", pipeline_id=pipeline_id,
                                  version_id=version_id, params=values)
    except KaleError:
        raise
    except Exception as error:
        raise explain(error, connection, action, kind) from error
    ui = os.environ.get("KF_PIPELINES_UI_ENDPOINT") or connection.host  # as kfp.Client links
    url = f"{ui.rstrip('/')}/#/runs/details/{run.run_id}"
    print(f"kale: started run {run.run_id} of pipeline {graph.name} in experiment "
          f"{experiment_name} ({connection.namespace_text})\n  {url}", file=sys.stderr)
    return KfpRun(run.run_id, url, graph=graph, experiment=experiment_name,
                  pipeline_id=pipeline_id, version_id=version_id or "",
                  experiment_id=created.experiment_id, namespace=connection.namespace,
                  client=client, connection=connection)
