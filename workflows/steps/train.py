"""Training step: build a DeePMD-kit input, train and freeze one committee member, evaluate it.

Pure science, no FireWorks and no database. Three functions:

* :func:`make_training_input` (in :mod:`.train_input`) merges a user's ``input.json`` template over firegen's
  defaults and fills in the parts a campaign owns (data, type map, seeds, steps).
* :func:`train_model` runs ``dp --tf train`` and ``dp --tf freeze`` in a work folder (the freeze in-process
  when it can).
* :func:`evaluate_model` (in :mod:`.evaluate`) computes energy/force/virial RMSEs of a frozen model on labeled
  ``deepmd/npy`` systems with deepmd-kit's Python inference API.

Units (DeePMD-kit conventions): lengths in Å, energies in eV, forces in eV/Å, virials in
eV (virial = -stress * volume); RMSEs of energy and virial are reported per atom (eV/atom),
force RMSEs per component (eV/Å); wall times in seconds.
"""

from __future__ import annotations

from firegen.campaign.errors import disk_full
from firegen.workflows.steps import StepError, log_tail

import copy
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from firegen.workflows.steps.evaluate import evaluate_model
from firegen.workflows.steps.train_input import DEFAULT_INPUT, make_training_input, member_seeds

__all__ = [
    "DEFAULT_INPUT",
    "TrainResult",
    "TrainingError",
    "evaluate_model",
    "find_dp",
    "make_training_input",
    "member_seeds",
    "model_training_script",
    "parse_lcurve",
    "train_model",
]

#: Name of the frozen model written by :func:`train_model`.
FROZEN_MODEL_NAME = "frozen_model.pb"


class TrainingError(StepError):
    """``dp train`` or ``dp freeze`` failed; the message ends with the tail of the log."""


@dataclass
class TrainResult:
    """Outcome of :func:`train_model`.

    Attributes:
        frozen_model (Path): The frozen model (``frozen_model.pb``, TensorFlow graph).
        wall_time (float): Wall time of ``dp train`` plus ``dp freeze`` (s).
        train_time (float): Wall time of ``dp train`` alone (s).
        freeze_time (float): Wall time of ``dp freeze`` alone (s).
        lcurve (dict[str, float]): Last row of ``lcurve.out``, keyed by its column names
            (``step``, ``rmse_trn``, ``rmse_e_trn`` in eV/atom, ``rmse_f_trn`` in eV/Å,
            ``rmse_v_trn`` in eV/atom when virials are trained, ``*_val`` with
            validation data, ``lr``).
        input_dict (dict): The exact input written to ``input.json``.
        resolved_input (dict): deepmd-kit's normalized input (``out.json``), e.g. with
            the numbers that ``sel: "auto"`` resolved to.
        workdir (Path): The training folder.
        log (Path): Combined stdout/stderr of ``dp train`` and ``dp freeze``.
    """

    frozen_model: Path
    wall_time: float
    train_time: float
    freeze_time: float
    lcurve: dict[str, float]
    input_dict: dict
    resolved_input: dict = field(default_factory=dict)
    workdir: Path | None = None
    log: Path | None = None


def parse_lcurve(path: Path) -> dict[str, float]:
    """Return the last row of a deepmd-kit ``lcurve.out`` keyed by its column names.

    Args:
        path (Path): The ``lcurve.out`` file (header line ``# step rmse_trn ... lr``).

    Returns:
        dict[str, float]: Column name to value (RMSEs in eV/atom or eV/Å, see
        :class:`TrainResult`); empty if the file has no data rows.
    """
    path = Path(path)
    with path.open() as fh:
        header = fh.readline().lstrip("#").split()
    rows = np.loadtxt(path, comments="#", ndmin=2)
    if rows.size == 0:
        return {}
    return {name: float(value) for name, value in zip(header, rows[-1])}


def _thread_env(threads: int | None) -> dict[str, str]:
    """Environment for a deepmd-kit subprocess with thread counts set where unset.

    Values the user already set (including the ``TF_*`` aliases of the ``DP_*``
    variables) are kept.
    """
    env = dict(os.environ)
    if threads is None and env.get("OMP_NUM_THREADS", "").isdigit():
        threads = int(env["OMP_NUM_THREADS"])  # a local worker's share of the cores (launchers/local.py)
    if threads is None:
        try:
            threads = len(os.sched_getaffinity(0))
        except AttributeError:  # pragma: no cover - non-Linux
            threads = os.cpu_count() or 1
    threads = max(1, int(threads))
    env.setdefault("OMP_NUM_THREADS", str(threads))
    if "TF_INTRA_OP_PARALLELISM_THREADS" not in env:
        env.setdefault("DP_INTRA_OP_PARALLELISM_THREADS", str(threads))
    if "TF_INTER_OP_PARALLELISM_THREADS" not in env:
        env.setdefault("DP_INTER_OP_PARALLELISM_THREADS", "1")
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return env


def find_dp() -> str:
    """Return the ``dp`` executable: the one on ``PATH``, else the one beside Python.

    The fallback finds deepmd-kit's ``dp`` in a virtual environment that is used without
    being activated (``.venv/bin/python`` running firegen).
    """
    found = shutil.which("dp")
    if found:
        return found
    beside = Path(sys.executable).parent / "dp"
    return str(beside) if beside.is_file() else "dp"


def _run(cmd: list[str], workdir: Path, log: Path, env: dict[str, str], what: str) -> float:
    """Run ``cmd`` in ``workdir`` appending its output to ``log``; return wall time (s)."""
    start = time.perf_counter()
    with log.open("a") as fh:
        fh.write(f"$ {' '.join(cmd)}\n")
        fh.flush()
        try:
            subprocess.run(
                cmd, cwd=workdir, stdout=fh, stderr=subprocess.STDOUT, env=env, check=True
            )
        except FileNotFoundError as exc:
            raise TrainingError(
                f"{what} failed: executable '{cmd[0]}' not found; install deepmd-kit or "
                f"pass dp=<path to dp>"
            ) from exc
        except subprocess.CalledProcessError as exc:
            full = disk_full(workdir)  # its log may be on that disk too, and say nothing
            raise TrainingError(
                f"{what} failed with exit code {exc.returncode} in {workdir}" + (f": {full}" if full else ""),
                log_path=log,
                log_tail=log_tail(log, n_lines=40),
                transient=exc.returncode < 0,
            ) from exc
    return time.perf_counter() - start


def train_model(
    workdir: Path,
    input_dict: dict,
    init_model: Path | None = None,
    dp: str | None = None,
    threads: int | None = None,
) -> TrainResult:
    """Train and freeze one DeePMD model with the TensorFlow backend.

    Runs, in ``workdir``::

        dp --tf train input.json [--init-frz-model <init_model>]
        dp --tf freeze -o frozen_model.pb

    with output appended to ``workdir/train.log``. Thread counts (``OMP_NUM_THREADS``,
    ``DP_INTRA_OP_PARALLELISM_THREADS`` = ``threads``, ``DP_INTER_OP_PARALLELISM_THREADS``
    = 1) are set only where the environment does not set them already.

    With ``init_model`` the network starts from the weights of a frozen model (TensorFlow
    ``.pb``); its architecture (type map, descriptor, ``sel`` and fitting net) must match
    ``input_dict``. If the descriptor's ``sel`` is ``"auto"``, the parent's resolved
    ``sel`` is used so that new data with a different neighbor count cannot break the
    match (``input_dict`` itself is not modified; the written input is returned).

    Args:
        workdir (Path): Training folder (created; ``input.json``, ``lcurve.out``,
            checkpoints, ``out.json``, ``train.log`` and the frozen model go there).
        input_dict (dict): A deepmd-kit input, e.g. from :func:`make_training_input`.
        init_model (Path | None): Frozen model to initialize from (previous iteration).
        dp (str | None): The ``dp`` executable; default :func:`find_dp`.
        threads (int | None): Threads per process; default ``OMP_NUM_THREADS``, else the CPUs available.

    Returns:
        TrainResult: Frozen model path, timings (s), final lcurve row, inputs.

    Raises:
        TrainingError: If ``dp train`` or ``dp freeze`` fails, or produces no model; the
            message contains the tail of the log.
    """
    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    input_dict = copy.deepcopy(input_dict)
    if init_model is not None:
        init_model = Path(init_model).resolve()
        if not init_model.is_file():
            raise TrainingError(f"init_model {init_model} does not exist")
        _inherit_sel(input_dict, init_model)
    (workdir / "input.json").write_text(json.dumps(input_dict, indent=2))
    log = workdir / "train.log"
    env = _thread_env(threads)
    in_process = dp is None and _cpu_only_tensorflow()
    dp = dp or find_dp()

    train_cmd = [dp, "--tf", "train", "input.json"]
    if init_model is not None:
        train_cmd += ["--init-frz-model", str(init_model)]
    train_time = _run(train_cmd, workdir, log, env, "dp train")
    frozen = workdir / FROZEN_MODEL_NAME
    if in_process:
        freeze_time = _freeze_here(workdir, log)
    else:
        freeze_time = _run([dp, "--tf", "freeze", "-o", FROZEN_MODEL_NAME], workdir, log, env, "dp freeze")
    if not frozen.is_file():
        raise TrainingError(
            f"dp freeze produced no {FROZEN_MODEL_NAME}", log_path=log, log_tail=log_tail(log, n_lines=40)
        )

    disp_file = workdir / input_dict.get("training", {}).get("disp_file", "lcurve.out")
    lcurve = parse_lcurve(disp_file) if disp_file.is_file() else {}
    out_json = workdir / "out.json"
    resolved = json.loads(out_json.read_text()) if out_json.is_file() else {}
    return TrainResult(
        frozen_model=frozen,
        wall_time=train_time + freeze_time,
        train_time=train_time,
        freeze_time=freeze_time,
        lcurve=lcurve,
        input_dict=input_dict,
        resolved_input=resolved,
        workdir=workdir,
        log=log,
    )


def _cpu_only_tensorflow() -> bool:
    """Whether this process may freeze a model itself: deepmd-kit's TensorFlow imports and sees no GPU (a freeze
    opens a session with TensorFlow's default options, which would take the whole GPU from what runs after it)."""
    try:
        from deepmd.tf.env import tf
    except Exception:  # noqa: BLE001 - no deepmd-kit here, or one that cannot load: `dp freeze` says why
        return False
    return not tf.config.list_physical_devices("GPU")


def _freeze_here(workdir: Path, log: Path) -> float:
    """``dp --tf freeze -o frozen_model.pb`` in this process, in a graph of its own; returns its wall time (s).

    The same deepmd-kit function as the command, without its start-up: 0.5–0.8 s instead of 6 s for a small
    model on 2 cores, in a worker that preloaded deepmd-kit (``benchmarks/README.md``, "The main job")."""
    from deepmd.tf.entrypoints.freeze import freeze
    from deepmd.tf.env import tf

    start = time.perf_counter()
    with log.open("a") as fh:
        fh.write(f"$ dp --tf freeze -o {FROZEN_MODEL_NAME}  (in-process: deepmd.tf.entrypoints.freeze)\n")
    try:
        with tf.Graph().as_default():  # not the process's default graph: a worker freezes many models
            freeze(checkpoint_folder=str(workdir), output=str(workdir / FROZEN_MODEL_NAME))
    except Exception as exc:  # noqa: BLE001 - whatever deepmd-kit raised, said as a training error
        with log.open("a") as fh:
            fh.write(f"freeze failed: {type(exc).__name__}: {exc}\n")
        full = disk_full(workdir)  # as `dp freeze` failing would say it
        raise TrainingError(f"dp freeze failed in {workdir}: {type(exc).__name__}: {exc}"
                            + (f": {full}" if full else ""), log_path=log, log_tail=log_tail(log, n_lines=40)) from exc
    return time.perf_counter() - start


def _inherit_sel(input_dict: dict, init_model: Path) -> None:
    """Replace ``sel: "auto"`` by the parent model's resolved ``sel`` (in place)."""
    descriptor = input_dict.get("model", {}).get("descriptor", {})
    if descriptor.get("sel") != "auto":
        return
    parent = model_training_script(init_model)
    parent_sel = parent.get("model", {}).get("descriptor", {}).get("sel")
    if isinstance(parent_sel, list):
        descriptor["sel"] = parent_sel


def model_training_script(model: Path) -> dict:
    """Return the normalized training input stored inside a frozen TensorFlow model.

    Args:
        model (Path): A frozen ``.pb`` model written by ``dp --tf freeze``.

    Returns:
        dict: The input deepmd-kit trained it with (``sel`` resolved); empty if absent.
    """
    from deepmd.tf.utils.errors import GraphWithoutTensorError
    from deepmd.tf.utils.graph import get_tensor_by_name

    try:
        script = get_tensor_by_name(str(model), "train_attr/training_script")
    except GraphWithoutTensorError:
        return {}
    if isinstance(script, bytes):
        script = script.decode()
    return json.loads(str(script))
