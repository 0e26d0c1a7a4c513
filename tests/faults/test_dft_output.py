"""Truncated and corrupted DFT output (issue 20, item 1): a CP2K or Quantum ESPRESSO run whose output is cut short
or garbled is quarantined with the reason (``label_failed``, the reason in ``label_attempts``), never stored as a
label.

Each case runs the real code (Debian's cp2k under custodian, pw.x) through firegen's labeler inside a real label
batch (:func:`firegen.workflows.jobs.label.label_batch` on the session's FerretDB). The labeler's ``command``
setting names a wrapper that runs the real code and then hands its output on as the fault leaves it: cut at a
given line (a run or a file system interrupted while writing), a number overwritten by Fortran's overflow stars or
by text, a block of NUL bytes (the zero-filled pages a node crash leaves in a file). The exit code is the code's
own. What reads the output is the labeler's own parsers (custodian's validator, pymatgen, dpdata); a control case
hands the output on intact and must be labeled, so a broken wrapper cannot pass for a quarantine.

Numbers garbled into other valid numbers (a flipped digit) cannot be told from a real result by any reader; they
are not tried.
"""

from __future__ import annotations

import shutil
import stat
import sys
from pathlib import Path

import pytest
from ase import Atoms
from ase.build import bulk

from fault_helpers import label_figures, record_outcome
from firegen.campaign.config import load_config
from firegen.db.repository import ResultsStore
from firegen.workflows.jobs.label import label_batch

ROOT = Path(__file__).resolve().parents[2]
PSEUDO_DIR = Path("/usr/share/espresso/pseudo")
SI_UPF = "Si.pz-vbc.UPF"
CP2K = shutil.which("cp2k.psmp") or shutil.which("cp2k")
PW = shutil.which("pw.x")

# cheap settings of tests/test_label_cp2k.py and tests/test_label_qe.py: the plumbing, not converged physics
CP2K_SETTINGS = {"cutoff": 200, "rel_cutoff": 30, "input": {"FORCE_EVAL": {"DFT": {"QS": {"EPS_DEFAULT": 1e-10}}}}}
QE_SETTINGS = {"pseudo_dir": str(PSEUDO_DIR), "pseudopotentials": {"Si": SI_UPF}, "ecutwfc": 30.0,
               "kpoints": [2, 2, 2]}

# where each code's blocks start: energy, forces (the header line), stress
MARKS = {"cp2k": ("ENERGY| Total FORCE_EVAL", " # Atom   Kind", "STRESS| Analytical stress tensor"),
         "qe": ("!    total energy", "Forces acting on atoms", "total   stress")}

# The fault applied to the code's output, run by the wrapper (argv: output file, code, variant); prints the result.
CORRUPT = r'''
import re, sys
path, code, variant = sys.argv[1:4]
text = open(path, errors="replace").read()
lines = text.splitlines(keepends=True)
marks = %r[code]
def at(mark):
    return next(i for i, line in enumerate(lines) if mark in line)
energy, forces, stress = (at(m) for m in marks)
first_force = forces + (2 if code == "qe" else 1)  # QE: a blank line after the header; CP2K: the first atom next
def cut(i):
    return "".join(lines[:i])
def replace(i, line):
    return "".join(lines[:i]) + line + "".join(lines[i + 1:])
def nul(i, n):
    start, size = len(cut(i)), len("".join(lines[i:i + n]))
    return text[:start] + "\0" * size + text[start + size:]
last_number = r"-?\d+\.\d+(?:E[-+]\d+)?(\s*)$"
out = {
    "intact": lambda: text,
    "cut_before_energy": lambda: cut(energy),
    "cut_in_forces": lambda: cut(first_force + 1) + lines[first_force + 1][:25],
    "cut_before_stress": lambda: cut(stress),
    "cut_after_stress": lambda: cut(stress + 6),
    "force_overflow_stars": lambda: replace(first_force, re.sub(last_number, r"***************\1", lines[first_force])),
    "energy_garbled": lambda: replace(energy, re.sub(r"(\d)\.(\d)", r"\1.x\2", lines[energy], count=1)),
    "nul_block_over_forces": lambda: nul(forces, 4),
    "nul_block_over_stress": lambda: nul(stress, 5),
}[variant]()
sys.stdout.write(out)
''' % (MARKS,)

WRAPPER = """#!/bin/sh
# the real code, then its output as the fault leaves it
"{exe}" "$@" > real.out 2> real.err
rc=$?
"{python}" "{corrupt}" real.out {code} {variant}
cat real.err >&2
exit $rc
"""

# variant -> a phrase the stored reason must hold, per code. CP2K's output is read first by custodian's
# validator (the run must say PROGRAM ENDED and its SCF converged), pw.x's by the labeler (convergence achieved,
# JOB DONE.), then by the parsers.
EXPECTED = {
    "cp2k": {
        "cut_before_energy": "ValidationError",
        "cut_in_forces": "ValidationError",
        "cut_before_stress": "ValidationError",
        "force_overflow_stars": "cut short or corrupted",
        "energy_garbled": "cut short or corrupted",
        "nul_block_over_forces": "cut short or corrupted",
        "nul_block_over_stress": "no stress tensor",  # PROGRAM ENDED is intact: this one was stored as a label
    },
    "qe": {
        "cut_before_energy": "without a converged SCF",
        "cut_in_forces": "cut short",
        "cut_before_stress": "cut short",  # was stored as a label without its virial
        "cut_after_stress": "ends before 'JOB DONE.'",  # was stored as a label
        "force_overflow_stars": "cut short or corrupted",
        "energy_garbled": "cut short or corrupted",
        "nul_block_over_forces": "cut short or corrupted",
        "nul_block_over_stress": "no stress tensor",  # JOB DONE. is intact: this one was stored without its virial
    },
}


def quarantine_figures(db, campaign: str) -> dict:
    """:func:`label_figures`, with the configurations quarantined on purpose (``label_failed``: no valid label
    exists for them) counted as ``quarantined`` instead of lost."""
    figures = label_figures(db, campaign)
    quarantined = db.configurations.count_documents({"campaign": campaign, "status": "label_failed"})
    return {**figures, "labels_lost": figures["labels_lost"] - quarantined, "quarantined": quarantined}


def na3ocl() -> Atoms:
    """The 5-atom anti-perovskite cell of tests/test_label_cp2k.py, rattled so that the forces are not zero."""
    atoms = Atoms("ClONa3", scaled_positions=[[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]],
                  cell=[4.5] * 3, pbc=True)
    atoms.rattle(0.02, seed=3)
    return atoms


def si2() -> Atoms:
    atoms = bulk("Si", "diamond", a=5.43)
    atoms.rattle(0.05, seed=1)
    return atoms


def _have(code: str) -> bool:
    if code == "cp2k":
        return CP2K is not None
    return PW is not None and (PSEUDO_DIR / SI_UPF).is_file()


def _labeler(tmp_path: Path, code: str, variant: str) -> dict:
    corrupt = tmp_path / "corrupt.py"
    corrupt.write_text(CORRUPT)
    wrapper = tmp_path / f"{code}-{variant}.sh"
    wrapper.write_text(WRAPPER.format(exe=CP2K if code == "cp2k" else PW, python=sys.executable, corrupt=corrupt,
                                      code=code, variant=variant))
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    base = CP2K_SETTINGS if code == "cp2k" else QE_SETTINGS
    return {"kind": code, "settings": {**base, "command": str(wrapper), "workdir": str(tmp_path / "work")}}


def _label_once(mongo_db, tmp_path: Path, code: str, variant: str) -> tuple[ResultsStore, dict, object]:
    """One configuration labeled by one label batch with the wrapped code; returns the store, its document after
    the batch and the batch's outcome."""
    from campaign_helpers import small_cu_config

    cfg = load_config(small_cu_config(tmp_path, "dft-output"))
    store = ResultsStore(mongo_db)
    store.init()
    store.create_campaign(cfg.name, cfg.frozen(), ["Cl", "Na", "O", "Si"])
    atoms = na3ocl() if code == "cp2k" else si2()
    config_id, _ = store.add_atoms(cfg.name, atoms, {"kind": "init"}, status="selected")
    outcome = label_batch(store, cfg, [config_id], fw_id=1, labeler_override=_labeler(tmp_path, code, variant))
    return store, mongo_db.configurations.find_one({"_id": config_id}), outcome


DEFAULT_CASES = [("cp2k", "nul_block_over_stress"), ("qe", "cut_before_stress")]
"""The two faults that were stored as labels before (without their virial): in the default run."""
SLOW_CASES = [(code, variant) for code in EXPECTED for variant in EXPECTED[code] if (code, variant) not in DEFAULT_CASES]


@pytest.mark.parametrize("code", ["cp2k", "qe"])
def test_intact_output_through_the_wrapper_is_labeled(mongo_db, tmp_path, code):
    """The control: the same route with the output handed on intact stores the label (once)."""
    if not _have(code):
        pytest.skip(f"needs the real {code}")
    _, doc, outcome = _label_once(mongo_db, tmp_path, code, "intact")
    assert (outcome.labeled, outcome.failed) == (1, 0), doc.get("label_attempts")
    assert doc["status"] == "labeled" and doc["label_writes"] == 1 and doc["label"]["virial"] is not None


def _quarantined(mongo_db, tmp_path, code, variant):
    if not _have(code):
        pytest.skip(f"needs the real {code}")
    _, doc, outcome = _label_once(mongo_db, tmp_path, code, variant)
    assert (outcome.labeled, outcome.failed) == (0, 1), doc.get("label")
    assert doc["status"] == "label_failed" and doc.get("label") is None and not doc.get("label_writes")
    (attempt,) = doc["label_attempts"]
    assert EXPECTED[code][variant] in attempt["reason"], attempt["reason"]
    assert attempt["code"] in ("cp2k", "quantum-espresso") and attempt["fw_id"] == 1
    kept = Path(attempt["details"]["workdir"])  # the work folder is kept for a person to look at
    assert (kept / ("cp2k.out" if code == "cp2k" else "pw.out")).is_file()
    figures = quarantine_figures(mongo_db, "dft-output")
    assert figures["labeled"] == 0 and figures["labels_duplicated"] == 0 and figures["labels_lost"] == 0
    record_outcome(f"dft output {code} {variant}", True, figures,
                   f"quarantined (label_failed): {attempt['reason'][:160]}")


@pytest.mark.parametrize("code, variant", DEFAULT_CASES, ids=[f"{c}-{v}" for c, v in DEFAULT_CASES])
def test_output_without_its_stress_is_not_a_label(mongo_db, tmp_path, code, variant):
    _quarantined(mongo_db, tmp_path, code, variant)


@pytest.mark.slow
@pytest.mark.parametrize("code, variant", SLOW_CASES, ids=[f"{c}-{v}" for c, v in SLOW_CASES])
def test_cut_short_or_garbled_output_is_quarantined_with_the_reason(mongo_db, tmp_path, code, variant):
    _quarantined(mongo_db, tmp_path, code, variant)
