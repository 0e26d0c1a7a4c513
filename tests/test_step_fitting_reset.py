"""`workflows/steps/fitting_reset.fresh_fitting_net`: a frozen model's fitting net drawn afresh from a seed, the
rest of the model kept byte for byte. On a real frozen deepmd-kit model (a few training steps on EMT labels)."""

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT

from firegen.workflows.steps.fitting_reset import FittingResetError, fresh_fitting_net
from firegen.workflows.steps.train import make_training_input, train_model


@pytest.fixture(scope="module")
def frozen(tmp_path_factory):
    import dpdata

    folder = tmp_path_factory.mktemp("fitting-reset")
    frames = []
    for k in range(4):
        atoms = bulk("Cu", "fcc", a=3.615, cubic=True).repeat((2, 2, 1))
        atoms.rattle(0.05, seed=k)
        atoms.calc = EMT()
        atoms.get_forces()
        frames.append(atoms)
    system = dpdata.LabeledSystem(frames[0], fmt="ase/structure", type_map=["Cu"])
    for atoms in frames[1:]:
        system.append(dpdata.LabeledSystem(atoms, fmt="ase/structure", type_map=["Cu"]))
    system.to("deepmd/npy", folder / "data")
    template = {"model": {"fitting_net": {"neuron": [8, 8], "resnet_dt": True}}}
    inputs = make_training_input(template, [folder / "data"], ["Cu"], seed=1, numb_steps=5)
    return train_model(folder / "train", inputs).frozen_model


def _nodes(pb):
    from deepmd.tf.env import tf
    from deepmd.tf.utils.graph import load_graph_def

    return {n.name: tf.make_ndarray(n.attr["value"].tensor) for n in load_graph_def(str(pb))[1].node
            if n.op == "Const"}


def test_only_the_fitting_net_is_redrawn_and_one_seed_gives_one_draw(frozen, tmp_path):
    from deepmd.tf.utils.graph import get_fitting_net_variables

    redrawn = fresh_fitting_net(frozen, tmp_path / "a.pb", seed=7)
    fresh_fitting_net(frozen, tmp_path / "b.pb", seed=7)
    fresh_fitting_net(frozen, tmp_path / "c.pb", seed=8)
    fitting = get_fitting_net_variables(str(frozen))
    assert set(redrawn) == set(fitting) and any(k.endswith("/idt") for k in redrawn)
    old, new = _nodes(frozen), _nodes(tmp_path / "a.pb")
    assert old.keys() == new.keys()
    for name in old.keys() - set(fitting):
        assert np.array_equal(old[name], new[name]), name
    for name in fitting:
        assert new[name].shape == old[name].shape and new[name].dtype == old[name].dtype
        assert not np.array_equal(new[name], old[name]), name
    assert (tmp_path / "a.pb").read_bytes() == (tmp_path / "b.pb").read_bytes()
    assert (tmp_path / "a.pb").read_bytes() != (tmp_path / "c.pb").read_bytes()


def test_the_draw_follows_deepmd_kits_initialisers(frozen, tmp_path):
    fresh_fitting_net(frozen, tmp_path / "a.pb", seed=3)
    new = _nodes(tmp_path / "a.pb")
    matrices = [v for k, v in new.items() if k.startswith("layer_") and k.endswith("/matrix")]
    expected = np.concatenate([m.ravel() * np.sqrt(sum(m.shape)) for m in matrices])  # N(0, 1) once scaled
    assert abs(expected.mean()) < 0.15 and 0.85 < expected.std() < 1.15
    idt = np.concatenate([v.ravel() for k, v in new.items() if k.endswith("/idt")])
    assert abs(idt.mean() - 0.1) < 0.001 and idt.std() < 0.002


def test_a_model_without_a_fitting_net_is_refused(tmp_path):
    from deepmd.tf.env import tf

    graph = tf.Graph()
    with graph.as_default():
        tf.constant(1.0, name="descrpt_attr/rcut")
    (tmp_path / "bare.pb").write_bytes(graph.as_graph_def().SerializeToString())
    with pytest.raises(FittingResetError, match="no fitting-net constant"):
        fresh_fitting_net(tmp_path / "bare.pb", tmp_path / "out.pb", seed=1)
