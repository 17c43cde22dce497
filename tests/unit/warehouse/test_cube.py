"""The consolidated cube: sums per level and the company-local calendar."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from warehouse import cube_from_frames

UTC = dt.UTC


@pytest.fixture
def frames() -> dict[str, pl.DataFrame]:
    companies = pl.DataFrame(
        {"company_id": ["C1", "C2"], "name": ["East", "West"],
         "time_zone": ["Europe/Moscow", "Europe/London"], "contract_hour": [10, 5]}
    )
    branches = pl.DataFrame({"branch_id": ["B1", "B2", "B3"], "company_id": ["C1", "C1", "C2"],
                             "name": ["b1", "b2", "b3"]})
    meters = pl.DataFrame({"meter_id": ["m1", "m2", "m3", "m4"], "branch_id": ["B1", "B1", "B2", "B3"],
                           "resource": ["gas"] * 4})
    # 48 hours from 2022-01-31 00:00 UTC; m3 is missing its first 3 hours
    ts = pl.datetime_range(dt.datetime(2022, 1, 31, tzinfo=UTC), dt.datetime(2022, 2, 2, tzinfo=UTC),
                           "1h", closed="left", eager=True)
    parts = []
    for i, m in enumerate(["m1", "m2", "m3", "m4"]):
        vol = [float(i + 1)] * len(ts)
        if m == "m3":
            vol[:3] = [None] * 3
        parts.append(pl.DataFrame({"meter_id": m, "ts": ts, "volume_m3": vol}))
    return {"hourly": pl.concat(parts), "meters": meters, "branches": branches, "companies": companies}


def test_levels_sum_to_the_same_total(frames: dict[str, pl.DataFrame]) -> None:
    cube = cube_from_frames(**frames)
    total = 48 * (1 + 2 + 4) + 45 * 3
    for level in ("total", "company", "branch", "resource", "year", "month", "day", "hour"):
        got = cube.filter(pl.col("level") == level).get_column("volume_m3").sum()
        assert got == pytest.approx(total), level
    top = cube.filter(pl.col("level") == "total").row(0, named=True)
    assert top["meters"] == 4 and top["values"] == 4 * 48 - 3 and top["missing"] == 3


def test_calendar_is_company_local_time(frames: dict[str, pl.DataFrame]) -> None:
    cube = cube_from_frames(**frames)
    months = cube.filter(pl.col("level") == "month").sort("company_id", "branch_id", "month")
    b1 = months.filter(pl.col("branch_id") == "B1")
    # Moscow is UTC+3: 2022-01-31 00:00 UTC is 03:00 local, so January keeps 21 hours
    # and February gets 27 of the 48 hours, for two meters of 1 and 2 m³/h.
    assert b1.select("month", "volume_m3").rows() == [(1, 21 * 3.0), (2, 27 * 3.0)]
    b3 = months.filter(pl.col("branch_id") == "B3")
    # London is UTC+0 in winter: 24 hours in each month for a 4 m³/h meter.
    assert b3.select("month", "volume_m3").rows() == [(1, 96.0), (2, 96.0)]
    first_hour = cube.filter((pl.col("level") == "hour") & (pl.col("branch_id") == "B1")).sort(
        "month", "day", "hour").row(0, named=True)
    assert (first_hour["month"], first_hour["day"], first_hour["hour"]) == (1, 31, 3)


def test_rolled_up_parts_use_sentinels(frames: dict[str, pl.DataFrame]) -> None:
    cube = cube_from_frames(**frames)
    company = cube.filter(pl.col("level") == "company")
    assert set(company.get_column("branch_id")) == {""}
    assert set(company.get_column("year")) == {-1}
    assert company.sort("company_id").get_column("volume_m3").to_list() == [48 * 3 + 45 * 3, 48 * 4]


def test_missing_hours_are_counted_not_zero_filled(frames: dict[str, pl.DataFrame]) -> None:
    cube = cube_from_frames(**frames)
    b2_hours = cube.filter((pl.col("level") == "hour") & (pl.col("branch_id") == "B2"))
    assert b2_hours.get_column("missing").sum() == 3
    assert b2_hours.filter(pl.col("missing") > 0).get_column("values").to_list() == [0, 0, 0]
