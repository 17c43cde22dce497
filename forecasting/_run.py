"""Forecast every metering point of a store and keep the result in its ``forecasts`` table."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Sequence

import polars as pl

from forecasting._base import HOUR, Forecaster, check_instant
from forecasting._hdd import HeatingDegreeRegression
from forecasting._scenarios import Scenario, resolve_scenarios, scenario_temperature
from forecasting.errors import ForecastingError, InsufficientHistoryError, InvalidInputError
from warehouse import Store, empty_frame, load_consumption, load_meter_temperature
from warehouse._schemas import OBSERVED_SCENARIO

logger = logging.getLogger(__name__)

#: Stored and rebuilt scenario temperatures closer than this (°C) count as unchanged.
_SAME_C = 1e-9


def run_forecasts(
    store: Store,
    *,
    cutoff: dt.datetime | None = None,
    horizon_hours: int = 48,
    backcast_days: int | None = None,
    model: Forecaster | None = None,
    meter_ids: Sequence[str] | None = None,
    scenarios: Sequence[Scenario | str] = (OBSERVED_SCENARIO,),
    incremental: bool = True,
    chunk_meters: int = 2000,
    progress: Callable[[int, int], None] | None = None,
) -> pl.DataFrame:
    """Fit, backcast and forecast hourly consumption of the store's gas metering points.

    For each chunk of metering points: read the hourly archive before ``cutoff`` and the
    meters' outdoor temperature (their branch's weather station), fit ``model``, predict

    * the **backcast**: the model's expected value for every past hour of the archive
      (the "expected" column of the deviation table), on observed temperatures, stored
      once with ``scenario = "observed"``, and
    * the **forecast**: ``horizon_hours`` hours from ``cutoff`` on, once per temperature
      scenario (:class:`Scenario`): the same fitted model predicts the horizon under each
      scenario side by side, stored with the scenario's name,

    and write both to the ``forecasts`` table, keyed by ``(meter_id, ts, model, cutoff,
    scenario)``.  The horizon rows of a recomputed meter replace those an earlier run of
    the same model stored at the same cutoff under the same scenario (a new weather
    forecast updates them); backcast rows are written idempotently.

    **Incremental runs** (``incremental=True``, the default) skip a metering point
    whose stored forecast is still up to date, without fitting it.  It is up to date
    when the store holds a run of the same model (its ``alias``) for it with a cutoff
    ``C`` such that

    1. no new history arrived: the meter's hourly archive has no row with
       ``C <= ts < cutoff`` (so the history before the new cutoff is the history
       ``C`` saw, unless older hours were back-filled or edited — see below), and
    2. for every requested scenario that run stored all ``horizon_hours`` hours from
       ``C`` on, conditioned on exactly the temperatures the scenario gives today
       (rebuilt from today's weather table and forecast file; so a new weather
       forecast or a changed file is new data and the meter is recomputed).

    The latest such run is used; a skipped meter keeps it (read it with
    :func:`analytics.latest_forecast`), so its cutoff may be earlier than the others'
    when its unit has not called in since.  Not detected: back-filled or edited hours
    before ``C``, corrected past weather, and changed hyper-parameters of a model with
    the same alias — pass ``incremental=False`` after those to recompute everything.

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
    scenarios
        Temperature scenarios of the horizon: :class:`Scenario` objects or their
        spellings (``"observed"``, ``"normal"``, ``"normal-5"``,
        ``"cold_snap:-25@2022-02-01+5d"``; see :func:`parse_scenario`).  Names must be
        distinct.
    incremental
        Skip metering points whose stored forecast is up to date (the rule above).
    chunk_meters
        Metering points fitted per batch; bounds memory, the fit itself is batched.
    progress
        Called as ``progress(done, total)`` with counts of metering points after each chunk.

    Returns
    -------
    polars.DataFrame
        Every forecast and backcast row computed (``forecasts`` contract, UTC), whether or
        not it was already stored; no rows for meters skipped as up to date.  Meters
        skipped for too little history are logged at WARNING and have no rows.

    Raises
    ------
    UnknownScenarioError
        A scenario string is neither registered nor a valid spelling (lists the known ones).
    MissingTemperatureError
        A fitted meter has no temperature for some horizon hour under a scenario (the
        weather table lacks it, or the normal year has no history for that day); the
        message names the meters and hours.
    InsufficientHistoryError
        No metering point at all has enough history.

    Examples
    --------
    >>> run_forecasts(store, horizon_hours=24 * 30,
    ...               scenarios=["normal", "normal-5", "cold_snap:-25@2022-02-01+5d"])  # doctest: +SKIP
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
    plan = resolve_scenarios(scenarios)
    store.check_schema()
    template = model if model is not None else HeatingDegreeRegression()
    points = store.read("metering_points", columns=["meter_id", "branch_id", "resource"])
    if meter_ids is None:
        meter_ids = (
            points.filter(pl.col("resource") == "gas").get_column("meter_id").sort().to_list()
        )
    meters = sorted(set(meter_ids))
    stations = points.join(
        store.read("branches", columns=["branch_id", "weather_station"]), on="branch_id"
    ).select("meter_id", pl.col("weather_station").alias("station_id"))
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
    cutoff = check_instant(cutoff, "cutoff")
    horizon = horizon_hours * HOUR
    horizon_end = cutoff + horizon
    backcast_from = cutoff - dt.timedelta(days=backcast_days) if backcast_days is not None else None

    results: list[pl.DataFrame] = []
    skipped: dict[str, str] = {}
    current: list[str] = []
    written = 0
    n_fitted = 0
    for start in range(0, len(meters), chunk_meters):
        chunk = meters[start : start + chunk_meters]
        consumption = load_consumption(store, freq="hour", meter_ids=chunk, end=cutoff)
        temperature = load_meter_temperature(store, meter_ids=chunk, end=horizon_end)
        if incremental:
            fresh = _up_to_date(
                store, template.alias, consumption, temperature, stations, plan,
                cutoff=cutoff, horizon=horizon,
            )  # fmt: skip
            if fresh:
                current.extend(fresh)
                consumption = consumption.filter(~pl.col("meter_id").is_in(fresh))
                temperature = temperature.filter(~pl.col("meter_id").is_in(fresh))
                if consumption.height == 0:
                    if progress is not None:
                        progress(min(start + chunk_meters, len(meters)), len(meters))
                    continue
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
        fitted_ids = list(estimator.meters_)
        n_fitted += len(fitted_ids)

        past = temperature.filter(pl.col("ts") < cutoff, pl.col("temperature_c").is_not_null())
        if backcast_from is not None:
            past = past.filter(pl.col("ts") >= backcast_from)
        past = past.join(consumption.select("meter_id", "ts"), on=["meter_id", "ts"], how="semi")
        backcast = estimator.predict(
            past.filter(pl.col("meter_id").is_in(fitted_ids))
        ).with_columns(scenario=pl.lit(OBSERVED_SCENARIO))
        frames: list[pl.DataFrame] = []
        mine = temperature.filter(pl.col("meter_id").is_in(fitted_ids))
        for scenario in plan:
            # Every fitted meter gets every horizon hour, or a MissingTemperatureError
            # naming the meters and hours.
            future = scenario_temperature(
                scenario, mine, start=cutoff, end=horizon_end, meter_ids=fitted_ids,
                stations=stations,
            )  # fmt: skip
            forecast = estimator.predict(future, start=cutoff, end=horizon_end)
            frames.append(forecast.with_columns(scenario=pl.lit(scenario.name)))

        forecast_rows = pl.concat(frames)
        with store.transaction():
            # A recomputed horizon replaces what an earlier run at the same cutoff stored
            # (e.g. before a new weather forecast); the backcast is written idempotently
            # (it was deleted and comes back if "observed" is among the scenarios).
            written += store.replace(
                "forecasts",
                forecast_rows,
                where={
                    "meter_id": fitted_ids,
                    "model": [estimator.alias],
                    "cutoff": [cutoff],
                    "scenario": [sc.name for sc in plan],
                },
            )
            written += store.write("forecasts", backcast)
        results.append(pl.concat([backcast, forecast_rows]))
        if progress is not None:
            progress(min(start + chunk_meters, len(meters)), len(meters))

    if n_fitted == 0 and not current:
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
    out = (
        pl.concat(results).sort("meter_id", "scenario", "ts")
        if results
        else empty_frame("forecasts")
    )
    logger.info(
        "run_forecasts: %d meter(s) fitted, %d up to date, cutoff %s, %d scenario(s), "
        "%d row(s) computed, %d newly stored",
        n_fitted,
        len(current),
        cutoff.isoformat(),
        len(plan),
        out.height,
        written,
    )
    return out


def _up_to_date(
    store: Store,
    alias: str,
    consumption: pl.DataFrame,
    temperature: pl.DataFrame,
    stations: pl.DataFrame,
    plan: list[Scenario],
    *,
    cutoff: dt.datetime,
    horizon: dt.timedelta,
) -> list[str]:
    """Meters of the chunk whose stored forecast is up to date (rule: :func:`run_forecasts`)."""
    last = consumption.group_by("meter_id").agg(pl.col("ts").max().alias("last"))
    if last.height == 0:
        return []
    earliest = last.get_column("last").min()
    assert isinstance(earliest, dt.datetime)
    # A candidate run has a cutoff after the meter's last archive hour, and its horizon
    # rows start at that cutoff: reading from the earliest last hour on finds them all.
    stored = store.read(
        "forecasts",
        start=earliest + HOUR,
        end=cutoff + horizon,
        where={"meter_id": last.get_column("meter_id").to_list(), "model": [alias]},
        columns=["meter_id", "ts", "cutoff", "scenario", "temperature_c"],
    )
    stored = stored.join(last, on="meter_id").filter(
        pl.col("cutoff") > pl.col("last"),
        pl.col("cutoff") <= cutoff,
        pl.col("ts") >= pl.col("cutoff"),
        pl.col("ts") < pl.col("cutoff") + horizon,
    )
    if stored.height == 0:
        return []
    run = stored.group_by("meter_id").agg(pl.col("cutoff").max())
    stored = stored.join(run, on=["meter_id", "cutoff"])
    fresh: list[str] = []
    for (run_cutoff,), rows in stored.group_by(["cutoff"]):
        assert isinstance(run_cutoff, dt.datetime)
        ids = rows.get_column("meter_id").unique().sort().to_list()
        ok = set(ids)
        for scenario in plan:
            try:
                now = scenario_temperature(
                    scenario,
                    temperature.filter(pl.col("meter_id").is_in(ids)),
                    start=run_cutoff,
                    end=run_cutoff + horizon,
                    meter_ids=ids,
                    stations=stations,
                )
            except ForecastingError:
                ok = set()  # cannot rebuild the temperatures: recompute these meters
                break
            same = now.join(
                rows.filter(pl.col("scenario") == scenario.name).select(
                    "meter_id", "ts", pl.col("temperature_c").alias("_stored")
                ),
                on=["meter_id", "ts"],
                how="left",
            ).group_by("meter_id").agg(
                ((pl.col("_stored") - pl.col("temperature_c")).abs() <= _SAME_C)
                .fill_null(False)
                .all()
                .alias("same")
            )
            ok &= set(same.filter(pl.col("same")).get_column("meter_id").to_list())
        fresh.extend(sorted(ok))
    return sorted(fresh)
