"""The sections the report and the dashboard show, each a titled piece of HTML and/or a Plotly figure.

A page is a list of :class:`Section`; the report file strings every campaign page together, the
dashboard serves them one page at a time (and again as JSON when the page asks for an update). The
dashboard's pages of one model, dataset or configuration are in :mod:`.lineage`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from firegen.orchestrator.view import figures, tables
from firegen.orchestrator.view.render import fragment, script_json, table
from firegen.orchestrator.view.source import CampaignSource

#: Rows of a paged list on the dashboard.
PAGE_ROWS = 100
MODEL_COLUMNS = ["iteration", "member", "seed", "E held-out (eV/atom)", "F held-out (eV/Å)", "E train (eV/atom)",
                 "F train (eV/Å)", "frames train", "frames held out", "train s", "dataset"]
MEMBER_COLUMNS = ["configuration", "hash", "origin", "iteration", "stage", "system", "condition", "frame", "Firework",
                  "energy (eV)", "labeler", "host", "label s"]


@dataclass
class Section:
    """One block of a page: ``html`` (tables, numbers, links) and/or a Plotly ``figure`` (its JSON as a dict)."""

    id: str
    title: str
    note: str = ""
    html: str = ""
    figure: dict | None = None
    anchor: str | None = None

    @property
    def figure_json(self) -> str:
        return script_json(self.figure)

    def as_json(self) -> dict:
        return {"id": self.id, "html": self.html, "figure": self.figure}


def _figure(fig) -> dict:
    return json.loads(fig.to_json())


def empty_html(text: str) -> str:
    return f'<p class="empty">{text}</p>'


def pager(skip: int, limit: int, total: int, href) -> dict | None:
    """Links to the previous and next page of a list (``href(skip)`` gives a page's address)."""
    if total <= limit and skip == 0:
        return None
    return {"first": min(total, skip + 1), "last": min(total, skip + limit), "total": total,
            "previous": href(max(0, skip - limit)) if skip > 0 else None,
            "next": href(skip + limit) if skip + limit < total else None}


# the campaign pages ---------------------------------------------------------------------------------
def headline(src: CampaignSource, links) -> Section:
    h = tables.headline(src)
    states = ", ".join(f"{n} {s}" for s, n in h["fireworks"].items()) or "none yet"
    archived = h["completed"] - h["fireworks"].get("COMPLETED", 0)
    if archived:
        states += f" on the LaunchPad, {archived} COMPLETED moved to the archive with their finished iterations"
    facts = [{"name": "status", "key": "status", "value": h["status"]},
             {"name": "stage", "key": "stage", "value": h["stage name"]},
             {"name": "iteration", "key": "iteration", "value": h["iteration"], "href": links.iteration(h["iteration"])},
             {"name": "labels", "key": "labeled", "value": h["labeled"]},
             {"name": "models", "key": "models", "value": h["models"]},
             {"name": "Fireworks running", "key": "running", "value": h["running"]},
             {"name": "Fireworks completed", "key": "completed", "value": h["completed"]}]
    return Section("headline", f"campaign {src.name}",
                   html=fragment("facts.html", facts=[{"href": None, **f} for f in facts],
                                 note=f"Fireworks: {states}. {h['reason']}"))


def iteration_table(src: CampaignSource, links) -> Section:
    rows = tables.iteration_table(src)
    warnings = [f"Warning: {it['calibration']['warning']}." for it in src.iterations
                if (it.get("calibration") or {}).get("warning")]
    html = fragment("table.html", table=table(rows, tables.ITERATION_COLUMNS, "iterations", key="iteration",
                                              row_id=lambda r: f"it-{r['iteration']}"),
                    note=" ".join(warnings), empty="no iteration yet", pager=None)
    return Section("iterations", "iterations", "T in K, P in bar; candidates: frames with f_lo ≤ max force deviation < f_hi; "
                   "duplicates: candidates within the fingerprint tolerance of another, not labeled; "
                   "labeled / failed labels: of the candidates the iteration selected; accurate %: frames below f_lo; "
                   "devi/err: the committee's mean max force deviation over its mean max force error on its "
                   "validation frames (near 0: its members agree however wrong they are; ! below "
                   "committee.warn_deviation_below).",
                   html=html)


def fractions(src: CampaignSource, links) -> Section:
    rows = tables.fractions_by_iteration(src)
    return Section("fractions", "accurate, candidate and failed frames per iteration",
                   "Share of every frame the iteration's explorations ran (failed: at or above f_hi, or cut as unphysical).",
                   html="" if rows else empty_html("no exploration finished yet"),
                   figure=_figure(figures.fractions_figure(rows)) if rows else None)


def task_map(src: CampaignSource, links) -> Section:
    rows = tables.task_rows(src)
    return Section("tasks", "per task: accurate frames over iterations",
                   "One row per (stage, system, condition); a star marks the iteration after which the task counted "
                   "as converged (it is not explored again).",
                   html="" if rows else empty_html("no exploration finished yet"),
                   figure=_figure(figures.task_heatmap(rows)) if rows else None)


def deviations(src: CampaignSource, links) -> list[Section]:
    hists = tables.deviation_histograms(src)
    empty = "" if hists else empty_html("no exploration finished yet")
    note = (f"Max force deviation of the committee over every explored frame (eV/Å, log scale) of the last 12 "
            f"iterations; trust levels f_lo = {src.trust[0]:g}, f_hi = {src.trust[1]:g} eV/Å. A campaign that learns "
            "moves the distribution left.")
    return [Section("deviation", "model deviation per iteration", note, html=empty,
                    figure=_figure(figures.deviation_lines(hists, src.trust)) if hists else None),
            Section("deviation-map", "model deviation over iterations", "The same distributions, one column per iteration.",
                    html=empty, figure=_figure(figures.deviation_heatmap(hists, src.trust)) if hists else None)]


def observables(src: CampaignSource, links) -> list[Section]:
    """The stage observables of physics-aware convergence per iteration (none: no section)."""
    rows = tables.observable_rows(src)
    if not rows:
        return []
    return [Section("observables", "observables per iteration",
                    "Each committee member's value on its own short MD (density g/cm³, D cm²/s; RDF: the member's "
                    "R-factor against the committee mean); spread and change (since the previous iteration of the "
                    "stage) are fractions compared with the tolerance; the stage converges only when every one is met.",
                    html=fragment("table.html", table=table(rows, tables.OBSERVABLE_COLUMNS, "observables", key="key",
                                                            links={"iteration": lambda r: links.iteration(r["iteration"])}),
                                  note="", empty="", pager=None))]


def overview(src: CampaignSource, links) -> list[Section]:
    return [headline(src, links), iteration_table(src, links), *observables(src, links), fractions(src, links),
            task_map(src, links), *deviations(src, links)]


def model_table(src: CampaignSource, links, rows: list[dict] | None = None) -> Section:
    """Every model with its RMSEs, linked to its page and to its dataset snapshot (``rows``: when made already)."""
    rows = tables.model_rows(src) if rows is None else rows
    sizes = {d["_id"]: d.get("size") for d in src.snapshots}
    for r in rows:
        r["dataset"] = f"{sizes[r['dataset_id']]} labels" if r["dataset_id"] in sizes else None
    html = fragment("table.html", table=table(
        rows, MODEL_COLUMNS, "models", links={"iteration": lambda r: links.model(r["_id"]),
                                              "member": lambda r: links.model(r["_id"]),
                                              "dataset": lambda r: links.dataset(r["dataset_id"])},
        row_id=lambda r: f"model-{r['_id']}"), note="", empty="no model trained yet", pager=None)
    return Section("models", "models", "RMSE of energy (E) and forces (F) on the held-out and the training frames. "
                   "Each model links to its page, its dataset snapshot to the configurations it was trained on.",
                   html=html)


def models(src: CampaignSource, links) -> list[Section]:
    rows = tables.model_rows(src)
    committee = [r for r in rows if r["iteration"] >= 0]  # the final model (iteration -1) is not on the curve
    iteration, predictions = src.latest_predictions
    n = sum(len(p["energy_label"]) for p in predictions[:1])
    return [
        Section("learning", "learning curve", "RMSE of every committee member on its held-out frames (solid) and on "
                "its training frames (dotted), per iteration; log scale.",
                html="" if committee else empty_html("no model trained yet"),
                figure=_figure(figures.learning_curve(committee)) if committee else None),
        Section("parity", "parity of the latest committee" + (f" (iteration {iteration})" if iteration is not None else ""),
                f"Model against label on the {n} held-out frames (chosen by content hash, never trained on)."
                if predictions else "", html="" if predictions else empty_html(
                    "no held-out predictions yet (a committee stores them when at least 2 frames are held out)"),
                figure=_figure(figures.parity_figure(predictions)) if predictions else None),
        model_table(src, links, rows)]


def final_model(src: CampaignSource, links) -> list[Section]:
    """The final model (``firegen finalize``): what it is, its errors per system and condition, its parity plots."""
    model = src.final_model
    if model is None:
        return [Section("final", "final model", html=empty_html(
            f"no final model yet: `firegen finalize {src.name}` trains one on every label (or `final: {{at_end: true}}`)"))]
    compressed = "yes" if model.get("compressed_file_id") else f"no ({model.get('compress_error') or 'not run'})"
    facts = [{"name": "model", "key": "final-model", "value": str(model["_id"]), "href": links.model(model["_id"])},
             {"name": "dataset snapshot", "key": "final-dataset", "value": "snapshot",
              "href": links.dataset(model.get("dataset_id"))},
             {"name": "frames train", "key": "final-n-train", "value": model.get("n_train")},
             {"name": "frames held out", "key": "final-n-validation", "value": model.get("n_validation")},
             {"name": "training steps", "key": "final-steps", "value": src.final_steps},
             {"name": "train s", "key": "final-train-s", "value": model.get("train_seconds")},
             {"name": "compressed", "key": "final-compressed", "value": compressed}]
    rows = tables.final_model_rows(model)
    html = facts_html(facts) + fragment("table.html", table=table(rows, tables.FINAL_COLUMNS, "final", key="set"),
                                    note="", empty="no held-out frames (final.validation_fraction 0?)", pager=None)
    parity = src.final_predictions
    return [Section("final", "final model", "Trained on every label of the campaign with the final settings. Errors on "
                    "its held-out frames (never trained on) per system and per (system, condition), and on its training "
                    "frames: energy and virial in eV/atom, force components in eV/Å.", html=html),
            Section("final-parity", "parity of the final model",
                    f"Model against label on {len(parity['energy_label'])} held-out frames: energy per atom (eV/atom) and "
                    f"{len(parity['force_label'])} force components (eV/Å)." if parity else "",
                    html="" if parity else empty_html("no held-out predictions stored for the final model"),
                    figure=_figure(figures.parity_figure([parity], ["final model"])) if parity else None)]


def properties(src: CampaignSource, links) -> list[Section]:
    """The stored properties: density, conductivity, D per species, Arrhenius fits, RDFs per system."""
    docs = src.properties
    runs = tables.property_rows(docs)
    if not docs:
        return [Section("properties", "properties", html=empty_html(
            f"no property computed yet: `firegen properties run {src.name} --system S --temperatures T1,T2`"))]
    model_ids = sorted({str(d.get("model_id")) for d in docs})
    out = [Section("properties", "properties from MD",
                   "Production MD with model " + ", ".join(model_ids) + ": density (g/cm³) block-averaged with its "
                   "standard error; Nernst–Einstein conductivity σ (S/cm) with the propagated error; T in K, P in bar.",
                   html=fragment("table.html", table=table(runs, tables.PROPERTY_COLUMNS, "properties", key="run id"),
                                 note="", empty="no MD run finished", pager=None)),
           Section("diffusion", "diffusion coefficients",
                   "D = slope/6 of the mean squared displacement (every time origin, centre-of-mass drift removed) over "
                   "the fit window; ± is the standard error over independent blocks (cm²/s).",
                   html=fragment("table.html", table=table(tables.diffusion_rows(docs), tables.DIFFUSION_COLUMNS,
                                                           "diffusion", key="key"),
                                 note="", empty="no MD run finished", pager=None))]
    fits = [d for d in docs if d.get("kind") == "arrhenius"]
    arrhenius_rows = tables.arrhenius_rows(docs)
    systems = sorted({d.get("system") for d in tables.md_properties(docs)})
    if arrhenius_rows:
        out.append(Section("arrhenius", "Arrhenius fits",
                           "Weighted fits of ln(σT) and ln D against 1/(k_B T): activation energy E_a (eV) and the value "
                           "extrapolated to 'at (K)', errors from the fit's covariance.",
                           html=fragment("table.html", table=table(arrhenius_rows, tables.ARRHENIUS_COLUMNS,
                                                                   "arrhenius", key="key"),
                                         note="", empty="", pager=None)))
    for system in systems:
        mine = [d for d in tables.md_properties(docs) if d.get("system") == system]
        drawn = figures.arrhenius_figure(mine, [f for f in fits if f.get("system") == system])
        # a log axis draws no value ≤ 0 (no diffusion seen): without a positive point or a fit, no plot
        if len(mine) > 1 and any(v > 0 for trace in drawn.data for v in (trace.y or [])):
            out.append(Section("arrhenius-" + _anchor(system), f"σ and D against 1000/T: {system}",
                               "Each run's value with its error bar; dotted: the stored Arrhenius fit, drawn down to "
                               "the temperature it was extrapolated to.", figure=_figure(drawn)))
    for system in systems:
        mine = [d for d in tables.md_properties(docs) if d.get("system") == system]
        if any((d.get("results") or {}).get("rdf") for d in mine):
            out.append(Section("rdf-" + _anchor(system), f"radial distribution functions: {system}",
                               "Total and partial g(r) per element pair (ASE, averaged over the run's frames); r in Å.",
                               figure=_figure(figures.rdf_figure(mine))))
    return out


def _anchor(name) -> str:
    """A system's name as part of a section id."""
    return re.sub(r"[^\w-]", "_", str(name))


def results(src: CampaignSource, links) -> list[Section]:
    """The dashboard's page of what the campaign produced: its final model and the properties computed with it."""
    return [*final_model(src, links), *properties(src, links)]


def lineage(src: CampaignSource, links) -> list[Section]:
    """Models and the dataset snapshots they were trained on (each leads to its configurations)."""
    return [model_table(src, links), datasets(src, links)]


def labels(src: CampaignSource, links, skip: int = 0, limit: int | None = None, href=None) -> list[Section]:
    budget = tables.label_budget(src)
    failures = tables.label_failures(src)
    shown = failures[skip:skip + limit] if limit else failures
    for f in shown:
        f["configuration"] = str(f.get("config_id"))
    columns = ["picked by", "picked", "labeled", "failed", "labeler s", "s per label"]
    if any("over budget" in r for r in budget):
        columns += ["over budget", "estimated CPU-h", "allowed CPU-h"]
    budget_html = fragment("table.html", table=table(budget, columns, "budget", key="picked by"),
                           note="", empty="no label yet", pager=None)
    reasons = fragment("table.html", table=table(tables.failure_reasons(failures), ["reason", "attempts"], "reasons"),
                       note="", empty="no label failed", pager=None)
    listing = fragment("table.html", table=table(shown, ["picked by", "configuration", "reason", "error_type", "fw_id",
                                                         "at"], "failures",
                                                 links={"configuration": lambda r: links.configuration(r["config_id"])}),
                       note="", empty="no label failed",
                       pager=pager(skip, limit, len(failures), href) if limit and href else None)
    about = "Labels by the iteration that picked the configurations (init: the starting structures); labeler time in s."
    if "over budget" in columns:
        about += (" selection.budget: the policy's picks it did not afford (over budget), and the CPU-hours the kept "
                  "ones were estimated to cost against those allowed.")
    return [Section("budget", "what the labels cost", about,
                    html=budget_html, figure=_figure(figures.label_budget_figure(budget)) if budget else None),
            Section("reasons", "label failures by reason", "Numbers in the reasons are masked (#) so that like failures group.",
                    html=reasons),
            Section("failures", "label failures", "Every failed attempt; a configuration relabeled later shows its "
                    "earlier failures too.", html=listing)]


def timeline(src: CampaignSource, links) -> list[Section]:
    bars = tables.launch_bars(src)
    workers = tables.worker_rows(bars)
    return [Section("timeline", "what ran where", "Every launch of the campaign's Fireworks on its worker (FireWorks' "
                    "fworker @ host); gaps between bars are idle time.", html="" if bars else empty_html("nothing ran yet"),
                    figure=_figure(figures.timeline_figure(bars)) if bars else None),
            Section("workers", "workers", "Idle: time between the worker's launches, from its first start to its last end (s).",
                    html=fragment("table.html", table=table(workers, ["worker", "launches", "busy s", "idle s",
                                                                      "longest idle s", "idle %"], "workers", key="worker"),
                                  note="", empty="nothing ran yet", pager=None))]


def datasets(src: CampaignSource, links) -> Section:
    rows = []
    for d in src.snapshots:
        parts = (d.get("parts") or {}).get("datasets") or []
        rows.append({"iteration": d["iteration"], "size": d.get("size"), "hash": d.get("hash", "")[:16],
                     "labelers": ", ".join(f"{v.get('code')} ×{v.get('n')}" for v in (d.get("labelers") or {}).values()),
                     "models": len(d.get("model_ids") or []), "parts": len(parts), "_id": d["_id"],
                     "first part": parts[0] if parts else None})
    return Section("datasets", "dataset snapshots", "The labeled configurations each iteration's committee trained "
                   "on (cumulative); its size links to its configurations.",
                   html=fragment("table.html", table=table(rows, ["iteration", "size", "hash", "labelers", "models", "parts"],
                                                           "datasets", key="iteration",
                                                           links={"iteration": lambda r: links.iteration(r["iteration"]),
                                                                  "size": lambda r: links.part(r["first part"])
                                                                  or links.dataset(r["_id"])},
                                                           row_id=lambda r: f"dataset-{r['_id']}"),
                                 note="", empty="no snapshot yet", pager=None))


def facts_html(facts: list[dict], note: str = "") -> str:
    return fragment("facts.html", facts=[{"href": None, "key": f["name"], **f} for f in facts], note=note)
