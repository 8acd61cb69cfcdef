"""Container steps in local runs, through a stand-in `docker` on PATH (these machines have no
container runtime): what is mounted and run, values and files crossing to and from function
steps, failures, timeouts and kills that remove the container, and no runtime at all."""

from __future__ import annotations

import json
import os
import re
import signal
import time

import pytest

from tests.local.conftest import pid_alive
from tests.local.standin_docker import calls, install

MIXED = '''
from pathlib import Path
from kale import ContainerStep

count = ContainerStep(
    name="count", image="docker.io/library/busybox:1.36",
    command=["sh", "-c",
             "wc -c < {inputs.picture} | tr -d ' ' > {outputs.size}; "
             "cp {inputs.picture} {outputs.copy}; mkdir {outputs.folder}; "
             "cp {inputs.notes} {outputs.folder}/notes.txt; echo scale={inputs.scale} $GREETING"],
    inputs={"picture": "file", "notes": "file", "scale": "value"},
    outputs={"size": "int", "copy": "file", "folder": "file"},
    env={"GREETING": "hello"}, limits={"cpu": "500m", "memory": "1Gi"})

shout = ContainerStep(name="shout", image="busybox:1.36",
                      command="sh -c 'tr a-z A-Z < {inputs.text} > {outputs.loud}'",
                      inputs={"text": "file"}, outputs={"loud": "value"})

@step
def download(size):
    import tempfile
    path = Path(tempfile.mkdtemp()) / "picture.bin"
    path.write_bytes(b"x" * size)
    return path, "some notes"

@step
def publish(size, copy, folder, loud):
    return size, copy.read_bytes()[:3], (folder / "notes.txt").read_text(), loud

@pipeline(name="mixed")
def mixed(n=5, scales=[1, 2]):
    picture, notes = download(n)
    size, copy, folder = count(picture, notes, scale=50)
    loud = shout(copy)
    publish(size, copy, folder, loud)
    for scale in scales:
        count(picture, notes=notes, scale=scale)
    if size > 3:
        shout(text=notes)

if __name__ == "__main__":
    print("publish:", mixed().outputs["publish"])
'''


@pytest.fixture
def docker(tmp_path):
    folder = tmp_path / "bin"
    install(folder)
    return folder


def _path(folder) -> str:
    return f"{folder}{os.pathsep}{os.environ['PATH']}"


def test_a_mixed_pipeline_runs_end_to_end_with_the_containers(script, docker):
    result = script.run(MIXED, PATH=_path(docker))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "publish: (5, b'xxx', 'some notes', 'XXXXX')" in result.stdout
    assert re.search(r"count +│ scale=50 hello", result.stdout)  # the container's output streams
    record = script.record()
    assert record["status"] == "succeeded"
    assert {name: step["status"] for name, step in record["steps"].items()} == {
        "download": "succeeded", "count": "succeeded", "shout": "succeeded",
        "publish": "succeeded", "count-2[0]": "succeeded", "count-2[1]": "succeeded",
        "condition-1": "succeeded", "shout-2": "succeeded"}
    made = calls(docker)
    runs = [call for call in made if call[0] == "run"]
    assert len(runs) == 5
    assert sum(call[0] == "pull" for call in made) >= 1
    first = next(call for call in runs if "kale.step=count" in call)
    mounts = [first[i + 1] for i, part in enumerate(first) if part == "-v"]
    assert [mount.split(":", 1)[1] for mount in mounts] == [
        "/kale/inputs/picture:ro", "/kale/inputs/notes:ro", "/kale/outputs"]
    assert mounts[0].split(":")[0].endswith("steps/download/outputs/picture.files/picture.bin")
    assert first[first.index("-e"):first.index("-e") + 2] == ["-e", "GREETING=hello"]
    assert first[first.index("--cpus") + 1] == "0.5"
    assert first[first.index("--memory") + 1] == str(2**30)
    entry = first.index("--entrypoint")
    assert first[entry + 1:entry + 4] == ["sh", "docker.io/library/busybox:1.36", "-c"]
    assert "/kale/outputs/size" in first[-1] and "echo scale=50" in first[-1]
    assert sorted(call[-1].rsplit(";", 1)[1] for call in runs
                  if "kale.step=count-2" in call) == [" echo scale=1 $GREETING",
                                                      " echo scale=2 $GREETING"]
    # The attempt's scratch folder is gone once it ended.
    outputs = next((script.home / "runs").glob("*/steps/count/outputs"))
    assert not list(outputs.glob("*.partial")) and not list(outputs.glob(".kale-container-*"))
    meta = json.loads((outputs / "size.meta.json").read_text())
    assert meta["type"] == "int"


def test_without_a_runtime_the_run_does_not_start(script, tmp_path):
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    os.symlink(os.path.realpath(os.sys.executable), empty / "python")
    result = script.run(MIXED, PATH=str(empty))
    assert result.returncode == 1, result.stderr
    assert "container steps `count`, `shout`, `count-2`, `shout-2` of pipeline mixed need a " \
        "container runtime to run locally, and there is none" in result.stderr
    assert "KALE_CONTAINER_RUNTIME=host" in result.stderr and "Docker or Podman" in result.stderr
    assert "pipeline.py:" in result.stderr and "Traceback" not in result.stderr
    assert script.records() == []  # nothing ran
    named = script.run(MIXED, KALE_CONTAINER_RUNTIME="no-such-docker")
    assert "KALE_CONTAINER_RUNTIME=no-such-docker names no program found on PATH" in \
        named.stderr


def test_the_host_runtime_runs_the_command_here_and_says_so(script):
    result = script.run(MIXED, KALE_CONTAINER_RUNTIME="host")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "publish: (5, b'xxx', 'some notes', 'XXXXX')" in result.stdout
    assert "runs `sh` on this machine, not in docker.io/library/busybox:1.36 (not isolated)" in \
        result.stdout


FAILING = '''
from kale import ContainerStep

fail = ContainerStep(name="fail", image="busybox:1.36", retry_count=1,
                     command=["sh", "-c", "echo broken pipe >&2; exit 3"])
missing = ContainerStep(name="missing", image="busybox:1.36",
                        command=["sh", "-c", "true {outputs.result}"],
                        outputs={"result": "value"})

@step
def after(x):
    return x

@pipeline(name="failing")
def failing():
    fail()
    result = missing()
    after(result)

if __name__ == "__main__":
    failing()
'''


def test_a_failing_command_fails_its_step_with_the_end_of_stderr(script, docker):
    result = script.run(FAILING, PATH=_path(docker))
    assert result.returncode == 1
    record = script.record()
    fail = record["steps"]["fail"]
    assert len(fail["attempts"]) == 2  # retried
    message = fail["attempts"][-1]["error"]["message"]
    assert "container step `fail` (image busybox:1.36) exited with status 3" in message
    assert "broken pipe" in message
    missing = record["steps"]["missing"]["attempts"][0]["error"]["message"]
    assert "did not write its output `result` at {outputs.result} (/kale/outputs/result)" in \
        missing
    assert record["steps"]["after"]["status"] == "skipped"


HANGING = '''
from kale import ContainerStep

hang = ContainerStep(name="hang", image="busybox:1.36", timeout=1,
                     command=["sh", "-c", "echo $$ > {outputs.pid}; exec sleep 300"],
                     outputs={"pid": "value"})

@pipeline(name="hanging", timeout={pipeline_timeout})
def hanging():
    hang()

if __name__ == "__main__":
    hanging()
'''


def _container_pid(tmp_path) -> int | None:
    found = list((tmp_path / "kale-home" / "runs").glob("*/steps/hang/outputs/*.partial/"
                                                         "outputs/pid"))
    return int(found[0].read_text()) if found and found[0].read_text().strip() else None


def test_the_step_timeout_removes_the_container(script, docker, tmp_path):
    result = script.run(HANGING.replace("{pipeline_timeout}", "None"), PATH=_path(docker),
                        KALE_TIMEOUT_GRACE="5")
    assert result.returncode == 1
    attempt = script.record()["steps"]["hang"]["attempts"][0]
    assert attempt["error"]["kind"] == "timeout" and "timed out after 1s" in \
        attempt["error"]["message"]
    removed = [call for call in calls(docker) if call[:2] == ["rm", "-f"]]
    assert len(removed) == 1 and removed[0][2].startswith("kale-hang-")


def test_a_killed_step_process_still_removes_its_container(script, docker, tmp_path):
    """Ctrl-C kills the step's process outright: the step-process server removes the container
    it recorded, as docker would keep it running otherwise."""
    script.write(HANGING.replace("{pipeline_timeout}", "None").replace("timeout=1,", ""))
    import subprocess
    import sys

    process = subprocess.Popen([sys.executable, "pipeline.py"], cwd=script.root,
                               env=script.env(PATH=_path(docker)), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while _container_pid(tmp_path) is None and time.monotonic() < deadline:
        time.sleep(0.05)
    pid = _container_pid(tmp_path)
    assert pid is not None
    process.send_signal(signal.SIGINT)
    process.communicate(timeout=30)
    assert process.returncode == 130
    removed = [call for call in calls(docker) if call[:2] == ["rm", "-f"]]
    assert len(removed) == 1 and removed[0][2].startswith("kale-hang-")
    deadline = time.monotonic() + 5
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not pid_alive(pid)


def test_an_image_of_another_platform_is_pointed_out(script, docker):
    state = docker / "docker-state"
    state.mkdir()
    (state / "platform").write_text("linux/s390x\n")
    (state / "present").write_text("busybox:1.36\n")
    result = script.run(FAILING.replace("fail()", "pass"), PATH=_path(docker))
    assert "image busybox:1.36 is built for linux/s390x and this machine is linux/" in \
        result.stdout
    assert not any(call[0] == "pull" for call in calls(docker))  # present: not pulled


def test_calling_a_container_step_outside_a_pipeline_runs_it(tmp_path, docker, monkeypatch):
    monkeypatch.setenv("PATH", _path(docker))
    from kale import ContainerStep

    shout = ContainerStep(name="shout", image="busybox:1.36",
                          command="sh -c 'echo {inputs.text} | tr a-z A-Z > {outputs.loud}'",
                          inputs={"text": "value"}, outputs={"loud": "value"})
    assert shout("hi there") == "HI THERE"
