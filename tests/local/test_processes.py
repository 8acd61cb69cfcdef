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


def test_what_a_step_changes_in_its_process_no_later_step_sees(script):
    # Every attempt is forked from the zygote, which compiled the step's code once
    # (kale.runtime.precompile): what one attempt changes (its module's globals, a library's
    # state, Kale's compiled code, the environment) is its own, for the next iteration and
    # for a retry alike.
    script.write("COUNT = 0\n", name="attempt_counter.py")
    result = script.run('''
        import json
        SEEN = []

        @step(retry_count=1, retry_interval=0)
        def mark(i: int) -> str:
            import os, attempt_counter
            import kale.runtime as runtime
            state = {"seen": list(SEEN), "counter": attempt_counter.COUNT,
                     "env": os.environ.get("LEAKED"), "json": hasattr(json, "leaked"),
                     "compiled": len(runtime._COMPILED) > 0}
            SEEN.append(i)
            attempt_counter.COUNT += 1
            os.environ["LEAKED"] = "yes"
            json.leaked = True
            runtime._COMPILED.clear()
            if i == 0 and not os.path.exists("failed-once"):
                open("failed-once", "w").close()
                raise RuntimeError("once")
            return repr(state)

        @pipeline
        def p():
            for i in range(4):
                mark(i)

        if __name__ == "__main__":
            print("RESULT", p().outputs["mark"])
    ''', "--parallelism", "1")
    assert result.returncode == 0, result.stderr
    fresh = "{'seen': [], 'counter': 0, 'env': None, 'json': False"
    outputs = result.stdout.split("RESULT ", 1)[1]
    assert outputs.count(fresh) == 4, outputs


def test_ctrl_c_during_a_fan_out_stops_it_and_records_each_item(script):
    process = script.start('''
        @step
        def item(i: int) -> int:
            import os, subprocess, time
            if i >= 3:
                child = subprocess.Popen(["sleep", "120"])
                open(f"child-{i}.pid", "w").write(str(child.pid))
                time.sleep(120)
            return i

        @pipeline
        def fan():
            for i in range(6):
                item(i)

        if __name__ == "__main__":
            fan()
    ''', "--parallelism", "3")
    deadline = time.monotonic() + 60
    while len(list(script.root.glob("child-*.pid"))) < 3:
        assert time.monotonic() < deadline and process.poll() is None, process.communicate()
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=30)
    assert process.returncode == 130, err
    assert "Traceback" not in err, err
    for path in script.root.glob("child-*.pid"):
        pid = int(path.read_text() or 0)
        deadline = time.monotonic() + 5
        while pid and pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not pid or not pid_alive(pid), f"{path.name} outlived the run"
    steps = script.record()["steps"]
    assert script.record()["status"] == "interrupted"
    for i in range(3):
        assert steps[f"item[{i}]"]["status"] == "succeeded"
        assert os.path.exists(steps[f"item[{i}]"]["outputs"]["return"]["path"])
    for i in range(3, 6):
        assert steps[f"item[{i}]"]["status"] == "cancelled"


def test_the_next_step_never_meets_what_the_one_before_left_running(script):
    # A success is taken as soon as the step's process says its result is written: not when
    # the step left a process running, which must be gone (its lock released) before the
    # next step starts, as when the zygote reaps the step and kills what it left.
    result = script.run('''
        @step
        def holder(i: int) -> int:
            import subprocess, time
            subprocess.Popen(["flock", f"lock-{i}", "sleep", "120"])
            while not __import__("os").path.exists(f"lock-{i}"):
                time.sleep(0.01)
            time.sleep(0.05)
            return i

        @step
        def taker(i: int) -> str:
            import fcntl
            handle = open(f"lock-{i}", "w")
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                return "busy"
            return "free"

        @pipeline
        def locks():
            for i in range(30):
                x = holder(i)
                taker(x)

        if __name__ == "__main__":
            print("TAKERS", locks().outputs["taker"])
    ''', "--parallelism", "2", timeout=120)
    assert result.returncode == 0, result.stderr
    assert f"TAKERS {['free'] * 30}" in result.stdout
