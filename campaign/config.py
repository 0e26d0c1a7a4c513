"""The campaign config: one validated schema, and one-line errors that name the field and the fix.

    cfg = load_config("configs/cu_emt.yaml")      # raises ConfigError (one line per problem)
    cfg.stages[0].conditions()                      # the T × P ladder
    cfg.frozen(), cfg.config_hash()                 # stored on the campaign document

Units: eV, eV/Å, Å, K, bar; MD time step in fs, damping times in ps. The parts are defined in
`config_systems.py` (systems, initial data), `config_stages.py` (exploration stages and protocols),
`config_loop.py` (committee, selection, convergence, labeler, exploration engine) on the shared
pieces of `config_fields.py`; the one-line errors are written by `config_errors.py`.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
from pathlib import Path
from typing import Annotated, Any, Literal

from ase.data import atomic_masses, atomic_numbers
from pydantic import (AfterValidator, Field, PrivateAttr, ValidationError, ValidationInfo,
                      field_validator, model_validator)

from .config_final import FinalConfig
from .config_observables import observable_element_problems, stage_observable_problems
from .config_schedule import ScheduleConfig
from .config_fields import NOTHING, SLUG_FIX, Problem, Slug, _check_symbol, _Model, fail, fx
from .config_fields import one_line as _one_line
from .config_loop import (CommitteeConfig, ConvergenceConfig, ExplorationConfig, LabelerConfig, SelectionConfig,
                          TrustLevels)
from .config_stages import StageConfig
from .config_systems import InitialDataConfig, PerturbConfig, SystemConfig
from .config_errors import ConfigError, error_line, join_loc, pydantic_lines
from .input_files import InputProblem, plain_data_problems, read_input_file
from .mappings import deep_merge
from .structure_builders import BuildError, build_system
from .structures import StructureError, read_structure
from .training_template import template_problems

#: Bound of `priority` (FireWorks sorts any number; the bound keeps a mistyped 100000000 out).
PRIORITY_LIMIT = 1_000_000

__all__ = ["CampaignConfig", "SystemConfig", "InitialDataConfig", "PerturbConfig",
           "CommitteeConfig", "SelectionConfig", "TrustLevels", "StageConfig",
           "ConvergenceConfig", "LabelerConfig", "ExplorationConfig", "ConfigError",
           "load_config", "validate_dict", "config_hash"]


class CampaignConfig(_Model):
    """One campaign: what to learn (type map, systems), how (committee, stages), labeled how."""

    schema_version: Literal[1] = fx(1, desc="Version of this schema.")
    name: Slug = fx(desc="Campaign name (unique per database).", fix=SLUG_FIX)
    priority: int = fx(0, ge=-PRIORITY_LIMIT, le=PRIORITY_LIMIT, desc="FireWorks `_priority` of every Firework the "
                       "campaign queues: workers sharing a LaunchPad check out the READY Firework of the highest "
                       "priority first, so a campaign of priority 10 goes before one of 0 wherever both have work "
                       "ready (within one priority, in no set order).",
                       fix=f"give a whole number from -{PRIORITY_LIMIT:,} to {PRIORITY_LIMIT:,}, e.g. priority: 10 "
                       "(higher goes first; default 0)")
    type_map: list[Annotated[str, AfterValidator(_check_symbol)]] = fx(
        min_length=1, desc="Element symbols; their order fixes type indices everywhere.",
        fix="list element symbols, e.g. [Na, O, Cl]")
    mass_list: list[Annotated[float, Field(gt=0)]] | None = fx(
        None, alias="masses", desc="Atomic masses (amu) in type_map order, or {symbol: mass} "
        "overrides; default from ase.data.atomic_masses.",
        fix="give one positive mass (amu) per type_map entry, or a {symbol: mass} mapping")
    systems: list[SystemConfig] = fx(min_length=1, desc="Starting structures.",
                                     fix="add at least one system with a name and a structure")
    initial_data: InitialDataConfig = fx(desc="Training data of the first committee.",
                                         fix="e.g. initial_data: {perturb: {count: 10}}")
    committee: CommitteeConfig = fx(default_factory=CommitteeConfig, desc="Committee.")
    selection: SelectionConfig = fx(default_factory=SelectionConfig, desc="Selection.")
    stages: list[StageConfig] = fx(min_length=1, desc="Exploration stages, run in order.",
                                   fix="add at least one stage")
    labeler: LabelerConfig = fx(desc="Reference calculator.", fix="e.g. labeler: {kind: emt}")
    exploration: ExplorationConfig = fx(default_factory=ExplorationConfig, desc="MD engine.")
    schedule: ScheduleConfig = fx(default_factory=ScheduleConfig, desc="strict (DP-GEN) or asynchronous "
                                  "iterations (see config_schedule.py).")
    final: FinalConfig | None = fx(None, desc="Final model (`firegen finalize`; see config_final.py).",
                                   fix="e.g. final: {numb_steps: 1000000}")

    _base_dir: Path = PrivateAttr(default_factory=Path.cwd)
    _source: str = PrivateAttr(default="<config>")
    _built: dict = PrivateAttr(default_factory=dict)  # system name -> BuiltSystem (built once per config)

    @field_validator("mass_list", mode="before")
    @classmethod
    def _masses_in(cls, v: Any, info: ValidationInfo) -> Any:
        type_map = info.data.get("type_map")
        if type_map is None or v is None:
            return v
        if isinstance(v, dict):
            unknown = [k for k in v if k not in type_map]
            if unknown:
                fail(Problem(str(unknown[0]), "is not in type_map", fix="give masses only for "
                             f"type_map elements: {', '.join(type_map)}"))
            return [v.get(s, float(atomic_masses[atomic_numbers[s]])) for s in type_map]
        if isinstance(v, list) and len(v) != len(type_map):
            fail(Problem("", f"has {len(v)} entries but type_map has {len(type_map)}", v,
                         "give one mass per type_map entry, in the same order"))
        return v

    @model_validator(mode="after")
    def _references(self):
        probs: list[Problem] = []
        seen: set[str] = set()
        for i, sym in enumerate(self.type_map):
            if sym in seen:
                probs.append(Problem(f"type_map[{i}]", "repeats an element", sym,
                                     "list each element once"))
            seen.add(sym)
        names = [s.name for s in self.systems]
        for kind, items in (("systems", self.systems), ("stages", self.stages)):
            first: dict[str, int] = {}
            for i, item in enumerate(items):
                if item.name in first:
                    probs.append(Problem(f"{kind}[{i}].name", f"repeats {kind}[{first[item.name]}]"
                                         f"'s name", item.name, "give each a different name"))
                first.setdefault(item.name, i)
        for i, stage in enumerate(self.stages):
            for j, sys_name in enumerate(stage.systems or []):
                if sys_name not in names:
                    near = difflib.get_close_matches(sys_name, names, n=1)
                    probs.append(Problem(f"stages[{i}].systems[{j}]", "names no defined system",
                                         sys_name, (f"did you mean '{near[0]}'? " if near else "")
                                         + f"use one of: {', '.join(names)}"))
        for i, stage in enumerate(self.stages):  # observables: elements of type_map, systems the stage explores
            observables = stage.converged_when.observables
            probs += [p._replace(loc=f"stages[{i}].{p.loc}")
                      for p in observable_element_problems(observables, self.type_map) + (
                          stage_observable_problems(observables, [s.name for s in self.systems if s.role == "explore"])
                          if stage.systems is None else [])]
        if self.exploration.engine == "ase":
            for i, st in enumerate(self.stages):
                for name in st.lammps_only():
                    probs.append(Problem(f"stages[{i}].{name}", "needs the LAMMPS engine",
                                         fix="set exploration.engine: lammps, or use a fixed `strain` instead "
                                         "of `deform`"))
        explorers = [s.name for s in self.systems if s.role == "explore"]
        for i, stage in enumerate(self.stages):
            if stage.systems is None and not explorers:
                probs.append(Problem(f"stages[{i}].systems", "names no system, and no system has role "
                                     "explore (the default stages explore)", fix="list the systems this "
                                     "stage explores, or give a system role: explore"))
        if probs:
            fail(*probs)
        for stage in self.stages:
            if stage.systems is None:
                stage.systems = list(explorers)
        if self.mass_list is None:
            self.mass_list = [float(atomic_masses[atomic_numbers[s]]) for s in self.type_map]
        return self

    @model_validator(mode="after")
    def _training_template(self, info: ValidationInfo):
        """The deepmd-kit template checked as `dp train` would check it (deepmd-kit's argument checker and
        the cutoffs): on user input only (`validate_dict` asks for it), not on every stored config a task
        reads back."""
        if (info.context or {}).get("check_training_template"):
            probs = template_problems(self.committee.training, self.type_map, self.committee.numb_steps)
            if probs:
                fail(*(p._replace(loc=join_loc("committee.training", p.loc)) for p in probs))
            if self.final is not None and self.final.training:  # merged over the committee's, as finalize does
                probs = template_problems(deep_merge(self.committee.training, self.final.training), self.type_map,
                                          self.final.steps(self.committee.numb_steps))
                if probs:
                    fail(*(p._replace(loc=join_loc("final.training", p.loc)) for p in probs))
        return self

    # ---- helpers -------------------------------------------------------------------------
    def masses(self) -> list[float]:
        """Atomic masses (amu) in type_map order."""
        return list(self.mass_list or [])

    @property
    def base_dir(self) -> Path:
        """Folder that relative paths (structures, deepmd_npy) are resolved against."""
        return self._base_dir

    def system(self, name: str) -> SystemConfig:
        """The system called `name` (KeyError if none)."""
        for s in self.systems:
            if s.name == name:
                return s
        raise KeyError(name)

    def path(self, relative: str | os.PathLike) -> Path:
        """A config-relative path made absolute."""
        return (self._base_dir / Path(relative).expanduser()).resolve()

    def build_system(self, name: str):
        """The system built by its pipeline (file or random packing → supercell → scale →
        defects): a `structure_builders.BuiltSystem` with ``atoms`` (Å), ``charge`` (net formal
        charge, e) and ``metadata()``. Raises `structure_builders.BuildError` (field relative
        to the system) for a system that cannot be built. Built once per config object:
        checking the references and preparing the init Firework share the result."""
        if name not in self._built:
            self._built[name] = build_system(self.system(name), self.path)
        return self._built[name]

    def system_atoms(self, name: str):
        """The system's starting structure (ase.Atoms): supercell, scale and defects applied."""
        return self.build_system(name).atoms.copy()

    def system_metadata(self, name: str) -> dict[str, Any]:
        """JSON-able bookkeeping of the built system: charge (e), formula, natoms, role,
        oxidation_states, defects (one record per defect: type, name, sites, coords in Å,
        charge_change in e)."""
        return self.build_system(name).metadata()

    def frozen(self) -> dict[str, Any]:
        """JSON-able, complete (defaults filled) form; `CampaignConfig.model_validate` reads it."""
        return self.model_dump(mode="json", by_alias=True)

    def config_hash(self) -> str:
        """sha256 of the canonical JSON of `frozen()`."""
        return config_hash(self)

    def validate_references(self) -> None:
        """Check everything the config points at: structure files (exist, readable), every
        system built (random packing, defects, charge neutrality where required; elements in
        type_map) and deepmd_npy folders. Raises ConfigError with one line per problem."""
        probs: list[Problem] = []
        for i, s in enumerate(self.systems):
            loc = f"systems[{i}].structure"
            if s.structure is not None:
                path = self.path(s.structure)
                if not path.exists():
                    probs.append(Problem(loc, f"file not found: {path}", s.structure,
                                         "fix the path (relative to the config file's folder) or "
                                         "create the file"))
                    continue
                try:
                    read_structure(path, s.fmt)
                except StructureError as exc:  # read, but not a structure a campaign can start from
                    probs.append(Problem(loc, f"is refused: {exc.msg}", s.structure, exc.fix))
                    continue
                except Exception as exc:  # any reader failure is a config problem
                    probs.append(Problem(loc, f"cannot be read: {_one_line(exc)}", s.structure,
                                         "give a POSCAR/CIF/extxyz file or set `fmt`"))
                    continue
            else:
                loc = f"systems[{i}].random_packing.formula"
            try:
                built = self.build_system(s.name)
            except BuildError as exc:
                probs.append(Problem(f"systems[{i}].{exc.field}", exc.msg, fix=exc.fix))
                continue
            extra = set(built.atoms.get_chemical_symbols()) - set(self.type_map)
            for j, d in enumerate(s.defects):  # elements a defect brings in
                key = "by" if d.type == "substitution" else "species"
                if d.type in ("substitution", "interstitial") and getattr(d, key) in extra:
                    extra.discard(getattr(d, key))
                    probs.append(Problem(f"systems[{i}].defects[{j}].{key}", f"adds "
                                         f"{getattr(d, key)}, not in type_map",
                                         fix=f"add {getattr(d, key)} to type_map"))
            if extra:
                probs.append(Problem(loc, f"contains {', '.join(sorted(extra))}, not in type_map",
                                     s.structure or s.random_packing.formula,
                                     f"add {', '.join(sorted(extra))} to type_map"))
        probs += self.initial_data.check_folders(self.path, self.type_map)
        if probs:
            raise ConfigError([error_line(self._source, p.loc, p.msg, p.got, p.fix) for p in probs])


def config_hash(cfg: CampaignConfig) -> str:
    """sha256 hex digest of the campaign's frozen config (key order independent)."""
    blob = json.dumps(cfg.frozen(), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


# ---- errors --------------------------------------------------------------------------------
# ---- loading -------------------------------------------------------------------------------
def _read(path: Path, source: str) -> Any:
    try:
        return read_input_file(path)
    except InputProblem as exc:
        raise ConfigError([error_line(source, exc.loc, exc.msg, NOTHING if exc.got is None else exc.got,
                                      exc.fix)]) from None


def load_config(path: str | os.PathLike, check_files: bool = True) -> CampaignConfig:
    """Read and validate a campaign config (YAML, or JSON by `.json` suffix).

    Relative paths in it are resolved against the file's folder. With `check_files`, the
    files it references are checked too (`CampaignConfig.validate_references`).
    Raises ConfigError whose message has one line per problem.
    """
    source = os.fspath(path)
    path = Path(path).expanduser()
    data = _read(path, source)
    if not isinstance(data, dict):
        raise ConfigError([error_line(source, "", "must be a mapping of settings at the top level",
                                      _one_line(type(data).__name__) if data is not None else NOTHING,
                                      "start from configs/cu_emt.yaml")])
    return validate_dict(data, source, path.resolve().parent, check_files)


def validate_dict(data: dict, source: str = "<config>", base_dir: str | os.PathLike | None = None,
                  check_files: bool = False) -> CampaignConfig:
    """Validate an in-memory config (e.g. a stored frozen one) with the same one-line errors."""
    plain = [error_line(source, p.loc, p.msg, NOTHING if p.got is None else p.got, p.fix)
             for p in plain_data_problems(data)]
    if plain:
        raise ConfigError(plain)
    try:
        cfg = CampaignConfig.model_validate(data, context={"check_training_template": True})
    except ValidationError as exc:
        raise ConfigError(pydantic_lines(source, exc, CampaignConfig)) from None
    cfg._base_dir = Path(base_dir).resolve() if base_dir else Path.cwd()
    cfg._source = source
    if check_files:
        cfg.validate_references()
    return cfg

