"""Pipelines defined in Jupyter: reading notebooks, and the IPython kernel a pipeline runs in.

``kale.notebook.kernel`` knows which cells the kernel has executed and how IPython names them.
Nothing here imports IPython unless Kale already runs inside it, so importing Kale in a script
stays as cheap as before.
"""
