"""The project bundle: the user's code and files, and Kale's own runtime, for every step.

On Kubeflow a step runs in a fresh container, yet the seed promises that local packages and
files such as ``settings.json`` work there. The bundle is the project directory as a
reproducible ``.tar.gz`` (sorted, fixed timestamps and owners), minus what must never travel and
what the ignore files exclude:

- ``ALWAYS_EXCLUDED``: history, Kale's records, environments, caches and what earlier compiles
  left behind; ``SECRETS``: keys and credential files (any letter case), except Python modules
  and packages. Ignore files cannot bring these back; what ``SECRETS`` alone kept out is listed
  in ``Bundle.withheld``.
- ``.gitignore`` and ``.kaleignore`` in the project and its folders, and the ``.gitignore`` files
  of the folders above it up to the root of its git repository, with git's rules: a folder
  excluded is never entered, ``/`` at the end means folders only, ``dir/**`` is what is inside
  ``dir``, the last matching pattern wins.

A symbolic link to a path inside the project travels as a link (a relative one, which
extracting the archive recreates) when its target travels; a link to something outside travels
as a copy of it, each outside folder once. The files are streamed into the archive, which stops
as soon as it is over its limit. Kale's runtime and cloudpickle travel with it under ``_kale/``,
so an image needs only Python and the user's libraries: only the modules a step imports, without
their comments and docstrings (``kale.kfp.slim``), so that most of an inline bundle's room is
left to the project.
"""

from __future__ import annotations

import gzip
import io
import os
import posixpath
import re
import tarfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from kale.errors import KaleError, KaleWarning

#: Never bundled, whatever the ignore files say: history, Kale's records, environments, caches,
#: and what earlier compiles and kfp.local runs leave behind. Patterns as in ``.gitignore``.
ALWAYS_EXCLUDED = [
    ".git", ".hg/", ".svn/", ".kale/", ".venv/", "venv/", "__pycache__/", "*.pyc",
    ".pytest_cache/", ".mypy_cache/", ".ruff_cache/", ".hypothesis/", ".ipynb_checkpoints/",
    "kale-bundle-*.tar.gz", "local_outputs/",
]
#: Keys and credentials, never bundled and matched in any letter case; a Python module (``.py``)
#: or package (a folder holding one) is code, never a secret, whatever its name. Names that data
#: files share are left to the content rules below: ``token*`` would take ``tokenizer.json``,
#: ``*history*`` a ``history.csv``, ``*.tfvars`` example settings.
SECRETS = [
    ".env", ".env.*", ".envrc", "*.pem", "*.key", "*.p12", "*.pfx", "*.jks", "*.keystore",
    "*.ppk", "id_rsa*", "id_dsa*", "id_ecdsa*", "id_ed25519*",
    ".ssh/", ".gnupg/", ".aws/", ".gcp/", ".azure/", ".docker/", ".kube/", ".kaggle/",
    ".huggingface/", "**/.cache/huggingface/token", "**/.config/gcloud/",
    ".netrc", ".pypirc", ".git-credentials", ".pgpass", ".databrickscfg", ".s3cfg", ".boto",
    ".npmrc", ".vault-token", ".dockercfg", "docker-config.json",
    "credentials", "credentials.json", "credentials.yaml", "credentials.yml", "credentials.ini",
    "credentials.toml", "credentials.txt", "credentials.csv", "credentials.cfg",
    "credentials.db", "*credentials*.json",
    "secrets.json", "secrets.yaml", "secrets.yml", "secrets.toml", "secrets.ini", "secrets.env",
    "secret.txt", "secrets.txt", "*.secret", "token.txt", "token.json", "*.token",
    "*service-account*.json", "*service_account*.json", "client_secret*.json", "kubeconfig*",
    "*.p8", ".htpasswd",
    # Shell and REPL histories: commands typed with passwords and tokens in them.
    ".history", ".*_history", "fish_history",
    # Terraform state holds every secret of the resources it manages, in clear.
    "*.tfstate", "*.tfstate.backup",
]
#: Whatever its name and size, a file that holds one of these is a key: PEM private keys
#: (OpenSSH's too), Google service-account and OAuth client files.
_KEY_MARKERS = {b"PRIVATE KEY-----": "a private key", b'"private_key"': "a service-account key",
                b'"client_secret"': "an OAuth client secret"}
#: A PuTTY key file starts with this, whatever its name.
_PUTTY_MARKER = b"PuTTY-User-Key-File-"
#: Files are searched a chunk at a time, never whole in memory, each chunk with the end of the
#: one before it so that a marker cut in two by a read is found.
_CHUNK = 1 << 20
_OVERLAP = max(map(len, _KEY_MARKERS)) - 1
LIMIT_BYTES = 200 * 2**20

# What of Kale runs inside a step (paths relative to the kale package): the runtime, and the
# decorators, for project modules that define steps and that a step imports.
# The placeholders of other Kales' APIs travel too, so that a step that imports one fails on
# Kubeflow with the same advice as here. kale.notebook.kernel is what Kale's errors read a
# notebook cell's name with, and what they install when IPython is loaded (a notebook image
# often is). What these modules import of the rest of Kale only off the cluster (a local run,
# a compile) is listed in tests/kfp/test_bundle_runtime.py, which checks the list is whole.
_RUNTIME_FILES = ["__init__.py", "runtime.py", "macros.py", "marshal", "kfp/__init__.py",
                  "kfp/entry.py", "sdk", "definitions.py", "errors.py", "flags.py", "options.py",
                  "source.py", "not_provided.py", "distributed.py", "types.py", "items.py",
                  "logs.py", "cmdutils.py", "containers.py", "notebook/__init__.py",
                  "notebook/kernel.py",
                  # kale.sdk.tuning's search spaces: light, and a step may import them
                  "tuning/__init__.py", "tuning/space.py"]


def carries_kale_module(module: str) -> bool:
    """Whether the Kale module ``module`` (or a name inside it, ``kale.sdk.step``) runs in a
    step: the bundle carries only Kale's runtime and decorators."""
    import importlib.util

    import kale

    package = Path(kale.__file__).parent
    parts = module.split(".")
    for size in range(len(parts), 0, -1):  # the longest prefix that is a module
        try:
            spec = importlib.util.find_spec(".".join(parts[:size]))
        except (ImportError, ValueError):
            spec = None
        if spec is None or not spec.origin:
            continue
        relative = Path(spec.origin).relative_to(package).as_posix()
        return any(relative == entry or relative.startswith(entry + "/")
                   for entry in _RUNTIME_FILES)
    return False


@dataclass(frozen=True)
class Bundle:
    data: bytes
    #: The regular files under ``project/``, by their path in the project.
    files: tuple[str, ...]
    #: Symbolic links to other paths of the project, as (path, relative target).
    links: tuple[tuple[str, str], ...] = ()
    #: What the secret rules kept out (folders end with ``/``); what ignore files exclude is not
    #: listed.
    withheld: tuple[str, ...] = ()
    #: Why each of ``withheld`` was kept out, as (path, reason), in the same order.
    reasons: tuple[tuple[str, str], ...] = ()

    @property
    def size(self) -> int:
        return len(self.data)

    def carries(self, name: str) -> bool:
        """Whether the extracted bundle has the file ``name`` (a project path), also through
        the links it carries (a step imported as ``stable/steps.py`` with ``stable -> src``)."""
        files, links = set(self.files), dict(self.links)
        path = posixpath.normpath(name)
        for _ in range(40):  # as many links on one path as Linux follows
            if path in files:
                return True
            parts = path.split("/")
            for index in range(1, len(parts) + 1):
                prefix = "/".join(parts[:index])
                if prefix in links:
                    path = posixpath.normpath(posixpath.join(
                        posixpath.dirname(prefix), links[prefix], *parts[index:]))
                    break
            else:
                return False
        return False


def _is_virtualenv(folder: Path) -> bool:
    return (folder / "pyvenv.cfg").exists() or (folder / "conda-meta").is_dir()


def _is_pipeline_package(path: Path) -> bool:
    """A package compiled earlier: never part of the next bundle. kfp starts a YAML package with
    a header; a JSON one (keys sorted) ends with its schema and SDK versions."""
    suffix = path.suffix.lower()
    if suffix not in (".yaml", ".yml", ".json"):
        return False
    try:
        with open(path, "rb") as handle:
            head = handle.read(64)
            if suffix != ".json":
                return head.startswith(b"# PIPELINE DEFINITION")
            handle.seek(max(0, path.stat().st_size - 256))
            tail = handle.read()
    except OSError:
        return False
    return b'"pipelineSpec"' in head or (b'"schemaVersion"' in tail and b'"kfp-' in tail)


class BundleWarning(KaleWarning):
    """Something in the project that will not travel to Kubeflow as it is here."""


@dataclass(frozen=True)
class _Pattern:
    """One line of an ignore file, as git reads it."""

    regex: re.Pattern[str]
    negated: bool
    folders_only: bool  # it ended with "/"
    whole_path: bool  # it has a "/" before its end: relative to its file's folder, else any level

    def matches(self, local: str, is_folder: bool) -> bool:
        """Whether the pattern matches this entry, ``local`` being its path from the folder of
        the pattern's file. Only the entry itself: the walk never enters an excluded folder."""
        if self.folders_only and not is_folder:
            return False
        text = local if self.whole_path else local.rpartition("/")[2]
        return self.regex.fullmatch(text) is not None


_CLASSES = {
    "alnum": "a-zA-Z0-9", "alpha": "a-zA-Z", "blank": " \\t", "cntrl": "\\x00-\\x1f\\x7f",
    "digit": "0-9", "graph": "\\x21-\\x7e", "lower": "a-z", "print": "\\x20-\\x7e",
    "punct": "!-/:-@\\[-`{-~", "space": " \\t\\n\\r\\f\\v", "upper": "A-Z",
    "xdigit": "0-9A-Fa-f",
}


def _char(character: str) -> str:
    return f"\\U{ord(character):08x}"


def _bracket(pattern: str, start: int) -> tuple[str, int] | None:
    """The regex of the ``[...]`` at ``start`` and the index after it; ``None`` if malformed
    (git then matches nothing with the pattern)."""
    index, negated, items = start + 1, False, []
    if index < len(pattern) and pattern[index] in "!^":
        negated, index = True, index + 1
    first = True
    while True:
        if index >= len(pattern):
            return None
        character = pattern[index]
        if character == "]" and not first:
            break
        first = False
        if character == "[" and pattern.startswith("[:", index):
            end = pattern.find("]", index + 2)
            if end < 0:
                return None
            if pattern[end - 1] == ":" and end - 1 >= index + 2:
                name = pattern[index + 2:end - 1]
                if name not in _CLASSES:
                    return None
                items.append(_CLASSES[name])
                index = end + 1
                continue
        if character == "\\":
            index += 1
            if index >= len(pattern):
                return None
            character = pattern[index]
        index += 1
        if index + 1 < len(pattern) and pattern[index] == "-" and pattern[index + 1] != "]":
            high, index = pattern[index + 1], index + 2
            if high == "\\":
                if index >= len(pattern):
                    return None
                high, index = pattern[index], index + 1
            if character <= high:  # a reversed range matches nothing, as in git
                items.append(f"{_char(character)}-{_char(high)}")
        else:
            items.append(_char(character))
    # In a path, a bracket never matches "/".
    body = "".join(items)
    if negated:
        return f"[^/{body}]", index + 1
    return (f"(?!/)[{body}]" if body else "(?!)"), index + 1


def _translate(pattern: str) -> str | None:
    """The regex of a git wildcard pattern (``*``, ``?``, ``[...]``, ``**``, ``\\``)."""
    out, index = [], 0
    while index < len(pattern):
        character = pattern[index]
        if character == "*":
            end = index
            while end < len(pattern) and pattern[end] == "*":
                end += 1
            # "**" is special only as a whole part of the path: leading "**/", "/**/", "/**".
            if end - index > 1 and (index == 0 or pattern[index - 1] == "/") and \
                    (end == len(pattern) or pattern[end] == "/"):
                if end == len(pattern):
                    out.append(".*")
                else:
                    out.append("(?:.*/)?")
                    end += 1
            else:
                out.append("[^/]*")
            index = end
        elif character == "?":
            out.append("[^/]")
            index += 1
        elif character == "[":
            bracket = _bracket(pattern, index)
            if bracket is None:
                return None
            out.append(bracket[0])
            index = bracket[1]
        elif character == "\\":
            if index + 1 == len(pattern):
                return None  # git: a pattern ending with a backslash is invalid
            out.append(re.escape(pattern[index + 1]))
            index += 2
        else:
            out.append(re.escape(character))
            index += 1
    return "".join(out)


def _trim(line: str) -> str:
    """Trailing spaces go, unless escaped with a backslash (git's rule)."""
    index, trailing = 0, None
    while index < len(line):
        if line[index] == " ":
            trailing = index if trailing is None else trailing
        elif line[index] == "\\":
            index += 1
            trailing = None
        else:
            trailing = None
        index += 1
    return line if trailing is None else line[:trailing]


def _parse(line: str, *, ignore_case: bool = False) -> _Pattern | None:
    """A pattern from a line of an ignore file; ``None`` for blanks, comments, invalid lines."""
    line = _trim(line)
    if not line or line.startswith("#"):
        return None
    negated = line.startswith("!")
    if negated:
        line = line[1:]
    folders_only = line.endswith("/")
    if folders_only:
        line = line[:-1]
    if not line:
        return None
    whole_path = "/" in line
    regex = _translate(line.removeprefix("/"))
    if regex is None:
        return None
    return _Pattern(re.compile(regex, re.IGNORECASE if ignore_case else 0), negated,
                    folders_only, whole_path)


def _parse_all(lines: list[str], *, ignore_case: bool = False) -> tuple[_Pattern, ...]:
    parsed = (_parse(line, ignore_case=ignore_case) for line in lines)
    return tuple(pattern for pattern in parsed if pattern is not None)


_ALWAYS = _parse_all(ALWAYS_EXCLUDED)
# With each pattern its line, to say which rule kept a file out.
_SECRETS = tuple((line, pattern) for line in SECRETS
                 if (pattern := _parse(line, ignore_case=True)) is not None)


@dataclass(frozen=True)
class _IgnoreFile:
    """The patterns of one folder's ignore files, and where that folder is."""

    base: str  # the folder's path in the bundle ("" for the project and folders above it)
    above: str  # for a folder above the project: the project's path from it, ending with "/"
    patterns: tuple[_Pattern, ...]

    def local(self, name: str) -> str:
        return self.above + (name[len(self.base) + 1:] if self.base else name)


def _read_patterns(*paths: Path) -> tuple[_Pattern, ...]:
    lines: list[str] = []
    for path in paths:
        try:
            lines.extend(path.read_text(encoding="utf-8-sig", errors="replace").splitlines())
        except OSError:  # absent or unreadable: git reads it as empty
            continue
    return _parse_all(lines)


def _ancestor_ignores(root: Path) -> list[_IgnoreFile]:
    """The ``.gitignore`` files above a project that is a folder of a git repository, outermost
    first: git applies them to the project's files too. None without a repository above."""
    if (root / ".git").exists():
        return []
    folders = []
    for parent in root.parents:
        folders.append(parent)
        if (parent / ".git").exists():
            break
    else:
        return []
    ignores = []
    for folder in reversed(folders):
        patterns = _read_patterns(folder / ".gitignore")
        if patterns:
            ignores.append(_IgnoreFile("", root.relative_to(folder).as_posix() + "/", patterns))
    return ignores


def _ignored(ignores: list[_IgnoreFile], name: str, is_folder: bool) -> bool:
    # The last matching pattern decides, deeper ignore files after shallower ones, as in git.
    verdict = False
    for ignore in ignores:
        local = ignore.local(name)
        for pattern in ignore.patterns:
            if pattern.matches(local, is_folder):
                verdict = not pattern.negated
    return verdict


def _excluded(patterns: tuple[_Pattern, ...], name: str, is_folder: bool) -> bool:
    return any(pattern.matches(name, is_folder) for pattern in patterns)


def _is_python(path: Path, is_folder: bool) -> bool:
    """A module or package: code the steps may import, whatever its name."""
    if not is_folder:
        return path.suffix in (".py", ".pyi")
    if not path.name.isidentifier():
        return False
    try:
        return any(child.suffix == ".py" for child in path.iterdir())
    except OSError:
        return False


def _key_inside(real: Path) -> str | None:
    """What key a file that is not Python holds, whatever its name and size (``None``: none).
    Every file that travels is searched: a key pasted into a big log or data file is a key."""
    if real.suffix in (".py", ".pyi", ".ipynb"):
        return None
    try:
        with open(real, "rb") as handle:
            # One buffer for the whole file (no bigger than it: most files are small): the last
            # bytes of a chunk move to its start, the next chunk is read after them, and the
            # search is done in place.
            size = min(max(os.fstat(handle.fileno()).st_size, 1), _CHUNK)
            buffer = bytearray(_OVERLAP + size)
            view = memoryview(buffer)[_OVERLAP:]
            read = handle.readinto(view)
            if buffer.startswith(_PUTTY_MARKER, _OVERLAP):
                return "holds a PuTTY key"
            while read:
                end = _OVERLAP + read
                # Looking for one byte is many times faster than for a marker: chunks without
                # a quote (most text that is not JSON) skip the two quoted markers.
                quoted = buffer.find(b'"', 0, end) >= 0
                for marker, what in _KEY_MARKERS.items():
                    if (quoted or not marker.startswith(b'"')) and \
                            buffer.find(marker, 0, end) >= 0:
                        return f"holds {what}"
                buffer[:_OVERLAP] = buffer[read:end]
                read = handle.readinto(view)
    except OSError:
        return None
    return None


def _named_secret(name: str, real: Path, is_folder: bool) -> str | None:
    """Which name rule keeps this entry out, ``None`` if none does (or it is Python code)."""
    for line, pattern in _SECRETS:
        if pattern.matches(name, is_folder):
            return None if _is_python(real, is_folder) else f"named like {line}"
    return None


def _secret(name: str, real: Path, is_folder: bool) -> str | None:
    """Why this entry is a secret, ``None`` if it is not: its name, else its content."""
    reason = _named_secret(name, real, is_folder)
    if reason is None and not is_folder:
        reason = _key_inside(real)
    return reason


def _secret_target(real: Path, top: Path, is_folder: bool) -> str | None:
    """Why a link's target is, or is inside, what the name rules keep out, wherever it is
    (``~/.aws/credentials``): each folder on its path from the project, or from the
    filesystem's root when outside, is looked at as a project folder would be. (Its content
    has been searched already, through the link.)"""
    inside = _inside(str(real), str(top)) is not None
    base = top if inside else Path(real.anchor)
    parts = real.relative_to(base).parts
    for index in range(1, len(parts) + 1):
        reason = _named_secret("/".join(parts[:index]), base.joinpath(*parts[:index]),
                               is_folder if index == len(parts) else True)
        if reason is not None:
            shown = "/".join(parts) if inside else str(real)
            return f"a link to {shown}, {reason}"
    return None


@dataclass
class _Selection:
    """What of a project travels, and how."""

    files: dict[str, Path] = field(default_factory=dict)  # bundle path -> the file to read
    links: dict[str, str] = field(default_factory=dict)  # bundle path -> relative target
    withheld: dict[str, str] = field(default_factory=dict)  # bundle path -> why


def _inside(real: str, root: str) -> str | None:
    """``real``'s path in the project at ``root`` (both resolved), ``None`` if outside it."""
    if real == root:
        return ""
    if real.startswith(root.rstrip(os.sep) + os.sep):
        return Path(os.path.relpath(real, root)).as_posix()
    return None


def _relative_link(name: str, target: str) -> str:
    return posixpath.relpath(target or ".", posixpath.dirname(name) or ".")


def _run_records() -> set[str]:
    """Where local runs keep their records (``KALE_HOME``, wherever it is) and where Kale keeps
    the runtime it bundles (``kale.kfp.slim``: the user's cache folder, inside the project when
    the project is the home folder): never bundled."""
    from kale.kfp.slim import cache_folder

    found = {os.path.realpath(os.path.dirname(cache_folder()))}
    configured = os.environ.get("KALE_HOME")
    if configured:
        found.add(os.path.realpath(os.path.expanduser(configured)))
    return found


def _select(root: str | os.PathLike[str]) -> _Selection:
    """Walk the project: its files, its links to its own paths, what the secret rules kept
    out. Folders outside the project reached through links are walked as if they were there."""
    top = Path(os.path.realpath(root))
    records = _run_records()
    chosen = _Selection()
    walked = {""}  # project folders walked: links to them can travel
    own: set[str] = set()  # project files by their own path: links to them can travel
    wanted: list[tuple[str, str, bool]] = []  # links to project paths, decided at the end
    copies: dict[str, str] = {}  # outside folder -> where it travels: each travels once
    # Each: a folder to walk, its path in the bundle, the ignore files that apply to it, and
    # whether it is the project's own folder there (not a copy of one outside).
    pending: list[tuple[Path, str, list[_IgnoreFile], bool]] = [
        (top, "", _ancestor_ignores(top), True)]
    while pending:
        folder, prefix, ignores, at_home = pending.pop()
        patterns = _read_patterns(folder / ".gitignore", folder / ".kaleignore")
        if patterns:
            ignores = [*ignores, _IgnoreFile(prefix, "", patterns)]
        try:
            entries = sorted(os.scandir(folder), key=lambda entry: entry.name)
        except OSError as error:
            warnings.warn(f"{prefix or folder} cannot be read ({error.strerror}); it is left "
                          "out of the project bundle", BundleWarning, stacklevel=3)
            continue
        below = []
        for entry in entries:
            name = f"{prefix}/{entry.name}" if prefix else entry.name
            try:
                link = entry.is_symlink()
                if link:
                    real = Path(os.path.realpath(entry.path))
                    if not real.exists():
                        warnings.warn(f"{name} is a broken symbolic link; it is left out of "
                                      "the project bundle", BundleWarning, stacklevel=3)
                        continue
                    is_folder, is_file = real.is_dir(), real.is_file()
                else:
                    real = folder / entry.name
                    is_folder = entry.is_dir(follow_symlinks=False)
                    is_file = entry.is_file(follow_symlinks=False)
            except OSError:
                continue
            if not (is_folder or is_file):  # sockets, pipes, devices
                continue
            if _excluded(_ALWAYS, name, is_folder) or (is_folder and _is_virtualenv(real)) or \
                    (is_folder and str(real) in records) or _ignored(ignores, name, is_folder):
                continue
            # A link to a secret is one too: its content must not travel under another name.
            reason = _secret(name, real, is_folder) or \
                (_secret_target(real, top, is_folder) if link else None)
            if reason is not None:
                chosen.withheld[name + "/" if is_folder else name] = reason
                continue
            # A copy of an outside folder may hold the project itself (a link to its parent).
            inside = name if at_home and not link else _inside(str(real), str(top))
            if inside is not None and inside != name:
                wanted.append((name, inside, is_folder))
            elif is_folder:
                if inside is None:
                    if str(real) in copies:  # seen already (or a cycle): link to that copy
                        chosen.links[name] = _relative_link(name, copies[str(real)])
                        continue
                    copies[str(real)] = name
                else:
                    walked.add(name)
                below.append((real, name, ignores, inside is not None))
            elif not _is_pipeline_package(real):
                chosen.files[name] = real
                if inside is not None:
                    own.add(name)
        pending.extend(reversed(below))  # sorted depth-first: the same project, the same walk
    for name, target, is_folder in wanted:
        # Only to what travels: a link to an excluded path would arrive broken.
        if target in (walked if is_folder else own):
            chosen.links[name] = _relative_link(name, target)
    return chosen


def project_files(root: Path) -> list[str]:
    """The project's files that go to Kubeflow, relative to ``root``, sorted: its own, and
    copies of what its links point to outside it (links to its own paths travel as links).

    Kale's own exclusions are applied apart from the ignore files, so that a ``!`` pattern there
    cannot bring back a key or a ``.env`` file."""
    return sorted(_select(root).files)


class _TooBig(Exception):
    """The archive went over its limit while a file was being added."""


class _Guarded:
    """A file read into the archive, stopped as soon as the archive is over its limit."""

    def __init__(self, handle: BinaryIO, output: io.BytesIO, limit: int | None) -> None:
        self.handle, self.output, self.limit = handle, output, limit

    def read(self, size: int = -1) -> bytes:
        if self.limit is not None and self.output.tell() > self.limit:
            raise _TooBig
        return self.handle.read(size)


def _add(archive: tarfile.TarFile, source: Path, name: str, output: io.BytesIO,
         limit: int | None = None) -> None:
    """Stream one file into the archive, never whole in memory, with a normalised header."""
    try:
        with open(source, "rb") as handle:
            status = os.fstat(handle.fileno())
            info = tarfile.TarInfo(name)
            info.size = status.st_size
            # Reproducible: the same project gives the same bundle, whoever builds it and when.
            info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
            info.mode = 0o755 if status.st_mode & 0o111 else 0o644
            try:
                archive.addfile(info, _Guarded(handle, output, limit))
            except OSError as error:  # shorter now than when it was opened
                raise KaleError(f"{source} changed while the project bundle was being made "
                                f"({error})", fix="compile again once it no longer changes") \
                    from None
    except FileNotFoundError:  # gone since the listing (a temporary file): nothing to carry
        return
    except OSError as error:
        raise KaleError(f"{source} cannot be read for the project bundle ({error.strerror})",
                        fix="make it readable, or list it in a .kaleignore file") from None


def _add_data(archive: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode = len(data), 0o644
    info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
    archive.addfile(info, io.BytesIO(data))


def _add_link(archive: tarfile.TarFile, name: str, target: str) -> None:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mode = tarfile.SYMTYPE, target, 0o777
    info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
    archive.addfile(info)


def runtime_sources() -> list[tuple[str, bytes]]:
    """What of Kale (and cloudpickle) travels in every bundle, as (name in the bundle, content):
    each of ``runtime_files`` without its comments and docstrings (cloudpickle's modules keep
    their module docstrings, which hold its license)."""
    from kale.kfp.slim import slim_file

    return [(name, slim_file(source, keep_module_docstring=name.startswith("_kale/cloudpickle/")))
            for source, name in runtime_files()]


def runtime_files() -> list[tuple[Path, str]]:
    """The files of Kale (and cloudpickle) that travel with every bundle: (file here, name in
    the bundle). What steps run on Kubeflow, so a cache key of a step's code covers them."""
    import cloudpickle

    import kale

    package = Path(kale.__file__).parent
    files = []
    for entry in _RUNTIME_FILES:
        path = package / entry
        paths = sorted(path.rglob("*.py")) if path.is_dir() else [path]
        files.extend((p, f"_kale/kale/{p.relative_to(package).as_posix()}") for p in paths)
    # Scripts written for Arrikto's Kale import cmdutils from Rok's package.
    rok = package.parent / "rok_common"
    files.extend((p, f"_kale/rok_common/{p.relative_to(rok).as_posix()}")
                 for p in sorted(rok.rglob("*.py")))
    pickle_package = Path(cloudpickle.__file__).parent
    files.extend((p, f"_kale/cloudpickle/{p.relative_to(pickle_package).as_posix()}")
                 for p in sorted(pickle_package.rglob("*.py")))
    return files


def build_bundle(root: str | os.PathLike[str], limit: int = LIMIT_BYTES) -> Bundle:
    """The bundle of the project at ``root``; a ``KaleError`` with advice if it is too big."""
    root = Path(root)
    chosen = _select(root)
    entries = sorted([*chosen.files, *chosen.links])
    buffer = io.BytesIO()
    # mtime=0 in the gzip header too: the same project gives the same bytes, so the same name
    # in the bundle store.
    try:
        with gzip.GzipFile(filename="", mode="wb", fileobj=buffer, mtime=0,
                           compresslevel=6) as zipped, \
                tarfile.open(fileobj=zipped, mode="w", copybufsize=2**20) as archive:
            for name in entries:
                if name in chosen.links:
                    _add_link(archive, f"project/{name}", chosen.links[name])
                else:
                    # Stopped mid-file once over the limit: no need to read a huge file whole.
                    _add(archive, chosen.files[name], f"project/{name}", buffer, limit)
            for name, data in runtime_sources():
                _add_data(archive, name, data)
        too_big = buffer.tell() > limit
    except _TooBig:
        too_big = True
    if too_big:
        def size(name: str) -> int:
            try:
                return chosen.files[name].stat().st_size
            except OSError:
                return 0

        largest = sorted(sorted(chosen.files), key=size, reverse=True)[:5]
        raise KaleError(
            f"the project bundle of {root} is over {limit / 2**20:.0f} MB compressed, more than "
            "a pipeline package can carry; its largest files: " + ", ".join(largest),
            fix="list data and model files in a .kaleignore file (same syntax as .gitignore) "
            "and have the steps read them from storage instead",
        )
    return Bundle(buffer.getvalue(), tuple(sorted(chosen.files)),
                  tuple(sorted(chosen.links.items())), tuple(sorted(chosen.withheld)),
                  tuple(sorted(chosen.withheld.items())))
