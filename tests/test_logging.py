"""kale.sdk.logging and the marks of kale.sdk (has_metrics, artifact): the API, its errors, what
a step's log keeps, how the scheduler checks it and what the compiler reads of a step."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest

from kale import logs
from kale.errors import InvalidOptionError, KaleError, LoggingError, StepDefinitionError
from kale.sdk import artifact, has_metrics, step
from kale.sdk.logging import (
    log_confusion_matrix,
    log_figure,
    log_html,
    log_markdown,
    log_metric,
    log_roc_curve,
)


class Events:
    def __init__(self) -> None:
        self.sent: list[tuple[str, dict]] = []

    def __call__(self, kind: str, details: dict) -> None:
        self.sent.append((kind, details))


@pytest.fixture
def active(tmp_path):
    """A step's log, as the runtime opens it around the step's function."""
    events = Events()
    log = logs.StepLog("train", 2, str(tmp_path / "artifacts"), events, echo=False)
    log.events = events
    logs.activate(log)
    yield log
    logs.activate(None)


# -- outside a pipeline: print, keep nothing ------------------------------------------------------


def test_outside_a_pipeline_a_metric_is_printed_and_nothing_fails(capsys, monkeypatch):
    monkeypatch.delenv("KALE_IN_STEP", raising=False)
    log_metric("accuracy", 0.93)
    log_metric("epochs", 3)
    log_html("report", "<p>hi</p>")
    log_markdown("notes", "# hi")
    log_confusion_matrix("cm", ["a", "b"], [[1, 2], [3, 4]])
    out = capsys.readouterr().out
    assert "accuracy=0.93\n" in out and "epochs=3\n" in out
    assert "log_html('report'): 9 characters" in out
    assert "log_confusion_matrix('cm')" in out


def test_a_step_called_as_a_function_logs_by_printing(capsys, monkeypatch):
    monkeypatch.delenv("KALE_IN_STEP", raising=False)

    @has_metrics
    @step
    def train(rate):
        log_metric("loss", rate * 2)
        return rate

    assert train(0.25) == 0.25
    assert capsys.readouterr().out == "loss=0.5\n"


# -- bad input ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "why"), [
    ("", "is empty"), ("val acc", "holds characters"), ("1st", "does not start with a letter"),
    ("é", "holds characters"), ("a" * 64, "64 characters long"), (3, "is a int"),
    ("val.acc", "holds characters"),
])
def test_a_bad_name_says_why_and_the_rule(active, name, why):
    with pytest.raises(LoggingError) as caught:
        log_metric(name, 1.0)
    error = caught.value
    assert why in error.message and "in step `train`" in error.message
    assert "letters, digits" in error.fix
    assert isinstance(error, ValueError) and isinstance(error, KaleError)


@pytest.mark.parametrize(("value", "words"), [
    (float("nan"), "not a finite number"), (float("inf"), "not a finite number"),
    ("0.9", "is a str, not a number"), (None, "NoneType, not a number"),
    (True, "is a bool, not a number"), ([1.0], "is a list, not a number"),
])
def test_a_value_that_is_not_a_finite_number_is_refused_naming_the_step(active, value, words):
    with pytest.raises(LoggingError) as caught:
        log_metric("accuracy", value)
    assert words in caught.value.message
    assert caught.value.message.startswith("log_metric('accuracy'")
    assert "in step `train`" in caught.value.message and caught.value.fix
    assert active.metrics == {}


def test_bad_input_outside_a_pipeline_is_refused_too(monkeypatch):
    monkeypatch.delenv("KALE_IN_STEP", raising=False)
    with pytest.raises(LoggingError) as caught:
        log_metric("loss", float("nan"))
    # Said as a sentence: not "in outside a pipeline".
    assert caught.value.message.startswith(
        "log_metric('loss', nan) outside a pipeline: the value is not a finite number")
    with pytest.raises(LoggingError) as caught:
        log_metric("bad name", 1)
    assert caught.value.message.startswith("log_metric() outside a pipeline: the name 'bad name'")


def test_number_likes_are_numbers():
    np = pytest.importorskip("numpy")
    from decimal import Decimal
    from fractions import Fraction

    log = logs.StepLog("s", 1, None, None, echo=False)
    logs.activate(log)
    try:
        log_metric("a", np.float32(0.5))
        log_metric("b", np.int64(7))
        log_metric("c", np.array(2.5))
        log_metric("d", Decimal("1.25"))
        log_metric("e", Fraction(1, 4))
    finally:
        logs.activate(None)
    assert log.metrics == {"a": 0.5, "b": 7, "c": 2.5, "d": 1.25, "e": 0.25}
    assert [type(value) for value in log.metrics.values()] == [float, int, float, float, float]


def test_logging_in_a_step_process_while_the_step_is_not_running(monkeypatch):
    monkeypatch.setenv("KALE_IN_STEP", "train")
    with pytest.raises(LoggingError) as caught:
        log_metric("loss", 1.0)
    assert "step `train`'s process while the step itself was not running" in \
        caught.value.message
    assert "inside the step's function" in caught.value.fix


def test_logging_from_a_process_the_step_started(active):
    active.pid = os.getpid() + 1  # as in a child forked by the step
    with pytest.raises(LoggingError) as caught:
        log_metric("loss", 1.0)
    assert "in a process that step `train` started" in caught.value.message
    assert "return the value to the step" in caught.value.fix


def test_artifacts_are_checked(active):
    with pytest.raises(LoggingError, match="the HTML is a bytes, not a string"):
        log_html("report", b"<p>")
    with pytest.raises(LoggingError, match="has no savefig"):
        log_figure("plot", [1, 2])
    with pytest.raises(LoggingError, match="must be 2 by 2"):
        log_confusion_matrix("cm", ["a", "b"], [[1, 2]])
    with pytest.raises(LoggingError, match="non-empty list of strings"):
        log_confusion_matrix("cm", [0, 1], [[1, 2], [3, 4]])
    with pytest.raises(LoggingError, match="same length"):
        log_roc_curve("roc", [0, 1], [0, 1], [1])
    log_html("report", "<p>")
    with pytest.raises(LoggingError, match="logged a html artifact named 'report' already"):
        log_markdown("report", "#")


# -- in a step: what the log keeps ------------------------------------------------------------


def test_the_last_value_of_a_name_wins_and_each_metric_is_sent_as_it_arrives(active):
    log_metric("loss", 3.0)
    log_metric("accuracy", 0.5)
    for value in (2.0, 1.0, 0.5):  # within the resend window: only the last is sent, later
        log_metric("loss", value)
    assert active.metrics == {"loss": 0.5, "accuracy": 0.5}
    sent = [details for kind, details in active.events.sent if kind == "metric"]
    assert sent == [{"name": "loss", "value": 3.0}, {"name": "accuracy", "value": 0.5}]
    assert active.finish() == {"metrics": {"loss": 0.5, "accuracy": 0.5}}
    sent = [details for kind, details in active.events.sent if kind == "metric"]
    assert sent[-1] == {"name": "loss", "value": 0.5}  # the waiting value goes at the end


def test_artifacts_are_files_in_the_attempts_folder(active, tmp_path):
    log_html("report", "<h1>r</h1>")
    log_markdown("notes", "# n")
    log_confusion_matrix("quality", ["cat", "dog"], [[5, 1], [2, 7]])
    log_roc_curve("quality", [0.0, 0.5, 1.0], [0.0, 0.8, 1.0], [float("inf"), 0.5, 0.1])
    logged = active.finish()["artifacts"]
    assert {name: entry["kind"] for name, entry in logged.items()} == {
        "report": "html", "notes": "markdown", "quality": "classification"}
    folder = tmp_path / "artifacts"
    assert (folder / "report.html").read_text() == "<h1>r</h1>"
    data = json.loads((folder / "quality.classification.json").read_text())
    assert data["confusion_matrix"] == {"categories": ["cat", "dog"], "matrix": [[5, 1], [2, 7]]}
    # sklearn's leading inf threshold becomes one more than the highest (JSON holds no inf)
    assert data["roc_curve"]["thresholds"] == [1.5, 0.5, 0.1]
    assert logs.check_logged(active.finish(), str(folder)) == active.finish()


def test_a_real_matplotlib_figure_is_kept_as_png(active, tmp_path):
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    figure, axes = pyplot.subplots()
    axes.plot([1, 2, 3], [1, 4, 9])
    log_figure("curve", figure)
    data = (tmp_path / "artifacts" / "curve.png").read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    assert active.artifacts["curve"]["size"] == len(data)


# -- what the scheduler reads: untrusted ----------------------------------------------------------


@pytest.mark.parametrize("logged", [
    [], {"metrics": {"a": "1"}}, {"metrics": {"a": float("nan")}}, {"metrics": {"a": True}},
    {"metrics": {"bad name": 1}}, {"metrics": [1]}, {"other": {}},
    {"artifacts": {"x": {"kind": "html", "path": "/etc/passwd"}}},
    {"artifacts": {"x": {"kind": "exe", "path": "F/x.html"}}},
    {"artifacts": {"x": {"kind": "html", "path": "F/../../x.html"}}},
    {"artifacts": {"x": {"kind": "html"}}},
])
def test_a_forged_report_is_refused(tmp_path, logged):
    folder = str(tmp_path / "attempt-1")
    text = json.dumps(logged).replace("F/", folder + "/")
    assert isinstance(logs.check_logged(json.loads(text), folder), str)


def test_a_genuine_report_is_kept_with_only_the_known_fields(tmp_path):
    folder = str(tmp_path)
    logged = {"metrics": {"a": 1, "b": 0.5},
              "artifacts": {"r": {"kind": "html", "path": f"{folder}/r.html", "size": 3,
                                  "evil": "x"}}}
    assert logs.check_logged(logged, folder) == {
        "metrics": {"a": 1, "b": 0.5},
        "artifacts": {"r": {"kind": "html", "path": f"{folder}/r.html", "size": 3}}}
    assert logs.check_event("metric", {"name": "a", "value": 1.5}) == ("a", 1.5)
    assert logs.check_event("metric", {"name": "a", "value": math.inf}) is None
    assert logs.check_event("metric", ["a", 1]) is None


# -- the marks, and what the compiler reads ------------------------------------------------


def test_has_metrics_above_or_below_step():
    @has_metrics
    @step
    def above():
        pass

    @step
    @has_metrics
    def below():
        pass

    for marked in (above, below):
        assert marked.func.__kale_has_metrics__ is True
    with pytest.raises(StepDefinitionError, match="decorates steps"):
        has_metrics("train")


def test_artifact_marks_in_the_order_written_and_checks_its_options():
    @artifact(name="first", path="a.html")
    @artifact(name="second", path="b.html")
    @step
    def report():
        pass

    assert report.func.__kale_artifacts__ == (("first", "a.html"), ("second", "b.html"))
    with pytest.raises(InvalidOptionError, match="is empty"):
        artifact(name="", path="a.html")
    with pytest.raises(InvalidOptionError, match="path"):
        artifact(name="ok", path="")
    with pytest.raises(StepDefinitionError, match="two artifacts named 'x'"):
        artifact(name="x", path="a")(artifact(name="x", path="b")(lambda: 0))


def test_the_compiler_reads_the_calls_of_a_steps_source():
    text = '''def train(data):
    from kale.sdk import logging
    log_metric("loss", 1.0)
    logging.log_html("report", "<p>")
    log_figure(name="curve", figure=None)
    log_markdown(f"notes-{data}", "#")
    log_confusion_matrix("quality", [], [])
    log_roc_curve("quality", [], [], [])
'''
    found = logs.declared_logs(text)
    assert found.metrics
    assert found.html == ["report", "curve"] and found.markdown == [None]
    assert found.classification == ["quality"]
    quiet = logs.declared_logs("def f():\n    return 1\n", True, (("page", "p.html"),))
    assert quiet.metrics and quiet.html == ["page"] and not quiet.markdown


def test_import_kale_sdk_stays_light():
    code = ("import sys, kale.sdk, kale.sdk.logging; "
            "print(sorted(m for m in ('kfp', 'numpy', 'matplotlib', 'numbers', 'ast') "
            "if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    heavy = json.loads(result.stdout.replace("'", '"'))
    assert not {"kfp", "numpy", "matplotlib"} & set(heavy)
