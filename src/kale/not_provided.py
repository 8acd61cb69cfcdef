"""APIs of other Kales that real scripts import and that this Kale does not provide (yet).

Scripts written for Arrikto's Kale import ``kale.distributed`` and
``kale.types``. Importing one of them raises ``NotProvidedError``, an ``ImportError``
(``ModuleNotProvidedError``, a ``ModuleNotFoundError``, for a module), whose message says what
the API was, that this Kale does not have it, where the import is (file:line) and what to do
instead, rather than a "No module named" that reads like a broken installation. So ``except
ImportError`` in a script still works as it would have.

Placeholder modules raise it when imported (``kale/distributed.py``, ``kale/types.py``).
"""

from __future__ import annotations

import os
import sys
from typing import Any

import kale
from kale.errors import DefinitionError, SourceLocation

#: What each API was, what this Kale says of it, and what to do instead.
APIS: dict[str, tuple[str, str, str]] = {
    "kale.distributed": (
        "Arrikto's Kale's distributed training: kale.distributed.pytorch.distribute() started a "
        "PyTorchJob of the Kubeflow Training Operator from a step",
        "is not supported by this Kale",
        "train in the step itself, or create the PyTorchJob from a step with the Kubeflow "
        "Training SDK (pip install kubeflow-training) and wait for it there",
    ),
    "kale.types": (
        "Arrikto's Kale's types for annotating the inputs and outputs of steps",
        "is not supported by this Kale",
        "remove the import and the annotations that use it: this Kale stores each value that "
        "crosses a step boundary by its Python type (see \"Passing data\" in Kale's README)",
    ),
}

# Frames of these folders are not where the user's import is.
_OWN_FOLDERS = (os.path.dirname(os.path.abspath(kale.__file__)) + os.sep,
                os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(kale.__file__))),
                             "rok_common") + os.sep)


class NotProvidedError(DefinitionError, ImportError):
    """A script imports an API of another Kale that this Kale does not provide."""

    def __init__(self, api: str, message: str, *, location: SourceLocation | None = None,
                 fix: str | None = None) -> None:
        super().__init__(message, location=location, fix=fix)
        self.api = api
        # ImportError's own fields: the module that is missing, or the one without the name.
        self.name = api if isinstance(self, ModuleNotFoundError) else api.rpartition(".")[0]

    def __reduce__(self) -> tuple[Any, ...]:
        # Step processes send errors back pickled: keep the fields ImportError holds in C.
        return _restore, (type(self), self.api, self.message, self.location, self.fix)


class ModuleNotProvidedError(NotProvidedError, ModuleNotFoundError):
    """A script imports a module of another Kale that this Kale does not provide."""


def _restore(cls: type[NotProvidedError], api: str, message: str,
             location: SourceLocation | None, fix: str | None) -> NotProvidedError:
    return cls(api, message, location=location, fix=fix)


def importer_location() -> SourceLocation | None:
    """Where the import being executed is in the user's code: the innermost frame that is not
    the import system's (``importlib.import_module`` included) nor Kale's own."""
    frame = sys._getframe(1)
    while frame is not None:
        filename = frame.f_code.co_filename
        module = str(frame.f_globals.get("__name__", ""))
        if not filename.startswith("<frozen") and module.partition(".")[0] != "importlib" and \
                not os.path.abspath(filename).startswith(_OWN_FOLDERS):
            return SourceLocation.of_frame(frame)
        frame = frame.f_back
    return None


def not_provided(api: str, *, module: bool) -> NotProvidedError:
    """The error to raise for an import of ``api`` (a module when ``module``, else a name
    imported from one)."""
    what, verdict, fix = APIS[api]
    kind = ModuleNotProvidedError if module else NotProvidedError
    return kind(api, f"{api} {verdict} ({what})", location=importer_location(),
                fix=fix)
