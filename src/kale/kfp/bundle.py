"""The project bundle: the user's code and files, and Kale's own runtime, for every step.

On Kubeflow a step runs in a fresh container, yet the seed promises that local packages and
files such as ``settings.json`` work there. The bundle is the project directory as a
reproducible ``.tar.gz`` (sorted, fixed timestamps and owners), minus what ``.gitignore`` and
``.kaleignore`` exclude and what must never travel (``.git``, ``.kale``, virtualenvs, ``.env``
files, keys and credentials). The files are streamed into the archive, which stops as soon as it
is over its limit. Kale's runtime and cloudpickle travel with it under ``_kale/``, so an image
needs only Python and the user's libraries.
"""

from __future__ import annotations

import gzip
import io
import os
import tarfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import pathspec

from kale.errors import KaleError, KaleWarning

#: Never bundled, whatever the ignore files say: history, Kale's records, environments, secrets.
ALWAYS_EXCLUDED = [
    ".git/", ".hg/", ".svn/", ".kale/", ".venv/", "venv/", "__pycache__/", "*.pyc",
    ".pytest_cache/", ".mypy_cache/", ".ruff_cache/", ".hypothesis/", ".ipynb_checkpoints/",
    ".env", ".env.*", ".envrc", "*.pem", "*.key", "*.p12", "*.pfx", "id_rsa*", "id_dsa*",
    "id_ecdsa*", "id_ed25519*", ".ssh/", ".aws/", ".gcp/", ".azure/", ".netrc", ".pypirc",
    "credentials", "credentials.*", "*credentials*.json", "secrets.*", ".docker/",
    # What earlier compiles and kfp.local runs leave behind: never the next bundle's content.
    "kale-bundle-*.tar.gz", "local_outputs/",
]
LIMIT_BYTES = 200 * 2**20

# What of Kale runs inside a step (paths relative to the kale package).
_RUNTIME_FILES = ["__init__.py", "runtime.py", "macros.py", "marshal", "kfp/__init__.py",
                  "kfp/entry.py"]


@dataclass(frozen=True)
class Bundle:
    data: bytes
    files: tuple[str, ...]

    @property
    def size(self) -> int:
        return len(self.data)


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


def _ignore_spec(folder: Path) -> pathspec.PathSpec | None:
    """The patterns of a folder's own ``.gitignore`` and ``.kaleignore`` (git reads one in every
    folder, relative to it)."""
    patterns: list[str] = []
    for ignore in (".gitignore", ".kaleignore"):
        path = folder / ignore
        if path.is_file():
            patterns.extend(path.read_text(errors="replace").splitlines())
    return pathspec.PathSpec.from_lines("gitwildmatch", patterns) if patterns else None


def _ignored(root: Path, path: Path, is_folder: bool, always: pathspec.PathSpec,
             specs: list[tuple[Path, pathspec.PathSpec]]) -> bool:
    slash = "/" if is_folder else ""
    if always.match_file(path.relative_to(root).as_posix() + slash):
        return True
    # The last matching pattern decides, deeper ignore files after shallower ones, as in git.
    verdict = False
    for base, spec in specs:
        local = path.relative_to(base).as_posix() + slash
        for pattern in spec.patterns:
            if pattern.include is not None and pattern.match_file(local):
                verdict = pattern.include
    return verdict


def project_files(root: Path) -> list[str]:
    """The project's files that go to Kubeflow, relative to ``root``, sorted.

    Kale's own exclusions are applied apart from the ignore files, so that a ``!`` pattern there
    cannot bring back a key or a ``.env`` file. Symbolic links inside the project are followed
    (the target's content travels under the link's name), each folder once."""
    always = pathspec.PathSpec.from_lines("gitwildmatch", ALWAYS_EXCLUDED)
    chosen = []
    visited: set[str] = set()
    # Each entry: a folder, and the ignore specs that apply to it with the folder they are from.
    pending: list[tuple[Path, list[tuple[Path, pathspec.PathSpec]]]] = [(root, [])]
    while pending:
        here, inherited = pending.pop()
        real = os.path.realpath(here)
        if real in visited:
            continue
        visited.add(real)
        own = _ignore_spec(here)
        specs = inherited + ([(here, own)] if own else [])

        try:
            entries = sorted(os.scandir(here), key=lambda entry: entry.name)
        except OSError as error:
            warnings.warn(f"{here} cannot be read ({error.strerror}); it is left out of the "
                          "project bundle", BundleWarning, stacklevel=2)
            continue
        for entry in entries:
            path = Path(entry.path)
            try:
                is_folder = entry.is_dir()  # follows symbolic links
            except OSError:
                continue
            if entry.is_symlink() and not os.path.exists(entry.path):
                warnings.warn(f"{path.relative_to(root)} is a broken symbolic link; it is left "
                              "out of the project bundle", BundleWarning, stacklevel=2)
                continue
            if is_folder:
                if not _is_virtualenv(path) and not _ignored(root, path, True, always, specs):
                    pending.append((path, specs))
            elif entry.is_file() and not _ignored(root, path, False, always, specs) and \
                    not _is_pipeline_package(path):
                chosen.append(path.relative_to(root).as_posix())
    return sorted(chosen)


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


def _runtime_files() -> list[tuple[Path, str]]:
    import cloudpickle

    import kale

    package = Path(kale.__file__).parent
    files = []
    for entry in _RUNTIME_FILES:
        path = package / entry
        paths = sorted(path.rglob("*.py")) if path.is_dir() else [path]
        files.extend((p, f"_kale/kale/{p.relative_to(package).as_posix()}") for p in paths)
    pickle_package = Path(cloudpickle.__file__).parent
    files.extend((p, f"_kale/cloudpickle/{p.relative_to(pickle_package).as_posix()}")
                 for p in sorted(pickle_package.rglob("*.py")))
    return files


def build_bundle(root: str | os.PathLike[str], limit: int = LIMIT_BYTES) -> Bundle:
    """The bundle of the project at ``root``; a ``KaleError`` with advice if it is too big."""
    root = Path(root)
    files = project_files(root)
    buffer = io.BytesIO()
    # mtime=0 in the gzip header too: the same project gives the same bytes, so the same name
    # in the bundle store.
    try:
        with gzip.GzipFile(filename="", mode="wb", fileobj=buffer, mtime=0,
                           compresslevel=6) as zipped, \
                tarfile.open(fileobj=zipped, mode="w", copybufsize=2**20) as archive:
            for name in files:
                # Stopped mid-file once over the limit: no need to read a huge file whole.
                _add(archive, root / name, f"project/{name}", buffer, limit)
            for source, name in _runtime_files():
                _add(archive, source, name, buffer)
        too_big = buffer.tell() > limit
    except _TooBig:
        too_big = True
    if too_big:
        def size(name: str) -> int:
            try:
                return (root / name).stat().st_size
            except OSError:
                return 0

        largest = sorted(files, key=size, reverse=True)[:5]
        raise KaleError(
            f"the project bundle of {root} is over {limit / 2**20:.0f} MB compressed, more than "
            "a pipeline package can carry; its largest files: " + ", ".join(largest),
            fix="list data and model files in a .kaleignore file (same syntax as .gitignore) "
            "and have the steps read them from storage instead",
        )
    return Bundle(buffer.getvalue(), tuple(files))
