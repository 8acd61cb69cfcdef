"""The checks of a ``tune()`` call, all before the first trial: the objective (a metric the
pipeline logs, found in the steps' code where it can be), the goal, the algorithm and the trial
counts. ``Settings`` is the checked call, which the local study and the Katib Experiment read.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from kale.tuning.algorithms import ALGORITHMS, check_algorithm, grid_size
from kale.tuning.space import Space, TuningError, check_space, space_json

if TYPE_CHECKING:
    from kale.errors import SourceLocation
    from kale.graph.model import Graph

GOALS = ("maximize", "minimize")


@dataclass
class Settings:
    """A checked ``tune()`` call."""

    space: dict[str, Space]
    objective: str
    goal: str
    algorithm: str
    max_trials: int
    parallel_trials: int
    max_failed_trials: int
    seed: int | None
    location: SourceLocation
    #: notes for the user (a grid smaller than max_trials...), printed when the study starts
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"objective": self.objective, "goal": self.goal, "algorithm": self.algorithm,
                "space": space_json(self.space), "max_trials": self.max_trials,
                "parallel_trials": self.parallel_trials,
                "max_failed_trials": self.max_failed_trials, "seed": self.seed}


def _count(option: str, value: Any, location: SourceLocation, low: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise TuningError(f"tune({option}={value!r}): {option} is a whole number of {low} or "
                          "more", location=location, fix=f"write {option}={max(low, 1)} (say)")
    return value


def check_settings(graph: Graph, *, parameters: Any, objective: Any, goal: Any,
                   algorithm: Any, max_trials: Any, parallel_trials: Any,
                   max_failed_trials: Any, seed: Any, location: SourceLocation,
                   local: bool) -> Settings:
    """Every setting of a ``tune()`` call, checked; ``local`` (a local study) also needs the
    algorithm to have an Optuna sampler."""
    space = check_space(graph, parameters, location, graph.name)
    objective = check_objective(graph, objective, location)
    if goal not in GOALS:
        raise TuningError(f"tune(goal={goal!r}): the goal is 'maximize' or 'minimize'",
                          location=location, fix="write goal='maximize' for a metric such as "
                          "accuracy, goal='minimize' for a loss")
    name = check_algorithm(algorithm, location)
    max_trials = _count("max_trials", max_trials, location, 1)
    parallel_trials = _count("parallel_trials", parallel_trials, location, 1)
    max_failed_trials = _count("max_failed_trials", max_failed_trials, location, 0)
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool) or seed < 0):
        raise TuningError(f"tune(seed={seed!r}): the seed is a whole number of 0 or more",
                          location=location, fix="write seed=42 (say), or leave it out")
    settings = Settings(space, objective, goal, name, max_trials, parallel_trials,
                        max_failed_trials, seed, location)
    if name == "grid":
        size = grid_size(space, location)
        if size < max_trials:
            settings.notes.append(f"the grid has {size} point{'s' if size != 1 else ''}: "
                                  f"{size} trial{'s' if size != 1 else ''}, not {max_trials}")
            settings.max_trials = size
    if parallel_trials > settings.max_trials:
        settings.parallel_trials = settings.max_trials
    if local:
        from kale.tuning.algorithms import local_sampler

        local_sampler(name, space, seed, location)  # no local equivalent: said before any trial
    assert name in ALGORITHMS
    return settings


def logged_metrics(graph: Graph) -> tuple[dict[str, list[str]], list[str]]:
    """The metric names the steps' code logs with a literal name, by name (the steps that log
    it), and the steps whose metrics cannot be known before they run (a computed name, a
    helper that logs, marked ``@has_metrics``, or a container step)."""
    from kale.source import parse_step_text

    names: dict[str, list[str]] = {}
    unknown: list[str] = []
    for step in graph.steps:
        function = step.function
        if step.container is not None or function is None:
            unknown.append(step.name)
            continue
        if function.has_metrics:
            unknown.append(step.name)
        try:
            tree = parse_step_text(function.text)
        except SyntaxError:
            unknown.append(step.name)
            continue
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            called = node.func.id if isinstance(node.func, ast.Name) else \
                node.func.attr if isinstance(node.func, ast.Attribute) else None
            if called != "log_metric":
                continue
            first = node.args[0] if node.args else next(
                (keyword.value for keyword in node.keywords if keyword.arg == "name"), None)
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                steps = names.setdefault(first.value, [])
                if step.name not in steps:
                    steps.append(step.name)
            elif step.name not in unknown:
                unknown.append(step.name)
    return names, unknown


def check_objective(graph: Graph, objective: Any, location: SourceLocation) -> str:
    """The objective, if the pipeline can log it: a metric name (``accuracy``), or ``step.name``
    when several steps log that name (``kale runs`` names them so). Refused when the steps'
    code shows it is never logged."""
    from kale.logs import NAME_RULE, bad_name

    names, unknown = logged_metrics(graph)
    if not isinstance(objective, str) or not objective:
        raise TuningError(f"tune(objective={objective!r}): the objective is the name of a metric "
                          "the pipeline logs with log_metric", location=location,
                          fix=_logged_fix(names))
    step_name, _, metric = objective.rpartition(".")
    why = bad_name(metric)
    if why is not None:
        raise TuningError(f"tune(objective={objective!r}): a metric's name {why}",
                          location=location, fix=f"a metric's name is {NAME_RULE}")
    if step_name:
        if step_name not in {step.name for step in graph.steps}:
            raise TuningError(f"tune(objective={objective!r}) names step {step_name!r}, which "
                              f"pipeline `{graph.name}` does not have", location=location,
                              fix=_logged_fix(names))
        if (metric in names and step_name in names[metric]) or step_name in unknown:
            return objective
    elif metric in names:
        if len(names[metric]) > 1:
            choices = " or ".join(f"objective={f'{step}.{metric}'!r}" for step in names[metric])
            raise TuningError(f"tune(objective={objective!r}): steps "
                              f"{', '.join(names[metric])} all log {metric!r}",
                              location=location, fix=f"name the step: {choices}")
        return objective
    elif unknown:
        return objective  # a step may log it under a computed name: known when it runs
    raise TuningError(f"tune(objective={objective!r}): pipeline `{graph.name}` never logs "
                      f"metric {metric!r}" + (f" in step {step_name!r}" if step_name else ""),
                      location=location, fix=_logged_fix(names))


def _logged_fix(names: dict[str, list[str]]) -> str:
    if not names:
        return ("log it in a step: `from kale.sdk.logging import log_metric`, then "
                "log_metric('accuracy', value) (a step that logs through a helper needs "
                "@has_metrics)")
    listed = ", ".join(repr(name) for name in names)
    return f"the pipeline logs {listed}: use one of them, or log the metric in a step"
