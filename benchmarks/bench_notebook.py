"""Tagged notebooks against the same pipeline written with the SDK, run on demand:
``python benchmarks/bench_notebook.py [--repeats N]``.

(n) a 10-step chain of ``x = x + 1`` steps, each ``prev:`` the one before, as a tagged
    notebook (``kale run``'s path: read, plan, generate the module, parse its graph, run), and
    the same chain as an SDK script: the overhead per step of each (goal: the same; open-source
    Kale 2.3's compiled steps start a Jupyter kernel each, about 7 s per step under kfp.local);
(n') what reading the notebook into a pipeline costs before anything runs (nbformat, the
    analysis, writing and loading the generated module, the graph).

Each contender runs in a fresh interpreter; times are of the calls themselves (interpreter
start-up and imports excluded), best of ``--repeats``; "warm" is a second run in the same
process. Prints a table; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

STEPS = 10

SCRIPT = '''
from kale.sdk import pipeline, step

@step
def first():
    x = 0
    return x

@step
def inc(x):
    x = x + 1
    return x

@pipeline
def chain():
    x = first()
''' + "".join("    x = inc(x)\n" for _ in range(STEPS - 1))

TIMING = '''
import io, json, sys, time
sys.path.insert(0, {folder!r})
from kale.local import run_graph
from kale.local.progress import PlainProgress
start = time.perf_counter()
{load}
loaded = time.perf_counter() - start
graph = function.graph
times = []
for _ in range(2):
    start = time.perf_counter()
    run = run_graph(graph, {{}}, progress=PlainProgress(io.StringIO()))
    times.append(time.perf_counter() - start)
    assert run.status == "succeeded", run.status
print("BENCH " + json.dumps({{"load": loaded, "cold": times[0], "warm": times[1]}}))
'''

LOAD_NOTEBOOK = ("from kale.notebook.translate import load_pipeline\n"
                 "function = load_pipeline({path!r})[0]")
LOAD_SCRIPT = ("from kale.loader import load_script\n"
               "function = load_script({path!r}).chain")


def write_notebook(folder: Path) -> Path:
    import nbformat

    cells = [nbformat.v4.new_code_cell("x = 0")]
    cells[0].metadata["tags"] = ["step:s0"]
    for index in range(1, STEPS):
        cell = nbformat.v4.new_code_cell("x = x + 1")
        cell.metadata["tags"] = [f"step:s{index}", f"prev:s{index - 1}"]
        cells.append(cell)
    path = folder / "chain.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=cells), path)
    return path


def measure(code: str, folder: Path, repeats: int) -> dict[str, float]:
    best: dict[str, float] = {}
    for _ in range(repeats):
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                cwd=folder)
        line = next((line for line in result.stdout.splitlines() if line.startswith("BENCH ")),
                    None)
        if line is None:
            raise SystemExit(result.stdout + result.stderr)
        values = json.loads(line[6:])
        best = {key: min(value, best.get(key, value)) for key, value in values.items()}
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    repeats = parser.parse_args().repeats
    with tempfile.TemporaryDirectory(prefix="kale-bench-nb-") as temporary:
        notebook_folder = Path(temporary) / "notebook"
        script_folder = Path(temporary) / "script"
        notebook_folder.mkdir()
        script_folder.mkdir()
        notebook = write_notebook(notebook_folder)
        script = script_folder / "chain.py"
        script.write_text(SCRIPT)
        rows = []
        for label, folder, load in (
                ("notebook (kale run)", notebook_folder,
                 LOAD_NOTEBOOK.format(path=str(notebook))),
                ("SDK script", script_folder, LOAD_SCRIPT.format(path=str(script)))):
            code = TIMING.format(folder=str(folder), load=load)
            rows.append((label, measure(code, folder, repeats)))
    print(f"(n) {STEPS}-step chain, best of {repeats}\n")
    print(f"{'contender':<22}{'load + graph':>14}{'run cold':>10}{'per step':>10}"
          f"{'run warm':>10}{'per step':>10}")
    for label, values in rows:
        print(f"{label:<22}{values['load'] * 1000:>11.0f} ms{values['cold'] * 1000:>7.0f} ms"
              f"{values['cold'] * 1000 / STEPS:>7.1f} ms{values['warm'] * 1000:>7.0f} ms"
              f"{values['warm'] * 1000 / STEPS:>7.1f} ms")


if __name__ == "__main__":
    main()
