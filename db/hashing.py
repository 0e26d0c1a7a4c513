"""Content hashes: configurations and datasets are keyed by what they contain.

A configuration's hash covers species, cell and positions. Positions are wrapped into the cell
(periodic directions), atoms are put in a canonical order (by species, then rounded Cartesian
position), and cell and positions are rounded to :data:`LENGTH_TOLERANCE` (1e-4 Å) before hashing,
so the same structure is stored once whatever the atom order or the image of an atom. Two
structures closer than the tolerance may still hash apart when a coordinate straddles a rounding
boundary; that costs one duplicate document, never a lost one.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence

import numpy as np

LENGTH_TOLERANCE = 1e-4
"""Rounding applied to cell vectors and Cartesian positions before hashing (Å)."""


def structure_hash(species: Sequence[str], cell, positions, pbc=(True, True, True),
                   tolerance: float = LENGTH_TOLERANCE) -> str:
    """sha256 hex digest of a structure; invariant to atom order and periodic images."""
    cell = np.asarray(cell, dtype=float).reshape(3, 3)
    pos = np.asarray(positions, dtype=float).reshape(-1, 3)
    species = np.asarray(species, dtype=str)
    if len(species) != len(pos):
        raise ValueError(f"{len(species)} species for {len(pos)} positions")
    pbc = np.asarray(pbc, dtype=bool)
    if pbc.any():
        frac = np.linalg.solve(cell.T, pos.T).T
        # wrap periodic coordinates into [0, 1); rounding first makes 0.9999999 and 0.0 one site
        frac[:, pbc] = np.mod(np.round(frac[:, pbc], 7), 1.0)
        pos = frac @ cell
    ipos = np.round(pos / tolerance).astype(np.int64)
    icell = np.round(cell / tolerance).astype(np.int64)
    order = np.lexsort((ipos[:, 2], ipos[:, 1], ipos[:, 0], species))
    digest = hashlib.sha256()
    digest.update(json.dumps([species[order].tolist(), pbc.tolist()]).encode())
    digest.update(icell.tobytes())
    digest.update(ipos[order].tobytes())
    return digest.hexdigest()


def atoms_hash(atoms) -> str:
    """:func:`structure_hash` of an ``ase.Atoms``."""
    return structure_hash(atoms.get_chemical_symbols(), atoms.cell.array, atoms.positions, atoms.pbc)


def derived_id(*parts: str):
    """An ``_id`` derived from ``parts``: the first 12 bytes of sha256 of the parts joined by NUL, as
    an ObjectId. A writer knows it without asking the database, and the embedded FerretDB answers
    look-ups by ``_id`` from an index (its only indexed filter)."""
    from bson import ObjectId

    return ObjectId(hashlib.sha256("\0".join(parts).encode()).digest()[:12])


def configuration_id(campaign: str, digest: str):
    """The ``_id`` of ``campaign``'s configuration of content hash ``digest`` (:func:`derived_id`)."""
    return derived_id(campaign, digest)


def dataset_hash(configuration_hashes: Iterable[str]) -> str:
    """Order-independent hash of a set of configurations (by their content hashes)."""
    return hashlib.sha256("\n".join(sorted(set(configuration_hashes))).encode()).hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
