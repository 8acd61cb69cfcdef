"""``--kfp --wait``: follow a Kubeflow run to its end, printing each step's state as it changes.

Kale asks the Pipelines API for the run every ``KALE_WAIT_INTERVAL`` seconds (5 by default, as
``kfp.Client.wait_for_run_completion`` does) and prints a line whenever a task's state changes:
the steps', under the names the Kubeflow UI shows, and Kale's own (the bundle tasks, whose
failure explains a run that fails before any step starts), with the error message of a task that
failed. A few failed requests in a row (a restarting API server) are waited out. Ctrl-C stops
following, not the run.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from kale.graph.model import Graph

#: The states in which a run has ended (KFP's V2beta1RuntimeState).
ENDED = {"SUCCEEDED", "FAILED", "SKIPPED", "CANCELED", "CANCELLED"}

#: Failed requests in a row that are waited out before following gives up.
TOLERATED_FAILURES = 5


@dataclass
class FollowedRun:
    """How a followed run ended, and which tasks failed (with KFP's error message)."""

    state: str
    failed: dict[str, str] = field(default_factory=dict)


def wait_interval() -> float:
    try:
        return max(0.05, float(os.environ.get("KALE_WAIT_INTERVAL", "5")))
    except ValueError:
        return 5.0


class FollowTimeout(Exception):
    """The run had not ended when following it reached its time limit; ``state`` is its last."""

    def __init__(self, state: str) -> None:
        self.state = state
        super().__init__(state)


def state_name(value: Any) -> str:
    """A run's or task's state as KFP names it (``"RUNNING"``), from the enum or string the
    client gives."""
    text = str(value or "")
    return text.rsplit(".", 1)[-1].upper()  # an enum's name, or the string itself


def _tasks(run: Any) -> list[Any]:
    details = getattr(run, "run_details", None)
    return list(getattr(details, "task_details", None) or [])


def _is_kales_own(name: str) -> bool:
    return name in ("kale-bundle", "kale-bundle-import") or name.startswith("kale-bundle-part-")


def _transient(error: BaseException) -> bool:
    status = getattr(error, "status", None)
    if status is not None:
        return int(status) >= 500
    from urllib3.exceptions import HTTPError

    return isinstance(error, (HTTPError, ConnectionError, TimeoutError))


def follow(client: Any, run_id: str, graph: Graph, *, interval: float | None = None,
           out: Any = None, timeout: float | None = None) -> FollowedRun:
    """Poll the run until it ends; print task states as they change.

    Raises ``FollowTimeout`` when the run has not ended after ``timeout`` seconds (the run goes
    on: only following stops).
    """
    from kale.kfp.compiler import task_display_names

    out = out or sys.stderr
    interval = wait_interval() if interval is None else interval
    # KFP reports tasks by display name; the root DAG, drivers and others are not of interest.
    shown = set(task_display_names(graph).values())
    seen: dict[str, str] = {}
    failed: dict[str, str] = {}
    run_state = ""
    failures = 0
    started = time.monotonic()
    while True:
        try:
            run = client.get_run(run_id)
            failures = 0
        except Exception as error:
            failures += 1
            if not _transient(error) or failures > TOLERATED_FAILURES:
                raise
            time.sleep(interval)
            continue
        elapsed = time.monotonic() - started
        stamp = f"{int(elapsed // 60):02d}:{int(elapsed % 60):02d}"
        for task in _tasks(run):
            name = getattr(task, "display_name", None) or ""
            if name not in shown and not _is_kales_own(name):
                continue
            key = getattr(task, "task_id", None) or name
            state = state_name(getattr(task, "state", None))
            if not state or seen.get(key) == state:
                continue
            seen[key] = state
            line = f"kale: {stamp} step {name}: {state.lower()}"
            if state == "FAILED":
                message = getattr(getattr(task, "error", None), "message", None) or ""
                failed[name] = message
                if message:
                    line += f": {message}"
            else:
                failed.pop(name, None)  # a retry that went on, or succeeded
            print(line, file=out, flush=True)
        state = state_name(getattr(run, "state", None))
        if state != run_state:
            run_state = state
            if state not in ENDED:
                print(f"kale: {stamp} run {state.lower()}", file=out, flush=True)
        if state in ENDED:
            return FollowedRun(state, failed)
        if timeout is not None:
            left = timeout - (time.monotonic() - started)
            if left <= 0:
                raise FollowTimeout(state)
            time.sleep(min(interval, left))
            continue
        time.sleep(interval)
