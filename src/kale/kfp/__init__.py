"""Kubeflow Pipelines: compiling a Graph into a KFP v2 package (``compiler``), the project bundle
that carries the user's code and files to every step (``bundle``, delivered by ``delivery``,
through the bundle store ``store`` when big), the steps' images and packages
(``requirements``), talking to the Pipelines API (``connection``, ``submit``, ``follow``), and
what runs inside each step's container (``entry``).

Importing this package imports nothing of the ``kfp`` SDK: ``entry`` runs in step containers,
where only Python and the user's libraries are installed.
"""
