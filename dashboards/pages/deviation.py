"""Deviation page: metering points × days, each cell coloured by actual vs expected."""

from __future__ import annotations

from typing import Any, NamedTuple

import dash
import polars as pl
from dash import Input, Output, dcc, html
from dash.exceptions import MissingCallbackContextException

from analytics import GREEN_PCT, RED_PCT
from dashboards import data, figures

dash.register_page(  # type: ignore[no-untyped-call]
    __name__, path="/", name="Deviations", title="askug · deviations"
)

DAY_CHOICES = (14, 21, 31)
#: Metering points per page: the browser draws one page, however many the store holds.
PAGE_SIZE = 50
PAGE_SIZE_CHOICES = (25, 50, 100)
_LAST_PAGE = 1 << 30  # "the last page": table_view clamps it


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
            html.Div(
                [
                    html.Label("Metering point", htmlFor="deviation-search"),
                    dcc.Input(
                        id="deviation-search",
                        type="search",
                        placeholder="id or name contains…",
                        debounce=True,
                        className="text-input",
                    ),
                ],
                className="control",
            ),
        ],
        className="controls",
    )
    pager = html.Div(
        [
            html.Div(id="deviation-summary", className="muted"),
            html.Div(
                [
                    html.Span(id="deviation-page-range", className="pager-range"),
                    html.Button("«", id="deviation-page-first", title="First page"),
                    html.Button("‹", id="deviation-page-prev", title="Previous page"),
                    html.Label("Page", htmlFor="deviation-page"),
                    dcc.Input(
                        id="deviation-page",
                        type="number",
                        min=1,
                        max=1,
                        step=1,
                        value=1,
                        debounce=True,
                        className="pager-input",
                    ),
                    html.Span(id="deviation-page-count"),
                    html.Button("›", id="deviation-page-next", title="Next page"),
                    html.Button("»", id="deviation-page-last", title="Last page"),
                    dcc.Dropdown(
                        id="deviation-page-size",
                        options=[{"label": f"{n} / page", "value": n} for n in PAGE_SIZE_CHOICES],
                        value=PAGE_SIZE,
                        clearable=False,
                        searchable=False,
                        className="pager-size",
                    ),
                ],
                className="pager",
            ),
        ],
        className="pager-bar",
    )
    return html.Div(
        [
            *header,
            html.Div([controls], className="card"),
            html.Div(
                [
                    legend(),
                    pager,
                    dcc.Loading(
                        html.Div(id="deviation-table-container", className="deviation-scroll"),
                        type="dot",
                    ),
                ],
                className="card",
            ),
        ]
    )


class TableView(NamedTuple):
    """One page of the filtered deviation table, ready for the callback's outputs."""

    grid: dcc.Markdown
    summary: str
    page: int
    pages: int
    first: int  # 1-based position of the page's first metering point (0 if none)
    last: int
    meters: int  # metering points after filtering, on all pages


def table_view(
    frame: pl.DataFrame,
    *,
    branch_ids: list[str] | None,
    categories: list[str] | None,
    search: str | None = None,
    page: int = 1,
    page_size: int = PAGE_SIZE,
    company_names: dict[str, str] | None = None,
) -> TableView:
    """Filter the deviation frame and cut one page of metering points out of it.

    ``page`` is clamped to the pages there are; ``search`` keeps the metering points
    whose id or name contains it (case-insensitive).  The branch header rows count all
    the branch's metering points that pass the filters, not only those on the page.
    """
    days = sorted(set(frame.get_column("day").drop_nulls().to_list()))
    if branch_ids:
        frame = frame.filter(pl.col("branch_id").is_in(branch_ids))
    if categories:
        frame = frame.filter(pl.col("category").is_in(categories))
    needle = (search or "").strip().lower()
    if needle:
        frame = frame.filter(
            pl.col("meter_id").str.to_lowercase().str.contains(needle, literal=True)
            | pl.col("meter_name")
            .fill_null("")
            .str.to_lowercase()
            .str.contains(needle, literal=True)
        )
    directory = frame.select("company_id", "branch_id", "meter_id").unique(
        "meter_id", keep="first", maintain_order=True
    )
    total = directory.height
    page_size = max(1, int(page_size))
    pages = max(1, -(-total // page_size))
    page = min(max(1, int(page)), pages)
    offset = (page - 1) * page_size
    on_page = directory.slice(offset, page_size).get_column("meter_id")
    counts = {
        (r[0], r[1]): r[2] for r in directory.group_by("company_id", "branch_id").len().iter_rows()
    }
    grid = figures.deviation_grid(
        frame.filter(pl.col("meter_id").is_in(on_page.implode())),
        days=days,
        company_names=company_names,
        branch_counts=counts,
    )
    if days and total:
        red = frame.filter(pl.col("deviation_pct").abs() >= RED_PCT).height
        summary = (
            f"{total} metering point{'s' if total != 1 else ''}, "
            f"{days[0]:%d %b} – {days[-1]:%d %b %Y} (UTC days); "
            f"{red} cell(s) at or above {RED_PCT:g} %."
        )
    elif days:
        summary = "No metering point matches the filters."
    else:
        summary = "No daily values in this window."
    return TableView(
        grid=grid,
        summary=summary,
        page=page,
        pages=pages,
        first=offset + 1 if total else 0,
        last=offset + len(on_page),
        meters=total,
    )


def _triggered() -> str | None:
    """The id of the input that fired the running callback (None on the first call)."""
    try:
        trigger = dash.ctx.triggered_id
    except MissingCallbackContextException:  # called outside a callback (unit tests)
        return None
    return trigger if isinstance(trigger, str) else None


def next_page(trigger: str | None, page: int | None) -> int:
    """The page to show after ``trigger`` fired, before clamping to the pages there are.

    A filter change goes back to page 1; the pager moves from ``page`` (the first call,
    with no trigger, keeps it).
    """
    current = int(page or 1)
    moves = {
        "deviation-page-first": 1,
        "deviation-page-prev": current - 1,
        "deviation-page-next": current + 1,
        "deviation-page-last": _LAST_PAGE,
        "deviation-page": current,
    }
    return moves.get(trigger or "deviation-page", 1)


@dash.callback(
    Output("deviation-table-container", "children"),
    Output("deviation-summary", "children"),
    Output("deviation-page", "value"),
    Output("deviation-page", "max"),
    Output("deviation-page-count", "children"),
    Output("deviation-page-range", "children"),
    Output("deviation-page-first", "disabled"),
    Output("deviation-page-prev", "disabled"),
    Output("deviation-page-next", "disabled"),
    Output("deviation-page-last", "disabled"),
    Input("deviation-days", "value"),
    Input("deviation-branch", "value"),
    Input("deviation-category", "value"),
    Input("deviation-search", "value"),
    Input("deviation-page-size", "value"),
    Input("deviation-page-first", "n_clicks"),
    Input("deviation-page-prev", "n_clicks"),
    Input("deviation-page-next", "n_clicks"),
    Input("deviation-page-last", "n_clicks"),
    Input("deviation-page", "value"),
)
def update_table(
    days: int,
    branch_ids: list[str] | None,
    categories: list[str] | None,
    search: str | None = None,
    page_size: int | None = PAGE_SIZE,
    _first: int | None = None,
    _prev: int | None = None,
    _next: int | None = None,
    _last: int | None = None,
    page: int | None = 1,
) -> tuple[Any, ...]:
    """Inputs → :meth:`DashboardData.deviations` → :func:`figures.deviation_grid`, one page."""
    src = data.current()
    frame = src.deviations(days=int(days or DAY_CHOICES[0]))
    names = dict(src.meters().select("company_id", "company_name").unique().iter_rows())
    view = table_view(
        frame,
        branch_ids=branch_ids,
        categories=categories,
        search=search,
        page=next_page(_triggered(), page),
        page_size=int(page_size or PAGE_SIZE),
        company_names=names,
    )
    shown = (
        f"metering points {view.first}–{view.last} of {view.meters}"
        if view.meters
        else "no metering points"
    )
    return (
        view.grid,
        view.summary,
        view.page,
        view.pages,
        f"of {view.pages}",
        shown,
        view.page <= 1,
        view.page <= 1,
        view.page >= view.pages,
        view.page >= view.pages,
    )
