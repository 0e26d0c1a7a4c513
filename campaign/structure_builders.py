"""Building a system's starting structure: random packing, point defects, formal charge.

A system is made by a short pipeline (:func:`build_system`): a base structure (a file, or
formula units packed at random in a cubic box) → supercell → linear scale → point defects
applied in order. Every step is a pure function here; structures are `ase.Atoms` between
steps and pymatgen `Structure` inside the defect functions (``AseAtomsAdaptor``).

Site-choice rules (all deterministic given ``seed``; ``numpy.random.default_rng(seed)``):

- vacancy / substitution: ``count`` distinct sites of ``species`` drawn uniformly.
- schottky: a charge-neutral unit (e.g. one Li + one Cl in Li3OCl, two Li + one O): an
  *anchor* site of the first species is drawn uniformly; the unit's other sites are the ones
  nearest to the anchor (minimum image; ``arrangement="farthest"``: the farthest), ties broken
  by the lower site index. ``count`` units are removed one after the other.
- antisite: a site of the first species is drawn, the nearest (or farthest) site of the
  second is chosen as above, and the two exchange species.
- interstitial: the structure is sampled on a grid (``grid_spacing`` Å); each point's
  clearance is its distance to the nearest atom; the atom goes on a point drawn uniformly among
  those within ``clearance_tolerance`` Å of the largest clearance (the centre of the biggest
  void, up to the grid's resolution). Points closer to a site emptied by an earlier step than
  that atom's nearest-neighbour distance are not used (vacancy + interstitial = a Frenkel pair).

pymatgen-analysis-defects is not used for the edits: its interstitial generator took 333 s on a
135-atom Li3OCl supercell, and its ``Defect`` objects run a symmetry analysis and add
oxidation states to the structure they are given. Defect names follow its convention
(``v_Li``, ``Br_Cl``, ``Li_i``, ``v_Li+v_Cl``, ``O_Cl+Cl_O``).

Charge bookkeeping: each element carries one formal oxidation state (a user map, else
pymatgen's most likely guess for the pristine composition, ``Composition.oxi_state_guesses``);
a structure's formal charge is the sum over its atoms (e, elementary charges). A Li+ vacancy
changes it by −1, a Schottky unit or an isovalent substitution by 0, O²⁻ on a Cl⁻ site by −1.

Units: lengths Å, volumes Å³, densities g/cm³, charges e.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from functools import reduce
from typing import Any

import numpy as np
from ase import Atoms
from ase.data import atomic_masses, atomic_numbers, covalent_radii

from .errors import FatalError
from .structures import MAX_ATOMS, _plain, make_supercell, read_structure, scaled

AMU_PER_A3_IN_G_PER_CM3 = 1.66053906660  # 1 amu/Å³ = 1.66054 g/cm³
#: Most atoms one random packing places: random sequential insertion is quadratic in the atoms (2,500 take
#: about 13 s on one core); pack fewer formula units and take a supercell of the packing for more.
MAX_PACKED_ATOMS = 5_000
#: Most points of the interstitial void-search grid (0.2 Å spacing): a cell of about (25 Å)³, searched in
#: seconds; larger cells would take minutes and gigabytes per interstitial.
MAX_VOID_GRID = 2_000_000
CLOSE_PACKING = 0.7405  # volume fraction of close-packed equal spheres


class BuildError(FatalError, ValueError):
    """A system that cannot be built as configured. ``field`` is the config field at fault,
    relative to the system (e.g. ``"random_packing.density"``, ``"defects[1].species"``);
    ``fix`` says what to change."""

    def __init__(self, field: str, msg: str, fix: str = ""):
        self.field, self.msg, self.fix = field, msg, fix
        super().__init__(f"{field}: {msg}" + (f". Fix: {fix}" if fix else ""))


# ---- formal charges --------------------------------------------------------------------------
def guess_oxidation_states(symbols: Sequence[str] | Mapping[str, float],
                           given: Mapping[str, float] | None = None) -> dict[str, float] | None:
    """Formal oxidation state per element: `given` where set, pymatgen's most likely
    charge-balanced guess (``Composition.oxi_state_guesses`` of the reduced composition, with
    `given` as constraints) for the rest. `symbols` is a list of atom symbols or a
    {element: count} map. Returns None when no charge-balanced guess exists."""
    from pymatgen.core import Composition

    given = dict(given or {})
    counts = Counter(symbols) if not isinstance(symbols, Mapping) else dict(symbols)
    if all(el in given for el in counts):
        return {k: float(v) for k, v in given.items()}
    comp = Composition(counts).reduced_composition
    guesses = comp.oxi_state_guesses(oxi_states_override={k: [v] for k, v in given.items()
                                                          if k in counts})
    if not guesses:
        return None
    return {str(k): float(v) for k, v in guesses[0].items()} | {k: float(v) for k, v in given.items()}


def formal_charge(symbols: Sequence[str], oxidation_states: Mapping[str, float]) -> float:
    """Net formal charge (e) of atoms with these symbols: the sum of their oxidation states."""
    missing = sorted(set(symbols) - set(oxidation_states))
    if missing:
        raise BuildError("oxidation_states", f"has no oxidation state for {', '.join(missing)}",
                         f"add {', '.join(f'{m}: <charge>' for m in missing)} to oxidation_states")
    return float(sum(oxidation_states[s] for s in symbols))


def substituent_oxidation_state(symbol: str, replaced_state: float) -> float | None:
    """A likely oxidation state for `symbol` put on a site whose ion had `replaced_state`: of
    pymatgen's common oxidation states of that element, the one of the same sign closest to it
    (Br on Cl⁻ → −1, O on S²⁻ → −2, Mg on Li⁺ → +2); None if it has none of that sign."""
    from pymatgen.core import Element

    same = [q for q in Element(symbol).common_oxidation_states
            if q * replaced_state > 0 or q == replaced_state == 0]
    return float(min(same, key=lambda q: (abs(q - replaced_state), abs(q)))) if same else None


def schottky_unit(species: Sequence[str], oxidation_states: Mapping[str, float],
                  composition: Mapping[str, float] | None = None) -> dict[str, int]:
    """Atoms of each species removed by one charge-neutral Schottky unit.

    Two species (a cation and an anion): the smallest whole numbers with zero net charge
    (Li⁺/Cl⁻ → 1 + 1, Li⁺/O²⁻ → 2 + 1). More species: their ratio in `composition` (the
    pristine formula; Li, O, Cl in Li3OCl → 3 + 1 + 1), which must be neutral.
    """
    states = [Fraction(oxidation_states[s]).limit_denominator(100) for s in species]
    if len(species) == 2:
        (qa, qb) = states
        if qa * qb >= 0:
            raise BuildError("species", f"{species[0]} ({float(qa):+g}) and {species[1]} "
                             f"({float(qb):+g}) are not a cation and an anion",
                             "list one cation and one anion, e.g. [Li, Cl]")
        lcm = reduce(math.lcm, (q.denominator for q in states), 1)
        a, b = abs(int(qb * lcm)), abs(int(qa * lcm))
        g = math.gcd(a, b)
        return {species[0]: a // g, species[1]: b // g}
    if not composition:
        raise BuildError("species", "needs the pristine composition for more than two species")
    ratio = [Fraction(composition.get(s, 0)).limit_denominator(1000) for s in species]
    if any(r == 0 for r in ratio):
        raise BuildError("species", "names an element absent from the structure",
                         "list elements present in the structure")
    lcm = reduce(math.lcm, (r.denominator for r in ratio), 1)
    ints = [int(r * lcm) for r in ratio]
    g = reduce(math.gcd, ints)
    unit = {s: n // g for s, n in zip(species, ints)}
    if sum(n * q for n, q in zip(unit.values(), states)) != 0:
        raise BuildError("species", f"the formula unit {unit} of these species is charged",
                         "list one cation and one anion, or a neutral formula unit's elements")
    return unit


# ---- site choice -----------------------------------------------------------------------------
def _sites_of(structure, symbol: str, exclude: set[int] = frozenset()) -> np.ndarray:
    return np.array([i for i, site in enumerate(structure) if site.specie.symbol == symbol
                     and i not in exclude], dtype=int)


def _draw(candidates: np.ndarray, count: int, rng: np.random.Generator, symbol: str) -> list[int]:
    if len(candidates) == 0:
        raise BuildError("species", f"the structure has no (more) {symbol} sites",
                         "name an element of the structure")
    if len(candidates) < count:
        raise BuildError("count", f"needs {count} {symbol} site(s), the structure has "
                         f"{len(candidates)}", "lower count or use a larger supercell")
    return [int(i) for i in rng.choice(candidates, size=count, replace=False)]


def _ranked(structure, anchor: int, candidates: np.ndarray, farthest: bool) -> np.ndarray:
    """`candidates` ordered by minimum-image distance (Å) to site `anchor` (nearest first, or
    farthest first), ties by index."""
    if len(candidates) == 0:
        return candidates
    frac = structure.frac_coords
    dist = structure.lattice.get_all_distances(frac[anchor], frac[candidates])[0]
    key = np.round(dist, 6) * (-1 if farthest else 1)
    return candidates[np.lexsort((candidates, key))]


def _record(kind: str, name: str, structure, sites: Sequence[int], charge_change: float,
            **extra: Any) -> dict:
    # coords: Cartesian (Å), flat row-major x1, y1, z1, x2, ... (stored in MongoDB/FerretDB, which
    # rejects nested arrays, like every other array firegen stores)
    return {"type": kind, "name": name, "sites": [int(i) for i in sites],
            "coords": np.round(structure.cart_coords[list(sites)], 6).reshape(-1).tolist() if len(sites) else [],
            "charge_change": float(charge_change), **extra}


# ---- defects (pymatgen Structure in, new Structure and records out) ---------------------------
def add_vacancies(structure, species: str, count: int = 1, seed: int = 0,
                  oxidation_states: Mapping[str, float] | None = None):
    """Remove `count` sites of `species` drawn with `seed`. Returns (structure, [record])."""
    rng = np.random.default_rng(seed)
    sites = _draw(_sites_of(structure, species), count, rng, species)
    q = (oxidation_states or {}).get(species, 0.0)
    rec = _record("vacancy", f"v_{species}", structure, sites, -q * count)
    out = structure.copy()
    out.remove_sites(sites)
    return out, [rec]


def add_schottky(structure, species: Sequence[str], oxidation_states: Mapping[str, float],
                 count: int = 1, arrangement: str = "nearest", seed: int = 0,
                 composition: Mapping[str, float] | None = None):
    """Remove `count` charge-neutral Schottky units (see :func:`schottky_unit`), each an anchor
    site of ``species[0]`` drawn with `seed` plus the sites nearest to it (or farthest, with
    ``arrangement="farthest"``). Returns (structure, [one record per unit])."""
    if composition is None:
        composition = {str(el): n for el, n in structure.composition.items()}
    unit = schottky_unit(species, oxidation_states, composition)
    rng = np.random.default_rng(seed)
    removed: set[int] = set()
    records = []
    for _ in range(count):
        anchor = _draw(_sites_of(structure, species[0], removed), 1, rng, species[0])[0]
        picked = [anchor]
        for sym, n in unit.items():
            need = n - (sym == species[0])
            ranked = _ranked(structure, anchor, _sites_of(structure, sym, removed | {anchor}),
                             arrangement == "farthest")
            if len(ranked) < need:
                raise BuildError("count", f"{count} Schottky unit(s) need more {sym} sites than "
                                 "the structure has", "lower count or use a larger supercell")
            picked += [int(i) for i in ranked[:need]]
        removed |= set(picked)
        name = "+".join(f"v_{sym}" for sym in sorted((structure[i].specie.symbol for i in picked),
                                                      key=list(unit).index))
        dist = structure.lattice.get_all_distances(structure.frac_coords[anchor],
                                                   structure.frac_coords[picked[1:]])[0]
        records.append(_record("schottky", name, structure, picked, 0.0, unit=dict(unit),
                               max_distance=round(float(dist.max()), 6) if len(dist) else 0.0))
    out = structure.copy()
    out.remove_sites(sorted(removed))
    return out, records


def add_substitutions(structure, species: str, by: str, count: int = 1, seed: int = 0,
                      oxidation_states: Mapping[str, float] | None = None):
    """Replace `count` sites of `species` (drawn with `seed`) by element `by`.
    Returns (structure, [record])."""
    rng = np.random.default_rng(seed)
    sites = _draw(_sites_of(structure, species), count, rng, species)
    states = oxidation_states or {}
    change = (states.get(by, 0.0) - states.get(species, 0.0)) * count
    rec = _record("substitution", f"{by}_{species}", structure, sites, change)
    out = structure.copy()
    for i in sites:
        out.replace(i, by)
    return out, [rec]


def add_antisites(structure, species: Sequence[str], count: int = 1, arrangement: str = "nearest",
                  seed: int = 0):
    """Exchange `count` pairs: a ``species[0]`` site drawn with `seed` and the nearest (or
    farthest) ``species[1]`` site. Composition and charge are unchanged. Returns (structure,
    [one record per pair])."""
    a, b = species
    rng = np.random.default_rng(seed)
    used: set[int] = set()
    out = structure.copy()
    records = []
    for _ in range(count):
        i = _draw(_sites_of(structure, a, used), 1, rng, a)[0]
        ranked = _ranked(structure, i, _sites_of(structure, b, used), arrangement == "farthest")
        if len(ranked) == 0:
            raise BuildError("count", f"{count} antisite pair(s) need more {b} sites",
                             "lower count or use a larger supercell")
        j = int(ranked[0])
        used |= {i, j}
        dist = structure.lattice.get_all_distances(structure.frac_coords[i],
                                                   structure.frac_coords[j])[0, 0]
        records.append(_record("antisite", f"{b}_{a}+{a}_{b}", structure, [i, j], 0.0,
                               distance=round(float(dist), 6)))
        out.replace(i, b)
        out.replace(j, a)
    return out, records


def void_centres(structure, grid_spacing: float = 0.2) -> tuple[np.ndarray, np.ndarray]:
    """Grid points of the cell (fractional, spacing about `grid_spacing` Å) and each point's
    clearance: the distance (Å) to the nearest atom, periodic images included."""
    from scipy.spatial import cKDTree

    lattice = structure.lattice
    n = [max(4, math.ceil(length / grid_spacing)) for length in lattice.abc]
    if math.prod(n) > MAX_VOID_GRID:
        raise BuildError("type", f"the interstitial's void search needs {math.prod(n):,} grid points in this "
                         f"{lattice.volume:.0f} Å³ cell (at most {MAX_VOID_GRID:,})",
                         "put interstitials in a smaller cell (a smaller supercell)")
    axes = [np.arange(k) / k for k in n]
    grid = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)
    shifts = np.array([[i, j, k] for i in (-1, 0, 1) for j in (-1, 0, 1) for k in (-1, 0, 1)])
    images = (structure.frac_coords[None, :, :] % 1.0 + shifts[:, None, :]).reshape(-1, 3)
    tree = cKDTree(lattice.get_cartesian_coords(images))
    clearance, _ = tree.query(lattice.get_cartesian_coords(grid), k=1)
    return grid, clearance


def add_interstitials(structure, species: str, count: int = 1, seed: int = 0,
                      oxidation_states: Mapping[str, float] | None = None,
                      grid_spacing: float = 0.2, clearance_tolerance: float = 0.1,
                      avoid: Sequence[tuple[Sequence[float], float]] = ()):
    """Insert `count` atoms of `species`, one at a time, each at the centre of the largest void
    (a grid point drawn with `seed` among those within `clearance_tolerance` Å of the largest
    clearance, see :func:`void_centres`). `avoid`: (Cartesian point in Å, radius in Å) pairs,
    e.g. emptied sites, whose surroundings are not used (so a vacancy followed by an
    interstitial makes a Frenkel pair, not the perfect crystal again). Returns (structure,
    [record])."""
    rng = np.random.default_rng(seed)
    out = structure.copy()
    sites = []
    for _ in range(count):
        grid, clearance = void_centres(out, grid_spacing)
        if avoid:
            frac_points = out.lattice.get_fractional_coords([p for p, _ in avoid])
            near = out.lattice.get_all_distances(grid, frac_points)
            clearance = np.where((near < np.array([r for _, r in avoid])).any(axis=1), -1.0,
                                 clearance)
        best = np.flatnonzero(clearance >= clearance.max() - clearance_tolerance)
        point = grid[int(rng.choice(best))]
        out.append(species, point)
        sites.append(len(out) - 1)
    q = (oxidation_states or {}).get(species, 0.0)
    rec = _record("interstitial", f"{species}_i", out, sites, q * count)
    return out, [rec]


def apply_defects(atoms: Atoms, defects: Sequence[Mapping[str, Any] | Any],
                  oxidation_states: Mapping[str, float] | None = None) -> tuple[Atoms, list[dict]]:
    """Apply defect specs in order; each a mapping (or a pydantic model) with ``type``
    (vacancy, schottky, substitution, interstitial, antisite) and that kind's fields: species,
    count, by, arrangement, seed. `oxidation_states` (per element) is needed for Schottky
    units and for the records' ``charge_change`` (e). Returns (atoms, records); a record says
    which defect went where: type, name, sites (indices in the structure before that step;
    for interstitials, of the new atoms after it), coords (Å), charge_change (e). A
    BuildError's field is ``defects[<k>].<key>``."""
    from pymatgen.io.ase import AseAtomsAdaptor

    structure = AseAtomsAdaptor.get_structure(_plain(atoms))
    pristine = {str(el): n for el, n in structure.composition.items()}
    states = dict(oxidation_states or {})
    records: list[dict] = []
    emptied: list[tuple[list[float], float]] = []  # (site in Å, its nearest-neighbour distance)
    for k, spec in enumerate(defects):
        before = structure
        spec = spec.model_dump() if hasattr(spec, "model_dump") else dict(spec)
        kind = spec.get("type")
        common = {"count": spec.get("count", 1), "seed": spec.get("seed", 0)}
        try:
            if kind == "vacancy":
                structure, recs = add_vacancies(structure, spec["species"], oxidation_states=states,
                                                **common)
            elif kind == "schottky":
                structure, recs = add_schottky(structure, list(spec["species"]), states,
                                               arrangement=spec.get("arrangement", "nearest"),
                                               composition=pristine, **common)
            elif kind == "substitution":
                structure, recs = add_substitutions(structure, spec["species"], spec["by"],
                                                    oxidation_states=states, **common)
            elif kind == "interstitial":
                structure, recs = add_interstitials(structure, spec["species"],
                                                    oxidation_states=states, avoid=emptied,
                                                    **common)
            elif kind == "antisite":
                structure, recs = add_antisites(structure, list(spec["species"]),
                                                arrangement=spec.get("arrangement", "nearest"),
                                                **common)
            else:
                raise BuildError("type", f"unknown defect type {kind!r}",
                                 "use vacancy, schottky, substitution, interstitial or antisite")
        except BuildError as exc:
            raise BuildError(f"defects[{k}].{exc.field}", exc.msg, exc.fix) from None
        except KeyError as exc:
            raise BuildError(f"defects[{k}].{exc.args[0]}", "is required") from None
        if kind in ("vacancy", "schottky"):
            for i in (i for rec in recs for i in rec["sites"]):
                others = [j for j in range(len(before)) if j != i]
                nn = before.lattice.get_all_distances(before.frac_coords[i],
                                                      before.frac_coords[others]).min()
                emptied.append((before.cart_coords[i].tolist(), float(nn)))
        records += recs
    return _plain(AseAtomsAdaptor.get_atoms(structure)), records


# ---- random packing --------------------------------------------------------------------------
def formula_counts(formula: str, units: int) -> dict[str, int]:
    """{element: atoms} of `units` formula units (in the formula's element order)."""
    from pymatgen.core import Composition

    try:
        comp = Composition(formula)
    except Exception as exc:  # pymatgen raises several kinds for bad formulas
        raise BuildError("formula", f"is not a chemical formula ({exc})",
                         "write it like Na3OCl or Na3PS3.5O0.5") from None
    counts = {}
    for el, amount in comp.items():
        if getattr(el, "symbol", None) not in atomic_numbers or el.symbol == "X":
            raise BuildError("formula", f"has an unknown element {getattr(el, 'symbol', el)}",
                             "write it like Na3OCl, symbols as in the periodic table")
        n = amount * units
        if abs(n - round(n)) > 1e-6:
            raise BuildError("units", f"{units} unit(s) of {formula} give {n:g} {el} atoms",
                             "choose units so every element count is a whole number")
        counts[str(el)] = int(round(n))
    return counts


def ionic_or_covalent_radius(symbol: str, oxidation_state: float | None) -> float:
    """Radius (Å) for default minimum distances: pymatgen's Shannon ionic radius of the ion
    with that oxidation state, else ase's covalent radius (neutral atoms, unknown ions)."""
    if oxidation_state:
        from pymatgen.core import Species

        try:
            r = Species(symbol, oxidation_state).ionic_radius
        except Exception:  # unusual oxidation states have no tabulated radius
            r = None
        if r:
            return float(r)
    return float(covalent_radii[atomic_numbers[symbol]])


def min_distance_table(elements: Sequence[str], min_distance: float | Mapping[str, float] | None = None,
                       oxidation_states: Mapping[str, float] | None = None,
                       distance_factor: float = 0.75) -> dict[tuple[str, str], float]:
    """Minimum distance (Å) for every element pair (both orders as keys).

    `min_distance`: one number for every pair; or {"Na-Cl": 2.4, ...} for some pairs (the rest
    from the default rule); or None. Default rule, with r from :func:`ionic_or_covalent_radius`
    and f = `distance_factor`: ions of opposite sign (and neutral atoms) f × (r_a + r_b); two
    ions of the same sign f × √2 × the mean of their contacts with the other sign (contact of
    a: the smallest r_a + r_x over counter-ions x), i.e. two ions sharing a neighbour at 90°
    (Na3OCl with f = 0.75: Na–O 1.82, Na–Cl 2.12, Na–Na 2.57, O–O 2.57, Cl–Cl 3.00 Å).
    """
    states = oxidation_states or {}
    radius = {el: ionic_or_covalent_radius(el, states.get(el)) for el in elements}
    sign = {el: float(np.sign(states.get(el) or 0.0)) for el in elements}
    contact = {a: min((radius[a] + radius[x] for x in elements if sign[a] * sign[x] < 0),
                      default=2 * radius[a]) for a in elements}

    def rule(a: str, b: str) -> float:
        if sign[a] * sign[b] > 0:
            return distance_factor * math.sqrt(2) * (contact[a] + contact[b]) / 2
        return distance_factor * (radius[a] + radius[b])

    table = {(a, b): rule(a, b) for a in elements for b in elements}
    if isinstance(min_distance, (int, float)):
        return {pair: float(min_distance) for pair in table}
    for key, value in (min_distance or {}).items():
        pair = tuple(p.strip() for p in str(key).split("-"))
        if len(pair) != 2 or pair not in table:
            raise BuildError(f"min_distance.{key}", "names no pair of the formula's elements",
                             f"use keys like '{elements[0]}-{elements[-1]}' with elements of "
                             "the formula")
        table[pair] = table[pair[::-1]] = float(value)
    return table


def random_packing(formula: str, units: int, density: float | None = None,
                   volume_per_atom: float | None = None,
                   min_distance: float | Mapping[str, float] | None = None,
                   distance_factor: float = 0.75, seed: int = 0, max_attempts: int = 10000,
                   oxidation_states: Mapping[str, float] | None = None) -> Atoms:
    """`units` formula units placed at random in a cubic box, no pair closer than its minimum
    distance (minimum image).

    The box volume comes from `density` (g/cm³) or `volume_per_atom` (Å³); exactly one.
    Minimum distances: see :func:`min_distance_table` (the default uses ionic radii of the
    guessed oxidation states). Atoms go in one at a time (random sequential insertion), the
    species with the largest exclusion first; each gets up to `max_attempts` random trial
    positions. The atoms are returned grouped by element in the formula's order.

    Raises:
        BuildError: on a bad formula or volume; when the exclusion spheres (radius: half the
            smallest minimum distance of each element) would fill more than close packing
            (74 %) of the box; when some atom finds no place in `max_attempts` trials.
    """
    if (density is None) == (volume_per_atom is None):
        raise BuildError("density", "give exactly one of density (g/cm³) and volume_per_atom (Å³)",
                         "set density, e.g. 2.0, or volume_per_atom, e.g. 15.0")
    counts = formula_counts(formula, units)
    elements = list(counts)
    natoms = sum(counts.values())
    if natoms > MAX_PACKED_ATOMS:
        raise BuildError("units", f"{units} unit(s) of {formula} are {natoms:,} atoms, more than one random "
                         f"packing places ({MAX_PACKED_ATOMS:,})", "pack fewer units and take a supercell")
    mass = sum(n * atomic_masses[atomic_numbers[el]] for el, n in counts.items())  # amu
    if density is not None:
        if density <= 0:
            raise BuildError("density", "must be positive (g/cm³)", "give e.g. 2.0")
        volume, where = mass * AMU_PER_A3_IN_G_PER_CM3 / density, "density"
    else:
        if volume_per_atom <= 0:
            raise BuildError("volume_per_atom", "must be positive (Å³)", "give e.g. 15.0")
        volume, where = natoms * volume_per_atom, "volume_per_atom"
    length = volume ** (1.0 / 3.0)
    if oxidation_states is None:
        oxidation_states = guess_oxidation_states(counts)
    table = min_distance_table(elements, min_distance, oxidation_states, distance_factor)
    shown = f"{mass * AMU_PER_A3_IN_G_PER_CM3 / volume:.3f} g/cm³ ({volume / natoms:.2f} Å³/atom)"
    if max(table.values()) >= length:
        raise BuildError(where, f"makes a {length:.2f} Å box, smaller than the largest minimum "
                         f"distance {max(table.values()):.2f} Å", "pack more formula units "
                         "(units) or lower the density")
    exclusion = {el: min(table[el, other] for other in elements) / 2 for el in elements}
    fraction = sum(n * 4 / 3 * math.pi * exclusion[el] ** 3 for el, n in counts.items()) / volume
    if fraction > CLOSE_PACKING:
        raise BuildError(where, f"{shown} cannot be packed: the minimum distances' exclusion "
                         f"spheres would fill {100 * fraction:.0f} % of the box (more than close "
                         f"packing, 74 %)", "lower the density (or raise volume_per_atom), or "
                         "lower min_distance / distance_factor")
    rng = np.random.default_rng(seed)
    order = sorted(range(len(elements)), key=lambda e: -exclusion[elements[e]])
    types = np.concatenate([np.full(counts[elements[e]], e) for e in order])
    dmin = np.array([[table[a, b] for b in elements] for a in elements])
    placed = np.empty((natoms, 3))
    batch = 64
    for k, t in enumerate(types):
        need = dmin[t, types[:k]]
        for _ in range(max(1, math.ceil(max_attempts / batch))):
            trial = rng.random((batch, 3)) * length
            diff = trial[:, None, :] - placed[None, :k, :]
            diff -= length * np.round(diff / length)  # minimum image in a cubic box
            ok = np.all(np.einsum("ijk,ijk->ij", diff, diff) >= need**2, axis=1)
            if ok.any():
                placed[k] = trial[int(np.argmax(ok))]
                break
        else:
            raise BuildError(where, f"random packing placed only {k} of {natoms} atoms at {shown} "
                             f"(no room for one more {elements[t]} in {max_attempts} trials)",
                             "lower the density (or raise volume_per_atom), lower "
                             "min_distance / distance_factor, or raise max_attempts")
    grouped = np.argsort(types, kind="stable")  # back to the formula's element order
    symbols = [elements[t] for t in types[grouped]]
    return Atoms(symbols=symbols, positions=placed[grouped], cell=np.eye(3) * length, pbc=True)


# ---- the pipeline ----------------------------------------------------------------------------
@dataclass
class BuiltSystem:
    """One built starting structure and its bookkeeping.

    atoms: the structure (Å), supercell, scale and defects applied.
    charge: net formal charge (e) after defects; None when no oxidation states are known
        (no user map, no charge-balanced guess, no defects).
    oxidation_states: the per-element formal oxidation states used (None if unknown).
    defects: one record per defect applied (see :func:`apply_defects`).
    role: "explore" or "reference".
    """

    atoms: Atoms
    charge: float | None
    oxidation_states: dict[str, float] | None
    defects: list[dict] = field(default_factory=list)
    role: str = "explore"

    def metadata(self) -> dict:
        """JSON-able bookkeeping carried with the structure: charge (e), formula, natoms, role,
        oxidation_states, defects."""
        return {"charge": self.charge, "formula": self.atoms.get_chemical_formula(mode="hill"),
                "natoms": len(self.atoms), "role": self.role,
                "oxidation_states": self.oxidation_states, "defects": self.defects}


def _get(spec: Any, name: str, default: Any = None) -> Any:
    if isinstance(spec, Mapping):
        return spec.get(name, default)
    return getattr(spec, name, default)


def build_system(spec: Any, resolve: Callable[[str], Any] = str) -> BuiltSystem:
    """Build a system from its config (a `SystemConfig` or a mapping with the same keys):
    ``structure`` (file, made absolute by `resolve`) with ``fmt``, or ``random_packing``;
    then ``supercell``, ``scale``, ``defects`` with ``oxidation_states`` and ``require_neutral``.

    Raises:
        BuildError: the field at fault (relative to the system) and the fix.
    """
    packing = _get(spec, "random_packing")
    given = _get(spec, "oxidation_states")
    if packing is not None:
        packing = packing.model_dump() if hasattr(packing, "model_dump") else dict(packing)
        try:
            atoms = random_packing(oxidation_states=given, **packing)
        except BuildError as exc:
            raise BuildError(f"random_packing.{exc.field}", exc.msg, exc.fix) from None
    else:
        atoms = read_structure(resolve(_get(spec, "structure")), _get(spec, "fmt"))
    supercell = _get(spec, "supercell", [1, 1, 1])
    reps = abs(round(np.linalg.det(np.asarray(supercell, dtype=float).reshape(3, 3)))) if np.ndim(supercell) == 2 \
        else math.prod(int(n) for n in (supercell if np.ndim(supercell) else [supercell] * 3))
    added = sum(_get(d, "count", 1) for d in _get(spec, "defects", None) or [] if _get(d, "type") == "interstitial")
    if len(atoms) * reps + added > MAX_ATOMS:  # before anything is built
        raise BuildError("supercell", f"makes {len(atoms) * reps + added:,} atoms ({len(atoms)} × {reps:,}"
                         + (f" + {added} interstitials" if added else "") + f"), more than firegen's {MAX_ATOMS:,}",
                         "use a smaller supercell")
    atoms = make_supercell(atoms, supercell)
    scale = _get(spec, "scale", 1.0)
    if scale != 1.0:
        atoms = scaled(atoms, scale)
    defects = list(_get(spec, "defects", None) or [])
    require_neutral = bool(_get(spec, "require_neutral", False))
    states = guess_oxidation_states(atoms.get_chemical_symbols(), given)
    if states is None and (defects or require_neutral):
        formula = atoms.get_chemical_formula(mode="hill", empirical=True)
        raise BuildError("oxidation_states", f"pymatgen finds no charge-balanced oxidation "
                         f"states for {formula}", "give them, e.g. oxidation_states: "
                         "{Li: 1, O: -2, Cl: -1}")
    if states is not None:
        for k, d in enumerate(defects):
            kind, by = _get(d, "type"), _get(d, "by")
            if kind == "substitution" and by not in states:
                q = substituent_oxidation_state(by, states.get(_get(d, "species"), 0.0))
                if q is None:
                    raise BuildError(f"defects[{k}].by", f"no oxidation state known for {by}",
                                     f"add {by} to oxidation_states")
                states[by] = q
            if kind == "interstitial" and _get(d, "species") not in states:
                raise BuildError(f"defects[{k}].species", f"no oxidation state known for "
                                 f"{_get(d, 'species')}", "add it to oxidation_states")
    atoms, records = apply_defects(atoms, defects, states)
    charge = None if states is None else formal_charge(atoms.get_chemical_symbols(), states)
    if require_neutral and charge is not None and abs(charge) > 1e-6:
        names = ", ".join(r["name"] for r in records) or "none"
        raise BuildError("require_neutral", f"the defects ({names}) leave a net formal charge "
                         f"of {charge:+g} e", "use charge-neutral defect sets (schottky, "
                         "antisite, isovalent substitution, vacancy + interstitial), or set "
                         "require_neutral: false")
    return BuiltSystem(atoms=atoms, charge=charge, oxidation_states=states, defects=records,
                       role=_get(spec, "role", "explore") or "explore")
