"""Seeds derived from what a run is (campaign, iteration, member, task), so a rerun repeats it exactly."""

from __future__ import annotations

import hashlib

_LAMMPS_MAX = 2**31 - 1  # largest seed LAMMPS' `velocity create` and deepmd-kit accept


def seed_from(*parts) -> int:
    """A stable 63-bit seed from strings/numbers, e.g. ``seed_from(campaign, iteration, system)``,
    so a rerun of an idempotent select task picks the same frames."""
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def training_seed(campaign: str, iteration: int, member: int) -> int:
    """The seed of committee member ``member`` of ``iteration``, in ``[1, 2**31 - 1]``."""
    return seed_from(campaign, iteration, member) % _LAMMPS_MAX + 1


def md_seed(campaign: str, iteration: int, system: str, condition: int) -> int:
    """The initial-velocity seed of one exploration (system, condition index), in ``[1, 2**31 - 2]``."""
    return seed_from(campaign, iteration, system, condition) % (_LAMMPS_MAX - 1) + 1


def selection_seed(campaign: str, iteration: int, seed: int) -> int:
    """The seed of ``iteration``'s pick among its candidates (``selection.seed`` of the config)."""
    return seed_from(campaign, iteration, seed)
