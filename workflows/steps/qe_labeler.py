"""Labeler kind ``qe``: Quantum ESPRESSO's ``pw.x`` (Debian's ``quantum-espresso``) single points,
input written by ASE, output parsed with dpdata's ``qe/pw/scf`` reader.

Pseudopotentials come from the user's ``pseudo_dir`` with an explicit ``{element: file}`` map
(as DP-GEN's ``fp_pp_files``); Debian ships only test pseudopotentials (in
``/usr/share/espresso/pseudo`` from ``quantum-espresso-data``: Si, Al, C, O, ... but no Na or Cl).
A structure with an element the map lacks, or a mapped file that is missing, fails with one error
listing every such element (and the candidate files found in ``pseudo_dir``).

pw.x runs as a plain subprocess (no custodian handlers exist for it) with a walltime; a run that
does not reach SCF convergence is a failure.

Settings (defaults filled in before hashing; units in brackets):

``command`` ("pw.x"), ``mpi_ranks`` (1), ``omp_threads`` (1), ``pseudo_dir`` (``$ESPRESSO_PSEUDO``;
required otherwise), ``pseudopotentials`` ({element: file name in pseudo_dir}), ``input``
(namelists ``{control: {...}, system: {...}, electrons: {...}}`` in DP-GEN's ``user_fp_params``
style, merged over firegen's: ``calculation='scf'``, ``tprnfor``, ``tstress``, ``conv_thr`` 1e-8
Ry), ``ecutwfc`` (Ry, 50), ``ecutrho`` (Ry, null = pw.x's 4 x ecutwfc), ``kspacing`` (1/Å, DP-GEN's
convention: n_i = ceil(2π |b_i| / kspacing) with b the reciprocal vectors without 2π, grids
shifted by half a step along even n_i, Γ only when all n_i = 1) or ``kpoints`` ([n1, n2, n3],
Γ-centred); neither = Γ point; ``walltime`` (s, 3600; null = none), ``workdir`` (null = system temp),
``keep_files`` (false). The hash covers the pseudopotential files' names and sha256, not
``pseudo_dir``, and leaves out how the run is done.
"""

from __future__ import annotations

import hashlib
import io
import math
import os
import re
import shlex
from pathlib import Path
from typing import Any

import numpy as np

from firegen.workflows.steps.dft_run import (DFTLabeler, DFTRunError, child_env, mpi_prefix, quiet_output,
                                             run_settings, run_subprocess)
from firegen.workflows.steps.label import _as_float, _check_keys, _jsonable

__all__ = ["QELabeler", "kspacing_grid", "qe_labeler"]

KIND = "qe"
INPUT_FILE = "pw.in"
OUTPUT_FILE = "pw.out"
STDERR_FILE = "pw.err"
INSTALL_HINT = "install Debian's quantum-espresso (apt-get install quantum-espresso)"
_NAMELISTS = ("control", "system", "electrons", "ions", "cell")
_ALLOWED = ["command", "mpi_ranks", "omp_threads", "pseudo_dir", "pseudopotentials", "input", "ecutwfc", "ecutrho",
            "kspacing", "kpoints", "walltime", "workdir", "keep_files"]
_SET_BY_FIREGEN = {"control": ("pseudo_dir", "outdir", "prefix"), "system": ("nat", "ntyp", "ibrav")}


def qe_labeler(settings: dict) -> QELabeler:
    """Factory of kind ``qe`` (see the module docstring for the settings).

    Raises:
        ValueError: unknown or bad setting, missing ``pw.x``, ``pseudo_dir`` or mapped files
            (one error listing every element whose file is missing).
    """
    _check_keys(KIND, settings, _ALLOWED)
    s: dict[str, Any] = run_settings(KIND, settings, candidates=("pw.x",), install_hint=INSTALL_HINT,
                                     walltime=3600.0, max_errors=None)
    pseudo_dir = settings.get("pseudo_dir", os.environ.get("ESPRESSO_PSEUDO"))
    if not pseudo_dir:
        raise ValueError("labeler 'qe': set 'pseudo_dir' to the folder of your pseudopotential files "
                         "(or the ESPRESSO_PSEUDO environment variable)")
    pdir = Path(str(pseudo_dir)).expanduser()
    if not pdir.is_dir():
        raise ValueError(f"labeler 'qe': setting 'pseudo_dir': folder {str(pdir)!r} not found")
    s["pseudo_dir"] = str(pdir.resolve())
    pps = settings.get("pseudopotentials") or {}
    if not isinstance(pps, dict) or not all(isinstance(k, str) and isinstance(v, str) and v.strip()
                                            for k, v in pps.items()):
        raise ValueError(f"labeler 'qe': setting 'pseudopotentials' must map element symbols to file names "
                         f"in pseudo_dir, e.g. {{Si: Si.pz-vbc.UPF}}, got {pps!r}")
    s["pseudopotentials"] = {el: pps[el].strip() for el in sorted(pps)}
    missing = {el: f for el, f in s["pseudopotentials"].items() if not (pdir / f).is_file()}
    if missing:
        raise ValueError(f"labeler 'qe': setting 'pseudopotentials': no file in {s['pseudo_dir']} for "
                         + ", ".join(f"{el} ({f})" for el, f in missing.items()))
    s["input"] = _namelists(settings.get("input") or {})
    s["ecutwfc"] = _as_float(KIND, "ecutwfc", settings.get("ecutwfc", 50.0), positive=True)
    ecutrho = settings.get("ecutrho")
    s["ecutrho"] = None if ecutrho is None else _as_float(KIND, "ecutrho", ecutrho, positive=True)
    if s["ecutrho"] is not None and s["ecutrho"] < 4 * s["ecutwfc"]:
        raise ValueError(f"labeler 'qe': setting 'ecutrho' ({s['ecutrho']:g} Ry) must be at least 4 x ecutwfc "
                         f"({4 * s['ecutwfc']:g} Ry), or null for pw.x's default")
    if settings.get("kspacing") is not None and settings.get("kpoints") is not None:
        raise ValueError("labeler 'qe': give 'kspacing' or 'kpoints', not both")
    ks = settings.get("kspacing")
    s["kspacing"] = None if ks is None else _as_float(KIND, "kspacing", ks, positive=True)
    s["kpoints"] = _kpoints(settings.get("kpoints"))
    # the files' contents identify the pseudopotentials, wherever pseudo_dir is
    hash_extra = {"pseudo_dir": None,
                  "pseudopotentials": {el: f"{f} sha256:" + hashlib.sha256((pdir / f).read_bytes()).hexdigest()
                                       for el, f in s["pseudopotentials"].items()}}
    return QELabeler(s, hash_extra)


def _namelists(value) -> dict:
    if not isinstance(value, dict):
        raise ValueError(f"labeler 'qe': setting 'input' must map namelists ({', '.join(_NAMELISTS)}) to "
                         f"parameters, got {value!r}")
    out: dict[str, dict] = {}
    for name, params in value.items():
        key = str(name).lower()
        if key not in _NAMELISTS:
            raise ValueError(f"labeler 'qe': setting 'input' has namelist {name!r}; allowed: {', '.join(_NAMELISTS)}")
        if not isinstance(params, dict):
            raise ValueError(f"labeler 'qe': setting 'input.{key}' must map parameters to values, got {params!r}")
        lowered = {str(k).lower(): v for k, v in params.items()}
        fixed = [k for k in _SET_BY_FIREGEN.get(key, ()) if k in lowered]
        if fixed:
            raise ValueError(f"labeler 'qe': setting 'input.{key}' sets {', '.join(fixed)}, which firegen sets "
                             f"(use 'pseudo_dir' for the pseudopotential folder)")
        out[key] = lowered
    calc = str(out.get("control", {}).get("calculation", "scf")).lower()
    if calc != "scf":
        raise ValueError(f"labeler 'qe': input.control.calculation must be 'scf' (single points), got {calc!r}")
    try:
        return _jsonable(out)
    except TypeError as exc:
        raise ValueError(f"labeler 'qe': setting 'input': {exc}") from None


def _kpoints(value) -> list[int] | None:
    if value is None:
        return None
    if (not isinstance(value, (list, tuple)) or len(value) != 3
            or not all(isinstance(n, (int, np.integer)) and not isinstance(n, bool) and n >= 1 for n in value)):
        raise ValueError(f"labeler 'qe': setting 'kpoints' must be three positive integers [n1, n2, n3], got {value!r}")
    return [int(n) for n in value]


def kspacing_grid(cell, kspacing: float) -> tuple[list[int], list[int]]:
    """DP-GEN's k-point grid for ``kspacing`` (1/Å): ``n_i = ceil(2π |b_i| / kspacing)`` with
    ``b = inv(cell).T`` (no 2π), and its offsets (1 = half a step, for even ``n_i``)."""
    rcell = np.linalg.inv(np.asarray(cell, dtype=float)).T
    n = [max(1, int(math.ceil(2 * math.pi * np.linalg.norm(b) / kspacing))) for b in rcell]
    return n, [1 if k % 2 == 0 else 0 for k in n]


class QELabeler(DFTLabeler):
    """pw.x single points; see the module docstring."""

    kind = KIND
    code = "quantum-espresso"

    def pseudopotentials_for(self, elements) -> dict[str, str]:
        """``{element: file}`` for ``elements``; one error listing every element without a file."""
        s = self.settings
        lacking = [el for el in dict.fromkeys(elements) if el not in s["pseudopotentials"]]
        if lacking:
            pdir = Path(s["pseudo_dir"])
            hints = []
            for el in lacking:
                found = sorted(p.name for p in pdir.iterdir()
                               if re.match(rf"^{re.escape(el)}[._-]", p.name) and p.suffix.lower() == ".upf")
                hints.append(f"{el} (in pseudo_dir: {', '.join(found[:5])})" if found else el)
            raise ValueError(f"labeler 'qe': no pseudopotential for {', '.join(hints)}; add them to "
                             f"'pseudopotentials' as {{element: file in {s['pseudo_dir']}}}")
        return {el: s["pseudopotentials"][el] for el in dict.fromkeys(elements)}

    def make_input(self, atoms) -> str:
        """The pw.x input text for ``atoms`` (ASE's writer)."""
        from ase.io.espresso import write_espresso_in

        s = self.settings
        pps = self.pseudopotentials_for(atoms.get_chemical_symbols())
        data: dict[str, dict] = {
            "control": {"calculation": "scf", "tprnfor": True, "tstress": True, "disk_io": "low"},
            "system": {"ecutwfc": s["ecutwfc"]},
            "electrons": {"conv_thr": 1e-8},
        }
        if s["ecutrho"] is not None:
            data["system"]["ecutrho"] = s["ecutrho"]
        for name, params in s["input"].items():
            data.setdefault(name, {}).update(params)
        data["control"].update({"pseudo_dir": s["pseudo_dir"], "outdir": "./out", "prefix": "firegen"})
        kpts, koffset = None, (0, 0, 0)
        if s["kpoints"] is not None:
            kpts = tuple(s["kpoints"])
        elif s["kspacing"] is not None:
            grid, shift = kspacing_grid(atoms.cell[:], s["kspacing"])
            if grid != [1, 1, 1]:
                kpts, koffset = tuple(grid), tuple(shift)
        buf = io.StringIO()
        write_espresso_in(buf, atoms, input_data=data, pseudopotentials=pps, kpts=kpts, koffset=koffset)
        # ASE >= 3.23 writes empty &FCP/&RISM namelists, which pw.x < 7.1 does not know
        return re.sub(r"^&(FCP|RISM)\s*\n/\s*\n", "", buf.getvalue(), flags=re.MULTILINE)

    # DFTLabeler steps ---------------------------------------------------------------------------
    def prepare(self, atoms, directory: Path) -> dict:
        (directory / INPUT_FILE).write_text(self.make_input(atoms))
        s = self.settings
        argv = mpi_prefix(s["mpi_ranks"]) + shlex.split(s["command"]) + ["-in", INPUT_FILE]
        return {"files": [INPUT_FILE], "argv": argv}

    def execute(self, directory: Path, argv: list[str]) -> list[dict]:
        s = self.settings
        rc = run_subprocess(argv, directory, stdin_file=None, stdout_file=OUTPUT_FILE, stderr_file=STDERR_FILE,
                            walltime=s["walltime"], env=child_env(s["omp_threads"]))
        text = (directory / OUTPUT_FILE).read_text(errors="replace")
        if "convergence NOT achieved" in text:
            raise DFTRunError("pw.x: SCF convergence NOT achieved (raise electron_maxstep or lower mixing_beta "
                              "in input.electrons)", details={"returncode": rc})
        if rc != 0 or "convergence has been achieved" not in text:
            err = (directory / STDERR_FILE).read_text(errors="replace")
            tail = " | ".join(line.strip() for line in (text + err).splitlines()[-6:] if line.strip())
            raise DFTRunError(f"pw.x exited with code {rc} without a converged SCF: {tail}",
                              details={"returncode": rc})
        if "JOB DONE." not in text:  # pw.x's last line: an output without it was cut short
            raise DFTRunError("pw.x output ends before 'JOB DONE.': it is cut short (the run or its output was "
                              "interrupted)", details={"returncode": rc, "output_unreadable": True})
        return []

    def parse(self, directory: Path, prepared: dict):
        import dpdata

        with quiet_output():
            system = dpdata.LabeledSystem([str(directory / INPUT_FILE), str(directory / OUTPUT_FILE)],
                                          fmt="qe/pw/scf")
        text = (directory / OUTPUT_FILE).read_text(errors="replace")
        version = re.search(r"Program PWSCF v\.(\S+)", text)
        steps = re.findall(r"convergence has been achieved in\s+(\d+)\s+iterations", text)
        return system, {"code_version": version.group(1) if version else None,
                        "n_scf_steps": int(steps[-1]) if steps else None}
