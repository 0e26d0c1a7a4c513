"""The final model's training settings: the default steps count a warm-started member's parents, and
`firegen finalize --numb-steps / --training` give other settings for a campaign already run, over its stored
`final:` section, validated as a config is (one line naming `final.<field>` and the fix)."""

import pytest
from bson import ObjectId

from campaign_helpers import small_cu_config
from firegen.campaign.config import ConfigError, load_config
from firegen.campaign.config_final import STEPS_FACTOR
from firegen.campaign.records import TrainingRecord
from firegen.db.repository import ResultsStore
from firegen.workflows.jobs.finalize import final_input, member_steps, with_final


@pytest.fixture
def cfg(tmp_path):
    return load_config(small_cu_config(tmp_path, "cu-settings", final={
        "numb_steps": 500, "training": {"model": {"fitting_net": {"neuron": [20, 20]}}}}))


def test_overrides_replace_the_steps_and_merge_into_the_final_training(cfg):
    again = with_final(cfg, {"numb_steps": 2000, "training": {"loss": {"limit_pref_v": 10}}})
    assert again.final.numb_steps == 2000 and cfg.final.numb_steps == 500  # the stored config is left as it was
    assert again.final.training == {"model": {"fitting_net": {"neuron": [20, 20]}}, "loss": {"limit_pref_v": 10}}
    deepmd = final_input(again, ["train/sys0"], None, seed=7)
    assert deepmd["training"]["numb_steps"] == 2000
    assert deepmd["loss"]["limit_pref_v"] == 10
    assert deepmd["loss"]["start_pref_f"] == cfg.committee.training["loss"]["start_pref_f"]  # the rest of the loss kept
    assert deepmd["model"]["fitting_net"]["neuron"] == [20, 20]


def test_no_override_is_the_campaign_s_own_final_section(cfg):
    assert with_final(cfg, {}) is cfg and with_final(cfg, None) is cfg
    assert final_input(cfg, ["train/sys0"], None, seed=7)["training"]["numb_steps"] == 500


def test_a_bad_value_is_one_error_naming_the_field_and_the_fix(cfg):
    with pytest.raises(ConfigError) as err:
        with_final(cfg, {"numb_steps": 0}, "firegen finalize --numb-steps/--training")
    lines = str(err.value).splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("firegen finalize --numb-steps/--training: final.numb_steps: ")
    assert "(got 0)" in lines[0] and "Fix: set a positive number of training steps" in lines[0]


def test_a_deepmd_key_misspelled_in_the_final_training_is_named_as_dp_train_would(cfg):
    with pytest.raises(ConfigError) as err:
        with_final(cfg, {"training": {"loss": {"limit_pref_q": 10}}}, "firegen finalize --numb-steps/--training")
    message = str(err.value)
    assert message.startswith("firegen finalize --numb-steps/--training: final.training")
    assert "limit_pref_q" in message and "committee.training" not in message


def _member(store, tmp_path, iteration, member, steps, parent=None):
    frozen = tmp_path / f"m{iteration}-{member}.pb"
    frozen.write_bytes(f"model {iteration} {member}".encode())
    record = TrainingRecord("cu-settings", iteration, member, seed=1, backend="tensorflow", dataset_id=ObjectId(),
                            parent=parent, input={"training": {"numb_steps": steps}}, metrics={}, train_seconds=1.0,
                            n_train=10, n_validation=2)
    return store.store_model(record, frozen)


def test_default_steps_are_a_multiple_of_those_behind_a_warm_started_member(cfg, mongo_db, tmp_path):
    """A final model from scratch with 4 x one iteration's steps trained less than a member warm-started
    through 10 iterations (cu_emt_melt: 3,200 steps against 8,000, and worse on held-out frames than every member
    of the last committee; benchmarks/README.md)."""
    store = ResultsStore(mongo_db)
    store.init()
    assert member_steps(store, cfg) == cfg.committee.numb_steps == 300  # nothing trained yet
    a0 = _member(store, tmp_path, 0, 0, 300)
    b0 = _member(store, tmp_path, 0, 1, 300)
    a1 = _member(store, tmp_path, 1, 0, 200, parent=a0)
    _member(store, tmp_path, 1, 1, 200, parent=b0)
    _member(store, tmp_path, 2, 0, 200, parent=a1)
    _member(store, tmp_path, 2, 1, 300)  # trained from scratch again (no stored parent then)
    assert member_steps(store, cfg) == 300 + 200 + 200  # the longest chain of the last committee
    steps = final_input(cfg.model_copy(update={"final": None}), ["train/sys0"], None, seed=7,
                        behind=member_steps(store, cfg))["training"]["numb_steps"]
    assert steps == STEPS_FACTOR * 700
    assert final_input(cfg, ["train/sys0"], None, seed=7, behind=700)["training"]["numb_steps"] == 500  # final.numb_steps
