"""The label failure policy end to end through the CLI: every initial label fails (the labeling program
exits with an SCF-style error), the campaign stops before training with the reason; `firegen relabel`
with a fixed command retries them, keeps the failed attempts, and `firegen run` finishes the campaign."""

import sys
from pathlib import Path

import pytest

from campaign_helpers import campaign_db, firegen, small_cu_config

SCRIPT = Path(__file__).parent / "fixtures" / "dpgen" / "emt_label.py"


def _command(extra: str = "") -> dict:
    return {"kind": "command", "settings": {
        "command": f"{sys.executable} {SCRIPT} in.xyz out.xyz{extra}", "input_fmt": "extxyz", "input_fn": "in.xyz",
        "output_fmt": "extxyz", "output_fn": "out.xyz"}}


@pytest.mark.slow  # two campaign runs (about 5 min on 2 cores); the policy itself is tested in test_campaign_policy
@pytest.mark.timeout(1800)
def test_failed_labels_stop_the_campaign_and_relabel_resumes_it(tmp_path):
    config = small_cu_config(tmp_path, "cu-stop", labeler=_command(" --fail"),
                             stage={"temperatures": [300], "nsteps": 200, "max_iterations": 1})
    try:
        first = firegen(tmp_path, "run", str(config), "--timeout", "600", timeout=900)
        assert first.returncode == 1
        assert "campaign cu-stop stopped" in first.stderr and "labeler.max_failed_ratio" in first.stderr
        db = campaign_db(tmp_path)
        campaign = db.campaigns.find_one({"name": "cu-stop"})
        assert campaign["status"] == "stopped" and campaign["stopped_iteration"] == 0
        n = db.configurations.count_documents({"campaign": "cu-stop"})
        assert n > 0 and db.configurations.count_documents({"status": "label_failed"}) == n
        assert db.models.count_documents({}) == 0
        status = firegen(tmp_path, "status", "cu-stop", check=True)
        assert "stopped:" in status.stdout and "firegen relabel cu-stop" in status.stdout

        fixed = _command()["settings"]["command"]
        out = firegen(tmp_path, "relabel", "cu-stop", "--set", f"command={fixed}", check=True)
        assert f"queued {n} configuration(s)" in out.stdout and "iteration 0 is queued again" in out.stdout

        second = firegen(tmp_path, "run", str(config), "--timeout", "900", timeout=1200)
        assert second.returncode == 0, second.stdout[-2000:] + second.stderr[-2000:]
        campaign = db.campaigns.find_one({"name": "cu-stop"})
        assert campaign["status"] in ("converged", "max_iterations") and "stop_reason" not in campaign
        init = list(db.configurations.find({"campaign": "cu-stop", "origin.kind": "init"}))
        assert all(d["status"] == "labeled" and d["label_writes"] == 1 for d in init)
        assert all("--fail" not in d["label"]["settings"]["command"] for d in init)
        assert all("SCF did not converge" in d["label_attempts"][0]["reason"] for d in init)
        assert db.models.count_documents({"campaign": "cu-stop", "iteration": 0}) == 2
    finally:
        firegen(tmp_path, "db", "down")
