"""Compiling for Kubeflow, run on demand: ``python benchmarks/bench_compile.py``.

A generated 500-step pipeline (the one of ``bench_definition.py``) compiled by Kale, against the
same DAG written by hand with ``kfp.dsl`` (500 components, the same edges) compiled by kfp (goal:
Kale within 1.2x). Each is timed in a fresh interpreter, from defining the components to the
written package, imports excluded; package sizes are reported too. Prints a table.
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


def run(code: str, *args: str) -> float | str:
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as handle:
        handle.write(code)
    try:
        result = subprocess.run([sys.executable, handle.name, *args], capture_output=True,
                                text=True)
    finally:
        os.unlink(handle.name)
    lines = [line for line in result.stdout.splitlines() if line.startswith("BENCH ")]
    if result.returncode != 0 or not lines:
        return f"failed: {(result.stderr.strip().splitlines() or ['?'])[-1][:70]}"
    return json.loads(lines[-1][6:])["seconds"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=3)
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
        sizes = {label: (folder / file).stat().st_size if (folder / file).exists() else 0
                 for label, file in (("kale", "kale.yaml"), ("kfp", "kfp.yaml"))}
    rows = [("scenario", "time", "package")]
    rows.append((f"Kale, {args.steps} steps", f"{kale:.2f} s" if isinstance(kale, float)
                 else kale, f"{sizes['kale'] / 2**20:.1f} MB"))
    rows.append((f"kfp.dsl by hand, {args.steps} steps", f"{hand:.2f} s" if isinstance(
        hand, float) else hand, f"{sizes['kfp'] / 2**20:.1f} MB"))
    if isinstance(kale, float) and isinstance(hand, float):
        rows.append(("ratio (goal <= 1.2)", f"{kale / hand:.2f}x", ""))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    for index, row in enumerate(rows):
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))
        if index == 0:
            print("  ".join("-" * width for width in widths))
    print(f"\npython {sys.version.split()[0]}, {os.cpu_count()} CPUs, best of {args.repeats}")


if __name__ == "__main__":
    main()
