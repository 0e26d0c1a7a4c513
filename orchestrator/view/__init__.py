"""Seeing a campaign: the report file (``firegen report``) and the live dashboard (``firegen dashboard``).

Both show the same sections (:mod:`.sections`), built from one read of the database per page
(:mod:`.source`) into tables (:mod:`.tables`) and Plotly figures (:mod:`.figures`), rendered by Jinja
templates (:mod:`.render`).
"""
