"""The scale benchmarks run end to end at a small size against real FireWorks and FerretDB, and
measure what they say they measure (no timing assertions)."""

from __future__ import annotations

import argparse
import math

import numpy as np
import pytest

import _bench
import dashboard_scale
import dispatch_latency
import provenance_scale
import selection_scale


def test_percentile_and_union():
    xs = [5.0, 1.0, 3.0, 2.0, 4.0]
    for q in (0, 50, 95, 100):
        assert _bench.percentile(xs, q) == pytest.approx(float(np.percentile(xs, q)))
    assert math.isnan(_bench.percentile([], 50))
    assert _bench.union_length([(0, 2), (1, 3), (5, 6)]) == 4
    assert _bench.union_length([(0, 2), (1, 3), (5, 6)], lo=1.5, hi=5.5) == 2


def test_model_devi_files_are_read_by_firegen(tmp_path):
    from firegen.workflows.steps.md import parse_model_devi

    paths = selection_scale.write_model_devi(tmp_path, 1001, 4, seed=2)
    parsed = [parse_model_devi(p) for p in paths]
    assert sum(len(d["steps"]) for d in parsed) == 1001
    assert all((np.diff(d["steps"]) == 10).all() and (d["max_devi_f"] > 0).all() for d in parsed)
    assert all(d["devi_e"] is None for d in parsed)  # 7 columns, as the LAMMPS plugin writes
    phases, info = selection_scale.run(paths, 0.15, 0.35, 50, profile=False)
    c = info["counts"]
    assert c["total"] == 1001 and c["accurate"] + c["candidate"] + c["failed"] == 1001
    assert 0 < c["candidate"] and info["picked"] == min(50, c["candidate"])
    assert {"parse", "classify (f)", "pick random"} <= set(phases.seconds)


def test_provenance_queries_on_a_small_database():
    args = argparse.Namespace(n=600, natoms=4, campaigns=2, iterations=3, systems=2, labeled=0.3, batch=100,
                              queries=5, budget=60.0, seed=0, keep=False, scan_limit=20000)
    res = provenance_scale.run_benchmark(args)
    assert res["insert_per_s"] > 0
    for out in res["model_results"]:
        dataset = out["dataset"]
        assert out["n_labels"] == dataset["size"] and len(out["labels"]) == min(100, dataset["size"])
        assert all(doc["status"] == "labeled" and doc["label"]["code"] == "cp2k" for doc in out["labels"])
    for out in res["config_results"]:
        cfg = out["configuration"]
        assert len(out["explored_with"]) == 4
        assert len(out["trained_models"]) == 4 * len(cfg.get("datasets", []))
    assert [r["calls"] for r in res["rows"]] == [5, 5, 5]


def test_dashboard_pages_are_timed_on_a_small_campaign():
    args = argparse.Namespace(n=400, iterations=3, labeled=0.4, repeat=2, seed=0, keep=False)
    rows = dashboard_scale.run_benchmark(args)
    pages = [r["page"] for r in rows]
    assert "/c/camp-000" in pages and "/c/camp-000/dataset/<dataset>?skip=3000" in pages
    assert all(r["requests"] == 2 and 0 < r["p50 ms"] <= r["max ms"] and r["KiB"] > 0 for r in rows)


@pytest.mark.parametrize("launcher", ["rlaunch", "firegen"])
def test_dispatch_latency_runs_every_firework(launcher):
    args = argparse.Namespace(n=6, workers=2, sleep=1, mode="both", paced_n=3, rate=4.0, timeout=300, keep=False,
                              launcher=launcher, prefill=35)  # 35 finished Fireworks already there (not rerun)
    rows = dispatch_latency.run_benchmark(args)
    assert [r["mode"] for r in rows] == ["burst", "paced 4/s"]
    assert [r["Fireworks"] for r in rows] == [6, 3]
    for r in rows:
        assert 0 <= r["median s"] <= r["p95 s"] <= r["max s"]
        assert r["throughput FW/s"] > 0


def test_checkout_scan_times_a_checkout_at_each_launchpad_size():
    rows = dispatch_latency.checkout_scan([12, 3], repeat=2)
    assert [r["Fireworks"] for r in rows] == [3, 12]
    assert all(0 < r["min ms"] <= r["checkout median ms"] <= r["max ms"] for r in rows)
