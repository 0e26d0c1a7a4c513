"""The shipped labelers: ASE's EMT and Lennard-Jones, tblite's xTB methods, any ``ase:<Class>``.

Each factory checks its settings (one error naming the setting and what is allowed) and returns an
:class:`~firegen.workflows.steps.label.ASELabeler`. See :mod:`firegen.workflows.steps.label` for
the settings of each kind and the units.
"""

from __future__ import annotations

import importlib
import math
import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from firegen.workflows.steps.label import (_HOST, Label, Labeler, LabelerUnavailableError, NonFiniteLabelError,
                                           _as_bool, _as_float, _as_int, _check_keys, _jsonable, _package_version,
                                           register_labeler, settings_hash, stress_to_virial)

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


def generic_ase_labeler(spec: str, settings: dict) -> ASELabeler:
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


