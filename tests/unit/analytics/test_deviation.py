"""Deviation table and its colour scale, on small hand-made frames."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from analytics import AMBER, DEVIATION_SCHEMA, GREEN, GREY, RED, deviation_colour, deviation_table
from warehouse import ContractError

UTC = dt.UTC
D1 = dt.datetime(2026, 1, 10, tzinfo=UTC)
D2 = dt.datetime(2026, 1, 11, tzinfo=UTC)
TS = pl.Datetime("us", "UTC")


def _actual(rows: list[tuple[str, dt.datetime, float | None, str]]) -> pl.DataFrame:
    return pl.DataFrame(
        rows,
        schema={"meter_id": pl.String, "ts": TS, "volume_m3": pl.Float64, "quality": pl.String},
        orient="row",
    )


def _expected(rows: list[tuple[str, dt.datetime, float]]) -> pl.DataFrame:
    return pl.DataFrame(
        rows, schema={"meter_id": pl.String, "ts": TS, "expected_m3": pl.Float64}, orient="row"
    )


METERS = pl.DataFrame(
    {
        "meter_id": ["M2", "M1", "M3"],
        "name": ["Bakery", "School", "Boiler house"],
        "category": ["commercial", "municipal", "industrial"],
        "branch_id": ["B1", "B1", "B0"],
        "branch_name": ["North", "North", "Centre"],
        "company_id": ["C1", "C1", "C1"],
    }
)


def test_deviation_is_actual_minus_expected_in_m3_and_percent() -> None:
    actual = _actual(
        [("M1", D1, 110.0, "valid"), ("M1", D2, 80.0, "valid"), ("M2", D1, 10.0, "estimated")]
    )
    expected = _expected([("M1", D1, 100.0), ("M1", D2, 100.0), ("M2", D1, 8.0)])
    got = deviation_table(actual, expected, METERS)
    assert got.schema == DEVIATION_SCHEMA
    rows = got.select(
        "meter_id", "day", "actual_m3", "expected_m3", "deviation_m3", "deviation_pct"
    ).rows()
    assert rows == [
        ("M1", dt.date(2026, 1, 10), 110.0, 100.0, 10.0, pytest.approx(10.0)),  # 10/100
        ("M1", dt.date(2026, 1, 11), 80.0, 100.0, -20.0, pytest.approx(-20.0)),  # -20/100
        ("M2", dt.date(2026, 1, 10), 10.0, 8.0, 2.0, pytest.approx(25.0)),  # 2/8
    ]
    first = got.row(0, named=True)
    assert (
        first["company_id"],
        first["branch_id"],
        first["branch_name"],
        first["meter_name"],
        first["category"],
    ) == ("C1", "B1", "North", "School", "municipal")


def test_missing_sides_give_null_deviation_and_rows_sort_by_branch_meter_day() -> None:
    actual = _actual(
        [("M1", D2, 5.0, "valid"), ("M3", D1, 7.0, "missing"), ("M2", D1, None, "missing")]
    )
    expected = _expected([("M1", D1, 4.0), ("M3", D1, 6.0)])
    got = deviation_table(actual, expected, METERS)
    assert got.select("branch_id", "meter_id", "day").rows() == [
        ("B0", "M3", dt.date(2026, 1, 10)),
        ("B1", "M1", dt.date(2026, 1, 10)),
        ("B1", "M1", dt.date(2026, 1, 11)),
        ("B1", "M2", dt.date(2026, 1, 10)),
    ]
    # M3: a day with missing hours has no actual value, even though a partial sum exists
    # M1 D1: expected only; M1 D2: actual only; M2: nothing at all
    assert got.get_column("actual_m3").to_list() == [None, None, 5.0, None]
    assert got.get_column("expected_m3").to_list() == [6.0, 4.0, None, None]
    assert got.get_column("deviation_m3").null_count() == 4
    assert got.get_column("deviation_pct").null_count() == 4


def test_near_zero_expected_has_no_percentage() -> None:
    actual = _actual([("M1", D1, 0.5, "valid"), ("M2", D1, 0.0, "valid")])
    expected = _expected([("M1", D1, 0.001), ("M2", D1, 0.0)])
    got = deviation_table(actual, expected, METERS)
    assert got.get_column("deviation_m3").to_list() == [pytest.approx(0.499), 0.0]
    assert got.get_column("deviation_pct").to_list() == [None, None]


def test_meters_missing_from_the_directory_are_kept_last() -> None:
    got = deviation_table(_actual([("MX", D1, 1.0, "valid")]), _expected([("M1", D1, 1.0)]), METERS)
    assert got.get_column("meter_id").to_list() == ["M1", "MX"]
    assert got.row(1, named=True)["branch_id"] is None


def test_actual_must_match_the_consumption_contract() -> None:
    bad = pl.DataFrame({"meter_id": ["M1"], "ts": [D1], "volume_m3": [1.0]})
    with pytest.raises(ContractError, match="quality"):
        deviation_table(bad, _expected([]), METERS)


@pytest.mark.parametrize(
    ("pct", "colour"),
    [
        (0.0, GREEN),
        (5.0, GREEN),
        (-4.9, GREEN),
        (17.5, AMBER),  # halfway between 5 and 30
        (-17.5, AMBER),
        (30.0, RED),
        (-250.0, RED),
        (None, GREY),
        (float("nan"), GREY),
    ],
)
def test_colour_scale_anchor_points(pct: float | None, colour: str) -> None:
    assert deviation_colour(pct) == colour


def test_colour_is_interpolated_between_anchors() -> None:
    # 11.25 % is halfway from green (5 %) to amber (17.5 %): each channel is the mean.
    green = (0x43, 0xA0, 0x47)
    amber = (0xFB, 0xC0, 0x2D)
    want = "#" + "".join(f"{round((g + a) / 2):02x}" for g, a in zip(green, amber, strict=True))
    assert deviation_colour(11.25) == want
    # monotone towards red: the green channel falls from amber to red
    greens = [int(deviation_colour(p)[3:5], 16) for p in (17.5, 20.0, 25.0, 29.0, 30.0)]
    assert greens == sorted(greens, reverse=True)
