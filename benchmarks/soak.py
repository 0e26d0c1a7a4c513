#!/usr/bin/env python
"""A seed-scale campaign on one machine: the Table S1 schedule end to end on the embedded database.

Runs ``configs/cu_defects_soak.yaml`` (16 iterations: 8 NPT over a 4 x 4 T/P ladder, 8 NVT, one
defect structure per iteration, at most 300 labels each, a committee of 4; EMT labels) in a fresh
folder with its own embedded FerretDB, ``--gpu`` (default 2) gpu and ``--cpu`` (default 2) cpu
workers (``firegen worker``'s loop, with every database command traced: ``soak_worker.py``), and
prints per iteration:

* **launches**: Fireworks launched for the iteration (its train, explore, select, and the label and
  gate Fireworks of the configurations it picked, as ``benchmarks/overhead.py`` groups them);
* **db ms/launch**: database time per launch: the commands a worker sent while the launch ran
  (FireWorks' pings, completion and workflow refresh; the task's reads and writes) plus the
  checkout that handed it the Firework (its last ``findAndModify`` on ``fireworks`` before the start);
* **poll ms**: the median duration of an idle worker's poll (a ``findAndModify`` on ``fireworks``
  that handed out nothing): what every idle worker pays twice a second;
* **overhead %**, **idle s**: wall time that is not science, and time no Firework ran at all
  (``benchmarks/overhead.py``'s rows);
* **gpu idle %**: the gpu workers' time without a launch of their own, share of the row's wall;
* **db MiB**: size of the embedded database's files (live LaunchPad, archive, results) at the row's end.

Then the wall time of ``firegen status``, of both provenance queries and of ``firegen export data``,
the two goals (db ms/launch at iteration 15 within 1.5x of iteration 1; overhead <= 5 % of the
soak's wall) and a figure (``--figure``, PNG): per-launch database time and idle poll time over the
iterations. Nothing is asserted.

Usage (from the repository root; about an hour on 2 cores)::

    .venv/bin/python benchmarks/soak.py --figure benchmarks/soak.png
    .venv/bin/python benchmarks/soak.py --stages 2 --keep     # the first 2 iterations only (a harness check)
"""

from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _bench  # noqa: E402
import overhead  # noqa: E402  (its rows: wall, science, overhead, idle per iteration)
from firegen.campaign.records import CAMPAIGN_ENDED  # noqa: E402
from firegen.launchers.local import stop_workers  # noqa: E402


CONFIG = _bench.REPO / "configs" / "cu_defects_soak.yaml"
HERE = Path(__file__).resolve().parent
FIREGEN = Path(sys.executable).parent / "firegen"  # of the environment this runs in
ACTIVE = {"READY", "RESERVED", "RUNNING", "WAITING"}


# ------------------------------------------------------------------------------------------- run
def prepare(folder: Path, stages: int | None) -> Path:
    """The soak config (and its structures) in ``folder``; ``stages``: keep the first ones only."""
    shutil.copytree(CONFIG.parent / "structures", folder / "structures")
    cfg = yaml.safe_load(CONFIG.read_text())
    if stages:
        cfg["stages"] = cfg["stages"][:stages]
    path = folder / CONFIG.name
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def soak_env(folder: Path) -> dict:
    """The environment of every command and worker: no inherited database, ``FIREGEN_HOME`` in ``folder``."""
    return {**overhead.clean_env(), "FIREGEN_HOME": str(folder / ".firegen")}


def firegen(folder: Path, *args, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run([str(FIREGEN), *args], cwd=folder, env=soak_env(folder),
                          capture_output=True, text=True, check=check, timeout=3600)


def start_workers(folder: Path, n_gpu: int, n_cpu: int, sleep: float) -> dict[str, subprocess.Popen]:
    """``n_gpu`` + ``n_cpu`` traced workers, named ``gpu0``, ``cpu0``, ...; each writes ``trace-<name>.tsv``."""
    from firegen.launchers.local import worker_env, write_fworker

    lp_file = folder / "my_launchpad.yaml"
    workers = {}
    for kind, n in (("gpu", n_gpu), ("cpu", n_cpu)):
        for k in range(n):
            name = f"{kind}{k}"
            wdir = folder / "workers" / name
            wdir.mkdir(parents=True)
            fworker = write_fworker(kind, lp_file, wdir, name=name)
            env = {**worker_env(lp_file), **soak_env(folder), "OMP_NUM_THREADS": "1",
                   "FIREGEN_BLOB_CACHE": str(folder / ".firegen" / "cache" / "blobs")}
            with open(wdir / "worker.log", "w") as log:
                workers[name] = subprocess.Popen(
                    [sys.executable, str(HERE / "soak_worker.py"), str(folder / f"trace-{name}.tsv"), "-l",
                     str(lp_file), "-w", str(fworker), "--kind", kind, "--sleep", str(sleep)],
                    cwd=wdir, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    return workers


def database_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in (folder / ".firegen" / "db" / "data").glob("*.sqlite*"))


def follow(folder: Path, name: str, workers: dict, timeout: float) -> tuple[int, list[tuple[float, int]]]:
    """Poll until the campaign ends; returns (0 or 1, [(epoch, database bytes)] every 5 s)."""
    import pymongo

    uri = yaml.safe_load((folder / "my_launchpad.yaml").read_text())["host"]
    db = pymongo.MongoClient(uri, serverSelectionTimeoutMS=10000).get_default_database()
    sizes, last, t0 = [], None, time.time()
    try:
        while time.time() - t0 < timeout:
            sizes.append((time.time(), database_bytes(folder)))
            doc = db.campaigns.find_one({"name": name}, {"status": 1, "iteration": 1, "stop_reason": 1}) or {}
            states = {}
            for fw in db.fireworks.find({"spec.firegen.campaign": name}, {"state": 1}):
                states[fw["state"]] = states.get(fw["state"], 0) + 1
            live = dict(sorted(states.items()))
            line = f"{doc.get('status')} iteration {doc.get('iteration')}; live Fireworks {live}"
            if line != last:
                print(f"  [{time.time() - t0:6.0f} s] {line}", flush=True)
                last = line
            if states.get("FIZZLED") or doc.get("status") in ("failed", "stopped"):
                print(f"the campaign did not go on: {doc.get('stop_reason') or 'a Firework fizzled'}", file=sys.stderr)
                return 1, sizes
            if doc.get("status") in CAMPAIGN_ENDED and not any(states.get(s) for s in ACTIVE):
                return 0, sizes
            dead = [w for w, p in workers.items() if p.poll() is not None]
            if dead:
                print(f"worker {dead[0]} exited", file=sys.stderr)
                return 1, sizes
            time.sleep(5)
        print(f"the soak did not finish within {timeout:.0f} s", file=sys.stderr)
        return 1, sizes
    finally:
        db.client.close()


def timed(folder: Path, *args) -> float:
    t0 = time.perf_counter()
    firegen(folder, *args)
    return time.perf_counter() - t0


# --------------------------------------------------------------------------------------- analysis
FIREWORKS_COLLECTIONS = {"fireworks", "launches", "workflows", "fw_id_assigner"}


def read_traces(folder: Path) -> dict[str, list[tuple[float, float, str, str, str]]]:
    """Per worker name: its commands as (start epoch, duration s, command, collection, filter keys), in order."""
    out = {}
    for path in folder.glob("trace-*.tsv"):
        rows = []
        for line in path.read_text().splitlines():
            start, duration, name, collection, _, keys = line.split("\t")
            rows.append((float(start), float(duration), name, collection, keys))
        out[path.stem.removeprefix("trace-")] = sorted(rows)
    return out


def _is_ready_query(name: str, collection: str, keys: str) -> bool:
    """FireWorks asking for READY work: rapidfire's ``run_exists`` (a find) or the checkout (a findAndModify)."""
    return collection == "fireworks" and name in ("find", "findAndModify") and "state" in keys.split(",")


def launch_db_seconds(launch: dict, commands: list[tuple]) -> tuple[float, float]:
    """(all, FireWorks' own) database seconds of one launch: the commands its worker sent while it ran,
    plus the checkout that handed it over (the READY queries within 1 s before its start)."""
    start, end = launch["start"], launch["end"]
    mine = [c for c in commands if start <= c[0] <= end or (start - 1 <= c[0] < start and _is_ready_query(*c[2:]))]
    return sum(c[1] for c in mine), sum(c[1] for c in mine if c[3] in FIREWORKS_COLLECTIONS)


def idle_polls(commands: list[tuple], launches: list[dict]) -> list[tuple[float, float]]:
    """(start, duration) of an idle worker's polls: READY queries with no launch of this worker starting
    within 1 s after (what every idle worker pays every ``--sleep`` seconds)."""
    starts = sorted(la["start"] for la in launches)
    out = []
    for t, d, name, coll, keys in commands:
        if _is_ready_query(name, coll, keys):
            nxt = next((s for s in starts if s >= t), None)
            if nxt is None or nxt - t > 1:
                out.append((t, d))
    return out


def per_iteration(data: dict, result: dict, traces: dict, sizes: list[tuple[float, int]]) -> list[dict]:
    """The printed rows: overhead.py's rows (their spans and idle time) joined with the traced database time
    and sizes. With several workers science runs in parallel, so a row's science is the union of its
    launches' science intervals (each placed at the end of its launch: a task fetches its inputs first),
    and overhead % = 1 - that union / wall."""
    launches = []
    for la in data["launches"]:
        info = data["fireworks"][la["fw_id"]]["spec"]["firegen"]
        start, end = _bench.epoch(la.get("time_start")), _bench.epoch(la.get("time_end"))
        if start is None or end is None:
            continue
        worker = (la.get("fworker") or {}).get("name")
        it = info.get("iteration", -1)
        science = min(overhead.launch_science(info["kind"], info, la, data["iterations"]), end - start)
        launches.append({"kind": info["kind"], "row": "init" if info["kind"] == "init" or it < 0 else it,
                         "start": start, "end": end, "worker": worker, "science": (end - science, end)})
    by_worker: dict[str, list[dict]] = {}
    for la in launches:
        by_worker.setdefault(la["worker"], []).append(la)
        la["db"], la["fw"] = launch_db_seconds(la, traces.get(la["worker"], []))
    polls = [p for w, cmds in traces.items() for p in idle_polls(cmds, by_worker.get(w, []))]
    rows, t = [], 0.0
    for r in result["rows"]:
        mine = [la for la in launches if la["row"] == r["iteration"]]
        lo = min((la["start"] for la in mine), default=t)
        hi = lo + r["wall s"]
        t = hi
        row_polls = [d for s, d in polls if lo <= s < hi]
        gpu_busy = [_bench.union_length([(la["start"], la["end"]) for la in by_worker.get(w, [])], lo, hi)
                    for w in by_worker if w and w.startswith("gpu")]
        size = next((b for s, b in sizes if s >= hi), sizes[-1][1] if sizes else 0)
        science = _bench.union_length([la["science"] for la in launches], lo, hi)
        rows.append({"iteration": r["iteration"], "launches": len(mine), "wall s": r["wall s"],
                     "db ms/launch": 1000 * statistics.fmean([la["db"] for la in mine]) if mine else None,
                     "fw ms/launch": 1000 * statistics.fmean([la["fw"] for la in mine]) if mine else None,
                     "poll ms": 1000 * statistics.median(row_polls) if row_polls else None,
                     "overhead %": 100 * (1 - science / r["wall s"]) if r["wall s"] > 0 else None,
                     "idle s": r["idle s"], "_science": science,
                     "gpu idle %": (100 * (1 - sum(gpu_busy) / (len(gpu_busy) * r["wall s"]))
                                    if gpu_busy and r["wall s"] > 0 else None),
                     "db MiB": size / 2**20})
    return rows


COLUMNS = ["iteration", "launches", "wall s", "db ms/launch", "fw ms/launch", "poll ms", "overhead %", "idle s",
           "gpu idle %", "db MiB"]


def figure(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    its = [r for r in rows if isinstance(r["iteration"], int)]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot([r["iteration"] for r in its], [r["db ms/launch"] for r in its], "o-", label="database time per launch")
    ax.plot([r["iteration"] for r in its], [r["fw ms/launch"] for r in its], "^-",
            label="of it, FireWorks' collections (checkout, pings, refresh)")
    polled = [r for r in its if r["poll ms"] is not None]
    ax.plot([r["iteration"] for r in polled], [r["poll ms"] for r in polled], "s--", label="an idle poll (median)")
    ax.set_xlabel("iteration")
    ax.set_ylabel("ms")
    ax.set_ylim(bottom=0)
    ax.set_title("soak: per-launch database time on the embedded FerretDB")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"figure: {path}")


def report(folder: Path, name: str, wall: float | None, sizes: list[tuple[float, int]],
           figure_path: Path | None) -> None:
    """Read the soak's database and traces; print the tables and the goals; draw the figure."""
    data = overhead.read_database(folder, name)
    result = overhead.analyse(data)
    rows = per_iteration(data, result, read_traces(folder), sizes)
    print(f"\ncampaign {name}: status {data['campaign'].get('status')}, {len(data['iterations'])} iterations, "
          f"{sum(r['launches'] for r in rows)} launches" + (f", wall {wall:.0f} s (submit to the end)" if wall else ""))
    print(_bench.render(rows, COLUMNS))
    model_id, config_id = _ids(folder, name)
    queries = {"firegen status": timed(folder, "status", name),
               "provenance model": timed(folder, "provenance", "model", model_id),
               "provenance config": timed(folder, "provenance", "config", config_id),
               "export data": timed(folder, "export", "data", "--campaign", name, "-o", str(folder / "export"))}
    print("\n" + "\n".join(f"{k:18s} {v:6.2f} s" for k, v in queries.items()))
    its = [r for r in rows if isinstance(r["iteration"], int)]
    if len(its) >= 3:
        for column in ("db ms/launch", "fw ms/launch", "poll ms"):
            ratio = its[-1][column] / its[1][column]
            print(f"{column}, iteration {its[-1]['iteration']} / iteration {its[1]['iteration']}: {ratio:.2f} "
                  f"(goal <= 1.5: {'met' if ratio <= 1.5 else 'not met'})")
    wall_rows = sum(r["wall s"] for r in rows)
    share = 100 * (1 - sum(r["_science"] for r in rows) / wall_rows) if wall_rows else float("nan")
    print(f"overhead over the whole soak: {share:.1f} % of {wall_rows:.0f} s "
          f"(goal <= 5 %: {'met' if share <= 5 else 'not met'})")
    if figure_path:
        figure(rows, figure_path)


def main(argv=None) -> int:
    p = _bench.arg_parser(__doc__)
    p.add_argument("--gpu", type=int, default=2, help="gpu workers (default 2)")
    p.add_argument("--cpu", type=int, default=2, help="cpu workers (default 2)")
    p.add_argument("--sleep", type=float, default=0.5, help="workers' idle poll (s)")
    p.add_argument("--stages", type=int, default=None, help="run only the first N iterations (harness check)")
    p.add_argument("--timeout", type=float, default=3 * 3600)
    p.add_argument("--figure", type=Path, default=None, help="write the figure here (PNG)")
    p.add_argument("--keep", action="store_true", help="keep the run folder")
    p.add_argument("--analyse", type=Path, default=None, help="report on a kept run folder instead of running")
    args = p.parse_args(argv)
    if args.analyse:
        folder = args.analyse.resolve()
        firegen(folder, "db", "up")
        try:
            sizes = json.loads((folder / "sizes.json").read_text()) if (folder / "sizes.json").is_file() else []
            report(folder, yaml.safe_load(CONFIG.read_text())["name"], None, sizes, args.figure)
        finally:
            overhead.stop_database(folder, str(FIREGEN))
        return 0
    folder = Path(tempfile.mkdtemp(prefix="firegen-soak-"))
    print(f"soak in {folder}", flush=True)
    workers: dict = {}
    try:
        config = prepare(folder, args.stages)
        name = yaml.safe_load(config.read_text())["name"]
        firegen(folder, "db", "up")
        workers = start_workers(folder, args.gpu, args.cpu, args.sleep)
        t0 = time.time()
        firegen(folder, "submit", config.name)
        code, sizes = follow(folder, name, workers, args.timeout)
        wall = time.time() - t0
        stop_workers(workers.values(), wait_s=60)
        (folder / "sizes.json").write_text(json.dumps(sizes))
        report(folder, name, wall, sizes, args.figure)
        return code
    finally:
        stop_workers(workers.values(), wait_s=60)
        overhead.stop_database(folder, str(FIREGEN))
        if args.keep:
            print(f"kept {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)


def _ids(folder: Path, name: str) -> tuple[str, str]:
    """The latest model's id and a labeled explored configuration's id (for the provenance queries)."""
    import pymongo

    server = json.loads((folder / ".firegen" / "db" / "server.json").read_text())
    client = pymongo.MongoClient(server["uri"], serverSelectionTimeoutMS=10000)
    try:
        db = client["firegen"]
        model = db.models.find_one({"campaign": name}, sort=[("iteration", -1)])
        config = (db.configurations.find_one({"campaign": name, "origin.kind": "explored", "status": "labeled"})
                  or db.configurations.find_one({"campaign": name, "status": "labeled"}))
        return str(model["_id"]), str(config["_id"])
    finally:
        client.close()


if __name__ == "__main__":
    raise SystemExit(main())
