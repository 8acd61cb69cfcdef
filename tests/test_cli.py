"""``kale graph``: formats, choosing a pipeline, and errors, through the real command."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

KALE = Path(sys.executable).with_name("kale")


def kale(*args, cwd=None):
    command = [str(KALE)] if KALE.exists() else [sys.executable, "-m", "kale.cli"]
    return subprocess.run([*command, *args], capture_output=True, text=True, cwd=cwd)


@pytest.fixture
def script(tmp_path):
    path = tmp_path / "flow.py"
    path.write_text(textwrap.dedent('''
        import sys
        from kale.sdk import pipeline, step

        @step
        def get():
            return 1

        @step
        def double(x):
            return x * 2

        @pipeline(name="flow", experiment="e")
        def flow(n=1):
            x = get()
            double(x)

        if __name__ == "__main__":
            print("MAIN RAN")
            sys.exit(7)
    '''))
    return path


def test_graph_text_without_running_the_main_block(script):
    result = kale("graph", str(script))
    assert result.returncode == 0, result.stderr
    assert "MAIN RAN" not in result.stdout
    assert result.stdout.startswith("pipeline flow\n")
    assert "double(x=get.x)" in result.stdout


@pytest.mark.parametrize(("fmt", "start"), [("mermaid", "flowchart TD"), ("dot", 'digraph "flow"'),
                                             ("json", "{")])
def test_graph_formats(script, fmt, start):
    result = kale("graph", str(script), "--format", fmt)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(start)
    if fmt == "json":
        assert json.loads(result.stdout)["steps"][1]["upstream"] == ["get"]


def test_local_imports_resolve_from_the_script_folder(tmp_path):
    (tmp_path / "mysteps.py").write_text(textwrap.dedent('''
        from kale.sdk import step

        @step
        def make():
            return 1
    '''))
    (tmp_path / "main.py").write_text(textwrap.dedent('''
        from kale.sdk import pipeline
        from mysteps import make

        @pipeline
        def p():
            make()
    '''))
    result = kale("graph", "main.py", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "make()" in result.stdout


def test_choosing_among_several_pipelines(script):
    script.write_text(script.read_text() + textwrap.dedent('''
        @pipeline(name="second")
        def second():
            get()
    '''))
    result = kale("graph", str(script))
    assert result.returncode == 1
    assert "defines 2 pipelines: flow, second" in result.stderr
    assert "--pipeline NAME" in result.stderr
    assert kale("graph", str(script), "-p", "second").stdout.startswith("pipeline second")
    assert kale("graph", str(script), "-p", "flow").stdout.startswith("pipeline flow")
    missing = kale("graph", str(script), "-p", "third")
    assert missing.returncode == 1 and "no pipeline named 'third'" in missing.stderr


def test_definition_errors_exit_2_without_traceback(script):
    script.write_text(script.read_text().replace("    double(x)\n", "    double(x * 2)\n"))
    result = kale("graph", str(script))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "`x * 2` is an expression" in result.stderr
    assert "flow.py:16:12" in result.stderr


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (None, "no such file"),
        ("def broken(:\n", "is not valid Python"),
        ("import not_a_module_anywhere\n", "raised ModuleNotFoundError while Kale imported it"),
        ("x = 1\n", "defines no @pipeline function"),
        # compile() raises MemoryError, then RecursionError, for these, not SyntaxError
        ("x = " + "-" * 100_000 + "1\n", "s.py: it ran out of memory"),
        ("x = " + "+".join(["1"] * 100_000) + "\n", "s.py: an expression or "
         "statement is nested too deeply"),
    ],
)
def test_script_problems(tmp_path, content, fragment):
    path = tmp_path / "s.py"
    if content is not None:
        path.write_text(content)
    result = kale("graph", str(path))
    assert result.returncode == 1
    assert fragment in result.stderr
    assert "kale/" not in result.stderr.replace("kale/sdk", "")  # no Kale frames shown


def test_bad_flags_are_explained(script):
    result = kale("graph", str(script), "--format", "png")
    assert result.returncode == 2
    assert "'png' is not one of 'text', 'mermaid', 'dot', 'json'" in result.stderr


def test_version_and_help():
    assert kale("--version").stdout.startswith("kale, version ")
    assert "graph" in kale("--help").stdout


def test_pipelines_with_names_that_normalise_alike_are_both_listed(script):
    script.write_text(script.read_text() + textwrap.dedent('''
        @pipeline(name="Flow")
        def flow_big(n=2):
            get()
    '''))
    result = kale("graph", str(script))
    assert "defines 2 pipelines: flow, flow_big (flow)" in result.stderr
    assert kale("graph", str(script), "-p", "flow_big").returncode == 0
    ambiguous = kale("graph", str(script), "-p", "flow")
    assert "2 pipelines of" in ambiguous.stderr


def test_scripts_that_parse_arguments_at_import_see_no_kale_arguments(tmp_path):
    path = tmp_path / "args.py"
    path.write_text(textwrap.dedent('''
        import argparse
        from kale.sdk import pipeline, step

        parser = argparse.ArgumentParser()
        parser.add_argument("--iters", type=int, default=3)
        args = parser.parse_args()

        @step
        def s():
            return 1

        @pipeline
        def p():
            s()
    '''))
    result = kale("graph", str(path))
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(("fmt", "shown"), [
    ("text", "      for x in xs (loop-1, over listed.xs):"),
    ("mermaid", '    subgraph l0 ["for x in xs (loop-1, over listed.xs)"]'),
    ("dot", '    subgraph "cluster_loop-1" {'),
    ("json", '"item_of": "loop-1"'),
])
def test_graph_shows_conditions_and_loops(tmp_path, fmt, shown):
    path = tmp_path / "branchy.py"
    path.write_text(textwrap.dedent('''
        from kale.sdk import pipeline, step

        @step
        def listed():
            return [1, 2]

        @step
        def double(x):
            return x * 2

        @pipeline(name="branchy")
        def branchy(limit=1):
            xs = listed()
            for x in xs:
                if x > limit:
                    double(x)
            doubled = [double(x) for x in xs]
            double(doubled)
    '''))
    result = kale("graph", str(path), "--format", fmt)
    assert result.returncode == 0, result.stderr
    assert shown in result.stdout.splitlines() if fmt != "json" else shown in result.stdout
    if fmt == "text":
        assert "   3      double       double(x=x)" in result.stdout.splitlines()
