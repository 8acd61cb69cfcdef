"""The run record on disk, and `kale runs` / `kale show` reading it."""

from __future__ import annotations

import json

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
