"""The property analyses on trajectories with known answers: an ideal gas and crystals for the RDF, a
random walk with a known D for the MSD fit, a synthetic Arrhenius set, a crystal's density, and the
Nernst–Einstein conductivity against the textbook formula in other units."""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk

from firegen.workflows.steps.properties_stats import block_average, line_fit
from firegen.workflows.steps.properties_structure import density, rdf, rdf_difference, trajectory_density
from firegen.workflows.steps.properties_transport import (BOLTZMANN_EV_K, Diffusion, arrhenius_fit,
                                                          diffusion_coefficients, is_diffusive, mean_squared_displacement,
                                                          nernst_einstein)


def _coordination(result, pair: str, rho_b: float, r_cut: float) -> float:
    """Neighbours of type B within ``r_cut`` of an A atom: ρ_B ∫ 4π r² g_AB(r) dr."""
    r = np.asarray(result.r_A)
    g = np.asarray(result.partial[pair] if pair != "total" else result.total)
    dr = r[1] - r[0]
    inside = r < r_cut
    return float(np.sum(4 * np.pi * r[inside] ** 2 * g[inside] * dr) * rho_b)


# ---- RDF ----------------------------------------------------------------------------------------------------
def test_rdf_of_an_ideal_gas_is_one_for_every_pair():
    rng = np.random.default_rng(0)
    box = 20.0
    frames = [Atoms(["Na"] * 300 + ["Cl"] * 300, positions=rng.uniform(0, box, (600, 3)), cell=[box] * 3, pbc=True)
              for _ in range(4)]
    result = rdf(frames, rmax_A=9.0, nbins=30)
    r = np.asarray(result.r_A)
    far = r > 2.0  # the first bins hold too few pairs to say anything
    assert result.n_frames == 4 and set(result.partial) == {"Na-Na", "Na-Cl", "Cl-Cl"}
    for name, g in [("total", result.total), *result.partial.items()]:
        g = np.asarray(g)[far]
        assert abs(g.mean() - 1.0) < 0.02, name
        assert np.max(np.abs(g - 1.0)) < 0.15, name


def test_rdf_of_fcc_copper_peaks_at_its_neighbour_shells_with_twelve_nearest_neighbours():
    a = 3.61
    crystal = bulk("Cu", "fcc", a=a, cubic=True).repeat(4)  # 256 atoms, 14.44 Å box
    rng = np.random.default_rng(1)
    frames = []
    for _ in range(3):  # a slightly vibrating crystal
        atoms = crystal.copy()
        atoms.positions += rng.normal(0, 0.03, atoms.positions.shape)
        frames.append(atoms)
    result = rdf(frames, rmax_A=7.0, nbins=350)
    r = np.asarray(result.r_A)
    g = np.asarray(result.total)
    assert result.first_peak_A["Cu-Cu"] == pytest.approx(a / np.sqrt(2), abs=0.03)
    assert np.all(g[r < 2.3] == 0)  # nothing closer than the first shell
    shells = a * np.sqrt([0.5, 1.0, 1.5, 2.0])  # 2.553, 3.61, 4.421, 5.105 Å
    for shell in shells:  # a peak at each shell, empty space between the first two
        near = np.abs(r - shell) < 0.1
        assert g[near].max() > 2, shell
    assert np.all(g[(r > 2.8) & (r < 3.35)] == 0)
    rho = len(crystal) / crystal.cell.volume
    assert _coordination(result, "total", rho, 3.0) == pytest.approx(12, abs=0.05)
    assert _coordination(result, "total", rho, 4.0) == pytest.approx(18, abs=0.05)


def test_partial_rdfs_of_rock_salt_find_six_unlike_and_twelve_like_neighbours():
    a = 5.64
    crystal = bulk("NaCl", "rocksalt", a=a, cubic=True).repeat(3)  # 216 atoms, 16.92 Å box
    result = rdf([crystal], rmax_A=6.0, nbins=600)
    assert result.first_peak_A["Na-Cl"] == pytest.approx(a / 2, abs=0.01)
    assert result.first_peak_A["Na-Na"] == pytest.approx(a / np.sqrt(2), abs=0.01)
    assert result.first_peak_A["Cl-Cl"] == pytest.approx(a / np.sqrt(2), abs=0.01)
    r = np.asarray(result.r_A)
    assert np.all(np.asarray(result.partial["Na-Na"])[r < 3.5] == 0)  # like ions never at a/2
    rho_half = len(crystal) / 2 / crystal.cell.volume
    assert _coordination(result, "Na-Cl", rho_half, 3.2) == pytest.approx(6, abs=0.02)
    assert _coordination(result, "Na-Na", rho_half, 4.2) == pytest.approx(12, abs=0.02)
    mix = 0.25 * np.asarray(result.partial["Na-Na"]) + 0.25 * np.asarray(result.partial["Cl-Cl"]) \
        + 0.5 * np.asarray(result.partial["Na-Cl"])  # g = sum_ab c_a c_b g_ab
    assert np.allclose(result.total, mix)
    diff = rdf_difference(result.r_A, result.total, result.total)
    assert diff == {"integrated_abs_difference_A": 0.0, "r_factor": 0.0}


def test_rdf_refuses_a_radius_the_cell_cannot_hold():
    crystal = bulk("Cu", "fcc", a=3.61, cubic=True).repeat(2)  # 7.22 Å box
    with pytest.raises(ValueError, match="half the smallest cell height"):
        rdf([crystal], rmax_A=4.0)
    assert rdf([crystal]).rmax_A == pytest.approx(3.61, abs=1e-6)  # the default fits the cell


# ---- density ------------------------------------------------------------------------------------------------
def test_density_of_fcc_copper_is_its_textbook_value():
    crystal = bulk("Cu", "fcc", a=3.615, cubic=True).repeat(3)
    result = trajectory_density([crystal] * 10)
    assert result.density_g_cm3 == pytest.approx(8.93, abs=0.01)  # 4 x 63.546 amu / (3.615 Å)³
    assert result.error_g_cm3 == 0.0 and result.n_frames == 10 and result.n_blocks == 5


def test_density_error_bar_covers_the_scatter_of_uncorrelated_volumes():
    rng = np.random.default_rng(2)
    volumes = rng.normal(1000.0, 10.0, 5000)
    result = density(volumes, 600.0)
    samples = 1.66053906660 * 600.0 / volumes
    naive = samples.std(ddof=1) / np.sqrt(samples.size)
    assert 0.3 * naive < result.error_g_cm3 < 3 * naive
    assert abs(result.density_g_cm3 - 0.99632) < 4 * result.error_g_cm3  # 1.66054 * 600 / 1000


def test_block_error_sees_correlation_that_the_naive_error_misses():
    rng = np.random.default_rng(3)
    x = np.zeros(20000)
    for i in range(1, x.size):  # AR(1), correlation time ~ 100 samples
        x[i] = 0.99 * x[i - 1] + rng.normal()
    naive = x.std(ddof=1) / np.sqrt(x.size)
    assert block_average(x, 10).error > 4 * naive


def test_weighted_line_fit_recovers_slope_and_intercept():
    x = np.array([1.0, 2.0, 3.0, 4.0])
    fit = line_fit(x, 2.0 - 3.0 * x, np.full(4, 0.1))
    assert fit.slope == pytest.approx(-3.0) and fit.intercept == pytest.approx(2.0)
    assert fit.predict(0.0)[0] == pytest.approx(2.0)
    with pytest.raises(ValueError, match="three points"):
        line_fit([1.0, 2.0], [1.0, 2.0])


# ---- MSD and diffusion --------------------------------------------------------------------------------------
def _random_walk(rng, n_frames: int, n_atoms: int, d_A2_ps: float, dt_ps: float) -> np.ndarray:
    """Gaussian random walk: per component, per step, variance 2 D dt."""
    steps = rng.normal(0.0, np.sqrt(2 * d_A2_ps * dt_ps), (n_frames - 1, n_atoms, 3))
    return np.concatenate([np.zeros((1, n_atoms, 3)), np.cumsum(steps, axis=0)]) + rng.uniform(0, 10, (1, n_atoms, 3))


def test_random_walk_gives_back_its_diffusion_coefficient_with_an_honest_error():
    rng = np.random.default_rng(4)
    dt = 0.1  # ps
    fast = _random_walk(rng, 2000, 60, 0.1, dt)    # D = 0.1 Å²/ps = 1e-5 cm²/s
    slow = _random_walk(rng, 2000, 60, 0.002, dt)  # D = 2e-7 cm²/s
    positions = np.concatenate([fast, slow], axis=1)
    symbols = ["Li"] * 60 + ["O"] * 60
    result = diffusion_coefficients(positions, symbols, dt)
    li, o = result["Li"], result["O"]
    assert abs(li.D_cm2_s - 1e-5) < 3 * li.error_cm2_s and li.error_cm2_s < 0.15e-5
    assert abs(o.D_cm2_s - 2e-7) < 3 * o.error_cm2_s and o.error_cm2_s < 0.15 * 2e-7
    assert li.n_atoms == 60 and len(li.block_D_cm2_s) == 5
    assert li.fit_start_ps == pytest.approx(0.1 * 399 * dt, abs=dt) and li.fit_end_ps == pytest.approx(0.5 * 399 * dt, abs=dt)
    msd = mean_squared_displacement(positions, symbols, dt, max_lag=100)
    assert msd.msd_A2["Li"][0] == 0.0
    assert msd.msd_A2["Li"][100] == pytest.approx(6 * 0.1 * 10.0, rel=0.1)  # 6 D t at t = 10 ps


def test_drift_of_the_whole_cell_is_removed_when_masses_are_given():
    rng = np.random.default_rng(5)
    dt = 0.1
    positions = _random_walk(rng, 1000, 50, 0.05, dt)
    drifted = positions + (np.arange(1000) * 0.05)[:, None, None]  # the whole cell flows at 0.5 Å/ps
    symbols = ["Na"] * 50
    plain = diffusion_coefficients(drifted, symbols, dt)["Na"]
    corrected = diffusion_coefficients(drifted, symbols, dt, masses=[23.0] * 50)["Na"]
    # the centre of mass of 50 walkers moves by itself too (D/50): the corrected value is that much lower
    assert abs(corrected.D_cm2_s - 0.05e-4 * (1 - 1 / 50)) < 3 * corrected.error_cm2_s
    assert plain.D_cm2_s > 2 * corrected.D_cm2_s


def test_diffusion_refuses_a_fit_window_longer_than_a_block():
    positions = np.zeros((100, 2, 3))
    with pytest.raises(ValueError, match="longer than one block"):
        diffusion_coefficients(positions, ["Li", "Li"], 0.1, fit_window_ps=(0.5, 5.0))


def _vibrating_crystal(rng, n_atoms: int, ps: float, temperature_K: float, sample_fs: float = 10.0) -> np.ndarray:
    """Atoms vibrating about fixed sites (so D = 0 exactly): independent 3D Langevin harmonic oscillators of Cu
    mass, frequencies 2-8 THz (a phonon band), friction 5 /ps, at ``temperature_K``; integrated with BAOAB at
    2 fs and sampled every ``sample_fs``. Positions (Å), shape (frames, atoms, 3)."""
    kT = 8.617333262e-5 * temperature_K  # eV
    mass = 63.546 * 1.0364269e-4  # eV ps²/Å²
    omega = 2 * np.pi * rng.uniform(2.0, 8.0, (n_atoms, 1))  # rad/ps
    dt, gamma = 0.002, 5.0  # ps, 1/ps
    u = rng.normal(0, 1, (n_atoms, 3)) * np.sqrt(kT / (mass * omega ** 2))  # Å, from the site
    v = rng.normal(0, np.sqrt(kT / mass), (n_atoms, 3))  # Å/ps
    c1 = np.exp(-gamma * dt)
    c2 = np.sqrt((1 - c1 ** 2) * kT / mass)
    every = round(sample_fs / 1000 / dt)
    out = [u.copy()]
    for step in range(1, round(ps / dt) + 1):
        v -= 0.5 * dt * omega ** 2 * u
        u += 0.5 * dt * v
        v = c1 * v + c2 * rng.normal(size=v.shape)
        u += 0.5 * dt * v
        v -= 0.5 * dt * omega ** 2 * u
        if step % every == 0:
            out.append(u.copy())
    return np.array(out) + rng.uniform(0, 14.4, (1, n_atoms, 3))  # the sites


def test_a_vibrating_crystal_has_no_diffusion_within_its_error_and_a_walker_on_it_keeps_its_d():
    rng = np.random.default_rng(0)
    dt = 0.01  # ps
    crystal = _vibrating_crystal(rng, 128, 5.0, 600.0)  # 5 ps, 501 frames: the runs of the finding
    symbols, masses = ["Cu"] * 128, [63.546] * 128
    # the 10-50 % window of a 1-ps block (0.1-0.5 ps) sits on the vibrational transient: a slope many block
    # errors from 0 (what fcc Cu gave), which the block error cannot see since every block has the same shape
    early = diffusion_coefficients(crystal, symbols, dt, masses=masses, fit_window_ps=(0.099, 0.495))["Cu"]
    assert abs(early.D_cm2_s) > 3 * early.error_cm2_s
    d = diffusion_coefficients(crystal, symbols, dt, masses=masses)["Cu"]  # the default window, from 1 ps
    assert d.fit_start_ps == pytest.approx(1.0) and d.fit_end_ps == pytest.approx(1.66)
    assert len(d.block_D_cm2_s) == 3  # 1-ps blocks cannot hold a window from 1 ps, 0.5 ps wide: 3 of 1.67 ps (lags to 1.66)
    assert abs(d.D_cm2_s) <= 2 * d.error_cm2_s  # D = 0 within its error
    assert d.error_cm2_s < 1e-6  # cm²/s: and the error resolves a diffusing ion (Na at 600 K: ~1e-5)
    # the same vibrations carried by a random walk of D = 0.1 Å²/ps = 1e-5 cm²/s: recovered
    steps = rng.normal(0.0, np.sqrt(2 * 0.1 * dt), (crystal.shape[0] - 1, 128, 3))
    walker = crystal + np.concatenate([np.zeros((1, 128, 3)), np.cumsum(steps, axis=0)])
    w = diffusion_coefficients(walker, symbols, dt, masses=masses)["Cu"]
    expected = 1e-5 * (1 - 1 / 128)  # the centre of mass's own walk is removed
    assert abs(w.D_cm2_s - expected) < 3 * w.error_cm2_s and abs(w.D_cm2_s - expected) < 0.2 * expected
    # the crystal's slope is no diffusion coefficient, the walker's is
    assert not d.diffusive and abs(d.msd_exponent) < 0.1
    assert w.diffusive and 0.8 < w.msd_exponent < 1.1


def test_a_plateau_with_a_significant_slope_is_flagged_not_diffusive():
    """A crystal whose atoms creep (a walk of D = 1e-3 Å²/ps = 1e-7 cm²/s on the vibrations, 20 ps sampled every
    20 fs as validate_properties.py's runs): the slope is many block errors above 0, but the MSD in the window is
    still its vibrational plateau (log-log slope about 0.1, not 1), so it is flagged; a walk 100 times faster on the
    same vibrations, and a plain random walk, are diffusive with log-log slopes near 1."""
    rng = np.random.default_rng(0)
    dt = 0.02  # ps
    crystal = _vibrating_crystal(rng, 128, 20.0, 600.0, sample_fs=20.0)
    symbols, masses = ["Cu"] * 128, [63.546] * 128

    def walking(d_A2_ps):
        steps = rng.normal(0.0, np.sqrt(2 * d_A2_ps * dt), (crystal.shape[0] - 1, 128, 3))
        return crystal + np.concatenate([np.zeros((1, 128, 3)), np.cumsum(steps, axis=0)])

    plain = diffusion_coefficients(crystal, symbols, dt, masses=masses)["Cu"]
    assert (plain.fit_start_ps, plain.fit_end_ps) == pytest.approx((1.0, 2.0)) and not plain.diffusive
    creep = diffusion_coefficients(walking(1e-3), symbols, dt, masses=masses)["Cu"]
    assert creep.D_cm2_s > 4 * creep.error_cm2_s  # significant ...
    assert creep.msd_exponent < 0.2 and not creep.diffusive  # ... but no diffusive regime
    liquid = diffusion_coefficients(walking(0.1), symbols, dt, masses=masses)["Cu"]
    assert liquid.diffusive and 0.9 < liquid.msd_exponent < 1.1
    walk = diffusion_coefficients(_random_walk(rng, 1000, 64, 0.1, dt), ["Cu"] * 64, dt)["Cu"]
    assert walk.diffusive and walk.msd_exponent == pytest.approx(1.0, abs=0.1)
    assert not is_diffusive(-4.3e-8, 0.42e-8, 1.0) and not is_diffusive(1e-5, 0.5e-5, 1.0)  # not 3 errors above 0
    assert not is_diffusive(1e-5, 1e-7, 1.9) and is_diffusive(1e-5, 1e-7, 0.6)  # ballistic; mostly linear


def test_diffusion_refuses_a_run_too_short_to_fit_past_the_vibrational_transient():
    from firegen.campaign.config_observables import DIFFUSION_FIT_START_PS
    from firegen.workflows.steps.properties_transport import MIN_FIT_START_PS

    assert DIFFUSION_FIT_START_PS == MIN_FIT_START_PS  # the config's check of production_ps uses the same start
    positions = np.random.default_rng(7).normal(0, 0.1, (151, 4, 3))  # 1.5 ps of 10 fs frames
    with pytest.raises(ValueError, match="too short for a diffusion coefficient"):
        diffusion_coefficients(positions, ["Li"] * 4, 0.01)
    two = diffusion_coefficients(np.concatenate([positions, positions[1:]]), ["Li"] * 4, 0.01)["Li"]  # 3 ps
    assert len(two.block_D_cm2_s) == 2 and two.fit_start_ps == pytest.approx(1.0)


# ---- conductivity and Arrhenius ----------------------------------------------------------------------------
def test_nernst_einstein_matches_n_q2_d_over_kt():
    d = {"Na": Diffusion("Na", 1e-5, 1e-6, [], 0, 1, 100), "Cl": Diffusion("Cl", 2e-6, 1e-7, [], 0, 1, 50)}
    result = nernst_einstein(d, {"Na": 100, "Cl": 50}, {"Na": 1}, volume_A3=1e4, temperature_K=300.0)
    n_per_cm3 = 100 / 1e-20  # 100 ions in 1e4 Å³ = 1e-20 cm³
    kt_j = 1.380649e-23 * 300.0
    expected = n_per_cm3 * 1.602176634e-19 ** 2 * 1e-5 / kt_j  # S/cm
    assert result.sigma_S_cm == pytest.approx(expected, rel=1e-9)
    assert result.error_S_cm == pytest.approx(0.1 * expected, rel=1e-9)
    assert set(result.contributions_S_cm) == {"Na"}
    both = nernst_einstein(d, {"Na": 100, "Cl": 50}, {"Na": 1, "Cl": -1}, 1e4, 300.0, haven_ratio=2.0)
    assert both.sigma_S_cm == pytest.approx(expected * (1 + 0.5 * 0.2) / 2, rel=1e-9)
    with pytest.raises(ValueError, match="no diffusion coefficient"):
        nernst_einstein(d, {"Na": 100}, {"O": -2}, 1e4, 300.0)


def test_arrhenius_fit_recovers_activation_energy_and_the_room_temperature_value():
    ea, prefactor = 0.30, 5e3  # eV, S K/cm
    temps = np.array([500.0, 600.0, 700.0, 800.0, 900.0])
    exact = prefactor / temps * np.exp(-ea / (BOLTZMANN_EV_K * temps))
    fit = arrhenius_fit(temps, exact, errors=exact * 1e-6)
    assert fit.activation_energy_eV == pytest.approx(ea, rel=1e-6)
    assert fit.extrapolated == pytest.approx(prefactor / 300 * np.exp(-ea / (BOLTZMANN_EV_K * 300)), rel=1e-5)
    rng = np.random.default_rng(6)
    noisy = exact * (1 + rng.normal(0, 0.05, temps.size))
    fit = arrhenius_fit(temps, noisy, errors=0.05 * noisy)
    truth300 = prefactor / 300 * np.exp(-ea / (BOLTZMANN_EV_K * 300))
    assert abs(fit.activation_energy_eV - ea) < 3 * fit.activation_energy_error_eV
    assert 0.005 < fit.activation_energy_error_eV < 0.05
    assert abs(fit.extrapolated - truth300) < 3 * fit.extrapolated_error
    assert fit.value_at(600.0) == pytest.approx(noisy[1], rel=0.15)
    d_fit = arrhenius_fit(temps, 1e-3 * np.exp(-0.2 / (BOLTZMANN_EV_K * temps)), times_T=False)
    assert d_fit.activation_energy_eV == pytest.approx(0.2, rel=1e-9)
    with pytest.raises(ValueError, match="positive"):
        arrhenius_fit([500.0, 600.0], [1e-3, 0.0])
