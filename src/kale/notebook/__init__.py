"""Pipelines from Jupyter: notebooks that define ``@step`` functions in their cells, and
notebooks tagged for open-source Kale.

``kale.notebook.kernel`` knows which cells the kernel has executed and how IPython names them.
Nothing here imports IPython unless Kale already runs inside it, so importing Kale in a script
stays as cheap as before.

Tagged notebooks (``kale run notebook.ipynb``, ``kale --nb``): ``reader`` reads the cells, tags
and ``kubeflow_notebook`` metadata; ``names`` finds what code reads and binds; ``translate``
works out what flows between the steps and writes the pipeline module under
``.kale/notebooks/``, loaded as a ``PipelineFunction``; ``commands`` is the command line's part.
"""
