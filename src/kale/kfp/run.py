"""A run started on Kubeflow Pipelines, as Python code holds it: what ``p.submit()`` returns, and
what calling the pipeline returns with ``--kfp``.

``status`` asks the Pipelines API for the run's state each time it is read; ``wait()`` follows
the run to its end (``kale.kfp.follow``), printing each step's state as it changes. States are
KFP's in lower case (``"running"``, ``"succeeded"``, ``"failed"``...), so that code written for
a local ``Run`` (``if run.status != "succeeded": ...``) reads a Kubeflow run the same way.

Importing this module imports no kfp: only the client the run was started with talks to KFP.
"""

from __future__ import annotations

import sys
from typing import Any

from kale.graph.model import Graph
from kale.kfp.connection import Connection, KubeflowError, explain


class RunWaitTimeout(KubeflowError, TimeoutError):
    """``KfpRun.wait(timeout=...)`` stopped following a run that had not ended; the run goes on."""


class KfpRecurringRun:
    """A recurring run created on Kubeflow Pipelines (``--kfp --schedule CRON``): ``id``,
    ``url``, the ``schedule`` and where it was filed. Its runs start on the server's clock;
    ``status`` is ``"scheduled"``."""

    status = "scheduled"

    def __init__(self, id: str, url: str, *, pipeline: str, experiment: str, schedule: Any,
                 pipeline_id: str, version_id: str, experiment_id: str,
                 namespace: str | None) -> None:
        self.id, self.url, self.pipeline, self.experiment = id, url, pipeline, experiment
        self.schedule, self.pipeline_id, self.version_id = schedule, pipeline_id, version_id
        self.experiment_id, self.namespace = experiment_id, namespace

    def __repr__(self) -> str:
        return f"<KfpRecurringRun {self.id} of pipeline {self.pipeline} ({self.schedule.cron})>"


class KfpRun:
    """A run of a pipeline on Kubeflow Pipelines.

    ``id`` and ``url`` (its page in the Kubeflow UI) are known at once; ``status`` is the run's
    state now (asked of the server), ``wait()`` follows it to its end. ``pipeline_id``,
    ``version_id``, ``experiment_id`` and ``namespace`` say where it was filed.
    """

    def __init__(self, id: str, url: str, *, graph: Graph, experiment: str, pipeline_id: str,
                 version_id: str, experiment_id: str, namespace: str | None, client: Any,
                 connection: Connection) -> None:
        self.id = id
        self.url = url
        self.pipeline = graph.name
        self.experiment = experiment
        self.pipeline_id = pipeline_id
        self.version_id = version_id
        self.experiment_id = experiment_id
        self.namespace = namespace
        #: The tasks that failed, with KFP's error message, as the last ``wait()`` saw them.
        self.failed: dict[str, str] = {}
        self._graph = graph
        self._client = client
        self._connection = connection

    @property
    def status(self) -> str:
        """The run's state as the Pipelines API reports it now, in lower case: ``"pending"``,
        ``"running"``, ``"succeeded"``, ``"failed"``, ``"skipped"``, ``"canceled"``..."""
        from kale.kfp.follow import state_name

        try:
            run = self._client.get_run(self.id)
        except Exception as error:
            raise explain(error, self._connection, f"get the state of run {self.id}",
                          "wait") from error
        return state_name(getattr(run, "state", None)).lower()

    def wait(self, timeout: float | None = None, *, check: bool = False) -> str:
        """Follow the run until it ends and return its final status (``"succeeded"``,
        ``"failed"``...), printing each step's state to stderr as it changes.

        ``timeout`` (seconds) stops following a run that has not ended by then with
        ``RunWaitTimeout`` (a ``TimeoutError``); the run itself goes on, and ``wait()`` can be
        called again. ``check=True`` raises ``KubeflowError`` naming the failed steps unless the
        run succeeded (``--kfp --wait`` and ``submit(wait=True)`` do so). Ctrl-C stops
        following, not the run.
        """
        from kale.kfp.follow import FollowTimeout, follow

        try:
            followed = follow(self._client, self.id, self._graph, timeout=timeout)
        except FollowTimeout as stopped:
            raise RunWaitTimeout(
                f"run {self.id} of pipeline {self.pipeline} was still {stopped.state.lower()} "
                f"after {timeout:g}s of waiting; it goes on in Kubeflow",
                fix=f"call .wait() again to keep following it (a larger timeout, or none), or "
                f"follow it at {self.url}") from None
        except KeyboardInterrupt:
            # The run is Kubeflow's: stopping to watch it must not look like stopping it.
            print(f"\nkale: stopped following run {self.id}; it goes on in Kubeflow: {self.url}",
                  file=sys.stderr)
            raise
        except Exception as error:
            raise explain(error, self._connection, f"follow run {self.id}", "wait") from error
        self.failed = dict(followed.failed)
        print(f"kale: run {self.id} ended: {followed.state}", file=sys.stderr)
        if check and followed.state != "SUCCEEDED":
            steps = "; ".join(f"step {name} failed" + (f": {message}" if message else "")
                              for name, message in followed.failed.items())
            raise KubeflowError(f"run {self.id} of pipeline {self.pipeline} ended "
                                f"{followed.state}" + (f" ({steps})" if steps else ""),
                                fix=f"see its steps and logs at {self.url}")
        return followed.state.lower()

    def __repr__(self) -> str:
        return f"<KfpRun {self.id} of pipeline {self.pipeline} ({self.url})>"
