"""deepmd-kit training inputs: firegen's defaults merged with a user's template (pure, no I/O).

:func:`make_training_input` fills in what a campaign owns: training data, type map, per-member
seeds and the number of steps. Cutoffs in Å.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from firegen.campaign.training_template import DEFAULT_INPUT, merge_with_defaults, non_mapping_sections

__all__ = ["DEFAULT_INPUT", "make_training_input", "member_seeds", "restart_schedule"]

#: deepmd-kit v1 keys under ``training`` that the v2 ``training_data`` section replaced.
_LEGACY_TRAINING_KEYS = ("systems", "set_prefix", "batch_size", "numb_test")


def _check_template(template: Any) -> None:
    """Raise ValueError naming the offending key if the template has the wrong shape."""
    if not isinstance(template, Mapping):
        raise ValueError(
            f"training template must be a dict (a deepmd-kit input.json), got "
            f"{type(template).__name__}"
        )
    for name, node in non_mapping_sections(template)[:1]:
        raise ValueError(f"training template key '{name}' must be a dict, got {type(node).__name__}: {node!r}")
    training = template.get("training", {})
    legacy = [k for k in _LEGACY_TRAINING_KEYS if k in training]
    if legacy:
        raise ValueError(
            f"training template key 'training.{legacy[0]}' is the deepmd-kit v1 format; "
            "use 'training.training_data' (firegen fills in its 'systems') instead"
        )
    numb_steps = training.get("numb_steps")
    if numb_steps is not None and (not isinstance(numb_steps, int) or numb_steps < 0):
        raise ValueError(
            f"training template key 'training.numb_steps' must be a non-negative int, "
            f"got {numb_steps!r}"
        )


def member_seeds(seed: int) -> tuple[int, int, int]:
    """Derive the (descriptor, fitting_net, training) seeds of one committee member.

    Args:
        seed (int): The member's seed (any non-negative int).

    Returns:
        tuple[int, int, int]: Three distinct-looking seeds in ``[0, 2**31)``,
        deterministic functions of ``seed``.
    """
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    state = np.random.SeedSequence(int(seed)).generate_state(3, dtype=np.uint32)
    return tuple(int(s) & 0x7FFFFFFF for s in state)  # type: ignore[return-value]


def make_training_input(
    template: Mapping | None,
    train_systems: Sequence[str | os.PathLike],
    type_map: Sequence[str],
    seed: int,
    numb_steps: int | None = None,
    validation_systems: Sequence[str | os.PathLike] | None = None,
) -> dict:
    """Build a deepmd-kit ``input.json`` for one committee member. Pure, no I/O.

    The user's template is deep-merged over :data:`DEFAULT_INPUT` (template wins). If the
    template picks another descriptor, fitting, learning-rate or loss ``type`` than the
    defaults, its section replaces the default section instead of being merged, so no
    se_e2_a-only key leaks into e.g. a ``hybrid`` descriptor. Then firegen sets what the
    campaign owns, overriding the template:

    * ``model.type_map`` = ``type_map``;
    * ``training.training_data.systems`` = ``train_systems``;
    * ``training.validation_data`` = ``{"systems": validation_systems, ...}`` or removed;
    * ``model.descriptor.seed``, ``model.fitting_net.seed``, ``training.seed`` from
      :func:`member_seeds` (``seed``);
    * ``training.numb_steps`` = ``numb_steps`` if given, and display/save frequencies
      that suit the run length (unless the template sets them).

    Args:
        template (Mapping | None): A deepmd-kit (v2/v3 format) input, possibly partial.
        train_systems (Sequence[str | PathLike]): ``deepmd/npy`` system folders.
        type_map (Sequence[str]): Element symbols, in the campaign's type order.
        seed (int): The member's seed; members differ only in it.
        numb_steps (int | None): Number of training steps (batches); template or
            default (400000) when None.
        validation_systems (Sequence[str | PathLike] | None): Validation systems.

    Returns:
        dict: A complete input dict (JSON-serializable).

    Raises:
        ValueError: If the template is not a dict of the right shape (the message names
            the key), or an argument is invalid.
    """
    template = {} if template is None else template
    _check_template(template)
    if isinstance(type_map, str) or not type_map or not all(
        isinstance(t, str) and t for t in type_map
    ):
        raise ValueError(f"type_map must be a non-empty list of element symbols, got {type_map!r}")
    if isinstance(train_systems, (str, os.PathLike)) or not train_systems:
        raise ValueError(
            f"train_systems must be a non-empty list of deepmd/npy folders, got {train_systems!r}"
        )
    if numb_steps is not None and (
        not isinstance(numb_steps, (int, np.integer)) or isinstance(numb_steps, bool) or numb_steps < 0
    ):
        raise ValueError(f"numb_steps must be a non-negative int, got {numb_steps!r}")

    data = merge_with_defaults(template)

    model = data["model"]
    training = data["training"]
    model["type_map"] = list(type_map)

    d_seed, f_seed, t_seed = member_seeds(seed)
    descriptor = model["descriptor"]
    descriptor["seed"] = d_seed
    if descriptor.get("type") == "hybrid":
        for i, sub in enumerate(descriptor.get("list", [])):
            if isinstance(sub, dict):
                sub["seed"] = (d_seed + i) & 0x7FFFFFFF
    model["fitting_net"]["seed"] = f_seed
    training["seed"] = t_seed

    training["training_data"]["systems"] = [str(s) for s in train_systems]
    training["training_data"].setdefault("batch_size", "auto")
    if validation_systems:
        validation = training.get("validation_data") or {}
        validation["systems"] = [str(s) for s in validation_systems]
        validation.setdefault("batch_size", "auto")
        validation.setdefault("numb_btch", 1)
        training["validation_data"] = validation
    else:
        training.pop("validation_data", None)

    if numb_steps is not None:
        training["numb_steps"] = int(numb_steps)
    steps = int(training["numb_steps"])
    user_training = template.get("training", {})
    if "disp_freq" not in user_training:
        # ~10 lcurve rows for short runs, every 1000 steps for long ones.
        training["disp_freq"] = max(1, min(1000, steps // 10))
    if "save_freq" not in user_training:
        # deepmd-kit also saves a checkpoint at the last step.
        training["save_freq"] = max(1, min(10000, steps))
    return data




def restart_schedule(template: Mapping, start_lr: float | None = None, start_pref_e: float | None = None,
                     start_pref_f: float | None = None) -> dict:
    """A copy of a training template whose learning-rate schedule and loss prefactors restart from these
    values (DP-GEN's ``training_reuse_start_lr`` / ``_start_pref_e`` / ``_start_pref_f``): what a member
    warm-started from its previous model trains with. ``None`` keeps the template's value, as does a loss
    term the template leaves out (start and limit prefactor 0: e.g. no energies)."""
    import copy

    out = copy.deepcopy(dict(template))
    if start_lr is not None:
        out.setdefault("learning_rate", {})["start_lr"] = float(start_lr)
        stop = out["learning_rate"].get("stop_lr")
        if stop is not None and float(stop) > float(start_lr):
            out["learning_rate"]["stop_lr"] = float(start_lr)
    loss = out.setdefault("loss", {})
    for key, value in (("start_pref_e", start_pref_e), ("start_pref_f", start_pref_f)):
        left_out = loss.get(key) == 0 and loss.get(key.replace("start_", "limit_")) == 0
        if value is not None and not left_out:
            loss[key] = float(value)
    return out
