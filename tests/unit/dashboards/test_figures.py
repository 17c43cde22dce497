"""Figures and the deviation table's HTML are pure functions of frames."""

from __future__ import annotations

import datetime as dt
from html.parser import HTMLParser

import plotly.graph_objects as go
import polars as pl
from dash import dcc

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


class _Grid(HTMLParser):
    """The elements of the grid markup: (tag, attributes, text inside)."""

    def __init__(self, markup: str) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict[str, str], list[str]]] = []
        self._open: list[list[str]] = []
        self.feed(markup)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, {k: v or "" for k, v in attrs}, []))
        if tag != "br":
            self._open.append(self.elements[-1][2])

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, {k: v or "" for k, v in attrs}, []))

    def handle_endtag(self, tag: str) -> None:
        self._open.pop()

    def handle_data(self, data: str) -> None:
        for texts in self._open:
            texts.append(data)

    def find(self, tag: str, cls: str | None = None) -> list[tuple[dict[str, str], str]]:
        return [
            (attrs, "".join(texts))
            for t, attrs, texts in self.elements
            if t == tag and (cls is None or cls in attrs.get("class", "").split())
        ]


def test_deviation_grid_groups_by_branch_and_colours_cells() -> None:
    grid = figures.deviation_grid(_deviation_frame(), company_names={"C1": "Gorgaz"})
    props = grid.to_plotly_json()["props"]
    assert isinstance(grid, dcc.Markdown) and props["id"] == "deviation-grid"
    assert props["dangerously_allow_html"] is True
    markup = props["children"]
    assert "\n" not in markup  # one HTML block: a blank line would end it
    assert "Gorgaz · 2 metering points" not in markup  # one meter per branch here
    assert "Gorgaz · 1 metering point" in markup
    parsed = _Grid(markup)
    ((table, _),) = parsed.find("table")
    assert table["id"] == "deviation-table"
    assert [text for _, text in parsed.find("span", "branch-name")] == ["North", "South"]
    cells = {attrs["id"]: (attrs, text) for attrs, text in parsed.find("td", "deviation-cell")}
    # 2 meters x 2 days; M2 has no row for the 19th: a grey cell all the same
    assert set(cells) == {
        "deviation-cell-M1-20250118",
        "deviation-cell-M1-20250119",
        "deviation-cell-M2-20250118",
        "deviation-cell-M2-20250119",
    }
    red, red_text = cells["deviation-cell-M1-20250118"]
    assert red["data-meter"] == "M1" and red["data-day"] == "2025-01-18"
    assert red["style"].startswith(f"background-color:{RED};") and RED == deviation_colour(50.0)
    assert red_text.startswith("+50M1 · Sat 18 Jan 2025")
    assert cells["deviation-cell-M1-20250119"][1].startswith("+1M1")
    assert cells["deviation-cell-M2-20250118"][0]["style"].startswith(f"background-color:{GREY};")
    assert cells["deviation-cell-M2-20250119"][0]["style"].startswith(f"background-color:{GREY};")
    # the tooltip of the red cell: actual, expected, deviation
    tip = _Grid(markup.split('id="deviation-cell-M1-20250118"')[1].split("</td>")[0])
    assert [text for _, text in tip.find("b")] == ["150.0 m³", "100.0 m³", "+50.0 m³ (+50.0 %)"]
    assert tip.find("div", "deviation-tip")
    links = parsed.find("dcclink")  # rendered by dcc.Markdown as a dcc.Link
    assert [(attrs["href"], text) for attrs, text in links] == [
        ("/forecast?meter=M1", "M1"),
        ("/forecast?meter=M2", "M2"),
    ]


def test_deviation_grid_escapes_text_from_the_data() -> None:
    frame = _deviation_frame().with_columns(
        pl.lit('<script>alert("x")</script>{1+1} & co').alias("meter_name"),
        pl.lit("Nord {branch}").alias("branch_name"),
        pl.col("meter_id").replace({"M1": "M&1"}),
    )
    markup = figures.deviation_grid_html(frame)
    for raw in ("<script", "{", "}", 'M&1"', 'alert("'):
        assert raw not in markup
    parsed = _Grid(markup)
    names = {text for _, text in parsed.find("td", "deviation-name")}
    assert names == {'<script>alert("x")</script>{1+1} & co'}
    assert next(attrs["href"] for attrs, _ in parsed.find("dcclink")) == "/forecast?meter=M%261"
    assert {attrs["data-meter"] for attrs, _ in parsed.find("td", "deviation-cell")} == {
        "M&1",
        "M2",
    }


def test_deviation_grid_counts_branches_given_for_a_page() -> None:
    frame = _deviation_frame().filter(pl.col("meter_id") == "M1")
    markup = figures.deviation_grid_html(frame, branch_counts={("C1", "B1"): 120})
    assert "C1 · 120 metering points" in markup


def test_deviation_grid_of_an_empty_frame_is_an_empty_table() -> None:
    parsed = _Grid(figures.deviation_grid_html(_deviation_frame().clear()))
    assert parsed.find("table") and not parsed.find("td")


def test_legend_and_text_colour() -> None:
    steps = figures.legend_steps()
    assert steps[0][1] == deviation_colour(0.0) and steps[-1] == ("no value", GREY)
    assert figures.text_colour("#ffffff") == "#1b1f23"
    assert figures.text_colour("#000000") == "#ffffff"


def test_message_figure_has_no_axes() -> None:
    fig = figures.message_figure("Choose a metering point")
    assert fig.layout.annotations[0].text == "Choose a metering point"
    assert fig.layout.xaxis.visible is False
