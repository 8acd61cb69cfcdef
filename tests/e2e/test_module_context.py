"""Scripts written as Kale SDK users write them, run unchanged: libraries imported at the top,
module-level helpers, constants and classes used by steps, steps in project modules, and a
pipeline called without a ``__main__`` guard; locally, and compiled and run under kfp.local."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

PROJECT = Path(__file__).parent / "projects" / "module_context"
EXPECTED = ("made 5 values, dice 2", "TOTAL 5.672 PID-OK True",
            'STATS {"high": 5, "mean": 1.134, "spread": 0.189}', "LOG __main__ reporting 3 numbers")


def copy_project(tmp_path: Path) -> Path:
    folder = tmp_path / "project"
    shutil.copytree(PROJECT, folder, ignore=shutil.ignore_patterns("__pycache__", ".kale"))
    return folder


def run(script: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "KALE_HOME": str(cwd / "kale-home"), "KALE_PROGRESS": "plain"}
    return subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=300)


def test_a_script_with_module_context_runs_locally_once(tmp_path):
    folder = copy_project(tmp_path)
    result = run(folder / "pipeline.py", cwd=tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    for line in EXPECTED:
        assert line in output
    # The unguarded call ran the pipeline once; no step ran it again or ran the module's print.
    assert output.count("running pipeline module-context") == 1
    assert output.count("this print is left out") == 1
    assert "CALLER Run" in output


def test_the_same_script_compiled_runs_the_same_under_kfp_local(tmp_path, prepared_image):
    folder = copy_project(tmp_path)
    compiled = run(folder / "pipeline.py", "--kfp", "--dry-run", "-o", str(tmp_path / "p.yaml"),
                   cwd=tmp_path)
    assert compiled.returncode == 0, compiled.stderr
    # numpy is imported at the top of the file, and a step uses it: the step needs it.
    assert "numpy==" in compiled.stderr
    assert "running pipeline" not in compiled.stdout + compiled.stderr
    code = ("from kfp import local, components\n"
            "local.init(runner=local.SubprocessRunner(use_venv=False), "
            f"pipeline_root={str(tmp_path / 'root')!r})\n"
            f"components.load_component_from_file({str(tmp_path / 'p.yaml')!r})()\n")
    elsewhere = tmp_path / "elsewhere"  # never the project through the working directory
    elsewhere.mkdir()
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=elsewhere, timeout=600)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    for line in EXPECTED:
        assert line in output, output[-3000:]
    assert "this print is left out" not in output


def test_a_name_only_the_main_block_defines_is_an_error_before_anything_runs(tmp_path):
    script = tmp_path / "flow.py"
    script.write_text(textwrap.dedent('''\
        from kale.sdk import pipeline, step

        @step
        def train():
            return EPOCHS * 2

        @pipeline(name="flow")
        def flow():
            train()

        if __name__ == "__main__":
            EPOCHS = 3
            flow()
    '''))
    result = run(script, cwd=tmp_path)
    assert result.returncode != 0
    assert "step `train` uses `EPOCHS`, which is defined only under " \
        "`if __name__ == \"__main__\":` (line 12 of" in result.stderr
    assert "flow.py:5:12" in result.stderr and "^^^^^^" in result.stderr
    assert "fix: define `EPOCHS` above the `if __name__ == \"__main__\":` block" in result.stderr
    assert not (tmp_path / "kale-home" / "runs").exists()


def test_globals_filled_by_module_level_calls_and_decorators_reach_the_steps(tmp_path):
    # A registry filled by a decorator, a config a function loads with `global`, two imports
    # of one package's submodules and a `;` line: as a fresh import of the script has them.
    script = tmp_path / "flow.py"
    script.write_text(textwrap.dedent('''\
        import xml.etree.ElementTree
        import xml.dom.minidom
        from kale.sdk import pipeline, step

        REGISTRY = {}

        def register(fn):
            REGISTRY[fn.__name__] = fn
            return fn

        def load():
            global CONFIG
            CONFIG = {"lr": 0.5}

        load()
        SCALE = 2; OFFSET = CONFIG["lr"] * SCALE

        @register
        def handler():
            return "handled"

        @step
        def use():
            print("GOT", sorted(REGISTRY), REGISTRY["handler"](), CONFIG, OFFSET,
                  xml.etree.ElementTree.fromstring("<a/>").tag,
                  xml.dom.minidom.parseString("<b/>").documentElement.tagName)

        @pipeline(name="registry")
        def flow():
            use()

        if __name__ == "__main__":
            flow()
    '''))
    result = run(script, cwd=tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "GOT ['handler'] handled {'lr': 0.5} 1.0 a b" in output
