"""What a step's container needs: its base image and the Python packages to install.

"No module named ..." in a cluster step is the most common complaint about Kale-like tools.
For the whole pipeline Kale decides, most specific first:

1. ``--image`` / ``--requirements FILE`` on the command line;
2. ``KALE_IMAGE`` / ``KALE_REQUIREMENTS`` (a file) in the environment;
3. ``[tool.kale]`` in the project's ``pyproject.toml``: ``image = "..."``,
   ``requirements = ["pandas==2.2.3", ...]``;
4. the project's own declaration: ``requirements.txt`` in the project root, else
   ``[project] dependencies`` in its ``pyproject.toml``;
5. otherwise, inferred step by step: the libraries each step imports, mapped to the installed
   distributions and pinned to the versions installed here, so a step installs only what it
   uses. Modules of the project itself are never turned into package names, and Kale's own
   runtime travels in the bundle.

A step may then have its own ``[tool.kale.steps.<step name>]`` table: its ``image`` replaces the
pipeline's for that step, and its ``requirements`` are added to the pipeline's (a distribution
named in both takes the step's version). The image defaults to the official Python image of the
local Python version.
"""

from __future__ import annotations

import difflib
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kale.errors import KaleError, SourceLocation
from kale.graph.model import Graph

# Travel in the bundle, or come with kfp's own component bootstrap: never installed.
_PROVIDED = {"kale", "cloudpickle", "kfp"}

#: What ``[tool.kale]`` and ``[tool.kale.steps.<name>]`` may hold.
PIPELINE_KEYS = {"image": "str", "requirements": "list", "bundle_store": "str", "steps": "table"}
STEP_KEYS = {"image": "str", "requirements": "list"}


@dataclass(frozen=True)
class Environment:
    image: str
    packages: tuple[str, ...]
    source: str  # where the packages came from, for the message at compile time


@dataclass(frozen=True)
class Environments:
    """The pipeline's environment, and each step's (which differs only where configured, or
    where packages are inferred from that step's own imports)."""

    pipeline: Environment
    steps: dict[str, Environment] = field(default_factory=dict)

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


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        import tomllib
    except ImportError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]
    try:
        with open(path, "rb") as handle:
            return tomllib.load(handle)
    except (OSError, ValueError) as error:
        raise KaleError(f"{path} cannot be read: {error}",
                        fix="correct the file's TOML syntax") from None


def _requirements_file(path: Path) -> tuple[str, ...]:
    lines = []
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            lines.append(line)
    return tuple(lines)


def distribution_name(requirement: str) -> str:
    """The normalised distribution a requirement names ("Scikit_Learn>=1.5" -> "scikit-learn")."""
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    return re.sub(r"[-_.]+", "-", match.group(1)).lower() if match else requirement.strip()


def _pinned(modules: tuple[str, ...], distributions: dict[str, list[str]]) -> tuple[str, ...]:
    from importlib.metadata import version

    pinned = set()
    for module in modules:
        for distribution in distributions.get(module, []):
            if distribution.lower() not in _PROVIDED:
                pinned.add(f"{distribution}=={version(distribution)}")
    return tuple(sorted(pinned, key=str.lower))


def _needed(modules: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(module for module in modules  # never modules of the project
                 if module not in sys.stdlib_module_names and module not in _PROVIDED)


def _distributions(graph: Graph) -> dict[str, list[str]]:
    from importlib.metadata import packages_distributions

    # Reading every installed distribution's file list is slow in a big environment.
    return packages_distributions() if _needed(graph.external_imports) else {}


def infer_packages(graph: Graph) -> tuple[str, ...]:
    """The installed distributions the steps' imports come from, pinned to local versions."""
    return _pinned(_needed(graph.external_imports), _distributions(graph))


def _settings_location(pyproject: Path, pattern: str) -> SourceLocation | None:
    """Where in pyproject.toml a setting is, for the error message (best effort)."""
    try:
        lines = pyproject.read_text().splitlines()
    except OSError:
        return None
    for number, line in enumerate(lines, start=1):
        if re.search(pattern, line):
            return SourceLocation(str(pyproject), number, len(line) - len(line.lstrip()))
    return None


def _check(table: dict[str, Any], keys: dict[str, str], where: str, pyproject: Path) -> None:
    for key, value in table.items():
        if key not in keys:
            close = difflib.get_close_matches(key, keys, n=1)
            raise KaleError(
                f"{where} in {pyproject.name} has an unknown setting `{key}`",
                location=_settings_location(pyproject, rf"^\s*{re.escape(key)}\s*="),
                fix=f"did you mean `{close[0]}`?" if close else
                f"the settings are: {', '.join(sorted(keys))}",
            )
        kind = keys[key]
        valid = (isinstance(value, str) and value.strip() if kind == "str" else
                 isinstance(value, list) and all(isinstance(item, str) for item in value)
                 if kind == "list" else isinstance(value, dict))
        if not valid:
            wanted = {"str": "a non-empty string", "table": "a table of steps",
                      "list": 'a list of requirement strings, such as ["pandas==2.2.3"]'}[kind]
            raise KaleError(
                f"`{key}` in {where} of {pyproject.name} is {value!r}, not {wanted}",
                location=_settings_location(pyproject, rf"^\s*{re.escape(key)}\s*="),
                fix=f"write {key} as {wanted}",
            )


def kale_settings(root: str | os.PathLike[str]) -> dict[str, Any]:
    """``[tool.kale]`` of the project's ``pyproject.toml``, checked ({} when there is none)."""
    pyproject = Path(root) / "pyproject.toml"
    settings = _read_toml(pyproject).get("tool", {}).get("kale", {}) \
        if pyproject.is_file() else {}
    _check(settings, PIPELINE_KEYS, "[tool.kale]", pyproject)
    for name, table in settings.get("steps", {}).items():
        if not isinstance(table, dict):
            where = _settings_location(pyproject, rf"^\s*{re.escape(name)}\s*=")
            raise KaleError(f"[tool.kale.steps] in {pyproject.name} sets `{name}` to {table!r}",
                            location=where,
                            fix=f'write a table: [tool.kale.steps.{name}] with image = "..." '
                            "or requirements = [...]")
        _check(table, STEP_KEYS, f"[tool.kale.steps.{name}]", pyproject)
    return settings


def _step_tables(graph: Graph, settings: dict[str, Any], root: Path) -> dict[str, Any]:
    """``[tool.kale.steps.*]`` by step name; a table may also use the function's name."""
    by_function = {step.function.function_name: step.name for step in graph.steps}
    names = {step.name for step in graph.steps}
    tables = {}
    for key, table in settings.get("steps", {}).items():
        name = key if key in names else by_function.get(key)
        if name is None:
            close = difflib.get_close_matches(key, sorted(names), n=1)
            header = rf"\[tool\.kale\.steps\.{re.escape(key)}\]"
            raise KaleError(
                f"[tool.kale.steps.{key}] in pyproject.toml names no step of pipeline "
                f"{graph.name}",
                location=_settings_location(root / "pyproject.toml", header),
                fix=f"did you mean [tool.kale.steps.{close[0]}]?" if close else
                f"its steps are: {', '.join(sorted(names))}",
            )
        tables[name] = table
    return tables


def _with_step_requirements(packages: tuple[str, ...], extra: list[str]) -> tuple[str, ...]:
    replaced = {distribution_name(requirement) for requirement in extra}
    kept = [package for package in packages if distribution_name(package) not in replaced]
    return tuple(kept + list(extra))


def resolve(graph: Graph, image: str | None = None,
            requirements: str | None = None) -> Environments:
    """The image and packages for the pipeline's steps, by the precedence above."""
    root = Path(graph.project_root)
    pyproject = root / "pyproject.toml"
    kale = kale_settings(root)
    chosen_image = (image or os.environ.get("KALE_IMAGE") or kale.get("image")
                    or f"python:{sys.version_info.major}.{sys.version_info.minor}")
    requirements = requirements or os.environ.get("KALE_REQUIREMENTS")
    inferred_by_step: dict[str, tuple[str, ...]] | None = None
    if requirements:
        path = Path(requirements)
        if not path.is_file():
            raise KaleError(f"the requirements file {requirements} does not exist",
                            fix="give the path of a requirements.txt file")
        pipeline = Environment(chosen_image, _requirements_file(path), str(path))
    elif "requirements" in kale:
        pipeline = Environment(chosen_image, tuple(kale["requirements"]),
                               "[tool.kale] in pyproject.toml")
    elif (root / "requirements.txt").is_file():
        pipeline = Environment(chosen_image, _requirements_file(root / "requirements.txt"),
                               "requirements.txt")
    elif pyproject.is_file() and _read_toml(pyproject).get("project", {}).get("dependencies"):
        declared = _read_toml(pyproject)["project"]["dependencies"]
        pipeline = Environment(chosen_image, tuple(declared), "[project] in pyproject.toml")
    else:
        distributions = _distributions(graph)
        inferred_by_step = {name: _pinned(_needed(modules), distributions)
                            for name, modules in graph.step_imports.items()}
        everything = sorted({p for packages in inferred_by_step.values() for p in packages},
                            key=str.lower)
        pipeline = Environment(chosen_image, tuple(everything),
                               "inferred from the steps' imports, pinned to the versions here")
    tables = _step_tables(graph, kale, root)
    steps = {}
    for step in graph.steps:
        table = tables.get(step.name, {})
        packages = pipeline.packages if inferred_by_step is None else inferred_by_step[step.name]
        source = pipeline.source
        if table.get("requirements"):
            packages = _with_step_requirements(packages, table["requirements"])
            source = f"{source}, and [tool.kale.steps.{step.name}]"
        steps[step.name] = Environment(table.get("image", pipeline.image), packages, source)
    return Environments(pipeline, steps)
