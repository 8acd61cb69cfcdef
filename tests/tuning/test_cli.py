"""``kale runs`` and ``kale show`` over a study: each trial is a run, tagged with its study."""

from __future__ import annotations

from click.testing import CliRunner

from kale.cli import main
from kale.sdk.tuning import Float
from tests.tuning.test_local import QUADRATIC


def test_runs_and_show_know_the_study(project, monkeypatch, tmp_path):
    home = tmp_path / "home"
    monkeypatch.setenv("KALE_HOME", str(home))
    quadratic = project.load(QUADRATIC, prelude=False).quadratic
    study = quadratic.tune(parameters={"x": Float(1, 2, step=0.5)}, objective="loss",
                           goal="minimize", algorithm="grid")
    quadratic.run(x=3.0)  # a run of no study
    cli = CliRunner()
    listed = cli.invoke(main, ["runs", "--home", str(home)])
    assert listed.exit_code == 0, listed.output
    assert "trial" in listed.output.splitlines()[0]
    assert f"{study.id[:8]}#2" in listed.output and "\n" in listed.output
    trials = cli.invoke(main, ["runs", "--home", str(home), "--study", study.id[:6]])
    rows = trials.output.splitlines()[2:]
    assert [row.split()[1] for row in rows] == [f"{study.id[:8]}#{n}" for n in range(3)]
    shown = cli.invoke(main, ["show", "--home", str(home), study.id[:8]])
    assert shown.exit_code == 0, shown.output
    assert f"study {study.id}" in shown.output
    assert "minimize loss with grid, 3 trials" in shown.output
    assert "x: float from 1.0 to 2.0, step 0.5" in shown.output
    assert "best: loss=9 at trial 1: x=1.5" in shown.output and "1 *" in shown.output
    run = cli.invoke(main, ["show", "--home", str(home), study.trials[1].run_id[:8]])
    assert f"trial 1 of study {study.id}" in run.output
    missing = cli.invoke(main, ["runs", "--home", str(home), "--study", "zzz"])
    assert missing.exit_code != 0 and "no study 'zzz'" in missing.output
