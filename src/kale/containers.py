"""``ContainerStep``: any image as a pipeline step, with inputs and outputs like a function step's.

A container step is declared, not written: an image, a command and its arguments with
``{inputs.x}`` and ``{outputs.y}`` placeholders, and the inputs and outputs by name, each a plain
*value* or a *file*::

    resize = ContainerStep(
        name="resize", image="docker.io/dpokidov/imagemagick:7.1.1-15",
        command=["magick", "{inputs.picture}", "-resize", "{inputs.scale}%",
                 "png:{outputs.small}"],
        inputs={"picture": "file", "scale": "value"},
        outputs={"small": "file"})

It is called in the pipeline body like any step (``small = resize(picture, scale=50)``). What
crosses between it and the function steps, the same way locally and on Kubeflow:

- a **value input** is put into the command as text: a str as it is, a bool as ``true`` or
  ``false``, numbers as Python writes them, None as ``null``, lists and dicts as JSON;
- a **file input** is a file (or folder) in the container: a ``pathlib.Path`` a function step
  returned is that file or folder; ``bytes`` are the file's bytes, a ``str`` its text (UTF-8),
  a list or dict JSON; ``{inputs.x}`` is its path, read-only;
- a **file output** is whatever the command writes at ``{outputs.y}`` (a file, or a folder it
  creates there); the next function step gets a ``pathlib.Path`` to it;
- a **value output** is the text the command writes to the file ``{outputs.y}``: ``"value"``
  (a str, without its final line break), ``"int"``, ``"float"``, ``"bool"`` or ``"json"``.

This module holds the definition and the conversions both places share: ``kale.local.container``
runs a container step on this machine, ``kale.kfp.compiler`` makes it a KFP container component.
It is imported by scripts that define container steps and by Kubeflow steps (in the bundle):
keep it cheap.
"""

from __future__ import annotations

import os
import re
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from typing import Any

    from kale.errors import SourceLocation

__all__ = ["ContainerStep", "ContainerStepError"]

INPUT_TYPES = ("value", "file")
#: ``value`` is text (a str); the others are read from the text.
OUTPUT_TYPES = ("value", "file", "int", "float", "bool", "json")

#: Where inputs and outputs are in a local container (Kubeflow gives its own artifact paths).
INPUTS_FOLDER = "/kale/inputs"
OUTPUTS_FOLDER = "/kale/outputs"

_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\.([^{}\s]*)\}")
# What a mistyped placeholder looks like: doubled braces (KFP's and Jinja's `{{...}}`), spaces
# inside, no name (`{inputs}`). Only those whose first word is near `inputs` or `outputs` are
# reported: other braces (`${HOME}`, `${outputs}`, awk's `{print $1}`, JSON) are the command's
# own text.
_NEAR_PLACEHOLDER = re.compile(
    r"(?<!\$)\{+\s*([A-Za-z_][A-Za-z0-9_]*)\s*(?:\.\s*([^{}\s]*)\s*)?\}+")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# The reference grammar of the distribution spec (docker/distribution reference/regexp.go):
# [domain[:port]/]path-component(/path-component)*[:tag][@digest], components lowercase.
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[0-9a-fA-F:]+\])(?::[0-9]+)?"
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
_REFERENCE = re.compile(
    rf"^(?:{_DOMAIN}/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*(?::{_TAG})?(?:@{_DIGEST})?$")


class ContainerStepError(Exception):
    """A container step could not run, or its command failed; the message says why and what to
    do. Raised in the step's process, so the run's summary shows it as the step's error."""


def image_problem(image: Any) -> str | None:
    """Why ``image`` is not an image reference (``registry/name:tag``), or None."""
    if not isinstance(image, str) or not image:
        return "an image is a non-empty string such as 'python:3.12-slim'"
    if image != image.strip() or any(c.isspace() for c in image):
        return "an image reference has no spaces"
    if "{" in image or "}" in image:
        return "an image cannot hold placeholders; they are for command and args"
    if len(image) > 255 and "@" not in image:
        return "an image name has at most 255 characters"
    if not _REFERENCE.match(image):
        if _REFERENCE.match(image.lower()):
            return f"image names are lowercase ({image.lower()!r})"
        return ("it is not an image reference: [registry/]name[:tag][@sha256:digest], with "
                "lowercase names (e.g. 'docker.io/library/python:3.12')")
    return None


def placeholder_parts(text: str) -> list[str | tuple[str, str]]:
    """``text`` split into literal pieces and ``(kind, name)`` placeholders (kind ``inputs`` or
    ``outputs``). Braces that are not a placeholder (``${HOME}``, ``{print $1}``) stay text."""
    parts: list[str | tuple[str, str]] = []
    at = 0
    for match in _PLACEHOLDER.finditer(text):
        if match.group(1) not in ("inputs", "outputs"):
            continue
        if match.start() > at:
            parts.append(text[at:match.start()])
        parts.append((match.group(1), match.group(2)))
        at = match.end()
    if at < len(text):
        parts.append(text[at:])
    return parts


def render(text: str, paths: Mapping[tuple[str, str], str]) -> str:
    """``text`` with each placeholder replaced by ``paths[(kind, name)]``."""
    return "".join(part if isinstance(part, str) else paths[part]
                   for part in placeholder_parts(text))


# -- values and files, as both places convert them -----------------------------------------------

def value_text(value: Any, what: str) -> str:
    """How a value input appears in the command: a str as it is, JSON for the rest."""
    import json

    if isinstance(value, str):
        return value
    if value is None or isinstance(value, (bool, int, float, list, tuple, dict)):
        if isinstance(value, float) and value != value:
            return "nan"
        try:
            return json.dumps(value, allow_nan=True)
        except (TypeError, ValueError):
            pass
    kind = type(value).__qualname__ if type(value).__module__ == "builtins" else \
        f"{type(value).__module__}.{type(value).__qualname__}"
    if _is_path(value) or isinstance(value, (bytes, bytearray)):
        fix = "declare the input as \"file\" to hand the container a file"
    else:
        fix = ("pass a str, number, bool, list or dict; or declare the input as \"file\" and "
               "have the step return the data as a pathlib.Path, bytes or str")
    raise ContainerStepError(f"{what} is a value, put into the command as text, but it was "
                             f"given a {kind}: {fix}")


def _is_path(value: Any) -> bool:
    pathlib = sys.modules.get("pathlib")
    return pathlib is not None and isinstance(value, pathlib.PurePath)


def file_source(value: Any, what: str) -> tuple[str, Any]:
    """What a file input's value stands for: ``("path", path)`` (a file or folder that exists)
    or ``("data", bytes)`` to write into a file."""
    import json

    if _is_path(value):
        path = os.fspath(value)
        if not os.path.exists(path):
            raise ContainerStepError(f"{what} is a file, but the path it was given, {path}, "
                                     "does not exist: return the Path of a file the step wrote")
        return "path", path
    if isinstance(value, (bytes, bytearray, memoryview)):
        return "data", bytes(value)
    if isinstance(value, str):
        return "data", value.encode()
    if isinstance(value, (list, tuple, dict)):
        try:
            return "data", json.dumps(value).encode()
        except (TypeError, ValueError):
            pass
    kind = type(value).__module__ + "." + type(value).__qualname__ \
        if type(value).__module__ != "builtins" else type(value).__qualname__
    raise ContainerStepError(
        f"{what} is a file, but it was given a {kind}: a file input takes a pathlib.Path (the "
        "file or folder), bytes, a str (its text) or a list or dict (as JSON); have the step "
        "write the data to a file and return its pathlib.Path")


def place_file(value: Any, target: str, what: str) -> str:
    """Put a file input at ``target`` (a copy of a Path's file or folder, or the data), and
    return ``target``."""
    import shutil

    kind, payload = file_source(value, what)
    os.makedirs(os.path.dirname(target), exist_ok=True)
    if kind == "data":
        with open(target, "wb") as handle:
            handle.write(payload)
    elif os.path.isdir(payload):
        shutil.copytree(payload, target, symlinks=False, ignore_dangling_symlinks=True)
    else:
        shutil.copyfile(payload, target)
    return target


def read_value(text: str, kind: str, what: str) -> Any:
    """A value output as the next step gets it, from the text the command wrote."""
    import json

    if kind == "value":
        return text[:-1] if text.endswith("\n") else text
    stripped = text.strip()
    try:
        if kind == "int":
            return int(stripped)
        if kind == "float":
            return float(stripped)
        if kind == "bool":
            lowered = stripped.lower()
            if lowered in ("true", "1", "yes"):
                return True
            if lowered in ("false", "0", "no"):
                return False
            raise ValueError(stripped)
        return json.loads(stripped)
    except ValueError:
        shown = stripped if len(stripped) <= 60 else stripped[:57] + "..."
        raise ContainerStepError(
            f"{what} is declared {kind!r}, but the command wrote {shown!r}, which is not "
            f"{'JSON' if kind == 'json' else 'an int' if kind == 'int' else 'a ' + kind}: write "
            f"{'true or false' if kind == 'bool' else 'that'} to the file, or declare the output "
            "\"value\" (text)") from None


# -- the definition ------------------------------------------------------------------------------



class ContainerStep:
    """A step that runs an image: see the module's documentation. Called in a pipeline body like
    any step; called anywhere else, it runs the container on this machine and returns its
    outputs (the one output, a tuple of them, or None), as a local run would."""

    decorator = "ContainerStep"

    def __init__(self, *, name: str, image: str, command: str | Sequence[str] | None = None,
                 args: str | Sequence[str] | None = None,
                 inputs: Mapping[str, str] | None = None,
                 outputs: Mapping[str, str] | None = None,
                 env: Mapping[str, Any] | None = None, **options: Any) -> None:
        from kale.errors import SourceLocation

        self.location: SourceLocation = SourceLocation.of_frame(sys._getframe(1))
        self.display_name = name
        self.image = image
        self.command: tuple[str, ...] = ()
        self.args: tuple[str, ...] = ()
        self.inputs: dict[str, str] = {}
        self.outputs: dict[str, str] = {}
        self.env: dict[str, str] = {}
        self.options: dict[str, Any] = {}
        self._check(name, image, command, args, inputs, outputs, env, options)
        self.__name__ = self.__qualname__ = self.step_name.replace("-", "_")
        self.__module__ = sys._getframe(1).f_globals.get("__name__", "__main__")

    # -- checks, each an error at the keyword at fault ---------------------------------------

    def _fail(self, keyword: str | None, message: str, fix: str | None = None,
              key: str | None = None) -> None:
        from kale.errors import StepDefinitionError
        from kale.source import refine_location

        location = self.location if keyword is None else refine_location(self.location,
                                                                          keyword, key)
        raise StepDefinitionError(message, location=location, fix=fix)

    def _check(self, name: Any, image: Any, command: Any, args: Any, inputs: Any, outputs: Any,
               env: Any, options: dict[str, Any]) -> None:
        from kale.errors import InvalidOptionError
        from kale.options import STEP_OPTIONS, normalize_name, suggest, validate_step_options

        # The options of @step (``name`` is a keyword of its own here).
        step_options = tuple(option for option in STEP_OPTIONS if option != "name")
        for option in options:
            if option not in step_options:
                known = ("name", "image", "command", "args", "inputs", "outputs", "env",
                         *step_options)
                self._fail(option, f"ContainerStep has no option {option!r}",
                           f"{suggest(option, known)}its options are: {', '.join(known)}")
        try:
            self.step_name = normalize_name(name, "name", max_length=63)
            self.options = validate_step_options(options)
        except InvalidOptionError as error:
            keyword, _, key = error.option.partition(".")
            self._fail(keyword, error.message, error.fix, key or None)
        problem = image_problem(image)
        if problem:
            self._fail("image", f"image={image!r} is not valid: {problem}",
                       "write it as [registry/]name[:tag], e.g. "
                       "image=\"docker.io/library/python:3.12-slim\"")
        self.command = self._arguments("command", command)
        self.args = self._arguments("args", args)
        self.inputs = self._ports("inputs", inputs, INPUT_TYPES)
        self.outputs = self._ports("outputs", outputs, OUTPUT_TYPES)
        if not self.command and not self.args and (self.inputs or self.outputs):
            self._fail(None, f"container step `{self.display_name}` has inputs or outputs but "
                       "no command or args to use them in",
                       "give command=[...] (and args=[...]) naming them as {inputs.x} and "
                       "{outputs.y}")
        self._check_placeholders()
        self.env = self._environment(env)

    def _arguments(self, keyword: str, value: Any) -> tuple[str, ...]:
        import shlex

        if value is None:
            return ()
        if isinstance(value, str):
            return tuple(shlex.split(value))
        if not isinstance(value, (list, tuple)) or not all(
                isinstance(part, (str, int, float)) and not isinstance(part, bool)
                for part in value):
            self._fail(keyword, f"{keyword}={value!r} is not valid: it is a list of arguments "
                       "(strings), or one string split as a shell would",
                       f"write {keyword}=[\"program\", \"--flag\", \"{{inputs.x}}\"]")
        return tuple(str(part) for part in value)

    def _ports(self, keyword: str, value: Any, types: tuple[str, ...]) -> dict[str, str]:
        import difflib
        import keyword as keywords

        if value is None:
            return {}
        if isinstance(value, (list, tuple)) and keyword == "inputs" and all(
                isinstance(item, str) for item in value):
            value = dict.fromkeys(value, "value")
        if not hasattr(value, "items"):
            self._fail(keyword, f"{keyword}={value!r} is not valid: it maps each name to its "
                       f"type, one of {', '.join(types)}",
                       f"write {keyword}={{\"name\": \"{types[1]}\"}}")
        ports = {}
        for port, kind in value.items():
            if not isinstance(port, str) or not port.isidentifier() or keywords.iskeyword(port) \
                    or port.startswith("kale_"):
                self._fail(keyword, f"{keyword[:-1]} name {port!r} is not valid: it is used as "
                           "a Python argument name", "use a name such as `picture` or "
                           "`max_size` (letters, digits, _; not starting with kale_)", port)
            if kind not in types:
                close = difflib.get_close_matches(str(kind), types, n=1)
                hint = f"did you mean {close[0]!r}? " if close else ""
                self._fail(keyword, f"{keyword[:-1]} `{port}` has the type {kind!r}; "
                           f"the types are {', '.join(types)}",
                           f"{hint}a value is text in the command, a file a path to it", port)
            ports[port] = kind
        return ports

    def _check_placeholders(self) -> None:
        import difflib

        used: set[tuple[str, str]] = set()
        for keyword in ("command", "args"):
            for text in getattr(self, keyword):
                for match in _NEAR_PLACEHOLDER.finditer(text):
                    self._check_written(keyword, match)
                for match in _PLACEHOLDER.finditer(text):
                    kind, port = match.group(1), match.group(2)
                    if kind not in ("inputs", "outputs"):
                        near = difflib.get_close_matches(kind.lower(), ("inputs", "outputs"),
                                                         n=1, cutoff=0.6)
                        if near:
                            self._fail(keyword, f"unknown placeholder `{match.group(0)}` in "
                                       f"{keyword}", f"write `{{{near[0]}.{port}}}`")
                        continue
                    declared = self.inputs if kind == "inputs" else self.outputs
                    if port not in declared:
                        close = difflib.get_close_matches(port, list(declared), n=1)
                        if not close and port.split(".")[0] in declared:  # `{inputs.x.y}`
                            close = [port.split(".")[0]]
                        other = self.outputs if kind == "inputs" else self.inputs
                        other_kind = "outputs" if kind == "inputs" else "inputs"
                        if close:
                            fix = f"did you mean `{{{kind}.{close[0]}}}`?"
                        elif port in other:
                            fix = f"`{port}` is one of the {other_kind}: " \
                                  f"`{{{other_kind}.{port}}}`"
                        else:
                            fix = f"declare it: {kind}={{{port!r}: " \
                                  f"\"{'value' if kind == 'inputs' else 'file'}\", ...}}"
                        what = "input" if kind == "inputs" else "output"
                        self._fail(keyword, f"`{match.group(0)}` in {keyword} names an {what} "
                                   f"that was never declared", fix)
                    used.add((kind, port))
        for kind in ("inputs", "outputs"):
            for port in getattr(self, kind):
                if (kind, port) not in used:
                    what = "input" if kind == "inputs" else "output"
                    fix = (f"use `{{inputs.{port}}}` in command or args, or remove the input"
                           if kind == "inputs" else
                           f"have the command write it at `{{outputs.{port}}}` (in command or "
                           "args), or remove the output")
                    self._fail(kind, f"{what} `{port}` is declared but the command never names "
                               f"it ({{{kind}.{port}}})", fix, port)

    def _check_written(self, keyword: str, match: re.Match[str]) -> None:
        """Refuse a placeholder written almost right (`{{inputs.x}}`, `{ inputs.x }`,
        `{inputs}`): left as it is, it would reach the command as literal text."""
        import difflib

        kind, port = match.group(1), match.group(2)
        near = difflib.get_close_matches(kind.lower(), ("inputs", "outputs"), n=1, cutoff=0.6)
        if not near:
            return
        written = match.group(0)
        if port is None or not port:
            declared = self.inputs if near[0] == "inputs" else self.outputs
            names = ", ".join(f"`{{{near[0]}.{name}}}`" for name in declared)
            self._fail(keyword, f"`{written}` in {keyword} names no "
                       f"{near[0][:-1]}", f"write one of {names}" if names else
                       f"declare the {near[0][:-1]} in {near[0]}={{...}} and write "
                       f"`{{{near[0]}.<name>}}`")
        if written != f"{{{kind}.{port}}}":
            self._fail(keyword, f"`{written}` in {keyword} is not a placeholder as Kale reads "
                       "them (one pair of braces, no spaces inside), so the command would get "
                       "it garbled", f"write `{{{near[0]}.{port}}}`")

    def _environment(self, env: Any) -> dict[str, str]:
        if env is None:
            return {}
        if not hasattr(env, "items"):
            self._fail("env", f"env={env!r} is not valid: it maps variable names to values",
                       "write env={\"NAME\": \"value\"}")
        checked = {}
        for key, value in env.items():
            if not isinstance(key, str) or not _ENV_NAME.match(key):
                self._fail("env", f"environment variable name {key!r} is not valid",
                           "use letters, digits and _, not starting with a digit", key)
            if isinstance(value, bool) or not isinstance(value, (str, int, float)):
                self._fail("env", f"the value of environment variable {key} is "
                           f"{type(value).__name__} {value!r}; it is text",
                           "give a str (or a number)", key)
            text = str(value)
            if placeholder_parts(text) != [text] and text:
                self._fail("env", f"environment variable {key} holds a placeholder; "
                           "placeholders are replaced in command and args only",
                           "pass the path or value on the command line instead", key)
            checked[key] = text
        return checked

    # -- what the pipeline uses ----------------------------------------------------------------

    @property
    def signature(self) -> Any:
        """The call signature: the inputs, in order, by position or keyword."""
        import inspect

        kind = inspect.Parameter.POSITIONAL_OR_KEYWORD
        return inspect.Signature([inspect.Parameter(port, kind) for port in self.inputs])

    def spec(self) -> dict[str, Any]:
        """The plain description a local run hands to ``kale.local.container``."""
        return {"step": self.step_name, "image": self.image, "command": list(self.command),
                "args": list(self.args), "inputs": dict(self.inputs),
                "outputs": dict(self.outputs), "env": dict(self.env),
                "limits": dict(self.options.get("limits", {}))}

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Outside a pipeline: run the container here (as a local run would) and return its
        outputs; file outputs are Paths in a temporary folder that is left for the caller."""
        try:
            bound = self.signature.bind(*args, **kwargs)
        except TypeError as reason:
            raise TypeError(f"container step `{self.display_name}`: {reason}") from None
        from kale.local.container import run_container

        return run_container(self.spec(), dict(bound.arguments))

    def __repr__(self) -> str:
        return f"<ContainerStep {self.step_name} ({self.image})>"
