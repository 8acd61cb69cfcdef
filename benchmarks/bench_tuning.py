"""What a local study costs per trial beyond the pipeline's own runs, run on demand:
``python benchmarks/bench_tuning.py [--trials N] [--repeats R]``.

A one-step pipeline (``x + 1``, logging one metric) is run N times in a row as ``p.run()`` runs
it (progress silenced, as a trial's is), then tuned with N trials: the difference, per trial, is
what the study adds (Optuna's proposal and its bookkeeping, the trial's thread, the study
record rewritten after each trial, the progress line). Random search and TPE (whose proposals
cost more as trials accumulate: its density model is refit each time), one trial at a time;
and TPE with two at a time, where the trials overlap (its time per trial is not comparable to
a run's). Each row in a fresh interpreter, median of the repeats. Goal: at most 20 ms per trial.
Prints a table; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

PIPELINE = '''
from kale.sdk import pipeline, step
from kale.sdk.logging import log_metric


@step
def add(x: float):
    log_metric("value", x + 1)


@pipeline(name="bench-tuning")
def bench(x: float = 0.0):
    add(x)
'''

PROBE = '''
import contextlib, io, json, sys, time
sys.path.insert(0, sys.argv[1])
from flow import bench
from kale.sdk.tuning import Float
from kale.local import run_graph
from kale.local.progress import PlainProgress
mode, trials = sys.argv[2], int(sys.argv[3])


class Quiet(PlainProgress):  # as a trial's run shows nothing
    def _write(self, text): pass
    def start(self, run, parallelism): pass
    def step_changed(self, step, status, detail=""): pass
    def finish(self, run): pass


bench.run(x=0.5)  # warm: the zygote started, Kale's local-run modules imported
import optuna  # noqa: F401 - once per process, on its own row
with contextlib.redirect_stdout(io.StringIO()):
    start = time.perf_counter()
    if mode == "runs":
        for number in range(trials):
            run_graph(bench.graph, bench.bind_arguments(x=number / trials), progress=Quiet())
    else:
        algorithm, _, parallel = mode.partition("-")
        bench.tune(parameters={"x": Float(0, 1)}, objective="value", algorithm=algorithm,
                   max_trials=trials, parallel_trials=int(parallel or 1), seed=1)
    elapsed = time.perf_counter() - start
print(json.dumps({"seconds": elapsed}))
'''


def measure(folder: Path, mode: str, trials: int) -> float:
    environment = {**os.environ, "KALE_HOME": str(folder / f"home-{mode}"),
                   "KALE_PROGRESS": "plain"}
    done = subprocess.run([sys.executable, "-c", PROBE, str(folder), mode, str(trials)],
                          capture_output=True, text=True, env=environment, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])["seconds"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=3)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="kale-bench-tuning-") as name:
        folder = Path(name)
        (folder / "flow.py").write_text(textwrap.dedent(PIPELINE))
        # Optuna's import is paid once per process by the first tune(): shown on its own row.
        rows = []
        medians = {}
        for mode in ("runs", "random", "tpe", "tpe-2"):
            times = [measure(folder, mode, options.trials) for _ in range(options.repeats)]
            medians[mode] = statistics.median(times) / options.trials
        probe = "import time; s = time.perf_counter(); import optuna; " \
                "print(time.perf_counter() - s)"
        optuna_import = float(subprocess.run([sys.executable, "-c", probe], capture_output=True,
                                             text=True, check=True).stdout)
        base = medians["runs"]
        labels = {"runs": "local runs, one after another", "random": "tune(), random",
                  "tpe": "tune(), tpe", "tpe-2": "tune(), tpe, parallel_trials=2"}
        for mode, per in medians.items():
            extra = "" if mode == "runs" else f"{(per - base) * 1000:+.1f} ms"
            if mode == "tpe-2":
                extra = "(trials overlap)"
            rows.append((labels[mode], f"{per * 1000:.1f} ms", extra))
        rows.append(("import optuna (once per process)", f"{optuna_import * 1000:.0f} ms", ""))
    print(f"{options.trials} trials of a one-step pipeline, median of {options.repeats} "
          f"(load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)\n")
    widths = [max(len(row[i]) for row in [("", "per trial", "beyond a run"), *rows])
              for i in range(3)]
    for row in [("", "per trial", "beyond a run"), *rows]:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))
    print("\ngoal: at most 20 ms per trial beyond the pipeline's own run")


if __name__ == "__main__":
    main()
