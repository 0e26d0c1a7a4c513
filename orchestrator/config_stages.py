"""Parts of the campaign config: systems, initial data, committee, selection, stages, labeler, exploration.

`config.py` assembles them into `CampaignConfig`. The shared pieces of the one-line error
reporting (`Problem`, `fail`, `fx`) live here too, so every model can state its own fixes.

Units (LAMMPS metal, as everywhere in firegen): eV, eV/Å, Å, K, bar, fs for `dt`, ps for the
thermostat/barostat damping times.
"""

from __future__ import annotations

import difflib
import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal, NamedTuple

from ase.data import chemical_symbols
from pydantic import (BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints,
                      field_validator, model_validator)
from pydantic_core import PydanticCustomError

NOTHING = object()  # "no value to show" marker for Problem.got


class Problem(NamedTuple):
    """One problem found by a validator; `loc` is relative to the object being validated."""

    loc: str
    msg: str
    got: Any = NOTHING
    fix: str = ""


def fail(*problems: Problem):
    """Raise a pydantic error carrying `problems`; config.py turns each into one line."""
    summary = "; ".join(f"{p.loc + ': ' if p.loc else ''}{p.msg}" for p in problems)
    raise PydanticCustomError("firegen", "{summary}", {"summary": summary, "problems": list(problems)})


def fx(default: Any = ..., *, desc: str, fix: str | None = None, **kw: Any) -> Any:
    """A `Field` with a description (units included) and the fix shown when its value is wrong."""
    extra = {"fix": fix} if fix else None
    if "default_factory" in kw:
        return Field(description=desc, json_schema_extra=extra, **kw)
    return Field(default, description=desc, json_schema_extra=extra, **kw)


Slug = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
SLUG_FIX = "use 1-64 letters, digits, '-', '_' or '.', starting with a letter or digit"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_by_name=True, validate_by_alias=True)


def one_line(obj: Any, limit: int = 200) -> str:
    """`str(obj)` on one line, at most `limit` characters."""
    text = " ".join(str(obj).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


ELEMENTS = [s for s in chemical_symbols if s != "X"]


def _check_symbol(sym: str) -> str:
    if sym in ELEMENTS:
        return sym
    near = [s for s in ELEMENTS if s.lower() == sym.strip().lower()]
    near = near or difflib.get_close_matches(sym.strip().capitalize(), ELEMENTS, n=3, cutoff=0.5)
    hint = (f"did you mean {' or '.join(repr(s) for s in near)}? " if near else "") + \
        "Use chemical symbols, case as in the periodic table (e.g. 'Cu', 'Na', 'Cl')"
    fail(Problem("", "unknown element", sym, hint))


def _as_triple(value: Any) -> Any:
    return [value] * 3 if isinstance(value, int) and not isinstance(value, bool) else value


class SystemConfig(_Model):
    """A starting structure: a file and the supercell made from it."""

    name: Slug = fx(desc="System name (unique), used by stages.", fix=SLUG_FIX)
    structure: str = fx(min_length=1, desc="Structure file (POSCAR/CIF/extxyz/...), relative "
                        "to the config file's folder.", fix="give the path of a structure file")
    supercell: Annotated[list[int], BeforeValidator(_as_triple)] = fx(
        default_factory=lambda: [1, 1, 1], min_length=3, max_length=3,
        desc="Repetitions [a, b, c] (or one int for all three).",
        fix="give three positive integers, e.g. [2, 2, 2]")
    fmt: str | None = fx(None, desc="File format: an ase format name, 'pymatgen' or "
                         "'dpdata:<fmt>'; default guessed from the file name.")

    @field_validator("supercell")
    @classmethod
    def _positive(cls, v: list[int]) -> list[int]:
        bad = [i for i, n in enumerate(v) if n < 1]
        if bad:
            fail(Problem(f"[{bad[0]}]", "must be at least 1", v[bad[0]],
                         "give three positive integers, e.g. [2, 2, 2]"))
        return v


class PerturbConfig(_Model):
    """DP-GEN init_bulk style starting data: scale each system's cell, then perturb copies."""

    count: int = fx(10, gt=0, desc="Perturbed copies per system and per scale.",
                    fix="set how many perturbed copies to make, e.g. 10")
    atom_displacement: float = fx(0.01, ge=0, le=0.5, desc="Maximum atom displacement (Å).",
                                  fix="use a small distance in Å; DP-GEN uses 0.01")
    cell_strain: float = fx(0.03, ge=0, lt=0.5,
                            desc="Maximum random cell strain (fraction; 0.03 = ±3 %).",
                            fix="use a fraction such as 0.03 (±3 %)")
    scales: list[Annotated[float, Field(gt=0.5, lt=2.0)]] = fx(
        default_factory=lambda: [1.0], min_length=1,
        desc="Linear cell scale factors applied before perturbing (volume scales as s³).",
        fix="use factors near 1, e.g. [0.95, 1.00, 1.05]")
    atom_style: Literal["uniform", "normal", "const"] = fx(
        "uniform", desc="Distribution of atom displacements (dpdata `atom_pert_style`); "
        "'uniform' keeps every displacement within atom_displacement.")
    include_unperturbed: bool = fx(False, desc="Also keep each scaled, unperturbed structure "
                                   "(DP-GEN's frame 000000).")
    seed: int = fx(0, desc="Random seed of the perturbation.")


class InitialDataConfig(_Model):
    """Where the first committee's training data come from (at least one source)."""

    deepmd_npy: list[str] = fx(default_factory=list,
                               desc="dpdata deepmd/npy folders (relative to the config file's "
                               "folder), or folders holding several of them.",
                               fix="list folders written by dpdata's deepmd/npy format")
    perturb: PerturbConfig | None = fx(None, desc="Perturb every system and label the copies.",
                                       fix="give a mapping, e.g. perturb: {count: 10}")

    @model_validator(mode="after")
    def _some_source(self):
        if not self.deepmd_npy and self.perturb is None:
            fail(Problem("", "gives no initial data",
                         fix="add `perturb: {count: 10}` or `deepmd_npy: [path/to/system]`"))
        return self

    def check_folders(self, resolve: Callable[[str], Path], type_map: list[str]) -> list[Problem]:
        """Problems with the deepmd_npy folders (missing, unreadable, elements not in type_map);
        `resolve` makes a config-relative path absolute."""
        import dpdata

        probs = []
        for j, folder in enumerate(self.deepmd_npy):
            loc, path = f"initial_data.deepmd_npy[{j}]", resolve(folder)
            if not path.is_dir():
                probs.append(Problem(loc, f"folder not found: {path}", folder,
                                     "fix the path (relative to the config file's folder)"))
                continue
            found = [path] if (path / "type.raw").is_file() else sorted(
                p.parent for p in path.glob("**/type.raw"))
            if not found:
                probs.append(Problem(loc, "holds no deepmd/npy system (no type.raw)", folder,
                                     "point at a folder written by dpdata's to('deepmd/npy')"))
            for sub in found:
                try:
                    names = dpdata.LabeledSystem(str(sub), fmt="deepmd/npy").get_atom_names()
                except Exception as exc:  # any reader failure is a config problem
                    probs.append(Problem(loc, f"{sub} cannot be read: {one_line(exc)}", folder,
                                         "re-export it with dpdata (deepmd/npy, labeled)"))
                    continue
                extra = sorted(set(names) - set(type_map))
                if extra:
                    probs.append(Problem(loc, f"{sub} has {', '.join(extra)}, not in type_map",
                                         folder, f"add {', '.join(extra)} to type_map"))
        return probs


class CommitteeConfig(_Model):
    """The N DeePMD models trained on the same data with different seeds."""

    size: int = fx(4, ge=2, desc="Number of committee members.",
                   fix="use at least 2 models (4 is usual) so their deviation means something")
    backend: Literal["tensorflow", "pytorch"] = fx("tensorflow", desc="deepmd-kit backend.")
    init_from_previous: bool = fx(False, desc="Start each member from the previous iteration's "
                                  "model (`dp train --init-model`).")
    training: dict[str, Any] = fx(default_factory=dict,
                                  desc="deepmd-kit input.json template (model, learning_rate, "
                                  "loss, training); merged with firegen's defaults, `sel: auto` "
                                  "computed from the data.",
                                  fix="give a mapping shaped like deepmd-kit's input.json")
    numb_steps: int = fx(2000, gt=0, desc="Training steps per member and iteration.",
                         fix="set a positive number of training steps, e.g. 2000")

    @model_validator(mode="before")
    @classmethod
    def _steps_from_template(cls, data: Any) -> Any:
        if not isinstance(data, dict) or not isinstance(data.get("training"), dict):
            return data
        inner = data["training"].get("training")
        steps = inner.get("numb_steps") if isinstance(inner, dict) else None
        if steps is None:
            return data
        if "numb_steps" not in data:
            return {**data, "numb_steps": steps}
        if data["numb_steps"] != steps:
            fail(Problem("training.training.numb_steps",
                         f"disagrees with committee.numb_steps = {data['numb_steps']}", steps,
                         "set the number of steps in one place only (committee.numb_steps)"))
        return data


class TrustLevels(_Model):
    """Model-deviation trust levels: < lo accurate, [lo, hi) candidate, >= hi failed."""

    f_lo: float = fx(0.15, gt=0, desc="Lower force-deviation trust level (eV/Å).",
                     fix="use a positive force deviation in eV/Å, e.g. 0.15")
    f_hi: float = fx(0.35, gt=0, desc="Upper force-deviation trust level (eV/Å).",
                     fix="use a positive force deviation in eV/Å, e.g. 0.35")
    v_lo: float | None = fx(None, gt=0, desc="Optional lower virial-deviation level (eV).",
                            fix="use a positive virial deviation in eV")
    v_hi: float | None = fx(None, gt=0, desc="Optional upper virial-deviation level (eV).",
                            fix="use a positive virial deviation in eV")

    @model_validator(mode="after")
    def _ordered(self):
        probs = []
        if self.f_lo >= self.f_hi:
            probs.append(Problem("f_lo", f"must be less than f_hi = {self.f_hi}", self.f_lo,
                                 "make f_lo < f_hi, e.g. f_lo: 0.15, f_hi: 0.35 (eV/Å)"))
        if (self.v_lo is None) != (self.v_hi is None):
            name = "v_hi" if self.v_hi is None else "v_lo"
            probs.append(Problem(name, "is required when the other virial level is set",
                                 fix="give both v_lo and v_hi, or neither"))
        elif self.v_lo is not None and self.v_lo >= self.v_hi:
            probs.append(Problem("v_lo", f"must be less than v_hi = {self.v_hi}", self.v_lo,
                                 "make v_lo < v_hi"))
        if probs:
            fail(*probs)
        return self

    def classify(self, max_devi_f: float, max_devi_v: float | None = None) -> str:
        """'accurate', 'candidate' or 'failed' for one frame (DP-GEN's rule)."""
        use_v = self.v_lo is not None and max_devi_v is not None
        if max_devi_f >= self.f_hi or (use_v and max_devi_v >= self.v_hi):
            return "failed"
        if max_devi_f < self.f_lo and (not use_v or max_devi_v < self.v_lo):
            return "accurate"
        return "candidate"


class SelectionConfig(_Model):
    """How candidates become labeling jobs."""

    trust: TrustLevels = fx(default_factory=TrustLevels, desc="Trust levels.")
    max_per_iteration: int = fx(300, gt=0, desc="Most candidates labeled per iteration.",
                                fix="set a positive cap, e.g. 300")
    min_per_iteration: int = fx(0, ge=0, desc="Fewer candidates than this are not labeled "
                                "(the iteration counts as converged for selection).",
                                fix="use 0 or a small positive number")
    seed: int = fx(0, desc="Random seed for picking among candidates.")

    @model_validator(mode="after")
    def _caps(self):
        if self.min_per_iteration > self.max_per_iteration:
            fail(Problem("min_per_iteration",
                         f"must not exceed max_per_iteration = {self.max_per_iteration}",
                         self.min_per_iteration, "lower min_per_iteration or raise the cap"))
        return self


class ConvergenceConfig(_Model):
    """When a stage is done; every criterion given must hold for `for_iterations` in a row."""

    accurate_ratio: float | None = fx(0.99, gt=0, le=1,
                                      desc="Converged when this fraction of frames is accurate.",
                                      fix="use a fraction such as 0.99")
    candidate_ratio: float | None = fx(None, ge=0, lt=1,
                                       desc="Converged when fewer than this fraction of frames "
                                       "are candidates.", fix="use a fraction such as 0.01")
    for_iterations: int = fx(1, gt=0, desc="Consecutive iterations that must meet the criteria.",
                             fix="use a positive number of iterations")

    @model_validator(mode="before")
    @classmethod
    def _candidate_only(cls, data: Any) -> Any:
        if isinstance(data, dict) and "candidate_ratio" in data and "accurate_ratio" not in data:
            return {**data, "accurate_ratio": None}
        return data

    @model_validator(mode="after")
    def _some_criterion(self):
        if self.accurate_ratio is None and self.candidate_ratio is None:
            fail(Problem("", "has no criterion",
                         fix="set accurate_ratio (e.g. 0.99) or candidate_ratio (e.g. 0.01)"))
        return self

    def met_by(self, accurate_ratio: float, candidate_ratio: float) -> bool:
        """Whether one iteration's ratios meet every criterion given."""
        ok = self.accurate_ratio is None or accurate_ratio >= self.accurate_ratio
        return ok and (self.candidate_ratio is None or candidate_ratio < self.candidate_ratio)


class StageConfig(_Model):
    """One exploration protocol, iterated until it converges or reaches max_iterations."""

    name: Slug = fx(desc="Stage name (unique).", fix=SLUG_FIX)
    ensemble: Literal["nvt", "npt", "npt-aniso"] = fx(desc="MD ensemble.",
                                                      fix="use nvt, npt or npt-aniso")
    temperatures: list[Annotated[float, Field(gt=0)]] = fx(
        min_length=1, desc="Temperature ladder (K).",
        fix="list positive temperatures in K, e.g. [300, 600]")
    pressures: list[float] | None = fx(None, desc="Pressure ladder (bar); npt ensembles only.",
                                       fix="list pressures in bar, e.g. [1, 1000]")
    nsteps: int = fx(gt=0, desc="MD steps per trajectory.",
                     fix="set a positive number of MD steps")
    dt: float = fx(1.0, gt=0, le=10, desc="MD time step (fs).",
                   fix="use a time step in fs, e.g. 1.0 (0.5 with light atoms)")
    trj_freq: int = fx(10, gt=0, desc="Write (and judge) a frame every this many steps.",
                       fix="set a positive number of steps between frames, e.g. 10")
    tau_t: float = fx(0.1, gt=0, le=10, desc="Thermostat damping time (ps).",
                      fix="use a damping time in ps (not fs), e.g. 0.1 (100 time steps)")
    tau_p: float = fx(0.5, gt=0, le=100, desc="Barostat damping time (ps).",
                      fix="use a damping time in ps (not fs), e.g. 0.5")
    systems: list[str] | None = fx(None, desc="Names of the systems explored (default: all).",
                                   fix="list names from the top-level `systems`")
    converged_when: ConvergenceConfig = fx(default_factory=ConvergenceConfig,
                                           desc="Convergence criterion.")
    max_iterations: int = fx(5, gt=0, desc="Most iterations spent in this stage.",
                             fix="set a positive number of iterations")

    @model_validator(mode="after")
    def _consistent(self):
        probs = []
        if self.ensemble.startswith("npt") and not self.pressures:
            probs.append(Problem("pressures", f"is required for ensemble '{self.ensemble}'",
                                 NOTHING if self.pressures is None else self.pressures, "list pressures in bar, e.g. pressures: [1]"))
        if self.ensemble == "nvt" and self.pressures:
            probs.append(Problem("pressures", "is not used by ensemble 'nvt'", self.pressures,
                                 "remove pressures or use ensemble npt"))
        if self.trj_freq > self.nsteps:
            probs.append(Problem("trj_freq", f"exceeds nsteps = {self.nsteps}", self.trj_freq,
                                 "write frames more often than once per trajectory"))
        if self.tau_t * 1000 <= self.dt:
            probs.append(Problem("tau_t", f"is not longer than dt = {self.dt} fs", self.tau_t,
                                 "tau_t is in ps; use about 100 time steps, e.g. 0.1"))
        if probs:
            fail(*probs)
        return self

    def conditions(self) -> list[dict[str, Any]]:
        """The temperature × pressure ladder, one MD condition per dict (T outer, P inner).

        Keys: ensemble, temperature (K), pressure (bar; None for nvt), nsteps, dt (fs),
        trj_freq, tau_t (ps), tau_p (ps).
        """
        pressures: list[float | None] = list(self.pressures) if self.ensemble != "nvt" else [None]
        return [dict(ensemble=self.ensemble, temperature=t, pressure=p, nsteps=self.nsteps,
                     dt=self.dt, trj_freq=self.trj_freq, tau_t=self.tau_t, tau_p=self.tau_p)
                for t in self.temperatures for p in pressures]


class LabelerConfig(_Model):
    """The reference calculator: a registry name plus its settings."""

    kind: str = fx(pattern=r"^([a-z][a-z0-9_-]*|ase:[A-Za-z_][A-Za-z0-9_.]*)$",
                   desc="Labeler name: emt, lj, tblite, cp2k, qe, vasp, … or ase:<Class>.",
                   fix="use a lower-case labeler name (emt, lj, tblite, cp2k, …) "
                   "or ase:<CalculatorClass>")
    settings: dict[str, Any] = fx(default_factory=dict, desc="Labeler settings.",
                                  fix="give a mapping of settings")
    max_failed_ratio: float | None = fx(
        0.5, ge=0, le=1, desc="Stop the campaign (status 'stopped', with the reason) when more than this "
        "fraction of one iteration's labels failed (DP-GEN's ratio_failed); null never stops. "
        "Failed configurations are quarantined either way; `firegen relabel` retries them.",
        fix="use a fraction such as 0.5, or null to never stop")

    def settings_hash(self) -> str:
        """sha256 of the canonical JSON of kind and settings (stored with each label)."""
        blob = json.dumps({"kind": self.kind, "settings": self.settings}, sort_keys=True,
                          default=str)
        return hashlib.sha256(blob.encode()).hexdigest()


class ExplorationConfig(_Model):
    """MD engine for exploration."""

    engine: Literal["lammps", "ase"] = fx("lammps", desc="LAMMPS with the deepmd plugin, or "
                                          "ASE MD with deepmd's calculator.")
