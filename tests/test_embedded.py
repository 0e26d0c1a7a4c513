"""The embedded database's adapter (db/embedded/): capabilities the general code asks, the write lock's
.pth hook only where a server is registered, and lock files of dead servers cleaned up."""

from __future__ import annotations

import os
import subprocess
import sys

from ase.build import bulk

from firegen.db.embedded import write_lock
from firegen.db.embedded.capabilities import FERRETDB, MONGODB, capabilities, update_unless
from firegen.db.repository import ResultsStore

PATCHED = ("import pymongo.collection as c; "
           "print(getattr(c.Collection.update_one, '__firegen_guard__', False))")


def test_the_suite_server_reports_the_embedded_capabilities(mongo_db):
    caps = capabilities(mongo_db.client)
    assert caps is FERRETDB and not caps.indexed_filters and not caps.atomic_updates
    assert MONGODB.indexed_filters and MONGODB.atomic_updates


def test_update_unless_changes_a_document_once(mongo_db):
    store = ResultsStore(mongo_db)
    cid, _ = store.add_atoms("c", bulk("Cu", "fcc", a=3.61), {"kind": "init"})
    coll = mongo_db.configurations
    assert update_unless(coll, cid, "status", "labeled", {"$set": {"status": "labeled"}, "$inc": {"n": 1}})
    assert not update_unless(coll, cid, "status", "labeled", {"$set": {"status": "labeled"}, "$inc": {"n": 1}})
    assert coll.find_one({"_id": cid})["n"] == 1


def _python(code: str, lock_dir) -> str:
    env = {**os.environ, "FIREGEN_LOCK_DIR": str(lock_dir)}
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          check=True, timeout=60).stdout.strip()


def test_the_pth_hook_patches_pymongo_only_while_a_server_is_registered(tmp_path):
    hook = tmp_path / "hook.py"  # the .pth line, run as site runs it
    hook.write_text(write_lock.pth_hook() + "\n")
    code = f"exec(open({str(hook)!r}).read()); " + PATCHED
    locks = tmp_path / "locks"
    assert _python(code, locks) == "False"  # no lock folder: nothing imported, nothing patched
    locks.mkdir()
    assert _python(code, locks) == "False"  # an empty one: the same
    (locks / "127.0.0.1-1.lock").write_text(f"{os.getpid()}\n")
    assert _python(code, locks) == "True"
    assert _python("import firegen.db; " + PATCHED, locks) == "True"  # importing firegen's db does it too


def test_lock_files_of_dead_servers_are_removed(tmp_path, monkeypatch):
    monkeypatch.setattr(write_lock, "LOCK_DIR", tmp_path)
    dead = subprocess.Popen(["true"])
    dead.wait()
    (tmp_path / "127.0.0.1-1.lock").write_text(f"{dead.pid}\n")  # its server was killed
    (tmp_path / "127.0.0.1-2.lock").write_text(f"{os.getpid()}\n")  # alive
    (tmp_path / "127.0.0.1-3.lock").write_text("")  # written by an older firegen, nothing listens on port 3
    assert sorted(p.name for p in write_lock.clean_stale()) == ["127.0.0.1-1.lock", "127.0.0.1-3.lock"]
    assert [p.name for p in tmp_path.iterdir()] == ["127.0.0.1-2.lock"]
    path = write_lock.register_server(4, pid=os.getpid())
    assert path.read_text() == f"{os.getpid()}\n" and write_lock.registered()


def test_a_killed_server_comes_back_on_its_port_with_every_acknowledged_write(tmp_path, monkeypatch):
    import json
    import signal
    import socket

    import pymongo
    import pytest

    from firegen.db.embedded import server as embedded
    from firegen.db.errors import EmbeddedPortBusy

    root = tmp_path / "db"
    root.mkdir()
    (root / "server.json").write_text(json.dumps({"port": embedded.free_port()}))  # never a developer's server
    first = embedded.EmbeddedServer(root)
    uri = first.start()
    client = pymongo.MongoClient(uri, serverSelectionTimeoutMS=5000)
    try:
        for i in range(50):  # each acknowledged; the connections leave TIME_WAIT sockets on the port
            client.firegen.acked.insert_one({"i": i})
        pid = json.loads((root / "server.json").read_text())["pid"]
        os.kill(pid, signal.SIGKILL)
        again = embedded.EmbeddedServer(root)  # a new process: `firegen db up`
        assert again.start() == uri and again.stale_pid == pid
        assert client.firegen.acked.count_documents({}) == 50  # the old client reconnects to the same address
        port = int(uri.rstrip("/").rsplit(":", 1)[1])
        assert again.stop() and json.loads((root / "server.json").read_text()) == {"port": port}  # kept for next time
        monkeypatch.setattr(embedded, "PORT_WAIT_S", 1.0)
        with socket.socket() as squatter:  # another program took the port meanwhile
            squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            squatter.bind(("127.0.0.1", port))
            squatter.listen()
            with pytest.raises(EmbeddedPortBusy, match=r"must come back on 127\.0\.0\.1:\d+, where its clients expect "
                                                        r"it, but another process holds that port\. Fix: stop what"):
                embedded.EmbeddedServer(root).start()
    finally:
        client.close()
        embedded.EmbeddedServer(root).stop()
