"""The command-line flags Kale reads from a pipeline script's own command line.

``python script.py --parallelism 4`` is for Kale, not for the script: the flags are taken out of
``sys.argv`` when ``kale.sdk`` is imported, before the script parses its own arguments.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

from kale.errors import KaleError


class FlagError(KaleError):
    """A Kale flag on the script's command line has a bad value."""

    exit_code = 2


@dataclass
class Flags:
    parallelism: int | None = None


FLAGS = Flags()
_NAMES = ("--parallelism",)


def _whole_number(flag: str, text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise FlagError(f"{flag} {text!r} is not valid: a whole number of at least 1 is expected",
                        fix=f"for example: {flag} 4")
    return value


def take_flags(argv: list[str]) -> Flags:
    """Parse Kale's flags out of ``argv`` (in place) and return them."""
    flags = Flags()
    index = 1
    while index < len(argv):
        argument = argv[index]
        name, _, inline = argument.partition("=")
        if argument == "--":
            break
        if name not in _NAMES:
            index += 1
            continue
        if inline or "=" in argument:
            value = inline
            del argv[index]
        elif index + 1 < len(argv):
            value = argv[index + 1]
            del argv[index : index + 2]
        else:
            raise FlagError(f"{name} needs a value", fix=f"for example: {name} 4")
        if name == "--parallelism":
            flags.parallelism = _whole_number(name, value)
    return flags


def load_from_sys_argv() -> None:
    """Take Kale's flags out of ``sys.argv`` (once, when ``kale.sdk`` is imported)."""
    global FLAGS
    if any(argument.split("=")[0] in _NAMES for argument in sys.argv[1:]):
        FLAGS = take_flags(sys.argv)
