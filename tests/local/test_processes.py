"""Adversarial checks of the step processes (kale.local.processes): the spare a zygote forks
ahead and the invocation it is handed through a pipe, the early take of a success, what a
step leaves behind when Kale's process or the zygote is killed, and what a step changes in
its own process that a later one must not see."""

from __future__ import annotations

import contextlib
import os
import signal
import time

import pytest

from tests.local.conftest import pid_alive


@pytest.mark.parametrize("size", [100_000, 1_500_000])
def test_a_step_whose_source_is_larger_than_a_pipe_runs_while_others_end(script, size):
    # The invocation (the step's source and context) goes to the forked process through a
    # pipe, larger than the pipe holds: the zygote writes it while other attempts end, and
    # each end is a signal that cuts a pipe write short.
    literal = "x" * size
    result = script.run(f'''
        BIG = "{literal}"

        @step
        def big(i: int) -> int:
            return len(BIG) + i

        @step
        def small(i: int) -> int:
            return i

        @pipeline
        def large():
            for i in range(60):
                small(i)
                big(i)

        if __name__ == "__main__":
            print("RESULT", large().outputs["big"][:2])
    ''', "--parallelism", "4", timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"RESULT [{size}, {size + 1}]" in result.stdout
    record = script.record()
    assert all(state["status"] == "succeeded" for state in record["steps"].values())
    assert all(len(state["attempts"]) == 1 for state in record["steps"].values())


def test_a_killed_zygote_leaves_no_process_of_its_steps_behind(script):
    # The zygote is SIGKILLed while a step runs: the step dies with it (it asked the kernel
    # for that), and what the step started in its process group must die too.
    result = script.run('''
        @step
        def victim():
            import os, signal, subprocess, time
            child = subprocess.Popen(["sleep", "120"])
            open("child.pid", "w").write(str(child.pid))
            os.kill(os.getppid(), signal.SIGKILL)  # the zygote that forked this step
            time.sleep(60)

        @pipeline
        def p():
            victim()

        if __name__ == "__main__":
            p()
    ''', timeout=60)
    assert result.returncode == 1, result.stderr
    assert "was lost: Kale's step-process server stopped" in result.stderr
    pid = int((script.root / "child.pid").read_text())
    deadline = time.monotonic() + 5
    try:
        while pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not pid_alive(pid), "a process the step started outlived its zygote"
    finally:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    record = script.record()
    assert record["status"] == "failed"
    assert record["steps"]["victim"]["status"] == "failed"
