#!/usr/bin/env python
"""Label efficiency: held-out error against DFT labels spent, DP-GEN beside firegen, on the same campaign.

The campaign is ``benchmarks/vs_dpgen/``'s (fcc Cu, 32 atoms, EMT labels through DP-GEN's ``custom`` fp
style and firegen's ``command`` labeler, 18 initial frames, a committee of 4 x 400 training steps, 3
iterations of NVT LAMMPS at 300 and 600 K, trust levels 0.15 / 0.35 eV/Å, at most 40 labels per
iteration). Three variants (three more on request), each run ``--seeds`` times in a fresh folder:

* ``dpgen``: ``dpgen run param.json machine.json`` (DP-GEN 0.14; its training seeds and its choice among
  candidates are random in every run);
* ``firegen-random``: ``firegen import-dpgen`` of the same files, i.e. DP-GEN's behaviour (uniform random
  choice, no deduplication, every committee trained from scratch), ``selection.seed`` varied per seed;
* ``firegen``: the same import with firegen's own selection and training: deduplication, diverse
  (farthest-point) selection, and warm-started training (same 400 steps per iteration, restarted at energy/force
  loss prefactors 0.1 / 100: ``--warm-start``), a member of a poor previous model (training force RMSE above
  1.25x its committee's median) started from the best member's descriptor with a fitting net of its own
  (firegen's defaults ``committee.warm_start.poor_above: 1.25``, ``poor_restart: best_descriptor``);
* ``firegen-own`` (only with ``--variants``): ``firegen`` with every member warm-started from its own previous
  model (``poor_above: null``, DP-GEN's way and firegen's default until 2026-12-07);
* ``firegen-warm`` (an ablation, only with ``--variants``): DP-GEN's random choice without deduplication, with
  ``firegen``'s warm start, so that the selection's share of a difference is told from warm start's;
* ``firegen-kmeans`` (only with ``--variants``): ``firegen`` with the k-means pick (``selection.policy:
  kmeans``) in place of farthest-point sampling;
* ``firegen-best`` (only with ``--variants``): ``firegen`` with ``poor_restart: best``: such a member warm-starts
  from the committee's best member whole;
* ``firegen-scratch`` (only with ``--variants``): ``firegen`` with ``poor_restart: scratch``: such a member is
  redrawn from scratch.

Every firegen variant of one seed has the same campaign name (``cu-seed<k>``), hence the same training and MD
seeds (firegen derives them from the name): the variants are paired, their iteration-0 committees identical.

The **held-out set** is built once per output folder, independently of any campaign: ASE Langevin MD with
EMT itself at 300 and 600 K on the 32-atom cell at lattice scales 0.98, 1.00 and 1.02 (strained cells), 20
frames each 20 fs apart after 200 fs, labeled by EMT (``<out>/heldout``, deepmd/npy, 120 frames).

After every iteration the committee's mean prediction is compared with the held-out labels: force RMSE
(eV/Å, per component) and energy RMSE (meV/atom), against the labels the committee was trained on (the
initial 18 included). Printed: per variant the labels needed to reach ``--target-f`` (first committee at or
below it; the first from which on every committee stays at or below it; and where the error crosses it,
linear between two committees; median [min-max] over seeds; by default the target is DP-GEN's median final
error, ``dpgen-final``), the ratio to DP-GEN, the final errors and labels, and where firegen's candidates went
(duplicates removed, candidates over the cap). ``<out>/label_efficiency.png`` plots force RMSE against labels
for every run; ``<out>/results.json`` keeps the curves (``--report-only`` reprints and replots them).

``--numb-steps N`` trains every member of every tool N steps per iteration instead of param.json's 400 (at 400
steps the committees' errors are dominated by training noise; ``benchmarks/README.md``).

Usage (from the repository root; about 45 minutes on 2 idle cores for 3 seeds at 400 steps)::

    .venv/bin/python benchmarks/label_efficiency.py --seeds 3 --out /tmp/label-efficiency
    .venv/bin/python benchmarks/label_efficiency.py --seeds 3 --numb-steps 1600 --out /tmp/le1600
    .venv/bin/python benchmarks/label_efficiency.py --report-only --out /tmp/label-efficiency
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "vs_dpgen"))
sys.path.insert(0, str(HERE))

import _bench  # noqa: E402
from firegen.workflows.steps.evaluate import deviation_and_error  # noqa: E402
import run as vs_dpgen  # noqa: E402  (benchmarks/vs_dpgen/run.py: run folders, DP-GEN and firegen runs)

FIREGEN_SETUPS = {
    "firegen-random": {"policy": "random", "dedup": False, "warm_start": False},
    "firegen-warm": {"policy": "random", "dedup": False, "warm_start": True},
    "firegen": {"policy": "diverse", "dedup": True, "warm_start": True},
    "firegen-kmeans": {"policy": "kmeans", "dedup": True, "warm_start": True},
    "firegen-own": {"policy": "diverse", "dedup": True, "warm_start": True, "poor": {"poor_above": None}},
    "firegen-best": {"policy": "diverse", "dedup": True, "warm_start": True,
                     "poor": {"poor_above": 1.25, "poor_restart": "best"}},
    "firegen-scratch": {"policy": "diverse", "dedup": True, "warm_start": True,
                        "poor": {"poor_above": 1.25, "poor_restart": "scratch"}},
}
"""How each firegen variant selects and trains (``selection.policy``, deduplication on or off, warm start, and
what replaces a poor previous model: ``committee.warm_start.poor_above`` / ``poor_restart``)."""
VARIANTS = ("dpgen", *FIREGEN_SETUPS)
DEFAULT_VARIANTS = ("dpgen", "firegen-random", "firegen")
"""``firegen-warm``, ``firegen-kmeans``, ``firegen-own``, ``firegen-best`` and ``firegen-scratch`` (on request): the
ablation of DP-GEN's random choice with warm start, the k-means pick in place of farthest-point sampling, and
``firegen`` with members of a poor previous model warm-started from their own model all the same, from the
committee's best member whole, or trained from scratch."""
TYPE_MAP = ["Cu"]
PARAM_STEPS = json.loads((HERE / "vs_dpgen" / "param.json").read_text())["default_training_param"]["training"][
    "numb_steps"]


# ----------------------------------------------------------------------------------- held-out set


def build_heldout(folder: Path, temperatures=(300, 600), scales=(0.98, 1.0, 1.02), frames: int = 20,
                  every: int = 20, equilibrate: int = 200, seed: int = 2026) -> Path:
    """EMT MD frames labeled by EMT, written as deepmd/npy (kept: later runs reuse them)."""
    out = folder / "heldout"
    if (out / "type.raw").is_file():
        return out
    import dpdata
    from ase import units
    from ase.build import bulk
    from ase.calculators.emt import EMT
    from ase.md.langevin import Langevin
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution

    systems = None
    rng = np.random.default_rng(seed)
    for temperature in temperatures:
        for scale in scales:
            atoms = bulk("Cu", "fcc", a=3.615 * scale, cubic=True).repeat((2, 2, 2))
            atoms.calc = EMT()
            MaxwellBoltzmannDistribution(atoms, temperature_K=temperature, rng=rng)
            dyn = Langevin(atoms, 1.0 * units.fs, temperature_K=temperature, friction=0.02, rng=rng)
            dyn.run(equilibrate)
            for _ in range(frames):
                dyn.run(every)
                snap = atoms.copy()
                snap.calc = EMT()
                snap.get_potential_energy()
                one = dpdata.LabeledSystem(snap, fmt="ase/structure")
                systems = one if systems is None else systems + one
    systems.to("deepmd/npy", str(out))
    return out


class HeldOut:
    """Held-out frames and a committee's errors on them."""

    def __init__(self, path: Path):
        import dpdata

        data = dpdata.LabeledSystem(str(path), fmt="deepmd/npy")
        self.natoms = data.get_natoms()
        self.coords = data["coords"].reshape(len(data), -1)
        self.cells = data["cells"].reshape(len(data), 9)
        self.types = data["atom_types"]
        self.energies = data["energies"]
        self.forces = data["forces"].reshape(len(data), -1)

    def errors(self, models: list[Path]) -> dict:
        """RMSEs of the committee's mean prediction, force (eV/Å) and energy (meV/atom), and whether its deviation
        still measures its error: ``devi_f``, the mean over frames of DP-GEN's ``max_devi_f``, against
        ``max_err_f``, the mean over frames of the largest atomic force error of the mean prediction (eV/Å)."""
        from deepmd.infer import DeepPot

        e, f = [], []
        for model in models:
            out = DeepPot(str(model)).eval(self.coords, self.cells, self.types)
            e.append(np.asarray(out[0]).reshape(-1))
            f.append(np.asarray(out[1]).reshape(len(self.energies), -1))
        e_mean, f_mean = np.mean(e, axis=0), np.mean(f, axis=0)
        devi, worst = deviation_and_error(np.asarray(f).reshape(len(models), len(self.energies), -1, 3),
                                          self.forces.reshape(len(self.energies), -1, 3))
        return {"rmse_f": float(np.sqrt(np.mean((f_mean - self.forces) ** 2))),
                "rmse_e_mev": float(1000 * np.sqrt(np.mean(((e_mean - self.energies) / self.natoms) ** 2))),
                "devi_f": float(devi.mean()), "max_err_f": float(worst.mean())}


# ----------------------------------------------------------------------------------- committees of a run


def dpgen_committees(folder: Path) -> list[dict]:
    """``{iteration, labels, models}`` per trained DP-GEN iteration (labels: frames in its training data)."""
    import dpdata

    out = []
    for train in sorted(folder.glob("iter.*/00.train")):
        models = sorted(train.glob("00[0-9]/frozen_model.pb"))
        inp = train / "000" / "input.json"
        if not models or not inp.is_file():
            continue
        systems = json.loads(inp.read_text())["training"]["training_data"]["systems"]
        labels = sum(len(dpdata.LabeledSystem(str((train / "000" / s).resolve()), fmt="deepmd/npy")) for s in systems)
        out.append({"iteration": int(train.parent.name.split(".")[1]), "labels": labels, "models": models})
    return out


def firegen_committees(folder: Path, campaign: str) -> list[dict]:
    """``{iteration, labels, models}`` per firegen iteration (labels: its dataset snapshot), models from GridFS."""
    import pymongo

    client = pymongo.MongoClient(vs_dpgen._server_uri(folder), serverSelectionTimeoutMS=10000)
    db = client["firegen"]
    committees = download_committees(db, campaign, folder / "models")
    where = {"duplicates": 0, "candidates": 0, "selected": 0}
    for it in db.iterations.find({"campaign": campaign}, {"duplicates": 1, "counts": 1, "selected": 1}):
        where["duplicates"] += int(it.get("duplicates") or 0)
        where["candidates"] += int((it.get("counts") or {}).get("candidate") or 0)
        where["selected"] += int(it.get("selected") or 0)
    client.close()
    return committees, where


def download_committees(db, campaign: str, folder: Path) -> list[dict]:
    """``{iteration, labels, models}`` per iteration of a firegen campaign (labels: its dataset snapshot's size),
    the frozen models downloaded from GridFS into ``folder``."""
    import gridfs

    bucket = gridfs.GridFSBucket(db, "blobs")
    by_iteration: dict[int, dict] = {}
    for m in db.models.find({"campaign": campaign}, {"iteration": 1, "member": 1, "file_id": 1, "n_train": 1,
                                                     "n_validation": 1}):
        path = folder / f"{m['iteration']}-{m['member']}.pb"
        path.parent.mkdir(exist_ok=True)
        with path.open("wb") as fh:
            bucket.download_to_stream(m["file_id"], fh)
        entry = by_iteration.setdefault(m["iteration"], {"iteration": m["iteration"], "models": [],
                                                         "labels": m["n_train"] + m["n_validation"]})
        entry["models"].append(path)
    return [by_iteration[k] for k in sorted(by_iteration)]


# ----------------------------------------------------------------------------------- one run


def campaign_name(seed: int) -> str:
    """One name per seed for every firegen variant: firegen derives its training and MD seeds from the campaign
    name, so the variants of one seed train the same iteration-0 committee and differ only in what they set up
    differently (paired runs; each variant runs in a database of its own)."""
    return f"cu-seed{seed}"


def firegen_yaml(folder: Path, variant: str, seed: int, args) -> Path:
    """``firegen import-dpgen`` of the run folder's param.json, set up as ``variant``."""
    import yaml

    out = folder / "campaign.yaml"
    subprocess.run([args.firegen, "import-dpgen", "param.json", "machine.json", "-o", str(out),
                    "--name", campaign_name(seed)], cwd=folder, check=True, capture_output=True, text=True)
    cfg = yaml.safe_load(out.read_text())
    sel = cfg.setdefault("selection", {})
    sel["seed"] = seed
    setup = FIREGEN_SETUPS[variant]
    sel.update(policy=setup["policy"], dedup={"displacement": args.displacement if setup["dedup"] else None})
    if setup["warm_start"]:
        cfg["committee"]["warm_start"] = {"enabled": True, **json.loads(args.warm_start)}
        cfg["committee"]["warm_start"].update(setup.get("poor", {}))
    else:
        cfg["committee"]["warm_start"] = {"enabled": False}
    cfg["committee"].pop("init_from_previous", None)
    out.write_text(yaml.safe_dump(cfg, sort_keys=False))
    submitted = folder / "variant" / out.name  # the harness copies it back beside param.json (relative paths hold)
    submitted.parent.mkdir(exist_ok=True)
    submitted.write_text(out.read_text())
    return submitted


def one_run(variant: str, seed: int, args, heldout: HeldOut) -> dict:
    folder = Path(args.out) / f"{variant}-{seed}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    bench = SimpleNamespace(quick=False, dpgen=args.dpgen, firegen=args.firegen, timeout=args.timeout,
                            sleep=0.5, firegen_config=None, numb_steps=args.numb_steps)
    env = vs_dpgen.prepare(folder, bench)  # param.json with numb_steps for every tool (warm-started members too)
    t0 = time.time()
    where = {}
    try:
        if variant == "dpgen":
            res = vs_dpgen.run_dpgen(folder, env, bench)
            committees = dpgen_committees(folder)
        else:
            bench.firegen_config = str(firegen_yaml(folder, variant, seed, args))
            res = vs_dpgen.run_firegen(folder, env, bench)
            committees, where = firegen_committees(folder, res["campaign"])
    finally:
        if variant != "dpgen":
            vs_dpgen.stop_firegen_db(folder, args.firegen, env)
    curve = [{"iteration": c["iteration"], "labels": c["labels"], **heldout.errors(c["models"])} for c in committees]
    row = {"variant": variant, "seed": seed, "code": res["code"], "wall_s": time.time() - t0, "curve": curve,
           "where": where, "numb_steps": args.numb_steps or PARAM_STEPS,
           "campaign": None if variant == "dpgen" else campaign_name(seed)}
    print(f"  {variant} seed {seed}: exit {res['code']}, "
          + ", ".join(f"it{c['iteration']} {c['labels']} labels {c['rmse_f']:.4f} eV/Å" for c in curve), flush=True)
    if not args.keep:
        shutil.rmtree(folder / "dpdispatcher-work", ignore_errors=True)
    return row


# ----------------------------------------------------------------------------------- report


def labels_to_reach(curve: list[dict], target: float) -> int | None:
    """Labels of the first committee at or below ``target`` (None: none was)."""
    for point in curve:
        if point["rmse_f"] <= target:
            return point["labels"]
    return None


def labels_at_crossing(curve: list[dict], target: float) -> float | None:
    """Labels at which the error first crosses ``target``, linear between the two committees around the crossing
    (the first committee's labels when it is already at or below it; None: never). Committees come 40 labels
    apart here, which is the resolution of :func:`labels_to_reach`; this reads between them."""
    before = None
    for point in curve:
        if point["rmse_f"] <= target:
            if before is None:
                return float(point["labels"])
            share = (before["rmse_f"] - target) / (before["rmse_f"] - point["rmse_f"])
            return before["labels"] + share * (point["labels"] - before["labels"])
        before = point
    return None


def labels_to_keep(curve: list[dict], target: float) -> int | None:
    """Labels of the first committee from which on every committee of the run is at or below ``target``
    (None: the last one is above it). A first committee that is below the target by the luck of its training
    seeds, and a later one above it, do not count as reaching it."""
    kept = None
    for point in curve:
        if point["rmse_f"] > target:
            kept = None
        elif kept is None:
            kept = point["labels"]
    return kept


READINGS = {"first": labels_to_reach, "kept": labels_to_keep, "crossing": labels_at_crossing}
"""The readings of "labels to target" the report prints, by name."""


def _stat(values: list[float], fmt: str = "{:.0f}") -> str:
    """Median [min-max]; a run that never reached the target counts as infinitely many labels ("inf")."""
    if not values:
        return "-"
    show = lambda v: "inf" if v == float("inf") else fmt.format(v)  # noqa: E731
    return f"{show(statistics.median(values))} [{show(min(values))}-{show(max(values))}]"


def resolve_target(rows: list[dict], target: str) -> float:
    """``--target-f``: a force RMSE in eV/Å, or ``dpgen-final``: the median of DP-GEN's final committees' errors
    (the accuracy DP-GEN ends the campaign with, so "labels to target" asks what firegen spends to get there)."""
    if target != "dpgen-final":
        return float(target)
    finals = [r["curve"][-1]["rmse_f"] for r in rows if r["variant"] == "dpgen" and r["curve"]]
    if not finals:
        raise SystemExit("--target-f dpgen-final needs at least one finished dpgen run in results.json")
    return statistics.median(finals)  # not rounded: DP-GEN's own median run must reach it


def report(rows: list[dict], target_arg: str, out: Path) -> None:
    steps = sorted({r.get("numb_steps", PARAM_STEPS) for r in rows})
    if len(steps) > 1:
        raise SystemExit(f"results.json mixes runs of {steps} training steps; use one --out per --numb-steps")
    paired = {r.get("campaign") == campaign_name(r["seed"]) for r in rows if r["variant"] != "dpgen"}
    if len(paired) > 1:
        raise SystemExit("results.json mixes firegen runs named per seed (paired) with older runs named per "
                         "variant; use a new --out")
    target = resolve_target(rows, target_arg)
    target_note = " (DP-GEN's median final error)" if target_arg == "dpgen-final" else ""
    print(f"\n{steps[0] if steps else PARAM_STEPS} training steps per member and iteration")
    print(f"held-out force RMSE target: {target:.4f} eV/Å{target_note} "
          "(committee mean prediction, 120 EMT MD frames)")
    print("labels to target: 'first' = the first committee at or below it; 'kept' = the first from which on every "
          "committee is; 'crossing' = where the error crosses it, linear between two committees (a run that never "
          "gets there: inf)")
    header = f"{'variant':<16} {'runs':>4} {'kept':>4} {'labels, first':>16} {'labels, kept':>16} {'crossing':>16} " \
             f"{'final labels':>14} {'final RMSE f eV/Å':>20} {'final RMSE e meV/atom':>22}"
    print(header)
    print("-" * len(header))
    need: dict[str, dict[str, list[float]]] = {}
    for variant in VARIANTS:
        runs = [r for r in rows if r["variant"] == variant and r["curve"]]
        if not runs:
            continue
        need[variant] = {rule: [float("inf") if n is None else n for n in (fn(r["curve"], target) for r in runs)]
                         for rule, fn in READINGS.items()}
        kept = sum(n < float("inf") for n in need[variant]["kept"])
        print(f"{variant:<16} {len(runs):>4} {kept:>4} {_stat(need[variant]['first']):>16} "
              f"{_stat(need[variant]['kept']):>16} {_stat(need[variant]['crossing']):>16} "
              f"{_stat([r['curve'][-1]['labels'] for r in runs]):>14} "
              f"{_stat([r['curve'][-1]['rmse_f'] for r in runs], '{:.4f}'):>20} "
              f"{_stat([r['curve'][-1]['rmse_e_mev'] for r in runs], '{:.2f}'):>22}")
    for variant in VARIANTS[1:]:
        if variant not in need or "dpgen" not in need:
            continue
        ratios = []
        for rule in READINGS:
            base, mine = statistics.median(need["dpgen"][rule]), statistics.median(need[variant][rule])
            ratios.append(f"{rule} {mine / base:.2f}" if max(base, mine) < float("inf") else f"{rule} undefined "
                          "(a median not reached)")
        print(f"labels to target, {variant} / dpgen (medians): {', '.join(ratios)}")
    calibrated = {v: [r["curve"][-1]["devi_f"] / r["curve"][-1]["max_err_f"] for r in rows
                      if r["variant"] == v and r["curve"] and "devi_f" in r["curve"][-1]] for v in VARIANTS}
    for variant, ratios in calibrated.items():
        if ratios:  # near-copies agree while they err: a committee's deviation must stay near its error
            print(f"final committees' deviation / error on the held-out set (mean max_devi_f / mean max force "
                  f"error), {variant}: {_stat(ratios, '{:.2f}')}")
    if paired == {True}:
        print("firegen variants paired: one campaign name per seed, so the same training and MD seeds; labels to "
              "target ('first') per seed:")
        for seed in sorted({r["seed"] for r in rows if r["variant"] != "dpgen"}):
            runs = {r["variant"]: r for r in rows if r["seed"] == seed and r["curve"]}
            reached = {v: labels_to_reach(runs[v]["curve"], target) for v in FIREGEN_SETUPS if v in runs}
            print(f"  seed {seed}: " + ", ".join(f"{v} {n or 'inf'}" for v, n in reached.items()))
    for r in rows:
        if r["where"]:
            w = r["where"]
            print(f"{r['variant']} seed {r['seed']}: {w['candidates']} candidates, {w['duplicates']} duplicates "
                  f"removed, {w['selected']} selected, {w['candidates'] - w['duplicates'] - w['selected']} over the cap")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    colours = {"dpgen": "tab:gray", "firegen-random": "tab:blue", "firegen-warm": "tab:orange", "firegen": "tab:red",
               "firegen-kmeans": "tab:green", "firegen-best": "tab:brown", "firegen-scratch": "tab:purple",
               "firegen-own": "tab:olive"}
    for variant in VARIANTS:
        for n, r in enumerate(r for r in rows if r["variant"] == variant and r["curve"]):
            ax.plot([p["labels"] for p in r["curve"]], [p["rmse_f"] for p in r["curve"]], "o-", alpha=0.7,
                    color=colours[variant], label=variant if n == 0 else None)
    ax.axhline(target, ls="--", color="k", lw=0.8, label=f"target {target:.3f} eV/Å")
    ax.set_xlabel("labels spent (EMT single points)")
    ax.set_ylabel("held-out force RMSE (eV/Å)")
    ax.set_title("fcc Cu, 32 atoms: committee error vs labels")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "label_efficiency.png", dpi=120)
    print(f"figure: {out / 'label_efficiency.png'}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", type=int, default=3, help="runs per variant (default 3)")
    p.add_argument("--variants", default=",".join(DEFAULT_VARIANTS),
                   help=f"comma-separated subset of {','.join(VARIANTS)} (default: {','.join(DEFAULT_VARIANTS)})")
    p.add_argument("--out", default="/tmp/label-efficiency", help="folder for the held-out set, runs and results")
    p.add_argument("--target-f", default="dpgen-final",
                   help="held-out force RMSE target in eV/Å, or dpgen-final (default): DP-GEN's median final error")
    p.add_argument("--numb-steps", type=int, default=None,
                   help=f"training steps per member and iteration for every tool (default: param.json's {PARAM_STEPS})")
    p.add_argument("--displacement", type=float, default=0.01, help="firegen's dedup displacement (Å)")
    p.add_argument("--warm-start", default='{"start_pref_e": 0.1, "start_pref_f": 100}',
                   help="firegen's committee.warm_start fields as JSON (default: restart at energy/force "
                   "prefactors 0.1/100, as measured 2026-12-06; '{}': firegen's defaults, the template's)")
    p.add_argument("--firegen", default=str(_bench.VENV_BIN / "firegen"))
    p.add_argument("--dpgen", default=str(_bench.VENV_BIN / "dpgen"))
    p.add_argument("--timeout", type=float, default=3600)
    p.add_argument("--keep", action="store_true", help="keep whole run folders")
    p.add_argument("--report-only", action="store_true", help="reprint and replot <out>/results.json")
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = out / "results.json"
    if args.report_only:
        report(json.loads(results.read_text()), args.target_f, out)
        return 0
    heldout = HeldOut(build_heldout(out))
    rows = json.loads(results.read_text()) if results.is_file() else []
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    for seed in range(args.seeds):
        for variant in variants:
            if any(r["variant"] == variant and r["seed"] == seed for r in rows):
                continue  # done in an earlier, interrupted call
            rows.append(one_run(variant, seed, args, heldout))
            results.write_text(json.dumps(rows, indent=1))
    report(rows, args.target_f, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
