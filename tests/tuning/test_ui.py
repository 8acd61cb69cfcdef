"""``kale ui`` over a study: the study page (trials, the objective by trial, each parameter
against the objective), the runs page listing it, a trial's run linking back to it."""

from __future__ import annotations

import re
import urllib.error
import urllib.request

import pytest

from kale.sdk.tuning import Choice, Float
from kale.ui import serve_in_thread
from tests.tuning.test_local import QUADRATIC


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


@pytest.fixture
def studied(project, monkeypatch, tmp_path):
    monkeypatch.setenv("KALE_HOME", str(tmp_path / "home"))
    quadratic = project.load(QUADRATIC, prelude=False).quadratic
    study = quadratic.tune(parameters={"x": Float(0, 5, step=1), "y": Choice([2, 3])},
                           objective="loss", goal="minimize", algorithm="grid",
                           max_trials=12, max_failed_trials=10)
    server, url = serve_in_thread(tmp_path / "home")
    yield study, url
    server.shutdown()
    server.server_close()


def test_the_study_page_shows_trials_and_charts(studied):
    study, url = studied
    status, page = get(f"{url}study/{study.id}")
    assert status == 200
    # 6 x 2 grid points; x=5 fails the step (x > 4.5)
    assert page.count("<tr") == 1 + 12 and page.count("class='status failed'") == 2
    assert "x is too big for this model" in page
    assert f"best loss = <b>0.25</b> at trial {study.best_trial.number}" in page
    assert "★" in page and "<tr class=best>" in page
    for caption in ("loss by trial", "best loss so far", "x against loss", "y against loss"):
        assert f"<figcaption>{caption}</figcaption>" in page
    # a point per succeeded trial on each parameter's chart, the choices named on the axis
    charts = page.split("<figcaption>x against loss</figcaption>")[1]
    assert charts.split("</figure>")[0].count("<circle") == 10
    assert re.search(r"class=tick text-anchor=middle>3</text>", page)
    for trial in study.trials:
        assert f"/run/{trial.run_id}" in page


def test_runs_page_lists_studies_and_a_trial_links_back(studied):
    study, url = studied
    status, page = get(url)
    assert status == 200 and f"href='/study/{study.id}'" in page
    assert f"study {study.id[:8]}</a>" in page and "12 trials" in page
    status, page = get(f"{url}run/{study.trials[3].run_id}")
    assert status == 200 and f"trial 3 of <a href='/study/{study.id}'>" in page
    assert get(f"{url}study/nothing")[0] == 404
    assert get(f"{url}study/..%2F..%2Fetc")[0] == 404
