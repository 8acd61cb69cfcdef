"""The examples, run as a user runs them: ``python examples/.../pipeline.py`` from elsewhere."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def run(script: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True,
                          cwd=cwd)


def test_ml_experiment_parses_to_the_seed_dag(tmp_path):
    result = run(EXAMPLES / "ml_experiment" / "pipeline.py", "20240101", "50", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert out.startswith("pipeline model-training\n")
    assert "experiment: project-phoenix" in out
    assert "ts     str    default '19990312'  (this run: '20240101')" in out
    assert "iters  int    default 10  (this run: 50)" in out
    assert "   1  process   process(timestamp=ts) -> train_data, validate_data" in out
    assert ("   2  validate  validate(train_data=process.train_data, "
            "validate_data=process.validate_data) -> train_valid, validate_valid") in out
    assert ("   3  train     train(train_data=validate.train_valid, "
            "validate_data=validate.validate_valid, training_iterations=iters)") in out
    assert "timeout 10m · retries 2 every 2s x2" in out


def test_diamond_runs_its_branches_on_one_level(tmp_path):
    result = run(EXAMPLES / "diamond" / "pipeline.py", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    levels = [line.split()[0] for line in lines if line.startswith("   ")
              and line.split()[0].isdigit()]
    assert levels == ["1", "2", "2", "3"]
    assert any("compare(res1=train-and-predict-random-forest.res1, "
               "res2=train-and-predict-svm.res2)" in line for line in lines)


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
