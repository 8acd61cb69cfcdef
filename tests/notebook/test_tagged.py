"""Tagged notebooks (open-source Kale's tags) as pipelines: its examples run with `kale run`,
compiled with `--kfp --dry-run`, under kfp.local; every tag, metadata field and error."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import nbformat
import pytest
import yaml

from kale.errors import DefinitionError
from kale.notebook.translate import generated_path, load_pipeline

ASSETS = Path(__file__).resolve().parents[1] / "assets" / "kale_examples"


def kale(folder: Path, *arguments: str, **env: str) -> subprocess.CompletedProcess:
    """The `kale` command, as a user runs it in ``folder``."""
    return subprocess.run([sys.executable, "-m", "kale.cli", *arguments], capture_output=True,
                          text=True, cwd=folder, timeout=600,
                          env={**os.environ, "KALE_PROGRESS": "plain", "NO_COLOR": "1", **env})


def example(tmp_path: Path, name: str) -> Path:
    target = tmp_path / name
    shutil.copytree(ASSETS / name, target)
    return target


def last_run(folder: Path) -> dict[str, Any]:
    runs = sorted((folder / ".kale" / "runs").iterdir(), key=lambda p: p.stat().st_mtime)
    return json.loads((runs[-1] / "run.json").read_text())


def write_notebook(folder: Path, cells: list[tuple[list[str], str]], name: str = "nb.ipynb",
                   metadata: dict[str, Any] | None = None, markdown_first: bool = False) -> Path:
    """A notebook of code cells, each (tags, source); cell 1 is markdown when asked."""
    made = [nbformat.v4.new_markdown_cell("# title")] if markdown_first else []
    for tags, source in cells:
        cell = nbformat.v4.new_code_cell(source)
        if tags:
            cell.metadata["tags"] = tags
        made.append(cell)
    notebook = nbformat.v4.new_notebook(cells=made)
    if metadata is not None:
        notebook.metadata["kubeflow_notebook"] = metadata
    path = folder / name
    nbformat.write(notebook, path)
    return path


# -- open-source Kale's examples, run as a user runs them ------------------------------------

def test_candies_sharing_runs_locally_in_prev_order(tmp_path: Path) -> None:
    folder = example(tmp_path, "base")
    result = kale(folder, "run", "candies_sharing.ipynb")
    assert result.returncode == 0, result.stderr
    assert "I got" in result.stdout + result.stderr
    record = last_run(folder)
    assert record["status"] == "succeeded"
    steps = record["steps"]
    assert set(steps) == {"sack", "kid1", "kid2", "kid3"}
    # `prev:sack` passes no value: kid1 still waits for sack (and kid3 for kid1 and kid2).
    assert ["sack", "kid1"] in record["edges"]
    assert steps["kid1"]["attempts"][0]["started"] >= steps["sack"]["attempts"][-1]["ended"]
    # The generated module lives in Kale's folder, not beside the notebook.
    assert (folder / ".kale" / "notebooks" / "candies_sharing.py").is_file()
    assert sorted(p.name for p in folder.iterdir()) == [".kale", "candies_sharing.ipynb"]


def test_parameters_and_metrics_locally(tmp_path: Path) -> None:
    folder = example(tmp_path, "parameters")
    result = kale(folder, "run", "pipeline_parameters_and_metrics.ipynb", "-p", "d1=3",
                  "-p", "strtest=other")
    assert result.returncode == 0, result.stderr
    record = last_run(folder)
    assert record["parameters"]["d1"] == 3 and record["parameters"]["strtest"] == "other"
    shown = kale(folder, "show", record["id"]).stdout
    # Each metric is logged by the last step that has its value, named as Kale names them.
    assert "create-matrix  d1          3" in shown
    assert "sum-matrix     sum-result" in shown
    assert "output rnd_matrix: numpy.ndarray" in shown


def test_titanic_with_its_data_runs_locally(tmp_path: Path) -> None:
    folder = example(tmp_path, "titanic")
    result = kale(folder, "run", "titanic_dataset_ml.ipynb")
    assert result.returncode == 0, result.stderr[-3000:]
    output = result.stdout + result.stderr
    assert "Random Forest" in output
    record = last_run(folder)
    assert len(record["steps"]) == 9 and record["status"] == "succeeded"
    # seaborn is imported by the imports cell, used only by `skip` cells, and not installed:
    # each step imports only what it uses.
    with pytest.raises(ImportError):
        __import__("seaborn")


def test_titanic_compiles_with_its_data_in_the_bundle(tmp_path: Path) -> None:
    folder = example(tmp_path, "titanic")
    result = kale(folder, "run", "titanic_dataset_ml.ipynb", "--kfp", "--dry-run", "-o",
                  "out.yaml", "--bundle-store", str(tmp_path / "store"))
    assert result.returncode == 0, result.stderr
    assert "titanic-ml (9 steps)" in result.stderr
    assert "requirements.txt" in result.stderr  # the notebook folder's requirements
    stored = list((tmp_path / "store").rglob("*"))
    import tarfile

    bundles = [p for p in stored if p.is_file()]
    with tarfile.open(bundles[0]) as archive:
        names = archive.getnames()
    assert any(name.endswith("data/train.csv") for name in names)
    assert not any("/.kale/" in name for name in names)


def test_kale_graph_of_a_notebook(tmp_path: Path) -> None:
    folder = example(tmp_path, "base")
    result = kale(folder, "graph", "candies_sharing.ipynb")
    assert result.returncode == 0, result.stderr
    assert "pipeline candies-sharing" in result.stdout
    assert "CANDIES  int    default 20" in result.stdout


def test_open_source_kales_command_line(tmp_path: Path) -> None:
    folder = example(tmp_path, "parameters")
    result = kale(folder, "--nb", "pipeline_parameters_and_metrics.ipynb", "--pipeline_name",
                  "renamed", "--docker_image", "python:3.12-slim")
    assert result.returncode == 0, result.stderr
    package = next(yaml.safe_load_all((folder / ".kale" / "renamed.yaml").read_text()))
    assert package["pipelineInfo"]["name"] == "renamed"
    images = {executor["container"]["image"]
              for executor in package["deploymentSpec"]["executors"].values()}
    assert images == {"python:3.12-slim"}
    wrong = kale(folder, "--upload_pipeline")
    assert wrong.returncode != 0 and "--nb" in wrong.stderr


# -- tags and metadata --------------------------------------------------------------------------

def test_every_tag_and_metadata_field(tmp_path: Path) -> None:
    path = write_notebook(tmp_path, [
        (["imports"], "import json\n%matplotlib inline"),
        ([], "import os"),  # untagged: still the imports
        (["functions"], "def double(x):\n    return x * FACTOR"),
        (["pipeline-parameters"], "FACTOR = 2\nNAME = 'n'\nRATE = 0.5\nON = True"),
        (["block:load", "limit:nvidia.com/gpu:1", "limit:memory:1Gi", "label:team:ml",
          "annotation:example.com/owner:me", "cache:enabled"], "data = [1, 2]"),
        ([], "!echo shell escapes are left out\ntotal = sum(data)"),
        (["skip"], "raise RuntimeError('never runs')"),
        (["step:train", "prev:load", "cache:disabled"], "model = double(total)"),
        (["step:report", "prev:train", "prev:load"], "print(json.dumps(model), NAME)"),
        (["pipeline-metrics"], "print(model)\ntotal"),
    ], metadata={"pipeline_name": "tagged", "pipeline_description": "all of them",
                 "experiment": {"id": "", "name": "from-experiment"}, "docker_image": "img:1",
                 "steps_defaults": ["label:origin:notebook", "limit:cpu:1"], "timeout": 600,
                 "volumes": [], "katib_run": False, "autosnapshot": True})
    function, _ = load_pipeline(str(path))
    graph = function.graph
    assert graph.options.name == "tagged" and graph.options.experiment == "from-experiment"
    assert graph.options.description == "all of them" and graph.options.timeout == 600
    assert [p.name for p in graph.parameters] == ["FACTOR", "NAME", "RATE", "ON"]
    steps = {step.name: step for step in graph.steps}
    load = steps["load"].options
    assert dict(load.limits) == {"nvidia.com/gpu": "1", "memory": "1Gi", "cpu": "1"}
    assert dict(load.labels) == {"team": "ml", "origin": "notebook"}
    assert dict(load.annotations) == {"example.com/owner": "me"}
    assert load.cache is True and steps["train"].options.cache is False
    assert steps["train"].outputs == ("model",)
    assert {a.name for a in steps["train"].arguments} == {"FACTOR", "total"}
    assert {a.name for a in steps["report"].arguments} == {"NAME", "model"}
    text = Path(generated_path(str(path))).read_text()
    assert "# %matplotlib inline" in text and "# !echo" in text
    assert "never runs" not in text
    assert "log_metric('model', namespace['model'])" in text  # in report, the last with it
    assert "log_metric('total', namespace['total'])" in text
    result = kale(tmp_path, "run", "nb.ipynb", "-p", "FACTOR=5")
    assert result.returncode == 0, result.stderr
    assert '15 n' in result.stdout + result.stderr  # sum([1, 2]) * FACTOR
    compiled = kale(tmp_path, "run", "nb.ipynb", "--kfp", "-D", "-o", "out.yaml")
    assert compiled.returncode == 0, compiled.stderr
    package = next(yaml.safe_load_all((tmp_path / "out.yaml").read_text()))
    images = {executor["container"]["image"]
              for executor in package["deploymentSpec"]["executors"].values()}
    assert images == {"img:1"}  # docker_image of the metadata


def test_display_works_without_a_kernel(tmp_path: Path) -> None:
    write_notebook(tmp_path, [(["step:show"], "display({'a': 1})")])
    result = kale(tmp_path, "run", "nb.ipynb")
    assert result.returncode == 0, result.stderr
    assert "{'a': 1}" in result.stdout + result.stderr


def test_a_failing_cell_is_named_in_the_traceback(tmp_path: Path) -> None:
    write_notebook(tmp_path, [(["step:first"], "x = 1"),
                              (["step:second", "prev:first"], "y = x + 1\nraise ValueError(y)")],
                   markdown_first=True)
    result = kale(tmp_path, "run", "nb.ipynb")
    assert result.returncode == 1
    assert 'File "nb.ipynb, cell 3", line 2, in <module>' in result.stderr
    assert "raise ValueError(y)" in result.stderr


def test_unknown_parameter_on_the_command_line(tmp_path: Path) -> None:
    folder = example(tmp_path, "base")
    result = kale(folder, "run", "candies_sharing.ipynb", "-p", "CANDY=3")
    assert result.returncode == 2
    assert "no pipeline parameter 'CANDY'" in result.stderr and "did you mean 'CANDIES'" in \
        result.stderr


# -- errors: all at once, each with its cell, line and fix ------------------------------------

def test_every_mistake_is_reported_at_once_with_cell_and_line(tmp_path: Path) -> None:
    path = write_notebook(tmp_path, [
        (["step:a", "prev:nowhere"], "x = 1"),
        (["step:b", "prev:c"], "y = 2"),
        (["step:c", "prev:b"], "z = 3"),
        (["step:d", "prev:a"], "w = x + q\nv = y"),
        (["step:e", "prev:a"], "def broken(:\n  pass"),
        (["step:f", "stepp:g"], "u = 1"),
    ], markdown_first=True)
    with pytest.raises(DefinitionError) as caught:
        load_pipeline(str(path))
    text = caught.value.render()
    assert "problems in nb.ipynb" in text
    assert "`prev:nowhere`" in text and "nb.ipynb, cell 2, line 1" in text  # unknown prev
    assert "make a cycle: b <- c <- b" in text or "make a cycle: c <- b <- c" in text
    assert "cell 6 is not valid Python" in text and "nb.ipynb, cell 6, line 1" in text
    assert "tag `stepp:g`, which Kale does not know" in text and "did you mean `step:`" in text
    assert "uses `q`, which no cell before it defines" in text
    assert "nb.ipynb, cell 5, line 1" in text
    assert "`y`, which step `b` defines, but `b` does not come before `d`" in text
    assert "nb.ipynb, cell 5, line 2" in text and "add the tag `prev:b`" in text
    assert text.count("fix:") >= 6


@pytest.mark.parametrize(("cells", "metadata", "expected"), [
    ([(["step:a"], "x = 1"), (["pipeline-metrics"], "x"), (["step:b", "prev:a"], "y = x")],
     None, "a step comes after the `pipeline-metrics` cell"),
    ([(["pipeline-parameters"], "x = [i for i in range(3)]"), (["step:a"], "y = x")], None,
     "pipeline parameter `x` is not given a plain value"),
    ([(["pipeline-metrics"], "print(x + 1)"), (["step:a"], "x = 1")], None,
     "holds only the names of variables"),
    ([(["step:a"], "x = 1")], {"volumes": [{"name": "v", "mount_point": "/data"}]},
     "mounts volumes"),
    ([(["step:a", "image:gpu:1"], "x = 1")], None, "[tool.kale.steps.a] image"),
    ([(["prev:a"], "x = 1")], None, "has a `prev:` tag but no `step:` tag"),
    ([(["step:a"], "print(x)\nx = 1")], None, "uses `x` before it defines it"),
    ([(["imports"], "import os")], None, "has no cell tagged `step:NAME`"),
])
def test_each_mistake(tmp_path: Path, cells: list[tuple[list[str], str]],
                      metadata: dict[str, Any] | None, expected: str) -> None:
    path = write_notebook(tmp_path, cells, metadata=metadata)
    with pytest.raises(DefinitionError) as caught:
        load_pipeline(str(path))
    assert expected in caught.value.render()
    assert "fix:" in caught.value.render()


def test_kale_run_reports_mistakes_before_anything_runs(tmp_path: Path) -> None:
    write_notebook(tmp_path, [(["step:a"], "x = y")])
    result = kale(tmp_path, "run", "nb.ipynb")
    assert result.returncode == 2
    assert "--> nb.ipynb, cell 1, line 1" in result.stderr
    assert not (tmp_path / ".kale" / "runs").exists()


# -- kfp.local ------------------------------------------------------------------------------

@pytest.mark.slow
def test_compiled_notebook_runs_under_kfp_local(tmp_path: Path, prepared_image: None) -> None:
    from tests.kfp.test_compiler import run_under_kfp_local

    folder = example(tmp_path, "parameters")
    result = kale(folder, "run", "pipeline_parameters_and_metrics.ipynb", "--kfp",
                  "--dry-run", "-o", str(tmp_path / "package.yaml"))
    assert result.returncode == 0, result.stderr
    output = run_under_kfp_local(tmp_path / "package.yaml", tmp_path)
    assert "sum-result=" in output and "d1=5" in output


def test_kale_nb_uploads_or_runs_against_a_kubeflow_api(tmp_path: Path) -> None:
    from tests.kfp.fake_kfp import FakeKubeflow

    folder = example(tmp_path, "base")
    with FakeKubeflow() as kubeflow:
        uploaded = kale(folder, "--nb", "candies_sharing.ipynb", "--upload_pipeline",
                        "--kfp_host", kubeflow.host)
        assert uploaded.returncode == 0, uploaded.stderr
        assert ("POST", "/pipelines/upload") in kubeflow.calls()
        assert ("POST", "/runs") not in kubeflow.calls()  # uploaded only
        started = kale(folder, "--nb", "candies_sharing.ipynb", "--run_pipeline",
                       "--kfp_host", kubeflow.host, "--experiment_name", "kids")
        assert started.returncode == 0, started.stderr
        assert ("POST", "/runs") in kubeflow.calls()
        experiment = next(json.loads(r["body"]) for r in kubeflow.requests
                          if r["path"].endswith("/experiments") and r["method"] == "POST")
        assert experiment["display_name"] == "kids"
        run = kale(folder, "run", "candies_sharing.ipynb", "--kfp", "--kfp-host",
                   kubeflow.host, "-p", "CANDIES=7")
        assert run.returncode == 0, run.stderr
        posted = [json.loads(r["body"]) for r in kubeflow.requests
                  if r["path"].endswith("/runs") and r["method"] == "POST"]
        assert posted[-1]["runtime_config"]["parameters"] == {"CANDIES": 7}


# -- katib_run: the notebook's Katib search as a study -----------------------------------------

KATIB = {
    "experiment_name": "quadratic",
    "katib_run": True,
    "katib_metadata": {
        "parameters": [
            {"name": "x", "parameterType": "double", "feasibleSpace": {"min": "0", "max": "4"}},
            {"name": "y", "parameterType": "int",
             "feasibleSpace": {"min": "0", "max": "2", "step": "1"}},
            {"name": "shape", "parameterType": "categorical",
             "feasibleSpace": {"list": ["flat", "bowl"]}},
        ],
        "objective": {"type": "minimize", "objectiveMetricName": "loss", "goal": 0.01,
                      "additionalMetricNames": []},
        "algorithm": {"algorithmName": "random"},
        "maxTrialCount": 6, "parallelTrialCount": 2, "maxFailedTrialCount": 1,
    },
}

QUADRATIC = [
    (["pipeline-parameters"], "x = 1.0\ny = 1\nshape = 'bowl'"),
    (["step:objective"], "loss = (x - 3) ** 2 + (y - 1) ** 2 + (0 if shape == 'bowl' else 1)"),
    (["pipeline-metrics"], "loss"),
]


def test_katib_run_tunes_the_notebook_locally(tmp_path: Path) -> None:
    write_notebook(tmp_path, QUADRATIC, metadata=KATIB)
    result = kale(tmp_path, "run", "nb.ipynb")
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout + result.stderr
    assert "katib_run is true in nb.ipynb's metadata: tuning x, y, shape for the minimize " \
        "of `loss`" in out
    assert "a local study runs all its trials" in out  # the goal has no local counterpart
    studies = list((tmp_path / ".kale" / "studies").glob("*/study.json"))
    assert len(studies) == 1
    study = json.loads(studies[0].read_text())
    assert len(study["trials"]) == 6
    values = [trial["value"] for trial in study["trials"] if trial.get("value") is not None]
    assert len(values) == 6 and all(value >= 0 for value in values)
    # The list's strings are the parameter's type; x stays in its range.
    for trial in study["trials"]:
        assert trial["parameters"]["shape"] in ("flat", "bowl")
        assert 0 <= trial["parameters"]["x"] <= 4 and trial["parameters"]["y"] in (0, 1, 2)


def test_katib_run_with_kfp_dry_run_writes_the_experiment(tmp_path: Path) -> None:
    write_notebook(tmp_path, QUADRATIC, metadata=KATIB)
    result = kale(tmp_path, "run", "nb.ipynb", "--kfp", "--dry-run", "-o", "q.yaml")
    assert result.returncode == 0, result.stdout + result.stderr
    experiment = yaml.safe_load((tmp_path / "q.katib.yaml").read_text())
    assert experiment["kind"] == "Experiment"
    spec = experiment["spec"]
    assert spec["objective"]["objectiveMetricName"] == "loss"
    assert spec["objective"]["type"] == "minimize"
    assert spec["algorithm"]["algorithmName"] == "random"
    assert (spec["maxTrialCount"], spec["parallelTrialCount"]) == (6, 2)
    assert {p["name"]: p["parameterType"] for p in spec["parameters"]} == {
        "x": "double", "y": "int", "shape": "categorical"}


@pytest.mark.parametrize(("change", "expected"), [
    (lambda k: k["parameters"].append({"name": "z", "parameterType": "int",
                                       "feasibleSpace": {"min": "0", "max": "1"}}),
     "katib_metadata tunes `z`, which is not a pipeline parameter"),
    (lambda k: k["parameters"][0]["feasibleSpace"].pop("max"),
     "katib_metadata parameter `x` cannot be read: `max` is missing"),
    (lambda k: k["objective"].pop("objectiveMetricName"), "has no objective metric"),
    (lambda k: k.update(maxTrialCount="many"), "`maxTrialCount` is 'many', not a whole number"),
    (lambda k: k["objective"].update(objectiveMetricName="accuracy"), "accuracy"),
])
def test_katib_metadata_mistakes_name_the_metadata(tmp_path: Path, change: Any,
                                                   expected: str) -> None:
    metadata = json.loads(json.dumps(KATIB))
    change(metadata["katib_metadata"])
    write_notebook(tmp_path, QUADRATIC, metadata=metadata)
    result = kale(tmp_path, "run", "nb.ipynb")
    assert result.returncode != 0
    assert expected in result.stderr, result.stderr
    assert "nb.ipynb, metadata kubeflow_notebook.katib_metadata" in result.stderr
    assert "fix:" in result.stderr
    assert not (tmp_path / ".kale" / "runs").exists()  # nothing ran
