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
:func:`install_lazy` patches pymongo when (and if) it is imported; firegen calls it on import of
:mod:`firegen.db`, and the bootstrap installs a ``.pth`` hook so plain ``rlaunch``/``lpad`` in
firegen's venv get it too, at no start-up cost for processes that never import pymongo.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import importlib.abc
import importlib.util
import os
import sys
import tempfile
import threading
from pathlib import Path

GUARDED_METHODS = ("find_one_and_update", "find_one_and_replace", "find_one_and_delete",
                   "update_one", "update_many", "replace_one", "bulk_write")
LOCK_DIR = Path(os.environ.get("FIREGEN_LOCK_DIR", Path(tempfile.gettempdir()) / "firegen-ferretdb-locks"))
_installed = False


def lock_path(port: int) -> Path:
    return LOCK_DIR / f"127.0.0.1-{port}.lock"


def register_server(port: int) -> Path:
    """Mark ``127.0.0.1:port`` as an embedded FerretDB whose writes must be serialized."""
    LOCK_DIR.mkdir(parents=True, exist_ok=True)
    path = lock_path(port)
    path.touch(exist_ok=True)
    return path


def unregister_server(port: int) -> None:
    lock_path(port).unlink(missing_ok=True)


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
