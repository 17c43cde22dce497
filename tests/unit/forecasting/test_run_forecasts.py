"""run_forecasts against an in-memory DuckDB store (embedded, no server: still hermetic)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from forecasting import (
    HeatingDegreeRegression,
    InsufficientHistoryError,
    MissingTemperatureError,
    run_forecasts,
)
from warehouse import Store, open_store, validate_frame
from warehouse._schemas import FORECASTS

HOUR = dt.timedelta(hours=1)
HORIZON = 48


def _reference(store: Store, meters: list[str]) -> None:
    store.write(
        "companies",
        pl.DataFrame(
            {
                "company_id": ["gc"],
                "name": ["Gas Co"],
                "time_zone": ["Europe/Moscow"],
                "contract_hour": [10],
            }
        ),
    )
    store.write(
        "branches",
        pl.DataFrame(
            {
                "branch_id": ["north"],
                "company_id": ["gc"],
                "name": ["North"],
                "weather_station": ["WS-1"],
            }
        ),
    )
    store.write(
        "metering_points",
        pl.DataFrame(
            {
                "meter_id": meters,
                "branch_id": "north",
                "name": [f"Boiler house {m}" for m in meters],
                "resource": "gas",
                "category": "commercial",
                "time_zone": "Europe/Moscow",
                "contract_hour": 10,
            }
        ),
    )


@pytest.fixture
def store(make_series: Any) -> Iterator[tuple[Store, Any]]:
    data = make_series(n_meters=3, days=30, seed=21)
    with open_store(path=":memory:") as st:
        st.migrate()
        _reference(st, sorted(data.base_c))
        st.write("hourly_archive", data.consumption.with_columns(source=pl.lit("archive")))
        # One station for the branch; the weather table also holds the 48 h forecast.
        weather = data.temperature.filter(pl.col("meter_id") == "MP-0000").drop("meter_id")
        last = weather["ts"].max()
        ahead = weather.tail(HORIZON).with_columns(pl.col("ts") + HORIZON * HOUR)
        weather = pl.concat([weather, ahead]).with_columns(
            station_id=pl.lit("WS-1"), quality=pl.lit("valid")
        )
        st.write("weather", weather)
        yield st, (data, last)


def test_writes_backcast_and_forecast_and_is_idempotent(store: tuple[Store, Any]) -> None:
    st, (data, last) = store
    calls: list[tuple[int, int]] = []
    out = run_forecasts(
        st, progress=lambda done, total: calls.append((done, total)), chunk_meters=2
    )
    validate_frame(out, FORECASTS, cast=False)
    cutoff = last + HOUR
    assert out["cutoff"].unique().to_list() == [cutoff]
    back = out.filter(pl.col("ts") < cutoff)
    fore = out.filter(pl.col("ts") >= cutoff)
    assert back.height == data.consumption.height  # every past hour of every meter
    assert fore.height == 3 * HORIZON
    assert fore["ts"].max() == cutoff + (HORIZON - 1) * HOUR
    assert st.count("forecasts") == out.height
    assert calls == [(2, 3), (3, 3)]

    stored = st.read("forecasts").sort("meter_id", "ts")
    assert stored.equals(out.sort("meter_id", "ts"))
    again = run_forecasts(st)  # one chunk this time: same rows, same values
    assert_frame_equal(again, out, abs_tol=1e-9)
    assert st.count("forecasts") == out.height  # nothing new stored


def test_backcast_days_and_explicit_cutoff(store: tuple[Store, Any]) -> None:
    st, (_, last) = store
    cutoff = last + HOUR - dt.timedelta(days=5)
    out = run_forecasts(
        st,
        cutoff=cutoff,
        horizon_hours=24,
        backcast_days=2,
        model=HeatingDegreeRegression(smoothing_hours=12),
    )
    assert out["cutoff"].unique().to_list() == [cutoff]
    assert out.filter(pl.col("ts") < cutoff).height == 3 * 48
    assert out.filter(pl.col("ts") >= cutoff).height == 3 * 24


def test_missing_weather_for_the_horizon_is_a_clear_error(store: tuple[Store, Any]) -> None:
    st, _ = store
    with pytest.raises(MissingTemperatureError, match=r"MP-0000: .*\(2 h\).*weather"):
        run_forecasts(st, horizon_hours=HORIZON + 2)
    assert st.count("forecasts") == 0


def test_no_history_is_a_clear_error() -> None:
    with open_store(path=":memory:") as st:
        st.migrate()
        _reference(st, ["MP-9"])
        with pytest.raises(InsufficientHistoryError, match="hourly_archive"):
            run_forecasts(st)
