"""The final-model path on a small real campaign (FerretDB, deepmd-kit, LAMMPS, EMT labels): `firegen finalize`
trains on every label with the `final:` settings, compresses, validates per system and condition, stores the
model with its dataset snapshot and held-out predictions; `firegen export model --final` writes it; `firegen
properties run` runs production MD with it at two temperatures and stores density, RDF, D and the Arrhenius
document with their provenance."""

import json

import pytest

from campaign_helpers import campaign_db, firegen, small_cu_config

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def finalized(tmp_path_factory):
    folder = tmp_path_factory.mktemp("final")
    config = small_cu_config(folder, "cu-fin", stage={"temperatures": [600], "max_iterations": 1},
                             final={"numb_steps": 500, "validation_fraction": 0.2})
    run = firegen(folder, "run", str(config), "--timeout", "900", timeout=1000)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    final = firegen(folder, "finalize", "cu-fin", "--now", timeout=900)
    yield folder, final, campaign_db(folder)
    firegen(folder, "db", "down")


def test_final_model_is_trained_on_every_label_and_stored_with_its_provenance(finalized):
    folder, final, db = finalized
    assert final.returncode == 0, final.stdout[-3000:] + final.stderr[-3000:]
    model = db.models.find_one({"campaign": "cu-fin", "kind": "final"})
    assert model["iteration"] == -1 and model["member"] == 0
    labeled = db.configurations.count_documents({"campaign": "cu-fin", "status": "labeled"})
    dataset = db.datasets.find_one({"_id": model["dataset_id"]})
    assert dataset["iteration"] == -1 and dataset["size"] == labeled
    assert model["n_train"] + model["n_validation"] == labeled and model["n_validation"] >= 2
    assert json.loads(json.dumps(model["input"]))["training"]["numb_steps"] == 500  # final.numb_steps, not 300
    assert model["compressed_file_id"] is not None and model["compress_error"] is None
    groups = model["validation_groups"]
    assert set(groups["per_system"]) == {"fcc"}
    assert sum(g["n_frames"] for g in groups["per_system"].values()) == model["n_validation"]
    assert sum(g["n_frames"] for g in groups["per_condition"].values()) == model["n_validation"]
    for metrics in groups["per_system"].values():
        assert {"rmse_e_per_atom", "mae_e_per_atom", "rmse_f", "mae_f", "rmse_v_per_atom", "mae_v_per_atom"} <= set(metrics)
        assert 0 < metrics["mae_f"] <= metrics["rmse_f"] < 1.0  # eV/Å
    parity = db.heldout_predictions.find_one({"_id": model["_id"]})
    assert len(parity["energy_label"]) == model["n_validation"]
    assert db.campaigns.find_one({"name": "cu-fin"})["final_model_id"] == model["_id"]
    assert "final model" in final.stdout and "held-out RMSE" in final.stdout


def test_finalize_again_keeps_the_stored_model_and_export_writes_it(finalized):
    folder, _, db = finalized
    before = db.models.find_one({"campaign": "cu-fin", "kind": "final"})
    again = firegen(folder, "finalize", "cu-fin", "--now", check=True)
    after = db.models.find_one({"campaign": "cu-fin", "kind": "final"})
    assert after["_id"] == before["_id"] and after["sha256"] == before["sha256"] and after["updated"] == before["updated"]
    assert "final model" in again.stdout
    firegen(folder, "export", "model", "--campaign", "cu-fin", "--final", "-o", "out", check=True)
    manifest = json.loads((folder / "out" / "manifest.json").read_text())
    assert manifest["iteration"] == -1 and manifest["models"][0]["kind"] == "final"
    assert (folder / "out" / "final.pb").stat().st_size > 0 and (folder / "out" / "final-compressed.pb").is_file()
    assert manifest["dataset"]["size"] == before["n_train"] + before["n_validation"]
    committee = firegen(folder, "export", "model", "--campaign", "cu-fin", "-o", "committee", check=True)
    assert "iteration 0" in committee.stdout  # the default export is still the latest committee


def test_properties_run_with_the_final_model_and_are_stored_with_provenance(finalized):
    folder, _, db = finalized
    model = db.models.find_one({"campaign": "cu-fin", "kind": "final"})
    run = firegen(folder, "properties", "run", "cu-fin", "--system", "fcc", "--temperatures", "300,600",
                  "--equilibration-ps", "0.5", "--production-ps", "3", "--sample-fs", "10", "--now", timeout=900)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    runs = list(db.properties.find({"campaign": "cu-fin", "kind": "md"}).sort("md.temperature_K", 1))
    assert [r["md"]["temperature_K"] for r in runs] == [300.0, 600.0]
    for r in runs:
        assert r["model_id"] == model["_id"] and r["model"]["compressed"] is True
        assert r["md"]["engine"] == "lammps" and r["md"]["ensemble"] == "npt" and 1 <= r["md"]["seed"] < 2**31
        dens = r["results"]["density"]
        assert 8.0 < dens["density_g_cm3"] < 9.5 and dens["error_g_cm3"] > 0  # EMT Cu: 8.9 g/cm³ at 0 K
        assert r["results"]["rdf"]["first_peak_A"]["Cu-Cu"] == pytest.approx(2.55, abs=0.15)
        assert r["results"]["n_frames"] == 301 and "Cu" in r["results"]["diffusion"]
    assert runs[0]["md"]["seed"] != runs[1]["md"]["seed"]
    fit = db.properties.find_one({"campaign": "cu-fin", "kind": "arrhenius"})
    assert fit["members"] == [r["_id"] for r in runs] and fit["results"]["temperatures_K"] == [300.0, 600.0]
    show = firegen(folder, "properties", "show", "cu-fin", check=True)
    assert "npt-300K-1bar" in show.stdout and "Arrhenius" in show.stdout
    status = firegen(folder, "status", "cu-fin", check=True)
    assert f"final model {model['_id']}" in status.stdout and "npt-600K-1bar" in status.stdout
    bad = firegen(folder, "properties", "run", "cu-fin", "--system", "bcc", "--temperatures", "300")
    assert bad.returncode == 2 and bad.stderr.strip().startswith("firegen: error: --system 'bcc'")


def test_finalize_with_other_settings_trains_again_with_them_and_a_bad_one_queues_nothing(finalized):
    """`--numb-steps` / `--training` over the stored `final:` section (after the tests above: the model they used
    is replaced here)."""
    folder, _, db = finalized
    before = db.models.find_one({"_id": db.campaigns.find_one({"name": "cu-fin"})["final_model_id"]})["sha256"]
    fireworks = db.fireworks.count_documents({})
    bad = firegen(folder, "finalize", "cu-fin", "--force", "--now", "--numb-steps", "0")
    assert bad.returncode == 2 and "final.numb_steps: must be greater than 0 (got 0)" in bad.stderr
    assert db.fireworks.count_documents({}) == fireworks  # nothing queued
    firegen(folder, "finalize", "cu-fin", "--force", "--now", "--numb-steps", "200",
            "--training", '{"loss": {"limit_pref_v": 5}}', check=True, timeout=900)
    model = db.models.find_one({"_id": db.campaigns.find_one({"name": "cu-fin"})["final_model_id"]})
    deepmd = json.loads(json.dumps(model["input"]))
    assert deepmd["training"]["numb_steps"] == 200 and deepmd["loss"]["limit_pref_v"] == 5  # not 500, not 1
    assert model["final_settings"]["numb_steps"] == 200
    assert model["final_settings"]["training"] == {"loss": {"limit_pref_v": 5}}
    assert model["sha256"] != before


def test_final_at_end_trains_the_final_model_as_a_firework_and_firegen_run_waits_for_it(tmp_path):
    """`final: {at_end: true}`: the campaign's last `select` queues the final model's gpu Firework, the local gpu
    worker of `firegen run` trains it, and `firegen run` returns only once it is done (its workers are stopped
    when it returns, so a final model stored and a finalize Firework COMPLETED by then mean it waited)."""
    from firegen.db.launchpad_queries import campaign_fireworks

    # converged_when asks for more iterations in a row than the stage has: the campaign ends at max_iterations
    config = small_cu_config(tmp_path, "cu-end", stage={"temperatures": [600], "max_iterations": 1,
                                                        "converged_when": {"accurate_ratio": 0.9, "for_iterations": 2}},
                             final={"at_end": True, "numb_steps": 200, "validation_fraction": 0.2})
    try:
        run = firegen(tmp_path, "run", str(config), "--timeout", "900", timeout=1000)
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
        firegen(tmp_path, "db", "up", check=True)  # reuses the server if `firegen run` left it up
        db = campaign_db(tmp_path)
        campaign = db.campaigns.find_one({"name": "cu-end"})
        assert campaign["status"] == "max_iterations"
        finals = [fw for fw in campaign_fireworks(db, "cu-end") if fw["spec"]["firegen"]["kind"] == "finalize"]
        assert [fw["state"] for fw in finals] == ["COMPLETED"]  # queued once, by the campaign's end, and run
        model = db.models.find_one({"campaign": "cu-end", "kind": "final"})
        assert model is not None and campaign["final_model_id"] == model["_id"]
        assert model["iteration"] == -1 and model["member"] == 0
        assert json.loads(json.dumps(model["input"]))["training"]["numb_steps"] == 200  # final.numb_steps
        labeled = db.configurations.count_documents({"campaign": "cu-end", "status": "labeled"})
        dataset = db.datasets.find_one({"_id": model["dataset_id"]})
        assert dataset["iteration"] == -1 and dataset["size"] == labeled
        assert model["n_train"] + model["n_validation"] == labeled and model["n_validation"] >= 2
        assert model["compressed_file_id"] is not None and model["compress_error"] is None
        groups = model["validation_groups"]
        assert set(groups["per_system"]) == {"fcc"}
        assert sum(g["n_frames"] for g in groups["per_condition"].values()) == model["n_validation"]
        for metrics in groups["per_system"].values():
            assert {"rmse_e_per_atom", "mae_e_per_atom", "rmse_f", "mae_f", "rmse_v_per_atom", "mae_v_per_atom"} <= set(metrics)
            assert 0 < metrics["mae_f"] <= metrics["rmse_f"] < 1.5  # eV/Å; 200 steps: looser than the 500-step model's
        parity = db.heldout_predictions.find_one({"_id": model["_id"]})
        assert len(parity["energy_label"]) == model["n_validation"]
        provenance = json.loads(firegen(tmp_path, "provenance", "model", str(model["_id"]), "--limit", "1",
                                        check=True).stdout)
        assert provenance["n_labels"] == labeled  # the dataset behind it, and the labeler that labeled every frame
        assert sum(lab["n"] for lab in provenance["labelers"].values()) == labeled
        status = firegen(tmp_path, "status", "cu-end", check=True)
        assert f"final model {model['_id']}" in status.stdout
    finally:
        firegen(tmp_path, "db", "down")
