"""Campaign config schema, one-line errors, and structure preparation (no database)."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from firegen.workflows.steps.select import STATUS_NAMES, classify
from firegen.campaign.config import (CampaignConfig, ConfigError, StageConfig, TrustLevels,
                                         config_hash, load_config, validate_dict)
from firegen.campaign.structures import (make_supercell, perturbed_copies, read_structure,
                                             scaled)

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"
SHIPPED = ["cu_emt.yaml", "na3ocl_xtb.yaml"]

MINIMAL = {
    "name": "mini",
    "type_map": ["Cu"],
    "systems": [{"name": "fcc", "structure": "structures/Cu.vasp", "supercell": 2}],
    "initial_data": {"perturb": {"count": 2}},
    "stages": [{"name": "s1", "ensemble": "nvt", "temperatures": [300], "nsteps": 100}],
    "labeler": {"kind": "emt"},
}


@pytest.fixture
def workdir(tmp_path):
    shutil.copytree(CONFIGS / "structures", tmp_path / "structures")
    return tmp_path


def write(folder: Path, data: dict, name: str = "campaign.yaml") -> Path:
    path = folder / name
    path.write_text(json.dumps(data) if name.endswith(".json") else yaml.safe_dump(data))
    return path


# ---- shipped configs and defaults --------------------------------------------------------
@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_configs_load(name):
    cfg = load_config(CONFIGS / name)
    steps, iterations = {"cu_emt.yaml": (800, 5), "na3ocl_xtb.yaml": (1600, 8)}[name]
    assert cfg.committee.size == 4 and cfg.committee.numb_steps == steps and cfg.committee.warm_start.enabled
    assert [s.ensemble for s in cfg.stages] == ["nvt"]
    assert [c["temperature"] for c in cfg.stages[0].conditions()] == [300.0, 600.0]
    assert cfg.stages[0].max_iterations == iterations
    assert len(cfg.masses()) == len(cfg.type_map)


def test_shipped_systems_sizes():
    cu = load_config(CONFIGS / "cu_emt.yaml")
    assert cu.labeler.kind == "emt" and cu.initial_data.perturb.count == 6
    assert len(cu.system_atoms("fcc")) == 32
    nacl = load_config(CONFIGS / "na3ocl_xtb.yaml")
    assert nacl.type_map == ["Na", "O", "Cl"]
    assert nacl.labeler.kind == "tblite" and nacl.labeler.settings["method"] == "GFN1-xTB"
    atoms = nacl.system_atoms("crystal")
    assert len(atoms) == 40
    assert sorted(set(atoms.get_chemical_symbols())) == ["Cl", "Na", "O"]


def test_cu_emt_npt_learns_volumes():
    """The density variant of the EMT demo: the same system and data, the virial in the loss, NPT exploration."""
    base, npt = load_config(CONFIGS / "cu_emt.yaml"), load_config(CONFIGS / "cu_emt_npt.yaml")
    assert npt.labeler.kind == "emt" and npt.initial_data == base.initial_data
    assert len(npt.system_atoms("fcc")) == 32
    loss = npt.committee.training["loss"]
    assert (loss["start_pref_v"], loss["limit_pref_v"]) == (0.02, 1)
    conds = npt.stages[0].conditions()
    assert {c["ensemble"] for c in conds} == {"npt"} and {c["temperature"] for c in conds} == {300.0, 600.0}


def test_cu_emt_melt_explores_the_liquid():
    """The liquid variant: cu_emt_npt's system, committee and loss, NPT ramps through the melt at 1 bar that
    cover the validation temperatures (1600 and 2000 K), initial data scaled up to the liquid's volume and a
    random packing at the liquid's volume labeled beside the crystal (never explored)."""
    npt, melt = load_config(CONFIGS / "cu_emt_npt.yaml"), load_config(CONFIGS / "cu_emt_melt.yaml")
    assert melt.labeler.kind == "emt" and len(melt.system_atoms("fcc")) == 32
    assert melt.committee == npt.committee
    assert (melt.selection.trust.f_lo, melt.selection.trust.f_hi) == (0.15, 3.0)
    assert melt.initial_data.perturb.scales == [1.0, 1.03, 1.06]
    packed = melt.system_atoms("packed")
    assert len(packed) == 32 and packed.get_volume() / 32 == pytest.approx(13.5)
    assert [s.role for s in melt.systems] == ["explore", "reference"] and melt.stages[0].systems == ["fcc"]
    conds = melt.stages[0].conditions()
    assert {c["ensemble"] for c in conds} == {"npt"} and {c["pressure"] for c in conds} == {1.0}
    ramps = [(c["temperature"], c["temperature_stop"]) for c in conds]
    assert ramps == [(2400.0, 1400.0), (1400.0, 2400.0)]
    assert all(min(r) < 1600 and max(r) > 2000 for r in ramps)
    assert melt.stages[0].max_iterations == 10 and melt.stages[0].converged_when.accurate_ratio == 0.95


def test_defaults(workdir):
    cfg = load_config(write(workdir, MINIMAL))
    trust = cfg.selection.trust
    assert (trust.f_lo, trust.f_hi, trust.v_lo, trust.v_hi) == (0.15, 0.35, None, None)
    assert cfg.selection.max_per_iteration == 300 and cfg.selection.min_per_iteration == 0
    assert cfg.committee.size == 4 and cfg.committee.backend == "tensorflow"
    assert cfg.committee.numb_steps == 2000 and cfg.committee.warm_start.enabled is True
    assert cfg.exploration.engine == "lammps"
    stage = cfg.stages[0]
    assert (stage.dt, stage.trj_freq, stage.tau_t, stage.tau_p) == (1.0, 10, 0.1, 0.5)
    assert stage.max_iterations == 5 and stage.systems == ["fcc"]
    assert stage.converged_when.accurate_ratio == 0.99
    assert stage.converged_when.for_iterations == 1
    assert cfg.systems[0].supercell == [2, 2, 2]
    perturb = cfg.initial_data.perturb
    assert (perturb.atom_displacement, perturb.cell_strain, perturb.scales) == (0.01, 0.03, [1.0])
    assert cfg.masses() == pytest.approx([63.546])


def test_json_config_and_mass_overrides(workdir):
    data = dict(MINIMAL, type_map=["Cu", "H"], masses={"H": 2.014})
    cfg = load_config(write(workdir, data, "campaign.json"))
    assert cfg.masses() == pytest.approx([63.546, 2.014])
    assert cfg.frozen()["masses"] == pytest.approx([63.546, 2.014])


def test_conditions_ladder():
    npt = StageConfig(name="p", ensemble="npt", temperatures=[300, 600],
                      pressures=[1, 100, 1000], nsteps=500, dt=0.5, tau_p=1.0)
    conds = npt.conditions()
    assert len(conds) == 6
    assert [(c["temperature"], c["pressure"]) for c in conds] == [
        (300, 1), (300, 100), (300, 1000), (600, 1), (600, 100), (600, 1000)]
    assert set(conds[0]) == {"ensemble", "temperature", "pressure", "nsteps", "dt", "trj_freq",
                             "tau_t", "tau_p"}
    assert conds[0]["dt"] == 0.5 and conds[0]["tau_p"] == 1.0 and conds[0]["ensemble"] == "npt"
    nvt = StageConfig(name="t", ensemble="nvt", temperatures=[300, 900], nsteps=100)
    assert [c["pressure"] for c in nvt.conditions()] == [None, None]
    assert [c["temperature"] for c in nvt.conditions()] == [300, 900]


def test_convergence_and_trust_helpers(workdir):
    data = copy.deepcopy(MINIMAL)
    data["stages"][0]["converged_when"] = {"candidate_ratio": 0.01, "for_iterations": 2}
    conv = load_config(write(workdir, data)).stages[0].converged_when
    assert conv.accurate_ratio is None and conv.for_iterations == 2
    assert conv.met_by(accurate_ratio=0.5, candidate_ratio=0.005)
    assert not conv.met_by(accurate_ratio=1.0, candidate_ratio=0.02)
    trust = TrustLevels()  # its defaults, through the one classifier (workflows/steps/select.py)
    assert [STATUS_NAMES[c] for c in classify([0.1, 0.15, 0.34, 0.35], trust.f_lo, trust.f_hi)] == [
        "accurate", "candidate", "candidate", "failed"]


def test_numb_steps_from_training_template(workdir):
    data = dict(MINIMAL, committee={"training": {"training": {"numb_steps": 123}}})
    assert load_config(write(workdir, data)).committee.numb_steps == 123


# ---- one-line errors ---------------------------------------------------------------------
def _set(path: str, value):
    def mutate(d):
        *parents, last = path.split(".")
        for key in parents:
            d = d[int(key)] if key.isdigit() else d[key]
        d[int(last) if last.isdigit() else last] = value
    return mutate


def _rename_top(old, new):
    def mutate(d):
        d[new] = d.pop(old)
    return mutate


BAD = [  # (id, mutation, field named in the line, words the line must contain)
    ("unknown-element", _set("type_map", ["Cu", "Xx"]), "type_map[1]", ["unknown element", "'Xx'"]),
    ("element-case", _set("type_map", ["CU"]), "type_map[0]", ["did you mean 'Cu'"]),
    ("f_lo>=f_hi", _set("selection", {"trust": {"f_lo": 0.4, "f_hi": 0.3}}),
     "selection.trust.f_lo", ["less than f_hi", "0.4"]),
    ("f_lo==f_hi", _set("selection", {"trust": {"f_lo": 0.3, "f_hi": 0.3}}),
     "selection.trust.f_lo", ["less than f_hi"]),
    ("missing-structure", _set("systems.0.structure", "structures/nope.cif"),
     "systems[0].structure", ["file not found", "nope.cif"]),
    ("negative-nsteps", _set("stages.0.nsteps", -5), "stages[0].nsteps",
     ["must be greater than 0", "got -5", "positive number of MD steps"]),
    ("undefined-system", _set("stages.0.systems", ["fcc", "vacancy"]), "stages[0].systems[1]",
     ["'vacancy'", "fcc"]),
    ("npt-no-pressures", _set("stages.0.ensemble", "npt"), "stages[0].pressures",
     ["required for ensemble 'npt'"]),
    ("top-level-typo", _rename_top("labeler", "labeller"), "labeller",
     ["unknown key", "rename it to `labeler`"]),
    ("nested-typo", _set("stages.0.temperture", 300), "stages[0].temperture",
     ["unknown key", "`temperatures`"]),
    ("bad-ensemble", _set("stages.0.ensemble", "nve"), "stages[0].ensemble", ["'nvt'", "'nve'"]),
    ("small-committee", _set("committee", {"size": 1}), "committee.size", ["at least 2"]),
    ("element-not-in-map", _set("type_map", ["Ag"]), "systems[0].structure",
     ["Cu", "type_map"]),
    ("no-initial-data", _set("initial_data", {}), "initial_data", ["no initial data"]),
    ("missing-npy", _set("initial_data", {"deepmd_npy": ["data/none"]}),
     "initial_data.deepmd_npy[0]", ["folder not found"]),
    ("bad-supercell", _set("systems.0.supercell", [2, 0, 2]), "systems[0].supercell[1]",
     ["at least 1"]),
    ("duplicate-stage", lambda d: d["stages"].append(dict(d["stages"][0])), "stages[1].name",
     ["repeats"]),
]


@pytest.mark.parametrize("mutate, field, words", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_wrong_config_gives_one_line(workdir, mutate, field, words):
    data = copy.deepcopy(MINIMAL)
    mutate(data)
    path = write(workdir, data)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert len(message.splitlines()) == 1, message
    assert message.startswith(f"{path}: {field}: "), message
    assert ". Fix: " in message and message.endswith("."), message
    for word in words:
        assert word in message, (word, message)
    assert "Traceback" not in message and "pydantic" not in message


def test_several_problems_one_line_each(workdir):
    data = copy.deepcopy(MINIMAL)
    data["type_map"] = ["Xx"]
    data["stages"][0]["nsteps"] = -5
    data["comittee"] = {}
    with pytest.raises(ConfigError) as info:
        load_config(write(workdir, data))
    lines = str(info.value).splitlines()
    assert len(lines) == 3 and info.value.lines == lines
    assert {line.split(": ")[1] for line in lines} == {"type_map[0]", "stages[0].nsteps",
                                                      "comittee"}


@pytest.mark.parametrize("text, words", [
    ("name: a\nname: b\n", ["line 2", "duplicate key 'name'"]),
    ("name: [a\n", ["invalid YAML"]),
    ("- a\n- b\n", ["must be a mapping"]),
])
def test_unreadable_files_one_line(tmp_path, text, words):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert len(str(info.value).splitlines()) == 1 and ". Fix: " in str(info.value)
    for word in words:
        assert word in str(info.value)
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "absent.yaml")


def test_deepmd_npy_folder_checked(workdir):
    dpdata = pytest.importorskip("dpdata")
    from ase.calculators.emt import EMT

    atoms = read_structure(workdir / "structures/Cu.vasp")
    atoms.calc = EMT()
    atoms.get_potential_energy()
    dpdata.LabeledSystem(atoms, fmt="ase/structure").to("deepmd/npy", str(workdir / "data/cu"))
    data = dict(MINIMAL, initial_data={"deepmd_npy": ["data"]})
    assert load_config(write(workdir, data)).initial_data.deepmd_npy == ["data"]
    data = dict(MINIMAL, type_map=["Ag"], systems=[], initial_data={"deepmd_npy": ["data/cu"]})
    data["systems"] = [{"name": "x", "structure": "structures/Na3OCl.cif"}]
    data["type_map"] = ["Na", "O", "Cl"]
    with pytest.raises(ConfigError) as info:
        load_config(write(workdir, data))
    assert "initial_data.deepmd_npy[0]" in str(info.value) and "Cu" in str(info.value)


# ---- frozen form -------------------------------------------------------------------------
def test_frozen_is_json_stable_and_round_trips(workdir):
    cfg = load_config(CONFIGS / "na3ocl_xtb.yaml")
    frozen = cfg.frozen()
    text = json.dumps(frozen, sort_keys=True)
    assert json.loads(text) == frozen
    again = load_config(CONFIGS / "na3ocl_xtb.yaml")
    assert again.frozen() == frozen and config_hash(again) == cfg.config_hash()
    # the same settings written in another key order (and with defaults spelled out) hash alike
    reordered = dict(reversed(list(yaml.safe_load((CONFIGS / "na3ocl_xtb.yaml").read_text())
                                   .items())))
    reordered["selection"]["min_per_iteration"] = 0
    reordered["committee"].setdefault("warm_start", {})["scratch_every"] = None
    shutil.copy(CONFIGS / "structures/Na3OCl.cif", workdir / "structures/Na3OCl.cif")
    assert load_config(write(workdir, reordered)).config_hash() == cfg.config_hash()
    assert validate_dict(frozen).frozen() == frozen
    assert CampaignConfig.model_validate(frozen).model_dump() == cfg.model_dump()
    changed = dict(frozen, selection=dict(frozen["selection"], max_per_iteration=10))
    assert config_hash(validate_dict(changed)) != cfg.config_hash()


# ---- structures --------------------------------------------------------------------------
def test_read_structures_and_supercells():
    nacl = read_structure(CONFIGS / "structures/Na3OCl.cif")
    assert len(nacl) == 5 and nacl.get_chemical_formula() == "ClNa3O"
    assert nacl.cell.cellpar() == pytest.approx([4.5, 4.5, 4.5, 90, 90, 90])
    assert all(nacl.pbc) and nacl.calc is None
    big = make_supercell(nacl, [2, 2, 2])
    assert len(big) == 40 and big.get_volume() == pytest.approx(8 * nacl.get_volume())
    assert len(make_supercell(nacl, 2)) == 40
    assert len(make_supercell(nacl, [[1, 1, 0], [-1, 1, 0], [0, 0, 1]])) == 10
    cu = read_structure(CONFIGS / "structures/Cu.vasp")
    assert len(cu) == 4 and len(make_supercell(cu, (2, 2, 2))) == 32
    with pytest.raises(FileNotFoundError):
        read_structure(CONFIGS / "structures/absent.cif")


def _displacements(reference, frame):
    """Per-atom displacement (Å) of `frame` from `reference`'s fractional sites in frame's cell."""
    cell = np.array(frame.get_cell())
    delta = frame.get_scaled_positions(wrap=False) - reference.get_scaled_positions()
    delta -= np.round(delta)
    return np.linalg.norm(delta @ cell, axis=1)


def test_perturbed_copies_count_and_bounds():
    base = make_supercell(read_structure(CONFIGS / "structures/Na3OCl.cif"), 2)
    state = np.random.get_state()
    frames = perturbed_copies(base, count=5, atom_displacement=0.05, cell_strain=0.03,
                              scales=[0.95, 1.0, 1.05], seed=7)
    assert np.array_equal(np.random.get_state()[1], state[1])  # global RNG untouched
    assert len(frames) == 15
    for k, frame in enumerate(frames):
        s = [0.95, 1.0, 1.05][k // 5]
        assert frame.get_chemical_symbols() == base.get_chemical_symbols()
        ratio = frame.get_volume() / (s**3 * base.get_volume())
        assert 0.97**3 * 0.99 < ratio < 1.03**3 * 1.01
        lengths = frame.cell.lengths() / (s * base.cell.lengths())
        assert np.all(np.abs(lengths - 1) < 2 * 0.03)
        disp = _displacements(scaled(base, s), frame)
        assert disp.max() <= 0.05 + 1e-9 and disp.mean() > 0
    assert not np.allclose(frames[0].positions, frames[1].positions)
    same = perturbed_copies(base, count=5, atom_displacement=0.05, scales=[0.95, 1.0, 1.05],
                            seed=7)
    assert all(np.allclose(a.positions, b.positions) for a, b in zip(frames, same))
    other = perturbed_copies(base, count=1, atom_displacement=0.05, seed=8)
    assert not np.allclose(other[0].positions, frames[5].positions)
    with_base = perturbed_copies(base, count=2, scales=[1.0], include_unperturbed=True)
    assert len(with_base) == 3 and np.allclose(with_base[0].positions, base.positions)


def test_yaml_merge_keys_share_stage_settings_and_duplicates_are_still_refused(workdir):
    base = yaml.safe_dump(dict(MINIMAL, stages=[]), sort_keys=False).replace("stages: []\n", "")
    stage = MINIMAL["stages"][0]
    text = base + "stages:\n  - &first\n" + "".join(
        f"    {k}: {json.dumps(v)}\n" for k, v in stage.items() if k != "name") + "    name: one\n"
    text += "  - {<<: *first, name: two, temperatures: [900]}\n"  # a merged key given again overrides it
    path = workdir / "merge.yaml"
    path.write_text(text)
    cfg = load_config(path)
    assert [s.name for s in cfg.stages] == ["one", "two"]
    assert cfg.stages[1].temperatures == [900] and cfg.stages[1].nsteps == cfg.stages[0].nsteps
    path.write_text(text + "name: again\n")  # a key written twice in one mapping
    with pytest.raises(ConfigError, match="duplicate key 'name'"):
        load_config(path)
