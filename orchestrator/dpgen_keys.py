"""What each DP-GEN ``param.json`` key becomes in firegen: the table below, and the key sets and names
:mod:`firegen.orchestrator.dpgen_import` converts and reports by.

Mapping (DP-GEN key → firegen field):

====================================  =====================================================================
DP-GEN                                firegen
====================================  =====================================================================
type_map                              type_map
mass_map                              masses ("auto" → ase's masses)
init_data_prefix + init_data_sys      initial_data.deepmd_npy (relative to the YAML's folder); with
                                      ``run_dir``: initial_data.imported {source: dpgen, dpgen_iteration:
                                      null} (absolute). HDF5 init data: unsupported
sys_configs (+ sys_configs_prefix)    systems: one per matched file, named ``sys<i>-<jjj>`` (i = the
                                      sys_configs index, jjj = the file's rank in the sorted matches)
sys_format                            systems[].fmt: ``dpdata:<fmt>`` (default ``dpdata:vasp/poscar``)
numb_models                           committee.size
default_training_param                committee.training (what firegen owns is dropped: systems, seeds,
                                      type_map; v1 ``batch_size`` → training_data.batch_size), its
                                      ``training.numb_steps`` (or ``stop_batch``) → committee.numb_steps;
                                      a per-member list: only when all members are equal
train_backend                         committee.backend (tensorflow; pytorch is unsupported for now)
training_init_model                   committee.warm_start: {enabled: true} (from iteration 1, same settings)
training_reuse_iter and               committee.warm_start: {from_iteration, numb_steps, start_lr,
training_reuse_numb_steps (stop_batch) start_pref_e, start_pref_f}; neither key: warm_start.enabled false;
                                      with either, poor_above: null (every member from its own model);
/start_lr/start_pref_e/start_pref_f   training_reuse_old_ratio, training_iter0_model_path,
                                      training_init_frozen_model, training_finetune_model: unsupported
model_devi_jobs                       stages: each job, or each run of consecutive identical jobs, is
                                      one stage ``job<aaa>[-<bbb>]`` with max_iterations = the number of
                                      jobs (DP-GEN runs each job exactly once) and converged_when
                                      .accurate_ratio = fp_accurate_threshold (1.0 when not given:
                                      the stage then runs all its iterations unless every frame is
                                      accurate)
  .sys_idx                            stages[].systems (every file of those sys_configs entries)
  .temps / .press                     temperatures (K) / pressures (bar; npt ensembles only)
  .ensemble                           nvt → nvt; npt, npt-i, npt-iso → npt; npt-a, npt-aniso →
                                      npt-aniso; npt-t, npt-tri → npt-tri; nve → nve (where
                                      StageConfig accepts them; else unsupported)
  .nsteps / .trj_freq                 nsteps / trj_freq
  .dt (or model_devi_dt)              dt: DP-GEN's ps × 1000 → fs
  .taut / .taup                       tau_t / tau_p (ps; DP-GEN defaults 0.1 / 0.5)
  .model_devi_*_trust_*               only when equal to the global levels (firegen's are campaign-wide)
  .template/.rev_mat/.sys_rev_mat/    unsupported (LAMMPS templates, PIMD)
  .nbeads
  .neidelay                           ignored (neighbour-list rebuild delay: speed only)
model_devi_f_trust_lo / _hi           selection.trust.f_lo / f_hi (eV/Å); per-system lists/dicts only
                                      when all values are equal
model_devi_v_trust_lo / _hi           selection.trust.v_lo / v_hi (DP-GEN's default 1e10 = not used)
model_devi_adapt_trust_lo (+ numb_    unsupported: firegen keeps only candidate frames of each MD run,
candi_f/v, perc_candi_f/v)            DP-GEN adapts over all frames of a system (the arithmetic is in
                                      ``select.adaptive_trust_lo`` for a later wiring)
model_devi_engine                     exploration.engine: lammps (amber, calypso, gromacs: unsupported)
fp_task_max / fp_task_min             selection.max_per_iteration / min_per_iteration (DP-GEN caps
                                      per system, firegen per iteration: a note says so when a job
                                      explores several systems)
fp_accurate_threshold                 selection.skip_when_accurate_above and the stage's
                                      converged_when.accurate_ratio
fp_accurate_soft_threshold            selection.soft_accurate_ratio
ratio_failed                          labeler.max_failed_ratio (DP-GEN's default 0.05 when absent)
fp_style cp2k                         labeler cp2k: external_input_path → settings.template (absolute),
                                      user_fp_params → settings.input; command, mpi_ranks from
                                      machine.json fp.command ("mpirun -n 32 cp2k.popt -i input.inp"
                                      → command cp2k.popt, mpi_ranks 32)
fp_style pwscf                        labeler qe: fp_pp_path → pseudo_dir, fp_pp_files →
                                      pseudopotentials {element: file} (type_map order),
                                      user_fp_params {control, system, electrons} → input and its
                                      kspacing → kspacing; or fp_params (ecut, ediff, smearing, sigma,
                                      kspacing) → the same namelists DP-GEN writes (ecutwfc, conv_thr,
                                      ts_vdw_econv_thr, vdw_corr 'TS', nosym, degauss, smearing)
fp_style vasp                         labeler vasp: fp_incar → incar_file, fp_pp_path → potcar_dir,
                                      fp_pp_files → potcar_files; cvasp: firegen runs VASP under
                                      custodian anyway; fp_aniso_kspacing, fp_skip_bad_box: unsupported
fp_style custom                       labeler command: fp_params input_fmt/input_fn/output_fmt/
                                      output_fn, command = machine.json fp.command, forward_files =
                                      fp.user_forward_files (absolute)
other fp_styles                       unsupported (gaussian, siesta, abacus, pwmat, cpx, amber/diff)
detailed_report_make_fp, model_devi_  ignored, with a note (reporting, trajectory storage, data layout,
clean_traj/_merge_traj, one_h5,       model compression for MD speed)
dp_compress, dp_train_skip_neighbor_
stat
model_devi_skip                       only 0 (firegen judges every written frame)
use_ele_temp, shuffle_poscar, model_  unsupported unless at DP-GEN's default
devi_nopbc, model_devi_plumed(_path),
use_relative(_v), epsilon(_v),
model_devi_f_avg_relative, lmp_d3,
lmp_neigh_modify_one, fp_cluster_
vacuum, srtab_file_path, model_devi_
activation_func
init_batch_size / sys_batch_size      "auto": ignored, with a note (firegen's batch_size is auto unless
                                      the template sets one); numbers: unsupported
training_reuse_old_ratio              ignored without training_reuse_iter (a note), else unsupported
machine.json train / model_devi       category gpu: ``gpu_worker.yaml`` (env dp = train.command, lmp =
                                      model_devi.command) and, for Slurm/PBS/Torque, a FireWorks
                                      queue adapter (nodes, cpus, gpus, queue, walltime/account/qos/
                                      mem/constraint from custom_flags, modules, envs)
machine.json fp                       category cpu: ``cpu_worker.yaml`` (env mpi_ranks) and its adapter
====================================  =====================================================================
"""

from __future__ import annotations

#: DP-GEN's "not used" virial trust level.
V_UNUSED = 1e10
ENSEMBLES = {"nvt": "nvt", "npt": "npt", "npt-i": "npt", "npt-iso": "npt", "npt-a": "npt-aniso",
              "npt-aniso": "npt-aniso", "npt-t": "npt-tri", "npt-tri": "npt-tri", "nve": "nve"}
JOB_MAPPED = {"sys_idx", "temps", "press", "trj_freq", "nsteps", "ensemble", "dt", "taut", "taup"}
JOB_TRUST = ("model_devi_f_trust_lo", "model_devi_f_trust_hi", "model_devi_v_trust_lo", "model_devi_v_trust_hi")
JOB_WHY = {"template": "LAMMPS input templates (firegen writes its own LAMMPS input per stage)",
            "rev_mat": "template revise matrices", "sys_rev_mat": "template revise matrices",
            "nbeads": "path-integral MD"}
MAPPED = {"type_map", "mass_map", "init_data_prefix", "init_data_sys", "sys_configs_prefix", "sys_configs",
           "sys_format", "numb_models", "default_training_param", "train_backend", "training_init_model",
           "training_reuse_iter", "training_reuse_numb_steps", "training_reuse_stop_batch",
           "training_reuse_start_lr", "training_reuse_start_pref_e", "training_reuse_start_pref_f",
           "model_devi_jobs", "model_devi_dt", "model_devi_f_trust_lo",
           "model_devi_f_trust_hi", "model_devi_v_trust_lo", "model_devi_v_trust_hi", "model_devi_engine",
           "mlp_engine", "fp_style", "fp_task_max", "fp_task_min", "fp_accurate_threshold",
           "fp_accurate_soft_threshold", "ratio_failed", "model_devi_skip",
           # read by the fp_style mapping:
           "fp_pp_path", "fp_pp_files", "fp_incar", "fp_params", "user_fp_params", "external_input_path", "cvasp"}
IGNORED = {
    "detailed_report_make_fp": "firegen stores the accurate/candidate/failed counts of every exploration anyway",
    "model_devi_clean_traj": "firegen keeps no trajectories, only candidate frames",
    "model_devi_merge_traj": "firegen keeps no trajectories, only candidate frames",
    "one_h5": "training-data file layout only",
    "dp_compress": "firegen explores with the uncompressed frozen models (compression changes MD speed only)",
    "dp_train_skip_neighbor_stat": "firegen lets deepmd-kit run its neighbour statistics (sel: auto)",
}
WHY = {
    "model_devi_adapt_trust_lo": "firegen keeps only the candidate frames of each MD run; DP-GEN's adaptive "
                                 "lower level ranks all frames of a system",
    "use_ele_temp": "electronic temperature as a frame/atom parameter",
    "shuffle_poscar": "shuffled atom occupations",
    "model_devi_nopbc": "non-periodic MD",
    "model_devi_plumed": "PLUMED", "model_devi_plumed_path": "PLUMED",
    "use_relative": "relative force deviation", "use_relative_v": "relative virial deviation",
    "epsilon": "relative force deviation", "epsilon_v": "relative virial deviation",
    "model_devi_f_avg_relative": "force deviation normalized by the RMS force",
    "lmp_d3": "D3 dispersion in LAMMPS", "lmp_neigh_modify_one": "LAMMPS neigh_modify one",
    "fp_cluster_vacuum": "cluster vacuum checks", "srtab_file_path": "DP-ZBL tabulated pair potential",
    "model_devi_activation_func": "per-model activation functions",
    "init_batch_size": "per-system batch sizes (set training.training_data.batch_size in the template)",
    "sys_batch_size": "per-system batch sizes (set training.training_data.batch_size in the template)",
    "training_iter0_model_path": "starting iteration 0 from given checkpoints",
    "training_init_frozen_model": "starting iteration 0 from given frozen models",
    "training_finetune_model": "fine-tuning",
    "training_reuse_old_ratio": "old/new data probability when reusing models",
    "model_format": "frozen model formats other than TensorFlow's .pb / PyTorch's .pth",
    "fp_aniso_kspacing": "anisotropic k-spacing", "fp_skip_bad_box": "skipping bad boxes before DFT",
}
TRAINING_OWNED = ("systems", "sys_probs", "auto_prob", "seed")
#: firegen field -> the DP-GEN key it is converted from, so that an error names the key the user wrote
#: (the converter adds the per-stage, per-system and per-folder ones).
ORIGINS = {"name": "the param file's folder name (--name)", "type_map": "type_map", "masses": "mass_map",
           "systems": "sys_configs", "initial_data": "init_data_sys", "committee.size": "numb_models",
           "committee.backend": "train_backend", "committee.warm_start": "training_init_model",
           "committee.warm_start.from_iteration": "training_reuse_iter",
           "committee.warm_start.numb_steps": "training_reuse_numb_steps",
           "committee.warm_start.start_lr": "training_reuse_start_lr",
           "committee.warm_start.start_pref_e": "training_reuse_start_pref_e",
           "committee.warm_start.start_pref_f": "training_reuse_start_pref_f",
           "committee.training": "default_training_param", "selection.trust.f_lo": "model_devi_f_trust_lo",
           "selection.trust.f_hi": "model_devi_f_trust_hi", "selection.trust.v_lo": "model_devi_v_trust_lo",
           "selection.trust.v_hi": "model_devi_v_trust_hi", "selection.max_per_iteration": "fp_task_max",
           "selection.min_per_iteration": "fp_task_min", "selection.skip_when_accurate_above": "fp_accurate_threshold",
           "selection.soft_accurate_ratio": "fp_accurate_soft_threshold", "stages": "model_devi_jobs",
           "labeler": "fp_style", "labeler.max_failed_ratio": "ratio_failed", "exploration": "model_devi_engine"}
#: stages[i].<firegen field> -> model_devi_jobs[k].<DP-GEN key>
JOB_FIELDS = {"temperatures": "temps", "pressures": "press", "nsteps": "nsteps", "trj_freq": "trj_freq",
               "tau_t": "taut", "tau_p": "taup", "ensemble": "ensemble"}
