"""Exploration protocols: fixed strain, continuous deformation, ramps, npt-tri, melt-quench.

Pure checks of the strain tensors and of the generated LAMMPS inputs (numbers parsed back),
then short real runs (LAMMPS with the deepmd-kit plugin, and the ASE engine) with a tiny
DeePMD model trained on EMT Cu, checking that the trajectories change as asked. Units: Å, K,
bar, fs for dt, ps for durations and damping, K/ps for rates; strains are fractions.
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import numpy as np
import pytest
from ase.build import bulk
from ase.io import read

from firegen.workflows.steps.ase_md import ramp_blocks
from firegen.workflows.steps.explore import (MDCondition, Segment, apply_strain, condition_key,
                                             deformation_gradient, melt_quench_nsteps,
                                             melt_quench_segments, run_ase_md, run_lammps,
                                             write_lammps_inputs)
from firegen.campaign.protocols import check_strain, lammps_deform_args
from firegen.workflows.steps.train import make_training_input, train_model
from science_data import CU_LATTICE_A, TINY_TEMPLATE, make_emt_dataset

TYPE_MAP = ["Cu", "Al"]
A = CU_LATTICE_A * 2  # edge of the 32-atom cubic supercell (Å)
#: A short melt-quench: 50 + 50 + 50 + 20 + 30 steps at dt = 1 fs.
RECIPE = dict(melt_temperature=1400.0, heat_ps=0.05, hold_ps=0.05, quench_rate_K_per_ps=22000.0,
              relax_ps=0.02, npt_ps=0.03)


def cu32():
    """32-atom cubic fcc Cu (a = 3.61 Å)."""
    return bulk("Cu", "fcc", a=CU_LATTICE_A, cubic=True).repeat((2, 2, 2))


def spec(mode, direction, value):
    return {"mode": mode, "direction": direction, "value": value}


def melt_quench(ensemble="npt", pressure=1.0, **kw) -> MDCondition:
    n = melt_quench_nsteps(RECIPE, 300.0, kw.get("dt", 1.0))
    return MDCondition(ensemble, 300.0, pressure, n, melt_quench=RECIPE, **kw)


# ----------------------------------------------------------------- strain tensors


@pytest.mark.parametrize("direction, axis", [("xx", 0), ("yy", 1), ("zz", 2)])
def test_uniaxial_strain_stretches_one_axis(direction, axis):
    atoms = cu32()
    out = apply_strain(atoms, spec("uniaxial", direction, 0.05))
    lengths = np.full(3, A)
    lengths[axis] *= 1.05
    assert np.allclose(out.cell.cellpar(), [*lengths, 90, 90, 90])
    assert out.get_volume() == pytest.approx(atoms.get_volume() * 1.05)
    assert np.allclose(out.get_scaled_positions(), atoms.get_scaled_positions())  # atoms scaled too
    assert np.allclose(atoms.cell.lengths(), A)  # input untouched


@pytest.mark.parametrize("direction, angle", [("yz", 3), ("xz", 4), ("xy", 5)])
@pytest.mark.parametrize("gamma", [0.1, -0.3, 0.5])
def test_shear_strain_tilts_one_angle_at_constant_volume(direction, angle, gamma):
    """Shear ``ij`` by γ: r_i += γ r_j; the angle between the two axes becomes acos(γ/√(1+γ²))."""
    atoms = cu32()
    out = apply_strain(atoms, spec("shear", direction, gamma))
    par = out.cell.cellpar()
    expected = math.degrees(math.acos(gamma / math.sqrt(1 + gamma**2)))
    assert par[angle] == pytest.approx(expected)
    assert [par[k] for k in range(3, 6) if k != angle] == pytest.approx([90, 90])
    assert out.get_volume() == pytest.approx(atoms.get_volume())
    grad = deformation_gradient(spec("shear", direction, gamma))
    i, j = "xyz".index(direction[0]), "xyz".index(direction[1])
    assert grad[i, j] == gamma and np.count_nonzero(grad - np.eye(3)) == 1
    assert np.allclose(out.positions, atoms.positions @ grad.T)


def test_isotropic_strain_scales_volume_by_cube():
    atoms = cu32()
    out = apply_strain(atoms, spec("isotropic", None, -0.05))
    assert np.allclose(out.cell.lengths(), 0.95 * A)
    assert out.get_volume() == pytest.approx(0.95**3 * atoms.get_volume())
    assert np.array_equal(apply_strain(atoms, None).cell[:], atoms.cell[:])


@pytest.mark.parametrize("bad, match", [
    (spec("uniaxial", "xy", 0.1), "does not fit mode 'uniaxial'"),
    (spec("shear", "xx", 0.1), "does not fit mode 'shear'"),
    (spec("isotropic", "xx", 0.1), "leave it out"),
    (spec("twist", None, 0.1), "mode must be one of"),
    (spec("uniaxial", "xx", 0.0), "non-zero"),
    (spec("uniaxial", "xx", -1.0), "lengths stay positive"),
    ({"mode": "shear", "direction": "xy", "value": 0.1, "rate": 1}, "unknown keys"),
])
def test_bad_strain_specs(bad, match):
    with pytest.raises(ValueError, match=match):
        check_strain(bad)


# ----------------------------------------------------------------- MDCondition


def test_condition_protocol_fields_and_keys():
    ramp = MDCondition("nvt", 10, None, 1000, temperature_stop=2000)
    assert ramp.key == "ramp10-2000K" and ramp.label() == "nvt T=10-2000K"
    strained = MDCondition("nvt", 600, None, 100, strain=spec("uniaxial", "xx", 0.05))
    assert strained.key == "T600-uniaxial_xx+0.05"
    assert MDCondition("npt", 300, 1, 100).key == "T300-P1"
    assert MDCondition("npt", 300, 1, 100, key="mine").key == "mine"
    deform = MDCondition("nvt", 300, None, 100, deform=spec("shear", "xy", 0.5))
    assert deform.key == "T300-deform_shear_xy+0.5"
    mq = melt_quench()
    assert mq.key == "mq1400K-T300-P1" and mq.nsteps == 200
    for cond in (ramp, strained, deform, mq):
        assert MDCondition(**cond.as_dict()) == cond
        assert MDCondition(**json.loads(json.dumps(cond.as_dict()))) == cond
    assert condition_key(ramp.as_dict()) == ramp.key


@pytest.mark.parametrize("kwargs, match", [
    (dict(ensemble="nvt", temperature_stop=-5.0), "temperature_stop"),
    (dict(ensemble="npt", pressure=1.0, deform=spec("uniaxial", "xx", 0.1)), "deform needs ensemble 'nvt'"),
    (dict(ensemble="nvt", strain=spec("shear", "zz", 0.1)), "MDCondition.strain.direction"),
    (dict(ensemble="nvt", melt_quench=RECIPE), "melt_quench ends with an NPT segment"),
    (dict(ensemble="npt", pressure=1.0, melt_quench=RECIPE), "nsteps = 100 must equal"),
    (dict(ensemble="npt", pressure=1.0, melt_quench={**RECIPE, "melt_temperature": 200.0}),
     "must be above"),
    (dict(ensemble="npt", pressure=1.0, melt_quench={"melt_temperature": 1400.0}), "missing"),
    (dict(ensemble="npt", pressure=1.0, nsteps=200, melt_quench=RECIPE, temperature_stop=900.0),
     "cannot be combined"),
])
def test_condition_protocol_validation(kwargs, match):
    args = dict(temperature=300.0, pressure=None, nsteps=100) | kwargs
    with pytest.raises(ValueError, match=match):
        MDCondition(**args)


def test_segments():
    assert MDCondition("nvt", 300, None, 50).segments() == [Segment("md", "nvt", 300, 300, None, 50)]
    assert MDCondition("npt", 10, 5, 50, temperature_stop=900).segments() == [
        Segment("md", "npt", 10, 900, 5, 50)]
    segs = melt_quench("npt-tri", 100.0).segments()
    assert [(s.name, s.ensemble, s.t_start, s.t_stop, s.pressure, s.nsteps) for s in segs] == [
        ("heat", "nvt", 300, 1400, None, 50), ("hold", "nvt", 1400, 1400, None, 50),
        ("cool", "nvt", 1400, 300, None, 50), ("relax", "nvt", 300, 300, None, 20),
        ("npt", "npt-tri", 300, 300, 100, 30)]
    # a realistic recipe: 1100 K at 5 K/ps is 220 ps of cooling; zero-length segments dropped
    recipe = dict(RECIPE, heat_ps=10, hold_ps=0, quench_rate_K_per_ps=5, relax_ps=10, npt_ps=0)
    segs = melt_quench_segments(recipe, 300, 1, "npt", dt_fs=2.0)
    assert [(s.name, s.nsteps) for s in segs] == [("heat", 5000), ("cool", 110000), ("relax", 5000)]


def test_ase_ramp_staircase():
    seg = Segment("md", "nvt", 300.0, 1500.0, None, 1000)
    blocks = ramp_blocks(seg, MDCondition("nvt", 300, None, 1000, tau_t=0.02))  # 20-step tau
    assert sum(n for n, _ in blocks) == 1000 and {n for n, _ in blocks} == {100}
    temps = [t for _, t in blocks]
    assert temps == pytest.approx(np.linspace(360, 1440, 10))  # block middles
    short = ramp_blocks(Segment("md", "nvt", 2000, 10, None, 200), MDCondition("nvt", 9, None, 9))
    assert [n for n, _ in short] == [50] * 4 and short[0][1] > short[-1][1]  # cooling
    assert ramp_blocks(Segment("md", "nvt", 300, 300, None, 70), MDCondition("nvt", 9, None, 9)) \
        == [(70, 300)]


# ----------------------------------------------------------------- LAMMPS inputs


@pytest.fixture
def fake_models(tmp_path) -> list[Path]:
    """Model files for the pure file-writing tests (never loaded)."""
    paths = []
    for i in range(2):
        path = tmp_path / "models" / f"graph.{i:03d}.pb"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(b"not a model")
        paths.append(path)
    return paths


def lammps_lines(workdir: Path) -> list[str]:
    """input.lammps with whitespace normalized and comments dropped."""
    text = (workdir / "input.lammps").read_text()
    return [" ".join(line.split()) for line in text.splitlines() if line.strip()
            and not line.startswith("#")]


def data_cell(workdir: Path) -> np.ndarray:
    return read(workdir / "conf.lmp", format="lammps-data", atom_style="atomic").cell.cellpar()


def test_input_ramp(tmp_path, fake_models):
    cond = MDCondition("npt-aniso", 10, 1000, 4000, temperature_stop=2000, tau_t=0.05, tau_p=1)
    write_lammps_inputs(tmp_path, cu32(), TYPE_MAP, fake_models, cond)
    lines = lammps_lines(tmp_path)
    assert [ln for ln in lines if ln.startswith("fix")] == [
        "fix 1 all npt temp 10 2000 0.05 aniso 1000 1000 1"]
    assert "velocity all create 10 1 mom yes rot no dist gaussian" in lines
    assert [ln for ln in lines if ln.startswith("run")] == ["run 4000"]


@pytest.mark.parametrize("deform, args, skew", [
    (spec("isotropic", None, 0.5), "x scale 1.5 y scale 1.5 z scale 1.5", False),
    (spec("uniaxial", "yy", -0.2), "y scale 0.8", False),
    (spec("shear", "xz", 0.5), f"xz final {0.5 * A:.10g}", True),  # tilt grows by 0.5 lz
])
def test_input_deform(tmp_path, fake_models, deform, args, skew):
    cond = MDCondition("nvt", 900, None, 2000, deform=deform, temperature_stop=300)
    write_lammps_inputs(tmp_path, cu32(), TYPE_MAP, fake_models, cond)
    lines = lammps_lines(tmp_path)
    assert [ln for ln in lines if ln.startswith("fix")] == [
        "fix 1 all nvt temp 900 300 0.1", f"fix 2 all deform 1 {args} remap x"]
    assert ("xy xz yz" in (tmp_path / "conf.lmp").read_text()) == skew  # tilts need a triclinic box
    assert lammps_deform_args(deform, (A, A, A, 0, 0, 0)) == args
    assert np.allclose(data_cell(tmp_path), [A, A, A, 90, 90, 90])  # deformation starts at 0


def final_box(args: str, box: np.ndarray) -> np.ndarray:
    """The LAMMPS box (rows a, b, c) at the end of ``fix deform 1 <args>``: ``scale`` multiplies
    a length, ``final`` sets a tilt (LAMMPS' documented meaning of the two styles)."""
    out = box.copy()
    words = args.split()
    where = {"x": (0, 0), "y": (1, 1), "z": (2, 2), "xy": (1, 0), "xz": (2, 0), "yz": (2, 1)}
    for name, style, value in zip(words[::3], words[1::3], words[2::3]):
        i, j = where[name]
        out[i, j] = box[i, j] * float(value) if style == "scale" else float(value)
    return out


@pytest.mark.parametrize("deform", [spec("isotropic", None, -0.1), spec("uniaxial", "xx", 0.3),
                                    spec("uniaxial", "yy", 0.2), spec("uniaxial", "zz", -0.2),
                                    spec("shear", "xy", 0.4), spec("shear", "xz", -0.2),
                                    spec("shear", "yz", 0.3)])
def test_deform_of_a_triclinic_box_is_affine(tmp_path, fake_models, deform):
    """From a triclinic start the fix's final box is the start deformed by F (tilts included)."""
    atoms = apply_strain(apply_strain(cu32(), spec("shear", "xy", 0.1)), spec("shear", "yz", -0.2))
    atoms = apply_strain(atoms, spec("shear", "xz", 0.15))
    cond = MDCondition("nvt", 300, None, 100, deform=deform)
    write_lammps_inputs(tmp_path, atoms, TYPE_MAP, fake_models, cond)
    fix = next(ln for ln in lammps_lines(tmp_path) if ln.startswith("fix 2"))
    args = fix.removeprefix("fix 2 all deform 1 ").removesuffix(" remap x")
    start = read(tmp_path / "conf.lmp", format="lammps-data", atom_style="atomic").cell[:]
    assert np.allclose(start, np.tril(start))  # LAMMPS' restricted triclinic form
    expected = apply_strain(read(tmp_path / "conf.lmp", format="lammps-data", atom_style="atomic"),
                            deform).cell[:]
    assert np.allclose(final_box(args, start), expected)


@pytest.mark.parametrize("strain, cellpar", [
    (spec("isotropic", None, 0.05), [1.05 * A] * 3 + [90, 90, 90]),
    (spec("uniaxial", "zz", -0.1), [A, A, 0.9 * A, 90, 90, 90]),
    (spec("shear", "yz", 0.2), [A, A, A * math.hypot(1, 0.2),
                                math.degrees(math.acos(0.2 / math.hypot(1, 0.2))), 90, 90]),
    (spec("shear", "xy", -0.3), [A, A * math.hypot(1, 0.3), A, 90, 90,
                                 math.degrees(math.acos(-0.3 / math.hypot(1, 0.3)))]),
])
def test_input_fixed_strain(tmp_path, fake_models, strain, cellpar):
    """The strained cell is what LAMMPS reads (restricted triclinic form for shears)."""
    cond = MDCondition("npt-tri", 300, 1, 100, strain=strain)
    write_lammps_inputs(tmp_path, cu32(), TYPE_MAP, fake_models, cond)
    assert np.allclose(data_cell(tmp_path), cellpar)
    assert "fix 1 all npt temp 300 300 0.1 tri 1 1 0.5" in lammps_lines(tmp_path)
    manifest = json.loads((tmp_path / "explore.json").read_text())
    assert manifest["condition"]["strain"] == strain


def test_input_melt_quench(tmp_path, fake_models):
    cond = melt_quench("npt-tri", 5.0, trj_freq=10, tau_t=0.05)
    write_lammps_inputs(tmp_path, cu32(), TYPE_MAP, fake_models, cond)
    lines = lammps_lines(tmp_path)
    body = lines[lines.index(next(ln for ln in lines if ln.startswith("velocity"))):]
    assert body == [
        "velocity all create 300 1 mom yes rot no dist gaussian", "timestep 0.001",
        "fix 1 all nvt temp 300 1400 0.05", "run 50", "unfix 1",
        "fix 1 all nvt temp 1400 1400 0.05", "run 50", "unfix 1",
        "fix 1 all nvt temp 1400 300 0.05", "run 50", "unfix 1",
        "fix 1 all nvt temp 300 300 0.05", "run 20", "unfix 1",
        "fix 1 all npt temp 300 300 0.05 tri 5 5 0.5", "run 30"]
    assert sum(int(ln.split()[1]) for ln in lines if ln.startswith("run")) == cond.nsteps
    # one dump and one deviation file cover every segment; the step count never resets
    assert sum(ln.startswith(("dump ", "pair_style")) for ln in lines) == 2
    assert not any("reset_timestep" in ln for ln in lines)
    assert "xy xz yz" in (tmp_path / "conf.lmp").read_text()


# ----------------------------------------------------------------- real runs


@pytest.fixture(scope="module")
def committee(tmp_path_factory) -> list[Path]:
    """One tiny frozen model (type map Cu, Al; EMT Cu data), given twice as the committee.

    These tests check trajectories, not deviations (zero here), so one training is enough.
    """
    import shutil

    root = tmp_path_factory.mktemp("protocol_models")
    data = make_emt_dataset(root / "data", n_frames=20, seed=0)
    inp = make_training_input(copy.deepcopy(TINY_TEMPLATE), [str(data)], TYPE_MAP, seed=1,
                              numb_steps=100)
    model = train_model(root / "model", inp, threads=1).frozen_model
    twin = shutil.copy(model, root / "twin.pb")
    return [Path(model), Path(twin)]


def thermo(workdir: Path) -> dict[str, np.ndarray]:
    """Thermo columns of all runs in log.lammps (pymatgen's reader); a later run's first row
    repeats the previous run's last step and is dropped."""
    from pymatgen.io.lammps.outputs import parse_lammps_log

    runs = parse_lammps_log(str(workdir / "log.lammps"))
    return {k: np.concatenate([r[k].to_numpy(float)[1 if i else 0:] for i, r in enumerate(runs)])
            for k in runs[0].columns}


@pytest.fixture(scope="module")
def lammps_runs(committee, tmp_path_factory) -> dict:
    """Three short LAMMPS runs from perfect 32-atom Cu (frames every 10 steps).

    ``ramp_deform``: NVT 300 -> 1200 K over 300 steps while stretching y by 20 %, from a cell
    sheared by -10 % in yz (so the yz tilt must stretch with it);
    ``npt_tri``: npt-tri at 1 bar from a cell sheared by 10 % in xy (the tilt may relax);
    ``melt_quench``: 300 -> 1400 -> 300 K then npt-tri, the recipe :data:`RECIPE`.
    """
    root = tmp_path_factory.mktemp("protocol_lammps")
    conds = {
        "ramp_deform": MDCondition("nvt", 300, None, 300, temperature_stop=1200, tau_t=0.02,
                                   deform=spec("uniaxial", "yy", 0.2), seed=3),
        "npt_tri": MDCondition("npt-tri", 300, 1.0, 200, tau_t=0.05, tau_p=0.1, seed=4,
                               strain=spec("shear", "xy", 0.1)),
        "melt_quench": melt_quench("npt-tri", 1.0, tau_t=0.02, seed=5),
    }
    runs = {}
    starts = {"ramp_deform": apply_strain(cu32(), spec("shear", "yz", -0.1))}
    for name, cond in conds.items():
        write_lammps_inputs(root / name, starts.get(name, cu32()), TYPE_MAP, committee, cond)
        runs[name] = (cond, run_lammps(root / name))
    return runs


def test_lammps_ramp_and_deform(lammps_runs):
    cond, res = lammps_runs["ramp_deform"]
    assert res.steps.tolist() == list(range(0, 301, 10)) and len(res.frames) == 31
    cells = np.array([f.cell[:] for f in res.frames])
    ly = cells[:, 1, 1]
    assert ly[0] == pytest.approx(A) and ly[-1] == pytest.approx(1.2 * A, rel=1e-6)
    assert np.allclose(ly, A * (1 + 0.2 * res.steps / 300), rtol=1e-6)  # linear in time
    assert np.allclose(cells[:, 0, 0], A) and np.allclose(cells[:, 2, 2], A)  # x, z untouched
    assert cells[0, 2, 1] == pytest.approx(-0.1 * A)
    assert np.allclose(cells[-1], apply_strain(res.frames[0], cond.deform).cell[:], atol=1e-5)
    temp = thermo(res.workdir)["Temp"]
    assert temp.shape == (31,)
    first, last = temp[1:11].mean(), temp[-10:].mean()  # the target ramps 300 -> 1200 K
    assert last > first + 300 and last > 700, (first, last)


def test_lammps_npt_tri_cell_tilts(lammps_runs):
    cond, res = lammps_runs["npt_tri"]
    assert len(res.frames) == 21
    tilt0 = res.frames[0].cell[1, 0]
    assert tilt0 == pytest.approx(0.1 * A)  # the fixed shear strain is the start
    tilts = np.array([f.cell[1, 0] for f in res.frames])
    assert np.ptp(tilts) > 1e-3, tilts  # tri coupling: the xy tilt is a dynamic variable
    volumes = [f.get_volume() for f in res.frames]
    assert np.ptp(volumes) > 1e-3


def test_lammps_melt_quench(lammps_runs):
    cond, res = lammps_runs["melt_quench"]
    # 200 steps over 5 segments (boundaries 50, 100, 150, 170): one frame per 10 steps, no
    # repeated rows at segment starts, frames and deviations aligned
    assert res.steps.tolist() == list(range(0, 201, 10))
    assert len(res.frames) == len(res.max_devi_f) == 21
    assert [f.info["step"] for f in res.frames] == res.steps.tolist()
    log = thermo(res.workdir)
    assert log["Step"].tolist() == list(range(0, 201, 10))
    temp = log["Temp"]
    heat, hot, cooled = temp[1:5].mean(), temp[6:10].mean(), temp[14:17].mean()
    assert hot > heat and hot > 700 and cooled < hot, temp  # heated, held, quenched
    volumes = log["Volume"]
    assert np.allclose(volumes[:18], volumes[0])  # NVT segments: fixed box
    assert np.ptp(volumes[17:]) > 1e-3  # closing NPT segment: the box moves


def test_ase_ramp_and_fixed_strain(committee, tmp_path):
    cond = MDCondition("nvt", 300, None, 100, temperature_stop=900, tau_t=0.02, seed=2,
                       strain=spec("isotropic", None, 0.02))
    res = run_ase_md(tmp_path, cu32(), TYPE_MAP, committee, cond)
    assert res.engine == "ase" and res.steps.tolist() == list(range(0, 101, 10))
    assert np.allclose([f.cell.lengths() for f in res.frames], 1.02 * A)
    assert np.allclose(res.max_devi_f, 0, atol=1e-6)  # twin models: the deviation is zero


def test_ase_melt_quench_and_deform_refused(committee, tmp_path):
    cond = melt_quench("npt", 1.0, tau_t=0.02, seed=6)
    res = run_ase_md(tmp_path / "mq", cu32(), TYPE_MAP, committee, cond)
    assert res.steps.tolist() == list(range(0, 201, 10)) and len(res.frames) == 21
    volumes = [f.get_volume() for f in res.frames]
    assert np.allclose(volumes[:18], volumes[0]) and np.ptp(volumes[17:]) > 1e-3
    with pytest.raises(ValueError, match="LAMMPS"):
        run_ase_md(tmp_path / "d", cu32(), TYPE_MAP, committee,
                   MDCondition("nvt", 300, None, 10, deform=spec("uniaxial", "xx", 0.1)))
