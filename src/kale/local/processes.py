"""One OS process per step attempt, forked from a warm "zygote" process.

Starting a fresh interpreter per step costs hundreds of milliseconds (kfp.local pays ~500 ms), and
``multiprocessing``'s fork server re-imports the user's script in every child. Kale starts one small
server process per run instead, with Kale's runtime and the libraries the steps import already
loaded, and forks every attempt from it: a new, isolated process (its own memory and working
directory, nothing of the user's script) in about a millisecond. The zygote forks each
attempt's process before the attempt is asked for (a "spare" that waits for its one task), so
a chain of steps does not wait for a fork at every step; it also compiles each step's code
once, for the processes it forks later (``kale.runtime.precompile``).

Each attempt leads its own process group, so a timeout or Ctrl-C kills the step and everything it
started. On Linux the zygote and every attempt are child subreapers: a process a step started that
left the step's group and session (a daemon that forked twice) is re-parented to its attempt
while that lives, then to the zygote, never to init. So any child of the zygote that is not a
live attempt (nor the zygote's own) is a leftover of an ended attempt, and is killed; no mark
that a daemon could lose (an environment variable, a process group) is needed. A step dies with
the zygote, and the zygote, when Kale's process goes away, kills every attempt and leftover
before it exits, so a killed run leaves no orphans.

Protocol: the scheduler writes requests to the zygote's stdin; the zygote writes its events
(forked, exited) to its stdout, and each attempt's process writes its own (started, metric,
done) to a named pipe of its own next to its log (``AttemptChannel``), so that nothing a step
writes can garble another's events or the zygote's. Every message is length-prefixed and small
enough (< PIPE_BUF) for one atomic write, so messages from the processes a step started never
interleave; a step's result, which can be large, goes to a file next to its log. Requests are
pickles (Kale's own objects, read by Kale's own zygote); events are JSON, since a step's
process could write anything to its channel: what Kale's process reads from a step must never
run code there.
"""

from __future__ import annotations

import _thread
import contextlib
import json
import os
import pickle
import select
import signal
import struct
import sys

TYPE_CHECKING = False  # typing is not imported: the zygote must start fast
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, ClassVar

_HEADER = struct.Struct(">I")


def _frame(message: Any) -> bytes:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return _HEADER.pack(len(data)) + data


def _event(message: tuple[str, str, Any]) -> bytes:
    data = json.dumps(message).encode()
    return _HEADER.pack(len(data)) + data


def _unframe(buffer: bytearray, decode: Callable[[bytes], Any] = pickle.loads) -> list[Any]:
    messages = []
    while len(buffer) >= _HEADER.size:
        (size,) = _HEADER.unpack_from(buffer)
        if len(buffer) < _HEADER.size + size:
            break
        messages.append(decode(bytes(buffer[_HEADER.size:_HEADER.size + size])))
        del buffer[:_HEADER.size + size]
    return messages


def _decode_event(data: bytes) -> Any:
    """An event as ``(kind, key, value)``, or None for bytes that are not one (a step can write
    anything to the pipe)."""
    try:
        message = json.loads(data)
    except ValueError:
        return None
    if isinstance(message, list) and len(message) == 3 and isinstance(message[0], str) and \
            isinstance(message[1], str):
        return message
    return None


def _beside_log(log_path: str, suffix: str) -> str:
    """The file of an attempt named as its log is, with another suffix."""
    return (log_path[: -len(".log")] if log_path.endswith(".log") else log_path) + suffix


def channel_path(log_path: str) -> str:
    return _beside_log(log_path, ".events")


def _drain(descriptor: int, buffer: bytearray, limit: int | None = None) -> None:
    """Add to ``buffer`` what a non-blocking pipe holds now (up to about ``limit`` bytes)."""
    while limit is None or len(buffer) <= limit:
        try:
            chunk = os.read(descriptor, 65536)
        except OSError:  # BlockingIOError: nothing more now
            break
        if not chunk:
            break
        buffer += chunk


#: The longest event a channel takes: each is written at once, under PIPE_BUF bytes.
_MAX_EVENT = 65536


class AttemptChannel:
    """The pipe one attempt's process reports on (started, metric, unwritten, done): a named
    pipe next to its log, made and read by Kale's process, written by the attempt's process
    alone. What a step writes to it (a frame it never finishes, anything) garbles only its own
    reports, never another attempt's nor the zygote's, whose reports of each exit always come
    through. On a filesystem without named pipes there is none: the attempt's result and its
    exit still tell how it ended."""

    def __init__(self, log_path: str) -> None:
        self.path = channel_path(log_path)
        self.buffer = bytearray()
        self.descriptor: int | None = None
        try:
            os.mkfifo(self.path, 0o600)
            # Open for reading and writing: the pipe never reads as ended (before the step's
            # process opens it, after it exits), and that process's open never waits.
            self.descriptor = os.open(self.path, os.O_RDWR | os.O_NONBLOCK)
        except OSError:
            with contextlib.suppress(OSError):
                os.unlink(self.path)

    def fileno(self) -> int:
        return -1 if self.descriptor is None else self.descriptor

    def read(self) -> list[tuple[str, str, Any]]:
        """Every complete event that has arrived; never blocks. A frame that claims more than
        an event can hold ends the channel: the step wrote it, not Kale."""
        if self.descriptor is None:
            return []
        # Bounded: the rest on the next turn, so a chatty step cannot stall the loop.
        _drain(self.descriptor, self.buffer, 4 * _MAX_EVENT)
        messages = [m for m in _unframe(self.buffer, _decode_event) if m is not None]
        if len(self.buffer) >= _HEADER.size and _HEADER.unpack_from(self.buffer)[0] > _MAX_EVENT:
            self.close()
        return messages

    def close(self) -> None:
        """Stop reading, and remove the pipe."""
        if self.descriptor is not None:
            with contextlib.suppress(OSError):
                os.close(self.descriptor)
            self.descriptor = None
        self.buffer.clear()
        with contextlib.suppress(OSError):
            os.unlink(self.path)


def result_path(log_path: str) -> str:
    return _beside_log(log_path, ".result")


# -- the zygote (runs in its own process) -------------------------------------------------------


_libc = None


def _prctl(option: int, value: int) -> None:
    global _libc
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(Exception):
        if _libc is None:  # loaded once in the zygote, inherited by every fork
            import ctypes

            _libc = ctypes.CDLL(None)
        _libc.prctl(option, value)


_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36


def _adopted() -> list[int]:
    """This process's children (its own, and orphans re-parented to it as a subreaper)."""
    me = os.getpid()
    try:
        with open(f"/proc/{me}/task/{me}/children") as handle:
            return [int(pid) for pid in handle.read().split()]
    except (OSError, ValueError):
        pass
    found = []  # a kernel without the children file: read each process's parent
    with contextlib.suppress(OSError):
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                with contextlib.suppress(OSError, IndexError, ValueError), \
                        open(f"/proc/{entry}/stat", "rb") as handle:
                    if int(handle.read().rsplit(b")", 1)[1].split()[1]) == me:
                        found.append(int(entry))
    return found


def _kill_strays(keep: set[int]) -> None:
    """Kill the zygote's children that are not in ``keep`` (the live attempts and the zygote's
    own helpers): a subreaper is handed only orphans of ended attempts. A stray's own children
    come back to the zygote when it dies, and are killed when it is reaped."""
    for pid in _adopted():
        if pid not in keep:
            _kill_group_or_process(pid)


def _parent_of(pid: int) -> int | None:
    """The parent of a process (Linux: from /proc), 0 when it is gone, None when it cannot be
    told (another system)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            return int(handle.read().rsplit(b")", 1)[1].split()[1])
    except FileNotFoundError:
        return 0 if os.path.isdir("/proc/self") else None
    except (OSError, ValueError, IndexError):
        return None


def _kill_group_or_process(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except OSError:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


def _prepare_child() -> None:
    """In a forked child, before its task is known: become a process group, and have the
    streams the step writes to (on descriptors 1 and 2, where its log goes once known)."""
    os.setpgid(0, 0)
    # Orphans of what the step starts (a daemon that forked twice) come to the attempt while it
    # runs, so its timeout's end_descendants finds them, and to the zygote when it ends.
    _prctl(_PR_SET_CHILD_SUBREAPER, 1)
    _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    sys.stdout = open(1, "w", buffering=1, closefd=False)  # noqa: SIM115 - lives until _exit
    sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115


def _run_child(key: str, task: Any, log_path: str) -> None:
    """In the forked child (``_prepare_child`` done): send output to the log, run the step. The
    runtime writes the result next to the log (``task.result_path``); events go to the
    attempt's own channel (``AttemptChannel``)."""
    from kale.runtime import run_step, write_result

    descriptor = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(descriptor, 1)
    os.dup2(descriptor, 2)
    os.close(descriptor)
    try:  # Kale's process holds it open for reading: the open never waits
        events: int | None = os.open(channel_path(log_path), os.O_WRONLY | os.O_NONBLOCK)
        os.set_blocking(events, True)
    except OSError:  # no channel (a filesystem without named pipes): nothing reported live
        events = None

    def report(event: str, details: dict[str, Any]) -> None:
        if events is None or (event == "started" and task.timeout is None):
            return  # "started" times a backstop for the step's timeout only
        os.write(events, _event((event, key, details)))

    task.result_path = result_path(log_path)
    try:
        run_step(task, report)
    except BaseException as error:  # a bug in Kale itself must still reach the summary
        import traceback

        write_result(task, {"status": "failed", "error": {
            "kind": "internal", "message": f"hit a Kale error: {type(error).__name__}: {error}",
            "traceback": traceback.format_exc()}})
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    # The result and the log are complete: Kale's process can go on with what the step made
    # while this process exits and the zygote reaps it (an exit costs about a millisecond, and
    # a chain of steps would wait for each one). Only for a success: a failure is acted on
    # once the zygote has reaped the attempt and removed what it left half written. Not when
    # the step left a process running: the zygote kills it before it reports the exit, so the
    # next step never meets it (a lock it holds, a port it listens on).
    if events is not None and not _has_children():
        with contextlib.suppress(OSError):
            os.write(events, _event(("done", key, None)))


def _has_children() -> bool:
    """Whether this process has a child still running: the step's own, or an orphan of
    them (a step's process is a subreaper, so every descendant left is one). One system call
    and nothing allocated (in a forked process each new object costs copied pages); a child
    that has ended is reaped on the way: the step is over."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except OSError:  # ChildProcessError: none at all
            return False
        if pid == 0:
            return True


def _preload(modules: list[str], events: int | None = None) -> bool:
    """Import the modules the steps import, by full dotted name (``sklearn.ensemble``, not only
    ``sklearn``: a step re-importing a package's submodules pays for most of the import), once
    for every fork. False if that started Python threads, which makes forking unsafe (a lock a
    thread holds stays locked forever in the child). Native thread pools such as OpenBLAS's
    prepare for fork themselves, and are not counted.

    Threads are counted after each import, so the modules that started some are known: they are
    reported (an ``unthreaded`` event naming them), and the next zygote leaves them out. Names
    that are not modules (``from typing import Any`` gives ``typing.Any``) cost a dictionary
    look-up, not a search of ``sys.path``. Signal handlers a library installs are put back."""
    import importlib

    handlers = {number: signal.getsignal(number) for number in (signal.SIGINT, signal.SIGTERM)}
    threads = _thread_count()
    starters = []
    for name in sorted(modules):  # a package before its submodules
        if name in sys.modules or not _may_be_module(name):
            continue
        with contextlib.suppress(BaseException):
            importlib.import_module(name)
        now = _thread_count()
        if now > threads:
            starters.append(name)
        threads = now
    for number, handler in handlers.items():
        with contextlib.suppress(Exception):
            if signal.getsignal(number) is not handler and handler is not None:
                signal.signal(number, handler)
    if starters and events is not None:
        _send(events, ("threads", "", starters))
    return threads == 1


def _may_be_module(name: str) -> bool:
    """Whether ``name`` can name a module not imported yet: its parent is a package (importing
    it, then, if need be) without an attribute of that name that is not a module."""
    parent, _, last = name.rpartition(".")
    if not parent:
        return True
    owner = sys.modules.get(parent)
    if owner is None:
        if not _may_be_module(parent):
            return False
        with contextlib.suppress(BaseException):
            __import__(parent)
        owner = sys.modules.get(parent)
        if owner is None:
            return False
    if not hasattr(owner, "__path__"):
        return False  # a module, not a package: `typing.Any`, `os.path.join`
    found = owner.__dict__.get(last)
    return found is None or type(found) is type(sys)


def _freeze_heap() -> None:
    """Move everything loaded so far out of the garbage collector's sight: a collection in a
    step process would otherwise walk the whole inherited heap and copy every page it touches
    (copy-on-write after fork), about 1.5 ms per step."""
    import gc

    gc.freeze()


def _thread_count() -> int:
    """The process's Python threads, the main one included. Counted without importing
    ``threading``: once imported, its after-fork hook runs in every child, which costs about
    half a millisecond and a hundred copied pages per fork on a small VM."""
    count = getattr(_thread, "_count", None)
    if count is not None:
        return count() + 1
    import threading

    return threading.active_count()


def remove_partial_writes(folder: str | os.PathLike[str]) -> int:
    """Remove what writes killed midway left in ``folder`` (a killed process runs no
    ``except``): the temporary files of ``kale.marshal.atomic_write`` and the ``.partial`` files
    and folders of the path backend and registered backends. Only for a folder no live process
    writes to. Returns the bytes freed."""
    import shutil

    freed = 0
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return 0
    for entry in entries:
        name = entry.name
        with contextlib.suppress(OSError):
            if name.startswith(".") and name.endswith(".tmp") and entry.is_file():
                freed += entry.stat().st_size
                os.unlink(entry.path)
            elif name.endswith(".partial") and entry.is_dir(follow_symlinks=False):
                for root, _, files in os.walk(entry.path):
                    for file in files:
                        with contextlib.suppress(OSError):
                            freed += os.lstat(os.path.join(root, file)).st_size
                shutil.rmtree(entry.path, ignore_errors=True)
            elif name.endswith(".partial"):
                freed += entry.stat(follow_symlinks=False).st_size
                os.unlink(entry.path)
    return freed


def _ended(folders: tuple[str, ...]) -> None:
    """An attempt is over and its leftovers are killed: remove what it was writing (a kill
    mid-write leaves the temporary file of an atomic write, which can be gigabytes)."""
    for folder in folders:
        with contextlib.suppress(OSError):
            if any(entry.startswith(".kale-container-") for entry in os.listdir(folder)):
                # A container step's process was killed: its container runs in the runtime's
                # daemon, not under this process, so remove it by name (kale.local.container).
                from kale.local.container import stop_recorded

                stop_recorded(folder)
        remove_partial_writes(folder)


def _send(events: int, message: Any) -> None:
    # Kale's process may be gone (SIGKILLed): the zygote must go on to clean up, not die of it.
    with contextlib.suppress(OSError):
        os.write(events, _event(message))


def _write_all(descriptor: int, data: bytes) -> None:
    """Write all of ``data`` to a pipe. A write larger than the pipe holds blocks until the
    reader takes some, and a signal then (SIGCHLD: another attempt ended) returns it short:
    the rest would be lost, and the reader would see its frame cut."""
    view = memoryview(data)
    while view:
        view = view[os.write(descriptor, view):]


def _read_frame(descriptor: int) -> bytes | None:
    """One length-prefixed frame from a (blocking) pipe, or None at its end."""
    buffer = bytearray()
    while True:
        chunk = os.read(descriptor, 65536)
        if not chunk:
            return None
        buffer += chunk
        frames = _unframe(buffer, bytes)
        if frames:
            return frames[0]


def _fork_spare(inherited: tuple[int, ...]) -> tuple[int, int]:
    """Fork the process that runs the next attempt before the attempt is asked for: a fork,
    and the pages a new process copies as it starts, cost about a millisecond and a half on a
    small VM, which a chain of steps would otherwise wait for at every step. The spare is as
    fresh as a process forked on request (nothing runs in it before its task arrives), and
    takes exactly one task. Returns its pid and the pipe its task is written to."""
    task_read, task_write = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            signal.set_wakeup_fd(-1)
            for number in (signal.SIGCHLD, signal.SIGINT, signal.SIGTERM):
                signal.signal(number, signal.SIG_DFL)
            for descriptor in (*inherited, task_write):
                os.close(descriptor)
            _prepare_child()
            frame = _read_frame(task_read)
            if frame is not None:  # None: the zygote let it go (a preload, or its end)
                key, log_path, invocation = pickle.loads(frame)
                task = pickle.loads(invocation)
                os.close(task_read)
                _run_child(key, task, log_path)
        except BaseException:
            code = 70
        finally:
            os._exit(code)
    os.close(task_read)
    return pid, task_write


def serve(preload: list[str]) -> None:
    """The zygote's main loop: hand each request to a forked child, report forks and exits."""
    requests, events = os.dup(0), os.dup(1)
    # Anything a preloaded library prints must not corrupt the event stream.
    os.dup2(2, 1)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the scheduler's to handle
    stopping = []

    def stop(*_: Any) -> None:
        stopping.append(True)

    # Not SIGKILL: when Kale's process dies (even SIGKILLed) the zygote must outlive it long
    # enough to kill every attempt and the daemons they started, which would go to init.
    signal.signal(signal.SIGTERM, stop)
    _prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() == 1:  # the parent died before the line above
        stopping.append(True)
    _prctl(_PR_SET_CHILD_SUBREAPER, 1)
    import kale.marshal.backends
    import kale.runtime  # loaded once here, shared by every fork

    with contextlib.suppress(ImportError):
        # Every stored output is hashed: without this each step imported it (2 ms a step).
        import xxhash  # noqa: F401

    safe = _preload(preload, events)
    _freeze_heap()
    own = set(_adopted())  # helpers a preloaded library started, if any: not strays
    wake_read, wake_write = os.pipe()
    os.set_blocking(wake_write, False)
    os.set_blocking(wake_read, False)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    signal.set_wakeup_fd(wake_write)
    children: dict[int, tuple[str, tuple[str, ...]]] = {}
    # What a step's process must not keep: the zygote's own pipes (a step reports on a channel
    # of its own, so what it writes can never garble the zygote's reports of exits).
    inherited = (requests, events, wake_read, wake_write, devnull)
    spare: tuple[int, int] | None = None  # the next attempt's process, and its task pipe
    compiled: set[int] = set()  # the code of the invocations seen (``Zygote.start``)

    def let_spare_go() -> None:
        nonlocal spare
        if spare is not None:
            os.close(spare[1])  # it reads the end of its pipe and exits
            own.add(spare[0])  # reaped like a helper, not killed as a stray
            spare = None

    buffer = bytearray()
    open_requests = True
    while open_requests or children:
        if safe and open_requests and spare is None and not stopping:
            spare = _fork_spare(inherited)
        readable, _, _ = select.select([requests, wake_read] if open_requests else [wake_read],
                                       [], [], 1.0)
        if wake_read in readable:
            with contextlib.suppress(BlockingIOError):
                os.read(wake_read, 4096)
        reaped = False
        while True:  # strays too: reaping one lets its own children come here to be killed
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            own.discard(pid)
            if spare is not None and pid == spare[0]:  # killed while it waited: fork another
                os.close(spare[1])
                spare = None
                continue
            ended = children.pop(pid, None)
            reaped = reaped or ended is None
            if ended is not None:
                # Killed and cleaned before the scheduler hears of the end, so a step that
                # follows never races what this one left.
                _kill_strays(own | set(children) | ({spare[0]} if spare else set()))
                _ended(ended[1])
                _send(events, ("exited", ended[0], os.waitstatus_to_exitcode(status)))
        if reaped:  # a stray: its children, if any, are the zygote's now
            _kill_strays(own | set(children) | ({spare[0]} if spare else set()))
        if stopping and open_requests:
            readable, open_requests = [], False
            let_spare_go()
            for pid in children:
                _kill_group_or_process(pid)
        if requests in readable:
            chunk = os.read(requests, 65536)
            if not chunk:
                open_requests = False
                let_spare_go()
                for pid in children:
                    _kill_group_or_process(pid)
                continue
            buffer += chunk
            for kind, *payload in _unframe(buffer):
                if kind == "preload":
                    let_spare_go()  # it has not loaded these: the next one will have
                    safe = _preload(payload[0], events) and safe
                    _freeze_heap()
                    own |= set(_adopted()) - set(children)
                if kind != "run":
                    continue
                key, log_path, output_dir, code, invocation = payload
                if not safe:
                    let_spare_go()
                    _send(events, ("refused", key, _thread_count()))
                    continue
                if spare is None:
                    spare = _fork_spare(inherited)
                pid, task_pipe = spare
                spare = None
                with contextlib.suppress(OSError):
                    # (it died as it waited: its end is reported as this attempt's)
                    _write_all(task_pipe, _frame((key, log_path, invocation)))
                os.close(task_pipe)
                children[pid] = (key, (output_dir, os.path.dirname(log_path)))
                _send(events, ("forked", key, pid))
                if code not in compiled:
                    # While it runs: the processes forked from now on have its code compiled.
                    compiled.add(code)
                    with contextlib.suppress(Exception):
                        kale.runtime.precompile(pickle.loads(invocation))
    let_spare_go()
    _reap_strays(own)


def _reap_strays(own: set[int]) -> None:
    """Before the zygote exits: kill what the ended attempts left, until nothing comes back (a
    stray's children are handed to the zygote as it dies), for at most a few seconds."""
    import time

    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        _kill_strays(own)
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            if not set(_adopted()) - own:
                return
            time.sleep(0.01)


# -- the scheduler's side -----------------------------------------------------------------------


class Zygote:
    """The scheduler's handle on the zygote: start attempts, read events, kill attempts.

    One zygote serves every run of a session (a notebook runs pipelines again and again); a run
    that needs libraries the zygote has not loaded gets a new one.
    """

    _idle: ClassVar[list[Zygote]] = []  # started, alive, and not serving a run
    _lock = _thread.allocate_lock()  # the builtin module: the zygote imports this file, fast
    #: How many idle zygotes are kept: one serves runs one after another; a study that runs
    #: trials in parallel (``kale.tuning``) raises it so that no trial pays for a new one.
    keep_idle: ClassVar[int] = 1
    # Modules whose import started Python threads (reported by a zygote): never preloaded
    # again, nor their submodules. Threads found without a module to blame: preload nothing.
    _thread_starters: ClassVar[set[str]] = set()
    _preload_unsafe = False

    @classmethod
    def prestart(cls) -> None:
        """Start a zygote for the run that is probably coming, if none is idle."""
        if not cls._idle:
            cls._idle.append(cls([]))

    @classmethod
    def warm(cls, preload: list[str], count: int) -> None:
        """Have ``count`` zygotes idle, started from this thread (runs in other threads then
        take them rather than start their own: see ``spawner``)."""
        taken = [cls.acquire(preload) for _ in range(count)]
        for zygote in taken:
            cls.release(zygote)

    @classmethod
    def acquire(cls, preload: list[str], safe: bool = False) -> Zygote:
        """A zygote for one run, with ``preload`` loaded: an idle one, or a new one. Runs in
        parallel (threads of one process) each get their own."""
        if safe:
            # The zygote of this run refused: this run's steps start from a plain one.
            preload = []
            cls._preload_unsafe = cls._preload_unsafe or not cls._thread_starters
        if cls._preload_unsafe:
            preload = []
        preload = [name for name in preload if not cls._starts_threads(name)]
        zygote = None
        while zygote is None:
            with cls._lock:  # runs in threads of one process (a study's trials) share the list
                candidate = cls._idle.pop() if cls._idle else None
            if candidate is None:
                break
            if candidate.process.poll() is None and candidate.spawner.is_alive():
                zygote = candidate
            else:
                candidate.close()
        if zygote is None:
            return cls(preload)
        missing = [name for name in preload if name not in zygote.preload]
        if missing:
            zygote.process.stdin.write(_frame(("preload", missing)))
            zygote.process.stdin.flush()
            zygote.preload.extend(missing)
        return zygote

    @classmethod
    def _starts_threads(cls, name: str) -> bool:
        parts = name.split(".")
        return any(".".join(parts[:end]) in cls._thread_starters
                   for end in range(1, len(parts) + 1))

    @classmethod
    def release(cls, zygote: Zygote) -> None:
        """A run is done with its zygote: keep it idle for the next run (up to ``keep_idle``
        of them: as many as runs that go on in parallel), close the rest."""
        with cls._lock:
            kept = zygote.process.poll() is None and not zygote.refused and \
                len(cls._idle) < cls.keep_idle
            if kept:
                cls._idle.append(zygote)
        if not kept:
            zygote.close()

    def __init__(self, preload: list[str]) -> None:
        import subprocess
        import threading

        self.preload = list(preload)
        #: The thread that started it. The zygote asks the kernel for SIGTERM when its parent
        #: dies (PR_SET_PDEATHSIG), and the kernel counts the thread that forked it as its
        #: parent: a zygote started by a thread that has ended is stopping, never reused.
        self.spawner = threading.current_thread()
        if not hasattr(os, "fork"):
            from kale.errors import KaleError

            raise KaleError("local runs need os.fork, which this system does not have",
                            fix="run on Linux or macOS (on Windows, in WSL)")
        code = "import sys; from kale.local.processes import serve; serve(sys.argv[1:])"
        # Kale must be importable in the zygote even when the script found it through a
        # sys.path change of its own.
        package_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(
            __file__))))
        environment = dict(os.environ)
        environment["PYTHONPATH"] = os.pathsep.join(
            filter(None, [environment.get("PYTHONPATH"), package_root]))
        self.process = subprocess.Popen(
            [sys.executable, "-c", code, *preload],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, close_fds=True, env=environment,
        )
        self.events = self.process.stdout
        os.set_blocking(self.events.fileno(), False)
        self.buffer = bytearray()
        self.pids: dict[str, int] = {}
        self.refused = False

    def fileno(self) -> int:
        return self.events.fileno()

    def start(self, key: str, task: Any, log_path: str) -> None:
        # The invocation travels pickled inside the request: the zygote hands it to the step's
        # process as it is, and unpickles it only to compile code it has not seen.
        code = hash((task.filename, task.line, task.source, task.context, task.futures))
        self.process.stdin.write(_frame(("run", key, log_path, task.output_dir, code,
                                         pickle.dumps(task, protocol=pickle.HIGHEST_PROTOCOL))))
        self.process.stdin.flush()

    def read_events(self) -> list[tuple[str, str, Any]]:
        """Every complete event that has arrived; never blocks."""
        _drain(self.events.fileno(), self.buffer)
        messages = [m for m in _unframe(self.buffer, _decode_event) if m is not None]
        for kind, key, value in messages:
            if kind == "forked":
                # (Steps do not hold this pipe; still, a "forked" naming a process that is not
                # the zygote's child would make Kale kill a process of someone else's.)
                if isinstance(value, int) and key not in self.pids and \
                        _parent_of(value) in (self.process.pid, None):
                    self.pids[key] = value
            elif kind == "refused":
                self.refused = True
            elif kind == "threads" and isinstance(value, list) and key == "" and \
                    all(isinstance(name, str) for name in value):
                # (a step could forge this: at worst, fewer modules are preloaded)
                Zygote._thread_starters.update(value)
        return messages

    def kill(self, key: str) -> None:
        """Kill an attempt and everything it started (its process group)."""
        pid = self.pids.get(key)
        if pid is not None:
            _kill_group_or_process(pid)

    def close(self) -> None:
        import subprocess

        with contextlib.suppress(Exception):
            self.process.stdin.close()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
