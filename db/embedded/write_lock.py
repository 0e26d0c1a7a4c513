"""Atomic single-document updates on the embedded FerretDB, for every client on this host.

FerretDB 1.x executes ``update``/``findAndModify`` as read → modify in memory → write back by
``_id``, with no lock between the read and the write. Two concurrent updates of one document can
therefore lose one of them, and a conditional update (``{"state": "RUNNING"}``) can overwrite a
change made after its read. FireWorks relies on MongoDB's document-level atomicity in three places
that race under ``rlaunch``: a Rocket's last ``ping_launch`` against ``complete_launch`` (observed
here: a finished Firework left RUNNING), the workflow lock (``WFLock``), and ``checkout_fw``.

The embedded server listens on loopback only, so all of its clients run on this host. This module
wraps pymongo's read-modify-write methods in an exclusive host-wide ``flock`` keyed by the server's
port, for clients of a server registered by :func:`register_server`; MongoDB clients are untouched.
:func:`install_lazy` patches pymongo when (and if) it is imported. It runs when firegen's ``db``
package is imported and an embedded server is registered on this host (a lock file exists), and in
the process that starts one; the bootstrap installs a ``.pth`` hook (:func:`pth_hook`) so that
plain ``rlaunch``/``lpad`` in firegen's venv get it too. The hook only lists the lock folder unless
a server is registered, so other interpreters of the venv pay nothing. A lock file holds its
server's pid; :func:`clean_stale` removes those of servers that are gone (a killed server cannot
unregister itself).
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import importlib.abc
import importlib.util
import os
import socket
import sys
import threading
from pathlib import Path

GUARDED_METHODS = ("find_one_and_update", "find_one_and_replace", "find_one_and_delete",
                   "update_one", "update_many", "replace_one", "bulk_write")
#: Where lock files live: ``$FIREGEN_LOCK_DIR``, else ``firegen-ferretdb-locks`` in ``$TMPDIR`` (or
#: ``$TEMP``, ``$TMP``, ``/tmp``); the ``.pth`` hook (:func:`pth_hook`) computes the same folder.
_LOCK_DIR_EXPR = ('os.environ.get("FIREGEN_LOCK_DIR") or os.path.join(os.environ.get("TMPDIR") or '
                  'os.environ.get("TEMP") or os.environ.get("TMP") or "/tmp", "firegen-ferretdb-locks")')
LOCK_DIR = Path(eval(_LOCK_DIR_EXPR))  # noqa: S307 - a constant expression, shared with the .pth hook
_installed = False


def lock_path(port: int) -> Path:
    return LOCK_DIR / f"127.0.0.1-{port}.lock"


def register_server(port: int, pid: int | None = None) -> Path:
    """Mark ``127.0.0.1:port`` as an embedded FerretDB (process ``pid``) whose writes must be serialized,
    in every client on this host and from now on in this process; lock files of dead servers go."""
    LOCK_DIR.mkdir(parents=True, exist_ok=True)
    clean_stale()
    path = lock_path(port)
    path.write_text(f"{pid}\n" if pid else "")  # clients flock the file, not its content
    install_lazy()
    return path


def unregister_server(port: int) -> None:
    lock_path(port).unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def clean_stale() -> list[Path]:
    """Remove the lock files of embedded servers that are gone: their pid is dead or, for a file without
    a pid, nothing listens on their port. Returns the files removed."""
    removed = []
    for path in LOCK_DIR.glob("127.0.0.1-*.lock"):
        try:
            text = path.read_text().strip()
            port = int(path.stem.split("-", 1)[1])
        except (OSError, ValueError):
            continue
        alive = _alive(int(text)) if text.isdigit() else _listening(port)
        if not alive:
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def registered() -> bool:
    """Whether any embedded server is registered on this host (a lock file exists)."""
    return LOCK_DIR.is_dir() and any(LOCK_DIR.glob("127.0.0.1-*.lock"))


def pth_hook() -> str:
    """The one line of the venv's ``.pth`` file: patch pymongo (lazily) in every interpreter of the venv
    while an embedded server is registered on this host; otherwise only the lock folder is listed."""
    code = "try:\n import firegen.db.embedded.write_lock as w\n w.install_lazy()\nexcept ImportError:\n pass"
    return (f"import os; d = {_LOCK_DIR_EXPR}; "
            f"exec({code!r}) if os.path.isdir(d) and any(n.endswith('.lock') for n in os.listdir(d)) else None")


def _guard_lock(collection) -> Path | None:
    for host, port in collection.database.client.topology_description.server_descriptions():
        if host in ("127.0.0.1", "localhost", "::1"):
            path = lock_path(port)
            if path.exists():
                return path
    return None


_held = threading.local()  # lock paths this thread holds (a flock is per open file: not re-entrant by itself)


@contextlib.contextmanager
def exclusive(collection):
    """Hold the host-wide write lock of ``collection``'s embedded FerretDB around several operations
    (a read and the write that depends on it); yields True when a lock is held, False for servers that
    are not registered embedded FerretDBs (nothing is locked then). Re-entrant within a thread; the
    guarded pymongo methods called inside do not lock again."""
    path = _guard_lock(collection)
    held = _held.__dict__.setdefault("paths", set())
    if path is None or path in held:
        yield path is not None
        return
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        held.add(path)
        try:
            yield True
        finally:
            held.discard(path)
            fcntl.flock(handle, fcntl.LOCK_UN)


def _guarded(method):
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        with exclusive(self):
            return method(self, *args, **kwargs)

    wrapper.__firegen_guard__ = True
    return wrapper


def install() -> None:
    """Patch :class:`pymongo.collection.Collection` once per process."""
    global _installed
    if _installed:
        return
    from pymongo.collection import Collection

    for name in GUARDED_METHODS:
        method = getattr(Collection, name)
        if not getattr(method, "__firegen_guard__", False):
            setattr(Collection, name, _guarded(method))
    _installed = True


class _PatchOnImport(importlib.abc.MetaPathFinder):
    """Runs :func:`install` right after ``pymongo.collection`` is first imported."""

    def find_spec(self, name, path, target=None):
        if name != "pymongo.collection":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        original = spec.loader.exec_module

        def exec_module(module):
            original(module)
            install()

        spec.loader.exec_module = exec_module
        return spec


def install_lazy() -> None:
    """:func:`install` now if pymongo is loaded, else as soon as it is."""
    if "pymongo.collection" in sys.modules:
        install()
    elif not any(isinstance(f, _PatchOnImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _PatchOnImport())
