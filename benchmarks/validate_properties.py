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
    .venv/bin/python benchmarks/validate_properties.py --config configs/cu_emt_melt.yaml \
        --temperatures 1600,2000 --melt-K 2500       # liquid copper: melted first, then D compares something

Without ``--model`` it runs ``firegen run configs/cu_emt.yaml`` in a temporary folder with its own embedded
database, then ``firegen finalize cu-emt --now`` and ``firegen export model --final`` (about 10 minutes on 2
cores). The campaign explores 300 and 600 K, so those are the default temperatures: a potential is only
expected to reproduce its reference where it was trained.

The reference MD (EMT through ASE, about 20 minutes per temperature on 2 cores) does not depend on the model: its
analysed result is cached in ``--reference-cache`` (default /tmp/firegen-validate-reference), one JSON file per
run, named by a hash of the starting atoms (positions, cell, numbers, pbc), the MD protocol, the analysis settings
and the ASE version. A rerun with another model reads it instead of running EMT again (``--reference-cache ''``
turns the cache off).

A liquid (``--melt-K``): the starting crystal is first melted with the reference itself (ASE EMT, NPT at
``--melt-K`` and ``--pressure`` for ``--melt-ps``, seed 12345; cached too, as an extxyz keyed by the crystal and
that protocol), and both engines start from that same melt: each then equilibrates at the validation temperature
and samples. Whether each run was liquid is read off its MSD: D is printed only where it is ``diffusive`` (D above
3 block errors and the MSD's log-log slope over the fit window within 0.5-1.5, ``properties_transport``), else
"not diffusive" with that slope, which is the case of a crystal (its MSD is a plateau; the slope of a line through
it is no D). D's error is the standard error of D fitted on each of the independent consecutive blocks of the
production run (every time origin within a block); the output says how many blocks and which lags. With two or
more temperatures where both engines are diffusive, an Arrhenius fit of D gives each engine's activation energy.
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


def melted_start(atoms, melt_K: float, melt_ps: float, dt_fs: float, pressure_bar: float, cache: Path | None):
    """``atoms`` melted with the reference (ASE EMT, NPT at ``melt_K`` and ``pressure_bar`` for ``melt_ps``, seed
    12345), wrapped: the common start of both engines' liquid runs. Cached as extxyz in ``cache`` (keyed by the
    crystal, that protocol and the ASE version), so that the reference runs' cache keys (which hash the start) hold."""
    import ase
    from ase.calculators.emt import EMT
    from ase.io import read, write

    from firegen.workflows.steps.properties_md import PropertyMD, run_property_ase

    md = PropertyMD(temperature_K=melt_K, pressure_bar=pressure_bar, dt_fs=dt_fs, equilibration_ps=melt_ps,
                    production_ps=dt_fs / 1000.0, sample_fs=dt_fs, seed=12345)
    what = {"engine": "ase-emt-melt", "ase": ase.__version__, "numbers": atoms.numbers.tolist(),
            "positions": atoms.positions.tolist(), "cell": atoms.cell.array.tolist(), "md": md.as_dict()}
    key = hashlib.sha256(json.dumps(what, sort_keys=True, default=_plain).encode()).hexdigest()[:20]
    path = cache / f"emt-melt-{melt_K:g}K-{key}.extxyz" if cache else None
    if path is not None and path.is_file():
        print(f"melt {melt_K:g} K: cached {path}", flush=True)
        return read(path)
    run = run_property_ase(atoms, EMT(), md, engine="ase-emt")
    melt = run.frames[-1].copy()
    melt.wrap()
    melt.set_momenta(None)
    print(f"melt {melt_K:g} K, {melt_ps:g} ps (EMT, ASE): {run.wall_time:.0f} s, volume "
          f"{atoms.get_volume():.0f} -> {melt.get_volume():.0f} Å³", flush=True)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.extxyz")
        write(tmp, melt)
        tmp.replace(path)
        return read(path)  # what a rerun reads, to the digit
    return melt


def _fmt(value: float, error: float) -> str:
    return f"{value:.4g} ± {error:.2g}"


def _fmt_D(x: dict) -> str:
    """D ± its block error where the MSD is diffusive; else 'not diffusive' and the MSD's log-log slope."""
    if "diffusive" not in x:  # a reference cached before the flag existed
        return _fmt(x["D_cm2_s"], x["error_cm2_s"]) + " (?)"
    if not x["diffusive"]:
        return f"not diffusive (α {x['msd_exponent']:.2f})"
    return f"{x['D_cm2_s']:.3e} ± {x['error_cm2_s']:.1e}"


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
    parser.add_argument("--melt-K", type=float, default=None,
                        help="melt the start with EMT at this temperature first (K; a liquid's validation)")
    parser.add_argument("--melt-ps", type=float, default=5.0, help="duration of the melt (ps)")
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
        if args.melt_K:
            atoms = melted_start(atoms, args.melt_K, args.melt_ps, args.dt, args.pressure, cache)
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
        if args.workdir:
            (folder / "validate-results.json").write_text(json.dumps(
                [{"temperature_K": t, "dp": dp, "emt": ref, "rdf_difference": diff, "md_s": [dp_s, ref_s]}
                 for t, dp, ref, diff, dp_s, ref_s in rows], default=_plain))
    print(f"\n{'T K':>6} {'density DP g/cm³':>22} {'density EMT g/cm³':>22} {'Δρ %':>7} {'RDF R':>7} "
          f"{'∫|Δg| Å':>8} {'D DP cm²/s':>24} {'D EMT cm²/s':>24} {'α DP/EMT':>10} {'MD s DP/EMT':>12}")
    species = next(iter(rows[0][1]["diffusion"]))
    for t, dp, ref, diff, dp_s, ref_s in rows:
        d1, d2 = dp["density"], ref["density"]
        x1, x2 = dp["diffusion"][species], ref["diffusion"][species]
        alphas = "/".join(f"{x['msd_exponent']:.2f}" if "msd_exponent" in x else "?" for x in (x1, x2))
        print(f"{t:>6g} {_fmt(d1['density_g_cm3'], d1['error_g_cm3']):>22} {_fmt(d2['density_g_cm3'], d2['error_g_cm3']):>22} "
              f"{100 * (d1['density_g_cm3'] / d2['density_g_cm3'] - 1):>7.2f} {diff['r_factor']:>7.3f} "
              f"{diff['integrated_abs_difference_A']:>8.3f} {_fmt_D(x1):>24} {_fmt_D(x2):>24} {alphas:>10} "
              f"{dp_s:>6.0f}/{ref_s:<5.0f}")
    x = rows[0][1]["diffusion"][species]
    print(f"D ({species}): slope / 6 of the MSD (every time origin, centre-of-mass drift removed) over lags "
          f"{x['fit_start_ps']:g}-{x['fit_end_ps']:g} ps; ± is the standard error of D fitted on each of "
          f"{len(x['block_D_cm2_s'])} independent consecutive blocks of the production run. α: the MSD's log-log "
          "slope over those lags (1 diffusive, about 0 a crystal's plateau); 'not diffusive' where D is under 3 "
          "errors or α is outside 0.5-1.5.")
    _arrhenius(rows, species)
    return 0


def _arrhenius(rows, species: str) -> None:
    """Activation energy of D for each engine, where both are diffusive at two temperatures or more."""
    from firegen.workflows.steps.properties_transport import arrhenius_fit

    if len(rows) < 2:
        return
    for name, i in (("DP", 1), ("EMT", 2)):
        xs = [r[i]["diffusion"][species] for r in rows]
        if not all(x.get("diffusive") for x in xs):
            print(f"Arrhenius {name}: not fitted (not diffusive at every temperature)")
            continue
        fit = arrhenius_fit([r[0] for r in rows], [x["D_cm2_s"] for x in xs], [x["error_cm2_s"] for x in xs],
                            times_T=False)
        print(f"Arrhenius {name}: E_a(D) = {fit.activation_energy_eV:.3f} ± {fit.activation_energy_error_eV:.3f} eV "
              f"over {', '.join(f'{r[0]:g}' for r in rows)} K (weighted by the block errors)")


if __name__ == "__main__":
    sys.exit(main())
