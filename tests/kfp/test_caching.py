"""Caching on Kubeflow: which tasks are cached, what their keys follow, and a run under kfp.local
with its cache on (kfp 2.17's ``local.init(enable_caching=True)``), where an edited step runs
again alone with what depends on it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytest.importorskip("kfp")

FLOW = '''\
from kale.sdk import pipeline, step
import helpers

COUNTER = {counter!r}


def mark(name):
    with open(COUNTER, "a") as handle:
        handle.write(name + "\\n")


@step
def load(n: int):
    mark("load")
    return list(range(n))


@step
def train(data):
    mark("train")
    return helpers.scale(sum(data))


@step
def report(model, data):
    mark("report")
    print("MODEL", model, len(data))


@pipeline(name="cachey", steps_defaults={{"cache": True}})
def p(n: int = 3):
    data = load(n)
    model = train(data)
    report(model, data)


if __name__ == "__main__":
    p()
'''


def project(folder: Path) -> Path:
    root = folder / "project"
    root.mkdir()
    (root / "flow.py").write_text(FLOW.format(counter=str(folder / "ran.txt")))
    (root / "helpers.py").write_text("def scale(x):\n    return x * 2\n")
    (root / "settings.json").write_text('{"a": 1}\n')
    return root


def compile_flow(root: Path, package: Path, *flags: str) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "flow.py", "--kfp", "--dry-run", "-o",
                             str(package), *flags], capture_output=True, text=True, cwd=root,
                            env={**os.environ, "KALE_HOME": str(root.parent / "home")})
    assert result.returncode == 0, result.stderr
    return result


def tasks(package: Path) -> dict:
    return yaml.safe_load(package.read_text())["root"]["dag"]["tasks"]


def keys(package: Path) -> dict[str, str]:
    """Each step's code key, and KFP's own inputs to its key: its command and arguments."""
    spec = yaml.safe_load(package.read_text())
    found = {}
    for name, task in spec["root"]["dag"]["tasks"].items():
        if name.startswith("kale-code-"):
            found[name] = task["cachingOptions"]["cacheKey"]
        elif not name.startswith("kale-bundle"):
            executor = spec["components"][task["componentRef"]["name"]]["executorLabel"]
            container = spec["deploymentSpec"]["executors"][executor]["container"]
            found[name] = repr((container["image"], container["command"], container["args"]))
    return found


def changed(before: dict[str, str], after: dict[str, str]) -> set[str]:
    return {name for name in before if before[name] != after[name]}


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


def test_an_edit_changes_only_the_keys_of_what_it_touches(tmp_path):
    root = project(tmp_path)
    first = compile_flow(root, tmp_path / "a.yaml")
    assert "cached on Kubeflow (unchanged steps reused): load, train, report" in first.stderr
    compiled = tasks(tmp_path / "a.yaml")
    # Every cached step takes the bundle through its own code copy, cached by Kale's key; the
    # step itself keeps KFP's key (no custom one); the run's bundle is never reused.
    for step in ("load", "train", "report"):
        assert compiled[step]["cachingOptions"] == {"enableCache": True}
        assert compiled[step]["inputs"]["artifacts"]["kale_bundle"]["taskOutputArtifact"] == {
            "outputArtifactKey": "code", "producerTask": f"kale-code-{step}"}
        assert compiled[f"kale-code-{step}"]["cachingOptions"]["enableCache"] is True
    assert compiled["kale-bundle"].get("cachingOptions", {}) == {}
    base = keys(tmp_path / "a.yaml")
    assert len(set(base.values())) == len(base)

    compile_flow(root, tmp_path / "b.yaml")
    assert keys(tmp_path / "b.yaml") == base  # the same project: the same keys

    # A line added above the steps moves them all down: no key follows line numbers.
    edit(root / "flow.py", "import helpers\n", "import helpers\n# a comment\n\n")
    compile_flow(root, tmp_path / "b.yaml")
    assert changed(base, keys(tmp_path / "b.yaml")) == set()

    # One step's code: its code key alone (what takes its output misses on Kubeflow because
    # the output is a new artifact, which the next test runs).
    edit(root / "flow.py", 'mark("train")', 'mark("train")  # edited\n    print("training")')
    compile_flow(root, tmp_path / "c.yaml")
    assert changed(base, keys(tmp_path / "c.yaml")) == {"kale-code-train"}

    # A project module: the key of the step that imports it.
    edit(root / "helpers.py", "x * 2", "x * 3")
    compile_flow(root, tmp_path / "d.yaml")
    assert changed(keys(tmp_path / "c.yaml"), keys(tmp_path / "d.yaml")) == {"kale-code-train"}

    # A data file any step may read: every code key.
    (root / "settings.json").write_text('{"a": 2}\n')
    compile_flow(root, tmp_path / "e.yaml")
    assert changed(keys(tmp_path / "d.yaml"), keys(tmp_path / "e.yaml")) == {
        "kale-code-load", "kale-code-train", "kale-code-report"}

    # The image: KFP's key of every step (and not Kale's code keys).
    compile_flow(root, tmp_path / "f.yaml", "--image", "python:3.12-slim")
    assert changed(keys(tmp_path / "e.yaml"), keys(tmp_path / "f.yaml")) == {
        "load", "train", "report"}


def test_caching_is_off_unless_asked_and_the_flags_win(tmp_path):
    root = project(tmp_path)
    edit(root / "flow.py", 'steps_defaults={"cache": True}', "")
    compile_flow(root, tmp_path / "off.yaml")
    off = tasks(tmp_path / "off.yaml")
    assert not any(name.startswith("kale-code-") for name in off)
    assert all(task.get("cachingOptions", {}) == {} for task in off.values())

    result = compile_flow(root, tmp_path / "on.yaml", "--cache")
    assert "cached on Kubeflow (unchanged steps reused): load, train, report" in result.stderr
    assert {name for name in tasks(tmp_path / "on.yaml") if name.startswith("kale-code-")} == {
        "kale-code-load", "kale-code-train", "kale-code-report"}

    # --resume on Kubeflow: a new run with caching on for every step, and it says so.
    result = compile_flow(root, tmp_path / "resumed.yaml", "--resume")
    assert "--resume with --kfp starts a new run with Kubeflow's caching on" in result.stderr
    assert tasks(tmp_path / "resumed.yaml").keys() == tasks(tmp_path / "on.yaml").keys()

    # A step's own option over steps_defaults; --no-cache over both.
    edit(root / "flow.py", "@pipeline(", '@pipeline(steps_defaults={"cache": True}, ')
    edit(root / "flow.py", "@step\ndef report", "@step(cache=False)\ndef report")
    compile_flow(root, tmp_path / "some.yaml")
    some = tasks(tmp_path / "some.yaml")
    assert some["report"].get("cachingOptions", {}) == {} and "kale-code-report" not in some
    assert some["train"]["cachingOptions"] == {"enableCache": True}
    compile_flow(root, tmp_path / "none.yaml", "--no-cache")
    assert all(task.get("cachingOptions", {}) == {}
               for task in tasks(tmp_path / "none.yaml").values())


def test_a_run_macro_keeps_the_step_it_reaches_from_being_cached(tmp_path):
    root = project(tmp_path)
    edit(root / "flow.py", "def load(n: int):", "def load(n: int, tag: str):")
    edit(root / "flow.py", "def p(n: int = 3):\n    data = load(n)",
         "def p(n: int = 3, tag: str = 'run-[[RunUUID]]'):\n    data = load(n, tag)")
    result = compile_flow(root, tmp_path / "a.yaml")
    assert "step load not cached: its parameter `tag` holds [[RunUUID]], which differs every " \
        "run" in result.stderr
    compiled = tasks(tmp_path / "a.yaml")
    assert "kale-code-load" not in compiled and "kale-code-train" in compiled
    # A macro given only when the run starts fails the cached step rather than be reused.
    from kale.kfp.entry import _refuse_macros

    with pytest.raises(SystemExit, match=r"step `train` is cached, and its input `tag` holds "
                       r"\[\[CurrentTime\]\]"):
        _refuse_macros("train", {"data": ("artifact", "/x"), "tag": ("value", "[[CurrentTime]]")})
    _refuse_macros("train", {"tag": ("value", "plain"), "n": ("value", 3)})


@pytest.mark.parametrize(("line", "message"), [
    ('@step(cache="yes")', "True or False is expected"),
    ("@step(cache=1)", "True or False is expected"),
    ('@step(cahce=True)', "did you mean 'cache'"),
])
def test_bad_cache_options_are_clear(tmp_path, line, message):
    root = project(tmp_path)
    edit(root / "flow.py", "@step\ndef train", f"{line}\ndef train")
    result = subprocess.run([sys.executable, "flow.py", "--kfp", "--dry-run"],
                            capture_output=True, text=True, cwd=root)
    assert result.returncode != 0
    assert message in result.stderr, result.stderr


def test_bad_cache_defaults_and_flags_are_clear(tmp_path):
    root = project(tmp_path)
    edit(root / "flow.py", '{"cache": True}', '{"cache": "on"}')
    result = subprocess.run([sys.executable, "flow.py", "--kfp", "--dry-run"],
                            capture_output=True, text=True, cwd=root)
    assert result.returncode != 0 and "steps_defaults.cache" in result.stderr
    assert "True or False is expected" in result.stderr

    from kale.flags import FlagError, take_flags

    assert take_flags(["s.py", "--kfp", "--cache"]).caching is True
    assert take_flags(["s.py", "--kfp", "--no-cache"]).caching is False
    assert take_flags(["s.py", "--kfp"]).caching is None
    with pytest.raises(FlagError, match="--cache and --no-cache are both given"):
        take_flags(["s.py", "--kfp", "--cache", "--no-cache"])
    with pytest.raises(FlagError, match="--cache takes no value"):
        take_flags(["s.py", "--kfp", "--cache=yes"])
    with pytest.raises(FlagError, match="did you mean --no-cache"):
        take_flags(["s.py", "--kfp", "--nocache"])


def run_cached(package: Path, folder: Path) -> list[str]:
    """Run ``package`` under kfp.local with its cache on (kept in ``folder``); the steps whose
    code ran, from their side-effect counter."""
    counter = folder / "ran.txt"
    counter.write_text("")
    code = ("from kfp import local, components\n"
            f"local.init(runner=local.SubprocessRunner(use_venv=False), "
            f"pipeline_root={str(folder / 'root')!r}, enable_caching=True)\n"
            f"components.load_component_from_file({str(package)!r})()\n")
    elsewhere = folder / "kfp-local-cwd"
    elsewhere.mkdir(exist_ok=True)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=elsewhere, timeout=600)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    return counter.read_text().split()


def test_under_kfp_local_an_edited_step_runs_again_with_what_follows_it(tmp_path,
                                                                     prepared_image):
    root = project(tmp_path)
    compile_flow(root, tmp_path / "a.yaml")
    assert run_cached(tmp_path / "a.yaml", tmp_path) == ["load", "train", "report"]
    assert run_cached(tmp_path / "a.yaml", tmp_path) == []  # nothing changed: all reused
    edit(root / "helpers.py", "x * 2", "x * 3")  # what `train` imports
    compile_flow(root, tmp_path / "b.yaml")
    # `load` is reused; `report` runs because `train`'s output is new.
    assert run_cached(tmp_path / "b.yaml", tmp_path) == ["train", "report"]


def test_autosnapshot_says_what_kale_keeps_instead():
    import warnings

    from kale.sdk import pipeline

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")

        @pipeline(autosnapshot=True)
        def f():
            pass

    message = " ".join(str(w.message) for w in caught)
    assert "autosnapshot=True has no effect" in message
    for kept in ("every step's outputs", "artifact store", "by content hash", "cache=True",
                 "--cache"):
        assert kept in message
