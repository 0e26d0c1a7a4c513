#!/usr/bin/env python
"""How much of a campaign's wall time is science, and how much is firegen + FireWorks around it.

Runs a small real campaign (ASE EMT labels on fcc Cu, real ``dp train``, real LAMMPS) with
``firegen run`` in a fresh temporary folder with its own embedded FerretDB, then reads that
database and prints, per iteration and in total:

* **wall s** -- the row's span on the clock. Rows tile the campaign without gaps: ``init`` runs
  from the start of the init Firework to the first launch start of iteration 0's train Fireworks;
  iteration *i* runs from the first launch start of its train Fireworks to the first launch start
  of iteration *i+1*'s (the last one: to the end of its last Firework). So a row holds its train,
  explore and select Fireworks, then the label Fireworks of the configurations its select picked
  (they carry ``iteration=i`` and their seconds are in iteration *i*'s ``timings.label_s``), then
  the dispatch gap before the next training. ``t->sel s`` is the narrower span first train start
  -> end of the select Firework.
* **train / explore / label s** -- the iteration document's ``timings`` (seconds the tasks
  measured inside ``dp train`` + ``dp freeze``, inside LAMMPS, inside the labeler), summed over
  the row's tasks. The init row's labels carry no iteration document; their seconds come from the
  label launches' ``stored_data.seconds``.
* **science s** = train + explore + label (a sum: tasks could overlap on the two workers).
* **overhead s** = wall - science, and **overhead %** of wall.
* **idle s** -- time in the row when no Firework of the campaign was running at all (the union of
  launch intervals, subtracted from wall): worker polling sleeps, checkout, dispatch latency.
* **in-FW s** -- the row's Fireworks' launch runtimes minus their science seconds: firegen's own
  work inside the Fireworks (imports, database reads/writes, GridFS, model evaluation, writing
  training data, FireWorks' own bookkeeping inside a launch).
  overhead = idle + in-FW - overlap (overlap: time two Fireworks ran at once).
* **select s** -- the iteration's ``timings.select_s`` (firegen's own work, counted as overhead;
  the last iteration has none: SelectTask stores it only when the campaign goes on).

Two more tables follow: per Firework kind (launches, runtime, science, in-FW overhead) and the
idle gaps grouped by hand-off (which kind ended -> which kind started next, on the same worker or
the other one), and one line on the ``firegen run`` process's time before the first and after the
last launch (database start, submit, worker start-up; final poll and shutdown).

Usage (from the repository root; figures are printed, nothing is asserted)::

    .venv/bin/python benchmarks/overhead.py --quick
    .venv/bin/python benchmarks/overhead.py --committee 2 --numb-steps 150 --nsteps 300 \\
        --temperatures 900 1500 --max-iterations 2 --repeat 3

Every run gets a fresh folder with its own ``.firegen`` (``FIREGEN_HOME`` and the other database
settings are removed from the environment); its FerretDB is stopped (``firegen db down``) at the
end, also after a failure or Ctrl-C.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _bench  # noqa: E402  (benchmarks/_bench.py: shared helpers)
from firegen.db.launchpad_queries import campaign_fireworks, launches_of  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "configs" / "cu_emt.yaml"
STRUCTURES = REPO / "configs" / "structures"
DB_ENV = ("FIREGEN_HOME", "FIREGEN_MONGO_URI", "FIREGEN_LAUNCHPAD", "FW_CONFIG_FILE")
QUICK = {"committee": 2, "numb_steps": 150, "nsteps": 300, "temperatures": [900.0, 1500.0], "max_iterations": 2}

COLUMNS = ["iteration", "wall s", "train s", "explore s", "label s", "science s", "overhead s", "overhead %",
           "idle s", "in-FW s", "select s", "t->sel s"]
KIND_COLUMNS = ["kind", "launches", "runtime s", "science s", "in-FW s", "in-FW s/launch", "min s", "max s"]
HANDOFF_COLUMNS = ["hand-off", "workers", "count", "idle s", "mean s", "max s"]
WORKER = {"init": "cpu", "label": "cpu", "gate": "cpu", "select": "cpu", "train": "gpu", "explore": "gpu"}


# ----------------------------------------------------------------------------------- set-up


def write_config(folder: Path, args) -> Path:
    """Copy the campaign YAML and its structures into ``folder``, with the command line's overrides."""
    cfg = yaml.safe_load(Path(args.config).read_text())
    shutil.copytree(Path(args.config).parent / "structures", folder / "structures")
    if args.committee is not None:
        cfg["committee"]["size"] = args.committee
    if args.numb_steps is not None:
        cfg["committee"]["numb_steps"] = args.numb_steps
    for stage in cfg["stages"]:
        if args.nsteps is not None:
            stage["nsteps"] = args.nsteps
        if args.temperatures is not None:
            stage["temperatures"] = list(args.temperatures)
        if args.max_iterations is not None:
            stage["max_iterations"] = args.max_iterations
        if args.trj_freq is not None:
            stage["trj_freq"] = args.trj_freq
    out = folder / Path(args.config).name
    out.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return out


def clean_env() -> dict:
    env = {k: v for k, v in os.environ.items() if k not in DB_ENV}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def run_campaign(folder: Path, config: Path, args) -> tuple[int, float, float]:
    """``firegen run`` in ``folder``; its output goes to our stdout and to ``folder/firegen-run.log``.

    Returns (exit code, epoch start, epoch end)."""
    cmd = [args.firegen, "run", config.name, "--timeout", str(args.timeout), "--sleep", str(args.sleep)]
    print(f"$ (cd {folder} && {' '.join(cmd)})", flush=True)
    t0 = time.time()
    with open(folder / "firegen-run.log", "w") as log:
        # Its own session, so a Ctrl-C here reaches it once (forwarded below), and SIGINT at its default
        # even when we were started with SIGINT ignored (a background job), so Python turns it into
        # KeyboardInterrupt and `firegen run` stops its two workers in its `finally`.
        proc = subprocess.Popen(cmd, cwd=folder, env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, text=True, start_new_session=True,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        try:
            for line in proc.stdout:
                log.write(line)
                if not args.quiet:
                    print("  | " + line, end="", flush=True)
            proc.wait()
        except BaseException:
            # SIGINT lets `firegen run` stop its two workers (SIGTERM would kill it without its `finally`).
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
                try:
                    proc.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            raise
    return proc.returncode, t0, time.time()


def stop_database(folder: Path, firegen: str) -> None:
    """``firegen db down`` in ``folder``; if the server still lives, SIGTERM its recorded pid."""
    state = folder / ".firegen" / "db" / "server.json"
    pid = None
    try:
        pid = json.loads(state.read_text()).get("pid")
    except (OSError, ValueError):
        pass
    try:
        subprocess.run([firegen, "db", "down"], cwd=folder, env=clean_env(), stdin=subprocess.DEVNULL,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as exc:
        print(f"warning: firegen db down failed in {folder}: {exc}", file=sys.stderr)
    if pid:
        try:
            if b"ferretdb" in Path(f"/proc/{pid}/cmdline").read_bytes():
                os.kill(pid, signal.SIGTERM)
                print(f"warning: FerretDB pid {pid} outlived `firegen db down`; sent SIGTERM", file=sys.stderr)
        except OSError:
            pass


# ----------------------------------------------------------------------------------- reading


def read_database(folder: Path, campaign: str) -> dict:
    import pymongo

    uri = json.loads((folder / ".firegen" / "db" / "server.json").read_text())["uri"]
    client = pymongo.MongoClient(uri, serverSelectionTimeoutMS=10000)
    try:
        db = client["firegen"]
        fws = {d["fw_id"]: d for d in campaign_fireworks(db, campaign,  # live and archived
                                                         {"fw_id": 1, "name": 1, "state": 1, "spec.firegen": 1})}
        launches = launches_of(db, fws, {"fw_id": 1, "launch_id": 1, "state": 1, "time_start": 1, "time_end": 1,
                                         "runtime_secs": 1, "action.stored_data": 1, "fworker.name": 1})
        iterations = {d["index"]: d for d in db.iterations.find({"campaign": campaign})}
        camp = db.campaigns.find_one({"name": campaign}, {"status": 1, "iteration": 1}) or {}
    finally:
        client.close()
    return {"fireworks": fws, "launches": launches, "iterations": iterations, "campaign": camp}


# ----------------------------------------------------------------------------------- analysis


def launch_science(kind: str, info: dict, launch: dict, iterations: dict) -> float:
    """Science seconds of one launch, as its task measured them (0 for init and select)."""
    stored = (launch.get("action") or {}).get("stored_data") or {}
    if kind in ("train", "label"):
        return float(stored.get("seconds") or 0.0)
    if kind == "explore":
        it = iterations.get(info.get("iteration")) or {}
        key = f"{info.get('system')}|c{info.get('condition')}"
        return float(((it.get("explorations") or {}).get(key) or {}).get("md_seconds") or 0.0)
    return 0.0


def analyse(data: dict) -> dict:
    fws, iterations = data["fireworks"], data["iterations"]
    launches = []
    for la in data["launches"]:
        info = fws[la["fw_id"]]["spec"]["firegen"]
        start, end = _bench.epoch(la.get("time_start")), _bench.epoch(la.get("time_end"))
        if start is None:
            continue
        launches.append({"kind": info["kind"], "iteration": info.get("iteration", -1), "start": start, "end": end,
                         "state": la.get("state"), "science": launch_science(info["kind"], info, la, iterations)})
    done = [la for la in launches if la["end"] is not None]
    unfinished = len(launches) - len(done)
    intervals = [(la["start"], la["end"]) for la in done]
    if not done:
        return {"rows": [], "kinds": [], "span": None, "unfinished": unfinished, "launches": launches}

    train_start = {}
    for la in launches:
        if la["kind"] == "train":
            i = la["iteration"]
            train_start[i] = min(train_start.get(i, la["start"]), la["start"])
    order = sorted(train_start)

    def row_of(la) -> str | int:
        return "init" if la["kind"] == "init" or la["iteration"] < 0 else la["iteration"]

    first_start = min(la["start"] for la in launches)
    last_end = max(la["end"] for la in done)
    rows = []
    bounds = [("init", first_start, train_start[order[0]] if order else last_end)]
    for n, i in enumerate(order):
        bounds.append((i, train_start[i], train_start[order[n + 1]] if n + 1 < len(order) else
                       max([la["end"] for la in done if row_of(la) == i] + [train_start[i]])))
    for name, lo, hi in bounds:
        mine = [la for la in done if row_of(la) == name]
        wall = hi - lo
        if name == "init":
            t = {"train_s": 0.0, "explore_s": 0.0, "select_s": None,
                 "label_s": sum(la["science"] for la in mine if la["kind"] == "label")}
            to_select = None
        else:
            t = {"train_s": 0.0, "explore_s": 0.0, "label_s": 0.0, "select_s": None,
                 **((iterations.get(name) or {}).get("timings") or {})}
            sel_end = [la["end"] for la in mine if la["kind"] == "select"]
            to_select = max(sel_end) - lo if sel_end else None
        science = t["train_s"] + t["explore_s"] + t["label_s"]
        in_fw = sum((la["end"] - la["start"]) - la["science"] for la in mine)
        idle = wall - _bench.union_length(intervals, lo, hi)
        rows.append({"iteration": name, "wall s": wall, "train s": t["train_s"], "explore s": t["explore_s"],
                     "label s": t["label_s"], "science s": science, "overhead s": wall - science,
                     "overhead %": 100 * (wall - science) / wall if wall > 0 else float("nan"), "idle s": idle,
                     "in-FW s": in_fw, "select s": t["select_s"], "t->sel s": to_select,
                     # cross-check: the same science from the launches' stored data
                     "_science_launches": sum(la["science"] for la in mine)})

    kinds = []
    for kind in ("init", "label", "gate", "train", "explore", "select"):
        mine = [la for la in done if la["kind"] == kind]
        if not mine:
            continue
        runtimes = [la["end"] - la["start"] for la in mine]
        inner = [r - la["science"] for r, la in zip(runtimes, mine)]
        kinds.append({"kind": kind, "launches": len(mine), "runtime s": sum(runtimes),
                      "science s": sum(la["science"] for la in mine), "in-FW s": sum(inner),
                      "in-FW s/launch": sum(inner) / len(mine), "min s": min(inner), "max s": max(inner)})
    busy = _bench.union_length(intervals, first_start, last_end)
    overlap = sum(b - a for a, b in intervals) - busy
    return {"rows": rows, "kinds": kinds, "span": (first_start, last_end), "unfinished": unfinished,
            "launches": launches, "overlap": overlap, "handoffs": handoffs(done)}


def handoffs(done: list[dict]) -> list[dict]:
    """Idle gaps (no Firework running) before each launch, grouped by (last kind to end -> next kind).

    They add up to the total idle time. A hand-off within one worker costs FireWorks' checkout and
    workflow refresh; one to the other worker also waits for that worker's next poll (``--sleep``)."""
    groups: dict[tuple, list[float]] = {}
    ordered = sorted(done, key=lambda la: la["start"])
    for k, la in enumerate(ordered[1:], 1):
        before = ordered[:k]
        prev = max(before, key=lambda x: x["end"])
        gap = la["start"] - prev["end"]
        if gap <= 0:
            continue
        key = (f"{prev['kind']} -> {la['kind']}",
               "same" if WORKER.get(prev["kind"]) == WORKER.get(la["kind"]) else "other")
        groups.setdefault(key, []).append(gap)
    return [{"hand-off": h, "workers": w, "count": len(g), "idle s": sum(g), "mean s": sum(g) / len(g),
             "max s": max(g)} for (h, w), g in sorted(groups.items(), key=lambda kv: -sum(kv[1]))]


def totals(rows: list[dict]) -> dict:
    tot = {"iteration": "total"}
    for c in COLUMNS[1:]:
        if c == "overhead %":
            continue
        vals = [r[c] for r in rows if r[c] is not None]
        tot[c] = sum(vals) if vals else None
    tot["overhead %"] = 100 * tot["overhead s"] / tot["wall s"] if tot["wall s"] else float("nan")
    return tot


# ----------------------------------------------------------------------------------- printing


def fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.1f}"
    return str(v)


def render(rows: list[dict], columns: list[str]) -> str:
    cells = [[fmt(r[c]) for c in columns] for r in rows]
    widths = [max([len(c)] + [len(row[k]) for row in cells]) for k, c in enumerate(columns)]
    out = ["  ".join(c.rjust(w) for c, w in zip(columns, widths)),
           "  ".join("-" * w for w in widths)]
    out += ["  ".join(v.rjust(w) for v, w in zip(row, widths)) for row in cells]
    return "\n".join(out)


def report(result: dict, data: dict, code: int, run_span: tuple[float, float]) -> dict | None:
    rows = result["rows"]
    camp = data["campaign"]
    print(f"\ncampaign status {camp.get('status')}, last iteration {camp.get('iteration')}; "
          f"firegen run exit code {code}; {len(result['launches'])} launches"
          + (f" ({result['unfinished']} unfinished, left out)" if result["unfinished"] else ""))
    if not rows:
        print("no finished launches: nothing to measure")
        return None
    engines = sorted({e.get("engine", "?") for it in data["iterations"].values()
                      for e in (it.get("explorations") or {}).values()})
    print(f"exploration engine(s): {', '.join(engines) or '-'}")
    tot = totals(rows)
    print()
    print(render(rows + [tot], COLUMNS))
    print()
    print(render(result["kinds"], KIND_COLUMNS))
    print()
    print(render(result["handoffs"], HANDOFF_COLUMNS))
    first, last = result["span"]
    print(f"\ndecomposition of the total overhead {tot['overhead s']:.1f} s: idle (no Firework running) "
          f"{tot['idle s']:.1f} s + inside Fireworks {tot['in-FW s']:.1f} s - overlap of Fireworks "
          f"{result['overlap']:.1f} s")
    for r in rows:
        gap = abs(r["science s"] - r["_science_launches"])
        if gap > 0.05:
            print(f"note: row {r['iteration']}: science from the iteration document {r['science s']:.2f} s, "
                  f"from the launches' stored data {r['_science_launches']:.2f} s")
    t0, t1 = run_span
    print(f"`firegen run` process {t1 - t0:.1f} s: {first - t0:.1f} s before the first launch (database start, "
          f"submit, worker start-up), campaign {last - first:.1f} s, {t1 - last:.1f} s after the last launch ended "
          "(progress poll, worker shutdown, final table)")
    return tot


def one_run(args, k: int) -> dict | None:
    folder = Path(tempfile.mkdtemp(prefix="firegen-overhead-"))
    print(f"\n=== run {k + 1}/{args.repeat} in {folder}", flush=True)
    tot = None
    try:
        config = write_config(folder, args)
        code, t0, t1 = run_campaign(folder, config, args)
        campaign = yaml.safe_load(config.read_text())["name"]
        data = read_database(folder, campaign)
        result = analyse(data)
        tot = report(result, data, code, (t0, t1))
        if tot is not None:
            tot["_code"] = code
    finally:
        stop_database(folder, args.firegen)
        if args.keep:
            print(f"kept {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)
    return tot


def main(argv=None) -> int:
    p = _bench.arg_parser(__doc__)
    p.add_argument("--config", default=str(CONFIG), help="campaign YAML (its structures/ folder is copied too)")
    p.add_argument("--firegen", default=str(REPO / ".venv" / "bin" / "firegen"), help="the firegen CLI to run")
    p.add_argument("--quick", action="store_true",
                   help="committee 2, numb_steps 150, nsteps 300, temperatures 900 1500, max_iterations 2 "
                        "(explicit options win)")
    p.add_argument("--committee", type=int, help="committee size")
    p.add_argument("--numb-steps", type=int, help="training steps per member")
    p.add_argument("--nsteps", type=int, help="MD steps per exploration")
    p.add_argument("--temperatures", type=float, nargs="+", help="temperature ladder (K)")
    p.add_argument("--max-iterations", type=int, help="max_iterations of every stage")
    p.add_argument("--trj-freq", type=int, help="frame interval of the MD")
    p.add_argument("--sleep", type=float, default=0.5, help="worker poll interval, passed to firegen run (s)")
    p.add_argument("--timeout", type=float, default=1800, help="firegen run --timeout (s)")
    p.add_argument("--repeat", type=int, default=1, help="run the campaign N times, each in a fresh folder")
    p.add_argument("--keep", action="store_true", help="keep the temporary folders (logs, launcher dirs)")
    p.add_argument("--quiet", action="store_true", help="do not echo firegen run's output")
    args = p.parse_args(argv)
    # SIGTERM (kill, a CI timeout): unwind like Ctrl-C, so the campaign and its FerretDB are stopped.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    if args.quick:
        for key, value in QUICK.items():
            if getattr(args, key) is None:
                setattr(args, key, value)
    if args.sleep < 0.05:
        p.error("--sleep must be at least 0.05 s (firegen run's lower bound)")
    if not Path(args.firegen).exists():
        p.error(f"{args.firegen} not found (run scripts/bootstrap.sh, or pass --firegen)")

    results = []
    for k in range(args.repeat):
        results.append(one_run(args, k))
    ok = [r for r in results if r is not None]
    if args.repeat > 1 and ok:
        pct = [r["overhead %"] for r in ok]
        idle = [100 * r["idle s"] / r["wall s"] for r in ok]
        wall = [r["wall s"] for r in ok]
        print(f"\n=== {len(ok)} of {args.repeat} runs measured")
        print(f"total overhead %: median {statistics.median(pct):.1f}, min {min(pct):.1f}, max {max(pct):.1f}, "
              f"spread {max(pct) - min(pct):.1f}" + (f", stdev {statistics.stdev(pct):.1f}" if len(pct) > 1 else ""))
        print(f"idle %:           median {statistics.median(idle):.1f}, min {min(idle):.1f}, max {max(idle):.1f}")
        print(f"campaign wall s:  median {statistics.median(wall):.1f}, min {min(wall):.1f}, max {max(wall):.1f}")
    return 0 if len(ok) == args.repeat and all(r["_code"] == 0 for r in ok) else 1


if __name__ == "__main__":
    sys.exit(main())
