"""Locating functions in their files and parsing only their own lines."""

from __future__ import annotations

import ast
import importlib.util
import sys
import textwrap

import pytest

from kale.source import function_source, function_span

MODULE = '''\
import functools


@functools.lru_cache(
    maxsize=None,
)
def decorated(x,
              y=1):
    """Docstring."""
    text = """
not indented
"""
    return text  # trailing comment
    # a comment that belongs to nothing


def one_liner(x): return x


async def coroutine():
    pass


def outer():
    def inner(a=")", b='#'):
        if a:
            return 1
        else:
            pass
    return inner


class Holder:
    @staticmethod
    def method(v):
        return [
    v,
        ]


def last():
    x = 1
'''


@pytest.fixture(scope="module")
def module(tmp_path_factory):
    path = tmp_path_factory.mktemp("src") / "located.py"
    path.write_text(MODULE)
    spec = importlib.util.spec_from_file_location("located_module", path)
    loaded = importlib.util.module_from_spec(spec)
    sys.modules["located_module"] = loaded
    spec.loader.exec_module(loaded)
    return loaded


def lines_of(text: str, first: str, last: str) -> tuple[int, int]:
    lines = MODULE.splitlines()
    start = next(i for i, line in enumerate(lines, 1) if first in line)
    end = next(i for i, line in enumerate(lines, 1) if i >= start and last in line)
    return start, end


@pytest.mark.parametrize(
    ("name", "first", "def_marker", "end_marker"),
    [
        ("decorated", "@functools.lru_cache(", "def decorated", "belongs to nothing"),
        ("one_liner", "def one_liner", "def one_liner", "def one_liner"),
        ("coroutine", "async def coroutine", "async def coroutine", "    pass"),
        ("inner", "def inner", "def inner", "            pass"),
        ("method", "@staticmethod", "def method", "        ]"),
        ("last", "def last", "def last", "x = 1"),
    ],
)
def test_spans_match_the_file(module, name, first, def_marker, end_marker):
    func = {"inner": module.outer(), "method": module.Holder.method,
            "decorated": module.decorated.__wrapped__}.get(name) or getattr(module, name)
    span = function_span(func)
    start, _ = lines_of(MODULE, first, first)
    def_line, end = lines_of(MODULE, def_marker, end_marker)
    assert (span.first_line, span.def_line, span.end_line) == (start, def_line, end)
    text, node = function_source(func)
    assert node.name == name and node.lineno == def_line
    # Comment lines indented under a function belong to its span, as inspect.getsource says.
    assert node.end_lineno == end - (name == "decorated")
    assert ast.get_source_segment(text, node).splitlines()[0].strip().startswith(
        def_marker.strip())


def test_text_is_the_def_without_decorators_as_written(module):
    assert function_span(module.outer()).text() == textwrap.indent(textwrap.dedent('''\
        def inner(a=")", b='#'):
            if a:
                return 1
            else:
                pass
    '''), "    ")
    text = function_span(module.decorated.__wrapped__).text()
    assert text.startswith("def decorated(x,\n")
    assert "not indented\n" in text
    assert text.rstrip().endswith("# a comment that belongs to nothing")


def test_header_names_skip_strings_and_comments(module):
    assert function_span(module.outer()).header_names() == ["def", "inner", "a", "b"]
    assert function_span(module.decorated.__wrapped__).header_names() == [
        "def", "decorated", "x", "y"]


def test_header_parse_gives_parameters_with_file_positions(module):
    header = function_span(module.outer()).parse_header()
    assert [a.arg for a in header.args.args] == ["a", "b"]
    assert header.lineno == lines_of(MODULE, "def inner", "def inner")[0]


def test_functions_without_source_give_none():
    namespace = {}
    exec("def made():\n    return 1\n", namespace)
    assert function_span(namespace["made"]) is None
    assert function_span(len) is None
