"""Finding the host, namespace and credentials for Kubeflow Pipelines, and connecting."""

from __future__ import annotations

import json

import pytest

from kale.kfp import connection as kc
from tests.kfp.fake_kfp import FakeKubeflow
from tests.kfp.test_submit import CONNECTION_VARIABLES

pytest.importorskip("kfp")


@pytest.fixture
def machine(tmp_path, monkeypatch):
    """Kale's view of the machine, moved into tmp_path: no pod, no kfp context, no token."""
    monkeypatch.setattr(kc, "SERVICE_ACCOUNT_NAMESPACE_FILE", str(tmp_path / "sa-namespace"))
    monkeypatch.setattr(kc, "KFP_CONTEXT_FILE", str(tmp_path / "context.json"))
    monkeypatch.setattr(kc, "DEFAULT_TOKEN_FILE", str(tmp_path / "projected-token"))
    for variable in CONNECTION_VARIABLES:
        monkeypatch.delenv(variable, raising=False)
    return tmp_path


def test_the_namespace_flag_comes_first(machine):
    (machine / "sa-namespace").write_text("team-pod")
    (machine / "context.json").write_text(json.dumps({"namespace": "team-context"}))
    assert kc.resolve_namespace("team-flag") == ("team-flag", "--namespace")


def test_kfps_context_file_comes_before_the_pods_namespace_as_in_kfp_client(machine):
    (machine / "sa-namespace").write_text("team-pod")
    (machine / "context.json").write_text(json.dumps({"namespace": "team-context"}))
    namespace, source = kc.resolve_namespace(None)
    assert namespace == "team-context"
    assert "context file" in source


def test_the_pods_service_account_namespace_comes_next(machine):
    (machine / "sa-namespace").write_text("team-pod\n")
    (machine / "context.json").write_text(json.dumps({"namespace": ""}))  # as kfp leaves it
    assert kc.resolve_namespace(None) == ("team-pod", "the pod's service account")


def test_no_namespace_is_found_outside_a_pod(machine):
    assert kc.resolve_namespace(None)[0] is None


def test_a_context_file_that_is_not_json_is_explained(machine):
    (machine / "context.json").write_text("{not json")
    with pytest.raises(kc.KubeflowError, match=r"context file .* cannot be read"):
        kc.resolve_namespace(None)


def test_the_pods_namespace_is_used_and_the_health_endpoint_is_asked_once(machine):
    (machine / "sa-namespace").write_text("team-pod")
    with FakeKubeflow(multi_user=True) as kubeflow:
        client, connection = kc.connect(kubeflow.host)
        assert (connection.namespace, connection.namespace_source) == \
            ("team-pod", "the pod's service account")
        assert client.get_user_namespace() == "team-pod"
        # Once, for the server's release and mode (kale.kfp.server).
        assert kubeflow.calls() == [("GET", "/healthz")]
        assert client.healthz["tag_name"] == "2.17.0" and client.multi_user


def test_the_host_comes_from_the_flag_then_kf_pipelines_endpoint_then_the_cluster(machine,
                                                                                   monkeypatch):
    monkeypatch.setenv("KF_PIPELINES_ENDPOINT", "http://from-env:8888")
    assert kc.resolve_host("http://from-flag") == ("http://from-flag", "--kfp-host")
    assert kc.resolve_host(None) == ("http://from-env:8888", "KF_PIPELINES_ENDPOINT")
    monkeypatch.delenv("KF_PIPELINES_ENDPOINT")
    assert kc.resolve_host(None) == (kc.IN_CLUSTER_HOST, "the in-cluster default")



def test_the_projected_token_is_sent_when_it_exists(machine):
    (machine / "projected-token").write_text("projected")
    with FakeKubeflow() as kubeflow:
        client, connection = kc.connect(kubeflow.host, "team-a")
        client.get_pipeline_id("sums")
        assert connection.token_file == str(machine / "projected-token")
        assert kubeflow.requests[-1]["authorization"] == "Bearer projected"
