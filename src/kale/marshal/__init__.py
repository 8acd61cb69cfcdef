"""Turning the values that cross step boundaries into files, and back, by type.

``save(value, folder, name)`` writes a value with the first backend that takes it and returns a
``StoredValue``; ``load(stored)`` reads it back in the reader's own process. The built-in
backends, tried in this order after any registered with ``register``:

=========  =======================================================  ==========================
backend    values                                                   file
=========  =======================================================  ==========================
``json``   None, bool, int, float, str, bytes and lists, tuples,    ``.json`` (tagged, exact)
           dicts, sets of them
``npy``    numpy arrays and scalars (not object arrays)             ``.npy``, read memory-mapped
``arrow``  pandas DataFrame and Series, pyarrow Table               ``.arrow`` (Feather v2)
``joblib`` scikit-learn estimators                                  ``.joblib``
``torch``  PyTorch tensors and modules (saved from the CPU)         ``.pt``
``path``   a ``pathlib.Path`` to a file or folder that exists       a copy in the run store
``pickle`` everything else                                          ``.pkl`` (cloudpickle)
=========  =======================================================  ==========================

A backend's library is imported only when a value of its type is seen. Every value gets a
``<name>.meta.json`` with its backend, type, size, library version and a content hash. Writes are
atomic (write, then rename): a crash never leaves a half-written value a reader would trust.

Reading runs code for ``pickle``, ``joblib`` and ``torch``: a run store must be trusted like the
code that wrote it. Kale only reads values from the run's own store.
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import sys

# Step processes import this package on their start-up path: only cheap imports up here.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

__all__ = ["NO_SPACE", "Backend", "MarshalError", "NoSpaceError", "StoredValue", "atomic_write",
           "is_inside", "load", "load_folder", "register", "save", "type_name"]

#: The errors of a disk (or a quota) with no room left: not the value's fault.
NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


class MarshalError(Exception):
    """A value could not be written or read; ``advice`` says what to do instead."""

    def __init__(self, message: str, advice: str = "") -> None:
        self.advice = advice
        super().__init__(message)


class NoSpaceError(MarshalError):
    """The disk that holds the store is full: any value would have failed, so the advice is
    about the disk, not the value."""

    def __init__(self, folder: str) -> None:
        super().__init__(f"there is no space left on the disk that holds {folder}",
                         "free space on that disk, or (for a local run) set KALE_HOME to a "
                         "folder on a disk with room")


class StoredValue:
    """Where a value was written and how to read it back (its metadata, as a dict too)."""

    __slots__ = ("backend", "extra", "path", "size", "type")

    def __init__(self, path: str, backend: str, type: str, size: int,
                 extra: dict[str, Any] | None = None) -> None:
        self.path, self.backend, self.type, self.size = path, backend, type, size
        self.extra = extra or {}

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "backend": self.backend, "type": self.type,
                "size": self.size, **self.extra}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> StoredValue:
        known = ("path", "backend", "type", "size")
        extra = {key: value for key, value in data.items() if key not in known}
        return cls(data["path"], data["backend"], data["type"], data["size"], extra)


def type_name(value: Any) -> str:
    """``int``, ``numpy.ndarray``: the type as a user would write it."""
    kind = type(value)
    return kind.__qualname__ if kind.__module__ == "builtins" else \
        f"{kind.__module__}.{kind.__qualname__}"


def atomic_write(path: str | os.PathLike[str], write: Callable[[Any], None],
                 mode: str = "wb") -> None:
    """Write a file through ``write(handle)`` so that it appears whole or not at all."""
    path = os.fspath(path)
    folder, name = os.path.split(path)
    temporary = os.path.join(folder, f".{name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
    try:
        descriptor = os.open(temporary, flags, 0o644)
    except FileNotFoundError:  # the folder is made only when missing: a step writes several
        os.makedirs(folder, exist_ok=True)
        descriptor = os.open(temporary, flags, 0o644)
    try:
        with os.fdopen(descriptor, mode) as handle:
            write(handle)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


class Backend:
    """How one kind of value is written and read.

    ``accepts(value)`` decides (without importing heavy libraries for other values);
    ``save(value, path)`` writes the value at ``path`` (atomically: use ``atomic_write``) and may
    return extra metadata; ``load(path, meta)`` reads it back. ``library`` names the library a
    reader needs, for the metadata and for the error when it is missing.
    """

    name = ""
    suffix = ""
    library: str | None = None

    def accepts(self, value: Any) -> bool:
        raise NotImplementedError

    def save(self, value: Any, path: str) -> dict[str, Any] | None:
        raise NotImplementedError

    def load(self, path: str, meta: dict[str, Any]) -> Any:
        raise NotImplementedError


class _Registered(Backend):
    def __init__(self, name: str, accepts: Callable[[Any], bool],
                 save: Callable[[Any, str], None], load: Callable[[str], Any], suffix: str,
                 library: str | None, module: str | None = None) -> None:
        self.name, self.suffix, self.library = name, suffix, library
        self._accepts, self._save, self._load = accepts, save, load
        self.module = module  # where register() was called: the reader imports it too

    def accepts(self, value: Any) -> bool:
        try:
            return bool(self._accepts(value))
        except Exception as error:
            raise MarshalError(
                f"the `accepts` of registered backend {self.name!r} raised "
                f"{type(error).__name__}: {error}",
                "make it return False for values it does not handle",
            ) from None

    def save(self, value: Any, path: str) -> None:
        # The user's function writes where it is told; the value appears at `path` whole or not.
        temporary = f"{path}.{os.getpid()}.{os.urandom(4).hex()}.partial"
        try:
            self._save(value, temporary)
            if not os.path.exists(temporary):
                raise MarshalError(
                    f"the `save` of registered backend {self.name!r} wrote nothing at the path "
                    "it was given",
                    "write exactly at the given path (some libraries add a suffix of their "
                    "own: pass an open file instead)",
                )
            os.replace(temporary, path)
        except BaseException:
            folder, name = os.path.split(temporary)
            for stray in os.listdir(folder or "."):
                if stray.startswith(name):
                    with contextlib.suppress(OSError):
                        os.unlink(os.path.join(folder, stray))
            raise

    def load(self, path: str, meta: dict[str, Any]) -> Any:
        return self._load(path)


_registered: list[Backend] = []


def register(name: str, accepts: type | tuple[type, ...] | Callable[[Any], bool],
             save: Callable[[Any, str], None], load: Callable[[str], Any], *,
             suffix: str = "", library: str | None = None) -> None:
    """Teach Kale to pass your own type between steps.

    ``accepts`` is a type (or tuple of types) or a predicate; ``save(value, path)`` writes the
    file at ``path``; ``load(path)`` returns the value. Registered backends are tried before the
    built-in ones, the most recent first. Register in a module of the project that the steps
    import, so it is registered wherever the steps run::

        from kale.marshal import register
        register("geojson", Shape, save=lambda s, p: s.to_file(p),
                 load=Shape.from_file, suffix=".geojson")
    """
    import types

    if not name or not name.replace("-", "").replace("_", "").isalnum():
        raise ValueError(f"a backend name is letters, digits, '-' and '_', not {name!r}")
    if name in {backend.name for backend in _builtin()}:
        raise ValueError(f"{name!r} is a built-in backend; choose another name")
    if suffix.endswith(".meta.json"):
        raise ValueError("the suffix .meta.json is Kale's own")
    predicate = accepts if not isinstance(accepts, (type, tuple, types.UnionType)) else \
        (lambda value, kinds=accepts: isinstance(value, kinds))
    module = sys._getframe(1).f_globals.get("__name__")
    if module == "__main__":
        import warnings

        # Steps run in processes (and on Kubeflow, pods) that do not run the script's
        # top level, so a registration made there would silently not apply to them.
        warnings.warn(
            f"backend {name!r} is registered in the script being run, which the steps do not "
            "import: move the register() call to a module of the project that the steps import",
            UserWarning, stacklevel=2)
    _registered[:] = [b for b in _registered if b.name != name]
    _registered.insert(0, _Registered(name, predicate, save, load, suffix, library,
                                      None if module == "__main__" else module))


def _builtin() -> list[Backend]:
    # Looked up rather than imported: `from package import module` runs importlib's Python
    # code at every call, which a step's forked process pays for in copied pages.
    backends = sys.modules.get("kale.marshal.backends")
    if backends is None:
        from kale.marshal import backends
    return backends.BUILTIN


def _backends() -> list[Backend]:
    return [*_registered, *_builtin()]


def _library_version(library: str | None) -> str | None:
    module = sys.modules.get(library or "")
    return getattr(module, "__version__", None) if module else None


def save(value: Any, folder: str | os.PathLike[str], name: str) -> StoredValue:
    """Write ``value`` as ``folder/name.<suffix>`` with the first backend that takes it."""
    from kale.marshal.backends import advice
    from kale.marshal.codec import PLAIN_TYPES

    if type(value) not in PLAIN_TYPES and isinstance(value, io.IOBase):
        # cloudpickle would snapshot a readable file's contents: surprising, and the file
        # itself does not exist where the next step runs.
        raise MarshalError("an open file cannot be passed to another step", advice(value))
    folder = os.fspath(folder)
    try:
        return _save(value, folder, name)
    except OSError as error:
        if error.errno in NO_SPACE:
            raise NoSpaceError(folder) from None
        raise


def _save(value: Any, folder: str, name: str) -> StoredValue:
    from kale.marshal.backends import advice, content_hash

    os.makedirs(folder, exist_ok=True)  # a registered backend's save writes into it directly
    notes: list[str] = []
    for backend in _backends():
        if not backend.accepts(value):
            continue
        path = os.path.join(folder, f"{name}{backend.suffix}")
        try:
            extra = backend.save(value, path) or {}
        except MarshalError:
            raise
        except Exception as error:
            if isinstance(error, OSError) and error.errno in NO_SPACE:
                raise  # the next backend would hit the same full disk
            if backend.name == "json":
                continue  # a container holding other kinds of values: not worth a note
            if backend.name == "pickle":
                raise MarshalError(f"{type_name(value)} cannot be serialized: {error}",
                                   advice(value)) from None
            # e.g. a frame Arrow would not give back exactly: the next backend takes it
            reason = str(error).splitlines()[0][:200] if str(error) else type(error).__name__
            notes.append(f"{backend.name} could not store it: {reason}")
            continue
        if notes:
            extra["fallback"] = "; ".join(notes)
        size = extra.pop("size", None)
        if size is None:
            size = _size(path)
        if getattr(backend, "module", None):
            extra["registered_in"] = backend.module
        stored = StoredValue(path, backend.name, type_name(value), size, {
            "library": backend.library,
            "library_version": _library_version(backend.library),
            "hash": extra.pop("hash", None) or content_hash(path),
            **extra,
        })
        meta = json.dumps(stored.to_json(), default=str)
        atomic_write(os.path.join(folder, f"{name}.meta.json"),
                     lambda handle, text=meta: handle.write(text), mode="w")
        return stored
    raise MarshalError(f"no backend takes {type_name(value)}")


def load_folder(folder: str | os.PathLike[str]) -> Any:
    """Read back the one value stored in ``folder`` (wherever the folder has moved to: a
    Kubeflow artifact, a copied run store)."""
    folder = os.fspath(folder)
    metas = [name for name in os.listdir(folder) if name.endswith(".meta.json")]
    if len(metas) != 1:
        raise MarshalError(f"{folder} holds {len(metas)} stored values, not one")
    with open(os.path.join(folder, metas[0])) as handle:
        meta = json.load(handle)
    meta["path"] = os.path.join(folder, os.path.basename(meta["path"]))
    return load(meta, store=folder)


def _size(path: str) -> int:
    if os.path.isdir(path):
        return sum(os.path.getsize(os.path.join(root, file))
                   for root, _, files in os.walk(path) for file in files)
    return os.path.getsize(path)


def load(stored: StoredValue | dict[str, Any],
         store: str | os.PathLike[str] | None = None) -> Any:
    """Read a value back, in the reader's own process. With ``store`` (a run's folder), only a
    value stored inside it is read: reading pickle, joblib or torch files runs code, so a path
    that points elsewhere (a run record or a result changed by hand or by a step) is refused."""
    meta = stored.to_json() if isinstance(stored, StoredValue) else dict(stored)
    path = meta["path"]
    if store is not None:
        _check_inside(path, os.fspath(store), meta)
    for backend in _backends():
        if backend.name != meta["backend"]:
            continue
        try:
            return backend.load(path, meta)
        except FileNotFoundError:
            if os.path.lexists(path):
                raise  # something the value's own loader looked for
            raise MarshalError(
                f"the stored {meta.get('type', 'value')} is gone: {path} does not exist",
                "it was deleted or moved after its step wrote it: run the pipeline again",
            ) from None
        except ModuleNotFoundError as error:
            module = error.name or meta.get("library") or "a library"
            top = module.split(".")[0]
            if top == (meta.get("library") or "").split(".")[0]:
                raise MarshalError(
                    f"reading a {meta.get('type', 'value')} needs the `{module}` library, "
                    "which is not installed where this step runs",
                    f"install {top} here (the writer had version "
                    f"{meta.get('library_version') or 'unknown'})",
                ) from None
            raise MarshalError(
                f"reading a {meta.get('type', 'value')} needs the module `{module}`, which "
                "cannot be imported where this step runs",
                f"make `{module}` importable here: a module of the project, or a library to "
                "install",
            ) from None
    module = meta.get("registered_in")
    if module and module not in sys.modules:
        # The writer registered this backend in a module of the project; the reader may not
        # have imported that module yet (a step imports inside its body, after its inputs).
        import importlib

        try:
            importlib.import_module(module)
        except ImportError as error:
            raise MarshalError(
                f"reading a {meta.get('type', 'value')} needs backend {meta['backend']!r}, "
                f"registered in module `{module}`, which cannot be imported here: {error}",
                f"make `{module}` importable where the steps run (a module of the project)",
            ) from None
        return load(meta, store)
    raise MarshalError(f"no backend {meta['backend']!r} for {meta['path']}",
                       "register it (kale.marshal.register) in a module the steps import")


def is_inside(path: str, folder: str) -> bool:
    """Whether ``path`` is in ``folder``, with neither ``..`` nor a symbolic link below
    ``folder`` leading out of it. A few ``lstat`` calls: ``os.path.realpath`` of a deep path
    costs tens of microseconds, paid per value read."""
    root, target = os.path.abspath(folder), os.path.abspath(path)
    if not target.startswith(root + os.sep):
        return False
    part = root
    for name in target[len(root) + 1:].split(os.sep):
        part = os.path.join(part, name)
        if os.path.islink(part):  # rare: resolve it, and stay inside
            real = os.path.realpath(target)
            return real.startswith(os.path.realpath(root) + os.sep)
    return True


def _check_inside(path: str, store: str, meta: dict[str, Any]) -> None:
    if not is_inside(path, store):
        raise MarshalError(
            f"the stored {meta.get('type', 'value')} points at {path}, outside the run store "
            f"{store}: Kale reads values only from the run's own store",
            "read values through the run that wrote them; a record or result that points "
            "elsewhere was changed after Kale wrote it",
        )
