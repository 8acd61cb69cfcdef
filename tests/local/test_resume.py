"""Resuming local runs end to end: real scripts in subprocesses, with a side-effect counter in
the steps (each appends its name to ``ran.txt`` when its code runs), so what ran is what the
file says, not what the record claims. Failures, Ctrl-C and SIGKILL of the runner, ``--from``,
edits, damaged outputs, ``kale resume`` and every error."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

KALE = Path(sys.executable).with_name("kale")

SCRIPT = '''
    import os
    import time

    from kale.sdk.logging import log_metric

    def ran(name):
        with open("ran.txt", "a") as handle:
            handle.write(name + "\\n")

    @step
    def load():
        ran("load")
        return [1, 2, 3]

    @step
    def square(x):
        ran(f"square{x}")
        return x * x

    @step
    def total(values):
        ran("total")
        if os.path.exists("fail"):
            raise ValueError("total failed")
        while os.path.exists("hang"):
            time.sleep(0.05)
        log_metric("total", sum(values))
        return sum(values)

    @step
    def report(t):
        ran("report")
        return f"total {t}"

    @pipeline(name="resumable")
    def resumable():
        items = load()
        squares = [square(x) for x in items]
        t = total(squares)
        report(t)

    if __name__ == "__main__":
        run = resumable()
        print("RESULT", run.outputs)
'''

EVERY = ["load", "report", "square1", "square2", "square3", "total"]


class Project:
    def __init__(self, script) -> None:
        self.script = script
        self.root: Path = script.root
        self.text = SCRIPT

    def ran(self) -> list[str]:
        path = self.root / "ran.txt"
        names = sorted(path.read_text().split()) if path.exists() else []
        path.unlink(missing_ok=True)
        return names

    def run(self, *args: str, expect: int = 0) -> str:
        result = self.script.run(self.text, *args)
        assert result.returncode == expect, result.stdout + result.stderr
        return result.stdout + result.stderr

    def flag(self, name: str, on: bool = True) -> None:
        path = self.root / name
        if on:
            path.touch()
        else:
            path.unlink(missing_ok=True)

    def latest(self) -> dict:
        return max(self.script.records(), key=lambda record: record["started"])

    def wait_for(self, name: str, process: subprocess.Popen, limit: float = 30) -> None:
        deadline = time.monotonic() + limit  # a bound on the wait, not a timing goal
        path = self.root / "ran.txt"
        while not (path.exists() and name in path.read_text().split()):
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, f"{name} never ran"
            time.sleep(0.05)


    def wait_for_record(self, task: str, status: str, process: subprocess.Popen,
                        limit: float = 30) -> None:
        deadline = time.monotonic() + limit
        while True:
            records = self.script.records() if (self.script.home / "runs").exists() else []
            if records and self.latest()["steps"].get(task, {}).get("status") == status:
                return
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, f"{task} never {status} in the record"
            time.sleep(0.05)


@pytest.fixture
def project(script):
    return Project(script)


def test_a_failed_run_resumes_with_what_succeeded(project):
    project.flag("fail")
    out = project.run(expect=1)
    assert "total failed" in out
    # Every step of the body counts, the loop's too (its tasks are made later).
    assert "(run " in out and ", 4 steps, up to" in out
    assert project.ran() == ["load", "square1", "square2", "square3", "total"]
    failed = project.latest()
    project.flag("fail", False)
    out = project.run("--resume")
    assert project.ran() == ["report", "total"]
    assert "RESULT {'report': 'total 14'}" in out
    assert f"resuming run {failed['id'][:8]} (failed at `total`)" in out
    assert f"4 of 6 tasks reused from run {failed['id'][:8]}" in out
    record = project.latest()
    assert record["resumed_from"] == failed["id"]
    steps = record["steps"]
    assert {steps[name]["status"] for name in ("load", "square[0]", "square[1]", "square[2]")} \
        == {"cached"}
    assert steps["load"]["cached_from"]["run"] == failed["id"]
    assert steps["load"]["cached_from"]["resumed"] is True
    assert steps["total"]["status"] == steps["report"]["status"] == "succeeded"
    # The outputs are the old run's files, linked, not copies.
    old = Path(failed["steps"]["load"]["outputs"]["items"]["path"])
    new = Path(steps["load"]["outputs"]["items"]["path"])
    assert os.path.samefile(old, new) and new.parent.parent.parent.parent.name == record["id"]


def test_resuming_a_resumed_run_reuses_its_reused_tasks(project):
    project.flag("fail")
    project.run(expect=1)
    project.flag("fail", False)
    project.run("--resume")
    project.ran()
    second = project.latest()
    project.run("--resume")
    assert project.ran() == []
    third = project.latest()
    assert third["resumed_from"] == second["id"]
    assert project.script.run(project.text).returncode == 0  # a plain run runs everything
    assert project.ran() == EVERY


@pytest.mark.parametrize("how", ["ctrl-c", "sigkill"])
def test_an_interrupted_run_resumes(project, how):
    project.flag("hang")
    process = project.script.start(project.text)
    project.wait_for("total", process)
    # Killed once the record says `total` runs: what finished before is in it. (A SIGKILL in
    # the few milliseconds between a task's end and the record's next write loses that task's
    # end: it runs again when resumed.)
    project.wait_for_record("total", "running", process)
    if how == "ctrl-c":
        process.send_signal(signal.SIGINT)
    else:
        process.kill()
    process.communicate(timeout=60)
    assert project.ran() == ["load", "square1", "square2", "square3", "total"]
    interrupted = project.latest()
    # SIGKILL leaves the record saying "running": its runner is gone, so it is interrupted.
    assert interrupted["status"] == ("interrupted" if how == "ctrl-c" else "running")
    project.flag("hang", False)
    out = project.run("--resume", interrupted["id"][:8])
    assert f"resuming run {interrupted['id'][:8]} (interrupted)" in out
    assert project.ran() == ["report", "total"]
    assert "RESULT {'report': 'total 14'}" in out


def test_from_runs_a_step_and_everything_after_it(project):
    project.run()
    project.ran()
    out = project.run("--resume", "--from", "square")
    assert project.ran() == ["report", "square1", "square2", "square3", "total"]
    assert "`square` and the 2 steps after it run (--from)" in out
    assert project.latest()["from_step"] == "square"
    project.run("--resume", "--from=report")
    assert project.ran() == ["report"]


def test_an_edited_step_and_what_follows_run_again(project):
    project.flag("fail")
    project.run(expect=1)
    project.ran()
    project.flag("fail", False)
    project.text = project.text.replace("return x * x", "return x * x + 1")
    out = project.run("--resume")
    assert project.ran() == ["report", "square1", "square2", "square3", "total"]
    assert "RESULT {'report': 'total 17'}" in out


def test_a_damaged_output_is_not_reused(project):
    project.flag("fail")
    project.run(expect=1)
    project.ran()
    failed = project.latest()
    stored = next(iter(failed["steps"]["square[1]"]["outputs"].values()))
    Path(stored["path"]).write_text("99")
    project.flag("fail", False)
    out = project.run("--resume")
    assert project.ran() == ["report", "square2", "total"]
    assert "RESULT {'report': 'total 14'}" in out


def test_loop_items_come_back_without_the_result_file(project):
    """The record keeps a loop's item count; the tokens come from the attempt's result file,
    else from the stored list itself."""
    project.flag("fail")
    project.run(expect=1)
    project.ran()
    failed = project.latest()
    for result in (Path(failed["folder"] if "folder" in failed else
                        project.script.home / "runs" / failed["id"]) / "steps" / "load"
                   ).glob("*.result"):
        result.unlink()
    project.flag("fail", False)
    out = project.run("--resume")
    assert project.ran() == ["report", "total"]
    assert "`items` has 3 items" in out


def test_metrics_of_reused_steps_stay_in_the_record(project):
    project.run()
    project.ran()
    project.run("--resume", "--from", "report")
    assert project.ran() == ["report"]
    result = subprocess.run([str(KALE), "runs", "--home", str(project.script.home)],
                            capture_output=True, text=True, cwd=project.root, check=True)
    lines = [line for line in result.stdout.splitlines() if "resumable" in line]
    assert len(lines) == 2 and all(line.rstrip().endswith("14") for line in lines), \
        result.stdout


def test_kale_resume_starts_the_script_again(project, tmp_path_factory):
    project.flag("fail")
    project.run(expect=1)
    project.ran()
    failed = project.latest()
    project.flag("fail", False)
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    result = subprocess.run(
        [str(KALE), "resume", failed["id"][:6], "--home", str(project.script.home)],
        capture_output=True, text=True, cwd=elsewhere, env=project.script.env())
    assert result.returncode == 0, result.stdout + result.stderr
    assert project.ran() == ["report", "total"]
    assert "RESULT {'report': 'total 14'}" in result.stdout
    resumed = project.latest()
    assert resumed["resumed_from"] == failed["id"]
    shown = subprocess.run([str(KALE), "show", resumed["id"], "--home",
                            str(project.script.home)], capture_output=True, text=True,
                           check=True).stdout
    assert f"resumed run {failed['id']}" in shown
    assert f"reused: outputs of run {failed['id']}" in shown
    result = subprocess.run(
        [str(KALE), "resume", resumed["id"], "--from", "total", "--home",
         str(project.script.home)], capture_output=True, text=True, cwd=elsewhere,
        env=project.script.env())
    assert result.returncode == 0, result.stdout + result.stderr
    assert project.ran() == ["report", "total"]


def test_kale_resume_of_a_run_without_a_script(project):
    project.run()
    record = project.latest()
    path = project.script.home / "runs" / record["id"] / "run.json"
    data = json.loads(path.read_text())
    del data["command"]
    path.write_text(json.dumps(data))
    result = subprocess.run([str(KALE), "resume", record["id"][:8], "--home",
                             str(project.script.home)], capture_output=True, text=True)
    assert result.returncode == 1
    assert "was not started by a script" in result.stderr
    assert f"run(resume='{record['id'][:8]}')" in result.stderr


def test_errors_name_the_call_and_the_fix(project):
    out = project.run("--resume", expect=2)
    assert "there is no earlier run of pipeline `resumable` to resume" in out
    assert "pipeline.py:" in out and "run the pipeline once without --resume" in out
    project.run()
    out = project.run("--resume", "abcdef12", expect=2)
    assert "there is no run 'abcdef12'" in out
    out = project.run("--resume", "--from", "sqare", expect=2)
    assert "has no such step" in out and "did you mean 'square'?" in out
    other = project.script.write(SCRIPT.replace('name="resumable"', 'name="other"'),
                                 name="other.py")
    subprocess.run([sys.executable, str(other)], cwd=project.root, env=project.script.env(),
                   check=True, capture_output=True)
    theirs = project.latest()
    out = project.run("--resume", theirs["id"][:8], expect=2)
    assert "is a run of pipeline `other`, not of `resumable`" in out


def test_a_run_still_running_is_not_resumed(project):
    project.flag("hang")
    process = project.script.start(project.text)
    try:
        project.wait_for("total", process)
        out = project.script.run(project.text, "--resume")
        assert out.returncode == 2, out.stdout + out.stderr
        assert "is still running" in out.stderr
    finally:
        project.flag("hang", False)
        process.communicate(timeout=60)


def test_a_script_argument_after_resume_stays_the_scripts(script):
    text = '''
        import sys

        @step
        def one():
            return 1

        @pipeline(name="args")
        def args_pipeline():
            one()

        if __name__ == "__main__":
            args_pipeline()
            print("ARGS", sys.argv[1:])
    '''
    assert script.run(text).returncode == 0
    result = script.run(text, "--resume", "data.csv", "--from-file", "x")
    assert result.returncode == 0, result.stderr
    assert "ARGS ['data.csv', '--from-file', 'x']" in result.stdout
    result = script.run(text, "--from", "one")  # without --resume, --from is the script's
    assert "ARGS ['--from', 'one']" in result.stdout


def test_run_options_are_checked(script):
    text = '''
        @step
        def one():
            return 1

        @pipeline(name="opts")
        def opts(resume=1):
            one()

        if __name__ == "__main__":
            import sys
            case = sys.argv[1]
            if case == "type":
                opts.run(resume=3.5)
            elif case == "step":
                opts.run(from_step="")
            else:
                opts.run(resume=True)
    '''
    result = script.run(text, "type")
    assert result.returncode == 2 and "run() takes a run id" in result.stderr
    result = script.run(text, "step")
    assert result.returncode == 2 and "the name of a step" in result.stderr
    result = script.run(text, "clash")
    assert result.returncode == 2
    assert "`resume` is both an option of run() and a parameter" in result.stderr


def test_a_notebooks_run_resumes_with_kale_resume(tmp_path):
    """`kale run NOTEBOOK` leaves its own --resume in the command it records: resuming a
    resumed run must not pass it twice."""
    import shutil

    assets = Path(__file__).parents[1] / "assets" / "kale_examples" / "base"
    shutil.copytree(assets, tmp_path / "base")
    folder = tmp_path / "base"
    env = {**os.environ, "KALE_PROGRESS": "plain", "KALE_HOME": str(tmp_path / "home")}
    env.pop("KALE_IN_STEP", None)

    def kale(*args: str) -> subprocess.CompletedProcess:
        done = subprocess.run([str(KALE), *args], capture_output=True, text=True, cwd=folder,
                              env=env)
        assert done.returncode == 0, done.stdout + done.stderr
        return done

    kale("run", "candies_sharing.ipynb")
    kale("run", "candies_sharing.ipynb", "--resume")
    from kale.local.record import list_runs

    resumed = list_runs(tmp_path / "home")[0]
    assert resumed["resumed_from"]
    kale("resume", resumed["id"][:8], "--from", "kid1")
    last = list_runs(tmp_path / "home")[0]
    assert last["resumed_from"] == resumed["id"] and last["from_step"] == "kid1"
    assert {name: step["status"] for name, step in last["steps"].items()} == {
        "sack": "cached", "kid1": "succeeded", "kid2": "succeeded", "kid3": "succeeded"}
