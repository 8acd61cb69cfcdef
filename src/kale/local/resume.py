"""Resuming a local run: which run to continue, and its results as a source of cache hits.

``--resume [RUN]`` (``run(resume=...)``, ``kale resume RUN``) starts a new run in which every
task that succeeded in RUN is finished from RUN's record instead of running, when its cache
key (``kale.cache``: its code and module context, the project modules it imports, its inputs
by content, its options and the packages it imports) is the key RUN recorded for it. A task
that failed, was skipped, cancelled or interrupted there, or whose key changed, runs; so does
everything downstream of what ran, when its inputs come out different. ``--from STEP`` makes
STEP and every step after it run whatever the record holds.

Outputs are hard links of RUN's files, checked against their content hash: a file changed or
removed since is not reused (the task runs). A run whose process was killed (SIGKILL, a stopped
machine) still says ``running`` in its record; it is read as interrupted, with every task that
had finished and was saved.
"""

from __future__ import annotations

import difflib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kale.cache import Entry, link_outputs
from kale.errors import KaleError
from kale.local.record import find_run, list_runs, runner_gone

#: the task states whose outputs a resumed run reuses
REUSABLE = ("succeeded", "cached")


class ResumeError(KaleError):
    """The run to resume cannot be found or is not one this pipeline can continue."""

    exit_code = 2


class RecordSource:
    """The results of one run's record, by cache key (a ``kale.cache.Source``)."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.run_id: str = data["id"]
        self.folder = Path(data["folder"])
        self.entries: dict[str, Entry] = {}
        for task, state in (data.get("steps") or {}).items():
            key = state.get("key")
            outputs = state.get("outputs")
            if state.get("status") not in REUSABLE or not isinstance(key, str) or \
                    not isinstance(outputs, dict):
                continue
            attempts = [attempt for attempt in state.get("attempts") or []
                        if isinstance(attempt, dict) and attempt.get("status") == "succeeded"]
            made = attempts[-1] if attempts else {}
            earlier = state.get("cached_from") if isinstance(state.get("cached_from"),
                                                             dict) else {}
            self.entries[key] = Entry(key, self.folder / "run.json", {
                "outputs": outputs, "reports": state.get("reports") or {},
                "run": self.run_id, "task": task, "pipeline": data.get("pipeline"),
                "created": made.get("ended") or earlier.get("created"), "resumed": True,
                "duration": _duration(state) or earlier.get("duration"),
                "metrics": made.get("metrics") if made else state.get("metrics"),
                "attempt": made.get("number")}, 0.0)

    def lookup(self, key: str) -> Entry | None:
        return self.entries.get(key)

    def materialize(self, entry: Entry, folder: str | os.PathLike[str]
                    ) -> dict[str, dict[str, Any]] | None:
        task_folder = self.folder / "steps" / entry.data["task"]
        sources = {}
        for name, meta in entry.outputs.items():
            if not (isinstance(meta, dict) and isinstance(meta.get("path"), str) and
                    isinstance(meta.get("hash"), str)):
                return None
            # Under the run's own folder, wherever the project has moved since.
            file = os.path.basename(meta["path"])
            sources[name] = (str(task_folder / "outputs" / file), file,
                             {field: value for field, value in meta.items() if field != "path"})
        outputs = link_outputs(sources, folder)
        if outputs is None:
            return None
        reports = self._reports(entry, outputs)
        if reports is None:
            return None
        entry.data["reports"] = reports
        return outputs

    def touch(self, entry: Entry) -> None:
        """Nothing: a run's record is not a cache, and has no use times."""

    def _reports(self, entry: Entry, outputs: dict[str, dict[str, Any]]
                 ) -> dict[str, Any] | None:
        """What the task reported, whole: the record keeps a loop's items as a count, and a
        resumed loop needs their tokens again (from the attempt's result file, else from the
        stored list itself)."""
        reports = dict(entry.reports)
        counted = {name: count for name, count in reports.items()
                   if name.startswith("items:") and isinstance(count, int)}
        if not counted:
            return reports
        result = self._result_reports(entry)
        for name, count in counted.items():
            tokens = result.get(name)
            if not (isinstance(tokens, list) and len(tokens) == count and
                    all(isinstance(token, str) for token in tokens)):
                tokens = _tokens_of(outputs.get(name[len("items:"):]))
            if tokens is None or len(tokens) != count:
                return None
            reports[name] = tokens
        return reports

    def _result_reports(self, entry: Entry) -> dict[str, Any]:
        number = entry.data.get("attempt")
        if not isinstance(number, int):
            return {}
        path = self.folder / "steps" / entry.data["task"] / f"attempt-{number}.result"
        try:
            result = json.loads(path.read_bytes())
        except (OSError, ValueError):
            return {}
        reports = result.get("reports") if isinstance(result, dict) else None
        return reports if isinstance(reports, dict) else {}


def _tokens_of(meta: dict[str, Any] | None) -> list[str] | None:
    if meta is None:
        return None
    from kale import marshal
    from kale.items import item_tokens

    try:
        return item_tokens(marshal.load(meta, store=os.path.dirname(meta["path"])))
    except Exception:  # a value that no longer loads: the task runs again
        return None


def _duration(state: dict[str, Any]) -> float | None:
    spans = [attempt.get("duration") for attempt in state.get("attempts") or []
             if isinstance(attempt, dict) and isinstance(attempt.get("duration"), (int, float))]
    return sum(spans) if spans else None


@dataclass
class Resume:
    """What a resumed run continues: the run, its results, and the steps forced to run."""

    run_id: str
    source: RecordSource
    forced: frozenset[str]
    from_step: str | None
    status: str
    reused: int

    def note(self) -> str:
        """The line a resumed run starts with."""
        text = (f"kale: resuming run {self.run_id[:8]} ({self.status}): "
                + (f"what succeeded there ({self.reused} task{'s' if self.reused != 1 else ''})"
                   " is reused where its code, context and inputs are unchanged"
                   if self.reused else "no task succeeded there, so every step runs"))
        if self.from_step:
            others = len(self.forced) - 1
            text += (f"; `{self.from_step}`" +
                     (f" and the {others} step{'s' if others != 1 else ''} after it"
                      if others else "") + " run (--from)")
        return text


def prepare(graph: Any, home: Path, run: str | None, from_step: str | None) -> Resume:
    """The run to resume (``run``: an id or its first characters; None or "" for the last run
    of this pipeline in ``home``), checked; ``from_step`` a step of ``graph``."""
    forced = frozenset()
    if from_step is not None:
        names = [step.name for step in graph.user_steps]
        if from_step not in names:
            close = difflib.get_close_matches(from_step, names, n=1)
            raise ResumeError(
                f"--from names step {from_step!r}, and pipeline `{graph.name}` has no such step",
                fix=(f"did you mean {close[0]!r}? " if close else "") +
                f"its steps are: {', '.join(names)}")
        forced = frozenset({from_step} | graph.descendants(from_step))
    data = _find(graph, home, run)
    if data.get("status") == "running" and not runner_gone(data.get("runner")):
        pid = (data.get("runner") or {}).get("pid")
        raise ResumeError(
            f"run {data['id'][:8]} of pipeline `{graph.name}` is still running"
            + (f" (process {pid})" if pid else ""),
            fix="wait for it to end, or stop it (Ctrl-C in its terminal), then resume it")
    source = RecordSource(data)
    return Resume(data["id"], source, forced, from_step, _status_text(data),
                  len(source.entries))


def _find(graph: Any, home: Path, run: str | None) -> dict[str, Any]:
    if not run:
        mine = [data for data in list_runs(home) if data.get("pipeline") == graph.name]
        if not mine:
            raise ResumeError(
                f"there is no earlier run of pipeline `{graph.name}` to resume in {home}",
                fix="run the pipeline once without --resume; `kale runs` lists the runs "
                "(KALE_HOME moves where they are kept)")
        return mine[0]
    found = find_run(home, run)
    if isinstance(found, list):
        if found:
            raise ResumeError(f"run id {run!r} is the start of {len(found)} runs' ids",
                              fix="give more of it: " + ", ".join(found[:5]))
        raise ResumeError(f"there is no run {run!r} in {home}",
                          fix="`kale runs` lists the runs and their ids; --resume alone "
                          "resumes the last run of this pipeline")
    if found.get("pipeline") != graph.name:
        raise ResumeError(
            f"run {found['id'][:8]} is a run of pipeline `{found.get('pipeline')}`, not of "
            f"`{graph.name}`",
            fix=f"resume a run of `{graph.name}` (`kale runs` lists them), or leave the id "
            "out to resume its last run")
    return found


def _status_text(data: dict[str, Any]) -> str:
    status = data.get("status") or "unknown"
    failed = [name for name, state in (data.get("steps") or {}).items()
              if state.get("status") == "failed"]
    if failed:
        shown = ", ".join(f"`{name}`" for name in failed[:3])
        return f"{status} at {shown}" + (f" and {len(failed) - 3} more" if len(failed) > 3
                                         else "")
    return status
