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
        monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://{host}:{port}")
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "minio")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "minio123")
        monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
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
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "minio")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "minio123")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
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
