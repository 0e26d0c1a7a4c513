"""CP2K labeler: real Debian cp2k runs under custodian on the 5-atom cubic Na3OCl cell (a = 4.50 Å).

The default runs use a cheap basis/grid (200/30 Ry, EPS_DEFAULT 1e-10): what is checked is the
plumbing (input, custodian, dpdata parsing, units, atom order), not converged physics. Slow tests
(``-m slow``) run the campaign settings of configs/na3ocl_cp2k.yaml on the 40-atom cell and check
the virial against finite differences of the energy.

Units: energy eV, forces eV/Å, virial eV (DeePMD: -stress_ASE x volume = CP2K's printed stress x
volume); CP2K prints Hartree, Hartree/Bohr and GPa.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml
from ase import Atoms, units

from firegen.workflows.steps.dft_run import sha256_files
from firegen.workflows.steps.label import Label, LabelFailure, get_labeler, label_many

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "tests" / "fixtures" / "cp2k" / "na3ocl_template.inp"
GPA_PER_EV_A3 = units.eV / units.Angstrom**3 / units.GPa  # 160.2176...
pytestmark = [pytest.mark.skipif(shutil.which("cp2k.psmp") is None and shutil.which("cp2k") is None,
                                 reason="needs Debian's cp2k (apt-get install cp2k)"),
              pytest.mark.filterwarnings("ignore:There is at least one unconverged SCF cycle")]

# the same physics as the template fixture, through settings
FAST = {"cutoff": 200, "rel_cutoff": 30, "input": {"FORCE_EVAL": {"DFT": {"QS": {"EPS_DEFAULT": 1e-10}}}}}


def na3ocl(a: float = 4.50) -> Atoms:
    """Anti-perovskite Na3OCl: Cl at the corner, O at the body centre, Na on the face centres."""
    return Atoms("ClONa3", scaled_positions=[[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]],
                 cell=[a] * 3, pbc=True)


def cp2k_exe() -> str:
    return "cp2k.psmp" if shutil.which("cp2k.psmp") else "cp2k"


@pytest.fixture(scope="module")
def labeled(tmp_path_factory):
    """One labeler single point of the perfect cell, its files kept."""
    workdir = tmp_path_factory.mktemp("cp2k")
    lab = get_labeler("cp2k", {**FAST, "workdir": str(workdir), "keep_files": True})
    (result,) = label_many(lab, [na3ocl()])
    assert isinstance(result, Label), getattr(result, "reason", "")
    return lab, result


def test_label_equals_a_direct_cp2k_run_of_the_same_input(labeled, tmp_path):
    from pymatgen.io.cp2k.outputs import Cp2kOutput

    _, label = labeled
    kept = Path(label.details["workdir"])
    for name in ("cp2k.inp", "coord.xyz"):
        shutil.copy(kept / name, tmp_path / name)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with open(tmp_path / "direct.out", "w") as out:
        subprocess.run([cp2k_exe(), "-i", "cp2k.inp"], cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT, env=env,
                       check=True, timeout=600)
    direct = Cp2kOutput(str(tmp_path / "direct.out"), auto_load=False)
    direct.parse_energies()
    direct.parse_forces()
    direct.parse_stresses()
    energy = direct.final_energy  # eV (pymatgen converts from Hartree)
    forces = np.asarray(direct.data["forces"][-1], dtype=float) * units.Hartree / units.Bohr
    volume = abs(np.linalg.det(na3ocl().cell[:]))
    virial = np.asarray(direct.data["stress_tensor"][-1], dtype=float) / GPA_PER_EV_A3 * volume
    assert label.energy == pytest.approx(energy, abs=1e-6)
    np.testing.assert_allclose(label.forces, forces, atol=1e-6)
    np.testing.assert_allclose(label.virial, virial, rtol=1e-6, atol=1e-6)


def test_forces_vanish_and_virial_is_isotropic_by_symmetry(labeled):
    _, label = labeled
    assert label.forces.shape == (5, 3)
    assert np.abs(label.forces).max() < 1e-3  # eV/Å
    w = label.virial
    off = w - np.diag(np.diag(w))
    assert np.abs(off).max() < 1e-4 and np.ptp(np.diag(w)) < 1e-4  # eV
    assert abs(w[0, 0]) > 0.01  # the cell is not at zero stress for these settings: a real number


def test_label_provenance(labeled):
    lab, label = labeled
    d = label.details
    assert label.code == "cp2k" and label.kind == "cp2k" and label.version == d["code_version"] == "2023.1"
    assert label.settings_hash == lab.settings_hash and label.settings == lab.settings
    assert d["corrections"] == [] and d["mpi_ranks"] == 1 and d["command"] == cp2k_exe()
    assert d["n_scf_steps"] > 1
    assert d["input_sha256"] == sha256_files(Path(d["workdir"]), ["cp2k.inp", "coord.xyz"])
    assert label.walltime > 0
    back = Label.from_dict(json.loads(json.dumps(label.to_dict())))
    assert back.details == d and np.allclose(back.virial, label.virial)


def test_label_and_failure_are_stored_in_the_results_schema(labeled, mongo_db):
    from firegen.db.repository import ResultsStore

    store = ResultsStore(mongo_db)
    store.init()
    _, label = labeled
    cid, _ = store.add_atoms("c", na3ocl(), {"kind": "init"})
    assert store.set_label(cid, {**label.to_dict(), "fw_id": 1})
    doc = store.configurations.find_one({"_id": cid})
    assert doc["label"]["details"]["code_version"] == "2023.1" and doc["status"] == "labeled"
    failure = LabelFailure(reason="custodian gave up", error_type="DFTRunError", walltime=1.0, kind="cp2k",
                           details={"workdir": "/tmp/x"}, history=[{"job": 1, "handler": "UnconvergedScfErrorHandler",
                                                                    "errors": ["Non-converging Job"], "actions": "[]"}])
    cid2, _ = store.add_atoms("c", na3ocl(4.4), {"kind": "init"})
    store.mark_label_failed(cid2, failure.reason, error_type=failure.error_type, details=failure.details,
                            history=failure.history)
    attempt = store.configurations.find_one({"_id": cid2})["label_attempts"][-1]
    assert attempt["history"][0]["handler"] == "UnconvergedScfErrorHandler"


def test_template_route_on_a_displaced_cell_maps_cp2k_forces(tmp_path):
    """DP-GEN-style template (ABC line, @include coord.xyz, no &KIND for Na) on a cell with one Na
    moved along z: non-zero forces, in eV/Å and in the input's atom order.

    Only relations that the real-space grid keeps are checked: at these cheap settings (and still
    at 400-1200 Ry with this basis and the Na-q9 potential) the forces of a displaced cell do not
    sum to zero (grid/egg-box error, ~1 eV/Å here), so neither their sum nor their size is asserted.
    """
    from pymatgen.io.cp2k.outputs import Cp2kOutput

    lab = get_labeler("cp2k", {"template": str(TEMPLATE), "workdir": str(tmp_path), "keep_files": True})
    moved = na3ocl()
    moved.positions[2, 2] += 0.10  # Na on the (0.5, 0.5, 0) face, 0.1 Å towards O
    (result,) = label_many(lab, [moved])
    assert isinstance(result, Label), getattr(result, "reason", "")
    out = Cp2kOutput(str(Path(result.details["workdir"]) / "cp2k.out"), auto_load=False)
    out.parse_forces()
    raw = np.asarray(out.data["forces"][-1], dtype=float)  # Hartree/Bohr, in the order of coord.xyz
    np.testing.assert_allclose(result.forces, raw * units.Hartree / units.Bohr, atol=1e-6)
    f = result.forces
    assert np.abs(f[:, 2]).max() > 0.05  # a real test: the displacement is felt
    # the displacement keeps the 4-fold axis through Cl, O and the moved Na, and the x<->y mirror
    np.testing.assert_allclose(f[:3, :2], 0.0, atol=1e-4)
    np.testing.assert_allclose(f[3], f[4][[1, 0, 2]], atol=1e-4)
    w = result.virial
    assert abs(w[0, 0] - w[1, 1]) < 1e-4 and abs(w[2, 2] - w[0, 0]) > 1e-4  # tetragonal now


def test_template_is_rewritten_as_dpgen_would(tmp_path):
    from pymatgen.io.cp2k.inputs import Cp2kInput

    lab = get_labeler("cp2k", {"template": str(TEMPLATE)})
    text, xyz = lab.make_input(na3ocl())
    ci = Cp2kInput.from_str(text)
    cell = ci.by_path("FORCE_EVAL/SUBSYS/CELL")
    assert [k.upper() for k in cell.keywords] == ["A", "B", "C", "PERIODIC"]
    assert [float(x) for x in cell["A"].values] == [4.5, 0.0, 0.0]
    assert not ci.check("FORCE_EVAL/SUBSYS/COORD")
    assert ci.by_path("FORCE_EVAL/SUBSYS/TOPOLOGY")["COORD_FILE_NAME"].values[0] == "coord.xyz"
    kinds = {k for k in ci.by_path("FORCE_EVAL/SUBSYS").subsections if k.upper().startswith("KIND")}
    assert kinds == {"KIND Cl", "KIND O", "KIND Na"}  # Na added, the template's kept
    assert ci.by_path("FORCE_EVAL/SUBSYS/KIND Cl")["POTENTIAL"].values[0] == "GTH-PBE-q7"
    assert ci["GLOBAL"]["PRINT_LEVEL"].values[0] == "MEDIUM" and ci["GLOBAL"]["RUN_TYPE"].values[0] == "ENERGY_FORCE"
    assert ci["FORCE_EVAL"]["STRESS_TENSOR"].values[0] == "ANALYTICAL"
    assert ci.check("FORCE_EVAL/PRINT/FORCES") and ci.check("FORCE_EVAL/PRINT/STRESS_TENSOR")
    assert ci.by_path("FORCE_EVAL/DFT/MGRID")["CUTOFF"].values[0] == 200  # @SET resolved
    assert xyz.splitlines()[0] == "5" and xyz.splitlines()[2].split()[0] == "Cl"
    # the hash follows the template's content, not its path
    copy = tmp_path / "copy.inp"
    shutil.copy(TEMPLATE, copy)
    assert get_labeler("cp2k", {"template": str(copy)}).settings_hash == lab.settings_hash
    inline = get_labeler("cp2k", {"template": TEMPLATE.read_text()})  # the text itself, for workers without the file
    assert inline.settings_hash == lab.settings_hash and inline.make_input(na3ocl()) == (text, xyz)
    copy.write_text(TEMPLATE.read_text().replace("REL_CUTOFF 30", "REL_CUTOFF 40"))
    assert get_labeler("cp2k", {"template": str(copy)}).settings_hash != lab.settings_hash
    assert lab.settings["cutoff"] is None and lab.settings["scf"] is None  # the template holds them


def test_forced_scf_failure_is_quarantined_with_custodians_history(tmp_path):
    """Two SCF steps cannot reach EPS_SCF: custodian corrects the mixing twice, then gives up."""
    from pymatgen.io.cp2k.inputs import Cp2kInput

    lab = get_labeler("cp2k", {**FAST, "scf": {"max_scf": 2}, "max_errors": 2, "workdir": str(tmp_path)})
    (result,) = label_many(lab, [na3ocl()])
    assert isinstance(result, LabelFailure)
    assert "MaxCorrectionsPerJobError" in result.reason and result.error_type.endswith("DFTRunError")
    assert [h["handler"] for h in result.history] == ["UnconvergedScfErrorHandler"] * 2
    first = json.loads(result.history[0]["actions"])
    assert any("MIXING" in json.dumps(a) for a in first)
    d = result.details
    assert d["custodian_error"] == "MaxCorrectionsPerJobError" and d["command"] == cp2k_exe()
    kept = Path(d["workdir"])
    ci = Cp2kInput.from_file(kept / "cp2k.inp")  # what custodian made of the input
    mixing = ci.by_path("FORCE_EVAL/DFT/SCF/MIXING")
    assert mixing["ALPHA"].values[0] < 0.4 and mixing["NBUFFER"].values[0] == 20
    assert ci.check("FORCE_EVAL/DFT/SCF/SMEAR")
    assert "NBROYDEN" not in (kept / "cp2k.inp").read_text()  # no alias clash with custodian's NBUFFER
    json.dumps(result.to_dict())


def test_walltime_stops_cp2k_and_its_processes(tmp_path):
    lab = get_labeler("cp2k", {**FAST, "walltime": 1, "workdir": str(tmp_path)})
    (result,) = label_many(lab, [na3ocl()])
    assert isinstance(result, LabelFailure) and "walltime of 1 s exceeded" in result.reason
    assert result.history[-1]["handler"] == "WalltimeExceededHandler"
    kept = Path(result.details["workdir"]).resolve()
    alive = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and Path(os.readlink(proc / "cwd")).resolve() == kept:
                alive.append(proc.name)
        except OSError:
            continue
    assert alive == []


def test_settings_defaults_and_input_rendering():
    lab = get_labeler("cp2k", {})
    s = lab.settings
    assert s["command"] in ("cp2k.psmp", "cp2k") and s["mpi_ranks"] == 1
    assert (s["functional"], s["basis_set"], s["potential"]) == ("PBE", "DZVP-MOLOPT-SR-GTH", "GTH-PBE")
    assert (s["cutoff"], s["rel_cutoff"], s["kpoints"], s["charge"]) == (400.0, 50.0, None, 0)
    assert s["scf"]["method"] == "diagonalization" and s["scf"]["mixing"]["method"] == "BROYDEN_MIXING"
    assert s["basis_file"].endswith("BASIS_MOLOPT") and Path(s["potential_file"]).is_file()
    explicit = get_labeler("cp2k", {"cutoff": 400, "functional": "PBE", "scf": {"method": "diagonalization"}})
    assert explicit.settings_hash == lab.settings_hash
    assert get_labeler("cp2k", {"mpi_ranks": 2, "walltime": 10, "keep_files": True}).settings_hash == lab.settings_hash
    assert get_labeler("cp2k", {"cutoff": 500}).settings_hash != lab.settings_hash

    text, _ = get_labeler("cp2k", {"kpoints": [2, 2, 2], "scf": {"smearing": {"electronic_temperature": 500}},
                                   "input": {"force_eval": {"dft": {"mgrid": {"ngrids": 5}}}}}).make_input(na3ocl())
    assert "SCHEME MONKHORST-PACK 2 2 2" in text and "NGRIDS 5" in text and "NGRIDS 4" not in text
    assert "ADDED_MOS 20" in text and "ELECTRONIC_TEMPERATURE 500.0" in text and "METHOD FERMI_DIRAC" in text
    text, _ = get_labeler("cp2k", {"scf": {"method": "ot"}}).make_input(na3ocl())
    assert "&OT" in text and "&OUTER_SCF" in text and "&DIAGONALIZATION" not in text
    text, _ = get_labeler("cp2k", {}).make_input(Atoms("Na", cell=[5] * 3, pbc=True))  # 9 valence electrons
    assert "MULTIPLICITY 2" in text and "UKS True" in text


@pytest.mark.parametrize("settings, match", [
    ({"cutof": 400}, "unknown setting.*cutof"),
    ({"command": "no-such-cp2k"}, "'command'.*no-such-cp2k"),
    ({"basis_file": "NO_SUCH_BASIS"}, "'basis_file'.*NO_SUCH_BASIS"),
    ({"template": "/no/such.inp"}, "'template'"),
    ({"template": str(TEMPLATE), "cutoff": 300}, "'cutoff'.*template"),
    ({"scf": {"method": "ot"}, "kpoints": [2, 2, 2]}, "k-points"),
    ({"scf": {"method": "davidson"}}, "scf.method"),
    ({"scf": {"mixing": {"alpha": 2}}}, "alpha"),
    ({"scf": {"bogus": 1}}, "scf.bogus"),
    ({"kpoints": [2, 2]}, "kpoints"),
    ({"mpi_ranks": 0}, "mpi_ranks"),
    ({"input": ["FORCE_EVAL"]}, "'input'"),
])
def test_bad_settings_name_the_field(settings, match):
    with pytest.raises(ValueError, match=match):
        get_labeler("cp2k", settings)


def test_printed_cell_rounding_is_undone():
    """CP2K prints cell vectors with 3 decimals; the virial must use the input cell's volume."""
    import dpdata

    from firegen.workflows.steps.cp2k_labeler import _restore_cell

    cell_in = np.eye(3) * 4.5225
    printed = np.round(cell_in, 3)  # 4.522
    stress = np.eye(3) * 0.01  # eV/Å^3
    system = dpdata.LabeledSystem(data={
        "atom_names": ["Na"], "atom_numbs": [1], "atom_types": np.array([0]), "orig": np.zeros(3),
        "cells": printed[None], "coords": np.zeros((1, 1, 3)), "energies": np.zeros(1), "forces": np.zeros((1, 1, 3)),
        "virials": (stress * np.linalg.det(printed))[None]})
    _restore_cell(system, cell_in)
    np.testing.assert_allclose(system["virials"][0], stress * np.linalg.det(cell_in), rtol=1e-12)
    np.testing.assert_allclose(system["cells"][0], cell_in)
    other = dpdata.LabeledSystem(data={**system.data, "cells": (cell_in * 1.01)[None]})
    _restore_cell(other, cell_in)  # not the input cell: left for checked_frame to report
    np.testing.assert_allclose(other["cells"][0], cell_in * 1.01)


def test_missing_basis_entries_are_named_before_running():
    lab = get_labeler("cp2k", {"basis_set": "NO-SUCH-BASIS"})
    with pytest.raises(ValueError, match=r"no entry for Cl \(basis NO-SUCH-BASIS\), O \(basis .*Na \(basis"):
        lab.make_input(na3ocl())


def test_non_periodic_structures_are_refused():
    lab = get_labeler("cp2k", {})
    (result,) = label_many(lab, [Atoms("NaCl", positions=[[0, 0, 0], [0, 0, 2.4]])])
    assert isinstance(result, LabelFailure) and "periodic" in result.reason


# --------------------------------------------------------------------------------------------
# slow: campaign settings


def campaign_settings() -> dict:
    cfg = yaml.safe_load((ROOT / "configs" / "na3ocl_cp2k.yaml").read_text())
    assert cfg["labeler"]["kind"] == "cp2k"
    return dict(cfg["labeler"]["settings"])


@pytest.mark.slow
def test_campaign_settings_on_the_40_atom_cell(tmp_path):
    atoms = na3ocl().repeat((2, 2, 2))
    lab = get_labeler("cp2k", {**campaign_settings(), "workdir": str(tmp_path)})
    (result,) = label_many(lab, [atoms])
    assert isinstance(result, Label), getattr(result, "reason", "")
    assert result.details["mpi_ranks"] == lab.settings["mpi_ranks"]
    assert np.abs(result.forces).max() < 1e-3
    w = result.virial
    assert np.ptp(np.diag(w)) < 1e-3 and np.abs(w - np.diag(np.diag(w))).max() < 1e-3
    print(f"40-atom Na3OCl single point: {result.walltime:.1f} s, {result.details['n_scf_steps']} SCF steps, "
          f"virial trace/3 = {np.trace(w) / 3:.4f} eV")


@pytest.mark.slow
def test_virial_matches_finite_differences_of_the_energy(tmp_path):
    """W = -dE/d(eps); for a uniform strain eps_ii = e, trace(W) = -dE/de. GPW at a fixed
    cutoff has a finite-basis error in the stress, so the tolerance is a few percent."""
    lab = get_labeler("cp2k", {**FAST, "cutoff": 400, "rel_cutoff": 50, "workdir": str(tmp_path)})
    e = 0.005
    base = lab.label(na3ocl())
    ep = lab.label(na3ocl(4.50 * (1 + e))).energy
    em = lab.label(na3ocl(4.50 * (1 - e))).energy
    fd_trace = -(ep - em) / (2 * e)
    print(f"trace(W) analytic {np.trace(base.virial):.4f} eV, finite difference {fd_trace:.4f} eV")
    assert np.trace(base.virial) == pytest.approx(fd_trace, rel=0.05)
