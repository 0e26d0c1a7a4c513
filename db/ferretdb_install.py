"""Installing the embedded database server, FerretDB, from the Go module proxy.

The documented way is ``go install github.com/FerretDB/FerretDB/cmd/ferretdb@v1.24.2``. Some
module proxies refuse the module's version *list* (which ``go install`` queries to check for a
deprecation notice) while serving the version itself; then firegen downloads that exact version
with ``go mod download`` and builds it with ``go build``, which is the same source and the same
binary. FerretDB's build needs ``build/version/version.txt``, which its release tooling writes; the
fallback writes it with the version tag.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from firegen.db.errors import FerretDBUnavailable

FERRETDB_MODULE = "github.com/FerretDB/FerretDB"
FERRETDB_VERSION = "v1.24.2"
NO_GO_HINT = (
    "FerretDB (the embedded database) is not installed and `go` is not on PATH. "
    "Fix: install Go (https://go.dev/dl or `apt-get install golang-go`, Go >= 1.22) and rerun, "
    "or point firegen at an existing MongoDB with --uri / FIREGEN_MONGO_URI."
)


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


def find_ferretdb() -> Path | None:
    """Locate a FerretDB binary: ``$FIREGEN_FERRETDB``, ``PATH``, then the Go bin folder."""
    explicit = os.environ.get("FIREGEN_FERRETDB")
    if explicit:
        return Path(explicit) if Path(explicit).is_file() else None
    on_path = shutil.which("ferretdb")
    if on_path:
        return Path(on_path)
    for folder in (go_bin_dir(), Path.home() / "go" / "bin"):
        candidate = folder / "ferretdb"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


def _run(cmd: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, GOFLAGS=os.environ.get("GOFLAGS", "-buildvcs=false"))
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, check=False)


def install_ferretdb(version: str = FERRETDB_VERSION, log=print) -> Path:
    """Install FerretDB ``version`` into the Go bin folder and return the binary's path.

    Raises:
        FerretDBUnavailable: when ``go`` is missing or both install routes fail (the message holds
            the exact ``go`` errors).
    """
    existing = find_ferretdb()
    if existing:
        return existing
    go = shutil.which("go")
    if not go:
        raise FerretDBUnavailable(NO_GO_HINT)
    target = go_bin_dir() / "ferretdb"
    log(f"installing FerretDB {version} with go install (about 2 minutes the first time)")
    first = _run([go, "install", f"{FERRETDB_MODULE}/cmd/ferretdb@{version}"])
    if first.returncode == 0 and target.is_file():
        return target
    log("go install failed; building the same version from `go mod download` instead:")
    log("  " + first.stderr.strip().splitlines()[-1] if first.stderr.strip() else "  (no output)")
    download = _run([go, "mod", "download", "-json", f"{FERRETDB_MODULE}@{version}"])
    if download.returncode != 0:
        raise FerretDBUnavailable(
            f"cannot install FerretDB {version}: `go install` said: {first.stderr.strip()} ; "
            f"`go mod download` said: {download.stderr.strip() or download.stdout.strip()}. "
            "Fix: install ferretdb yourself and set FIREGEN_FERRETDB, or use --uri with an existing MongoDB."
        )
    source = Path(json.loads(download.stdout)["Dir"])
    with tempfile.TemporaryDirectory(prefix="ferretdb-src-") as tmp:
        build_dir = Path(tmp) / "src"
        shutil.copytree(source, build_dir)
        for path in build_dir.rglob("*"):
            path.chmod(path.stat().st_mode | 0o200)
        (build_dir / "build" / "version" / "version.txt").write_text(version + "\n")
        target.parent.mkdir(parents=True, exist_ok=True)
        built = _run([go, "build", "-trimpath", "-o", str(target), "./cmd/ferretdb"], cwd=build_dir)
    if built.returncode != 0 or not target.is_file():
        raise FerretDBUnavailable(
            f"cannot build FerretDB {version}: {built.stderr.strip()[-2000:]}. "
            "Fix: install ferretdb yourself and set FIREGEN_FERRETDB, or use --uri with an existing MongoDB."
        )
    return target
