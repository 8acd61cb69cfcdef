"""The inline bundle limit, measured: the largest bundle carried inside the package makes an
Argo Workflow that Argo accepts with a margin (the model is tests/kfp/argo_size.py)."""

from __future__ import annotations

import dataclasses
import os
import warnings

import pytest
import yaml

from tests.kfp.argo_size import ARGO_LIMIT, workflow_size

pytest.importorskip("kfp")

FLOW = '''
    from kale.sdk import pipeline, step

    @step
    def make(n):
        return list(range(n))

    @step
    def total(values):
        return sum(values)

    @pipeline(name="sums")
    def sums(n=3):
        values = make(n)
        total(values)
'''


def modelled(project, size: int) -> dict[str, int]:
    from kale.kfp import delivery
    from kale.kfp.bundle import build_bundle
    from kale.kfp.compiler import compile_graph

    graph = project.load(FLOW, prelude=False).sums.graph
    real = build_bundle(graph.project_root)
    bundle = dataclasses.replace(real, data=os.urandom(size))  # a tarball does not compress
    path = project.root / "sums.yaml"
    with warnings.catch_warnings(), pytest.MonkeyPatch.context() as patch:
        warnings.simplefilter("ignore")
        patch.setattr(delivery, "INLINE_LIMIT", 2**30)  # inline whatever its size
        compile_graph(graph, str(path), bundle=bundle)
    return workflow_size(next(yaml.safe_load_all(path.read_text())))


def test_a_bundle_at_the_inline_limit_leaves_argo_a_quarter_of_its_limit(project):
    from kale.kfp.store import INLINE_LIMIT

    at_limit = modelled(project, INLINE_LIMIT)
    assert at_limit["total"] <= 0.75 * ARGO_LIMIT, at_limit
    # The copies in the status are most of it: the spec alone would have misled.
    assert at_limit["status"] > 3 * at_limit["spec"]
    # A third more would not leave that margin: the limit is not needlessly low.
    assert modelled(project, INLINE_LIMIT * 4 // 3)["total"] > 0.75 * ARGO_LIMIT


def test_a_submission_of_a_bundle_over_the_limit_is_refused_with_the_store_advice(tmp_path):
    from kale.errors import KaleError
    from kale.kfp.bundle import Bundle
    from kale.kfp.delivery import check_placeable
    from kale.kfp.store import INLINE_LIMIT

    with pytest.raises(KaleError) as caught:
        check_placeable(Bundle(os.urandom(INLINE_LIMIT + 1), ()), None)
    assert "more than the 104 KB a pipeline package can carry (Argo refuses a run's workflow " \
        "over 1 MiB" in caught.value.message
    assert caught.value.fix.startswith("set a bundle store the cluster can read: "
                                       "--bundle-store minio://mlpipeline/kale")
    check_placeable(Bundle(os.urandom(INLINE_LIMIT), ()), None)  # at the limit: inline
