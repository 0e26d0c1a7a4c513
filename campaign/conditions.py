"""One MD run of an exploration stage, as the campaign's config describes it: ensemble, thermal
and pressure targets, strain or deformation, melt-quench recipe (units K, bar, fs, ps).

The exploration engines (:mod:`firegen.workflows.steps.lammps`, :mod:`~firegen.workflows.steps.ase_md`)
run an :class:`MDCondition`; the stage config (:mod:`firegen.campaign.config_stages`) builds and checks
them at submit time.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from firegen.campaign import protocols

#: Supported ensembles: ``nvt`` (Nosé-Hoover), ``npt`` (isotropic cell fluctuations),
#: ``npt-aniso`` (a, b, c lengths independently, angles fixed), ``npt-tri`` (full cell).
ENSEMBLES = ("nvt", "npt", "npt-aniso", "npt-tri")

#: Largest seed LAMMPS' ``velocity create`` accepts (a positive 32-bit int).
_MAX_SEED = 2**31 - 1


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _is_real(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


@dataclass(frozen=True)
class MDCondition:
    """One MD protocol of an exploration stage.

    Attributes:
        ensemble: ``"nvt"``, ``"npt"`` (isotropic), ``"npt-aniso"`` or ``"npt-tri"``.
        temperature: Target temperature (K), also the initial velocity temperature.
        pressure: Target pressure (bar) for the NPT ensembles; must be None for ``nvt``.
        nsteps: Number of MD steps.
        dt: Time step (fs).
        trj_freq: Save a frame and its model deviation every ``trj_freq`` steps (step 0
            included, so ``nsteps // trj_freq + 1`` frames).
        tau_t: Thermostat damping time (ps).
        tau_p: Barostat damping time (ps).
        seed: Seed of the initial Maxwell-Boltzmann velocities, ``1 <= seed < 2**31``.
            Give replicas of one condition distinct seeds.
        temperature_stop: Temperature ramp: the thermostat target goes linearly from
            ``temperature`` to this (K) over the run (cooling when lower). None: constant.
        strain: Fixed strain applied to the starting cell (atoms scaled with it) before the
            MD, a spec ``{mode, direction, value}`` of :mod:`~firegen.campaign.protocols`.
        deform: Continuous deformation over the run (LAMMPS ``fix deform ... remap x``),
            reaching the spec's strain at the last step; ``nvt`` only, LAMMPS only.
        melt_quench: Melt-quench recipe (keys
            :data:`~firegen.campaign.protocols.MELT_QUENCH_KEYS`; ps, K, K/ps): heat
            from ``temperature`` to the melt, hold, cool back at the rate, relax (all NVT),
            then ``ensemble`` (an NPT one) at ``temperature`` and ``pressure``. ``nsteps``
            must be the sum of the segments (:func:`~firegen.campaign.protocols.melt_quench_nsteps`).
        key: Short human label (e.g. ``T300-P1``, ``ramp10-2000K``) for tables and
            per-condition bookkeeping; default built by
            :func:`~firegen.campaign.protocols.condition_key`.
    """

    ensemble: str
    temperature: float
    pressure: float | None
    nsteps: int
    dt: float = 1.0
    trj_freq: int = 10
    tau_t: float = 0.1
    tau_p: float = 0.5
    seed: int = 1
    temperature_stop: float | None = None
    strain: dict[str, Any] | None = None
    deform: dict[str, Any] | None = None
    melt_quench: dict[str, Any] | None = None
    key: str | None = None

    def __post_init__(self) -> None:
        if self.ensemble not in ENSEMBLES:
            raise ValueError(
                f"MDCondition.ensemble must be one of {list(ENSEMBLES)}, got {self.ensemble!r}"
            )
        temp = self.temperature
        if not _is_real(temp) or not math.isfinite(temp) or temp <= 0:
            raise ValueError(
                f"MDCondition.temperature must be a positive number of kelvin, got {temp!r}"
            )
        if self.ensemble == "nvt":
            if self.pressure is not None:
                raise ValueError(
                    f"MDCondition.pressure must be None for ensemble 'nvt' "
                    f"(got {self.pressure!r}); use ensemble 'npt' to control the pressure"
                )
        elif (
            self.pressure is None
            or not _is_real(self.pressure)
            or not math.isfinite(self.pressure)
        ):
            raise ValueError(
                f"MDCondition.pressure must be a finite number of bar for ensemble "
                f"{self.ensemble!r}, got {self.pressure!r}"
            )
        if not _is_int(self.nsteps) or self.nsteps < 1:
            raise ValueError(f"MDCondition.nsteps must be a positive int, got {self.nsteps!r}")
        if not _is_real(self.dt) or not math.isfinite(self.dt) or self.dt <= 0:
            raise ValueError(f"MDCondition.dt must be a positive time step in fs, got {self.dt!r}")
        if not _is_int(self.trj_freq) or self.trj_freq < 1:
            raise ValueError(f"MDCondition.trj_freq must be a positive int, got {self.trj_freq!r}")
        for name in ("tau_t", "tau_p"):
            tau = getattr(self, name)
            if not _is_real(tau) or not math.isfinite(tau) or tau <= 0:
                raise ValueError(f"MDCondition.{name} must be a positive time in ps, got {tau!r}")
            if tau * 1000.0 <= self.dt:
                raise ValueError(
                    f"MDCondition.{name} = {tau} ps must be longer than the time step "
                    f"dt = {self.dt} fs (note: {name} is in ps, dt in fs)"
                )
        if not _is_int(self.seed) or not 1 <= self.seed <= _MAX_SEED:
            raise ValueError(
                f"MDCondition.seed must be an int in [1, {_MAX_SEED}], got {self.seed!r}"
            )
        # plain Python numbers (numpy scalars in, JSON-serializable out)
        for name in ("temperature", "dt", "tau_t", "tau_p"):
            object.__setattr__(self, name, float(getattr(self, name)))
        for name in ("nsteps", "trj_freq", "seed"):
            object.__setattr__(self, name, int(getattr(self, name)))
        if self.pressure is not None:
            object.__setattr__(self, "pressure", float(self.pressure))
        self._check_protocol()
        if self.key is None:
            object.__setattr__(self, "key", protocols.condition_key(self))
        elif not isinstance(self.key, str) or not self.key.strip():
            raise ValueError(f"MDCondition.key must be a non-empty text label, got {self.key!r}")

    def _check_protocol(self) -> None:
        """Validate (and normalize) temperature_stop, strain, deform and melt_quench."""
        stop = self.temperature_stop
        if stop is not None:
            if not _is_real(stop) or not math.isfinite(stop) or stop <= 0:
                raise ValueError(f"MDCondition.temperature_stop must be a positive number of "
                                 f"kelvin (ramp end) or None, got {stop!r}")
            object.__setattr__(self, "temperature_stop", float(stop))
        for name in ("strain", "deform"):
            if getattr(self, name) is not None:
                object.__setattr__(self, name, protocols.check_strain(getattr(self, name),
                                                                      f"MDCondition.{name}"))
        if self.deform is not None and self.ensemble != "nvt":
            raise ValueError(f"MDCondition.deform needs ensemble 'nvt' (got {self.ensemble!r}): "
                             "a barostat would fight the imposed box change")
        if self.melt_quench is None:
            return
        recipe = protocols.check_melt_quench(self.melt_quench, self.temperature,
                                             "MDCondition.melt_quench")
        object.__setattr__(self, "melt_quench", recipe)
        if self.ensemble == "nvt":
            raise ValueError("MDCondition.melt_quench ends with an NPT segment: use ensemble "
                             "'npt', 'npt-aniso' or 'npt-tri' and give its pressure (bar)")
        clash = [n for n in ("temperature_stop", "strain", "deform") if getattr(self, n) is not None]
        if clash:
            raise ValueError(f"MDCondition.melt_quench cannot be combined with {clash}: the "
                             "recipe sets its own temperatures; leave those None")
        total = protocols.melt_quench_nsteps(recipe, self.temperature, self.dt)
        if self.nsteps != total:
            raise ValueError(f"MDCondition.nsteps = {self.nsteps} must equal the melt-quench "
                             f"segments' total {total} steps at dt = {self.dt:g} fs "
                             "(protocols.melt_quench_nsteps)")

    @property
    def n_frames(self) -> int:
        """Number of saved frames (and model-deviation rows): steps 0, trj_freq, ..."""
        return self.nsteps // self.trj_freq + 1

    def label(self) -> str:
        """Short human string, e.g. ``"nvt T=300K"``, ``"npt T=300K P=1bar"`` or
        ``"nvt T=10-2000K shear_xy+0.5 (deform)"``."""
        if self.melt_quench:
            text = (f"{self.ensemble} melt-quench {self.temperature:g}K-"
                    f"{self.melt_quench['melt_temperature']:g}K-{self.temperature:g}K")
        elif self.temperature_stop is not None:
            text = f"{self.ensemble} T={self.temperature:g}-{self.temperature_stop:g}K"
        else:
            text = f"{self.ensemble} T={self.temperature:g}K"
        if self.pressure is not None:
            text += f" P={self.pressure:g}bar"
        if self.strain:
            text += f" {protocols.strain_label(self.strain)}"
        if self.deform:
            text += f" {protocols.strain_label(self.deform)} (deform)"
        return text

    def segments(self) -> list[protocols.Segment]:
        """The run's segments (one, or five for melt-quench), see :func:`protocols.segments`."""
        return protocols.segments(self)

    def as_dict(self) -> dict[str, Any]:
        """JSON-serializable dict (inverse: ``MDCondition(**d)``)."""
        return asdict(self)
