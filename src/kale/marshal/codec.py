"""Kale's tagged JSON: plain Python values as JSON that reads back exactly.

JSON alone would change some values on the way back (a tuple becomes a list, a set is refused,
``inf`` is not JSON, a dict with int keys gets string keys). ``encode`` turns such values into
tagged objects, ``{"__kale__": "tuple", "v": [...]}``, and ``decode`` turns them back. The
``json`` backend stores values in this form, and the Kubeflow compiler and step entry carry
constants and parameters in it, so all three must agree: this module is the one definition.

Plain values are None, bool, int, float, str, bytes, and lists, tuples, dicts, sets and
frozensets of them (exact types, not subclasses: a subclass would come back as its base).
"""

from __future__ import annotations

import base64
import math

# Step processes import this on their start-up path: typing stays out of it.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["PLAIN_TYPES", "TAG", "NotPlainError", "decode", "encode"]

#: The key that marks a tagged object; a dict holding it as a key is itself tagged on encoding.
TAG = "__kale__"

#: The types ``encode`` accepts (containers only when everything inside is plain too).
PLAIN_TYPES = (type(None), bool, int, float, str, bytes, list, tuple, dict, set, frozenset)


class NotPlainError(ValueError):
    """A value (or something inside a container) is not a plain value; its type's name is the
    message."""


def encode(value: Any) -> Any:
    """``value`` as JSON-ready data (``json.dumps`` takes it, with ``allow_nan=False``).

    Raises ``NotPlainError`` when the value, or anything inside it, is not plain.
    """
    kind = type(value)
    if value is None or kind is bool or kind is str:
        return value
    if kind is int:
        # JSON holds any int, but Python refuses to print one of more than 4300 digits.
        return value if value.bit_length() < 10000 else {TAG: "int", "v": hex(value)}
    if kind is float:
        return value if math.isfinite(value) else {TAG: "float", "v": repr(value)}
    if kind is list:
        return [encode(item) for item in value]
    if kind is tuple:
        return {TAG: "tuple", "v": [encode(item) for item in value]}
    if kind is set or kind is frozenset:
        return {TAG: kind.__name__, "v": [encode(item) for item in value]}
    if kind is bytes:
        return {TAG: "bytes", "v": base64.b64encode(value).decode()}
    if kind is dict:
        if TAG not in value and all(type(key) is str for key in value):
            return {key: encode(item) for key, item in value.items()}
        return {TAG: "dict", "v": [[encode(key), encode(item)] for key, item in value.items()]}
    raise NotPlainError(kind.__name__)


def decode(value: Any) -> Any:
    """The value ``encode`` was given, from what it returned (after a JSON round trip).

    Raises ``ValueError`` for a tag this version of Kale does not know.
    """
    if isinstance(value, list):
        return [decode(item) for item in value]
    if not isinstance(value, dict):
        return value
    tag = value.get(TAG)
    if tag is None:
        return {key: decode(item) for key, item in value.items()}
    inner = value["v"]
    if tag == "tuple":
        return tuple(decode(item) for item in inner)
    if tag == "set":
        return {decode(item) for item in inner}
    if tag == "frozenset":
        return frozenset(decode(item) for item in inner)
    if tag == "bytes":
        return base64.b64decode(inner)
    if tag == "int":
        return int(inner, 16)
    if tag == "float":
        return float(inner)
    if tag == "dict":
        return {decode(key): decode(item) for key, item in inner}
    raise ValueError(f"unknown tag {tag!r} in a stored value")
