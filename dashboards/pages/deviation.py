"""Deviation page: metering points × days, each cell coloured by actual vs expected."""

from __future__ import annotations

from typing import Any

import dash
import polars as pl
from dash import Input, Output, dcc, html

from analytics import GREEN_PCT, RED_PCT
from dashboards import data, figures

dash.register_page(  # type: ignore[no-untyped-call]
    __name__, path="/", name="Deviations", title="askug · deviations"
)

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
            html.Span(
                label,
                className="legend-swatch",
                style={"backgroundColor": colour, "color": figures.text_colour(colour)},
            )
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
                            {
                                "label": f"{r['branch_name']} ({r['company_name']})",
                                "value": r["branch_id"],
                            }
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
    return html.Div(
        [
            *header,
            html.Div([controls], className="card"),
            html.Div(
                [
                    legend(),
                    html.Div(
                        id="deviation-summary", className="muted", style={"margin": "10px 0 8px"}
                    ),
                    dcc.Loading(
                        html.Div(id="deviation-table-container", className="deviation-scroll"),
                        type="dot",
                    ),
                ],
                className="card",
            ),
        ]
    )


def table_view(
    frame: pl.DataFrame,
    *,
    branch_ids: list[str] | None,
    categories: list[str] | None,
    company_names: dict[str, str] | None = None,
) -> tuple[html.Table, str]:
    """Filter the deviation frame; return the rendered table and a one-line summary."""
    days = sorted(set(frame.get_column("day").drop_nulls().to_list()))
    if branch_ids:
        frame = frame.filter(pl.col("branch_id").is_in(branch_ids))
    if categories:
        frame = frame.filter(pl.col("category").is_in(categories))
    table = figures.deviation_grid(frame, days=days, company_names=company_names)
    if days:
        meters = frame.get_column("meter_id").n_unique()
        red = frame.filter(pl.col("deviation_pct").abs() >= RED_PCT).height
        summary = (
            f"{meters} metering points, {days[0]:%d %b} – {days[-1]:%d %b %Y} (UTC days); "
            f"{red} cell(s) at or above {RED_PCT:g} %."
        )
    else:
        summary = "No daily values in this window."
    return table, summary


@dash.callback(
    Output("deviation-table-container", "children"),
    Output("deviation-summary", "children"),
    Input("deviation-days", "value"),
    Input("deviation-branch", "value"),
    Input("deviation-category", "value"),
)
def update_table(
    days: int, branch_ids: list[str] | None, categories: list[str] | None
) -> tuple[html.Table, str]:
    """Inputs → :meth:`DashboardData.deviations` → :func:`figures.deviation_grid`."""
    src = data.current()
    frame = src.deviations(days=int(days or DAY_CHOICES[0]))
    names = dict(src.meters().select("company_id", "company_name").unique().iter_rows())
    return table_view(frame, branch_ids=branch_ids, categories=categories, company_names=names)
