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
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kale.errors import KaleError
from kale.graph.model import Graph
from kale.kfp.connection import Connection, connect, explain
from kale.kfp.server import Target

if TYPE_CHECKING:
    from kale.kfp.bundle import Bundle
    from kale.kfp.run import KfpRecurringRun, KfpRun
    from kale.kfp.schedule import Schedule


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
                   "bundle_store": "--bundle-store", "server_version": "--server-version",
                   "install": "--no-install"}


def compile_package(graph: Graph, output: str | os.PathLike[str] | None, *,
                    image: str | None = None, requirements: str | None = None,
                    bundle_store: str | None = None, upload: bool | None = None,
                    option: str = "-o", server_version: str | None = None,
                    target: Target | None = None, bundle: Bundle | None = None,
                    install: bool | None = None, cache: bool | None = None,
                    values: dict[str, Any] | None = None) -> PipelinePackage:
    """Write the package of ``graph`` to ``output`` (default ``<pipeline name>.yaml``) and
    describe it on stderr. A bundle too big for the package is uploaded to the bundle store
    when ``upload`` (by default: when ``bundle_store`` is given). The package is compiled for
    ``target`` (the server of a submission), else for the release ``server_version`` names,
    else for the newest (``kale.kfp.server``). ``cache`` is ``--cache`` (True) or
    ``--no-cache`` (False); ``None`` leaves it to each step's ``cache`` option."""
    from kale.kfp.compiler import compile_graph, describe
    from kale.kfp.server import NEWEST, check_version_flag

    path = package_path(graph, output, option=option)
    if target is None:
        target = NEWEST if not server_version else Target(
            check_version_flag(server_version, COMPILE_OPTIONS["server_version"]
                               if option.startswith("-") else "server_version="),
            "--server-version", server_version)
    compiled = compile_graph(graph, path, image=image, requirements=requirements,
                             bundle_store=bundle_store, bundle=bundle,
                             upload=bool(bundle_store) if upload is None else upload,
                             target=target, install=install, cache=cache, values=values)
    print(describe(graph, compiled, path), file=sys.stderr)
    return PipelinePackage(path)


#: What ``--kfp --resume`` does, said when it is used. Kubeflow's own retry of a run
#: (``runs/{id}:retry``) starts the failed tasks again from the package that run was compiled
#: from: a step fixed since would fail the same way. A new run with caching on takes the code as
#: it is now and reuses what did not change (``kale.kfp.caching``).
RESUME_NOTE = (
    "kale: --resume with --kfp starts a new run with Kubeflow's caching on for every step: "
    "each step unchanged since a run of this pipeline in this namespace that ran it with caching "
    "on is reused, and the others (the failed one, what you edited, what follows them) run. "
    "Servers up to 2.17.0 ignore Kale's per-step code keys, so there every step runs again; "
    "a run id after --resume is not needed (Kubeflow's cache is not kept per run)")


def compile_for_kubeflow(graph: Graph, values: dict[str, Any], flags: Any
                         ) -> KfpRun | KfpRecurringRun | PipelinePackage:
    """``--kfp``: write the package (``--dry-run``, returns its path) or submit it (returns the
    run; ``--wait`` follows it and raises ``KubeflowError`` unless it succeeds). With
    ``--schedule`` the submission creates a recurring run (a dry run says what it would
    create)."""
    schedule = getattr(flags, "recurring", None)
    cache = getattr(flags, "caching", None)  # --cache / --no-cache (--resume: --cache)
    if getattr(flags, "resume", None) is not None:
        print(RESUME_NOTE, file=sys.stderr)
    try:
        if flags.dry_run:
            package = compile_package(graph, flags.output, image=flags.image,
                                      requirements=flags.requirements,
                                      bundle_store=flags.bundle_store,
                                      server_version=getattr(flags, "server_version", None),
                                      install=False if getattr(flags, "no_install", False)
                                      else None, cache=cache, values=values)
            if schedule is not None:
                experiment = graph.options.experiment or "Default"
                print(f"kale: --schedule: submitting would create a recurring run of pipeline "
                      f"{graph.name} in experiment {experiment}, of the version uploaded: "
                      f"{schedule.describe()}; parameters {values}", file=sys.stderr)
            return package
        run = submit_pipeline(graph, values, output=flags.output, host=flags.kfp_host,
                              namespace=flags.namespace, image=flags.image,
                              requirements=flags.requirements, bundle_store=flags.bundle_store,
                              server_version=getattr(flags, "server_version", None),
                              install=False if getattr(flags, "no_install", False) else None,
                              schedule=schedule, cache=cache)
    except KeyboardInterrupt:
        what = ("the package was not written" if flags.dry_run else
                "no run was started (a pipeline version may have been uploaded)")
        print(f"\nkale: interrupted; {what}", file=sys.stderr)
        raise SystemExit(130) from None
    if flags.wait and schedule is None:
        try:
            run.wait(check=True)
        except KeyboardInterrupt:
            raise SystemExit(130) from None  # wait() said that the run goes on
    return run


def submit_pipeline(graph: Graph, values: dict[str, Any], *,
                    output: str | os.PathLike[str] | None = None, host: str | None = None,
                    namespace: str | None = None, experiment: str | None = None,
                    image: str | None = None, requirements: str | None = None,
                    bundle_store: str | None = None, server_version: str | None = None,
                    install: bool | None = None, schedule: Schedule | None = None,
                    cache: bool | None = None, upload_only: bool = False,
                    upload_experiment: bool = True
                    ) -> KfpRun | KfpRecurringRun | Uploaded:
    """Compile ``graph`` (into ``output`` when given, else a temporary file) for the server at
    ``host`` (its release read from its health endpoint; ``server_version`` when it does not
    say), upload it and start a run with ``values``; a big bundle goes to the bundle store.
    ``cache`` as for ``compile_package``. ``upload_only`` uploads (and, with
    ``upload_experiment``, creates the experiment) without starting a run, and returns where
    it went: a Katib study's trials start runs; open-source Kale's ``--upload_pipeline`` only
    uploads."""
    from kale.kfp.bundle import build_bundle
    from kale.kfp.delivery import check_placeable
    from kale.kfp.server import target_from_healthz
    from kale.kfp.store import configured_store

    check_run_values(graph, values)
    if output:
        package_path(graph, output)
    # What cannot be submitted at all is refused before anything is contacted.
    bundle = build_bundle(graph.project_root)
    check_placeable(bundle, configured_store(graph.project_root, bundle_store))
    client, connection = connect(host, namespace)
    target = target_from_healthz(client.healthz or {}, server_version, connection.namespace)
    check_run_id(graph, values, target)
    with tempfile.TemporaryDirectory(prefix="kale-kfp-") as folder:
        package = compile_package(
            graph, output or os.path.join(folder, f"{graph.name}.yaml"), image=image,
            requirements=requirements, bundle_store=bundle_store, upload=True,
            target=target, bundle=bundle, install=install, cache=cache, values=values)
        return submit(graph, values, package, experiment=experiment,
                      connected=(client, connection), schedule=schedule,
                      upload_only=upload_only, upload_experiment=upload_experiment)


def check_run_id(graph: Graph, values: dict[str, Any], target: Target) -> None:
    """Refuse ``[[RunUUID]]`` in this run's values where the server would not give Kale the
    run's id (see ``kale.kfp.server.RUN_ID``)."""
    from kale.kfp import server
    from kale.kfp.compiler import uses_run_id

    if uses_run_id(graph, values) and not target.supports(server.RUN_ID):
        raise KaleError(
            f"[[RunUUID]] in a value of this run needs Kubeflow Pipelines "
            f"{server.spelled(server.RUN_ID)} or later: the driver of {target.named} does not "
            "replace the run-id placeholder Kale reads it from",
            fix="upgrade the server, or pass a value without [[RunUUID]]")


#: A DNS-1123 label: what Kubernetes names objects with, and so what the Kubernetes pipeline
#: store takes as pipeline and version names (IsDNS1123Subdomain at HEAD,
#: backend/src/crd/kubernetes/v2beta1/pipeline_version_name.go; a label is also a subdomain).
_LABEL_LIMIT = 63


def dns_label(text: str, limit: int = _LABEL_LIMIT) -> str:
    """``text`` as a DNS-1123 label of at most ``limit`` characters: lowercase letters, digits
    and '-', a letter or digit at each end; a name too long keeps its start and a hash of the
    whole, so two long names stay apart."""
    import hashlib
    import re

    label = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "kale"
    if len(label) > limit:
        digest = hashlib.sha256(text.encode()).hexdigest()[:8]
        label = f"{label[: limit - 9].rstrip('-')}-{digest}"
    return label


class ResourceNames:
    """The names a pipeline and its versions are uploaded under (DNS-1123 labels, which every
    pipeline store takes), beside their display names, which keep the pipeline's own name and
    the upload's date and time for the UI (servers from 2.14 show them)."""

    def __init__(self, pipeline: str, display: str | None = None) -> None:
        self.display = display or pipeline
        self.pipeline = dns_label(pipeline)

    @classmethod
    def of(cls, pipeline: str, display: str | None = None) -> ResourceNames:
        """The names of pipeline ``pipeline`` (Kale's name for it), shown as ``display`` (the
        name as the user wrote it, ``My Sums`` for ``my-sums``) when given."""
        return cls(pipeline, display)

    def version(self) -> str:
        """``sums-20260101-100000-3fa2``: the pipeline, the time, and four random hex digits,
        so that two uploads in one second do not clash."""
        import secrets

        stamp = time.strftime("%Y%m%d-%H%M%S")
        return f"{dns_label(self.pipeline, _LABEL_LIMIT - 21)}-{stamp}-{secrets.token_hex(2)}"


def _find_pipeline(client: Any, names: ResourceNames, namespace: str | None) -> str | None:
    """The id of the pipeline shown as ``names.display`` (in ``namespace``), else of one named
    ``names.pipeline`` (what servers before 2.14, which keep no display name, show), else None.
    """
    import json

    for name in dict.fromkeys([names.display, names.pipeline]):
        found = client._pipelines_api.pipeline_service_list_pipelines(
            filter=json.dumps({"predicates": [{"operation": "EQUALS", "key": "display_name",
                                               "stringValue": name}]}),
            **({"namespace": namespace} if namespace else {})).pipelines or []
        if len(found) > 1:
            raise KaleError(f"{len(found)} pipelines are named {name} on the server",
                            fix="delete or rename all but one in the Kubeflow UI")
        if found:
            return found[0].pipeline_id
    return None


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


@dataclass(frozen=True)
class Uploaded:
    """Where ``submit(upload_only=True)`` put the pipeline: its version, in which experiment
    runs of it go, and the connection's host and namespace."""

    pipeline_id: str
    version_id: str
    #: None when only the pipeline was uploaded (``upload_experiment=False``)
    experiment: str | None
    experiment_id: str | None
    namespace: str | None
    host: str


def submit(graph: Graph, values: dict[str, Any], path: str | os.PathLike[str], *,
           host: str | None = None, namespace: str | None = None,
           experiment: str | None = None,
           connected: tuple[Any, Connection] | None = None,
           schedule: Schedule | None = None, upload_only: bool = False,
           upload_experiment: bool = True) -> Any:
    """Upload the package at ``path`` and start a run with ``values`` in ``experiment`` (by
    default the pipeline's, else "Default"), or with ``schedule`` create a recurring run of the
    uploaded version; ``connected`` is a client already connected. ``upload_only``: start
    nothing, return the ``Uploaded`` (its experiment created unless not ``upload_experiment``).
    """
    from kale.kfp.run import KfpRecurringRun, KfpRun

    path = os.fspath(path)
    client, connection = connected or connect(host, namespace)
    experiment_name = experiment or graph.options.experiment or "Default"
    # A multi-user server keeps pipelines in namespaces: from 2.15 it may refuse one without
    # (REQUIRE_NAMESPACE_FOR_PIPELINES, backend/src/apiserver/validation/namespace.go@2.15.0),
    # and its Kubernetes pipeline store always does ("A namespace is required",
    # backend/src/apiserver/storage/pipeline_store_kubernetes.go). A single-user one has none.
    home = connection.namespace if getattr(client, "multi_user", False) else None
    # The display names keep the name as written (`@pipeline(name="My Sums")`), the names the
    # DNS label Kale made of it.
    names = ResourceNames.of(graph.name, getattr(graph.options, "display_name", None))
    action, kind = f"look up pipeline {graph.name}", "pipeline"
    try:
        pipeline_id = _find_pipeline(client, names, home)
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        action = f"upload pipeline {graph.name}"
        if pipeline_id is None:
            pipeline = client._upload_api.upload_pipeline(
                path, name=names.pipeline, display_name=names.display,
                description=graph.options.description, namespace=home)
            pipeline_id = pipeline.pipeline_id
            versions = client.list_pipeline_versions(pipeline_id).pipeline_versions or []
            version_id = versions[0].pipeline_version_id if versions else None
        else:
            version = client._upload_api.upload_pipeline_version(
                path, name=names.version(), display_name=f"{names.display} {stamp}",
                pipelineid=pipeline_id)
            version_id = version.pipeline_version_id
        if upload_only and not upload_experiment:
            print(f"kale: uploaded pipeline {graph.name} (pipeline {pipeline_id}, version "
                  f"{version_id}) to {connection.host} ({connection.namespace_text})",
                  file=sys.stderr)
            return Uploaded(pipeline_id, version_id or "", None, None, connection.namespace,
                            connection.host)
        action, kind = f"find or create experiment {experiment_name}", "experiment"
        created = client.create_experiment(name=experiment_name, namespace=connection.namespace)
        if upload_only:
            print(f"kale: uploaded pipeline {graph.name} (version {version_id}), experiment "
                  f"{experiment_name} ({connection.namespace_text})", file=sys.stderr)
            return Uploaded(pipeline_id, version_id or "", experiment_name,
                            created.experiment_id, connection.namespace, connection.host)
        if schedule is not None:
            action, kind = f"create a recurring run of pipeline {graph.name}", "run"
            recurring = client.create_recurring_run(
                experiment_id=created.experiment_id,
                job_name=f"{graph.name} ({schedule.given})", cron_expression=schedule.cron,
                start_time=schedule.start, end_time=schedule.end,
                max_concurrency=schedule.max_concurrency, no_catchup=not schedule.catchup,
                params=values, pipeline_id=pipeline_id, version_id=version_id, enabled=True)
            ui = os.environ.get("KF_PIPELINES_UI_ENDPOINT") or connection.host
            url = f"{ui.rstrip('/')}/#/recurringrun/details/{recurring.recurring_run_id}"
            print(f"kale: created recurring run {recurring.recurring_run_id} of pipeline "
                  f"{graph.name} in experiment {experiment_name} ({connection.namespace_text}): "
                  f"{schedule.describe()}\n  {url}", file=sys.stderr)
            return KfpRecurringRun(recurring.recurring_run_id, url, pipeline=graph.name,
                                   experiment=experiment_name, schedule=schedule,
                                   pipeline_id=pipeline_id, version_id=version_id or "",
                                   experiment_id=created.experiment_id,
                                   namespace=connection.namespace)
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
