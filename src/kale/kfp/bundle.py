"""The project bundle: the user's code and files, and Kale's own runtime, for every step.

On Kubeflow a step runs in a fresh container, yet the seed promises that local packages and
files such as ``settings.json`` work there. The bundle is the project directory as a
reproducible ``.tar.gz`` (sorted, fixed timestamps), minus what ``.gitignore`` and ``.kaleignore``
exclude and what must never travel (``.git``, ``.kale``, virtualenvs, ``.env`` files, keys and
credentials). Kale's runtime and cloudpickle travel with it under ``_kale/``, so an image needs
only Python and the user's libraries.
"""

from __future__ import annotations

import io
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path

import pathspec

from kale.errors import KaleError

#: Never bundled, whatever the ignore files say: history, Kale's records, environments, secrets.
ALWAYS_EXCLUDED = [
    ".git/", ".hg/", ".svn/", ".kale/", ".venv/", "venv/", "__pycache__/", "*.pyc",
    ".pytest_cache/", ".mypy_cache/", ".ruff_cache/", ".hypothesis/", ".ipynb_checkpoints/",
    ".env", ".env.*", ".envrc", "*.pem", "*.key", "*.p12", "*.pfx", "id_rsa*", "id_dsa*",
    "id_ecdsa*", "id_ed25519*", ".ssh/", ".aws/", ".gcp/", ".azure/", ".netrc", ".pypirc",
    "credentials", "credentials.*", "*credentials*.json", "secrets.*", ".docker/",
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
    """A package compiled earlier (kfp writes this header): never part of the next bundle."""
    if path.suffix not in (".yaml", ".yml", ".json"):
        return False
    try:
        with open(path, "rb") as handle:
            head = handle.read(64)
    except OSError:
        return False
    return head.startswith(b"# PIPELINE DEFINITION") or b'"pipelineSpec"' in head


def project_files(root: Path) -> list[str]:
    """The project's files that go to Kubeflow, relative to ``root``, sorted."""
    patterns = list(ALWAYS_EXCLUDED)
    for ignore in (".gitignore", ".kaleignore"):
        path = root / ignore
        if path.is_file():
            patterns.extend(path.read_text(errors="replace").splitlines())
    spec = pathspec.PathSpec.from_lines("gitwildmatch", patterns)
    chosen = []
    for folder, folders, files in os.walk(root):
        here = Path(folder)
        relative = here.relative_to(root)
        folders[:] = sorted(
            name for name in folders
            if not _is_virtualenv(here / name)
            and not spec.match_file(f"{(relative / name).as_posix()}/")
        )
        for name in sorted(files):
            path = (relative / name).as_posix()
            if not spec.match_file(path) and not (here / name).is_symlink() and \
                    not _is_pipeline_package(here / name):
                chosen.append(path)
    return sorted(chosen)


def _add(archive: tarfile.TarFile, source: Path, name: str) -> None:
    try:
        data = source.read_bytes()
    except FileNotFoundError:  # gone since the listing (a temporary file): nothing to carry
        return
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = 0  # reproducible: the same project gives the same bundle
    info.mode = 0o755 if os.access(source, os.X_OK) else 0o644
    archive.addfile(info, io.BytesIO(data))


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
    with tarfile.open(fileobj=buffer, mode="w:gz", compresslevel=6) as archive:
        for name in files:
            _add(archive, root / name, f"project/{name}")
            if buffer.tell() > limit:  # no need to read the rest of a huge folder
                break
        for source, name in _runtime_files():
            _add(archive, source, name)
    data = buffer.getvalue()
    if len(data) > limit:
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
    return Bundle(data, tuple(files))
