"""Forecast page: one metering point's history, backcast, forecast band and temperature."""

from __future__ import annotations

from typing import Any

import dash
import plotly.graph_objects as go
from dash import Input, Output, State, dcc, html

from dashboards import data, figures

dash.register_page(__name__, path="/forecast", name="Forecast", title="askug · forecast")


def layout(meter: str | None = None, **_query: str) -> html.Div:
    """The page; ``?meter=M000123`` preselects a metering point."""
    src = data.current()
    header = [
        html.H1("Consumption forecast", className="page-title"),
        html.P(
            "Hourly consumption of one metering point: actual values, the model's backcast "
            "and forecast with its 80 % prediction interval, and the outdoor temperature it "
            "depends on. Times are the metering point's local time.",
            className="page-subtitle",
        ),
    ]
    problem = src.problem()
    if problem:
        parts: list[Any] = [html.Code(c) if i % 2 else c for i, c in enumerate(problem.split("`"))]
        return html.Div([*header, html.Div(parts, className="notice", id="forecast-notice")])
    meters = src.meters()
    ids = meters.get_column("meter_id").to_list()
    options = [
        {"label": f"{r['meter_id']} · {r['name']} ({r['branch_name']})", "value": r["meter_id"]}
        for r in meters.iter_rows(named=True)
    ]
    return html.Div(
        [
            *header,
            html.Div(
                [
                    html.Div(
                        [
                            html.Label("Metering point", htmlFor="forecast-meter-select"),
                            dcc.Dropdown(
                                id="forecast-meter-select",
                                options=options,
                                value=meter if meter in ids else None,
                                clearable=False,
                                placeholder="choose a metering point",
                            ),
                        ],
                        className="control",
                        style={"minWidth": "460px"},
                    ),
                    html.Div(id="forecast-details", className="muted"),
                ],
                className="card controls",
            ),
            html.Div(
                dcc.Loading(
                    dcc.Graph(id="forecast-graph", config={"displaylogo": False}, style={"height": "560px"}),
                    type="dot",
                ),
                className="card",
            ),
        ]
    )


@dash.callback(
    Output("forecast-meter-select", "value"),
    Input("forecast-meter-select", "id"),
    State("forecast-meter-select", "value"),
    State("forecast-meter-select", "options"),
    State("app-store", "data"),
)
def default_meter(
    _id: str, value: str | None, options: list[dict[str, str]], stored: dict[str, Any] | None
) -> Any:
    """Without ``?meter=``: the meter last looked at, else the first one."""
    if value or not options:
        return dash.no_update
    ids = [o["value"] for o in options]
    remembered = (stored or {}).get("meter")
    return remembered if remembered in ids else ids[0]


@dash.callback(
    Output("forecast-graph", "figure"),
    Output("forecast-details", "children"),
    Output("app-store", "data", allow_duplicate=True),
    Input("forecast-meter-select", "value"),
    prevent_initial_call="initial_duplicate",
)
def update_graph(meter_id: str | None) -> tuple[go.Figure, str, Any]:
    """Meter → :meth:`DashboardData.forecast` → :func:`figures.forecast_figure`."""
    if not meter_id:
        return figures.message_figure("Choose a metering point"), "", dash.no_update
    view = data.current().forecast(meter_id)
    if view is None:
        return figures.message_figure(f"Unknown metering point {meter_id}"), "", dash.no_update
    m = view.meter
    title = f"{m['meter_id']} · {m['name']}"
    if view.cutoff is None:
        details = f"{m['branch_name']}, {m['category']}. No forecast stored for this metering point yet."
    else:
        details = (
            f"{m['branch_name']}, {m['category']} · model {view.model}, "
            f"cutoff {view.cutoff:%Y-%m-%d %H:%M} UTC · times in {m['time_zone']}"
        )
    fig = figures.forecast_figure(
        view.history, view.forecast, view.temperature,
        cutoff=view.cutoff, time_zone=m["time_zone"], title=title,
    )
    return fig, details, {"meter": meter_id}
