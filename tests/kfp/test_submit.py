"""Submission to Kubeflow Pipelines, against a local server that speaks its REST API."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from tests.kfp.fake_kfp import FakeKubeflow

pytest.importorskip("kfp")

SCRIPT = textwrap.dedent('''
    from kale.sdk import pipeline, step

    @step
    def make(n):
        return list(range(n))

    @step
    def total(values):
        return sum(values)

    @pipeline(name="sums", experiment="arithmetic")
    def sums(n=3):
        values = make(n)
        total(values)

    if __name__ == "__main__":
        sums(n=5)
''')


def run_script(tmp_path, *flags, **env):
    (tmp_path / "flow.py").write_text(SCRIPT)
    return subprocess.run([sys.executable, "flow.py", *flags], capture_output=True, text=True,
                          cwd=tmp_path, timeout=120,
                          env={**os.environ, "KALE_HOME": str(tmp_path / "home"), **env})


def test_first_submission_uploads_creates_the_experiment_and_starts_a_run(tmp_path):
    with FakeKubeflow() as kubeflow:
        result = run_script(tmp_path, "--kfp", "--kfp-host", kubeflow.host, "--wait")
        assert result.returncode == 0, result.stderr
        calls = kubeflow.calls()
        assert ("POST", "/pipelines/upload") in calls
        assert ("POST", "/experiments") in calls
        assert ("POST", "/runs") in calls
        upload = next(r for r in kubeflow.requests if r["path"].endswith("/pipelines/upload"))
        assert upload["query"]["name"] == "sums"
        assert b"kale-bundle" in upload["body"]  # the compiled package itself
        experiment = json.loads(next(r["body"] for r in kubeflow.requests
                                     if r["path"].endswith("/experiments")
                                     and r["method"] == "POST"))
        assert experiment["display_name"] == "arithmetic"
        run = json.loads(next(r["body"] for r in kubeflow.requests
                              if r["path"].endswith("/runs") and r["method"] == "POST"))
        assert run["experiment_id"] == "experiment-1"
        assert run["pipeline_version_reference"] == {"pipeline_id": "pipeline-1",
                                                     "pipeline_version_id": "version-1-1"}
        assert run["runtime_config"]["parameters"] == {"n": 5}
    assert "kale: started run run-1 of pipeline sums in experiment arithmetic" in result.stderr
    assert f"{kubeflow.host}/#/runs/details/run-1" in result.stderr
    assert "kale: run run-1 ended: SUCCEEDED" in result.stderr


def test_a_second_submission_uploads_a_new_version_into_the_same_experiment(tmp_path):
    with FakeKubeflow() as kubeflow:
        assert run_script(tmp_path, "-K", "--kfp-host", kubeflow.host).returncode == 0
        second = run_script(tmp_path, "-K", "--kfp-host", kubeflow.host)
        assert second.returncode == 0, second.stderr
        calls = kubeflow.calls()
        assert calls.count(("POST", "/pipelines/upload")) == 1
        assert calls.count(("POST", "/pipelines/upload_version")) == 1
        assert calls.count(("POST", "/experiments")) == 1
        assert calls.count(("POST", "/runs")) == 2


def test_a_failed_run_with_wait_exits_non_zero(tmp_path):
    with FakeKubeflow() as kubeflow:
        kubeflow.final_state = "FAILED"
        result = run_script(tmp_path, "--kfp", "--kfp-host", kubeflow.host, "--wait")
    assert result.returncode == 1
    assert "run run-1 of pipeline sums ended FAILED" in result.stderr


@pytest.mark.parametrize(("status", "fragment"), [
    (401, "refused the request (401"), (403, "refused the request (403"),
    (404, "answered 404"),
])
def test_refusals_are_explained(tmp_path, status, fragment):
    with FakeKubeflow(status=status) as kubeflow:
        result = run_script(tmp_path, "--kfp", "--kfp-host", kubeflow.host,
                            "--namespace", "team-a")
    assert result.returncode == 1
    assert f"Kubeflow Pipelines at {kubeflow.host} (namespace team-a) {fragment}" in \
        result.stderr
    assert "Traceback" not in result.stderr


def test_an_unreachable_host_is_explained(tmp_path):
    result = run_script(tmp_path, "--kfp", "--kfp-host", "http://127.0.0.1:9")
    assert result.returncode == 1
    assert "Kubeflow Pipelines at http://127.0.0.1:9 could not be reached" in result.stderr
    assert "--dry-run" in result.stderr
