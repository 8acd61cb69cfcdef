"""Measures of the definition language, run on demand: ``python benchmarks/bench_definition.py``.

- ``import kale.sdk`` in a fresh interpreter (goal: at most 50 ms; it must not import kfp, numpy
  or pandas);
- building the graph of a generated 500-step pipeline (parse the body, bind every call, check
  every step; goal: at most 100 ms), cold, in a fresh interpreter each time: once with 500
  distinct step functions (a 4,500-line file), once with 10 functions called 50 times each;
  each with Kale's own modules compiled in the run (``PYTHONDONTWRITEBYTECODE=1``) and with
  their bytecode cached, as after ``pip install``.

Prints a table; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

HEAVY = ("kfp", "numpy", "pandas", "kale.graph", "click")


def bytecode_environment(folder: str | None) -> dict[str, str]:
    """The environment of a measured interpreter: with ``folder``, Python's cache of compiled
    modules on and kept there (as where pip installed Kale); without, every module compiled in
    every run (``PYTHONDONTWRITEBYTECODE=1``, as this machine sets it)."""
    environment = dict(os.environ)
    if folder is None:
        environment["PYTHONDONTWRITEBYTECODE"] = "1"
    else:
        environment.pop("PYTHONDONTWRITEBYTECODE", None)
        environment["PYTHONPYCACHEPREFIX"] = folder
    return environment


def fresh_interpreter_ms(code: str, runs: int, cache: str | None = None) -> list[float]:
    environment = bytecode_environment(cache)
    if cache is not None:  # a first run fills the cache
        subprocess.run([sys.executable, "-c", code], capture_output=True, check=True,
                       env=environment)
    timings = []
    for _ in range(runs):
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                check=True, env=environment)
        timings.append(float(result.stdout.strip().splitlines()[-1]))
    return timings


def import_times(runs: int) -> tuple[list[float], list[float], list[str], list[float]]:
    probe = ("import time, sys; t = time.perf_counter(); import kale.sdk; "
             "elapsed = (time.perf_counter() - t) * 1000; "
             f"print(','.join(m for m in {HEAVY!r} if m in sys.modules)); print(elapsed)")
    heavy_seen = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                                check=True).stdout.splitlines()[0]
    sdk = fresh_interpreter_ms(probe, runs)
    with tempfile.TemporaryDirectory() as cache:
        sdk_cached = fresh_interpreter_ms(probe, runs, cache)
    startup = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        startup.append((time.perf_counter() - start) * 1000)
    return sdk, startup, [m for m in heavy_seen.split(",") if m], sdk_cached


def upstream_of(index: int) -> list[int | str]:
    """What step ``index`` of the generated DAG reads: earlier steps (by number) or "source"."""
    upstream: list[int | str] = []
    if index >= 1:
        upstream.append(index - 1)
    if index >= 7:
        upstream.append(index - 7)
    if index % 50 == 0:
        upstream = ["source", *upstream[:1]]
    return upstream


def generate_pipeline(steps: int, calls_per_step: int = 1) -> str:
    """A module with ``steps // calls_per_step`` step functions and a pipeline of ``steps`` calls;
    each call reads one or two earlier outputs, so the graph is a wide, deep DAG."""
    parts = ["from kale.sdk import pipeline, step\n\n"]
    functions = steps // calls_per_step
    for index in range(functions):
        parts.append(textwrap.dedent(f'''
            @step(name="step {index}", retry_count={index % 3}, timeout="{1 + index % 5}m")
            def step_{index}(a=None, b=None, scale={index}):
                import json
                import math

                values = [math.sqrt(abs(hash((a, b, i))) % 97) for i in range(scale % 7)]
                return json.dumps({{"a": a, "b": b, "values": values}})
        '''))
    body = []
    for index in range(steps):
        args = [f"out_{n}" if isinstance(n, int) else n for n in upstream_of(index)]
        body.append(f"    out_{index} = step_{index % functions}({', '.join(args)})")
    parts.append('\n\n@pipeline(name="big", steps_defaults={"retry_interval": "5s"})\n'
                 'def big(source="db", iterations=10):\n' + "\n".join(body) + "\n")
    return "".join(parts)


PARSE_PROBE = """
import importlib.util, sys, time
spec = importlib.util.spec_from_file_location("big_pipeline", sys.argv[1])
module = importlib.util.module_from_spec(spec)
sys.modules["big_pipeline"] = module
spec.loader.exec_module(module)
start = time.perf_counter()
graph = module.big.graph
elapsed = (time.perf_counter() - start) * 1000
assert len(graph.steps) == int(sys.argv[2])
print(len(graph.edges))
print(elapsed)
"""


def parse_times(steps: int, repeats: int, calls_per_step: int = 1,
                bytecode: bool = False) -> tuple[list[float], int, int]:
    """Time ``pipeline.graph`` (parse, bind, check every step) in fresh interpreters, so every
    run is cold: the file is read and nothing is cached. The module import is not timed.

    The graph's first use imports ``kale.graph``. With ``bytecode``, Python's cache of compiled
    modules is on (in a folder of its own, filled by a first run not timed), as where pip
    installed Kale; without, Kale's modules are compiled in every run, as on a machine with
    ``PYTHONDONTWRITEBYTECODE=1`` set (this one), which adds about 40 ms."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "big_pipeline.py"
        text = generate_pipeline(steps, calls_per_step)
        path.write_text(text)
        environment = bytecode_environment(str(Path(folder) / "pycache") if bytecode else None)
        if bytecode:  # a first run fills the cache
            subprocess.run([sys.executable, "-c", PARSE_PROBE, str(path), str(steps)],
                           capture_output=True, text=True, check=True, env=environment)
        timings, edges = [], 0
        for _ in range(repeats):
            result = subprocess.run([sys.executable, "-c", PARSE_PROBE, str(path), str(steps)],
                                    capture_output=True, text=True, check=True,
                                    env=environment)
            edges_text, elapsed = result.stdout.split()
            timings.append(float(elapsed))
            edges = int(edges_text)
        return timings, len(text.splitlines()), edges


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20, help="fresh interpreters for imports")
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()

    sdk, startup, heavy, sdk_cached = import_times(args.runs)
    distinct, lines, edges = parse_times(args.steps, args.repeats)
    shared, shared_lines, _ = parse_times(args.steps, args.repeats, calls_per_step=50)
    distinct_cached, _, _ = parse_times(args.steps, args.repeats, bytecode=True)
    shared_cached, _, _ = parse_times(args.steps, args.repeats, calls_per_step=50,
                                      bytecode=True)

    rows = [
        ("import kale.sdk, median", f"{statistics.median(sdk):.1f} ms", "<= 50 ms"),
        ("import kale.sdk, min", f"{min(sdk):.1f} ms", ""),
        ("heavy modules imported by kale.sdk", ", ".join(heavy) or "none", "none"),
        ("python -c pass (for context)", f"{statistics.median(startup):.1f} ms", ""),
        (f"{args.steps} steps, {args.steps} functions: graph, median",
         f"{statistics.median(distinct):.1f} ms", "<= 100 ms"),
        (f"{args.steps} steps, {args.steps} functions: graph, max", f"{max(distinct):.1f} ms", ""),
        ("  (file lines / graph edges)", f"{lines} / {edges}", ""),
        (f"{args.steps} steps, {args.steps // 50} functions: graph, median",
         f"{statistics.median(shared):.1f} ms", "<= 100 ms"),
        ("  (file lines)", f"{shared_lines}", ""),
        ("  the same with Kale's bytecode cached (as pip installs it):", "", ""),
        ("import kale.sdk, median", f"{statistics.median(sdk_cached):.1f} ms", "<= 50 ms"),
        (f"{args.steps} steps, {args.steps} functions: graph, median",
         f"{statistics.median(distinct_cached):.1f} ms", "<= 100 ms"),
        (f"{args.steps} steps, {args.steps // 50} functions: graph, median",
         f"{statistics.median(shared_cached):.1f} ms", "<= 100 ms"),
    ]
    width = max(len(row[0]) for row in rows)
    print(f"{'measure':<{width}}  {'result':>12}  goal")
    print(f"{'-' * width}  {'-' * 12}  {'-' * 9}")
    for name, result, goal in rows:
        print(f"{name:<{width}}  {result:>12}  {goal}")
    print(f"\npython {sys.version.split()[0]} on {sys.platform}; runs={args.runs}, "
          f"repeats={args.repeats}")


if __name__ == "__main__":
    main()
