"""Ctrl-C stops a local study: the running trials' runs stop as Ctrl-C stops a run, the
finished trials are kept, and the study is returned."""

from __future__ import annotations

import json
import signal
import time

from tests.local.conftest import ScriptRunner

SLOW = '''
from kale.sdk.logging import log_metric
from kale.sdk.tuning import Float


@step
def slow(x: float):
    import time
    if x > 0.5:
        time.sleep(60)  # the trials still running when Ctrl-C comes
    log_metric("score", x)


@pipeline(name="slow")
def slow_pipeline(x: float = 0.0):
    slow(x)


if __name__ == "__main__":
    study = slow_pipeline.tune(parameters={"x": Float(0, 1, step=0.25)}, objective="score",
                               algorithm="grid", parallel_trials=2)
    print("STUDY", study.status, [t.status for t in study.trials], study.best_value, flush=True)
'''


def test_ctrl_c_stops_the_study_and_keeps_the_finished_trials(tmp_path):
    runner = ScriptRunner(tmp_path)
    process = runner.start(SLOW)
    lines = []
    deadline = time.monotonic() + 60
    # x = 0, 0.25 finish, 0.5 finishes, then 0.75 and 1.0 sleep: interrupt once three are done
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        lines.append(line)
        if sum("✓ trial" in seen for seen in lines) == 3:
            break
    time.sleep(1)  # the two slow trials have started
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    text = "".join(lines) + out
    assert process.returncode == 0, err
    assert "STUDY interrupted ['succeeded', 'succeeded', 'succeeded', 'interrupted', " \
        "'interrupted'] 0.5" in text
    assert "■ trial" in text and "interrupted (Ctrl-C): the finished trials are kept" in text
    runs = [json.loads(path.read_text()) for path in (runner.home / "runs").glob("*/run.json")]
    assert sorted(run["status"] for run in runs) == ["interrupted"] * 2 + ["succeeded"] * 3
    study = json.loads(next((runner.home / "studies").glob("*/study.json")).read_text())
    assert study["status"] == "interrupted" and study["best"]["value"] == 0.5
