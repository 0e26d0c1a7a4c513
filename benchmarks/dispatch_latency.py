#!/usr/bin/env python
"""Dispatch latency of FireWorks on firegen's embedded FerretDB: READY -> RUNNING with N workers.

A private FerretDB (SQLite, free loopback port, registered with firegen's write guard like the
embedded server) gets a fresh LaunchPad; ``--workers`` (default 8) workers, each its own FWorker
name, are started and warmed up (trivial Fireworks until every worker has run one). Workers are
plain ``rlaunch rapidfire --nlaunches infinite --sleep 1`` (``--launcher rlaunch``, stock FireWorks),
or ``--launcher firegen``: the loop of ``firegen worker`` (FireWorks' ``rapidfire`` on a LaunchPad
whose Fireworks and launches are keyed by ``_id``, :mod:`firegen.db.embedded.fireworks_keys`), without the
preload; the harness then queues through such a LaunchPad too, as ``firegen submit`` does.
Then trivial Fireworks (``ScriptTask`` ``true``, one workflow each) are queued:

* ``burst``: ``--n`` (default 1000) at once, with one ``bulk_add_wfs`` -- a backlog that the
  workers drain; latency = queueing + dispatch; throughput is the figure of merit.
* ``paced``: ``--paced-n`` (default min(n, 60)) one at a time, ``--rate`` per second (default:
  half the burst's throughput, 0.5/s without a burst), so the queue stays short; latency =
  dispatch alone (waiting for a worker's next poll, plus the checkout).

Definitions (FireWorks' own records, naive-UTC timestamps):

* READY time = ``fireworks.created_on``; the harness sets it right before the insert (the
  insert's own duration is printed: it is inside the latency).
* RUNNING time = ``created_on`` of the first ``state == "RUNNING"`` entry of the Firework's
  launch's ``launches.state_history`` (what ``Rocket.run`` writes at checkout; = ``time_start``).
* latency = RUNNING time - READY time, per Firework: median, p95, max.
* throughput = Fireworks / (last ``time_end`` - first READY time), Fireworks per second.
* hand-off gap = per worker, ``time_start`` of a launch - ``time_end`` of its previous launch
  (FireWorks' completion + refresh + the next checkout), median and p95 (burst only).

Usage (from the repository root; prints figures, asserts nothing)::

    .venv/bin/python benchmarks/dispatch_latency.py                    # 8 workers, 1000 + 200 Fireworks
    .venv/bin/python benchmarks/dispatch_latency.py --n 100 --workers 8 --mode burst
    .venv/bin/python benchmarks/dispatch_latency.py --n 100 --workers 8 --mode burst --launcher firegen
    .venv/bin/python benchmarks/dispatch_latency.py --n 100 --workers 8 --mode burst --launcher firegen --prefill 5000

``--prefill N`` first puts N COMPLETED Fireworks (workflows of 30) on the LaunchPad, what a long
campaign leaves behind unless its finished iterations are archived: how dispatch degrades with the
LaunchPad's size. The hand-off gap of a burst (a worker's previous launch end -> its next launch's
start: completion, workflow refresh, the next checkout) is the checkout latency.
``--checkout-scan 100,1000,5000`` times one checkout query alone (no workers) at each LaunchPad size:
what FerretDB's full read of the ``fireworks`` collection costs each checkout.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _bench  # noqa: E402

DB_NAME = "dispatch"


def _epoch(value) -> float:
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.timezone.utc)
    return value.timestamp()


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)  # FireWorks stores naive UTC


def trivial_workflow(name: str, category: str | None = None):
    """One Firework running ``true`` (a few ms), in its own workflow."""
    from fireworks import Firework, ScriptTask, Workflow

    spec = {"_category": category} if category else {}
    return Workflow([Firework(ScriptTask.from_str("true"), spec=spec, name=name)], name=name)


def start_workers(n: int, lp_file: Path, root: Path, sleep: float, env: dict,
                  launcher: str = "rlaunch") -> list[subprocess.Popen]:
    """``n`` workers, each with its own FWorker name and folder: ``rlaunch rapidfire`` (stock FireWorks),
    or ``firegen``'s worker loop (``python -m firegen.launchers.worker --no-preload``: the same
    ``rapidfire`` on a LaunchPad whose Fireworks and launches are keyed by ``_id``)."""
    import yaml

    from firegen.launchers import worker
    from firegen.launchers.local import fireworks_bin

    procs = []
    for i in range(n):
        wdir = root / f"w{i}"
        wdir.mkdir(parents=True)
        fworker = wdir / "fworker.yaml"
        fworker.write_text(yaml.safe_dump({"name": f"bench-w{i}", "category": "", "query": "{}"}))
        if launcher == "firegen":
            cmd = worker.command(lp_file, fworker, "cpu", sleep) + ["--no-preload"]
        else:
            cmd = [fireworks_bin("rlaunch"), "-s", "-l", str(lp_file), "-w", str(fworker), "rapidfire",
                   "--nlaunches", "infinite", "--sleep", str(int(sleep))]
        procs.append(subprocess.Popen(cmd, cwd=wdir, env=env, stdout=open(wdir / "worker.log", "wb"),
                                      stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True))
    return procs


def stop_workers(procs: list[subprocess.Popen]) -> None:
    for proc in procs:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    for proc in procs:
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def wait_for(lp, fw_ids: list[int], procs, timeout: float) -> None:
    """Until every Firework of ``fw_ids`` is COMPLETED (poll 0.5 s); error on a fizzle, dead worker, timeout."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        states: dict[str, int] = {}
        for d in lp.fireworks.find({"fw_id": {"$in": fw_ids}}, {"state": 1}):
            states[d["state"]] = states.get(d["state"], 0) + 1
        if states.get("FIZZLED"):
            raise RuntimeError(f"{states['FIZZLED']} Fireworks fizzled")
        if states.get("COMPLETED", 0) == len(fw_ids):
            return
        dead = [p.returncode for p in procs if p.poll() is not None]
        if dead:
            raise RuntimeError(f"{len(dead)} worker(s) exited (codes {dead})")
        time.sleep(0.5)
    raise RuntimeError(f"not all {len(fw_ids)} Fireworks completed within {timeout:.0f} s")


def warm_up(lp, procs, timeout: float = 300.0) -> float:
    """Trivial Fireworks, one per worker per round, until every worker has run one; seconds taken."""
    t = time.time()
    seen: set[str] = set()
    while len(seen) < len(procs):
        if time.time() - t > timeout:
            raise RuntimeError(f"only {len(seen)} of {len(procs)} workers ran a Firework within {timeout:.0f} s")
        ids = [min(lp.add_wf(trivial_workflow(f"warm-up-{i}")).values()) for i in range(len(procs))]
        wait_for(lp, ids, procs, timeout)
        seen = {d["fworker"]["name"] for d in lp.launches.find({}, {"fworker.name": 1})}
    return time.time() - t


def prefill(lp, n: int, per_workflow: int = 30) -> float:
    """``n`` finished Fireworks already on the LaunchPad, as a long campaign leaves them: trivial
    Fireworks in workflows of ``per_workflow`` (one iteration's worth), all COMPLETED. Returns seconds."""
    from fireworks import Firework, ScriptTask, Workflow

    t = time.perf_counter()
    wfs = []
    for w in range(0, n, per_workflow):
        fws = [Firework(ScriptTask.from_str("true"), name=f"done-{w + k}") for k in range(min(per_workflow, n - w))]
        wfs.append(Workflow(fws, name=f"done-wf-{w // per_workflow}"))
    lp.bulk_add_wfs(wfs)
    lp.fireworks.update_many({"name": {"$regex": "^done-"}}, {"$set": {"state": "COMPLETED"}})
    for wf in lp.workflows.find({"name": {"$regex": "^done-wf-"}}, {"nodes": 1}):
        lp.workflows.update_one({"_id": wf["_id"]}, {"$set": {
            "state": "COMPLETED", "fw_states": {str(i): "COMPLETED" for i in wf["nodes"]}}})
    return time.perf_counter() - t


def checkout_scan(sizes: list[int], repeat: int = 5) -> list[dict]:
    """One FireWorks checkout alone (``LaunchPad._get_a_fw_to_run``'s query and sort, as pymongo's
    ``find_one_and_update``; no workers) on a LaunchPad holding each of ``sizes`` Fireworks, one of them
    READY: median, min and max ms of ``repeat`` calls. What each checkout costs as the LaunchPad grows."""
    from fireworks import Firework, FWorker, ScriptTask
    from pymongo import ASCENDING, DESCENDING, MongoClient

    rows = []
    with _bench.private_ferretdb("firegen-checkout-") as server:
        fireworks = MongoClient(server.uri)[DB_NAME]["fireworks"]
        doc = Firework(ScriptTask.from_str("true"), name="done", spec={"_category": "cpu"}).to_db_dict()
        query = {**FWorker(category="cpu").query, "state": "READY"}
        stored = 0
        for size in sorted(sizes):
            if size > stored:
                fireworks.insert_many([{**doc, "fw_id": i + 1, "state": "COMPLETED"} for i in range(stored, size)])
                stored = size
            fireworks.update_many({"state": "READY"}, {"$set": {"state": "COMPLETED"}})
            fireworks.update_one({"fw_id": size}, {"$set": {"state": "READY"}})
            times = []
            for _ in range(repeat):  # the found Firework stays READY, as if checked out and put back
                t = time.perf_counter()
                found = fireworks.find_one_and_update(query, {"$set": {"state": "READY"}},
                                                      sort=[("spec._priority", DESCENDING), ("created_on", ASCENDING)])
                times.append(1000 * (time.perf_counter() - t))
                if found is None or found["fw_id"] != size:
                    raise RuntimeError(f"the checkout query did not find the READY Firework {size}: {found}")
            rows.append({"Fireworks": size, "checkout median ms": statistics.median(times),
                         "min ms": min(times), "max ms": max(times)})
    return rows


def queue_burst(lp, n: int) -> tuple[list[int], float]:
    """``n`` trivial workflows in one ``bulk_add_wfs``; returns their fw_ids and the insert's seconds."""
    wfs = [trivial_workflow(f"bench-{i}") for i in range(n)]
    now = _utcnow()
    for wf in wfs:
        for fw in wf.fws:
            fw.created_on = now
        wf.created_on = now
    t = time.perf_counter()
    lp.bulk_add_wfs(wfs)
    seconds = time.perf_counter() - t
    ids = [d["fw_id"] for d in lp.fireworks.find({"name": {"$regex": "^bench-"}}, {"fw_id": 1})]
    return ids, seconds


def queue_paced(lp, n: int, rate: float) -> tuple[list[int], float]:
    """``n`` trivial workflows, one ``add_wf`` every ``1/rate`` s; returns fw_ids and the mean insert seconds."""
    ids, inserts = [], []
    t_next = time.perf_counter()
    for i in range(n):
        delay = t_next - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        t_next += 1.0 / rate
        wf = trivial_workflow(f"paced-{i}")
        wf.fws[0].created_on = _utcnow()
        t = time.perf_counter()
        ids.append(min(lp.add_wf(wf).values()))
        inserts.append(time.perf_counter() - t)
    return ids, sum(inserts) / max(len(inserts), 1)


def measure(lp, fw_ids: list[int]) -> dict:
    """Latency (READY -> RUNNING), throughput and per-worker hand-off gaps of ``fw_ids`` (seconds)."""
    ready = {d["fw_id"]: _epoch(d["created_on"]) for d in lp.fireworks.find({"fw_id": {"$in": fw_ids}},
                                                                              {"fw_id": 1, "created_on": 1})}
    running, ends, per_worker = {}, [], {}
    for la in lp.launches.find({"fw_id": {"$in": fw_ids}},
                               {"fw_id": 1, "state_history": 1, "time_start": 1, "time_end": 1, "fworker.name": 1}):
        t_run = next((_epoch(h["created_on"]) for h in la.get("state_history", []) if h["state"] == "RUNNING"), None)
        if t_run is not None and (la["fw_id"] not in running or t_run < running[la["fw_id"]]):
            running[la["fw_id"]] = t_run
        if la.get("time_end"):
            ends.append(_epoch(la["time_end"]))
            per_worker.setdefault(la["fworker"]["name"], []).append((_epoch(la["time_start"]), _epoch(la["time_end"])))
    latency = [running[i] - ready[i] for i in fw_ids if i in running]
    gaps = []
    for spans in per_worker.values():
        spans.sort()
        gaps += [b[0] - a[1] for a, b in zip(spans, spans[1:])]
    span = max(ends) - min(ready.values()) if ends else float("nan")
    return {"n": len(fw_ids), "ran": len(latency), "latency": _bench.describe(latency), "span s": span,
            "throughput": len(latency) / span if span > 0 else float("nan"), "gaps": _bench.describe(gaps),
            "workers used": len(per_worker)}


def report(mode: str, m: dict, insert_s: float, workers: int) -> dict:
    lat, gaps = m["latency"], m["gaps"]
    return {"mode": mode, "Fireworks": m["ran"], "workers": f"{m['workers used']}/{workers}",
            "median s": lat["median"], "p95 s": lat["p95"], "max s": lat["max"],
            "throughput FW/s": m["throughput"], "span s": m["span s"],
            "gap median s": gaps["median"] if mode == "burst" else None,
            "gap p95 s": gaps["p95"] if mode == "burst" else None,
            "insert s": insert_s}


def main(argv=None) -> int:
    p = _bench.arg_parser(__doc__)
    p.add_argument("--n", type=int, default=1000, help="Fireworks in the burst (default 1000)")
    p.add_argument("--workers", type=int, default=8, help="concurrent rlaunch rapidfire workers (default 8)")
    p.add_argument("--launcher", choices=["rlaunch", "firegen"], default="rlaunch",
                   help="stock `rlaunch rapidfire`, or firegen's worker loop with Fireworks keyed by _id")
    p.add_argument("--sleep", type=float, default=1, help="seconds between polls when idle (rlaunch: whole, >= 1)")
    p.add_argument("--mode", choices=["burst", "paced", "both"], default="both")
    p.add_argument("--paced-n", type=int, help="Fireworks queued one by one (default min(n, 60))")
    p.add_argument("--rate", type=float, help="paced: Fireworks queued per second (default: half the burst's "
                                              "throughput; 0.5 without a burst)")
    p.add_argument("--prefill", type=int, default=0, help="COMPLETED Fireworks on the LaunchPad before the "
                                                          "measurement, in workflows of 30 (a long campaign's past)")
    p.add_argument("--checkout-scan", metavar="N,N,...", help="instead: time one checkout alone on a LaunchPad "
                                                              "holding each of these numbers of Fireworks")
    p.add_argument("--timeout", type=float, default=3600, help="give up after this many seconds per mode")
    p.add_argument("--keep", action="store_true", help="keep the temporary folder (worker logs, database)")
    args = p.parse_args(argv)
    if args.sleep < 1 and args.launcher == "rlaunch":
        p.error("--sleep must be at least 1 for rlaunch (it reads 0 as 'unset' and sleeps 60 s)")
    if args.n < 1 or args.workers < 1 or (args.rate is not None and args.rate <= 0):
        p.error("--n and --workers must be >= 1 and --rate > 0")
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    if args.checkout_scan:
        sizes = [int(n) for n in args.checkout_scan.split(",")]
        print(_bench.render(checkout_scan(sizes), ["Fireworks", "checkout median ms", "min ms", "max ms"], digits=1))
        return 0
    t_all = time.time()
    rows = run_benchmark(args)
    print()
    print(_bench.render(rows, ["mode", "Fireworks", "workers", "median s", "p95 s", "max s", "throughput FW/s",
                               "span s", "gap median s", "gap p95 s", "insert s"], digits=3))
    print(f"\nlatency = launches.state_history RUNNING created_on - fireworks.created_on (READY); "
          f"insert s = the bulk insert (burst) or mean add_wf (paced), inside the latency. "
          f"Whole run {time.time() - t_all:.0f} s.")
    return 0


@contextlib.contextmanager
def launchpad_and_workers(prefix: str, workers: int, launcher: str, sleep: float, keep: bool = False,
                          env: dict | None = None):
    """A private FerretDB with a reset LaunchPad (keyed, as ``firegen submit`` queues, for ``launcher`` firegen)
    and ``workers`` started workers (:func:`start_workers`; environment ``env`` over this one's, without
    ``FW_CONFIG_FILE`` and ``FIREGEN_LAUNCHPAD``); yields ``(lp, procs, server)``, stops the workers afterwards."""
    os.environ.setdefault("TQDM_DISABLE", "1")  # bulk_add_wfs draws a progress bar
    from fireworks import LaunchPad

    from firegen.db.connection import write_launchpad_file
    from firegen.db.embedded.fireworks_keys import key_launchpad

    with _bench.private_ferretdb(prefix, keep=keep) as server:
        root = server.root.parent
        lp = LaunchPad(host=server.uri + DB_NAME, name=DB_NAME, uri_mode=True, strm_lvl="ERROR")
        if launcher == "firegen":  # queued as `firegen submit` queues: keyed documents
            key_launchpad(lp)
        lp.m_logger.propagate = False
        lp.reset("", require_password=False)
        lp_file = write_launchpad_file(root / "my_launchpad.yaml", server.uri + DB_NAME)
        base = {k: v for k, v in os.environ.items() if k not in ("FW_CONFIG_FILE", "FIREGEN_LAUNCHPAD")}
        procs = start_workers(workers, lp_file, root / "workers", sleep, {**base, **(env or {})}, launcher)
        try:
            yield lp, procs, server
        finally:
            stop_workers(procs)


def run_benchmark(args) -> list[dict]:
    """Start the database and the workers, run the selected modes; one result row per mode."""
    rows = []
    with launchpad_and_workers("firegen-dispatch-", args.workers, args.launcher, args.sleep, args.keep) as (
            lp, procs, server):
        if args.prefill:
            print(f"{args.prefill} COMPLETED Fireworks on the LaunchPad ({prefill(lp, args.prefill):.1f} s)",
                  flush=True)
        warm = warm_up(lp, procs)
        print(f"{args.workers} {args.launcher} workers started and warmed up in {warm:.1f} s "
              f"(FerretDB {server.uri})", flush=True)
        if args.mode in ("burst", "both"):
            ids, insert_s = queue_burst(lp, args.n)
            wait_for(lp, ids, procs, args.timeout)
            rows.append(report("burst", measure(lp, ids), insert_s, args.workers))
            print(f"burst of {args.n} done", flush=True)
        if args.mode in ("paced", "both"):
            n = args.paced_n or min(args.n, 60)
            rate = args.rate or (0.5 * rows[0]["throughput FW/s"] if rows else 0.5)
            ids, insert_s = queue_paced(lp, n, rate)
            wait_for(lp, ids, procs, args.timeout)
            rows.append(report(f"paced {rate:.2g}/s", measure(lp, ids), insert_s, args.workers))
    return rows


if __name__ == "__main__":
    sys.exit(main())
