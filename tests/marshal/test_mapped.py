"""Frames and arrays come back as views of the stored file: exactly the values written (dtypes,
index, categories, time zones, NaN bits), and a reader that changes them in place changes its
own copy, never the stored value. Large writes hash on another thread: the hash is still the
file's."""

from __future__ import annotations

import mmap

import pytest

from kale import marshal
from kale.marshal.backends import content_hash

np = pytest.importorskip("numpy")
pd = pytest.importorskip("pandas")
pytest.importorskip("pyarrow")


def mapped(array) -> bool:
    """Whether the array's memory is a memory map (somewhere down its chain of bases)."""
    base = array
    while base is not None:
        if isinstance(base, mmap.mmap):
            return True
        base = getattr(base, "base", None) if not isinstance(base, memoryview) else base.obj
    return False


def a_frame(rows: int = 1000):
    rng = np.random.default_rng(0)
    value = rng.random(rows)
    value[::7] = np.nan
    return pd.DataFrame({
        "id": np.arange(rows, dtype="int64"),
        "small": np.arange(rows, dtype="int8"),
        "value": value,
        "f32": rng.random(rows).astype("float32"),
        "when": pd.date_range("2026-01-01", periods=rows, freq="s"),
        "zoned": pd.date_range("2026-03-29", periods=rows, freq="min", tz="Europe/Athens"),
        "waited": pd.to_timedelta(np.arange(rows), unit="ms"),
        "group": pd.Categorical.from_codes(rng.integers(0, 3, rows), ["b", "a", "c"],
                                           ordered=True),
        "flag": rng.random(rows) > 0.5,
        "name": np.array(["x", "y", None, "zé"], dtype=object)[rng.integers(0, 4, rows)],
        "maybe": pd.array([1, None] * (rows // 2), dtype="Int64"),
    }, index=pd.date_range("2020-01-01", periods=rows, freq="D", tz="UTC", name="day"))
    # (Arrow keeps no index frequency: a DatetimeIndex comes back with freq=None, as before)


MAPPED_COLUMNS = ["id", "small", "value", "f32", "when", "zoned", "waited", "group"]


def backing(series):
    """The numpy array holding a column's values (a categorical's codes: pandas' public
    ``.cat.codes`` is a read-only view of them, whatever holds them)."""
    return series.array._ndarray if hasattr(series.array, "_ndarray") else series.to_numpy()


def test_a_frame_comes_back_exactly_with_its_numeric_columns_mapped(tmp_path):
    frame = a_frame()
    stored = marshal.save(frame, tmp_path, "f")
    assert stored.backend == "arrow"
    loaded = marshal.load(stored.to_json())
    pd.testing.assert_frame_equal(loaded, frame, check_exact=True, check_freq=False)
    assert list(loaded.dtypes) == list(frame.dtypes)
    assert loaded.index.equals(frame.index) and str(loaded.index.tz) == "UTC"
    assert loaded.index.name == "day"
    assert str(loaded["zoned"].dt.tz) == "Europe/Athens"
    assert list(loaded["group"].cat.categories) == ["b", "a", "c"]
    assert loaded["group"].cat.ordered
    # NaN stays NaN, bit for bit (not turned into a missing value and back)
    assert (loaded["value"].to_numpy().view("u8") == frame["value"].to_numpy().view("u8")).all()
    for name in MAPPED_COLUMNS:
        array = backing(loaded[name])
        assert mapped(array), name
        assert array.flags.writeable, name
    assert content_hash(stored.path) == stored.extra["hash"]


def test_a_frame_changed_in_place_leaves_the_stored_one_unchanged(tmp_path):
    frame = a_frame()
    stored = marshal.save(frame, tmp_path, "f")
    loaded = marshal.load(stored.to_json())
    # what pandas users write: in-place assignments of every mapped kind
    loaded.loc[loaded.index[0], "id"] = -1
    loaded.iloc[1, loaded.columns.get_loc("value")] = 123.0
    loaded.loc[loaded.index[2], "zoned"] = pd.Timestamp("2000-01-01", tz="Europe/Athens")
    loaded.loc[loaded.index[3], "group"] = "c"
    loaded.loc[loaded.index[4], "waited"] = pd.Timedelta("1D")
    loaded["small"].to_numpy()[5] = 99
    loaded.fillna({"value": 0.0}, inplace=True)
    loaded.iloc[:, 3] *= 2
    assert loaded["id"].iloc[0] == -1 and loaded["value"].iloc[1] == 123.0
    assert loaded["group"].iloc[3] == "c"
    again = marshal.load(stored.to_json())
    pd.testing.assert_frame_equal(again, frame, check_exact=True, check_freq=False)
    assert content_hash(stored.path) == stored.extra["hash"]


def test_a_series_comes_back_mapped_and_writable(tmp_path):
    series = pd.Series(np.arange(100.0), name="price",
                       index=pd.Index([f"r{i}" for i in range(100)], name="row"))
    stored = marshal.save(series, tmp_path, "s")
    loaded = marshal.load(stored.to_json())
    pd.testing.assert_series_equal(loaded, series, check_exact=True)
    assert mapped(loaded.to_numpy())
    loaded.iloc[0] = -5.0
    loaded.loc["r1"] += 1
    pd.testing.assert_series_equal(marshal.load(stored.to_json()), series, check_exact=True)


def test_passing_a_loaded_frame_on_stores_it_again(tmp_path):
    frame = a_frame(50)
    loaded = marshal.load(marshal.save(frame, tmp_path, "a").to_json())
    loaded.loc[loaded.index[0], "id"] = 7
    again = marshal.load(marshal.save(loaded, tmp_path, "b").to_json())
    assert again["id"].iloc[0] == 7
    pd.testing.assert_frame_equal(again.iloc[1:], frame.iloc[1:], check_exact=True,
                                  check_freq=False)


@pytest.mark.parametrize("rows", [0, 1])
def test_tiny_frames(tmp_path, rows):
    frame = a_frame(2).iloc[:rows]
    loaded = marshal.load(marshal.save(frame, tmp_path, "f").to_json())
    pd.testing.assert_frame_equal(loaded, frame, check_exact=True, check_freq=False)


def test_an_array_changed_in_place_leaves_the_stored_one_unchanged(tmp_path):
    array = np.arange(1000, dtype="float64").reshape(10, 100)
    stored = marshal.save(array, tmp_path, "a")
    loaded = marshal.load(stored.to_json())
    assert mapped(loaded) and loaded.flags.writeable
    loaded[0, 0] = -1
    loaded += 1
    again = marshal.load(stored.to_json())
    assert (again == array).all() and again.dtype == array.dtype
    assert content_hash(stored.path) == stored.extra["hash"]


def test_large_writes_are_hashed_as_the_file(tmp_path, monkeypatch):
    """Writes above the threshold are hashed on another thread: same hash as the file's."""
    import kale.marshal.backends as backends

    monkeypatch.setattr(backends, "_PARALLEL_HASH_BYTES", 1024)
    linear = pytest.importorskip("sklearn.linear_model")
    model = linear.LinearRegression().fit(np.arange(20_000.0).reshape(-1, 2), np.ones(10_000))
    model.coef_ = np.arange(5_000.0)  # pickled as a PickleBuffer: written without a copy
    values = {"array": np.arange(10_000, dtype="int32"), "frame": a_frame(2000),
              "bytes": np.arange(100_000, dtype="uint8").tobytes(), "model": model}
    for name, value in values.items():
        stored = marshal.save(value, tmp_path, name)
        assert stored.extra["hash"] == content_hash(stored.path), name
        assert marshal.load(stored.to_json()) is not None
        monkeypatch.setattr(backends, "_PARALLEL_HASH_BYTES", 1 << 40)
        assert marshal.save(value, tmp_path / "serial", name).extra["hash"] == \
            stored.extra["hash"], name
        monkeypatch.setattr(backends, "_PARALLEL_HASH_BYTES", 1024)
