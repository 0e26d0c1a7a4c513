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


def _symbol(value: Any) -> Any:
    return _check_symbol(value) if isinstance(value, str) else value


Symbol = Annotated[str, BeforeValidator(_symbol)]  # a chemical symbol, checked like type_map's
_DEFECT_SPECIES = {"vacancy": 1, "substitution": 1, "interstitial": 1,  # one element
                   "schottky": 0, "antisite": 2}  # 0: a list of two or more; 2: exactly two


class DefectConfig(_Model):
    """One point-defect step, applied to the (supercell, scaled) structure in list order.

    Sites are drawn with numpy's ``default_rng(seed)`` (see
    `firegen.orchestrator.structure_builders` for the exact rules): deterministic for a seed.
    """

    type: Literal["vacancy", "schottky", "substitution", "interstitial", "antisite"] = fx(
        desc="vacancy: remove atoms; schottky: remove charge-neutral units (e.g. one Li + one "
        "Cl); substitution: replace atoms by `by`; interstitial: add atoms in the largest "
        "void; antisite: exchange two neighbouring atoms of different elements.",
        fix="use vacancy, schottky, substitution, interstitial or antisite")
    species: str | list[str] = fx(
        desc="Element acted on (vacancy, substitution, interstitial); the elements of one "
        "neutral unit, anchor first (schottky: [Li, Cl] = one Li + one Cl, [O, Li] = one O and "
        "its two nearest Li, [Li, O, Cl] = a Li3OCl unit); two elements (antisite).",
        fix="give an element symbol, e.g. Li (a list such as [Li, Cl] for schottky/antisite)")
    by: Symbol | None = fx(None, desc="Substituting element (substitution only).",
                           fix="give the element that takes the sites, e.g. Br")
    count: int = fx(1, ge=1, desc="Atoms (vacancy, substitution, interstitial), neutral units "
                    "(schottky) or exchanged pairs (antisite).", fix="give a positive count")
    arrangement: Literal["nearest", "farthest"] = fx(
        "nearest", desc="schottky/antisite: the unit's other sites are the nearest to (or "
        "farthest from, minimum image) the anchor site.", fix="use nearest or farthest")
    seed: int = fx(0, desc="Seed of the site choice.", fix="give an integer")

    @field_validator("species")
    @classmethod
    def _elements(cls, v: str | list[str]) -> str | list[str]:
        if isinstance(v, str):
            return _check_symbol(v)
        for i, sym in enumerate(v):
            try:
                _check_symbol(sym)
            except PydanticCustomError as exc:
                fail(*(p._replace(loc=f"[{i}]") for p in exc.context["problems"]))
        return v

    @model_validator(mode="after")
    def _fits_type(self):
        many = isinstance(self.species, list)
        want = _DEFECT_SPECIES[self.type]
        probs = []
        if want == 1 and many:
            probs.append(Problem("species", f"must be one element for {self.type}", self.species,
                                 "give one element symbol, e.g. species: Li"))
        elif want != 1 and not many:
            example = "[O, Cl]" if self.type == "antisite" else "[Li, Cl]"
            probs.append(Problem("species", f"must be a list of elements for {self.type}",
                                 self.species, f"give e.g. species: {example}"))
        elif many and (len(self.species) < 2 or (want == 2 and len(self.species) != 2)
                       or len(set(self.species)) != len(self.species)):
            probs.append(Problem("species", f"needs {'two' if want == 2 else 'two or more'} "
                                 "different elements", self.species, "give e.g. [Li, Cl]"))
        if self.type == "substitution" and self.by is None:
            probs.append(Problem("by", "is required for a substitution",
                                 fix="give the substituting element, e.g. by: Br"))
        elif self.type == "substitution" and self.by == self.species:
            probs.append(Problem("by", "equals species", self.by, "substitute another element"))
        elif self.type != "substitution" and self.by is not None:
            probs.append(Problem("by", f"is not used by a {self.type}", self.by,
                                 "remove `by` or use type: substitution"))
        if probs:
            fail(*probs)
        return self


_Distance = Annotated[float, Field(gt=0)]  # Å


class RandomPackingConfig(_Model):
    """Formula units placed at random in a cubic box (random sequential insertion), no pair
    closer than its minimum distance; e.g. the start of a melt-quench."""

    formula: str = fx(min_length=1, desc="Formula unit, e.g. Na3OCl or Na3PS3.5O0.5.",
                      fix="write a chemical formula, e.g. Na3OCl")
    units: int = fx(ge=1, desc="Formula units in the box.", fix="give a positive number, e.g. 8")
    density: float | None = fx(None, gt=0, le=30, desc="Target density (g/cm³).",
                               fix="give a density in g/cm³, e.g. 2.0")
    volume_per_atom: float | None = fx(None, gt=0, desc="Target volume per atom (Å³), instead "
                                       "of density.", fix="give a volume in Å³, e.g. 15.0")
    min_distance: _Distance | dict[str, _Distance] | None = fx(
        None, desc="Minimum distance (Å): one for every pair, or per pair {'Na-Cl': 2.4} (the "
        "rest from the default: distance_factor × ionic radii, √2 more for like charges).",
        fix="give a distance in Å, e.g. 1.8, or a map such as {Na-Cl: 2.4}")
    distance_factor: float = fx(0.75, gt=0, le=1.5, desc="Scale of the default minimum "
                                "distances (× sums of Shannon ionic radii).",
                                fix="use a factor near 0.75")
    seed: int = fx(0, desc="Random seed of the placement.", fix="give an integer")
    max_attempts: int = fx(10000, ge=1, desc="Trial positions per atom before giving up.",
                           fix="give a positive number, e.g. 10000")

    @model_validator(mode="after")
    def _one_volume(self):
        if (self.density is None) == (self.volume_per_atom is None):
            both = self.density is not None
            fail(Problem("density", "and volume_per_atom are both given" if both else
                         "is required (or volume_per_atom)", fix="give one of density (g/cm³), "
                         "e.g. 2.0, and volume_per_atom (Å³), e.g. 15.0"))
        from .structure_builders import BuildError, formula_counts

        try:
            elements = list(formula_counts(self.formula, self.units))
        except BuildError as exc:
            fail(Problem(exc.field, exc.msg, getattr(self, exc.field), exc.fix))
        for sym in elements:
            if sym not in ELEMENTS:
                fail(Problem("formula", f"has an unknown element {sym}", self.formula,
                             "write a chemical formula, e.g. Na3OCl"))
        for key in self.min_distance if isinstance(self.min_distance, dict) else ():
            pair = [p.strip() for p in key.split("-")]
            if len(pair) != 2 or any(p not in elements for p in pair):
                fail(Problem(f"min_distance.{key}", "names no pair of the formula's elements",
                             fix=f"use keys like '{elements[0]}-{elements[-1]}'"))
        return self


class SystemConfig(_Model):
    """A starting structure, built in order: a file (`structure`) or a random packing, then
    `supercell`, `scale`, and `defects`; its net formal charge is computed from
    `oxidation_states` (see `firegen.orchestrator.structure_builders.build_system`)."""

    name: Slug = fx(desc="System name (unique), used by stages.", fix=SLUG_FIX)
    structure: str | None = fx(None, min_length=1, desc="Structure file (POSCAR/CIF/extxyz/...), "
                               "relative to the config file's folder.",
                               fix="give the path of a structure file")
    random_packing: RandomPackingConfig | None = fx(
        None, desc="Pack formula units at random instead of reading a file.",
        fix="e.g. random_packing: {formula: Na3OCl, units: 8, density: 2.0}")
    supercell: Annotated[list[int], BeforeValidator(_as_triple)] = fx(
        default_factory=lambda: [1, 1, 1], min_length=3, max_length=3,
        desc="Repetitions [a, b, c] (or one int for all three).",
        fix="give three positive integers, e.g. [2, 2, 2]")
    scale: float = fx(1.0, gt=0.5, lt=2.0, desc="Linear factor on cell and positions after the "
                      "supercell (volume × scale³).", fix="use a factor near 1, e.g. 1.02")
    defects: list[DefectConfig] = fx(default_factory=list, desc="Point defects, applied in order.",
                                     fix="list mappings, e.g. [{type: vacancy, species: Li}]")
    oxidation_states: dict[Symbol, float] | None = fx(
        None, desc="Formal oxidation state per element (e); default: pymatgen's guess for the "
        "pristine composition (substituents: their common state of the replaced ion's sign).",
        fix="give a mapping, e.g. {Li: 1, O: -2, Cl: -1}")
    require_neutral: bool = fx(False, desc="Refuse a system whose defects leave a net formal "
                               "charge.", fix="use true or false")
    role: Literal["explore", "reference"] = fx(
        "explore", desc="explore: a starting structure of the stages; reference: a phase only "
        "labeled in the initial data (e.g. Li2O, LiCl beside defective Li3OCl).",
        fix="use explore or reference")
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

    @model_validator(mode="after")
    def _one_source(self):
        if (self.structure is None) == (self.random_packing is None):
            both = self.structure is not None
            fail(Problem("random_packing" if both else "structure",
                         "is given together with `structure`" if both else "is required",
                         fix="give either `structure` (a file) or `random_packing`, not both"
                         if both else "add `structure`: give the path of a structure file (or "
                         "use `random_packing`)"))
        if self.fmt is not None and self.structure is None:
            fail(Problem("fmt", "is only used with `structure`", self.fmt, "remove `fmt`"))
        return self


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


class ImportedDataConfig(_Model):
    """Labeled data imported with its provenance, e.g. a DP-GEN run's ``iter.*/02.fp/data.*``.

    The init Firework reads `path` on a cpu worker, so it is absolute (``firegen import-dpgen``
    writes it so); each frame becomes a labeled configuration with origin ``{kind: imported,
    source, dpgen_iteration, path, frame}``.
    """

    path: str = fx(min_length=1, desc="Absolute path of a deepmd/npy or deepmd/raw system folder, "
                   "or of a folder holding several (searched for type.raw).",
                   fix="give the absolute path of the folder (e.g. /runs/cu/iter.000002/02.fp/data.000)")
    fmt: Literal["auto", "deepmd/npy", "deepmd/raw"] = fx(
        "auto", desc="dpdata format of the folder; auto: deepmd/npy when set.* folders exist, "
        "else deepmd/raw.")
    source: Slug = fx("dpgen", desc="Where the data come from (stored in the origin).", fix=SLUG_FIX)
    dpgen_iteration: int | None = fx(None, ge=0, desc="DP-GEN iteration that labeled the data "
                                     "(iter.XXXXXX); null for DP-GEN's init data.",
                                     fix="give the iteration number k of iter.k, or null")

    @field_validator("path")
    @classmethod
    def _absolute(cls, v: str) -> str:
        if not Path(v).expanduser().is_absolute():
            fail(Problem("", "must be an absolute path (the init Firework reads it on a cpu worker)",
                         v, "give the absolute path, or list the folder under deepmd_npy instead"))
        return str(Path(v).expanduser())


class InitialDataConfig(_Model):
    """Where the first committee's training data come from (at least one source)."""

    deepmd_npy: list[str] = fx(default_factory=list,
                               desc="dpdata deepmd/npy folders (relative to the config file's "
                               "folder), or folders holding several of them.",
                               fix="list folders written by dpdata's deepmd/npy format")
    perturb: PerturbConfig | None = fx(None, desc="Perturb every system and label the copies.",
                                       fix="give a mapping, e.g. perturb: {count: 10}")
    imported: list[ImportedDataConfig] = fx(
        default_factory=list, desc="Labeled data with provenance (absolute paths), e.g. a DP-GEN "
        "run's labeled iterations; written by `firegen import-dpgen --run-dir`.",
        fix="list mappings such as {path: /abs/iter.000000/02.fp/data.000, dpgen_iteration: 0}")

    @model_validator(mode="after")
    def _some_source(self):
        if not self.deepmd_npy and self.perturb is None and not self.imported:
            fail(Problem("", "gives no initial data",
                         fix="add `perturb: {count: 10}` or `deepmd_npy: [path/to/system]`"))
        return self

    def check_folders(self, resolve: Callable[[str], Path], type_map: list[str]) -> list[Problem]:
        """Problems with the deepmd_npy folders (missing, unreadable, elements not in type_map);
        `resolve` makes a config-relative path absolute."""
        import dpdata

        probs = []
        entries = [(f"initial_data.deepmd_npy[{j}]", folder, resolve(folder), "deepmd/npy")
                   for j, folder in enumerate(self.deepmd_npy)]
        entries += [(f"initial_data.imported[{j}].path", item.path, Path(item.path), item.fmt)
                    for j, item in enumerate(self.imported)]
        for loc, folder, path, fmt in entries:
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
                sub_fmt = fmt if fmt != "auto" else (
                    "deepmd/npy" if any(sub.glob("set.*")) else "deepmd/raw")
                try:
                    names = dpdata.LabeledSystem(str(sub), fmt=sub_fmt).get_atom_names()
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
    backend: Literal["tensorflow"] = fx("tensorflow", desc="deepmd-kit backend. Only TensorFlow for now "
                                        "(`dp --tf train`, frozen .pb models that LAMMPS' deepmd plugin and "
                                        "`dp test` read); PyTorch (.pth) is not wired into training and "
                                        "exploration yet.", fix="use backend: tensorflow")
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
    skip_when_accurate_above: float | None = fx(
        None, gt=0, le=1, desc="Label nothing in an iteration whose accurate ratio is at least this "
        "(DP-GEN's fp_accurate_threshold); null always labels.",
        fix="use a fraction such as 0.999, or null")
    soft_accurate_ratio: float | None = fx(
        None, gt=0, le=1, desc="From this accurate ratio up to skip_when_accurate_above the cap "
        "max_per_iteration shrinks linearly to 0 (DP-GEN's fp_accurate_soft_threshold); "
        "needs skip_when_accurate_above.",
        fix="use a fraction below skip_when_accurate_above, e.g. 0.99")

    @model_validator(mode="after")
    def _caps(self):
        probs = []
        if self.min_per_iteration > self.max_per_iteration:
            probs.append(Problem("min_per_iteration",
                                 f"must not exceed max_per_iteration = {self.max_per_iteration}",
                                 self.min_per_iteration, "lower min_per_iteration or raise the cap"))
        if self.soft_accurate_ratio is not None:
            if self.skip_when_accurate_above is None:
                probs.append(Problem("soft_accurate_ratio", "needs skip_when_accurate_above",
                                     self.soft_accurate_ratio,
                                     "set skip_when_accurate_above too, or remove soft_accurate_ratio"))
            elif self.soft_accurate_ratio > self.skip_when_accurate_above:
                probs.append(Problem("soft_accurate_ratio", "must not exceed skip_when_accurate_above "
                                     f"= {self.skip_when_accurate_above}", self.soft_accurate_ratio,
                                     "make soft_accurate_ratio <= skip_when_accurate_above"))
        if probs:
            fail(*probs)
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


# ---- exploration protocols (units: K, bar, fs for dt, ps for durations, K/ps for rates) ----
_ENSEMBLE_ALIASES = {"npt-iso": "npt", "npt-i": "npt", "npt-a": "npt-aniso", "npt-t": "npt-tri"}
ENSEMBLE_FIX = "use nvt, npt (npt-iso), npt-aniso or npt-tri"


def _ensemble_alias(value: Any) -> Any:
    """DP-GEN's npt-i/npt-a/npt-t and npt-iso name firegen's npt/npt-aniso/npt-tri."""
    return _ENSEMBLE_ALIASES.get(value, value) if isinstance(value, str) else value


def _as_list(value: Any) -> Any:
    return [value] if isinstance(value, dict) else value


def _one_or_many(value: Any) -> Any:
    return [value] if isinstance(value, (int, float, str)) and not isinstance(value, bool) else value


NormalDirection = Literal["xx", "yy", "zz"]
ShearDirection = Literal["yz", "xz", "xy"]


class _StrainSet(_Model):
    """Strains along some directions: every direction × every value is one strained start."""

    values: list[float] | None = fx(None, min_length=1, desc="Strains (fractions, 0.05 = 5 %; "
                                    "negative = compression or opposite shear).",
                                    fix="list strain fractions, e.g. [-0.05, 0.05]")
    max: float | None = fx(None, gt=0, le=1, desc="Largest strain (fraction); without `values`, "
                           "`count` evenly spaced strains up to it.",
                           fix="give the largest strain as a fraction, e.g. 0.5 (50 %)")
    count: int = fx(1, gt=0, le=20, desc="Strains generated up to `max` (max/count … max).",
                    fix="use a small positive number, e.g. 5")
    symmetric: bool = fx(True, desc="With `max`: also the negative strains.")

    @model_validator(mode="after")
    def _some_values(self):
        if self.values is None and self.max is None:
            fail(Problem("", "gives no strains", fix="give `values: [0.02, 0.05]` or `max: 0.5`"))
        if self.values is not None:
            bad = [v for v in self.values if v == 0 or v <= -1 or v > 1
                   or (self.max is not None and abs(v) > self.max)]
            if bad:
                fail(Problem("values", "must be non-zero fractions in (-1, 1]"
                             + (f", at most max = {self.max}" if self.max is not None else ""),
                             bad[0], "use fractions such as 0.05; the unstrained cell is "
                             "`isotropic: [1.0]`"))
        return self

    def strains(self) -> list[float]:
        """The strain values (fractions)."""
        if self.values is not None:
            return list(self.values)
        up = [self.max * k / self.count for k in range(1, self.count + 1)]
        return [-v for v in reversed(up)] + up if self.symmetric else up


class UniaxialStrainConfig(_StrainSet):
    """Uniaxial strains along xx, yy, zz (fractions)."""

    directions: list[NormalDirection] = fx(default_factory=lambda: ["xx", "yy", "zz"],
                                           min_length=1, desc="Normal directions.",
                                           fix="list some of xx, yy, zz")


class ShearStrainConfig(_StrainSet):
    """Shear strains in yz, xz, xy (engineering shear strain, LAMMPS tilt convention)."""

    directions: list[ShearDirection] = fx(default_factory=lambda: ["yz", "xz", "xy"],
                                          min_length=1, desc="Shear directions.",
                                          fix="list some of yz, xz, xy")


class FixedStrainConfig(_Model):
    """Strained copies of the starting cell (atoms scaled with it), each its own condition."""

    isotropic: list[Annotated[float, Field(gt=0.5, lt=2.0)]] | None = fx(
        None, min_length=1, desc="Linear scale factors (1.0 = unstrained; volume scales as s³).",
        fix="use factors near 1, e.g. [0.95, 1.00, 1.05]")
    uniaxial: UniaxialStrainConfig | None = fx(None, desc="Uniaxial strains.")
    shear: ShearStrainConfig | None = fx(None, desc="Shear strains.")

    @model_validator(mode="after")
    def _some(self):
        if self.isotropic is None and self.uniaxial is None and self.shear is None:
            fail(Problem("", "gives no strain",
                         fix="give isotropic: [0.95, 1.0, 1.05] and/or uniaxial/shear strains"))
        return self

    def specs(self) -> list[dict[str, Any] | None]:
        """Strain specs (protocols' {mode, direction, value}); None is the unstrained cell."""
        out: list[dict[str, Any] | None] = [
            None if s == 1.0 else {"mode": "isotropic", "direction": None, "value": s - 1.0}
            for s in self.isotropic or []]
        for mode, part in (("uniaxial", self.uniaxial), ("shear", self.shear)):
            if part is not None:
                out += [{"mode": mode, "direction": d, "value": v}
                        for d in part.directions for v in part.strains()]
        return out


class DeformConfig(_Model):
    """Continuous deformation over the run (LAMMPS `fix deform ... remap x`), NVT only."""

    mode: Literal["isotropic", "uniaxial", "shear"] = fx(
        desc="isotropic (all lengths), uniaxial (one length) or shear (one tilt).",
        fix="use isotropic, uniaxial or shear")
    direction: Annotated[list[Literal["xx", "yy", "zz", "yz", "xz", "xy"]],
                         BeforeValidator(_one_or_many)] | None = fx(
        None, desc="Direction(s): xx/yy/zz for uniaxial, yz/xz/xy for shear (default all "
        "three); none for isotropic.", fix="use xx, yy, zz (uniaxial) or yz, xz, xy (shear)")
    final_strain: Annotated[list[float], BeforeValidator(_one_or_many)] = fx(
        min_length=1, desc="Strain(s) reached at the end of the run (fraction; negative = "
        "compression).", fix="give a fraction such as 0.5 (50 %) or a list, e.g. [0.5, -0.3]")

    @model_validator(mode="after")
    def _fits(self):
        normal, shear = ["xx", "yy", "zz"], ["yz", "xz", "xy"]
        if self.mode == "isotropic" and self.direction:
            fail(Problem("direction", "is not used by mode 'isotropic'", self.direction,
                         "remove direction, or use mode uniaxial/shear"))
        allowed = {"uniaxial": normal, "shear": shear}.get(self.mode)
        if allowed is not None:
            bad = [d for d in self.direction or [] if d not in allowed]
            if bad:
                fail(Problem("direction", f"does not fit mode '{self.mode}'", bad[0],
                             f"use {', '.join(allowed)} with mode {self.mode}"))
        bad = [v for v in self.final_strain if v == 0 or v <= -1 or v > 1]
        if bad:
            fail(Problem("final_strain", "must be a non-zero fraction in (-1, 1]", bad[0],
                         "use e.g. 0.5 for 50 % (negative compresses)"))
        return self

    def specs(self) -> list[dict[str, Any]]:
        """Strain specs (protocols' {mode, direction, value}), one per direction and strain."""
        default = {"isotropic": [None], "uniaxial": ["xx", "yy", "zz"], "shear": ["yz", "xz", "xy"]}
        dirs = self.direction or default[self.mode]
        return [{"mode": self.mode, "direction": d, "value": v}
                for d in dirs for v in self.final_strain]


class RampConfig(_Model):
    """Temperature ramp over the run: the thermostat target goes linearly start → stop (K)."""

    start: float = fx(gt=0, desc="Target temperature at the first step (K); also the initial "
                      "velocities' temperature.", fix="give a positive temperature in K, e.g. 10")
    stop: float = fx(gt=0, desc="Target temperature at the last step (K); below start = "
                     "cooling.", fix="give a positive temperature in K, e.g. 2000")

    @model_validator(mode="after")
    def _differs(self):
        if self.start == self.stop:
            fail(Problem("stop", "equals start (no ramp)", self.stop,
                         "use `temperatures: [T]` for a constant temperature"))
        return self


class MeltQuenchConfig(_Model):
    """Melt-quench in one run: heat, hold, cool (NVT), relax (NVT), then NPT at the final T/P."""

    melt_temperature: Annotated[list[Annotated[float, Field(gt=0)]],
                                BeforeValidator(_one_or_many)] = fx(
        min_length=1, desc="Melt (hold) temperature(s) (K); each is one condition.",
        fix="give the melt temperature in K, e.g. 1400, or a list [1200, 1400]")
    heat_ps: float = fx(10.0, gt=0, desc="Heating ramp final_temperature → melt (ps).",
                        fix="give a positive duration in ps, e.g. 10")
    hold_ps: float = fx(20.0, ge=0, desc="Hold at the melt temperature (ps).",
                        fix="give a duration in ps, e.g. 20")
    quench_rate_K_per_ps: float = fx(5.0, gt=0, desc="Cooling rate melt → final_temperature "
                                     "(K/ps).", fix="give a positive rate in K/ps, e.g. 5")
    relax_ps: float = fx(10.0, ge=0, desc="NVT relaxation at final_temperature (ps).",
                         fix="give a duration in ps, e.g. 10")
    npt_ps: float = fx(20.0, ge=0, desc="Closing NPT run at final_temperature and "
                       "final_pressure (ps).", fix="give a duration in ps, e.g. 20")
    final_temperature: float = fx(300.0, gt=0, desc="Start and end temperature (K).",
                                  fix="give a positive temperature in K, e.g. 300")
    final_pressure: float = fx(1.0, desc="Pressure of the closing NPT run (bar).",
                               fix="give a pressure in bar, e.g. 1")

    @model_validator(mode="after")
    def _hot_enough(self):
        low = [t for t in self.melt_temperature if t <= self.final_temperature]
        if low:
            fail(Problem("melt_temperature", f"must be above final_temperature = "
                         f"{self.final_temperature:g} K", low[0],
                         "melt above the final temperature, e.g. 1400 K"))
        return self

    def recipes(self) -> list[dict[str, float]]:
        """One MDCondition `melt_quench` recipe per melt temperature."""
        keys = ("heat_ps", "hold_ps", "quench_rate_K_per_ps", "relax_ps", "npt_ps")
        return [{"melt_temperature": t, **{k: getattr(self, k) for k in keys}}
                for t in self.melt_temperature]


class StageConfig(_Model):
    """One exploration protocol, iterated until it converges or reaches max_iterations.

    Its conditions (one MD run per system each) are the product of the thermal ladder
    (`temperatures`, or `ramp`s), the pressure ladder (NPT), the fixed `strain`s and the
    `deform`ations given; a `melt_quench` stage has one condition per melt temperature.
    """

    name: Slug = fx(desc="Stage name (unique).", fix=SLUG_FIX)
    ensemble: Annotated[Literal["nvt", "npt", "npt-aniso", "npt-tri"] | None,
                        BeforeValidator(_ensemble_alias)] = fx(
        None, desc="MD ensemble: nvt, npt (isotropic; alias npt-iso, DP-GEN npt-i), npt-aniso "
        "(npt-a), npt-tri (npt-t). Required, except with melt_quench (closing NPT; default npt).",
        fix=ENSEMBLE_FIX)
    temperatures: list[Annotated[float, Field(gt=0)]] | None = fx(
        None, min_length=1, desc="Temperature ladder (K); required unless ramp or melt_quench.",
        fix="list positive temperatures in K, e.g. [300, 600]")
    pressures: list[float] | None = fx(None, desc="Pressure ladder (bar); npt ensembles only.",
                                       fix="list pressures in bar, e.g. [1, 1000]")
    nsteps: int | None = fx(None, gt=0, desc="MD steps per trajectory (melt_quench: derived "
                            "from its durations).", fix="set a positive number of MD steps")
    dt: float = fx(1.0, gt=0, le=10, desc="MD time step (fs).",
                   fix="use a time step in fs, e.g. 1.0 (0.5 with light atoms)")
    trj_freq: int = fx(10, gt=0, desc="Write (and judge) a frame every this many steps.",
                       fix="set a positive number of steps between frames, e.g. 10")
    tau_t: float = fx(0.1, gt=0, le=10, desc="Thermostat damping time (ps).",
                      fix="use a damping time in ps (not fs), e.g. 0.1 (100 time steps)")
    tau_p: float = fx(0.5, gt=0, le=100, desc="Barostat damping time (ps).",
                      fix="use a damping time in ps (not fs), e.g. 0.5")
    ramp: Annotated[list[RampConfig], BeforeValidator(_as_list)] | None = fx(
        None, min_length=1, desc="Temperature ramp(s) {start, stop} (K) over each run, instead "
        "of `temperatures`; each ramp is one condition.",
        fix="e.g. ramp: [{start: 10, stop: 2000}, {start: 2000, stop: 10}]")
    strain: FixedStrainConfig | None = fx(None, desc="Fixed strains of the starting cell.",
                                          fix="e.g. strain: {isotropic: [0.95, 1.0, 1.05]}")
    deform: Annotated[list[DeformConfig], BeforeValidator(_as_list)] | None = fx(
        None, min_length=1, desc="Continuous deformation(s) over the run (NVT, LAMMPS only).",
        fix="e.g. deform: {mode: uniaxial, direction: xx, final_strain: 0.5}")
    melt_quench: MeltQuenchConfig | None = fx(None, desc="Melt-quench recipe (one multi-segment "
                                              "run per melt temperature).",
                                              fix="e.g. melt_quench: {melt_temperature: 1400}")
    systems: list[str] | None = fx(None, desc="Names of the systems explored (default: all).",
                                   fix="list names from the top-level `systems`")
    converged_when: ConvergenceConfig = fx(default_factory=ConvergenceConfig,
                                           desc="Convergence criterion.")
    max_iterations: int = fx(5, gt=0, desc="Most iterations spent in this stage.",
                             fix="set a positive number of iterations")

    @model_validator(mode="after")
    def _consistent(self):
        probs = self._melt_quench_problems() if self.melt_quench else self._ladder_problems()
        steps = (self.nsteps if not self.melt_quench
                 else min(c["nsteps"] for c in self.conditions()))
        if steps is not None and self.trj_freq > steps:
            probs.append(Problem("trj_freq", f"exceeds nsteps = {steps}", self.trj_freq,
                                 "write frames more often than once per trajectory"))
        if self.tau_t * 1000 <= self.dt:
            probs.append(Problem("tau_t", f"is not longer than dt = {self.dt} fs", self.tau_t,
                                 "tau_t is in ps; use about 100 time steps, e.g. 0.1"))
        if probs:
            fail(*probs)
        from firegen.workflows.steps.md import MDCondition

        for i, cond in enumerate(self.conditions()):  # what explore() will build, checked now
            try:
                MDCondition(**cond)
            except ValueError as exc:
                fail(Problem("", f"condition {i} is not a valid MD run: {exc}",
                             fix="adjust the stage's protocol fields"))
        return self

    def _ladder_problems(self) -> list[Problem]:
        probs = []
        if self.ensemble is None:
            probs.append(Problem("ensemble", "is required", fix=f"add `ensemble`: {ENSEMBLE_FIX}"))
        if self.nsteps is None:
            probs.append(Problem("nsteps", "is required",
                                 fix="add `nsteps`: set a positive number of MD steps"))
        if self.temperatures is None and self.ramp is None:
            probs.append(Problem("temperatures", "is required (or a ramp)",
                                 fix="list temperatures in K, e.g. temperatures: [300, 600], or "
                                 "give ramp: {start: 10, stop: 2000}"))
        if self.temperatures is not None and self.ramp is not None:
            probs.append(Problem("ramp", "replaces the temperature ladder", fix="remove "
                                 "`temperatures`, or remove `ramp` (one thermal protocol a stage)"))
        if self.ensemble and self.ensemble.startswith("npt") and not self.pressures:
            probs.append(Problem("pressures", f"is required for ensemble '{self.ensemble}'",
                                 NOTHING if self.pressures is None else self.pressures,
                                 "list pressures in bar, e.g. pressures: [1]"))
        if self.ensemble == "nvt" and self.pressures:
            probs.append(Problem("pressures", "is not used by ensemble 'nvt'", self.pressures,
                                 "remove pressures or use ensemble npt"))
        if self.deform and self.ensemble not in (None, "nvt"):
            probs.append(Problem("deform", f"needs ensemble 'nvt', not '{self.ensemble}'",
                                 fix="use ensemble nvt with deform (a barostat would fight the "
                                 "imposed box change), or a fixed `strain` with NPT"))
        return probs

    def _melt_quench_problems(self) -> list[Problem]:
        probs = [Problem(name, "is not used with melt_quench", getattr(self, name),
                         f"remove `{name}`; the melt_quench recipe sets " +
                         ("the run length from its durations" if name == "nsteps" else
                          "temperatures and pressure (final_temperature, final_pressure)"
                          if name in ("temperatures", "pressures", "ramp") else
                          "the whole protocol"))
                 for name in ("temperatures", "pressures", "ramp", "nsteps", "strain", "deform")
                 if getattr(self, name) is not None]
        if self.ensemble == "nvt":
            probs.append(Problem("ensemble", "must be an NPT ensemble with melt_quench (its "
                                 "closing segment)", self.ensemble,
                                 "use npt, npt-aniso or npt-tri, or leave ensemble out (npt)"))
        return probs

    def conditions(self) -> list[dict[str, Any]]:
        """One MD condition per dict, the keyword arguments of `MDCondition` (less the seed).

        Order: thermal (temperature or ramp) outer, then pressure, fixed strain, deformation.
        Keys: ensemble, temperature (K; a ramp's start), pressure (bar; None for nvt), nsteps,
        dt (fs), trj_freq, tau_t (ps), tau_p (ps); and only where used: temperature_stop (K,
        ramp end), strain and deform ({mode, direction, value}), melt_quench (recipe; then
        temperature/pressure are the final ones). A plain ladder gives exactly the first eight.
        """
        base = dict(dt=self.dt, trj_freq=self.trj_freq, tau_t=self.tau_t, tau_p=self.tau_p)
        if self.melt_quench:
            from firegen.workflows.steps.protocols import melt_quench_nsteps

            mq = self.melt_quench
            return [dict(ensemble=self.ensemble or "npt", temperature=mq.final_temperature,
                         pressure=mq.final_pressure,
                         nsteps=melt_quench_nsteps(r, mq.final_temperature, self.dt), **base,
                         melt_quench=r) for r in mq.recipes()]
        thermal = ([(t, None) for t in self.temperatures] if self.temperatures is not None
                   else [(r.start, r.stop) for r in self.ramp or []])
        pressures: list[float | None] = list(self.pressures or []) if self.ensemble != "nvt" \
            else [None]
        strains = self.strain.specs() if self.strain else [None]
        deforms = [s for d in self.deform for s in d.specs()] if self.deform else [None]
        out = []
        for t, t_stop in thermal:
            for p in pressures:
                for strain in strains:
                    for deform in deforms:
                        cond = dict(ensemble=self.ensemble, temperature=t, pressure=p,
                                    nsteps=self.nsteps, **base)
                        extra = dict(temperature_stop=t_stop, strain=strain, deform=deform)
                        out.append({**cond, **{k: v for k, v in extra.items() if v is not None}})
        return out

    def condition_keys(self) -> list[str]:
        """Short human key of each condition (same order), e.g. `T300-P1`, `ramp10-2000K`,
        `T600-uniaxial_xx+0.05`; a repeated one gets `~2`, `~3` appended."""
        from firegen.workflows.steps.protocols import condition_key

        keys, seen = [], {}
        for cond in self.conditions():
            key = condition_key(cond)
            seen[key] = seen.get(key, 0) + 1
            keys.append(key if seen[key] == 1 else f"{key}~{seen[key]}")
        return keys

    def lammps_only(self) -> list[str]:
        """Fields of this stage the ASE engine cannot run (continuous `deform`)."""
        return ["deform"] if self.deform else []

    def summary(self) -> dict[str, Any]:
        """What a per-iteration table prints for this stage, for every protocol: ensemble,
        temperatures (K: the ladder, the ramps' ends, or the melt and final temperatures),
        pressures (bar), nsteps (the longest run) and protocols (e.g. ['ramp', 'deform'])."""
        conds = self.conditions()
        temps = sorted({t for c in conds for t in (c["temperature"], c.get("temperature_stop"),
                                                   (c.get("melt_quench") or {}).get("melt_temperature"))
                        if t is not None})
        kinds = [k for k in ("ramp", "strain", "deform", "melt_quench") if getattr(self, k)]
        return {"ensemble": conds[0]["ensemble"], "temperatures": temps,
                "pressures": sorted({c["pressure"] for c in conds if c["pressure"] is not None}),
                "nsteps": max(c["nsteps"] for c in conds), "protocols": kinds}


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
    min_distance_ratio: float = fx(0.7, ge=0, lt=1, desc="MD sanity: a frame with two atoms closer than "
                                   "this fraction of the sum of their covalent radii ends the trajectory's "
                                   "useful part (it and later frames count as failed); 0 turns it off.",
                                   fix="use a fraction such as 0.7, or 0 to turn the check off")
    max_energy_rise: float | None = fx(2.0, gt=0, desc="MD sanity: a potential energy more than this many "
                                       "eV/atom above the trajectory's first frame ends its useful part "
                                       "(engines that report energies); null turns it off.",
                                       fix="use an energy in eV/atom such as 2.0, or null")
