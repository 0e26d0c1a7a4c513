"""The final model's own steps: ``dp compress``, and validation on held-out frames per group of frames.

Pure science, no FireWorks and no database. Training and freezing are the committee's
(:func:`firegen.workflows.steps.train.train_model`); what the final model adds:

* :func:`compress_model` runs ``dp --tf compress`` (tabulated embedding nets: same predictions within the
  table's accuracy, several times faster MD). A failure is returned as a reason, not raised: the
  uncompressed model is still a valid result.
* :func:`validation_metrics` gives energy (eV/atom), force (eV/Å) and virial (eV/atom) RMSE and MAE of a
  frozen model on labeled ``deepmd/npy`` systems, mirroring ``dp test`` (energy and virial per atom,
  forces per Cartesian component), for one group of frames (a system, a condition).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from firegen.workflows.steps import log_tail
from firegen.workflows.steps.train import _thread_env, find_dp

#: Name of the compressed model written by :func:`compress_model`.
COMPRESSED_MODEL_NAME = "frozen_model_compressed.pb"


def compress_model(frozen: Path, workdir: Path, dp: str | None = None, threads: int | None = None,
                   timeout: float | None = None) -> tuple[Path | None, str | None]:
    """``dp --tf compress -i <frozen> -o frozen_model_compressed.pb`` in ``workdir``.

    Returns:
        ``(compressed model, None)``, or ``(None, reason)`` when compression failed (the reason ends with
        the tail of ``compress.log``).
    """
    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    out = workdir / COMPRESSED_MODEL_NAME
    out.unlink(missing_ok=True)
    log = workdir / "compress.log"
    cmd = [dp or find_dp(), "--tf", "compress", "-i", str(Path(frozen).resolve()), "-o", out.name]
    try:
        with log.open("w") as fh:
            proc = subprocess.run(cmd, cwd=workdir, stdout=fh, stderr=subprocess.STDOUT, env=_thread_env(threads),
                                  timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, f"dp compress could not run: {exc}"
    if proc.returncode != 0 or not out.is_file():
        tail = " | ".join(log_tail(log, n_lines=5).splitlines())
        return None, f"dp compress failed with exit code {proc.returncode}: {tail}"
    return out, None


def _rmse(parts: list[np.ndarray]) -> float:
    return float(np.sqrt(np.mean(np.concatenate(parts) ** 2))) if parts else float("nan")


def _mae(parts: list[np.ndarray]) -> float:
    return float(np.mean(np.abs(np.concatenate(parts)))) if parts else float("nan")


def validation_metrics(model: Path, systems: Sequence[str | os.PathLike], type_map: Sequence[str]) -> dict:
    """RMSE and MAE of energy (eV/atom), forces (eV/Å) and, where every frame has one, virial (eV/atom).

    Args:
        model: a frozen (or compressed) model.
        systems: labeled ``deepmd/npy`` folders (one group of frames).
        type_map: the data's element order (matched to the model's by name).

    Returns:
        ``n_frames``, ``rmse_e_per_atom``, ``mae_e_per_atom``, ``rmse_f``, ``mae_f`` and, with virials,
        ``rmse_v_per_atom``, ``mae_v_per_atom``.
    """
    import dpdata  # 1.4 s: only where data are read
    from deepmd.infer import DeepPot  # TensorFlow: only where a model is evaluated

    dp_model = DeepPot(str(Path(model).resolve()))
    model_types = list(dp_model.get_type_map())
    e_err, f_err, v_err = [], [], []
    have_virials, n_frames = True, 0
    for path in systems:
        system = dpdata.LabeledSystem(str(path), fmt="deepmd/npy", type_map=list(type_map))
        nf = system.get_nframes()
        if nf == 0:
            continue
        names = system["atom_names"]
        atype = np.array([model_types.index(names[t]) for t in system["atom_types"]])
        nat = len(atype)
        energy, force, virial = dp_model.eval(system["coords"].reshape(nf, -1), system["cells"].reshape(nf, 9),
                                              atype)[:3]
        e_err.append((energy.reshape(nf) - system["energies"].reshape(nf)) / nat)
        f_err.append((force.reshape(nf, -1) - system["forces"].reshape(nf, -1)).ravel())
        if "virials" in system.data:
            v_err.append((virial.reshape(nf, 9) - system["virials"].reshape(nf, 9)).ravel() / nat)
        else:
            have_virials = False
        n_frames += nf
    out = {"n_frames": n_frames, "rmse_e_per_atom": _rmse(e_err), "mae_e_per_atom": _mae(e_err),
           "rmse_f": _rmse(f_err), "mae_f": _mae(f_err)}
    if have_virials and v_err:
        out.update(rmse_v_per_atom=_rmse(v_err), mae_v_per_atom=_mae(v_err))
    return out
