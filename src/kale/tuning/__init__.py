"""Hyperparameter tuning: one search space over a pipeline's parameters, tuned locally with
Optuna or on Kubeflow with a Katib ``Experiment``.

``kale.sdk.tuning`` is the public face (``Float``, ``Int``, ``Choice``); ``PipelineFunction.tune``
is the entry point. The modules, one job each:

- ``space``: the search space's classes and its checks against the pipeline's parameters;
- ``settings``: the checks of a ``tune()`` call (objective, goal, algorithm, trial counts), the
  objective found statically in the steps' code;
- ``algorithms``: Katib's algorithm names, and the Optuna sampler of each that has one;
- ``study``: ``Study`` and ``Trial`` (what ``tune()`` returns) and the study record under
  ``.kale/studies/``;
- ``local``: the local study: each trial a local run, ``parallel_trials`` at a time;
- ``katib``: the Katib Experiment (``kubeflow.org/v1beta1``), built with Katib's API models and
  created through the Kubernetes API;
- ``trial``: the command a Katib trial runs (``python -m kale.tuning.trial``): one KFP run of the
  uploaded pipeline version, its objective printed as ``name=value``.

Importing this package (and ``space``) stays light: Optuna, kfp and Katib's models are
imported where they are used.
"""

from __future__ import annotations
