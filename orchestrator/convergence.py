"""The convergence policy: after an iteration's exploration, what happens next.

A pure function of the stage's settings and the ratios of its iterations so far, so the ``select``
FireTask only gathers numbers and this module decides (and can be tested without a database).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from firegen.orchestrator.config import StageConfig


@dataclass(frozen=True)
class Decision:
    """What the ``select`` step decided for one iteration.

    Attributes:
        action: ``"continue"`` (label the selected candidates, retrain, explore the same stage again),
            ``"next_stage"`` (the stage ended; the next iteration explores stage ``stage``), or
            ``"done"`` (the campaign ended).
        stage: index of the stage the next iteration explores (unchanged for ``continue``).
        stage_status: how the current stage stands: ``running``, ``converged`` or ``max_iterations``.
        campaign_status: ``running``, ``converged`` (every stage converged) or ``max_iterations``.
        reason: one human sentence, stored with the iteration.
    """

    action: str
    stage: int
    stage_status: str
    campaign_status: str
    reason: str

    def as_dict(self) -> dict:
        return asdict(self)


def decide(stage_index: int, stages: list[StageConfig], history: list[dict],
           earlier_stage_statuses: list[str] | None = None) -> Decision:
    """Decide after one iteration of stage ``stage_index``.

    Args:
        stage_index: index of the stage this iteration explored.
        stages: the campaign's stages.
        history: this stage's iterations in order, the current one last, each with
            ``accurate_ratio`` and ``candidate_ratio`` (fractions of explored frames).
        earlier_stage_statuses: how each earlier stage ended (``converged``/``max_iterations``).
    """
    stage = stages[stage_index]
    crit = stage.converged_when
    current = history[-1]
    met = [crit.met_by(h["accurate_ratio"], h["candidate_ratio"]) for h in history]
    window = met[-crit.for_iterations:]
    described = (f"accurate {current['accurate_ratio']:.1%}, candidates {current['candidate_ratio']:.1%} "
                 f"(iteration {len(history)} of at most {stage.max_iterations} in stage '{stage.name}')")
    if len(window) == crit.for_iterations and all(window):
        stage_status = "converged"
        reason = f"stage '{stage.name}' converged: {described} for {crit.for_iterations} iteration(s)"
    elif len(history) >= stage.max_iterations:
        stage_status = "max_iterations"
        reason = f"stage '{stage.name}' reached its iteration limit unconverged: {described}"
    else:
        return Decision("continue", stage_index, "running", "running", f"not converged: {described}")
    statuses = list(earlier_stage_statuses or []) + [stage_status]
    if stage_index + 1 < len(stages):
        return Decision("next_stage", stage_index + 1, stage_status, "running",
                        f"{reason}; next stage '{stages[stage_index + 1].name}'")
    final = "converged" if all(s == "converged" for s in statuses) else "max_iterations"
    return Decision("done", stage_index, stage_status, final, f"{reason}; campaign {final}")
