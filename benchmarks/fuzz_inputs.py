#!/usr/bin/env python
"""Seeded fuzz of the inputs users write, through the real CLI entry points (issue 20, bad input).

Mutates the shipped campaign YAMLs (``configs/*.yaml``) and their structure files, DP-GEN's ``param.json``
and ``machine.json`` (``benchmarks/vs_dpgen``) and the deepmd/npy data they import (see
``fuzz_mutations.py``), runs each case through ``firegen validate`` or ``firegen import-dpgen`` and sorts how
it ended:

==================  ===============================================================================
error-names-field   exit 2, every stderr line ``firegen: error: ... Fix: ...`` or a note, one naming the
                    mutated field (or the file, for a broken file)
error-other-field   exit 2 and clean, but no line names the mutated field
error-unclean       another exit code, or stderr lines that are not firegen's one-line errors or notes
traceback           an exception escaped the CLI (a real process would print a Python traceback)
hang                no answer within ``--timeout`` seconds (the case's process is killed)
accepted-valid      exit 0 on an input the mutation keeps valid
accepted-invalid    exit 0 on an input the mutation made invalid
rejected-valid      exit 2 on an input the mutation keeps valid
==================  ===============================================================================

The CLI runs in-process (``firegen.orchestrator.cli.main(argv)``, stdout and stderr captured, ``SystemExit``
read as the exit code) in a forked worker process under a 4 GiB address-space limit; a case past the timeout
kills that worker and a fresh one takes over. ``--compare K`` runs K cases also as real ``firegen``
subprocesses and reports whether exit code and stderr agree, and the time per case both ways.

    .venv/bin/python benchmarks/fuzz_inputs.py --cases 1000 --seed 1
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import multiprocessing
import os
import random
import re
import resource
import subprocess
import sys
import tempfile
import time
import traceback
from collections import Counter
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import fuzz_mutations as mut  # noqa: E402
from fuzz_schema import yaml_schema_mutation  # noqa: E402

OUTCOMES = ["error-names-field", "error-other-field", "error-unclean", "traceback", "hang", "accepted-valid",
            "accepted-invalid", "rejected-valid"]
MEMORY_LIMIT = 4 << 30  # bytes of address space for the worker (a runaway allocation fails, not the machine)


# ---- making the cases ------------------------------------------------------------------------------------
def _write_yaml(ws: dict, name: str, cfg: dict) -> Path:
    path = ws["yaml"] / name
    path.write_text(yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True))
    return path


def make_case(rng: random.Random, ws: dict, n: int) -> mut.Case:
    """Case ``n``: a family drawn with fixed weights, then a mutation within it."""
    family = rng.choices(["yaml-schema", "yaml-template", "yaml-semantic", "yaml-text", "structure",
                          "data", "dpgen-param", "dpgen-machine", "dpgen-text"],
                         weights=[30, 10, 10, 10, 8, 10, 14, 5, 3])[0]
    tag = f"{n:05d}"
    if family.startswith(("yaml", "structure")) or family == "data":
        seed_name = rng.choice(sorted(ws["configs"]))
        cfg = mut.deep_copy(ws["configs"][seed_name])
        files: list[str] = []
        if family == "yaml-schema":
            found = yaml_schema_mutation(rng, cfg)
            if found is None:
                return make_case(rng, ws, n)
            mutation, valid, expect = found
        elif family == "yaml-template":
            mutation, valid, expect = mut.template_mutation(rng, cfg)
        elif family == "yaml-semantic":
            mutation, valid, expect = mut.semantic_mutation(rng, cfg)
        elif family == "yaml-text":
            raw, mutation, valid = mut.text_mutation(rng, (ws["yaml"] / seed_name).read_text())
            path = ws["yaml"] / f"c{tag}.yaml"
            path.write_bytes(raw)
            return mut.Case(family, mutation, ["validate", path.name], ws["yaml"], valid, [mut.FILE], [path.name])
        elif family == "structure":
            from firegen.campaign.config import load_config

            with_file = [i for i, s in enumerate(cfg["systems"]) if s.get("structure")]
            if not with_file:
                return make_case(rng, ws, n)
            i = rng.choice(with_file)
            base = load_config(ws["yaml"] / seed_name, check_files=False)
            atoms = _read(base, cfg["systems"][i])
            out = ws["yaml"] / f"s{tag}.vasp"
            mutation, valid = mut.structure_mutation(rng, atoms, out)
            cfg["systems"][i]["structure"] = out.name
            cfg["systems"][i].pop("fmt", None)
            expect, files = [f"systems[{i}].structure"], [out.name]
        else:  # data: imported deepmd/npy folder beside cu_emt's perturbed starts
            cfg = mut.deep_copy(ws["configs"]["cu_emt.yaml"])
            folder = ws["yaml"] / f"d{tag}"
            mutation, valid = mut.data_mutation(rng, ws["dpgen"] / "init" / "cu32", folder)
            cfg["initial_data"]["deepmd_npy"] = [folder.name]
            expect, files = ["initial_data.deepmd_npy[0]"], [folder.name]
        path = _write_yaml(ws, f"c{tag}.yaml", cfg)
        return mut.Case(family, mutation, ["validate", path.name], ws["yaml"], valid, expect, [path.name] + files)
    param, machine = mut.deep_copy(ws["param"]), mut.deep_copy(ws["machine"])
    ddir = ws["dpgen"]
    p, m = ddir / f"p{tag}.json", ddir / f"m{tag}.json"
    expect_file = None
    if family == "dpgen-param":
        if rng.random() < 0.15:  # the imported data of a DP-GEN run
            folder = ddir / f"d{tag}"
            mutation, valid = mut.data_mutation(rng, ddir / "init" / "cu32", folder)
            param["init_data_sys"] = [folder.name]
            expect = ["init_data_sys[0]"]
        else:
            mutation, valid, expect = mut.param_mutation(rng, param)
    elif family == "dpgen-machine":
        mutation, valid, expect = mut.machine_mutation(rng, machine)
    else:
        target = rng.choice([p, m])
        raw, mutation, valid = mut.json_text_mutation(rng, param if target is p else machine)
        mutation = f"{target.name[0]}-{mutation}"
        expect, expect_file = [mut.FILE], target
    p.write_text(json.dumps(param, indent=1, allow_nan=True))
    m.write_text(json.dumps(machine, indent=1, allow_nan=True))
    if expect_file is not None:
        expect_file.write_bytes(raw)
    files = [expect_file.name] if expect_file is not None else [p.name if family != "dpgen-machine" else m.name]
    if rng.random() < 0.5:
        argv = ["import-dpgen", p.name, m.name, "-o", f"out{tag}/campaign.yaml"]
    else:
        argv = ["validate", p.name, "--machine", m.name]
    return mut.Case(family, mutation, argv, ddir, valid, expect, files)


def _read(cfg, system: dict):
    from firegen.campaign.structures import read_structure

    return read_structure(cfg.path(system["structure"]), system.get("fmt"))


def make_cases(count: int, seed: int, ws: dict) -> list[mut.Case]:
    rng = random.Random(seed)
    return [make_case(rng, ws, n) for n in range(count)]


# ---- running them ----------------------------------------------------------------------------------------
def run_in_process(argv: list[str], cwd: Path) -> dict:
    """``firegen <argv>`` in this process: exit code, stdout, stderr, and the exception that escaped (if any)."""
    from firegen.orchestrator.cli import main

    out, err = io.StringIO(), io.StringIO()
    code, escaped = 0, None
    old = Path.cwd()
    os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            main(list(argv))
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException as exc:  # what would be a traceback in a real process
        code, escaped = 1, "".join(traceback.format_exception_only(type(exc), exc)).strip()
    finally:
        os.chdir(old)
    return {"code": code, "stdout": out.getvalue(), "stderr": err.getvalue(), "escaped": escaped}


def _worker(conn) -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))
    while True:
        job = conn.recv()
        if job is None:
            return
        conn.send(run_in_process(*job))


class Runner:
    """A forked worker running cases in-process, replaced when a case hangs or kills it."""

    def __init__(self, timeout: float):
        self.timeout = timeout
        self.ctx = multiprocessing.get_context("fork")
        self.proc = self.conn = None

    def _start(self) -> None:
        parent, child = self.ctx.Pipe()
        self.proc = self.ctx.Process(target=_worker, args=(child,), daemon=True)
        self.proc.start()
        self.conn = parent

    def run(self, case: mut.Case) -> dict:
        if self.proc is None or not self.proc.is_alive():
            self._start()
        self.conn.send((case.argv, case.cwd))
        if self.conn.poll(self.timeout):
            try:
                return self.conn.recv()
            except EOFError:  # the worker died (out of memory beyond the limit, a crash in C)
                self.proc = None
                return {"code": -9, "stdout": "", "stderr": "", "escaped": "worker process died"}
        self.proc.kill()
        self.proc.join()
        self.proc = None
        return {"code": None, "stdout": "", "stderr": "", "escaped": None, "hang": True}

    def close(self) -> None:
        if self.proc is not None and self.proc.is_alive():
            self.conn.send(None)
            self.proc.join(5)


_ERROR = re.compile(r"^firegen: error: (?P<src>[^:]+): (?P<rest>.*)$")


def _named_locs(stderr: str) -> list[str]:
    """The field each error line names (its text before the first ': ', less a parenthesis)."""
    locs = []
    for line in stderr.splitlines():
        m = _ERROR.match(line)
        if m:
            locs.append(m["rest"].split(": ", 1)[0].split(" (", 1)[0])
    return locs


def _names(loc: str, expected: str) -> bool:
    if not loc:
        return False
    return any(a == b or a.startswith((b + ".", b + "[")) for a, b in ((loc, expected), (expected, loc)))


def classify(case: mut.Case, result: dict) -> str:
    """The outcome of one case (see the module's table)."""
    if result.get("hang"):
        return "hang"
    if result["escaped"] or "Traceback (most recent call last)" in result["stderr"]:
        return "traceback"
    if result["code"] == 0:
        return "accepted-valid" if case.valid else "accepted-invalid"
    lines = [line for line in result["stderr"].splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("firegen: error: ")]
    clean = (result["code"] == 2 and errors and all(
        line.startswith(("firegen: error: ", "firegen: note: ", "firegen: warning: ")) for line in lines)
        and all(". Fix: " in line for line in errors))
    if not clean:
        return "error-unclean"
    if case.valid:
        return "rejected-valid"
    if mut.FILE in case.expect:
        return "error-names-field" if any(
            _ERROR.match(line)["src"] in case.files for line in errors if _ERROR.match(line)) else "error-other-field"
    locs = _named_locs(result["stderr"])
    return "error-names-field" if any(_names(loc, e) for loc in locs for e in case.expect) else "error-other-field"


def run_fuzz(cases: int, seed: int, timeout: float = 30.0, workdir: Path | None = None,
             progress=None) -> tuple[Counter, list[dict]]:
    """Make and run ``cases`` cases; return the outcome counts and one record per case."""
    with contextlib.ExitStack() as stack:
        root = workdir or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="firegen-fuzz-")))
        ws = mut.make_workspace(root)
        from firegen.orchestrator.cli import main  # noqa: F401 - imported before the fork: workers start warm

        runner = Runner(timeout)
        stack.callback(runner.close)
        counts: Counter = Counter()
        records = []
        for n, case in enumerate(make_cases(cases, seed, ws)):
            start = time.perf_counter()
            result = runner.run(case)
            outcome = classify(case, result)
            counts[outcome] += 1
            records.append({"n": n, "family": case.family, "mutation": case.mutation, "valid": case.valid,
                            "argv": case.argv, "expect": case.expect, "outcome": outcome, "code": result["code"],
                            "stderr": result["stderr"][-600:], "escaped": result["escaped"],
                            "seconds": round(time.perf_counter() - start, 3)})
            if progress:
                progress(n, records[-1])
        return counts, records


def table(counts: Counter, records: list[dict]) -> str:
    """The counts per outcome, and per family."""
    total = sum(counts.values())
    lines = [f"{'outcome':<20} {'cases':>6}", "-" * 27]
    lines += [f"{o:<20} {counts.get(o, 0):>6}" for o in OUTCOMES]
    lines += ["-" * 27, f"{'total':<20} {total:>6}", ""]
    families = sorted({r["family"] for r in records})
    lines.append(f"{'family':<15} {'cases':>6} {'invalid':>8} {'named':>6} {'other':>6} {'valid ok':>9}")
    for fam in families:
        rows = [r for r in records if r["family"] == fam]
        c = Counter(r["outcome"] for r in rows)
        lines.append(f"{fam:<15} {len(rows):>6} {sum(not r['valid'] for r in rows):>8} "
                     f"{c['error-names-field']:>6} {c['error-other-field']:>6} {c['accepted-valid']:>9}")
    return "\n".join(lines)


def compare(cases: list[mut.Case], runner: Runner) -> tuple[int, float, float]:
    """Run ``cases`` in-process and as real ``firegen`` processes: (agreeing, s per case in, s per subprocess)."""
    exe = Path(sys.executable).parent / "firegen"
    agree, t_in, t_sub = 0, 0.0, 0.0
    for case in cases:
        start = time.perf_counter()
        inside = runner.run(case)
        t_in += time.perf_counter() - start
        start = time.perf_counter()
        proc = subprocess.run([str(exe), *case.argv], cwd=case.cwd, capture_output=True, text=True, timeout=300)
        t_sub += time.perf_counter() - start
        agree += (proc.returncode == inside["code"] and proc.stderr == inside["stderr"])
    return agree, t_in / max(1, len(cases)), t_sub / max(1, len(cases))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cases", type=int, default=1000)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--timeout", type=float, default=30.0, help="seconds per case before it counts as a hang")
    p.add_argument("--json", type=Path, help="write one record per case here")
    p.add_argument("--show", type=int, default=3, help="print up to this many cases of each bad outcome")
    p.add_argument("--compare", type=int, default=0, help="also run this many cases as firegen subprocesses")
    args = p.parse_args(argv)
    start = time.perf_counter()
    counts, records = run_fuzz(args.cases, args.seed, args.timeout)
    wall = time.perf_counter() - start
    print(table(counts, records))
    print(f"\n{args.cases} cases, seed {args.seed}: {wall:.0f} s ({wall / max(1, args.cases):.2f} s per case, "
          "in-process)")
    for outcome in ("traceback", "hang", "accepted-invalid", "error-unclean", "rejected-valid", "error-other-field"):
        shown = [r for r in records if r["outcome"] == outcome][: args.show]
        for r in shown:
            print(f"\n[{outcome}] #{r['n']} {r['family']}/{r['mutation']} expect {r['expect']}: firegen "
                  f"{' '.join(r['argv'])} -> {r['code']}\n  {r['escaped'] or r['stderr'].strip()[-400:]}")
    if args.json:
        args.json.write_text(json.dumps(records, indent=1))
    if args.compare:
        with tempfile.TemporaryDirectory(prefix="firegen-fuzz-cmp-") as tmp:
            ws = mut.make_workspace(Path(tmp))
            runner = Runner(args.timeout)
            agree, t_in, t_sub = compare(make_cases(args.compare, args.seed, ws), runner)
            runner.close()
        print(f"\nin-process vs subprocess on {args.compare} cases: {agree} agree on exit code and stderr; "
              f"{t_in:.2f} s per case in-process, {t_sub:.2f} s per `firegen` subprocess")
    bad = sum(counts[o] for o in ("traceback", "hang", "accepted-invalid", "error-unclean"))
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
