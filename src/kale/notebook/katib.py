"""A tagged notebook's ``katib_run``/``katib_metadata`` as the options of ``pipeline.tune()``.

Open-source Kale's notebooks keep a Katib search in their ``kubeflow_notebook`` metadata, in
Katib's own spelling::

    "katib_run": true,
    "katib_metadata": {
        "parameters": [{"name": "nodes_number", "parameterType": "int",
                        "feasibleSpace": {"min": "256", "max": "1200", "step": "256"}},
                       {"name": "learning_rate", "parameterType": "categorical",
                        "feasibleSpace": {"list": ["0.001", "0.005"]}}],
        "objective": {"type": "maximize", "objectiveMetricName": "accuracy", "goal": 90},
        "algorithm": {"algorithmName": "grid"},
        "maxTrialCount": 16, "parallelTrialCount": 1, "maxFailedTrialCount": 3}

The Kale JupyterLab extension writes every number as a string, and a categorical list's items
too: each is read as the type of the pipeline parameter it tunes (``"0.001"`` for a float
parameter is 0.001). ``parameterType`` ``double`` is ``Float``, ``int`` is ``Int``,
``categorical`` and ``discrete`` are ``Choice``. The objective's ``goal`` (Katib ends the
experiment once it is reached) has no counterpart in a study, which runs its trials; the run
says so. ``additionalMetricNames`` are logged anyway (every metric of a trial is kept).
"""

from __future__ import annotations

from typing import Any

from kale.notebook.reader import CellLocation, NotebookError

_TYPES = {"double": "float", "int": "int", "categorical": "choice", "discrete": "choice"}


def tune_options(metadata: dict[str, Any], graph: Any, file_name: str) -> dict[str, Any]:
    """``tune()``'s keyword arguments for the notebook's ``katib_metadata``; raises
    ``NotebookError`` (at the metadata, with the fix) for what cannot be read."""
    from kale.sdk.tuning import Choice, Float, Int

    at = CellLocation(f"{file_name}, metadata kubeflow_notebook.katib_metadata", 1)
    katib = metadata.get("katib_metadata")

    def fail(message: str, fix: str) -> NotebookError:
        return NotebookError(message, location=at, fix=fix)

    if not isinstance(katib, dict):
        raise fail("the notebook asks for a Katib search (`katib_run: true`) and its metadata "
                   "has no `katib_metadata` object", "describe the search in `katib_metadata` "
                   "(parameters, objective, algorithm, trial counts), or set `katib_run` to "
                   "false to run the pipeline once")
    known = {parameter.name: parameter for parameter in graph.parameters}
    spaces: dict[str, Any] = {}
    for number, entry in enumerate(katib.get("parameters") or [], 1):
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise fail(f"katib_metadata parameter {number} has no name",
                       "give each parameter a `name`: one of the `pipeline-parameters` cell's")
        name = entry["name"]
        if name not in known:
            raise fail(f"katib_metadata tunes `{name}`, which is not a pipeline parameter",
                       "tune names of the `pipeline-parameters` cell: "
                       + (", ".join(known) or "(the notebook has none)"))
        kind = _TYPES.get(str(entry.get("parameterType", "")).lower())
        space = entry.get("feasibleSpace") if isinstance(entry.get("feasibleSpace"), dict) \
            else {}
        parameter = known[name]
        try:
            if kind == "choice":
                items = space.get("list")
                if not isinstance(items, list) or not items:
                    raise ValueError("a categorical parameter needs `feasibleSpace.list`")
                spaces[name] = Choice([parameter.coerce(item) for item in items])
            elif kind in ("float", "int"):
                cast = float if kind == "float" else int
                low, high = cast(space["min"]), cast(space["max"])
                step = space.get("step")
                if kind == "int":
                    spaces[name] = Int(low, high, step=int(step) if step not in (None, "")
                                       else 1)
                else:
                    spaces[name] = Float(low, high, step=float(step) if step not in
                                         (None, "") else None)
            else:
                raise ValueError(f"parameterType {entry.get('parameterType')!r} is not one of "
                                 "double, int, categorical, discrete")
        except (KeyError, TypeError, ValueError) as error:
            detail = f"`{error.args[0]}` is missing" if isinstance(error, KeyError) else \
                str(error)
            raise fail(f"katib_metadata parameter `{name}` cannot be read: {detail}",
                       "give double and int parameters `feasibleSpace` `min` and `max` (and "
                       "`step`), categorical ones a `list`") from None
        except NotebookError:
            raise
        except Exception as error:  # a space that does not fit the parameter
            raise fail(f"katib_metadata parameter `{name}`: {getattr(error, 'message', error)}",
                       getattr(error, "fix", None) or "fix its feasibleSpace") from None
    if not spaces:
        raise fail("katib_metadata tunes no parameter", "list the parameters to tune in "
                   "`katib_metadata.parameters`")
    objective = katib.get("objective") if isinstance(katib.get("objective"), dict) else {}
    metric = objective.get("objectiveMetricName")
    if not isinstance(metric, str) or not metric:
        raise fail("katib_metadata has no objective metric (`objective.objectiveMetricName`)",
                   "name a metric of the `pipeline-metrics` cell as the objective")
    goal = str(objective.get("type") or "maximize").lower()
    algorithm = katib.get("algorithm") if isinstance(katib.get("algorithm"), dict) else {}
    options: dict[str, Any] = {
        "parameters": spaces, "objective": metric, "goal": goal,
        "algorithm": str(algorithm.get("algorithmName") or "random").lower(),
    }
    for key, option in (("maxTrialCount", "max_trials"), ("parallelTrialCount",
                                                          "parallel_trials"),
                        ("maxFailedTrialCount", "max_failed_trials")):
        if katib.get(key) not in (None, ""):
            try:
                options[option] = int(katib[key])
            except (TypeError, ValueError):
                raise fail(f"katib_metadata `{key}` is {katib[key]!r}, not a whole number",
                           f"give `{key}` a whole number") from None
    return options


def goal_note(metadata: dict[str, Any]) -> str | None:
    """What a study does not do of the metadata: stop once the objective's goal is reached."""
    katib = metadata.get("katib_metadata")
    objective = katib.get("objective") if isinstance(katib, dict) else None
    if isinstance(objective, dict) and objective.get("goal") not in (None, ""):
        return (f"kale: katib_metadata's objective goal ({objective['goal']}) ends a Katib "
                "experiment early once a trial reaches it; a local study runs all its trials")
    return None
