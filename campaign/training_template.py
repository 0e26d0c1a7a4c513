"""The deepmd-kit training template of a campaign (``committee.training``): firegen's defaults, how a
template is merged over them, and the check that runs at validate time.

    merged = merge_with_defaults(template)                # what every committee member trains with
    problems = template_problems(template, ["Cu"], 400)   # [] or one-line Problems (loc under the template)

The check is what ``dp train`` would do with the input, run before anything is queued: deepmd-kit's own
argument checker (``deepmd.utils.argcheck.normalize``, dargs in strict mode: unknown keys, wrong types,
unknown descriptor/fitting/loss/learning-rate types), then the physics dargs does not check: cutoffs
(``rcut`` > 0 Å, 0 <= ``rcut_smth`` < ``rcut``, for each descriptor of a hybrid), positive layer widths,
a positive learning rate and decay, non-negative loss prefactors, positive display/save frequencies.
The campaign's own parts (type map, training systems, seeds, number of steps) are filled in as training
fills them. Cutoffs in Å.
"""

from __future__ import annotations

import copy
import re
import warnings
from collections.abc import Mapping
from typing import Any

from .config_fields import Problem
from .mappings import deep_merge

__all__ = ["DEFAULT_INPUT", "merge_with_defaults", "template_problems"]

#: firegen's defaults for a DeePMD-kit (v2/v3 format) training input. Modeled on the
#: DP-GEN / deepmd-kit se_e2_a examples; ``sel: "auto"`` lets deepmd-kit compute the
#: neighbor numbers from the data (neighbor statistics). Cutoffs in Å.
DEFAULT_INPUT: dict[str, Any] = {
    "model": {
        "type_map": [],
        "descriptor": {
            "type": "se_e2_a",
            "sel": "auto",
            "rcut": 6.0,
            "rcut_smth": 2.0,
            "neuron": [25, 50, 100],
            "axis_neuron": 16,
            "resnet_dt": False,
            "type_one_side": True,
        },
        "fitting_net": {"type": "ener", "neuron": [240, 240, 240], "resnet_dt": True},
    },
    "learning_rate": {
        "type": "exp",
        "start_lr": 1.0e-3,
        "stop_lr": 3.51e-8,
        # deepmd-kit shrinks decay_steps itself when it exceeds numb_steps.
        "decay_steps": 5000,
    },
    "loss": {
        "type": "ener",
        "start_pref_e": 0.02,
        "limit_pref_e": 1.0,
        "start_pref_f": 1000.0,
        "limit_pref_f": 1.0,
        "start_pref_v": 0.0,
        "limit_pref_v": 0.0,
    },
    "training": {
        "training_data": {"systems": [], "batch_size": "auto"},
        "numb_steps": 400000,
        "disp_file": "lcurve.out",
        "disp_freq": 1000,
        "save_freq": 10000,
        "save_ckpt": "model.ckpt",
        "disp_training": True,
        "time_training": True,
        "profiling": False,
    },
}

_TYPED_SECTIONS = (("model", "descriptor"), ("model", "fitting_net"), ("learning_rate",), ("loss",))
_FIX = "correct it as deepmd-kit's input.json documents it (`dp train` rejects this input too)"


def merge_with_defaults(template: Mapping) -> dict:
    """``template`` deep-merged over :data:`DEFAULT_INPUT` (template wins). A section whose ``type`` differs
    from the default's (descriptor, fitting net, learning rate, loss) replaces the default section instead of
    being merged, so no se_e2_a-only key leaks into e.g. a ``hybrid`` descriptor. Sections that are not
    mappings are left for the caller to report."""
    base = copy.deepcopy(DEFAULT_INPUT)
    for section in _TYPED_SECTIONS:
        user: Any = template
        default: Any = base
        for key in section[:-1]:
            user = user.get(key, {}) if isinstance(user, Mapping) else {}
            default = default[key]
        user_section = user.get(section[-1], {}) if isinstance(user, Mapping) else {}
        default_type = default[section[-1]].get("type")
        if isinstance(user_section, Mapping) and "type" in user_section and user_section["type"] != default_type:
            default[section[-1]] = {}
    return deep_merge(base, template)


def _checked_input(template: Mapping, type_map: list[str], numb_steps: int) -> dict:
    data = merge_with_defaults(template)
    if isinstance(data.get("model"), dict):
        data["model"]["type_map"] = list(type_map)
    training = data.get("training")
    if isinstance(training, dict):
        training["numb_steps"] = int(numb_steps)
        if isinstance(training.get("training_data"), dict):
            training["training_data"]["systems"] = ["<training data>"]
            training["training_data"].setdefault("batch_size", "auto")
        training.pop("validation_data", None)  # firegen writes it from the held-out frames
    return data


def _dargs_problem(exc: Exception) -> Problem:
    path = [p for p in str(getattr(exc, "path", "") or "").split("/") if p]
    message = " ".join(str(getattr(exc, "message", None) or exc).split()).rstrip(". ")
    key = re.search(r"key `([^`]+)`", message)
    if key:  # "key `rcut` gets wrong value type", "undefined key `foo`", "flag key `type`"
        path.append(key.group(1))
    loc = ""
    for part in path:
        loc += f"[{part}]" if part.isdigit() else (f".{part}" if loc else part)
    return Problem(loc, f"deepmd-kit's input check: {message}", fix=_FIX)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _descriptor_problems(desc: Any, loc: str) -> list[Problem]:
    if not isinstance(desc, dict):
        return []
    if desc.get("type") == "hybrid":
        return [p for i, sub in enumerate(desc.get("list") or []) for p in _descriptor_problems(sub, f"{loc}.list[{i}]")]
    probs = []
    rcut, smth = desc.get("rcut"), desc.get("rcut_smth")
    if _number(rcut) and rcut <= 0:
        probs.append(Problem(f"{loc}.rcut", "must be a positive cutoff (Å)", rcut, "use e.g. rcut: 6.0"))
    if _number(smth) and smth < 0:
        probs.append(Problem(f"{loc}.rcut_smth", "must not be negative (Å)", smth, "use e.g. rcut_smth: 0.5"))
    if _number(rcut) and _number(smth) and rcut > 0 and smth >= rcut:
        probs.append(Problem(f"{loc}.rcut_smth", f"must be below rcut = {rcut:g} Å (the smoothing starts inside "
                             "the cutoff)", smth, "use e.g. rcut_smth: 0.5 with rcut: 6.0"))
    for key in ("neuron", "type_nchanl", "axis_neuron"):
        probs += _widths(desc.get(key), f"{loc}.{key}")
    return probs


def _widths(value: Any, loc: str) -> list[Problem]:
    values = value if isinstance(value, list) else [value]
    bad = [v for v in values if _number(v) and v <= 0]
    return [Problem(loc, "must hold positive layer widths", bad[0], "use e.g. [25, 50, 100]")] if bad else []


def _physics_problems(data: dict) -> list[Problem]:
    model = data.get("model") or {}
    probs = _descriptor_problems(model.get("descriptor"), "model.descriptor")
    fitting = model.get("fitting_net")
    if isinstance(fitting, dict):
        probs += _widths(fitting.get("neuron"), "model.fitting_net.neuron")
    lr = data.get("learning_rate") or {}
    for key in ("start_lr", "stop_lr", "decay_steps"):
        if _number(lr.get(key)) and lr[key] <= 0:
            probs.append(Problem(f"learning_rate.{key}", "must be positive", lr[key],
                                 "use e.g. start_lr: 0.001, stop_lr: 3.5e-8, decay_steps: 5000"))
    loss = data.get("loss") or {}
    for key, value in loss.items():
        if key.startswith(("start_pref", "limit_pref")) and _number(value) and value < 0:
            probs.append(Problem(f"loss.{key}", "must not be negative", value, "use 0 to leave that term out"))
    training = data.get("training") or {}
    for key in ("disp_freq", "save_freq"):
        if _number(training.get(key)) and training[key] <= 0:
            probs.append(Problem(f"training.{key}", "must be a positive number of steps", training[key],
                                 f"use e.g. {key}: 1000, or leave it out (firegen picks one)"))
    return probs


#: Sections of a training template that must be mappings when present.
MAPPING_SECTIONS = (("model",), ("model", "descriptor"), ("model", "fitting_net"), ("learning_rate",), ("loss",),
                    ("training",), ("training", "training_data"), ("training", "validation_data"))


def non_mapping_sections(template: Mapping) -> list[tuple[str, Any]]:
    """``(dotted key, value)`` of each section of :data:`MAPPING_SECTIONS` present but not a mapping."""
    out = []
    for path in MAPPING_SECTIONS:
        node: Any = template
        for depth, key in enumerate(path):
            if not isinstance(node, Mapping) or key not in node:
                break
            node = node[key]
            if not isinstance(node, Mapping):
                out.append((".".join(path[: depth + 1]), node))
                break
    return out


def _shape_problems(template: Mapping) -> list[Problem]:
    """Sections that must be mappings (reported before anything reads into them)."""
    return [Problem(key, "must be a mapping", value, "give a mapping shaped like deepmd-kit's input.json (e.g. "
                    "learning_rate: {type: exp, start_lr: 0.001})") for key, value in non_mapping_sections(template)]


def template_problems(template: Mapping, type_map: list[str], numb_steps: int) -> list[Problem]:
    """Problems of a deepmd-kit training template (``loc`` relative to the template), checked as ``dp train``
    would check the input firegen writes from it (defaults merged, type map, systems and steps filled in)."""
    probs = _shape_problems(template)
    if probs:
        return probs
    data = _checked_input(template, type_map, numb_steps)
    try:
        from deepmd.utils.argcheck import normalize  # 0.2 s import: only when a config is validated
    except ImportError:  # deepmd-kit not installed here: the physics checks still run
        normalize = None
    if normalize is not None:
        try:
            with warnings.catch_warnings():  # deprecation notes ("set_prefix ... takes no effect") are not errors
                warnings.simplefilter("ignore")
                data = normalize(copy.deepcopy(data))
        except Exception as exc:  # dargs' ArgumentError and the ValueErrors of deepmd's own hooks
            return [_dargs_problem(exc)]
    return _physics_problems(data)
