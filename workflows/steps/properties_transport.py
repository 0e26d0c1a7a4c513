"""Ionic transport from MD: mean squared displacement → diffusion coefficient → Nernst–Einstein
conductivity → Arrhenius activation energy, each with its uncertainty.

Pure science, no FireWorks and no database. pymatgen's ``DiffusionAnalyzer`` (package
``pymatgen-analysis-diffusion``) is not part of firegen's environment, so the analysis is written
here on numpy, following the protocol of the solid-electrolyte MD literature (e.g. He, Zhu, Epstein &
Mo, npj Comput. Mater. 4, 18 (2018)):

* **MSD** (:func:`mean_squared_displacement`): per species, averaged over atoms and over every time
  origin, from *unwrapped* positions (Å; LAMMPS ``xu yu zu``), after removing the drift of the whole
  cell's centre of mass.
* **Diffusion coefficient** (:func:`diffusion_coefficients`): ``D = slope / 6`` of a straight line
  through the MSD over the fit window ``[fit_start_ps, fit_end_ps]`` of lag times. The same window is
  fitted on the whole run (the value) and on each of ``n_blocks`` consecutive, independent blocks;
  the error is the standard error of the block values, ``std(D_b, ddof=1) / sqrt(n_blocks)``.

  Default window (:func:`default_fit_window`): from ``max(1 ps, 10 % of a block)`` to ``50 %`` of a
  block (at least twice the start where the block holds it, at most the block). Why it never starts
  before :data:`MIN_FIT_START_PS` = 1 ps: at shorter lags the MSD still carries the vibrational
  transient (the ballistic rise, then the overshoot and ringing onto the plateau of atoms vibrating
  about their sites; phonon periods are 0.05-0.5 ps). That shape is the same in every block, so the
  block error cannot see it, and a straight line through it is a slope that is not diffusion: fcc Cu
  (D = 0) came out below 0 by many block errors when 5-ps runs made 1-ps blocks and a window of
  0.1-0.5 ps (the 10-50 % rule alone). From 1 ps the MSD of a solid at 300-900 K is on its
  plateau (crystal, slope 0) or on its line (diffusing ions); pymatgen's DiffusionAnalyzer starts its fits at 1 ps
  too. The window must also be wide: the long-lived phonons of a small cell at low temperature ring
  on for picoseconds (EMT Cu, 108 atoms, 300 K, 5 ps: the MSD swings by up to 25 % about its plateau
  at 0.5-2.5 ps, also after 3 ps of equilibration and in NVT), and a window of a fraction of a period
  fits that swing: 1.0-1.24 ps gave D = 8e-7 cm²/s, 5 errors from 0; 1.0-1.66 ps gives 7e-8, a tenth
  (NPT: within one error; NVT: 6 of its errors, the ringing smaller but not gone, and an error from
  3 blocks is itself uncertain). So where a block cannot hold a window from 1 ps that is
  :data:`MIN_FIT_WIDTH_PS` = 0.5 ps wide, fewer, longer blocks are used (down to 2; ``block_D_cm2_s``
  lists them; 5-ps runs get 3); a run too short for three lags from 1 ps in 2 blocks raises. Runs of
  tens of ps fit over many periods and keep their blocks; there the 10-50 % rule keeps the window past
  the transient and leaves every lag at least half a block of time origins. A slower transient (soft
  modes, the caging of a glass or a melt near T_g) needs a later start: give ``fit_window_ps``.
* **Is it diffusion at all?** A fitted slope is a number for any MSD, also the plateau of a crystal, where it is
  the plateau's residual tilt and ringing (fcc Cu at 300-600 K, 256 atoms, 20 ps: |D| up to 6e-8 cm²/s; EMT's
  at 600 K negative by 10 block errors, a DeePMD model's at 300 K positive by 6.5, which therefore understate the
  fit's systematic error there; the latter's log-log slope is 0.12). So each
  :class:`Diffusion` also carries ``msd_exponent``, the log-log slope ``d ln MSD / d ln t`` over the fit window of
  the whole run (1 in the diffusive regime, about 0 on a plateau, 2 ballistic), and ``diffusive``: True only where
  ``D`` exceeds :data:`DIFFUSIVE_SIGMAS` block errors and the exponent lies within :data:`DIFFUSIVE_EXPONENT`.
  A D that is not ``diffusive`` is no diffusion coefficient: report "not diffusive", not the number. (A slow ion
  whose MSD is still dominated by its vibrational plateau in the window fails the exponent test too: its line is
  not yet in the diffusive regime; run longer and give a later ``fit_window_ps``.)
* **Conductivity** (:func:`nernst_einstein`): ``σ = e² / (V k_B T H_R) Σ_i N_i z_i² D_i`` over the
  species given charges (Haven ratio ``H_R``, default 1: the tracer conductivity); errors of D and V
  propagated in quadrature.
* **Arrhenius** (:func:`arrhenius_fit`): a weighted straight line ``ln(σT) = ln A − E_a / (k_B T)``
  (or ``ln D`` for diffusion coefficients) over a temperature ladder; ``E_a`` (eV) and the value
  extrapolated to 300 K, with errors from the fit's covariance.

Units: Å, ps, K, D in cm²/s (1 Å²/ps = 1e-4 cm²/s), σ in S/cm, E_a in eV.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from firegen.workflows.steps.properties_stats import DEFAULT_BLOCKS, line_fit

#: cm²/s per Å²/ps.
A2_PER_PS_IN_CM2_PER_S = 1e-4
ELEMENTARY_CHARGE_C = 1.602176634e-19
BOLTZMANN_J_K = 1.380649e-23
BOLTZMANN_EV_K = 8.617333262e-5
#: The window of lag times fitted, as fractions of one block's length (see the module docstring).
DEFAULT_FIT_WINDOW = (0.1, 0.5)
#: The default window never starts before this lag (ps): the MSD's vibrational transient is over by then.
MIN_FIT_START_PS = 1.0
#: The default window is this wide (ps) where the run allows (fewer blocks make room): a narrower one fits part
#: of one period of the slow ringing of long-lived phonons (see the module docstring).
MIN_FIT_WIDTH_PS = 0.5
#: A D is ``diffusive`` only when it exceeds this many block errors ...
DIFFUSIVE_SIGMAS = 3.0
#: ... and the MSD's log-log slope over the fit window lies in this range (1: the diffusive regime; a plateau gives
#: about 0, the ballistic regime 2). For MSD = c + 6 D t the log-log slope is 6 D t / MSD, the share of the MSD that
#: is diffusion: from 0.5 on, the atoms have moved at least as far as they vibrate (the offset c).
DIFFUSIVE_EXPONENT = (0.5, 1.5)


@dataclass(frozen=True)
class MSD:
    """Mean squared displacement per species against lag time.

    Attributes:
        time_ps: lag times (ps), starting at 0.
        msd_A2: per species, the MSD at each lag (Å²).
    """

    time_ps: list[float]
    msd_A2: dict[str, list[float]]

    def as_dict(self) -> dict:
        return asdict(self)


def _check_positions(positions, symbols: Sequence[str]) -> np.ndarray:
    pos = np.asarray(positions, float)
    if pos.ndim != 3 or pos.shape[2] != 3 or pos.shape[1] != len(symbols):
        raise ValueError(f"positions must have shape (frames, {len(symbols)} atoms, 3), got {pos.shape}")
    if pos.shape[0] < 2:
        raise ValueError("an MSD needs at least two frames")
    return pos


def remove_drift(positions, masses) -> np.ndarray:
    """Unwrapped positions with the displacement of the cell's centre of mass taken out of every frame."""
    pos = np.asarray(positions, float)
    m = np.asarray(masses, float)
    com = np.einsum("fai,a->fi", pos, m) / m.sum()
    return pos - (com - com[0])[:, None, :]


def _msd_curve(pos: np.ndarray, max_lag: int) -> np.ndarray:
    """MSD (Å²) at lags 0 .. ``max_lag`` frames, over every time origin and the atoms of ``pos``."""
    out = np.zeros(max_lag + 1)
    for lag in range(1, max_lag + 1):
        d = pos[lag:] - pos[:-lag]
        out[lag] = float(np.mean(np.sum(d * d, axis=-1)))
    return out


def mean_squared_displacement(positions, symbols: Sequence[str], dt_ps: float, masses=None,
                              max_lag: int | None = None) -> MSD:
    """MSD per species (every time origin) from unwrapped positions.

    Args:
        positions: unwrapped positions, shape ``(frames, atoms, 3)`` (Å), frames ``dt_ps`` apart.
        symbols: element of each atom.
        dt_ps: time between frames (ps).
        masses: atomic masses (amu); when given, the centre-of-mass drift is removed first.
        max_lag: the longest lag (frames); default half the run.
    """
    pos = _check_positions(positions, symbols)
    if masses is not None:
        pos = remove_drift(pos, masses)
    n = pos.shape[0]
    max_lag = max(1, n // 2) if max_lag is None else min(int(max_lag), n - 1)
    symbols = np.asarray(list(symbols))
    curves = {s: _msd_curve(pos[:, symbols == s], max_lag).tolist() for s in dict.fromkeys(symbols.tolist())}
    return MSD((np.arange(max_lag + 1) * dt_ps).tolist(), curves)


@dataclass(frozen=True)
class Diffusion:
    """The diffusion coefficient of one species.

    Attributes:
        species: the element.
        D_cm2_s, error_cm2_s: from the whole run, and the standard error of the block values (cm²/s).
        block_D_cm2_s: the value of each block (cm²/s).
        fit_start_ps, fit_end_ps: the window of lag times fitted (ps).
        n_atoms: atoms of the species.
        msd_exponent: log-log slope of the whole run's MSD over the fit window (1: diffusive; about 0: a plateau).
        diffusive: ``D_cm2_s`` exceeds :data:`DIFFUSIVE_SIGMAS` errors and ``msd_exponent`` lies within
            :data:`DIFFUSIVE_EXPONENT`; False: the slope is no diffusion coefficient (see the module docstring).
    """

    species: str
    D_cm2_s: float
    error_cm2_s: float
    block_D_cm2_s: list[float]
    fit_start_ps: float
    fit_end_ps: float
    n_atoms: int
    msd_exponent: float = float("nan")
    diffusive: bool = False

    def as_dict(self) -> dict:
        return asdict(self)


def _slope_D(msd: np.ndarray, dt_ps: float, first: int, last: int) -> float:
    """D (cm²/s) from the slope of ``msd`` (Å²) over lags ``first .. last`` frames."""
    lags = np.arange(first, last + 1) * dt_ps
    slope = np.polyfit(lags, msd[first:last + 1], 1)[0]
    return float(slope / 6.0 * A2_PER_PS_IN_CM2_PER_S)


def _msd_exponent(msd: np.ndarray, first: int, last: int) -> float:
    """The log-log slope ``d ln MSD / d ln t`` of ``msd`` over lags ``first .. last`` frames (0 where the MSD is not
    positive there)."""
    values = msd[first:last + 1]
    if first < 1 or np.any(values <= 0):
        return 0.0
    return float(np.polyfit(np.log(np.arange(first, last + 1)), np.log(values), 1)[0])


def is_diffusive(d_cm2_s: float, error_cm2_s: float, msd_exponent: float) -> bool:
    """Whether a fitted slope is a diffusion coefficient: significantly positive (:data:`DIFFUSIVE_SIGMAS` errors)
    and from an MSD in the diffusive regime (log-log slope within :data:`DIFFUSIVE_EXPONENT`)."""
    low, high = DIFFUSIVE_EXPONENT
    return bool(d_cm2_s > DIFFUSIVE_SIGMAS * error_cm2_s and low <= msd_exponent <= high)


def default_fit_window(n_frames: int, dt_ps: float, n_blocks: int) -> tuple[int, tuple[float, float]]:
    """The default fit window and the blocks it is fitted on: ``(blocks, (start_ps, end_ps))``.

    ``start = max(MIN_FIT_START_PS, 10 % of a block)``, ``end = min(block, max(50 % of a block, 2 x start))``
    (lags, ps; a block spans ``(frames per block - 1) * dt_ps``), on ``n_blocks`` blocks, or on fewer, longer
    ones (down to 2) until the window is :data:`MIN_FIT_WIDTH_PS` wide (else the widest, on 2 blocks). Raises
    ``ValueError`` for a run too short for three lags from the start in 2 blocks (see the module docstring).
    """
    widest = None
    for blocks in range(n_blocks, 1, -1):
        span = (n_frames // blocks - 1) * dt_ps  # the longest lag a block holds (ps)
        start = max(MIN_FIT_START_PS, DEFAULT_FIT_WINDOW[0] * span)
        end = min(span, max(DEFAULT_FIT_WINDOW[1] * span, 2 * start))
        if end - start < 2 * dt_ps - 1e-9:
            continue
        widest = (blocks, (start, end))
        if end - start >= MIN_FIT_WIDTH_PS - 1e-9:
            return widest
    if widest is not None:
        return widest
    raise ValueError(f"{n_frames} frames of {dt_ps:g} ps ({(n_frames - 1) * dt_ps:g} ps) are too short for a "
                     f"diffusion coefficient: the MSD is fitted from {MIN_FIT_START_PS:g} ps (past the vibrational "
                     f"transient) in at least 2 blocks; run at least {2 * (MIN_FIT_START_PS + 3 * dt_ps):g} ps "
                     "(tens of ps for a useful error), or give fit_window_ps")


def fit_window_frames(n_frames: int, dt_ps: float, n_blocks: int,
                      fit_window_ps: tuple[float, float] | None) -> tuple[int, int]:
    """The fit window as lags in frames ``(first, last)``: the given one on ``n_blocks`` blocks. Without one, the
    window of :func:`default_fit_window` for ``n_blocks`` blocks (which may need fewer: call it for the count).
    Raises ``ValueError`` for a window a block cannot hold or one under three lags."""
    block = n_frames // n_blocks
    if block < 6:
        raise ValueError(f"{n_frames} frames make blocks of {block} frames; a diffusion fit needs at least 6 "
                         "per block: run longer, save frames more often, or use fewer blocks")
    if fit_window_ps is None:
        fit_window_ps = default_fit_window(n_frames, dt_ps, n_blocks)[1]
    start, end = fit_window_ps
    first, last = max(1, int(round(start / dt_ps))), int(round(end / dt_ps))
    if last > block - 1:
        raise ValueError(f"fit window end {end:g} ps is longer than one block ({(block - 1) * dt_ps:g} ps); "
                         "shorten the window, use fewer blocks, or run longer")
    if last - first < 2:
        raise ValueError(f"fit window {start:g}-{end:g} ps holds fewer than three lags of {dt_ps:g} ps")
    return first, last


def diffusion_coefficients(positions, symbols: Sequence[str], dt_ps: float, masses=None,
                           fit_window_ps: tuple[float, float] | None = None,
                           n_blocks: int = DEFAULT_BLOCKS, species: Sequence[str] | None = None) -> dict[str, Diffusion]:
    """Diffusion coefficient of each species, with its block error (see the module docstring).

    Args:
        positions, symbols, dt_ps, masses: as for :func:`mean_squared_displacement`.
        fit_window_ps: ``(start, end)`` lag times fitted (ps); default :func:`default_fit_window` (from
            1 ps at the earliest, past the vibrational transient; 10-50 % of one block in long runs).
        n_blocks: independent blocks for the error (at least 2); without ``fit_window_ps``, fewer where a
            block of a short run cannot hold the default window.
        species: the species to analyse (default every one).
    """
    pos = _check_positions(positions, symbols)
    if masses is not None:
        pos = remove_drift(pos, masses)
    if n_blocks < 2:
        raise ValueError(f"n_blocks must be at least 2 for an error bar, got {n_blocks}")
    n = pos.shape[0]
    if fit_window_ps is None:
        n_blocks, fit_window_ps = default_fit_window(n, dt_ps, n_blocks)
    first, last = fit_window_frames(n, dt_ps, n_blocks, fit_window_ps)
    block = n // n_blocks
    symbols = np.asarray(list(symbols))
    wanted = list(dict.fromkeys(symbols.tolist())) if species is None else list(species)
    out = {}
    for s in wanted:
        sel = symbols == s
        if not sel.any():
            raise ValueError(f"species {s} is not in the trajectory")
        atoms = pos[:, sel]
        curve = _msd_curve(atoms, last)
        whole = _slope_D(curve, dt_ps, first, last)
        blocks = [_slope_D(_msd_curve(atoms[b * block:(b + 1) * block], last), dt_ps, first, last)
                  for b in range(n_blocks)]
        error = float(np.std(blocks, ddof=1) / np.sqrt(n_blocks))
        exponent = _msd_exponent(curve, first, last)
        out[s] = Diffusion(s, whole, error, blocks, first * dt_ps, last * dt_ps, int(sel.sum()), exponent,
                           is_diffusive(whole, error, exponent))
    return out


@dataclass(frozen=True)
class Conductivity:
    """Nernst–Einstein ionic conductivity.

    Attributes:
        sigma_S_cm, error_S_cm: the conductivity and its propagated error (S/cm).
        temperature_K, volume_A3, haven_ratio: what it was computed with.
        contributions_S_cm: per species, its share of ``sigma_S_cm``.
    """

    sigma_S_cm: float
    error_S_cm: float
    temperature_K: float
    volume_A3: float
    haven_ratio: float
    contributions_S_cm: dict[str, float]

    def as_dict(self) -> dict:
        return asdict(self)


def nernst_einstein(diffusion: Mapping[str, Diffusion], counts: Mapping[str, int], charges: Mapping[str, float],
                    volume_A3: float, temperature_K: float, haven_ratio: float = 1.0,
                    volume_error_A3: float = 0.0) -> Conductivity:
    """``σ = e² / (V k_B T H_R) Σ_i N_i z_i² D_i`` (S/cm) over the species in ``charges``.

    Args:
        diffusion: per species, its :class:`Diffusion` (D in cm²/s).
        counts: atoms of each species in the cell of volume ``volume_A3``.
        charges: formal charge ``z_i`` (e) of each conducting species (e.g. ``{"Na": 1}``); species not
            listed do not conduct.
        volume_A3, volume_error_A3: cell volume and its error (Å³; the mean of an NPT run).
        temperature_K: temperature (K).
        haven_ratio: ``H_R = D_tracer / D_sigma`` (1: uncorrelated ions).

    Raises:
        ValueError: a charged species without a diffusion coefficient or count, or a non-positive
            volume, temperature or Haven ratio.
    """
    if volume_A3 <= 0 or temperature_K <= 0 or haven_ratio <= 0:
        raise ValueError("volume (Å³), temperature (K) and haven_ratio must be positive")
    missing = [s for s in charges if s not in diffusion or s not in counts]
    if missing:
        raise ValueError(f"charged species {missing} have no diffusion coefficient or atom count")
    # S/m = C² / (m³ J/K K) * m²/s; cm²/s -> m²/s is 1e-4, Å³ -> m³ is 1e-30, S/m -> S/cm is 1e-2
    pre = ELEMENTARY_CHARGE_C ** 2 / (volume_A3 * 1e-30 * BOLTZMANN_J_K * temperature_K * haven_ratio) * 1e-4 * 1e-2
    parts = {s: pre * counts[s] * z ** 2 * diffusion[s].D_cm2_s for s, z in charges.items()}
    sigma = float(sum(parts.values()))
    d_var = sum((pre * counts[s] * z ** 2 * diffusion[s].error_cm2_s) ** 2 for s, z in charges.items())
    v_var = (sigma * volume_error_A3 / volume_A3) ** 2
    return Conductivity(sigma, float(np.sqrt(d_var + v_var)), float(temperature_K), float(volume_A3),
                        float(haven_ratio), {s: float(v) for s, v in parts.items()})


@dataclass(frozen=True)
class Arrhenius:
    """An Arrhenius fit over a temperature ladder.

    Attributes:
        activation_energy_eV, activation_energy_error_eV: ``E_a`` and its error (eV).
        ln_prefactor, ln_prefactor_error: ``ln A`` (A in the value's unit, times K when ``times_T``).
        times_T: True when ``ln(value * T)`` was fitted (conductivity), False for ``ln(value)`` (D).
        temperatures_K: the ladder; extrapolated_T_K: where the fit was evaluated.
        extrapolated, extrapolated_error: the value there and its error (the value's unit).
    """

    activation_energy_eV: float
    activation_energy_error_eV: float
    ln_prefactor: float
    ln_prefactor_error: float
    times_T: bool
    temperatures_K: list[float]
    extrapolated_T_K: float
    extrapolated: float
    extrapolated_error: float

    def as_dict(self) -> dict:
        return asdict(self)

    def value_at(self, temperature_K: float) -> float:
        """The fitted value at ``temperature_K``."""
        y = self.ln_prefactor - self.activation_energy_eV / (BOLTZMANN_EV_K * temperature_K)
        return float(np.exp(y) / (temperature_K if self.times_T else 1.0))


def arrhenius_fit(temperatures_K: Sequence[float], values: Sequence[float], errors: Sequence[float] | None = None,
                  times_T: bool = True, extrapolate_to_K: float = 300.0) -> Arrhenius:
    """Fit ``ln(value·T) = ln A − E_a/(k_B T)`` (``times_T``, for σ) or ``ln(value) = ln A − E_a/(k_B T)`` (for D).

    With ``errors`` the points are weighted by ``value / error`` (the error of the logarithm) and the
    parameter errors follow from them; without, from the residuals (three temperatures at least).
    The value at ``extrapolate_to_K`` (default 300 K) comes with its error through the covariance of
    slope and intercept.

    Raises:
        ValueError: fewer than two temperatures, non-positive temperatures or values.
    """
    t = np.asarray(temperatures_K, float)
    v = np.asarray(values, float)
    if t.size < 2 or t.size != v.size:
        raise ValueError("an Arrhenius fit needs a value at each of at least two temperatures")
    if np.any(t <= 0) or np.any(v <= 0):
        raise ValueError("Arrhenius temperatures (K) and values must be positive (no diffusion seen at some T?)")
    x = 1.0 / (BOLTZMANN_EV_K * t)
    y = np.log(v * t) if times_T else np.log(v)
    fit = line_fit(x, y, None if errors is None else np.asarray(errors, float) / v)
    y0, y0_err = fit.predict(1.0 / (BOLTZMANN_EV_K * extrapolate_to_K))
    value0 = float(np.exp(y0) / (extrapolate_to_K if times_T else 1.0))
    return Arrhenius(-fit.slope, fit.slope_error, fit.intercept, fit.intercept_error, times_T, t.tolist(),
                     float(extrapolate_to_K), value0, value0 * y0_err)
