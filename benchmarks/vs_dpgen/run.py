#!/usr/bin/env python
"""The same small campaign through DP-GEN 0.14 and through firegen: wall, science, overhead.

The campaign (``param.json`` + ``machine.json`` in this folder): fcc Cu, 32 atoms; 18 EMT-labeled
initial frames (written by ``make_init_data.py`` at the start of each run); a committee of 4
DeePMD models x 400 training steps; 3 exploration iterations of NVT LAMMPS at 300 and 600 K
(1000 steps of 1 fs, a frame every 10 steps); trust levels 0.15 / 0.35 eV/Å; at most 40 labels
per iteration, by ``emt_label.py`` through DP-GEN's ``custom`` fp style (firegen: its ``command``
labeler).

Each repetition runs both tools, each in a fresh temporary folder, in alternating order
(DP-GEN first in repetitions 1, 3, ...; firegen first in 2, 4, ...):

* **DP-GEN**: ``dpgen run param.json machine.json`` (dpdispatcher ``Shell`` batch, ``local``
  context; one job per step: ``group_size`` puts all tasks of a step in one job, where they run
  one after another, as firegen's single gpu and cpu workers do).
* **firegen**: ``firegen db up``, one ``firegen worker --gpu`` and one ``firegen worker --cpu``
  (FireWorks' rapidfire in a process that preloaded its imports, ``--sleep 0.5``), each warmed up
  with one trivial Firework -- none of this is timed: on a deployment the database and the workers
  are already running (their start-up time is printed) -- then the clock starts and ``firegen submit param.json --machine machine.json``
  queues the campaign; the run ends with the end of the last launch of the campaign, once it has a
  final status and no Firework is left to run.
  ``--firegen-config x.yaml`` submits a firegen YAML instead (to test the harness).

**Science** is timed the same way for both: ``machine.json``'s commands (``dp``, ``lmp``, the
labeling script) are replaced by tiny shell wrappers (``bin/dp``, ``bin/lmp``, ``bin/emt_label`` in
the run folder, also first on ``PATH``, where firegen finds ``dp`` and ``lmp``) that append
``tool start end exit-code subcommand pid cwd`` to ``science.log``. Science in a span = the length
of the union of the wrapped calls' intervals inside it (overlapping calls are counted once).
**Overhead** = wall - science; **overhead %** = overhead / wall.

Rows (each tool's own iteration boundaries; the rows tile the run without gaps):

* ``setup`` -- DP-GEN: process start -> ``iter.000000 task 00`` in ``dpgen.log`` (imports, reading
  the input); firegen: start of ``firegen submit`` -> first start of an iteration-0 train
  Firework (submit, the init Firework importing the initial data, hand-offs).
* iteration *i* -- DP-GEN: ``iter.i task 00`` (make_train) -> ``iter.i+1 task 00``; firegen: first
  train start of *i* -> first train start of *i+1* (train, explore, select, label, hand-offs).
* DP-GEN ends differently from firegen: after the last exploration it labels the candidates and
  trains one more committee, then stops at ``make_model_devi`` (no job left); firegen's last
  ``select`` ends the campaign. The **matched** DP-GEN total stops where firegen's work stops: at
  the end of the last ``post_model_devi`` (the selection), or after the last ``post_fp`` when
  firegen labeled in its last iteration too. The overhead ratio uses the matched total; the
  **full** DP-GEN total (to process exit) is printed too. A ``work`` line per run counts the
  science calls (``dp train``/``freeze``/other, ``lmp``, labels) of each tool.

Usage (from the repository root)::

    .venv/bin/python benchmarks/vs_dpgen/run.py                    # 3 alternating repetitions
    .venv/bin/python benchmarks/vs_dpgen/run.py --repeat 1 --sides dpgen
    .venv/bin/python benchmarks/vs_dpgen/run.py --quick --repeat 1 --firegen-config configs/cu_emt.yaml

``--quick``: 2 models x 100 steps, 300 MD steps at 900 and 1500 K, 2 iterations (for testing).
Nothing is asserted; figures are printed. Every run folder is removed at the end (``--keep``
keeps it) and its FerretDB is stopped, also after a failure, Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import os
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import _bench  # noqa: E402
import make_init_data  # noqa: E402
from firegen.campaign.records import CAMPAIGN_ENDED  # noqa: E402
from firegen.db.launchpad_queries import campaign_fireworks, launches_of  # noqa: E402

REPO = _bench.REPO
TOOLS = ("dp", "lmp", "emt_label")
DB_ENV = ("FIREGEN_HOME", "FIREGEN_MONGO_URI", "FIREGEN_LAUNCHPAD", "FW_CONFIG_FILE")
ACTIVE = {"READY", "RESERVED", "RUNNING", "WAITING"}
DPGEN_STEPS = ("make_train", "run_train", "post_train", "make_model_devi", "run_model_devi", "post_model_devi",
               "make_fp", "run_fp", "post_fp")
QUICK = {"numb_models": 2, "numb_steps": 100, "nsteps": 300, "temps": [900, 1500], "iterations": 2}
COLUMNS = ["row", "wall s", "dp s", "lmp s", "label s", "science s", "overhead s", "overhead %"]
STEP_COLUMNS = ["step", "count", "wall s", "science s", "overhead s", "mean overhead s"]
DPGEN_MARK = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) - INFO : -+iter\.(\d+) task (\d+)-+\s*$")

WRAPPER = """#!/bin/bash
# timing wrapper written by benchmarks/vs_dpgen/run.py: runs {real}, then logs its interval
sub=-
for a in "$@"; do case "$a" in -*) ;; *) sub="$a"; break;; esac; done
t0=$(date +%s.%N)
{real} "$@"
rc=$?
t1=$(date +%s.%N)
echo "{tool} $t0 $t1 $rc $sub $$ $PWD" >> {log}
exit $rc
"""


# ----------------------------------------------------------------------------------- set-up


def write_wrappers(folder: Path, python: str = sys.executable) -> dict[str, Path]:
    """``folder/bin/{dp,lmp,emt_label}``: shell wrappers that log each call to ``folder/science.log``."""
    bindir = folder / "bin"
    bindir.mkdir(parents=True, exist_ok=True)
    venv = Path(python).parent
    real = {"dp": shlex.quote(str(_which("dp", venv))), "lmp": shlex.quote(str(_which("lmp", venv))),
            "emt_label": f"{shlex.quote(python)} {shlex.quote(str(folder / 'emt_label.py'))}"}
    out = {}
    for tool, cmd in real.items():
        path = bindir / tool
        path.write_text(WRAPPER.format(real=cmd, tool=tool, log=shlex.quote(str(folder / "science.log"))))
        path.chmod(0o755)
        out[tool] = path
    return out


def _which(name: str, venv: Path) -> Path:
    beside = venv / name
    if beside.is_file():
        return beside
    found = shutil.which(name)
    if found is None:
        raise SystemExit(f"`{name}` not found beside {venv} or on PATH (run scripts/bootstrap.sh)")
    return Path(found)


def campaign_param(quick: bool, numb_steps: int | None = None) -> dict:
    """``param.json`` of this folder, with the ``--quick`` reductions applied; ``numb_steps``: every member
    trains this many steps per iteration (``firegen import-dpgen`` maps it to ``committee.numb_steps``)."""
    param = json.loads((HERE / "param.json").read_text())
    if quick:
        param["numb_models"] = QUICK["numb_models"]
        job = {**param["model_devi_jobs"][0], "nsteps": QUICK["nsteps"], "temps": QUICK["temps"]}
        param["model_devi_jobs"] = [copy.deepcopy(job) for _ in range(QUICK["iterations"])]
        numb_steps = numb_steps or QUICK["numb_steps"]
    if numb_steps:
        training = param["default_training_param"]["training"]
        training.update(numb_steps=numb_steps, save_freq=numb_steps, disp_freq=max(1, numb_steps // 4))
    return param


def run_machine(folder: Path, wrappers: dict[str, Path]) -> dict:
    """``machine.json`` of this folder with each command replaced by its timing wrapper (absolute paths)."""
    machine = json.loads((HERE / "machine.json").read_text())
    for task, tool in (("train", "dp"), ("model_devi", "lmp"), ("fp", "emt_label")):
        machine[task]["command"] = str(wrappers[tool])
        machine[task]["machine"]["remote_root"] = str(folder / "dpdispatcher-work")
        machine[task].pop("user_forward_files", None)  # the wrapper runs emt_label.py by its absolute path
    return machine


def quick_yaml(src: Path, dst_dir: Path) -> Path:
    """Copy a firegen campaign YAML (and its ``structures/``) into ``dst_dir`` with the --quick reductions."""
    import yaml

    cfg = yaml.safe_load(src.read_text())
    if (src.parent / "structures").is_dir():
        shutil.copytree(src.parent / "structures", dst_dir / "structures", dirs_exist_ok=True)
    cfg["committee"]["size"] = QUICK["numb_models"]
    cfg["committee"]["numb_steps"] = QUICK["numb_steps"]
    for stage in cfg["stages"]:
        stage.update(nsteps=QUICK["nsteps"], temperatures=list(QUICK["temps"]), max_iterations=QUICK["iterations"])
    out = dst_dir / src.name
    out.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return out


def prepare(folder: Path, args) -> dict:
    """Write the run folder (inputs, init data, wrappers, machine.json); return the environment of the run."""
    shutil.copy(HERE / "emt_label.py", folder / "emt_label.py")
    make_init_data.write_inputs(folder)
    (folder / "param.json").write_text(json.dumps(campaign_param(args.quick, getattr(args, "numb_steps", None)),
                                                  indent=2))
    wrappers = write_wrappers(folder)
    (folder / "machine.json").write_text(json.dumps(run_machine(folder, wrappers), indent=2))
    env = {k: v for k, v in os.environ.items() if k not in DB_ENV}
    env["PATH"] = os.pathsep.join([str(folder / "bin"), str(Path(sys.executable).parent), env.get("PATH", "")])
    env["PYTHONUNBUFFERED"] = "1"
    env.setdefault("OMP_NUM_THREADS", str(os.cpu_count() or 1))  # what firegen's workers set; DP-GEN gets the same
    return env


# ----------------------------------------------------------------------------------- science log


def read_calls(path: Path) -> list[dict]:
    """The wrapped calls in ``science.log``: tool, start/end (epoch s), exit code, subcommand (first
    argument that is not an option, ``-`` when none)."""
    calls = []
    if not path.is_file():
        return calls
    for line in path.read_text().splitlines():
        parts = line.split(" ", 6)
        if len(parts) < 4 or parts[0] not in TOOLS:
            continue
        try:
            start, end, code = float(parts[1]), float(parts[2]), int(parts[3])
        except ValueError:
            continue
        sub = parts[4] if len(parts) > 4 else ""
        calls.append({"tool": parts[0], "start": start, "end": end, "rc": code, "sub": sub})
    return sorted(calls, key=lambda c: c["start"])


def work_summary(calls: list[dict], lo: float = float("-inf"), hi: float = float("inf")) -> str:
    """``dp train 4, dp freeze 4, lmp 2, labels 40`` for the calls that started in [lo, hi)."""
    counts: dict[str, int] = {}
    failed = 0
    for c in calls:
        if not lo <= c["start"] < hi:
            continue
        key = {"dp": f"dp {c['sub']}", "lmp": "lmp", "emt_label": "labels"}[c["tool"]]
        counts[key] = counts.get(key, 0) + 1
        failed += c["rc"] != 0
    text = ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "no science calls"
    return text + (f" ({failed} failed)" if failed else "")


def row_figures(name, lo: float, hi: float, calls: list[dict]) -> dict:
    """Wall, per-tool and total science (union of intervals), overhead for the span [lo, hi] (epoch s)."""
    per_tool = {t: _bench.union_length([(c["start"], c["end"]) for c in calls if c["tool"] == t], lo, hi)
                for t in TOOLS}
    science = _bench.union_length([(c["start"], c["end"]) for c in calls], lo, hi)
    wall = hi - lo
    return {"row": str(name), "lo": lo, "hi": hi, "wall s": wall, "dp s": per_tool["dp"], "lmp s": per_tool["lmp"],
            "label s": per_tool["emt_label"], "science s": science, "overhead s": wall - science,
            "overhead %": 100.0 * (wall - science) / wall if wall > 0 else float("nan")}


def total_row(name: str, rows: list[dict], calls: list[dict]) -> dict:
    return row_figures(name, rows[0]["lo"], rows[-1]["hi"], calls) if rows else {"row": name}


# ----------------------------------------------------------------------------------- processes


def _popen(cmd, cwd: Path, env: dict, log: Path) -> subprocess.Popen:
    """A child in its own session (so its whole tree can be signalled), SIGINT at its default."""
    out = open(log, "ab")
    return subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            start_new_session=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def _stop_group(proc: subprocess.Popen, sig=signal.SIGTERM, wait: float = 30.0) -> None:
    """Signal ``proc``'s process group (our own child's session), then SIGKILL it if it lingers."""
    for s in (sig, signal.SIGKILL):
        try:
            os.killpg(proc.pid, s)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def _tail(path: Path, n: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return ""


# ----------------------------------------------------------------------------------- DP-GEN


def dpgen_marks(log: Path) -> list[tuple[int, int, float]]:
    """``(iteration, task, epoch s)`` of each ``iter.XXXXXX task YY`` line of ``dpgen.log`` (local time)."""
    marks = []
    if not log.is_file():
        return marks
    for line in log.read_text(errors="replace").splitlines():
        m = DPGEN_MARK.match(line)
        if m:
            when = dt.datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
            marks.append((int(m.group(2)), int(m.group(3)), when))
    return marks


def dpgen_matched_end(marks, t1: float, last_labels: bool) -> float:
    """Where firegen's work stops, on DP-GEN's clock: the end of the last exploring iteration's
    ``post_model_devi`` (start of its ``make_fp``), or of its ``post_fp`` when ``last_labels``."""
    exploring = [i for i, task, _ in marks if task == 4]
    if not exploring:
        return t1
    last = max(exploring)
    want = (last + 1, 0) if last_labels else (last, 6)
    return next((t for i, task, t in marks if (i, task) == want), t1)


def dpgen_rows(marks, t0: float, t1: float, calls: list[dict], end: float | None = None) -> list[dict]:
    """Per-iteration rows of a DP-GEN run, clipped at ``end`` (default: process exit ``t1``)."""
    end = t1 if end is None else end
    starts = {i: t for i, task, t in marks if task == 0}
    order = sorted(starts)
    bounds = [("setup", t0, starts[order[0]] if order else t1)]
    for n, i in enumerate(order):
        bounds.append((i, starts[i], starts[order[n + 1]] if n + 1 < len(order) else t1))
    rows = []
    for name, lo, hi in bounds:
        if lo >= end:
            break
        rows.append(row_figures(name, lo, min(hi, end), calls))
    return rows


def dpgen_steps(marks, t1: float, calls: list[dict]) -> list[dict]:
    """Wall, science and overhead per DP-GEN step kind (make_train ... post_fp), summed over iterations."""
    groups: dict[str, list[tuple[float, float]]] = {}
    for k, (i, task, t) in enumerate(marks):
        nxt = marks[k + 1][2] if k + 1 < len(marks) else t1
        groups.setdefault(DPGEN_STEPS[task], []).append((t, nxt))
    out = []
    for step in DPGEN_STEPS:
        spans = groups.get(step, [])
        if not spans:
            continue
        wall = sum(b - a for a, b in spans)
        science = sum(_bench.union_length([(c["start"], c["end"]) for c in calls], a, b) for a, b in spans)
        out.append({"step": step, "count": len(spans), "wall s": wall, "science s": science,
                    "overhead s": wall - science, "mean overhead s": (wall - science) / len(spans)})
    return out


def run_dpgen(folder: Path, env: dict, args) -> dict:
    """``dpgen run param.json machine.json`` in ``folder``; returns times, rows and tables."""
    cmd = [args.dpgen, "run", "param.json", "machine.json"]
    print(f"$ (cd {folder} && {' '.join(cmd)})", flush=True)
    t0 = time.time()
    proc = _popen(cmd, folder, env, folder / "dpgen-run.log")
    try:
        code = proc.wait(timeout=args.timeout)
    except subprocess.TimeoutExpired:
        print(f"DP-GEN did not finish within {args.timeout:.0f} s; stopped", file=sys.stderr)
        code = 124
    finally:
        if proc.poll() is None or code == 124:
            _stop_group(proc, signal.SIGINT)
    t1 = time.time()
    if code != 0:
        print(f"dpgen exited with code {code}; end of its log:\n{_tail(folder / 'dpgen-run.log')}", file=sys.stderr)
    marks = dpgen_marks(folder / "dpgen.log")
    calls = read_calls(folder / "science.log")
    return {"side": "DP-GEN", "code": code, "t0": t0, "t1": t1, "marks": marks, "calls": calls,
            "rows": dpgen_rows(marks, t0, t1, calls), "steps": dpgen_steps(marks, t1, calls)}


def finish_dpgen(res: dict, last_labels: bool) -> None:
    """Add the matched rows/total (``last_labels``: firegen labeled in its last iteration)."""
    end = dpgen_matched_end(res["marks"], res["t1"], last_labels)
    res["matched_end"] = end
    res["matched_rows"] = dpgen_rows(res["marks"], res["t0"], res["t1"], res["calls"], end)
    res["total"] = total_row("total", res["matched_rows"], res["calls"])
    res["full_total"] = total_row("total (full)", res["rows"], res["calls"])


# ----------------------------------------------------------------------------------- firegen


def _server_uri(folder: Path) -> str:
    return json.loads((folder / ".firegen" / "db" / "server.json").read_text())["uri"]


def run_firegen(folder: Path, env: dict, args) -> dict:
    """Database up, submit, one gpu + one cpu worker, wait for the end; returns times, rows and tables."""
    import pymongo

    fg = args.firegen
    up = subprocess.run([fg, "db", "up"], cwd=folder, env=env, stdin=subprocess.DEVNULL, capture_output=True,
                        text=True, timeout=300)
    if up.returncode != 0:
        raise RuntimeError(f"firegen db up failed:\n{up.stdout}{up.stderr}")
    if args.firegen_config:
        src = Path(args.firegen_config).resolve()
        config = quick_yaml(src, folder) if args.quick else Path(shutil.copy(src, folder / src.name))
        if not args.quick and (src.parent / "structures").is_dir():
            shutil.copytree(src.parent / "structures", folder / "structures", dirs_exist_ok=True)
        submit = [fg, "submit", config.name]
    else:
        submit = [fg, "submit", "param.json", "--machine", "machine.json"]
    print(f"$ (cd {folder} && firegen worker --gpu & firegen worker --cpu & ... && {' '.join(submit)})", flush=True)
    workers: dict[str, subprocess.Popen] = {}
    client = pymongo.MongoClient(_server_uri(folder), serverSelectionTimeoutMS=10000)
    db = client["firegen"]
    code, name, ready = 0, None, None
    try:
        t_workers = time.time()
        for kind in ("gpu", "cpu"):
            workers[kind] = _popen([fg, "worker", f"--{kind}", "--sleep", str(args.sleep)], folder, env,
                                   folder / f"worker-{kind}.log")
        ready = warm_up(_server_uri(folder), db, workers) - t_workers
        print(f"  both workers ran a warm-up Firework {ready:.1f} s after their start (not in the wall)", flush=True)
        t0 = time.time()
        sub = subprocess.run(submit, cwd=folder, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                             timeout=600)
        t_submitted = time.time()
        (folder / "firegen-submit.log").write_text(sub.stdout + sub.stderr)
        if sub.returncode != 0:
            raise RuntimeError(f"`{' '.join(submit)}` failed with code {sub.returncode}:\n{sub.stdout}{sub.stderr}")
        names = [d["name"] for d in db.campaigns.find({}, {"name": 1})]
        if len(names) != 1:
            raise RuntimeError(f"expected one campaign in the fresh database, found {names}")
        name = names[0]
        code = _wait_firegen(db, name, workers, args.timeout, t0)
    finally:
        for proc in workers.values():
            _stop_group(proc)
    t_seen = time.time()
    res = {"side": "firegen", "code": code, "t0": t0, "t_seen": t_seen, "campaign": name, "workers_ready_s": ready,
           "submit_s": t_submitted - t0}
    try:
        res.update(_firegen_tables(folder, db, name, t0, read_calls(folder / "science.log")))
    finally:
        client.close()
    return res


def warm_up(uri: str, db, workers: dict, timeout: float = 300.0) -> float:
    """One trivial Firework (``ScriptTask`` ``true``) per category; wait until both ran, so both workers are
    in their rapidfire loop before the campaign is submitted. Returns the time (epoch s) they were done."""
    from fireworks import Firework, LaunchPad, ScriptTask

    lp = LaunchPad(host=uri + "firegen", name="firegen", uri_mode=True, strm_lvl="ERROR")
    lp.m_logger.propagate = False  # a root handler (some dpdata plugins install one) would echo "Added a workflow"
    ids = [min(lp.add_wf(Firework(ScriptTask.from_str("true"), spec={"_category": kind},
                                  name=f"warm-up-{kind}")).values()) for kind in ("gpu", "cpu")]
    deadline = time.time() + timeout
    while time.time() < deadline:
        if all(d["state"] == "COMPLETED" for d in db.fireworks.find({"fw_id": {"$in": ids}}, {"state": 1})):
            return time.time()
        for kind, proc in workers.items():
            if proc.poll() is not None:
                raise RuntimeError(f"the {kind} worker exited with code {proc.returncode} before its warm-up")
        time.sleep(0.2)
    raise RuntimeError(f"the workers did not run their warm-up Fireworks within {timeout:.0f} s")


def _wait_firegen(db, name: str, workers: dict, timeout: float, t0: float) -> int:
    """Poll (0.5 s) until the campaign is final and no Firework is left; 1 on a fizzle, a dead worker or timeout."""
    last = None
    while time.time() - t0 < timeout:
        doc = db.campaigns.find_one({"name": name}, {"status": 1, "iteration": 1}) or {}
        states: dict[str, int] = {}
        for fw in campaign_fireworks(db, name, {"state": 1}):  # live and archived (finished iterations)
            states[fw["state"]] = states.get(fw["state"], 0) + 1
        line = f"{doc.get('status')} iteration {doc.get('iteration')}; Fireworks {dict(sorted(states.items()))}"
        if line != last:
            print(f"  [{time.time() - t0:6.0f} s] {name}: {line}", flush=True)
            last = line
        if states.get("FIZZLED"):
            print("a Firework fizzled; see the worker logs (--keep keeps them)", file=sys.stderr)
            return 1
        if doc.get("status") in CAMPAIGN_ENDED and not any(states.get(s) for s in ACTIVE):
            return 0
        for kind, proc in workers.items():
            if proc.poll() is not None:
                print(f"the {kind} worker exited with code {proc.returncode}", file=sys.stderr)
                return 1
        time.sleep(0.5)
    print(f"firegen did not finish within {timeout:.0f} s", file=sys.stderr)
    return 1


def _firegen_tables(folder: Path, db, name: str | None, t0: float, calls: list[dict]) -> dict:
    """Rows from the campaign's launches (iteration *i* = first train start of *i* -> of *i+1*)."""
    fws = {d["fw_id"]: d["spec"]["firegen"] for d in campaign_fireworks(db, name, {"fw_id": 1, "spec.firegen": 1})}
    launches = []
    for la in launches_of(db, fws, {"fw_id": 1, "time_start": 1, "time_end": 1}):
        start, end = _bench.epoch(la.get("time_start")), _bench.epoch(la.get("time_end"))
        if start is not None and end is not None:
            info = fws[la["fw_id"]]
            launches.append({"kind": info.get("kind"), "iteration": info.get("iteration", -1), "start": start,
                             "end": end})
    if not launches:
        return {"rows": [], "total": {"row": "total"}, "calls": calls, "launches": []}
    last_end = max(la["end"] for la in launches)
    train_start: dict[int, float] = {}
    for la in launches:
        if la["kind"] == "train":
            train_start[la["iteration"]] = min(train_start.get(la["iteration"], la["start"]), la["start"])
    order = sorted(train_start)
    bounds = [("setup", t0, train_start[order[0]] if order else last_end)]
    for n, i in enumerate(order):
        bounds.append((i, train_start[i], train_start[order[n + 1]] if n + 1 < len(order) else last_end))
    rows = [row_figures(n, lo, hi, calls) for n, lo, hi in bounds]
    last_it = order[-1] if order else None
    last_labels = any(la["kind"] == "label" and la["iteration"] == last_it for la in launches)
    stored = _stored_science(db, name)
    return {"rows": rows, "total": total_row("total", rows, calls), "calls": calls, "launches": launches,
            "t1": last_end, "last_labels": last_labels, "stored": stored}


def _stored_science(db, name) -> dict:
    """firegen's own stored timings (``iterations.timings``), summed: a cross-check of the wrappers."""
    tot = {"train_s": 0.0, "explore_s": 0.0, "label_s": 0.0}
    for it in db.iterations.find({"campaign": name}, {"timings": 1}):
        for k in tot:
            tot[k] += float((it.get("timings") or {}).get(k) or 0.0)
    return tot


def stop_firegen_db(folder: Path, firegen: str, env: dict) -> None:
    """``firegen db down`` in ``folder``; SIGTERM the recorded FerretDB pid if it outlives that."""
    state = folder / ".firegen" / "db" / "server.json"
    if not state.is_file():
        return
    pid = json.loads(state.read_text()).get("pid")
    subprocess.run([firegen, "db", "down"], cwd=folder, env=env, stdin=subprocess.DEVNULL, capture_output=True,
                   timeout=60)
    try:
        if pid and b"ferretdb" in Path(f"/proc/{pid}/cmdline").read_bytes():
            os.kill(pid, signal.SIGTERM)
    except OSError:
        pass


# ----------------------------------------------------------------------------------- reporting


def print_side(res: dict) -> None:
    side = res["side"]
    print(f"\n--- {side}: exit code {res['code']}")
    if side == "DP-GEN":
        rows = res["rows"] + [res["full_total"], res["total"] | {"row": "total (matched)"}]
        print(_bench.render(rows, COLUMNS))
        print(f"matched total ends at {res['matched_end'] - res['t0']:.1f} s of {res['t1'] - res['t0']:.1f} s "
              "(where firegen's work ends)")
        print(f"work, full run: {work_summary(res['calls'])}")
        print(f"work, matched:  {work_summary(res['calls'], hi=res['matched_end'])}")
        print()
        print(_bench.render(res["steps"], STEP_COLUMNS))
    else:
        if not res.get("rows"):
            print("no finished launches: nothing to measure")
            return
        print(_bench.render(res["rows"] + [res["total"]], COLUMNS))
        print(f"work: {work_summary(res['calls'])}; last iteration labeled: {res['last_labels']}")
        print(f"setup: `firegen submit` took {res['submit_s']:.1f} s; workers were started "
              f"{res['workers_ready_s']:.1f} s before it (warm-up, not in the wall)")
        s = res["stored"]
        print(f"firegen's stored timings (cross-check): train {s['train_s']:.1f} s, explore {s['explore_s']:.1f} s, "
              f"label {s['label_s']:.1f} s; campaign end seen {res['t_seen'] - res['t1']:.1f} s after the last "
              "launch ended (poll)")


def _stat(values: list[float]) -> str:
    if not values:
        return "-"
    med = statistics.median(values)
    return f"{med:.1f}" if len(values) == 1 else f"{med:.1f} [{min(values):.1f}-{max(values):.1f}]"


def summary(results: list[dict]) -> None:
    """Median [min-max] over repetitions per row, and the overhead ratio firegen / DP-GEN."""
    dps = [r["dpgen"] for r in results if r.get("dpgen")]
    fgs = [r["firegen"] for r in results if r.get("firegen") and r["firegen"].get("rows")]
    names: list[str] = []
    for res in dps + fgs:
        for row in res.get("matched_rows", res.get("rows", [])):
            if row["row"] not in names:
                names.append(row["row"])
    names.append("total")
    print(f"\n=== summary over {len(results)} repetition(s): median [min-max]; DP-GEN rows matched to firegen's work")
    table = []
    for name in names:
        def pick(res_list, key):
            out = []
            for res in res_list:
                rows = {r["row"]: r for r in res.get("matched_rows", res.get("rows", []))}
                row = res["total"] if name == "total" else rows.get(name)
                if row and key in row:
                    out.append(row[key])
            return out
        ratios = []
        for rep in results:
            d, f = rep.get("dpgen"), rep.get("firegen")
            if not d or not f or not f.get("rows"):
                continue
            drow = d["total"] if name == "total" else {r["row"]: r for r in d["matched_rows"]}.get(name)
            frow = f["total"] if name == "total" else {r["row"]: r for r in f["rows"]}.get(name)
            if drow and frow and drow.get("overhead s"):
                ratios.append(frow["overhead s"] / drow["overhead s"])
        table.append({"row": name,
                      "DP-GEN wall s": _stat(pick(dps, "wall s")), "DP-GEN science s": _stat(pick(dps, "science s")),
                      "DP-GEN overhead s": _stat(pick(dps, "overhead s")),
                      "DP-GEN overhead %": _stat(pick(dps, "overhead %")),
                      "firegen wall s": _stat(pick(fgs, "wall s")), "firegen science s": _stat(pick(fgs, "science s")),
                      "firegen overhead s": _stat(pick(fgs, "overhead s")),
                      "firegen overhead %": _stat(pick(fgs, "overhead %")),
                      "overhead ratio firegen/DP-GEN": _stat(ratios) if ratios else "-"})
    cols = ["row", "DP-GEN wall s", "DP-GEN science s", "DP-GEN overhead s", "DP-GEN overhead %", "firegen wall s",
            "firegen science s", "firegen overhead s", "firegen overhead %", "overhead ratio firegen/DP-GEN"]
    print(_bench.render(table, cols))
    if dps:
        full = [d["full_total"] for d in dps]
        print(f"DP-GEN full run (to process exit): wall {_stat([r['wall s'] for r in full])} s, "
              f"overhead {_stat([r['overhead s'] for r in full])} s = {_stat([r['overhead %'] for r in full])} %")


# ----------------------------------------------------------------------------------- main


def one_side(side: str, k: int, args, last_labels: bool | None) -> dict | None:
    folder = Path(tempfile.mkdtemp(prefix=f"vs-dpgen-{side}-"))
    print(f"\n=== repetition {k + 1}/{args.repeat}: {side} in {folder}", flush=True)
    env = None
    try:
        env = prepare(folder, args)
        if side == "dpgen":
            res = run_dpgen(folder, env, args)
            finish_dpgen(res, bool(last_labels))
        else:
            res = run_firegen(folder, env, args)
        return res
    except Exception as exc:  # one failed side must not lose the other's figures
        print(f"{side} run failed: {exc}", file=sys.stderr)
        return None
    finally:
        if side == "firegen" and env is not None:
            stop_firegen_db(folder, args.firegen, env)
        if args.keep:
            print(f"kept {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)


def main(argv=None) -> int:
    p = _bench.arg_parser(__doc__)
    p.add_argument("--repeat", type=int, default=3, help="alternating repetitions (default 3)")
    p.add_argument("--sides", choices=["both", "dpgen", "firegen"], default="both", help="which tools to run")
    p.add_argument("--quick", action="store_true", help="2 models x 100 steps, 300 MD steps at 900/1500 K, "
                                                         "2 iterations (to test the harness)")
    p.add_argument("--firegen-config", help="submit this firegen YAML instead of param.json (harness test)")
    p.add_argument("--firegen", default=str(_bench.VENV_BIN / "firegen"), help="the firegen CLI")
    p.add_argument("--dpgen", default=str(_bench.VENV_BIN / "dpgen"), help="the dpgen CLI")
    p.add_argument("--sleep", type=float, default=0.5, help="firegen workers' poll interval (s, >= 0.05)")
    p.add_argument("--timeout", type=float, default=3600, help="give up on one run after this many seconds")
    p.add_argument("--keep", action="store_true", help="keep the run folders (logs, dpgen.log, science.log)")
    args = p.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    if args.sleep < 0.05:
        p.error("--sleep must be at least 0.05 s (firegen worker's lower bound)")
    for tool in ([args.dpgen] if args.sides != "firegen" else []) + ([args.firegen] if args.sides != "dpgen" else []):
        if not Path(tool).exists():
            p.error(f"{tool} not found (run scripts/bootstrap.sh, or pass --dpgen/--firegen)")
    sides = ["dpgen", "firegen"] if args.sides == "both" else [args.sides]
    results = []
    for k in range(args.repeat):
        rep: dict = {}
        for side in (sides if k % 2 == 0 else sides[::-1]):
            rep[side] = one_side(side, k, args, (rep.get("firegen") or {}).get("last_labels"))
        if rep.get("dpgen") and rep.get("firegen") and rep["firegen"].get("last_labels"):
            finish_dpgen(rep["dpgen"], True)  # firegen ran second and labeled its last iteration
        for side in sides:
            if rep.get(side):
                print_side(rep[side])
        results.append(rep)
    summary(results)
    ok = all(rep.get(s) and rep[s]["code"] == 0 for rep in results for s in sides)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
