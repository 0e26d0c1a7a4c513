"""What the views of one campaign read from the database, each part read at most once per page.

Everything here reads documents whose number grows with iterations and Fireworks (campaign,
iterations, models, snapshots, Fireworks, launches), never the configurations collection, which the
embedded FerretDB can only read whole: a page answers in about the same time at 10^4 configurations
as at 10^2. Configurations are read by ``_id`` only (dataset pages, one configuration).
"""

from __future__ import annotations

import datetime
from functools import cached_property

from firegen.campaign.errors import FiregenError
from firegen.db.launchpad_queries import all_fireworks, campaign_fireworks, firework_states, launches_of
from firegen.db.properties import PropertyStore
from firegen.db.repository import ResultsStore


def utc(value) -> datetime.datetime | None:
    """A FireWorks or database time stamp as an aware UTC datetime (FireWorks stores naive UTC, or text)."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.datetime.fromisoformat(value)
    return value if value.tzinfo else value.replace(tzinfo=datetime.timezone.utc)


class CampaignSource:
    """One campaign's documents, read lazily and kept for the life of the object (one page or report).

    Args:
        store: the results store.
        lp: the LaunchPad (Fireworks and launches).
        name: the campaign.

    Raises:
        FiregenError: (on first use) the campaign is not in the database.
    """

    def __init__(self, store: ResultsStore, lp, name: str):
        self.store, self.lp, self.name = store, lp, name
        self._drawn: dict = {}

    def drawn(self, key, draw):
        """``draw()``, once per ``key`` for this read (pages drawn from one read are the same)."""
        if key not in self._drawn:
            self._drawn[key] = draw()
        return self._drawn[key]

    @cached_property
    def campaign(self) -> dict:
        doc = self.store.get_campaign(self.name)
        if doc is None:
            raise FiregenError(f"campaign '{self.name}' is not in the database. Fix: check the name with "
                               "`firegen status` (and --uri / --launchpad for another database)")
        return doc

    @cached_property
    def iterations(self) -> list[dict]:
        return self.store.iterations_of(self.name)

    @cached_property
    def models(self) -> list[dict]:
        return self.store.models_of(self.name)

    @cached_property
    def snapshots(self) -> list[dict]:
        return self.store.snapshots_of(self.name)

    @cached_property
    def states(self) -> dict[tuple[str, str, str], int]:
        """``(category, kind, state) -> n`` over the campaign's Fireworks."""
        return firework_states(self.lp, self.name)

    @cached_property
    def fireworks(self) -> list[dict]:
        return campaign_fireworks(self.lp.db, self.name)

    @cached_property
    def launches(self) -> list[dict]:
        return launches_of(self.lp.db, [fw["fw_id"] for fw in self.fireworks])

    @cached_property
    def trust(self) -> tuple[float, float]:
        """The force trust levels ``(f_lo, f_hi)`` (eV/Å)."""
        trust = ((self.campaign.get("config") or {}).get("selection") or {}).get("trust") or {}
        return float(trust.get("f_lo", 0.15)), float(trust.get("f_hi", 0.35))

    @cached_property
    def stages(self) -> list[dict]:
        """The stages of the campaign's frozen config."""
        return list((self.campaign.get("config") or {}).get("stages") or [])

    @cached_property
    def latest_predictions(self) -> tuple[int | None, list[dict]]:
        """The held-out predictions of the latest committee that has them, among the last three committees:
        ``(iteration, one per member)``."""
        by_iteration: dict[int, list] = {}
        for model in self.models:
            if model["iteration"] >= 0:  # the final model (iteration -1) has a section of its own
                by_iteration.setdefault(model["iteration"], []).append(model["_id"])
        for iteration in sorted(by_iteration, reverse=True)[:3]:
            found = self.store.heldout_predictions(by_iteration[iteration])
            if found:
                return iteration, found
        return None, []

    @cached_property
    def final_model(self) -> dict | None:
        """The campaign's final model (``firegen finalize``), or None."""
        return PropertyStore(self.store.db).final_model(self.name)

    @cached_property
    def final_steps(self) -> int | None:
        """The training steps the final model ran (as its stored deepmd input says), or None."""
        return self.store.steps_behind(self.final_model["_id"]) if self.final_model else None  # trained from scratch

    @cached_property
    def final_predictions(self) -> dict | None:
        """The final model's held-out predictions (its parity points), or None."""
        if self.final_model is None:
            return None
        found = self.store.heldout_predictions([self.final_model["_id"]])
        return found[0] if found else None

    @cached_property
    def properties(self) -> list[dict]:
        """The campaign's ``properties`` documents (MD runs with their RDFs, Arrhenius fits), MSD curves left out."""
        return PropertyStore(self.store.db).of_campaign(self.name, without=["msd"])

    def read(self, parts: tuple[str, ...]) -> CampaignSource:
        """Read ``parts`` now (reading them side by side in threads measured no faster on the embedded FerretDB)."""
        for part in parts:
            getattr(self, part)
        return self

    def checked(self) -> CampaignSource:
        """This source with what most pages show read now (FiregenError for an unknown campaign); the rest is
        read when first used."""
        return self.read(("campaign", "iterations", "states", "models"))

    def preloaded(self) -> CampaignSource:
        """This source with every part read now (a consistent picture that pages can share across threads)."""
        return self.read(("campaign", "iterations", "models", "snapshots", "states", "fireworks", "launches",
                          "latest_predictions", "final_model", "final_predictions", "properties"))


class LaunchPadSource:
    """Every campaign document (without config and structures) and every Firework in brief, read once."""

    def __init__(self, store: ResultsStore, lp):
        self.campaigns = store.campaign_briefs()
        self.fireworks = all_fireworks(lp)

    def state_counts(self) -> dict[str, dict[str, int]]:
        """Fireworks per state, per campaign (``""``: Fireworks of no campaign)."""
        counts: dict[str, dict[str, int]] = {}
        for fw in self.fireworks:
            per_state = counts.setdefault(((fw.get("spec") or {}).get("firegen") or {}).get("campaign", ""), {})
            per_state[fw["state"]] = per_state.get(fw["state"], 0) + 1
        return counts
