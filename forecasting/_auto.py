"""Automatic model choice per metering point (or group) from a rolling-origin backtest,
with conformally re-calibrated 80 % intervals."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar, Final, Literal

import numpy as np
import polars as pl

from forecasting._backtest import BacktestResult, backtest, model_names
from forecasting._base import Forecaster, check_instant
from forecasting._metrics import naive_scale, score
from forecasting.errors import (
    InsufficientHistoryError,
    InvalidInputError,
    InvalidParameterError,
)

#: Metrics :class:`AutoForecaster` can select by (lower is better for all of them).
SELECT_BY: Final = ("mae", "rmse", "smape", "wape", "mase")
#: Fewest backtest steps a calibration factor is estimated from; with fewer, the
#: factor of the coarser level is used (meter → model → 1).
MIN_CALIBRATION_STEPS: Final = 30


class AutoForecaster(Forecaster):
    """Pick the best candidate per metering point (or group) by backtest, then forecast.

    ``fit`` runs :func:`forecasting.backtest` of the ``candidates`` on the history before
    the cutoff (rolling origins ``step`` steps apart, ``horizon`` steps each, the
    horizons conditioned on the observed temperature), ranks the candidates per meter
    (``per="meter"``) or per group (``per="group"``) by ``select_by``, refits each chosen
    model on the full history for its meters, and calibrates the intervals.  ``predict``
    dispatches every meter to its chosen model.

    Meters without a backtest score (too short a history for any window) take the
    overall best model of the leaderboard.  When the chosen model skips a meter at the
    refit, the meter falls to its next-ranked candidate; only when every candidate skips
    it is it reported in ``skipped_``.

    **Intervals.**  The chosen model's 80 % interval is widened or narrowed around its
    point forecast by a multiplicative factor ``f``: ``lo' = ŷ - f·(ŷ - lo)``,
    ``hi' = ŷ + f·(hi - ŷ)``.  ``f`` is the split-conformal quantile of the factors each
    backtest step needed to be covered (``(ŷ - y)/(ŷ - lo)`` below the forecast,
    ``(y - ŷ)/(hi - ŷ)`` above), at level ``ceil((n + 1)·0.8)/n``, so the re-scaled
    interval covers 80 % of the backtest steps.  It is fitted per chosen model on the
    meters that chose it (``calibrate="model"``) or per meter (``calibrate="meter"``,
    falling back to the model's factor with fewer than :data:`MIN_CALIBRATION_STEPS`
    scored steps); ``calibrate=None`` keeps the native intervals.

    Parameters
    ----------
    candidates
        Forecasters to choose from (unfitted; clones are fitted), all at ``freq``.
    horizon
        Steps per backtest window (e.g. 48 for day-ahead hourly).
    n_windows
        Number of backtest origins.
    step
        Steps between origins (default: ``horizon``).
    skip
        Leading steps of each window not scored (e.g. 24 to score hours 25–48).
    min_train
        Minimum steps of history before the first origin (default ``horizon``).
    select_by
        Metric to minimise: one of :data:`SELECT_BY`.
    per
        ``"meter"``: choose per metering point; ``"group"``: per group of ``groups``,
        scored by the group's mean MASE (or pooled metric).
    groups
        With ``per="group"``: a frame ``meter_id`` plus one group column (e.g.
        ``category``).  Meters not in it take the overall best model.
    calibrate
        ``"model"``, ``"meter"`` or ``None`` (see Intervals).
    freq
        ``"hour"`` or ``"day"``.

    Attributes
    ----------
    choice_ : dict of str to str
        Metering point → chosen candidate name (its ``alias``, ``#2`` … on repeats).
    leaderboard_ : polars.DataFrame
        The backtest leaderboard of the candidates.
    scores_ : polars.DataFrame
        Per candidate and meter backtest scores.
    calibration_ : polars.DataFrame
        ``model``, ``meter_id`` (null for a model-level factor), ``factor``, ``steps``,
        ``coverage_before`` and ``coverage_after`` on the backtest steps.
    models_ : dict of str to Forecaster
        The refitted chosen models by candidate name.
    backtest_ : BacktestResult
        The full backtest.

    Examples
    --------
    >>> auto = AutoForecaster(candidates=[HeatingDegreeRegression(), SeasonalNaive()],
    ...                       horizon=48, skip=24, step=24)  # doctest: +SKIP
    >>> auto.fit(consumption, temperature).predict(horizon_temperature)  # doctest: +SKIP
    """

    alias: ClassVar[str] = "auto"

    def __init__(
        self,
        *,
        candidates: Sequence[Forecaster],
        horizon: int,
        n_windows: int = 3,
        step: int | None = None,
        skip: int = 0,
        min_train: int | None = None,
        select_by: Literal["mae", "rmse", "smape", "wape", "mase"] = "mase",
        per: Literal["meter", "group"] = "meter",
        groups: pl.DataFrame | None = None,
        calibrate: Literal["model", "meter"] | None = "model",
        freq: Literal["hour", "day"] = "hour",
    ) -> None:
        self.candidates = candidates
        self.horizon = horizon
        self.n_windows = n_windows
        self.step = step
        self.skip = skip
        self.min_train = min_train
        self.select_by = select_by
        self.per = per
        self.groups = groups
        self.calibrate = calibrate
        self.freq = freq

    def __repr__(self) -> str:
        # The base __repr__ compares values with their defaults by ``!=``, which a polars
        # DataFrame (``groups``) answers element-wise; describe it by shape instead.
        params = self.get_params()
        parts = [f"candidates={list(self.candidates)!r}", f"horizon={self.horizon!r}"]
        defaults = {
            "n_windows": 3,
            "step": None,
            "skip": 0,
            "min_train": None,
            "select_by": "mase",
            "per": "meter",
            "calibrate": "model",
            "freq": "hour",
        }
        parts += [f"{k}={params[k]!r}" for k, d in defaults.items() if params[k] != d]
        if self.groups is not None:
            g = self.groups
            shape = f"<{g.height} x {g.columns}>" if isinstance(g, pl.DataFrame) else repr(g)
            parts.append(f"groups={shape}")
        return f"{type(self).__name__}({', '.join(parts)})"

    # --- parameters ---------------------------------------------------------------------
    def _validate_params(self) -> None:
        if not self.candidates or not all(isinstance(c, Forecaster) for c in self.candidates):
            raise InvalidParameterError(
                f"candidates: expected a non-empty sequence of Forecaster instances, got "
                f"{self.candidates!r}"
            )
        if any(isinstance(c, AutoForecaster) for c in self.candidates):
            raise InvalidParameterError("candidates: an AutoForecaster cannot be a candidate")
        if self.select_by not in SELECT_BY:
            raise InvalidParameterError(
                f"select_by: expected one of {SELECT_BY}, got {self.select_by!r}"
            )
        if self.per not in ("meter", "group"):
            raise InvalidParameterError(f"per: expected 'meter' or 'group', got {self.per!r}")
        if self.per == "group":
            g = self.groups
            if not isinstance(g, pl.DataFrame) or "meter_id" not in g.columns or g.width != 2:
                raise InvalidParameterError(
                    "groups: with per='group' expected a polars.DataFrame of meter_id and one "
                    f"group column (e.g. category), got {g!r}"
                )
            if g.get_column("meter_id").is_duplicated().any():
                raise InvalidParameterError("groups: expected one row per meter_id")
        if self.calibrate not in ("model", "meter", None):
            raise InvalidParameterError(
                f"calibrate: expected 'model', 'meter' or None, got {self.calibrate!r}"
            )
        if self.freq not in ("hour", "day"):
            raise InvalidParameterError(f"freq: expected 'hour' or 'day', got {self.freq!r}")
        for name in ("horizon", "n_windows"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise InvalidParameterError(f"{name}: expected an integer >= 1, got {v!r}")
        for name in ("step", "min_train"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                raise InvalidParameterError(f"{name}: expected None or an integer >= 1, got {v!r}")

    # --- fit ----------------------------------------------------------------------------
    def _fit(self, consumption: pl.DataFrame, temperature: pl.DataFrame) -> None:
        names = model_names(self.candidates)
        step = self.step if self.step is not None else self.horizon
        min_train = self.min_train if self.min_train is not None else self.horizon
        try:
            result = backtest(
                self.candidates,
                consumption,
                temperature,
                horizon=self.horizon,
                step=step,
                n_windows=self.n_windows,
                min_train=min_train,
                skip=self.skip,
                freq=self.freq,
            )
        except InvalidInputError as exc:
            need = min_train + self.horizon
            raise InsufficientHistoryError(
                f"AutoForecaster: expected at least min_train + horizon = {need} steps "
                f"({self.freq}) of history to backtest the candidates; {exc}"
            ) from exc
        board = result.leaderboard.filter(pl.col("n") > 0)
        if board.height == 0:
            why = "; ".join(
                f"{m}: {e}"
                for m, e in result.failures.select("model", "message").unique("model").iter_rows()
            )
            raise InsufficientHistoryError(
                f"AutoForecaster: no candidate produced a scored backtest forecast ({why}); "
                f"load more history or lower min_train/horizon"
            )
        self.backtest_ = result
        self.leaderboard_ = result.leaderboard
        self.scores_ = result.scores
        overall_rank = [m for m in board.get_column("model").to_list()]
        overall_rank += [n for n in names if n not in overall_rank]
        ranking = self._rank(result, consumption, overall_rank)

        # Refit: each meter on its best-ranked candidate; meters a model skips fall to
        # their next candidate.
        by_name = dict(zip(names, self.candidates, strict=True))
        pending = {m: list(r) for m, r in ranking.items()}
        self.choice_: dict[str, str] = {}
        self.models_: dict[str, Forecaster] = {}
        reasons: dict[str, list[str]] = {}
        while pending:
            wanted: dict[str, list[str]] = {}
            for meter, ranks in pending.items():
                wanted.setdefault(ranks[0], []).append(meter)
            pending_next: dict[str, list[str]] = {}
            for name, meters in sorted(wanted.items()):
                model = self._refit(by_name[name], name, meters, consumption, temperature)
                fitted = set(model.meters_) if model is not None else set()
                for meter in meters:
                    if meter in fitted:
                        self.choice_[meter] = name
                        continue
                    why = (
                        model.skipped_.get(meter, "not fitted")
                        if model is not None
                        else "no meter could be fitted"
                    )
                    reasons.setdefault(meter, []).append(f"{name}: {why}")
                    rest = pending[meter][1:]
                    if rest:
                        pending_next[meter] = rest
                    else:
                        self.skipped_[meter] = "every candidate skipped it — " + "; ".join(
                            reasons[meter]
                        )
            pending = pending_next
        if not self.choice_:
            raise InsufficientHistoryError(
                "AutoForecaster: no candidate could be fitted for any meter — "
                + "; ".join(f"{m}: {r}" for m, r in list(self.skipped_.items())[:5])
            )
        self.choice_ = dict(sorted(self.choice_.items()))
        self.meters_ = tuple(self.choice_)
        self.calibration_ = self._calibrate(result)

    def _rank(
        self, result: BacktestResult, consumption: pl.DataFrame, overall: list[str]
    ) -> dict[str, list[str]]:
        """Candidate names per meter, best first.

        Each unit (meter, or group of meters) compares the candidates on the steps that
        every candidate forecasting that unit forecast, so a model that failed a window
        or skipped a meter is not judged on an easier subset.  A group's score is its
        overall row (mean per-meter MASE for ``"mase"``, pooled errors otherwise).
        """
        metric = self.select_by
        meters = consumption.get_column("meter_id").unique().sort().to_list()
        if self.per == "group":
            assert self.groups is not None
            gcol = next(c for c in self.groups.columns if c != "meter_id")
            units = self.groups.select("meter_id", pl.col(gcol).cast(pl.String).alias("_u"))
        else:
            units = pl.DataFrame(
                {"meter_id": meters, "_u": meters}, schema={"meter_id": pl.String, "_u": pl.String}
            )
        preds = result.predictions.filter(pl.col("lead") > self.skip).join(
            units, on="meter_id", how="inner"
        )
        key = ["_u", "origin", "meter_id", "ts"]
        in_unit = preds.group_by("_u").agg(pl.col("model").n_unique().alias("_k"))
        common = (
            preds.group_by(key)
            .agg(pl.col("model").n_unique().alias("_c"))
            .join(in_unit, on="_u")
            .filter(pl.col("_c") == pl.col("_k"))
            .select(key)
        )
        hist = consumption.filter(pl.col("ts") < result.origins[0])
        unit_scores = score(
            preds.join(common, on=key, how="semi"),
            consumption,
            scale=naive_scale(hist, freq=self.freq),
            freq=self.freq,
            by=["_u", "model"],
        ).filter(pl.col("meter_id").is_null() & pl.col(metric).is_not_null())
        order = {name: k for k, name in enumerate(overall)}
        ranked = (
            unit_scores.with_columns(
                pl.col("model").replace_strict(order, return_dtype=pl.Int64).alias("_o")
            )
            .sort("_u", metric, "_o")
            .group_by("_u", maintain_order=True)
            .agg(pl.col("model"))
        )
        by_unit = {u: list(ms) for u, ms in ranked.iter_rows()}
        member = dict(units.iter_rows())
        out = {}
        for meter in meters:
            best = by_unit.get(member.get(meter, ""), [])
            out[meter] = best + [n for n in overall if n not in best]
        return out

    def _refit(
        self,
        template: Forecaster,
        name: str,
        meters: list[str],
        consumption: pl.DataFrame,
        temperature: pl.DataFrame,
    ) -> Forecaster | None:
        model = type(template)(**template.get_params())
        try:
            model.fit(
                consumption.filter(pl.col("meter_id").is_in(meters)),
                temperature.filter(pl.col("meter_id").is_in(meters)),
                cutoff=self.cutoff_,
            )
        except InsufficientHistoryError:
            return None
        self.models_[name] = model
        return model

    def _calibrate(self, result: BacktestResult) -> pl.DataFrame:
        rows: list[tuple[str, str | None, float, int, float, float]] = []
        preds = result.predictions.filter(
            (pl.col("lead") > self.skip) & pl.col("actual_m3").is_not_null()
        )
        choice = pl.DataFrame(
            {"meter_id": list(self.choice_), "_chosen": list(self.choice_.values())},
            schema={"meter_id": pl.String, "_chosen": pl.String},
        )
        for name in sorted(set(self.choice_.values())):
            own = preds.filter(pl.col("model") == name)
            mine = own.join(choice.filter(pl.col("_chosen") == name), on="meter_id", how="semi")
            base = mine if mine.height >= MIN_CALIBRATION_STEPS else own
            factor = _conformal_factor(base) if self.calibrate is not None else 1.0
            rows.append((name, None, factor, base.height, *_coverages(base, factor)))
            if self.calibrate == "meter":
                for (meter,), part in mine.group_by(["meter_id"], maintain_order=True):
                    assert isinstance(meter, str)
                    f = _conformal_factor(part) if part.height >= MIN_CALIBRATION_STEPS else factor
                    rows.append((name, meter, f, part.height, *_coverages(part, f)))
        return pl.DataFrame(
            rows,
            schema={
                "model": pl.String,
                "meter_id": pl.String,
                "factor": pl.Float64,
                "steps": pl.Int64,
                "coverage_before": pl.Float64,
                "coverage_after": pl.Float64,
            },
            orient="row",
        ).sort("model", "meter_id", nulls_last=False)

    # --- predict ------------------------------------------------------------------------
    def _predict(self, temperature: pl.DataFrame) -> pl.DataFrame:
        choice = pl.DataFrame(
            {"meter_id": list(self.choice_), "_chosen": list(self.choice_.values())},
            schema={"meter_id": pl.String, "_chosen": pl.String},
        )
        rows = temperature.join(choice, on="meter_id", how="left")
        cal = self.calibration_
        model_factor = cal.filter(pl.col("meter_id").is_null()).select(
            pl.col("model").alias("_chosen"), pl.col("factor").alias("_fm")
        )
        meter_factor = cal.filter(pl.col("meter_id").is_not_null()).select(
            "meter_id", pl.col("factor").alias("_fmeter")
        )
        parts = []
        for (name,), part in rows.group_by(["_chosen"], maintain_order=True):
            assert isinstance(name, str)
            pred = self.models_[name].predict(part.drop("_chosen"))
            parts.append(pred.with_columns(pl.lit(name).alias("_chosen")))
        out = (
            pl.concat(parts, how="vertical_relaxed")
            .join(model_factor, on="_chosen", how="left")
            .join(meter_factor, on="meter_id", how="left")
            .with_columns(pl.coalesce("_fmeter", "_fm", pl.lit(1.0)).alias("_f"))
        )
        y = pl.col("volume_m3")
        result: pl.DataFrame = out.with_columns(
            (y - pl.col("_f") * (y - pl.col("volume_m3_lo_80"))).alias("volume_m3_lo_80"),
            (y + pl.col("_f") * (pl.col("volume_m3_hi_80") - y)).alias("volume_m3_hi_80"),
        )
        return result


#: Short alias of :class:`AutoForecaster` (its ``alias`` in the forecasts table is "auto").
auto = AutoForecaster


def _needed_factor(frame: pl.DataFrame) -> np.ndarray:
    """Per step: the smallest width factor whose re-scaled interval covers the actual."""
    y = frame.get_column("actual_m3").to_numpy()
    f = frame.get_column("volume_m3").to_numpy()
    lo = f - frame.get_column("volume_m3_lo_80").to_numpy()
    hi = frame.get_column("volume_m3_hi_80").to_numpy() - f
    below = y < f
    gap = np.where(below, f - y, y - f)
    half = np.where(below, lo, hi)
    with np.errstate(divide="ignore", invalid="ignore"):
        need = np.where(gap <= 0, 0.0, np.where(half > 0, gap / half, np.inf))
    return np.asarray(need, dtype=np.float64)


def _conformal_factor(frame: pl.DataFrame, level: float = 0.8) -> float:
    need = _needed_factor(frame)
    n = need.size
    if n == 0:
        return 1.0
    k = min(math.ceil((n + 1) * level), n)
    factor = float(np.sort(need)[k - 1])
    # An interval of zero width cannot be scaled into covering anything: keep it.
    return factor if math.isfinite(factor) else 1.0


def _coverages(frame: pl.DataFrame, factor: float) -> tuple[float, float]:
    need = _needed_factor(frame)
    if need.size == 0:
        return float("nan"), float("nan")
    return float(np.mean(need <= 1.0)), float(np.mean(need <= factor))


# --- choosing by the track record of stored forecasts ------------------------------------------


@dataclass(frozen=True)
class TrackRecordChoice:
    """Per metering point, the model whose past forecasts were best, with a width factor.

    Made by :func:`choose_by_track_record`; :meth:`apply` turns the candidates' new
    forecasts into one forecast per meter.

    Attributes
    ----------
    choice : dict of str to str
        Metering point → chosen model name.
    scores : polars.DataFrame
        ``meter_id``, ``model``, ``mae``, ``mase`` (null without a seasonal-naive
        scale), on the steps every model of that meter forecast, and ``steps``.
    calibration : polars.DataFrame
        ``model``, ``factor``, ``steps``, ``coverage_before``, ``coverage_after``: the
        split-conformal width factor of each chosen model (as in
        :class:`AutoForecaster`), fitted on the meters that chose it.
    """

    choice: dict[str, str]
    scores: pl.DataFrame
    calibration: pl.DataFrame

    def apply(self, forecasts: pl.DataFrame) -> pl.DataFrame:
        """The chosen model's rows per meter, intervals re-scaled by its factor.

        ``forecasts``: the candidates' new forecasts — ``model``, ``meter_id``, ``ts``,
        ``volume_m3``, ``volume_m3_lo_80``, ``volume_m3_hi_80`` (other columns are kept).
        Meters without a choice are dropped; the ``model`` column becomes ``"auto"`` and
        the chosen model is kept in ``chosen_model``.
        """
        _require(forecasts, ("model", "meter_id", "ts", *_BAND), "forecasts")
        choice = pl.DataFrame(
            {"meter_id": list(self.choice), "chosen_model": list(self.choice.values())},
            schema={"meter_id": pl.String, "chosen_model": pl.String},
        )
        factors = self.calibration.select(
            pl.col("model").alias("chosen_model"), pl.col("factor").alias("_f")
        )
        y = pl.col("volume_m3")
        return (
            forecasts.join(choice, on="meter_id", how="inner")
            .filter(pl.col("model") == pl.col("chosen_model"))
            .join(factors, on="chosen_model", how="left")
            .with_columns(
                pl.lit(AutoForecaster.alias).alias("model"),
                (y - pl.col("_f").fill_null(1.0) * (y - pl.col("volume_m3_lo_80"))).alias(
                    "volume_m3_lo_80"
                ),
                (y + pl.col("_f").fill_null(1.0) * (pl.col("volume_m3_hi_80") - y)).alias(
                    "volume_m3_hi_80"
                ),
            )
            .drop("_f")
        )


_BAND: Final = ("volume_m3", "volume_m3_lo_80", "volume_m3_hi_80")


def _require(frame: pl.DataFrame, columns: Sequence[str], name: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise InvalidInputError(
            f"{name}: missing column(s) {missing}; expected {list(columns)} "
            f"(the forecasts table's columns, with the candidate's name in 'model')"
        )


def choose_by_track_record(
    track: pl.DataFrame,
    consumption: pl.DataFrame,
    *,
    as_of: dt.datetime,
    freq: Literal["hour", "day"] = "hour",
    level: float = 0.8,
    calibrate: bool = True,
) -> TrackRecordChoice:
    """Choose a model per metering point from the candidates' past forecasts.

    Where :class:`AutoForecaster` refits every candidate on rolling windows to see how
    each would have done, a system that forecasts every day already has that record:
    the forecasts it stored (the warehouse's ``forecasts`` table keeps each model's
    rows with their cutoff).  This function scores them against what was then metered
    and picks, per meter, the candidate with the lowest MASE on the steps every
    candidate forecast for that meter; each chosen model's 80 % interval gets the
    split-conformal width factor of :class:`AutoForecaster` (pooled over the meters
    that chose it, or over all its meters when those have fewer than
    :data:`MIN_CALIBRATION_STEPS` scored steps).

    Parameters
    ----------
    track
        Past forecasts: ``model``, ``cutoff`` (or ``origin``), ``meter_id``, ``ts``,
        ``volume_m3``, ``volume_m3_lo_80``, ``volume_m3_hi_80``.  Only true forecasts
        (``ts >= cutoff``, not backcasts) whose whole horizon lies before ``as_of`` are
        scored, so every lead weighs as it will in the next forecast.
    consumption
        Metered consumption (``meter_id``, ``ts``, ``volume_m3``, ``quality``); only
        ``valid`` rows count.  The MASE scale is the seasonal-naive MAE of the history
        before the track record's first cutoff.
    as_of
        The instant of the choice (UTC): nothing at or after it is looked at.
    freq
        ``"hour"`` or ``"day"``.
    level
        Interval coverage the width factor aims at.
    calibrate
        ``False`` keeps the models' own intervals (factor 1).
    """
    origin_col = "cutoff" if "cutoff" in track.columns else "origin"
    _require(track, ("model", origin_col, "meter_id", "ts", *_BAND), "track")
    as_of = check_instant(as_of, "as_of", freq)
    actual = consumption.filter(
        (pl.col("quality") == "valid") & pl.col("volume_m3").is_not_null() & (pl.col("ts") < as_of)
    ).select("meter_id", "ts", pl.col("volume_m3").alias("actual_m3"))
    forecasts = track.rename({origin_col: "origin"}).filter(pl.col("ts") >= pl.col("origin"))
    # Only forecasts whose whole horizon is metered by now: a forecast still running has
    # only its short leads scored, and short leads err less, so they would narrow the
    # intervals of the next (full-horizon) forecast.
    finished = (
        forecasts.group_by("model", "origin", "meter_id")
        .agg(pl.col("ts").max().alias("_end"))
        .filter(pl.col("_end") < as_of)
        .drop("_end")
    )
    scored = forecasts.join(finished, on=["model", "origin", "meter_id"], how="semi").join(
        actual, on=["meter_id", "ts"], how="inner"
    )
    if scored.height == 0:
        raise InsufficientHistoryError(
            f"choose_by_track_record: no past forecast whose horizon ended before "
            f"{as_of.isoformat()} has metered values to be scored against; store a few "
            f"horizons of each candidate's forecasts first (or use AutoForecaster, which "
            f"backtests)"
        )
    first = scored.get_column("origin").min()
    assert isinstance(first, dt.datetime)
    scale = naive_scale(consumption.filter(pl.col("ts") < first), freq=freq)
    key = ["meter_id", "origin", "ts"]
    per_meter = scored.group_by("meter_id").agg(pl.col("model").n_unique().alias("_k"))
    common = (
        scored.group_by(key)
        .agg(pl.col("model").n_unique().alias("_c"))
        .join(per_meter, on="meter_id")
        .filter(pl.col("_c") == pl.col("_k"))
        .select(key)
    )
    scores = (
        scored.join(common, on=key, how="semi")
        .join(scale.select("meter_id", "scale_m3"), on="meter_id", how="left")
        .group_by("meter_id", "model")
        .agg(
            (pl.col("volume_m3") - pl.col("actual_m3")).abs().mean().alias("mae"),
            pl.col("scale_m3").first().alias("_scale"),
            pl.len().alias("steps"),
        )
        # Within one meter MASE ranks as MAE does (one scale): rank by MAE, so a meter
        # with too short a history for the seasonal-naive scale is still ranked.
        .with_columns((pl.col("mae") / pl.col("_scale")).alias("mase"))
        .drop("_scale")
        .sort("meter_id", "mae", "model", nulls_last=True)
    )
    best = scores.group_by("meter_id", maintain_order=True).first()
    choice = dict(zip(best.get_column("meter_id"), best.get_column("model"), strict=True))
    rows: list[tuple[str, float, int, float, float]] = []
    chosen = best.select("meter_id", pl.col("model").alias("_chosen"))
    for name in sorted(set(choice.values())):
        own = scored.filter(pl.col("model") == name)
        mine = own.join(chosen.filter(pl.col("_chosen") == name), on="meter_id", how="semi")
        base = mine if mine.height >= MIN_CALIBRATION_STEPS else own
        factor = _conformal_factor(base, level) if calibrate else 1.0
        rows.append((name, factor, base.height, *_coverages(base, factor)))
    calibration = pl.DataFrame(
        rows,
        schema={
            "model": pl.String,
            "factor": pl.Float64,
            "steps": pl.Int64,
            "coverage_before": pl.Float64,
            "coverage_after": pl.Float64,
        },
        orient="row",
    )
    return TrackRecordChoice(dict(sorted(choice.items())), scores, calibration)
