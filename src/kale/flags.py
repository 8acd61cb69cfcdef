"""The command-line flags Kale reads from a pipeline script's own command line.

``python script.py --parallelism 4`` (local runs) and ``--kfp [--dry-run] [--output FILE]`` (also
``-K``, ``-D``, ``-o``, as in open-source Kale) are for Kale, not for the script: they are taken out
of ``sys.argv`` when ``kale.sdk`` is imported, before the script parses its own arguments.
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
    kfp: bool = False
    dry_run: bool = False
    output: str | None = None
    wait: bool = False
    kfp_host: str | None = None
    namespace: str | None = None
    image: str | None = None
    requirements: str | None = None
    bundle_store: str | None = None


FLAGS = Flags()
# Open-source Kale's SDK spelled these -K/--kfp and -D/--dry-run; scripts keep working.
_SWITCHES = {"--kfp": "kfp", "-K": "kfp", "--dry-run": "dry_run", "-D": "dry_run",
             "--wait": "wait"}
_VALUED = {"--parallelism": "parallelism", "--output": "output", "-o": "output",
           "--kfp-host": "kfp_host", "--namespace": "namespace", "--image": "image",
           "--requirements": "requirements", "--bundle-store": "bundle_store"}
_NAMES = (*_SWITCHES, *_VALUED)


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
        if argument in _SWITCHES:
            setattr(flags, _SWITCHES[argument], True)
            del argv[index]
            continue
        if name not in _VALUED:
            index += 1
            continue
        if inline or "=" in argument:
            value = inline
            del argv[index]
        elif index + 1 < len(argv):
            value = argv[index + 1]
            del argv[index : index + 2]
        else:
            example = "4" if name == "--parallelism" else "pipeline.yaml"
            raise FlagError(f"{name} needs a value", fix=f"for example: {name} {example}")
        if name == "--parallelism":
            flags.parallelism = _whole_number(name, value)
        else:
            if not value:
                raise FlagError(f"{name} needs a value", fix=f"for example: {name} "
                                + ("pipeline.yaml" if _VALUED[name] == "output" else "..."))
            setattr(flags, _VALUED[name], value)
    kfp_only = [flag for flag, used in (("--dry-run", flags.dry_run), ("--output", flags.output),
                                        ("--wait", flags.wait), ("--kfp-host", flags.kfp_host),
                                        ("--namespace", flags.namespace),
                                        ("--image", flags.image),
                                        ("--requirements", flags.requirements),
                                        ("--bundle-store", flags.bundle_store)) if used]
    if kfp_only and not flags.kfp:
        raise FlagError(f"{', '.join(kfp_only)} {'is' if len(kfp_only) == 1 else 'are'} for "
                        "running on Kubeflow",
                        fix="add --kfp: python script.py --kfp --dry-run --output pipeline.yaml")
    return flags


def load_from_sys_argv() -> None:
    """Take Kale's flags out of ``sys.argv`` (once, when ``kale.sdk`` is imported)."""
    global FLAGS
    if any(argument.split("=")[0] in _NAMES for argument in sys.argv[1:]):
        FLAGS = take_flags(sys.argv)
