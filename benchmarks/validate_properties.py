#!/usr/bin/env python
"""Does the final model reproduce its own reference? The same MD protocol run twice on the same starting
structure: once with the campaign's final DeePMD model (LAMMPS, ``pair_style deepmd``, the engine of
``firegen properties run``) and once with the reference labeler itself (ASE MD with EMT for
configs/cu_emt.yaml), then density (g/cm³), the RDF (R-factor and integrated |Δg|) and D (cm²/s) side by
side with their error bars.

    .venv/bin/python benchmarks/validate_properties.py                       # runs the cu_emt campaign first
    .venv/bin/python benchmarks/validate_properties.py --model final.pb      # a final model you have
    .venv/bin/python benchmarks/validate_properties.py --temperatures 300,600 --production-ps 20 --repeat 2
    .venv/bin/python benchmarks/validate_properties.py --config configs/cu_emt_npt.yaml   # virial + NPT campaign

Without ``--model`` it runs ``firegen run configs/cu_emt.yaml`` in a temporary folder with its own embedded
database, then ``firegen finalize cu-emt --now`` and ``firegen export model --final`` (about 10 minutes on 2
cores). The campaign explores 300 and 600 K, so those are the default temperatures: a potential is only
expected to reproduce its reference where it was trained.

The reference MD (EMT through ASE, about 20 minutes per temperature on 2 cores) does not depend on the model: its
analysed result is cached in ``--reference-cache`` (default /tmp/firegen-validate-reference), one JSON file per
run, named by a hash of the starting atoms (positions, cell, numbers, pbc), the MD protocol, the analysis settings
and the ASE version. A rerun with another model reads it instead of running EMT again (``--reference-cache ''``
turns the cache off).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = REPO / ".venv" / "bin"


def build_final_model(folder: Path, config: Path) -> Path:
    """Run the campaign, finalize it and export the final model into ``folder``; returns the model file."""
    import yaml

    env = {k: v for k, v in os.environ.items() if k not in ("FIREGEN_MONGO_URI", "FIREGEN_LAUNCHPAD")}
    env["FIREGEN_HOME"] = str(folder / ".firegen")
    name = yaml.safe_load(config.read_text())["name"]
    try:
        for args in (["run", str(config), "--timeout", "3000"], ["finalize", name, "--now"],
                     ["export", "model", "--campaign", name, "--final", "-o", str(folder / "final")]):
            print(f"$ firegen {' '.join(args)}", flush=True)
            out = subprocess.run([str(BIN / "firegen"), *args], cwd=folder, env=env, text=True, capture_output=True)
            if out.returncode != 0:
                raise SystemExit(f"firegen {' '.join(args)} failed:\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}")
            print(out.stdout.rstrip(), flush=True)  # the iterations, labels and held-out RMSE, for the record
    finally:
        subprocess.run([str(BIN / "firegen"), "db", "down"], cwd=folder, env=env, capture_output=True)
    compressed = folder / "final" / "final-compressed.pb"
    return compressed if compressed.is_file() else folder / "final" / "final.pb"


def _plain(value):
    """numpy scalars and arrays as JSON's numbers and lists."""
    import numpy as np

    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def reference_key(atoms, md, settings) -> str:
    """Hash of everything the reference result depends on: the atoms, the MD protocol, the analysis, ASE."""
    import ase
    from dataclasses import asdict

    what = {"engine": "ase-emt", "ase": ase.__version__, "numbers": atoms.numbers.tolist(),
            "positions": atoms.positions.tolist(), "cell": atoms.cell.array.tolist(), "pbc": atoms.pbc.tolist(),
            "md": asdict(md), "analysis": asdict(settings)}
    return hashlib.sha256(json.dumps(what, sort_keys=True, default=_plain).encode()).hexdigest()[:20]


def reference_result(atoms, md, settings, cache: Path | None) -> tuple[dict, float]:
    """The EMT reference run at ``md``'s temperature, analysed: ``(analysis, MD wall time s)``, from ``cache``
    when a run with the same key is stored there, else run (and stored)."""
    from ase.calculators.emt import EMT

    from firegen.workflows.steps.properties_analysis import analyse_trajectory
    from firegen.workflows.steps.properties_md import run_property_ase

    path = cache / f"emt-{md.temperature_K:g}K-{reference_key(atoms, md, settings)}.json" if cache else None
    if path is not None and path.is_file():
        stored = json.loads(path.read_text())
        print(f"reference {md.temperature_K:g} K: cached {path} (its MD took {stored['wall_time_s']:.0f} s)",
              flush=True)
        return stored["analysis"], stored["wall_time_s"]
    run = run_property_ase(atoms, EMT(), md, engine="ase-emt")
    analysis = analyse_trajectory(run.frames, run.dt_ps, md.temperature_K, settings)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"analysis": analysis, "wall_time_s": run.wall_time}, default=_plain))
        tmp.replace(path)
        print(f"reference {md.temperature_K:g} K: stored in {path}", flush=True)
    return json.loads(json.dumps(analysis, default=_plain)), run.wall_time


def _fmt(value: float, error: float) -> str:
    return f"{value:.4g} ± {error:.2g}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="final model file (default: build it from --config)")
    parser.add_argument("--config", type=Path, default=REPO / "configs" / "cu_emt.yaml")
    parser.add_argument("--system", default=None, help="system of the config (default: its first)")
    parser.add_argument("--repeat", type=int, default=2, help="supercell of the system for the MD (each axis)")
    parser.add_argument("--temperatures", default="300,600", help="K, comma-separated")
    parser.add_argument("--pressure", type=float, default=1.0, help="bar")
    parser.add_argument("--dt", type=float, default=2.0, help="fs")
    parser.add_argument("--equilibration-ps", type=float, default=5.0)
    parser.add_argument("--production-ps", type=float, default=20.0)
    parser.add_argument("--sample-fs", type=float, default=20.0)
    parser.add_argument("--lmp", default=str(BIN / "lmp") if (BIN / "lmp").is_file() else "lmp",
                        help="LAMMPS with the deepmd plugin (default: the venv's, which firegen's set-up installs)")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="keep the campaign, final model and MD here (default: a temporary folder)")
    parser.add_argument("--reference-cache", default="/tmp/firegen-validate-reference",
                        help="folder of the cached EMT reference results ('' : no cache)")
    args = parser.parse_args(argv)

    sys.path.insert(0, str(REPO.parent))
    from firegen.campaign.config import load_config
    from firegen.workflows.steps.properties_analysis import AnalysisSettings, analyse_trajectory
    from firegen.workflows.steps.properties_md import PropertyMD, run_property_lammps, write_property_lammps
    from firegen.workflows.steps.properties_structure import rdf_difference

    cfg = load_config(args.config)
    cache = Path(args.reference_cache) if args.reference_cache else None
    if cfg.labeler.kind != "emt":
        raise SystemExit(f"{args.config}: this benchmark's reference engine is EMT; the labeler is {cfg.labeler.kind}")
    with tempfile.TemporaryDirectory(prefix="firegen-validate-") as tmp:
        folder = args.workdir.resolve() if args.workdir else Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        model = args.model.resolve() if args.model else build_final_model(folder, args.config.resolve())
        system = args.system or cfg.systems[0].name
        atoms = cfg.system_atoms(system).repeat(args.repeat)
        print(f"model {model}; {system} x{args.repeat}: {len(atoms)} atoms; {args.equilibration_ps:g} ps "
              f"equilibration + {args.production_ps:g} ps NPT at {args.pressure:g} bar, dt {args.dt:g} fs", flush=True)
        settings = AnalysisSettings(rdf_nbins=100)
        rows = []
        for t in [float(x) for x in args.temperatures.split(",")]:
            md = PropertyMD(temperature_K=t, pressure_bar=args.pressure, dt_fs=args.dt,
                            equilibration_ps=args.equilibration_ps, production_ps=args.production_ps,
                            sample_fs=args.sample_fs, seed=12345)
            write_property_lammps(folder / f"md-{t:g}", atoms, cfg.type_map, model, md, cfg.masses())
            dp_run = run_property_lammps(folder / f"md-{t:g}", args.lmp)
            dp = analyse_trajectory(dp_run.frames, dp_run.dt_ps, t, settings)
            ref, ref_s = reference_result(atoms, md, settings, cache)
            diff = rdf_difference(dp["rdf"]["r_A"], dp["rdf"]["total"], ref["rdf"]["total"])
            rows.append((t, dp, ref, diff, dp_run.wall_time, ref_s))
    print(f"\n{'T K':>6} {'density DP g/cm³':>22} {'density EMT g/cm³':>22} {'Δρ %':>7} {'RDF R':>7} "
          f"{'∫|Δg| Å':>8} {'D DP cm²/s':>22} {'D EMT cm²/s':>22} {'MD s DP/EMT':>12}")
    for t, dp, ref, diff, dp_s, ref_s in rows:
        d1, d2 = dp["density"], ref["density"]
        species = next(iter(dp["diffusion"]))
        x1, x2 = dp["diffusion"][species], ref["diffusion"][species]
        print(f"{t:>6g} {_fmt(d1['density_g_cm3'], d1['error_g_cm3']):>22} {_fmt(d2['density_g_cm3'], d2['error_g_cm3']):>22} "
              f"{100 * (d1['density_g_cm3'] / d2['density_g_cm3'] - 1):>7.2f} {diff['r_factor']:>7.3f} "
              f"{diff['integrated_abs_difference_A']:>8.3f} {_fmt(x1['D_cm2_s'], x1['error_cm2_s']):>22} "
              f"{_fmt(x2['D_cm2_s'], x2['error_cm2_s']):>22} {dp_s:>6.0f}/{ref_s:<5.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
