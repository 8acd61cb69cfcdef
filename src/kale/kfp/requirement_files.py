"""Requirement files and ``requirements`` lists, read as pip reads a requirements file: ``-r``
includes (relative to the including file), ``\\`` continuations, ``#`` comments (at the start of
a line or after a space, so a URL keeps its ``#sha256=`` fragment), and ``-i`` /
``--index-url`` / ``--extra-index-url``, which become the steps' package indexes. Options that
cannot apply to the steps are ignored with a warning, or refused when ignoring them would install
something else."""

from __future__ import annotations

import re
import shlex
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from kale.errors import KaleError, KaleWarning, SourceLocation, display_path
from kale.kfp.pyproject import Pyproject

#: The index pip uses when none is given; it stays first when only extra indexes are named.
PYPI = "https://pypi.org/simple"



class RequirementsWarning(KaleWarning):
    """Something about the steps' packages that Kale cannot do as written."""



@dataclass
class Declared:
    """Packages and package indexes, as declared."""

    packages: list[str] = field(default_factory=list)
    index: str | None = None
    extra: list[str] = field(default_factory=list)

    def index_urls(self) -> tuple[str, ...]:
        if not self.index and not self.extra:
            return ()
        return tuple(dict.fromkeys([self.index or PYPI, *self.extra]))

    def then(self, other: Declared) -> Declared:
        """These indexes and ``other``'s (its ``--index-url`` replaces this one's)."""
        return Declared([], other.index or self.index, [*self.extra, *other.extra])


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
    """Reads requirement files and lists into one ``Declared``, following ``-r`` includes."""

    def __init__(self) -> None:
        self.declared = Declared()
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


def read_requirements_file(path: Path) -> Declared:
    reader = _Reader()
    reader.file(path)
    return reader.declared


def read_requirements_list(items: list[str], root: Path, pyproject: Pyproject,
                       *keys: str) -> Declared:
    reader = _Reader()
    location = pyproject.location(*keys, "requirements")
    where = f"{pyproject.path.name}:{location.line}" if location else pyproject.path.name
    reader.lines(items, root, location, where)
    return reader.declared


def distribution_name(requirement: str) -> str:
    """The normalised distribution a requirement names ("Scikit_Learn>=1.5" -> "scikit-learn")."""
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    return re.sub(r"[-_.]+", "-", match.group(1)).lower() if match else requirement.strip()


