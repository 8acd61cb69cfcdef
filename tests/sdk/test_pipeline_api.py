"""The pipeline object API: ``p.run()``, ``p.compile()``, ``p.submit()``, and what calling the
pipeline returns in each mode of the command line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from kale.errors import InvalidOptionError, KaleError, PipelineArgumentError
from kale.kfp.connection import KubeflowError
from tests.kfp.fake_kfp import FakeKubeflow

SUMS = '''
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
'''

CONNECTION_VARIABLES = ("KF_PIPELINES_ENDPOINT", "KF_PIPELINES_UI_ENDPOINT",
                        "KF_PIPELINES_SA_TOKEN_PATH")


def run_script(tmp_path, main, *arguments):
    """Run a script defining ``sums`` with ``main`` as its main block, as a user would."""
    text = textwrap.dedent(SUMS) + \
        '\nif __name__ == "__main__":\n' + textwrap.indent(textwrap.dedent(main), "    ")
    (tmp_path / "flow.py").write_text(text)
    inherited = {k: v for k, v in os.environ.items() if k not in CONNECTION_VARIABLES}
    return subprocess.run([sys.executable, "flow.py", *arguments], capture_output=True,
                          text=True, cwd=tmp_path, timeout=180,
                          env={**inherited, "KALE_HOME": str(tmp_path / "home"),
                               "KALE_PROGRESS": "plain", "HOME": str(tmp_path)})


@pytest.fixture
def kubeflow_env(monkeypatch, tmp_path):
    """No kfp context file, pod token or endpoint of this machine takes part."""
    pytest.importorskip("kfp")
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("KALE_WAIT_INTERVAL", "0.05")
    for name in CONNECTION_VARIABLES:
        monkeypatch.delenv(name, raising=False)


def posted(kubeflow, path):
    return json.loads(next(r["body"] for r in kubeflow.requests
                           if r["path"].endswith(path) and r["method"] == "POST"))


# The plain call, in the three modes --------------------------------------------------------------

STATUS = '''
run = sums(n=4)
print("GOT", type(run).__name__, run.status)
'''


def test_the_plain_call_returns_something_with_a_status_in_every_mode(tmp_path):
    pytest.importorskip("kfp")
    local = run_script(tmp_path, STATUS)
    assert local.returncode == 0, local.stderr
    assert "GOT Run succeeded" in local.stdout
    dry = run_script(tmp_path, STATUS + "print('PATH', run)\n", "--kfp", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "GOT PipelinePackage compiled" in dry.stdout
    assert f"PATH {tmp_path / 'sums.yaml'}" in dry.stdout
    with FakeKubeflow() as kubeflow:
        kubeflow.progress = [("RUNNING", {})]
        submitted = run_script(tmp_path, STATUS + "print('ID', run.id, run.url)\n", "--kfp",
                               "--kfp-host", kubeflow.host, "--namespace", "team-a")
    assert submitted.returncode == 0, submitted.stderr
    assert "GOT KfpRun running" in submitted.stdout  # asked of the server
    assert f"ID run-1 {kubeflow.host}/#/runs/details/run-1" in submitted.stdout


def test_run_is_a_local_run_whatever_the_command_line_says(tmp_path):
    result = run_script(tmp_path, '''
        run = sums.run(n=4)
        print("GOT", type(run).__name__, run.status, run.outputs)
    ''', "--kfp", "--kfp-host", "http://127.0.0.1:9")
    assert result.returncode == 0, result.stderr
    assert "GOT Run succeeded {'total': 6}" in result.stdout
    assert "kale: running pipeline sums locally" in result.stdout + result.stderr


def test_run_binds_its_arguments_like_the_call_and_points_at_the_caller(project):
    module = project.load(SUMS, prelude=False)
    with pytest.raises(PipelineArgumentError) as caught:
        module.sums.run(nn=4)
    assert "has no parameter 'nn'" in caught.value.message and "did you mean 'n'" in \
        caught.value.fix
    assert caught.value.location.file == __file__
    assert "module.sums.run(nn=4)" in caught.value.location.source_line


# compile ------------------------------------------------------------------------------------------


def test_compile_writes_the_package_where_asked_and_returns_its_path(project, monkeypatch):
    pytest.importorskip("kfp")
    module = project.load(SUMS, prelude=False)
    monkeypatch.chdir(project.root)
    package = module.sums.compile(image="python:3.12-slim")
    assert isinstance(package, Path) and package == project.root / "sums.yaml"
    assert package.status == "compiled"
    assert "image: python:3.12-slim" in package.read_text()
    elsewhere = module.sums.compile(project.root / "out" / ".." / "other.yaml")
    assert elsewhere == project.root / "other.yaml" and elsewhere.exists()


@pytest.mark.parametrize(("options", "message", "fix"), [
    ({"imag": "python:3.11"}, "compile() takes no option 'imag'", "did you mean 'image'?"),
    ({"host": "http://x"}, "compile() takes no option 'host'", "an option of submit()"),
    ({"image": 3}, "image=3 is not valid: --image takes a non-empty string", None),
    ({"bundle_store": ""}, "--bundle-store takes a non-empty string", None),
])
def test_compile_refuses_what_it_does_not_take(project, options, message, fix):
    module = project.load(SUMS, prelude=False)
    with pytest.raises(InvalidOptionError) as caught:
        module.sums.compile(project.root / "p.yaml", **options)
    assert message in caught.value.message
    if fix:
        assert fix in caught.value.fix
    assert caught.value.location.file == __file__
    assert not (project.root / "p.yaml").exists()


def test_a_package_path_that_is_not_yaml_is_explained_in_the_apis_words(project):
    module = project.load(SUMS, prelude=False)
    with pytest.raises(Exception, match="would not be YAML") as caught:
        module.sums.compile(project.root / "p.txt")
    assert caught.value.fix == f"path={str(project.root / 'p.yaml')!r}"
    assert caught.value.location.file == __file__


# submit -------------------------------------------------------------------------------------------


def test_submit_starts_a_run_and_returns_it(project, kubeflow_env):
    module = project.load(SUMS, prelude=False)
    with FakeKubeflow() as kubeflow:
        kubeflow.progress = [("RUNNING", {"make": "RUNNING"})]
        run = module.sums.submit(5, host=kubeflow.host, namespace="team-a",
                                 experiment="other-experiment")
        assert (run.id, run.pipeline, run.experiment) == ("run-1", "sums", "other-experiment")
        assert run.url == f"{kubeflow.host}/#/runs/details/run-1"
        assert posted(kubeflow, "/experiments")["display_name"] == "other-experiment"
        assert posted(kubeflow, "/runs")["runtime_config"]["parameters"] == {"n": 5}
        assert run.status == "running"
        assert run.wait() == "succeeded"
        assert run.status == "succeeded"


def test_submit_with_wait_follows_the_run_and_raises_unless_it_succeeds(project, kubeflow_env,
                                                                        capsys):
    module = project.load(SUMS, prelude=False)
    with FakeKubeflow() as kubeflow:
        kubeflow.final_state = "FAILED"
        kubeflow.final_tasks = {"make": ("FAILED", "ValueError: bad n")}
        with pytest.raises(KubeflowError) as caught:
            module.sums.submit(host=kubeflow.host, namespace="team-a", wait=True)
        assert "run run-1 of pipeline sums ended FAILED (step make failed: ValueError: bad n)" \
            in caught.value.message
        # Without wait=True the caller decides: wait() returns the final status.
        run = module.sums.submit(host=kubeflow.host, namespace="team-a")
        assert run.wait() == "failed" and run.failed == {"make": "ValueError: bad n"}
    assert "kale: run run-2 ended: FAILED" in capsys.readouterr().err


@pytest.mark.parametrize(("call", "kind", "fragment"), [
    ("sums.submit(nn=1, host=HOST)", PipelineArgumentError, "has no parameter 'nn'"),
    ("sums.submit(1, 2, host=HOST)", PipelineArgumentError, "takes 1 positional value(s)"),
    ("sums.submit(host=HOST, compile_options={'imag': 'x'})", InvalidOptionError,
     "submit() takes no entry in compile_options 'imag'"),
    ("sums.submit(host=HOST, experiment='')", InvalidOptionError, "experiment=''"),
    ("sums.submit(2**60 + 1, host=HOST)", KaleError, f"parameter `n` holds {2**60 + 1}"),
])
def test_submit_checks_everything_before_contacting_kubeflow(project, kubeflow_env, call, kind,
                                                             fragment):
    module = project.load(SUMS, prelude=False)
    with FakeKubeflow() as kubeflow:
        with pytest.raises(kind) as caught:
            eval(compile(call, __file__, "eval"), {"sums": module.sums, "HOST": kubeflow.host})
        assert kubeflow.requests == []
    assert fragment in caught.value.message
    assert caught.value.location.file == __file__


def test_a_parameter_named_like_an_option_of_submit_is_not_taken_silently(project,
                                                                          kubeflow_env):
    module = project.load('''
        from kale.sdk import pipeline, step

        @step
        def fetch(host):
            return host

        @pipeline
        def crawl(host="example.com"):
            fetch(host)
    ''', prelude=False)
    with pytest.raises(PipelineArgumentError) as caught:
        module.crawl.submit(host="other.org")
    assert "`host` is both an option of submit() and a parameter of pipeline `crawl`" in \
        caught.value.message
    assert "by position" in caught.value.fix
