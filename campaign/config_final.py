"""Config of the final model (`final:` in a campaign config): one DeePMD model trained longer on every label
of the campaign, frozen, compressed and validated on held-out labeled frames (``firegen finalize``).

The seed studies train their production model once more at the end, on all data and several times longer
than a committee member (DP-GEN's committee members run 10^5-10^6 steps; the final model a few million).
firegen's default is four times the steps behind a member of the last committee: its own and, when members are
warm-started, its parents' (a member of iteration 9 warm-started with 800 steps an iteration has trained 8,000);
set ``numb_steps`` for a production model.
"""

from __future__ import annotations

from typing import Any

from .config_fields import _Model, fx

#: The final model trains this many times the steps behind a last-committee member (its warm-start chain's, at
#: least ``committee.numb_steps``) unless ``final.numb_steps`` is set.
STEPS_FACTOR = 4


class FinalConfig(_Model):
    """The final model: longer training on every label, ``dp compress``, held-out validation."""

    numb_steps: int | None = fx(None, gt=0, desc="Training steps of the final model (default: "
                                f"{STEPS_FACTOR} x the steps behind a member of the last committee, its "
                                f"warm-start parents' included; at least {STEPS_FACTOR} x committee.numb_steps).",
                                fix="set a positive number of training steps, e.g. 1000000")
    training: dict[str, Any] = fx(default_factory=dict,
                                  desc="deepmd-kit input.json parts merged over committee.training for the final "
                                  "model only (e.g. a larger fitting net, a slower learning-rate decay).",
                                  fix="give a mapping shaped like deepmd-kit's input.json")
    validation_fraction: float = fx(0.1, ge=0.0, lt=1.0, desc="Fraction of the labeled frames held out (chosen "
                                    "by content hash, the same frames the committee held out) for validation.",
                                    fix="use a fraction in [0, 1), e.g. 0.1")
    compress: bool = fx(True, desc="Compress the frozen model with `dp compress` (tabulated descriptor, "
                        "faster MD). A failed compression keeps the uncompressed model and stores the reason.")
    at_end: bool = fx(False, desc="Queue the final model's Firework (gpu) by itself when the campaign ends.")

    def steps(self, member_steps: int) -> int:
        """The final model's training steps, given those behind a member of the last committee."""
        return int(self.numb_steps or STEPS_FACTOR * member_steps)
