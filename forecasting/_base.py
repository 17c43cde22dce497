"""The estimator base class every forecaster follows (STYLE §2).

``__init__`` stores keyword-only hyper-parameters unchanged; the public :meth:`fit`
and :meth:`predict` check the frame contracts and then call the private hooks
``_fit`` / ``_predict``, so a new model writes only the hooks.
"""

from __future__ import annotations

import abc
import datetime as dt
import inspect
import weakref
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, ClassVar, Final, Literal, Self, get_args

import numpy as np
import polars as pl

from forecasting.errors import (
    InvalidInputError,
    InvalidParameterError,
    MissingTemperatureError,
    NotFittedError,
    UnknownMeterError,
)
from warehouse import CONSUMPTION, ContractError, TableSpec, validate_frame
from warehouse._schemas import FORECASTS, UTC_TS

HOUR = dt.timedelta(hours=1)
DAY = dt.timedelta(days=1)

#: Sampling frequency of the frames an estimator learns from and predicts: ``"hour"``
#: (``ts`` = UTC hour start, ``volume_m3`` = m³ in the hour) or ``"day"`` (``ts`` = UTC
#: midnight, ``volume_m3`` = m³ in the UTC day, ``temperature_c`` = daily mean °C).
Freq = Literal["hour", "day"]
FREQS: tuple[str, ...] = get_args(Freq)
#: Length of one step of each frequency.
STEP: dict[str, dt.timedelta] = {"hour": HOUR, "day": DAY}
#: Polars duration string of one step (``dt.truncate`` / ``datetime_range``).
_EVERY: dict[str, str] = {"hour": "1h", "day": "1d"}
#: Seconds per step (for integer step indices since the Unix epoch).
STEP_SECONDS: dict[str, int] = {"hour": 3600, "day": 86400}

#: The per-meter temperature frame :func:`warehouse.load_meter_temperature` returns:
#: outdoor air temperature in °C at each metering point, one row per UTC hour start.
METER_TEMPERATURE = TableSpec(
    "meter_temperature",
    pl.Schema([("meter_id", pl.String), ("ts", UTC_TS), ("temperature_c", pl.Float64)]),
    ("meter_id", "ts"),
    doc="Hourly outdoor temperature at a metering point (°C, UTC hour start).",
)

#: Columns ``_predict`` returns; the base class adds ``model`` and ``cutoff``.
_PREDICTION_COLUMNS = (
    "meter_id",
    "ts",
    "volume_m3",
    "volume_m3_lo_80",
    "volume_m3_hi_80",
    "temperature_c",
)


class Forecaster(abc.ABC):
    """Base class of the consumption forecasters (hourly or daily).

    Subclasses set :attr:`alias` (the ``model`` value in the ``forecasts`` table),
    take keyword-only hyper-parameters in ``__init__`` and store them unchanged, and
    implement ``_fit`` and ``_predict``.  Learned state lives in attributes ending in
    ``_``; :attr:`cutoff_` and :attr:`skipped_` are set by every forecaster.

    Every subclass takes the keyword-only hyper-parameter ``freq: Freq = "hour"`` and
    stores it as ``self.freq``: ``"hour"`` learns and predicts hourly rows (``ts`` on
    the UTC hour, m³ per hour), ``"day"`` daily rows (``ts`` at UTC midnight, m³ per
    UTC day, ``temperature_c`` the daily mean in °C).  The base class checks that the
    frames are on that grid, one step apart, and hands the hooks validated frames at
    that frequency.

    Attributes
    ----------
    cutoff_ : datetime.datetime
        End of the history seen by :meth:`fit` (UTC): the last step (hour or day) it
        could use plus one step.  Rows at or after the cutoff are forecasts, before it
        backcasts.
    meters_ : tuple of str
        Metering points the model was fitted for, sorted.
    skipped_ : dict of str to str
        Metering points present in the input that could not be fitted, with the reason.
    """

    alias: ClassVar[str]
    #: Sampling frequency; subclasses take it as a keyword-only ``__init__`` argument.
    freq: Freq = "hour"

    # Learned state, set by fit (declared for type checkers; absent before fit).
    cutoff_: dt.datetime
    meters_: tuple[str, ...]
    skipped_: dict[str, str]

    # --- scikit-learn-style parameter protocol ---------------------------------------
    @classmethod
    def _param_names(cls) -> list[str]:
        sig = inspect.signature(cls.__init__)
        return [p.name for p in sig.parameters.values() if p.kind is p.KEYWORD_ONLY]

    def get_params(self) -> dict[str, Any]:
        """The hyper-parameters as given to ``__init__`` (``clone = type(m)(**m.get_params())``)."""
        return {name: getattr(self, name) for name in self._param_names()}

    def __repr__(self) -> str:
        sig = inspect.signature(type(self).__init__)
        changed = [
            f"{k}={v!r}"
            for k, v in self.get_params().items()
            if sig.parameters[k].default is inspect.Parameter.empty
            or sig.parameters[k].default != v
        ]
        return f"{type(self).__name__}({', '.join(changed)})"

    # --- public API -------------------------------------------------------------------
    def fit(
        self,
        consumption: pl.DataFrame,
        temperature: pl.DataFrame,
        *,
        cutoff: dt.datetime | None = None,
    ) -> Self:
        """Learn one model per metering point from hourly (or daily) history.

        Parameters
        ----------
        consumption
            The :data:`warehouse.CONSUMPTION` frame at the estimator's :attr:`freq`:
            ``meter_id``, ``ts`` (UTC hour start, or UTC midnight for ``freq="day"``),
            ``volume_m3`` (m³ at standard conditions in the hour or day; null =
            missing) and ``quality``.  Only ``valid`` rows with a value are learned from.
        temperature
            Outdoor temperature per metering point at the same frequency: ``meter_id``,
            ``ts``, ``temperature_c`` (°C; the daily mean for ``freq="day"``), as
            :func:`warehouse.load_meter_temperature` returns it.  Rows at or after the
            cutoff are ignored here (pass them to :meth:`predict`).
        cutoff
            End of the history (UTC, on the hour; at midnight for ``freq="day"``).
            Consumption at or after it is ignored.  Default: the last ``ts`` in
            ``consumption`` plus one step (hour or day).

        Returns
        -------
        Self
            The fitted estimator.

        Raises
        ------
        InvalidInputError
            A frame breaks its contract (missing or mistyped columns, naive datetimes,
            timestamps not on the hour / not at UTC midnight, rows of a meter closer or
            never closer than one step, repeated ``(meter_id, ts)``).
        InvalidParameterError
            A hyper-parameter is out of range.
        InsufficientHistoryError
            No metering point has enough usable history.
        """
        # A failed refit must not leave the previous fit's state behind.
        for name in [k for k in vars(self) if k.endswith("_") and not k.startswith("_")]:
            delattr(self, name)
        freq = _check_freq(getattr(self, "freq", "hour"))
        self._validate_params()
        consumption = _check_frame(
            consumption, CONSUMPTION, "consumption", freq=freq, check_step=True
        )
        temperature = _check_frame(
            temperature, METER_TEMPERATURE, "temperature", freq=freq, check_step=True
        )
        if consumption.height == 0:
            raise InvalidInputError(
                f"consumption: expected {_ADJ[freq]} history for at least one meter, got an "
                f"empty frame; load it with warehouse.load_consumption(store, freq='{freq}')"
            )
        if cutoff is None:
            last = consumption.get_column("ts").max()
            assert isinstance(last, dt.datetime)
            cutoff = last + STEP[freq]
        cutoff = check_instant(cutoff, "cutoff", freq)
        self.cutoff_ = cutoff
        self.skipped_ = {}
        self._fit(_before(consumption, cutoff), _before(temperature, cutoff))
        return self

    def predict(
        self,
        temperature: pl.DataFrame,
        *,
        start: dt.datetime | None = None,
        end: dt.datetime | None = None,
    ) -> pl.DataFrame:
        """Expected consumption with a prediction interval, given temperature.

        Parameters
        ----------
        temperature
            Outdoor temperature per metering point at the estimator's :attr:`freq`
            (``meter_id``, ``ts`` UTC hour start or UTC midnight, ``temperature_c`` in
            °C, the daily mean for ``freq="day"``).  One prediction is made per row.
            Rows before :attr:`cutoff_` give the backcast (the expected value of a past
            hour or day), rows from the cutoff on give the forecast.
        start, end
            Optional horizon ``start <= ts < end`` (UTC, on the hour; at midnight for
            ``freq="day"``).  When given, every meter in ``temperature`` must have a
            temperature for every step of it (else :class:`MissingTemperatureError`),
            and only those steps are predicted.

        Returns
        -------
        polars.DataFrame
            A frame valid against the ``forecasts`` contract: ``meter_id``, ``ts`` (UTC),
            ``model`` (:attr:`alias`), ``cutoff`` (:attr:`cutoff_`), ``volume_m3`` and the
            interval bounds ``volume_m3_lo_80`` / ``volume_m3_hi_80`` (m³ in the hour or
            day, never negative) and ``temperature_c``; sorted by meter and time.

        Raises
        ------
        NotFittedError
            Called before :meth:`fit`.
        UnknownMeterError
            ``temperature`` names meters the model was not fitted for (see
            :attr:`skipped_`).
        MissingTemperatureError
            A temperature is null, or absent for a step of ``[start, end)``.
        """
        self._check_fitted()
        freq = _check_freq(getattr(self, "freq", "hour"))
        temperature = _check_frame(temperature, METER_TEMPERATURE, "temperature", freq=freq)
        if start is not None or end is not None:
            if start is None or end is None:
                raise InvalidInputError(
                    "predict: got only one of start/end; pass both to predict a horizon, or "
                    "neither to predict every row of `temperature`"
                )
            start = check_instant(start, "start", freq)
            end = check_instant(end, "end", freq)
            temperature = _complete_horizon(temperature, start, end, freq)
        _check_no_null_temperature(temperature, freq)
        self._check_known_meters(temperature.get_column("meter_id").unique())
        if temperature.height == 0:
            return pl.DataFrame(schema=FORECASTS.schema)
        out = self._predict(temperature).select(_PREDICTION_COLUMNS)
        clip = pl.col("volume_m3").clip(lower_bound=0.0)
        out = out.with_columns(
            clip.alias("volume_m3"),
            pl.min_horizontal(pl.col("volume_m3_lo_80").clip(lower_bound=0.0), clip).alias(
                "volume_m3_lo_80"
            ),
            pl.max_horizontal(pl.col("volume_m3_hi_80").clip(lower_bound=0.0), clip).alias(
                "volume_m3_hi_80"
            ),
            pl.lit(self.alias).alias("model"),
            pl.lit(self.cutoff_, dtype=UTC_TS).alias("cutoff"),
        )
        return validate_frame(out, FORECASTS).sort("meter_id", "ts")

    # --- hooks ----------------------------------------------------------------------------
    def _validate_params(self) -> None:
        """Raise :class:`InvalidParameterError` for impossible hyper-parameters."""

    @abc.abstractmethod
    def _fit(self, consumption: pl.DataFrame, temperature: pl.DataFrame) -> None:
        """Learn from validated history before :attr:`cutoff_`; set ``meters_`` and ``skipped_``."""

    @abc.abstractmethod
    def _predict(self, temperature: pl.DataFrame) -> pl.DataFrame:
        """Return the prediction columns for each validated temperature row of a fitted meter."""

    # --- helpers ---------------------------------------------------------------------------
    def _check_fitted(self) -> None:
        if not hasattr(self, "meters_"):
            raise NotFittedError(
                f"this {type(self).__name__} is not fitted yet; call "
                f".fit(consumption, temperature) before .predict(temperature)"
            )

    def _check_known_meters(self, meter_ids: pl.Series) -> None:
        unknown = meter_ids.filter(~meter_ids.is_in(list(self.meters_))).sort().to_list()
        if not unknown:
            return
        skipped = [m for m in unknown if m in self.skipped_]
        never = [m for m in unknown if m not in self.skipped_]
        parts = []
        if skipped:
            reasons = "; ".join(f"{m}: {self.skipped_[m]}" for m in skipped[:5])
            more = f" (and {len(skipped) - 5} more)" if len(skipped) > 5 else ""
            parts.append(f"{len(skipped)} meter(s) were skipped in fit — {reasons}{more}")
        if never:
            parts.append(f"{len(never)} meter(s) were not in the fitted history: {_head(never)}")
        raise UnknownMeterError(
            f"{type(self).__name__} can predict only the {len(self.meters_)} meter(s) it was "
            f"fitted for, but `temperature` names others: {'; '.join(parts)}. Filter them out, "
            f"e.g. temperature.filter(pl.col('meter_id').is_in(model.meters_))"
        )


# --- input checks (shared by every forecaster) -----------------------------------------------


_ADJ: dict[str, str] = {"hour": "hourly", "day": "daily"}
_GRID: dict[str, str] = {"hour": "at the start of a UTC hour", "day": "at UTC midnight"}
_OFF: dict[str, str] = {"hour": "not on the hour", "day": "not at UTC midnight"}


def _check_freq(freq: object) -> Freq:
    if freq not in FREQS:
        raise InvalidParameterError(
            f"freq: expected one of {list(FREQS)} (hourly or daily rows), got {freq!r}"
        )
    return freq  # type: ignore[return-value]


def _check_frame(
    frame: pl.DataFrame,
    contract: TableSpec,
    what: str,
    *,
    freq: Freq = "hour",
    check_step: bool = False,
) -> pl.DataFrame:
    """Validate ``frame`` against ``contract`` and return it sorted by ``(meter_id, ts)``.

    Checks the columns and dtypes, that every ``ts`` is on the grid of ``freq``, and
    that ``(meter_id, ts)`` is unique; with ``check_step`` also :func:`_check_step`
    (done here from the same pass over the rows, which :meth:`Forecaster.fit` uses).
    Sorted input (the usual case) is returned as it is, without a sort.
    """
    if not isinstance(frame, pl.DataFrame):
        raise InvalidInputError(
            f"{what}: expected a polars.DataFrame with columns {list(contract.schema)}, "
            f"got {type(frame).__name__}; convert it with polars.from_pandas(...) or pl.DataFrame(...)"
        )
    absent = [c for c in contract.schema if c not in frame.columns]
    if absent:
        raise InvalidInputError(
            f"{what}: expected columns {list(contract.schema)}, but {absent} are missing "
            f"(got {frame.columns}); rename or add them"
        )
    try:
        out = validate_frame(frame, contract)
    except ContractError as exc:
        raise InvalidInputError(f"{what}: expected columns {dict(contract.schema)}; {exc}") from exc
    step_us = STEP_SECONDS[freq] * 1_000_000
    micros = _micros(out.get_column("ts"))
    values, starts = _meter_runs(out)
    scan = _scan_sorted(values, starts, micros, step_us)
    # On the grid of freq: UTC hours / UTC midnights are multiples of the step since
    # the epoch (an integer test on the physical values instead of dt.truncate).
    on_grid = scan[0] if scan is not None else not bool((micros % step_us != 0).any())
    if not on_grid:
        off_grid = out.filter(pl.col("ts") != pl.col("ts").dt.truncate(_EVERY[freq]))
        sample = off_grid.get_column("ts").head(3).to_list()
        hint = "; is it hourly data? then use freq='hour'" if freq == "day" else ""
        raise InvalidInputError(
            f"{what}: expected {_ADJ[freq]} rows with ts {_GRID[freq]} (freq={freq!r}), but "
            f"{off_grid.height} row(s) are {_OFF[freq]}, e.g. {sample}{hint}; aggregate first "
            f"(warehouse.load_consumption(store, freq='{freq}') returns {_ADJ[freq]} rows)"
        )
    # Sorted by (meter_id, ts) is what the rest of the code wants anyway; checking that
    # the order is strict is far cheaper than hashing (meter_id, ts) pairs.
    if scan is None:
        out = out.sort("meter_id", "ts")
        micros = _micros(out.get_column("ts"))
        values, starts = _meter_runs(out)
        scan = _scan_sorted(values, starts, micros, step_us)
        if scan is None:
            m, t = pl.col("meter_id"), pl.col("ts")
            dup = out.filter((m == m.shift(1)) & (t == t.shift(1))).select("meter_id", "ts")
            raise InvalidInputError(
                f"{what}: expected one row per (meter_id, ts), got {dup.height} repeated row(s), "
                f"e.g. {dup.head(3).rows()}; de-duplicate with .unique(subset=['meter_id', 'ts'])"
            )
    if check_step:
        _raise_for_step(scan[1], what, freq)
    _remember(out, _Facts(out.height, values, starts, micros))
    return out


def _check_step(frame: pl.DataFrame, what: str, freq: Freq) -> None:
    """Rows of a meter must be one step apart where they are adjacent.

    Gaps (absent rows) are allowed, so the check is on the *smallest* step between
    consecutive rows of the same meter over the whole frame: a frame whose closest
    rows are 1 day apart given to an hourly model is daily data in the wrong place.
    Expects a frame sorted by ``(meter_id, ts)`` (as :func:`_check_frame` returns).
    """
    if frame.height < 2:
        return
    gaps = _diffs_within_meters(frame, _micros(frame.get_column("ts")))
    _raise_for_step(int(gaps.min()) // 1_000_000 if gaps.size else None, what, freq)


def _raise_for_step(smallest: int | None, what: str, freq: Freq) -> None:
    """The error of :func:`_check_step` for the smallest step (seconds) of any meter."""
    if smallest is None or smallest == STEP_SECONDS[freq]:
        return
    got = _fmt_step(int(smallest))
    other = [f for f in FREQS if STEP_SECONDS[f] == smallest]
    hint = (
        f"; it looks like {_ADJ[other[0]]} data: pass freq={other[0]!r}"
        if other
        else f"; resample to {_ADJ[freq]} rows first"
    )
    raise InvalidInputError(
        f"{what}: expected {_ADJ[freq]} rows one step "
        f"({_fmt_step(STEP_SECONDS[freq])}) apart (freq={freq!r}), "
        f"but the closest rows of any meter are {got} apart{hint}"
    )


def _fmt_step(seconds: int) -> str:
    for unit, size in (("day", 86400), ("h", 3600), ("min", 60)):
        if seconds % size == 0:
            n = seconds // size
            return f"{n} {unit}{'s' if unit == 'day' and n != 1 else ''}"
    return f"{seconds} s"


def _micros(ts: pl.Series) -> np.ndarray:
    """Microseconds since the epoch of a (non-null) datetime column, as int64 numpy."""
    if isinstance(ts.dtype, pl.Datetime) and ts.dtype.time_unit != "us":
        ts = ts.dt.cast_time_unit("us")
    return np.asarray(ts.to_physical().to_numpy(), dtype=np.int64)


def _frame_micros(frame: pl.DataFrame) -> np.ndarray:
    """:func:`_micros` of ``frame``'s ``ts`` (remembered from the checks if they saw it)."""
    facts = _recall(frame)
    return facts.micros if facts is not None else _micros(frame.get_column("ts"))


def _meter_runs(frame: pl.DataFrame) -> tuple[pl.Series, np.ndarray]:
    """Runs of equal consecutive ``meter_id``: their values and start rows (one pass,
    no hashing; a frame sorted by meter has one run per meter)."""
    facts = _recall(frame)
    if facts is not None:
        return facts.values, facts.starts
    runs = frame.get_column("meter_id").rle()
    lengths = runs.struct.field("len").to_numpy()
    starts = np.zeros(lengths.size, dtype=np.int64)
    np.cumsum(lengths[:-1], out=starts[1:])
    return runs.struct.field("value"), starts


@dataclass(frozen=True)
class _Facts:
    """What :func:`_check_frame` learnt about a frame it returned: its height, the runs
    of ``meter_id`` (values, start rows) and ``ts`` in µs since the epoch."""

    height: int
    values: pl.Series
    starts: np.ndarray
    micros: np.ndarray


#: Facts of the last few frames :func:`_check_frame` returned, so the hooks' helpers
#: (:func:`encode`, :func:`meters_in`, :func:`same_rows`) skip a second pass over the
#: same rows: ``id(frame) -> (weak reference to it, facts)``.  An entry lives while its
#: frame does and only the newest :data:`_FACTS_KEPT` are kept.  The checked frames
#: are new objects that only the forecasters see (never the caller's frame).
_FACTS: dict[int, tuple[weakref.ref[pl.DataFrame], _Facts]] = {}
_FACTS_KEPT: Final = 4


def _remember(frame: pl.DataFrame, facts: _Facts) -> None:
    key = id(frame)

    def forget(ref: weakref.ref[pl.DataFrame]) -> None:
        entry = _FACTS.get(key)
        if entry is not None and entry[0] is ref:
            del _FACTS[key]

    _FACTS.pop(key, None)
    _FACTS[key] = (weakref.ref(frame, forget), facts)
    while len(_FACTS) > _FACTS_KEPT:
        del _FACTS[next(iter(_FACTS))]


def _recall(frame: pl.DataFrame) -> _Facts | None:
    entry = _FACTS.get(id(frame))
    if entry is None or entry[0]() is not frame or entry[1].height != frame.height:
        return None
    return entry[1]


def _diffs_within_meters(frame: pl.DataFrame, micros: np.ndarray) -> np.ndarray:
    """``ts`` differences (µs) between consecutive rows of the same meter."""
    _, starts = _meter_runs(frame)
    # The step into the next meter's first row does not count.
    return np.delete(np.diff(micros), starts[1:] - 1)


def _scan_sorted(
    values: pl.Series, starts: np.ndarray, micros: np.ndarray, step_us: int
) -> tuple[bool, int | None] | None:
    """One pass over a frame's meter runs (:func:`_meter_runs`) and ``ts`` (µs):
    ``None`` unless it is strictly sorted by ``(meter_id, ts)``,
    else ``(every ts is a multiple of step_us, the smallest step in seconds between
    consecutive rows of a meter or None)``.

    Within a meter ``ts`` is on the grid when the meter's first ``ts`` is and every step
    is a multiple of ``step_us``; in complete series every step *is* ``step_us``, so the
    division runs only over the first rows and the other steps.
    """
    if micros.size < 2:
        return not bool((micros % step_us != 0).any()), None
    n = values.len()
    if n > 1 and not bool((values.slice(1) > values.slice(0, n - 1)).all()):
        return None
    diff = np.diff(micros)
    boundary = starts[1:] - 1
    diff[boundary] = step_us  # into the next meter's first row: neutral for every test
    if not bool((diff > 0).all()):
        return None
    exact = diff == step_us
    n_exact = int(np.count_nonzero(exact))
    on_grid = not bool((micros[starts] % step_us != 0).any())
    if on_grid and n_exact < diff.size:
        on_grid = not bool((diff[~exact] % step_us != 0).any())
    lowest = int(diff.min())
    if lowest < step_us or n_exact > boundary.size:  # a real step of a meter is the least
        smallest: int | None = min(lowest, step_us)
    else:  # every real step exceeds step_us (or there is none)
        within = np.delete(diff, boundary)
        smallest = int(within.min()) if within.size else None
    return on_grid, None if smallest is None else smallest // 1_000_000


def _strictly_sorted(frame: pl.DataFrame) -> bool:
    values, starts = _meter_runs(frame)
    return _scan_sorted(values, starts, _micros(frame.get_column("ts")), 1) is not None


def _before(frame: pl.DataFrame, cutoff: dt.datetime) -> pl.DataFrame:
    """Rows with ``ts < cutoff`` (the frame itself when they all are)."""
    last = frame.get_column("ts").max()
    if isinstance(last, dt.datetime) and last < cutoff:
        return frame
    return frame.filter(pl.col("ts") < cutoff)


def encode(
    frame: pl.DataFrame, meters: list[str], *, freq: Freq = "hour"
) -> tuple[np.ndarray, np.ndarray]:
    """Integer codes of ``meter_id`` (its index in the sorted list ``meters``) and
    steps since the Unix epoch of ``ts`` (hours, or days for ``freq="day"``); numpy
    arrays, one per row.

    Every ``meter_id`` of ``frame`` must be in ``meters``, and ``ts`` on the grid of
    ``freq`` (as the base class checks).  Integers instead of (string, datetime) pairs
    make alignment of big frames a sorted-array search.  The meter is looked up once
    per run of equal ``meter_id`` (once per meter in a sorted frame), not per row.
    """
    values, starts = _meter_runs(frame)
    lengths = np.diff(np.append(starts, frame.height))
    codes = values.cast(pl.Enum(meters)).to_physical().cast(pl.Int64).to_numpy()
    code = np.repeat(np.asarray(codes, dtype=np.int64), lengths)
    hour = _frame_micros(frame) // (STEP_SECONDS[freq] * 1_000_000)
    return code, hour


def row_keys(code: np.ndarray, hour: np.ndarray) -> np.ndarray:
    """One sortable int64 per (meter code, hour): meter-major, then time."""
    key = np.left_shift(np.asarray(code, dtype=np.int64), 34)
    key += hour
    key += 1 << 33
    return key


def meters_in(frame: pl.DataFrame) -> pl.Series:
    """The distinct ``meter_id`` of a frame (from runs of equal values: cheap on a
    frame sorted by meter, which the base class hands the hooks)."""
    values, _ = _meter_runs(frame)
    return values.unique().alias("meter_id")


def is_checked(frame: pl.DataFrame) -> bool:
    """Whether ``frame`` is one :func:`_check_frame` returned (so sorted by
    ``(meter_id, ts)``, unique, on the grid) and still alive in its memory."""
    return _recall(frame) is not None


def same_rows(a: pl.DataFrame, b: pl.DataFrame) -> bool:
    """Whether two frames have the same ``(meter_id, ts)`` rows in the same order (the
    usual consumption / temperature pair), so per-row codes can be shared."""
    if a.height != b.height:
        return False
    fa, fb = _recall(a), _recall(b)
    if fa is not None and fb is not None:  # both checked: compare what the checks saw
        return (
            np.array_equal(fa.starts, fb.starts)
            and fa.values.equals(fb.values)
            and np.array_equal(fa.micros, fb.micros)
        )
    return all(a.get_column(c).equals(b.get_column(c)) for c in ("ts", "meter_id"))


def usable_rows(consumption: pl.DataFrame) -> np.ndarray | None:
    """Boolean mask of the rows with a ``valid`` non-null, non-NaN ``volume_m3``, or
    ``None`` when every row is (the usual case; no mask to apply)."""
    vol = pl.col("volume_m3")
    ok = consumption.select(
        (vol.is_not_null() & vol.is_not_nan() & (pl.col("quality") == "valid"))
        .fill_null(False)
        .alias("ok")
    ).to_series()
    return None if bool(ok.all()) else np.asarray(ok.to_numpy(), dtype=bool)


def valid_temperature(temperature: pl.DataFrame) -> pl.DataFrame:
    """The rows with a non-null, non-NaN ``temperature_c`` (the frame itself when all are)."""
    tc = temperature.get_column("temperature_c")
    if tc.null_count() == 0 and not bool(tc.is_nan().any()):
        return temperature
    return temperature.filter(
        pl.col("temperature_c").is_not_null() & pl.col("temperature_c").is_not_nan()
    )


def group_quantiles(
    values: np.ndarray, group: np.ndarray, n_groups: int, quantiles: tuple[float, ...]
) -> tuple[np.ndarray, ...]:
    """Per-group quantiles with linear interpolation (as Polars' ``quantile(q,
    interpolation="linear")``: ``lo + (hi - lo) * frac`` at position ``q * (count - 1)``
    of the sorted values); ``NaN`` for a group without values.

    ``group`` holds integer group ids in ``[0, n_groups)``.  Rows grouped contiguously
    and in order (as the models produce them) are not sorted; groups of equal size
    are partitioned as one matrix, others one ``np.partition`` per group.
    """
    out = tuple(np.full(n_groups, np.nan) for _ in quantiles)
    if values.size == 0:
        return out
    if bool((group[1:] < group[:-1]).any()):
        order = np.argsort(group, kind="stable")
        values, group = values[order], group[order]
    counts = np.diff(np.searchsorted(group, np.arange(n_groups + 1)))
    present = np.flatnonzero(counts)
    sizes = counts[present]
    if sizes.min() == sizes.max():
        size = int(sizes[0])
        pos = [q * (size - 1) for q in quantiles]
        kth = sorted({k for p in pos for k in (int(np.floor(p)), int(np.ceil(p)))})
        part = np.partition(values.reshape(present.size, size), kth, axis=1)
        for res, p in zip(out, pos, strict=True):
            lo, hi = int(np.floor(p)), int(np.ceil(p))
            res[present] = part[:, lo] + (part[:, hi] - part[:, lo]) * (p - lo)
        return out
    ends = np.cumsum(sizes)
    for g, size, end in zip(present, sizes, ends, strict=True):
        pos = [q * (int(size) - 1) for q in quantiles]
        kth = sorted({k for p in pos for k in (int(np.floor(p)), int(np.ceil(p)))})
        part = np.partition(values[end - size : end], kth)
        for res, p in zip(out, pos, strict=True):
            lo, hi = int(np.floor(p)), int(np.ceil(p))
            res[g] = part[lo] + (part[hi] - part[lo]) * (p - lo)
    return out


def check_instant(value: dt.datetime, what: str, freq: Freq = "hour") -> dt.datetime:
    if not isinstance(value, dt.datetime):
        raise InvalidInputError(
            f"{what}: expected a datetime.datetime in UTC, got {type(value).__name__}"
        )
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidInputError(
            f"{what}: expected a time-zone aware UTC datetime, got the naive {value!r}; "
            f"use value.replace(tzinfo=datetime.UTC) if it is UTC"
        )
    value = value.astimezone(dt.UTC)
    if value != value.replace(minute=0, second=0, microsecond=0):
        raise InvalidInputError(f"{what}: expected the start of an hour, got {value.isoformat()}")
    if freq == "day" and value.hour != 0:
        raise InvalidInputError(
            f"{what}: expected UTC midnight (freq='day'), got {value.isoformat()}; use "
            f"{value.replace(hour=0).isoformat()} (the start of that UTC day)"
        )
    return value


def _complete_horizon(
    temperature: pl.DataFrame, start: dt.datetime, end: dt.datetime, freq: Freq = "hour"
) -> pl.DataFrame:
    """Restrict to ``[start, end)`` and insert null rows for absent steps of each meter."""
    if end <= start:
        raise InvalidInputError(f"predict: expected start < end, got start={start}, end={end}")
    meters = temperature.select("meter_id").unique()
    hours = pl.DataFrame(
        {
            "ts": pl.datetime_range(
                start, end, _EVERY[freq], closed="left", time_zone="UTC", eager=True
            )
        }
    )
    grid = meters.join(hours.with_columns(pl.col("ts").dt.cast_time_unit("us")), how="cross")
    return grid.join(temperature, on=["meter_id", "ts"], how="left")


def _check_no_null_temperature(temperature: pl.DataFrame, freq: Freq = "hour") -> None:
    gaps = temperature.filter(pl.col("temperature_c").is_null() | pl.col("temperature_c").is_nan())
    if gaps.height == 0:
        return
    per_meter = gaps.group_by("meter_id").agg(pl.col("ts").sort()).sort("meter_id")
    lines = [
        f"{m}: {describe_hours(ts, step=STEP[freq])}" for m, ts in per_meter.head(5).iter_rows()
    ]
    more = f"; and {per_meter.height - 5} more meter(s)" if per_meter.height > 5 else ""
    unit = freq  # "hour" / "day"
    raise MissingTemperatureError(
        f"expected an outdoor temperature for every {unit} to forecast, but {gaps.height} "
        f"{unit}(s) of {per_meter.height} meter(s) have none — {'; '.join(lines)}{more}. Load the weather "
        f"forecast for these hours into the `weather` table (the meter's branch weather station), "
        f"or shorten the horizon"
    )


def describe_hours(
    hours: Iterable[dt.datetime], *, limit: int = 3, step: dt.timedelta = HOUR
) -> str:
    """Compact text for a sorted list of UTC hours (or days, with ``step=DAY``):
    consecutive steps become one range."""
    ranges: list[tuple[dt.datetime, dt.datetime]] = []
    for h in hours:
        if ranges and h - ranges[-1][1] == step:
            ranges[-1] = (ranges[-1][0], h)
        else:
            ranges.append((h, h))
    fmt = "%Y-%m-%d %H:%M"
    unit = "h" if step == HOUR else "d" if step == DAY else f"x {step}"
    parts = [
        f"{a.strftime(fmt)}Z"
        if a == b
        else f"{a.strftime(fmt)}Z..{b.strftime(fmt)}Z ({(b - a) // step + 1} {unit})"
        for a, b in ranges[:limit]
    ]
    if len(ranges) > limit:
        parts.append(f"+{len(ranges) - limit} more range(s)")
    return ", ".join(parts)


def _head(items: list[str], n: int = 5) -> str:
    return ", ".join(items[:n]) + (f" (and {len(items) - n} more)" if len(items) > n else "")
