"""Retries on Kubeflow: KFP's backoff_max_duration is Argo's backoff.maxDuration, a window from
the first attempt's start that also ends retried pods (argo-workflows workflow/controller/
operator.go), and no per-wait cap is ever set. The window must never cut retries short."""

from __future__ import annotations

import warnings

import pytest
import yaml

pytest.importorskip("kfp")

FLOW = '''
    from kale.sdk import pipeline, step

    @step(timeout=60, retry_count=2, retry_interval=10, retry_factor=2)
    def timed(n):
        return n

    @step(retry_count=3, retry_interval="1m", retry_factor=3, retry_max_interval="2m")
    def endless(n):
        return n

    @pipeline(name="retried")
    def retried(n=1):
        timed(n)
        endless(n)
'''


def compiled(project):
    from kale.kfp.compiler import compile_graph, describe

    graph = project.load(FLOW, prelude=False).retried.graph
    path = project.root / "retried.yaml"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = compile_graph(graph, str(path))
    spec = next(yaml.safe_load_all(path.read_text()))
    return spec["root"]["dag"]["tasks"], describe(graph, result, str(path))


def seconds(duration: str) -> int:
    return int(duration.rstrip("s"))


def test_the_retry_window_holds_every_attempt_at_its_longest(project):
    tasks, _ = compiled(project)
    timed = tasks["timed"]["retryPolicy"]
    # Each attempt may take its pod's deadline (timeout + 15 min of setup) and wait to be
    # scheduled (15 min more); then the waits of 10s and 20s.
    assert seconds(timed["backoffMaxDuration"]) >= 3 * (60 + 900 + 900) + 10 + 20
    assert timed["backoffFactor"] == 2.0 and timed["backoffDuration"] == "10s"
    # Without a timeout no window is meant: ten years, never "0" (what KFP 2.14+ makes of
    # none) nor kfp's default of one hour.
    endless = tasks["endless"]["retryPolicy"]
    assert seconds(endless["backoffMaxDuration"]) == 10 * 365 * 86400


def test_what_retry_max_interval_does_on_kubeflow_is_said_at_compile_time(project):
    _, message = compiled(project)
    assert ("note: step `endless`: retry_max_interval=2m caps the waits between retries in "
            "local runs only; Kubeflow Pipelines sets no cap on a wait (Argo's backoff.cap), "
            "so on Kubeflow the retries wait 1m, 3m, 9m") in message
    assert "step `timed`: retry_max_interval" not in message  # nothing capped there
