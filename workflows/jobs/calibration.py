"""Whether an iteration's committee can still tell its errors: its force deviation against its force error on the
validation frames of the snapshot it trained on (``committee.warn_deviation_below``)."""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

from firegen.campaign.config import CampaignConfig
from firegen.campaign.labeled_data import split_train_validation, write_deepmd_npy
from firegen.db.repository import ResultsStore
from firegen.workflows.jobs.train import snapshot_documents
from firegen.workflows.steps.evaluate import Calibration, committee_calibration

log = logging.getLogger(__name__)

#: Fewer validation frames than this are scored and shown but not flagged: a mean of per-frame maxima over 2 or 3
#: frames is noise (the EMT demo's first committee, four members trained from scratch, read 0.15 on 2 frames).
MIN_FRAMES_TO_FLAG = 5


def check_committee(store: ResultsStore, cfg: CampaignConfig, iteration: int) -> dict | None:
    """The calibration of iteration ``iteration``'s committee (:class:`~firegen.workflows.steps.evaluate.Calibration`
    as a dict, with ``warning`` when its ratio is below ``committee.warn_deviation_below`` on at least
    :data:`MIN_FRAMES_TO_FLAG` frames), or ``{"skipped":
    why}`` when there is nothing to score it on; None when the check is off.

    The trust levels are absolute: a committee of near-copies (members warm-started from one another, say) agrees
    with itself however wrong it is, calls its frames accurate and converges a stage blind. Its validation frames
    show it: their mean max deviation falls far below their mean max error."""
    below = cfg.committee.warn_deviation_below
    if below is None:
        return None
    committee = store.trained_committee(cfg.name, iteration)
    if len(committee) < 2:
        return {"skipped": f"{len(committee)} trained member(s)"}
    _, valid = split_train_validation(snapshot_documents(store, store.get_snapshot(committee[0]["dataset_id"])))
    if not valid:
        return {"skipped": "no validation frames (too few labeled frames to hold any out)"}
    with tempfile.TemporaryDirectory(prefix="firegen-calibration-") as tmp:
        systems = write_deepmd_npy(valid, cfg.type_map, Path(tmp) / "valid")
        models = [store.blobs.fetch(m["file_id"], Path(tmp) / f"member-{m['member']}.pb") for m in committee]
        calibration = committee_calibration(models, systems, cfg.type_map)
    if calibration is None:
        return {"skipped": "no validation frames"}
    out = calibration.as_dict()
    flag = warning(calibration, below, iteration)
    if flag:
        out["warning"] = flag
        log.warning("campaign %s: %s", cfg.name, flag)
    return out


def warning(calibration: Calibration, below: float, iteration: int) -> str | None:
    """The flag of a committee whose deviation is below ``below`` times its error on at least
    :data:`MIN_FRAMES_TO_FLAG` validation frames, or None."""
    if calibration.ratio >= below or calibration.frames < MIN_FRAMES_TO_FLAG:
        return None
    return (f"iteration {iteration}: the committee's force deviation on its {calibration.frames} validation frames "
            f"is {calibration.devi_f:.3f} eV/Å against a force error of {calibration.max_err_f:.3f} eV/Å (mean "
            f"per-frame maxima; ratio {calibration.ratio:.2f} < committee.warn_deviation_below = {below}): its "
            "members agree far more than they are right, so the frames it calls accurate may not be")
