"""Export of a campaign's data (dpdata deepmd/npy, extxyz) and of its frozen committee, on a real FerretDB.

Labeled configurations are built directly through ResultsStore with EMT labels (no training);
the round trip export → import (initial_data.deepmd_npy) must give the same content hashes and
the same labels. The model export uses one tiny real deepmd-kit model, cached between runs.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from ase.build import bulk
from ase.calculators.emt import EMT

from campaign_helpers import ROOT, firegen
from science_data import make_emt_dataset, train_tiny_model

from firegen.db.dataset_pages import member_ids
from firegen.campaign.errors import FiregenError
from firegen.db.repository import ResultsStore
from firegen.campaign.config import validate_dict
from firegen.orchestrator.export import export_data, export_model
from firegen.workflows.steps.label import stress_to_virial

TYPE_MAP = ["Cu", "Au"]


def _frames(n: int, seed: int, alloy: bool):
    rng = np.random.default_rng(seed)
    base = bulk("Cu", "fcc", a=3.7 if alloy else 3.61, cubic=True).repeat((2, 1, 1))
    if alloy:
        symbols = base.get_chemical_symbols()
        symbols[0] = symbols[3] = "Au"
        base.set_chemical_symbols(symbols)
    for _ in range(n):
        atoms = base.copy()
        atoms.positions += rng.normal(0, 0.05, atoms.positions.shape)
        atoms.calc = EMT()
        yield atoms


def _label(atoms) -> dict:
    return {"energy": atoms.get_potential_energy(), "forces": atoms.get_forces(), "code": "ase-EMT",
            "settings_hash": "emt", "virial": stress_to_virial(atoms.get_stress(), atoms.get_volume())}


@pytest.fixture
def store(mongo_db):
    s = ResultsStore(mongo_db)
    s.init()
    s.create_campaign("src", {}, TYPE_MAP)
    ids = []
    for k, atoms in enumerate(list(_frames(4, 1, False)) + list(_frames(3, 2, True))):
        cid, _ = s.add_atoms("src", atoms, {"kind": "init", "frame": k, "iteration": -1}, status="selected")
        s.set_label(cid, _label(atoms))
        ids.append(cid)
    s.snapshot_dataset("src", 0)  # what iteration 0 trains on: these 7
    for k, atoms in enumerate(_frames(2, 3, False)):  # labeled later
        cid, _ = s.add_atoms("src", atoms, {"kind": "explored", "frame": k, "iteration": 0}, status="selected")
        s.set_label(cid, _label(atoms))
    for k, atoms in enumerate(_frames(2, 4, False)):  # candidates, not labeled
        s.add_atoms("src", atoms, {"kind": "explored", "frame": 10 + k, "iteration": 0}, status="candidate")
    return s


def _import(store: ResultsStore, folder: Path, name: str) -> dict:
    """Import an exported deepmd/npy folder into a new campaign, as the init Firework does."""
    from firegen.workflows.jobs.init import initial_configurations

    raw = yaml.safe_load((ROOT / "configs" / "cu_emt.yaml").read_text())
    raw.update(name=name, type_map=TYPE_MAP, initial_data={"deepmd_npy": [str(folder)]})
    raw["systems"][0]["structure"] = str(ROOT / "configs" / "structures" / "Cu.vasp")
    cfg = validate_dict(raw, check_files=True)
    assert initial_configurations(store, cfg, {}, [str(folder)]) == []
    return {d["hash"]: d for d in store.configurations.find({"campaign": name})}


def test_data_round_trip_gives_the_same_configurations_and_labels(store, tmp_path):
    result = export_data(store, "src", tmp_path / "all")
    manifest = json.loads((tmp_path / "all" / "manifest.json").read_text())
    assert manifest == json.loads(json.dumps(result.manifest, default=str))
    assert sorted(s["formula"] for s in manifest["systems"]) == ["Cu6Au2", "Cu8Au0"]
    assert sum(s["frames"] for s in manifest["systems"]) == 9 == len(manifest["configurations"])
    source = {d["hash"]: d for d in store.configurations.find({"campaign": "src", "status": "labeled"})}
    assert {c["hash"] for c in manifest["configurations"]} == set(source)

    copied = _import(store, tmp_path / "all", "copy")
    assert set(copied) == set(source)
    for digest, doc in source.items():
        new = copied[digest]
        assert new["origin"]["kind"] == "imported" and new["status"] == "labeled"
        assert new["label"]["energy"] == pytest.approx(doc["label"]["energy"], abs=1e-6)
        # atoms may come back in another order (grouped by element): compare forces per atom position
        old_f = dict(zip(map(tuple, np.round(np.reshape(doc["positions"], (-1, 3)), 4)),
                         np.reshape(doc["label"]["forces"], (-1, 3))))
        for pos, f in zip(np.reshape(new["positions"], (-1, 3)), np.reshape(new["label"]["forces"], (-1, 3))):
            np.testing.assert_allclose(f, old_f[tuple(np.round(pos, 4))], atol=1e-6)
        np.testing.assert_allclose(new["label"]["virial"], doc["label"]["virial"], atol=1e-6)


def test_iteration_export_is_the_training_snapshot(store, tmp_path):
    snapshot = store.datasets.find_one({"campaign": "src", "iteration": 0})
    result = export_data(store, "src", tmp_path / "it0", iteration=0)
    assert result.manifest["dataset"]["hash"] == snapshot["hash"]
    assert {c["id"] for c in result.manifest["configurations"]} == {str(i) for i in member_ids(store.db, snapshot)}
    assert len(result.manifest["configurations"]) == 7
    with pytest.raises(FiregenError, match="no training snapshot for iteration 5. Fix: use one of: 0"):
        export_data(store, "src", tmp_path / "it5", iteration=5)


def test_extxyz_and_structure_only_exports(store, tmp_path):
    import dpdata

    import ase.io

    export_data(store, "src", tmp_path / "xyz", fmt="extxyz")
    frames = [a for p in sorted((tmp_path / "xyz").glob("*.xyz")) for a in ase.io.read(p, index=":")]
    assert len(frames) == 9
    assert sum(len(dpdata.MultiSystems.from_file(str(p), fmt="quip/gap/xyz"))
               for p in (tmp_path / "xyz").glob("*.xyz")) == 2
    energies = sorted(a.get_potential_energy() for a in frames)
    expected = sorted(d["label"]["energy"] for d in store.configurations.find({"campaign": "src", "status": "labeled"}))
    assert energies == pytest.approx(expected, abs=1e-6)
    result = export_data(store, "src", tmp_path / "cand", status="candidate")
    [system] = result.manifest["systems"]
    assert len(dpdata.System(str(tmp_path / "cand" / system["path"]), fmt="deepmd/npy")) == 2


def test_export_cli_and_its_errors(store, tmp_path, launchpad, ferretdb, db_name):
    # the store fixture wrote to the same database as the launchpad (same db_name)
    lp_file = tmp_path / "lp.yaml"
    launchpad.to_file(str(lp_file))
    out = firegen(tmp_path, "--launchpad", str(lp_file), "export", "data", "--campaign", "src", "-o", "data",
                  "--format", "extxyz")
    assert out.returncode == 0, out.stderr
    assert "wrote 9 configuration(s) in 2 system(s)" in out.stdout
    bad = firegen(tmp_path, "--launchpad", str(lp_file), "export", "data", "--campaign", "nope", "-o", "x")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "Fix: use one of: src" in bad.stderr
    none = firegen(tmp_path, "--launchpad", str(lp_file), "export", "model", "--campaign", "src", "-o", "m")
    assert none.returncode == 2 and "no trained model yet" in none.stderr


@pytest.fixture
def tiny_model(request, tmp_path_factory) -> Path:
    """One tiny frozen Cu model, trained once and kept in pytest's cache folder between runs."""
    try:
        folder = Path(request.config.cache.mkdir("firegen-tiny-model-export"))
    except AttributeError:  # -p no:cacheprovider
        folder = tmp_path_factory.mktemp("tiny-model")
    model = folder / "train" / "frozen_model.pb"
    if not model.is_file():
        data = make_emt_dataset(folder / "data", n_frames=8, seed=5)
        model = train_tiny_model(folder / "train", data, seed=7, steps=20)
    return model


def test_model_export_writes_the_checked_committee_and_manifest(store, tmp_path, tiny_model):
    from deepmd.infer import DeepPot

    snapshot = store.datasets.find_one({"campaign": "src", "iteration": 0})
    ids = [store.add_model("src", 0, m, seed=100 + m, backend="tensorflow", dataset_id=snapshot["_id"],
                           model_file=tiny_model, metrics={"train": {"rmse_f": 0.1 + m}}) for m in range(2)]
    result = export_model(store, "src", tmp_path / "models")
    digest = hashlib.sha256(tiny_model.read_bytes()).hexdigest()
    manifest = json.loads((tmp_path / "models" / "manifest.json").read_text())
    assert manifest["iteration"] == 0 and manifest["type_map"] == TYPE_MAP
    assert [m["id"] for m in manifest["models"]] == [str(i) for i in ids]
    assert [(m["member"], m["seed"], m["file"]) for m in manifest["models"]] == [
        (0, 100, "graph.000.pb"), (1, 101, "graph.001.pb")]
    assert manifest["models"][1]["metrics"] == {"train": {"rmse_f": 1.1}}
    assert manifest["dataset"]["hash"] == snapshot["hash"]
    hashes = {d["_id"]: d["hash"] for d in store.configurations.find({"datasets": snapshot["_id"]})}
    assert {(c["id"], c["hash"]) for c in manifest["dataset"]["configurations"]} == {
        (str(k), v) for k, v in hashes.items()}
    assert manifest["deepmd_kit_version"]
    for entry in manifest["models"]:
        path = tmp_path / "models" / entry["file"]
        assert entry["sha256"] == digest == hashlib.sha256(path.read_bytes()).hexdigest()
        assert DeepPot(str(path)).get_type_map() == ["Cu"]
    assert len(result.files) == 3

    store.models.update_one({"_id": ids[1]}, {"$set": {"sha256": "0" * 64}})
    with pytest.raises(FiregenError, match="differs from the model document"):
        export_model(store, "src", tmp_path / "tampered", iteration=0)
