"""Tests of the training step with real deepmd-kit (TensorFlow backend) on EMT Cu data."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from firegen.workflows.steps.train import (
    DEFAULT_INPUT,
    TrainingError,
    _thread_env,
    evaluate_model,
    find_dp,
    make_training_input,
    member_seeds,
    model_training_script,
    parse_lcurve,
    train_model,
)
from science_data import CU_TYPE_MAP, TINY_TEMPLATE, make_emt_dataset

STEPS = 100


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("emt_cu")
    return {
        "train": make_emt_dataset(root / "train", n_frames=20, seed=0),
        "test": make_emt_dataset(root / "test", n_frames=6, seed=1),
    }


@pytest.fixture(scope="module")
def trained(tmp_path_factory, data):
    """Two committee members (seeds 1 and 2), trained for STEPS steps each."""
    root = tmp_path_factory.mktemp("committee")
    results = {}
    for seed in (1, 2):
        input_dict = make_training_input(
            TINY_TEMPLATE,
            [str(data["train"])],
            CU_TYPE_MAP,
            seed=seed,
            numb_steps=STEPS,
            validation_systems=[str(data["test"])],
        )
        results[seed] = train_model(root / f"member{seed}", input_dict)
    return results


# ------------------------------------------------------------------ input construction


def test_template_merged_over_defaults():
    template = {
        "model": {"descriptor": {"rcut": 5.0, "neuron": [8, 16]}},
        "loss": {"start_pref_v": 0.02, "limit_pref_v": 1.0},
        "training": {"disp_freq": 7},
    }
    out = make_training_input(template, ["sys_a", "sys_b"], ["Na", "Cl"], seed=3, numb_steps=50)
    desc = out["model"]["descriptor"]
    assert desc["rcut"] == 5.0 and desc["neuron"] == [8, 16]  # template wins
    assert desc["type"] == "se_e2_a" and desc["sel"] == "auto"  # defaults kept
    assert desc["rcut_smth"] == DEFAULT_INPUT["model"]["descriptor"]["rcut_smth"]
    assert out["model"]["fitting_net"]["neuron"] == [240, 240, 240]
    assert out["loss"]["start_pref_v"] == 0.02 and out["loss"]["start_pref_f"] == 1000.0
    assert out["model"]["type_map"] == ["Na", "Cl"]
    assert out["training"]["training_data"]["systems"] == ["sys_a", "sys_b"]
    assert out["training"]["numb_steps"] == 50
    assert out["training"]["disp_freq"] == 7  # user setting kept
    assert out["training"]["save_freq"] == 50  # scaled to the short run
    assert "validation_data" not in out["training"]
    json.dumps(out)  # JSON-serializable
    # pure: neither the template nor the defaults were touched
    assert template["model"]["descriptor"] == {"rcut": 5.0, "neuron": [8, 16]}
    assert DEFAULT_INPUT["model"]["type_map"] == []


def test_a_warm_start_restarts_at_the_prefactors_it_is_given_and_keeps_the_templates_by_default():
    from firegen.campaign.config_loop import WarmStartConfig
    from firegen.workflows.steps.train_input import restart_schedule

    template = {"learning_rate": {"type": "exp", "start_lr": 1e-3, "stop_lr": 1e-5},
                "loss": {"start_pref_e": 0.02, "limit_pref_e": 1, "start_pref_f": 1000, "limit_pref_f": 1,
                         "start_pref_v": 0, "limit_pref_v": 0}}
    warm = WarmStartConfig()
    assert restart_schedule(template, warm.start_lr, warm.start_pref_e, warm.start_pref_f) == template
    out = restart_schedule(template, None, 0.1, 100)  # DP-GEN's older training_reuse defaults
    assert (out["loss"]["start_pref_e"], out["loss"]["start_pref_f"]) == (0.1, 100.0)
    assert out["learning_rate"] == template["learning_rate"] and out["loss"]["limit_pref_e"] == 1
    assert template["loss"]["start_pref_e"] == 0.02  # the template itself is left alone
    no_energy = {"loss": {**template["loss"], "start_pref_e": 0, "limit_pref_e": 0}}
    assert restart_schedule(no_energy, None, 0.1, 100)["loss"]["start_pref_e"] == 0  # left out stays out


def test_seeds_differ_per_member_and_are_deterministic():
    a = make_training_input({}, ["s"], ["Cu"], seed=0)
    b = make_training_input({}, ["s"], ["Cu"], seed=1)
    a2 = make_training_input({}, ["s"], ["Cu"], seed=0)

    def seeds(d):
        return (d["model"]["descriptor"]["seed"], d["model"]["fitting_net"]["seed"], d["training"]["seed"])

    assert seeds(a) == seeds(a2) == member_seeds(0)
    assert seeds(a) != seeds(b)
    assert all(s != t for s, t in zip(seeds(a), seeds(b)))
    assert all(0 <= s < 2**31 for s in seeds(a) + seeds(b))
    assert a["training"]["numb_steps"] == DEFAULT_INPUT["training"]["numb_steps"]


def test_other_descriptor_type_replaces_default_section():
    template = {
        "model": {
            "type_map": ["X"],  # campaign's type map overrides it
            "descriptor": {
                "type": "hybrid",
                "list": [
                    {"type": "se_e2_a", "sel": "auto", "rcut": 6.0, "rcut_smth": 0.5},
                    {"type": "se_e2_r", "sel": "auto", "rcut": 4.0, "rcut_smth": 0.5},
                ],
            },
        },
        "training": {"validation_data": {"systems": ["stale"], "numb_btch": 3}},
    }
    out = make_training_input(template, ["s"], ["Li", "O"], seed=5, validation_systems=["v"])
    desc = out["model"]["descriptor"]
    assert set(desc) == {"type", "list", "seed"}  # no se_e2_a keys leaked in
    assert desc["list"][0]["seed"] != desc["list"][1]["seed"]
    assert out["model"]["type_map"] == ["Li", "O"]
    assert out["training"]["validation_data"] == {"systems": ["v"], "numb_btch": 3, "batch_size": "auto"}


@pytest.mark.parametrize(
    ("template", "key"),
    [
        ([1, 2], "dict"),
        ({"model": "se_e2_a"}, "'model'"),
        ({"model": {"descriptor": [1]}}, "'model.descriptor'"),
        ({"training": {"training_data": "x"}}, "'training.training_data'"),
        ({"learning_rate": 0.001}, "'learning_rate'"),
        ({"training": {"systems": ["a"]}}, "'training.systems'"),
        ({"training": {"numb_steps": "10"}}, "'training.numb_steps'"),
    ],
)
def test_bad_template_names_the_key(template, key):
    with pytest.raises(ValueError, match=key):
        make_training_input(template, ["s"], ["Cu"], seed=0)


def test_bad_arguments():
    with pytest.raises(ValueError, match="type_map"):
        make_training_input({}, ["s"], "Cu", seed=0)
    with pytest.raises(ValueError, match="train_systems"):
        make_training_input({}, [], ["Cu"], seed=0)
    with pytest.raises(ValueError, match="seed"):
        make_training_input({}, ["s"], ["Cu"], seed=-1)
    with pytest.raises(ValueError, match="numb_steps"):
        make_training_input({}, ["s"], ["Cu"], seed=0, numb_steps=-5)


def test_thread_env_keeps_user_values(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "7")
    monkeypatch.setenv("TF_INTRA_OP_PARALLELISM_THREADS", "3")
    monkeypatch.delenv("DP_INTRA_OP_PARALLELISM_THREADS", raising=False)
    monkeypatch.delenv("DP_INTER_OP_PARALLELISM_THREADS", raising=False)
    monkeypatch.delenv("TF_INTER_OP_PARALLELISM_THREADS", raising=False)
    env = _thread_env(2)
    assert env["OMP_NUM_THREADS"] == "7"
    assert "DP_INTRA_OP_PARALLELISM_THREADS" not in env  # the TF_ alias is honored
    assert env["DP_INTER_OP_PARALLELISM_THREADS"] == "1"


def test_thread_env_takes_a_workers_share_from_omp_num_threads(monkeypatch):
    """A local worker given one of the cores (OMP_NUM_THREADS=1) trains with one intra-op thread, not all cores."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    for name in ("DP_INTRA_OP_PARALLELISM_THREADS", "TF_INTRA_OP_PARALLELISM_THREADS",
                 "DP_INTER_OP_PARALLELISM_THREADS", "TF_INTER_OP_PARALLELISM_THREADS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(16)))
    assert _thread_env(None)["DP_INTRA_OP_PARALLELISM_THREADS"] == "1"
    monkeypatch.delenv("OMP_NUM_THREADS")
    env = _thread_env(None)
    assert (env["OMP_NUM_THREADS"], env["DP_INTRA_OP_PARALLELISM_THREADS"]) == ("16", "16")


def test_parse_lcurve(tmp_path):
    path = tmp_path / "lcurve.out"
    path.write_text(
        "# step rmse_trn rmse_e_trn rmse_f_trn lr\n"
        "# If there is no available reference data, rmse_*_{val,trn} will print nan\n"
        "0 1.0e+01 1.0e+00 4.0e-01 1.0e-03\n"
        "10 5.0e+00 nan 2.0e-01 5.0e-04\n"
    )
    last = parse_lcurve(path)
    assert last["step"] == 10 and last["rmse_f_trn"] == 0.2 and math.isnan(last["rmse_e_trn"])


# ------------------------------------------------------------------- real deepmd-kit


def test_training_produces_loadable_model(trained):
    from deepmd.infer import DeepPot

    result = trained[1]
    assert result.frozen_model.is_file() and result.frozen_model.name == "frozen_model.pb"
    assert result.wall_time == pytest.approx(result.train_time + result.freeze_time)
    assert result.train_time > 0 and result.freeze_time > 0
    assert json.loads((result.workdir / "input.json").read_text()) == result.input_dict
    assert result.lcurve["step"] == STEPS
    for key in ("rmse_e_trn", "rmse_f_trn", "rmse_e_val", "rmse_f_val", "lr"):
        assert np.isfinite(result.lcurve[key]), key
    sel = result.resolved_input["model"]["descriptor"]["sel"]
    assert isinstance(sel, list) and sel[0] > 0  # "auto" resolved from the data
    assert model_training_script(result.frozen_model)["model"]["descriptor"]["sel"] == sel
    model = DeepPot(str(result.frozen_model))
    assert list(model.get_type_map()) == CU_TYPE_MAP
    assert model.get_rcut() == pytest.approx(TINY_TEMPLATE["model"]["descriptor"]["rcut"])


def test_the_in_process_freeze_gives_the_model_dp_freeze_gives(trained, data):
    """Without a ``dp`` of the caller's and without a GPU, the freeze runs in this process (its log line says so);
    ``dp --tf freeze`` on the same checkpoint predicts the same energies, forces and virials."""
    import subprocess

    from deepmd.infer import DeepPot

    result = trained[1]
    assert "(in-process: deepmd.tf.entrypoints.freeze)" in result.log.read_text()
    subprocess.run([find_dp(), "--tf", "freeze", "-o", "by_cli.pb"], cwd=result.workdir, check=True,
                   capture_output=True)
    coords = np.load(data["test"] / "set.000" / "coord.npy")[:2]
    cells = np.load(data["test"] / "set.000" / "box.npy")[:2]
    types = np.loadtxt(data["test"] / "type.raw", dtype=int)
    here, cli = (DeepPot(str(path)).eval(coords, cells, types) for path in (result.frozen_model,
                                                                                result.workdir / "by_cli.pb"))
    for a, b in zip(here, cli):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-10)


def test_an_in_process_freeze_that_fails_is_a_training_error_with_its_log(tmp_path):
    from firegen.workflows.steps.train import _freeze_here

    log = tmp_path / "train.log"
    log.write_text("dp train ran here\n")
    with pytest.raises(TrainingError, match=r"^dp freeze failed in .*: \w+") as caught:
        _freeze_here(tmp_path, log)  # no checkpoint in the folder
    assert "in-process: deepmd.tf.entrypoints.freeze" in caught.value.log_tail and "freeze failed:" in log.read_text()
    assert not (tmp_path / "frozen_model.pb").exists()


def test_evaluate_model_on_held_out_frames(trained, data):
    metrics = evaluate_model(trained[1].frozen_model, [str(data["test"])], CU_TYPE_MAP)
    assert metrics["n_frames"] == 6 and metrics["n_atoms"] == 6 * 32
    for key in ("rmse_e_per_atom", "rmse_f", "rmse_v_per_atom", "mae_e_per_atom", "mae_f"):
        assert np.isfinite(metrics[key]) and metrics[key] >= 0, key
    # EMT forces in this data have a spread of ~0.45 eV/Å; a 100-step model must beat
    # "predict zero" by a margin but is far from converged.
    assert metrics["rmse_f"] < 0.45
    assert metrics["mae_f"] <= metrics["rmse_f"]
    # pooled over systems: the same system twice gives the same RMSEs
    twice = evaluate_model(trained[1].frozen_model, [data["test"], data["test"]])
    assert twice["n_frames"] == 12
    assert twice["rmse_f"] == pytest.approx(metrics["rmse_f"])


def test_held_out_parity_points_are_the_predictions_the_metrics_measure(trained, data):
    metrics = evaluate_model(trained[1].frozen_model, [str(data["test"])], CU_TYPE_MAP, parity_forces=100)
    parity = metrics["parity"]
    assert len(parity["energy_label"]) == len(parity["energy_model"]) == 6
    e_err = np.subtract(parity["energy_model"], parity["energy_label"])
    assert np.sqrt(np.mean(e_err ** 2)) == pytest.approx(metrics["rmse_e_per_atom"])
    assert parity["force_stride"] == 6 and len(parity["force_label"]) == len(parity["force_model"]) == 6 * 32 * 3 // 6
    assert "parity" not in evaluate_model(trained[1].frozen_model, [str(data["test"])], CU_TYPE_MAP)


def test_two_seeds_give_different_predictions(trained, data):
    from deepmd.infer import DeepPot
    import dpdata

    system = dpdata.LabeledSystem(str(data["test"]), fmt="deepmd/npy")
    coords = system["coords"][:1].reshape(1, -1)
    cells = system["cells"][:1].reshape(1, 9)
    atype = system["atom_types"]
    forces = [DeepPot(str(trained[s].frozen_model)).eval(coords, cells, atype)[1] for s in (1, 2)]
    deviation = np.linalg.norm(forces[0] - forces[1], axis=-1).max()  # eV/Å
    assert deviation > 1e-3
    seeds = [trained[s].input_dict["training"]["seed"] for s in (1, 2)]
    assert seeds[0] != seeds[1]


def test_init_from_frozen_model(trained, data, tmp_path):
    parent = trained[1]
    # next iteration: more (and different) data, sel "auto" again
    extra = make_emt_dataset(tmp_path / "extra", n_frames=4, seed=7, displacement=0.1)
    input_dict = make_training_input(
        TINY_TEMPLATE, [str(data["train"]), str(extra)], CU_TYPE_MAP, seed=11, numb_steps=20
    )
    assert input_dict["model"]["descriptor"]["sel"] == "auto"
    child = train_model(tmp_path / "child", input_dict, init_model=parent.frozen_model)
    assert input_dict["model"]["descriptor"]["sel"] == "auto"  # caller's dict untouched
    # the parent's resolved sel is inherited so the weights fit
    assert child.input_dict["model"]["descriptor"]["sel"] == parent.resolved_input["model"]["descriptor"]["sel"]
    assert "--init-frz-model" in child.log.read_text()
    assert child.frozen_model.is_file()
    # starting from trained weights: the first lcurve row is already far below a fresh start
    first = np.loadtxt(child.workdir / "lcurve.out", ndmin=2)[0]
    fresh = np.loadtxt(parent.workdir / "lcurve.out", ndmin=2)[0]
    assert first[0] == 0 and first[1] < fresh[1]
    metrics = evaluate_model(child.frozen_model, [str(data["test"])])
    assert np.isfinite(metrics["rmse_f"])


def test_training_failure_raises_with_log_tail(tmp_path):
    input_dict = make_training_input(
        TINY_TEMPLATE, [str(tmp_path / "no_such_system")], CU_TYPE_MAP, seed=0, numb_steps=5
    )
    with pytest.raises(TrainingError, match="dp train failed") as info:
        train_model(tmp_path / "fail", input_dict)
    assert info.value.log_path == tmp_path / "fail" / "train.log"
    assert "last lines of the log" in str(info.value) and info.value.log_tail
    with pytest.raises(TrainingError, match="does not exist"):
        train_model(tmp_path / "fail2", input_dict, init_model=tmp_path / "missing.pb")
