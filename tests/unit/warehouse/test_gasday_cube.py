"""The five-grouping gas-day cube from frames: sums per level, gas days, DST, measures, engines."""

from __future__ import annotations

import datetime as dt
import itertools

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from warehouse import (
    DEFAULT_CALORIFIC_VALUE_KWH_M3,
    GROUPINGS,
    TABLES,
    ContractError,
    gas_cube_from_frames,
    gas_cube_grouping,
    rollup_hourly,
)

UTC = dt.UTC
KEY = list(TABLES["gas_cube"].key)


def make_frames(start: dt.datetime, hours: int) -> dict[str, pl.DataFrame]:
    """Three companies in three zones/contract hours, four branches, six meters (gas and water)."""
    companies = pl.DataFrame(
        {
            "company_id": ["UK", "RU", "DE"],
            "name": ["uk", "ru", "de"],
            "time_zone": ["Europe/London", "Europe/Moscow", "Europe/Berlin"],
            "contract_hour": [5, 10, 6],
        }
    )
    branches = pl.DataFrame(
        {"branch_id": ["B1", "B2", "B3", "B4"], "company_id": ["UK", "UK", "RU", "DE"], "name": ["1", "2", "3", "4"]}
    )
    meters = pl.DataFrame(
        {
            "meter_id": ["m1", "m2", "m3", "m4", "m5", "m6"],
            "branch_id": ["B1", "B1", "B2", "B3", "B3", "B4"],
            "resource": ["gas", "water", "gas", "gas", "gas", "gas"],
            "category": ["household", "household", "industrial", "municipal", "household", "commercial"],
        }
    )
    ts = pl.datetime_range(start, start + dt.timedelta(hours=hours - 1), "1h", eager=True, time_zone="UTC")
    parts = []
    for i, m in enumerate(meters.get_column("meter_id")):
        n = len(ts)
        vol = [float(i + 1) + (k % 24) / 10 for k in range(n)]
        quality = ["valid"] * n
        if m == "m3":  # a gap of 5 hours: null values
            vol[10:15] = [None] * 5
            quality[10:15] = ["missing"] * 5
        if m == "m4":  # 3 estimated hours
            quality[20:23] = ["estimated"] * 3
        pressure = [300.0 + k % 7 for k in range(n)] if m in ("m4", "m6") else [None] * n
        temperature = [5.0 - (k % 5) for k in range(n)] if m == "m6" else [None] * n
        frame = pl.DataFrame(
            {"meter_id": m, "ts": ts, "volume_m3": vol, "quality": quality,
             "pressure_kpa": pressure, "temperature_c": temperature},
            schema_overrides={"pressure_kpa": pl.Float64, "temperature_c": pl.Float64},
        )
        if m == "m5":  # m5 reports nothing for its first day: absent rows, not nulls
            frame = frame.slice(24)
        parts.append(frame)
    return {"hourly": pl.concat(parts), "meters": meters, "branches": branches, "companies": companies}


@pytest.fixture(scope="module")
def frames() -> dict[str, pl.DataFrame]:
    # 2022-10-27 00:00 UTC … 2022-11-03 00:00 UTC: the clocks go back on 30 October
    return make_frames(dt.datetime(2022, 10, 27, tzinfo=UTC), 7 * 24)


@pytest.fixture(scope="module")
def cube(frames: dict[str, pl.DataFrame]) -> pl.DataFrame:
    return gas_cube_from_frames(**frames)


def test_every_level_of_every_grouping_sums_to_the_total(frames: dict[str, pl.DataFrame], cube: pl.DataFrame) -> None:
    total = frames["hourly"].get_column("volume_m3").sum()
    assert cube.filter(pl.col("dims") == "").get_column("volume_m3").item() == pytest.approx(total)
    for name, hierarchy in GROUPINGS.items():
        report = gas_cube_grouping(cube, name)
        assert report.get_column("level").unique().sort().to_list() == sorted(("total", *hierarchy))
        for level in ("total", *hierarchy):
            got = report.filter(pl.col("level") == level).get_column("volume_m3").sum()
            assert got == pytest.approx(total), (name, level)


def test_21_distinct_grouping_sets_stored_once(cube: pl.DataFrame) -> None:
    sets = cube.select("dims", "period").unique()
    assert sets.height == 21
    assert cube.select(KEY).is_unique().all()


def test_gas_day_follows_contract_hour_and_zone(frames: dict[str, pl.DataFrame], cube: pl.DataFrame) -> None:
    hours = cube.filter((pl.col("dims") == "company,branch") & (pl.col("period") == "hour"))
    # RU: Moscow UTC+3, contract hour 10 → gas day 27 Oct starts at 07:00 UTC
    ru = hours.filter(pl.col("company_id") == "RU").sort("ts")
    first = ru.filter(pl.col("gas_day") == dt.date(2022, 10, 27)).row(0, named=True)
    assert first["ts"] == dt.datetime(2022, 10, 27, 7, tzinfo=UTC)
    assert (first["hour"], first["local_hour"], first["day"], first["month"]) == (0, 10, 27, 10)
    # the hours before belong to gas day 26 October (no data before 00:00 UTC: expected but missing)
    day26 = cube.filter(
        (pl.col("dims") == "company") & (pl.col("period") == "day") & (pl.col("company_id") == "RU")
        & (pl.col("gas_day") == dt.date(2022, 10, 26))
    ).row(0, named=True)
    assert day26["expected_hours"] == 2 * 24 and day26["hours"] == 7  # m4 has 00:00–06:00 UTC
    assert day26["completeness"] == pytest.approx(7 / 48)


def test_dst_fall_back_gives_a_25_hour_gas_day(cube: pl.DataFrame) -> None:
    days = cube.filter((pl.col("dims") == "company,branch") & (pl.col("period") == "day"))
    expected = {
        # (branch, gas day): hours of the gas day × meters of the branch
        ("B1", dt.date(2022, 10, 29)): 25 * 2,  # UK: 05:00 BST 29 Oct → 05:00 GMT 30 Oct
        ("B1", dt.date(2022, 10, 30)): 24 * 2,
        ("B4", dt.date(2022, 10, 29)): 25,  # DE: 06:00 CEST → 06:00 CET
        ("B3", dt.date(2022, 10, 29)): 24 * 2,  # Moscow has no DST
    }
    for (branch, day), want in expected.items():
        row = days.filter((pl.col("branch_id") == branch) & (pl.col("gas_day") == day)).row(0, named=True)
        assert row["expected_hours"] == want, (branch, day)
    uk_hours = cube.filter(
        (pl.col("dims") == "company") & (pl.col("period") == "hour") & (pl.col("company_id") == "UK")
        & (pl.col("gas_day") == dt.date(2022, 10, 29))
    )
    assert uk_hours.height == 25
    assert uk_hours.get_column("hour").sort().to_list() == list(range(25))
    assert uk_hours.filter(pl.col("local_hour") == 1).height == 2  # 01:00 BST and 01:00 GMT


def test_dst_spring_forward_gives_a_23_hour_gas_day() -> None:
    f = make_frames(dt.datetime(2022, 3, 25, tzinfo=UTC), 4 * 24)
    cube = gas_cube_from_frames(**f, start=dt.date(2022, 3, 26), end=dt.date(2022, 3, 27))
    uk = cube.filter((pl.col("dims") == "company") & (pl.col("period") == "hour") & (pl.col("company_id") == "UK"))
    assert uk.height == 23
    day = cube.filter((pl.col("dims") == "company") & (pl.col("period") == "day") & (pl.col("company_id") == "UK"))
    assert day.get_column("expected_hours").item() == 23 * 3
    assert day.get_column("completeness").item() == pytest.approx(1.0)


def test_measures(frames: dict[str, pl.DataFrame], cube: pl.DataFrame) -> None:
    def cell(dims: str, **keys: str) -> dict[str, object]:
        sel = cube.filter((pl.col("dims") == dims) & (pl.col("period") == "all"))
        for k, v in keys.items():
            sel = sel.filter(pl.col(k) == v)
        assert sel.height == 1
        return sel.row(0, named=True)

    h = frames["hourly"]
    # energy: gas only, volume × calorific value; water has none
    water = cell("company,branch,resource", company_id="UK", branch_id="B1", resource="water")
    assert water["energy_kwh"] is None and water["volume_m3"] > 0
    gas_b1 = cell("company,branch,resource", company_id="UK", branch_id="B1", resource="gas")
    assert gas_b1["energy_kwh"] == pytest.approx(gas_b1["volume_m3"] * DEFAULT_CALORIFIC_VALUE_KWH_M3)
    # the UK total mixes gas and water: energy counts the gas only
    uk = cell("company", company_id="UK")
    gas_uk = h.filter(pl.col("meter_id").is_in(["m1", "m3"])).get_column("volume_m3").sum()
    assert uk["energy_kwh"] == pytest.approx(gas_uk * DEFAULT_CALORIFIC_VALUE_KWH_M3)
    assert uk["meters"] == 3
    # missing values are counted, not zero-filled: m3 has 5 null hours
    b2 = cell("company,branch", company_id="UK", branch_id="B2")
    assert b2["hours"] == 7 * 24 - 5
    # the share of estimated values: 3 of m4's hours
    b3 = cell("company,branch", company_id="RU", branch_id="B3")
    assert b3["estimated_hours"] == 3
    assert b3["share_estimated"] == pytest.approx(3 / b3["hours"])
    # pressure min/avg/max over the corrector hours only (m4 in B3), weighted by hours
    p = h.filter(pl.col("meter_id") == "m4").get_column("pressure_kpa")
    assert (b3["pressure_kpa_min"], b3["pressure_kpa_max"]) == (p.min(), p.max())
    assert b3["pressure_kpa_avg"] == pytest.approx(p.mean())
    assert b3["pressure_hours"] == p.len()
    de = cell("company", company_id="DE")
    t = h.filter(pl.col("meter_id") == "m6").get_column("temperature_c")
    assert (de["temperature_c_min"], de["temperature_c_avg"], de["temperature_c_max"]) == pytest.approx(
        (t.min(), t.mean(), t.max())
    )
    assert uk["pressure_kpa_avg"] is None and uk["pressure_hours"] == 0


def test_a_cell_without_values_is_null_not_zero(cube: pl.DataFrame) -> None:
    hours = cube.filter(
        (pl.col("dims") == "company,branch") & (pl.col("period") == "hour") & (pl.col("branch_id") == "B2")
    ).sort("ts")
    gap = hours.filter(pl.col("hours") == 0)
    # the gas hours before the data starts and m3's 5-hour gap
    assert gap.height >= 5
    assert gap.get_column("volume_m3").null_count() == gap.height
    assert gap.get_column("completeness").to_list() == [0.0] * gap.height


def test_polars_and_duckdb_engines_agree(frames: dict[str, pl.DataFrame], cube: pl.DataFrame) -> None:
    other = gas_cube_from_frames(**frames, engine="polars")
    assert_frame_equal(cube.sort(KEY), other.sort(KEY), check_exact=False, rel_tol=1e-12, abs_tol=1e-9)


def test_calorific_value_per_company(frames: dict[str, pl.DataFrame]) -> None:
    cube = gas_cube_from_frames(**frames, calorific_value_kwh_m3={"RU": 9.3})
    ru = cube.filter((pl.col("dims") == "company") & (pl.col("period") == "all") & (pl.col("company_id") == "RU"))
    assert ru.get_column("energy_kwh").item() == pytest.approx(ru.get_column("volume_m3").item() * 9.3)
    with pytest.raises(ContractError, match="unknown companies"):
        gas_cube_from_frames(**frames, calorific_value_kwh_m3={"XX": 9.3})


def test_grouping_is_in_tree_order(cube: pl.DataFrame) -> None:
    report = gas_cube_grouping(cube, "company-resource-branch")
    assert report.row(0, named=True)["level"] == "total"
    levels = report.get_column("level").head(6).to_list()
    assert levels == ["total", "company", "resource", "branch", "year", "month"]
    # every row's parent appears before it
    depth = report.get_column("depth").to_list()
    assert all(b <= a + 1 for a, b in itertools.pairwise(depth))
    branches = gas_cube_grouping(cube, 5, level="branch")
    assert branches.select("company_id", "resource", "branch_id").rows() == [
        ("DE", "gas", "B4"), ("RU", "gas", "B3"), ("UK", "gas", "B1"), ("UK", "gas", "B2"), ("UK", "water", "B1"),
    ]  # fmt: skip


def test_rollup_over_any_hierarchy_with_a_quality_filter(frames: dict[str, pl.DataFrame]) -> None:
    from warehouse import cube_directory

    directory = cube_directory(frames["meters"], frames["branches"])
    cells, rows = rollup_hourly(
        frames["hourly"], directory, frames["companies"],
        hierarchies=[("category", "meter", "year", "month")],
        start=dt.date(2022, 10, 27), end=dt.date(2022, 11, 2), qualities=["estimated"],
    )  # fmt: skip
    meters = cells.filter(pl.col("dims") == "category,meter")
    assert meters.filter(pl.col("hours") > 0).get_column("meter_id").unique().to_list() == ["m4"]
    assert meters.get_column("estimated_hours").sum() == 3 * 3  # the all-time, year and month cells
    assert rows == 3


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"engine": "spark"}, "engine"),
        ({"start": dt.date(2022, 11, 1), "end": dt.date(2022, 10, 1)}, "swap"),
    ],
)
def test_bad_arguments(frames: dict[str, pl.DataFrame], kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ContractError, match=message):
        gas_cube_from_frames(**frames, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("grouping", "level", "message"),
    [("company-meter", None, "unknown grouping"), (6, None, "unknown grouping"), (1, "resource", "level")],
)
def test_bad_grouping(cube: pl.DataFrame, grouping: str | int, level: str | None, message: str) -> None:
    with pytest.raises(ContractError, match=message):
        gas_cube_grouping(cube, grouping, level=level)


def test_bad_hierarchy(frames: dict[str, pl.DataFrame]) -> None:
    from warehouse import cube_directory

    directory = cube_directory(frames["meters"], frames["branches"])
    for hierarchy, message in ((("company", "month", "year"), "coarse to fine"), (("company", "weekday"), "unknown")):
        with pytest.raises(ContractError, match=message):
            rollup_hourly(frames["hourly"], directory, frames["companies"], hierarchies=[hierarchy],
                          start=dt.date(2022, 10, 27), end=dt.date(2022, 10, 28))
