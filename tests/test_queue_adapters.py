"""Queue adapters in launchers/ for qlaunch: loaded as FireWorks does, submit scripts rendered and checked.

Nothing is submitted (no Slurm or PBS here). The rendered scripts are also run with bash against a
stand-in ``rlaunch`` to check that the worker file they name resolves to a real FWorker file.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
from fireworks import FWorker
from fireworks.user_objects.queue_adapters.common_adapter import CommonAdapter
from fireworks.utilities.fw_serializers import load_object, load_object_from_file

ROOT = Path(__file__).resolve().parents[1]
LAUNCHERS = ROOT / "launchers"
# adapter file -> (queue type, worker category)
ADAPTERS = {
    "slurm_gpu.yaml": ("SLURM", "gpu"),
    "slurm_cpu.yaml": ("SLURM", "cpu"),
    "pbs_gpu.yaml": ("PBS", "gpu"),
    "pbs_cpu.yaml": ("PBS", "cpu"),
}
LAUNCH_DIR = "/scratch/firegen/block_2024/launcher_2024"


@pytest.fixture(autouse=True)
def _repo_root_cwd(monkeypatch):
    # qlaunch is run from the checkout: _fw_template_file paths are resolved against the cwd.
    monkeypatch.chdir(ROOT)


def load(name: str) -> CommonAdapter:
    qadapter = load_object_from_file(str(LAUNCHERS / name))
    assert isinstance(qadapter, CommonAdapter)
    return qadapter


def render(qadapter: CommonAdapter, launch_dir: str = LAUNCH_DIR) -> str:
    with warnings.catch_warnings():
        # FireWorks warns about keys its template does not know (a typo would silently vanish)
        warnings.simplefilter("error")
        return qadapter.get_script_str(launch_dir)


def directives(script: str, prefix: str) -> list[str]:
    return [line for line in script.splitlines() if line.startswith(prefix)]


def rlaunch_args(script: str) -> list[str]:
    lines = [line for line in script.splitlines() if line.startswith("rlaunch ")]
    assert len(lines) == 1, script
    return shlex.split(lines[0])


def worker_path(args: list[str]) -> Path:
    value = args[args.index("-w") + 1]
    assert value.startswith("$FIREGEN_ROOT/"), value  # absolute on the node: the job runs in launch_dir
    return ROOT / value.removeprefix("$FIREGEN_ROOT/")


def seconds(hms: str) -> int:
    h, m, s = (int(x) for x in hms.split(":"))
    return 3600 * h + 60 * m + s


@pytest.mark.parametrize("name", sorted(ADAPTERS))
def test_adapter_loads_with_its_queue_type_and_template(name):
    q_type, _ = ADAPTERS[name]
    qadapter = load(name)
    assert qadapter.q_type == q_type
    assert Path(qadapter.template_file).is_file()
    # qlaunch copies the adapter through to_dict/from_dict before every submission
    again = load_object(qadapter.to_dict())
    assert again.template_file == qadapter.template_file
    assert render(again) == render(qadapter)


@pytest.mark.parametrize("name", sorted(ADAPTERS))
def test_rendered_script_is_complete_bash(name, tmp_path):
    script = render(load(name))
    assert script.startswith("#!/bin/bash")
    assert "$$" not in script and "${{" not in script  # no unrendered template placeholders
    assert f"cd {LAUNCH_DIR}\n" in script
    assert "rocket_launch" not in script and "pre_rocket" not in script
    path = tmp_path / "submit.sh"
    path.write_text(script)
    check = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr


@pytest.mark.parametrize("name", sorted(ADAPTERS))
def test_rlaunch_line_names_the_matching_worker_file(name):
    _, category = ADAPTERS[name]
    args = rlaunch_args(render(load(name)))
    assert args[args.index("-l") + 1] == "$FIREGEN_LAUNCHPAD"
    worker = worker_path(args)
    assert worker.name == f"{category}_worker.yaml"
    assert worker.parent == LAUNCHERS and worker.is_file()
    assert FWorker.from_file(str(worker)).category == category
    other = "cpu" if category == "gpu" else "gpu"
    assert f"{other}_worker.yaml" not in render(load(name))
    mode = args[args.index("-w") + 2]
    if category == "gpu":
        assert mode == "singleshot"  # one long Firework per job; also what qlaunch -r needs
    else:
        assert mode == "rapidfire"


def test_slurm_gpu_directives():
    script = render(load("slurm_gpu.yaml"))
    sbatch = directives(script, "#SBATCH ")
    assert "#SBATCH --gres=gpu:1" in sbatch
    assert "#SBATCH --nodes=1" in sbatch and "#SBATCH --ntasks=1" in sbatch
    assert "#SBATCH --cpus-per-task=8" in sbatch
    assert "#SBATCH --time=24:00:00" in sbatch
    assert "#SBATCH --partition=gpu" in sbatch
    assert "#SBATCH --job-name=firegen-gpu" in sbatch
    assert not directives(script, "#PBS")


def test_slurm_cpu_directives():
    script = render(load("slurm_cpu.yaml"))
    sbatch = directives(script, "#SBATCH ")
    assert not any("gres" in line or "gpu" in line for line in sbatch), sbatch
    assert "#SBATCH --nodes=1" in sbatch
    assert "#SBATCH --ntasks=32" in sbatch  # MPI ranks for the DFT code
    assert "#SBATCH --time=04:00:00" in sbatch
    assert "#SBATCH --partition=cpu" in sbatch
    assert "#SBATCH --job-name=firegen-cpu" in sbatch
    assert not directives(script, "#PBS")


def test_pbs_gpu_directives():
    script = render(load("pbs_gpu.yaml"))
    resources = directives(script, "#PBS -l ")
    assert "#PBS -l select=1:ncpus=8:ngpus=1" in resources
    assert "#PBS -l walltime=24:00:00" in resources
    assert len([r for r in resources if "select=" in r]) == 1  # PBS takes one select statement
    assert "#PBS -q gpu" in script.splitlines() and "#PBS -N firegen-gpu" in script.splitlines()
    assert "#PBS -v PATH,FIREGEN_ROOT,FIREGEN_LAUNCHPAD" in script.splitlines()
    assert not directives(script, "#SBATCH")


def test_pbs_cpu_directives():
    script = render(load("pbs_cpu.yaml"))
    resources = directives(script, "#PBS -l ")
    assert not any("ngpus" in line for line in resources), resources
    assert "#PBS -l select=1:ncpus=32:mpiprocs=32" in resources  # MPI ranks for the DFT code
    assert "#PBS -l walltime=04:00:00" in resources
    assert "#PBS -q cpu" in script.splitlines() and "#PBS -N firegen-cpu" in script.splitlines()
    assert not directives(script, "#SBATCH")


@pytest.mark.parametrize("name", sorted(ADAPTERS))
def test_walltime_is_hms_and_rapidfire_stops_before_it(name):
    qadapter = load(name)
    walltime = qadapter["walltime"]
    assert isinstance(walltime, str) and re.fullmatch(r"\d{2,}:[0-5]\d:[0-5]\d", walltime), walltime
    args = rlaunch_args(render(qadapter))
    if "rapidfire" in args:
        timeout = int(args[args.index("--timeout") + 1])
        assert 0 < timeout <= seconds(walltime) - 15 * 60  # room for the last Firework started


@pytest.mark.parametrize("name", sorted(ADAPTERS))
def test_optional_keys_are_template_keys(name):
    # null in the files (the line is left out), but they must render when a site or a
    # Firework's spec._queueadapter sets them
    q_type, _ = ADAPTERS[name]
    qadapter = load(name)
    qadapter.update(account="proj123")
    script = render(qadapter)
    assert ("#SBATCH --account=proj123" if q_type == "SLURM" else "#PBS -A proj123") in script
    assert "proj123" not in render(load(name))


@pytest.mark.parametrize("name", sorted(ADAPTERS))
def test_rendered_script_runs_rlaunch_with_the_worker_file(name, tmp_path):
    _, category = ADAPTERS[name]
    bin_dir, launch_dir = tmp_path / "bin", tmp_path / "launch"
    bin_dir.mkdir()
    launch_dir.mkdir()
    record = tmp_path / "rlaunch.args"
    fake = bin_dir / "rlaunch"  # stands in for rlaunch: records where it ran and its arguments
    fake.write_text(f'#!/bin/sh\npwd > "{record}"\nfor a in "$@"; do echo "$a" >> "{record}"; done\n')
    fake.chmod(0o755)
    script = tmp_path / "submit.sh"
    script.write_text(render(load(name), str(launch_dir)))
    env = {k: v for k, v in os.environ.items() if not k.startswith("FIREGEN_")}
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"

    missing = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, timeout=30)
    assert missing.returncode != 0 and "export FIREGEN_ROOT" in missing.stderr
    assert not record.exists()

    env.update(FIREGEN_ROOT=str(ROOT), FIREGEN_LAUNCHPAD=str(tmp_path / "my_launchpad.yaml"))
    done = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    cwd, *args = record.read_text().splitlines()
    assert Path(cwd).resolve() == launch_dir.resolve()
    assert args[args.index("-l") + 1] == str(tmp_path / "my_launchpad.yaml")
    worker = Path(args[args.index("-w") + 1])
    assert worker == LAUNCHERS / f"{category}_worker.yaml" and worker.is_file()


def test_qlaunch_is_installed():
    qlaunch = Path(sys.executable).parent / "qlaunch"
    exe = str(qlaunch) if qlaunch.exists() else "qlaunch"
    out = subprocess.run([exe, "-h"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "-q QUEUEADAPTER_FILE" in out.stdout and "-w FWORKER_FILE" in out.stdout
