"""Config of what a campaign simulates and starts from: systems (structure file or random packing,
supercell, defects with charge bookkeeping) and the initial data (perturbed copies, deepmd/npy folders,
imported DP-GEN data). `config.py` assembles them into `CampaignConfig`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BeforeValidator, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from .config_fields import (ELEMENTS, SLUG_FIX, Problem, Slug, Symbol, _as_triple, _check_symbol, _Model,
                            fail, fx, one_line)
from .labeled_data import labeled_data_problem
from .structure_builders import MAX_PACKED_ATOMS, BuildError, formula_counts
from .structures import MAX_ATOMS

#: Most interstitials of one defect step: each is a void search over the whole cell.
MAX_INTERSTITIALS = 100


_DEFECT_SPECIES = {"vacancy": 1, "substitution": 1, "interstitial": 1,  # one element
                   "schottky": 0, "antisite": 2}  # 0: a list of two or more; 2: exactly two


class DefectConfig(_Model):
    """One point-defect step, applied to the (supercell, scaled) structure in list order.

    Sites are drawn with numpy's ``default_rng(seed)`` (see
    `firegen.campaign.structure_builders` for the exact rules): deterministic for a seed.
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
    count: int = fx(1, ge=1, le=MAX_ATOMS, desc="Atoms (vacancy, substitution, interstitial: at most "
                    f"{MAX_INTERSTITIALS}), neutral units (schottky) or exchanged pairs (antisite).",
                    fix="give a positive count")
    arrangement: Literal["nearest", "farthest"] = fx(
        "nearest", desc="schottky/antisite: the unit's other sites are the nearest to (or "
        "farthest from, minimum image) the anchor site.", fix="use nearest or farthest")
    seed: int = fx(0, ge=0, desc="Seed of the site choice (numpy's default_rng).",
                   fix="give a non-negative integer")

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
        if self.type == "interstitial" and self.count > MAX_INTERSTITIALS:
            probs.append(Problem("count", f"must be at most {MAX_INTERSTITIALS} for interstitials (each is a "
                                 "void search over the cell)", self.count, "add fewer interstitials"))
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
    units: int = fx(ge=1, le=MAX_PACKED_ATOMS, desc=f"Formula units in the box (at most {MAX_PACKED_ATOMS:,} "
                    "atoms in all; take a supercell of the packing for more).", fix="give a positive number, e.g. 8")
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
    seed: int = fx(0, ge=0, desc="Random seed of the placement.", fix="give a non-negative integer")
    max_attempts: int = fx(10000, ge=1, le=1_000_000, desc="Trial positions per atom before giving up.",
                           fix="give a positive number up to 1000000, e.g. 10000")

    @model_validator(mode="after")
    def _one_volume(self):
        if (self.density is None) == (self.volume_per_atom is None):
            both = self.density is not None
            fail(Problem("density", "and volume_per_atom are both given" if both else
                         "is required (or volume_per_atom)", fix="give one of density (g/cm³), "
                         "e.g. 2.0, and volume_per_atom (Å³), e.g. 15.0"))
        try:
            counts = formula_counts(self.formula, self.units)
        except BuildError as exc:
            fail(Problem(exc.field, exc.msg, getattr(self, exc.field), exc.fix))
        elements = list(counts)
        if sum(counts.values()) > MAX_PACKED_ATOMS:
            fail(Problem("units", f"packs {sum(counts.values()):,} atoms, more than one random packing places "
                         f"({MAX_PACKED_ATOMS:,}: it is quadratic in the atoms)", self.units,
                         "pack fewer units and take a supercell of the packing"))
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
    `oxidation_states` (see `firegen.campaign.structure_builders.build_system`)."""

    name: Slug = fx(desc="System name (unique), used by stages.", fix=SLUG_FIX)
    structure: str | None = fx(None, min_length=1, desc="Structure file (POSCAR/CIF/extxyz/...), "
                               "relative to the config file's folder.",
                               fix="give the path of a structure file")
    random_packing: RandomPackingConfig | None = fx(
        None, desc="Pack formula units at random instead of reading a file.",
        fix="e.g. random_packing: {formula: Na3OCl, units: 8, density: 2.0}")
    supercell: Annotated[list[int], BeforeValidator(_as_triple)] = fx(
        default_factory=lambda: [1, 1, 1], min_length=3, max_length=3,
        desc=f"Repetitions [a, b, c] (or one int for all three); the built system has at most {MAX_ATOMS:,} atoms "
        "(checked before it is built).",
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
        if math.prod(v) > MAX_ATOMS:
            fail(Problem("", f"repeats the cell {math.prod(v):,} times: more than {MAX_ATOMS:,} atoms", v,
                         "use a smaller supercell, e.g. [4, 4, 4]"))
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

    count: int = fx(10, gt=0, le=10_000, desc="Perturbed copies per system and per scale (each is labeled).",
                    fix="set how many perturbed copies to make, e.g. 10 (at most 10000)")
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
    seed: int = fx(0, ge=0, le=2**32 - 1, desc="Random seed of the perturbation (numpy's legacy seeding: "
                   "0 to 2**32 - 1).", fix="give an integer from 0 to 4294967295")


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
                    system = dpdata.LabeledSystem(str(sub), fmt=sub_fmt)
                    names = system.get_atom_names()
                except Exception as exc:  # any reader failure is a config problem
                    probs.append(Problem(loc, f"{sub} cannot be read: {one_line(exc)}", folder,
                                         "re-export it with dpdata (deepmd/npy, labeled)"))
                    continue
                problem = labeled_data_problem(system)
                if problem:
                    probs.append(Problem(loc, f"{sub} {problem}", folder,
                                         "remove or relabel those frames (firegen trains on no NaN)"))
                    continue
                extra = sorted(set(names) - set(type_map))
                if extra:
                    probs.append(Problem(loc, f"{sub} has {', '.join(extra)}, not in type_map",
                                         folder, f"add {', '.join(extra)} to type_map"))
        return probs
