"""One error root with a retryable/fatal distinction, honoured by the FireTasks: a transient failure is
retried in place a bounded number of times; a fatal one (or a transient one that kept failing) is
recorded on the campaign with the Firework and the fix, and a rerun of that Firework clears it."""

from __future__ import annotations

import os
import subprocess

import pytest
from fireworks import FWAction
from pymongo.errors import AutoReconnect

from campaign_helpers import small_cu_config
from firegen.campaign.config import ConfigError, load_config
from firegen.campaign.errors import FatalError, FiregenError, TransientError, is_transient
from firegen.campaign.structure_builders import BuildError
from firegen.db.errors import DatabaseUnreachable, SchemaViolation
from firegen.db.repository import ResultsStore
from firegen.workflows import tasks
from firegen.workflows.steps import StepError
from firegen.workflows.steps.train import TrainingError, _run


def test_every_error_has_one_root_and_says_whether_a_retry_can_help():
    assert all(issubclass(e, FiregenError) for e in (ConfigError, BuildError, StepError, SchemaViolation,
                                                     DatabaseUnreachable, TransientError, FatalError))
    assert is_transient(DatabaseUnreachable("the server restarts")) and is_transient(AutoReconnect("reset"))
    assert not is_transient(SchemaViolation("models.seed: 'x' is not of BSON type int/long"))
    assert not is_transient(ConfigError(["c.yaml: stages[0].nsteps: is required"]))
    assert not is_transient(ValueError("a bug"))
    assert issubclass(BuildError, ValueError)  # callers that catch ValueError still do


def test_a_program_killed_by_a_signal_is_transient_an_exit_code_is_not(tmp_path):
    with pytest.raises(TrainingError) as killed:
        _run(["sh", "-c", "kill -9 $$"], tmp_path, tmp_path / "log", dict(os.environ), "dp train")
    assert killed.value.transient and "exit code -9" in str(killed.value)
    with pytest.raises(TrainingError) as failed:
        _run(["sh", "-c", "echo bad input.json; exit 3"], tmp_path, tmp_path / "log", dict(os.environ), "dp train")
    assert not failed.value.transient and "bad input.json" in failed.value.log_tail


class _Flaky(tasks.CampaignTask):
    """Fails with ``errors`` in turn, then succeeds."""

    kind = "probe"
    required_params = ["campaign"]

    def __init__(self, errors, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.errors, self.calls = list(errors), 0

    def execute(self, fw_spec):
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        self.context()
        return FWAction(stored_data={"calls": self.calls})


@pytest.fixture
def campaign_store(mongo_db, tmp_path, monkeypatch):
    cfg = load_config(small_cu_config(tmp_path, "cu-errors"))
    store = ResultsStore(mongo_db)
    store.init()
    store.create_campaign(cfg.name, cfg.frozen(), cfg.type_map)
    store.update_campaign(cfg.name, status="running")
    monkeypatch.setattr(tasks, "open_store", lambda task: store)
    monkeypatch.setattr(tasks, "RETRY_DELAYS_S", (0.0, 0.0))
    return store


def test_a_transient_failure_is_retried_in_place(campaign_store):
    task = _Flaky([AutoReconnect("connection reset"), DatabaseUnreachable("the server restarts")], campaign="cu-errors")
    action = task.run_task({})
    assert action.stored_data == {"calls": 3}
    assert campaign_store.get_campaign("cu-errors")["status"] == "running"


def test_a_transient_failure_that_keeps_failing_is_recorded_after_the_last_attempt(campaign_store):
    task = _Flaky([AutoReconnect("reset")] * 3, campaign="cu-errors")
    task.fw_id = 41
    with pytest.raises(AutoReconnect):
        task.run_task({})
    assert task.calls == 3
    doc = campaign_store.get_campaign("cu-errors")
    assert doc["status"] == "failed" and doc["failed_fw_id"] == 41
    assert doc["stop_reason"].startswith("probe Firework 41 failed after 3 attempts: AutoReconnect: reset")


def test_a_fatal_failure_stops_at_once_with_the_fix_and_a_rerun_clears_it(campaign_store):
    task = _Flaky([TrainingError("dp train failed with exit code 3")], campaign="cu-errors")
    task.fw_id = 42
    with pytest.raises(TrainingError):
        task.run_task({})
    assert task.calls == 1  # not retried
    doc = campaign_store.get_campaign("cu-errors")
    assert doc["status"] == "failed"
    assert "probe Firework 42 failed: TrainingError: dp train failed with exit code 3" in doc["stop_reason"]
    assert "`lpad rerun_fws -i 42`" in doc["stop_reason"]
    rerun = _Flaky([], campaign="cu-errors")  # `lpad rerun_fws -i 42` after the fix
    rerun.fw_id = 42
    assert rerun.run_task({}).stored_data == {"calls": 1}
    doc = campaign_store.get_campaign("cu-errors")
    assert doc["status"] == "running" and "stop_reason" not in doc and "failed_fw_id" not in doc


def test_a_campaign_the_gate_stopped_keeps_its_reason(campaign_store):
    campaign_store.update_campaign("cu-errors", status="stopped", stop_reason="2 of 3 initial labels failed")
    task = _Flaky([FatalError("no labeled configurations")], campaign="cu-errors")
    with pytest.raises(FatalError):
        task.run_task({})
    doc = campaign_store.get_campaign("cu-errors")
    assert (doc["status"], doc["stop_reason"]) == ("stopped", "2 of 3 initial labels failed")


def test_a_failure_is_raised_even_when_the_database_cannot_record_it(monkeypatch):
    def unreachable(task):
        raise DatabaseUnreachable("down")

    monkeypatch.setattr(tasks, "open_store", unreachable)
    monkeypatch.setattr(tasks, "RETRY_DELAYS_S", ())
    with pytest.raises(subprocess.CalledProcessError):
        _Flaky([subprocess.CalledProcessError(1, "pw.x")], campaign="x").run_task({})
