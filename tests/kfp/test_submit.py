"""Submission to Kubeflow Pipelines, against a local server that speaks its REST API."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from kale.kfp import connection  # imports no kfp: only connecting does
from tests.kfp.fake_kfp import FakeKubeflow

pytest.importorskip("kfp")

SCRIPT = textwrap.dedent('''
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

    if __name__ == "__main__":
        sums(n=5)
''')

# Runs the script with Kale's service-account namespace file moved, as a pod would have it.
IN_A_POD = textwrap.dedent('''
    import runpy, sys
    import kale.kfp.connection
    kale.kfp.connection.SERVICE_ACCOUNT_NAMESPACE_FILE = sys.argv.pop(1)
    sys.argv[0] = "flow.py"
    runpy.run_path("flow.py", run_name="__main__")
''')

# On a machine that is itself a pod, the pod's namespace would be found.
in_a_real_pod = pytest.mark.skipif(os.path.exists(connection.SERVICE_ACCOUNT_NAMESPACE_FILE),
                                   reason="this machine is a pod with a namespace")
CONNECTION_VARIABLES = ("KF_PIPELINES_ENDPOINT", "KF_PIPELINES_UI_ENDPOINT",
                         "KF_PIPELINES_SA_TOKEN_PATH")


def run_script(tmp_path, *flags, script="flow.py", **env):
    (tmp_path / "flow.py").write_text(SCRIPT)
    (tmp_path / "in_a_pod.py").write_text(IN_A_POD)
    inherited = {k: v for k, v in os.environ.items() if k not in CONNECTION_VARIABLES}
    # HOME is the test's, so that no ~/.config/kfp/context.json of the machine takes part.
    return subprocess.run([sys.executable, script, *flags], capture_output=True, text=True,
                          cwd=tmp_path, timeout=120,
                          env={**inherited, "KALE_HOME": str(tmp_path / "home"),
                               "HOME": str(tmp_path), **env})


def posted(kubeflow, path):
    return json.loads(next(r["body"] for r in kubeflow.requests
                           if r["path"].endswith(path) and r["method"] == "POST"))


def test_first_submission_uploads_creates_the_experiment_and_starts_a_run(tmp_path):
    with FakeKubeflow() as kubeflow:
        result = run_script(tmp_path, "--kfp", "--kfp-host", kubeflow.host, "--wait")
        assert result.returncode == 0, result.stderr
        calls = kubeflow.calls()
        assert ("POST", "/pipelines/upload") in calls
        assert ("POST", "/experiments") in calls
        assert ("POST", "/runs") in calls
        upload = next(r for r in kubeflow.requests if r["path"].endswith("/pipelines/upload"))
        assert upload["query"]["name"] == "sums"
        assert b"kale-bundle" in upload["body"]  # the compiled package itself
        assert posted(kubeflow, "/experiments")["display_name"] == "arithmetic"
        run = posted(kubeflow, "/runs")
        assert run["experiment_id"] == "experiment-1"
        assert run["pipeline_version_reference"] == {"pipeline_id": "pipeline-1",
                                                     "pipeline_version_id": "version-1-1"}
        assert run["runtime_config"]["parameters"] == {"n": 5}
    assert "kale: started run run-1 of pipeline sums in experiment arithmetic" in result.stderr
    assert f"{kubeflow.host}/#/runs/details/run-1" in result.stderr
    assert "kale: run run-1 ended: SUCCEEDED" in result.stderr


def test_a_second_submission_uploads_a_new_version_into_the_same_experiment(tmp_path):
    with FakeKubeflow() as kubeflow:
        assert run_script(tmp_path, "-K", "--kfp-host", kubeflow.host).returncode == 0
        second = run_script(tmp_path, "-K", "--kfp-host", kubeflow.host)
        assert second.returncode == 0, second.stderr
        calls = kubeflow.calls()
        assert calls.count(("POST", "/pipelines/upload")) == 1
        assert calls.count(("POST", "/pipelines/upload_version")) == 1
        assert calls.count(("POST", "/experiments")) == 1
        assert calls.count(("POST", "/runs")) == 2


def test_wait_shows_each_steps_state_as_it_changes(tmp_path):
    with FakeKubeflow() as kubeflow:
        kubeflow.progress = [
            ("PENDING", {}),
            ("RUNNING", {"kale-bundle": "RUNNING"}),
            ("RUNNING", {"kale-bundle": "SUCCEEDED", "make": "RUNNING", "make-driver": "RUNNING"}),
            ("RUNNING", {"kale-bundle": "SUCCEEDED", "make": "SUCCEEDED", "total": "RUNNING"}),
        ]
        kubeflow.final_tasks = {"kale-bundle": "SUCCEEDED", "make": "SUCCEEDED",
                                "total": "SUCCEEDED"}
        result = run_script(tmp_path, "--kfp", "--kfp-host", kubeflow.host, "--wait",
                            KALE_WAIT_INTERVAL="0.05")
    assert result.returncode == 0, result.stderr
    lines = [line.split(" ", 2)[2] for line in result.stderr.splitlines()
             if line.startswith("kale: 00:")]
    assert lines == ["run pending", "step kale-bundle: running", "run running",
                     "step kale-bundle: succeeded", "step make: running", "step make: succeeded",
                     "step total: running", "step total: succeeded"]
    assert result.stderr.rstrip().endswith("kale: run run-1 ended: SUCCEEDED")


def test_wait_names_the_step_that_failed_and_why(tmp_path):
    with FakeKubeflow() as kubeflow:
        kubeflow.progress = [("RUNNING", {"make": "RUNNING"})]
        kubeflow.final_state = "FAILED"
        kubeflow.final_tasks = {"make": ("FAILED", "ValueError: bad n"), "total": "SKIPPED"}
        result = run_script(tmp_path, "--kfp", "--kfp-host", kubeflow.host, "--wait",
                            KALE_WAIT_INTERVAL="0.05")
    assert result.returncode == 1
    assert "step make: failed: ValueError: bad n" in result.stderr
    assert "step total: skipped" in result.stderr
    assert "error: run run-1 of pipeline sums ended FAILED (step make failed: ValueError: bad n)" \
        in result.stderr
    assert "fix: see its steps and logs at" in result.stderr


TWICE = SCRIPT.replace("    total(values)\n", "    total(values)\n    more = make(n)\n"
                       "    total(more)\n")
assert TWICE != SCRIPT


def test_wait_tells_apart_two_calls_of_one_step_and_forgets_a_failure_retried(tmp_path):
    (tmp_path / "twice.py").write_text(TWICE)
    with FakeKubeflow() as kubeflow:
        kubeflow.progress = [("RUNNING", {"make": "RUNNING", "make-2": "RUNNING"}),
                             ("RUNNING", {"make": ("FAILED", "flaky"), "make-2": "SUCCEEDED"}),
                             ("RUNNING", {"make": "RUNNING", "total-2": "RUNNING"})]
        kubeflow.final_state = "FAILED"
        kubeflow.final_tasks = {"make": "SUCCEEDED", "make-2": "SUCCEEDED", "total": "SUCCEEDED",
                                "total-2": ("FAILED", "ZeroDivisionError")}
        result = run_script(tmp_path, "--kfp", "--kfp-host", kubeflow.host, "--wait",
                            script="twice.py", KALE_WAIT_INTERVAL="0.05")
    assert result.returncode == 1
    for line in ("step make-2: running", "step make: failed: flaky", "step make-2: succeeded",
                 "step total-2: failed: ZeroDivisionError"):
        assert line in result.stderr, result.stderr
    assert "(step total-2 failed: ZeroDivisionError)" in result.stderr
    assert "step make failed" not in result.stderr.split("error:")[-1]


def test_wait_shows_a_failure_of_kales_own_tasks_and_waits_out_a_restarting_server(tmp_path):
    with FakeKubeflow() as kubeflow:
        kubeflow.fail("GET", "/runs/run-1", 503, times=3)
        kubeflow.final_state = "FAILED"
        kubeflow.final_tasks = {"kale-bundle-import": ("FAILED", "NoSuchKey: bundle missing")}
        result = run_script(tmp_path, "--kfp", "--kfp-host", kubeflow.host, "--wait",
                            KALE_WAIT_INTERVAL="0.05")
    assert result.returncode == 1
    assert "step kale-bundle-import: failed: NoSuchKey: bundle missing" in result.stderr
    assert "(step kale-bundle-import failed: NoSuchKey: bundle missing)" in result.stderr


def test_a_failed_run_with_wait_exits_non_zero(tmp_path):
    with FakeKubeflow() as kubeflow:
        kubeflow.final_state = "FAILED"
        result = run_script(tmp_path, "--kfp", "--kfp-host", kubeflow.host, "--wait")
    assert result.returncode == 1
    assert "run run-1 of pipeline sums ended FAILED" in result.stderr


# Namespace -----------------------------------------------------------------------------------


def test_the_namespace_flag_goes_on_the_experiment_and_into_the_messages(tmp_path):
    with FakeKubeflow(multi_user=True) as kubeflow:
        result = run_script(tmp_path, "--kfp", "--kfp-host", kubeflow.host,
                            "--namespace", "team-a")
        assert result.returncode == 0, result.stderr
        lookup = next(r for r in kubeflow.requests
                      if r["path"].endswith("/experiments") and r["method"] == "GET")
        assert lookup["query"]["namespace"] == "team-a"
        assert posted(kubeflow, "/experiments")["namespace"] == "team-a"
        # A run has no namespace of its own: it is its experiment's.
        assert posted(kubeflow, "/runs")["experiment_id"] == "experiment-1"
        # Asked once, for the server's release and mode, namespace or not.
        assert kubeflow.calls().count(("GET", "/healthz")) == 1
    assert "kale: started run run-1 of pipeline sums in experiment arithmetic " \
        "(namespace team-a)" in result.stderr


def test_the_pods_service_account_namespace_goes_on_the_experiment(tmp_path):
    (tmp_path / "namespace").write_text("team-b\n")
    with FakeKubeflow(multi_user=True) as kubeflow:
        result = run_script(tmp_path, str(tmp_path / "namespace"), "--kfp", "--kfp-host",
                            kubeflow.host, script="in_a_pod.py")
        assert result.returncode == 0, result.stderr
        assert posted(kubeflow, "/experiments")["namespace"] == "team-b"
    assert "(namespace team-b)" in result.stderr


@in_a_real_pod
def test_without_a_namespace_a_single_user_kubeflow_gets_none(tmp_path):
    with FakeKubeflow() as kubeflow:
        result = run_script(tmp_path, "--kfp", "--kfp-host", kubeflow.host)
        assert result.returncode == 0, result.stderr
        assert not posted(kubeflow, "/experiments").get("namespace")  # kfp sends ""
        assert kubeflow.calls().count(("GET", "/healthz")) == 1
    assert "in experiment arithmetic (no namespace)" in result.stderr


@in_a_real_pod
def test_a_multi_user_kubeflow_without_a_namespace_is_explained_before_uploading(tmp_path):
    with FakeKubeflow(multi_user=True) as kubeflow:
        result = run_script(tmp_path, "--kfp", "--kfp-host", kubeflow.host)
        assert kubeflow.calls() == [("GET", "/healthz")]
    assert result.returncode == 1
    assert f"Kubeflow Pipelines at {kubeflow.host} (no namespace) is multi-user, and no " \
        "namespace was given or found" in result.stderr
    assert "use --namespace" in result.stderr
    assert "Traceback" not in result.stderr


def test_kfp_host_beats_kf_pipelines_endpoint(tmp_path):
    with FakeKubeflow() as kubeflow:
        result = run_script(tmp_path, "--kfp", "--kfp-host", kubeflow.host,
                            KF_PIPELINES_ENDPOINT="http://127.0.0.1:9")
        assert result.returncode == 0, result.stderr
        assert ("POST", "/runs") in kubeflow.calls()


# Credentials ---------------------------------------------------------------------------------


def test_the_service_account_token_is_sent_as_a_bearer_token(tmp_path):
    (tmp_path / "token").write_text("token-of-team-a\n")
    with FakeKubeflow() as kubeflow:
        result = run_script(tmp_path, "--kfp", "--kfp-host", kubeflow.host, "--namespace",
                            "team-a", KF_PIPELINES_SA_TOKEN_PATH=str(tmp_path / "token"))
        assert result.returncode == 0, result.stderr
        assert kubeflow.requests
        assert {r["authorization"] for r in kubeflow.requests} == {"Bearer token-of-team-a"}


@pytest.mark.parametrize(("content", "fragment"), [(None, "cannot be read: No such file"),
                                                   ("  \n", "is empty")])
def test_a_token_file_that_cannot_be_used_is_explained_before_contacting_kubeflow(
        tmp_path, content, fragment):
    token = tmp_path / "token"
    if content is not None:
        token.write_text(content)
    with FakeKubeflow() as kubeflow:
        result = run_script(tmp_path, "--kfp", "--kfp-host", kubeflow.host, "--namespace",
                            "team-a", KF_PIPELINES_SA_TOKEN_PATH=str(token))
        assert kubeflow.requests == []
    assert result.returncode == 1
    assert f"error: Kubeflow Pipelines at {kubeflow.host} (namespace team-a, from --namespace) " \
        f"was not contacted: the service-account token file {token} " \
        f"(KF_PIPELINES_SA_TOKEN_PATH) {fragment}" in result.stderr
    assert "fix: mount the Kubeflow Pipelines token" in result.stderr
    assert "Traceback" not in result.stderr


# Refusals ------------------------------------------------------------------------------------

WHERE = "Kubeflow Pipelines at {host} (namespace team-a, from --namespace)"


def test_a_refusal_to_create_the_experiment_is_a_missing_permission_in_that_namespace(tmp_path):
    with FakeKubeflow(multi_user=True) as kubeflow:
        kubeflow.fail("POST", "/experiments", 403)
        result = run_script(tmp_path, "--kfp", "--kfp-host", kubeflow.host,
                            "--namespace", "team-a")
        assert ("POST", "/runs") not in kubeflow.calls()
    assert result.returncode == 1
    assert WHERE.format(host=kubeflow.host) + " refused to find or create experiment " \
        "arithmetic (403 Forbidden): your account may not create experiments in namespace " \
        "team-a" in result.stderr
    assert "User 'system:serviceaccount:team-a:default-editor' is not authorized" in result.stderr
    assert "fix: ask your Kubeflow admin for a contributor role in the profile of namespace " \
        "team-a, or use --namespace" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_refusal_to_list_experiments_is_the_same_missing_permission(tmp_path):
    with FakeKubeflow(multi_user=True) as kubeflow:
        kubeflow.fail("GET", "/experiments", 403)
        result = run_script(tmp_path, "--kfp", "--kfp-host", kubeflow.host,
                            "--namespace", "team-a")
    assert result.returncode == 1
    assert "your account may not create experiments in namespace team-a" in result.stderr


@pytest.mark.parametrize(("status", "fragment"), [
    # The health endpoint is asked first (the server's release and mode).
    (401, "refused to check its health (401 Unauthorized): no credentials were sent"),
    (403, "refused to check its health (403 Forbidden): your account lacks the permission"),
    (404, "answered 404 Not Found to the request to check its health: no Kubeflow "
          "Pipelines API (/apis/v2beta1) there"),
    (500, "answered 500 Internal Server Error to the request to check its health"),
])
def test_refusals_are_explained(tmp_path, status, fragment):
    with FakeKubeflow(status=status) as kubeflow:
        result = run_script(tmp_path, "--kfp", "--kfp-host", kubeflow.host,
                            "--namespace", "team-a")
    assert result.returncode == 1
    assert f"{WHERE.format(host=kubeflow.host)} {fragment}" in result.stderr
    assert "fix: " in result.stderr
    assert "Traceback" not in result.stderr


def test_a_401_names_the_token_that_was_refused(tmp_path):
    (tmp_path / "token").write_text("expired")
    with FakeKubeflow(status=401) as kubeflow:
        result = run_script(tmp_path, "--kfp", "--kfp-host", kubeflow.host, "--namespace",
                            "team-a", KF_PIPELINES_SA_TOKEN_PATH=str(tmp_path / "token"))
    assert result.returncode == 1
    assert f"it did not accept the token in {tmp_path / 'token'} " \
        "(KF_PIPELINES_SA_TOKEN_PATH)" in result.stderr
    assert "may have expired or be meant for another audience" in result.stderr


@in_a_real_pod
def test_a_host_that_is_not_kubeflow_pipelines_is_explained_at_once(tmp_path):
    with FakeKubeflow() as kubeflow:
        kubeflow.fail("GET", "/healthz", 404, "<html><body>404 page not found</body></html>")
        result = run_script(tmp_path, "--kfp", "--kfp-host", kubeflow.host)
        # kfp.Client alone would ask five times, five seconds apart, logging tracebacks.
        assert kubeflow.calls() == [("GET", "/healthz")]
    assert result.returncode == 1
    assert f"Kubeflow Pipelines at {kubeflow.host} (no namespace) answered 404 Not Found to the " \
        "request to check its health: no Kubeflow Pipelines API" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_login_page_instead_of_the_api_is_a_missing_credential(tmp_path):
    # What a Kubeflow gateway answers, after its redirect, to a request without a session.
    with FakeKubeflow() as kubeflow:
        kubeflow.fail("GET", "/pipelines", 200, "<html>Log in to Your Account</html>")
        result = run_script(tmp_path, "--kfp", "--kfp-host", kubeflow.host,
                            "--namespace", "team-a")
        assert ("POST", "/pipelines/upload") not in kubeflow.calls()
    assert result.returncode == 1
    assert f"{WHERE.format(host=kubeflow.host)} answered the request to look up pipeline sums " \
        "with a page, not the Pipelines API's JSON ('<html>Log in to Your Account</html>')" \
        in result.stderr
    assert "login page (no credentials were sent)" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_namespace_the_server_does_not_know_is_explained(tmp_path):
    with FakeKubeflow(multi_user=True) as kubeflow:
        kubeflow.fail("POST", "/experiments", 404, {
            "code": 5, "message": 'Failed to create a experiment: namespaces "team-z" not found'})
        result = run_script(tmp_path, "--kfp", "--kfp-host", kubeflow.host,
                            "--namespace", "team-z")
    assert result.returncode == 1
    assert f"Kubeflow Pipelines at {kubeflow.host} (namespace team-z, from --namespace) does " \
        "not know namespace team-z" in result.stderr
    assert "use --namespace with your profile's namespace" in result.stderr


def test_an_unreachable_host_is_explained(tmp_path):
    result = run_script(tmp_path, "--kfp", "--kfp-host", "http://127.0.0.1:9",
                        "--namespace", "team-a")
    assert result.returncode == 1
    assert "Kubeflow Pipelines at http://127.0.0.1:9 (namespace team-a, from --namespace) " \
        "could not be reached to check its health" in result.stderr
    assert "Connection refused" in result.stderr
    assert "check --kfp-host (http://127.0.0.1:9)" in result.stderr
    assert "--dry-run" in result.stderr
    assert "Traceback" not in result.stderr


def test_an_unreachable_kf_pipelines_endpoint_is_named(tmp_path):
    result = run_script(tmp_path, "--kfp", "--namespace", "team-a",
                        KF_PIPELINES_ENDPOINT="http://127.0.0.1:9")
    assert result.returncode == 1
    assert "Kubeflow Pipelines at http://127.0.0.1:9 (namespace team-a, from --namespace) " \
        "could not be reached" in result.stderr
    assert "check KF_PIPELINES_ENDPOINT (http://127.0.0.1:9)" in result.stderr


def test_ctrl_c_stops_following_not_the_run(tmp_path):
    import signal

    (tmp_path / "flow.py").write_text(SCRIPT)
    with FakeKubeflow() as kubeflow:
        kubeflow.progress = [("RUNNING", {"make": "RUNNING"})] * 100_000
        process = subprocess.Popen(
            [sys.executable, "flow.py", "--kfp", "--kfp-host", kubeflow.host, "--wait"],
            cwd=tmp_path, stderr=subprocess.PIPE, text=True,
            env={**os.environ, "KALE_HOME": str(tmp_path / "home"), "HOME": str(tmp_path),
                 "KALE_WAIT_INTERVAL": "0.05"})
        seen = []
        for line in process.stderr:
            seen.append(line)
            if "step make: running" in line:
                break
        process.send_signal(signal.SIGINT)
        rest = process.stderr.read()
        assert process.wait(timeout=30) == 130, "".join(seen) + rest
        assert not any(method == "POST" and "terminate" in path
                       for method, path in kubeflow.calls())
    assert "kale: stopped following run run-1; it goes on in Kubeflow:" in rest
    assert "Traceback" not in rest


def test_a_run_value_kubeflow_would_round_is_refused_before_contacting_it(tmp_path):
    (tmp_path / "big.py").write_text(SCRIPT.replace("sums(n=5)", "sums(n=2**60 + 1)"))
    with FakeKubeflow() as kubeflow:
        result = run_script(tmp_path, "--kfp", "--kfp-host", kubeflow.host, script="big.py")
        assert kubeflow.requests == []
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert f"the value of pipeline parameter `n` holds {2**60 + 1}" in result.stderr


def test_ctrl_c_while_compiling_says_what_happened(project, monkeypatch, capsys):
    from types import SimpleNamespace

    from kale.kfp import compiler
    from kale.kfp.submit import compile_for_kubeflow

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(compiler, "compile_graph", interrupted)
    graph = project.graph("@step\ndef s():\n    return 1\n\n@pipeline\ndef p():\n    s()\n")
    flags = SimpleNamespace(dry_run=True, output=str(project.root / "p.yaml"), image=None,
                            requirements=None, bundle_store=None, kfp_host=None,
                            namespace=None, wait=False, server_version=None)
    with pytest.raises(SystemExit) as caught:
        compile_for_kubeflow(graph, {}, flags)
    assert caught.value.code == 130
    assert "kale: interrupted; the package was not written" in capsys.readouterr().err
