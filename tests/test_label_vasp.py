"""VASP labeler: input writing and OUTCAR parsing round-trip on the checked-in fixtures of
tests/fixtures/vasp (made by make_fixtures.py from chosen numbers; VASP is licensed and not here),
and the custodian path with ``replay_vasp.py`` standing in for ``vasp_std``.

Units: energy eV, forces eV/Å, virial eV (= stress x volume in DeePMD's sign convention), VASP
stress in kB (1 eV/Å^3 = 1602.1766208 kB).
"""

from __future__ import annotations

import filecmp
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from ase.io import read

from firegen.workflows.steps.dft_run import checked_frame
from firegen.workflows.steps.label import Label, LabelFailure, get_labeler, label_many

FIX = Path(__file__).parent / "fixtures" / "vasp"
sys.path.insert(0, str(FIX))
import make_fixtures  # noqa: E402

KB_PER_EV_A3 = 1602.1766208
pytestmark = [pytest.mark.filterwarnings("ignore::UserWarning"),  # pymatgen: stand-in POTCARs are unknown to it
              pytest.mark.filterwarnings("ignore:.*is an unconverged VASP run"),  # the unconverged fixture
              pytest.mark.filterwarnings("ignore::DeprecationWarning:spglib")]


def expected(case: str) -> dict:
    return json.loads((FIX / case / "expected.json").read_text())


def labeler(case: str = "na3ocl_static", **extra):
    settings = {"incar": expected(case)["incar"], "potcar_dir": str(FIX / "potcars"),
                "command": f"{FIX / 'replay_vasp.py'} {FIX / case}", **extra}
    return get_labeler("vasp", settings)


def expected_virial(exp: dict) -> np.ndarray:
    xx, yy, zz, xy, yz, zx = exp["stress_kB"]
    stress = np.array([[xx, xy, zx], [xy, yy, yz], [zx, yz, zz]]) / KB_PER_EV_A3  # eV/Å^3
    return stress * abs(np.linalg.det(exp["cell"]))


def test_fixtures_are_what_the_generator_writes(tmp_path):
    make_fixtures.main(tmp_path)
    for path in sorted(FIX.rglob("*")):
        rel = path.relative_to(FIX)
        if path.is_file() and rel.parts[0] in ("potcars", *make_fixtures.CASES):
            assert filecmp.cmp(path, tmp_path / rel, shallow=False), f"{rel} differs from make_fixtures.py's output"


def test_inputs_round_trip(tmp_path):
    exp = expected("na3ocl_static")
    atoms = make_fixtures.atoms()
    order = labeler().write_inputs(atoms, tmp_path)
    assert order.tolist() == exp["poscar_order"] == [0, 2, 4, 1, 3]  # Na Na Na Cl O
    for name in ("INCAR", "KPOINTS", "POSCAR"):
        assert (tmp_path / name).read_text().split() == (FIX / "na3ocl_static" / name).read_text().split(), name
    poscar = read(tmp_path / "POSCAR", format="vasp")
    assert poscar.get_chemical_symbols() == ["Na", "Na", "Na", "Cl", "O"]
    np.testing.assert_allclose(poscar.cell[:], atoms.cell[:], atol=1e-10)
    np.testing.assert_allclose(poscar.positions, atoms.positions[order], atol=1e-9)
    potcar = (tmp_path / "POTCAR").read_text()
    parts = [(FIX / "potcars" / el / "POTCAR").read_text() for el in ("Na", "Cl", "O")]
    assert potcar == "".join(parts)
    incar = (tmp_path / "INCAR").read_text()
    for tag in ("NSW = 0", "IBRION = -1", "ISIF = 2", "ENCUT = 520", "NELM = 60"):
        assert tag in incar


def test_outcar_parsed_back_to_input_order_and_orientation():
    exp = expected("na3ocl_static")
    atoms = make_fixtures.atoms()
    lab = labeler()
    system, facts = lab.parse(FIX / "na3ocl_static", {"order": exp["poscar_order"]})
    energy, forces, virial = checked_frame(system, atoms, "vasp")
    assert energy == pytest.approx(exp["energy"], abs=1e-8)
    # the cell is not lower-triangular: dpdata rotates it, checked_frame rotates the labels back
    np.testing.assert_allclose(forces, exp["forces"], atol=1e-6)
    np.testing.assert_allclose(virial, expected_virial(exp), rtol=1e-5, atol=1e-6)
    assert facts == {"code_version": "6.3.2", "n_scf_steps": 14}


def test_label_under_custodian_with_replayed_outputs(tmp_path):
    exp = expected("na3ocl_static")
    lab = labeler(workdir=str(tmp_path), keep_files=True)
    (result,) = label_many(lab, [make_fixtures.atoms()])
    assert isinstance(result, Label), getattr(result, "reason", "")
    assert result.code == "vasp" and result.kind == "vasp" and result.version == "6.3.2"
    assert result.energy == pytest.approx(exp["energy"], abs=1e-8)
    np.testing.assert_allclose(result.forces, exp["forces"], atol=1e-6)
    np.testing.assert_allclose(result.virial, expected_virial(exp), rtol=1e-5, atol=1e-6)
    d = result.details
    assert d["corrections"] == [] and d["n_scf_steps"] == 14 and d["code_version"] == "6.3.2"
    assert d["command"].endswith("na3ocl_static") and d["mpi_ranks"] == 1
    workdir = Path(d["workdir"])
    assert (workdir / "custodian.json").is_file() and (workdir / "INCAR.orig").is_file()
    json.dumps(result.to_dict())
    assert Label.from_dict(json.loads(json.dumps(result.to_dict()))).details == d


def test_unconverged_run_is_quarantined_with_custodians_history(tmp_path):
    lab = labeler("na3ocl_unconverged", workdir=str(tmp_path), max_errors=2)
    (result,) = label_many(lab, [make_fixtures.atoms()])
    assert isinstance(result, LabelFailure)
    assert "MaxCorrectionsPerJobError" in result.reason
    assert [h["handler"] for h in result.history] == ["UnconvergedErrorHandler"] * 2
    assert all(json.loads(h["actions"]) for h in result.history)  # custodian changed something each time
    assert result.details["custodian_error"] == "MaxCorrectionsPerJobError"
    workdir = Path(result.details["workdir"])  # kept for inspection
    incar = (workdir / "INCAR").read_text()
    assert "ALGO = All" in incar and "ALGO" not in (workdir / "INCAR.orig").read_text()
    json.dumps(result.to_dict())


def test_success_removes_the_work_folder(tmp_path):
    (result,) = label_many(labeler(workdir=str(tmp_path)), [make_fixtures.atoms()])
    assert isinstance(result, Label) and "workdir" not in result.details
    assert list(tmp_path.iterdir()) == []


def test_missing_executable_fails_at_label_time_not_at_construction(tmp_path):
    lab = labeler(command="no-such-vasp_std", workdir=str(tmp_path))  # made on a login node: fine
    (result,) = label_many(lab, [make_fixtures.atoms()])
    assert isinstance(result, LabelFailure) and "no-such-vasp_std" in result.reason
    assert "not found on this worker" in result.reason


def test_every_element_without_a_potcar_is_named_once(tmp_path):
    from ase import Atoms

    atoms = Atoms("NaKClBr", scaled_positions=[[0, 0, 0], [0.5, 0, 0], [0, 0.5, 0], [0, 0, 0.5]], cell=[5] * 3,
                  pbc=True)
    with pytest.raises(ValueError, match=r"no POTCAR for K .*Br ") as err:
        labeler().write_inputs(atoms, tmp_path)
    assert "Na" not in str(err.value).split("no POTCAR for")[1].split(";")[0]


def _mesh(path):
    from pymatgen.io.vasp.inputs import Kpoints

    k = Kpoints.from_file(path)
    return k.style.name, [int(n) for n in k.kpts[0]]


def test_potcar_files_map_and_kpoint_settings(tmp_path):
    atoms = make_fixtures.atoms()
    lab = labeler(potcar_files={"Na": "Na/POTCAR"}, kspacing=0.5)
    lab.write_inputs(atoms, tmp_path)
    rcell = np.linalg.inv(atoms.cell[:]).T
    grid = [int(np.ceil(2 * np.pi * np.linalg.norm(b) / 0.5)) for b in rcell]  # VASP's KSPACING rule
    assert grid == [3, 3, 3]
    assert _mesh(tmp_path / "KPOINTS") == ("Gamma", [3, 3, 3])
    labeler(kpoints=[2, 3, 4]).write_inputs(atoms, tmp_path)
    assert _mesh(tmp_path / "KPOINTS") == ("Gamma", [2, 3, 4])
    lab = get_labeler("vasp", {"incar": {"ENCUT": 400, "KSPACING": 0.3}, "potcar_dir": str(FIX / "potcars")})
    out = tmp_path / "ks"
    out.mkdir()
    lab.write_inputs(atoms, out)
    assert not (out / "KPOINTS").exists() and "KSPACING = 0.3" in (out / "INCAR").read_text()


def test_input_set_route_keeps_the_poscar_order(tmp_path):
    lab = get_labeler("vasp", {"potcar_dir": str(FIX / "potcars")})
    assert lab.settings["input_set"] == "MPStaticSet" and lab.settings["incar"] is None
    order = lab.write_inputs(make_fixtures.atoms(), tmp_path)
    incar = (tmp_path / "INCAR").read_text()
    assert "ENCUT = 520" in incar and "NSW = 0" in incar and "ISIF = 2" in incar
    assert read(tmp_path / "POSCAR", format="vasp").get_chemical_symbols() == ["Na", "Na", "Na", "Cl", "O"]
    assert order.tolist() == [0, 2, 4, 1, 3]
    assert (tmp_path / "KPOINTS").is_file()  # the set's automatic mesh


@pytest.mark.parametrize("settings, match", [
    ({"incar": {"NSW": 10}}, "NSW = 10"),
    ({"incar": {"ISIF": 0}}, "ISIF = 0"),
    ({"incar": {}, "incar_file": "INCAR"}, "not both"),
    ({"incar": {}, "input_set": "MPStaticSet"}, "input_set"),
    ({"input_set": "NoSuchSet"}, "MPStaticSet"),
    ({"handlers": ["VaspErrorHandler", "NoSuchHandler"]}, "NoSuchHandler.*UnconvergedErrorHandler"),
    ({"kspacing": 0.3, "kpoints": [2, 2, 2]}, "not both"),
    ({"kpoints": [2, 2]}, "kpoints"),
    ({"potcar_dir": "/no/such/dir"}, "potcar_dir"),
    ({"walltim": 10}, "unknown setting.*walltim"),
])
def test_bad_settings_name_the_field(settings, match):
    with pytest.raises(ValueError, match=match):
        get_labeler("vasp", {"potcar_dir": str(FIX / "potcars"), **settings})


def test_settings_hash_ignores_how_it_runs_and_follows_the_incar_file(tmp_path):
    base = {"incar": {"ENCUT": 520}, "potcar_dir": str(FIX / "potcars")}
    h = get_labeler("vasp", base).settings_hash
    assert get_labeler("vasp", {**base, "mpi_ranks": 64, "walltime": 10, "command": "srun vasp_std"}).settings_hash == h
    assert get_labeler("vasp", {**base, "incar": {"ENCUT": 600}}).settings_hash != h
    one, two = tmp_path / "a" / "INCAR", tmp_path / "b" / "INCAR"
    for p, text in ((one, "ENCUT = 520\n"), (two, "ENCUT = 520\n")):
        p.parent.mkdir()
        p.write_text(text)
    file_hash = get_labeler("vasp", {"incar_file": str(one), "potcar_dir": str(FIX / "potcars")}).settings_hash
    assert get_labeler("vasp", {"incar_file": str(two), "potcar_dir": str(FIX / "potcars")}).settings_hash == file_hash
    two.write_text("ENCUT = 600\n")
    assert get_labeler("vasp", {"incar_file": str(two), "potcar_dir": str(FIX / "potcars")}).settings_hash != file_hash
