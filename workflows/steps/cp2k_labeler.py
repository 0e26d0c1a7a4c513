"""Labeler kind ``cp2k``: CP2K (Debian's ``cp2k`` package, with the GTH basis sets and
pseudopotentials it ships in ``/usr/share/cp2k``) run under custodian with its CP2K handlers,
parsed with dpdata's ``cp2k/output`` reader.

The input comes either from settings (firegen's defaults, the flat keys below and an ``input``
dict of CP2K sections in DP-GEN's ``user_fp_params`` format merged over them) or from a
``template`` CP2K input file (DP-GEN's ``external_input_path``). Either way firegen then

- replaces ``&CELL`` (``A``/``B``/``C`` in Å; ``ABC`` and friends are dropped) and the
  coordinates: ``&COORD`` is removed and ``&TOPOLOGY`` reads ``coord.xyz`` (an ``@include
  coord.xyz`` line of a DP-GEN template is dropped). Custodian rewrites the input through
  pymatgen after a correction, which would regroup inline ``&COORD`` lines by element;
- adds a ``&KIND`` (``basis_set``, ``potential``) for every element that has none, after
  checking that the basis and potential files hold them;
- forces ``RUN_TYPE ENERGY_FORCE``, ``PRINT_LEVEL MEDIUM`` (dpdata's reader needs it),
  ``STRESS_TENSOR ANALYTICAL`` (unless ``NUMERICAL``) and the printing of forces and stress.

Settings (defaults filled in before hashing; units in brackets):

``command`` (``cp2k.psmp``, else ``cp2k``), ``mpi_ranks`` (1; more runs ``mpirun -np N``, with
``--allow-run-as-root`` as root), ``omp_threads`` (1), ``template`` (path or null), ``input``
(dict, ``{}``), ``functional`` ("PBE"), ``basis_set`` ("DZVP-MOLOPT-SR-GTH"), ``potential``
("GTH-PBE"), ``basis_file`` (``<data>/BASIS_MOLOPT``), ``potential_file``
(``<data>/GTH_POTENTIALS``; ``<data>`` is ``$CP2K_DATA_DIR`` or ``/usr/share/cp2k``), ``cutoff``
(Ry, 400), ``rel_cutoff`` (Ry, 50), ``kpoints`` (null = Γ point, or ``[n1, n2, n3]``
Monkhorst-Pack), ``scf`` (see :data:`SCF_DEFAULTS`: diagonalization with Broyden mixing, the
faster choice for small cells; ``method: ot`` for orbital transformation), ``charge`` (0),
``multiplicity`` (null = 1 or 2 from the electron count, DP-GEN's rule; UKS when > 1),
``walltime`` (s, 3600; null = none), ``max_errors`` (custodian corrections, 5), ``workdir``
(null = system temp), ``keep_files`` (false).

``template`` is a file path or the input text itself (a string with line breaks: for workers that
do not see the submitting machine's files). With a template the physics lives in it: ``input``,
``functional``, ``cutoff``, ``rel_cutoff``, ``kpoints``, ``scf``, ``charge`` and ``multiplicity``
are refused (and stored as null); ``basis_set``, ``potential``, ``basis_file`` and
``potential_file`` only fill what the template leaves out. The settings hash covers the
template's sha256, not its path; it leaves out how the run is done
(:data:`~firegen.workflows.steps.dft_run.RUN_KEYS`).
"""

from __future__ import annotations

import copy
import hashlib
import os
import re
import shlex
import subprocess
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from custodian.cp2k.jobs import Cp2kJob

from firegen.workflows.steps.dft_run import (DFTLabeler, DFTRunError, child_env, mpi_prefix,
                                             quiet_output, run_custodian, run_settings, terminate_process_group,
                                             walltime_handler)
from firegen.workflows.steps.label import _as_float, _as_int, _check_keys, _jsonable

__all__ = ["CP2KLabeler", "SCF_DEFAULTS", "cp2k_data_dir", "cp2k_labeler", "render_input"]

KIND = "cp2k"
INPUT_FILE = "cp2k.inp"
OUTPUT_FILE = "cp2k.out"
STDERR_FILE = "std_err.txt"
COORD_FILE = "coord.xyz"
INSTALL_HINT = "install Debian's cp2k (apt-get install cp2k)"

#: SCF defaults per method. Diagonalization: Broyden mixing, no smearing (``smearing``:
#: ``{method: FERMI_DIRAC, electronic_temperature: K}`` turns it on, with ``added_mos`` empty
#: orbitals, 20 by default). OT: inner ``max_scf`` steps per outer loop, ``outer_max_scf`` loops.
SCF_DEFAULTS: dict[str, dict[str, Any]] = {
    "diagonalization": {"max_scf": 100, "eps_scf": 1e-6,
                        "mixing": {"method": "BROYDEN_MIXING", "alpha": 0.4, "nbuffer": 8},
                        "smearing": None, "added_mos": None},
    "ot": {"max_scf": 50, "eps_scf": 1e-6, "outer_max_scf": 10, "minimizer": "DIIS",
           "preconditioner": "FULL_SINGLE_INVERSE"},
}
_MIXING_METHODS = ("BROYDEN_MIXING", "PULAY_MIXING", "KERKER_MIXING", "DIRECT_P_MIXING")
_SMEARING_METHODS = ("FERMI_DIRAC", "ENERGY_WINDOW")
_MIXING_ALIASES = {"nbroyden": "nbuffer", "npulay": "nbuffer", "nmixing": "nbuffer"}
_TEMPLATE_ONLY_REFUSED = ("input", "functional", "cutoff", "rel_cutoff", "kpoints", "scf", "charge", "multiplicity")
_ALLOWED = ["command", "mpi_ranks", "omp_threads", "template", "input", "functional", "basis_set", "potential",
            "basis_file", "potential_file", "cutoff", "rel_cutoff", "kpoints", "scf", "charge", "multiplicity",
            "walltime", "max_errors", "workdir", "keep_files"]


def cp2k_data_dir() -> Path:
    """Where CP2K's basis and potential files are: ``$CP2K_DATA_DIR`` or Debian's ``/usr/share/cp2k``."""
    return Path(os.environ.get("CP2K_DATA_DIR") or "/usr/share/cp2k")


# --------------------------------------------------------------------------------------------
# settings


def cp2k_labeler(settings: dict) -> CP2KLabeler:
    """Factory of kind ``cp2k`` (see the module docstring for the settings).

    Raises:
        ValueError: unknown or bad setting, missing executable, basis or potential file, or a
            template that cannot be read; the message names the setting and the fix.
    """
    _check_keys(KIND, settings, _ALLOWED)
    s: dict[str, Any] = run_settings(KIND, settings, candidates=("cp2k.psmp", "cp2k.popt", "cp2k.ssmp", "cp2k"),
                                     install_hint=INSTALL_HINT, walltime=3600.0, max_errors=5)
    template = settings.get("template")
    if isinstance(template, str) and "\n" in template:
        s["template"] = template  # the input text itself (for workers that do not share the file)
    else:
        s["template"] = None if template is None else str(_existing_file("template", template))
    if s["template"] is not None:
        given = [k for k in _TEMPLATE_ONLY_REFUSED if settings.get(k) not in (None, {}, [])]
        if given:
            raise ValueError(f"labeler 'cp2k': setting(s) {', '.join(map(repr, given))} cannot be combined with "
                             f"'template' (put them in the template, or drop 'template')")
    for key, default in (("functional", "PBE"), ("basis_set", "DZVP-MOLOPT-SR-GTH"), ("potential", "GTH-PBE")):
        value = settings.get(key, default)
        if not isinstance(value, str) or not value.strip() or len(value.split()) != 1:
            raise ValueError(f"labeler 'cp2k': setting {key!r} must be one CP2K name such as {default!r}, got {value!r}")
        s[key] = value.strip()
    s["basis_file"] = str(_data_file("basis_file", settings.get("basis_file", "BASIS_MOLOPT")))
    s["potential_file"] = str(_data_file("potential_file", settings.get("potential_file", "GTH_POTENTIALS")))
    s["cutoff"] = _as_float(KIND, "cutoff", settings.get("cutoff", 400.0), positive=True)
    s["rel_cutoff"] = _as_float(KIND, "rel_cutoff", settings.get("rel_cutoff", 50.0), positive=True)
    s["kpoints"] = _kpoints(settings.get("kpoints"))
    s["scf"] = _scf(settings.get("scf") or {}, s["kpoints"])
    s["charge"] = _as_int(KIND, "charge", settings.get("charge", 0))
    mult = settings.get("multiplicity")
    s["multiplicity"] = None if mult is None else _as_int(KIND, "multiplicity", mult, positive=True)
    user_input = settings.get("input") or {}
    if not isinstance(user_input, dict):
        raise ValueError(f"labeler 'cp2k': setting 'input' must be a mapping of CP2K sections "
                         f"(DP-GEN user_fp_params format), got {type(user_input).__name__}")
    try:
        s["input"] = _jsonable(_upper_keys(user_input))
    except TypeError as exc:
        raise ValueError(f"labeler 'cp2k': setting 'input': {exc}") from None
    hash_extra = {}
    if s["template"] is not None:
        for key in _TEMPLATE_ONLY_REFUSED:  # not used: the template holds them
            s[key] = {} if key == "input" else None
        hash_extra["template"] = "sha256:" + hashlib.sha256(_template_text(s["template"]).encode()).hexdigest()
    labeler = CP2KLabeler(s, hash_extra)
    labeler.base_input()  # surface a bad template or input dict now, not on the worker
    return labeler


def _existing_file(name: str, value) -> Path:
    if not isinstance(value, (str, os.PathLike)) or not str(value).strip():
        raise ValueError(f"labeler 'cp2k': setting {name!r} must be a file path, got {value!r}")
    path = Path(value).expanduser()
    if not path.is_file():
        raise ValueError(f"labeler 'cp2k': setting {name!r}: file {str(path)!r} not found")
    return path.resolve()


def _data_file(name: str, value) -> Path:
    """A basis/potential file: a path, or a name in :func:`cp2k_data_dir` (as CP2K resolves it)."""
    if not isinstance(value, (str, os.PathLike)) or not str(value).strip():
        raise ValueError(f"labeler 'cp2k': setting {name!r} must be a file name or path, got {value!r}")
    path = Path(value).expanduser()
    for candidate in ([path] if path.is_absolute() else [path, cp2k_data_dir() / path]):
        if candidate.is_file():
            return candidate.resolve()
    raise ValueError(f"labeler 'cp2k': setting {name!r}: {str(value)!r} not found (looked in the working folder "
                     f"and {cp2k_data_dir()}); {INSTALL_HINT} (its data files go to /usr/share/cp2k), set "
                     f"CP2K_DATA_DIR, or give the full path")


def _kpoints(value) -> list[int] | None:
    if value is None:
        return None
    if (not isinstance(value, (list, tuple)) or len(value) != 3
            or not all(isinstance(n, (int, np.integer)) and not isinstance(n, bool) and n >= 1 for n in value)):
        raise ValueError(f"labeler 'cp2k': setting 'kpoints' must be null (Γ point) or three positive integers "
                         f"[n1, n2, n3] (Monkhorst-Pack), got {value!r}")
    return [int(n) for n in value]


def _scf(value, kpoints) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValueError(f"labeler 'cp2k': setting 'scf' must be a mapping, got {value!r}")
    method = str(value.get("method", "diagonalization")).lower()
    if method not in SCF_DEFAULTS:
        raise ValueError(f"labeler 'cp2k': setting 'scf.method' must be 'diagonalization' or 'ot', "
                         f"got {value.get('method')!r}")
    defaults = SCF_DEFAULTS[method]
    _check_keys(KIND, {f"scf.{k}": v for k, v in value.items() if k != "method"},
                [f"scf.{k}" for k in defaults])
    out: dict[str, Any] = {"method": method,
                           "max_scf": _as_int(KIND, "scf.max_scf", value.get("max_scf", defaults["max_scf"]),
                                              positive=True),
                           "eps_scf": _as_float(KIND, "scf.eps_scf", value.get("eps_scf", defaults["eps_scf"]),
                                                positive=True)}
    if method == "ot":
        if kpoints is not None:
            raise ValueError("labeler 'cp2k': setting 'scf.method' 'ot' does not work with k-points; "
                             "use scf.method: diagonalization or kpoints: null")
        out["outer_max_scf"] = _as_int(KIND, "scf.outer_max_scf",
                                       value.get("outer_max_scf", defaults["outer_max_scf"]), positive=True)
        for key in ("minimizer", "preconditioner"):
            v = value.get(key, defaults[key])
            if not isinstance(v, str) or not v.strip():
                raise ValueError(f"labeler 'cp2k': setting 'scf.{key}' must be a CP2K keyword value, got {v!r}")
            out[key] = v.strip().upper()
        return out
    mixing = value.get("mixing", defaults["mixing"])
    if mixing is not None:
        if not isinstance(mixing, dict):
            raise ValueError(f"labeler 'cp2k': setting 'scf.mixing' must be a mapping such as "
                             f"{defaults['mixing']}, or null for CP2K's default, got {mixing!r}")
        # NBROYDEN/NPULAY/NMIXING are CP2K aliases of NBUFFER, the name custodian's corrections set:
        # both in one section stops CP2K ("Keyword NBUFFER in section MIXING should not repeat")
        mixing = {_MIXING_ALIASES.get(str(k).lower(), str(k).lower()): v for k, v in mixing.items()}
        m = str(mixing.get("method", "BROYDEN_MIXING")).upper()
        if m not in _MIXING_METHODS:
            raise ValueError(f"labeler 'cp2k': setting 'scf.mixing.method' must be one of "
                             f"{', '.join(_MIXING_METHODS)}, got {mixing.get('method')!r}")
        mixing["method"] = m
        if "alpha" in mixing:
            alpha = _as_float(KIND, "scf.mixing.alpha", mixing["alpha"], positive=True)
            if alpha > 1:
                raise ValueError(f"labeler 'cp2k': setting 'scf.mixing.alpha' must be in (0, 1], got {alpha}")
            mixing["alpha"] = alpha
    out["mixing"] = mixing
    smearing = value.get("smearing")
    if smearing is not None:
        if not isinstance(smearing, dict):
            raise ValueError("labeler 'cp2k': setting 'scf.smearing' must be null or e.g. "
                             "{method: FERMI_DIRAC, electronic_temperature: 300} (K)")
        _check_keys(KIND, {f"scf.smearing.{k}": v for k, v in smearing.items()},
                    ["scf.smearing.method", "scf.smearing.electronic_temperature"])
        sm = str(smearing.get("method", "FERMI_DIRAC")).upper()
        if sm not in _SMEARING_METHODS:
            raise ValueError(f"labeler 'cp2k': setting 'scf.smearing.method' must be one of "
                             f"{', '.join(_SMEARING_METHODS)}, got {smearing.get('method')!r}")
        smearing = {"method": sm, "electronic_temperature": _as_float(
            KIND, "scf.smearing.electronic_temperature", smearing.get("electronic_temperature", 300.0),
            positive=True)}
    out["smearing"] = smearing
    added = value.get("added_mos", defaults["added_mos"])
    if added is None and smearing is not None:
        added = 20
    out["added_mos"] = None if added is None else _as_int(KIND, "scf.added_mos", added, positive=True)
    return out


def _upper_keys(d):
    """Section and keyword names upper-cased (CP2K ignores case; DP-GEN's merge does not);
    ``_`` (section parameter) and ``@...`` (preprocessor) keys are kept."""
    if isinstance(d, dict):
        return {(k if str(k) == "_" or str(k).startswith("@") else str(k).upper()): _upper_keys(v)
                for k, v in d.items()}
    if isinstance(d, (list, tuple)):
        return [_upper_keys(v) for v in d]
    return d


# --------------------------------------------------------------------------------------------
# the input


def _defaults(s: dict) -> dict:
    """firegen's input in DP-GEN's dict format (structure-independent parts)."""
    scf = s["scf"]
    scf_sec: dict[str, Any] = {"SCF_GUESS": "ATOMIC", "EPS_SCF": scf["eps_scf"], "MAX_SCF": scf["max_scf"]}
    if scf["method"] == "ot":
        scf_sec["OT"] = {"MINIMIZER": scf["minimizer"], "PRECONDITIONER": scf["preconditioner"]}
        scf_sec["OUTER_SCF"] = {"MAX_SCF": scf["outer_max_scf"], "EPS_SCF": scf["eps_scf"]}
    else:
        scf_sec["DIAGONALIZATION"] = {"ALGORITHM": "STANDARD"}
        if scf["mixing"] is not None:
            scf_sec["MIXING"] = {str(k).upper(): v for k, v in scf["mixing"].items()}
        if scf["added_mos"] is not None:
            scf_sec["ADDED_MOS"] = scf["added_mos"]
        if scf["smearing"] is not None:
            scf_sec["SMEAR"] = {"_": "ON", "METHOD": scf["smearing"]["method"],
                                "ELECTRONIC_TEMPERATURE": scf["smearing"]["electronic_temperature"]}
    dft: dict[str, Any] = {
        "BASIS_SET_FILE_NAME": s["basis_file"],
        "POTENTIAL_FILE_NAME": s["potential_file"],
        "CHARGE": s["charge"],
        "MGRID": {"CUTOFF": s["cutoff"], "REL_CUTOFF": s["rel_cutoff"], "NGRIDS": 4},
        "QS": {"EPS_DEFAULT": 1e-12},
        "SCF": scf_sec,
        "XC": {"XC_FUNCTIONAL": {"_": s["functional"]}},
    }
    if s["multiplicity"] is not None:
        dft["MULTIPLICITY"] = s["multiplicity"]
        dft["UKS"] = "T" if s["multiplicity"] > 1 else "F"
    if s["kpoints"] is not None:
        dft["KPOINTS"] = {"SCHEME": "MONKHORST-PACK " + " ".join(map(str, s["kpoints"]))}
    return {
        "GLOBAL": {"PROJECT": "firegen", "RUN_TYPE": "ENERGY_FORCE", "PRINT_LEVEL": "MEDIUM"},
        "FORCE_EVAL": {"METHOD": "QS", "STRESS_TENSOR": "ANALYTICAL", "DFT": dft, "SUBSYS": {},
                       "PRINT": {"FORCES": {"_": "ON"}, "STRESS_TENSOR": {"_": "ON"}}},
    }


def _cp2k_values(d):
    """Python values as CP2K writes them (booleans T/F) for DP-GEN's renderer."""
    if isinstance(d, dict):
        return {k: _cp2k_values(v) for k, v in d.items()}
    if isinstance(d, list):
        return [_cp2k_values(v) for v in d]
    if isinstance(d, bool):
        return "T" if d else "F"
    return d


def render_input(config: dict) -> str:
    """CP2K input text from a nested dict in DP-GEN's ``user_fp_params`` format, rendered by
    DP-GEN's own ``iterdict`` (``_`` = section parameter, lists = repeated sections)."""
    from dpgen.generator.lib.cp2k import iterdict

    lines: list[str] = []
    with quiet_output():  # iterdict prints top-level keywords
        iterdict(_cp2k_values(config), lines)
    return "\n".join(lines) + "\n"


_COORD_INCLUDE = re.compile(r"^\s*@include\s+['\"]?coord\.xyz['\"]?\s*$", re.IGNORECASE | re.MULTILINE)


def _template_text(template: str) -> str:
    """The template's text: ``template`` itself when it holds lines, else the file it names."""
    return template if "\n" in template else Path(template).read_text()


def _read_template(template: str):
    """A DP-GEN-style template (file path or text) as a pymatgen ``Cp2kInput``: ``@include
    coord.xyz`` dropped, other ``@include``/``@SET`` resolved (relative to the template's folder,
    or the working folder for text)."""
    from pymatgen.io.cp2k.inputs import Cp2kInput
    from pymatgen.io.cp2k.utils import preprocessor

    inline = "\n" in template
    where = "the template text" if inline else template
    text = _COORD_INCLUDE.sub("", _template_text(template))
    try:
        return Cp2kInput.from_str(preprocessor(text, "." if inline else str(Path(template).parent)))
    except Exception as exc:
        raise ValueError(f"labeler 'cp2k': setting 'template': cannot read {where} as a CP2K input: "
                         f"{type(exc).__name__}: {exc}") from None


def _section(parent, name: str, create: bool = True):
    from pymatgen.io.cp2k.inputs import Section, SectionList

    sec = parent.get_section(name)
    if isinstance(sec, SectionList):
        raise ValueError(f"labeler 'cp2k': the input has {len(sec)} &{name} sections inside "
                         f"&{parent.name}; firegen labels with exactly one")
    if sec is None and create:
        sec = Section(name, subsections={})
        parent.insert(sec)
        sec = parent.get_section(name)
    return sec


def _files_of(dft, keyword: str, fallback: str) -> list[Path]:
    from pymatgen.io.cp2k.inputs import KeywordList

    kw = dft.get_keyword(keyword)
    if kw is None:
        return [Path(fallback)]
    kws = kw.keywords if isinstance(kw, KeywordList) else [kw]
    out = []
    for k in kws:
        p = Path(str(k.values[0])) if k.values else None
        if p is not None:
            out.append(p if p.is_absolute() or p.is_file() else cp2k_data_dir() / p)
    return out


@lru_cache(maxsize=32)
def _entries(path: str, mtime: float) -> frozenset[tuple[str, str]]:
    """(element, name) pairs of a CP2K basis or potential file (names and aliases of each entry)."""
    out = set()
    with open(path, errors="replace") as fh:
        for line in fh:
            parts = line.split()
            if len(parts) >= 2 and parts[0][:1].isalpha() and parts[0][:1].isupper() and len(parts[0]) <= 3 \
                    and parts[0].isalpha():
                out.update((parts[0], p) for p in parts[1:] if not p[:1].isdigit())
    return frozenset(out)


def _has_entry(files: list[Path], element: str, name: str) -> bool:
    for f in files:
        if f.is_file() and (element, name) in _entries(str(f), f.stat().st_mtime):
            return True
    return False


def _force_outputs(ci) -> None:
    """A single point with forces and stress, printed as dpdata's reader needs them."""
    _section(ci, "GLOBAL").update({"RUN_TYPE": "ENERGY_FORCE", "PRINT_LEVEL": "MEDIUM"})
    fe = ci["FORCE_EVAL"]
    stress = fe.get_keyword("STRESS_TENSOR")
    if stress is None or str(stress.values[0]).upper() not in ("ANALYTICAL", "NUMERICAL"):
        fe.update({"STRESS_TENSOR": "ANALYTICAL"})
    prints = _section(fe, "PRINT")
    for name in ("FORCES", "STRESS_TENSOR"):
        _section(prints, name).section_parameters = ["ON"]


def _set_multiplicity(dft, symbols: list[str]) -> None:
    """DP-GEN's rule: singlet for an even electron count, doublet (with UKS) for an odd one."""
    from dpgen.generator.lib.cp2k import calculate_multiplicity

    elements = list(dict.fromkeys(symbols))
    charge = dft.get_keyword("CHARGE")
    charge = int(charge.values[0]) if charge is not None else 0
    mult = calculate_multiplicity(elements, [elements.index(x) for x in symbols], charge)
    dft.update({"MULTIPLICITY": mult})
    if dft.get_keyword("UKS") is None and dft.get_keyword("LSD") is None:
        dft.update({"UKS": mult > 1})


def _set_cell_and_coordinates(subsys, atoms) -> None:
    """&CELL from ``atoms.cell`` (Å); coordinates read from coord.xyz through &TOPOLOGY."""
    from pymatgen.io.cp2k.inputs import Keyword

    for name in list(subsys.subsections):
        if name.upper() == "COORD":
            del subsys.subsections[name]
    cell = _section(subsys, "CELL")
    for name in list(cell.keywords):
        if name.upper() in ("A", "B", "C", "ABC", "ALPHA_BETA_GAMMA", "CELL_FILE_NAME", "CELL_FILE_FORMAT",
                            "MULTIPLE_UNIT_CELL"):
            del cell.keywords[name]
    for label, vec in zip("ABC", np.asarray(atoms.cell[:], dtype=float), strict=True):
        cell.keywords[label] = Keyword(label, *(float(x) for x in vec), units="angstrom")
    if cell.get_keyword("PERIODIC") is None:
        cell.keywords["PERIODIC"] = Keyword("PERIODIC", "XYZ")
    topo = _section(subsys, "TOPOLOGY")
    for name in list(topo.keywords):
        if name.upper() in ("COORD_FILE_NAME", "COORD_FILE_FORMAT", "MULTIPLE_UNIT_CELL"):
            del topo.keywords[name]
    topo.keywords["COORD_FILE_NAME"] = Keyword("COORD_FILE_NAME", COORD_FILE)
    topo.keywords["COORD_FILE_FORMAT"] = Keyword("COORD_FILE_FORMAT", "XYZ")


def _add_kinds(subsys, dft, elements: list[str], s: dict) -> None:
    """A &KIND with ``basis_set``/``potential`` for each element that has none; one error naming
    every element the basis or potential files lack."""
    from pymatgen.io.cp2k.inputs import Keyword, Section

    have = set()
    for key, sec in subsys.subsections.items():
        if key.upper().split()[0] == "KIND":
            for k in getattr(sec, "sections", [sec]):
                if k.section_parameters:
                    have.add(str(k.section_parameters[0]).upper())
    missing = [el for el in elements if el.upper() not in have]
    if not missing:
        return
    basis_files = _files_of(dft, "BASIS_SET_FILE_NAME", s["basis_file"])
    pot_files = _files_of(dft, "POTENTIAL_FILE_NAME", s["potential_file"])
    lacking = [f"{el} (basis {s['basis_set']})" for el in missing if not _has_entry(basis_files, el, s["basis_set"])]
    lacking += [f"{el} (potential {s['potential']})" for el in missing
                if not _has_entry(pot_files, el, s["potential"])]
    if lacking:
        raise ValueError(
            f"labeler 'cp2k': no entry for {', '.join(lacking)} in "
            f"{', '.join(sorted({str(p) for p in basis_files + pot_files}))}; set 'basis_set'/'potential' to names "
            f"those files hold, point 'basis_file'/'potential_file' elsewhere, or add &KIND sections")
    for el in missing:
        subsys.insert(Section("KIND", section_parameters=[el], alias=f"KIND {el}", subsections={},
                              keywords={"BASIS_SET": Keyword("BASIS_SET", s["basis_set"]),
                                        "POTENTIAL": Keyword("POTENTIAL", s["potential"])}))


def _restore_cell(system, cell_in: np.ndarray) -> None:
    """CP2K prints the cell vectors with 3 decimals (Å), and the parsed virial is the stress times
    the volume of that printed cell: put back the input cell and rescale the virial to its volume
    (a ~1e-4 relative correction), when the printed cell is the input's to within that rounding."""
    cell_out = np.asarray(system["cells"][0], dtype=float)
    if np.abs(cell_out - cell_in).max() > 6e-4:
        return  # not the input cell: checked_frame reports it
    if system.has_virial():
        system.data["virials"] = system.data["virials"] * (abs(np.linalg.det(cell_in)) / abs(np.linalg.det(cell_out)))
    system.data["cells"] = cell_in[None].copy()


class CP2KLabeler(DFTLabeler):
    """CP2K single points under custodian; see the module docstring."""

    kind = KIND
    code = "cp2k"

    def base_input(self):
        """The structure-independent input as a pymatgen ``Cp2kInput`` (a fresh copy)."""
        from pymatgen.io.cp2k.inputs import Cp2kInput

        if getattr(self, "_base", None) is None:
            s = self.settings
            if s["template"] is not None:
                ci = _read_template(s["template"])
            else:
                from dpgen.generator.lib.cp2k import update_dict

                config = _defaults(s)
                update_dict(config, copy.deepcopy(s["input"]))
                try:
                    ci = Cp2kInput.from_str(render_input(config))
                except Exception as exc:
                    raise ValueError(f"labeler 'cp2k': setting 'input' does not make a CP2K input: "
                                     f"{type(exc).__name__}: {exc}") from None
            _section(ci, "FORCE_EVAL")
            if _section(ci["FORCE_EVAL"], "DFT", create=False) is None:
                raise ValueError("labeler 'cp2k': the input has no FORCE_EVAL/DFT section (firegen labels with "
                                 "Quickstep DFT)")
            self._base = ci
        return copy.deepcopy(self._base)

    def make_input(self, atoms) -> tuple[str, str]:
        """``(cp2k.inp text, coord.xyz text)`` for ``atoms`` (see the module docstring)."""
        s = self.settings
        ci = self.base_input()
        _force_outputs(ci)
        dft = ci["FORCE_EVAL"]["DFT"]
        if dft.get_keyword("BASIS_SET_FILE_NAME") is None:
            dft.update({"BASIS_SET_FILE_NAME": s["basis_file"]})
        if dft.get_keyword("POTENTIAL_FILE_NAME") is None:
            dft.update({"POTENTIAL_FILE_NAME": s["potential_file"]})
        if s["template"] is None and s["multiplicity"] is None and dft.get_keyword("MULTIPLICITY") is None:
            _set_multiplicity(dft, atoms.get_chemical_symbols())
        subsys = _section(ci["FORCE_EVAL"], "SUBSYS")
        _set_cell_and_coordinates(subsys, atoms)
        _add_kinds(subsys, dft, list(dict.fromkeys(atoms.get_chemical_symbols())), s)
        xyz = [str(len(atoms)), "written by firegen (Å)"]
        xyz += [f"{el:<3s} {x:20.12f} {y:20.12f} {z:20.12f}"
                for el, (x, y, z) in zip(atoms.get_chemical_symbols(), atoms.positions, strict=True)]
        return ci.get_str(), "\n".join(xyz) + "\n"

    # DFTLabeler steps ---------------------------------------------------------------------------
    def prepare(self, atoms, directory: Path) -> dict:
        text, xyz = self.make_input(atoms)
        (directory / INPUT_FILE).write_text(text)
        (directory / COORD_FILE).write_text(xyz)
        s = self.settings
        argv = mpi_prefix(s["mpi_ranks"]) + shlex.split(s["command"])
        return {"files": [INPUT_FILE, COORD_FILE], "argv": argv, "cell": np.asarray(atoms.cell[:]).tolist()}

    def execute(self, directory: Path, argv: list[str]) -> list[dict]:
        from custodian.cp2k.handlers import (AbortHandler, DivergingScfErrorHandler, FrozenJobErrorHandler,
                                             NumericalPrecisionHandler, StdErrHandler, UnconvergedScfErrorHandler)
        from custodian.cp2k.validators import Cp2kOutputValidator

        s = self.settings
        job = _Cp2kJob(argv, omp_threads=s["omp_threads"], input_file=INPUT_FILE, output_file=OUTPUT_FILE,
                       stderr_file=STDERR_FILE)
        handlers = [
            UnconvergedScfErrorHandler(input_file=INPUT_FILE, output_file=OUTPUT_FILE),
            DivergingScfErrorHandler(output_file=OUTPUT_FILE, input_file=INPUT_FILE),
            FrozenJobErrorHandler(input_file=INPUT_FILE, output_file=OUTPUT_FILE),
            AbortHandler(input_file=INPUT_FILE, output_file=OUTPUT_FILE),
            NumericalPrecisionHandler(input_file=INPUT_FILE, output_file=OUTPUT_FILE),
            StdErrHandler(std_err=str(directory / STDERR_FILE)),  # it opens the path as given, not in directory
            walltime_handler(s["walltime"]),
        ]
        return run_custodian([job], handlers, [Cp2kOutputValidator(output_file=OUTPUT_FILE)], directory,
                             max_errors=s["max_errors"], polling_time_step=0.5, monitor_freq=10)

    def parse(self, directory: Path, prepared: dict):
        import dpdata
        from pymatgen.io.cp2k.outputs import Cp2kOutput

        out_path = directory / OUTPUT_FILE
        out = Cp2kOutput(str(out_path), auto_load=False, verbose=False)
        out.convergence()
        if not all(out.data.get("scf_converged") or [False]):
            raise DFTRunError("CP2K's SCF did not converge (custodian let it pass)")
        with quiet_output():
            system = dpdata.LabeledSystem(str(out_path), fmt="cp2k/output")
        if system.get_nframes() == 1:
            _restore_cell(system, np.asarray(prepared["cell"], dtype=float))
        if system.get_nframes() == 1 and not system.has_virial():
            # dpdata's own reader misses CP2K >= 2023's "STRESS| Analytical stress tensor [GPa]";
            # pymatgen reads it (the cp2kdata plugin, when installed, reads it into dpdata itself)
            from dpdata.unit import PressureConversion

            out.parse_stresses()
            tensors = out.data.get("stress_tensor") or []
            if tensors:
                gpa_per_ev_a3 = PressureConversion("eV/angstrom^3", "GPa").value()
                volume = abs(np.linalg.det(system["cells"][0]))
                system.data["virials"] = (np.asarray(tensors[-1], dtype=float) * volume / gpa_per_ev_a3)[None]
        out.parse_cp2k_params()
        version = (out.data.get("cp2k_version") or [[None]])[0][0]
        steps = [int(m) for m in re.findall(r"SCF run converged in\s+(\d+)\s+steps", out_path.read_text())]
        return system, {"code_version": None if version is None else str(version).strip(),
                        "n_scf_steps": steps[-1] if steps else None}


class _Cp2kJob(Cp2kJob):
    """Custodian's ``Cp2kJob``, run in its own session with ``OMP_NUM_THREADS`` set and stopped by
    process group (custodian's own ``terminate`` runs ``killall`` on the executable name, which
    would stop every CP2K on the machine)."""

    def __init__(self, cp2k_cmd, omp_threads=1, input_file="cp2k.inp", output_file="cp2k.out",
                 stderr_file="std_err.txt"):
        super().__init__(cp2k_cmd, input_file=input_file, output_file=output_file, stderr_file=stderr_file)
        self.omp_threads = omp_threads
        self._process = None

    def run(self, directory="./"):
        cmd = [*self.cp2k_cmd, "-i", self.input_file]
        with open(os.path.join(directory, self.output_file), "w") as f_std, \
                open(os.path.join(directory, self.stderr_file), "w", buffering=1) as f_err:
            self._process = subprocess.Popen(cmd, cwd=directory, stdout=f_std, stderr=f_err,
                                             env=child_env(self.omp_threads), start_new_session=True)
        return self._process

    def terminate(self, directory="./"):
        if self._process is not None:
            terminate_process_group(self._process)
