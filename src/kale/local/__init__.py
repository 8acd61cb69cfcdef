"""Local runs that rehearse Kubeflow: ``python script.py`` runs the pipeline on this machine.

``run_graph`` is the entry point; ``kale.local.scheduler`` does the work, ``processes`` starts step
processes, ``record`` keeps the run record and ``progress`` shows what happens. Nothing heavy is
imported with the package itself: the zygote process imports ``kale.local.processes`` and must
start fast.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False  # typing is not imported: the zygote imports this package, and starts fast
if TYPE_CHECKING:
    import threading
    from typing import Any

    from kale.graph.model import Graph
    from kale.local.progress import PlainProgress
    from kale.local.scheduler import Run, RunFailedError

__all__ = ["Run", "RunFailedError", "default_parallelism", "run_graph"]


def default_parallelism() -> int:
    """As many steps at once as there are CPUs, and at least 2."""
    return max(2, os.cpu_count() or 1)


def run_graph(graph: Graph, values: dict[str, Any], *, parallelism: int | None = None,
              progress: PlainProgress | None = None, cache: bool | None = None,
              resume: str | bool | None = None, from_step: str | None = None,
              study: dict[str, Any] | None = None, stop: threading.Event | None = None) -> Run:
    """Run ``graph`` with these parameter values; raises ``RunFailedError`` if it fails.

    ``cache``: True caches every step, False none, None leaves it to each step's option.
    ``resume``: continue a run (its id, or its first characters; True or "" for this
    pipeline's last run), reusing what succeeded there unchanged (``kale.local.resume``);
    ``from_step`` makes that step and every step after it run (and implies resuming).
    ``study`` tags the run as a trial of a study (``{"id": ..., "trial": n}``, kept in its
    record); ``stop``, when set from another thread, stops the run as Ctrl-C would."""
    inside = os.environ.get("KALE_IN_STEP")  # kale.runtime.IN_STEP, without importing it
    if inside:
        from kale.errors import KaleError

        # A step that starts a pipeline would start itself again, and so on without end.
        raise KaleError(f"pipeline `{graph.name}` was started inside step `{inside}`: a step "
                        "cannot run a pipeline",
                        fix="run pipelines only from the script's top level (under `if "
                        "__name__ == \"__main__\":`) or from a notebook")
    if any(step.container is not None for step in graph.steps):
        from kale.local.container import check_runtime

        check_runtime(graph)  # before anything runs: say there is no docker or podman
    from kale.local.progress import make_progress
    from kale.local.record import kale_home
    from kale.local.scheduler import Scheduler

    home = kale_home(graph.project_root)
    resumed = None
    if resume not in (None, False) or from_step is not None:
        from kale.local.resume import prepare

        resumed = prepare(graph, home, resume if isinstance(resume, str) else None, from_step)
    scheduler = Scheduler(
        graph, values,
        parallelism=parallelism or default_parallelism(),
        home=home,
        progress=progress or make_progress(),
        cache=cache, resume=resumed, study=study, stop=stop,
    )
    return scheduler.run()


def __getattr__(name: str) -> Any:
    if name in ("Run", "RunFailedError"):
        from kale.local import scheduler

        return getattr(scheduler, name)
    raise AttributeError(name)
