"""``--kfp --wait``: follow a Kubeflow run to its end, printing each step's state as it changes.

Kale asks the Pipelines API for the run every ``KALE_WAIT_INTERVAL`` seconds (5 by default, as
``kfp.Client.wait_for_run_completion`` does) and prints a line whenever a step's state changes,
with the error message of a step that failed. Ctrl-C stops following, not the run.
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


@dataclass
class FollowedRun:
    """How a followed run ended, and which steps failed (with KFP's error message)."""

    state: str
    failed: dict[str, str] = field(default_factory=dict)


def wait_interval() -> float:
    try:
        return max(0.05, float(os.environ.get("KALE_WAIT_INTERVAL", "5")))
    except ValueError:
        return 5.0


def _state(value: Any) -> str:
    text = str(value or "")
    return text.rsplit(".", 1)[-1].upper()  # an enum's name, or the string itself


def _tasks(run: Any) -> list[Any]:
    details = getattr(run, "run_details", None)
    return list(getattr(details, "task_details", None) or [])


def follow(client: Any, run_id: str, graph: Graph, *, interval: float | None = None,
           out: Any = None) -> FollowedRun:
    """Poll the run until it ends; print step states as they change."""
    out = out or sys.stderr
    interval = wait_interval() if interval is None else interval
    # KFP reports tasks by display name; only the pipeline's own tasks are of interest (not the
    # root DAG or drivers).
    steps = {step.display_name: step.name for step in graph.steps}
    steps.setdefault("kale-bundle", "kale-bundle")
    seen: dict[str, str] = {}
    failed: dict[str, str] = {}
    run_state = ""
    started = time.monotonic()
    while True:
        run = client.get_run(run_id)
        elapsed = time.monotonic() - started
        stamp = f"{int(elapsed // 60):02d}:{int(elapsed % 60):02d}"
        for task in _tasks(run):
            name = steps.get(getattr(task, "display_name", None) or "")
            state = _state(getattr(task, "state", None))
            if name is None or not state or seen.get(name) == state:
                continue
            seen[name] = state
            line = f"kale: {stamp} step {name}: {state.lower()}"
            if state == "FAILED":
                message = getattr(getattr(task, "error", None), "message", None) or ""
                failed[name] = message
                if message:
                    line += f": {message}"
            print(line, file=out, flush=True)
        state = _state(getattr(run, "state", None))
        if state != run_state:
            run_state = state
            if state not in ENDED:
                print(f"kale: {stamp} run {state.lower()}", file=out, flush=True)
        if state in ENDED:
            return FollowedRun(state, failed)
        time.sleep(interval)
