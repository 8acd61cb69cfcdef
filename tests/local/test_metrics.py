"""Metrics and artifacts in local runs, end to end: real scripts run as a user runs them, the run
record, live progress, `kale show`, `kale runs` and `kale compare`."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.test_cli import kale

TRAIN = '''
from kale.sdk import has_metrics, artifact
from kale.sdk.logging import log_metric, log_html, log_markdown, log_confusion_matrix


def report_helper(value):
    log_metric("helper-score", value)


@step
@has_metrics
def train(rate: float):
    for epoch in range(3):
        log_metric("loss", 1.0 / (epoch + 1) + rate)
    log_metric("accuracy", 0.9 - rate)
    report_helper(7)
    log_html("report", "<h1>rate %s</h1>" % rate)
    log_markdown("notes", "# notes")
    log_confusion_matrix("quality", ["cat", "dog"], [[5, 1], [2, 7]])
    return {"rate": rate, "epochs": 3}


@artifact(name="page", path="out/page.html")
@step
def page(summary):
    import os
    os.makedirs("out", exist_ok=True)
    with open("out/page.html", "w") as handle:
        handle.write("<p>%s</p>" % summary["epochs"])


@pipeline(name="tune")
def tune(rate: float = 0.1):
    summary = train(rate)
    page(summary)


if __name__ == "__main__":
    import sys
    tune(rate=float(sys.argv[1]) if len(sys.argv) > 1 else 0.1)
'''


def _attempt(record, step, number=1):
    return record["steps"][step]["attempts"][number - 1]


def test_metrics_and_artifacts_are_in_the_record_and_shown_live(script):
    result = script.run(TRAIN)
    assert result.returncode == 0, result.stderr + result.stdout
    record = script.record()
    train = _attempt(record, "train")
    assert train["metrics"] == {"loss": pytest.approx(1 / 3 + 0.1), "accuracy": 0.8,
                                "helper-score": 7}
    artifacts = train["artifacts"]
    assert {name: entry["kind"] for name, entry in artifacts.items()} == {
        "report": "html", "notes": "markdown", "quality": "classification"}
    assert Path(artifacts["report"]["path"]).read_text() == "<h1>rate 0.1</h1>"
    assert "/steps/train/artifacts/attempt-1/" in artifacts["report"]["path"]
    page = _attempt(record, "page")["artifacts"]["page"]
    assert page["kind"] == "file" and page["source"] == "out/page.html"
    assert Path(page["path"]).read_text() == "<p>3</p>"  # a copy, kept with the run
    # Live: each metric as it arrives (the first value at once), then the final ones.
    out = result.stdout
    assert "train ◆ loss = 1.1\n" in out
    assert "train ◆ accuracy = 0.8\n" in out
    assert "succeeded  in " in out and "loss=0.433333, accuracy=0.8, helper-score=7" in out
    # Locally the values travel as events and the record: not as name=value in the log.
    assert "loss=" not in Path(train["log"]).read_text()


def test_show_runs_and_compare(script):
    for rate in ("0.1", "0.2"):
        path = script.write(TRAIN)
        import subprocess
        import sys

        done = subprocess.run([sys.executable, str(path), rate], capture_output=True,
                              text=True, cwd=script.root, env=script.env())
        assert done.returncode == 0, done.stderr
    home = str(script.home)
    records = sorted(script.records(), key=lambda run: run["started"])
    first, second = (run["id"] for run in records)

    shown = kale("show", first[:8], "--home", home)
    assert shown.returncode == 0, shown.stderr
    text = shown.stdout
    assert "metrics\n" in text and "accuracy" in text and "0.8" in text
    assert "artifacts\n" in text and "train report (html)" in text
    assert "page page (html, from out/page.html)" in text
    assert "= {'rate': 0.1, 'epochs': 3}" in text  # a small output's value

    listed = kale("runs", "--home", home, "--pipeline", "tune")
    assert listed.returncode == 0, listed.stderr
    header, _, newest, oldest = listed.stdout.splitlines()[:4]
    assert header.split()[-4:] == ["rate", "loss", "accuracy", "helper-score"]
    assert newest.split()[-4:] == ["0.2", "0.533333", "0.7", "7"]
    assert oldest.split()[-4:] == ["0.1", "0.433333", "0.8", "7"]
    nothing = kale("runs", "--home", home, "--pipeline", "other")
    assert "no runs of pipeline 'other'" in nothing.stdout

    compared = kale("compare", first[:8], second[:8], "--home", home)
    assert compared.returncode == 0, compared.stderr
    rows = {line.split()[0] + " " + line.split()[1]: line.split()
            for line in compared.stdout.splitlines()[2:] if len(line.split()) > 2}
    assert rows["parameter rate"][2:] == ["0.1", "0.2", "*"]
    assert rows["metric accuracy"][2:] == ["0.8", "0.7", "*"]
    assert rows["metric helper-score"][2:] == ["7", "7"]  # alike: not marked
    assert "* differs between the runs" in compared.stdout
    only = kale("compare", first[:8], second[:8], "--home", home, "--diff")
    assert "helper-score" not in only.stdout and "1 parameter and metric row" in only.stdout
    alone = kale("compare", first[:8], "--home", home)
    assert alone.returncode != 0 and "two runs or more" in alone.stderr


def test_a_bad_metric_fails_the_step_naming_it_and_the_fix(script):
    result = script.run('''
from kale.sdk.logging import log_metric

@step
def train():
    log_metric("loss", float("nan"))

@pipeline
def p():
    train()

p()
''')
    assert result.returncode == 1
    assert "step `train` raised LoggingError: log_metric('loss', nan) in step `train`: the " \
        "value is not a finite number" in result.stderr
    assert "fix: log a finite number" in result.stderr


def test_metrics_are_kept_per_attempt_when_a_step_is_retried(script):
    result = script.run('''
import os
from kale.sdk.logging import log_metric

@step(retry_count=1, retry_interval=0)
def flaky():
    first = not os.path.exists("tried")
    open("tried", "w").close()
    log_metric("attempt-score", 1 if first else 2)
    if first:
        raise RuntimeError("once")

@pipeline
def p():
    flaky()

p()
''')
    assert result.returncode == 0, result.stderr
    record = script.record()
    assert [a["metrics"] for a in record["steps"]["flaky"]["attempts"]] == [
        {"attempt-score": 1}, {"attempt-score": 2}]
    shown = kale("show", record["id"][:8], "--home", str(script.home))
    assert "flaky (attempt 2)  attempt-score  2" in shown.stdout


def test_a_missing_artifact_file_fails_the_step_naming_it(script):
    result = script.run('''
from kale.sdk import artifact

@artifact(name="page", path="page.html")
@step
def report():
    return 1

@pipeline
def p():
    report()

p()
''')
    assert result.returncode == 1
    assert "step `report` did not write page.html, its artifact 'page'" in result.stderr
    assert "fix: write the HTML file at page.html" in result.stderr


def test_a_figure_is_kept_as_png(script):
    pytest.importorskip("matplotlib")
    result = script.run('''
from kale.sdk.logging import log_figure

@step
def plot():
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib import pyplot
    figure, axes = pyplot.subplots()
    axes.plot([0, 1], [1, 0])
    log_figure("curve", figure)

@pipeline
def p():
    plot()

p()
''')
    assert result.returncode == 0, result.stderr
    entry = _attempt(script.record(), "plot")["artifacts"]["curve"]
    assert entry["kind"] == "figure"
    assert Path(entry["path"]).read_bytes()[:4] == b"\x89PNG"


def test_a_step_that_forges_its_report_fails(script):
    result = script.run('''
@step
def sneaky():
    from kale import logs
    log = logs._active
    log.artifacts["x"] = {"kind": "html", "path": "/etc/passwd", "size": 1}

@pipeline
def p():
    sneaky()

p()
''')
    assert result.returncode == 1
    assert "left a result Kale did not write: it points artifact 'x' at /etc/passwd" in \
        result.stderr
    assert _attempt(script.record(), "sneaky")["artifacts"] == {}  # named in the error only
