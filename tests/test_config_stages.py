"""Stage protocols in the campaign config: ensembles, ladders, fixed strain, deformation, ramps,
melt-quench; their conditions, keys and one-line errors; the Na3OCl amorphous and Na3PS4 glass
configs (validate, build the right Fireworks, write the right LAMMPS inputs).

Units: K, bar, fs for dt, ps for durations and damping, K/ps for rates; strains are fractions.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from firegen.campaign.config import ConfigError, StageConfig, load_config
from firegen.workflows.steps.explore import MDCondition, write_lammps_inputs

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def stage(**kw) -> StageConfig:
    return StageConfig(name="s", **kw)


# ----------------------------------------------------------------- conditions


def test_plain_ladder_unchanged():
    """An existing NPT ladder gives exactly the dicts it gave before the protocols."""
    conds = stage(ensemble="npt", temperatures=[300, 600], pressures=[1, 100], nsteps=500).conditions()
    assert conds[1] == dict(ensemble="npt", temperature=300, pressure=100, nsteps=500, dt=1.0,
                            trj_freq=10, tau_t=0.1, tau_p=0.5)
    assert stage(ensemble="npt", temperatures=[300], pressures=[1], nsteps=50).condition_keys() \
        == ["T300-P1"]


@pytest.mark.parametrize("alias, ensemble", [
    ("npt-iso", "npt"), ("npt-i", "npt"), ("npt-a", "npt-aniso"), ("npt-t", "npt-tri"),
    ("npt-tri", "npt-tri")])
def test_ensemble_names(alias, ensemble):
    st = stage(ensemble=alias, temperatures=[300], pressures=[1], nsteps=100)
    assert st.ensemble == ensemble and st.conditions()[0]["ensemble"] == ensemble


def test_fixed_strain_conditions():
    st = stage(ensemble="nvt", temperatures=[300, 600], nsteps=100, strain={
        "isotropic": [0.95, 1.0, 1.05],
        "uniaxial": {"directions": ["xx"], "max": 0.1, "count": 2},
        "shear": {"values": [0.05]}})
    conds = st.conditions()
    assert len(conds) == 2 * (3 + 4 + 3)
    first = conds[:10]
    assert [c.get("strain") for c in first[:3]] == [
        {"mode": "isotropic", "direction": None, "value": pytest.approx(-0.05)}, None,
        {"mode": "isotropic", "direction": None, "value": pytest.approx(0.05)}]
    assert [c["strain"]["value"] for c in first[3:7]] == pytest.approx([-0.1, -0.05, 0.05, 0.1])
    assert [c["strain"]["direction"] for c in first[7:]] == ["yz", "xz", "xy"]
    keys = st.condition_keys()
    assert keys[:4] == ["T300-iso0.95", "T300", "T300-iso1.05", "T300-uniaxial_xx-0.1"]
    assert keys[-1] == "T600-shear_xy+0.05" and len(set(keys)) == len(keys)
    assert "strain" not in conds[1]  # the unstrained start stays a plain condition


def test_deform_conditions():
    st = stage(ensemble="nvt", temperatures=[10, 2000], nsteps=20000, deform=[
        {"mode": "isotropic", "final_strain": [0.5, -0.2]},
        {"mode": "uniaxial", "final_strain": 0.5},
        {"mode": "shear", "direction": "xy", "final_strain": 0.3}])
    conds = st.conditions()
    assert len(conds) == 2 * (2 + 3 + 1)
    assert [c["deform"] for c in conds[:6]] == [
        {"mode": "isotropic", "direction": None, "value": 0.5},
        {"mode": "isotropic", "direction": None, "value": -0.2},
        *[{"mode": "uniaxial", "direction": d, "value": 0.5} for d in ("xx", "yy", "zz")],
        {"mode": "shear", "direction": "xy", "value": 0.3}]
    assert st.condition_keys()[5] == "T10-deform_shear_xy+0.3"
    assert st.lammps_only() == ["deform"]
    single = stage(ensemble="nvt", temperatures=[300], nsteps=100,
                   deform={"mode": "uniaxial", "direction": "zz", "final_strain": 0.1})
    assert [c["deform"]["direction"] for c in single.conditions()] == ["zz"]


def test_ramp_conditions():
    st = stage(ensemble="npt", pressures=[1, 1000], nsteps=2000,
               ramp=[{"start": 10, "stop": 2000}, {"start": 2000, "stop": 10}])
    conds = st.conditions()
    assert [(c["temperature"], c["temperature_stop"], c["pressure"]) for c in conds] == [
        (10, 2000, 1), (10, 2000, 1000), (2000, 10, 1), (2000, 10, 1000)]
    assert st.condition_keys() == ["ramp10-2000K-P1", "ramp10-2000K-P1000",
                                   "ramp2000-10K-P1", "ramp2000-10K-P1000"]
    assert stage(ensemble="nvt", nsteps=100, ramp={"start": 300, "stop": 900}).condition_keys() \
        == ["ramp300-900K"]


def test_melt_quench_conditions():
    st = stage(melt_quench={"melt_temperature": [1200, 1400], "heat_ps": 10, "hold_ps": 20,
                            "quench_rate_K_per_ps": 5, "relax_ps": 10, "npt_ps": 50,
                            "final_temperature": 300, "final_pressure": 1}, dt=2.0)
    conds = st.conditions()
    # steps at dt = 2 fs: heat 5000 + hold 10000 + cool (T_melt - 300)/5 ps + relax 5000 + npt 25000
    assert [c["nsteps"] for c in conds] == [45000 + 90000, 45000 + 110000]
    assert all(c["ensemble"] == "npt" and c["temperature"] == 300 and c["pressure"] == 1
               for c in conds)
    assert conds[1]["melt_quench"] == {"melt_temperature": 1400, "heat_ps": 10, "hold_ps": 20,
                                       "quench_rate_K_per_ps": 5, "relax_ps": 10, "npt_ps": 50}
    assert st.condition_keys() == ["mq1200K-T300-P1", "mq1400K-T300-P1"]
    tri = stage(ensemble="npt-t", melt_quench={"melt_temperature": 1400})
    assert tri.conditions()[0]["ensemble"] == "npt-tri"


def test_repeated_conditions_get_distinct_keys():
    st = stage(ensemble="nvt", temperatures=[300, 300, 600], nsteps=100)
    assert st.condition_keys() == ["T300", "T300~2", "T600"]


def test_every_condition_is_a_valid_md_condition():
    stages = [
        stage(ensemble="nvt", temperatures=[300], nsteps=100, strain={"shear": {"max": 0.5}},
              deform={"mode": "shear", "final_strain": 0.5}),
        stage(ensemble="npt-tri", ramp={"start": 2000, "stop": 10}, pressures=[0, 50000],
              nsteps=100, strain={"isotropic": [0.9, 1.1]}),
        stage(melt_quench={"melt_temperature": 1300}, trj_freq=100),
    ]
    for st in stages:
        for cond, key in zip(st.conditions(), st.condition_keys()):
            assert MDCondition(**cond, seed=7).key == key


# ----------------------------------------------------------------- one-line errors


MINIMAL = {
    "name": "t", "type_map": ["Cu"],
    "systems": [{"name": "fcc", "structure": "structures/Cu.vasp"}],
    "initial_data": {"perturb": {"count": 2}},
    "stages": [{"name": "s1", "ensemble": "nvt", "temperatures": [300], "nsteps": 100}],
    "labeler": {"kind": "emt"},
}

BAD = [  # (id, stage fields set, field named in the line, words the line must contain)
    ("ramp-and-temperatures", {"ramp": {"start": 10, "stop": 900}}, "stages[0].ramp",
     ["replaces the temperature ladder"]),
    ("no-temperatures", {"temperatures": None}, "stages[0].temperatures", ["ramp"]),
    ("flat-ramp", {"temperatures": None, "ramp": {"start": 300, "stop": 300}},
     "stages[0].ramp[0].stop", ["no ramp"]),
    ("deform-npt", {"ensemble": "npt", "pressures": [1],
                    "deform": {"mode": "uniaxial", "final_strain": 0.5}}, "stages[0].deform",
     ["needs ensemble 'nvt'"]),
    ("deform-direction", {"deform": {"mode": "uniaxial", "direction": "xy", "final_strain": 0.5}},
     "stages[0].deform[0].direction", ["does not fit mode 'uniaxial'", "xx, yy, zz"]),
    ("deform-bad-direction", {"deform": {"mode": "shear", "direction": "xq", "final_strain": 0.5}},
     "stages[0].deform[0].direction[0]", ["must be one of"]),
    ("deform-zero", {"deform": {"mode": "isotropic", "final_strain": 0}},
     "stages[0].deform[0].final_strain", ["non-zero"]),
    ("shear-normal", {"strain": {"shear": {"directions": ["xx"], "values": [0.1]}}},
     "stages[0].strain.shear.directions[0]", ["must be one of"]),
    ("strain-over-max", {"strain": {"uniaxial": {"values": [0.6], "max": 0.5}}},
     "stages[0].strain.uniaxial.values", ["at most max = 0.5"]),
    ("empty-strain", {"strain": {}}, "stages[0].strain", ["gives no strain"]),
    ("mq-nsteps", {"temperatures": None, "ensemble": None, "melt_quench": {"melt_temperature": 1400}},
     "stages[0].nsteps", ["not used with melt_quench"]),
    ("mq-nvt", {"temperatures": None, "nsteps": None, "melt_quench": {"melt_temperature": 1400}},
     "stages[0].ensemble", ["NPT ensemble"]),
    ("mq-cold", {"temperatures": None, "nsteps": None, "ensemble": None,
                 "melt_quench": {"melt_temperature": 250}}, "stages[0].melt_quench.melt_temperature",
     ["above final_temperature = 300 K"]),
    ("mq-typo", {"temperatures": None, "nsteps": None, "ensemble": None,
                 "melt_quench": {"melt_temperature": 1400, "quench_rate": 5}},
     "stages[0].melt_quench.quench_rate", ["unknown key", "quench_rate_K_per_ps"]),
    ("no-ensemble", {"ensemble": None}, "stages[0].ensemble", ["is required"]),
    ("no-nsteps", {"nsteps": None}, "stages[0].nsteps", ["is required"]),
]


@pytest.mark.parametrize("fields, field, words", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_protocol_gives_one_line(tmp_path, fields, field, words):
    data = copy.deepcopy(MINIMAL)
    st = data["stages"][0]
    for key, value in fields.items():
        if value is None:
            st.pop(key, None)
        else:
            st[key] = value
    (tmp_path / "structures").mkdir()
    (tmp_path / "structures" / "Cu.vasp").write_text((CONFIGS / "structures" / "Cu.vasp").read_text())
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert len(message.splitlines()) == 1, message
    assert message.startswith(f"{path}: {field}: "), message
    assert ". Fix: " in message and message.endswith("."), message
    for word in words:
        assert word in message, (word, message)


# ----------------------------------------------------------------- the shipped configs


def test_na3ps4_structure():
    from pymatgen.core import Structure
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    s = Structure.from_file(str(CONFIGS / "structures" / "Na3PS4.cif"))
    assert s.composition.reduced_formula == "Na3PS4" and s.composition["Na"] == 6
    assert SpacegroupAnalyzer(s).get_space_group_symbol() == "I-43m"
    assert s.lattice.abc == pytest.approx((6.99, 6.99, 6.99))
    p_s = [n.nn_distance for n in s.get_neighbors(s[[e.symbol for e in s.species].index("P")], 2.5)]
    assert len(p_s) == 4 and p_s == pytest.approx([2.06] * 4, abs=0.01)  # PS4 tetrahedra


def _explore_conditions(cfg, stage_index):
    """(condition index, MDCondition) of each explore Firework of iteration 0 of a stage."""
    from firegen.workflows.builders import iteration_fireworks

    fws, _ = iteration_fireworks(cfg, 0, stage_index)
    explores = [fw.spec["firegen"] for fw in fws if fw.spec["firegen"]["kind"] == "explore"]
    conds = cfg.stages[stage_index].conditions()
    assert sorted(e["condition"] for e in explores) == list(range(len(conds)))
    return [(e["condition"], MDCondition(**conds[e["condition"]], seed=1)) for e in explores]


@pytest.fixture
def fake_models(tmp_path) -> list[Path]:
    paths = [tmp_path / f"graph.{i:03d}.pb" for i in range(4)]
    for p in paths:
        p.write_bytes(b"not a model")
    return paths


def test_na3ocl_amorphous_config(tmp_path, fake_models):
    cfg = load_config(CONFIGS / "na3ocl_amorphous.yaml")
    assert cfg.labeler.kind == "tblite" and cfg.type_map == ["Na", "O", "Cl"]
    assert len(cfg.system_atoms("crystal")) == 40
    (mq,) = cfg.stages
    conds = _explore_conditions(cfg, 0)
    assert [c.melt_quench["melt_temperature"] for _, c in conds] == [1200, 1400]
    last = conds[1][1]
    assert (last.ensemble, last.temperature, last.pressure) == ("npt", 300, 1)
    assert [(s.name, s.t_start, s.t_stop, s.nsteps) for s in last.segments()] == [
        ("heat", 300, 1400, 10000), ("hold", 1400, 1400, 20000), ("cool", 1400, 300, 220000),
        ("relax", 300, 300, 10000), ("npt", 300, 300, 50000)]
    write_lammps_inputs(tmp_path / "md", cfg.system_atoms("crystal"), cfg.type_map, fake_models,
                        last, masses=cfg.masses())
    text = (tmp_path / "md" / "input.lammps").read_text()
    assert text.count("\nrun ") == 5 and text.count("unfix") == 4
    assert "fix             1 all npt temp 300 300 0.1 iso 1 1 1" in text


def test_na3ps4_glass_config(tmp_path, fake_models):
    cfg = load_config(CONFIGS / "na3ps4o_glass.yaml")
    assert cfg.type_map == ["Na", "P", "S", "O"]
    atoms = cfg.system_atoms("na3ps4")
    assert atoms.get_chemical_formula() == "Na48P16S64"
    assert cfg.initial_data.perturb.scales == [0.95, 1.0, 1.05]
    assert cfg.initial_data.perturb.atom_displacement == 0.01
    assert cfg.initial_data.perturb.cell_strain == 0.03
    assert all(s.converged_when.candidate_ratio == 0.01 for s in cfg.stages)
    deform, ramps, npt = cfg.stages

    conds = [c for _, c in _explore_conditions(cfg, 0)]
    assert {c.temperature for c in conds} == {10, 700, 1400, 2000}
    assert all(c.ensemble == "nvt" and c.nsteps * c.dt == 20000 for c in conds)  # 20 ps
    kinds = {(c.deform["mode"], c.deform["direction"]) for c in conds}
    assert kinds == {("isotropic", None), ("uniaxial", "xx"), ("uniaxial", "yy"),
                     ("uniaxial", "zz"), ("shear", "yz"), ("shear", "xz"), ("shear", "xy")}
    assert max(abs(c.deform["value"]) for c in conds) == 0.5
    shear = next(c for c in conds if c.deform["direction"] == "xy")
    write_lammps_inputs(tmp_path / "d", atoms, cfg.type_map, fake_models, shear)
    text = (tmp_path / "d" / "input.lammps").read_text()
    assert "fix             2 all deform 1 xy final 6.99 remap x" in text  # 0.5 x ly = 13.98 Å
    assert "xy xz yz" in (tmp_path / "d" / "conf.lmp").read_text()

    conds = [c for _, c in _explore_conditions(cfg, 1)]
    assert [(c.temperature, c.temperature_stop) for c in conds] == [(10, 2000), (2000, 10)]
    conds = [c for _, c in _explore_conditions(cfg, 2)]
    assert len(conds) == 20 and max(c.pressure for c in conds) == 50000
    assert {c.temperature for c in conds} == {10, 100, 300, 500}
    assert ramps.lammps_only() == [] and deform.lammps_only() == ["deform"]
    assert npt.ensemble == "npt"


def test_stage_summary_for_tables():
    mq = stage(melt_quench={"melt_temperature": [1200, 1400]}, ensemble="npt-aniso")
    assert mq.summary() == {"ensemble": "npt-aniso", "temperatures": [300, 1200, 1400],
                            "pressures": [1], "nsteps": 280000, "protocols": ["melt_quench"]}
    ramp = stage(ensemble="nvt", nsteps=100, ramp={"start": 10, "stop": 2000},
                 deform={"mode": "isotropic", "final_strain": 0.5})
    assert ramp.summary() == {"ensemble": "nvt", "temperatures": [10, 2000], "pressures": [],
                              "nsteps": 100, "protocols": ["ramp", "deform"]}
    plain = stage(ensemble="npt", temperatures=[600, 300], pressures=[100, 1], nsteps=100)
    assert plain.summary()["temperatures"] == [300, 600] and plain.summary()["protocols"] == []


@pytest.mark.parametrize("name", ["na3ocl_amorphous.yaml", "na3ps4o_glass.yaml"])
def test_frozen_config_round_trip(name):
    """Workers re-validate the stored frozen config: same conditions, same hash."""
    from firegen.campaign.config import validate_dict

    cfg = load_config(CONFIGS / name)
    again = validate_dict(cfg.frozen())
    assert again.config_hash() == cfg.config_hash()
    assert [s.conditions() for s in again.stages] == [s.conditions() for s in cfg.stages]
    assert [s.condition_keys() for s in again.stages] == [s.condition_keys() for s in cfg.stages]
