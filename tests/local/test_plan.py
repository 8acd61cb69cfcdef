"""The plan of a local run (``kale.local.plan``) on generated bodies with branches, loops and
collected results, driven without processes: whatever order tasks finish in and whatever they
report, a task starts only once everything it reads has succeeded and its branch was chosen,
every task either runs or is skipped, and nothing waits forever."""

from __future__ import annotations

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from kale.errors import DefinitionError
from kale.graph.model import Branch, CollectedRef, ItemRef, OneOfRef, OutputRef
from kale.items import item_tokens
from kale.local.plan import Plan, task_key
from tests.graph.test_parser_properties import build, parse_from_root

PARAMETERS = "source='db', n=1, items=[1, 2]"


@st.composite
def block(draw, visible: list[str], lists: list[str], depth: int, lines: list[str],
          indent: str) -> list[str]:
    """Statements of one block; returns the names it binds that stay visible after it."""
    bound: list[str] = []
    for _ in range(draw(st.integers(1, 3))):
        names = visible + bound
        kind = draw(st.sampled_from(["call", "call", "for", "if", "collect"] if depth < 2
                                    else ["call"]))
        if kind == "call":
            target = draw(st.sampled_from(["a", "b", "c", "d"]))
            args = draw(st.lists(st.sampled_from(names), min_size=1, max_size=2)) \
                if names else []
            step = ["s0", "s1", "s2"][len(args)]
            lines.append(f"{indent}{target} = {step}({', '.join(args)})")
            bound.append(target)
        elif kind == "for":
            items = draw(st.sampled_from([*lists, "items", "[1, 2, 3]", "[]"]))
            variable = draw(st.sampled_from(["i", "j"]))
            lines.append(f"{indent}for {variable} in {items}:")
            draw(block([*names, variable], lists, depth + 1, lines, indent + "    "))
        elif kind == "collect":
            items = draw(st.sampled_from([*lists, "items", "[4, 5]"]))
            target = draw(st.sampled_from(["e", "f"]))
            lines.append(f"{indent}{target} = [s1(k) for k in {items}]")
            bound.append(target)
        else:
            test = draw(st.sampled_from(names)) if names else "n"
            lines.append(f"{indent}if {test} == 1:")
            draw(block(names, lists, depth + 1, lines, indent + "    "))
            if draw(st.booleans()):
                lines.append(f"{indent}else:")
                draw(block(names, lists, depth + 1, lines, indent + "    "))
    return bound


@st.composite
def bodies(draw) -> str:
    lines: list[str] = ["x = s0()", "listed = s0()"]
    draw(block(["x", "n"], ["listed"], 0, lines, ""))
    return "\n".join(lines)


def graph_of(text: str):
    import ast

    pipeline = build(ast.parse(text).body, parameters=PARAMETERS)
    try:
        return parse_from_root(pipeline)
    except DefinitionError:
        assume(False)


def producer_key(graph, task, source: OutputRef) -> str:
    depth = len(graph.step(source.step).loops)
    return task_key(source.step, task.index[:depth])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(bodies(), st.data())
def test_every_task_runs_once_after_what_it_needs_or_is_skipped(text, data):
    graph = graph_of(text)
    plan = Plan(graph, {"source": "db", "n": 1, "items": [1, 2]})
    changes = plan.start()
    created = {task.key for task in changes.created}
    ready = list(changes.ready)
    succeeded: set[str] = set()
    skipped: set[str] = {key for key, _, _ in changes.skipped}
    branches: dict[str, int] = {}
    started: set[str] = set()
    while ready:
        task = ready.pop(data.draw(st.integers(0, len(ready) - 1)))
        assert task.key not in started, "a task started twice"
        started.add(task.key)
        for scope in task.step.scopes:
            if isinstance(scope, Branch):
                depth = len(graph.step(scope.condition).loops)
                assert branches[task_key(scope.condition, task.index[:depth])] == scope.index
        for argument in task.step.arguments:
            source = argument.source
            if isinstance(source, OneOfRef):
                source = plan.chosen(task, source)
            if isinstance(source, OutputRef):
                assert producer_key(graph, task, source) in succeeded
            elif isinstance(source, ItemRef) and isinstance(source.items, OutputRef):
                assert producer_key(graph, task, source.items) in succeeded
            elif isinstance(source, CollectedRef):
                assert all(key in succeeded for key in plan.collected(task, source))
        if data.draw(st.integers(0, 9)) == 0:
            changes = plan.finished(task.key, "failed")
        else:
            reports = {}
            if task.step.condition is not None:
                reports["branch"] = data.draw(st.integers(0, len(task.step.condition.tests)))
                branches[task.key] = reports["branch"]
            for name in task.step.item_outputs:
                reports[f"items:{name}"] = item_tokens(list(range(data.draw(st.integers(0, 3)))))
            succeeded.add(task.key)
            changes = plan.finished(task.key, "succeeded", reports)
        created |= {new.key for new in changes.created}
        skipped |= {key for key, _, _ in changes.skipped}
        ready.extend(changes.ready)
    assert not started & skipped
    assert created <= started | skipped, f"never ran nor skipped: {created - started - skipped}"
    assert set(plan.waiting_keys()) <= skipped | started


def test_a_collecting_step_is_not_checked_again_for_each_iteration_that_ends(monkeypatch):
    # Each iteration that succeeded used to check the collecting step again, over all the
    # iterations it needs: quadratic (5000 items took the plan alone 50 s). Counted, not timed.
    checks = []
    original = Plan._check

    def counted(self, task, changes):
        checks.append(task.key)
        return original(self, task, changes)

    monkeypatch.setattr(Plan, "_check", counted)
    graph = graph_of("listed = s0()\nr = [s1(k) for k in listed]\nx = s1(r)")
    plan = Plan(graph, {"source": "db", "n": 1, "items": [1, 2]})
    ready = list(plan.start().ready)
    order = []
    while ready:
        task = ready.pop(0)
        order.append(task.key)
        reports = {f"items:{name}": item_tokens(list(range(5000)))
                   for name in task.step.item_outputs}
        ready.extend(plan.finished(task.key, "succeeded", reports).ready)
    assert order[-1] == "s1-2" and len(order) == 5002
    assert checks.count("s1-2") <= 3  # once when created, once more when its loop opens...
    assert len(checks) <= 2 * 5002
