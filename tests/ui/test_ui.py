"""``kale ui``: its pages over real runs (HTTP), and the same in a real browser (Debian's
chromium driven by Selenium), with a screenshot that shows the run and its metric."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from kale.ui import serve_in_thread
from tests.local.conftest import ScriptRunner

SCRIPT = '''
from kale.sdk import has_metrics
from kale.sdk.logging import log_metric, log_html, log_confusion_matrix


@has_metrics
@step
def train(rate: float):
    for epoch in range(3):
        log_metric("loss", 1.0 / (epoch + 1) + rate)
    log_metric("accuracy", 0.9 - rate)
    log_html("report", "<h1 id=inside>report %s</h1><script>parent.document.title='x'</script>"
             % rate)
    log_confusion_matrix("quality", ["cat", "dog"], [[5, 1], [2, 7]])
    return {"rate": rate}


@step
def publish(summary):
    print("published", summary)


@pipeline(name="tune")
def tune(rate: float = 0.1):
    summary = train(rate)
    publish(summary)


if __name__ == "__main__":
    import sys
    tune(rate=float(sys.argv[1]))
'''


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> ScriptRunner:
    runner = ScriptRunner(tmp_path_factory.mktemp("ui"))
    path = runner.write(SCRIPT)
    for rate in ("0.1", "0.25"):
        done = subprocess.run([sys.executable, str(path), rate], capture_output=True, text=True,
                              cwd=runner.root, env=runner.env())
        assert done.returncode == 0, done.stderr
    return runner


@pytest.fixture(scope="module")
def ui(runs):
    server, url = serve_in_thread(runs.home)
    yield url
    server.shutdown()
    server.server_close()


def get(url: str) -> tuple[int, dict[str, str], str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, dict(response.headers), response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read().decode()


def ids(runs: ScriptRunner) -> list[str]:
    return [run["id"] for run in sorted(runs.records(), key=lambda run: run["started"])]


def test_the_runs_page_lists_runs_with_parameters_and_metrics(ui, runs):
    status, _, page = get(ui)
    assert status == 200
    for run_id in ids(runs):
        assert f"/run/{run_id}" in page
    assert "class=param>rate</th>" in page and "class=metric>accuracy</th>" in page
    assert ">0.8</td>" in page and ">0.65</td>" in page
    assert "http" not in page.replace(ui, "").split("<main>")[0]  # nothing from elsewhere


def test_the_run_page_shows_the_dag_steps_metrics_and_artifacts(ui, runs):
    first = ids(runs)[0]
    status, _, page = get(f"{ui}run/{first}")
    assert status == 200
    assert "<svg class=dag" in page and "href='#step-train'" in page and "<path class=edge" in page
    assert "accuracy" in page and ">0.8<" in page
    assert f"<iframe class=artifact sandbox src='/artifact/{first}/train/1/report'" in page
    assert "confusion matrix" in page and "published {&#x27;rate&#x27;: 0.1}" in page
    assert "= <code>{&#x27;rate&#x27;: 0.1}</code>" in page  # a small output's value


def test_a_resumed_run_links_the_run_it_continues(tmp_path):
    runner = ScriptRunner(tmp_path)
    path = runner.write(SCRIPT)
    for extra in ([], ["--resume", "--from", "publish"]):
        done = subprocess.run([sys.executable, str(path), "0.1", *extra], capture_output=True,
                              text=True, cwd=runner.root, env=runner.env())
        assert done.returncode == 0, done.stderr
    first, resumed = ids(runner)
    server, url = serve_in_thread(runner.home)
    try:
        status, _, page = get(f"{url}run/{resumed}")
    finally:
        server.shutdown()
        server.server_close()
    assert status == 200
    assert f"resumed run <a href='/run/{first}'>{first[:8]}</a>, from step publish on" in page
    assert f"reused: outputs of run <a href='/run/{first}'>" in page
    assert "accuracy" in page and ">0.8<" in page  # the reused step's metrics stay


def test_artifacts_are_served_sandboxed_and_only_from_the_run(ui, runs):
    first = ids(runs)[0]
    status, headers, body = get(f"{ui}artifact/{first}/train/1/report")
    assert status == 200 and body.startswith("<h1 id=inside>report 0.1</h1>")
    assert headers["Content-Security-Policy"].startswith("sandbox")
    for path in (f"artifact/{first}/train/1/nothing", f"artifact/{first}/train/9/report",
                 "artifact/..%2F..%2Fetc/train/1/report", "run/..%2F..", "static/../x"):
        assert get(ui + path)[0] == 404


def test_compare_and_charts(ui, runs):
    first, second = ids(runs)
    status, _, page = get(f"{ui}compare?run={first}&run={second}")
    assert status == 200
    assert "<tr class='differs'><th>parameter rate</th><td>0.1</td><td>0.25</td>" in page
    assert "<tr class=''><th>pipeline</th>" in page
    status, _, page = get(f"{ui}charts?pipeline=tune")
    assert status == 200 and "<figcaption>accuracy</figcaption>" in page
    assert page.count("<circle") >= 4  # two runs, two metrics at least


def test_a_figure_is_shown_inline_and_a_roc_curve_drawn(tmp_path):
    pytest.importorskip("matplotlib")
    runner = ScriptRunner(tmp_path)
    done = runner.run('''
from kale.sdk.logging import log_figure, log_roc_curve

@step
def plot():
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib import pyplot
    figure, axes = pyplot.subplots()
    axes.plot([0, 1], [1, 0])
    log_figure("curve", figure)
    log_roc_curve("quality", [0.0, 0.5, 1.0], [0.0, 0.8, 1.0], [1.5, 0.5, 0.1])

@pipeline
def plots():
    plot()

plots()
''')
    assert done.returncode == 0, done.stderr
    (run_id,) = [run["id"] for run in runner.records()]
    server, url = serve_in_thread(runner.home)
    try:
        status, _, page = get(f"{url}run/{run_id}")
        figure = f"/artifact/{run_id}/plot/1/curve"
        with urllib.request.urlopen(url + figure.lstrip("/"), timeout=10) as response:
            kind, data = response.headers["Content-Type"], response.read()
    finally:
        server.shutdown()
        server.server_close()
    assert status == 200
    assert f"<img class=figure src='{figure}' alt='curve'>" in page  # inline, not a link
    assert kind == "image/png" and data[:4] == b"\x89PNG"
    assert "ROC curve" in page and "<svg" in page.split("quality", 1)[1]


def test_kale_ui_prints_its_url_and_serves(runs):
    process = subprocess.Popen([sys.executable, "-m", "kale.cli", "ui", "--port", "0",
                                "--home", str(runs.home)], stdout=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline()
        assert line.startswith("kale ui: http://127.0.0.1:") and "Ctrl-C stops it" in line
        url = line.split()[2]
        assert get(url)[0] == 200
    finally:
        process.terminate()
        process.wait(timeout=10)


CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
DRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


@pytest.fixture
def browser():
    missing = [what for what, there in (("chromium", os.path.exists(CHROMIUM)),
                                        ("chromedriver", os.path.exists(DRIVER))) if not there]
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        missing.append("selenium")
    if missing:
        # CI installs them (.ci/run); elsewhere the browser test needs them too.
        message = f"the browser test needs {', '.join(missing)}: apt-get install chromium " \
                  "chromium-driver, pip install -e '.[test]'"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu",
                     "--disable-dev-shm-usage", "--window-size=1280,1000"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(executable_path=DRIVER), options=options)
    yield driver
    driver.quit()


def test_in_a_real_browser(browser, ui, runs, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    def wait_for(element_id: str):
        # A click that navigates returns before the next page is there (a loaded CI machine).
        return WebDriverWait(browser, 30).until(
            expected_conditions.presence_of_element_located((By.ID, element_id)))

    first, second = ids(runs)
    browser.get(ui)
    table = wait_for("runs")
    assert first[:8] in table.text and "accuracy" in table.text
    # Sortable: by accuracy, ascending puts the second run (0.65) first.
    header = next(th for th in table.find_elements(By.TAG_NAME, "th") if th.text == "accuracy")
    header.click()
    rows = table.find_elements(By.CSS_SELECTOR, "tbody tr")
    assert second[:8] in rows[0].text
    header.click()
    assert first[:8] in table.find_elements(By.CSS_SELECTOR, "tbody tr")[0].text
    # Compare selected: enabled once two runs are ticked.
    button = browser.find_element(By.ID, "compare-button")
    assert not button.is_enabled()
    for box in browser.find_elements(By.CSS_SELECTOR, "input[name=run]"):
        box.click()
    assert button.is_enabled() and button.text == "compare 2 selected"
    button.click()
    comparison = wait_for("comparison")
    assert "parameter rate" in comparison.text and "0.25" in comparison.text
    # The run's page: its DAG, its metric, its HTML artifact in a sandbox (its script did not
    # reach the page).
    browser.get(f"{ui}run/{first}")
    metrics = wait_for("metrics")
    assert browser.find_element(By.CSS_SELECTOR, "svg.dag").is_displayed()
    assert "accuracy" in metrics.text and "0.8" in metrics.text
    frame = browser.find_element(By.CSS_SELECTOR, "iframe.artifact")
    assert frame.get_attribute("sandbox") == ""
    browser.execute_script("arguments[0].scrollIntoView()", frame)
    browser.switch_to.frame(frame)
    assert browser.find_element(By.ID, "inside").text == "report 0.1"
    browser.switch_to.default_content()
    assert browser.title.startswith("Run ")  # the artifact's script did not run
    browser.execute_script("window.scrollTo(0, 0)")
    shot = tmp_path / "run.png"
    assert browser.save_screenshot(str(shot))
    from PIL import Image

    image = Image.open(shot).convert("RGB")
    scale = image.size[0] / browser.execute_script("return window.innerWidth")

    def drawn(element) -> int:
        """How many dark (text) pixels the screenshot has where ``element`` is."""
        box = element.rect
        assert box["y"] + box["height"] <= image.size[1] / scale, "not in the screenshot"
        crop = image.crop(tuple(int(v * scale) for v in (
            box["x"], box["y"], box["x"] + box["width"], box["y"] + box["height"])))
        return sum(crop.convert("L").histogram()[:100])

    # The screenshot shows the run (its title and DAG, with the steps' names in their
    # boxes) and its metric.
    title = browser.find_element(By.TAG_NAME, "h1")
    assert first[:8] in title.text and drawn(title) > 100
    node = browser.find_element(By.CSS_SELECTOR, "svg.dag g.node text.name")
    assert node.text == "train" and drawn(node) > 20
    value = next(cell for cell in metrics.find_elements(By.TAG_NAME, "td")
                 if cell.text == "0.8")
    assert drawn(value) > 10 and drawn(metrics) > 200
    Path(os.environ.get("KALE_UI_SCREENSHOT", tmp_path / "kept.png")).write_bytes(
        shot.read_bytes())
