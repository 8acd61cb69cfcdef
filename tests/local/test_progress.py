"""What a run shows: plain lines for logs and pipes, a live table on a terminal."""

from __future__ import annotations

import io
from pathlib import Path

from rich.console import Console

from kale.local.progress import LiveProgress, PlainProgress, make_progress, summary_table
from kale.local.scheduler import AttemptRecord, Run, StepRun


def a_run() -> Run:
    done = StepRun("load", "succeeded", [AttemptRecord(1, "succeeded", 0.0, 0.25, 0.25)])
    failed = StepRun("train-model", "failed", [AttemptRecord(1, "failed", 1.0, 3.5, 2.5),
                                               AttemptRecord(2, "failed", 4.0, 5.0, 1.0)])
    skipped = StepRun("report", "skipped")
    return Run(id="0123456789abcdef", pipeline="demo", experiment=None, status="failed",
               started=0.0, ended=5.0, parameters={},
               steps={s.name: s for s in (done, failed, skipped)}, folder=Path("/runs/x"))


def test_summary_table():
    assert summary_table(a_run()).splitlines() == [
        "step         status     attempts  duration",
        "-----------  ---------  --------  --------",
        "load         succeeded  1            250ms",
        "train-model  failed     2            3.50s",
        "report       skipped    0",
    ]


def test_plain_progress_lines():
    stream = io.StringIO()
    progress = PlainProgress(stream)
    run = a_run()
    progress.start(run, parallelism=2)
    progress.step_changed("load", "running")
    progress.output("load", "hello")
    progress.step_changed("load", "succeeded", "in 0.25s")
    progress.finish(run)
    lines = stream.getvalue().splitlines()
    assert lines[0] == ("kale: running pipeline demo locally (run 01234567, 3 steps, up to 2 "
                        "at once)")
    assert lines[1:4] == ["▸ load         running", "  load        │ hello",
                          "✓ load         succeeded  in 0.25s"]
    assert lines[-1] == "kale: run 01234567 failed in 5.00s; record: /runs/x"


def test_live_progress_draws_a_table_and_prints_output_above_it():
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=True, width=100, color_system=None)
    progress = LiveProgress(console)
    run = a_run()
    progress.start(run, parallelism=2)
    progress.step_changed("load", "running")
    progress.output("load", "hello from load")
    progress.step_changed("load", "succeeded", "in 0.25s")
    progress.finish(run)
    text = buffer.getvalue()
    assert "  load        │ hello from load" in text
    assert "✓ load         succeeded  in 0.25s" in text
    assert "train-model" in text and "waiting" in text  # the live table listed every step
    assert "kale: run 01234567 failed" in text


def test_the_choice_of_display(monkeypatch):
    monkeypatch.setenv("KALE_PROGRESS", "plain")
    assert type(make_progress()) is PlainProgress
    monkeypatch.setenv("KALE_PROGRESS", "live")
    assert type(make_progress()) is LiveProgress
    monkeypatch.delenv("KALE_PROGRESS")
    assert type(make_progress()) is PlainProgress  # pytest's stdout is not a terminal
