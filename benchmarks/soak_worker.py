#!/usr/bin/env python
"""``firegen worker`` with every database command it sends written to a trace file (for ``soak.py``).

    soak_worker.py TRACE.tsv -l my_launchpad.yaml -w gpu_worker.yaml --kind gpu [--sleep S]

A pymongo command listener, registered before any client exists, appends one line per command:
``start (epoch s)  duration (s)  command  collection  ok  filter keys`` (the keys of a find's or
findAndModify's filter, comma-separated: ``state,...`` is FireWorks asking for READY work). Everything after the trace path goes to
:func:`firegen.launchers.worker.main` unchanged.
"""

from __future__ import annotations

import sys
import threading
import time

from pymongo import monitoring


class CommandTrace(monitoring.CommandListener):
    """Writes each command's start, duration, name and collection (one line, tab-separated)."""

    def __init__(self, path: str):
        self.fh = open(path, "a", buffering=1)
        self.lock = threading.Lock()
        self.pending: dict[int, tuple[float, str, str, str]] = {}

    def started(self, event):
        collection = event.command.get(event.command_name)
        query = event.command.get("filter", event.command.get("query"))
        keys = ",".join(sorted(query)) if isinstance(query, dict) and query else "-"
        self.pending[event.request_id] = (time.time(), event.command_name,
                                          collection if isinstance(collection, str) else "-", keys)

    def _done(self, event, ok: int):
        start, name, collection, keys = self.pending.pop(event.request_id,
                                                         (time.time(), event.command_name, "-", "-"))
        with self.lock:
            self.fh.write(f"{start:.6f}\t{event.duration_micros / 1e6:.6f}\t{name}\t{collection}\t{ok}\t{keys}\n")

    def succeeded(self, event):
        self._done(event, 1)

    def failed(self, event):
        self._done(event, 0)


def main(argv: list[str]) -> int:
    monitoring.register(CommandTrace(argv[0]))
    from firegen.launchers.worker import main as worker_main

    return worker_main(argv[1:])


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
