"""The run record on disk, and `kale runs` / `kale show` reading it."""

from __future__ import annotations

import json
import subprocess
import time

from hypothesis import given, settings
from hypothesis import strategies as st

from kale.local.record import EVENTS_FILE, RUN_FILE, RunRecord, read_record
from tests.local.test_resume import KALE
from tests.local.test_runs import BAR_STEP
from tests.test_cli import kale

FLOW = '''
    @step
    def make(n):
        print("making", n)
        return list(range(n))

    @step(retry_count=1)
    def total(values):
        raise ValueError("nope")

    @pipeline(name="flow", experiment="exp")
    def flow(n=3):
        values = make(n)
        total(values)

    if __name__ == "__main__":
        import sys
        flow(n=int(sys.argv[1]))
'''


def test_the_record_layout(script):
    script.run(FLOW, "4")
    record = script.record()
    folder = script.home / "runs" / record["id"]
    assert (folder / "run.json").is_file()
    assert (folder / "steps" / "make" / "attempt-1.log").read_text() == "making 4\n"
    assert json.loads((folder / "steps" / "make" / "outputs" / "values.json").read_text()) == \
        [0, 1, 2, 3]
    meta = json.loads((folder / "steps" / "make" / "outputs" / "values.meta.json").read_text())
    assert meta["backend"] == "json" and meta["type"] == "list"
    assert record["status"] == "failed"
    assert [a["status"] for a in record["steps"]["total"]["attempts"]] == ["failed", "failed"]
    assert not list(folder.rglob("*.tmp"))  # atomic writes leave no temporary files
    assert not (folder / EVENTS_FILE).exists()  # the last snapshot holds every event
    assert json.loads((folder / RUN_FILE).read_text())["status"] == "failed"


def _record(tmp_path, tasks: int = 0) -> RunRecord:
    record = RunRecord(tmp_path, "r1")
    record.folder.mkdir(parents=True)
    record.data = {"id": "r1", "status": "running",
                   "steps": {f"t{n}": {"status": "waiting"} for n in range(tasks)}}
    record.save()
    return record


def test_changes_are_events_after_the_snapshot(tmp_path):
    record = _record(tmp_path, 2)
    record.append({"t0": {"status": "running"}})
    record.append({"t0": {"status": "succeeded"}, "t1": {"status": "running"},
                   "t2[0]": {"status": "waiting"}})
    on_disk = json.loads((record.folder / RUN_FILE).read_text())
    assert on_disk["steps"]["t0"]["status"] == "waiting"  # the snapshot is not rewritten
    data = read_record(record.folder)
    assert {name: step["status"] for name, step in data["steps"].items()} == {
        "t0": "succeeded", "t1": "running", "t2[0]": "waiting"}
    assert data["seq"] == 4 and data["folder"] == str(record.folder)
    # A line cut short by a kill ends the events; what came before stands.
    with open(record.folder / EVENTS_FILE, "ab") as handle:
        handle.write(b'{"seq": 5, "task": "t1", "state": {"status": "succ')
    assert read_record(record.folder)["steps"]["t1"]["status"] == "running"


def test_a_snapshot_empties_the_events_and_readers_never_miss_one(tmp_path):
    record = _record(tmp_path, 1)
    for number in range(2000):
        record.append({"t0": {"status": "running", "n": number}})
        if record.snapshot_due():
            record.data["steps"]["t0"] = {"status": "running", "n": number}
            record.save()
            assert (record.folder / EVENTS_FILE).stat().st_size == 0
        assert (record.folder / EVENTS_FILE).stat().st_size <= 64 * 1024 + 200
    assert read_record(record.folder)["steps"]["t0"]["n"] == 1999
    # A reader that read an older snapshot than the events now follow reads both again.
    stale = json.loads((record.folder / RUN_FILE).read_text())
    stale["seq"] -= 5
    (record.folder / RUN_FILE).write_text(json.dumps(stale))
    assert read_record(record.folder)["steps"]["t0"]["n"] <= 1999  # no error, no gap applied
    record.close_events()
    assert not (record.folder / EVENTS_FILE).exists()


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["a", "b", "c[0]", "c[1]"]),
                          st.sampled_from(["waiting", "running", "succeeded", "failed"])),
                max_size=40),
       st.integers(min_value=0, max_value=40))
def test_the_record_read_is_the_last_state_of_every_task(tmp_path_factory, changes, snap_at):
    """Whatever the changes and wherever a snapshot falls, a reader sees each task's last
    state, as the runner holds it."""
    record = RunRecord(tmp_path_factory.mktemp("rec"), "r")
    record.folder.mkdir(parents=True)
    state: dict[str, dict] = {}
    record.data = {"id": "r", "steps": {}}
    record.save()
    for number, (task, status) in enumerate(changes):
        state[task] = {"status": status}
        record.append({task: {"status": status}})
        if number == snap_at:
            record.data = {"id": "r", "steps": dict(state)}
            record.save()
    assert read_record(record.folder)["steps"] == state


def test_a_killed_runner_leaves_every_finished_task_in_the_record(script):
    """SIGKILL right after a task ends: its end is in the record (events are written as they
    happen, not when the whole record is next rewritten)."""
    process = script.start('''
        import time

        @step
        def first():
            open("first-done", "w").close()
            return 1

        @step
        def second(x):
            time.sleep(60)

        @pipeline(name="killed")
        def killed():
            x = first()
            second(x)

        if __name__ == "__main__":
            killed()
    ''')
    deadline = time.monotonic() + 30  # a bound on the wait, not a timing goal
    while True:
        records = script.records() if (script.home / "runs").exists() else []
        if records and records[0]["steps"].get("second", {}).get("status") == "running":
            break
        assert time.monotonic() < deadline and process.poll() is None
        time.sleep(0.01)
    process.kill()
    process.communicate(timeout=30)
    record = script.record()
    assert record["steps"]["first"]["status"] == "succeeded"
    assert record["steps"]["first"]["outputs"]
    listing = subprocess.run([str(KALE), "show", record["id"], "--home", str(script.home)],
                             capture_output=True, text=True, check=True).stdout
    assert "interrupted (runner gone)" in listing


def test_kale_runs_and_show(script):
    script.run(FLOW, "2")
    script.run(FLOW, "5")
    listing = kale("runs", "--home", str(script.home))
    assert listing.returncode == 0, listing.stderr
    lines = listing.stdout.splitlines()
    assert lines[0].split() == ["run", "pipeline", "experiment", "status", "started",
                                "duration", "n"]  # the runs of one pipeline: its parameter
    assert len(lines) == 4 and all(" flow " in line and " failed " in line for line in lines[2:])
    newest = lines[2].split()[0]
    shown = kale("show", newest, "--home", str(script.home), "--logs")
    assert shown.returncode == 0, shown.stderr
    out = shown.stdout
    assert "pipeline flow (experiment exp)" in out and "status failed" in out
    assert "  n = 5" in out
    assert "output values: list (json" in out
    assert "    = [0, 1, 2, 3, 4]" in out  # a small output's value
    assert "attempt 2: failed: raised ValueError: nope" in out
    assert "    | making 5" in out
    assert "raise ValueError(\"nope\")" in out


def test_kale_show_errors(script):
    script.run(FLOW, "1")
    missing = kale("show", "zzzz", "--home", str(script.home))
    assert missing.returncode == 1 and "no run 'zzzz'" in missing.stderr
    script.run(FLOW, "1")
    ambiguous = kale("show", "", "--home", str(script.home))
    assert ambiguous.returncode == 1 and "matches 2 runs" in ambiguous.stderr
    empty = kale("runs", "--home", str(script.root / "nothing"))
    assert "no runs in" in empty.stdout


def test_kale_show_logs_prints_a_progress_bar_in_its_final_state(script):
    script.run(BAR_STEP)
    shown = kale("show", script.record()["id"], "--home", str(script.home), "--logs")
    assert shown.returncode == 0, shown.stderr
    logged = [line for line in shown.stdout.splitlines() if line.startswith("    | ")]
    assert logged == ["    | 100%|##########| 20/20", "    | no newline at the end"]
