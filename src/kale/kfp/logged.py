"""The Kubeflow artifacts of what a step logs (``kale.sdk.logging``): what its component
declares, read from its source at compile time (``kale.logs.declared_logs``).

A step with metrics gets ``kale_metrics: Output[Metrics]`` (the KFP UI shows its metadata as the
run's metrics); each HTML artifact (``log_html``, ``log_figure``, ``@artifact``) an
``Output[HTML]``, each Markdown one an ``Output[Markdown]``, each name of ``log_confusion_matrix``
and ``log_roc_curve`` an ``Output[ClassificationMetrics]``, named after the artifact where the
name is a literal in the source. Names known only at run time share one artifact of their kind
(``kale_html``...). ``kale.kfp.entry`` writes them after the step (``write_logged``).
"""

from __future__ import annotations

from kale.graph.model import Step
from kale.logs import Declared, declared_logs

#: The KFP artifact class of each kind of logged artifact.
CLASSES = {"html": "HTML", "markdown": "Markdown", "classification": "ClassificationMetrics"}


def declared(step: Step) -> Declared:
    if step.condition is not None:
        return Declared()
    function = step.function
    return declared_logs(function.text, function.has_metrics, function.artifacts)


def logged_ports(step: Step) -> tuple[list[str], str | None]:
    """The component parameters for what ``step`` logs, and the ``flow`` entry that hands
    them to ``run_component`` (None when it logs nothing). Artifact names are ASCII letters,
    digits, ``_`` and ``-`` (``kale.logs.bad_name``): with ``-`` as ``_`` they are Python
    names, made distinct where two become alike."""
    found = declared(step)
    if not found:
        return [], None
    parameters = []
    entries = []
    if found.metrics:
        parameters.append("kale_metrics: Output[Metrics]")
        entries.append("'metrics': kale_metrics")
    for kind, artifact_class in CLASSES.items():
        names = getattr(found, kind)
        if not names:
            continue
        used: set[str] = set()
        ports = []
        for name in names:
            wanted = port = f"kale_{kind}" if name is None else \
                f"kale_{kind}_{name.replace('-', '_')}"
            index = 1
            while port in used:
                index += 1
                port = f"{wanted}_{index}"
            used.add(port)
            parameters.append(f"{port}: Output[{artifact_class}]")
            ports.append(f"{name!r}: {port}")
        entries.append(f"{kind!r}: {{{', '.join(ports)}}}")
    return parameters, "'logs': {" + ", ".join(entries) + "}"
