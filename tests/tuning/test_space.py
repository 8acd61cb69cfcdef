"""Every mis-specified search space or setting is an error before the first trial, pointing at
the line that wrote it, with the fix."""

from __future__ import annotations

import pytest

from kale.sdk.tuning import Choice, Float, Int, TuningError

PIPELINE = '''
    from kale.sdk import has_metrics, pipeline, step
    from kale.sdk.logging import log_metric

    @step
    def train(lr: float, depth: int, kernel: str, flags: list):
        log_metric("accuracy", 0.5)

    @step
    def evaluate(lr: float):
        log_metric("accuracy", 0.6)
        log_metric("loss", 0.1)

    @pipeline(name="model")
    def model(lr: float = 0.1, depth: int = 3, kernel: str = "rbf", flags: list = [],
              verbose: bool = False):
        train(lr, depth, kernel, flags)
        evaluate(lr)
'''


@pytest.fixture
def model(project, monkeypatch, tmp_path):
    monkeypatch.setenv("KALE_HOME", str(tmp_path / "home"))
    return project.load(PIPELINE, prelude=False).model


@pytest.mark.parametrize("build, message, fix", [
    (lambda: Float(1, 0), "low must be below high", "Float(0, 1)"),
    (lambda: Float(0, 0), "low must be below high", "leave the parameter out"),
    (lambda: Float(0, "1"), "high is '1', not a finite number", "Float(0.001, 0.1)"),
    (lambda: Float(0, float("inf")), "not a finite number", None),
    (lambda: Float(0, 1, log=True), "a log scale needs low above 0", "drop log=True"),
    (lambda: Float(0, 1, step=0), "the step is a number above 0", None),
    (lambda: Float(0.1, 1, step=0.1, log=True), "has no step", None),
    (lambda: Int(1.5, 3), "low is 1.5, not a whole number", "Float(...)"),
    (lambda: Int(1, 3, step=0), "whole number of 1 or more", None),
    (lambda: Int(1, 30, log=True, step=2), "steps by 1", None),
    (lambda: Choice(["rbf"]), "nothing to choose", "two values or more"),
    (lambda: Choice("rbf"), "takes a list", None),
    (lambda: Choice([1, 1]), "holds 1 twice", None),
    (lambda: Choice([object(), 1]), "pipeline parameter holds JSON values", None),
])
def test_a_range_that_is_wrong_in_itself_fails_where_it_is_built(build, message, fix):
    with pytest.raises(TuningError) as caught:
        build()
    assert message in caught.value.message
    if fix:
        assert fix in caught.value.fix
    assert caught.value.location.file == __file__


@pytest.mark.parametrize("parameters, message, fix", [
    ({"depths": Int(1, 4)}, "names 'depths', which is not a parameter", "did you mean 'depth'"),
    ({}, "with one entry or more", "the parameters of `model` are: lr, depth"),
    ({"depth": Float(1, 5)}, "'depth' is a int", "Int(1, 5)"),
    ({"kernel": Float(1, 5)}, "'kernel' is a str", "Choice"),
    ({"kernel": Int(1, 5)}, "Int gives whole numbers", "Choice"),
    ({"depth": Choice(["a", "b"])}, "does not take", "type int"),
    ({"kernel": Choice([1, 2])}, "holds 1, which a str parameter", "type str"),
    ({"depth": [2, 8]}, "gives 'depth' [2, 8], not a range", "Int(2, 8)"),
    ({"kernel": ["rbf", "linear"]}, "not a range", "Choice(['rbf', 'linear'])"),
    ({"depth": 3}, "not a range", "Float(low, high), Int(low, high)"),
])
def test_a_space_that_does_not_fit_the_pipeline(model, parameters, message, fix):
    with pytest.raises(TuningError) as caught:
        model.tune(parameters=parameters, objective="loss")
    error = caught.value
    assert message in error.message, error.message
    assert fix in error.fix, error.fix
    # the range's own line when it has one (the parametrize list above), else the tune() call
    assert error.location.file == __file__
    source = error.location.source_line
    assert "model.tune(" in source or "parameters, message, fix" not in source


def test_an_int_range_for_a_float_parameter_is_fine(model, capsys):
    study = model.tune(parameters={"lr": Int(1, 2)}, objective="loss", goal="minimize",
                       algorithm="grid")
    assert [trial.parameters["lr"] for trial in study.trials] == [1, 2]


@pytest.mark.parametrize("options, message, fix", [
    ({"objective": "precision"}, "never logs metric 'precision'",
     "the pipeline logs 'accuracy', 'loss'"),
    ({"objective": "accuracy"}, "steps train, evaluate all log 'accuracy'",
     "objective='train.accuracy' or objective='evaluate.accuracy'"),
    ({"objective": "train.loss"}, "never logs metric 'loss' in step 'train'", None),
    ({"objective": "fit.loss"}, "names step 'fit'", None),
    ({"objective": "not a name"}, "a metric's name holds characters", None),
    ({"objective": None}, "the objective is the name of a metric", None),
    ({"goal": "max"}, "the goal is 'maximize' or 'minimize'", None),
    ({"algorithm": "tpee"}, "there is no such algorithm", "did you mean 'tpe'"),
    ({"algorithm": "hyperband"}, "no local equivalent", "stays valid on Kubeflow"),
    ({"algorithm": "pbt"}, "no local equivalent", "tune locally with 'tpe'"),
    ({"algorithm": "grid"}, "'lr' is a continuous Float(0.0, 1.0)", "step=..."),
    ({"max_trials": 0}, "max_trials is a whole number of 1", None),
    ({"parallel_trials": True}, "parallel_trials is a whole number", None),
    ({"max_failed_trials": -1}, "max_failed_trials is a whole number of 0", None),
    ({"seed": "x"}, "the seed is a whole number", None),
])
def test_settings_are_checked_before_any_trial(model, tmp_path, options, message, fix):
    given = {"objective": "loss", **options}
    with pytest.raises(TuningError) as caught:
        model.tune(parameters={"lr": Float(0, 1)}, **given)
    assert message in caught.value.message, caught.value.message
    if fix:
        assert fix in caught.value.fix, caught.value.fix
    assert "model.tune(" in caught.value.location.source_line
    assert not (tmp_path / "home" / "runs").exists()  # nothing ran


def test_an_objective_the_code_cannot_show_is_left_to_the_run(project, monkeypatch, tmp_path):
    monkeypatch.setenv("KALE_HOME", str(tmp_path / "home"))
    module = project.load('''
        from kale.sdk import has_metrics, pipeline, step
        from kale.sdk.logging import log_metric

        def report(name, value):
            log_metric(name, value)

        @has_metrics
        @step
        def train(lr: float):
            report("score", lr * 2)

        @pipeline(name="helped")
        def helped(lr: float = 0.1):
            train(lr)
    ''', prelude=False)
    study = module.helped.tune(parameters={"lr": Float(0, 1)}, objective="score", max_trials=2,
                               algorithm="random", seed=1)
    assert all(trial.value == trial.parameters["lr"] * 2 for trial in study.trials)
    # a metric the run does not log fails the trial, saying what it logged
    study = module.helped.tune(parameters={"lr": Float(0, 1)}, objective="other", max_trials=1)
    assert study.trials[0].status == "failed"
    assert "did not log metric 'other' (it logged score)" in study.trials[0].error


def test_an_option_named_like_a_parameter_is_not_taken_silently(project, monkeypatch,
                                                                 tmp_path):
    monkeypatch.setenv("KALE_HOME", str(tmp_path / "home"))
    module = project.load('''
        from kale.sdk import pipeline, step
        from kale.sdk.logging import log_metric

        @step
        def fit(seed: int, x: float):
            log_metric("loss", x * x + seed)

        @pipeline(name="seeded")
        def seeded(seed: int = 0, x: float = 1.0):
            fit(seed, x)
    ''', prelude=False)
    with pytest.raises(Exception) as caught:
        module.seeded.tune(parameters={"x": Float(0, 1)}, objective="loss", seed=4)
    assert "both an option of tune() and a parameter" in caught.value.message
    study = module.seeded.tune(4, parameters={"x": Float(0, 1)}, objective="loss",
                               max_trials=1)
    assert study.trials[0].status == "succeeded" and study.trials[0].value >= 4
