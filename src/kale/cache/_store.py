"""The content-addressed store of cached outputs, under ``<Kale home>/cache``::

    entries/<k[:2]>/<key>.json       a task's result: its outputs (metadata and object), reports,
                                     the run and task that made it; its mtime is its last use
    objects/<h[:2]>/<algo>-<h><sfx>  one stored value (a file, or a folder for a Path), named by
                                     the content hash kale.marshal wrote in its metadata
    code-<python>.json               normalized hashes of code texts (a memo for keys)

An entry is written atomically, after its objects, so a reader sees a whole entry or none.
Objects are hard links of the run's output files (no data is copied; a copy only where the
file system refuses links), and a hit hard-links them into the new run's output folder, where
the run reads them as its own. A hit first checks every object against its hash: an entry
whose object was changed, truncated or removed is dropped and the task runs.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kale.cache._keys import FORMAT
from kale.marshal import atomic_write

_ENTRIES, _OBJECTS = "entries", "objects"
#: An object no entry names is removed by eviction once this old (a run storing an entry
#: links its objects before it writes the entry).
_ORPHAN_AGE = 3600.0


@dataclass
class Entry:
    """One cached result, as read from its file."""

    key: str
    path: Path
    data: dict[str, Any]
    last_used: float

    @property
    def outputs(self) -> dict[str, dict[str, Any]]:
        return self.data["outputs"]

    @property
    def reports(self) -> dict[str, Any]:
        return self.data.get("reports") or {}

    @property
    def metrics(self) -> dict[str, Any]:
        """The metrics the attempt that made the outputs logged (numbers, by name)."""
        metrics = self.data.get("metrics")
        if not isinstance(metrics, dict):
            return {}
        return {name: value for name, value in metrics.items() if isinstance(name, str) and
                type(value) in (int, float)}

    @property
    def size(self) -> int:
        return sum(int(output["meta"].get("size") or 0) for output in self.outputs.values())

    def source(self) -> dict[str, Any]:
        """Where the result came from: the run, the task, when it was made, how long it took
        (and ``resumed``: reused from the run a resumed run continues, not from the cache)."""
        return {key: self.data[key] for key in ("run", "task", "pipeline", "created",
                                                "duration", "resumed") if key in self.data}


def _valid(data: Any, key: str) -> bool:
    if not (isinstance(data, dict) and data.get("format") == FORMAT and data.get("key") == key
            and isinstance(data.get("outputs"), dict) and isinstance(data.get("run"), str)):
        return False
    for output in data["outputs"].values():
        if not (isinstance(output, dict) and isinstance(output.get("meta"), dict) and
                isinstance(output["meta"].get("hash"), str) and
                isinstance(output.get("object"), str) and isinstance(output.get("file"), str)):
            return False
        parts = output["object"].split("/")
        if len(parts) != 2 or "/" in output["file"] or any(
                part in ("", ".", "..") or "\\" in part for part in (*parts, output["file"])):
            return False
    reports = data.get("reports")
    return reports is None or isinstance(reports, dict)


def _link_tree(source: str, target: str) -> None:
    """``target`` as hard links of ``source`` (a file, or a folder of files); a copy where the
    file system refuses links (another device, a link count at its limit)."""
    if os.path.isdir(source) and not os.path.islink(source):
        os.makedirs(target)
        for entry in os.scandir(source):
            _link_tree(entry.path, os.path.join(target, entry.name))
        return
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def _remove(path: str | os.PathLike[str]) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(OSError):
            os.unlink(path)


def link_outputs(sources: dict[str, tuple[str, str, dict[str, Any]]],
                 folder: str | os.PathLike[str]) -> dict[str, dict[str, Any]] | None:
    """Outputs made elsewhere as a task's own, in its output ``folder``: for each name, the
    file (or folder) at a source path hard-linked as ``file``, checked against the content
    hash of its ``meta``, with its ``.meta.json`` written beside it. None, and nothing left in
    ``folder``, when a source is missing or does not match its hash."""
    from kale.marshal.backends import content_hash

    folder = os.fspath(folder)
    os.makedirs(folder, exist_ok=True)
    made: list[str] = []
    outputs: dict[str, dict[str, Any]] = {}
    try:
        for name, (source, file, stored) in sources.items():
            target = os.path.join(folder, file)
            _remove(target)
            _link_tree(source, target)
            made.append(target)
            if content_hash(target) != stored["hash"]:
                raise ValueError(f"{source} does not match its hash")
            meta = {**stored, "path": target}
            text = json.dumps(meta, default=str)
            meta_path = os.path.join(folder, f"{name}.meta.json")
            atomic_write(meta_path, lambda handle, text=text: handle.write(text), mode="w")
            made.append(meta_path)
            outputs[name] = meta
    except (OSError, ValueError, KeyError):
        for path in made:
            _remove(path)
        return None
    return outputs


def _object_name(meta: dict[str, Any], name: str, file: str) -> str:
    algorithm, _, digest = meta["hash"].partition(":")
    suffix = file[len(name):] if file.startswith(name) else os.path.splitext(file)[1]
    safe = "".join(char for char in f"{algorithm}-{digest}{suffix}"
                   if char.isalnum() or char in "-._")
    return f"{digest[:2] or '00'}/{safe}"


class Store:
    """The cache of one Kale home (``<home>/cache``)."""

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = Path(folder)

    def _entry_path(self, key: str) -> Path:
        return self.folder / _ENTRIES / key[:2] / f"{key}.json"

    # -- a hit ---------------------------------------------------------------------------------

    def lookup(self, key: str) -> Entry | None:
        path = self._entry_path(key)
        try:
            with open(path, "rb") as handle:
                data = json.loads(handle.read())
            last_used = os.stat(path).st_mtime
        except (OSError, ValueError):
            return None
        if not _valid(data, key):
            return None
        return Entry(key, path, data, last_used)

    def materialize(self, entry: Entry, folder: str | os.PathLike[str]
                    ) -> dict[str, dict[str, Any]] | None:
        """The entry's outputs in ``folder`` (a task's output folder), hard-linked from the
        store and each checked against its hash, with their ``.meta.json``; None (and the
        entry dropped, and nothing left in ``folder``) when an object is missing or does not
        match its hash."""
        outputs = link_outputs({
            name: (os.path.join(self.folder, _OBJECTS, output["object"]), output["file"],
                   output["meta"])
            for name, output in entry.outputs.items()}, folder)
        if outputs is None:
            self.discard(entry)
        return outputs

    def touch(self, entry: Entry) -> None:
        """Mark the entry used now (least-recently-used eviction reads this)."""
        with contextlib.suppress(OSError):
            os.utime(entry.path)

    def discard(self, entry: Entry) -> None:
        """Drop a damaged entry and the objects of it that do not match their hash."""
        from kale.marshal.backends import content_hash

        with contextlib.suppress(OSError):
            os.unlink(entry.path)
        for output in entry.outputs.values():
            path = os.path.join(self.folder, _OBJECTS, output["object"])
            try:
                damaged = content_hash(path) != output["meta"]["hash"]
            except OSError:
                damaged = True
            if damaged:
                _remove(path)

    # -- storing -------------------------------------------------------------------------------

    def put(self, key: str, outputs: dict[str, dict[str, Any]], reports: dict[str, Any] | None,
            about: dict[str, Any]) -> None:
        """Keep a task's outputs (as its run stored them, each with a content hash) under
        ``key``; ``about`` says where they came from (run, task, pipeline, duration)."""
        stored: dict[str, dict[str, Any]] = {}
        for name, meta in outputs.items():
            path = meta["path"]
            file = os.path.basename(path)
            kept = {field: value for field, value in meta.items() if field != "path"}
            object_name = _object_name(meta, name, file)
            target = os.path.join(self.folder, _OBJECTS, object_name)
            if not os.path.lexists(target):
                os.makedirs(os.path.dirname(target), exist_ok=True)
                temporary = f"{target}.{os.getpid()}.{os.urandom(4).hex()}.tmp"
                try:
                    _link_tree(path, temporary)
                    os.rename(temporary, target)  # a folder: fails if another run was first
                except OSError:
                    _remove(temporary)
                    if not os.path.lexists(target):
                        raise
            stored[name] = {"meta": kept, "object": object_name, "file": file}
        data = {"format": FORMAT, "key": key, "outputs": stored, "reports": reports or {},
                "created": time.time(), **about}
        text = json.dumps(data, default=str)
        atomic_write(self._entry_path(key), lambda handle: handle.write(text), mode="w")

    # -- listing, eviction, clearing -----------------------------------------------------------

    def entries(self) -> list[Entry]:
        """Every readable entry, least recently used first."""
        found = []
        for path in (self.folder / _ENTRIES).glob("*/*.json"):
            key = path.stem
            entry = self.lookup(key)
            if entry is not None:
                found.append(entry)
        return sorted(found, key=lambda entry: entry.last_used)

    def _objects(self) -> dict[str, tuple[int, float]]:
        """Every object: its size in bytes and modification time."""
        found = {}
        root = self.folder / _OBJECTS
        for shard in _scan(root):
            for entry in _scan(shard.path):
                if entry.name.endswith(".tmp"):
                    continue
                try:
                    stat = entry.stat(follow_symlinks=False)
                    size = _tree_size(entry.path) if entry.is_dir(follow_symlinks=False) \
                        else stat.st_size
                except OSError:
                    continue
                found[f"{shard.name}/{entry.name}"] = (size, stat.st_mtime)
        return found

    def usage(self) -> tuple[int, int]:
        """How many entries, and the bytes their objects take (each object counted once)."""
        entries = self.entries()
        return len(entries), sum(size for size, _ in self._objects().values())

    def evict(self, max_size: int) -> tuple[int, int]:
        """Remove least recently used entries until the objects take at most ``max_size``
        bytes, and objects no entry names; returns (entries removed, bytes freed)."""
        return self._prune(lambda entries, total: max_size, keep_orphans_younger=_ORPHAN_AGE)

    def clear(self, older_than: float | None = None) -> tuple[int, int]:
        """Remove every entry (or those last used more than ``older_than`` seconds ago) and
        the objects no remaining entry names; returns (entries removed, bytes freed)."""
        if older_than is None:
            count, size = self.usage()
            for name in (_ENTRIES, _OBJECTS):
                shutil.rmtree(self.folder / name, ignore_errors=True)
            for memo in self.folder.glob("code-*.json"):
                _remove(memo)
            return count, size
        cutoff = time.time() - older_than
        return self._prune(None, cutoff=cutoff, keep_orphans_younger=_ORPHAN_AGE)

    def _prune(self, cap: Any, cutoff: float | None = None,
               keep_orphans_younger: float = 0.0) -> tuple[int, int]:
        entries = self.entries()
        objects = self._objects()
        names: dict[str, int] = {}
        for entry in entries:
            for output in entry.outputs.values():
                names[output["object"]] = names.get(output["object"], 0) + 1
        removed, freed = 0, 0
        now = time.time()
        for name, (size, mtime) in list(objects.items()):
            if name not in names and now - mtime >= keep_orphans_younger:
                _remove(self.folder / _OBJECTS / name)
                del objects[name]
                freed += size
        total = sum(size for size, _ in objects.values())
        limit = cap(entries, total) if cap is not None else None
        for entry in entries:  # least recently used first
            if cutoff is not None:
                if entry.last_used >= cutoff:
                    break
            elif limit is None or total <= limit:
                break
            with contextlib.suppress(OSError):
                os.unlink(entry.path)
            removed += 1
            for output in entry.outputs.values():
                name = output["object"]
                names[name] -= 1
                if names[name] == 0 and name in objects:
                    _remove(self.folder / _OBJECTS / name)
                    size = objects.pop(name)[0]
                    total -= size
                    freed += size
        return removed, freed


def _scan(folder: str | os.PathLike[str]) -> list[os.DirEntry[str]]:
    try:
        return list(os.scandir(folder))
    except OSError:
        return []


def _tree_size(folder: str) -> int:
    return sum(os.path.getsize(os.path.join(root, name))
               for root, _, names in os.walk(folder) for name in names)
