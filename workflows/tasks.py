"""The FireTasks of a campaign. Each fetches its inputs, calls a pure step, stores the outputs, and
returns an :class:`~fireworks.FWAction`. All are idempotent: a rerun (``lpad detect_lostruns
--rerun``, ``lpad rerun_fws``) finds what the first run stored and neither repeats it nor stores it twice.
"""

from __future__ import annotations

import time
from pathlib import Path

from bson import ObjectId
from fireworks import FiretaskBase, FWAction, explicit_serialize

from firegen.db.repository import ResultsStore
from firegen.workflows.context import campaign_config, current_fw_id, open_store
from firegen.workflows.snapshot_gate import SNAPSHOT_SPEC_KEY


def _atoms(structure: dict):
    return ResultsStore.atoms(structure)


@explicit_serialize
class InitCampaignTask(FiretaskBase):
    """Create the campaign, its initial configurations (perturbed systems, imported data), then
    append: label the initial configurations → iteration 0."""

    required_params = ["config", "systems"]
    optional_params = ["imported"]

    def run_task(self, fw_spec):
        from firegen.campaign.config import CampaignConfig
        from firegen.workflows import campaign_steps
        from firegen.workflows.builders import labels_then_iteration

        cfg = CampaignConfig.model_validate(self["config"])
        store = open_store(self)
        store.init()
        store.create_campaign(cfg.name, cfg.frozen(), cfg.type_map)
        store.update_campaign(cfg.name, systems=self["systems"], status="running", stage=0, iteration=0,
                              stage_status=[], init_fw_id=current_fw_id(self, store))
        to_label = campaign_steps.initial_configurations(store, cfg, self["systems"], self.get("imported", []))
        campaign_steps.open_iteration(store, cfg, 0, 0)
        wf = labels_then_iteration(cfg, [str(i) for i in to_label], -1, 0, 0)
        return FWAction(additions=[wf], stored_data={"initial_to_label": len(to_label)})


@explicit_serialize
class LabelTask(FiretaskBase):
    """Label a batch of selected configurations; a failure quarantines that one configuration."""

    required_params = ["campaign", "iteration", "config_ids"]
    optional_params = ["labeler"]

    def run_task(self, fw_spec):
        from firegen.workflows import campaign_steps

        store = open_store(self)
        _, cfg = campaign_config(store, self["campaign"])
        ids = [ObjectId(i) for i in self["config_ids"]]
        result = campaign_steps.label_batch(store, cfg, ids, current_fw_id(self, store), self.get("labeler"))
        if self["iteration"] >= 0:
            store.iterations.update_one({"campaign": self["campaign"], "index": self["iteration"]},
                                        {"$inc": {"timings.label_s": result["seconds"]}})
        else:  # labels of the initial data
            store.campaigns.update_one({"name": self["campaign"]}, {"$inc": {"timings.init_label_s": result["seconds"]}})
        return FWAction(stored_data=result)


@explicit_serialize
class TrainTask(FiretaskBase):
    """Train, freeze and test one committee member on the iteration's dataset snapshot."""

    required_params = ["campaign", "iteration", "member"]

    def run_task(self, fw_spec):
        from firegen.workflows import campaign_steps

        store = open_store(self)
        _, cfg = campaign_config(store, self["campaign"])
        info = campaign_steps.train_member(store, cfg, self["iteration"], self["member"], Path.cwd(),
                                           fw_spec.get(SNAPSHOT_SPEC_KEY))
        return FWAction(stored_data=info)


@explicit_serialize
class SnapshotGateTask(FiretaskBase):
    """Take the iteration's dataset snapshot and apply the label-failure policy: hand the snapshot to
    the train Fireworks, or stop the campaign (with the reason) and defuse them."""

    required_params = ["campaign", "iteration"]

    def run_task(self, fw_spec):
        from firegen.workflows.snapshot_gate import pass_gate

        store = open_store(self)
        _, cfg = campaign_config(store, self["campaign"])
        outcome = pass_gate(store, cfg, self["iteration"])
        if not outcome.passed:
            return FWAction(stored_data=outcome.as_dict(), defuse_children=True)
        return FWAction(stored_data=outcome.as_dict(), update_spec={SNAPSHOT_SPEC_KEY: outcome.snapshot_id})


@explicit_serialize
class ExploreTask(FiretaskBase):
    """MD with the iteration's committee for one (system, condition); store candidates and counts."""

    required_params = ["campaign", "iteration", "stage", "system", "condition"]

    def run_task(self, fw_spec):
        from firegen.workflows import campaign_steps

        store = open_store(self)
        _, cfg = campaign_config(store, self["campaign"])
        counts = campaign_steps.explore(store, cfg, self["iteration"], self["stage"], self["system"],
                                        self["condition"], Path.cwd(), current_fw_id(self, store),
                                        lmp=(fw_spec.get("_fw_env") or {}).get("lmp", "lmp"))
        return FWAction(stored_data=counts)


@explicit_serialize
class SelectTask(FiretaskBase):
    """Count, pick candidates, decide (continue / next stage / done) and append what comes next."""

    required_params = ["campaign", "iteration", "stage"]

    def run_task(self, fw_spec):
        from firegen.workflows import campaign_steps
        from firegen.workflows.builders import labels_then_iteration

        store = open_store(self)
        _, cfg = campaign_config(store, self["campaign"])
        t0 = time.perf_counter()
        decision, selected = campaign_steps.select_and_decide(store, cfg, self["iteration"], self["stage"])
        store.set_iteration_fields(self["campaign"], self["iteration"], {"timings.select_s": time.perf_counter() - t0})
        if decision.action == "done":
            return FWAction(stored_data={"decision": decision.as_dict()})
        nxt = self["iteration"] + 1
        campaign_steps.open_iteration(store, cfg, nxt, decision.stage, decision.explore)
        wf = labels_then_iteration(cfg, [str(i) for i in selected], self["iteration"], nxt, decision.stage,
                                   decision.explore)
        return FWAction(additions=[wf], stored_data={"decision": decision.as_dict(), "selected": len(selected)})


__all__ = ["InitCampaignTask", "LabelTask", "SnapshotGateTask", "TrainTask", "ExploreTask", "SelectTask"]
