"""The pipeline graph: the model (``kale.graph.model``), the parser that builds it from a
``@pipeline`` function (``kale.graph.parser``), the static checks of steps (``kale.graph.checks``)
and its renderings (``kale.graph.render``)."""

from kale.graph.model import (
    Argument,
    Constant,
    Edge,
    Graph,
    OutputRef,
    Parameter,
    ParameterRef,
    Step,
    StepSource,
)
from kale.graph.parser import parse_pipeline

__all__ = [
    "Argument",
    "Constant",
    "Edge",
    "Graph",
    "OutputRef",
    "Parameter",
    "ParameterRef",
    "Step",
    "StepSource",
    "parse_pipeline",
]
