"""A small pipeline written directly with kfp.dsl, for comparing package writers.

No ``from __future__ import annotations`` here: kfp reads the components' annotations as types.
"""

from kfp import dsl, kubernetes


@dsl.component(base_image="python:3.11")
def double(x: int) -> int:
    return 2 * x


@dsl.pipeline(name="doubling", description="Doubles:\n  twice.")
def doubling(x: int = 3, label: str = "a: 'b'"):
    task = double(x=double(x=x).output)
    kubernetes.add_pod_label(task, "team", "ml")
