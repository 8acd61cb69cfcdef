"""The command-line flags Kale reads from a pipeline script's own command line.

They are taken out of ``sys.argv`` once, when the script being run (``__main__``) decorates a
function with ``@pipeline`` — before its ``if __name__ == "__main__":`` block parses its own
arguments — or, for a pipeline defined in another module, when the script first calls one.
Importing ``kale.sdk`` reads nothing, so a library or a test that imports it keeps its
``sys.argv``. What is Kale's depends on the mode:

- Without ``--kfp``/``-K`` (a local run) only ``--parallelism N``, ``--cache`` and ``--no-cache``
  are Kale's: every other argument reaches the script as typed, so a script with its own
  ``--output`` or ``--dry-run`` works.
- With ``--kfp``/``-K``, Kale's Kubeflow flags are Kale's too (``--dry-run``/``-D``,
  ``--output``/``-o``, ``--wait``, ``--kfp-host``, ``--namespace``, ``--image``,
  ``--requirements``, ``--bundle-store``, ``--server-version``; the short ones as in
  open-source Kale, combinable as argparse combines them: ``-KD``, ``-Do FILE``). An argument
  that looks like a mistyped one (``--dry``, ``-d``, ``-dry-run``, ``—dry-run``,
  ``--kfp_host``) is an error, because leaving it to the script would submit the pipeline for
  real.
- In both modes the first ``--`` ends Kale's flags: it is removed, and everything after it is the
  script's, exactly as typed.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from typing import Any

from kale.errors import KaleError


class FlagError(KaleError):
    """A Kale flag on the script's command line is mistyped or has a bad value."""

    exit_code = 2


@dataclass
class Flags:
    """Kale's flags as given on the script's command line (``None``/``False`` when absent)."""

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
    server_version: str | None = None
    no_install: bool = False
    #: --schedule CRON and its options: a recurring run instead of one run
    schedule: str | None = None
    max_concurrency: str | None = None
    start: str | None = None
    end: str | None = None
    catchup: bool = False
    no_catchup: bool = False

    @property
    def recurring(self) -> Any:
        """The ``kale.kfp.schedule.Schedule`` these flags ask for, or None (checked values)."""
        if not self.schedule:
            return None
        from kale.kfp.schedule import Schedule

        return Schedule.from_flags(self.schedule, start=self.start, end=self.end,
                                   max_concurrency=self.max_concurrency,
                                   catchup=False if self.no_catchup else None)
    #: --cache (True) or --no-cache (False): caching for every step of the run, whatever the
    #: steps' own ``cache`` option says; None: the steps' options decide
    cache: bool | None = None

    #: --resume [RUN]: the run to continue ("" for the pipeline's last run), None without it
    resume: str | None = None
    #: --from STEP (only with --resume): STEP and every step after it run
    from_step: str | None = None

    @property
    def caching(self) -> bool | None:
        """``--cache`` (True), ``--no-cache`` (False), or neither (None: each step's option).
        With ``--kfp``, ``--resume`` is a new run with Kubeflow's caching on for every step."""
        if self.kfp and self.resume is not None and self.cache is None:
            return True
        return self.cache


FLAGS = Flags()
# Open-source Kale's SDK spelled these -K/--kfp and -D/--dry-run; scripts keep working.
_SWITCHES = {"--kfp": "kfp", "-K": "kfp", "--dry-run": "dry_run", "-D": "dry_run",
             "--wait": "wait", "--no-install": "no_install", "--catchup": "catchup",
             "--no-catchup": "no_catchup"}
_VALUED = {"--parallelism": "parallelism", "--output": "output", "-o": "output",
           "--kfp-host": "kfp_host", "--namespace": "namespace", "--image": "image",
           "--requirements": "requirements", "--bundle-store": "bundle_store",
           "--server-version": "server_version", "--schedule": "schedule",
           "--max-concurrency": "max_concurrency", "--start": "start", "--end": "end"}
_CACHE = {"--cache": True, "--no-cache": False}
_RESUME = ("--resume", "--from")
_LONG = tuple(flag for flag in (*_SWITCHES, *_VALUED, *_CACHE, *_RESUME)
              if flag.startswith("--"))
# What --resume takes as its run when it comes next: a run id or its first characters (hex, in
# the dashed groups of a UUID). Anything else after --resume is the script's.
_RUN_ID = re.compile(r"[0-9a-f]{4,}(-[0-9a-f]*)*")
# A value each flag could take, for the fix of "needs a value".
_EXAMPLES = {"--parallelism": "4", "--output": "pipeline.yaml", "-o": "pipeline.yaml",
             "--kfp-host": "http://localhost:8080", "--namespace": "my-profile",
             "--image": "python:3.11", "--requirements": "requirements.txt",
             "--bundle-store": "minio://mlpipeline/kale", "--server-version": "2.14.3",
             "--schedule": "'0 9 * * 1'", "--max-concurrency": "2",
             "--start": "2026-01-01T09:00:00Z", "--end": "2026-12-31",
             "--resume": "1a2b3c4d", "--from": "train"}
# Kale's short flags by upper-cased letter, so that -k, -d and -O are recognised as typos.
_SHORT = {"K": "-K", "D": "-D", "O": "-o"}
# A hyphen and what documents, word processors and chat programs turn hyphens into (a pasted
# "—dry-run" was typed as "--dry-run").
_DASHES = "-\u2010\u2011\u2012\u2013\u2014\u2015\u2212\ufe58\ufe63\uff0d"
# Kale's short flags combined as argparse combines them: switches, then -o with its value
# attached (-KD, -DK, -Do FILE, -op.yaml, -o=p.yaml).
_CLUSTER = re.compile(r"-(?P<switches>[KD]*)(?P<o>o.*)?", re.DOTALL)
_NEGATIVE_NUMBER = re.compile(r"-\d+(\.\d*)?")


HELP = """\
Kale's flags for a pipeline script. Kale takes them out of the command line before the script
parses its own arguments; every other argument reaches the script as typed.

  python script.py [--parallelism N] [ARGS]    run locally (N steps at a time)
    --cache / --no-cache      reuse unchanged steps' outputs for every step / for none
                              (default: each step's cache option, off unless set)
    --resume [RUN]            continue RUN (an id or its start; default: this pipeline's last
                              run): what succeeded there and is unchanged is reused, the rest runs
      --from STEP             with --resume: STEP and every step after it run again
  python script.py --kfp [options] [ARGS]      compile, upload and run on Kubeflow Pipelines
    -K, --kfp                 run on Kubeflow Pipelines instead of locally
    -D, --dry-run             only write the pipeline package; contact nothing
    -o, --output FILE         where to write the package (default: <pipeline name>.yaml)
    --wait                    follow the run to its end; exit non-zero if it fails
    --kfp-host URL            the KFP API (default: KF_PIPELINES_ENDPOINT, else in-cluster)
    --namespace NAME          the Kubeflow namespace (profile) to run in
    --image IMAGE             the steps' base image
    --requirements FILE       the packages the steps install
    --bundle-store URI        where a big project bundle is uploaded (minio://, s3://, gs://)
    --server-version X.Y.Z    the Kubeflow Pipelines release to compile for (a dry run, or a
                              server that does not say; a submission reads the server's own)
    --no-install              steps install nothing: the --image holds kfp and their packages
    --schedule CRON           create a recurring run instead of one run: a standard 5-field
                              cron ('0 9 * * 1': Mondays at 9:00, scheduler time, UTC default)
      --max-concurrency N     at most N of its runs at once (1 to 10; default 1)
      --start TIME, --end TIME  when it starts and stops (2026-01-01, 2026-01-01T09:00:00Z)
      --catchup, --no-catchup   run the runs missed while paused or behind (default: catch up)
    --cache, --no-cache       let Kubeflow reuse unchanged steps' outputs, or run every step
                              (default: the steps' own cache option, off unless set)
    --resume [RUN]            a new run with caching on for every step: what is unchanged
                              since a run with caching on is reused (see the README)

Short flags combine as in argparse (-KD, -Do FILE). Without --kfp only --parallelism, --cache,
--no-cache and --resume (with --from after it) are Kale's:
the script's own --output, --image, -o, --dry-run... reach it. With --kfp, an argument that looks
like a mistyped Kale flag (--dry, --dryrun, -d, -dry-run, a pasted —dry-run) is an error, not a
real submission. After one of Kale's flags, the first -- ends them and is removed (write -- -- to
give the script a --): python script.py --kfp --dry-run -- --kfp-host x  gives the script
--kfp-host x.
"""


def _whole_number(flag: str, text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise FlagError(f"{flag} {text!r} is not valid: a whole number of at least 1 is expected",
                        fix=f"for example: {flag} 4")
    return value


def _squashed(text: str) -> str:
    """``text`` without case, hyphens (or look-alikes) and underscores: --Dry_Run is --dry-run."""
    return "".join(char for char in text.lower() if char not in _DASHES and char != "_")


def _long_matches(body: str) -> list[str]:
    """Kale's long flags ``body`` (a flag's name without its dashes) can have been meant as."""
    squashed = _squashed(body)
    if not squashed:
        return []
    by_squashed = {_squashed(flag): flag for flag in _LONG}
    if squashed in by_squashed:
        return [by_squashed[squashed]]
    # argparse would take --dry for --dry-run; with --kfp that slip would submit for real, so
    # a shortened --dry-run is a mistake. Other shortenings (--name, --out) are common flags of
    # scripts of their own, and a slip there does not start anything that was not asked for.
    if "dryrun".startswith(squashed):
        return ["--dry-run"]
    import difflib  # only for a mistyped flag: not on the import path of kale.sdk

    close = difflib.get_close_matches(squashed, by_squashed, n=1, cutoff=0.9)  # --kfp-hosts
    return [by_squashed[close[0]]] if close else []


def _meant(argument: str) -> str | None:
    """The Kale flag(s) ``argument`` looks like a mistyping of, or ``None`` when it does not.

    Kale's exact flags are not mistypings; callers look for those first.
    """
    name = argument.split("=", 1)[0]
    body = name.lstrip(_DASHES)
    leading = name[: len(name) - len(body)]
    if not leading:
        return None
    pasted = leading.strip("-") != ""  # a dash that is not an ASCII hyphen
    if not body:
        return "--" if pasted else None  # "-" alone is the script's (stdin, usually)
    letters = _squashed(body)
    if len(leading) == 1 and len(letters) <= 1:
        # A single letter is a short flag: -k, -d and -O are Kale's in the wrong case; any other
        # letter (-n, -v) is the script's, unless its dash was pasted (—w was --w).
        short = _SHORT.get(letters.upper())
        if short is not None and (pasted or short != name):
            return short
        if not pasted:
            return None
    matches = _long_matches(body)
    return " or ".join(matches) if matches else None


def _mistyped(argument: str, meant: str) -> FlagError:
    name = argument.split("=", 1)[0]
    pasted = any(char in _DASHES[1:] for char in name)
    why = (" (its dashes are not ASCII hyphens: pasted from a document? type them instead)"
           if pasted else "")
    return FlagError(f"{name} is not one of Kale's flags{why}",
                     fix=f"did you mean {meant}? (if {name} is the script's own, put it after "
                     f"--: python script.py --kfp -- {name}; --kfp --help lists Kale's flags)")


def _looks_like_a_flag(text: str) -> bool:
    """Whether ``text`` after a valued flag is another flag rather than its value, as argparse
    judges it (negative numbers are values)."""
    return (len(text) > 1 and text[0] in _DASHES
            and not _NEGATIVE_NUMBER.fullmatch(text))


def _needs_a_value(name: str, got: str | None = None) -> FlagError:
    example = f"for example: {name} {_EXAMPLES[name]}"
    if got is None:
        return FlagError(f"{name} needs a value", fix=example)
    return FlagError(f"{name} needs a value (the next argument, {got!r}, looks like a flag)",
                     fix=f"{example} (write a value that starts with '-' as {name}=VALUE)")


def _value(argv: list[str], index: int, name: str, attached: str | None) -> str:
    """The value of the valued flag ``name`` at ``argv[index]``, taking it out of ``argv``.

    ``attached`` is the value written in the same argument (``--output=FILE``, ``-oFILE``), or
    ``None`` when it is the next argument.
    """
    if attached is not None:
        del argv[index]
        value = attached
    elif index + 1 < len(argv) and not _looks_like_a_flag(argv[index + 1]):
        value = argv[index + 1]
        del argv[index : index + 2]
    else:
        # `--kfp --output --dry-run` must not write to a file named --dry-run and submit.
        raise _needs_a_value(name, argv[index + 1] if index + 1 < len(argv) else None)
    if not value:
        raise _needs_a_value(name)
    return value


def _set(flags: Flags, name: str, value: str) -> None:
    if name == "--parallelism":
        flags.parallelism = _whole_number(name, value)
    elif name == "--server-version":
        from kale.kfp.server import check_version_flag

        try:
            check_version_flag(value)
        except KaleError as error:
            raise FlagError(error.message, fix=error.fix) from None
        flags.server_version = value
    else:
        setattr(flags, _VALUED[name], value)


def _is_kfp(argument: str) -> bool:
    """Whether ``argument`` is --kfp or -K (alone or combined: -KD, -DKo FILE)."""
    if argument == "--kfp":
        return True
    cluster = _CLUSTER.fullmatch(argument)
    return cluster is not None and "K" in cluster["switches"]


def _ends_kales_flags(argv: list[str]) -> int:
    """The index of the first ``--`` in ``argv`` (``len(argv)`` when there is none)."""
    return argv.index("--", 1) if "--" in argv[1:] else len(argv)


def take_flags(argv: list[str]) -> Flags:
    """Take Kale's flags out of ``argv`` (in place, with the first ``--``) and return them.

    Raises ``FlagError`` for a bad value, and in --kfp mode for a mistyped Kale flag.
    """
    flags = Flags()
    kales = argv[1:_ends_kales_flags(argv)]
    kfp_mode = any(_is_kfp(argument) for argument in kales)
    flags.kfp = kfp_mode
    # --from is Kale's only beside --resume: alone, a script's own --from reaches it.
    resuming = any(argument.partition("=")[0] == "--resume" for argument in kales)
    took_any = False  # without any flag of Kale's, a "--" is the script's own
    index = 1
    while index < len(argv):
        argument = argv[index]
        name, equals, inline = argument.partition("=")
        if argument == "--":
            if kfp_mode or took_any:
                del argv[index]  # the script sees what follows as if Kale were not there
            break
        if name in _CACHE:
            if equals:
                raise FlagError(f"{name} takes no value (got {argument!r})",
                                fix=f"write {name} alone (--cache or --no-cache)")
            if flags.cache is not None and flags.cache != _CACHE[name]:
                raise FlagError("--cache and --no-cache are both given",
                                fix="keep one: --cache reuses unchanged steps, --no-cache runs "
                                "every step")
            flags.cache = _CACHE[name]
            del argv[index]
            took_any = True
            continue
        if name == "--resume":
            if flags.resume is not None:
                raise FlagError("--resume is given twice", fix="keep one")
            if equals:
                if not inline:
                    raise _needs_a_value(name)
                flags.resume = inline
            elif index + 1 < len(argv) and _RUN_ID.fullmatch(argv[index + 1]):
                flags.resume = argv.pop(index + 1)
            else:
                flags.resume = ""
            del argv[index]
            took_any = True
            continue
        if name == "--from" and resuming:
            if flags.from_step is not None:
                raise FlagError("--from is given twice", fix="keep one: the first step to run "
                                "again")
            flags.from_step = _value(argv, index, name, inline if equals else None)
            took_any = True
            continue
        if name == "--parallelism" or (kfp_mode and name in _VALUED and name != "-o"):
            _set(flags, name, _value(argv, index, name, inline if equals else None))
            took_any = True
            continue
        if not kfp_mode:
            body = name.lstrip(_DASHES)
            if name not in ("--kfp", "-K") and name != body and len(body) > 1 and \
                    _squashed(body) == "kfp":
                # --KFP, -kfp, a pasted —kfp: meant for Kubeflow, and would run here instead.
                raise FlagError(f"{name} is not Kale's --kfp: the pipeline would run on this "
                                "machine rather than on Kubeflow",
                                fix="write --kfp (or -K) to compile and run it on Kubeflow")
            index += 1  # without --kfp, all but --parallelism, --cache, --resume is the script's
            continue
        if argument in ("--help", "-h"):
            # Submitting a pipeline is not what someone asking for help wants.
            sys.stdout.write(HELP)
            raise SystemExit(0)
        if name in _SWITCHES and name.startswith("--"):
            if equals:
                raise FlagError(f"{name} takes no value (got {argument!r})",
                                fix=f"write {name} alone")
            setattr(flags, _SWITCHES[name], True)
            del argv[index]
            continue
        meant = _meant(argument)
        if meant is not None:
            # A typo such as --dry would otherwise reach the script and submit for real.
            raise _mistyped(argument, meant)
        cluster = _CLUSTER.fullmatch(argument)
        if cluster is not None and argument != "-":
            for letter in cluster["switches"]:
                setattr(flags, _SWITCHES[f"-{letter}"], True)
            if cluster["o"]:
                attached = cluster["o"][1:]  # -oFILE, -o=FILE, or "" when FILE comes next
                if attached.startswith("="):
                    attached = attached[1:]
                elif not attached:
                    attached = None
                _set(flags, "-o", _value(argv, index, "-o", attached))
            else:
                del argv[index]
            continue
        if argument[:2] in ("-K", "-D"):
            # -K=1, -Dx: argparse would refuse them too; the script must not get them.
            raise FlagError(f"{argument[:2]} takes no value (got {argument!r})",
                            fix=f"write {argument[:2]} alone")
        index += 1
    if kfp_mode:
        _check_schedule(flags)
        if flags.from_step is not None:
            raise FlagError(
                "--from is not available with --kfp: on Kubeflow, --resume is a new run that "
                "reuses, through Kubeflow's cache, every step that is unchanged",
                fix="leave --from out (an edited step runs again by itself), or give the steps "
                "that must run again cache=False")
        if flags.resume is not None and flags.cache is False:
            raise FlagError("--resume and --no-cache are both given: with --kfp, --resume is a "
                            "run that reuses cached steps, which --no-cache turns off",
                            fix="keep one")
    return flags


_SCHEDULE_OPTIONS = {"--max-concurrency": "max_concurrency", "--start": "start", "--end": "end",
                     "--catchup": "catchup", "--no-catchup": "no_catchup"}


def without_resume(args: list[str]) -> list[str]:
    """``args`` without ``--resume [RUN]`` and ``--from STEP`` (as ``take_flags`` reads them):
    what starts a run again as it was started, to be resumed from another run."""
    kept: list[str] = []
    resuming = any(argument.partition("=")[0] == "--resume" for argument in args)
    index = 0
    while index < len(args):
        argument = args[index]
        if argument == "--":
            kept.extend(args[index:])
            break
        name, equals, _ = argument.partition("=")
        if name == "--resume":
            index += 1 if equals or not (index + 1 < len(args) and
                                         _RUN_ID.fullmatch(args[index + 1])) else 2
            continue
        if name == "--from" and resuming:
            index += 1 if equals else 2
            continue
        kept.append(argument)
        index += 1
    return kept


def _check_schedule(flags: Flags) -> None:
    """--schedule's options need it, and its values must be valid, before anything is done."""
    given = [name for name, attribute in _SCHEDULE_OPTIONS.items()
             if getattr(flags, attribute) not in (None, False)]
    if not flags.schedule:
        if given:
            raise FlagError(f"{given[0]} is an option of a recurring run, and there is no "
                            "--schedule", fix=f"add --schedule CRON (for example --schedule "
                            f"'0 9 * * 1'), or leave {given[0]} out")
        return
    if flags.catchup and flags.no_catchup:
        raise FlagError("--catchup and --no-catchup are both given", fix="keep one")
    if flags.wait:
        raise FlagError("--wait follows one run, and --schedule starts none now (it creates a "
                        "recurring run)", fix="leave --wait out; follow the runs in the "
                        "Kubeflow UI's recurring run page")
    try:
        flags.recurring  # noqa: B018 (checks every value)
    except KaleError as error:
        raise FlagError(error.message, fix=error.fix) from None


_loaded = False


def load_from_sys_argv() -> None:
    """Take Kale's flags out of ``sys.argv`` into ``FLAGS``; only the first call of a process
    does anything (``kale.sdk`` calls it when a script defines or calls a pipeline).

    Raises ``FlagError`` like ``take_flags``, and then leaves ``sys.argv`` as it was: a second
    attempt must not see half of the flags gone (``--kfp`` taken, a mistyped ``--dry`` left).
    """
    global FLAGS, _loaded
    if _loaded:
        return
    argv = list(sys.argv)
    FLAGS = take_flags(argv)
    sys.argv[:] = argv  # the same list: code that kept a reference to it sees the change
    _loaded = True
