"""Data passing by type, run on demand: ``python benchmarks/bench_marshal.py``.

For a 1 GB float64 array, a 10-million-row mixed-type DataFrame and a fitted scikit-learn model
(a 3 MB random forest), side by side: Kale's backend (``kale.marshal``), the same at an earlier
commit (``--before REV``, default ``main``: its ``src/kale`` is taken with ``git archive``), and
the plain library calls it competes with: ``np.save`` / ``np.load(mmap_mode="r")`` for arrays,
Feather (``pyarrow.feather``, uncompressed, read memory-mapped) for frames, joblib for models,
and pickle (protocol 5) for all three. Goals (issue 19): arrays written within 10 % of
``np.save``; frames written at least as fast as Feather and read without copying their numeric
columns; a small model stored at pickle's cost.

Contenders are interleaved (repeat 1 of every contender, then repeat 2, ...) and each row gives
the min and median of ``--repeats`` (>= 5). Each measurement runs in its own process, which
writes the value twice and reads it twice: first "cold" (the memory it writes to, the files'
pages or its private copies, has not been touched by the process), then "warm" (the same amount
was touched and freed just before: on this machine memory touched for the first time costs
about 3 ns/byte, which would otherwise decide the result). "peak" is what the cold write added to
the process's peak memory (Linux ``VmHWM``); "private" is the private memory (``RssAnon``) the
cold read added, after a pass over the numeric data (a mapped read adds none; a frame's string
column is Python objects, whatever the format). Needs numpy,
pandas, pyarrow and scikit-learn. Prints a table; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

PROBE = r'''
import gc, json, os, sys, time, pickle
kind, method, folder, rows, before = sys.argv[1:6]
rows = int(rows)
if method == "kale@before":
    sys.path.insert(0, before)  # the earlier Kale, ahead of the installed one
import numpy as np

def status(field):
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(field):
                return int(line.split()[1]) * 1024
    return 0

def make():
    if kind == "array":
        return np.arange(rows, dtype="float64")
    if kind == "frame":
        import pandas as pd
        rng = np.random.default_rng(0)
        names = np.array([f"name-{i}" for i in range(100)], dtype=object)
        return pd.DataFrame({
            "id": np.arange(rows, dtype="int64"),
            "value": rng.random(rows),
            "flag": rng.random(rows) > 0.5,
            "when": pd.date_range("2026-01-01", periods=rows, freq="s"),
            "group": pd.Categorical.from_codes(rng.integers(0, 20, rows),
                                               [f"g{i}" for i in range(20)]),
            "name": names[rng.integers(0, 100, rows)],
        })
    from sklearn.ensemble import RandomForestClassifier
    rng = np.random.default_rng(0)
    x = rng.random((rows, 20)); y = (x[:, 0] + x[:, 1] > 1).astype(int)
    return RandomForestClassifier(n_estimators=30, max_depth=14, random_state=0).fit(x, y)

def size_of(value):
    if kind == "array":
        return value.nbytes
    if kind == "frame":
        return int(value.memory_usage(index=True, deep=True).sum())
    return len(pickle.dumps(value, protocol=5))

def write(value, name):
    path = os.path.join(folder, name)
    if method.startswith("kale"):
        from kale import marshal
        return marshal.save(value, folder, name).to_json()
    if method == "np.save":
        np.save(path, value)
        return path + ".npy"
    if method == "feather":
        import pyarrow.feather as feather
        feather.write_feather(value, path, compression="uncompressed")
        return path
    if method == "joblib":
        import joblib
        joblib.dump(value, path)
        return path
    with open(path, "wb") as handle:
        pickle.dump(value, handle, protocol=5)
    return path

def read(stored):
    if method.startswith("kale"):
        from kale import marshal
        return marshal.load(stored)
    if method == "np.save":
        return np.load(stored, mmap_mode="r")
    if method == "feather":
        import pyarrow.feather as feather
        return feather.read_feather(stored, memory_map=True)
    if method == "joblib":
        import joblib
        return joblib.load(stored)
    with open(stored, "rb") as handle:
        return pickle.load(handle)

def touch(value):
    """A pass over the numeric data, as a step would make."""
    if kind == "array":
        return float(value[::512].sum())  # one value per 4 KB page
    if kind == "frame":
        return sum(float(value[c].to_numpy()[::512].astype("float64").sum())
                   for c in ("id", "value"))
    return 0.0

def remove(stored):
    path = stored["path"] if isinstance(stored, dict) else stored
    for name in os.listdir(folder):
        full = os.path.join(folder, name)
        if full == path or full.startswith(path.rsplit(".", 1)[0] + "."):
            os.unlink(full)

def warm_up(size):
    """Touch and free as much memory as the value, and as many file pages as it takes."""
    scratch = np.ones(size // 8 + 1)
    del scratch
    with open(os.path.join(folder, "scratch"), "wb") as handle:
        handle.write(bytes(size))
    os.unlink(os.path.join(folder, "scratch"))

import cloudpickle  # imported before timing, for every method alike
if method.startswith("kale"):
    import kale.marshal.backends
value = make()
size = size_of(value)
result = {"size": size}
with open("/proc/self/clear_refs", "w") as handle:
    handle.write("5")  # reset the peak
before_peak = status("VmRSS:")
start = time.perf_counter(); stored = write(value, "cold")
result["write_cold"] = time.perf_counter() - start
result["peak"] = status("VmHWM:") - before_peak
remove(stored)
warm_up(size)
start = time.perf_counter(); stored = write(value, "warm")
result["write_warm"] = time.perf_counter() - start
del value; gc.collect()
anon = status("RssAnon:")
start = time.perf_counter(); loaded = read(stored)
result["read_cold"] = time.perf_counter() - start
touch(loaded)
# (the first read: Arrow's memory pool keeps what it freed, so a second read would hide copies)
result["private"] = max(0, status("RssAnon:") - anon)
del loaded; gc.collect()
warm_up(size)
start = time.perf_counter(); loaded = read(stored)
result["read_warm"] = time.perf_counter() - start
print("BENCH " + json.dumps(result))
'''

METHODS = {"array": ["kale", "kale@before", "np.save", "pickle"],
           "frame": ["kale", "kale@before", "feather", "pickle"],
           "model": ["kale", "kale@before", "joblib", "pickle"]}
REFERENCE = {"array": "np.save", "frame": "feather", "model": "pickle"}
MEASURES = ("write_cold", "write_warm", "read_cold", "read_warm")


def earlier_kale(revision: str, into: str) -> str | None:
    """``src/kale`` of ``revision`` extracted into ``into`` (None: not a git checkout)."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    archive = subprocess.run(["git", "-C", root, "archive", revision, "src/kale"],
                             capture_output=True)
    if archive.returncode != 0:
        return None
    subprocess.run(["tar", "-x", "-C", into], input=archive.stdout, check=True)
    return os.path.join(into, "src")


def probe(kind: str, method: str, rows: int, where: str | None, before: str) -> dict | str:
    with tempfile.TemporaryDirectory(dir=where) as folder:
        result = subprocess.run([sys.executable, "-c", PROBE, kind, method, folder, str(rows),
                                 before], capture_output=True, text=True)
    lines = [line for line in result.stdout.splitlines() if line.startswith("BENCH ")]
    if result.returncode != 0 or not lines:
        return f"failed: {(result.stderr.strip().splitlines() or ['?'])[-1][:60]}"
    return json.loads(lines[-1][6:])


def seconds(values: list[float]) -> str:
    return f"{min(values) * 1000:,.0f}/{statistics.median(values) * 1000:,.0f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--array-gb", type=float, default=1.0)
    parser.add_argument("--frame-rows", type=int, default=10_000_000)
    parser.add_argument("--model-rows", type=int, default=50_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--before", default="main",
                        help="the git revision of the 'kale@before' rows (default: main)")
    parser.add_argument("--only", choices=sorted(METHODS), action="append",
                        help="measure only this kind of value (repeatable)")
    parser.add_argument("--folder", default="/dev/shm" if os.path.isdir("/dev/shm") else None,
                        help="where files are written (default: /dev/shm, memory, so that the "
                        "disk's write-back state does not decide the result; give a disk "
                        "folder to include the disk)")
    args = parser.parse_args()
    sizes = {"array": int(args.array_gb * 2**30) // 8, "frame": args.frame_rows,
             "model": args.model_rows}
    kinds = args.only or list(METHODS)
    header = ("value", "method", "size", "write cold", "write warm", "GB/s warm", "vs ref",
              "read cold", "read warm", "peak", "private")
    rows = [header]
    with tempfile.TemporaryDirectory() as scratch:
        before = earlier_kale(args.before, scratch)
        for kind in kinds:
            methods = [m for m in METHODS[kind] if before or m != "kale@before"]
            results: dict[str, list[dict]] = {m: [] for m in methods}
            failed: dict[str, str] = {}
            for _ in range(args.repeats):  # interleaved: one of each, again and again
                for method in methods:
                    if method in failed:
                        continue
                    result = probe(kind, method, sizes[kind], args.folder, before or "")
                    if isinstance(result, str):
                        failed[method] = result
                    else:
                        results[method].append(result)
            reference = results.get(REFERENCE[kind]) or []
            for method in methods:
                if method in failed:
                    rows.append((kind, method, failed[method], *[""] * (len(header) - 3)))
                    continue
                runs = results[method]
                size = runs[0]["size"]
                warm = [run["write_warm"] for run in runs]
                against = statistics.median([r["write_warm"] for r in reference or [{}]]
                                            ) if reference else None
                ratio = f"{statistics.median(warm) / against:.2f}x" if against else ""
                peak = max(run["peak"] for run in runs)
                private = statistics.median(run["private"] for run in runs)
                rows.append((kind, method, f"{size / 2**20:,.1f} MB",
                             *(seconds([run[m] for run in runs]) for m in MEASURES[:2]),
                             f"{size / statistics.median(warm) / 1e9:.2f}", ratio,
                             *(seconds([run[m] for run in runs]) for m in MEASURES[2:]),
                             f"{peak / 2**20:,.0f} MB ({peak / size:.0%})",
                             f"{private / 2**20:,.0f} MB"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    for index, row in enumerate(rows):
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))
        if index == 0:
            print("  ".join("-" * width for width in widths))
    print(f"\npython {sys.version.split()[0]}, {os.cpu_count()} CPUs; times in ms, min/median "
          f"of {args.repeats} interleaved runs; 'vs ref' = median warm write against "
          f"{', '.join(f'{REFERENCE[k]} ({k})' for k in kinds)}; kale@before = {args.before}; "
          f"files in {args.folder or tempfile.gettempdir()}; peak = memory the cold write added; "
          "private = private memory the cold read added, after a pass over the numeric data")


if __name__ == "__main__":
    main()
