"""Fixtures of the forecasting unit tests: seeded synthetic heating series.

consumption = a * max(0, Tb - T_24h) + hourly profile + noise, over a temperature curve
that cools from early autumn into winter with a daily cycle and weather swings.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import polars as pl
import pytest

START = dt.datetime(2025, 9, 15, tzinfo=dt.UTC)


@dataclass(frozen=True)
class Synthetic:
    consumption: pl.DataFrame  # warehouse CONSUMPTION contract
    temperature: pl.DataFrame  # meter_id, ts, temperature_c
    base_c: dict[str, float]
    slope: dict[str, float]

    def hours(self) -> pl.Series:
        return self.consumption.get_column("ts").unique().sort()


def make_synthetic(
    *, n_meters: int = 12, days: int = 120, seed: int = 0, noise: float = 0.06, smoothing: int = 24
) -> Synthetic:
    rng = np.random.default_rng(seed)
    n = days * 24
    ts = pl.datetime_range(
        START, START + dt.timedelta(hours=n - 1), "1h", time_zone="UTC", eager=True
    ).dt.cast_time_unit("us")
    hour = np.arange(n)
    hod = hour % 24
    season = 20.0 - 28.0 * hour / n  # +20 °C in mid-September down to about -8 °C
    daily = -4.0 * np.cos(2 * np.pi * (hod - 3) / 24)  # coldest around 03 UTC
    weather = np.zeros(n)
    shocks = rng.normal(0.0, 0.5, n)
    for i in range(1, n):  # slow weather swings (AR(1))
        weather[i] = 0.98 * weather[i - 1] + shocks[i]
    temp = season + daily + weather
    smooth = np.array([temp[max(0, i - smoothing + 1) : i + 1].mean() for i in range(n)])
    weekend = np.array([(START + dt.timedelta(hours=int(h))).weekday() >= 5 for h in hour])
    cons, temps, base_c, slope = [], [], {}, {}
    for k in range(n_meters):
        meter = f"MP-{k:04d}"
        tb, a, level0 = rng.uniform(12, 18), rng.uniform(0.5, 5), rng.uniform(0.5, 3)
        profile = (
            level0 * (1 + 0.5 * np.sin(2 * np.pi * (hod - 8) / 24)) * np.where(weekend, 0.7, 1.0)
        )
        level = a * np.maximum(0.0, tb - smooth) + profile
        y = np.maximum(level + rng.normal(0.0, 1.0, n) * (noise * level + 0.05), 0.0)
        cons.append(pl.DataFrame({"meter_id": meter, "ts": ts, "volume_m3": y, "quality": "valid"}))
        temps.append(pl.DataFrame({"meter_id": meter, "ts": ts, "temperature_c": temp}))
        base_c[meter], slope[meter] = tb, a
    return Synthetic(pl.concat(cons), pl.concat(temps), base_c, slope)


@pytest.fixture(scope="session")
def synthetic() -> Synthetic:
    """12 meters x 120 days, seed 0."""
    return make_synthetic()


@pytest.fixture(scope="session")
def make_series() -> Callable[..., Synthetic]:
    """The generator itself, for tests that need other sizes, seeds or noise."""
    return make_synthetic
