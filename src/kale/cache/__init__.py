"""Step caching: cache keys, and the content-addressed store of outputs under ``.kale/cache``.

A task whose step has caching on (``@step(cache=True)``, ``steps_defaults={"cache": True}``,
or ``--cache`` for the whole run; ``--no-cache`` turns it off for every step) is looked up by
its key before it starts: on a hit its outputs (and the item tokens or the branch it reported)
are hard-linked from the store into the run and it is recorded as ``cached``; on a miss it
runs, and when it succeeds its outputs are kept under its key. A failed or timed-out attempt
is never kept.

Every task gets a key, cached or not, recorded in ``run.json`` (``"key"``): resuming a run is
a lookup of the same keys restricted to that run's record (a ``Source`` other than the
``Store``: anything with ``lookup(key)``, ``materialize(entry, folder)`` and ``touch(entry)``).

The key (``KeyBuilder``) covers the step's code and module context by syntax tree (comments and
formatting left out), the content of the project modules it imports, its inputs by content
hash, ``limits``, the versions of the installed packages it imports, Python's and Kale's
versions and the cache's format. The README's *Caching* section lists it in full.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Protocol

from kale.cache._keys import FORMAT, CodeHashes, KeyBuilder, Packages, stored_identity
from kale.cache._settings import (
    DEFAULT_MAX_SIZE,
    SIZE_HELP,
    format_size,
    parse_size,
    read_settings,
)
from kale.cache._store import Entry, Store, link_outputs

__all__ = ["DEFAULT_MAX_SIZE", "FORMAT", "SIZE_HELP", "CodeHashes", "Entry", "KeyBuilder",
           "Packages", "RunCache", "Source", "Store", "cache_folder", "format_size", "link_outputs",
           "parse_size", "read_settings", "stored_identity", "varying_macros"]


def cache_folder(home: str | os.PathLike[str]) -> Path:
    """Where the cache of a Kale home is (``<home>/cache``)."""
    return Path(home) / "cache"


class Source(Protocol):
    """Where hits come from: the store, or (to resume) one run's record."""

    def lookup(self, key: str) -> Entry | None: ...

    def materialize(self, entry: Entry, folder: str | os.PathLike[str]
                    ) -> dict[str, dict[str, Any]] | None: ...

    def touch(self, entry: Entry) -> None: ...


#: The macros whose value changes from one run to the next (``[[Index]]`` is always 1).
_VARYING = ("[[RunUUID]]", "[[CurrentTime", "[[ScheduledTime")


def varying_macros(value: Any) -> list[str]:
    """The macros in a parameter's value that differ from run to run, as written."""
    if not isinstance(value, str) or "[[" not in value:
        return []
    import re

    return [match.group(0) for match in re.finditer(r"\[\[[^\]]*\]\]", value)
            if match.group(0).startswith(_VARYING)]


class RunCache:
    """The cache as one local run uses it: which tasks are cached, their keys, hits, and the
    results kept. Nothing here fails a run: a key that cannot be computed, or a store that
    cannot be written, makes the task run (and not be kept), with a warning."""

    def __init__(self, graph: Any, home: str | os.PathLike[str], run_cache: bool | None,
                 sources: list[Source] | None = None, resumed: Source | None = None,
                 forced: frozenset[str] = frozenset()) -> None:
        self.graph = graph
        self.run_cache = run_cache
        self.folder = cache_folder(home)
        defaults = graph.options.steps_defaults.get("cache")
        self.enabled_steps = frozenset(
            step.name for step in graph.steps
            if (run_cache if run_cache is not None else
                (step.options.cache if step.condition is None else defaults)))
        self.store = Store(self.folder)
        self.sources: list[Source] = sources if sources is not None else [self.store]
        # Resuming: the run resumed is looked in first, for every step but the ``forced``
        # (--from STEP: it and what follows it run whatever the record or the cache hold).
        self.resumed = resumed
        self.forced = forced
        # Every task gets a key (a resumed run compares them), so every run keeps the memo of
        # code hashes: the next one does not walk the syntax trees of unchanged code again.
        self.keys = KeyBuilder(graph, CodeHashes(self.folder))
        self.stored = 0
        self.warned = False
        self.settings = read_settings(graph.project_root) if self.enabled_steps else {}

    def enabled(self, step_name: str) -> bool:
        """Whether the step's results are kept in (and looked up in) the cache."""
        return step_name in self.enabled_steps

    def looks_up(self, step_name: str) -> bool:
        """Whether a task of the step may be finished without running: from the run being
        resumed, or from the cache."""
        if step_name in self.forced:
            return False
        return self.resumed is not None or self.enabled(step_name)

    def key(self, step: Any, inputs: dict[str, tuple[str, Any]]) -> str | None:
        try:
            return self.keys.key(step, inputs)
        except Exception as error:  # an unreadable file, a value with a failing repr
            self._warn(f"no cache key for step `{step.name}`: {type(error).__name__}: {error}")
            return None

    def hit(self, key: str, folder: str | os.PathLike[str], step_name: str | None = None
            ) -> tuple[Entry, dict[str, dict[str, Any]]] | bool | None:
        """The entry of ``key`` and its outputs, in ``folder``; None on a miss, False when
        an entry was found damaged (and dropped). With ``step_name``, only the sources that
        step may use (``looks_up``)."""
        sources = self.sources
        if step_name is not None:
            if step_name in self.forced:
                return None
            sources = ([self.resumed] if self.resumed is not None else []) + (
                self.sources if self.enabled(step_name) else [])
        for source in sources:
            try:
                entry = source.lookup(key)
                if entry is None:
                    continue
                outputs = source.materialize(entry, folder)
            except OSError as error:
                self._warn(f"the cache could not be read: {error}")
                return None
            if outputs is None:
                return False
            source.touch(entry)
            return entry, outputs
        return None

    def keep(self, key: str, outputs: dict[str, dict[str, Any]],
             reports: dict[str, Any] | None, about: dict[str, Any]) -> None:
        try:
            self.store.put(key, outputs, reports, about)
        except (OSError, KeyError, TypeError, ValueError) as error:
            self._warn(f"the outputs of `{about.get('task')}` could not be cached: {error}")
            return
        self.stored += 1

    def finish(self) -> None:
        """At the end of the run: keep the code-hash memo, and evict least recently used
        entries past the size cap when this run added any."""
        self.keys.code.save()
        if self.stored:
            try:
                self.store.evict(self.settings.get("max_size", DEFAULT_MAX_SIZE))
            except OSError as error:
                self._warn(f"the cache could not be trimmed: {error}")

    def _warn(self, message: str) -> None:
        if not self.warned or os.environ.get("KALE_DEBUG"):
            sys.stderr.write(f"warning: {message}\n")
            self.warned = True

    def macro_note(self, given: dict[str, Any]) -> str | None:
        """One line for the run's output when a parameter holding a macro that changes every
        run reaches cached steps: their keys differ from run to run."""
        reached: dict[str, list[str]] = {}
        for name, value in given.items():
            macros = varying_macros(value)
            if not macros:
                continue
            users = {step.name for step in self.graph.steps
                     if any(_uses(source, name) for source in step.references())
                     or any(_scope_uses(scope, name) for scope in step.scopes)}
            hit = set(users)
            for user in users:
                hit |= self.graph.descendants(user)
            cached = [step.name for step in self.graph.steps
                      if step.name in hit and step.name in self.enabled_steps]
            if cached:
                reached[f"`{name}` ({', '.join(macros)})"] = cached
        if not reached:
            return None
        names = "; ".join(f"{parameter} reaches {_listed(steps)}"
                          for parameter, steps in reached.items())
        plural = "s hold" if len(reached) > 1 else " holds"
        return (f"kale: parameter{plural} a macro whose value changes every run, so the cached "
                f"steps it reaches get a new key each run and are not reused: {names}")


def _uses(source: Any, parameter: str) -> bool:
    from kale.graph.model import ItemRef, ParameterRef

    if isinstance(source, ParameterRef):
        return source.name == parameter
    if isinstance(source, ItemRef):
        return _uses(source.items, parameter)
    return False


def _scope_uses(scope: Any, parameter: str) -> bool:
    from kale.graph.model import Loop

    return isinstance(scope, Loop) and _uses(scope.items, parameter)


def _listed(steps: list[str]) -> str:
    shown = ", ".join(f"`{step}`" for step in steps[:5])
    return shown + (f" and {len(steps) - 5} more" if len(steps) > 5 else "")
