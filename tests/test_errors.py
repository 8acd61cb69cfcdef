"""How errors read: location, caret, fix; pickling; and uncaught errors in a real process."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import textwrap

from kale.errors import (
    DefinitionErrorGroup,
    InvalidOptionError,
    KaleError,
    PipelineDefinitionError,
    SourceLocation,
)


def test_render_with_location_caret_and_fix(tmp_path):
    source = tmp_path / "p.py"
    source.write_text("def p():\n    y = x * 2\n")
    error = PipelineDefinitionError(
        "`y = x * 2` is not a step call",
        location=SourceLocation(str(source), 2, 8, 2, 13),
        fix="compute it inside a step",
    )
    assert str(error) == (
        "error: `y = x * 2` is not a step call\n"
        f"  --> {source}:2:9\n"
        "  |\n"
        "2 |     y = x * 2\n"
        "  |         ^^^^^\n"
        "  fix: compute it inside a step"
    )
    assert error.message == "`y = x * 2` is not a step call"
    assert error.fix == "compute it inside a step"


def test_render_without_source_or_fix():
    error = KaleError("plain", location=SourceLocation("<nowhere>", 3, 0))
    assert str(error) == "error: plain\n  --> <nowhere>:3:1"
    assert str(KaleError("just this")) == "error: just this"


def test_multiline_spans_underline_to_the_end_of_the_first_line(tmp_path):
    source = tmp_path / "p.py"
    source.write_text("x = call(\n    1)\n")
    location = SourceLocation(str(source), 1, 4, 2, 6)
    assert location.excerpt().splitlines()[-1] == "  |     ^^^^^"


def test_relative_paths_inside_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sub").mkdir()
    location = SourceLocation(str(tmp_path / "sub" / "p.py"), 1)
    assert str(location) == os.path.join("sub", "p.py") + ":1:1"


def test_display_line_is_file_and_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "p.py").write_text("x = 1\n")
    location = SourceLocation(str(tmp_path / "p.py"), 12, 4)
    assert location.cell is None
    assert location.display_line == "p.py:12"
    assert location.display_file == "p.py"


def test_group_lists_every_error():
    group = DefinitionErrorGroup("2 problems", [KaleError("one"), KaleError("two", fix="f")])
    assert str(group) == "error: 2 problems\n\nerror: one\n\nerror: two\n  fix: f"
    assert group.exit_code == 2


def test_errors_pickle_with_their_fields():
    error = InvalidOptionError("timeout", -1, "must be positive", fix="use 60",
                               location=SourceLocation("f.py", 3, 2))
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is InvalidOptionError
    assert (copy.option, copy.value, copy.fix, copy.location) == (
        "timeout", -1, "use 60", SourceLocation("f.py", 3, 2))
    assert str(copy) == str(error)


SCRIPT = textwrap.dedent('''
    from kale.sdk import pipeline, step

    @step(retry_count=-2)
    def s():
        pass
''')


def run(script_path, **env):
    return subprocess.run([sys.executable, str(script_path)], capture_output=True, text=True,
                          env={**os.environ, **env}, cwd=script_path.parent)


def test_uncaught_definition_errors_print_compactly_and_exit_2(tmp_path):
    script = tmp_path / "script.py"
    script.write_text(SCRIPT)
    result = run(script)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "error: retry_count=-2 is not valid" in result.stderr
    assert "script.py:4:7" in result.stderr
    assert "4 | @step(retry_count=-2)" in result.stderr
    assert "KALE_DEBUG=1" in result.stderr


def test_kale_debug_shows_the_traceback(tmp_path):
    script = tmp_path / "script.py"
    script.write_text(SCRIPT)
    result = run(script, KALE_DEBUG="1")
    assert result.returncode == 2
    assert "Traceback" in result.stderr
    assert "InvalidOptionError" in result.stderr


def test_other_exceptions_keep_pythons_behaviour(tmp_path):
    script = tmp_path / "script.py"
    script.write_text("import kale.sdk\nraise ValueError('mine')\n")
    result = run(script)
    assert result.returncode == 1
    assert "Traceback" in result.stderr and "ValueError: mine" in result.stderr


def test_atexit_handlers_and_buffered_output_survive_the_exit(tmp_path):
    script = tmp_path / "script.py"
    script.write_text(
        "import atexit, sys\n"
        "atexit.register(lambda: print('cleanup ran'))\n"
        "print('buffered', end='')\n" + SCRIPT
    )
    result = run(script)
    assert result.returncode == 2
    assert result.stdout == "bufferedcleanup ran\n"


def test_carets_count_characters_not_bytes_and_expand_tabs(tmp_path):
    source = tmp_path / "p.py"
    source.write_text("\tgröße = x * 2\n")
    text = "\tgröße = x * 2"
    column = len(text[: text.index("x")].encode())
    location = SourceLocation(str(source), 1, column, 1, column + 5)
    assert str(location).endswith(":1:10")  # the tab and 8 characters come before x
    assert location.excerpt().splitlines()[-1] == "  |             ^^^^^"
