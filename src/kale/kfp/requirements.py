"""What a step's container needs: its base image and the Python packages to install.

"No module named ..." in a cluster step is the most common complaint about Kale-like tools.
For the whole pipeline Kale decides, most specific first:

1. ``--image`` / ``--requirements FILE`` on the command line;
2. ``KALE_IMAGE`` / ``KALE_REQUIREMENTS`` (a file) in the environment;
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
import re
import shlex
import sys
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kale.errors import KaleError, KaleWarning, SourceLocation, display_path
from kale.graph.model import Graph

# Travel in the bundle, or come with kfp's own component bootstrap: never installed.
_PROVIDED = {"kale", "cloudpickle", "kfp"}

#: What ``[tool.kale]`` and ``[tool.kale.steps.<name>]`` may hold.
PIPELINE_KEYS = {"image": "str", "requirements": "list", "bundle_store": "str", "steps": "table"}
STEP_KEYS = {"image": "str", "requirements": "list"}

#: The index pip uses when none is given; it stays first when only extra indexes are named.
PYPI = "https://pypi.org/simple"


class RequirementsWarning(KaleWarning):
    """Something about the steps' packages that Kale cannot do as written."""


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


# -- pyproject.toml ------------------------------------------------------------------------------

_KEY_PART = re.compile(r"""\s*(?:"((?:[^"\\]|\\.)*)"|'([^']*)'|([A-Za-z0-9_-]+))\s*""")
_HEADER = re.compile(r"^\s*\[\[?([^\[\]]*)\]\]?\s*(?:#.*)?$")
_KEY_LINE = re.compile(r"^\s*([^=#\[\]]+?)\s*=")


def _key_path(text: str) -> tuple[str, ...] | None:
    """A TOML key as its parts (``tool.kale."steps"`` -> tool, kale, steps), None if not one."""
    parts: list[str] = []
    rest = text
    while True:
        match = _KEY_PART.match(rest)
        if not match or not match.group(0).strip():
            return None
        parts.append(next(group for group in match.groups() if group is not None))
        rest = rest[match.end():]
        if not rest:
            return tuple(parts)
        if rest[0] != ".":
            return None
        rest = rest[1:]


class Pyproject:
    """The project's ``pyproject.toml``: its content, and where each setting is written."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.exists = path.is_file()
        self.data = _read_toml(path) if self.exists else {}

    def location(self, *keys: str) -> SourceLocation | None:
        """The line that sets ``keys`` (a table's header, or a ``key =`` line inside its table,
        dotted keys included); else the line of the nearest enclosing table or key that is
        written out, so a message never points into another table."""
        try:
            lines = self.path.read_text().splitlines()
        except (OSError, UnicodeDecodeError):
            return None
        best: tuple[int, int] | None = None  # (how many keys matched, line number)
        table: tuple[str, ...] = ()
        for number, line in enumerate(lines, start=1):
            header = _HEADER.match(line)
            if header:
                table = _key_path(header.group(1)) or ("\0",)
                written = table
            else:
                key = _KEY_LINE.match(line)
                parsed = _key_path(key.group(1)) if key else None
                if parsed is None:
                    continue
                written = table + parsed
            if written == keys[: len(written)] and (best is None or len(written) > best[0]):
                best = (len(written), number)
                if len(written) == len(keys):
                    break
        if best is None:
            return None
        line = lines[best[1] - 1]
        return SourceLocation(str(self.path), best[1], len(line) - len(line.lstrip()))

    def table(self, *keys: str) -> dict[str, Any]:
        """The table at ``keys`` ({} when absent); an error that says where when a value on the
        way is not a table (``tool = 5``)."""
        value: Any = self.data
        for depth in range(len(keys)):
            value = value.get(keys[depth], {})
            if not isinstance(value, dict):
                name = ".".join(keys[: depth + 1])
                inside = f" in [{'.'.join(keys[:depth])}]" if depth else ""
                raise KaleError(
                    f"`{keys[depth]}`{inside} of {self.path.name} is {value!r}, not a table",
                    location=self.location(*keys[: depth + 1]),
                    fix=f"remove `{keys[depth]} = ...`, or make it a table: a [{name}] "
                    "header followed by its settings",
                )
        return value


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


def _check(table: dict[str, Any], keys: dict[str, str], where: tuple[str, ...],
           pyproject: Pyproject) -> None:
    header = f"[{'.'.join(where)}]"
    for key, value in table.items():
        if key not in keys:
            close = difflib.get_close_matches(key, keys, n=1)
            raise KaleError(
                f"{header} in {pyproject.path.name} has an unknown setting `{key}`",
                location=pyproject.location(*where, key),
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
                f"`{key}` in {header} of {pyproject.path.name} is {value!r}, not {wanted}",
                location=pyproject.location(*where, key),
                fix=f"write {key} as {wanted}",
            )


def _settings(pyproject: Pyproject) -> dict[str, Any]:
    settings = pyproject.table("tool", "kale")
    _check(settings, PIPELINE_KEYS, ("tool", "kale"), pyproject)
    for name, table in settings.get("steps", {}).items():
        if not isinstance(table, dict):
            raise KaleError(
                f"[tool.kale.steps] in {pyproject.path.name} sets `{name}` to {table!r}",
                location=pyproject.location("tool", "kale", "steps", name),
                fix=f'write a table: [tool.kale.steps.{name}] with image = "..." '
                "or requirements = [...]")
        _check(table, STEP_KEYS, ("tool", "kale", "steps", name), pyproject)
    return settings


def kale_settings(root: str | os.PathLike[str]) -> dict[str, Any]:
    """``[tool.kale]`` of the project's ``pyproject.toml``, checked ({} when there is none)."""
    return _settings(Pyproject(Path(root) / "pyproject.toml"))


def _project_dependencies(pyproject: Pyproject) -> list[str] | None:
    """``[project] dependencies``, checked (None when not written)."""
    if not pyproject.exists:
        return None
    declared = pyproject.table("project").get("dependencies")
    if declared is None:
        return None
    if not isinstance(declared, list) or not all(isinstance(item, str) for item in declared):
        raise KaleError(
            f"`dependencies` in [project] of {pyproject.path.name} is {declared!r}, not a list "
            "of requirement strings",
            location=pyproject.location("project", "dependencies"),
            fix='write dependencies as a list, such as dependencies = ["numpy==2.1.3"]',
        )
    return declared


# -- requirement files and lists -----------------------------------------------------------------

@dataclass
class _Declared:
    """Packages and package indexes, as declared."""

    packages: list[str] = field(default_factory=list)
    index: str | None = None
    extra: list[str] = field(default_factory=list)

    def index_urls(self) -> tuple[str, ...]:
        if not self.index and not self.extra:
            return ()
        return tuple(dict.fromkeys([self.index or PYPI, *self.extra]))

    def then(self, other: _Declared) -> _Declared:
        """These indexes and ``other``'s (its ``--index-url`` replaces this one's)."""
        return _Declared([], other.index or self.index, [*self.extra, *other.extra])


# Whole-file options that cannot reach the steps but change nothing they install.
_IGNORED = {"--trusted-host": "kfp already trusts the hosts of the package indexes",
            "--pre": "pin the pre-release you want instead",
            "--prefer-binary": "", "--only-binary": "", "--no-binary": "",
            "--require-hashes": "", "--use-feature": ""}
# Options that take a value (the next word, `=value`, or glued to a short option).
_VALUED = {"-r", "--requirement", "-c", "--constraint", "-i", "--index-url",
           "--extra-index-url", "-e", "--editable", "-f", "--find-links", "--trusted-host",
           "--only-binary", "--no-binary", "--use-feature", "--hash", "--config-settings",
           "--global-option", "--install-option"}
_COMMENT = re.compile(r"(^|\s)#.*$")


def _logical_lines(text: str) -> Iterator[tuple[int, str]]:
    """Lines as pip reads them: ``\\`` continuations joined, comments removed, numbered by
    their first line."""
    first: int | None = None
    joined: list[str] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if line.endswith("\\") and not _COMMENT.search(line):
            first = first if joined else number
            joined.append(line[:-1])
            continue
        if joined:
            line, number = "".join(joined) + line, first or number
            joined = []
        line = _COMMENT.sub("", line).strip()
        if line:
            yield number, " ".join(line.split())
    if joined:  # a continuation on the last line
        line = _COMMENT.sub("", "".join(joined)).strip()
        if line:
            yield first or 1, " ".join(line.split())


def _options(words: list[str]) -> Iterator[tuple[str, str | None]]:
    """(option, value) pairs of an option line: ``-r f``, ``-rf``, ``--requirement=f``."""
    index = 0
    while index < len(words):
        word = words[index]
        index += 1
        name, value = word, None
        if word.startswith("--") and "=" in word:
            name, value = word.split("=", 1)
        elif not word.startswith("--") and len(word) > 2 and word[:2] in _VALUED:
            name, value = word[:2], word[2:]
        elif name in _VALUED and index < len(words) and not words[index].startswith("-"):
            value = words[index]
            index += 1
        yield name, value


class _Reader:
    """Reads requirement files and lists into one ``_Declared``, following ``-r`` includes."""

    def __init__(self) -> None:
        self.declared = _Declared()
        self.seen: set[Path] = set()

    def file(self, path: Path, location: SourceLocation | None = None) -> None:
        path = path.expanduser().resolve()
        if path in self.seen:
            return  # already read: an include cycle, or the same file included twice
        self.seen.add(path)
        try:
            text = path.read_text()
        except (OSError, UnicodeDecodeError) as error:
            raise KaleError(f"the requirements file {display_path(path)} cannot be read: {error}",
                            location=location,
                            fix="give the path of a readable requirements.txt file") from None
        for number, line in _logical_lines(text):
            self.line(line, path.parent, lambda number=number: SourceLocation(str(path), number),
                      f"{display_path(path)}:{number}")

    def lines(self, items: Iterable[str], base: Path, location: SourceLocation | None,
              where: str) -> None:
        for item in items:
            for _, line in _logical_lines(item):
                self.line(line, base, lambda: location, where)

    def line(self, line: str, base: Path, location: Callable[[], SourceLocation | None],
             where: str) -> None:
        try:
            words = shlex.split(line) if line.startswith("-") else line.split(" ")
        except ValueError:
            words = line.split(" ")
        if not line.startswith("-"):
            # A requirement, maybe followed by per-requirement options (`pkg==1 --hash=...`).
            first = next((i for i, word in enumerate(words) if word.startswith("-")), len(words))
            requirement = " ".join(words[:first])
            options = [name for name, _ in _options(words[first:])]
            for name in options:
                if name != "--hash":
                    self._refuse(name, line, location, where)
            if options:
                warnings.warn(f"{where}: the --hash of `{requirement}` is left out: kfp installs "
                              "the steps' packages with one pip command, without hashes",
                              RequirementsWarning, stacklevel=2)
            self.declared.packages.append(requirement)
            return
        for name, value in _options(words):
            if name in _VALUED and not value:
                raise KaleError(f"{where}: `{name}` needs a value", location=location(),
                                fix=f"write it as `{name} VALUE`, or remove the line")
            if name in ("-r", "--requirement"):
                assert value is not None
                if re.match(r"^[a-z][a-z0-9+.-]*://", value, re.IGNORECASE):
                    raise KaleError(f"{where}: `{line}` includes a URL; Kale reads only local "
                                    "requirement files", location=location(),
                                    fix="download the file into the project and include it by "
                                    "its path")
                included = base / value
                if not included.is_file():
                    raise KaleError(f"{where}: `{line}` includes {display_path(included)}, "
                                    "which does not exist", location=location(),
                                    fix="correct the path (relative to the file that includes "
                                    "it), or remove the line")
                self.file(included, location())
            elif name in ("-i", "--index-url"):
                self.declared.index = value
            elif name == "--extra-index-url":
                assert value is not None
                self.declared.extra.append(value)
            elif name in ("-c", "--constraint"):
                warnings.warn(f"{where}: the constraints `{line}` are ignored: kfp installs the "
                              "steps' packages without constraint files; pin the versions in "
                              "the requirements instead", RequirementsWarning, stacklevel=2)
            elif name in _IGNORED:
                why = _IGNORED[name] or "kfp installs the steps' packages with its own options"
                warnings.warn(f"{where}: `{line}` is ignored: {why}", RequirementsWarning,
                              stacklevel=2)
            else:
                self._refuse(name, line, location, where)

    @staticmethod
    def _refuse(name: str, line: str, location: Callable[[], SourceLocation | None],
                where: str) -> None:
        if name in ("-e", "--editable"):
            raise KaleError(f"{where}: `{line}` is an editable install, which a step's "
                            "container cannot make (your project's own code travels in the "
                            "bundle already)", location=location(),
                            fix="remove the line, or name the package by its PyPI name or "
                            "a URL the cluster can download")
        raise KaleError(f"{where}: Kale cannot pass the pip option `{name}` (in `{line}`) to "
                        "the steps", location=location(),
                        fix="remove the option; the steps' packages are installed by name, "
                        "version or URL, from the indexes set with --index-url and "
                        "--extra-index-url")


def _requirements_file(path: Path) -> _Declared:
    reader = _Reader()
    reader.file(path)
    return reader.declared


def _requirements_list(items: list[str], root: Path, pyproject: Pyproject,
                       *keys: str) -> _Declared:
    reader = _Reader()
    location = pyproject.location(*keys, "requirements")
    where = f"{pyproject.path.name}:{location.line}" if location else pyproject.path.name
    reader.lines(items, root, location, where)
    return reader.declared


def distribution_name(requirement: str) -> str:
    """The normalised distribution a requirement names ("Scikit_Learn>=1.5" -> "scikit-learn")."""
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    return re.sub(r"[-_.]+", "-", match.group(1)).lower() if match else requirement.strip()


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


def _ancestors(graph: Graph) -> dict[str, set[str]]:
    """Every step upstream of each step, directly or not (the body order is topological)."""
    found: dict[str, set[str]] = {}
    for step in graph.steps:
        found[step.name] = set(step.upstream).union(*(found[p] for p in step.upstream))
    return found


def _modules_needed(graph: Graph) -> dict[str, tuple[str, ...]]:
    """What each step imports, and what the steps upstream of it import: reading their outputs
    needs the libraries that made them (a DataFrame needs pandas, a model its library)."""
    ancestors = _ancestors(graph)
    return {step.name: tuple(sorted(set(graph.step_modules[step.name]).union(
        *(graph.step_modules[a] for a in ancestors[step.name])))) for step in graph.steps}


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


def resolve(graph: Graph, image: str | None = None,
            requirements: str | None = None) -> Environments:
    """The image and packages for the pipeline's steps, by the precedence above."""
    root = Path(graph.project_root)
    pyproject = Pyproject(root / "pyproject.toml")
    kale = _settings(pyproject)
    tables = _step_tables(graph, kale, pyproject)
    chosen_image = (image or os.environ.get("KALE_IMAGE") or kale.get("image")
                    or f"python:{sys.version_info.major}.{sys.version_info.minor}")
    requirements = requirements or os.environ.get("KALE_REQUIREMENTS")
    inferred_by_step: dict[str, tuple[str, ...]] | None = None
    if requirements:
        path = Path(requirements)
        if not path.is_file():
            raise KaleError(f"the requirements file {requirements} does not exist",
                            fix="give the path of a requirements.txt file")
        declared, source = _requirements_file(path), str(path)
    elif "requirements" in kale:
        declared = _requirements_list(kale["requirements"], root, pyproject, "tool", "kale")
        source = "[tool.kale] in pyproject.toml"
    elif (root / "requirements.txt").is_file():
        declared, source = _requirements_file(root / "requirements.txt"), "requirements.txt"
    elif (dependencies := _project_dependencies(pyproject)):
        declared, source = _Declared(list(dependencies)), "[project] in pyproject.toml"
    else:
        modules = _modules_needed(graph)
        distributions = _Distributions(any(_needed(m) for m in modules.values()))
        inferred_by_step = {name: distributions.pinned(m) for name, m in modules.items()}
        _warn_missing(graph, tables)
        everything = {p for packages in inferred_by_step.values() for p in packages}
        declared = _Declared(sorted(everything, key=str.lower))
        source = "inferred from the steps' imports, pinned to the versions here"
    pipeline = Environment(chosen_image, tuple(declared.packages), source,
                           declared.index_urls())
    steps = {}
    for step in graph.steps:
        key, table = tables.get(step.name, (step.name, {}))
        packages = pipeline.packages if inferred_by_step is None else inferred_by_step[step.name]
        source, index_urls = pipeline.source, pipeline.index_urls
        if table.get("requirements"):
            own = _requirements_list(table["requirements"], root, pyproject,
                                     "tool", "kale", "steps", key)
            packages = _with_step_requirements(packages, own.packages)
            index_urls = declared.then(own).index_urls()
            source = f"{source}, and [tool.kale.steps.{key}]"
        steps[step.name] = Environment(table.get("image", pipeline.image), packages, source,
                                       index_urls)
    return Environments(pipeline, steps)
