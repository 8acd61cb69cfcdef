"""The content-addressed store: entries, hard-linked objects, integrity, eviction, clearing."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from kale import marshal
from kale.cache import Store, format_size, parse_size, read_settings
from kale.errors import KaleError


def saved(folder: Path, name: str, value) -> dict:
    return marshal.save(value, folder, name).to_json()


@pytest.fixture
def store(tmp_path):
    return Store(tmp_path / "cache")


def put(store, tmp_path, key, value, run="run-1", task="t"):
    outputs = {"out": saved(tmp_path / run / task, "out", value)}
    store.put(key, outputs, {"items:out": ["x"]}, {"run": run, "task": task, "pipeline": "p"})
    return outputs


def test_a_hit_links_the_outputs_without_copying(store, tmp_path):
    original = put(store, tmp_path, "k1", b"x" * 100_000)
    entry = store.lookup("k1")
    assert entry is not None and entry.reports == {"items:out": ["x"]}
    assert entry.source()["run"] == "run-1"
    outputs = store.materialize(entry, tmp_path / "run-2" / "t")
    path = Path(outputs["out"]["path"])
    assert path.parent == tmp_path / "run-2" / "t"
    assert path.stat().st_ino == Path(original["out"]["path"]).stat().st_ino
    assert marshal.load(outputs["out"]) == b"x" * 100_000
    meta = json.loads((tmp_path / "run-2" / "t" / "out.meta.json").read_text())
    assert meta["path"] == str(path)
    assert store.lookup("nope") is None


def test_a_folder_output_is_linked_file_by_file(store, tmp_path):
    made = tmp_path / "made" / "model"
    (made / "sub").mkdir(parents=True)
    (made / "weights.bin").write_bytes(b"w" * 1000)
    (made / "sub" / "config.json").write_text("{}")
    put(store, tmp_path, "k", made)
    outputs = store.materialize(store.lookup("k"), tmp_path / "run-2" / "t")
    value = marshal.load(outputs["out"])
    assert (value / "weights.bin").read_bytes() == b"w" * 1000
    assert (value / "sub" / "config.json").read_text() == "{}"


def test_identical_outputs_are_stored_once(store, tmp_path):
    put(store, tmp_path, "k1", [1, 2, 3], task="a")
    put(store, tmp_path, "k2", [1, 2, 3], task="b")
    objects = list((tmp_path / "cache" / "objects").glob("*/*"))
    assert len(objects) == 1
    assert store.usage() == (2, objects[0].stat().st_size)


@pytest.mark.parametrize("damage", ["change", "truncate", "remove"])
def test_a_damaged_object_is_never_used(store, tmp_path, damage):
    put(store, tmp_path, "k", list(range(100)))
    entry = store.lookup("k")
    obj = tmp_path / "cache" / "objects" / entry.outputs["out"]["object"]
    # the run's own file is a link of the object: replace it so that the run keeps its copy
    data = obj.read_bytes()
    obj.unlink()
    if damage == "change":
        obj.write_bytes(data.replace(b"99", b"98"))
    elif damage == "truncate":
        obj.write_bytes(data[:10])
    target = tmp_path / "run-2" / "t"
    assert store.materialize(entry, target) is None
    assert list(target.iterdir()) == []  # nothing half-made is left
    assert store.lookup("k") is None  # the entry is dropped
    assert not obj.exists()


@pytest.mark.parametrize("text", ["", "{", '{"format": 1}', "[]",
                                  '{"format": 999, "key": "k", "outputs": {}, "run": "r"}'])
def test_an_unreadable_or_foreign_entry_is_a_miss(store, tmp_path, text):
    path = tmp_path / "cache" / "entries" / "k" / "k.json"
    path.parent.mkdir(parents=True)
    path.write_text(text)
    assert store.lookup("k") is None


def test_an_entry_cannot_point_outside_the_store(store, tmp_path):
    put(store, tmp_path, "k", 1)
    path = tmp_path / "cache" / "entries" / "k" / "k.json"
    data = json.loads(path.read_text())
    data["outputs"]["out"]["object"] = "../../../etc/passwd"
    path.write_text(json.dumps(data))
    assert store.lookup("k") is None


def test_eviction_removes_the_least_recently_used_first(store, tmp_path):
    for number, key in enumerate(("old", "used", "new")):
        put(store, tmp_path, key, bytes([number]) * 1000, task=key)
        stamp = time.time() - 1000 + number * 10
        os.utime(store.lookup(key).path, (stamp, stamp))
    store.touch(store.lookup("used"))  # used now: the most recent
    one = store.lookup("new").size
    removed, freed = store.evict(int(2.5 * one))
    assert (removed, freed) == (1, one)
    assert store.lookup("old") is None
    assert store.lookup("used") is not None and store.lookup("new") is not None
    assert store.evict(10**9) == (0, 0)


def test_clear_all_or_older_than(store, tmp_path):
    put(store, tmp_path, "a", 1, task="a")
    put(store, tmp_path, "b", 2, task="b")
    stamp = time.time() - 8 * 86400
    os.utime(store.lookup("a").path, (stamp, stamp))
    assert store.clear(older_than=7 * 86400)[0] == 1
    assert store.lookup("a") is None and store.lookup("b") is not None
    assert store.clear()[0] == 1
    assert store.usage() == (0, 0)


def test_sizes():
    assert parse_size("10GB") == 10 * 1000**3
    assert parse_size("1.5GiB") == int(1.5 * 1024**3)
    assert parse_size("500 mb") == 500 * 1000**2
    assert parse_size(1234) == 1234 and parse_size("1234") == 1234
    assert parse_size("lots") is None and parse_size(-1) is None and parse_size(True) is None
    assert format_size(1234567) == "1.2 MB"


def test_settings_from_pyproject(tmp_path):
    assert read_settings(tmp_path)["max_size"] == 10 * 1000**3
    (tmp_path / "pyproject.toml").write_text('[tool.kale.cache]\nmax_size = "2GB"\n')
    assert read_settings(tmp_path) == {"max_size": 2 * 1000**3}
    (tmp_path / "pyproject.toml").write_text('[tool.kale.cache]\nmax_sise = "2GB"\n')
    with pytest.raises(KaleError) as raised:
        read_settings(tmp_path)
    assert "unknown setting `max_sise`" in str(raised.value)
    assert raised.value.fix == "did you mean `max_size`?"
    assert raised.value.location.line == 2


def test_compiling_accepts_a_cache_table(tmp_path):
    from kale.kfp.pyproject import kale_settings

    (tmp_path / "pyproject.toml").write_text('[tool.kale.cache]\nmax_size = "2GB"\n')
    kale_settings(tmp_path)
