"""Labeler kind ``delayed``: a real labeler whose completion is held back by a heavy-tailed delay.

Real DFT wall times are heavy-tailed: most SCF runs take about the median, a few take many times
longer, some hit the walltime. Benchmarks and tests of scheduling need that shape with a cheap
calculator, reproducibly. This labeler labels with an inner labeler (EMT, xTB, ...) and then sleeps,
so the label is the inner calculator's, unchanged; only its wall time is stretched.

The delay of one structure is drawn from a log-normal distribution with the given median and the
given ratio of its 99th to its 50th percentile (σ = ln(ratio) / z₀.₉₉, z₀.₉₉ = 2.326). The draw is
seeded by ``seed`` and the structure itself (species, cell and positions rounded to 1e-6 Å), not by
the order of the calls: the same structure gets the same delay (and the same simulated failure) on
any worker, in any batch, in any rerun.

Settings:

``labeler`` (required)
    the inner labeler's kind (``emt``, ``tblite``, ``lj``, ``ase:<Class>``; any registered kind).
``settings``
    the inner labeler's settings (default ``{}``).
``median_s``
    median delay in seconds (default 1.0).
``p99_over_p50``
    ratio of the 99th to the 50th percentile of the delay (default 20; 1 gives a constant delay).
``seed``
    integer seed of the draws (default 0).
``failure_rate``
    probability in [0, 1) that a structure fails after its delay, like an SCF run that does not
    converge (default 0): :class:`SimulatedLabelFailure`, the same structure failing every time.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from firegen.campaign.errors import FatalError
from firegen.workflows.steps.label import (Label, Labeler, _as_float, _as_int, _check_keys, _jsonable,
                                           get_labeler, register_labeler, settings_hash)

__all__ = ["DelayedLabeler", "SimulatedLabelFailure", "delayed_labeler", "draw", "Z99"]

Z99 = 2.3263478740408408
"""The standard normal's 99th percentile."""

_ALLOWED = ("labeler", "settings", "median_s", "p99_over_p50", "seed", "failure_rate")


class SimulatedLabelFailure(FatalError):
    """The ``failure_rate`` draw of a ``delayed`` labeler failed this structure (as a non-converged SCF would)."""


def structure_key(atoms) -> bytes:
    """Bytes that identify a structure for the draws: species, cell and positions rounded to 1e-6 Å."""
    h = hashlib.sha256()
    h.update(np.asarray(atoms.get_atomic_numbers(), dtype=np.int64).tobytes())
    h.update(np.round(np.asarray(atoms.cell[:], dtype=float), 6).tobytes())
    h.update(np.round(np.asarray(atoms.positions, dtype=float), 6).tobytes())
    return h.digest()


def draw(key: bytes, seed: int, median_s: float, p99_over_p50: float, failure_rate: float) -> tuple[float, bool]:
    """(delay in s, fails) of the structure whose :func:`structure_key` is ``key``."""
    rng = np.random.default_rng([seed & 0xFFFFFFFF, *np.frombuffer(key[:16], dtype=np.uint32).tolist()])
    sigma = math.log(p99_over_p50) / Z99
    delay = median_s * math.exp(sigma * float(rng.standard_normal()))
    return delay, bool(rng.random() < failure_rate)


class DelayedLabeler(Labeler):
    """An inner labeler's labels, each returned after its seeded heavy-tailed delay."""

    def __init__(self, inner: Labeler, resolved: dict):
        self.inner = inner
        self.kind = "delayed"
        self.code = inner.code
        self.version = inner.version
        self.settings = _jsonable(resolved)
        self._hash = settings_hash(self.kind, self.settings)

    @property
    def settings_hash(self) -> str:
        return self._hash

    def delay(self, atoms) -> tuple[float, bool]:
        s = self.settings
        return draw(structure_key(atoms), s["seed"], s["median_s"], s["p99_over_p50"], s["failure_rate"])

    def label(self, atoms) -> Label:
        t0 = time.perf_counter()
        delay, fails = self.delay(atoms)
        result = self.inner.label(atoms)
        time.sleep(max(0.0, delay - (time.perf_counter() - t0)))
        if fails:
            raise SimulatedLabelFailure(f"simulated failure after {delay:.1f} s (labeler 'delayed', failure_rate "
                                        f"{self.settings['failure_rate']:g}, seed {self.settings['seed']})")
        result.walltime = time.perf_counter() - t0
        result.kind = self.kind
        result.settings = dict(self.settings)
        result.settings_hash = self._hash
        return result


@register_labeler("delayed")
def delayed_labeler(settings: Mapping[str, Any]) -> DelayedLabeler:
    """The ``delayed`` labeler (see the module docstring for its settings)."""
    kind = "delayed"
    _check_keys(kind, settings, _ALLOWED)
    if not isinstance(settings.get("labeler"), str):
        raise ValueError("labeler 'delayed': setting 'labeler' must name the inner labeler's kind, e.g. emt")
    inner_settings = settings.get("settings") or {}
    if not isinstance(inner_settings, Mapping):
        raise ValueError(f"labeler 'delayed': setting 'settings' must be a mapping of the inner labeler's "
                         f"settings, got {inner_settings!r}")
    if settings["labeler"].strip().lower() == kind:
        raise ValueError("labeler 'delayed': setting 'labeler' must be another kind than 'delayed'")
    inner = get_labeler(settings["labeler"], inner_settings)
    ratio = _as_float(kind, "p99_over_p50", settings.get("p99_over_p50", 20.0), positive=True)
    if ratio < 1:
        raise ValueError(f"labeler 'delayed': setting 'p99_over_p50' must be 1 or more, got {ratio!r}")
    rate = _as_float(kind, "failure_rate", settings.get("failure_rate", 0.0), nonneg=True)
    if rate >= 1:
        raise ValueError(f"labeler 'delayed': setting 'failure_rate' must be below 1, got {rate!r}")
    resolved = {"labeler": inner.kind, "settings": dict(inner.settings),
                "median_s": _as_float(kind, "median_s", settings.get("median_s", 1.0), nonneg=True),
                "p99_over_p50": ratio, "seed": _as_int(kind, "seed", settings.get("seed", 0)),
                "failure_rate": rate}
    return DelayedLabeler(inner, resolved)
