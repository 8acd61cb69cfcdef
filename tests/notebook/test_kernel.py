"""kale.notebook.kernel: the cells a real kernel executed, their labels; nothing outside IPython.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from kale.errors import SourceLocation
from kale.notebook import kernel
from tests.notebook.conftest import notebook, plain, stream_text


def test_outside_ipython_there_are_no_cells_and_nothing_to_install():
    # pytest is no IPython shell; if IPython happens to be imported, it has no shell running.
    assert kernel.kernel_cells() is None
    assert kernel.kernel_cells(globals()) is None
    assert kernel.cell_label("/tmp/ipykernel_1/2.py") is None
    assert kernel.install_error_display() is False
    assert str(SourceLocation("/tmp/ipykernel_1/2.py", 3)) == "/tmp/ipykernel_1/2.py:3:1"


def test_locations_in_files_never_load_the_kernel_module(tmp_path):
    script = tmp_path / "flow.py"
    script.write_text("x = 1\n")
    code = textwrap.dedent(f"""
        import sys
        import kale.sdk
        from kale.errors import KaleError, SourceLocation
        error = KaleError("bad", location=SourceLocation({str(script)!r}, 1))
        print(error.render().splitlines()[1])
        print(sorted({{"IPython", "kale.notebook.kernel"}} & set(sys.modules)))
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=tmp_path, check=True)
    assert result.stdout.splitlines() == ["  --> flow.py:1:1", "[]"]


def test_kernel_cells_lists_every_execution_in_order(kernels):
    nb = notebook(
        "import json, linecache\nfrom kale.notebook import kernel",
        "%env KALE_NOTEBOOK_TEST=1\nx = 1",
        "def broken(:\n    pass",
        """
        cells = kernel.kernel_cells(globals())
        print(json.dumps({
            "cells": [[c.execution_count, c.filename, c.source] for c in cells],
            "cached": all(c.lines == linecache.getlines(c.filename) for c in cells),
            "label": kernel.cell_label(cells[1].filename),
            "not a cell": kernel.cell_label(kernel.__file__),
            "other globals": kernel.kernel_cells({}),
            "no globals": len(kernel.kernel_cells()),
        }))
        """,
    )
    client = kernels.client(nb, allow_errors=True)
    with client.setup_kernel():
        for index in (0, 1, 1, 2, 3):  # the second cell twice
            client.execute_cell(nb.cells[index], index)
    report = json.loads(stream_text(nb.cells[3]))
    counts = [count for count, _, _ in report["cells"]]
    assert counts == [1, 2, 3, 5], report  # 4, the syntax error, defined nothing
    filenames = [filename for _, filename, _ in report["cells"]]
    assert all("/ipykernel_" in filename and filename.endswith(".py") for filename in filenames)
    assert filenames[1] == filenames[2]  # ipykernel names a cell's file after its text
    assert len(set(filenames)) == 3
    magic = "get_ipython().run_line_magic('env', 'KALE_NOTEBOOK_TEST=1')\nx = 1\n"
    assert [source for _, _, source in report["cells"]][:3] == [
        "import json, linecache\nfrom kale.notebook import kernel\n", magic, magic]
    assert report["cells"][3][2].startswith("cells = kernel.kernel_cells(globals())\n")
    assert report["cached"] is True
    assert report["label"] == "cell In[3]"  # the latest execution, as IPython's tracebacks say
    assert report["not a cell"] is None
    assert report["other globals"] is None
    assert report["no globals"] == 4


def test_plain_ipython_is_read_the_same_way(tmp_path):
    """The IPython terminal names cells <ipython-input-N-hash>; the cells and labels follow."""
    code = textwrap.dedent("""
        import json
        from IPython.core.interactiveshell import InteractiveShell
        from kale.notebook import kernel
        shell = InteractiveShell.instance()
        shell.run_cell("import os", store_history=True)
        shell.run_cell("y = 2", store_history=True)
        shell.run_cell("@step(retry_count=-1)\\ndef s():\\n    pass", store_history=True)
        shell.run_cell("from kale.sdk import step", store_history=True)
        shell.run_cell("@step(retry_count=-1)\\ndef s():\\n    pass", store_history=True)
        cells = kernel.kernel_cells(shell.user_ns)
        print(json.dumps([[c.execution_count, c.filename, kernel.cell_label(c.filename)]
                          for c in cells]))
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=tmp_path, timeout=60)
    assert result.returncode == 0, result.stderr
    *shown, last = result.stdout.strip().splitlines()
    cells = json.loads(last)
    assert [count for count, _, _ in cells] == [1, 2, 3, 4, 5]
    assert all(name.startswith("<ipython-input-") for _, name, _ in cells)
    assert [label for _, _, label in cells] == [f"cell In[{n}]" for n in range(1, 6)]
    output = plain("\n".join(shown))
    # Before Kale is imported a NameError has IPython's traceback; after, Kale's error is Kale's.
    assert "NameError" in output and "Traceback" in output
    kale_part = output[output.index("error: retry_count=-1"):]
    assert "  --> cell In[5], line 1\n" in kale_part
    assert "1 | @step(retry_count=-1)" in kale_part
    assert "Traceback" not in kale_part
