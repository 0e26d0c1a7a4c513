#!/usr/bin/env python
"""EMT single point: the "DFT code" of the DP-GEN side-by-side benchmark.

DP-GEN's ``custom`` fp_style and firegen's ``command`` labeler both write one structure with
dpdata (``input_fmt`` ``vasp/poscar`` to ``input_fn`` ``input.vasp``), run this script in that
folder, and read ``output_fn`` (``output.extxyz``) back with dpdata (``output_fmt`` ``extxyz``).

The output is an extended-XYZ frame with ASE's keys: ``energy`` (eV), ``forces`` (eV/Å) and
``stress`` (eV/Å³; dpdata turns it into the virial, eV, as ``-stress * volume``).

Usage (in the task folder; both arguments are optional)::

    python emt_label.py [input.vasp [output.extxyz]]
"""

from __future__ import annotations

import sys
from pathlib import Path

INPUT_FN = "input.vasp"
OUTPUT_FN = "output.extxyz"


def label(input_fn: str | Path = INPUT_FN, output_fn: str | Path = OUTPUT_FN) -> float:
    """Label the POSCAR ``input_fn`` with ASE's EMT; write ``output_fn`` (extxyz); return the energy (eV)."""
    from ase.calculators.emt import EMT
    from ase.calculators.singlepoint import SinglePointCalculator
    from ase.io import read, write

    if not Path(input_fn).is_file():
        raise SystemExit(f"emt_label.py: input {input_fn} not found in {Path.cwd()} "
                         "(fix: set fp_params.input_fn / input_fmt to input.vasp / vasp/poscar)")
    atoms = read(input_fn, format="vasp")
    atoms.calc = EMT()
    energy = atoms.get_potential_energy()
    results = {"energy": energy, "forces": atoms.get_forces(), "stress": atoms.get_stress(voigt=False)}
    atoms.calc = SinglePointCalculator(atoms, **results)
    write(output_fn, atoms, format="extxyz")
    return energy


if __name__ == "__main__":
    label(*sys.argv[1:3])
