"""Labeler kind ``command``: any program that reads a structure file and writes a labeled one.

DP-GEN's ``fp_style: custom`` in firegen: the structure is written with dpdata's ``input_fmt``
to ``input_fn`` in a fresh folder, the shell ``command`` runs there, and ``output_fn`` is read
with dpdata's ``output_fmt`` as a ``LabeledSystem`` (one frame). dpdata does the unit
conversions, so the :class:`~firegen.workflows.steps.label.Label` is in eV, eV/Å and eV
(virial, when the output has one).

Settings:

``command`` (required)
    shell command run in the work folder (DP-GEN's ``machine.json`` ``fp.command``), e.g.
    ``python /opt/scripts/emt_label.py``.
``input_fmt``, ``input_fn`` (required)
    dpdata format and file name of the input (``vasp/poscar`` / ``POSCAR``, ``lammps/lmp``,
    ``xyz``, ...). ``extxyz`` (which dpdata writes for labeled systems only) is written with ASE.
``output_fmt``, ``output_fn`` (required)
    dpdata labeled format and file name the command writes (``extxyz``, ``vasp/outcar``,
    ``qe/pw/scf``, ``deepmd/npy``, ...).
``walltime``
    seconds before the command is killed (None: no limit).
``forward_files``
    absolute paths copied into the work folder before the run (DP-GEN's ``user_forward_files``).
``workdir``
    parent of the temporary work folders (default: the system's temporary folder).
``keep_files``
    keep the work folder after a success too (a failure always keeps it; its path is in the error).

A non-zero exit, a timeout, a missing or unreadable output, or an output whose atoms do not
match the input (species, positions within 1e-3 Å modulo the cell) raise :class:`CommandLabelError`
with the tail of the command's stderr.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from firegen.campaign.errors import FatalError
from firegen.workflows.steps import log_tail
from firegen.workflows.steps.label import (_HOST, Label, Labeler, NonFiniteLabelError, _as_bool, _as_float,
                                           _check_keys, _jsonable, _package_version, register_labeler, settings_hash)

__all__ = ["CommandLabelError", "CommandLabeler", "command_labeler", "match_atoms"]

_REQUIRED = ("command", "input_fmt", "input_fn", "output_fmt", "output_fn")
_ALLOWED = _REQUIRED + ("walltime", "forward_files", "workdir", "keep_files")
_TAIL_CHARS = 2000
#: Position tolerance (Å) when matching output atoms to input atoms.
MATCH_TOLERANCE = 1e-3


class CommandLabelError(FatalError, RuntimeError):
    """The labeling command failed (exit code, timeout, missing/unreadable/mismatched output)."""


def match_atoms(species_in, frac_in: np.ndarray, species_out, frac_out: np.ndarray,
                cell: np.ndarray, tol: float = MATCH_TOLERANCE) -> np.ndarray:
    """``perm`` such that output atom ``perm[i]`` is input atom ``i`` (same species, same position
    within ``tol`` Å modulo the cell).

    Raises:
        CommandLabelError: atom counts differ or some input atom has no match.
    """
    n = len(species_in)
    if len(species_out) != n:
        raise CommandLabelError(f"the output has {len(species_out)} atoms, the input {n}")
    if list(species_in) == list(species_out):
        d = frac_out - frac_in
        d -= np.round(d)
        if np.all(np.linalg.norm(d @ cell, axis=1) < tol):
            return np.arange(n)
    perm = np.empty(n, dtype=int)
    free = np.ones(n, dtype=bool)
    sp_out = np.asarray(species_out)
    for i in range(n):
        cand = np.flatnonzero(free & (sp_out == species_in[i]))
        d = frac_out[cand] - frac_in[i]
        d -= np.round(d)
        dist = np.linalg.norm(d @ cell, axis=1)
        if not cand.size or dist.min() >= tol:
            raise CommandLabelError(f"input atom {i} ({species_in[i]}) has no output atom within {tol} Å "
                                    "(the command must label the structure it was given, not move its atoms)")
        j = cand[int(np.argmin(dist))]
        perm[i] = j
        free[j] = False
    return perm


def _write_input(atoms, fmt: str, path: Path) -> None:
    import dpdata

    if fmt in ("extxyz",):  # dpdata writes extxyz for labeled systems only
        import ase.io

        ase.io.write(str(path), atoms, format="extxyz")
        return
    dpdata.System(atoms, fmt="ase/structure").to(fmt, str(path))


class CommandLabeler(Labeler):
    """Labels by running a command on a structure file; see the module docstring for settings."""

    kind = "command"

    def __init__(self, settings: Mapping[str, Any]):
        self.settings = _jsonable(dict(settings))
        self.code = "command"
        self.version = _package_version("firegen")
        self._hash = settings_hash(self.kind, self.settings)

    @property
    def settings_hash(self) -> str:
        return self._hash

    def __repr__(self) -> str:
        return f"CommandLabeler(command={self.settings['command']!r})"

    def label(self, atoms) -> Label:
        """Label one structure; raises :class:`CommandLabelError` (or
        :class:`~firegen.workflows.steps.label.NonFiniteLabelError`) on failure."""
        s = self.settings
        t0 = time.perf_counter()
        work = Path(tempfile.mkdtemp(prefix="firegen-command-", dir=s.get("workdir")))
        try:
            for src in s.get("forward_files") or []:
                shutil.copy2(src, work / Path(src).name)
            _write_input(atoms, s["input_fmt"], work / s["input_fn"])
            try:
                proc = subprocess.run(s["command"], shell=True, cwd=work, capture_output=True, text=True,
                                      timeout=s.get("walltime"))
            except subprocess.TimeoutExpired as exc:
                raise CommandLabelError(f"command {s['command']!r} exceeded walltime {s['walltime']} s in {work}; "
                                        f"stderr tail: {log_tail(exc.stderr, None, _TAIL_CHARS)}") from None
            if proc.returncode != 0:
                raise CommandLabelError(f"command {s['command']!r} exited with code {proc.returncode} in {work}; "
                                        f"stderr tail: {log_tail(proc.stderr, None, _TAIL_CHARS) or '(empty)'}")
            label = self._read(atoms, work, proc.stderr, t0)
        except (CommandLabelError, NonFiniteLabelError):
            raise  # their messages name the work folder, which is kept for inspection
        except Exception as exc:  # writing the input, copying forward_files
            raise CommandLabelError(f"{type(exc).__name__}: {exc} (work folder kept: {work})") from exc
        if not s.get("keep_files"):
            shutil.rmtree(work, ignore_errors=True)
        return label

    def _read(self, atoms, work: Path, stderr: str, t0: float) -> Label:
        import dpdata

        s = self.settings
        out = work / s["output_fn"]
        if not out.exists():
            raise CommandLabelError(f"command {s['command']!r} wrote no {s['output_fn']} in {work}; "
                                    f"stderr tail: {log_tail(stderr, None, _TAIL_CHARS) or '(empty)'}")
        try:
            with warnings.catch_warnings():  # ASE's extxyz carries per-atom energies dpdata does not use
                warnings.filterwarnings("ignore", message="Skipping unknown per-atom property")
                system = dpdata.LabeledSystem(str(out), fmt=s["output_fmt"])
        except Exception as exc:
            raise CommandLabelError(f"cannot read {out} as dpdata '{s['output_fmt']}' ({type(exc).__name__}: "
                                    f"{exc}); stderr tail: {log_tail(stderr, None, _TAIL_CHARS) or '(empty)'}") from exc
        if len(system) != 1:
            raise CommandLabelError(f"{out} holds {len(system)} labeled frames; the command must write exactly one")
        cell_in = np.asarray(atoms.cell.array, dtype=float)
        cell_out = np.asarray(system["cells"][0], dtype=float)
        if not np.allclose(cell_in, cell_out, atol=MATCH_TOLERANCE):
            raise CommandLabelError(f"the cell in {out} differs from the input cell (rotated or strained?): "
                                    f"{cell_out.tolist()} vs {cell_in.tolist()}")
        names = system["atom_names"]
        species_out = [names[t] for t in system["atom_types"]]
        inv = np.linalg.inv(cell_in)
        perm = match_atoms(atoms.get_chemical_symbols(), atoms.positions @ inv, species_out,
                           np.asarray(system["coords"][0]) @ inv, cell_in)
        energy = float(system["energies"][0])
        forces = np.asarray(system["forces"][0], dtype=float)[perm]
        virial = np.asarray(system["virials"][0], dtype=float).reshape(3, 3) if system.has_virial() else None
        bad = [name for name, value in (("energy", energy), ("forces", forces), ("virial", virial))
               if value is not None and not np.isfinite(value).all()]
        if bad:
            raise NonFiniteLabelError(f"command {s['command']!r} returned non-finite {', '.join(bad)} in {out}")
        return Label(energy=energy, forces=forces, virial=virial, code=self.code, version=self.version,
                     settings=dict(self.settings), settings_hash=self._hash, walltime=time.perf_counter() - t0,
                     host=_HOST, kind=self.kind)


@register_labeler("command")
def command_labeler(settings: dict) -> CommandLabeler:
    """The ``command`` labeler (DP-GEN ``fp_style: custom``); settings in the module docstring."""
    import dpdata
    from dpdata.format import Format

    kind = "command"
    _check_keys(kind, settings, _ALLOWED)
    missing = [k for k in _REQUIRED if not settings.get(k)]
    if missing:
        raise ValueError(f"labeler 'command': setting(s) {', '.join(map(repr, missing))} missing; give "
                         "command, input_fmt, input_fn, output_fmt and output_fn (DP-GEN custom fp_params)")
    for name in _REQUIRED:
        if not isinstance(settings[name], str):
            raise ValueError(f"labeler 'command': setting {name!r} must be text, got {settings[name]!r}")
    formats = Format.get_formats()
    for name in ("input_fmt", "output_fmt"):
        fmt = settings[name]
        if fmt not in formats and fmt != "extxyz":
            raise ValueError(f"labeler 'command': setting {name!r} = {fmt!r} is not a dpdata format "
                             f"(dpdata {dpdata.__version__}); e.g. vasp/poscar, lammps/lmp, extxyz, deepmd/npy")
    if settings["input_fmt"] != "extxyz" and formats[settings["input_fmt"]].to_system is Format.to_system:
        raise ValueError(f"labeler 'command': dpdata cannot write input_fmt {settings['input_fmt']!r}; "
                         "use one dpdata writes (vasp/poscar, lammps/lmp, xyz, deepmd/npy) or extxyz")
    if formats[settings["output_fmt"]].from_labeled_system is Format.from_labeled_system:
        raise ValueError(f"labeler 'command': dpdata cannot read labels from output_fmt "
                         f"{settings['output_fmt']!r}; use a labeled format (extxyz, vasp/outcar, qe/pw/scf, ...)")
    resolved = {k: settings[k] for k in _REQUIRED}
    walltime = settings.get("walltime")
    resolved["walltime"] = None if walltime is None else _as_float(kind, "walltime", walltime, positive=True)
    forward = settings.get("forward_files") or []
    if isinstance(forward, str) or not all(isinstance(f, str) for f in forward):
        raise ValueError(f"labeler 'command': setting 'forward_files' must be a list of paths, got {forward!r}")
    for f in forward:
        if not Path(f).is_absolute() or not Path(f).is_file():
            raise ValueError(f"labeler 'command': forward_files entry {f!r} must be an existing file, "
                             "given by its absolute path")
    resolved["forward_files"] = list(forward)
    workdir = settings.get("workdir")
    if workdir is not None and not isinstance(workdir, str):
        raise ValueError(f"labeler 'command': setting 'workdir' must be a folder path, got {workdir!r}")
    resolved["workdir"] = workdir
    resolved["keep_files"] = _as_bool(kind, "keep_files", settings.get("keep_files", False))
    return CommandLabeler(resolved)
