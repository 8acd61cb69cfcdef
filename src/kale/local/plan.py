"""Which tasks a local run has, and when each may start: a task per step and per iteration of
the loops around it, created when the loop's items are known; a branch's tasks run when its
condition chooses it and are skipped otherwise; a failure skips what needs it.

Kubeflow does the same with ``ParallelFor`` (one task per item, the items known when the loop
starts), ``If``/``Elif``/``Else`` groups (tasks of a branch not taken are skipped, and the run
still succeeds) and ``Collected`` (waits for every iteration; a failed one fails the loop, and
what collects it does not run).

The plan is pure bookkeeping, without processes: the scheduler tells it what finished, and it
answers with the tasks that can start and those that will never run.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from kale.graph.model import (
    Branch,
    CollectedRef,
    Constant,
    Graph,
    ItemRef,
    Loop,
    OneOfRef,
    OutputRef,
    ParameterRef,
    Step,
    ValueSource,
)
from kale.items import item_tokens

Index = tuple[int, ...]


def task_key(name: str, index: Index) -> str:
    """A task's name in the run: ``square``, ``square[3]``, ``square[0][2]`` in nested loops."""
    return name + "".join(f"[{i}]" for i in index)


@dataclass
class Task:
    """One run of one step: the step, and its iteration of each loop around it."""

    key: str
    step: Step
    index: Index
    #: the keys whose end it waits for
    waits: set[str] = field(default_factory=set)


@dataclass
class _LoopRun:
    """One instance of a loop (per iteration of the loops around it), and its items once known."""

    key: str
    loop: Loop
    index: Index
    tokens: list[str] | None = None


@dataclass
class Changes:
    """What a change of state gives: tasks to record as waiting, tasks that can start, and tasks
    that will never run (key, reason, whether a condition chose so)."""

    created: list[Task] = field(default_factory=list)
    ready: list[Task] = field(default_factory=list)
    skipped: list[tuple[str, str, bool]] = field(default_factory=list)


class _Blocked(Exception):
    """A task cannot start yet: it waits for these keys."""

    def __init__(self, keys: set[str]) -> None:
        self.keys = keys


class _Never(Exception):
    """A task will never run."""

    def __init__(self, reason: str, by_condition: bool) -> None:
        self.reason = reason
        self.by_condition = by_condition


class Plan:
    """The tasks of one run of ``graph`` with parameter ``values``."""

    def __init__(self, graph: Graph, values: dict[str, Any]) -> None:
        self.graph = graph
        self.values = values
        self.tasks: dict[str, Task] = {}
        self.loop_runs: dict[str, _LoopRun] = {}
        #: how each finished task ended: "succeeded", "failed", "skipped" or "not-chosen"
        self.ended: dict[str, str] = {}
        self.branches: dict[str, int] = {}  # condition task -> the branch it chose
        self.reports: dict[str, dict[str, Any]] = {}
        self.waiters: dict[str, set[str]] = {}
        # What sits directly in each loop (None: the body outside any loop).
        self.members: dict[str | None, list[Step]] = {}
        self.inner_loops: dict[str | None, list[Loop]] = {}
        self.position = {step.name: number for number, step in enumerate(graph.steps)}
        for step in graph.steps:
            loops = step.loops
            self.members.setdefault(loops[-1].name if loops else None, []).append(step)
        for loop in graph.loops:
            outer = [scope for scope in loop.scopes if isinstance(scope, Loop)]
            self.inner_loops.setdefault(outer[-1].name if outer else None, []).append(loop)

    # -- what the scheduler calls --------------------------------------------------------------

    def start(self) -> Changes:
        changes = Changes()
        self._open(None, (), changes)
        return changes

    def finished(self, key: str, status: str, reports: dict[str, Any] | None = None) -> Changes:
        """A task ended: ``succeeded`` (with the result's ``reports``) or ``failed``."""
        changes = Changes()
        task = self.tasks[key]
        self.ended[key] = status
        if reports:
            self.reports[key] = reports
            if task.step.condition is not None and isinstance(reports.get("branch"), int):
                self.branches[key] = reports["branch"]
        self._wake(key, changes)
        return changes

    def waiting_keys(self) -> Iterator[str]:
        """Tasks and loops that have not ended (for a run that stops early)."""
        yield from (key for key in self.tasks if key not in self.ended)

    def unopened(self) -> list[str]:
        """What stands for the tasks of loops whose items never became known:
        ``square[*]``, one per step inside each such loop."""
        keys = []
        for run in self.loop_runs.values():
            if run.tokens is None and run.key not in self.ended:
                keys.extend(task_key(step.name, run.index) + "[*]" * (
                    len(step.loops) - len(run.index)) for step in self._inside(run.loop))
        return keys

    # -- inputs ---------------------------------------------------------------------------------

    def producer(self, task: Task, source: OutputRef) -> str:
        """The key of the task whose output ``source`` is, seen from ``task``."""
        depth = len(self.graph.step(source.step).loops)
        return task_key(source.step, task.index[:depth])

    def collected(self, task: Task, source: CollectedRef) -> list[str]:
        """The keys of the iterations a collected input gathers, in item order."""
        loop = self.graph.loop(source.loop)
        run = self.loop_runs[task_key(loop.name, task.index[:loop.depth - 1])]
        assert run.tokens is not None
        prefix = task.index[:loop.depth - 1]
        return [task_key(source.step, (*prefix, k)) for k in range(len(run.tokens))]

    def item(self, task: Task, source: ItemRef) -> tuple[str, str | None]:
        """A loop variable's token, and the key of the task whose output holds the whole list
        (None for a parameter or a literal)."""
        loop = self.graph.loop(source.loop)
        run = self.loop_runs[task_key(loop.name, task.index[:loop.depth - 1])]
        assert run.tokens is not None
        token = run.tokens[task.index[loop.depth - 1]]
        whole = self.producer(task, source.items) if isinstance(source.items, OutputRef) \
            else None
        return token, whole

    def chosen(self, task: Task, source: OneOfRef) -> OutputRef:
        """The output a name bound in every branch has in the branch that ran."""
        key = self._condition_key(task, source.condition)
        return source.options[self.branches[key]]

    # -- inner workings -------------------------------------------------------------------------

    def _condition_key(self, task: Task | _LoopRun, condition: str) -> str:
        depth = len(self.graph.step(condition).loops)
        return task_key(condition, task.index[:depth])

    def _inside(self, loop: Loop) -> list[Step]:
        return [step for step in self.graph.steps if loop in step.loops]

    def _open(self, loop: str | None, index: Index, changes: Changes) -> None:
        """Create the tasks and inner loops of one iteration of ``loop`` (or the body)."""
        for step in self.members.get(loop, []):
            task = Task(task_key(step.name, index), step, index)
            self.tasks[task.key] = task
            changes.created.append(task)
        for inner in self.inner_loops.get(loop, []):
            run = _LoopRun(task_key(inner.name, index), inner, index)
            self.loop_runs[run.key] = run
        for step in self.members.get(loop, []):
            self._check(self.tasks[task_key(step.name, index)], changes)
        for inner in self.inner_loops.get(loop, []):
            self._check_loop(self.loop_runs[task_key(inner.name, index)], changes)

    def _wake(self, key: str, changes: Changes) -> None:
        # A plain task that succeeded changes nothing for a waiter that still waits for
        # others (each of them wakes it when it ends): checking it again would cost as much as
        # all it needs, once per iteration a collecting step waits for (quadratic in items).
        settled = self.ended.get(key) == "succeeded" and key in self.tasks and \
            self.tasks[key].step.condition is None
        for waiter in sorted(self.waiters.pop(key, ()), key=self._order):
            if waiter in self.loop_runs:
                self._check_loop(self.loop_runs[waiter], changes)
            elif waiter in self.tasks and waiter not in self.ended:
                task = self.tasks[waiter]
                task.waits.discard(key)
                if settled and task.waits:
                    continue
                self._check(task, changes)

    def _order(self, key: str) -> tuple[int, Index]:
        # Body order, then item order: a loop's iterations start in the order of its items.
        task = self.tasks.get(key)
        if task is None:
            return (-1, ())
        return (self.position[task.step.name], task.index)

    def _wait(self, key: str, keys: set[str]) -> None:
        for needed in keys:
            self.waiters.setdefault(needed, set()).add(key)

    def _check(self, task: Task, changes: Changes) -> None:
        try:
            self._requirements(task, task.step.scopes, task.step.references())
        except _Blocked as blocked:
            task.waits = blocked.keys
            self._wait(task.key, blocked.keys)
            return
        except _Never as never:
            self._skip(task.key, never.reason, never.by_condition, changes)
            return
        task.waits = set()
        changes.ready.append(task)

    def _check_loop(self, run: _LoopRun, changes: Changes) -> None:
        loop = run.loop
        try:
            self._requirements(run, loop.scopes, iter((loop.items,)))
        except _Blocked as blocked:
            self._wait(run.key, blocked.keys)
            return
        except _Never as never:
            for step in self._inside(loop):
                key = task_key(step.name, run.index) + "[*]" * (len(step.loops) - len(run.index))
                changes.skipped.append((key, never.reason, never.by_condition))
            self._wake_never(run, never, changes)
            return
        items = loop.items
        if isinstance(items, Constant):
            run.tokens = item_tokens(items.value)
        elif isinstance(items, ParameterRef):
            run.tokens = item_tokens(self.values[items.name])
        else:
            producer = task_key(items.step, run.index[:len(self.graph.step(items.step).loops)])
            run.tokens = list(self.reports.get(producer, {}).get(f"items:{items.variable}", []))
        for k in range(len(run.tokens)):
            self._open(loop.name, (*run.index, k), changes)
        self._wake(run.key, changes)

    def _wake_never(self, run: _LoopRun, never: _Never, changes: Changes) -> None:
        """A loop that will never run: what collects it will not either."""
        self.ended[run.key] = "skipped"
        self._wake(run.key, changes)

    def _skip(self, key: str, reason: str, by_condition: bool, changes: Changes) -> None:
        self.ended[key] = "not-chosen" if by_condition else "skipped"
        changes.skipped.append((key, reason, by_condition))
        self._wake(key, changes)

    def _requirements(self, task: Task | _LoopRun, scopes: tuple[Any, ...],
                      sources: Iterator[ValueSource]) -> None:
        """Raise ``_Never`` or ``_Blocked`` unless everything ``task`` needs is there."""
        blocked: set[str] = set()
        for scope in scopes:
            if isinstance(scope, Branch):
                key = self._condition_key(task, scope.condition)
                if self._need(key, blocked):
                    chosen = self.branches[key]
                    if chosen != scope.index:
                        info = self.graph.step(scope.condition).condition
                        assert info is not None
                        raise _Never(_not_chosen(info, scope.index, chosen), True)
        if blocked:
            raise _Blocked(blocked)  # the branch first: its condition may skip everything
        for source in sources:
            for key in self._needs(task, source, blocked):
                self._need(key, blocked)
        if blocked:
            raise _Blocked(blocked)

    def _needs(self, task: Task | _LoopRun, source: ValueSource,
               blocked: set[str]) -> list[str]:
        if isinstance(source, OutputRef):
            depth = len(self.graph.step(source.step).loops)
            return [task_key(source.step, task.index[:depth])]
        if isinstance(source, ItemRef):
            return self._needs(task, source.items, blocked)
        if isinstance(source, CollectedRef):
            loop = self.graph.loop(source.loop)
            key = task_key(loop.name, task.index[:loop.depth - 1])
            run = self.loop_runs.get(key)
            if run is None or run.tokens is None:
                if self.ended.get(key) == "skipped":
                    raise _Never(f"needs every `{source.step}[...]`, which did not run", False)
                blocked.add(key)
                return []
            prefix = task.index[:loop.depth - 1]
            return [task_key(source.step, (*prefix, k)) for k in range(len(run.tokens))]
        if isinstance(source, OneOfRef):
            key = self._condition_key(task, source.condition)
            if not self._need(key, blocked):
                return []
            return self._needs(task, source.options[self.branches[key]], blocked)
        return []

    def _need(self, key: str, blocked: set[str]) -> bool:
        """Whether ``key`` succeeded; raises ``_Never`` if it will not, notes it as blocking
        while it runs."""
        ended = self.ended.get(key)
        if ended == "succeeded":
            return True
        if ended == "failed":
            raise _Never(f"needs `{key}`, which failed", False)
        if ended == "skipped":
            raise _Never(f"needs `{key}`, which did not run", False)
        if ended == "not-chosen":
            raise _Never(f"needs `{key}`, whose branch did not run", True)
        blocked.add(key)
        return False


def _not_chosen(info: Any, index: int, chosen: int) -> str:
    """Why a branch did not run, as the body wrote it."""
    if chosen < index:
        return f"the condition chose an earlier branch (`{info.describe(chosen)}`)"
    if index < len(info.tests):
        return f"its condition `{info.tests[index]}` was false"
    return "an earlier branch ran"
