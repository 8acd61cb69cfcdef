"""Loading a script for ``kale graph``/``kale compile``: whatever stops Python compiling it is one
Kale error naming the file and why, never a traceback of Kale's loader."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kale import loader
from kale.loader import ScriptError, load_script

# Expressions that nest without parentheses (the tokenizer caps those at 200), so only the
# compiler's own limits stop them: its recursion, or the parser's memory.
NESTINGS = {
    "unary minus": lambda depth: "-" * depth + "1",
    "not": lambda depth: "not " * depth + "x",
    "sum": lambda depth: "+".join(["1"] * depth),
    "conditional": lambda depth: "1 if x else " * depth + "2",
    "attribute": lambda depth: "x" + ".a" * depth,
    "call": lambda depth: "f" + "()" * depth,
    "subscript": lambda depth: "x" + "[0]" * depth,
}


@settings(max_examples=25, deadline=None)
@given(st.sampled_from(sorted(NESTINGS)), st.sampled_from([10, 3_000, 100_000]))
def test_any_nesting_loads_or_is_a_script_error(tmp_path_factory, nesting, depth):
    path = tmp_path_factory.mktemp("script") / "deep.py"
    path.write_text(f"x = f = None\nif False:\n    y = {NESTINGS[nesting](depth)}\n")
    try:
        load_script(str(path))
    except ScriptError as error:
        assert error.message.startswith("Python cannot compile "), error.message
        assert "deep.py: " in error.message
        assert "smaller statements" in error.fix


def test_a_file_with_null_bytes_is_named(tmp_path):
    path = tmp_path / "nul.py"
    path.write_bytes(b"x = 1\x00\n")
    with pytest.raises(ScriptError) as caught:
        load_script(str(path))
    assert "nul.py" in caught.value.message
    assert "null bytes" in caught.value.message


@pytest.mark.parametrize(("raised", "fragment", "fix"), [
    (ValueError("source code string cannot contain null bytes"), "cannot contain null bytes",
     "plain UTF-8"),
    (RecursionError("maximum recursion depth exceeded during compilation"), "nested too deeply",
     "smaller statements"),
    (MemoryError(), "ran out of memory", "smaller statements"),
])
def test_compile_failures_other_than_syntax_errors_are_worded(tmp_path, monkeypatch, raised,
                                                               fragment, fix):
    # Which of these compile() raises depends on the Python version (3.10 raises ValueError for
    # null bytes, 3.11 a SyntaxError): each is worded, whichever it is.
    path = tmp_path / "s.py"
    path.write_text("x = 1\n")

    def failing_compile(*args, **kwargs):
        raise raised

    monkeypatch.setattr(loader, "compile", failing_compile, raising=False)
    with pytest.raises(ScriptError) as caught:
        load_script(str(path))
    assert caught.value.message.startswith("Python cannot compile ")
    assert "s.py" in caught.value.message and fragment in caught.value.message
    assert fix in caught.value.fix
    assert caught.value.__cause__ is None and caught.value.__suppress_context__
