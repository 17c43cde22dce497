"""Thin, cached calls from the pages into the public APIs of ``warehouse`` and ``analytics``.

:func:`dashboards.app.create_app` binds one :class:`DashboardData` (around the store it
was given) to the Flask server; callbacks reach it through :func:`current`.  Nothing here
queries at import time and nothing here writes SQL.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any, TypeVar

import flask
import polars as pl

from analytics import deviation_table, expected_consumption, latest_forecast
from warehouse import (
    Store,
    WarehouseError,
    load_consumption,
    load_meter_temperature,
    load_meters,
)

_CONFIG_KEY = "ASKUG_DASHBOARD_DATA"
T = TypeVar("T")

#: Shown instead of a page when the store holds nothing to show.
NO_DATA = "No data yet: run `askug demo` to fill the store with a demo enterprise."


@dataclass(frozen=True)
class ForecastData:
    """What the forecast page draws for one metering point (all ``ts`` in UTC).

    Attributes
    ----------
    meter
        The meter's directory row (``meter_id``, ``name``, ``branch_name``, ``time_zone``…).
    history
        Hourly actual consumption: ``ts``, ``volume_m3`` (m³ per hour).
    forecast
        The latest run's rows: ``ts``, ``volume_m3``, ``volume_m3_lo_80``,
        ``volume_m3_hi_80`` (m³ per hour); empty if the meter has no forecast.
    temperature
        Hourly outdoor temperature at the meter: ``ts``, ``temperature_c``.
    cutoff
        The run's cutoff, or None.
    model
        The run's model name, or None.
    """

    meter: dict[str, Any]
    history: pl.DataFrame
    forecast: pl.DataFrame
    temperature: pl.DataFrame
    cutoff: dt.datetime | None
    model: str | None


class DashboardData:
    """The dashboards' view of one store, with a short time-to-live cache.

    Parameters
    ----------
    store
        The warehouse the app reads from (DuckDB file or PostgreSQL).
    ttl_s
        Seconds a result is reused before it is read again.
    """

    def __init__(self, store: Store, *, ttl_s: float = 30.0) -> None:
        self.store = store
        self.ttl_s = ttl_s
        self._cache: dict[Hashable, tuple[float, Any]] = {}
        self._lock = threading.Lock()

    def _cached(self, key: Hashable, compute: Callable[[], T]) -> T:
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(key)
        if hit is not None and now - hit[0] < self.ttl_s:
            return hit[1]  # type: ignore[no-any-return]
        value = compute()
        with self._lock:
            self._cache[key] = (now, value)
        return value

    # --- status ----------------------------------------------------------------
    def problem(self) -> str | None:
        """None if there is something to show, else a friendly one-line reason."""
        try:
            meters = self.meters()
        except Exception:  # the backend's own error type: e.g. no tables yet
            # Only now ask for the schema version: it explains the failure better.
            # (Asking first would cost a round trip on every page view.)
            try:
                if self.store.schema_version() == 0:
                    return NO_DATA
                self.store.check_schema()
            except WarehouseError as exc:
                return str(exc)
            raise
        return NO_DATA if meters.height == 0 else None

    # --- directory ---------------------------------------------------------------
    def meters(self) -> pl.DataFrame:
        """The meter directory (:func:`warehouse.load_meters`)."""
        meters = self._cached(("meters",), lambda: load_meters(self.store))
        if meters.height == 0:
            # An empty store is about to be filled (`askug demo`): ask again next time.
            with self._lock:
                self._cache.clear()
        return meters

    def latest_day(self) -> dt.date | None:
        """The last UTC day with daily consumption, found through the monthly rollup."""

        def compute() -> dt.date | None:
            months = load_consumption(self.store, freq="month")
            if months.height == 0:
                return None
            last_month = months.get_column("ts").max()
            assert isinstance(last_month, dt.datetime)
            days = load_consumption(self.store, freq="day", start=last_month)
            last = days.get_column("ts").max()
            return last.date() if isinstance(last, dt.datetime) else None

        return self._cached(("latest_day",), compute)

    # --- deviation page -------------------------------------------------------------
    def deviations(self, *, days: int) -> pl.DataFrame:
        """The deviation table (:func:`analytics.deviation_table`) of the last ``days`` days.

        The window ends on the last day that has both an actual and an expected value
        (falling back to the last day with consumption), so a day still in progress or
        not yet backcast does not show up as a column of grey cells.
        """

        def compute() -> pl.DataFrame:
            last = self.latest_day()
            if last is None:
                return deviation_table(_empty_consumption(), _empty_expected(), self.meters())
            # Read a little more than asked for, to find the last comparable day.
            start = _utc(last - dt.timedelta(days=days + 7))
            actual = load_consumption(self.store, freq="day", start=start)
            expected = expected_consumption(self.store, freq="day", start=start)
            table = deviation_table(actual, expected, self.meters())
            both = table.filter(pl.col("deviation_m3").is_not_null())
            end = both.get_column("day").max() if both.height else last
            assert isinstance(end, dt.date)
            first = end - dt.timedelta(days=days - 1)
            return table.filter(pl.col("day").is_between(first, end))

        return self._cached(("deviations", days), compute)

    # --- forecast page ----------------------------------------------------------------
    def forecast(self, meter_id: str, *, history_days: int = 14) -> ForecastData | None:
        """History, latest forecast run and temperature of one metering point.

        Returns None for an unknown ``meter_id``.  The window starts ``history_days``
        before the cutoff (or before the last day with data if there is no forecast).
        """

        def compute() -> ForecastData | None:
            directory = self.meters().filter(pl.col("meter_id") == meter_id)
            if directory.height == 0:
                return None
            run = latest_forecast(self.store, meter_ids=[meter_id])
            if run.height:
                cutoff = run.get_column("cutoff").max()
                model = run.get_column("model").first()
                assert isinstance(cutoff, dt.datetime)
                start = cutoff - dt.timedelta(days=history_days)
                run = run.filter(pl.col("ts") >= start)
                end: dt.datetime | None = run.get_column("ts").max()  # type: ignore[assignment]
                end = end + dt.timedelta(hours=1) if end else None
            else:
                cutoff, model = None, None
                last = self.latest_day()
                end = _utc(last + dt.timedelta(days=1)) if last else None
                start = (end or _utc(dt.date.today())) - dt.timedelta(days=history_days)
            history = load_consumption(self.store, meter_ids=[meter_id], start=start, end=end)
            temperature = load_meter_temperature(
                self.store, meter_ids=[meter_id], start=start, end=end
            )
            return ForecastData(
                meter=directory.row(0, named=True),
                history=history.select("ts", "volume_m3"),
                forecast=run.select("ts", "volume_m3", "volume_m3_lo_80", "volume_m3_hi_80"),
                temperature=temperature.select("ts", "temperature_c"),
                cutoff=cutoff,
                model=str(model) if model is not None else None,
            )

        return self._cached(("forecast", meter_id, history_days), compute)


def bind(server: flask.Flask, store: Store) -> DashboardData:
    """Attach a :class:`DashboardData` for ``store`` to the app's Flask server."""
    data = DashboardData(store)
    server.config[_CONFIG_KEY] = data
    return data


def current() -> DashboardData:
    """The :class:`DashboardData` of the app serving the current request."""
    try:
        return flask.current_app.config[_CONFIG_KEY]  # type: ignore[no-any-return]
    except KeyError:
        raise RuntimeError(
            "this Dash app has no store bound; build it with dashboards.app.create_app(store)"
        ) from None


def _utc(day: dt.date) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)


def _empty_consumption() -> pl.DataFrame:
    return pl.DataFrame(
        schema={
            "meter_id": pl.String,
            "ts": pl.Datetime("us", "UTC"),
            "volume_m3": pl.Float64,
            "quality": pl.String,
        }
    )


def _empty_expected() -> pl.DataFrame:
    return pl.DataFrame(
        schema={"meter_id": pl.String, "ts": pl.Datetime("us", "UTC"), "expected_m3": pl.Float64}
    )
