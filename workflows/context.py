"""What a FireTask needs from its surroundings: the results store and the campaign's config.

The database is the one of the LaunchPad the Rocket runs the task with: every Firework's spec has
FireWorks' ``_add_launchpad_and_fw_id``, so the Rocket sets ``task.launchpad`` and ``task.fw_id``,
and a plain ``rlaunch -l my_launchpad.yaml`` (or FireWorks' ``LAUNCHPAD_LOC``) is all a worker needs.
One results store is kept per LaunchPad, so a worker process holds one database client. A task run
without a LaunchPad (Fireworks queued before that spec key, or ``rlaunch --offline``) falls back to
firegen's usual lookup (:func:`firegen.db.connection.resolve_target`: ``FIREGEN_LAUNCHPAD``, which
``firegen worker`` sets, ...).
"""

from __future__ import annotations

import json
import os
import weakref
from functools import lru_cache
from pathlib import Path

from firegen.campaign.errors import FatalError
from firegen.db.connection import resolve_target
from firegen.db.files import BLOB_CACHE_ENV
from firegen.db.launchpad_queries import running_launch_fw_id
from firegen.db.repository import ResultsStore
from firegen.campaign.config import CampaignConfig

_STORES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # LaunchPad -> ResultsStore


@lru_cache(maxsize=2)
def _resolved_store(blob_cache: str | None) -> ResultsStore:
    return ResultsStore(resolve_target().connect().db, blob_cache=blob_cache)


def open_store(task) -> ResultsStore:
    """The results store on the database of ``task``'s LaunchPad (one per LaunchPad and process), with the
    worker's blob cache (``$FIREGEN_BLOB_CACHE``, set by ``firegen worker``) when it has one."""
    blob_cache = os.environ.get(BLOB_CACHE_ENV) or None
    launchpad = getattr(task, "launchpad", None)
    if launchpad is not None:
        store = _STORES.get(launchpad)
        if store is None or store.blobs.cache_dir != (Path(blob_cache) if blob_cache else None):
            store = _STORES[launchpad] = ResultsStore(launchpad.db, blob_cache=blob_cache)
        return store
    return _resolved_store(blob_cache)


def campaign_config(store: ResultsStore, campaign: str) -> tuple[dict, CampaignConfig]:
    """The campaign document and its frozen config, validated again."""
    doc = store.get_campaign(campaign)
    if doc is None:
        raise FatalError(f"campaign {campaign!r} is not in the database; was its init Firework run?")
    return doc, CampaignConfig.model_validate(doc["config"])


def current_fw_id(task, store: ResultsStore) -> int | None:
    """The id of the Firework ``task`` runs in: ``task.fw_id``, set by the Rocket.

    Fireworks queued before their spec had ``_add_launchpad_and_fw_id`` get no ``fw_id``; for them
    the ``FW.json`` that the Rocket writes into the launch folder (unless ``PRINT_FW_JSON`` is off) is
    read, and then the RUNNING launch with this launch folder is looked up in ``launches``.
    """
    if getattr(task, "fw_id", None) is not None:
        return int(task.fw_id)
    from fireworks.fw_config import PRINT_FW_JSON

    written = Path.cwd() / "FW.json"
    if PRINT_FW_JSON and written.is_file():  # written by this launch: an older one is overwritten
        try:
            return int(json.loads(written.read_text())["fw_id"])
        except (ValueError, KeyError, TypeError):
            pass
    return running_launch_fw_id(store.db, Path.cwd())
