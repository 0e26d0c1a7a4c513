"""When the next committee of an asynchronous campaign may start training (pure; see config_schedule.py).

    start = training_start(cfg.schedule, LabelProgress(total=40, back=33, waited_s=412.0, outstanding=1))
    start.ready, start.reason      # True, "quorum: 33 of 40 labels back (82% >= 80%)"
    start = training_start(cfg.schedule, LabelProgress(total=40, back=24, waited_s=120.0, outstanding=1,
                                                       turnaround_s=100.0))
    start.ready, start.reason      # True, "refill: 24 of 40 labels back, the rest due in about 80 s <= 100 s ..."
"""

from __future__ import annotations

from dataclasses import dataclass

from .config_schedule import ScheduleConfig


@dataclass(frozen=True)
class LabelProgress:
    """Where the labels picked by one iteration stand.

    Attributes:
        total: configurations the iteration selected for labeling.
        back: of those, labeled, failed or skipped by re-scoring.
        waited_s: seconds since they were queued.
        outstanding: iterations (this one included) whose picks still have labels outstanding.
        turnaround_s: seconds the committee that picked them took from its dataset snapshot (the start of its
            training) to queueing them (training, exploration, selection); None where not measured.
    """

    total: int
    back: int
    waited_s: float
    outstanding: int
    turnaround_s: float | None = None

    @property
    def left_s(self) -> float | None:
        """Seconds until the labels still out are back, at the rate they came back so far; None before any."""
        return self.waited_s * (self.total - self.back) / self.back if self.back > 0 else None


@dataclass(frozen=True)
class TrainingStart:
    """Whether the next committee may train now, and why (or why not)."""

    ready: bool
    reason: str


def training_start(schedule: ScheduleConfig, p: LabelProgress) -> TrainingStart:
    """The asynchronous rule: a quorum of the labels back (fraction or count); or at least ``refill_floor`` back
    and the labels still out due back sooner than the last committee took to queue labels (``refill``: the
    cpu workers do not run dry while the next committee trains); or the deadline passed with at least one back;
    all of them back always suffices (strict's rule). More than ``max_in_flight`` iterations
    with labels outstanding (the next committee's own included) hold it until the oldest finishes."""
    label = f"{p.back} of {p.total} labels back"
    if p.back >= p.total:
        return TrainingStart(True, f"all labels back ({label})")
    if p.outstanding > schedule.max_in_flight:
        return TrainingStart(False, f"{p.outstanding} iterations have labels outstanding (max_in_flight "
                                    f"{schedule.max_in_flight}); {label}")
    if p.back >= schedule.quorum * p.total:
        return TrainingStart(True, f"quorum: {label} ({p.back / p.total:.0%} >= {schedule.quorum:.0%})")
    if schedule.quorum_count is not None and p.back >= schedule.quorum_count:
        return TrainingStart(True, f"quorum: {label} (>= quorum_count {schedule.quorum_count})")
    left = p.left_s
    if (schedule.refill and p.turnaround_s is not None and left is not None
            and p.back >= schedule.refill_floor * p.total and left <= p.turnaround_s):
        return TrainingStart(True, f"refill: {label}, the rest due in about {left:.0f} s <= {p.turnaround_s:.0f} s "
                                   "the last committee took from snapshot to labels")
    if schedule.deadline_s is not None and p.waited_s >= schedule.deadline_s and p.back > 0:
        return TrainingStart(True, f"deadline: {p.waited_s:.0f} s >= {schedule.deadline_s:g} s with {label}")
    return TrainingStart(False, f"waiting: {label} (quorum {schedule.quorum:.0%})")
