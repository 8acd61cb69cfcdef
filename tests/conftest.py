"""Shared fixtures: a temporary project directory whose modules are imported like a user's."""

from __future__ import annotations

import importlib.util
import itertools
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from kale.errors import KaleError
from kale.sdk import PipelineFunction

#: Steps most parser tests call; written at the top of every generated pipeline module.
PRELUDE = '''\
from kale.sdk import pipeline, step


@step
def load(source="db"):
    import random
    return [random.random() for _ in range(3)]


@step
def clean(data, threshold=0.5):
    return [x for x in data if x < threshold]


@step
def split(data):
    return data[:1], data[1:]


@step
def train(data, iterations=10, rate=0.1):
    return {"weights": data, "iterations": iterations}


@step
def report(model, other=None):
    print(model, other)


def helper(x):
    return x


'''

_counter = itertools.count()


class Project:
    """A folder that plays the user's project: write files into it, import them as modules."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def write(self, relative: str, text: str) -> Path:
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
        return path

    def load(self, text: str, *, prelude: bool = True, filename: str | None = None) -> Any:
        """Write ``text`` (after the PRELUDE steps) to a new module file and import it."""
        number = next(_counter)
        filename = filename or f"pipeline_{number}.py"
        body = (PRELUDE if prelude else "") + textwrap.dedent(text)
        path = self.write(filename, body)
        name = f"kale_test_module_{number}"
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        return module

    def pipeline(self, text: str, **kwargs: Any) -> PipelineFunction:
        module = self.load(text, **kwargs)
        found = [v for v in vars(module).values() if isinstance(v, PipelineFunction)]
        assert len(found) == 1, found
        return found[0]

    def graph(self, text: str, **kwargs: Any) -> Any:
        return self.pipeline(text, **kwargs).graph

    def error(self, text: str, kind: type[KaleError] = KaleError, **kwargs: Any) -> Any:
        with pytest.raises(kind) as caught:
            self.graph(text, **kwargs)
        return caught.value


def line_of(path_or_text: Any, marker: str) -> int:
    """The 1-based number of the first line of a file (or text) that contains ``marker``."""
    text = path_or_text.read_text() if isinstance(path_or_text, Path) else path_or_text
    for number, line in enumerate(text.splitlines(), start=1):
        if marker in line:
            return number
    raise AssertionError(f"{marker!r} not found")


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Project:
    monkeypatch.syspath_prepend(str(tmp_path))
    return Project(tmp_path)


@pytest.fixture
def prepared_image(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Packages compiled in the test install nothing (``KALE_INSTALL=0``) and name an image of
    their own, as a prepared image on an air-gapped cluster does: under kfp.local
    (``use_venv=False``) their steps run in this environment, which holds kfp and their
    packages, so each task's ``pip install`` (1-2 s, most of a kfp.local run) is left out.
    A test of what steps install is marked ``installs`` and keeps it."""
    if request.node.get_closest_marker("installs") is None:
        monkeypatch.setenv("KALE_INSTALL", "0")
        monkeypatch.setenv("KALE_IMAGE", "kale-tests:prepared")

