#!/usr/bin/env python
"""Initial data of the DP-GEN side-by-side campaign, generated (not checked in) at benchmark start.

Writes, under ``FOLDER`` (default: this script's folder):

* ``confs/POSCAR`` -- fcc Cu, conventional cell (a = 3.615 Å) repeated 2x2x2: 32 atoms; the
  start of every exploration (``sys_configs``).
* ``init/cu32/`` -- DeePMD ``deepmd/npy`` data (``init_data_sys``): that supercell scaled by
  0.98 / 1.00 / 1.02, each perturbed ``count`` times DP-GEN ``init_bulk`` style with dpdata's
  ``System.perturb`` (cell strain up to ±3 %, atoms displaced up to 0.1 Å), labeled with ASE's EMT
  (energy eV, forces eV/Å, virial eV). 3 x 6 = 18 frames, as ``configs/cu_emt.yaml`` builds them.

Usage::

    python benchmarks/vs_dpgen/make_init_data.py [FOLDER] [--seed 7] [--count 6]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

LATTICE_A = 3.615
"""fcc Cu lattice constant (Å)."""
SCALES = (0.98, 1.00, 1.02)


def supercell():
    """fcc Cu, conventional cell repeated 2x2x2 (32 atoms), as an ``ase.Atoms``."""
    from ase.build import bulk

    return bulk("Cu", "fcc", a=LATTICE_A, cubic=True).repeat((2, 2, 2))


def perturbed_frames(count: int = 6, cell_strain: float = 0.03, atom_displacement: float = 0.1,
                     scales=SCALES, seed: int = 7):
    """The scaled and perturbed unlabeled frames (a ``dpdata.System``).

    Args:
        count: perturbed copies per scale.
        cell_strain: largest cell strain (fraction, ±).
        atom_displacement: largest atomic displacement (Å).
        scales: isotropic scale factors of the cell and positions.
        seed: seed of numpy's global generator, which ``dpdata.System.perturb`` draws from.
    """
    import dpdata

    base = dpdata.System(supercell(), fmt="ase/structure")
    np.random.seed(seed)
    frames = None
    for scale in scales:
        scaled = base.copy()
        scaled.data["cells"] = scaled.data["cells"] * scale
        scaled.data["coords"] = scaled.data["coords"] * scale
        pert = scaled.perturb(pert_num=count, cell_pert_fraction=cell_strain,
                              atom_pert_distance=atom_displacement, atom_pert_style="uniform")
        frames = pert if frames is None else frames + pert
    return frames


def label_emt(system):
    """Label every frame of a ``dpdata.System`` with ASE's EMT; return a ``dpdata.LabeledSystem``."""
    import dpdata
    from ase.calculators.emt import EMT
    from ase.calculators.singlepoint import SinglePointCalculator

    labeled = None
    for atoms in system.to("ase/structure"):
        atoms.calc = EMT()
        results = {"energy": atoms.get_potential_energy(), "forces": atoms.get_forces(),
                   "stress": atoms.get_stress()}
        atoms.calc = SinglePointCalculator(atoms, **results)
        frame = dpdata.LabeledSystem(atoms, fmt="ase/structure")
        labeled = frame if labeled is None else labeled + frame
    return labeled


def write_inputs(folder: Path, count: int = 6, seed: int = 7) -> dict:
    """Write ``confs/POSCAR`` and ``init/cu32`` under ``folder``; return their paths and the frame count."""
    import dpdata

    folder = Path(folder)
    confs = folder / "confs"
    confs.mkdir(parents=True, exist_ok=True)
    dpdata.System(supercell(), fmt="ase/structure").to("vasp/poscar", str(confs / "POSCAR"))
    labeled = label_emt(perturbed_frames(count=count, seed=seed))
    init = folder / "init" / "cu32"
    labeled.to("deepmd/npy", str(init), set_size=len(labeled))
    return {"poscar": confs / "POSCAR", "init": init, "frames": len(labeled)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("folder", nargs="?", default=str(Path(__file__).resolve().parent))
    p.add_argument("--seed", type=int, default=7, help="seed of the perturbations")
    p.add_argument("--count", type=int, default=6, help="perturbed frames per scale")
    args = p.parse_args(argv)
    out = write_inputs(Path(args.folder), count=args.count, seed=args.seed)
    print(f"wrote {out['poscar']} and {out['init']} ({out['frames']} EMT-labeled frames)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
