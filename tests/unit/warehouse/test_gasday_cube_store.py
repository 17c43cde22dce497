"""The stored gas-day cube on the embedded store: full build, incremental refresh, reads."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from warehouse import (
    TABLES,
    Store,
    WarehouseError,
    build_gas_cube,
    gas_cube_from_frames,
    open_store,
    read_gas_cube,
    refresh_gas_cube,
)

from .test_gasday_cube import make_frames

UTC = dt.UTC
KEY = list(TABLES["gas_cube"].key)
START = dt.datetime(2022, 10, 27, tzinfo=UTC)


def load(store: Store, frames: dict[str, pl.DataFrame]) -> None:
    store.write("companies", frames["companies"])
    store.write("branches", frames["branches"])
    meters = frames["meters"].with_columns(
        name=pl.col("meter_id"), time_zone=pl.lit("Europe/London"), contract_hour=pl.lit(5)
    )
    store.write("metering_points", meters)
    store.write("hourly_archive", frames["hourly"].with_columns(source=pl.lit("archive")))


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with open_store(path=tmp_path / "cube.duckdb") as s:
        s.migrate()
        yield s


def assert_cubes_equal(a: pl.DataFrame, b: pl.DataFrame) -> None:
    assert_frame_equal(a.sort(KEY), b.sort(KEY), check_exact=False, rel_tol=1e-9, abs_tol=1e-9)


@pytest.mark.parametrize("engine", ["duckdb", "polars"])
def test_build_stores_the_same_cube_as_from_frames(store: Store, engine: str) -> None:
    frames = make_frames(START, 7 * 24)
    load(store, frames)
    summary = build_gas_cube(store, engine=engine)  # type: ignore[arg-type]
    stored = store.read("gas_cube")
    assert summary.cells == stored.height and summary.hourly_rows == frames["hourly"].height
    assert_cubes_equal(stored, gas_cube_from_frames(**frames))


def test_refresh_of_one_late_day_equals_a_full_rebuild(store: Store) -> None:
    frames = make_frames(START, 7 * 24)
    late_lo, late_hi = START + dt.timedelta(days=3), START + dt.timedelta(days=4)
    late = frames["hourly"].filter((pl.col("ts") >= late_lo) & (pl.col("ts") < late_hi))
    on_time = frames["hourly"].filter((pl.col("ts") < late_lo) | (pl.col("ts") >= late_hi))
    load(store, {**frames, "hourly": on_time})
    build_gas_cube(store, start=dt.date(2022, 10, 26), end=dt.date(2022, 11, 3))
    before = store.read("gas_cube")

    # the late day arrives (one meter re-sends an estimate too) and only it is refreshed
    store.write("hourly_archive", late.with_columns(source=pl.lit("archive")))
    summary = refresh_gas_cube(store, start=late_lo, end=late_hi)
    refreshed = store.read("gas_cube")
    assert summary.hourly_rows < frames["hourly"].height / 2
    assert 1 <= summary.gas_days <= 3

    build_gas_cube(store, start=dt.date(2022, 10, 26), end=dt.date(2022, 11, 3))
    assert_cubes_equal(refreshed, store.read("gas_cube"))
    # and the refresh really changed something: the late day was missing before
    total = pl.col("dims") == ""
    assert before.filter(total).get_column("hours").item() < refreshed.filter(total).get_column("hours").item()
    # cells of untouched gas days were not rewritten (same values as before)
    far = pl.col("gas_day") == dt.date(2022, 10, 27)
    assert_cubes_equal(before.filter(far), refreshed.filter(far))


def test_refresh_appends_a_new_day_after_the_built_range(store: Store) -> None:
    frames = make_frames(START, 7 * 24)
    cut = START + dt.timedelta(days=5)
    load(store, {**frames, "hourly": frames["hourly"].filter(pl.col("ts") < cut)})
    build_gas_cube(store, start=dt.date(2022, 10, 26), end=dt.date(2022, 11, 1))
    store.write("hourly_archive", frames["hourly"].filter(pl.col("ts") >= cut).with_columns(source=pl.lit("archive")))
    refresh_gas_cube(store, start=cut, end=cut + dt.timedelta(days=2))
    refreshed = store.read("gas_cube")
    build_gas_cube(store, start=dt.date(2022, 10, 26), end=dt.date(2022, 11, 3))
    assert_cubes_equal(refreshed, store.read("gas_cube"))


def test_read_one_grouping(store: Store) -> None:
    load(store, make_frames(START, 7 * 24))
    build_gas_cube(store)
    days = read_gas_cube(store, grouping="company-branch", level="day", company_id="UK")
    assert set(days.get_column("level")) == {"day"}
    assert set(days.get_column("branch_id")) == {"B1", "B2"}
    report = read_gas_cube(store, grouping=3)
    assert report.get_column("level").unique().sort().to_list() == sorted(
        ["total", "company", "year", "month", "day", "hour"]
    )
    with pytest.raises(WarehouseError, match="unknown filter"):
        read_gas_cube(store, grouping=1, meter_id="m1")


def test_refresh_before_build_and_empty_archive_are_clear_errors(store: Store) -> None:
    with pytest.raises(WarehouseError, match="empty"):
        build_gas_cube(store)
    with pytest.raises(WarehouseError, match="build it first"):
        refresh_gas_cube(store, start=START, end=START + dt.timedelta(days=1))
    load(store, make_frames(START, 48))
    build_gas_cube(store)
    with pytest.raises(WarehouseError, match="reversed"):
        refresh_gas_cube(store, start=START + dt.timedelta(days=1), end=START)


def test_refresh_across_a_year_boundary_equals_a_full_rebuild(store: Store) -> None:
    """Late hours around New Year touch gas days, months and years on both sides: the
    month, year and all-time cells re-derived from stored cells equal a rebuild."""
    start = dt.datetime(2022, 12, 27, tzinfo=UTC)
    frames = make_frames(start, 9 * 24)
    late_lo, late_hi = dt.datetime(2022, 12, 31, 12, tzinfo=UTC), dt.datetime(2023, 1, 1, 18, tzinfo=UTC)
    late = frames["hourly"].filter((pl.col("ts") >= late_lo) & (pl.col("ts") < late_hi))
    load(store, {**frames, "hourly": frames["hourly"].filter((pl.col("ts") < late_lo) | (pl.col("ts") >= late_hi))})
    build_gas_cube(store, start=dt.date(2022, 12, 27), end=dt.date(2023, 1, 5))
    before = store.read("gas_cube")
    store.write("hourly_archive", late.with_columns(source=pl.lit("archive")))
    summary = refresh_gas_cube(store, start=late_lo, end=late_hi)
    refreshed = store.read("gas_cube")
    assert summary.gas_days >= 2
    assert set(refreshed.filter(pl.col("period") == "year")["year"].to_list()) == {2022, 2023}
    assert not refreshed.equals(before)
    build_gas_cube(store, start=dt.date(2022, 12, 27), end=dt.date(2023, 1, 5))
    assert_cubes_equal(refreshed, store.read("gas_cube"))
