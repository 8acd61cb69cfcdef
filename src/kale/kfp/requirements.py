"""What a step's container needs: its base image and the Python packages to install.

"No module named ..." in a cluster step is the most common complaint about Kale-like tools.
For the whole pipeline Kale decides, most specific first:

1. ``--image`` / ``--requirements FILE`` on the command line;
2. ``KALE_IMAGE`` / ``KALE_REQUIREMENTS`` (a file) / ``KALE_INSTALL=0`` in the environment;
3. ``[tool.kale]`` in the project's ``pyproject.toml``: ``image = "..."``,
   ``requirements = ["pandas==2.2.3", ...]``;
4. the project's own declaration: ``requirements.txt`` in the project root, else
   ``[project] dependencies`` in its ``pyproject.toml``;
5. otherwise, inferred step by step. A step needs the libraries its own code imports, those the
   project's modules it imports import in turn, and those of every step upstream of it (a step
   handed a DataFrame needs pandas to read it, whether or not it imports pandas). They are
   mapped to the installed distributions and pinned to the versions installed here (without a
   local label such as ``+cpu``, which PyPI does not serve). Modules of the project itself are
   never turned into package names, and Kale's own runtime travels in the bundle. An import
   that is not installed here cannot be mapped, and is reported.

Requirement files and ``requirements`` lists are read as pip reads a requirements file: ``-r``
includes (relative to the including file), ``\\`` continuations, ``#`` comments (at the start of
a line or after a space, so a URL keeps its ``#sha256=`` fragment), and ``-i`` /
``--index-url`` / ``--extra-index-url``, which become the steps' package indexes. Options that
cannot apply to the steps are ignored with a warning, or refused when ignoring them would
install something else.

A step may then have its own ``[tool.kale.steps.<name>]`` table, named by its step name or by its
function's name (which applies to every call of that function). Its ``image`` replaces the
pipeline's for that step, and its ``requirements`` are added to the pipeline's (a distribution
named in both takes the step's version). Two tables that name one step are an error. The image
defaults to the official Python image of the local Python version.
"""

from __future__ import annotations

import contextlib
import difflib
import os
import sys
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kale.errors import KaleError
from kale.graph.model import Graph
from kale.kfp.pyproject import Pyproject, project_dependencies, read_settings
from kale.kfp.requirement_files import (
    Declared,
    RequirementsWarning,
    distribution_name,
    read_requirements_file,
    read_requirements_list,
)

# Travel in the bundle, or come with kfp's own component bootstrap: never installed.
_PROVIDED = {"kale", "cloudpickle", "kfp", "rok_common"}

@dataclass(frozen=True)
class Environment:
    image: str
    packages: tuple[str, ...]
    source: str  # where the packages came from, for the message at compile time
    #: The package indexes, in the order of kfp's ``pip_index_urls``: the index first, then the
    #: extra ones. Empty: PyPI alone.
    index_urls: tuple[str, ...] = ()


@dataclass(frozen=True)
class Environments:
    """The pipeline's environment, and each step's (which differs only where configured, or
    where packages are inferred from what that step needs)."""

    pipeline: Environment
    steps: dict[str, Environment] = field(default_factory=dict)
    #: whether steps install anything: False with --no-install (``install = false``), where
    #: the image must hold kfp and the steps' packages, and each step checks them at its start
    install: bool = True

    def of(self, step: str) -> Environment:
        return self.steps.get(step, self.pipeline)

    # The pipeline-wide view, as before per-step environments existed.
    @property
    def image(self) -> str:
        return self.pipeline.image

    @property
    def packages(self) -> tuple[str, ...]:
        return self.pipeline.packages

    @property
    def source(self) -> str:
        return self.pipeline.source

    @property
    def index_urls(self) -> tuple[str, ...]:
        return self.pipeline.index_urls


# -- inference -----------------------------------------------------------------------------------

def _public_version(version: str) -> str:
    """A version without its local label ("2.4.0+cpu" -> "2.4.0"): indexes such as PyPI serve
    no local versions, and the public release is what a step can install."""
    return version.split("+", 1)[0]


def _top(module: str) -> str:
    return module.split(".", 1)[0]


def _needed(modules: Iterable[str]) -> tuple[str, ...]:
    return tuple(module for module in modules  # never modules of the project
                 if _top(module) not in sys.stdlib_module_names
                 and _top(module) not in _PROVIDED)


class _Distributions:
    """Which installed distribution provides an imported module, and its version."""

    def __init__(self, needed: bool) -> None:
        from importlib.metadata import packages_distributions

        # Reading every installed distribution's file list is slow in a big environment.
        self.by_top = packages_distributions() if needed else {}
        self._files: dict[str, frozenset[str]] = {}

    def _files_of(self, distribution: str) -> frozenset[str]:
        if distribution not in self._files:
            from importlib.metadata import PackageNotFoundError
            from importlib.metadata import distribution as find

            try:
                files = find(distribution).files or []
            except PackageNotFoundError:
                files = []
            self._files[distribution] = frozenset(str(path) for path in files)
        return self._files[distribution]

    def of(self, module: str) -> list[str]:
        """The distributions ``module`` (a dotted name) comes from. Where several share its
        top-level name (``google``: protobuf, google-auth, google-cloud-storage...), those that
        hold the module's own files, by the longest part of its name any of them holds."""
        candidates = list(dict.fromkeys(self.by_top.get(_top(module), [])))
        parts = module.split(".")
        if len(candidates) > 1:
            for length in range(len(parts), 1, -1):
                prefix = "/".join(parts[:length])
                holders = [d for d in candidates
                           if any(f.startswith((f"{prefix}/", f"{prefix}."))
                                  for f in self._files_of(d))]
                if holders:
                    return holders
        return candidates

    def pinned(self, modules: Iterable[str]) -> tuple[str, ...]:
        from importlib.metadata import PackageNotFoundError, version

        pins = set()
        for module in _needed(modules):
            for distribution in self.of(module):
                if distribution.lower() in _PROVIDED:
                    continue
                with contextlib.suppress(PackageNotFoundError):
                    pins.add(f"{distribution}=={_public_version(version(distribution))}")
        return tuple(sorted(pins, key=str.lower))


def _modules_needed(graph: Graph) -> dict[str, tuple[str, ...]]:
    """What each step imports, and what the steps upstream of it import: reading their outputs
    needs the libraries that made them (a DataFrame needs pandas, a model its library)."""
    # A step's upstream steps come before it in the body: what they need (their own ancestors'
    # too) is known when the step is reached, so each step unions its direct upstream only.
    needed: dict[str, set[str]] = {}
    for step in graph.steps:
        needed[step.name] = set(graph.step_modules[step.name]).union(
            *(needed[name] for name in step.upstream))
    return {name: tuple(sorted(modules)) for name, modules in needed.items()}


def infer_packages(graph: Graph) -> tuple[str, ...]:
    """The installed distributions the steps' imports come from, pinned to local versions."""
    modules = {m for ms in graph.step_modules.values() for m in ms}
    return _Distributions(bool(_needed(modules))).pinned(modules)


def _warn_missing(graph: Graph, tables: dict[str, tuple[str, dict[str, Any]]]) -> None:
    for step in graph.steps:
        key, table = tables.get(step.name, (step.name, {}))
        if table.get("requirements"):
            continue  # the step declares packages of its own: presumably the missing one
        for missing in graph.missing_imports[step.name]:
            via = f" (in {missing.via})" if missing.via else ""
            warnings.warn(
                f"step `{step.name}` imports {missing.module}{via}, which is not installed "
                "here, so Kale cannot tell which package provides it and the step will not "
                "have it: declare its package in requirements of [tool.kale.steps."
                f"{key}] or [tool.kale] in pyproject.toml, or in requirements.txt",
                RequirementsWarning, stacklevel=3)


# -- per-step tables -----------------------------------------------------------------------------

def _step_tables(graph: Graph, settings: dict[str, Any],
                 pyproject: Pyproject) -> dict[str, tuple[str, dict[str, Any]]]:
    """Each configured step's table, with the name it is written under.

    A table named by a function applies to every call of the function; a table named by a step
    to that step. A name that is a function's and also the step name of one of its own calls
    (the default) means the function. Two tables that both reach one step are an error.
    """
    steps = {step.name: step for step in graph.steps}
    calls: dict[str, list[str]] = {}
    for step in graph.steps:
        calls.setdefault(step.function.function_name, []).append(step.name)
    tables: dict[str, tuple[str, dict[str, Any]]] = {}
    for key, table in settings.get("steps", {}).items():
        header = pyproject.location("tool", "kale", "steps", key)
        named, of_function = steps.get(key), calls.get(key, [])
        if named is not None and of_function and named.function.function_name != key:
            raise KaleError(
                f"[tool.kale.steps.{key}] in pyproject.toml could mean step `{key}` (a call of "
                f"{named.function.function_name}) or every call of the function {key} "
                f"(steps {', '.join(of_function)})", location=header,
                fix="give one of them another step name with @step(name=...)")
        targets = of_function or ([key] if named is not None else [])
        if not targets:
            names = sorted(set(steps) | set(calls))
            close = difflib.get_close_matches(key, names, n=1)
            raise KaleError(
                f"[tool.kale.steps.{key}] in pyproject.toml names no step of pipeline "
                f"{graph.name}", location=header,
                fix=f"did you mean [tool.kale.steps.{close[0]}]?" if close else
                f"its steps are: {', '.join(sorted(steps))}")
        for name in targets:
            if name in tables:
                other = tables[name][0]
                function = steps[name].function.function_name
                meaning = {each: f"the function {function}, for every call of it"
                           if each == function else f"the step {each}" for each in (other, key)}
                raise KaleError(
                    f"step `{name}` is configured twice: by [tool.kale.steps.{other}] "
                    f"({meaning[other]}) and by [tool.kale.steps.{key}] ({meaning[key]})",
                    location=header,
                    fix=f"merge the two into [tool.kale.steps.{name}]" if len(calls[function])
                    == 1 else f"keep one table per step: either [tool.kale.steps.{function}] "
                    f"for every call of {function}, or one table per call under its step name "
                    f"({', '.join(calls[function])})")
            tables[name] = (key, table)
    return tables


def _with_step_requirements(packages: tuple[str, ...], extra: list[str]) -> tuple[str, ...]:
    replaced = {distribution_name(requirement) for requirement in extra}
    kept = [package for package in packages if distribution_name(package) not in replaced]
    return tuple(kept + list(extra))


_SWITCH = {"0": False, "false": False, "no": False, "off": False,
           "1": True, "true": True, "yes": True, "on": True}


def _install_from_environment() -> bool | None:
    """``KALE_INSTALL`` (``0``: as ``--no-install``; ``1``: install), None when unset; between
    the flag and ``[tool.kale]``, as ``KALE_IMAGE`` is."""
    given = os.environ.get("KALE_INSTALL")
    if given is None or not given.strip():
        return None
    if given.strip().lower() not in _SWITCH:
        raise KaleError(f"KALE_INSTALL is {given!r}, which is neither on nor off",
                        fix="set KALE_INSTALL=0 for steps that install nothing (their image "
                        "holds kfp and their packages), KALE_INSTALL=1 to install, or unset it")
    return _SWITCH[given.strip().lower()]


def resolve(graph: Graph, image: str | None = None, requirements: str | None = None,
            install: bool | None = None) -> Environments:
    """The image and packages for the pipeline's steps, by the precedence above. ``install``
    False (``--no-install``; else ``install`` in ``[tool.kale]``) installs nothing: the image
    must then be one's own, holding kfp and the steps' packages."""
    root = Path(graph.project_root)
    pyproject = Pyproject(root / "pyproject.toml")
    kale = read_settings(pyproject)
    tables = _step_tables(graph, kale, pyproject)
    if install is None:
        install = _install_from_environment()
    install = kale.get("install", True) if install is None else install
    given_image = image or os.environ.get("KALE_IMAGE") or kale.get("image")
    if not install and not given_image:
        default = f"python:{sys.version_info.major}.{sys.version_info.minor}"
        from importlib import metadata

        try:  # the kfp the package is compiled with: the executor in the image must match it
            kfp_pin = f"kfp=={metadata.version('kfp')}"
        except metadata.PackageNotFoundError:
            kfp_pin = "kfp"
        raise KaleError(
            f"with --no-install (or KALE_INSTALL=0, or install = false in [tool.kale]) the "
            f"steps install nothing, "
            f"so their image must hold kfp and their packages; the default image {default} "
            "holds neither",
            location=pyproject.location("tool", "kale", "install"),
            fix="name an image built with them: --image IMAGE, KALE_IMAGE, or image in "
            f"[tool.kale] (pip install {kfp_pin} and the steps' packages in its Dockerfile)")
    chosen_image = given_image or f"python:{sys.version_info.major}.{sys.version_info.minor}"
    requirements = requirements or os.environ.get("KALE_REQUIREMENTS")
    inferred_by_step: dict[str, tuple[str, ...]] | None = None
    if requirements:
        path = Path(requirements)
        if not path.is_file():
            raise KaleError(f"the requirements file {requirements} does not exist",
                            fix="give the path of a requirements.txt file")
        declared, source = read_requirements_file(path), str(path)
    elif "requirements" in kale:
        declared = read_requirements_list(kale["requirements"], root, pyproject, "tool", "kale")
        source = "[tool.kale] in pyproject.toml"
    elif (root / "requirements.txt").is_file():
        declared, source = read_requirements_file(root / "requirements.txt"), "requirements.txt"
    elif (dependencies := project_dependencies(pyproject)):
        declared, source = Declared(list(dependencies)), "[project] in pyproject.toml"
    else:
        modules = _modules_needed(graph)
        distributions = _Distributions(any(_needed(m) for m in modules.values()))
        inferred_by_step = {name: distributions.pinned(m) for name, m in modules.items()}
        _warn_missing(graph, tables)
        everything = {p for packages in inferred_by_step.values() for p in packages}
        declared = Declared(sorted(everything, key=str.lower))
        source = "inferred from the steps' imports, pinned to the versions here"
    if kale.get("index_url") and not declared.index:
        # The project's own index, for whatever the packages come from (inferred ones too);
        # kfp's own install uses it as well, so a private index alone can serve the steps.
        declared = Declared(declared.packages, kale["index_url"], declared.extra)
    pipeline = Environment(chosen_image, tuple(declared.packages), source,
                           declared.index_urls())
    steps = {}
    for step in graph.steps:
        key, table = tables.get(step.name, (step.name, {}))
        packages = pipeline.packages if inferred_by_step is None else inferred_by_step[step.name]
        source, index_urls = pipeline.source, pipeline.index_urls
        if table.get("requirements"):
            own = read_requirements_list(table["requirements"], root, pyproject,
                                     "tool", "kale", "steps", key)
            packages = _with_step_requirements(packages, own.packages)
            index_urls = declared.then(own).index_urls()
            source = f"{source}, and [tool.kale.steps.{key}]"
        steps[step.name] = Environment(table.get("image", pipeline.image), packages, source,
                                       index_urls)
    return Environments(pipeline, steps, install)
