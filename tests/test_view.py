"""The report and the dashboard without a browser: access rules, read-only routes, a report that needs no
network, idle time per worker, and `firegen run`'s progress display in a terminal and in a log.
(tests/test_browser.py looks at both in Chromium while a real campaign runs.)"""

import os
import pty
import re
import time

import pytest
from bson import ObjectId

from firegen.campaign.records import LabelFailure
from firegen.db.repository import ResultsStore
from firegen.orchestrator.progress import LiveProgress, PlainProgress, Progress, panel, progress_display
from firegen.orchestrator.view.live import LiveReads
from firegen.orchestrator.view.report import write_report
from firegen.orchestrator.view.server import COOKIE, create_app, is_loopback, token_for
from firegen.orchestrator.view.source import CampaignSource
from firegen.orchestrator.view.tables import LaunchBar, failure_reasons, worker_rows


@pytest.fixture
def campaign(launchpad):
    """A campaign that has just started: its document, one iteration opened, one failed initial label."""
    store = ResultsStore.from_launchpad(launchpad)
    store.init()
    store.create_campaign("cu-new", {"name": "cu-new", "stages": [{"name": "warm"}],
                                     "selection": {"trust": {"f_lo": 0.1, "f_hi": 0.3}}}, ["Cu"])
    store.update_iteration("cu-new", 0, 0, stage_name="warm", ensemble="nvt", temperatures=[300.0], nsteps=500)
    store.count_labels("cu-new", -1, labeled=3, failed=1,
                       failures=[LabelFailure(ObjectId(), "SCF did not converge in 50 steps", "UnconvergedSCF", 7)])
    return store


def test_loopback_needs_no_token_any_other_address_gets_one():
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.7")
    assert token_for("127.0.0.1", None) == (None, False)
    made, printed = token_for("0.0.0.0", None)
    assert len(made) >= 24 and printed
    assert token_for("0.0.0.0", "mine") == ("mine", False) and token_for("127.0.0.1", "mine") == ("mine", False)


def test_dashboard_refuses_requests_without_the_token_and_answers_only_reads(launchpad, campaign):
    client = create_app(launchpad, token="s3cret", background=False).test_client()
    for path in ("/", "/c/cu-new", "/c/cu-new?format=json", "/launchpad", "/static/plotly.min.js"):
        refused = client.get(path)
        assert refused.status_code == 401 and b"token" in refused.data, path
    assert client.get("/", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.get("/", headers={"Authorization": "Bearer s3cret"}).status_code == 200
    first = client.get("/c/cu-new/labels?token=s3cret&skip=0")  # once in the address, then a cookie
    assert first.status_code == 303 and first.headers["Location"] == "/c/cu-new/labels?skip=0"
    assert first.headers["Set-Cookie"].startswith(COOKIE) and "HttpOnly" in first.headers["Set-Cookie"]
    assert "s3cret" not in first.headers["Location"]
    page = client.get("/c/cu-new/labels?skip=0")
    assert page.status_code == 200 and b"SCF did not converge" in page.data
    assert client.post("/c/cu-new").status_code == 405 and client.delete("/").status_code == 405
    assert client.get("/c/nope").status_code == 404


def test_dashboard_pages_answer_html_and_json_for_a_campaign_that_just_started(launchpad, campaign):
    client = create_app(launchpad, background=False).test_client()
    assert client.get("/", headers={"Host": "attacker.example:8050"}).status_code == 403  # DNS rebinding
    home = client.get("/")
    assert home.status_code == 200 and b'href="/c/cu-new"' in home.data
    overview = client.get("/c/cu-new").get_data(as_text=True)
    assert '<script src="/static/plotly.min.js">' in overview and 'data-live="/c/cu-new"' in overview
    assert re.search(r'data-field="iterations\.0\.stage">warm<', overview)
    live = client.get("/c/cu-new?format=json").get_json()
    assert [s["id"] for s in live["sections"]][:2] == ["headline", "iterations"]
    assert 'data-value="labeled">3<' in live["sections"][0]["html"]
    assert "archive" not in live["sections"][0]["html"]
    campaign.count_archived("cu-new", 5)  # a finished iteration's Fireworks left the LaunchPad
    headline = client.get("/c/cu-new?format=json").get_json()["sections"][0]["html"]
    assert 'data-value="completed">5<' in headline
    assert "5 COMPLETED moved to the archive with their finished iterations" in headline
    for page in ("models", "labels", "timeline", "lineage"):
        assert client.get(f"/c/cu-new/{page}").status_code == 200, page
    assert client.get(f"/c/cu-new/configuration/{ObjectId()}").status_code == 404
    assert client.get("/static/plotly.min.js").data.startswith(b"/**")


def test_pages_share_one_read_per_period_kept_current_while_asked_for():
    reads = []
    live = LiveReads(every=0.05, idle_after=0.5)
    first, when = live.get("c", lambda: reads.append(len(reads)) or len(reads))
    again, same = live.get("c", lambda: pytest.fail("a second page must not read again"))
    assert (first, again, same) == (1, 1, when)
    time.sleep(0.3)  # the background thread read again meanwhile
    later, then = live.get("c", lambda: pytest.fail("kept current in the background"))
    assert later > 1 and then > when and len(reads) == later
    time.sleep(1.0)  # nobody asked for longer than idle_after: the key and its thread are gone
    assert live.keys() == []
    with pytest.raises(KeyError):  # a failed first read keeps nothing
        live.get("x", lambda: {}["missing"])
    assert live.keys() == []
    assert LiveReads(every=None).get("c", lambda: 7)[0] == 7 and LiveReads(every=None).keys() == []


def test_report_is_one_file_that_fetches_nothing(launchpad, campaign, tmp_path):
    path = write_report(CampaignSource(campaign, launchpad, "cu-new"), tmp_path / "sub" / "cu-new.html")
    html = path.read_text()
    assert html.count("<script src=") == 0 and "data-live=\"\"" in html
    markup = re.sub(r"<script>.*?</script>", "", html, flags=re.S)  # Plotly's own source names URLs in strings
    assert not re.search(r'(src|href)="(https?:)?//', markup)  # no CDN, no link off the file
    assert len(html) - len(markup) > 3_000_000  # Plotly's JavaScript is inside
    assert "SCF did not converge in 50 steps" in html and 'data-field="budget.init.failed">1<' in html


def test_idle_time_is_the_gaps_between_a_workers_launches():
    bars = [LaunchBar("gpu @ a", 1, "t0", "train", 0, "COMPLETED", 0.0, 10.0),
            LaunchBar("gpu @ a", 2, "t1", "train", 0, "COMPLETED", 14.0, 6.0),
            LaunchBar("gpu @ a", 3, "e0", "explore", 0, "COMPLETED", 25.0, 5.0),
            LaunchBar("cpu @ b", 4, "s0", "select", 0, "RUNNING", 3.0, 1.0)]
    gpu, = [r for r in worker_rows(bars) if r["worker"] == "gpu @ a"]
    assert (gpu["launches"], gpu["busy s"], gpu["idle s"], gpu["longest idle s"]) == (3, 21.0, 9.0, 5.0)
    assert gpu["idle %"] == pytest.approx(30.0)
    reasons = failure_reasons([{"reason": "SCF not converged after 51 steps"}, {"reason": "SCF not converged after 80 steps"},
                               {"reason": "killed"}])
    assert reasons == [{"reason": "SCF not converged after # steps", "attempts": 2}, {"reason": "killed", "attempts": 1}]


PROGRESS = Progress("cu", "running", "warm", 2, {("gpu", "train", "RUNNING"): 2, ("gpu", "explore", "WAITING"): 4,
                                                  ("cpu", "label", "COMPLETED"): 3, ("cpu", "select", "WAITING"): 1},
                    labels_done=60, labels_todo=20)


def test_progress_is_plain_lines_in_a_log_and_a_live_panel_in_a_terminal(tmp_path):
    lines = []
    plain = progress_display(lines.append, stream=open(tmp_path / "log.txt", "w"))
    assert isinstance(plain, PlainProgress)
    plain.show(PROGRESS, 3.0)
    plain.show(PROGRESS, 4.0)  # nothing changed: no new line
    assert len(lines) == 1 and lines[0].startswith("[     3 s] cu: running stage warm iteration 2; running: train")
    assert "labels 60 done, 20 to do" in lines[0] and "gpu 2 running 4 waiting" in lines[0]

    leader, follower = pty.openpty()
    with os.fdopen(follower, "w") as terminal:
        assert isinstance(progress_display(lines.append, stream=terminal), LiveProgress)
        progress_display(lines.append, stream=terminal).close()
    os.close(leader)
    from rich.console import Console

    console = Console(record=True, width=120)
    console.print(panel(PROGRESS, 75.0))
    text = console.export_text()
    assert "stage warm" in text and "iteration 2" in text and "labels 60 done / 20 to do" in text
    assert "elapsed 1:15" in text and re.search(r"gpu\s+2\s+0\s+4\s+0\s+0\s+train", text)
