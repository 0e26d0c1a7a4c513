"""How a campaign's iterations follow each other: ``strict`` (DP-GEN's barrier: every label of iteration i is
back before iteration i+1 trains) or ``asynchronous`` (iteration i+1 trains on a quorum of them; the rest
join a later snapshot; a label still queued is re-scored by the newest committee before it runs).
"""

from __future__ import annotations

from typing import Literal

from pydantic import model_validator

from .config_fields import Problem, _Model, fail, fx


class ScheduleConfig(_Model):
    """When the next committee starts training."""

    mode: Literal["strict", "asynchronous"] = fx(
        "strict", desc="strict: the next committee trains once every label of the iteration is back (DP-GEN). "
        "asynchronous: it trains once `quorum` of them (or `quorum_count`) are back or `deadline_s` has passed, "
        "whichever comes first; later labels join the next snapshot.", fix="use strict or asynchronous")
    quorum: float = fx(0.8, gt=0, le=1, desc="Fraction of an iteration's selected configurations whose labels "
                       "(or failures, or re-scoring skips) must be back before the next committee trains.",
                       fix="use a fraction such as 0.8")
    quorum_count: int | None = fx(None, gt=0, desc="Or this many labels back, whichever comes first; null: the "
                                  "fraction only.", fix="use a positive number of labels, or null")
    deadline_s: float | None = fx(3600.0, gt=0, desc="Seconds after an iteration's labels were queued after "
                                  "which the next committee trains on what is back (at least one label, or none "
                                  "was selected); null: no deadline. Checked by every label Firework that ends "
                                  "and by the workers' maintenance duty (once a minute).",
                                  fix="use a number of seconds such as 3600, or null")
    max_in_flight: int = fx(2, ge=1, le=8, desc="At most this many iterations may have labels outstanding when "
                            "a committee starts training; the next waits for the oldest to finish.",
                            fix="use a small integer such as 2")
    refill: bool = fx(True, desc="Also start the next committee, once at least `refill_floor` of the labels are "
                      "back, when the labels still out would keep the cpu workers busy no longer than the last "
                      "committee took from its dataset snapshot to queueing its labels (training, exploration, "
                      "selection; measured): the new labels then arrive before the label queue runs dry. Labels "
                      "left are estimated from this iteration's own rate (seconds waited / labels back).")
    refill_floor: float = fx(0.5, gt=0, le=1, desc="Fraction of the labels that must be back before `refill` "
                             "may start a committee (the quorum starts it in any case).",
                             fix="use a fraction such as 0.5, at most the quorum")
    labels_per_firework: int | None = fx(None, ge=1, le=1000, desc="Configurations per label Firework (each cpu "
                                         "worker takes the next). null: 1 in asynchronous mode (DP-GEN's one task per "
                                         "frame: the quorum counts label by label, stragglers spread over the "
                                         "workers); in strict mode batches of at least 25, at most 8 per iteration.",
                                         fix="use a small whole number such as 1, or null")
    rescore: bool = fx(True, desc="Before a label Firework runs, re-score its configurations with the newest "
                       "committee; those now below the trust level f_lo are skipped (status 'skipped', with the "
                       "deviation and the committee's iteration; `firegen relabel --skipped` labels them).")

    @model_validator(mode="after")
    def _asynchronous_only(self):
        if self.mode == "strict":
            fields = ("quorum", "quorum_count", "deadline_s", "max_in_flight", "rescore", "refill", "refill_floor")
            set_here = [f for f in fields if getattr(self, f) != type(self).model_fields[f].default]
            if set_here:
                fail(Problem(set_here[0], "applies to mode asynchronous only", fix="set mode: asynchronous, or "
                             f"remove {', '.join(set_here)}"))
        return self

    @property
    def asynchronous(self) -> bool:
        return self.mode == "asynchronous"

    @property
    def per_label_firework(self) -> int | None:
        """Configurations per label Firework; None: firegen's batching (strict mode's default)."""
        return self.labels_per_firework or (1 if self.asynchronous else None)
