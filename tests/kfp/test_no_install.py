"""Air-gapped clusters and prepared images: ``--no-install`` (``install = false``) starts steps
without any pip install, the image holding kfp and the steps' packages, checked by each step
before it runs; ``index_url`` in ``[tool.kale]`` makes a private index the only one."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import yaml

from tests.kfp.test_submit import run_script

pytest.importorskip("kfp")

FLOW = textwrap.dedent('''
    import yaml
    from kale.sdk import pipeline, step

    @step
    def dump(n):
        return yaml.safe_dump({"n": n})

    @pipeline(name="dumps")
    def dumps(n=3):
        dump(n)

    if __name__ == "__main__":
        dumps()
''')


def commands(package) -> dict[str, str]:
    spec = next(yaml.safe_load_all(package.read_text()))
    return {name: " ".join(executor["container"]["command"])
            for name, executor in spec["deploymentSpec"]["executors"].items()
            if "container" in executor}


def test_no_install_starts_every_step_without_pip_and_the_step_checks_its_image(tmp_path):
    (tmp_path / "dumps.py").write_text(FLOW)
    result = run_script(tmp_path, "--kfp", "--dry-run", "-o", "p.yaml", "--no-install",
                        "--image", "registry.local/team/steps:1", script="dumps.py")
    assert result.returncode == 0, result.stderr
    found = commands(tmp_path / "p.yaml")
    assert found and not any("pip install" in command for command in found.values())
    assert "none installed (--no-install): the image must hold kfp and these" in result.stderr
    import yaml as installed

    source = found["exec-dump"]
    assert f"'expects': ['PyYAML=={installed.__version__}']" in source
    # Installed as usual without the flag, kfp and the pinned packages.
    usual = run_script(tmp_path, "--kfp", "--dry-run", "-o", "q.yaml", script="dumps.py")
    assert usual.returncode == 0, usual.stderr
    assert "pip install" in commands(tmp_path / "q.yaml")["exec-dump"]


def test_no_install_needs_an_image_of_ones_own(tmp_path):
    (tmp_path / "dumps.py").write_text(FLOW)
    result = run_script(tmp_path, "--kfp", "--dry-run", "--no-install", script="dumps.py")
    assert result.returncode == 1
    assert "the default image python:" in result.stderr and "holds neither" in result.stderr
    assert "fix: name an image built with them: --image IMAGE" in result.stderr
    from importlib import metadata

    # The kfp to build the image with, by its version here (not a placeholder to fill in).
    assert f"pip install kfp=={metadata.version('kfp')} and the steps' packages" in result.stderr


def test_kale_install_0_is_no_install_from_the_environment(tmp_path, monkeypatch):
    (tmp_path / "dumps.py").write_text(FLOW)
    monkeypatch.delenv("KALE_IMAGE", raising=False)
    result = run_script(tmp_path, "--kfp", "--dry-run", "-o", "p.yaml", script="dumps.py",
                        KALE_INSTALL="0", KALE_IMAGE="registry.local/team/steps:1")
    assert result.returncode == 0, result.stderr
    assert not any("pip install" in command for command in commands(tmp_path / "p.yaml").values())
    # Without an image of one's own, the error names the variable too.
    result = run_script(tmp_path, "--kfp", "--dry-run", script="dumps.py", KALE_INSTALL="off")
    assert result.returncode == 1 and "KALE_INSTALL=0" in result.stderr
    # KALE_INSTALL=1 over install = false in [tool.kale]; a value that is neither is an error.
    (tmp_path / "pyproject.toml").write_text("[tool.kale]\ninstall = false\n")
    result = run_script(tmp_path, "--kfp", "--dry-run", "-o", "q.yaml", script="dumps.py",
                        KALE_INSTALL="1")
    assert result.returncode == 0, result.stderr
    assert "pip install" in commands(tmp_path / "q.yaml")["exec-dump"]
    result = run_script(tmp_path, "--kfp", "--dry-run", script="dumps.py", KALE_INSTALL="maybe")
    assert result.returncode == 1
    assert "KALE_INSTALL is 'maybe', which is neither on nor off" in result.stderr
    assert "fix: set KALE_INSTALL=0" in result.stderr


def test_install_false_and_a_private_index_in_pyproject(tmp_path):
    (tmp_path / "dumps.py").write_text(FLOW)
    (tmp_path / "pyproject.toml").write_text(
        '[tool.kale]\nimage = "registry.local/steps:1"\ninstall = false\n')
    result = run_script(tmp_path, "--kfp", "--dry-run", "-o", "p.yaml", script="dumps.py")
    assert result.returncode == 0, result.stderr
    assert not any("pip install" in c for c in commands(tmp_path / "p.yaml").values())
    (tmp_path / "pyproject.toml").write_text(
        '[tool.kale]\nindex_url = "https://pypi.internal/simple"\n')
    result = run_script(tmp_path, "--kfp", "--dry-run", "-o", "i.yaml", script="dumps.py")
    assert result.returncode == 0, result.stderr
    command = commands(tmp_path / "i.yaml")["exec-dump"]
    # The inferred pins and kfp itself, from the private index alone.
    assert command.count("--index-url https://pypi.internal/simple") == 2
    assert "pypi.org" not in command and "--extra-index-url" not in command
    (tmp_path / "pyproject.toml").write_text('[tool.kale]\ninstall = "no"\n')
    bad = run_script(tmp_path, "--kfp", "--dry-run", script="dumps.py")
    assert bad.returncode == 1
    assert "`install` in [tool.kale] of pyproject.toml is 'no', not true or false" in bad.stderr


def test_a_step_whose_image_lacks_a_package_stops_with_its_name():
    code = textwrap.dedent('''
        from kale.kfp.entry import _check_image
        _check_image({"step": "dump", "expects": ["PyYAML==0.0.1", "no-such-dist==1.0"]})
    ''')
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 1
    assert "step `dump` runs with other versions than pinned: PyYAML" in result.stderr
    assert "step `dump` was not started: its image lacks no-such-dist==1.0, and with " \
        "--no-install (install = false) nothing is installed in the step" in result.stderr
    assert "fix: add them to the image" in result.stderr
