"""A worker cut off from the database for longer than the lost-run expiry, then reconnected (issue 20, item 1).

The test builds its own network: a network namespace for the worker that will be cut off and a veth pair whose
ends carry 10.213.R.1/30 (this namespace) and 10.213.R.2/30 (the worker's namespace, which has no other link and
no route: nothing leaves the machine). FerretDB, started here with ``--listen-addr``, listens on 10.213.R.1 only,
and the worker in the namespace talks to it over the link. The other clients (the test, the other workers) reach
it through a relay on this namespace's loopback, so that they take the embedded server's host-wide write lock as
firegen's clients of a loopback FerretDB do (:mod:`firegen.db.embedded.write_lock`: FerretDB 1.x's conditional
updates are not atomic, and the lock is only taken for loopback addresses). The worker in the namespace does not
take it; nothing else runs while it works, and it is stopped once its late batch has ended.

The campaign is the small cu_emt one of the fault tests with the ``delayed`` labeler (EMT, held back 1 s per
structure) so that the initial label batch runs long enough to be cut.

1. Only the worker in the namespace runs: it takes init, then the label batch; after it stored a few labels one end
   of the link goes down (``ip link set ... down``).
2. A cpu and a gpu worker start here. Their lost-run duty finds the batch not pinged for the expiry (10 s for this
   test: ``FIREGEN_LOST_EXPIRY_S``, with pings every 2 s and a duty every 5 s) and reruns it; the cpu worker labels
   what is left, and the campaign goes on.
3. Once the rerun has finished the batch, the link comes back and the cut-off worker's batch ends late.

Checked: the batch was found lost and rerun by the other worker, once; every configuration was labeled exactly
once (``label_writes`` 1); the campaign finished whole (models, selection, nothing fizzled); the label tally the
reports read equals the labels stored.
"""

from __future__ import annotations

import contextlib
import os
import random
import subprocess
import time
from pathlib import Path

import pymongo
import pytest

from campaign_helpers import BIN, cli_env, stop_group
from fault_helpers import NAME, assert_campaign_whole, fault_config, label_figures, record_outcome, wait_for
from firegen.db.healing import DUTY_ENV, ENV_PROCESS, EXPIRY_ENV, LOST_KEY, PING_ENV

pytestmark = pytest.mark.slow

HEAL_ENV = {PING_ENV: "2", EXPIRY_ENV: "10", DUTY_ENV: "5"}


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    out = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=60)
    if check and out.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {out.stderr.strip()}")
    return out


@contextlib.contextmanager
def private_link():
    """A network namespace joined to this one by a veth pair on 10.213.R.0/30; yields (namespace, its end of the
    link, this end of the link, this end's address). Both go in the end."""
    if os.geteuid() != 0:
        pytest.skip("needs root to create network namespaces")
    used = _ip("-o", "addr").stdout
    octet = next(o for o in random.sample(range(1, 255), 254) if f"10.213.{o}." not in used)
    tag = f"{os.getpid() % 10000:04d}{octet:03d}"
    netns, here, there = f"fgw{tag}", f"fgh{tag}", f"fgp{tag}"
    made = _ip("netns", "add", netns, check=False)
    if made.returncode != 0:
        pytest.skip(f"cannot create a network namespace here: {made.stderr.strip()}")
    try:
        _ip("link", "add", here, "type", "veth", "peer", "name", there)
        _ip("link", "set", there, "netns", netns)
        _ip("addr", "add", f"10.213.{octet}.1/30", "dev", here)
        _ip("link", "set", here, "up")
        _ip("-n", netns, "addr", "add", f"10.213.{octet}.2/30", "dev", there)
        _ip("-n", netns, "link", "set", there, "up")
        _ip("-n", netns, "link", "set", "lo", "up")
        # the worker's neighbour entry for the database's address is pinned (as a static ARP entry): with the
        # far end down its packets then vanish without an error, instead of "No route to host" once the
        # neighbour lookup times out, which some runs hit and others did not
        mac = Path(f"/sys/class/net/{here}/address").read_text().strip()
        _ip("-n", netns, "neigh", "replace", f"10.213.{octet}.1", "lladdr", mac, "dev", there, "nud", "permanent")
        yield netns, there, here, f"10.213.{octet}.1"
    finally:
        _ip("link", "del", here, check=False)  # takes its peer with it
        _ip("netns", "del", netns, check=False)


RELAY = r"""
import socket, sys, threading
listen, upstream = ("127.0.0.1", int(sys.argv[1])), (sys.argv[2], int(sys.argv[3]))
def pump(a, b):
    try:
        while True:
            data = a.recv(65536)
            if not data:
                break
            b.sendall(data)
    except OSError:
        pass
    for sock in (a, b):
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
def pair(client):
    try:
        server = socket.create_connection(upstream, timeout=10)
    except OSError:
        client.close()
        return
    server.settimeout(None)
    threading.Thread(target=pump, args=(client, server), daemon=True).start()
    pump(server, client)
srv = socket.create_server(listen)
print("ready", flush=True)
while True:
    client, _ = srv.accept()
    threading.Thread(target=pair, args=(client,), daemon=True).start()
"""


@contextlib.contextmanager
def ferretdb_on(address: str, folder: Path):
    """FerretDB (SQLite handler) listening on ``address`` only, and a relay to it on this namespace's loopback,
    same port, registered as an embedded server's (the host-wide write lock). Yields (the URI over the link, the
    URI through the loopback relay), database ``firegen``."""
    import sys

    from firegen.db.embedded.install import install_ferretdb
    from firegen.db.embedded.server import free_port
    from firegen.db.embedded.write_lock import register_server, unregister_server

    binary = install_ferretdb()
    port = free_port()
    (folder / "data").mkdir(parents=True)
    (folder / "state").mkdir()
    with open(folder / "ferretdb.log", "ab") as log:
        proc = subprocess.Popen([str(binary), "--handler=sqlite", f"--sqlite-url=file:{folder / 'data'}/",
                                 f"--listen-addr={address}:{port}", f"--state-dir={folder / 'state'}",
                                 "--telemetry=disable", "--debug-addr=-", "--log-level=warn"],
                                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    relay = subprocess.Popen([sys.executable, "-c", RELAY, str(port), address, str(port)], stdout=subprocess.PIPE,
                             stdin=subprocess.DEVNULL, start_new_session=True, text=True)
    try:
        assert relay.stdout.readline().strip() == "ready"
        register_server(port, proc.pid)
        client = pymongo.MongoClient(f"mongodb://127.0.0.1:{port}/", serverSelectionTimeoutMS=2000)
        wait_for(lambda: client.admin.command("ping"), 60, f"FerretDB on {address}:{port}")
        yield f"mongodb://{address}:{port}/firegen", f"mongodb://127.0.0.1:{port}/firegen"
    finally:
        unregister_server(port)
        for each in (relay, proc):
            each.terminate()
            try:
                each.wait(timeout=30)
            except subprocess.TimeoutExpired:
                each.kill()
                each.wait()


def _env(folder: Path, home: str) -> dict:
    return {**cli_env(folder), "FIREGEN_HOME": str(folder / home), **HEAL_ENV}


def start_worker(folder: Path, uri: str, category: str, home: str, netns: str | None = None) -> subprocess.Popen:
    """``firegen worker`` of ``category`` with its own FIREGEN_HOME (its log in ``home/worker.log``), in ``netns``
    when given (``ip netns exec`` runs it in place: the pid is the worker's)."""
    (folder / home).mkdir(exist_ok=True)
    cmd = [str(BIN / "firegen"), "--uri", uri, "worker", f"--{category}"]
    if netns:
        cmd = ["ip", "netns", "exec", netns, *cmd]
    with open(folder / home / "worker.log", "ab") as log:
        return subprocess.Popen(cmd, cwd=folder / home, env=_env(folder, home), stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)


def _holder(launch: dict) -> int:
    return int(launch["fworker"]["env"][ENV_PROCESS].split("/")[2])


def _label_launch(db, pid: int, state: str) -> dict | None:
    label_fws = [fw["fw_id"] for fw in db.fireworks.find({"spec.firegen.kind": "label"}, {"fw_id": 1})]
    for launch in db.launches.find({"fw_id": {"$in": label_fws}, "state": state}):
        if _holder(launch) == pid:
            return launch
    return None


@pytest.mark.parametrize("end", ["worker", "database"])
def test_a_worker_cut_off_past_the_expiry_is_rerun_elsewhere_and_its_late_batch_adds_nothing(tmp_path, end):
    """``end``: which end of the link goes down. The worker's: its route goes, so its operations fail at once
    (``Network is unreachable``) and its task retries them in place (5 s, then 30 s), the last try after the link
    is back. The database's: the worker's own interface stays up and what it sends is lost without an error, so
    the operation under way waits in its socket and goes through when the link is back (TCP retransmits it): the
    batch then ends late as if nothing happened, and counts the labels it stored before the cut (the gate had
    counted them already: the tally read 21 for 18 labels before ``count_labels`` learned when a batch began)."""
    config = fault_config(tmp_path)
    import yaml

    raw = yaml.safe_load(config.read_text())
    raw["labeler"] = {"kind": "delayed", "settings": {"labeler": "emt", "median_s": 1.0, "p99_over_p50": 1}}
    config.write_text(yaml.safe_dump(raw, sort_keys=False))
    workers: list[subprocess.Popen] = []
    with private_link() as (netns, there, here, db_address), \
            ferretdb_on(db_address, tmp_path / "db") as (over_link, uri):
        link = ["-n", netns, "link", "set", there] if end == "worker" else ["link", "set", here]
        try:
            submit = subprocess.run([str(BIN / "firegen"), "--uri", uri, "submit", str(config)], cwd=tmp_path,
                                    env=_env(tmp_path, "submit"), capture_output=True, text=True, timeout=600)
            assert submit.returncode == 0, submit.stdout + submit.stderr
            db = pymongo.MongoClient(uri, serverSelectionTimeoutMS=5000)["firegen"]
            cut = start_worker(tmp_path, over_link, "cpu", "cut", netns)
            workers.append(cut)
            launch = wait_for(lambda: db.configurations.count_documents({"campaign": NAME, "status": "labeled"}) >= 3
                              and _label_launch(db, cut.pid, "RUNNING"), 900, "the cut-off worker's label batch")
            _ip(*link, "down")
            cut_at = db.configurations.count_documents({"campaign": NAME, "status": "labeled"})
            assert cut_at < 18, "the batch finished before the link went down: nothing was cut"

            cpu, gpu = start_worker(tmp_path, uri, "cpu", "cpu"), start_worker(tmp_path, uri, "gpu", "gpu")
            workers += [cpu, gpu]
            rerun = wait_for(lambda: _label_launch(db, cpu.pid, "COMPLETED"), 900, "the batch rerun by the other worker")
            assert rerun["fw_id"] == launch["fw_id"]
            assert cut.poll() is None  # the cut-off worker is alive all along: only its link went
            _ip(*link, "up")

            # the late completion: the cut-off worker's own launch ends (COMPLETED, or requeued/refreshed by it)
            wait_for(lambda: db.launches.find_one({"launch_id": launch["launch_id"]})["state"] == "COMPLETED"
                     or "firegen worker: Firework" in (tmp_path / "cut" / "worker.log").read_text(errors="replace"),
                     600, "the cut-off worker back from its outage")
            time.sleep(5)  # anything it still had in flight
            stop_group(cut)  # it does not take the write lock (module docstring): it works no further beside the others
            wait_for(lambda: (db.campaigns.find_one({"name": NAME}) or {}).get("status") in
                     ("converged", "max_iterations", "failed", "stopped")
                     and not db.fireworks.count_documents({"state": {"$in": ["READY", "RESERVED", "RUNNING",
                                                                             "WAITING"]}}),
                     1800, "the campaign's end")

            logs = (tmp_path / "cpu" / "worker.log").read_text(errors="replace")
            logs += (tmp_path / "gpu" / "worker.log").read_text(errors="replace")
            cut_log = (tmp_path / "cut" / "worker.log").read_text(errors="replace")
            assert f"Firework {launch['fw_id']} was lost (its worker did not ping it for 10 s); rerun" in logs, logs[-3000:]
            from firegen.db.fireworks_archive import find_firework

            fw = find_firework(db, {"fw_id": launch["fw_id"]})
            assert fw["state"] == "COMPLETED" and fw["spec"][LOST_KEY] == 1
            assert launch["launch_id"] in fw["launches"] + fw.get("archived_launches", [])
            late = (db.launches.find_one({"launch_id": launch["launch_id"]})
                    or db.client[db.name + "_archive"].launches.find_one({"launch_id": launch["launch_id"]}) or {})
            campaign = assert_campaign_whole(db)
            labeled = db.configurations.count_documents({"campaign": NAME, "status": "labeled"})
            assert campaign["initial_labels"]["labeled"] == 18, campaign["initial_labels"]  # the tally reports read
            figures = label_figures(db)
            assert figures["labels_duplicated"] == 0 and figures["labels_lost"] == 0
            record_outcome(f"worker cut off from the database (netns, {end} end of the link down) past the expiry",
                           True, figures, f"link down after {cut_at} of 18 labels; batch rerun by another worker; "
                           f"the cut-off worker's own launch ended {late.get('state')}; {labeled} labels, each "
                           f"written once; initial label tally {campaign['initial_labels']['labeled']}")
            print(cut_log[-2000:])
        finally:
            for proc in workers:
                stop_group(proc)
