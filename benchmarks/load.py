#!/usr/bin/env python
"""Load on one embedded LaunchPad: N workers over many Fireworks (double executions, losses, throughput), then
two campaigns at two priorities sharing the workers (waits, priority inversions). Issue 20, item 3.

The embedded FerretDB (started as ``firegen db up`` starts it: SQLite, loopback, registered with firegen's
write guard) gets a fresh LaunchPad; ``--workers`` real worker processes, each its own FWorker name, are
started and warmed up (``dispatch_latency.py``'s helpers): ``--launcher firegen`` (default) is the loop of
``firegen worker`` (FireWorks' ``rapidfire`` on a LaunchPad whose Fireworks and launches are keyed by
``_id``; the harness then queues through such a LaunchPad, as ``firegen submit`` does), ``--launcher rlaunch``
plain ``rlaunch -s rapidfire --nlaunches infinite``. Each Firework runs ``load_task.RecordExecution``, which
writes one record per execution to ``load_executions`` (the Firework's job token, a token of its own, the
worker's name): everything below is counted from those records and FireWorks' documents, nothing is assumed.

**load**: ``--fireworks`` (500) independent Fireworks in workflows of ``--per-workflow`` (10: Fireworks of
one workflow finish concurrently and refresh it at once, as a campaign's train or explore Fireworks do),
queued with one ``bulk_add_wfs`` while the workers poll; the harness waits until none is WAITING, READY,
RESERVED or RUNNING (or only WAITING ones are left for 30 s: a lost refresh), counts, stops the workers and
counts the records again (a late second run):

* done: Fireworks COMPLETED;
* executions: records; double executions: Fireworks with more than one record (and the extra runs);
  FireWorks' side: Fireworks with more than one launch;
* lost: Fireworks queued but not COMPLETED, or COMPLETED without a record, or whose COMPLETED launch's
  execution token (its ``stored_data``) is not among the records;
* wall: from the start of the insert to the last launch's end; throughput = done / wall;
* per worker: records.

**priority**: two campaign-shaped workflows, queued together: ``--iterations`` iterations of
gate (1) → train (``--fan-out``) → explore (``--fan-out``) → select (1), each layer after all of the previous
one, every Firework ``--campaign-seconds`` long. ``--priorities`` (10,0) are set with firegen's own
``with_priority`` (what a campaign's ``priority:`` does). Per campaign: when its Fireworks ran (first start,
last end after the queueing) and the wait READY → RUNNING (mean, p95, max). READY of a root is the queueing,
of a child the end of its last parent (FireWorks readies it right after, during the parent's completion);
RUNNING is the launch's ``state_history`` entry written at checkout.

A **priority inversion** is a lower-priority Firework checked out while a higher-priority one was READY and
not yet checked out. Checkouts are not timestamped themselves, so it is counted only where the times prove it:
Firework L (lower priority) and H (higher) such that H was READY before L's checkout could begin and L's
checkout ended before H's could begin. A checkout begins after its worker's previous launch ended (warm-up
launches included) and ends before the launch's RUNNING time; a child is READY before its parents' workers
start their next launch, a root once the insert returned. Simultaneous checkouts (closer than one hand-off)
are never counted, so the count is a lower bound; a checkout that ignored priorities would show in it.

Usage (from the repository root; prints figures, asserts nothing)::

    .venv/bin/python benchmarks/load.py                         # 8 workers, 500 Fireworks, then 2 campaigns
    .venv/bin/python benchmarks/load.py --workers 4 --fireworks 60 --scenario load
    .venv/bin/python benchmarks/load.py --launcher rlaunch      # stock rlaunch rapidfire workers
"""

from __future__ import annotations

import collections
import math
import os
import shutil
import signal
import sys
import tempfile
import time
import uuid
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")  # bulk_add_wfs draws a progress bar (read when tqdm is imported)
sys.path.insert(0, str(Path(__file__).resolve().parent))
import _bench  # noqa: E402
import dispatch_latency  # noqa: E402
from load_task import COLLECTION, RecordExecution  # noqa: E402

DB_NAME = "load"
ACTIVE = ("WAITING", "READY", "RESERVED", "RUNNING")
BENCH = Path(__file__).resolve().parent


def job_firework(name: str, seconds: float = 0.0):
    """A Firework that records its execution (``load_task.RecordExecution``) under a job token of its own."""
    from fireworks import Firework

    job = uuid.uuid4().hex
    spec = {"_add_launchpad_and_fw_id": True, "_add_fworker": True, "load": {"job": job}}
    return Firework([RecordExecution(job=job, seconds=seconds)], spec=spec, name=name)


def load_workflows(n: int, per_workflow: int, seconds: float = 0.0) -> list:
    """``n`` independent job Fireworks (``load/<i>``) in workflows of ``per_workflow``."""
    from fireworks import Workflow

    return [Workflow([job_firework(f"load/{i}", seconds) for i in range(w, min(n, w + per_workflow))],
                     name=f"load/wf{w // per_workflow}") for w in range(0, n, per_workflow)]


def campaign_workflow(name: str, priority: int, iterations: int, fan_out: int, seconds: float):
    """A campaign-shaped workflow at ``priority`` (firegen's ``with_priority``): per iteration gate → train ×
    ``fan_out`` → explore × ``fan_out`` → select, each layer after every Firework of the previous one."""
    from fireworks import Workflow

    from firegen.workflows.builders import with_priority

    fws, links, previous = [], {}, []
    for it in range(iterations):
        for kind, width in (("gate", 1), ("train", fan_out), ("explore", fan_out), ("select", 1)):
            layer = [job_firework(f"{name}/it{it:03d}/{kind}{k if width > 1 else ''}", seconds) for k in range(width)]
            for parent in previous:
                links[parent] = layer
            fws += layer
            previous = layer
    return with_priority(Workflow(fws, links_dict=links, name=name), priority)


def queue(lp, workflows: list) -> tuple[float, float]:
    """``bulk_add_wfs`` of ``workflows``, their Fireworks created now; (start, end) of the insert (epoch s)."""
    now = dispatch_latency._utcnow()
    for wf in workflows:
        wf.created_on = now
        for fw in wf.fws:
            fw.created_on = now
    t0 = time.time()
    lp.bulk_add_wfs(workflows)
    return t0, time.time()


def fireworks_of(lp, prefix: str) -> dict[int, dict]:
    """The Fireworks whose name starts with ``prefix``: fw_id -> document."""
    return {d["fw_id"]: d for d in lp.fireworks.find({"name": {"$regex": "^" + prefix}},
                                                      {"fw_id": 1, "name": 1, "state": 1, "spec": 1})}


def wait_until_done(lp, prefix: str, procs, timeout: float, stall: float = 30.0) -> None:
    """Until no Firework of ``prefix`` is WAITING, READY, RESERVED or RUNNING (poll 0.5 s). Stops early (the
    counts then show what was left) when every worker has exited, when only WAITING ones have been left for
    ``stall`` seconds (their parents are done: a refresh was lost), or after ``timeout`` seconds."""
    deadline, moving = time.time() + timeout, time.time()
    while time.time() < deadline:
        states = collections.Counter(d["state"] for d in lp.fireworks.find(
            {"name": {"$regex": "^" + prefix}, "state": {"$in": list(ACTIVE)}}, {"state": 1}))
        if not states:
            return
        if states.keys() - {"WAITING"}:
            moving = time.time()
        elif time.time() - moving > stall:
            print(f"{states['WAITING']} Fireworks of {prefix} left WAITING with nothing READY or RUNNING for "
                  f"{stall:.0f} s", file=sys.stderr)
            return
        if all(p.poll() is not None for p in procs):
            print(f"every worker exited with {sum(states.values())} Fireworks still to run", file=sys.stderr)
            return
        time.sleep(0.5)
    print(f"timeout: Fireworks still to run after {timeout:.0f} s", file=sys.stderr)


def launches_of(lp, fw_ids) -> list[dict]:
    """Launches of ``fw_ids`` (every launch when None) with ``start`` (RUNNING), ``end`` (epoch s) and ``worker``."""
    query = {} if fw_ids is None else {"fw_id": {"$in": sorted(fw_ids)}}
    out = []
    for la in lp.launches.find(query, {"fw_id": 1, "launch_id": 1, "state": 1, "state_history": 1,
                                       "fworker.name": 1, "action": 1}):
        start = next((_bench.epoch(h["created_on"]) for h in la.get("state_history", []) if h["state"] == "RUNNING"),
                     None)
        end = next((_bench.epoch(h["created_on"]) for h in la.get("state_history", [])
                    if h["state"] in ("COMPLETED", "FIZZLED")), None)
        stored = ((la.get("action") or {}).get("stored_data") or {})
        out.append({"fw_id": la["fw_id"], "launch_id": la["launch_id"], "state": la["state"], "start": start,
                    "end": end, "worker": la["fworker"]["name"], "execution": stored.get("execution")})
    return out


def tally(lp, prefix: str) -> dict:
    """Double executions, losses and per-worker counts of the Fireworks named ``prefix...``, from the execution
    records and FireWorks' documents."""
    fws = fireworks_of(lp, prefix)
    job_of = {fw_id: d["spec"]["load"]["job"] for fw_id, d in fws.items()}
    jobs = set(job_of.values())
    records = [r for r in lp.db[COLLECTION].find({}) if r["job"] in jobs]
    runs = collections.Counter(r["job"] for r in records)
    tokens = {r["_id"] for r in records}
    launches = launches_of(lp, fws)
    per_fw = collections.Counter(la["fw_id"] for la in launches)
    completed = {i for i, d in fws.items() if d["state"] == "COMPLETED"}
    done_launch = {la["fw_id"]: la for la in launches if la["state"] == "COMPLETED"}
    not_completed = sorted(set(fws) - completed)
    unrecorded = sorted(i for i in completed if runs[job_of[i]] == 0)
    untraced = sorted(i for i in completed if runs[job_of[i]] and
                      (i not in done_launch or done_launch[i]["execution"] not in tokens))
    doubles = sorted(i for i in fws if runs[job_of[i]] > 1)
    return {"queued": len(fws), "done": len(completed), "jobs": jobs,
            "states": dict(collections.Counter(d["state"] for d in fws.values())),
            "executions": len(records), "double": len(doubles), "extra runs": sum(max(0, c - 1) for c in runs.values()),
            "double fw_ids": doubles, "launches": len(launches), "relaunched": sum(1 for c in per_fw.values() if c > 1),
            "lost": len(set(not_completed) | set(unrecorded) | set(untraced)), "not completed": not_completed,
            "unrecorded": unrecorded, "untraced": untraced,
            "per worker": dict(sorted(collections.Counter(r["worker"] for r in records).items())),
            "last end": max((la["end"] for la in launches if la["end"]), default=math.nan)}


def run_load(lp, procs, args) -> dict:
    """Queue ``args.fireworks`` job Fireworks while the workers poll, wait for them, count (before stopping)."""
    t0, t1 = queue(lp, load_workflows(args.fireworks, args.per_workflow, args.seconds))
    print(f"queued {args.fireworks} Fireworks in {math.ceil(args.fireworks / args.per_workflow)} workflows "
          f"({t1 - t0:.1f} s)", flush=True)
    wait_until_done(lp, "load/", procs, args.timeout)
    return {"t0": t0, "insert s": t1 - t0}


def priority_order(lp, names: list[str], t_queued: tuple[float, float], priority_of: dict | None = None) -> dict:
    """Per campaign (workflow name prefix): when its Fireworks ran, READY → RUNNING waits, and priority inversions
    proven by the times (module docstring). ``priority_of`` (campaign -> priority) replaces the Fireworks'
    ``_priority`` in the count: a control that the count finds inversions where there are some."""
    fws = {}
    for name in names:
        for fw_id, d in fireworks_of(lp, name + "/").items():
            priority = d["spec"].get("_priority", 0) if priority_of is None else priority_of[name]
            fws[fw_id] = {"campaign": name, "priority": priority, "state": d["state"]}
    parents: dict[int, list[int]] = collections.defaultdict(list)
    for wf in lp.workflows.find({"name": {"$in": names}}, {"links": 1}):
        for parent, children in wf["links"].items():
            for child in children:
                parents[int(child)].append(int(parent))
    every = launches_of(lp, None)  # warm-up launches too: each worker's previous launch
    by_worker = collections.defaultdict(list)
    for la in every:
        if la["start"] is not None:
            by_worker[la["worker"]].append(la)
    prev_end, next_start = {}, {}
    for seq in by_worker.values():
        seq.sort(key=lambda la: la["start"])
        for a, b in zip(seq, seq[1:]):
            prev_end[b["launch_id"]], next_start[a["launch_id"]] = a["end"], b["start"]
    launch = {la["fw_id"]: la for la in every if la["fw_id"] in fws and la["state"] == "COMPLETED"}
    q_start, q_end = t_queued
    info = {}
    for fw_id, f in fws.items():
        la = launch.get(fw_id)
        if la is None:
            continue
        ps = [launch.get(p) for p in parents.get(fw_id, [])]
        if not ps:
            ready_lb, ready_ub = q_start, q_end
        elif all(ps):
            ready_lb = max(p["end"] for p in ps)
            ready_ub = max(next_start.get(p["launch_id"], math.inf) for p in ps)
        else:
            continue
        info[fw_id] = {**f, "start": la["start"], "end": la["end"], "wait": la["start"] - ready_lb,
                       "ready_ub": ready_ub, "co_lb": prev_end.get(la["launch_id"], -math.inf)}
    inverted, pairs = set(), 0
    for lo_id, lo in info.items():
        for hi in info.values():
            if hi["priority"] > lo["priority"] and hi["ready_ub"] < lo["co_lb"] and lo["start"] < hi["co_lb"]:
                inverted.add(lo_id)
                pairs += 1
    rows = []
    for name in names:
        mine = [i for i in info.values() if i["campaign"] == name]
        waits = _bench.describe([i["wait"] for i in mine])
        rows.append({"campaign": name, "priority": mine[0]["priority"] if mine else None,
                     "Fireworks": sum(1 for f in fws.values() if f["campaign"] == name),
                     "ran": len(mine), "first start s": min((i["start"] for i in mine), default=math.nan) - q_start,
                     "last end s": max((i["end"] for i in mine), default=math.nan) - q_start,
                     "wait mean s": waits["mean"], "wait p95 s": waits["p95"], "wait max s": waits["max"],
                     "inversions": sum(1 for i in inverted if info[i]["campaign"] == name)})
    return {"rows": rows, "inversions": len(inverted), "inverted pairs": pairs,
            "not completed": sorted(i for i, f in fws.items() if f["state"] != "COMPLETED")}


def run_priority(lp, procs, args) -> dict:
    """Queue the two campaign-shaped workflows together, wait for them, measure the order they ran in; with
    ``args.alone``, first each campaign alone on the same workers (when it ends without the other)."""
    priorities = [int(p) for p in str(args.priorities).split(",")]
    names = [f"camp-p{p}" for p in priorities]

    def run(which: list[int]) -> tuple[dict, tuple[float, float]]:
        wfs = [campaign_workflow(names[i], priorities[i], args.iterations, args.fan_out, args.campaign_seconds)
               for i in which]
        t = queue(lp, wfs)
        print(f"queued {' and '.join(names[i] for i in which)}: {len(wfs[0].fws)} Fireworks each", flush=True)
        for i in which:
            wait_until_done(lp, names[i] + "/", procs, args.timeout)
        return priority_order(lp, [names[i] for i in which], t), t

    alone = {}
    for i in range(2) if args.alone else []:
        alone[names[i]] = run([i])[0]["rows"][0]
        clear(lp, names[i] + "/")
        dispatch_latency.warm_up(lp, procs)  # each worker's previous launch, for the checkout bounds
    out, t = run([0, 1])
    for row in out["rows"]:
        row["alone last end s"] = alone.get(row["campaign"], {}).get("last end s")
    out["names"], out["queued"] = names, t
    out["tally"] = {name: tally(lp, name + "/") for name in names}
    return out


def clear(lp, prefix: str) -> None:
    """Remove the Fireworks, workflows and launches of ``prefix`` (before the next scenario: a LaunchPad as small as
    a campaign's, which firegen keeps small by archiving finished iterations)."""
    ids = sorted(fireworks_of(lp, prefix))
    lp.launches.delete_many({"fw_id": {"$in": ids}})
    lp.workflows.delete_many({"name": {"$regex": "^" + prefix}})
    lp.fireworks.delete_many({"fw_id": {"$in": ids}})


def run_benchmark(args, inspect=None) -> dict:
    """Database, LaunchPad, workers (warmed up), then the scenarios of ``args.scenario``; the results by scenario.
    ``inspect(lp, results)``, when given, runs after the workers stopped, before the database does."""
    env = {"PYTHONPATH": os.pathsep.join([str(BENCH)] + [p for p in [os.environ.get("PYTHONPATH")] if p])}
    if args.no_write_lock:  # a control: the workers see no registered server, so nothing serializes their updates
        env["FIREGEN_LOCK_DIR"] = tempfile.mkdtemp(prefix="firegen-no-locks-")
    results = {}
    with dispatch_latency.launchpad_and_workers("firegen-load-", args.workers, args.launcher, args.sleep, args.keep,
                                                env) as (lp, procs, server):
        warm = dispatch_latency.warm_up(lp, procs)
        print(f"{args.workers} {args.launcher} workers started and warmed up in {warm:.1f} s "
              f"(FerretDB {server.uri})", flush=True)
        if args.scenario in ("load", "both"):
            run = run_load(lp, procs, args)
            t = tally(lp, "load/")  # the workers are idle: nothing of load/ is left to run
            t["wall s"] = t["last end"] - run["t0"]
            t["throughput"] = t["done"] / t["wall s"] if t["wall s"] > 0 else math.nan
            t["insert s"] = run["insert s"]
            results["load"] = t
            clear(lp, "load/")
            dispatch_latency.warm_up(lp, procs)  # each worker's previous launch, for the checkout bounds
        if args.scenario in ("priority", "both"):
            results["priority"] = run_priority(lp, procs, args)
        results["workers exited early"] = [p.returncode for p in procs if p.poll() is not None]
        dispatch_latency.stop_workers(procs)
        if "load" in results:  # again after the workers stopped: a late second run would show now
            jobs = results["load"]["jobs"]
            after = sum(1 for r in lp.db[COLLECTION].find({}, {"job": 1}) if r["job"] in jobs)
            results["load"]["late executions"] = after - results["load"]["executions"]
        if inspect is not None:
            inspect(lp, results)
    if args.no_write_lock:
        shutil.rmtree(env["FIREGEN_LOCK_DIR"], ignore_errors=True)
    return results


def print_load(t: dict, args) -> None:
    print(f"\nload: {t['queued']} Fireworks, {args.workers} {args.launcher} workers, {args.per_workflow} per workflow, "
          f"task {args.seconds:g} s")
    rows = [("Fireworks queued", t["queued"]), ("Fireworks done (COMPLETED)", t["done"]),
            ("executions (records)", t["executions"]),
            ("  of them after the queue was empty", t.get("late executions", 0)),
            ("double executions (Fireworks run twice or more)", t["double"]), ("  extra runs", t["extra runs"]),
            ("Fireworks launched more than once", t["relaunched"]),
            ("lost (not COMPLETED, no record, or its launch's result not recorded)", t["lost"]),
            ("wall s (insert start -> last launch end)", f"{t['wall s']:.1f}"),
            ("throughput Fireworks/s", f"{t['throughput']:.2f}")]
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"  {k.ljust(width)}  {v}")
    if t["lost"]:
        print(f"  not COMPLETED {t['not completed'][:20]}, no record {t['unrecorded'][:20]}, "
              f"record does not match the launch {t['untraced'][:20]}; states {t['states']}")
    if t["double"]:
        print(f"  run twice or more: fw_ids {t['double fw_ids'][:20]}")
    print()
    print(_bench.render([{"worker": w, "executions": n, "share %": 100.0 * n / max(t["executions"], 1)}
                         for w, n in t["per worker"].items()], ["worker", "executions", "share %"]))


def print_priority(p: dict, args) -> None:
    print(f"\npriority: 2 campaigns of {args.iterations} iterations (gate, train x {args.fan_out}, explore x "
          f"{args.fan_out}, select), {args.campaign_seconds:g} s per Firework, {args.workers} shared workers")
    columns = ["campaign", "priority", "Fireworks", "ran", "first start s", "last end s", "wait mean s",
               "wait p95 s", "wait max s", "inversions"]
    if args.alone:
        columns.insert(6, "alone last end s")
    print(_bench.render(p["rows"], columns, digits=2))
    for name, t in p["tally"].items():
        print(f"  {name}: done {t['done']}, double executions {t['double']}, lost {t['lost']}")
    print(f"priority inversions (lower-priority Fireworks checked out while a higher-priority one was READY, proven "
          f"by the times): {p['inversions']} ({p['inverted pairs']} pairs)")


def main(argv=None) -> int:
    p = _bench.arg_parser(__doc__)
    p.add_argument("--workers", type=int, default=8, help="worker processes (default 8)")
    p.add_argument("--fireworks", type=int, default=500, help="Fireworks of the load scenario (default 500)")
    p.add_argument("--per-workflow", type=int, default=10, help="load: Fireworks per workflow (default 10)")
    p.add_argument("--seconds", type=float, default=0.0, help="load: seconds each Firework sleeps (default 0)")
    p.add_argument("--launcher", choices=["firegen", "rlaunch"], default="firegen",
                   help="firegen's worker loop (default) or stock `rlaunch rapidfire`")
    p.add_argument("--sleep", type=float, help="seconds between polls when idle (default 0.5 firegen, 1 rlaunch)")
    p.add_argument("--scenario", choices=["load", "priority", "both"], default="both")
    p.add_argument("--priorities", default="10,0", help="the two campaigns' priorities (default 10,0)")
    p.add_argument("--iterations", type=int, default=4, help="priority: iterations per campaign (default 4)")
    p.add_argument("--fan-out", type=int, default=6, help="priority: train and explore Fireworks per iteration (6)")
    p.add_argument("--campaign-seconds", type=float, default=0.5, help="priority: seconds per Firework (0.5)")
    p.add_argument("--alone", action="store_true", help="priority: first run each campaign alone on the same "
                                                         "workers, for its end without the other")
    p.add_argument("--timeout", type=float, default=3600, help="give up waiting after this many seconds per scenario")
    p.add_argument("--no-write-lock", action="store_true",
                   help="a control: the workers run without firegen's host-wide write lock (db/embedded/write_lock.py)")
    p.add_argument("--keep", action="store_true", help="keep the temporary folder (worker logs, database)")
    args = p.parse_args(argv)
    if args.sleep is None:
        args.sleep = 0.5 if args.launcher == "firegen" else 1
    if args.launcher == "rlaunch" and (args.sleep < 1 or args.sleep != int(args.sleep)):
        p.error("--sleep must be a whole number of seconds >= 1 for rlaunch")
    if min(args.workers, args.fireworks, args.per_workflow, args.iterations, args.fan_out) < 1:
        p.error("--workers, --fireworks, --per-workflow, --iterations and --fan-out must be >= 1")
    if len(str(args.priorities).split(",")) != 2 or len(set(str(args.priorities).split(","))) != 2:
        p.error("--priorities takes two different whole numbers, e.g. 10,0")
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    t = time.time()
    results = run_benchmark(args)
    if "load" in results:
        print_load(results["load"], args)
    if "priority" in results:
        print_priority(results["priority"], args)
    if results["workers exited early"]:
        print(f"\nworkers that exited before the end (exit codes): {results['workers exited early']}")
    print(f"\nwhole run {time.time() - t:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
