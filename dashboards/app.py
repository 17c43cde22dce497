"""The Dash application: one shell (nav bar, page container, shared store) around the pages."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote

import dash
from dash import Input, Output, dcc, html

from dashboards import data
from warehouse import Store

_PAGES = Path(__file__).resolve().parent / "pages"

# One small stylesheet inline, so the app needs no assets folder or CDN.
_CSS = """
:root { --ink:#1b1f23; --muted:#5f6b7a; --line:#e3e7ec; --brand:#0d47a1; --bg:#f5f7fa; }
* { box-sizing: border-box; }
body { margin:0; background:var(--bg); color:var(--ink);
       font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
.app-nav { display:flex; align-items:center; gap:28px; padding:0 28px; height:54px;
           background:#0f2540; color:#fff; box-shadow:0 1px 3px rgba(0,0,0,.25); }
.app-brand { font-weight:700; font-size:18px; letter-spacing:.5px; color:#fff; }
.app-brand small { font-weight:400; color:#9fb3c8; margin-left:8px; font-size:12px; }
.app-nav a.app-link { color:#c9d6e3; text-decoration:none; padding:16px 2px; border-bottom:3px solid transparent; }
.app-nav a.app-link:hover { color:#fff; border-bottom-color:#5c9ce6; }
.app-main { padding:22px 28px 40px; max-width:1800px; }
.page-title { margin:0 0 4px; font-size:22px; font-weight:600; }
.page-subtitle { margin:0 0 18px; color:var(--muted); }
.card { background:#fff; border:1px solid var(--line); border-radius:8px; padding:16px 18px; margin-bottom:16px; }
.controls { display:flex; flex-wrap:wrap; gap:22px; align-items:flex-end; }
.control { min-width:220px; }
.control label, .control-label { display:block; font-size:12px; font-weight:600; color:var(--muted);
          text-transform:uppercase; letter-spacing:.4px; margin-bottom:6px; }
.legend { display:flex; flex-wrap:wrap; gap:6px; align-items:center; font-size:12px; color:var(--muted); }
.legend-swatch { display:inline-block; min-width:62px; padding:3px 8px; border-radius:4px; text-align:center;
                 color:#1b1f23; font-weight:600; }
.notice { background:#fff8e1; border:1px solid #ffe082; border-radius:8px; padding:18px 20px; font-size:15px; }
.notice code { background:#fff; padding:1px 5px; border-radius:3px; border:1px solid #eee; }
.muted { color:var(--muted); font-size:12px; }
.text-input { height:36px; width:220px; padding:0 10px; border:1px solid #ccc; border-radius:4px; font:inherit; }
.pager-bar { display:flex; flex-wrap:wrap; justify-content:space-between; align-items:center; gap:10px;
             margin:12px 0 8px; }
.pager { display:flex; align-items:center; gap:6px; font-size:13px; color:var(--muted); }
.pager button { min-width:32px; height:30px; border:1px solid var(--line); border-radius:4px; background:#fff;
                color:var(--ink); font-size:16px; line-height:1; cursor:pointer; }
.pager button:hover:not(:disabled) { background:#eef4fb; border-color:#5c9ce6; }
.pager button:disabled { color:#b8c0ca; cursor:default; }
.pager label { margin-left:6px; }
.pager-range { margin-right:8px; }
.pager-input { width:64px; height:30px; padding:0 6px; border:1px solid #ccc; border-radius:4px; font:inherit;
               text-align:right; }
.pager-size { width:145px; margin-left:10px; }
.deviation-scroll { overflow-x:auto; padding-bottom:48px; }
.deviation-grid > p:empty { display:none; }
.deviation-table { border-collapse:separate; border-spacing:2px; font-size:13px; }
.deviation-table th { font-weight:600; color:#39424e; background:#f0f3f7; padding:5px 6px; text-align:center; }
.deviation-table th.deviation-month { background:#e6ebf1; }
.deviation-table th.deviation-day { min-width:46px; font-weight:500; line-height:1.15; }
.deviation-table th.deviation-day .dow { font-size:11px; color:var(--muted); }
.deviation-table th.weekend { background:#e9e4f2; }
.deviation-table th.deviation-meter-head { position:sticky; left:0; z-index:3; }
.deviation-branch-row th { text-align:left; background:#0f2540; color:#fff; padding:6px 10px; }
.deviation-branch-row .branch-name { font-size:13px; margin-right:12px; position:sticky; left:12px; }
.deviation-branch-row .branch-meta { font-weight:400; color:#9fb3c8; font-size:12px; position:sticky; left:220px; }
.deviation-table td { padding:4px 6px; white-space:nowrap; }
.deviation-meter { position:sticky; left:0; z-index:2; background:#fff; font-family:ui-monospace, Menlo, Consolas, monospace; }
.deviation-meter .meter-link { color:var(--brand); text-decoration:none; font-weight:600; }
.deviation-meter .meter-link:hover { text-decoration:underline; }
.deviation-name { max-width:210px; overflow:hidden; text-overflow:ellipsis; }
.deviation-category { color:var(--muted); }
.deviation-row:hover td.deviation-name, .deviation-row:hover td.deviation-category,
.deviation-row:hover td.deviation-meter { background:#eef4fb; }
.deviation-cell { position:relative; min-width:46px; text-align:center; border-radius:3px;
                  font-variant-numeric:tabular-nums; font-weight:600; cursor:default; }
.deviation-cell:hover { outline:2px solid #0f2540; z-index:4; }
.deviation-tip { display:none; position:absolute; left:calc(100% + 8px); top:50%; transform:translateY(-50%);
                 z-index:20; background:#1b1f23; color:#fff; padding:8px 11px; border-radius:6px;
                 text-align:left; font-weight:400; font-size:12px; line-height:1.5;
                 box-shadow:0 4px 14px rgba(0,0,0,.3); pointer-events:none; }
.deviation-tip.tip-left { left:auto; right:calc(100% + 8px); }
.deviation-tip-title { font-weight:600; margin-bottom:3px; color:#c9d6e3; }
.deviation-cell:hover .deviation-tip { display:block; }
"""

_INDEX = (
    """<!DOCTYPE html>
<html lang="en">
<head>{%metas%}<title>{%title%}</title>{%favicon%}{%css%}<style>"""
    + _CSS
    + """</style></head>
<body>{%app_entry%}<footer>{%config%}{%scripts%}{%renderer%}</footer></body>
</html>"""
)


def create_app(store: Store) -> dash.Dash:
    """Build the askug dashboards around one store.

    Parameters
    ----------
    store
        An open warehouse (:func:`warehouse.open_store`).  Pages read it through
        :mod:`dashboards.data` when a request arrives, never at import time.

    Returns
    -------
    dash.Dash
        The app; serve ``app.server`` with any WSGI server, or call ``app.run()``.

    Examples
    --------
    >>> app = create_app(open_store(path="askug.duckdb", read_only=True))  # doctest: +SKIP
    >>> app.run(port=8050)  # doctest: +SKIP
    """
    app = dash.Dash(
        __name__,
        use_pages=True,
        pages_folder=str(_PAGES),
        title="askug",
        suppress_callback_exceptions=True,
        update_title="",
    )
    app.index_string = _INDEX
    data.bind(app.server, store)
    app.layout = html.Div(
        [
            html.Nav(
                [
                    html.Span(["askug", html.Small("gas metering")], className="app-brand"),
                    dcc.Link("Deviations", href="/", className="app-link", id="app-nav-deviation"),
                    dcc.Link(
                        "Forecast", href="/forecast", className="app-link", id="app-nav-forecast"
                    ),
                ],
                className="app-nav",
            ),
            # Shared state between pages: the metering point last looked at.
            dcc.Store(id="app-store", storage_type="session"),
            html.Main(dash.page_container, className="app-main"),
        ]
    )

    @app.callback(Output("app-nav-forecast", "href"), Input("app-store", "data"))
    def forecast_link(stored: dict[str, Any] | None) -> str:
        """The nav bar's forecast link opens the metering point last looked at."""
        meter = (stored or {}).get("meter")
        return f"/forecast?meter={quote(meter)}" if meter else "/forecast"

    # Dash collects `dash.callback` registrations of the pages in a process-wide list
    # that the first app to serve a request takes over.  Claim them now, so every app
    # built in one process (the test suite builds several) owns exactly its own.
    app.server.test_client().get("/_dash-dependencies")
    return app
