"""`committee.warm_start.scratch_above`: a member whose previous model trained into a poor minimum (training force
RMSE far above its committee's median) is trained from scratch instead of warm-started from it, and its model
says why; the others warm-start as before. Real deepmd-kit training on EMT labels, 60 steps a member."""

import html

import pytest
import yaml
from ase.build import bulk

from campaign_helpers import small_cu_config
from firegen.campaign.config import ConfigError, load_config
from firegen.db.repository import ResultsStore
from firegen.orchestrator.view.server import create_app
from firegen.workflows.jobs.init import open_iteration
from firegen.workflows.jobs.label import label_batch
from firegen.workflows.jobs.train import poor_parent, train_member


def _config(tmp_path, scratch_above):
    path = small_cu_config(tmp_path, "cu-scratch")
    raw = yaml.safe_load(path.read_text())
    raw["committee"].update(size=3, numb_steps=60,
                            warm_start={"numb_steps": 30, "scratch_above": scratch_above})
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return load_config(path)


def test_scratch_above_must_be_a_ratio_above_one(tmp_path):
    with pytest.raises(ConfigError, match=r"committee\.warm_start\.scratch_above.*Fix: use a ratio above 1"):
        _config(tmp_path, 0.8)


def test_a_member_of_a_poor_parent_trains_from_scratch_and_the_others_warm_start(launchpad, tmp_path):
    cfg = _config(tmp_path, 1.5)
    store = ResultsStore.from_launchpad(launchpad)
    store.init()
    store.create_campaign(cfg.name, cfg.frozen(), cfg.type_map)
    store.update_campaign(cfg.name, status="running", stage=0, iteration=0, stage_status=[])
    frames = []
    for k in range(6):
        atoms = bulk("Cu", "fcc", a=3.615, cubic=True).repeat((2, 2, 2))
        atoms.rattle(0.08, seed=k)
        frames.append(atoms)
    ids = [store.add_atoms(cfg.name, a, {"kind": "init", "iteration": -1, "frame": k}, status="selected")[0]
           for k, a in enumerate(frames)]
    assert label_batch(store, cfg, ids).failed == 0
    for iteration in (0, 1):
        open_iteration(store, cfg, iteration, 0)
    first = [train_member(store, cfg, 0, m, tmp_path / f"t0-{m}") for m in range(3)]
    errors = [r["metrics"]["train"]["rmse_f"] for r in first]
    # member 0 as a seed's poor minimum would leave it: three times the others' training force error
    store.models.update_one({"campaign": cfg.name, "iteration": 0, "member": 0},
                            {"$set": {"metrics.train.rmse_f": 3 * max(errors)}})
    parents = {m: store.find_model(cfg.name, 0, m) for m in range(3)}
    reason = poor_parent(store, cfg, parents[0])
    assert reason.startswith(f"member 0 of iteration 0 trained to {3 * max(errors):.3f} eV/Å force RMSE")
    assert "committee.warm_start.scratch_above = 1.5" in reason
    assert poor_parent(store, cfg, parents[1]) is None and poor_parent(store, cfg, parents[2]) is None
    off = cfg.model_copy(update={"committee": cfg.committee.model_copy(update={
        "warm_start": cfg.committee.warm_start.model_copy(update={"scratch_above": None})})})
    assert poor_parent(store, off, parents[0]) is None  # the default: every member warm-starts

    for m in range(3):
        train_member(store, cfg, 1, m, tmp_path / f"t1-{m}")
    redrawn = store.find_model(cfg.name, 1, 0)
    assert redrawn.get("parent") is None
    assert redrawn["from_scratch_because"] == reason + "; trained 90 steps from scratch"
    # the 60 steps behind its poor parent and the 30 its siblings add: it does not fall behind them
    assert redrawn["input"]["training"]["numb_steps"] == 90
    for m in (1, 2):
        warm = store.find_model(cfg.name, 1, m)
        assert warm["parent"] == parents[m]["_id"] and warm.get("from_scratch_because") is None
        assert warm["input"]["training"]["numb_steps"] == 30

    # the dashboard's page of the redrawn model says why it has no parent
    page = create_app(launchpad, background=False).test_client().get(f"/c/{cfg.name}/model/{redrawn['_id']}")
    assert page.status_code == 200
    shown = page.get_data(as_text=True).replace("&#39;", "'")
    assert html.escape(redrawn["from_scratch_because"], quote=False) in shown
