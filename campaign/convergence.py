"""The convergence policy: after an iteration's exploration, what happens next.

A pure function of the stage's settings and the ratios seen so far, so the ``select`` FireTask only
gathers numbers and this module decides (and can be tested without a database).

Convergence is tracked per exploration task, i.e. per (system, condition) of the stage, keyed
``"<system>|c<k>"`` (dpgen2's per-task view rather than DP-GEN's one ratio per iteration): a task
converges when its own ratios meet the stage's criterion for ``for_iterations`` consecutive
explorations; a converged task is not explored again; the stage converges when all its tasks have.
The stage's iteration limit ends it unconverged. Whatever happens, the decision says why in one
sentence and lists the tasks still to explore.

A stage may also name observables (``converged_when.observables``: density, RDF, D at T/P); then it
converges only when, besides every task, each observable is met (its committee members agree within its
tolerance and its mean stopped changing since the previous iteration: :mod:`.observable_rule`). While the
tasks have converged but an observable has not, the next iteration explores every task of the stage again.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from firegen.campaign.config import StageConfig
from firegen.campaign.observable_rule import observables_summary


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
        explore: task keys (``"<system>|c<k>"``) the next iteration explores; empty means all tasks
            of ``stage`` (a new stage starts with every task).
        tasks: this stage's task keys with their status after this iteration (``converged`` or
            ``running``).
        observables: the stage's observables after this iteration
            (:func:`~firegen.campaign.observable_rule.observable_status`: per member, spread, change, met, why).
    """

    action: str
    stage: int
    stage_status: str
    campaign_status: str
    reason: str
    explore: list[str] = field(default_factory=list)
    tasks: dict[str, str] = field(default_factory=dict)
    observables: list[dict] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


def task_key(system: str, condition: int) -> str:
    """The key of one exploration task: ``"<system>|c<condition index>"`` (a ``.`` in the system name
    becomes ``_``: the key is a field name in MongoDB updates, where a dot would nest it)."""
    return f"{system.replace('.', '_')}|c{condition}"


def stage_task_keys(stage: StageConfig) -> list[str]:
    """Every exploration task of ``stage``, systems outer, conditions inner."""
    return [task_key(s, c) for s in stage.systems or [] for c in range(len(stage.conditions()))]


def task_converged(stage: StageConfig, ratios: list[dict]) -> bool:
    """Whether a task's last ``for_iterations`` explorations (``accurate_ratio``/``candidate_ratio``
    each, in order) all meet the stage's criterion."""
    crit = stage.converged_when
    window = ratios[-crit.for_iterations:]
    return len(window) == crit.for_iterations and all(
        crit.met_by(r["accurate_ratio"], r["candidate_ratio"]) for r in window)


def decide(stage_index: int, stages: list[StageConfig], history: list[dict],
           earlier_stage_statuses: list[str] | None = None,
           tasks: dict[str, list[dict]] | None = None, observables: list[dict] | None = None) -> Decision:
    """Decide after one iteration of stage ``stage_index``.

    Args:
        stage_index: index of the stage this iteration explored.
        stages: the campaign's stages.
        history: this stage's iterations in order, the current one last, each with
            ``accurate_ratio`` and ``candidate_ratio`` over all frames explored in that iteration.
        earlier_stage_statuses: how each earlier stage ended (``converged``/``max_iterations``).
        tasks: per task key, the ratios of each exploration of that task in this stage, in order.
            ``None`` treats the whole stage as one task (its ``history``).
        observables: the stage's observables after this iteration (each with ``met`` and ``why``); the
            stage converges only when all are met.
    """
    stage = stages[stage_index]
    tasks = {"stage": history} if tasks is None else tasks
    status = {key: "converged" if task_converged(stage, r) else "running" for key, r in tasks.items()}
    pending = [key for key, s in status.items() if s == "running"]
    current = history[-1]
    described = (f"accurate {current['accurate_ratio']:.1%}, candidates {current['candidate_ratio']:.1%} "
                 f"(iteration {len(history)} of at most {stage.max_iterations} in stage '{stage.name}')")
    per_task = "" if list(tasks) == ["stage"] else f"; {len(status) - len(pending)} of {len(status)} tasks converged"
    crit = stage.converged_when
    observables = list(observables or [])
    physics = observables_summary(observables)
    physics_ok = all(o["met"] for o in observables)
    if not pending and physics_ok:
        stage_status = "converged"
        reason = (f"stage '{stage.name}' converged: {described}; every task met the criterion for "
                  f"{crit.for_iterations} exploration(s) in a row" + (f"; {physics}" if physics else ""))
    elif len(history) >= stage.max_iterations:
        stage_status = "max_iterations"
        unconverged = (f"; unconverged: {', '.join(pending[:8])}{' …' if len(pending) > 8 else ''}" if pending
                       else "")
        reason = (f"stage '{stage.name}' reached its iteration limit unconverged: {described}{per_task}"
                  f"{unconverged}" + (f"; {physics}" if physics and not physics_ok else ""))
    else:
        # tasks converged but an observable not: explore every task again (an empty list means all)
        explore = [] if list(tasks) == ["stage"] else pending
        return Decision("continue", stage_index, "running", "running",
                        f"not converged: {described}{per_task}" + (f"; {physics}" if physics else ""),
                        explore=explore, tasks=_public(status), observables=observables)
    statuses = list(earlier_stage_statuses or []) + [stage_status]
    if stage_index + 1 < len(stages):
        return Decision("next_stage", stage_index + 1, stage_status, "running",
                        f"{reason}; next stage '{stages[stage_index + 1].name}'", tasks=_public(status),
                        observables=observables)
    final = "converged" if all(s == "converged" for s in statuses) else "max_iterations"
    return Decision("done", stage_index, stage_status, final, f"{reason}; campaign {final}", tasks=_public(status),
                    observables=observables)


def _public(status: dict[str, str]) -> dict[str, str]:
    return {} if list(status) == ["stage"] else status
