"""Option validation, durations, names, retry backoff and steps_defaults."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kale.errors import InvalidOptionError
from kale.options import (
    StepOptions,
    format_duration,
    normalize_name,
    parse_duration,
    validate_annotations,
    validate_labels,
    validate_limits,
    validate_pipeline_options,
    validate_step_options,
    validate_steps_defaults,
)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (30, 30.0),
        (2.5, 2.5),
        ("30", 30.0),
        ("45s", 45.0),
        ("2m", 120.0),
        ("1h", 3600.0),
        ("1h30m", 5400.0),
        ("1h 30m 15s", 5415.0),
        ("1.5h", 5400.0),
        ("500ms", 0.5),
        ("1d", 86400.0),
        (" 2M ", 120.0),
    ],
)
def test_durations_accept_seconds_and_unit_strings(value, seconds):
    assert parse_duration(value, "timeout") == seconds


@pytest.mark.parametrize("value", ["2 minutes", "m", "1x", "", "h1", "1h-30m", "abc", None, [],
                                   True, "nan", "inf", float("inf")])
def test_bad_durations_name_the_option_the_value_and_the_format(value):
    with pytest.raises(InvalidOptionError) as caught:
        parse_duration(value, "retry_interval")
    message = str(caught.value)
    assert f"retry_interval={value!r}" in message
    assert "'2m'" in message or "duration" in message


@pytest.mark.parametrize("value", [0, "0", "0s", -1, "-5"])
def test_timeouts_must_be_positive(value):
    with pytest.raises(InvalidOptionError, match="more than zero"):
        parse_duration(value, "timeout")


def test_zero_is_allowed_where_it_means_immediately():
    assert parse_duration(0, "retry_interval", allow_zero=True) == 0


@given(st.integers(0, 99), st.integers(0, 59), st.integers(0, 59))
def test_duration_strings_add_their_parts(hours, minutes, seconds):
    text = f"{hours}h{minutes}m{seconds}s"
    assert parse_duration(text, "t", allow_zero=True) == hours * 3600 + minutes * 60 + seconds


@given(st.one_of(st.text(max_size=12), st.integers(), st.floats(), st.none(), st.booleans()))
def test_any_duration_input_parses_or_raises_an_option_error(value):
    try:
        seconds = parse_duration(value, "timeout", allow_zero=True)
    except InvalidOptionError as error:
        assert error.option == "timeout"
    else:
        assert seconds >= 0


@given(st.floats(min_value=0.001, max_value=10**7))
def test_formatted_durations_parse_back(seconds):
    seconds = round(seconds, 3)
    assert parse_duration(format_duration(seconds), "t") == pytest.approx(seconds)


def test_format_duration_is_short():
    assert format_duration(90) == "1m30s"
    assert format_duration(3600) == "1h"
    assert format_duration(0.5) == "0.5s"
    assert format_duration(45) == "45s"


@pytest.mark.parametrize(
    ("given", "expected"),
    [("train", "train"), ("Train Model", "train-model"), ("process_data", "process-data"),
     ("--x--", "x"), ("ÄBC v2", "bc-v2"), ("123", "123")],
)
def test_names_are_normalised_for_kubeflow(given, expected):
    assert normalize_name(given, "name", max_length=63) == expected


@pytest.mark.parametrize("given", ["", "!!!", "___", 12, None])
def test_names_without_letters_or_digits_are_explained(given):
    with pytest.raises(InvalidOptionError) as caught:
        normalize_name(given, "name", max_length=63)
    assert "name=" in str(caught.value)


def test_too_long_names_are_explained():
    with pytest.raises(InvalidOptionError, match="at most 63 characters"):
        normalize_name("x" * 64, "name", max_length=63)


@given(st.text(max_size=80))
def test_normalised_names_are_always_kubeflow_safe(text):
    try:
        name = normalize_name(text, "name", max_length=63)
    except InvalidOptionError:
        return
    assert name and len(name) <= 63
    assert all(c.isascii() and (c.isdigit() or c.islower() or c == "-") for c in name)
    assert not name.startswith("-") and not name.endswith("-")


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ({"retry_count": -1}, "at least 0"),
        ({"retry_count": 1.5}, "whole number"),
        ({"retry_count": True}, "whole number"),
        ({"retry_factor": 0.5}, "at least 1"),
        ({"retry_factor": "2"}, "a whole number is expected"),
        ({"timeout": 0}, "more than zero"),
        ({"timeout": "soon"}, "not a duration"),
        ({"retry_max_interval": "1m", "retry_interval": "2m"}, "cannot be shorter"),
        ({"name": "!!"}, "letters or digits"),
    ],
)
def test_step_options_are_validated(options, fragment):
    with pytest.raises(InvalidOptionError, match=fragment):
        validate_step_options(options)


def test_step_options_skip_none_and_convert_durations():
    checked = validate_step_options({"timeout": "2m", "retry_count": None, "name": "My Step"})
    assert checked == {"timeout": 120.0, "name": "my-step"}


def test_limits_accept_kubernetes_quantities_and_accelerators():
    limits = validate_limits({"cpu": 2, "memory": "4Gi", "nvidia.com/gpu": "1", "ephemeral-"
                              "storage": "10G"})
    assert dict(limits) == {"cpu": "2", "memory": "4Gi", "nvidia.com/gpu": "1",
                            "ephemeral-storage": "10G"}


@pytest.mark.parametrize(
    ("limits", "fragment"),
    [
        ({"memory": "4 GB"}, "not a Kubernetes quantity"),
        ({"memory": "-1Gi"}, "not a Kubernetes quantity"),
        ({"nvidia.com/gpu": "0.5"}, "whole number"),
        ({"cpu": True}, "must be a quantity"),
        ({"Bad Key": "1"}, "not a Kubernetes name"),
        ({"not_a_domain!/gpu": "1"}, "not a DNS subdomain"),
        ("4Gi", "a dict is expected"),
        ({1: "2"}, "keys must be strings"),
    ],
)
def test_bad_limits_are_explained(limits, fragment):
    with pytest.raises(InvalidOptionError, match=fragment):
        validate_limits(limits)


def test_labels_and_annotations():
    assert dict(validate_labels({"team": "ml", "example.com/tier": ""})) == {
        "team": "ml", "example.com/tier": ""}
    assert dict(validate_annotations({"note": "any text at all: ok!"})) == {
        "note": "any text at all: ok!"}
    with pytest.raises(InvalidOptionError, match="label values are strings"):
        validate_labels({"version": 2})
    with pytest.raises(InvalidOptionError, match="not a Kubernetes label value"):
        validate_labels({"team": "has spaces"})
    with pytest.raises(InvalidOptionError, match="annotation values are strings"):
        validate_annotations({"note": 1})
    with pytest.raises(InvalidOptionError, match="not a Kubernetes name"):
        validate_annotations({"-bad": "x"})


def test_steps_defaults_reject_unknown_keys_with_a_suggestion():
    with pytest.raises(InvalidOptionError) as caught:
        validate_steps_defaults({"retry_cout": 3})
    assert "did you mean 'retry_count'" in str(caught.value)


def test_steps_defaults_reject_name():
    with pytest.raises(InvalidOptionError, match="every step needs a name of its own"):
        validate_steps_defaults({"name": "x"})


def test_steps_defaults_values_are_validated_with_their_path():
    with pytest.raises(InvalidOptionError) as caught:
        validate_steps_defaults({"timeout": -3})
    assert caught.value.option == "steps_defaults.timeout"


def test_step_options_win_over_defaults_and_dicts_merge_by_key():
    defaults = validate_steps_defaults({"timeout": 600, "retry_count": 3,
                                        "labels": {"team": "a", "env": "dev"}})
    own = validate_step_options({"timeout": "1m", "labels": {"team": "b"}})
    options = StepOptions.resolve(own, defaults)
    assert options.timeout == 60
    assert options.retry_count == 3
    assert dict(options.labels) == {"team": "b", "env": "dev"}


def test_retry_delay_grows_and_is_capped():
    options = StepOptions(retry_count=5, retry_interval=60, retry_factor=2,
                          retry_max_interval=200)
    assert [options.retry_delay(n) for n in range(1, 5)] == [60, 120, 200, 200]
    assert StepOptions(retry_count=2).retry_delay(1) == 0
    with pytest.raises(ValueError):
        options.retry_delay(0)


def test_pipeline_options_defaults_and_normalisation():
    options = validate_pipeline_options("ml_experiment", {})
    assert options.name == "ml-experiment"
    assert options.display_name == "ml_experiment"
    named = validate_pipeline_options("f", {"name": "Model Training", "timeout": "1h",
                                            "experiment": " exp "})
    assert (named.name, named.timeout, named.experiment) == ("model-training", 3600.0, "exp")


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ({"experiment": ""}, "non-empty"),
        ({"experiment": 3}, "non-empty"),
        ({"description": 3}, "must be a string"),
        ({"autosnapshot": "yes"}, "True or False"),
        ({"timeout": -1}, "more than zero"),
        ({"name": 5}, "must be a string"),
        ({"steps_defaults": [1]}, "a dict is expected"),
        ({"loop_parallelism": 0}, "a whole number of at least 1"),
        ({"loop_parallelism": -2}, "a whole number of at least 1"),
        ({"loop_parallelism": 2.5}, "a whole number is expected"),
        ({"loop_parallelism": True}, "a whole number is expected"),
        ({"loop_parallelism": "4"}, "a whole number is expected"),
    ],
)
def test_pipeline_options_are_validated(options, fragment):
    with pytest.raises(InvalidOptionError, match=fragment):
        validate_pipeline_options("f", options)


def test_a_retry_factor_that_is_not_whole_is_refused_with_the_kubeflow_reason():
    # Argo reads backoff.factor as an int (argo-workflows util/intstr/parametrizable.go).
    with pytest.raises(InvalidOptionError) as caught:
        validate_step_options({"retry_factor": 1.5})
    error = caught.value
    assert error.option == "retry_factor"
    assert "fails the first retry on Kubeflow Pipelines 2.14 and later" in error.message
    assert "cut to 1 on earlier ones" in error.message
    assert error.fix.startswith("use 1 or 2")
    assert validate_step_options({"retry_factor": 3.0}) == {"retry_factor": 3}
    assert type(validate_step_options({"retry_factor": 3.0})["retry_factor"]) is int


def test_describe_lists_what_differs_from_the_defaults():
    assert StepOptions().describe() == []
    options = StepOptions(timeout=600, retry_count=2, retry_interval=120, retry_factor=2,
                          retry_max_interval=600)
    assert options.describe() == ["timeout 10m", "retries 2 every 2m x2 (max 10m)"]


@pytest.mark.parametrize("option", ["retry_count", "timeout", "retry_factor"])
def test_huge_numbers_are_explained_not_crashed_on(option):
    with pytest.raises(InvalidOptionError):
        validate_step_options({option: 10**400})


@pytest.mark.parametrize(("limits", "fragment"), [
    ({"memory": "1.5Gi"}, "Kubeflow takes memory limits as a whole number"),
    ({"memory": "1e9"}, "Kubeflow takes memory limits"),
    ({"cpu": "100u"}, "Kubeflow takes CPU limits like"),
    ({"gpu": 1}, "is not a Kubernetes resource"),
    ({"nvidia.com/gpu": 1, "amd.com/gpu": 2}, "one kind of accelerator"),
])
def test_limits_kubeflow_would_refuse(limits, fragment):
    with pytest.raises(InvalidOptionError, match=fragment):
        validate_limits(limits)


def test_cache_option():
    assert validate_step_options({"cache": True}) == {"cache": True}
    assert StepOptions.resolve({}, validate_steps_defaults({"cache": True})).cache is True
    assert StepOptions.resolve({"cache": False}, {"cache": True}).cache is False
    assert StepOptions().cache is None
    assert "cached" in StepOptions(cache=True).describe()
    for bad in ("yes", 1, None.__class__):
        with pytest.raises(InvalidOptionError) as raised:
            validate_step_options({"cache": bad})
        assert "True or False is expected" in str(raised.value)
        assert raised.value.fix.startswith("write cache=True")
    with pytest.raises(InvalidOptionError, match=r"steps_defaults\.cache=1"):
        validate_steps_defaults({"cache": 1})
