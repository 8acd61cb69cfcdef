"""Notebooks built with nbformat and executed in real kernels that run this test venv's Python.

The kernel spec is written into the test's own folder, so no kernel installed on the machine (a
``python3`` of another Python, without Kale) can be picked up instead.
"""

from __future__ import annotations

import json
import re
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

from jupyter_client.kernelspec import KernelSpecManager  # noqa: E402
from jupyter_client.manager import KernelManager  # noqa: E402

_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def plain(text: str) -> str:
    """Text without the ANSI colors of tracebacks."""
    return _ANSI.sub("", text)


def notebook(*cells: str) -> Any:
    """A notebook of code cells, each dedented."""
    return nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_code_cell(textwrap.dedent(cell).strip("\n")) for cell in cells])


def error_output(cell: Any) -> dict[str, Any]:
    errors = [output for output in cell.outputs if output.output_type == "error"]
    assert len(errors) == 1, cell.outputs
    return errors[0]


def stream_text(cell: Any) -> str:
    return "".join(output.text for output in cell.outputs if output.output_type == "stream")


class Kernels:
    """Runs notebooks in ``folder`` (the kernel's working directory), in fresh kernels."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        specs = folder / "kernels"
        (specs / "python3").mkdir(parents=True)
        (specs / "python3" / "kernel.json").write_text(json.dumps({
            "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": "Kale tests", "language": "python",
        }))
        self.spec_manager = KernelSpecManager(kernel_dirs=[str(specs)])

    def client(self, nb: Any, *, allow_errors: bool = False, timeout: int = 60) -> Any:
        manager = KernelManager(kernel_name="python3", kernel_spec_manager=self.spec_manager)
        return nbclient.NotebookClient(
            nb, km=manager, timeout=timeout, allow_errors=allow_errors,
            resources={"metadata": {"path": str(self.folder)}})

    def run(self, nb: Any, **kwargs: Any) -> Any:
        """Execute every cell, top to bottom; the executed notebook (outputs in its cells)."""
        self.client(nb, **kwargs).execute()
        return nb


@pytest.fixture
def kernels(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Kernels]:
    # The kernel starts in tmp_path with the test's environment, minus anything that would
    # change how Kale shows errors or where it keeps runs.
    for name in ("KALE_DEBUG", "KALE_HOME", "NO_COLOR", "IPYKERNEL_CELL_NAME"):
        monkeypatch.delenv(name, raising=False)
    yield Kernels(tmp_path)
