"""Running a container step on this machine, inside its step's process (the function the parser
generates for a ``ContainerStep`` calls ``run_container``).

The container runtime is the one the user has: ``KALE_CONTAINER_RUNTIME`` (a program such as
``podman`` or a path to one; ``host`` runs the command on this machine, without the image and
not isolated), else ``docker``, else ``podman`` on PATH. ``check_runtime`` says before a run
starts when there is none.

With docker or podman: the image is pulled if it is not here, its platform is compared with this
machine's, then ``run --rm`` with each file input mounted read-only at
``/kale/inputs/<name>``, an output folder mounted at ``/kale/outputs`` (``{outputs.y}`` is
``/kale/outputs/y``), the environment and the CPU and memory limits. Its output streams to the
step's output (``kale.cmdutils``). Whatever ends the step early (its timeout, an error, Ctrl-C)
removes the container (``rm -f``); so does the step-process server when the attempt's process
was killed outright (each running container is recorded in the attempt's output folder,
``stop_recorded``).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import sys

from kale.containers import (
    INPUTS_FOLDER,
    OUTPUTS_FOLDER,
    ContainerStepError,
    file_source,
    place_file,
    read_value,
    render,
    value_text,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from kale.graph.model import Graph

#: The environment variable that names the container runtime (or ``host``).
RUNTIME_VARIABLE = "KALE_CONTAINER_RUNTIME"
_RECORD = ".kale-container-"
_NAME = re.compile(r"^kale-[A-Za-z0-9_.-]{1,120}$")

_FIX = (f"install Docker or Podman (or name the program: {RUNTIME_VARIABLE}=/path/to/podman); "
        f"or set {RUNTIME_VARIABLE}=host to run the command on this machine, without the image "
        "and not isolated (the programs it calls must be installed here)")


class NoRuntime(Exception):
    """No container runtime to run container steps with; the message says why."""


def find_runtime() -> tuple[str, str]:
    """``(kind, program)``: ``("docker", path)``, ``("podman", path)`` or ``("host", "")``."""
    named = os.environ.get(RUNTIME_VARIABLE, "").strip()
    if named:
        if named == "host":
            return "host", ""
        path = shutil.which(named)
        if path is None:
            raise NoRuntime(f"{RUNTIME_VARIABLE}={named} names no program found on PATH")
        return ("podman" if "podman" in os.path.basename(path) else "docker"), path
    for kind in ("docker", "podman"):
        path = shutil.which(kind)
        if path is not None:
            return kind, path
    raise NoRuntime("neither docker nor podman is on PATH")


def check_runtime(graph: Graph) -> None:
    """Before a local run: a ``KaleError`` naming the container steps when there is no
    runtime to run them with."""
    steps = [step for step in graph.steps if step.container is not None]
    if not steps:
        return
    try:
        find_runtime()
    except NoRuntime as reason:
        from kale.errors import KaleError

        names = ", ".join(f"`{step.name}`" for step in steps)
        raise KaleError(
            f"container step{'s' * (len(steps) > 1)} {names} of pipeline {graph.name} need a "
            f"container runtime to run locally, and there is none: {reason}",
            location=steps[0].location, fix=_FIX) from None


def host_platform() -> str:
    """This machine's platform as images name theirs (``linux/amd64``); containers run Linux."""
    import platform

    machine = platform.machine().lower()
    arch = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64",
            "armv7l": "arm", "armv6l": "arm", "i386": "386", "i686": "386"}.get(machine, machine)
    return f"linux/{arch}"


def _quantity(text: str) -> float:
    """A Kubernetes quantity (``4Gi``, ``500m``, ``1.5``) as a number."""
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60,
             "k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18,
             "m": 1e-3}
    for unit, factor in sorted(units.items(), key=lambda item: -len(item[0])):
        if text.endswith(unit):
            return float(text[: -len(unit)]) * factor
    return float(text)


def _say(text: str) -> None:
    print(f"kale: {text}", file=sys.stderr, flush=True)


def _scratch() -> str:
    """A folder for this attempt's inputs and outputs: in the step's output folder, named so
    that it is removed when the attempt ends (a ``.partial`` folder); else a temporary one."""
    from kale.runtime import current_task

    task = current_task()
    if task is None:
        import tempfile

        return tempfile.mkdtemp(prefix="kale-container-")
    folder = os.path.join(task.output_dir, f"container-{os.urandom(4).hex()}.partial")
    os.makedirs(folder)
    return folder


def run_container(spec: dict[str, Any], values: dict[str, Any]) -> Any:
    """Run one container step with these input values; return its outputs as the step's
    result: one value, a tuple in declared order, or None."""
    step = spec["step"]
    try:
        kind, program = find_runtime()
    except NoRuntime as reason:
        raise ContainerStepError(f"container step `{step}` cannot run: {reason}; fix: "
                                 f"{_FIX}") from None
    scratch = _scratch()
    outputs_folder = os.path.join(scratch, "outputs")
    os.makedirs(outputs_folder)
    os.chmod(outputs_folder, 0o777)  # the image's user may not be this one
    texts: dict[tuple[str, str], str] = {}
    mounts: list[tuple[str, str]] = []  # (on this machine, in the container)
    for name, declared in spec["inputs"].items():
        what = f"input `{name}` of container step `{step}`"
        if declared == "value":
            texts[("inputs", name)] = value_text(values[name], what)
            continue
        inside = f"{INPUTS_FOLDER}/{name}"
        if kind == "host":  # a copy: the command must not change what the run stored
            texts[("inputs", name)] = place_file(values[name], os.path.join(scratch, "inputs",
                                                                            name), what)
            continue
        source, payload = file_source(values[name], what)
        if source == "data":
            payload = place_file(values[name], os.path.join(scratch, "inputs", name), what)
        mounts.append((os.path.abspath(payload), inside))
        texts[("inputs", name)] = inside
    for name in spec["outputs"]:
        texts[("outputs", name)] = os.path.join(outputs_folder, name) if kind == "host" else \
            f"{OUTPUTS_FOLDER}/{name}"
    command = [render(part, texts) for part in spec["command"]]
    args = [render(part, texts) for part in spec["args"]]
    if kind == "host":
        _run_on_host(spec, command + args)
    else:
        _run_in_container(spec, kind, program, command, args, mounts, outputs_folder)
    results = []
    for name, declared in spec["outputs"].items():
        path = os.path.join(outputs_folder, name)
        what = f"output `{name}` of container step `{step}`"
        if not os.path.lexists(path):
            raise ContainerStepError(
                f"container step `{step}` succeeded but did not write its output `{name}` at "
                f"{{outputs.{name}}} ({texts[('outputs', name)]}): make the command write it "
                "there")
        if declared == "file":
            from pathlib import Path

            results.append(Path(path))
        else:
            with open(path, encoding="utf-8", errors="replace") as handle:
                results.append(read_value(handle.read(), declared, what))
    if not results:
        return None
    return results[0] if len(results) == 1 else tuple(results)


def _failed(spec: dict[str, Any], where: str, ext: Any) -> ContainerStepError:
    from kale.cmdutils import stderr_tail

    code = ext.returncode
    how = f"was killed by signal {-code}" if code is not None and code < 0 else \
        f"exited with status {code}"
    tail = stderr_tail(ext.err) if ext.err.strip() else ""
    hint = ""
    if "exec format error" in ext.err:
        hint = (f"; `exec format error` means the image is not built for this machine "
                f"({host_platform()}): use one that has this platform")
    return ContainerStepError(f"container step `{spec['step']}` ({where}) {how}{hint}"
                              + (f"; the end of its stderr:\n{tail}" if tail else ""))


def _run_on_host(spec: dict[str, Any], argv: list[str]) -> None:
    from kale import cmdutils

    if not argv:
        raise ContainerStepError(f"container step `{spec['step']}` has no command, and "
                                 f"{RUNTIME_VARIABLE}=host runs only its command (not the "
                                 "image's own entrypoint): give command=[...] or use docker "
                                 "or podman")
    _say(f"{RUNTIME_VARIABLE}=host: container step `{spec['step']}` runs `{argv[0]}` on this "
         f"machine, not in {spec['image']} (not isolated)")
    try:
        ext = cmdutils.run(argv, env=spec["env"] or None, check=False)
    except cmdutils.CommandExecutionError as error:  # it could not start
        raise ContainerStepError(f"container step `{spec['step']}`: {error}") from None
    if ext.returncode != 0:
        raise _failed(spec, f"`{ext.cmd}` on this machine", ext)


def _ensure_image(spec: dict[str, Any], program: str) -> str:
    """Pull the image if it is not here; return its platform (``linux/amd64``)."""
    from kale import cmdutils

    image = spec["image"]
    inspect = [program, "image", "inspect", "--format", "{{.Os}}/{{.Architecture}}", image]
    found = cmdutils.run(inspect, check=False, stream=False)
    if found.returncode != 0:
        _say(f"pulling {image} for container step `{spec['step']}`")
        pulled = cmdutils.run([program, "pull", image], check=False)
        if pulled.returncode != 0:
            raise _failed(spec, f"pulling {image}", pulled)
        found = cmdutils.run(inspect, check=False, stream=False)
        if found.returncode != 0:
            raise _failed(spec, f"inspecting {image}", found)
    return found.out.strip().splitlines()[-1] if found.out.strip() else ""


def _run_in_container(spec: dict[str, Any], kind: str, program: str, command: list[str],
                      args: list[str], mounts: list[tuple[str, str]],
                      outputs_folder: str) -> None:
    from kale import cmdutils
    from kale.runtime import current_task

    image = spec["image"]
    platform = _ensure_image(spec, program)
    here = host_platform()
    if platform and platform.split("/")[:2] != here.split("/")[:2]:
        _say(f"image {image} is built for {platform} and this machine is {here}: it runs under "
             "emulation if this machine has it (slowly), or fails with `exec format error`; "
             "Kubeflow's nodes need an image of their own platform too")
    name = re.sub(r"[^A-Za-z0-9_.-]", "-", f"kale-{spec['step']}-{os.urandom(4).hex()}")
    argv = [program, "run", "--rm", "--name", name, "--label", f"kale.step={spec['step']}"]
    for source, inside in mounts:
        argv += ["-v", f"{source}:{inside}:ro"]
    if spec["outputs"]:
        argv += ["-v", f"{outputs_folder}:{OUTPUTS_FOLDER}"]
    for key, value in spec["env"].items():
        argv += ["-e", f"{key}={value}"]
    limits = spec.get("limits", {})
    if "cpu" in limits:
        argv += ["--cpus", f"{_quantity(limits['cpu']):g}"]
    if "memory" in limits:
        argv += ["--memory", str(int(_quantity(limits["memory"])))]
    if command:
        argv += ["--entrypoint", command[0], image, *command[1:], *args]
    else:
        argv += [image, *args]
    task = current_task()
    record = os.path.join(task.output_dir, _RECORD + name) if task is not None else None
    if record is not None:  # so that the container goes even if this process is killed
        with open(record, "w") as handle:
            handle.write(name)
    try:
        ext = cmdutils.run(argv, check=False)
    except BaseException:
        # The step's timeout, Ctrl-C, an error: the container goes with the step.
        _remove(program, name)
        raise
    finally:
        if record is not None:
            with contextlib.suppress(OSError):
                os.unlink(record)
    if ext.returncode != 0:
        raise _failed(spec, f"image {image}", ext)


def _remove(program: str, name: str) -> None:
    from kale import cmdutils

    with contextlib.suppress(Exception):
        cmdutils.run([program, "rm", "-f", name], check=False, stream=False, timeout=60)


def stop_recorded(folder: str) -> None:
    """Remove the containers an ended attempt recorded in ``folder`` and did not remove itself
    (its process was killed): the step-process server calls this when it reaps an attempt.
    Only names are read from the records; the runtime is found here, as the step found it."""
    try:
        records = [entry for entry in os.listdir(folder) if entry.startswith(_RECORD)]
    except OSError:
        return
    if not records:
        return
    try:
        kind, program = find_runtime()
    except NoRuntime:
        kind = program = ""
    for record in records:
        name = record[len(_RECORD):]
        if program and kind != "host" and _NAME.match(name):
            _remove(program, name)
        with contextlib.suppress(OSError):
            os.unlink(os.path.join(folder, record))
