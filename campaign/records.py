"""What the campaign's steps hand back, as typed records (beside :class:`~firegen.campaign.convergence.Decision`).

Each record is what one step produces and what the database keeps of it: a label batch's
:class:`LabelOutcome`, the snapshot gate's :class:`GateOutcome`, an exploration's :class:`ExplorationSummary` (stored on its iteration under
``explorations.<task key>``), a committee member's :class:`TrainingRecord` (a ``models`` document,
less its file) and the :class:`IterationRecord` (an ``iterations`` document). The server-side
schema of ``iterations`` and ``models`` is generated from these definitions
(:func:`firegen.db.bson_schema.bson_schema`), so a field is declared once.

Ids (``ObjectId``) are typed :data:`Ref`; units are in the field names or docstrings (s, eV, eV/Å).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Annotated, Any

Ref = Annotated[Any, "objectId"]
"""A document id (a ``bson.ObjectId``); the domain does not import the database driver."""

CAMPAIGN_STATUSES = ("queued", "running", "converged", "done", "max_iterations", "failed", "stopped")
"""A ``campaigns`` document's ``status``."""
CAMPAIGN_ENDED = frozenset(CAMPAIGN_STATUSES) - {"queued", "running"}
"""The statuses of a campaign that will not go on by itself (its Fireworks may still be finishing)."""


def _known(cls, doc: dict) -> dict:
    names = {f.name for f in fields(cls)}
    return {k: v for k, v in doc.items() if k in names}


@dataclass(frozen=True)
class LabelOutcome:
    """What one label batch did.

    Attributes:
        labeled: labels stored by this batch (a configuration labeled before is not counted again).
        failed: configurations quarantined (``label_failed``, with the reason).
        seconds: the labeler's wall time over the batch (s).
        skipped: configurations not labeled because the newest committee, re-scoring them before the batch
            ran, found them below the trust level f_lo (asynchronous campaigns).
    """

    labeled: int = 0
    failed: int = 0
    seconds: float = 0.0
    skipped: int = 0

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class LabelTally:
    """The labels of the configurations one iteration picked (``labels`` of an iteration; the campaign's
    ``initial_labels`` for the initial data), kept as label Fireworks store them.

    Attributes:
        labeled: configurations labeled.
        failed: configurations whose label failed and that are not labeled since (``label_failed``).
    """

    labeled: int = 0
    failed: int = 0

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class LabelFailure:
    """One failed label attempt, as an iteration lists it (``label_failures``).

    Attributes:
        config_id: the configuration.
        reason: the labeler's one-line reason.
        error_type: the labeler's error class, when it said.
        fw_id: the label Firework that tried.
        at: when (UTC).
    """

    config_id: Ref
    reason: str
    error_type: str | None = None
    fw_id: int | None = None
    at: Any = None

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class GateOutcome:
    """What the gate decided for one iteration.

    Attributes:
        iteration: the iteration about to be trained.
        snapshot_id: its dataset snapshot (as text); None when the campaign stopped.
        size: labeled configurations in the snapshot (0 when stopped).
        failed: failed labels among those the policy judged; None when the snapshot existed already
            (a rerun of the gate, or a train Firework queued before the gate).
        attempted: labels attempted among those (failed + labeled); None as for ``failed``.
        stop_reason: why the campaign stopped (one sentence with the fix), or None.
    """

    iteration: int
    snapshot_id: str | None
    size: int
    failed: int | None = None
    attempted: int | None = None
    stop_reason: str | None = None

    @property
    def passed(self) -> bool:
        return self.stop_reason is None

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class FrameCounts:
    """Frames of one or more trajectories by model deviation: below ``f_lo`` (accurate), in
    ``[f_lo, f_hi)`` (candidate), at or above ``f_hi`` or cut as unphysical (failed)."""

    accurate: int = 0
    candidate: int = 0
    failed: int = 0
    total: int = 0

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class ExplorationSummary:
    """What one exploration (system, condition) of an iteration found.

    Attributes:
        system: the system explored.
        condition: the MD condition run (``MDCondition.as_dict()``: K, bar, fs, ps).
        engine: ``lammps`` or ``ase``.
        accurate, candidate, failed, total: frame counts (see :class:`FrameCounts`).
        new_candidates: candidates stored for the first time (not seen by earlier explorations).
        md_seconds: the MD's wall time (s).
        max_devi_f_edges: histogram bin edges of the max force deviation (eV/Å), trust levels included.
        max_devi_f_hist: frames per bin.
        cut_at_frame: first frame of an unphysical stretch (later frames count as failed), or None.
        cut_reason: why the trajectory was cut, or None.
    """

    system: str
    condition: dict
    engine: str
    accurate: int
    candidate: int
    failed: int
    total: int
    new_candidates: int
    md_seconds: float
    max_devi_f_edges: list[float]
    max_devi_f_hist: list[int]
    cut_at_frame: int | None = None
    cut_reason: str | None = None

    def counts(self) -> dict:
        """The frame counts and ``new_candidates``: what the explore Firework reports."""
        return {k: getattr(self, k) for k in ("accurate", "candidate", "failed", "total", "new_candidates")}

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_doc(cls, doc: dict) -> ExplorationSummary:
        return cls(**_known(cls, doc))


@dataclass(frozen=True)
class TrainingRecord:
    """One trained committee member as ``models`` stores it (its frozen model goes to the blob store).

    Attributes:
        campaign, iteration, member: which member; unique together.
        seed: the member's training seed (:func:`~firegen.campaign.seeds.training_seed`).
        backend: deepmd-kit backend (``tf`` or ``pt``).
        dataset_id: the dataset snapshot it was trained on.
        parent: the model it was initialised from (the same member of the previous iteration, or that
            committee's best when its own was poor: ``restarted_because``), or None.
        input: the deepmd-kit ``input.json`` it was trained with (nested lists as JSON text).
        metrics: ``{"train": {...}, "validation": {...}}``: energy (eV/atom) and force (eV/Å) RMSE.
        train_seconds: ``dp train`` + ``dp freeze`` wall time (s).
        n_train, n_validation: frames trained on and held out.
        restarted_because: why a member that would have been warm-started from its own previous model was not, and
            what it started from instead (``committee.warm_start.poor_above``), or None.
    """

    campaign: str
    iteration: int
    member: int
    seed: int
    backend: str
    dataset_id: Ref
    parent: Ref | None = None
    input: dict | None = None
    metrics: dict | None = None
    train_seconds: float | None = None
    n_train: int | None = None
    n_validation: int | None = None
    file_id: Ref | None = None
    sha256: str | None = None
    restarted_because: str | None = None

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class HeldOutPredictions:
    """A committee member's predictions on its held-out frames against their labels: the points of its
    parity plots (a ``heldout_predictions`` document, whose ``_id`` is the model's).

    Flat arrays (FerretDB stores no nested ones), one entry per frame for energies and per force
    component for forces; forces are every ``force_stride``-th component of the held-out frames.

    Attributes:
        campaign, iteration, member: the model.
        energy_label, energy_model: energy per atom of each held-out frame (eV/atom).
        force_label, force_model: force components (eV/Å).
        force_stride: one component of this many is kept.
    """

    campaign: str
    iteration: int
    member: int
    energy_label: list[float]
    energy_model: list[float]
    force_label: list[float]
    force_model: list[float]
    force_stride: int = 1

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class IterationRecord:
    """One iteration as ``iterations`` stores it; every field but the key fills in as the iteration runs.

    Attributes:
        campaign, index: the key (index 0 is the first iteration).
        stage: the stage it explores; ``stage_name`` its name.
        ensemble, temperatures (K), pressures (bar), nsteps, protocols: what the table prints.
        explore: task keys it explores (``"<system>|c<k>"``).
        status: ``running`` or ``done``.
        model_ids: its committee.
        explorations: per task key, the :class:`ExplorationSummary`.
        counts, ratios: frame counts over all its explorations, and their fractions.
        selected: candidates picked for labeling.
        decision: the convergence decision (:class:`~firegen.campaign.convergence.Decision` as a dict).
        timings: seconds spent per kind of work (``train_s``, ``explore_s``, ``label_s``, ``select_s``).
        labels: the labels of the configurations it picked (:class:`LabelTally`).
        label_failures: every failed label attempt on them (:class:`LabelFailure`), oldest first.
        calibration: its committee's force deviation against its force error on its validation frames (``frames``,
            ``devi_f``, ``max_err_f`` in eV/Å, ``ratio``; ``warning`` when the ratio is below
            ``committee.warn_deviation_below``), or ``skipped`` and why.
        budget: what ``selection.budget`` decided: ``cpu_hours`` allowed, ``estimated_cpu_hours`` spent, ``picked``,
            ``over_budget``, the ``cost_model`` (``a``, ``p``, ``fitted``, ``labels``); or ``skipped`` and why.
    """

    campaign: str
    index: int
    stage: int
    stage_name: str | None = None
    ensemble: str | None = None
    temperatures: list[float] | None = None
    pressures: list[float] | None = None
    nsteps: int | None = None
    protocols: list[str] | None = None
    explore: list[str] | None = None
    status: str | None = None
    model_ids: list[Ref] = field(default_factory=list)
    explorations: dict[str, ExplorationSummary] | None = None
    counts: FrameCounts | None = None
    ratios: dict[str, float] | None = None
    selected: int | None = None
    decision: dict | None = None
    timings: dict[str, float] | None = None
    labels: LabelTally | None = None
    label_failures: list[LabelFailure] | None = None
    calibration: dict | None = None
    budget: dict | None = None
