"""VEE validation rules: vectorised Polars checks over hourly or daily series.

Every rule takes long frames (one row per metering point and interval, UTC ``ts`` =
interval start) and returns **findings** in :data:`FINDINGS_SCHEMA`: one row per run of
consecutive offending intervals of one metering point, with the quality code the rule
gives those intervals.  No rule loops over rows in Python; runs are found with a
cumulative sum over "something changed" breaks on a frame sorted by ``(meter_id, ts)``,
so the same code serves 10 rows and 100 M rows (work in meter batches for more).

The rules, their quality code and what the pipeline does with the intervals they flag
are listed in :data:`RULES`.  All parameters live in one frozen :class:`VeeRules`.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, fields
from typing import Final, Literal

import numpy as np
import polars as pl

from analytics.errors import AnalyticsError

UTC_TS: Final = pl.Datetime("us", "UTC")

Severity = Literal["info", "warning", "critical"]


@dataclass(frozen=True)
class RuleInfo:
    """What a rule means for the intervals it flags.

    Attributes
    ----------
    quality
        Quality code the rule gives the flagged intervals (``suspect``, ``missing``, or
        ``valid`` for an informational finding such as a counter rollover).
    severity
        ``info``, ``warning`` or ``critical``: how urgently a metrologist should look.
    marks
        The pipeline writes ``quality`` onto the flagged hours of the hourly archive.
    estimates
        The pipeline replaces the flagged values with an estimate (``quality =
        estimated``); rules that flag a value which may still be right (clipping,
        out-of-range pressure) only mark it.
    doc
        One line for the docs.
    """

    quality: str
    severity: Severity
    marks: bool
    estimates: bool
    doc: str


#: Every rule by name.  The names are the ``rule`` column of the findings.
RULES: Final[dict[str, RuleInfo]] = {
    "gap": RuleInfo("missing", "warning", True, True, "interval absent or null"),
    "zero_run": RuleInfo(
        "suspect", "warning", True, True,
        "≥ N consecutive zero intervals while it was cold (mean outdoor temperature below a limit)",
    ),
    "frozen": RuleInfo("suspect", "warning", True, True, "≥ N consecutive identical non-zero values"),
    "spike": RuleInfo(
        "suspect", "warning", True, True, "value far above the expected value (ratio and robust z)"
    ),
    "negative": RuleInfo("suspect", "critical", True, True, "negative consumption"),
    "clipping": RuleInfo(
        "suspect", "info", True, False, "the series maximum repeats ≥ N times (values clipped)"
    ),
    "counter_regression": RuleInfo(
        "suspect", "critical", False, False,
        "cumulative register went backwards and no rollover explains it (or meter replaced)",
    ),
    "rollover": RuleInfo(
        "valid", "info", False, False, "register wrapped at its modulus: consumption is fine"
    ),
    "duplicate_interval": RuleInfo(
        "suspect", "warning", False, False, "the same interval delivered more than once"
    ),
    "clock_shift": RuleInfo(
        "suspect", "warning", True, False,
        "timestamp off the interval grid or ahead of the server clock",
    ),
    "sum_mismatch": RuleInfo(
        "suspect", "warning", False, False,
        "hourly sum, daily archive and counter difference of a day disagree",
    ),
    "corrector_mismatch": RuleInfo(
        "suspect", "warning", True, False,
        "V_std differs from V_work × P/P_std × T_std/T beyond the tolerance",
    ),
    "pressure_range": RuleInfo("suspect", "warning", True, False, "gas pressure out of range"),
    "temperature_range": RuleInfo("suspect", "warning", True, False, "gas temperature out of range"),
}

#: The findings frame (and the ``vee_findings`` table): one row per run of intervals.
FINDINGS_SCHEMA: Final = pl.Schema(
    {
        "meter_id": pl.String(),
        "rule": pl.String(),
        "ts": UTC_TS,  # first interval of the run
        "ts_end": UTC_TS,  # end of the last interval (exclusive)
        "intervals": pl.Int32(),
        "quality": pl.String(),
        "severity": pl.String(),
        "value": pl.Float64(),  # representative value (run value, worst value, day sum…)
        "expected": pl.Float64(),  # what the rule compared it with (null if nothing)
        "detail": pl.String(),
    }
)


@dataclass(frozen=True)
class VeeRules:
    """Parameters of every rule, in the series' own units and intervals.

    The defaults suit hourly gas consumption in m³ (or kWh: the rules are unit-free
    except the absolute floors).  For daily series pass ``every="1d"`` and counts in
    days, e.g. ``VeeRules(every="1d", zero_run_min=2, frozen_min=3)``.

    Attributes
    ----------
    every
        Interval length (``"1h"`` or ``"1d"``).
    zero_run_min
        Shortest run of zero intervals judged against temperature.
    cold_c
        A zero run whose mean outdoor temperature is below this (°C) is suspect: a
        heated building uses gas when it is cold.  Runs without temperature are not
        flagged (summer shutdowns and weekends are legitimately zero).
    frozen_min
        Shortest run of identical non-zero values that counts as frozen.
    frozen_min_value
        Values at or below this never count as frozen (a small meter at the resolution
        of its register repeats its smallest step legitimately).
    spike_ratio, spike_z, spike_min_excess
        A value is a spike if it exceeds ``spike_ratio ×`` expected, **and**
        expected + ``spike_z`` robust standard deviations (1.4826 × MAD of the meter's
        residuals), **and** expected by at least ``spike_min_excess``.
    spike_two_sided
        Also flag values ``spike_ratio`` times *below* expected (same z and excess
        conditions).  Off by default: a building's use legitimately drops to near zero
        at night and on holidays; on for aggregate series such as national demand.
    spike_window
        Without an explicit expected value, expected = centred rolling median of the same
        hour of day over ``spike_window`` days (intervals for a daily series).
    clipping_min_repeats, clipping_min_ratio
        The series maximum occurring this often (or more), and at least
        ``clipping_min_ratio`` × the meter's median positive value, marks clipping.
    max_offset_s
        Clock offsets up to this many seconds from the interval grid are jitter.
    register_factor, register_min_step
        Plausible register step: ``max(register_min_step, register_factor × p95)`` of
        the device's positive steps; a negative step that becomes plausible with the
        modulus added is a rollover.
    sum_rel_tol, sum_abs_tol
        Sum check tolerance: ``|a − b| ≤ sum_abs_tol + sum_rel_tol × max(|a|, |b|)``.
    corrector_rel_tol, corrector_abs_tol
        Corrector cross-check tolerance on V_std, relative and absolute (m³).
    std_temperature_c, std_pressure_kpa
        Standard conditions when the metering point names none (GOST 2939).
    pressure_kpa, temperature_c
        Plausible (min, max) absolute gas pressure (kPa) and gas temperature (°C).
    """

    every: str = "1h"
    zero_run_min: int = 24
    cold_c: float = 8.0
    frozen_min: int = 6
    frozen_min_value: float = 0.0
    spike_ratio: float = 4.0
    spike_z: float = 8.0
    spike_min_excess: float = 0.5
    spike_window: int = 15
    spike_two_sided: bool = False
    clipping_min_repeats: int = 3
    clipping_min_ratio: float = 5.0
    max_offset_s: float = 60.0
    register_factor: float = 20.0
    register_min_step: float = 1.0
    sum_rel_tol: float = 0.01
    sum_abs_tol: float = 0.01
    corrector_rel_tol: float = 0.02
    corrector_abs_tol: float = 0.002
    std_temperature_c: float = 20.0
    std_pressure_kpa: float = 101.325
    pressure_kpa: tuple[float, float] = (80.0, 1_300.0)
    temperature_c: tuple[float, float] = (-40.0, 60.0)

    def __post_init__(self) -> None:
        positive = ("zero_run_min", "frozen_min", "spike_window", "clipping_min_repeats")
        for name in positive:
            if int(getattr(self, name)) < 1:
                raise AnalyticsError(f"VeeRules.{name} must be at least 1, got {getattr(self, name)}")
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, float) and value < 0 and f.name not in ("cold_c",):
                raise AnalyticsError(f"VeeRules.{f.name} must not be negative, got {value}")
        for name in ("pressure_kpa", "temperature_c"):
            lo, hi = getattr(self, name)
            if lo >= hi:
                raise AnalyticsError(f"VeeRules.{name} must be (min, max) with min < max, got {(lo, hi)}")
        self.step  # noqa: B018 - validates ``every``

    @property
    def step(self) -> dt.timedelta:
        """``every`` as a timedelta."""
        try:
            return _parse_every(self.every)
        except ValueError:
            raise AnalyticsError(f"VeeRules.every must be '1h' or '1d', got {self.every!r}") from None


def _parse_every(every: str) -> dt.timedelta:
    if every in ("1h", "h", "hour"):
        return dt.timedelta(hours=1)
    if every in ("1d", "d", "day"):
        return dt.timedelta(days=1)
    raise ValueError(every)


def _interval(every: str) -> str:
    """The Polars interval string of ``every``."""
    return "1h" if _parse_every(every) == dt.timedelta(hours=1) else "1d"


def empty_findings() -> pl.DataFrame:
    """An empty findings frame."""
    return pl.DataFrame(schema=FINDINGS_SCHEMA)


# --- the grid: every metering point's intervals in one sorted frame ----------------------
#
# Why the machinery below: at 100 k meters × 1 year (876 M rows) the rules must run at
# several M rows/s.  Joining and grouping on (String meter_id, ts) keys, sorting the
# frame again for every rule and computing run lengths with ``over`` cost more than the
# rules themselves.  So the series is sorted once (skipped when it already is, as
# ``Store.read`` returns it), each meter gets an integer code and a contiguous block of
# rows (row = first row of the meter + (ts − first ts) / interval), absent intervals
# are filled by one ``gather``, and other inputs (temperature, expected values,
# registers, flags) are placed on the grid by that arithmetic instead of joins.  Runs
# are found with numpy on boolean arrays; only the few flagged rows are gathered and
# grouped into findings.

_DAY_US: Final = 86_400_000_000
_HOUR_US: Final = 3_600_000_000
_CHUNK: Final = 1 << 20  # rows per chunk of the rolling-median window matrix (15 × 8 MB)


def _step_us(every: str) -> int:
    return int(_parse_every(every).total_seconds()) * 1_000_000


@dataclass(frozen=True)
class _Grid:
    """Every meter's complete interval grid, sorted by ``(_m, ts)``.

    ``frame`` has ``_m`` (UInt32 meter code: index into ``names``), ``ts``, the series'
    other columns and ``present``; meter ``c`` owns rows ``offset[c] … offset[c + 1] − 1``
    whose ``ts`` is ``lo[c] + k × step_us`` (µs since the epoch, UTC).
    """

    frame: pl.DataFrame
    names: pl.Series
    offset: np.ndarray
    lo: np.ndarray
    step_us: int

    @property
    def meters(self) -> int:
        return int(self.names.len())

    @property
    def counts(self) -> np.ndarray:
        return np.diff(self.offset)

    def codes(self) -> np.ndarray:
        """Meter code of every row (int64)."""
        return np.repeat(np.arange(self.meters, dtype=np.int64), self.counts)

    def with_frame(self, frame: pl.DataFrame) -> _Grid:
        return _Grid(frame, self.names, self.offset, self.lo, self.step_us)

    def public(self) -> pl.DataFrame:
        """The frame with ``meter_id`` instead of ``_m`` (the :func:`complete_grid` layout)."""
        return self.frame.select(
            self.names.gather(self.frame.get_column("_m")).alias("meter_id"), pl.all().exclude("_m")
        )

    def instants(self, meter_id: pl.Series, ts: pl.Series, *, extra: int = 0) -> np.ndarray:
        """Row of each ``(meter_id, ts)`` on the grid, −1 where it is not on it.

        With ``extra = 1`` the instant just after a meter's last interval is on the grid
        too (row index space of :meth:`instant_space`: ``row + meter code``).
        """
        code = _lookup_codes(meter_id, self.names)
        ok = code >= 0
        safe = np.where(ok, code, 0)
        rel = _ts_us(ts) - self.lo[safe]
        k = rel // self.step_us
        ok &= (rel % self.step_us == 0) & (k >= 0) & (k < self.counts[safe] + extra)
        base = self.offset[safe] + (safe if extra else 0)
        return np.where(ok, base + k, -1)


def _ts_us(ts: pl.Series) -> np.ndarray:
    """µs since the epoch of a UTC datetime series (nulls → int64 min)."""
    dtype = ts.dtype
    if not isinstance(dtype, pl.Datetime) or dtype.time_unit != "us" or dtype.time_zone != "UTC":
        ts = ts.dt.convert_time_zone("UTC").dt.cast_time_unit("us")
    return ts.to_physical().fill_null(np.iinfo(np.int64).min).to_numpy()


def _from_us(values: np.ndarray, name: str = "ts") -> pl.Series:
    return pl.Series(name, values, dtype=pl.Int64).cast(UTC_TS)


def _lookup_codes(col: pl.Series, names: pl.Series) -> np.ndarray:
    """Index of each value of ``col`` in ``names`` (−1 if absent), one join per run of equal values.

    Frames read from the store are sorted by meter, so a 17 M-row column has a few
    thousand runs and the string join stays tiny.
    """
    n = col.len()
    if n == 0:
        return np.empty(0, dtype=np.int64)
    brk = (col != col.shift(1)).fill_null(True).to_numpy()
    brk[0] = True
    starts = np.flatnonzero(brk)
    lut = pl.DataFrame({"_key": names.cast(pl.String), "_code": np.arange(names.len(), dtype=np.int64)})
    first = pl.DataFrame({"_key": col.gather(starts).cast(pl.String)})
    run_code = (
        first.join(lut, on="_key", how="left", maintain_order="left").get_column("_code").fill_null(-1).to_numpy()
    )
    return np.repeat(run_code, np.diff(np.append(starts, n)))


def _sorted_unique(frame: pl.DataFrame, key: str) -> bool:
    """Whether ``frame`` is strictly increasing in ``(key, ts)`` (sorted, no repeats)."""
    k, t = pl.col(key), pl.col("ts")
    ok = (k > k.shift(1)) | ((k == k.shift(1)) & (t > t.shift(1)))
    return bool(frame.select(ok.fill_null(True).all()).item())


def _sort_first_wins(frame: pl.DataFrame, key: str) -> pl.DataFrame:
    """Sorted by ``(key, ts)``; of repeated ``(key, ts)`` rows the first delivered stays."""
    if frame.height < 2 or _sorted_unique(frame, key):
        return frame
    data = frame.sort(key, "ts", maintain_order=True)
    repeat = (pl.col(key) == pl.col(key).shift(1)) & (pl.col("ts") == pl.col("ts").shift(1))
    return data.filter(~repeat.fill_null(False))


def _build_grid(
    frame: pl.DataFrame,
    *,
    every: str,
    start: dt.datetime | None = None,
    end: dt.datetime | None = None,
) -> _Grid:
    """The complete grid of a long frame (see :func:`complete_grid`)."""
    step = _step_us(every)
    data = frame.filter(pl.col("meter_id").is_not_null() & pl.col("ts").is_not_null())
    data = data.with_columns(pl.col("ts").dt.convert_time_zone("UTC").dt.cast_time_unit("us"))
    data = _sort_first_wins(data, "meter_id")
    n = data.height
    mid = data.get_column("meter_id")
    brk = (mid != mid.shift(1)).fill_null(True).to_numpy() if n else np.empty(0, dtype=bool)
    if n:
        brk[0] = True
    starts = np.flatnonzero(brk)
    names = mid.gather(starts).cast(pl.String)
    ts = _ts_us(data.get_column("ts"))
    first = ts[starts]
    last = ts[np.append(starts[1:], n) - 1] if n else first
    lo = np.full(first.shape, _ts_us(pl.Series([start]).cast(UTC_TS))[0]) if start is not None else first
    hi = np.full(first.shape, _ts_us(pl.Series([end]).cast(UTC_TS))[0]) if end is not None else last + step
    keep = lo < hi
    run_code = np.cumsum(keep) - 1
    run_code[~keep] = -1
    names, lo, hi = names.filter(pl.Series(keep)), lo[keep], hi[keep]
    counts = (hi - lo + step - 1) // step
    offset = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    total = int(offset[-1])
    code = np.repeat(run_code, np.diff(np.append(starts, n)))
    safe = np.where(code >= 0, code, 0)
    rel = ts - lo[safe] if lo.size else np.zeros(n, dtype=np.int64)
    k = rel // step
    ok = (code >= 0) & (rel >= 0) & (rel % step == 0) & (k < counts[safe] if lo.size else False)
    pos = offset[safe] + k
    m = np.repeat(np.arange(lo.size, dtype=np.uint32), counts)
    rest = data.drop("meter_id", "ts")
    had = "present" in rest.columns  # a grid made earlier: keep what it says is absent
    if total == n and bool(ok.all()):
        body = rest  # nothing absent: the sorted rows are the grid
        present = rest.get_column("present") if had else pl.repeat(True, total, eager=True)
        grid_ts = data.get_column("ts")
    else:
        src = np.full(total, -1, dtype=np.int64)
        src[pos[ok]] = np.flatnonzero(ok)
        idx = _null_index(src)  # −1 → null: an absent interval
        body = rest.select(pl.all().gather(idx)) if rest.width else pl.DataFrame(height=total)
        present = body.get_column("present").fill_null(False) if had else pl.Series(src >= 0)
        within = np.arange(total, dtype=np.int64) - np.repeat(offset[:-1], counts)
        grid_ts = _from_us(np.repeat(lo, counts) + within * step)
    body = body.drop("present", strict=False)
    out = pl.DataFrame([pl.Series("_m", m), grid_ts.alias("ts")]).hstack(body).with_columns(
        present.alias("present")
    )
    return _Grid(out, names, offset, lo.astype(np.int64), step)


def _grid_of(grid: pl.DataFrame, every: str) -> _Grid:
    """A :class:`_Grid` over a frame that already is a complete grid (:func:`complete_grid`)."""
    if "present" not in grid.columns:
        grid = grid.with_columns(pl.lit(True).alias("present"))
    return _build_grid(grid, every=every)


def complete_grid(
    frame: pl.DataFrame,
    *,
    every: str = "1h",
    start: dt.datetime | None = None,
    end: dt.datetime | None = None,
) -> pl.DataFrame:
    """The series on a complete interval grid, sorted by ``(meter_id, ts)``.

    Each metering point gets every interval from ``start`` (default: its first interval)
    to ``end`` (exclusive; default: after its last).  Absent intervals come back as rows
    with null values and ``present = False``; existing rows have ``present = True``.
    Duplicated ``(meter_id, ts)`` rows keep the first (see :func:`check_clock`); rows
    off the interval grid are dropped.
    """
    if frame.height == 0:
        return frame.with_columns(pl.lit(True).alias("present")).clear()
    return _build_grid(frame.drop("present", strict=False), every=every, start=start, end=end).public()


def _place(g: _Grid, frame: pl.DataFrame, value: str, alias: str) -> pl.Series:
    """``frame[value]`` placed on the grid rows by ``(meter_id, ts)`` (first wins; null elsewhere)."""
    p, rows = _first_wins(g.instants(frame.get_column("meter_id"), frame.get_column("ts")))
    src = np.full(g.frame.height, -1, dtype=np.int64)
    src[p] = rows
    return _gather_nullable(frame.get_column(value), src).alias(alias)


def _first_wins(pos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct grid positions (``pos >= 0``) and the first input row that maps to each."""
    rows = np.flatnonzero(pos >= 0)
    p = pos[rows]
    if p.size > 1 and not bool((np.diff(p) > 0).all()):
        order = np.argsort(p, kind="stable")
        p, rows = p[order], rows[order]
        first = np.concatenate([[True], np.diff(p) != 0])
        p, rows = p[first], rows[first]
    return p, rows


def _null_index(src: np.ndarray) -> pl.Series:
    """Row indices for ``gather`` with null where ``src < 0``."""
    s = pl.Series("_i", src)
    return pl.select(pl.when(pl.lit(s) >= 0).then(pl.lit(s)).cast(pl.UInt32)).to_series()


def _gather_nullable(values: pl.Series, src: np.ndarray) -> pl.Series:
    """``values[src]`` with null where ``src < 0``."""
    return values.gather(_null_index(src))


def _run_starts(codes: np.ndarray, brk: np.ndarray) -> np.ndarray:
    """Run starts given "value changed" breaks; a new meter always starts a run."""
    b = brk.copy()
    if b.size:
        b[0] = True
        b[1:] |= codes[1:] != codes[:-1]
    return np.flatnonzero(b)


def _run_lengths(starts: np.ndarray, n: int) -> np.ndarray:
    return np.diff(np.append(starts, n))


def _flag_runs(codes: np.ndarray, flag: np.ndarray, *, min_len: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Rows where ``flag`` holds and the run id of each (runs end at a meter change)."""
    idx = np.flatnonzero(flag)
    if idx.size == 0:
        return idx, idx
    brk = np.ones(idx.size, dtype=bool)
    brk[1:] = (np.diff(idx) != 1) | (codes[idx[1:]] != codes[idx[:-1]])
    run = np.cumsum(brk) - 1
    if min_len > 1:
        keep = np.bincount(run)[run] >= min_len
        idx, run = idx[keep], run[keep]
    return idx, run


def _collapse(
    g: _Grid,
    rows: pl.DataFrame,
    rule: str,
    *,
    value: pl.Expr | None = None,
    expected: pl.Expr | None = None,
    detail: pl.Expr | None = None,
) -> pl.DataFrame:
    """One finding per ``_run`` of ``rows`` (flagged grid rows with ``_m``, ``ts``, ``_run``)."""
    info = RULES[rule]
    if rows.height == 0:
        return empty_findings()
    step = dt.timedelta(microseconds=g.step_us)
    out = rows.group_by("_run", maintain_order=True).agg(
        pl.col("_m").first(),
        pl.col("ts").min().alias("ts"),
        (pl.col("ts").max() + step).alias("ts_end"),
        pl.len().cast(pl.Int32).alias("intervals"),
        (value if value is not None else pl.lit(None, dtype=pl.Float64)).alias("value"),
        (expected if expected is not None else pl.lit(None, dtype=pl.Float64)).alias("expected"),
        (detail if detail is not None else pl.lit("", dtype=pl.String)).alias("detail"),
    )
    return out.select(
        g.names.gather(out.get_column("_m")).alias("meter_id"),
        pl.lit(rule).alias("rule"),
        "ts",
        "ts_end",
        "intervals",
        pl.lit(info.quality).alias("quality"),
        pl.lit(info.severity).alias("severity"),
        pl.col("value").cast(pl.Float64),
        pl.col("expected").cast(pl.Float64),
        pl.col("detail").cast(pl.String),
    )


def _flagged_rows(g: _Grid, flag: np.ndarray, columns: list[str], *, min_len: int = 1,
                  codes: np.ndarray | None = None) -> pl.DataFrame:
    """The grid rows where ``flag`` holds with their run id (``_run``) and ``columns``."""
    idx, run = _flag_runs(g.codes() if codes is None else codes, flag, min_len=min_len)
    cols = list(dict.fromkeys(["_m", "ts", *columns]))
    return g.frame.select(cols)[pl.Series(idx)].with_columns(pl.Series("_run", run))


def _fmt(expr: pl.Expr, digits: int = 3) -> pl.Expr:
    return expr.round(digits).cast(pl.String)


def _np_bool(frame: pl.DataFrame, expr: pl.Expr) -> np.ndarray:
    return frame.select(expr.fill_null(False)).to_series().to_numpy()


def _np_float(frame: pl.DataFrame, expr: pl.Expr) -> np.ndarray:
    return frame.select(expr.cast(pl.Float64)).to_series().to_numpy()


# --- consumption rules ------------------------------------------------------------------


def _judged(grid: pl.DataFrame) -> pl.Expr:
    """Rows a rule judges: present, valued, and not already estimated or edited by VEE."""
    quality = pl.col("quality") if "quality" in grid.columns else pl.lit("valid")
    return pl.col("volume_m3").is_not_null() & ~quality.is_in(["estimated", "edited"]).fill_null(False)


def _check_gaps(g: _Grid, rules: VeeRules) -> pl.DataFrame:
    fr = g.frame
    quality = pl.col("quality") if "quality" in fr.columns else pl.lit(None, pl.String)
    flag = _np_bool(fr, pl.col("volume_m3").is_null() & ~quality.is_in(["edited"]).fill_null(False))
    rows = _flagged_rows(g, flag, ["present"])
    detail = pl.format("{} absent, {} null", (~pl.col("present")).sum(), pl.col("present").sum())
    return _collapse(g, rows, "gap", detail=detail)


def check_gaps(grid: pl.DataFrame, *, rules: VeeRules = VeeRules()) -> pl.DataFrame:
    """Runs of intervals that are absent or have a null ``volume_m3`` (quality ``missing``).

    Parameters
    ----------
    grid
        :func:`complete_grid` output with ``volume_m3`` (and optionally ``quality``).
    """
    if grid.height == 0:
        return empty_findings()
    return _check_gaps(_grid_of(grid, rules.every), rules)


def _check_zero_and_frozen(g: _Grid, rules: VeeRules) -> tuple[pl.DataFrame, pl.DataFrame]:
    fr = g.frame
    codes = g.codes()
    v = _np_float(fr, pl.when(_judged(fr)).then(pl.col("volume_m3")))
    has = ~np.isnan(v)
    brk = ~has
    brk[1:] |= ~has[:-1] | (v[1:] != v[:-1])
    starts = _run_starts(codes, brk)
    lengths = _run_lengths(starts, v.size)
    rv = v[starts]
    with np.errstate(invalid="ignore"):
        zero_run = (rv == 0) & (lengths >= rules.zero_run_min)
        frozen_run = has[starts] & (rv != 0) & (np.abs(rv) > rules.frozen_min_value) & (lengths >= rules.frozen_min)
    run_of = np.repeat(np.arange(starts.size), lengths)
    out = []
    # Zero runs: judged against the mean outdoor temperature of the run.
    zero_rows = zero_run[run_of]
    temp = "outdoor_c" in fr.columns
    rows = _flagged_rows(g, zero_rows, ["outdoor_c"] if temp else [], codes=codes)
    rows = rows.with_columns(
        pl.Series("_vrun", run_of[np.flatnonzero(zero_rows)]),
        (pl.col("outdoor_c") if temp else pl.lit(None, pl.Float64)).alias("_t"),
    )
    rows = rows.with_columns(pl.col("_t").mean().over("_vrun").alias("_tmean")).filter(
        (pl.col("_tmean") < rules.cold_c).fill_null(False)
    )
    out.append(_collapse(
        g, rows, "zero_run", value=pl.lit(0.0), expected=pl.col("_tmean").first(),
        detail=pl.format("zero use at mean outdoor {} °C (< {} °C)", _fmt(pl.col("_tmean").first(), 1),
                         pl.lit(rules.cold_c)),
    ))
    frozen_rows = frozen_run[run_of]
    rows = _flagged_rows(g, frozen_rows, [], codes=codes).with_columns(
        pl.Series("_v", v[np.flatnonzero(frozen_rows)])
    )
    out.append(_collapse(
        g, rows, "frozen", value=pl.col("_v").first(),
        detail=pl.format("value {} repeated", _fmt(pl.col("_v").first())),
    ))
    return out[0], out[1]


def check_zero_and_frozen(
    grid: pl.DataFrame, *, rules: VeeRules = VeeRules()
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Zero runs judged against temperature, and frozen (identical non-zero) values.

    Both look at runs of identical values.  A run of zeros at least
    ``rules.zero_run_min`` long is suspect when its mean outdoor temperature
    (``outdoor_c`` column, °C) is below ``rules.cold_c``.  A run of one non-zero value
    (above ``rules.frozen_min_value``) at least ``rules.frozen_min`` long is frozen.

    Returns
    -------
    zero_runs, frozen
        Two findings frames.
    """
    if grid.height == 0:
        return empty_findings(), empty_findings()
    return _check_zero_and_frozen(_grid_of(grid, rules.every), rules)


def _same_hour_rolling_median(g: _Grid, values: np.ndarray, rules: VeeRules) -> np.ndarray:
    """Centred rolling median of the same hour of day over ``spike_window`` days.

    Equal to ``rolling_median(2h + 1, min_samples=h + 1, center=True).over(meter, hour)``
    on a complete grid (h = ``spike_window // 2``): the same hour of one meter is every
    24th row (every row for a daily series), so each window is a strided view of the
    values padded with NaN between meters; the 15-wide rows are copied in chunks and
    sorted in C, several times faster than Polars' rolling median at this window.  Even
    counts take ``lo + 0.5 × (hi − lo)`` as Polars does.
    """
    half = max(1, rules.spike_window // 2)
    width = 2 * half + 1
    stride = 24 if g.step_us == _HOUR_US else 1
    n, meters = values.size, g.meters
    pad = half * stride
    shift = pad * (2 * np.arange(meters, dtype=np.int64) + 1)
    ppos = np.arange(n, dtype=np.int64) + np.repeat(shift, g.counts)
    padded = np.full(n + 2 * pad * meters, np.nan)
    padded[ppos] = values
    starts = padded.size - 2 * pad  # window start p covers p, p + stride, …, p + 2·pad
    windows = np.lib.stride_tricks.sliding_window_view(padded, 2 * pad + 1)[:, ::stride]
    valid = ~np.isnan(padded)
    count = np.zeros(starts, dtype=np.int16)
    for j in range(width):
        count += valid[j * stride : j * stride + starts]
    med = np.full(starts, np.nan)
    for c0 in range(0, starts, _CHUNK):
        c1 = min(starts, c0 + _CHUNK)
        w = np.array(windows[c0:c1])  # contiguous copy, then sorted in place (NaN last)
        w.sort(axis=1)
        k = count[c0:c1].astype(np.int64)
        r = np.arange(c1 - c0)
        a = w[r, np.maximum((k - 1) // 2, 0)]
        b = w[r, np.minimum(k // 2, width - 1)]
        m = np.where((k % 2) == 1, a, 0.5 * (b - a) + a)
        m[k < half + 1] = np.nan
        med[c0:c1] = m
    out: np.ndarray = med[ppos - pad]
    return out


def _per_meter(g: _Grid, values: pl.Expr, how: str) -> np.ndarray:
    """A per-meter aggregate (``median``, ``max``, ``sum``) of ``values``, one entry per code (NaN if none)."""
    got = g.frame.select(pl.col("_m").set_sorted(), values.alias("_v")).group_by("_m", maintain_order=True).agg(
        getattr(pl.col("_v"), how)().alias("_a")
    )
    out = np.full(g.meters, np.nan)
    out[got.get_column("_m").to_numpy().astype(np.int64)] = got.get_column("_a").cast(pl.Float64).to_numpy()
    return out


def _typical(g: _Grid) -> np.ndarray:
    """Each meter's median positive judged value (NaN if none)."""
    fr = g.frame
    return _per_meter(g, pl.when(_judged(fr) & (pl.col("volume_m3") > 0)).then(pl.col("volume_m3")), "median")


def _check_spikes(g: _Grid, rules: VeeRules, typical_m: np.ndarray | None = None) -> pl.DataFrame:
    fr = g.frame
    codes = g.codes()
    typical_m = _typical(g) if typical_m is None else typical_m
    vol = _np_float(fr, pl.col("volume_m3"))
    judged = _np_bool(fr, _judged(fr))
    # Long zero runs (outages filled with 0, shutdowns) would drag the baseline to 0 and
    # make every first hour of use afterwards a "spike": they do not count towards it.
    z = vol == 0
    brk = np.zeros(z.size, dtype=bool)
    brk[1:] = z[1:] != z[:-1]
    starts = _run_starts(codes, brk)
    lengths = _run_lengths(starts, z.size)
    in_zero_run = z & np.repeat(lengths >= rules.zero_run_min, lengths)
    base = _same_hour_rolling_median(g, np.where(judged & ~in_zero_run, vol, np.nan), rules)
    base_s = pl.Series("_base", base, nan_to_null=True)
    exp = pl.col("expected_m3").fill_null(pl.col("_base")) if "expected_m3" in fr.columns else pl.col("_base")
    jd = pl.col("_judged")
    # Never expect less than the meter's median positive value: the first use after a
    # weekend or summer shutdown is not a spike.
    typical = pl.Series("_typ", typical_m[codes], nan_to_null=True)
    cols = ["_m", "ts", "volume_m3", *(["expected_m3"] if "expected_m3" in fr.columns else [])]
    h = fr.select(cols).with_columns(base_s, pl.Series("_judged", judged), typical)
    h = h.with_columns(pl.max_horizontal(exp, pl.col("_typ")).alias("_exp"))
    resid = pl.col("volume_m3") - pl.col("_exp")
    scale = _per_meter(g.with_frame(h), pl.when(jd).then(resid).abs(), "median") * 1.4826
    h = h.with_columns(pl.Series("_scale", scale[codes], nan_to_null=True))
    spike = (
        jd
        & (pl.col("volume_m3") > rules.spike_ratio * pl.col("_exp"))
        & (resid > rules.spike_z * pl.col("_scale"))
        & (resid >= rules.spike_min_excess)
    )
    if rules.spike_two_sided:
        dip = (
            jd
            & (pl.col("volume_m3") * rules.spike_ratio < pl.col("_exp"))
            & (-resid > rules.spike_z * pl.col("_scale"))
            & (-resid >= rules.spike_min_excess)
        )
        spike = spike | dip
    flag = _np_bool(h, spike)
    idx, run = _flag_runs(codes, flag)
    rows = h[pl.Series(idx)].with_columns(pl.Series("_run", run))
    return _collapse(
        g, rows, "spike",
        value=pl.col("volume_m3").max(),
        expected=pl.col("_exp").mean(),
        detail=pl.format("value {} … {} against expected {}", _fmt(pl.col("volume_m3").min()),
                         _fmt(pl.col("volume_m3").max()), _fmt(pl.col("_exp").mean())),
    )


def expected_baseline(grid: pl.DataFrame, *, rules: VeeRules = VeeRules()) -> pl.Series:
    """Robust expected value per interval: centred rolling median of the same hour of day.

    Over ``rules.spike_window`` days (a daily series: intervals); needs at least half
    of them.  Values already estimated or edited do not count.  ``grid`` is a complete
    grid (:func:`complete_grid`); the result is aligned with its rows.
    """
    if grid.height == 0:
        return pl.Series("expected_m3", [], dtype=pl.Float64)
    g = _grid_of(grid, rules.every)
    vals = _np_float(g.frame, pl.when(_judged(g.frame)).then(pl.col("volume_m3")))
    return pl.Series("expected_m3", _same_hour_rolling_median(g, vals, rules), nan_to_null=True)


def check_spikes(grid: pl.DataFrame, *, rules: VeeRules = VeeRules()) -> pl.DataFrame:
    """Values far above the expected value.

    Uses the ``expected_m3`` column when the grid has one (e.g. a forecast backcast),
    else :func:`expected_baseline` computed without long zero runs; the expected value is
    never below the meter's median positive value (so the first use after a shutdown is
    not a spike).  See :class:`VeeRules` for the three conditions.
    """
    if grid.height == 0:
        return empty_findings()
    return _check_spikes(_grid_of(grid, rules.every), rules)


def _check_negative(g: _Grid, rules: VeeRules) -> pl.DataFrame:
    fr = g.frame
    flag = _np_bool(fr, _judged(fr) & (pl.col("volume_m3") < 0))
    rows = _flagged_rows(g, flag, ["volume_m3"])
    return _collapse(g, rows, "negative", value=pl.col("volume_m3").min(),
                     detail=pl.format("minimum {}", _fmt(pl.col("volume_m3").min())))


def check_negative(grid: pl.DataFrame, *, rules: VeeRules = VeeRules()) -> pl.DataFrame:
    """Negative consumption."""
    if grid.height == 0:
        return empty_findings()
    return _check_negative(_grid_of(grid, rules.every), rules)


def _check_clipping(g: _Grid, rules: VeeRules, typical_m: np.ndarray | None = None) -> pl.DataFrame:
    fr = g.frame
    codes = g.codes()
    jd = _judged(fr)
    mx = _per_meter(g, pl.when(jd).then(pl.col("volume_m3")), "max")
    h = fr.select("_m", "ts", "volume_m3", jd.alias("_jd")).with_columns(
        pl.Series("_max", mx[codes], nan_to_null=True)
    )
    at_max = (pl.col("volume_m3") == pl.col("_max")) & (pl.col("_max") > 0) & pl.col("_jd")
    at = _np_bool(h, at_max)
    # A ceiling far above the typical level; a meter that only ever reads 0.1–0.2 repeats
    # its maximum because of the register's resolution, not because of clipping.
    typical_m = _typical(g) if typical_m is None else typical_m
    repeats = np.bincount(codes[at], minlength=g.meters)
    with np.errstate(invalid="ignore"):
        clip_m = (repeats >= rules.clipping_min_repeats) & (mx >= rules.clipping_min_ratio * typical_m)
    flag = at & clip_m[codes]
    h = h.with_columns(pl.Series("_at", at))
    idx, run = _flag_runs(codes, flag)
    rows = h[pl.Series(idx)].with_columns(pl.Series("_run", run))
    return _collapse(
        g, rows, "clipping", value=pl.col("_max").first(),
        detail=pl.format("at the series maximum {} ({} times in the series)",
                         _fmt(pl.col("_max").first()), pl.col("_at").sum()),
    )


def check_clipping(grid: pl.DataFrame, *, rules: VeeRules = VeeRules()) -> pl.DataFrame:
    """Intervals at the series maximum when it repeats ``clipping_min_repeats``+ times.

    A processing chain that caps values (e.g. at 10× the mean) leaves a flat ceiling the
    real series never touches that often.
    """
    if grid.height == 0:
        return empty_findings()
    return _check_clipping(_grid_of(grid, rules.every), rules)


def _check_corrector(g: _Grid, meters: pl.DataFrame | None, rules: VeeRules) -> pl.DataFrame:
    need = ("volume_work_m3", "pressure_kpa", "temperature_c")
    fr = g.frame
    if any(c not in fr.columns for c in need):
        return empty_findings()
    std_t = pl.lit(None, pl.Float64)
    std_p = pl.lit(None, pl.Float64)
    if meters is not None and meters.height:
        per = pl.DataFrame({"meter_id": g.names}).join(
            meters.select("meter_id", "std_temperature_c", "std_pressure_kpa").unique("meter_id", keep="first"),
            on="meter_id", how="left", maintain_order="left",
        )
        codes = fr.get_column("_m")
        std_t = pl.lit(per.get_column("std_temperature_c").cast(pl.Float64).gather(codes))
        std_p = pl.lit(per.get_column("std_pressure_kpa").cast(pl.Float64).gather(codes))
    t_std = std_t.fill_null(rules.std_temperature_c) + 273.15
    p_std = std_p.fill_null(rules.std_pressure_kpa)
    calc = (
        pl.col("volume_work_m3") * pl.col("pressure_kpa") / p_std * t_std / (pl.col("temperature_c") + 273.15)
    )
    h = fr.select("_m", "ts", "volume_m3", calc.alias("_calc"), _judged(fr).alias("_jd"))
    diff = (pl.col("volume_m3") - pl.col("_calc")).abs()
    bad = (
        pl.col("_jd")
        & pl.col("_calc").is_not_null()
        & (diff > rules.corrector_abs_tol + rules.corrector_rel_tol * pl.col("_calc").abs())
    )
    idx, run = _flag_runs(g.codes(), _np_bool(h, bad))
    rows = h[pl.Series(idx)].with_columns(pl.Series("_run", run))
    rel = ((pl.col("volume_m3").sum() / pl.col("_calc").sum() - 1) * 100)
    return _collapse(
        g, rows, "corrector_mismatch",
        value=pl.col("volume_m3").sum(), expected=pl.col("_calc").sum(),
        detail=pl.format("V_std {} vs V_work·P/P_std·T_std/T {} ({} %)", _fmt(pl.col("volume_m3").sum()),
                         _fmt(pl.col("_calc").sum()), _fmt(rel, 2)),
    )


def check_corrector(
    grid: pl.DataFrame,
    *,
    meters: pl.DataFrame | None = None,
    rules: VeeRules = VeeRules(),
) -> pl.DataFrame:
    """Corrector cross-check: ``V_std ≈ V_work × P/P_std × T_std/T`` (T in kelvin).

    Parameters
    ----------
    grid
        Needs ``volume_m3``, ``volume_work_m3``, ``pressure_kpa`` (absolute) and
        ``temperature_c`` (gas); rows lacking any of them are not judged.
    meters
        Optional ``meter_id``, ``std_temperature_c``, ``std_pressure_kpa`` (the metering
        point's standard conditions); missing ones use ``rules``.
    """
    if grid.height == 0:
        return empty_findings()
    return _check_corrector(_grid_of(grid, rules.every), meters, rules)


def _check_ranges(g: _Grid, rules: VeeRules) -> pl.DataFrame:
    out = [empty_findings()]
    fr = g.frame
    for col, rule, (lo, hi) in (
        ("pressure_kpa", "pressure_range", rules.pressure_kpa),
        ("temperature_c", "temperature_range", rules.temperature_c),
    ):
        if col not in fr.columns:
            continue
        rows = _flagged_rows(g, _np_bool(fr, (pl.col(col) < lo) | (pl.col(col) > hi)), [col])
        above = pl.col(col).max() > hi
        out.append(
            _collapse(
                g, rows, rule,
                value=pl.when(above).then(pl.col(col).max()).otherwise(pl.col(col).min()),
                expected=pl.when(above).then(pl.lit(hi)).otherwise(pl.lit(lo)),
                detail=pl.format("{} from {} to {}, allowed {}–{}", pl.lit(col), _fmt(pl.col(col).min()),
                                 _fmt(pl.col(col).max()), pl.lit(lo), pl.lit(hi)),
            )
        )
    return pl.concat(out)


def check_ranges(grid: pl.DataFrame, *, rules: VeeRules = VeeRules()) -> pl.DataFrame:
    """Gas pressure (kPa, absolute) and gas temperature (°C) outside the plausible range."""
    if grid.height == 0:
        return empty_findings()
    return _check_ranges(_grid_of(grid, rules.every), rules)


# --- registers and raw deliveries ------------------------------------------------------


def _register_frame(registers: pl.DataFrame) -> pl.DataFrame:
    """Non-null register readings sorted by ``(meter_id, ts)``, first delivery of a repeat kept."""
    mod = (
        pl.col("counter_modulus_m3") if "counter_modulus_m3" in registers.columns
        else pl.lit(None, pl.Float64)
    )
    r = registers.select(
        "meter_id", pl.col("ts").dt.convert_time_zone("UTC").dt.cast_time_unit("us"),
        pl.col("register_m3").cast(pl.Float64), mod.cast(pl.Float64).alias("_mod"),
    ).filter(pl.col("register_m3").is_not_null())
    return _sort_first_wins(r, "meter_id")


def check_counter(registers: pl.DataFrame, *, rules: VeeRules = VeeRules()) -> pl.DataFrame:
    """Counter regression versus rollover on cumulative registers.

    Parameters
    ----------
    registers
        ``meter_id``, ``ts`` (UTC), ``register_m3`` (cumulative) and optionally
        ``counter_modulus_m3`` (null: never rolls over).

    Returns
    -------
    polars.DataFrame
        Findings: ``rollover`` (quality valid, info) where adding the modulus gives a
        plausible step, ``counter_regression`` (suspect) for any other backward step;
        a regression to near zero is reported as a possible meter replacement.
    """
    if registers.height == 0:
        return empty_findings()
    r = _register_frame(registers)
    same = pl.col("meter_id") == pl.col("meter_id").shift(1)
    d = pl.when(same).then(pl.col("register_m3") - pl.col("register_m3").shift(1))
    back_rows = np.flatnonzero(_np_bool(r, d < 0))
    if back_rows.size == 0:
        return empty_findings()
    # Only meters that went backwards need their plausible step (p95 of positive steps).
    meters = r.get_column("meter_id").gather(back_rows).unique()
    sub = r.filter(pl.col("meter_id").is_in(meters.implode()))
    sub = sub.with_columns(
        d.alias("_d"),
        pl.when(same).then(pl.col("register_m3").shift(1)).alias("_prev"),
        pl.when(same).then(pl.col("ts").shift(1)).alias("_prev_ts"),
    )
    p95 = sub.filter(pl.col("_d") > 0).group_by("meter_id").agg(pl.col("_d").quantile(0.95).alias("_p95"))
    back = sub.filter(pl.col("_d") < 0).join(p95, on="meter_id", how="left", maintain_order="left").with_columns(
        pl.max_horizontal(pl.lit(rules.register_min_step), pl.col("_p95") * rules.register_factor).alias("_lim")
    )
    wrapped = pl.col("_d") + pl.col("_mod")
    is_roll = pl.col("_mod").is_not_null() & (wrapped >= 0) & (wrapped <= pl.col("_lim"))
    back = back.with_columns(is_roll.fill_null(False).alias("_roll"))
    near_zero = pl.col("register_m3") <= pl.col("_lim")
    out = back.select(
        "meter_id",
        pl.when("_roll").then(pl.lit("rollover")).otherwise(pl.lit("counter_regression")).alias("rule"),
        pl.col("_prev_ts").alias("ts"),
        pl.col("ts").alias("ts_end"),
        pl.lit(1, pl.Int32).alias("intervals"),
        pl.when("_roll").then(pl.lit("valid")).otherwise(pl.lit("suspect")).alias("quality"),
        pl.when("_roll").then(pl.lit("info")).otherwise(pl.lit("critical")).alias("severity"),
        pl.col("register_m3").alias("value"),
        pl.col("_prev").alias("expected"),
        pl.when("_roll")
        .then(pl.format("register {} → {} wrapped at modulus {}; step {}", _fmt(pl.col("_prev")),
                        _fmt(pl.col("register_m3")), _fmt(pl.col("_mod")), _fmt(wrapped)))
        .when(near_zero)
        .then(pl.format("register {} → {}: reset to near zero (meter replaced?)", _fmt(pl.col("_prev")),
                        _fmt(pl.col("register_m3"))))
        .otherwise(pl.format("register went back {} → {}", _fmt(pl.col("_prev")),
                             _fmt(pl.col("register_m3"))))
        .alias("detail"),
    )
    return out.select(FINDINGS_SCHEMA.names()).cast(dict(FINDINGS_SCHEMA))  # type: ignore[arg-type]


def check_clock(
    deliveries: pl.DataFrame, *, rules: VeeRules = VeeRules()
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Clock shift and duplicated intervals in raw deliveries (before keying).

    Parameters
    ----------
    deliveries
        ``meter_id``, ``ts`` (UTC, as the device stamped it), a ``value`` column, and
        optionally ``received_at`` (server time of arrival, UTC).

    Returns
    -------
    clock_shift, duplicates
        ``clock_shift``: runs of consecutive deliveries whose ``ts`` is more than
        ``max_offset_s`` off the interval grid, or later than ``received_at`` by more
        than that (the device clock runs ahead).  ``duplicate_interval``: intervals
        delivered more than once (detail says whether the copies agree).
    """
    if deliveries.height == 0:
        return empty_findings(), empty_findings()
    step = rules.step
    tol_us = int(rules.max_offset_s * 1e6)
    d = deliveries
    if not (deliveries.height < 2 or _sorted_unique(deliveries, "meter_id")):
        d = deliveries.sort("meter_id", "ts", maintain_order=True)
    d = d.with_columns(pl.col("ts").dt.round(_interval(rules.every)).alias("_slot"))
    off = (pl.col("ts") - pl.col("_slot")).dt.total_microseconds()
    shift = off.abs() > tol_us
    if "received_at" in d.columns:
        ahead = (pl.col("ts") - pl.col("received_at")).dt.total_microseconds() > tol_us
        shift = shift | ahead.fill_null(False)
    flag = _np_bool(d, shift)
    idx = np.flatnonzero(flag)
    cast = dict(FINDINGS_SCHEMA)
    clock = empty_findings()
    if idx.size:
        # Runs of consecutive flagged deliveries of one meter.
        mid = d.get_column("meter_id").gather(idx)
        brk = np.ones(idx.size, dtype=bool)
        brk[1:] = (np.diff(idx) != 1) | (mid.slice(1) != mid.slice(0, idx.size - 1)).to_numpy()
        rows = d[pl.Series(idx)].with_columns(pl.Series("_run", np.cumsum(brk)), (off / 1e6).alias("_off_s"))
        clock = (
            rows.group_by("_run", maintain_order=True)
            .agg(
                pl.col("meter_id").first(),
                pl.col("_slot").min().alias("ts"),
                (pl.col("_slot").max() + step).alias("ts_end"),
                pl.len().cast(pl.Int32).alias("intervals"),
                pl.col("_off_s").max().alias("hi"),
                pl.col("_off_s").min().alias("lo"),
            )
            .select(
                "meter_id", pl.lit("clock_shift").alias("rule"), "ts", "ts_end", "intervals",
                pl.lit("suspect").alias("quality"), pl.lit("warning").alias("severity"),
                pl.when(pl.col("hi").abs() >= pl.col("lo").abs()).then("hi").otherwise("lo").alias("value"),
                pl.lit(0.0).alias("expected"),
                pl.format("clock offset {} s to {} s from the grid or the server clock",
                          _fmt(pl.col("lo"), 0), _fmt(pl.col("hi"), 0)).alias("detail"),
            )
            .cast(cast)  # type: ignore[arg-type]
        )
    # Deliveries of one slot are adjacent once sorted by (meter, ts): only the rows of a
    # repeated slot go into the group-by.
    same_prev = (pl.col("meter_id") == pl.col("meter_id").shift(1)) & (pl.col("_slot") == pl.col("_slot").shift(1))
    same_next = (pl.col("meter_id") == pl.col("meter_id").shift(-1)) & (pl.col("_slot") == pl.col("_slot").shift(-1))
    rep = np.flatnonzero(_np_bool(d, same_prev | same_next))
    if rep.size == 0:
        return clock, empty_findings()
    value = "value" if "value" in d.columns else "ts"
    dup = (
        d[pl.Series(rep)]
        .group_by("meter_id", "_slot")
        .agg(pl.len().alias("_n"), pl.col(value).n_unique().alias("_distinct"))
        .filter(pl.col("_n") > 1)
        .sort("meter_id", "_slot")
    )
    dup = dup.with_columns(
        (
            (pl.col("meter_id") != pl.col("meter_id").shift(1))
            | (pl.col("_slot") - pl.col("_slot").shift(1) != step)
        ).fill_null(True).cum_sum().alias("_run")
    )
    dups = (
        dup.group_by("_run", maintain_order=True)
        .agg(
            pl.col("meter_id").first(),
            pl.col("_slot").min().alias("ts"),
            (pl.col("_slot").max() + step).alias("ts_end"),
            pl.len().cast(pl.Int32).alias("intervals"),
            pl.col("_n").max().alias("copies"),
            (pl.col("_distinct") > 1).any().alias("conflict"),
        )
        .select(
            "meter_id", pl.lit("duplicate_interval").alias("rule"), "ts", "ts_end", "intervals",
            pl.lit("suspect").alias("quality"), pl.lit("warning").alias("severity"),
            pl.col("copies").cast(pl.Float64).alias("value"), pl.lit(1.0).alias("expected"),
            pl.when("conflict").then(pl.lit("up to {} copies with different values"))
            .otherwise(pl.lit("up to {} identical copies"))
            .str.replace("{}", pl.col("copies").cast(pl.String), literal=True).alias("detail"),
        )
    )
    return clock, dups.cast(cast)  # type: ignore[arg-type]


def _day_offsets(daily: pl.DataFrame | None) -> tuple[pl.Series, np.ndarray]:
    """Per meter of the daily archive: the offset of its day start from 00:00 UTC (µs).

    The day of a daily archive may start at any hour (a corrector's contract hour): the
    offset of each meter's first daily row sets its day boundaries.
    """
    if daily is None or daily.height == 0:
        return pl.Series("meter_id", [], dtype=pl.String), np.empty(0, dtype=np.int64)
    first = daily.group_by("meter_id", maintain_order=True).agg(pl.col("ts").first())
    ts = _ts_us(first.get_column("ts"))
    return first.get_column("meter_id").cast(pl.String), ts - (ts // _DAY_US) * _DAY_US


def _offsets_for(meter_id: pl.Series, names: pl.Series, offs: np.ndarray) -> np.ndarray:
    if names.len() == 0:
        return np.zeros(meter_id.len(), dtype=np.int64)
    code = _lookup_codes(meter_id, names)
    return np.where(code >= 0, offs[np.where(code >= 0, code, 0)], 0)


def _interior_estimated(g: _Grid) -> np.ndarray:
    """Instants (rows of :meth:`_Grid.instants` with ``extra=1``) inside a run of estimated intervals.

    A register reading there lies between two estimated intervals: the intervals were
    estimated because the data around it was judged wrong (a stuck register, a spike)
    or absent, and the estimates were scaled to the registers at the run's *ends*, so
    the sum check does not use it.
    """
    fr = g.frame
    out = np.zeros(fr.height + g.meters, dtype=bool)
    if "quality" not in fr.columns or fr.height == 0:
        return out
    est = _np_bool(fr, pl.col("quality") == "estimated")
    inner = np.zeros(fr.height, dtype=bool)
    inner[1:] = est[1:] & est[:-1]
    inner[g.offset[:-1][g.counts > 0]] = False  # a meter's first interval has no interval before it
    rows = np.flatnonzero(inner)
    out[rows + g.codes()[rows]] = True
    return out


def _check_sums(
    g: _Grid,
    *,
    daily: pl.DataFrame | None,
    registers: pl.DataFrame | None,
    rules: VeeRules,
) -> pl.DataFrame:
    off_names, offs = _day_offsets(daily)
    fr = g.frame
    codes = g.codes()
    ts = _ts_us(fr.get_column("ts"))
    off = _offsets_for(pl.Series(g.names), off_names, offs)[codes] if off_names.len() else np.zeros_like(ts)
    day = (ts - off) // _DAY_US * _DAY_US + off
    # One int64 key (meter, day) groups faster than two columns.
    key = codes * ((int(day.max() - day.min()) // _DAY_US + 2) if day.size else 1) + (day - day.min()) // _DAY_US \
        if day.size else day
    hsum = (
        fr.select("volume_m3", pl.Series("_k", key), pl.Series("_c", codes), _from_us(day, "day"))
        .group_by("_k")
        .agg(pl.col("_c").first(), pl.col("day").first(), pl.col("volume_m3").sum().alias("hourly"),
             pl.col("volume_m3").count().alias("_n"))
        .filter(pl.col("_n") == 24)
    )
    sums = hsum.select(g.names.gather(hsum.get_column("_c")).alias("meter_id"), "day", "hourly")
    if daily is not None and daily.height:
        dd = daily.select(pl.col("meter_id").cast(pl.String), pl.col("ts").dt.convert_time_zone("UTC")
                          .dt.cast_time_unit("us").alias("day"), pl.col("volume_m3").alias("daily"))
        sums = sums.join(dd, on=["meter_id", "day"], how="full", coalesce=True)
    else:
        sums = sums.with_columns(pl.lit(None, pl.Float64).alias("daily"))
    if registers is not None and registers.height:
        mod = (
            pl.col("counter_modulus_m3") if "counter_modulus_m3" in registers.columns
            else pl.lit(None, pl.Float64)
        )
        # Registers are read at (about) the full hour; a drifting clock is the clock rule's job.
        reg = registers.select(
            pl.col("meter_id").cast(pl.String),
            pl.col("ts").dt.convert_time_zone("UTC").dt.cast_time_unit("us").dt.round("1h"),
            "register_m3", mod.cast(pl.Float64).alias("_mod"),
        )
        rts = _ts_us(reg.get_column("ts"))
        roff = _offsets_for(reg.get_column("meter_id"), off_names, offs)
        at_day_start = (rts - roff) % _DAY_US == 0
        interior = _interior_estimated(g)
        if interior.any():
            inst = g.instants(reg.get_column("meter_id"), reg.get_column("ts"), extra=1)
            at_day_start &= ~((inst >= 0) & interior[np.where(inst >= 0, inst, 0)])
        mid = reg.filter(pl.Series(at_day_start)).with_columns(pl.col("ts").alias("day")).unique(
            subset=["meter_id", "day"], keep="first", maintain_order=True
        )
        nxt = mid.select("meter_id", (pl.col("day") - dt.timedelta(days=1)).alias("day"),
                         pl.col("register_m3").alias("_next"))
        cnt = mid.select("meter_id", "day", "register_m3", "_mod").join(nxt, on=["meter_id", "day"], how="inner")
        cnt = cnt.with_columns((pl.col("_next") - pl.col("register_m3")).alias("counter")).with_columns(
            pl.when(pl.col("counter") < 0).then(pl.col("counter") + pl.col("_mod"))
            .otherwise(pl.col("counter")).alias("counter")
        ).select("meter_id", "day", "counter")
        sums = sums.join(cnt, on=["meter_id", "day"], how="full", coalesce=True)
    else:
        sums = sums.with_columns(pl.lit(None, pl.Float64).alias("counter"))

    def differs(a: str, b: str) -> pl.Expr:
        tol = rules.sum_abs_tol + rules.sum_rel_tol * pl.max_horizontal(pl.col(a).abs(), pl.col(b).abs())
        return ((pl.col(a) - pl.col(b)).abs() > tol).fill_null(False)

    bad = sums.filter(differs("hourly", "daily") | differs("hourly", "counter") | differs("daily", "counter"))
    if bad.height == 0:
        return empty_findings()

    def show(c: str) -> pl.Expr:
        return pl.when(pl.col(c).is_null()).then(pl.lit("–")).otherwise(_fmt(pl.col(c)))

    out = bad.select(
        "meter_id",
        pl.lit("sum_mismatch").alias("rule"),
        pl.col("day").alias("ts"),
        (pl.col("day") + dt.timedelta(days=1)).alias("ts_end"),
        pl.lit(24, pl.Int32).alias("intervals"),
        pl.lit("suspect").alias("quality"),
        pl.lit("warning").alias("severity"),
        pl.coalesce("hourly", "daily").alias("value"),
        pl.coalesce("counter", "daily").alias("expected"),
        pl.format("hourly sum {}, daily archive {}, counter difference {}", show("hourly"), show("daily"),
                  show("counter")).alias("detail"),
    )
    return out.sort("meter_id", "ts").cast(dict(FINDINGS_SCHEMA))  # type: ignore[arg-type]


def check_sums(
    hourly: pl.DataFrame,
    *,
    daily: pl.DataFrame | None = None,
    registers: pl.DataFrame | None = None,
    rules: VeeRules = VeeRules(),
) -> pl.DataFrame:
    """Sum check per metering point and UTC day: hourly sum vs daily archive vs counter.

    Parameters
    ----------
    hourly
        ``meter_id``, ``ts``, ``volume_m3`` [, ``quality``]; only days with 24 valued
        hours are checked (a repeated hour counts once).
    daily
        The daily archive (``meter_id``, ``ts`` = UTC day start, ``volume_m3``), e.g.
        the one a corrector keeps itself; its day may start at any hour (each meter's
        first row sets the offset, e.g. the contract hour).
    registers
        ``meter_id``, ``ts``, ``register_m3`` (+ ``counter_modulus_m3``): the counter
        difference of day D is ``R(end of D) − R(start of D)``, rollover corrected.
        A reading between two ``estimated`` hours is not used: those estimates were
        scaled to the registers at the ends of their run (see :func:`analytics.estimate`).

    Returns
    -------
    polars.DataFrame
        ``sum_mismatch`` findings, one per day where any two available sums disagree
        beyond ``sum_abs_tol + sum_rel_tol × max``; the detail names all three.
    """
    if hourly.height == 0 and (daily is None or daily.height == 0):
        return empty_findings()
    g = _build_grid(hourly.select([c for c in ("meter_id", "ts", "volume_m3", "quality") if c in hourly.columns]),
                    every="1h")
    return _check_sums(g, daily=daily, registers=registers, rules=rules)


# --- all rules --------------------------------------------------------------------------


def _validate_grid(
    g: _Grid,
    *,
    rules: VeeRules,
    meters: pl.DataFrame | None = None,
    registers: pl.DataFrame | None = None,
    daily: pl.DataFrame | None = None,
    deliveries: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """Every rule on a prepared grid (``outdoor_c`` / ``expected_m3`` already placed)."""
    parts = [empty_findings()]
    if g.frame.height:
        zeros, frozen = _check_zero_and_frozen(g, rules)
        typical = _typical(g)
        parts += [_check_gaps(g, rules), zeros, frozen, _check_spikes(g, rules, typical),
                  _check_negative(g, rules), _check_clipping(g, rules, typical), _check_corrector(g, meters, rules),
                  _check_ranges(g, rules)]
    if registers is not None and registers.height:
        _require(registers, ("meter_id", "ts", "register_m3"), "registers")
        parts.append(check_counter(registers, rules=rules))
    if deliveries is not None and deliveries.height:
        _require(deliveries, ("meter_id", "ts"), "deliveries")
        parts.extend(check_clock(deliveries, rules=rules))
    if rules.step == dt.timedelta(hours=1) and (
        (daily is not None and daily.height) or (registers is not None and registers.height)
    ):
        parts.append(_check_sums(g, daily=daily, registers=registers, rules=rules))
    return pl.concat([p.select(FINDINGS_SCHEMA.names()) for p in parts]).sort("meter_id", "ts", "rule")


def validate(
    series: pl.DataFrame,
    *,
    rules: VeeRules = VeeRules(),
    outdoor: pl.DataFrame | None = None,
    expected: pl.DataFrame | None = None,
    meters: pl.DataFrame | None = None,
    registers: pl.DataFrame | None = None,
    daily: pl.DataFrame | None = None,
    deliveries: pl.DataFrame | None = None,
    start: dt.datetime | None = None,
    end: dt.datetime | None = None,
) -> pl.DataFrame:
    """Run every rule that has its inputs and return all findings.

    Parameters
    ----------
    series
        Consumption per metering point and interval: ``meter_id``, ``ts`` (UTC interval
        start), ``volume_m3`` (null = missing); optional ``quality`` (rows already
        ``estimated``/``edited`` are not judged again), and for correctors
        ``volume_work_m3``, ``pressure_kpa``, ``temperature_c``.
    rules
        Parameters (interval length, run lengths, tolerances).
    outdoor
        ``meter_id``, ``ts``, ``temperature_c``: outdoor air temperature (°C) per
        interval, for the zero-run rule.
    expected
        ``meter_id``, ``ts``, ``expected_m3``: the expected value per interval for the
        spike rule (default: a robust rolling baseline).
    meters
        ``meter_id``, ``std_temperature_c``, ``std_pressure_kpa`` for the corrector check.
    registers
        ``meter_id``, ``ts``, ``register_m3`` [, ``counter_modulus_m3``]: for counter
        regression/rollover and the counter leg of the sum check.
    daily
        A daily archive to check the hourly sums against (hourly series only).
    deliveries
        Raw deliveries (``meter_id``, ``ts`` as stamped, ``value`` [, ``received_at``])
        for the clock-shift and duplicate rules.
    start, end
        Validate the grid ``start <= ts < end``; absent intervals inside it are gaps
        (default: each meter's own first to last interval).

    Returns
    -------
    polars.DataFrame
        Findings in :data:`FINDINGS_SCHEMA`, sorted by meter, time and rule.

    Raises
    ------
    AnalyticsError
        A required column is missing or ``start >= end``.

    Notes
    -----
    The series is sorted once (not at all when it already is sorted by meter and time,
    as :meth:`warehouse.Store.read` returns it) and placed on an integer grid; see the
    module notes.  Memory grows with the rows: validate 100 k meters in batches of a
    few thousand (as :func:`analytics.run_vee` does).
    """
    _require(series, ("meter_id", "ts", "volume_m3"), "series")
    if start is not None and end is not None and start >= end:
        raise AnalyticsError(f"empty or reversed period: start {start} is not before end {end}; swap them")
    g = _build_grid(series.drop("present", strict=False), every=rules.every, start=start, end=end)
    extra = []
    if outdoor is not None and outdoor.height:
        _require(outdoor, ("meter_id", "ts", "temperature_c"), "outdoor")
        extra.append(_place(g, outdoor, "temperature_c", "outdoor_c"))
    if expected is not None and expected.height:
        _require(expected, ("meter_id", "ts", "expected_m3"), "expected")
        extra.append(_place(g, expected, "expected_m3", "expected_m3"))
    if extra:
        g = g.with_frame(g.frame.with_columns(extra))
    return _validate_grid(g, rules=rules, meters=meters, registers=registers, daily=daily, deliveries=deliveries)


def flagged_intervals(findings: pl.DataFrame, *, every: str = "1h") -> pl.DataFrame:
    """Expand findings of *marking* rules to one row per flagged interval.

    Returns
    -------
    polars.DataFrame
        ``meter_id``, ``ts``, ``rule``, ``quality`` and ``estimate`` (the rule asks for
        an estimate); an interval flagged by several rules appears once per rule.
    """
    marking = [name for name, info in RULES.items() if info.marks]
    estimating = [name for name, info in RULES.items() if info.estimates]
    f = findings.filter(pl.col("rule").is_in(marking))
    if f.height == 0:
        return pl.DataFrame(schema={"meter_id": pl.String, "ts": UTC_TS, "rule": pl.String,
                                    "quality": pl.String, "estimate": pl.Boolean})
    return (
        f.select(
            "meter_id",
            pl.datetime_ranges("ts", "ts_end", interval=_interval(every), closed="left", time_unit="us",
                               time_zone="UTC").alias("ts"),
            "rule",
            "quality",
        )
        .explode("ts")
        .with_columns(pl.col("rule").is_in(estimating).alias("estimate"))
    )


def _require(frame: pl.DataFrame, columns: tuple[str, ...], name: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise AnalyticsError(
            f"{name} frame lacks columns {missing}; it has {frame.columns} — rename or add them"
        )
    if "ts" in frame.columns:
        dtype = frame.schema["ts"]
        if not isinstance(dtype, pl.Datetime) or dtype.time_zone is None:
            raise AnalyticsError(
                f"{name}.ts must be a UTC datetime, got {dtype}; use .dt.replace_time_zone('UTC')"
            )
