"""Consumption models of the four consumer categories, as normalised hourly profiles.

A *profile* is a unit-free hourly series whose sum over the reference year (the
calendar year of the simulation start) is 1; multiplying it by a metering point's annual
volume (m³ at standard conditions) gives its expected hourly consumption.  The daily
totals follow the outdoor temperature of the shipped Bedford series; the split of a day
over its hours uses the company's local time (people cook and offices open on local
time), while the daily totals are per UTC day.
"""

from __future__ import annotations

import datetime as dt
from typing import Final

import numpy as np

from ingest import _shipped

#: Sub-types of the category models: (name, category).
SUBTYPES: Final = (
    ("EFH3", "household"),  # BDEW single-family house, building class 3
    ("EFH6", "household"),
    ("EFH9", "household"),
    ("MFH3", "household"),  # BDEW multi-family house
    ("MFH6", "household"),
    ("MFH9", "household"),
    ("GKO", "commercial"),  # BDEW offices
    ("GHA", "commercial"),  # BDEW retail
    ("GBH", "commercial"),  # BDEW accommodation
    ("BOILER", "municipal"),  # municipal boiler house
    ("SHIFT1", "industrial"),  # one weekday shift
    ("SHIFT2", "industrial"),
    ("SHIFT3", "industrial"),  # round the clock
)
SUBTYPE_NAMES: Final = tuple(s for s, _ in SUBTYPES)
CATEGORY_SUBTYPES: Final = {
    cat: tuple(i for i, (_, c) in enumerate(SUBTYPES) if c == cat)
    for cat in ("household", "commercial", "municipal", "industrial")
}

_SHIFT_HOURS: Final = {"SHIFT1": (7, 15), "SHIFT2": (6, 22), "SHIFT3": (0, 24)}
_SHIFT_WEEKEND: Final = {"SHIFT1": (0.15, 0.08), "SHIFT2": (0.30, 0.10), "SHIFT3": (0.70, 0.50)}


def _bdew(name: str) -> tuple[str, int]:
    return (name[:3], int(name[3:])) if name[:3] in ("EFH", "MFH") else (name, 0)


def daily_factor(name: str, geo_temperature_c: np.ndarray, weekday: np.ndarray) -> np.ndarray:
    """Relative daily use of a sub-type for geometric-mean temperatures (°C) and weekdays (0=Mon)."""
    if name == "BOILER":
        # Heating-driven with a small base load (hot water for a school or hospital).
        return np.maximum(0.0, 15.5 - geo_temperature_c) + 0.8
    if name.startswith("SHIFT"):
        sat, sun = _SHIFT_WEEKEND[name]
        week = np.array([1.0, 1.0, 1.0, 1.0, 1.0, sat, sun])
        shift: np.ndarray = week[weekday] * (1.0 + 0.012 * np.maximum(0.0, 15.0 - geo_temperature_c))
        return shift
    shlp, cls = _bdew(name)
    params = _shipped.sigmoid_parameters(shlp, cls, wind_impact=0)
    bdew: np.ndarray = _shipped.sigmoid(geo_temperature_c, params) * _shipped.weekday_factors(shlp)[weekday]
    return bdew


def hourly_share(name: str, local_hour: np.ndarray, local_weekday: np.ndarray, band: np.ndarray) -> np.ndarray:
    """Un-normalised weight of each hour (local hour/weekday, BDEW band of its UTC day)."""
    if name == "BOILER":
        return 1.0 + 0.3 * np.cos(2.0 * np.pi * (local_hour - 6) / 24.0)
    if name.startswith("SHIFT"):
        lo, hi = _SHIFT_HOURS[name]
        on = (local_hour >= lo) & (local_hour < hi)
        weekend = local_weekday >= 5
        return np.where(on | weekend, 1.0, 0.08)
    shlp, cls = _bdew(name)
    table = _shipped.hour_factors(shlp, cls)
    share: np.ndarray = np.maximum(table[local_weekday, local_hour, band], 1e-4)
    return share


def build_profiles(start: dt.date, days: int, calendars: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """Hourly profiles ``[company, subtype, hour]`` for the window, each summing to 1 over the reference year.

    Parameters
    ----------
    start, days
        The simulation window (UTC days).
    calendars
        Per company: local hour and local weekday (0=Mon) of every UTC hour of the window.
    """
    daily_mean, geo = _shipped.daily_temperature()
    origin = _shipped.TEMPERATURE_START.date()
    first = (start - origin).days
    win = np.arange(first, first + days)
    year0 = (dt.date(start.year, 1, 1) - origin).days
    year = np.arange(year0, (dt.date(start.year + 1, 1, 1) - origin).days)
    weekday = (np.arange(max(win[-1], year[-1]) + 1) + origin.weekday()) % 7
    band_day = _shipped.temperature_band(daily_mean[win])
    band = np.repeat(band_day, 24)
    out = np.empty((len(calendars), len(SUBTYPES), days * 24))
    for s, name in enumerate(SUBTYPE_NAMES):
        annual = daily_factor(name, geo[year], weekday[year]).sum()
        day = np.repeat(daily_factor(name, geo[win], weekday[win]) / annual, 24)
        for c, (hour, wday) in enumerate(calendars):
            share = hourly_share(name, hour, wday, band).reshape(days, 24)
            share = (share / share.sum(axis=1, keepdims=True)).reshape(-1)
            out[c, s] = day * share
    return out
