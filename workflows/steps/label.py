"""Labeling step: reference energies, forces and virials from ASE calculators.

Pure step: plain inputs (``ase.Atoms`` and a labeler kind + settings), plain outputs
(:class:`Label` or :class:`LabelFailure`); no FireWorks, no database.

Labelers live in a small registry, in the style of dpdata's format registry::

    @register_labeler("emt")
    class EMTLabeler(ASELabeler): ...

    labeler = get_labeler("lj", {"sigma": 3.405, "epsilon": 0.0104, "rc": 8.5})
    label = labeler.label(atoms)                    # raises on failure
    results = label_many(labeler, list_of_atoms)    # failures become LabelFailure

Kinds shipped here:

``emt``
    ASE's EMT (Cu, Ag, Au, Ni, Pd, Pt, Al; H, C, N, O as in ASE). Settings: ``asap_cutoff``.
``lj``
    ASE's Lennard-Jones. Settings: ``sigma`` (Å), ``epsilon`` (eV), ``rc`` (Å, default
    3 sigma), ``ro`` (Å, default 0.66 rc), ``smooth`` (bool). The pair energy is shifted to
    zero at ``rc`` (ASE's behaviour).
``tblite``
    GFN1-xTB / GFN2-xTB / IPEA1-xTB via ``tblite.ase.TBLite``. Settings: ``method``,
    ``accuracy``, ``electronic_temperature`` (K), ``max_iterations``, ``charge``,
    ``multiplicity``, ``mixer_damping``, ``guess``. Gamma point only: small periodic cells are a
    poor model of the crystal, and may not converge at the default 300 K electronic
    temperature (the 5-atom Na3OCl cell at a = 4.50 Å does not with GFN1-xTB in tblite 0.8.0).
``ase:<Class>`` / ``ase:<module>.<Class>``
    any calculator class from ``ase.calculators``, e.g. ``ase:EMT``, ``ase:LennardJones``,
    ``ase:lj.LennardJones``, ``ase:morse.MorsePotential``; settings are passed as keyword
    arguments to the class and must be JSON-serialisable.
``delayed``
    another labeler's labels returned after a seeded heavy-tailed (log-normal) delay, for
    scheduling benchmarks; see :mod:`~firegen.workflows.steps.delayed_labeler`.
``cp2k``, ``qe``, ``vasp``
    DFT codes run in a work folder (CP2K and VASP under custodian), parsed with dpdata; see
    :mod:`~firegen.workflows.steps.cp2k_labeler`, :mod:`~firegen.workflows.steps.qe_labeler`,
    :mod:`~firegen.workflows.steps.vasp_labeler` and :mod:`~firegen.workflows.steps.dft_run`.
    Their modules are imported on first use, so importing this one needs neither the codes nor
    custodian. Their labels carry ``details`` (code version, input sha256, custodian's
    corrections, ...), their failures ``details`` and ``history``.

Units and conventions (DeePMD-kit's): energy in eV, forces in eV/Å, virial in eV as the
3x3 tensor ``virial = -stress * volume``. The virial is given only for fully periodic cells
with a calculator that computes stress, else it is ``None``. Forces are the raw calculator
forces (constraints attached to the input atoms are not applied). The energy is the
force-consistent (free) energy where the calculator provides one, as dpdata's ASE reader does.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import json
import math
import socket
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from firegen.campaign.errors import FatalError
from firegen.campaign.plain import plain

__all__ = [
    "ASELabeler",
    "Label",
    "LabelFailure",
    "Labeler",
    "LabelerUnavailableError",
    "NonFiniteLabelError",
    "get_labeler",
    "known_labelers",
    "label_many",
    "register_labeler",
    "settings_hash",
    "stress_to_virial",
]


# --------------------------------------------------------------------------------------------
# results


@dataclass
class Label:
    """One successful reference calculation.

    Attributes:
        energy: total (force-consistent) energy, eV.
        forces: (N, 3) forces, eV/Å.
        virial: (3, 3) virial, eV (``-stress * volume``), or ``None`` without stress.
        code: what computed it, e.g. ``"ase-EMT"``, ``"tblite"``.
        version: version of the package that provides the calculator.
        settings: the full (defaults filled in) settings of the labeler.
        settings_hash: :func:`settings_hash` of ``kind`` and ``settings``.
        walltime: seconds spent (calculator construction and calculation).
        host: ``socket.gethostname()`` of the machine that ran it.
        kind: the labeler kind, e.g. ``"emt"``, ``"ase:LennardJones"``.
        details: optional JSON-able provenance of an external code run (DFT labelers): e.g.
            ``code_version``, ``input_sha256``, ``command``, ``mpi_ranks``, ``corrections``
            (what custodian changed), ``n_scf_steps``, ``workdir`` (kept files). ``None`` for the
            in-process ASE labelers; left out of :meth:`to_dict` when ``None``.
    """

    energy: float
    forces: np.ndarray
    virial: np.ndarray | None
    code: str
    version: str
    settings: dict
    settings_hash: str
    walltime: float
    host: str
    kind: str = ""
    details: dict | None = None

    ok: ClassVar[bool] = True

    def to_dict(self) -> dict:
        """JSON-able dict (plain floats and nested lists)."""
        return {
            "energy": float(self.energy),
            "forces": np.asarray(self.forces, dtype=float).tolist(),
            "virial": None if self.virial is None else np.asarray(self.virial, dtype=float).tolist(),
            "code": self.code,
            "version": self.version,
            "settings": _jsonable(self.settings),
            "settings_hash": self.settings_hash,
            "walltime": float(self.walltime),
            "host": self.host,
            "kind": self.kind,
            **({} if self.details is None else {"details": _jsonable(self.details)}),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Label:
        """Inverse of :meth:`to_dict` (arrays come back as float64 numpy arrays)."""
        virial = d.get("virial")
        return cls(
            energy=float(d["energy"]),
            forces=np.asarray(d["forces"], dtype=float).reshape(-1, 3),
            virial=None if virial is None else np.asarray(virial, dtype=float).reshape(3, 3),
            code=d["code"],
            version=d["version"],
            settings=dict(d.get("settings") or {}),
            settings_hash=d["settings_hash"],
            walltime=float(d.get("walltime", 0.0)),
            host=d.get("host", ""),
            kind=d.get("kind", ""),
            details=None if d.get("details") is None else dict(d["details"]),
        )


@dataclass
class LabelFailure:
    """A reference calculation that did not give a usable label.

    Attributes:
        reason: human-readable message (the exception text).
        error_type: exception class, module-qualified unless builtin
            (e.g. ``"ase.calculators.calculator.InputError"``, ``"NotImplementedError"``,
            ``"firegen.workflows.steps.label.NonFiniteLabelError"``).
        walltime: seconds spent before it failed.
        kind, code, settings_hash, host: provenance, as in :class:`Label`.
        details: optional JSON-able facts about the failed run (DFT labelers: ``workdir`` kept
            for inspection, ``command``, ``input_sha256``, ``custodian_error``, ...).
        history: optional list of what was tried, oldest first (DFT labelers: custodian's
            corrections, each ``{"job", "handler", "errors", "actions"}``).
        ``details``/``history`` are left out of :meth:`to_dict` when ``None``.
    """

    reason: str
    error_type: str
    walltime: float
    kind: str = ""
    code: str = ""
    settings_hash: str = ""
    host: str = ""
    details: dict | None = None
    history: list | None = None

    ok: ClassVar[bool] = False

    def to_dict(self) -> dict:
        out = {
            "reason": self.reason,
            "error_type": self.error_type,
            "walltime": float(self.walltime),
            "kind": self.kind,
            "code": self.code,
            "settings_hash": self.settings_hash,
            "host": self.host,
        }
        if self.details is not None:
            out["details"] = _jsonable(self.details)
        if self.history is not None:
            out["history"] = _jsonable(self.history)
        return out


class NonFiniteLabelError(FatalError, ValueError):
    """The calculator returned NaN or infinite energy, forces or virial."""


class LabelerUnavailableError(FatalError, ImportError):
    """The package behind a labeler kind is not installed."""


# --------------------------------------------------------------------------------------------
# helpers


def _jsonable(obj: Any) -> Any:
    """Plain-Python copy of settings (numpy scalars/arrays, tuples -> JSON types); TypeError otherwise."""
    return plain(obj, other="raise")


def settings_hash(kind: str, settings: Mapping[str, Any]) -> str:
    """sha256 hex digest of the canonical JSON of ``{"kind": kind, "settings": settings}``.

    Canonical: keys sorted, no whitespace, tuples as lists, numpy scalars as Python numbers.
    Labelers fill in their defaults before hashing, so an explicitly given default and an
    omitted one hash the same.
    """
    payload = json.dumps(
        {"kind": kind, "settings": _jsonable(dict(settings))},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=True,
        allow_nan=False,
    )
    return hashlib.sha256(payload.encode()).hexdigest()


def stress_to_virial(stress, volume: float) -> np.ndarray:
    """DeePMD virial (eV, 3x3) from an ASE stress (eV/Å^3).

    ``stress`` is either ASE's Voigt 6-vector in the order (xx, yy, zz, yz, xz, xy) or a 3x3
    tensor. Returns ``-stress_3x3 * volume``.
    """
    s = np.asarray(stress, dtype=float)
    if s.shape == (6,):
        xx, yy, zz, yz, xz, xy = s
        s = np.array([[xx, xy, xz], [xy, yy, yz], [xz, yz, zz]])
    elif s.shape != (3, 3):
        raise ValueError(f"stress must have shape (6,) or (3, 3), got {s.shape}")
    return -s * float(volume)


def _error_type(exc: BaseException) -> str:
    cls = type(exc)
    if cls.__module__ == "builtins":
        return cls.__qualname__
    return f"{cls.__module__}.{cls.__qualname__}"


def _package_version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


_HOST = socket.gethostname()


# --------------------------------------------------------------------------------------------
# labelers


class Labeler:
    """Interface: anything with ``kind``, ``code``, ``version``, ``settings``,
    ``settings_hash`` and ``label(atoms) -> Label`` (raising on failure)."""

    kind: str
    code: str
    version: str
    settings: dict

    @property
    def settings_hash(self) -> str:
        return settings_hash(self.kind, self.settings)

    def label(self, atoms) -> Label:  # pragma: no cover - interface
        raise NotImplementedError


LabelerFactory = Callable[[dict], Labeler]
_REGISTRY: dict[str, LabelerFactory] = {}
_GENERIC_PREFIX = "ase:"


def register_labeler(kind: str) -> Callable[[LabelerFactory], LabelerFactory]:
    """Decorator registering a labeler class or factory ``f(settings: dict) -> Labeler``.

    Registering an existing kind replaces it (like dpdata's format registry).
    """
    key = kind.strip().lower()
    if not key or key.startswith(_GENERIC_PREFIX):
        raise ValueError(f"invalid labeler kind {kind!r}")

    def deco(factory: LabelerFactory) -> LabelerFactory:
        _REGISTRY[key] = factory
        return factory

    return deco


def known_labelers() -> list[str]:
    """Registered kinds plus the generic ``ase:<Class>`` form."""
    return sorted(_REGISTRY) + ["ase:<Class>"]


def get_labeler(kind: str, settings: Mapping[str, Any] | None = None) -> Labeler:
    """The labeler for ``kind`` with ``settings``.

    Raises:
        ValueError: unknown kind (the message lists the known kinds), unknown setting name,
            or a bad setting value (the message names the setting).
        LabelerUnavailableError: the package behind the kind is not installed.
    """
    if not isinstance(kind, str):
        raise ValueError(f"labeler kind must be a string, got {kind!r}; known kinds: "
                         f"{', '.join(known_labelers())}")
    settings = dict(settings or {})
    stripped = kind.strip()
    if stripped[: len(_GENERIC_PREFIX)].lower() == _GENERIC_PREFIX:
        return generic_ase_labeler(stripped[len(_GENERIC_PREFIX):], settings)
    factory = _REGISTRY.get(stripped.lower())
    if factory is None:
        raise ValueError(
            f"unknown labeler kind {kind!r}; known kinds: {', '.join(known_labelers())} "
            f"(e.g. 'ase:EMT', 'ase:lj.LennardJones')"
        )
    return factory(settings)


def _check_keys(kind: str, settings: Mapping[str, Any], allowed: Iterable[str]) -> None:
    allowed = list(allowed)
    unknown = sorted(set(settings) - set(allowed))
    if unknown:
        raise ValueError(
            f"unknown setting(s) {', '.join(map(repr, unknown))} for labeler {kind!r}; "
            f"allowed: {', '.join(allowed)}"
        )


def _as_float(kind: str, name: str, value, *, positive: bool = False, nonneg: bool = False) -> float:
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"labeler {kind!r}: setting {name!r} must be a number, got {value!r}") from None
    if not math.isfinite(x) or (positive and x <= 0) or (nonneg and x < 0):
        need = "a positive" if positive else ("a non-negative" if nonneg else "a finite")
        raise ValueError(f"labeler {kind!r}: setting {name!r} must be {need} number, got {value!r}")
    return x


def _as_int(kind: str, name: str, value, *, positive: bool = False) -> int:
    if isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)):
        x = int(value)
    elif isinstance(value, (float, np.floating)) and float(value).is_integer():
        x = int(value)
    else:
        raise ValueError(f"labeler {kind!r}: setting {name!r} must be an integer, got {value!r}")
    if positive and x <= 0:
        raise ValueError(f"labeler {kind!r}: setting {name!r} must be a positive integer, got {value!r}")
    return x


def _as_bool(kind: str, name: str, value) -> bool:
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    raise ValueError(f"labeler {kind!r}: setting {name!r} must be true or false, got {value!r}")


def label_many(labeler: Labeler, atoms_list: Iterable) -> list[Label | LabelFailure]:
    """Label every structure; a failing one becomes a :class:`LabelFailure`, in place.

    Any ``Exception`` from the calculator (SCF not converged, unsupported element, bad input)
    and non-finite results are caught; ``KeyboardInterrupt``/``SystemExit`` propagate. An
    exception's ``details`` (dict) and ``history`` (list) attributes, which the DFT labelers
    attach (kept work folder, custodian's corrections), are carried onto the failure.
    """
    out: list[Label | LabelFailure] = []
    for atoms in atoms_list:
        t0 = time.perf_counter()
        try:
            out.append(labeler.label(atoms))
        except Exception as exc:
            reason = str(exc) or repr(exc)
            cause = exc.__cause__
            if cause is not None and str(cause) and str(cause) not in reason:
                reason = f"{reason} (caused by {type(cause).__name__}: {cause})"
            out.append(LabelFailure(
                reason=reason,
                error_type=_error_type(exc),
                walltime=time.perf_counter() - t0,
                kind=getattr(labeler, "kind", ""),
                code=getattr(labeler, "code", ""),
                settings_hash=getattr(labeler, "settings_hash", ""),
                host=_HOST,
                details=_as_dict_or_none(getattr(exc, "details", None)),
                history=_as_list_or_none(getattr(exc, "history", None)),
            ))
    return out


def _as_dict_or_none(value) -> dict | None:
    return dict(value) if isinstance(value, Mapping) and value else None


def _as_list_or_none(value) -> list | None:
    return list(value) if isinstance(value, (list, tuple)) and value else None


# The ASE-calculator labelers register themselves on import (kept in their own module).
from firegen.workflows.steps.ase_labelers import ASELabeler, generic_ase_labeler  # noqa: E402
from firegen.workflows.steps import command_labeler as _command_labeler  # noqa: E402,F401  (kind "command")
from firegen.workflows.steps import delayed_labeler as _delayed_labeler  # noqa: E402,F401  (kind "delayed")

# The DFT labelers (external codes) register lazy factories: importing this module stays cheap
# and needs neither the codes nor custodian; ``get_labeler("cp2k", ...)`` imports the module.
_DFT_MODULES = {"cp2k": "cp2k_labeler", "qe": "qe_labeler", "vasp": "vasp_labeler"}


def _lazy_dft_factory(kind: str, module: str) -> LabelerFactory:
    def factory(settings: dict) -> Labeler:
        mod = importlib.import_module(f"firegen.workflows.steps.{module}")
        return getattr(mod, f"{kind}_labeler")(settings)

    factory.__name__ = f"{kind}_labeler"
    factory.__doc__ = f"Lazy factory: imports firegen.workflows.steps.{module} on first use."
    return factory


for _kind, _module in _DFT_MODULES.items():
    _REGISTRY.setdefault(_kind, _lazy_dft_factory(_kind, _module))
del _kind, _module
