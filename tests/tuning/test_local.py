"""Local studies: each trial a local run proposed by Optuna, recorded and tagged with its study."""

from __future__ import annotations

import json

import pytest

from kale.sdk.tuning import Choice, Float, Int

QUADRATIC = '''
    from kale.sdk import pipeline, step
    from kale.sdk.logging import log_metric

    @step
    def score(x: float, y: int, shift: float):
        if x > 4.5:
            raise ValueError("x is too big for this model")
        log_metric("loss", (x - 1.5 - shift) ** 2 + (y - 3) ** 2)

    @pipeline(name="quadratic")
    def quadratic(x: float = 0.0, y: int = 0, shift: float = 0.0):
        score(x, y, shift)
'''


@pytest.fixture
def quadratic(project, monkeypatch, tmp_path):
    monkeypatch.setenv("KALE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("KALE_PROGRESS", "plain")
    return project.load(QUADRATIC, prelude=False).quadratic


def records(tmp_path):
    return [json.loads(path.read_text())
            for path in (tmp_path / "home" / "runs").glob("*/run.json")]


def test_tpe_finds_the_minimum_of_a_quadratic(quadratic, tmp_path, capsys):
    study = quadratic.tune(parameters={"x": Float(-4, 4.4), "y": Int(-5, 10)}, objective="loss",
                           goal="minimize", algorithm="tpe", max_trials=30, seed=0)
    assert study.status == "succeeded" and len(study.trials) == 30
    assert all(trial.status == "succeeded" for trial in study.trials)
    # the optimum is x=1.5, y=3 (a loss of 0); with this seed TPE comes within 0.3 of x
    assert study.best_parameters["y"] == 3 and abs(study.best_parameters["x"] - 1.5) < 0.3
    assert study.best_value < 0.1
    # TPE does better than its first ten (random) proposals
    assert study.best_value < min(trial.value for trial in study.trials[:10])
    # every trial is a run of its own in the record, tagged with the study
    found = records(tmp_path)
    assert len(found) == 30
    assert {run["study"]["id"] for run in found} == {study.id}
    assert sorted(run["study"]["trial"] for run in found) == list(range(30))
    best = study.best_trial
    run = next(run for run in found if run["id"] == best.run_id)
    assert run["parameters"]["x"] == best.parameters["x"] and run["parameters"]["shift"] == 0.0
    saved = json.loads((study.folder / "study.json").read_text())
    assert saved["best"]["trial"] == best.number and len(saved["trials"]) == 30
    out = capsys.readouterr().out
    assert "tuning pipeline quadratic locally, minimize loss with tpe, 30 trials" in out
    assert out.count("✓ trial") == 30 and "best " in out
    assert "best loss=" in out and "trial  status     loss" in out


def test_the_other_parameters_keep_the_calls_values(quadratic):
    study = quadratic.tune(shift=1.0, parameters={"x": Float(0, 4, step=0.5), "y": Choice([2, 3])},
                           objective="loss", goal="minimize", algorithm="grid", max_trials=100)
    # the grid has 9 x 2 points: every one tried once, the best where shift moved the optimum
    assert len(study.trials) == 18
    assert len({tuple(t.parameters.items()) for t in study.trials}) == 18
    assert study.best_parameters == {"x": 2.5, "y": 3} and study.best_value == 0


def test_random_search_with_parallel_trials(quadratic):
    study = quadratic.tune(parameters={"x": Float(-4, 4.4), "y": Choice([1, 3, 5])},
                           objective="loss", goal="minimize", algorithm="random",
                           max_trials=8, parallel_trials=2, seed=3)
    assert len(study.trials) == 8 and study.status == "succeeded"
    assert {t.parameters["y"] for t in study.trials} <= {1, 3, 5}
    assert len({t.run_id for t in study.trials}) == 8


def test_a_failing_trial_is_recorded_and_counted(quadratic, capsys):
    # x above 4.5 fails the step: on a grid of 4.0, 5.0, 6.0 two of three trials fail
    study = quadratic.tune(parameters={"x": Float(4, 6, step=1), "y": Int(3, 4)},
                           objective="loss", goal="minimize", algorithm="grid",
                           max_failed_trials=1, parallel_trials=1, seed=0)
    failed = [trial for trial in study.trials if trial.status == "failed"]
    assert len(failed) == 2 and study.status == "failed"
    assert "2 trials failed, more than max_failed_trials=1" in study.reason
    assert all("x is too big" in trial.error and trial.run_id for trial in failed)
    assert all(trial.value is None for trial in failed)
    out = capsys.readouterr().out
    assert "✗ trial" in out and "no more trials start" in out
    assert len(study.trials) < 6  # it stopped before the grid's end


def test_every_trial_failing_leaves_no_best(quadratic):
    study = quadratic.tune(parameters={"x": Float(5, 6), "y": Int(0, 1)}, objective="loss",
                           goal="minimize", algorithm="random", max_trials=3,
                           max_failed_trials=5)
    assert study.best_trial is None and study.best_parameters is None
    assert study.best_value is None and study.status == "succeeded"


def test_caching_applies_inside_trials(project, monkeypatch, tmp_path):
    monkeypatch.setenv("KALE_HOME", str(tmp_path / "home"))
    module = project.load('''
        from kale.sdk import pipeline, step
        from kale.sdk.logging import log_metric

        @step(cache=True)
        def prepare(size: int):
            return list(range(size))

        @step
        def score(data, x: float):
            log_metric("loss", (x - len(data)) ** 2)

        @pipeline(name="cached")
        def cached(size: int = 3, x: float = 0.0):
            data = prepare(size)
            score(data, x)
    ''', prelude=False)
    study = module.cached.tune(parameters={"x": Float(0, 6, step=1)}, objective="loss",
                               goal="minimize", algorithm="grid")
    assert study.best_parameters == {"x": 3.0}
    runs = {run["id"]: run for run in records(tmp_path)}
    states = [runs[trial.run_id]["steps"]["prepare"]["status"] for trial in study.trials]
    # the step the tuned parameter does not reach is computed once and reused
    assert states[0] == "succeeded" and set(states[1:]) == {"cached"}


def test_a_zygote_started_by_a_thread_that_ended_is_not_reused():
    # The kernel sends the zygote SIGTERM when the *thread* that started it ends
    # (PR_SET_PDEATHSIG): a run after a study's threads are gone must get a live one.
    import threading

    from kale.local.processes import Zygote

    started = []

    def in_thread():
        # A new one (an idle zygote of an earlier test in this process may be there too).
        zygote = Zygote([])
        started.append(zygote)
        Zygote.release(zygote)

    previous, Zygote.keep_idle = Zygote.keep_idle, 8
    try:
        worker = threading.Thread(target=in_thread)
        worker.start()
        worker.join()
        again = Zygote.acquire([])
        assert again is not started[0] and again.spawner.is_alive()
        assert started[0].process.poll() is not None  # closed, not left behind
        Zygote.release(again)
    finally:
        Zygote.keep_idle = previous
