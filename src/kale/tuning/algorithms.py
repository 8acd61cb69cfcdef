"""Katib's algorithm names, and the Optuna sampler that plays each one locally.

One name means one algorithm in both places. Katib's suggestion services (v1beta1): ``random``,
``grid``, ``tpe``, ``multivariate-tpe`` (hyperopt and Optuna), ``cmaes``, ``sobol`` (goptuna),
``bayesianoptimization`` (scikit-optimize), ``hyperband``, ``enas``, ``darts``, ``pbt``. Locally:

- ``random``: ``RandomSampler``
- ``grid``: every point in order, as Katib walks them (every range needs a grid: a ``Float``
  its ``step``)
- ``tpe``: ``TPESampler``; ``multivariate-tpe``: ``TPESampler(multivariate=True)``
- ``cmaes``: ``CmaEsSampler`` (needs the ``cmaes`` package)
- ``sobol``: ``QMCSampler(qmc_type="sobol")`` (needs scipy)
- ``bayesianoptimization``: ``GPSampler``, a Gaussian process (needs scipy and torch)
- ``hyperband``: none; it stops trials early from the metrics they report while they run, and
  a pipeline's trial reports its metrics at its end
- ``enas``, ``darts``: none; neural architecture search trains a supernet, not a pipeline's
  parameters
- ``pbt``: none; population-based training hands model checkpoints between running trials

A name with no local equivalent is refused by a local study, with the nearest that runs, and
kept for Katib.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kale.tuning.space import Choice, Float, Space, TuningError

if TYPE_CHECKING:
    from collections.abc import Mapping

    from kale.errors import SourceLocation

#: Katib's names, each with the Optuna sampler that plays it locally (None: no local one).
ALGORITHMS: dict[str, str | None] = {
    "random": "RandomSampler",
    "grid": "GridSampler",
    "tpe": "TPESampler",
    "multivariate-tpe": "TPESampler(multivariate=True)",
    "cmaes": "CmaEsSampler",
    "sobol": "QMCSampler(qmc_type='sobol')",
    "bayesianoptimization": "GPSampler",
    "hyperband": None,
    "enas": None,
    "darts": None,
    "pbt": None,
}

#: Why the algorithms without a local sampler have none.
NO_LOCAL = {
    "hyperband": "Hyperband stops trials early from the metrics they report while they run; "
                 "a pipeline's trial reports its metrics when it ends",
    "enas": "ENAS is neural architecture search (Katib's nasConfig), not a search over a "
            "pipeline's parameters",
    "darts": "DARTS is neural architecture search (Katib's nasConfig), not a search over a "
             "pipeline's parameters",
    "pbt": "population-based training hands model checkpoints between trials as they run",
}

#: Packages an Optuna sampler needs beyond Optuna itself.
_NEEDS = {"cmaes": ("cmaes",), "sobol": ("scipy",), "bayesianoptimization": ("scipy", "torch")}

#: Katib algorithms that take a ``random_state`` setting (the seed).
SEEDED = ("random", "tpe", "multivariate-tpe", "cmaes", "sobol", "bayesianoptimization")


def check_algorithm(algorithm: Any, location: SourceLocation) -> str:
    """The algorithm's name if Katib has it; ``TuningError`` with the names otherwise."""
    import difflib

    if isinstance(algorithm, str):
        name = algorithm.strip().lower().replace("_", "-")
        name = {"bayesian": "bayesianoptimization", "bayesian-optimization":
                "bayesianoptimization", "cma-es": "cmaes", "multivariatetpe":
                "multivariate-tpe"}.get(name, name)
        if name in ALGORITHMS:
            return name
    close = difflib.get_close_matches(str(algorithm).lower(), list(ALGORITHMS), n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    raise TuningError(f"tune(algorithm={algorithm!r}): there is no such algorithm",
                      location=location, fix=f"{hint}the algorithms are Katib's: "
                      f"{', '.join(ALGORITHMS)}")


def grid_of(space: Mapping[str, Space], location: SourceLocation) -> dict[str, list[Any]]:
    """Every value of every range, for ``grid`` (locally and on Katib, which needs the same)."""
    grid = {}
    for name, entry in space.items():
        values = entry.grid()
        if values is None:
            assert isinstance(entry, Float)
            raise TuningError(f"algorithm 'grid' needs a grid of values, and parameter {name!r} "
                              f"is a continuous {entry.describe()}",
                              location=entry.location or location,
                              fix=f"give it a step: Float({entry.low!r}, {entry.high!r}, "
                              f"step=...), or choose another algorithm (random, tpe)")
        grid[name] = values
    return grid


def grid_size(space: Mapping[str, Space], location: SourceLocation) -> int:
    size = 1
    for values in grid_of(space, location).values():
        size *= len(values)
    return size


def grid_points(space: Mapping[str, Space], location: SourceLocation) -> list[dict[str, Any]]:
    """Every point of the grid, as Optuna params (a ``Choice`` value as its position), the last
    parameter varying fastest."""
    import itertools

    grid = grid_of(space, location)
    names = list(grid)
    axes = [range(len(space[name].values)) if isinstance(space[name], Choice) else grid[name]
            for name in names]
    return [dict(zip(names, point, strict=True)) for point in itertools.product(*axes)]


def local_sampler(algorithm: str, space: Mapping[str, Space], seed: int | None,
                  location: SourceLocation) -> Any:
    """The Optuna sampler that plays ``algorithm`` here; ``TuningError`` for one without a local
    equivalent or whose extra package is missing."""
    if ALGORITHMS[algorithm] is None:
        raise TuningError(f"algorithm {algorithm!r} has no local equivalent: "
                          f"{NO_LOCAL[algorithm]}", location=location,
                          fix="tune locally with 'tpe' (or random, grid, cmaes, sobol, "
                          f"bayesianoptimization); {algorithm!r} stays valid on Kubeflow "
                          "(--kfp creates a Katib Experiment)")
    import importlib.util

    missing = [package for package in _NEEDS.get(algorithm, ())
               if importlib.util.find_spec(package) is None]
    if missing:
        raise TuningError(f"algorithm {algorithm!r} runs locally with Optuna's "
                          f"{ALGORITHMS[algorithm]}, which needs {' and '.join(missing)}",
                          location=location, fix=f"pip install {' '.join(missing)}, or tune "
                          "with 'tpe'")
    import optuna

    samplers = optuna.samplers
    if algorithm == "random":
        return samplers.RandomSampler(seed=seed)
    if algorithm == "grid":
        # Optuna's GridSampler stops the study from inside tell() once the grid is done, which
        # only its optimize() loop allows: the study enqueues the points itself (grid_points),
        # in order, as Katib's grid walks them, and this sampler is never asked.
        return samplers.RandomSampler(seed=seed)
    if algorithm in ("tpe", "multivariate-tpe"):
        return samplers.TPESampler(seed=seed, multivariate=algorithm == "multivariate-tpe")
    if algorithm == "cmaes":
        return samplers.CmaEsSampler(seed=seed)
    if algorithm == "sobol":
        return samplers.QMCSampler(qmc_type="sobol", seed=seed)
    assert algorithm == "bayesianoptimization"
    return samplers.GPSampler(seed=seed)


def distributions(space: Mapping[str, Space]) -> dict[str, Any]:
    """Each range as an Optuna distribution (a ``Choice`` as the positions of its values)."""
    from optuna import distributions as d

    from kale.tuning.space import Int

    found: dict[str, Any] = {}
    for name, entry in space.items():
        if isinstance(entry, Float):
            found[name] = d.FloatDistribution(entry.low, entry.high, log=entry.log,
                                              step=entry.step)
        elif isinstance(entry, Int):
            found[name] = d.IntDistribution(entry.low, entry.high, log=entry.log,
                                            step=entry.step)
        else:
            assert isinstance(entry, Choice)
            found[name] = d.CategoricalDistribution(list(range(len(entry.values))))
    return found


def decode(space: Mapping[str, Space], params: Mapping[str, Any]) -> dict[str, Any]:
    """The parameter values of an Optuna trial's ``params``."""
    values = {}
    for name, entry in space.items():
        value = params[name]
        if isinstance(entry, Choice):
            value = entry.values[int(value)]
        elif isinstance(entry, Float):
            value = float(value)
        else:
            value = int(value)
        values[name] = value
    return values
