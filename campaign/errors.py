"""The root of every error firegen raises on purpose, and whether retrying it can help.

Modeled on dpgen2's ``TransientError``/``FatalError``: a :class:`TransientError` may pass when the
same work is tried again as it is (the database restarted, a connection dropped, a program was
killed from outside); a :class:`FatalError` fails the same way every time (bad input, a missing
program, a policy that stopped the campaign) and needs a person to change something. The FireTasks
retry transient failures a bounded number of times and record fatal ones with their reason
(:mod:`firegen.workflows.tasks`). The message of every one names the problem and the fix; the CLI
prints it as one line.
"""

from __future__ import annotations

import os
from pathlib import Path


class FiregenError(Exception):
    """Base class of firegen's errors; ``transient`` says whether retrying as is may succeed."""

    transient: bool = False


class TransientError(FiregenError):
    """Worth retrying as is: the cause is outside the work (a database restart, a lost connection)."""

    transient = True


class FatalError(FiregenError):
    """Retrying as is fails again: something must change first (the message says what)."""


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc`` is worth retrying as is: a :class:`TransientError`, or the database driver's
    connection failures (``pymongo.errors.AutoReconnect`` and ``ConnectionFailure``, which include
    timeouts and a server that is restarting)."""
    if isinstance(exc, FiregenError):
        return exc.transient
    try:
        from pymongo.errors import ConnectionFailure
    except ImportError:  # pragma: no cover - pymongo is a dependency
        return False
    return isinstance(exc, ConnectionFailure)


#: A program that failed where fewer bytes than this are free is said to have failed on a full disk.
DISK_FULL_BYTES = 1 << 20


def disk_full(path: str | Path) -> str:
    """``"the disk of PATH is full (N bytes free)"`` when the file system holding ``path`` (or its nearest existing
    parent) has fewer than :data:`DISK_FULL_BYTES` free for this user, else ``""``: what a failed program's
    message should lead with, since a program that cannot write often dies with a message about something else
    (or with none, its log being on that disk too)."""
    path = Path(path)
    while not path.exists() and path != path.parent:
        path = path.parent
    try:
        st = os.statvfs(path)
    except OSError:
        return ""
    free = st.f_bavail * st.f_frsize
    return f"the disk of {path} is full ({free} bytes free)" if free < DISK_FULL_BYTES else ""
