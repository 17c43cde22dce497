"""Pure presentation: frames in, plotly figures (and the deviation table's markup) out.

Nothing here reads a store; every function can be called in a notebook or a unit test.
"""

from __future__ import annotations

import datetime as dt
import html as html_lib
from typing import Any
from urllib.parse import quote

import plotly.graph_objects as go
import polars as pl
from dash import dcc

from analytics import GREEN_PCT, RED_PCT, deviation_colour

#: Colours of the forecast figure.
ACTUAL_COLOUR = "#1f2d3d"
EXPECTED_COLOUR = "#1565c0"
FORECAST_COLOUR = "#ef6c00"
BAND_COLOUR = "rgba(21, 101, 192, 0.15)"
TEMPERATURE_COLOUR = "#00897b"

#: Trace names of the forecast figure (the browser test and the legend rely on them).
TRACE_ACTUAL = "Actual"
TRACE_BACKCAST = "Expected (backcast)"
TRACE_FORECAST = "Forecast"
TRACE_BAND_LO = "80 % interval, low"
TRACE_BAND_HI = "80 % interval"
TRACE_TEMPERATURE = "Outdoor temperature"

_TIP_LEFT_LAST_COLUMNS = 5  # tooltips of the last day columns open to the left


def _fmt_m3(value: float | None) -> str:
    return "no value" if value is None else f"{value:,.1f} m³".replace(",", "\u2009")


def text_colour(background: str) -> str:
    """Black or white text, whichever reads better on ``background`` (``#rrggbb``)."""
    r, g, b = (int(background[i : i + 2], 16) for i in (1, 3, 5))
    return "#1b1f23" if 0.299 * r + 0.587 * g + 0.114 * b > 150 else "#ffffff"


def _pct_text(pct: float | None) -> str:
    if pct is None:
        return ""
    rounded = round(pct)
    return "0" if rounded == 0 else f"{rounded:+d}"


def day_key(day: dt.date) -> str:
    """The id fragment of a day, e.g. ``20261103``."""
    return f"{day:%Y%m%d}"


def _esc(text: object) -> str:
    """Escape ``text`` for the grid's markup (HTML, parsed as JSX by ``dcc.Markdown``)."""
    return html_lib.escape(str(text), quote=True).replace("{", "&#123;").replace("}", "&#125;")


def _attrs(**attrs: object) -> str:
    """`` key="value"`` pairs (``data_x`` → ``data-x``, ``cls`` → ``class``), escaped."""
    out = []
    for key, value in attrs.items():
        if value is None:
            continue
        name = "class" if key == "cls" else key.replace("_", "-")
        out.append(f' {name}="{_esc(value)}"')
    return "".join(out)


def _cell(row: dict[str, Any] | None, meter_id: str, day: dt.date, *, tip_left: bool) -> str:
    pct = row["deviation_pct"] if row else None
    dev = row["deviation_m3"] if row else None
    colour = deviation_colour(pct)
    deviation = ("no value" if dev is None else f"{dev:+,.1f} m³".replace(",", "\u2009")) + (
        "" if pct is None else f" ({pct:+.1f} %)"
    )
    tip = (
        f'<div class="{"deviation-tip tip-left" if tip_left else "deviation-tip"}">'
        f'<div class="deviation-tip-title">{_esc(meter_id)} · {day:%a %d %b %Y} (UTC day)</div>'
        f"<div>Actual: <b>{_esc(_fmt_m3(row['actual_m3'] if row else None))}</b></div>"
        f"<div>Expected: <b>{_esc(_fmt_m3(row['expected_m3'] if row else None))}</b></div>"
        f"<div>Deviation: <b>{_esc(deviation)}</b></div></div>"
    )
    attrs = _attrs(
        id=f"deviation-cell-{meter_id}-{day_key(day)}",
        cls="deviation-cell",
        data_meter=meter_id,
        data_day=day.isoformat(),
        style=f"background-color:{colour};color:{text_colour(colour)}",
    )
    return f"<td{attrs}>{_esc(_pct_text(pct))}{tip}</td>"


def deviation_grid_html(
    table: pl.DataFrame,
    *,
    days: list[dt.date] | None = None,
    company_names: dict[str, str] | None = None,
    branch_counts: dict[tuple[str | None, str | None], int] | None = None,
) -> str:
    """The markup of a deviation table: metering points (grouped by branch) × days.

    Parameters
    ----------
    table
        The frame of :func:`analytics.deviation_table` (UTC days), e.g. one page of it.
    days
        The day columns to show (default: every day in ``table``); a day without a row
        for a meter gives a grey cell.
    company_names
        ``company_id`` → name, shown in the branch header rows (default: the id).
    branch_counts
        ``(company_id, branch_id)`` → number of metering points, shown in the branch
        header rows (default: counted in ``table``; pass the totals when ``table`` is
        one page of a longer list).

    Returns
    -------
    str
        One ``<table id="deviation-table">`` element (no newlines; every text from the
        data escaped).  One header row per branch (with its company), then one row per
        metering point: its id links to the forecast page, and each day cell
        (``class="deviation-cell"``, ``id="deviation-cell-<meter>-<yyyymmdd>"``,
        ``data-meter``, ``data-day``) shows the rounded deviation in percent on a
        background coloured green → amber → red by ``|deviation_pct|`` (grey when
        missing), with a CSS hover tooltip (``class="deviation-tip"``) giving actual,
        expected and deviation in m³.

    Notes
    -----
    The browser builds thousands of table cells from one string in a fraction of a
    second, whereas the same table as one Dash component per element (about ten per
    cell with its tooltip) kept the Dash renderer busy for minutes.
    """
    if days is None:
        days = sorted(set(table.get_column("day").drop_nulls().to_list()))
    cells = {
        (r["meter_id"], r["day"]): r
        for r in table.select(
            "meter_id", "day", "actual_m3", "expected_m3", "deviation_m3", "deviation_pct"
        ).iter_rows(named=True)
        if r["day"] is not None
    }
    months: list[tuple[str, int]] = []
    for day in days:
        label = f"{day:%B %Y}"
        if months and months[-1][0] == label:
            months[-1] = (label, months[-1][1] + 1)
        else:
            months.append((label, 1))
    weekend = {d for d in days if d.weekday() >= 5}
    out = ['<table id="deviation-table" class="deviation-table"><thead><tr>']
    out.append('<th rowspan="2" class="deviation-meter-head">Metering point</th>')
    out.append('<th rowspan="2">Name</th><th rowspan="2">Category</th>')
    out.extend(f'<th colspan="{n}" class="deviation-month">{_esc(m)}</th>' for m, n in months)
    out.append("</tr><tr>")
    out.extend(
        f'<th class="deviation-day{" weekend" if d in weekend else ""}">'
        f'<span class="dow">{d:%a}</span><br/>{d:%d}</th>'
        for d in days
    )
    out.append("</tr></thead><tbody>")
    directory = table.unique("meter_id", keep="first", maintain_order=True)
    ncols = 3 + len(days)
    if branch_counts is None:
        branch_counts = {
            (r[0], r[1]): r[2]
            for r in directory.group_by("company_id", "branch_id").len().iter_rows()
        }
    names = company_names or {}
    tip_left_from = len(days) - _TIP_LEFT_LAST_COLUMNS
    branch_key: tuple[str | None, str | None] | None = None
    for meter in directory.iter_rows(named=True):
        key = (meter["company_id"], meter["branch_id"])
        if key != branch_key:
            branch_key = key
            count = branch_counts.get(key, 0)
            label = meter["branch_name"] or meter["branch_id"] or "no branch"
            company = names.get(meter["company_id"], meter["company_id"] or "")
            out.append(
                f'<tr class="deviation-branch-row"{_attrs(data_branch=meter["branch_id"] or "")}>'
                f'<th colspan="{ncols}"><span class="branch-name">{_esc(label)}</span>'
                f'<span class="branch-meta">{_esc(company)} · {count} metering '
                f"point{'s' if count != 1 else ''}</span></th></tr>"
            )
        mid = meter["meter_id"]
        name = meter["meter_name"] or ""
        out.append(
            f"<tr{_attrs(id=f'deviation-row-{mid}', cls='deviation-row')}>"
            f'<td class="deviation-meter"><dccLink{_attrs(href=meter_href(mid), className="meter-link")}>'
            f"{_esc(mid)}</dccLink></td>"
            f'<td class="deviation-name"{_attrs(title=name)}>{_esc(name)}</td>'
            f'<td class="deviation-category">{_esc(meter["category"] or "")}</td>'
        )
        out.extend(
            _cell(cells.get((mid, d)), mid, d, tip_left=i >= tip_left_from)
            for i, d in enumerate(days)
        )
        out.append("</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def meter_href(meter_id: str) -> str:
    """The forecast page of one metering point."""
    return f"/forecast?meter={quote(meter_id, safe='')}"


def deviation_grid(
    table: pl.DataFrame,
    *,
    days: list[dt.date] | None = None,
    company_names: dict[str, str] | None = None,
    branch_counts: dict[tuple[str | None, str | None], int] | None = None,
) -> dcc.Markdown:
    """The deviation table of :func:`deviation_grid_html` as one Dash component.

    The markup goes into a single ``dcc.Markdown`` (``id="deviation-grid"``) with
    ``dangerously_allow_html``: safe because every text from the data is escaped,
    and ``dcc.Markdown`` drops ``<script>`` and ``on*`` attributes besides.  The
    metering point links are ``dccLink`` elements, which ``dcc.Markdown`` renders as
    ``dcc.Link`` (navigation without reloading the app).
    """
    return dcc.Markdown(
        deviation_grid_html(
            table, days=days, company_names=company_names, branch_counts=branch_counts
        ),
        id="deviation-grid",
        className="deviation-grid",
        dangerously_allow_html=True,
        dedent=False,
    )


def legend_steps() -> list[tuple[str, str]]:
    """``(label, colour)`` pairs for the colour legend of the deviation table."""
    steps = [(f"≤ {GREEN_PCT:g} %", deviation_colour(0.0))]
    mid = (GREEN_PCT + RED_PCT) / 2
    for pct in ((GREEN_PCT + mid) / 2, mid, (mid + RED_PCT) / 2):
        steps.append((f"{pct:g} %", deviation_colour(pct)))
    steps.append((f"≥ {RED_PCT:g} %", deviation_colour(RED_PCT)))
    steps.append(("no value", deviation_colour(None)))
    return steps


def _local(frame: pl.DataFrame, time_zone: str) -> pl.DataFrame:
    # Plotly draws naive datetimes as they are: convert UTC to the local wall clock.
    return frame.with_columns(
        pl.col("ts").dt.convert_time_zone(time_zone).dt.replace_time_zone(None)
    )


def forecast_figure(
    history: pl.DataFrame,
    forecast: pl.DataFrame,
    temperature: pl.DataFrame,
    *,
    cutoff: dt.datetime | None,
    time_zone: str = "UTC",
    title: str = "",
) -> go.Figure:
    """Actual hourly consumption, backcast/forecast with its 80 % band, and temperature.

    Parameters
    ----------
    history
        ``ts`` (UTC hour start), ``volume_m3`` (m³ per hour; null = missing).
    forecast
        ``ts`` (UTC), ``volume_m3``, ``volume_m3_lo_80``, ``volume_m3_hi_80`` of one run;
        rows before ``cutoff`` are its backcast.  May be empty.
    temperature
        ``ts`` (UTC), ``temperature_c``: outdoor temperature, drawn on a second y-axis.
    cutoff
        The run's cutoff (UTC), marked by a vertical line; None without a forecast.
    time_zone
        IANA zone the x-axis is shown in (the metering point's local time).
    title
        Figure title.

    Returns
    -------
    plotly.graph_objects.Figure
        Traces, in order: the band's lower and upper bound (filled between), the
        actual consumption, the backcast, the forecast and the temperature (``y2``).
    """
    hist = _local(history.sort("ts"), time_zone)
    fc = _local(forecast.sort("ts"), time_zone)
    temp = _local(temperature.sort("ts"), time_zone)
    fig = go.Figure()
    fig.add_trace(
        go.Scatter(
            x=fc["ts"],
            y=fc["volume_m3_lo_80"],
            name=TRACE_BAND_LO,
            mode="lines",
            line={"width": 0, "color": BAND_COLOUR},
            showlegend=False,
            hoverinfo="skip",
        )
    )
    fig.add_trace(
        go.Scatter(
            x=fc["ts"],
            y=fc["volume_m3_hi_80"],
            name=TRACE_BAND_HI,
            mode="lines",
            line={"width": 0, "color": BAND_COLOUR},
            fill="tonexty",
            fillcolor=BAND_COLOUR,
            hoverinfo="skip",
        )
    )
    fig.add_trace(
        go.Scatter(
            x=hist["ts"],
            y=hist["volume_m3"],
            name=TRACE_ACTUAL,
            mode="lines",
            line={"color": ACTUAL_COLOUR, "width": 1.6},
            hovertemplate="%{y:.2f} m³/h<extra>actual</extra>",
        )
    )
    if cutoff is not None:
        cut_local = _local(
            pl.DataFrame({"ts": [cutoff]}, schema={"ts": pl.Datetime("us", "UTC")}), time_zone
        )["ts"][0]
        back = fc.filter(pl.col("ts") < cut_local)
        ahead = fc.filter(pl.col("ts") >= cut_local)
    else:
        cut_local, back, ahead = None, fc, fc.clear()
    fig.add_trace(
        go.Scatter(
            x=back["ts"],
            y=back["volume_m3"],
            name=TRACE_BACKCAST,
            mode="lines",
            line={"color": EXPECTED_COLOUR, "width": 1.6, "dash": "dot"},
            hovertemplate="%{y:.2f} m³/h<extra>expected</extra>",
        )
    )
    fig.add_trace(
        go.Scatter(
            x=ahead["ts"],
            y=ahead["volume_m3"],
            name=TRACE_FORECAST,
            mode="lines",
            line={"color": FORECAST_COLOUR, "width": 2.2},
            hovertemplate="%{y:.2f} m³/h<extra>forecast</extra>",
        )
    )
    fig.add_trace(
        go.Scatter(
            x=temp["ts"],
            y=temp["temperature_c"],
            name=TRACE_TEMPERATURE,
            mode="lines",
            line={"color": TEMPERATURE_COLOUR, "width": 1.2, "dash": "dash"},
            yaxis="y2",
            opacity=0.8,
            hovertemplate="%{y:.1f} °C<extra>temperature</extra>",
        )
    )
    if cut_local is not None:
        fig.add_shape(
            type="line",
            xref="x",
            yref="paper",
            x0=cut_local,
            x1=cut_local,
            y0=0,
            y1=1,
            line={"color": "#6b7785", "width": 1.5, "dash": "dash"},
        )
        fig.add_annotation(
            x=cut_local,
            y=1,
            xref="x",
            yref="paper",
            text="cutoff",
            showarrow=False,
            xanchor="left",
            yanchor="bottom",
            font={"color": "#6b7785", "size": 11},
        )
    fig.update_layout(
        title={"text": title, "x": 0.01, "xanchor": "left"},
        template="plotly_white",
        hovermode="x unified",
        margin={"l": 60, "r": 60, "t": 70, "b": 50},
        legend={
            "orientation": "h",
            "yanchor": "bottom",
            "y": 1.02,
            "xanchor": "right",
            "x": 1,
            "traceorder": "normal",
        },
        xaxis={"title": {"text": f"Local time ({time_zone})"}},
        yaxis={"title": {"text": "Consumption, m³/h"}, "rangemode": "tozero"},
        yaxis2={
            "title": {"text": "Outdoor temperature, °C", "font": {"color": TEMPERATURE_COLOUR}},
            "overlaying": "y",
            "side": "right",
            "showgrid": False,
            "tickfont": {"color": TEMPERATURE_COLOUR},
            "tickmode": "auto",
            "tickformat": ".0f",
        },
    )
    return fig


def message_figure(text: str) -> go.Figure:
    """An empty figure carrying one centred message (no data, unknown meter…)."""
    fig = go.Figure()
    fig.add_annotation(
        text=text, x=0.5, y=0.5, xref="paper", yref="paper", showarrow=False, font={"size": 15}
    )
    fig.update_layout(template="plotly_white", xaxis={"visible": False}, yaxis={"visible": False})
    return fig
