"""Pages and the data layer: layouts and callbacks called directly on a tiny in-memory store."""

from __future__ import annotations

import datetime as dt
import sys
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import dash
import numpy as np
import plotly.graph_objects as go
import polars as pl
import pytest
from dash import dcc

from dashboards import data
from dashboards.app import create_app
from warehouse import Store, open_store

UTC = dt.UTC
CUTOFF = dt.datetime(2025, 1, 20, tzinfo=UTC)
DAYS = 4


def _fill(store: Store) -> None:
    store.write(
        "companies",
        pl.DataFrame(
            {
                "company_id": ["C1"],
                "name": ["Gorgaz"],
                "time_zone": ["Europe/Moscow"],
                "contract_hour": [10],
            }
        ),
    )
    store.write(
        "branches",
        pl.DataFrame(
            {
                "branch_id": ["B1", "B2"],
                "company_id": ["C1", "C1"],
                "name": ["North", "South"],
                "weather_station": ["W1", "W1"],
            }
        ),
    )
    store.write(
        "metering_points",
        pl.DataFrame(
            {
                "meter_id": ["M1", "M2"],
                "branch_id": ["B1", "B2"],
                "name": ["School", "Bakery"],
                "resource": "gas",
                "category": ["municipal", "commercial"],
                "time_zone": "Europe/Moscow",
                "contract_hour": 10,
            }
        ),
    )
    hours = [
        CUTOFF - dt.timedelta(days=DAYS) + dt.timedelta(hours=h) for h in range(DAYS * 24 + 12)
    ]
    past = [h for h in hours if h < CUTOFF]
    store.write(
        "weather",
        pl.DataFrame({"station_id": "W1", "ts": hours, "temperature_c": -5.0, "quality": "valid"}),
    )
    # M1 uses 10 % more than expected every day; M2 exactly as expected.
    store.write(
        "hourly_archive",
        pl.concat(
            [
                pl.DataFrame(
                    {
                        "meter_id": "M1",
                        "ts": past,
                        "volume_m3": 2.2,
                        "quality": "valid",
                        "source": "register",
                    }
                ),
                pl.DataFrame(
                    {
                        "meter_id": "M2",
                        "ts": past,
                        "volume_m3": 1.0,
                        "quality": "valid",
                        "source": "register",
                    }
                ),
            ]
        ),
    )
    store.write(
        "forecasts",
        pl.concat(
            [
                pl.DataFrame(
                    {
                        "meter_id": m,
                        "ts": hours,
                        "model": "hdd",
                        "cutoff": CUTOFF,
                        "volume_m3": v,
                        "volume_m3_lo_80": v * 0.9,
                        "volume_m3_hi_80": v * 1.1,
                        "temperature_c": -5.0,
                    }
                )
                for m, v in (("M1", 2.0), ("M2", 1.0))
            ]
        ),
    )
    store.refresh_rollups()


@pytest.fixture
def filled() -> Iterator[Store]:
    with open_store(path=":memory:") as store:
        store.migrate()
        _fill(store)
        yield store


@pytest.fixture
def empty() -> Iterator[Store]:
    with open_store(path=":memory:") as store:
        store.migrate()
        yield store


def _page(path: str) -> ModuleType:
    module = next(p["module"] for p in dash.page_registry.values() if p["path"] == path)
    return sys.modules[module]


def _texts(node: Any) -> str:
    if isinstance(node, str | int | float):
        return str(node)
    children = getattr(node, "children", None)
    if children is None:
        return ""
    if isinstance(children, list | tuple):
        return " ".join(_texts(c) for c in children)
    return _texts(children)


@pytest.mark.parametrize("path", ["/", "/forecast"])
def test_empty_store_shows_a_friendly_message(empty: Store, path: str) -> None:
    app = create_app(empty)
    with app.server.test_request_context():
        page = _page(path).layout()
    assert "No data yet" in _texts(page) and "askug demo" in _texts(page)


def test_store_without_schema_shows_the_message_too() -> None:
    with open_store(path=":memory:") as store:
        app = create_app(store)
        with app.server.test_request_context():
            assert "askug demo" in _texts(_page("/").layout())


def test_pages_are_served_by_the_app(filled: Store) -> None:
    client = create_app(filled).server.test_client()
    for path in ("/", "/forecast?meter=M1"):
        response = client.get(path)
        assert response.status_code == 200
        assert b"askug" in response.data


def test_deviation_callback_builds_the_table_and_filters(filled: Store) -> None:
    app = create_app(filled)
    page = _page("/")
    with app.server.test_request_context():
        layout = page.layout()
        assert "North (Gorgaz)" in str(layout)  # branch filter options name the company
        grid, summary, number, pages, count, shown, *disabled = page.update_table(14, None, None)
        only_south = page.update_table(14, ["B2"], None)[0]
        only_municipal = page.update_table(14, None, ["municipal"])[0]
        searched = page.update_table(14, None, None, "bAkErY")[0]
    assert isinstance(grid, dcc.Markdown) and 'id="deviation-table"' in grid.children
    text = grid.children
    # M1: 24 h x 2.2 m3 actual against 24 h x 2.0 m3 expected = +10 %
    assert "deviation-cell-M1-20250119" in text and "+10" in text
    assert "deviation-cell-M2-20250116" in text
    assert summary.startswith("2 metering points, 16 Jan – 19 Jan 2025")
    assert (number, pages, count, shown) == (1, 1, "of 1", "metering points 1–2 of 2")
    assert disabled == [True, True, True, True]
    assert "M1" not in only_south.children and "M2" in only_south.children
    assert "M2" not in only_municipal.children
    assert "M1" not in searched.children and "M2" in searched.children


@pytest.fixture
def deviation_page(filled: Store) -> ModuleType:
    create_app(filled)  # registers the pages
    return _page("/")


def test_deviation_table_view_pages_through_the_meters(
    filled: Store, deviation_page: ModuleType
) -> None:
    frame = data.DashboardData(filled).deviations(days=14)
    page = deviation_page
    first = page.table_view(frame, branch_ids=None, categories=None, page=1, page_size=1)
    second = page.table_view(frame, branch_ids=None, categories=None, page=2, page_size=1)
    beyond = page.table_view(frame, branch_ids=None, categories=None, page=99, page_size=1)
    none = page.table_view(frame, branch_ids=None, categories=None, search="nope")
    assert (first.page, first.pages, first.first, first.last, first.meters) == (1, 2, 1, 1, 2)
    assert "deviation-cell-M1-" in first.grid.children
    assert "deviation-cell-M2-" not in first.grid.children
    assert "deviation-cell-M2-" in second.grid.children and second.first == 2
    assert beyond.page == 2  # clamped to the last page
    assert none.meters == 0 and none.pages == 1 and "No metering point" in none.summary
    assert first.summary.startswith("2 metering points")  # all pages, not one


@pytest.mark.parametrize(
    ("trigger", "page", "expected"),
    [
        (None, 3, 3),  # first call: keep the page
        ("deviation-page", 4, 4),
        ("deviation-page-first", 4, 1),
        ("deviation-page-prev", 4, 3),
        ("deviation-page-next", 4, 5),
        ("deviation-branch", 4, 1),  # a filter change starts again
        ("deviation-page", None, 1),
    ],
)
def test_deviation_pager_moves(
    deviation_page: ModuleType, trigger: str | None, page: int | None, expected: int
) -> None:
    assert deviation_page.next_page(trigger, page) == expected
    assert deviation_page.next_page("deviation-page-last", 1) > 10**6  # clamped by table_view


def test_forecast_callback_draws_the_meter(filled: Store) -> None:
    app = create_app(filled)
    page = _page("/forecast")
    with app.server.test_request_context():
        layout = page.layout(meter="M2")
        default = page.layout()
        fig, details = page.update_graph("M2")
        unknown, none_details = page.update_graph("M9")
        assert page.remember_meter("M2") == {"meter": "M2"}
    assert "'value': 'M2'" in str(layout) or "value='M2'" in str(layout)
    assert "value='M1'" in str(default) or "'value': 'M1'" in str(default)
    assert isinstance(fig, go.Figure)
    by_name = {t.name: t for t in fig.data}
    assert len(by_name["Actual"].x) == DAYS * 24
    assert len(by_name["Forecast"].x) == 12
    assert np.allclose(np.asarray(by_name["Expected (backcast)"].y, dtype=float), 1.0)
    assert "model hdd" in details and "Europe/Moscow" in details
    assert unknown.layout.annotations[0].text == "Unknown metering point M9" and none_details == ""


def test_data_layer_window_ends_on_the_last_comparable_day(filled: Store) -> None:
    src = data.DashboardData(filled)
    table = src.deviations(days=2)
    assert sorted(set(table.get_column("day").to_list())) == [
        dt.date(2025, 1, 18),
        dt.date(2025, 1, 19),
    ]
    assert table.filter(pl.col("meter_id") == "M1").get_column("deviation_pct").to_list() == [
        pytest.approx(10.0),
        pytest.approx(10.0),
    ]
    assert src.latest_day() == dt.date(2025, 1, 19)
    view = src.forecast("M1")
    assert view is not None and view.cutoff == CUTOFF and view.model == "hdd"
    assert src.forecast("nope") is None
    assert src.problem() is None


def test_current_needs_an_app_built_by_create_app() -> None:
    app = dash.Dash(__name__)
    with app.server.test_request_context(), pytest.raises(RuntimeError, match="create_app"):
        data.current()
