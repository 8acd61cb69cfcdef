"""Kubeflow's run macros in parameter values."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from kale.macros import expand, format_go_layout

MOMENT = datetime(2026, 11, 24, 9, 30, 5, 123456, tzinfo=timezone.utc)


@pytest.mark.parametrize(("layout", "text"), [
    ("20060102150405", "20261124093005"),
    ("2006-01-02", "2026-11-24"),
    ("Jan 2, 2006 3:04PM", "Nov 24, 2026 9:30AM"),
    ("2006-01-02T15:04:05Z07:00", "2026-11-24T09:30:05Z"),
    ("Mon _2 Jan 06 15:04:05.000 MST", "Tue 24 Nov 26 09:30:05.123 UTC"),
    ("1/2 3:4:5 pm", "11/24 9:30:5 am"),
])
def test_go_layouts(layout, text):
    assert format_go_layout(MOMENT, layout) == text


def test_zones_other_than_utc():
    moment = MOMENT.astimezone(timezone(timedelta(hours=-5)))
    assert format_go_layout(moment, "15:04 Z07:00 -0700") == "04:30 -05:00 -0500"


def test_expand():
    assert expand("run-[[RunUUID]]", "abc", MOMENT) == "run-abc"
    assert expand("[[CurrentTime]]", "abc", MOMENT) == "20261124093005"
    assert expand("[[ScheduledTime.2006]]/[[Index]]", "abc", MOMENT) == "2026/1"
    assert expand("[[Unknown]]", "abc", MOMENT) == "[[Unknown]]"
    assert expand(5, "abc", MOMENT) == 5
