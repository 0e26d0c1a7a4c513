"""Selection step: classify explored frames by model deviation, pick candidates to label.

Pure numpy; no FireWorks, no database.

Trust levels (see DESIGN.md): with force deviation ``f`` and levels ``f_lo <= f_hi``

* accurate  (code 0): ``f < f_lo``
* candidate (code 1): ``f_lo <= f < f_hi``
* failed    (code 2): ``f >= f_hi``; NaN deviations count as failed too.

With virial levels as well there are two rules (``rule=``):

``"dpgen2"`` (default, also the brief's rule)
    failed if *either* deviation is at/above its hi level; accurate only if *both* are below
    their lo level; candidate otherwise. This is dpgen2's ``ExplorationReportTrustLevels``.
``"dpgen"``
    DP-GEN 0.14's ``_select_by_model_devi_standard``: candidate if *either* deviation lies in
    its [lo, hi) window (checked first), else failed if either is at/above hi, else accurate.
    It differs from "dpgen2" only for frames with one deviation in its window and the other
    at/above its hi level (dpgen2: failed; DP-GEN: candidate). Use it to reproduce a DP-GEN
    ``param.json`` run.

Picking (:func:`select_candidates`) caps the number of labels per iteration like DP-GEN's
``fp_task_max``: uniformly at random without replacement from a seeded generator, or
weighted (e.g. by deviation, to favour the most uncertain frames). Policies are objects with a
``select_indices`` method (:class:`SelectionPolicy`) so diversity- or cost-aware policies can be
added later; a policy that needs more data (descriptors, predicted DFT cost) takes it in its
constructor.

DP-GEN's accurate-ratio throttle (:func:`labeling_cap`, ``fp_accurate_threshold`` and
``fp_accurate_soft_threshold``) and its adaptive lower trust level (:func:`adaptive_trust_lo`,
``model_devi_adapt_trust_lo``) are here too, as pure functions with DP-GEN 0.14's arithmetic.
"""

from __future__ import annotations

import operator
from collections.abc import Mapping, Sequence
from typing import Protocol, runtime_checkable

import numpy as np

from firegen.campaign.seeds import seed_from

__all__ = [
    "ACCURATE",
    "CANDIDATE",
    "FAILED",
    "STATUS_NAMES",
    "DeviationWeightedPolicy",
    "RandomPolicy",
    "SelectionPolicy",
    "adaptive_trust_lo",
    "candidate_indices",
    "classify",
    "counts",
    "get_policy",
    "labeling_cap",
    "ratios",
    "seed_from",
    "select_candidates",
    "select_indices",
]

ACCURATE = 0
CANDIDATE = 1
FAILED = 2
STATUS_NAMES = ("accurate", "candidate", "failed")
RULES = ("dpgen2", "dpgen")


# --------------------------------------------------------------------------------------------
# classification


def _levels(name_lo: str, lo, name_hi: str, hi) -> tuple[float, float]:
    try:
        lo_f, hi_f = float(lo), float(hi)
    except (TypeError, ValueError):
        raise ValueError(f"trust levels {name_lo}={lo!r} and {name_hi}={hi!r} must be numbers") from None
    if np.isnan(lo_f) or np.isnan(hi_f):
        raise ValueError(f"trust levels {name_lo}={lo!r} and {name_hi}={hi!r} must not be NaN")
    if lo_f > hi_f:
        raise ValueError(f"trust level {name_lo}={lo_f} is above {name_hi}={hi_f}; need {name_lo} <= {name_hi}")
    return lo_f, hi_f


def _codes_one(devi: np.ndarray, lo: float, hi: float) -> np.ndarray:
    codes = (devi >= lo).astype(np.int8)
    codes += devi >= hi
    nan = np.isnan(devi)  # NaN compares False everywhere: it would read as accurate
    if nan.any():
        codes[nan] = FAILED
    return codes


def classify(
    max_devi_f,
    f_lo: float,
    f_hi: float,
    max_devi_v=None,
    v_lo: float | None = None,
    v_hi: float | None = None,
    *,
    rule: str = "dpgen2",
) -> np.ndarray:
    """Codes per frame: 0 accurate (< lo), 1 candidate ([lo, hi)), 2 failed (>= hi or NaN).

    Args:
        max_devi_f: max force deviation per frame (eV/Å), any shape.
        f_lo, f_hi: force trust levels, ``f_lo <= f_hi``.
        max_devi_v: optional virial deviation per frame (same shape as ``max_devi_f``);
            needs ``v_lo`` and ``v_hi``.
        rule: ``"dpgen2"`` (default) or ``"dpgen"``; see the module docstring. Only matters
            with virial levels.

    Returns:
        ``np.int8`` array of codes, same shape as ``max_devi_f``.

    Raises:
        ValueError: lo above hi, NaN levels, shapes that differ, virial levels without a
            virial deviation or the reverse, unknown rule.
    """
    f = np.asarray(max_devi_f, dtype=float)
    f_lo, f_hi = _levels("f_lo", f_lo, "f_hi", f_hi)
    if rule not in RULES:
        raise ValueError(f"unknown classification rule {rule!r}; known: {', '.join(RULES)}")
    cf = _codes_one(f, f_lo, f_hi)
    if max_devi_v is None:
        if v_lo is not None or v_hi is not None:
            raise ValueError("virial trust levels v_lo/v_hi given but no max_devi_v; pass the "
                             "virial deviation or leave v_lo and v_hi as None")
        return cf
    if v_lo is None or v_hi is None:
        raise ValueError("max_devi_v given without both virial trust levels v_lo and v_hi")
    v = np.asarray(max_devi_v, dtype=float)
    if v.shape != f.shape:
        raise ValueError(f"max_devi_v has shape {v.shape} but max_devi_f has shape {f.shape}")
    v_lo, v_hi = _levels("v_lo", v_lo, "v_hi", v_hi)
    cv = _codes_one(v, v_lo, v_hi)
    if rule == "dpgen2":
        # failed wins, then candidate, accurate only if both accurate: the max of the codes.
        return np.maximum(cf, cv)
    # DP-GEN 0.14: candidate if either is a candidate, else the max.
    either_cand = (cf == CANDIDATE) | (cv == CANDIDATE)
    out = np.maximum(cf, cv)
    out[either_cand] = CANDIDATE
    return out


def candidate_indices(codes) -> np.ndarray:
    """Flat indices of the candidate frames (``codes == 1``), ascending."""
    return np.flatnonzero(np.asarray(codes).ravel() == CANDIDATE)


def counts(codes) -> dict[str, int]:
    """``{"accurate": n0, "candidate": n1, "failed": n2, "total": n}``."""
    c = np.asarray(codes).ravel()
    if c.size and (c.min() < 0 or c.max() > FAILED):
        raise ValueError(f"codes must be 0, 1 or 2; got values from {c.min()} to {c.max()}")
    n = np.bincount(c.astype(np.intp, copy=False), minlength=3)
    return {"accurate": int(n[0]), "candidate": int(n[1]), "failed": int(n[2]), "total": int(c.size)}


def ratios(codes_or_counts) -> dict[str, float]:
    """Fractions ``{"accurate", "candidate", "failed"}`` of the total (all 0.0 when empty,
    so an empty exploration never looks converged). Takes codes or a :func:`counts` dict."""
    c = codes_or_counts if isinstance(codes_or_counts, Mapping) else counts(codes_or_counts)
    total = c["total"]
    if total == 0:
        return {k: 0.0 for k in STATUS_NAMES}
    return {k: c[k] / total for k in STATUS_NAMES}


# --------------------------------------------------------------------------------------------
# picking


@runtime_checkable
class SelectionPolicy(Protocol):
    """Chooses at most ``max_n`` of ``n`` candidates.

    ``select_indices`` gets the number of candidates, the cap, a seeded generator and the
    optional per-candidate weights, and returns distinct indices in ``range(n)``. Anything else
    a policy needs (structure descriptors for diversity, predicted cost for a DFT budget) is
    given to its constructor, aligned with the candidate order.
    """

    name: str

    def select_indices(self, n: int, max_n: int, rng: np.random.Generator,
                       weights: np.ndarray | None = None) -> np.ndarray: ...


class RandomPolicy:
    """Uniform random choice without replacement (DP-GEN's shuffle-and-cut, seeded)."""

    name = "random"

    def select_indices(self, n, max_n, rng, weights=None):
        if weights is not None:
            raise ValueError("the 'random' selection policy takes no weights; use policy="
                             "'deviation' (or leave policy unset) to weight the choice")
        return rng.choice(n, size=max_n, replace=False)


class DeviationWeightedPolicy:
    """Weighted choice without replacement: candidate ``i`` is drawn with probability
    proportional to ``weights[i] ** power`` at each draw (Efraimidis-Spirakis keys, O(n)).

    Pass the force deviation as weights to favour the most uncertain frames. Zero-weight
    candidates are taken only after all positive-weight ones, uniformly among themselves.
    """

    name = "deviation"

    def __init__(self, power: float = 1.0):
        if not np.isfinite(power) or power <= 0:
            raise ValueError(f"power must be a positive number, got {power!r}")
        self.power = float(power)

    def select_indices(self, n, max_n, rng, weights=None):
        if weights is None:
            raise ValueError("the 'deviation' selection policy needs weights (e.g. max_devi_f "
                             "of each candidate)")
        w = weights ** self.power if self.power != 1.0 else weights
        u = rng.random(n)
        pos = w > 0
        n_pos = int(np.count_nonzero(pos))
        # key = log(u) / w: the max_n largest keys are a weighted sample without replacement.
        with np.errstate(divide="ignore"):
            keys = np.where(pos, np.log(u) / np.where(pos, w, 1.0), -np.inf)
        if max_n <= n_pos:
            top = np.argpartition(-keys, max_n - 1)[:max_n] if max_n else np.empty(0, np.intp)
            return top
        zero = np.flatnonzero(~pos)
        extra = zero[np.argsort(u[zero], kind="stable")[: max_n - n_pos]]
        return np.concatenate([np.flatnonzero(pos), extra])


_POLICIES: dict[str, type] = {"random": RandomPolicy, "deviation": DeviationWeightedPolicy}


def get_policy(policy: str | SelectionPolicy | None, weights_given: bool = False) -> SelectionPolicy:
    """A policy object from a name (``"random"``, ``"deviation"``), an object, or ``None``
    (``"deviation"`` when weights are given, else ``"random"``)."""
    if policy is None:
        policy = "deviation" if weights_given else "random"
    if isinstance(policy, str):
        cls = _POLICIES.get(policy.strip().lower())
        if cls is None:
            raise ValueError(f"unknown selection policy {policy!r}; known: {', '.join(_POLICIES)}")
        return cls()
    if not isinstance(policy, SelectionPolicy):
        raise ValueError(f"policy {policy!r} has no select_indices(n, max_n, rng, weights) method")
    return policy


def select_indices(
    n: int,
    max_n: int,
    seed: int,
    weights=None,
    policy: str | SelectionPolicy | None = None,
) -> np.ndarray:
    """Indices (ascending, distinct) of at most ``max_n`` of ``n`` candidates.

    Same ``n``, ``max_n``, ``seed``, weights and policy give the same indices. With
    ``max_n >= n`` all indices are returned (no randomness involved).
    """
    n = operator.index(n)
    max_n = operator.index(max_n)
    if n < 0:
        raise ValueError(f"number of candidates must be >= 0, got {n}")
    if max_n < 0:
        raise ValueError(f"max_n must be >= 0, got {max_n}")
    w = None
    if weights is not None:
        w = np.asarray(weights, dtype=float).ravel()
        if w.shape != (n,):
            raise ValueError(f"{w.size} weights for {n} candidates")
        if not np.isfinite(w).all() or (w < 0).any():
            raise ValueError("selection weights must be finite and >= 0 (NaN deviations are "
                             "failed frames, not candidates)")
    pol = get_policy(policy, weights_given=w is not None)
    if max_n >= n:
        return np.arange(n)
    if max_n == 0:
        return np.empty(0, dtype=np.intp)
    rng = np.random.default_rng(seed)
    idx = np.asarray(pol.select_indices(n, max_n, rng, w), dtype=np.intp)
    if idx.ndim != 1 or idx.size > max_n or (idx.size and (idx.min() < 0 or idx.max() >= n)) \
            or np.unique(idx).size != idx.size:
        raise ValueError(f"selection policy {getattr(pol, 'name', pol)!r} returned invalid "
                         f"indices (need at most {max_n} distinct values in range({n}))")
    idx.sort()
    return idx


def select_candidates(
    candidate_keys: Sequence,
    max_n: int,
    seed: int,
    weights=None,
    policy: str | SelectionPolicy | None = None,
) -> list:
    """At most ``max_n`` of ``candidate_keys``, reproducibly (DP-GEN's ``fp_task_max``).

    Args:
        candidate_keys: ids of the candidate frames (any objects), in a deterministic order:
            the pick depends on the order, so sort keys coming from an unordered query.
        max_n: cap on the number picked; ``max_n >= len(candidate_keys)`` returns them all.
        seed: seed of the generator (see :func:`seed_from`).
        weights: optional non-negative weight per key (e.g. its force deviation);
            selects with the ``"deviation"`` policy unless ``policy`` says otherwise.
        policy: ``"random"``, ``"deviation"``, a :class:`SelectionPolicy`, or ``None``.

    Returns:
        The picked keys, in their order in ``candidate_keys``.
    """
    idx = select_indices(len(candidate_keys), max_n, seed, weights=weights, policy=policy)
    if isinstance(candidate_keys, np.ndarray):
        return candidate_keys[idx].tolist()
    return [candidate_keys[i] for i in idx]


# --------------------------------------------------------------------------------------------
# DP-GEN's throttles


def labeling_cap(max_n: int, accurate_ratio: float, skip_at: float | None = None,
                 soft_at: float | None = None) -> int:
    """The per-iteration labeling cap after DP-GEN's accurate-ratio throttle.

    DP-GEN 0.14 (``make_fp``, ``fp_accurate_threshold`` = ``skip_at``,
    ``fp_accurate_soft_threshold`` = ``soft_at``): below ``soft_at`` the cap is ``max_n``; from
    ``soft_at`` up to ``skip_at`` it shrinks linearly, ``int(max_n * (r - skip_at) / (soft_at -
    skip_at))``; at or above ``skip_at`` nothing is labeled. Without ``skip_at`` the cap is
    ``max_n``; without ``soft_at`` the step is sharp at ``skip_at``.

    Args:
        max_n: the cap without throttle (``selection.max_per_iteration``), >= 0.
        accurate_ratio: fraction of explored frames that are accurate, in [0, 1].
        skip_at: accurate ratio at/above which nothing is labeled, or None.
        soft_at: accurate ratio where the linear decrease starts (<= ``skip_at``), or None.

    Returns:
        The cap, an int in [0, max_n].

    Raises:
        ValueError: negative ``max_n``, a ratio outside [0, 1], ``soft_at`` without ``skip_at``
            or above it.
    """
    max_n = operator.index(max_n)
    if max_n < 0:
        raise ValueError(f"max_n must be >= 0, got {max_n}")
    r = float(accurate_ratio)
    if not 0.0 <= r <= 1.0:
        raise ValueError(f"accurate_ratio must be within [0, 1], got {accurate_ratio!r}")
    if skip_at is None:
        if soft_at is not None:
            raise ValueError("soft_at (fp_accurate_soft_threshold) needs skip_at (fp_accurate_threshold)")
        return max_n
    soft = float(skip_at if soft_at is None else soft_at)
    hard = float(skip_at)
    if soft > hard:
        raise ValueError(f"soft_at={soft} is above skip_at={hard}; need soft_at <= skip_at")
    if r < soft:
        return max_n
    if r < hard:
        return int(max_n * (r - hard) / (soft - hard))
    return 0


def _adaptive_top(values: np.ndarray, keep: np.ndarray, numb: int, perc: float) -> tuple[np.ndarray, int]:
    """Indices (into ``values``) of the ``n`` largest among ``keep`` frames, and ``n``."""
    idx = np.flatnonzero(keep)
    n = max(int(numb), int(float(perc) * 0.01 * idx.size))
    n = min(n, idx.size)
    # ascending by (value, frame index), as DP-GEN's sort of [value, task, step] lists
    order = idx[np.lexsort((idx, values[idx]))]
    return order[order.size - n:], n


def adaptive_trust_lo(max_devi_f, f_hi: float, numb_candi_f: int = 0, perc_candi_f: float = 0.0,
                      max_devi_v=None, v_hi: float | None = None, numb_candi_v: int = 0,
                      perc_candi_v: float = 0.0) -> tuple[np.ndarray, float, float | None]:
    """DP-GEN's adaptive lower trust level (``_select_by_model_devi_adaptive_trust_low``).

    Frames with a force deviation above ``f_hi`` (or a virial deviation above ``v_hi``) are
    failed (strictly above, as DP-GEN; NaN is failed too). Among the others, the ``n_f =
    max(numb_candi_f, int(perc_candi_f / 100 * n_rest))`` frames with the largest force
    deviation and the ``n_v`` frames with the largest virial deviation are candidates; the rest
    are accurate. The adapted lower levels are the smallest deviation taken (``f_hi`` / ``v_hi``
    when none is taken).

    Args:
        max_devi_f: max force deviation per frame (eV/Å), 1-D.
        f_hi: upper force trust level (eV/Å).
        numb_candi_f, perc_candi_f: DP-GEN's ``model_devi_numb_candi_f`` and
            ``model_devi_perc_candi_f`` (a percentage, 0-100).
        max_devi_v, v_hi, numb_candi_v, perc_candi_v: the same for the virial deviation
            (optional; DP-GEN's virial unit).

    Returns:
        ``(codes, f_lo, v_lo)``: ``np.int8`` codes as :func:`classify` (0 accurate, 1 candidate,
        2 failed), the adapted force level and the adapted virial level (None without virial).

    Raises:
        ValueError: shapes that differ, a virial deviation without ``v_hi``, negative counts or
            percentages outside [0, 100].
    """
    f = np.asarray(max_devi_f, dtype=float).ravel()
    f_hi = float(f_hi)
    for name, value in (("numb_candi_f", numb_candi_f), ("numb_candi_v", numb_candi_v)):
        if operator.index(value) < 0:
            raise ValueError(f"{name} must be >= 0, got {value!r}")
    for name, value in (("perc_candi_f", perc_candi_f), ("perc_candi_v", perc_candi_v)):
        if not 0.0 <= float(value) <= 100.0:
            raise ValueError(f"{name} is a percentage and must be within [0, 100], got {value!r}")
    failed = ~(f <= f_hi)  # NaN is failed
    v = None
    if max_devi_v is not None:
        if v_hi is None:
            raise ValueError("max_devi_v given without v_hi")
        v = np.asarray(max_devi_v, dtype=float).ravel()
        if v.shape != f.shape:
            raise ValueError(f"max_devi_v has shape {v.shape} but max_devi_f has shape {f.shape}")
        failed |= ~(v <= float(v_hi))
    rest = ~failed
    codes = np.where(failed, FAILED, ACCURATE).astype(np.int8)
    top_f, n_f = _adaptive_top(f, rest, numb_candi_f, perc_candi_f)
    codes[top_f] = CANDIDATE
    f_lo = float(f[top_f[0]]) if n_f else f_hi
    v_lo = None
    if v is not None:
        top_v, n_v = _adaptive_top(v, rest, numb_candi_v, perc_candi_v)
        codes[top_v] = CANDIDATE
        v_lo = float(v[top_v[0]]) if n_v else float(v_hi)
    return codes, f_lo, v_lo
