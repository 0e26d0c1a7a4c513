"""`firegen db ...` as users run it: real processes, a real embedded FerretDB, clear errors."""

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from firegen.db.connection import resolve_target
from firegen.campaign.errors import FiregenError
from firegen.db.embedded.id_index import INDEX_SUFFIX
from firegen.db.embedded.server import free_port

BIN = Path(sys.executable).parent


def firegen(*args, env, cwd, timeout=120):
    return subprocess.run([str(BIN / "firegen"), *args], env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)


def test_db_up_status_init_down(clean_env, tmp_path):
    env = {**clean_env, "FIREGEN_HOME": str(tmp_path / "home")}
    (tmp_path / "home" / "db").mkdir(parents=True)
    # a port of our own so that a developer's running server is never touched
    (tmp_path / "home" / "db" / "server.json").write_text(f'{{"port": {free_port()}}}')
    try:
        up = firegen("db", "up", env=env, cwd=tmp_path)
        assert up.returncode == 0, up.stderr
        assert (tmp_path / "my_launchpad.yaml").is_file()
        wflows = subprocess.run([str(BIN / "lpad"), "-l", "my_launchpad.yaml", "get_wflows"], cwd=tmp_path,
                                env=env, capture_output=True, text=True, timeout=60)
        assert wflows.returncode == 0, wflows.stderr
        assert wflows.stdout.strip() == "[]"
        # every collection got firegen's _id look-up index (db/embedded/id_index.py)
        con = sqlite3.connect(tmp_path / "home" / "db" / "data" / "firegen.sqlite")
        tables = {t for (t,) in con.execute("SELECT table_name FROM _ferretdb_collections")}
        indexed = {n[: -len(INDEX_SUFFIX)] for (n,) in con.execute("SELECT name FROM sqlite_master WHERE type='index'")
                   if n.endswith(INDEX_SUFFIX)}
        con.close()
        assert tables and indexed == tables and any(t.startswith("configurations_") for t in tables)
        assert any(t.startswith("blobs.chunks_") for t in tables)  # GridFS made at init, indexed with the rest
        # a database made by `db up` takes workflows without an `lpad reset`
        (tmp_path / "wf.yaml").write_text("fws:\n- fw_id: 1\n  spec: {_tasks: [{_fw_name: ScriptTask, script: 'true'}]}\nlinks: {}\nmetadata: {}\n")
        added = subprocess.run([str(BIN / "lpad"), "-l", "my_launchpad.yaml", "add", "wf.yaml"], cwd=tmp_path,
                               env=env, capture_output=True, text=True, timeout=60)
        assert added.returncode == 0, added.stderr
        again = firegen("db", "up", env=env, cwd=tmp_path)  # idempotent: reuses the running server
        assert again.returncode == 0 and "27" in again.stdout
        init = firegen("db", "init", env=env, cwd=tmp_path)
        assert init.returncode == 0 and "nothing (all present)" in init.stdout
        status = firegen("db", "status", env=env, cwd=tmp_path)
        assert status.returncode == 0 and "running, pid" in status.stdout and "configurations" in status.stdout
    finally:
        down = firegen("db", "down", env=env, cwd=tmp_path)
    assert down.returncode == 0 and "stopped" in down.stdout
    status = firegen("db", "status", env=env, cwd=tmp_path)
    assert status.returncode == 1 and "not running" in status.stdout
    assert (tmp_path / "home" / "db" / "data").is_dir()  # data stay on disk


def test_unreachable_database_is_one_line_without_password(clean_env, tmp_path):
    dead = f"mongodb://alice:hunter2@127.0.0.1:{free_port()}/firegen"
    env = {**clean_env, "FIREGEN_DB_TIMEOUT_MS": "500"}
    out = firegen("--uri", dead, "db", "status", env=env, cwd=tmp_path)
    assert out.returncode == 2
    warning, *lines = out.stderr.strip().splitlines()  # a password given on the command line is visible in `ps`
    assert warning.startswith("firegen: warning: --uri puts the password on the command line") and "FIREGEN_MONGO_URI" in warning
    assert len(lines) == 1 and lines[0].startswith("firegen: error: cannot reach the database")
    assert "hunter2" not in out.stderr + out.stdout and "alice:***@" in out.stderr
    assert "Traceback" not in out.stderr


def test_target_precedence(clean_env, tmp_path, monkeypatch):
    assert resolve_target().embedded
    user_file = tmp_path / "my_launchpad.yaml"
    user_file.write_text("host: db.example\nport: 27017\nname: prod\n")
    found = resolve_target()
    assert not found.embedded and found.launchpad_file == user_file
    monkeypatch.setenv("FIREGEN_MONGO_URI", "mongodb://h:1/x")
    assert resolve_target().source == "FIREGEN_MONGO_URI"
    assert resolve_target(uri="mongodb://k:2/y").source == "--uri"
    with pytest.raises(FiregenError, match="--launchpad"):
        resolve_target(launchpad=tmp_path / "missing.yaml")
