"""Kale: plain Python functions as Kubeflow Pipelines, rehearsed locally first.

The API lives in ``kale.sdk`` (``from kale.sdk import pipeline, step``).
"""

__version__ = "0.1.0"
