"""What a step's container needs: its base image and the Python packages to install.

"No module named ..." in a cluster step is the most common complaint about Kale-like tools.
Kale decides, most specific first:

1. ``--image`` / ``--requirements FILE`` on the command line;
2. ``KALE_IMAGE`` / ``KALE_REQUIREMENTS`` (a file) in the environment;
3. ``[tool.kale]`` in the project's ``pyproject.toml``: ``image = "..."``,
   ``requirements = ["pandas==2.2.3", ...]``;
4. the project's own declaration: ``requirements.txt`` in the project root, else
   ``[project] dependencies`` in its ``pyproject.toml``;
5. otherwise, inferred: the libraries the steps import, mapped to the installed distributions
   and pinned to the versions installed here. Modules of the project itself are never turned
   into package names, and Kale's own runtime travels in the bundle.

The image defaults to the official Python image of the local Python version.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kale.errors import KaleError
from kale.graph.model import Graph

# Travel in the bundle, or come with kfp's own component bootstrap: never installed.
_PROVIDED = {"kale", "cloudpickle", "kfp"}


@dataclass(frozen=True)
class Environment:
    image: str
    packages: tuple[str, ...]
    source: str  # where the packages came from, for the message at compile time


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


def infer_packages(graph: Graph) -> tuple[str, ...]:
    """The installed distributions the steps' imports come from, pinned to local versions."""
    from importlib.metadata import packages_distributions, version

    modules = [module for module in graph.external_imports  # never modules of the project
               if module not in sys.stdlib_module_names and module not in _PROVIDED]
    # Reading every installed distribution's file list is slow in a big environment.
    distributions = packages_distributions() if modules else {}
    pinned = set()
    for module in modules:
        for distribution in distributions.get(module, []):
            if distribution.lower() not in _PROVIDED:
                pinned.add(f"{distribution}=={version(distribution)}")
    return tuple(sorted(pinned, key=str.lower))


def resolve(graph: Graph, image: str | None = None,
            requirements: str | None = None) -> Environment:
    """The image and packages for the pipeline's steps, by the precedence above."""
    root = Path(graph.project_root)
    pyproject = root / "pyproject.toml"
    settings = _read_toml(pyproject) if pyproject.is_file() else {}
    kale_settings = settings.get("tool", {}).get("kale", {})
    chosen_image = (image or os.environ.get("KALE_IMAGE") or kale_settings.get("image")
                    or f"python:{sys.version_info.major}.{sys.version_info.minor}")
    requirements = requirements or os.environ.get("KALE_REQUIREMENTS")
    if requirements:
        path = Path(requirements)
        if not path.is_file():
            raise KaleError(f"the requirements file {requirements} does not exist",
                            fix="give the path of a requirements.txt file")
        return Environment(chosen_image, _requirements_file(path), str(path))
    if "requirements" in kale_settings:
        return Environment(chosen_image, tuple(kale_settings["requirements"]),
                           "[tool.kale] in pyproject.toml")
    if (root / "requirements.txt").is_file():
        return Environment(chosen_image, _requirements_file(root / "requirements.txt"),
                           "requirements.txt")
    declared = settings.get("project", {}).get("dependencies")
    if declared:
        return Environment(chosen_image, tuple(declared), "[project] in pyproject.toml")
    return Environment(chosen_image, infer_packages(graph),
                       "inferred from the steps' imports, pinned to the versions here")
