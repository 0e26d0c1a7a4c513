"""Installing FerretDB: every binary is checked before use, whichever route built it or wherever it was found.

The fast tests drive `install_ferretdb` with a stand-in `go` (tests/fixtures/fake_go/go) that builds
binaries behaving as FerretDB v1.24.2's do: valid with a version.txt, panicking without one. The
slow tests run the real `go` from an empty GOPATH, module cache and build cache.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from firegen.db.embedded import install as ferretdb_install
from firegen.db.errors import FerretDBUnavailable
from firegen.db.embedded.install import (FERRETDB_VERSION, build_from_source, build_with_go_install, check_ferretdb,
                                         find_ferretdb, install_ferretdb)
from firegen.db.embedded.server import EmbeddedServer, free_port, ping

FAKE_GO = Path(__file__).parent / "fixtures" / "fake_go"
BIN = Path(sys.executable).parent
PANIC = "panic: Invalid build/version/version.txt file content. Please run `bin/task gen-version`."


def script(path: Path, body: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return path


def broken_binary(path: Path) -> Path:
    """What plain `go install ...ferretdb@v1.24.2` produces: a binary that panics at start."""
    return script(path, f"echo '{PANIC}' >&2\nexit 2\n")


@pytest.fixture
def fake_go(tmp_path, monkeypatch):
    """PATH with only the stand-in go and the system tools; firegen's own folder, GOBIN and the module empty."""
    source = tmp_path / "module"
    (source / "build" / "version").mkdir(parents=True)
    (source / "cmd" / "ferretdb").mkdir(parents=True)
    (source / "build" / "version" / "mongodb.txt").write_text("7.0.77\n")
    (source / "cmd" / "ferretdb" / "main.go").write_text("package main\n")
    for folder in (source, *source.rglob("*")):  # the module cache is read-only
        if folder.is_dir():
            folder.chmod(0o555)
    (tmp_path / "cache").mkdir()
    env = {"FAKE_GO_SOURCE": str(source), "FAKE_GO_CACHE": str(tmp_path / "cache"),
           "FAKE_GO_LOG": str(tmp_path / "go.log"), "FIREGEN_FERRETDB_DIR": str(tmp_path / "own"),
           "GOBIN": str(tmp_path / "gobin"), "GOPATH": str(tmp_path / "gopath"),
           "PATH": f"{FAKE_GO}:{tmp_path / 'userbin'}:/usr/bin:/bin"}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    for key in ("FIREGEN_FERRETDB", "FAKE_GO_DOWNLOAD", "FAKE_GO_INSTALL", "GOPROXY"):
        monkeypatch.delenv(key, raising=False)
    yield tmp_path
    for folder in (source, *source.rglob("*")):
        if folder.is_dir():
            folder.chmod(0o755)


def go_calls(tmp_path: Path) -> list[str]:
    log = tmp_path / "go.log"
    return [" ".join(line.split()[:2]) + (" offline" if "GOPROXY=off" in line else "")
            for line in log.read_text().splitlines()] if log.exists() else []


def test_source_route_gives_a_checked_binary_in_firegens_own_folder(fake_go):
    messages = []
    path = install_ferretdb(log=messages.append)
    assert path == fake_go / "own" / "ferretdb"
    check = check_ferretdb(path)
    assert check.ok and check.returncode == 0
    assert f"version: {FERRETDB_VERSION}" in check.output
    assert go_calls(fake_go) == ["mod download", "build -trimpath"]
    assert messages[-1] == f"FerretDB {FERRETDB_VERSION}: {path} (route `source`)"
    assert sorted(p.name for p in (fake_go / "own").iterdir()) == [".ferretdb-install.lock", "ferretdb"]
    # a second call finds the checked copy and builds nothing
    assert install_ferretdb(log=messages.append) == path
    assert len(go_calls(fake_go)) == 2


def test_go_install_route_binary_fails_the_check_and_its_source_is_rebuilt(fake_go, monkeypatch):
    """Where `go mod download` is refused but `go install` works, its panicking binary is never kept."""
    monkeypatch.setenv("FAKE_GO_DOWNLOAD", "refuse")
    messages = []
    path = install_ferretdb(log=messages.append)
    assert go_calls(fake_go) == ["mod download", "install github.com/FerretDB/FerretDB/cmd/ferretdb@v1.24.2",
                                 "mod download offline", "build -trimpath offline"]
    assert check_ferretdb(path).ok
    failed_install = next(m for m in messages if "route `go install` failed" in m)
    assert "exited 2 and printed: " + PANIC in failed_install
    assert messages[-1].endswith("(route `source`)")


def test_go_install_route_alone_is_checked_like_any_binary(fake_go):
    result = build_with_go_install("go", FERRETDB_VERSION, _workdir(fake_go))
    assert result.binary is None and result.fetched
    assert result.problem.startswith("its binary fails the check: `") and result.problem.endswith(PANIC)


def _workdir(tmp_path: Path) -> Path:
    folder = tmp_path / "work"
    folder.mkdir(exist_ok=True)
    return folder


def test_no_route_works_one_error_naming_each_route_and_nothing_left_behind(fake_go, monkeypatch):
    monkeypatch.setenv("FAKE_GO_DOWNLOAD", "refuse")
    monkeypatch.setenv("FAKE_GO_INSTALL", "refuse")
    with pytest.raises(FerretDBUnavailable) as err:
        install_ferretdb(log=lambda _: None)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f"cannot build FerretDB {FERRETDB_VERSION}: route `source`: `go mod download` said: "
                              "go: github.com/FerretDB/FerretDB@v1.24.2: reading proxy: 403 Forbidden; "
                              "route `go install`: `go install` said: ")
    assert "410 Gone" in message and "Fix: set FIREGEN_FERRETDB" in message
    assert sorted(p.name for p in (fake_go / "own").iterdir()) == [".ferretdb-install.lock"]


def test_cli_install_failure_is_one_line_with_exit_code_2(fake_go, monkeypatch):
    env = {**os.environ, "FAKE_GO_DOWNLOAD": "refuse", "FAKE_GO_INSTALL": "refuse"}
    out = subprocess.run([str(BIN / "firegen"), "db", "install"], env=env, cwd=fake_go, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 2
    errors = [ln for ln in out.stderr.splitlines() if ln.startswith("firegen: error: ")]
    assert len(errors) == 1 and errors[0].startswith(f"firegen: error: cannot build FerretDB {FERRETDB_VERSION}")


@pytest.mark.parametrize("where", ["path", "gobin"])
def test_broken_binary_of_the_user_is_skipped_with_a_reason_and_left_alone(fake_go, where):
    user_binary = broken_binary(fake_go / ("userbin" if where == "path" else "gobin") / "ferretdb")
    before = user_binary.read_bytes()
    messages = []
    path = install_ferretdb(log=messages.append)
    assert path == fake_go / "own" / "ferretdb" and check_ferretdb(path).ok
    assert messages[0] == f"firegen: not using {user_binary}: `{user_binary} --version` exited 2 and printed: {PANIC}"
    assert user_binary.read_bytes() == before  # never built over


def test_other_version_on_path_is_not_used(fake_go):
    other = script(fake_go / "userbin" / "ferretdb", 'echo "version: v1.23.1"\n')
    messages = []
    path = install_ferretdb(log=messages.append)
    assert path != other and check_ferretdb(path).ok
    assert messages[0] == f"firegen: not using {other}: `{other} --version` exited 0 and printed: version: v1.23.1"


def test_working_binary_on_path_is_used_without_building(fake_go):
    good = script(fake_go / "userbin" / "ferretdb", f'echo "version: {FERRETDB_VERSION}"\n')
    assert install_ferretdb(log=lambda _: None) == good
    assert go_calls(fake_go) == []


def test_broken_own_copy_is_rebuilt(fake_go):
    own = broken_binary(fake_go / "own" / "ferretdb")
    messages = []
    assert install_ferretdb(log=messages.append) == own
    assert check_ferretdb(own).ok and go_calls(fake_go) == ["mod download", "build -trimpath"]
    assert messages[0].startswith(f"firegen: not using {own}: ")


def test_hanging_binary_fails_the_check(fake_go, monkeypatch):
    monkeypatch.setattr(ferretdb_install, "CHECK_TIMEOUT_S", 1.0)
    hung = script(fake_go / "userbin" / "ferretdb", "exec sleep 30\n")
    check = check_ferretdb(hung)
    assert not check.ok and check.describe() == f"`{hung} --version` did not exit within 1 s"


def test_explicit_broken_binary_stops_with_one_line(fake_go, monkeypatch):
    broken = broken_binary(fake_go / "mine" / "ferretdb")
    monkeypatch.setenv("FIREGEN_FERRETDB", str(broken))
    with pytest.raises(FerretDBUnavailable) as err:
        install_ferretdb(log=lambda _: None)
    assert str(err.value) == (
        f"FIREGEN_FERRETDB={broken} is not a working FerretDB {FERRETDB_VERSION}: `{broken} --version` exited 2 "
        f"and printed: {PANIC}. Fix: unset FIREGEN_FERRETDB to let firegen build its own copy in "
        f"{fake_go / 'own'}, or point it at a working {FERRETDB_VERSION} binary.")
    assert go_calls(fake_go) == []  # nothing built behind the user's back


def test_explicit_missing_binary_stops_with_one_line(fake_go, monkeypatch):
    monkeypatch.setenv("FIREGEN_FERRETDB", str(fake_go / "nowhere" / "ferretdb"))
    with pytest.raises(FerretDBUnavailable, match=r"^FIREGEN_FERRETDB=.*/nowhere/ferretdb is not a file\. Fix: "):
        find_ferretdb(log=lambda _: None)


def test_cli_db_up_with_explicit_broken_binary_names_it(fake_go, tmp_path):
    broken = broken_binary(fake_go / "mine" / "ferretdb")
    env = {k: v for k, v in os.environ.items() if k not in ("FIREGEN_MONGO_URI", "FIREGEN_LAUNCHPAD")}
    env.update(FIREGEN_FERRETDB=str(broken), FIREGEN_HOME=str(tmp_path / "home"))
    out = subprocess.run([str(BIN / "firegen"), "db", "up"], env=env, cwd=tmp_path, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 2, out.stdout + out.stderr
    assert out.stderr.splitlines() == [
        f"firegen: error: FIREGEN_FERRETDB={broken} is not a working FerretDB {FERRETDB_VERSION}: `{broken} --version` "
        f"exited 2 and printed: {PANIC}. Fix: unset FIREGEN_FERRETDB to let firegen build its own copy in "
        f"{fake_go / 'own'}, or point it at a working {FERRETDB_VERSION} binary."]


def test_without_go_the_hint_names_the_fix(fake_go, monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(FerretDBUnavailable, match=r"`go` is not on PATH\. Fix: install Go"):
        install_ferretdb(log=lambda _: None)


# --- the real toolchain ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def real_go_env(tmp_path_factory):
    """An empty GOPATH, module cache and build cache (shared by this module's slow tests)."""
    go = shutil.which("go")
    if go is None:
        pytest.skip("go is not installed")
    root = tmp_path_factory.mktemp("realgo")
    env = {"GOPATH": str(root / "gopath"), "GOMODCACHE": str(root / "gopath" / "pkg" / "mod"),
           "GOCACHE": str(root / "gocache"), "GOBIN": str(root / "gobin")}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    yield go, root
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    for path in (root / "gopath").rglob("*"):  # the module cache is read-only
        if path.is_dir():
            path.chmod(path.stat().st_mode | stat.S_IWUSR)


def _serves(binary: Path, root: Path) -> bool:
    server = EmbeddedServer(root, port=free_port())
    os.environ["FIREGEN_FERRETDB"] = str(binary)
    try:
        uri = server.start(install=False)
        return ping(uri)
    finally:
        os.environ.pop("FIREGEN_FERRETDB")
        server.stop()


@pytest.mark.slow
def test_real_go_install_binary_panics_and_its_source_rebuilt_offline_serves(real_go_env, tmp_path):
    go, root = real_go_env
    installed = build_with_go_install(go, FERRETDB_VERSION, _workdir(tmp_path))
    assert installed.binary is None and installed.fetched
    assert "exited 2" in installed.problem and "Invalid build/version/version.txt file content" in installed.problem
    rebuilt = build_from_source(go, FERRETDB_VERSION, _workdir(tmp_path), offline=True)
    assert rebuilt.binary is not None, rebuilt.problem
    assert _serves(rebuilt.binary, tmp_path / "db")


@pytest.mark.slow
def test_real_install_builds_firegens_own_copy_that_serves(real_go_env, tmp_path, monkeypatch):
    go, root = real_go_env
    monkeypatch.setenv("FIREGEN_FERRETDB_DIR", str(tmp_path / "own"))
    monkeypatch.setenv("PATH", f"{Path(go).parent}:/usr/bin:/bin")
    monkeypatch.delenv("FIREGEN_FERRETDB", raising=False)
    if shutil.which("ferretdb"):
        pytest.skip(f"a ferretdb in /usr/bin or /bin would be tried first: {shutil.which('ferretdb')}")
    path = install_ferretdb(log=lambda _: None)
    assert path == tmp_path / "own" / "ferretdb"
    assert check_ferretdb(path).ok
    assert _serves(path, tmp_path / "db")
