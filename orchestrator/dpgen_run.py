"""A DP-GEN run directory as firegen initial data: labeled iterations, where to resume.

DP-GEN (``dpgen run param.json machine.json``) works in one folder::

    record.dpgen                    one line "ITER TASK" per finished step (TASK 0..8)
    iter.000000/00.train/ ...
    iter.000000/01.model_devi/ ...
    iter.000000/02.fp/data.000      labeled frames of sys_idx 0, written by post_fp (TASK 8):
                                    deepmd/raw + deepmd/npy in one folder, or one sub-folder
                                    per formula (dpdata MultiSystems, e.g. fp_style custom)

An iteration counts as done when ``record.dpgen`` records its ``post_fp`` (task 8). Its
``02.fp/data.*`` folders are imported (with provenance "DP-GEN iteration k"); data of an
iteration DP-GEN did not finish are left out, so that firegen redoes that exploration.
DP-GEN runs ``model_devi_jobs[k]`` in iteration ``k``: firegen resumes with the first job
whose iteration is not done (:func:`resume_job`).

Units: the data are dpdata systems (energies eV, forces eV/Å, virials eV, lengths Å).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from firegen.campaign.labeled_data import system_folders

__all__ = ["POST_FP_TASK", "DPGenRunData", "done_iterations", "read_record", "resume_job", "run_data"]

#: DP-GEN's step number of ``post_fp``, the last of the nine steps (0..8) of an iteration.
POST_FP_TASK = 8
_ITER = re.compile(r"^iter\.(\d{6})$")


@dataclass(frozen=True)
class DPGenRunData:
    """One labeled data folder of a DP-GEN run.

    Attributes:
        path: absolute path of ``iter.XXXXXX/02.fp/data.YYY``.
        iteration: the DP-GEN iteration k (``iter.k``).
        system_index: DP-GEN's system index (the ``YYY`` of ``data.YYY``, a ``sys_idx`` value).
    """

    path: Path
    iteration: int
    system_index: int


def read_record(run_dir: str | os.PathLike) -> list[tuple[int, int]]:
    """The ``(iteration, task)`` pairs of ``record.dpgen``, in file order ([] when absent).

    Raises:
        ValueError: a line that is not two integers (DP-GEN itself refuses blank lines).
    """
    path = Path(run_dir) / "record.dpgen"
    if not path.is_file():
        return []
    out = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        parts = line.split()
        if len(parts) != 2 or not all(p.lstrip("-").isdigit() for p in parts):
            raise ValueError(f"{path}: line {n} is {line!r}, not 'ITERATION TASK'. Fix: repair or remove "
                             "that line (DP-GEN writes one 'ITER TASK' pair per line)")
        out.append((int(parts[0]), int(parts[1])))
    return out


def done_iterations(record: list[tuple[int, int]]) -> set[int]:
    """Iterations whose ``post_fp`` step is recorded."""
    return {it for it, task in record if task == POST_FP_TASK}


def resume_job(record: list[tuple[int, int]]) -> int:
    """Index of the first ``model_devi_jobs`` entry DP-GEN has not finished.

    That is one past the last iteration whose ``post_fp`` is recorded (0 for an empty record):
    a half-done iteration is redone by firegen from its exploration on.
    """
    done = done_iterations(record)
    return max(done) + 1 if done else 0


def run_data(run_dir: str | os.PathLike, before: int | None = None) -> list[DPGenRunData]:
    """The ``iter.*/02.fp/data.*`` folders of iterations done in ``record.dpgen``, in order.

    Args:
        run_dir: the DP-GEN working folder (holding ``record.dpgen`` and ``iter.*``).
        before: keep only iterations below this index (default: :func:`resume_job`).
    """
    run_dir = Path(run_dir).resolve()
    record = read_record(run_dir)
    done = done_iterations(record)
    limit = resume_job(record) if before is None else before
    out = []
    for it_dir in sorted(run_dir.glob("iter.*")):
        m = _ITER.match(it_dir.name)
        if not m or int(m.group(1)) not in done or int(m.group(1)) >= limit:
            continue
        for data in sorted((it_dir / "02.fp").glob("data.*")):
            suffix = data.name.split(".", 1)[1]
            if data.is_dir() and suffix.isdigit() and system_folders(data):
                out.append(DPGenRunData(data, int(m.group(1)), int(suffix)))
    return out
