"""``kale ui`` page loads over a big run store, run on demand: ``python benchmarks/bench_ui.py``.

Makes a store of ``--runs`` runs (goal: the runs page under 300 ms with 1,000): one real local
run of a 3-step pipeline that logs metrics and an HTML artifact, copied with new ids and
parameter values; then times, over HTTP from a local client, the runs page, one run's page, the
pipeline's metric charts and a comparison of 10 runs: the first load, which reads every
record, and the median of the next five, which find them unchanged. Prints a table; asserts
nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

SCRIPT = '''
from kale.sdk import pipeline, step
from kale.sdk.logging import log_metric, log_html

@step
def load(n: int):
    return list(range(n))

@step
def train(data, rate: float):
    log_metric("loss", 1 / (1 + rate))
    log_metric("accuracy", 0.5 + rate / 2)
    log_html("report", "<p>%s</p>" % rate)
    return {"rows": len(data), "rate": rate}

@step
def report(summary):
    print(summary)

@pipeline(name="bench-ui")
def bench(n: int = 10, rate: float = 0.5):
    data = load(n)
    summary = train(data, rate)
    report(summary)

if __name__ == "__main__":
    bench()
'''


def make_store(folder: Path, count: int) -> Path:
    home = folder / "home"
    (folder / "bench.py").write_text(SCRIPT)
    subprocess.run([sys.executable, "bench.py"], cwd=folder, check=True, capture_output=True,
                   env={**os.environ, "KALE_HOME": str(home), "KALE_PROGRESS": "plain"})
    (original,) = (home / "runs").iterdir()
    text = (original / "run.json").read_text()
    for index in range(count - 1):
        run_id = str(uuid.uuid4())
        copy = home / "runs" / run_id
        shutil.copytree(original, copy)
        data = json.loads(text.replace(original.name, run_id))
        data["parameters"]["rate"] = index / count
        data["started"] = data["started"][:20] + f"{index:06d}" + data["started"][26:]
        for step in data["steps"].values():
            for attempt in step["attempts"]:
                if "accuracy" in attempt.get("metrics", {}):
                    attempt["metrics"]["accuracy"] = 0.5 + index / count / 2
        (copy / "run.json").write_text(json.dumps(data))
    return home


def median_ms(url: str, loads: int = 6) -> tuple[float, float, int]:
    """The first load (records parsed) and the median of the next ones (records cached)."""
    timings, size = [], 0
    for _ in range(loads):
        started = time.perf_counter()
        with urllib.request.urlopen(url) as response:
            size = len(response.read())
        timings.append((time.perf_counter() - started) * 1000)
    return timings[0], statistics.median(timings[1:]), size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000)
    options = parser.parse_args()
    from kale.ui import serve_in_thread

    with tempfile.TemporaryDirectory() as folder:
        home = make_store(Path(folder), options.runs)
        server, url = serve_in_thread(home)
        try:
            ids = sorted(path.name for path in (home / "runs").iterdir())
            rows = [
                (f"runs page, {options.runs} runs (goal < 300 ms)", *median_ms(url)),
                ("one run's page", *median_ms(f"{url}run/{ids[0]}")),
                (f"metric charts, {options.runs} runs",
                 *median_ms(f"{url}charts?pipeline=bench-ui")),
                ("compare 10 runs", *median_ms(url + "compare?" + "&".join(
                    f"run={run_id}" for run_id in ids[:10]))),
            ]
        finally:
            server.shutdown()
            server.server_close()
    width = max(len(label) for label, _, _, _ in rows)
    print(f"{'page':<{width}}  {'first':>9}  {'then':>9}  {'size':>9}")
    for label, first, then, size in rows:
        print(f"{label:<{width}}  {first:7.1f}ms  {then:7.1f}ms  {size / 1024:7.0f}KB")


if __name__ == "__main__":
    main()
