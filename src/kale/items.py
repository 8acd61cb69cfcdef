"""The items of a pipeline's ``for`` loop, as the loop carries them: one token per item.

Kubeflow's ``ParallelFor`` iterates a list parameter, and its parameters are protobuf values:
an int item arrives as a float (kfp 2.17: ``[1, 2, 3]`` reaches the steps as
``[1.0, 2.0, 3.0]``), a tuple as a list. So a loop never iterates the values themselves but a
list of strings, one per item: Kale's tagged JSON of the item (``{"value": ...}``), exact for
plain values, or the item's position (``{"index": 3}``) for anything else (an array, a
DataFrame, a model), which the iteration's steps then read from the whole list's stored value.
Local runs use the same tokens, so both read items the same way.
"""

from __future__ import annotations

import json

from kale.marshal.codec import NotPlainError, decode, encode

# Step processes import this on their start-up path: typing stays out of it.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

#: The longest item carried by value; a longer one goes by its position. Kubeflow carries the
#: whole list in the run's spec, and its parameters should stay small.
MAX_TOKEN = 4096


class NotIterableError(TypeError):
    """A value a loop iterates is not iterable."""


def item_tokens(value: Any) -> list[str]:
    """The tokens of the items of ``value``, in order: ``list(value)``, as Python's ``for``
    iterates it (a dict's keys, a str's characters, an array's rows)."""
    if isinstance(value, (list, tuple)):
        items = value
    else:
        try:
            items = list(value)
        except TypeError:
            raise NotIterableError(type(value).__name__) from None
    tokens = []
    for index, item in enumerate(items):
        try:
            text = json.dumps({"value": encode(item)}, allow_nan=False, separators=(",", ":"))
        except (NotPlainError, ValueError, RecursionError):
            text = None
        tokens.append(text if text is not None and len(text) <= MAX_TOKEN else
                      json.dumps({"index": index}))
    return tokens


def well_formed(tokens: list[str]) -> bool:
    """Whether every token is one ``item_tokens`` could have made for a list of this length:
    JSON holding the item (``value``) or its position in the list (``index``)."""
    for token in tokens:
        try:
            data = json.loads(token)
        except ValueError:
            return False
        if not (isinstance(data, dict) and len(data) == 1 and (
                "value" in data or (type(data.get("index")) is int and
                                    0 <= data["index"] < len(tokens)))):
            return False
    return True


def read_item(token: str, whole: Callable[[], Any] | None) -> Any:
    """The item a token stands for; ``whole`` loads the list it came from (for an item carried
    by position)."""
    data = json.loads(token)
    if "value" in data:
        return decode(data["value"])
    if whole is None:
        raise ValueError(f"the loop item {token} needs the list it came from")
    items = whole()
    return (items if isinstance(items, (list, tuple)) else list(items))[data["index"]]


def numbered(tokens: list[str]) -> list[str]:
    """The tokens as a Kubeflow loop carries them: each with its position and the number of
    items (``"at"``, ``"of"``), which ``read_item`` leaves aside. An iteration's outputs carry
    them, so the step that collects them can put them in item order, whatever order Kubeflow
    hands them over in, and tell that none is missing."""
    return [json.dumps({**json.loads(token), "at": index, "of": len(tokens)},
                       separators=(",", ":"))
            for index, token in enumerate(tokens)]


def by_position(tokens: list[str]) -> bool:
    """Whether any token stands for its item by position (the list must come along)."""
    return any("index" in json.loads(token) for token in tokens)
