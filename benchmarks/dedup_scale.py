#!/usr/bin/env python
"""Deduplication and diverse selection at campaign scale: 10^5 stored fingerprints, one iteration's candidates.

Builds ``--stored`` fingerprints (default 100,000) in the space of a three-element campaign (Na, O, Cl:
averaged SOAP, 312 floats) from rattled copies of the 40-atom Na3OCl cell, spread over a few thousand
distinct structures and then jittered, so that they look like a campaign's labeled frames; then times,
for ``--candidates`` candidates (default 2,000) and a cap of ``--cap`` (default 300):

* making the candidates' fingerprints (dscribe),
* loading the stored fingerprints into the faiss index (what a select does once per worker),
* the nearest stored neighbour of every candidate (faiss, exact L2),
* :func:`~firegen.workflows.steps.fingerprint.deduplicate` given those (the within-batch check),
* :func:`~firegen.workflows.steps.fingerprint.farthest_point_indices` (the diverse pick),
* :func:`~firegen.workflows.steps.fingerprint.representative_indices` (the kmeans pick).

Usage (from the repository root)::

    .venv/bin/python benchmarks/dedup_scale.py
    .venv/bin/python benchmarks/dedup_scale.py --stored 20000 --candidates 500
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT.parent))

from firegen.workflows.steps import fingerprint as fp  # noqa: E402

SPECIES = ["Na", "O", "Cl"]


def frames(n: int, seed: int) -> list:
    from pymatgen.core import Structure
    from pymatgen.io.ase import AseAtomsAdaptor

    s = Structure.from_file(str(ROOT / "configs" / "structures" / "Na3OCl.cif"))
    s.make_supercell([2, 2, 2])
    base = AseAtomsAdaptor.get_atoms(s)
    out = []
    for k in range(n):
        a = base.copy()
        a.rattle(0.15, seed=seed + k)
        out.append(a)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--stored", type=int, default=100_000)
    p.add_argument("--candidates", type=int, default=2_000)
    p.add_argument("--cap", type=int, default=300)
    p.add_argument("--tolerance", type=float, default=2.0e-5)
    args = p.parse_args(argv)
    rng = np.random.default_rng(0)

    distinct = fp.fingerprints(frames(2_000, seed=10_000), SPECIES)
    spread = np.std(distinct, axis=0)
    stored = distinct[rng.integers(0, len(distinct), args.stored)]
    stored = stored + (rng.standard_normal(stored.shape) * spread * 0.2).astype(np.float32)
    stored /= np.linalg.norm(stored, axis=1, keepdims=True)

    t = time.perf_counter()
    cand = fp.fingerprints(frames(args.candidates, seed=0), SPECIES)
    t_fp = time.perf_counter() - t
    t = time.perf_counter()
    index = fp.FingerprintIndex(stored.shape[1])
    index.add(stored, list(range(len(stored))))
    t_index = time.perf_counter() - t
    dev = rng.uniform(0.15, 0.35, len(cand))
    t = time.perf_counter()
    nearest = index.nearest(cand)
    t_search = time.perf_counter() - t
    t = time.perf_counter()
    kept, dups = fp.deduplicate(cand, args.tolerance, index, order=np.argsort(-dev), nearest=nearest)
    t_dedup = time.perf_counter() - t
    t = time.perf_counter()
    picked = fp.farthest_point_indices(cand[kept], args.cap, weights=dev[kept], stored_distance=nearest[0][kept])
    t_fps = time.perf_counter() - t
    t = time.perf_counter()
    medoids = fp.representative_indices(cand[kept], args.cap, weights=dev[kept], seed=0)
    t_kmeans = time.perf_counter() - t
    mb = stored.nbytes / 2**20
    print(f"stored fingerprints: {len(stored):,} x {stored.shape[1]} float32 ({mb:.0f} MB); "
          f"candidates: {len(cand):,}; cap {args.cap}; tolerance {args.tolerance:g}")
    print(f"{'step':<44} {'seconds':>8}")
    print(f"{'candidate fingerprints (dscribe SOAP)':<44} {t_fp:8.2f}  ({1000 * t_fp / len(cand):.2f} ms each)")
    print(f"{'load the stored ones into the faiss index':<44} {t_index:8.2f}")
    print(f"{'nearest stored fingerprint (faiss, exact)':<44} {t_search:8.2f}")
    print(f"{'deduplicate (within the batch, faiss range)':<44} {t_dedup:8.2f}  ({len(dups)} duplicates)")
    print(f"{'diverse pick (farthest-point, with stored)':<44} {t_fps:8.2f}  ({len(picked)} picked)")
    print(f"{'kmeans pick (k-means++, faiss Lloyd, medoids)':<44} {t_kmeans:8.2f}  ({len(medoids)} picked)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
