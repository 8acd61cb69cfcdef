"""The project bundle: what travels to Kubeflow, and what never does."""

from __future__ import annotations

import gzip
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


def test_the_bundle_carries_the_project_and_kale_and_is_reproducible(tmp_path, monkeypatch):
    import time

    make(tmp_path, {"pipeline.py": "print(1)\n", "settings.json": "{}"})
    first = build_bundle(tmp_path)
    later = time.time() + 3600
    monkeypatch.setattr(time, "time", lambda: later)  # gzip would stamp its header with it
    second = build_bundle(tmp_path)
    assert first.data == second.data
    with tarfile.open(fileobj=io.BytesIO(first.data)) as archive:
        names = archive.getnames()
    assert "project/pipeline.py" in names and "project/settings.json" in names
    assert "_kale/kale/runtime.py" in names and "_kale/kale/kfp/entry.py" in names
    assert "_kale/kale/marshal/backends.py" in names and "_kale/cloudpickle/__init__.py" in names
    assert not any(name.startswith("_kale/kale/local/") for name in names)


def test_the_bundled_kale_alone_defines_steps_and_pipelines(tmp_path):
    """What ``import kale.sdk`` loads must travel: a project module a step imports may define
    steps, and on Kubeflow only the bundle's Kale is there."""
    import os
    import subprocess
    import sys

    flows = "from kale.sdk import pipeline, step\n\n@step\ndef s():\n    return 1\n\n" \
        "@pipeline\ndef p():\n    s()\n"
    make(tmp_path / "project", {"flows.py": flows})
    bundle = build_bundle(tmp_path / "project")
    with tarfile.open(fileobj=io.BytesIO(bundle.data)) as archive:
        archive.extractall(tmp_path / "unpacked", filter="data")
    # And an API of another Kale fails there with the advice it gets here.
    code = ("import sys; sys.path[:0] = sys.argv[1:]; import flows, kale.sdk\n"
            "print(kale.sdk.__file__)\n"
            "try:\n    import kale.distributed\nexcept ImportError as error:\n"
            "    print(error.message)\n")
    # -S: no site-packages, so the installed Kale cannot stand in for the bundled one.
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    result = subprocess.run([sys.executable, "-S", "-c", code, str(tmp_path / "unpacked/_kale"),
                             str(tmp_path / "unpacked/project")],
                            capture_output=True, text=True, cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    printed = result.stdout.splitlines()
    assert printed[0].startswith(str(tmp_path / "unpacked/_kale/kale/sdk/"))
    assert printed[1].startswith("kale.distributed is not supported by this Kale")


def test_an_absurd_bundle_is_refused_with_advice(tmp_path):
    import os

    (tmp_path / "weights.bin").write_bytes(os.urandom(300_000))
    with pytest.raises(KaleError) as caught:
        build_bundle(tmp_path, limit=100_000)
    assert "weights.bin" in caught.value.message
    assert ".kaleignore" in caught.value.fix


def test_negations_in_ignore_files_cannot_bring_back_secrets(tmp_path):
    make(tmp_path, {
        "flow.py": "", "config/gcp-credentials.json": "{}", "config/id_rsa": "",
        "config/app.toml": "", ".env": "",
        ".gitignore": "config/*\n!config/*\n!.env\n!config/id_rsa\n",
    })
    assert project_files(tmp_path) == [".gitignore", "config/app.toml", "flow.py"]


def test_ignore_files_in_subfolders_apply_there_as_in_git(tmp_path):
    make(tmp_path, {
        "flow.py": "", "data/.gitignore": "*\n!.gitignore\n", "data/raw.csv": "",
        "models/.gitignore": "weights.pt\n", "models/weights.pt": "", "models/card.md": "",
        "models/sub/weights.pt": "", "src/.kaleignore": "/local.py\n", "src/local.py": "",
        "src/lib/local.py": "",
    })
    assert project_files(tmp_path) == [
        "data/.gitignore", "flow.py", "models/.gitignore", "models/card.md",
        "src/.kaleignore", "src/lib/local.py",
    ]


def test_links_to_outside_travel_as_copies_each_outside_folder_once(tmp_path):
    import os

    shared = tmp_path / "shared"
    make(shared, {"settings.json": "{}", "conf/a.yaml": "a: 1"})
    project = tmp_path / "project"
    make(project, {"flow.py": "", "sub/x.txt": ""})
    os.symlink(shared / "settings.json", project / "settings.json")
    os.symlink(shared / "conf", project / "conf")
    os.symlink(shared / "conf", project / "sub" / "conf_too")  # the same folder: a link to it
    os.symlink(shared / "conf", shared / "conf" / "again")  # a cycle outside: walked once
    os.symlink(tmp_path / "missing", project / "dangling")
    with pytest.warns(UserWarning, match="dangling is a broken symbolic link"):
        files = project_files(project)
    assert files == ["conf/a.yaml", "flow.py", "settings.json", "sub/x.txt"]
    with pytest.warns(UserWarning, match="dangling"):
        bundle = build_bundle(project)
    assert bundle.links == (("conf/again", "."), ("sub/conf_too", "../conf"))
    assert bundle.carries("sub/conf_too/a.yaml")
    root = extract(bundle, tmp_path / "out")
    assert (root / "settings.json").read_text() == "{}"
    assert (root / "sub" / "conf_too" / "a.yaml").read_text() == "a: 1"


def extract(bundle, where):
    """The project as a step sees it; with the "data" filter where Python has it (3.14 uses it
    by default), which refuses links that leave the archive."""
    with tarfile.open(fileobj=io.BytesIO(bundle.data)) as archive:
        if hasattr(tarfile, "data_filter"):
            archive.extractall(where, filter="data")
        else:
            archive.extractall(where)
    return where / "project"


def test_what_earlier_compiles_and_runs_leave_never_travels(tmp_path):
    import json

    make(tmp_path, {"flow.py": "", "store/kale-bundle-0123.tar.gz": "x",
                    "local_outputs/p/t/out": "x", "notes.json": "{}",
                    "p.json": json.dumps({"components": {}, "schemaVersion": "2.1.0",
                                          "sdkVersion": "kfp-2.17.0"}, indent=2,
                                         sort_keys=True)})
    assert project_files(tmp_path) == ["flow.py", "notes.json"]


def test_files_stream_into_the_bundle_and_a_huge_one_stops_it_early(tmp_path):
    import os
    import tracemalloc

    with open(tmp_path / "zeros.bin", "wb") as handle:  # sparse: 64 MB, compresses to little
        handle.truncate(64 * 2**20)
    (tmp_path / "run.sh").write_text("#!/bin/sh\n")
    os.chmod(tmp_path / "run.sh", 0o755)
    tracemalloc.start()
    try:
        bundle = build_bundle(tmp_path)
        assert tracemalloc.get_traced_memory()[1] < 16 * 2**20  # never a file whole
        with open(tmp_path / "noise.bin", "wb") as handle:
            for _ in range(32):
                handle.write(os.urandom(2**20))
        tracemalloc.reset_peak()
        with pytest.raises(KaleError) as caught:
            build_bundle(tmp_path, limit=2**20)
        assert tracemalloc.get_traced_memory()[1] < 16 * 2**20
    finally:
        tracemalloc.stop()
    assert "largest files: zeros.bin, noise.bin, run.sh" in caught.value.message
    with tarfile.open(fileobj=io.BytesIO(bundle.data)) as archive:
        members = {member.name: member for member in archive.getmembers()}
    zeros, script = members["project/zeros.bin"], members["project/run.sh"]
    assert zeros.size == 64 * 2**20 and (zeros.mode, script.mode) == (0o644, 0o755)
    assert {(m.mtime, m.uid, m.gid, m.uname, m.gname) for m in members.values()} == \
        {(0, 0, 0, "", "")}


def test_a_file_that_cannot_be_read_or_shrinks_is_an_error_not_a_traceback(tmp_path,
                                                                           monkeypatch):
    import builtins
    import os

    from kale.kfp import bundle as module

    make(tmp_path, {"flow.py": "print(1)\n", "locked.csv": "1,2\n"})

    def refuse(path, *args, **kwargs):
        if str(path).endswith("locked.csv"):
            raise PermissionError(13, "Permission denied")
        return builtins.open(path, *args, **kwargs)

    monkeypatch.setattr(module, "open", refuse, raising=False)
    with pytest.raises(KaleError, match=r"locked\.csv cannot be read"):
        build_bundle(tmp_path)
    monkeypatch.undo()

    real_fstat = os.fstat

    def grown(descriptor):  # as if the file were cut short after it was opened
        status = real_fstat(descriptor)
        return os.stat_result((*status[:6], status.st_size + 10, *status[7:]))

    monkeypatch.setattr(module.os, "fstat", grown)
    with pytest.raises(KaleError, match="changed while the project bundle was being made"):
        build_bundle(tmp_path)


# Ignore files read as git reads them: each case with what `git ls-files --others
# --exclude-standard` lists for it (the ignore files themselves aside).
GIT_CASES = {
    "a whitelist keeps only what it lists": (
        "*\n!*/\n!*.py\n!settings.json\n",
        ["lib/__init__.py", "lib/sub/util.py", "pipe.py", "settings.json"]),
    "dir/** is what is inside dir, not dir itself": (
        "assets/**\n!assets/fonts/\n!assets/fonts/**\n!assets/LICENSE\n",
        ["assets/LICENSE", "assets/fonts/a.ttf", "data/model.ckpt", "data/train.csv",
         "lib/__init__.py", "lib/notes.md", "lib/sub/util.py", "notes.md", "pipe.py",
         "settings.json"]),
    "nothing comes back from inside an excluded folder": (
        "data/\n!data/train.csv\nlib/*\n!lib/sub/\n",
        ["assets/LICENSE", "assets/fonts/a.ttf", "assets/raw/big.bin", "lib/sub/util.py",
         "notes.md", "pipe.py", "settings.json"]),
    "a folder pattern never matches a file, a slash anchors, the last match wins": (
        "notes.md/\n/*.md\n*.csv\n!train.csv\n**/sub/*.py\n[ab]ssets/raw\n",
        ["assets/LICENSE", "assets/fonts/a.ttf", "data/model.ckpt", "data/train.csv",
         "lib/__init__.py", "lib/notes.md", "pipe.py", "settings.json"]),
}


@pytest.mark.parametrize("case", GIT_CASES)
def test_ignore_files_exclude_what_git_would(tmp_path, case):
    import shutil
    import subprocess

    patterns, expected = GIT_CASES[case]
    make(tmp_path, {name: "" for name in [
        "pipe.py", "settings.json", "notes.md", "lib/__init__.py", "lib/notes.md",
        "lib/sub/util.py", "data/train.csv", "data/model.ckpt", "assets/raw/big.bin",
        "assets/fonts/a.ttf", "assets/LICENSE"]})
    (tmp_path / ".kaleignore").write_text(patterns)
    assert [name for name in project_files(tmp_path) if name != ".kaleignore"] == expected
    if shutil.which("git"):  # the expectations are git's own
        (tmp_path / ".gitignore").write_text(patterns)
        subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
        listed = subprocess.run(["git", "ls-files", "--others", "--exclude-standard"],
                                cwd=tmp_path, capture_output=True, text=True, check=True)
        assert sorted(set(listed.stdout.split()) - {".gitignore", ".kaleignore"}) == expected


def test_the_gitignore_files_above_a_project_in_a_repository_apply(tmp_path):
    make(tmp_path, {
        "repo/.gitignore": "data/\n*.secret.json\n/pipelines/train/local.yaml\n/flow.py\n"
                           "pipelines/\n",
        "repo/pipelines/.gitignore": "!train/\nscratch.txt\n",
        "repo/pipelines/train/flow.py": "", "repo/pipelines/train/local.yaml": "",
        "repo/pipelines/train/api.secret.json": "", "repo/pipelines/train/data/big.bin": "",
        "repo/pipelines/train/scratch.txt": "", "repo/pipelines/train/sub/local.yaml": "",
    })
    (tmp_path / "repo" / ".git").mkdir()
    project = tmp_path / "repo" / "pipelines" / "train"
    # The project itself travels even where the repository ignores its folder.
    assert project_files(project) == ["flow.py", "sub/local.yaml"]
    (tmp_path / "repo" / ".git").rmdir()  # no repository: the folders above are not read
    assert project_files(project) == ["api.secret.json", "data/big.bin", "flow.py",
                                      "local.yaml", "scratch.txt", "sub/local.yaml"]


def test_credential_files_are_withheld_and_named_python_code_never(tmp_path):
    make(tmp_path, {
        "flow.py": "", ".kube/config": "", ".git-credentials": "", ".kaggle/kaggle.json": "",
        ".pgpass": "", ".huggingface/token": "", ".cache/huggingface/token": "",
        ".cache/pip/x.whl": "", ".databrickscfg": "", ".s3cfg": "", ".boto": "", ".npmrc": "",
        "keys/app.jks": "", "keys/app.keystore": "", "Credentials.json": "", "CREDENTIALS": "",
        "conf/credentials.yaml": "", "conf/gcp-credentials.json": "", "conf/secrets.toml": "",
        "conf/Secrets.env": "", "conf/ID_RSA": "", "conf/credentials.md": "",
        "auth/__init__.py": "", "auth/credentials.py": "", "credentials/__init__.py": "",
        "credentials/aws.py": "", "secrets.py": "", "vault/credentials/store.py": "",
        "ignored/.npmrc": "", ".gitignore": "ignored/\n.s3cfg\n",
    })
    bundle = build_bundle(tmp_path)
    assert bundle.files == (
        ".cache/pip/x.whl", ".gitignore", "auth/__init__.py", "auth/credentials.py",
        "conf/credentials.md", "credentials/__init__.py", "credentials/aws.py", "flow.py",
        "secrets.py", "vault/credentials/store.py",
    )
    # What .gitignore excludes anyway (.s3cfg, ignored/) is not news: not listed.
    assert bundle.withheld == (
        ".boto", ".cache/huggingface/token", ".databrickscfg", ".git-credentials",
        ".huggingface/", ".kaggle/", ".kube/", ".npmrc", ".pgpass", "CREDENTIALS",
        "Credentials.json", "conf/ID_RSA", "conf/Secrets.env", "conf/credentials.yaml",
        "conf/gcp-credentials.json", "conf/secrets.toml", "keys/app.jks", "keys/app.keystore",
    )


@pytest.mark.parametrize("link, real", [("current", "configs"), ("a_link", "z_real")])
def test_a_link_to_a_project_folder_travels_as_a_link_beside_the_folder(tmp_path, link, real):
    import os

    make(tmp_path, {"flow.py": "", f"{real}/train.json": "{}", "sub/readme.md": ""})
    os.symlink(real, tmp_path / link)
    os.symlink(f"../{real}/train.json", tmp_path / "sub" / "train.json")
    os.symlink("..", tmp_path / "sub" / "top")  # a cycle inside: one link, nothing repeated
    bundle = build_bundle(tmp_path)
    assert bundle.files == tuple(sorted([f"{real}/train.json", "flow.py", "sub/readme.md"]))
    assert bundle.links == tuple(sorted([(link, real), ("sub/top", ".."),
                                         ("sub/train.json", f"../{real}/train.json")]))
    with tarfile.open(fileobj=io.BytesIO(bundle.data)) as archive:
        member = archive.getmember(f"project/{link}")
        assert member.issym() and member.linkname == real and member.mtime == 0
    root = extract(bundle, tmp_path / "out")
    assert (root / real / "train.json").read_text() == "{}"
    assert (root / link / "train.json").read_text() == "{}"
    assert (root / "sub" / "train.json").read_text() == "{}"
    assert (root / "sub" / "top" / "flow.py").exists()
    assert bundle.carries(f"{link}/train.json") and bundle.carries("sub/top/sub/train.json")
    assert not bundle.carries(f"{link}/missing.json")


def test_a_link_to_a_project_path_that_does_not_travel_is_left_out(tmp_path):
    import os

    make(tmp_path, {"flow.py": "", "data/model.ckpt": "", ".gitignore": "data/\n"})
    os.symlink("data/model.ckpt", tmp_path / "latest.ckpt")
    os.symlink("data", tmp_path / "current")
    bundle = build_bundle(tmp_path)
    assert bundle.files == (".gitignore", "flow.py") and bundle.links == ()


def test_links_to_secrets_never_carry_them(tmp_path):
    import os

    home = tmp_path / "home"
    make(home, {".aws/credentials": "s3cr3t-aws", ".ssh/config": "Host x", "notes.txt": "n"})
    project = tmp_path / "project"
    make(project, {"flow.py": "", ".env": "TOKEN=s3cr3t-env", ".kube/config": "s3cr3t-kube"})
    os.symlink(".env", project / "settings.ini")
    os.symlink(".kube/config", project / "cluster.yaml")
    os.symlink(home / ".aws" / "credentials", project / "aws.txt")
    os.symlink(home / ".aws", project / "aws")
    os.symlink(home / ".ssh" / "config", project / "ssh_config")
    os.symlink(home / "notes.txt", project / "notes.txt")
    bundle = build_bundle(project)
    assert bundle.files == ("flow.py", "notes.txt") and bundle.links == ()
    assert bundle.withheld == (".env", ".kube/", "aws.txt", "aws/", "cluster.yaml",
                               "settings.ini", "ssh_config")
    assert b"s3cr3t" not in gzip.decompress(bundle.data)


PEM = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n"
SERVICE_ACCOUNT = '{"type": "service_account", "private_key": "-----BEGIN"}'


def test_keys_are_found_in_files_of_any_size_even_across_chunks(tmp_path):
    from kale.kfp.bundle import _CHUNK

    filler = "x" * (100 * 1024)
    marker = '"private_key"'
    make(tmp_path, {
        "flow.py": "", "data/notes.txt": filler + PEM,  # over the 64 KB sniffed before
        "data/sa.json": SERVICE_ACCOUNT + " " * (200 * 1024),
        # A marker cut in two by the boundary between two reads.
        "data/straddle.json": "y" * (_CHUNK - 5) + marker + "y" * 10,
        "data/nearly.json": "y" * (_CHUNK - 5) + marker[:-1] + "y" * 10,  # no marker: travels
        "big_module.py": filler + f"KEY = {PEM!r}\n",  # Python is code, never withheld
        "mykey": "PuTTY-User-Key-File-3: ssh-ed25519\nEncryption: none\n",
    })
    bundle = build_bundle(tmp_path)
    assert bundle.files == ("big_module.py", "data/nearly.json", "flow.py")
    assert dict(bundle.reasons) == {
        "data/notes.txt": "holds a private key", "data/sa.json": "holds a service-account key",
        "data/straddle.json": "holds a service-account key", "mykey": "holds a PuTTY key",
    }
    assert bundle.withheld == tuple(sorted(dict(bundle.reasons)))
    assert project_files(tmp_path) == list(bundle.files)


def test_credential_files_by_name_and_names_alike_that_travel(tmp_path):
    secrets = {
        "kubeconfig.yaml": "named like kubeconfig*", "conf/kubeconfig-prod": "named like "
        "kubeconfig*", "keys/server.ppk": "named like *.ppk",
        ".config/gcloud/": "named like **/.config/gcloud/", "old/credentials.db": "named like "
        "credentials.db", ".vault-token": "named like .vault-token",
        ".bash_history": "named like .*_history", ".zsh_history": "named like .*_history",
        ".history": "named like .history", "infra/terraform.tfstate": "named like *.tfstate",
        "infra/terraform.tfstate.backup": "named like *.tfstate.backup",
        "docker-config.json": "named like docker-config.json",
        ".dockercfg": "named like .dockercfg", "token.txt": "named like token.txt",
        "hf.token": "named like *.token", "conf/token.json": "named like token.json",
        "api.secret": "named like *.secret", "secret.txt": "named like secret.txt",
    }
    alike = ["tokenizer.json", "tokens.csv", "special_tokens_map.json", "history.csv",
             "terraform.tfvars.example", "docs/kubernetes.md", "kubeconfig.py",
             "secret_santa.txt", "api.secret.json", "token_counts.txt", "flow.py"]
    make(tmp_path, {**{name: "" for name in alike},
                    **{name.rstrip("/") + ("/credentials.db" if name.endswith("/") else ""):
                       "" for name in secrets}})
    bundle = build_bundle(tmp_path)
    assert bundle.files == tuple(sorted(alike))
    assert dict(bundle.reasons) == secrets


def test_links_to_secrets_say_where_they_point(tmp_path):
    import os

    make(tmp_path / "home", {".aws/credentials": "s3cr3t"})
    make(tmp_path / "project", {"flow.py": "", ".env": "TOKEN=1"})
    os.symlink(".env", tmp_path / "project" / "settings.ini")
    os.symlink(tmp_path / "home" / ".aws" / "credentials", tmp_path / "project" / "aws.txt")
    bundle = build_bundle(tmp_path / "project")
    assert dict(bundle.reasons) == {
        ".env": "named like .env", "settings.ini": "a link to .env, named like .env",
        "aws.txt": f"a link to {tmp_path / 'home' / '.aws' / 'credentials'}, named like .aws/",
    }
