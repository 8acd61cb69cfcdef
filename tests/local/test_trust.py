"""What a step's process writes is data to Kale's own process, never code: a forged result or a
forged event runs nothing there, and an output that points outside the step's own folder is
refused before any consumer reads it. And a full disk is a worded failure with a record that
says how the run ended."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap

import pytest

# A pickle that runs code when loaded: it writes the marker file of the test.
PAYLOAD = '''
class Payload:
    def __reduce__(self):
        return (exec, (f"open({MARKER!r}, 'w').write('ran')",))
'''


def marked(script, text: str) -> str:
    marker = script.root / "marker"
    return f"MARKER = {str(marker)!r}\n" + PAYLOAD + textwrap.dedent(text)


def test_a_step_that_writes_a_pickled_result_runs_no_code_in_kale(script):
    result = script.run(marked(script, '''
        @step
        def forge():
            import os, pickle
            log = os.readlink("/proc/self/fd/1")
            with open(log[:-len(".log")] + ".result", "wb") as handle:
                pickle.dump(Payload(), handle)
            os._exit(0)  # before the runtime writes the real result

        @pipeline
        def forged():
            forge()

        if __name__ == "__main__":
            forged()
    '''))
    assert not (script.root / "marker").exists()
    assert result.returncode == 1, result.stderr
    assert "step `forge` left a result Kale did not write: it is not JSON" in result.stderr
    assert "fix: do not write to the step's result file" in result.stderr
    assert "Traceback" not in result.stderr
    assert script.record()["status"] == "failed"


def test_an_output_pointing_outside_the_step_folder_is_refused(script):
    outside = script.root / "outside.pkl"
    result = script.run(marked(script, f'''
        @step
        def forge():
            import os, pickle, types
            from kale.runtime import write_result
            with open({str(outside)!r}, "wb") as handle:
                pickle.dump(Payload(), handle)
            log = os.readlink("/proc/self/fd/1")
            stored = {{"path": {str(outside)!r}, "backend": "pickle", "type": "int", "size": 1}}
            # In whatever format this version of Kale writes results.
            write_result(types.SimpleNamespace(result_path=log[:-len(".log")] + ".result"),
                         {{"status": "done", "outputs": {{"x": stored}}, "duration": 0.0}})
            os._exit(0)

        @step
        def use(x):
            return x

        @pipeline
        def forged():
            x = forge()
            use(x)

        if __name__ == "__main__":
            forged()
    '''))
    assert not (script.root / "marker").exists()
    assert result.returncode == 1, result.stderr
    assert f"step `forge` left a result Kale did not write: it points output `x` at {outside}, " \
        "outside the step's output folder" in result.stderr
    assert "skipped `use`: needs `forge`, which failed" in result.stderr
    assert "Traceback" not in result.stderr
    record = script.record()
    assert record["steps"]["forge"]["outputs"] == {}


#: A project module for steps that write a length-prefixed frame to every pipe they hold (the
#: pipe to Kale's process among them).
PIPES_HELPER = '''
import os
import stat
import struct


def write_to_every_pipe(data, framed=True):
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        try:
            if fd > 2 and stat.S_ISFIFO(os.fstat(fd).st_mode):
                os.write(fd, struct.pack(">I", len(data)) + data if framed else data)
        except OSError:
            pass
'''


def test_a_step_that_writes_to_the_event_pipe_runs_no_code_in_kale(script):
    script.write(PIPES_HELPER, name="pipes_helper.py")
    result = script.run(marked(script, '''
        @step
        def forge():
            import pickle
            frame = pickle.dumps(Payload())
            from pipes_helper import write_to_every_pipe
            write_to_every_pipe(frame)
            return 1

        @pipeline
        def forged():
            forge()

        if __name__ == "__main__":
            print("RESULT", forged().outputs)
    '''))
    assert not (script.root / "marker").exists()
    assert result.returncode == 0, result.stderr
    assert "RESULT {'forge': 1}" in result.stdout


def test_a_step_that_says_it_is_done_before_it_is_gets_its_real_result(script):
    # Kale takes a success as soon as the step's process says its result is written (before
    # the process has exited): a step that sends that event early changes nothing.
    script.write(PIPES_HELPER, name="pipes_helper.py")
    result = script.run('''
        @step
        def early():
            import json, os, time
            from pipes_helper import write_to_every_pipe
            log = os.readlink("/proc/self/fd/1")  # .../runs/<run>/steps/<step>/attempt-1.log
            parts = log.split(os.sep)
            key = f"{parts[-4]}/{parts[-2]}/1"
            write_to_every_pipe(json.dumps(["done", key, None]).encode())
            time.sleep(0.5)
            return 41

        @step
        def after(x):
            return x + 1

        @pipeline
        def told_early():
            x = early()
            after(x)

        if __name__ == "__main__":
            print("RESULT", told_early().outputs)
    ''')
    assert result.returncode == 0, result.stderr
    assert "RESULT {'after': 42}" in result.stdout
    assert script.record()["steps"]["early"]["status"] == "succeeded"


def test_a_step_that_garbles_its_events_holds_up_no_other_step(script):
    # A frame header promising 4,000 bytes that never come: on a pipe shared by every step
    # and the zygote it would swallow the next steps' events and the reports of their exits,
    # and the run would wait for ever. Each attempt reports on a pipe of its own.
    script.write(PIPES_HELPER, name="pipes_helper.py")
    result = script.run('''
        @step
        def garble():
            import struct
            from pipes_helper import write_to_every_pipe
            write_to_every_pipe(struct.pack(">I", 4000), framed=False)
            return 1

        @step
        def sibling():
            return 2

        @step
        def after(a, b):
            return a + b

        @pipeline
        def garbled():
            a = garble()
            b = sibling()
            after(a, b)

        if __name__ == "__main__":
            print("RESULT", garbled().outputs)
    ''', timeout=60)
    assert result.returncode == 0, result.stderr
    assert "RESULT {'after': 3}" in result.stdout
    assert not list(script.home.rglob("*.events"))  # each attempt's pipe is gone with it


def _can_mount_tmpfs(folder) -> bool:
    if not shutil.which("unshare") or not sys.platform.startswith("linux"):
        return False
    done = subprocess.run(["unshare", "-rm", "sh", "-c", f"mount -t tmpfs tmpfs {folder}"],
                          capture_output=True)
    return done.returncode == 0


def run_on_a_small_disk(script, text: str, size: str = "4m") -> subprocess.CompletedProcess:
    """Run the script with KALE_HOME on a tmpfs of ``size``, mounted in a mount namespace of
    its own (no root needed where user namespaces are allowed): a disk that really fills."""
    script.home.mkdir()
    if not _can_mount_tmpfs(script.home):
        pytest.skip("cannot mount a tmpfs in a user namespace here (unshare -rm)")
    path = script.write(text)
    command = f'mount -t tmpfs -o size={size} tmpfs "{script.home}" && ' \
              f'exec "{sys.executable}" "{path}"; exit 99'
    done = subprocess.run(["unshare", "-rm", "sh", "-c", command], capture_output=True,
                          text=True, cwd=script.root, env=script.env(), timeout=60)
    assert done.returncode != 99, done.stderr
    return done


def test_a_step_whose_log_fills_the_disk_fails_the_run_with_a_consistent_record(script):
    # The record lives on the tmpfs: read it from inside the namespace, after the run.
    result = run_on_a_small_disk(script, '''
        @step
        def flood():
            line = "x" * 1000
            while True:
                print(line)

        @step
        def slow():
            import time
            time.sleep(5)

        @pipeline
        def full():
            flood()
            slow()

        if __name__ == "__main__":
            import glob, sys
            try:
                full()
            finally:
                for path in glob.glob(sys.argv[0].rsplit("/", 1)[0] + "/kale-home/runs/*/run.json"):
                    print("RECORD", open(path).read(), file=sys.__stdout__)
    ''')
    import json

    assert result.returncode == 1, result.stderr
    errors = result.stderr
    assert "Traceback" not in errors
    # Who sees the full disk first is a race, and either ending is consistent: the step's
    # process, which cannot write its result and says so, or the runner, whose record write
    # fails and which then stops the steps.
    if "step `flood` was stopped" in errors:
        assert "step `flood` was stopped: the disk that holds the run record" in errors
        assert "set KALE_HOME to a folder on a disk with room" in errors
    else:
        assert "step `flood` raised OSError: [Errno 28] No space left on device, then could "\
            "not write its result to " in errors
        assert "there is no space left on its disk" in errors
        assert "fix: free space on that disk, or set KALE_HOME to a folder on a disk with " \
            "room" in errors
    # Either the runner found the record's disk full and stopped the run, or the record still
    # fitted (its events are appended to a file whose last page had room) and each step that
    # failed says the disk is full.
    assert ("the disk that holds the run record" in errors and "is full" in errors) or \
        errors.count("there is no space left on its disk") >= 2
    assert "exited with status" not in errors
    record = json.loads(result.stdout.split("RECORD ", 1)[1])
    assert record["status"] == "failed"
    assert record["steps"]["flood"]["status"] == "failed"
    assert record["steps"]["slow"]["status"] in ("failed", "cancelled")


def test_an_output_that_does_not_fit_names_the_disk_not_the_value(script):
    result = run_on_a_small_disk(script, '''
        @step
        def big():
            return b"x" * (8 << 20)  # pickled: more than the disk holds

        @pipeline
        def full():
            big()

        if __name__ == "__main__":
            full()
    ''')
    errors = result.stderr
    assert result.returncode == 1, errors
    assert "Traceback" not in errors
    assert "step `big` could not store its output `return`: there is no space left on the " \
        "disk that holds " in errors
    assert "fix: free space on that disk, or (for a local run) set KALE_HOME" in errors
    assert "return plain data" not in errors


def test_a_forged_fork_event_cannot_make_kale_kill_another_process(script):
    script.write(PIPES_HELPER, name="pipes_helper.py")
    bystander = subprocess.Popen(["sleep", "60"])
    try:
        result = script.run('''
            from kale.sdk import pipeline, step

            @step
            def forge():
                import json, os
                # The attempt's key, from its log's path: <run>/steps/<step>/attempt-<n>.log
                log = os.readlink("/proc/self/fd/1").split(os.sep)
                key = f"{log[-4]}/{log[-2]}/{log[-1].split('-')[1].split('.')[0]}"
                data = json.dumps(["forked", key, int(os.environ["BYSTANDER"])]).encode()
                from pipes_helper import write_to_every_pipe
                write_to_every_pipe(data)
                return 1

            @pipeline
            def forged():
                forge()

            if __name__ == "__main__":
                forged()
        ''', BYSTANDER=str(bystander.pid))
        assert result.returncode == 0, result.stderr
        assert bystander.poll() is None, "Kale killed a process that was not its step's"
    finally:
        bystander.kill()
        bystander.wait()


@pytest.mark.parametrize("tokens", [["not json"], ["[]"], ['{"index": 5}'],
                                    ['{"value": 1, "at": 0}'], ['{"index": true}']])
def test_forged_item_tokens_fail_the_step_that_reports_them(script, tokens):
    # They used to pass: every iteration of the loop then failed reading its item, with a
    # JSONDecodeError or an IndexError of Kale's, and the producer counted as succeeded.
    result = script.run(f'''
        @step
        def forge():
            import os, types
            from kale import marshal
            from kale.runtime import write_result
            log = os.readlink("/proc/self/fd/1")
            stored = marshal.save([1], os.path.join(os.path.dirname(log), "outputs"),
                                  "xs").to_json()
            write_result(types.SimpleNamespace(result_path=log[:-len(".log")] + ".result"),
                         {{"status": "done", "outputs": {{"xs": stored}}, "duration": 0.0,
                          "reports": {{"items:xs": {tokens!r}}}}})
            os._exit(0)

        @step
        def use(x):
            return x

        @pipeline
        def forged():
            xs = forge()
            for x in xs:
                use(x)

        if __name__ == "__main__":
            forged()
    ''')
    assert result.returncode == 1, result.stderr
    assert "step `forge` left a result Kale did not write: it reports `items:xs` with item " \
        "tokens Kale does not write" in result.stderr
    assert "skipped `use[*]`: needs `forge`, which failed" in result.stderr
    assert "Traceback" not in result.stderr
    assert script.record()["steps"]["forge"]["status"] == "failed"
