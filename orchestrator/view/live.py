"""What the dashboard shows, read from the database once per refresh period however many pages ask.

The first look at a campaign (or at the LaunchPad) reads its documents and waits for them; from then on a
background thread reads them again every ``every`` seconds (or twice the last read's duration, when
longer) while pages keep asking (and stops when no page asked for ``idle_after`` seconds), and every
page renders from the latest read. A page then answers
in the time it takes to draw it, whatever the size of the campaign, and the database is read once per
period per campaign, not once per browser. Each read says when it was taken (pages show it).
"""

from __future__ import annotations

import datetime
import logging
import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)


@dataclass
class _Read:
    value: Any
    read_at: datetime.datetime
    asked: float  # time.monotonic() of the last page that asked


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


class LiveReads:
    """Latest reads by key, kept current in the background while asked for.

    Args:
        every: seconds between reads of one key; None reads at every ask (nothing kept, no thread).
        idle_after: a key nobody asked for this long is dropped and its thread ends (s).
    """

    def __init__(self, every: float | None, idle_after: float = 120.0):
        self.every, self.idle_after = every, idle_after
        self._reads: dict[Hashable, _Read] = {}
        self._lock = threading.Lock()

    def get(self, key: Hashable, load: Callable[[], Any],
            first: Callable[[], Any] | None = None) -> tuple[Any, datetime.datetime]:
        """``(value, when it was read)``: the latest read of ``key``, or, on the first ask, ``first()`` (default
        ``load()``) now: its exception (e.g. an unknown campaign) goes to the caller and nothing is kept. The
        background reads call ``load``; ``first`` may read less and leave the rest to be read when used."""
        if self.every is None:
            return (first or load)(), _now()
        with self._lock:
            kept = self._reads.get(key)
            if kept is not None:
                kept.asked = time.monotonic()
                return kept.value, kept.read_at
        value = (first or load)()
        with self._lock:
            kept = self._reads.get(key)
            if kept is None:  # another page may have read it meanwhile: one thread per key
                kept = self._reads[key] = _Read(value, _now(), time.monotonic())
                threading.Thread(target=self._keep_current, args=(key, load), daemon=True,
                                 name=f"firegen-dashboard-read-{key}").start()
            return kept.value, kept.read_at

    def keys(self) -> list[Hashable]:
        with self._lock:
            return list(self._reads)

    def _keep_current(self, key: Hashable, load: Callable[[], Any]) -> None:
        took = 0.0
        while True:
            time.sleep(max(self.every, 2 * took))  # a slow read (a big campaign, a busy server): read less often
            with self._lock:
                kept = self._reads[key]
                if time.monotonic() - kept.asked > self.idle_after:
                    del self._reads[key]
                    return
            start = time.monotonic()
            try:
                value = load()
            except Exception as exc:  # the database is away for a moment: pages show the last read and its time
                log.warning("dashboard: reading %s failed (%s); showing the read of %s", key, exc, kept.read_at)
                continue
            finally:
                took = time.monotonic() - start
            with self._lock:
                kept.value, kept.read_at = value, _now()
