"""Exploration protocols beyond one thermostat setting: fixed strain, continuous deformation,
temperature ramps and multi-segment runs (melt-quench).

Pure functions on plain data, shared by the config (`StageConfig.conditions`), the condition
(:class:`~firegen.campaign.conditions.MDCondition`) and both MD engines, so that a protocol means
the same everywhere.

Strain specs are small JSON-able dicts ``{"mode": ..., "direction": ..., "value": ...}``:

* ``mode="isotropic"`` (``direction`` None): every length times ``1 + value``;
* ``mode="uniaxial"``, ``direction`` in ``xx``, ``yy``, ``zz``: that axis times ``1 + value``
  (negative = compression);
* ``mode="shear"``, ``direction`` in ``yz``, ``xz``, ``xy``: engineering shear strain ``value``
  in LAMMPS' tilt convention (``xy``: ``x += value * y``, the ``xy`` tilt grows by
  ``value * ly``).

``value`` is a fraction (0.05 = 5 %). The deformation gradient ``F`` maps positions
``r' = F r`` and cell rows ``a' = F a``. Axes are the structure's Cartesian axes (for a fixed
strain) or LAMMPS' box axes (for ``fix deform``: a along x, b in the xy plane); they agree for
orthorhombic cells and for cells already in LAMMPS' lower-triangular form.

Units: K, bar, fs for the time step, ps for durations, K/ps for rates.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from ase import Atoms

#: Strain modes of fixed strain and of continuous deformation.
STRAIN_MODES = ("isotropic", "uniaxial", "shear")
#: Directions of uniaxial strain (normal components) and of shear strain (LAMMPS tilt factors).
NORMAL_DIRECTIONS = ("xx", "yy", "zz")
SHEAR_DIRECTIONS = ("yz", "xz", "xy")
_AXIS = {"x": 0, "y": 1, "z": 2}

#: Keys of a melt-quench recipe (durations in ps, rate in K/ps, temperature in K).
MELT_QUENCH_KEYS = ("melt_temperature", "heat_ps", "hold_ps", "quench_rate_K_per_ps",
                    "relax_ps", "npt_ps")


def _real(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


# --------------------------------------------------------------------------- strain


def check_strain(spec: Any, what: str = "strain") -> dict[str, Any]:
    """Validate a strain spec and return it normalized (plain floats, ``direction`` None for
    isotropic).

    Args:
        spec: ``{"mode": ..., "direction": ..., "value": ...}`` (see the module doc).
        what: Name used in error messages (e.g. ``"MDCondition.deform"``).

    Raises:
        ValueError: One message naming the key and the allowed values.
    """
    if not isinstance(spec, Mapping):
        raise ValueError(f"{what} must be a mapping {{mode, direction, value}}, got {spec!r}")
    extra = sorted(set(spec) - {"mode", "direction", "value"})
    if extra:
        raise ValueError(f"{what} has unknown keys {extra}; allowed: mode, direction, value")
    mode, direction, value = spec.get("mode"), spec.get("direction"), spec.get("value")
    if mode not in STRAIN_MODES:
        raise ValueError(f"{what}.mode must be one of {list(STRAIN_MODES)}, got {mode!r}")
    allowed = {"isotropic": (None,), "uniaxial": NORMAL_DIRECTIONS, "shear": SHEAR_DIRECTIONS}[mode]
    if direction not in allowed:
        hint = "leave it out" if mode == "isotropic" else f"use one of {list(allowed)}"
        raise ValueError(f"{what}.direction {direction!r} does not fit mode {mode!r}: {hint}")
    if not _real(value) or not math.isfinite(value) or value == 0:
        raise ValueError(f"{what}.value must be a non-zero strain fraction (0.05 = 5 %), "
                         f"got {value!r}")
    if abs(value) > 1 or (mode != "shear" and value <= -1):
        raise ValueError(f"{what}.value = {value} is outside the supported strains: use a "
                         "fraction between -1 and 1 (lengths stay positive)")
    return {"mode": mode, "direction": direction, "value": float(value)}


def deformation_gradient(spec: Mapping[str, Any]) -> np.ndarray:
    """The 3×3 deformation gradient ``F`` of a strain spec (``r' = F r``)."""
    spec = check_strain(spec)
    value = spec["value"]
    if spec["mode"] == "isotropic":
        return (1.0 + value) * np.eye(3)
    i, j = (_AXIS[c] for c in spec["direction"])
    grad = np.eye(3)
    grad[i, j] += value
    return grad


def apply_strain(atoms: Atoms, spec: Mapping[str, Any] | None) -> Atoms:
    """A copy of ``atoms`` with its cell deformed by ``spec`` and the atoms scaled with it.

    ``None`` returns an unchanged copy. Cell rows become ``a' = F a``; fractional coordinates
    are kept (atoms move affinely).
    """
    out = atoms.copy()
    if spec is None:
        return out
    grad = deformation_gradient(spec)
    out.set_cell(np.asarray(atoms.cell[:]) @ grad.T, scale_atoms=True)
    return out


def strain_label(spec: Mapping[str, Any]) -> str:
    """Short text, e.g. ``iso0.95`` (linear scale factor), ``uniaxial_xx+0.05``, ``shear_xy-0.1``."""
    if spec["mode"] == "isotropic":
        return f"iso{1.0 + spec['value']:.6g}"
    return f"{spec['mode']}_{spec['direction']}{spec['value']:+.6g}"


def lammps_deform_args(spec: Mapping[str, Any], box: Sequence[float]) -> str:
    """Arguments of ``fix ID group deform 1 <args> remap x`` that deform the LAMMPS box ``box``
    affinely by ``spec`` over one run (linearly in time, reaching it at the last step).

    Args:
        spec: Strain spec (see the module doc).
        box: The box as LAMMPS holds it, ``(lx, ly, lz, xy, xz, yz)`` in Å (restricted
            triclinic: rows a = (lx, 0, 0), b = (xy, ly, 0), c = (xz, yz, lz)).

    Returns:
        ``x|y|z scale <factor>`` for each length that changes and ``xy|xz|yz final <tilt Å>``
        for each tilt that changes: the final box is ``H Fᵀ`` (rows ``F a``), which stays in
        LAMMPS' lower-triangular form for every spec, so tilts of a triclinic box follow the
        deformation too (e.g. an ``xx`` stretch also scales ``xy`` and ``xz``).
    """
    lx, ly, lz, xy, xz, yz = (float(v) for v in box)
    box_h = np.array([[lx, 0.0, 0.0], [xy, ly, 0.0], [xz, yz, lz]])
    final = box_h @ deformation_gradient(spec).T
    parts = [f"{axis} scale {final[i, i] / box_h[i, i]:.10g}"
             for i, axis in enumerate("xyz") if not math.isclose(final[i, i], box_h[i, i])]
    parts += [f"{name} final {final[i, j]:.10g}"
              for name, (i, j) in (("xy", (1, 0)), ("xz", (2, 0)), ("yz", (2, 1)))
              if not math.isclose(final[i, j], box_h[i, j], rel_tol=1e-12, abs_tol=1e-12)]
    return " ".join(parts)


# --------------------------------------------------------------------------- segments


@dataclass(frozen=True)
class Segment:
    """One MD run with one thermostat (and barostat) setting.

    Attributes:
        name: ``"md"`` for a single-segment run; ``heat``, ``hold``, ``cool``, ``relax``,
            ``npt`` for melt-quench.
        ensemble: ``nvt``, ``npt``, ``npt-aniso`` or ``npt-tri``.
        t_start: Thermostat target at the start (K).
        t_stop: Thermostat target at the end (K); ramps linearly in between.
        pressure: Barostat target (bar), None for ``nvt``.
        nsteps: MD steps of the segment.
    """

    name: str
    ensemble: str
    t_start: float
    t_stop: float
    pressure: float | None
    nsteps: int


def ps_to_steps(duration_ps: float, dt_fs: float) -> int:
    """Number of MD steps of ``duration_ps`` at a time step of ``dt_fs`` (rounded)."""
    return int(round(duration_ps * 1000.0 / dt_fs))


def check_melt_quench(recipe: Any, final_temperature: float, what: str = "melt_quench") -> dict:
    """Validate a melt-quench recipe (keys :data:`MELT_QUENCH_KEYS`) and return it with floats.

    Raises:
        ValueError: Missing or unknown keys, non-positive durations or rate, or a melt
            temperature not above ``final_temperature`` (K).
    """
    if not isinstance(recipe, Mapping):
        raise ValueError(f"{what} must be a mapping with keys {list(MELT_QUENCH_KEYS)}, "
                         f"got {recipe!r}")
    missing = [k for k in MELT_QUENCH_KEYS if k not in recipe]
    extra = sorted(set(recipe) - set(MELT_QUENCH_KEYS))
    if missing or extra:
        raise ValueError(f"{what} needs exactly the keys {list(MELT_QUENCH_KEYS)} "
                         f"(missing {missing}, unknown {extra})")
    out = {}
    for key in MELT_QUENCH_KEYS:
        value = recipe[key]
        positive = key in ("melt_temperature", "heat_ps", "quench_rate_K_per_ps")
        if not _real(value) or not math.isfinite(value) or value < 0 or (positive and value == 0):
            unit = {"melt_temperature": "K", "quench_rate_K_per_ps": "K/ps"}.get(key, "ps")
            raise ValueError(f"{what}.{key} must be a {'positive' if positive else 'non-negative'}"
                             f" number ({unit}), got {value!r}")
        out[key] = float(value)
    if out["melt_temperature"] <= final_temperature:
        raise ValueError(f"{what}.melt_temperature = {out['melt_temperature']:g} K must be above "
                         f"the start/final temperature {final_temperature:g} K")
    return out


def melt_quench_segments(recipe: Mapping[str, float], temperature: float, pressure: float,
                         ensemble: str, dt_fs: float) -> list[Segment]:
    """The segments of a melt-quench run; segments of zero steps are left out.

    heat: NVT ramp ``temperature`` → melt over ``heat_ps``; hold: NVT at the melt temperature
    for ``hold_ps``; cool: NVT ramp melt → ``temperature`` at ``quench_rate_K_per_ps``; relax:
    NVT at ``temperature`` for ``relax_ps``; npt: ``ensemble`` at ``temperature`` and
    ``pressure`` (bar) for ``npt_ps``.
    """
    melt = recipe["melt_temperature"]
    cool_ps = (melt - temperature) / recipe["quench_rate_K_per_ps"]
    parts = [
        Segment("heat", "nvt", temperature, melt, None, ps_to_steps(recipe["heat_ps"], dt_fs)),
        Segment("hold", "nvt", melt, melt, None, ps_to_steps(recipe["hold_ps"], dt_fs)),
        Segment("cool", "nvt", melt, temperature, None, ps_to_steps(cool_ps, dt_fs)),
        Segment("relax", "nvt", temperature, temperature, None,
                ps_to_steps(recipe["relax_ps"], dt_fs)),
        Segment("npt", ensemble, temperature, temperature, pressure,
                ps_to_steps(recipe["npt_ps"], dt_fs)),
    ]
    return [s for s in parts if s.nsteps > 0]


def melt_quench_nsteps(recipe: Mapping[str, float], temperature: float, dt_fs: float) -> int:
    """Total MD steps of a melt-quench run (the sum over its segments)."""
    return sum(s.nsteps for s in melt_quench_segments(recipe, temperature, 0.0, "npt", dt_fs))


def segments(cond: Any) -> list[Segment]:
    """The segments of an MD condition (an :class:`MDCondition` or anything with its
    attributes): the melt-quench segments, or one segment ``md`` (a ramp when
    ``temperature_stop`` is set)."""
    if getattr(cond, "melt_quench", None):
        return melt_quench_segments(cond.melt_quench, cond.temperature, cond.pressure,
                                    cond.ensemble, cond.dt)
    stop = cond.temperature_stop if getattr(cond, "temperature_stop", None) else cond.temperature
    return [Segment("md", cond.ensemble, cond.temperature, stop, cond.pressure, cond.nsteps)]


# --------------------------------------------------------------------------- labels


def condition_key(cond: Mapping[str, Any] | Any) -> str:
    """Short human key of a condition (dict or object with MDCondition's fields), e.g.
    ``T300``, ``T300-P1``, ``ramp10-2000K``, ``T600-uniaxial_xx+0.05``,
    ``T600-deform_shear_xy+0.5``, ``mq1400K-T300-P1``."""
    get = cond.get if isinstance(cond, Mapping) else (lambda k, d=None: getattr(cond, k, d))
    temp, stop, recipe = get("temperature"), get("temperature_stop"), get("melt_quench")
    if recipe:
        text = f"mq{recipe['melt_temperature']:g}K-T{temp:g}"
    elif stop is not None:
        text = f"ramp{temp:g}-{stop:g}K"
    else:
        text = f"T{temp:g}"
    if get("pressure") is not None:
        text += f"-P{get('pressure'):g}"
    if get("strain"):
        text += "-" + strain_label(get("strain"))
    if get("deform"):
        text += "-deform_" + strain_label(get("deform"))
    return text
