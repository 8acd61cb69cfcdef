"""The public API: ``@step`` marks the functions that become pipeline steps, ``@pipeline`` the one
function whose body wires them together.

The decorators only record: options are validated on the spot, nothing is parsed until the
pipeline is used, and calling a step outside a pipeline runs the plain function (so steps can be
unit-tested). Importing this module stays cheap: no kfp, numpy or pandas, and the parser is loaded
only when a pipeline is first used.

Importing it changes nothing either: a library or a test that imports it keeps its
``sys.argv`` and ``sys.excepthook``. The script being run (``__main__``) opts in by using the
decorators: from its first ``@step`` or ``@pipeline`` on, uncaught Kale errors are shown without
a traceback; when it decorates a pipeline, Kale's flags (``--kfp``...) are taken out of
``sys.argv``, before the script's main block parses its own arguments, and the process that
will fork the steps starts warming up (not with ``--kfp``). A pipeline defined in another
module reads the flags when the script first calls it. None of this happens inside a step's
process (``KALE_IN_STEP`` set), where a pipeline must not start at all.
"""

from __future__ import annotations

import inspect
import os
import sys
import warnings
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar, overload

from kale import flags
from kale.definitions import PipelineDefinition, StepFunction
from kale.errors import (
    InvalidOptionError,
    KaleError,
    KaleWarning,
    PipelineArgumentError,
    SourceLocation,
    StepDefinitionError,
    install_excepthook,
)
from kale.options import (
    PIPELINE_OPTIONS,
    STEP_OPTIONS,
    PipelineOptions,
    suggest,
    validate_pipeline_options,
    validate_step_options,
)

if TYPE_CHECKING:
    from kale.graph.model import Graph
    from kale.kfp.run import KfpRun
    from kale.kfp.submit import PipelinePackage
    from kale.local import Run
    from kale.tuning.study import Study

__all__ = ["KaleWarning", "PipelineFunction", "StepFunction", "artifact", "has_metrics",
           "pipeline", "step"]

F = TypeVar("F", bound=Callable[..., Any])

#: What ``has_metrics`` and ``artifact`` mark on a function (or a ``StepFunction``): read by
#: the graph parser, which gives the step's component its Kubeflow artifacts.
HAS_METRICS = "__kale_has_metrics__"
ARTIFACTS = "__kale_artifacts__"


def has_metrics(func: F) -> F:
    """Mark a step that logs metrics (``kale.sdk.logging.log_metric``), above or below
    ``@step``. On Kubeflow its component gets a ``Metrics`` artifact, which the KFP UI shows.
    A step whose own code calls ``log_metric`` is found without it; the mark is for a step
    that logs through a helper function."""
    location = _caller_location()
    if not (inspect.isfunction(func) or isinstance(func, StepFunction)):
        raise StepDefinitionError(
            f"@has_metrics decorates steps, not {type(func).__name__} {func!r}",
            location=location, fix="write @has_metrics directly above or below @step, "
            "without parentheses")
    setattr(func, HAS_METRICS, True)
    if isinstance(func, StepFunction):
        setattr(func.func, HAS_METRICS, True)
    return func


def artifact(*, name: str, path: str | os.PathLike[str]) -> Callable[[F], F]:
    """Mark the HTML file a step writes at ``path`` (relative: to the project's folder) as its
    HTML artifact ``name`` (open-source Kale's ``@artifact``), above or below ``@step``.

    After the step returns, the file is kept with the run (and on Kubeflow becomes an ``HTML``
    artifact); a step that did not write it fails, naming the file."""
    location = _caller_location()
    from kale.logs import NAME_RULE, bad_name

    why = bad_name(name)
    if why is not None:
        raise _locate(InvalidOptionError("name", name, f"an artifact's name {why}; it takes "
                                         f"{NAME_RULE}"), location, "name")
    if isinstance(path, os.PathLike):
        path = os.fspath(path)
    if not isinstance(path, str) or not path:
        raise _locate(InvalidOptionError("path", path, "the path of the file the step writes "
                                         "(a non-empty string) is expected"), location, "path")

    def decorate(func: F) -> F:
        if not (inspect.isfunction(func) or isinstance(func, StepFunction)):
            raise StepDefinitionError(
                f"@artifact(...) decorates steps, not {type(func).__name__} {func!r}",
                location=location, fix="write @artifact(name=..., path=...) directly above or "
                "below @step")
        targets = [func, func.func] if isinstance(func, StepFunction) else [func]
        for target in targets:
            held = list(getattr(target, ARTIFACTS, ()))
            if any(existing == name for existing, _ in held):
                raise StepDefinitionError(
                    f"the step has two artifacts named {name!r}", location=location,
                    fix="give each @artifact of a step a name of its own")
            # Decorators apply bottom up: keep them in the order they are written.
            setattr(target, ARTIFACTS, ((name, path), *held))
        return func

    return decorate


#: The variable the runtime sets, to the step's name, in a step's process.
IN_STEP_VARIABLE = "KALE_IN_STEP"

_script_prepared = False


def _prepare_script() -> None:
    """The script being run defines or calls a pipeline: show uncaught Kale errors compactly,
    and take Kale's flags out of ``sys.argv`` before its main block parses its own. Once per
    process, and never at import: a library or a test importing kale.sdk keeps both."""
    global _script_prepared
    if _script_prepared:
        return
    install_excepthook()  # first: a mistyped flag is then shown as Kale's error, not a traceback
    flags.load_from_sys_argv()
    _script_prepared = True


def _in_script(frame_depth: int = 2) -> bool:
    """Whether the code that called the caller of this (a decorator, or a pipeline's call) is
    the script being run (module ``__main__``), outside a step's process."""
    module = sys._getframe(frame_depth).f_globals.get("__name__")
    return module == "__main__" and not os.environ.get(IN_STEP_VARIABLE)


def _prestart_step_processes() -> None:
    """A script's pipeline is about to run: start the zygote now, so it warms up while the
    script finishes importing and the graph is built."""
    if os.environ.get("KALE_PRESTART", "1") == "0" or not hasattr(os, "fork") or \
            flags.FLAGS.kfp:  # with --kfp no step runs here
        return
    from kale.local.processes import Zygote

    Zygote.prestart()


def _caller_location(depth: int = 2) -> SourceLocation:
    return SourceLocation.of_frame(sys._getframe(depth))


def _run_locally(graph: Graph, values: dict[str, Any], location: SourceLocation,
                 **options: Any) -> Run:
    """A local run; a run to resume that cannot be found is the calling line's error."""
    from kale.local import run_graph
    from kale.local.resume import ResumeError

    try:
        return run_graph(graph, values, parallelism=flags.FLAGS.parallelism, **options)
    except ResumeError as error:
        raise _locate(error, location) from None


def _locate(error: KaleError, location: SourceLocation, keyword: str | None = None) -> KaleError:
    """Point an option error at the decorator call, under the offending keyword when found."""
    if error.location is None:
        from kale.source import refine_location

        if keyword is not None:
            key = None
            if isinstance(error, InvalidOptionError) and "." in error.option:
                keyword, key = error.option.split(".", 1)
            location = refine_location(location, keyword, key)
        error.location = location
    return error


def _check_function(target: Any, decorator: str, location: SourceLocation) -> None:
    if isinstance(target, (StepFunction, PipelineFunction)):
        raise StepDefinitionError(
            f"`{target.__name__}` is already decorated with {target.decorator}",
            location=location,
            fix=f"use either {target.decorator} or {decorator} on a function, once",
        )
    if not inspect.isfunction(target):
        what = "a class" if inspect.isclass(target) else f"{type(target).__name__} {target!r}"
        hint = (
            f"options are keywords: {decorator}(name={target!r})"
            if isinstance(target, str)
            else f"put {decorator} on a function defined with `def`"
        )
        raise StepDefinitionError(
            f"{decorator} decorates functions, not {what}", location=location, fix=hint
        )
    if target.__name__ == "<lambda>":
        raise StepDefinitionError(
            f"{decorator} cannot decorate a lambda: Kale reads the function's source by name",
            location=location,
            fix="define it with `def name(...):`",
        )


def _reject_unknown(unknown: Mapping[str, Any], known: tuple[str, ...], decorator: str,
                    location: SourceLocation) -> None:
    for option in unknown:
        hint = suggest(option, known)
        raise _locate(
            InvalidOptionError(
                option, unknown[option],
                f"{decorator} has no option {option!r}; {hint}its options are: {', '.join(known)}",
            ),
            location,
            option,
        )


@overload
def step(func: F, /) -> F: ...
@overload
def step(
    *,
    name: str | None = None,
    timeout: int | float | str | None = None,
    retry_count: int | None = None,
    retry_interval: int | float | str | None = None,
    retry_factor: int | None = None,
    retry_max_interval: int | float | str | None = None,
    limits: Mapping[str, str | int | float] | None = None,
    labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
    cache: bool | None = None,
) -> Callable[[F], F]: ...
def step(func: Any = None, /, **options: Any) -> Any:
    """Mark a function as a pipeline step.

    Use it bare (``@step``) or with options (``@step(name="train", timeout="1h",
    retry_count=2, retry_interval="30s", retry_factor=2, retry_max_interval="5m",
    limits={"memory": "4Gi"}, labels={...}, annotations={...}, cache=True)``). Durations are
    seconds or strings such as "45s", "2m", "1h30m". ``cache=True`` reuses the step's outputs
    when its code, module context, inputs and packages are unchanged (see ``kale.cache``).
    """
    location = _caller_location()
    if _in_script():
        install_excepthook()  # a mistake in this decorator is then shown as Kale's error
    known = {key: options.pop(key) for key in STEP_OPTIONS if key in options}
    _reject_unknown(options, STEP_OPTIONS, "@step", location)
    try:
        checked = validate_step_options(known)
    except InvalidOptionError as error:
        raise _locate(error, location, error.option) from None

    def decorate(target: Any) -> StepFunction:
        _check_function(target, "@step", location)
        wrapped = StepFunction(target, checked, location, known.get("name"))
        try:
            wrapped.step_name  # noqa: B018 - a function name Kubeflow cannot use fails here
        except InvalidOptionError as error:
            raise StepDefinitionError(
                f"the step's name comes from its function, `{target.__name__}`, and "
                f"{error.allowed[0].lower()}{error.allowed[1:]}",
                location=location,
                fix="give the step a name: @step(name=\"my-step\")",
            ) from None
        return wrapped

    if func is None:
        return decorate
    if known:
        raise StepDefinitionError("@step takes either a function or options, not both",
                                  location=location, fix="write @step(name=...) above the def")
    return decorate(func)


class PipelineFunction(PipelineDefinition):
    """A function decorated with ``@pipeline``. Calling it runs the pipeline."""

    def __init__(self, func: Callable[..., Any], options: PipelineOptions,
                 location: SourceLocation) -> None:
        super().__init__(func, options, location)
        self._graph: Graph | None = None

    @property
    def graph(self) -> Graph:
        """The pipeline's graph, parsed and checked on first use.

        Raises a ``DefinitionError`` naming the file, line and fix when the pipeline or one of
        its steps breaks a rule.
        """
        if self._graph is None:
            from kale.graph import parse_pipeline

            self._graph = parse_pipeline(self.func, self.options)
        return self._graph

    def bind_arguments(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """The value of every parameter for a call with these arguments, defaults filled in."""
        from kale.graph.model import ValueProblem, short_repr

        graph = self.graph
        names = [parameter.name for parameter in graph.parameters]
        signature = inspect.signature(self.func).parameters
        positional = [name for name in names
                      if signature[name].kind is inspect.Parameter.POSITIONAL_OR_KEYWORD]
        if len(args) > len(positional):
            raise PipelineArgumentError(
                f"{self.__name__}() takes {len(positional)} positional value(s) but {len(args)} "
                "were given",
                fix=f"its parameters are: {', '.join(names) or '(none)'}"
                + ("; pass the keyword-only ones by name" if len(positional) < len(names)
                   else ""),
            )
        given = dict(zip(positional, args, strict=False))
        for key, value in kwargs.items():
            if key not in names:
                import difflib

                close = difflib.get_close_matches(key, names, n=1)
                hint = f"did you mean {close[0]!r}? " if close else ""
                raise PipelineArgumentError(
                    f"pipeline `{self.__name__}` has no parameter {key!r}",
                    fix=f"{hint}its parameters are: {', '.join(names) or '(none)'}",
                )
            if key in given:
                raise PipelineArgumentError(
                    f"parameter {key!r} of `{self.__name__}` was given twice",
                    fix="pass it either by position or by keyword",
                )
            given[key] = value
        values = {}
        for parameter in graph.parameters:
            if parameter.name not in given:
                values[parameter.name] = parameter.default
                continue
            try:
                values[parameter.name] = parameter.coerce(given[parameter.name])
            except ValueProblem as problem:
                raise PipelineArgumentError(
                    f"the value of parameter {parameter.name!r} of `{self.__name__}` "
                    f"{problem.what}", fix=problem.fix) from None
            except ValueError as reason:
                raise PipelineArgumentError(
                    f"parameter {parameter.name!r} of `{self.__name__}` is a {parameter.type} "
                    f"(its default is {short_repr(parameter.default)}): {reason}",
                    fix=f"pass a {parameter.type}, or change the parameter's default",
                ) from None
        return values

    def _refuse_in_step(self, what: str, location: SourceLocation) -> None:
        """A step's process must never start a pipeline (it would run the whole pipeline again,
        inside one of its own steps, on every attempt)."""
        step_name = os.environ.get(IN_STEP_VARIABLE)
        if step_name:
            raise KaleError(
                f"pipeline `{self.options.name}` was {what} inside step `{step_name}` (the step "
                "imported a module that starts it, or called it): a step cannot start a pipeline",
                location=location,
                fix="guard the call with `if __name__ == \"__main__\":` so that it runs only "
                "when the script itself is run, not when a step imports its module")

    def _bind(self, args: tuple[Any, ...], kwargs: dict[str, Any],
              location: SourceLocation) -> tuple[Graph, dict[str, Any]]:
        try:
            graph = self.graph
            return graph, self.bind_arguments(*args, **kwargs)
        except PipelineArgumentError as error:
            raise _locate(error, location) from None

    def __call__(self, *args: Any, **kwargs: Any) -> Run | KfpRun | PipelinePackage:
        """Run the pipeline as the script's command line says, and return what ran.

        Without ``--kfp``: run it on this machine (see ``run``) and return the ``Run``; raises
        ``RunFailedError`` (uncaught: a summary and exit status 1) if a step fails. With
        ``--kfp``: compile it, submit it to Kubeflow Pipelines and return the ``KfpRun``
        (``--wait`` follows it to its end); with ``--kfp --dry-run`` only write the package and
        return its path (a ``PipelinePackage``, whose ``status`` is ``"compiled"``). All three
        have a ``status``.
        """
        location = _caller_location()
        self._refuse_in_step("called", location)
        if _in_script():
            _prepare_script()  # a pipeline imported from another module: its flags are read now
        graph, values = self._bind(args, kwargs, location)
        if flags.FLAGS.kfp:
            from kale.kfp.submit import compile_for_kubeflow

            return compile_for_kubeflow(graph, values, flags.FLAGS)
        return _run_locally(graph, values, location, cache=flags.FLAGS.cache,
                            resume=flags.FLAGS.resume, from_step=flags.FLAGS.from_step)

    def run(self, *args: Any, cache: bool | None = None, resume: str | bool | None = None,
            from_step: str | None = None, **params: Any) -> Run:
        """Run the pipeline on this machine with these parameter values, whatever the command
        line says (``--kfp`` is ignored; ``--parallelism``, ``--cache`` and ``--no-cache`` are
        honoured once Kale has read its flags), and return the ``Run``.

        ``cache=True`` caches every step of this run, ``cache=False`` none (either wins over
        ``--cache``/``--no-cache`` and the steps' own option); None leaves it to those.
        ``resume`` continues an earlier run (its id or the id's first characters; ``True``
        for this pipeline's last run; default: ``--resume`` from the command line), reusing
        what succeeded there and is unchanged; ``from_step`` makes that step and every step
        after it run again. A pipeline parameter named like one of these is passed by position.

        Raises ``PipelineArgumentError`` for values that do not match the parameters, and
        ``RunFailedError`` if a step fails.
        """
        location = _caller_location()
        self._refuse_in_step("run with .run()", location)
        if cache is not None and not isinstance(cache, bool):
            raise _locate(InvalidOptionError(
                "cache", cache, "run() takes True, False or None",
                fix="write run(cache=True) to reuse unchanged steps, run(cache=False) to run "
                "every step, or leave it out for each step's own cache option"), location)
        if resume is not None and not isinstance(resume, (bool, str)):
            raise _locate(InvalidOptionError(
                "resume", resume, "run() takes a run id (or its first characters), True for "
                "this pipeline's last run, or False/None",
                fix="write run(resume=True), or run(resume='1a2b3c4d') with an id `kale runs` "
                "lists"), location)
        if from_step is not None and (not isinstance(from_step, str) or not from_step):
            raise _locate(InvalidOptionError(
                "from_step", from_step, "run() takes the name of a step",
                fix="write run(from_step='train') with one of the pipeline's steps"), location)
        graph, values = self._bind(args, params, location)
        for option, value in (("cache", cache), ("resume", resume), ("from_step", from_step)):
            if value is not None and any(p.name == option for p in graph.parameters):
                raise _locate(PipelineArgumentError(
                    f"`{option}` is both an option of run() and a parameter of pipeline "
                    f"`{self.__name__}`; run() took it as its option",
                    fix=f"pass the parameter `{option}` by position, or rename it"), location)
        if resume is None and from_step is None:
            resume, from_step = flags.FLAGS.resume, flags.FLAGS.from_step
        return _run_locally(graph, values, location,
                            cache=flags.FLAGS.cache if cache is None else cache,
                            resume=resume, from_step=from_step)

    def compile(self, path: str | os.PathLike[str] | None = None, **options: Any
                ) -> PipelinePackage:
        """Write the pipeline's Kubeflow Pipelines package and return its path.

        ``path`` defaults to ``<pipeline name>.yaml`` in the working directory. ``options`` are
        those ``--kfp`` flags set: ``image`` (the steps' base image), ``requirements`` (a
        requirements file for the steps) and ``bundle_store`` (where a bundle too big for the
        package is uploaded; without it nothing is contacted). The package holds the
        parameters' defaults; ``submit`` runs it with other values.
        """
        location = _caller_location()
        self._refuse_in_step("compiled with .compile()", location)
        chosen = self._compile_options(options, "compile", location)
        graph = self._bind((), {}, location)[0]
        from kale.kfp.submit import compile_package, package_path

        try:
            package_path(graph, path, option="path=")  # a bad path is the caller's line
        except KaleError as error:
            raise _locate(error, location) from None
        return compile_package(graph, path, option="path=", **chosen)

    def submit(self, *args: Any, host: str | None = None, namespace: str | None = None,
               experiment: str | None = None, wait: bool = False,
               compile_options: Mapping[str, Any] | None = None, **params: Any) -> KfpRun:
        """Compile the pipeline, upload it to Kubeflow Pipelines and start a run with these
        parameter values; return the ``KfpRun`` (``.id``, ``.url``, ``.status``, ``.wait()``).

        ``host`` and ``namespace`` are ``--kfp-host`` and ``--namespace`` (found as for
        ``--kfp`` when not given), ``experiment`` replaces the pipeline's experiment, and
        ``compile_options`` are ``compile``'s options (``image``, ``requirements``,
        ``bundle_store``). ``wait=True`` follows the run to its end, as ``--wait`` does, and
        raises ``KubeflowError`` unless it succeeds; ``run.wait()`` returns the final status
        instead. The command line plays no part.
        """
        location = _caller_location()
        self._refuse_in_step("submitted with .submit()", location)
        chosen = self._compile_options(dict(compile_options or {}), "submit", location)
        graph, values = self._bind(args, params, location)
        given = {"host": host, "namespace": namespace, "experiment": experiment, "wait": wait,
                 "compile_options": compile_options}
        for parameter in graph.parameters:
            if given.get(parameter.name) not in (None, False):
                raise _locate(PipelineArgumentError(
                    f"`{parameter.name}` is both an option of submit() and a parameter of "
                    f"pipeline `{self.__name__}`; submit() took it as its option",
                    fix=f"pass the parameter `{parameter.name}` by position, or rename it"),
                    location)
        if experiment is not None and (not isinstance(experiment, str) or not experiment):
            raise _locate(InvalidOptionError("experiment", experiment, "the name of an "
                                             "experiment (a non-empty string) is expected"),
                          location)
        from kale.kfp.submit import check_run_values, submit_pipeline

        try:
            check_run_values(graph, values)  # a value Kubeflow would round is the caller's line
        except KaleError as error:
            raise _locate(error, location) from None
        run = submit_pipeline(graph, values, host=host, namespace=namespace,
                              experiment=experiment, **chosen)
        if wait:
            run.wait(check=True)
        return run

    def tune(self, *args: Any, parameters: Mapping[str, Any], objective: str,
             goal: str = "maximize", algorithm: str = "tpe", max_trials: int = 10,
             parallel_trials: int = 1, max_failed_trials: int = 3, seed: int | None = None,
             kfp: bool | None = None, cache: bool | None = None, **params: Any) -> Study:
        """Tune the pipeline's parameters: try ``max_trials`` points of the search space
        ``parameters`` (``{"lr": Float(1e-4, 1e-1, log=True), "depth": Int(2, 10), "kernel":
        Choice(["rbf", "linear"])}``, from ``kale.sdk.tuning``) and return the ``Study``
        (``best_parameters``, ``best_value``, ``trials``).

        ``objective`` is a metric a step logs with ``log_metric`` (``step.name`` when several
        steps log that name), ``goal`` ``"maximize"`` or ``"minimize"``, ``algorithm`` one of
        Katib's names (``random``, ``grid``, ``tpe``, ``multivariate-tpe``, ``cmaes``,
        ``sobol``, ``bayesianoptimization``; ``hyperband``, ``enas``, ``darts`` and ``pbt`` on
        Kubeflow only). ``parallel_trials`` run at once; more than ``max_failed_trials``
        failures stop the study; ``seed`` makes the proposals repeatable. The pipeline's other
        parameters keep the values of ``args``/``params``, else their defaults.

        Locally (by default), each trial is a local run, proposed by Optuna; ``cache`` is
        ``run()``'s. With ``kfp=True``, or ``--kfp`` on the script's command line when ``kfp``
        is None, the pipeline is uploaded and a Katib Experiment created (``--dry-run`` writes
        it beside the package as ``PKG.katib.yaml``; ``--wait`` follows its trials).
        Everything is checked before the first trial.
        """
        location = _caller_location()
        self._refuse_in_step("tuned with .tune()", location)
        if _in_script():
            _prepare_script()
        graph, values = self._bind(args, params, location)
        given = {"parameters": parameters, "objective": objective, "goal": goal,
                 "algorithm": algorithm, "max_trials": max_trials,
                 "parallel_trials": parallel_trials, "max_failed_trials": max_failed_trials,
                 "seed": seed, "kfp": kfp, "cache": cache}
        defaults = {"goal": "maximize", "algorithm": "tpe", "max_trials": 10,
                    "parallel_trials": 1, "max_failed_trials": 3, "seed": None, "kfp": None,
                    "cache": None}
        positional = [p.name for p in graph.parameters][:len(args)]
        for parameter in graph.parameters:
            if parameter.name in given and parameter.name not in positional and \
                    given[parameter.name] != defaults.get(parameter.name, object()):
                raise _locate(PipelineArgumentError(
                    f"`{parameter.name}` is both an option of tune() and a parameter of "
                    f"pipeline `{self.__name__}`; tune() took it as its option",
                    fix=f"pass the parameter `{parameter.name}` by position, or rename it"),
                    location)
        if kfp is not None and not isinstance(kfp, bool):
            raise _locate(InvalidOptionError("kfp", kfp, "tune() takes True (Katib on "
                                             "Kubeflow), False (locally) or None (as the "
                                             "command line says: --kfp)"), location)
        on_kubeflow = flags.FLAGS.kfp if kfp is None else kfp
        from kale.tuning.settings import check_settings

        settings = check_settings(graph, parameters=parameters, objective=objective, goal=goal,
                                  algorithm=algorithm, max_trials=max_trials,
                                  parallel_trials=parallel_trials,
                                  max_failed_trials=max_failed_trials, seed=seed,
                                  location=location, local=not on_kubeflow)
        if on_kubeflow:
            from kale.tuning.katib import tune_on_kubeflow

            return tune_on_kubeflow(graph, values, settings, flags.FLAGS)
        from kale.tuning.local import run_study

        def bind(trial: dict[str, Any]) -> dict[str, Any]:
            chosen = dict(values)
            for name, value in trial.items():
                parameter = next(p for p in graph.parameters if p.name == name)
                chosen[name] = parameter.coerce(value)
            return chosen

        return run_study(graph, settings, bind, parallelism=flags.FLAGS.parallelism,
                         cache=flags.FLAGS.cache if cache is None else cache)

    def _compile_options(self, options: dict[str, Any], method: str,
                         location: SourceLocation) -> dict[str, Any]:
        """``options`` checked: known, and strings (a requirements file may be a Path)."""
        from kale.kfp.submit import COMPILE_OPTIONS

        known = tuple(COMPILE_OPTIONS)
        what = "option" if method == "compile" else "entry in compile_options"
        for key, value in options.items():
            if key == "install":
                if not isinstance(value, bool):
                    raise _locate(InvalidOptionError(
                        key, value, "True (the default: steps install their packages) or "
                        "False (--no-install: the image holds them) is expected"), location)
                continue
            if key in known:
                if key == "requirements" and isinstance(value, os.PathLike):
                    value = options[key] = os.fspath(value)
                if value is not None and (not isinstance(value, str) or not value):
                    raise _locate(InvalidOptionError(
                        key, value, f"{COMPILE_OPTIONS[key]} takes a non-empty string"), location)
                if key == "server_version" and value is not None:
                    from kale.kfp.server import parse_version

                    if parse_version(value) is None or parse_version(value) < (2, 0, 0):
                        raise _locate(InvalidOptionError(
                            key, value, "a Kubeflow Pipelines release of 2.0.0 or later is "
                            "expected, as the server's health endpoint reports it (tag_name)",
                            fix=f"for example {key}='2.14.3'"), location)
                continue
            if key in ("host", "namespace", "experiment", "wait"):
                hint = ("it is an option of submit(), which uploads and runs the pipeline; "
                        "compile() only writes the package" if method == "compile" else
                        f"it is an option of submit() itself: submit({key}=...)")
            elif key in ("path", "output"):
                hint = ("submit() compiles into a temporary file; call compile(path) to keep "
                        "the package" if method == "submit" else "the path is compile(path)")
            else:
                hint = f"{suggest(key, known)}the options are: {', '.join(known)}"
            raise _locate(InvalidOptionError(key, options[key], f"{method}() takes no {what} "
                                             f"{key!r}", fix=hint), location)
        return options


@overload
def pipeline(func: F, /) -> F: ...
@overload
def pipeline(
    *,
    name: str | None = None,
    timeout: int | float | str | None = None,
    experiment: str | None = None,
    description: str | None = None,
    autosnapshot: bool | None = None,
    steps_defaults: Mapping[str, Any] | None = None,
    loop_parallelism: int | None = None,
) -> Callable[[F], F]: ...
def pipeline(func: Any = None, /, **options: Any) -> Any:
    """Mark the function whose body calls the steps; its arguments are the pipeline parameters.

    Options: ``name``, ``timeout`` (for the whole run), ``experiment``, ``description``,
    ``autosnapshot``, ``steps_defaults`` (options applied to every step; a step's own win) and
    ``loop_parallelism`` (how many iterations of each ``for`` loop run at once).
    """
    location = _caller_location()
    in_script = _in_script()
    if in_script:
        install_excepthook()
    known = {key: options.pop(key) for key in PIPELINE_OPTIONS if key in options}
    _reject_unknown(options, PIPELINE_OPTIONS, "@pipeline", location)

    def decorate(target: Any) -> PipelineFunction:
        _check_function(target, "@pipeline", location)
        try:
            checked = validate_pipeline_options(target.__name__, known)
        except InvalidOptionError as error:
            if error.option == "name" and "name" not in known:
                raise StepDefinitionError(
                    f"the pipeline's name comes from its function, `{target.__name__}`, and "
                    f"{error.allowed[0].lower()}{error.allowed[1:]}",
                    location=location,
                    fix="give the pipeline a name: @pipeline(name=\"my-pipeline\")",
                ) from None
            keyword = error.option.split(".")[0]
            raise _locate(error, location, keyword) from None
        if in_script:
            _prepare_script()
            _prestart_step_processes()
        if checked.autosnapshot:
            warnings.warn_explicit(
                "autosnapshot=True has no effect: it asked Arrikto's Rok to snapshot volumes. "
                "What Kale keeps instead: every step's outputs (in the run record locally, as "
                "artifacts in Kubeflow's artifact store), the project bundle each run ran (by "
                "content hash), and with cache=True or --cache, unchanged steps are reused; "
                "`--resume` continues a failed or interrupted local run from what succeeded.",
                KaleWarning, location.file, location.line,
            )
        return PipelineFunction(target, checked, location)

    if func is None:
        return decorate
    if known:
        raise StepDefinitionError("@pipeline takes either a function or options, not both",
                                  location=location, fix="write @pipeline(name=...) above the def")
    return decorate(func)
