"""Turning a validated config into a queued campaign (or a workflow file for ``lpad add``)."""

from __future__ import annotations

from pathlib import Path

from firegen.campaign.errors import FiregenError
from firegen.campaign.plain import plain
from firegen.db.repository import ResultsStore
from firegen.campaign.config import CampaignConfig
from firegen.workflows.builders import campaign_workflow


def prepared_systems(cfg: CampaignConfig) -> dict:
    """Each system's starting structure (built: supercell, scale, defects) as flat arrays, with its
    bookkeeping (net formal charge in e, formula, role, oxidation states, defects), for the init Firework."""
    out = {}
    for system in cfg.systems:
        built = cfg.build_system(system.name)
        atoms = built.atoms
        out[system.name] = plain({"species": atoms.get_chemical_symbols(), "cell": atoms.cell.array.reshape(-1),
                                  "positions": atoms.positions.reshape(-1), "pbc": atoms.pbc, **built.metadata()})
    return out


def build_workflow(cfg: CampaignConfig):
    """The workflow that queues ``cfg`` (identical for ``firegen submit`` and ``lpad add`` of the dry run)."""
    imported = [str(cfg.path(p)) for p in (cfg.initial_data.deepmd_npy or [])]
    return campaign_workflow(cfg, prepared_systems(cfg), imported)


def write_workflow(cfg: CampaignConfig, output: Path) -> Path:
    build_workflow(cfg).to_file(str(output))
    return output


def submit(lp, cfg: CampaignConfig) -> int:
    """Add the campaign's workflow to the LaunchPad; return the init Firework's id.

    Raises:
        FiregenError: when a campaign of that name is already in the database.
    """
    store = ResultsStore.from_launchpad(lp)
    existing = store.get_campaign(cfg.name)
    if existing is not None or lp.get_wf_ids({"metadata.firegen_campaign": cfg.name}):
        status = existing["status"] if existing else "queued"
        raise FiregenError(f"campaign '{cfg.name}' already exists (status {status}). "
                           f"Fix: rename it in the config, or watch it with `firegen status {cfg.name}`.")
    wf = build_workflow(cfg)
    id_map = lp.add_wf(wf)
    fw_id = min(id_map.values())
    store.create_campaign(cfg.name, cfg.frozen(), cfg.type_map, wf_fw_id=fw_id)
    return fw_id
