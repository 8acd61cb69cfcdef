"""What each Kubeflow Pipelines release does with Kale's packages (``kale.kfp.server``): the
server's version read at submission, ``--server-version`` for a dry run, and the settings an
older server would drop or break refused or compiled another way, visibly."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap

import pytest
import yaml

from kale.errors import KaleError
from kale.kfp.server import Target, parse_version, target_from_healthz
from tests.kfp.fake_kfp import FakeKubeflow
from tests.kfp.test_submit import run_script

pytest.importorskip("kfp")

TIMED = textwrap.dedent('''
    from kale.sdk import pipeline, step

    @step(timeout="5m")
    def make(n):
        return list(range(n))

    @pipeline(name="timed", timeout="1h")
    def timed(n=3):
        make(n)

    if __name__ == "__main__":
        timed(n=2)
''')


def documents(body: bytes) -> list[dict]:
    """The YAML documents of an uploaded package (the multipart body of the upload)."""
    text = body.decode()
    start = text.index("# PIPELINE DEFINITION")
    end = text.index("\r\n--", start)
    return [d for d in yaml.safe_load_all(text[start:end]) if d]


def uploaded(kubeflow: FakeKubeflow) -> list[dict]:
    request = next(r for r in kubeflow.requests if "/pipelines/upload" in r["path"])
    return documents(request["body"])


def step_spec(spec: dict, step: str) -> dict:
    """The run_component spec written into a step's component."""
    executor = next(e for name, e in spec["deploymentSpec"]["executors"].items()
                    if name == f"exec-{step}")
    source = executor["container"]["command"][-1]
    start = source.index("run_component(") + len("run_component(")
    import ast

    return ast.literal_eval(source[start:source.index("}, root,", start) + 1])


def test_versions_are_read_as_the_health_endpoint_reports_them():
    assert parse_version("2.14.3") == (2, 14, 3)
    assert parse_version("v2.5.0") == (2, 5, 0)
    assert parse_version("2.17.0-rc.1") == (2, 17, 0)
    assert parse_version("unknown") is None and parse_version("") is None
    assert target_from_healthz({"tag_name": "2.16.1", "multi_user": True}).multi_user
    assert target_from_healthz({"tag_name": "unknown"}, "2.4.0").version == (2, 4, 0)
    with pytest.raises(KaleError, match=r"older than 2\.0\.0"):
        target_from_healthz({"tag_name": "1.8.5"})


def test_a_server_before_2_17_gets_the_pipeline_timeout_from_kale_not_a_dropped_platform_spec(
        tmp_path):
    """KFP 2.16 drops the whole Kubernetes platform document when it holds pipelineConfig
    (v2_template.go@2.16.0): the step's pod deadline would go with it."""
    (tmp_path / "timed.py").write_text(TIMED)
    with FakeKubeflow(tag_name="2.16.0") as kubeflow:
        result = run_script(tmp_path, "--kfp", "--kfp-host", kubeflow.host, script="timed.py")
        assert result.returncode == 0, result.stderr
        spec, platform = uploaded(kubeflow)
    kubernetes = platform["platforms"]["kubernetes"]
    assert "pipelineConfig" not in kubernetes
    assert kubernetes["deploymentSpec"]["executors"]["exec-make"]["activeDeadlineSeconds"]
    assert step_spec(spec, "make")["deadline"] == 3600
    assert "note: the pipeline's timeout (1h) is kept by Kale in each step" in result.stderr
    assert "Kubeflow Pipelines 2.16.0 (the server's tag_name) would drop the pipelineConfig" \
        in result.stderr
    # A 2.17 server gets the pipeline's own deadline, and no note.
    with FakeKubeflow(tag_name="2.17.0") as kubeflow:
        result = run_script(tmp_path, "--kfp", "--kfp-host", kubeflow.host, script="timed.py")
        assert result.returncode == 0, result.stderr
        spec, platform = uploaded(kubeflow)
    assert platform["platforms"]["kubernetes"]["pipelineConfig"] == {
        "activeDeadlineSeconds": 3600}
    assert "deadline" not in step_spec(spec, "make") and "note:" not in result.stderr


def test_what_an_older_server_would_break_is_refused_before_uploading(tmp_path):
    labelled = TIMED.replace('@step(timeout="5m")', '@step(labels={"team": "a"}, retry_count=1)')
    (tmp_path / "labelled.py").write_text(labelled)
    with FakeKubeflow(tag_name="2.4.1") as kubeflow:
        result = run_script(tmp_path, "--kfp", "--kfp-host", kubeflow.host,
                            script="labelled.py")
        assert ("POST", "/pipelines/upload") not in kubeflow.calls()
    assert result.returncode == 1
    assert "cannot run as written on Kubeflow Pipelines 2.4.1 (the server's tag_name)" \
        in result.stderr
    assert "the labels or annotations of step `make` needs Kubeflow Pipelines 2.14.0" \
        in result.stderr
    assert "the retries of step `make` needs Kubeflow Pipelines 2.5.0" in result.stderr
    assert "fix: upgrade the server, or set retry_count=0" in result.stderr


def test_a_dry_run_compiles_for_the_server_version_given(tmp_path):
    (tmp_path / "timed.py").write_text(TIMED)
    newest = run_script(tmp_path, "--kfp", "--dry-run", "-o", "new.yaml", script="timed.py")
    assert newest.returncode == 0, newest.stderr
    assert "note: compiled for Kubeflow Pipelines 2.17.0 or later; for an older server give " \
        "--server-version" in newest.stderr
    old = run_script(tmp_path, "--kfp", "--dry-run", "-o", "old.yaml", "--server-version",
                     "2.0.5", script="timed.py")
    assert old.returncode == 0, old.stderr
    spec, *rest = [d for d in yaml.safe_load_all((tmp_path / "old.yaml").read_text()) if d]
    assert rest == []  # no platform document: 2.0.x fails a task with a pod deadline
    assert step_spec(spec, "make")["deadline"] == 3600
    assert "the timeouts of step `make` are kept by Kale's runtime alone" in old.stderr
    bad = run_script(tmp_path, "--kfp", "--dry-run", "--server-version", "latest",
                     script="timed.py")
    assert bad.returncode == 2
    assert "error: --server-version 'latest' is not a Kubeflow Pipelines release" in bad.stderr
    assert "for example --server-version 2.14.3" in bad.stderr


def test_a_step_past_the_pipelines_deadline_kept_by_kale_is_not_started(tmp_path):
    code = textwrap.dedent('''
        import sys
        from kale.kfp.entry import _within_deadline
        print(_within_deadline({"step": "make", "timeout": 300, "deadline": 3600},
                               "2020-01-01T00:00:00+00:00"))
    ''')
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 1
    assert "step `make` was not started: the pipeline's timeout (3600s from the run's start) " \
        "has passed" in result.stderr
    from datetime import datetime, timezone

    from kale.kfp.entry import _within_deadline

    now = datetime.now(timezone.utc).isoformat()
    assert 3500 < _within_deadline({"step": "s", "deadline": 3600}, now) <= 3600
    assert _within_deadline({"step": "s", "timeout": 60, "deadline": 3600}, now) == 60


def test_run_id_needs_2_5(project):
    from kale.kfp.compiler import compile_graph

    flow = project.load('''
        from kale.sdk import pipeline, step

        @step
        def tag(name):
            return name

        @pipeline(name="tagged")
        def tagged(name="run-[[RunUUID]]"):
            tag(name)
    ''', prelude=False).tagged
    with pytest.raises(KaleError) as caught:
        compile_graph(flow.graph, str(project.root / "t.yaml"),
                      target=Target((2, 4, 0), "--server-version", "2.4.0"))
    assert "[[RunUUID]] in a parameter's default needs Kubeflow Pipelines 2.5.0" \
        in caught.value.message
    compile_graph(flow.graph, str(project.root / "t.yaml"),
                  target=Target((2, 5, 0), "--server-version", "2.5.0"))


def test_run_id_in_a_value_of_the_run_needs_2_5_at_submission(tmp_path):
    """The driver replaces the run-id placeholder from 2.5.0 (driver.go@2.5.0): a run value
    holding [[RunUUID]] would reach the step as the placeholder's text before."""
    (tmp_path / "tagged.py").write_text(textwrap.dedent('''
        from kale.sdk import pipeline, step

        @step
        def tag(name):
            return name

        @pipeline(name="tagged")
        def tagged(name="plain"):
            tag(name)

        if __name__ == "__main__":
            tagged(name="run-[[RunUUID]]")
    '''))
    with FakeKubeflow(tag_name="2.4.1") as kubeflow:
        old = run_script(tmp_path, "--kfp", "--kfp-host", kubeflow.host, script="tagged.py")
        assert ("POST", "/pipelines/upload") not in kubeflow.calls()
    assert old.returncode == 1
    assert "[[RunUUID]] in a value of this run needs Kubeflow Pipelines 2.5.0 or later: the " \
        "driver of Kubeflow Pipelines 2.4.1 (the server's tag_name) does not replace" in old.stderr
    assert "fix: upgrade the server, or pass a value without [[RunUUID]]" in old.stderr
    with FakeKubeflow(tag_name="2.5.0") as kubeflow:
        new = run_script(tmp_path, "--kfp", "--kfp-host", kubeflow.host, script="tagged.py")
    assert new.returncode == 0, new.stderr


def test_a_multi_user_server_gets_the_pipeline_in_the_namespace_under_dns_names(tmp_path):
    """From 2.15 a multi-user server may require a namespace for pipelines, and its Kubernetes
    store requires DNS-1123 names; the fake does both (require_namespace)."""
    import re

    with FakeKubeflow(multi_user=True, require_namespace=True) as kubeflow:
        first = run_script(tmp_path, "--kfp", "--kfp-host", kubeflow.host, "--namespace",
                           "team-a")
        assert first.returncode == 0, first.stderr
        second = run_script(tmp_path, "--kfp", "--kfp-host", kubeflow.host, "--namespace",
                            "team-a")
        assert second.returncode == 0, second.stderr
        uploads = [r["query"] for r in kubeflow.requests if "/pipelines/upload" in r["path"]]
        lookups = [r["query"] for r in kubeflow.requests
                   if r["path"].endswith("/pipelines") and r["method"] == "GET"]
    pipeline, version = uploads
    assert pipeline == {"name": "sums", "display_name": "sums", "namespace": "team-a"}
    assert re.fullmatch(r"sums-\d{8}-\d{6}-[0-9a-f]{4}", version["name"])
    assert re.fullmatch(r"sums \d{4}-\d\d-\d\d \d\d:\d\d:\d\d", version["display_name"])
    assert version["pipelineid"] == "pipeline-1"  # found in its namespace the second time
    assert all(lookup["namespace"] == "team-a" for lookup in lookups)


def test_the_display_names_keep_the_pipelines_name_as_written(tmp_path):
    """The DNS-1123 names are Kale's (`my-sums`); the KFP UI shows the name the user wrote."""
    (tmp_path / "named.py").write_text(TIMED.replace('name="timed"', 'name="My Sums"'))
    with FakeKubeflow(multi_user=True, require_namespace=True) as kubeflow:
        for _ in range(2):
            result = run_script(tmp_path, "--kfp", "--kfp-host", kubeflow.host, "--namespace",
                                "team-a", script="named.py")
            assert result.returncode == 0, result.stderr
        pipeline, version = [r["query"] for r in kubeflow.requests
                             if "/pipelines/upload" in r["path"]]
    assert (pipeline["name"], pipeline["display_name"]) == ("my-sums", "My Sums")
    assert re.fullmatch(r"my-sums-\d{8}-\d{6}-[0-9a-f]{4}", version["name"])
    assert re.fullmatch(r"My Sums \d{4}-\d\d-\d\d \d\d:\d\d:\d\d", version["display_name"])
    assert version["pipelineid"] == "pipeline-1"  # found again by its display name


def test_long_names_become_dns_labels_that_stay_apart():
    from kale.kfp.submit import ResourceNames, dns_label

    long = "a-pipeline-" + "x" * 100
    label = dns_label(long)
    assert len(label) == 63 and label.startswith("a-pipeline-xxx") and label[-9] == "-"
    assert dns_label(long + "y") != label
    assert dns_label("Weird Name!") == "weird-name"
    version = ResourceNames.of(long).version()
    assert len(version) <= 63 and re.match(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", version)


def test_compile_takes_the_server_version_and_install_as_options(project):
    from kale.errors import InvalidOptionError

    flow = project.load(TIMED.split('if __name__')[0], prelude=False).timed
    package = flow.compile(project.root / "old.yaml", server_version="2.16.1")
    spec, platform = [d for d in yaml.safe_load_all(package.read_text()) if d]
    assert step_spec(spec, "make")["deadline"] == 3600
    assert "pipelineConfig" not in platform["platforms"]["kubernetes"]
    for option, value, fragment in [
        ("server_version", "latest", "a Kubeflow Pipelines release of 2.0.0 or later"),
        ("server_version", "1.8.5", "a Kubeflow Pipelines release of 2.0.0 or later"),
        ("install", "no", "True (the default: steps install their packages) or False"),
    ]:
        with pytest.raises(InvalidOptionError, match=re.escape(fragment)) as caught:
            flow.compile(project.root / "x.yaml", **{option: value})
        assert caught.value.location.file == __file__  # the caller's line
