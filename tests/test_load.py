"""Load (issue 20, item 3): real workers over one embedded LaunchPad run every Firework exactly once, and a campaign's
``priority`` puts its ready Fireworks first. ``benchmarks/load.py`` at a small size, counted from the execution
records the Fireworks write; the figures of the full size are in benchmarks/README.md."""

from __future__ import annotations

import argparse
import copy
import shutil
import sys
from pathlib import Path

import pytest
import yaml

from firegen.campaign.config import ConfigError, load_config
from firegen.workflows.builders import campaign_workflow, labels_then_iteration

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import load  # noqa: E402
from load_task import COLLECTION  # noqa: E402

CONFIG = {
    "name": "prio",
    "type_map": ["Cu"],
    "systems": [{"name": "fcc", "structure": "structures/Cu.vasp", "supercell": 2}],
    "initial_data": {"perturb": {"count": 2}},
    "stages": [{"name": "s1", "ensemble": "nvt", "temperatures": [300, 600], "nsteps": 100}],
    "labeler": {"kind": "emt"},
}


def _config(tmp_path, **changes):
    shutil.copytree(ROOT / "configs" / "structures", tmp_path / "structures", dirs_exist_ok=True)
    data = {**copy.deepcopy(CONFIG), **changes}
    path = tmp_path / "campaign.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_campaign_priority_is_every_fireworks_priority(tmp_path):
    cfg = load_config(_config(tmp_path, priority=7))
    assert cfg.priority == 7 and cfg.frozen()["priority"] == 7
    init = campaign_workflow(cfg, systems={})
    iteration = labels_then_iteration(cfg, ["a" * 24, "b" * 24], -1, 0, 0)
    fws = init.fws + iteration.fws
    assert len(iteration.fws) == 1 + 1 + cfg.committee.size + 2 + 1  # label, gate, train x 4, explore x 2, select
    assert [fw.spec["_priority"] for fw in fws] == [7] * len(fws)
    assert load_config(_config(tmp_path)).priority == 0  # the default: a campaign without the key


def test_relabel_and_final_model_queue_at_the_campaigns_priority(launchpad, tmp_path):
    from firegen.db.repository import ResultsStore
    from firegen.orchestrator.cli_properties import _queue
    from firegen.orchestrator.relabel import relabel
    from firegen.workflows.jobs.finalize import finalize_workflow

    cfg = load_config(_config(tmp_path, priority=-3))
    store = ResultsStore.from_launchpad(launchpad)
    store.init()
    store.create_campaign(cfg.name, cfg.frozen(), cfg.type_map)
    atoms = cfg.system_atoms("fcc")
    store.add_configuration(cfg.name, atoms.get_chemical_symbols(), atoms.cell.array, atoms.positions,
                            {"kind": "init", "iteration": -1}, status="label_failed")
    queued = relabel(launchpad, cfg.name, {})["fw_ids"]
    queued += _queue(launchpad, finalize_workflow(cfg.name), store.get_campaign(cfg.name))
    assert len(queued) == 2
    assert [launchpad.get_fw_by_id(i).spec["_priority"] for i in queued] == [-3, -3]


@pytest.mark.parametrize("value", [1.5, "high", True, 10**7, -(10**7)])
def test_bad_priority_is_one_line_naming_it(tmp_path, value):
    path = _config(tmp_path, priority=value)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert len(message.splitlines()) == 1 and message.startswith(f"{path}: priority: "), message
    assert "Fix: give a whole number from -1,000,000 to 1,000,000" in message, message


def test_workers_run_every_firework_once_and_priorities_first():
    """4 firegen workers: 60 Fireworks, then two campaign-shaped workflows at priorities 10 and 0 (gate, 6 train,
    6 explore, select). Then controls on the same database: the counts do see a second execution,
    a missing one and inverted priorities."""
    args = argparse.Namespace(workers=4, fireworks=60, per_workflow=10, seconds=0.0, launcher="firegen", sleep=0.5,
                              scenario="both", priorities="10,0", iterations=1, fan_out=6, campaign_seconds=0.2,
                              timeout=600, keep=False, no_write_lock=False, alone=False)
    controls = {}

    def inspect(lp, results):
        p = results["priority"]
        swapped = dict(zip(p["names"], [0, 10]))  # as if the campaign that went second had had the priority
        controls["swapped"] = load.priority_order(lp, p["names"], p["queued"], swapped)["inversions"]
        records = lp.db[COLLECTION]
        first, second = list(records.find({"job": {"$in": list(results["priority"]["tally"]["camp-p0"]["jobs"])}},
                                          limit=2))
        records.insert_one({**first, "_id": "a second run", "worker": "control"})
        records.delete_one({"_id": second["_id"]})
        controls["tally"] = load.tally(lp, "camp-p0/")

    results = load.run_benchmark(args, inspect)
    t = results["load"]
    assert (t["queued"], t["done"], t["executions"]) == (60, 60, 60)
    assert (t["double"], t["extra runs"], t["relaunched"], t["lost"], t["late executions"]) == (0, 0, 0, 0, 0)
    assert sum(t["per worker"].values()) == 60 and set(t["per worker"]) <= {f"bench-w{i}" for i in range(4)}
    assert results["workers exited early"] == []

    p = results["priority"]
    for name in ("camp-p10", "camp-p0"):
        c = p["tally"][name]
        assert (c["queued"], c["done"], c["executions"], c["double"], c["lost"]) == (14, 14, 14, 0, 0)
    assert [(r["campaign"], r["priority"], r["ran"]) for r in p["rows"]] == [("camp-p10", 10, 14), ("camp-p0", 0, 14)]
    assert p["inversions"] == 0 and p["inverted pairs"] == 0

    assert controls["swapped"] > 0  # the same runs, read with the priorities the other way round
    c = controls["tally"]
    assert (c["double"], c["extra runs"], c["lost"], c["unrecorded"] != []) == (1, 1, 1, True)
