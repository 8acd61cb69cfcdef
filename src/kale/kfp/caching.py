"""Caching on Kubeflow: which steps may be reused, and the key of each step's code.

What KFP puts in a task's cache key
-----------------------------------
The driver (``backend/src/v2/driver/cache.go``, ``getFingerPrint``; the key itself is built by
``backend/src/v2/cacheutils/cache.go``, ``GenerateCacheKey``) hashes, with SHA-256 over the
JSON of a ``CacheKey`` message, for a task whose ``cachingOptions.enableCache`` is true:

- the **input parameters' values**, resolved (a ``{{$.pipeline_job_uuid}}`` placeholder given as
  an input is the run's id there, so such a task never hits);
- the **input artifacts by name**, and an artifact's name there is its **ML Metadata id**
  (``metadata/converter.go``, ``toRuntimeArtifact``: ``Name: strconv.FormatInt(artifact.GetId())``)
  - not its URI, not its content. A producer that runs again makes a new artifact, so everything
  that takes it misses; a producer that hits hands on the very artifacts of the execution it
  reuses (``reuseCachedOutputs``), so what takes them can hit too. An importer with
  ``reimport=False`` reuses the artifact already registered for its URI;
- the output artifacts' names, types and metadata (URIs wiped) and the output parameters' types;
- the container's **image** and its **command and arguments as the pipeline spec writes them**
  (placeholders unresolved): for a Python component that is the whole generated source and the
  ``pip install`` line of its packages;
- the names of the PVCs it mounts (since 2.15, kubeflow/pipelines#12220).

Environment variables, resources, labels and the rest of the pod are not in it. Hits are looked
up by fingerprint within the same pipeline name and namespace, newest first, among tasks that ran
with caching enabled (a task that ran with caching off leaves no entry).

``set_caching_options(True, cache_key=...)`` (kfp SDK 2.x writes ``cachingOptions.cacheKey``)
is ignored by every released backend up to 2.17.0: the driver honours it only from
kubeflow/pipelines#13762 (merged 2026-07-24, after 2.17.0), and then hashes the component's name
and that key alone, ignoring inputs, image and command. kfp.local (SDK 2.17, ``kfp/local/
cache.py``, ``local.init(enable_caching=True)``) hashes component name, image, command and
arguments, the input artifacts by name, URI and metadata, and the environment; or, given a
custom key, the component name and that key.

What Kale does
--------------
A step that takes the project bundle as an input artifact would miss every time, as the bundle is
made anew by every run (``kale-bundle`` is never cached: it stamps the run's id). So a cached
step takes instead the bundle through a task of its own, ``kale-code-<step>``, that copies the
run's bundle and writes the step's code location into the copy's metadata. That task is cached
with a custom key made of what the step runs (``code_key``); a hit hands on the copy made when
the code last changed, so its ML Metadata id changes exactly when that step's code does. The
step itself keeps KFP's own key: the code copy's id, the other steps' artifacts' ids, the
parameter values, its image, packages and (edit-stable) generated source. An edited step runs
again, with whatever depends on its outputs; every other step hits.

On a backend that ignores custom keys (up to 2.17.0), ``kale-code-<step>`` is keyed by the
run's bundle artifact, new every run: nothing hits, and nothing wrong is ever reused.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kale.graph.model import Constant, Graph, ParameterRef, Step
from kale.kfp.bundle import Bundle

#: Part of every code key: a change in how Kale keys or runs a step's code invalidates them all.
KEY_VERSION = 1


@dataclass(frozen=True)
class CachePlan:
    """Which steps a compiled pipeline lets Kubeflow reuse, and why others are not."""

    cached: frozenset[str]
    #: steps the user asked to cache that are not, with the reason, for the compile summary
    refused: tuple[tuple[str, str], ...] = ()


def _macro_parameters(graph: Graph, values: Mapping[str, Any]) -> dict[str, str]:
    """Pipeline parameters whose value (this run's, else the default) holds a run macro:
    ``[[RunUUID]]`` and ``[[CurrentTime]]`` differ every run."""
    from kale import macros

    found = {}
    for parameter in graph.parameters:
        value = values.get(parameter.name, parameter.default)
        text = json.dumps(value, default=str)
        match = macros.MACRO.search(text)
        if match:
            found[parameter.name] = match.group()
    return found


def plan(graph: Graph, flag: bool | None, values: Mapping[str, Any] | None = None) -> CachePlan:
    """The steps to cache: ``flag`` (``--cache``/``--no-cache``) for all, else each step's
    ``cache`` option. A condition is never cached (it is cheap, and its code travels in its
    component). A step given a parameter that holds a run macro is not cached: its value
    differs every run, and a cached step is not told the run's id."""
    wanted = [step for step in graph.user_steps if (step.options.cache if flag is None else flag)]
    macro = _macro_parameters(graph, values or {})
    cached, refused = set(), []
    for step in wanted:
        uses = [argument.source.name for argument in step.arguments
                if isinstance(argument.source, ParameterRef) and argument.source.name in macro]
        if uses:
            refused.append((step.name, f"its parameter `{uses[0]}` holds {macro[uses[0]]}, "
                            "which differs every run"))
            continue
        cached.add(step.name)
    return CachePlan(frozenset(cached), tuple(refused))


class CodeKeys:
    """``code_key`` for the steps of one pipeline, reading each project file once."""

    def __init__(self, graph: Graph, bundle: Bundle) -> None:
        self.graph = graph
        self.bundle = bundle
        self._digests: dict[str, str] = {}
        self._shared: str | None = None
        self._reader: Any = None
        self._root = os.path.realpath(graph.project_root)

    def _digest(self, path: str) -> str:
        if path not in self._digests:
            digest = hashlib.sha256()
            try:
                with open(path, "rb") as handle:
                    for chunk in iter(lambda: handle.read(1 << 20), b""):
                        digest.update(chunk)
            except OSError as error:
                digest.update(f"unreadable: {error.strerror}".encode())
            self._digests[path] = digest.hexdigest()
        return self._digests[path]

    def shared(self) -> str:
        """What every step's key holds: Kale's runtime as it travels in the bundle, and the
        project's files that are not Python code (settings, data: a step may read any of
        them), with the links the bundle recreates."""
        if self._shared is None:
            from kale.kfp.bundle import runtime_files

            digest = hashlib.sha256(f"kale-code-key {KEY_VERSION}\n".encode())
            for source, name in runtime_files():
                digest.update(f"{name} {self._digest(str(source))}\n".encode())
            root = self.graph.project_root
            for name in self.bundle.files:
                if not name.endswith(".py"):
                    digest.update(f"{name} {self._digest(os.path.join(root, name))}\n".encode())
            for name, target in self.bundle.links:
                digest.update(f"{name} -> {target}\n".encode())
            self._shared = digest.hexdigest()
        return self._shared

    def project_modules(self, step: Step) -> list[str]:
        """The project's Python files a step imports, followed from file to file (as
        ``kale.graph.imports`` follows them for the packages a step needs)."""
        from kale.graph.imports import ImportReader, imports_in
        from kale.source import parse_step_text

        if self._reader is None:
            self._reader = ImportReader(self.graph.project_root, dict.fromkeys(
                other.function.filename for other in self.graph.steps))
        reader = self._reader
        module = step.function.module
        package = module.rpartition(".")[0] if module and module != "__main__" else None
        pending = [found for text in (step.function.text,
                                      *(piece.text for piece in step.function.context))
                   for found in imports_in(parse_step_text(text), package)]
        files: set[str] = set()
        while pending:
            imported = pending.pop()
            kind, base = reader._kind(imported.name.split(".")[0])
            if kind != "project" or base is None:
                continue
            for dotted, path, is_package in reader._project_files(imported.name, base):
                if path not in files:
                    files.add(path)
                    pending.extend(reader._read(path, dotted, is_package))
        return sorted(files)

    def key(self, step: Step, spec: Mapping[str, Any]) -> str:
        """The key of what ``step`` runs: its code, the module-level code it runs first, the
        project modules it imports (by content), the shape of its inputs and outputs, the
        constants it is given, Kale's runtime and the project's other files.

        Line numbers are left out (an edit above the step, in the same file, must not make it
        run again), and so are the image and packages (they are in the key KFP computes for the
        step itself). The file a step's code sits in is in: a step moved to another module
        runs again."""
        root = self._root
        modules = [f"{os.path.relpath(path, root)} {self._digest(path)}"
                   for path in self.project_modules(step)]
        left_out = ["line", "lines", "context"]
        if isinstance(spec.get("lines"), str):
            # Code from outside the project's files: named by its notebook cell
            # (`Cell In[3]`), whose number changes each time the cell runs.
            left_out.append("file")
        own = {key: value for key, value in spec.items() if key not in left_out}
        content = {
            "shared": self.shared(),
            "spec": own,
            "code": step.function.text,
            "context": [piece.text for piece in step.function.context],
            "modules": modules,
            "constants": {argument.name: repr(argument.source.value)
                          for argument in step.arguments
                          if isinstance(argument.source, Constant)},
        }
        # Built in a fixed order, so the JSON is the same for the same content.
        text = json.dumps(content, separators=(",", ":"), default=repr, check_circular=False)
        return hashlib.sha256(text.encode()).hexdigest()
