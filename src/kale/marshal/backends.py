"""Kale's built-in storage backends, one class per kind of value (see ``kale.marshal``).

Each backend's library is imported inside its methods: deciding that a value is not a
DataFrame must not import pandas.
"""

from __future__ import annotations

import json
import os
import shutil
import sys

from kale.marshal import Backend, atomic_write
from kale.marshal.codec import PLAIN_TYPES, NotPlainError, decode, encode

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def _loaded(module: str) -> Any:
    """The module if the process has imported it (a value of its type implies it has)."""
    return sys.modules.get(module)


# -- plain values: Kale's tagged JSON (kale.marshal.codec) ---------------------------------------

class JsonBackend(Backend):
    name, suffix = "json", ".json"

    def accepts(self, value: Any) -> bool:
        # Large binary data would grow by a third in base64: pickle stores it as it is.
        return type(value) in PLAIN_TYPES and not (type(value) is bytes and len(value) > 65536)

    def save(self, value: Any, path: str) -> dict[str, Any]:
        data = json.dumps(encode(value), allow_nan=False).encode()
        atomic_write(path, lambda handle: handle.write(data))
        return {"hash": _hash_bytes(data), "size": len(data)}

    def load(self, path: str, meta: dict[str, Any]) -> Any:
        with open(path, "rb") as handle:
            return decode(json.loads(handle.read()))


# -- numpy ---------------------------------------------------------------------------------------

class NumpyBackend(Backend):
    name, suffix, library = "npy", ".npy", "numpy"

    def accepts(self, value: Any) -> bool:
        numpy = _loaded("numpy")
        # Masked arrays, matrices and record arrays carry more than their data: pickle them.
        return (numpy is not None and type(value) in (numpy.ndarray, numpy.memmap) and \
            not value.dtype.hasobject) or (numpy is not None and \
            isinstance(value, numpy.generic) and not value.dtype.hasobject)

    def save(self, value: Any, path: str) -> dict[str, Any]:
        import numpy

        # Subclasses (a memory-mapped input passed on, a masked array) are stored as their data.
        array = numpy.asarray(value)
        digest = _HashingWriter.new()  # hashed on the way out: the file is never read back
        atomic_write(path, lambda handle: _write_npy(array, digest.wrap(handle)))
        extra: dict[str, Any] = {"dtype": str(array.dtype), "shape": list(array.shape),
                                 "hash": digest.hexdigest()}
        if isinstance(value, numpy.generic):
            extra["scalar"] = True
        return extra

    def load(self, path: str, meta: dict[str, Any]) -> Any:
        import numpy

        if meta.get("scalar"):
            return numpy.load(path, allow_pickle=False)[()]
        # Copy-on-write memory map: nothing is read until used, and writes stay private.
        return numpy.load(path, mmap_mode="c", allow_pickle=False)


def _write_npy(array: Any, handle: Any) -> None:
    """The .npy header, then the data in one write of its memory (no intermediate buffers;
    ``_HashingWriter`` hashes it on another core while it is written)."""
    import numpy

    if not (array.flags.c_contiguous or array.flags.f_contiguous):
        numpy.save(handle, array, allow_pickle=False)
        return
    header = numpy.lib.format.header_data_from_array_1_0(array)
    numpy.lib.format.write_array_header_2_0(handle, header) if _needs_v2(header) else \
        numpy.lib.format.write_array_header_1_0(handle, header)
    data = array.T if header["fortran_order"] and not array.flags.c_contiguous else array
    if data.size:  # viewed as bytes: any dtype (datetimes too) goes out in one write
        handle.write(memoryview(data.reshape(-1).view(numpy.uint8)))


def _needs_v2(header: dict[str, Any]) -> bool:
    return len(repr(header)) > 65000  # version 1.0 headers hold at most 64 KiB


# -- pandas and Arrow ------------------------------------------------------------------------------

class ArrowBackend(Backend):
    """DataFrames, Series and Arrow tables as Arrow IPC (Feather v2), uncompressed and in one
    record batch, so that the reader maps the file instead of reading it: numeric, datetime,
    timedelta and categorical columns without missing values come back as copy-on-write views
    of the mapped file (nothing is read until used, and a step that changes its frame in place
    changes its own private pages, never the stored value). Index, dtypes (categoricals, time
    zones, nullable integers) and column names survive through Arrow's pandas metadata.

    Writing converts only what Arrow cannot take as it is (strings and other Python objects,
    booleans, masks): numeric columns go from the frame's memory to the file. Columns of Python
    strings are converted ``STRING_SLICE_ROWS`` rows at a time when the frame is longer: whole,
    their Arrow copy (and the builder's spare room while it grows) would add a third of a
    typical mixed frame to the process's memory while it writes. Such a file holds two Arrow IPC
    files one after the other (``"strings"`` in the metadata says where the second starts): the
    other columns in one record batch, mapped by the reader as above, then the string columns
    in slices, which the reader turns into Python strings anyway.

    Only frames Arrow gives back exactly are stored this way: a frame with columns of Python
    objects (dicts, lists, mixed types), labels that are not strings, or ``attrs`` goes to pickle,
    and the record says why.
    """

    name, suffix, library = "arrow", ".arrow", "pyarrow"

    def accepts(self, value: Any) -> bool:
        pandas, pyarrow = _loaded("pandas"), _loaded("pyarrow")
        return (pandas is not None and isinstance(value, (pandas.DataFrame, pandas.Series))) or \
            (pyarrow is not None and isinstance(value, pyarrow.Table))

    def save(self, value: Any, path: str) -> dict[str, Any]:
        import pyarrow

        extra: dict[str, Any] = {}
        if isinstance(value, pyarrow.Table):
            extra = {"arrow": "table"}
        else:
            pandas = _loaded("pandas")
            if isinstance(value, pandas.Series):
                extra = {"pandas": "series",
                         "series_name": encode(_plain_label(value.name, "name"))}
                value = value.to_frame(name="series")
            _check_frame(value, pandas)
            columns = value.columns
            if not (type(columns) is pandas.Index and columns.dtype == object
                    and columns.is_unique and columns.name is None
                    and all(type(label) is str for label in columns)):
                # Arrow wants unique string names: store positions, keep the labels aside.
                extra["columns"] = encode([_plain_label(c, "column label") for c in columns])
                extra["columns_names"] = encode([_plain_label(n, "column level name")
                                                  for n in columns.names])
                if isinstance(columns, pandas.RangeIndex):
                    extra["columns_range"] = [columns.start, columns.stop, columns.step]
                elif isinstance(columns, pandas.MultiIndex):
                    extra["columns_kind"] = "multi"
                value = value.set_axis([f"column {i}" for i in range(len(columns))], axis=1)
            if isinstance(value.index, pandas.RangeIndex):
                # A range is three numbers: not a column of them (and slices would get it wrong).
                index = value.index
                extra["index_range"] = [index.start, index.stop, index.step]
                extra["index_name"] = encode(_plain_label(index.name, "index name"))
        digest = _HashingWriter.new()
        strings = _string_columns(value)
        if strings:
            def write(handle: Any) -> None:
                extra["strings"] = _write_split(value, digest.wrap(handle),
                                                "index_range" not in extra, strings)
        else:
            def write(handle: Any) -> None:
                _write_ipc(value, digest.wrap(handle), "index_range" not in extra)
        atomic_write(path, write)
        extra["hash"] = digest.hexdigest()
        return extra

    def load(self, path: str, meta: dict[str, Any]) -> Any:
        import mmap

        import pyarrow

        if meta.get("arrow") == "table":
            # zero-copy: the buffers are the mapped file (Arrow's buffers are immutable)
            return pyarrow.ipc.open_file(pyarrow.memory_map(path)).read_all()
        descriptor = os.open(path, os.O_RDONLY)
        try:
            # Private (copy-on-write): pages are the file's until the step writes to them.
            memory = mmap.mmap(descriptor, 0, access=mmap.ACCESS_COPY)
        finally:
            os.close(descriptor)
        mapped = pyarrow.py_buffer(memory)
        split = meta.get("strings")
        table = pyarrow.ipc.open_file(mapped if split is None else
                                      mapped.slice(0, split["at"])).read_all()
        # One block per column: Arrow then hands over numeric columns without copying them.
        frame = table.to_pandas(split_blocks=True)
        del table
        _writable(frame, memory, mapped.address, mapped.size)
        import pandas

        if split is not None:
            frame = _with_strings(frame, pyarrow.ipc.open_file(mapped.slice(split["at"])),
                                  split["columns"], "index_range" in meta)

        if "index_range" in meta:
            frame.index = pandas.RangeIndex(*meta["index_range"],
                                            name=decode(meta.get("index_name")))
        if "columns" in meta:
            names = decode(meta["columns"])
            level_names = decode(meta.get("columns_names")) or [None]
            if "columns_range" in meta:
                index = pandas.RangeIndex(*meta["columns_range"], name=level_names[0])
            elif meta.get("columns_kind") == "multi":
                index = pandas.MultiIndex.from_tuples(names, names=level_names)
            else:
                index = pandas.Index(names, tupleize_cols=False, name=level_names[0])
            frame.columns = index
        if meta.get("pandas") == "series":
            series = frame["series"]
            series.name = decode(meta.get("series_name"))
            return series
        return frame


class _NotExact(ValueError):
    """Arrow would not give this frame back exactly."""


def _plain_label(label: Any, what: str) -> Any:
    try:
        encode(label)
    except NotPlainError:
        raise _NotExact(f"a {what} is a {type(label).__name__}, not a plain value") from None
    return label


def _check_frame(frame: Any, pandas: Any) -> None:
    """Raise ``_NotExact`` for what Arrow would silently change."""
    if frame.attrs:
        raise _NotExact("it has attrs, which Arrow does not keep")
    if not isinstance(frame.columns, (pandas.RangeIndex, pandas.MultiIndex)) and \
            type(frame.columns) is not pandas.Index:
        raise _NotExact(f"its columns are a {type(frame.columns).__name__}")
    for name in frame.index.names:
        if name is not None and type(name) is not str:
            raise _NotExact("an index level name is not a string")
    infer = pandas.api.types.infer_dtype
    for position in range(frame.shape[1]):
        column = frame.iloc[:, position]
        if column.dtype == object and infer(column, skipna=True) not in ("string", "empty"):
            raise _NotExact(f"column {frame.columns[position]!r} holds Python objects "
                            f"({infer(column, skipna=True)}) that Arrow would convert")
    for level in range(frame.index.nlevels):
        values = frame.index.get_level_values(level)
        if values.dtype == object and infer(values, skipna=True) not in ("string", "empty"):
            raise _NotExact("the index holds Python objects that Arrow would convert")


def _write_ipc(value: Any, handle: Any, preserve_index: bool = True) -> None:
    import pyarrow

    table = value if isinstance(value, pyarrow.Table) else _frame_table(value, preserve_index)
    with pyarrow.ipc.new_file(handle, table.schema) as writer:
        _write_batch(writer, table)


def _write_batch(writer: Any, table: Any) -> None:
    """One record batch (for columns of one chunk): each column is contiguous in the file, so
    the reader maps it as it is."""
    import pyarrow

    if table.num_columns and all(column.num_chunks == 1 for column in table.columns):
        # (write_table would skip an empty batch, and with it a categorical's categories)
        writer.write_batch(pyarrow.RecordBatch.from_arrays(
            [column.chunk(0) for column in table.columns], schema=table.schema))
    else:
        writer.write_table(table)


#: Rows of a column of Python strings converted to Arrow at a time (see ``ArrowBackend``): a
#: slice of short strings takes a few tens of MB while it is written.
STRING_SLICE_ROWS = 1 << 16


def _string_columns(frame: Any) -> list[int]:
    """The positions of the columns of Python strings (``_check_frame`` let no other objects
    through) to be written in slices: none for a frame of one slice or less."""
    if len(frame) <= STRING_SLICE_ROWS:
        return []
    dtypes = frame.dtypes
    return [position for position in range(frame.shape[1])
            if dtypes.iloc[position] == "object"]


def _write_split(frame: Any, handle: Any, preserve_index: bool, strings: list[int]
                 ) -> dict[str, Any]:
    """Write the frame's other columns as one IPC file, then its string columns as a second
    one, in slices; returns what the reader needs to find them."""
    import pyarrow

    names = list(frame.columns)
    others = [name for position, name in enumerate(names) if position not in strings]
    table = _frame_table(frame, preserve_index, others)
    with pyarrow.ipc.new_file(handle, table.schema) as writer:
        _write_batch(writer, table)
    del table
    start = handle.tell()
    # large_string: a slice of long strings may hold more than the 2 GB of a string array. No
    # pandas metadata: every one of these columns comes back as Python strings (None if null).
    schema = pyarrow.schema([pyarrow.field(names[position], pyarrow.large_string())
                             for position in strings])
    with pyarrow.ipc.new_file(_Counted(handle), schema) as writer:
        for begin in range(0, len(frame), STRING_SLICE_ROWS):
            rows = slice(begin, begin + STRING_SLICE_ROWS)
            writer.write_batch(pyarrow.RecordBatch.from_arrays(
                [pyarrow.array(frame.iloc[rows, position].to_numpy(),
                               type=pyarrow.large_string(), from_pandas=True)
                 for position in strings], schema=schema))
    return {"at": start, "columns": strings}


class _Counted:
    """A file seen from where a second IPC file starts in it (Arrow asks where it is)."""

    def __init__(self, handle: Any) -> None:
        self.handle, self.start = handle, handle.tell()

    def write(self, data: Any) -> int:
        return self.handle.write(data)

    def tell(self) -> int:
        return self.handle.tell() - self.start

    def __getattr__(self, name: str) -> Any:
        return getattr(self.handle, name)


def _with_strings(frame: Any, reader: Any, positions: list[int], ranged: bool) -> Any:
    """The frame read from the first IPC file, with the string columns of the second put back
    at their positions (Python strings; Arrow's nulls as None, as a frame read whole)."""
    strings = reader.read_all().to_pandas()
    if frame.shape[1] == 0 and ranged:
        # Only string columns, and a RangeIndex (set by the caller): nothing else to keep.
        return strings
    for position, name in zip(positions, strings.columns, strict=True):
        frame.insert(position, name, strings[name].to_numpy())
    return frame


def _frame_table(frame: Any, preserve_index: bool, columns: list[str] | None = None) -> Any:
    """The frame as an Arrow table that shares the memory of its numeric columns.

    ``Table.from_pandas`` takes int, float, datetime, timedelta and categorical codes without
    copying them, but marks NaN in float columns as missing: a float column with a validity
    bitmap would be copied by the reader to put NaN back. A numpy float column keeps its NaN as
    they are instead (exactly what pandas holds), and the reader maps it."""
    import numpy
    import pyarrow

    table = pyarrow.Table.from_pandas(frame, preserve_index=preserve_index, columns=columns)
    dtypes = frame.dtypes if columns is None else frame.dtypes[columns]
    for position in range(len(dtypes)):  # index columns, if any, come after these
        column = table.column(position)
        if column.null_count and isinstance(dtypes.iloc[position], numpy.dtype) and \
                dtypes.iloc[position].kind == "f" and pyarrow.types.is_floating(column.type):
            chunks = [pyarrow.Array.from_buffers(chunk.type, len(chunk), [None, chunk.buffers()[1]],
                                                 0, chunk.offset) for chunk in column.chunks]
            table = table.set_column(position, table.schema.field(position),
                                     pyarrow.chunked_array(chunks, column.type))
    return table


def _writable(frame: Any, memory: Any, start: int, size: int) -> None:
    """Make the columns Arrow handed over as read-only views of the mapped file writable, as
    numpy arrays read by Kale are: the same pages, seen through the private (copy-on-write)
    mapping, so that in-place changes (``frame.loc[0, "x"] = 1``) work and stay in the step.
    A read-only column that is not in the mapping (there should be none) is copied."""
    import numpy

    for block in frame._mgr.blocks:
        values = block.values
        array = values if isinstance(values, numpy.ndarray) else getattr(values, "_ndarray", None)
        if not isinstance(array, numpy.ndarray) or array.flags.writeable:
            continue
        address = array.__array_interface__["data"][0]
        if array.flags.c_contiguous and start <= address and \
                address + array.nbytes <= start + size:
            view = numpy.frombuffer(memory, dtype=array.dtype, count=array.size,
                                    offset=address - start).reshape(array.shape)
        else:
            view = array.copy()
        # datetimes, timedeltas, categoricals: the same kind of array (dtype, time zone,
        # categories), backed by the writable view
        block.values = view if values is array else values._from_backing_data(view)


# -- scikit-learn --------------------------------------------------------------------------------

class SklearnBackend(Backend):
    """scikit-learn estimators, pickled (cloudpickle, protocol 5) as any other object, with the
    scikit-learn version recorded.

    This is joblib's format without joblib's wrapper: joblib pickles the estimator too, and
    writes each numpy array it holds through a wrapper of its own, which costs about 0.3 ms per
    array (a random forest holds several per tree: 14 ms for a 3 MB forest, 2 ms as a pickle).
    Protocol 5 writes large arrays straight from their memory, so a large model takes no extra
    memory either. It is as safe: ``joblib.load`` is ``pickle.load`` (a subclass of its
    unpickler), so reading either runs code from the file, and the same rule covers both (Kale
    reads values only from the run's own store). It is sturdier too: an estimator class or a
    function (a ``FunctionTransformer``'s) defined in the script travels by value, as for every
    other pickled value, where joblib stores a reference that no other process can resolve.
    """

    name, suffix, library = "sklearn", ".pkl", "sklearn"

    def accepts(self, value: Any) -> bool:
        if type(value).__module__.split(".")[0] == "sklearn":
            return True
        base = _loaded("sklearn.base")
        return base is not None and isinstance(value, base.BaseEstimator)

    def save(self, value: Any, path: str) -> dict[str, Any]:
        import cloudpickle

        digest = _HashingWriter.new()
        atomic_write(path, lambda handle: cloudpickle.dump(value, digest.wrap(handle),
                                                           protocol=5))
        sklearn = _loaded("sklearn")
        return {"sklearn_version": getattr(sklearn, "__version__", None),
                "hash": digest.hexdigest()}

    def load(self, path: str, meta: dict[str, Any]) -> Any:
        with open(path, "rb") as handle:
            return _ClassAdoptingUnpickler(handle).load()


class JoblibBackend(Backend):
    """Reads the estimators earlier versions of Kale stored with joblib; writes nothing."""

    name, suffix, library = "joblib", ".joblib", "joblib"

    def accepts(self, value: Any) -> bool:
        return False

    def save(self, value: Any, path: str) -> dict[str, Any]:
        raise NotImplementedError

    def load(self, path: str, meta: dict[str, Any]) -> Any:
        import joblib

        return joblib.load(path)


# -- PyTorch -------------------------------------------------------------------------------------

class TorchBackend(Backend):
    name, suffix, library = "torch", ".pt", "torch"

    def accepts(self, value: Any) -> bool:
        torch = _loaded("torch")
        return torch is not None and isinstance(value, (torch.Tensor, torch.nn.Module))

    def save(self, value: Any, path: str) -> dict[str, Any]:
        import torch

        if isinstance(value, torch.jit.ScriptModule):
            digest = _HashingWriter.new()
            atomic_write(path, lambda handle: torch.jit.save(value, digest.wrap(handle)))
            return {"torch": "script", "hash": digest.hexdigest()}
        if isinstance(value, torch.Tensor):
            extra = {"device": str(value.device), "requires_grad": value.requires_grad}
            if not isinstance(value, torch.nn.Parameter):
                value = value.detach()
            value = value.cpu()
            if value.layout == torch.strided and value.untyped_storage().nbytes() > \
                    value.numel() * value.element_size():
                value = value.clone()  # a view: store its elements, not all of its base
        else:
            parameter = next(value.parameters(), None)
            extra = {"device": str(parameter.device) if parameter is not None else "cpu"}
            value = value.cpu()  # the producing step is over: moving its module is harmless
        digest = _HashingWriter.new()
        atomic_write(path, lambda handle: torch.save(value, digest.wrap(handle)))
        extra["hash"] = digest.hexdigest()
        return extra

    def load(self, path: str, meta: dict[str, Any]) -> Any:
        import torch

        if meta.get("torch") == "script":
            return torch.jit.load(path, map_location="cpu")
        value = torch.load(path, map_location="cpu", weights_only=False)
        if meta.get("requires_grad") and not value.requires_grad:
            value.requires_grad_(True)
        return value


# -- files and folders -----------------------------------------------------------------------------

class PathBackend(Backend):
    """A ``pathlib.Path`` to a file or folder the step made: copied into the run store, and the
    consumer gets a Path to its copy (model files, checkpoint folders)."""

    name, suffix = "path", ".files"

    def accepts(self, value: Any) -> bool:
        pathlib = _loaded("pathlib")
        return pathlib is not None and isinstance(value, pathlib.PurePath) and \
            os.path.exists(value)

    def save(self, value: Any, path: str) -> dict[str, Any]:
        from kale.marshal import MarshalError

        source = os.path.abspath(os.fspath(value))
        basename = os.path.basename(source) or "root"
        store = os.path.dirname(os.path.abspath(path))
        if os.path.isdir(source) and os.path.commonpath([source, store]) == source:
            raise MarshalError(f"the path {source} holds the run store itself",
                               "return the path of a file or folder the step made")
        temporary = f"{path}.{os.getpid()}.{os.urandom(4).hex()}.partial"
        os.makedirs(temporary)
        try:
            if os.path.isdir(source):
                # Links are followed, so the copy holds data, not pointers that may not resolve
                # where the next step runs; dangling links are left out.
                shutil.copytree(source, os.path.join(temporary, basename), symlinks=False,
                                ignore_dangling_symlinks=True)
            else:
                shutil.copy2(source, os.path.join(temporary, basename))
            os.replace(temporary, path)
        except BaseException:
            shutil.rmtree(temporary, ignore_errors=True)
            raise
        return {"basename": basename, "original": os.path.abspath(source),
                "kind": "folder" if os.path.isdir(source) else "file"}

    def load(self, path: str, meta: dict[str, Any]) -> Any:
        from pathlib import Path

        return Path(path) / meta["basename"]


# -- everything else -------------------------------------------------------------------------------

class PickleBackend(Backend):
    name, suffix, library = "pickle", ".pkl", "cloudpickle"

    def accepts(self, value: Any) -> bool:
        return True

    def save(self, value: Any, path: str) -> dict[str, Any]:
        import cloudpickle

        data = cloudpickle.dumps(value, protocol=5)
        atomic_write(path, lambda handle: handle.write(data))
        return {"hash": _hash_bytes(data)}

    def load(self, path: str, meta: dict[str, Any]) -> Any:
        with open(path, "rb") as handle:
            return _ClassAdoptingUnpickler(handle).load()


#: The module namespaces of the step being run, by module name (``kale.runtime`` sets them):
#: a class that travelled by value is the step's own class of that name when it has one.
CLASS_HOMES: dict[str, dict[str, Any]] = {}
_adopted: set[int] = set()


def _unpickler_base() -> type:
    import pickle

    return pickle.Unpickler


class _ClassAdoptingUnpickler(_unpickler_base()):  # type: ignore[misc]
    """Unpickles as ``pickle.load`` does, except that a class of the script that cloudpickle
    carried by value (classes of ``__main__`` always travel so) becomes the class of the same
    name the step's own module defines, so ``isinstance(value, Box)`` holds in the step that
    receives a ``Box``, as it would on Kubeflow with one module imported in every step. Without
    such a class, the class travelled with the value is used."""

    def find_class(self, module: str, name: str) -> Any:
        found = super().find_class(module, name)
        if not CLASS_HOMES or not module.startswith("cloudpickle"):
            return found
        if name == "_make_skeleton_class":
            return _adopting(found)
        if name == "_make_skeleton_enum":
            return _adopting_enum(found)
        if name == "_class_setstate":
            return _setting_unless_adopted(found)
        return found


def _adopting(make: Any) -> Any:
    def make_or_adopt(metaclass: Any, name: str, bases: Any, type_kwargs: dict[str, Any],
                      *rest: Any) -> Any:
        home = CLASS_HOMES.get(type_kwargs.get("__module__", ""))
        own = home.get(name) if home is not None else None
        if isinstance(own, type) and own.__module__ == type_kwargs.get("__module__") and \
                type(own) is metaclass:
            _adopted.add(id(own))
            return own
        return make(metaclass, name, bases, type_kwargs, *rest)

    return make_or_adopt


def _adopting_enum(make: Any) -> Any:
    def make_or_adopt(bases: Any, name: str, qualname: str, members: Any, module: str,
                      *rest: Any) -> Any:
        home = CLASS_HOMES.get(module)
        own = home.get(name) if home is not None else None
        # The step's own enum: `Color(2)` is then its own member, so `is Color.GREEN` holds.
        if isinstance(own, type) and own.__module__ == module and \
                own.__qualname__ == qualname and type(own) is type(bases[-1]):
            _adopted.add(id(own))
            return own
        return make(bases, name, qualname, members, module, *rest)

    return make_or_adopt


def _setting_unless_adopted(setstate: Any) -> Any:
    def set_state(cls: Any, state: Any) -> Any:
        if id(cls) in _adopted:
            return cls  # the step's own class keeps its own methods and attributes
        return setstate(cls, state)

    return set_state


BUILTIN: list[Backend] = [JsonBackend(), NumpyBackend(), ArrowBackend(), SklearnBackend(),
                          TorchBackend(), PathBackend(), PickleBackend(), JoblibBackend()]


# -- helpers ---------------------------------------------------------------------------------------

_PARALLEL_HASH_BYTES = 4 << 20


class _HashingWriter:
    """A file wrapper that hashes what passes through it, so the file is not read back."""

    @classmethod
    def new(cls) -> _HashingWriter:
        return cls(*_new_digest())

    def __init__(self, name: str, digest: Any) -> None:
        self.name, self.digest = name, digest
        self.handle: Any = None

    def wrap(self, handle: Any) -> _HashingWriter:
        self.handle = handle
        return self

    def write(self, data: Any) -> int:
        # (pickle hands over large arrays as PickleBuffers, which have no len())
        if memoryview(data).nbytes < _PARALLEL_HASH_BYTES:
            self.digest.update(data)
            return self.handle.write(data)
        # Large data is hashed on another core while it is written (both hashes release the
        # GIL): the write then costs what the write alone costs.
        import threading

        hashing = threading.Thread(target=self.digest.update, args=(data,), daemon=True)
        hashing.start()
        try:
            return self.handle.write(data)
        finally:
            hashing.join()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.handle, name)

    def hexdigest(self) -> str:
        return f"{self.name}:{self.digest.hexdigest()}"

def _new_digest() -> tuple[str, Any]:
    """xxh3 (fast) where xxhash is installed; blake2b from the standard library elsewhere (a
    Kubeflow image that has only Python and the user's libraries)."""
    try:
        import xxhash
    except ImportError:
        import hashlib

        return "blake2b", hashlib.blake2b(digest_size=8)
    return "xxh3", xxhash.xxh3_64()


def _hash_bytes(data: Any) -> str:
    name, digest = _new_digest()
    digest.update(data)
    return f"{name}:{digest.hexdigest()}"


def content_hash(path: str) -> str:
    """A fast hash of a stored file (or of every file of a stored folder)."""
    name, digest = _new_digest()
    paths = [path] if not os.path.isdir(path) else sorted(
        os.path.join(root, name) for root, _, names in os.walk(path) for name in names)
    for file in paths:
        if file != path:  # in a folder, names are content too
            digest.update(os.path.relpath(file, path).encode())
        with open(file, "rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
    return f"{name}:{digest.hexdigest()}"


def advice(value: Any) -> str:
    """What to return instead of a value that cannot cross a step boundary."""
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
