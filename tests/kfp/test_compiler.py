"""Compiling to a KFP v2 package, checked with kfp itself, and run end to end under kfp.local."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytest.importorskip("kfp")

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

# kfp.local runs the steps here, where kfp and their packages are: no pip install per task.
pytestmark = pytest.mark.usefixtures("prepared_image")



def run_under_kfp_local(package: Path, folder: Path, raise_on_error: bool = True,
                        **env: str) -> str:
    """Run a compiled package with KFP's own local runner, from ``folder``; its output."""
    code = ("from kfp import local, components\n"
            f"local.init(runner=local.SubprocessRunner(use_venv=False), "
            f"pipeline_root={str(folder / 'root')!r}, raise_on_error={raise_on_error})\n"
            f"components.load_component_from_file({str(package)!r})()\n")
    # From a folder of its own: a step must never find the project through the working directory.
    elsewhere = folder / "kfp-local-cwd"
    elsewhere.mkdir(exist_ok=True)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=elsewhere, timeout=600, env={**os.environ, **env})
    output = result.stdout + result.stderr
    if raise_on_error:
        assert result.returncode == 0, output[-3000:]
    return output


def run_compile(folder: Path, text: str, package: str = "out.yaml", **environment: str
                ) -> subprocess.CompletedProcess:
    """``kale compile flow.py -o PACKAGE`` on a script with this text, as a user runs it."""
    (folder / "flow.py").write_text(text)
    return subprocess.run([sys.executable, "-m", "kale.cli", "compile", "flow.py", "-o",
                           package], capture_output=True, text=True, cwd=folder,
                          env={**os.environ, **environment})


def compile_script(folder: Path, text: str, package: str, **environment: str) -> Path:
    compiled = run_compile(folder, text, package, **environment)
    assert compiled.returncode == 0, compiled.stderr
    return folder / package


def compile_example(folder: str, output: Path, *flags: str) -> subprocess.CompletedProcess:
    script = EXAMPLES / folder / "pipeline.py"
    return subprocess.run([sys.executable, str(script), "--kfp", "--dry-run", "-o", str(output),
                           *flags], capture_output=True, text=True, cwd=output.parent,
                          env={**os.environ, "KALE_HOME": str(output.parent / "home")})


@pytest.fixture(scope="module")
def ml_package(tmp_path_factory) -> Path:
    output = tmp_path_factory.mktemp("compiled") / "ml.yaml"
    result = compile_example("ml_experiment", output)
    assert result.returncode == 0, result.stderr
    assert "kale: compiled pipeline model-training (3 steps)" in result.stderr
    # The example imports only the standard library and its own local_package.
    assert f"image python:{sys.version_info.major}.{sys.version_info.minor}; packages (inferred" \
        in result.stderr and "): none" in result.stderr
    return output


def test_the_package_loads_with_kfp_and_carries_the_options(ml_package):
    from kfp import components

    component = components.load_component_from_file(str(ml_package))
    assert component.name == "model-training"
    documents = list(yaml.safe_load_all(ml_package.read_text()))
    spec = documents[0]
    parameters = spec["root"]["inputDefinitions"]["parameters"]
    assert parameters["ts"] == {"defaultValue": "19990312", "isOptional": True,
                                "parameterType": "STRING"}
    assert parameters["iters"]["parameterType"] == "NUMBER_INTEGER"
    assert parameters["iters"]["defaultValue"] == 10
    tasks = spec["root"]["dag"]["tasks"]
    # The bundle travels inline in 64 KB pieces: how many depends on Kale's own size.
    assert {name for name in tasks if not name.startswith("kale-bundle-part-")} == {
        "kale-bundle", "process", "validate", "train"}
    retry = tasks["process"]["retryPolicy"]
    assert retry["maxRetryCount"] == 2 and retry["backoffDuration"] == "2s"
    assert retry["backoffFactor"] == 2.0
    # Kale's cap is per wait; Argo reads KFP's as a window: it covers every attempt.
    assert int(retry["backoffMaxDuration"].rstrip("s")) >= 3 * 600
    assert tasks["train"]["taskInfo"]["name"] == "train"
    assert tasks["validate"]["dependentTasks"] == ["kale-bundle", "process"]
    platform = next(d for d in documents if d and "platforms" in d)
    kubernetes = platform["platforms"]["kubernetes"]
    train_config = next(config for name, config in
                        kubernetes["deploymentSpec"]["executors"].items() if "train" in name)
    assert train_config["podMetadata"]["labels"] == {"team": "phoenix"}
    assert int(train_config["activeDeadlineSeconds"]) == 600 + 900  # timeout + setup allowance
    executors = spec["deploymentSpec"]["executors"]
    train = next(e for name, e in executors.items() if "train" in name)
    assert train["container"]["resources"]["resourceMemoryLimit"] == "1Gi"


def test_the_pipeline_timeout_becomes_the_run_deadline(tmp_path):
    (tmp_path / "flow.py").write_text(
        "from kale.sdk import pipeline, step\n\n"
        "@step\ndef s():\n    return 1\n\n"
        "@pipeline(name='deadline', timeout='1h')\ndef p():\n    s()\n")
    result = subprocess.run([sys.executable, "-m", "kale.cli", "compile", "flow.py", "-o",
                             "out.yaml"], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    text = (tmp_path / "out.yaml").read_text()
    assert "activeDeadlineSeconds: 3600" in text


def test_the_package_runs_under_kfp_local_from_elsewhere_like_the_local_run(ml_package,
                                                                           tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    code = (
        "from kfp import local, components\n"
        f"local.init(runner=local.SubprocessRunner(use_venv=False), "
        f"pipeline_root={str(tmp_path / 'root')!r})\n"
        f"pipeline = components.load_component_from_file({str(ml_package)!r})\n"
        "pipeline(ts='20240101', iters=50)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=elsewhere, timeout=600)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert "validation accuracy after 50 iterations: 0.960" in output
    local = subprocess.run([sys.executable, str(EXAMPLES / "ml_experiment" / "pipeline.py"),
                            "20240101", "50"], capture_output=True, text=True, cwd=elsewhere,
                           env={**os.environ, "KALE_HOME": str(tmp_path / "home"),
                                "KALE_PROGRESS": "plain"})
    assert "validation accuracy after 50 iterations: 0.960" in local.stdout


def test_dry_run_without_kfp_is_the_scripts_own(tmp_path):
    # Without --kfp only --parallelism is Kale's: the script gets --dry-run and runs locally.
    script = EXAMPLES / "diamond" / "pipeline.py"
    result = subprocess.run([sys.executable, str(script), "--dry-run"], capture_output=True,
                            text=True, cwd=tmp_path,
                            env={**os.environ, "KALE_HOME": str(tmp_path / "home"),
                                 "KALE_PROGRESS": "plain"})
    assert result.returncode == 0, result.stderr
    assert "best:" in result.stdout
    assert not list(tmp_path.glob("*.yaml"))


def test_macros_are_resolved_inside_the_steps(tmp_path):
    package = compile_script(tmp_path, (
        "from kale.sdk import pipeline, step\n\n"
        "@step\ndef show(tag):\n    print('TAG', tag)\n\n"
        "@pipeline(name='macros')\ndef p(tag='run-[[RunUUID]]-[[CurrentTime.2006]]'):\n"
        "    show(tag)\n"), "m.yaml")
    output = run_under_kfp_local(package, tmp_path)
    import datetime
    import re

    year = datetime.datetime.now(datetime.timezone.utc).year
    assert re.search(rf"TAG run-[0-9a-f-]+-{year}\b", output), output[-2000:]


def test_a_failing_step_fails_its_kubeflow_task_with_the_user_traceback(tmp_path):
    package = compile_script(tmp_path, (
        "from kale.sdk import pipeline, step\n\n"
        "@step\ndef boom(n):\n    raise ValueError(f'bad {n}')\n\n"
        "@pipeline(name='failing')\ndef p(n=3):\n    boom(n)\n"), "f.yaml")
    output = run_under_kfp_local(package, tmp_path, raise_on_error=False)
    assert "Kale: step `boom` raised ValueError: bad 3" in output, output[-2000:]
    assert 'flow.py", line 5, in boom' in output
    assert "FAILURE" in output


VALUES_SCRIPT = (
    "from kale.sdk import pipeline, step\n\n"
    "@step\ndef show(label, value):\n    print('VALUE', label, repr(value))\n\n"
    "@pipeline(name='values')\n"
    "def p(body='x', sizes=[64, 32], config={'a': {'b': [1, 'n']}}, rates=[0.5, 1],\n"
    "      order={'zeta': 1, 'alpha': 2.5, 'mid': {'b': 1, 'a': [2, 3.5]}}, tag='[[Index]]'):\n"
    "    show('none', None)\n"
    "    show('literal', '[[Index]]')\n"
    "    show('tag', tag)\n"
    "    show('order', order)\n"
    "    show('nested', [None, (1, (2, 3)), {'k': (4,)}])\n"
    "    show('body', body)\n"
    "    show('sizes', sizes)\n"
    "    show('config', config)\n"
    "    show('rates', rates)\n"
)


def test_constants_and_parameters_arrive_as_in_a_local_run(tmp_path):
    package = compile_script(tmp_path, VALUES_SCRIPT, "v.yaml")
    output = run_under_kfp_local(package, tmp_path)
    for expected in ("VALUE none None", "VALUE nested [None, (1, (2, 3)), {'k': (4,)}]",
                     "VALUE body 'x'", "VALUE sizes [64, 32]",
                     "VALUE config {'a': {'b': [1, 'n']}}", "VALUE rates [0.5, 1]",
                     "VALUE literal '[[Index]]'", "VALUE tag '1'",
                     "VALUE order {'zeta': 1, 'alpha': 2.5, 'mid': {'b': 1, 'a': [2, 3.5]}}"):
        assert expected in output, (expected, output[-3000:])


def test_a_default_kubeflow_cannot_carry_is_explained(tmp_path):
    result = run_compile(tmp_path, (
        "from kale.sdk import pipeline, step\n\n@step\ndef s(x):\n    return x\n\n"
        "@pipeline(name='n')\ndef p(x={'a': None}):\n    s(x)\n"))
    assert result.returncode == 1
    assert "the default of pipeline parameter `x` holds None" in result.stderr
    assert "Traceback" not in result.stderr


def test_earlier_packages_and_excluded_step_files(tmp_path):
    from kale.kfp.bundle import project_files

    package = compile_script(tmp_path, VALUES_SCRIPT, "v.yaml")
    assert "v.yaml" not in project_files(tmp_path)
    assert package.exists()
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "s.py").write_text(
        "from kale.sdk import step\n\n@step\ndef s():\n    return 1\n")
    (tmp_path / ".gitignore").write_text("lib/\n")
    result = run_compile(tmp_path, (
        "from kale.sdk import pipeline\nfrom lib.s import s\n\n"
        "@pipeline(name='x')\ndef p():\n    s()\n"))
    assert result.returncode == 1
    assert "step `s` is defined in lib/s.py, which the project bundle leaves out" in \
        result.stderr


def test_tasks_are_named_after_their_steps_whatever_the_name(tmp_path):
    package = compile_script(tmp_path, (
        "from kale.sdk import pipeline, step\n\n"
        "@step(name='class')\ndef a():\n    return 1\n\n"
        "@step(name='1st')\ndef b(x):\n    return x + 1\n\n"
        "@step(name='kale-bundle')\ndef c(x):\n    print('GOT', x)\n    return x\n\n"
        "@step(name='str')\ndef d(x):\n    return x * 10\n\n"
        "@pipeline(name='names')\ndef p():\n    x = a()\n    y = b(x)\n    z = c(y)\n"
        "    w = d(z)\n    w = d(w)\n    c(w)\n"), "n.yaml")
    tasks = {name: task for name, task in
             next(yaml.safe_load_all(package.read_text()))["root"]["dag"]["tasks"].items()
             # The bundle travels inline in 64 KB pieces: how many depends on Kale's own size.
             if not name.startswith("kale-bundle-part-")}
    assert set(tasks) == {"step-class", "step-1st", "kale-bundle", "step-kale-bundle",
                          "kale-bundle-2", "step-str", "str-2"}
    assert {name: task["taskInfo"]["name"] for name, task in tasks.items()} == {
        "step-class": "class", "step-1st": "1st", "kale-bundle": "kale-bundle",
        "step-kale-bundle": "kale-bundle", "kale-bundle-2": "kale-bundle-2",
        "step-str": "str", "str-2": "str-2"}
    output = run_under_kfp_local(package, tmp_path)
    assert "GOT 2" in output and "GOT 200" in output, output[-2000:]


def test_the_package_is_the_document_kfp_writes(tmp_path):
    from kfp import compiler

    from kale.kfp.compiler import write_package
    from tests.kfp.doubling_pipeline import doubling

    write_package(doubling, str(tmp_path / "ours.yaml"))
    compiler.Compiler().compile(doubling, str(tmp_path / "kfp.yaml"))
    ours, theirs = (tmp_path / "ours.yaml").read_text(), (tmp_path / "kfp.yaml").read_text()
    assert list(yaml.safe_load_all(ours)) == list(yaml.safe_load_all(theirs))
    header = [line for line in theirs.splitlines() if line.startswith("#")]
    assert ours.startswith("\n".join(header))


@pytest.mark.installs
def test_a_step_gets_its_own_image_and_packages(tmp_path):
    (tmp_path / "pyproject.toml").write_text(
        '[tool.kale]\nrequirements = ["pandas==2.2.3"]\n\n'
        '[tool.kale.steps.train]\nimage = "pytorch/pytorch:2.4.0"\n'
        'requirements = ["torch==2.4.0"]\n')
    result = run_compile(tmp_path, (
        "from kale.sdk import pipeline, step\n\n"
        "@step\ndef prepare():\n    return 1\n\n"
        "@step\ndef train(x):\n    return x\n\n"
        "@pipeline(name='gpu')\ndef p():\n    x = prepare()\n    train(x)\n"), "g.yaml")
    assert result.returncode == 0, result.stderr
    assert "step train: image pytorch/pytorch:2.4.0; packages: pandas==2.2.3, torch==2.4.0" \
        in result.stdout
    executors = next(yaml.safe_load_all((tmp_path / "g.yaml").read_text()))[
        "deploymentSpec"]["executors"]
    train, prepare = executors["exec-train"]["container"], executors["exec-prepare"]["container"]
    assert train["image"] == "pytorch/pytorch:2.4.0"
    assert prepare["image"] == f"python:{sys.version_info.major}.{sys.version_info.minor}"
    assert "'torch==2.4.0'" in train["command"][2] and "torch" not in prepare["command"][2]
    assert "'pandas==2.2.3'" in prepare["command"][2]


TYPED_SCRIPT = (
    "from __future__ import annotations\n"
    "from kale.sdk import pipeline, step\n\n"
    "@step\ndef load() -> pd.DataFrame:\n"
    "    import pandas as pd\n"
    "    return pd.DataFrame({'x': [1.0, 2.0, 3.0], 'y': [2.0, 4.0, 6.0]})\n\n"
    "@step\ndef fit(frame) -> tuple['LinearRegression', float | None, dict]:\n"
    "    from sklearn.linear_model import LinearRegression\n"
    "    model = LinearRegression().fit(frame[['x']], frame['y'])\n"
    "    return model, float(model.coef_[0]), {'rows': len(frame)}\n\n"
    "@step\ndef report(model, slope, info):\n"
    "    print('SLOPE', round(slope, 3), info, type(model).__name__)\n\n"
    "@pipeline(name='typed')\ndef p():\n"
    "    frame = load()\n    model, slope, info = fit(frame)\n    report(model, slope, info)\n"
)


def test_outputs_are_datasets_and_models_where_the_annotation_says(tmp_path):
    pytest.importorskip("sklearn")
    package = compile_script(tmp_path, TYPED_SCRIPT, "t.yaml")
    components = next(yaml.safe_load_all(package.read_text()))["components"]

    def schema(component: str, output: str) -> str:
        artifacts = components[component]["outputDefinitions"]["artifacts"]
        return artifacts[output]["artifactType"]["schemaTitle"]

    assert schema("comp-load", "out_frame") == "system.Dataset"
    assert schema("comp-fit", "out_model") == "system.Model"
    assert schema("comp-fit", "out_slope") == "system.Artifact"
    assert schema("comp-fit", "out_info") == "system.Artifact"
    output = run_under_kfp_local(package, tmp_path)
    assert "SLOPE 2.0 {'rows': 3} LinearRegression" in output, output[-3000:]
    # Each artifact's metadata says what the value is and how it is stored (the KFP UI shows it).
    import json

    (written,) = (tmp_path / "root").glob("typed-*/load/executor_output.json")
    (frame,) = json.loads(written.read_text())["artifacts"]["out_frame"]["artifacts"]
    assert frame["metadata"]["type"] == "pandas.core.frame.DataFrame"
    assert frame["metadata"]["backend"] == "arrow" and frame["metadata"]["size"] > 0


@pytest.mark.parametrize(("annotation", "expected"), [
    ("pd.DataFrame", "Dataset"), ("'pandas.Series'", "Dataset"), ("np.ndarray", "Dataset"),
    ("pa.Table", "Dataset"), ("torch.Tensor", "Dataset"), ("Optional[DataFrame]", "Dataset"),
    ("DataFrame | None", "Dataset"), ("npt.NDArray", "Artifact"), ("ndarray[int]", "Dataset"),
    ("nn.Module", "Model"), ("RandomForestClassifier", "Model"), ("'LinearRegression'", "Model"),
    ("sklearn.pipeline.Pipeline", "Model"), ("xgb.Booster", "Model"), ("dict", "Artifact"),
    ("list[pd.DataFrame]", "Artifact"), ("int | str", "Artifact"), ("'not valid ('", "Artifact"),
])
def test_artifact_classes_from_annotations(annotation, expected):
    import ast

    from kale.kfp.compiler import _artifact_class

    assert _artifact_class(ast.parse(annotation, mode="eval").body) == expected


def test_a_type_registered_in_a_project_module_crosses_kubeflow_steps(tmp_path):
    (tmp_path / "temps.py").write_text(
        "from pathlib import Path\nfrom kale.marshal import register\n\n"
        "class Celsius:\n    def __init__(self, degrees):\n        self.degrees = degrees\n\n"
        "class Kelvin:  # pickled: a class of the project\n"
        "    def __init__(self, value):\n        self.value = value\n\n"
        "register('celsius', Celsius,\n"
        "         save=lambda value, path: Path(path).write_text(str(value.degrees)),\n"
        "         load=lambda path: Celsius(float(Path(path).read_text())), suffix='.txt')\n")
    package = compile_script(tmp_path, (
        "from kale.sdk import pipeline, step\n\n"
        "@step\ndef measure():\n    from temps import Celsius\n    return Celsius(21.5)\n\n"
        "@step\ndef report(t):\n    from temps import Celsius\n"
        "    print('V', t.degrees, isinstance(t, Celsius))\n\n"
        "@step\ndef package():\n    from temps import Kelvin\n    return Kelvin(300)\n\n"
        "@step\ndef show(k):\n    print('K', k.value)\n\n"
        "@pipeline(name='custom-type')\ndef p():\n    t = measure()\n    report(t)\n"
        "    k = package()\n    show(k)\n"),
        "c.yaml")
    elsewhere = tmp_path / "elsewhere"  # not the project: nothing of it on the path by chance
    elsewhere.mkdir()
    output = run_under_kfp_local(package, elsewhere)
    assert "V 21.5 True" in output and "K 300" in output, output[-2000:]


def test_step_source_is_read_as_python_reads_it(tmp_path):
    (tmp_path / "latin.py").write_bytes(
        "# -*- coding: latin-1 -*-\nfrom kale.sdk import step\n\n"
        "@step\ndef greet():\n    return 'caf\u00e9'\n".encode("latin-1"))
    package = compile_script(tmp_path, (
        "from kale.sdk import pipeline, step\nfrom latin import greet\n\n"
        "@step\ndef odd(word):\n    text = 'a\u2028b'\n\x0c\n    print('ODD', word, len(text))\n"
        "    return 1\n\n"
        "@pipeline(name='odd-source')\ndef p():\n    word = greet()\n    odd(word)\n"), "o.yaml")
    output = run_under_kfp_local(package, tmp_path)
    assert "ODD caf\u00e9 3" in output, output[-2000:]


def test_names_beyond_ascii(tmp_path):
    package = compile_script(tmp_path, (
        "from kale.sdk import pipeline, step\n\n"
        "@step\ndef double(x):\n    return x * 2\n\n"
        "@step\ndef show(résultat):\n    print('V', résultat)\n\n"
        "@pipeline(name='unicode')\ndef p(entree=3):\n"
        "    résultat = double(entree)\n    show(résultat)\n"), "u.yaml")
    assert "V 6" in run_under_kfp_local(package, tmp_path)
    result = run_compile(tmp_path, (
        "from kale.sdk import pipeline, step\n\n"
        "@step\ndef double(x):\n    return x * 2\n\n"
        "@pipeline(name='unicode')\ndef p(entrée=3):\n    double(entrée)\n"))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "pipeline parameter `entrée` has a name Kubeflow does not accept" in result.stderr
    assert "flow.py:8:7" in result.stderr and "for example `entree`" in result.stderr


def test_line_breaks_in_defaults_and_descriptions_keep_the_package_readable(tmp_path):
    from kfp import components

    package = compile_script(tmp_path, (
        "from kale.sdk import pipeline, step\n\n"
        "@step\ndef join(sep, tail):\n    print('V', repr(sep.join(['a', 'b', tail])))\n\n"
        "@pipeline(name='breaks', description='one\\rtwo\\x0cthree\\u2028four\\nfive: 5')\n"
        "def p(sep='\\n', tail='x\\r\\ny'):\n    join(sep, tail)\n"), "b.yaml")
    components.load_component_from_file(str(package))
    output = run_under_kfp_local(package, tmp_path)
    assert "V 'a\\nb\\nx\\r\\ny'" in output, output[-2000:]


@pytest.mark.parametrize(("output", "message", "fix"), [
    ("pipeline", "the package pipeline would not be YAML", "-o pipeline.yaml"),
    ("p.json", "the package p.json would not be YAML", "-o p.yaml"),
    ("no/such/dir/p.yaml", "the folder", "create the folder"),
    ("existing/", "-o existing/ is a folder", "-o existing/values.yaml"),
    ("dir.yaml", "-o dir.yaml is a folder", "-o dir.yaml/values.yaml"),
    ("/proc/p.yaml", "the package cannot be written to /proc/p.yaml", "a path you can write"),
])
def test_package_paths_that_cannot_be_written_are_explained(tmp_path, output, message, fix):
    (tmp_path / "existing").mkdir()
    (tmp_path / "dir.yaml").mkdir()
    result = run_compile(tmp_path, VALUES_SCRIPT, output)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert message in result.stderr and fix in result.stderr


def test_an_upper_case_suffix_is_fine(tmp_path):
    assert compile_script(tmp_path, VALUES_SCRIPT, "P.YAML").read_text().startswith("#")


def test_a_dag_too_big_for_one_argument_is_warned_about(tmp_path):
    calls = "\n".join(f"    v{n} = add(v{n - 1})" for n in range(1, 400))
    result = run_compile(tmp_path, (
        "from kale.sdk import pipeline, step\n\n@step\ndef add(x):\n    return x + 1\n\n"
        f"@pipeline(name='long')\ndef p(v0=0):\n{calls}\n"), "long.yaml")
    assert result.returncode == 0, result.stderr
    assert "warning: the DAG of pipeline long (399 steps) is" in result.stderr
    assert "split it into smaller pipelines" in result.stderr


def test_steps_may_import_project_modules_that_define_steps_and_pipelines(tmp_path):
    (tmp_path / "steps.py").write_text(
        "from kale.sdk import step\n\n"
        "def normalize(values):\n    top = max(values)\n    return [v / top for v in values]\n\n"
        "@step\ndef load():\n    return [1, 2, 4]\n\n"
        "@step\ndef scale(values):\n    from steps import normalize\n"
        "    return normalize(values)\n")
    package = compile_script(tmp_path, (
        "from kale.sdk import pipeline, step\nfrom steps import load, scale\n\n"
        "def label():\n    return 'scaled'\n\n"
        "@step\ndef show(values):\n    from flow import label\n    print('V', label(), values)\n\n"
        "@pipeline(name='helpers')\ndef p():\n    values = load()\n    scaled = scale(values)\n"
        "    show(scaled)\n"), "h.yaml")
    output = run_under_kfp_local(package, tmp_path)
    assert "V scaled [0.25, 0.5, 1.0]" in output, output[-2000:]


TIMEOUT_STEPS = (
    "from kale.sdk import pipeline, step\n\n"
    "@step(timeout=1)\ndef polite():\n    import time\n    try:\n        time.sleep(30)\n"
    "    except Exception:\n        print('SWALLOWED')\n    return 1\n\n"
    "@step(timeout=1)\ndef stubborn():\n    import time\n    for _ in range(3):\n"
    "        try:\n            time.sleep(30)\n        except BaseException:\n"
    "            print('CAUGHT')\n    print('FINISHED')\n\n"
)


TIMEOUT_STEPS += (
    "@step(timeout=1)\ndef parent():\n    import subprocess, time\n"
    "    child = subprocess.Popen(['sleep', '40'])\n"
    "    open(CHILD_PID, 'w').write(str(child.pid))\n    time.sleep(30)\n\n"
)


@pytest.mark.parametrize(("step", "expected"), [
    ("polite", "Kale: step `polite` timed out after 1s\n"),
    ("stubborn", "step `stubborn` timed out after 1s and did not stop within 1s of being told"),
    ("parent", "Kale: step `parent` timed out after 1s\n"),  # its sleep 40 ends with it
])
def test_a_step_timeout_on_kubeflow_cannot_be_swallowed(tmp_path, step, expected):
    # The grace period is read where the pipeline is compiled, as it is where a local run starts.
    child_pid = tmp_path / "child.pid"
    package = compile_script(tmp_path, f"CHILD_PID = {str(child_pid)!r}\n" + TIMEOUT_STEPS + (
        f"@pipeline(name='timeouts')\ndef p():\n    {step}()\n"), "t.yaml",
        KALE_TIMEOUT_GRACE="1")
    output = run_under_kfp_local(package, tmp_path, raise_on_error=False)
    assert expected in output, output[-2000:]
    # Nothing ran to its end: the steps' sleeps were cut short (no FINISHED), and what the
    # step started ended with it.
    assert "SWALLOWED" not in output and "FINISHED" not in output
    if step == "parent":
        pid = int(child_pid.read_text())
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            state = "gone"
        assert state in ("gone", "Z"), f"the step's child {pid} is still running"


def test_numbers_kubeflow_would_round_are_exact_or_refused(tmp_path):
    package = compile_script(tmp_path, (
        "from kale.sdk import pipeline, step\n\n"
        "@step\ndef show(label, value):\n    print('VALUE', label, repr(value))\n\n"
        "@pipeline(name='numbers')\n"
        "def p(hp={'lr': 0.01, 'epochs': 10, 'shape': (2, 3)}, sizes=[0.5, 1]):\n"
        "    show('big', 1732445000123456789)\n    show('hp', hp)\n    show('sizes', sizes)\n"),
        "n.yaml")
    code = ("from kfp import local, components\n"
            f"local.init(runner=local.SubprocessRunner(use_venv=False), "
            f"pipeline_root={str(tmp_path / 'root')!r})\n"
            f"components.load_component_from_file({str(package)!r})("
            "hp={'lr': 0.01, 'epochs': 10, 'shape': [2, 3], 'batch_size': 32}, "
            "sizes=[0.5, 1, 2, 4])\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=tmp_path, timeout=600)
    output = result.stdout + result.stderr
    for expected in ("VALUE big 1732445000123456789",
                     "VALUE hp {'lr': 0.01, 'epochs': 10, 'shape': (2, 3), 'batch_size': 32}",
                     "VALUE sizes [0.5, 1, 2, 4]"):
        assert expected in output, (expected, output[-3000:])
    refused = run_compile(tmp_path, (
        "from kale.sdk import pipeline, step\n\n@step\ndef s(x):\n    return x\n\n"
        "@pipeline(name='n')\ndef p(stamp=1732445000123456789):\n    s(stamp)\n"))
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert "holds 1732445000123456789, which Kubeflow would carry as 1732445000123456768" \
        in refused.stderr
    assert "stamp='1732445000123456789'" in refused.stderr


def test_names_alike_once_encoded_stay_apart(tmp_path):
    package = compile_script(tmp_path, (
        "from kale.sdk import pipeline, step\n\n"
        "@step\ndef pair():\n    return 1, 2\n\n"
        "@step\ndef show(entrée, entr_u00e9_e):\n    print('V', entrée, entr_u00e9_e)\n\n"
        "@pipeline(name='alike')\ndef p():\n    entrée, entr_u00e9_e = pair()\n"
        "    show(entrée, entr_u00e9_e)\n"), "a.yaml")
    assert "V 1 2" in run_under_kfp_local(package, tmp_path)


def test_the_compile_message_names_what_is_kept_out_as_secrets(tmp_path):
    (tmp_path / ".env").write_text("TOKEN=1\n")
    (tmp_path / "auth").mkdir()
    (tmp_path / "auth" / "credentials.json").write_text("{}")
    (tmp_path / "auth" / "credentials.py").write_text("USER = 'x'\n")
    (tmp_path / "kubeconfig.yaml").write_text("apiVersion: v1\n")
    (tmp_path / "run.log").write_text("x" * 100_000 + "-----BEGIN RSA PRIVATE KEY-----\n")
    result = run_compile(tmp_path, VALUES_SCRIPT, "s.yaml")
    assert result.returncode == 0, result.stderr
    assert ("kept out as secrets: .env (named like .env), auth/credentials.json (named like "
            "credentials.json), kubeconfig.yaml (named like kubeconfig*), run.log (holds a "
            "private key)\n") in result.stdout
    assert "auth/credentials.py" not in result.stdout.split("kept out")[1].splitlines()[0]


def test_a_step_named_like_its_pipeline(tmp_path):
    package = compile_script(tmp_path, (
        "from kale.sdk import pipeline, step\n\n"
        "@step\ndef train(iters):\n    print('TRAINED', iters)\n\n"
        "@pipeline(name='train')\ndef p(iters=3):\n    train(iters)\n"), "t.yaml")
    assert "TRAINED 3" in run_under_kfp_local(package, tmp_path)


def test_keys_and_run_records_never_travel_whatever_their_names(tmp_path, monkeypatch):
    from kale.kfp.bundle import project_files

    (tmp_path / "key.json").write_text('{"type": "service_account", "private_key": "x"}')
    (tmp_path / "deploy").write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nabc\n")
    (tmp_path / "client_secret_123.json").write_text("{}")
    (tmp_path / "kubeconfig").write_text("users: []\n")
    (tmp_path / "settings.json").write_text('{"lr": 0.1}')
    (tmp_path / "runs" / "r1").mkdir(parents=True)
    (tmp_path / "runs" / "r1" / "run.json").write_text("{}")
    monkeypatch.setenv("KALE_HOME", str(tmp_path / "runs"))
    assert project_files(tmp_path) == ["settings.json"]


def test_a_step_that_needs_parts_of_kale_that_stay_home_is_explained(tmp_path):
    (tmp_path / "util.py").write_text("from kale.local import RunFailedError\n")
    result = run_compile(tmp_path, (
        "from kale.sdk import pipeline, step\n\n"
        "@step\ndef use():\n    import util\n    from kale.marshal import register\n"
        "    return 1\n\n"
        "@pipeline(name='homebound')\ndef p():\n    use()\n"), "h.yaml")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "step `use` imports kale.local.RunFailedError" in result.stderr
    assert "only kale.sdk and kale.marshal run there" in result.stderr
