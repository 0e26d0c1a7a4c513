"""The DP-GEN side-by-side harness: its inputs pass DP-GEN's own schema, the EMT labeler speaks
dpdata's formats, the wrappers log what they time, and dpgen.log becomes rows that tile the run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import make_init_data
import run as harness

HERE = Path(harness.__file__).resolve().parent


def _check_dpgen(arginfo, data: dict) -> None:
    normalized = arginfo.normalize_value(data, trim_pattern="_*")
    arginfo.check_value(normalized, strict=True)


def test_param_and_machine_pass_dpgen_schema(tmp_path):
    from dpgen.generator.arginfo import run_jdata_arginfo, run_mdata_arginfo

    param = json.loads((HERE / "param.json").read_text())
    _check_dpgen(run_jdata_arginfo(), param)
    assert param["fp_style"] == "custom" and param["fp_task_max"] == 40 and len(param["model_devi_jobs"]) == 3
    _check_dpgen(run_mdata_arginfo(), json.loads((HERE / "machine.json").read_text()))
    wrapped = harness.run_machine(tmp_path, harness.write_wrappers(tmp_path))
    _check_dpgen(run_mdata_arginfo(), wrapped)
    assert wrapped["train"]["command"] == str(tmp_path / "bin" / "dp")
    assert "user_forward_files" not in wrapped["fp"]
    quick = harness.campaign_param(quick=True)
    _check_dpgen(run_jdata_arginfo(), quick)
    assert quick["numb_models"] == 2 and len(quick["model_devi_jobs"]) == 2


def test_emt_label_round_trip_through_dpdata(tmp_path):
    import dpdata
    from ase.calculators.emt import EMT

    atoms = make_init_data.supercell()
    atoms.rattle(0.05, seed=3)
    dpdata.System(atoms, fmt="ase/structure").to("vasp/poscar", str(tmp_path / "input.vasp"))
    subprocess.run([sys.executable, str(HERE / "emt_label.py")], cwd=tmp_path, check=True)
    out = dpdata.LabeledSystem(str(tmp_path / "output.extxyz"), fmt="extxyz")
    atoms.calc = EMT()
    assert out.get_nframes() == 1 and out.get_natoms() == 32
    assert out["energies"][0] == pytest.approx(atoms.get_potential_energy(), abs=1e-6)
    np.testing.assert_allclose(out["forces"][0], atoms.get_forces(), atol=1e-6)
    virial = -atoms.get_stress(voigt=False) * atoms.get_volume()  # eV
    np.testing.assert_allclose(out["virials"][0], virial, atol=1e-5)


def test_emt_label_names_the_missing_input(tmp_path):
    proc = subprocess.run([sys.executable, str(HERE / "emt_label.py")], cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode != 0 and "input.vasp not found" in proc.stderr


def test_init_data_is_labeled_deepmd_npy(tmp_path):
    import dpdata
    from ase.calculators.emt import EMT

    out = make_init_data.write_inputs(tmp_path, count=2, seed=1)
    data = dpdata.LabeledSystem(str(out["init"]), fmt="deepmd/npy")
    assert out["frames"] == 6 and data.get_nframes() == 6 and data.get_natoms() == 32
    assert data.data["atom_names"] == ["Cu"] and "virials" in data.data
    volumes = np.abs(np.linalg.det(data["cells"]))
    v0 = 7.23**3  # Å^3, the unscaled supercell
    assert np.ptp(volumes) > 0.01 * v0 and 0.8 * v0 < volumes.min() and volumes.max() < 1.2 * v0
    first = data.to("ase/structure")[0]
    first.calc = EMT()
    assert data["energies"][0] == pytest.approx(first.get_potential_energy(), abs=1e-6)
    poscar = dpdata.System(str(out["poscar"]), fmt="vasp/poscar")
    assert poscar.get_natoms() == 32


def test_wrapper_logs_each_call_with_its_exit_code(tmp_path):
    import shutil

    wrappers = harness.write_wrappers(tmp_path)
    shutil.copy(HERE / "emt_label.py", tmp_path / "emt_label.py")
    task = tmp_path / "task"
    task.mkdir()
    failed = subprocess.run([str(wrappers["emt_label"])], cwd=task, capture_output=True)
    assert failed.returncode != 0
    make_init_data.write_inputs(tmp_path / "gen", count=1)
    shutil.copy(tmp_path / "gen" / "confs" / "POSCAR", task / "input.vasp")
    subprocess.run([str(wrappers["emt_label"])], cwd=task, check=True)
    calls = harness.read_calls(tmp_path / "science.log")
    assert [c["tool"] for c in calls] == ["emt_label", "emt_label"]
    assert calls[0]["rc"] != 0 and calls[1]["rc"] == 0
    assert all(c["end"] >= c["start"] for c in calls)
    assert harness.work_summary(calls) == "labels 2 (1 failed)"
    assert (task / "output.extxyz").is_file()


def _dpgen_log(path: Path, t0: float, steps: list[tuple[int, int, float]]) -> None:
    import datetime as dt

    lines = []
    for it, task, offset in steps:
        stamp = dt.datetime.fromtimestamp(t0 + offset).strftime("%Y-%m-%d %H:%M:%S,%f")[:-3]
        lines.append(f"{stamp} - INFO : {'-' * 25}iter.{it:06d} task {task:02d}{'-' * 26}")
        lines.append(f"{stamp} - INFO : some other line")
    path.write_text("\n".join(lines) + "\n")


def test_dpgen_log_rows_tile_the_run_and_match_firegen(tmp_path):
    t0 = 1_700_000_000.0
    steps = [(i, task, 10.0 + 100.0 * i + 10.0 * task) for i in range(2) for task in range(9)]
    steps += [(2, task, 210.0 + 10.0 * task) for task in range(4)]  # the last training, then no job left
    _dpgen_log(tmp_path / "dpgen.log", t0, steps)
    marks = harness.dpgen_marks(tmp_path / "dpgen.log")
    assert len(marks) == len(steps) and marks[0][:2] == (0, 0)
    assert marks[1][2] - marks[0][2] == pytest.approx(10.0, abs=1e-3)
    t1 = t0 + 260.0
    calls = [{"tool": "dp", "start": t0 + 20, "end": t0 + 35, "rc": 0, "sub": "train"},
             {"tool": "lmp", "start": t0 + 30, "end": t0 + 40, "rc": 0, "sub": "input.lammps"},  # overlaps dp
             {"tool": "emt_label", "start": t0 + 190, "end": t0 + 195, "rc": 0, "sub": "-"}]
    rows = harness.dpgen_rows(marks, t0, t1, calls)
    assert [r["row"] for r in rows] == ["setup", "0", "1", "2"]
    assert sum(r["wall s"] for r in rows) == pytest.approx(260.0, abs=1e-2)
    assert rows[1]["science s"] == pytest.approx(20.0, abs=1e-2)  # union: 20..40, overlap counted once
    # matched: firegen's last select ends the campaign -> stop at iteration 1's make_fp (task 06)
    end = harness.dpgen_matched_end(marks, t1, last_labels=False)
    assert end - t0 == pytest.approx(170.0, abs=1e-2)
    matched = harness.dpgen_rows(marks, t0, t1, calls, end)
    assert [r["row"] for r in matched] == ["setup", "0", "1"]
    assert matched[-1]["label s"] == 0.0  # iteration 1's labels fall after the matched end
    assert harness.dpgen_matched_end(marks, t1, last_labels=True) - t0 == pytest.approx(210.0, abs=1e-2)
    steps_table = {s["step"]: s for s in harness.dpgen_steps(marks, t1, calls)}
    assert steps_table["run_train"]["count"] == 3 and steps_table["post_fp"]["count"] == 2


def test_summary_reports_the_overhead_ratio_per_row(capsys):
    t0 = 1_700_000_000.0
    calls = [{"tool": "dp", "start": t0 + 10, "end": t0 + 90, "rc": 0, "sub": "train"}]
    marks = [(0, 0, t0 + 5), (0, 4, t0 + 95), (0, 6, t0 + 100), (1, 0, t0 + 130), (1, 3, t0 + 150)]
    dpgen = {"side": "DP-GEN", "code": 0, "t0": t0, "t1": t0 + 150, "marks": marks, "calls": calls,
             "rows": harness.dpgen_rows(marks, t0, t0 + 150, calls), "steps": harness.dpgen_steps(marks, t0 + 150, calls)}
    harness.finish_dpgen(dpgen, last_labels=False)
    assert dpgen["total"]["wall s"] == pytest.approx(100.0, abs=1e-6)  # stops at iteration 0's make_fp
    fg_rows = [harness.row_figures("setup", t0, t0 + 2, calls), harness.row_figures(0, t0 + 2, t0 + 92, calls)]
    firegen = {"side": "firegen", "code": 0, "rows": fg_rows, "total": harness.total_row("total", fg_rows, calls),
               "calls": calls, "last_labels": False, "stored": {"train_s": 80.0, "explore_s": 0.0, "label_s": 0.0},
               "submit_s": 1.0, "workers_ready_s": 3.0, "t1": t0 + 92, "t_seen": t0 + 92.5}
    harness.print_side(dpgen)
    harness.print_side(firegen)
    harness.summary([{"dpgen": dpgen, "firegen": firegen}])
    out = capsys.readouterr().out
    total = [line for line in out.splitlines() if line.lstrip().startswith("total  ")][-1]  # the summary
    # DP-GEN matched: wall 100, science 80 -> overhead 20; firegen: wall 92, science 80 -> 12; ratio 0.6
    assert total.split()[-1] == "0.6"
