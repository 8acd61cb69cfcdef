"""The project bundle: what travels to Kubeflow, and what never does."""

from __future__ import annotations

import io
import tarfile

import pytest

from kale.errors import KaleError
from kale.kfp.bundle import build_bundle, project_files


def make(root, files):
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_secrets_history_records_and_environments_never_travel(tmp_path):
    make(tmp_path, {
        "pipeline.py": "", "local_package/__init__.py": "", "settings.json": "{}",
        ".git/config": "", ".kale/runs/x/run.json": "", ".env": "TOKEN=1", "id_rsa": "",
        "certs/server.pem": "", ".aws/credentials": "", "myenv/pyvenv.cfg": "",
        "myenv/lib/site.py": "", "__pycache__/x.pyc": "", "data/big.csv": "1,2",
        "notes/secret.txt": "", "keep/me.txt": "",
        ".gitignore": "data/\n", ".kaleignore": "notes/\n",
    })
    assert project_files(tmp_path) == [
        ".gitignore", ".kaleignore", "keep/me.txt", "local_package/__init__.py",
        "pipeline.py", "settings.json",
    ]


def test_the_bundle_carries_the_project_and_kale_and_is_reproducible(tmp_path):
    make(tmp_path, {"pipeline.py": "print(1)\n", "settings.json": "{}"})
    first, second = build_bundle(tmp_path), build_bundle(tmp_path)
    assert first.data == second.data
    with tarfile.open(fileobj=io.BytesIO(first.data)) as archive:
        names = archive.getnames()
    assert "project/pipeline.py" in names and "project/settings.json" in names
    assert "_kale/kale/runtime.py" in names and "_kale/kale/kfp/entry.py" in names
    assert "_kale/kale/marshal/backends.py" in names and "_kale/cloudpickle/__init__.py" in names
    assert not any(name.startswith("_kale/kale/local/") for name in names)


def test_an_absurd_bundle_is_refused_with_advice(tmp_path):
    import os

    (tmp_path / "weights.bin").write_bytes(os.urandom(300_000))
    with pytest.raises(KaleError) as caught:
        build_bundle(tmp_path, limit=100_000)
    assert "weights.bin" in caught.value.message
    assert ".kaleignore" in caught.value.fix
