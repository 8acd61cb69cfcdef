"""The record of a local run: one folder per run under ``.kale/runs`` (``KALE_HOME`` moves it).

Layout::

    <home>/runs/<run-id>/
        run.json                          status of the run and of every step and attempt
        steps/<step>/attempt-<n>.log      what the attempt printed (stdout and stderr)
        steps/<step>/outputs/<name>.<ext> each value the step returned (.json, .npy, .pkl)
        steps/<step>/outputs/<name>.meta.json   how it was stored (backend, type, size)

``run.json`` is rewritten atomically at every change of state, so after a crash, a kill or
Ctrl-C it still says which steps finished and where their outputs are.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from kale.marshal import atomic_write

RUN_FILE = "run.json"


def kale_home(project_root: str | None = None) -> Path:
    """Where run records live: ``$KALE_HOME``, else ``.kale`` in the project root (or here)."""
    configured = os.environ.get("KALE_HOME")
    if configured:
        return Path(configured).expanduser().resolve()
    return Path(project_root or os.getcwd()) / ".kale"


class RunRecord:
    """The folder of one run and its ``run.json``."""

    def __init__(self, home: Path, run_id: str) -> None:
        self.folder = home / "runs" / run_id
        self.data: dict[str, Any] = {}

    def step_folder(self, step: str) -> Path:
        return self.folder / "steps" / step

    def outputs_folder(self, step: str) -> Path:
        return self.step_folder(step) / "outputs"

    def log_path(self, step: str, attempt: int) -> Path:
        return self.step_folder(step) / f"attempt-{attempt}.log"

    def save(self) -> None:
        text = json.dumps(self.data, default=str)
        atomic_write(self.folder / RUN_FILE, lambda handle: handle.write(text), mode="w")


def list_runs(home: Path) -> list[dict[str, Any]]:
    """Every readable run under ``home``, newest first."""
    runs = []
    for path in (home / "runs").glob(f"*/{RUN_FILE}"):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        data["folder"] = str(path.parent)
        runs.append(data)
    return sorted(runs, key=lambda run: run.get("started") or "", reverse=True)


def find_run(home: Path, prefix: str) -> dict[str, Any] | list[str]:
    """The run whose id starts with ``prefix``, or the ids that match when it is not one."""
    matches = [run for run in list_runs(home) if run["id"].startswith(prefix)]
    if len(matches) == 1:
        return matches[0]
    return [run["id"] for run in matches]
