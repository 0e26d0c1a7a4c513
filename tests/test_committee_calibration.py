"""Whether a committee's force deviation still measures its error (`committee.warn_deviation_below`): scored after
every iteration on the validation frames of the snapshot the committee trained on, stored on the iteration, shown
(and flagged) in `firegen status` and on the dashboard. Real deepmd-kit training on EMT labels."""

import numpy as np
import pytest
import yaml
from markupsafe import escape

from campaign_helpers import rattled_cu, running_campaign, small_cu_config
from firegen.campaign.config import load_config
from firegen.campaign.labeled_data import split_train_validation
from firegen.db.repository import ResultsStore
from firegen.orchestrator.report import campaign_summary, iteration_rows
from firegen.orchestrator.view.server import create_app
from firegen.workflows.jobs.calibration import MIN_FRAMES_TO_FLAG, check_committee, warning
from firegen.workflows.jobs.init import open_iteration
from firegen.workflows.jobs.label import label_batch
from firegen.workflows.jobs.train import snapshot_documents, train_member
from firegen.workflows.steps.evaluate import Calibration, committee_calibration, deviation_and_error


def test_a_committee_of_copies_shows_no_deviation_however_wrong_it_is():
    rng = np.random.default_rng(0)
    reference = rng.normal(size=(5, 8, 3))
    wrong = reference + 0.2 * rng.normal(size=reference.shape)
    devi, err = deviation_and_error(np.stack([wrong] * 4), reference)
    assert np.allclose(devi, 0) and (err > 0.2).all()
    members = np.stack([reference + 0.1 * rng.normal(size=reference.shape) for _ in range(4)])
    devi, err = deviation_and_error(members, reference)
    # DP-GEN's max_devi_f: per atom sqrt(mean over members of |f - mean f|^2), the largest atom of each frame
    by_hand = np.sqrt(((members - members.mean(0)) ** 2).sum(-1).mean(0)).max(-1)
    assert np.allclose(devi, by_hand) and (devi > 0.05).all()
    assert np.allclose(err, np.linalg.norm(members.mean(0) - reference, axis=-1).max(-1))


def test_only_a_low_ratio_on_enough_frames_is_flagged():
    assert warning(Calibration(MIN_FRAMES_TO_FLAG, 0.01, 0.2), 0.15, 3).startswith(
        f"iteration 3: the committee's force deviation on its {MIN_FRAMES_TO_FLAG} validation frames is 0.010 eV/Å "
        "against a force error of 0.200 eV/Å (mean per-frame maxima; ratio 0.05 < committee.warn_deviation_below")
    assert warning(Calibration(MIN_FRAMES_TO_FLAG - 1, 0.01, 0.2), 0.15, 3) is None  # too few frames to judge
    assert warning(Calibration(40, 0.031, 0.2), 0.15, 3) is None  # 0.155: above
    assert warning(Calibration(40, 0.029, 0.2), 0.15, 3) is not None  # 0.145: below


@pytest.fixture()
def trained(launchpad, tmp_path):
    """Iteration 0 of a committee of 2 (300 training steps each) on 120 labeled EMT frames, some held out for
    validation. Returns the store, the config and the validation frames."""
    path = small_cu_config(tmp_path, "cu-calibration")
    raw = yaml.safe_load(path.read_text())
    raw["committee"].update(size=2, numb_steps=300)
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    cfg = load_config(path)
    store = ResultsStore.from_launchpad(launchpad)
    ids = running_campaign(store, cfg, rattled_cu(120, 0.1))
    assert label_batch(store, cfg, ids).failed == 0
    open_iteration(store, cfg, 0, 0)
    for m in range(2):
        train_member(store, cfg, 0, m, tmp_path / f"t0-{m}")
    model = store.find_model(cfg.name, 0, 0)
    _, valid = split_train_validation(snapshot_documents(store, store.get_snapshot(model["dataset_id"])))
    assert len(valid) >= MIN_FRAMES_TO_FLAG
    return store, cfg, valid, tmp_path


def test_two_independent_members_deviate_and_their_copies_do_not(trained):
    store, cfg, valid, tmp_path = trained
    models = [store.blobs.fetch(store.find_model(cfg.name, 0, m)["file_id"], tmp_path / f"m{m}.pb") for m in (0, 1)]
    from firegen.campaign.labeled_data import write_deepmd_npy

    systems = write_deepmd_npy(valid, cfg.type_map, tmp_path / "valid")
    pair = committee_calibration(models, systems, cfg.type_map)
    copies = committee_calibration([models[0], models[0]], systems, cfg.type_map)
    assert pair.frames == copies.frames == len(valid)
    assert pair.devi_f > 0.01 and pair.ratio > 0.05
    assert copies.devi_f < 1e-9 and copies.ratio < 1e-6
    assert copies.max_err_f > 0.01  # as wrong as member 0 alone is
    assert committee_calibration(models, [], cfg.type_map) is None


def test_a_committee_of_copies_is_flagged_in_status_and_on_the_dashboard(trained, launchpad):
    store, cfg, valid, _ = trained
    healthy = check_committee(store, cfg, 0)
    assert healthy["frames"] == len(valid) and "warning" not in healthy  # two seeds: they disagree
    # member 1 becomes a byte copy of member 0, as restarts from one member would leave it
    first = store.find_model(cfg.name, 0, 0)
    store.models.update_one({"campaign": cfg.name, "iteration": 0, "member": 1}, {"$set": {"file_id": first["file_id"]}})
    copies = check_committee(store, cfg, 0)
    assert copies["devi_f"] < 1e-9 and copies["max_err_f"] == pytest.approx(healthy["max_err_f"], rel=1)
    assert copies["warning"].startswith(f"iteration 0: the committee's force deviation on its {len(valid)} validation "
                                        "frames is 0.000 eV/Å against a force error of")
    assert "committee.warn_deviation_below = 0.15" in copies["warning"]
    store.update_iteration(cfg.name, 0, 0, calibration=copies)
    summary = campaign_summary(store, cfg.name)
    assert f"warning: {copies['warning']}" in summary
    assert iteration_rows(store, cfg.name)[0]["devi/err"] == "0.00!"
    header, _, row = summary.splitlines()[1:4]
    assert "devi/err" in header and "0.00!" in row
    page = create_app(launchpad, background=False).test_client().get(f"/c/{cfg.name}")
    assert f'<p class="note">Warning: {escape(copies["warning"])}.</p>' in page.get_data(as_text=True)

    off = cfg.model_copy(update={"committee": cfg.committee.model_copy(update={"warn_deviation_below": None})})
    assert check_committee(store, off, 0) is None
