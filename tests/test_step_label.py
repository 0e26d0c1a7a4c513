"""Labeling step with real ASE calculators (EMT, Lennard-Jones, tblite GFN1-xTB)."""

from __future__ import annotations

import json
import socket
import time

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk, molecule
from ase.calculators.emt import EMT

from firegen.workflows.steps.label import (
    Label,
    LabelFailure,
    NonFiniteLabelError,
    get_labeler,
    known_labelers,
    label_many,
    register_labeler,
    settings_hash,
    stress_to_virial,
)

CU_A = 3.61
AR_SIGMA, AR_EPS, AR_RC = 3.405, 0.0104, 8.5  # Å, eV, Å
AR_A = 5.26  # fcc Ar lattice constant, Å


def cu32() -> Atoms:
    return bulk("Cu", "fcc", a=CU_A, cubic=True).repeat((2, 2, 2))


def distorted_cu32() -> Atoms:
    """32-atom Cu with a general (triclinic) strain and random displacements, so every
    virial component is non-zero and distinct."""
    atoms = cu32()
    eps = np.array([[0.012, 0.008, -0.004], [0.008, -0.006, 0.010], [-0.004, 0.010, 0.003]])
    atoms.set_cell(atoms.cell[:] @ (np.eye(3) + eps), scale_atoms=True)
    atoms.rattle(0.05, seed=3)
    return atoms


def na3ocl() -> Atoms:
    """Anti-perovskite Na3OCl, 5 atoms, cubic a = 4.50 Å: Cl at the corner, O at the body
    centre, Na on the face centres."""
    return Atoms(
        "ClONa3",
        scaled_positions=[[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]],
        cell=[4.50] * 3,
        pbc=True,
    )


def strained(atoms: Atoms, i: int, j: int, e: float) -> Atoms:
    """Copy with the symmetric strain eps_ij = eps_ji = e/2 (i != j) or eps_ii = e."""
    eps = np.zeros((3, 3))
    if i == j:
        eps[i, i] = e
    else:
        eps[i, j] = eps[j, i] = e / 2
    out = atoms.copy()
    out.set_cell(out.cell[:] @ (np.eye(3) + eps), scale_atoms=True)
    return out


def check_label_shape(lab: Label, n: int) -> None:
    assert isinstance(lab, Label) and lab.ok
    assert np.isfinite(lab.energy)
    assert np.asarray(lab.forces).shape == (n, 3)
    assert np.isfinite(lab.forces).all()
    assert lab.host == socket.gethostname()
    assert lab.walltime > 0
    assert len(lab.settings_hash) == 64


# -- EMT -------------------------------------------------------------------------------------


def test_emt_perfect_fcc_cu_zero_forces_isotropic_virial():
    lab = get_labeler("emt").label(cu32())
    check_label_shape(lab, 32)
    assert lab.code == "ase-EMT"
    import ase

    assert lab.version == ase.__version__
    assert np.abs(lab.forces).max() < 1e-10  # every atom is a centre of inversion
    w = np.asarray(lab.virial)
    assert w.shape == (3, 3)
    np.testing.assert_allclose(w, w.T, atol=1e-12)
    # cubic crystal: virial is a multiple of the identity
    np.testing.assert_allclose(np.diag(w), w[0, 0], rtol=1e-10)
    assert np.abs(w - np.diag(np.diag(w))).max() < 1e-10
    # a = 3.61 Å is above EMT's Cu equilibrium (~3.59 Å): the crystal is under tension,
    # wants to shrink, so ASE's stress is positive and the DeePMD virial negative
    assert w[0, 0] < 0


def test_emt_virial_equals_minus_stress_times_volume():
    atoms = distorted_cu32()
    lab = get_labeler("emt").label(atoms)
    ref = atoms.copy()
    ref.calc = EMT()
    expected = -ref.get_stress(voigt=False) * ref.get_volume()
    np.testing.assert_allclose(lab.virial, expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(lab.virial, np.asarray(lab.virial).T, atol=1e-10)
    # all six components are distinct and non-zero, so a Voigt-order slip would show
    w = np.asarray(lab.virial)
    comps = [w[0, 0], w[1, 1], w[2, 2], w[1, 2], w[0, 2], w[0, 1]]
    assert min(abs(c) for c in comps) > 1e-3
    assert len({round(c, 6) for c in comps}) == 6
    np.testing.assert_allclose(lab.energy, ref.get_potential_energy(), rtol=0, atol=1e-12)
    np.testing.assert_allclose(lab.forces, ref.get_forces(), atol=1e-12)


def test_emt_virial_is_minus_strain_derivative_of_energy():
    """Physics check: dE/d(eps_ij) = V sigma_ij = -virial_ij, by central differences."""
    atoms = distorted_cu32()
    labeler = get_labeler("emt")
    w = np.asarray(labeler.label(atoms).virial)
    h = 1e-5
    for i, j in [(0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1)]:
        e_plus = labeler.label(strained(atoms, i, j, h)).energy
        e_minus = labeler.label(strained(atoms, i, j, -h)).energy
        dE = (e_plus - e_minus) / (2 * h)
        assert dE == pytest.approx(-w[i, j], rel=1e-5, abs=1e-5), (i, j, dE, -w[i, j])


def test_emt_forces_are_minus_position_derivative_of_energy():
    atoms = distorted_cu32()
    labeler = get_labeler("emt")
    f = np.asarray(labeler.label(atoms).forces)
    h = 1e-5
    for a, k in [(0, 0), (7, 1), (19, 2)]:
        p, m = atoms.copy(), atoms.copy()
        p.positions[a, k] += h
        m.positions[a, k] -= h
        dE = (labeler.label(p).energy - labeler.label(m).energy) / (2 * h)
        assert dE == pytest.approx(-f[a, k], rel=1e-5, abs=1e-6)


def test_constraints_do_not_zero_the_label_forces():
    from ase.constraints import FixAtoms

    atoms = distorted_cu32()
    atoms.set_constraint(FixAtoms(indices=[0, 1]))
    lab = get_labeler("emt").label(atoms)
    assert np.abs(lab.forces[:2]).max() > 1e-3  # raw forces, not the constrained ones
    assert atoms.calc is None  # the input is not modified


# -- Lennard-Jones ------------------------------------------------------------------------------


def lj_pair(r, sigma=AR_SIGMA, eps=AR_EPS, rc=AR_RC):
    """Shifted LJ pair energy (ASE shifts it to zero at rc) and dE/dr."""
    sr6 = (sigma / r) ** 6
    shift = 4 * eps * ((sigma / rc) ** 12 - (sigma / rc) ** 6)
    return 4 * eps * (sr6 * sr6 - sr6) - shift, -24 * eps * (2 * sr6 * sr6 - sr6) / r


def test_lj_dimer_matches_analytic_and_has_no_virial():
    labeler = get_labeler("lj", {"sigma": AR_SIGMA, "epsilon": AR_EPS, "rc": AR_RC})
    for r in (3.4, 2 ** (1 / 6) * AR_SIGMA, 4.5):
        lab = labeler.label(Atoms("Ar2", positions=[[0, 0, 0], [0, 0, r]]))
        check_label_shape(lab, 2)
        e, dedr = lj_pair(r)
        assert lab.energy == pytest.approx(e, rel=1e-10)
        # force on atom 1 (at +z) is -dE/dr along +z
        np.testing.assert_allclose(lab.forces[1], [0, 0, -dedr], atol=1e-12)
        np.testing.assert_allclose(lab.forces[0], -lab.forces[1], atol=1e-12)
        assert lab.virial is None  # non-periodic: no stress, no virial
    assert lab.code == "ase-LennardJones"


def test_lj_fcc_argon_lattice_sum_forces_and_virial():
    atoms = bulk("Ar", "fcc", a=AR_A, cubic=True).repeat((2, 2, 2))
    lab = get_labeler("lj", {"sigma": AR_SIGMA, "epsilon": AR_EPS, "rc": AR_RC}).label(atoms)
    check_label_shape(lab, 32)
    assert np.abs(lab.forces).max() < 1e-10
    # independent brute-force lattice sum over fcc neighbours within rc
    n = int(np.ceil(AR_RC / AR_A)) + 1
    basis = np.array([[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]]) * AR_A
    grid = np.array([[i, j, k] for i in range(-n, n + 1) for j in range(-n, n + 1)
                     for k in range(-n, n + 1)]) * AR_A
    pts = (grid[:, None, :] + basis[None]).reshape(-1, 3)
    r = np.linalg.norm(pts, axis=1)
    r = r[(r > 1e-9) & (r < AR_RC)]
    e_pair, dedr = lj_pair(r)
    e_atom = 0.5 * e_pair.sum()
    assert lab.energy / 32 == pytest.approx(e_atom, rel=1e-9)
    # virial of a pair potential: W = -1/2 sum_j r_j (dE/dr) ... per atom, isotropic:
    # W_xx = -(1/2) * sum_j dE/dr * r_x^2 / r, per atom; trace/3 by symmetry
    w_atom = -0.5 * (dedr * r).sum() / 3
    np.testing.assert_allclose(np.diag(lab.virial), 32 * w_atom, rtol=1e-9)
    assert np.abs(lab.virial - np.diag(np.diag(lab.virial))).max() < 1e-10


def test_lj_settings_defaults_and_hash():
    a = get_labeler("lj", {"sigma": 3.405, "epsilon": 0.0104})
    b = get_labeler("lj", {"epsilon": 0.0104, "sigma": 3.405, "rc": 3 * 3.405, "smooth": False})
    assert a.settings["rc"] == pytest.approx(3 * 3.405)
    assert a.settings_hash == b.settings_hash  # explicit defaults hash like omitted ones
    c = get_labeler("lj", {"sigma": 3.405, "epsilon": 0.0104, "rc": 8.0})
    assert c.settings_hash != a.settings_hash
    assert settings_hash("lj", a.settings) == a.settings_hash
    assert settings_hash("emt", {}) != settings_hash("lj", {})  # the kind is part of the hash


def test_generic_ase_kinds_resolve_and_match_builtin():
    atoms = distorted_cu32()
    ref = get_labeler("emt").label(atoms)
    for kind in ("ase:EMT", "ase:emt.EMT", "ase:emt"):
        lab = get_labeler(kind).label(atoms)
        assert lab.code == "ase-EMT"
        assert lab.energy == pytest.approx(ref.energy, abs=1e-12)
        np.testing.assert_allclose(lab.virial, ref.virial, atol=1e-12)
    lj = get_labeler("ase:LennardJones", {"sigma": AR_SIGMA, "epsilon": AR_EPS, "rc": AR_RC})
    dimer = Atoms("Ar2", positions=[[0, 0, 0], [0, 0, 3.8]])
    assert lj.label(dimer).energy == pytest.approx(lj_pair(3.8)[0], rel=1e-10)
    assert get_labeler("ase:lj.LennardJones").code == "ase-LennardJones"
    morse = get_labeler("ase:morse.MorsePotential", {"epsilon": 0.5, "r0": 2.5, "rho0": 6.0})
    lab = morse.label(Atoms("Cu2", positions=[[0, 0, 0], [0, 0, 2.5]]))
    assert lab.energy == pytest.approx(-0.5, rel=1e-9) and np.abs(lab.forces).max() < 1e-9


def test_to_dict_is_json_and_round_trips():
    lab = get_labeler("emt").label(distorted_cu32())
    d = lab.to_dict()
    text = json.dumps(d, allow_nan=False)
    back = Label.from_dict(json.loads(text))
    assert back.energy == lab.energy
    np.testing.assert_array_equal(back.forces, lab.forces)
    np.testing.assert_array_equal(back.virial, lab.virial)
    assert back.settings_hash == lab.settings_hash and back.code == "ase-EMT"
    assert isinstance(d["forces"][0][0], float) and isinstance(d["virial"], list)
    mol = get_labeler("lj").label(Atoms("Ar2", positions=[[0, 0, 0], [0, 0, 1.2]])).to_dict()
    assert mol["virial"] is None
    json.dumps(mol)


# -- errors and failures ------------------------------------------------------------------------


def test_unknown_kind_error_names_kind_and_known_kinds():
    with pytest.raises(ValueError) as err:
        get_labeler("vaspp", {})
    msg = str(err.value)
    assert "'vaspp'" in msg
    for k in ("emt", "lj", "tblite", "ase:"):
        assert k in msg
    assert set(known_labelers()) >= {"emt", "lj", "tblite"}
    with pytest.raises(ValueError, match="ase:NoSuchCalculator"):
        get_labeler("ase:NoSuchCalculator")
    with pytest.raises(ValueError, match="not an ASE calculator"):
        get_labeler("ase:calculator.Parameters")


def test_bad_settings_name_the_setting():
    with pytest.raises(ValueError, match=r"'sigmaa'.*allowed: sigma"):
        get_labeler("lj", {"sigmaa": 3.4})
    with pytest.raises(ValueError, match="'sigma'"):
        get_labeler("lj", {"sigma": -1})
    with pytest.raises(ValueError, match="'rc'"):
        get_labeler("lj", {"rc": "far"})
    with pytest.raises(ValueError, match="asap_cutoff"):
        get_labeler("emt", {"asap_cutoff": "yes"})


def test_label_many_turns_failures_into_label_failure():
    labeler = get_labeler("emt")
    overlapping = Atoms("Cu2", positions=[[0, 0, 0], [0, 0, 0]], cell=[10, 10, 10], pbc=True)
    argon = Atoms("Ar", positions=[[0, 0, 0]])  # EMT has no parameters for Ar
    good = cu32()
    out = label_many(labeler, [good, overlapping, argon, good])
    assert [r.ok for r in out] == [True, False, False, True]
    nonfinite, no_ar = out[1], out[2]
    assert isinstance(nonfinite, LabelFailure)
    assert nonfinite.error_type.endswith("NonFiniteLabelError")
    assert "non-finite" in nonfinite.reason and "[0, 1]" in nonfinite.reason
    assert no_ar.error_type == "NotImplementedError" and "Ar" in no_ar.reason
    for f in (nonfinite, no_ar):
        assert f.walltime >= 0 and f.kind == "emt" and f.settings_hash == labeler.settings_hash
        json.dumps(f.to_dict())
    # label() itself raises
    with pytest.raises(NonFiniteLabelError):
        labeler.label(overlapping)


def test_lj_overlapping_atoms_fail():
    out = label_many(get_labeler("lj"), [Atoms("Ar2", positions=[[1, 1, 1], [1, 1, 1]])])
    assert isinstance(out[0], LabelFailure) and "non-finite" in out[0].reason


def test_register_custom_labeler():
    from firegen.workflows.steps.label import ASELabeler, _REGISTRY

    @register_labeler("emt-test-only")
    def factory(settings):
        return ASELabeler("emt-test-only", settings, "ase-EMT", "x", EMT)

    try:
        assert "emt-test-only" in known_labelers()
        lab = get_labeler("EMT-test-only").label(cu32())
        assert lab.kind == "emt-test-only"
    finally:
        _REGISTRY.pop("emt-test-only", None)


def test_stress_to_virial_voigt_order():
    # Voigt (xx, yy, zz, yz, xz, xy) -> full tensor, times -V
    w = stress_to_virial([1, 2, 3, 4, 5, 6], 2.0)
    np.testing.assert_array_equal(w, -2.0 * np.array([[1, 6, 5], [6, 2, 4], [5, 4, 3]]))
    np.testing.assert_array_equal(stress_to_virial(-w / 2.0, 2.0), w)


# -- tblite -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tblite():
    try:
        from tblite.ase import TBLite  # noqa: F401
    except ImportError as exc:
        pytest.skip(f"tblite's ASE interface is not importable: {exc}")


def test_tblite_gfn1_water_molecule(tblite):
    labeler = get_labeler("tblite", {"method": "GFN1-xTB"})
    lab = labeler.label(molecule("H2O"))
    check_label_shape(lab, 3)
    assert lab.code == "tblite" and lab.version[0].isdigit()
    # tblite's documented GFN1-xTB energy of ase's H2O, eV
    assert lab.energy == pytest.approx(-156.9675, abs=1e-3)
    np.testing.assert_allclose(lab.forces.sum(axis=0), 0, atol=1e-8)  # no net force
    assert lab.virial is None


def test_tblite_gfn1_na3ocl_cell(tblite):
    # GFN1-xTB does not reach SCF convergence for this 5-atom (Gamma-point) cell at the default
    # electronic temperature of 300 K in tblite 0.8.0; 1000 K smearing converges it.
    labeler = get_labeler("tblite", {"method": "GFN1-xTB", "electronic_temperature": 1000.0})
    atoms = na3ocl()
    t0 = time.perf_counter()
    lab = labeler.label(atoms)
    assert time.perf_counter() - t0 < 10
    check_label_shape(lab, 5)
    assert np.abs(lab.forces).max() < 1e-3  # every site is a centre of inversion
    w = np.asarray(lab.virial)
    np.testing.assert_allclose(w, w.T, atol=1e-8)
    np.testing.assert_allclose(np.diag(w), w[0, 0], rtol=1e-8)
    assert np.abs(w - np.diag(np.diag(w))).max() < 1e-4
    # isotropic strain: dE/d(eps) = -trace(W) (the sum of the three diagonal derivatives)
    h = 1e-4
    plus, minus = atoms.copy(), atoms.copy()
    plus.set_cell(atoms.cell[:] * (1 + h), scale_atoms=True)
    minus.set_cell(atoms.cell[:] * (1 - h), scale_atoms=True)
    dE = (labeler.label(plus).energy - labeler.label(minus).energy) / (2 * h)
    assert dE == pytest.approx(-np.trace(w), rel=1e-3)


def test_tblite_failures_become_label_failures(tblite):
    labeler = get_labeler("tblite", {"method": "GFN1-xTB"})
    uranium = Atoms("UH", positions=[[0, 0, 0], [0, 0, 2.0]])  # xTB stops at Rn (Z = 86)
    unconverged = get_labeler("tblite", {"method": "GFN1-xTB", "max_iterations": 2})
    out = label_many(labeler, [uranium, molecule("H2O")]) + label_many(unconverged, [na3ocl()])
    assert isinstance(out[0], LabelFailure)
    assert "Z >86" in out[0].reason.replace("> ", ">")
    assert out[0].error_type == "ase.calculators.calculator.InputError"
    assert isinstance(out[1], Label)
    assert isinstance(out[2], LabelFailure)
    assert "not converged" in out[2].reason.lower()
    assert out[2].error_type == "ase.calculators.calculator.CalculationFailed"


def test_tblite_settings_validation(tblite):
    a = get_labeler("tblite", {"method": "gfn2-xtb"})
    assert a.settings["method"] == "GFN2-xTB"
    assert a.settings_hash == get_labeler("tblite", {}).settings_hash  # GFN2 is the default
    with pytest.raises(ValueError, match="'method'"):
        get_labeler("tblite", {"method": "GFN3"})
    with pytest.raises(ValueError, match="'max_iterations'"):
        get_labeler("tblite", {"max_iterations": 2.5})
    with pytest.raises(ValueError, match="'kpts'"):
        get_labeler("tblite", {"kpts": [2, 2, 2]})
