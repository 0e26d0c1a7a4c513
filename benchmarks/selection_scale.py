#!/usr/bin/env python
"""Candidate selection over 10^6 explored frames with firegen's own functions: seconds per phase.

Writes ``--files`` (default 100) ``model_devi.out`` files in deepmd-kit's LAMMPS format (``#
step max_devi_v min_devi_v avg_devi_v max_devi_f min_devi_f avg_devi_f``, ``%12d`` then
``%19.6e`` columns, a frame every 10 steps), ``--frames`` rows in all (default 1,000,000: e.g.
100 trajectories of 10^4 frames, one large DP-GEN iteration). Max force deviations are
log-normal around 0.08 eV/Å (about 78 % accurate, 19 % candidates, 3 % failed at the default
trust levels 0.15 / 0.35 eV/Å); virial deviations likewise. Then it times, in this process:

1. ``parse`` -- :func:`firegen.workflows.steps.md.parse_model_devi` on every file;
2. ``concatenate`` -- the per-file columns into one array each, plus a (file, frame) index;
3. ``classify (f)`` -- :func:`select.classify` on the force deviation; ``classify (f+v)`` with
   virial levels too (rule ``dpgen2``);
4. ``counts`` -- :func:`select.counts` and :func:`select.ratios`;
5. ``candidates`` -- :func:`select.candidate_indices`;
6. ``pick random`` / ``pick weighted`` -- :func:`select.select_candidates` of ``--max-n`` (default
   300) among the candidates' global frame ids, uniformly and weighted by deviation;
7. ``adaptive trust lo`` -- :func:`select.adaptive_trust_lo` (DP-GEN's adaptive lower level),
   when that function exists.

The target for phases 1-6 together is < 5 s. ``--profile`` prints cProfile's top functions of
the slowest phase. File writing is not timed (its seconds are printed).

Usage (from the repository root)::

    .venv/bin/python benchmarks/selection_scale.py
    .venv/bin/python benchmarks/selection_scale.py --frames 100000 --files 10 --profile
"""

from __future__ import annotations

import cProfile
import io
import pstats
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _bench  # noqa: E402

HEADER = ("#       step         max_devi_v         min_devi_v         avg_devi_v         max_devi_f"
          "         min_devi_f         avg_devi_f")
FMT = "%12d" + " %18.6e" * 6


def write_model_devi(folder: Path, n_frames: int, n_files: int, seed: int = 0, trj_freq: int = 10) -> list[Path]:
    """``n_files`` files ``task.XXXX/model_devi.out`` with ``n_frames`` rows in all; returns their paths."""
    rng = np.random.default_rng(seed)
    sizes = np.full(n_files, n_frames // n_files)
    sizes[: n_frames % n_files] += 1
    paths = []
    for k, size in enumerate(sizes):
        f_max = rng.lognormal(np.log(0.08), 0.8, size)
        v_max = rng.lognormal(np.log(0.05), 0.8, size)
        cols = [np.arange(size) * trj_freq, v_max, v_max * rng.uniform(0, 0.2, size), v_max * rng.uniform(0.3, 0.7, size),
                f_max, f_max * rng.uniform(0, 0.2, size), f_max * rng.uniform(0.3, 0.7, size)]
        path = folder / f"task.{k:04d}" / "model_devi.out"
        path.parent.mkdir(parents=True)
        np.savetxt(path, np.column_stack(cols), fmt=FMT, header=HEADER[2:], comments="# ")
        paths.append(path)
    return paths


class Phases:
    """Times named phases (seconds, ``time.perf_counter``), optionally under cProfile."""

    def __init__(self, profile: bool):
        self.seconds: dict[str, float] = {}
        self.profiles: dict[str, cProfile.Profile] = {}
        self.profile = profile

    def run(self, name: str, fn, *args, **kwargs):
        prof = cProfile.Profile() if self.profile else None
        t = time.perf_counter()
        if prof:
            prof.enable()
        out = fn(*args, **kwargs)
        if prof:
            prof.disable()
            self.profiles[name] = prof
        self.seconds[name] = time.perf_counter() - t
        return out


def run(paths: list[Path], f_lo: float, f_hi: float, max_n: int, profile: bool) -> tuple[Phases, dict]:
    from firegen.workflows.steps import select
    from firegen.workflows.steps.md import parse_model_devi

    ph = Phases(profile)
    parsed = ph.run("parse", lambda: [parse_model_devi(p) for p in paths])

    def concatenate():
        f = np.concatenate([d["max_devi_f"] for d in parsed])
        v = np.concatenate([d["max_devi_v"] for d in parsed])
        file_of = np.repeat(np.arange(len(parsed)), [len(d["steps"]) for d in parsed])
        frame_of = np.concatenate([np.arange(len(d["steps"])) for d in parsed])
        return f, v, file_of, frame_of

    f, v, file_of, frame_of = ph.run("concatenate", concatenate)
    codes = ph.run("classify (f)", select.classify, f, f_lo, f_hi)
    ph.run("classify (f+v)", select.classify, f, f_lo, f_hi, v, 0.1, 0.3)
    counts = ph.run("counts", lambda: (select.counts(codes), select.ratios(codes)))[0]
    cand = ph.run("candidates", select.candidate_indices, codes)
    seed = select.seed_from("selection-scale", 0)
    picked = ph.run("pick random", select.select_candidates, cand, max_n, seed)
    ph.run("pick weighted", select.select_candidates, cand, max_n, seed, weights=f[cand])
    if hasattr(select, "adaptive_trust_lo"):
        ph.run("adaptive trust lo", select.adaptive_trust_lo, f, f_hi, 0, 5.0)
    origin = [(int(file_of[i]), int(frame_of[i])) for i in picked[:3]]
    return ph, {"counts": counts, "picked": len(picked), "first picked (file, frame)": origin}


def main(argv=None) -> int:
    p = _bench.arg_parser(__doc__)
    p.add_argument("--frames", type=int, default=1_000_000, help="rows over all files (default 10^6)")
    p.add_argument("--files", type=int, default=100, help="model_devi.out files (trajectories), default 100")
    p.add_argument("--max-n", type=int, default=300, help="labels per iteration (the cap), default 300")
    p.add_argument("--f-lo", type=float, default=0.15, help="lower force trust level (eV/Å)")
    p.add_argument("--f-hi", type=float, default=0.35, help="upper force trust level (eV/Å)")
    p.add_argument("--seed", type=int, default=0, help="seed of the synthetic deviations")
    p.add_argument("--profile", action="store_true", help="cProfile every phase; print the slowest one's top calls")
    p.add_argument("--keep", action="store_true", help="keep the generated files")
    args = p.parse_args(argv)
    if args.frames < args.files or args.files < 1:
        p.error("need --files >= 1 and --frames >= --files")

    folder = Path(tempfile.mkdtemp(prefix="firegen-selection-"))
    try:
        t = time.perf_counter()
        paths = write_model_devi(folder, args.frames, args.files, args.seed)
        size = sum(p.stat().st_size for p in paths) / 2**20
        print(f"wrote {args.frames:,} frames in {len(paths)} model_devi.out files ({size:.0f} MiB) "
              f"in {time.perf_counter() - t:.1f} s (not timed below)", flush=True)
        ph, info = run(paths, args.f_lo, args.f_hi, args.max_n, args.profile)
    finally:
        if args.keep:
            print(f"kept {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)

    target = ["parse", "concatenate", "classify (f)", "counts", "candidates", "pick random"]
    rows = [{"phase": k, "seconds": s, "per 10^6 frames s": s * 1e6 / args.frames} for k, s in ph.seconds.items()]
    total = sum(ph.seconds[k] for k in target)
    rows.append({"phase": "total (parse..pick random)", "seconds": total, "per 10^6 frames s": total * 1e6 / args.frames})
    print()
    print(_bench.render(rows, ["phase", "seconds", "per 10^6 frames s"], digits=3))
    c = info["counts"]
    print(f"\n{c['total']:,} frames: {c['accurate']:,} accurate, {c['candidate']:,} candidates, {c['failed']:,} "
          f"failed; picked {info['picked']} (first {info['first picked (file, frame)']}); "
          f"target < 5 s: {'met' if total < 5 else 'NOT met'} ({total:.2f} s)")
    if args.profile:
        slowest = max(ph.profiles, key=lambda k: ph.seconds[k])
        out = io.StringIO()
        pstats.Stats(ph.profiles[slowest], stream=out).sort_stats("cumulative").print_stats(15)
        print(f"\ncProfile of the slowest phase, {slowest!r}:\n{out.getvalue()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
