"""Turning the values that cross step boundaries into files, and back.

Each value is written by the first backend that accepts its type: exact JSON for plain values,
``.npy`` for numpy arrays (read back memory-mapped, copy-on-write), cloudpickle for the rest. A
small metadata file records the backend, type and size. Writes are atomic (write, then rename),
so a crash never leaves a half-written value that a reader would trust.

Unpickling runs code: a run store must be trusted like the code that wrote it. Kale only reads
values from the run's own store.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os

# Step processes import this module on their start-up path: keep it to cheap imports.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any


class MarshalError(Exception):
    """A value could not be written or read; ``advice`` says what to do instead."""

    def __init__(self, message: str, advice: str = "") -> None:
        self.advice = advice
        super().__init__(message)


class StoredValue:
    """Where a value was written and how to read it back."""

    __slots__ = ("backend", "path", "size", "type")

    def __init__(self, path: str, backend: str, type: str, size: int) -> None:
        self.path, self.backend, self.type, self.size = path, backend, type, size

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "backend": self.backend, "type": self.type,
                "size": self.size}


def _type_name(value: Any) -> str:
    kind = type(value)
    return kind.__qualname__ if kind.__module__ == "builtins" else \
        f"{kind.__module__}.{kind.__qualname__}"


def atomic_write(path: str | os.PathLike[str], write: Callable[[Any], None],
                 mode: str = "wb") -> None:
    """Write a file through ``write(handle)`` so that it appears whole or not at all."""
    path = os.fspath(path)
    folder, name = os.path.split(path)
    os.makedirs(folder, exist_ok=True)
    temporary = os.path.join(folder, f".{name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        with os.fdopen(descriptor, mode) as handle:
            write(handle)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def _is_plain_json(value: Any, depth: int = 0) -> bool:
    """Whether JSON gives back exactly this value (same types, str keys, finite floats)."""
    if depth > 100:
        return False
    kind = type(value)
    if value is None or kind in (bool, int, str):
        return True
    if kind is float:
        return math.isfinite(value)
    if kind is list:
        return all(_is_plain_json(item, depth + 1) for item in value)
    if kind is dict:
        return all(type(key) is str and _is_plain_json(item, depth + 1)
                   for key, item in value.items())
    return False


def _is_numpy_array(value: Any) -> bool:
    import sys

    numpy = sys.modules.get("numpy")  # a numpy value means numpy is already imported
    return numpy is not None and isinstance(value, numpy.ndarray) and \
        not value.dtype.hasobject


class _Json:
    name, suffix = "json", ".json"

    @staticmethod
    def accepts(value: Any) -> bool:
        return _is_plain_json(value)

    @staticmethod
    def save(value: Any, path: str) -> None:
        atomic_write(path, lambda handle: json.dump(value, handle), mode="w")

    @staticmethod
    def load(path: str) -> Any:
        with open(path) as handle:
            return json.load(handle)


class _Numpy:
    name, suffix = "npy", ".npy"

    @staticmethod
    def accepts(value: Any) -> bool:
        return _is_numpy_array(value)

    @staticmethod
    def save(value: Any, path: str) -> None:
        import numpy

        # Subclasses (a memory-mapped input passed on, a masked array) are stored as their data.
        array = numpy.asarray(value)
        atomic_write(path, lambda handle: numpy.save(handle, array, allow_pickle=False))

    @staticmethod
    def load(path: str) -> Any:
        import numpy

        # Copy-on-write memory map: nothing is read until used, and writes stay private.
        return numpy.load(path, mmap_mode="c", allow_pickle=False)


class _Pickle:
    name, suffix = "pickle", ".pkl"

    @staticmethod
    def accepts(value: Any) -> bool:
        return True

    @staticmethod
    def save(value: Any, path: str) -> None:
        import cloudpickle

        try:
            data = cloudpickle.dumps(value, protocol=5)
        except Exception as error:
            raise MarshalError(f"{_type_name(value)} cannot be serialized: {error}",
                               _advice(value)) from None
        atomic_write(path, lambda handle: handle.write(data))

    @staticmethod
    def load(path: str) -> Any:
        import pickle

        with open(path, "rb") as handle:
            return pickle.load(handle)


BACKENDS: list[Any] = [_Json, _Numpy, _Pickle]


def _advice(value: Any) -> str:
    import inspect

    if inspect.isgenerator(value) or inspect.isasyncgen(value):
        return "return a list instead of a generator: `return list(...)`"
    if hasattr(value, "read") and hasattr(value, "close"):
        return "return the file's path (or its contents), not the open file"
    name = type(value).__name__.lower()
    if "lock" in name or "thread" in name or "socket" in name or "connection" in name:
        return ("return the data you need; locks, threads, sockets and connections live only "
                "inside the step that made them")
    return "return plain data (numbers, strings, lists, dicts, arrays) that describes it"


def save(value: Any, folder: str | os.PathLike[str], name: str) -> StoredValue:
    """Write ``value`` as ``folder/name.<suffix>`` with the first backend that takes it."""
    if isinstance(value, io.IOBase):
        # cloudpickle would snapshot a readable file's contents: surprising, and the file
        # itself does not exist where the next step runs.
        raise MarshalError("an open file cannot be passed to another step", _advice(value))
    for backend in BACKENDS:
        if backend.accepts(value):
            path = os.path.join(folder, f"{name}{backend.suffix}")
            try:
                backend.save(value, path)
            except (ValueError, OverflowError, RecursionError):
                if backend is BACKENDS[-1]:
                    raise
                continue  # e.g. an int too long for JSON: the next backend takes it
            stored = StoredValue(path, backend.name, _type_name(value), os.path.getsize(path))
            atomic_write(os.path.join(folder, f"{name}.meta.json"),
                         lambda handle, s=stored: json.dump(s.to_json(), handle), mode="w")
            return stored
    raise MarshalError(f"no backend takes {_type_name(value)}")


def load(stored: StoredValue | dict[str, Any]) -> Any:
    """Read a value back, in the reader's own process."""
    if isinstance(stored, dict):
        stored = StoredValue(**stored)
    for backend in BACKENDS:
        if backend.name == stored.backend:
            try:
                return backend.load(stored.path)
            except ModuleNotFoundError as error:
                raise MarshalError(
                    f"reading a {stored.type} needs the `{error.name}` library",
                    f"install {error.name} where this step runs",
                ) from None
    raise MarshalError(f"unknown storage backend {stored.backend!r} for {stored.path}")
