"""Kale: plain Python functions as Kubeflow Pipelines, rehearsed locally first.

The API lives in ``kale.sdk`` (``from kale.sdk import pipeline, step``).
"""

__version__ = "0.1.0"

# What other Kales had here, and whether it is a module; importing one says what to do instead
# (see kale.not_provided). The modules are here too because `from kale import types` asks the
# package first, and the import system would take the module's ModuleNotFoundError for "no such
# submodule" and hide its message.
_NOT_PROVIDED = {"distributed": True, "types": True}


def __getattr__(name: str) -> object:
    if name == "ContainerStep":  # imported on use: `import kale` stays cheap
        from kale.containers import ContainerStep

        return ContainerStep
    if name == "cmdutils":
        import kale.cmdutils

        return kale.cmdutils
    if name in _NOT_PROVIDED:
        from kale.not_provided import not_provided

        raise not_provided(f"kale.{name}", module=_NOT_PROVIDED[name])
    raise AttributeError(f"module 'kale' has no attribute {name!r}")
