"""Step and pipeline options: validation, durations, names, retry backoff and ``steps_defaults``.

Options are checked when the decorator runs, so a typo fails at import with the option's name, the
bad value and what is allowed, long before a step runs or Kubeflow sees the pipeline.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from kale.errors import InvalidOptionError

#: The options ``@step`` accepts. ``name`` cannot be given in ``steps_defaults``.
STEP_OPTIONS = (
    "name",
    "timeout",
    "retry_count",
    "retry_interval",
    "retry_factor",
    "retry_max_interval",
    "limits",
    "labels",
    "annotations",
    "cache",
)
DEFAULTABLE_STEP_OPTIONS = STEP_OPTIONS[1:]
PIPELINE_OPTIONS = (
    "name",
    "timeout",
    "experiment",
    "description",
    "autosnapshot",
    "steps_defaults",
    "loop_parallelism",
)

_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|m|h|d)", re.IGNORECASE)
_DURATION_TEXT = re.compile(r"(?:\s*(?:\d+(?:\.\d*)?|\.\d+)\s*(?:ms|s|m|h|d)\s*)+", re.IGNORECASE)
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION_HELP = (
    "use a number of seconds (90) or a string such as '45s', '2m', '1h' or '1h30m'"
)

STEP_NAME_MAX = 63
PIPELINE_NAME_MAX = 128
_NAME_JUNK = re.compile(r"[^a-z0-9]+")

# Kubernetes: a qualified name is an optional DNS-subdomain prefix and a name of at most 63 chars.
_K8S_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_KFP_CPU = re.compile(r"^([0-9]*[.])?[0-9]+m?$")
_KFP_MEMORY = re.compile(r"^[0-9]+(E|Ei|P|Pi|T|Ti|G|Gi|M|Mi|K|Ki)?$")
_QUANTITY = re.compile(r"^(\d+(\.\d*)?|\.\d+)(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|K|M|G|T|P|E|[eE]\d+)?$")


# Words users reach for that other tools use; each points at Kale's option.
_SYNONYMS = {
    "retries": "retry_count", "retry": "retry_count", "max_retries": "retry_count",
    "num_retries": "retry_count", "backoff": "retry_factor", "backoff_factor": "retry_factor",
    "resources": "limits", "cpu": "limits", "memory": "limits", "gpu": "limits", "gpus": "limits",
    "display_name": "name", "default_steps": "steps_defaults", "defaults": "steps_defaults",
    "experiment_name": "experiment", "deadline": "timeout",
}


def suggest(option: str, known: tuple[str, ...]) -> str:
    """' did you mean ...?' for a mistyped option name, or '' when nothing is close."""
    guess = _SYNONYMS.get(option.lower())
    if guess not in known:
        import difflib  # only for a mistake: not on the import path of kale.sdk

        close = difflib.get_close_matches(option, known, n=1, cutoff=0.6)
        guess = close[0] if close else None
    return f"did you mean {guess!r}? " if guess else ""


def parse_duration(value: Any, option: str, *, allow_zero: bool = False) -> float:
    """Seconds from a number of seconds or a string like "30", "45s", "2m", "1h30m"."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise InvalidOptionError(option, value, f"a duration is expected; {_DURATION_HELP}")
    try:
        if isinstance(value, str):
            text = value.strip()
            try:
                seconds = float(text)
            except ValueError:
                seconds = _parse_duration_text(text, option, value)
        else:
            seconds = float(value)
    except OverflowError:
        raise InvalidOptionError(option, value, "the duration is too large") from None
    if math.isnan(seconds) or math.isinf(seconds):
        raise InvalidOptionError(option, value, f"a finite duration is expected; {_DURATION_HELP}")
    if seconds < 0 or (seconds == 0 and not allow_zero):
        bound = "zero or more" if allow_zero else "more than zero"
        raise InvalidOptionError(option, value, f"the duration must be {bound} seconds")
    return seconds


def _parse_duration_text(text: str, option: str, original: Any) -> float:
    if not _DURATION_TEXT.fullmatch(text):
        raise InvalidOptionError(option, original, f"it is not a duration; {_DURATION_HELP}")
    return sum(
        float(amount) * _UNIT_SECONDS[unit.lower()]
        for amount, unit in _DURATION_PART.findall(text)
    )


def format_duration(seconds: float) -> str:
    """The shortest readable form of a duration: 90 -> '1m30s', 0.5 -> '0.5s'."""
    if seconds < 60 or seconds != int(seconds):
        return format(seconds, "f").rstrip("0").rstrip(".") + "s"
    whole = int(seconds)
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if whole >= size:
            parts.append(f"{whole // size}{unit}")
            whole %= size
    return "".join(parts)


def normalize_name(value: Any, option: str, *, max_length: int) -> str:
    """A Kubeflow-safe name: lowercase letters, digits and '-' ("Train Model" -> "train-model")."""
    if not isinstance(value, str):
        raise InvalidOptionError(option, value, "a name must be a string")
    normalized = _NAME_JUNK.sub("-", value.lower()).strip("-")
    if not normalized:
        raise InvalidOptionError(
            option,
            value,
            "Kubeflow names are made of lowercase letters, digits and '-', and this has none of "
            "the letters or digits",
        )
    if len(normalized) > max_length:
        raise InvalidOptionError(
            option,
            value,
            f"Kubeflow accepts names of at most {max_length} characters "
            f"(this one has {len(normalized)})",
            fix="choose a shorter name",
        )
    return normalized


def _number(value: Any, option: str, *, minimum: float, integer: bool) -> Any:
    kind = "a whole number" if integer else "a number"
    expected = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, expected):
        raise InvalidOptionError(option, value, f"{kind} is expected")
    try:
        finite = math.isfinite(value) and value < 10**9
    except OverflowError:
        finite = False
    if not finite:
        raise InvalidOptionError(option, value, f"{kind} below one billion is expected")
    if value < minimum:
        raise InvalidOptionError(option, value, f"{kind} of at least {minimum:g} is expected")
    return value


def _retry_factor(value: Any, option: str) -> int:
    """A whole number of at least 1. Kubeflow hands the factor to Argo Workflows, which reads
    ``retryStrategy.backoff.factor`` as an integer (argo-workflows@v4.0.8
    ``util/intstr/parametrizable.go``, ``Int``: ``strconv.Atoi``): from KFP 2.14 the factor
    travels as the text of a float, so 1.5 fails the step's first retry ("cannot be resolved
    to an int"), and KFP 2.5's compiler truncates it to 1 (``int32(GetBackoffFactor())`` in
    ``backend/src/v2/compiler/argocompiler/container.go@2.5.0``). A local run would wait as
    asked, so the same pipeline would behave differently; refused for both."""
    if isinstance(value, float) and math.isfinite(value) and value < 1:
        _number(value, option, minimum=1, integer=False)  # "at least 1"
    if isinstance(value, float) and math.isfinite(value) and value.is_integer() \
            and 1 <= value < 10**9:
        return int(value)  # 2.0 is 2
    if isinstance(value, float) and math.isfinite(value) and value >= 1:
        lower, upper = math.floor(value), math.ceil(value)
        raise InvalidOptionError(
            option, value,
            "Kubeflow's retries (Argo Workflows' backoff.factor) take a whole number: a factor "
            f"of {value:g} fails the first retry on Kubeflow Pipelines 2.14 and later, and is "
            f"cut to {lower} on earlier ones",
            fix=f"use {lower} or {upper} (each wait is the previous one times it), or widen "
            "retry_interval instead")
    return _number(value, option, minimum=1, integer=True)


def _mapping(value: Any, option: str) -> Mapping[Any, Any]:
    if not isinstance(value, Mapping):
        raise InvalidOptionError(option, value, "a dict is expected")
    for key in value:
        if not isinstance(key, str):
            raise InvalidOptionError(option, value, f"keys must be strings, not {key!r}")
    return value


def _qualified_name_problem(key: str) -> str | None:
    prefix, _, name = key.rpartition("/")
    if "/" in key and (not prefix or len(prefix) > 253 or not _DNS_SUBDOMAIN.match(prefix)):
        return f"the prefix {prefix!r} of {key!r} is not a DNS subdomain (like 'example.com')"
    if not _K8S_NAME.match(name):
        return (
            f"{key!r} is not a Kubernetes name: at most 63 letters, digits, '-', '_' or '.', "
            "starting and ending with a letter or digit"
        )
    return None


def validate_limits(value: Any, option: str = "limits") -> Mapping[str, str]:
    """Resource limits such as {"cpu": "2", "memory": "4Gi", "nvidia.com/gpu": 1}."""
    limits = {}
    for key, raw in _mapping(value, option).items():
        problem = _qualified_name_problem(key)
        if problem:
            raise InvalidOptionError(option, value, f"{problem}; use a resource name such as "
                                     "'cpu', 'memory' or 'nvidia.com/gpu'")
        if isinstance(raw, bool) or not isinstance(raw, (str, int, float)):
            raise InvalidOptionError(option, value, f"the limit for {key!r} must be a quantity "
                                     "such as '2', '500m' or '4Gi'")
        quantity = str(raw).strip()
        if not _QUANTITY.match(quantity):
            raise InvalidOptionError(option, value, f"{raw!r} (for {key!r}) is not a Kubernetes "
                                     "quantity; write it like '2', '500m', '1.5' or '4Gi'")
        if "gpu" in key.lower() and not quantity.isdigit():
            raise InvalidOptionError(option, value, f"accelerators are counted in whole units, so "
                                     f"{key!r} needs a whole number such as '1'")
        if key.lower() in ("gpu", "gpus"):
            raise InvalidOptionError(option, value, f"{key!r} is not a Kubernetes resource; name "
                                     "the accelerator's vendor", fix='use "nvidia.com/gpu" (or '
                                     '"amd.com/gpu")')
        # Kubeflow accepts a subset of Kubernetes' quantities for these two.
        if key == "cpu" and not _KFP_CPU.match(quantity):
            raise InvalidOptionError(option, value, f"Kubeflow takes CPU limits like '2', '0.5' or "
                                     f"'500m', not {quantity!r}")
        if key == "memory" and not _KFP_MEMORY.match(quantity):
            raise InvalidOptionError(option, value, "Kubeflow takes memory limits as a whole "
                                     f"number with an optional unit ('4Gi', '512M'), not "
                                     f"{quantity!r}")
        limits[key] = quantity
    accelerators = [key for key in limits if key not in ("cpu", "memory", "ephemeral-storage")]
    if len(accelerators) > 1:
        raise InvalidOptionError(option, value, "Kubeflow gives a step one kind of accelerator; "
                                 f"this asks for {', '.join(accelerators)}")
    return MappingProxyType(limits)


def validate_labels(value: Any, option: str = "labels") -> Mapping[str, str]:
    """Pod labels: Kubernetes-qualified keys and values of at most 63 name characters."""
    labels = {}
    for key, raw in _mapping(value, option).items():
        problem = _qualified_name_problem(key)
        if problem:
            raise InvalidOptionError(option, value, problem)
        if not isinstance(raw, str):
            raise InvalidOptionError(option, value, f"label values are strings; write "
                                     f"{key!r}: {str(raw)!r}")
        if raw and not _K8S_NAME.match(raw):
            raise InvalidOptionError(option, value, f"the value {raw!r} of {key!r} is not a "
                                     "Kubernetes label value: at most 63 letters, digits, '-', "
                                     "'_' or '.', starting and ending with a letter or digit")
        labels[key] = raw
    return MappingProxyType(labels)


def validate_annotations(value: Any, option: str = "annotations") -> Mapping[str, str]:
    """Pod annotations: Kubernetes-qualified keys, any string values."""
    annotations = {}
    for key, raw in _mapping(value, option).items():
        problem = _qualified_name_problem(key)
        if problem:
            raise InvalidOptionError(option, value, problem)
        if not isinstance(raw, str):
            raise InvalidOptionError(option, value, f"annotation values are strings; write "
                                     f"{key!r}: {str(raw)!r}")
        annotations[key] = raw
    return MappingProxyType(annotations)


_STEP_VALIDATORS = {
    "name": lambda v, o: normalize_name(v, o, max_length=STEP_NAME_MAX),
    "timeout": lambda v, o: parse_duration(v, o),
    "retry_count": lambda v, o: _number(v, o, minimum=0, integer=True),
    "retry_interval": lambda v, o: parse_duration(v, o, allow_zero=True),
    "retry_factor": lambda v, o: _retry_factor(v, o),
    "retry_max_interval": lambda v, o: parse_duration(v, o),
    "limits": validate_limits,
    "labels": validate_labels,
    "annotations": validate_annotations,
    "cache": lambda v, o: validate_cache(v, o),
}


def validate_cache(value: Any, option: str = "cache") -> bool:
    """``cache``: True or False (whether a step's result may be reused, see ``kale.cache``)."""
    if not isinstance(value, bool):
        raise InvalidOptionError(
            option, value, "True or False is expected",
            fix=f"write {option.rpartition('.')[2]}=True to reuse the step's outputs when its "
            "code, context and inputs are unchanged, or cache=False (the default) to always "
            "run it")
    return value


def validate_step_options(given: Mapping[str, Any], *, prefix: str = "") -> dict[str, Any]:
    """Check the options given to ``@step`` (or in ``steps_defaults``); None means not given."""
    checked = {}
    for option, value in given.items():
        if value is None:
            continue
        checked[option] = _STEP_VALIDATORS[option](value, prefix + option)
    interval, cap = checked.get("retry_interval"), checked.get("retry_max_interval")
    if interval is not None and cap is not None and cap < interval:
        raise InvalidOptionError(
            prefix + "retry_max_interval",
            given["retry_max_interval"],
            f"it caps the wait between retries, so it cannot be shorter than "
            f"retry_interval={given['retry_interval']!r}",
        )
    return checked


def validate_steps_defaults(value: Any) -> Mapping[str, Any]:
    """``steps_defaults``: any step option but ``name``, each validated like on ``@step``."""
    if value is None:
        return MappingProxyType({})
    defaults = _mapping(value, "steps_defaults")
    for key in defaults:
        if key == "name":
            raise InvalidOptionError(
                "steps_defaults", dict(defaults),
                "'name' cannot be a default: every step needs a name of its own",
                fix="give the name on the step: @step(name=...)",
            )
        if key not in DEFAULTABLE_STEP_OPTIONS:
            hint = suggest(key, DEFAULTABLE_STEP_OPTIONS)
            raise InvalidOptionError(
                "steps_defaults", dict(defaults),
                f"{key!r} is not a step option; {hint}"
                f"the options are: {', '.join(DEFAULTABLE_STEP_OPTIONS)}",
            )
    return MappingProxyType(validate_step_options(defaults, prefix="steps_defaults."))


@dataclass(frozen=True)
class StepOptions:
    """The options a step runs with: its own, then the pipeline's ``steps_defaults``, then these."""

    timeout: float | None = None
    retry_count: int = 0
    retry_interval: float = 0.0
    retry_factor: int = 1
    retry_max_interval: float | None = None
    limits: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    labels: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    annotations: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    #: whether the step's result may be reused from the cache (``kale.cache``; on Kubeflow,
    #: KFP's caching); None: not said, which is off unless the run turns caching on (``--cache``)
    cache: bool | None = None

    @classmethod
    def resolve(cls, own: Mapping[str, Any], defaults: Mapping[str, Any]) -> StepOptions:
        """Merge a step's own options over ``steps_defaults``.

        Scalars: the step's value wins. ``limits``, ``labels`` and ``annotations`` merge key by key
        (the step's value wins per key), as Kubernetes merges labels.
        """
        merged = {**defaults, **own}
        for option in ("limits", "labels", "annotations"):
            if option in own and option in defaults:
                merged[option] = MappingProxyType({**defaults[option], **own[option]})
        merged.pop("name", None)
        return cls(**merged)  # (what replace(cls(), **merged) makes, with one object, not two)

    def retry_delay(self, retry: int) -> float:
        """Seconds to wait before retry number ``retry`` (1 for the first retry)."""
        if retry < 1:
            raise ValueError("retries are numbered from 1")
        delay = self.retry_interval * self.retry_factor ** (retry - 1)
        if self.retry_max_interval is not None:
            delay = min(delay, self.retry_max_interval)
        return delay

    def describe(self) -> list[str]:
        """Short human phrases for the options that differ from the defaults."""
        phrases = []
        if self.timeout is not None:
            phrases.append(f"timeout {format_duration(self.timeout)}")
        if self.retry_count:
            retry = f"retries {self.retry_count}"
            if self.retry_interval:
                retry += f" every {format_duration(self.retry_interval)}"
                if self.retry_factor != 1:
                    retry += f" x{self.retry_factor:g}"
                if self.retry_max_interval is not None:
                    retry += f" (max {format_duration(self.retry_max_interval)})"
            phrases.append(retry)
        for option in ("limits", "labels", "annotations"):
            values = getattr(self, option)
            if values:
                pairs = ", ".join(f"{k}={v}" for k, v in values.items())
                phrases.append(f"{option} {pairs}")
        if self.cache:
            phrases.append("cached")
        return phrases


@dataclass(frozen=True)
class PipelineOptions:
    """The validated options of ``@pipeline``."""

    name: str
    display_name: str
    timeout: float | None = None
    experiment: str | None = None
    description: str | None = None
    autosnapshot: bool = False
    steps_defaults: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    #: how many iterations of each `for` loop run at once (Kubeflow's ParallelFor parallelism);
    #: None: as many as the cluster (or, locally, the run's parallelism) allows
    loop_parallelism: int | None = None


def validate_pipeline_options(function_name: str, given: Mapping[str, Any]) -> PipelineOptions:
    """Check the options given to ``@pipeline``; the name defaults to the function's name."""
    display_name = given.get("name") or function_name
    if given.get("name") is not None and not isinstance(given["name"], str):
        raise InvalidOptionError("name", given["name"], "a name must be a string")
    name = normalize_name(display_name, "name", max_length=PIPELINE_NAME_MAX)
    timeout = given.get("timeout")
    experiment = given.get("experiment")
    if experiment is not None and (not isinstance(experiment, str) or not experiment.strip()):
        raise InvalidOptionError("experiment", experiment, "the experiment's name must be a "
                                 "non-empty string")
    description = given.get("description")
    if description is not None and not isinstance(description, str):
        raise InvalidOptionError("description", description, "a description must be a string")
    autosnapshot = given.get("autosnapshot")
    if autosnapshot is not None and not isinstance(autosnapshot, bool):
        raise InvalidOptionError("autosnapshot", autosnapshot, "True or False is expected")
    return PipelineOptions(
        name=name,
        display_name=display_name,
        timeout=None if timeout is None else parse_duration(timeout, "timeout"),
        experiment=experiment.strip() if experiment else None,
        description=description,
        autosnapshot=bool(autosnapshot),
        steps_defaults=validate_steps_defaults(given.get("steps_defaults")),
        loop_parallelism=None if given.get("loop_parallelism") is None else
        _number(given["loop_parallelism"], "loop_parallelism", minimum=1, integer=True),
    )
