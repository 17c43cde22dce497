"""Register → hourly consumption: rollover, regression, gaps, drift, duplicates, continuation."""

from __future__ import annotations

import datetime as dt

import polars as pl

from ingest import readings_to_hourly

T0 = dt.datetime(2022, 1, 1, tzinfo=dt.UTC)
DEVICES = pl.DataFrame(
    {
        "device_id": ["D1", "G1"],
        "kind": ["household_unit", "gdp_unit"],
        "meter_id": ["M1", None],
        "node_id": [None, "N1"],
        "counter_modulus_m3": [1000.0, None],
    }
)


def _readings(values: list[float | None], *, hours: list[float] | None = None, channel: str = "volume_register_m3",
              device: str = "D1") -> pl.DataFrame:
    hours = hours if hours is not None else list(range(len(values)))
    return pl.DataFrame(
        {
            "device_id": device,
            "channel": channel,
            "ts": [T0 + dt.timedelta(hours=h) for h in hours],
            "value": values,
            "quality": "valid",
        },
        schema_overrides={"value": pl.Float64},
    )


def _vol(frame: pl.DataFrame) -> list[tuple[int, float | None, str]]:
    return [(int((ts - T0).total_seconds() // 3600), v, q) for ts, v, q in frame.sort("ts").select("ts", "volume_m3", "quality").iter_rows()]


def test_plain_differences_start_of_hour_convention() -> None:
    out = readings_to_hourly(_readings([10.0, 10.5, 11.25]), DEVICES)
    assert _vol(out) == [(0, 0.5, "valid"), (1, 0.75, "valid")]
    assert out["source"].to_list() == ["register", "register"] and out["meter_id"].to_list() == ["M1", "M1"]


def test_rollover_adds_the_modulus() -> None:
    out = readings_to_hourly(_readings([999.5, 0.25, 1.0]), DEVICES)
    assert [round(v, 9) for _, v, _ in _vol(out)] == [0.75, 0.75]
    assert set(out["quality"]) == {"valid"}


def test_unexplained_regression_is_null_suspect_never_negative() -> None:
    # Drop from 500 to 20: +modulus gives 520 m3 in one hour, far above plausible.
    out = readings_to_hourly(_readings([499.0, 499.5, 500.0, 20.0, 20.5, 21.0]), DEVICES)
    assert _vol(out)[2] == (2, None, "suspect")
    assert [v for _, v, q in _vol(out) if q == "valid"] == [0.5, 0.5, 0.5, 0.5]


def test_spike_gives_two_suspect_hours() -> None:
    values = [100.0 + 0.5 * h for h in range(30)]
    values[10] += 400.0
    out = readings_to_hourly(_readings(values), DEVICES)
    bad = [(h, v, q) for h, v, q in _vol(out) if q != "valid"]
    assert bad == [(9, None, "suspect"), (10, None, "suspect")]


def test_gap_hours_are_missing_and_the_last_carries_the_accumulated_step() -> None:
    out = readings_to_hourly(_readings([1.0, 2.0, 6.0, 7.0], hours=[0, 1, 5, 6]), DEVICES)
    assert _vol(out) == [
        (0, 1.0, "valid"),
        (1, None, "missing"),
        (2, None, "missing"),
        (3, None, "missing"),
        (4, 4.0, "suspect"),
        (5, 1.0, "valid"),
    ]


def test_clock_drift_beyond_60_s_is_suspect_but_kept() -> None:
    hours = [0, 1 + 30 / 3600, 2 + 90 / 3600, 3 + 100 / 3600]
    out = readings_to_hourly(_readings([0.0, 1.0, 2.0, 3.0], hours=hours), DEVICES)
    assert _vol(out) == [(0, 1.0, "valid"), (1, 1.0, "suspect"), (2, 1.0, "suspect")]


def test_duplicates_and_nulls_are_ignored() -> None:
    frame = pl.concat([_readings([0.0, 1.0, 2.0]), _readings([1.0], hours=[1]), _readings([None], hours=[3])])
    out = readings_to_hourly(frame, DEVICES)
    assert _vol(out) == [(0, 1.0, "valid"), (1, 1.0, "valid")]


def test_previous_register_closes_the_open_hour() -> None:
    first = _readings([5.0, 6.0, 7.0])
    second = _readings([8.5, 9.0], hours=[3, 4])
    previous = first.tail(1).select("device_id", "channel", "ts", "value")
    out = readings_to_hourly(second, DEVICES, previous=previous)
    assert _vol(out) == [(2, 1.5, "valid"), (3, 0.5, "valid")]
    assert _vol(readings_to_hourly(second, DEVICES)) == [(3, 0.5, "valid")]


def test_corrector_work_volume_and_hourly_means() -> None:
    devices = DEVICES.with_columns(pl.lit("corrector").alias("kind"))
    frame = pl.concat(
        [
            _readings([100.0, 110.0, 121.0]),
            _readings([50.0, 52.0, 54.5], channel="volume_work_register_m3"),
            _readings([300.0, 302.0], channel="pressure_kpa"),
            _readings([5.0, 6.0], channel="temperature_c"),
            _readings([230.0], channel="mains_voltage_v", device="G1"),
        ]
    )
    out = readings_to_hourly(frame, devices)
    assert out.sort("ts").select("volume_m3", "volume_work_m3", "pressure_kpa", "temperature_c").rows() == [
        (10.0, 2.0, 300.0, 5.0),
        (11.0, 2.5, 302.0, 6.0),
    ]
    assert set(out["meter_id"]) == {"M1"}


def test_order_of_the_readings_does_not_matter_and_hours_come_sorted() -> None:
    # three meters whose device order differs from their meter order, a gap, a rollover,
    # a drifted reading and a duplicate hour: the output is the same from any row order,
    # and comes sorted by meter and hour
    devices = pl.DataFrame(
        {
            "device_id": ["D1", "D2", "D3"],
            "meter_id": ["M3", "M1", "M2"],
            "counter_modulus_m3": [1000.0, 1000.0, None],
        }
    )
    frame = pl.concat(
        [
            _readings([998.0, 999.5, 0.5, 1.5], device="D1"),
            _readings([10.0, 11.0, 14.0, 15.0], hours=[0, 1, 4, 5], device="D2"),
            _readings([1.0, 2.0, 2.5, 3.0], hours=[0, 1, 1.01, 2.5], device="D3"),
        ]
    )
    expected = readings_to_hourly(frame, devices)
    assert expected.select("meter_id", "ts").equals(expected.select("meter_id", "ts").sort("meter_id", "ts"))
    assert expected.height == 3 + 5 + 3  # D3: hour 2.5 snaps to 3 (drifted), hours 1-2 filled
    for seed in range(5):
        shuffled = frame.sample(fraction=1.0, shuffle=True, seed=seed)
        assert readings_to_hourly(shuffled, devices).equals(expected)
