"""Pipelines written in notebook cells, executed top to bottom in a real kernel as a user runs them.
"""

from __future__ import annotations

import pytest

from tests.notebook.conftest import error_output, notebook, plain, stream_text

PIPELINE_CELLS = (
    """
    @step
    def make(n):
        import math
        return [math.sqrt(i) ** 2 for i in range(n)]

    @step
    def total(values):
        return round(sum(values), 6)
    """,
    """
    @pipeline(name="notebook-sum")
    def summed(n=3):
        values = make(n)
        total(values)
    """,
)


def test_a_pipeline_of_self_contained_steps_runs_from_its_cells(kernels):
    nb = kernels.run(notebook(
        "from kale.sdk import pipeline, step",
        *PIPELINE_CELLS,
        "run = summed(n=5)",
        "print(run.status, run.output('total', 'return'))",
        "from kale.graph.render import render_text\nprint(render_text(summed.graph))",
    ))
    assert "kale: running pipeline notebook-sum locally" in stream_text(nb.cells[3])
    assert stream_text(nb.cells[4]) == "succeeded 10.0\n"
    # The kernel's working directory is the project root: the run record is kept there.
    assert len(list((kernels.folder / ".kale" / "runs").glob("*/run.json"))) == 1
    assert "  defined at cell In[3], line 2\n" in stream_text(nb.cells[5])


def test_a_definition_error_shows_as_kales_message_naming_the_cell(kernels):
    nb = kernels.run(notebook(
        "from kale.sdk import pipeline, step",
        *PIPELINE_CELLS,
        """
        @pipeline
        def spins():
            while True:
                pass

        spins()
        """,
        """
        @step(timeout=-1)
        def slow():
            pass
        """,
        "@pipeline(autosnapshot=True)\ndef snap():\n    make(1)",
    ), allow_errors=True)
    spin_cell, slow_cell, snap_cell = nb.cells[3:]

    error = error_output(spin_cell)
    assert error.ename == "PipelineDefinitionError"
    lines = [plain(line) for line in error.traceback]
    assert lines == [
        "error: `while` statements are not supported in a pipeline body",
        f"  --> cell In[{spin_cell.execution_count}], line 3",
        "  |",
        "3 |     while True:",
        "  |     ^^^^^^^^^^^",
        "  fix: a pipeline's loops run a known number of times, one task per item (as "
        "Kubeflow's ParallelFor does): loop with `for x in items:` over a step's output or a "
        "list parameter, or put the `while` inside a step",
        "(run %env KALE_DEBUG=1 to see the Python traceback)",
    ]
    assert error.traceback[0].startswith("\x1b[1;31merror:")  # colored, as notebooks show ANSI

    lines = [plain(line) for line in error_output(slow_cell).traceback]
    assert lines[0].startswith("error: timeout=-1 is not valid")
    assert lines[1:5] == [f"  --> cell In[{slow_cell.execution_count}], line 1", "  |",
                          "1 | @step(timeout=-1)", "  |       ^^^^^^^^^^"]
    for output in (error_output(spin_cell), error_output(slow_cell)):
        shown = plain("\n".join(output.traceback))
        assert "Traceback" not in shown and "kale/" not in shown and "ipykernel_" not in shown

    # A warning points into the cell the same way; the cell still runs.
    assert not [output for output in snap_cell.outputs if output.output_type == "error"]
    warning = stream_text(snap_cell)
    assert warning.startswith("warning: autosnapshot=True has no effect")
    assert f"  --> cell In[{snap_cell.execution_count}], line 1\n" in warning


def test_other_errors_and_handlers_keep_their_own_display(kernels):
    nb = kernels.run(notebook(
        # A handler of the user's, registered before Kale is imported, keeps working.
        """
        def mine(shell, kind, error, tb, tb_offset=None):
            print("my handler:", error)

        get_ipython().set_custom_exc((KeyError,), mine)
        """,
        "from kale.sdk import pipeline, step\nimport kale.notebook.kernel as kernel",
        "{}['missing']",
        "1 / 0",
        "kernel.install_error_display(); kernel.install_error_display()\n"
        "print([kind.__name__ for kind in get_ipython().custom_exceptions])",
        "@step(retry_count=-2)\ndef s():\n    pass",
        "%env KALE_DEBUG=1",
        "@step(retry_count=-3)\ndef s():\n    pass",
    ), allow_errors=True)
    assert stream_text(nb.cells[2]) == "my handler: 'missing'\n"

    division = plain("\n".join(error_output(nb.cells[3]).traceback))
    assert "ZeroDivisionError" in division and "Traceback" in division
    assert f"Cell In[{nb.cells[3].execution_count}], line 1" in division

    # Installed twice more, it is still one handler, after the user's, showing each error once.
    assert stream_text(nb.cells[4]) == "['KeyError', 'KaleError']\n"
    once = [plain(line) for line in error_output(nb.cells[5]).traceback]
    assert once[0].startswith("error: retry_count=-2 is not valid")
    assert sum(line.startswith("error:") for line in once) == 1

    debug = plain("\n".join(error_output(nb.cells[7]).traceback))
    assert "Traceback" in debug and "kale/sdk/" in debug  # KALE_DEBUG: the frames are back
    assert "retry_count=-3 is not valid" in debug


MODULE_CONTEXT_CELLS = (
    "import numpy as np\nfrom kale.sdk import pipeline, step",
    """
    def scaled(values, factor):
        return [value * factor for value in values]
    """,
    """
    @step
    def make(n):
        return np.arange(n)

    @step
    def total(values):
        result = float(np.sum(scaled(values, 2)))
        print(f"total is {result}")
        return result

    @pipeline(name="notebook-context")
    def context(n=4):
        values = make(n)
        total(values)
    """,
)


def test_steps_use_imports_and_helpers_of_other_cells(kernels):
    nb = kernels.run(notebook(
        *MODULE_CONTEXT_CELLS,
        "run = context.run(n=4)",
        "print(run.status, run.output('total', 'return'))",
    ))
    assert "total is 12.0" in stream_text(nb.cells[3])
    assert stream_text(nb.cells[4]) == "succeeded 12.0\n"


def test_a_notebook_pipeline_compiles_and_runs_under_kfp_local(kernels, tmp_path,
                                                              prepared_image):
    pytest.importorskip("kfp")
    from tests.kfp.test_compiler import run_under_kfp_local

    package = tmp_path / "context.yaml"
    kernels.run(notebook(*MODULE_CONTEXT_CELLS, f"context.compile({str(package)!r})"))
    assert package.is_file()
    # From a folder of its own, in processes that never saw the kernel: the package carries the
    # cells' imports and helper.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    output = run_under_kfp_local(package, elsewhere)
    assert "total is 12.0" in output


def test_a_failed_step_names_its_cell_and_the_cell_of_the_helper(kernels):
    nb = kernels.run(notebook(
        "from kale.sdk import pipeline, step",
        "def divide(x):\n    return x / 0",
        "@step\ndef boom():\n    return divide(1)\n\n"
        "@pipeline(name='boom')\ndef exploding():\n    boom()",
        "exploding()",
        "LATER = 1",
    ), allow_errors=True)
    shown = plain("\n".join(error_output(nb.cells[3]).traceback))
    assert "step `boom` raised ZeroDivisionError: division by zero" in shown
    assert f"Cell In[{nb.cells[2].execution_count}], line 3, in boom" in shown
    assert f"Cell In[{nb.cells[1].execution_count}], line 2, in divide" in shown
    assert "ipykernel_" not in shown
