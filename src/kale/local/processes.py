"""One OS process per step attempt, forked from a warm server process.

Starting a fresh interpreter per step costs hundreds of milliseconds (kfp.local pays ~500 ms).
Kale starts one fork server per session (``multiprocessing``'s forkserver), with Kale's runtime and
the libraries the steps import already loaded, and forks every attempt from it: a new process in
milliseconds, still isolated (its own memory, its own working directory, nothing of the user's
script). Each attempt leads its own process group, so a timeout or Ctrl-C kills the step and
everything it started; and on Linux it dies with the fork server if Kale itself is killed.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import sys
from multiprocessing.connection import Connection
from typing import Any

from kale.runtime import StepFailure, StepTask, run_step

_context: Any = None


def context(preload: list[str]) -> Any:
    """The multiprocessing context steps start from (the fork server where the OS has one)."""
    global _context
    if _context is None:
        if "forkserver" in multiprocessing.get_all_start_methods():
            _context = multiprocessing.get_context("forkserver")
            _context.set_forkserver_preload(["kale.runtime", "kale.marshal", *preload])
        else:  # Windows: no fork; each step is a fresh interpreter
            _context = multiprocessing.get_context("spawn")
    return _context


def _die_with_parent() -> None:
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(Exception):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _redirect_output(log_path: str) -> None:
    """Send fd 1 and 2 (print, logging, C libraries, subprocesses) to the attempt's log."""
    os.makedirs(os.path.dirname(log_path), exist_ok=True)
    descriptor = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    for target in (1, 2):
        os.dup2(descriptor, target)
    os.close(descriptor)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.reconfigure(line_buffering=True)


def child_main(task: StepTask, log_path: str, channel: Connection) -> None:
    """The body of a step process: run the attempt, report to the scheduler, exit."""
    with contextlib.suppress(OSError):
        os.setpgid(0, 0)
    _die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    _redirect_output(log_path)
    try:
        result = run_step(task, lambda event, details: channel.send((event, details)))
    except StepFailure as failure:
        message: tuple[str, dict[str, Any]] = ("failed", failure.details)
    except BaseException as error:  # a bug in Kale itself must still reach the summary
        import traceback

        message = ("failed", {"kind": "internal", "message": f"Kale failed to run step "
                              f"`{task.step}`: {type(error).__name__}: {error}",
                              "traceback": traceback.format_exc()})
    else:
        message = ("done", result)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    channel.send(message)
    channel.close()


def kill_tree(process: Any) -> None:
    """Kill a step process and everything it started (its process group)."""
    pid = process.pid
    if pid is None:
        return
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError, OSError):
        with contextlib.suppress(Exception):
            process.kill()
