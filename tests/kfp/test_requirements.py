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


TWO_STEPS = textwrap.dedent('''
    @step
    def load(n=3):
        import json
        return json.dumps(list(range(n)))

    @step(name="fit model")
    def fit(text):
        import numpy
        return float(numpy.sum(numpy.array(eval(text))))

    @pipeline
    def p():
        text = load()
        fit(text)
''')


def test_inferred_packages_are_each_steps_own(project):
    numpy = pytest.importorskip("numpy")
    environments = resolve(project.graph(TWO_STEPS))
    assert environments.of("load").packages == ()
    assert environments.of("fit-model").packages == (f"numpy=={numpy.__version__}",)
    assert environments.packages == (f"numpy=={numpy.__version__}",)


def test_a_step_table_sets_its_image_and_adds_requirements(project):
    project.write("pyproject.toml", '''
        [tool.kale]
        image = "python:3.11-slim"
        requirements = ["numpy==1.26.4", "pandas==2.2.3"]

        [tool.kale.steps.fit-model]
        image = "pytorch/pytorch:2.4.0-cuda12.1-cudnn9-runtime"
        requirements = ["NumPy>=2", "torch==2.4.0"]

        [tool.kale.steps.load]  # the function's name works too
        requirements = ["requests==2.32.3"]
    ''')
    environments = resolve(project.graph(TWO_STEPS))
    fit = environments.of("fit-model")
    assert fit.image == "pytorch/pytorch:2.4.0-cuda12.1-cudnn9-runtime"
    assert fit.packages == ("pandas==2.2.3", "NumPy>=2", "torch==2.4.0")
    load = environments.of("load")
    assert load.image == "python:3.11-slim"
    assert load.packages == ("numpy==1.26.4", "pandas==2.2.3", "requests==2.32.3")
    assert environments.packages == ("numpy==1.26.4", "pandas==2.2.3")


@pytest.mark.parametrize(("settings", "message", "line", "fix"), [
    ('[tool.kale]\nimages = "x"\n', "[tool.kale] in pyproject.toml has an unknown setting "
     "`images`", 2, "did you mean `image`?"),
    ('[tool.kale]\nrequirements = "numpy"\n', "`requirements` in [tool.kale] of pyproject.toml"
     " is 'numpy', not a list of requirement strings", 2, 'such as ["pandas==2.2.3"]'),
    ('[tool.kale]\nimage = ""\n', "not a non-empty string", 2, "write image as"),
    ('[tool.kale.steps.fit-modle]\nimage = "x"\n', "[tool.kale.steps.fit-modle] in "
     "pyproject.toml names no step of pipeline p", 1, "did you mean [tool.kale.steps.fit-model]"),
    ('\n[tool.kale.steps.load]\nrequirement = []\n',
     "[tool.kale.steps.load] in pyproject.toml has an unknown setting `requirement`", 3,
     "did you mean `requirements`?"),
    ('[tool.kale.steps]\nload = "python:3.12"\n', "[tool.kale.steps] in pyproject.toml sets "
     "`load` to 'python:3.12'", 2, "[tool.kale.steps.load] with image"),
])
def test_bad_settings_are_explained_with_their_line(project, settings, message, line, fix):
    project.write("pyproject.toml", settings)
    graph = project.graph(TWO_STEPS)
    with pytest.raises(KaleError) as caught:
        resolve(graph)
    error = caught.value
    assert message in error.message
    assert error.location.file.endswith("pyproject.toml") and error.location.line == line
    assert fix in error.fix
