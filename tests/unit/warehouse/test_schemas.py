"""Data contracts: validate_frame accepts what the contract allows and names what it does not."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from warehouse import TABLES, ContractError, empty_frame, spec, validate_frame

UTC = dt.UTC


def _hourly(**overrides: object) -> pl.DataFrame:
    data: dict[str, object] = {
        "meter_id": ["M1", "M1"],
        "ts": [dt.datetime(2022, 1, 1, 0, tzinfo=UTC), dt.datetime(2022, 1, 1, 1, tzinfo=UTC)],
        "volume_m3": [1.5, None],
        "quality": ["valid", "missing"],
        "source": ["register", "register"],
    }
    data.update(overrides)
    return pl.DataFrame(data)


def test_valid_frame_comes_back_in_contract_order_and_dtypes() -> None:
    frame = _hourly().select("quality", "ts", "meter_id", "volume_m3", "source")
    out = validate_frame(frame, "hourly_archive")
    assert out.columns == list(spec("hourly_archive").schema)
    assert out.schema == spec("hourly_archive").schema
    # absent nullable columns are added as nulls: missing is null, never 0
    assert out.get_column("pressure_kpa").null_count() == 2
    assert out.get_column("volume_m3").to_list() == [1.5, None]


def test_missing_required_column_is_named() -> None:
    with pytest.raises(ContractError, match=r"hourly_archive: missing required columns \['quality'\]"):
        validate_frame(_hourly().drop("quality"), "hourly_archive")


def test_naive_timestamps_are_rejected_with_the_fix() -> None:
    naive = _hourly().with_columns(pl.col("ts").dt.replace_time_zone(None))
    with pytest.raises(ContractError, match=r"naive datetime.*replace_time_zone\('UTC'\)"):
        validate_frame(naive, "hourly_archive")


def test_other_time_zones_are_converted_to_utc() -> None:
    local = _hourly().with_columns(pl.col("ts").dt.convert_time_zone("Europe/Moscow"))
    out = validate_frame(local, "hourly_archive")
    assert out.get_column("ts").dtype == pl.Datetime("us", "UTC")
    assert out.get_column("ts")[0] == dt.datetime(2022, 1, 1, 0, tzinfo=UTC)


def test_mistyped_column_is_named() -> None:
    with pytest.raises(ContractError, match=r"column 'volume_m3' has dtype String, expected Float64"):
        validate_frame(_hourly(volume_m3=["1", "2"]), "hourly_archive")


def test_quality_outside_the_closed_set_is_rejected() -> None:
    with pytest.raises(ContractError, match=r"column 'quality' has values \['ok'\]"):
        validate_frame(_hourly(quality=["valid", "ok"]), "hourly_archive")


def test_null_key_is_rejected() -> None:
    with pytest.raises(ContractError, match=r"1 null value\(s\) in required column 'meter_id'"):
        validate_frame(_hourly(meter_id=["M1", None]), "hourly_archive")


def test_integer_narrowing_that_overflows_is_a_contract_error() -> None:
    companies = pl.DataFrame(
        {"company_id": ["C1"], "name": ["Gas"], "time_zone": ["UTC"], "contract_hour": [300]}
    )
    with pytest.raises(ContractError, match="cannot convert"):
        validate_frame(companies, "companies")


def test_unknown_table_lists_the_known_ones() -> None:
    with pytest.raises(ContractError, match="unknown table 'hourly'.*hourly_archive"):
        spec("hourly")


@pytest.mark.parametrize("name", sorted(TABLES))
def test_every_contract_keys_columns_exist_and_empty_frame_validates(name: str) -> None:
    t = TABLES[name]
    assert set(t.key) <= set(t.schema)
    assert set(t.not_null) <= set(t.schema)
    assert set(t.choices) <= set(t.schema)
    for col, dtype in t.schema.items():
        if col == "ts" or col.endswith("_at") or col.startswith("ts_") or col == "cutoff":
            assert dtype == pl.Datetime("us", "UTC"), f"{name}.{col} must be UTC"
    assert validate_frame(empty_frame(name), name).height == 0
