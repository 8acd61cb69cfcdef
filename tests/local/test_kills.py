"""Runs and steps killed from outside (SIGKILL mid-write, the runner SIGKILLed, Ctrl-C): what
is left on disk, in the process table and in `kale runs` / `kale show`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from tests.local.conftest import pid_alive
from tests.test_cli import kale

# A backend of the project that writes 20 MB, then stalls: a kill then lands mid-write. With
# `atomic`, through kale.marshal.atomic_write (a `.tmp` file), else straight at the path it is
# given (Kale's `.partial` file).
SLOW_BACKEND = '''
import os, time
from kale.marshal import atomic_write, register

class Big:
    pass

def _write(handle):
    handle.write(b"x" * 20_000_000)
    handle.flush()
    open("writing", "w").write(f"{os.getpid()} {os.getppid()}")
    time.sleep(60)

def _save(value, path):
    if ATOMIC:
        atomic_write(path, _write)
    else:
        with open(path, "wb") as handle:
            _write(handle)

register("big", Big, save=_save, load=lambda path: Big())
'''

PIPELINE = '''
@step
def make():
    import slow_backend
    return slow_backend.Big()

@pipeline
def p():
    make()

if __name__ == "__main__":
    p()
'''


def start(script, atomic, **popen):
    (script.root / "slow_backend.py").write_text(f"ATOMIC = {atomic}\n" + SLOW_BACKEND)
    path = script.write(PIPELINE)
    process = subprocess.Popen([sys.executable, str(path)], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, cwd=script.root,
                               env=script.env(), **popen)
    flag = script.root / "writing"
    deadline = time.monotonic() + 30
    while not flag.exists() or not flag.read_text():
        assert time.monotonic() < deadline and process.poll() is None, process.communicate()
        time.sleep(0.05)
    step, zygote = map(int, flag.read_text().split())
    return process, step, zygote


def partial_files(script):
    return [path for path in (script.home / "runs").rglob("*")
            if path.name.endswith((".tmp", ".partial"))]


def wait_dead(*pids):
    for pid in pids:
        deadline = time.monotonic() + 5
        while pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not pid_alive(pid), pid


@pytest.mark.parametrize("atomic", [True, False], ids=["atomic_write", "registered"])
def test_a_step_killed_mid_write_leaves_no_partial_file(script, atomic):
    process, step, _ = start(script, atomic)
    assert partial_files(script)  # the kill below lands mid-write
    os.kill(step, signal.SIGKILL)
    _, err = process.communicate(timeout=30)
    assert process.returncode == 1, err
    assert "step `make` was killed by SIGKILL" in err
    assert partial_files(script) == []


def test_a_sigkilled_runner_shows_as_interrupted_and_leaves_nothing(script):
    process, step, zygote = start(script, atomic=True)
    process.kill()
    process.communicate(timeout=30)
    wait_dead(step, zygote)  # the step process server ends the steps, then itself
    assert partial_files(script) == []
    listing = kale("runs", "--home", str(script.home))
    assert listing.returncode == 0, listing.stderr
    assert "interrupted (runner gone)" in listing.stdout.splitlines()[2]
    record = script.record()
    shown = kale("show", record["id"][:8], "--home", str(script.home))
    assert shown.returncode == 0, shown.stderr
    assert f"status interrupted (runner gone): the process that ran it (pid {process.pid}) " \
           "ended before the run did" in shown.stdout
    assert "attempt 1: killed: was stopped: runner gone" in shown.stdout
    assert "make  cancelled" in shown.stdout


def test_the_next_run_sweeps_what_a_killed_run_left(script):
    # The runner and its step-process server die at once (the whole process group, as a CI
    # job's timeout does): nobody is left to clean up but the next run in the same home.
    process, step, _ = start(script, atomic=True, start_new_session=True)
    os.killpg(process.pid, signal.SIGKILL)
    process.communicate(timeout=30)
    wait_dead(step)
    assert partial_files(script)
    killed = script.record()
    assert killed["status"] == "running"  # as the killed runner left it
    result = script.run('''
        @step
        def quick():
            return 1

        @pipeline
        def q():
            quick()

        if __name__ == "__main__":
            q()
    ''')
    assert result.returncode == 0, result.stderr
    assert partial_files(script) == []
    swept = next(run for run in script.records() if run["id"] == killed["id"])
    assert swept["status"] == "interrupted" and swept["runner_gone"]
    assert swept["steps"]["make"]["status"] == "cancelled"
    assert list((script.home / "running").iterdir()) == []


def test_a_running_run_is_not_taken_for_a_gone_one(script):
    process, _, _ = start(script, atomic=True)
    try:
        listing = kale("runs", "--home", str(script.home))
        assert " running " in listing.stdout.splitlines()[2] + " "
        assert "runner gone" not in listing.stdout
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=30)
