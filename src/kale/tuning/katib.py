"""A study on Kubeflow: a Katib ``Experiment`` (``kubeflow.org/v1beta1``) whose trials are KFP
runs of the uploaded pipeline.

Katib has no trial kind for KFP v2 (kubeflow/katib#1914), so each trial is a Kubernetes ``Job``
running Kale's trial command (``kale.tuning.trial``) in an image that has Kale: it starts a run
of the uploaded pipeline version with the trial's parameters, waits for it, reads the objective
from the run's metrics and prints it as ``name=value``, the line Katib's StdOut metrics
collector reads (the shim open-source Kale and Arrikto's Kale used).

The Experiment is built with Katib's own API models (``kubeflow-katib-api``: pydantic models
that install beside kfp, where the ``kubeflow-katib`` SDK pins an older protobuf and breaks
kfp) and created through the Kubernetes API with the ``kubernetes`` client that comes with
kfp: in a pod its service account, elsewhere the kubeconfig (``KUBECONFIG``, else
``~/.kube/config``). ``--kfp --dry-run -o PKG.yaml`` writes the package and the Experiment
beside it (``PKG.katib.yaml``) and contacts nothing; ``--wait`` follows the trials.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
import time
from typing import TYPE_CHECKING, Any

from kale.errors import KaleError
from kale.tuning.algorithms import SEEDED
from kale.tuning.space import Choice, Float, Int
from kale.tuning.study import Study, Trial

if TYPE_CHECKING:
    from kale.graph.model import Graph
    from kale.tuning.settings import Settings

GROUP, VERSION, PLURAL = "kubeflow.org", "v1beta1", "experiments"
#: The trial Job's container: Katib injects its metrics collector beside it.
CONTAINER = "kale-trial"
#: Where the trial's KFP token is mounted: what Kubeflow's "access to Kubeflow Pipelines"
#: PodDefault mounts, which the trial command (``kale.kfp.connection``) reads.
TOKEN_FOLDER = "/var/run/secrets/kubeflow/pipelines"
#: Katib's conditions of an Experiment and a Trial that end it.
ENDED = ("Succeeded", "Failed")


class KatibError(KaleError):
    """The Kubernetes API refused or could not be reached while creating or following an
    Experiment."""


def metric_name(objective: str) -> str:
    """The objective as Katib's StdOut collector can read it: its default filter takes names of
    letters, digits, ``_`` and ``-``, so ``train.accuracy`` is printed ``train-accuracy``."""
    return objective.replace(".", "-")


def trial_image(flags: Any) -> str:
    """The image of the trial Jobs: ``KALE_TRIAL_IMAGE``, else the steps' image (``--image``,
    ``KALE_IMAGE``), else the default Python image (the command then installs Kale first)."""
    return os.environ.get("KALE_TRIAL_IMAGE") or getattr(flags, "image", None) or \
        os.environ.get("KALE_IMAGE") or f"python:{sys.version_info.major}." \
        f"{sys.version_info.minor}"


def _feasible(entry: Any) -> tuple[str, Any]:
    from kubeflow_katib_api import models

    if isinstance(entry, Choice):
        # Katib hands every value to the trial as a string: JSON, read back by its type.
        return "categorical", models.V1beta1FeasibleSpace(list=[
            value if isinstance(value, str) else json.dumps(value) for value in entry.values])
    kind = "double" if isinstance(entry, Float) else "int"
    assert isinstance(entry, (Float, Int))
    low, high = (repr(entry.low), repr(entry.high)) if kind == "double" else \
        (str(entry.low), str(entry.high))
    step = None if (entry.step in (None, 1) and kind == "int") or entry.step is None else \
        str(entry.step)
    return kind, models.V1beta1FeasibleSpace(
        min=low, max=high, step=step, distribution="logUniform" if entry.log else None)


def trial_command(graph: Graph, settings: Settings, values: dict[str, Any], *,
                  pipeline_id: str | None, version_id: str | None, experiment: str,
                  experiment_id: str | None, namespace: str | None, install: bool) -> list[str]:
    """The trial container's command: ``python -m kale.tuning.trial`` with where the pipeline
    is, its other parameters' values, and each tuned parameter as Katib substitutes it."""
    types = {parameter.name: parameter.type for parameter in graph.parameters}
    fixed = {name: value for name, value in values.items() if name not in settings.space}
    arguments = ["--pipeline", graph.name, "--experiment", experiment,
                 "--objective", settings.objective, "--metric-name",
                 metric_name(settings.objective), "--values", json.dumps(fixed, default=str)]
    for option, value in (("--pipeline-id", pipeline_id), ("--version-id", version_id),
                          ("--experiment-id", experiment_id), ("--namespace", namespace)):
        if value:
            arguments += [option, value]
    for name in settings.space:
        arguments += ["--parameter", f"{name}:{types[name]}=${{trialParameters.{name}}}"]
    from kale import __version__

    run = "python -m kale.tuning.trial " + " ".join(shlex.quote(a) for a in arguments)
    if install:
        # An image without Kale (the default python: one) gets it first; one with it skips.
        run = (f"python -c 'import kale.tuning.trial' 2>/dev/null || pip install -q "
               f"'kale-sdk=={__version__}' >&2; exec {run}")
    else:
        run = f"exec {run}"
    return ["sh", "-c", run]


def build_experiment(graph: Graph, settings: Settings, values: dict[str, Any], *, name: str,
                     namespace: str | None, image: str, pipeline_id: str | None = None,
                     version_id: str | None = None, experiment: str | None = None,
                     experiment_id: str | None = None, install: bool = True) -> Any:
    """The Katib ``Experiment`` of a study, as Katib's API model (``V1beta1Experiment``)."""
    from kubeflow_katib_api import models

    experiment = experiment or graph.options.experiment or "Default"
    parameters, trial_parameters = [], []
    for parameter, entry in settings.space.items():
        kind, space = _feasible(entry)
        parameters.append(models.V1beta1ParameterSpec(name=parameter, parameter_type=kind,
                                                      feasible_space=space))
        trial_parameters.append(models.V1beta1TrialParameterSpec(
            name=parameter, reference=parameter,
            description=f"pipeline parameter {parameter}: {entry.describe()}"))
    command = trial_command(graph, settings, values, pipeline_id=pipeline_id,
                            version_id=version_id, experiment=experiment,
                            experiment_id=experiment_id, namespace=namespace, install=install)
    job = {
        "apiVersion": "batch/v1", "kind": "Job",
        "spec": {
            "backoffLimit": 0,  # a retried trial would start a second KFP run
            "template": {
                "metadata": {
                    "labels": {"app.kubernetes.io/managed-by": "kale"},
                    # An Istio sidecar never exits, so the Job would never complete.
                    "annotations": {"sidecar.istio.io/inject": "false"}},
                "spec": {
                    "restartPolicy": "Never",
                    # A Kubeflow profile's editor account, which may start KFP runs there
                    # (KALE_TRIAL_SERVICE_ACCOUNT names another where there is none).
                    "serviceAccountName": os.environ.get("KALE_TRIAL_SERVICE_ACCOUNT") or
                    "default-editor",
                    "containers": [{
                        "name": CONTAINER, "image": image, "command": command,
                        "env": [{"name": "KF_PIPELINES_SA_TOKEN_PATH",
                                 "value": f"{TOKEN_FOLDER}/token"}],
                        "volumeMounts": [{"name": "kfp-token", "mountPath": TOKEN_FOLDER,
                                          "readOnly": True}]}],
                    "volumes": [{"name": "kfp-token", "projected": {"sources": [{
                        "serviceAccountToken": {"path": "token", "expirationSeconds": 7200,
                                                "audience": "pipelines.kubeflow.org"}}]}}],
                },
            },
        },
    }
    settings_list = []
    if settings.seed is not None and settings.algorithm in SEEDED:
        settings_list.append(models.V1beta1AlgorithmSetting(name="random_state",
                                                            value=str(settings.seed)))
    metric = metric_name(settings.objective)
    return models.V1beta1Experiment(
        api_version=f"{GROUP}/{VERSION}", kind="Experiment",
        metadata=models.IoK8sApimachineryPkgApisMetaV1ObjectMeta(
            name=name, namespace=namespace,
            labels={"app.kubernetes.io/managed-by": "kale", "kale.pipeline":
                    graph.name[:63].strip("-.") or "kale"}),
        spec=models.V1beta1ExperimentSpec(
            objective=models.V1beta1ObjectiveSpec(
                type=settings.goal, objective_metric_name=metric,
                # The trial prints its objective once, at its end.
                metric_strategies=[models.V1beta1MetricStrategy(name=metric, value="latest")]),
            algorithm=models.V1beta1AlgorithmSpec(algorithm_name=settings.algorithm,
                                                  algorithm_settings=settings_list or None),
            parameters=parameters,
            max_trial_count=settings.max_trials,
            parallel_trial_count=settings.parallel_trials,
            max_failed_trial_count=settings.max_failed_trials,
            metrics_collector_spec=models.V1beta1MetricsCollectorSpec(
                collector=models.V1beta1CollectorSpec(kind="StdOut")),
            trial_template=models.V1beta1TrialTemplate(
                primary_container_name=CONTAINER, trial_parameters=trial_parameters,
                trial_spec=job,
                success_condition='status.conditions.#(type=="Complete")#|#(status=="True")#',
                failure_condition='status.conditions.#(type=="Failed")#|#(status=="True")#'),
        ),
    )


def experiment_yaml(experiment: Any) -> str:
    import yaml

    return yaml.safe_dump(experiment.to_dict(), sort_keys=False)


def experiment_name(pipeline: str) -> str:
    """``<pipeline>-<time>-<4 hex>``, a DNS-1123 label short enough for Katib to name the
    trials and their Jobs after it."""
    import secrets

    from kale.kfp.submit import dns_label

    return f"{dns_label(pipeline, 20)}-{time.strftime('%m%d%H%M%S')}-{secrets.token_hex(2)}"


def katib_path(package: str) -> str:
    """``PKG.yaml`` -> ``PKG.katib.yaml``."""
    stem, suffix = os.path.splitext(package)
    return f"{stem}.katib{suffix}"


# -- the Kubernetes API ---------------------------------------------------------------------------


def kubernetes_api() -> tuple[Any, str | None]:
    """The Kubernetes client's custom-objects API and the namespace of its context: in a pod,
    its service account; elsewhere the kubeconfig."""
    from kubernetes import client, config

    namespace = None
    try:
        config.load_incluster_config()
        path = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"
        if os.path.isfile(path):
            with open(path) as handle:
                namespace = handle.read().strip() or None
    except config.ConfigException:
        # Named here: the client reads KUBECONFIG once, when it is first imported.
        path = os.environ.get("KUBECONFIG") or None
        try:
            config.load_kube_config(config_file=path)
            _, active = config.list_kube_config_contexts(config_file=path)
            namespace = (active or {}).get("context", {}).get("namespace")
        except (config.ConfigException, OSError) as error:
            raise KatibError(f"Kale cannot reach the Kubernetes API to create the Katib "
                             f"Experiment: no in-cluster service account and no usable "
                             f"kubeconfig ({error})",
                             fix="run from a Kubeflow notebook, or point KUBECONFIG at a "
                             "kubeconfig for the cluster (kubectl's own works)") from None
    return client.CustomObjectsApi(), namespace


def _explain(error: Exception, action: str, namespace: str) -> KatibError:
    status = getattr(error, "status", None)
    body = getattr(error, "body", None) or str(error)
    try:
        said = json.loads(body).get("message", body)
    except (TypeError, ValueError, AttributeError):
        said = body
    if status == 404:
        fix = ("Katib is not installed on this cluster (no kubeflow.org/v1beta1 experiments), "
               "or the namespace does not exist: install Katib, or check --namespace")
    elif status in (401, 403):
        fix = (f"the credentials may not create Katib experiments in namespace {namespace}: "
               "use a namespace you contribute to (--namespace), or ask for the role")
    elif status is None:
        fix = "check that the cluster is reachable (kubectl get experiments works)"
    else:
        fix = "see the message above; KALE_DEBUG=1 shows the whole answer"
    return KatibError(f"the Kubernetes API could not {action}: "
                      f"{status or 'no answer'}: {said}", fix=fix)


def create_experiment(experiment: Any, namespace: str) -> dict[str, Any]:
    api, _ = kubernetes_api()
    try:
        return api.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL,
                                                   experiment.to_dict())
    except Exception as error:
        raise _explain(error, f"create Katib Experiment {experiment.metadata.name} in "
                       f"namespace {namespace}", namespace) from error


def read_trials(api: Any, name: str, namespace: str, settings: Settings) -> list[Trial]:
    """The Experiment's trials as ``Trial``s: parameters (read back by their types), status
    (Katib's last condition), the objective's value."""
    found = api.list_namespaced_custom_object(GROUP, VERSION, namespace, "trials",
                                              label_selector=f"katib.kubeflow.org/experiment="
                                              f"{name}")
    metric = metric_name(settings.objective)
    trials = []
    for number, item in enumerate(sorted(found.get("items", []), key=lambda i: (
            i.get("metadata", {}).get("creationTimestamp") or "", i["metadata"]["name"]))):
        assigned = {a.get("name"): a.get("value") for a in
                    item.get("spec", {}).get("parameterAssignments", [])}
        parameters = {}
        for name_, entry in settings.space.items():
            text = assigned.get(name_)
            parameters[name_] = _read_back(entry, text)
        status = item.get("status", {})
        conditions = [c for c in status.get("conditions", []) if c.get("status") == "True"]
        state = conditions[-1]["type"].lower() if conditions else "created"
        value = None
        for entry in (status.get("observation") or {}).get("metrics") or []:
            if entry.get("name") == metric:
                try:
                    value = float(entry.get("latest"))
                except (TypeError, ValueError):
                    value = None
        trials.append(Trial(number, parameters, status=state, value=value,
                            run_id=item["metadata"]["name"]))
    return trials


def _read_back(entry: Any, text: Any) -> Any:
    if text is None:
        return None
    try:
        if isinstance(entry, Choice):
            return next((v for v in entry.values if (v if isinstance(v, str) else
                                                     json.dumps(v)) == text), text)
        return float(text) if isinstance(entry, Float) else int(float(text))
    except ValueError:
        return text


def follow_experiment(study: Study, settings: Settings, out: Any) -> Study:
    """``--wait``: print each trial as it ends (with the best so far) until the Experiment
    ends; Ctrl-C stops following, not the Experiment."""
    from kale.kfp.follow import wait_interval

    api, _ = kubernetes_api()
    assert study.experiment and study.namespace
    shown: set[str] = set()
    try:
        while True:
            try:
                data = api.get_namespaced_custom_object(GROUP, VERSION, study.namespace, PLURAL,
                                                        study.experiment)
                study.trials = read_trials(api, study.experiment, study.namespace, settings)
            except Exception as error:
                raise _explain(error, f"read Katib Experiment {study.experiment}",
                               study.namespace) from error
            for trial in study.trials:
                if trial.status in ("succeeded", "failed", "metricsunavailable", "killed",
                                    "earlystopped") and trial.run_id not in shown:
                    shown.add(trial.run_id or "")
                    best = study.best_trial
                    value = f"{study.objective}={trial.value}" if trial.value is not None \
                        else trial.status
                    tail = f"best {best.value} (trial {best.run_id})" if best else "no best yet"
                    print(f"kale: trial {trial.run_id} {trial.status}: {value} "
                          f"{trial.parameters}; {tail}", file=out)
            conditions = [c for c in (data.get("status") or {}).get("conditions", [])
                          if c.get("status") == "True"]
            if conditions and conditions[-1].get("type") in ENDED:
                study.status = conditions[-1]["type"].lower()
                study.reason = conditions[-1].get("message") or ""
                return study
            time.sleep(wait_interval())
    except KeyboardInterrupt:
        print(f"\nkale: stopped following Experiment {study.experiment}; it goes on in Katib",
              file=out)
        raise


# -- tune() with --kfp ----------------------------------------------------------------------------


def tune_on_kubeflow(graph: Graph, values: dict[str, Any], settings: Settings,
                     flags: Any) -> Study:
    """``tune()`` on Kubeflow: compile and upload the pipeline, then create its Experiment
    (``--dry-run``: write both files, contact nothing); ``--wait`` follows the trials."""
    from kale.kfp.submit import compile_package, package_path, submit_pipeline

    if getattr(flags, "schedule", None):
        raise KaleError("--schedule creates a recurring run of a pipeline; tune() creates a "
                        "Katib Experiment, which has no schedule",
                        location=settings.location,
                        fix="drop --schedule to tune, or call the pipeline itself to schedule it")
    out = sys.stderr
    image = trial_image(flags)
    install = not getattr(flags, "no_install", False)
    name = experiment_name(graph.name)
    study = Study(name, graph.name, settings.objective, settings.goal, settings.algorithm,
                  settings.to_json(), started=time.time(), experiment=name)
    cache = getattr(flags, "caching", None)
    if flags.dry_run:
        package = compile_package(graph, flags.output, image=flags.image,
                                  requirements=flags.requirements,
                                  bundle_store=flags.bundle_store,
                                  server_version=getattr(flags, "server_version", None),
                                  install=False if not install else None, cache=cache,
                                  values=values)
        namespace = flags.namespace
        experiment = build_experiment(graph, settings, values, name=name, namespace=namespace,
                                      image=image, install=install)
        path = katib_path(str(package))
        with open(path, "w") as handle:
            handle.write(experiment_yaml(experiment))
        print(f"kale: wrote Katib Experiment {name} to {path}: its trials run the newest "
              f"version of pipeline {graph.name} once it is uploaded (kubectl apply -f {path})",
              file=out)
        study.status = "compiled"
        study.folder = None
        return study
    if flags.output:
        package_path(graph, flags.output)
    uploaded = submit_pipeline(graph, values, output=flags.output, host=flags.kfp_host,
                               namespace=flags.namespace, image=flags.image,
                               requirements=flags.requirements, bundle_store=flags.bundle_store,
                               server_version=getattr(flags, "server_version", None),
                               install=False if not install else None, cache=cache,
                               upload_only=True)
    api_namespace = kubernetes_api()[1]
    namespace = uploaded.namespace or api_namespace or "default"
    experiment = build_experiment(graph, settings, values, name=name, namespace=namespace,
                                  image=image, pipeline_id=uploaded.pipeline_id,
                                  version_id=uploaded.version_id,
                                  experiment=uploaded.experiment,
                                  experiment_id=uploaded.experiment_id, install=install)
    create_experiment(experiment, namespace)
    study.namespace = namespace
    study.status = "created"
    print(f"kale: created Katib Experiment {name} in namespace {namespace}: "
          f"{settings.max_trials} trials of pipeline {graph.name}, {settings.algorithm}, "
          f"{settings.goal} {settings.objective} (kubectl get experiment {name} -n "
          f"{namespace}; Katib's UI in the Kubeflow dashboard shows it)", file=out)
    if flags.wait:
        try:
            follow_experiment(study, settings, out)
        except KeyboardInterrupt:
            raise SystemExit(130) from None
        print("\n" + study.table(), file=out)
    return study
