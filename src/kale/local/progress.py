"""What a local run shows while it runs: a line per step state, each step's output prefixed
with its name, and a summary table at the end.

On a terminal the step states are a live table that updates in place (``rich``); elsewhere (CI,
pipes, files) they are plain lines, one per change. A line a step redraws with carriage returns
(a progress bar) is printed once, in its final state; the live table shows its latest one.
"""

from __future__ import annotations

import os
import sys
from typing import IO, Any

from kale.errors import display_path

SYMBOLS = {
    "waiting": "·", "running": "▸", "retrying": "↻", "succeeded": "✓", "failed": "✗",
    "skipped": "–", "cancelled": "■", "cached": "≡",
}


def _seconds(value: float | None) -> str:
    if value is None:
        return ""
    return f"{value * 1000:.0f}ms" if value < 1 else f"{value:.2f}s"


def metric_line(step: str, name: str, value: int | float, width: int) -> str:
    from kale.logs import metric_text

    return f"  {step:<{width}} ◆ {name} = {metric_text(value)}"


def local_time(stamp: str | None) -> str:
    """An ISO time from the run record as this machine's local time, or "-"."""
    from datetime import datetime

    if not stamp:
        return "-"
    return datetime.fromisoformat(stamp).astimezone().strftime("%Y-%m-%d %H:%M:%S")


def took(seconds: float | None) -> str:
    """A duration for a listing: ``850ms``, ``12.3s``, or "-"."""
    if seconds is None:
        return "-"
    return f"{seconds * 1000:.0f}ms" if seconds < 1 else f"{seconds:.1f}s"


def final_state(line: str) -> str:
    """What a terminal shows of a line redrawn with carriage returns (a progress bar): each part
    overwrites the start of what the parts before it left."""
    if "\r" not in line:
        return line
    shown = ""
    for part in line.split("\r"):
        shown = part + shown[len(part):]
    return shown


#: Iterations of one step beyond which the summary shows them as one row per status.
GROUP_ITERATIONS = 10


def task_rows(tasks: list[dict[str, Any]],
              order: list[str] | tuple[str, ...] = ()) -> list[tuple[str, str, str, str]]:
    """Rows of (task, status, attempts, duration) from tasks as the run record holds them
    (``name``, ``step``, ``index``, ``status``, ``by_condition``, ``attempts``, ``duration``):
    in body order, a loop's iterations in item order; a step of more than
    ``GROUP_ITERATIONS`` iterations as one row per status (``square[0..199]``). ``order``
    lists the steps in body order."""
    groups: dict[str, list[dict[str, Any]]] = {name: [] for name in order}
    for task in tasks:
        groups.setdefault(task.get("step") or task["name"], []).append(task)
    rows = []
    for step, members in groups.items():
        if not members:
            continue
        members.sort(key=lambda task: tuple(task.get("index") or ()))
        if len(members) <= GROUP_ITERATIONS:
            rows.extend((task["name"], _status_text(task), str(task["attempts"]),
                         _seconds(task["duration"])) for task in members)
            continue
        by_status: dict[str, list[dict[str, Any]]] = {}
        for task in members:
            by_status.setdefault(_status_text(task), []).append(task)
        for status, same in by_status.items():
            first = same[0]["name"]
            span = f"{step}[{_index_text(same[0])}..{_index_text(same[-1])}]"
            durations = [task["duration"] for task in same if task["duration"] is not None]
            rows.append((span if len(same) > 1 else first,
                         f"{len(same)} {status}" if len(same) > 1 else status,
                         str(sum(task["attempts"] for task in same)),
                         _seconds(sum(durations) if durations else None)))
    return rows


def _index_text(task: dict[str, Any]) -> str:
    return "][".join(str(i) for i in task.get("index") or ())


def _status_text(task: dict[str, Any]) -> str:
    return "skipped (condition)" if task.get("by_condition") else task["status"]


def summary_rows(run: Any) -> list[tuple[str, str, str, str]]:
    return task_rows([{"name": step.name, "step": step.step, "index": step.index,
                       "status": step.status, "by_condition": step.by_condition,
                       "attempts": len(step.attempts), "duration": step.duration}
                      for step in run.steps.values()], run.order)


def summary_table(run: Any) -> str:
    """The end-of-run table: step, status, attempts, duration."""
    header = ("step", "status", "attempts", "duration")
    rows = [header, *summary_rows(run)]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = []
    for index, row in enumerate(rows):
        lines.append("  ".join(cell.ljust(widths[i]) if i < 3 else cell.rjust(widths[i])
                               for i, cell in enumerate(row)).rstrip())
        if index == 0:
            lines.append("  ".join("-" * width for width in widths))
    return "\n".join(lines)


class PlainProgress:
    """One line per event; safe for logs and pipes."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        self.stream = stream or sys.stdout
        self.width = 0

    def _write(self, text: str) -> None:
        self.stream.write(text + "\n")
        self.stream.flush()

    def start(self, run: Any, parallelism: int) -> None:
        self.width = max((len(name) for name in run.steps), default=0)
        # Every step of the body: a loop's steps have no tasks yet, and are steps all the same.
        count = len(run.order) or len(run.steps)
        self._write(f"kale: running pipeline {run.pipeline} locally (run {run.id[:8]}, "
                    f"{count} step{'s' if count != 1 else ''}, up to {parallelism} at once)")

    def step_changed(self, step: str, status: str, detail: str = "") -> None:
        text = f"{SYMBOLS.get(status, ' ')} {step:<{self.width}}  {status}"
        self._write(f"{text}  {detail}".rstrip())

    def output(self, step: str, line: str) -> None:
        self._write(f"  {step:<{self.width}} │ {line}")

    def note(self, text: str) -> None:
        """A line of Kale's own about the run (a cache entry dropped, a macro's effect)."""
        self._write(text)

    def partial(self, step: str, text: str) -> None:
        """The latest state of a line the step is redrawing: in a log, only its final state is
        worth a line, and ``output`` gets it when the line ends."""

    def metric(self, step: str, name: str, value: int | float) -> None:
        """A metric the step logged (``log_metric``), as it arrives."""
        self._write(metric_line(step, name, value, self.width))

    def tick(self) -> None:
        """Nothing to refresh: plain output only writes on events."""

    def finish(self, run: Any) -> None:
        duration = _seconds(run.duration)
        folder = display_path(run.folder)
        hits = [step for step in run.steps.values() if step.status == "cached"]
        resumed = sum(bool((step.cached_from or {}).get("resumed")) for step in hits)
        parts = []
        if resumed:
            parts.append(f"{resumed} of {len(run.steps)} tasks reused from run "
                         f"{str(run.resumed_from)[:8]}")
        if len(hits) > resumed:
            parts.append(f"{len(hits) - resumed} of {len(run.steps)} tasks from the cache")
        reused = f" ({'; '.join(parts)})" if parts else ""
        self._write(f"\n{summary_table(run)}\n\nkale: run {run.id[:8]} {run.status} in "
                    f"{duration}{reused}; record: {folder}")


_DONE = ("succeeded", "failed", "skipped", "cancelled", "cached")


class LiveProgress(PlainProgress):
    """A table of step states that updates in place, with step output printed above it."""

    def __init__(self, console: Any = None) -> None:
        from rich.console import Console

        self.console = console or Console()
        super().__init__(self.console.file)
        self.states: dict[str, tuple[str, str, float | None]] = {}
        self.partials: dict[str, str] = {}  # the latest state of a line each step redraws
        self.live: Any = None
        self.pending: list[str] = []  # output lines, printed together once per refresh

    def _table(self) -> Any:
        import time

        from rich.table import Table

        table = Table(show_header=False, box=None, padding=(0, 1))
        for _ in range(4):
            table.add_column()
        # A progress bar longer than the terminal is cut, not wrapped onto rows of its own.
        table.add_column(no_wrap=True, overflow="ellipsis")
        now = time.monotonic()
        for step, (status, detail, since) in self.states.items():
            if status == "running" and since is not None:
                detail = f"{now - since:.1f}s"
            table.add_row(SYMBOLS.get(status, " "), step, status, detail,
                          self.partials.get(step, ""))
        return table

    def start(self, run: Any, parallelism: int) -> None:
        from rich.live import Live

        super().start(run, parallelism)
        self.states = {name: ("waiting", "", None) for name in run.steps}
        self.live = Live(self._table(), console=self.console, refresh_per_second=8,
                         transient=True)
        self.live.start()

    def step_changed(self, step: str, status: str, detail: str = "") -> None:
        import time

        self.partials.pop(step, None)
        # A step that is done leaves the table: the line printed above it is its one mention.
        if status in _DONE:
            self.states.pop(step, None)
        else:
            self.states[step] = (status, detail,
                                 time.monotonic() if status == "running" else None)
        shown = status in ("retrying", *_DONE)
        self._redraw(shown)
        if shown:
            self.console.print(f"{SYMBOLS.get(status, ' ')} {step:<{self.width}}  {status}  "
                               f"{detail}".rstrip(), markup=False, highlight=False,
                           soft_wrap=True)

    def output(self, step: str, line: str) -> None:
        # Printing above a live display is slow per call; a chatty step must not hold up the
        # scheduler (its timeouts, the other steps), so lines wait for the next refresh.
        self.partials.pop(step, None)  # the line it was redrawing has ended
        self.pending.append(f"  {step:<{self.width}} │ {line}")

    def partial(self, step: str, text: str) -> None:
        self.partials[step] = text

    def metric(self, step: str, name: str, value: int | float) -> None:
        self.pending.append(metric_line(step, name, value, self.width))

    def note(self, text: str) -> None:
        self.pending.append(text)
        self._redraw(True)

    def flush(self) -> None:
        if self.pending:
            self.console.print("\n".join(self.pending), markup=False, highlight=False,
                               soft_wrap=True)
            self.pending.clear()

    def _redraw(self, printing: bool) -> None:
        # The table first, and drawn before anything is printed: each print draws it again
        # below what it prints, and a stale one would show a bar that has ended or a step
        # that is done.
        if self.live is not None:
            self.live.update(self._table(), refresh=printing or bool(self.pending))
        self.flush()

    def tick(self) -> None:
        self._redraw(False)

    def finish(self, run: Any) -> None:
        self.flush()
        if self.live is not None:
            self.live.stop()
            self.live = None
        super().finish(run)


def make_progress() -> PlainProgress:
    """Live on a terminal, plain lines otherwise (``KALE_PROGRESS=plain|live`` decides)."""
    choice = os.environ.get("KALE_PROGRESS", "")
    if choice == "plain":
        return PlainProgress()
    if choice == "live" or (sys.stdout.isatty() and not os.environ.get("CI")):
        return LiveProgress()
    return PlainProgress()
