"""Bad input through the real CLI (issue 20): the seeded fuzzer at a small size, then one regression test per
class of input that used to end in a traceback, a hang or a silent acceptance. Each feeds the bad input to
``firegen validate`` / ``firegen import-dpgen`` (in-process, as ``benchmarks/fuzz_inputs.py`` runs them) and
asserts exit code 2 and the exact field the one error line names."""

from __future__ import annotations

import json
import math
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import fuzz_inputs  # noqa: E402

CU = yaml.safe_load((ROOT / "configs" / "cu_emt.yaml").read_text())


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    """configs/structures and the DP-GEN side-by-side inputs (param, machine, confs/POSCAR, init/cu32)."""
    import fuzz_mutations

    return fuzz_mutations.make_workspace(tmp_path_factory.mktemp("fuzz"))


def cli(cwd: Path, *argv: str) -> tuple[int, list[str]]:
    """``firegen <argv>`` in cwd: (exit code, stderr lines); an exception escaping the CLI fails the test."""
    out = fuzz_inputs.run_in_process(list(argv), cwd)
    assert out["escaped"] is None, out["escaped"]
    return out["code"], [line for line in out["stderr"].splitlines() if line.strip()]


def error_of(cwd: Path, name: str, *argv: str) -> str:
    """The one error line of ``firegen validate name`` (or ``argv``), checked to be exit 2 with a fix."""
    code, lines = cli(cwd, *(argv or ("validate", name)))
    errors = [line for line in lines if line.startswith("firegen: error: ")]
    assert code == 2 and len(errors) == 1, lines
    assert ". Fix: " in errors[0], errors[0]
    return errors[0]


def write_cfg(ws, name: str, change=None, text: str | None = None, raw: bytes | None = None) -> str:
    cfg = json.loads(json.dumps(CU))
    if change:
        change(cfg)
    path = ws["yaml"] / name
    if raw is not None:
        path.write_bytes(raw)
    else:
        path.write_text(text if text is not None else yaml.safe_dump(cfg, sort_keys=False))
    return name


# ---- the fuzzer -------------------------------------------------------------------------------------------
def test_fuzzer_60_cases_no_traceback_hang_or_invalid_accepted(tmp_path):
    counts, records = fuzz_inputs.run_fuzz(60, seed=0, timeout=60, workdir=tmp_path)
    bad = [r for r in records if r["outcome"] in ("traceback", "hang", "accepted-invalid", "error-unclean",
                                                  "rejected-valid", "error-other-field")]
    assert bad == [], bad
    assert sum(counts.values()) == 60 and counts["error-names-field"] > 0 and counts["accepted-valid"] > 0


def test_fuzzer_classifies(ws):
    """The classifier itself: a traceback, an accepted invalid input and a clean error are told apart."""
    from fuzz_mutations import Case

    case = Case("yaml-schema", "x", ["validate", "c.yaml"], ws["yaml"], False, ["stages[0].nsteps"], ["c.yaml"])
    err = "firegen: error: c.yaml: stages[0].nsteps: must be a whole number (got true). Fix: set one.\n"
    assert fuzz_inputs.classify(case, {"code": 2, "stderr": err, "escaped": None}) == "error-names-field"
    other = err.replace("stages[0].nsteps", "labeler.kind")
    assert fuzz_inputs.classify(case, {"code": 2, "stderr": other, "escaped": None}) == "error-other-field"
    assert fuzz_inputs.classify(case, {"code": 0, "stderr": "", "escaped": None}) == "accepted-invalid"
    assert fuzz_inputs.classify(case, {"code": 1, "stderr": "", "escaped": "TypeError: x"}) == "traceback"
    assert fuzz_inputs.classify(case, {"code": 2, "stderr": "oops\n", "escaped": None}) == "error-unclean"
    assert fuzz_inputs.classify(case, {"hang": True, "code": None, "stderr": "", "escaped": None}) == "hang"


# ---- files that are not what they seem ---------------------------------------------------------------------
@pytest.mark.parametrize("raw, words", [
    (yaml.safe_dump(CU).encode("utf-16"), "is UTF-16 text. Fix: save it as UTF-8"),
    (("# café\n" + yaml.safe_dump(CU)).encode("latin-1"), "line 1: is not UTF-8 text (byte 0xe9)"),
    ((yaml.safe_dump(CU) + "zz: " + "[" * 1000 + "]" * 1000 + "\n").encode(), "nests lists or mappings deeper"),
    ((yaml.safe_dump(CU) + "zz: " + "[" * 100 + "]" * 100 + "\n").encode(), "zz[0][0]...: nests deeper than 64"),
    ((yaml.safe_dump(CU) + "[a, b]: 1\n").encode(), "invalid YAML: a list is used as a key, not text"),
    ((yaml.safe_dump(CU) + "5: x\n").encode(), "invalid YAML: key '5' is not text (int)"),
    ((yaml.safe_dump(CU) + "on: x\n").encode(), "invalid YAML: key 'on' is not text (bool)"),
    ((yaml.safe_dump(CU) + "zz: 2024-01-01\n").encode(), "zz: is a date, not a number"),
], ids=["utf16", "latin1", "nesting-1000", "nesting-100", "list-key", "int-key", "bool-key", "date"])
def test_unreadable_file_is_one_line_naming_the_file(ws, raw, words):
    line = error_of(ws["yaml"], write_cfg(ws, "enc.yaml", raw=raw))
    assert line.startswith("firegen: error: enc.yaml: ") and words in line, line


# ---- values the schema means strictly ------------------------------------------------------------------------
def _set(path, value):
    def change(cfg):
        node = cfg
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
    return change


@pytest.mark.parametrize("path, value, field, words", [
    (("stages", 0, "nsteps"), True, "stages[0].nsteps", "must be a whole number (got true)"),
    (("stages", 0, "dt"), True, "stages[0].dt", "must be a number (got true)"),
    (("committee", "size"), 4.0, "committee.size", "must be a whole number (got 4.0)"),
    (("stages", 0, "temperatures"), [math.nan], "stages[0].temperatures[0]", "must be a finite number"),
    (("selection", "seed"), 2**70, "selection.seed", "is an integer beyond the 64-bit range MongoDB stores"),
    (("selection", "max_per_iteration"), -(2**63) - 1, "selection.max_per_iteration", "beyond the 64-bit range"),
    (("initial_data", "perturb", "seed"), -1, "initial_data.perturb.seed", "must be at least 0"),
    (("stages", 0, "systems"), [], "stages[0].systems", "must have at least 1 item(s)"),
    (("systems", 0, "supercell"), [1000000, 1, 1], "systems[0].supercell", "repeats the cell 1,000,000 times"),
    (("systems", 0, "supercell"), 400, "systems[0].supercell", "more than 100,000 atoms"),
    (("systems", 0, "supercell"), [200, 200, 1], "systems[0].supercell", "makes 160,000 atoms (4 × 40,000)"),
    (("systems", 0, "role"), "reference", "stages[0].systems", "names no system, and no system has role explore"),
], ids=["true-int", "true-float", "float-int", "nan", "int64", "int64-neg", "seed", "empty-systems",
        "supercell-1e6", "supercell-400", "supercell-built", "no-explorer"])
def test_schema_value_is_one_line_naming_the_field(ws, path, value, field, words):
    line = error_of(ws["yaml"], write_cfg(ws, "v.yaml", _set(path, value)))
    assert line.startswith(f"firegen: error: v.yaml: {field}: ") and words in line, line


@pytest.mark.parametrize("units, words", [(10**9, "must be at most 5000"), (2000, "packs 10,000 atoms")])
def test_random_packing_size_is_checked_before_packing(ws, units, words):
    name = write_cfg(ws, "pack.yaml", _set(("systems", 0), {"name": "fcc", "random_packing": {
        "formula": "Cu5", "units": units, "density": 8.0}}))
    line = error_of(ws["yaml"], name)
    assert line.startswith("firegen: error: pack.yaml: systems[0].random_packing.units: ") and words in line, line


# ---- structures -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("edit, words", [
    (lambda a: a.positions.__setitem__((1, 2), math.nan), "atom 2's coordinates are not finite numbers"),
    (lambda a: a.extend(a[1:2]), "are 0.000 Å apart (closer than 0.5 Å"),
], ids=["nan", "twice"])
def test_structure_file_is_refused_naming_the_file(ws, edit, words):
    import ase.io
    from firegen.campaign.structures import read_structure

    atoms = read_structure(ws["yaml"] / "structures" / "Cu.vasp")
    edit(atoms)
    ase.io.write(ws["yaml"] / "bad.vasp", atoms, format="vasp", direct=False)
    line = error_of(ws["yaml"], write_cfg(ws, "s.yaml", _set(("systems", 0, "structure"), "bad.vasp")))
    assert line.startswith("firegen: error: s.yaml: systems[0].structure: is refused: bad.vasp") and words in line


# ---- the deepmd-kit training template -----------------------------------------------------------------------
@pytest.mark.parametrize("path, value, field, words", [
    (("model", "descriptor", "rcut"), -1.0, "model.descriptor.rcut", "must be a positive cutoff (Å)"),
    (("model", "descriptor", "rcut_smth"), 7.0, "model.descriptor.rcut_smth", "must be below rcut = 5 Å"),
    (("model", "descriptor", "type"), "se_bogus", "model.descriptor.type", "deepmd-kit's input check"),
    (("model", "descriptor", "zz"), 1, "model.descriptor.zz", "undefined key `zz`"),
    (("learning_rate",), 0.001, "learning_rate", "must be a mapping (got 0.001)"),
    (("learning_rate", "start_lr"), -0.001, "learning_rate.start_lr", "must be positive"),
    (("model", "descriptor", "neuron"), "wide", "model.descriptor.neuron", "gets wrong value type"),
], ids=["rcut", "rcut_smth", "descriptor", "unknown-key", "lr-scalar", "lr-negative", "neuron"])
def test_training_template_checked_at_validate(ws, path, value, field, words):
    line = error_of(ws["yaml"], write_cfg(ws, "t.yaml", _set(("committee", "training") + path, value)))
    assert line.startswith(f"firegen: error: t.yaml: committee.training.{field}: ") and words in line, line


# ---- DP-GEN param.json / machine.json: the user's key --------------------------------------------------------
def write_dpgen(ws, tag: str, change=None, mchange=None) -> tuple[str, str]:
    param, machine = json.loads(json.dumps(ws["param"])), json.loads(json.dumps(ws["machine"]))
    if change:
        change(param)
    if mchange:
        mchange(machine)
    (ws["dpgen"] / f"p{tag}.json").write_text(json.dumps(param))
    (ws["dpgen"] / f"m{tag}.json").write_text(json.dumps(machine))
    return f"p{tag}.json", f"m{tag}.json"


@pytest.mark.parametrize("change, field, words", [
    (_set(("numb_models",), 1), "numb_models (firegen's committee.size)", "must be at least 2"),
    (_set(("numb_models",), True), "numb_models", "must be a finite whole number (got true)"),
    (_set(("numb_models",), 2**64), "numb_models", "beyond the 64-bit range"),
    (_set(("default_training_param", "model"), "se_e2_a"), "default_training_param.model",
     "must be a mapping (a section of deepmd-kit's input.json)"),
    (_set(("default_training_param", "model", "descriptor", "rcut"), -1.0),
     "default_training_param.model.descriptor.rcut (firegen's committee.training.model.descriptor.rcut)",
     "must be a positive cutoff"),
    (_set(("model_devi_jobs", 0, "temps"), [-5]), "model_devi_jobs[0].temps[0] (firegen's stages[0].temperatures[0])",
     "must be greater than 0"),
    (_set(("model_devi_jobs", 0, "nsteps"), 10.5), "model_devi_jobs[0].nsteps", "DP-GEN param schema"),
    (_set(("model_devi_dt",), 0.05), "model_devi_dt (firegen's stages[0].dt, in fs: 1000 × DP-GEN's ps)",
     "must be at most 10"),
    (_set(("fp_task_max",), 0), "fp_task_max (firegen's selection.max_per_iteration)", "must be greater than 0"),
], ids=["numb_models-1", "numb_models-true", "numb_models-int64", "model-text", "rcut", "temps", "nsteps-float",
        "dt", "fp_task_max"])
@pytest.mark.parametrize("command", ["validate", "import-dpgen"])
def test_dpgen_errors_name_the_users_key(ws, change, field, words, command):
    p, m = write_dpgen(ws, "k", change)
    argv = ("validate", p, "--machine", m) if command == "validate" else ("import-dpgen", p, m, "-o", "o/c.yaml")
    line = error_of(ws["dpgen"], p, *argv)
    assert line.startswith(f"firegen: error: {p}: {field}: ") and words in line, line


@pytest.mark.parametrize("mchange, field, words", [
    (_set(("train", "resources", "number_node"), "x"), "train.resources.number_node", "DP-GEN machine schema"),
    (_set(("fp", "machine"), "Shell"), "fp.machine", "must be a mapping"),
    (lambda m: m["fp"].pop("command"), "fp.command", "is empty"),
], ids=["number_node", "machine-text", "no-command"])
def test_machine_errors_name_the_users_key(ws, mchange, field, words):
    p, m = write_dpgen(ws, "m", mchange=mchange)
    line = error_of(ws["dpgen"], p, "import-dpgen", p, m, "-o", "o/c.yaml")
    assert line.startswith(f"firegen: error: {m}: {field}: ") and words in line, line


def test_dpgen_json_duplicate_key_refused_and_byte_order_mark_read(ws):
    p, m = write_dpgen(ws, "j")
    text = (ws["dpgen"] / p).read_text()
    (ws["dpgen"] / p).write_text('{"numb_models": 4, ' + text[1:])
    line = error_of(ws["dpgen"], p, "validate", p, "--machine", m)
    assert line.startswith(f"firegen: error: {p}: ") and "duplicate key 'numb_models'" in line
    (ws["dpgen"] / p).write_text("\ufeff" + text)
    assert cli(ws["dpgen"], "validate", p, "--machine", m)[0] == 0


# ---- imported labeled data ---------------------------------------------------------------------------------
def _broken_data(ws, name: str, how: str) -> str:
    folder = ws["yaml"] / name
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(ws["dpgen"] / "init" / "cu32", folder)
    s = folder / "set.000"
    if how == "nan-forces":
        forces = np.load(s / "force.npy")
        forces[1, 4] = np.nan
        np.save(s / "force.npy", forces)
    elif how == "atom-count":
        np.save(s / "coord.npy", np.load(s / "coord.npy")[:, :-3])
    elif how == "type-map":
        (folder / "type_map.raw").write_text("Ag\n")
    return name


@pytest.mark.parametrize("how, words", [
    ("nan-forces", "has forces that are not finite numbers (NaN or infinity) in 1 frame(s), first frame 1"),
    ("atom-count", "cannot be read: Shape of coords is (3, 31, 3), but expected (3, 32, 3)"),
    ("type-map", "has Ag, not in type_map"),
], ids=["nan-forces", "atom-count", "type-map"])
def test_imported_data_refused_in_one_line(ws, how, words):
    folder = _broken_data(ws, f"data-{how}", how)
    line = error_of(ws["yaml"], write_cfg(ws, "d.yaml", _set(("initial_data", "deepmd_npy"), [folder])))
    assert line.startswith("firegen: error: d.yaml: initial_data.deepmd_npy[0]: ") and words in line, line
    # the same folder as DP-GEN's init data: named by init_data_sys
    p, m = write_dpgen(ws, "d", _set(("init_data_sys",), [str(ws["yaml"] / folder)]))
    line = error_of(ws["dpgen"], p, "validate", p, "--machine", m)
    assert line.startswith(f"firegen: error: {p}: init_data_sys[0] (firegen's initial_data.deepmd_npy[0]): ")


def test_init_import_refuses_nan_labels_too(ws):
    from firegen.campaign.labeled_data import LabeledDataError, labeled_systems

    folder = ws["yaml"] / _broken_data(ws, "data-runtime", "nan-forces")
    with pytest.raises(LabeledDataError, match="has forces that are not finite numbers.*Fix: remove or relabel"):
        list(labeled_systems(folder, ["Cu"]))
