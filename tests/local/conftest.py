"""Helpers for local-run tests: write a pipeline script, run it as a user would, read the record."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest


class ScriptRunner:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.home = root / "kale-home"

    def write(self, text: str, name: str = "pipeline.py") -> Path:
        path = self.root / name
        path.write_text("from kale.sdk import pipeline, step\n" + textwrap.dedent(text))
        return path

    def env(self, **extra: str) -> dict[str, str]:
        return {**os.environ, "KALE_HOME": str(self.home), "KALE_PROGRESS": "plain", **extra}

    def run(self, text: str, *args: str, timeout: float = 60, **env: str
            ) -> subprocess.CompletedProcess:
        path = self.write(text)
        return subprocess.run([sys.executable, str(path), *args], capture_output=True,
                              text=True, cwd=self.root, env=self.env(**env), timeout=timeout)

    def start(self, text: str, *args: str) -> subprocess.Popen:
        path = self.write(text)
        return subprocess.Popen([sys.executable, str(path), *args], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, cwd=self.root,
                                env=self.env())

    def records(self) -> list[dict[str, Any]]:
        """Every run's record as Kale's readers see it (the snapshot and the events after)."""
        from kale.local.record import read_record

        found = [read_record(path.parent) for path in (self.home / "runs").glob("*/run.json")]
        return [record for record in found if record is not None]

    def record(self) -> dict[str, Any]:
        found = self.records()
        assert len(found) == 1, found
        return found[0]


#: A library that starts a thread holding a lock when imported: forking while the thread holds
#: it would leave the child's copy locked forever.
THREADED_LIBRARY = (
    "import threading, time\n"
    "lock = threading.Lock()\n"
    "def hold():\n"
    "    while True:\n"
    "        with lock:\n"
    "            time.sleep(0.05)\n"
    "        time.sleep(0.001)\n"
    "threading.Thread(target=hold, daemon=True).start()\n"
    "def record():\n"
    "    with lock:\n"
    "        return 'recorded'\n")


@pytest.fixture
def script(tmp_path: Path) -> ScriptRunner:
    return ScriptRunner(tmp_path)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie still answers kill(0); it is dead for our purpose
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True
