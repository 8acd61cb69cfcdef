"""Kale's tagged JSON: builtin values (tuples, sets, bytes, big ints...) as JSON, exactly."""

from __future__ import annotations

from typing import Any

from kale.marshal.backends import _decode, _encode


def encode(value: Any) -> Any:
    """A JSON-ready form of ``value`` that ``decode`` turns back into an equal value."""
    return _encode(value)


def decode(value: Any) -> Any:
    """The value ``encode`` made this JSON-ready form of."""
    return _decode(value)
