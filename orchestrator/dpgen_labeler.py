"""DP-GEN's fp_* keys (``fp_style`` and its settings, ``ratio_failed``, machine.json's ``fp`` task) as firegen's
``labeler`` section: cp2k, pwscf (qe), vasp and custom (the command labeler)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from firegen.campaign.config_errors import error_line
from firegen.campaign.config_loop import LabelerConfig
from firegen.orchestrator.dpgen_workers import split_mpi_command

__all__ = ["DPGEN_RATIO_FAILED", "LabelerKeys"]

#: DP-GEN's ratio_failed when param.json does not set it (post_fp_check_fail).
DPGEN_RATIO_FAILED = 0.05


class LabelerKeys:
    """The labeler part of the param.json converter (``orchestrator.dpgen_import``): it reads ``self.j`` (the
    param), ``self.tasks`` (machine.json's tasks) and reports through the converter's ``err``, ``num``, ``path``,
    ``unsupported_key``, ``notes``, ``errors`` and ``origins``."""

    def labeler(self) -> dict:
        style = self.j["fp_style"]
        fp = self.tasks.get("fp")
        command, ranks, args = split_mpi_command(fp["command"]) if fp and fp.get("command") else ("", None, [])
        settings: dict[str, Any] = {}
        type_map = self.j["type_map"]

        def files_by_element(key: str) -> dict | None:
            files = self.j.get(key) or []
            if len(files) != len(type_map):
                self.err(key, f"has {len(files)} entries but type_map has {len(type_map)}", files,
                         "give one file per type_map element, in the same order")
                return None
            return dict(zip(type_map, files))

        def existing(key: str, must_be_dir: bool = False) -> str | None:
            path = self.path(self.j[key]).resolve()
            if not (path.is_dir() if must_be_dir else path.is_file()):
                self.err(key, f"{'folder' if must_be_dir else 'file'} not found: {path}", self.j[key],
                         "fix the path (relative to the param file's folder)")
                return None
            return str(path)

        def pp_files() -> dict | None:
            folder = existing("fp_pp_path", must_be_dir=True)
            mapping = files_by_element("fp_pp_files")
            if folder and mapping:
                missing = [f for f in mapping.values() if not (Path(folder) / f).is_file()]
                if missing:
                    self.err("fp_pp_files", f"not found in {folder}: {', '.join(missing)}", missing,
                             "put the files there or fix fp_pp_path")
            return mapping

        if style == "cp2k":
            kind = "cp2k"
            has_input = self.j.get("user_fp_params") is not None
            if has_input and self.j.get("external_input_path"):
                self.err("external_input_path", "conflicts with user_fp_params",
                         fix="keep one of them (DP-GEN documents them as exclusive)")
            elif self.j.get("external_input_path"):
                settings["template"] = existing("external_input_path")
            elif has_input:
                settings["input"] = copy.deepcopy(self.j["user_fp_params"])
            else:
                self.err("fp_style", "cp2k needs external_input_path or user_fp_params",
                         fix="add one of them, as DP-GEN requires")
        elif style == "pwscf":
            kind = "qe"
            settings["pseudo_dir"] = existing("fp_pp_path", must_be_dir=True)
            settings["pseudopotentials"] = pp_files()
            user = self.j.get("user_fp_params")
            if user is not None:
                settings["input"] = {k: copy.deepcopy(user[k]) for k in ("control", "system", "electrons")
                                     if k in user}
                for k in user:
                    if k not in ("control", "system", "electrons", "kspacing"):
                        self.unsupported_key(f"user_fp_params.{k}", "DP-GEN's pwscf writes only the control, "
                                             "system and electrons namelists")
                if "kspacing" in user:
                    settings["kspacing"] = self.num("user_fp_params.kspacing", user["kspacing"])
                else:
                    self.err("user_fp_params.kspacing", "is required by DP-GEN's pwscf user_fp_params",
                             fix="add kspacing (1/Å)")
            elif self.j.get("fp_params"):
                p = self.j["fp_params"]
                # exactly what DP-GEN 0.14 writes for fp_params (dpgen.generator.lib.pwscf)
                system = {"vdw_corr": "TS", "ecutwfc": p["ecut"], "ts_vdw_econv_thr": p["ediff"], "nosym": True,
                          "degauss": p["sigma"], "smearing": str(p["smearing"]).lower()}
                settings["input"] = {"control": {"calculation": "scf", "restart_mode": "from_scratch",
                                                 "outdir": "./OUT", "tprnfor": True, "tstress": True,
                                                 "disk_io": "none"},
                                     "system": system, "electrons": {"conv_thr": p["ediff"]}}
                settings["kspacing"] = self.num("fp_params.kspacing", p["kspacing"])
            else:
                self.err("fp_style", "pwscf needs user_fp_params or fp_params", fix="add one, as DP-GEN requires")
        elif style == "vasp":
            kind = "vasp"
            settings["incar_file"] = existing("fp_incar")
            settings["potcar_dir"] = existing("fp_pp_path", must_be_dir=True)
            settings["potcar_files"] = pp_files()
            if "cvasp" in self.j:
                self.notes.append("cvasp: firegen runs VASP under custodian in any case")
        elif style == "custom":
            kind = "command"
            settings.update({k: self.j["fp_params"][k] for k in ("input_fmt", "input_fn", "output_fmt", "output_fn")})
            if fp is not None and not fp.get("command"):
                self.errors.append(error_line(self.machine_source, "fp.command", "is empty, and fp_style custom labels "
                                              "by running it", fix="give the labeling command, e.g. python3 label.py"))
            elif not fp:
                self.err("fp_style", "custom needs the labeling command from machine.json (fp.command)",
                         fix="pass the machine.json (--machine machine.json)")
            else:
                settings["command"] = fp["command"]
            forward = [str(self.path(f).resolve()) for f in (fp or {}).get("user_forward_files") or []]
            if forward:
                settings["forward_files"] = forward
            if fp and fp.get("user_backward_files"):
                self.notes.append("machine.json fp.user_backward_files are ignored: the command labeler reads "
                                  "output_fn and keeps the work folder of a failed run")
            return self._labeler_dict(kind, settings)
        else:
            self.unsupported_key("fp_style", f"'{style}': firegen labels with cp2k, pwscf (qe), vasp or custom")
            return self._labeler_dict("emt", {})
        if command:
            settings["command"] = command
            if ranks:
                settings["mpi_ranks"] = ranks
            dropped = [a for a in args if a not in ("-i", "-in", "input.inp", "input", "<")]
            if dropped:
                self.notes.append(f"machine.json fp.command arguments {' '.join(args)} are dropped: firegen's "
                                  f"{kind} labeler writes and passes its own input")
        for key in ("user_forward_files", "user_backward_files"):
            if fp and fp.get(key):
                self.unsupported_key(f"machine.json fp.{key}", f"the {kind} labeler writes its own inputs")
        return self._labeler_dict(kind, {k: v for k, v in settings.items() if v is not None})

    def _labeler_dict(self, kind: str, settings: dict) -> dict:
        out: dict[str, Any] = {"kind": kind, "settings": settings}
        params = "user_fp_params" if self.j.get("user_fp_params") is not None else "fp_params"
        origin = {"template": "external_input_path", "input": params, "kspacing": f"{params}.kspacing",
                  "pseudo_dir": "fp_pp_path", "pseudopotentials": "fp_pp_files", "incar_file": "fp_incar",
                  "potcar_dir": "fp_pp_path", "potcar_files": "fp_pp_files", "command": "machine.json fp.command",
                  "mpi_ranks": "machine.json fp.command", "forward_files": "machine.json fp.user_forward_files",
                  **{k: f"fp_params.{k}" for k in ("input_fmt", "input_fn", "output_fmt", "output_fn")}}
        self.origins.update({f"labeler.settings.{k}": origin[k] for k in settings if k in origin})
        if "max_failed_ratio" in LabelerConfig.model_fields:
            out["max_failed_ratio"] = self.num("ratio_failed", self.j.get("ratio_failed", DPGEN_RATIO_FAILED))
        elif "ratio_failed" in self.j:
            self.unsupported_key("ratio_failed", "this firegen has no labeler.max_failed_ratio")
        return out
