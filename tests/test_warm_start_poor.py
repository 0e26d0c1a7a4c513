"""`committee.warm_start.poor_above`: a member whose previous model trained into a poor minimum (training force RMSE
far above its committee's median; 1.25x by default) does not warm-start from it: it warm-starts from the
committee's best member's descriptor with a fitting net of its own (`poor_restart: best_descriptor`, the default),
from that member whole (`best`) or trains from scratch (`scratch`), and its model says why; the others warm-start
from their own as before. Real deepmd-kit training on EMT labels, 60 steps a member."""

import html

import pytest
import yaml

from campaign_helpers import rattled_cu, running_campaign, small_cu_config
from firegen.campaign.config import ConfigError, load_config
from firegen.db.repository import ResultsStore
from firegen.orchestrator.view.server import create_app
from firegen.workflows.jobs.init import open_iteration
from firegen.workflows.jobs.label import label_batch
from firegen.workflows.jobs.train import poor_parent, train_member


def _config(tmp_path, **warm_start):
    path = small_cu_config(tmp_path, "cu-poor")
    raw = yaml.safe_load(path.read_text())
    raw["committee"].update(size=3, numb_steps=60, warm_start={"numb_steps": 30, **warm_start})
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return load_config(path)


def test_poor_above_must_be_a_ratio_above_one(tmp_path):
    with pytest.raises(ConfigError, match=r"committee\.warm_start\.poor_above.*Fix: use a ratio above 1"):
        _config(tmp_path, poor_above=0.8)


def test_by_default_a_poor_member_keeps_only_the_best_members_descriptor(tmp_path):
    warm = _config(tmp_path).committee.warm_start
    assert (warm.poor_above, warm.poor_restart) == (1.25, "best_descriptor")
    assert _config(tmp_path, poor_above=None).committee.warm_start.poor_above is None  # DP-GEN's way


def test_earlier_scratch_above_reads_as_poor_above_with_scratch_restart(tmp_path):
    warm = _config(tmp_path, scratch_above=1.4).committee.warm_start
    assert (warm.poor_above, warm.poor_restart) == (1.4, "scratch")
    assert _config(tmp_path, poor_above=1.4).committee.warm_start.poor_restart == "best_descriptor"
    with pytest.raises(ConfigError, match=r"committee\.warm_start\.scratch_above: and poor_above are both given"):
        _config(tmp_path, scratch_above=1.4, poor_above=1.3)


def _first_committee(launchpad, tmp_path, cfg):
    """Iteration 0 trained on 6 labeled EMT frames; member 0's training force error then set to 3x the others'
    worst, as a seed's poor minimum would leave it. Returns the store, iteration 0's models and member 0's."""
    store = ResultsStore.from_launchpad(launchpad)
    ids = running_campaign(store, cfg, rattled_cu(6, 0.08))
    assert label_batch(store, cfg, ids).failed == 0
    for iteration in (0, 1):
        open_iteration(store, cfg, iteration, 0)
    first = [train_member(store, cfg, 0, m, tmp_path / f"t0-{m}") for m in range(3)]
    errors = [r["metrics"]["train"]["rmse_f"] for r in first]
    store.models.update_one({"campaign": cfg.name, "iteration": 0, "member": 0},
                            {"$set": {"metrics.train.rmse_f": 3 * max(errors)}})
    return store, {m: store.find_model(cfg.name, 0, m) for m in range(3)}, 3 * max(errors)


def _shown_on_model_page(launchpad, cfg, model) -> str:
    page = create_app(launchpad, background=False).test_client().get(f"/c/{cfg.name}/model/{model['_id']}")
    assert page.status_code == 200
    return page.get_data(as_text=True).replace("&#39;", "'")


def test_a_member_of_a_poor_parent_warm_starts_from_the_committees_best(launchpad, tmp_path):
    cfg = _config(tmp_path, poor_above=1.5, poor_restart="best")
    store, parents, poor = _first_committee(launchpad, tmp_path, cfg)
    best = min((1, 2), key=lambda m: (parents[m]["metrics"]["train"]["rmse_f"], m))
    restart = poor_parent(store, cfg, parents[0])
    assert restart.model["_id"] == parents[best]["_id"]
    assert restart.because.startswith(f"member 0 of iteration 0 trained to {poor:.3f} eV/Å force RMSE")
    assert "(committee.warm_start.poor_above = 1.5)" in restart.because
    assert restart.because.endswith(f"warm-started from member {best} "
                                    f"({parents[best]['metrics']['train']['rmse_f']:.3f} eV/Å) instead")
    assert poor_parent(store, cfg, parents[1]) is None and poor_parent(store, cfg, parents[2]) is None
    off = cfg.model_copy(update={"committee": cfg.committee.model_copy(update={
        "warm_start": cfg.committee.warm_start.model_copy(update={"poor_above": None})})})
    assert poor_parent(store, off, parents[0]) is None  # null: every member warm-starts from its own

    for m in range(3):
        train_member(store, cfg, 1, m, tmp_path / f"t1-{m}")
    rescued = store.find_model(cfg.name, 1, 0)
    assert rescued["parent"] == parents[best]["_id"] and rescued["restarted_because"] == restart.because
    # a warm start like its siblings': the warm steps, its own seed, dp initialised from the best member's model
    assert rescued["input"]["training"]["numb_steps"] == 30
    assert rescued["seed"] != parents[best]["seed"]
    assert (tmp_path / "t1-0" / "parent.pb").read_bytes() == store.blobs.get(parents[best]["file_id"])
    assert "--init-frz-model" in (tmp_path / "t1-0" / "train" / "train.log").read_text()
    for m in (1, 2):
        warm = store.find_model(cfg.name, 1, m)
        assert warm["parent"] == parents[m]["_id"] and warm.get("restarted_because") is None
        assert warm["input"]["training"]["numb_steps"] == 30
    assert html.escape(rescued["restarted_because"], quote=False) in _shown_on_model_page(launchpad, cfg, rescued)


def test_a_member_of_a_poor_parent_trains_from_scratch_when_asked(launchpad, tmp_path):
    cfg = _config(tmp_path, poor_above=1.5, poor_restart="scratch")
    store, parents, poor = _first_committee(launchpad, tmp_path, cfg)
    restart = poor_parent(store, cfg, parents[0])
    assert restart.model is None and restart.because.endswith("(committee.warm_start.poor_above = 1.5)")

    for m in range(3):
        train_member(store, cfg, 1, m, tmp_path / f"t1-{m}")
    redrawn = store.find_model(cfg.name, 1, 0)
    assert redrawn.get("parent") is None
    assert redrawn["restarted_because"] == restart.because + "; trained 90 steps from scratch"
    # the 60 steps behind its poor parent and the 30 its siblings add: it does not fall behind them
    assert redrawn["input"]["training"]["numb_steps"] == 90
    for m in (1, 2):
        warm = store.find_model(cfg.name, 1, m)
        assert warm["parent"] == parents[m]["_id"] and warm.get("restarted_because") is None
        assert warm["input"]["training"]["numb_steps"] == 30
    assert html.escape(redrawn["restarted_because"], quote=False) in _shown_on_model_page(launchpad, cfg, redrawn)


def _constants(pb) -> dict:
    """Every constant of a frozen model, by node name, as bytes."""
    from deepmd.tf.utils.graph import load_graph_def

    return {n.name: n.attr["value"].tensor.SerializeToString() for n in load_graph_def(str(pb))[1].node
            if n.op == "Const"}


def test_a_member_of_a_poor_parent_keeps_only_the_best_members_descriptor_when_asked(launchpad, tmp_path):
    from deepmd.tf.utils.graph import get_fitting_net_variables_from_graph_def, load_graph_def

    cfg = _config(tmp_path, poor_above=1.5, poor_restart="best_descriptor")
    store, parents, _ = _first_committee(launchpad, tmp_path, cfg)
    best = min((1, 2), key=lambda m: (parents[m]["metrics"]["train"]["rmse_f"], m))
    restart = poor_parent(store, cfg, parents[0])
    assert restart.model["_id"] == parents[best]["_id"] and restart.fresh_fitting
    assert restart.because.endswith(f"warm-started from the descriptor of member {best} "
                                    f"({parents[best]['metrics']['train']['rmse_f']:.3f} eV/Å) with a fitting net "
                                    "drawn afresh instead")

    for m in range(3):
        train_member(store, cfg, 1, m, tmp_path / f"t1-{m}")
    rescued = store.find_model(cfg.name, 1, 0)
    assert rescued["parent"] == parents[best]["_id"] and rescued["restarted_because"] == restart.because
    assert rescued["input"]["training"]["numb_steps"] == 30
    # dp was initialised from the best member's model with its fitting net, and only that, drawn afresh
    given = tmp_path / "t1-0" / "parent-fresh-fitting.pb"
    assert f"--init-frz-model {given}" in (tmp_path / "t1-0" / "train" / "train.log").read_text()
    fitting = set(get_fitting_net_variables_from_graph_def(load_graph_def(str(given))[1]))
    original, fresh = _constants(tmp_path / "t1-0" / "parent.pb"), _constants(given)
    assert (tmp_path / "t1-0" / "parent.pb").read_bytes() == store.blobs.get(parents[best]["file_id"])
    assert original.keys() == fresh.keys() and fitting < original.keys()
    assert {k for k in original if original[k] != fresh[k]} == fitting
    assert any("descrpt_attr" in k or "filter_type" in k for k in original.keys() - fitting)
    for m in (1, 2):  # the others warm-start from their own models, whole
        warm = store.find_model(cfg.name, 1, m)
        assert warm["parent"] == parents[m]["_id"] and warm.get("restarted_because") is None
        assert not (tmp_path / f"t1-{m}" / "parent-fresh-fitting.pb").exists()
    assert html.escape(rescued["restarted_because"], quote=False) in _shown_on_model_page(launchpad, cfg, rescued)
