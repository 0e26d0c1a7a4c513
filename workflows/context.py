"""What a FireTask needs from its surroundings: the results store and the campaign's config.

The database is the one the worker's LaunchPad uses: ``firegen worker`` passes its launchpad file in
the FWorker env (``firegen_launchpad``) and in ``FIREGEN_LAUNCHPAD``; otherwise firegen's usual
lookup applies (:func:`firegen.db.connection.resolve_target`).
"""

from __future__ import annotations

import os
from functools import lru_cache

from firegen.db.connection import resolve_target
from firegen.db.files import BLOB_CACHE_ENV
from firegen.db.repository import ResultsStore
from firegen.orchestrator.config import CampaignConfig


@lru_cache(maxsize=4)
def _store(launchpad_file: str | None, blob_cache: str | None) -> ResultsStore:
    target = resolve_target(launchpad=launchpad_file) if launchpad_file else resolve_target()
    return ResultsStore(target.connect().db, blob_cache=blob_cache)


def open_store(fw_spec: dict | None = None) -> ResultsStore:
    """The results store of the database this worker serves (one client per process), with the worker's
    blob cache (``$FIREGEN_BLOB_CACHE``, set by ``firegen worker``) when it has one."""
    env = (fw_spec or {}).get("_fw_env") or {}
    return _store(env.get("firegen_launchpad"), os.environ.get(BLOB_CACHE_ENV) or None)


def campaign_config(store: ResultsStore, campaign: str) -> tuple[dict, CampaignConfig]:
    """The campaign document and its frozen config, validated again."""
    doc = store.get_campaign(campaign)
    if doc is None:
        raise LookupError(f"campaign {campaign!r} is not in the database; was its init Firework run?")
    return doc, CampaignConfig.model_validate(doc["config"])


def current_fw_id(store: ResultsStore) -> int | None:
    """The id of the Firework this task runs in.

    FireWorks does not put the Firework id in the spec. Its Rocket writes the checked-out Firework to
    ``FW.json`` in the launch folder (unless ``PRINT_FW_JSON`` is off in ``FW_config.yaml``), which
    is read first; otherwise the RUNNING launch with this launch folder is looked up in the
    ``launches`` collection (a query the embedded FerretDB answers by reading every launch).
    """
    import json
    from pathlib import Path

    from fireworks.fw_config import PRINT_FW_JSON

    written = Path.cwd() / "FW.json"
    if PRINT_FW_JSON and written.is_file():  # written by this launch: an older one is overwritten
        try:
            return int(json.loads(written.read_text())["fw_id"])
        except (ValueError, KeyError, TypeError):
            pass
    launch = store.db["launches"].find_one({"launch_dir": str(Path.cwd()), "state": "RUNNING"}, {"fw_id": 1})
    return launch["fw_id"] if launch else None
