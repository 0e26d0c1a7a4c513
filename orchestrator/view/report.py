"""``firegen report``: every view of one campaign in one HTML file that opens offline.

The file holds Plotly's JavaScript and every figure's data; links between models, dataset snapshots
and configurations are anchors inside the file. The configurations listed are the members of the
latest snapshot (every label the campaign trained on), up to :data:`MAX_MEMBERS`.
"""

from __future__ import annotations

from pathlib import Path

from firegen.orchestrator.view import sections as sec
from firegen.orchestrator.view import tables
from firegen.orchestrator.view.links import ReportLinks
from firegen.orchestrator.view.pages import NavItem, html_page
from firegen.orchestrator.view.render import fragment, table
from firegen.orchestrator.view.source import CampaignSource

#: Configurations the report lists at most (the dashboard pages through any number).
MAX_MEMBERS = 20000


def _is_prefix(short: dict, long: dict) -> bool:
    """Whether a snapshot's parts are the first parts of another's (its members the first members)."""
    a, b = short.get("parts") or {}, long.get("parts") or {}
    n = len(a.get("datasets") or [])
    return all((a.get(k) or []) == (b.get(k) or [])[:n] for k in ("datasets", "sizes", "page_sizes"))


def member_sections(src: CampaignSource, links: ReportLinks, members: list[dict]) -> list[sec.Section]:
    """The latest snapshot's members, one table per part (the labels added for one snapshot), rows anchored."""
    latest = src.snapshots[-1]
    iteration_of = {str(d["_id"]): d["iteration"] for d in src.snapshots}
    parts = latest.get("parts") or {"datasets": [latest["_id"]], "sizes": [len(members)]}
    rows = tables.member_rows(members, tables.explore_conditions(src))
    out, start = [], 0
    for owner, size in zip(parts["datasets"], parts["sizes"]):
        chunk = rows[start:start + size]
        for k, r in enumerate(chunk, start + 1):
            r["row"], r["configuration"] = k, str(r["_id"])
        html = fragment("table.html", table=table(
            chunk, ["row", *sec.MEMBER_COLUMNS], "members", key="configuration",
            links={"iteration": lambda r: links.iteration(r["iteration"])}, row_id=lambda r: f"cfg-{r['_id']}"),
            note="", empty="not listed (the report lists at most %d configurations)" % MAX_MEMBERS, pager=None)
        out.append(sec.Section(f"part-{owner}", f"configurations added for the snapshot of iteration "
                               f"{iteration_of.get(str(owner), '?')} (rows {start + 1}–{start + size})",
                               "Origin (iteration, stage, system, condition, frame, Firework) and label of each; "
                               "energy in eV, label time in s.", html=html, anchor=f"part-{owner}"))
        start += size
    return out


def snapshot_rows_note(src: CampaignSource) -> str:
    latest = src.snapshots[-1]
    spans = [f"iteration {d['iteration']}: rows 1–{d.get('size', 0)}" for d in src.snapshots if _is_prefix(d, latest)]
    return ("Snapshots are cumulative: each holds the first rows of the configuration tables below (" +
            "; ".join(spans) + ").") if spans else ""


def report_sections(src: CampaignSource) -> list[sec.Section]:
    """Every section of the campaign, lineage links as anchors in the file."""
    latest = src.snapshots[-1] if src.snapshots else None
    members = src.store.snapshot_members_page(latest, 0, MAX_MEMBERS) if latest else []
    links = ReportLinks(m["_id"] for m in members)
    datasets = sec.datasets(src, links)
    if latest:
        datasets.note += " " + snapshot_rows_note(src)
    return [*sec.overview(src, links), *sec.models(src, links), *sec.results(src, links), *sec.labels(src, links),
            *sec.timeline(src, links),
            datasets, *(member_sections(src, links, members) if latest else [])]


def write_report(src: CampaignSource, path: Path) -> Path:
    """Write the campaign's report to ``path`` (folders made as needed); returns the path."""
    sections = report_sections(src)
    nav = [NavItem(s.title.split(" (")[0], f"#sec-{s.id}") for s in sections
           if s.id in ("iterations", "tasks", "deviation", "learning", "parity", "final", "properties", "budget",
                       "failures", "timeline", "datasets")]
    html = html_page(f"firegen report: {src.name}", sections, nav)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(html, encoding="utf-8")
    return path
