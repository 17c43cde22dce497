"""ThresholdRule: GDP min/max limits merged into alert episodes (hermetic)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import polars as pl
import pytest

from anomalies import Detector, InvalidInputError, InvalidParameterError, ThresholdRule, alert_id
from warehouse import validate_frame
from warehouse._schemas import ALERTS

T0 = dt.datetime(2026, 1, 5, tzinfo=dt.UTC)
H = dt.timedelta(hours=1)
OUT = "outlet_pressure_kpa"

LIMITS = pl.DataFrame(
    {
        "node_id": ["GDP-0003", "GDP-0003", "GDP-0007"],
        "channel": [OUT, "ch4_pct_lel", OUT],
        "min_value": [2.8, None, 1.0],
        "max_value": [3.2, 10.0, 2.0],
    }
)
DEVICES = pl.DataFrame(
    {
        "device_id": ["D3", "D3b", "D7", "M1"],
        "kind": ["gdp_unit", "gdp_unit", "gdp_unit", "corrector"],
        "meter_id": [None, None, None, "MP-1"],
        "node_id": ["GDP-0003", "GDP-0003", "GDP-0007", None],
    }
)


def readings(
    values: Sequence[float | None],
    *,
    device: str = "D3",
    channel: str = OUT,
    step: dt.timedelta = H,
    start: dt.datetime = T0,
) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "device_id": device,
            "channel": channel,
            "ts": [start + i * step for i in range(len(values))],
            "value": pl.Series(values, dtype=pl.Float64),
            "quality": "valid",
        }
    )


def detect(frame: pl.DataFrame, **params: float) -> pl.DataFrame:
    return ThresholdRule(limits=LIMITS, **params).detect(frame, DEVICES)


def test_consecutive_low_readings_are_one_episode_with_the_worst_value() -> None:
    alerts = detect(readings([3.0, 2.7, 2.41, 2.6, 3.0]))
    validate_frame(alerts, ALERTS, cast=False)
    assert alerts.height == 1
    a = alerts.row(0, named=True)
    assert (a["ts_start"], a["ts_end"]) == (T0 + H, T0 + 3 * H)
    assert a["value"] == 2.41 and a["threshold"] == 2.8
    assert (a["rule"], a["object_kind"], a["object_id"], a["channel"]) == (
        "gdp_threshold",
        "node",
        "GDP-0003",
        OUT,
    )
    assert a["state"] == "open"
    assert a["message"] == "GDP-0003 outlet_pressure_kpa 2.41 kPa below min 2.8 kPa for 3 h"


def test_high_readings_alert_above_max() -> None:
    a = detect(readings([3.0, 3.3, 3.45, 3.1])).row(0, named=True)
    assert (a["value"], a["threshold"]) == (3.45, 3.2)
    assert a["message"] == "GDP-0003 outlet_pressure_kpa 3.45 kPa above max 3.2 kPa for 2 h"


def test_direction_change_and_in_range_reading_split_episodes() -> None:
    alerts = detect(readings([2.7, 3.3, 3.0, 3.3, 3.0, 2.5]))
    assert alerts["message"].str.extract(r"(below|above)").to_list() == [
        "below",
        "above",
        "above",
        "below",
    ]
    assert alerts["ts_start"].to_list() == [T0, T0 + H, T0 + 3 * H, T0 + 5 * H]
    assert alerts["alert_id"].n_unique() == 4


def test_null_values_never_alert_and_do_not_end_an_episode() -> None:
    assert detect(readings([None, None, None])).height == 0
    alerts = detect(readings([2.7, None, 2.6, float("nan"), 3.0]))
    assert alerts.height == 1
    assert (alerts["ts_start"][0], alerts["ts_end"][0], alerts["value"][0]) == (T0, T0 + 2 * H, 2.6)


def test_min_duration_drops_short_episodes() -> None:
    frame = readings([2.7, 3.0, 2.7, 2.6, 3.0])
    assert detect(frame).height == 2  # default 1 h: a single hourly reading counts
    long_only = detect(frame, min_duration_hours=2)
    assert long_only["ts_start"].to_list() == [T0 + 2 * H]
    assert detect(frame, min_duration_hours=3).height == 0


def test_duration_follows_the_reading_cadence() -> None:
    five_min = dt.timedelta(minutes=5)
    short = readings([2.7] * 6 + [3.0], step=five_min)  # 30 min out of range
    assert detect(short).height == 0
    alerts = detect(short, min_duration_hours=0.5)
    assert alerts["message"][0].endswith("for 30 min")
    assert detect(readings([2.7] * 12 + [3.0], step=five_min))["message"][0].endswith("for 1 h")


def test_alert_ids_are_deterministic_and_stable_while_an_episode_grows() -> None:
    first = detect(readings([3.0, 2.7, 2.6]))
    again = detect(readings([3.0, 2.7, 2.6]))
    longer = detect(readings([3.0, 2.7, 2.6, 2.5, 2.55]))
    assert (
        first["alert_id"].to_list() == again["alert_id"].to_list() == longer["alert_id"].to_list()
    )
    assert longer["ts_end"][0] == T0 + 4 * H and longer["value"][0] == 2.5
    assert first["alert_id"][0] == alert_id("gdp_threshold", "node", "GDP-0003", OUT, T0 + H)
    later = detect(readings([3.0, 3.0, 2.7, 2.6]))
    assert later["alert_id"][0] != first["alert_id"][0]
    assert len(first["alert_id"][0]) == 32


def test_severity_rule() -> None:
    # band 2.8..3.2 is 0.4 kPa wide; critical from 0.5 * 0.4 = 0.2 kPa beyond the limit
    alerts = detect(readings([2.7, 3.0, 2.6, 3.0, 3.39, 3.0, 3.4]))
    assert alerts["severity"].to_list() == ["warning", "critical", "warning", "critical"]
    strict = detect(readings([2.7]), critical_fraction=0.1)
    assert strict["severity"].to_list() == ["critical"]


def test_one_sided_limit_and_unit_text() -> None:
    frame = readings([5.0, 12.5, 11.0, 4.0], channel="ch4_pct_lel")
    a = detect(frame).row(0, named=True)
    assert a["message"] == "GDP-0003 ch4_pct_lel 12.5 % LEL above max 10 % LEL for 2 h"
    assert a["severity"] == "warning"  # 2.5 < 0.5 * |10|
    assert detect(readings([-100.0], channel="ch4_pct_lel")).height == 0  # no minimum set


def test_only_gdp_devices_with_limits_are_checked() -> None:
    frame = pl.concat(
        [
            readings([2.0], device="M1"),  # a meter's corrector: not a GDP
            readings([2.0], device="D9"),  # unknown device
            readings([-5.0], channel="gas_temperature_c"),  # no limit for this channel
            readings([0.5], device="D7"),  # GDP-0007 has its own band 1..2
        ]
    )
    alerts = detect(frame)
    assert alerts["object_id"].to_list() == ["GDP-0007"]
    assert alerts["threshold"].to_list() == [1.0]


def test_devices_of_one_node_form_one_series() -> None:
    frame = pl.concat([readings([2.7, None], device="D3"), readings([None, 2.6], device="D3b")])
    alerts = detect(frame)
    assert alerts.height == 1 and alerts["ts_end"][0] == T0 + H


def test_empty_input_gives_an_empty_valid_frame() -> None:
    alerts = detect(readings([]))
    assert alerts.height == 0 and alerts.schema == ALERTS.schema


def test_input_and_parameter_errors() -> None:
    frame = readings([2.7])
    with pytest.raises(InvalidInputError, match="devices table"):
        ThresholdRule(limits=LIMITS).detect(frame)
    with pytest.raises(InvalidInputError, match=r"readings: .*naive datetime"):
        detect(frame.with_columns(pl.col("ts").dt.replace_time_zone(None)))
    with pytest.raises(InvalidInputError, match=r"missing required columns \['device_id'\]"):
        detect(frame.drop("device_id"))
    crossed = LIMITS.with_columns(pl.lit(5.0).alias("min_value"))
    with pytest.raises(InvalidParameterError, match=r"min_value <= max_value.*2 crossed"):
        ThresholdRule(limits=crossed).detect(frame, DEVICES)
    with pytest.raises(InvalidParameterError, match="min_duration_hours"):
        detect(frame, min_duration_hours=-1)
    bad_channel = LIMITS.with_columns(pl.lit("pressure_psi").alias("channel"))
    with pytest.raises(InvalidInputError, match="limits: .*pressure_psi"):
        ThresholdRule(limits=bad_channel).detect(frame, DEVICES)


@pytest.mark.parametrize("detector", [ThresholdRule(limits=LIMITS)], ids=repr)
def test_detector_contract(detector: Detector) -> None:
    """Every detector: keyword-only params stored unchanged, deterministic, valid alerts."""
    clone = type(detector)(**detector.get_params())
    assert clone.get_params().keys() == detector.get_params().keys()
    assert not [a for a in vars(clone) if a.endswith("_")]
    frame = readings([2.7, 3.3, 3.0, 2.0])
    a, b = detector.detect(frame, DEVICES), clone.detect(frame.reverse(), DEVICES)
    assert a.equals(b)
    validate_frame(a, ALERTS, cast=False)
    assert set(a["rule"]) == {detector.alias}


def test_many_series_are_vectorised() -> None:
    """50 nodes x 2,000 readings each: the same answer per node as one node alone."""
    nodes = [f"GDP-{i:04d}" for i in range(50)]
    limits = pl.DataFrame({"node_id": nodes, "channel": OUT, "min_value": 2.8, "max_value": 3.2})
    devices = pl.DataFrame(
        {"device_id": [f"D-{n}" for n in nodes], "kind": "gdp_unit", "node_id": nodes}
    )
    pattern = [3.0, 2.7, 2.6, 3.0, 3.3] * 400
    frame = pl.concat([readings(pattern, device=f"D-{n}") for n in nodes])
    alerts = ThresholdRule(limits=limits).detect(frame, devices)
    assert alerts.height == 50 * 800
    assert alerts.group_by("object_id").len()["len"].unique().to_list() == [800]
