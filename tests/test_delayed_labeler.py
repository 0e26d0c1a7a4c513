"""The heavy-tailed labeler (kind ``delayed``): the inner labeler's label, after a seeded log-normal delay that
depends on the structure and the seed only, with p99/p50 as asked; simulated failures hit the same structures
every time; bad settings name the setting."""

import hashlib

import numpy as np
import pytest
from ase.build import bulk

from firegen.workflows.steps.delayed_labeler import SimulatedLabelFailure, draw, structure_key
from firegen.workflows.steps.label import get_labeler, label_many


def _frames(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    base = bulk("Cu", "fcc", 3.6, cubic=True)
    frames = []
    for _ in range(n):
        a = base.copy()
        a.positions += rng.normal(0, 0.05, a.positions.shape)
        frames.append(a)
    return frames


def test_the_label_is_the_inner_labelers_and_the_delay_depends_on_the_structure_and_seed_only():
    frames = _frames(6)
    delayed = get_labeler("delayed", {"labeler": "emt", "median_s": 0.02, "seed": 7})
    emt = get_labeler("emt")
    forward = [delayed.delay(a) for a in frames]
    assert [delayed.delay(a) for a in reversed(frames)] == forward[::-1]  # not the order of the calls
    other_seed = get_labeler("delayed", {"labeler": "emt", "median_s": 0.02, "seed": 8})
    assert [other_seed.delay(a) for a in frames] != forward
    labels = label_many(delayed, frames[:2])
    for a, lab in zip(frames[:2], labels):
        ref = emt.label(a)
        assert lab.energy == ref.energy and np.array_equal(lab.forces, ref.forces)
        assert lab.code == "ase-EMT" and lab.kind == "delayed" and lab.settings["labeler"] == "emt"
        assert lab.walltime >= delayed.delay(a)[0]  # it waited its delay


def test_delays_are_log_normal_with_the_asked_median_and_tail():
    keys = [hashlib.sha256(str(i).encode()).digest() for i in range(20000)]
    delays = np.array([draw(k, 1, 2.0, 20.0, 0.0)[0] for k in keys])
    p50, p99 = np.percentile(delays, [50, 99])
    assert p50 == pytest.approx(2.0, rel=0.05)
    assert p99 / p50 == pytest.approx(20.0, rel=0.15)
    assert np.allclose(np.std(np.log(delays)), np.log(20.0) / 2.3263, rtol=0.03)
    constant = {draw(k, 1, 2.0, 1.0, 0.0)[0] for k in keys[:50]}
    assert constant == {2.0}


def test_simulated_failures_hit_a_fixed_share_of_structures_every_time():
    frames = _frames(200, seed=1)
    labeler = get_labeler("delayed", {"labeler": "emt", "median_s": 0.0, "seed": 0, "failure_rate": 0.3})
    fails = [labeler.delay(a)[1] for a in frames]
    assert 0.2 < np.mean(fails) < 0.4
    bad = frames[fails.index(True)]
    good = frames[fails.index(False)]
    for _ in range(2):
        with pytest.raises(SimulatedLabelFailure, match="simulated failure"):
            labeler.label(bad)
        assert labeler.label(good).energy == get_labeler("emt").label(good).energy
    assert structure_key(bad) != structure_key(good)


@pytest.mark.parametrize("settings, named", [
    ({}, "'labeler'"),
    ({"labeler": "emt", "median_s": -1}, "'median_s'"),
    ({"labeler": "emt", "p99_over_p50": 0.5}, "'p99_over_p50'"),
    ({"labeler": "emt", "failure_rate": 1.0}, "'failure_rate'"),
    ({"labeler": "emt", "seed": 1.5}, "'seed'"),
    ({"labeler": "emt", "median": 1}, "'median'"),
    ({"labeler": "delayed"}, "another kind"),
    ({"labeler": "emt", "settings": {"cutoff": 1}}, "'cutoff'"),
])
def test_bad_settings_name_the_setting(settings, named):
    with pytest.raises(ValueError, match=named):
        get_labeler("delayed", settings)
