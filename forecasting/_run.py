"""Forecast every metering point of a store and keep the result in its ``forecasts`` table."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Sequence

import polars as pl

from forecasting._base import HOUR, Forecaster, _check_instant
from forecasting._hdd import HeatingDegreeRegression
from forecasting.errors import InsufficientHistoryError, InvalidInputError
from warehouse import Store, empty_frame, load_consumption, load_meter_temperature

logger = logging.getLogger(__name__)


def run_forecasts(
    store: Store,
    *,
    cutoff: dt.datetime | None = None,
    horizon_hours: int = 48,
    backcast_days: int | None = None,
    model: Forecaster | None = None,
    meter_ids: Sequence[str] | None = None,
    chunk_meters: int = 2000,
    progress: Callable[[int, int], None] | None = None,
) -> pl.DataFrame:
    """Fit, backcast and forecast hourly consumption of the store's gas metering points.

    For each chunk of metering points: read the hourly archive before ``cutoff`` and the
    meters' outdoor temperature (their branch's weather station), fit ``model``, predict

    * the **backcast**: the model's expected value for every past hour of the archive
      (the "expected" column of the deviation table), and
    * the **forecast**: ``horizon_hours`` hours from ``cutoff`` on, conditioned on the
      weather table's temperatures for those hours (observed or a weather forecast),

    and write both to the ``forecasts`` table.  Writes are idempotent on
    ``(meter_id, ts, model, cutoff)``: re-running with the same data stores nothing new.

    Parameters
    ----------
    store
        An open, migrated store.
    cutoff
        End of history (UTC, on the hour).  Default: the last hour in the hourly archive
        plus one hour.
    horizon_hours
        Hours to forecast from ``cutoff`` on.
    backcast_days
        Backcast only the last ``backcast_days`` days before ``cutoff`` (default: all the
        history the model was fitted on).  The fit always uses all history.
    model
        The estimator to use, unfitted (default ``HeatingDegreeRegression()``); a fresh
        copy with the same hyper-parameters is fitted per chunk.
    meter_ids
        Metering points to forecast (default: every ``gas`` metering point).
    chunk_meters
        Metering points fitted per batch; bounds memory, the fit itself is batched.
    progress
        Called as ``progress(done, total)`` with counts of metering points after each chunk.

    Returns
    -------
    polars.DataFrame
        Every forecast and backcast row computed (``forecasts`` contract, UTC), whether or
        not it was already stored.  Meters skipped for too little history are logged at
        WARNING and have no rows.

    Raises
    ------
    MissingTemperatureError
        A fitted meter has no temperature for some horizon hour; the message names them.
    InsufficientHistoryError
        No metering point at all has enough history.
    """
    if isinstance(horizon_hours, bool) or not isinstance(horizon_hours, int) or horizon_hours < 1:
        raise InvalidInputError(f"horizon_hours: expected an integer >= 1, got {horizon_hours!r}")
    if backcast_days is not None and (
        isinstance(backcast_days, bool) or not isinstance(backcast_days, int) or backcast_days < 0
    ):
        raise InvalidInputError(
            f"backcast_days: expected None or an integer >= 0, got {backcast_days!r}"
        )
    if isinstance(chunk_meters, bool) or not isinstance(chunk_meters, int) or chunk_meters < 1:
        raise InvalidInputError(f"chunk_meters: expected an integer >= 1, got {chunk_meters!r}")
    store.check_schema()
    template = model if model is not None else HeatingDegreeRegression()
    if meter_ids is None:
        points = store.read("metering_points", columns=["meter_id", "resource"])
        meter_ids = (
            points.filter(pl.col("resource") == "gas").get_column("meter_id").sort().to_list()
        )
    meters = sorted(set(meter_ids))
    if cutoff is None:
        # TODO(warehouse): a max(ts) query would avoid reading the ts column.
        last = (
            store.read("hourly_archive", columns=["ts"], where={"meter_id": meters})
            .get_column("ts")
            .max()
        )
        if last is None:
            raise InsufficientHistoryError(
                "run_forecasts: expected hourly history in the hourly_archive table for "
                f"{len(meters)} gas metering point(s), found none; load archives first"
            )
        assert isinstance(last, dt.datetime)
        cutoff = last + HOUR
    cutoff = _check_instant(cutoff, "cutoff")
    horizon_end = cutoff + horizon_hours * HOUR
    backcast_from = cutoff - dt.timedelta(days=backcast_days) if backcast_days is not None else None

    results: list[pl.DataFrame] = []
    skipped: dict[str, str] = {}
    written = 0
    n_fitted = 0
    for start in range(0, len(meters), chunk_meters):
        chunk = meters[start : start + chunk_meters]
        consumption = load_consumption(store, freq="hour", meter_ids=chunk, end=cutoff)
        temperature = load_meter_temperature(store, meter_ids=chunk, end=horizon_end)
        estimator = type(template)(**template.get_params())
        try:
            estimator.fit(consumption, temperature, cutoff=cutoff)
        except InsufficientHistoryError as exc:
            skipped.update(
                dict.fromkeys(consumption.get_column("meter_id").unique().to_list(), str(exc))
            )
            if progress is not None:
                progress(min(start + chunk_meters, len(meters)), len(meters))
            continue
        skipped.update(estimator.skipped_)
        fitted = pl.DataFrame({"meter_id": list(estimator.meters_)}, schema={"meter_id": pl.String})
        n_fitted += fitted.height

        past = temperature.filter(pl.col("ts") < cutoff, pl.col("temperature_c").is_not_null())
        if backcast_from is not None:
            past = past.filter(pl.col("ts") >= backcast_from)
        past = past.join(consumption.select("meter_id", "ts"), on=["meter_id", "ts"], how="semi")
        backcast = estimator.predict(past.join(fitted, on="meter_id", how="semi"))
        # Every fitted meter needs every horizon hour: absent ones become nulls, which
        # predict reports by meter and hour.
        hours = pl.datetime_range(
            cutoff, horizon_end, "1h", closed="left", time_zone="UTC", eager=True
        )
        grid = fitted.join(pl.DataFrame({"ts": hours.dt.cast_time_unit("us")}), how="cross")
        future = grid.join(temperature, on=["meter_id", "ts"], how="left")
        forecast = estimator.predict(future, start=cutoff, end=horizon_end)

        frame = pl.concat([backcast, forecast])
        written += store.write("forecasts", frame)
        results.append(frame)
        if progress is not None:
            progress(min(start + chunk_meters, len(meters)), len(meters))

    if n_fitted == 0:
        reasons = "; ".join(f"{m}: {r}" for m, r in list(skipped.items())[:3])
        raise InsufficientHistoryError(
            f"run_forecasts: no metering point could be fitted before {cutoff.isoformat()} "
            f"({len(meters)} tried) — {reasons}"
        )
    if skipped:
        logger.warning(
            "run_forecasts: %d metering point(s) skipped, e.g. %s",
            len(skipped),
            "; ".join(f"{m}: {r}" for m, r in list(skipped.items())[:3]),
        )
    out = pl.concat(results).sort("meter_id", "ts") if results else empty_frame("forecasts")
    logger.info(
        "run_forecasts: %d meter(s), cutoff %s, %d row(s) computed, %d newly stored",
        n_fitted,
        cutoff.isoformat(),
        out.height,
        written,
    )
    return out
