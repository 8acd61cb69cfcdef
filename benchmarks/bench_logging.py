"""The cost of ``log_metric``, run on demand: ``python benchmarks/bench_logging.py``.

- in a step's log, as the runtime opens it, with the report callback the zygote gives a step
  (a framed JSON event written to a pipe, read by a thread as the scheduler would): one name
  logged again and again (sent at most every 50 ms, the rest kept), and a new name each call
  (every call sent);
- the same on Kubeflow, where each call also prints ``name=value`` (to /dev/null here);
- a local run end to end: a step that logs ``--calls`` metrics, against the same loop without
  logging (the difference per call).

Goal: microseconds per call. Prints a table; asserts nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from kale import logs
from kale.sdk.logging import log_metric

_HEADER = struct.Struct(">I")


def _event(message: tuple) -> bytes:
    """An event framed as the zygote's children frame theirs (kale.local.processes)."""
    data = json.dumps(message).encode()
    return _HEADER.pack(len(data)) + data


def _drain(descriptor: int) -> None:
    while os.read(descriptor, 65536):
        pass


def per_call_us(calls: int, distinct: bool, echo: bool) -> float:
    read, write = os.pipe()
    reader = threading.Thread(target=_drain, args=(read,), daemon=True)
    reader.start()

    def report(event: str, details: dict) -> None:
        os.write(write, _event((event, "run/step/1", details)))

    names = [f"m{index}" for index in range(min(calls, logs.MAX_ENTRIES))] if distinct \
        else ["loss"]
    with tempfile.TemporaryDirectory() as folder:
        log = logs.StepLog("step", 1, folder, report, echo=echo)
        logs.activate(log)
        sink = open(os.devnull, "w")  # noqa: SIM115 - closed below
        try:
            with contextlib.redirect_stdout(sink):
                started = time.perf_counter()
                for index in range(calls):
                    log_metric(names[index % len(names)], index * 0.5)
                elapsed = time.perf_counter() - started
                log.finish()
        finally:
            logs.activate(None)
            sink.close()
            os.close(write)
    reader.join()
    os.close(read)
    return elapsed / calls * 1e6


STEP = '''
import time
from kale.sdk import pipeline, step
from kale.sdk.logging import log_metric

@step
def work(calls: int, logging: bool):
    started = time.perf_counter()
    for index in range(calls):
        if logging:
            log_metric("loss", index * 0.5)
        else:
            float(index * 0.5)
    print("ELAPSED", time.perf_counter() - started)

@pipeline
def bench(calls: int = 1, logging: bool = True):
    work(calls, logging)

if __name__ == "__main__":
    import sys
    bench(calls=int(sys.argv[1]), logging=sys.argv[2] == "1")
'''


def local_run_us(calls: int) -> tuple[float, float]:
    """Seconds of the step's loop with and without logging, in a real local run."""
    with tempfile.TemporaryDirectory() as folder:
        script = Path(folder) / "bench.py"
        script.write_text(STEP)
        times = []
        for logging in ("1", "0"):
            result = subprocess.run(
                [sys.executable, str(script), str(calls), logging], capture_output=True,
                text=True, cwd=folder, check=True,
                env={**os.environ, "KALE_HOME": str(Path(folder) / "home"),
                     "KALE_PROGRESS": "plain"})
            times.append(float(re.search(r"ELAPSED ([\d.e-]+)", result.stdout).group(1)))
    return times[0], times[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=100_000)
    options = parser.parse_args()
    calls = options.calls
    rows = [
        ("local step, one name (events throttled)", per_call_us(calls, False, False)),
        ("local step, a new name each call (every call an event)",
         per_call_us(min(calls, logs.MAX_ENTRIES), True, False)),
        ("Kubeflow step, one name (printed name=value each call)", per_call_us(calls, False,
                                                                              True)),
    ]
    with_logging, without = local_run_us(calls)
    rows.append((f"local run end to end, {calls} calls in one step",
                 (with_logging - without) / calls * 1e6))
    width = max(len(label) for label, _ in rows)
    print(f"{'log_metric':<{width}}  µs per call")
    for label, value in rows:
        print(f"{label:<{width}}  {value:10.2f}")


if __name__ == "__main__":
    main()
