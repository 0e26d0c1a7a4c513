"""configs/na3ocl_cp2k.yaml through the whole loop with real CP2K labels (40-atom Na3OCl, PBE,
DZVP-MOLOPT-SR-GTH, Γ point, 2 MPI ranks), shrunk to one short iteration: a few single points of
about 30 s each. Slow: select with `-m slow`."""

import shutil

import numpy as np
import pytest
import yaml

from campaign_helpers import ROOT, campaign_db, firegen


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_na3ocl_campaign_runs_with_cp2k_labels(tmp_path):
    shutil.copytree(ROOT / "configs" / "structures", tmp_path / "structures")
    raw = yaml.safe_load((ROOT / "configs" / "na3ocl_cp2k.yaml").read_text())
    raw["initial_data"]["perturb"].update(count=3, scales=[1.0])
    raw["committee"].update(size=2, numb_steps=200)
    raw["selection"]["max_per_iteration"] = 3
    raw["stages"][0].update(temperatures=[300], nsteps=200, max_iterations=1)
    config = tmp_path / "na3ocl-cp2k.yaml"
    config.write_text(yaml.safe_dump(raw, sort_keys=False))
    try:
        run = firegen(tmp_path, "run", str(config), "--timeout", "3000", timeout=3300)
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
        db = campaign_db(tmp_path)
        assert db.campaigns.find_one({"name": "na3ocl-cp2k"})["status"] in ("converged", "max_iterations")
        labeled = list(db.configurations.find({"campaign": "na3ocl-cp2k", "status": "labeled"}))
        assert len(labeled) >= 3
        for doc in labeled:
            label = doc["label"]
            assert label["kind"] == "cp2k" and label["details"]["input_sha256"]
            assert label["version"]  # the CP2K version parsed from its output
            forces = np.reshape(label["forces"], (-1, 3))
            assert forces.shape == (40, 3) and np.all(np.isfinite(forces)) and np.abs(forces).max() < 20  # eV/Å
            assert len(label["virial"]) == 9  # eV, stress tensor on
            assert -2000 < label["energy"] / 40 < -100  # eV/atom: all-electron-free GTH total energies
        assert db.models.count_documents({"campaign": "na3ocl-cp2k", "iteration": 0}) == 2
    finally:
        firegen(tmp_path, "db", "down")
