"""Where the views link to: anchors inside the report file, pages of the dashboard."""

from __future__ import annotations

from urllib.parse import quote


class ReportLinks:
    """Links inside one report file: ``#model-<id>``, ``#dataset-<id>``, ``#part-<id>``, ``#cfg-<id>``, ``#it-<k>``.

    Args:
        configurations: ids of the configurations the file lists (a link to any other would lead nowhere).
    """

    def __init__(self, configurations=()):
        self.configurations = {str(c) for c in configurations}

    def model(self, model_id) -> str | None:
        return f"#model-{model_id}"

    def dataset(self, dataset_id, skip: int = 0) -> str | None:
        return f"#dataset-{dataset_id}" if dataset_id is not None else None

    def part(self, dataset_id) -> str | None:
        return f"#part-{dataset_id}"

    def configuration(self, config_id) -> str | None:
        return f"#cfg-{config_id}" if str(config_id) in self.configurations else None

    def iteration(self, index) -> str | None:
        return f"#it-{index}" if index is not None and index >= 0 else None


class DashboardLinks:
    """Links to the dashboard's pages of one campaign (``/c/<campaign>/...``)."""

    def __init__(self, campaign: str):
        self.root = f"/c/{quote(campaign, safe='')}"

    def page(self, name: str = "") -> str:
        return f"{self.root}/{name}" if name else self.root

    def model(self, model_id) -> str | None:
        return f"{self.root}/model/{model_id}"

    def dataset(self, dataset_id, skip: int = 0) -> str | None:
        if dataset_id is None:
            return None
        return f"{self.root}/dataset/{dataset_id}" + (f"?skip={skip}" if skip else "")

    def part(self, dataset_id) -> str | None:
        return None

    def configuration(self, config_id) -> str | None:
        return f"{self.root}/configuration/{config_id}"

    def iteration(self, index) -> str | None:
        return f"{self.root}#it-{index}" if index is not None and index >= 0 else None
