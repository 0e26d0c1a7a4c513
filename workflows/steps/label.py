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
    """

    reason: str
    error_type: str
    walltime: float
    kind: str = ""
    code: str = ""
    settings_hash: str = ""
    host: str = ""

    ok: ClassVar[bool] = False

    def to_dict(self) -> dict:
        return {
            "reason": self.reason,
            "error_type": self.error_type,
            "walltime": float(self.walltime),
            "kind": self.kind,
            "code": self.code,
            "settings_hash": self.settings_hash,
            "host": self.host,
        }


class NonFiniteLabelError(ValueError):
    """The calculator returned NaN or infinite energy, forces or virial."""


class LabelerUnavailableError(ImportError):
    """The package behind a labeler kind is not installed."""


# --------------------------------------------------------------------------------------------
# helpers


def _jsonable(obj: Any) -> Any:
    """Plain-Python copy of settings (numpy scalars/arrays, tuples -> JSON types)."""
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return obj.item()
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"setting value {obj!r} of type {type(obj).__name__} is not JSON-serialisable")


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


class ASELabeler(Labeler):
    """Labels with an ASE calculator made fresh for every structure by ``make_calculator``.

    A fresh calculator per structure keeps one structure's failure (or SCF state) from
    leaking into the next; for the calculators here construction costs microseconds.
    """

    def __init__(self, kind: str, settings: Mapping[str, Any], code: str, version: str,
                 factory: Callable[[], Any]):
        self.kind = kind
        self.settings = _jsonable(dict(settings))
        self.code = code
        self.version = version
        self._factory = factory
        self._hash = settings_hash(kind, self.settings)

    @property
    def settings_hash(self) -> str:
        return self._hash

    def make_calculator(self):
        return self._factory()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(kind={self.kind!r}, settings={self.settings!r})"

    def label(self, atoms) -> Label:
        """Label one structure; raises the calculator's exception, or
        :class:`NonFiniteLabelError` for NaN/inf results."""
        t0 = time.perf_counter()
        at = atoms.copy()
        at.calc = self.make_calculator()
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            # broken structures surface below as NonFiniteLabelError, not as log noise
            return self._finish(at, t0)

    def _finish(self, at, t0: float) -> Label:
        from ase.calculators.calculator import PropertyNotImplementedError

        try:
            energy = at.get_potential_energy(force_consistent=True)
        except PropertyNotImplementedError:
            energy = at.get_potential_energy()
        energy = float(energy)
        forces = np.array(at.get_forces(apply_constraint=False), dtype=float)
        if forces.shape != (len(at), 3):
            raise ValueError(f"calculator returned forces of shape {forces.shape} for {len(at)} atoms")
        virial = None
        if len(at) and at.pbc.all():
            volume = abs(at.cell.volume)
            if volume <= 0.0:
                raise ValueError("periodic cell has zero volume; cannot compute a virial")
            try:
                stress = at.get_stress(voigt=True, apply_constraint=False)
            except PropertyNotImplementedError:
                stress = None
            if stress is not None:
                virial = stress_to_virial(stress, volume)
        bad = []
        if not math.isfinite(energy):
            bad.append(f"energy={energy}")
        finite_f = np.isfinite(forces).all(axis=1)
        if not finite_f.all():
            idx = np.flatnonzero(~finite_f)
            shown = ", ".join(str(i) for i in idx[:10]) + (", ..." if len(idx) > 10 else "")
            bad.append(f"forces on {len(idx)} atom(s) [{shown}]")
        if virial is not None and not np.isfinite(virial).all():
            bad.append("virial")
        if bad:
            raise NonFiniteLabelError(
                f"{self.code} returned non-finite {'; '.join(bad)} "
                f"(overlapping atoms or a broken structure?)"
            )
        return Label(
            energy=energy,
            forces=forces,
            virial=virial,
            code=self.code,
            version=self.version,
            settings=dict(self.settings),
            settings_hash=self._hash,
            walltime=time.perf_counter() - t0,
            host=_HOST,
            kind=self.kind,
        )


# registry ------------------------------------------------------------------------------------

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
        return _generic_ase_labeler(stripped[len(_GENERIC_PREFIX):], settings)
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


@register_labeler("emt")
def emt_labeler(settings: dict) -> ASELabeler:
    """ASE's EMT. Settings: ``asap_cutoff`` (bool, default False)."""
    import ase
    from ase.calculators.emt import EMT

    _check_keys("emt", settings, ["asap_cutoff"])
    resolved = {"asap_cutoff": _as_bool("emt", "asap_cutoff", settings.get("asap_cutoff", False))}
    return ASELabeler("emt", resolved, "ase-EMT", ase.__version__, lambda: EMT(**resolved))


@register_labeler("lj")
def lj_labeler(settings: dict) -> ASELabeler:
    """ASE's LennardJones. Settings: sigma (Å, 1.0), epsilon (eV, 1.0), rc (Å, 3 sigma),
    ro (Å, 0.66 rc), smooth (bool, False); defaults are ASE's."""
    import ase
    from ase.calculators.lj import LennardJones

    kind = "lj"
    _check_keys(kind, settings, ["sigma", "epsilon", "rc", "ro", "smooth"])
    sigma = _as_float(kind, "sigma", settings.get("sigma", 1.0), positive=True)
    epsilon = _as_float(kind, "epsilon", settings.get("epsilon", 1.0), nonneg=True)
    rc = settings.get("rc")
    rc = 3.0 * sigma if rc is None else _as_float(kind, "rc", rc, positive=True)
    ro = settings.get("ro")
    ro = 0.66 * rc if ro is None else _as_float(kind, "ro", ro, nonneg=True)
    if ro >= rc:
        raise ValueError(f"labeler 'lj': setting 'ro' ({ro}) must be smaller than 'rc' ({rc})")
    smooth = _as_bool(kind, "smooth", settings.get("smooth", False))
    resolved = {"sigma": sigma, "epsilon": epsilon, "rc": rc, "ro": ro, "smooth": smooth}
    return ASELabeler(kind, resolved, "ase-LennardJones", ase.__version__,
                      lambda: LennardJones(**resolved))


_TBLITE_METHODS = ("GFN1-xTB", "GFN2-xTB", "IPEA1-xTB")
_TBLITE_GUESSES = ("sad", "eeq", "eeqbc")


@register_labeler("tblite")
def tblite_labeler(settings: dict) -> ASELabeler:
    """xTB via ``tblite.ase.TBLite``. Settings (defaults are tblite's): method ("GFN2-xTB"),
    accuracy (1.0), electronic_temperature (K, 300.0), max_iterations (250), charge (None:
    sum of the atoms' initial charges), multiplicity (None: from initial magnetic moments),
    mixer_damping (0.4), guess ("sad")."""
    kind = "tblite"
    try:
        from tblite.ase import TBLite
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise LabelerUnavailableError(
            f"labeler 'tblite' needs the tblite Python package with its ASE interface "
            f"(pip install 'firegen[xtb]' or conda install -c conda-forge tblite-python): {exc}"
        ) from exc
    allowed = ["method", "accuracy", "electronic_temperature", "max_iterations", "charge",
               "multiplicity", "mixer_damping", "guess"]
    _check_keys(kind, settings, allowed)
    method = str(settings.get("method", "GFN2-xTB"))
    canon = {m.lower(): m for m in _TBLITE_METHODS}
    if method.lower() not in canon:
        raise ValueError(f"labeler 'tblite': setting 'method' must be one of "
                         f"{', '.join(_TBLITE_METHODS)}, got {method!r}")
    guess = str(settings.get("guess", "sad")).lower()
    if guess not in _TBLITE_GUESSES:
        raise ValueError(f"labeler 'tblite': setting 'guess' must be one of "
                         f"{', '.join(_TBLITE_GUESSES)}, got {settings.get('guess')!r}")
    charge = settings.get("charge")
    multiplicity = settings.get("multiplicity")
    resolved = {
        "method": canon[method.lower()],
        "accuracy": _as_float(kind, "accuracy", settings.get("accuracy", 1.0), positive=True),
        "electronic_temperature": _as_float(
            kind, "electronic_temperature", settings.get("electronic_temperature", 300.0),
            nonneg=True),
        "max_iterations": _as_int(kind, "max_iterations", settings.get("max_iterations", 250),
                                  positive=True),
        "charge": None if charge is None else _as_int(kind, "charge", charge),
        "multiplicity": None if multiplicity is None else _as_int(kind, "multiplicity",
                                                                  multiplicity, positive=True),
        "mixer_damping": _as_float(kind, "mixer_damping", settings.get("mixer_damping", 0.4),
                                   positive=True),
        "guess": guess,
    }

    def factory():
        return TBLite(verbosity=0, **resolved)

    return ASELabeler(kind, resolved, "tblite", _package_version("tblite"), factory)


def _resolve_ase_class(spec: str):
    """Calculator class from ``Class`` or ``module.Class`` under ``ase.calculators``."""
    from ase.calculators.calculator import BaseCalculator, get_calculator_class, special

    spec = spec.strip()
    hint = ("use 'ase:<Class>' or 'ase:<module>.<Class>' with a calculator from ase.calculators, "
            "e.g. 'ase:EMT', 'ase:LennardJones', 'ase:morse.MorsePotential'")
    if not spec:
        raise ValueError(f"labeler kind 'ase:' names no calculator; {hint}")
    cls = None
    errors = []
    if "." in spec:
        module_name, _, class_name = spec.rpartition(".")
        if not module_name.startswith("ase."):
            module_name = "ase.calculators." + module_name
        try:
            cls = getattr(importlib.import_module(module_name), class_name)
        except (ImportError, AttributeError) as exc:
            errors.append(f"{type(exc).__name__}: {exc}")
    else:
        by_class = {v.lower(): k for k, v in special.items()}
        candidates = []
        if spec.lower() in by_class:  # "LennardJones" -> module lj
            candidates.append((by_class[spec.lower()], special[by_class[spec.lower()]]))
        for module_name, class_name in candidates:
            try:
                cls = getattr(importlib.import_module("ase.calculators." + module_name), class_name)
                break
            except (ImportError, AttributeError) as exc:
                errors.append(f"{type(exc).__name__}: {exc}")
        if cls is None:
            try:  # "EMT" -> module emt, "Vasp" -> module vasp
                cls = get_calculator_class(spec.lower())
            except (ImportError, AttributeError) as exc:
                errors.append(f"{type(exc).__name__}: {exc}")
    if cls is None:
        raise ValueError(f"unknown labeler kind 'ase:{spec}': no such ASE calculator "
                         f"({'; '.join(errors)}); {hint}")
    if not (isinstance(cls, type) and issubclass(cls, BaseCalculator)):
        raise ValueError(f"labeler kind 'ase:{spec}' resolves to {cls!r}, which is not an ASE "
                         f"calculator class; {hint}")
    return cls


def _generic_ase_labeler(spec: str, settings: dict) -> ASELabeler:
    cls = _resolve_ase_class(spec)
    kind = f"ase:{spec.strip()}"
    try:
        resolved = _jsonable(settings)
    except TypeError as exc:
        raise ValueError(f"labeler {kind!r}: {exc}") from None
    try:  # surface bad keyword arguments now, not on the worker
        cls(**resolved)
    except Exception as exc:
        raise ValueError(f"labeler {kind!r}: {cls.__name__}(**settings) failed: "
                         f"{type(exc).__name__}: {exc}") from exc
    top = cls.__module__.split(".")[0]
    version = _package_version(top) if top != "ase" else _package_version("ase")
    return ASELabeler(kind, resolved, f"ase-{cls.__name__}", version, lambda: cls(**resolved))


# batch ---------------------------------------------------------------------------------------


def label_many(labeler: Labeler, atoms_list: Iterable) -> list[Label | LabelFailure]:
    """Label every structure; a failing one becomes a :class:`LabelFailure`, in place.

    Any ``Exception`` from the calculator (SCF not converged, unsupported element, bad input)
    and non-finite results are caught; ``KeyboardInterrupt``/``SystemExit`` propagate.
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
            ))
    return out
