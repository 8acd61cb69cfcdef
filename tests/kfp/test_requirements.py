"""The steps' image and packages: declared, configured, or inferred and pinned."""

from __future__ import annotations

import sys
import textwrap
import warnings

import pytest

from kale.errors import KaleError
from kale.kfp.requirements import RequirementsWarning, distribution_name, infer_packages, resolve


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
    (root / "other.txt").write_text("b2==2\n")
    assert resolve(graph).packages == ("b==2", "b2==2")
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


# -- what a step needs: its own imports, its project modules', its upstream steps' ----------------

def _alone(text):
    """A pipeline module with only these steps."""
    return "from kale.sdk import pipeline, step\n" + textwrap.dedent(text)


def _packages(environments, step):
    return {distribution_name(p) for p in environments.of(step).packages}


def test_a_step_needs_what_the_steps_upstream_of_it_import(project):
    pytest.importorskip("numpy")
    pytest.importorskip("sklearn")
    environments = resolve(project.graph(_alone('''
        @step
        def make():
            import numpy as np
            return np.arange(10.0)

        @step
        def fit(x):
            from sklearn.linear_model import LinearRegression
            return LinearRegression().fit(x.reshape(-1, 1), x)

        @step
        def report(model):
            print(model)

        @step
        def unrelated():
            return 1

        @pipeline
        def p():
            x = make()
            model = fit(x)
            report(model)
            unrelated()
    '''), prelude=False))
    assert _packages(environments, "make") == {"numpy"}
    # fit reads make's array; report reads fit's model, made from make's array
    assert _packages(environments, "fit") == {"numpy", "scikit-learn"}
    assert _packages(environments, "report") == {"numpy", "scikit-learn"}
    assert _packages(environments, "unrelated") == set()


def test_the_project_modules_a_step_imports_are_followed(project):
    pytest.importorskip("numpy")
    pytest.importorskip("pandas")
    project.write("frames.py", '''
        import pandas as pd
        from tools import shapes

        def frame(n):
            return pd.DataFrame({"a": shapes.numbers(n)})
    ''')
    project.write("tools/__init__.py", "from .shapes import numbers\n")
    project.write("tools/shapes.py", '''
        from typing import TYPE_CHECKING

        from . import frames_again  # a cycle back: read once
        if TYPE_CHECKING:
            import torch  # never needed at run time
        try:
            import kale_test_no_such_accelerator
        except ImportError:
            kale_test_no_such_accelerator = None

        def numbers(n):
            import numpy
            return numpy.arange(n)
    ''')
    project.write("tools/frames_again.py", "from . import shapes\nimport frames\n")
    graph = project.graph(_alone('''
        @step
        def make(n=3):
            from frames import frame
            return frame(n)

        @pipeline
        def p():
            make()
    '''), prelude=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the guarded import is optional: no warning
        environments = resolve(graph)
    assert _packages(environments, "make") == {"numpy", "pandas"}
    assert graph.step_imports["make"] == ("numpy", "pandas", "typing")


def test_versions_are_pinned_without_their_local_label(project, monkeypatch):
    pytest.importorskip("numpy")
    import importlib.metadata

    real = importlib.metadata.version
    monkeypatch.setattr(importlib.metadata, "version",
                        lambda name: "2.4.0+cpu" if name == "numpy" else real(name))
    environments = resolve(project.graph(TWO_STEPS))
    assert environments.of("fit-model").packages == ("numpy==2.4.0",)


def test_a_namespace_package_pins_only_the_distribution_of_the_module(project):
    pytest.importorskip("google.cloud.storage")
    environments = resolve(project.graph(_alone('''
        @step
        def upload():
            from google.cloud import storage
            return storage.__name__

        @pipeline
        def p():
            upload()
    '''), prelude=False))
    assert _packages(environments, "upload") == {"google-cloud-storage"}


MISSING = '''
    @step
    def parse():
        from kale_test_not_installed import Image
        import lens
        return Image

    @pipeline
    def p():
        parse()
'''


def test_an_import_that_is_not_installed_is_reported(project):
    project.write("lens.py", "import kale_test_also_missing.sub\n")
    graph = project.graph(_alone(MISSING), prelude=False)
    with pytest.warns(RequirementsWarning) as caught:
        environments = resolve(graph)
    messages = sorted(str(warning.message) for warning in caught)
    assert len(messages) == 2
    assert messages[0].startswith("step `parse` imports kale_test_also_missing (in lens.py:1),")
    assert messages[1].startswith("step `parse` imports kale_test_not_installed, which is not "
                                  "installed here")
    assert "[tool.kale.steps.parse]" in messages[1] and "requirements.txt" in messages[1]
    assert environments.of("parse").packages == ()
    # Once the step declares packages of its own, the missing one is presumably among them.
    project.write("pyproject.toml", '[tool.kale.steps.parse]\nrequirements = ["pillow"]\n')
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert resolve(graph).of("parse").packages == ("pillow",)


# -- requirement files and lists, as pip reads them ---------------------------------------------

def test_requirement_files_are_read_as_pip_reads_them(graph, project, tmp_path):
    project.write("reqs/base.txt", "numpy==1.26.4\n-r ../reqs/more/extra.txt\n")
    project.write("reqs/more/extra.txt", "pandas==2.2.3  # comment\n-r ../base.txt\n")
    project.write("requirements.txt", '''
        -r reqs/base.txt
        --extra-index-url https://download.pytorch.org/whl/cpu
        torch==2.4.0+cpu
        mylib @ https://example.com/mylib-1.0-py3-none-any.whl#sha256=abc123
        scikit-learn \\
          >=1.5
        # a comment \\
        requests==2.32.3
    ''')
    environments = resolve(graph)
    assert environments.packages == (
        "numpy==1.26.4", "pandas==2.2.3", "torch==2.4.0+cpu",
        "mylib @ https://example.com/mylib-1.0-py3-none-any.whl#sha256=abc123",
        "scikit-learn >=1.5", "requests==2.32.3")
    assert environments.index_urls == ("https://pypi.org/simple",
                                       "https://download.pytorch.org/whl/cpu")
    assert environments.of("crunch").index_urls == environments.index_urls
    project.write("requirements.txt", "-i https://mirror.example/simple\n--index-url="
                  "https://pypi.example/simple\n--extra-index-url=https://extra.example\nx\n")
    assert resolve(graph).index_urls == ("https://pypi.example/simple", "https://extra.example")


def test_options_that_cannot_reach_the_steps_are_warned_about(graph, project):
    project.write("constraints.txt", "numpy<2\n")
    project.write("requirements.txt", "-c constraints.txt\n--trusted-host example.com\n"
                  "numpy==1.26.4 --hash=sha256:abc --hash=sha256:def\n")
    with pytest.warns(RequirementsWarning) as caught:
        assert resolve(graph).packages == ("numpy==1.26.4",)
    messages = [str(warning.message) for warning in caught]
    assert len(messages) == 3
    assert "requirements.txt:1: the constraints `-c constraints.txt` are ignored" in messages[0]
    assert "requirements.txt:3: the --hash of `numpy==1.26.4` is left out" in messages[2]


@pytest.mark.parametrize(("text", "line", "message", "fix"), [
    ("numpy\n-e ./mylib\n", 2, "`-e ./mylib` is an editable install", "remove the line"),
    ("--find-links https://x.example\n", 1, "cannot pass the pip option `--find-links`",
     "remove the option"),
    ("numpy --global-option=x\n", 1, "cannot pass the pip option `--global-option`",
     "remove the option"),
    ("\n-r missing.txt\n", 2, "`-r missing.txt` includes", "correct the path"),
    ("--index-url\n", 1, "`--index-url` needs a value", "--index-url VALUE"),
])
def test_bad_requirement_lines_are_explained(graph, project, text, line, message, fix):
    project.write("requirements.txt", text)
    with pytest.raises(KaleError) as caught:
        resolve(graph)
    assert message in caught.value.message and fix in caught.value.fix
    assert caught.value.location.file.endswith("requirements.txt")
    assert caught.value.location.line == line


def test_requirement_lists_understand_the_same_options(project):
    pytest.importorskip("numpy")
    project.write("reqs.txt", "pandas==2.2.3\n")
    project.write("gpu.txt", "torch==2.4.0\n")
    project.write("pyproject.toml", '''
        [tool.kale]
        requirements = ["-r reqs.txt", "--extra-index-url https://extra.example",
                        "numpy==1.26.4  # pinned"]

        [tool.kale.steps.fit-model]
        requirements = ["--index-url https://gpu.example/simple", "-r gpu.txt"]
    ''')
    environments = resolve(project.graph(TWO_STEPS))
    assert environments.packages == ("pandas==2.2.3", "numpy==1.26.4")
    assert environments.index_urls == ("https://pypi.org/simple", "https://extra.example")
    fit = environments.of("fit-model")
    assert fit.packages == ("pandas==2.2.3", "numpy==1.26.4", "torch==2.4.0")
    assert fit.index_urls == ("https://gpu.example/simple", "https://extra.example")
    project.write("pyproject.toml", '[tool.kale]\nimage = "x"\n\n[tool.kale.steps.load]\n'
                  'requirements = ["-e ."]\n')
    with pytest.raises(KaleError) as caught:
        resolve(project.graph(TWO_STEPS))
    assert "editable" in caught.value.message and caught.value.location.line == 5


# -- pyproject.toml that Kale cannot use ---------------------------------------------------------

@pytest.mark.parametrize(("settings", "message", "line", "fix"), [
    ('[project]\nname = "x"\ndependencies = "numpy"\n', "`dependencies` in [project] of "
     "pyproject.toml is 'numpy', not a list", 3, 'dependencies = ["numpy==2.1.3"]'),
    ('[project]\ndependencies = ["numpy", 3]\n', "`dependencies` in [project]", 2, "a list"),
    ("tool = 5\n", "`tool` of pyproject.toml is 5, not a table", 1, "[tool] header"),
    ('[tool]\nother = 1\nkale = "x"\n', "`kale` in [tool] of pyproject.toml is 'x', not a table",
     3, "[tool.kale] header"),
    ('project = 3\n', "`project` of pyproject.toml is 3, not a table", 1, "[project] header"),
    ('[tool.poetry]\nimage = 4\n[tool.kale]\nimage = "ok"\n[tool.kale.steps.load]\nimage = 5\n',
     "`image` in [tool.kale.steps.load] of pyproject.toml is 5", 6, "write image as"),
    ('[tool.kale.steps."load"]\n\nrequirements = "x"\n', "`requirements` in "
     "[tool.kale.steps.load]", 3, "a list"),
    ('[tool.kale]\nsteps.load.image = 5\n', "`image` in [tool.kale.steps.load]", 2, "image"),
    ('[tool.kale.steps]\nload = { image = 5 }\n', "`image` in [tool.kale.steps.load]", 2,
     "image"),
])
def test_pyproject_content_kale_cannot_use_is_explained(project, settings, message, line, fix):
    project.write("pyproject.toml", settings)
    graph = project.graph(TWO_STEPS)
    with pytest.raises(KaleError) as caught:
        resolve(graph)
    assert message in caught.value.message
    assert caught.value.location.line == line
    assert fix in caught.value.fix


# -- which steps a table configures --------------------------------------------------------------

def test_two_tables_for_one_step_are_an_error(project):
    project.write("pyproject.toml", '''
        [tool.kale.steps.fit]
        image = "custom/numpy:1"

        [tool.kale.steps.fit-model]
        requirements = ["foo"]
    ''')
    with pytest.raises(KaleError) as caught:
        resolve(project.graph(TWO_STEPS))
    error = caught.value
    assert error.message == ("step `fit-model` is configured twice: by [tool.kale.steps.fit] "
                             "(the function fit, for every call of it) and by "
                             "[tool.kale.steps.fit-model] (the step fit-model)")
    assert error.location.line == 5
    assert error.fix == "merge the two into [tool.kale.steps.fit-model]"


TWICE = '''
    @step(name="fit")
    def train(x):
        return x + 1

    @step
    def score(x):
        return x

    @pipeline
    def p():
        a = train(1)
        b = train(a)
        score(b)
        score(a)
'''


@pytest.mark.parametrize(("table", "images"), [
    ("train", {"fit": "gpu:1", "fit-2": "gpu:1", "score": "base", "score-2": "base"}),
    ("fit", {"fit": "gpu:1", "fit-2": "base", "score": "base", "score-2": "base"}),
    ("fit-2", {"fit": "base", "fit-2": "gpu:1", "score": "base", "score-2": "base"}),
    # the function's name, which is also its first call's step name: every call
    ("score", {"fit": "base", "fit-2": "base", "score": "gpu:1", "score-2": "gpu:1"}),
])
def test_a_function_table_applies_to_every_call_a_step_table_to_one(project, table, images):
    project.write("pyproject.toml", f'[tool.kale]\nimage = "base"\n'
                  f'[tool.kale.steps.{table}]\nimage = "gpu:1"\n')
    environments = resolve(project.graph(_alone(TWICE), prelude=False))
    assert {name: environments.of(name).image for name in images} == images


def test_a_step_table_and_its_function_table_are_an_error(project):
    project.write("pyproject.toml", '[tool.kale.steps.train]\nimage = "gpu:1"\n\n'
                  '[tool.kale.steps.fit-2]\nimage = "big:1"\n')
    with pytest.raises(KaleError) as caught:
        resolve(project.graph(_alone(TWICE), prelude=False))
    assert "step `fit-2` is configured twice: by [tool.kale.steps.train] (the function " \
           "train, for every call of it) and by [tool.kale.steps.fit-2]" in caught.value.message
    assert caught.value.location.line == 4
    assert "one table per call under its step name (fit, fit-2)" in caught.value.fix
