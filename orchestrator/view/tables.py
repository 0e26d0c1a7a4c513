"""The views' tables and series: plain rows from a :class:`~.source.CampaignSource` (no HTML, no plots).

Units are in the column names: s, eV/atom, eV/Å, K, bar.
"""

from __future__ import annotations

import datetime
import re
from collections import Counter
from dataclasses import dataclass, field

from firegen.campaign.conditions import MDCondition
from firegen.orchestrator.report import iteration_rows, label_counts
from firegen.orchestrator.view.source import CampaignSource, utc

#: The per-iteration table as papers print it.
ITERATION_COLUMNS = ["iteration", "stage", "ensemble", "T (K)", "P (bar)", "MD steps", "candidates", "duplicates",
                     "selected",
                     "labeled", "failed labels", "accurate %", "devi/err", "decision", "reason"]
#: What the deviation histograms count.
FRACTIONS = ("accurate", "candidate", "failed")


def iteration_table(src: CampaignSource) -> list[dict]:
    """The per-iteration table (:data:`ITERATION_COLUMNS`), from the iterations and their label tallies."""
    return iteration_rows(src.store, src.name, src.iterations, src.campaign)


def headline(src: CampaignSource) -> dict:
    """The campaign's state in a few numbers: status, stage, iteration, labels, models, Fireworks by state."""
    doc = src.campaign
    stage = doc.get("stage") or 0
    states = Counter()
    for (_, _, state), n in src.states.items():
        states[state] += n
    labeled = sum(n for (_, status), n in label_counts(src.store, src.name, src.iterations, doc).items()
                  if status == "labeled")
    created = utc(doc.get("created"))
    return {"status": doc.get("status"), "stage": stage,
            "stage name": (src.stages[stage].get("name") if stage < len(src.stages) else None) or str(stage),
            "iteration": doc.get("iteration"), "labeled": labeled, "models": len(src.models),
            "fireworks": dict(sorted(states.items())),
            "completed": states.get("COMPLETED", 0) + int(doc.get("archived_fireworks") or 0),  # + finished iterations
            "running": states.get("RUNNING", 0), "created": created,
            "reason": doc.get("stop_reason") or ((src.iterations[-1].get("decision") or {}).get("reason", "")
                                                 if src.iterations else "")}


def condition_label(condition: dict | None) -> str:
    """``"nvt T=300K"`` etc. for a stored condition (its text as stored when it cannot be rebuilt)."""
    if not condition:
        return "?"
    try:
        return MDCondition(**condition).label()
    except (TypeError, ValueError):
        return str(condition.get("key") or condition)


@dataclass
class TaskRow:
    """One exploration task (system, condition) of a stage across the iterations that explored it.

    Attributes:
        stage, stage_name, key: the task (``key`` is ``"<system>|c<k>"``).
        label: ``"<stage> · <system> · <condition>"``.
        ratios: iteration -> accurate / candidate / failed fractions and ``total`` frames.
        converged_at: the iteration after which the task counted as converged, or None.
    """

    stage: int
    stage_name: str
    key: str
    label: str
    ratios: dict[int, dict] = field(default_factory=dict)
    converged_at: int | None = None


def _task_order(row: TaskRow) -> tuple:
    system, _, condition = row.key.rpartition("|c")
    return row.stage, system, int(condition) if condition.isdigit() else 0


def task_rows(src: CampaignSource) -> list[TaskRow]:
    """Every (stage, task) explored, with its fractions per iteration and where it converged."""
    rows: dict[tuple[int, str], TaskRow] = {}
    for it in src.iterations:
        stage_name = it.get("stage_name") or str(it["stage"])
        for key, ex in (it.get("explorations") or {}).items():
            row = rows.setdefault((it["stage"], key), TaskRow(
                it["stage"], stage_name, key, f"{stage_name} · {ex.get('system', key)} · "
                                              f"{condition_label(ex.get('condition'))}"))
            total = ex.get("total") or 0
            row.ratios[it["index"]] = {**{k: (ex.get(k) or 0) / total if total else 0.0 for k in FRACTIONS},
                                       "total": total}
        for key, status in ((it.get("decision") or {}).get("tasks") or {}).items():
            row = rows.get((it["stage"], key))
            if row is not None and status == "converged" and row.converged_at is None:
                row.converged_at = it["index"]
    return sorted(rows.values(), key=_task_order)


def fractions_by_iteration(src: CampaignSource) -> list[dict]:
    """Per iteration with frames: ``iteration``, ``stage``, the accurate / candidate / failed fractions, ``total``."""
    rows = []
    for it in src.iterations:
        counts = it.get("counts") or {}
        if not counts.get("total"):
            continue
        rows.append({"iteration": it["index"], "stage": it.get("stage_name") or str(it["stage"]),
                     "total": counts["total"], **{k: counts.get(k, 0) / counts["total"] for k in FRACTIONS}})
    return rows


def deviation_histograms(src: CampaignSource) -> list[tuple[int, list[float], list[int]]]:
    """Per explored iteration: ``(index, bin edges in eV/Å, frames per bin)`` of the max force deviation,
    summed over its explorations (those binned like its first one)."""
    out = []
    for it in src.iterations:
        edges, hist = None, None
        for ex in (it.get("explorations") or {}).values():
            if not ex.get("max_devi_f_edges"):
                continue
            if edges is None:
                edges, hist = list(ex["max_devi_f_edges"]), [0] * len(ex["max_devi_f_hist"])
            if list(ex["max_devi_f_edges"]) == edges:
                hist = [a + b for a, b in zip(hist, ex["max_devi_f_hist"])]
        if edges is not None and sum(hist):
            out.append((it["index"], edges, hist))
    return out


def label_budget(src: CampaignSource) -> list[dict]:
    """What the labels cost, by the iteration that picked them (``init``: the initial data): picked,
    labeled, failed, labeler seconds and seconds per label; under ``selection.budget`` also the picks over
    budget and the estimated and allowed CPU-hours."""
    doc = src.campaign
    rows = [{"picked by": "init", "picked": None, **(doc.get("initial_labels") or {}),
             "labeler s": (doc.get("timings") or {}).get("init_label_s", 0.0)}]
    for it in src.iterations:
        budget = it.get("budget") or {}
        rows.append({"picked by": str(it["index"]), "picked": it.get("selected"), **(it.get("labels") or {}),
                     "labeler s": (it.get("timings") or {}).get("label_s", 0.0),
                     **({"over budget": budget["over_budget"], "estimated CPU-h": budget["estimated_cpu_hours"],
                         "allowed CPU-h": budget["cpu_hours"]} if "cost_model" in budget else {})})
    for row in rows:
        row.setdefault("labeled", 0)
        row.setdefault("failed", 0)
        row["s per label"] = row["labeler s"] / row["labeled"] if row["labeled"] else None
    return [r for r in rows if r["labeled"] or r["failed"] or r["picked"] or r["labeler s"]]


def label_failures(src: CampaignSource) -> list[dict]:
    """Every failed label attempt, oldest first: picked by, configuration id, reason, error type, Firework, when."""
    rows = [{"picked by": "init", **f} for f in src.campaign.get("initial_label_failures") or []]
    for it in src.iterations:
        rows += [{"picked by": str(it["index"]), **f} for f in it.get("label_failures") or []]
    return rows


def failure_reasons(failures: list[dict], width: int = 120) -> list[dict]:
    """How often each reason came (its first line, numbers masked so that like failures group), most first."""
    counts = Counter(re.sub(r"\d+(\.\d+)?", "#", (f.get("reason") or "").splitlines()[0] if f.get("reason") else "")
                     [:width] for f in failures)
    return [{"reason": reason or "(none given)", "attempts": n} for reason, n in counts.most_common()]


def _metric(model: dict, part: str, name: str) -> float | None:
    value = ((model.get("metrics") or {}).get(part) or {}).get(name)
    return None if value is None or value != value else float(value)  # NaN: no frames


def model_rows(src: CampaignSource) -> list[dict]:
    """One row per committee member: energy (E) and force (F) RMSE on its held-out and its training frames
    (eV/atom, eV/Å), frames, seconds, dataset."""
    return [{"iteration": m["iteration"], "member": m["member"], "seed": m.get("seed"),
             "E held-out (eV/atom)": _metric(m, "validation", "rmse_e_per_atom"),
             "F held-out (eV/Å)": _metric(m, "validation", "rmse_f"),
             "E train (eV/atom)": _metric(m, "train", "rmse_e_per_atom"),
             "F train (eV/Å)": _metric(m, "train", "rmse_f"),
             "frames train": m.get("n_train"), "frames held out": m.get("n_validation"),
             "train s": m.get("train_seconds"), "_id": m["_id"], "dataset_id": m.get("dataset_id"),
             "sha256": m.get("sha256")} for m in src.models]


@dataclass(frozen=True)
class LaunchBar:
    """One launch on the timeline: its worker, Firework, and span in seconds since the campaign's first launch."""

    worker: str
    fw_id: int
    name: str
    kind: str
    iteration: int | None
    state: str
    start_s: float
    seconds: float


def launch_bars(src: CampaignSource, now: datetime.datetime | None = None) -> list[LaunchBar]:
    """Every launch that started, by start; a launch still running ends ``now``."""
    now = now or datetime.datetime.now(datetime.timezone.utc)
    fws = {fw["fw_id"]: fw for fw in src.fireworks}
    started = [la for la in src.launches if la.get("time_start")]
    if not started:
        return []
    t0 = min(utc(la["time_start"]) for la in started)
    bars = []
    for la in started:
        fw = fws.get(la["fw_id"], {})
        about = (fw.get("spec") or {}).get("firegen") or {}
        start = utc(la["time_start"])
        end = utc(la.get("time_end")) or (now if la.get("state") == "RUNNING" else start)
        worker = f"{(la.get('fworker') or {}).get('name', '?')} @ {la.get('host') or '?'}"
        bars.append(LaunchBar(worker, la["fw_id"], fw.get("name", str(la["fw_id"])), about.get("kind", "?"),
                              about.get("iteration"), la.get("state", "?"), (start - t0).total_seconds(),
                              max(0.0, (end - start).total_seconds())))
    return sorted(bars, key=lambda b: (b.start_s, b.fw_id))


def worker_rows(bars: list[LaunchBar]) -> list[dict]:
    """Per worker: launches, busy seconds, idle seconds between its first start and its last end (the gaps),
    the longest gap, and the idle share."""
    rows = []
    for worker in sorted({b.worker for b in bars}):
        mine = sorted((b for b in bars if b.worker == worker), key=lambda b: b.start_s)
        busy = idle = longest = 0.0
        end = mine[0].start_s
        for bar in mine:
            gap = max(0.0, bar.start_s - end)
            idle, longest = idle + gap, max(longest, gap)
            busy += bar.seconds
            end = max(end, bar.start_s + bar.seconds)
        span = end - mine[0].start_s
        rows.append({"worker": worker, "launches": len(mine), "busy s": busy, "idle s": idle,
                     "longest idle s": longest, "idle %": 100 * idle / span if span else 0.0})
    return rows


def explore_conditions(src: CampaignSource) -> dict[int, str]:
    """``fw_id`` of each explore Firework -> the label of the condition it ran (for configuration origins)."""
    by_iteration = {it["index"]: it.get("explorations") or {} for it in src.iterations}
    out = {}
    for fw in src.fireworks:
        about = (fw.get("spec") or {}).get("firegen") or {}
        if about.get("kind") != "explore":
            continue
        key = f"{str(about.get('system', '')).replace('.', '_')}|c{about.get('condition')}"
        ex = by_iteration.get(about.get("iteration"), {}).get(key)
        out[fw["fw_id"]] = condition_label(ex.get("condition")) if ex else f"condition {about.get('condition')}"
    return out


def member_rows(members: list[dict], conditions: dict[int, str]) -> list[dict]:
    """A snapshot's members (as its pages hold them) as rows: id, hash, origin, condition, energy, labeler."""
    rows = []
    for m in members:
        origin, label = m.get("origin") or {}, m.get("label") or {}
        rows.append({"_id": m["_id"], "hash": (m.get("hash") or "")[:12], "origin": origin.get("kind"),
                     "iteration": origin.get("iteration"), "stage": origin.get("stage_name", origin.get("stage")),
                     "system": origin.get("system"), "condition": conditions.get(origin.get("fw_id"), "")
                     if origin.get("kind") == "explored" else "", "frame": origin.get("frame"),
                     "Firework": origin.get("fw_id"), "energy (eV)": label.get("energy"),
                     "labeler": label.get("code"), "host": label.get("host"), "label s": label.get("walltime")})
    return rows


# the final model and the properties (``firegen finalize``, ``firegen properties run``) ------------------------
#: The final model's validation table (energy and virial per atom, force per Cartesian component).
FINAL_COLUMNS = ["frames", "set", "E RMSE (eV/atom)", "E MAE (eV/atom)", "F RMSE (eV/Å)", "F MAE (eV/Å)",
                 "V RMSE (eV/atom)", "V MAE (eV/atom)"]
PROPERTY_COLUMNS = ["system", "run", "T (K)", "P (bar)", "density (g/cm³)", "density ± (g/cm³)", "σ (S/cm)",
                    "σ ± (S/cm)", "frames", "production (ps)", "engine", "seed"]
DIFFUSION_COLUMNS = ["system", "run", "species", "D (cm²/s)", "D ± (cm²/s)", "diffusive", "MSD log-log slope",
                     "fit window (ps)", "atoms"]
ARRHENIUS_COLUMNS = ["system", "quantity", "E_a (eV)", "E_a ± (eV)", "T (K)", "at (K)", "value", "value ±", "unit",
                     "note"]


def _validation_row(name: str, metrics: dict, frames) -> dict:
    return {"set": name, "frames": metrics.get("n_frames", frames),
            "E RMSE (eV/atom)": metrics.get("rmse_e_per_atom"), "E MAE (eV/atom)": metrics.get("mae_e_per_atom"),
            "F RMSE (eV/Å)": metrics.get("rmse_f"), "F MAE (eV/Å)": metrics.get("mae_f"),
            "V RMSE (eV/atom)": metrics.get("rmse_v_per_atom"), "V MAE (eV/atom)": metrics.get("mae_v_per_atom")}


def final_model_rows(model: dict) -> list[dict]:
    """The final model's errors: on all held-out frames, per system, per (system, condition), and on its
    training frames (the ``set`` column names which; values as stored)."""
    metrics = model.get("metrics") or {}
    groups = model.get("validation_groups") or {}
    rows = []
    if metrics.get("validation"):
        rows.append(_validation_row("held-out, all", metrics["validation"], model.get("n_validation")))
    for system, m in sorted((groups.get("per_system") or {}).items()):
        rows.append(_validation_row(f"held-out, {system}", m, None))
    for group, m in sorted((groups.get("per_condition") or {}).items()):
        rows.append(_validation_row(f"held-out, {group}", m, None))
    if metrics.get("train"):
        rows.append(_validation_row("training frames", metrics["train"], model.get("n_train")))
    return rows


def md_properties(docs: list[dict]) -> list[dict]:
    """The MD runs among ``properties`` documents (``kind: md``), by system and temperature."""
    return [d for d in docs if d.get("kind") == "md"]


def property_rows(docs: list[dict]) -> list[dict]:
    """One row per property MD run: density and conductivity with their errors, as stored (g/cm³, S/cm)."""
    rows = []
    for d in md_properties(docs):
        md, r = d.get("md") or {}, d.get("results") or {}
        dens, cond = r.get("density") or {}, r.get("conductivity") or {}
        rows.append({"_id": d["_id"], "system": d.get("system"), "run": md.get("label"), "run id": run_id(d),
                     "T (K)": md.get("temperature_K"), "P (bar)": md.get("pressure_bar"),
                     "density (g/cm³)": dens.get("density_g_cm3"), "density ± (g/cm³)": dens.get("error_g_cm3"),
                     "σ (S/cm)": cond.get("sigma_S_cm"), "σ ± (S/cm)": cond.get("error_S_cm"),
                     "frames": r.get("n_frames"), "production (ps)": md.get("production_ps"),
                     "engine": md.get("engine"), "seed": md.get("seed")})
    return rows


def run_id(doc: dict) -> str:
    """``"<system>/<run label>"``: names a property run in tables (``data-field``) and figures."""
    return f"{doc.get('system')}/{(doc.get('md') or {}).get('label')}"


def diffusion_rows(docs: list[dict]) -> list[dict]:
    """One row per (run, species): D and its block error (cm²/s), whether it is one (``diffusive``: no for a
    plateau or a slope within its errors; '-' for runs analysed before the flag) with the MSD's log-log slope over
    the fit window, and that window (ps)."""
    rows = []
    for d in md_properties(docs):
        for species, x in ((d.get("results") or {}).get("diffusion") or {}).items():
            rows.append({"key": f"{run_id(d)}/{species}", "system": d.get("system"),
                         "run": (d.get("md") or {}).get("label"), "species": species, "D (cm²/s)": x.get("D_cm2_s"),
                         "D ± (cm²/s)": x.get("error_cm2_s"),
                         "diffusive": {True: "yes", False: "no"}.get(x.get("diffusive"), "-"),
                         "MSD log-log slope": x.get("msd_exponent"),
                         "fit window (ps)": f"{x.get('fit_start_ps', 0):.4g}–{x.get('fit_end_ps', 0):.4g}",
                         "atoms": x.get("n_atoms")})
    return rows


def arrhenius_rows(docs: list[dict]) -> list[dict]:
    """One row per Arrhenius fit: of σ (``ln σT``) and of each species' D (``ln D``), with E_a (eV) and the
    value extrapolated (S/cm or cm²/s), each with its error; fits that could not be made give their reason."""
    rows = []
    for d in docs:
        if d.get("kind") != "arrhenius":
            continue
        r = d.get("results") or {}
        temps = ", ".join(f"{t:g}" for t in r.get("temperatures_K") or [])
        fits = ([("σ", r["conductivity"], "S/cm")] if r.get("conductivity") else []) + [
            (f"D({s})", f, "cm²/s") for s, f in (r.get("diffusion") or {}).items()]
        for quantity, fit, unit in fits:
            rows.append({"key": f"{d.get('system')}/{quantity}", "system": d.get("system"), "quantity": quantity,
                         "E_a (eV)": fit.get("activation_energy_eV"), "E_a ± (eV)": fit.get("activation_energy_error_eV"),
                         "T (K)": temps, "at (K)": fit.get("extrapolated_T_K"), "value": fit.get("extrapolated"),
                         "value ±": fit.get("extrapolated_error"), "unit": unit})
        for what, why in (r.get("skipped") or {}).items():
            name = "σ" if what == "conductivity" else f"D({what})"
            rows.append({"key": f"{d.get('system')}/{name}", "system": d.get("system"), "quantity": name,
                         "T (K)": temps, "unit": "S/cm" if name == "σ" else "cm²/s", "note": f"no fit: {why}"})
    return rows


#: The physics-aware convergence table (``converged_when.observables``): one row per iteration and observable.
OBSERVABLE_COLUMNS = ["iteration", "observable", "members", "mean", "unit", "spread", "change", "tolerance", "met",
                      "why"]


def observable_rows(src: CampaignSource) -> list[dict]:
    """Each decided iteration's observables as its decision stored them: every member's value (density in g/cm³,
    D in cm²/s; for an RDF its R-factor against the committee mean), the mean, the members' spread and the change
    since the previous iteration (fractions), and whether the observable was met."""
    rows = []
    for it in src.iterations:
        for o in (it.get("decision") or {}).get("observables") or []:
            rows.append({"key": f"{it['index']}/{o['key']}", "iteration": it["index"], "observable": o["key"],
                         "members": ", ".join(f"{m} {text_of_number(v)}" for m, v in sorted(o["members"].items())),
                         "mean": o.get("mean"), "unit": o.get("unit"), "spread": o.get("spread"),
                         "change": o.get("change"), "tolerance": o.get("tolerance"), "met": bool(o.get("met")),
                         "why": o.get("why")})
    return rows


def text_of_number(value) -> str:
    return f"{value:.4g}" if isinstance(value, (int, float)) else str(value)
