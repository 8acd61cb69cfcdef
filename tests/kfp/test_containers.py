"""Container steps on Kubeflow: compiled into KFP container components (kfp.local refuses to run
those, so the package is checked as kfp wrote it), with the Kale task before one that turns
function steps' values into files and text, and function steps reading what a container wrote."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

from kale import marshal
from tests.kfp.test_compiler import compile_script
from tests.local.test_containers import MIXED

pytest.importorskip("kfp")


@pytest.fixture(scope="module")
def package(tmp_path_factory) -> tuple[dict, dict]:
    folder = tmp_path_factory.mktemp("containers")
    text = "from kale.sdk import pipeline, step\n" + MIXED.replace(
        'env={"GREETING": "hello"},', 'env={"GREETING": "hello"}, timeout="10m", retry_count=2, '
        'labels={"team": "imaging"}, annotations={"owner": "ana"},')
    path = compile_script(folder, text, "mixed.yaml")
    documents = list(yaml.safe_load_all(path.read_text()))
    return documents[0], documents[1] if len(documents) > 1 else {}



@pytest.fixture(autouse=True)
def working_directory_kept(monkeypatch):
    """container_inputs moves into the project, as a Kubeflow task does: back after each test,
    or later tests of this process would take that folder for their working directory."""
    monkeypatch.chdir(os.getcwd())


def test_a_container_step_is_a_container_component_with_its_placeholders(package):
    spec, _ = package
    executor = spec["deploymentSpec"]["executors"]["exec-count"]["container"]
    assert executor["image"] == "docker.io/library/busybox:1.36"
    assert executor["command"][:2] == ["sh", "-c"]
    script = executor["command"][2]
    assert "wc -c < {{$.inputs.artifacts['in_picture'].path}}" in script
    assert "> {{$.outputs.parameters['out_size'].output_file}}" in script
    assert "{{$.outputs.artifacts['out_copy'].path}}" in script
    assert "mkdir {{$.outputs.artifacts['out_folder'].path}}" in script
    assert "echo scale={{$.inputs.parameters['in_scale']}} $GREETING" in script
    assert executor["env"] == [{"name": "GREETING", "value": "hello"}]
    assert executor["resources"]["cpuLimit"] == 0.5
    assert executor["resources"]["memoryLimit"] == pytest.approx(1.073741824)
    component = spec["components"]["comp-count"]
    assert set(component["inputDefinitions"]["artifacts"]) == {"in_picture", "in_notes"}
    assert component["inputDefinitions"]["parameters"]["in_scale"]["parameterType"] == "STRING"
    assert set(component["outputDefinitions"]["artifacts"]) == {"out_copy", "out_folder"}
    assert component["outputDefinitions"]["parameters"]["out_size"]["parameterType"] == \
        "STRING"


def test_function_step_values_reach_the_container_through_a_kale_task(package):
    spec, _ = package
    tasks = spec["root"]["dag"]["tasks"]
    count = tasks["count"]
    assert count["taskInfo"]["name"] == "count"
    artifacts = count["inputs"]["artifacts"]
    assert artifacts["in_picture"]["taskOutputArtifact"] == {
        "producerTask": "kale-count-inputs", "outputArtifactKey": "kale_out_in_picture"}
    assert count["inputs"]["parameters"]["in_scale"]["runtimeValue"]["constant"] == "50"
    before = tasks["kale-count-inputs"]
    assert before["taskInfo"]["name"] == "count (inputs)"
    assert before["inputs"]["artifacts"]["in_picture"]["taskOutputArtifact"][
        "producerTask"] == "download"
    assert "kale_bundle" in before["inputs"]["artifacts"]
    # A container's output goes to the next container as it is: no Kale task between them.
    shout = tasks["shout"]
    assert shout["inputs"]["artifacts"]["in_text"]["taskOutputArtifact"] == {
        "producerTask": "count", "outputArtifactKey": "out_copy"}
    assert "kale-shout-inputs" not in tasks
    # Inside the loop, the item comes through the Kale task too.
    loop = next(task for name, task in tasks.items() if name.startswith("for-loop"))
    inner = spec["components"][loop["componentRef"]["name"]]["dag"]["tasks"]
    assert {"count-2", "kale-count-2-inputs"} <= set(inner)


def test_function_steps_read_what_a_container_wrote(package):
    spec, _ = package
    publish = spec["root"]["dag"]["tasks"]["publish"]
    assert publish["inputs"]["parameters"]["in_size"]["taskOutputParameter"] == {
        "producerTask": "count", "outputParameterKey": "out_size"}
    assert publish["inputs"]["artifacts"]["in_folder"]["taskOutputArtifact"] == {
        "producerTask": "count", "outputArtifactKey": "out_folder"}
    source = "\n".join(spec["deploymentSpec"]["executors"]["exec-publish"]["container"][
        "command"])
    assert "'size': ('text', (in_size, 'int', 'count', 'size'))" in source
    assert "'copy': ('file', in_copy.path)" in source
    assert "'loud': ('text', (in_loud, 'value', 'shout', 'loud'))" in source


def test_the_step_options_apply_to_the_container_task(package):
    spec, platform = package
    count = spec["root"]["dag"]["tasks"]["count"]
    assert count["retryPolicy"]["maxRetryCount"] == 2
    assert count["cachingOptions"] == {}  # caching off, as for every step
    config = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]["exec-count"]
    assert config["activeDeadlineSeconds"] == "600"  # the timeout, as the pod's deadline
    assert config["podMetadata"]["labels"] == {"team": "imaging"}
    assert config["podMetadata"]["annotations"] == {"owner": "ana"}


def _stored(folder: Path, value, name: str = "value") -> str:
    marshal.save(value, folder, name)
    return str(folder)


def test_the_kale_task_writes_files_and_text_as_the_container_takes_them(tmp_path):
    from kale.kfp.entry import container_inputs

    root = tmp_path / "root"
    (root / "project").mkdir(parents=True)
    made = tmp_path / "made" / "photo.jpg"
    made.parent.mkdir()
    made.write_bytes(b"\xff\xd8jpeg")
    folder = tmp_path / "made" / "checkpoint"
    folder.mkdir()
    (folder / "weights.bin").write_bytes(b"w")
    inputs = {
        "picture": ("artifact", _stored(tmp_path / "a1", made)),
        "model": ("artifact", _stored(tmp_path / "a2", folder)),
        "raw": ("artifact", _stored(tmp_path / "a3", b"\x00\x01")),
        "notes": ("artifact", _stored(tmp_path / "a4", "héllo")),
        "scale": ("value", 50),
        "run": ("value", "run-[[RunUUID]]"),
        "options": ("artifact", _stored(tmp_path / "a5", {"fast": True})),
    }
    out = tmp_path / "out"
    outputs = {"picture": ("file", str(out / "picture")), "model": ("file", str(out / "model")),
               "raw": ("file", str(out / "raw")), "notes": ("file", str(out / "notes")),
               "scale": ("value", str(out / "scale")), "run": ("value", str(out / "run")),
               "options": ("value", str(out / "options"))}
    container_inputs("resize", str(root), inputs, outputs, run_id="abc")
    assert (out / "picture").read_bytes() == b"\xff\xd8jpeg"
    assert (out / "model" / "weights.bin").read_bytes() == b"w"
    assert (out / "raw").read_bytes() == b"\x00\x01"
    assert (out / "notes").read_text() == "héllo"
    assert (out / "scale").read_text() == "50"
    assert (out / "run").read_text() == "run-abc"  # macros, as in a function step
    assert json.loads((out / "options").read_text()) == {"fast": True}


def test_the_kale_task_fails_clearly_for_a_value_that_is_no_file(tmp_path):
    from kale.kfp.entry import container_inputs

    root = tmp_path / "root"
    (root / "project").mkdir(parents=True)
    with pytest.raises(SystemExit) as caught:
        container_inputs("resize", str(root), {"picture": ("value", 3.5)},
                         {"picture": ("file", str(tmp_path / "out"))})
    assert "input `picture` of container step `resize` is a file, but it was given a float" \
        in str(caught.value)


def test_a_function_step_reads_a_containers_file_and_typed_value(tmp_path):
    from kale.kfp.entry import _input
    from kale.runtime import StepInvocation, _read_input

    written = tmp_path / "small"
    written.write_bytes(b"png")
    task = StepInvocation("publish", "publish", "", "", 1, "__main__", str(tmp_path),
                          str(tmp_path))
    path = _read_input(*_input("small", "file", str(written)), task)
    assert isinstance(path, Path) and path.read_bytes() == b"png"
    assert _read_input(*_input("w", "text", ("320\n", "int", "resize", "width")), task) == 320
    with pytest.raises(Exception, match="output `width` of container step `resize` is "
                       "declared 'int'"):
        _read_input(*_input("w", "text", ("wide", "int", "resize", "width")), task)
