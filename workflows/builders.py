"""A campaign's workflows: how its Fireworks (:mod:`firegen.workflows.tasks`) link.

A campaign is one workflow per iteration: ``init`` queues iteration 0's, each ``select`` the next
one's (:meth:`~firegen.workflows.tasks.CampaignTask.queue`), and finished iterations move to the archive
LaunchPad. The workflow of one iteration::

    labels (cpu, batches) ─> gate (cpu) ─┬─> train × N (gpu) ─┬─> explore × (systems × conditions) (gpu) ─┬─> select (cpu)
                                         └─> ...              └─> ...                                    └─> appends the next

An asynchronous campaign queues its labels as workflows of their own (:func:`labels_workflows`) and each
iteration without label parents (:func:`iteration_workflow`), started by the schedule's rule.

Specs carry ids only (campaign name, iteration, stage, system, condition index, configuration ids);
structures, labels and models live in the results collections. Each Firework's ``spec.firegen``
says what it is, for queries and for ``firegen status``. Building these Fireworks (``firegen
submit``) imports no science code: the jobs are imported when a task runs.
"""

from __future__ import annotations

import math

from fireworks import Firework, Workflow

from firegen.campaign.config import CampaignConfig
from firegen.campaign.convergence import task_key
from firegen.workflows.tasks import (ExploreTask, InitCampaignTask, LabelTask, SelectTask, SnapshotGateTask,
                                     TrainTask)

LABEL_BATCH = 5
"""Configurations per label Firework, raised so that one iteration has at most MAX_LABEL_FWS of them: small enough
that an iteration's labels spread over the cpu workers (40 labels: 8 Fireworks), large enough that a Firework's
dispatch (about 0.2 s on the embedded database) stays small beside its labels."""
MAX_LABEL_FWS = 8


def _fw(task, name: str, category: str, kind: str, campaign: str, **ids) -> Firework:
    # the Rocket hands each task its LaunchPad and fw_id (workflows/context.py): no database lookup of our own
    spec = {"_category": category, "_add_launchpad_and_fw_id": True,
            "firegen": {"kind": kind, "campaign": campaign, **ids}}
    return Firework([task], spec=spec, name=name)


def with_priority(wf: Workflow, priority: int) -> Workflow:
    """``wf`` with FireWorks' ``_priority`` set to the campaign's ``priority`` on every Firework (workers check
    out the READY Firework of the highest priority first); returns ``wf``."""
    for fw in wf.fws:
        fw.spec["_priority"] = priority
    return wf


def label_fireworks(campaign: str, config_ids: list[str], iteration: int,
                    labeler: dict | None = None, per_firework: int | None = None) -> list[Firework]:
    """Label Fireworks for ``config_ids``, in at most :data:`MAX_LABEL_FWS` batches, or ``per_firework``
    configurations each when given (an asynchronous campaign); ``labeler`` (``{"kind", "settings"}``) replaces
    the campaign's labeler (``firegen relabel``)."""
    if not config_ids:
        return []
    size = per_firework or max(LABEL_BATCH, math.ceil(len(config_ids) / MAX_LABEL_FWS))
    batches = [config_ids[i:i + size] for i in range(0, len(config_ids), size)]
    extra = {"labeler": labeler} if labeler else {}
    return [_fw(LabelTask(campaign=campaign, iteration=iteration, config_ids=batch, **extra),
                f"{campaign}/it{iteration:03d}/label{b}", "cpu", "label", campaign, iteration=iteration, batch=b)
            for b, batch in enumerate(batches)]


def iteration_fireworks(cfg: CampaignConfig, iteration: int, stage: int,
                        explore: list[str] | None = None) -> tuple[list[Firework], dict]:
    """The gate → train → explore → select Fireworks of one iteration, and their links.

    ``explore`` limits the explore Fireworks to those task keys (``"<system>|c<k>"``, the tasks of the
    stage not yet converged); empty or None explores every (system, condition) of the stage.
    """
    name = cfg.name
    gate = _fw(SnapshotGateTask(campaign=name, iteration=iteration), f"{name}/it{iteration:03d}/gate", "cpu", "gate",
               name, iteration=iteration)
    trains = [_fw(TrainTask(campaign=name, iteration=iteration, member=m), f"{name}/it{iteration:03d}/train{m}",
                  "gpu", "train", name, iteration=iteration, member=m) for m in range(cfg.committee.size)]
    st = cfg.stages[stage]
    explores = [_fw(ExploreTask(campaign=name, iteration=iteration, stage=stage, system=system, condition=c),
                    f"{name}/it{iteration:03d}/explore-{system}-c{c}", "gpu", "explore", name,
                    iteration=iteration, stage=stage, system=system, condition=c)
                for system in st.systems for c in range(len(st.conditions()))
                if not explore or task_key(system, c) in explore]
    select = _fw(SelectTask(campaign=name, iteration=iteration, stage=stage), f"{name}/it{iteration:03d}/select",
                 "cpu", "select", name, iteration=iteration, stage=stage)
    links = {gate: trains}
    links.update({t: explores for t in trains})
    links.update({e: [select] for e in explores})
    return [gate] + trains + explores + [select], links


def labels_then_iteration(cfg: CampaignConfig, config_ids: list[str], label_iteration: int,
                          next_iteration: int, stage: int, explore: list[str] | None = None,
                          labeler: dict | None = None) -> Workflow:
    """Label ``config_ids`` then run iteration ``next_iteration`` of ``stage`` (what ``select`` appends),
    exploring only the task keys in ``explore`` when given."""
    labels = label_fireworks(cfg.name, config_ids, label_iteration, labeler, cfg.schedule.per_label_firework)
    fws, links = iteration_fireworks(cfg, next_iteration, stage, explore)
    gate = fws[0]
    links = {fw: list(children) for fw, children in links.items()}
    for label in labels:
        links[label] = [gate]
    return with_priority(Workflow(labels + fws, links_dict=links, name=f"{cfg.name}/it{next_iteration:03d}",
                                  metadata={"firegen_campaign": cfg.name, "firegen_iteration": next_iteration}),
                         cfg.priority)


def labels_workflows(cfg: CampaignConfig, config_ids: list[str], label_iteration: int) -> list[Workflow]:
    """An asynchronous campaign's label Fireworks for the configurations iteration ``label_iteration`` picked,
    as workflows of their own (the next iteration does not wait for all of them:
    :func:`firegen.workflows.jobs.schedule.try_start_training` queues it), at most
    :data:`LABEL_FWS_PER_WORKFLOW` Fireworks each: every completion refreshes its workflow under FireWorks'
    workflow lock; 25 keeps each lock short (benchmarks/README.md, "async_schedule.py": no cost of the
    workflow's size was measurable up to 200)."""
    fws = label_fireworks(cfg.name, config_ids, label_iteration, per_firework=cfg.schedule.per_label_firework)
    step = LABEL_FWS_PER_WORKFLOW
    return [with_priority(Workflow(fws[k:k + step], name=f"{cfg.name}/labels{_labels_of(label_iteration)}-{k // step}",
                                   metadata={"firegen_campaign": cfg.name, "firegen_labels_of": label_iteration,
                                             "firegen_part": k // step}), cfg.priority)
            for k in range(0, len(fws), step)]


def _labels_of(label_iteration: int) -> str:
    return "-initial" if label_iteration < 0 else f"{label_iteration:03d}"


LABEL_FWS_PER_WORKFLOW = 25
"""Label Fireworks per workflow of an asynchronous campaign."""


def asynchronous_labels(store, cfg: CampaignConfig, config_ids: list[str], label_iteration: int,
                        next_iteration: int) -> list[Workflow]:
    """What an asynchronous campaign queues once ``label_iteration`` has picked ``config_ids`` (-1: the initial
    data): iteration ``next_iteration`` is told its labels are queued (when, how many), then the label workflows,
    and the iteration's own workflow too when the rule already allows it (none picked)."""
    from firegen.db.label_queue import mark_labels_queued  # start-up, as above
    from firegen.workflows.jobs.schedule import try_start_training  # start-up, as above

    mark_labels_queued(store, cfg.name, next_iteration, len(config_ids))
    wfs = labels_workflows(cfg, config_ids, label_iteration)
    order = try_start_training(store, cfg)
    if order is not None:
        wfs.append(iteration_workflow(cfg, order.iteration, order.stage, order.explore))
    return wfs


def iteration_workflow(cfg: CampaignConfig, iteration: int, stage: int, explore: list[str] | None = None) -> Workflow:
    """An asynchronous campaign's iteration: gate → train × N → explore → select, with no label parents. Its gate
    and select go before the campaign's own labels that wait on the same cpu workers (``_priority`` + 0.5; still
    after any campaign of a higher priority): a gate queued behind straggling labels would idle the gpu workers."""
    fws, links = iteration_fireworks(cfg, iteration, stage, explore)
    wf = with_priority(Workflow(fws, links_dict=links, name=f"{cfg.name}/it{iteration:03d}",
                                metadata={"firegen_campaign": cfg.name, "firegen_iteration": iteration}), cfg.priority)
    for fw in wf.fws:
        if fw.spec["firegen"]["kind"] in BOOKKEEPING:
            fw.spec["_priority"] = cfg.priority + 0.5
    return wf


#: The cpu Fireworks of an iteration that only keep books (seconds each).
BOOKKEEPING = ("gate", "select")


def campaign_workflow(cfg: CampaignConfig, systems: dict, imported: list[str] | None = None) -> Workflow:
    """The workflow ``firegen submit`` queues: one init Firework; the rest is appended as it runs.

    Args:
        cfg: the validated campaign config.
        systems: prepared starting structures by system name (flat arrays: species, cell, positions).
        imported: absolute paths of ``deepmd/npy`` folders to import as labeled data.
    """
    init = _fw(InitCampaignTask(config=cfg.frozen(), systems=systems, imported=imported or []),
               f"{cfg.name}/init", "cpu", "init", cfg.name, iteration=-1)
    return with_priority(Workflow([init], name=cfg.name, metadata={"firegen_campaign": cfg.name}), cfg.priority)


__all__ = ["campaign_workflow", "iteration_fireworks", "label_fireworks", "labels_then_iteration", "with_priority",
           "iteration_workflow", "labels_workflows", "asynchronous_labels", "LABEL_BATCH", "MAX_LABEL_FWS",
           "LABEL_FWS_PER_WORKFLOW", "BOOKKEEPING"]
