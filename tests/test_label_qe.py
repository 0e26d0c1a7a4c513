"""Quantum ESPRESSO labeler: real pw.x runs on silicon with the LDA pseudopotential Debian ships
(``quantum-espresso-data``: /usr/share/espresso/pseudo/Si.pz-vbc.UPF; it ships none for Na or Cl).

Forces (eV/Å) and the virial (eV) are checked against central finite differences of the energy
(eV) on a strained, rattled 2-atom cell that is not lower-triangular, so dpdata's rotation of the
cell and its undoing are exercised too.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk

from firegen.workflows.steps.label import Label, LabelFailure, get_labeler, label_many

PSEUDO_DIR = Path("/usr/share/espresso/pseudo")
SI_UPF = "Si.pz-vbc.UPF"
pytestmark = pytest.mark.skipif(shutil.which("pw.x") is None or not (PSEUDO_DIR / SI_UPF).is_file(),
                                reason="needs Debian's quantum-espresso and quantum-espresso-data")
SETTINGS = {"pseudo_dir": str(PSEUDO_DIR), "pseudopotentials": {"Si": SI_UPF}, "ecutwfc": 40.0,
            "kpoints": [2, 2, 2], "input": {"electrons": {"conv_thr": 1e-11}}}


def si2() -> Atoms:
    """Diamond Si (a = 5.43 Å) under a general strain, with rattled atoms."""
    atoms = bulk("Si", "diamond", a=5.43)
    eps = np.array([[0.01, 0.02, 0.0], [0.02, -0.01, 0.005], [0.0, 0.005, 0.0]])
    atoms.set_cell(atoms.cell[:] @ (np.eye(3) + eps), scale_atoms=True)
    atoms.rattle(0.05, seed=1)
    return atoms


def strained(atoms: Atoms, i: int, j: int, e: float) -> Atoms:
    eps = np.zeros((3, 3))
    eps[i, j] += e / 2
    eps[j, i] += e / 2
    out = atoms.copy()
    out.set_cell(atoms.cell[:] @ (np.eye(3) + eps), scale_atoms=True)
    return out


def test_forces_and_virial_match_finite_differences():
    lab = get_labeler("qe", SETTINGS)
    atoms = si2()
    label = lab.label(atoms)
    assert label.code == "quantum-espresso" and label.kind == "qe" and label.version.startswith("6.")
    assert label.details["n_scf_steps"] > 0 and label.details["corrections"] == []
    assert label.details["command"] == "pw.x -in pw.in" and len(label.details["input_sha256"]) == 64
    assert np.abs(label.forces).max() > 0.5  # a real test: the rattled atoms feel forces
    np.testing.assert_allclose(label.forces.sum(axis=0), 0.0, atol=1e-4)

    h = 0.005  # Å
    plus, minus = atoms.copy(), atoms.copy()
    plus.positions[0, 1] += h
    minus.positions[0, 1] -= h
    fd_force = -(lab.label(plus).energy - lab.label(minus).energy) / (2 * h)
    assert label.forces[0, 1] == pytest.approx(fd_force, abs=2e-3)

    e = 0.004  # shear strain: the virial W_xy = -dE/d(eps_xy)
    fd_wxy = -(lab.label(strained(atoms, 0, 1, e)).energy - lab.label(strained(atoms, 0, 1, -e)).energy) / (2 * e)
    assert label.virial[0, 1] == pytest.approx(fd_wxy, rel=0.01)
    np.testing.assert_allclose(label.virial, label.virial.T, atol=1e-8)


def test_kspacing_follows_dpgen(tmp_path):
    from dpgen.generator.lib.pwscf import _make_pwscf_04_kpoints

    atoms = si2()
    lab = get_labeler("qe", {**SETTINGS, "kpoints": None, "kspacing": 0.3})
    text = lab.make_input(atoms)
    ours = text.split("K_POINTS automatic")[1].split()[:6]
    theirs = _make_pwscf_04_kpoints({"cells": [atoms.cell[:]]}, 0.3).split("\n")[1].split()
    assert ours == theirs
    assert "&FCP" not in text and "&RISM" not in text  # pw.x 6.7 does not know them
    assert "calculation      = 'scf'" in text and "tprnfor          = .true." in text
    assert "conv_thr         = 1e-11" in text


def test_label_via_label_many_and_kept_files(tmp_path):
    lab = get_labeler("qe", {**SETTINGS, "ecutwfc": 20.0, "workdir": str(tmp_path), "keep_files": True})
    (result,) = label_many(lab, [bulk("Si", "diamond", a=5.43)])
    assert isinstance(result, Label)
    np.testing.assert_allclose(result.forces, 0.0, atol=1e-4)  # ideal diamond: forces vanish by symmetry
    w = result.virial
    assert abs(w[0, 0] - w[1, 1]) < 1e-4 and abs(w[0, 1]) < 1e-4
    kept = Path(result.details["workdir"])
    assert (kept / "pw.in").is_file() and (kept / "pw.out").is_file()
    back = Label.from_dict(json.loads(json.dumps(result.to_dict())))
    assert back.details == result.details and back.energy == result.energy


@pytest.mark.skipif(shutil.which("mpirun") is None, reason="needs mpirun (openmpi-bin)")
def test_two_mpi_ranks_give_the_same_label():
    settings = {**SETTINGS, "ecutwfc": 20.0}
    one = get_labeler("qe", settings).label(si2())
    two_lab = get_labeler("qe", {**settings, "mpi_ranks": 2})
    two = two_lab.label(si2())
    assert two_lab.settings_hash == get_labeler("qe", settings).settings_hash
    argv = two.details["command"].split()
    assert Path(argv[0]).name == "mpirun" and argv[1:3] == ["-np", "2"] and argv[-3:] == ["pw.x", "-in", "pw.in"]
    assert two.details["mpi_ranks"] == 2
    assert two.energy == pytest.approx(one.energy, abs=1e-5)
    np.testing.assert_allclose(two.forces, one.forces, atol=1e-4)


def test_unconverged_scf_is_a_failure_with_the_folder_kept(tmp_path):
    lab = get_labeler("qe", {**SETTINGS, "ecutwfc": 20.0, "workdir": str(tmp_path),
                             "input": {"electrons": {"electron_maxstep": 2, "conv_thr": 1e-12}}})
    (result,) = label_many(lab, [si2()])
    assert isinstance(result, LabelFailure)
    assert "convergence NOT achieved" in result.reason
    assert Path(result.details["workdir"]).is_dir() and result.details["command"] == "pw.x -in pw.in"
    json.dumps(result.to_dict())


def test_walltime_stops_pw_x(tmp_path):
    lab = get_labeler("qe", {**SETTINGS, "walltime": 0.2, "workdir": str(tmp_path)})
    (result,) = label_many(lab, [si2()])
    assert isinstance(result, LabelFailure) and "walltime" in result.reason
    assert result.details["walltime_exceeded"] is True


def test_one_error_names_every_element_without_a_pseudopotential(tmp_path):
    lab = get_labeler("qe", SETTINGS)
    nacl = Atoms("NaClSi", scaled_positions=[[0, 0, 0], [0.5, 0.5, 0.5], [0.25, 0.25, 0.25]], cell=[5.6] * 3, pbc=True)
    with pytest.raises(ValueError, match=r"no pseudopotential for Na, Cl; add them") as err:
        lab.make_input(nacl)
    assert "Si" not in str(err.value).split(";")[0]
    with pytest.raises(ValueError, match=r"no file in .* for Al \(Al\.nope\), O \(O\.nope\)"):
        get_labeler("qe", {**SETTINGS, "pseudopotentials": {"Si": SI_UPF, "Al": "Al.nope", "O": "O.nope"}})


@pytest.mark.parametrize("settings, match", [
    ({"pseudo_dir": "/no/such/dir"}, "pseudo_dir"),
    ({"ecutwfc": -1}, "ecutwfc"),
    ({"ecutrho": 50.0}, "ecutrho"),
    ({"kspacing": 0.3, "kpoints": [2, 2, 2]}, "not both"),
    ({"input": {"control": {"calculation": "relax"}}}, "single points"),
    ({"input": {"system": {"nat": 2}}}, "nat"),
    ({"input": {"nonsense": {}}}, "namelist"),
    ({"command": "no-such-pw.x"}, "command"),
    ({"max_errors": 3}, "unknown setting"),
])
def test_bad_settings_name_the_field(settings, match):
    with pytest.raises(ValueError, match=match):
        get_labeler("qe", {**SETTINGS, **settings})


def test_settings_hash_follows_pseudopotential_content_not_its_folder(tmp_path):
    h = get_labeler("qe", SETTINGS).settings_hash
    assert get_labeler("qe", {**SETTINGS, "mpi_ranks": 4, "walltime": 60}).settings_hash == h
    copy = tmp_path / "pp"
    copy.mkdir()
    shutil.copy(PSEUDO_DIR / SI_UPF, copy / SI_UPF)
    assert get_labeler("qe", {**SETTINGS, "pseudo_dir": str(copy)}).settings_hash == h
    with open(copy / SI_UPF, "a") as fh:
        fh.write("\n")
    assert get_labeler("qe", {**SETTINGS, "pseudo_dir": str(copy)}).settings_hash != h
    assert get_labeler("qe", {**SETTINGS, "ecutwfc": 41.0}).settings_hash != h
