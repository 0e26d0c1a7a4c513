"""The `command` labeler (DP-GEN's custom fp_style): a real script labels with ASE's EMT.

The script (tests/fixtures/dpgen/emt_label.py) reads any ASE structure file and writes extxyz
with energy (eV), forces (eV/Å) and stress; dpdata reads it back. Labels must equal a direct EMT
calculation on the input structure, atom by atom, also when dpdata reorders the input's atoms.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT

from firegen.workflows.steps.command_labeler import CommandLabelError
from firegen.workflows.steps.label import get_labeler, label_many, stress_to_virial

SCRIPT = Path(__file__).resolve().parent / "fixtures" / "dpgen" / "emt_label.py"
PY = sys.executable


def _direct(atoms):
    at = atoms.copy()
    at.calc = EMT()
    return at.get_potential_energy(), at.get_forces(), stress_to_virial(at.get_stress(), at.get_volume())


def _cu(seed=0):
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat(2)
    atoms.rattle(0.08, seed=seed)
    return atoms


def _alloy():
    """Au and Cu interleaved (Au first): dpdata groups atoms by element when writing a POSCAR."""
    atoms = bulk("Cu", "fcc", a=3.75, cubic=True).repeat((2, 1, 1))
    symbols = atoms.get_chemical_symbols()
    for i in range(0, len(atoms), 3):
        symbols[i] = "Au"
    atoms.set_chemical_symbols(symbols)
    atoms.rattle(0.05, seed=3)
    return atoms


def _settings(tmp_path, **over):
    s = {"command": f"{PY} {SCRIPT} in.xyz out.xyz", "input_fmt": "extxyz", "input_fn": "in.xyz",
         "output_fmt": "extxyz", "output_fn": "out.xyz", "workdir": str(tmp_path)}
    s.update(over)
    return s


def test_emt_script_gives_the_direct_emt_label(tmp_path):
    atoms = _cu()
    label = get_labeler("command", _settings(tmp_path)).label(atoms)
    energy, forces, virial = _direct(atoms)
    assert label.kind == "command" and label.code == "command"
    assert label.energy == pytest.approx(energy, abs=1e-6)
    np.testing.assert_allclose(label.forces, forces, atol=1e-6)
    np.testing.assert_allclose(label.virial, virial, atol=1e-5)
    assert not list(tmp_path.iterdir())  # success removes the work folder


def test_poscar_input_with_reordered_atoms_maps_forces_back(tmp_path):
    atoms = _alloy()
    labeler = get_labeler("command", _settings(tmp_path, input_fmt="vasp/poscar", input_fn="POSCAR",
                                               command=f"{PY} emt_label.py POSCAR out.xyz",
                                               forward_files=[str(SCRIPT)]))
    label = labeler.label(atoms)
    energy, forces, _ = _direct(atoms)
    assert label.energy == pytest.approx(energy, abs=1e-6)
    np.testing.assert_allclose(label.forces, forces, atol=1e-5)  # POSCAR keeps 1e-8 fractional digits
    assert label.settings["forward_files"] == [str(SCRIPT)]


def test_nonzero_exit_is_a_failure_with_the_stderr_tail(tmp_path):
    labeler = get_labeler("command", _settings(tmp_path, command=f"{PY} {SCRIPT} in.xyz out.xyz --fail"))
    [result] = label_many(labeler, [_cu()])
    assert not result.ok
    assert "exited with code 3" in result.reason and "SCF did not converge" in result.reason
    kept = list(tmp_path.iterdir())
    assert len(kept) == 1 and str(kept[0]) in result.reason and (kept[0] / "in.xyz").is_file()


@pytest.mark.parametrize("command, expect", [
    ("true", "wrote no out.xyz"),
    ("echo 'not a structure' > out.xyz", "cannot read"),
    (f"{PY} -c 'import time; time.sleep(5)'", "exceeded walltime"),
])
def test_missing_unreadable_or_slow_output_fails_clearly(tmp_path, command, expect):
    labeler = get_labeler("command", _settings(tmp_path, command=command, walltime=0.5))
    with pytest.raises(CommandLabelError, match=expect):
        labeler.label(_cu())


def test_output_of_another_structure_is_refused(tmp_path):
    other = tmp_path / "other.xyz"
    moved = _cu(seed=7)
    moved.calc = EMT()
    moved.get_potential_energy()
    import ase.io

    ase.io.write(other, moved, format="extxyz")
    labeler = get_labeler("command", _settings(tmp_path, command=f"cp {other} out.xyz"))
    with pytest.raises(CommandLabelError, match="no output atom within"):
        labeler.label(_cu(seed=1))


@pytest.mark.parametrize("change, expect", [
    ({"command": None}, "missing"),
    ({"input_fmt": "nonsense/fmt"}, "not a dpdata format"),
    ({"input_fmt": "vasp/outcar"}, "cannot write input_fmt"),
    ({"output_fmt": "vasp/poscar"}, "cannot read labels"),
    ({"walltime": -1}, "walltime"),
    ({"forward_files": ["relative.py"]}, "absolute path"),
    ({"colour": "blue"}, "unknown setting"),
])
def test_bad_settings_name_the_setting(tmp_path, change, expect):
    settings = {k: v for k, v in {**_settings(tmp_path), **change}.items() if v is not None}
    with pytest.raises(ValueError, match=expect):
        get_labeler("command", settings)


def test_settings_hash_is_stable_and_covers_the_command(tmp_path):
    a = get_labeler("command", _settings(tmp_path))
    b = get_labeler("command", _settings(tmp_path))
    c = get_labeler("command", _settings(tmp_path, command="other"))
    assert a.settings_hash == b.settings_hash != c.settings_hash
