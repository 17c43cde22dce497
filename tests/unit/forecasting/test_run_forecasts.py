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
from forecasting.errors import UnknownScenarioError
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
    # Nothing changed since: the incremental rule skips every meter, without fitting.
    assert run_forecasts(st).height == 0
    # A full re-run (one chunk this time) computes the same rows and stores nothing new.
    again = run_forecasts(st, incremental=False)
    assert_frame_equal(again, out, abs_tol=1e-9)
    assert st.count("forecasts") == out.height


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


# --- scenarios and incremental runs -------------------------------------------------------


def _snap(cutoff: dt.datetime) -> str:
    return f"cold_snap:-25@{cutoff:%Y-%m-%dT%H}+1d"


def test_three_scenarios_side_by_side_and_rerun_stores_nothing(store: tuple[Store, Any]) -> None:
    st, (data, last) = store
    cutoff = last + HOUR
    names = ["observed", "normal-5", _snap(cutoff)]
    out = run_forecasts(st, scenarios=names)
    validate_frame(out, FORECASTS, cast=False)
    back = out.filter(pl.col("ts") < cutoff)
    fore = out.filter(pl.col("ts") >= cutoff)
    assert back.height == data.consumption.height
    assert back["scenario"].unique().to_list() == ["observed"]  # the backcast once
    assert fore.height == 3 * 3 * HORIZON  # 3 meters x 3 scenarios x the horizon
    assert fore.group_by("scenario").len().sort("scenario").rows() == sorted(
        (n, 3 * HORIZON) for n in names
    )
    assert st.count("forecasts") == out.height
    # The same fitted model: colder scenarios need more gas, the snap is -25 °C.
    total = dict(fore.group_by("scenario").agg(pl.col("volume_m3").sum()).iter_rows())
    assert total[_snap(cutoff)] > total["normal-5"] and total[_snap(cutoff)] > total["observed"]
    snap = fore.filter(pl.col("scenario") == _snap(cutoff), pl.col("ts") < cutoff + 24 * HOUR)
    assert snap["temperature_c"].unique().to_list() == [-25.0]

    assert run_forecasts(st, scenarios=names).height == 0  # up to date: nothing computed
    assert st.count("forecasts") == out.height
    # A new scenario for the same run: only its horizon is computed and stored.
    more = run_forecasts(st, scenarios=[*names, "normal"])
    assert st.count("forecasts") == out.height + 3 * HORIZON
    assert more.filter(pl.col("scenario") == "normal", pl.col("ts") >= cutoff).height == 3 * HORIZON


def test_unknown_scenario_is_a_clear_error_before_any_work(store: tuple[Store, Any]) -> None:
    st, _ = store
    with pytest.raises(UnknownScenarioError, match=r"'frosty'.*known scenarios are observed, normal"):
        run_forecasts(st, scenarios=["normal", "frosty"])
    assert st.count("forecasts") == 0


def test_incremental_recomputes_only_meters_with_new_history(store: tuple[Store, Any]) -> None:
    st, (data, last) = store
    first = run_forecasts(st, scenarios=["observed", "normal"])
    cutoff1 = last + HOUR
    # One more day arrives for MP-0001 only, and the weather forecast reaches one day further.
    day = data.consumption.filter(pl.col("meter_id") == "MP-0001").tail(24)
    st.write(
        "hourly_archive",
        day.with_columns(pl.col("ts") + 24 * HOUR, source=pl.lit("archive")),
    )
    weather = st.read("weather")
    st.write("weather", weather.tail(24).with_columns(pl.col("ts") + 24 * HOUR))
    second = run_forecasts(st, scenarios=["observed", "normal"])
    assert second["meter_id"].unique().to_list() == ["MP-0001"]
    assert second["cutoff"].unique().to_list() == [cutoff1 + 24 * HOUR]
    stored = st.read("forecasts").group_by("meter_id").agg(pl.col("cutoff").max()).sort("meter_id")
    assert stored.rows() == [
        ("MP-0000", cutoff1),
        ("MP-0001", cutoff1 + 24 * HOUR),
        ("MP-0002", cutoff1),
    ]
    assert st.count("forecasts") == first.height + second.height


def test_incremental_recomputes_when_the_weather_forecast_changes(
    store: tuple[Store, Any],
) -> None:
    st, (_, last) = store
    cutoff = last + HOUR
    run_forecasts(st)
    before = st.read("forecasts").filter(pl.col("ts") >= cutoff)
    # A new, colder weather forecast for the same horizon: same cutoff, new data.
    weather = st.read("weather")
    colder = weather.filter(pl.col("ts") >= cutoff).with_columns(pl.col("temperature_c") - 8)
    st.replace("weather", colder, where={"ts": colder["ts"].to_list()})
    again = run_forecasts(st)
    assert again.filter(pl.col("ts") >= cutoff).height == 3 * HORIZON
    after = st.read("forecasts").filter(pl.col("ts") >= cutoff)
    assert after.height == before.height  # replaced, not added
    assert after["volume_m3"].sum() > before["volume_m3"].sum()
    assert_frame_equal(
        after.select("meter_id", "ts", "temperature_c"),
        before.select("meter_id", "ts", pl.col("temperature_c") - 8),
    )
    assert run_forecasts(st).height == 0


def test_normal_scenario_needs_history_for_the_days_of_the_horizon(
    store: tuple[Store, Any],
) -> None:
    st, _ = store
    with pytest.raises(MissingTemperatureError, match=r"scenario 'normal'.*normal year"):
        # 30 days of history cannot give a normal year 40 days ahead.
        run_forecasts(st, horizon_hours=24 * 45, scenarios=["normal"])
    assert st.count("forecasts") == 0


def test_schema_2_upgrade_keeps_old_forecasts_as_observed() -> None:
    from warehouse._store import migration_files

    with open_store(path=":memory:") as st:
        con = st.connection  # type: ignore[attr-defined]
        con.execute(
            "CREATE TABLE askug_schema_version (version INTEGER PRIMARY KEY, name VARCHAR NOT NULL,"
            " variant VARCHAR NOT NULL, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
        )
        version, name, sql = migration_files("duckdb")[0]
        con.execute(sql)
        con.execute("INSERT INTO askug_schema_version (version, name, variant) VALUES (?, ?, 'duckdb')", [version, name])
        con.execute(
            "INSERT INTO forecasts (meter_id, ts, model, cutoff, volume_m3) "
            "VALUES ('M1', '2024-01-01 00:00+00', 'hdd', '2024-01-02 00:00+00', 1.5)"
        )
        assert st.schema_version() == 1
        from warehouse import SCHEMA_VERSION

        assert st.migrate() == SCHEMA_VERSION  # 2 added the scenario; later ones other tables
        st.check_schema()
        old = st.read("forecasts")
        assert old.select("meter_id", "scenario", "volume_m3").rows() == [("M1", "observed", 1.5)]
        # The scenario is part of the key: the same hour under another scenario is a new row.
        assert st.write("forecasts", old.with_columns(scenario=pl.lit("normal"))) == 1
        assert st.write("forecasts", old.drop("scenario")) == 0  # no scenario = observed
        assert st.count("forecasts") == 2
