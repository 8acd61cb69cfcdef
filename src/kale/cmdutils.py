"""Running any command from a step: ``cmdutils.run("which echo")``, ``cmdutils.yld("date")``.

The helpers of Arrikto Rok's ``rok_common.cmdutils``, which scripts written for Arrikto's Kale
import (``from rok_common import cmdutils`` works too), built on the standard library only:

- ``run(cmd)`` runs a command (a string, split as a shell would but run without one unless
  ``shell=True``; or a list of arguments), streams its output to the step's output as it comes
  (stdout to ``sys.stdout``, stderr to ``sys.stderr``) and returns an ``ExtCommand``: command,
  id, status, return code, pid, and the whole output (``.out``, ``.err``). A non-zero exit raises
  ``CommandExecutionError`` naming the command, the return code and the end of its stderr.
- ``yld(cmd)`` captures stdout and returns it stripped (stderr still streams).

A command runs in a process group (and session) of its own. When it must stop (its
``timeout``, the step's timeout, Ctrl-C, any exception while it runs), its whole process tree
is ended: SIGTERM, then SIGKILL after ``kill_grace`` seconds to whatever is left, children that
left the group included.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shlex
import signal
import subprocess
import sys
import threading
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence
    from typing import Any

__all__ = ["CommandExecutionError", "CommandTimeoutError", "ExtCommand", "run", "yld"]

#: Lines of stderr an error message ends with.
STDERR_TAIL_LINES = 20

#: Seconds to wait, once a command exited, for what processes it left running still write
#: to its pipes.
READ_AFTER_EXIT = 5.0

_ids = itertools.count(1)


class CommandExecutionError(Exception):
    """A command exited with a non-zero status (or could not start, or timed out).

    ``command`` is the command as text, ``returncode`` its exit status (negative: killed by that
    signal; None: it never started), ``stderr`` its whole stderr, ``ext`` the ``ExtCommand``."""

    def __init__(self, message: str, command: str, returncode: int | None, stderr: str = "",
                 ext: ExtCommand | None = None) -> None:
        super().__init__(message)
        self.command, self.returncode, self.stderr, self.ext = command, returncode, stderr, ext

    def __reduce__(self) -> tuple[Any, ...]:  # step processes send errors back pickled
        return type(self), (str(self), self.command, self.returncode, self.stderr, None)


class CommandTimeoutError(CommandExecutionError, TimeoutError):
    """A command ran longer than its ``timeout``; it was ended with its process tree."""


class ExtCommand:
    """One command: what was run, its state and what it printed.

    ``status`` is ``PENDING``, ``RUNNING``, ``FINISHED`` (exit status 0), ``FAILED`` (non-zero),
    ``KILLED`` (ended by Kale: a timeout, Ctrl-C) or ``ERROR`` (it could not start)."""

    PENDING, RUNNING, FINISHED, FAILED, KILLED, ERROR = (
        "PENDING", "RUNNING", "FINISHED", "FAILED", "KILLED", "ERROR")

    def __init__(self, cmd: str | Sequence[str], shell: bool = False) -> None:
        self.id = next(_ids)
        self.shell = shell
        if isinstance(cmd, (str, bytes)):
            self.cmd = os.fsdecode(cmd)
            self.args: list[str] = [self.cmd] if shell else shlex.split(self.cmd)
        else:
            self.args = [os.fsdecode(os.fspath(part)) for part in cmd]
            self.cmd = self.args[0] if shell and len(self.args) == 1 else shlex.join(self.args)
        self.status = self.PENDING
        self.returncode: int | None = None
        self.pid: int | None = None
        self.out = ""
        self.err = ""
        self.started: float | None = None
        self.ended: float | None = None

    @property
    def ret(self) -> int | None:
        """The exit status, as Rok's cmdutils called it."""
        return self.returncode

    @property
    def duration(self) -> float | None:
        if self.started is None:
            return None
        return (self.ended or time.time()) - self.started

    def __repr__(self) -> str:
        ret = f" (ret: {self.returncode})" if self.returncode is not None else ""
        return (f"<ExtCommand [{self.id}] `{self.cmd}', status={self.status}{ret}, "
                f"PID={self.pid}, shell={self.shell}>")


def stderr_tail(text: str, lines: int = STDERR_TAIL_LINES) -> str:
    """The last ``lines`` lines of a command's output (``...`` first when some were left out)."""
    parts = text.rstrip("\n").splitlines()
    shown = parts[-lines:]
    return ("...\n" if len(parts) > lines else "") + "\n".join(shown)


def _children() -> dict[int, list[int]]:
    found: dict[int, list[int]] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return found
    for entry in entries:
        if entry.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError), \
                    open(f"/proc/{entry}/stat", "rb") as handle:
                found.setdefault(int(handle.read().rsplit(b")", 1)[1].split()[1]),
                                 []).append(int(entry))
    return found


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (Linux: read from /proc; elsewhere ``pid`` alone)."""
    children = _children()
    tree, pending = [pid], [pid]
    while pending:
        for child in children.get(pending.pop(), []):
            tree.append(child)
            pending.append(child)
    return tree


def end_tree(process: subprocess.Popen[Any], grace: float = 3.0) -> None:
    """End a command started in a session of its own, with every process it started: SIGTERM
    to its group and tree, then SIGKILL to what is left after ``grace`` seconds."""
    tree = set(process_tree(process.pid))
    for number in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(OSError):
            os.killpg(process.pid, number)
        for pid in tree:
            with contextlib.suppress(OSError):
                os.kill(pid, number)
        if number == signal.SIGKILL:
            break
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            if process.poll() is not None:
                tree |= set(process_tree(process.pid)) - {process.pid}
                alive = [pid for pid in tree - {process.pid} if _alive(pid)]
                if not alive:
                    break
            time.sleep(0.02)
    with contextlib.suppress(Exception):
        process.wait(timeout=5)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            return handle.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except OSError:
        return False


def _pump(stream: Any, parts: list[str], echo: Callable[[str], None] | None) -> None:
    """Read a pipe line by line: keep each line, and echo it as it comes."""
    import codecs

    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    for chunk in iter(stream.readline, b""):
        text = decoder.decode(chunk)
        parts.append(text)
        if echo is not None:
            with contextlib.suppress(Exception):  # a closed sys.stdout must not stop the read
                echo(text)
    rest = decoder.decode(b"", final=True)
    if rest:
        parts.append(rest)
    stream.close()


def _writer(name: str) -> Callable[[str], None]:
    def write(text: str) -> None:
        target = getattr(sys, name)
        target.write(text)
        target.flush()

    return write


def _hold_interrupts() -> Callable[[], None]:
    """Hold Ctrl-C while a command starts, and return what lets it through. A KeyboardInterrupt
    raised inside ``subprocess.Popen`` after the command has started would leave no handle on
    it, and the command runs in a session of its own: it would outlive us. Held, it is raised
    once the handle is kept, where the command's tree is ended. (Only the main thread gets
    signals; elsewhere there is nothing to hold.)"""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous = signal.getsignal(signal.SIGINT)
    if previous in (signal.SIG_IGN, None):
        return lambda: None
    held: list[Any] = []
    signal.signal(signal.SIGINT, lambda number, frame: held.append(frame))

    def release() -> None:
        if signal.getsignal(signal.SIGINT) is not previous:
            signal.signal(signal.SIGINT, previous)
        if held:
            frame = held.pop()
            if callable(previous):
                previous(signal.SIGINT, frame)
            else:  # the default action: end the process as Ctrl-C would have
                os.kill(os.getpid(), signal.SIGINT)

    return release


def run(cmd: str | Sequence[str], *, shell: bool = False, timeout: float | None = None,
        env: Mapping[str, str] | None = None, cwd: str | os.PathLike[str] | None = None,
        stdin: str | bytes | None = None, check: bool = True, stream: bool = True,
        echo_stdout: bool = True, kill_grace: float = 3.0) -> ExtCommand:
    """Run a command, streaming its output, and return its ``ExtCommand``.

    ``cmd`` is a string (split as a shell splits it, then run without a shell; with
    ``shell=True``, run by ``/bin/sh -c``) or a list of arguments. ``env`` adds variables to
    (or overrides them in) the current environment; ``cwd`` is the working directory; ``stdin``
    text or bytes to feed it (default: no input). ``timeout`` (seconds) ends it with its process
    tree and raises ``CommandTimeoutError``. With ``check`` (the default), a non-zero exit
    raises ``CommandExecutionError``; ``stream=False`` keeps the output without echoing it
    (``echo_stdout=False``: stdout only).
    """
    ext = ExtCommand(cmd, shell)
    environment = None
    if env is not None:
        environment = dict(os.environ)
        environment.update({str(key): str(value) for key, value in env.items()})
    release = _hold_interrupts()
    try:
        process = subprocess.Popen(
            ext.args[0] if shell else ext.args, shell=shell, cwd=cwd, env=environment,
            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    except BaseException as error:
        release()  # nothing started: a held Ctrl-C is raised as it is
        if not isinstance(error, OSError):
            raise
        ext.status = ExtCommand.ERROR
        raise CommandExecutionError(
            f"command `{ext.cmd}` could not start: {error.strerror or error}"
            + (" (is it installed, and on PATH?)" if isinstance(error, FileNotFoundError)
               else ""), ext.cmd, None, "", ext) from None
    ext.pid, ext.status, ext.started = process.pid, ExtCommand.RUNNING, time.time()
    out: list[str] = []
    err: list[str] = []
    readers: list[threading.Thread] = []
    timed_out = False
    try:
        # Everything after the command started is inside the guard: a Ctrl-C can land while a
        # reader thread starts, and the command's tree must not outlive us.
        release()
        readers += [
            threading.Thread(target=_pump, args=(process.stdout, out,
                                                 _writer("stdout") if stream and echo_stdout
                                                 else None), daemon=True),
            threading.Thread(target=_pump, args=(process.stderr, err,
                                                 _writer("stderr") if stream else None),
                             daemon=True),
        ]
        for reader in readers:
            reader.start()
        if stdin is not None:
            data = stdin.encode() if isinstance(stdin, str) else stdin
            with contextlib.suppress(BrokenPipeError):
                process.stdin.write(data)  # type: ignore[union-attr]
            with contextlib.suppress(OSError):
                process.stdin.close()  # type: ignore[union-attr]
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            end_tree(process, kill_grace)
    except BaseException:
        # Ctrl-C, the step's timeout (StepTimeout), anything: nothing the command started stays.
        ext.status = ExtCommand.KILLED
        end_tree(process, kill_grace)
        _finish(ext, process, readers, out, err)
        raise
    _finish(ext, process, readers, out, err)
    if timed_out:
        ext.status = ExtCommand.KILLED
        raise CommandTimeoutError(
            f"command `{ext.cmd}` timed out after {timeout:g}s and was ended with the "
            "processes it started" + (f"; the end of its stderr:\n{stderr_tail(ext.err)}"
                                      if ext.err.strip() else ""),
            ext.cmd, ext.returncode, ext.err, ext)
    if ext.returncode != 0:
        ext.status = ExtCommand.FAILED
        if check:
            code = ext.returncode
            how = f"was killed by signal {-code}" if code is not None and code < 0 else \
                f"exited with status {code}"
            raise CommandExecutionError(
                f"command `{ext.cmd}` {how}"
                + (f"; the end of its stderr:\n{stderr_tail(ext.err)}" if ext.err.strip()
                   else " (no stderr)"),
                ext.cmd, code, ext.err, ext)
    else:
        ext.status = ExtCommand.FINISHED
    return ext


def _finish(ext: ExtCommand, process: subprocess.Popen[Any], readers: list[threading.Thread],
            out: list[str], err: list[str]) -> None:
    # A process the command left running (`server &`) may hold its pipes open after it
    # exits: wait a little for the output still in them, 5 s for both pipes together (not 5 s
    # each), then return; it keeps running, as it would after a shell's `&`.
    deadline = time.monotonic() + READ_AFTER_EXIT
    for reader in readers:
        if reader.ident is None:  # interrupted before it started
            continue
        reader.join(timeout=max(0.0, deadline - time.monotonic()))
    ext.returncode = process.poll()
    ext.ended = time.time()
    ext.out, ext.err = "".join(out), "".join(err)


def yld(cmd: str | Sequence[str], **options: Any) -> str:
    """Run a command and return its stdout, stripped (stderr streams to the step's output);
    on a non-zero exit raise ``CommandExecutionError`` with the end of its stderr. Takes
    ``run``'s keyword arguments."""
    options.setdefault("echo_stdout", False)  # kept, not echoed
    return run(cmd, **options).out.strip()
