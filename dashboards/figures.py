"""Pure presentation: frames in, plotly figures and table properties out.

Nothing here reads a store; every function can be called in a notebook or a unit test.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

import plotly.graph_objects as go
import polars as pl

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

#: Steps of the colour scale used for table cells: level 0 is ≤ GREEN_PCT, the last
#: level ≥ RED_PCT.  Quantising keeps the table's style rules per column, not per cell.
COLOUR_LEVELS = 11
_MISSING_LEVEL = -1
_DIRECTORY_COLUMNS = (
    {"id": "company", "name": ["", "Company"]},
    {"id": "branch", "name": ["", "Branch"]},
    {"id": "meter", "name": ["", "Metering point"], "presentation": "markdown"},
    {"id": "meter_name", "name": ["", "Name"]},
    {"id": "category", "name": ["", "Category"]},
)


def _level(pct: float | None) -> int:
    if pct is None or pct != pct:
        return _MISSING_LEVEL
    x = min(max(abs(pct), GREEN_PCT), RED_PCT)
    return round((x - GREEN_PCT) / (RED_PCT - GREEN_PCT) * (COLOUR_LEVELS - 1))


def level_colour(level: int) -> str:
    """The background colour of a quantised deviation level (-1 = missing)."""
    if level == _MISSING_LEVEL:
        return deviation_colour(None)
    return deviation_colour(GREEN_PCT + level * (RED_PCT - GREEN_PCT) / (COLOUR_LEVELS - 1))


def _text_colour(level: int) -> str:
    return "#ffffff" if level >= COLOUR_LEVELS - 3 else "#1b1f23"


def day_column_id(day: dt.date) -> str:
    """The DataTable column id of a day, e.g. ``d20261103``."""
    return f"d{day:%Y%m%d}"


@dataclass
class DeviationGrid:
    """Properties for a ``dash_table.DataTable`` showing meters × days.

    Attributes
    ----------
    columns, data, style_data_conditional, tooltip_data
        Passed to the DataTable unchanged.
    days
        The day columns, oldest first.
    """

    columns: list[dict[str, Any]] = field(default_factory=list)
    data: list[dict[str, Any]] = field(default_factory=list)
    style_data_conditional: list[dict[str, Any]] = field(default_factory=list)
    tooltip_data: list[dict[str, Any]] = field(default_factory=list)
    days: list[dt.date] = field(default_factory=list)


def _fmt_m3(value: float | None) -> str:
    return "no value" if value is None else f"{value:,.1f} m³".replace(",", " ")


def deviation_grid(table: pl.DataFrame, *, days: list[dt.date] | None = None) -> DeviationGrid:
    """Pivot a deviation table to one row per metering point and one column per day.

    Parameters
    ----------
    table
        The frame of :func:`analytics.deviation_table` (UTC days).
    days
        The day columns to show (default: every day in ``table``); days without a row
        give grey cells.

    Returns
    -------
    DeviationGrid
        Each day cell holds the rounded deviation in percent (text), is coloured
        green → amber → red by ``|deviation_pct|`` (grey when missing) and has a
        tooltip with the actual, expected and deviation volumes in m³.
    """
    if days is None:
        days = sorted(set(table.get_column("day").to_list()))
    grid = DeviationGrid(days=days)
    grid.columns = list(_DIRECTORY_COLUMNS)
    for day in days:
        grid.columns.append(
            {"id": day_column_id(day), "name": [f"{day:%B %Y}", f"{day:%a %d}"]}
        )
    cells = {
        (r["meter_id"], r["day"]): r for r in table.iter_rows(named=True) if r["day"] is not None
    }
    directory = table.unique("meter_id", keep="first", maintain_order=True)
    for meter in directory.iter_rows(named=True):
        mid = meter["meter_id"]
        row: dict[str, Any] = {
            "id": mid,  # DataTable row id: active_cell carries it as row_id
            "meter_id": mid,
            "company": meter["company_id"] or "",
            "branch": meter["branch_name"] or meter["branch_id"] or "",
            "meter": f"[{mid}](/forecast?meter={mid})",
            "meter_name": meter["meter_name"] or "",
            "category": meter["category"] or "",
        }
        tips: dict[str, Any] = {}
        for day in days:
            col = day_column_id(day)
            cell = cells.get((mid, day))
            pct = cell["deviation_pct"] if cell else None
            row[col] = "" if pct is None else f"{pct:+.0f}"
            row[f"l{col[1:]}"] = _level(pct)
            actual = cell["actual_m3"] if cell else None
            expected = cell["expected_m3"] if cell else None
            dev = cell["deviation_m3"] if cell else None
            lines = [
                f"**{mid}**, {day:%a %d %b %Y} (UTC day)",
                f"Actual: {_fmt_m3(actual)}",
                f"Expected: {_fmt_m3(expected)}",
                "Deviation: "
                + ("no value" if dev is None else f"{dev:+,.1f} m³".replace(",", " "))
                + ("" if pct is None else f" ({pct:+.1f} %)"),
            ]
            tips[col] = {"value": "\n\n".join(lines), "type": "markdown"}
        grid.data.append(row)
        grid.tooltip_data.append(tips)
    for day in days:
        col = day_column_id(day)
        for level in range(_MISSING_LEVEL, COLOUR_LEVELS):
            grid.style_data_conditional.append(
                {
                    "if": {"column_id": col, "filter_query": f"{{l{col[1:]}}} = {level}"},
                    "backgroundColor": level_colour(level),
                    "color": _text_colour(level),
                }
            )
    return grid


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
    return frame.with_columns(pl.col("ts").dt.convert_time_zone(time_zone).dt.replace_time_zone(None))


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
            x=fc["ts"], y=fc["volume_m3_lo_80"], name=TRACE_BAND_LO, mode="lines",
            line={"width": 0, "color": BAND_COLOUR}, showlegend=False, hoverinfo="skip",
        )
    )
    fig.add_trace(
        go.Scatter(
            x=fc["ts"], y=fc["volume_m3_hi_80"], name=TRACE_BAND_HI, mode="lines",
            line={"width": 0, "color": BAND_COLOUR}, fill="tonexty", fillcolor=BAND_COLOUR,
            hoverinfo="skip",
        )
    )
    fig.add_trace(
        go.Scatter(
            x=hist["ts"], y=hist["volume_m3"], name=TRACE_ACTUAL, mode="lines",
            line={"color": ACTUAL_COLOUR, "width": 1.6},
            hovertemplate="%{y:.2f} m³/h<extra>actual</extra>",
        )
    )
    if cutoff is not None:
        cut_local = _local(pl.DataFrame({"ts": [cutoff]}, schema={"ts": pl.Datetime("us", "UTC")}), time_zone)["ts"][0]
        back = fc.filter(pl.col("ts") < cut_local)
        ahead = fc.filter(pl.col("ts") >= cut_local)
    else:
        cut_local, back, ahead = None, fc, fc.clear()
    fig.add_trace(
        go.Scatter(
            x=back["ts"], y=back["volume_m3"], name=TRACE_BACKCAST, mode="lines",
            line={"color": EXPECTED_COLOUR, "width": 1.6, "dash": "dot"},
            hovertemplate="%{y:.2f} m³/h<extra>expected</extra>",
        )
    )
    fig.add_trace(
        go.Scatter(
            x=ahead["ts"], y=ahead["volume_m3"], name=TRACE_FORECAST, mode="lines",
            line={"color": FORECAST_COLOUR, "width": 2.2},
            hovertemplate="%{y:.2f} m³/h<extra>forecast</extra>",
        )
    )
    fig.add_trace(
        go.Scatter(
            x=temp["ts"], y=temp["temperature_c"], name=TRACE_TEMPERATURE, mode="lines",
            line={"color": TEMPERATURE_COLOUR, "width": 1.2, "dash": "dash"}, yaxis="y2",
            opacity=0.8, hovertemplate="%{y:.1f} °C<extra>temperature</extra>",
        )
    )
    if cut_local is not None:
        fig.add_shape(
            type="line", xref="x", yref="paper", x0=cut_local, x1=cut_local, y0=0, y1=1,
            line={"color": "#6b7785", "width": 1.5, "dash": "dash"},
        )
        fig.add_annotation(
            x=cut_local, y=1, xref="x", yref="paper", text="cutoff", showarrow=False,
            xanchor="left", yanchor="bottom", font={"color": "#6b7785", "size": 11},
        )
    fig.update_layout(
        title={"text": title, "x": 0.01, "xanchor": "left"},
        template="plotly_white",
        hovermode="x unified",
        margin={"l": 60, "r": 60, "t": 70, "b": 50},
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.02, "xanchor": "right", "x": 1},
        xaxis={"title": {"text": f"Local time ({time_zone})"}},
        yaxis={"title": {"text": "Consumption, m³/h"}, "rangemode": "tozero"},
        yaxis2={
            "title": {"text": "Outdoor temperature, °C", "font": {"color": TEMPERATURE_COLOUR}},
            "overlaying": "y", "side": "right", "showgrid": False,
            "tickfont": {"color": TEMPERATURE_COLOUR},
        },
    )
    return fig


def message_figure(text: str) -> go.Figure:
    """An empty figure carrying one centred message (no data, unknown meter…)."""
    fig = go.Figure()
    fig.add_annotation(text=text, x=0.5, y=0.5, xref="paper", yref="paper", showarrow=False, font={"size": 15})
    fig.update_layout(template="plotly_white", xaxis={"visible": False}, yaxis={"visible": False})
    return fig
