"""A campaign's FireTasks: what each Firework of a campaign runs.

Each FireTask fetches its inputs, calls its job (:mod:`firegen.workflows.jobs`), stores the outputs
and returns an :class:`~fireworks.FWAction`. All are idempotent: a rerun (``lpad detect_lostruns
--rerun``, ``lpad rerun_fws``) finds what the first run stored and neither repeats it nor stores it
twice. Errors follow :mod:`firegen.campaign.errors`: a transient failure is retried in place
(:data:`RETRY_DELAYS_S`); a fatal one, or a transient one that kept failing, is recorded on the
campaign (status ``failed``, ``stop_reason`` naming the Firework and the fix) and fizzles the
Firework, which ``lpad rerun_fws -i <fw_id>`` runs again once the cause is fixed.

How the Fireworks link into a campaign's workflows is :mod:`firegen.workflows.builders`: it imports these
tasks, and the tasks that append workflows (``init``, ``label``, ``select``) import it when they run, as they
import their jobs: building Fireworks (``firegen submit``) imports no science code.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from bson import ObjectId
from fireworks import FiretaskBase, FWAction, Workflow, explicit_serialize

from firegen.campaign.config import CampaignConfig
from firegen.campaign.errors import is_transient
from firegen.db.fireworks_archive import add_once, archive_completed
from firegen.workflows.context import campaign_config, current_fw_id, open_store

SNAPSHOT_SPEC_KEY = "firegen_snapshot"
"""The spec key through which the gate hands its snapshot's id to the train Fireworks."""

RETRY_DELAYS_S: tuple[float, ...] = (5.0, 30.0)
"""Seconds to wait before each retry of a transient failure (so at most ``1 + len`` attempts)."""

_log = logging.getLogger(__name__)


class CampaignTask(FiretaskBase):
    """A FireTask of a campaign: :meth:`execute` does the work; :meth:`run_task` retries transient
    failures and records fatal ones on the campaign (see the module docstring)."""

    kind = "task"

    def execute(self, fw_spec) -> FWAction:  # pragma: no cover - every task defines it
        raise NotImplementedError

    def campaign_name(self) -> str:
        return self["campaign"]

    def run_task(self, fw_spec):
        for attempt in range(1, len(RETRY_DELAYS_S) + 2):
            try:
                return self.execute(fw_spec)
            except Exception as exc:
                if is_transient(exc) and attempt <= len(RETRY_DELAYS_S):
                    delay = RETRY_DELAYS_S[attempt - 1]
                    _log.warning("%s Firework %s: %s; retrying in %g s (attempt %d of %d)", self.kind,
                                 getattr(self, "fw_id", None), _first_line(exc), delay, attempt + 1,
                                 len(RETRY_DELAYS_S) + 1)
                    time.sleep(delay)
                    continue
                self._record_failure(exc, attempt)
                raise

    def _record_failure(self, exc: BaseException, attempts: int) -> None:
        """Say on the campaign why this Firework failed and how to go on (best effort: the database may
        be what failed). A campaign the snapshot gate stopped keeps its own reason."""
        fw_id = getattr(self, "fw_id", None)
        again = f" after {attempts} attempts" if attempts > 1 else ""
        reason = (f"{self.kind} Firework {fw_id} failed{again}: {_first_line(exc)}. Fix the cause, then "
                  f"`lpad rerun_fws -i {fw_id}` (see `lpad get_fws -i {fw_id} -d all` for the traceback)")
        try:
            store = open_store(self)
            doc = store.get_campaign(self.campaign_name()) or {}
            if doc and doc.get("status") != "stopped":
                store.update_campaign(self.campaign_name(), status="failed", stop_reason=reason, failed_fw_id=fw_id)
        except Exception as record_exc:  # noqa: BLE001 - the original failure is what the Rocket must see
            _log.warning("could not record the failure on campaign %s: %s", self.campaign_name(), record_exc)

    def queue(self, wf: Workflow | list[Workflow], campaign: str, iteration: int, stored_data: dict) -> FWAction:
        """Queue ``wf`` (iteration ``iteration``'s workflow; or several: an asynchronous campaign's labels and
        next iteration) as workflows of their own on this task's LaunchPad (each once, known by its metadata:
        a rerun finds it queued), then move the campaign's finished workflows to the archive
        (:mod:`firegen.db.fireworks_archive`): what FireWorks scans stays the size of about two iterations.
        Without a LaunchPad (``rlaunch --offline``) they are appended to this one instead."""
        wfs = wf if isinstance(wf, list) else [wf]
        lp = getattr(self, "launchpad", None)
        if lp is None:
            return FWAction(additions=wfs, stored_data=stored_data)
        for one in wfs:
            add_once(lp, one)
        archived = archive_completed(lp, campaign, keep={self.fw_id} if getattr(self, "fw_id", None) else set())
        if archived:
            open_store(self).count_archived(campaign, len(archived))
        return FWAction(stored_data={**stored_data, "queued_iteration": iteration, "archived_fireworks": len(archived)})

    def context(self):
        """The results store and the campaign's config; a campaign marked failed by an earlier attempt of
        this Firework is running again (``lpad rerun_fws``), and says so."""
        store = open_store(self)
        doc, cfg = campaign_config(store, self.campaign_name())
        fw_id = getattr(self, "fw_id", None)
        if doc.get("status") == "failed" and fw_id is not None and doc.get("failed_fw_id") == fw_id:
            store.update_campaign(cfg.name, status="running", unset=("stop_reason", "failed_fw_id"))
        return store, cfg


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"


@explicit_serialize
class InitCampaignTask(CampaignTask):
    """Create the campaign, its initial configurations (perturbed systems, imported data), then
    append: label the initial configurations → iteration 0."""

    kind = "init"
    required_params = ["config", "systems"]
    optional_params = ["imported"]

    def campaign_name(self) -> str:
        return self["config"]["name"]

    def execute(self, fw_spec):
        from firegen.workflows.builders import asynchronous_labels, labels_then_iteration  # builders import tasks
        from firegen.workflows.jobs import init  # start-up: the jobs import the science; submit only builds

        cfg = CampaignConfig.model_validate(self["config"])
        store = open_store(self)
        store.init()
        store.create_campaign(cfg.name, cfg.frozen(), cfg.type_map)
        store.update_campaign(cfg.name, systems=self["systems"], status="running", stage=0, iteration=0,
                              stage_status=[], init_fw_id=current_fw_id(self, store))
        to_label = init.initial_configurations(store, cfg, self["systems"], self.get("imported", []))
        init.open_iteration(store, cfg, 0, 0)
        ids = [str(i) for i in to_label]
        # asynchronous: the initial labels are iteration 0's picks, and its rule starts iteration 0 (a quorum)
        wf = (asynchronous_labels(store, cfg, ids, -1, 0) if cfg.schedule.asynchronous
              else labels_then_iteration(cfg, ids, -1, 0, 0))
        return self.queue(wf, cfg.name, 0, stored_data={"initial_to_label": len(to_label)})


@explicit_serialize
class LabelTask(CampaignTask):
    """Label a batch of selected configurations; a failure quarantines that one configuration."""

    kind = "label"
    required_params = ["campaign", "iteration", "config_ids"]
    optional_params = ["labeler"]

    def execute(self, fw_spec):
        from firegen.workflows.builders import iteration_workflow  # the builders import the tasks
        from firegen.workflows.jobs.label import label_batch  # start-up, as above
        from firegen.workflows.jobs.schedule import try_start_training  # start-up, as above

        store, cfg = self.context()
        ids = [ObjectId(i) for i in self["config_ids"]]
        started: list = []  # (order, its workflow): queued at once, and again (a no-op) by queue() at the end
        lp = getattr(self, "launchpad", None)

        def start_next() -> None:  # asynchronous campaigns: each label may complete a quorum
            order = try_start_training(store, cfg)
            if order is not None:
                started.append((order, iteration_workflow(cfg, order.iteration, order.stage, order.explore)))
                if lp is not None:  # offline (no LaunchPad): appended by queue() at the end
                    add_once(lp, started[-1][1])

        outcome = label_batch(store, cfg, ids, current_fw_id(self, store), self.get("labeler"), Path.cwd(),
                              after_each=start_next if cfg.schedule.asynchronous else None)
        if self["iteration"] >= 0:
            store.add_iteration_seconds(cfg.name, self["iteration"], "label_s", outcome.seconds)
        else:  # labels of the initial data
            store.add_campaign_seconds(cfg.name, "init_label_s", outcome.seconds)
        start_next()  # a rerun whose labels were all stored before, or a deadline passed meanwhile
        if not started:
            return FWAction(stored_data=outcome.as_dict())
        stored = {**outcome.as_dict(), "training_started": [order.reason for order, _ in started]}
        return self.queue([wf for _, wf in started], cfg.name, started[-1][0].iteration, stored)


@explicit_serialize
class SnapshotGateTask(CampaignTask):
    """Take the iteration's dataset snapshot and apply the label-failure policy: hand the snapshot to
    the train Fireworks, or stop the campaign (with the reason) and defuse them."""

    kind = "gate"
    required_params = ["campaign", "iteration"]

    def execute(self, fw_spec):
        from firegen.workflows.jobs.gate import pass_gate  # start-up, as above

        store, cfg = self.context()
        outcome = pass_gate(store, cfg, self["iteration"])
        if not outcome.passed:
            return FWAction(stored_data=outcome.as_dict(), defuse_children=True)
        return FWAction(stored_data=outcome.as_dict(), update_spec={SNAPSHOT_SPEC_KEY: outcome.snapshot_id})


@explicit_serialize
class TrainTask(CampaignTask):
    """Train, freeze and test one committee member on the iteration's dataset snapshot."""

    kind = "train"
    required_params = ["campaign", "iteration", "member"]

    def execute(self, fw_spec):
        from firegen.workflows.jobs.train import train_member  # start-up, as above

        store, cfg = self.context()
        info = train_member(store, cfg, self["iteration"], self["member"], Path.cwd(), fw_spec.get(SNAPSHOT_SPEC_KEY))
        return FWAction(stored_data=info)


@explicit_serialize
class ExploreTask(CampaignTask):
    """MD with the iteration's committee for one (system, condition); store candidates and counts."""

    kind = "explore"
    required_params = ["campaign", "iteration", "stage", "system", "condition"]

    def execute(self, fw_spec):
        from firegen.workflows.jobs.explore import explore  # start-up, as above

        store, cfg = self.context()
        summary = explore(store, cfg, self["iteration"], self["stage"], self["system"], self["condition"],
                          Path.cwd(), current_fw_id(self, store), lmp=(fw_spec.get("_fw_env") or {}).get("lmp", "lmp"))
        return FWAction(stored_data=summary.counts())


@explicit_serialize
class SelectTask(CampaignTask):
    """Count, pick candidates, decide (continue / next stage / done) and append what comes next."""

    kind = "select"
    required_params = ["campaign", "iteration", "stage"]

    def execute(self, fw_spec):
        from firegen.workflows.builders import asynchronous_labels, labels_then_iteration, with_priority  # as above
        from firegen.workflows.jobs.init import open_iteration  # start-up, as above
        from firegen.workflows.jobs.select import select_and_decide  # start-up, as above

        store, cfg = self.context()
        t0 = time.perf_counter()
        decision, selected = select_and_decide(store, cfg, self["iteration"], self["stage"])
        store.set_iteration_fields(cfg.name, self["iteration"], {"timings.select_s": time.perf_counter() - t0})
        if decision.action == "done":
            if cfg.final is not None and cfg.final.at_end:  # the final model, queued by the campaign's end
                from firegen.workflows.jobs.finalize import finalize_workflow  # start-up, as above

                final = with_priority(finalize_workflow(cfg.name), cfg.priority)
                return FWAction(stored_data={"decision": decision.as_dict()}, additions=[final])
            return FWAction(stored_data={"decision": decision.as_dict()})
        nxt = self["iteration"] + 1
        open_iteration(store, cfg, nxt, decision.stage, decision.explore)
        ids = [str(i) for i in selected]
        stored = {"decision": decision.as_dict(), "selected": len(selected)}
        if not cfg.schedule.asynchronous:
            wf = labels_then_iteration(cfg, ids, self["iteration"], nxt, decision.stage, decision.explore)
            return self.queue(wf, cfg.name, nxt, stored_data=stored)
        return self.queue(asynchronous_labels(store, cfg, ids, self["iteration"], nxt), cfg.name, nxt,
                          stored_data=stored)


class AfterCampaignTask(CampaignTask):
    """A task run on a campaign's results (final model, properties): its failure fizzles its own Firework
    (traceback in ``lpad get_fws -i <fw_id> -d all``) and leaves the campaign's status alone."""

    def _record_failure(self, exc: BaseException, attempts: int) -> None:
        _log.warning("%s Firework %s failed: %s", self.kind, getattr(self, "fw_id", None), _first_line(exc))


@explicit_serialize
class FinalizeTask(AfterCampaignTask):
    """Train, compress, validate and store the campaign's final model (workflows/jobs/finalize.py)."""

    kind = "finalize"
    required_params = ["campaign"]
    optional_params = ["force", "final"]

    def execute(self, fw_spec):
        from firegen.workflows.jobs.finalize import finalize, with_final  # start-up, as above

        store, cfg = self.context()
        return FWAction(stored_data=finalize(store, with_final(cfg, self.get("final")), Path.cwd(),
                                             force=bool(self.get("force"))))


@explicit_serialize
class PropertyMDTask(AfterCampaignTask):
    """Production MD with a stored model at one temperature, analysed and stored (workflows/jobs/properties.py)."""

    kind = "property-md"
    required_params = ["campaign", "model_id", "system", "md", "analysis"]

    def execute(self, fw_spec):
        from firegen.workflows.jobs.properties import md_property  # start-up, as above

        return FWAction(stored_data=md_property(open_store(self), self["campaign"], self["model_id"], self["system"],
                                                self["md"], self["analysis"], Path.cwd(),
                                                lmp=(fw_spec.get("_fw_env") or {}).get("lmp", "lmp")))


@explicit_serialize
class ArrheniusTask(AfterCampaignTask):
    """The Arrhenius fits over a temperature ladder of property runs (workflows/jobs/properties.py)."""

    kind = "property-arrhenius"
    required_params = ["campaign", "model_id", "system", "keys"]

    def execute(self, fw_spec):
        from firegen.workflows.jobs.properties import arrhenius_property  # start-up, as above

        return FWAction(stored_data=arrhenius_property(open_store(self), self["campaign"], self["model_id"],
                                                       self["system"], self["keys"]))


__all__ = ["CampaignTask", "InitCampaignTask", "LabelTask", "SnapshotGateTask", "TrainTask", "ExploreTask",
           "SelectTask", "AfterCampaignTask", "FinalizeTask", "PropertyMDTask", "ArrheniusTask", "SNAPSHOT_SPEC_KEY",
           "RETRY_DELAYS_S"]
