"""Forecast page: one metering point's history, backcast, forecast band and temperature."""

from __future__ import annotations

from typing import Any

import dash
import plotly.graph_objects as go
from dash import Input, Output, dcc, html

from dashboards import data, figures

dash.register_page(  # type: ignore[no-untyped-call]
    __name__, path="/forecast", name="Forecast", title="askug · forecast"
)


def layout(meter: str | None = None, **_query: str) -> html.Div:
    """The page; ``?meter=M000123`` preselects a metering point (default: the first one)."""
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
                                value=meter if meter in ids else ids[0],
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
                    dcc.Graph(
                        id="forecast-graph",
                        config={"displaylogo": False},
                        style={"height": "560px"},
                    ),
                    type="dot",
                ),
                className="card",
            ),
        ]
    )


@dash.callback(
    Output("forecast-graph", "figure"),
    Output("forecast-details", "children"),
    Input("forecast-meter-select", "value"),
)
def update_graph(meter_id: str | None) -> tuple[go.Figure, str]:
    """Meter → :meth:`DashboardData.forecast` → :func:`figures.forecast_figure`."""
    if not meter_id:
        return figures.message_figure("Choose a metering point"), ""
    view = data.current().forecast(meter_id)
    if view is None:
        return figures.message_figure(f"Unknown metering point {meter_id}"), ""
    m = view.meter
    title = f"{m['meter_id']} · {m['name']}"
    if view.cutoff is None:
        details = (
            f"{m['branch_name']}, {m['category']}. No forecast stored for this metering point yet."
        )
    else:
        details = (
            f"{m['branch_name']}, {m['category']} · model {view.model}, "
            f"cutoff {view.cutoff:%Y-%m-%d %H:%M} UTC · times in {m['time_zone']}"
        )
    fig = figures.forecast_figure(
        view.history,
        view.forecast,
        view.temperature,
        cutoff=view.cutoff,
        time_zone=m["time_zone"],
        title=title,
    )
    return fig, details


@dash.callback(
    Output("app-store", "data"),
    Input("forecast-meter-select", "value"),
)
def remember_meter(meter_id: str | None) -> Any:
    """Share the chosen metering point with the other pages."""
    return {"meter": meter_id} if meter_id else dash.no_update
