"""The embedded database: a FerretDB process (SQLite handler) on loopback, owned by firegen.

All its state lives under one folder (default ``.firegen/db`` of the working directory):
``data/`` (SQLite files), ``state/`` (FerretDB's own state), ``ferretdb.log`` and
``server.json`` (pid, port, URI). ``start`` is idempotent: a running server is reused.

The port is kept across restarts: every client (launchpad files, workers, ``firegen run``) holds
``127.0.0.1:<port>``, so a server that was stopped or killed comes back on the port ``server.json``
records (``stop`` keeps the port and drops the pid; a start after a SIGKILL drops the dead pid itself),
waiting up to :data:`PORT_WAIT_S` for that port to be free and failing with one line when it is not.
Nothing acknowledged before a kill is lost: FerretDB's SQLite handler runs in WAL mode and answers a
write after its transaction committed to the WAL, which SQLite replays at the next open.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pymongo

from firegen.db.errors import DatabaseUnreachable, EmbeddedPortBusy, FerretDBUnavailable
from firegen.db.embedded.id_index import index_every_database, index_id_lookups
from firegen.db.embedded.write_lock import register_server, unregister_server
from firegen.db.embedded.install import find_ferretdb, install_ferretdb

DEFAULT_PORT = 27117
"""Preferred loopback port of a first start; a free port is taken when it is busy (and kept from then on)."""

PORT_WAIT_S = 30.0
"""How long a restart waits for its recorded port to be free (another process may be closing it)."""


def free_port(preferred: int | None = None, host: str = "127.0.0.1") -> int:
    """``preferred`` if it can be bound on ``host``, else a free port chosen by the kernel."""
    for port in ([preferred] if preferred else []) + [0]:
        with socket.socket() as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
            return sock.getsockname()[1]
    raise OSError("no free port")


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    """Whether a server could listen on ``host:port`` now. Like Go's listener (FerretDB's), the probe sets
    SO_REUSEADDR, so connections of a killed server still in TIME_WAIT do not count as busy."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _pid_alive(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"ferretdb" in cmdline


def ping(uri: str, timeout_ms: int = 2000) -> bool:
    """True when a MongoDB wire-protocol server answers ``ping`` at ``uri``."""
    client = pymongo.MongoClient(uri, serverSelectionTimeoutMS=timeout_ms, connectTimeoutMS=timeout_ms)
    try:
        client.admin.command("ping")
        return True
    except pymongo.errors.PyMongoError:
        return False
    finally:
        client.close()


@dataclass
class EmbeddedServer:
    """A FerretDB server with the SQLite handler, listening on 127.0.0.1 only.

    Args:
        root: folder holding the data, logs and the ``server.json`` state file.
        port: loopback port; ``None`` reuses the recorded port, else :data:`DEFAULT_PORT` or a free one.
    """

    root: Path
    port: int | None = None

    def __post_init__(self) -> None:
        self.root = Path(self.root).resolve()
        self.stale_pid: int | None = None  # the dead server whose state the last start cleaned

    @property
    def state_file(self) -> Path:
        return self.root / "server.json"

    @property
    def log_file(self) -> Path:
        return self.root / "ferretdb.log"

    def _state(self) -> dict:
        try:
            return json.loads(self.state_file.read_text())
        except (OSError, ValueError):
            return {}

    @property
    def uri(self) -> str:
        port = self._state().get("port") or self.port or DEFAULT_PORT
        return f"mongodb://127.0.0.1:{port}/"

    def is_running(self) -> bool:
        state = self._state()
        return bool(state.get("pid")) and _pid_alive(state["pid"]) and ping(state["uri"], 1000)

    def start(self, timeout: float = 60.0, install: bool = True) -> str:
        """Start FerretDB (installing it first when missing and ``install``); return its URI."""
        if self.is_running():
            register_server(self._state()["port"], self._state()["pid"])
            return self._state()["uri"]
        binary = install_ferretdb() if install else find_ferretdb()
        if binary is None:
            raise FerretDBUnavailable("FerretDB is not installed. Fix: run `firegen db install` or use --uri.")
        port = self._port_to_use()
        data_dir, state_dir = self.root / "data", self.root / "state"
        data_dir.mkdir(parents=True, exist_ok=True)
        state_dir.mkdir(parents=True, exist_ok=True)
        cmd = [
            str(binary),
            "--handler=sqlite",
            f"--sqlite-url=file:{data_dir}/",
            f"--listen-addr=127.0.0.1:{port}",
            f"--state-dir={state_dir}",
            "--telemetry=disable",
            "--debug-addr=-",
            "--log-level=warn",
        ]
        with open(self.log_file, "ab") as log:
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True)
        uri = f"mongodb://127.0.0.1:{port}/"
        register_server(port, proc.pid)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise DatabaseUnreachable(
                    f"FerretDB exited with code {proc.returncode} at start; see {self.log_file}: "
                    f"{self.log_file.read_text(errors='replace')[-500:].strip()}"
                )
            if ping(uri, 500):
                index_every_database(data_dir)  # collections created while it was down (or by an older firegen)
                self.state_file.write_text(json.dumps(
                    {"pid": proc.pid, "port": port, "uri": uri, "binary": str(binary), "started": time.time()}))
                return uri
            time.sleep(0.2)
        proc.kill()
        raise DatabaseUnreachable(f"FerretDB did not answer on {uri} within {timeout:.0f} s; see {self.log_file}")

    def _port_to_use(self, wait: float | None = None) -> int:
        """The recorded port (waiting up to ``wait`` s, default :data:`PORT_WAIT_S`, for it to be free), else
        :data:`DEFAULT_PORT` or a free one for a first start. Drops a dead server's pid from ``server.json``
        (``self.stale_pid`` says which) and records the port before FerretDB starts."""
        state = self._state()
        self.stale_pid = state.get("pid") if state.get("pid") and not _pid_alive(state["pid"]) else None
        recorded = self.port or state.get("port")
        if not recorded:
            port = free_port(DEFAULT_PORT)
        else:
            port = int(recorded)
            deadline = time.monotonic() + (PORT_WAIT_S if wait is None else wait)
            while not port_free(port):
                if time.monotonic() >= deadline:
                    holder = (f"FerretDB pid {state['pid']} (it does not answer)" if state.get("pid")
                              and _pid_alive(state["pid"]) else "another process")
                    fix = ("`firegen db down`, then `firegen db up`" if "FerretDB" in holder else
                           f"stop what listens there (`ss -ltnp 'sport = :{port}'`), or delete {self.state_file} to "
                           "take a new port and restart every worker")
                    raise EmbeddedPortBusy(f"the embedded FerretDB under {self.root} must come back on 127.0.0.1:{port}, "
                                           f"where its clients expect it, but {holder} holds that port. Fix: {fix}.")
                time.sleep(0.5)
        self.root.mkdir(parents=True, exist_ok=True)
        self.state_file.write_text(json.dumps({"port": port}))
        return port

    def index_lookups(self, database: str) -> list[str]:
        """Give every collection of ``database`` the ``_id`` look-up index (:mod:`firegen.db.embedded.id_index`);
        returns the collection tables indexed now."""
        return index_id_lookups(self.root / "data", database)

    def stop(self, timeout: float = 15.0) -> bool:
        """Stop the server; True when one was running. Data stay on disk, and the port stays recorded."""
        state = self._state()
        pid = state.get("pid")
        if state.get("port"):
            unregister_server(state["port"])
        if not pid or not _pid_alive(pid):
            self._forget_pid(state)
            return False
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and _pid_alive(pid):
            _reap(pid)
            time.sleep(0.1)
        if _pid_alive(pid):
            os.kill(pid, signal.SIGKILL)
            _reap(pid)
        self._forget_pid(state)
        return True

    def _forget_pid(self, state: dict) -> None:
        """Keep only the port in ``server.json`` (the next start comes back there)."""
        if state.get("port"):
            self.state_file.write_text(json.dumps({"port": state["port"]}))
        else:
            self.state_file.unlink(missing_ok=True)

    def status(self) -> dict:
        """Running flag, pid, URI, data folder and log file, for ``firegen db status``."""
        state = self._state()
        return {
            "running": self.is_running(),
            "pid": state.get("pid"),
            "uri": state.get("uri", self.uri),
            "data": str(self.root / "data"),
            "log": str(self.log_file),
        }


def _reap(pid: int) -> None:
    """Collect the exit status when the server is our own child (tests start it in-process)."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
