"""Figures and the deviation table's HTML are pure functions of frames."""

from __future__ import annotations

import datetime as dt
from typing import Any

import plotly.graph_objects as go
import polars as pl
from dash import dcc, html

from analytics import GREY, RED, deviation_colour
from dashboards import figures

UTC = dt.UTC
TS = pl.Datetime("us", "UTC")
CUTOFF = dt.datetime(2025, 1, 20, tzinfo=UTC)


def _hours(start: dt.datetime, n: int) -> list[dt.datetime]:
    return [start + dt.timedelta(hours=h) for h in range(n)]


def _forecast_inputs() -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    hist_ts = _hours(CUTOFF - dt.timedelta(hours=24), 24)
    run_ts = _hours(CUTOFF - dt.timedelta(hours=24), 36)  # 24 h backcast + 12 h forecast
    history = pl.DataFrame({"ts": hist_ts, "volume_m3": [2.0] * 24}, schema_overrides={"ts": TS})
    forecast = pl.DataFrame(
        {
            "ts": run_ts,
            "volume_m3": [2.1] * 36,
            "volume_m3_lo_80": [1.8] * 36,
            "volume_m3_hi_80": [2.4] * 36,
        },
        schema_overrides={"ts": TS},
    )
    temperature = pl.DataFrame(
        {"ts": run_ts, "temperature_c": [-7.5] * 36}, schema_overrides={"ts": TS}
    )
    return history, forecast, temperature


def test_forecast_figure_traces_axes_and_cutoff() -> None:
    history, forecast, temperature = _forecast_inputs()
    fig = figures.forecast_figure(
        history,
        forecast,
        temperature,
        cutoff=CUTOFF,
        time_zone="Europe/Moscow",
        title="M1 · School",
    )
    assert isinstance(fig, go.Figure)
    names = [t.name for t in fig.data]
    assert names == [
        figures.TRACE_BAND_LO,
        figures.TRACE_BAND_HI,
        figures.TRACE_ACTUAL,
        figures.TRACE_BACKCAST,
        figures.TRACE_FORECAST,
        figures.TRACE_TEMPERATURE,
    ]
    by_name = {t.name: t for t in fig.data}
    assert len(by_name[figures.TRACE_ACTUAL].x) == 24
    assert len(by_name[figures.TRACE_BACKCAST].x) == 24  # ts < cutoff
    assert len(by_name[figures.TRACE_FORECAST].x) == 12  # ts >= cutoff
    assert by_name[figures.TRACE_BAND_HI].fill == "tonexty"
    assert by_name[figures.TRACE_TEMPERATURE].yaxis == "y2"
    # x is the local wall clock: UTC midnight is 03:00 in Moscow
    first = by_name[figures.TRACE_FORECAST].x[0]
    assert str(first).startswith("2025-01-20T03:00")
    layout = fig.layout
    assert "m³/h" in layout.yaxis.title.text
    assert "°C" in layout.yaxis2.title.text and layout.yaxis2.overlaying == "y"
    assert "Europe/Moscow" in layout.xaxis.title.text
    (cut,) = layout.shapes
    assert cut.x0 == cut.x1 and str(cut.x0).startswith("2025-01-20") and cut.yref == "paper"
    assert "03:00" in str(cut.x0)
    assert layout.title.text == "M1 · School"


def test_forecast_figure_without_a_forecast_still_draws_history() -> None:
    history, forecast, temperature = _forecast_inputs()
    fig = figures.forecast_figure(history, forecast.clear(), temperature, cutoff=None)
    by_name = {t.name: t for t in fig.data}
    assert len(by_name[figures.TRACE_ACTUAL].x) == 24
    assert len(by_name[figures.TRACE_FORECAST].x) == 0
    assert not fig.layout.shapes
    assert fig.layout.xaxis.title.text == "Local time (UTC)"


def _deviation_frame() -> pl.DataFrame:
    d1, d2 = dt.date(2025, 1, 18), dt.date(2025, 1, 19)
    return pl.DataFrame(
        {
            "company_id": ["C1"] * 3,
            "branch_id": ["B1", "B1", "B2"],
            "branch_name": ["North", "North", "South"],
            "meter_id": ["M1", "M1", "M2"],
            "meter_name": ["School", "School", "Bakery"],
            "category": ["municipal", "municipal", "commercial"],
            "day": [d1, d2, d1],
            "actual_m3": [150.0, 101.0, 8.0],
            "expected_m3": [100.0, 100.0, None],
            "deviation_m3": [50.0, 1.0, None],
            "deviation_pct": [50.0, 1.0, None],
        }
    )


def _walk(node: Any) -> list[Any]:
    out = [node]
    children = getattr(node, "children", None)
    if isinstance(children, list | tuple):
        for child in children:
            out.extend(_walk(child))
    elif children is not None and not isinstance(children, str | int | float):
        out.extend(_walk(children))
    return out


def test_deviation_grid_groups_by_branch_and_colours_cells() -> None:
    table = figures.deviation_grid(_deviation_frame(), company_names={"C1": "Gorgaz"})
    assert "Gorgaz · 2 metering points" not in str(table)  # one meter per branch here
    assert "Gorgaz · 1 metering point" in str(table)
    assert isinstance(table, html.Table) and table.id == "deviation-table"
    nodes = _walk(table)
    branch_rows = [
        n
        for n in nodes
        if isinstance(n, html.Tr) and getattr(n, "className", None) == "deviation-branch-row"
    ]
    assert [r.children.children[0].children for r in branch_rows] == ["North", "South"]
    cells = {
        n.id: n
        for n in nodes
        if isinstance(n, html.Td) and getattr(n, "className", None) == "deviation-cell"
    }
    # 2 meters x 2 days; M2 has no row for the 19th: a grey cell all the same
    assert set(cells) == {
        "deviation-cell-M1-20250118",
        "deviation-cell-M1-20250119",
        "deviation-cell-M2-20250118",
        "deviation-cell-M2-20250119",
    }
    red = cells["deviation-cell-M1-20250118"]
    assert red.style["backgroundColor"] == RED == deviation_colour(50.0)
    assert red.children[0] == "+50"
    assert cells["deviation-cell-M1-20250119"].children[0] == "+1"
    assert cells["deviation-cell-M2-20250118"].style["backgroundColor"] == GREY
    assert cells["deviation-cell-M2-20250119"].style["backgroundColor"] == GREY
    tip = red.children[1]
    assert tip.className.startswith("deviation-tip")
    bold = [n.children for n in _walk(tip) if isinstance(n, html.B)]
    assert bold == ["150.0 m³", "100.0 m³", "+50.0 m³ (+50.0 %)"]  # actual, expected, deviation
    links = [n for n in nodes if isinstance(n, dcc.Link)]
    assert [(link.children, link.href) for link in links] == [
        ("M1", "/forecast?meter=M1"),
        ("M2", "/forecast?meter=M2"),
    ]


def test_deviation_grid_of_an_empty_frame_is_an_empty_table() -> None:
    table = figures.deviation_grid(_deviation_frame().clear())
    body = table.children[1]
    assert body.children == []


def test_legend_and_text_colour() -> None:
    steps = figures.legend_steps()
    assert steps[0][1] == deviation_colour(0.0) and steps[-1] == ("no value", GREY)
    assert figures.text_colour("#ffffff") == "#1b1f23"
    assert figures.text_colour("#000000") == "#ffffff"


def test_message_figure_has_no_axes() -> None:
    fig = figures.message_figure("Choose a metering point")
    assert fig.layout.annotations[0].text == "Choose a metering point"
    assert fig.layout.xaxis.visible is False
