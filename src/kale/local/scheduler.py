"""Running a Graph on this machine the way Kubeflow would: one process per step attempt, a step
starting as soon as its inputs exist (up to ``parallelism`` at once), timeouts from just before
the user's code, retries with backoff, a pipeline deadline, and a failure skipping only the
steps that depend on it.

The scheduler is a single loop in the calling process. It waits on the step processes and their
report pipes (never polling faster than needed), tails each attempt's log to show its output
live, and rewrites the run record at every change of state.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import select
import signal
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from kale import logs, macros
from kale.errors import KaleError, display_path, name_cells
from kale.graph.model import (
    CollectedRef,
    Constant,
    Graph,
    ItemRef,
    OneOfRef,
    OutputRef,
    ParameterRef,
    Step,
    ValueSource,
)
from kale.items import well_formed
from kale.local.plan import Changes, Plan, Task
from kale.local.processes import AttemptChannel, Zygote, result_path
from kale.local.progress import PlainProgress, final_state
from kale.local.record import RunRecord, launch_command, runner_identity, sweep_gone_runs
from kale.marshal import NO_SPACE, is_inside
from kale.options import format_duration
from kale.runtime import StepInvocation, grace_seconds

if TYPE_CHECKING:
    from kale.local.resume import Resume

_POLL = 0.1  # how often logs are tailed while steps run
_BACKSTOP = 2.0  # seconds past a step's timeout and grace before Kale kills it from outside
_TAIL_BYTES = 1 << 20
#: Room kept on the record's disk, given back when it is full so that the final run.json fits.
_RESERVE_BYTES = 1 << 20
_NO_SPACE_FIX = "free space on it, or set KALE_HOME to a folder on a disk with room"


@dataclass
class AttemptRecord:
    number: int
    status: str = "running"
    started: float | None = None
    ended: float | None = None
    duration: float | None = None
    error: dict[str, Any] | None = None
    log: str = ""
    #: the backoff wait before this attempt (0 for the first)
    waited: float = 0.0
    #: what the attempt logged (kale.sdk.logging): metrics by name, artifacts by name
    metrics: dict[str, Any] = field(default_factory=dict)
    artifacts: dict[str, Any] = field(default_factory=dict)


@dataclass
class StepRun:
    """A task's state in a run (a step, or one iteration of a step in a loop), and its
    attempts."""

    name: str
    status: str = "waiting"
    attempts: list[AttemptRecord] = field(default_factory=list)
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    reason: str = ""
    #: the step it runs, and its iteration of each loop around it
    step: str = ""
    index: tuple[int, ...] = ()
    #: skipped because a condition chose another branch, which is no failure
    by_condition: bool = False
    #: what a condition step chose, or the number of items of outputs a loop iterates
    reports: dict[str, Any] = field(default_factory=dict)
    #: the task's cache key (``kale.cache``), once its inputs were known
    key: str | None = None
    #: for a cache hit: the run and task whose outputs it reuses, and when they were made
    cached_from: dict[str, Any] | None = None
    #: for a cache hit: the metrics the run that made its outputs logged (a task that ran
    #: keeps its own in its attempts)
    metrics: dict[str, Any] = field(default_factory=dict)

    @property
    def duration(self) -> float | None:
        spans = [a.duration for a in self.attempts if a.duration is not None]
        return sum(spans) if spans else None

    def to_json(self) -> dict[str, Any]:
        """The task's state as the record holds it (in ``run.json``, and as one event)."""
        return {
            "status": self.status, "reason": self.reason, "outputs": self.outputs,
            "attempts": [vars(attempt) for attempt in self.attempts],
            **({"step": self.step} if self.step != self.name else {}),
            **({"index": list(self.index)} if self.index else {}),
            **({"by_condition": True} if self.by_condition else {}),
            **({"reports": self.reports} if self.reports else {}),
            **({"key": self.key} if self.key else {}),
            **({"cached_from": self.cached_from} if self.cached_from else {}),
            **({"metrics": self.metrics} if self.metrics else {}),
        }


@dataclass
class Run:
    """A finished (or stopped) local run. ``outputs`` reads the last steps' values back."""

    id: str
    pipeline: str
    experiment: str | None
    status: str
    started: float
    ended: float | None
    parameters: dict[str, Any]
    steps: dict[str, StepRun]
    folder: Path
    leaves: tuple[str, ...] = ()
    reason: str = ""
    #: the process running it (``kale.local.record.runner_identity``)
    runner: dict[str, Any] = field(default_factory=dict)
    #: the steps in body order (``steps`` holds tasks as they were created)
    order: tuple[str, ...] = ()
    #: the DAG's edges between steps, (upstream, downstream), for drawing it (``kale ui``)
    edges: tuple[tuple[str, str], ...] = ()
    #: --cache (True), --no-cache (False), or None: each step's own ``cache`` option
    cache: bool | None = None
    #: the run this one resumed (``--resume``), and the step it was forced to run from
    resumed_from: str | None = None
    resumed_from_step: str | None = None
    #: how the run was started (``kale.local.record.launch_command``), for ``kale resume``
    command: dict[str, Any] | None = None
    #: for a trial of a study (``kale.tuning``): the study's id and the trial's number
    study: dict[str, Any] | None = None

    @property
    def duration(self) -> float | None:
        return None if self.ended is None else self.ended - self.started

    @property
    def failed_steps(self) -> list[StepRun]:
        return [step for step in self.steps.values() if step.status == "failed"]

    def output(self, step: str, name: str | None = None) -> Any:
        """The value a task returned (``name``: which of its outputs). ``step`` names a step, or
        one iteration of a step in a loop (``square[2]``)."""
        from kale import marshal

        stored = self.steps[step].outputs
        if name is None:
            if len(stored) != 1:
                raise KeyError(f"step {step!r} has outputs {sorted(stored)}; name one")
            name = next(iter(stored))
        return marshal.load(stored[name], store=self.folder)

    def _value(self, key: str) -> Any:
        stored = self.steps[key].outputs
        if len(stored) == 1:
            return self.output(key)
        return {name: self.output(key, name) for name in stored}

    @property
    def outputs(self) -> dict[str, Any]:
        """The values returned by the pipeline's last steps, by step (and output) name. A step
        in a loop gives the list of its iterations' values, in item order (nested loops: lists
        of lists), with None for an iteration that did not run (its branch was not taken); a
        step outside loops whose branch did not run is left out."""
        result: dict[str, Any] = {}
        for leaf in self.leaves:
            tasks = [task for task in self.steps.values() if task.step == leaf]
            looped = [task for task in tasks if task.index]
            if not looped:
                done = [task for task in tasks if task.outputs]
                if done:
                    result[leaf] = self._value(done[0].name)
                continue
            nested: list[Any] = []
            for task in sorted(looped, key=lambda t: t.index):
                place = nested
                for position in task.index[:-1]:
                    while len(place) <= position:
                        place.append([])
                    place = place[position]
                while len(place) <= task.index[-1]:
                    place.append(None)
                if task.outputs:
                    place[task.index[-1]] = self._value(task.name)
            result[leaf] = nested
        return result

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id, "pipeline": self.pipeline, "experiment": self.experiment,
            "status": self.status, "reason": self.reason,
            "started": datetime.fromtimestamp(self.started, timezone.utc).isoformat(),
            "ended": None if self.ended is None else
            datetime.fromtimestamp(self.ended, timezone.utc).isoformat(),
            "duration": self.duration, "parameters": self.parameters,
            "leaves": list(self.leaves), "runner": self.runner, "order": list(self.order),
            "edges": [list(edge) for edge in self.edges],
            "cache": self.cache,
            **({"resumed_from": self.resumed_from} if self.resumed_from else {}),
            **({"command": self.command} if self.command else {}),
            **({"from_step": self.resumed_from_step} if self.resumed_from_step else {}),
            **({"study": self.study} if self.study else {}),
            "steps": {name: step.to_json() for name, step in self.steps.items()},
        }


class RunFailedError(KaleError):
    """A local run failed: the summary names each failed step, its attempts and traceback."""

    exit_code = 1

    def __init__(self, run: Run) -> None:
        self.run = run
        failed = run.failed_steps
        if failed:
            names = ", ".join(f"`{step.name}`" for step in failed)
            message = f"pipeline `{run.pipeline}` failed: step{'s' if len(failed) > 1 else ''} " \
                      f"{names} failed"
        else:
            message = f"pipeline `{run.pipeline}` failed: {run.reason}"
        super().__init__(message)

    def render(self) -> str:
        lines = [f"error: {self.message}"]
        for step in self.run.failed_steps:
            last = step.attempts[-1] if step.attempts else None
            count = len(step.attempts)
            lines.append("")
            if last is None or last.error is None:
                lines.append(f"step `{step.name}`: {step.reason}")
                continue
            tries = f" (attempt {count} of {count})" if count > 1 else ""
            lines.append(f"step `{step.name}` {last.error.get('message', 'failed')}{tries}")
            if step.reason:
                lines.append(f"  then {step.reason}")
            trace = name_cells(last.error.get("traceback") or "")
            if trace:
                lines.extend("  " + line for line in trace.splitlines())
            if last.error.get("fix"):
                lines.append(f"  fix: {last.error['fix']}")
            lines.append(f"  log: {display_path(last.log)}")
        skipped = [s for s in self.run.steps.values() if s.status == "skipped" and
                   not s.by_condition]
        if skipped:
            lines.append("")
            lines.extend(f"skipped `{s.name}`: {s.reason}" for s in skipped)
        if self.run.reason and self.run.failed_steps:
            lines.append(f"\n{self.run.reason}")
        lines.append(f"run record: {display_path(self.run.folder)}")
        return "\n".join(lines)


@dataclass
class _Attempt:
    """A step attempt in flight."""

    task: Task
    number: int
    key: str
    log: IO[bytes]
    record: AttemptRecord
    #: the pipe the attempt's process reports on (kale.local.processes.AttemptChannel)
    channel: AttemptChannel
    user_started: float | None = None
    deadline: float | None = None
    exit_code: int | None = None
    stopped: str = ""
    pending_text: bytes = b""
    #: the process could not write its result (a full disk): what it reported instead
    unwritten: dict[str, Any] | None = None
    #: the process said its result is written (it may not have exited yet)
    done: bool = False
    #: the result, once read
    outcome: dict[str, Any] | None = None

    @property
    def step(self) -> Step:
        return self.task.step


class Scheduler:
    """Runs one Graph once. ``run()`` returns the Run or raises ``RunFailedError``."""

    def __init__(self, graph: Graph, values: dict[str, Any], *, parallelism: int,
                 home: Path, progress: PlainProgress | None = None,
                 cache: bool | None = None, resume: Resume | None = None,
                 study: dict[str, Any] | None = None,
                 stop: threading.Event | None = None) -> None:
        from kale.cache import RunCache

        #: set from another thread to stop the run as Ctrl-C would (a study being stopped)
        self.stop = stop

        self.graph = graph
        # First: a bad [tool.kale.cache] setting is an error before anything is written.
        self.cache = RunCache(graph, home, cache,
                              resumed=resume.source if resume is not None else None,
                              forced=resume.forced if resume is not None else frozenset())
        self.resume = resume
        self.parallelism = max(1, parallelism)
        self.progress = progress or PlainProgress()
        started = time.time()
        run_id = str(uuid.uuid4())
        # In UTC, as on Kubeflow, so [[CurrentTime]] names the same moment the same way there.
        started_at = datetime.fromtimestamp(started, timezone.utc)
        self.given = dict(values)
        self.values = {name: macros.expand(value, run_id, started_at)
                       for name, value in values.items()}
        self.grace = grace_seconds()
        self.record = RunRecord(home, run_id)
        try:
            self.record.folder.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise KaleError(
                f"Kale cannot write the run record to {self.record.folder}: "
                f"{error.strerror or error}",
                fix="set KALE_HOME to a folder you can write to (by default runs go to .kale/ "
                "in the project's folder)",
            ) from None
        self.reserve: Path | None = self.record.folder / ".reserve"
        self.hold_reserve()
        self.run_state = Run(
            id=run_id, pipeline=graph.name, experiment=graph.options.experiment,
            status="running", started=started, ended=None, parameters=self.values,
            steps={}, folder=self.record.folder, leaves=graph.leaves,
            runner=runner_identity(), order=tuple(step.name for step in graph.steps),
            edges=tuple((upstream, step.name) for step in graph.steps
                        for upstream in sorted(step.upstream)),
            cache=cache, study=study,
            resumed_from=resume.run_id if resume is not None else None,
            resumed_from_step=resume.from_step if resume is not None else None,
            command=launch_command(),
        )
        self.plan = Plan(graph, self.values)
        self.ready: deque[Task] = deque()
        self.keyed: set[str] = set()  # tasks whose key is known (and, if cached, looked up)
        self.opening = self.plan.start()
        self.record_tasks(self.opening)
        sweep_gone_runs(home, run_id)
        self.delayed: dict[str, float] = {}
        self.waits: dict[str, float] = {}
        self.running: dict[str, _Attempt] = {}
        #: the tasks whose state changed since the record last had them (an ordered set)
        self.changed: dict[str, None] = {}
        self.unsaved = False
        # Libraries the steps import, loaded once in the zygote: each `import numpy` is instant.
        self.preload = sorted({name for names in graph.step_modules.values() for name in names})
        self.zygote = Zygote.acquire(self.preload)
        self.deadline = (time.monotonic() + graph.options.timeout
                         if graph.options.timeout else None)

    # -- bookkeeping ---------------------------------------------------------------------------

    def hold_reserve(self) -> None:
        """Set room aside on the record's disk: when a step fills it, the record can still say
        how the run ended."""
        assert self.reserve is not None
        try:
            descriptor = os.open(self.reserve, os.O_WRONLY | os.O_CREAT, 0o600)
            try:
                if hasattr(os, "posix_fallocate"):
                    os.posix_fallocate(descriptor, 0, _RESERVE_BYTES)
                else:  # macOS
                    os.write(descriptor, bytes(_RESERVE_BYTES))
            finally:
                os.close(descriptor)
        except OSError as error:
            self.release_reserve()
            if error.errno in NO_SPACE:
                raise KaleError(f"Kale cannot write the run record to {self.record.folder}: "
                                "there is no space left on its disk", fix=_NO_SPACE_FIX) from None
            # a filesystem that cannot allocate ahead: the run goes on without the reserve

    def release_reserve(self) -> None:
        if self.reserve is not None:
            with contextlib.suppress(OSError):
                self.reserve.unlink()
            self.reserve = None

    def save(self, stopped: bool = False) -> None:
        """Write the snapshot, run.json. Once the steps are ``stopped``, a full disk gets the
        reserve back to write the run's end; before, the steps that fill it would take it."""
        self.record.data = self.run_state.to_json()
        try:
            self.record.save()
        except OSError as error:
            if not stopped or error.errno not in NO_SPACE:
                raise
            self.release_reserve()
            try:
                self.record.save()
            except OSError as again:
                if again.errno not in NO_SPACE:
                    raise
                self.unsaved = True  # nothing more can be done: the summary says so
        self.changed.clear()

    def flush(self) -> None:
        """Append the changed tasks' states to the record (each change costs the same however
        many tasks the run has), and write a snapshot when the events outweigh the last one."""
        steps = self.run_state.steps
        self.record.append({name: steps[name].to_json() for name in self.changed})
        self.changed.clear()
        if self.record.snapshot_due():
            self.save()

    def set_status(self, name: str, status: str, detail: str = "") -> None:
        self.changed[name] = None
        self.run_state.steps[name].status = status
        if status in ("skipped", "cancelled"):
            self.run_state.steps[name].reason = detail
        self.progress.step_changed(name, status, detail)

    def record_tasks(self, changes: Changes) -> None:
        """Add the tasks the plan created to the run, without telling the progress."""
        for task in changes.created:
            self.run_state.steps[task.key] = StepRun(task.key, step=task.step.name,
                                                     index=task.index)

    def advance(self, changes: Changes) -> None:
        """Act on what the plan says after a change: new tasks, tasks to start or skip."""
        self.record_tasks(changes)
        for task in changes.created:
            self.changed[task.key] = None
        for key, reason, by_condition in changes.skipped:
            state = self.run_state.steps.get(key)
            if state is None:  # stands for the iterations of a loop that never ran
                state = self.run_state.steps[key] = StepRun(key, step=key.split("[", 1)[0])
            state.by_condition = by_condition
            self.set_status(key, "skipped", reason)
        self.ready.extend(changes.ready)

    # -- the loop ------------------------------------------------------------------------------

    def run(self) -> Run:
        self.progress.start(self.run_state, self.parallelism)
        if self.resume is not None:
            self.progress.note(self.resume.note())
        note = self.cache.macro_note(self.given)
        if note:
            self.progress.note(note)
        self.advance(dataclasses.replace(self.opening, created=[]))
        terminated = _Terminated.install()
        try:
            self.save()
            self.record.mark_running(self.run_state.runner)
            self.loop()
        except BaseException as error:
            interrupted = isinstance(error, (KeyboardInterrupt, _Terminated))
            full = isinstance(error, OSError) and error.errno in NO_SPACE
            reason = ("terminated (SIGTERM)" if isinstance(error, _Terminated) else
                      "interrupted (Ctrl-C)" if interrupted else
                      f"the disk that holds the run record ({display_path(self.record.folder)}) "
                      f"is full: {_NO_SPACE_FIX}" if full else
                      f"stopped by {type(error).__name__}: {error}")
            with _Terminated.shielded():
                self.stop_everything("failed" if full else "cancelled", reason)
                self.run_state.status = "interrupted" if interrupted else \
                    "failed" if full else "error"
                self.run_state.reason = reason
                self.finish()
            if isinstance(error, _Terminated):
                _Terminated.die()
            if full:  # the user's to fix, not Kale's bug: a summary, not a traceback
                raise RunFailedError(self.run_state) from None
            if isinstance(error, KeyboardInterrupt):
                _exit_quietly_if_uncaught(error)
            raise
        finally:
            Zygote.release(self.zygote)
            _Terminated.uninstall(terminated)
        self.finish()
        if self.run_state.status != "succeeded":
            raise RunFailedError(self.run_state)
        return self.run_state

    def finish(self) -> None:
        run = self.run_state
        run.ended = time.time()
        if run.status == "running":
            failed = any(step.status not in ("succeeded", "cached") and not step.by_condition
                         for step in run.steps.values())
            run.status = "failed" if failed else "succeeded"
        self.save(stopped=True)
        if not self.unsaved:  # else the events hold what the snapshot could not
            self.record.close_events()
        self.record.mark_ended()
        self.release_reserve()
        self.cache.finish()
        if self.unsaved:
            run.reason = (f"{run.reason}; " if run.reason else "") + \
                "the run record could not be updated: its disk is full"
        self.progress.finish(run)

    def loop(self) -> None:
        while self.ready or self.delayed or self.running:
            if self.stop is not None and self.stop.is_set():
                # Only the main thread gets Ctrl-C: a run in another thread is told by its
                # caller, and ends exactly as an interrupted run does.
                raise KeyboardInterrupt
            now = time.monotonic()
            if self.deadline is not None and now >= self.deadline:
                self.pipeline_timed_out()
                return
            for name, when in list(self.delayed.items()):
                if now >= when:
                    del self.delayed[name]
                    self.ready.append(self.plan.tasks[name])
            self.launch_ready()
            timeout = self.next_wakeup(now)
            if self.running:
                select.select([self.zygote, *self.open_channels()], [], [], timeout)
            elif timeout:
                time.sleep(timeout)
            self.collect()
            if self.ready:  # what just ended made these ready: started before the record's write
                self.launch_ready()
            # Once per turn of the loop, however many tasks changed.
            if self.changed:
                self.flush()
            self.progress.tick()

    def open_channels(self) -> list[AttemptChannel]:
        return [attempt.channel for attempt in self.running.values()
                if attempt.channel.descriptor is not None]

    def next_wakeup(self, now: float) -> float:
        moments = list(self.delayed.values())
        moments += [a.deadline for a in self.running.values() if a.deadline is not None]
        if self.deadline is not None:
            moments.append(self.deadline)
        timeout = max(0.0, min(moments) - now) if moments else None
        if self.running:
            timeout = _POLL if timeout is None else min(timeout, _POLL)
        return 0.0 if timeout is None else timeout

    # -- attempts ------------------------------------------------------------------------------

    def launch_ready(self) -> None:
        """Start ready tasks while there is room: the run's parallelism, and each loop's
        ``loop_parallelism`` (iterations of one loop with a task running, as Kubeflow counts
        for ``ParallelFor``)."""
        self.resolve_cached()
        limit = self.graph.options.loop_parallelism
        if limit is None:
            while self.ready and len(self.running) < self.parallelism:
                self.launch(self.ready.popleft())
            return
        # Per instance of a loop (its name and the iteration of the loops around it), the
        # iterations with a task running: counted once, not once per task that waits.
        active: dict[tuple[str, tuple[int, ...]], set[tuple[int, ...]]] = {}
        for attempt in self.running.values():
            self.note_active(attempt.task, active)
        held: deque[Task] = deque()
        while self.ready and len(self.running) < self.parallelism:
            task = self.ready.popleft()
            if self.loop_full(task, limit, active):
                held.append(task)
            else:
                self.launch(task)
                self.note_active(task, active)
        self.ready.extendleft(reversed(held))

    @staticmethod
    def note_active(task: Task, active: dict[tuple[str, tuple[int, ...]],
                                             set[tuple[int, ...]]]) -> None:
        for depth, loop in enumerate(task.step.loops, 1):
            active.setdefault((loop.name, task.index[:depth - 1]), set()).add(
                task.index[:depth])

    @staticmethod
    def loop_full(task: Task, limit: int, active: dict[tuple[str, tuple[int, ...]],
                                                      set[tuple[int, ...]]]) -> bool:
        for depth, loop in enumerate(task.step.loops, 1):
            running = active.get((loop.name, task.index[:depth - 1]), ())
            if task.index[:depth] not in running and len(running) >= limit:
                return True
        return False

    def task_for(self, task: Task, number: int) -> StepInvocation:
        step = task.step
        inputs = {argument.name: self.input_of(task, argument.source)
                  for argument in step.arguments}
        function = step.function
        return StepInvocation(
            step=task.key, function_name=function.function_name, source=function.text,
            filename=function.filename, line=function.line, module=function.module,
            project_root=self.graph.project_root,
            output_dir=str(self.record.outputs_folder(task.key)),
            inputs=inputs, outputs=step.outputs, unpacks=step.unpacks, attempt=number,
            context=tuple((s.filename, s.line, s.text) for s in function.context),
            futures=function.futures, timeout=step.options.timeout, grace=self.grace,
            run_id=self.run_state.id, created=self.run_state.started,
            store=str(self.record.folder), item_outputs=step.item_outputs,
            branch=step.condition is not None, artifacts=function.artifacts,
        )

    def input_of(self, task: Task, source: ValueSource) -> tuple[str, Any]:
        """How the task's process reads one input (``kale.runtime`` input kinds)."""
        steps = self.run_state.steps
        if isinstance(source, ParameterRef):
            # Unexpanded: the runtime expands macros, as it does on Kubeflow.
            return ("parameter", self.given[source.name])
        if isinstance(source, Constant):
            return ("constant", source.value)
        if isinstance(source, OneOfRef):
            source = self.plan.chosen(task, source)
        if isinstance(source, OutputRef):
            return ("stored", steps[self.plan.producer(task, source)].outputs[source.variable])
        if isinstance(source, CollectedRef):
            return ("collected", [("stored", steps[key].outputs[source.variable])
                                  for key in self.plan.collected(task, source)])
        assert isinstance(source, ItemRef)
        token, whole = self.plan.item(task, source)
        list_input = None if whole is None or not isinstance(source.items, OutputRef) else \
            ("stored", steps[whole].outputs[source.items.variable])
        return ("item", (token, list_input))

    def launch(self, task: Task) -> None:
        step, name = task.step, task.key
        state = self.run_state.steps[name]
        number = len(state.attempts) + 1
        log_path = self.record.log_path(name, number)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        # Made here, so that it is read from its start whenever the step's process opens it.
        log = os.fdopen(os.open(log_path, os.O_RDONLY | os.O_CREAT, 0o644), "rb")
        record = AttemptRecord(number=number, started=time.time(), log=str(log_path),
                               waited=self.waits.pop(name, 0.0))
        state.attempts.append(record)
        key = f"{self.run_state.id}/{name}/{number}"
        channel = AttemptChannel(str(log_path))
        self.zygote.start(key, self.task_for(task, number), str(log_path))
        self.running[name] = _Attempt(task, number, key, log, record, channel=channel)
        detail = f"attempt {number} of {step.options.retry_count + 1}" if number > 1 else ""
        self.set_status(name, "running", detail)

    def apply_events(self) -> None:
        """What the zygote and the step processes reported since the last look."""
        by_key = {attempt.key: attempt for attempt in self.running.values()}
        for event, key, value in self.zygote.read_events():
            attempt = by_key.get(key)
            if attempt is None:
                continue
            if event == "exited":
                attempt.exit_code = value
            elif event == "refused":  # the zygote is not safe to fork: use a plain one
                Zygote.release(self.zygote)
                self.zygote = Zygote.acquire([], safe=True)
                self.zygote.start(key, self.task_for(attempt.task, attempt.number),
                                  attempt.record.log)
        for attempt in list(self.running.values()):
            for event, key, value in attempt.channel.read():
                if key == attempt.key:  # (a process of the step's may outlive a retry)
                    self.attempt_event(attempt, event, value)

    def attempt_event(self, attempt: _Attempt, event: str, value: Any) -> None:
        """One event the attempt's process reported (untrusted: the step could write it)."""
        if event == "started":
            attempt.user_started = time.monotonic()
            timeout = attempt.step.options.timeout
            if timeout is not None:
                # The runtime enforces the timeout and its grace period itself, as on
                # Kubeflow; this is the backstop for a process that cannot be interrupted
                # (stuck in C code with signals blocked).
                attempt.deadline = attempt.user_started + timeout + self.grace + _BACKSTOP
        elif event == "done":
            attempt.done = True
        elif event == "unwritten" and isinstance(value, dict):
            attempt.unwritten = value
        elif event == "metric":
            self.live_metric(attempt, value)

    def collect(self) -> None:
        self.apply_events()
        lost = self.zygote.process.poll() is not None
        if lost:  # the zygote died (killed by hand, out of memory): its attempts are gone too
            for attempt in self.running.values():
                if attempt.exit_code is None:
                    attempt.exit_code = -9
                    attempt.stopped = (f"was lost: Kale's step-process server stopped (exit "
                                       f"status {self.zygote.process.returncode})")
                # The step died with the zygote, not what it started in its process group
                # (a plain subprocess): killed here, as the zygote would have at its end.
                self.zygote.kill(attempt.key)
            Zygote.release(self.zygote)
            self.zygote = Zygote.acquire(self.preload)
        now = time.monotonic()
        for attempt in self.running.values():
            if attempt.deadline is not None and now >= attempt.deadline and not attempt.stopped:
                attempt.stopped = (f"timed out after "
                                   f"{format_duration(attempt.step.options.timeout)} and did "
                                   "not stop when told to")
                self.zygote.kill(attempt.key)
        for name, attempt in list(self.running.items()):
            self.tail(attempt)
            if attempt.exit_code is None and attempt.done and not attempt.stopped:
                # A success is taken as soon as the process says its result is written, and
                # the process is killed with whatever it left running, as at its exit. (A
                # step can send this event itself; then the result decides, as at the exit.)
                attempt.done = False
                attempt.outcome = _read_result(attempt.record.log)
                if attempt.outcome is not None and attempt.outcome.get("status") == "done":
                    attempt.exit_code = 0
            if attempt.exit_code is not None:
                self.zygote.kill(attempt.key)  # whatever the step left running dies with it
                self.tail(attempt, final=True)
                attempt.channel.close()
                del self.running[name]
                self.finished(attempt)

    def tail(self, attempt: _Attempt, final: bool = False) -> None:
        """Show what the attempt printed since the last look, a line at a time. A bounded
        amount per turn (all of it at the end), so a chatty step cannot stall the loop."""
        data = attempt.pending_text + attempt.log.read(-1 if final else _TAIL_BYTES)
        # A line redrawn after "\r" (a progress bar) is one line: shown in its latest state
        # while it is drawn, and once, in its final state, when it ends.
        redrawn = b"\r" in data
        *lines, rest = (data.replace(b"\r\n", b"\n") if redrawn else data).split(b"\n")
        if len(rest) > _TAIL_BYTES and b"\r" in rest:
            # A bar drawn for long without a newline: keep what it shows, not every redraw.
            cut = rest.rfind(b"\r")
            rest = final_state(rest[:cut].decode(errors="replace")).encode() + rest[cut:]
        if len(rest) > _TAIL_BYTES:  # no newline for a long while: show it anyway
            lines.append(rest)
            rest = b""
        for line in lines:
            self.progress.output(attempt.task.key, final_state(line.decode(errors="replace")))
        attempt.pending_text = rest
        if final:
            if rest:
                self.progress.output(attempt.task.key,
                                     final_state(rest.decode(errors="replace")))
            attempt.pending_text = b""
            attempt.log.close()
        elif b"\r" in rest:
            # The end of what was read may cut a character in two: not worth a "\ufffd".
            self.progress.partial(attempt.task.key,
                                  final_state(rest.decode(errors="ignore")))

    def finished(self, attempt: _Attempt) -> None:
        task, record = attempt.task, attempt.record
        record.ended = time.time()
        record.duration = record.ended - record.started
        result = attempt.outcome if attempt.outcome is not None else _read_result(record.log)
        outcome = self.take_logged(task, record, self.checked(task, result))
        if attempt.stopped.startswith("was lost"):
            record.status = "crashed"
            record.error = {"kind": "crash", "message": attempt.stopped}
        elif attempt.stopped:
            record.status = "timed-out"
            record.error = {"kind": "timeout",
                            "message": f"{attempt.stopped} (its processes were killed)"}
        elif outcome is not None and outcome["status"] == "done":
            self.succeeded(task, record, outcome)
            self.advance(self.plan.finished(task.key, "succeeded", outcome.get("reports")))
            return
        elif outcome is not None:
            record.error = outcome["error"]
            record.status = "timed-out" if record.error.get("kind") == "timeout" else "failed"
        elif attempt.unwritten is not None:
            record.status = "failed"
            record.error = _unwritten(attempt.unwritten)
        else:
            record.status = "crashed"
            record.error = {"kind": "crash", "message": _describe_exit(attempt.exit_code)}
        self.attempt_failed(task, attempt.number, record)

    def checked(self, task: Task, outcome: dict[str, Any] | None) -> dict[str, Any] | None:
        """The result if it is one Kale wrote for this step: the outputs the pipeline binds,
        each stored in the step's own output folder. A step's process can write anything at
        the result's path; what points elsewhere becomes a failed attempt, never an input."""
        if outcome is None or outcome.get("status") != "done":
            return outcome
        step = task.step
        problem = _report_problem(step, outcome.get("reports"))
        if problem:
            return _bad_result(problem)
        outputs = outcome.get("outputs")
        expected = set(step.outputs)
        names = set(outputs) if isinstance(outputs, dict) else None
        if names is None or not (names == expected or (not expected and names <= {"return"})):
            return _bad_result(f"names outputs {sorted(names or ())}, not the "
                               f"{sorted(expected) or 'none or `return`'} its call binds")
        folder = str(self.record.outputs_folder(task.key))
        for name, stored in outputs.items():
            if not (isinstance(stored, dict) and all(
                    isinstance(stored.get(key), str) for key in ("path", "backend", "type"))):
                return _bad_result(f"describes output `{name}` without a path, backend and "
                                   "type")
            path = stored["path"]
            if os.path.dirname(os.path.normpath(path)) != folder or \
                    not is_inside(path, str(self.record.folder)):
                return _bad_result(f"points output `{name}` at {stored['path']}, outside "
                                   f"the step's output folder {folder}")
        return outcome

    def live_metric(self, attempt: _Attempt, value: Any) -> None:
        """A metric the attempt logged just now (an event, checked as untrusted data)."""
        checked = logs.check_event("metric", value)
        metrics = attempt.record.metrics
        if checked is None or (checked[0] not in metrics and len(metrics) >= logs.MAX_ENTRIES):
            return
        metrics[checked[0]] = checked[1]
        self.changed[attempt.task.key] = None
        self.progress.metric(attempt.task.key, *checked)

    def take_logged(self, task: Task, record: AttemptRecord,
                    outcome: dict[str, Any] | None) -> dict[str, Any] | None:
        """Keep what the result says the attempt logged, checked (``kale.logs.check_logged``):
        its artifacts must be files of the attempt's own artifact folder."""
        if outcome is None or "logged" not in outcome:
            return outcome
        from kale.runtime import attempt_artifacts

        folder = attempt_artifacts(str(self.record.outputs_folder(task.key)), record.number)
        logged = logs.check_logged(outcome["logged"], folder)
        if isinstance(logged, str):
            return _bad_result(logged)
        record.metrics.update(logged.get("metrics", {}))
        record.artifacts = logged.get("artifacts", {})
        return outcome

    def succeeded(self, task: Task, record: AttemptRecord, result: dict[str, Any]) -> None:
        record.status = "succeeded"
        state = self.run_state.steps[task.key]
        state.outputs = result["outputs"]
        reports = result.get("reports") or {}
        detail = f"in {record.duration:.2f}s"
        if record.metrics:
            detail += ": " + ", ".join(f"{name}={logs.metric_text(value)}"
                                       for name, value in list(record.metrics.items())[:6])
            detail += ", ..." if len(record.metrics) > 6 else ""
        detail = self.show_reports(task, state, reports, detail)
        if state.key and self.cache.enabled(task.step.name):
            self.cache.keep(state.key, state.outputs, reports, {
                "run": self.run_state.id, "task": task.key, "pipeline": self.graph.name,
                "duration": record.duration, "metrics": dict(record.metrics)})
        self.set_status(task.key, "succeeded", detail)

    def show_reports(self, task: Task, state: StepRun, reports: dict[str, Any],
                     detail: str) -> str:
        """Keep what a result reports in the task's state (the branch a condition chose, how
        many items a loop gets) and add it to the detail shown."""
        if "branch" in reports:
            info = task.step.condition
            assert info is not None
            state.reports = {"branch": reports["branch"]}
            chose = (f"runs `{info.describe(reports['branch'])}`"
                     if reports["branch"] < info.branches else
                     "no branch runs: every test was false")
            # Kept in the record: `kale show` and the UI have the index only otherwise.
            state.reason = chose
            detail += ": " + chose
        for name, tokens in reports.items():
            if name.startswith("items:"):
                state.reports[name] = len(tokens)
                count = len(tokens)
                detail += f"; `{name[6:]}` has {count} item{'s' if count != 1 else ''}"
        return detail

    # -- the cache -----------------------------------------------------------------------------

    def resolve_cached(self) -> None:
        """Give every ready task its cache key, and finish those the cache has a result for
        (which may make more tasks ready: they are looked at in the same pass)."""
        kept: deque[Task] = deque()
        while self.ready:
            task = self.ready.popleft()
            if task.key not in self.keyed:
                self.keyed.add(task.key)
                if self.reuse(task):
                    continue
            kept.append(task)
        self.ready = kept

    def key_inputs(self, task: Task) -> dict[str, tuple[str, Any]]:
        """The task's inputs as its key holds them: parameters after macro expansion."""
        inputs = {}
        for argument in task.step.arguments:
            source = argument.source
            if isinstance(source, ParameterRef):
                inputs[argument.name] = ("parameter", self.values[source.name])
            else:
                inputs[argument.name] = self.input_of(task, source)
        return inputs

    def reuse(self, task: Task) -> bool:
        """Compute the task's key; with caching on, finish it from the cache if it has its
        result. The plan then advances exactly as if the task had succeeded."""
        state = self.run_state.steps[task.key]
        state.key = self.cache.key(task.step, self.key_inputs(task))
        if state.key is None or not self.cache.looks_up(task.step.name):
            return False
        folder = self.record.outputs_folder(task.key)
        found = self.cache.hit(state.key, folder, task.step.name)
        if not found:
            if found is False:
                self.progress.note(f"kale: the cached result of `{task.key}` was damaged (an "
                                   "output did not match its hash) and was dropped; running "
                                   "the step")
            return False
        entry, outputs = found
        outcome = self.checked(task, {"status": "done", "outputs": outputs,
                                      "reports": entry.reports})
        if outcome is None or outcome["status"] != "done":
            return False
        state.outputs = outputs
        source = entry.source()
        state.cached_from = source
        state.metrics = entry.metrics
        detail = f"{'reused ' if source.get('resumed') else ''}from run {str(source['run'])[:8]}"
        if state.metrics:
            detail += ": " + ", ".join(f"{name}={logs.metric_text(value)}"
                                       for name, value in list(state.metrics.items())[:6])
            detail += ", ..." if len(state.metrics) > 6 else ""
        detail = self.show_reports(task, state, entry.reports, detail)
        if source.get("task") not in (None, task.key):
            detail += f" (`{source['task']}`)"
        self.set_status(task.key, "cached", detail)
        self.advance(self.plan.finished(task.key, "succeeded", entry.reports or None))
        return True

    def attempt_failed(self, task: Task, number: int, record: AttemptRecord) -> None:
        step, name = task.step, task.key
        allowed = step.options.retry_count + 1
        message = (record.error or {}).get("message", "failed")
        if number < allowed:
            delay = step.options.retry_delay(number)
            self.delayed[name] = time.monotonic() + delay
            self.waits[name] = delay
            self.set_status(name, "retrying",
                            f"attempt {number} of {allowed} failed: {_first_line(message)}; "
                            f"next in {format_duration(delay) if delay else 'no time'}")
            return
        self.set_status(name, "failed", f"after {number} attempt{'s' if number > 1 else ''}"
                        f": {_first_line(message)}")
        self.advance(self.plan.finished(name, "failed"))

    # -- stopping ------------------------------------------------------------------------------

    def stop_everything(self, status: str, reason: str) -> None:
        """Kill every running attempt (keeping any that had finished), stop the rest."""
        self.apply_events()
        for attempt in self.running.values():
            if attempt.exit_code is None:
                self.zygote.kill(attempt.key)
        deadline = time.monotonic() + 5
        while any(a.exit_code is None for a in self.running.values()) and \
                time.monotonic() < deadline and self.zygote.process.poll() is None:
            select.select([self.zygote, *self.open_channels()], [], [], 0.1)
            self.apply_events()
        stopped = "failed" if status == "failed" else "cancelled"
        for name, attempt in list(self.running.items()):
            self.tail(attempt, final=True)
            attempt.channel.close()
            del self.running[name]
            record = attempt.record
            record.ended = time.time()
            record.duration = record.ended - (record.started or record.ended)
            outcome = self.checked(attempt.task, _read_result(record.log))
            if outcome is not None and outcome["status"] == "done":  # finished just in time
                self.succeeded(attempt.task, record, outcome)
                continue
            record.status = "killed"
            record.error = {"kind": "stopped", "message": f"was stopped: {reason}"}
            self.set_status(name, stopped, reason)
        for name, step in self.run_state.steps.items():
            if step.status == "retrying" and status == "failed":
                step.reason = f"{reason} before its next attempt"
                self.set_status(name, "failed", step.reason)
            elif step.status in ("waiting", "retrying"):
                self.set_status(name, "skipped" if status == "failed" else "cancelled", reason)
        for key in self.plan.unopened():  # loops whose items never came
            self.run_state.steps[key] = StepRun(key, step=key.split("[", 1)[0])
            self.set_status(key, "skipped" if status == "failed" else "cancelled", reason)
        self.ready.clear()
        self.delayed.clear()
        self.save(stopped=True)

    def pipeline_timed_out(self) -> None:
        limit = format_duration(self.graph.options.timeout or 0)
        reason = f"the pipeline's timeout ({limit}) expired"
        self.run_state.reason = reason
        self.stop_everything("failed", reason)
        self.run_state.status = "failed"


def _report_problem(step: Step, reports: Any) -> str | None:
    """What is wrong with the reports of a result, or None: a condition reports the branch it
    chose, a step whose outputs a loop iterates reports their items' tokens, nothing else."""
    expected = ({"branch"} if step.condition is not None else set()) | {
        f"items:{name}" for name in step.item_outputs}
    given = reports if isinstance(reports, dict) else {}
    if (reports is not None and not isinstance(reports, dict)) or set(given) != expected:
        return f"reports {sorted(given)}, not {sorted(expected)}"
    for name, value in given.items():
        if name == "branch":
            assert step.condition is not None
            if type(value) is not int or not 0 <= value <= len(step.condition.tests):
                return f"reports branch {value!r}"
        elif not (isinstance(value, list) and all(isinstance(token, str) for token in value)):
            return f"reports `{name}` as something other than a list of item tokens"
        elif not well_formed(value):
            # Each iteration would fail reading its item, for want of the producer's fault.
            return f"reports `{name}` with item tokens Kale does not write"
    return None


def _exit_quietly_if_uncaught(interrupt: KeyboardInterrupt) -> None:
    """Ctrl-C stopped a run, which has printed its summary. Should the script not catch the
    KeyboardInterrupt, exit with status 130 (as shells report Ctrl-C) and no traceback through
    Kale's scheduler to bury the summary; a caller that catches it (a notebook, a test) gets it
    as usual. Chained to the hook in place, so every other exception is shown as it was."""
    import sys

    interrupt._kale_summarized = True  # type: ignore[attr-defined]
    previous = sys.excepthook
    if getattr(previous, "kale_interrupt_hook", False):
        return

    def hook(kind: type[BaseException], error: BaseException, tb: Any) -> None:
        if not getattr(error, "_kale_summarized", False) or os.environ.get("KALE_DEBUG"):
            previous(kind, error, tb)
            return
        import atexit

        atexit._run_exitfuncs()
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(130)

    hook.kale_interrupt_hook = True  # type: ignore[attr-defined]
    sys.excepthook = hook


class _Terminated(BaseException):
    """SIGTERM during a run: stop the steps and write the record, then die of the signal."""

    @classmethod
    def install(cls) -> Any:
        if threading.current_thread() is not threading.main_thread():
            return None
        previous = signal.getsignal(signal.SIGTERM)
        if previous is not signal.SIG_DFL:
            return None  # the user's own handler decides

        def handler(*_: Any) -> None:
            raise cls()

        signal.signal(signal.SIGTERM, handler)
        return previous

    @staticmethod
    def uninstall(previous: Any) -> None:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)

    @staticmethod
    @contextlib.contextmanager
    def shielded() -> Iterator[None]:
        """No second Ctrl-C or SIGTERM while the record is being written."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        saved = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT,
                                                                     signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in saved.items():
                signal.signal(sig, handler)

    @staticmethod
    def die() -> None:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)


def _read_result(log_path: str) -> dict[str, Any] | None:
    """What the attempt's process reported, or None if it died before reporting. Plain JSON,
    read as data only: the step's process could have written anything there."""
    try:
        with open(result_path(log_path), "rb") as handle:
            data = handle.read()
    except OSError:
        return None
    try:
        outcome = json.loads(data)
    except ValueError:
        return _bad_result("is not JSON")
    if not isinstance(outcome, dict) or outcome.get("status") not in ("done", "failed"):
        return _bad_result("has no status")
    if outcome["status"] == "failed":
        error = outcome.get("error")
        if not (isinstance(error, dict) and isinstance(error.get("message"), str)):
            return _bad_result("says it failed without a message")
        # Only what the record and the summary show, as the types they show.
        outcome["error"] = {key: value for key, value in error.items()
                            if (key in _ERROR_TEXTS and isinstance(value, str)) or (
                                key == "duration" and type(value) in (int, float))}
    return outcome


_ERROR_TEXTS = ("kind", "message", "traceback", "fix")


def _bad_result(why: str) -> dict[str, Any]:
    return {"status": "failed", "error": {
        "kind": "result",
        "message": f"left a result Kale did not write: it {why}",
        "fix": "do not write to the step's result file (attempt-<n>.result, next to its log); "
               "return values from the step instead"}}


def _unwritten(report: dict[str, Any]) -> dict[str, Any]:
    """The error of an attempt whose process could not write its result file."""
    path = display_path(str(report.get("path")))
    why = "there is no space left on its disk" if report.get("no_space") else report.get("reason")
    message = f"could not write its result to {path}: {why}"
    if isinstance(report.get("message"), str):
        message = f"{report['message']}, then {message}"
    error: dict[str, Any] = {"kind": "no-space" if report.get("no_space") else "result",
                             "message": message}
    if report.get("no_space"):
        error["fix"] = "free space on that disk, or set KALE_HOME to a folder on a disk with room"
    return error


def _first_line(text: str) -> str:
    return text.splitlines()[0] if text else ""


def _describe_exit(code: int | None) -> str:
    import signal

    if code is not None and code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"was killed by {name} (its process crashed)"
    return f"exited with status {code} before returning"
