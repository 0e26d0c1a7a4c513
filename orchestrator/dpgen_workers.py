"""Worker hints from a DP-GEN ``machine.json``: FWorker files and FireWorks queue adapters.

DP-GEN's three task kinds map onto firegen's categories: ``train`` and ``model_devi`` → ``gpu``,
``fp`` → ``cpu``. For each category this writes an FWorker file shaped like
``launchers/{gpu,cpu}_worker.yaml`` (env ``dp``/``lmp`` from the machine commands, ``mpi_ranks``
for DFT) and, for Slurm, PBS Pro or Torque, a ``CommonAdapter`` for ``qlaunch`` shaped like
``launchers/slurm_gpu.yaml`` / ``pbs_gpu.yaml``: nodes, cores, GPUs, queue, and walltime/account/
qos/mem/constraint read from ``custom_flags`` (other flags are kept as ``#SBATCH``/``#PBS`` lines
at the top of ``pre_rocket``); ``module_list``, ``source_list``, ``envs`` and ``prepend_script``
become ``pre_rocket`` lines. gpu jobs run one Firework each (``singleshot``); cpu jobs run
``rapidfire`` and stop starting new Fireworks 30 min (at most a quarter) before the walltime.

Walltimes as Slurm/PBS write them (``D-HH:MM:SS``, ``HH:MM:SS``, minutes); seconds in code.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import yaml

from firegen.launchers.local import LAUNCHERS

__all__ = ["split_mpi_command", "walltime_seconds", "worker_files"]


_MPI_LAUNCHERS = ("mpirun", "mpiexec", "srun")
_RANK_OPTIONS = ("-n", "-np", "--np", "--n", "--ntasks")
_FLAG_OPTIONS = ("--allow-run-as-root", "--oversubscribe", "--report-bindings", "--exclusive", "-v",
                 "--verbose", "-l", "--label")


def split_mpi_command(command: str) -> tuple[str, int | None, list[str]]:
    """``"mpirun -n 32 cp2k.popt -i input.inp"`` → ``("cp2k.popt", 32, ["-i", "input.inp"])``.

    Recognizes mpirun/mpiexec/srun with ``-n``/``-np``/``--ntasks`` N (``=`` forms too); other
    launcher options are skipped (with their value, except known flags). Without a launcher the
    ranks are None. The rest are the program's own arguments.
    """
    argv = shlex.split(command)
    ranks = None
    if argv and Path(argv[0]).name in _MPI_LAUNCHERS:
        i = 1
        while i < len(argv) and argv[i].startswith("-"):
            key, eq, val = argv[i].partition("=")
            takes_value = not eq and key not in _FLAG_OPTIONS and i + 1 < len(argv) and \
                not argv[i + 1].startswith("-")
            if takes_value:
                val = argv[i + 1]
                i += 1
            if key in _RANK_OPTIONS and val.isdigit():
                ranks = int(val)
            i += 1
        argv = argv[i:]
    if not argv:
        return "", ranks, []
    return argv[0], ranks, argv[1:]


_CATEGORY = {"train": "gpu", "model_devi": "gpu", "fp": "cpu"}
_FLAG = re.compile(r"^#(SBATCH|PBS)\s+(-{1,2}[A-Za-z][\w-]*)(?:[= ]\s*(.*?))?\s*$")


def walltime_seconds(text: str) -> int | None:
    """Seconds of a Slurm/PBS walltime (``D-HH:MM:SS``, ``HH:MM:SS``, ``MM:SS`` or minutes), or None."""
    m = re.fullmatch(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?", str(text).strip())
    if not m:
        return None
    days, a, b, c = (int(x) if x else None for x in m.groups())
    if b is None and c is None:
        secs = a * 60 if days is None else a * 3600  # "MM" or "D-HH"
    elif c is None:
        secs = a * 60 + b if days is None else a * 3600 + b * 60  # "MM:SS" or "D-HH:MM"
    else:
        secs = a * 3600 + b * 60 + c
    return secs + (days or 0) * 86400


def _hms(seconds: int) -> str:
    return f"{seconds // 3600:02d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def _hints(task: dict) -> dict:
    """Queue hints of one machine.json task: batch system, nodes, cores, GPUs, queue, walltime, ..."""
    res, machine = task["resources"], task["machine"]
    batch = str(machine.get("batch_type", "")).lower()
    out: dict[str, Any] = {"batch": {"slurm": "SLURM", "pbs": "PBS", "torque": "Torque"}.get(batch),
                           "batch_type": machine.get("batch_type"), "nodes": res.get("number_node", 1),
                           "cpus": res.get("cpu_per_node", 1), "gpus": res.get("gpu_per_node", 0),
                           "queue": res.get("queue_name") or None, "extra_flags": [], "pre": [], "post": []}
    out.update({k: v for k, v in task.get("hints", {}).items() if v is not None})
    for line in res.get("custom_flags") or []:
        m = _FLAG.match(str(line).strip())
        if not m:
            out["extra_flags"].append(str(line))
            continue
        _, opt, val = m.groups()
        val = (val or "").strip()
        if opt == "-l":  # PBS resource list: walltime=..., mem=..., select=...
            rest = []
            for item in val.split(","):
                key, _, value = item.partition("=")
                if key in ("walltime", "mem", "select"):
                    out[key] = value
                else:
                    rest.append(item)
            if rest:
                out["extra_flags"].append(f"#PBS -l {','.join(rest)}")
            continue
        key = {"-t": "walltime", "--time": "walltime", "-A": "account", "--account": "account", "--qos": "qos",
               "--mem": "mem", "-C": "constraint", "--constraint": "constraint", "-p": "queue",
               "--partition": "queue", "-q": "queue"}.get(opt)
        if key and val:
            out[key] = val
        else:
            out["extra_flags"].append(str(line))
    if out.get("walltime") is not None:
        secs = walltime_seconds(str(out["walltime"]))
        out["walltime"] = _hms(secs) if secs else str(out["walltime"])
    if res.get("module_purge"):
        out["pre"].append("module purge")
    out["pre"] += [f"module unload {m}" for m in res.get("module_unload_list") or []]
    out["pre"] += [f"module load {m}" for m in res.get("module_list") or []]
    out["pre"] += [f"source {s}" for s in res.get("source_list") or []]
    out["pre"] += [f"export {k}={shlex.quote(str(v))}" for k, v in (res.get("envs") or {}).items()]
    out["pre"] += list(res.get("prepend_script") or [])
    out["post"] += list(res.get("append_script") or [])
    return out


def _adapter(h: dict, category: str, worker: Path) -> dict | None:
    """A FireWorks CommonAdapter (qlaunch -q) for one hint set, shaped like launchers/slurm_*.yaml."""
    if h["batch"] is None:
        return None
    wt = walltime_seconds(h["walltime"]) if h.get("walltime") else None
    if category == "gpu":
        launch = f'rlaunch -l "$FIREGEN_LAUNCHPAD" -w "{worker}" singleshot'
    else:
        timeout = f" --timeout {max(wt - 1800, int(wt * 0.75))}" if wt else ""
        launch = f'rlaunch -l "$FIREGEN_LAUNCHPAD" -w "{worker}" rapidfire --nlaunches 0{timeout} --sleep 10'
    pre = h["extra_flags"] + h["pre"] + [': "${FIREGEN_LAUNCHPAD:?export FIREGEN_LAUNCHPAD=<launchpad yaml> '
                                         'before qlaunch}"', "export FIREGEN_LAUNCHPAD"]
    ranks = int(h["nodes"]) * int(h["cpus"])
    common = {"_fw_name": "CommonAdapter", "_fw_q_type": "SLURM" if h["batch"] == "SLURM" else "PBS",
              "rocket_launch": launch}
    if h["batch"] == "SLURM":
        q = {**common, "nodes": h["nodes"], "ntasks": 1 if category == "gpu" else ranks,
             "cpus_per_task": h["cpus"] if category == "gpu" else 1,
             "gres": f"gpu:{h['gpus']}" if h["gpus"] else None}
    elif h["batch"] == "PBS":
        select = h.get("select") or (f"{h['nodes']}:ncpus={h['cpus']}" + (
            f":ngpus={h['gpus']}" if h["gpus"] else f":mpiprocs={h['cpus']}") + (
            f":mem={str(h['mem']).lower().rstrip('b')}b" if h.get("mem") else ""))
        q = {**common, "_fw_template_file": str(LAUNCHERS / "pbs_template.txt"), "select": select,
             "export_vars": "PATH,FIREGEN_LAUNCHPAD"}
    else:  # Torque: FireWorks' own PBS template (nodes/ppn)
        q = {**common, "nnodes": h["nodes"], "ppnode": h["cpus"]}
    q.update({"walltime": h.get("walltime"), "queue": h.get("queue"), "account": h.get("account"),
              "job_name": f"firegen-{category}", "pre_rocket": "\n".join(pre),
              "post_rocket": "\n".join(h["post"]) or None})
    if h["batch"] == "SLURM":
        q.update({"qos": h.get("qos"), "constraint": h.get("constraint"), "mem": h.get("mem")})
    return q


def worker_files(tasks: dict[str, dict], workers_dir: Path) -> tuple[dict[str, dict], list[str]]:
    """FWorker files (``gpu_worker.yaml``, ``cpu_worker.yaml``) and queue adapters for the DP-GEN tasks.

    train and model_devi become category ``gpu`` (one ``gpu_queue.yaml`` when their resources agree,
    else ``gpu_train_queue.yaml`` and ``gpu_model_devi_queue.yaml``), fp becomes ``cpu``.
    Batch systems other than Slurm/PBS/Torque get no adapter (a note says to run ``rlaunch``).
    """
    files: dict[str, dict] = {}
    notes: list[str] = []
    hints = {name: _hints(task) for name, task in tasks.items()}
    for category in ("gpu", "cpu"):
        names = [n for n in ("train", "model_devi", "fp") if n in tasks and _CATEGORY[n] == category]
        if not names:
            continue
        worker = yaml.safe_load((LAUNCHERS / f"{category}_worker.yaml").read_text())
        worker["name"] = f"firegen-{category}"
        env = worker.setdefault("env", {})
        if category == "gpu" and "train" in tasks:
            env["dp"] = tasks["train"]["command"]
        if category == "gpu" and "model_devi" in tasks:
            env["lmp"] = tasks["model_devi"]["command"]
        if category == "cpu":
            _, ranks, _ = split_mpi_command(tasks["fp"]["command"] or "true")
            env["mpi_ranks"] = ranks or int(hints["fp"]["nodes"]) * int(hints["fp"]["cpus"])
        env = {k: v for k, v in env.items() if v is not None}
        worker["env"] = env
        worker_name = f"{category}_worker.yaml"
        files[worker_name] = worker
        worker_path = workers_dir / worker_name
        distinct = []
        for n in names:
            if not any(hints[n] == hints[m] for m in distinct):
                distinct.append(n)
        for n in distinct:
            adapter = _adapter(hints[n], category, worker_path)
            if adapter is None:
                notes.append(f"machine.json {n}: batch_type {hints[n]['batch_type']} has no FireWorks queue "
                             f"adapter; start workers with `rlaunch -w {worker_path} rapidfire` on those machines")
                continue
            files[f"{category}_queue.yaml" if len(distinct) == 1 else f"{category}_{n}_queue.yaml"] = adapter
    return files, notes
