"""ContainerStep's definition: what it accepts, the mistakes it refuses (with file:line and the
fix), how the pipeline body calls it, and the conversions it shares with Kubeflow."""

from __future__ import annotations

from pathlib import Path

import pytest

from kale.containers import ContainerStepError, file_source, read_value, value_text
from kale.errors import DefinitionError
from tests.conftest import line_of

CONTAINERS = '''
from kale import ContainerStep

resize = ContainerStep(
    name="resize", image="docker.io/dpokidov/imagemagick:7.1",
    command=["magick", "{inputs.picture}", "-resize", "{inputs.scale}%", "png:{outputs.small}"],
    args=["--width-to", "{outputs.width}"],
    inputs={"picture": "file", "scale": "value"}, outputs={"small": "file", "width": "int"},
    env={"MAGICK_THREAD_LIMIT": 1}, timeout="5m", retry_count=2, limits={"memory": "1Gi"})

shout = ContainerStep(name="shout", image="busybox:1.36",
                      command="sh -c 'echo {inputs.text} | tr a-z A-Z > {outputs.loud}'",
                      inputs={"text": "value"}, outputs={"loud": "value"})

touch = ContainerStep(name="touch", image="busybox", command=["touch", "/tmp/x"])


@step
def download(url):
    from pathlib import Path
    return Path(url)


'''


def test_the_definition_keeps_what_it_declares():
    from kale import ContainerStep

    made = ContainerStep(name="Resize Image", image="python:3.12-slim",
                         command=["python", "-c", "print('{inputs.x}')", "{outputs.y}"],
                         inputs={"x": "value"}, outputs={"y": "json"}, timeout="2m",
                         labels={"team": "a"})
    assert made.step_name == "resize-image" and made.display_name == "Resize Image"
    assert made.options["timeout"] == 120 and dict(made.options["labels"]) == {"team": "a"}
    assert str(made.signature) == "(x)"
    assert "ContainerStep resize-image" in repr(made)
    assert made.location.file == __file__


_GOOD = {"image": '"busybox:1.36"', "command": '["cp", "{inputs.picture}", "{outputs.small}"]',
         "inputs": '{"picture": "file"}', "outputs": '{"small": "file"}'}


@pytest.mark.parametrize(("keyword", "changes", "message", "fix"), [
    ("image", {"image": '"Busybox:1"'}, "image names are lowercase", "[registry/]name[:tag]"),
    ("image", {"image": '"busy box"'}, "no spaces", "[registry/]name[:tag]"),
    ("image", {"image": '"x:"'}, "not an image reference", "docker.io/library/python"),
    ("command", {"command": '["cat", "{inputs.pictur}", "{outputs.small}"]'},
     "names an input that was never declared", "did you mean `{inputs.picture}`?"),
    ("command", {"command": '["cp", "{inputs.picture}", "{outputs.smal}"]'},
     "names an output that was never declared", "{outputs.small}"),
    ("command", {"command": '["cp", "{inputs.picture}", "{outputs.other}"]'},
     "names an output that was never declared", "declare it: outputs={'other'"),
    ("command", {"command": '["cp", "{input.picture}", "{outputs.small}"]'},
     "unknown placeholder `{input.picture}`", "write `{inputs.picture}`"),
    ("command", {"command": '["cp", "{{inputs.picture}}", "{outputs.small}"]'},
     "`{{inputs.picture}}` in command is not a placeholder as Kale reads them",
     "write `{inputs.picture}`"),
    ("command", {"command": '["cp", "{ inputs.picture }", "{outputs.small}"]'},
     "one pair of braces, no spaces inside", "write `{inputs.picture}`"),
    ("command", {"command": '["cp", "{inputs}", "{inputs.picture}", "{outputs.small}"]'},
     "`{inputs}` in command names no input", "write one of `{inputs.picture}`"),
    ("command", {"command": '["cp", "{INPUTS.picture}", "{outputs.small}"]'},
     "unknown placeholder `{INPUTS.picture}`", "write `{inputs.picture}`"),
    ("command", {"command": '["cp", "{inputs.picture.path}", "{outputs.small}"]'},
     "names an input that was never declared", "did you mean `{inputs.picture}`?"),
    ("outputs", {"command": '["cat", "{inputs.picture}"]'},
     "output `small` is declared but the command never names it",
     "write it at `{outputs.small}`"),
    ("inputs", {"command": '["touch", "{outputs.small}"]'},
     "input `picture` is declared but the command never names it", "use `{inputs.picture}`"),
    ("inputs", {"inputs": '{"picture": "files"}'}, "has the type 'files'",
     "did you mean 'file'?"),
    ("retries", {"retries": "2"}, "has no option 'retries'", "retry_count"),
    ("timeout", {"timeout": '"soon"'}, "timeout='soon'", None),
    ("env", {"env": '{"OUT": "{outputs.small}"}'}, "holds a placeholder", "command line"),
])
def test_a_bad_definition_is_an_error_at_its_keyword(project, keyword, changes, message, fix):
    fields = {**_GOOD, **changes}
    source = ("from kale import ContainerStep\n\nbad = ContainerStep(\n    name='bad',\n"
              + "".join(f"    {key}={value},\n" for key, value in fields.items()) + ")\n")
    with pytest.raises(DefinitionError) as caught:
        project.load(source, prelude=False)
    error = caught.value
    assert message in error.message, error.message
    if fix:
        assert fix in (error.fix or ""), error.fix
    assert error.location.file.endswith(".py")
    assert error.location.line == line_of(source, f"    {keyword}=")


def test_braces_of_the_command_itself_are_left_alone():
    from kale import ContainerStep
    from kale.containers import render

    command = ["sh", "-c", "awk '{print $1}' {inputs.x} > {outputs.y}; echo ${HOME} ${outputs}"
               " '{\"a\": 1}' {args.x}"]
    made = ContainerStep(name="t", image="busybox:1.36", command=command,
                         inputs={"x": "file"}, outputs={"y": "value"})
    paths = {("inputs", "x"): "/in/x", ("outputs", "y"): "/out/y"}
    assert render(made.command[2], paths) == (
        "awk '{print $1}' /in/x > /out/y; echo ${HOME} ${outputs} '{\"a\": 1}' {args.x}")


def test_calls_in_the_body_like_any_step(project):
    graph = project.graph(CONTAINERS + '''
@pipeline(name="pictures", steps_defaults={"labels": {"team": "x"}, "timeout": 60})
def pictures(url="https://example.com/a.png", text="hi"):
    picture = download(url)
    small, width = resize(picture, scale=50)
    loud = shout(text=text)
    touch()
    report(small, width)
    if width > 100:
        report(loud)
    for item in [1, 2]:
        resize(picture, item)
''')
    resize = graph.step("resize")
    assert resize.container.image == "docker.io/dpokidov/imagemagick:7.1"
    assert resize.outputs == ("small", "width") and resize.unpacks
    assert resize.options.timeout == 300 and resize.options.retry_count == 2
    assert dict(resize.options.labels) == {"team": "x"}  # steps_defaults apply
    assert dict(resize.container.env) == {"MAGICK_THREAD_LIMIT": "1"}
    assert [(a.name, str(a.source)) for a in resize.arguments] == [
        ("picture", "download.picture"), ("scale", "50")]
    assert graph.step("shout").outputs == ("loud",) and not graph.step("shout").unpacks
    assert graph.step("touch").outputs == () and graph.upstream("report") == {"resize"}
    assert graph.step("resize-2").loops[0].name == "loop-1"
    assert graph.step_imports["resize"] == ()  # a container imports nothing
    assert graph.to_dict()["steps"][1]["container"]["outputs"] == {"small": "file",
                                                                   "width": "int"}


@pytest.mark.parametrize(("body", "message", "fix"), [
    ("small = resize(picture, 1)", "has 2 outputs (small, width), so they cannot be bound to "
     "one name", "unpack them"),
    ("a, b, c = resize(picture, 1)", "has 2 output(s) (small, width) but 3 names receive them",
     "unpack exactly 2"),
    ("x = touch()", "has no outputs", "call it without assigning"),
    ("resize(picture)", "cannot be called like this", "picture (file), scale (value)"),
    ("resize(url, 1)", "input `picture` of container step `resize` is a file, but it is given "
     "pipeline parameter `url`", 'declare `picture` as "value"'),
    ("resize('a.png', 1)", "is a file, but it is given a literal value", "pathlib.Path"),
    ("loud = shout(text)\n    resize(loud, 1)", "is a file, but it is given the value output "
     "`loud` of container step `shout`", "file output"),
    ("small, width = resize(picture, 1)\n    shout(small)", "input `text` of container step "
     "`shout` is a value, but it is given the file output `small`", 'declare `text` as "file"'),
    ("small, width = resize(picture, 1)\n    for x in small:\n        report(x)",
     "the loop iterates `small`, the output `small` of container step `resize`",
     "function step"),
    ("louds = [shout(t) for t in ['a', 'b']]", "the results of container step `shout` cannot "
     "be collected", "kale.cmdutils"),
    ("if text:\n        loud = shout(text)\n    else:\n        loud = shout('x')\n"
     "    report(loud)", "but by a container step in at least one", "function step"),
])
def test_calls_that_cannot_work_are_definition_errors(project, body, message, fix):
    text = CONTAINERS + f'''
@pipeline(name="pictures")
def pictures(url="https://example.com/a.png", text="hi"):
    picture = download(url)
    {body}
'''
    error = project.error(text, DefinitionError)
    assert message in str(error), str(error)
    assert fix in str(error)
    assert "-->" in str(error)


def test_values_become_text_as_json_writes_them():
    assert value_text("a b", "x") == "a b"
    assert [value_text(v, "x") for v in (True, 3, 0.5, None, [1, "a"], {"k": 1})] == [
        "true", "3", "0.5", "null", '[1, "a"]', '{"k": 1}']
    with pytest.raises(ContainerStepError, match='declare the input as "file"'):
        value_text(Path("/x"), "input `x`")
    with pytest.raises(ContainerStepError, match="was given a object"):
        value_text(object(), "input `x`")


def test_files_from_paths_bytes_text_and_json(tmp_path):
    made = tmp_path / "a.bin"
    made.write_bytes(b"\0\1")
    assert file_source(made, "x") == ("path", str(made))
    assert file_source(b"\0", "x") == ("data", b"\0")
    assert file_source("héllo", "x") == ("data", "héllo".encode())
    assert file_source({"a": 1}, "x") == ("data", b'{"a": 1}')
    with pytest.raises(ContainerStepError, match="does not exist"):
        file_source(tmp_path / "missing", "input `x`")
    with pytest.raises(ContainerStepError, match=r"a file input takes a pathlib\.Path"):
        file_source(3.5, "input `x`")


def test_value_outputs_are_read_by_their_type():
    assert read_value("hello\n", "value", "x") == "hello"
    assert read_value(" 42\n", "int", "x") == 42
    assert read_value("0.5", "float", "x") == 0.5
    assert read_value("True\n", "bool", "x") is True
    assert read_value('{"a": [1]}', "json", "x") == {"a": [1]}
    with pytest.raises(ContainerStepError, match="declared 'int', but the command wrote 'abc'"):
        read_value("abc", "int", "output `w` of container step `s`")
