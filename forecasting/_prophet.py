"""Prophet with temperature regressors and a national holiday calendar, one model per meter.

Prophet (and cmdstanpy) are imported lazily, inside the adapter.  Prophet rejects
time-zone-aware ``ds``: the UTC timestamps are made naive on the way in and UTC is
restored on the way out, so the daily/weekly seasonalities and holidays are on UTC
days.  ``n_jobs > 1`` fits the meters in a ``spawn`` process pool (with ``fork`` the
workers deadlocked, see PERFORMANCE.md); cmdstanpy/prophet INFO logging is silenced
only for the duration of a fit or prediction, and the library warnings they raise
(pandas deprecations inside Prophet) are caught per meter into ``warnings_``.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from typing import Any, ClassVar, Final

import numpy as np
import polars as pl

from forecasting._base import Forecaster, Freq
from forecasting._statsmodels import (
    HEATING_BASE_C,
    _check_int,
    _check_interval,
    heating_regressors,
    run_quietly,
    usable_history,
)
from forecasting.errors import InsufficientHistoryError, InvalidParameterError

#: Extra regressors given to Prophet.
REGRESSORS: Final = ("temperature_c", "heating_degrees")
#: Meters per task sent to a worker process (amortises the pickling).
CHUNK: Final = 8


@contextlib.contextmanager
def quiet_logging() -> Iterator[None]:
    """Raise the prophet and cmdstanpy loggers to WARNING, and restore them on exit."""
    import cmdstanpy.utils

    cmdstanpy.utils.get_logger()  # initialises its handler (and level) if not yet done
    loggers = [logging.getLogger(name) for name in ("cmdstanpy", "prophet")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def _fit_one(
    frame: dict[str, Any], params: dict[str, Any], *, serialise: bool
) -> tuple[Any, list[str], str | None]:
    """Fit one meter; returns (model or its JSON, warnings, error message or None)."""
    import pandas as pd
    from prophet import Prophet

    df = pd.DataFrame(frame)

    def fit() -> Any:
        model = Prophet(
            interval_width=params["interval"],
            uncertainty_samples=params["uncertainty_samples"],
        )
        if params["country_holidays"] is not None:
            model.add_country_holidays(country_name=params["country_holidays"])
        for name in REGRESSORS:
            model.add_regressor(name)
        return model.fit(df)

    try:
        with quiet_logging():
            model, caught = run_quietly(fit)
    except (RuntimeError, ValueError) as exc:
        return None, [], f"Prophet fit failed: {exc}"
    if serialise:
        from prophet.serialize import model_to_json

        return model_to_json(model), caught, None
    return model, caught, None


def _fit_chunk(
    chunk: list[tuple[str, dict[str, Any]]], params: dict[str, Any]
) -> list[tuple[str, Any, list[str], str | None]]:
    """Worker entry point (module level so ``spawn`` can import it)."""
    out = []
    for meter, frame in chunk:
        model, caught, error = _fit_one(frame, params, serialise=True)
        out.append((meter, model, caught, error))
    return out


class ProphetForecaster(Forecaster):
    """Prophet per metering point, with temperature and heating degrees as regressors.

    Each meter gets ``Prophet(interval_width=interval)`` with its automatic trend and
    seasonalities (daily at hourly data, weekly, yearly with two years of history), the
    national holidays of ``country_holidays`` (from the ``holidays`` package that ships
    with Prophet: no download), and two extra regressors: the outdoor temperature and
    the heating degrees ``max(0, 15.5 °C - T)`` (of the trailing 24 h mean at hourly
    data), which lets the fit bend at the heating threshold.  Intervals are Prophet's
    own (trend and noise simulation), clipped at 0.

    Cost: about 1.2 s per meter for one year hourly, 0.1 s for two years daily, plus
    about 5 s to import Prophet in each worker; 100,000 meters hourly would take about
    18 h on 2 cores.  Use it as a benchmark, not the fast path.

    Parameters
    ----------
    country_holidays
        Country code of the holiday calendar (``"GB"``, ``"DE"``, ``"RU"``, …), or
        ``None`` for none.  Holidays fall on UTC calendar days.
    freq
        ``"hour"`` or ``"day"``.
    n_jobs
        Worker processes for the per-meter fits (``spawn`` start method); 1 fits in
        this process.
    interval
        Coverage of the prediction interval (Prophet's ``interval_width``).
    uncertainty_samples
        Simulation draws of the interval (Prophet's default 1000 is slower).
    min_history_days
        Meters with fewer usable steps than this many days are skipped.
    random_state
        Seed of the interval simulation (the global numpy state is saved and restored).

    Attributes
    ----------
    models_ : dict of str to prophet.Prophet
        The fitted model of each meter.
    warnings_ : dict of str to list of str
        Warnings raised while fitting each meter.
    meters_, skipped_, cutoff_
        As in :class:`Forecaster`.

    Examples
    --------
    >>> ProphetForecaster(country_holidays="GB").fit(consumption, temperature)  # doctest: +SKIP
    """

    alias: ClassVar[str] = "prophet"

    def __init__(
        self,
        *,
        country_holidays: str | None = "GB",
        freq: Freq = "hour",
        n_jobs: int = 1,
        interval: float = 0.8,
        uncertainty_samples: int = 300,
        min_history_days: int = 14,
        random_state: int = 0,
    ) -> None:
        self.country_holidays = country_holidays
        self.freq = freq
        self.n_jobs = n_jobs
        self.interval = interval
        self.uncertainty_samples = uncertainty_samples
        self.min_history_days = min_history_days
        self.random_state = random_state

    def _validate_params(self) -> None:
        _check_int(self.n_jobs, "n_jobs", 1)
        _check_int(self.uncertainty_samples, "uncertainty_samples", 10)
        _check_int(self.min_history_days, "min_history_days", 1)
        _check_interval(self.interval)
        rs = self.random_state
        if isinstance(rs, bool) or not isinstance(rs, int):
            raise InvalidParameterError(f"random_state: expected an integer seed, got {rs!r}")
        code = self.country_holidays
        if code is not None:
            import holidays

            try:
                if not isinstance(code, str):
                    raise NotImplementedError
                holidays.country_holidays(code)
            except NotImplementedError:
                raise InvalidParameterError(
                    f"country_holidays: expected a country code the `holidays` package knows "
                    f"(e.g. 'GB', 'DE', 'RU') or None, got {code!r}"
                ) from None

    def _params(self) -> dict[str, Any]:
        return {
            "interval": float(self.interval),
            "uncertainty_samples": self.uncertainty_samples,
            "country_holidays": self.country_holidays,
        }

    def _fit(self, consumption: pl.DataFrame, temperature: pl.DataFrame) -> None:
        steps = self.min_history_days * (24 if self.freq == "hour" else 1)
        rows, self.temperature_tail_ = usable_history(
            self, consumption, temperature, min_steps=steps, base_c=HEATING_BASE_C
        )
        frames = [
            (meter, _to_prophet(part))
            for (meter,), part in rows.group_by("meter_id", maintain_order=True)
        ]
        self.models_: dict[str, Any] = {}
        self.warnings_: dict[str, list[str]] = {}
        params = self._params()
        if self.n_jobs == 1 or len(frames) == 1:
            results = [
                (meter, *_fit_one(frame, params, serialise=False)) for meter, frame in frames
            ]
        else:
            from prophet.serialize import model_from_json

            chunks = [frames[i : i + CHUNK] for i in range(0, len(frames), CHUNK)]
            ctx = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(max_workers=self.n_jobs, mp_context=ctx) as pool:
                done = pool.map(_fit_chunk, chunks, [params] * len(chunks))
                results = []
                for part in done:
                    for m, j, w, e in part:
                        model, more = (
                            (None, []) if j is None else run_quietly(partial(model_from_json, j))
                        )
                        results.append((m, model, w + [x for x in more if x not in w], e))
        for meter, model, caught, error in results:
            assert isinstance(meter, str)
            if error is not None:
                self.skipped_[meter] = error
                continue
            self.models_[meter] = model
            if caught:
                self.warnings_[meter] = caught
        if not self.models_:
            raise InsufficientHistoryError(
                f"{type(self).__name__}: the fit failed for every meter: "
                + "; ".join(f"{m}: {r}" for m, r in list(self.skipped_.items())[:5])
            )
        self.meters_ = tuple(sorted(self.models_))

    def _predict(self, temperature: pl.DataFrame) -> pl.DataFrame:
        import pandas as pd

        frame = heating_regressors(temperature, self.temperature_tail_, self.freq, HEATING_BASE_C)
        parts = []
        state = np.random.get_state()
        np.random.seed(self.random_state)  # Prophet draws its interval from np.random
        try:
            with quiet_logging():
                for (meter,), part in frame.group_by("meter_id", maintain_order=True):
                    future = pd.DataFrame(_to_prophet(part, target=False))
                    model = self.models_[meter]
                    fc, _ = run_quietly(partial(model.predict, future))
                    parts.append(
                        part.with_columns(
                            pl.Series("volume_m3", fc["yhat"].to_numpy(dtype=np.float64)),
                            pl.Series(
                                "volume_m3_lo_80", fc["yhat_lower"].to_numpy(dtype=np.float64)
                            ),
                            pl.Series(
                                "volume_m3_hi_80", fc["yhat_upper"].to_numpy(dtype=np.float64)
                            ),
                        )
                    )
        finally:
            np.random.set_state(state)
        return pl.concat(parts).drop("heating_degrees")


def _to_prophet(part: pl.DataFrame, *, target: bool = True) -> dict[str, Any]:
    """Columns Prophet wants: naive ``ds`` (UTC dropped), ``y``, the regressors."""
    out: dict[str, Any] = {
        "ds": part.get_column("ts").dt.replace_time_zone(None).to_numpy(),
    }
    if target:
        out["y"] = part.get_column("volume_m3").to_numpy()
    for name in REGRESSORS:
        out[name] = part.get_column(name).to_numpy()
    return out
