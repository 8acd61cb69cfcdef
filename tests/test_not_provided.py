"""APIs of other Kales that this Kale does not provide: importing one says so, where, and what
to do instead (kale.not_provided)."""

from __future__ import annotations

import pickle
import subprocess
import sys
import textwrap

import pytest

from kale.errors import DefinitionError
from kale.not_provided import APIS, ModuleNotProvidedError, NotProvidedError
from tests.test_cli import kale as run_kale

# (import statement, API, a module?, words of the advice)
IMPORTS = [
    ("import kale.distributed", "kale.distributed", True, "Kubeflow Training SDK"),
    ("from kale.distributed import pytorch", "kale.distributed", True, "PyTorchJob"),
    ("from kale import distributed", "kale.distributed", True, "kubeflow-training"),
    ("import kale.types", "kale.types", True, "Python type"),
    ("from kale import types", "kale.types", True, "Python type"),
]


@pytest.mark.parametrize(("statement", "api", "module", "advice"), IMPORTS)
def test_each_import_says_what_is_missing_where_and_what_to_do(tmp_path, statement, api,
                                                              module, advice):
    source = tmp_path / "script.py"
    source.write_text(f"x = 1\n{statement}\n")
    with pytest.raises(ImportError) as caught:
        exec(compile(source.read_text(), str(source), "exec"), {"__name__": "script"})
    error = caught.value
    assert isinstance(error, NotProvidedError) and isinstance(error, DefinitionError)
    assert isinstance(error, ModuleNotFoundError) is module
    assert isinstance(error, ModuleNotProvidedError) is module
    assert error.message.startswith(f"{api} is not ")
    assert "by this Kale" in error.message
    assert advice in error.fix
    assert (error.location.file, error.location.line) == (str(source), 2)
    assert error.name == (api if module else api.rpartition(".")[0])


def test_every_api_is_tried():
    assert {api for _, api, _, _ in IMPORTS} == set(APIS)


def test_what_kale_does_have_is_untouched():
    import kale
    import kale.sdk

    assert callable(kale.sdk.step) and kale.__version__
    with pytest.raises(AttributeError):
        kale.sdk.no_such_name
    with pytest.raises(ImportError, match="cannot import name 'no_such_name'"):
        exec("from kale.sdk import no_such_name", {})


def test_a_script_can_still_catch_it_as_an_import_error(tmp_path):
    (tmp_path / "script.py").write_text(textwrap.dedent('''
        try:
            from kale.distributed import pytorch
        except ModuleNotFoundError as error:
            print("FELL BACK", error.name)
    '''))
    result = subprocess.run([sys.executable, "script.py"], capture_output=True, text=True,
                            cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "FELL BACK kale.distributed"


def test_it_survives_a_trip_between_processes():
    error = pickle.loads(pickle.dumps(NotProvidedError("kale.types", "m", fix="f")))
    assert (type(error), error.api, error.name, error.message, error.fix) == (
        NotProvidedError, "kale.types", "kale", "m", "f")


GRAPHED = '''
from kale.sdk import pipeline, step
{imports}


@step
def one():
    return 1


@pipeline
def flow():
    one()
'''


def test_kale_graph_shows_the_message_at_the_scripts_line(tmp_path):
    (tmp_path / "flow.py").write_text(GRAPHED.format(imports="from kale import types"))
    result = run_kale("graph", "flow.py", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith("error: kale.types is not supported by this Kale")
    assert "--> flow.py:3:1" in result.stderr and "Python type" in result.stderr
    assert "Traceback" not in result.stderr and "fix the error above" not in result.stderr


def test_kale_graph_names_the_scripts_line_for_an_import_in_a_module_it_uses(tmp_path):
    (tmp_path / "helpers.py").write_text("import os\nimport kale.distributed\n")
    (tmp_path / "flow.py").write_text(GRAPHED.format(imports="import helpers"))
    result = run_kale("graph", "flow.py", cwd=tmp_path)
    assert result.returncode == 2
    assert "kale.distributed is not supported by this Kale" in result.stderr
    assert "(imported by way of flow.py:3)" in result.stderr
    assert "--> helpers.py:2:1" in result.stderr
    assert "Traceback" not in result.stderr
