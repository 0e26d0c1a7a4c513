"""Lost runs heal themselves: which RUNNING launches are lost, when, and how often a Firework is rerun.

FireWorks' own mechanism, with settings that make it safe to run unattended. A Rocket pings its
launch (``state_history[-1].updated_on``) every ``PING_TIME_SECS``; FireWorks' default is 3600 s, so
its default expiry (4 pings, 4 hours) leaves a dead worker's run alone for hours. firegen's workers
ping every :data:`PING_SECS` (60 s; a ping is one read and one write of the launch by id) and record
that interval, and the identity of their process, in the FWorker's ``env`` that every launch stores.
A small duty in every firegen worker (:func:`heal_lostruns`, one worker at a time through
:func:`claim_duty`) then finds lost runs with FireWorks' ``detect_lostruns``
(:func:`firegen.db.embedded.lostruns.detect_lostruns`), with an expiry per kind of Firework:

* a launch whose worker process is gone, seen from the same machine (same boot, same pid namespace,
  pid no longer alive with the recorded start time), is lost now;
* a launch of a firegen worker is lost when not pinged for :func:`expiry_secs` of its kind: the longest
  ping silence a live run may show (a stalled or suspended host, a busy database) — never its run
  time: a live 10-hour DFT run pings every minute;
* a launch of any other worker (plain ``rlaunch``, which pings hourly unless FW_config says otherwise)
  keeps FireWorks' own ``RUN_EXPIRATION_SECS`` (4 hours by default).

A lost Firework is rerun (FireWorks' ``rerun_fw``, then its launch marked FIZZLED: the Firework goes from RUNNING
to READY and is never read FIZZLED meanwhile; every task is idempotent) at most :data:`MAX_LOST_RERUNS` times,
counted in its ``spec.firegen_lost_runs``; after that FireWorks' ``mark_fizzled`` leaves it FIZZLED and its
campaign is marked ``failed`` with the reason, instead of a loop.

A worker killed while it held its workflow's lock (FireWorks' ``WFLock``: a flag on the workflow document, set
for the milliseconds of a checkout's or completion's refresh) never clears it; FireWorks then waits 300 s and
raises ``LockedWorkflowError`` on every later refresh or rerun of that workflow, so the campaign never moves
again. firegen's workers take such a lock over after :data:`WFLOCK_SECS` (:func:`configure_workflow_locks`).
"""

from __future__ import annotations

import datetime
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import fireworks.fw_config as fw_config
import pymongo

from firegen.campaign.errors import disk_full
from firegen.db.embedded.lostruns import detect_lostruns
from firegen.db.repository import ResultsStore


def _env_secs(name: str, default: float) -> float:
    """A positive number of seconds from the environment variable ``name``, else ``default``."""
    try:
        value = float(os.environ.get(name) or default)
    except ValueError:
        return default
    return value if value > 0 else default


PING_ENV, EXPIRY_ENV, DUTY_ENV = "FIREGEN_PING_SECS", "FIREGEN_LOST_EXPIRY_S", "FIREGEN_DUTY_SECS"
"""Environment overrides of :data:`PING_SECS`, of every kind's expiry (never below :data:`MISSED_PINGS` pings) and
of :data:`DUTY_SECS`, read by the workers that start with them: for tests and drills that need a lost run found
in seconds, not for production."""

PING_SECS = _env_secs(PING_ENV, 60)
"""How often a firegen worker's Rocket pings its launch (FireWorks' ``PING_TIME_SECS`` for firegen's workers)."""
PING_RETRY_SECS = 5
"""After a ping the database did not answer: the next try comes this soon, so a live run pings within
seconds of the database's return."""
MISSED_PINGS = 5
"""An expiry is never shorter than this many ping intervals."""

#: Longest ping silence tolerated per Firework kind (s), with the run times they are set against:
KIND_EXPIRY_SECS: dict[str, int] = {
    "init": 600,     # seconds to minutes: stores structures, perturbs, imports data
    "gate": 600,     # seconds: one read of the labels, the snapshot
    "select": 600,   # seconds to minutes: reads the deviations, queues the next iteration, archives
    "train": 900,    # minutes to hours: dp train as a child, dp test in-process (TensorFlow)
    "explore": 900,  # minutes to hours: LAMMPS as a child, or ASE MD in-process
    "label": 1800,   # seconds (EMT) to many hours (DFT); DFT nodes are the likeliest to be suspended
}
DEFAULT_EXPIRY_SECS = 900
"""For Fireworks of other kinds (or none)."""
MAX_LOST_RERUNS = 3
"""Reruns of one Firework after lost runs; the next loss stops its campaign with the reason."""
DUTY_SECS = _env_secs(DUTY_ENV, 30)
"""How often the duty runs (the lease of :func:`claim_duty` lasts 3 periods, then another worker takes over)."""

WFLOCK_SECS = 60
"""A workflow lock held this long is taken over (FireWorks' ``WFLOCK_EXPIRATION_KILL``): its holder is dead or cut
off; a live one holds it for the milliseconds of one refresh (FireWorks' default: wait 300 s, then fail)."""

LOST_KEY = "firegen_lost_runs"
"""Firework spec field counting its reruns after lost runs."""
ENV_PING = "firegen_ping_secs"
ENV_PROCESS = "firegen_process"
DUTY_COLLECTION = "firegen_duties"


def expiry_secs(kind: str | None, ping_secs: float) -> float:
    """The longest ping silence of a live launch of a Firework of ``kind`` whose worker pings every ``ping_secs``
    (``$FIREGEN_LOST_EXPIRY_S`` replaces the kind's own)."""
    kind_expiry = _env_secs(EXPIRY_ENV, 0) or KIND_EXPIRY_SECS.get(kind or "", DEFAULT_EXPIRY_SECS)
    return max(kind_expiry, MISSED_PINGS * ping_secs)


def fireworks_expiry_secs() -> float:
    """FireWorks' own expiry (``RUN_EXPIRATION_SECS``, FW_config), for launches of workers that are not firegen's."""
    return float(fw_config.RUN_EXPIRATION_SECS)


def launch_expiry(kind: str | None, fworker_env: dict | None) -> float:
    """Expiry of a launch from its Firework's kind and the ``env`` its FWorker stored (s)."""
    ping = (fworker_env or {}).get(ENV_PING)
    return expiry_secs(kind, float(ping)) if ping else fireworks_expiry_secs()


def configure_workflow_locks(expire_secs: float = WFLOCK_SECS) -> None:
    """FireWorks' workflow locks of this process are taken over after ``expire_secs`` of waiting instead of failing
    (``WFLock``'s defaults are bound when FireWorks is imported, so ``FW_config`` values set later do not reach them)."""
    from fireworks.core import launchpad

    launchpad.WFLock.__init__.__defaults__ = (expire_secs, True)


# -- the worker process behind a launch ------------------------------------------------------------------

def _read(path: str) -> str:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return ""


def _start_time(pid: int) -> str:
    """The process's start time in clock ticks since boot (``/proc/<pid>/stat`` field 22), "" when it is gone
    (a zombie, killed and not yet reaped by its parent, is gone)."""
    fields = _read(f"/proc/{pid}/stat").rsplit(")", 1)[-1].split()
    return fields[19] if len(fields) > 19 and fields[0] != "Z" else ""


def _pid_namespace() -> str:
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return ""


def process_identity(pid: int | None = None) -> str:
    """``boot/pid-namespace/pid/start-time`` of a process (default this one): unique on a machine across pid reuse."""
    pid = pid or os.getpid()
    return "/".join((_read("/proc/sys/kernel/random/boot_id"), _pid_namespace(), str(pid), _start_time(pid)))


def process_gone(identity: str | None) -> bool:
    """True only when ``identity`` (:func:`process_identity`) names a process of this machine and pid namespace
    that no longer runs; False when it runs or when this process cannot tell (another machine or container)."""
    parts = (identity or "").split("/")
    if len(parts) != 4 or not all(parts):
        return False
    boot, namespace, pid, started = parts
    if boot != _read("/proc/sys/kernel/random/boot_id") or namespace != _pid_namespace():
        return False
    return _start_time(int(pid)) != started


# -- one worker at a time --------------------------------------------------------------------------------

def claim_duty(lp, holder: str, period: float = DUTY_SECS, name: str = "lostruns") -> bool:
    """Take (or keep) the lease of duty ``name`` for ``3 * period`` s; False while another holder has it. ``holder``:
    a :func:`process_identity`, so that a holder seen dead from this machine loses its lease at once."""
    now, duties = time.time(), lp.db[DUTY_COLLECTION]
    current = duties.find_one({"_id": name}) or {}
    if current.get("holder") not in (None, holder) and current.get("until", 0) >= now:
        if not process_gone(current["holder"]):
            return False
        duties.update_one({"_id": name, "holder": current["holder"]}, {"$set": {"until": 0}})
    try:
        duties.find_one_and_update(
            {"_id": name, "$or": [{"until": {"$lt": now}}, {"holder": holder}]},
            {"$set": {"holder": holder, "until": now + 3 * period}}, upsert=True)
    except pymongo.errors.DuplicateKeyError:
        return False
    return True


# -- finding and rerunning lost runs -------------------------------------------------------------------

@dataclass
class Healed:
    """What one pass did: Fireworks rerun, Fireworks given up on (with the reason), and why each was lost."""

    rerun: list[int] = field(default_factory=list)
    given_up: list[tuple[int, str]] = field(default_factory=list)
    reasons: dict[int, str] = field(default_factory=dict)
    stopped: list[tuple[str, str]] = field(default_factory=list)
    """Campaigns stopped for a Firework that fizzled before its task could say why (:func:`record_fizzled`)."""


def _last_ping(launch: dict) -> datetime.datetime | None:
    for entry in reversed(launch.get("state_history") or []):
        if entry.get("state") == "RUNNING":
            stamp = entry.get("updated_on") or entry.get("created_on")
            if isinstance(stamp, str):
                stamp = datetime.datetime.fromisoformat(stamp)
            if isinstance(stamp, datetime.datetime):
                return stamp if stamp.tzinfo else stamp.replace(tzinfo=datetime.timezone.utc)
    return None


def running_launches(lp) -> list[dict]:
    """The RUNNING launches with their Firework's kind, campaign and state: ``launch_id``, ``fw_id``, ``kind``,
    ``campaign``, ``last_ping`` (UTC), ``expiry`` (s), ``gone`` (its worker process is known to be dead)."""
    fields = {"launch_id": 1, "fw_id": 1, "state_history": 1, "fworker.env": 1, "host": 1}
    launches = list(lp.launches.find({"state": "RUNNING"}, fields))
    fws = {fw["fw_id"]: fw for fw in lp.fireworks.find({"fw_id": {"$in": sorted({d["fw_id"] for d in launches})}},
                                                      {"fw_id": 1, "spec.firegen": 1, "state": 1})}
    out = []
    for launch in launches:
        spec = (fws.get(launch["fw_id"]) or {}).get("spec") or {}
        kind, env = (spec.get("firegen") or {}).get("kind"), (launch.get("fworker") or {}).get("env") or {}
        out.append({"launch_id": launch["launch_id"], "fw_id": launch["fw_id"], "kind": kind, "host": launch.get("host"),
                    "campaign": (spec.get("firegen") or {}).get("campaign"), "last_ping": _last_ping(launch),
                    "ping_secs": env.get(ENV_PING), "expiry": launch_expiry(kind, env),
                    "gone": process_gone(env.get(ENV_PROCESS))})
    return out


def heal_lostruns(lp, max_reruns: int = MAX_LOST_RERUNS, rerun: bool = True) -> Healed:
    """Find lost runs (module docstring) with FireWorks' ``detect_lostruns``, one call per expiry, and rerun each
    lost Firework (at most ``max_reruns`` times; then its campaign stops with the reason); then stop, with the
    reason, the campaigns with a Firework that fizzled before its task could record why (:func:`record_fizzled`).
    ``rerun=False``: only say which are lost (``reasons``)."""
    groups: dict[float, tuple[list[int], set[int]]] = {}
    runs = running_launches(lp)
    fw_of = {run["launch_id"]: run["fw_id"] for run in runs}
    for run in runs:
        expiry = 0.0 if run["gone"] else run["expiry"]
        launch_ids, fw_ids = groups.setdefault(expiry, ([], set()))
        launch_ids.append(run["launch_id"])
        fw_ids.add(run["fw_id"])
    healed = Healed()
    for expiry, (launch_ids, fw_ids) in sorted(groups.items()):
        lost_launches, lost_fws, _ = detect_lostruns(lp, expiry, query={"fw_id": {"$in": sorted(fw_ids)}},
                                                     launch_query={"launch_id": {"$in": launch_ids}})
        lost_fws = list(lost_fws) + _checkouts_cut_short(lp, lost_launches, fw_of, lost_fws)
        for fw_id in lost_fws:
            mine = [launch_id for launch_id in lost_launches if fw_of.get(launch_id) == fw_id]
            why = ("its worker process is gone" if expiry == 0 else
                   f"its worker did not ping it for {expiry:.0f} s")
            healed.reasons[fw_id] = why
            if not rerun:
                continue
            if requeue_lost(lp, fw_id, mine, why, max_reruns):
                healed.rerun.append(fw_id)
            else:
                healed.given_up.append((fw_id, why))
    if rerun:
        healed.stopped = record_fizzled(lp)
    return healed


def _checkouts_cut_short(lp, lost_launches: list[int], fw_of: dict, lost_fws) -> list[int]:
    """Fireworks whose worker died inside FireWorks' ``checkout_fw``: the Firework was RESERVED and its RUNNING launch
    written, but the Firework never listed the launch. FireWorks' lost-run rule skips them (only RUNNING Fireworks
    are lost), no worker checks out a RESERVED Firework, so the campaign would wait for ever."""
    candidates = sorted({fw_of[lid] for lid in lost_launches if lid in fw_of} - set(lost_fws))
    out = []
    for fw in lp.fireworks.find({"fw_id": {"$in": candidates}, "state": "RESERVED"}, {"fw_id": 1, "launches": 1}):
        mine = [lid for lid in lost_launches if fw_of.get(lid) == fw["fw_id"]]
        if mine and not set(mine) & set(fw.get("launches") or []):
            out.append(fw["fw_id"])
    return out


def requeue_lost(lp, fw_id: int, launch_ids: list[int], why: str, max_reruns: int = MAX_LOST_RERUNS) -> bool:
    """Rerun the Firework and mark its lost launches FIZZLED (True), unless it was rerun after lost runs
    ``max_reruns`` times already: then it stays FIZZLED and its campaign is marked ``failed`` (False).

    The rerun comes first: the Firework goes from RUNNING to READY and is never read FIZZLED (`firegen run` stops
    on a FIZZLED Firework), and a rerun that fails (the database went away) leaves the launch RUNNING, to be judged
    again at the next pass, instead of a FIZZLED launch under a RUNNING Firework that no pass looks at again."""
    fw = lp.fireworks.find_one({"fw_id": fw_id}, {"spec": 1})
    spec = (fw or {}).get("spec") or {}
    count = int(spec.get(LOST_KEY) or 0)
    if count < max_reruns:
        lp.fireworks.update_one({"fw_id": fw_id}, {"$set": {f"spec.{LOST_KEY}": count + 1}})
        lp.rerun_fw(fw_id)
        for launch_id in launch_ids:
            _fizzle_launch(lp, launch_id)
            _forget_offline(lp, launch_id)
        return True
    for launch_id in launch_ids:
        lp.mark_fizzled(launch_id)
        _forget_offline(lp, launch_id)
    info = spec.get("firegen") or {}
    if info.get("campaign"):
        reason = (f"{info.get('kind', 'a')} Firework {fw_id} was lost {count + 1} times (last: {why}); it is not rerun "
                  f"again. Fix: look at its worker's log and host, then `lpad rerun_fws -i {fw_id}`")
        ResultsStore.from_launchpad(lp).update_campaign(info["campaign"], status="failed", stop_reason=reason,
                                                        failed_fw_id=fw_id)
    return False


def _forget_offline(lp, launch_id: int) -> None:
    if lp.offline_runs.count_documents({"launch_id": launch_id, "deprecated": False}) > 0:
        lp.forget_offline(launch_id, launch_mode=True)


def _fizzle_launch(lp, launch_id: int) -> None:
    """FireWorks' ``mark_fizzled`` without its refresh of the Firework (rerun already, the launch archived on it):
    the launch is FIZZLED, its state history kept."""
    launch = lp.get_launch_by_id(launch_id)
    launch.state = "FIZZLED"
    lp.launches.find_one_and_replace({"launch_id": launch_id}, launch.to_db_dict(), upsert=True)


# -- Fireworks that fizzled before their task could say why ---------------------------------------------

def _exception_line(launch: dict) -> str:
    """The last line of the traceback FireWorks stored on a fizzled launch (``stored_data._exception``)."""
    stored = ((launch.get("action") or {}).get("stored_data") or {})
    trace = ((stored.get("_exception") or {}).get("_stacktrace") or "").strip().splitlines()
    return trace[-1].strip() if trace else str(stored.get("_message") or "no traceback stored")


def record_fizzled(lp) -> list[tuple[str, str]]:
    """Stop, with the reason, each queued or running campaign that has a FIZZLED Firework its task did not record
    (an init Firework that never ran leaves its campaign ``queued``): one that
    failed before its task ran or after it returned (FireWorks could not write ``FW.json`` into a full launch
    directory, or could not read its spec). A task that fails records why itself (campaign ``failed`` with a
    ``stop_reason``, :mod:`firegen.workflows.tasks`); without this, such a campaign stays ``running`` with nothing
    to run, and ``firegen status`` says nothing of why. Returns (campaign, reason) of the campaigns stopped."""
    import socket

    fizzled = list(lp.fireworks.find({"state": "FIZZLED", "spec.firegen.campaign": {"$exists": True}},
                                     {"fw_id": 1, "spec.firegen": 1, "launches": 1}))
    store, done, out = ResultsStore.from_launchpad(lp), set(), []
    for fw in fizzled:
        info = fw["spec"]["firegen"]
        campaign = info["campaign"]
        if campaign in done or not fw.get("launches"):
            continue
        doc = store.get_campaign(campaign) or {}
        if doc.get("status") not in ("queued", "running"):  # failed or stopped with its own reason, or over
            continue
        launch = lp.launches.find_one({"launch_id": max(fw["launches"])}) or {}
        line = _exception_line(launch)
        where = launch.get("launch_dir") or ""
        full = disk_full(where) if where and launch.get("host") == socket.gethostname() else ""
        reason = (f"{info.get('kind', 'a')} Firework {fw['fw_id']} fizzled before its task could record why (host "
                  f"{launch.get('host')}, {where}): " + (f"{full}; " if full else "") + f"{line}. Fix the cause, "
                  f"then `lpad rerun_fws -i {fw['fw_id']}`")
        store.update_campaign(campaign, status="failed", stop_reason=reason, failed_fw_id=fw["fw_id"])
        done.add(campaign)
        out.append((campaign, reason))
    return out


def silent_runs(lp, campaign: str, now: datetime.datetime | None = None) -> list[dict]:
    """The campaign's RUNNING launches not pinged for more than two of their worker's ping intervals (FireWorks'
    ``PING_TIME_SECS`` when unknown): :func:`running_launches` entries with ``silence`` (s) added."""
    now = now or datetime.datetime.now(datetime.timezone.utc)
    out = []
    for run in running_launches(lp):
        if run["campaign"] != campaign or run["last_ping"] is None:
            continue
        silence = (now - run["last_ping"]).total_seconds()
        if run["gone"] or silence > 2 * float(run["ping_secs"] or fw_config.PING_TIME_SECS):
            out.append({**run, "silence": silence})
    return out
