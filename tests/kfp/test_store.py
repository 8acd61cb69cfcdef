"""The bundle store: checking its URI, uploading a bundle to a folder, S3, MinIO and GCS."""

from __future__ import annotations

import pytest

from kale.kfp.bundle import Bundle
from kale.kfp.store import StoreError, bundle_name, check_store, configured_store, upload_bundle
from tests.kfp.fake_gcs import FakeStorage

BUNDLE = Bundle(b"\x1f\x8b fake bundle bytes" * 1000, ("flow.py",))


@pytest.mark.parametrize(("store", "message", "fix"), [
    ("s3://", "names no bucket", "s3://BUCKET/PREFIX"),
    ("gs:///prefix", "names no bucket", "gs://BUCKET/PREFIX"),
    ("https://example.com/bundles", "is not a place Kale can upload to", "minio://BUCKET"),
    ("hdfs://cluster/x", "is not a place Kale can upload to", "a local folder"),
])
def test_stores_kale_cannot_use_are_explained(store, message, fix):
    with pytest.raises(StoreError) as caught:
        check_store(store)
    assert message in caught.value.message and fix in caught.value.fix


def test_the_store_comes_from_the_flag_the_environment_or_pyproject(tmp_path, monkeypatch):
    monkeypatch.delenv("KALE_BUNDLE_STORE", raising=False)
    assert configured_store(tmp_path) is None
    (tmp_path / "pyproject.toml").write_text('[tool.kale]\nbundle_store = "s3://team/kale/"\n')
    assert configured_store(tmp_path) == "s3://team/kale"
    monkeypatch.setenv("KALE_BUNDLE_STORE", "gs://env-bucket")
    assert configured_store(tmp_path) == "gs://env-bucket"
    assert configured_store(tmp_path, "minio://mlpipeline/kale") == "minio://mlpipeline/kale"


def test_a_folder_store_is_written_once_under_the_content_hash(tmp_path):
    uri = upload_bundle(BUNDLE, f"file://{tmp_path}/store")
    assert uri == str(tmp_path / "store" / bundle_name(BUNDLE))
    assert (tmp_path / "store" / bundle_name(BUNDLE)).read_bytes() == BUNDLE.data
    stamp = (tmp_path / "store" / bundle_name(BUNDLE)).stat().st_mtime_ns
    assert upload_bundle(BUNDLE, str(tmp_path / "store")) == uri
    assert (tmp_path / "store" / bundle_name(BUNDLE)).stat().st_mtime_ns == stamp
    assert [p.name for p in (tmp_path / "store").iterdir()] == [bundle_name(BUNDLE)]


def minio_keys(monkeypatch, endpoint: str) -> None:
    """Kubeflow's MinIO as a user reaches it: its S3 endpoint and the default keys."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "minio")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "minio123")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")


@pytest.fixture
def aws(monkeypatch):
    moto = pytest.importorskip("moto")
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with moto.mock_aws():
        import boto3

        client = boto3.client("s3")
        client.create_bucket(Bucket="team")
        yield client


def test_s3_upload_once_under_the_prefix(aws):
    uri = upload_bundle(BUNDLE, "s3://team/kale/bundles/")
    assert uri == f"s3://team/kale/bundles/{bundle_name(BUNDLE)}"
    stored = aws.get_object(Bucket="team", Key=f"kale/bundles/{bundle_name(BUNDLE)}")
    first = stored["LastModified"]
    assert stored["Body"].read() == BUNDLE.data
    assert upload_bundle(BUNDLE, "s3://team/kale/bundles") == uri
    again = aws.head_object(Bucket="team", Key=f"kale/bundles/{bundle_name(BUNDLE)}")
    assert again["LastModified"] == first


def test_s3_errors_name_the_store_and_the_fix(aws, monkeypatch):
    with pytest.raises(StoreError) as caught:
        upload_bundle(BUNDLE, "s3://no-such-bucket/kale")
    assert f"s3://no-such-bucket/kale/{bundle_name(BUNDLE)}" in caught.value.message
    assert "create the bucket no-such-bucket" in caught.value.fix


def test_minio_goes_through_the_configured_endpoint(monkeypatch):
    server_module = pytest.importorskip("moto.server")
    server = server_module.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        minio_keys(monkeypatch, f"http://{host}:{port}")
        import boto3

        client = boto3.client("s3", endpoint_url=f"http://{host}:{port}")
        client.create_bucket(Bucket="mlpipeline")
        uri = upload_bundle(BUNDLE, "minio://mlpipeline/kale")
        assert uri == f"minio://mlpipeline/kale/{bundle_name(BUNDLE)}"
        body = client.get_object(Bucket="mlpipeline", Key=f"kale/{bundle_name(BUNDLE)}")["Body"]
        assert body.read() == BUNDLE.data
    finally:
        server.stop()


def test_an_unreachable_minio_is_explained(monkeypatch):
    pytest.importorskip("boto3")
    minio_keys(monkeypatch, "http://127.0.0.1:9")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    with pytest.raises(StoreError) as caught:
        upload_bundle(BUNDLE, "minio://mlpipeline/kale")
    assert "(through http://127.0.0.1:9)" in caught.value.message
    assert "reachable" in caught.value.fix


def test_gcs_upload_once(monkeypatch):
    with FakeStorage(buckets=("kale",)) as storage:
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", storage.host)
        uri = upload_bundle(BUNDLE, "gs://kale/bundles")
        assert uri == f"gs://kale/bundles/{bundle_name(BUNDLE)}"
        assert storage.objects[("kale", f"bundles/{bundle_name(BUNDLE)}")] == BUNDLE.data
        upload_bundle(BUNDLE, "gs://kale/bundles")
        assert storage.uploads == 1


@pytest.mark.parametrize(("bucket", "status", "expected"), [
    ("missing", None, "404"), ("kale", 403, "403")])
def test_gcs_errors_name_the_store(monkeypatch, bucket, status, expected):
    with FakeStorage(buckets=("kale",), status=status) as storage:
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", storage.host)
        with pytest.raises(StoreError) as caught:
            upload_bundle(BUNDLE, f"gs://{bucket}/bundles")
        assert f"gs://{bucket}/bundles/" in caught.value.message
        assert expected in caught.value.message
        assert f"bucket {bucket} exists" in caught.value.fix


def test_a_relative_folder_in_pyproject_is_the_projects(tmp_path, monkeypatch):
    monkeypatch.delenv("KALE_BUNDLE_STORE", raising=False)
    project = tmp_path / "proj"
    elsewhere = tmp_path / "elsewhere" / "deep"
    project.mkdir()
    elsewhere.mkdir(parents=True)
    monkeypatch.chdir(elsewhere)
    (project / "pyproject.toml").write_text('[tool.kale]\nbundle_store = "../bundles"\n')
    assert configured_store(project) == str(project / ".." / "bundles")
    uri = upload_bundle(BUNDLE, configured_store(project))
    assert uri == str(tmp_path / "bundles" / bundle_name(BUNDLE))
    # Typed on the command line or set in the environment: relative to where Kale runs.
    assert configured_store(project, "here") == "here"
    monkeypatch.setenv("KALE_BUNDLE_STORE", "there/")
    assert configured_store(project) == "there"


@pytest.mark.parametrize(("store", "why"), [
    ("file://store", "a host name ('store')"),
    ("file://./store", "a host name ('.')"),
    ("file://host/abs/store", "a host name ('host')"),
    ("file:store", "its path is relative"),
])
def test_a_file_uri_names_an_absolute_folder_of_this_machine(store, why, tmp_path,
                                                             monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(StoreError) as caught:
        upload_bundle(BUNDLE, store)
    assert why in caught.value.message
    assert caught.value.fix.startswith("write file:///abs/path or a plain path")
    assert list(tmp_path.iterdir()) == []


def test_file_uris_on_this_machine(tmp_path):
    assert check_store("file:///") == "file:///"
    assert check_store("file://localhost/data/") == "file://localhost/data"
    assert upload_bundle(BUNDLE, f"file://localhost{tmp_path}/a") == str(
        tmp_path / "a" / bundle_name(BUNDLE))
    assert upload_bundle(BUNDLE, f"file://{tmp_path}/b%20c") == str(
        tmp_path / "b c" / bundle_name(BUNDLE))


def _stubbed_s3(monkeypatch, head_status, put_status=None):
    boto3 = pytest.importorskip("boto3")
    from botocore.stub import ANY, Stubber

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "upload-only")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)
    client = boto3.session.Session().client("s3")
    stubber = Stubber(client)
    stubber.add_client_error("head_object", service_error_code=str(head_status),
                             service_message="Forbidden", http_status_code=head_status)
    expected = {"Bucket": "team", "Key": f"kale/{bundle_name(BUNDLE)}", "Body": ANY,
                "ContentType": "application/gzip"}
    if put_status:
        stubber.add_client_error("put_object", service_error_code="AccessDenied",
                                 service_message="Access Denied", http_status_code=put_status,
                                 expected_params=expected)
    else:
        stubber.add_response("put_object", {}, expected)
    stubber.activate()
    monkeypatch.setattr(boto3, "client", lambda *args, **kwargs: client)
    return stubber


def test_keys_that_may_upload_but_not_list_still_upload(monkeypatch):
    stubber = _stubbed_s3(monkeypatch, 403)
    assert upload_bundle(BUNDLE, "s3://team/kale") == f"s3://team/kale/{bundle_name(BUNDLE)}"
    stubber.assert_no_pending_responses()


def test_a_refused_upload_is_a_credentials_error(monkeypatch):
    _stubbed_s3(monkeypatch, 403, put_status=403)
    with pytest.raises(StoreError) as caught:
        upload_bundle(BUNDLE, "s3://team/kale")
    assert "AccessDenied" in caught.value.message
    assert "check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY" in caught.value.fix


@pytest.mark.parametrize("variable", ["AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"])
@pytest.mark.parametrize("store", ["minio://mlpipeline/kale", "s3://team/kale"])
def test_an_endpoint_without_its_scheme_is_explained(monkeypatch, variable, store):
    pytest.importorskip("boto3")
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(variable, "minio-service.kubeflow:9000")
    with pytest.raises(StoreError) as caught:
        upload_bundle(BUNDLE, store)
    assert caught.value.message == (f"{variable}='minio-service.kubeflow:9000' is not an "
                                    "endpoint URL: it must start with http:// or https://")
    assert caught.value.fix.startswith(f"set {variable}=http://minio-service.kubeflow:9000")


def test_an_endpoint_botocore_refuses_is_explained(monkeypatch):
    pytest.importorskip("boto3")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://bad host:9000")
    with pytest.raises(StoreError) as caught:
        upload_bundle(BUNDLE, "minio://mlpipeline/kale")
    assert "Invalid endpoint" in caught.value.message
    assert "AWS_ENDPOINT_URL" in caught.value.fix


@pytest.mark.parametrize("store", ["minio://minio-service.kubeflow:9000/mlpipeline",
                                   "s3://my bucket/kale"])
def test_an_invalid_bucket_name_is_explained(store):
    with pytest.raises(StoreError) as caught:
        check_store(store)
    assert "which is not a valid bucket name" in caught.value.message
    assert "BUCKET/PREFIX" in caught.value.fix
    if ":9000" in store:
        assert "set AWS_ENDPOINT_URL=http://minio-service.kubeflow:9000" in caught.value.fix


def test_a_bucket_name_botocore_refuses_is_explained(monkeypatch):
    pytest.importorskip("boto3")
    from kale.kfp import store

    minio_keys(monkeypatch, "http://127.0.0.1:9")
    with pytest.raises(StoreError) as caught:  # past check_store, botocore checks it too
        store._upload_s3(BUNDLE, "host:9000", "kale/x", "minio://host:9000/kale/x", minio=True)
    assert "which is not a valid bucket name" in caught.value.message
    assert "reachable" not in caught.value.fix


def test_on_a_multi_user_server_the_store_is_one_the_namespace_can_reach():
    """From 2.15 a namespace's keys reach only some prefixes of the bucket (the profile
    controller's policy, sync.py@2.15.0); the store's endpoint is SeaweedFS from 2.16."""
    from kale.kfp.server import Target
    from kale.kfp.store import default_endpoint, store_for_server

    server = Target((2, 15, 0), "the server's tag_name", "2.15.0", multi_user=True,
                    namespace="team-a", submission=True)
    notes: list[str] = []
    assert store_for_server("minio://mlpipeline/kale", server, notes) == \
        "minio://mlpipeline/private/team-a/kale"
    assert notes == ["the bundle goes to minio://mlpipeline/private/team-a/kale, not "
                     "minio://mlpipeline/kale: on Kubeflow Pipelines 2.15.0 (the server's "
                     "tag_name), multi-user, the keys of namespace team-a (the importer's, and "
                     "those the mlpipeline-minio-artifact secret holds) reach only artifacts/, "
                     "private-artifacts/team-a/, private/team-a/, shared/ of the bucket"]
    for kept in ("minio://mlpipeline/shared/kale", "minio://mlpipeline/private/team-a",
                 "s3://bucket/kale"):
        assert store_for_server(kept, server, []) == kept
    with pytest.raises(StoreError, match="another namespace's") as caught:
        store_for_server("minio://mlpipeline/private/team-b/kale", server, [])
    assert caught.value.fix == "use minio://mlpipeline/private/team-a/kale"
    # Single-user, or before 2.15: the store as given.
    assert store_for_server("minio://mlpipeline/kale", Target((2, 14, 0), multi_user=True,
                            namespace="team-a", submission=True), []) == "minio://mlpipeline/kale"
    assert default_endpoint(Target((2, 15, 0))) == "http://minio-service.kubeflow:9000"
    assert default_endpoint(Target((2, 16, 0))) == "http://seaweedfs.kubeflow:9000"
    assert default_endpoint(None) == "http://seaweedfs.kubeflow:9000"
