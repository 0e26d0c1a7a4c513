"""The physics-aware part of the convergence rule: do the committee members agree on each observable the
stage names, and has it stopped changing since the previous iteration?

A pure function of the members' measurements (what each member's short MD gave, stored on the iteration
under ``observables.<key>.m<member>``), so the select step gathers numbers and this module judges them
(:func:`observable_status`); :func:`firegen.campaign.convergence.decide` then requires every status to be
met before a stage converges. Definitions (see :mod:`.config_observables`):

* density (g/cm³) and D (cm²/s): spread ``(max − min) / |mean|`` over the members, change
  ``|mean − previous mean| / |previous mean|``;
* RDF: spread ``max_m R(g_m, ḡ)``, change ``R(ḡ, ḡ_previous)`` with the R-factor
  ``R(g, ref) = sqrt(Σ (g − ref)² / Σ ref²)`` (Wright's; 0 for identical curves).

A measurement is ``{"value": x, "error": e}`` (density, D) or ``{"r_A": [...], "g": [...]}`` (RDF), or
``{"error_message": text}`` when the member's run failed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from .config_observables import ObservableConfig

UNITS = {"density": "g/cm³", "diffusion": "cm²/s", "rdf": "R-factor"}


def r_factor(g: list[float], ref: list[float]) -> float:
    """``sqrt(Σ (g − ref)² / Σ ref²)`` of two curves on the same bins (inf when ``ref`` is all zero)."""
    if len(g) != len(ref):
        raise ValueError(f"the two RDFs have {len(g)} and {len(ref)} bins")
    denom = sum(r * r for r in ref)
    num = sum((a - b) ** 2 for a, b in zip(g, ref))
    return math.sqrt(num / denom) if denom > 0 else math.inf


def _mean_curve(curves: list[list[float]]) -> list[float]:
    return [sum(values) / len(values) for values in zip(*curves)]


def _scalar(ms: Mapping[str, dict]) -> tuple[dict[str, float], float, float]:
    values = {m: float(x["value"]) for m, x in sorted(ms.items())}
    mean = sum(values.values()) / len(values)
    spread = (max(values.values()) - min(values.values())) / abs(mean) if mean else math.inf
    return values, mean, spread


def _rdf(ms: Mapping[str, dict]) -> tuple[dict[str, float], list[float], float]:
    mean = _mean_curve([x["g"] for _, x in sorted(ms.items())])
    values = {m: r_factor(x["g"], mean) for m, x in sorted(ms.items())}
    return values, mean, max(values.values())


def observable_status(obs: ObservableConfig, key: str, now: Mapping[str, dict] | None,
                      before: Mapping[str, dict] | None, members: int) -> dict:
    """How one observable stands after an iteration.

    Args:
        obs: its config (property, tolerance).
        key: its name (:meth:`ObservableConfig.key`).
        now: this iteration's measurement per member (``"m0"``, ``"m1"``, ...).
        before: the previous iteration's (same stage), or None.
        members: the committee size (every member must have measured).

    Returns:
        ``key``, ``property``, ``unit``, ``tolerance``, ``members`` (per member: the value, or for the RDF its
        R-factor against the committee mean), ``mean`` (None for the RDF), ``spread``, ``change`` (None
        without an earlier iteration), ``met`` and ``why`` (one clause).
    """
    out = {"key": key, "property": obs.property, "unit": UNITS[obs.property], "tolerance": obs.tolerance,
           "members": {}, "mean": None, "spread": None, "change": None, "met": False}
    now = dict(now or {})
    failed = {m: x["error_message"] for m, x in now.items() if "error_message" in x}
    if failed:
        m, message = sorted(failed.items())[0]
        return {**out, "why": f"{key}: member {m[1:]}'s run failed ({message})"}
    if len(now) < members:
        return {**out, "why": f"{key}: measured by {len(now)} of {members} members"}
    if obs.property == "rdf":
        values, mean_curve, spread = _rdf(now)
        mean = None
    else:
        values, mean, spread = _scalar(now)
    out.update(members=values, mean=mean, spread=spread)
    earlier = {m: x for m, x in (before or {}).items() if "error_message" not in x}
    if earlier:
        try:
            if obs.property == "rdf":
                out["change"] = r_factor(mean_curve, _mean_curve([x["g"] for _, x in sorted(earlier.items())]))
            else:
                previous = _scalar(earlier)[1]
                out["change"] = abs(mean - previous) / abs(previous) if previous else math.inf
        except ValueError as exc:  # a different binning: nothing to compare
            out["change"] = None
            return {**out, "why": f"{key}: cannot compare with the previous iteration ({exc})"}
    tol = obs.tolerance
    what = "R-factor" if obs.property == "rdf" else "relative"
    agree = f"members' spread {spread:.3g} {'≤' if spread <= tol else '>'} {tol:g} ({what})"
    if out["change"] is None:
        return {**out, "why": f"{key}: {agree}; no earlier iteration of the stage to compare with"}
    change = out["change"]
    moved = f"change since the previous iteration {change:.3g} {'≤' if change <= tol else '>'} {tol:g}"
    return {**out, "met": spread <= tol and change <= tol, "why": f"{key}: {agree}, {moved}"}


def observables_summary(statuses: list[dict]) -> str:
    """One clause on the observables: which are not met and why (or that all are)."""
    if not statuses:
        return ""
    pending = [s for s in statuses if not s["met"]]
    if not pending:
        return f"observables converged ({'; '.join(s['why'] for s in statuses)})"
    return f"observables not converged ({'; '.join(s['why'] for s in pending)})"
