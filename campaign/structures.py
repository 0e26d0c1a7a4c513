"""Reading and preparing starting structures with ase, pymatgen and dpdata (no hand parsers).

Lengths are in Å throughout. Every function returns plain `ase.Atoms` (symbols, positions,
cell, pbc=True) with no calculator, constraints or per-atom extras attached.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from ase import Atoms


#: Most atoms in one system (a structure file, or one built from it or packed: supercell and defects
#: included), checked before anything is built: DeePMD training and DFT labels of larger cells are out of
#: reach, and a mistyped supercell ([1000000, 1, 1]) would otherwise fill the memory.
MAX_ATOMS = 100_000
#: Two atoms of a starting structure closer than this (Å) are one site written twice (or a broken file):
#: the shortest real bond, H–H in H2, is 0.74 Å.
MIN_SITE_DISTANCE = 0.5


class StructureError(ValueError):
    """A structure file that reads but cannot start a campaign; ``fix`` says what to change."""

    def __init__(self, msg: str, fix: str):
        self.msg, self.fix = msg, fix
        super().__init__(f"{msg}. Fix: {fix}")


def check_structure(atoms: Atoms, name: str) -> None:
    """Raise :class:`StructureError` for a structure (read from file `name`) with more than
    :data:`MAX_ATOMS` atoms, coordinates or a cell that are not finite numbers, or two atoms closer
    than :data:`MIN_SITE_DISTANCE` Å (periodic images included)."""
    if len(atoms) > MAX_ATOMS:
        raise StructureError(f"{name} has {len(atoms)} atoms, more than firegen's {MAX_ATOMS:,}",
                             "start from a smaller cell (the supercell is made from it)")
    positions, cell = np.asarray(atoms.get_positions()), np.asarray(atoms.get_cell())
    if not (np.isfinite(positions).all() and np.isfinite(cell).all()):
        rows = np.flatnonzero(~np.isfinite(positions).all(axis=1))
        where = f"atom {rows[0] + 1}'s coordinates" if len(rows) else "the cell"
        raise StructureError(f"{name}: {where} are not finite numbers (NaN or infinity)",
                             "write real coordinates and lattice vectors in Å")
    if atoms.cell.rank < 3 or abs(atoms.get_volume()) < 1e-6:
        raise StructureError(f"{name} has no periodic cell", "give a file with lattice vectors")
    from ase.neighborlist import neighbor_list

    i, j, d = neighbor_list("ijd", atoms, MIN_SITE_DISTANCE, self_interaction=False)
    if len(d):
        k = int(np.argmin(d))
        raise StructureError(f"{name}: atoms {i[k] + 1} and {j[k] + 1} are {d[k]:.3f} Å apart (closer than "
                             f"{MIN_SITE_DISTANCE} Å: one site written twice?)",
                             "remove the duplicate atom or correct its coordinates")


def _plain(atoms: Atoms) -> Atoms:
    """A clean periodic copy: symbols, positions (Å) and cell (Å) only (float noise below
    1e-10 Å in the cell, e.g. from cell parameters → vectors, set to zero)."""
    cell = np.array(atoms.get_cell())
    cell[np.abs(cell) < 1e-10] = 0.0
    return Atoms(symbols=atoms.get_chemical_symbols(), positions=atoms.get_positions(),
                 cell=cell, pbc=True)


def read_structure(path: str | Path, fmt: str | None = None, index: int = 0) -> Atoms:
    """Read one periodic structure (frame `index`) from POSCAR, CIF, extxyz or any ase format.

    fmt: None guesses from the file name (ase's rules; ``*.cif`` goes through pymatgen);
    an ase format name ("vasp", "cif", "extxyz", ...); "pymatgen" (any file pymatgen's
    ``Structure.from_file`` reads); or "dpdata:<fmt>" (e.g. "dpdata:vasp/poscar").
    Raises FileNotFoundError, or ValueError for a disordered CIF or a structure without a cell;
    :class:`StructureError` (a ValueError) for one that :func:`check_structure` refuses.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such structure file: {path}")
    if fmt and fmt.startswith("dpdata:"):
        import dpdata

        atoms = dpdata.System(str(path), fmt=fmt.split(":", 1)[1]).to_ase_structure()[index]
    elif fmt == "pymatgen" or (fmt in (None, "cif") and path.suffix.lower() == ".cif"):
        from pymatgen.core import Structure
        from pymatgen.io.ase import AseAtomsAdaptor

        structure = Structure.from_file(str(path), primitive=False)
        if not structure.is_ordered:
            raise ValueError(f"{path.name} has partial occupancies; order it first "
                             "(e.g. pymatgen's OrderDisorderedStructureTransformation)")
        atoms = AseAtomsAdaptor.get_atoms(structure)
    else:
        import ase.io

        atoms = ase.io.read(str(path), index=index, format=fmt)
    if len(atoms) == 0:
        raise ValueError(f"{path.name} contains no atoms")
    check_structure(atoms, path.name)
    return _plain(atoms)


def make_supercell(atoms: Atoms, supercell: int | Sequence[int] | Sequence[Sequence[int]]) -> Atoms:
    """Repeat `atoms`: an int n (n×n×n), [a, b, c] repetitions, or a 3×3 integer matrix.

    [a, b, c] uses ase's `repeat` (atom order: all atoms of the first image, then the next);
    a matrix uses `ase.build.make_supercell` (new cell = matrix @ old cell).
    """
    arr = np.asarray(supercell, dtype=int)
    if arr.ndim == 0:
        arr = np.full(3, int(arr))
    if arr.shape == (3,):
        if (arr < 1).any():
            raise ValueError(f"supercell repetitions must be >= 1, got {arr.tolist()}")
        return _plain(atoms.repeat(tuple(int(x) for x in arr)))
    if arr.shape == (3, 3):
        from ase.build import make_supercell as ase_make_supercell

        if round(abs(np.linalg.det(arr))) < 1:
            raise ValueError(f"supercell matrix is singular: {arr.tolist()}")
        return _plain(ase_make_supercell(atoms, arr))
    raise ValueError(f"supercell must be an int, [a, b, c] or a 3x3 matrix, got {supercell!r}")


def scaled(atoms: Atoms, scale: float) -> Atoms:
    """A copy whose cell vectors (and atom positions) are multiplied by `scale` (volume × s³)."""
    out = _plain(atoms)
    out.set_cell(np.array(atoms.get_cell()) * scale, scale_atoms=True)
    return out


def perturbed_copies(atoms: Atoms, count: int, atom_displacement: float = 0.01,
                     cell_strain: float = 0.03, scales: Sequence[float] = (1.0,),
                     seed: int = 0, atom_style: str = "uniform",
                     include_unperturbed: bool = False) -> list[Atoms]:
    """DP-GEN init_bulk style starting frames: for each scale, `count` perturbed copies.

    Each scale s multiplies the cell and positions by s; then dpdata's ``System.perturb``
    deforms the cell by a random symmetric strain (diagonal in [-cell_strain, cell_strain),
    off-diagonal half that; a fraction) and displaces every atom by at most
    `atom_displacement` Å ('uniform' or 'const' style; 'normal' has that mean scale but no
    bound). dpdata rotates each cell to lower-triangular form; atoms are wrapped into the cell.
    Returns len(scales) * (count + include_unperturbed) structures, scale by scale, with the
    unperturbed scaled structure first in its group when asked for. `seed` makes it
    reproducible (numpy's global random state is restored afterwards).
    """
    import dpdata

    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    type_map = list(dict.fromkeys(atoms.get_chemical_symbols()))
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        out: list[Atoms] = []
        for s in scales:
            base = scaled(atoms, s)
            if include_unperturbed:
                out.append(base)
            if count == 0:
                continue
            system = dpdata.System(base, fmt="ase/structure", type_map=type_map)
            perturbed = system.perturb(pert_num=count, cell_pert_fraction=cell_strain,
                                       atom_pert_distance=atom_displacement,
                                       atom_pert_style=atom_style)
            for frame in perturbed.to_ase_structure():
                frame = _plain(frame)
                frame.wrap()
                out.append(frame)
        return out
    finally:
        np.random.set_state(state)
