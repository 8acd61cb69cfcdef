"""KfpRun: a run on Kubeflow Pipelines as Python holds it, against a local stand-in server."""

from __future__ import annotations

import pytest

from kale.kfp.connection import KubeflowError
from kale.kfp.run import RunWaitTimeout
from kale.kfp.submit import submit
from tests.kfp.fake_kfp import FakeKubeflow

pytest.importorskip("kfp")

FLOW = '''
    from kale.sdk import pipeline, step

    @step
    def make(n):
        return list(range(n))

    @pipeline(name="makes")
    def makes(n=3):
        make(n)
'''


@pytest.fixture
def package(project, monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("KALE_WAIT_INTERVAL", "0.05")
    for name in ("KF_PIPELINES_ENDPOINT", "KF_PIPELINES_UI_ENDPOINT",
                 "KF_PIPELINES_SA_TOKEN_PATH"):
        monkeypatch.delenv(name, raising=False)
    pipeline = project.load(FLOW, prelude=False).makes
    return pipeline.graph, pipeline.compile(project.root / "makes.yaml")


def test_wait_with_a_timeout_stops_following_and_can_be_called_again(package):
    graph, path = package
    with FakeKubeflow() as kubeflow:
        kubeflow.progress = [("RUNNING", {"make": "RUNNING"})] * 10_000
        run = submit(graph, {"n": 2}, path, host=kubeflow.host, namespace="team-a")
        with pytest.raises(RunWaitTimeout) as caught:
            run.wait(timeout=0.3)
        assert isinstance(caught.value, TimeoutError)
        assert caught.value.message == ("run run-1 of pipeline makes was still running after "
                                        "0.3s of waiting; it goes on in Kubeflow")
        assert "call .wait() again" in caught.value.fix and run.url in caught.value.fix
        kubeflow.progress = []
        assert run.wait(timeout=30) == "succeeded"


def test_status_asks_the_server_each_time_and_explains_a_refusal(package):
    graph, path = package
    with FakeKubeflow() as kubeflow:
        kubeflow.progress = [("PENDING", {}), ("RUNNING", {})]
        run = submit(graph, {}, path, host=kubeflow.host, namespace="team-a",
                     experiment="elsewhere")
        assert [run.status, run.status, run.status] == ["pending", "running", "succeeded"]
        assert run.experiment == "elsewhere" and repr(run).startswith("<KfpRun run-1 of")
        kubeflow.fail("GET", "/runs/run-1", 403)
        with pytest.raises(KubeflowError) as caught:
            run.status  # reading it is the request
    assert "refused to get the state of run run-1 (403 Forbidden)" in caught.value.message
