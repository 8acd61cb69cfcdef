"""The record of a local run: one folder per run under ``.kale/runs`` (``KALE_HOME`` moves it).

Layout::

    <home>/runs/<run-id>/
        run.json                          status of the run and of every step and attempt
        events.jsonl                      while it runs: each task's changes since run.json
        steps/<step>/attempt-<n>.log      what the attempt printed (stdout and stderr)
        steps/<step>/outputs/<name>.<ext> each value the step returned (.json, .npy, .pkl)
        steps/<step>/outputs/<name>.meta.json   how it was stored (backend, type, size)

While the run is in flight, each change of a task's state is appended to ``events.jsonl`` as
one line (the task's whole state, numbered), at once: a change costs the same in a 10-step run
and a 10,000-step one, and after a crash, a kill or Ctrl-C the record still says which tasks
finished and where their outputs are. ``run.json`` is a snapshot, rewritten atomically at the
start, whenever the events since the last one outweigh it (the events file is then emptied),
and at the end, when the events file goes; ``read_record`` is the snapshot with the events
after it applied, which is what every reader uses. It names the process that
runs it (pid, start time, boot and host), and ``<home>/running/<run-id>.json`` says the same
while the run is in flight: a run whose process is gone without finishing the record (killed
with SIGKILL, its machine stopped) is shown as ``interrupted (runner gone)``, and the next run
started in that home sweeps what it left (partial files, the record's last state).
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any

from kale.local.processes import remove_partial_writes
from kale.marshal import atomic_write

RUN_FILE = "run.json"
EVENTS_FILE = "events.jsonl"
#: A snapshot is written once the events since the last one are this many times its size (and
#: at least _SNAPSHOT_FLOOR bytes): what a reader replays stays in proportion to the record.
_SNAPSHOT_RATIO = 2
_SNAPSHOT_FLOOR = 64 * 1024
RUNNING = "running"  # <home>/running/<run-id>.json: runs in flight, and who runs them
RUNNER_GONE = "runner gone"


def _stat_fields(pid: int) -> list[bytes] | None:
    """The fields of /proc/<pid>/stat after the command name (state first), None if none."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            return handle.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _boot_id() -> str | None:
    try:
        with open("/proc/sys/kernel/random/boot_id") as handle:
            return handle.read().strip()
    except OSError:
        return None


def runner_identity() -> dict[str, Any]:
    """This process, so that a later reader can tell whether it still runs: its pid, its start
    time (clock ticks since boot, from /proc: a reused pid has another), the boot and host."""
    fields = _stat_fields(os.getpid())
    return {"pid": os.getpid(), "start": int(fields[19]) if fields else None,
            "boot": _boot_id(), "host": os.uname().nodename}


def runner_gone(runner: dict[str, Any] | None) -> bool:
    """Whether the process ``runner_identity`` described has ended. Unknown (no identity, or
    another host, which may share this folder) counts as alive."""
    if not runner or runner.get("host") != os.uname().nodename:
        return False
    boot = _boot_id()
    if boot and runner.get("boot") and boot != runner["boot"]:
        return True  # the machine restarted since
    if os.path.isdir("/proc/self"):
        fields = _stat_fields(runner["pid"])
        return fields is None or fields[0] == b"Z" or (
            runner.get("start") is not None and int(fields[19]) != runner["start"])
    try:
        os.kill(runner["pid"], 0)
    except ProcessLookupError:
        return True
    except OSError:
        pass
    return False


def settle_gone_run(data: dict[str, Any]) -> bool:
    """Mark a run that says ``running`` but whose runner is gone as interrupted, with the steps
    and attempts that were in flight; False (and no change) for any other run."""
    if data.get("status") != "running" or not runner_gone(data.get("runner")):
        return False
    pid = data["runner"]["pid"]
    data.update(status="interrupted", runner_gone=True,
                reason=f"{RUNNER_GONE}: the process that ran it (pid {pid}) ended before the "
                       "run did (killed with SIGKILL, or the machine stopped)")
    for step in data.get("steps", {}).values():
        if step.get("status") in ("waiting", "running", "retrying"):
            step.update(status="cancelled", reason=RUNNER_GONE)
        for attempt in step.get("attempts", []):
            if attempt.get("status") == "running":
                attempt.update(status="killed", error={
                    "kind": "stopped", "message": f"was stopped: {RUNNER_GONE}"})
    return True


def sweep_gone_runs(home: Path, current: str) -> None:
    """Clean up after runs of ``home`` whose runner died: the partial files their steps were
    writing (a kill mid-write leaves them, gigabytes at times) and a record still saying
    ``running``. Reads only the runs in flight, not every run's record."""
    try:
        entries = list(os.scandir(home / RUNNING))
    except OSError:
        return
    for entry in entries:
        run_id = entry.name.removesuffix(".json")
        if run_id == current:
            continue
        try:
            runner = json.loads(Path(entry.path).read_text())
        except (OSError, ValueError):
            runner = None
        if not runner_gone(runner):
            continue
        folder = home / "runs" / run_id
        remove_partial_writes(folder)
        for step in (folder / "steps").glob("*"):
            remove_partial_writes(step)
            remove_partial_writes(step / "outputs")
        with contextlib.suppress(OSError, ValueError):
            data = read_record(folder)
            if data is not None and settle_gone_run(data):
                data.pop("folder", None)
                text = json.dumps(data, default=str)
                atomic_write(folder / RUN_FILE, lambda handle, text=text: handle.write(text),
                             mode="w")
                with contextlib.suppress(OSError):
                    os.unlink(folder / EVENTS_FILE)
        with contextlib.suppress(OSError):
            os.unlink(entry.path)


def launch_command() -> dict[str, Any] | None:
    """How this process was started, for ``kale resume`` to start the same script again: the
    interpreter, the script and the arguments left to it once Kale took its own flags, and the
    working directory. None outside a script (a notebook, an interactive session)."""
    import sys

    main = sys.modules.get("__main__")
    script = getattr(main, "__file__", None)
    if not script or not sys.argv or not sys.argv[0]:
        return None
    script = os.path.abspath(script)
    started = os.path.abspath(sys.argv[0])
    if not os.path.isfile(started):
        return None
    if started != script and not os.path.samefile(started, script):
        return None
    return {"python": sys.executable, "script": script, "args": list(sys.argv[1:]),
            "cwd": os.getcwd()}


def kale_home(project_root: str | None = None) -> Path:
    """Where run records live: ``$KALE_HOME``, else ``.kale`` in the project root (or here)."""
    configured = os.environ.get("KALE_HOME")
    if configured:
        return Path(configured).expanduser().resolve()
    return Path(project_root or os.getcwd()) / ".kale"


def read_record(folder: str | os.PathLike[str]) -> dict[str, Any] | None:
    """A run's record as it stands: ``run.json`` with the events written after it applied (a
    line cut short by a kill ends them), and ``folder`` set; None when there is no readable
    ``run.json``."""
    folder = Path(folder)
    data = None
    for _ in range(3):  # a snapshot written between the two reads: read both again
        try:
            data = json.loads((folder / RUN_FILE).read_bytes())
        except (OSError, ValueError):
            return None
        if not isinstance(data, dict):
            return None
        try:
            events = (folder / EVENTS_FILE).read_bytes()
        except OSError:
            break
        if _apply_events(data, events):
            break
    assert data is not None
    data["folder"] = str(folder)
    return data


def _apply_events(data: dict[str, Any], events: bytes) -> bool:
    """Apply the events after the snapshot's own to it; False when some are missing (the
    file was emptied by a newer snapshot than the one read)."""
    seq = data.get("seq")
    expected = (seq if isinstance(seq, int) else 0) + 1
    steps = data.setdefault("steps", {})
    for line in events.split(b"\n"):
        if not line:
            continue
        try:
            event = json.loads(line)
        except ValueError:
            break
        number = event.get("seq") if isinstance(event, dict) else None
        if not isinstance(number, int) or number < expected:
            continue
        if number != expected:
            return False
        expected += 1
        if isinstance(event.get("task"), str) and isinstance(event.get("state"), dict):
            steps[event["task"]] = event["state"]
        data["seq"] = number
    return True


class RunRecord:
    """The folder of one run: its ``run.json`` snapshot and, while it runs, its events."""

    def __init__(self, home: Path, run_id: str) -> None:
        self.folder = home / "runs" / run_id
        self.data: dict[str, Any] = {}
        self.seq = 0  # the number of the last event written
        self.since_snapshot = 0  # bytes of events since the last snapshot
        self.snapshot_size = 0
        self._events: int | None = None  # the events file, open for appending

    def step_folder(self, step: str) -> Path:
        return self.folder / "steps" / step

    def outputs_folder(self, step: str) -> Path:
        return self.step_folder(step) / "outputs"

    def log_path(self, step: str, attempt: int) -> Path:
        return self.step_folder(step) / f"attempt-{attempt}.log"

    def save(self) -> None:
        """Write the snapshot (``data``, numbered as the last event), then empty the events
        file: every event in it is in the snapshot."""
        self.data["seq"] = self.seq
        text = json.dumps(self.data, default=str)
        atomic_write(self.folder / RUN_FILE, lambda handle: handle.write(text), mode="w")
        self.snapshot_size = len(text)
        if self._events is not None and self.since_snapshot:
            os.ftruncate(self._events, 0)
        self.since_snapshot = 0

    def append(self, tasks: dict[str, dict[str, Any]]) -> None:
        """Append each task's new state as one numbered event, in one write."""
        lines = []
        for name, state in tasks.items():
            self.seq += 1
            lines.append(json.dumps({"seq": self.seq, "task": name, "state": state},
                                    default=str))
        data = ("\n".join(lines) + "\n").encode()
        if self._events is None:
            self._events = os.open(self.folder / EVENTS_FILE,
                                   os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        view = memoryview(data)
        while view:
            view = view[os.write(self._events, view):]
        self.since_snapshot += len(data)

    def snapshot_due(self) -> bool:
        return self.since_snapshot > max(_SNAPSHOT_FLOOR, _SNAPSHOT_RATIO * self.snapshot_size)

    def close_events(self) -> None:
        """After the last snapshot: the events file is not needed any more."""
        if self._events is not None:
            with contextlib.suppress(OSError):
                os.close(self._events)
            self._events = None
        with contextlib.suppress(OSError):
            os.unlink(self.folder / EVENTS_FILE)

    def running_path(self) -> Path:
        return self.folder.parent.parent / RUNNING / f"{self.folder.name}.json"

    def mark_running(self, runner: dict[str, Any]) -> None:
        text = json.dumps(runner)
        atomic_write(self.running_path(), lambda handle: handle.write(text), mode="w")

    def mark_ended(self) -> None:
        with contextlib.suppress(OSError):
            os.unlink(self.running_path())


def list_runs(home: Path) -> list[dict[str, Any]]:
    """Every readable run under ``home``, newest first."""
    runs = []
    for path in (home / "runs").glob(f"*/{RUN_FILE}"):
        data = read_record(path.parent)
        if data is None or not isinstance(data.get("id"), str):
            continue
        settle_gone_run(data)  # as shown, not written: the next run in this home does that
        runs.append(data)
    return sorted(runs, key=lambda run: run.get("started") or "", reverse=True)


def find_run(home: Path, prefix: str) -> dict[str, Any] | list[str]:
    """The run whose id starts with ``prefix``, or the ids that match when it is not one."""
    matches = [run for run in list_runs(home) if run["id"].startswith(prefix)]
    if len(matches) == 1:
        return matches[0]
    return [run["id"] for run in matches]


def _last_attempt(step: dict[str, Any]) -> dict[str, Any] | None:
    attempts = step.get("attempts") or []
    return attempts[-1] if attempts else None


def task_metrics(data: dict[str, Any]) -> list[tuple[str, int, str, Any]]:
    """Every metric of a run as (task, attempt, name, value): each task's last attempt (the
    one that succeeded, when one did), in the order the record holds them."""
    found = []
    for task, step in data.get("steps", {}).items():
        attempt = _last_attempt(step)
        if attempt:
            found.extend((task, attempt["number"], name, value)
                         for name, value in (attempt.get("metrics") or {}).items())
        elif isinstance(step.get("metrics"), dict):  # a cache hit: what the run it reuses logged
            found.extend((task, 1, name, value) for name, value in step["metrics"].items())
    return found


def run_metrics(data: dict[str, Any]) -> dict[str, Any]:
    """A run's metrics by name, as ``kale runs`` and ``kale compare`` show them: a name only
    one task logged stands alone, one that several logged is ``task.name``."""
    found = task_metrics(data)
    counts: dict[str, int] = {}
    for _, _, name, _ in found:
        counts[name] = counts.get(name, 0) + 1
    return {(name if counts[name] == 1 else f"{task}.{name}"): value
            for task, _, name, value in found}


def task_artifacts(data: dict[str, Any]) -> list[tuple[str, int, str, dict[str, Any]]]:
    """Every artifact of a run as (task, attempt, name, entry), each task's last attempt."""
    found = []
    for task, step in data.get("steps", {}).items():
        attempt = _last_attempt(step)
        if attempt:
            found.extend((task, attempt["number"], name, entry)
                         for name, entry in (attempt.get("artifacts") or {}).items())
    return found
