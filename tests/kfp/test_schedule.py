"""Recurring runs: ``--schedule CRON`` (the standard five fields, handed to KFP as its six, seconds
first, as robfig/cron v1's parser wants them), ``--max-concurrency``, ``--start``/``--end``,
``--catchup``/``--no-catchup``; a dry run says what it would create."""

from __future__ import annotations

import json

import pytest

from kale.errors import KaleError
from kale.flags import FlagError, take_flags
from kale.kfp.schedule import translate_cron
from tests.kfp.fake_kfp import FakeKubeflow
from tests.kfp.test_submit import run_script

pytest.importorskip("kfp")


def test_five_standard_fields_become_kfps_six():
    assert translate_cron("0 9 * * 1") == "0 0 9 * * 1"  # not: every hour at :09 in January
    assert translate_cron("*/15  *  * * mon-fri") == "0 */15 * * * mon-fri"
    assert translate_cron("@daily") == "@daily"
    with pytest.raises(KaleError, match="has 6 fields") as caught:
        translate_cron("0 0 9 * * 1")
    assert "Kale adds them" in caught.value.message
    with pytest.raises(KaleError, match="outside 0-6") as caught:
        translate_cron("0 9 * * 7")
    assert caught.value.fix.startswith("write 0 for Sunday")


def test_the_schedule_flags_are_checked_on_the_command_line():
    flags = take_flags(["s.py", "--kfp", "--schedule", "30 2 1 * *", "--max-concurrency", "3",
                        "--start", "2026-01-01", "--end", "2026-06-30T12:00:00+02:00",
                        "--no-catchup"])
    recurring = flags.recurring
    assert (recurring.cron, recurring.start, recurring.end, recurring.max_concurrency,
            recurring.catchup) == ("0 30 2 1 * *", "2026-01-01T00:00:00Z",
                                   "2026-06-30T10:00:00Z", 3, False)
    for argv, fragment in [
        (["--max-concurrency", "2"], "--max-concurrency is an option of a recurring run, and "
                                     "there is no --schedule"),
        (["--schedule", "0 9 * * 1", "--max-concurrency", "11"], "runs 1 to 10 runs"),
        (["--schedule", "0 9 * * 1", "--start", "2026-01-01T09:00"], "has no time zone"),
        (["--schedule", "0 9 * * 1", "--start", "2026-02-01", "--end", "2026-01-01"],
         "is not after --start"),
        (["--schedule", "0 9 * * 1", "--wait"], "--wait follows one run"),
        (["--schedule", "61 * * * *"], "the minute field '61' is outside 0-59"),
        (["--schedule", "0 9 * * 1", "--catchup", "--no-catchup"], "are both given"),
    ]:
        with pytest.raises(FlagError, match=fragment):
            take_flags(["s.py", "--kfp", *argv])
    # Without --kfp they are the script's own.
    argv = ["s.py", "--start", "x"]
    take_flags(argv)
    assert argv == ["s.py", "--start", "x"]


def test_schedule_creates_a_recurring_run_of_the_uploaded_version(tmp_path):
    with FakeKubeflow() as kubeflow:
        result = run_script(tmp_path, "--kfp", "--kfp-host", kubeflow.host, "--schedule",
                            "0 9 * * 1", "--max-concurrency", "2", "--start", "2026-01-01",
                            "--no-catchup")
        assert result.returncode == 0, result.stderr
        assert ("POST", "/runs") not in kubeflow.calls()
        request = json.loads(next(r["body"] for r in kubeflow.requests
                                  if r["path"].endswith("/recurringruns")))
    assert request["trigger"]["cron_schedule"] == {"cron": "0 0 9 * * 1",
                                                   "start_time": "2026-01-01T00:00:00Z"}
    assert request["max_concurrency"] == 2
    assert request["no_catchup"] is True and request["mode"] == "ENABLE"
    assert request["pipeline_version_reference"] == {"pipeline_id": "pipeline-1",
                                                     "pipeline_version_id": "version-1-1"}
    assert request["runtime_config"]["parameters"] == {"n": 5}
    assert "kale: created recurring run recurring-1 of pipeline sums in experiment " \
        "arithmetic" in result.stderr
    assert "cron '0 0 9 * * 1' (KFP's six fields, seconds first, for '0 9 * * 1')" \
        in result.stderr
    assert f"{kubeflow.host}/#/recurringrun/details/recurring-1" in result.stderr


def test_a_dry_run_with_schedule_says_what_it_would_create(tmp_path):
    result = run_script(tmp_path, "--kfp", "--dry-run", "-o", "p.yaml", "--schedule",
                        "@daily", "--end", "2026-12-31")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "p.yaml").is_file()
    assert "kale: --schedule: submitting would create a recurring run of pipeline sums in " \
        "experiment arithmetic, of the version uploaded: cron '@daily'" in result.stderr
    assert "until 2026-12-31T00:00:00Z, at most 1 at once, missed runs caught up; " \
        "parameters {'n': 5}" in result.stderr
