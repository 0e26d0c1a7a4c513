"""``firegen dashboard``: the views of every campaign, served live from the database by Flask.

Read-only: every route is a GET that reads. A page is served as HTML; the same address with
``?format=json`` answers its sections (HTML pieces and Plotly figures), which the page asks for every
few seconds to redraw what changed. Long lists are paged (``?skip=``, :data:`~.sections.PAGE_ROWS` rows).
Campaign pages and the LaunchPad's are drawn from the latest background read (:mod:`.live`); lineage
pages read their model, snapshot page or configuration by ``_id`` when asked.

Access: bound to a loopback address without a token, anyone on this machine may read (pages asked for
under a name that is not a loopback address are refused); with a token (any other address needs one)
every request presents it (``?token=`` once, which sets a cookie, or ``Authorization: Bearer``).
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import ipaddress
import logging
import secrets
from collections.abc import Callable
from urllib.parse import quote

from flask import Flask, Response, abort, jsonify, make_response, redirect, request
from werkzeug.serving import WSGIRequestHandler, make_server

from firegen.campaign.errors import FiregenError
from firegen.db.repository import ResultsStore
from firegen.orchestrator.view import lineage
from firegen.orchestrator.view import sections as sec
from firegen.orchestrator.view.links import DashboardLinks
from firegen.orchestrator.view.live import LiveReads
from firegen.orchestrator.view.pages import CAMPAIGN_PAGES, NavItem, campaign_page, html_page, plotly_js, stamp
from firegen.orchestrator.view.render import fragment, table
from firegen.orchestrator.view.source import CampaignSource, LaunchPadSource, utc

COOKIE = "firegen_dashboard"
PLOTLY_PATH = "/static/plotly.min.js"
STATES = ["RUNNING", "RESERVED", "READY", "WAITING", "COMPLETED", "FIZZLED", "DEFUSED", "PAUSED", "ARCHIVED"]
log = logging.getLogger(__name__)


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` serves this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def token_for(host: str, token: str | None) -> tuple[str | None, bool]:
    """The token requests need, and whether it was made here (to print): the user's, a new one for a
    non-loopback ``host``, or None (loopback without a token: no check)."""
    if token:
        return token, False
    if is_loopback(host):
        return None, False
    return secrets.token_urlsafe(24), True


def _skip() -> int:
    try:
        return max(0, int(request.args.get("skip", 0)))
    except ValueError:
        return 0


def create_app(lp, token: str | None = None, refresh_s: float = 3.0, background: bool = True) -> Flask:
    """The dashboard's Flask app over the LaunchPad ``lp`` (its database holds the results too).

    Args:
        lp: a connected FireWorks LaunchPad.
        token: what every request must present (None: no check).
        refresh_s: seconds between a page's updates, and between reads of what the pages show.
        background: keep what pages show current in background threads (False: read at every request).
    """
    app = Flask(__name__)
    store = ResultsStore.from_launchpad(lp)
    reads = LiveReads(refresh_s if background else None)

    def campaign(name: str) -> tuple[CampaignSource, datetime.datetime]:
        # the first look reads what its page uses (checking the campaign exists), the background reads read all
        return reads.get(("campaign", name), lambda: CampaignSource(store, lp, name).preloaded(),
                         first=lambda: CampaignSource(store, lp, name).checked())

    def launchpad_read() -> tuple[LaunchPadSource, datetime.datetime]:
        return reads.get(("launchpad",), lambda: LaunchPadSource(store, lp))

    cookie = f"{COOKIE}_{hashlib.sha256(token.encode()).hexdigest()[:8]}" if token else COOKIE  # one per token

    @app.before_request
    def require_token():
        if token is None:  # loopback only: refuse pages asked for under another name (DNS rebinding)
            host = (request.host or "").rsplit(":", 1)[0].strip("[]")
            if not is_loopback(host):
                return Response(f"firegen dashboard: {host} is not a loopback address of this machine\n", status=403,
                                mimetype="text/plain")
            return None
        given = request.args.get("token")
        header = request.headers.get("Authorization", "")
        offered = given or (header[7:] if header.startswith("Bearer ") else None) or request.cookies.get(cookie)
        if not offered or not hmac.compare_digest(offered.encode(), token.encode()):
            return Response("firegen dashboard: this address needs the token the dashboard printed at start "
                            "(open it with ?token=...)\n", status=401, mimetype="text/plain")
        if given:  # once: keep it in a cookie, out of the address bar and the history
            args = {k: v for k, v in request.args.items() if k != "token"}
            target = request.path + ("?" + "&".join(f"{quote(k)}={quote(v)}" for k, v in args.items()) if args else "")
            response = redirect(target, code=303)
            response.set_cookie(cookie, token, httponly=True, samesite="Strict")
            return response
        return None

    @app.errorhandler(FiregenError)
    def not_found(exc):
        return Response(f"{exc}\n", status=404, mimetype="text/plain")

    @app.after_request
    def no_caching(response):
        if request.path != PLOTLY_PATH:
            response.headers["Cache-Control"] = "no-store"
        return response

    def respond(title: str, sections: list, nav: list[NavItem], read_at: datetime.datetime):
        when = read_at.strftime("%Y-%m-%d %H:%M:%S UTC")
        if request.args.get("format") == "json":
            return jsonify({"stamp": f"database read {when}; page updated {stamp()}",
                            "sections": [s.as_json() for s in sections]})
        live = request.full_path.rstrip("?")
        return html_page(title, sections, nav, live_url=live, refresh_s=refresh_s, plotly_src=PLOTLY_PATH,
                         read_at=when)

    def campaign_nav(name: str, current: str) -> list[NavItem]:
        links = DashboardLinks(name)
        return [NavItem("all campaigns", "/")] + [NavItem(title, links.page(path), path == current)
                                                   for path, (title, _) in CAMPAIGN_PAGES.items()] + [
            NavItem("LaunchPad", "/launchpad")]

    @app.get(PLOTLY_PATH)
    def plotly_script():
        response = make_response(plotly_js())
        response.headers["Content-Type"] = "application/javascript; charset=utf-8"
        response.headers["Cache-Control"] = "max-age=86400"
        return response

    @app.get("/")
    def campaigns():
        source, read_at = launchpad_read()
        counts = source.state_counts()
        rows = []
        for doc in source.campaigns:
            name = doc["name"]
            states = counts.get(name, {})
            rows.append({"campaign": name, "status": doc.get("status"), "stage": doc.get("stage"),
                         "iteration": doc.get("iteration"), "created": doc.get("created"), "updated": doc.get("updated"),
                         **{s: states.get(s, 0) for s in ("RUNNING", "READY", "WAITING", "COMPLETED", "FIZZLED")}})
        html = fragment("table.html", table=table(rows, ["campaign", "status", "stage", "iteration", "RUNNING", "READY",
                                                         "WAITING", "COMPLETED", "FIZZLED", "created", "updated"],
                                                  "campaigns", key="campaign",
                                                  links={"campaign": lambda r: DashboardLinks(r["campaign"]).page()}),
                        note="Fireworks of each campaign by state.", empty="no campaign in this database", pager=None)
        return respond("firegen campaigns", [sec.Section("campaigns", "campaigns", html=html), launchpad_states(counts)],
                       [NavItem("all campaigns", "/", True), NavItem("LaunchPad", "/launchpad")], read_at)

    def launchpad_states(counts: dict) -> sec.Section:
        total = {s: sum(c.get(s, 0) for c in counts.values()) for s in STATES}
        facts = [{"name": s, "key": f"launchpad-{s}", "value": n, "href": f"/launchpad?state={s}"}
                 for s, n in total.items() if n or s in ("RUNNING", "READY", "COMPLETED")]
        return sec.Section("launchpad", "LaunchPad: Fireworks by state", html=fragment("facts.html", facts=facts, note=""))

    @app.get("/launchpad")
    def launchpad():
        state = request.args.get("state") or None
        if state is not None and state not in STATES:
            abort(404)
        skip = _skip()
        source, read_at = launchpad_read()
        chosen = [fw for fw in source.fireworks if state is None or fw["state"] == state]
        fws, total = chosen[skip:skip + sec.PAGE_ROWS], len(chosen)
        rows = [{"fw_id": fw["fw_id"], "name": fw.get("name"), "state": fw.get("state"), "updated": utc(fw.get("updated_on")),
                 "campaign": ((fw.get("spec") or {}).get("firegen") or {}).get("campaign"),
                 "kind": ((fw.get("spec") or {}).get("firegen") or {}).get("kind")} for fw in fws]
        base = "/launchpad?" + (f"state={state}&" if state else "")
        listing = fragment("table.html", table=table(rows, ["fw_id", "name", "campaign", "kind", "state", "updated"],
                                                     "fireworks", key="fw_id",
                                                     links={"campaign": lambda r: DashboardLinks(r["campaign"]).page()
                                                            if r["campaign"] else None}),
                           note=f"{'State ' + state + ': ' if state else ''}newest first.", empty="no Firework",
                           pager=sec.pager(skip, sec.PAGE_ROWS, total, lambda s: f"{base}skip={s}"))
        return respond("LaunchPad", [launchpad_states(source.state_counts()), sec.Section("fireworks", "Fireworks",
                                                                                        html=listing)],
                       [NavItem("all campaigns", "/"), NavItem("LaunchPad", "/launchpad", True)], read_at)

    def campaign_route(path: str) -> Callable:
        def view(name: str):
            src, read_at = campaign(name)
            links = DashboardLinks(name)
            options = {}
            if path == "labels":
                skip = _skip()
                options = {"skip": skip, "limit": sec.PAGE_ROWS, "href": lambda s: f"{links.page('labels')}?skip={s}"}
            sections = src.drawn((path, request.args.get("skip")), lambda: campaign_page(src, links, path, **options))
            return respond(f"{name}: {CAMPAIGN_PAGES[path][0]}", sections, campaign_nav(name, path), read_at)
        view.__name__ = f"campaign_{path or 'overview'}"
        return view

    for path in CAMPAIGN_PAGES:
        app.add_url_rule(f"/c/<name>/{path}" if path else "/c/<name>", view_func=campaign_route(path), methods=["GET"])

    @app.get("/c/<name>/model/<model_id>")
    def model(name: str, model_id: str):
        src, read_at = campaign(name)
        return respond(f"{name}: model", lineage.model_page(src, DashboardLinks(name), model_id),
                       campaign_nav(name, "lineage"), read_at)

    @app.get("/c/<name>/dataset/<dataset_id>")
    def dataset(name: str, dataset_id: str):
        src, read_at = campaign(name)
        return respond(f"{name}: dataset", lineage.dataset_page(src, DashboardLinks(name), dataset_id, _skip()),
                       campaign_nav(name, "lineage"), read_at)

    @app.get("/c/<name>/configuration/<config_id>")
    def configuration(name: str, config_id: str):
        src, read_at = campaign(name)
        return respond(f"{name}: configuration", lineage.configuration_page(src, DashboardLinks(name), config_id),
                       campaign_nav(name, "lineage"), read_at)

    return app


class _PathOnlyLog(WSGIRequestHandler):
    """Logs method, path and status, never the query (where a token may travel)."""

    def log_request(self, code="-", size="-"):
        log.info("%s %s %s", self.command, self.path.split("?", 1)[0], code)


def serve(lp, host: str, port: int, token: str | None, refresh_s: float, ready: Callable[[str], None]) -> None:
    """Serve the dashboard until interrupted; ``ready(url)`` is called once it listens."""
    server = make_server(host, port, create_app(lp, token, refresh_s), threaded=True, request_handler=_PathOnlyLog)
    ready(f"http://{host if ':' not in host else '[' + host + ']'}:{server.server_port}/")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
