"""Labeler kind ``vasp``: VASP single points on the user's cluster, run under custodian's
``VaspJob`` with its VASP error handlers, parsed with dpdata's ``vasp/outcar`` reader.

VASP is licensed and not installed with firegen: the executable is looked for when a label runs
(on the worker), not when the labeler is made. Inputs:

- ``INCAR`` from ``incar`` (dict) or ``incar_file`` (path), else from a pymatgen input set
  (``input_set``, default ``MPStaticSet``) made for the structure without re-sorting its sites.
  A single point is enforced: ``NSW`` 0 (another value is refused), ``IBRION`` -1 and ``ISIF`` 2
  when absent (``ISIF`` 0 or 1 is refused: no stress tensor);
- ``KPOINTS``: Γ-centred grid from ``kspacing`` (1/Å, VASP's and DP-GEN's convention
  n_i = max(1, ceil(2π |b_i| / kspacing)), b without 2π) or ``kpoints`` ([n1, n2, n3]); with
  neither, the input set's KPOINTS, or none at all when the INCAR sets ``KSPACING``, else Γ only;
- ``POSCAR``: the structure with its atoms grouped by element in order of first appearance
  (labels are mapped back to the input order);
- ``POTCAR``: the files ``potcar_dir/potcar_files[el]`` (default ``<El>/POTCAR``) concatenated in
  POSCAR order; one error lists every element without a file.

Settings: ``command`` ("vasp_std"), ``mpi_ranks`` (1), ``omp_threads`` (1), ``incar``,
``incar_file``, ``input_set``, ``potcar_dir`` (required), ``potcar_files``, ``kspacing``,
``kpoints``, ``handlers`` (names in ``custodian.vasp.handlers``, default
:data:`DEFAULT_HANDLERS`), ``max_errors`` (5), ``walltime`` (s, 86400; null = none), ``workdir``,
``keep_files``. The hash covers the INCAR file's content, not its path, and leaves out how the run
is done.
"""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
from custodian.vasp.jobs import VaspJob

from firegen.workflows.steps.dft_run import (DFTLabeler, DFTRunError, child_env, mpi_prefix, quiet_output,
                                             run_custodian, run_settings, walltime_handler)
from firegen.workflows.steps.label import _as_float, _check_keys, _jsonable

__all__ = ["DEFAULT_HANDLERS", "VASPLabeler", "grouped_order", "vasp_labeler"]

KIND = "vasp"
INSTALL_HINT = "VASP is licensed: run on a machine where it is installed (module load vasp)"
DEFAULT_HANDLERS = ("VaspErrorHandler", "MeshSymmetryErrorHandler", "UnconvergedErrorHandler",
                    "NonConvergingErrorHandler", "PotimErrorHandler", "PositiveEnergyErrorHandler",
                    "FrozenJobErrorHandler", "StdErrHandler", "LargeSigmaHandler", "IncorrectSmearingHandler")
_ALLOWED = ["command", "mpi_ranks", "omp_threads", "incar", "incar_file", "input_set", "potcar_dir", "potcar_files",
            "kspacing", "kpoints", "handlers", "max_errors", "walltime", "workdir", "keep_files"]


def vasp_labeler(settings: dict) -> VASPLabeler:
    """Factory of kind ``vasp`` (see the module docstring for the settings).

    Raises:
        ValueError: unknown or bad setting, unknown input set or handler, missing ``potcar_dir``
            or INCAR file.
    """
    from pymatgen.io.vasp.inputs import Incar

    _check_keys(KIND, settings, _ALLOWED)
    s: dict[str, Any] = run_settings(KIND, settings, candidates=("vasp_std",), install_hint=INSTALL_HINT,
                                     walltime=86400.0, max_errors=5, require_command=False)
    incar, incar_file = settings.get("incar"), settings.get("incar_file")
    if incar is not None and incar_file is not None:
        raise ValueError("labeler 'vasp': give 'incar' or 'incar_file', not both")
    if (incar is not None or incar_file is not None) and settings.get("input_set") is not None:
        raise ValueError("labeler 'vasp': 'input_set' is used only without 'incar'/'incar_file'; drop one")
    hash_extra: dict[str, Any] = {}
    if incar_file is not None:
        path = Path(str(incar_file)).expanduser()
        if not path.is_file():
            raise ValueError(f"labeler 'vasp': setting 'incar_file': file {str(path)!r} not found")
        s["incar_file"] = str(path.resolve())
        hash_extra["incar_file"] = "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()
        incar_dict = dict(Incar.from_file(path))
    else:
        s["incar_file"] = None
        incar_dict = None
    if incar is not None:
        if not isinstance(incar, dict):
            raise ValueError(f"labeler 'vasp': setting 'incar' must map INCAR tags to values, got {incar!r}")
        incar_dict = dict(incar)
    if incar_dict is not None:
        try:
            incar_dict = _single_point(dict(Incar(incar_dict)))
            s["incar"] = _jsonable(incar_dict) if incar is not None else None
        except TypeError as exc:
            raise ValueError(f"labeler 'vasp': setting 'incar': {exc}") from None
        s["input_set"] = None
    else:
        s["incar"] = None
        s["input_set"] = _input_set_name(settings.get("input_set", "MPStaticSet"))
    pdir = settings.get("potcar_dir")
    if not pdir:
        raise ValueError("labeler 'vasp': set 'potcar_dir' to the folder of your POTCAR files "
                         "(one sub-folder per element, <El>/POTCAR, or map them with 'potcar_files')")
    pdir = Path(str(pdir)).expanduser()
    if not pdir.is_dir():
        raise ValueError(f"labeler 'vasp': setting 'potcar_dir': folder {str(pdir)!r} not found")
    s["potcar_dir"] = str(pdir.resolve())
    files = settings.get("potcar_files") or {}
    if not isinstance(files, dict) or not all(isinstance(k, str) and isinstance(v, str) and v.strip()
                                              for k, v in files.items()):
        raise ValueError(f"labeler 'vasp': setting 'potcar_files' must map elements to POTCAR paths relative to "
                         f"potcar_dir, e.g. {{Na: Na_pv/POTCAR}}, got {files!r}")
    s["potcar_files"] = {el: files[el].strip() for el in sorted(files)}
    if settings.get("kspacing") is not None and settings.get("kpoints") is not None:
        raise ValueError("labeler 'vasp': give 'kspacing' or 'kpoints', not both")
    ks = settings.get("kspacing")
    s["kspacing"] = None if ks is None else _as_float(KIND, "kspacing", ks, positive=True)
    kp = settings.get("kpoints")
    if kp is not None and (not isinstance(kp, (list, tuple)) or len(kp) != 3 or not all(
            isinstance(n, (int, np.integer)) and not isinstance(n, bool) and n >= 1 for n in kp)):
        raise ValueError(f"labeler 'vasp': setting 'kpoints' must be three positive integers [n1, n2, n3], got {kp!r}")
    s["kpoints"] = None if kp is None else [int(n) for n in kp]
    s["handlers"] = _handler_names(settings.get("handlers", list(DEFAULT_HANDLERS)))
    return VASPLabeler(s, hash_extra)


def _single_point(incar: dict) -> dict:
    nsw = int(incar.get("NSW", 0) or 0)
    if nsw != 0:
        raise ValueError(f"labeler 'vasp': INCAR NSW = {nsw}: firegen labels single points; set NSW = 0")
    isif = incar.get("ISIF")
    if isif is not None and int(isif) in (0, 1):
        raise ValueError(f"labeler 'vasp': INCAR ISIF = {isif} gives no stress tensor; use ISIF = 2 (or drop it)")
    incar.setdefault("NSW", 0)
    incar.setdefault("IBRION", -1)
    incar.setdefault("ISIF", 2)
    return incar


def _input_set_name(name) -> str:
    import pymatgen.io.vasp.sets as sets

    cls = getattr(sets, str(name), None) if isinstance(name, str) else None
    if not (isinstance(cls, type) and issubclass(cls, sets.VaspInputSet)):
        known = sorted(n for n, c in vars(sets).items() if isinstance(c, type) and issubclass(c, sets.VaspInputSet)
                       and "Static" in n)
        raise ValueError(f"labeler 'vasp': setting 'input_set' {name!r} is not a pymatgen VASP input set; "
                         f"e.g. {', '.join(known)}")
    return str(name)


def _handler_names(value) -> list[str]:
    import custodian.vasp.handlers as handlers
    from custodian.custodian import ErrorHandler

    known = sorted(n for n, c in vars(handlers).items()
                   if isinstance(c, type) and issubclass(c, ErrorHandler) and c is not ErrorHandler
                   and c.__module__ == handlers.__name__)
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"labeler 'vasp': setting 'handlers' must be a list of handler names, got {value!r}")
    unknown = [v for v in value if v not in known]
    if unknown:
        raise ValueError(f"labeler 'vasp': setting 'handlers': unknown {', '.join(unknown)}; "
                         f"custodian.vasp.handlers has {', '.join(known)}")
    return list(value)


def grouped_order(symbols) -> np.ndarray:
    """Permutation grouping atoms by element, elements in order of first appearance, stable within
    each element (VASP wants one block per element): ``symbols[order]`` is the POSCAR order."""
    first = {el: i for i, el in reversed(list(enumerate(symbols)))}
    return np.array(sorted(range(len(symbols)), key=lambda i: (first[symbols[i]], i)), dtype=int)


class VASPLabeler(DFTLabeler):
    """VASP single points under custodian; see the module docstring."""

    kind = KIND
    code = "vasp"

    def potcar_paths(self, elements) -> list[Path]:
        """POTCAR file per element of ``elements``; one error listing every element without a file."""
        s = self.settings
        paths, lacking = [], []
        for el in elements:
            p = Path(s["potcar_dir"]) / s["potcar_files"].get(el, f"{el}/POTCAR")
            (paths if p.is_file() else lacking).append(p if p.is_file() else f"{el} ({p})")
        if lacking:
            raise ValueError(f"labeler 'vasp': no POTCAR for {', '.join(map(str, lacking))}; put them under "
                             f"potcar_dir or map them in 'potcar_files'")
        return paths

    def write_inputs(self, atoms, directory: Path) -> np.ndarray:
        """INCAR, KPOINTS (when needed), POSCAR and POTCAR for ``atoms`` in ``directory``; returns the
        permutation: POSCAR atom i is input atom ``order[i]``."""
        from pymatgen.io.ase import AseAtomsAdaptor
        from pymatgen.io.vasp.inputs import Incar, Kpoints, Poscar

        s = self.settings
        order = grouped_order(atoms.get_chemical_symbols())
        grouped = atoms[order]
        elements = list(dict.fromkeys(grouped.get_chemical_symbols()))
        potcars = self.potcar_paths(elements)
        structure = AseAtomsAdaptor.get_structure(grouped)
        kpoints = None
        if s["input_set"] is not None:
            import pymatgen.io.vasp.sets as sets

            vis = getattr(sets, s["input_set"])(structure, sort_structure=False)
            incar = _single_point(dict(vis.incar))
            if s["kspacing"] is None and s["kpoints"] is None and "KSPACING" not in incar:
                kpoints = vis.kpoints
        elif s["incar_file"] is not None:
            incar = _single_point(dict(Incar.from_file(s["incar_file"])))
        else:
            incar = dict(s["incar"])
        if s["kpoints"] is not None:
            kpoints = Kpoints.gamma_automatic(tuple(s["kpoints"]))
        elif s["kspacing"] is not None:
            rcell = np.linalg.inv(np.asarray(grouped.cell[:], dtype=float)).T
            grid = [max(1, int(np.ceil(2 * np.pi * np.linalg.norm(b) / s["kspacing"]))) for b in rcell]
            kpoints = Kpoints.gamma_automatic(tuple(grid))
        elif kpoints is None and "KSPACING" not in incar:
            kpoints = Kpoints.gamma_automatic((1, 1, 1))
        if s["kpoints"] is not None or s["kspacing"] is not None:
            incar.pop("KSPACING", None)
        Incar(incar).write_file(directory / "INCAR")
        if kpoints is not None:
            kpoints.write_file(directory / "KPOINTS")
        Poscar(structure, comment=grouped.get_chemical_formula()).write_file(directory / "POSCAR",
                                                                            significant_figures=12)
        with open(directory / "POTCAR", "wb") as out:
            for p in potcars:
                out.write(p.read_bytes())
        return order

    # DFTLabeler steps ---------------------------------------------------------------------------
    def prepare(self, atoms, directory: Path) -> dict:
        order = self.write_inputs(atoms, directory)
        s = self.settings
        argv = mpi_prefix(s["mpi_ranks"]) + shlex.split(s["command"])
        exe = shlex.split(s["command"])[0]
        if shutil.which(exe) is None and not (os.path.isfile(exe) and os.access(exe, os.X_OK)):
            raise DFTRunError(f"labeler 'vasp': executable {exe!r} not found on this worker; {INSTALL_HINT}, "
                              f"or set 'command'")
        files = [f for f in ("INCAR", "KPOINTS", "POSCAR", "POTCAR") if (directory / f).is_file()]
        return {"files": files, "argv": argv, "order": order.tolist()}

    def execute(self, directory: Path, argv: list[str]) -> list[dict]:
        import custodian.vasp.handlers as vh
        from custodian.vasp.validators import VasprunXMLValidator

        s = self.settings
        job = _VaspJob(argv, omp_threads=s["omp_threads"])
        handlers = [getattr(vh, name)() for name in s["handlers"]] + [walltime_handler(s["walltime"])]
        return run_custodian([job], handlers, [VasprunXMLValidator()], directory, max_errors=s["max_errors"],
                             polling_time_step=1.0, monitor_freq=10)

    def parse(self, directory: Path, prepared: dict):
        import dpdata
        from pymatgen.io.vasp.outputs import Oszicar

        outcar = directory / "OUTCAR"
        with quiet_output():
            system = dpdata.LabeledSystem(str(outcar), fmt="vasp/outcar")
        if system.get_nframes() == 0:
            raise DFTRunError("VASP's electronic SCF did not converge within NELM steps (custodian let it pass)")
        inverse = np.argsort(np.asarray(prepared["order"], dtype=int))
        system = system.pick_atom_idx(inverse)
        with open(outcar, errors="replace") as fh:
            head = fh.readline()
        version = re.search(r"vasp\.(\S+)", head)
        steps = None
        if (directory / "OSZICAR").is_file():
            try:
                steps = len(Oszicar(str(directory / "OSZICAR")).electronic_steps[-1])
            except Exception:  # noqa: BLE001 - a fact, not a check
                steps = None
        return system, {"code_version": version.group(1) if version else None, "n_scf_steps": steps}


class _VaspJob(VaspJob):
    """Custodian's ``VaspJob`` with ``OMP_NUM_THREADS`` set, no automatic Γ-only executable and no
    NPAR tuning (command and parallelisation are the user's); stopped by process group."""

    def __init__(self, vasp_cmd, omp_threads=1, output_file="vasp.out", stderr_file="std_err.txt"):
        super().__init__(vasp_cmd, output_file=output_file, stderr_file=stderr_file, auto_npar=False,
                         auto_gamma=False)
        self.omp_threads = omp_threads

    def run(self, directory="./"):
        with open(os.path.join(directory, self.output_file), "w") as f_std, \
                open(os.path.join(directory, self.stderr_file), "w", buffering=1) as f_err:
            self._vasp_process = subprocess.Popen(list(self.vasp_cmd), cwd=directory, stdout=f_std, stderr=f_err,
                                                  env=child_env(self.omp_threads), start_new_session=True)
            return self._vasp_process
