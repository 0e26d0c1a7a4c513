"""The per-iteration table that papers print, from the database at any time."""

from __future__ import annotations

from firegen.db.repository import ResultsStore

COLUMNS = ["iteration", "stage", "ensemble", "T (K)", "P (bar)", "MD steps", "tasks", "frames", "candidates",
           "duplicates", "selected", "labeled", "failed labels", "accurate %", "devi/err", "decision"]
#: ``devi/err``: the committee's mean max force deviation over its mean max force error on its validation frames
#: (:mod:`firegen.workflows.jobs.calibration`); ``!`` marks one below ``committee.warn_deviation_below``.


def label_counts(store: ResultsStore, campaign: str, iterations: list[dict], doc: dict | None) -> dict[tuple[int, str], int]:
    """``(iteration that picked them, labeled | label_failed) -> n``: from the tallies the label Fireworks
    keep on the iterations, or, for a campaign that ran before them (no ``initial_labels`` on the campaign),
    from the configurations (a read of the whole collection on the embedded FerretDB)."""
    if doc is None or "initial_labels" not in doc:
        return store.label_counts_by_iteration(campaign)
    counts = {}
    for index, tally in [(-1, doc["initial_labels"])] + [(it["index"], it.get("labels") or {}) for it in iterations]:
        counts[(index, "labeled")] = tally.get("labeled", 0)
        counts[(index, "label_failed")] = tally.get("failed", 0)
    return counts


def iteration_rows(store: ResultsStore, campaign: str, iterations: list[dict] | None = None,
                   doc: dict | None = None) -> list[dict]:
    """One row per iteration: conditions explored, counts, labels, accurate ratio, decision (and its
    ``reason``, which the text table leaves out). ``iterations`` and the campaign ``doc``: when read already."""
    iterations = store.iterations_of(campaign) if iterations is None else iterations
    doc = store.get_campaign(campaign) if doc is None else doc
    per_iteration = label_counts(store, campaign, iterations, doc)
    rows = []
    for it in iterations:
        counts = it.get("counts") or {}
        ratios = it.get("ratios") or {}
        rows.append({
            "iteration": it["index"], "stage": it.get("stage_name", it["stage"]), "ensemble": "+".join([it.get("ensemble", "")] + list(it.get("protocols") or [])),
            "T (K)": "/".join(f"{t:g}" for t in it.get("temperatures", [])),
            "P (bar)": "/".join(f"{p:g}" for p in it.get("pressures", [])) or "-",
            "MD steps": it.get("nsteps", ""), "tasks": len(it.get("explore") or it.get("explorations") or []),
            "frames": counts.get("total", ""),
            "candidates": counts.get("candidate", ""), "duplicates": it.get("duplicates", ""),
            "selected": it.get("selected", ""),
            "labeled": per_iteration.get((it["index"], "labeled"), 0),
            "failed labels": per_iteration.get((it["index"], "label_failed"), 0),
            "accurate %": f"{100 * ratios['accurate']:.1f}" if ratios else "",
            "devi/err": calibration_cell(it.get("calibration")),
            "decision": (it.get("decision") or {}).get("action", it.get("status", "")),
            "reason": (it.get("decision") or {}).get("reason", ""),
        })
    return rows


def calibration_cell(calibration: dict | None) -> str:
    """The ``devi/err`` cell: the ratio, ``!`` after it when flagged; empty when not measured."""
    if not calibration or "ratio" not in calibration:
        return ""
    return f"{calibration['ratio']:.2f}" + ("!" if calibration.get("warning") else "")


def budget_line(iterations: list[dict]) -> str | None:
    """The latest ``selection.budget`` decision in words (None: the campaign has no budget)."""
    decided = [it for it in iterations if it.get("budget")]
    if not decided:
        return None
    it = decided[-1]
    budget = it["budget"]
    if "cost_model" not in budget:
        return f"labeling budget (iteration {it['index']}): {budget.get('skipped', 'not applied')}"
    model = budget["cost_model"]
    how = f"fitted on {model['labels']} labels" if model["fitted"] else "selection.budget.exponent: one atom count so far"
    return (f"labeling budget (iteration {it['index']}): {budget['picked']} of "
            f"{budget['picked'] + budget['over_budget']} picks kept, an estimated {budget['estimated_cpu_hours']:.3g} "
            f"of {budget['cpu_hours']:g} CPU-h (label wall time {model['a']:.3g} s x natoms^{model['p']:.2f}, {how})")


def render_table(rows: list[dict], title: str = "") -> str:
    """Plain-text table (fixed width), the same in a terminal, a log file and CI output."""
    widths = {c: max([len(c)] + [len(str(r[c])) for r in rows]) for c in COLUMNS}
    lines = [title] if title else []
    lines.append("  ".join(c.rjust(widths[c]) for c in COLUMNS))
    lines.append("  ".join("-" * widths[c] for c in COLUMNS))
    lines += ["  ".join(str(r[c]).rjust(widths[c]) for c in COLUMNS) for r in rows]
    return "\n".join(lines)


def campaign_summary(store: ResultsStore, campaign: str) -> str:
    doc = store.get_campaign(campaign)
    if doc is None:
        return f"campaign '{campaign}' is not in the database"
    n_labeled = store.count_configurations(campaign, "labeled")
    n_models = store.count_models(campaign)
    head = (f"campaign {campaign}: status {doc['status']}, stage {doc.get('stage')}, iteration {doc.get('iteration')}; "
            f"{n_labeled} labeled configurations, {n_models} models")
    last = store.last_decided_iteration(campaign)
    why = [f"last decision (iteration {last['index']}): {last['decision']['reason']}"] if last else []
    if doc.get("stop_reason"):
        why.append(f"{doc['status']}: {doc['stop_reason']}")
    iterations = store.iterations_of(campaign)
    why += [f"warning: {it['calibration']['warning']}" for it in iterations
            if (it.get("calibration") or {}).get("warning")]
    why += [line for line in [budget_line(iterations)] if line]
    return "\n".join([render_table(iteration_rows(store, campaign, iterations, doc), head)] + why)
