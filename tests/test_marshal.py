"""Values to files and back: backends by type, fallbacks, errors, atomic writes."""

from __future__ import annotations

import threading

import pytest

from kale import marshal


@pytest.mark.parametrize(("value", "backend"), [
    ({"a": [1, 2.5, None, True, "x"]}, "json"),
    ((1, 2), "pickle"),          # JSON would turn the tuple into a list
    ({1: "a"}, "pickle"),        # ... and the int key into a string
    (float("nan"), "pickle"),
    (10 ** 5000, "pickle"),      # too long for JSON's int conversion
    ({1, 2}, "pickle"),
], ids=["plain", "tuple", "int-keys", "nan", "huge-int", "set"])
def test_plain_values_round_trip_exactly(tmp_path, value, backend):
    stored = marshal.save(value, tmp_path, "v")
    assert stored.backend == backend
    loaded = marshal.load(stored.to_json())
    if value != value:  # NaN
        assert loaded != loaded
    else:
        assert loaded == value and type(loaded) is type(value)


def test_numpy_arrays_and_their_subclasses(tmp_path):
    np = pytest.importorskip("numpy")
    array = np.arange(10.0)
    stored = marshal.save(array, tmp_path, "a")
    assert stored.backend == "npy"
    mapped = marshal.load(stored.to_json())
    assert isinstance(mapped, np.memmap) and (mapped == array).all()
    again = marshal.save(mapped[:3], tmp_path, "b")  # a memmap passed on stays .npy
    assert again.backend == "npy"
    structured = np.array([(1, "a")], dtype=[("x", int), ("y", object)])
    assert marshal.save(structured, tmp_path, "c").backend == "pickle"
    assert marshal.save(np.array([object()]), tmp_path, "d").backend == "pickle"


@pytest.mark.parametrize(("value", "advice"), [
    ((i for i in range(3)), "return a list instead of a generator"),
    (threading.Lock(), "locks, threads, sockets and connections"),
])
def test_values_that_cannot_be_stored(tmp_path, value, advice):
    with pytest.raises(marshal.MarshalError) as caught:
        marshal.save(value, tmp_path, "v")
    assert advice in caught.value.advice
    assert not list(tmp_path.glob("*.tmp")) and not list(tmp_path.glob(".*"))


def test_open_files_are_refused(tmp_path):
    with open(__file__) as handle, pytest.raises(marshal.MarshalError) as caught:
        marshal.save(handle, tmp_path, "v")
    assert "return the file's path" in caught.value.advice


def test_a_missing_library_is_named(tmp_path):
    stored = {"path": str(tmp_path / "x.npy"), "backend": "npy", "type": "numpy.ndarray",
              "size": 1}
    (tmp_path / "x.npy").write_bytes(b"")
    import sys

    saved = sys.modules.get("numpy")
    sys.modules["numpy"] = None  # makes `import numpy` fail as if it were not installed
    try:
        with pytest.raises(marshal.MarshalError, match="needs the `numpy` library"):
            marshal.load(stored)
    finally:
        if saved is None:
            del sys.modules["numpy"]
        else:
            sys.modules["numpy"] = saved
