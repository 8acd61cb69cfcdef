"""Tuning on Kubeflow: the Katib Experiment (checked against Katib's own API models), written by
a dry run, created through a stand-in Kubernetes API and followed; and the trial command run
against the stand-in Pipelines API and ML Metadata."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
import yaml

from kale import flags
from tests.kfp.fake_kfp import FakeKubeflow
from tests.tuning.standins import FakeKubernetes, FakeMetadata

MODEL = '''
    from kale.sdk import pipeline, step
    from kale.sdk.logging import log_metric
    from kale.sdk.tuning import Choice, Float, Int

    @step
    def train(lr: float, depth: int, kernel: str, epochs: int):
        log_metric("accuracy", 1 - lr * depth / epochs)

    @pipeline(name="model", experiment="tuning")
    def model(lr: float = 0.1, depth: int = 3, kernel: str = "rbf", epochs: int = 5):
        train(lr, depth, kernel, epochs)

    SPACE = {"lr": Float(1e-4, 1e-1, log=True), "depth": Int(2, 10, step=2),
             "kernel": Choice(["rbf", "linear"])}
'''

CONNECTION = ("KF_PIPELINES_ENDPOINT", "KF_PIPELINES_UI_ENDPOINT", "KF_PIPELINES_SA_TOKEN_PATH",
              "KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT", "KALE_TRIAL_IMAGE",
              "KALE_IMAGE")


def script(tmp_path, main, *arguments, **env):
    text = textwrap.dedent(MODEL) + '\nif __name__ == "__main__":\n' + \
        textwrap.indent(textwrap.dedent(main), "    ")
    (tmp_path / "flow.py").write_text(text)
    inherited = {k: v for k, v in os.environ.items() if k not in CONNECTION}
    return subprocess.run([sys.executable, "flow.py", *arguments], capture_output=True,
                          text=True, cwd=tmp_path, timeout=180,
                          env={**inherited, "HOME": str(tmp_path), "KALE_PROGRESS": "plain",
                               "KALE_HOME": str(tmp_path / "home"), **env})


def roundtrip(data):
    from kubeflow_katib_api.models import V1beta1Experiment

    return V1beta1Experiment.from_dict(data).to_dict()


def test_a_dry_run_writes_the_experiment_beside_the_package_and_contacts_nothing(tmp_path):
    (tmp_path / "out").mkdir()
    done = script(tmp_path, '''
        study = model.tune(epochs=7, parameters=SPACE, objective="accuracy",
                           algorithm="tpe", max_trials=12, parallel_trials=3, seed=5)
        print("STATUS", study.status)
    ''', "--kfp", "--dry-run", "-o", "out/pkg.yaml",
        # anything contacted would fail: no cluster, no Pipelines API here
        KUBECONFIG=str(tmp_path / "missing"), KF_PIPELINES_ENDPOINT="http://127.0.0.1:9")
    assert done.returncode == 0, done.stderr
    assert "STATUS compiled" in done.stdout
    assert (tmp_path / "out" / "pkg.yaml").is_file()
    data = yaml.safe_load((tmp_path / "out" / "pkg.katib.yaml").read_text())
    assert roundtrip(data) == data  # Katib's own models read it back unchanged
    assert "wrote Katib Experiment" in done.stderr and "pkg.katib.yaml" in done.stderr
    assert not (tmp_path / "home" / "runs").exists()
    spec = data["spec"]
    assert data["apiVersion"] == "kubeflow.org/v1beta1" and data["kind"] == "Experiment"
    assert spec["objective"] == {"type": "maximize", "objectiveMetricName": "accuracy",
                                 "metricStrategies": [{"name": "accuracy", "value": "latest"}]}
    assert spec["algorithm"] == {"algorithmName": "tpe", "algorithmSettings": [
        {"name": "random_state", "value": "5"}]}
    assert (spec["maxTrialCount"], spec["parallelTrialCount"], spec["maxFailedTrialCount"]) == \
        (12, 3, 3)
    assert spec["metricsCollectorSpec"] == {"collector": {"kind": "StdOut"}}
    assert spec["parameters"] == [
        {"feasibleSpace": {"distribution": "logUniform", "max": "0.1", "min": "0.0001"},
         "name": "lr", "parameterType": "double"},
        {"feasibleSpace": {"max": "10", "min": "2", "step": "2"}, "name": "depth",
         "parameterType": "int"},
        {"feasibleSpace": {"list": ["rbf", "linear"]}, "name": "kernel",
         "parameterType": "categorical"}]
    template = spec["trialTemplate"]
    assert template["primaryContainerName"] == "kale-trial"
    assert [p["reference"] for p in template["trialParameters"]] == ["lr", "depth", "kernel"]
    job = template["trialSpec"]
    assert job["kind"] == "Job" and job["spec"]["backoffLimit"] == 0
    container = job["spec"]["template"]["spec"]["containers"][0]
    command = container["command"][2]
    for fragment in ("python -m kale.tuning.trial", "--pipeline model", "--experiment tuning",
                     "--objective accuracy", "'lr:float=${trialParameters.lr}'",
                     "'depth:int=${trialParameters.depth}'", """'{"epochs": 7}'"""):
        assert fragment in command, command
    assert "--version-id" not in command  # a dry run uploads nothing: the newest version
    assert container["image"] == f"python:{sys.version_info.major}.{sys.version_info.minor}"


def test_algorithms_without_a_local_equivalent_are_valid_for_katib(tmp_path):
    done = script(tmp_path, '''
        model.tune(parameters=SPACE, objective="accuracy", algorithm="hyperband")
    ''', "--kfp", "--dry-run", "-o", "pkg.yaml")
    assert done.returncode == 0, done.stderr
    data = yaml.safe_load((tmp_path / "pkg.katib.yaml").read_text())
    assert data["spec"]["algorithm"]["algorithmName"] == "hyperband"
    # and a local study refuses it before any trial
    done = script(tmp_path, '''
        model.tune(parameters=SPACE, objective="accuracy", algorithm="hyperband")
    ''')
    assert done.returncode == 2 and "has no local equivalent" in done.stderr
    assert "flow.py:" in done.stderr and "stays valid on Kubeflow" in done.stderr


@pytest.fixture
def cluster(project, monkeypatch, tmp_path):
    pytest.importorskip("kfp")
    for name in CONNECTION:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("KALE_WAIT_INTERVAL", "0.05")
    with FakeKubeflow() as kubeflow, FakeKubernetes() as kubernetes:
        monkeypatch.setenv("KUBECONFIG", kubernetes.kubeconfig(tmp_path / "kubeconfig"))
        yield kubeflow, kubernetes, project.load(MODEL, prelude=False)


def katib_trial(name, lr, depth, kernel, state, value=None):
    status = {"conditions": [{"type": state, "status": "True"}]}
    if value is not None:
        status["observation"] = {"metrics": [{"name": "accuracy", "latest": str(value),
                                              "max": str(value), "min": str(value)}]}
    return {"metadata": {"name": name, "creationTimestamp": f"2026-12-02T10:00:0{name[-1]}Z",
                         "labels": {"katib.kubeflow.org/experiment": EXPERIMENT[0]}},
            "spec": {"parameterAssignments": [{"name": "lr", "value": lr},
                                              {"name": "depth", "value": depth},
                                              {"name": "kernel", "value": kernel}]},
            "status": status}


EXPERIMENT: list[str] = [""]


def test_kfp_uploads_then_creates_the_experiment_and_wait_follows_it(cluster, monkeypatch,
                                                                     capsys):
    kubeflow, kubernetes, module = cluster
    monkeypatch.setattr(flags, "FLAGS", flags.Flags(kfp=True, kfp_host=kubeflow.host,
                                                    namespace="team-a"))
    study = module.model.tune(parameters=module.SPACE, objective="accuracy", max_trials=4)
    assert study.status == "created" and study.namespace == "team-a"
    (namespace, name), created = next(iter(kubernetes.experiments.items()))
    assert namespace == "team-a" and name == study.experiment and name.startswith("model-")
    assert roundtrip(created) == created
    command = created["spec"]["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"][
        "containers"][0]["command"][2]
    # the trials run the version just uploaded, in the experiment it was filed in
    assert "--pipeline-id pipeline-1 --version-id version-1-1" in command
    assert "--experiment-id experiment-1 --namespace team-a" in command
    assert ("POST", "/runs") not in kubeflow.calls()  # the trials start the runs, not tune()
    assert "created Katib Experiment" in capsys.readouterr().err

    # --wait follows the trials until the experiment ends
    EXPERIMENT[0] = "model-followed"
    monkeypatch.setattr("kale.tuning.katib.experiment_name", lambda pipeline: EXPERIMENT[0])
    kubernetes.trials = [katib_trial("model-followed-a1", "0.01", "4", "rbf", "Succeeded", 0.9),
                         katib_trial("model-followed-b2", "0.05", "8", "linear", "Failed"),
                         katib_trial("model-followed-c3", "0.002", "2", "linear", "Succeeded",
                                     0.95)]
    kubernetes.status = {"conditions": [{"type": "Created", "status": "True"},
                                        {"type": "Succeeded", "status": "True",
                                         "message": "max trial count reached"}]}
    monkeypatch.setattr(flags, "FLAGS", flags.Flags(kfp=True, kfp_host=kubeflow.host,
                                                    namespace="team-a", wait=True))
    study = module.model.tune(parameters=module.SPACE, objective="accuracy", max_trials=3)
    assert study.status == "succeeded" and study.reason == "max trial count reached"
    assert [t.status for t in study.trials] == ["succeeded", "failed", "succeeded"]
    assert study.best_value == 0.95
    assert study.best_parameters == {"lr": 0.002, "depth": 2, "kernel": "linear"}
    err = capsys.readouterr().err
    assert err.count("kale: trial model-followed-") == 3 and "best 0.95" in err


def test_katib_refusals_are_explained(cluster, monkeypatch):
    kubeflow, kubernetes, module = cluster
    from kale.tuning.katib import KatibError

    monkeypatch.setattr(flags, "FLAGS", flags.Flags(kfp=True, kfp_host=kubeflow.host,
                                                    namespace="team-b"))
    kubernetes.namespaces = ("team-a",)
    with pytest.raises(KatibError) as caught:
        module.model.tune(parameters=module.SPACE, objective="accuracy")
    assert "could not create Katib Experiment" in caught.value.message
    assert "namespaces \"team-b\" not found" in caught.value.message
    assert "Katib is not installed" in caught.value.fix
    kubernetes.token = "another"
    monkeypatch.setattr(flags, "FLAGS", flags.Flags(kfp=True, kfp_host=kubeflow.host,
                                                    namespace="team-a"))
    with pytest.raises(KatibError) as caught:
        module.model.tune(parameters=module.SPACE, objective="accuracy")
    assert "401" in caught.value.message and "may not create" in caught.value.fix


# the trial command ------------------------------------------------------------------------------


def trial_arguments(kubeflow):
    return ["--host", kubeflow.host, "--pipeline", "model", "--pipeline-id", "pipeline-1",
            "--version-id", "version-1-1", "--experiment", "tuning", "--experiment-id",
            "experiment-1", "--namespace", "team-a", "--objective", "accuracy",
            "--metric-name", "accuracy", "--values", json.dumps({"epochs": 7}),
            "--parameter", "lr:float=0.01", "--parameter", "depth:int=4",
            "--parameter", "kernel:str=linear"]


@pytest.fixture
def trial_servers(monkeypatch, tmp_path):
    pytest.importorskip("kfp")
    for name in CONNECTION:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("KALE_WAIT_INTERVAL", "0.05")
    with FakeKubeflow() as kubeflow, FakeMetadata() as metadata:
        monkeypatch.setenv("KALE_METADATA_ENDPOINT", metadata.url)
        yield kubeflow, metadata


def test_the_trial_command_runs_the_pipeline_and_prints_the_objective(trial_servers, capsys):
    from kale.tuning.trial import main

    kubeflow, metadata = trial_servers
    kubeflow.progress = [("RUNNING", {"train": "RUNNING"})]
    kubeflow.final_tasks = {"train": "SUCCEEDED"}
    kubeflow.task_outputs = {"train": {"kale_metrics": {"artifact_ids": ["7"]}}}
    metadata.artifacts = {7: {"accuracy": 0.9375, "loss": 0.25, "display_name": "kale_metrics"}}
    assert main(trial_arguments(kubeflow)) == 0
    out, err = capsys.readouterr()
    assert out == "accuracy=0.9375\n"  # the one line on stdout, for Katib's collector
    assert "started run run-1 of pipeline model" in err and "=" not in err
    started = json.loads(next(r["body"] for r in kubeflow.requests
                              if r["method"] == "POST" and r["path"].endswith("/runs")))
    assert started["runtime_config"]["parameters"] == {"epochs": 7, "lr": 0.01, "depth": 4,
                                                       "kernel": "linear"}
    assert started["pipeline_version_reference"] == {"pipeline_id": "pipeline-1",
                                                     "pipeline_version_id": "version-1-1"}
    assert metadata.asked == [[7]]


def test_a_trial_whose_run_fails_or_logs_no_objective_fails(trial_servers, capsys):
    from kale.tuning.trial import main

    kubeflow, metadata = trial_servers
    kubeflow.final_state = "FAILED"
    assert main(trial_arguments(kubeflow)) == 1
    out, err = capsys.readouterr()
    assert out == "" and "ended FAILED" in err
    kubeflow.final_state = "SUCCEEDED"
    kubeflow.final_tasks = {"train": "SUCCEEDED"}
    kubeflow.task_outputs = {"train": {"kale_metrics": {"artifact_ids": ["8"]}}}
    metadata.artifacts = {8: {"loss": 0.25}}
    assert main(trial_arguments(kubeflow)) == 1
    out, err = capsys.readouterr()
    assert out == "" and "logged no metric accuracy" in err
