"""Physics-aware convergence (`converged_when.observables`): the rule on synthetic member measurements and a
synthetic history, the config's one-line errors, the measurements on real trajectories, and the select
step's decision on a real database storing the observables per member and the reason."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT

from firegen.campaign.config import ConfigError, validate_dict
from firegen.campaign.config_observables import ObservableConfig
from firegen.campaign.convergence import decide
from firegen.campaign.observable_rule import observable_status, r_factor
from firegen.workflows.steps.observables import measure, rdf_range
from firegen.workflows.steps.properties_md import PropertyMD, run_property_ase
from firegen.workflows.steps.properties_structure import trajectory_density

MINIMAL = {
    "name": "mini", "type_map": ["Cu"],
    "systems": [{"name": "fcc", "structure": "structures/Cu.vasp", "supercell": 2}],
    "initial_data": {"perturb": {"count": 2}},
    "stages": [{"name": "s1", "ensemble": "nvt", "temperatures": [300], "nsteps": 100, "max_iterations": 4}],
    "labeler": {"kind": "emt"},
}
GOOD = {"accurate_ratio": 0.99, "candidate_ratio": 0.0}
DENSITY = {"property": "density", "temperature": 600, "pressure": 1.0, "tolerance": 0.02}


def config(*observables, **stage):
    raw = copy.deepcopy(MINIMAL)
    raw["stages"][0].update(converged_when={"accurate_ratio": 0.95, "observables": list(observables)}, **stage)
    return validate_dict(raw)


def dens(*values):
    return {f"m{k}": {"value": v, "error": 0.001} for k, v in enumerate(values)}


# the rule ---------------------------------------------------------------------------------------------
def test_density_is_met_only_when_members_agree_and_the_mean_stopped_changing():
    obs = ObservableConfig(**DENSITY)
    met = observable_status(obs, "d", dens(2.00, 2.01), dens(1.99, 2.00), 2)
    assert met["met"] and met["members"] == {"m0": 2.00, "m1": 2.01} and met["mean"] == pytest.approx(2.005)
    assert met["spread"] == pytest.approx(0.01 / 2.005) and met["change"] == pytest.approx(0.01 / 1.995)
    assert met["unit"] == "g/cm³"
    apart = observable_status(obs, "d", dens(2.0, 2.1), dens(2.0, 2.1), 2)
    assert not apart["met"] and "members' spread 0.0488 > 0.02" in apart["why"]
    moving = observable_status(obs, "d", dens(2.00, 2.01), dens(1.80, 1.81), 2)
    assert not moving["met"] and "change since the previous iteration 0.111 > 0.02" in moving["why"]
    first = observable_status(obs, "d", dens(2.00, 2.01), None, 2)
    assert not first["met"] and first["change"] is None and "no earlier iteration" in first["why"]
    partial = observable_status(obs, "d", dens(2.00), dens(2.0, 2.0), 2)
    assert not partial["met"] and "measured by 1 of 2 members" in partial["why"]
    failed = observable_status(obs, "d", {**dens(2.0), "m1": {"error_message": "LAMMPS failed"}}, None, 2)
    assert not failed["met"] and "member 1's run failed (LAMMPS failed)" in failed["why"]


def test_rdf_agreement_and_change_are_r_factors_of_the_curves():
    obs = ObservableConfig(property="rdf", temperature=600, tolerance=0.05)
    r = np.linspace(0.05, 6, 100)

    def g(peak):
        return (1 + 2 * np.exp(-((r - peak) / 0.15) ** 2)).tolist()

    same = {"m0": {"r_A": r.tolist(), "g": g(2.55)}, "m1": {"r_A": r.tolist(), "g": g(2.55)}}
    assert observable_status(obs, "g", same, same, 2)["met"]
    shifted = {"m0": {"r_A": r.tolist(), "g": g(2.45)}, "m1": {"r_A": r.tolist(), "g": g(2.65)}}
    status = observable_status(obs, "g", shifted, shifted, 2)
    mean = [(a + b) / 2 for a, b in zip(g(2.45), g(2.65))]
    assert status["members"]["m0"] == pytest.approx(r_factor(g(2.45), mean)) and not status["met"]
    assert status["mean"] is None and status["unit"] == "R-factor"
    assert r_factor([1.0, 2.0], [1.0, 2.0]) == 0.0 and math.isinf(r_factor([1.0], [0.0]))


def test_a_stage_with_an_observable_converges_when_the_history_settles():
    """A synthetic history: every task is accurate from the start, the density of the two members starts
    apart and settles; the stage converges at the first iteration whose members agree and whose mean moved
    less than the tolerance."""
    cfg = config(DENSITY, max_iterations=5)
    obs = cfg.stages[0].converged_when.observables[0]
    members = [(2.30, 2.00), (2.05, 2.02), (2.03, 2.025), (2.03, 2.03)]
    decisions, previous = [], None
    for k, values in enumerate(members):
        now = dens(*values)
        status = observable_status(obs, "density-fcc-600K-1bar", now, previous, 2)
        decisions.append(decide(0, cfg.stages, [GOOD] * (k + 1), tasks={"fcc|c0": [GOOD] * (k + 1)},
                                observables=[status]))
        previous = now
        if decisions[-1].action != "continue":
            break
    assert [d.action for d in decisions] == ["continue", "continue", "done"]
    # the tasks had converged: the next iteration explores every task again (an empty list means all)
    assert decisions[0].explore == [] and "observables not converged" in decisions[0].reason
    assert "members' spread 0.14 > 0.02" in decisions[0].reason
    assert "change since the previous iteration 0.0535 > 0.02" in decisions[1].reason
    assert decisions[2].stage_status == "converged" and "observables converged" in decisions[2].reason
    assert decisions[2].observables[0]["members"] == {"m0": 2.03, "m1": 2.025}
    without = decide(0, cfg.stages, [GOOD], tasks={"fcc|c0": [GOOD]})  # no observables: the ratio decides alone
    assert without.action == "done"


def test_an_unconverged_observable_ends_the_stage_at_its_limit_with_the_reason():
    cfg = config(DENSITY, max_iterations=2)
    obs = cfg.stages[0].converged_when.observables[0]
    status = observable_status(obs, "density-fcc-600K-1bar", dens(2.3, 2.0), dens(2.3, 2.0), 2)
    end = decide(0, cfg.stages, [GOOD, GOOD], tasks={"fcc|c0": [GOOD, GOOD]}, observables=[status])
    assert (end.action, end.stage_status, end.campaign_status) == ("done", "max_iterations", "max_iterations")
    assert "reached its iteration limit unconverged" in end.reason and "members' spread" in end.reason


# the config ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("observable, stage, line", [
    ({"property": "density", "temperature": 600, "tolerance": 0.02}, {},
     "stages[0].converged_when.observables[0].pressure: is required for density"),
    ({"property": "diffusion", "temperature": 900, "tolerance": 0.2}, {},
     "stages[0].converged_when.observables[0].species: is required for diffusion"),
    ({"property": "diffusion", "species": "Cu", "temperature": 900, "tolerance": 0.2, "production_ps": 0.1}, {},
     "stages[0].converged_when.observables[0].production_ps: gives 11 frames every 10 fs; diffusion needs at least 30"),
    ({"property": "diffusion", "species": "Cu", "temperature": 900, "tolerance": 0.2, "production_ps": 1}, {},
     ("stages[0].converged_when.observables[0].production_ps: is too short for a diffusion coefficient: the MSD is "
      "fitted from 1 ps (past the vibrational transient) in at least 2 blocks, so at least 2.04 ps")),
    ({"property": "rdf", "pair": "Cu-Xx", "temperature": 600, "tolerance": 0.05}, {},
     "stages[0].converged_when.observables[0].pair: names an unknown element"),
    ({"property": "viscosity", "temperature": 600, "tolerance": 0.05}, {},
     "stages[0].converged_when.observables[0].property: must be one of 'density', 'rdf' or 'diffusion'"),
    ({**DENSITY, "tolerance": 0}, {}, "stages[0].converged_when.observables[0].tolerance: must be greater than 0"),
    ({**DENSITY, "system": "bcc"}, {"systems": ["fcc"]},
     "stages[0].converged_when.observables[0].system: is not a system of this stage (got 'bcc')"),
    ({**DENSITY, "species": "Cu"}, {}, "stages[0].converged_when.observables[0].species: is not used by property "
     "'density'"),
])
def test_observable_config_errors_name_the_field(observable, stage, line):
    with pytest.raises(ConfigError) as info:
        config(observable, **stage)
    assert line in str(info.value), str(info.value)


def test_observable_keys_and_protocols():
    cfg = config(DENSITY, {"property": "rdf", "pair": "Cu-Cu", "temperature": 600, "tolerance": 0.05},
                 {"property": "diffusion", "species": "Cu", "temperature": 1200.5, "pressure": 0.1, "tolerance": 0.3})
    keys = [k for k, _, _ in cfg.stages[0].observables()]
    assert keys == ["density-fcc-600K-1bar", "rdf_Cu-Cu-fcc-600K-nvt", "diffusion_Cu-fcc-1200_5K-0_1bar"]
    protocols = [o.protocol() for _, _, o in cfg.stages[0].observables()]
    assert protocols[0]["ensemble"] == "npt" and protocols[1]["ensemble"] == "nvt"
    assert protocols[1]["pressure_bar"] is None and protocols[2]["pressure_bar"] == 0.1


# the measurements ------------------------------------------------------------------------------------
def test_measurements_on_a_real_emt_run_and_a_random_walk():
    start = bulk("Cu", "fcc", a=3.615, cubic=True).repeat(2)
    md = PropertyMD(temperature_K=600.0, pressure_bar=1.0, dt_fs=2.0, equilibration_ps=0.1, production_ps=0.4,
                    sample_fs=10.0, seed=5)
    traj = run_property_ase(start, EMT(), md)
    density = measure(ObservableConfig(**DENSITY), traj.frames, traj.dt_ps, rdf_range(start))
    assert density["value"] == pytest.approx(trajectory_density(traj.frames, 5).density_g_cm3)
    assert 8.4 < density["value"] < 9.2  # g/cm³: EMT copper near 600 K
    rmax = rdf_range(start)
    assert rmax == pytest.approx(0.45 * 2 * 3.615)
    g = measure(ObservableConfig(property="rdf", pair="Cu-Cu", temperature=600, tolerance=0.05), traj.frames,
                traj.dt_ps, rmax)
    assert len(g["g"]) == 100 and g["r_A"][-1] < rmax and g["first_peak_A"] == pytest.approx(2.55, abs=0.12)

    rng = np.random.default_rng(3)
    d_true = 0.05  # Å²/ps = 5e-6 cm²/s
    # 10 ps: the MSD is fitted from 1-ps lags (past a solid's vibrational transient), so a 4-ps walk left a
    # 1.0-1.3 ps window and a value 30 % off (within its error bar of 24 %); 10 ps gives 1-2 ps on 5 blocks
    steps = rng.normal(0.0, math.sqrt(2 * d_true * 0.01), size=(1000, len(start), 3))
    frames = []
    for pos in start.positions + np.cumsum(steps, axis=0):
        atoms = start.copy()
        atoms.positions = pos
        frames.append(atoms)
    d = measure(ObservableConfig(property="diffusion", species="Cu", temperature=600, tolerance=0.2), frames, 0.01,
                rmax)
    assert d["value"] == pytest.approx(d_true * 1e-4, rel=0.25)
    assert 0 < d["error"] and abs(d["value"] - d_true * 1e-4) < 3 * d["error"]


# a real campaign ------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_a_real_campaign_waits_for_its_observable_and_stores_it_per_member(tmp_path):
    """fcc Cu with EMT labels, a committee of 2, one task that is accurate enough at once
    (accurate_ratio 0.01): the stage still runs a second iteration because its density at 600 K / 1 bar has
    nothing to compare with after the first; every member measures it on its own NPT run (LAMMPS, deepmd)."""
    from campaign_helpers import campaign_db, firegen, small_cu_config

    observable = {"property": "density", "temperature": 600, "pressure": 1.0, "tolerance": 0.5,
                  "equilibration_ps": 0.2, "production_ps": 1.0, "sample_fs": 20.0}
    config = small_cu_config(tmp_path, "cu-obs", stage={
        "temperatures": [600], "max_iterations": 3,
        "converged_when": {"accurate_ratio": 0.01, "observables": [observable]}})
    try:
        run = firegen(tmp_path, "run", str(config), "--timeout", "1200", timeout=1300)
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
        db = campaign_db(tmp_path)
        its = list(db.iterations.find({"campaign": "cu-obs", "decision": {"$ne": None}}).sort("index", 1))
        key = "density-fcc-600K-1bar"
        first = its[0]
        assert first["decision"]["action"] == "continue" and first["decision"]["tasks"] == {"fcc|c0": "converged"}
        assert "no earlier iteration of the stage to compare with" in first["decision"]["reason"]
        for it in its:
            measured = it["observables"][key]
            assert sorted(measured) == ["m0", "m1"] and it["timings"]["observe_s"] > 0
            status, = it["decision"]["observables"]
            assert status["key"] == key and status["unit"] == "g/cm³"
            for m, x in measured.items():
                assert "error_message" not in x, x
                assert x["engine"] == "lammps" and x["seed"] == measured["m0"]["seed"]  # one seed for all members
                assert status["members"][m] == x["value"] and 5.0 < x["value"] < 12.0  # g/cm³, Cu near 8.9
        second = its[1]
        change = abs(second["decision"]["observables"][0]["mean"] - first["decision"]["observables"][0]["mean"])
        assert second["decision"]["observables"][0]["change"] == pytest.approx(
            change / first["decision"]["observables"][0]["mean"])
        assert second["observables"][key]["m0"]["seed"] == first["observables"][key]["m0"]["seed"]
        if second["decision"]["observables"][0]["met"]:
            assert second["decision"]["stage_status"] == "converged"
            assert "observables converged (density-fcc-600K-1bar" in second["decision"]["reason"]
    finally:
        firegen(tmp_path, "db", "down")


def test_observables_name_elements_of_type_map_and_systems_the_stage_explores():
    diffusion = {"property": "diffusion", "species": "Na", "temperature": 900, "tolerance": 0.3, "production_ps": 3}
    with pytest.raises(ConfigError) as info:
        config(diffusion, {"property": "rdf", "pair": "Cu-Cl", "temperature": 900, "tolerance": 0.3},
               {**DENSITY, "system": "bcc"})
    lines = str(info.value).splitlines()
    assert lines == [
        "<config>: stages[0].converged_when.observables[0].species: names an element not in type_map (got 'Na'). "
        "Fix: use elements of type_map: Cu.",
        "<config>: stages[0].converged_when.observables[1].pair: names an element not in type_map (got 'Cu-Cl'). "
        "Fix: use elements of type_map: Cu.",
        "<config>: stages[0].converged_when.observables[2].system: is not a system of this stage (got 'bcc'). "
        "Fix: use one of: fcc."]
