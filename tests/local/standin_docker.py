"""A stand-in for the `docker` program, for tests on machines without a container runtime.

Written into a test's folder as `bin/docker` (``install``). It records every call (one JSON list
of arguments a line, in ``calls.jsonl`` next to it) and plays the parts Kale uses:
``image inspect`` (an image is "present" once pulled, or when named in ``present``), ``pull``,
``run`` (the command runs on this machine, in a session of its own as a daemon's container
would, with every mounted container path in its arguments mapped to the folder on this machine)
and ``rm -f`` (kills a running "container" by name)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

STATE = Path(__file__).resolve().parent / "docker-state"


def main(argv: list[str]) -> int:
    STATE.mkdir(exist_ok=True)
    with open(STATE / "calls.jsonl", "a") as handle:
        handle.write(json.dumps(argv) + "\n")
    command = argv[0] if argv else ""
    if command == "image" and argv[1] == "inspect":
        image = argv[-1]
        present = (STATE / "present").read_text().split() if (STATE / "present").exists() \
            else []
        if image in present or (STATE / "pulled" / image.replace("/", "_")).exists():
            platform = (STATE / "platform").read_text().strip() if \
                (STATE / "platform").exists() else "linux/" + os.uname().machine.replace(
                    "x86_64", "amd64").replace("aarch64", "arm64")
            print(platform)
            return 0
        print(f"Error: No such image: {image}", file=sys.stderr)
        return 1
    if command == "pull":
        (STATE / "pulled").mkdir(exist_ok=True)
        (STATE / "pulled" / argv[-1].replace("/", "_")).touch()
        print(f"pulled {argv[-1]}")
        return 0
    if command == "rm":
        name = argv[-1]
        pid_file = STATE / "containers" / name
        if pid_file.exists():
            with contextlib.suppress(OSError):
                os.killpg(int(pid_file.read_text()), signal.SIGKILL)
            pid_file.unlink(missing_ok=True)
        print(name)
        return 0
    if command == "run":
        return run(argv[1:])
    print(f"stand-in docker: unknown command {argv}", file=sys.stderr)
    return 125


def run(argv: list[str]) -> int:
    mounts: dict[str, str] = {}
    env = dict(os.environ)
    entrypoint = None
    name = f"anonymous-{os.getpid()}"
    index = 0
    with_value = {"--name", "-v", "--volume", "-e", "--env", "--entrypoint", "--label",
                  "--cpus", "--memory", "--platform", "--user"}
    while index < len(argv) and argv[index].startswith("-"):
        flag = argv[index]
        if flag in with_value:
            value = argv[index + 1]
            index += 2
            if flag == "--name":
                name = value
            elif flag in ("-v", "--volume"):
                host, inside = value.split(":")[:2]
                mounts[inside] = host
            elif flag in ("-e", "--env"):
                key, _, text = value.partition("=")
                env[key] = text
            elif flag == "--entrypoint":
                entrypoint = value
        else:
            index += 1
    image, rest = argv[index], argv[index + 1:]
    command = ([entrypoint] if entrypoint else []) + rest
    if not command:
        print(f"stand-in docker: image {image} has no entrypoint here", file=sys.stderr)
        return 125

    def mapped(text: str) -> str:
        for inside in sorted(mounts, key=len, reverse=True):
            text = text.replace(inside, mounts[inside])
        return text

    (STATE / "containers").mkdir(exist_ok=True)
    process = subprocess.Popen([mapped(part) for part in command], env=env,
                               start_new_session=True)
    (STATE / "containers" / name).write_text(str(process.pid))
    while process.poll() is None:
        time.sleep(0.01)
    (STATE / "containers" / name).unlink(missing_ok=True)
    return process.returncode


def install(folder: Path, name: str = "docker") -> Path:
    """Write the stand-in as ``folder/name``, run by this Python; returns its path."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(f"#!{sys.executable}\n" + Path(__file__).read_text())
    path.chmod(0o755)
    return path


def calls(folder: Path) -> list[list[str]]:
    log = folder / "docker-state" / "calls.jsonl"
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
