"""Credentials and access (issue 20, item 5): SCRAM passwords and TLS options in URIs and launchpad files, files
that hold them written 0600, the embedded server on loopback only, and a campaign whose password leaks nowhere.

The authenticated server is a real FerretDB 1.24 with its "new authentication" (SCRAM-SHA-256 and SCRAM-SHA-1,
``--test-enable-new-auth``; the user made by ``--setup-username``/``FERRETDB_SETUP_PASSWORD``) listening on TLS
only, with a CA of the test's own that signs its certificate and the client's (``--listen-tls-ca-file``: a
client without a certificate is turned away).
"""

from __future__ import annotations

import datetime
import threading
import os
import secrets
import stat
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote, quote_plus

import bson
import psutil
import pymongo
import pytest
import yaml

from campaign_helpers import BIN, cli_env, small_cu_config
from firegen.campaign.errors import FiregenError
from firegen.db.connection import (DBTarget, read_launchpad_spec, resolve_target, write_archive_launchpad_file,
                                   write_launchpad_file)
from firegen.db.embedded.install import install_ferretdb
from firegen.db.embedded.server import free_port
from firegen.db.embedded.write_lock import register_server, unregister_server
from firegen.db.uri import check_uri, database_name, has_password, mask_uri
from firegen.launchers.local import worker_env

USER = "alice"


# -- URIs: checked without connecting, one line naming the field, never the password ------------------------

@pytest.mark.parametrize("uri, words", [
    ("mongodb://alice:p@ss@db/x", "percent-encoded"),               # '@' typed as is
    ("mongodb://alice:pa/ss9@db/x", "percent-encoded"),              # '/'
    ("mongodb://alice:a:b9z@db/x", "percent-encoded"),               # ':'
    ("mongodb://alice:pa?ss9@db/x", "percent-encoded"),              # '?'
    ("mongodb://alice:100%off@db/x", "percent-encoded"),             # a lone '%'
    ("mongodb://alice:pa?x9=1@db/x", "unknown URI option (or a password"),  # '?' then '=': read as options
    ("mongodb+srv://alice:pa/ss9@cluster.example/x", "percent-encoded"),
    ("http://alice:pw9@db/x", "a URI starting http:// is not a MongoDB URI"),
    ("alice:pw9@db/x", "a URI without a scheme is not a MongoDB URI"),
    ("mongodb://db/x?tls=true&tlsCAFile=no-such-ca.pem", "tlsCAFile no-such-ca.pem is not a readable file"),
    ("mongodb://db/x?tls=true&tlsCertificateKeyFile=/no/such.pem", "tlsCertificateKeyFile /no/such.pem is not"),
    ("mongodb://db/x?tlsCAFlie=/etc/hosts", "unknown URI option 'tlsCAFlie'"),
    ("mongodb://db/x?tls=maybe", "tls must be 'true' or 'false'"),
    ("mongodb://alice:pw9@db:99999/x", "Port must be an integer"),
])
def test_check_uri_refuses_bad_uris_in_one_line_naming_the_field(uri, words, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FiregenError) as err:
        check_uri(uri, "FIREGEN_MONGO_URI")
    message = str(err.value)
    assert message.startswith("FIREGEN_MONGO_URI: ") and words in message and "Fix:" in message
    assert "\n" not in message
    password = uri.partition("://")[2].rpartition("@")[0].partition(":")[2]
    for piece in filter(None, (password, *password.replace("?", "/").split("/"))):
        if len(piece) > 2:
            assert piece not in message


def test_check_uri_accepts_auth_and_tls_options_and_makes_tls_files_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "ca.pem").write_text("x")
    (tmp_path / "client dir").mkdir()
    (tmp_path / "client dir" / "me.pem").write_text("x")
    uri = ("MongoDB://alice:p%40ss%2Fw%3Ard@db1:27017,db2/firegen?authSource=admin&authMechanism=SCRAM-SHA-256"
           "&tls=true&tlsCAFile=ca.pem&tlsCertificateKeyFile=client%20dir/me.pem&replicaSet=rs0")
    checked = check_uri(uri, "--uri")
    assert checked == ("mongodb://alice:p%40ss%2Fw%3Ard@db1:27017,db2/firegen?authSource=admin&authMechanism="
                       f"SCRAM-SHA-256&tls=true&tlsCAFile={tmp_path}/ca.pem&tlsCertificateKeyFile="
                       f"{quote(str(tmp_path / 'client dir'), safe='/')}/me.pem&replicaSet=rs0")
    parsed = pymongo.uri_parser.parse_uri(checked)
    assert parsed["password"] == "p@ss/w:rd" and parsed["options"]["tlsCAFile"] == str(tmp_path / "ca.pem")
    assert parsed["options"]["tlsCertificateKeyFile"] == str(tmp_path / "client dir" / "me.pem")
    srv = check_uri("mongodb+srv://alice:pw@cluster.example/x?authSource=admin", "--uri")  # no DNS look-up here
    assert srv == "mongodb+srv://alice:pw@cluster.example/x?authSource=admin"


def test_uri_helpers_on_awkward_passwords():
    assert database_name("mongodb://alice:p@ss/w:rd@db/firegen?authSource=admin") == "firegen"
    assert database_name("mongodb://db/proj?tls=true&tlsCAFile=/certs/a@b/ca.pem") == "proj"
    assert database_name("mongodb://alice:pw@db/") == "firegen"
    assert has_password("mongodb://alice:pw@db/x") and has_password("MONGODB+SRV://alice:p@ss@db/x")
    assert not has_password("mongodb://alice@db/x?authMechanism=MONGODB-X509")
    assert not has_password("mongodb://db/x?tlsCAFile=/certs/a:b@c/ca.pem")
    assert mask_uri("mongodb://alice:p%2Fss@db/x?tlsCertificateKeyFilePassword=kp") == \
        "mongodb://alice:***@db/x?tlsCertificateKeyFilePassword=***"


def test_resolve_target_checks_the_uri_of_its_source(monkeypatch, clean_env):
    monkeypatch.setenv("FIREGEN_MONGO_URI", "mongodb://alice:p@ss@db/x")
    with pytest.raises(FiregenError, match="^FIREGEN_MONGO_URI: the user name or password"):
        resolve_target()
    with pytest.raises(FiregenError, match="^--uri: unknown URI option 'authsorce'"):
        resolve_target(uri="mongodb://db/x?authsorce=admin")


# -- files that hold a URI -------------------------------------------------------------------------------------

def test_launchpad_files_are_written_0600_even_over_an_open_file(tmp_path):
    path = tmp_path / "my_launchpad.yaml"
    path.write_text("old: 1\n")
    path.chmod(0o644)
    write_launchpad_file(path, "mongodb://alice:pw@db/firegen?tls=true")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert yaml.safe_load(path.read_text())["host"] == "mongodb://alice:pw@db/firegen?tls=true"
    archive = tmp_path / "archive.yaml"
    archive.write_text("")
    archive.chmod(0o664)
    write_archive_launchpad_file(archive, DBTarget(uri="mongodb://alice:pw@db/firegen", source="--uri"))
    assert stat.S_IMODE(archive.stat().st_mode) == 0o600


def _launchpad_file(folder):
    return write_launchpad_file(folder / "my_launchpad.yaml", "mongodb://127.0.0.1:27117/firegen", embedded=True)


def _fworker_file(folder):
    from firegen.launchers.local import write_fworker

    return write_fworker("cpu", folder / "my_launchpad.yaml", folder)


@pytest.mark.parametrize("write, expected", [
    (_launchpad_file, ("host", "mongodb://127.0.0.1:27117/firegen")),
    (_fworker_file, ("category", "cpu")),
], ids=["launchpad", "fworker"])
def test_a_file_every_worker_rewrites_at_start_is_never_read_empty_or_cut(tmp_path, write, expected):
    """Workers started together each rewrite the launchpad and FWorker files while the others read them (seen:
    3 of 4 cpu workers of a benchmark died reading an empty launchpad file, and later one an empty FWorker file).
    A reader must see the old file or the new one."""
    path = write(tmp_path)
    done = threading.Event()
    seen: list = []
    key, value = expected

    def rewrite():
        for _ in range(400):
            write(tmp_path)
        done.set()

    writer = threading.Thread(target=rewrite)
    writer.start()
    while not done.is_set():
        spec = yaml.safe_load(path.read_text())
        if not (isinstance(spec, dict) and spec.get(key) == value):
            seen.append(spec)
    writer.join()
    assert seen == [] and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left behind


def test_archive_launchpad_file_keeps_authenticating_where_the_user_lives(tmp_path):
    """A launchpad file with username/password and no authsource authenticates in its database ``name``
    (FireWorks' default); its archive file names ``<name>_archive``, so it must say where the user is."""
    lp = tmp_path / "lp.yaml"
    lp.write_text(yaml.safe_dump({"host": "db.example", "port": 27017, "name": "proj", "username": USER,
                                  "password": "pw", "mongoclient_kwargs": {"tls": True}}))
    out = write_archive_launchpad_file(tmp_path / "a.yaml", DBTarget(launchpad_file=lp, source="--launchpad"))
    spec = yaml.safe_load(out.read_text())
    assert spec["name"] == "proj_archive" and spec["authsource"] == "proj" and spec["mongoclient_kwargs"]["tls"]


@pytest.mark.parametrize("content, words", [
    ("- a list\n", "a launchpad file is a YAML mapping"),
    ("host: 'mongodb://alice:p@ss@db/x'\nuri_mode: true\n", "host: the user name or password"),
    ("host: db\nmongoclient_kwargs: {tls: true, tlsCAFile: /no/such/ca.pem}\n",
     "mongoclient_kwargs.tlsCAFile: /no/such/ca.pem is not a readable file"),
    ("host: db\nmongoclient_kwargs: [tls]\n", "mongoclient_kwargs must be a mapping"),
])
def test_bad_launchpad_files_give_one_line(tmp_path, content, words):
    path = tmp_path / "lp.yaml"
    path.write_text(content)
    with pytest.raises(FiregenError) as err:
        read_launchpad_spec(path)
    assert str(err.value).startswith(f"{path}: ") and words in str(err.value) and "Fix:" in str(err.value)
    assert "p@ss" not in str(err.value)


def test_workers_get_the_launchpad_file_not_the_uri(tmp_path, monkeypatch):
    monkeypatch.setenv("FIREGEN_MONGO_URI", "mongodb://alice:pw@db/x")
    env = worker_env(tmp_path / "lp.yaml")
    assert "FIREGEN_MONGO_URI" not in env and env["FIREGEN_LAUNCHPAD"] == str(tmp_path / "lp.yaml")


# -- the embedded server ---------------------------------------------------------------------------------------

def test_embedded_server_listens_on_loopback_only(ferretdb):
    """Every socket the embedded FerretDB listens on (psutil reads /proc/net/tcp and tcp6) is bound to 127.0.0.1:
    no wildcard, no other interface, no debug/metrics listener (FerretDB's default debug address is off)."""
    pid = ferretdb._state()["pid"]
    listening = [c.laddr for c in psutil.Process(pid).net_connections(kind="inet") if c.status == psutil.CONN_LISTEN]
    assert listening, "the embedded FerretDB listens on nothing"
    assert {addr.ip for addr in listening} == {"127.0.0.1"}, listening
    assert [addr.port for addr in listening] == [int(ferretdb.uri.rsplit(":", 1)[1].strip("/"))]


# -- a real authenticated TLS server ---------------------------------------------------------------------------

def write_certificates(folder: Path) -> dict[str, Path]:
    """A CA, a server certificate for 127.0.0.1 and a client certificate with its key (PEM files in ``folder``)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    import ipaddress

    now = datetime.datetime.now(datetime.timezone.utc)

    def cert(name, key, issuer_name, issuer_key, ca=False, san=None):
        builder = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
                   .issuer_name(issuer_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
                   .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if san:
            builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
        return builder.sign(issuer_key, hashes.SHA256())

    def pem_key(key):
        return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption())

    folder.mkdir(parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "firegen test CA")])
    ca = cert("firegen test CA", ca_key, ca_name, ca_key, ca=True)
    server_key, client_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    server = cert("127.0.0.1", server_key, ca_name, ca_key,
                  san=[x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")])
    client = cert(USER, client_key, ca_name, ca_key)
    paths = {name: folder / f"{name}.pem" for name in ("ca", "server", "server-key", "client")}
    paths["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths["server"].write_bytes(server.public_bytes(serialization.Encoding.PEM))
    paths["server-key"].write_bytes(pem_key(server_key))
    paths["client"].write_bytes(client.public_bytes(serialization.Encoding.PEM) + pem_key(client_key))
    for path in paths.values():
        path.chmod(0o600)
    return paths


@contextmanager
def secured_ferretdb(folder: Path, password: str, database: str = "firegen"):
    """FerretDB with SCRAM users (``USER`` with ``password``, made in ``database``) on TLS only, client
    certificates required; yields ``(uri, certificates, pid)``. The password reaches it in its environment, not
    its command line. It is registered as an embedded FerretDB on this host, so firegen's clients serialize
    their read-modify-write calls to it (FerretDB 1.x is not atomic there, whoever runs it)."""
    certs = write_certificates(folder / "tls")
    port = free_port()
    (folder / "data").mkdir(parents=True, exist_ok=True)
    (folder / "state").mkdir(parents=True, exist_ok=True)
    cmd = [str(install_ferretdb()), "--handler=sqlite", f"--sqlite-url=file:{folder / 'data'}/", "--listen-addr=",
           f"--listen-tls=127.0.0.1:{port}", f"--listen-tls-cert-file={certs['server']}",
           f"--listen-tls-key-file={certs['server-key']}", f"--listen-tls-ca-file={certs['ca']}",
           f"--state-dir={folder / 'state'}", "--telemetry=disable", "--debug-addr=-", "--log-level=warn",
           "--test-enable-new-auth", f"--setup-database={database}", f"--setup-username={USER}"]
    env = dict(os.environ, FERRETDB_SETUP_PASSWORD=password)
    with open(folder / "ferretdb.log", "ab") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    uri = (f"mongodb://{USER}:{quote_plus(password)}@127.0.0.1:{port}/{database}?tls=true&tlsCAFile={certs['ca']}"
           f"&tlsCertificateKeyFile={certs['client']}")
    register_server(port, proc.pid)
    try:
        client = pymongo.MongoClient(uri, serverSelectionTimeoutMS=1000)
        deadline = time.monotonic() + 60
        while True:
            try:
                client[database].command("ping")
                client[database]["probe"].insert_one({"ok": 1})  # authenticated (FerretDB answers ping to anyone)
                client[database].drop_collection("probe")
                break
            except pymongo.errors.PyMongoError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"secured FerretDB did not come up: {(folder / 'ferretdb.log').read_text()[-800:]}")
                time.sleep(0.3)
        client.close()
        yield uri, certs, proc.pid
    finally:
        unregister_server(port)
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def make_password() -> tuple[str, str]:
    """A password with the characters a URI must escape, and its random core (found in it raw or escaped)."""
    core = secrets.token_hex(10)
    return f"Pw/{core}@:%!", core


def _firegen(folder: Path, *args, env: dict, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "firegen"), *args], cwd=folder, env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_password_and_tls_work_in_uris_and_launchpad_files(tmp_path):
    password, core = make_password()
    work = tmp_path / "work"
    work.mkdir()
    with secured_ferretdb(tmp_path / "server", password) as (uri, certs, _pid):
        env = {**cli_env(work), "FIREGEN_MONGO_URI": uri}
        # refused without credentials, without the client certificate, with a wrong password
        plain = uri.replace(quote_plus(password), "nope")
        nocert = uri.split("&tlsCertificateKeyFile")[0]
        for bad, words in ((plain, "refused the user name and password (authentication failed)"),
                           (nocert, "Fix: check the TLS options")):
            out = _firegen(work, "db", "status", env={**env, "FIREGEN_MONGO_URI": bad})
            assert out.returncode == 2, out.stderr
            (line,) = out.stderr.strip().splitlines()
            assert line.startswith("firegen: error: ") and words in line and core not in line
        noauth = pymongo.MongoClient(uri.replace(f"{USER}:{quote_plus(password)}@", ""), serverSelectionTimeoutMS=3000)
        with pytest.raises(pymongo.errors.OperationFailure, match="requires authentication"):
            noauth.firegen.list_collection_names()

        out = _firegen(work, "db", "init", env=env)
        assert out.returncode == 0, out.stderr
        out = _firegen(work, "db", "status", env=env)
        assert out.returncode == 0 and "campaigns" in out.stdout and f"{USER}:***@" in out.stdout, out.stderr
        assert core not in out.stdout + out.stderr
        out = _firegen(work, "db", "launchpad", "-o", "my_launchpad.yaml", env=env)
        assert out.returncode == 0, out.stderr
        lp_file = work / "my_launchpad.yaml"
        assert stat.S_IMODE(lp_file.stat().st_mode) == 0o600
        spec = yaml.safe_load(lp_file.read_text())
        assert spec["uri_mode"] and spec["host"] == uri and spec["name"] == "firegen"
        no_db_env = {k: v for k, v in env.items() if k != "FIREGEN_MONGO_URI"}
        lpad = subprocess.run([str(BIN / "lpad"), "-l", str(lp_file), "get_wflows"], cwd=work, env=no_db_env,
                              capture_output=True, text=True, timeout=120)
        assert lpad.returncode == 0 and "[]" in lpad.stdout, lpad.stderr[-500:]

        # FireWorks' other form: host/port/name/username/password/authsource and pymongo options for TLS
        classic = work / "classic.yaml"
        classic.write_text(yaml.safe_dump({
            "host": "127.0.0.1", "port": int(uri.split("@")[1].split("/")[0].split(":")[1]), "name": "firegen",
            "username": USER, "password": password, "authsource": "firegen",
            "mongoclient_kwargs": {"tls": True, "tlsCAFile": str(certs["ca"]),
                                   "tlsCertificateKeyFile": str(certs["client"])}}))
        classic.chmod(0o600)
        out = _firegen(work, "--launchpad", str(classic), "db", "status", env=no_db_env)
        assert out.returncode == 0 and "campaigns" in out.stdout, out.stderr
        out = _firegen(work, "--launchpad", str(classic), "db", "launchpad", "--archive", "-o", "archive.yaml",
                       env=no_db_env)
        assert out.returncode == 0, out.stderr
        lpad = subprocess.run([str(BIN / "lpad"), "-l", str(work / "archive.yaml"), "get_fws"], cwd=work,
                              env=no_db_env, capture_output=True, text=True, timeout=120)
        assert lpad.returncode == 0 and "[]" in lpad.stdout, lpad.stderr[-500:]  # authenticated in 'firegen'


# -- a whole campaign with a password in its URI ---------------------------------------------------------------

def _watch_processes(root_pid: int, core: str, seen: dict) -> None:
    """Record the command line and environment of ``root_pid`` and every process below it (workers and what they
    run): (pid, cmdline) -> (cmdline, hits in cmdline, hits in environ), a hit kept once seen."""
    try:
        root = psutil.Process(root_pid)
        children = root.children(recursive=True)
    except psutil.Error:
        return
    for child in [root, *children]:
        try:
            cmdline = Path(f"/proc/{child.pid}/cmdline").read_bytes()
            environ = Path(f"/proc/{child.pid}/environ").read_bytes()
        except OSError:
            continue
        text = cmdline.replace(b"\0", b" ").decode(errors="replace")
        _text, in_cmd, in_env = seen.get((child.pid, text), (text, False, False))
        seen[(child.pid, text)] = (text, in_cmd or core.encode() in cmdline,
                                   in_env or core.encode() in environ)


@pytest.mark.slow
def test_a_campaign_leaves_its_password_nowhere(tmp_path):
    """`firegen run` with ``FIREGEN_MONGO_URI`` holding a password (and TLS options) runs a whole campaign on an
    authenticated TLS FerretDB; then the password is in none of: the run's stdout and stderr, any file under the
    campaign folder and FIREGEN_HOME but the workers' launchpad file (mode 0600, the one place workers read it
    from), any document of any collection of any database, and the command line or environment of any process
    the run started (workers and their children, sampled while they ran)."""
    password, core = make_password()
    work = tmp_path / "campaign"
    work.mkdir()
    config = small_cu_config(work, "cu-secret", stage={"temperatures": [1500], "nsteps": 300, "max_iterations": 1})
    with secured_ferretdb(tmp_path / "server", password) as (uri, _certs, server_pid):
        env = {**cli_env(work), "FIREGEN_MONGO_URI": uri}
        run = subprocess.Popen([str(BIN / "firegen"), "run", str(config), "--timeout", "1500"], cwd=work, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        seen: dict[tuple[int, str], tuple[str, bool, bool]] = {}

        done = threading.Event()

        def watch():
            while not done.is_set():
                _watch_processes(run.pid, core, seen)
                done.wait(0.5)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        try:
            stdout, stderr = run.communicate(timeout=1700)
        finally:
            done.set()
            watcher.join()
            if run.poll() is None:
                run.kill()
        assert run.returncode == 0, f"{stdout[-2000:]}\n{stderr[-3000:]}"
        assert core not in stdout and core not in stderr
        assert any(pid == run.pid and "firegen run" in text for pid, text in seen)  # its own command line was read

        # processes: the workers (and dp, LAMMPS, ... below them) were seen, none held the password
        workers = [text for text, _c, _e in seen.values() if "firegen.launchers.worker" in text]
        assert {"gpu", "cpu"} <= {text.split("--kind ")[1].split()[0] for text in workers}, sorted(
            text for text, _c, _e in seen.values())
        assert [text for text, in_cmd, _e in seen.values() if in_cmd] == []
        assert [text for (pid, _t), (text, _c, in_env) in seen.items() if in_env and pid != run.pid] == []
        # the reading works: `firegen run` itself holds it in the environment the test gave it (FIREGEN_MONGO_URI)
        assert all(in_env for (pid, text), (_x, _c, in_env) in seen.items() if pid == run.pid and "firegen run" in text)

        # documents: every one of every collection of every database on the server
        client = pymongo.MongoClient(uri, serverSelectionTimeoutMS=5000)
        db = client.firegen
        assert db.campaigns.find_one({"name": "cu-secret"})["status"] in ("converged", "max_iterations")
        assert db.configurations.count_documents({"campaign": "cu-secret", "status": "labeled"}) >= 18
        assert db.models.count_documents({"campaign": "cu-secret"}) == 2
        scanned, hits, holding = 0, [], set()
        for name in client.list_database_names():
            for collection in client[name].list_collection_names():
                for doc in client[name][collection].find():
                    scanned += 1
                    holding.add(collection)
                    if core.encode() in bson.encode(doc):
                        hits.append(f"{name}.{collection} {doc.get('_id')}")
        assert db.fireworks.count_documents({}) + client.firegen_archive.fireworks.count_documents({}) >= 5
        assert {"fireworks", "launches", "workflows", "campaigns", "iterations", "configurations", "models",
                "datasets", "blobs.files", "blobs.chunks"} <= holding, sorted(holding)
        assert scanned > 40 and hits == [], hits

        # files: everything under the campaign folder and FIREGEN_HOME (logs, launch folders, reports, ...)
        home = work / ".firegen"
        holders, files = [], 0
        for path in work.rglob("*"):
            if path.is_file() and not path.is_symlink():
                files += 1
                if core.encode() in path.read_bytes():
                    holders.append(path)
        lp_file = home / "workers" / "my_launchpad.yaml"
        assert files > 20 and (home / "workers" / "gpu").is_dir()
        assert holders == [lp_file], holders
        assert stat.S_IMODE(lp_file.stat().st_mode) == 0o600
        assert not (server_pid and core in Path(f"/proc/{server_pid}/cmdline").read_text(errors="replace"))
