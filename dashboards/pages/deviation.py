"""Deviation page: metering points × days, each cell coloured by actual vs expected."""

from __future__ import annotations

from typing import Any

import dash
import polars as pl
from dash import Input, Output, dash_table, dcc, html

from analytics import GREEN_PCT, RED_PCT
from dashboards import data, figures

dash.register_page(__name__, path="/", name="Deviations", title="askug · deviations")

DAY_CHOICES = (14, 21, 31)


def notice(text: str) -> html.Div:
    """A friendly message box; backticks become code."""
    parts: list[Any] = []
    for i, chunk in enumerate(text.split("`")):
        parts.append(html.Code(chunk) if i % 2 else chunk)
    return html.Div(parts, className="notice", id="deviation-notice")


def legend() -> html.Div:
    """The colour scale of the table cells."""
    return html.Div(
        [html.Span("|actual − expected| / expected:", style={"marginRight": "6px"})]
        + [
            html.Span(label, className="legend-swatch", style={"backgroundColor": colour})
            for label, colour in figures.legend_steps()
        ],
        className="legend",
        id="deviation-legend",
    )


def layout(**_query: str) -> html.Div:
    """The page: filters, legend and the table (filled by :func:`update_table`)."""
    src = data.current()
    problem = src.problem()
    header = [
        html.H1("Deviation from expected consumption", className="page-title"),
        html.P(
            f"Daily actual consumption against the model's backcast, per metering point. "
            f"Green ≤ {GREEN_PCT:g} %, red ≥ {RED_PCT:g} %; hover a cell for the volumes, "
            "click a metering point for its forecast.",
            className="page-subtitle",
        ),
    ]
    if problem:
        return html.Div([*header, notice(problem)])
    meters = src.meters()
    branches = meters.select("branch_id", "branch_name", "company_name").unique().sort("branch_id")
    categories = sorted(meters.get_column("category").unique().to_list())
    controls = html.Div(
        [
            html.Div(
                [
                    html.Label("Days", htmlFor="deviation-days"),
                    dcc.RadioItems(
                        id="deviation-days",
                        options=[{"label": f" last {n}", "value": n} for n in DAY_CHOICES],
                        value=DAY_CHOICES[0],
                        inline=True,
                        inputStyle={"marginLeft": "10px"},
                    ),
                ],
                className="control",
            ),
            html.Div(
                [
                    html.Label("Branch", htmlFor="deviation-branch"),
                    dcc.Dropdown(
                        id="deviation-branch",
                        options=[
                            {"label": f"{r['branch_name']} ({r['company_name']})", "value": r["branch_id"]}
                            for r in branches.iter_rows(named=True)
                        ],
                        multi=True,
                        placeholder="all branches",
                    ),
                ],
                className="control",
                style={"minWidth": "320px"},
            ),
            html.Div(
                [
                    html.Label("Category", htmlFor="deviation-category"),
                    dcc.Dropdown(
                        id="deviation-category",
                        options=[{"label": c, "value": c} for c in categories],
                        multi=True,
                        placeholder="all categories",
                    ),
                ],
                className="control",
            ),
        ],
        className="controls",
    )
    table = dash_table.DataTable(
        id="deviation-table",
        columns=[],
        data=[],
        merge_duplicate_headers=True,
        fixed_columns={"headers": True, "data": 3},
        fixed_rows={"headers": True},
        sort_action="native",
        page_action="none",
        markdown_options={"link_target": "_self"},
        tooltip_delay=0,
        tooltip_duration=None,
        css=[{"selector": ".dash-spreadsheet-container", "rule": "max-width: 100%;"}],
        style_table={"overflowX": "auto", "minWidth": "100%", "maxHeight": "70vh"},
        style_header={
            "backgroundColor": "#f0f3f7",
            "fontWeight": 600,
            "color": "#39424e",
            "border": "1px solid #e3e7ec",
            "textAlign": "center",
        },
        style_cell={
            "fontFamily": "inherit",
            "fontSize": "13px",
            "padding": "4px 6px",
            "border": "1px solid #ffffff",
            "textAlign": "center",
            "minWidth": "52px",
            "width": "52px",
            "maxWidth": "52px",
        },
        style_cell_conditional=[
            {"if": {"column_id": c}, "textAlign": "left", "minWidth": w, "width": w, "maxWidth": w,
             "backgroundColor": "#ffffff", "borderBottom": "1px solid #e3e7ec"}
            for c, w in (("company", "70px"), ("branch", "120px"), ("meter", "100px"),
                         ("meter_name", "190px"), ("category", "95px"))
        ],
        style_data={"whiteSpace": "nowrap", "overflow": "hidden", "textOverflow": "ellipsis"},
    )
    return html.Div(
        [
            *header,
            html.Div([controls], className="card"),
            html.Div(
                [
                    legend(),
                    html.Div(id="deviation-summary", className="muted", style={"margin": "10px 0 8px"}),
                    dcc.Loading(table, type="dot"),
                ],
                className="card",
            ),
        ]
    )


def table_props(
    frame: pl.DataFrame, *, branch_ids: list[str] | None, categories: list[str] | None
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]], str]:
    """Filter the deviation frame and turn it into DataTable properties plus a summary line."""
    days = sorted(set(frame.get_column("day").drop_nulls().to_list()))
    if branch_ids:
        frame = frame.filter(pl.col("branch_id").is_in(branch_ids))
    if categories:
        frame = frame.filter(pl.col("category").is_in(categories))
    grid = figures.deviation_grid(frame, days=days)
    if days:
        red = frame.filter(pl.col("deviation_pct").abs() >= RED_PCT).height
        summary = (
            f"{len(grid.data)} metering points, {days[0]:%d %b} – {days[-1]:%d %b %Y} (UTC days); "
            f"{red} cell(s) at or above {RED_PCT:g} %."
        )
    else:
        summary = "No daily values in this window."
    return grid.columns, grid.data, grid.style_data_conditional, grid.tooltip_data, summary


@dash.callback(
    Output("deviation-table", "columns"),
    Output("deviation-table", "data"),
    Output("deviation-table", "style_data_conditional"),
    Output("deviation-table", "tooltip_data"),
    Output("deviation-summary", "children"),
    Input("deviation-days", "value"),
    Input("deviation-branch", "value"),
    Input("deviation-category", "value"),
)
def update_table(
    days: int, branch_ids: list[str] | None, categories: list[str] | None
) -> tuple[Any, ...]:
    """Inputs → :meth:`DashboardData.deviations` → :func:`figures.deviation_grid`."""
    frame = data.current().deviations(days=int(days or DAY_CHOICES[0]))
    return table_props(frame, branch_ids=branch_ids, categories=categories)


@dash.callback(
    Output("app-store", "data", allow_duplicate=True),
    Input("deviation-table", "active_cell"),
    prevent_initial_call=True,
)
def remember_meter(active_cell: dict[str, Any] | None) -> Any:
    """Remember the metering point of the clicked row for the forecast page."""
    if not active_cell or not active_cell.get("row_id"):
        return dash.no_update
    return {"meter": active_cell["row_id"]}
