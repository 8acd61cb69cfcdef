"""What a run shows: plain lines for logs and pipes, a live table on a terminal."""

from __future__ import annotations

import io
from pathlib import Path

from rich.console import Console

from kale.local.progress import (
    LiveProgress,
    PlainProgress,
    final_state,
    make_progress,
    summary_table,
)
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


def tqdm_like(ticks: int = 20) -> list[str]:
    """What tqdm writes for a bar of ``ticks`` steps: each state after a carriage return, the
    last one twice (once more when the bar closes), then a newline."""
    states = [f"\r{100 * i // ticks:3d}%|{'#' * (10 * i // ticks):<10}| {i}/{ticks}"
              for i in range(ticks + 1)]
    return [*states, states[-1], "\n"]


def test_what_a_terminal_shows_of_a_line_redrawn_with_carriage_returns():
    assert final_state("plain") == "plain"
    assert final_state("".join(tqdm_like())[:-1]) == "100%|##########| 20/20"
    assert final_state("loading...\rdone") == "doneing..."  # only the start is overwritten
    assert final_state("50%\r") == "50%"


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def output(self, step: str, line: str) -> None:
        self.calls.append(("output", line))

    def partial(self, step: str, text: str) -> None:
        self.calls.append(("partial", text))


def test_the_tail_shows_a_redrawn_line_live_and_prints_it_once_when_it_ends(tmp_path):
    from types import SimpleNamespace

    from kale.local.scheduler import Scheduler

    log_path = tmp_path / "attempt-1.log"
    log_path.write_bytes(b"")
    progress = Recorder()
    scheduler = SimpleNamespace(progress=progress)
    with open(log_path, "rb") as log:
        attempt = SimpleNamespace(task=SimpleNamespace(key="s"), log=log, pending_text=b"")
        parts = tqdm_like(4)

        def write_and_tail(text: bytes, final: bool = False) -> None:
            with open(log_path, "ab") as handle:
                handle.write(text)
            Scheduler.tail(scheduler, attempt, final)

        write_and_tail(b"start\n" + "".join(parts[:3]).encode())
        write_and_tail("".join(parts[3:-1]).encode() + b"\r")
        write_and_tail(b"\nnext\r\n")  # "\r\n" cut in two by the reads is one newline
        write_and_tail(b"\rgone\rlast", final=True)
    assert progress.calls == [
        ("output", "start"), ("partial", " 50%|#####     | 2/4"),
        ("partial", "100%|##########| 4/4"), ("output", "100%|##########| 4/4"),
        ("output", "next"), ("output", "last"),
    ]
    assert log_path.read_bytes().count(b"\r") == 10  # the log itself keeps every redraw


def test_plain_progress_prints_a_redrawn_line_only_when_it_ends():
    stream = io.StringIO()
    progress = PlainProgress(stream)
    progress.start(a_run(), parallelism=2)
    progress.partial("load", " 50%|#####     | 2/4")
    assert stream.getvalue().count("\n") == 1  # only the header


def test_live_progress_redraws_a_bar_in_place_and_shows_each_finished_step_once():
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=True, width=100, color_system=None)
    progress = LiveProgress(console)
    run = a_run()
    progress.start(run, parallelism=2)
    progress.step_changed("load", "running")
    progress.partial("load", " 50%|#####     | 2/4")
    progress.tick()
    progress.live.refresh()
    assert " 50%|#####     | 2/4" in buffer.getvalue()  # the latest state, in the table
    progress.output("load", "100%|##########| 4/4")
    progress.step_changed("load", "succeeded", "in 0.25s")
    progress.tick()
    progress.live.refresh()
    progress.finish(run)
    text = buffer.getvalue()
    assert text.count("100%|##########| 4/4") == 1
    assert " 50%" not in text.split("100%|##########| 4/4")[1]  # no stale table below it
    assert text.count("✓") == 1 and "✓ load         succeeded  in 0.25s" in text


def test_a_bar_drawn_for_long_without_a_newline_is_kept_as_it_shows(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from kale.local import scheduler as module

    monkeypatch.setattr(module, "_TAIL_BYTES", 100)
    log_path = tmp_path / "attempt-1.log"
    log_path.write_bytes("".join(tqdm_like(50)[:-1]).encode())
    progress = Recorder()
    with open(log_path, "rb") as log:
        attempt = SimpleNamespace(task=SimpleNamespace(key="s"), log=log, pending_text=b"")
        for _ in range(20):
            module.Scheduler.tail(SimpleNamespace(progress=progress), attempt)
            assert len(attempt.pending_text) <= 100  # what it shows, not every redraw
        module.Scheduler.tail(SimpleNamespace(progress=progress), attempt, final=True)
    assert [call for call in progress.calls if call[0] == "output"] == [
        ("output", "100%|##########| 50/50")]


def test_metrics_are_printed_as_they_arrive_plain_and_live():
    stream = io.StringIO()
    progress = PlainProgress(stream)
    progress.start(a_run(), parallelism=2)
    progress.metric("train-model", "loss", 0.123456789)
    progress.metric("train-model", "epochs", 3)
    assert stream.getvalue().splitlines()[1:] == ["  train-model ◆ loss = 0.123457",
                                                  "  train-model ◆ epochs = 3"]
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=True, width=100, color_system=None)
    live = LiveProgress(console)
    run = a_run()
    live.start(run, parallelism=2)
    live.metric("load", "accuracy", 0.5)
    live.tick()
    live.finish(run)
    assert "  load        ◆ accuracy = 0.5" in buffer.getvalue()
