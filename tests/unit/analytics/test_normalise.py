"""Weather normalisation recovers a known heating-degree coefficient and normal year."""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
import pytest

from analytics import (
    AnalyticsError,
    aggregate_normalised,
    fit_hdd,
    normal_year,
    normalise_consumption,
)

START = dt.date(2021, 10, 1)


def _temps(days: int, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    doy = np.arange(days)
    return 8.0 - 9.0 * np.cos(2 * np.pi * (doy + 274 - 20) / 365.0) + rng.normal(0, 3, days)


def _daily(coefs: dict[str, tuple[float, float]], days: int = 150, noise: float = 0.0, base: float = 15.5) -> pl.DataFrame:
    rng = np.random.default_rng(7)
    t = _temps(days)
    frames = []
    for meter, (a, b) in coefs.items():
        vol = a + b * np.maximum(0.0, base - t) + rng.normal(0, noise, days)
        frames.append(
            pl.DataFrame(
                {
                    "meter_id": [meter] * days,
                    "day": [START + dt.timedelta(days=k) for k in range(days)],
                    "volume_m3": vol,
                    "temperature_c": t,
                }
            )
        )
    return pl.concat(frames)


def test_fit_recovers_a_known_hdd_coefficient() -> None:
    daily = _daily({"boiler": (40.0, 12.0), "house": (0.8, 0.45), "plant": (900.0, 6.0)}, noise=0.5)
    fit = fit_hdd(daily).sort("meter_id")
    got = dict(zip(fit.get_column("meter_id"), fit.get_column("hdd_coef_m3"), strict=True))
    assert got["boiler"] == pytest.approx(12.0, rel=0.01)
    assert got["house"] == pytest.approx(0.45, rel=0.05)
    assert got["plant"] == pytest.approx(6.0, rel=0.02)
    base = dict(zip(fit.get_column("meter_id"), fit.get_column("base_m3"), strict=True))
    assert base["boiler"] == pytest.approx(40.0, abs=0.5)
    assert (fit.get_column("days") == 150).all()
    assert fit.filter(pl.col("meter_id") == "boiler").get_column("r2").item() > 0.99


def test_fit_refuses_a_negative_slope_and_short_series() -> None:
    daily = _daily({"odd": (100.0, -3.0)})
    short = _daily({"new": (5.0, 2.0)}, days=5)
    fit = fit_hdd(pl.concat([daily, short])).sort("meter_id")
    new, odd = fit.row(0, named=True), fit.row(1, named=True)
    assert odd["hdd_coef_m3"] == 0.0 and odd["base_m3"] == pytest.approx(daily.get_column("volume_m3").mean())
    assert new["hdd_coef_m3"] == 0.0 and new["days"] == 5


def test_normalisation_moves_only_the_weather_part_to_the_normal_year() -> None:
    a, b = 10.0, 3.5
    daily = _daily({"m": (a, b)}, days=90)
    normal = pl.DataFrame({"day_of_year": np.arange(1, 367, dtype=np.int16), "hdd_normal": [12.0] * 366})
    by_day = normalise_consumption(daily, normal=normal, period="day")
    assert by_day.height == 90
    assert by_day.get_column("normalised_m3").to_numpy() == pytest.approx(a + b * 12.0)
    assert by_day.get_column("hdd_coef_m3").to_numpy() == pytest.approx(b)
    total = normalise_consumption(daily, normal=normal, period="total").row(0, named=True)
    assert total["days"] == 90 and total["period"] == START
    assert total["normalised_m3"] == pytest.approx(90 * (a + b * 12.0))
    assert total["weather_effect_m3"] == pytest.approx(b * (90 * 12.0 - total["hdd"]))
    months = normalise_consumption(daily, normal=normal, period="month")
    assert months.get_column("period").to_list() == [dt.date(2021, 10, 1), dt.date(2021, 11, 1), dt.date(2021, 12, 1)]
    assert months.get_column("volume_m3").sum() == pytest.approx(total["volume_m3"])


def test_normal_given_as_temperature() -> None:
    daily = _daily({"m": (2.0, 1.0)}, days=30)
    normal = pl.DataFrame({"day_of_year": list(range(1, 367)), "temperature_c": [5.5] * 366})
    out = normalise_consumption(daily, normal=normal, period="day")
    assert out.get_column("hdd_normal").to_numpy() == pytest.approx(10.0)
    assert out.get_column("normalised_m3").to_numpy() == pytest.approx(12.0)


def test_normal_year_is_the_mean_hdd_per_day_of_year() -> None:
    # Three years of hourly temperature; 1 March is 61 in every year (leap calendar).
    ts, temp = [], []
    for year, offset in ((2019, 0.0), (2020, 2.0), (2021, 4.0)):
        for day in (dt.date(year, 2, 28), dt.date(year, 3, 1)):
            for h in range(24):
                ts.append(dt.datetime.combine(day, dt.time(h), dt.UTC))
                temp.append(10.0 + offset)
    ts.append(dt.datetime(2020, 2, 29, 12, tzinfo=dt.UTC))
    temp.append(20.0)
    frame = pl.DataFrame({"ts": ts, "temperature_c": temp})
    normal = normal_year(frame, base_c=15.5, smoothing_days=0)
    got = dict(zip(normal.get_column("day_of_year"), normal.get_column("hdd_normal"), strict=True))
    assert got[59] == pytest.approx((5.5 + 3.5 + 1.5) / 3)
    assert got[61] == pytest.approx((5.5 + 3.5 + 1.5) / 3)
    assert got[60] == pytest.approx(0.0)  # only 2020 has a 29 February (20 °C: no heating)
    assert dict(zip(normal.get_column("day_of_year"), normal.get_column("years"), strict=True))[61] == 3
    smooth = normal_year(frame, base_c=15.5, smoothing_days=1)
    assert smooth.height > normal.height  # neighbours are filled


def test_aggregate_by_group_and_total() -> None:
    daily = _daily({"a": (1.0, 1.0), "b": (2.0, 2.0), "c": (3.0, 0.5)}, days=40)
    normal = pl.DataFrame({"day_of_year": list(range(1, 367)), "hdd_normal": [10.0] * 366})
    per_meter = normalise_consumption(daily, normal=normal, period="total")
    meters = pl.DataFrame({"meter_id": ["a", "b", "c"], "category": ["household", "household", "industrial"]})
    out = aggregate_normalised(per_meter, meters, by="category")
    rows = {r["category"]: r for r in out.iter_rows(named=True)}
    assert rows["household"]["meters"] == 2 and rows["(all)"]["meters"] == 3
    assert rows["(all)"]["normalised_m3"] == pytest.approx(per_meter.get_column("normalised_m3").sum())
    assert rows["household"]["normalised_m3"] == pytest.approx(40 * (1 + 10) + 40 * (2 + 20))
    assert out.get_column("category").to_list()[-1] == "(all)"
    with pytest.raises(AnalyticsError, match="cannot group by"):
        aggregate_normalised(per_meter, meters, by="colour")


def test_bad_input() -> None:
    daily = _daily({"m": (1.0, 1.0)}, days=10)
    partial = pl.DataFrame({"day_of_year": [1], "hdd_normal": [3.0]})
    with pytest.raises(AnalyticsError, match="no value for day of year"):
        normalise_consumption(daily, normal=partial)
    with pytest.raises(AnalyticsError, match="period"):
        normalise_consumption(daily, normal=partial, period="week")  # type: ignore[arg-type]
    with pytest.raises(AnalyticsError, match="no daily consumption"):
        fit_hdd(daily.clear())
    with pytest.raises(AnalyticsError, match="lacks columns"):
        fit_hdd(daily.drop("temperature_c"))
    with pytest.raises(AnalyticsError, match="normal needs"):
        normalise_consumption(daily, normal=pl.DataFrame({"doy": [1]}))


def test_normalised_figure_compares_metered_and_normal() -> None:
    from analytics import normalised_figure

    daily = _daily({"a": (1.0, 1.0), "b": (2.0, 2.0)}, days=20)
    normal = pl.DataFrame({"day_of_year": list(range(1, 367)), "hdd_normal": [10.0] * 366})
    per_meter = normalise_consumption(daily, normal=normal, period="total")
    meters = pl.DataFrame({"meter_id": ["a", "b"], "category": ["household", "industrial"]})
    fig = normalised_figure(aggregate_normalised(per_meter, meters))
    assert list(fig.data[0].x) == ["household", "industrial"]
    assert list(fig.data[1].y) == pytest.approx([20 * 11.0, 20 * 22.0])
