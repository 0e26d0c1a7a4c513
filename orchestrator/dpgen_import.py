"""DP-GEN ``param.json`` (+ ``machine.json``) → a firegen campaign config, with no rewriting.

    conv = import_dpgen("param.json", "machine.json", output="campaign.yaml")  # also campaign.workers/
    cfg = campaign_from_param("param.json", "machine.json")                    # in memory (submit/validate)

The param file is first checked with DP-GEN's own argument schema
(``dpgen.generator.arginfo.run_jdata_arginfo``, normalized and checked strictly as ``dpgen run``
does: :mod:`firegen.orchestrator.dpgen_param`); ``machine.json`` with dpdispatcher's
``Machine``/``Resources`` schemas as DP-GEN loads them (:mod:`firegen.orchestrator.dpgen_machine`).
A schema error is one line naming the key. Keys firegen cannot honour are collected and reported
in one message (``DPGenImportError``), never dropped silently; ``ignore_unsupported`` converts
without them and keeps the list (printed, and written as comments at the top of the YAML).
Keys left at DP-GEN's default are not reported. Relative paths in ``param.json`` are read
against its folder (DP-GEN reads them against the folder ``dpgen run`` runs in).

The mapping, key by key: :mod:`firegen.orchestrator.dpgen_keys`.

Worker files are made by :mod:`firegen.orchestrator.dpgen_workers`. Old machine.json styles (a
list per task, the v0 keys inside it) are read too: see :mod:`firegen.orchestrator.dpgen_machine`.
This module is the conversion; it re-exports the readers (``load_dpgen_file``, ``is_dpgen_param``,
``check_param``, ``check_machine``) and :class:`DPGenImportError`
(:mod:`firegen.orchestrator.dpgen_errors`), so that they can still be imported from here.

Units: eV, eV/Å, Å, K, bar; firegen ``dt`` in fs (DP-GEN's model_devi_dt is in ps).
"""

from __future__ import annotations

import copy
import glob
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from firegen.campaign.config import CampaignConfig, ConfigError, validate_dict
from firegen.campaign.config_errors import error_line
from firegen.campaign.config_fields import NOTHING
from firegen.campaign.config_stages import StageConfig
from firegen.orchestrator.dpgen_errors import DPGenImportError, name_user_keys
from firegen.orchestrator.dpgen_keys import (ENSEMBLES, IGNORED, JOB_FIELDS, JOB_MAPPED, JOB_TRUST, JOB_WHY,
                                            MAPPED, ORIGINS, TRAINING_OWNED, V_UNUSED, WHY)
from firegen.orchestrator.dpgen_machine import check_machine
from firegen.orchestrator.dpgen_param import check_param, is_dpgen_param, load_dpgen_file
from firegen.orchestrator.dpgen_run import read_record, resume_job, run_data
from firegen.orchestrator.dpgen_labeler import LabelerKeys
from firegen.orchestrator.dpgen_workers import worker_files

__all__ = ["Conversion", "DPGenImportError", "campaign_from_param", "check_machine", "check_param",
           "convert", "import_dpgen", "is_dpgen_param", "load_dpgen_file", "workers_dir_for"]

# ---- the conversion --------------------------------------------------------------------------
@dataclass
class Conversion:
    """The result of converting a DP-GEN param (+ machine) file.

    Attributes:
        config: the campaign config as plain data (paths relative to ``base_dir`` or absolute).
        base_dir: the folder relative paths in ``config`` are relative to (the YAML's folder).
        source: the param file's name, for messages.
        unsupported: one ``"key: why"`` per DP-GEN setting firegen cannot honour.
        notes: differences in behaviour worth knowing (not errors).
        workers: worker files by name (fworkers, queue adapters), as plain data.
        resume_job: index of the first DP-GEN model_devi job the stages start with.
        origins: firegen field -> the DP-GEN key it came from (errors name the DP-GEN key).
    """

    config: dict
    base_dir: Path
    source: str
    unsupported: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    workers: dict[str, dict] = field(default_factory=dict)
    resume_job: int = 0
    origins: dict[str, str] = field(default_factory=dict)

    def unsupported_message(self) -> str:
        """The one-line list of unsupported keys."""
        return error_line(self.source, "", "DP-GEN settings firegen does not support: " + "; ".join(self.unsupported),
                          fix="remove them from the param file, or convert without them (--ignore-unsupported)")

    def check(self, ignore_unsupported: bool = False) -> None:
        """Raise :class:`DPGenImportError` (one line) when some settings are unsupported."""
        if self.unsupported and not ignore_unsupported:
            raise DPGenImportError([self.unsupported_message()])

    def campaign(self, check_files: bool = True) -> CampaignConfig:
        """The validated :class:`CampaignConfig` (relative paths against ``base_dir``); errors name the
        param.json key each firegen field came from (``numb_models``, not ``committee.size``)."""
        try:
            return validate_dict(copy.deepcopy(self.config), self.source, self.base_dir, check_files)
        except ConfigError as exc:
            raise DPGenImportError(name_user_keys(exc.lines, self.source, self.origins)) from None

    def to_yaml(self) -> str:
        """The campaign YAML, with the conversion's notes and unsupported keys as comments."""
        head = [f"# Converted from DP-GEN {self.source} by `firegen import-dpgen` "
                "(mapping: firegen.orchestrator.dpgen_import)."]
        if self.resume_job:
            head.append(f"# Resumes at model_devi_jobs[{self.resume_job}] (DP-GEN finished the iterations before).")
        head += [f"# unsupported, left out: {u}" for u in self.unsupported]
        head += [f"# note: {n}" for n in self.notes]
        body = yaml.safe_dump(self.config, sort_keys=False, default_flow_style=None, width=100)
        return "\n".join(head) + "\n" + body

    def write(self, output: str | os.PathLike) -> list[Path]:
        """Write the YAML to ``output`` and the worker files to ``<stem>.workers/``; return the paths."""
        output = Path(output)
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(self.to_yaml())
        written = [output]
        if self.workers:
            folder = workers_dir_for(output)
            folder.mkdir(parents=True, exist_ok=True)
            for name, data in self.workers.items():
                path = folder / name
                path.write_text(yaml.safe_dump(data, sort_keys=False, width=100))
                written.append(path)
        return written


def workers_dir_for(output: str | os.PathLike) -> Path:
    """``campaign.yaml`` → ``campaign.workers/`` beside it."""
    output = Path(output)
    return output.with_name(output.stem + ".workers")


def _slug(text: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-._")[:64]
    return slug if slug and slug[0].isalnum() else ("dpgen-" + slug)[:64].rstrip("-")


def _defaults(arginfo) -> dict[str, Any]:
    """DP-GEN's default of every optional key (all variants' choices)."""
    from dargs.dargs import _Flags

    out: dict[str, Any] = {}

    def walk(arg):
        for sub in arg.sub_fields.values():
            if sub.optional and sub.default is not _Flags.NONE:
                out.setdefault(sub.name, sub.default)
        for variant in arg.sub_variants.values():
            for choice in variant.choice_dict.values():
                walk(choice)

    walk(arginfo)
    return out


def _uniform(value: Any) -> tuple[Any, bool]:
    """``(scalar, True)`` for a scalar or a list/dict of equal values, else ``(value, False)``."""
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, list):
        if value and all(v == value[0] for v in value):
            return value[0], True
        return value, False
    return value, True


_TEMPLATE_SECTIONS = (("model",), ("training",), ("model", "descriptor"), ("model", "fitting_net"),
                      ("training", "training_data"))


def _not_a_mapping(param: Any, key: str) -> tuple[str, Any] | None:
    """(DP-GEN key, value) of the first part of a training template that must be a mapping and is not."""
    if not isinstance(param, dict):
        return key, param
    for path in _TEMPLATE_SECTIONS:
        node: Any = param
        for part in path:
            if not isinstance(node, dict) or part not in node:
                break
            node = node[part]
        else:
            if not isinstance(node, dict):
                return f"{key}.{'.'.join(path)}", node
    return None


def _stage_accepts(ensemble: str) -> bool:
    probe = {"name": "probe", "ensemble": ensemble, "temperatures": [300.0], "nsteps": 10, "trj_freq": 1}
    if ensemble.startswith("npt"):
        probe["pressures"] = [1.0]
    try:
        StageConfig.model_validate(probe)
        return True
    except Exception:
        return False


class _Converter(LabelerKeys):
    def __init__(self, jdata: dict, param_dir: Path, base_dir: Path, source: str,
                 tasks: dict[str, dict] | None, run_dir: Path | None, name: str | None):
        self.j = jdata
        self.param_dir = param_dir
        self.base_dir = base_dir
        self.source = source
        self.tasks = tasks or {}
        self.run_dir = run_dir
        self.name = name
        self.unsupported: list[str] = []
        self.notes: list[str] = []
        self.errors: list[str] = []
        self.origins: dict[str, str] = dict(ORIGINS)  # firegen field -> the DP-GEN key it came from
        self.machine_source = "machine.json"

    # helpers
    def err(self, loc: str, msg: str, got: Any = None, fix: str = "") -> None:
        self.errors.append(error_line(self.source, loc, msg, NOTHING if got is None else got, fix))

    def num(self, loc: str, value: Any, kind: type = float) -> Any:
        """``value`` as ``kind`` (float or int), or an error naming the DP-GEN key ``loc``: DP-GEN's schema
        takes ``true`` for 1 and lets NaN through, firegen does not."""
        whole = kind is int
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                or (whole and isinstance(value, float) and not value.is_integer()):
            self.err(loc, f"must be a finite {'whole number' if whole else 'number'}", value,
                     "write a number there (true/false and NaN are not numbers)")
            return kind(1)
        return kind(value)

    def path(self, value: str, root: Path | None = None) -> Path:
        p = Path(os.path.expanduser(str(value)))
        return p if p.is_absolute() else ((root or self.param_dir) / p)

    def rel(self, path: Path) -> str:
        try:
            return Path(os.path.relpath(path.resolve(), self.base_dir)).as_posix()
        except ValueError:  # another drive
            return str(path.resolve())

    def unsupported_key(self, key: str, why: str) -> None:
        self.unsupported.append(f"{key} ({why})")

    # sections
    def keys(self, defaults: dict) -> None:
        for key, value in self.j.items():
            if key in MAPPED:
                continue
            if key in defaults and value == defaults[key]:
                continue
            if key in IGNORED:
                self.notes.append(f"{key} is ignored: {IGNORED[key]}")
            elif key.startswith("model_devi_numb_candi") or key.startswith("model_devi_perc_candi"):
                if self.j.get("model_devi_adapt_trust_lo"):
                    continue  # reported with model_devi_adapt_trust_lo
                self.notes.append(f"{key} is ignored (it only matters with model_devi_adapt_trust_lo)")
            elif key == "training_reuse_old_ratio" and self.j.get("training_reuse_iter") is None:
                self.notes.append("training_reuse_old_ratio is ignored (it only matters with training_reuse_iter)")
            elif key in ("init_batch_size", "sys_batch_size") and (
                    value == "auto" or (isinstance(value, list) and all(v == "auto" for v in value))):
                self.notes.append(f"{key} 'auto' is ignored: firegen's training uses batch_size auto unless "
                                  "the template's training.training_data sets one")
            else:
                self.unsupported_key(key, WHY.get(key, "no firegen equivalent"))
        if self.j.get("model_devi_skip", 0) != 0:
            self.unsupported_key("model_devi_skip", "firegen judges every written frame; set it to 0")
        engine = self.j.get("model_devi_engine", "lammps")
        if engine != "lammps":
            self.unsupported_key("model_devi_engine", f"'{engine}': firegen explores with LAMMPS (or ASE)")
        if self.j.get("mlp_engine", "dp") != "dp":
            self.unsupported_key("mlp_engine", "firegen trains DeePMD models only")

    def trust(self) -> dict:
        out = {}
        for key, name in (("model_devi_f_trust_lo", "f_lo"), ("model_devi_f_trust_hi", "f_hi")):
            value, ok = _uniform(self.j[key])
            if not ok:
                self.unsupported_key(key, "per-system trust levels differ; firegen's are campaign-wide")
                value = min(value)
            out[name] = self.num(key, value)
        v = []
        for key in ("model_devi_v_trust_lo", "model_devi_v_trust_hi"):
            value, ok = _uniform(self.j.get(key, V_UNUSED))
            if not ok:
                self.unsupported_key(key, "per-system trust levels differ; firegen's are campaign-wide")
                value = min(value)
            v.append(self.num(key, value))
        if min(v) < V_UNUSED:
            out["v_lo"], out["v_hi"] = v
            self.notes.append("with virial trust levels, firegen classifies a frame with one deviation in its "
                              "window and the other above its hi level as failed (dpgen2's rule); DP-GEN 0.14 "
                              "makes it a candidate")
        return out

    def systems(self, used: list[int]) -> tuple[list[dict], dict[int, list[str]]]:
        sys_configs = self.j["sys_configs"]
        prefix = self.j.get("sys_configs_prefix")
        fmt = self.j.get("sys_format", "vasp/poscar")
        fw_fmt = f"dpdata:{fmt}"  # read as DP-GEN reads them (and dpdata is loaded for the initial data anyway)
        systems, names = [], {}
        for i in used:
            if i < 0 or i >= len(sys_configs):
                self.err("model_devi_jobs", f"sys_idx {i} has no sys_configs entry", i,
                         f"use an index below {len(sys_configs)}")
                continue
            files: list[str] = []
            for k, pattern in enumerate(sys_configs[i]):
                full = self.path(os.path.join(prefix, pattern) if prefix else pattern)
                matched = sorted(glob.glob(str(full)))
                if not matched:
                    self.err(f"sys_configs[{i}][{k}]", f"matches no file ({full})", pattern,
                             "fix the pattern (relative to the param file's folder, or sys_configs_prefix)")
                files += matched
            names[i] = []
            for n, f in enumerate(files):
                self.origins[f"systems[{len(systems)}]"] = f"sys_configs[{i}] (file {f})"
                self.origins[f"systems[{len(systems)}].fmt"] = "sys_format"
                systems.append({"name": f"sys{i}-{n:03d}", "structure": self.rel(Path(f)), "fmt": fw_fmt})
                entry = systems[-1]
                names[i].append(entry["name"])
        return systems, names

    def stages(self, start: int) -> tuple[list[dict], list[int]]:
        jobs = self.j["model_devi_jobs"]
        groups: list[tuple[int, int, dict]] = []
        for k in range(start, len(jobs)):
            if groups and jobs[k] == groups[-1][2]:
                groups[-1] = (groups[-1][0], k, groups[-1][2])
            else:
                groups.append((k, k, jobs[k]))
        used = sorted({i for _, _, job in groups for i in job.get("sys_idx", [])})
        out = []
        threshold = self.j.get("fp_accurate_threshold")
        default_dt_ps = self.j["model_devi_dt"]
        multi_sys = []
        for a, b, job in groups:
            loc = f"model_devi_jobs[{a}]"
            for key in job:
                if key in JOB_WHY:
                    self.unsupported_key(f"{loc}.{key}", JOB_WHY[key])
                elif key == "neidelay":
                    self.notes.append(f"{loc}.neidelay is ignored (neighbour-list rebuild delay: speed only)")
                elif key in JOB_TRUST:
                    glob_value = _uniform(self.j.get(key, V_UNUSED))[0]
                    if _uniform(job[key]) != (glob_value, True):
                        self.unsupported_key(f"{loc}.{key}", "per-job trust levels; firegen's are campaign-wide")
                elif key not in JOB_MAPPED:
                    self.unsupported_key(f"{loc}.{key}", "no firegen equivalent")
            ensemble = job.get("ensemble")
            if ensemble is None:
                self.err(f"{loc}.ensemble", "is required (firegen writes the LAMMPS input itself)",
                         fix="add ensemble: nvt or npt")
                continue
            mapped = ENSEMBLES.get(ensemble)
            if mapped is None or not _stage_accepts(mapped):
                self.unsupported_key(f"{loc}.ensemble", f"'{ensemble}' has no firegen ensemble here")
                continue
            stage: dict[str, Any] = {"name": f"job{a:03d}" if a == b else f"job{a:03d}-{b:03d}",
                                     "ensemble": mapped}
            if not job.get("temps"):
                self.err(f"{loc}.temps", "is required", fix="list temperatures in K, e.g. temps: [300]")
                continue
            stage["temperatures"] = [self.num(f"{loc}.temps[{n}]", t) for n, t in enumerate(job["temps"])]
            if mapped.startswith("npt"):
                if not job.get("press"):
                    self.err(f"{loc}.press", f"is required for ensemble {ensemble}",
                             fix="list pressures in bar, e.g. press: [1.0]")
                    continue
                stage["pressures"] = [self.num(f"{loc}.press[{n}]", p) for n, p in enumerate(job["press"])]
            elif job.get("press"):
                self.notes.append(f"{loc}.press is not used by ensemble {ensemble} (DP-GEN ignores it too)")
            if job.get("nsteps") is None:
                self.err(f"{loc}.nsteps", "is required (firegen writes the LAMMPS input itself)",
                         fix="add nsteps, e.g. nsteps: 1000")
                continue
            dt_key = f"{loc}.dt" if "dt" in job else "model_devi_dt"
            stage["nsteps"] = self.num(f"{loc}.nsteps", job["nsteps"], int)
            stage["trj_freq"] = self.num(f"{loc}.trj_freq", job["trj_freq"], int)
            stage["dt"] = round(self.num(dt_key, job.get("dt", default_dt_ps)) * 1000.0, 9)  # ps → fs
            stage["tau_t"] = self.num(f"{loc}.taut", job.get("taut", 0.1))
            stage["tau_p"] = self.num(f"{loc}.taup", job.get("taup", 0.5))
            stage["systems"] = [i for i in job["sys_idx"]]  # resolved to names by convert()
            stage["converged_when"] = {"accurate_ratio": self.num("fp_accurate_threshold", threshold)
                                       if threshold is not None else 1.0}
            stage["max_iterations"] = b - a + 1
            here = f"stages[{len(out)}]"
            self.origins.update({here: loc, f"{here}.dt": dt_key,
                                 f"{here}.converged_when": "fp_accurate_threshold", f"{here}.systems": f"{loc}.sys_idx"})
            self.origins.update({f"{here}.{ours}": f"{loc}.{theirs}" for ours, theirs in JOB_FIELDS.items()})
            if len(job["sys_idx"]) > 1:
                multi_sys.append((loc, len(job["sys_idx"])))
            out.append(stage)
        if multi_sys:
            loc, n = multi_sys[0]
            self.notes.append(f"DP-GEN caps fp_task_max per system, firegen per iteration: {loc} explores {n} "
                              f"systems, so DP-GEN could label up to {n} x fp_task_max there; raise "
                              "selection.max_per_iteration for the same budget")
        return out, used

    def committee(self) -> dict:
        param = self.j["default_training_param"]
        key = "default_training_param"
        if isinstance(param, list):
            if not all(p == param[0] for p in param):
                self.unsupported_key("default_training_param", "a different training input per member; "
                                     "firegen's committee members differ only in their seeds")
            param, key = (param[0], f"{key}[0]") if param else ({}, key)
        self.origins["committee.training"] = key
        bad = _not_a_mapping(param, key)
        if bad is not None:
            self.err(bad[0], "must be a mapping (a section of deepmd-kit's input.json)", bad[1],
                     "give it as deepmd-kit's input.json documents it, e.g. model: {descriptor: {...}, fitting_net: "
                     "{...}}")
            return {"size": 2, "training": {}}
        template = copy.deepcopy(param)
        model = template.get("model", {})
        model.pop("type_map", None)
        for part in ("descriptor", "fitting_net"):
            if isinstance(model.get(part), dict):
                model[part].pop("seed", None)
        training = template.get("training", {})
        steps = training.pop("numb_steps", None)
        stop_batch = training.pop("stop_batch", None)
        steps_key = f"{key}.training.{'numb_steps' if steps is not None else 'stop_batch'}"
        steps = steps if steps is not None else stop_batch
        for key in ("systems", "set_prefix", "numb_test", "seed", "validation_data"):
            training.pop(key, None)
        if "batch_size" in training:
            training.setdefault("training_data", {}).setdefault("batch_size", training.pop("batch_size"))
        if isinstance(training.get("training_data"), dict):
            for key in TRAINING_OWNED:
                training["training_data"].pop(key, None)
        backend = self.j.get("train_backend", "tensorflow")
        if backend != "tensorflow":
            self.unsupported_key("train_backend", f"'{backend}': firegen trains with tensorflow only (frozen .pb "
                                 "models for LAMMPS and dp test); train with train_backend: tensorflow")
            backend = "tensorflow"
        fmt = self.j.get("model_format")
        if fmt is not None and fmt != {"tensorflow": "pb", "pytorch": "pth"}[backend]:
            self.unsupported_key("model_format", WHY["model_format"])
        out = {"size": self.num("numb_models", self.j["numb_models"], int), "backend": backend,
               "warm_start": self.warm_start(), "training": template}
        if steps is not None:
            out["numb_steps"] = self.num(steps_key, steps, int)
            self.origins["committee.numb_steps"] = steps_key
        else:
            self.notes.append("default_training_param sets no training.numb_steps; firegen's default "
                              "committee.numb_steps applies")
        return out

    def warm_start(self) -> dict:
        """DP-GEN's training_init_model (reuse from iteration 1, same settings) and training_reuse_* keys."""
        reuse = self.j.get("training_reuse_iter")
        if reuse is None:
            init_model = bool(self.j.get("training_init_model"))
            return {"enabled": True, "poor_above": None} if init_model else {"enabled": False}
        # DP-GEN warm-starts every member from its own previous model, however poor
        out = {"enabled": True, "from_iteration": max(1, self.num("training_reuse_iter", reuse, int)),
               "poor_above": None}
        steps_key = "training_reuse_stop_batch" if "training_reuse_stop_batch" in self.j else "training_reuse_numb_steps"
        if self.j.get(steps_key) is not None:
            out["numb_steps"] = self.num(steps_key, self.j[steps_key], int)
        for ours in ("start_lr", "start_pref_e", "start_pref_f"):
            if self.j.get(f"training_reuse_{ours}") is not None:
                out[ours] = self.num(f"training_reuse_{ours}", self.j[f"training_reuse_{ours}"])
        return out

    def initial_data(self) -> dict:
        prefix = self.j.get("init_data_prefix")
        root = self.path(prefix) if prefix else self.param_dir
        npy, imported = [], []
        for k, entry in enumerate(self.j["init_data_sys"]):
            path = self.path(entry, root)
            if path.suffix.lower() in (".h5", ".hdf5") or (path.is_file() and path.suffix):
                self.unsupported_key(f"init_data_sys[{k}]", "HDF5 init data; convert it to deepmd/npy with dpdata")
                continue
            if not path.is_dir():
                self.err(f"init_data_sys[{k}]", f"folder not found: {path}", entry,
                         "fix the path (relative to init_data_prefix, or the param file's folder)")
                continue
            if self.run_dir is not None:
                self.origins[f"initial_data.imported[{len(imported)}]"] = f"init_data_sys[{k}]"
                imported.append({"path": str(path.resolve()), "source": "dpgen", "dpgen_iteration": None})
            else:
                self.origins[f"initial_data.deepmd_npy[{len(npy)}]"] = f"init_data_sys[{k}]"
                npy.append(self.rel(path))
        out: dict[str, Any] = {}
        if npy:
            out["deepmd_npy"] = npy
        if imported:
            out["imported"] = imported
        return out

    def run_data(self) -> tuple[list[dict], int]:
        if self.run_dir is None:
            return [], 0
        if not self.run_dir.is_dir():
            self.err("run_dir", f"folder not found: {self.run_dir}", fix="give the folder `dpgen run` ran in")
            return [], 0
        try:
            record = read_record(self.run_dir)
        except ValueError as exc:
            self.errors.append(str(exc))
            return [], 0
        if not record:
            self.notes.append(f"{self.run_dir} has no record.dpgen: no DP-GEN iteration is finished, "
                              "firegen starts at model_devi_jobs[0]")
        start = resume_job(record)
        data = [{"path": str(d.path), "source": "dpgen", "dpgen_iteration": d.iteration}
                for d in run_data(self.run_dir, before=start)]
        return data, start

    def selection(self) -> dict:
        out: dict[str, Any] = {"trust": self.trust(), "policy": "random", "dedup": {"displacement": None},  # DP-GEN's
                               "max_per_iteration": self.num("fp_task_max", self.j["fp_task_max"], int),
                               "min_per_iteration": self.num("fp_task_min", self.j["fp_task_min"], int)}
        if self.j.get("fp_accurate_threshold") is not None:
            out["skip_when_accurate_above"] = self.num("fp_accurate_threshold", self.j["fp_accurate_threshold"])
            if self.j.get("fp_accurate_soft_threshold") is not None:
                out["soft_accurate_ratio"] = self.num("fp_accurate_soft_threshold", self.j["fp_accurate_soft_threshold"])
        elif self.j.get("fp_accurate_soft_threshold") is not None:
            self.notes.append("fp_accurate_soft_threshold without fp_accurate_threshold has no effect in DP-GEN")
        if self.j.get("model_devi_adapt_trust_lo"):
            keys = [k for k in ("model_devi_numb_candi_f", "model_devi_numb_candi_v", "model_devi_perc_candi_f",
                                "model_devi_perc_candi_v") if k in self.j]
            self.unsupported_key("model_devi_adapt_trust_lo" + (f" (+ {', '.join(keys)})" if keys else ""),
                                 WHY["model_devi_adapt_trust_lo"])
        return out


def convert(jdata: dict, param_dir: str | os.PathLike, *, machine: dict | None = None,
            base_dir: str | os.PathLike | None = None, name: str | None = None,
            run_dir: str | os.PathLike | None = None, source: str = "param.json",
            workers_dir: str | os.PathLike | None = None, machine_source: str = "machine.json") -> Conversion:
    """Convert a DP-GEN param dict (and machine dict) into a firegen campaign config.

    Args:
        jdata: the param.json content (checked here with DP-GEN's schema).
        param_dir: folder relative paths in ``jdata`` are read against.
        machine: the machine.json content, or None.
        base_dir: folder the config's relative paths are written against (default ``param_dir``).
        name: campaign name (default: the param folder's name).
        run_dir: a DP-GEN run folder to import and resume (see :mod:`firegen.orchestrator.dpgen_run`).
        source: the param file's name, for messages.
        machine_source: the machine file's name, for messages.
        workers_dir: where worker files will be written (absolute paths in the queue adapters).

    Returns:
        A :class:`Conversion`; ``unsupported`` may be non-empty (see :meth:`Conversion.check`).

    Raises:
        DPGenImportError: schema errors, missing files, jobs firegen cannot express.
    """
    from dpgen.generator.arginfo import run_jdata_arginfo

    param_dir = Path(param_dir).resolve()
    base_dir = Path(base_dir).resolve() if base_dir else param_dir
    j = check_param(jdata, source)
    tasks, machine_notes = check_machine(machine, machine_source) if machine else ({}, [])
    conv = _Converter(j, param_dir, base_dir, source, tasks, Path(run_dir).resolve() if run_dir else None, name)
    conv.notes += machine_notes
    conv.machine_source = machine_source
    conv.keys(_defaults(run_jdata_arginfo()))
    run_entries, start = conv.run_data()
    if start >= len(j["model_devi_jobs"]):
        raise DPGenImportError([error_line(source, "model_devi_jobs",
                                           f"DP-GEN finished all {len(j['model_devi_jobs'])} "
                                           "jobs in this run directory; nothing is left to explore",
                                           fix="append model_devi_jobs for firegen to run")])
    stages, used = conv.stages(start)
    systems, names = conv.systems(used)
    for stage in stages:
        stage["systems"] = [n for i in stage["systems"] for n in names.get(i, [])]
    config: dict[str, Any] = {"name": _slug(name or param_dir.name), "type_map": list(j["type_map"])}
    if isinstance(j.get("mass_map"), list):
        config["masses"] = [conv.num(f"mass_map[{k}]", m) for k, m in enumerate(j["mass_map"])]
    config["systems"] = systems
    initial = conv.initial_data()
    if run_entries:
        initial.setdefault("imported", []).extend(run_entries)
    config["initial_data"] = initial
    config["committee"] = conv.committee()
    config["selection"] = conv.selection()
    config["stages"] = stages
    config["labeler"] = conv.labeler()
    config["exploration"] = {"engine": "lammps"}
    if conv.errors:
        raise DPGenImportError(conv.errors)
    workers = {}
    if tasks and workers_dir is not None:  # worker hints are files; in-memory conversions have none
        workers, notes = worker_files(tasks, Path(workers_dir).resolve())
        conv.notes += notes
    return Conversion(config=config, base_dir=base_dir, source=source, unsupported=conv.unsupported,
                      notes=conv.notes, workers=workers, resume_job=start, origins=conv.origins)


def import_dpgen(param: str | os.PathLike, machine: str | os.PathLike | None = None, *,
                 output: str | os.PathLike | None = None, run_dir: str | os.PathLike | None = None,
                 name: str | None = None, ignore_unsupported: bool = False,
                 check_files: bool = True) -> Conversion:
    """Read, convert and (with ``output``) write a DP-GEN campaign as a firegen YAML.

    The written YAML is validated as ``firegen validate`` would (``check_files``): a conversion
    that firegen would reject is not written.

    Raises:
        DPGenImportError / ConfigError: one line per problem.
    """
    param = Path(param)
    jdata = load_dpgen_file(param)
    mdata = load_dpgen_file(machine) if machine else None
    out = Path(output).resolve() if output else None
    conv = convert(jdata, param.resolve().parent, machine=mdata, base_dir=out.parent if out else None,
                   name=name, run_dir=run_dir, source=str(param),
                   workers_dir=workers_dir_for(out) if out else None,
                   machine_source=str(machine) if machine else "machine.json")
    conv.check(ignore_unsupported)
    conv.campaign(check_files=check_files)
    if out is not None:
        conv.write(out)
    return conv


def campaign_from_param(param: str | os.PathLike, machine: str | os.PathLike | None = None, *,
                        ignore_unsupported: bool = False, name: str | None = None,
                        check_files: bool = False) -> CampaignConfig:
    """The validated campaign of a DP-GEN param file, in memory (``firegen submit param.json``).

    Relative paths are resolved against the param file's folder.
    """
    conv = import_dpgen(param, machine, ignore_unsupported=ignore_unsupported, name=name, check_files=check_files)
    return conv.campaign(check_files=check_files)
