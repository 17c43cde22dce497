"""The Dash application: one shell (nav bar, page container, shared store) around the pages."""

from __future__ import annotations

from pathlib import Path

import dash
from dash import dcc, html

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
#deviation-table .dash-table-tooltip { font-size:13px; line-height:1.35; min-width:240px; }
#deviation-table td.dash-cell p { margin:0; }
"""

_INDEX = """<!DOCTYPE html>
<html lang="en">
<head>{%metas%}<title>{%title%}</title>{%favicon%}{%css%}<style>""" + _CSS + """</style></head>
<body>{%app_entry%}<footer>{%config%}{%scripts%}{%renderer%}</footer></body>
</html>"""


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
        update_title=None,
    )
    app.index_string = _INDEX
    data.bind(app.server, store)
    app.layout = html.Div(
        [
            html.Nav(
                [
                    html.Span(["askug", html.Small("gas metering")], className="app-brand"),
                    dcc.Link("Deviations", href="/", className="app-link", id="app-nav-deviation"),
                    dcc.Link("Forecast", href="/forecast", className="app-link", id="app-nav-forecast"),
                ],
                className="app-nav",
            ),
            # Shared state between pages: the metering point last looked at.
            dcc.Store(id="app-store", storage_type="session"),
            html.Main(dash.page_container, className="app-main"),
        ]
    )
    return app
