"""``python script.py --kfp``: compile the pipeline and, in time, submit it to Kubeflow.

This version compiles (``--dry-run``): the package is written and nothing is contacted. Uploading
and starting runs on a Kubeflow Pipelines endpoint are not built yet, and asking for them says so.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from kale.errors import KaleError
from kale.graph.model import Graph


def package_path(graph: Graph, output: str | None) -> str:
    return os.path.abspath(output or f"{graph.name}.yaml")


def compile_for_kubeflow(graph: Graph, values: dict[str, Any], flags: Any) -> str:
    """Write the pipeline package; returns its path."""
    if not flags.dry_run:
        raise KaleError(
            "submitting to Kubeflow Pipelines is not available in this version of Kale; it "
            "can compile the pipeline package",
            fix="add --dry-run to write the package (and --output FILE to choose where), then "
            "upload it in the Kubeflow Pipelines UI",
        )
    from kale.kfp.compiler import compile_graph, describe

    path = package_path(graph, flags.output)
    bundle = compile_graph(graph, path)
    print(describe(graph, bundle, path), file=sys.stderr)
    return path
