"""Re-scoring: a committee's maximum force deviation on given structures (deepmd-kit's own model deviation).

Pure step: frozen model files and ``ase.Atoms`` in, eV/Å out. The same quantity LAMMPS writes as
``max_devi_f`` in ``model_devi.out`` during exploration (deepmd-kit's
:func:`~deepmd.infer.model_devi.calc_model_devi`), so a re-scored configuration compares to the trust
levels exactly as an explored one does.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

__all__ = ["max_force_deviation"]


def max_force_deviation(model_paths: Sequence[Path], structures: Sequence) -> np.ndarray:
    """Max over atoms of the committee's force standard deviation (eV/Å), one value per structure.

    Raises:
        ValueError: fewer than 2 models, or a species the models do not know.
    """
    from deepmd.infer import DeepPot
    from deepmd.infer.model_devi import calc_model_devi

    if len(model_paths) < 2:
        raise ValueError(f"re-scoring needs a committee of 2 or more models, got {len(model_paths)}")
    dps = [DeepPot(str(p)) for p in model_paths]
    type_map = list(dps[0].get_type_map())
    out = np.empty(len(structures))
    for k, atoms in enumerate(structures):
        unknown = sorted(set(atoms.get_chemical_symbols()) - set(type_map))
        if unknown:
            raise ValueError(f"species {unknown} are not in the models' type map {type_map}")
        atype = np.array([type_map.index(s) for s in atoms.get_chemical_symbols()], dtype=np.int64)
        cell = np.asarray(atoms.cell[:], dtype=float).reshape(1, -1) if atoms.pbc.all() else None
        devi = calc_model_devi(np.asarray(atoms.positions, dtype=float).reshape(1, -1), cell, atype, dps)
        out[k] = devi[0, 4]  # columns: step, max/min/avg virial deviation, max/min/avg force deviation
    return out
