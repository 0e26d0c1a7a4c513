"""Workflow builders: which Fireworks an iteration is made of, and how they link.

Specs carry ids only (campaign name, iteration, stage, system, condition index, configuration ids);
structures, labels and models live in the results collections. Each Firework's ``spec.firegen``
says what it is, for queries and for ``firegen status``.

    labels (cpu, batches) ─┬─> train × N (gpu) ─┬─> explore × (systems × conditions) (gpu) ─┬─> select (cpu)
                           └─> ...              └─> ...                                    └─> appends the next
"""

from __future__ import annotations

import math

from fireworks import Firework, Workflow

from firegen.campaign.config import CampaignConfig

LABEL_BATCH = 25
"""Configurations per label Firework, raised so that one iteration has at most MAX_LABEL_FWS of them."""
MAX_LABEL_FWS = 8


def _fw(task, name: str, category: str, kind: str, campaign: str, **ids) -> Firework:
    # the Rocket hands each task its LaunchPad and fw_id (workflows/context.py): no database lookup of our own
    spec = {"_category": category, "_add_launchpad_and_fw_id": True,
            "firegen": {"kind": kind, "campaign": campaign, **ids}}
    return Firework([task], spec=spec, name=name)


def label_fireworks(campaign: str, config_ids: list[str], iteration: int,
                    labeler: dict | None = None) -> list[Firework]:
    """Label Fireworks for ``config_ids``, in at most :data:`MAX_LABEL_FWS` batches; ``labeler``
    (``{"kind", "settings"}``) replaces the campaign's labeler (``firegen relabel``)."""
    from firegen.workflows.tasks import LabelTask

    if not config_ids:
        return []
    size = max(LABEL_BATCH, math.ceil(len(config_ids) / MAX_LABEL_FWS))
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
    from firegen.campaign.convergence import task_key
    from firegen.workflows.tasks import ExploreTask, SelectTask, SnapshotGateTask, TrainTask

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
    labels = label_fireworks(cfg.name, config_ids, label_iteration, labeler)
    fws, links = iteration_fireworks(cfg, next_iteration, stage, explore)
    gate = fws[0]
    links = {fw: list(children) for fw, children in links.items()}
    for label in labels:
        links[label] = [gate]
    return Workflow(labels + fws, links_dict=links, name=f"{cfg.name}/it{next_iteration:03d}",
                    metadata={"firegen_campaign": cfg.name})


def campaign_workflow(cfg: CampaignConfig, systems: dict, imported: list[str] | None = None) -> Workflow:
    """The workflow ``firegen submit`` queues: one init Firework; the rest is appended as it runs.

    Args:
        cfg: the validated campaign config.
        systems: prepared starting structures by system name (flat arrays: species, cell, positions).
        imported: absolute paths of ``deepmd/npy`` folders to import as labeled data.
    """
    from firegen.workflows.tasks import InitCampaignTask

    init = _fw(InitCampaignTask(config=cfg.frozen(), systems=systems, imported=imported or []),
               f"{cfg.name}/init", "cpu", "init", cfg.name, iteration=-1)
    return Workflow([init], name=cfg.name, metadata={"firegen_campaign": cfg.name})
