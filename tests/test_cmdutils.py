"""kale.cmdutils (and rok_common.cmdutils): real commands, streamed, checked, and ended with
their whole process tree."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import textwrap
import time

import pytest

from kale import cmdutils
from kale.cmdutils import CommandExecutionError, CommandTimeoutError, ExtCommand


def test_run_streams_and_returns_the_command(capfd):
    ext = cmdutils.run("which echo")
    assert isinstance(ext, ExtCommand)
    assert ext.status == "FINISHED" and ext.returncode == 0 and ext.ret == 0
    assert ext.pid > 0 and ext.shell is False
    assert ext.out.strip().endswith("/echo")
    assert repr(ext) == (f"<ExtCommand [{ext.id}] `which echo', status=FINISHED (ret: 0), "
                         f"PID={ext.pid}, shell=False>")
    assert capfd.readouterr().out.strip() == ext.out.strip()  # streamed as it came


def test_a_string_is_split_as_a_shell_would_but_runs_without_one(capfd):
    ext = cmdutils.run("echo 'two words' $HOME")
    assert ext.out == "two words $HOME\n"
    assert cmdutils.run("echo $((1+2))", shell=True).out == "3\n"
    assert cmdutils.run(["echo", "a b"]).out == "a b\n"


def test_ids_count_up():
    first, second = cmdutils.run("true"), cmdutils.run("true")
    assert second.id == first.id + 1


def test_a_failure_names_the_command_status_and_end_of_stderr(capfd):
    with pytest.raises(CommandExecutionError) as caught:
        cmdutils.run(["sh", "-c", "for i in $(seq 1 30); do echo line $i >&2; done; exit 3"])
    error = caught.value
    assert error.returncode == 3 and error.command.startswith("sh -c")
    message = str(error)
    assert "exited with status 3" in message
    assert "line 30" in message and "line 11" in message and "line 10\n" not in message
    assert error.ext.status == "FAILED"
    # It pickles (a step's process sends its error back that way).
    assert str(pickle.loads(pickle.dumps(error))) == message
    with pytest.raises(CommandExecutionError, match=r"`false` exited with status 1 \(no stderr"):
        cmdutils.run("false")
    assert cmdutils.run("false", check=False).status == "FAILED"


def test_a_missing_program_says_so():
    with pytest.raises(CommandExecutionError, match=r"could not start.*on PATH"):
        cmdutils.run("no-such-program-kale")


def test_yld_returns_stdout_stripped_and_streams_stderr(capfd):
    assert cmdutils.yld("echo '  hello  '") == "hello"
    assert capfd.readouterr().out == ""
    assert cmdutils.yld(["sh", "-c", "echo out; echo err >&2"]) == "out"
    assert capfd.readouterr().err == "err\n"
    with pytest.raises(CommandExecutionError, match="oops"):
        cmdutils.yld(["sh", "-c", "echo oops >&2; exit 2"])


def test_env_cwd_and_stdin(tmp_path):
    assert cmdutils.yld("sh -c 'echo $KALE_X'", env={"KALE_X": "42"}) == "42"
    assert "PATH" in cmdutils.yld("env", env={"KALE_X": "1"})  # added to the environment
    assert cmdutils.yld("pwd", cwd=tmp_path) == str(tmp_path)
    assert cmdutils.yld("cat", stdin="fed") == "fed"


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_a_timeout_ends_the_command_and_everything_it_started(tmp_path):
    pids = tmp_path / "pids"
    # A child in the group, and a grandchild that left it (its own session).
    script = (f"sleep 300 & echo $! >> {pids}; "
              f"setsid sleep 300 & echo $! >> {pids}; wait")
    started = time.monotonic()
    with pytest.raises(CommandTimeoutError, match=r"timed out after 0.5s") as caught:
        cmdutils.run(["sh", "-c", script], timeout=0.5, kill_grace=0.5)
    assert time.monotonic() - started < 60  # ended, not waited for: the command sleeps 300 s
    assert isinstance(caught.value, TimeoutError) and caught.value.ext.status == "KILLED"
    children = [int(line) for line in pids.read_text().split()]
    assert len(children) == 2
    deadline = time.monotonic() + 3
    while any(_alive(pid) for pid in children) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(_alive(pid) for pid in children)


def test_sigterm_then_sigkill_for_a_command_that_ignores_it(tmp_path):
    started = time.monotonic()
    with pytest.raises(CommandTimeoutError):
        cmdutils.run(["sh", "-c", "trap '' TERM; sleep 300"], timeout=0.2, kill_grace=0.3)
    assert time.monotonic() - started < 60  # ended, not waited for: the command sleeps 300 s


def test_ctrl_c_ends_the_command_tree(tmp_path):
    """Ctrl-C in a script that runs a command: the command and its children end with it."""
    pids = tmp_path / "pids"
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(f"""
        from rok_common import cmdutils
        try:
            cmdutils.run(["sh", "-c", "sleep 300 & echo $! > {pids}; wait"])
        except KeyboardInterrupt:
            print("interrupted", flush=True)
            raise
    """))
    process = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE,
                               text=True)
    deadline = time.monotonic() + 20
    while not (pids.exists() and pids.read_text().strip()) and time.monotonic() < deadline:
        time.sleep(0.05)
    child = int(pids.read_text())
    os.kill(process.pid, 2)
    out, _ = process.communicate(timeout=20)
    assert "interrupted" in out and process.returncode != 0
    deadline = time.monotonic() + 30  # a bound on the wait, not a timing goal: a loaded CI box
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(child)


def test_ctrl_c_as_the_command_starts_still_ends_it(tmp_path):
    """A Ctrl-C that lands inside subprocess.Popen, after the command has started (a loaded
    machine: the command runs before Popen returns), still ends the command."""
    pids = tmp_path / "pids"
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(f"""
        import os, signal, subprocess
        from kale import cmdutils

        class StartedThenInterrupted(subprocess.Popen):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, **kwargs)
                open({str(pids)!r}, "w").write(str(self.pid))
                os.kill(os.getpid(), signal.SIGINT)
                for _ in range(10000):  # the handler runs here, before Popen returns
                    pass

        subprocess.Popen = StartedThenInterrupted
        try:
            cmdutils.run(["sleep", "300"])
        except KeyboardInterrupt:
            print("interrupted", flush=True)
            raise
    """))
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=60)
    assert "interrupted" in done.stdout and done.returncode != 0, done.stderr
    child = int(pids.read_text())
    deadline = time.monotonic() + 30  # a bound on the wait, not a timing goal
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    alive = _alive(child)
    if alive:
        os.kill(child, 9)
    assert not alive


def test_rok_common_is_kale_cmdutils():
    import kale
    from rok_common import cmdutils as rok
    from rok_common.cmdutils import run

    assert rok.run is cmdutils.run is run
    assert kale.cmdutils is cmdutils


def tree_pipeline(pids, decorator: str, package: str) -> str:
    """A pipeline whose one step runs a command that starts two children, one in the command's
    group and one that leaves its session (setsid); their pids go to ``pids``."""
    return f'''
        {decorator}
        def slow():
            from {package} import cmdutils
            cmdutils.run(["sh", "-c", "echo started; sleep 300 & echo $! >> {pids}; "
                          "setsid sleep 300 & echo $! >> {pids}; wait"])

        @pipeline(name="slow")
        def slow_pipeline():
            slow()

        if __name__ == "__main__":
            slow_pipeline()
    '''


def test_in_a_step_the_output_streams_and_the_steps_timeout_ends_the_tree(tmp_path):
    """A real pipeline: the command's output is the step's, and the step's timeout ends the
    command with the child in its group and the one that left it (its own session)."""
    import re

    from tests.local.conftest import ScriptRunner

    pids = tmp_path / "pids"
    runner = ScriptRunner(tmp_path)
    result = runner.run(tree_pipeline(pids, "@step(timeout=1)", "rok_common"))
    assert result.returncode == 1, result.stdout + result.stderr
    assert re.search(r"slow +│ started", result.stdout), result.stdout
    attempt = runner.record()["steps"]["slow"]["attempts"][0]
    assert attempt["error"]["kind"] == "timeout", attempt
    children = [int(line) for line in pids.read_text().split()]
    assert len(children) == 2
    deadline = time.monotonic() + 10  # a bound on the wait, not a timing goal
    while any(_alive(pid) for pid in children) and \
            time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(_alive(pid) for pid in children)


def test_ctrl_c_on_a_pipeline_run_ends_a_steps_command_tree(tmp_path):
    """Ctrl-C on `python pipeline.py` (SIGINT to the runner): the command a step runs ends with
    its children, the one that left its session included; the run is interrupted."""
    import signal

    from tests.local.conftest import ScriptRunner

    pids = tmp_path / "pids"
    runner = ScriptRunner(tmp_path)
    process = runner.start(tree_pipeline(pids, "@step", "kale"))
    deadline = time.monotonic() + 30  # bounds on waits, not timing goals
    while (not pids.exists() or len(pids.read_text().split()) < 2) and \
            time.monotonic() < deadline:
        time.sleep(0.05)
    children = [int(line) for line in pids.read_text().split()]
    assert len(children) == 2
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=30)
    assert process.returncode == 130, out + err
    assert "interrupted" in out + err
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in children) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(_alive(pid) for pid in children)


def test_a_command_that_leaves_a_process_running_returns(monkeypatch):
    """`server &`: the command exits while a child it left holds its pipes; run returns with
    what was written (after READ_AFTER_EXIT for both pipes together) and the child runs on."""
    monkeypatch.setattr(cmdutils, "READ_AFTER_EXIT", 0.2)
    ext = cmdutils.run(["sh", "-c", "sleep 300 & echo child=$!"])
    assert ext.status == "FINISHED" and ext.returncode == 0
    child = int(ext.out.strip().split("=")[1])
    try:
        assert _alive(child)
    finally:
        os.kill(child, 9)
