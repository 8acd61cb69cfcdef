"""The steps' image and packages: declared, configured, or inferred and pinned."""

from __future__ import annotations

import sys
import textwrap

import pytest

from kale.errors import KaleError
from kale.kfp.requirements import infer_packages, resolve


@pytest.fixture
def graph(project):
    project.write("helpers.py", "VALUE = 1\n")
    return project.graph(textwrap.dedent('''
        @step
        def crunch(x=1):
            import json
            import numpy as np
            import helpers
            from kale import marshal
            return float(np.sum([x, helpers.VALUE]))

        @pipeline
        def p():
            crunch()
    '''))


def test_inferred_from_imports_and_pinned(graph):
    numpy = pytest.importorskip("numpy")
    assert infer_packages(graph) == (f"numpy=={numpy.__version__}",)
    environment = resolve(graph)
    assert environment.source.startswith("inferred")
    assert environment.image == f"python:{sys.version_info.major}.{sys.version_info.minor}"


def test_precedence(graph, project, monkeypatch, tmp_path):
    root = project.root
    (root / "pyproject.toml").write_text('[project]\nname = "x"\ndependencies = ["a==1"]\n')
    assert resolve(graph).packages == ("a==1",)
    (root / "requirements.txt").write_text("# pinned\nb==2\n-r other.txt\n")
    assert resolve(graph).packages == ("b==2",)
    (root / "pyproject.toml").write_text('[tool.kale]\nimage = "img:1"\n'
                                         'requirements = ["c==3"]\n')
    assert (resolve(graph).image, resolve(graph).packages) == ("img:1", ("c==3",))
    other = tmp_path / "env-requirements.txt"
    other.write_text("d==4\n")
    monkeypatch.setenv("KALE_REQUIREMENTS", str(other))
    monkeypatch.setenv("KALE_IMAGE", "img:env")
    assert (resolve(graph).image, resolve(graph).packages) == ("img:env", ("d==4",))
    flag = tmp_path / "flag.txt"
    flag.write_text("e==5\n")
    chosen = resolve(graph, image="img:flag", requirements=str(flag))
    assert (chosen.image, chosen.packages, chosen.source) == ("img:flag", ("e==5",), str(flag))
    with pytest.raises(KaleError, match="does not exist"):
        resolve(graph, requirements=str(tmp_path / "missing.txt"))


def test_steps_in_indented_blocks_are_read_too(project):
    numpy = pytest.importorskip("numpy")
    graph = project.graph(textwrap.dedent('''
        if True:
            @step
            def nested(x=1):
                import numpy
                return int(numpy.int64(x))

        @pipeline
        def p():
            nested()
    '''))
    assert graph.external_imports == ("numpy",)
    assert infer_packages(graph) == (f"numpy=={numpy.__version__}",)
