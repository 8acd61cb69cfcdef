"""``python script.py --kfp``: compile the pipeline, upload it, and start a run on Kubeflow.

With ``--dry-run`` only the package is written and nothing is contacted. Otherwise the pipeline
is uploaded (a new version when a pipeline of that name exists), the experiment is created if it
does not exist, and a run starts with the parameter values of the script's call; ``--wait``
follows it to its end.

How the host, namespace and credentials are found is ``kale.kfp.connection``.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Any

from kale.errors import KaleError
from kale.graph.model import Graph
from kale.kfp.connection import KubeflowError, connect, explain


def package_path(graph: Graph, output: str | None) -> str:
    """Where to write the package: ``output`` (``-o``), else ``<pipeline name>.yaml`` here."""
    path = os.path.abspath(output or f"{graph.name}.yaml")
    if output and (os.path.isdir(path) or output.endswith(("/", os.sep))):
        raise KaleError(f"-o {output} is a folder; the package is a file",
                        fix=f"-o {os.path.join(output, graph.name + '.yaml')}")
    if not path.lower().endswith((".yaml", ".yml")):
        stem = os.path.splitext(output or graph.name)[0]
        raise KaleError(f"the package {output} would not be YAML: Kubeflow Pipelines packages "
                        "are .yaml files", fix=f"-o {stem}.yaml")
    folder = os.path.dirname(path)
    if not os.path.isdir(folder):
        raise KaleError(f"the package cannot be written to {output}: the folder {folder} does "
                        "not exist", fix="create the folder, or choose another path with -o")
    return path


@dataclass
class SubmittedRun:
    """A run started on Kubeflow Pipelines."""

    run_id: str
    url: str
    pipeline_id: str
    version_id: str
    experiment_id: str
    state: str | None = None
    namespace: str | None = None


def compile_for_kubeflow(graph: Graph, values: dict[str, Any], flags: Any) -> Any:
    """``--kfp``: write the package (``--dry-run``) or submit it; returns the path or the run."""
    try:
        return _compile_and_submit(graph, values, flags)
    except KeyboardInterrupt:
        what = ("the package was not written" if flags.dry_run else
                "no run was started (a pipeline version may have been uploaded)")
        print(f"\nkale: interrupted; {what}", file=sys.stderr)
        raise SystemExit(130) from None


def _compile_and_submit(graph: Graph, values: dict[str, Any], flags: Any) -> Any:
    from kale.kfp.compiler import compile_graph, describe

    if flags.dry_run:
        path = package_path(graph, flags.output)
        compiled = compile_graph(graph, path, image=flags.image,
                                 requirements=flags.requirements,
                                 bundle_store=flags.bundle_store,
                                 upload=bool(flags.bundle_store))
        print(describe(graph, compiled, path), file=sys.stderr)
        return path
    _check_values(graph, values)
    with tempfile.TemporaryDirectory(prefix="kale-kfp-") as folder:
        path = package_path(graph, flags.output or os.path.join(folder, f"{graph.name}.yaml"))
        compiled = compile_graph(graph, path, image=flags.image,
                                 requirements=flags.requirements,
                                 bundle_store=flags.bundle_store, upload=True)
        print(describe(graph, compiled, path), file=sys.stderr)
        # Ctrl-C while waiting stops following, not the run: _wait says so itself.
        return submit(graph, values, path, host=flags.kfp_host, namespace=flags.namespace,
                      wait=flags.wait)


def _check_values(graph: Graph, values: dict[str, Any]) -> None:
    """Refuse run values Kubeflow would change: its parameters hold numbers as 64-bit floats."""
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


def submit(graph: Graph, values: dict[str, Any], path: str, *, host: str | None = None,
           namespace: str | None = None, wait: bool = False) -> SubmittedRun:
    """Upload the package at ``path`` and start a run with ``values``."""
    client, connection = connect(host, namespace)
    experiment_name = graph.options.experiment or "Default"
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
        experiment = client.create_experiment(name=experiment_name,
                                              namespace=connection.namespace)
        action, kind = f"start a run of pipeline {graph.name}", "run"
        run = client.run_pipeline(experiment_id=experiment.experiment_id,
                                  job_name=f"{graph.name} {stamp}", pipeline_id=pipeline_id,
                                  version_id=version_id, params=values)
    except KaleError:
        raise
    except Exception as error:
        raise explain(error, connection, action, kind) from error
    ui = os.environ.get("KF_PIPELINES_UI_ENDPOINT") or connection.host  # as kfp.Client links
    url = f"{ui.rstrip('/')}/#/runs/details/{run.run_id}"
    submitted = SubmittedRun(run.run_id, url, pipeline_id, version_id or "",
                             experiment.experiment_id, namespace=connection.namespace)
    print(f"kale: started run {run.run_id} of pipeline {graph.name} in experiment "
          f"{experiment_name} ({connection.namespace_text})\n  {url}", file=sys.stderr)
    if wait:
        _wait(client, connection, submitted, graph)
    return submitted


def _wait(client: Any, connection: Any, submitted: SubmittedRun, graph: Graph) -> None:
    from kale.kfp.follow import follow

    run_id, url = submitted.run_id, submitted.url
    try:
        followed = follow(client, run_id, graph)
    except KeyboardInterrupt:
        # The run is Kubeflow's: stopping to watch it must not look like stopping it.
        print(f"\nkale: stopped following run {run_id}; it goes on in Kubeflow: {url}",
              file=sys.stderr)
        raise SystemExit(130) from None
    except Exception as error:
        raise explain(error, connection, f"follow run {run_id}", "wait") from error
    submitted.state = followed.state
    print(f"kale: run {run_id} ended: {followed.state}", file=sys.stderr)
    if followed.state != "SUCCEEDED":
        steps = "; ".join(f"step {name} failed" + (f": {message}" if message else "")
                          for name, message in followed.failed.items())
        raise KubeflowError(f"run {run_id} of pipeline {graph.name} ended {followed.state}"
                            + (f" ({steps})" if steps else ""),
                            fix=f"see its steps and logs at {url}")
