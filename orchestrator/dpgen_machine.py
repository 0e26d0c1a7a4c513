"""Reading a DP-GEN ``machine.json``: its ``train``/``model_devi``/``fp`` tasks, checked.

    tasks, notes = check_machine(mdata, "machine.json")   # {"train": {...}, "fp": {...}}, notes

Each task is checked with dpdispatcher's ``Machine``/``Resources`` schemas, as DP-GEN loads them;
a schema error is one :class:`~firegen.orchestrator.dpgen_errors.DPGenImportError` line per bad
task. Old machine.json styles are read too: the oldest flat keys (``train_machine``,
``train_resources``, ...), a list per task (its first entry; a note when there are more) and the
v0 keys inside it (``batch``, ``numb_node``, ``task_per_node``, ``numb_gpu``, ``partition``,
``time_limit``, ``mem_limit``), renamed to dpdispatcher's; what that schema has no key for
(walltime, mem in GB, qos, account) is kept as ``hints``. Worker files are made from the tasks by
:mod:`firegen.orchestrator.dpgen_workers`.
"""

from __future__ import annotations

import math

from firegen.campaign.config_errors import error_line
from firegen.orchestrator.dpgen_errors import DPGenImportError, _schema_line

__all__ = ["check_machine"]


_OLD_BATCH = {"slurm": "Slurm", "pbs": "PBS", "torque": "Torque", "lsf": "LSF", "shell": "Shell"}
_OLD_RESOURCES = {"numb_node": "number_node", "task_per_node": "cpu_per_node", "numb_gpu": "gpu_per_node",
                  "partition": "queue_name"}


def _task_arginfo(name: str, resources: dict):
    from dargs import Argument
    from dpdispatcher import Machine, Resources

    machine = Machine.arginfo()
    machine.name = "machine"
    res = Resources.arginfo(detail_kwargs="batch_type" in resources)  # as Resources.load_from_dict
    res.name = "resources"
    return Argument(name, dict, [Argument("command", str, optional=False), machine, res,
                                 Argument("user_forward_files", list, optional=True),
                                 Argument("user_backward_files", list, optional=True),
                                 Argument("group_size", int, optional=True)])


def _old_task(entry: dict) -> tuple[dict, dict]:
    """A v0 machine entry in dpdispatcher's names, plus the hints the new schema has no key for."""
    machine = dict(entry.get("machine") or {})
    resources = dict(entry.get("resources") or {})
    hints = {}
    if "batch" in machine and "batch_type" not in machine:
        batch = str(machine.pop("batch"))
        machine["batch_type"] = _OLD_BATCH.get(batch.lower(), batch)
        machine.setdefault("context_type", "SSHContext" if machine.get("hostname") else "LocalContext")
        for key in ("hostname", "port", "username", "password", "work_path"):
            machine.pop(key, None)
        machine.setdefault("local_root", "./")
        machine.setdefault("remote_root", entry.get("machine", {}).get("work_path", "./"))
    for old, new in _OLD_RESOURCES.items():
        if old in resources:
            resources.setdefault(new, resources.pop(old))
    for key, hint in (("time_limit", "walltime"), ("mem_limit", "mem"), ("qos", "qos"), ("account", "account")):
        if key in resources:
            hints[hint] = resources.pop(key)
    if "mem" in hints and isinstance(hints["mem"], (int, float)) and math.isfinite(hints["mem"]):
        hints["mem"] = f"{int(hints['mem'])}G"  # v0 mem_limit is in GB
    resources.pop("exclude_list", None)
    resources.pop("with_mpi", None)
    if "group_size" not in resources:  # v0 kept it beside machine/resources (DP-GEN's convert_mdata)
        resources["group_size"] = entry.get("group_size", 1)
    out = {"command": entry.get("command", ""), "machine": machine, "resources": resources}
    for key in ("user_forward_files", "user_backward_files", "group_size"):
        if key in entry:
            out[key] = entry[key]
    return out, hints


def check_machine(mdata: dict, source: str = "machine.json") -> tuple[dict[str, dict], list[str]]:
    """The ``train``/``model_devi``/``fp`` entries of a machine.json, checked with dpdispatcher's
    schemas (what DP-GEN loads them with); returns ``(tasks, notes)``. Each task dict has
    ``command``, ``machine``, ``resources`` and ``hints`` (walltime/mem/qos/account of v0 files).

    Raises:
        DPGenImportError: one line per bad task entry.
    """
    from dargs.dargs import ArgumentError

    tasks: dict[str, dict] = {}
    notes: list[str] = []
    lines: list[str] = []
    for name in ("train", "model_devi", "fp"):
        entry = mdata.get(name)
        if entry is None:
            if f"{name}_machine" in mdata:  # the oldest flat style: train_machine, train_resources, ...
                entry = {"machine": mdata[f"{name}_machine"], "resources": mdata.get(f"{name}_resources", {}),
                         "command": mdata.get(f"{name}_command") or mdata.get(
                             {"train": "deepmd_path", "model_devi": "lmp_command", "fp": "fp_command"}[name], "")}
            else:
                continue
        if isinstance(entry, list):
            if not entry:
                lines.append(error_line(source, name, "is an empty list", fix="give one machine entry"))
                continue
            if len(entry) > 1:
                notes.append(f"{source}: {name} lists {len(entry)} machines; firegen's hints use the first "
                             "(every worker of a category pulls from the same queue)")
            entry = entry[0]
        if not isinstance(entry, dict):
            lines.append(error_line(source, name, "must be a mapping with command, machine and resources",
                                    fix="see DP-GEN's machine.json documentation"))
            continue
        bad = next((k for k in ("machine", "resources") if entry.get(k) is not None and not isinstance(entry[k], dict)),
                   None)
        if bad is not None:
            lines.append(error_line(source, f"{name}.{bad}", "must be a mapping", entry[bad],
                                    fix=f"give dpdispatcher's {bad.capitalize()} keys as DP-GEN's machine.json "
                                        "documents them"))
            continue
        entry, hints = _old_task(entry)
        arginfo = _task_arginfo(name, entry["resources"])
        try:
            entry = arginfo.normalize_value(entry, trim_pattern="_*")
            arginfo.check_value(entry, strict=False)
        except (ArgumentError, KeyError, TypeError, ValueError) as exc:
            lines.append(_schema_line(source, exc, "machine", base=name))
            continue
        tasks[name] = {**entry, "hints": hints}
    if lines:
        raise DPGenImportError(lines)
    return tasks, notes
