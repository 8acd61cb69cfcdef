"""Kale's runtime in the bundle: every module a step imports travels, without its comments and
docstrings, and still runs a step with nothing but the bundle (``kale.kfp.slim``)."""

from __future__ import annotations

import ast
import io
import json
import os
import subprocess
import sys
import tarfile
import textwrap
from pathlib import Path

import pytest

from kale.kfp.bundle import build_bundle, runtime_files, runtime_sources
from kale.kfp.slim import slim_source

#: What the bundled modules import of Kale only where no step runs, and why it cannot be
#: reached on the cluster. Any other import of a module outside the bundle fails the test.
OFF_CLUSTER = {
    ("kale.sdk", "kale.graph"): "a pipeline's graph: built where the pipeline is compiled",
    ("kale.sdk", "kale.graph.model"): "checking a pipeline's values, before a run",
    ("kale.sdk", "kale.kfp.run"): "the KfpRun a submission returns",
    ("kale.sdk", "kale.kfp.server"): "--server-version, read by the script",
    ("kale.sdk", "kale.kfp.submit"): "compiling and submitting: refused inside a step",
    ("kale.sdk", "kale.local"): "a local run: refused inside a step",
    ("kale.sdk", "kale.local.processes"): "the zygote, started by a script only",
    ("kale.sdk", "kale.local.resume"): "resuming a local run: refused inside a step",
    # tune() is refused inside a step (a step cannot start a pipeline); a Katib trial's Job
    # runs `python -m kale.tuning.trial` from an image with Kale installed, not from a bundle.
    ("kale.sdk", "kale.tuning.katib"): "tune() with --kfp: refused inside a step",
    ("kale.sdk", "kale.tuning.local"): "a local study: refused inside a step",
    ("kale.sdk", "kale.tuning.settings"): "tune()'s checks: refused inside a step",
    ("kale.sdk", "kale.tuning.study"): "the Study tune() returns",
    ("kale.tuning.space", "kale.graph"): "type hints only (TYPE_CHECKING)",
    ("kale.tuning.space", "kale.graph.model"): "type hints only (TYPE_CHECKING)",
    ("kale.flags", "kale.kfp.schedule"): "--schedule, read by the script",
    ("kale.flags", "kale.kfp.server"): "--server-version, read by the script",
    ("kale.containers", "kale.local"): "a container step called outside a pipeline runs it here",
    ("kale.containers", "kale.local.container"): "likewise",
}


def _module_name(name: str) -> str:
    """``_kale/kale/marshal/__init__.py`` -> ``kale.marshal``."""
    parts = name.removeprefix("_kale/").removesuffix(".py").split("/")
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, module: str, is_package: bool) -> set[str]:
    """Every module ``path`` imports anywhere in it (in functions too), with its parents."""
    package = module if is_package else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, *([base] if base else [])])
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return {".".join(name.split(".")[:size]) for name in found
            for size in range(1, len(name.split(".")) + 1)}


def _is_module(name: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def test_every_module_the_bundled_runtime_imports_travels_or_is_never_imported_in_a_step():
    bundled = {_module_name(name): source for source, name in runtime_files()}
    missing = []
    for module, source in sorted(bundled.items()):
        for imported in sorted(_imports(source, module, source.name == "__init__.py")):
            if imported.split(".")[0] not in ("kale", "rok_common") or imported in bundled or \
                    (module, imported) in OFF_CLUSTER or not _is_module(imported):
                continue
            missing.append(f"{module} imports {imported}")
    assert not missing, missing
    assert all(imported not in bundled for _, imported in OFF_CLUSTER)  # the list is current


def _without_docstrings(tree: ast.AST) -> str:
    """The tree's dump with every docstring (or ``...`` standing in for one) taken out."""
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) \
                and body and isinstance(body[0], ast.Expr) and \
                isinstance(body[0].value, ast.Constant) and \
                (isinstance(body[0].value.value, str) or body[0].value.value is Ellipsis):
            del body[0]
        if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            # It ends where its last statement does: earlier when that was its docstring.
            node.end_lineno = node.end_col_offset = None
    return ast.dump(tree, include_attributes=True)


def test_the_slimmed_runtime_is_the_same_code_at_the_same_lines_and_columns():
    sources = dict(runtime_sources())
    for source, name in runtime_files():
        original, slim = source.read_text(), sources[name].decode()
        assert _without_docstrings(ast.parse(original)) == _without_docstrings(ast.parse(slim)), \
            name
        assert slim.count("\n") == original.count("\n"), name
        assert len(slim) <= len(original), name
    # cloudpickle keeps its license, in its module docstring.
    assert b"Redistributions of source code must retain" in \
        sources["_kale/cloudpickle/cloudpickle.py"]


def test_slimming_keeps_what_python_reads():
    spaces = "   "  # trailing spaces inside a string are part of it
    text = textwrap.dedent('''\
        # -*- coding: utf-8 -*-
        """Module docstring ≤ with a non-ASCII character."""
        from __future__ import annotations

        import math  # a comment

        TEXT = """a string, not a docstring{spaces}
        # not a comment"""


        def only_doc():
            """Just this: ≥ «»."""


        class Shape:
            """A class.

            On lines.
            """

            sides = [1,  # a comment inside brackets
                     2]

            def area(self):
                "One line."; return math.pi
        ''').replace("{spaces}", spaces)
    slim = slim_source(text)
    assert slim.splitlines()[0] == "# -*- coding: utf-8 -*-"
    for gone in ("Module docstring", "A class", "On lines", "comment inside", "One line", "≥"):
        assert gone not in slim
    assert f'TEXT = """a string, not a docstring{spaces}\n# not a comment"""' in slim
    assert slim.count("\n") == text.count("\n")
    namespace: dict = {"__name__": "slim"}
    exec(compile(slim, "slim.py", "exec"), namespace)
    assert namespace["only_doc"]() is None and namespace["Shape"].sides == [1, 2]
    assert namespace["Shape"]().area() == pytest.approx(3.14159, 1e-5)
    assert namespace.get("__doc__") is None
    assert slim_source(text, keep_module_docstring=True).splitlines()[1] == \
        '"""Module docstring ≤ with a non-ASCII character."""'


def test_the_runtime_leaves_most_of_an_inline_bundle_to_the_project(tmp_path):
    from kale.kfp.store import INLINE_LIMIT

    (tmp_path / "flow.py").write_text("")
    assert build_bundle(tmp_path).size < INLINE_LIMIT * 2 // 3


def test_the_runtime_kept_in_a_cache_inside_the_project_does_not_travel(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / ".cache"))  # a project in the home
    (tmp_path / "flow.py").write_text("")
    (tmp_path / ".cache" / "other").mkdir(parents=True)
    (tmp_path / ".cache" / "other" / "kept.txt").write_text("a cache of something else")
    # (what an earlier compile leaves there: this process may have its slimmed modules already)
    (tmp_path / ".cache" / "kale" / "slim").mkdir(parents=True)
    (tmp_path / ".cache" / "kale" / "slim" / "0123.py").write_text("x = 1\n")
    files = build_bundle(tmp_path).files
    assert "flow.py" in files and ".cache/other/kept.txt" in files
    assert not any(name.startswith(".cache/kale") for name in files)


FLOW = '''
    from kale.sdk import pipeline, step

    from shapes import Box


    @step
    def make(n):
        import numpy as np
        import pandas as pd

        from kale.sdk.logging import log_metric

        log_metric("rows", n)
        frame = pd.DataFrame({
            "when": pd.date_range("2026-01-01", periods=n, freq="h", tz="Europe/Paris"),
            "group": pd.Categorical(["a", "b", "a"][:n], categories=["b", "a", "z"]),
            "name": ["x", None, "z"][:n],
            "value": np.arange(n, dtype="float32"),
        }, index=pd.Index([10, 20, 30][:n], name="id"))
        return frame, np.arange(n * 2).reshape(n, 2), {"n": n, "tags": ("a", 1.5)}, Box(n)


    @step
    def use(frame, array, plain, box):
        frame.loc[10, "value"] = 99.0  # changes the step's own copy, never the stored value
        return {"dtypes": {name: str(dtype) for name, dtype in frame.dtypes.items()},
                "categories": list(frame["group"].cat.categories),
                "index": [frame.index.name, *frame.index.tolist()],
                "array": array.sum().item(), "plain": plain, "box": box.size}


    @pipeline(name="shapes")
    def shapes(n=3):
        frame, array, plain, box = make(n)
        use(frame, array, plain, box)
'''

SHAPES = '''
    from kale.sdk import step


    class Box:
        def __init__(self, size):
            self.size = size


    @step
    def unused():  # a project module that defines steps too: kale.sdk travels
        return 1
'''

#: Runs the two steps as their components would, with nothing of Kale but the bundle's.
PROBE = r'''
import json, os, sys
root, specs = sys.argv[1], json.loads(sys.argv[2])
sys.path[:0] = [os.path.join(root, "_kale")]
from kale.kfp.entry import run_component
made = {name: (os.path.join(root, "out", name), {}) for name in specs["make"]["outputs"]}
run_component(specs["make"], root, {"n": ("value", 3)}, made, "run-1", "")
used = {"return": (os.path.join(root, "out", "used"), {})}
run_component(specs["use"], root, {name: ("artifact", made[name][0])
                                   for name in specs["make"]["outputs"]}, used, "run-1", "")
from kale import marshal
again = marshal.load_folder(made["frame"][0])
print("RESULT " + json.dumps({"used": marshal.load_folder(used["return"][0]),
                              "stored_value": float(again.loc[10, "value"])}))
print("MODULES " + json.dumps({name: getattr(module, "__file__", None)
                               for name, module in sys.modules.items()
                               if name.split(".")[0] in ("kale", "rok_common", "cloudpickle")}))
'''


def _specs(package: Path) -> dict[str, dict]:
    import yaml

    spec = next(yaml.safe_load_all(package.read_text()))
    found = {}
    for step in ("make", "use"):
        source = spec["deploymentSpec"]["executors"][f"exec-{step}"]["container"]["command"][-1]
        start = source.index("run_component(") + len("run_component(")
        found[step] = ast.literal_eval(source[start:source.index("}, root,", start) + 1])
    return found


def test_a_step_runs_from_the_bundle_alone(project, tmp_path):
    """The steps run as on Kubeflow, with only the bundle's Kale and cloudpickle importable: a
    module missing from the bundle fails them."""
    pytest.importorskip("kfp")
    pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    import warnings

    from kale.kfp.compiler import compile_graph

    project.write("shapes.py", textwrap.dedent(SHAPES))
    graph = project.load(FLOW, prelude=False).shapes.graph
    package = project.root / "shapes.yaml"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        compile_graph(graph, str(package))
    bundle = build_bundle(graph.project_root)
    root = tmp_path / "fresh" / "root"
    root.mkdir(parents=True)
    with tarfile.open(fileobj=io.BytesIO(bundle.data)) as archive:
        archive.extractall(root, filter="data")
    # -S and no PYTHONPATH: site-packages without their .pth files, so an installed Kale (or
    # this checkout's, installed in editable mode) cannot stand in for the bundled one.
    site = [path for path in sys.path if path.endswith("site-packages")]
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    result = subprocess.run(
        [sys.executable, "-S", "-c", f"import sys; sys.path.extend({site!r})\n" + PROBE,
         str(root), json.dumps(_specs(package))],
        capture_output=True, text=True, cwd=root.parent, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    lines = {line.split(" ", 1)[0]: json.loads(line.split(" ", 1)[1])
             for line in result.stdout.splitlines() if line.startswith(("RESULT ", "MODULES "))}
    used = lines["RESULT"]["used"]
    assert used["dtypes"] == {"when": "datetime64[ns, Europe/Paris]", "group": "category",
                              "name": "object", "value": "float32"}
    assert used["categories"] == ["b", "a", "z"] and used["index"] == ["id", 10, 20, 30]
    assert used["array"] == 15 and used["box"] == 3
    assert used["plain"]["n"] == 3
    assert lines["RESULT"]["stored_value"] == 0.0
    modules = lines["MODULES"]
    assert "kale.marshal.backends" in modules and "kale.sdk" in modules
    outside = {name: file for name, file in modules.items()
               if file and not file.startswith(str(root / "_kale"))}
    assert not outside, outside
    assert "rows=3" in result.stdout  # the metric, as Katib reads it
