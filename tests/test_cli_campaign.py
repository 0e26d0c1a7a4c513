"""Campaign commands that need no training: validation errors, dry-run workflows, submit."""

import subprocess

import pytest
import yaml

from campaign_helpers import BIN, cli_env, firegen, small_cu_config


@pytest.mark.parametrize("change, field", [
    (lambda c: c.update(type_map=["Cu", "Xx"]), "type_map"),
    (lambda c: c["selection"].update(trust={"f_lo": 0.4, "f_hi": 0.2}), "f_lo"),
    (lambda c: c["systems"][0].update(structure="structures/missing.vasp"), "structure"),
    (lambda c: c["stages"][0].update(nsteps=-5), "nsteps"),
])
def test_wrong_configs_give_one_line(tmp_path, change, field):
    path = small_cu_config(tmp_path, "bad")
    cfg = yaml.safe_load(path.read_text())
    change(cfg)
    path.write_text(yaml.safe_dump(cfg))
    out = firegen(tmp_path, "validate", str(path))
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("firegen: error:") and field in lines[0], out.stderr
    assert "Fix" in lines[0] or "fix" in lines[0]


def test_validate_accepts_the_shipped_configs(tmp_path):
    from campaign_helpers import ROOT

    for name in ("cu_emt.yaml", "na3ocl_xtb.yaml"):
        out = firegen(tmp_path, "validate", str(ROOT / "configs" / name))
        assert out.returncode == 0 and "OK" in out.stdout, out.stderr


def test_dry_run_file_queues_what_submit_queues(tmp_path, launchpad, ferretdb):
    path = small_cu_config(tmp_path, "cu-dry")
    out = firegen(tmp_path, "submit", str(path), "--dry-run", "-o", "wf.yaml", check=True)
    assert (tmp_path / "wf.yaml").is_file(), out.stdout
    lp_file = tmp_path / "lp.yaml"
    launchpad.to_file(str(lp_file))
    added = subprocess.run([str(BIN / "lpad"), "-l", str(lp_file), "add", "wf.yaml"], cwd=tmp_path,
                           env=cli_env(tmp_path), capture_output=True, text=True, timeout=120)
    assert added.returncode == 0, added.stderr
    via_lpad = launchpad.fireworks.find_one({"spec.firegen.campaign": "cu-dry"})["spec"]
    launchpad.reset("", require_password=False)
    firegen(tmp_path, "--launchpad", str(lp_file), "submit", str(path), check=True)
    via_submit = launchpad.fireworks.find_one({"spec.firegen.campaign": "cu-dry"})["spec"]
    assert via_lpad == via_submit
    assert via_submit["_category"] == "cpu" and via_submit["firegen"]["kind"] == "init"
    again = firegen(tmp_path, "--launchpad", str(lp_file), "submit", str(path))
    assert again.returncode == 2 and "already exists" in again.stderr
