"""The cases of ``fuzz_inputs.py``: seeded mutations of real inputs, each knowing whether it makes the input
invalid and which field an error must name.

Inputs mutated (copied into a workspace first): the shipped campaign YAMLs (``configs/*.yaml`` with
``configs/structures``), their structure files, DP-GEN's ``param.json`` and ``machine.json`` of
``benchmarks/vs_dpgen`` (with its ``confs/POSCAR`` and EMT-labeled ``init/cu32``, made by
``make_init_data.py``), and deepmd/npy data imported by either.

A mutation is *invalid* when no correct reading of the input can accept it (a bool where the schema means a
number, NaN, an integer beyond int64, a required key removed, a value past a documented bound, a broken file),
and *valid* when it stays inside the documented schema (another seed, another temperature, keys reordered, a
UTF-8 byte-order mark). ``expect`` lists the fields (firegen paths for YAMLs, DP-GEN keys for param.json and
machine.json) one of which the error line must name; :data:`FILE` means the file itself. The mutations
read off the config schema (type confusions, bounds, required keys) are in ``fuzz_schema.py``.
"""

from __future__ import annotations

import copy
import json
import math
import random
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from fuzz_schema import _get, _loc, _set

REPO = Path(__file__).resolve().parents[1]
FILE = "<file>"  # expect: the error names the file itself (encoding, syntax, nesting)


@dataclass
class Case:
    """One fuzz case: the CLI arguments (run in ``cwd``), whether the input is valid, what an error must name."""

    family: str
    mutation: str
    argv: list[str]
    cwd: Path
    valid: bool
    expect: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)  # the mutated files (for FILE and for messages)


# ---- the workspace -------------------------------------------------------------------------------------
def make_workspace(root: Path) -> dict[str, Any]:
    """Copy the seed inputs under ``root``: ``yaml/`` (configs + structures), ``dpgen/`` (param, machine,
    confs, init data). Returns the parsed seeds."""
    import sys

    ydir, ddir = root / "yaml", root / "dpgen"
    shutil.copytree(REPO / "configs" / "structures", ydir / "structures")
    configs = {}
    for path in sorted((REPO / "configs").glob("*.yaml")):
        shutil.copy(path, ydir / path.name)
        configs[path.name] = yaml.safe_load(path.read_text())
    ddir.mkdir()
    for name in ("param.json", "machine.json", "emt_label.py"):
        shutil.copy(REPO / "benchmarks" / "vs_dpgen" / name, ddir / name)
    sys.path.insert(0, str(REPO / "benchmarks" / "vs_dpgen"))
    import make_init_data

    make_init_data.write_inputs(ddir, count=1)  # confs/POSCAR, init/cu32 (3 EMT-labeled frames)
    return {"configs": configs, "param": json.loads((ddir / "param.json").read_text()),
            "machine": json.loads((ddir / "machine.json").read_text()), "yaml": ydir, "dpgen": ddir}


# ---- semantic YAML mutations -------------------------------------------------------------------------------
def _descriptor(cfg: dict) -> dict:
    training = cfg.setdefault("committee", {}).setdefault("training", {})
    return training.setdefault("model", {}).setdefault("descriptor", {"type": "se_e2_a", "sel": "auto",
                                                                      "rcut": 6.0, "rcut_smth": 2.0})


def template_mutation(rng: random.Random, cfg: dict) -> tuple[str, bool, list[str]]:
    """The deepmd-kit template: broken as the issue found it (invalid), or changed within deepmd's rules."""
    desc = _descriptor(cfg)
    training = cfg["committee"]["training"]
    rcut = float(desc.get("rcut", 6.0))
    smth = float(desc.get("rcut_smth", 2.0))
    choice = rng.randrange(12)
    where = "committee.training"
    if choice == 0:
        desc["rcut"] = -rng.uniform(0.1, 6.0)
        return "template-negative-rcut", False, [f"{where}.model.descriptor.rcut"]
    if choice == 1:
        desc["rcut_smth"] = rcut + rng.uniform(0.0, 2.0)
        return "template-rcut_smth-above-rcut", False, [f"{where}.model.descriptor.rcut_smth"]
    if choice == 2:
        desc["type"] = rng.choice(["se_bogus", "not_a_descriptor"])
        return "template-unknown-descriptor", False, [f"{where}.model.descriptor"]
    if choice == 3:
        training["learning_rate"] = rng.choice([0.001, "exp", [0.001]])
        return "template-learning_rate-not-mapping", False, [f"{where}.learning_rate"]
    if choice == 4:
        desc["zz_unknown"] = 1
        return "template-unknown-key", False, [f"{where}.model.descriptor"]
    if choice == 5:
        desc["neuron"] = rng.choice(["wide", [10, -20], [0]])
        return "template-bad-neuron", False, [f"{where}.model.descriptor.neuron"]
    if choice == 6:
        training.setdefault("learning_rate", {"type": "exp"})["start_lr"] = -rng.uniform(1e-4, 1e-2)
        return "template-negative-start_lr", False, [f"{where}.learning_rate.start_lr"]
    if choice == 7:
        training.setdefault("loss", {"type": "ener"})["type"] = "bogus"
        return "template-unknown-loss", False, [f"{where}.loss"]
    if choice == 8:
        desc["rcut"] = round(rng.uniform(smth + 0.5, 8.0), 3)
        return "template-other-rcut", True, []
    if choice == 9:
        training.setdefault("learning_rate", {"type": "exp"})["start_lr"] = rng.choice([0.002, 0.0005])
        return "template-other-start_lr", True, []
    if choice == 10:
        desc["neuron"] = rng.choice([[8, 16], [16, 32, 64]])
        return "template-other-neuron", True, []
    training.setdefault("model", {})["fitting_net"] = {"neuron": [rng.choice([20, 40, 60])] * 3}
    return "template-other-fitting", True, []


def semantic_mutation(rng: random.Random, cfg: dict) -> tuple[str, bool, list[str]]:
    """Sizes, stage systems and changes that stay valid."""
    choice = rng.randrange(9)
    i = rng.randrange(len(cfg["systems"]))
    if choice == 0:
        cfg["systems"][i]["supercell"] = rng.choice([[1000000, 1, 1], 400, [100, 100, 100], [50, 50, 50]])
        return "supercell-too-large", False, [f"systems[{i}].supercell"]
    if choice == 1:  # no shipped config packs at random: one system becomes a packing of far too many units
        element = cfg["type_map"][0]
        cfg["systems"][i] = {"name": cfg["systems"][i]["name"], "role": cfg["systems"][i].get("role", "explore"),
                             "random_packing": {"formula": element, "units": rng.choice([10**5, 10**7, 10**12]),
                                                "density": 5.0}}
        return "packing-too-large", False, [f"systems[{i}].random_packing.units"]
    s = rng.randrange(len(cfg["stages"]))
    if choice == 2:
        cfg["stages"][s]["systems"] = []
        return "stage-systems-empty", False, [f"stages[{s}].systems"]
    if choice == 3:
        cfg["selection"] = dict(cfg.get("selection") or {}, seed=rng.randrange(2**62))
        return "selection-seed", True, []
    if choice == 4 and "temperatures" in cfg["stages"][s]:
        cfg["stages"][s]["temperatures"] = sorted(round(rng.uniform(50, 2000), 1) for _ in range(rng.randint(1, 3)))
        return "other-temperatures", True, []
    if choice == 5:
        cfg["committee"] = dict(cfg.get("committee") or {}, size=rng.randint(2, 8))
        return "committee-size", True, []
    if choice == 6 and cfg["stages"][s].get("nsteps"):
        cfg["stages"][s]["nsteps"] = int(cfg["stages"][s]["nsteps"]) * rng.randint(1, 4)
        return "longer-nsteps", True, []
    if choice == 7:
        items = list(cfg.items())
        rng.shuffle(items)
        cfg.clear()
        cfg.update(items)
        return "keys-reordered", True, []
    cfg["stages"][s]["max_iterations"] = rng.randint(1, 50)
    return "other-max_iterations", True, []


def text_mutation(rng: random.Random, text: str) -> tuple[bytes, str, bool]:
    """A whole-file mutation of YAML text: (bytes, name, valid)."""
    choice = rng.randrange(13)
    if choice == 0:
        return text.encode("utf-16"), "utf-16", False
    if choice == 1:
        return b"# caf\xe9 (Latin-1)\n" + text.encode(), "latin-1-byte", False
    if choice == 2:
        n = rng.choice([100, 1000, 5000])
        return (text + f"\nzz_deep: {'[' * n}1{']' * n}\n").encode(), f"nested-lists-{n}", False
    if choice == 3:
        n = rng.choice([100, 1000])
        return (text + "\nzz_deep: " + "{a: " * n + "1" + "}" * n + "\n").encode(), f"nested-maps-{n}", False
    if choice == 4:
        return (text + "\n[a, b]: 1\n").encode(), "list-as-key", False
    if choice == 5:
        return (text + f"\n{rng.choice(['5', '1.5', 'on', 'yes', '~', 'null'])}: 1\n").encode(), "non-text-key", False
    if choice == 6:
        return (text + "\nname: again\n").encode(), "duplicate-key", False
    if choice == 7:
        return (text + "\nzz: [unclosed\n").encode(), "syntax-error", False
    if choice == 8:
        return b"\x00\x01\x02" + text.encode(), "binary-bytes", False
    if choice == 9:
        return ("\ufeff" + text).encode(), "utf-8-bom", True
    if choice == 10:
        return text.replace("\n", "\r\n").encode(), "crlf-line-ends", True
    if choice == 11:
        return ("# a comment line added\n" + text).encode(), "comment-added", True
    return (text + "\nzz_date: 2024-01-01\n").encode(), "yaml-date-value", False


def json_text_mutation(rng: random.Random, data: dict) -> tuple[bytes, str, bool]:
    """A whole-file mutation of a JSON input (param.json, machine.json): (bytes, name, valid)."""
    text = json.dumps(data, indent=1)
    first = next(iter(data))
    choice = rng.randrange(10)
    if choice == 0:
        return text.encode("utf-16"), "utf-16", False
    if choice == 1:
        return text.replace(f'"{first}"', f'"{first}\u00e9"', 1).encode("latin-1"), "latin-1-byte", False
    if choice == 2:
        n = rng.choice([100, 1000, 100000])
        return ('{"zz_deep": ' + "[" * n + "1" + "]" * n + ", " + text[1:]).encode(), f"nested-lists-{n}", False
    if choice == 3:
        return ("{" + f'"{first}": {json.dumps(data[first])}, ' + text[1:]).encode(), "duplicate-key", False
    if choice == 4:
        return text[: rng.randrange(1, len(text) - 1)].encode(), "truncated", False
    if choice == 5:
        return ("// a comment\n" + text).encode(), "comment-line", False
    if choice == 6:
        return b"\x00" + text.encode(), "nul-byte", False
    if choice == 7:
        return ("\ufeff" + text).encode(), "utf-8-bom", True
    if choice == 8:
        return text.replace("\n", "\r\n").encode(), "crlf-line-ends", True
    return json.dumps(data, separators=(",", ":")).encode(), "minified", True


# ---- structures ------------------------------------------------------------------------------------------
def structure_mutation(rng: random.Random, atoms, out: Path) -> tuple[str, bool]:
    """Write a mutated copy of ``atoms`` to ``out`` (POSCAR): NaN/inf coordinates, an atom twice, no atoms, a
    broken file (invalid), or the structure as it is (valid)."""
    import ase.io

    atoms = atoms.copy()
    choice = rng.randrange(6)
    if choice == 0:
        pos = atoms.get_positions()
        pos[rng.randrange(len(atoms)), rng.randrange(3)] = rng.choice([math.nan, math.inf])
        atoms.set_positions(pos)
        ase.io.write(out, atoms, format="vasp", direct=False)
        return "structure-nan-coordinate", False
    if choice == 1:
        k = rng.randrange(len(atoms))
        atoms += atoms[k:k + 1]
        atoms.positions[-1] += rng.uniform(0.0, 0.45) / math.sqrt(3)  # within 0.45 Å of atom k
        ase.io.write(out, atoms, format="vasp", direct=False, sort=True)
        return "structure-atom-twice", False
    if choice == 2:
        out.write_text("not a POSCAR\n1.0\n")
        return "structure-garbage", False
    if choice == 3:
        out.write_bytes(b"")
        return "structure-empty-file", False
    if choice == 4:
        ase.io.write(out, atoms, format="vasp", direct=False)
        text = out.read_text().splitlines()
        out.write_text("\n".join(text[:2] + ["nan nan nan"] + text[3:]) + "\n")
        return "structure-nan-cell", False
    ase.io.write(out, atoms, format="vasp", direct=True)
    return "structure-as-poscar", True


# ---- deepmd/npy data --------------------------------------------------------------------------------------
def data_mutation(rng: random.Random, src: Path, out: Path) -> tuple[str, bool]:
    """Copy a deepmd/npy system and break it as the issue lists (invalid), or leave it (valid)."""
    shutil.copytree(src, out)
    sets = sorted(out.glob("set.*"))
    choice = rng.randrange(9)

    def edit(name: str, change) -> None:
        path = sets[0] / name
        np.save(path, change(np.load(path)))

    if choice == 0:
        edit("force.npy", lambda a: _poison(a, rng))
        return "data-nan-forces", False
    if choice == 1:
        edit("energy.npy", lambda a: _poison(a, rng))
        return "data-nan-energy", False
    if choice == 2:
        edit("coord.npy", lambda a: _poison(a, rng))
        return "data-nan-coordinates", False
    if choice == 3:
        edit("coord.npy", lambda a: a[:, :-3])
        return "data-wrong-atom-count", False
    if choice == 4:
        types = (out / "type.raw").read_text().split()
        (out / "type.raw").write_text("\n".join(types[:-1] + ["3"]) + "\n")
        return "data-type-index-out-of-map", False
    if choice == 5:
        (out / "type_map.raw").write_text(rng.choice(["Ag", "Xx", "Na"]) + "\n")
        return "data-type-map-mismatch", False
    if choice == 6:
        (sets[0] / "energy.npy").unlink()
        return "data-no-energies", False
    if choice == 7:
        (sets[0] / "force.npy").write_bytes(b"garbage")
        return "data-garbage-npy", False
    return "data-intact-copy", True


def _poison(array: np.ndarray, rng: random.Random) -> np.ndarray:
    array = array.astype(float).copy()
    array.flat[rng.randrange(array.size)] = rng.choice([math.nan, math.inf, -math.inf])
    return array


# ---- DP-GEN param.json and machine.json -------------------------------------------------------------------
#: numeric param.json keys (paths) a number must stay a number at, and whether 0/negative breaks them
_PARAM_NUMBERS = [(("numb_models",), "int", True), (("fp_task_max",), "int", True), (("fp_task_min",), "int", True),
                  (("model_devi_f_trust_lo",), "float", True), (("model_devi_f_trust_hi",), "float", True),
                  (("model_devi_dt",), "float", True), (("mass_map", 0), "float", True)]
_JOB_NUMBERS = [("temps", "float", True), ("nsteps", "int", True), ("trj_freq", "int", True)]


def param_mutation(rng: random.Random, param: dict) -> tuple[str, bool, list[str]]:
    """Mutate a DP-GEN param dict in place; ``expect`` holds the DP-GEN key an error must name."""
    jobs = param["model_devi_jobs"]
    k = rng.randrange(len(jobs))
    numbers = list(_PARAM_NUMBERS) + [(("model_devi_jobs", k, key) + ((0,) if key == "temps" else ()), kind, pos)
                                      for key, kind, pos in _JOB_NUMBERS]
    choice = rng.randrange(17)
    if choice <= 5:
        path, kind, positive = rng.choice(numbers)
        loc = _loc(path)
        value = _get(param, path)
        if choice == 0:
            _set(param, path, rng.choice([True, False]))
            return "param-bool-as-number", False, [loc]
        if choice == 1:
            _set(param, path, str(value))
            return "param-number-as-text", False, [loc]
        if choice == 2:
            _set(param, path, rng.choice([math.nan, math.inf]))
            return "param-nan-or-inf", False, [loc]
        if choice == 3 and kind == "int":
            _set(param, path, rng.choice([2**63, 2**70]))
            return "param-beyond-int64", False, [loc]
        if choice == 4 and positive:
            _set(param, path, -abs(value) if value else -1)
            return "param-negative", False, [loc]
        _set(param, path, value * 2 if kind == "int" else round(value * rng.uniform(0.8, 1.2), 6))
        if path in (("model_devi_f_trust_lo",), ("model_devi_f_trust_hi",)):
            param["model_devi_f_trust_lo"], param["model_devi_f_trust_hi"] = 0.1, 0.4  # keep lo < hi
        if path == ("fp_task_min",):
            param["fp_task_min"] = min(param["fp_task_min"], param["fp_task_max"])
        if path == ("model_devi_dt",):
            param["model_devi_dt"] = 0.001 * rng.choice([0.5, 1, 2])
        return "param-number-changed", True, []
    if choice == 6:
        param["numb_models"] = 1
        return "param-one-model", False, ["numb_models"]
    if choice == 7:
        param["zz_unknown"] = 1
        return "param-unknown-key", False, ["zz_unknown"]
    template = param["default_training_param"]
    if choice == 8:
        template["model"] = "se_e2_a"
        return "param-model-as-text", False, ["default_training_param.model"]
    if choice == 9:
        template["model"]["descriptor"]["rcut"] = -rng.uniform(0.1, 5)
        return "param-negative-rcut", False, ["default_training_param.model.descriptor.rcut"]
    if choice == 10:
        template["learning_rate"] = 0.001
        return "param-learning_rate-scalar", False, ["default_training_param.learning_rate"]
    if choice == 11:
        template["model"]["descriptor"]["type"] = "se_bogus"
        return "param-unknown-descriptor", False, ["default_training_param.model.descriptor"]
    if choice == 12:
        param["sys_configs"] = [["confs/NOPE*"]]
        return "param-missing-structure", False, ["sys_configs[0]"]
    if choice == 13:
        jobs[k]["sys_idx"] = rng.choice([[], [7]])
        return "param-bad-sys_idx", False, [f"model_devi_jobs[{k}]"]
    if choice == 14:
        param["model_devi_jobs"] = []
        return "param-no-jobs", False, ["model_devi_jobs"]
    if choice == 15:
        jobs[k]["temps"] = sorted(round(rng.uniform(50, 1500), 1) for _ in range(rng.randint(1, 3)))
        return "param-other-temps", True, []
    items = list(param.items())
    rng.shuffle(items)
    param.clear()
    param.update(items)
    return "param-keys-reordered", True, []


def machine_mutation(rng: random.Random, machine: dict) -> tuple[str, bool, list[str]]:
    """Mutate a DP-GEN machine dict (dpdispatcher format) in place."""
    task = rng.choice(["train", "model_devi", "fp"])
    choice = rng.randrange(6)
    if choice == 0:
        machine[task]["resources"]["number_node"] = rng.choice(["x", [1], {"n": 1}])
        return "machine-number-as-text", False, [f"{task}.resources.number_node"]
    if choice == 1:
        del machine["fp"]["command"]
        return "machine-no-fp-command", False, ["fp"]
    if choice == 2:
        machine[task]["machine"] = rng.choice(["Shell", [1], 3])
        return "machine-machine-not-mapping", False, [f"{task}"]
    if choice == 3:
        machine[task] = rng.choice(["Shell", 5])
        return "machine-task-not-mapping", False, [task]
    if choice == 4:
        machine[task]["resources"]["cpu_per_node"] = rng.choice([1, 2, 4, 8])
        return "machine-other-cpus", True, []
    machine[task]["resources"]["group_size"] = rng.randint(1, 50)
    return "machine-other-group_size", True, []


def deep_copy(data: Any) -> Any:
    """An independent copy of parsed input data."""
    return copy.deepcopy(data)
