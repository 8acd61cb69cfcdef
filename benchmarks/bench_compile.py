"""Compiling for Kubeflow, run on demand: ``python benchmarks/bench_compile.py``.

A generated 500-step pipeline (the one of ``bench_definition.py``) compiled by Kale, against the
same DAG written by hand with ``kfp.dsl`` (500 components, the same edges) compiled by kfp (goal:
Kale within 1.2x). Each is timed in a fresh interpreter, from defining the components to the
written package, imports excluded; package sizes are reported too. Prints a table.

Also the 200-item fan-out of ``bench_local.py`` (c), compiled: its package holds one
``ParallelFor``, whatever the number of items. ``--kfp-local`` runs that package under kfp.local
too (SubprocessRunner; minutes: kfp.local runs the iterations one at a time).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from bench_definition import generate_pipeline, upstream_of

KALE_PROBE = '''
import importlib.util, json, sys, time
import kfp, kfp.dsl, kfp.compiler, kfp.kubernetes  # imports are not what is measured
from kale.kfp.compiler import compile_graph
start = time.perf_counter()
spec = importlib.util.spec_from_file_location("big_pipeline", sys.argv[1])
module = importlib.util.module_from_spec(spec)
sys.modules["big_pipeline"] = module
spec.loader.exec_module(module)
compile_graph(module.big.graph, sys.argv[2])
print("BENCH " + json.dumps({"seconds": time.perf_counter() - start}))
'''


def hand_written(steps: int) -> str:
    """The same DAG with plain kfp.dsl components: each step takes one or two earlier outputs."""
    parts = ["import json, sys, time\nimport kfp, kfp.compiler, kfp.kubernetes\n"
             "from kfp import dsl\nstart = time.perf_counter()\n"]
    for index in range(steps):
        parts.append(textwrap.dedent(f'''
            @dsl.component
            def step_{index}(a: str = "", b: str = "", scale: int = {index}) -> str:
                import json
                import math

                values = [math.sqrt(abs(hash((a, b, i))) % 97) for i in range(scale % 7)]
                return json.dumps({{"a": a, "b": b, "values": values}})
        '''))
    body = []
    for index in range(steps):
        values = [f"t{n}.output" if isinstance(n, int) else n for n in upstream_of(index)]
        args = [f"{name}={value}" for name, value in zip("ab", values, strict=False)]
        body.append(f"    t{index} = step_{index}({', '.join(args)})")
        body.append(f"    t{index}.set_retry(num_retries={index % 3})")
    parts.append('\n@dsl.pipeline(name="big")\ndef big(source: str = "db", '
                 'iterations: int = 10):\n' + "\n".join(body) + "\n")
    parts.append('kfp.compiler.Compiler().compile(big, sys.argv[2])\n'
                 'print("BENCH " + json.dumps({"seconds": time.perf_counter() - start}))\n')
    return "".join(parts)


FANOUT = '''
from kale.sdk import pipeline, step


@step
def items(n):
    return list(range(n))


@step
def square(x):
    return x * x


@step
def total(values):
    return sum(values)


@pipeline(name="fanout")
def fanout(n=200):
    numbers = items(n)
    squares = [square(x) for x in numbers]
    total(squares)
'''

KFP_LOCAL_PROBE = '''
import json, sys, time
from kfp import components, local
local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=sys.argv[2])
pipeline = components.load_component_from_file(sys.argv[1])
start = time.perf_counter()
pipeline(n=int(sys.argv[3]))
print("BENCH " + json.dumps({"seconds": time.perf_counter() - start}))
'''


def run(code: str, *args: str) -> float | str:
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as handle:
        handle.write(code)
    try:
        result = subprocess.run([sys.executable, handle.name, *args], capture_output=True,
                                text=True)
    finally:
        os.unlink(handle.name)
    # kfp.local sends what runs in its process to stderr: the probe's line may be there.
    lines = [line for line in (result.stdout + "\n" + result.stderr).splitlines()
             if line.startswith("BENCH ")]
    if result.returncode != 0 or not lines:
        said = (result.stderr.strip() or result.stdout.strip()).splitlines() or ["?"]
        return f"failed: {said[-1][:70]}"
    return json.loads(lines[-1][6:])["seconds"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--kfp-local", action="store_true",
                        help="also run the fan-out package under kfp.local (minutes)")
    parser.add_argument("--items", type=int, default=200, help="items of the fan-out")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        project = folder / "project"
        project.mkdir()
        (project / "big_pipeline.py").write_text(generate_pipeline(args.steps))
        kale_times, kfp_times = [], []
        for _ in range(args.repeats):
            kale_times.append(run(KALE_PROBE, str(project / "big_pipeline.py"),
                                  str(folder / "kale.yaml")))
            kfp_times.append(run(hand_written(args.steps), "", str(folder / "kfp.yaml")))
        kale = min((t for t in kale_times if isinstance(t, float)), default=kale_times[0])
        hand = min((t for t in kfp_times if isinstance(t, float)), default=kfp_times[0])
        (project / "fanout_pipeline.py").write_text(FANOUT.replace("n=200", f"n={args.items}"))
        fanout_times = [run(KALE_PROBE.replace("module.big.graph", "module.fanout.graph")
                            .replace('"big_pipeline"', '"fanout_pipeline"'),
                            str(project / "fanout_pipeline.py"), str(folder / "fanout.yaml"))
                        for _ in range(args.repeats)]
        fanout = min((t for t in fanout_times if isinstance(t, float)),
                     default=fanout_times[0])
        kfp_local: float | str = "not run (--kfp-local)"
        if args.kfp_local and (folder / "fanout.yaml").exists():
            kfp_local = run(KFP_LOCAL_PROBE, str(folder / "fanout.yaml"), str(folder / "root"),
                            str(args.items))
        sizes = {label: (folder / file).stat().st_size if (folder / file).exists() else 0
                 for label, file in (("kale", "kale.yaml"), ("kfp", "kfp.yaml"),
                                     ("fanout", "fanout.yaml"))}
    rows = [("scenario", "time", "package")]
    rows.append((f"Kale, {args.steps} steps", f"{kale:.2f} s" if isinstance(kale, float)
                 else kale, f"{sizes['kale'] / 2**20:.1f} MB"))
    rows.append((f"kfp.dsl by hand, {args.steps} steps", f"{hand:.2f} s" if isinstance(
        hand, float) else hand, f"{sizes['kfp'] / 2**20:.1f} MB"))
    if isinstance(kale, float) and isinstance(hand, float):
        rows.append(("ratio (goal <= 1.2)", f"{kale / hand:.2f}x", ""))
    rows.append((f"Kale, fan-out of {args.items} + collect", f"{fanout:.2f} s" if isinstance(
        fanout, float) else fanout, f"{sizes['fanout'] / 2**10:.0f} KB"))
    rows.append((f"  run under kfp.local, {args.items} items", (
        f"{kfp_local:.1f} s ({kfp_local / args.items * 1000:.0f} ms/iteration)"
        if isinstance(kfp_local, float) else kfp_local), ""))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    for index, row in enumerate(rows):
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))
        if index == 0:
            print("  ".join("-" * width for width in widths))
    print(f"\npython {sys.version.split()[0]}, {os.cpu_count()} CPUs, best of {args.repeats}")


if __name__ == "__main__":
    main()
