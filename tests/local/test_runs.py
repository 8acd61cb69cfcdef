"""Local runs end to end: real scripts in subprocesses, checked through what the user sees and
the run record (times are compared from the record, never against wall-clock thresholds)."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest

from tests.local.conftest import THREADED_LIBRARY, pid_alive


def started_ended(record, step):
    attempt = record["steps"][step]["attempts"][-1]
    return attempt["started"], attempt["ended"]


def test_a_diamond_runs_its_branches_at_the_same_time(script):
    result = script.run('''
        @step
        def get():
            return 1

        @step
        def left(x):
            import time
            time.sleep(0.5)
            return x

        @step
        def right(x):
            import time
            time.sleep(0.5)
            return x

        @step
        def join(a, b):
            return a + b

        @pipeline
        def diamond():
            x = get()
            a = left(x)
            b = right(x)
            join(a, b)

        if __name__ == "__main__":
            run = diamond()
            print("RESULT", run.outputs)
    ''')
    assert result.returncode == 0, result.stderr
    assert "RESULT {'join': 2}" in result.stdout
    record = script.record()
    left, right = started_ended(record, "left"), started_ended(record, "right")
    assert left[0] < right[1] and right[0] < left[1]  # the two intervals overlap
    assert started_ended(record, "join")[0] >= max(left[1], right[1]) - 0.05


def test_parallelism_flag_limits_concurrency_and_leaves_the_script_argv(script):
    result = script.run('''
        import sys

        @step
        def a():
            import time
            time.sleep(0.3)

        @step
        def b():
            import time
            time.sleep(0.3)

        @pipeline
        def two():
            a()
            b()

        if __name__ == "__main__":
            print("ARGV", sys.argv[1:])
            two()
    ''', "--parallelism", "1", "mine")
    assert result.returncode == 0, result.stderr
    assert "ARGV ['mine']" in result.stdout
    record = script.record()
    first, second = sorted([started_ended(record, "a"), started_ended(record, "b")])
    assert second[0] >= first[1] - 0.01


@pytest.mark.parametrize(("flag", "message"), [
    (["--parallelism", "0"], "--parallelism '0' is not valid"),
    (["--parallelism=x"], "--parallelism 'x' is not valid"),
    (["--parallelism"], "--parallelism needs a value"),
])
def test_bad_kale_flags(script, flag, message):
    result = script.run('''
        @step
        def a():
            pass

        @pipeline
        def p():
            a()

        if __name__ == "__main__":
            p()
    ''', *flag)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_retries_wait_with_exponential_backoff(script):
    result = script.run('''
        @step(retry_count=3, retry_interval=0.2, retry_factor=2, retry_max_interval=0.5)
        def flaky():
            import os
            os.makedirs("tries", exist_ok=True)
            count = len(os.listdir("tries")) + 1
            open(f"tries/{count}", "w").close()
            if count < 4:
                raise RuntimeError(f"not yet ({count})")
            return count

        @pipeline
        def p():
            flaky()

        if __name__ == "__main__":
            p()
    ''')
    assert result.returncode == 0, result.stderr
    attempts = script.record()["steps"]["flaky"]["attempts"]
    assert [a["status"] for a in attempts] == ["failed", "failed", "failed", "succeeded"]
    assert [a["waited"] for a in attempts] == [0, 0.2, 0.4, 0.5]
    for before, after in itertools.pairwise(attempts):
        assert after["started"] - before["ended"] >= after["waited"] - 0.01
    assert "↻ flaky  retrying  attempt 1 of 4 failed: raised RuntimeError: not yet (1); next in " \
           "0.2s" in result.stdout


def test_a_hanging_step_is_killed_with_its_children_by_its_timeout(script):
    result = script.run('''
        @step(timeout=1)
        def hang():
            import subprocess, time
            child = subprocess.Popen(["sleep", "60"])
            open("child.pid", "w").write(str(child.pid))
            print("waiting forever")
            time.sleep(60)

        @step
        def sibling():
            return "done"

        @pipeline
        def p():
            hang()
            sibling()

        if __name__ == "__main__":
            p()
    ''', timeout=30)
    assert result.returncode == 1
    assert "step `hang` timed out after 1s\n" in result.stderr
    record = script.record()
    assert record["steps"]["hang"]["attempts"][0]["status"] == "timed-out"
    assert record["steps"]["sibling"]["status"] == "succeeded"
    child = int((script.root / "child.pid").read_text())
    deadline = time.monotonic() + 5
    while pid_alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not pid_alive(child)
    assert "waiting forever" in Path(record["steps"]["hang"]["attempts"][0]["log"]).read_text()


def test_the_pipeline_timeout_stops_everything(script):
    result = script.run('''
        @step
        def slow():
            import time
            time.sleep(30)

        @step
        def later(x):
            return x

        @pipeline(timeout=1)
        def p():
            x = slow()
            later(x)

        if __name__ == "__main__":
            p()
    ''', timeout=30)
    assert result.returncode == 1
    record = script.record()
    assert record["status"] == "failed"
    assert record["reason"] == "the pipeline's timeout (1s) expired"
    assert record["steps"]["slow"]["status"] == "failed"
    assert record["steps"]["later"]["status"] == "skipped"
    assert "the pipeline's timeout (1s) expired" in result.stderr


def test_crashing_steps_are_reported_and_other_branches_finish(script):
    result = script.run('''
        @step
        def exits():
            import os
            os._exit(3)

        @step
        def segfaults():
            import ctypes
            ctypes.string_at(0)

        @step
        def fine():
            import time
            time.sleep(0.3)
            return 1

        @step
        def after(x):
            return x

        @pipeline
        def p():
            x = exits()
            segfaults()
            fine()
            after(x)

        if __name__ == "__main__":
            p()
    ''')
    assert result.returncode == 1
    assert "step `exits` exited with status 3 before returning" in result.stderr
    assert "step `segfaults` was killed by SIGSEGV (its process crashed)" in result.stderr
    assert "skipped `after`: needs `exits`, which failed" in result.stderr
    assert "Traceback" not in result.stderr.split("step `exits`")[0]
    record = script.record()
    assert record["steps"]["fine"]["status"] == "succeeded"
    assert record["steps"]["after"]["status"] == "skipped"


def test_a_failing_step_shows_its_own_traceback_only(script):
    result = script.run('''
        def helper_line():
            pass

        @step
        def broken(x=1):
            import json
            return json.loads("{not json")

        @pipeline
        def p():
            broken()

        if __name__ == "__main__":
            p()
    ''')
    assert result.returncode == 1
    err = result.stderr
    assert "error: pipeline `p` failed: step `broken` failed" in err
    assert "step `broken` raised JSONDecodeError: Expecting property name" in err
    assert 'pipeline.py", line 9, in broken' in err
    assert "kale/runtime.py" not in err and "kale/local" not in err
    assert "json/decoder.py" in err  # library frames the user called stay


@pytest.mark.parametrize(("body", "fragment", "fix"), [
    ("return (i for i in range(3))", "returned `x` as a generator, which cannot be passed",
     "return a list instead of a generator"),
    ("import threading\n    return threading.Lock()", "returned `x` as a _thread.lock",
     "locks, threads, sockets and connections"),
    ("return open(__file__)", "returned `x` as a _io.TextIOWrapper",
     "return the file's path"),
])
def test_values_that_cannot_cross_a_step_boundary(script, body, fragment, fix):
    result = script.run(f'''
@step
def make():
    {body}

@step
def use(x):
    return x

@pipeline
def p():
    x = make()
    use(x)

if __name__ == "__main__":
    p()
''')
    assert result.returncode == 1
    assert f"step `make` {fragment}" in result.stderr
    assert fix in result.stderr


def test_unpacking_a_different_number_of_values_fails_clearly(script):
    result = script.run('''
        @step
        def three():
            values = (1, 2, 3)
            return values

        @step
        def use(a):
            return a

        @pipeline
        def p():
            a, b = three()
            use(a)

        if __name__ == "__main__":
            p()
    ''')
    assert result.returncode == 1
    assert ("step `three` returned a tuple of 3 values, but the pipeline unpacks 2: "
            "`a, b = three(...)`") in result.stderr


def test_parameter_overrides_and_macros(script):
    result = script.run('''
        @step
        def echo(run_id, when, stamp, n, rate):
            return [run_id, when, stamp, n, rate]

        @pipeline
        def p(run_id="x", when="y", stamp="z", n=1, rate=0.5):
            echo(run_id, when, stamp, n, rate)

        if __name__ == "__main__":
            run = p(run_id="[[RunUUID]]", when="at-[[CurrentTime]]",
                    stamp="[[CurrentTime.2006-01-02]]", n="7")
            print("VALUES", run.outputs["echo"])
            print("ID", run.id)
    ''')
    assert result.returncode == 0, result.stderr
    values = eval(result.stdout.split("VALUES ")[1].splitlines()[0])
    run_id = result.stdout.split("ID ")[1].split()[0]
    assert values[0] == run_id
    assert re.fullmatch(r"at-\d{14}", values[1])
    assert values[2] == datetime.now().strftime("%Y-%m-%d")
    assert values[3:] == [7, 0.5]
    assert script.record()["parameters"]["run_id"] == run_id


def test_outputs_print_and_record(script):
    result = script.run('''
        @step
        def talk():
            import logging, sys
            print("hello from the step")
            print("to stderr", file=sys.stderr)
            logging.warning("a warning")
            return {"a": 1}

        @pipeline
        def p():
            talk()

        if __name__ == "__main__":
            run = p()
            print("STATUS", run.status, len(run.steps["talk"].attempts))
            print("FOLDER", run.folder.is_dir())
    ''')
    assert result.returncode == 0, result.stderr
    assert "  talk │ hello from the step" in result.stdout
    assert "  talk │ to stderr" in result.stdout
    assert "  talk │ WARNING:root:a warning" in result.stdout
    assert "STATUS succeeded 1" in result.stdout and "FOLDER True" in result.stdout
    assert re.search(r"^talk +succeeded +1 +\d+ms$", result.stdout, re.MULTILINE)
    record = script.record()
    log = Path(record["steps"]["talk"]["attempts"][0]["log"]).read_text()
    assert "hello from the step" in log and "a warning" in log
    output = record["steps"]["talk"]["outputs"]["return"]
    assert json.loads(Path(output["path"]).read_text()) == {"a": 1}


def test_steps_run_in_the_project_root_with_local_packages(script, tmp_path):
    (tmp_path / "helpers").mkdir()
    (tmp_path / "helpers" / "__init__.py").write_text("VALUE = 42\n")
    (tmp_path / "settings.json").write_text('{"k": "v"}')
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    path = script.write('''
        @step
        def where():
            import json, os, sys
            from helpers import VALUE
            return [os.getcwd(), sys.path[0], VALUE, json.load(open("settings.json"))]

        @pipeline
        def p():
            where()

        if __name__ == "__main__":
            print("OUT", p().outputs["where"])
    ''')
    import subprocess
    import sys
    result = subprocess.run([sys.executable, str(path)], capture_output=True, text=True,
                            cwd=elsewhere, env=script.env())
    assert result.returncode == 0, result.stderr
    values = eval(result.stdout.split("OUT ")[1].splitlines()[0])
    assert values == [str(tmp_path), str(tmp_path), 42, {"k": "v"}]


def test_numpy_arrays_are_read_back_memory_mapped(script):
    pytest.importorskip("numpy")
    result = script.run('''
        @step
        def make():
            import numpy as np
            return np.arange(1000, dtype="float64")

        @step
        def use(values):
            import numpy as np
            assert isinstance(values, np.memmap), type(values)
            values[0] = 100.0   # copy-on-write: allowed, and private to this step
            return float(values.sum())

        @step
        def again(values):
            return float(values[0])

        @pipeline
        def p():
            values = make()
            use(values)
            again(values)

        if __name__ == "__main__":
            print("OUT", p().outputs)
    ''')
    assert result.returncode == 0, result.stderr
    assert "OUT {'use': 499600.0, 'again': 0.0}" in result.stdout


def test_ctrl_c_stops_every_step_and_records_what_finished(script):
    process = script.start('''
        @step
        def quick():
            return 1

        @step
        def slow(x):
            import os, subprocess, time
            child = subprocess.Popen(["sleep", "60"])
            open("pids", "w").write(f"{os.getpid()} {child.pid} {os.getppid()}")
            time.sleep(60)

        @pipeline
        def p():
            x = quick()
            slow(x)

        if __name__ == "__main__":
            p()
    ''')
    pids_file = script.root / "pids"
    deadline = time.monotonic() + 30
    while not pids_file.exists() or not pids_file.read_text():
        assert time.monotonic() < deadline and process.poll() is None, process.communicate()
        time.sleep(0.05)
    step_pid, child_pid, zygote_pid = map(int, pids_file.read_text().split())
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=30)
    assert process.returncode == 130, err  # as a shell reports Ctrl-C
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    assert re.search(r"^slow +cancelled +1 ", out, re.MULTILINE), out  # the summary, only
    assert "kale: run " in out and " interrupted in " in out
    for pid in (step_pid, child_pid, zygote_pid):
        deadline = time.monotonic() + 5
        while pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not pid_alive(pid)
    record = script.record()
    assert record["status"] == "interrupted"
    assert record["steps"]["quick"]["status"] == "succeeded"
    assert record["steps"]["slow"]["status"] == "cancelled"
    assert os.path.exists(record["steps"]["quick"]["outputs"]["x"]["path"])


def test_ctrl_c_reaches_a_script_that_catches_it(script):
    process = script.start('''
        @step
        def slow():
            import time
            open("started", "w").close()
            time.sleep(60)

        @pipeline
        def p():
            slow()

        if __name__ == "__main__":
            try:
                p()
            except KeyboardInterrupt:
                print("CAUGHT")
    ''')
    deadline = time.monotonic() + 30
    while not (script.root / "started").exists():
        assert time.monotonic() < deadline and process.poll() is None, process.communicate()
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert "CAUGHT" in out


def test_steps_in_indented_blocks_and_renamed_functions_run(script):
    result = script.run('''
        if True:
            @step
            def report(x):
                text = """Header

        body"""
                return text

        def _impl(x):
            return x * 2

        _impl.__name__ = "double"
        double = step(_impl)

        @pipeline
        def p(x=1):
            report(x)
            double(x)

        if __name__ == "__main__":
            print("OUT", p().outputs)
    ''')
    assert result.returncode == 0, result.stderr
    assert "OUT {'report': 'Header\\n\\nbody', 'double': 2}" in result.stdout


def test_a_lost_step_process_server_fails_the_attempt_and_retries_start_afresh(script):
    result = script.run('''
        @step(retry_count=1)
        def victim():
            import os, signal, time
            if not os.path.exists("killed-once"):
                open("killed-once", "w").close()
                os.kill(os.getppid(), signal.SIGKILL)  # the zygote that forked this step
                time.sleep(30)
            return "survived"

        @pipeline
        def p():
            victim()

        if __name__ == "__main__":
            print("OUT", p().outputs)
    ''', timeout=60)
    assert result.returncode == 0, result.stderr
    assert "OUT {'victim': 'survived'}" in result.stdout
    attempts = script.record()["steps"]["victim"]["attempts"]
    assert attempts[0]["status"] == "crashed"
    assert "was lost: Kale's step-process server stopped" in attempts[0]["error"]["message"]


def test_runs_in_threads_of_one_process_stay_apart(script):
    result = script.run('''
        import threading

        @step
        def a(x):
            import time
            time.sleep(0.2 + x * 0.05)
            return x

        @step
        def b(y):
            return y * 10

        @pipeline
        def p(x=1):
            y = a(x)
            b(y)

        if __name__ == "__main__":
            results = {}
            def go(i):
                results[i] = p(x=i).outputs["b"]
            threads = [threading.Thread(target=go, args=(i,)) for i in range(3)]
            for t in threads: t.start()
            for t in threads: t.join()
            print("OUT", sorted(results.items()))
    ''')
    assert result.returncode == 0, result.stderr
    assert "OUT [(0, 0), (1, 10), (2, 20)]" in result.stdout


def test_a_library_that_starts_threads_at_import_is_not_forked_with(script, tmp_path_factory):
    # outside the project (a folder on sys.path inside it holds project modules, never preloaded)
    library = tmp_path_factory.mktemp("site")
    (library / "busy_telemetry.py").write_text(THREADED_LIBRARY)
    result = script.run('''
        @step(timeout=20)
        def use():
            import busy_telemetry
            return busy_telemetry.record()

        @pipeline
        def p():
            use()

        if __name__ == "__main__":
            print("OUT", p().outputs)
    ''', PYTHONPATH=str(library), timeout=60)
    assert result.returncode == 0, result.stderr
    assert "OUT {'use': 'recorded'}" in result.stdout


def test_sigterm_stops_the_run_and_writes_the_record(script):
    process = script.start('''
        @step
        def slow():
            import time
            open("started", "w").close()
            time.sleep(60)

        @pipeline
        def p():
            slow()

        if __name__ == "__main__":
            p()
    ''')
    deadline = time.monotonic() + 30
    while not (script.root / "started").exists():
        assert time.monotonic() < deadline and process.poll() is None
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    process.communicate(timeout=30)
    assert process.returncode == -signal.SIGTERM
    record = script.record()
    assert record["status"] == "interrupted"
    assert record["reason"] == "terminated (SIGTERM)"
    assert record["steps"]["slow"]["status"] == "cancelled"


def test_a_pipeline_timeout_during_a_retry_wait(script):
    result = script.run('''
        @step(retry_count=5, retry_interval=2)
        def flaky():
            raise RuntimeError("nope")

        @pipeline(timeout=1)
        def p():
            flaky()

        if __name__ == "__main__":
            p()
    ''')
    assert result.returncode == 1
    assert "step `flaky` raised RuntimeError: nope" in result.stderr
    assert "then the pipeline's timeout (1s) expired before its next attempt" in result.stderr
    assert script.record()["steps"]["flaky"]["status"] == "failed"


def test_an_unusable_kale_home_is_explained(script, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    result = script.run('''
        @step
        def s():
            return 1

        @pipeline
        def p():
            s()

        if __name__ == "__main__":
            p()
    ''', KALE_HOME=str(blocker))
    assert result.returncode == 1
    assert "Kale cannot write the run record to" in result.stderr
    assert "set KALE_HOME to a folder you can write to" in result.stderr
    assert "Traceback" not in result.stderr


BAR_STEP = '''
    @step
    def bar():
        import sys
        try:
            from tqdm import tqdm
        except ImportError:  # the same bytes, drawn by hand
            tqdm = None
        if tqdm is not None:
            for _ in tqdm(range(20), file=sys.stderr, mininterval=0, ascii=True,
                          bar_format="{percentage:3.0f}%|{bar:10}| {n}/{total}"):
                pass
        else:
            states = [f"\\r{5 * i:3d}%|{'#' * (i // 2):<10}| {i}/20" for i in range(21)]
            for state in [*states, states[-1]]:
                sys.stderr.write(state)
                sys.stderr.flush()
            sys.stderr.write("\\n")
        sys.stdout.write("no newline at the end")

    @pipeline
    def p():
        bar()

    if __name__ == "__main__":
        p()
'''


def test_a_progress_bar_is_shown_once_in_its_final_state(script):
    result = script.run(BAR_STEP)
    assert result.returncode == 0, result.stderr
    shown = [line for line in result.stdout.splitlines() if line.startswith("  bar │")]
    assert shown == ["  bar │ 100%|##########| 20/20", "  bar │ no newline at the end"]
    log = script.home / "runs" / script.record()["id"] / "steps" / "bar" / "attempt-1.log"
    assert log.read_bytes().count(b"\r") >= 21  # the log keeps every redraw


def test_processes_that_leave_the_step_s_session_die_with_the_step(script):
    result = script.run('''
        @step
        def detach():
            import subprocess
            child = subprocess.Popen(["sleep", "60"], start_new_session=True)
            open("detached.pid", "w").write(str(child.pid))
            return "ok"

        @pipeline
        def p():
            detach()

        if __name__ == "__main__":
            p()
    ''')
    assert result.returncode == 0, result.stderr
    pid = int((script.root / "detached.pid").read_text())
    deadline = time.monotonic() + 5
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not pid_alive(pid)


DOUBLE_FORK = """
        def daemonise(name, exec_sleep):
            import os, time
            # The classic daemon: fork, setsid, fork again; the middle process exits, so the
            # daemon is an orphan in a session and group of its own.
            middle = os.fork()
            if middle == 0:
                os.setsid()
                if os.fork() == 0:
                    open(name, "w").write(str(os.getpid()))
                    if exec_sleep:
                        os.execvp("sleep", ["sleep", "120"])
                    time.sleep(120)
                    os._exit(0)
                os._exit(0)
            os.waitpid(middle, 0)
            while not os.path.exists(name) or not open(name).read():
                time.sleep(0.01)
"""


@pytest.mark.parametrize("exec_sleep", [False, True], ids=["fork-only", "exec"])
def test_a_daemon_a_step_starts_ends_with_the_step(script, exec_sleep):
    result = script.run(DOUBLE_FORK + f'''
        @step
        def start():
            daemonise("daemon.pid", {exec_sleep})
            return int(open("daemon.pid").read())

        @step
        def after(pid):
            import os, time
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                try:
                    state = open(f"/proc/{{pid}}/stat").read().rsplit(")", 1)[1].split()[0]
                except OSError:
                    return "gone"
                if state == "Z":
                    return "gone"
                time.sleep(0.01)
            return "alive"

        @pipeline
        def p():
            pid = start()
            after(pid)

        if __name__ == "__main__":
            print("AFTER", p().outputs["after"])
    ''')
    assert result.returncode == 0, result.stderr
    pid = int((script.root / "daemon.pid").read_text())
    try:
        assert "AFTER gone" in result.stdout  # dead before the next step started
        assert not pid_alive(pid)
    finally:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


@pytest.mark.parametrize("exec_sleep", [False, True], ids=["fork-only", "exec"])
def test_a_daemon_of_a_timed_out_step_dies_with_it(script, exec_sleep):
    result = script.run(DOUBLE_FORK + f'''
        @step(timeout=1)
        def hang():
            import time
            daemonise("daemon.pid", {exec_sleep})
            time.sleep(60)

        @pipeline
        def p():
            hang()

        if __name__ == "__main__":
            p()
    ''', KALE_TIMEOUT_GRACE="0.5", timeout=30)
    assert result.returncode == 1, result.stderr
    assert "step `hang` timed out after 1s" in result.stderr
    pid = int((script.root / "daemon.pid").read_text())
    try:
        assert not pid_alive(pid)  # the run has returned: nothing of it is left
    finally:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


def test_the_ml_stack_crosses_step_boundaries_by_type(script):
    pytest.importorskip("pandas")
    pytest.importorskip("sklearn")
    pytest.importorskip("torch")
    result = script.run('''
        @step
        def load():
            import pandas as pd
            return pd.DataFrame({"x": [0.0, 1.0, 2.0, 3.0], "y": [0, 0, 1, 1],
                                 "kind": pd.Categorical(["a", "b", "a", "b"])})

        @step
        def fit(frame):
            from sklearn.linear_model import LogisticRegression
            return LogisticRegression().fit(frame[["x"]], frame["y"])

        @step
        def embed(frame):
            import torch
            return torch.tensor(frame["x"].to_numpy())

        @step
        def save_model(model):
            import pathlib, pickle
            folder = pathlib.Path("artifacts")
            folder.mkdir(exist_ok=True)
            (folder / "model.pkl").write_bytes(pickle.dumps(model))
            return folder

        @step
        def check(frame, model, tensor, folder):
            import pandas as pd, torch
            assert str(frame["kind"].dtype) == "category"
            assert "kale-home" in str(folder)  # a copy in the run store, not the original
            return [int(model.predict(frame[["x"]])[-1]), float(tensor.sum()),
                    sorted(p.name for p in folder.iterdir())]

        @pipeline
        def p():
            frame = load()
            model = fit(frame)
            tensor = embed(frame)
            folder = save_model(model)
            check(frame, model, tensor, folder)

        if __name__ == "__main__":
            print("OUT", p().outputs)
    ''', timeout=120)
    assert result.returncode == 0, result.stderr
    assert "OUT {'check': [1, 6.0, ['model.pkl']]}" in result.stdout
    steps = script.record()["steps"]
    backends = {name: next(iter(step["outputs"].values()))["backend"]
                for name, step in steps.items() if step["outputs"]}
    assert backends == {"load": "arrow", "fit": "sklearn", "embed": "torch",
                        "save-model": "path", "check": "json"}


def test_a_script_run_through_a_symbolic_link_belongs_to_its_real_folder(script, tmp_path):
    import os

    project = script.root / "project"
    project.mkdir()
    (project / "helpers.py").write_text("VALUE = 41\n")
    (project / "pipe.py").write_text(
        "from kale.sdk import pipeline, step\n\n"
        "@step\ndef a():\n    import helpers\n    return helpers.VALUE + 1\n\n"
        "@step\ndef show(x):\n    print('GOT', x)\n\n"
        "@pipeline(name='linked')\ndef p():\n    x = a()\n    show(x)\n\n"
        "if __name__ == '__main__':\n    p()\n")
    (script.root / "bin").mkdir()
    os.symlink(project / "pipe.py", script.root / "bin" / "train.py")
    result = subprocess.run([sys.executable, "bin/train.py"], capture_output=True, text=True,
                            cwd=script.root, env=script.env(), timeout=60)
    assert result.returncode == 0, result.stderr
    assert "GOT 42" in result.stdout


def test_a_step_that_runs_a_pipeline_fails_instead_of_starting_itself_again(script):
    script.write('''
        from kale.sdk import pipeline, step

        @step
        def leaf():
            return 1

        @pipeline
        def inner():
            leaf()
    ''', name="pipes_mod.py")
    result = script.run('''
        from kale.sdk import pipeline, step

        @step
        def nested():
            import io
            from kale.local import run_graph
            from kale.local.progress import PlainProgress
            from pipes_mod import inner
            return run_graph(inner.graph, {}, progress=PlainProgress(io.StringIO()))

        @pipeline
        def outer():
            nested()

        if __name__ == "__main__":
            outer()
    ''')
    assert result.returncode == 1, result.stderr
    assert "pipeline `inner` was started inside step `nested`: a step cannot run a pipeline" \
        in result.stderr


def test_classes_and_enums_of_the_script_are_the_receiving_step_s_own(script):
    result = script.run('''
        import enum
        from dataclasses import dataclass
        from kale.sdk import pipeline, step

        class Color(enum.Enum):
            RED = 1
            GREEN = 2

        @dataclass
        class Point:
            x: int

        @step
        def make():
            return Color.GREEN, Point(3)

        @step
        def check(color, point):
            print("SAME", color is Color.GREEN, isinstance(point, Point), point.x)

        @step
        def blind(point):
            print("BLIND", type(point).__name__, point.x)  # its module has no Point in view

        @pipeline
        def p():
            color, point = make()
            check(color, point)
            blind(point)

        if __name__ == "__main__":
            p()
    ''')
    assert result.returncode == 0, result.stderr
    assert "SAME True True 3" in result.stdout
    assert "BLIND Point 3" in result.stdout
