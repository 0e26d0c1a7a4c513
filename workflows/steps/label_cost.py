"""What a label costs: a labeler's wall time against the atom count, fitted on a campaign's own labels, and the
picks a CPU-hour budget affords (``selection.budget``).

Pure science, no FireWorks and no database. Times in seconds, budgets in CPU-hours.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

#: The fitted power is kept within these bounds: a handful of noisy timings must not extrapolate wildly.
EXPONENT_BOUNDS = (0.5, 4.0)


@dataclass(frozen=True)
class LabelCost:
    """A label's wall time, ``seconds = a * natoms ** p``.

    Attributes:
        a: seconds at one atom.
        p: the power of the atom count; ``fitted``: from labels of two atom counts or more (else the configured one).
        labels: the measured labels it was fitted on.
    """

    a: float
    p: float
    fitted: bool
    labels: int

    def seconds(self, natoms: Sequence[int]) -> np.ndarray:
        return self.a * np.asarray(natoms, dtype=float) ** self.p

    def cpu_hours(self, natoms: Sequence[int], cores: int) -> np.ndarray:
        """Estimated CPU-hours of labels of ``natoms`` atoms, each occupying ``cores`` cores."""
        return self.seconds(natoms) * cores / 3600.0

    def as_dict(self) -> dict:
        return asdict(self)


def fit_label_cost(natoms: Sequence[int], seconds: Sequence[float], exponent: float) -> LabelCost | None:
    """``seconds = a * natoms ** p`` by least squares in log-log (labels of two atom counts or more; ``p`` kept
    within :data:`EXPONENT_BOUNDS`), else ``p = exponent`` and ``a`` the median of ``seconds / natoms ** p``.
    None without a positive timing."""
    n = np.asarray(natoms, dtype=float)
    t = np.asarray(seconds, dtype=float)
    ok = (n > 0) & np.isfinite(t) & (t > 0)
    n, t = n[ok], t[ok]
    if not len(t):
        return None
    if len(np.unique(n)) >= 2:
        p = float(np.clip(np.polyfit(np.log(n), np.log(t), 1)[0], *EXPONENT_BOUNDS))
        return LabelCost(float(np.exp(np.median(np.log(t) - p * np.log(n)))), p, True, len(t))
    return LabelCost(float(np.median(t / n ** exponent)), float(exponent), False, len(t))


def affordable(costs: Sequence[float], budget: float) -> int:
    """How many picks, taken in order, fit ``budget`` (their costs in the same unit); at least one, so that a
    budget below one label's cost does not stall the campaign."""
    spent = np.cumsum(np.asarray(costs, dtype=float))
    return max(1, int(np.searchsorted(spent, budget, side="right"))) if len(spent) else 0
