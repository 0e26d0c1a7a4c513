"""A full disk under a worker (issue 20, item 1): a small tmpfs mounted where the work happens, filled to the last
byte while the work runs (``ENOSPC`` from the kernel, nothing simulated).

* labeling with a DFT code (pw.x; default run): the work folder's disk fills; the configuration is quarantined
  with a reason that says the disk is full, never stored as a label;
* training (slow): the gpu worker's launch directories are on the tmpfs, which fills while ``dp train`` runs; the
  train Firework fails and the campaign stops with a reason that says so, stored on the campaign and shown by
  ``firegen status``;
* labeling with an in-process labeler (slow): the cpu worker's launch directories are on the tmpfs, which fills
  during the label batch; the next Firework cannot even write its ``FW.json`` (FireWorks fizzles it before its task
  runs): the campaign stops with that reason too, and no label is lost or written twice.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from campaign_helpers import BIN, cli_env, firegen, stop_group
from fault_helpers import NAME, fault_config, label_figures, record_outcome, wait_for

PSEUDO_DIR = Path("/usr/share/espresso/pseudo")
SI_UPF = "Si.pz-vbc.UPF"


def quarantine_figures(db, campaign: str) -> dict:
    """:func:`label_figures`, with the configurations quarantined on purpose (``label_failed``: no valid label
    exists for them) counted as ``quarantined`` instead of lost."""
    figures = label_figures(db, campaign)
    quarantined = db.configurations.count_documents({"campaign": campaign, "status": "label_failed"})
    return {**figures, "labels_lost": figures["labels_lost"] - quarantined, "quarantined": quarantined}


@contextlib.contextmanager
def small_disk(path: Path, size: str = "64m"):
    """A tmpfs of ``size`` mounted on ``path`` (created); unmounted in the end (lazily when a process still
    has its working directory there)."""
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a tmpfs")
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield path
    finally:
        if subprocess.run(["umount", str(path)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(path)], capture_output=True)


def fill(disk: Path, leave: int = 0) -> int:
    """Write zeros on ``disk`` until the kernel says ENOSPC, then give back ``leave`` bytes; returns the bytes
    free after that."""
    fd = os.open(disk / f"fill-{os.getpid()}", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        while True:
            os.write(fd, b"\0" * 65536)
    except OSError as exc:
        assert exc.errno == 28, exc  # ENOSPC
    try:
        while True:  # the last partial block
            os.write(fd, b"\0" * 512)
    except OSError:
        pass
    if leave:
        os.ftruncate(fd, os.fstat(fd).st_size - leave)
    os.close(fd)
    st = os.statvfs(disk)
    return st.f_bavail * st.f_frsize


# -- labeling with a DFT code ------------------------------------------------------------------------------

@pytest.mark.skipif(not (os.path.exists("/usr/bin/pw.x") and (PSEUDO_DIR / SI_UPF).is_file()),
                    reason="needs Debian's quantum-espresso and quantum-espresso-data")
@pytest.mark.parametrize("leave", [0, 8192, 20480], ids=["full", "8k-left", "20k-left"])
def test_a_dft_label_on_a_full_disk_is_quarantined_with_the_reason(mongo_db, tmp_path, leave):
    from ase.build import bulk

    from campaign_helpers import small_cu_config
    from firegen.campaign.config import load_config
    from firegen.db.repository import ResultsStore
    from firegen.workflows.jobs.label import label_batch

    cfg = load_config(small_cu_config(tmp_path, "full-disk"))
    store = ResultsStore(mongo_db)
    store.init()
    store.create_campaign(cfg.name, cfg.frozen(), ["Si"])
    atoms = bulk("Si", "diamond", a=5.43)
    atoms.rattle(0.05, seed=1)
    config_id, _ = store.add_atoms(cfg.name, atoms, {"kind": "init"}, status="selected")
    with small_disk(tmp_path / "scratch", "256k") as disk:
        (disk / "work").mkdir()
        free = fill(disk, leave)
        labeler = {"kind": "qe", "settings": {"pseudo_dir": str(PSEUDO_DIR), "pseudopotentials": {"Si": SI_UPF},
                                              "ecutwfc": 30.0, "kpoints": [2, 2, 2], "workdir": str(disk / "work")}}
        outcome = label_batch(store, cfg, [config_id], fw_id=1, labeler_override=labeler)
    doc = mongo_db.configurations.find_one({"_id": config_id})
    assert (outcome.labeled, outcome.failed) == (0, 1) and doc["status"] == "label_failed"
    assert doc.get("label") is None and not doc.get("label_writes")
    reason = doc["label_attempts"][0]["reason"]
    assert re.search(r"the disk of \S+ is full \(\d+ bytes free\)", reason), reason
    record_outcome(f"full disk during DFT labeling ({leave} bytes left)", True, quarantine_figures(mongo_db, cfg.name),
                   f"{free} bytes free; quarantined: {reason[:160]}")


# -- a Firework that fizzles before its task runs -----------------------------------------------------------

@pytest.mark.parametrize("kind, status", [("gate", "running"), ("init", "queued")])
def test_a_firework_fizzled_by_a_full_launch_directory_stops_its_campaign_with_the_reason(launchpad, tmp_path, kind,
                                                                                         status):
    """FireWorks writes FW.json into the launch directory before the task runs; on a full disk that fails, the
    Rocket fizzles the Firework and the task never records why. The lost-run duty's pass does (an init Firework
    that never ran leaves its campaign ``queued``)."""
    from fireworks import Firework, FWorker, ScriptTask
    from fireworks.core.rocket_launcher import launch_rocket

    from firegen.db.embedded.capabilities import adapt_launchpad
    from firegen.db.healing import heal_lostruns

    lp = adapt_launchpad(launchpad)
    lp.db.campaigns.insert_one({"name": "disk", "status": status})
    fw = Firework(ScriptTask.from_str("true"), spec={"firegen": {"campaign": "disk", "kind": kind}})
    lp.add_wf(fw)
    here = os.getcwd()
    with small_disk(tmp_path / "launches", "64k") as disk:
        fill(disk)
        try:
            os.chdir(disk)
            launch_rocket(lp, FWorker(), strm_lvl="CRITICAL")
        finally:
            os.chdir(here)
        assert lp.fireworks.find_one({"fw_id": fw.fw_id})["state"] == "FIZZLED"
        assert lp.db.campaigns.find_one({"name": "disk"})["status"] == status  # nobody said why, before
        healed = heal_lostruns(lp)
    campaign = lp.db.campaigns.find_one({"name": "disk"})
    assert campaign["status"] == "failed" and campaign["failed_fw_id"] == fw.fw_id
    assert healed.stopped == [("disk", campaign["stop_reason"])]
    reason = campaign["stop_reason"]
    assert reason.startswith(f"{kind} Firework {fw.fw_id} fizzled before its task could record why")
    assert "No space left on device" in reason and "is full" in reason, reason
    assert heal_lostruns(lp).stopped == []  # once
    record_outcome(f"full launch directory fizzles a {kind} Firework before its task", True,
                   label_figures(lp.db, "disk"), f"campaign stopped by the lost-run pass: {reason[:160]}")


# -- campaigns -------------------------------------------------------------------------------------------------

def running(db, kind: str, seconds: float) -> dict | None:
    """A launch of a Firework of ``kind`` RUNNING for at least ``seconds``."""
    import datetime
    import time

    for launch in db.launches.find({"state": "RUNNING"}):
        fw = db.fireworks.find_one({"fw_id": launch["fw_id"]}, {"spec.firegen.kind": 1}) or {}
        started = launch["state_history"][-1]["created_on"]
        started = datetime.datetime.fromisoformat(started) if isinstance(started, str) else started
        started = started if started.tzinfo else started.replace(tzinfo=datetime.timezone.utc)
        if (fw.get("spec", {}).get("firegen") or {}).get("kind") == kind and time.time() - started.timestamp() >= seconds:
            return launch
    return None


def _worker(folder: Path, category: str) -> subprocess.Popen:
    """``firegen worker`` of ``category`` on the folder's embedded database, its log outside the worker's folder
    (``logs/<category>.log``): the full disk is the launch directories', not the log's."""
    (folder / "logs").mkdir(exist_ok=True)
    with open(folder / "logs" / f"{category}.log", "ab") as log:
        return subprocess.Popen([str(BIN / "firegen"), "worker", f"--{category}"], cwd=folder, env=cli_env(folder),
                                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)


def _campaign_ends(db) -> dict:
    def ended():
        doc = db.campaigns.find_one({"name": NAME}) or {}
        active = db.fireworks.count_documents({"state": {"$in": ["READY", "RESERVED", "RUNNING"]}})
        return doc if doc.get("status") in ("failed", "stopped") or (
            doc.get("status") in ("converged", "max_iterations") and not active) else None
    return wait_for(ended, 1500, "the campaign's end")


def _run_with_full_disk(tmp_path: Path, category: str, strike, check) -> None:
    """The fault campaign with ``category``'s launch directories on a tmpfs that ``strike(db, disk)`` fills; once the
    campaign ended, ``check(campaign, db, firegen status's output)``."""
    from fault_helpers import database

    config = fault_config(tmp_path)
    if category == "cpu":  # a label batch long enough to fill the disk during it (EMT, 1 s per structure)
        raw = yaml.safe_load(config.read_text())
        raw["labeler"] = {"kind": "delayed", "settings": {"labeler": "emt", "median_s": 1.0, "p99_over_p50": 1}}
        config.write_text(yaml.safe_dump(raw, sort_keys=False))
    firegen(tmp_path, "db", "up", check=True)
    workers = []
    try:
        firegen(tmp_path, "submit", str(config), check=True)
        db = database(tmp_path)
        with small_disk(tmp_path / ".firegen" / "workers" / category) as disk:
            workers = [_worker(tmp_path, "cpu"), _worker(tmp_path, "gpu")]
            strike(db, disk)
            campaign = _campaign_ends(db)
            for proc in workers:
                stop_group(proc)
        status = firegen(tmp_path, "status", NAME)
        check(campaign, db, status.stdout + status.stderr)
    finally:
        for proc in workers:
            stop_group(proc)
        firegen(tmp_path, "db", "down")


@pytest.mark.slow
def test_full_disk_during_training_stops_the_campaign_with_the_reason(tmp_path):
    def strike(db, disk):
        wait_for(lambda: running(db, "train", 3.0), 900, "dp train under way")
        fill(disk)

    def check(campaign, db, status):
        reason = campaign.get("stop_reason") or ""
        assert campaign["status"] == "failed", campaign
        assert re.search(r"the disk of \S+ is full \(\d+ bytes free\)", reason), reason
        assert reason.startswith("train Firework"), reason
        assert reason[:80] in status, status
        assert db.fireworks.count_documents({"spec.firegen.kind": "train", "state": "FIZZLED"}) >= 1
        figures = label_figures(db)
        assert figures["labels_duplicated"] == 0 and figures["labels_lost"] == 0
        record_outcome("full disk in the gpu worker's launch directory during training", True, figures,
                       f"campaign stopped: {reason[:200]}")

    _run_with_full_disk(tmp_path, "gpu", strike, check)


@pytest.mark.slow
def test_full_disk_during_labeling_stops_the_campaign_with_the_reason(tmp_path):
    def strike(db, disk):
        wait_for(lambda: running(db, "label", 2.0), 900, "a label batch under way")
        fill(disk)

    def check(campaign, db, status):
        reason = campaign.get("stop_reason") or ""
        assert campaign["status"] == "failed", campaign
        assert re.search(r"the disk of \S+ is full \(\d+ bytes free\)", reason), reason
        assert "No space left on device" in reason, reason
        assert reason[:80] in status, status
        figures = label_figures(db)
        assert figures["labels_duplicated"] == 0 and figures["labels_lost"] == 0 and figures["labeled"] == 18
        record_outcome("full disk in the cpu worker's launch directory during labeling", True, figures,
                       f"campaign stopped: {reason[:200]}")

    _run_with_full_disk(tmp_path, "cpu", strike, check)


@pytest.mark.slow
def test_full_disk_under_firegen_run_ends_it_with_the_reason(tmp_path):
    """As above under `firegen run`, whose cpu worker's folder (its launch directories and its log) is the full
    disk: the gate Firework fizzles before its task runs, and `firegen run` ends with the reason, not only with
    "a gate Firework fizzled" (it read the FIZZLED Firework before any worker's duty had recorded why)."""
    from fault_helpers import database, start_run, stop_run

    config = fault_config(tmp_path)
    raw = yaml.safe_load(config.read_text())
    raw["labeler"] = {"kind": "delayed", "settings": {"labeler": "emt", "median_s": 1.0, "p99_over_p50": 1}}
    config.write_text(yaml.safe_dump(raw, sort_keys=False))
    with small_disk(tmp_path / ".firegen" / "workers" / "cpu") as disk:
        run = start_run(tmp_path, config, timeout=900)
        try:
            db = database(tmp_path)
            wait_for(lambda: running(db, "label", 2.0), 900, "a label batch under way")
            fill(disk)
            out, err = run.communicate(timeout=1200)
            assert run.returncode == 1, out[-2000:] + err[-2000:]
            campaign = db.campaigns.find_one({"name": NAME})
            reason = campaign.get("stop_reason") or ""
            assert campaign["status"] == "failed" and "fizzled before its task could record why" in reason, campaign
            assert re.search(r"the disk of \S+ is full \(\d+ bytes free\)", reason), reason
            assert f"campaign {NAME} failed: {reason}" in err, err[-3000:]
            figures = label_figures(db)
            assert figures["labels_duplicated"] == 0 and figures["labels_lost"] == 0
            record_outcome("full disk in the cpu worker's folder under firegen run", True, figures,
                           f"firegen run ended: {reason[:200]}")
        finally:
            stop_run(tmp_path, run)
