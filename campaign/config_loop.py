"""Config of the loop's own steps: the committee, the trust levels and the selection of candidates, the
convergence rule, the labeler and the exploration engine. `config.py` assembles them into `CampaignConfig`.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import model_validator

from .config_fields import Problem, _Model, fail, fx
from .config_observables import ObservableConfig


class WarmStartConfig(_Model):
    """Members of iteration i+1 start from their iteration-i models (`dp train --init-frz-model`) with a
    restarted, shorter schedule: DP-GEN's `training_reuse_*` keys."""

    enabled: bool = fx(True, desc="Warm-start members from the previous iteration's models (the first "
                       "iteration of a campaign always trains from scratch).")
    from_iteration: int = fx(1, ge=1, desc="First iteration whose members are warm-started (DP-GEN's "
                             "training_reuse_iter); earlier ones train from scratch.",
                             fix="use an iteration index of 1 or more")
    numb_steps: int | None = fx(None, gt=0, desc="Training steps of a warm-started member (DP-GEN's "
                                "training_reuse_numb_steps); null: committee.numb_steps.",
                                fix="set a positive number of steps, or null")
    start_lr: float | None = fx(None, gt=0, lt=1, desc="Learning rate a warm-started member restarts its "
                                "schedule from (DP-GEN's training_reuse_start_lr, there 1e-4); null: the "
                                "template's start_lr.", fix="use a rate such as 1.0e-4, or null")
    start_pref_e: float | None = fx(None, ge=0, desc="Energy loss prefactor at the restart (DP-GEN's "
                                    "training_reuse_start_pref_e); null: the template's. With 0.1 / 100 (earlier "
                                    "DP-GEN releases' defaults) a member's energies do not drift from the "
                                    "restart's force-dominated first steps, but its forces fit less; see "
                                    "benchmarks/README.md (label_efficiency.py) for what each costs.",
                                    fix="use a non-negative number such as 0.1, or null")
    start_pref_f: float | None = fx(None, ge=0, desc="Force loss prefactor at the restart (DP-GEN's "
                                    "training_reuse_start_pref_f); null: the template's.",
                                    fix="use a non-negative number such as 100, or null")
    scratch_every: int | None = fx(None, gt=0, desc="Train from scratch every this many iterations "
                                   "(iterations k*scratch_every); null: only the first.",
                                   fix="use a positive number of iterations, or null")
    poor_above: float | None = fx(
        1.25, gt=1, desc="A member whose previous model's training force RMSE is more than this many times the "
        "median of its committee's does not warm-start from that model (warm start keeps a member in a poor "
        "minimum, and the committee's mean prediction carries it): see poor_restart. null: every member "
        "warm-starts from its own previous model, as DP-GEN's training_reuse_* do (import-dpgen writes null). "
        "benchmarks/README.md (label_efficiency.py) measures what each choice costs in labels and in how well "
        "the committee's deviation still measures its error.",
        fix="use a ratio above 1 such as 1.25, or null")
    poor_restart: Literal["best", "best_descriptor", "scratch"] = fx(
        "best_descriptor", desc="What a member of a poor previous model (poor_above) starts from instead: "
        "`best_descriptor` (default), the previous committee's member of lowest training force RMSE with its "
        "fitting net drawn afresh from the member's own seed, warm-started as usual (it keeps that member's "
        "descriptor, its training history stays as long as its siblings', and its fitting net is its own); `best`, "
        "that member whole (its copy agrees with it, and the committee's deviation falls far below its error); "
        "`scratch`, nothing: its own new seed and as many steps as the poor model had behind it plus one warm "
        "start's.", fix="use best_descriptor, best or scratch")

    @model_validator(mode="before")
    @classmethod
    def _scratch_above(cls, data: Any) -> Any:
        """The earlier `scratch_above: r` is `poor_above: r` with `poor_restart: scratch`."""
        if isinstance(data, dict) and "scratch_above" in data:
            data = dict(data)
            if "poor_above" in data:
                fail(Problem("scratch_above", "and poor_above are both given",
                             data["scratch_above"], "use poor_above (with poor_restart: scratch) only"))
            data["poor_above"] = data.pop("scratch_above")
            data.setdefault("poor_restart", "scratch")
        return data

    def warm(self, iteration: int) -> bool:
        """Whether iteration ``iteration`` starts its members from the previous iteration's models."""
        if not self.enabled or iteration < max(1, self.from_iteration):
            return False
        return not (self.scratch_every and iteration % self.scratch_every == 0)


class CommitteeConfig(_Model):
    """The N DeePMD models trained on the same data with different seeds."""

    size: int = fx(4, ge=2, desc="Number of committee members.",
                   fix="use at least 2 models (4 is usual) so their deviation means something")
    backend: Literal["tensorflow"] = fx("tensorflow", desc="deepmd-kit backend. Only TensorFlow for now "
                                        "(`dp --tf train`, frozen .pb models that LAMMPS' deepmd plugin and "
                                        "`dp test` read); PyTorch (.pth) is not wired into training and "
                                        "exploration yet.", fix="use backend: tensorflow")
    warm_start: WarmStartConfig = fx(default_factory=WarmStartConfig,
                                     desc="Warm-started training from the previous iteration's models.")
    training: dict[str, Any] = fx(default_factory=dict,
                                  desc="deepmd-kit input.json template (model, learning_rate, "
                                  "loss, training); merged with firegen's defaults, `sel: auto` "
                                  "computed from the data.",
                                  fix="give a mapping shaped like deepmd-kit's input.json")
    numb_steps: int = fx(2000, gt=0, desc="Training steps per member and iteration.",
                         fix="set a positive number of training steps, e.g. 2000")
    warn_deviation_below: float | None = fx(
        0.15, gt=0, desc="After each iteration the committee is scored on its validation frames: its mean "
        "per-frame max force deviation (what exploration compares with the trust levels) against the mean "
        "per-frame max force error of its mean prediction (both eV/Å). Below this ratio, on 5 frames or more, the "
        "iteration is flagged in `firegen status` and on the dashboard: its members agree far more than they are "
        "right (near-copies), so frames it calls accurate may not be. Measured on benchmarks/label_efficiency.py's "
        "campaign: 0.2-1.1 for healthy committees, 0.09 for one whose members all descend from one. null: no check.",
        fix="use a ratio such as 0.15, or null")

    @model_validator(mode="before")
    @classmethod
    def _init_from_previous(cls, data: Any) -> Any:
        """The older `init_from_previous: true/false` is `warm_start: {enabled: ...}`."""
        if isinstance(data, dict) and "init_from_previous" in data:
            data = dict(data)
            flag = data.pop("init_from_previous")
            if "warm_start" in data:
                fail(Problem("init_from_previous", "and warm_start are both given", flag,
                             "use warm_start.enabled only"))
            if not isinstance(flag, bool):
                fail(Problem("init_from_previous", "must be true or false", flag, "write true or false"))
            data["warm_start"] = {"enabled": flag}
        return data

    @model_validator(mode="before")
    @classmethod
    def _steps_from_template(cls, data: Any) -> Any:
        if not isinstance(data, dict) or not isinstance(data.get("training"), dict):
            return data
        inner = data["training"].get("training")
        steps = inner.get("numb_steps") if isinstance(inner, dict) else None
        if steps is None:
            return data
        if "numb_steps" not in data:
            return {**data, "numb_steps": steps}
        if data["numb_steps"] != steps:
            fail(Problem("training.training.numb_steps",
                         f"disagrees with committee.numb_steps = {data['numb_steps']}", steps,
                         "set the number of steps in one place only (committee.numb_steps)"))
        return data


class TrustLevels(_Model):
    """Model-deviation trust levels: < lo accurate, [lo, hi) candidate, >= hi failed."""

    f_lo: float = fx(0.15, gt=0, desc="Lower force-deviation trust level (eV/Å).",
                     fix="use a positive force deviation in eV/Å, e.g. 0.15")
    f_hi: float = fx(0.35, gt=0, desc="Upper force-deviation trust level (eV/Å).",
                     fix="use a positive force deviation in eV/Å, e.g. 0.35")
    v_lo: float | None = fx(None, gt=0, desc="Optional lower virial-deviation level (eV).",
                            fix="use a positive virial deviation in eV")
    v_hi: float | None = fx(None, gt=0, desc="Optional upper virial-deviation level (eV).",
                            fix="use a positive virial deviation in eV")

    @model_validator(mode="after")
    def _ordered(self):
        probs = []
        if self.f_lo >= self.f_hi:
            probs.append(Problem("f_lo", f"must be less than f_hi = {self.f_hi}", self.f_lo,
                                 "make f_lo < f_hi, e.g. f_lo: 0.15, f_hi: 0.35 (eV/Å)"))
        if (self.v_lo is None) != (self.v_hi is None):
            name = "v_hi" if self.v_hi is None else "v_lo"
            probs.append(Problem(name, "is required when the other virial level is set",
                                 fix="give both v_lo and v_hi, or neither"))
        elif self.v_lo is not None and self.v_lo >= self.v_hi:
            probs.append(Problem("v_lo", f"must be less than v_hi = {self.v_hi}", self.v_lo,
                                 "make v_lo < v_hi"))
        if probs:
            fail(*probs)
        return self


class FingerprintConfig(_Model):
    """SOAP settings of the structure fingerprint used for deduplication and diverse selection (dscribe)."""

    r_cut: float = fx(5.0, gt=0, le=12, desc="Cutoff radius (Å).", fix="use a radius in Å such as 5.0")
    n_max: int = fx(4, ge=1, le=12, desc="Radial basis functions.", fix="use a small integer such as 4")
    l_max: int = fx(3, ge=0, le=9, desc="Highest spherical harmonic degree.", fix="use a small integer such as 3")
    sigma: float = fx(0.5, gt=0, le=2, desc="Width of the atomic Gaussians (Å).", fix="use a width in Å such as 0.5")


class DedupConfig(_Model):
    """Candidates that are near-copies of each other or of labeled/selected configurations are not labeled."""

    displacement: float | None = fx(
        0.01, gt=0, le=1, desc="Two structures are one when their fingerprints are closer than a structure's are to a "
        "copy of it with every atom moved at random by this much (Å, rms): the distance is measured on the "
        "campaign's own starting frames when it starts (a tenth of a thermal displacement at 300 K). null turns "
        "deduplication off (DP-GEN's behaviour).",
        fix="use a small displacement in Å such as 0.01, or null to turn deduplication off")
    tolerance: float | None = fx(None, gt=0, le=2, desc="A fingerprint distance to use instead of the one "
                                 "`displacement` gives (unit-length averaged SOAP vectors).",
                                 fix="use a small distance such as 2.0e-5, or null")
    across_campaigns: bool = fx(False, desc="Also treat as duplicates the configurations labeled by other "
                                "campaigns with the same type map and fingerprint settings.")

    @property
    def enabled(self) -> bool:
        return self.displacement is not None or self.tolerance is not None


class LabelBudgetConfig(_Model):
    """A per-iteration labeling budget in estimated CPU-hours, in place of (under) the frame cap: the picks are
    taken in the policy's order while their estimated cost fits. A label's cost is its wall time times the cores
    it occupies; its wall time is estimated from its atom count, t = a * natoms^p, fitted on the campaign's own
    labels."""

    cpu_hours: float | None = fx(None, gt=0, desc="Estimated CPU-hours of labels one iteration may spend; null: "
                                 "no budget, only max_per_iteration.", fix="use a positive number of hours, or null")
    cores_per_label: int = fx(1, ge=1, desc="CPU cores one label occupies (a DFT run's MPI ranks x threads): its "
                              "CPU time is its measured wall time times this.", fix="use a positive whole number")
    exponent: float = fx(3.0, gt=0, le=4, desc="p in t = a * natoms^p while the campaign's labels do not span two "
                         "atom counts (3: plane-wave and Gaussian DFT's cubic scaling); fitted once they do.",
                         fix="use a positive power such as 3")


class SelectionConfig(_Model):
    """How candidates become labeling jobs."""

    trust: TrustLevels = fx(default_factory=TrustLevels, desc="Trust levels.")
    policy: Literal["diverse", "kmeans", "random", "deviation"] = fx(
        "diverse", desc="How the capped batch is picked among the (deduplicated) candidates: `diverse` "
        "(greedy farthest-point sampling in fingerprint space, away from the labeled data, weighted by force "
        "deviation), `kmeans` (k-means in fingerprint space weighted by force deviation, one candidate nearest "
        "each centre: a batch that follows where the candidates are dense), `random` (uniform, DP-GEN's "
        "fp_task_max) or `deviation` (random, weighted by deviation).",
        fix="use diverse, kmeans, random or deviation")
    dedup: DedupConfig = fx(default_factory=DedupConfig, desc="Deduplication before labeling.")
    fingerprint: FingerprintConfig = fx(default_factory=FingerprintConfig,
                                        desc="Structure fingerprint settings (SOAP).")
    max_per_iteration: int = fx(300, gt=0, desc="Most candidates labeled per iteration.",
                                fix="set a positive cap, e.g. 300")
    budget: LabelBudgetConfig = fx(default_factory=LabelBudgetConfig,
                                   desc="Per-iteration labeling budget in estimated CPU-hours (off by default).")
    min_per_iteration: int = fx(0, ge=0, desc="Fewer candidates than this are not labeled "
                                "(the iteration counts as converged for selection).",
                                fix="use 0 or a small positive number")
    seed: int = fx(0, desc="Random seed for picking among candidates.")
    skip_when_accurate_above: float | None = fx(
        None, gt=0, le=1, desc="Label nothing in an iteration whose accurate ratio is at least this "
        "(DP-GEN's fp_accurate_threshold); null always labels.",
        fix="use a fraction such as 0.999, or null")
    soft_accurate_ratio: float | None = fx(
        None, gt=0, le=1, desc="From this accurate ratio up to skip_when_accurate_above the cap "
        "max_per_iteration shrinks linearly to 0 (DP-GEN's fp_accurate_soft_threshold); "
        "needs skip_when_accurate_above.",
        fix="use a fraction below skip_when_accurate_above, e.g. 0.99")

    @model_validator(mode="after")
    def _caps(self):
        probs = []
        if self.min_per_iteration > self.max_per_iteration:
            probs.append(Problem("min_per_iteration",
                                 f"must not exceed max_per_iteration = {self.max_per_iteration}",
                                 self.min_per_iteration, "lower min_per_iteration or raise the cap"))
        if self.soft_accurate_ratio is not None:
            if self.skip_when_accurate_above is None:
                probs.append(Problem("soft_accurate_ratio", "needs skip_when_accurate_above",
                                     self.soft_accurate_ratio,
                                     "set skip_when_accurate_above too, or remove soft_accurate_ratio"))
            elif self.soft_accurate_ratio > self.skip_when_accurate_above:
                probs.append(Problem("soft_accurate_ratio", "must not exceed skip_when_accurate_above "
                                     f"= {self.skip_when_accurate_above}", self.soft_accurate_ratio,
                                     "make soft_accurate_ratio <= skip_when_accurate_above"))
        if probs:
            fail(*probs)
        return self


class ConvergenceConfig(_Model):
    """When a stage is done; every criterion given must hold for `for_iterations` in a row."""

    accurate_ratio: float | None = fx(0.99, gt=0, le=1,
                                      desc="Converged when this fraction of frames is accurate.",
                                      fix="use a fraction such as 0.99")
    candidate_ratio: float | None = fx(None, ge=0, lt=1,
                                       desc="Converged when fewer than this fraction of frames "
                                       "are candidates.", fix="use a fraction such as 0.01")
    for_iterations: int = fx(1, gt=0, desc="Consecutive iterations that must meet the criteria.",
                             fix="use a positive number of iterations")
    observables: list[ObservableConfig] = fx(
        default_factory=list, desc="Observables (density, RDF, D at T/P) that every committee member computes "
        "on a short MD each iteration; the stage converges only when the members agree within each one's "
        "tolerance and the committee mean stopped changing since the previous iteration (see "
        "config_observables.py; cost: one MD per member per protocol per iteration).",
        fix="e.g. observables: [{property: density, temperature: 600, pressure: 1, tolerance: 0.02}]")

    @model_validator(mode="before")
    @classmethod
    def _candidate_only(cls, data: Any) -> Any:
        if isinstance(data, dict) and "candidate_ratio" in data and "accurate_ratio" not in data:
            return {**data, "accurate_ratio": None}
        return data

    @model_validator(mode="after")
    def _some_criterion(self):
        if self.accurate_ratio is None and self.candidate_ratio is None:
            fail(Problem("", "has no criterion",
                         fix="set accurate_ratio (e.g. 0.99) or candidate_ratio (e.g. 0.01)"))
        return self

    def met_by(self, accurate_ratio: float, candidate_ratio: float) -> bool:
        """Whether one iteration's ratios meet every criterion given."""
        ok = self.accurate_ratio is None or accurate_ratio >= self.accurate_ratio
        return ok and (self.candidate_ratio is None or candidate_ratio < self.candidate_ratio)


# ---- exploration protocols (units: K, bar, fs for dt, ps for durations, K/ps for rates) ----


class LabelerConfig(_Model):
    """The reference calculator: a registry name plus its settings."""

    kind: str = fx(pattern=r"^([a-z][a-z0-9_-]*|ase:[A-Za-z_][A-Za-z0-9_.]*)$",
                   desc="Labeler name: emt, lj, tblite, cp2k, qe, vasp, … or ase:<Class>.",
                   fix="use a lower-case labeler name (emt, lj, tblite, cp2k, …) "
                   "or ase:<CalculatorClass>")
    settings: dict[str, Any] = fx(default_factory=dict, desc="Labeler settings.",
                                  fix="give a mapping of settings")
    max_failed_ratio: float | None = fx(
        0.5, ge=0, le=1, desc="Stop the campaign (status 'stopped', with the reason) when more than this "
        "fraction of one iteration's labels failed (DP-GEN's ratio_failed); null never stops. "
        "Failed configurations are quarantined either way; `firegen relabel` retries them.",
        fix="use a fraction such as 0.5, or null to never stop")


class ExplorationConfig(_Model):
    """MD engine for exploration."""

    engine: Literal["lammps", "ase"] = fx("lammps", desc="LAMMPS with the deepmd plugin, or "
                                          "ASE MD with deepmd's calculator.")
    min_distance_ratio: float = fx(0.7, ge=0, lt=1, desc="MD sanity: a frame with two atoms closer than "
                                   "this fraction of the sum of their covalent radii ends the trajectory's "
                                   "useful part (it and later frames count as failed); 0 turns it off.",
                                   fix="use a fraction such as 0.7, or 0 to turn the check off")
    max_energy_rise: float | None = fx(2.0, gt=0, desc="MD sanity: a potential energy more than this many "
                                       "eV/atom above the trajectory's first frame ends its useful part "
                                       "(engines that report energies); null turns it off.",
                                       fix="use an energy in eV/atom such as 2.0, or null")
