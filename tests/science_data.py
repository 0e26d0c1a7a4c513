"""Small, real science data for tests: EMT-labeled fcc Cu and tiny DeePMD models.

Plain helper functions (not fixtures) so any test module can import them::

    from science_data import make_emt_dataset, train_tiny_model

Units follow DeePMD-kit conventions: energies in eV, forces in eV/Å, virials in eV
(virial = -stress * volume, a 3x3 tensor per frame), lengths in Å.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

#: Lattice constant of fcc Cu used for the test data (Å).
CU_LATTICE_A = 3.61
#: Type map of the test data.
CU_TYPE_MAP = ["Cu"]

#: Tiny network used by :func:`train_tiny_model`: fast on 2 CPU cores, still a real model.
TINY_TEMPLATE = {
    "model": {
        "descriptor": {
            "type": "se_e2_a",
            "sel": "auto",
            "rcut": 5.0,
            "rcut_smth": 2.0,
            "neuron": [10, 20],
            "axis_neuron": 4,
        },
        "fitting_net": {"neuron": [20, 20]},
    },
    "learning_rate": {"type": "exp", "start_lr": 0.005, "stop_lr": 1e-4},
}


def make_emt_dataset(
    out_dir: Path,
    n_frames: int = 20,
    seed: int = 0,
    supercell: tuple[int, int, int] = (2, 2, 2),
    displacement: float = 0.05,
    strain: float = 0.02,
) -> Path:
    """Build an EMT-labeled fcc Cu dataset and write it as ``deepmd/npy``.

    Each frame is the cubic fcc Cu cell (a = 3.61 Å) repeated ``supercell`` times
    (2x2x2 = 32 atoms), with a random symmetric strain of up to ``strain`` on the cell
    and Gaussian random displacements of the atoms, labeled by ASE's EMT calculator.

    Args:
        out_dir (Path): Folder to write the system into (created; ``type.raw``,
            ``type_map.raw`` and ``set.000/`` end up directly in it).
        n_frames (int): Number of frames.
        seed (int): Seed of the random strains and displacements.
        supercell (tuple[int, int, int]): Repetitions of the 4-atom cubic cell.
        displacement (float): Standard deviation of the atomic displacements (Å).
        strain (float): Maximum absolute component of the random strain (dimensionless).

    Returns:
        Path: ``out_dir``, a ``deepmd/npy`` system with energies (eV), forces (eV/Å)
        and virials (eV); type map ``["Cu"]``.
    """
    import dpdata
    from ase.build import bulk
    from ase.calculators.emt import EMT

    out_dir = Path(out_dir)
    rng = np.random.default_rng(seed)
    base = bulk("Cu", "fcc", a=CU_LATTICE_A, cubic=True).repeat(supercell)
    frames = None
    for _ in range(n_frames):
        atoms = base.copy()
        eps = rng.uniform(-strain, strain, size=(3, 3))
        eps = 0.5 * (eps + eps.T)
        atoms.set_cell(atoms.cell[:] @ (np.eye(3) + eps), scale_atoms=True)
        atoms.positions += rng.normal(0.0, displacement, size=atoms.positions.shape)
        atoms.calc = EMT()
        # dpdata's ase/structure format reads energy, forces and the stress, and
        # converts the stress to the DeePMD virial: -stress * volume (eV).
        frame = dpdata.LabeledSystem(atoms, fmt="ase/structure", type_map=CU_TYPE_MAP)
        if frames is None:
            frames = frame
        else:
            frames.append(frame)
    assert frames is not None and "virials" in frames.data
    frames.to("deepmd/npy", str(out_dir))
    return out_dir


def train_tiny_model(
    workdir: Path,
    data_dir: Path | list[Path],
    seed: int,
    steps: int = 100,
    init_model: Path | None = None,
) -> Path:
    """Train and freeze a tiny DeePMD model (TensorFlow backend) in a few seconds.

    Args:
        workdir (Path): Training folder (created).
        data_dir (Path | list[Path]): One or more ``deepmd/npy`` systems of Cu.
        seed (int): Seed of the model (descriptor, fitting net and training).
        steps (int): Number of training steps.
        init_model (Path | None): Frozen model to initialize from.

    Returns:
        Path: The frozen model (``frozen_model.pb``).
    """
    from firegen.workflows.steps.train import make_training_input, train_model

    dirs = [data_dir] if isinstance(data_dir, (str, Path)) else list(data_dir)
    input_dict = make_training_input(
        TINY_TEMPLATE,
        train_systems=[str(d) for d in dirs],
        type_map=CU_TYPE_MAP,
        seed=seed,
        numb_steps=steps,
    )
    return train_model(Path(workdir), input_dict, init_model=init_model).frozen_model
