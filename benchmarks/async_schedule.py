#!/usr/bin/env python
"""Strict vs asynchronous iterations under heavy-tailed labels: wall time to a held-out accuracy, labels spent,
gpu idle time, labels skipped by re-scoring.

The campaign is configs/cu_emt.yaml (fcc Cu, 32 atoms) with the ``delayed`` labeler: EMT labels returned after a
seeded log-normal delay (``--median-s``, p99/p50 = 20, optional ``--failure-rate``), so that a few labels take
many times the median, as DFT runs do. Each mode runs ``--seeds`` times in a fresh folder with its own embedded
database, ``--gpu`` gpu workers and ``--cpu`` cpu workers (plain ``firegen worker``), the same seeds for the
delays, the selection and the training in both modes:

* ``strict``: every label of an iteration is back before the next committee trains (DP-GEN), one label per
  Firework (``schedule.labels_per_firework: 1``, as DP-GEN runs one task per frame) so the cpu workers share them;
* ``asynchronous``: ``schedule: {mode: asynchronous, quorum: --quorum}``, one label per Firework, queued labels
  re-scored by the newest committee.

The **held-out set** is label_efficiency.py's (EMT MD at 300 and 600 K on strained 32-atom cells, 120 frames,
built once per output folder). Every committee's mean prediction is scored on it; a committee is "ready" when
its last train Firework ended. Printed per run and as medians per mode: seconds from the init Firework's start
to the first committee at or below ``--target-f`` (eV/Å), the labels it had been trained on, the labels spent in
the whole run, the final force RMSE, the share of the gpu workers' time idle (between the first launch and the
campaign's end), labels skipped by re-scoring, and iterations. ``<out>/async_timeline.png`` shows which worker
ran what when, for the first seed of each mode; ``<out>/async_results.json`` keeps the rows
(``--report-only`` reprints them).

Usage (from the repository root; about 15 minutes per run on 2 idle cores with the defaults)::

    .venv/bin/python benchmarks/async_schedule.py --seeds 3 --out /tmp/async-bench
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

import _bench  # noqa: E402
from firegen.campaign.records import CAMPAIGN_ENDED  # noqa: E402
from label_efficiency import HeldOut, build_heldout, download_committees  # noqa: E402

MODES = ("strict", "asynchronous")
KIND_COLOURS = {"train": "tab:blue", "explore": "tab:green", "label": "tab:orange", "select": "tab:purple",
                "gate": "tab:gray", "init": "tab:brown"}


def _replica(k: int) -> str:
    """The suffix of a replica's campaign name and folder (``--replica``): none for replica 0."""
    return f"-r{k}" if k else ""


def campaign_yaml(folder: Path, mode: str, seed: int, args) -> Path:
    shutil.copytree(ROOT / "configs" / "structures", folder / "structures", dirs_exist_ok=True)
    cfg = yaml.safe_load((ROOT / "configs" / "cu_emt.yaml").read_text())
    # one name in both modes (each run has its own database): the members' training seeds derive from it, so the
    # two modes' first committees are the same models and their time to target differs by the schedule alone
    cfg["name"] = f"cu-async-bench-{seed}{_replica(args.replica)}"
    cfg["committee"].setdefault("warm_start", {}).update(json.loads(args.warm_start))
    cfg["labeler"] = {"kind": "delayed", "settings": {"labeler": "emt", "median_s": args.median_s,
                                                      "p99_over_p50": 20.0, "seed": seed,
                                                      "failure_rate": args.failure_rate}}
    cfg["committee"].update(size=args.committee)
    cfg["selection"]["seed"] = seed
    cfg["stages"][0]["max_iterations"] = args.iterations
    # every run ends at max_iterations: the measure is the held-out error, and a first committee that is
    # confident on its own MD (wrongly: 0.17 eV/Å held-out) must not end the run as "converged" at iteration 0
    cfg["stages"][0]["converged_when"] = {"accurate_ratio": 1.0, "for_iterations": args.iterations + 1}
    cfg["schedule"] = {"mode": mode, "labels_per_firework": 1}  # both modes: one label per Firework, as DP-GEN
    if mode == "asynchronous":
        cfg["schedule"].update(quorum=args.quorum, deadline_s=args.deadline_s)
    path = folder / "campaign.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def _env(folder: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("FIREGEN_MONGO_URI", "FIREGEN_LAUNCHPAD", "FW_CONFIG_FILE")}
    env["FIREGEN_HOME"] = str(folder / ".firegen")
    return env


def _firegen(folder: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(ROOT / ".venv" / "bin" / "firegen"), *args], cwd=folder, env=_env(folder),
                          capture_output=True, text=True, check=True)


def _database(folder: Path):
    import pymongo

    state = json.loads((folder / ".firegen" / "db" / "server.json").read_text())
    return pymongo.MongoClient(state["uri"], serverSelectionTimeoutMS=10000)


def _launches(client) -> list[dict]:
    """Every launch of the run (live and archived) with its Firework's kind and iteration."""
    out = []
    for name in ("firegen", "firegen_archive"):
        db = client[name]
        kinds = {fw["fw_id"]: fw["spec"].get("firegen", {}) for fw in db.fireworks.find({}, {"fw_id": 1, "spec.firegen": 1})}
        for launch in db.launches.find({}, {"fw_id": 1, "time_start": 1, "time_end": 1, "fworker": 1, "state": 1}):
            start, end = _bench.epoch(launch.get("time_start")), _bench.epoch(launch.get("time_end"))
            if start is None or end is None:
                continue
            what = kinds.get(launch["fw_id"], {})
            worker = (launch.get("fworker") or {}).get("env", {}).get("firegen_process") or str(launch["fw_id"])
            out.append({"fw_id": launch["fw_id"], "kind": what.get("kind", "?"), "iteration": what.get("iteration"),
                        "category": (launch.get("fworker") or {}).get("category"), "worker": worker,
                        "start": start, "end": end})
    return out


def one_run(mode: str, seed: int, args, heldout: HeldOut) -> dict:
    folder = Path(args.out) / f"{mode}-{seed}{_replica(args.replica)}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    config = campaign_yaml(folder, mode, seed, args)
    name = yaml.safe_load(config.read_text())["name"]
    _firegen(folder, "db", "up")
    workers = []
    try:
        _firegen(folder, "submit", str(config))
        for category, count in (("--gpu", args.gpu), ("--cpu", args.cpu)):
            for k in range(count):
                log = (folder / f"worker{category}-{k}.log").open("w")
                workers.append(subprocess.Popen([str(ROOT / ".venv" / "bin" / "firegen"), "worker", category,
                                                 "--timeout", str(args.timeout)], cwd=folder, env=_env(folder),
                                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
        client = _database(folder)
        deadline = time.monotonic() + args.timeout
        status, reason = None, None
        while time.monotonic() < deadline:
            doc = client["firegen"].campaigns.find_one({"name": name}, {"status": 1, "stop_reason": 1}) or {}
            status, reason = doc.get("status"), doc.get("stop_reason")
            if status in CAMPAIGN_ENDED:
                break
            time.sleep(2)
        for proc in workers:
            os.killpg(proc.pid, signal.SIGTERM)
        for proc in workers:
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        launches = _launches(client)
        committees = download_committees(client["firegen"], name, folder / "models")
        db = client["firegen"]
        labeled = db.configurations.count_documents({"campaign": name, "status": "labeled"})
        skipped = db.configurations.count_documents({"campaign": name, "status": "skipped"})
        starts = [{"iteration": it["index"], **{k: it["training_start"].get(k) for k in
                                                ("reason", "labels_back", "labels_expected", "turnaround_s")}}
                  for it in db.iterations.find({"campaign": name, "training_start": {"$exists": True}},
                                               {"index": 1, "training_start": 1}).sort("index", 1)]
        client.close()
        final = final_model_errors(folder, name, args.finalize_steps, heldout) if args.finalize_steps else None
    finally:
        for proc in workers:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
        _firegen(folder, "db", "down")
    t0 = min(launch["start"] for launch in launches if launch["kind"] == "init")
    t_end = max(launch["end"] for launch in launches)
    ready = {}
    for launch in launches:
        if launch["kind"] == "train":
            ready[launch["iteration"]] = max(ready.get(launch["iteration"], 0.0), launch["end"])
    curve = [{"iteration": c["iteration"], "labels": c["labels"], "ready_s": ready.get(c["iteration"], t_end) - t0,
              **heldout.errors(c["models"])} for c in committees]
    reached = next((c for c in curve if c["rmse_f"] <= args.target_f), None)
    gpu = [(launch["worker"], launch["start"], launch["end"]) for launch in launches if launch["category"] == "gpu"]
    gpu_workers = sorted({w for w, _, _ in gpu})
    busy = sum(_bench.union_length([(a, b) for w, a, b in gpu if w == worker], t0, t_end) for worker in gpu_workers)
    cpu = [(launch["worker"], launch["start"], launch["end"]) for launch in launches if launch["category"] == "cpu"]
    cpu_busy = sum(_bench.union_length([(a, b) for w, a, b in cpu if w == worker], t0, t_end)
                   for worker in sorted({w for w, _, _ in cpu}))
    if reason:
        print(f"  {mode} seed {seed}: {status}: {reason}", flush=True)
    row = {"mode": mode, "seed": seed, "replica": args.replica, "status": status, "stop_reason": reason, "wall_s": t_end - t0,
           "to_target_s": reached["ready_s"] if reached else None, "labels_at_target": reached["labels"] if reached else None,
           "labeled": labeled, "skipped": skipped, "iterations": len(curve),
           "final_rmse_f": curve[-1]["rmse_f"] if curve else None,
           "gpu_idle": 1.0 - busy / (max(len(gpu_workers), args.gpu) * (t_end - t0)),
           "cpu_idle": 1.0 - cpu_busy / (args.cpu * (t_end - t0)), "starts": starts,
           "final_model": final, "curve": curve, "timeline": [{**launch, "start": launch["start"] - t0, "end": launch["end"] - t0}
                                        for launch in launches]}
    print(f"  {mode} seed {seed}: {status}, {row['wall_s']:.0f} s, target "
          f"{'%.0f s' % row['to_target_s'] if reached else 'not reached'}, {labeled} labels, {skipped} skipped, "
          f"gpu idle {row['gpu_idle']:.0%}, cpu idle {row['cpu_idle']:.0%}; "
          + ", ".join(f"it{c['iteration']} {c['rmse_f']:.3f}" for c in curve), flush=True)
    for start in starts:
        print(f"    iteration {start['iteration']} trained on {start['reason']}", flush=True)
    return row


def final_model_errors(folder: Path, name: str, steps: int, heldout: HeldOut) -> dict:
    """``firegen finalize`` of a finished run with ``steps`` training steps (the same in both modes), exported and
    scored on the held-out set: the potential a user keeps, trained on every label the run spent, late ones
    included. The run's database must be up."""
    _firegen(folder, "finalize", name, "--now", "--force", "--numb-steps", str(steps))
    shutil.rmtree(folder / "final", ignore_errors=True)
    _firegen(folder, "export", "model", "--campaign", name, "--final", "-o", str(folder / "final"))
    manifest = json.loads((folder / "final" / "manifest.json").read_text())
    return {"steps": steps, "labels": manifest["dataset"]["size"], **heldout.errors([folder / "final" / "final.pb"])}


def finalize_existing(args, heldout: HeldOut) -> None:
    """``--finalize-existing``: the final model of each run kept under ``--out`` (its database is started, used
    and stopped), stored in its row of ``async_results.json``."""
    results = Path(args.out) / "async_results.json"
    rows = json.loads(results.read_text())
    for row in rows:
        folder = Path(args.out) / f"{row['mode']}-{row['seed']}{_replica(row.get('replica', 0))}"
        name = yaml.safe_load((folder / "campaign.yaml").read_text())["name"]
        # the run is over and its workers gone: the database may take a new port (its old one may be another's)
        (folder / ".firegen" / "db" / "server.json").unlink(missing_ok=True)
        _firegen(folder, "db", "up")
        try:
            row["final_model"] = final_model_errors(folder, name, args.finalize_steps, heldout)
        finally:
            _firegen(folder, "db", "down")
        print(f"  {row['mode']} seed {row['seed']}: final model {row['final_model']}", flush=True)
        results.write_text(json.dumps(rows, indent=1, default=str))


def _median(values) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def report(rows: list[dict], args) -> None:
    for row in rows:
        row.setdefault("replica", 0)
    cols = ["mode", "seed", "replica", "status", "to_target_s", "labels_at_target", "labeled", "skipped", "final_rmse_f",
            "gpu_idle_pct", "cpu_idle_pct", "iterations", "wall_s"]
    table = [{**r, "gpu_idle_pct": 100 * r["gpu_idle"],
              "cpu_idle_pct": 100 * r["cpu_idle"] if r.get("cpu_idle") is not None else None} for r in rows]
    print(_bench.render(table, cols, digits=3))
    print(f"\nmedians (target {args.target_f} eV/Å held-out force RMSE):")
    medians = {}
    replicas = [r for r in rows if r["replica"]]
    rows = [r for r in rows if not r["replica"]]
    for mode in MODES:
        mine = [r for r in rows if r["mode"] == mode]
        if not mine:
            continue
        medians[mode] = {k: _median(r[k] for r in mine) for k in ("labeled", "final_rmse_f", "gpu_idle", "skipped",
                                                                  "wall_s")}
        # a run that never reached the target counts as infinitely long (as label_efficiency.py's labels)
        medians[mode]["to_target_s"] = statistics.median(
            r["to_target_s"] if r["to_target_s"] is not None else float("inf") for r in mine)
        m = medians[mode]
        reached = sum(r["to_target_s"] is not None for r in mine)
        print(f"  {mode:13s} to target {_bench.fmt(m['to_target_s'], 0)} s ({reached}/{len(mine)} reached), "
              f"labels {_bench.fmt(m['labeled'], 0)}, final force RMSE {_bench.fmt(m['final_rmse_f'], 3)} eV/Å, "
              f"gpu idle {_bench.fmt(100 * m['gpu_idle'] if m['gpu_idle'] is not None else None, 0)} %, "
              f"skipped {_bench.fmt(m['skipped'], 0)}, wall {_bench.fmt(m['wall_s'], 0)} s")
    if len(medians) == 2 and medians["strict"]["to_target_s"] and medians["asynchronous"]["to_target_s"]:
        print(f"  asynchronous / strict time to target: "
              f"{medians['asynchronous']['to_target_s'] / medians['strict']['to_target_s']:.2f} (goal <= 0.7)")
    path_noise(rows, replicas)
    final_models(rows)
    if rows:  # the timeline is drawn for replica 0's first seed of each mode
        timeline(rows, Path(args.out) / "async_timeline.png")


def final_models(rows: list[dict]) -> None:
    """The final models' held-out force RMSE per seed, both modes (``--finalize-steps``)."""
    final = {(r["mode"], r["seed"]): r["final_model"] for r in rows if r.get("final_model")}
    seeds = sorted(seed for mode, seed in final if mode == "strict" and ("asynchronous", seed) in final)
    if not seeds:
        return
    diffs = [final[("asynchronous", s)]["rmse_f"] - final[("strict", s)]["rmse_f"] for s in seeds]
    print(f"  final model ({final[('strict', seeds[0])]['steps']} steps on every label of the run), held-out force "
          f"RMSE strict / asynchronous: " + ", ".join(
              f"{s}: {final[('strict', s)]['rmse_f']:.3f} / {final[('asynchronous', s)]['rmse_f']:.3f}" for s in seeds)
          + f"; asynchronous - strict median {statistics.median(diffs):+.3f} eV/Å, worse in "
          f"{sum(d > 0 for d in diffs)} of {len(diffs)}")


def path_noise(rows: list[dict], replicas: list[dict]) -> None:
    """Final force RMSE differences, per seed: asynchronous − strict, beside strict replica − strict (the same
    delays and selection seed, other training seeds): how far the final error moves when only the committees'
    path changes, with the schedule unchanged."""
    final = {(r["mode"], r["seed"]): r["final_rmse_f"] for r in rows}
    pairs = [(seed, final[("asynchronous", seed)] - final[("strict", seed)])
             for mode, seed in final if mode == "asynchronous" and ("strict", seed) in final]
    noise = [(r["seed"], r["final_rmse_f"] - final[("strict", r["seed"])]) for r in replicas
             if r["mode"] == "strict" and ("strict", r["seed"]) in final]
    for label, diffs in (("asynchronous - strict", pairs), ("strict replica - strict", noise)):
        if diffs:
            values = [d for _, d in diffs]
            print(f"  final force RMSE, {label}: median {statistics.median(values):+.3f}, "
                  f"median |.| {statistics.median(abs(v) for v in values):.3f} eV/Å over {len(values)} seeds ("
                  + ", ".join(f"{seed}: {d:+.3f}" for seed, d in sorted(diffs)) + ")")


def timeline(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    firsts = [next(r for r in rows if r["mode"] == mode) for mode in MODES if any(r["mode"] == mode for r in rows)]
    fig, axes = plt.subplots(len(firsts), 1, figsize=(12, 3.2 * len(firsts)), squeeze=False)
    for ax, row in zip(axes[:, 0], firsts):
        workers = sorted({(t["category"] or "?", t["worker"]) for t in row["timeline"]})
        for y, (category, worker) in enumerate(workers):
            for t in row["timeline"]:
                if t["worker"] == worker:
                    ax.barh(y, t["end"] - t["start"], left=t["start"], color=KIND_COLOURS.get(t["kind"], "black"),
                            edgecolor="white", linewidth=0.3)
        names = [f"{c} {sum(1 for c2, _ in workers[:k] if c2 == c)}" for k, (c, _) in enumerate(workers)]
        ax.set_yticks(range(len(workers)), names)
        ax.set_title(f"{row['mode']} (seed {row['seed']}): {row['wall_s']:.0f} s, gpu idle {row['gpu_idle']:.0%}")
        ax.set_xlabel("s since the init Firework started")
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in KIND_COLOURS.values()]
    fig.legend(handles, list(KIND_COLOURS), loc="upper right", ncol=len(KIND_COLOURS))
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    fig.savefig(path, dpi=110)
    print(f"timeline: {path}")


def main(argv=None) -> int:
    parser = _bench.arg_parser(__doc__)
    parser.add_argument("--out", default="/tmp/firegen-async-bench")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--first-seed", type=int, default=0, help="seeds first-seed .. first-seed + seeds - 1")
    parser.add_argument("--warm-start", default="{}", help="committee.warm_start fields as JSON over "
                        "configs/cu_emt.yaml's, e.g. '{\"start_pref_e\": 0.1, \"start_pref_f\": 100}'")
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    parser.add_argument("--gpu", type=int, default=2, help="gpu workers")
    parser.add_argument("--cpu", type=int, default=4, help="cpu workers")
    parser.add_argument("--committee", type=int, default=2)
    parser.add_argument("--iterations", type=int, default=4, help="max_iterations of the stage")
    parser.add_argument("--median-s", type=float, default=10.0, help="median label delay (s): DFT-like, a label phase "
                        "of about the length of a training")
    parser.add_argument("--failure-rate", type=float, default=0.0)
    parser.add_argument("--quorum", type=float, default=0.8)
    parser.add_argument("--deadline-s", type=float, default=600.0)
    parser.add_argument("--target-f", type=float, default=0.1, help="held-out force RMSE target (eV/Å)")
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds per run")
    parser.add_argument("--replica", type=int, default=0, help="K > 0: other training seeds (campaign name "
                        "suffix -rK), the same delays and selection; the report sets strict replicas beside strict "
                        "as the final error's spread from the committees' path alone")
    parser.add_argument("--finalize-steps", type=int, default=0, help="N > 0: after each run, `firegen finalize "
                        "--numb-steps N` and the final model's held-out errors (the potential a user keeps, trained "
                        "on every label, late ones too)")
    parser.add_argument("--finalize-existing", action="store_true", help="finalize the runs kept under --out "
                        "(with --finalize-steps) and store the result in their rows")
    parser.add_argument("--report-only", action="store_true")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = out / "async_results.json"
    if args.report_only:
        report(json.loads(results.read_text()), args)
        return 0
    heldout = HeldOut(build_heldout(out))
    if args.finalize_existing:
        if args.finalize_steps <= 0:
            parser.error("--finalize-existing needs --finalize-steps N (N > 0)")
        finalize_existing(args, heldout)
        report(json.loads(results.read_text()), args)
        return 0
    rows = []
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        for mode in args.modes:
            rows.append(one_run(mode, seed, args, heldout))
            results.write_text(json.dumps(rows, indent=1, default=str))
    report(rows, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
