"""A long frame with columns of Python strings is written with those columns in slices
(``kale.marshal.backends.STRING_SLICE_ROWS``), so that writing it does not hold their whole
Arrow copy: it comes back exactly as a frame written whole, its other columns still mapped."""

from __future__ import annotations

import pytest

from kale import marshal
from kale.marshal import backends
from kale.marshal.backends import content_hash
from tests.marshal.test_mapped import MAPPED_COLUMNS, a_frame, backing, mapped

np = pytest.importorskip("numpy")
pd = pytest.importorskip("pandas")
pytest.importorskip("pyarrow")


@pytest.fixture(autouse=True)
def short_slices(monkeypatch):
    monkeypatch.setattr(backends, "STRING_SLICE_ROWS", 7)


def round_trip(value, folder, name="v"):
    stored = marshal.save(value, folder, name)
    return stored, marshal.load(stored.to_json())


def test_a_frame_with_strings_in_slices_comes_back_exactly_with_the_rest_mapped(tmp_path):
    frame = a_frame(100)
    frame.insert(0, "first", np.array(["a", None, "ü" * 40], dtype=object)[np.arange(100) % 3])
    frame["late"] = [None] * 50 + [f"s{i}" for i in range(50)]  # slices of nulls only, then not
    frame["empty"] = np.array([None] * 100, dtype=object)
    stored, loaded = round_trip(frame, tmp_path)
    assert stored.extra["strings"]["columns"] == [0, 10, 12, 13]
    pd.testing.assert_frame_equal(loaded, frame, check_exact=True, check_freq=False)
    assert list(loaded.columns) == list(frame.columns)
    for name in MAPPED_COLUMNS:
        assert mapped(backing(loaded[name])), name
    assert content_hash(stored.path) == stored.extra["hash"]


def test_changing_it_in_place_leaves_the_stored_one_unchanged(tmp_path):
    frame = a_frame(30)
    stored, loaded = round_trip(frame, tmp_path)
    loaded.loc[loaded.index[0], "id"] = -1
    loaded.loc[loaded.index[1], "name"] = "changed"
    loaded.loc[loaded.index[2], "group"] = "c"
    pd.testing.assert_frame_equal(marshal.load(stored.to_json()), frame, check_exact=True,
                                  check_freq=False)


@pytest.mark.parametrize("index", ["range", "strings", "multi"])
def test_only_string_columns_and_any_index(tmp_path, index):
    rows = 20
    indexes = {"range": pd.RangeIndex(5, 5 + 2 * rows, 2, name="n"),
               "strings": pd.Index([f"r{i}" for i in range(rows)], name="row"),
               "multi": pd.MultiIndex.from_arrays([np.arange(rows) % 3, np.arange(rows)],
                                                  names=["a", "b"])}
    frame = pd.DataFrame({"x": [f"v{i}" for i in range(rows)],
                          "y": [None if i % 4 else "w" for i in range(rows)]},
                         index=indexes[index])
    _, loaded = round_trip(frame, tmp_path)
    pd.testing.assert_frame_equal(loaded, frame, check_exact=True)


def test_a_series_of_strings_and_column_labels_that_are_not_strings(tmp_path):
    series = pd.Series([f"t{i}" if i % 5 else None for i in range(23)], name=("a", 1))
    _, loaded = round_trip(series, tmp_path, "s")
    pd.testing.assert_series_equal(loaded, series, check_exact=True)
    frame = pd.DataFrame({1: np.arange(23), 2.5: [str(i) for i in range(23)]})
    _, loaded = round_trip(frame, tmp_path, "f")
    pd.testing.assert_frame_equal(loaded, frame, check_exact=True)


def test_a_short_frame_is_written_as_one_arrow_file(tmp_path, monkeypatch):
    monkeypatch.setattr(backends, "STRING_SLICE_ROWS", 1000)
    stored, loaded = round_trip(a_frame(100), tmp_path)
    assert "strings" not in stored.extra
    import pyarrow.feather

    pd.testing.assert_frame_equal(pyarrow.feather.read_feather(stored.path), loaded,
                                  check_exact=True)
