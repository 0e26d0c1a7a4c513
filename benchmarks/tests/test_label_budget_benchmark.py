"""label_budget.py's campaign: the main job's, with a second cell size and a labeling budget, and valid."""

from __future__ import annotations

from types import SimpleNamespace

from firegen.campaign.config import load_config
import label_budget as lb


def test_budget_campaign_is_the_main_job_with_two_cell_sizes_and_a_budget(tmp_path):
    args = SimpleNamespace(large=[3, 3, 2], perturb=4, cpu_hours=0.01, iterations=3)
    cfg = load_config(lb.budget_yaml(tmp_path, args))  # checks the structure file resolves from tmp_path
    main = load_config(lb.BASE)
    assert [s.supercell for s in cfg.systems] == [main.systems[0].supercell, [3, 3, 2]]
    assert cfg.stages[0].systems == [s.name for s in cfg.systems]
    assert cfg.stages[0].max_iterations == 3 != main.stages[0].max_iterations
    assert (cfg.selection.budget.cpu_hours, cfg.selection.budget.cores_per_label) == (0.01, 1)
    assert main.selection.budget.cpu_hours is None
    assert cfg.labeler.kind == main.labeler.kind == "tblite"
