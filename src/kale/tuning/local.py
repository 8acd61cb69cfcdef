"""A local study: Optuna proposes, each trial is a local run of the pipeline.

Trials run ``parallel_trials`` at a time, each a normal local run (its own record in ``runs/``,
tagged with the study and trial) driven by a thread of this process: the scheduler waits on
its step processes, so threads cost nothing while steps run, and Kale's step-process server is
kept warm for each of them (``Zygote.keep_idle``). The main thread asks Optuna for parameters
(Optuna's ask-and-tell: it never runs our code), starts trials, and tells it each result as it
comes. A failed trial is told as failed and counted: more than ``max_failed_trials`` stop the
study. Ctrl-C stops the running trials (their runs end ``interrupted``, as any run stopped by
Ctrl-C) and returns the study with the finished trials.
"""

from __future__ import annotations

import sys
import threading
import time
import uuid
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import TYPE_CHECKING, Any

from kale.local.progress import PlainProgress
from kale.tuning.algorithms import decode, distributions, grid_points, local_sampler
from kale.tuning.study import Study, Trial, studies_folder, value_text

if TYPE_CHECKING:
    from collections.abc import Callable

    from kale.graph.model import Graph
    from kale.tuning.settings import Settings


class _Quiet(PlainProgress):
    """A trial's run shows nothing: the study prints a line per trial instead."""

    def _write(self, text: str) -> None:
        pass

    def start(self, run: Any, parallelism: int) -> None:
        pass

    def step_changed(self, step: str, status: str, detail: str = "") -> None:
        pass

    def finish(self, run: Any) -> None:
        pass  # not even the summary table: it would be thrown away


def run_study(graph: Graph, settings: Settings, bind: Callable[[dict[str, Any]], dict[str, Any]],
              *, parallelism: int | None = None, cache: bool | None = None,
              home: Any = None, stream: Any = None) -> Study:
    """Run the study; ``bind`` turns a trial's parameter values into the run's values (the
    call's other arguments and the defaults filled in, each coerced to its parameter's type)."""
    import optuna

    from kale.local import default_parallelism
    from kale.local.processes import Zygote
    from kale.local.record import kale_home

    out = stream or sys.stdout  # where a local run's progress goes
    home = home or kale_home(graph.project_root)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = local_sampler(settings.algorithm, settings.space, settings.seed, settings.location)
    optimizer = optuna.create_study(direction=settings.goal, sampler=sampler)
    space = distributions(settings.space)
    if settings.algorithm == "grid":
        for point in grid_points(settings.space, settings.location)[:settings.max_trials]:
            optimizer.enqueue_trial(point)
    study_id = str(uuid.uuid4())
    study = Study(study_id, graph.name, settings.objective, settings.goal, settings.algorithm,
                  settings.to_json(), started=time.time(),
                  folder=studies_folder(home) / study_id)
    study.save()
    stop = threading.Event()
    parallel = settings.parallel_trials
    print(f"kale: study {study_id[:8]}: tuning pipeline {graph.name} locally, "
          f"{settings.goal} {settings.objective} with {settings.algorithm}, "
          f"{settings.max_trials} trial{'s' if settings.max_trials != 1 else ''}, "
          f"{parallel} at a time", file=out)
    for note in settings.notes:
        print(f"kale: {note}", file=out)
    per_run = parallelism or max(1, default_parallelism() // parallel)

    def one(trial: Trial) -> None:
        from kale.errors import KaleError
        from kale.local import RunFailedError, run_graph
        from kale.local.record import run_metrics

        trial.started = time.time()
        try:
            values = bind(trial.parameters)
            run = run_graph(graph, values, parallelism=per_run, progress=_Quiet(), cache=cache,
                            study={"id": study_id, "trial": trial.number}, stop=stop)
        except RunFailedError as failed:
            trial.run_id = failed.run.id
            trial.status = "failed"
            steps = failed.run.failed_steps
            if steps and steps[0].attempts and steps[0].attempts[-1].error:
                message = steps[0].attempts[-1].error.get("message", "failed")
                trial.error = f"step `{steps[0].name}` {message.splitlines()[0]}"
            else:
                trial.error = failed.run.reason or "the run failed"
            return
        except KeyboardInterrupt:
            trial.status = "interrupted"
            return
        except KaleError as error:
            trial.status, trial.error = "failed", error.message
            return
        finally:
            trial.ended = time.time()
        trial.run_id = run.id
        metrics = run_metrics(run.to_json())
        if settings.objective not in metrics:
            trial.status = "failed"
            logged = ", ".join(metrics) or "none"
            trial.error = f"the run did not log metric {settings.objective!r} (it logged {logged})"
            return
        trial.value = float(metrics[settings.objective])
        trial.status = "succeeded"

    running: dict[Future[None], tuple[Trial, Any]] = {}
    failures = 0
    previous_keep = Zygote.keep_idle
    Zygote.keep_idle = max(previous_keep, parallel)
    # Started here, in the main thread: one started by a trial's thread would stop when that
    # thread ends (see Zygote.spawner), and each trial would pay for a new one.
    Zygote.warm(sorted({name for names in graph.step_modules.values() for name in names}),
                parallel)
    pool = ThreadPoolExecutor(max_workers=parallel, thread_name_prefix="kale-trial")
    try:
        started = 0
        while True:
            while len(running) < parallel and started < settings.max_trials and \
                    failures <= settings.max_failed_trials:
                asked = optimizer.ask(space)
                trial = Trial(started, decode(settings.space, asked.params))
                study.trials.append(trial)  # only this thread changes the list
                running[pool.submit(one, trial)] = (trial, asked)
                started += 1
            if not running:
                break
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                trial, asked = running.pop(future)
                future.result()
                if trial.status == "succeeded":
                    optimizer.tell(asked, trial.value)
                else:
                    optimizer.tell(asked, state=optuna.trial.TrialState.FAIL)
                    failures += trial.status == "failed"
                print(_trial_line(study, trial), file=out)
                if failures > settings.max_failed_trials and not study.reason:
                    study.reason = (f"{failures} trials failed, more than max_failed_trials="
                                    f"{settings.max_failed_trials}")
                    print(f"kale: {study.reason}: no more trials start", file=out)
                study.save()
        study.status = "failed" if study.reason else "succeeded"
    except KeyboardInterrupt:
        stop.set()  # each running trial's scheduler stops its steps, as Ctrl-C stops a run
        for future, (trial, asked) in running.items():
            future.exception()  # waits for it; the trial says how it ended
            optimizer.tell(asked, state=optuna.trial.TrialState.FAIL)
            print(_trial_line(study, trial), file=out)
        study.status = "interrupted"
        study.reason = "interrupted (Ctrl-C): the finished trials are kept"
    finally:
        pool.shutdown(wait=True)
        Zygote.keep_idle = previous_keep
        study.ended = time.time()
        study.save()
    print("\n" + study.table(), file=out)
    best = study.best_trial
    if best is None:
        print(f"\nkale: study {study_id[:8]} {study.status}: no trial succeeded"
              + (f" ({study.reason})" if study.reason else ""), file=out)
    else:
        print(f"\nkale: study {study_id[:8]} {study.status}"
              + (f" ({study.reason})" if study.reason else "")
              + f": best {settings.objective}={value_text(best.value)} at trial {best.number}: "
              + _parameters_text(best.parameters), file=out)
    print(f"  record: {study.folder}", file=out)
    return study


def _parameters_text(parameters: dict[str, Any]) -> str:
    return ", ".join(f"{name}={value_text(value)}" for name, value in parameters.items())


def _trial_line(study: Study, trial: Trial) -> str:
    from kale.local.progress import took

    mark = {"succeeded": "✓", "failed": "✗", "interrupted": "■"}.get(trial.status, "?")
    value = f"{study.objective}={value_text(trial.value)}" if trial.value is not None else \
        trial.error or trial.status
    best = study.best_trial
    tail = f"best {value_text(best.value)} (trial {best.number})" if best else "no best yet"
    run = f"run {trial.run_id[:8]}, " if trial.run_id else ""
    return (f"{mark} trial {trial.number:<3} {trial.status:<11} {value}  "
            f"[{_parameters_text(trial.parameters)}]  ({run}{took(trial.duration)})  {tail}")
