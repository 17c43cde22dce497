"""Landing's frame helpers: their fast paths give what the plain polars forms give."""

from __future__ import annotations

import datetime as dt
import random

import polars as pl
import pytest

import warehouse._landing as wl
from warehouse import validate_frame
from warehouse._landing import _first_per_key_sorted, _month_spans, binary_copy, merge_hourly

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
KEY = ["meter_id", "ts"]


def _hours(rng: random.Random, meters: list[str], source: str, per_meter: int) -> pl.DataFrame:
    rows = [
        (m, T0 + dt.timedelta(hours=rng.randrange(40)), rng.random(), "valid", source)
        for m in meters
        for _ in range(per_meter)
    ]
    schema = {"meter_id": pl.String, "ts": pl.Datetime("us", "UTC"), "volume_m3": pl.Float64,
              "quality": pl.String, "source": pl.String}  # fmt: skip
    return pl.DataFrame(rows, schema=schema, orient="row")


def _reference(frames: list[pl.DataFrame]) -> pl.DataFrame:
    data = pl.concat([validate_frame(f, "hourly_archive") for f in frames])
    return data.unique(KEY, keep="first", maintain_order=True).sort(KEY)


@pytest.mark.parametrize("seed", range(40))
def test_merge_hourly_keeps_the_archive_row_and_sorts(seed: int) -> None:
    rng = random.Random(seed)
    meters = [f"M{i:03d}" for i in range(rng.randrange(1, 25))]
    archive = _hours(rng, rng.sample(meters, rng.randrange(1, len(meters) + 1)), "archive", rng.randrange(1, 4))
    register = _hours(rng, meters, "register", rng.randrange(1, 8))
    if seed % 2:
        register = register.sort(KEY)  # landing hands register hours over in order
    got = merge_hourly(register, archive)
    assert got is not None
    assert got.equals(_reference([archive, register]))
    assert got.filter(pl.col("meter_id").is_in(archive["meter_id"].implode()) & (pl.col("source") == "register")).join(
        archive, on=KEY, how="semi"
    ).height == 0


def test_merge_hourly_of_one_part_and_of_none() -> None:
    rng = random.Random(7)
    register = _hours(rng, ["M2", "M1"], "register", 5)
    got = merge_hourly(register, None)
    assert got is not None and got.equals(_reference([register]))
    assert merge_hourly(None, register.head(0)) is None


@pytest.mark.parametrize("ordered", [True, False])
def test_first_per_key_sorted_in_order_or_not(ordered: bool) -> None:
    rng = random.Random(3)
    data = _hours(rng, ["M3", "M1", "M2"], "register", 30)  # repeats keys
    if ordered:
        data = data.sort(KEY, maintain_order=True)
    got = _first_per_key_sorted(data, KEY)
    assert got.equals(data.unique(KEY, keep="first", maintain_order=True).sort(KEY))


def test_month_spans_of_no_rows() -> None:
    assert _month_spans(pl.Series([], dtype=pl.Datetime("us", "UTC"))) == []


def test_month_spans_one_month_is_all_rows() -> None:
    ts = pl.Series([T0, T0 + dt.timedelta(days=30)], dtype=pl.Datetime("us", "UTC"))
    ((month, mask),) = _month_spans(ts)
    assert month == T0 and mask.to_list() == [True, True]


@pytest.mark.parametrize("months", [2, 3, 6, 7, 9])
def test_month_spans_match_truncation(months: int) -> None:
    rng = random.Random(months)
    # month edges included; a month in the middle without rows is left out
    edges = [dt.datetime(2025 + (11 + m) // 12, (11 + m) % 12 + 1, 1, tzinfo=dt.UTC) for m in range(months + 1)]
    values = [e - dt.timedelta(microseconds=1) for e in edges[1:]] + edges[:-1]
    values += [edges[0] + dt.timedelta(seconds=rng.randrange(int((edges[-1] - edges[0]).total_seconds()))) for _ in range(200)]
    ts = pl.Series(values, dtype=pl.Datetime("us", "UTC"))
    if months > 2:
        ts = ts.filter(ts.dt.truncate("1mo") != edges[1])
    spans = _month_spans(ts)
    truncated = ts.dt.truncate("1mo")
    assert [m for m, _ in spans] == truncated.unique().sort().to_list()
    for month, mask in spans:
        assert mask.to_list() == (truncated == month).to_list()


@pytest.mark.parametrize("runs", [True, False])
def test_binary_copy_codes_text_runs_like_the_dictionary(runs: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(11)
    texts = [rng.choice(["D0000001", "D0000002", "volume", "дд", "", None]) for _ in range(20_000)]
    if runs:
        texts.sort(key=lambda v: (v is None, v or ""))
    frame = pl.DataFrame({"t": texts, "v": [rng.random() for _ in texts]})
    payload = binary_copy(frame)
    monkeypatch.setattr(wl, "_RUNS_PER_ROW", 10**9)  # every column takes the dictionary path
    assert binary_copy(frame) == payload
