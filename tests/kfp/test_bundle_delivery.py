"""A project bundle too big to ride inside the package: uploaded to the bundle store and imported
by the pipeline, proven end to end under kfp.local; refused with advice when there is nowhere to
put it."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from tests.kfp.fake_kfp import FakeKubeflow
from tests.kfp.test_compiler import run_under_kfp_local

pytest.importorskip("kfp")

SCRIPT = textwrap.dedent('''
    from kale.sdk import pipeline, step

    @step
    def read():
        import hashlib
        with open("data/blob.bin", "rb") as handle:
            return hashlib.sha256(handle.read()).hexdigest()

    @step
    def show(digest):
        print("DIGEST", digest)

    @pipeline(name="big-bundle")
    def p():
        digest = read()
        show(digest)

    if __name__ == "__main__":
        p()
''')


@pytest.fixture
def big_project(tmp_path) -> tuple[Path, str]:
    project = tmp_path / "project"
    (project / "data").mkdir(parents=True)
    (project / "flow.py").write_text(SCRIPT)
    blob = os.urandom(900 * 1024)  # random bytes do not compress: over the 104 KB inline limit
    (project / "data" / "blob.bin").write_bytes(blob)
    return project, hashlib.sha256(blob).hexdigest()


def kale(project: Path, *arguments: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *arguments], capture_output=True, text=True,
                          cwd=project, timeout=300,
                          env={**os.environ, "KALE_HOME": str(project.parent / "home"), **env})


def test_a_big_bundle_is_uploaded_and_imported_by_the_pipeline(big_project, tmp_path,
                                                              prepared_image):
    project, digest = big_project
    store = tmp_path / "store"
    result = kale(project, "-m", "kale.cli", "compile", "flow.py", "-o", "big.yaml",
                  "--bundle-store", str(store))
    assert result.returncode == 0, result.stderr
    uploaded = list(store.iterdir())
    assert len(uploaded) == 1 and uploaded[0].name.startswith("kale-bundle-")
    assert f"uploaded to {uploaded[0]}" in result.stdout
    package = project / "big.yaml"
    assert package.stat().st_size < 100 * 1024  # the bundle is not inside
    importer = next(e for e in next(yaml.safe_load_all(package.read_text()))[
        "deploymentSpec"]["executors"].values() if "importer" in e)
    assert importer["importer"]["artifactUri"]["constant"] == str(uploaded[0])
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    output = run_under_kfp_local(package, elsewhere)
    assert f"DIGEST {digest}" in output, output[-2000:]


def test_without_a_store_a_dry_run_warns_and_a_submission_is_refused(big_project):
    project, _ = big_project
    env = {"KALE_BUNDLE_STORE": ""}
    dry = kale(project, "flow.py", "--kfp", "--dry-run", "-o", "inline.yaml", **env)
    assert dry.returncode == 0, dry.stderr
    assert re.search(r"warning: the package carries the 9\d\d\.\d KB project bundle inline",
                     dry.stderr), dry.stderr
    assert "--bundle-store minio://mlpipeline/kale" in dry.stderr
    with FakeKubeflow() as kubeflow:
        submitted = kale(project, "flow.py", "--kfp", "--kfp-host", kubeflow.host, **env)
        assert kubeflow.requests == []  # refused before anything is contacted
    assert submitted.returncode == 1
    assert re.search(r"the project bundle is 9\d\d\.\d KB, more than the 104 KB a pipeline "
                     "package can carry", submitted.stderr), submitted.stderr
    assert "fix: set a bundle store" in submitted.stderr and "Traceback" not in submitted.stderr


def test_a_submission_refuses_a_folder_store_the_clusters_importer_cannot_read(big_project,
                                                                             tmp_path):
    """KFP's importer takes gs://, s3:// and minio:// URIs only (objectstore/config.go)."""
    project, _ = big_project
    store = tmp_path / "shared-store"
    (project / "pyproject.toml").write_text(f'[tool.kale]\nbundle_store = "{store}"\n')
    with FakeKubeflow() as kubeflow:
        result = kale(project, "flow.py", "--kfp", "--kfp-host", kubeflow.host)
        assert ("POST", "/pipelines/upload") not in kubeflow.calls()
    assert result.returncode == 1
    assert f"error: the bundle store {store} is a folder, and the cluster's importer cannot " \
        "read one: Kubeflow Pipelines imports gs://, s3:// and minio:// URIs only" \
        in result.stderr
    assert "fix: use --bundle-store minio://mlpipeline/kale" in result.stderr
    assert not store.exists()  # nothing was written there


def test_on_a_multi_user_server_the_bundle_goes_where_the_namespace_can_read_it(big_project):
    """From 2.15 a namespace's keys reach only some prefixes of the bucket (the profile
    controller's policy, sync.py@2.15.0): a submission puts the bundle under private/<ns>/ and
    the pipeline imports it from there."""
    server_module = pytest.importorskip("moto.server")
    from tests.kfp.test_server import uploaded

    project, _ = big_project
    moto = server_module.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    try:
        host, port = moto.get_host_and_port()
        keys = {"AWS_ENDPOINT_URL": f"http://{host}:{port}", "AWS_ACCESS_KEY_ID": "minio",
                "AWS_SECRET_ACCESS_KEY": "minio123", "AWS_DEFAULT_REGION": "us-east-1"}
        import boto3

        client = boto3.client("s3", endpoint_url=keys["AWS_ENDPOINT_URL"],
                              aws_access_key_id="minio", aws_secret_access_key="minio123",
                              region_name="us-east-1")
        client.create_bucket(Bucket="mlpipeline")
        with FakeKubeflow(multi_user=True, require_namespace=True, tag_name="2.15.0") as kubeflow:
            result = kale(project, "flow.py", "--kfp", "--kfp-host", kubeflow.host,
                          "--namespace", "team-a", "--bundle-store", "minio://mlpipeline/kale",
                          **keys)
            assert result.returncode == 0, result.stderr
            spec = uploaded(kubeflow)[0]
        stored = [item["Key"] for item in
                  client.list_objects_v2(Bucket="mlpipeline").get("Contents", [])]
    finally:
        moto.stop()
    assert len(stored) == 1 and stored[0].startswith("private/team-a/kale/kale-bundle-")
    importer = next(e for e in spec["deploymentSpec"]["executors"].values() if "importer" in e)
    assert importer["importer"]["artifactUri"]["constant"] == f"minio://mlpipeline/{stored[0]}"
    assert "the bundle goes to minio://mlpipeline/private/team-a/kale, not " \
        "minio://mlpipeline/kale" in result.stderr
