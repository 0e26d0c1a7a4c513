"""Starting-structure builders: point defects with charge bookkeeping, random packing, reference
phases, and the Li3OCl defect campaign built from them (no database, no MD)."""

from __future__ import annotations

import copy
import json
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import yaml

from firegen.campaign.config import ConfigError, load_config
from firegen.campaign.structure_builders import (AMU_PER_A3_IN_G_PER_CM3, BuildError,
                                                     apply_defects, build_system,
                                                     min_distance_table, random_packing,
                                                     schottky_unit, void_centres)
from firegen.campaign.structures import make_supercell, read_structure

ROOT = Path(__file__).resolve().parents[1]
STRUCTURES = ROOT / "configs" / "structures"
A_LI3OCL = 3.91  # Å
LI3OCL_STATES = {"Li": 1.0, "O": -2.0, "Cl": -1.0}


@pytest.fixture(scope="module")
def li3ocl_222():
    """Li3OCl 2×2×2: Li24 O8 Cl8, a = 7.82 Å."""
    return make_supercell(read_structure(STRUCTURES / "Li3OCl.cif"), 2)


def counts(atoms) -> dict[str, int]:
    return dict(Counter(atoms.get_chemical_symbols()))


def spec(**kw) -> dict:
    return {"structure": str(STRUCTURES / "Li3OCl.cif"), "supercell": [2, 2, 2], **kw}


def mic_distances(atoms) -> np.ndarray:
    d = atoms.get_all_distances(mic=True)
    np.fill_diagonal(d, np.inf)
    return d


# ---- reference phases ----------------------------------------------------------------------
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # spglib's, via SpacegroupAnalyzer
@pytest.mark.parametrize("name, composition, a, spacegroup", [
    ("Li3OCl", {"Li": 3, "O": 1, "Cl": 1}, 3.91, "Pm-3m"),
    ("NaCl", {"Na": 4, "Cl": 4}, 5.64, "Fm-3m"),
    ("LiCl", {"Li": 4, "Cl": 4}, 5.13, "Fm-3m"),
    ("Na2O", {"Na": 8, "O": 4}, 5.55, "Fm-3m"),
    ("Li2O", {"Li": 8, "O": 4}, 4.61, "Fm-3m"),
])
def test_reference_phase_files(name, composition, a, spacegroup):
    from pymatgen.core import Structure
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    atoms = read_structure(STRUCTURES / f"{name}.cif")
    structure = Structure.from_file(str(STRUCTURES / f"{name}.cif"))
    assert counts(atoms) == composition
    assert atoms.cell.cellpar() == pytest.approx([a, a, a, 90, 90, 90])
    assert SpacegroupAnalyzer(structure).get_space_group_symbol() == spacegroup
    nearest = mic_distances(atoms).min()  # cation–anion contact: a/2 (rock salt, Li3OCl), a√3/4
    assert nearest == pytest.approx(a * np.sqrt(3) / 4 if "2O" in name else a / 2)


# ---- defects: stoichiometry and charge -----------------------------------------------------
PRISTINE = {"Li": 24, "O": 8, "Cl": 8}
DEFECTS = [  # (id, defects, element count changes, net formal charge in e)
    ("v_Li", [{"type": "vacancy", "species": "Li"}], {"Li": -1}, -1),
    ("2 v_Cl", [{"type": "vacancy", "species": "Cl", "count": 2}], {"Cl": -2}, +2),
    ("schottky LiCl", [{"type": "schottky", "species": ["Li", "Cl"]}], {"Li": -1, "Cl": -1}, 0),
    ("schottky Li2O", [{"type": "schottky", "species": ["O", "Li"]}], {"Li": -2, "O": -1}, 0),
    ("schottky Li3OCl", [{"type": "schottky", "species": ["Li", "O", "Cl"]}],
     {"Li": -3, "O": -1, "Cl": -1}, 0),
    ("2 schottky LiCl", [{"type": "schottky", "species": ["Li", "Cl"], "count": 2}],
     {"Li": -2, "Cl": -2}, 0),
    ("Br_Cl isovalent", [{"type": "substitution", "species": "Cl", "by": "Br"}],
     {"Cl": -1, "Br": +1}, 0),
    ("O_Cl aliovalent", [{"type": "substitution", "species": "Cl", "by": "O"}],
     {"Cl": -1, "O": +1}, -1),
    ("Mg_Li aliovalent", [{"type": "substitution", "species": "Li", "by": "Mg", "count": 2}],
     {"Li": -2, "Mg": +2}, +2),
    ("Li_i", [{"type": "interstitial", "species": "Li"}], {"Li": +1}, +1),
    ("Frenkel", [{"type": "vacancy", "species": "Li"}, {"type": "interstitial", "species": "Li"}],
     {}, 0),
    ("antisite", [{"type": "antisite", "species": ["O", "Cl"]}], {}, 0),
]


@pytest.mark.parametrize("defects, change, charge", [d[1:] for d in DEFECTS],
                         ids=[d[0] for d in DEFECTS])
def test_defect_stoichiometry_and_charge(defects, change, charge):
    built = build_system(spec(defects=defects))
    expected = {el: PRISTINE.get(el, 0) + change.get(el, 0) for el in {*PRISTINE, *change}}
    assert counts(built.atoms) == {el: n for el, n in expected.items() if n}
    assert built.charge == pytest.approx(charge)
    assert sum(r["charge_change"] for r in built.defects) == pytest.approx(charge)
    assert mic_distances(built.atoms).min() > 1.9  # Å: no atom put on top of another
    meta = built.metadata()
    assert json.loads(json.dumps(meta)) == meta and meta["charge"] == pytest.approx(charge)


def test_user_oxidation_states_drive_the_bookkeeping():
    # a (made-up) map where O is -1: Li3OCl is then charged +1 before any defect
    built = build_system(spec(oxidation_states={"Li": 1, "O": -1, "Cl": -1}))
    assert built.charge == pytest.approx(8) and built.oxidation_states["O"] == -1
    built = build_system(spec(defects=[{"type": "substitution", "species": "Cl", "by": "Br"}],
                              oxidation_states={"Br": 1}))
    assert built.charge == pytest.approx(2)  # Br+ on a Cl- site


def test_schottky_units_are_neutral():
    assert schottky_unit(["Li", "Cl"], LI3OCL_STATES) == {"Li": 1, "Cl": 1}
    assert schottky_unit(["Li", "O"], LI3OCL_STATES) == {"Li": 2, "O": 1}
    assert schottky_unit(["O", "Li"], LI3OCL_STATES) == {"O": 1, "Li": 2}
    assert schottky_unit(["Al", "O"], {"Al": 3, "O": -2}) == {"Al": 2, "O": 3}
    assert schottky_unit(["Li", "O", "Cl"], LI3OCL_STATES, {"Li": 24, "O": 8, "Cl": 8}) == \
        {"Li": 3, "O": 1, "Cl": 1}
    with pytest.raises(BuildError, match="cation and an anion"):
        schottky_unit(["O", "Cl"], LI3OCL_STATES)


def test_schottky_pair_separation(li3ocl_222):
    near = apply_defects(li3ocl_222, [{"type": "schottky", "species": ["Li", "Cl"]}],
                         LI3OCL_STATES)[1][0]
    far = apply_defects(li3ocl_222, [{"type": "schottky", "species": ["Li", "Cl"],
                                      "arrangement": "farthest"}], LI3OCL_STATES)[1][0]
    assert near["max_distance"] == pytest.approx(A_LI3OCL / np.sqrt(2))  # Li–Cl neighbours
    assert far["max_distance"] == pytest.approx(A_LI3OCL * np.sqrt(1.5))  # farthest in 2×2×2
    assert near["name"] == "v_Li+v_Cl" and near["charge_change"] == 0


def test_removed_and_replaced_sites_are_the_recorded_ones(li3ocl_222):
    atoms, (rec,) = apply_defects(li3ocl_222, [{"type": "schottky", "species": ["Li", "Cl"]}],
                                  LI3OCL_STATES)
    for point in np.reshape(rec["coords"], (-1, 3)):  # nothing is left where the vacancies are
        probe = atoms.copy()
        probe.append("X")
        probe.positions[-1] = point
        d = probe.get_distances(len(probe) - 1, range(len(atoms)), mic=True)
        assert d.min() > 1.0
    atoms, (rec,) = apply_defects(li3ocl_222, [{"type": "substitution", "species": "Cl",
                                                "by": "Br", "count": 3}], LI3OCL_STATES)
    br = np.flatnonzero(np.array(atoms.get_chemical_symbols()) == "Br")
    assert sorted(br.tolist()) == sorted(rec["sites"])  # substitution keeps the site order
    assert np.allclose(atoms.positions[sorted(rec["sites"])],
                       li3ocl_222.positions[sorted(rec["sites"])])


def test_interstitial_fills_the_largest_void(li3ocl_222):
    from pymatgen.io.ase import AseAtomsAdaptor

    _, clearance = void_centres(AseAtomsAdaptor.get_structure(li3ocl_222))
    assert clearance.max() == pytest.approx(A_LI3OCL / 2)  # edge centres, between two Cl
    atoms, (rec,) = apply_defects(li3ocl_222, [{"type": "interstitial", "species": "Li"}],
                                  LI3OCL_STATES)
    frac = np.reshape(rec["coords"], (-1, 3))[0] / A_LI3OCL % 1.0
    assert sorted(np.round(frac, 6)) == [0.0, 0.0, 0.5]  # an edge centre of the unit cell
    assert mic_distances(atoms)[-1].min() == pytest.approx(A_LI3OCL / 2)
    # a vacancy then an interstitial: a Frenkel pair, not the perfect crystal again
    atoms, (vac, inter) = apply_defects(li3ocl_222, [{"type": "vacancy", "species": "Li"},
                                                     {"type": "interstitial", "species": "Li"}],
                                        LI3OCL_STATES)
    probe = atoms.copy()
    probe.append("X")
    probe.positions[-1] = np.reshape(vac["coords"], (-1, 3))[0]
    assert probe.get_distance(len(probe) - 1, inter["sites"][0], mic=True) > A_LI3OCL / np.sqrt(2)


def test_site_choice_is_deterministic_given_the_seed(li3ocl_222):
    def sites(defect, seed):
        return apply_defects(li3ocl_222, [{**defect, "seed": seed}], LI3OCL_STATES)[1][0]["sites"]

    for defect in ({"type": "vacancy", "species": "Li", "count": 2},
                   {"type": "schottky", "species": ["Li", "Cl"]},
                   {"type": "substitution", "species": "Cl", "by": "Br"},
                   {"type": "antisite", "species": ["O", "Cl"]}):
        assert sites(defect, 7) == sites(defect, 7)
        assert len({tuple(sites(defect, s)) for s in range(6)}) > 1, defect
    a = build_system(spec(defects=[{"type": "interstitial", "species": "Li", "seed": 3}]))
    b = build_system(spec(defects=[{"type": "interstitial", "species": "Li", "seed": 3}]))
    assert np.array_equal(a.atoms.positions, b.atoms.positions)


def test_scale_then_defects():
    built = build_system(spec(scale=1.02, defects=[{"type": "vacancy", "species": "O"}]))
    assert built.atoms.get_volume() == pytest.approx((2 * A_LI3OCL * 1.02) ** 3)
    assert built.charge == pytest.approx(2)


@pytest.mark.parametrize("kw, field, words", [
    (dict(defects=[{"type": "vacancy", "species": "Li"}], require_neutral=True),
     "require_neutral", ["v_Li", "-1 e"]),
    (dict(defects=[{"type": "vacancy", "species": "Li", "count": 25}]), "defects[0].count",
     ["25", "24"]),
    (dict(defects=[{"type": "vacancy", "species": "Na"}]), "defects[0].species", ["no (more) Na"]),
    (dict(defects=[{"type": "schottky", "species": ["Li", "Cl"], "count": 9}]),
     "defects[0].count", ["need more Cl sites"]),
    (dict(defects=[{"type": "interstitial", "species": "Ag"}]), "defects[0].species",
     ["oxidation state", "Ag"]),
])
def test_build_errors_name_the_field(kw, field, words):
    with pytest.raises(BuildError) as info:
        build_system(spec(**kw))
    assert info.value.field == field, str(info.value)
    for word in words:
        assert word in str(info.value)


# ---- random packing ------------------------------------------------------------------------
def test_random_packing_composition_density_and_distances():
    atoms = random_packing("Na3OCl", 8, density=2.0, seed=4)
    assert counts(atoms) == {"Na": 24, "O": 8, "Cl": 8}
    assert atoms.get_chemical_symbols()[:24] == ["Na"] * 24  # grouped in the formula's order
    density = atoms.get_masses().sum() / atoms.get_volume() * AMU_PER_A3_IN_G_PER_CM3
    assert density == pytest.approx(2.0, rel=0.01)
    table = min_distance_table(["Na", "O", "Cl"], None, {"Na": 1, "O": -2, "Cl": -1})
    d, sym = mic_distances(atoms), atoms.get_chemical_symbols()
    need = np.array([[table[a, b] if a is not b else 0 for b in sym] for a in sym])
    np.fill_diagonal(need, 0)
    assert (d >= need - 1e-9).all()
    assert table["Na", "O"] < table["Na", "Na"] and table["O", "Cl"] == table["Cl", "O"]
    again = random_packing("Na3OCl", 8, density=2.0, seed=4)
    assert np.array_equal(again.positions, atoms.positions)
    assert not np.allclose(random_packing("Na3OCl", 8, density=2.0, seed=5).positions,
                           atoms.positions)


def test_random_packing_given_distances_and_volume_per_atom():
    atoms = random_packing("Na3PS3.5O0.5", 4, volume_per_atom=20.0, min_distance=2.0, seed=1)
    assert counts(atoms) == {"Na": 12, "P": 4, "S": 14, "O": 2}
    assert atoms.get_volume() == pytest.approx(32 * 20.0)
    assert mic_distances(atoms).min() >= 2.0
    atoms = random_packing("NaCl", 16, density=1.0, min_distance={"Na-Cl": 2.6, "Cl-Cl": 3.4})
    d, sym = mic_distances(atoms), np.array(atoms.get_chemical_symbols())
    assert d[np.ix_(sym == "Na", sym == "Cl")].min() >= 2.6
    assert d[np.ix_(sym == "Cl", sym == "Cl")].min() >= 3.4


@pytest.mark.parametrize("kw, words", [
    (dict(density=12.0), ["cannot be packed", "close packing"]),
    (dict(density=2.6, max_attempts=200), ["placed only", "max_attempts"]),
    (dict(volume_per_atom=1.0), ["box", "smaller than"]),
])
def test_random_packing_refuses_impossible_densities(kw, words):
    with pytest.raises(BuildError) as info:
        random_packing("Na3OCl", 4 if "volume_per_atom" in kw else 8, seed=0, **kw)
    assert info.value.field in ("density", "volume_per_atom") and info.value.fix
    for word in words:
        assert word in str(info.value), str(info.value)


def test_random_packing_bad_formula_units():
    with pytest.raises(BuildError, match="whole number") as info:
        random_packing("Na3PS3.5O0.5", 3, density=2.0)
    assert info.value.field == "units"


# ---- the config --------------------------------------------------------------------------
MINIMAL = {
    "name": "mini",
    "type_map": ["Li", "O", "Cl"],
    "systems": [{"name": "x", "structure": "structures/Li3OCl.cif", "supercell": 2}],
    "initial_data": {"perturb": {"count": 1}},
    "stages": [{"name": "s", "ensemble": "nvt", "temperatures": [300], "nsteps": 100}],
    "labeler": {"kind": "emt"},
}


@pytest.fixture
def workdir(tmp_path):
    shutil.copytree(STRUCTURES, tmp_path / "structures")
    return tmp_path


def load(workdir: Path, system: dict, **top):
    data = copy.deepcopy(MINIMAL)
    data["systems"][0].update(system)
    data.update(top)
    path = workdir / "c.yaml"
    path.write_text(yaml.safe_dump(data))
    return load_config(path)


def test_config_builds_defective_and_packed_systems(workdir):
    cfg = load(workdir, {"defects": [{"type": "schottky", "species": ["Li", "Cl"]}],
                         "require_neutral": True})
    assert counts(cfg.system_atoms("x")) == {"Li": 23, "O": 8, "Cl": 7}
    meta = cfg.system_metadata("x")
    assert meta["charge"] == 0 and meta["defects"][0]["name"] == "v_Li+v_Cl"
    packed = {"structure": None, "supercell": 1,
              "random_packing": {"formula": "Na3OCl", "units": 8, "density": 2.0}}
    cfg = load(workdir, packed, type_map=["Na", "O", "Cl"])
    assert counts(cfg.system_atoms("x")) == {"Na": 24, "O": 8, "Cl": 8}
    assert cfg.system_metadata("x")["charge"] == 0
    frozen = cfg.frozen()
    assert frozen["systems"][0]["random_packing"]["formula"] == "Na3OCl"


D = "defects"
CONFIG_ERRORS = [  # (system change, extra top-level change, field named, words)
    ({"random_packing": {"formula": "Li3OCl", "units": 1, "density": 2}}, {},
     "systems[0].random_packing", ["together with `structure`"]),
    ({"structure": None}, {}, "systems[0].structure", ["is required"]),
    ({D: [{"type": "vacancy", "species": "Xx"}]}, {}, "systems[0].defects[0].species",
     ["unknown element"]),
    ({D: [{"type": "schottky", "species": ["Li", "Cll"]}]}, {},
     "systems[0].defects[0].species[1]", ["did you mean 'Cl'"]),
    ({D: [{"type": "substitution", "species": "Cl"}]}, {}, "systems[0].defects[0].by",
     ["required"]),
    ({D: [{"type": "schottky", "species": "Li"}]}, {}, "systems[0].defects[0].species",
     ["list of elements"]),
    ({D: [{"type": "hole", "species": "Li"}]}, {}, "systems[0].defects[0].type",
     ["vacancy"]),
    ({D: [{"type": "substitution", "species": "Cl", "by": "Br"}]}, {},
     "systems[0].defects[0].by", ["Br", "not in type_map"]),
    ({D: [{"type": "vacancy", "species": "Li"}], "require_neutral": True}, {},
     "systems[0].require_neutral", ["-1 e"]),
    ({D: [{"type": "vacancy", "species": "Li", "count": 30}]}, {},
     "systems[0].defects[0].count", ["30"]),
    ({"structure": None, "random_packing": {"formula": "Na3OCl", "units": 8}},
     {"type_map": ["Na", "O", "Cl"]}, "systems[0].random_packing.density",
     ["required (or volume_per_atom)"]),
    ({"structure": None, "random_packing": {"formula": "Na3OCl", "units": 8, "density": 9}},
     {"type_map": ["Na", "O", "Cl"]}, "systems[0].random_packing.density",
     ["cannot be packed"]),
    ({"structure": None, "random_packing": {"formula": "Na3OCl", "units": 8, "density": 2,
                                            "min_distance": {"Na-K": 2}}},
     {"type_map": ["Na", "O", "Cl"]}, "systems[0].random_packing.min_distance.Na-K",
     ["no pair"]),
    ({"structure": None, "random_packing": {"formula": "Na3OCl", "units": 2, "density": 2}},
     {}, "systems[0].random_packing.formula", ["Na", "not in type_map"]),
    ({"scale": 3}, {}, "systems[0].scale", ["less than 2"]),
]


@pytest.mark.parametrize("system, top, field, words", CONFIG_ERRORS,
                         ids=[e[2].split("systems[0].")[1] + f"-{i}"
                              for i, e in enumerate(CONFIG_ERRORS)])
def test_config_errors_name_the_field(workdir, system, top, field, words):
    with pytest.raises(ConfigError) as info:
        load(workdir, system, **top)
    message = str(info.value)
    assert len(message.splitlines()) == 1, message
    assert f": {field}: " in message and ". Fix: " in message, message
    for word in words:
        assert word in message, (word, message)


# ---- the Li3OCl defect campaign --------------------------------------------------------------
def test_li3ocl_defect_campaign_config():
    cfg = load_config(ROOT / "configs" / "li3ocl_defects.yaml")
    explored = [s.name for s in cfg.systems if s.role == "explore"]
    assert len(explored) == 8 and "Br" in cfg.type_map
    assert {s.name for s in cfg.systems if s.role == "reference"} == {"pristine", "li2o", "licl"}
    npt, nvt = cfg.stages
    assert npt.ensemble == "npt" and nvt.ensemble == "nvt"
    assert [(c["temperature"], c["pressure"]) for c in npt.conditions()] == [
        (t, p) for t in (300, 500, 700, 900) for p in (0.1, 5, 10, 100)]
    assert [c["temperature"] for c in nvt.conditions()] == [300, 500, 700, 900]
    assert (npt.nsteps, nvt.nsteps) == (5000, 10000)
    assert npt.systems == nvt.systems == explored
    assert npt.max_iterations + nvt.max_iterations == 16
    assert cfg.selection.max_per_iteration == 300
    assert cfg.labeler.kind == "tblite" and cfg.labeler.settings["method"] == "GFN1-xTB"
    assert cfg.initial_data.perturb is not None
    built = {s.name: cfg.build_system(s.name) for s in cfg.systems}
    assert all(b.charge == 0 for b in built.values())
    formulas = {name: b.atoms.get_chemical_formula() for name, b in built.items()}
    assert len({formulas[n] + json.dumps([d["name"] for d in built[n].defects])
                for n in explored}) >= 7  # distinct defect structures
    assert formulas["schottky-licl-near"] == formulas["schottky-licl-far"] == "Cl7Li23O8"
    assert built["schottky-licl-far"].defects[0]["max_distance"] > \
        built["schottky-licl-near"].defects[0]["max_distance"]
    assert counts(built["br-half-schottky"].atoms) == {"Li": 23, "O": 8, "Cl": 3, "Br": 4}


def test_li3ocl_defect_campaign_dry_run(tmp_path):
    from fireworks import Workflow

    from campaign_helpers import firegen
    from firegen.workflows.builders import iteration_fireworks

    out = firegen(tmp_path, "submit", str(ROOT / "configs" / "li3ocl_defects.yaml"), "--dry-run",
                  "-o", "wf.yaml", check=True)
    wf = Workflow.from_file(str(tmp_path / "wf.yaml"))
    (init,) = wf.fws
    assert init.spec["firegen"]["kind"] == "init", out.stdout
    systems = init.tasks[0]["systems"]
    assert len(systems) == 11
    assert Counter(systems["schottky-li2o"]["species"]) == {"Li": 22, "O": 7, "Cl": 8}
    assert Counter(systems["br-on-cl"]["species"]) == {"Li": 24, "O": 8, "Cl": 7, "Br": 1}
    assert len(systems["li2o"]["species"]) == 96 and len(systems["licl"]["species"]) == 64
    cfg = load_config(ROOT / "configs" / "li3ocl_defects.yaml")
    for stage, explores in ((0, 8 * 16), (1, 8 * 4)):
        fws, _ = iteration_fireworks(cfg, 0, stage)
        kinds = Counter(fw.spec["firegen"]["kind"] for fw in fws)
        assert kinds == {"gate": 1, "train": 4, "explore": explores, "select": 1}
        assert {fw.spec["firegen"]["system"] for fw in fws if "system" in fw.spec["firegen"]} \
            == set(cfg.stages[stage].systems)


def test_built_systems_travel_to_the_database_with_their_bookkeeping(mongo_db):
    from firegen.orchestrator.submit import prepared_systems

    cfg = load_config(ROOT / "configs" / "li3ocl_defects.yaml")
    systems = prepared_systems(cfg)
    mongo_db.campaigns.insert_one({"name": "li3ocl", "systems": systems})  # FerretDB: no nested arrays
    stored = mongo_db.campaigns.find_one({"name": "li3ocl"})["systems"]
    assert set(stored) == {s.name for s in cfg.systems}
    for name, system in stored.items():
        assert system["natoms"] == len(system["species"]) == len(system["positions"]) // 3
        if cfg.system(name).require_neutral:
            assert system["charge"] == 0
    assert stored["schottky-licl-near"]["formula"] == "Cl7Li23O8"
    assert all(s.role == "explore" for s in cfg.systems if s.name in cfg.stages[0].systems)
    assert {s.name for s in cfg.systems if s.role == "reference"}.isdisjoint(cfg.stages[0].systems)
