"""Recurring runs: ``--schedule CRON`` and the flags that go with it.

Kubeflow Pipelines reads a recurring run's cron with ``cron.Parse`` of robfig/cron v1.2.0
(``backend/src/apiserver/server/api_converter.go@2.17.0``, ``backend/src/crd/controller/
scheduledworkflow/util/cron_schedule.go``), whose default parser wants six fields, seconds
first (``Second | Minute | Hour | Dom | Month | DowOptional``, robfig/cron@v1.2.0
``parser.go``). A standard five-field cron given as it is would be read with its minutes as
seconds: ``0 9 * * 1`` (Mondays at 9:00) would run every hour at :09 in January. So Kale takes
the standard five fields (minute, hour, day of month, month, day of week), checks them, and
hands KFP ``0`` seconds first. The schedule runs in the scheduler's time zone
(``CRON_SCHEDULE_TIMEZONE`` of the ScheduledWorkflow controller; UTC by default).

The API server takes a concurrency of 1 to 10 (``api_converter.go@2.17.0``: "Max concurrency of
a recurring run must be at least 1 and at most 10"). Importing this module imports no kfp.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone

from kale.errors import KaleError

_FIELDS = (("minute", 0, 59, None), ("hour", 0, 23, None), ("day of month", 1, 31, None),
           ("month", 1, 12, ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep",
                             "oct", "nov", "dec")),
           ("day of week", 0, 6, ("sun", "mon", "tue", "wed", "thu", "fri", "sat")))
_DESCRIPTORS = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")
_EXAMPLE = "'0 9 * * 1' (Mondays at 9:00), '*/15 * * * *', '30 2 1 * *' or @daily"
MAX_CONCURRENCY = 10


def translate_cron(text: str, flag: str = "--schedule") -> str:
    """KFP's six-field cron for a standard five-field one (``0 9 * * 1`` -> ``0 0 9 * * 1``);
    robfig's descriptors (``@daily``...) as they are. A ``KaleError`` names the field at fault."""
    given = " ".join(text.split())
    if given.lower() in _DESCRIPTORS:
        return given.lower()
    if given.lower().startswith("@every"):
        raise KaleError(f"{flag} {text!r}: @every counts from when the scheduler starts, not "
                        "from the clock", fix=f"write a cron, such as {_EXAMPLE}")
    fields = given.split(" ")
    if len(fields) != 5:
        extra = (" (KFP's own form has seconds first; Kale adds them: write the five standard "
                 "fields)" if len(fields) == 6 else "")
        raise KaleError(f"{flag} {text!r} has {len(fields)} field{'s' * (len(fields) != 1)}; a "
                        f"cron has five: minute, hour, day of month, month, day of week{extra}",
                        fix=f"for example {flag} {_EXAMPLE}")
    for value, (name, low, high, names) in zip(fields, _FIELDS, strict=True):
        problem = _field_problem(value, low, high, names)
        if problem:
            fix = ("write 0 for Sunday (the scheduler counts days of the week 0-6)"
                   if name == "day of week" and "7" in value else
                   f"for example {flag} {_EXAMPLE}")
            raise KaleError(f"{flag} {text!r}: the {name} field {value!r} {problem}", fix=fix)
    return "0 " + given


def _field_problem(value: str, low: int, high: int, names: tuple[str, ...] | None) -> str | None:
    def number(part: str) -> int | None:
        if part.isdigit():
            return int(part)
        if names and part.lower() in names:
            return names.index(part.lower()) + low
        return None

    for piece in value.split(","):
        if not piece:
            return "has an empty item"
        spread, _, step = piece.partition("/")
        if step and (not step.isdigit() or int(step) == 0):
            return f"has the step {step!r}, which is not a whole number of at least 1"
        if spread in ("*", "?"):
            continue
        ends = spread.split("-")
        if len(ends) > 2:
            return "has more than one '-' in a range"
        bounds = [number(end) for end in ends]
        if any(bound is None for bound in bounds):
            allowed = f"numbers {low}-{high}" + (f" or names ({', '.join(names[:3])}...)"
                                                  if names else "")
            return f"is not {allowed}, '*', a range a-b, a list a,b or a step */n"
        if any(not low <= bound <= high for bound in bounds if bound is not None):
            return f"is outside {low}-{high}"
        if len(bounds) == 2 and bounds[0] is not None and bounds[1] is not None \
                and bounds[0] > bounds[1]:
            return "is a range that ends before it starts"
    return None


def parse_time(text: str, flag: str) -> str:
    """An RFC 3339 time (what KFP's API takes) for ``2026-01-01``, ``2026-01-01T09:00:00Z`` or
    ``2026-01-01 09:00+02:00``; a time without a zone is refused rather than guessed."""
    value = text.strip()
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
            moment = datetime.fromisoformat(value).replace(tzinfo=timezone.utc)
        else:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        moment = None
    if moment is None:
        raise KaleError(f"{flag} {text!r} is not a date or time",
                        fix=f"write it as {flag} 2026-01-01 (midnight UTC) or "
                        f"{flag} 2026-01-01T09:00:00Z")
    if moment.tzinfo is None:
        raise KaleError(f"{flag} {text!r} has no time zone, and the scheduler would read it "
                        "in its own", fix=f"add one: {flag} {value}Z (UTC) or {value}+02:00")
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_concurrency(text: str, flag: str = "--max-concurrency") -> int:
    if not text.strip().isdigit() or not 1 <= int(text) <= MAX_CONCURRENCY:
        raise KaleError(f"{flag} {text!r} is not valid: Kubeflow Pipelines runs 1 to "
                        f"{MAX_CONCURRENCY} runs of a recurring run at once",
                        fix=f"for example {flag} 1 (the default: one run at a time)")
    return int(text)


@dataclass(frozen=True)
class Schedule:
    """A recurring run to create: KFP's cron, the cron as given, and the options."""

    cron: str
    given: str
    start: str | None = None
    end: str | None = None
    max_concurrency: int = 1
    catchup: bool = True

    @classmethod
    def from_flags(cls, schedule: str, *, start: str | None = None, end: str | None = None,
                   max_concurrency: str | None = None, catchup: bool | None = None
                   ) -> Schedule:
        begins = parse_time(start, "--start") if start else None
        ends = parse_time(end, "--end") if end else None
        if begins and ends and ends <= begins:
            raise KaleError(f"--end {end} is not after --start {start}",
                            fix="give an end after the start, or no --end")
        return cls(translate_cron(schedule), schedule, begins, ends,
                   parse_concurrency(max_concurrency) if max_concurrency else 1,
                   True if catchup is None else catchup)

    def describe(self) -> str:
        """What the recurring run does, in one phrase."""
        cron = (f"cron {self.cron!r}" if self.cron.startswith("@") else
                f"cron {self.cron!r} (KFP's six fields, seconds first, for {self.given!r})")
        window = (f", from {self.start}" if self.start else "") + (
            f" until {self.end}" if self.end else "")
        catchup = ("missed runs caught up" if self.catchup else
                   "missed runs skipped (--no-catchup)")
        return (f"{cron} in the scheduler's time zone (UTC unless its CRON_SCHEDULE_TIMEZONE "
                f"says otherwise){window}, at most {self.max_concurrency} at once, {catchup}")
