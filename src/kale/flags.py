"""The command-line flags Kale reads from a pipeline script's own command line.

``python script.py --parallelism 4`` (local runs) and ``--kfp [--dry-run] [--output FILE]`` (also
``-K``, ``-D``, ``-o``, as in open-source Kale) are for Kale, not for the script: they are taken out
of ``sys.argv`` when ``kale.sdk`` is imported, before the script parses its own arguments.
"""

from __future__ import annotations

import difflib
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


HELP = """\
Kale's flags for a pipeline script (the script's own arguments pass through untouched):

  python script.py [--parallelism N]           run locally (N steps at a time)
  python script.py --kfp [options]             compile, upload and run on Kubeflow Pipelines
    -K, --kfp                 run on Kubeflow Pipelines instead of locally
    -D, --dry-run             only write the pipeline package; contact nothing
    -o, --output FILE         where to write the package (default: <pipeline name>.yaml)
    --wait                    follow the run to its end; exit non-zero if it fails
    --kfp-host URL            the KFP API (default: KF_PIPELINES_ENDPOINT, else in-cluster)
    --namespace NAME          the Kubeflow namespace (profile) to run in
    --image IMAGE             the steps' base image
    --requirements FILE       the packages the steps install
    --bundle-store URI        where a big project bundle is uploaded (minio://, s3://, gs://)
"""


def _squashed(flag: str) -> str:
    return flag.lower().replace("-", "").replace("_", "")


def _near_miss(argument: str) -> str | None:
    """The Kale flag ``argument`` looks like a misspelling of, if any."""
    name = argument.split("=", 1)[0]
    if not name.startswith("--") or name in _NAMES:
        return None
    longs = [flag for flag in _NAMES if flag.startswith("--")]
    for flag in longs:
        if _squashed(flag) == _squashed(name):
            return flag
    close = difflib.get_close_matches(name, longs, n=1, cutoff=0.9)
    return close[0] if close else None


def take_flags(argv: list[str]) -> Flags:
    """Parse Kale's flags out of ``argv`` (in place) and return them."""
    flags = Flags()
    kfp_mode = any(argument in ("--kfp", "-K") for argument in argv[1:])
    index = 1
    while index < len(argv):
        argument = argv[index]
        name, _, inline = argument.partition("=")
        if argument == "--":
            break
        if kfp_mode and argument in ("--help", "-h"):
            # Submitting a pipeline is not what someone asking for help wants.
            sys.stdout.write(HELP)
            raise SystemExit(0)
        if name in _SWITCHES and name != argument:
            raise FlagError(f"{name} takes no value (got {argument!r})",
                            fix=f"write {name} alone")
        if kfp_mode and (meant := _near_miss(argument)):
            # A typo such as --dryrun would otherwise submit the pipeline for real.
            raise FlagError(f"{name} is not one of Kale's flags",
                            fix=f"did you mean {meant}? (python script.py --kfp --help lists "
                            "them)")
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
