"""How big the Argo Workflow of a Kale package gets on Kubeflow, by a model of what KFP's Argo
compiler and Argo's controller store, so that the inline bundle limit can be measured.

Argo refuses a workflow whose JSON is over 1 MiB once its node statuses are compressed
(argo-workflows@v4.0.8 ``workflow/packer/packer.go``: ``MAX_WORKFLOW_SIZE``, 1024 * 1024; only
``status.nodes`` is compressed, gzip then base64). What holds the inline bundle:

- the spec: each component's container (with the source that carries a part of the bundle) is
  a workflow argument, JSON in a string (``saveComponentImpl`` in
  ``backend/src/v2/compiler/argocompiler/argo.go@2.17.0``);
- the status, per task: the driver's input ``container`` (that JSON again), its output
  ``pod-spec-patch`` (the container's command and arguments), and the same patch as an input
  of the executor's DAG node and of its pod node (``container.go@2.17.0``): four copies, each
  bigger than gzip's 32 KB window, so compression hardly shrinks them.
"""

from __future__ import annotations

import base64
import gzip
import json
from typing import Any

#: Argo's default MAX_WORKFLOW_SIZE.
ARGO_LIMIT = 1024 * 1024
#: Copies of a task's container in the node statuses (see above).
STATUS_COPIES = 4


def workflow_size(spec: dict[str, Any]) -> dict[str, int]:
    """The modelled sizes of the workflow of a compiled pipeline spec: ``spec`` (the arguments
    and the DAG), ``status`` (the compressed nodes) and ``total``."""
    executors = spec["deploymentSpec"]["executors"]
    arguments = [{"name": f"implementations-{name}", "value": json.dumps(executor)}
                 for name, executor in executors.items()]
    arguments += [{"name": f"components-{name}", "value": json.dumps(component)}
                  for name, component in spec["components"].items()]
    workflow_spec = json.dumps({"arguments": {"parameters": arguments},
                                "root": json.dumps(spec["root"])})
    nodes = {}
    for name, executor in executors.items():
        container = executor.get("container")
        if container is None:
            continue
        patch = json.dumps({"containers": [{"name": "main", "image": container.get("image"),
                                            "command": container.get("command"),
                                            "args": container.get("args")}]})
        copies = [json.dumps(container)] + [patch] * (STATUS_COPIES - 1)
        for number, copy in enumerate(copies):
            nodes[f"{name}-{number}"] = {"inputs": {"parameters": [{"name": "p",
                                                                     "value": copy}]}}
    status = base64.b64encode(gzip.compress(json.dumps(nodes).encode(), 6))
    return {"spec": len(workflow_spec), "status": len(status),
            "total": len(workflow_spec) + len(status)}
