"""`firegen run`'s local workers: how many of each category, the threads each gets, and its GPU."""

import os
import stat
import subprocess
import sys

import pytest

from firegen.launchers.local import plan_workers, visible_gpus, worker_env


def _plan(**kw):
    return [(s.name, s.threads, s.device) for s in plan_workers(**kw)]


def test_without_a_gpu_members_train_side_by_side_one_thread_each():
    assert _plan(n_cores=2, gpus=[], committee=4) == [("gpu", 1, None), ("gpu-2", 1, None),
                                                      ("cpu", 1, None), ("cpu-2", 1, None)]
    # no more gpu workers than members, the cores shared among them; cpu workers up to 8 label Fireworks
    plan = plan_workers(n_cores=16, gpus=[], committee=2)
    assert [(s.name, s.threads) for s in plan if s.kind == "gpu"] == [("gpu", 8), ("gpu-2", 8)]
    assert [(s.name, s.threads) for s in plan if s.kind == "cpu"] == [("cpu", 2)] + [(f"cpu-{i}", 2) for i in range(2, 9)]


def test_one_gpu_worker_per_gpu_each_given_its_own():
    plan = plan_workers(n_cores=16, gpus=["2", "5"], committee=4)
    assert [(s.name, s.threads, s.device) for s in plan if s.kind == "gpu"] == [("gpu", 8, "2"), ("gpu-2", 8, "5")]
    # more workers than GPUs asked for: they take the GPUs in turn
    plan = plan_workers(gpu=3, cpu=1, n_cores=12, gpus=["0", "1"])
    assert [s.device for s in plan] == ["0", "1", "0", None] and plan[-1].threads == 12


def test_counts_given_are_kept_and_a_count_below_one_is_refused():
    assert _plan(gpu=1, cpu=1, n_cores=2, gpus=[]) == [("gpu", 2, None), ("cpu", 2, None)]
    with pytest.raises(ValueError, match="--cpu-workers must be at least 1, got 0"):
        plan_workers(gpu=1, cpu=0, n_cores=2, gpus=[])


def test_visible_gpus_from_cuda_visible_devices_or_nvidia_smi(monkeypatch, tmp_path):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3, 1")
    assert visible_gpus() == ["3", "1"]
    for hidden in ("", "-1"):
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", hidden)
        assert visible_gpus() == []
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    smi = tmp_path / "nvidia-smi"  # two GPUs, the first split into MIG instances (indented lines)
    smi.write_text("#!/bin/sh\necho 'GPU 0: NVIDIA A100-SXM4-40GB (UUID: GPU-a)'\n"
                   "echo '  MIG 3g.20gb     Device  0: (UUID: MIG-b)'\necho 'GPU 1: NVIDIA A100-SXM4-40GB (UUID: GPU-c)'\n")
    smi.chmod(smi.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    assert visible_gpus() == ["0", "1"]
    smi.write_text("#!/bin/sh\nexit 9\n")  # a driver that does not answer: no GPU, not an error
    assert visible_gpus() == []


THREADS = ("OMP_NUM_THREADS", "DP_INTRA_OP_PARALLELISM_THREADS", "DP_INTER_OP_PARALLELISM_THREADS")


def test_worker_env_threads_given_win_and_otherwise_the_users_are_kept(monkeypatch, tmp_path):
    for name in THREADS + ("TF_INTRA_OP_PARALLELISM_THREADS", "TF_INTER_OP_PARALLELISM_THREADS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr("firegen.launchers.local.cores", lambda: 6)
    env = worker_env(tmp_path / "lp.yaml", threads=1, device="5")
    assert [env[name] for name in THREADS] == ["1", "1", "1"] and env["CUDA_VISIBLE_DEVICES"] == "5"
    assert [worker_env(tmp_path / "lp.yaml")[name] for name in THREADS] == ["6", "6", "1"]  # nothing set: the cores
    monkeypatch.setenv("OMP_NUM_THREADS", "4")  # a cluster job's share
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    env = worker_env(tmp_path / "lp.yaml")
    assert [env[name] for name in THREADS] == ["4", "4", "1"] and env["CUDA_VISIBLE_DEVICES"] == "0,1"
    monkeypatch.setenv("TF_INTRA_OP_PARALLELISM_THREADS", "3")  # deepmd-kit's older name: honoured, not overridden
    assert "DP_INTRA_OP_PARALLELISM_THREADS" not in worker_env(tmp_path / "lp.yaml")
    env = worker_env(tmp_path / "lp.yaml", threads=2)  # `firegen run`'s share, or `firegen worker --threads 2`
    assert [env[name] for name in THREADS] == ["2", "2", "1"]


def test_a_worker_that_preloaded_deepmd_passes_its_threads_on(monkeypatch, tmp_path):
    """deepmd-kit writes DP_*_OP_PARALLELISM_THREADS=0 (every core) into the environment when it is imported unless
    they are set: a worker's environment sets them, so what it starts (dp train, LAMMPS) runs the worker's share."""
    for name in THREADS + ("TF_INTRA_OP_PARALLELISM_THREADS", "TF_INTER_OP_PARALLELISM_THREADS"):
        monkeypatch.delenv(name, raising=False)
    code = "import os, deepmd.tf.env; print([os.environ.get(n) for n in %r])" % (THREADS[1:],)

    def after_import(env):
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
        return out.stdout.strip().splitlines()[-1]

    assert after_import(dict(os.environ)) == "['0', '0']"  # what a worker preloading deepmd-kit had before
    assert after_import(worker_env(tmp_path / "lp.yaml", threads=1)) == "['1', '1']"
