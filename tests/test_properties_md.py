"""A property run's pieces without a campaign: the production protocol with ASE and EMT (the reference labeler
of configs/cu_emt.yaml), its analysis, the LAMMPS input it writes, and the ``properties`` collection's schema
on a real FerretDB."""

from __future__ import annotations

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT
from bson import ObjectId

from firegen.db.errors import SchemaViolation
from firegen.db.properties import PropertyStore, property_key
from firegen.db.schema import init_schema
from firegen.workflows.steps.properties_analysis import AnalysisSettings, analyse_trajectory
from firegen.workflows.steps.properties_md import PropertyMD, run_property_ase, write_property_lammps


def test_emt_copper_npt_run_gives_its_density_rdf_and_a_solid_like_diffusion():
    atoms = bulk("Cu", "fcc", a=3.615, cubic=True).repeat(3)  # 108 atoms
    md = PropertyMD(temperature_K=300.0, pressure_bar=1.0, dt_fs=2.0, equilibration_ps=0.2, production_ps=2.2,
                    sample_fs=10.0, seed=7)  # 2.2 ps: D is fitted from 1 ps lags, in 2 blocks at least
    traj = run_property_ase(atoms, EMT(), md)
    assert len(traj.frames) == 221 and traj.dt_ps == pytest.approx(0.01)
    results = analyse_trajectory(traj.frames, traj.dt_ps, 300.0, AnalysisSettings(charges={"Cu": 1}))
    dens = results["density"]
    assert dens["density_g_cm3"] == pytest.approx(8.9, abs=0.25)  # EMT's fcc Cu near room temperature
    assert results["rdf"]["first_peak_A"]["Cu-Cu"] == pytest.approx(3.615 / np.sqrt(2), abs=0.1)
    msd = results["msd"]["msd_A2"]["Cu"]
    assert 0.01 < msd[-1] < 0.1  # Å²: a crystal at 300 K rattles (6 x 0.007 Å² in EMT Cu) and does not diffuse
    assert results["conductivity"]["temperature_K"] == 300.0
    assert results["msd"]["msd_A2"]["Cu"][0] == 0.0 and len(results["msd"]["time_ps"]) <= 200


def test_the_same_seed_repeats_a_run_and_another_seed_does_not():
    atoms = bulk("Cu", "fcc", a=3.615, cubic=True).repeat(2)
    md = PropertyMD(temperature_K=500.0, ensemble="nvt", pressure_bar=None, dt_fs=2.0, equilibration_ps=0.0,
                    production_ps=0.1, sample_fs=10.0, seed=3)
    a, b = run_property_ase(atoms, EMT(), md), run_property_ase(atoms, EMT(), md)
    c = run_property_ase(atoms, EMT(), PropertyMD(**{**md.as_dict(), "seed": 4}))
    assert np.array_equal(a.frames[-1].positions, b.frames[-1].positions)
    assert not np.allclose(a.frames[-1].positions, c.frames[-1].positions)


def test_lammps_input_runs_one_model_with_unwrapped_dump_after_equilibration(tmp_path):
    model = tmp_path / "graph.pb"
    model.write_bytes(b"not read here")
    md = PropertyMD(temperature_K=600.0, dt_fs=1.0, equilibration_ps=2.0, production_ps=5.0, sample_fs=20.0, seed=11)
    text = write_property_lammps(tmp_path / "md", bulk("Cu", cubic=True), ["Cu"], model, md, [63.546]).read_text()
    lines = text.splitlines()
    assert f"pair_style      deepmd {model}" in lines
    assert "fix             1 all npt temp 600 600 0.1 iso 1 1 1" in lines
    assert "velocity        all create 600 11 mom yes rot no dist gaussian" in lines
    assert lines.index("run             2000") < lines.index("reset_timestep  0") < lines.index(
        "dump            1 all custom 20 prod.dump id type xu yu zu") < lines.index("run             5000")
    with pytest.raises(ValueError, match="multiple of dt_fs"):
        PropertyMD(temperature_K=600.0, dt_fs=2.0, sample_fs=15.0)
    assert md.label() == "npt-600K-1bar"


def test_property_documents_are_checked_and_replaced_by_key(mongo_db):
    init_schema(mongo_db)
    store = PropertyStore(mongo_db)
    model = ObjectId()
    key = property_key("cu", model, "fcc", "md", "npt-600K-1bar")
    doc = {"_id": key, "campaign": "cu", "model_id": model, "system": "fcc", "kind": "md",
           "md": {"temperature_K": 600.0}, "analysis": {}, "results": {"density": {"density_g_cm3": 8.7}}}
    store.store(doc)
    store.store({**doc, "results": {"density": {"density_g_cm3": 8.6}}})  # a rerun replaces it
    assert mongo_db.properties.count_documents({}) == 1
    assert store.get(key)["results"]["density"]["density_g_cm3"] == 8.6
    assert [d["_id"] for d in store.of_campaign("cu")] == [key]
    with pytest.raises(SchemaViolation, match="kind"):
        store.store({**doc, "kind": "guess"})
    with pytest.raises(SchemaViolation, match="results"):
        store.store({k: v for k, v in doc.items() if k != "results"})
