"""Values to files and back, by type: exact round trips, fallbacks, metadata, errors."""

from __future__ import annotations

import json
import math
import threading
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kale import marshal


def round_trip(value, folder, name="v"):
    stored = marshal.save(value, folder, name)
    return stored, marshal.load(stored.to_json())


def same(a, b) -> bool:
    """Equal, with the same types all the way down (NaN equal to NaN)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return a == b


# -- plain values ------------------------------------------------------------------------------

@pytest.mark.parametrize("value", [
    None, True, 0, -(10 ** 5000), 2.5, float("nan"), float("-inf"), "text", b"\x00bytes",
    [1, [2, (3, 4)]], (1,), {"a": 1}, {1: "int key", (1, 2): "tuple key", None: 0},
    {"__kale__": "a user key that looks like the tag"}, {1, 2, 3}, frozenset({"a"}),
], ids=lambda v: type(v).__name__)
def test_plain_values_round_trip_exactly_as_json(tmp_path, value):
    stored, loaded = round_trip(value, tmp_path)
    assert stored.backend == "json"
    assert same(loaded, value)


plain = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text() | st.binary(),
    lambda children: st.lists(children) | st.tuples(children, children)
    | st.dictionaries(st.text() | st.integers() | st.booleans(), children)
    | st.frozensets(st.integers() | st.text()),
    max_leaves=20,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                   HealthCheck.function_scoped_fixture])
@given(plain)
def test_any_nested_plain_value_round_trips_exactly(tmp_path, value):
    _, loaded = round_trip(value, tmp_path)
    assert same(loaded, value)


# -- numpy -------------------------------------------------------------------------------------

def test_numpy_arrays_scalars_and_subclasses(tmp_path):
    np = pytest.importorskip("numpy")
    stored, mapped = round_trip(np.arange(10.0).reshape(2, 5), tmp_path, "a")
    assert stored.backend == "npy" and stored.extra["shape"] == [2, 5]
    assert isinstance(mapped, np.memmap) and mapped.sum() == 45
    assert marshal.save(mapped[:1], tmp_path, "b").backend == "npy"  # passed on: still .npy
    stored, scalar = round_trip(np.float32(1.5), tmp_path, "c")
    assert type(scalar) is np.float32 and scalar == 1.5
    for name, value in (("d", np.array([object()])),
                        ("e", np.array([(1, "a")], dtype=[("x", int), ("y", object)]))):
        assert marshal.save(value, tmp_path, name).backend == "pickle"
    fortran = np.asfortranarray(np.arange(6).reshape(2, 3))
    _, loaded = round_trip(fortran, tmp_path, "f")
    assert (loaded == fortran).all()


# -- pandas and Arrow ----------------------------------------------------------------------------

def test_frames_keep_index_dtypes_and_names(tmp_path):
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    frame = pd.DataFrame({
        "category": pd.Categorical(["a", "b", "a", "c"] * 5),
        "when": pd.date_range("2026-01-01", periods=20, freq="h", tz="Europe/Athens"),
        "maybe": pd.array([1, None, 3, 4] * 5, dtype="Int64"),
        "text": ["x", "y", None, "z"] * 5,
        3: range(20),
    }, index=pd.Index([f"row{i}" for i in range(20)], name="key"))
    stored, loaded = round_trip(frame, tmp_path)
    assert stored.backend == "arrow"
    pd.testing.assert_frame_equal(loaded, frame)


def test_series_and_arrow_tables(tmp_path):
    pd = pytest.importorskip("pandas")
    pa = pytest.importorskip("pyarrow")
    series = pd.Series([1.5, 2.5], index=[10, 20], name="price")
    _, loaded = round_trip(series, tmp_path, "s")
    pd.testing.assert_series_equal(loaded, series)
    table = pa.table({"x": [1, 2, 3]})
    _, loaded = round_trip(table, tmp_path, "t")
    assert loaded.equals(table)


def test_frames_arrow_cannot_hold_fall_back_to_pickle_and_say_so(tmp_path):
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    frame = pd.DataFrame({"objects": [object(), object()]})
    stored = marshal.save(frame, tmp_path, "f")
    assert stored.backend == "pickle"
    assert "arrow could not store it" in stored.extra["fallback"]
    meta = json.loads((tmp_path / "f.meta.json").read_text())
    assert "arrow could not store it" in meta["fallback"]


# -- scikit-learn and PyTorch ----------------------------------------------------------------------

def test_scikit_learn_models_are_pickled_with_their_version(tmp_path):
    np = pytest.importorskip("numpy")
    linear = pytest.importorskip("sklearn.linear_model")
    model = linear.LogisticRegression().fit(np.array([[0.0], [1.0], [2.0], [3.0]]),
                                            np.array([0, 0, 1, 1]))
    stored, loaded = round_trip(model, tmp_path)
    assert stored.backend == "sklearn" and stored.extra["sklearn_version"]
    assert stored.extra["library"] == "sklearn" and stored.path.endswith(".pkl")
    assert (loaded.predict([[0.0], [3.0]]) == [0, 1]).all()


def test_scikit_learn_models_holding_functions_and_old_joblib_files(tmp_path):
    np = pytest.importorskip("numpy")
    preprocessing = pytest.importorskip("sklearn.preprocessing")
    joblib = pytest.importorskip("joblib")
    doubling = preprocessing.FunctionTransformer(lambda x: x * 2)  # joblib cannot store this
    stored, loaded = round_trip(doubling.fit(np.ones((2, 1))), tmp_path, "d")
    assert stored.backend == "sklearn" and "fallback" not in stored.extra
    assert (loaded.transform(np.ones((1, 1))) == 2).all()
    # a run store written by an earlier Kale (joblib) still reads
    model = preprocessing.StandardScaler().fit(np.array([[0.0], [2.0]]))
    joblib.dump(model, tmp_path / "old.joblib")
    meta = {"path": str(tmp_path / "old.joblib"), "backend": "joblib",
            "type": "sklearn.preprocessing._data.StandardScaler", "size": 1}
    assert marshal.load(meta, store=tmp_path).mean_.tolist() == [1.0]


def test_torch_tensors_and_modules(tmp_path):
    torch = pytest.importorskip("torch")
    tensor = torch.arange(6.0, requires_grad=True)
    stored, loaded = round_trip(tensor, tmp_path, "t")
    assert stored.backend == "torch" and stored.extra["device"] == "cpu"
    assert torch.equal(loaded, tensor.detach()) and loaded.requires_grad
    module = torch.nn.Linear(3, 2)
    stored, loaded = round_trip(module, tmp_path, "m")
    assert stored.backend == "torch"
    assert torch.equal(loaded.weight, module.weight)


# -- files and folders -----------------------------------------------------------------------------

def test_paths_to_files_and_folders_are_copied_into_the_store(tmp_path):
    made = tmp_path / "made"
    (made / "checkpoints").mkdir(parents=True)
    (made / "checkpoints" / "epoch-1.bin").write_bytes(b"weights")
    (made / "model.txt").write_text("model")
    store = tmp_path / "store"
    stored, folder = round_trip(made / "checkpoints", store, "ckpt")
    assert stored.backend == "path" and stored.extra["kind"] == "folder"
    assert folder.is_dir() and (folder / "epoch-1.bin").read_bytes() == b"weights"
    assert store in folder.parents
    _, file = round_trip(made / "model.txt", store, "model")
    assert file.read_text() == "model" and file.name == "model.txt"
    (made / "model.txt").unlink()
    assert file.read_text() == "model"  # the copy outlives the original
    _, missing = round_trip(made / "nothing-here", store, "missing")
    assert missing == made / "nothing-here"  # not a file the step made: just a path value


# -- metadata, registry, errors --------------------------------------------------------------------

def test_metadata_records_backend_type_size_version_and_hash(tmp_path):
    np = pytest.importorskip("numpy")
    stored = marshal.save(np.zeros(4), tmp_path, "z")
    meta = json.loads((tmp_path / "z.meta.json").read_text())
    assert meta["backend"] == "npy" and meta["type"] == "numpy.ndarray"
    assert meta["size"] == (tmp_path / "z.npy").stat().st_size
    assert meta["library"] == "numpy" and meta["library_version"] == np.__version__
    assert meta["hash"].startswith("xxh3:")
    assert marshal.save(np.zeros(4), tmp_path, "z2").extra["hash"] == stored.extra["hash"]
    assert marshal.save(np.ones(4), tmp_path, "z3").extra["hash"] != stored.extra["hash"]


class Celsius:
    def __init__(self, degrees: float) -> None:
        self.degrees = degrees


def test_registered_backends_come_first(tmp_path):
    marshal.register("celsius", Celsius,
                     save=lambda value, path: Path(path).write_text(str(value.degrees)),
                     load=lambda path: Celsius(float(Path(path).read_text())), suffix=".txt")
    try:
        stored, loaded = round_trip(Celsius(21.5), tmp_path)
        assert stored.backend == "celsius" and (tmp_path / "v.txt").read_text() == "21.5"
        assert isinstance(loaded, Celsius) and loaded.degrees == 21.5
    finally:
        marshal._registered.clear()
    with pytest.raises(ValueError, match="a backend name is"):
        marshal.register("no spaces", Celsius, save=print, load=print)


@pytest.mark.parametrize(("value", "advice"), [
    ((i for i in range(3)), "return a list instead of a generator"),
    (threading.Lock(), "locks, threads, sockets and connections"),
])
def test_values_that_cannot_be_stored(tmp_path, value, advice):
    with pytest.raises(marshal.MarshalError) as caught:
        marshal.save(value, tmp_path, "v")
    assert advice in caught.value.advice
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_open_files_are_refused(tmp_path):
    with open(__file__) as handle, pytest.raises(marshal.MarshalError) as caught:
        marshal.save(handle, tmp_path, "v")
    assert "return the file's path" in caught.value.advice


def test_a_missing_library_is_named(tmp_path, monkeypatch):
    pytest.importorskip("numpy")
    import sys

    stored = marshal.save(__import__("numpy").zeros(2), tmp_path, "x")
    monkeypatch.setitem(sys.modules, "numpy", None)  # `import numpy` now fails
    with pytest.raises(marshal.MarshalError) as caught:
        marshal.load(stored.to_json())
    assert "needs the `numpy` library" in str(caught.value)
    assert "the writer had version" in caught.value.advice


def test_an_unknown_backend_is_explained(tmp_path):
    with pytest.raises(marshal.MarshalError, match="no backend 'mystery'"):
        marshal.load({"path": str(tmp_path / "x"), "backend": "mystery", "type": "T",
                      "size": 0})


@pytest.mark.parametrize("columns", ["range", "ints", "tuples", "duplicates"])
def test_frame_column_names_of_every_kind_survive(tmp_path, columns):
    pd = pytest.importorskip("pandas")
    np = pytest.importorskip("numpy")
    pytest.importorskip("pyarrow")
    frame = pd.DataFrame(np.arange(6.0).reshape(2, 3))
    if columns == "ints":
        frame.columns = [10, 20, 30]
    elif columns == "tuples":
        frame.columns = pd.MultiIndex.from_tuples([("a", 1), ("a", 2), ("b", 1)])
    elif columns == "duplicates":
        frame.columns = ["x", "x", "y"]
    stored, loaded = round_trip(frame, tmp_path)
    assert stored.backend == "arrow"
    pd.testing.assert_frame_equal(loaded, frame)


def test_hashes_taken_while_writing_match_the_files(tmp_path):
    from kale.marshal.backends import content_hash

    np = pytest.importorskip("numpy")
    pd = pytest.importorskip("pandas")
    torch = pytest.importorskip("torch")
    linear = pytest.importorskip("sklearn.linear_model")
    values = {
        "plain": {"a": (1, 2)}, "array": np.arange(5.0), "strided": np.arange(10.0)[::2],
        "frame": pd.DataFrame({"x": [1, 2]}), "tensor": torch.ones(3),
        "model": linear.LinearRegression(), "other": complex(1, 2),
    }
    for name, value in values.items():
        stored = marshal.save(value, tmp_path, name)
        assert stored.extra["hash"] == content_hash(stored.path), name


# -- corner cases found by adversarial testing: exact, or pickle with the reason recorded -------

@pytest.mark.parametrize("case", [
    "dict-column", "list-column", "bytes-and-str", "mixed-tz", "decimal", "int-and-none",
    "categorical-columns", "timestamp-labels", "attrs", "int-index-name",
])
def test_frames_arrow_would_change_are_pickled_with_a_reason(tmp_path, case):
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    from decimal import Decimal

    frames = {
        "dict-column": lambda: pd.DataFrame({"d": [{"a": 1}, {"b": 2}]}),
        "list-column": lambda: pd.DataFrame({"l": [[1], [1.5]]}),
        "bytes-and-str": lambda: pd.DataFrame({"o": [b"x", "y"]}),
        "mixed-tz": lambda: pd.DataFrame({"t": [pd.Timestamp("2026-01-01", tz="UTC"),
                                                pd.Timestamp("2026-01-01", tz="Asia/Tokyo")]}),
        "decimal": lambda: pd.DataFrame({"x": [Decimal("1.10")]}),
        "int-and-none": lambda: pd.DataFrame({"x": pd.Series([1, None], dtype=object)}),
        "categorical-columns": lambda: pd.DataFrame([[1, 2]],
                                                    columns=pd.CategoricalIndex(["a", "b"])),
        "timestamp-labels": lambda: pd.DataFrame([[1]], columns=[pd.Timestamp("2026-01-01")]),
        "attrs": lambda: pd.DataFrame({"x": [1]}).pipe(
            lambda f: f.attrs.update({"source": (1, 2)}) or f),
        "int-index-name": lambda: pd.DataFrame({"x": [1]}, index=pd.Index([0], name=5)),
    }
    frame = frames[case]()
    stored, loaded = round_trip(frame, tmp_path)
    pd.testing.assert_frame_equal(loaded, frame)
    assert stored.backend == "pickle" and "arrow could not store it" in stored.extra["fallback"]


def test_frame_structure_survives_arrow(tmp_path):
    pd = pytest.importorskip("pandas")
    np = pytest.importorskip("numpy")
    pytest.importorskip("pyarrow")
    columns = pd.MultiIndex.from_tuples([("v", "a"), ("w", "b")], names=["lvl0", "lvl1"])
    frame = pd.DataFrame(np.arange(6000.0).reshape(3000, 2), columns=columns)
    frame.index = pd.RangeIndex(10, 6010, 2, name="row")
    stored, loaded = round_trip(frame, tmp_path)
    assert stored.backend == "arrow" and stored.extra["index_range"] == [10, 6010, 2]
    pd.testing.assert_frame_equal(loaded, frame)
    assert isinstance(loaded.index, pd.RangeIndex)
    series = pd.Series([1, 2], name=("a", 1))
    marshal.save(series, tmp_path / "s", "s")
    pd.testing.assert_series_equal(marshal.load_folder(tmp_path / "s"), series)


def test_numpy_corner_cases(tmp_path):
    np = pytest.importorskip("numpy")
    masked = np.ma.masked_array([1, 2, 3], mask=[0, 1, 0])
    stored, loaded = round_trip(masked, tmp_path / "m")
    assert stored.backend == "pickle" and loaded.mask.tolist() == [False, True, False]
    for name, value in (("dates", np.array(["2026-01-01", "2026-02-01"], dtype="M8[ns]")),
                        ("deltas", np.array([1, 2], dtype="m8[s]")),
                        ("empty", np.empty((0, 3)))):
        stored, loaded = round_trip(value, tmp_path / name)
        assert stored.backend == "npy", name
        assert loaded.dtype == value.dtype and loaded.shape == value.shape
        assert (np.asarray(loaded) == value).all()


def test_torch_corner_cases(tmp_path):
    torch = pytest.importorskip("torch")
    big = torch.zeros(1_000_000)
    stored, loaded = round_trip(big[:10], tmp_path / "view")
    assert stored.size < 10_000 and loaded.numel() == 10
    parameter = torch.nn.Parameter(torch.ones(2))
    _, loaded = round_trip(parameter, tmp_path / "param")
    assert isinstance(loaded, torch.nn.Parameter)
    import warnings

    warnings.filterwarnings("ignore", "`torch.jit", DeprecationWarning)  # still what users have
    scripted = torch.jit.script(torch.nn.Linear(2, 1))
    stored, loaded = round_trip(scripted, tmp_path / "script")
    assert stored.backend == "torch" and stored.extra["torch"] == "script"
    assert torch.equal(loaded(torch.ones(1, 2)), scripted(torch.ones(1, 2)))


def test_path_corner_cases(tmp_path, monkeypatch):
    import os

    source = tmp_path / "made"
    source.mkdir()
    (tmp_path / "weights.bin").write_bytes(b"w")
    os.symlink(tmp_path / "weights.bin", source / "latest.bin")
    os.symlink("/nonexistent/target", source / "dangling")
    stored, copy = round_trip(source, tmp_path / "store")
    (tmp_path / "weights.bin").unlink()
    assert (copy / "latest.bin").read_bytes() == b"w"  # the data was copied, not the link
    assert not (copy / "dangling").exists()
    monkeypatch.chdir(source)
    stored, here = round_trip(Path("."), tmp_path / "store2")
    assert stored.backend == "path" and here.name == "made"
    with pytest.raises(marshal.MarshalError, match="holds the run store itself"):
        marshal.save(tmp_path, tmp_path / "inside", "v")


def test_a_reader_imports_the_module_that_registered_the_backend(project, tmp_path):
    import sys

    project.write("temps.py", """
        from pathlib import Path
        from kale.marshal import register

        class Fahrenheit:
            def __init__(self, degrees):
                self.degrees = degrees

        register("fahrenheit", Fahrenheit,
                 save=lambda value, path: Path(path).write_text(str(value.degrees)),
                 load=lambda path: Fahrenheit(float(Path(path).read_text())), suffix=".txt")
    """)
    import temps

    try:
        # Into a folder that does not exist yet: the registered save writes straight into it.
        stored = marshal.save(temps.Fahrenheit(70.0), tmp_path / "new" / "folder", "t")
        assert stored.backend == "fahrenheit" and "fallback" not in stored.extra
        assert stored.extra["registered_in"] == "temps"
        # A fresh reader (another step's process) has not imported temps yet.
        marshal._registered.clear()
        del sys.modules["temps"]
        loaded = marshal.load(stored.to_json())
        assert type(loaded).__name__ == "Fahrenheit" and loaded.degrees == 70.0
        marshal._registered.clear()
        sys.modules.pop("temps")
        (project.root / "temps.py").unlink()
        with pytest.raises(marshal.MarshalError, match="registered in module `temps`"):
            marshal.load(stored.to_json())
    finally:
        marshal._registered.clear()
        sys.modules.pop("temps", None)


def test_registry_mistakes_are_explained(tmp_path):
    try:
        marshal.register("strict", lambda value: value.degrees is not None,
                         save=lambda v, p: None, load=lambda p: None)
        with pytest.raises(marshal.MarshalError, match="registered backend 'strict' raised"):
            marshal.save(42, tmp_path, "v")
        marshal._registered.clear()
        marshal.register("union", Celsius | complex,
                         save=lambda v, p: Path(p).write_text("x"), load=lambda p: "x")
        assert marshal.save(1 + 2j, tmp_path, "u").backend == "union"
        assert marshal.save(42, tmp_path, "i").backend == "json"
        marshal.register("forgetful", Celsius, save=lambda v, p: None, load=lambda p: None)
        with pytest.raises(marshal.MarshalError, match="wrote nothing at the path"):
            marshal.save(Celsius(1), tmp_path, "c")
        assert not [p for p in tmp_path.iterdir() if ".partial" in p.name]
    finally:
        marshal._registered.clear()
    with pytest.raises(ValueError, match="built-in backend"):
        marshal.register("pickle", Celsius, save=print, load=print)
    with pytest.raises(ValueError, match="Kale's own"):
        marshal.register("x", Celsius, save=print, load=print, suffix=".meta.json")


def test_a_missing_project_module_is_not_called_a_library(tmp_path):
    # A pickle of `absent_helpers.Thing`, a class of a project module not importable here (a
    # name no other test uses: a test process may hold other tests' project modules).
    stored = {"path": str(tmp_path / "x.pkl"), "backend": "pickle",
              "type": "absent_helpers.Thing", "size": 1, "library": "cloudpickle",
              "library_version": "3"}
    (tmp_path / "x.pkl").write_bytes(b"cabsent_helpers\nThing\n.")
    with pytest.raises(marshal.MarshalError) as caught:
        marshal.load(stored)
    assert "needs the module `absent_helpers`, which cannot be imported" in str(caught.value)
    assert "a module of the project" in caught.value.advice


# -- the store's bounds, and a full disk -------------------------------------------------------

def test_a_value_outside_the_store_is_refused_before_it_is_read(tmp_path):
    store, elsewhere = tmp_path / "run", tmp_path / "elsewhere"
    inside = marshal.save([1, 2], store / "steps" / "a" / "outputs", "x")
    assert marshal.load(inside.to_json(), store=store) == [1, 2]
    outside = marshal.save({"a": 1}, elsewhere, "x").to_json()
    sneaky = {**outside, "path": str(store / ".." / "elsewhere" / "x.json")}
    (store / "link.json").symlink_to(elsewhere / "x.json")
    linked = {**outside, "path": str(store / "link.json")}
    for stored in (outside, sneaky, linked):
        with pytest.raises(marshal.MarshalError) as caught:
            marshal.load(stored, store=store)
        assert f"points at {stored['path']}, outside the run store {store}" in str(caught.value)
        assert "read values through the run that wrote them" in caught.value.advice


def test_a_stored_value_that_is_gone_is_named(tmp_path):
    stored = marshal.save(b"x" * 100_000, tmp_path, "x")  # pickled
    Path(stored.path).unlink()
    with pytest.raises(marshal.MarshalError) as caught:
        marshal.load(stored.to_json(), store=tmp_path)
    assert f"the stored bytes is gone: {stored.path} does not exist" in str(caught.value)


def test_a_run_reads_outputs_only_from_its_own_store(tmp_path):
    from kale.local.scheduler import Run, StepRun

    outside = marshal.save(7, tmp_path / "elsewhere", "x").to_json()
    step = StepRun("s", status="succeeded", outputs={"x": outside})
    run = Run(id="r", pipeline="p", experiment=None, status="succeeded", started=0.0,
              ended=1.0, parameters={}, steps={"s": step}, folder=tmp_path / "run",
              leaves=("s",))
    with pytest.raises(marshal.MarshalError, match="outside the run store"):
        run.output("s")


@pytest.mark.parametrize("value", [[1, 2], b"x" * 100_000, Path(__file__)])
def test_a_full_disk_names_the_disk_not_the_value(tmp_path, monkeypatch, value):
    """Simulated (in-process): every backend's write raises ENOSPC, as a full disk makes it.
    tests/local/test_trust.py fills a real (tmpfs) disk where it can mount one."""
    import errno
    import os

    from kale.marshal import backends

    def full(*_args, **_kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(backends, "atomic_write", full)
    monkeypatch.setattr(backends.shutil, "copy2", full)
    with pytest.raises(marshal.NoSpaceError) as caught:
        marshal.save(value, tmp_path / "out", "v")
    assert str(caught.value) == f"there is no space left on the disk that holds {tmp_path / 'out'}"
    assert "free space on that disk" in caught.value.advice
    assert "KALE_HOME" in caught.value.advice
