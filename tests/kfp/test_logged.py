"""What a step logs, on Kubeflow: its component's Metrics, HTML, Markdown and
ClassificationMetrics artifacts, run under kfp.local, carry the values."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.kfp.test_compiler import compile_script, run_under_kfp_local

# kfp.local runs the steps here, where kfp and their packages are: no pip install per task.
pytestmark = pytest.mark.usefixtures("prepared_image")


pytest.importorskip("kfp")

SCRIPT = '''
from kale.sdk import pipeline, step, has_metrics, artifact
from kale.sdk.logging import (log_metric, log_html, log_markdown, log_figure,
                              log_confusion_matrix, log_roc_curve)


def helper():
    log_metric("from-helper", 5)


@step
def train(rate: float):
    for epoch in range(3):
        log_metric("loss", 1.0 / (epoch + 1))
    log_metric("accuracy", 0.75 + rate)
    log_html("report", "<h1>report</h1>")
    log_markdown("notes", "# notes")
    for name in ("one", "two"):
        log_markdown(f"dynamic-{name}", name)
    log_confusion_matrix("quality", ["cat", "dog"], [[5, 1], [2, 7]])
    log_roc_curve("quality", [0.0, 0.5, 1.0], [0.0, 0.8, 1.0], [1.5, 0.5, 0.1])
    return rate


@has_metrics
@step
def evaluate(rate):
    helper()


@step
@artifact(name="page", path="page.html")
def page(rate):
    with open("page.html", "w") as handle:
        handle.write("<p>page %s</p>" % rate)


@step
def quiet(rate):
    helper()  # no @has_metrics: the log says the UI will not show it


@pipeline(name="logged")
def logged(rate: float = 0.125):
    value = train(rate)
    evaluate(value)
    page(value)
    quiet(value)
'''


def _outputs(root, task):
    (written,) = root.glob(f"logged-*/{task}/executor_output.json")
    return {name: found["artifacts"][0]
            for name, found in json.loads(written.read_text())["artifacts"].items()}


def test_logged_values_become_kubeflow_artifacts(tmp_path):
    package = compile_script(tmp_path, SCRIPT, "logged.yaml")
    components = next(yaml.safe_load_all(package.read_text()))["components"]

    def artifacts(component):
        return {name: spec["artifactType"]["schemaTitle"] for name, spec in
                components[component]["outputDefinitions"]["artifacts"].items()}

    assert artifacts("comp-train") == {
        "kale_metrics": "system.Metrics", "kale_html_report": "system.HTML",
        "kale_markdown_notes": "system.Markdown", "kale_markdown": "system.Markdown",
        "kale_classification_quality": "system.ClassificationMetrics",
        "out_value": "system.Artifact"}
    assert artifacts("comp-evaluate") == {"kale_metrics": "system.Metrics"}
    assert artifacts("comp-page") == {"kale_html_page": "system.HTML"}
    assert "outputDefinitions" not in components["comp-quiet"]

    output = run_under_kfp_local(package, tmp_path)
    root = tmp_path / "root"
    train = _outputs(root, "train")
    # The Metrics artifact's metadata holds the last value of each metric (the KFP UI's view).
    assert train["kale_metrics"]["metadata"] == {"loss": pytest.approx(1 / 3),
                                                 "accuracy": 0.875}
    quality = train["kale_classification_quality"]["metadata"]
    assert quality["confusionMatrix"] == {
        "annotationSpecs": [{"displayName": "cat"}, {"displayName": "dog"}],
        "rows": [{"row": [5, 1]}, {"row": [2, 7]}]}
    assert quality["confidenceMetrics"][1] == {"confidenceThreshold": 0.5, "recall": 0.8,
                                               "falsePositiveRate": 0.5}
    report = train["kale_html_report"]
    assert Path(report["uri"]).read_text() == "<h1>report</h1>"
    assert report["metadata"] == {"kale_names": ["report"]}
    assert Path(train["kale_markdown_notes"]["uri"]).read_text() == "# notes"
    shared = Path(train["kale_markdown"]["uri"]).read_text()
    assert "## dynamic-one\n\none" in shared and "## dynamic-two\n\ntwo" in shared
    assert _outputs(root, "evaluate")["kale_metrics"]["metadata"] == {"from-helper": 5}
    assert Path(_outputs(root, "page")["kale_html_page"]["uri"]).read_text() == "<p>page 0.125</p>"
    # Every metric is printed as name=value, as Katib's StdOut collector reads it.
    for line in ("loss=1.0", "loss=0.5", "accuracy=0.875", "from-helper=5"):
        assert f"{line}\n" in output, output[-3000:]
    assert "step `quiet` logged metrics (from-helper) but its component has no Metrics " \
        "artifact" in output and "mark the step @has_metrics" in output


def test_a_figure_is_an_html_artifact_with_the_png_inline(tmp_path):
    pytest.importorskip("matplotlib")
    package = compile_script(tmp_path, '''
from kale.sdk import pipeline, step
from kale.sdk.logging import log_figure


@step
def plot():
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib import pyplot
    figure, axes = pyplot.subplots()
    axes.plot([0, 1], [1, 0])
    log_figure("curve", figure)


@pipeline(name="logged")
def logged():
    plot()
''', "figure.yaml")
    run_under_kfp_local(package, tmp_path)
    curve = _outputs(tmp_path / "root", "plot")["kale_html_curve"]
    assert Path(curve["uri"]).read_text().startswith('<img alt="curve" src="data:image/png;base64,')
