"""label_efficiency.py's set-up and scoring: one training length for every tool, and the target rule."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from firegen.campaign.config_loop import WarmStartConfig
import label_efficiency as le
import run as harness


def test_numb_steps_reaches_dpgen_and_firegen_alike(tmp_path):
    from dpgen.generator.arginfo import run_jdata_arginfo

    harness.prepare(tmp_path, SimpleNamespace(quick=False, numb_steps=1600))
    param = json.loads((tmp_path / "param.json").read_text())
    run_jdata_arginfo().check_value(run_jdata_arginfo().normalize_value(param, trim_pattern="_*"), strict=True)
    training = param["default_training_param"]["training"]
    assert (training["numb_steps"], training["save_freq"]) == (1600, 1600) != (le.PARAM_STEPS, le.PARAM_STEPS)

    args = SimpleNamespace(firegen=str(le._bench.VENV_BIN / "firegen"), displacement=0.01,
                           warm_start='{"start_pref_e": 0.1, "start_pref_f": 100}')
    import yaml

    cfg = yaml.safe_load(le.firegen_yaml(tmp_path, "firegen", 0, args).read_text())
    assert cfg["committee"]["numb_steps"] == 1600
    assert "numb_steps" not in cfg["committee"]["warm_start"]  # a warm-started member trains as long
    assert cfg["selection"]["policy"] == "diverse" and cfg["selection"]["dedup"] == {"displacement": 0.01}


def _row(variant, seed, curve, steps=1600):
    return {"variant": variant, "seed": seed, "numb_steps": steps, "where": {},
            "curve": [{"labels": n, "rmse_f": f, "rmse_e_mev": 10.0} for n, f in curve]}


def test_target_dpgen_final_is_the_median_of_dpgen_final_errors():
    rows = [_row("dpgen", 0, [(18, 0.30), (60, 0.11)]), _row("dpgen", 1, [(18, 0.31), (70, 0.09)]),
            _row("dpgen", 2, [(18, 0.29), (66, 0.20)]), _row("firegen", 0, [(18, 0.01)])]
    assert le.resolve_target(rows, "dpgen-final") == 0.11  # not a firegen error, not the last dpgen row's
    assert le.resolve_target(rows, "0.07") == 0.07
    assert le.labels_to_reach(rows[1]["curve"], 0.11) == 70 and le.labels_to_reach(rows[2]["curve"], 0.11) is None
    with pytest.raises(SystemExit, match="dpgen run"):
        le.resolve_target(rows[3:], "dpgen-final")


def test_report_refuses_results_of_two_training_lengths(tmp_path):
    rows = [_row("dpgen", 0, [(18, 0.3)], steps=400), _row("dpgen", 1, [(18, 0.3)], steps=1600)]
    with pytest.raises(SystemExit, match=r"\[400, 1600\] training steps"):
        le.report(rows, "0.2", tmp_path)


def test_firegen_variants_of_one_seed_share_a_campaign_name_and_the_report_keeps_pairs_apart(tmp_path, capsys):
    import yaml

    harness.prepare(tmp_path, SimpleNamespace(quick=False))
    args = SimpleNamespace(firegen=str(le._bench.VENV_BIN / "firegen"), displacement=0.01,
                           warm_start='{"start_pref_e": 0.1, "start_pref_f": 100}')
    names = {v: yaml.safe_load(le.firegen_yaml(tmp_path, v, 3, args).read_text())["name"]
             for v in ("firegen-random", "firegen", "firegen-kmeans")}
    assert set(names.values()) == {"cu-seed3"} != {le.campaign_name(4)}  # training/MD seeds come from the name
    paired = [dict(_row("firegen", 0, [(18, 0.2), (58, 0.1)]), campaign="cu-seed0"),
              dict(_row("firegen-kmeans", 0, [(18, 0.2), (58, 0.15), (98, 0.09)]), campaign="cu-seed0"),
              _row("dpgen", 0, [(18, 0.3), (58, 0.12)])]
    le.report(paired, "0.12", tmp_path)
    assert "  seed 0: firegen 58, firegen-kmeans 98\n" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="mixes firegen runs named per seed"):
        le.report(paired + [_row("firegen-warm", 0, [(18, 0.2)])], "0.12", tmp_path)  # an older, unpaired row


def test_the_report_gives_the_final_committees_deviation_against_their_error(tmp_path, capsys):
    rows = [_row("dpgen", 0, [(18, 0.3), (58, 0.12)]), _row("firegen", 0, [(18, 0.2), (58, 0.1)])]
    rows[1]["curve"][-1].update(devi_f=0.01, max_err_f=0.2)
    le.report(rows, "0.12", tmp_path)
    out = capsys.readouterr().out
    assert "mean max force error), firegen: 0.05 [0.05-0.05]\n" in out
    assert "error), dpgen" not in out  # no deviation stored for it: nothing printed, no error


def test_kept_needs_every_later_committee_at_or_below_the_target():
    lucky_start = [{"labels": 18, "rmse_f": 0.10}, {"labels": 58, "rmse_f": 0.14}, {"labels": 98, "rmse_f": 0.11}]
    assert le.labels_to_reach(lucky_start, 0.12) == 18
    assert le.labels_to_keep(lucky_start, 0.12) == 98
    assert le.labels_to_keep(lucky_start[:2], 0.12) is None  # ends above the target


def test_the_ablations_differ_from_firegen_only_by_their_selection(tmp_path):
    import yaml

    harness.prepare(tmp_path, SimpleNamespace(quick=False))
    args = SimpleNamespace(firegen=str(le._bench.VENV_BIN / "firegen"), displacement=0.01,
                           warm_start='{"start_pref_e": 0.1, "start_pref_f": 100}')
    cfgs = {v: yaml.safe_load(le.firegen_yaml(tmp_path, v, 0, args).read_text())
            for v in ("firegen-random", "firegen-warm", "firegen", "firegen-kmeans", "firegen-own", "firegen-best",
                      "firegen-scratch")}
    assert cfgs["firegen-warm"]["committee"] == cfgs["firegen"]["committee"]
    assert cfgs["firegen-warm"]["committee"]["warm_start"]["enabled"] is True
    assert cfgs["firegen-random"]["committee"]["warm_start"] == {"enabled": False}
    assert cfgs["firegen-warm"]["selection"] == {**cfgs["firegen-random"]["selection"], "seed": 0}
    assert cfgs["firegen-warm"]["selection"]["policy"] == "random" != cfgs["firegen"]["selection"]["policy"]
    assert cfgs["firegen-kmeans"] | {"name": None} == cfgs["firegen"] | {"name": None} | {
        "selection": {**cfgs["firegen"]["selection"], "policy": "kmeans"}}
    assert cfgs["firegen"]["selection"]["policy"] == "diverse"
    # firegen keeps firegen's defaults (a poor member restarts from the best member's descriptor); the others
    # warm-start every member from its own model, or restart a poor one otherwise
    warm = WarmStartConfig(**cfgs["firegen"]["committee"]["warm_start"])
    assert (warm.poor_above, warm.poor_restart) == (1.25, "best_descriptor")
    for variant, poor in (("firegen-own", {"poor_above": None}),
                          ("firegen-best", {"poor_above": 1.25, "poor_restart": "best"}),
                          ("firegen-scratch", {"poor_above": 1.25, "poor_restart": "scratch"})):
        assert cfgs[variant]["committee"] == {**cfgs["firegen"]["committee"], "warm_start": {
            **cfgs["firegen"]["committee"]["warm_start"], **poor}}
        assert cfgs[variant]["selection"] == cfgs["firegen"]["selection"]


def test_crossing_reads_between_two_committees():
    curve = [{"labels": 18, "rmse_f": 0.20}, {"labels": 58, "rmse_f": 0.16}, {"labels": 98, "rmse_f": 0.08}]
    assert le.labels_at_crossing(curve, 0.12) == pytest.approx(78.0)  # halfway from 0.16 to 0.08
    assert le.labels_at_crossing(curve, 0.25) == 18.0
    assert le.labels_at_crossing(curve, 0.05) is None
