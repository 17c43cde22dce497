"""Expected consumption: the latest backcast per meter, summed to UTC days."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from analytics import EXPECTED_SCHEMA, expected_consumption, latest_backcast, latest_forecast
from warehouse import open_store

UTC = dt.UTC
DAY0 = dt.datetime(2026, 1, 10, tzinfo=UTC)


def _run(
    meter: str, model: str, cutoff: dt.datetime, start: dt.datetime, hours: int, value: float
) -> pl.DataFrame:
    ts = [start + dt.timedelta(hours=h) for h in range(hours)]
    return pl.DataFrame(
        {
            "meter_id": meter,
            "ts": ts,
            "model": model,
            "cutoff": cutoff,
            "volume_m3": [value] * hours,
            "volume_m3_lo_80": [value - 1.0] * hours,
            "volume_m3_hi_80": [value + 1.0] * hours,
            "temperature_c": [-5.0] * hours,
        },
        schema_overrides={"ts": pl.Datetime("us", "UTC"), "cutoff": pl.Datetime("us", "UTC")},
    )


def test_latest_cutoff_backcast_is_summed_to_days() -> None:
    old_cutoff = DAY0 + dt.timedelta(days=1)
    new_cutoff = DAY0 + dt.timedelta(days=2)
    rows = pl.concat(
        [
            # an older run: its backcast of day 0 must be ignored
            _run("M1", "hdd", old_cutoff, DAY0, 48, 9.0),
            # the latest run: 2 days of backcast (2.0 m3/h) and 1 day of forecast (5.0 m3/h)
            _run("M1", "hdd", new_cutoff, DAY0, 48, 2.0),
            _run("M1", "hdd", new_cutoff, new_cutoff, 24, 5.0),
        ]
    )
    got = latest_backcast(rows, freq="day")
    assert got.schema == EXPECTED_SCHEMA
    assert got.get_column("ts").to_list() == [DAY0, DAY0 + dt.timedelta(days=1)]
    # 24 h x 2.0 m3/h = 48 m3; bounds 24 x 1.0 and 24 x 3.0
    assert got.get_column("expected_m3").to_list() == [48.0, 48.0]
    assert got.get_column("expected_lo_80_m3").to_list() == [24.0, 24.0]
    assert got.get_column("expected_hi_80_m3").to_list() == [72.0, 72.0]


def test_incomplete_days_are_dropped_and_hourly_kept() -> None:
    cutoff = DAY0 + dt.timedelta(days=1, hours=6)  # backcast covers day 0 and 6 h of day 1
    rows = _run("M1", "hdd", cutoff, DAY0, 30, 1.5)
    daily = latest_backcast(rows, freq="day")
    assert daily.get_column("ts").to_list() == [DAY0]
    assert daily.get_column("expected_m3").to_list() == [36.0]
    hourly = latest_backcast(rows, freq="hour")
    assert hourly.height == 30


def test_a_null_hourly_bound_nulls_the_daily_bound() -> None:
    rows = _run("M1", "hdd", DAY0 + dt.timedelta(days=1), DAY0, 24, 1.0).with_columns(
        pl.when(pl.col("ts") == DAY0)
        .then(None)
        .otherwise(pl.col("volume_m3_hi_80"))
        .alias("volume_m3_hi_80")
    )
    got = latest_backcast(rows).row(0, named=True)
    assert got["expected_m3"] == 24.0
    assert got["expected_lo_80_m3"] == 0.0
    assert got["expected_hi_80_m3"] is None


def test_two_models_at_the_latest_cutoff_need_a_choice() -> None:
    cutoff = DAY0 + dt.timedelta(days=1)
    rows = pl.concat(
        [_run("M1", "hdd", cutoff, DAY0, 24, 1.0), _run("M1", "slp", cutoff, DAY0, 24, 2.0)]
    )
    with pytest.raises(ValueError, match="pass model="):
        latest_backcast(rows)


def test_expected_consumption_reads_the_store_and_filters_the_model() -> None:
    cutoff = DAY0 + dt.timedelta(days=1)
    with open_store(path=":memory:") as store:
        store.migrate()
        store.write(
            "forecasts",
            pl.concat(
                [_run("M1", "hdd", cutoff, DAY0, 24, 1.0), _run("M1", "slp", cutoff, DAY0, 24, 2.0)]
            ),
        )
        got = expected_consumption(store, model="slp")
        assert got.rows() == [("M1", DAY0, 48.0, 24.0, 72.0)]
        assert expected_consumption(store, model="slp", start=cutoff).height == 0
        with pytest.raises(ValueError, match="freq"):
            expected_consumption(store, freq="month")  # type: ignore[arg-type]


def test_latest_forecast_keeps_backcast_and_forecast_of_the_latest_run() -> None:
    old, new = DAY0 + dt.timedelta(hours=12), DAY0 + dt.timedelta(hours=24)
    with open_store(path=":memory:") as store:
        store.migrate()
        store.write(
            "forecasts",
            pl.concat(
                [
                    _run("M1", "hdd", old, DAY0, 36, 1.0),
                    _run("M1", "hdd", new, DAY0, 36, 2.0),
                    _run("M1", "slp", new, DAY0, 36, 3.0),  # same cutoff: "hdd" sorts first
                    _run("M2", "slp", old, DAY0, 10, 4.0),
                ]
            ),
        )
        got = latest_forecast(store)
        assert got.group_by("meter_id", "model", "cutoff").len().sort("meter_id").rows() == [
            ("M1", "hdd", new, 36),
            ("M2", "slp", old, 10),
        ]
        assert set(got.filter(pl.col("meter_id") == "M1").get_column("volume_m3")) == {2.0}
        only = latest_forecast(store, meter_ids=["M1"], model="slp")
        assert set(only.get_column("volume_m3")) == {3.0}
