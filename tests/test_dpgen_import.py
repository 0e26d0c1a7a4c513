"""DP-GEN param.json / machine.json / run directories → firegen campaigns.

The param files in tests/fixtures/dpgen/ are written in DP-GEN 0.14's documented format (checked
here with DP-GEN's own schema): CP2K with external_input_path and with user_fp_params, pwscf,
VASP and custom; ensembles nvt, npt, npt-i, npt-a; machine files in the new dpdispatcher format
(Slurm, Shell) and the old list format (PBS). Each is converted and validated by firegen's schema.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml

from campaign_helpers import BIN, cli_env, firegen
from science_data import make_emt_dataset

from firegen.campaign.config import ConfigError, load_config, validate_dict
from firegen.orchestrator.dpgen_import import DPGenImportError, import_dpgen
from firegen.orchestrator.dpgen_workers import split_mpi_command, walltime_seconds
from firegen.orchestrator.dpgen_run import read_record, resume_job, run_data
from firegen.workflows.steps import select

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "dpgen"


@pytest.fixture
def dpgen_dir(tmp_path):
    """A copy of the fixtures with DP-GEN init data (EMT-labeled fcc Cu, deepmd/npy) in init/cu32."""
    folder = tmp_path / "dpgen"
    shutil.copytree(FIXTURES, folder)
    make_emt_dataset(folder / "init" / "cu32", n_frames=3, seed=11)
    return folder


def convert(folder: Path, param: str, machine: str | None = None, **kw):
    out = folder / "out" / "campaign.yaml"
    conv = import_dpgen(folder / param, folder / machine if machine else None, output=out,
                        name=param.removesuffix(".json").replace("_", "-"), **kw)
    cfg = load_config(out)  # what `firegen validate campaign.yaml` reads: the written YAML, files checked
    return conv, cfg, out


# ---- the param files of each fp_style ----------------------------------------------------------
def test_cp2k_template_nvt_with_slurm_machine(dpgen_dir):
    conv, cfg, out = convert(dpgen_dir, "param_cp2k_template.json", "machine_slurm.json")
    assert conv.unsupported == []
    assert [s.name for s in cfg.systems] == ["sys0-000", "sys1-000", "sys1-001"]
    assert cfg.system_atoms("sys1-001").get_volume() == pytest.approx((7.22 * 0.98) ** 3, rel=1e-6)
    assert cfg.initial_data.deepmd_npy == ["../init/cu32"]
    # jobs 0 and 1 are identical: one stage of two iterations; job 2 is its own stage
    first, second = cfg.stages
    assert (first.name, first.max_iterations, first.systems) == ("job000-001", 2, ["sys0-000"])
    assert first.ensemble == "nvt" and first.pressures is None and first.temperatures == [300, 600]
    assert first.dt == pytest.approx(2.0) and first.tau_t == pytest.approx(0.1)  # 0.002 ps -> 2 fs
    assert first.converged_when.accurate_ratio == 1.0
    assert (second.max_iterations, second.systems, second.tau_t) == (1, ["sys0-000", "sys1-000", "sys1-001"], 0.2)
    assert (cfg.selection.trust.f_lo, cfg.selection.trust.f_hi, cfg.selection.trust.v_lo) == (0.05, 0.15, None)
    assert (cfg.selection.max_per_iteration, cfg.selection.min_per_iteration) == (30, 1)
    assert cfg.committee.size == 4 and cfg.committee.numb_steps == 400
    training = cfg.committee.training
    assert "type_map" not in training["model"] and "seed" not in training["model"]["descriptor"]
    assert training["training"]["training_data"] == {"set_prefix": "set", "batch_size": 1}
    assert cfg.labeler.kind == "cp2k"
    assert cfg.labeler.settings == {"template": str(dpgen_dir / "cp2k_template.inp"), "command": "cp2k.popt",
                                    "mpi_ranks": 32}
    assert cfg.labeler.max_failed_ratio == 0.05  # DP-GEN's default ratio_failed
    assert any("fp_task_max per system" in n for n in conv.notes)
    assert sorted(p.name for p in (out.parent / "campaign.workers").iterdir()) == [
        "cpu_queue.yaml", "cpu_worker.yaml", "gpu_queue.yaml", "gpu_worker.yaml"]


def test_cp2k_user_params_npt_with_thresholds(dpgen_dir):
    conv, cfg, _ = convert(dpgen_dir, "param_cp2k_params.json")
    assert conv.unsupported == [] and conv.workers == {}
    assert cfg.masses() == [63.546]
    npt, npt_i = cfg.stages  # npt and npt-i differ in nsteps: two stages, both firegen 'npt'
    assert (npt.ensemble, npt_i.ensemble) == ("npt", "npt")
    assert npt.pressures == [1.0, 1000.0] and npt_i.nsteps == 4000 and npt_i.tau_p == 1.0
    assert npt.dt == pytest.approx(1.0) and len(npt.conditions()) == 4
    assert npt.converged_when.accurate_ratio == 0.999
    sel = cfg.selection
    assert (sel.skip_when_accurate_above, sel.soft_accurate_ratio) == (0.999, 0.99)
    assert (sel.trust.v_lo, sel.trust.v_hi, sel.min_per_iteration) == (0.5, 1.0, 5)
    assert cfg.committee.numb_steps == 2000  # deepmd-kit v1 stop_batch
    training = cfg.committee.training["training"]
    assert training["training_data"] == {"batch_size": 1}
    assert not {"systems", "set_prefix", "numb_test", "stop_batch", "seed"} & set(training)
    assert cfg.labeler.kind == "cp2k" and cfg.labeler.max_failed_ratio == 0.2
    assert cfg.labeler.settings["input"]["FORCE_EVAL"]["SUBSYS"]["KIND"]["_"] == ["Cu"]
    assert any("dpgen2's rule" in n for n in conv.notes)


def test_pwscf_npt_aniso_with_old_pbs_machine(dpgen_dir):
    conv, cfg, out = convert(dpgen_dir, "param_pwscf.json", "machine_pbs_old.json")
    assert conv.unsupported == []
    [stage] = cfg.stages
    assert stage.ensemble == "npt-aniso" and stage.systems == ["sys0-000", "sys0-001"]
    assert (cfg.selection.trust.f_lo, cfg.selection.trust.f_hi) == (0.12, 0.35)  # one-element per-system lists
    s = cfg.labeler.settings
    assert cfg.labeler.kind == "qe" and s["pseudo_dir"] == str(dpgen_dir / "pp")
    assert s["pseudopotentials"] == {"Cu": "Cu.fixture.UPF"} and s["kspacing"] == 0.3
    assert s["input"]["system"]["ecutwfc"] == 45 and s["input"]["electrons"]["conv_thr"] == 1e-8
    assert (s["command"], s["mpi_ranks"]) == ("pw.x", 16)
    workers = out.parent / "campaign.workers"
    gpu = yaml.safe_load((workers / "gpu_queue.yaml").read_text())
    assert gpu["_fw_q_type"] == "PBS" and gpu["select"] == "1:ncpus=4:ngpus=1:mem=32gb"
    assert (gpu["walltime"], gpu["queue"]) == ("12:00:00", "gpuq")
    assert yaml.safe_load((workers / "cpu_worker.yaml").read_text())["env"]["mpi_ranks"] == 16


def test_vasp_nvt_and_npt_a_with_init_model(dpgen_dir):
    conv, cfg, _ = convert(dpgen_dir, "param_vasp.json")
    assert conv.unsupported == []
    assert cfg.committee.warm_start.enabled is True and cfg.committee.numb_steps == 800
    assert cfg.committee.warm_start.poor_above is None
    # DP-GEN 0.14's init model keeps the template's loss prefactors
    assert (cfg.committee.warm_start.start_pref_e, cfg.committee.warm_start.start_pref_f) == (None, None)
    assert [s.ensemble for s in cfg.stages] == ["nvt", "npt-aniso"]
    assert cfg.stages[1].pressures == [1.0] and cfg.stages[1].systems == ["sys0-000", "sys1-000"]
    assert cfg.labeler.kind == "vasp"
    assert cfg.labeler.settings == {"incar_file": str(dpgen_dir / "INCAR"), "potcar_dir": str(dpgen_dir / "pp"),
                                    "potcar_files": {"Cu": "POTCAR.Cu"}}
    assert any("custodian" in n for n in conv.notes)


def test_training_reuse_keys_become_warm_start_and_selection_stays_dp_gen_s(dpgen_dir):
    def change(d):
        d.pop("training_init_model", None)
        d.update(training_reuse_iter=2, training_reuse_numb_steps=300, training_reuse_start_lr=1e-4,
                 training_reuse_start_pref_e=0.1, training_reuse_start_pref_f=100)

    conv, cfg, _ = convert(dpgen_dir, _edit(dpgen_dir, "param_vasp.json", change))
    assert conv.unsupported == []
    warm = cfg.committee.warm_start
    assert (warm.enabled, warm.from_iteration, warm.numb_steps) == (True, 2, 300)
    assert (warm.start_lr, warm.start_pref_e, warm.start_pref_f) == (1e-4, 0.1, 100)
    assert warm.poor_above is None  # DP-GEN warm-starts every member from its own model, however poor
    assert [warm.warm(i) for i in range(4)] == [False, False, True, True]  # DP-GEN: iter_index >= reuse_iter
    # DP-GEN picks uniformly at random among the candidates and keeps near-copies
    assert cfg.selection.policy == "random" and not cfg.selection.dedup.enabled

    plain = _edit(dpgen_dir, "param_vasp.json", lambda d: d.pop("training_init_model", None))
    assert convert(dpgen_dir, plain)[1].committee.warm_start.enabled is False


def test_npt_t_maps_to_npt_tri_and_nve_is_listed(dpgen_dir):
    def change(d):
        d["model_devi_jobs"][1]["ensemble"] = "npt-t"
        d["model_devi_jobs"].append({"sys_idx": [0], "temps": [300], "trj_freq": 10, "nsteps": 100,
                                     "ensemble": "nve"})

    name = _edit(dpgen_dir, "param_vasp.json", change)
    conv = import_dpgen(dpgen_dir / name, ignore_unsupported=True)
    assert [s["ensemble"] for s in conv.config["stages"]] == ["nvt", "npt-tri"]
    assert conv.unsupported == ["model_devi_jobs[2].ensemble ('nve' has no firegen ensemble here)"]
    with pytest.raises(DPGenImportError, match=r"model_devi_jobs\[2\].ensemble"):
        conv.check()


def test_custom_fp_becomes_the_command_labeler(dpgen_dir):
    from firegen.workflows.steps.label import get_labeler

    conv, cfg, out = convert(dpgen_dir, "param_custom.json", "machine_shell.json")
    assert cfg.labeler.kind == "command"
    assert cfg.labeler.settings == {"input_fmt": "vasp/poscar", "input_fn": "POSCAR", "output_fmt": "extxyz",
                                    "output_fn": "output.xyz", "command": "python emt_label.py POSCAR output.xyz",
                                    "forward_files": [str(dpgen_dir / "emt_label.py")]}
    get_labeler(cfg.labeler.kind, cfg.labeler.settings)  # the settings are valid for the labeler
    [stage] = cfg.stages
    assert (stage.name, stage.max_iterations, stage.temperatures) == ("job000-002", 3, [900, 1500])
    gpu = yaml.safe_load((out.parent / "campaign.workers" / "gpu_worker.yaml").read_text())
    assert gpu["category"] == "gpu" and gpu["env"] == {"lmp": "lmp", "dp": "dp"}
    assert any("Shell has no FireWorks queue adapter" in n for n in conv.notes)


def test_generated_slurm_adapter_renders_with_fireworks(dpgen_dir):
    import warnings

    from fireworks import FWorker
    from fireworks.utilities.fw_serializers import load_object_from_file

    _, _, out = convert(dpgen_dir, "param_cp2k_template.json", "machine_slurm.json")
    workers = out.parent / "campaign.workers"
    adapter = load_object_from_file(str(workers / "gpu_queue.yaml"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a key the template does not know would vanish silently
        script = adapter.get_script_str("/scratch/launch")
    for line in ("#SBATCH --time=24:00:00", "#SBATCH --gres=gpu:1", "#SBATCH --account=proj42",
                 "#SBATCH --mem=64G", "#SBATCH --cpus-per-task=8", "#SBATCH --partition=gpu",
                 "#SBATCH --exclusive", "module load cuda/12.2", "export OMP_NUM_THREADS=8"):
        assert line in script, line
    worker_file = script.split(' -w "')[1].split('"')[0]
    worker = FWorker.from_file(worker_file)
    assert worker.category == "gpu" and worker.env["lmp"] == "lmp"
    cpu = load_object_from_file(str(workers / "cpu_queue.yaml")).get_script_str("/scratch/launch")
    assert "#SBATCH --ntasks=32" in cpu and "--timeout 12600" in cpu  # 4 h walltime minus 30 min


# ---- errors: one line ------------------------------------------------------------------------------
def _edit(folder: Path, param: str, change) -> str:
    data = json.loads((folder / param).read_text())
    change(data)
    name = "edited_" + param
    (folder / name).write_text(json.dumps(data))
    return name


def test_unsupported_keys_are_listed_in_one_message(dpgen_dir):
    def change(d):
        d["shuffle_poscar"] = True
        d["model_devi_adapt_trust_lo"] = True
        d["model_devi_numb_candi_f"] = 10
        d["model_devi_skip"] = 100
        d["model_devi_jobs"][0]["template"] = {"lmp": "in.lammps"}
        d["fp_cluster_vacuum"] = 8.0

    name = _edit(dpgen_dir, "param_custom.json", change)
    out = firegen(dpgen_dir, "import-dpgen", name, "machine_shell.json", "-o", "c.yaml")
    assert out.returncode == 2 and not (dpgen_dir / "c.yaml").exists()
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("firegen: error:"), out.stderr
    for key in ("shuffle_poscar", "model_devi_adapt_trust_lo (+ model_devi_numb_candi_f)", "model_devi_skip",
                "model_devi_jobs[0].template", "fp_cluster_vacuum", "--ignore-unsupported"):
        assert key in lines[0], key
    ok = firegen(dpgen_dir, "import-dpgen", name, "machine_shell.json", "-o", "c.yaml", "--ignore-unsupported")
    assert ok.returncode == 0, ok.stderr
    assert "firegen: warning:" in ok.stderr and "shuffle_poscar" in ok.stderr
    text = (dpgen_dir / "c.yaml").read_text()
    assert "# unsupported, left out: shuffle_poscar" in text
    load_config(dpgen_dir / "c.yaml")


@pytest.mark.parametrize("change, key", [
    (lambda d: d.update(numb_models="four"), "numb_models"),
    (lambda d: d.update(numb_model=4), "numb_model"),
    (lambda d: d["model_devi_jobs"][0].update(temps="hot"), "temps"),
])
def test_wrong_param_gives_dpgens_schema_error_in_one_line(dpgen_dir, change, key):
    name = _edit(dpgen_dir, "param_custom.json", change)
    out = firegen(dpgen_dir, "validate", name, "--machine", "machine_shell.json")
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "DP-GEN param schema" in lines[0] and key in lines[0], out.stderr


def test_broken_paths_name_the_dpgen_key(dpgen_dir):
    def change(d):
        d["sys_configs"][0] = ["confs/nowhere/POSCAR*"]
        d["init_data_sys"] = ["missing"]

    name = _edit(dpgen_dir, "param_custom.json", change)
    with pytest.raises(DPGenImportError) as err:
        import_dpgen(dpgen_dir / name, dpgen_dir / "machine_shell.json")
    text = str(err.value)
    assert "sys_configs[0][0]: matches no file" in text and "init_data_sys[0]: folder not found" in text


def test_custom_without_machine_says_where_the_command_comes_from(dpgen_dir):
    with pytest.raises(DPGenImportError, match=r"machine.json \(fp.command\)"):
        import_dpgen(dpgen_dir / "param_custom.json")


def test_selection_throttle_fields_are_checked():
    base = yaml.safe_load((Path(__file__).resolve().parents[1] / "configs" / "cu_emt.yaml").read_text())
    base["selection"]["soft_accurate_ratio"] = 0.99
    with pytest.raises(ConfigError, match="soft_accurate_ratio: needs skip_when_accurate_above"):
        validate_dict(base)
    base["selection"]["skip_when_accurate_above"] = 0.95
    with pytest.raises(ConfigError, match="must not exceed skip_when_accurate_above"):
        validate_dict(base)


# ---- the CLI path: submit param.json directly --------------------------------------------------------
def test_submit_param_json_dry_run_builds_the_workflow(dpgen_dir, launchpad):
    out = firegen(dpgen_dir, "submit", "param_custom.json", "--machine", "machine_shell.json", "--dry-run",
                  "-o", "wf.yaml")
    assert out.returncode == 0, out.stderr
    wf = yaml.safe_load((dpgen_dir / "wf.yaml").read_text())
    [init] = wf["fws"]
    config = init["spec"]["_tasks"][0]["config"]
    assert config["name"] == "dpgen" and config["labeler"]["kind"] == "command"
    assert config["stages"][0]["max_iterations"] == 3
    assert list(init["spec"]["_tasks"][0]["systems"]) == ["sys0-000"]
    lp_file = dpgen_dir / "lp.yaml"
    launchpad.to_file(str(lp_file))
    added = subprocess.run([str(BIN / "lpad"), "-l", str(lp_file), "add", "wf.yaml"], cwd=dpgen_dir,
                           env=cli_env(dpgen_dir), capture_output=True, text=True, timeout=120)
    assert added.returncode == 0, added.stderr
    assert launchpad.fireworks.count_documents({"spec.firegen.campaign": "dpgen"}) == 1


# ---- a DP-GEN run directory --------------------------------------------------------------------------
def _fake_run(folder: Path) -> Path:
    """DP-GEN stopped in iteration 1 after its exploration (task 5); iteration 0 is labeled (post_fp
    done) in MultiSystems layout (data.000/Cu32/), iteration 1 has half-written data (not done)."""
    import dpdata

    run = folder / "run"
    iter0 = make_emt_dataset(folder / "tmp0", n_frames=4, seed=21)
    multi = dpdata.MultiSystems(dpdata.LabeledSystem(str(iter0), fmt="deepmd/npy"), type_map=["Cu"])
    multi.to_deepmd_raw(str(run / "iter.000000" / "02.fp" / "data.000"))
    multi.to_deepmd_npy(str(run / "iter.000000" / "02.fp" / "data.000"))
    make_emt_dataset(run / "iter.000001" / "02.fp" / "data.000", n_frames=2, seed=22)
    (run / "record.dpgen").write_text("".join(f"0 {t}\n" for t in range(9)) + "".join(f"1 {t}\n" for t in range(6)))
    return run


def test_run_directory_record_and_data():
    assert resume_job([]) == 0
    assert resume_job([(0, t) for t in range(9)] + [(1, 3)]) == 1
    assert resume_job([(0, t) for t in range(9)] + [(1, t) for t in range(9)]) == 2


def test_bad_record_line_names_the_line(tmp_path):
    (tmp_path / "record.dpgen").write_text("0 0\n0\n")
    with pytest.raises(ValueError, match="line 2"):
        read_record(tmp_path)


def test_run_directory_imports_with_dpgen_provenance(dpgen_dir, mongo_db):
    from firegen.db.repository import ResultsStore
    from firegen.workflows.jobs.init import initial_configurations

    run = _fake_run(dpgen_dir)
    assert [(d.iteration, d.system_index) for d in run_data(run)] == [(0, 0)]
    out = firegen(dpgen_dir, "import-dpgen", "param_custom.json", "machine_shell.json", "-o", "resumed.yaml",
                  "--run-dir", "run", "--name", "cu-resumed")
    assert out.returncode == 0, out.stderr
    assert "resumes at model_devi_jobs[1]" in out.stdout
    cfg = load_config(dpgen_dir / "resumed.yaml")
    [stage] = cfg.stages  # jobs 1 and 2 are left, identical: one stage of two iterations
    assert (stage.name, stage.max_iterations) == ("job001-002", 2)
    assert cfg.initial_data.deepmd_npy == []
    assert [(i.path, i.dpgen_iteration) for i in cfg.initial_data.imported] == [
        (str(dpgen_dir / "init" / "cu32"), None), (str(run / "iter.000000" / "02.fp" / "data.000"), 0)]

    store = ResultsStore(mongo_db)
    store.init()
    assert initial_configurations(store, cfg, {}, []) == []  # all imported frames come labeled
    docs = list(store.configurations.find({"campaign": "cu-resumed"}))
    assert len(docs) == 3 + 4 and all(d["status"] == "labeled" for d in docs)
    by_iter = {}
    for d in docs:
        assert d["origin"]["kind"] == "imported" and d["origin"]["source"] == "dpgen"
        by_iter.setdefault(d["origin"]["dpgen_iteration"], []).append(d)
    assert sorted(len(v) for v in by_iter.values()) == [3, 4] and set(by_iter) == {None, 0}
    assert all(d["origin"]["path"] == str(run / "iter.000000" / "02.fp" / "data.000" / "Cu32") for d in by_iter[0])
    # labels are DP-GEN's: compare with the data written into the run folder
    import dpdata

    ref = dpdata.LabeledSystem(str(dpgen_dir / "tmp0"), fmt="deepmd/npy")
    assert sorted(d["label"]["energy"] for d in by_iter[0]) == pytest.approx(sorted(ref["energies"]), abs=1e-8)
    assert initial_configurations(store, cfg, {}, []) == []  # a rerun adds nothing
    assert store.configurations.count_documents({"campaign": "cu-resumed"}) == 7


def test_finished_run_has_nothing_to_resume(dpgen_dir):
    run = _fake_run(dpgen_dir)
    (run / "record.dpgen").write_text("".join(f"{i} {t}\n" for i in range(3) for t in range(9)))
    with pytest.raises(DPGenImportError, match="finished all 3 jobs"):
        import_dpgen(dpgen_dir / "param_custom.json", dpgen_dir / "machine_shell.json", run_dir=run)


# ---- small pure pieces -------------------------------------------------------------------------------
@pytest.mark.parametrize("command, expect", [
    ("mpirun -n 32 cp2k.popt -i input.inp", ("cp2k.popt", 32, ["-i", "input.inp"])),
    ("mpirun --allow-run-as-root -np 4 pw.x < input", ("pw.x", 4, ["<", "input"])),
    ("srun --ntasks=8 vasp_std", ("vasp_std", 8, [])),
    ("mpiexec -hostfile hosts -n 2 vasp_std", ("vasp_std", 2, [])),
    ("vasp_std", ("vasp_std", None, [])),
])
def test_split_mpi_command(command, expect):
    assert split_mpi_command(command) == expect


@pytest.mark.parametrize("text, seconds", [("24:00:00", 86400), ("1-00:00:00", 86400), ("90", 5400),
                                           ("30:00", 1800), ("2:00:00", 7200), ("soon", None)])
def test_walltime_seconds(text, seconds):
    assert walltime_seconds(text) == seconds


@pytest.mark.parametrize("ratio, cap", [(0.5, 100), (0.9, 100), (0.95, 44), (0.98, 11), (0.99, 0), (1.0, 0)])
def test_labeling_cap_follows_dpgen(ratio, cap):
    # DP-GEN make_fp: fp_task_max 100, soft threshold 0.9, hard 0.99: int(100 * (r - 0.99) / (0.9 - 0.99))
    assert select.labeling_cap(100, ratio, skip_at=0.99, soft_at=0.9) in (cap, cap - 1)  # int() of a float
    assert select.labeling_cap(100, ratio) == 100
    assert select.labeling_cap(100, ratio, skip_at=0.99) == (0 if ratio >= 0.99 else 100)


def test_labeling_cap_rejects_bad_thresholds():
    with pytest.raises(ValueError, match="soft_at"):
        select.labeling_cap(10, 0.5, skip_at=0.9, soft_at=0.95)
    with pytest.raises(ValueError, match="needs skip_at"):
        select.labeling_cap(10, 0.5, soft_at=0.95)


def test_adaptive_trust_lo_matches_dpgens_own_function(tmp_path):
    from dpgen.generator.run import _select_by_model_devi_adaptive_trust_low

    rng = np.random.default_rng(5)
    tasks, f_all, v_all = [], [], []
    for t in range(2):  # two MD tasks of one system
        task = tmp_path / f"task.000.{t:06d}"
        task.mkdir()
        steps = np.arange(0, 200, 10)
        f = rng.gamma(2.0, 0.05, size=steps.size)
        v = rng.gamma(2.0, 0.02, size=steps.size)
        cols = np.column_stack([steps, v, v * 0.5, v * 0.8, f, f * 0.5, f * 0.8])
        np.savetxt(task / "model_devi.out", cols, header="step max_devi_v min_devi_v avg_devi_v max_devi_f "
                   "min_devi_f avg_devi_f")
        tasks.append(str(task))
        f_all.append(f)
        v_all.append(v)
    f, v = np.concatenate(f_all), np.concatenate(v_all)
    accur, candi, failed, counter, f_lo, v_lo = _select_by_model_devi_adaptive_trust_low(
        tasks, 0.3, 5, 10.0, 0.12, 3, 0.0)
    codes, my_f_lo, my_v_lo = select.adaptive_trust_lo(f, 0.3, 5, 10.0, v, 0.12, 3, 0.0)
    frame = {(t, int(s)): i for i, (t, s) in enumerate((t, s) for t in tasks for s in range(0, 200, 10))}
    assert sorted(frame[(t, c)] for t, c in candi) == sorted(np.flatnonzero(codes == select.CANDIDATE))
    assert sorted(frame[(t, c)] for t, c in failed) == sorted(np.flatnonzero(codes == select.FAILED))
    assert (my_f_lo, my_v_lo) == pytest.approx((f_lo, v_lo))
    assert counter["candidate"] == int((codes == select.CANDIDATE).sum()) > 0
