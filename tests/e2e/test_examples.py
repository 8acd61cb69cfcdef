"""The examples, run as a user runs them: ``python examples/.../pipeline.py`` from elsewhere."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def run(script: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "KALE_HOME": str(cwd / "kale-home"), "KALE_PROGRESS": "plain"}
    return subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True,
                          cwd=cwd, env=env)


def only_run(home: Path) -> dict:
    records = list((home / "runs").glob("*/run.json"))
    assert len(records) == 1
    return json.loads(records[0].read_text())


def test_ml_experiment_runs_with_its_local_package_and_settings(tmp_path):
    result = run(EXAMPLES / "ml_experiment" / "pipeline.py", "20240101", "50", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert re.search(r"^  train +│ validation accuracy after 50 iterations: 0\.9", result.stdout,
                     re.MULTILINE)
    record = only_run(tmp_path / "kale-home")
    assert record["status"] == "succeeded"
    assert record["pipeline"] == "model-training"
    assert record["parameters"] == {"ts": "20240101", "iters": 50}
    assert list(record["steps"]) == ["process", "validate", "train"]
    assert set(record["steps"]["process"]["outputs"]) == {"train_data", "validate_data"}
    accuracy = record["steps"]["train"]["outputs"]["return"]
    assert json.loads(Path(accuracy["path"]).read_text()) >= 0.9


def test_diamond_runs_both_branches(tmp_path):
    result = run(EXAMPLES / "diamond" / "pipeline.py", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert re.search(r"^  compare +│ best: random forest$", result.stdout, re.MULTILINE)
    record = only_run(tmp_path / "kale-home")
    assert all(step["status"] == "succeeded" for step in record["steps"].values())


def test_example_helpers_work_as_plain_functions(monkeypatch):
    """The steps are plain functions outside a pipeline: the example's logic really works."""
    root = EXAMPLES / "ml_experiment"
    monkeypatch.chdir(root)
    monkeypatch.syspath_prepend(str(root))
    import importlib.util

    spec = importlib.util.spec_from_file_location("ml_example", root / "pipeline.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    train_rows, validate_rows = module.process("19990312")
    train_rows, validate_rows = module.validate(train_rows, validate_rows)
    assert len(train_rows) == 300 and len(validate_rows) == 100
    assert module.train(train_rows, validate_rows, 50) >= 0.7

    spec = importlib.util.spec_from_file_location("diamond_example",
                                                  EXAMPLES / "diamond" / "pipeline.py")
    diamond = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(diamond)
    data = diamond.get_data()
    forest = diamond.train_and_predict_random_forest(data)
    svm = diamond.train_and_predict_svm(data)
    assert forest["accuracy"] > svm["accuracy"]  # the data is not linearly separable
    assert diamond.compare(forest, svm) == forest


def test_example_graphs_have_the_seed_structure(monkeypatch):
    import importlib.util

    def graph_of(folder: str):
        path = EXAMPLES / folder / "pipeline.py"
        monkeypatch.syspath_prepend(str(path.parent))
        spec = importlib.util.spec_from_file_location(f"{folder}_structure", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        pipelines = [v for v in vars(module).values() if type(v).__name__ == "PipelineFunction"]
        return pipelines[0].graph

    ml = graph_of("ml_experiment")
    assert [(p.name, p.type, p.default) for p in ml.parameters] == [
        ("ts", "str", "19990312"), ("iters", "int", 10)]
    assert [(e.source, e.target, e.variable, e.argument, e.index) for e in ml.edges] == [
        ("process", "validate", "train_data", "train_data", 0),
        ("process", "validate", "validate_data", "validate_data", 1),
        ("validate", "train", "train_valid", "train_data", 0),
        ("validate", "train", "validate_valid", "validate_data", 1),
    ]
    assert ml.step("process").options.retry_count == 2
    assert ml.step("train").options.timeout == 600  # from steps_defaults
    assert ml.options.experiment == "project-phoenix"

    diamond = graph_of("diamond")
    assert diamond.levels == (
        ("get-data",),
        ("train-and-predict-random-forest", "train-and-predict-svm"),
        ("compare",),
    )
    assert diamond.upstream("compare") == {"train-and-predict-random-forest",
                                           "train-and-predict-svm"}


def test_sweep_fans_out_collects_in_order_and_branches(tmp_path):
    result = run(EXAMPLES / "sweep" / "pipeline.py", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "outcome: published k=9" in result.stdout
    record = only_run(tmp_path / "kale-home")
    assert [name for name in record["steps"] if name.startswith("evaluate")] == [
        f"evaluate[{i}]" for i in range(5)]
    assert record["steps"]["needs-work"]["by_condition"]
    assert record["status"] == "succeeded"
    # The collected scores reach `choose` in the order of `ks`.
    lines = [line for line in result.stdout.splitlines() if "scores:" in line]
    assert lines and "{1: " in lines[0] and lines[0].index("1:") < lines[0].index("15:")
