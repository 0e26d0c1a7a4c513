"""Whole pages: the sections of each campaign page, and the HTML of a page around them.

The report file and the dashboard share this: the report is every campaign page in one file (with
Plotly's JavaScript inside it), a dashboard page is one of them (with Plotly served by the dashboard
and a script that asks for the page's sections again every few seconds).
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from functools import cache

from firegen.orchestrator.view import sections as sec
from firegen.orchestrator.view.render import fragment, page_script, stylesheet
from firegen.orchestrator.view.source import CampaignSource

#: The campaign pages of the dashboard: path under ``/c/<campaign>/``, title, and what they show.
CAMPAIGN_PAGES = {"": ("overview", sec.overview), "models": ("models", sec.models), "labels": ("labels", sec.labels),
                  "results": ("final model & properties", sec.results), "timeline": ("timeline", sec.timeline),
                  "lineage": ("lineage", sec.lineage)}


@dataclass(frozen=True)
class NavItem:
    text: str
    href: str
    current: bool = False


@cache
def plotly_js() -> str:
    """Plotly's JavaScript as the plotly Python package ships it (no network)."""
    from plotly.offline import get_plotlyjs

    return get_plotlyjs()


def stamp() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def html_page(title: str, sections: list, nav: list[NavItem], live_url: str | None = None, refresh_s: float = 3.0,
              plotly_src: str | None = None, read_at: str | None = None) -> str:
    """A whole HTML page of ``sections``: self-contained (Plotly inside) unless ``plotly_src`` names where the
    browser gets Plotly; ``live_url``: where the page asks for its sections again (the dashboard); ``read_at``:
    when the database was read (default now)."""
    return fragment("page.html", title=title, sections=sections, nav=nav, live_url=live_url,
                    refresh_ms=int(1000 * refresh_s), stamp=f"database read {read_at or stamp()}", style=stylesheet(),
                    script=page_script(), plotly_inline=None if plotly_src else plotly_js(), plotly_src=plotly_src)


def campaign_page(src: CampaignSource, links, page: str, **options) -> list:
    """The sections of one dashboard page of a campaign (``page``: a key of :data:`CAMPAIGN_PAGES`)."""
    return CAMPAIGN_PAGES[page][1](src, links, **options)
