"""Kale's tagged JSON (kale.marshal.codec): what it writes, and that values come back exactly."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kale.marshal.codec import TAG, NotPlainError, decode, encode

plain = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text() | st.binary(),
    lambda inner: st.lists(inner) | st.tuples(inner, inner) | st.dictionaries(st.text(), inner)
    | st.dictionaries(st.integers(), inner) | st.frozensets(st.integers() | st.text()),
    max_leaves=20,
)


def same(a, b):
    """Equality that also holds for NaN, and tells apart tuples from lists and 1 from True."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float) and math.isnan(a):
        return math.isnan(b)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[key], b[key]) for key in a)
    return a == b


@given(plain)
def test_every_plain_value_survives_a_json_round_trip(value):
    text = json.dumps(encode(value), allow_nan=False)
    assert same(decode(json.loads(text)), value)


@pytest.mark.parametrize(("value", "encoded"), [
    ((1, 2), {TAG: "tuple", "v": [1, 2]}),
    ({1: "a"}, {TAG: "dict", "v": [[1, "a"]]}),
    (b"\x00", {TAG: "bytes", "v": "AA=="}),
    (float("inf"), {TAG: "float", "v": "inf"}),
    ({"a": [1, 2.5, None]}, {"a": [1, 2.5, None]}),  # what JSON holds as it is stays as it is
])
def test_what_json_would_change_is_tagged(value, encoded):
    assert encode(value) == encoded


def test_a_dict_that_holds_the_tag_as_a_key_is_tagged_so_it_is_not_mistaken_for_one():
    value = {TAG: "tuple", "v": [1]}
    assert decode(json.loads(json.dumps(encode(value)))) == value


def test_a_value_that_is_not_plain_is_refused_with_its_type():
    class Point:
        pass

    with pytest.raises(NotPlainError, match="Point"):
        encode([1, {"p": Point()}])


def test_an_unknown_tag_is_an_error_not_a_silent_dict():
    with pytest.raises(ValueError, match="unknown tag 'complex'"):
        decode({TAG: "complex", "v": [1, 2]})
