"""The classes of decorated functions: what ``@step`` and ``@pipeline`` return.

They live here rather than in ``kale.sdk`` so that ``kale.graph`` can tell a step or a pipeline
from any other value (when it reads a pipeline body, when it checks a step) without importing the
SDK: ``kale.sdk`` uses ``kale.graph`` to build a pipeline's graph, and ``kale.graph`` imports only
this module, so there is no import cycle between them. ``kale.sdk`` re-exports ``StepFunction``,
and its ``PipelineFunction`` (which can run, compile and submit) is a ``PipelineDefinition``.

Step processes import this module (through ``kale.sdk``) on their start-up path: keep it cheap.
"""

from __future__ import annotations

import functools

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from typing import Any

    from kale.errors import SourceLocation
    from kale.options import PipelineOptions

__all__ = ["PipelineDefinition", "StepFunction"]


class StepFunction:
    """A function decorated with ``@step``. Called directly, it is the plain function."""

    decorator = "@step"

    def __init__(self, func: Callable[..., Any], options: Mapping[str, Any],
                 location: SourceLocation, display_name: str | None = None) -> None:
        functools.update_wrapper(self, func)
        self.func = func
        #: The options given on the decorator, validated (``steps_defaults`` is applied later).
        self.options = dict(options)
        self.location = location
        #: The name as the user wrote it; ``step_name`` is its Kubeflow-safe form.
        self.display_name = display_name or func.__name__

    @property
    def step_name(self) -> str:
        """The step's Kubeflow name before it is made unique within a pipeline."""
        from kale.options import normalize_name

        if "name" in self.options:
            return self.options["name"]
        return normalize_name(self.func.__name__, "name", max_length=63)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.func(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<step {self.func.__module__}.{self.func.__qualname__}>"


class PipelineDefinition:
    """A function decorated with ``@pipeline``, as the graph parser knows it: the function, its
    validated options and where it was decorated. ``kale.sdk.PipelineFunction`` adds what uses
    it (calling it, ``run``, ``compile``, ``submit``)."""

    decorator = "@pipeline"

    def __init__(self, func: Callable[..., Any], options: PipelineOptions,
                 location: SourceLocation) -> None:
        functools.update_wrapper(self, func)
        self.func = func
        self.options = options
        self.location = location

    def __repr__(self) -> str:
        return f"<pipeline {self.options.name} ({self.func.__module__}.{self.func.__qualname__})>"
