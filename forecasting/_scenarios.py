"""Temperature scenarios: what outdoor temperature a forecast horizon is conditioned on.

A :class:`Scenario` is a small declarative recipe, applied in this order to every
metering point's hourly temperature over the horizon ``[start, end)``:

1. **base** — ``"observed"``: the temperature frame as given (the ``weather`` table:
   observations and any weather forecast loaded into it), optionally overridden by a
   temperature **forecast file** (:func:`read_temperature_file`); ``"normal"``: the
   **normal year** (:func:`normal_year`, climatology of the history before ``start``);
2. **shift** — add ``shift_c`` °C to every horizon hour ("normal − 5 °C");
3. **cold snap** — :class:`ColdSnap`: a fixed temperature for a number of days from a
   date, blended into the shifted base over ``ramp_hours`` on each side.

Scenarios are named; the name is what the ``forecasts`` table stores in its
``scenario`` column.  :func:`parse_scenario` reads the command-line spelling
(``normal``, ``normal-5``, ``cold_snap:-25@2022-02-01+5d``) and
:func:`register_scenario` adds named ones to the registry (:func:`known_scenarios`).

All times are UTC; temperatures are °C.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal, get_args

import numpy as np
import polars as pl

from forecasting._base import HOUR, METER_TEMPERATURE, check_instant, describe_hours
from forecasting.errors import (
    InvalidInputError,
    InvalidParameterError,
    MissingTemperatureError,
    UnknownScenarioError,
)
from warehouse import ContractError, validate_frame
from warehouse._schemas import UTC_TS

#: Where a scenario's temperatures come from before shift and cold snap.
ScenarioBase = Literal["observed", "normal"]
SCENARIO_BASES: Final[tuple[str, ...]] = get_args(ScenarioBase)
#: Sampling frequency of the frame :meth:`Scenario.temperature` returns.
ScenarioFreq = Literal["hour", "day"]

#: Plausible outdoor air temperatures (°C); values outside are typos or wrong units.
_PLAUSIBLE_C: Final = (-90.0, 60.0)
_DAYS_IN_CYCLE: Final = 366  # day-of-year on the leap-year calendar: Feb 29 has its slot
_MAX_NAME: Final = 120
_NAME_OK: Final = re.compile(r"^[A-Za-z0-9_.:@+\-/ ]+$")
_SYNTAX: Final = (
    "observed | normal | <observed|normal><+|-><°C> (e.g. normal-5) | "
    "cold_snap:<°C>@<YYYY-MM-DD>(T<HH>)+<n>d|h(/<base>) (e.g. cold_snap:-25@2022-02-01+5d, "
    "cold_snap:-20@2022-02-01T06+36h/observed)"
)


def _check_int(value: object, what: str, lo: int, hi: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise InvalidParameterError(f"{what}: expected an integer in [{lo}, {hi}], got {value!r}")


def _is_number(value: object) -> bool:
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(float(value))
    )


@dataclass(frozen=True)
class ColdSnap:
    """A fixed outdoor temperature for a while: "−25 °C for 5 days from 1 February".

    Parameters
    ----------
    start
        First instant of the snap (UTC, on the hour); a :class:`datetime.date` means
        its UTC midnight.
    days
        Length of the snap in days (> 0; fractions allowed as long as the end falls on
        an hour, e.g. ``1.5``).
    temperature_c
        The temperature during the snap (°C), exactly, in every hour of the window.
    ramp_hours
        Hours on each side over which the temperature blends linearly from the base
        scenario into the snap and back (0 = a step).  The hour ``k`` hours outside the
        window (``k = 1 … ramp_hours``) gets weight ``1 − k / (ramp_hours + 1)`` on the
        snap temperature.
    """

    start: dt.datetime | dt.date
    days: float
    temperature_c: float
    ramp_hours: int = 12

    def __post_init__(self) -> None:
        start = self.start
        if isinstance(start, dt.date) and not isinstance(start, dt.datetime):
            start = dt.datetime(start.year, start.month, start.day, tzinfo=dt.UTC)
        try:
            start = check_instant(start, "ColdSnap.start")
        except InvalidInputError as exc:  # a bad parameter, not bad data
            raise InvalidParameterError(str(exc)) from None
        object.__setattr__(self, "start", start)
        if not _is_number(self.days) or not 0 < float(self.days) <= 366:
            raise InvalidParameterError(
                f"ColdSnap.days: expected a number of days in (0, 366], got {self.days!r}"
            )
        hours = float(self.days) * 24
        if abs(hours - round(hours)) > 1e-9:
            raise InvalidParameterError(
                f"ColdSnap.days: expected whole hours, got {self.days!r} days = {hours:g} h"
            )
        if not _is_number(self.temperature_c) or not (
            _PLAUSIBLE_C[0] <= float(self.temperature_c) <= _PLAUSIBLE_C[1]
        ):
            raise InvalidParameterError(
                f"ColdSnap.temperature_c: expected an outdoor temperature in "
                f"[{_PLAUSIBLE_C[0]:g}, {_PLAUSIBLE_C[1]:g}] °C, got {self.temperature_c!r}"
            )
        _check_int(self.ramp_hours, "ColdSnap.ramp_hours", 0, 240)

    @property
    def start_utc(self) -> dt.datetime:
        """The first hour of the snap (UTC)."""
        assert isinstance(self.start, dt.datetime)  # normalised in __post_init__
        return self.start

    @property
    def end(self) -> dt.datetime:
        """The first hour after the snap (UTC, exclusive)."""
        return self.start_utc + dt.timedelta(hours=round(float(self.days) * 24))

    def weight(self, ts: pl.Expr) -> pl.Expr:
        """Weight of the snap temperature (0 … 1) at each hour of ``ts``."""
        start = pl.lit(self.start_utc, dtype=UTC_TS)
        last = pl.lit(self.end - HOUR, dtype=UTC_TS)
        before = (start - ts).dt.total_hours()
        after = (ts - last).dt.total_hours()
        outside = pl.max_horizontal(before, after, pl.lit(0)).cast(pl.Float64)
        return (1.0 - outside / (self.ramp_hours + 1)).clip(lower_bound=0.0)


@dataclass(frozen=True)
class Scenario:
    """A named recipe for the horizon's outdoor temperature (see the module docstring).

    Parameters
    ----------
    name
        What the ``forecasts`` table stores in ``scenario`` (letters, digits and
        ``_ . : @ + - /``; at most 120 characters).
    base
        ``"observed"`` (the temperature frame / weather table, plus
        ``forecast_file``) or ``"normal"`` (the normal year).
    shift_c
        °C added to every horizon hour of the base.
    cold_snap
        A :class:`ColdSnap` blended into the shifted base, or None.
    forecast_file
        With ``base="observed"``: a CSV temperature forecast (:func:`read_temperature_file`)
        whose values replace or fill the frame's horizon hours.
    smoothing_days
        Half-width of the day-of-year window of the normal year (``base="normal"``).

    Examples
    --------
    >>> import datetime as dt
    >>> snap = ColdSnap(start=dt.date(2022, 2, 1), days=5, temperature_c=-25)
    >>> Scenario(name="cold_snap", base="normal", cold_snap=snap).base
    'normal'
    >>> parse_scenario("normal-5").shift_c
    -5.0
    """

    name: str
    base: ScenarioBase = "observed"
    shift_c: float = 0.0
    cold_snap: ColdSnap | None = None
    forecast_file: str | Path | None = None
    smoothing_days: int = 7
    _file_rows: pl.DataFrame | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if (
            not isinstance(self.name, str)
            or not self.name
            or len(self.name) > _MAX_NAME
            or not _NAME_OK.match(self.name)
        ):
            raise InvalidParameterError(
                f"Scenario.name: expected 1..{_MAX_NAME} characters of letters, digits and "
                f"'_ . : @ + - /', got {self.name!r}"
            )
        if self.base not in SCENARIO_BASES:
            raise InvalidParameterError(
                f"Scenario.base: expected one of {list(SCENARIO_BASES)}, got {self.base!r}"
            )
        if not _is_number(self.shift_c) or not -50 <= float(self.shift_c) <= 50:
            raise InvalidParameterError(
                f"Scenario.shift_c: expected a shift in [-50, 50] °C, got {self.shift_c!r}"
            )
        object.__setattr__(self, "shift_c", float(self.shift_c))
        if self.cold_snap is not None and not isinstance(self.cold_snap, ColdSnap):
            raise InvalidParameterError(
                f"Scenario.cold_snap: expected a ColdSnap or None, got {type(self.cold_snap).__name__}"
            )
        if self.forecast_file is not None and self.base != "observed":
            raise InvalidParameterError(
                f"Scenario {self.name!r}: a forecast_file replaces observed temperatures, so it "
                f"needs base='observed', got base={self.base!r}"
            )
        _check_int(self.smoothing_days, "Scenario.smoothing_days", 0, 60)
        if self.forecast_file is not None and self._file_rows is None:
            # Read (and check) the file once, when the scenario is made.
            object.__setattr__(self, "_file_rows", read_temperature_file(self.forecast_file))

    @property
    def is_observed(self) -> bool:
        """True for the plain weather-table scenario (no file, shift or snap)."""
        return (
            self.base == "observed"
            and self.shift_c == 0.0
            and self.cold_snap is None
            and self.forecast_file is None
        )

    def temperature(
        self,
        history: pl.DataFrame,
        *,
        start: dt.datetime,
        end: dt.datetime,
        freq: ScenarioFreq = "hour",
        meter_ids: Sequence[str] | None = None,
        stations: pl.DataFrame | None = None,
    ) -> pl.DataFrame:
        """This scenario's outdoor temperature for every metering point over a horizon.

        Parameters
        ----------
        history
            Hourly temperature per metering point (``meter_id``, ``ts`` UTC hour start,
            ``temperature_c`` °C), as :func:`warehouse.load_meter_temperature` returns
            it.  Rows before ``start`` are the history the normal year is computed
            from; rows in ``[start, end)`` are the observed base (a weather forecast).
        start, end
            The horizon ``start <= ts < end`` (UTC; on the hour, or on UTC midnight
            with ``freq="day"``).
        freq
            ``"hour"``: one row per hour; ``"day"``: one row per UTC day with the daily
            mean temperature of its 24 scenario hours.
        meter_ids
            Metering points to return (default: every ``meter_id`` in ``history``).
        stations
            ``meter_id`` → ``station_id`` (e.g. from ``metering_points`` joined to
            ``branches.weather_station``); needed only when the forecast file is keyed
            by ``station_id``.

        Returns
        -------
        polars.DataFrame
            ``meter_id``, ``ts`` (UTC), ``temperature_c`` (°C): every meter × step of the
            horizon, sorted by meter and time.

        Raises
        ------
        MissingTemperatureError
            An hour of the horizon has no base temperature: the observed base (and the
            file) lack it, or the history holds no year with that day of year (±
            ``smoothing_days``) for the normal year.  The message names the meters and
            hours and the fix.
        InvalidInputError
            ``history`` breaks its contract, or ``start``/``end`` are not on the grid.
        """
        return scenario_temperature(
            self,
            history,
            start=start,
            end=end,
            freq=freq,
            meter_ids=meter_ids,
            stations=stations,
        )


# --- the registry and the command-line spelling ----------------------------------------------

_REGISTRY: dict[str, Scenario] = {
    "observed": Scenario(name="observed", base="observed"),
    "normal": Scenario(name="normal", base="normal"),
}
_SHIFT = re.compile(r"^(?P<base>observed|normal)\s*(?P<shift>[+-]\s*\d+(?:\.\d+)?)\s*(?:°?C)?$")
_SNAP = re.compile(
    r"^cold_snap:(?P<temp>[+-]?\d+(?:\.\d+)?)\s*(?:°?C)?"
    r"@(?P<date>\d{4}-\d{2}-\d{2})(?:T(?P<hour>\d{2})(?::00)?)?"
    r"\+(?P<length>\d+(?:\.\d+)?)(?P<unit>[dh])"
    r"(?:/(?P<base>.+))?$"
)


def known_scenarios() -> tuple[str, ...]:
    """Names of the registered scenarios (``observed``, ``normal`` and any registered)."""
    return tuple(_REGISTRY)


def register_scenario(scenario: Scenario, *, replace: bool = False) -> None:
    """Add a named scenario so that its name works wherever a scenario string does.

    Raises
    ------
    InvalidParameterError
        The name is taken (pass ``replace=True``) or is the built-in ``observed``.
    """
    if not isinstance(scenario, Scenario):
        raise InvalidParameterError(
            f"register_scenario: expected a Scenario, got {type(scenario).__name__}"
        )
    if scenario.name == "observed":
        raise InvalidParameterError("register_scenario: 'observed' is built in and cannot change")
    if scenario.name in _REGISTRY and not replace:
        raise InvalidParameterError(
            f"register_scenario: {scenario.name!r} is already registered; pass replace=True"
        )
    _REGISTRY[scenario.name] = scenario


def parse_scenario(text: str) -> Scenario:
    """Read a scenario from its command-line spelling.

    Accepted forms: a registered name (``observed``, ``normal``, …); a shift of a base,
    ``normal+3``, ``normal-5``, ``observed-5`` (°C; an optional ``C``/``°C`` suffix);
    a cold snap ``cold_snap:<°C>@<YYYY-MM-DD>[T<HH>]+<n>d`` (or ``+<n>h``) on the
    normal year, or on another base after a slash: ``cold_snap:-20@2022-02-01T06+36h/observed``,
    ``cold_snap:-25@2022-02-01+5d/normal-3``.  The scenario's name is the text.

    Raises
    ------
    UnknownScenarioError
        The text is neither a known name nor a valid spelling; the message lists the
        known names and the syntax.
    """
    if isinstance(text, Scenario):
        return text
    if not isinstance(text, str):
        raise UnknownScenarioError(
            f"scenario: expected a Scenario or a string, got {type(text).__name__}"
        )
    name = text.strip()
    if name in _REGISTRY:
        return _REGISTRY[name]
    m = _SHIFT.match(name)
    if m:
        base = _REGISTRY[m.group("base")]
        return Scenario(
            name=name,
            base=base.base,
            shift_c=float(m.group("shift").replace(" ", "")),
            smoothing_days=base.smoothing_days,
        )
    m = _SNAP.match(name)
    if m:
        base = parse_scenario(m.group("base")) if m.group("base") else _REGISTRY["normal"]
        if base.cold_snap is not None:
            raise UnknownScenarioError(
                f"scenario {name!r}: a cold snap cannot be based on another cold snap "
                f"({base.name!r}); syntax: {_SYNTAX}"
            )
        try:
            day = dt.date.fromisoformat(m.group("date"))
            hour = int(m.group("hour") or 0)
            start = dt.datetime(day.year, day.month, day.day, hour, tzinfo=dt.UTC)
        except ValueError as exc:
            raise UnknownScenarioError(
                f"scenario {name!r}: bad cold-snap start {m.group('date')}"
                f"{'T' + m.group('hour') if m.group('hour') else ''} ({exc}); syntax: {_SYNTAX}"
            ) from None
        length = float(m.group("length"))
        days = length if m.group("unit") == "d" else length / 24
        try:
            snap = ColdSnap(start=start, days=days, temperature_c=float(m.group("temp")))
            return Scenario(
                name=name,
                base=base.base,
                shift_c=base.shift_c,
                cold_snap=snap,
                forecast_file=base.forecast_file,
                smoothing_days=base.smoothing_days,
                _file_rows=base._file_rows,
            )
        except InvalidParameterError as exc:
            raise UnknownScenarioError(f"scenario {name!r}: {exc}") from None
    raise UnknownScenarioError(
        f"unknown scenario {text!r}: known scenarios are {', '.join(known_scenarios())}; "
        f"or spell one as {_SYNTAX}"
    )


def resolve_scenarios(scenarios: Iterable[Scenario | str]) -> list[Scenario]:
    """Parse each entry (see :func:`parse_scenario`) and check the names are distinct."""
    if isinstance(scenarios, (str, Scenario)):
        scenarios = [scenarios]
    out = [parse_scenario(s) if isinstance(s, str) else s for s in scenarios]
    for s in out:
        if not isinstance(s, Scenario):
            raise UnknownScenarioError(
                f"scenarios: expected Scenario objects or strings, got {type(s).__name__}"
            )
    if not out:
        raise InvalidParameterError("scenarios: expected at least one scenario, got none")
    names = [s.name for s in out]
    dups = sorted({n for n in names if names.count(n) > 1})
    if dups:
        raise InvalidParameterError(
            f"scenarios: every scenario needs its own name (it is part of the stored key), "
            f"got {dups} more than once"
        )
    return out


# --- building the temperatures ------------------------------------------------------------------


def scenario_temperature(
    scenario: Scenario | str,
    history: pl.DataFrame,
    *,
    start: dt.datetime,
    end: dt.datetime,
    freq: ScenarioFreq = "hour",
    meter_ids: Sequence[str] | None = None,
    stations: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """Outdoor temperature per metering point over ``[start, end)`` under a scenario.

    The functional form of :meth:`Scenario.temperature` (which documents the
    parameters); ``scenario`` may also be a string for :func:`parse_scenario`.
    """
    sc = parse_scenario(scenario) if isinstance(scenario, str) else scenario
    if not isinstance(sc, Scenario):
        raise UnknownScenarioError(
            f"scenario: expected a Scenario or a string, got {type(sc).__name__}"
        )
    if freq not in ("hour", "day"):
        raise InvalidParameterError(f"freq: expected 'hour' or 'day', got {freq!r}")
    start, end = _instant(start, "start", freq), _instant(end, "end", freq)
    if end <= start:
        raise InvalidInputError(f"expected start < end, got start={start}, end={end}")
    history = _check_history(history)
    meters = (
        sorted(set(meter_ids))
        if meter_ids is not None
        else history.get_column("meter_id").unique().sort().to_list()
    )
    hours = pl.datetime_range(start, end, "1h", closed="left", time_zone="UTC", eager=True)
    grid = pl.DataFrame({"meter_id": meters}, schema={"meter_id": pl.String}).join(
        pl.DataFrame({"ts": hours.dt.cast_time_unit("us")}), how="cross"
    )
    if sc.base == "normal":
        base = _climatology(history.filter(pl.col("ts") < start), grid, sc.smoothing_days)
        what = (
            f"the normal year (no history within ±{sc.smoothing_days} days of these days of "
            f"year before {start.date()}): load earlier years of weather for the branch's "
            "station, or use an observed scenario"
        )
    else:
        base = grid.join(history, on=["meter_id", "ts"], how="left")
        if sc._file_rows is not None:
            base = _apply_file(base, sc._file_rows, stations, str(sc.forecast_file))
        what = (
            "the weather table"
            + (f" or the forecast file {sc.forecast_file}" if sc.forecast_file else "")
            + ": load a weather forecast for these hours (the branch's weather station), "
            "use the scenario 'normal', or shorten the horizon"
        )
    _check_complete(base, sc.name, what)
    snap = sc.cold_snap
    if snap is not None and (
        snap.end + snap.ramp_hours * HOUR <= start or snap.start_utc - snap.ramp_hours * HOUR >= end
    ):
        raise InvalidParameterError(
            f"scenario {sc.name!r}: the cold snap {snap.start_utc.isoformat()} .. "
            f"{snap.end.isoformat()} lies outside the horizon {start.isoformat()} .. "
            f"{end.isoformat()}; move the snap into the horizon or lengthen the horizon"
        )
    t = pl.col("temperature_c") + sc.shift_c
    if sc.cold_snap is not None:
        w = sc.cold_snap.weight(pl.col("ts"))
        t = (1.0 - w) * t + w * float(sc.cold_snap.temperature_c)
    out = base.select("meter_id", "ts", t.alias("temperature_c"))
    if freq == "day":
        out = out.group_by("meter_id", pl.col("ts").dt.truncate("1d")).agg(
            pl.col("temperature_c").mean()
        )
    return out.sort("meter_id", "ts")


def normal_year(history: pl.DataFrame, *, smoothing_days: int = 7) -> pl.DataFrame:
    """The climatology of an hourly temperature history: a "normal year" per meter.

    For every metering point, day of year and hour of day: the mean of all history
    hours at that hour of day whose day of year lies within ±``smoothing_days`` days
    (circularly, over the year end).  Days of year count on the leap-year calendar
    (1 January = 1, 29 February = 60, 31 December = 366), so a date has the same
    number in every year.

    Parameters
    ----------
    history
        Hourly temperature per metering point: ``meter_id``, ``ts`` (UTC hour start),
        ``temperature_c`` (°C).  Null temperatures are ignored.
    smoothing_days
        Half-width of the day-of-year window (0 = no smoothing).

    Returns
    -------
    polars.DataFrame
        ``meter_id``, ``day_of_year`` (Int16, 1 … 366), ``hour`` (Int8, UTC hour of day
        0 … 23), ``temperature_c`` (°C) and ``observations`` (history hours averaged);
        rows without any observation are left out.
    """
    if isinstance(smoothing_days, bool) or not isinstance(smoothing_days, int) or not (
        0 <= smoothing_days <= 60
    ):
        raise InvalidParameterError(
            f"smoothing_days: expected an integer in [0, 60], got {smoothing_days!r}"
        )
    history = _check_history(history)
    meters = history.get_column("meter_id").unique().sort().to_list()
    doys = np.arange(_DAYS_IN_CYCLE)
    sums, counts = _window_sums(history, meters, doys, smoothing_days)
    m, d, h = np.meshgrid(np.arange(len(meters)), doys, np.arange(24), indexing="ij")
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = sums / counts
    keep = (counts > 0).ravel()
    return pl.DataFrame(
        {
            "meter_id": np.asarray(meters, dtype=object)[m.ravel()[keep]],
            "day_of_year": (d.ravel()[keep] + 1).astype(np.int16),
            "hour": h.ravel()[keep].astype(np.int8),
            "temperature_c": mean.ravel()[keep],
            "observations": counts.ravel()[keep].astype(np.int64),
        },
        schema={
            "meter_id": pl.String,
            "day_of_year": pl.Int16,
            "hour": pl.Int8,
            "temperature_c": pl.Float64,
            "observations": pl.Int64,
        },
    )


def read_temperature_file(path: str | Path) -> pl.DataFrame:
    """Read a temperature forecast CSV and check every line.

    The file has a header and one row per hour: ``ts`` (ISO 8601; with an offset or
    ``Z``, or naive meaning UTC; on the hour) and ``temperature_c`` (°C), optionally
    ``station_id`` (a weather station of the ``branches`` table) or ``meter_id``; a
    file without either applies to every metering point.

    Returns
    -------
    polars.DataFrame
        ``ts`` (UTC), ``temperature_c`` and the id column if the file has one.

    Raises
    ------
    InvalidInputError
        The file is missing or empty, lacks a column, or a line has an unparsable or
        off-the-hour ``ts``, a missing or implausible temperature, or repeats an hour;
        the message names the file, the line number (the header is line 1) and the fix.
    """
    p = Path(path)
    if not p.is_file():
        raise InvalidInputError(
            f"temperature forecast file {p}: not found; expected a CSV with columns ts, "
            "temperature_c (and optionally station_id or meter_id)"
        )
    try:
        raw = pl.read_csv(p, infer_schema=False)
    except (pl.exceptions.PolarsError, UnicodeDecodeError) as exc:
        raise InvalidInputError(
            f"temperature forecast file {p}: not a readable CSV ({str(exc).splitlines()[0]}); "
            "expected a header line 'ts,temperature_c' and one row per hour"
        ) from None
    raw = raw.rename({c: c.strip() for c in raw.columns})
    absent = [c for c in ("ts", "temperature_c") if c not in raw.columns]
    if absent:
        raise InvalidInputError(
            f"temperature forecast file {p}: line 1 (header) lacks columns {absent}, got "
            f"{raw.columns}; expected ts, temperature_c and optionally station_id or meter_id"
        )
    ids = [c for c in ("station_id", "meter_id") if c in raw.columns]
    if len(ids) > 1:
        raise InvalidInputError(
            f"temperature forecast file {p}: line 1 (header) has both station_id and meter_id; "
            "keep one of them"
        )
    if raw.height == 0:
        raise InvalidInputError(f"temperature forecast file {p}: no data lines after the header")
    text = pl.col("ts").str.strip_chars()
    parsed = raw.with_row_index("line", offset=2).with_columns(
        pl.coalesce(
            text.str.to_datetime("%Y-%m-%dT%H:%M:%S%#z", strict=False, time_unit="us"),
            text.str.to_datetime("%Y-%m-%d %H:%M:%S%#z", strict=False, time_unit="us"),
            text.str.to_datetime("%Y-%m-%dT%H:%M%#z", strict=False, time_unit="us"),
            text.str.to_datetime("%Y-%m-%d %H:%M%#z", strict=False, time_unit="us"),
            text.str.to_datetime("%Y-%m-%dT%H:%M:%S", strict=False, time_unit="us").dt.replace_time_zone("UTC"),
            text.str.to_datetime("%Y-%m-%d %H:%M:%S", strict=False, time_unit="us").dt.replace_time_zone("UTC"),
            text.str.to_datetime("%Y-%m-%dT%H:%M", strict=False, time_unit="us").dt.replace_time_zone("UTC"),
            text.str.to_datetime("%Y-%m-%d %H:%M", strict=False, time_unit="us").dt.replace_time_zone("UTC"),
        )
        .dt.convert_time_zone("UTC")
        .alias("_ts"),
        pl.col("temperature_c").str.strip_chars().cast(pl.Float64, strict=False).alias("_t"),
    )

    def fail(bad: pl.DataFrame, problem: str, fix: str) -> None:
        first = bad.row(0, named=True)
        more = f" (and {bad.height - 1} more line(s))" if bad.height > 1 else ""
        raise InvalidInputError(
            f"temperature forecast file {p}: line {first['line']}: {problem.format(**first)}"
            f"{more}; {fix}"
        )

    bad = parsed.filter(pl.col("_ts").is_null())
    if bad.height:
        fail(bad, "ts {ts!r} is not an ISO 8601 time", "write e.g. 2022-02-01T06:00:00Z")
    bad = parsed.filter(pl.col("_ts") != pl.col("_ts").dt.truncate("1h"))
    if bad.height:
        fail(bad, "ts {ts!r} is not on the hour", "give hourly values at the start of each hour")
    bad = parsed.filter(pl.col("_t").is_null() | pl.col("_t").is_nan())
    if bad.height:
        fail(bad, "temperature_c {temperature_c!r} is not a number", "give °C, e.g. -12.5")
    lo, hi = _PLAUSIBLE_C
    bad = parsed.filter((pl.col("_t") < lo) | (pl.col("_t") > hi))
    if bad.height:
        fail(
            bad,
            f"temperature_c {{temperature_c}} is outside [{lo:g}, {hi:g}] °C",
            "the column is °C (not K or °F)",
        )
    if ids:
        bad = parsed.filter(pl.col(ids[0]).is_null() | (pl.col(ids[0]).str.strip_chars() == ""))
        if bad.height:
            fail(bad, f"{ids[0]} is empty", f"give the {ids[0]} on every line")
    key = [*ids, "_ts"]
    bad = parsed.filter(pl.struct(key).is_duplicated()).sort("line")
    if bad.height:
        dup = bad.row(0, named=True)
        first = bad.filter(pl.struct(key) == pl.struct(key).first()).get_column("line").to_list()
        raise InvalidInputError(
            f"temperature forecast file {p}: line {first[-1]}: ts {dup['ts']!r}"
            + (f" of {ids[0]} {dup[ids[0]]!r}" if ids else "")
            + f" repeats line {first[0]}; keep one value per hour"
        )
    out = parsed.select(
        *[pl.col(c).str.strip_chars() for c in ids],
        pl.col("_ts").alias("ts"),
        pl.col("_t").alias("temperature_c"),
    )
    return out.sort([*ids, "ts"])


# --- helpers ----------------------------------------------------------------------------------


def _instant(value: dt.datetime, what: str, freq: str) -> dt.datetime:
    if not isinstance(value, dt.datetime):
        raise InvalidInputError(
            f"{what}: expected a datetime.datetime in UTC, got {type(value).__name__}"
        )
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidInputError(
            f"{what}: expected a time-zone aware UTC datetime, got the naive {value!r}; "
            "use value.replace(tzinfo=datetime.UTC) if it is UTC"
        )
    value = value.astimezone(dt.UTC)
    grid = value.replace(minute=0, second=0, microsecond=0)
    if freq == "day":
        grid = grid.replace(hour=0)
    if value != grid:
        step = "UTC midnight" if freq == "day" else "start of an hour"
        raise InvalidInputError(f"{what}: expected the {step}, got {value.isoformat()}")
    return value


def _check_history(history: pl.DataFrame) -> pl.DataFrame:
    if not isinstance(history, pl.DataFrame):
        raise InvalidInputError(
            f"history: expected a polars.DataFrame (meter_id, ts, temperature_c), got "
            f"{type(history).__name__}"
        )
    try:
        out = validate_frame(history, METER_TEMPERATURE)
    except ContractError as exc:
        raise InvalidInputError(
            f"history: expected hourly temperature (meter_id, ts UTC, temperature_c °C); {exc}"
        ) from exc
    off = out.filter(pl.col("ts") != pl.col("ts").dt.truncate("1h"))
    if off.height:
        raise InvalidInputError(
            f"history: expected hourly rows on the UTC hour, got {off.height} off the hour, "
            f"e.g. {off.get_column('ts').head(3).to_list()}"
        )
    return out


def _leap_doy(ts: pl.Expr) -> pl.Expr:
    """0-based day of year on the leap-year calendar (1 Jan = 0, 29 Feb = 59, 31 Dec = 365)."""
    doy = ts.dt.ordinal_day().cast(pl.Int32) - 1
    # In common years, days from 1 March on move up one slot to make room for 29 Feb.
    return pl.when(~ts.dt.is_leap_year() & (ts.dt.month() > 2)).then(doy + 1).otherwise(doy)


def _window_sums(
    history: pl.DataFrame, meters: list[str], targets: np.ndarray, half: int
) -> tuple[np.ndarray, np.ndarray]:
    """Sums and counts of history temperatures per meter, target day of year and hour
    over the window ±``half`` days around each target (0-based leap-calendar days)."""
    targets = np.asarray(targets, dtype=np.int64)
    offsets = np.arange(-half, half + 1)
    # Compact slots for the days any target window touches: the arrays stay small
    # (meters × days needed × 24) even for many meters and a short horizon.
    needed = np.unique((targets[:, None] + offsets[None, :]) % _DAYS_IN_CYCLE)
    slot = np.full(_DAYS_IN_CYCLE, -1, dtype=np.int64)
    slot[needed] = np.arange(needed.size)
    enc = history.filter(
        pl.col("temperature_c").is_not_null()
        & ~pl.col("temperature_c").is_nan()
        & pl.col("meter_id").is_in(meters)
    ).select(
        pl.col("meter_id").cast(pl.Enum(meters)).to_physical().cast(pl.Int64).alias("code"),
        _leap_doy(pl.col("ts")).alias("doy"),
        pl.col("ts").dt.hour().cast(pl.Int64).alias("hour"),
        pl.col("temperature_c"),
    )
    code = enc.get_column("code").to_numpy()
    s = slot[enc.get_column("doy").to_numpy()]
    hour = enc.get_column("hour").to_numpy()
    temp = enc.get_column("temperature_c").to_numpy()
    use = s >= 0
    flat = (code[use] * needed.size + s[use]) * 24 + hour[use]
    size = len(meters) * needed.size * 24
    day_sums = np.bincount(flat, weights=temp[use], minlength=size).reshape(
        len(meters), needed.size, 24
    )
    day_counts = np.bincount(flat, minlength=size).reshape(len(meters), needed.size, 24)
    sums = np.zeros((len(meters), targets.size, 24))
    counts = np.zeros((len(meters), targets.size, 24), dtype=np.int64)
    for k in offsets:
        idx = slot[(targets + k) % _DAYS_IN_CYCLE]
        sums += day_sums[:, idx, :]
        counts += day_counts[:, idx, :]
    return sums, counts


def _climatology(history: pl.DataFrame, grid: pl.DataFrame, half: int) -> pl.DataFrame:
    """``grid`` (meter_id, ts) with the normal-year temperature of each row (null if none)."""
    meters = grid.get_column("meter_id").unique().sort().to_list()
    keyed = grid.with_columns(
        pl.col("meter_id").cast(pl.Enum(meters)).to_physical().cast(pl.Int64).alias("_code"),
        _leap_doy(pl.col("ts")).alias("_doy"),
        pl.col("ts").dt.hour().cast(pl.Int64).alias("_hour"),
    )
    doy = keyed.get_column("_doy").to_numpy()
    targets, tidx = np.unique(doy, return_inverse=True)
    sums, counts = _window_sums(history, meters, targets, half)
    code = keyed.get_column("_code").to_numpy()
    hour = keyed.get_column("_hour").to_numpy()
    n = counts[code, tidx, hour]
    with np.errstate(invalid="ignore", divide="ignore"):
        value = np.where(n > 0, sums[code, tidx, hour] / np.maximum(n, 1), np.nan)
    return grid.with_columns(pl.Series("temperature_c", value).fill_nan(None))


def _apply_file(
    base: pl.DataFrame, rows: pl.DataFrame, stations: pl.DataFrame | None, path: str
) -> pl.DataFrame:
    """File values replace (or fill) the base's temperature for the hours they cover."""
    if "meter_id" in rows.columns:
        keyed = rows
    elif "station_id" in rows.columns:
        if stations is None or not {"meter_id", "station_id"} <= set(stations.columns):
            raise InvalidInputError(
                f"temperature forecast file {path} is keyed by station_id; pass stations= "
                "(meter_id → station_id), as run_forecasts does, or key the file by meter_id"
            )
        keyed = stations.select("meter_id", "station_id").join(rows, on="station_id").drop(
            "station_id"
        )
    else:
        keyed = base.select("meter_id").unique().join(rows, how="cross")
    return (
        base.join(
            keyed.rename({"temperature_c": "_file"}), on=["meter_id", "ts"], how="left"
        )
        .with_columns(pl.coalesce("_file", "temperature_c").alias("temperature_c"))
        .drop("_file")
    )


def _check_complete(frame: pl.DataFrame, name: str, what: str) -> None:
    gaps = frame.filter(pl.col("temperature_c").is_null() | pl.col("temperature_c").is_nan())
    if gaps.height == 0:
        return
    per_meter = gaps.group_by("meter_id").agg(pl.col("ts").sort()).sort("meter_id")
    lines = [f"{m}: {describe_hours(ts)}" for m, ts in per_meter.head(5).iter_rows()]
    more = f"; and {per_meter.height - 5} more meter(s)" if per_meter.height > 5 else ""
    raise MissingTemperatureError(
        f"scenario {name!r}: expected an outdoor temperature for every hour to forecast, but "
        f"{gaps.height} hour(s) of {per_meter.height} meter(s) have none — "
        f"{'; '.join(lines)}{more}. They are missing from {what}"
    )

