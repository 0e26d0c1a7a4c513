"""Exploration step: MD with a committee of DeePMD models, model deviation per saved frame.

Pure science, no FireWorks and no database. Two engines give the same kind of result:

* **LAMMPS** (production): :func:`write_lammps_inputs` writes ``conf.lmp`` and a
  DP-GEN-style ``input.lammps``; :func:`run_lammps` runs ``lmp -in input.lammps`` and
  parses ``model_devi.out`` (written by ``pair_style deepmd``) and ``traj.dump``.
* **ASE** (fallback, no LAMMPS needed): :func:`run_ase_md` drives :mod:`ase.md` with
  deepmd-kit's ASE calculator and computes the deviations with deepmd-kit's own
  :func:`deepmd.infer.model_devi.calc_model_devi`, so both engines agree.

Protocols (:mod:`firegen.campaign.protocols`): an :class:`MDCondition` may carry a
temperature ramp (``temperature_stop``), a fixed ``strain`` of the starting cell, a continuous
``deform`` of the box (LAMMPS ``fix deform``, LAMMPS only) or a ``melt_quench`` recipe (heat,
hold, cool, relax, NPT as consecutive runs); frames of every segment are saved and judged.

In both engines the *first* model drives the dynamics; all models are evaluated on every
saved frame (every ``trj_freq`` steps, step 0 included) to get the deviations.

Units
-----
Our API: lengths Å, energies eV, forces eV/Å, temperatures K, pressures bar,
**time step ``dt`` in fs**, thermostat/barostat damping times ``tau_t``/``tau_p`` in ps.
Inside ``input.lammps`` (LAMMPS ``units metal``) times are in ps, so the time step is
written as ``dt / 1000``.

Model deviation (the columns of ``model_devi.out``, as deepmd-kit writes them)::

    step  max_devi_v  min_devi_v  avg_devi_v  max_devi_f  min_devi_f  avg_devi_f  [devi_e]

* ``*_devi_f`` (eV/Å): per atom ``|std over models of the force vector|``; max / min / mean
  over atoms. ``max_devi_f`` is the number the trust levels are compared with.
* ``*_devi_v`` (eV/atom): std over models of the 9 virial components divided by the number
  of atoms; max / min over components, ``avg`` = norm of the 9 stds / 3.
* ``devi_e`` (eV/atom): std over models of the energy per atom. deepmd-kit's Python
  ``calc_model_devi`` (the ASE engine) writes it; LAMMPS' ``pair_style deepmd`` (checked
  with deepmd-kit 3.2.0) writes only the 7 columns above, so ``devi_e`` is None there.

The force and virial columns agree between the engines to the file's 7 digits (both
normalize the virial deviation by the number of atoms).

Frames are returned as a list of :class:`ase.Atoms` (chemical symbols from the type map,
periodic cell, Cartesian positions in Å, no calculator). Each frame's ``info`` holds
``step``, ``max_devi_f`` (eV/Å) and ``max_devi_v`` (eV/atom). LAMMPS frames are in
LAMMPS' orientation (cell vector a along x, b in the xy plane): a general triclinic start
comes back rotated. Force deviations are rotation invariant; the virial max/min over
components are not, so for a rotated cell they differ slightly between the engines.
"""

from __future__ import annotations

from firegen.workflows.steps.ase_md import run_ase_md
from firegen.workflows.steps.lammps import (find_lmp, lammps_available, read_dump_frames, run_lammps,
                                            write_lammps_inputs)
from firegen.workflows.steps.md import (ENSEMBLES, ExplorationError, ExplorationResult, MDCondition,
                                        parse_model_devi)
from firegen.campaign.protocols import (Segment, apply_strain, condition_key, deformation_gradient,
                                               melt_quench_nsteps, melt_quench_segments)

__all__ = [
    "ENSEMBLES",
    "ExplorationError",
    "ExplorationResult",
    "MDCondition",
    "Segment",
    "apply_strain",
    "condition_key",
    "deformation_gradient",
    "find_lmp",
    "lammps_available",
    "melt_quench_nsteps",
    "melt_quench_segments",
    "parse_model_devi",
    "read_dump_frames",
    "run_ase_md",
    "run_lammps",
    "write_lammps_inputs",
]
