#!/usr/bin/env python
"""The dashboard's pages on a campaign of 10^4 configurations on the embedded FerretDB: latency per page.

A private FerretDB (SQLite) gets firegen's results schema and one campaign shaped like a long real one:
``--n`` configurations (default 10,000; :mod:`provenance_scale` writes them, ``--labeled`` of them labeled,
2 % label_failed, the rest rejected candidates) over ``--iterations`` iterations (default 40) of 4
systems x 4 conditions, each iteration with its explorations (counts, deviation histograms), decision,
label tally and failures, 4 models with metrics and held-out predictions, its cumulative dataset
snapshot, and its Fireworks (label batches, gate, 4 train, 16 explore, select) with one finished launch
each on a gpu or cpu worker.

Measured: the read of everything a campaign's pages show (what the dashboard does once per refresh
period per campaign looked at, :mod:`firegen.orchestrator.view.live`) and of the LaunchPad's Fireworks,
5 times each; then ``firegen dashboard``'s server (:func:`firegen.orchestrator.view.server.serve`) runs in
this process on a free port: the first request to a campaign (it waits for that read), then each page
fetched over HTTP ``--repeat`` times (default 20): p50 / p95 / max latency (ms) and size. The report
file (``firegen report``) is written once and timed.

Usage (from the repository root; prints figures, asserts nothing)::

    .venv/bin/python benchmarks/dashboard_scale.py              # 10^4 configurations, about 2 min
    .venv/bin/python benchmarks/dashboard_scale.py --n 2000     # a quick look
"""

from __future__ import annotations

import datetime
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _bench  # noqa: E402
import provenance_scale  # noqa: E402

CAMPAIGN = "camp-000"
SYSTEMS, CONDITIONS = 4, 4
STAGE = {"name": "nvt-ladder", "temperatures": [300, 600, 900, 1200], "systems": [f"sys{k}" for k in range(SYSTEMS)]}


def campaign_doc(now: datetime.datetime) -> dict:
    return {"name": CAMPAIGN, "status": "running", "stage": 0, "iteration": 39, "type_map": ["Cu"], "created": now,
            "config": {"name": CAMPAIGN, "stages": [STAGE], "selection": {"trust": {"f_lo": 0.15, "f_hi": 0.35}}},
            "initial_labels": {"labeled": 0, "failed": 0}, "timings": {"init_label_s": 0.0}}


def iteration_docs(shape, iterations: int, models: dict, rng) -> list[dict]:
    """One ``iterations`` document per iteration, as the explore, select and label Fireworks leave it."""
    from firegen.workflows.jobs.explore import deviation_edges

    from bson import ObjectId

    edges = deviation_edges(0.15, 0.35)
    now = datetime.datetime.now(datetime.timezone.utc)
    docs = []
    for i in range(iterations):
        explorations, tasks = {}, {}
        scale = 0.6 * 0.93 ** i  # the distribution moves left as the campaign learns
        for s in range(SYSTEMS):
            for c in range(CONDITIONS):
                devi = rng.lognormal(np.log(scale * (1 + 0.3 * c)), 0.6, 2001)
                hist = np.histogram(devi, bins=edges)[0]
                acc, cand = int((devi < 0.15).sum()), int(((devi >= 0.15) & (devi < 0.35)).sum())
                key = f"sys{s}|c{c}"
                explorations[key] = {
                    "system": f"sys{s}", "engine": "lammps", "accurate": acc, "candidate": cand,
                    "failed": 2001 - acc - cand, "total": 2001, "new_candidates": cand, "md_seconds": 60.0,
                    "condition": dict(provenance_scale.CONDITIONS[c]), "max_devi_f_edges": edges,
                    "max_devi_f_hist": hist.tolist(), "cut_at_frame": None, "cut_reason": None}
                tasks[key] = "converged" if acc / 2001 > 0.99 else "running"
        counts = {k: sum(e[k] for e in explorations.values()) for k in ("accurate", "candidate", "failed", "total")}
        mine = np.flatnonzero(shape.iteration_of == i)
        labeled, failed = int((shape.status[mine] == 0).sum()), int((shape.status[mine] == 1).sum())
        docs.append({"campaign": CAMPAIGN, "index": i, "stage": 0, "stage_name": STAGE["name"], "ensemble": "nvt",
                     "temperatures": STAGE["temperatures"], "pressures": [], "nsteps": 20000, "protocols": [],
                     "explore": list(explorations), "status": "done", "model_ids": [models[(0, i, m)] for m in range(4)],
                     "explorations": explorations, "counts": counts,
                     "ratios": {k: counts[k] / counts["total"] for k in ("accurate", "candidate", "failed")},
                     "selected": labeled + failed,
                     "decision": {"action": "continue", "stage": 0, "stage_status": "running", "campaign_status": "running",
                                  "reason": f"not converged: accurate {counts['accurate'] / counts['total']:.1%}",
                                  "explore": [], "tasks": tasks},
                     "timings": {"train_s": 4 * 3600.0, "explore_s": 16 * 60.0, "label_s": 150.0 * labeled,
                                 "select_s": 2.0},
                     "labels": {"labeled": labeled, "failed": failed},
                     "label_failures": [{"config_id": ObjectId(), "reason": f"SCF not converged after {100 + k} steps",
                                         "error_type": "UnconvergedSCF", "fw_id": 1, "at": now} for k in range(failed)]})
    return docs


def heldout_docs(models: dict, iterations: int, rng) -> list[dict]:
    """Held-out predictions of every model (50 frames, 2000 force components), as a train Firework stores them."""
    docs = []
    for (_, i, m), model_id in models.items():
        e = rng.normal(-3.7, 0.05, 50)
        f = rng.normal(0, 0.8, 2000)
        err = 0.2 * 0.95 ** i
        docs.append({"_id": model_id, "campaign": CAMPAIGN, "iteration": i, "member": m, "energy_label": e.tolist(),
                     "energy_model": (e + rng.normal(0, err / 40, 50)).tolist(), "force_label": f.tolist(),
                     "force_model": (f + rng.normal(0, err, 2000)).tolist(), "force_stride": 3})
    return docs


def fireworks_and_launches(iterations: int, t0: datetime.datetime) -> tuple[list[dict], list[dict]]:
    """The campaign's Fireworks (COMPLETED) and one launch each, back to back on a gpu and a cpu worker."""
    fws, launches = [], []
    clock = {"gpu": t0, "cpu": t0}

    def add(kind: str, category: str, iteration: int, seconds: float, **about) -> None:
        fw_id = len(fws) + 1
        start = clock[category] + datetime.timedelta(seconds=2)
        end = start + datetime.timedelta(seconds=seconds)
        clock[category] = end
        spec = {"_category": category, "firegen": {"kind": kind, "campaign": CAMPAIGN, "iteration": iteration, **about}}
        if kind == "label":
            spec["_tasks"] = [{"_fw_name": "{{firegen.workflows.tasks.LabelTask}}", "config_ids": ["x"] * 25}]
        fws.append({"fw_id": fw_id, "name": f"{CAMPAIGN}/it{iteration:03d}/{kind}", "state": "COMPLETED", "spec": spec,
                    "created_on": t0.isoformat(), "updated_on": end.isoformat(), "launches": [fw_id]})
        launches.append({"launch_id": fw_id, "fw_id": fw_id, "state": "COMPLETED", "host": f"{category}-node",
                         "fworker": {"name": f"firegen-{category}", "category": category},
                         "time_start": start.isoformat(), "time_end": end.isoformat(), "runtime_secs": seconds})

    for i in range(iterations):
        for b in range(4):
            add("label", "cpu", i - 1, 600.0, batch=b)
        add("gate", "cpu", i, 1.0)
        for m in range(4):
            add("train", "gpu", i, 900.0, member=m)
        for s in range(SYSTEMS):
            for c in range(CONDITIONS):
                add("explore", "gpu", i, 60.0, stage=0, system=f"sys{s}", condition=c)
        add("select", "cpu", i, 2.0, stage=0)
    return fws, launches


def build(db, args) -> dict:
    """Write the campaign; return what the page list needs (a model, a dataset, a configuration id)."""
    from firegen.db.schema import init_schema

    init_schema(db)
    rng = np.random.default_rng(args.seed)
    shape = provenance_scale.Shape(args.n, 1, args.iterations, SYSTEMS, args.labeled, args.seed)
    datasets, models = provenance_scale.build_ids(shape)
    t = time.perf_counter()
    _, sample, rows = provenance_scale.insert_all(db, shape, 32, 1000, datasets, models, args.seed)
    provenance_scale.insert_datasets_and_models(db, shape, datasets, models, rows)
    db.models.update_many({}, {"$set": {"metrics": {"train": {"rmse_e_per_atom": 0.002, "rmse_f": 0.07},
                                                    "validation": {"rmse_e_per_atom": 0.003, "rmse_f": 0.09}},
                                        "n_train": 3600, "n_validation": 400, "train_seconds": 900.0}})
    now = datetime.datetime.now(datetime.timezone.utc)
    db.campaigns.insert_one(campaign_doc(now))
    db.iterations.insert_many(iteration_docs(shape, args.iterations, models, rng))
    db.heldout_predictions.insert_many(heldout_docs(models, args.iterations, rng))
    fws, launches = fireworks_and_launches(args.iterations, now - datetime.timedelta(days=20))
    db.fireworks.insert_many(fws)
    db.launches.insert_many(launches)
    print(f"campaign written in {time.perf_counter() - t:.0f} s: {args.n:,} configurations, {args.iterations} "
          f"iterations, {len(models)} models, {len(fws)} Fireworks", flush=True)
    return {"model": models[(0, args.iterations - 1, 0)], "dataset": datasets[(0, args.iterations - 1)],
            "configuration": sample[len(sample) // 2]}


def fetch(url: str) -> tuple[float, int]:
    """Milliseconds to the last byte of ``url``, and its size (bytes)."""
    t = time.perf_counter()
    with urllib.request.urlopen(url, timeout=120) as response:
        body = response.read()
        assert response.status == 200, (url, response.status)
    return 1000 * (time.perf_counter() - t), len(body)


def main(argv=None) -> int:
    p = _bench.arg_parser(__doc__)
    p.add_argument("--n", type=int, default=10_000, help="configurations (default 10^4)")
    p.add_argument("--iterations", type=int, default=40, help="iterations (default 40)")
    p.add_argument("--labeled", type=float, default=0.4, help="labeled fraction (default 0.4)")
    p.add_argument("--repeat", type=int, default=20, help="requests per page (default 20)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--keep", action="store_true", help="keep the database folder")
    args = p.parse_args(argv)
    run_benchmark(args)
    return 0


def run_benchmark(args) -> list[dict]:
    """Build the campaign, time every page, print the table; return its rows (for tests)."""
    import pymongo
    from fireworks import LaunchPad

    from firegen.db.embedded.capabilities import adapt_launchpad
    from firegen.db.embedded.id_index import index_id_lookups
    from firegen.db.repository import ResultsStore
    from firegen.orchestrator.view.report import write_report
    from firegen.orchestrator.view.server import serve
    from firegen.orchestrator.view.source import CampaignSource, LaunchPadSource

    with _bench.private_ferretdb("firegen-dashboard-", keep=args.keep) as server:
        db = pymongo.MongoClient(server.uri, serverSelectionTimeoutMS=10000)["firegen"]
        ids = build(db, args)
        index_id_lookups(server.root / "data", "firegen")  # what `firegen db up` does
        lp = adapt_launchpad(LaunchPad(host=server.uri + "firegen", name="firegen", uri_mode=True, strm_lvl="ERROR"))
        store = ResultsStore(db)
        rows = []
        for what, read in (("campaign (background read)", lambda: CampaignSource(store, lp, CAMPAIGN).preloaded()),
                           ("LaunchPad (background read)", lambda: LaunchPadSource(store, lp))):
            ms = []
            for _ in range(5):
                t = time.perf_counter()
                read()
                ms.append(1000 * (time.perf_counter() - t))
            d = _bench.describe(ms)
            rows.append({"read": what, "reads": d["n"], "p50 ms": d["median"], "max ms": d["max"]})
        print()
        print(_bench.render(rows, ["read", "reads", "p50 ms", "max ms"]))
        started = threading.Event()
        address = {}

        def ready(url: str) -> None:
            address["url"] = url
            started.set()

        threading.Thread(target=serve, args=(lp, "127.0.0.1", 0, None, 3.0, ready), daemon=True).start()
        started.wait(30)
        base = address["url"].rstrip("/")
        c = f"/c/{CAMPAIGN}"
        pages = ["/", "/launchpad", "/launchpad?skip=500", c, f"{c}?format=json", f"{c}/models", f"{c}/labels",
                 f"{c}/labels?skip=100", f"{c}/timeline", f"{c}/lineage", f"{c}/model/{ids['model']}",
                 f"{c}/dataset/{ids['dataset']}", f"{c}/dataset/{ids['dataset']}?skip=3000",
                 f"{c}/configuration/{ids['configuration']}"]
        first = {page: fetch(base + page)[0] for page in ("/", c)}  # each waits for its first read
        print(f"\nfirst request (waits for the read): / {first['/']:.0f} ms, {c} {first[c]:.0f} ms")
        rows = []
        for page in pages:
            fetch(base + page)  # Python's and FerretDB's caches warm
            ms, size = zip(*(fetch(base + page) for _ in range(args.repeat)))
            d = _bench.describe(ms)
            rows.append({"page": page.replace(str(ids["model"]), "<model>").replace(str(ids["dataset"]), "<dataset>")
                         .replace(str(ids["configuration"]), "<configuration>"), "requests": d["n"],
                         "p50 ms": d["median"], "p95 ms": d["p95"], "max ms": d["max"], "KiB": size[0] / 1024})
        print()
        print(_bench.render(rows, ["page", "requests", "p50 ms", "p95 ms", "max ms", "KiB"]))
        t = time.perf_counter()
        with tempfile.TemporaryDirectory() as folder:
            path = write_report(CampaignSource(store, lp, CAMPAIGN), Path(folder) / "report.html")
            size = path.stat().st_size
        print(f"\nreport file: {time.perf_counter() - t:.1f} s, {size / 2**20:.1f} MiB")
        return rows


if __name__ == "__main__":
    sys.exit(main())
