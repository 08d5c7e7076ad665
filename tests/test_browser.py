"""The web viewer in a real browser: headless Chromium (Debian's ``chromium`` + ``chromium-driver``, never a
downloaded browser) driven by Selenium against a real ``uvicorn`` server on 127.0.0.1 with the shipped
models. Uploads a real NIH image, waits for the overlay, checks bars, badges and that the mask and heatmap
toggles change the canvas pixels, then browses a folder written by ``cxrkit analyze`` and opens a result.
Screenshots go to pytest's tmp dir and, when ``CXRKIT_SCREENSHOT_DIR`` is set, there too.

Skipped with the reason when chromium, chromedriver or selenium are missing (``.ci/run`` installs them), or
when the real data folder is absent.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest
from conftest import shared_path

CHROMIUM = os.environ.get("CXRKIT_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("CXRKIT_CHROMEDRIVER", "/usr/bin/chromedriver")
N_BROWSE = 3

pytestmark = [pytest.mark.realdata, pytest.mark.slow]

for _exe, _pkg in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
    if not (Path(_exe).is_file() and os.access(_exe, os.X_OK)):
        pytest.skip(f"headless Chromium test skipped: {_exe} is not installed (apt-get install {_pkg}; "
                    "`.ci/run` installs it, or set CXRKIT_CHROMIUM / CXRKIT_CHROMEDRIVER)", allow_module_level=True)
pytest.importorskip("selenium", reason="the browser test needs selenium>=4.15: pip install 'cxrkit[browser]'")
pytest.importorskip("uvicorn", reason="the service needs uvicorn: pip install 'cxrkit[serve]'")
pytest.importorskip("fastapi", reason="the service needs fastapi: pip install 'cxrkit[serve]'")

from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.options import Options  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

CLASSIFIER = "resnet_lite_lesions"  # the shipped benchmark model, named explicitly (no default classifier)

# A JS checksum of the overlay canvas: [hash, non-black pixels, strongly red/yellow ("hot") pixels, w, h].
CANVAS_STATS = """
const c = document.getElementById('canvas'), d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
let h = 0, lit = 0, hot = 0;
for (let i = 0; i < d.length; i += 4) {
  h = (h * 31 + d[i] + 3 * d[i + 1] + 7 * d[i + 2]) % 1000000007;
  if (d[i] + d[i + 1] + d[i + 2] > 30) lit++;
  if (d[i] > 180 && d[i] - d[i + 2] > 120 && Math.abs(d[i] - d[i + 1]) > 40) hot++;
}
return [h, lit, hot, c.width, c.height];
"""


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """``cxrkit analyze --heatmaps`` over the first real NIH images (the folder browse mode serves)."""
    from cxrkit.cli.main import main

    images = sorted(shared_path("nih", "images").glob("*.png"))[:N_BROWSE]
    if len(images) < N_BROWSE:
        pytest.skip(f"real data not available: fewer than {N_BROWSE} PNGs in {shared_path('nih', 'images')}")
    out = tmp_path_factory.mktemp("browse")
    assert main(["analyze", *map(str, images), "--out", str(out), "--heatmaps", "--quiet", "--model", CLASSIFIER]) == 0
    return out, images


@pytest.fixture(scope="module")
def server(results):
    """A real uvicorn server (shipped models, RCA QC when a reference set is found) on a free loopback port."""
    import httpx
    import uvicorn

    from cxrkit.service.app import create_app

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(create_app(results_dir=results[0], classifier=CLASSIFIER), host="127.0.0.1", port=port,
                                        log_level="warning"))
    thread = threading.Thread(target=srv.run, name="cxrkit-uvicorn", daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            if httpx.get(url + "/healthz", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"cxrkit server on {url} did not become healthy")
        time.sleep(0.2)
    yield url
    srv.should_exit = True
    thread.join(30)


@pytest.fixture(scope="module")
def driver():
    os.environ.setdefault("SE_OFFLINE", "true")  # Selenium Manager must never try to download anything
    opts = Options()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1400,1100", "--disable-extensions", "--no-first-run"):
        opts.add_argument(arg)
    d = webdriver.Chrome(options=opts, service=Service(executable_path=CHROMEDRIVER))
    d.set_page_load_timeout(60)
    yield d
    d.quit()


@pytest.fixture(scope="module")
def shots(tmp_path_factory):
    dirs = [tmp_path_factory.mktemp("screenshots")]
    if os.environ.get("CXRKIT_SCREENSHOT_DIR"):
        dirs.append(Path(os.environ["CXRKIT_SCREENSHOT_DIR"]))
        dirs[-1].mkdir(parents=True, exist_ok=True)

    def save(drv, name: str) -> Path:
        path = dirs[0] / name
        assert drv.save_screenshot(str(path)), f"could not save screenshot {path}"
        for extra in dirs[1:]:
            shutil.copy(path, extra / name)
        return path

    return save


def _wait_ready(drv, timeout: float = 90) -> None:
    def done(d):
        return d.execute_script("return document.body.dataset.state") in ("ready", "error")

    WebDriverWait(drv, timeout, poll_frequency=0.2).until(done)
    state = drv.execute_script("return document.body.dataset.state")
    assert state == "ready", drv.find_element(By.ID, "status").text


def _click_toggle(drv, element_id: str) -> None:
    before = drv.execute_script("return Number(document.getElementById('canvas').dataset.drawn)")
    drv.find_element(By.ID, element_id).click()
    WebDriverWait(drv, 10).until(
        lambda d: d.execute_script("return Number(document.getElementById('canvas').dataset.drawn)") > before)


def test_upload_shows_overlay_bars_badges_and_toggles(server, results, driver, shots):
    import httpx

    out, images = results
    heat = {p: max(e["max"] - e["min"] for e in json.loads((out / f"{p.stem}.json").read_text())["heatmaps"]["maps"].values())
            for p in images}
    image = max(images, key=heat.get)  # the image whose heatmap has the most to show
    assert heat[image] > 0, f"no heatmap with any contrast in {sorted(heat.values())}"
    labels = httpx.get(server + "/v1/models").json()["models"][0]["labels"]

    driver.get(server + "/")
    assert "cxrkit viewer" in driver.title
    driver.find_element(By.ID, "file").send_keys(str(image))
    _wait_ready(driver)
    assert image.name in driver.find_element(By.ID, "status").text

    rows = driver.find_elements(By.CSS_SELECTOR, "#probs tr.prob")
    assert len(rows) == len(labels) >= 3
    assert {r.get_attribute("data-finding") for r in rows} == set(labels)
    probs = [float(r.find_element(By.CSS_SELECTOR, "td.p").text) for r in rows]
    assert all(0 <= p <= 1 for p in probs) and probs == sorted(probs, reverse=True)
    ctr_text = driver.find_element(By.ID, "ctr").text
    assert ctr_text.startswith("CTR ") and 0.3 < float(ctr_text.split()[1]) < 0.8, ctr_text
    assert driver.find_element(By.ID, "qc").text.startswith("QC")
    # the benchmark model is labelled as what it is, with its provenance
    assert driver.find_element(By.ID, "synthetic").text == "trained on synthetic findings"
    assert "synthetic" in driver.find_element(By.ID, "clf-note").text.lower()
    assert "JSRT" in driver.find_element(By.ID, "models").text

    h0, lit, hot0, w, h = driver.execute_script(CANVAS_STATS)
    assert (w, h) == (640, 640) and lit > 0.5 * w * h  # the radiograph is drawn under the overlays
    shots(driver, "viewer_upload.png")
    _click_toggle(driver, "t-masks")  # masks off
    h1, *_ = driver.execute_script(CANVAS_STATS)
    assert h1 != h0
    _click_toggle(driver, "t-masks")  # back on: the same pixels again
    assert driver.execute_script(CANVAS_STATS)[0] == h0

    # Heatmap: clicking the bar of the finding with the strongest map selects it and turns the layer on.
    doc_maps = json.loads((out / f"{image.stem}.json").read_text())["heatmaps"]["maps"]
    finding = max(doc_maps, key=lambda f: doc_maps[f]["max"] - doc_maps[f]["min"])
    driver.find_element(By.CSS_SELECTOR, f'#probs tr.prob[data-finding="{finding}"]').click()
    WebDriverWait(driver, 15).until(lambda d: d.find_element(By.ID, "legend").text.startswith(f"heatmap: {finding}"))
    assert driver.find_element(By.ID, "t-heatmap").is_selected()
    assert driver.find_element(By.ID, "finding").get_attribute("value") == finding
    h2, _, hot2, *_ = driver.execute_script(CANVAS_STATS)
    shots(driver, "viewer_heatmap.png")
    assert h2 != h0 and hot2 > hot0, (hot0, hot2)  # red/yellow heat where the finding's map is high
    _click_toggle(driver, "t-heatmap")  # off again
    assert driver.execute_script(CANVAS_STATS)[0] == h0


def test_browse_lists_results_and_opens_one(server, results, driver, shots):
    import httpx

    out, images = results
    for path in ("..%2F..%2Fetc%2Fpasswd", "%2E%2E%2F%2E%2E%2Fetc%2Fpasswd/image", "..%5Cbrowse0", "nosuch/image"):
        r = httpx.get(f"{server}/v1/results/{path}")  # through uvicorn's own path decoding
        assert r.status_code == 404 and "detail" in r.json(), (path, r.status_code, r.text[:200])
    driver.get(server + "/")
    driver.find_element(By.ID, "tab-browse").click()
    WebDriverWait(driver, 30).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#results tr.result")) == N_BROWSE)
    assert f"{N_BROWSE} results" in driver.find_element(By.ID, "results-status").text
    rows = driver.find_elements(By.CSS_SELECTOR, "#results tr.result")
    assert [r.get_attribute("data-stem") for r in rows] == [p.stem for p in images]
    for r in rows:
        assert 0.3 < float(r.find_element(By.CSS_SELECTOR, "td.ctr").text) < 0.8
    WebDriverWait(driver, 20).until(lambda d: d.execute_script(
        "return [...document.querySelectorAll('#results img')].every(i => i.complete && i.naturalWidth > 0)"))
    target = images[1]
    rows[1].click()
    _wait_ready(driver)
    assert driver.find_element(By.ID, "status").text.startswith(f"Showing result {target.name}")
    doc = json.loads((out / f"{target.stem}.json").read_text())
    assert driver.find_element(By.ID, "ctr").text == f"CTR {doc['measurements']['ctr']:.3f}"
    assert len(driver.find_elements(By.CSS_SELECTOR, "#probs tr.prob")) == len(doc["probabilities"])
    _, lit, _, w, h = driver.execute_script(CANVAS_STATS)
    assert lit > 0.5 * w * h  # the stored preview is drawn under the overlays
    assert "sel" in rows[1].get_attribute("class")
    shots(driver, "viewer_browse.png")
