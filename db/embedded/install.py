"""Finding and installing the embedded database server, FerretDB, from the Go module proxy.

A FerretDB binary is used only after it was *checked*: ``ferretdb --version`` exits 0 and prints
``version: v1.24.2`` (:func:`check_ferretdb`). The binary that plain ``go install
github.com/FerretDB/FerretDB/cmd/ferretdb@v1.24.2`` builds fails that check: the module ships no
``build/version/version.txt`` (FerretDB's release tooling writes it), and the binary panics at start
("Invalid build/version/version.txt file content").

So firegen builds its own copy, by the first of these routes that yields a checked binary:

1. ``source``: ``go mod download`` of that exact version, ``version.txt`` written with the version
   tag, ``go build ./cmd/ferretdb``: the release's source and a valid version file;
2. ``go install``: for a module proxy that serves ``go install`` but not ``go mod download``; its
   binary is checked like any other, and when it fails the check (as v1.24.2's does) the source
   that ``go install`` fetched is rebuilt by route 1 from the module cache (``GOPROXY=off``).

firegen's own copy lives in a folder of its own (:func:`own_bin_dir`: ``$FIREGEN_FERRETDB_DIR``, else
the ``bin`` folder of the virtual environment firegen runs in, else ``~/.local/share/firegen/bin``),
never over a binary of the user's. A binary found on ``PATH`` or in the Go bin folder is used only
when it passes the check; otherwise firegen says why it skips it and uses (or builds) its own.
``$FIREGEN_FERRETDB`` names a binary explicitly: when that one fails the check, firegen stops with
one line naming it, what it printed and the fix.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from firegen.db.errors import FerretDBUnavailable

FERRETDB_MODULE = "github.com/FerretDB/FerretDB"
FERRETDB_VERSION = "v1.24.2"
CHECK_TIMEOUT_S = 30.0
"""How long ``ferretdb --version`` may take before the binary counts as broken (s)."""
NO_GO_HINT = (
    "FerretDB (the embedded database) is not installed and `go` is not on PATH. "
    "Fix: install Go (https://go.dev/dl or `apt-get install golang-go`, Go >= 1.22) and rerun, "
    "or point firegen at an existing MongoDB with --uri / FIREGEN_MONGO_URI."
)
def _stderr(message: str) -> None:
    print(message, file=sys.stderr)


FIX = "Fix: set FIREGEN_FERRETDB to a working ferretdb v1.24.2 binary, or use --uri with an existing MongoDB."


@dataclass(frozen=True)
class BinaryCheck:
    """What ``PATH --version`` did: ``ok`` when it exited 0 and named the expected version."""

    path: Path
    ok: bool
    returncode: int | None
    output: str

    def describe(self) -> str:
        """One line: how the binary answered (exit code and the first meaningful output line)."""
        lines = [ln.strip() for ln in self.output.splitlines() if ln.strip()]
        said = next((ln for ln in lines if ln.startswith("panic:")), lines[0] if lines else "nothing")
        if self.returncode is None:
            return f"`{self.path} --version` did not exit within {CHECK_TIMEOUT_S:.0f} s"
        return f"`{self.path} --version` exited {self.returncode} and printed: {said[:300]}"


def check_ferretdb(path: Path, version: str = FERRETDB_VERSION) -> BinaryCheck:
    """Run ``path --version``; ok when it exits 0 with a ``version: <version>`` line."""
    path = Path(path)
    try:
        out = subprocess.run([str(path), "--version"], capture_output=True, text=True, timeout=CHECK_TIMEOUT_S,
                             stdin=subprocess.DEVNULL, check=False)
    except subprocess.TimeoutExpired as err:
        return BinaryCheck(path, False, None, str(err.stdout or ""))
    except OSError as err:
        return BinaryCheck(path, False, -1, f"cannot run it: {err}")
    output = (out.stdout or "") + (out.stderr or "")
    ok = out.returncode == 0 and any(ln.strip() == f"version: {version}" for ln in out.stdout.splitlines())
    return BinaryCheck(path, ok, out.returncode, output)


def own_bin_dir() -> Path:
    """firegen's own folder for its FerretDB build (see the module docstring)."""
    if os.environ.get("FIREGEN_FERRETDB_DIR"):
        return Path(os.environ["FIREGEN_FERRETDB_DIR"]).resolve()
    if sys.prefix != sys.base_prefix:  # a virtual environment: the binary goes and goes away with it
        return Path(sys.prefix) / "bin"
    data = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return data / "firegen" / "bin"


def go_bin_dir() -> Path:
    """The folder where ``go install`` puts binaries (``$GOBIN`` or ``$GOPATH/bin``)."""
    if os.environ.get("GOBIN"):
        return Path(os.environ["GOBIN"])
    go = shutil.which("go")
    if go:
        out = subprocess.run([go, "env", "GOBIN", "GOPATH"], capture_output=True, text=True, check=False)
        lines = out.stdout.splitlines()
        if lines and lines[0].strip():
            return Path(lines[0].strip())
        if len(lines) > 1 and lines[1].strip():
            return Path(lines[1].split(os.pathsep)[0].strip()) / "bin"
    return Path.home() / "go" / "bin"


def _candidates() -> list[Path]:
    """Binaries to try, in order: firegen's own copy, ``ferretdb`` on PATH, the Go bin folder's."""
    found = [own_bin_dir() / "ferretdb"]
    on_path = shutil.which("ferretdb")
    if on_path:
        found.append(Path(on_path))
    found.append(go_bin_dir() / "ferretdb")
    unique, seen = [], set()
    for path in found:
        if path.is_file() and os.access(path, os.X_OK) and path.resolve() not in seen:
            seen.add(path.resolve())
            unique.append(path)
    return unique


def find_ferretdb(version: str = FERRETDB_VERSION, log=_stderr) -> Path | None:
    """A checked FerretDB ``version`` binary, or None when there is none (then :func:`install_ferretdb`).

    Raises:
        FerretDBUnavailable: ``$FIREGEN_FERRETDB`` names a binary that is missing or fails the check.
    """
    explicit = os.environ.get("FIREGEN_FERRETDB")
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise FerretDBUnavailable(f"FIREGEN_FERRETDB={explicit} is not a file. Fix: point FIREGEN_FERRETDB at a "
                                      f"ferretdb {version} binary, or unset it to let firegen build its own copy.")
        check = check_ferretdb(path, version)
        if not check.ok:
            raise FerretDBUnavailable(f"FIREGEN_FERRETDB={explicit} is not a working FerretDB {version}: "
                                      f"{check.describe()}. Fix: unset FIREGEN_FERRETDB to let firegen build its "
                                      f"own copy in {own_bin_dir()}, or point it at a working {version} binary.")
        return path
    for path in _candidates():
        check = check_ferretdb(path, version)
        if check.ok:
            return path
        log(f"firegen: not using {path}: {check.describe()}")
    return None


@dataclass(frozen=True)
class RouteResult:
    """One install route's outcome: the checked binary, or what failed (for the final error)."""

    route: str
    binary: Path | None
    problem: str = ""
    fetched: bool = False
    """True when the route downloaded the module (its source is in the module cache now)."""


def _go(go: str, *args: str, cwd: Path | None = None, **env: str) -> subprocess.CompletedProcess:
    full_env = dict(os.environ, GOFLAGS=os.environ.get("GOFLAGS", "-buildvcs=false"), **env)
    return subprocess.run([go, *args], cwd=cwd, env=full_env, capture_output=True, text=True, check=False)


def _last_line(out: subprocess.CompletedProcess) -> str:
    text = (out.stderr or "").strip() or (out.stdout or "").strip()
    return text.splitlines()[-1][:500] if text else f"exit code {out.returncode}, no output"


def _checked(route: str, built: Path, version: str, fetched: bool) -> RouteResult:
    check = check_ferretdb(built, version)
    if check.ok:
        return RouteResult(route, built, fetched=fetched)
    return RouteResult(route, None, f"its binary fails the check: {check.describe()}", fetched=fetched)


def build_from_source(go: str, version: str, workdir: Path, offline: bool = False) -> RouteResult:
    """Route 1: ``go mod download`` the exact version, write ``version.txt``, ``go build`` into ``workdir``."""
    env = {"GOPROXY": "off"} if offline else {}
    download = _go(go, "mod", "download", "-json", f"{FERRETDB_MODULE}@{version}", **env)
    if download.returncode != 0:
        return RouteResult("source", None, f"`go mod download` said: {_last_line(download)}")
    source = Path(json.loads(download.stdout)["Dir"])
    build_dir = workdir / "src"
    shutil.rmtree(build_dir, ignore_errors=True)
    shutil.copytree(source, build_dir)
    for path in build_dir.rglob("*"):  # the module cache is read-only
        path.chmod(path.stat().st_mode | 0o200)
    (build_dir / "build" / "version" / "version.txt").write_text(version + "\n")
    built = workdir / "ferretdb-source"
    out = _go(go, "build", "-trimpath", "-o", str(built), "./cmd/ferretdb", cwd=build_dir, **env)
    shutil.rmtree(build_dir, ignore_errors=True)
    if out.returncode != 0 or not built.is_file():
        return RouteResult("source", None, f"`go build` said: {_last_line(out)}", fetched=True)
    return _checked("source", built, version, fetched=True)


def build_with_go_install(go: str, version: str, workdir: Path) -> RouteResult:
    """Route 2: ``go install M/cmd/ferretdb@version`` with ``GOBIN`` in ``workdir``, then the check."""
    gobin = workdir / "gobin"
    gobin.mkdir(exist_ok=True)
    out = _go(go, "install", f"{FERRETDB_MODULE}/cmd/ferretdb@{version}", GOBIN=str(gobin))
    built = gobin / "ferretdb"
    if out.returncode != 0 or not built.is_file():
        return RouteResult("go install", None, f"`go install` said: {_last_line(out)}")
    return _checked("go install", built, version, fetched=True)


@contextmanager
def _install_lock(folder: Path):
    """One install at a time per folder (two test sessions or workers starting at once)."""
    with open(folder / ".ferretdb-install.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def install_ferretdb(version: str = FERRETDB_VERSION, log=_stderr) -> Path:
    """Return a checked FerretDB ``version`` binary, building firegen's own copy when there is none.

    Raises:
        FerretDBUnavailable: ``go`` is missing, or no route yields a binary that passes the check
            (the message names each route and what it said).
    """
    existing = find_ferretdb(version, log)
    if existing:
        return existing
    go = shutil.which("go")
    if not go:
        raise FerretDBUnavailable(NO_GO_HINT)
    folder = own_bin_dir()
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / "ferretdb"
    with _install_lock(folder):
        if target.is_file() and check_ferretdb(target, version).ok:  # built meanwhile by another process
            return target
        log(f"building FerretDB {version} with Go into {folder} (a few minutes the first time)")
        with tempfile.TemporaryDirectory(prefix=".ferretdb-build-", dir=folder) as tmp:
            workdir = Path(tmp)
            tried = [build_from_source(go, version, workdir)]
            if tried[-1].binary is None:
                log(f"  route `source` failed ({tried[-1].problem}); trying `go install`")
                tried.append(build_with_go_install(go, version, workdir))
                if tried[-1].binary is None and tried[-1].fetched:
                    log(f"  route `go install` failed ({tried[-1].problem}); rebuilding the source it fetched")
                    tried.append(build_from_source(go, version, workdir, offline=True))
            result = tried[-1]
            if result.binary is None:
                raise FerretDBUnavailable(f"cannot build FerretDB {version}: "
                                          + "; ".join(f"route `{r.route}`: {r.problem}" for r in tried) + f". {FIX}")
            os.replace(result.binary, target)  # atomic: a server starting now sees the old file or the new one
    log(f"FerretDB {version}: {target} (route `{result.route}`)")
    return target
