"""What ``tune()`` returns, ``Study`` and its ``Trial``s, and the study record.

A local study is kept under ``<home>/studies/<study-id>/study.json`` (beside ``runs/``): its
settings and each trial (number, parameters, value, status, run id), rewritten atomically when a
trial ends, so a study stopped by Ctrl-C or a crash still says which trials finished. Each
trial's run is an ordinary run in ``runs/``, its ``run.json`` tagged ``"study": {"id", "trial"}``.
``kale runs --study ID``, ``kale show STUDY`` and the UI's study page read these.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

STUDIES = "studies"
STUDY_FILE = "study.json"


@dataclass
class Trial:
    """One trial: its ``parameters`` (those of the search space), the objective's ``value``
    (None unless it succeeded), its ``status`` (``"succeeded"``, ``"failed"``,
    ``"interrupted"``; on Katib, Katib's condition in lower case), and the run it was
    (``run_id``: a local run, or a KFP run on Kubeflow)."""

    number: int
    parameters: dict[str, Any]
    status: str = "running"
    value: float | None = None
    run_id: str | None = None
    started: float | None = None
    ended: float | None = None
    error: str | None = None

    @property
    def duration(self) -> float | None:
        return None if self.started is None or self.ended is None else self.ended - self.started

    def to_json(self) -> dict[str, Any]:
        return {"number": self.number, "parameters": self.parameters, "status": self.status,
                "value": self.value, "run_id": self.run_id, "started": _iso(self.started),
                "ended": _iso(self.ended), "duration": self.duration, "error": self.error}


@dataclass
class Study:
    """A study: ``trials``, and the best of them by the ``goal`` (``best_trial``,
    ``best_parameters``, ``best_value``). ``status`` is ``"succeeded"`` (every trial ran),
    ``"failed"`` (more than ``max_failed_trials`` failed), ``"interrupted"`` (Ctrl-C: the
    finished trials are kept); on Kubeflow, the Experiment's state (``"created"`` until
    followed with ``--wait``)."""

    id: str
    pipeline: str
    objective: str
    goal: str
    algorithm: str
    settings: dict[str, Any]
    trials: list[Trial] = field(default_factory=list)
    status: str = "running"
    started: float | None = None
    ended: float | None = None
    #: where it is: the study record's folder (local), or the Experiment's name (Katib)
    folder: Path | None = None
    experiment: str | None = None
    namespace: str | None = None
    reason: str = ""

    @property
    def best_trial(self) -> Trial | None:
        done = [trial for trial in self.trials if trial.value is not None]
        if not done:
            return None
        pick = max if self.goal == "maximize" else min
        return pick(done, key=lambda trial: (trial.value, -trial.number)
                    if self.goal == "maximize" else (trial.value, trial.number))

    @property
    def best_parameters(self) -> dict[str, Any] | None:
        best = self.best_trial
        return None if best is None else dict(best.parameters)

    @property
    def best_value(self) -> float | None:
        best = self.best_trial
        return None if best is None else best.value

    def to_json(self) -> dict[str, Any]:
        best = self.best_trial
        return {"id": self.id, "pipeline": self.pipeline, "objective": self.objective,
                "goal": self.goal, "algorithm": self.algorithm, "status": self.status,
                "reason": self.reason, "started": _iso(self.started), "ended": _iso(self.ended),
                "settings": self.settings, "trials": [trial.to_json() for trial in self.trials],
                "best": None if best is None else {"trial": best.number, "value": best.value,
                                                   "parameters": best.parameters},
                **({"experiment": self.experiment} if self.experiment else {}),
                **({"namespace": self.namespace} if self.namespace else {})}

    def save(self) -> None:
        if self.folder is None:
            return
        from kale.marshal import atomic_write

        self.folder.mkdir(parents=True, exist_ok=True)
        text = json.dumps(self.to_json(), default=str)
        atomic_write(self.folder / STUDY_FILE, lambda handle: handle.write(text), mode="w")

    def table(self) -> str:
        """The trials as a table, the best marked ``*``."""
        return trials_table(self.to_json())

    def __repr__(self) -> str:
        return (f"<Study {self.id[:8]} of pipeline {self.pipeline}: {len(self.trials)} trials, "
                f"{self.status}, best {self.objective}={self.best_value}>")


def _iso(stamp: float | None) -> str | None:
    return None if stamp is None else datetime.fromtimestamp(stamp, timezone.utc).isoformat()


def value_text(value: Any) -> str:
    from kale.logs import metric_text

    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return metric_text(value)
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= 24 else text[:23] + "…"


def trials_table(data: dict[str, Any]) -> str:
    """A study record's trials as a text table (the end of a study, ``kale show STUDY``)."""
    from kale.local.progress import took

    names = list((data.get("settings") or {}).get("space") or {})
    best = (data.get("best") or {}).get("trial")
    rows = [("trial", "status", data.get("objective", "value"), *names, "run", "duration")]
    for trial in data.get("trials") or []:
        given = trial.get("parameters") or {}
        value = trial.get("value")
        rows.append((f"{trial['number']}{' *' if trial['number'] == best else ''}",
                     str(trial.get("status")), "-" if value is None else value_text(value),
                     *(value_text(given[name]) if name in given else "-" for name in names),
                     (trial.get("run_id") or "-")[:8], took(trial.get("duration"))))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
             .rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def space_text(entry: dict[str, Any]) -> str:
    """One range of a study record's space as a person reads it."""
    kind = entry.get("kind")
    if kind == "choice":
        return f"one of {entry.get('values')}"
    extra = ", log scale" if entry.get("log") else \
        f", step {entry['step']}" if entry.get("step") not in (None, 1) else ""
    return f"{kind} from {entry.get('low')} to {entry.get('high')}{extra}"


def studies_folder(home: Path) -> Path:
    return home / STUDIES


def list_studies(home: Path) -> list[dict[str, Any]]:
    """Every readable study record under ``home``, newest first."""
    found = []
    for path in studies_folder(home).glob(f"*/{STUDY_FILE}"):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and isinstance(data.get("id"), str):
            data["folder"] = str(path.parent)
            found.append(data)
    return sorted(found, key=lambda study: study.get("started") or "", reverse=True)


def find_study(home: Path, prefix: str) -> dict[str, Any] | list[str]:
    """The study whose id starts with ``prefix``, or the ids that match when it is not one."""
    if not prefix or os.sep in prefix:
        return []
    matches = [study for study in list_studies(home) if study["id"].startswith(prefix)]
    if len(matches) == 1:
        return matches[0]
    return [study["id"] for study in matches]
