"""Helpers for tests that run real campaigns through the `firegen` CLI in a temporary folder."""

from __future__ import annotations

import contextlib
import os
import signal
import shutil
import subprocess
import sys
from pathlib import Path

import pymongo
import yaml

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def small_cu_config(folder: Path, name: str, **overrides) -> Path:
    """configs/cu_emt.yaml shrunk for tests: committee of 2, short training and MD, hot enough to
    give candidates. ``overrides`` replace top-level sections (``stage``, ``labeler``, ...)."""
    shutil.copytree(ROOT / "configs" / "structures", folder / "structures", dirs_exist_ok=True)
    cfg = yaml.safe_load((ROOT / "configs" / "cu_emt.yaml").read_text())
    cfg["name"] = name
    cfg["committee"].update(size=2, numb_steps=300)
    cfg["selection"].update(trust={"f_lo": 0.1, "f_hi": 0.4}, max_per_iteration=20)
    cfg["stages"][0].update(temperatures=[900, 1500], nsteps=500, converged_when={"accurate_ratio": 0.9},
                            max_iterations=5)
    for key, value in overrides.items():
        if key == "stage":
            cfg["stages"][0].update(value)
        else:
            cfg[key] = value
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def cli_env(folder: Path) -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in ("FIREGEN_MONGO_URI", "FIREGEN_LAUNCHPAD", "FW_CONFIG_FILE")}
    env["FIREGEN_HOME"] = str(folder / ".firegen")
    return env


def firegen(folder: Path, *args, timeout: float = 600, check: bool = False) -> subprocess.CompletedProcess:
    out = subprocess.run([str(BIN / "firegen"), *args], cwd=folder, env=cli_env(folder), capture_output=True,
                         text=True, timeout=timeout)
    if check and out.returncode != 0:
        raise AssertionError(f"firegen {' '.join(args)} failed ({out.returncode}):\n{out.stdout}\n{out.stderr}")
    return out


def campaign_db(folder: Path):
    """pymongo Database of the embedded server under ``folder/.firegen``."""
    import json

    state = json.loads((folder / ".firegen" / "db" / "server.json").read_text())
    return pymongo.MongoClient(state["uri"], serverSelectionTimeoutMS=5000)["firegen"]


def stop_group(proc: subprocess.Popen) -> None:
    """End a process started with ``start_new_session=True`` and everything it started: SIGTERM to its group,
    SIGKILL after 30 s."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def running_campaign(store, cfg, frames) -> list:
    """``cfg``'s campaign created in ``store`` (a ResultsStore), running at stage 0, iteration 0, with ``frames``
    (ASE Atoms) stored as selected initial configurations; returns their ids, to label."""
    store.init()
    store.create_campaign(cfg.name, cfg.frozen(), cfg.type_map)
    store.update_campaign(cfg.name, status="running", stage=0, iteration=0, stage_status=[])
    return [store.add_atoms(cfg.name, atoms, {"kind": "init", "iteration": -1, "frame": k}, status="selected")[0]
            for k, atoms in enumerate(frames)]


def rattled_cu(n: int, stdev: float) -> list:
    """``n`` 32-atom fcc Cu cells (a = 3.615 Å), each rattled by ``stdev`` Å with its own seed (0..n-1)."""
    from ase.build import bulk

    frames = [bulk("Cu", "fcc", a=3.615, cubic=True).repeat((2, 2, 2)) for _ in range(n)]
    for k, atoms in enumerate(frames):
        atoms.rattle(stdev, seed=k)
    return frames
