#!/usr/bin/env python
"""The two provenance queries on a results database holding 10^6 configurations: latency and plans.

A private FerretDB (SQLite) gets firegen's results schema (:func:`firegen.db.schema.init_schema`:
collections and indexes), then ``--n`` configurations (default 1,000,000) bulk-inserted with
``insert_many`` in batches of ``--batch`` (the insert rate is printed as it goes). They are shaped
like :meth:`ResultsStore.add_configuration` writes them: content hash, species, flat cell and
positions of ``--natoms`` atoms (default 32), origin (kind, iteration, stage, system, condition,
committee model ids, Firework id, frame, step, engine), status, model deviation, and for the
labeled ones a label (energy, flat forces and virial, code, version, settings and their hash,
walltime, host) and the ids of the datasets that hold them.

Shape of the database: ``--campaigns`` campaigns (default 10) share the configurations evenly;
each runs ``--iterations`` iterations (default 40) on ``--systems`` systems (default 4) with 4
conditions. A fraction ``--labeled`` (default 0.1) of the configurations is labeled, 2 % failed
their label, the rest are rejected candidates. Dataset *i* of a campaign (the snapshot that
trains iteration *i*, as :meth:`ResultsStore.snapshot_dataset` takes it) holds every configuration
labeled in iterations < *i*, in pages shared with snapshot *i-1* (:mod:`firegen.db.dataset_pages`);
each configuration's ``datasets`` lists the snapshots holding it; 4 models per (campaign, iteration) point at that iteration's dataset.

Then :func:`firegen.db.provenance.model_provenance` and
:func:`firegen.db.provenance.configuration_provenance` run ``--queries`` times each (default 200;
fewer, at least 5, once ``--budget`` seconds are spent on one kind) on random model and
configuration ids: p50 / p95 / max latency (ms) and the number of labels the
model query returns. ``explain`` (FerretDB 1.x answers with its own fields: ``queryPlanner`` holds
SQLite's plan, ``pushdown`` tells whether the filter reached SQLite) is printed for each query
the two functions send, and for alternative formulations of the model query.

Usage (from the repository root; prints figures, asserts nothing)::

    .venv/bin/python benchmarks/provenance_scale.py --n 10000            # a quick look (~8 min)
    .venv/bin/python benchmarks/provenance_scale.py                      # 10^6 configurations
"""

from __future__ import annotations

import hashlib
import json
import random
import signal
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _bench  # noqa: E402

DB_NAME = "provenance"
CONDITIONS = [{"ensemble": "nvt", "temperature": t, "pressure": None, "nsteps": 10000, "dt": 1.0, "trj_freq": 10,
               "tau_t": 0.1, "tau_p": 0.5} for t in (300.0, 600.0, 900.0, 1200.0)]
LABEL_SETTINGS = {"code": "cp2k", "version": "2023.1", "kind": "cp2k",
                  "settings": {"xc": "PBE", "basis": "DZVP-MOLOPT-SR-GTH", "cutoff_Ry": 400, "kpoints": [1, 1, 1]}}
SETTINGS_HASH = hashlib.sha256(json.dumps(LABEL_SETTINGS, sort_keys=True).encode()).hexdigest()


class Shape:
    """Where configuration ``k`` sits: campaign, iteration, system, condition, status."""

    def __init__(self, n: int, campaigns: int, iterations: int, systems: int, labeled: float, seed: int):
        self.n, self.campaigns, self.iterations, self.systems = n, campaigns, iterations, systems
        self.per_campaign = -(-n // campaigns)
        rng = np.random.default_rng(seed)
        u = rng.random(n)
        self.status = np.where(u < labeled, 0, np.where(u < labeled + 0.02, 1, 2))  # labeled, failed, rejected
        self.campaign_of = np.arange(n) // self.per_campaign
        local = np.arange(n) % self.per_campaign
        self.iteration_of = (local * iterations) // self.per_campaign
        self.system_of = rng.integers(0, systems, n)
        self.condition_of = rng.integers(0, len(CONDITIONS), n)

    def campaign(self, c: int) -> str:
        return f"camp-{c:03d}"


def build_ids(shape: Shape):
    """ObjectIds of every dataset and model, fixed before the insert (configurations point at them)."""
    from bson import ObjectId

    datasets = {(c, i): ObjectId() for c in range(shape.campaigns) for i in range(shape.iterations)}
    models = {(c, i, m): ObjectId() for c in range(shape.campaigns) for i in range(shape.iterations) for m in range(4)}
    return datasets, models


def configuration_docs(shape: Shape, start: int, stop: int, natoms: int, datasets, models, rng):
    """Configuration documents ``start..stop-1``, as :meth:`ResultsStore.add_configuration` stores them."""
    import datetime

    now = datetime.datetime.now(datetime.timezone.utc)
    species = ["Cu"] * natoms
    docs = []
    for k in range(start, stop):
        c, it = int(shape.campaign_of[k]), int(shape.iteration_of[k])
        status = int(shape.status[k])
        pos = rng.random(natoms * 3) * 7.23
        cell = [7.23, 0.0, 0.0, 0.0, 7.23, 0.0, 0.0, 0.0, 7.23]
        origin = {"kind": "explored", "iteration": it, "stage": 0, "stage_name": "nvt-ladder",
                  "system": f"sys{int(shape.system_of[k])}", "condition": CONDITIONS[int(shape.condition_of[k])],
                  "condition_index": int(shape.condition_of[k]),
                  "model_ids": [models[(c, max(it - 1, 0), m)] for m in range(4)],
                  "fw_id": 100000 + k // 50, "frame": k % 1000, "step": (k % 1000) * 10, "engine": "lammps"}
        doc = {"campaign": shape.campaign(c), "hash": hashlib.sha256(pos.tobytes()).hexdigest(), "natoms": natoms,
               "species": species, "cell": cell, "pbc": [True, True, True], "positions": pos.tolist(),
               "origin": origin, "model_deviation": {"max_f": 0.15 + 0.2 * rng.random(), "max_v": 0.1 * rng.random()},
               "label": None, "datasets": [], "created": now}
        if status == 0:
            doc["status"] = "labeled"
            doc["label"] = {"energy": -3.7 * natoms + rng.normal(), "forces": rng.normal(0, 0.5, natoms * 3).tolist(),
                            "virial": rng.normal(0, 1.0, 9).tolist(), **LABEL_SETTINGS, "settings_hash": SETTINGS_HASH,
                            "walltime": 120.0 + 60 * rng.random(), "host": "node-017"}
            doc["labeled_at"] = now
            doc["datasets"] = [datasets[(c, i)] for i in range(it + 1, shape.iterations)]
        elif status == 1:
            doc["status"] = "label_failed"
            doc["label_attempts"] = [{"reason": "SCF not converged", "at": now}]
        else:
            doc["status"] = "rejected"
            doc["rejected_reason"] = "over the per-iteration cap"
        docs.append(doc)
    return docs


def insert_all(db, shape: Shape, natoms: int, batch: int, datasets, models, seed: int) -> tuple[float, list, dict]:
    """Bulk-insert the configurations; print progress; return seconds, the inserted ids (sampled 1 in 10)
    and the labeled configurations per (campaign, iteration) with the fields a snapshot reads (known here:
    a query for them would read every document on FerretDB)."""
    from firegen.db.dataset_pages import LABEL_COLUMNS, LABELER_FIELDS

    rng = np.random.default_rng(seed + 1)
    t0 = time.perf_counter()
    sample, last_print, labeled = [], t0, {}
    for start in range(0, shape.n, batch):
        docs = configuration_docs(shape, start, min(start + batch, shape.n), natoms, datasets, models, rng)
        ids = db.configurations.insert_many(docs, ordered=False).inserted_ids
        sample += ids[::10]
        for k, doc in zip(range(start, start + len(ids)), docs):
            if shape.status[k] == 0:
                row = {"_id": doc["_id"], "hash": doc["hash"], "origin": doc["origin"],
                       "label": {f: doc["label"].get(f) for f in (*LABELER_FIELDS, *LABEL_COLUMNS)}}
                labeled.setdefault((int(shape.campaign_of[k]), int(shape.iteration_of[k])), []).append(row)
        now = time.perf_counter()
        if now - last_print > 15 or start + batch >= shape.n:
            done = min(start + batch, shape.n)
            rate = done / (now - t0)
            print(f"  {done:>9,} configurations in {now - t0:6.0f} s: {rate:,.0f} /s; "
                  f"{(shape.n - done) / rate / 60:.1f} min to go", flush=True)
            last_print = now
    return time.perf_counter() - t0, sample, labeled


def insert_datasets_and_models(db, shape: Shape, datasets, models, rows_by_ci: dict) -> None:
    """Dataset snapshots (cumulative: each shares the previous one's pages and pages the labels added
    since, :mod:`firegen.db.dataset_pages`) and 4 models per (campaign, iteration), as firegen stores them."""
    from firegen.db.dataset_pages import new_pages, parts_with

    labeled = shape.status == 0
    ds_docs, model_docs, page_docs = [], [], []
    for c in range(shape.campaigns):
        parts, size = None, 0
        for i in range(shape.iterations):
            rows = rows_by_ci.get((c, i - 1), [])
            page_docs += new_pages(datasets[(c, i)], rows)
            parts = parts_with(parts, datasets[(c, i)], len(rows))
            size += len(rows)
            ds_docs.append({"_id": datasets[(c, i)], "campaign": shape.campaign(c), "iteration": i,
                            "parts": parts, "hash": f"{c}-{i}", "size": size,
                            "labelers": {SETTINGS_HASH: {"code": LABEL_SETTINGS["code"],
                                                         "version": LABEL_SETTINGS["version"],
                                                         "settings": LABEL_SETTINGS["settings"], "n": size}},
                            "model_ids": [models[(c, i, m)] for m in range(4)],
                            "models": {str(models[(c, i, m)]): {"iteration": i, "member": m, "seed": 1000 * i + m,
                                                                "sha256": None} for m in range(4)}})
            for m in range(4):
                model_docs.append({"_id": models[(c, i, m)], "campaign": shape.campaign(c), "iteration": i,
                                   "member": m, "seed": 1000 * i + m, "backend": "tensorflow",
                                   "dataset_id": datasets[(c, i)], "sha256": hashlib.sha256(b"%d%d%d" % (c, i, m)).hexdigest(),
                                   "metrics": {"rmse_e_per_atom": 0.002, "rmse_f": 0.08}, "input": {"model": {}}})
    for k in range(0, len(page_docs), 50):
        db.dataset_pages.insert_many(page_docs[k:k + 50])
    db.datasets.insert_many(ds_docs)
    db.models.insert_many(model_docs)
    assert int(labeled.sum()) == sum(len(v) for v in rows_by_ci.values())


def time_calls(fn, db, ids: list, rng: random.Random, queries: int, budget_s: float = float("inf"),
               min_calls: int = 5) -> tuple[list[float], list]:
    """``fn(db, random id)`` ``queries`` times, or fewer (at least ``min_calls``) once ``budget_s`` is spent;
    returns the latencies (ms) and the answers."""
    out, ms = [], []
    t0 = time.perf_counter()
    for k in range(queries):
        if k >= min_calls and time.perf_counter() - t0 > budget_s:
            break
        key = rng.choice(ids)
        t = time.perf_counter()
        res = fn(db, key)
        ms.append(1000 * (time.perf_counter() - t))
        out.append(res)
    return ms, out


def explain(db, collection: str, filter_: dict, projection: dict | None = None, sort: dict | None = None) -> dict:
    cmd = {"find": collection, "filter": filter_}
    if projection:
        cmd["projection"] = projection
    if sort:
        cmd["sort"] = sort
    try:
        return db.command("explain", cmd, verbosity="queryPlanner")
    except Exception as exc:  # FerretDB may refuse some shapes
        return {"error": str(exc)}


def plan_summary(res: dict) -> str:
    """The parts of an explain answer that say whether an index was used (FerretDB 1.x or MongoDB)."""
    if "error" in res:
        return f"explain failed: {res['error']}"
    keep = {k: res[k] for k in ("pushdown", "filterPushdown", "sortingPushdown", "limitPushdown",
                                "unsafeFilterPushdown") if k in res}
    qp = res.get("queryPlanner")
    if isinstance(qp, dict) and "winningPlan" in qp:
        keep["winningPlan"] = qp["winningPlan"]
    else:
        keep["queryPlanner"] = qp
    return json.dumps(keep, default=str)


def main(argv=None) -> int:
    p = _bench.arg_parser(__doc__)
    p.add_argument("--n", type=int, default=1_000_000, help="configurations (default 10^6)")
    p.add_argument("--natoms", type=int, default=32, help="atoms per configuration (default 32)")
    p.add_argument("--campaigns", type=int, default=10, help="campaigns sharing them (default 10)")
    p.add_argument("--iterations", type=int, default=40, help="iterations per campaign (default 40)")
    p.add_argument("--systems", type=int, default=4, help="systems per campaign (default 4)")
    p.add_argument("--labeled", type=float, default=0.1, help="labeled fraction (default 0.1)")
    p.add_argument("--batch", type=int, default=1000, help="insert_many batch size (default 1000)")
    p.add_argument("--queries", type=int, default=200, help="calls of each provenance function (default 200)")
    p.add_argument("--budget", type=float, default=120.0,
                   help="seconds per query kind: stop calling (after 5 calls) once spent (default 120)")
    p.add_argument("--scan-limit", type=int, default=20000,
                   help="time the query variants that read every configuration only up to this many (default "
                        "20000; at 10^6 one such query takes many minutes on FerretDB)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--keep", action="store_true", help="keep the database folder")
    args = p.parse_args(argv)
    if not 0 < args.labeled <= 0.98:
        p.error("--labeled must be in (0, 0.98]")
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    run_benchmark(args)
    return 0


def run_benchmark(args) -> dict:
    """Build the database, time the queries, print everything; return the figures (for tests and scripts)."""
    import pymongo

    from firegen.db.embedded.id_index import index_id_lookups
    from firegen.db.dataset_pages import LABEL_VIEW, member_ids, page_refs
    from firegen.db.lookup import find_by_ids
    from firegen.db.provenance import configuration_provenance, model_provenance
    from firegen.db.schema import init_schema

    shape = Shape(args.n, args.campaigns, args.iterations, args.systems, args.labeled, args.seed)
    datasets, models = build_ids(shape)
    with _bench.private_ferretdb("firegen-provenance-", keep=args.keep) as server:
        client = pymongo.MongoClient(server.uri, serverSelectionTimeoutMS=10000)
        db = client[DB_NAME]
        init_schema(db)
        indexed = index_id_lookups(server.root / "data", DB_NAME)  # what `firegen db up` does
        print(f"_id look-up index (db/embedded/id_index.py) on {len(indexed)} tables", flush=True)
        print(f"inserting {args.n:,} configurations ({args.natoms} atoms, {args.campaigns} campaigns x "
              f"{args.iterations} iterations, {args.labeled:.0%} labeled) in batches of {args.batch}", flush=True)
        seconds, sample, ids_by_ci = insert_all(db, shape, args.natoms, args.batch, datasets, models, args.seed)
        t = time.perf_counter()
        insert_datasets_and_models(db, shape, datasets, models, ids_by_ci)
        t_ds = time.perf_counter() - t
        size = sum(f.stat().st_size for f in (server.root / "data").rglob("*") if f.is_file()) / 2**20
        print(f"insert: {args.n:,} configurations in {seconds:.1f} s = {args.n / seconds:,.0f} /s "
              f"({seconds / args.n * 1e6 / 60:.1f} min per 10^6); datasets + models {t_ds:.1f} s; "
              f"SQLite files {size:,.0f} MiB", flush=True)

        rng = random.Random(args.seed)
        model_ids = list(models.values())
        budget = args.budget
        m_ms, m_res = time_calls(model_provenance, db, model_ids, rng, args.queries, budget)
        print(f"model_provenance: {len(m_ms)} calls", flush=True)
        c_ms, c_res = time_calls(configuration_provenance, db, sample, rng, args.queries, budget)
        print(f"configuration_provenance: {len(c_ms)} calls", flush=True)
        n_labels = [r["n_labels"] for r in m_res]
        # the largest dataset: the model of a campaign's last iteration
        last = [models[(c, args.iterations - 1, 0)] for c in range(args.campaigns)]
        big_ms, big_res = time_calls(model_provenance, db, last, rng, min(20, args.queries), budget / 2)
        rows = []
        for name, ms in (("model_provenance (random model)", m_ms), ("model_provenance (last iteration)", big_ms),
                         ("configuration_provenance (random)", c_ms)):
            d = _bench.describe(ms)
            rows.append({"query": name, "calls": d["n"], "p50 ms": d["median"], "p95 ms": d["p95"], "max ms": d["max"]})
        print()
        print(_bench.render(rows, ["query", "calls", "p50 ms", "p95 ms", "max ms"]))
        print(f"labels behind the models: median {int(np.median(n_labels)):,}, max {max(n_labels):,}; each answer "
              f"holds the first page of {len(m_res[0]['labels'])} (model_provenance's default limit); "
              f"last-iteration models: {big_res[0]['n_labels']:,} labels; target p95 < 50 ms")
        all_ms, all_res = time_calls(lambda d, k: model_provenance(d, k, limit=None), db, model_ids, rng,
                                     min(20, args.queries), budget / 2)
        d = _bench.describe(all_ms)
        print(f"model_provenance(limit=None), every label in one answer: {d['n']} calls, p50 {d['median']:.0f} ms, "
              f"p95 {d['p95']:.0f} ms for a median of {int(np.median([r['n_labels'] for r in all_res])):,} labels")

        # explain: what each function sends, and alternatives for the model query
        cfg = next((r["configuration"] for r in c_res if r["configuration"].get("datasets")), None) or \
            db.configurations.find_one({"status": "labeled", "datasets.0": {"$exists": True}})
        ds = db.datasets.find_one({"_id": cfg["datasets"][-1]})
        model = db.models.find_one({"_id": ds["model_ids"][0]})
        few_ids = member_ids(db, ds)[:1000]
        plans = [  # every query both functions send on FerretDB is one of the first two shapes
            ("model, config: {_id: id} on configurations", "configurations", {"_id": cfg["_id"]}, LABEL_VIEW, None),
            ("model, config: {_id: id} on models / datasets", "models", {"_id": model["_id"]}, None, None),
            ("model: {_id: page id} on dataset_pages", "dataset_pages", {"_id": page_refs(ds)[0][0]}, None, None),
            ("MongoDB form of the label query: configurations {datasets: id}", "configurations",
             {"datasets": ds["_id"]}, LABEL_VIEW, None),
            ("MongoDB form: models {dataset_id: {$in: datasets}} sorted", "models",
             {"dataset_id": {"$in": cfg["datasets"]}}, None, {"iteration": 1, "member": 1}),
            ("alternative: configurations {_id: {$in: 1000 ids}}", "configurations", {"_id": {"$in": few_ids}},
             LABEL_VIEW, None),
            ("alternative: {campaign, status: labeled, origin.iteration <= i}", "configurations",
             {"campaign": cfg["campaign"], "status": "labeled", "origin.iteration": {"$lt": 20}}, LABEL_VIEW, None),
        ]
        print("\nexplain (queryPlanner):")
        for title, coll, flt, proj, sort in plans:
            print(f"- {title}\n    {plan_summary(explain(db, coll, flt, proj, sort))}")

        # the alternatives, timed (20 calls each, random last-iteration datasets)
        alt = []
        keys = [{"campaign": r["configuration"]["campaign"], "hash": r["configuration"]["hash"]} for r in c_res]
        for title, scan, fn in (  # scan: FerretDB reads and decodes every configuration for it
            ("labels by {datasets: id}", True,
             lambda d: list(db.configurations.find({"datasets": d["_id"]}, LABEL_VIEW))),
            ("labels by {_id: {$in: ids}} (batches of 1000)", True,
             lambda d: [x for ids in [member_ids(db, d)] for k in range(0, len(ids), 1000)
                        for x in db.configurations.find({"_id": {"$in": ids[k:k + 1000]}}, LABEL_VIEW)]),
            ("first 100 labels, one find_one {_id} each (as before pages)", False,
             lambda d: find_by_ids(db.configurations, member_ids(db, d)[:100], LABEL_VIEW)),
            ("label count only {datasets: id}", True,
             lambda d: db.configurations.count_documents({"datasets": d["_id"]})),
            ("one configuration: find_one {_id} (pushed down, firegen's index)", False,
             lambda d: db.configurations.find_one({"_id": rng.choice(sample)}, {"_id": 1})),
            ("one configuration: find_one {campaign, hash} (unique index, not pushed down)", True,
             lambda d: db.configurations.find_one(rng.choice(keys), {"_id": 1})),
            ("one model: find_one {_id}", False,
             lambda d: db.models.find_one({"_id": rng.choice(model_ids)}, {"_id": 1})),
        ):
            if scan and args.n > args.scan_limit:
                alt.append({"query variant": title, "calls": 0, "p50 ms": "skipped", "p95 ms": "(full scan)"})
                continue
            ms = []
            t_alt = time.perf_counter()
            for k in range(min(20, args.queries)):
                if k >= 3 and time.perf_counter() - t_alt > budget / 4:
                    break
                d = db.datasets.find_one({"_id": datasets[(rng.randrange(args.campaigns), args.iterations - 1)]})
                t = time.perf_counter()
                fn(d)
                ms.append(1000 * (time.perf_counter() - t))
            s = _bench.describe(ms)
            alt.append({"query variant": title, "calls": s["n"], "p50 ms": s["median"], "p95 ms": s["p95"]})
        print()
        print(_bench.render(alt, ["query variant", "calls", "p50 ms", "p95 ms"]))
        client.close()
    return {"insert_per_s": args.n / seconds, "rows": rows, "labels": n_labels, "model_results": m_res,
            "config_results": c_res, "alternatives": alt, "datasets": datasets, "models": models}


if __name__ == "__main__":
    sys.exit(main())
