"""What step caching costs, run on demand: ``python benchmarks/bench_cache.py``.

(a) computing the cache keys of every task of a generated 500-step pipeline (bench_definition's
    DAG: each step reads one or two earlier outputs), with 500 distinct step functions and with
    10 functions called 50 times; cold (nothing known: every step's code is parsed and dumped)
    and warm (the code hashes a previous run kept in the cache folder), in a fresh interpreter
    each time. The graph is built first and not timed, nor is the import scan the scheduler
    does anyway (to preload the steps' libraries). Goal: at most 100 ms.
(b) a 20-step chain run with every step cached (and resumed: every step reused from the run
    record, with the cache off): the pipeline call from start to end, in a fresh
    interpreter (start-up and the script's imports excluded; the modules of Kale's local runs,
    which the call imports, included), after a first run filled the cache. Goal: at most 200 ms
    in all. Also with those modules imported before (a notebook's second run), and the chain's
    first, uncached run for comparison.

Python writes and reads compiled modules (``PYTHONDONTWRITEBYTECODE`` is dropped from the
interpreters' environment), as a user's Python does. Prints a table; asserts nothing.
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

sys.path.insert(0, str(Path(__file__).parent))
from bench_definition import generate_pipeline

KEYS_PROBE = """
import importlib.util, json, sys, time
spec = importlib.util.spec_from_file_location("big_pipeline", sys.argv[1])
module = importlib.util.module_from_spec(spec)
sys.modules["big_pipeline"] = module
spec.loader.exec_module(module)
graph = module.big.graph
graph.external_imports  # the scheduler computes this at its start anyway
from kale.cache import CodeHashes, KeyBuilder
start = time.perf_counter()
builder = KeyBuilder(graph, CodeHashes(sys.argv[2]))
stored = {"backend": "json", "type": "str", "path": "/x", "size": 10}
keys = set()
for number, step in enumerate(graph.steps):
    inputs = {}
    for argument in step.arguments:
        if argument.source.__class__.__name__ == "ParameterRef":
            inputs[argument.name] = ("parameter", "db")
        else:
            inputs[argument.name] = ("stored", {**stored, "hash": f"xxh3:{number:016x}"})
    keys.add(builder.key(step, inputs))
elapsed = (time.perf_counter() - start) * 1000
builder.code.save()
assert len(keys) == len(graph.steps)
print(elapsed)
"""


def _env(**extra: str) -> dict[str, str]:
    env = {**os.environ, **extra}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def key_times(steps: int, repeats: int, calls_per_step: int) -> tuple[list[float], list[float]]:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "big_pipeline.py"
        path.write_text(generate_pipeline(steps, calls_per_step))
        cold, warm = [], []
        for repeat in range(repeats):
            memo = Path(folder) / f"cache-{repeat}"
            for timings in (cold, warm):  # the first finds no memo; the second reads it
                result = subprocess.run([sys.executable, "-c", KEYS_PROBE, str(path),
                                         str(memo)], capture_output=True, text=True, check=True,
                                        env=_env())
                timings.append(float(result.stdout.split()[-1]))
        return cold, warm


CHAIN = '''
import io, json, sys, time
from kale.sdk import pipeline, step
from kale.local import run_graph
from kale.local.progress import PlainProgress

@step(cache=True)
def inc(x):
    return x + 1

@pipeline
def chain(x=0):
''' + "\n".join("    x = inc(x)" for _ in range(20)) + '''

if __name__ == "__main__":
    graph = chain.graph
    if "--imported" in sys.argv:  # what a first local run imports, as a notebook has it
        import kale.cache, kale.local.scheduler, uuid
    start = time.perf_counter()
    run = run_graph(graph, {"x": 0}, progress=PlainProgress(io.StringIO()),
                    cache=False if "--resumed" in sys.argv else None,
                    resume=True if "--resumed" in sys.argv else None)
    elapsed = time.perf_counter() - start
    statuses = sorted({step.status for step in run.steps.values()})
    print("BENCH " + json.dumps({"seconds": elapsed, "statuses": statuses,
                                 "result": run.output("inc-20")}))
'''


def chain_times(repeats: int
                ) -> tuple[list[float], list[float], list[float], list[float]]:
    first, cached, imported, resumed = [], [], [], []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "chain.py"
            path.write_text(textwrap.dedent(CHAIN))
            env = _env(KALE_HOME=str(Path(folder) / ".kale"))
            for timings, expected, flag in ((first, ["succeeded"], ""),
                                            (cached, ["cached"], ""),
                                            (imported, ["cached"], "--imported"),
                                            (resumed, ["cached"], "--resumed")):
                result = subprocess.run([sys.executable, str(path), *filter(None, [flag])],
                                        capture_output=True, text=True, check=True,
                                        cwd=folder, env=env)
                line = next(line for line in result.stdout.splitlines()
                            if line.startswith("BENCH "))
                data = json.loads(line[6:])
                assert data["statuses"] == expected and data["result"] == 20, data
                timings.append(data["seconds"] * 1000)
    return first, cached, imported, resumed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    distinct_cold, distinct_warm = key_times(args.steps, args.repeats, 1)
    shared_cold, shared_warm = key_times(args.steps, args.repeats, 50)
    first, cached, imported, resumed = chain_times(args.repeats)

    def ms(values: list[float]) -> str:
        return f"{statistics.median(values):.1f} ms"

    rows = [
        (f"keys of {args.steps} steps, {args.steps} functions, cold", ms(distinct_cold),
         "<= 100 ms"),
        (f"keys of {args.steps} steps, {args.steps} functions, warm", ms(distinct_warm),
         "<= 100 ms"),
        (f"keys of {args.steps} steps, {args.steps // 50} functions, cold", ms(shared_cold),
         "<= 100 ms"),
        (f"keys of {args.steps} steps, {args.steps // 50} functions, warm", ms(shared_warm),
         "<= 100 ms"),
        ("20-step chain, every step cached: the whole call", ms(cached), "<= 200 ms"),
        ("  the same, Kale's run modules imported before", ms(imported), ""),
        ("20-step chain, first run (for comparison)", ms(first), ""),
        ("20-step chain resumed (--no-cache: all 20 from the run record)", ms(resumed),
         "<= 200 ms"),
    ]
    width = max(len(row[0]) for row in rows)
    print(f"{'measure (median)':<{width}}  {'result':>10}  goal")
    print(f"{'-' * width}  {'-' * 10}  {'-' * 9}")
    for name, result, goal in rows:
        print(f"{name:<{width}}  {result:>10}  {goal}")
    print(f"\npython {sys.version.split()[0]} on {sys.platform}, {os.cpu_count()} CPUs; "
          f"repeats={args.repeats}")


if __name__ == "__main__":
    main()
