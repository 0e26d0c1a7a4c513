"""The dashboard and the report in a real browser (Debian's headless Chromium, driven by Playwright) while a
real campaign runs: the numbers on the page are the database's and follow it without a reload, every plot
draws, nothing is fetched from the network, and a dashboard bound to all addresses wants its token.

Screenshots go to build/screenshots/ (``FIREGEN_SCREENSHOTS`` moves them); see README "Seeing a campaign".
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from bson import ObjectId

from campaign_helpers import BIN, ROOT, campaign_db, cli_env, firegen, small_cu_config, stop_group
from firegen.campaign.records import CAMPAIGN_ENDED
from firegen.db.embedded.server import free_port
from firegen.db.fireworks_archive import archive_of

CHROMIUM = Path("/usr/bin/chromium")
SHOTS = Path(os.environ.get("FIREGEN_SCREENSHOTS", ROOT / "build" / "screenshots"))
NAME = "cu-live"

playwright_api = pytest.importorskip("playwright.sync_api", reason="Playwright's Python package is not installed "
                                     "(pip install -e '.[test]')")
pytestmark = [pytest.mark.skipif(not CHROMIUM.is_file(), reason="Chromium is missing: apt-get install chromium "
                                 "(scripts/bootstrap.sh installs it)"), pytest.mark.timeout(1800)]


def _start(folder: Path, log: str, *args) -> tuple[subprocess.Popen, Path]:
    out = folder / log
    proc = subprocess.Popen([str(BIN / "firegen"), *args], cwd=folder, env=cli_env(folder), stdout=out.open("w"),
                            stderr=subprocess.STDOUT, start_new_session=True)
    return proc, out


def _first_line(proc: subprocess.Popen, out: Path, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = out.read_text()
        if "\n" in text:
            return text.splitlines()[0]
        assert proc.poll() is None, f"{proc.args} exited: {text}"
        time.sleep(0.2)
    raise AssertionError(f"{proc.args} said nothing in {timeout} s")


def _said(proc: subprocess.Popen, out: Path, text: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while text not in out.read_text():
        assert proc.poll() is None, f"{proc.args} exited: {out.read_text()}"
        assert time.monotonic() < deadline, f"{proc.args} did not say {text!r} in {timeout} s: {out.read_text()}"
        time.sleep(0.2)


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    """A real campaign (2 iterations, EMT labels) started with `firegen run`, a dashboard on 127.0.0.1 and one
    on every address (with the token it printed), and a headless Chromium."""
    folder = tmp_path_factory.mktemp("live")
    config = small_cu_config(folder, NAME, stage={"max_iterations": 2})
    firegen(folder, "db", "up", check=True)
    port, open_port = free_port(), free_port()
    dashboard, dash_out = _start(folder, "dashboard.log", "dashboard", "--port", str(port), "--refresh", "1")
    everywhere, every_out = _start(folder, "dashboard-all.log", "dashboard", "--host", "0.0.0.0", "--port",
                                   str(open_port))
    run, run_out = _start(folder, "run.log", "run", str(config), "--timeout", "1200")
    shutil.rmtree(SHOTS, ignore_errors=True)
    SHOTS.mkdir(parents=True)
    try:
        line = _first_line(dashboard, dash_out)
        assert line.startswith(f"firegen dashboard on http://127.0.0.1:{port}/ (read-only")
        token = _first_line(everywhere, every_out).split("?token=")[1].split(" ")[0]
        _said(run, run_out, f"queued campaign '{NAME}'")  # before that, its page is a 404 (not in the database)
        with playwright_api.sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True)
            yield {"folder": folder, "db": campaign_db(folder), "base": f"http://127.0.0.1:{port}", "run": run,
                   "run_out": run_out, "open_base": f"http://127.0.0.1:{open_port}", "token": token, "browser": browser}
            browser.close()
    finally:
        for proc in (dashboard, everywhere, run):
            stop_group(proc)
        firegen(folder, "db", "down")


def _page(live, **context):
    """A new page that records console errors and failed requests."""
    page = live["browser"].new_context(viewport={"width": 1400, "height": 1000}, **context).new_page()
    page.errors = []
    page.on("console", lambda msg: page.errors.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: page.errors.append(str(exc)))
    return page


def _value(page, key: str) -> str:
    return page.locator(f'[data-value="{key}"]').inner_text()


def _cell(page, field: str) -> str:
    return page.locator(f'[data-field="{field}"]').first.inner_text()


def _completed(db) -> int:
    """The campaign's COMPLETED Fireworks, on the LaunchPad and in its archive (finished iterations move there;
    a Firework is copied to the archive before it leaves the LaunchPad, so counting the LaunchPad first never
    misses one that moves in between)."""
    query = {"spec.firegen.campaign": NAME, "state": "COMPLETED"}
    live = db.fireworks.count_documents(query)
    return live + archive_of(db).fireworks.count_documents(query)


def _plots_drawn(page, at_least: int) -> None:
    """Every Plotly element on the page holds traces and an SVG, and there are at least ``at_least`` of them."""
    drawn = page.eval_on_selector_all(".js-plotly-plot", "els => els.map(e => [e.id, (e.data || []).length, "
                                      "e.querySelectorAll('.main-svg').length])")
    assert len(drawn) >= at_least, drawn
    assert all(traces > 0 and svgs > 0 for _, traces, svgs in drawn), drawn


def _eventually(check, timeout: float = 15, every: float = 0.5):
    deadline = time.monotonic() + timeout
    while True:
        try:
            return check()
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(every)


def test_the_dashboard_follows_the_running_campaign_without_a_reload(live):
    db = live["db"]
    page = _page(live)
    page.goto(f"{live['base']}/c/{NAME}")
    page.evaluate("window.notReloaded = true")
    seen, shot_mid = [], False
    deadline = time.monotonic() + 1200
    while live["run"].poll() is None and time.monotonic() < deadline:
        shown = int(_value(page, "completed"))
        assert shown <= _completed(db), "the page shows Fireworks the database has not completed"
        if not seen or shown != seen[-1]:
            seen.append(shown)
        explored = db.iterations.find_one({"campaign": NAME, "index": 0, "counts": {"$exists": True}})
        if explored and not shot_mid:  # mid-run: iteration 0's numbers reach the page by themselves
            _eventually(lambda: _check_cell(page, "iterations.0.candidates", str(explored["counts"]["candidate"])))
            _plots_drawn(page, 4)
            page.screenshot(path=SHOTS / "dashboard-running.png", full_page=True)
            shot_mid = True
        time.sleep(2)
    assert live["run"].wait(timeout=60) == 0, live["run_out"].read_text()[-3000:]
    assert shot_mid and len(seen) >= 3 and seen == sorted(seen), seen  # it moved on, forward only

    campaign = db.campaigns.find_one({"name": NAME})
    labeled = db.configurations.count_documents({"campaign": NAME, "status": "labeled"})

    def agrees():
        assert _value(page, "status") == campaign["status"] and campaign["status"] in CAMPAIGN_ENDED
        assert int(_value(page, "completed")) == _completed(db)
        assert int(_value(page, "iteration")) == campaign["iteration"]
        assert int(_value(page, "labeled")) == labeled
    _eventually(agrees)
    iterations = list(db.iterations.find({"campaign": NAME}).sort("index", 1))
    assert page.locator('[data-field$=".candidates"]').count() == len(iterations) >= 2
    for it in iterations:
        k = it["index"]
        assert _cell(page, f"iterations.{k}.candidates") == str(it["counts"]["candidate"])
        assert _cell(page, f"iterations.{k}.selected") == str(it["selected"])
        assert _cell(page, f"iterations.{k}.accurate %") == f"{100 * it['ratios']['accurate']:.1f}"
        assert _cell(page, f"iterations.{k}.decision") == it["decision"]["action"]
    assert page.evaluate("window.notReloaded") is True
    _plots_drawn(page, 4)
    assert page.errors == []
    page.screenshot(path=SHOTS / "dashboard-overview.png", full_page=True)


def _check_cell(page, field: str, expected: str) -> None:
    assert _cell(page, field) == expected


def test_every_dashboard_page_draws_and_lineage_leads_from_a_model_to_the_frames_it_learned(live):
    db = live["db"]
    # every model tested on at least 2 held-out frames stored its predictions there (the parity plot's points)
    held_out = [m["_id"] for m in db.models.find({"campaign": NAME, "n_validation": {"$gte": 2}})]
    assert db.heldout_predictions.count_documents({"_id": {"$in": held_out}}) == len(held_out)
    page = _page(live)
    for name, plots in (("models", 2 if held_out else 1), ("labels", 1), ("timeline", 1), ("lineage", 0)):
        page.goto(f"{live['base']}/c/{NAME}/{name}")
        _plots_drawn(page, plots)
        page.screenshot(path=SHOTS / f"dashboard-{name}.png", full_page=True)
    model = db.models.find_one({"campaign": NAME}, sort=[("iteration", -1), ("member", 1)])
    page.goto(f"{live['base']}/c/{NAME}/models")
    page.locator(f'#model-{model["_id"]} [data-field$=".member"] a').click()
    page.wait_for_url(f"**/model/{model['_id']}")
    assert _value(page, "seed") == str(model["seed"])
    page.get_by_role("link", name="snapshot").click()
    dataset = db.datasets.find_one({"_id": model["dataset_id"]})
    page.wait_for_url(f"**/dataset/{dataset['_id']}")
    assert _value(page, "size") == str(dataset["size"])
    assert page.locator('[data-field$=".configuration"]').count() == min(100, dataset["size"])
    page.screenshot(path=SHOTS / "dashboard-dataset.png", full_page=True)
    explored = page.locator('[data-field$=".origin"]', has_text="explored")
    row = explored.first.locator("xpath=..")
    config_id = row.locator('[data-field$=".configuration"]').inner_text()
    row.locator('[data-field$=".configuration"] a').click()
    page.wait_for_url(f"**/configuration/{config_id}")
    doc = db.configurations.find_one({"_id": ObjectId(config_id)})
    assert _value(page, "iteration") == str(doc["origin"]["iteration"]) and _value(page, "frame") == str(doc["origin"]["frame"])
    assert _value(page, "Firework") == str(doc["origin"]["fw_id"]) and _value(page, "status") == doc["status"]
    assert f"{doc['origin']['condition']['temperature']:g}K" in _value(page, "condition")
    page.screenshot(path=SHOTS / "dashboard-configuration.png", full_page=True)
    page.goto(f"{live['base']}/launchpad")
    assert int(_value(page, "launchpad-COMPLETED")) == db.fireworks.count_documents({"state": "COMPLETED"})
    page.screenshot(path=SHOTS / "dashboard-launchpad.png", full_page=True)
    assert page.errors == []


def test_a_dashboard_on_every_address_refuses_requests_without_its_token(live):
    base = live["open_base"]
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{base}/c/{NAME}?format=json", timeout=30)
    assert refused.value.code == 401
    request = urllib.request.Request(f"{base}/c/{NAME}?format=json", headers={"Authorization": f"Bearer {live['token']}"})
    with urllib.request.urlopen(request, timeout=30) as answer:
        assert answer.status == 200 and json.loads(answer.read())["sections"][0]["id"] == "headline"
    assert _page(live).goto(f"{base}/c/{NAME}").status == 401
    page = _page(live)
    page.goto(f"{base}/c/{NAME}?token={live['token']}")  # once; the cookie carries it from there
    assert page.url == f"{base}/c/{NAME}"
    _plots_drawn(page, 4)
    page.wait_for_function("document.getElementById('live-state').textContent.includes('updated')", timeout=20000)
    assert page.errors == []


def test_run_writes_a_report_that_opens_offline_with_the_same_numbers(live):
    db, folder = live["db"], live["folder"]
    out = live["run_out"].read_text().splitlines()
    assert any("labels" in line and "to do" in line for line in out)  # the plain progress lines (not a terminal)
    assert out[-1].startswith("report: ") and Path(out[-1][8:]).is_file()
    written = firegen(folder, "report", NAME, "-o", "report.html", check=True)
    assert written.stdout.strip() == "wrote report.html"
    page = _page(live, offline=True)
    fetched = []
    page.route("**/*", lambda route: route.continue_() if route.request.url.startswith("file://")
               else (fetched.append(route.request.url), route.abort()))
    page.goto((folder / "report.html").as_uri())
    _plots_drawn(page, 8)
    iterations = list(db.iterations.find({"campaign": NAME}).sort("index", 1))
    for it in iterations:
        assert _cell(page, f"iterations.{it['index']}.candidates") == str(it["counts"]["candidate"])
    assert _value(page, "labeled") == str(db.configurations.count_documents({"campaign": NAME, "status": "labeled"}))
    last = db.datasets.find_one({"campaign": NAME}, sort=[("iteration", -1)])
    member = db.configurations.find_one({"datasets": last["_id"], "origin.kind": "explored"})
    page.locator(f'[data-field="datasets.{last["iteration"]}.size"] a').click()
    assert page.locator(f"#cfg-{member['_id']}").count() == 1
    assert page.locator(f'#cfg-{member["_id"]} [data-field$=".frame"]').inner_text() == str(member["origin"]["frame"])
    assert fetched == [] and page.errors == []
    page.screenshot(path=SHOTS / "report.png", full_page=True)
