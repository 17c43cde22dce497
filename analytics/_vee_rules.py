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


# --- preparing the series ---------------------------------------------------------------


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
    Duplicated ``(meter_id, ts)`` rows keep the first (see :func:`check_clock`).
    """
    step = _parse_every(every)
    if frame.height == 0:
        return frame.with_columns(pl.lit(True).alias("present")).clear()
    # Sorted once, then a row repeating the previous (meter, ts) is dropped: the first
    # delivery wins, and this is cheaper than an order-keeping ``unique``.
    data = (
        frame.with_columns(pl.col("ts").dt.convert_time_zone("UTC").dt.cast_time_unit("us"))
        .with_row_index("_i")
        .sort("meter_id", "ts", "_i")
    )
    repeat = (pl.col("meter_id") == pl.col("meter_id").shift(1)) & (pl.col("ts") == pl.col("ts").shift(1))
    data = data.filter(~repeat.fill_null(False)).drop("_i")
    bounds = data.group_by("meter_id").agg(
        pl.col("ts").min().alias("_lo"), (pl.col("ts").max() + step).alias("_hi")
    )
    if start is not None:
        bounds = bounds.with_columns(pl.lit(start).cast(UTC_TS).alias("_lo"))
    if end is not None:
        bounds = bounds.with_columns(pl.lit(end).cast(UTC_TS).alias("_hi"))
    grid = bounds.filter(pl.col("_lo") < pl.col("_hi")).select(
        "meter_id",
        pl.datetime_ranges("_lo", "_hi", interval=_interval(every), closed="left", time_unit="us",
                           time_zone="UTC").alias("ts"),
    ).explode("ts")
    if grid.height == data.height and start is None and end is None:
        return data.with_columns(pl.lit(True).alias("present"))  # nothing absent: no join needed
    return (
        grid.join(data.with_columns(pl.lit(True).alias("present")), on=["meter_id", "ts"], how="left")
        .with_columns(pl.col("present").fill_null(False))
        .sort("meter_id", "ts")
    )


def _runs(frame: pl.DataFrame, flag: str, *, key: str | None = None) -> pl.DataFrame:
    """Add ``_run`` (run id) and ``_len`` (run length) to a frame sorted by meter and ts.

    A run is a maximal block of consecutive rows of one meter with the same ``flag``
    value (and the same ``key`` value, if given).  The frame must be on a complete grid.
    """
    brk = (pl.col("meter_id") != pl.col("meter_id").shift(1)) | (
        pl.col(flag) != pl.col(flag).shift(1)
    )
    if key is not None:
        brk = brk | (pl.col(key) != pl.col(key).shift(1)) | pl.col(key).is_null()
    return frame.with_columns(brk.fill_null(True).cum_sum().alias("_run")).with_columns(
        pl.len().over("_run").alias("_len")
    )


def _findings_from_flags(
    frame: pl.DataFrame,
    flag: str,
    rule: str,
    *,
    step: dt.timedelta,
    value: pl.Expr | None = None,
    expected: pl.Expr | None = None,
    detail: pl.Expr | None = None,
    min_len: int = 1,
) -> pl.DataFrame:
    """Collapse rows where ``flag`` is true into one finding per run (grid frames only)."""
    info = RULES[rule]
    runs = _runs(frame, flag).filter(pl.col(flag) & (pl.col("_len") >= min_len))
    if runs.height == 0:
        return empty_findings()
    out = runs.group_by("_run", maintain_order=True).agg(
        pl.col("meter_id").first(),
        pl.col("ts").min().alias("ts"),
        (pl.col("ts").max() + step).alias("ts_end"),
        pl.len().cast(pl.Int32).alias("intervals"),
        (value if value is not None else pl.lit(None, dtype=pl.Float64)).alias("value"),
        (expected if expected is not None else pl.lit(None, dtype=pl.Float64)).alias("expected"),
        (detail if detail is not None else pl.lit("", dtype=pl.String)).alias("detail"),
    )
    return out.select(
        "meter_id",
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


def _fmt(expr: pl.Expr, digits: int = 3) -> pl.Expr:
    return expr.round(digits).cast(pl.String)


# --- consumption rules ------------------------------------------------------------------


def _judged(grid: pl.DataFrame) -> pl.Expr:
    """Rows a rule judges: present, valued, and not already estimated or edited by VEE."""
    quality = pl.col("quality") if "quality" in grid.columns else pl.lit("valid")
    return pl.col("volume_m3").is_not_null() & ~quality.is_in(["estimated", "edited"]).fill_null(False)


def check_gaps(grid: pl.DataFrame, *, rules: VeeRules = VeeRules()) -> pl.DataFrame:
    """Runs of intervals that are absent or have a null ``volume_m3`` (quality ``missing``).

    Parameters
    ----------
    grid
        :func:`complete_grid` output with ``volume_m3`` (and optionally ``quality``).
    """
    quality = pl.col("quality") if "quality" in grid.columns else pl.lit(None, pl.String)
    g = grid.with_columns(
        (pl.col("volume_m3").is_null() & ~quality.is_in(["edited"]).fill_null(False)).alias("_f")
    )
    detail = pl.format(
        "{} absent, {} null", (~pl.col("present")).sum(), pl.col("present").sum()
    )
    return _findings_from_flags(g, "_f", "gap", step=rules.step, detail=detail)


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
    g = grid.with_columns(
        pl.when(_judged(grid)).then(pl.col("volume_m3")).alias("_v"),
        (pl.col("outdoor_c") if "outdoor_c" in grid.columns else pl.lit(None, pl.Float64)).alias("_t"),
    )
    g = _runs(g.with_columns(pl.col("_v").is_not_null().alias("_has")), "_has", key="_v")
    per_run = pl.col("_v").is_not_null()
    zero = per_run & (pl.col("_v") == 0) & (pl.col("_len") >= rules.zero_run_min)
    g = g.with_columns(pl.col("_t").mean().over("_run").alias("_tmean"))
    cold = zero & (pl.col("_tmean") < rules.cold_c)
    frozen = (
        per_run
        & (pl.col("_v") != 0)
        & (pl.col("_v").abs() > rules.frozen_min_value)
        & (pl.col("_len") >= rules.frozen_min)
    )
    g = g.with_columns(cold.fill_null(False).alias("_zero"), frozen.fill_null(False).alias("_frozen"))
    zeros = _findings_from_flags(
        g,
        "_zero",
        "zero_run",
        step=rules.step,
        value=pl.lit(0.0),
        expected=pl.col("_tmean").first(),
        detail=pl.format("zero use at mean outdoor {} °C (< {} °C)", _fmt(pl.col("_tmean").first(), 1),
                         pl.lit(rules.cold_c)),
    )
    frozens = _findings_from_flags(
        g,
        "_frozen",
        "frozen",
        step=rules.step,
        value=pl.col("_v").first(),
        detail=pl.format("value {} repeated", _fmt(pl.col("_v").first())),
    )
    return zeros, frozens


def expected_baseline(grid: pl.DataFrame, *, rules: VeeRules = VeeRules()) -> pl.Expr:
    """Robust expected value per interval: centred rolling median of the same hour of day.

    Over ``rules.spike_window`` days (a daily series: intervals); needs at least half
    of them.  Values already estimated or edited do not count.
    """
    _ = grid
    half = max(1, rules.spike_window // 2)
    return (
        pl.when(_judged(grid)).then(pl.col("volume_m3"))
        .rolling_median(window_size=2 * half + 1, min_samples=half + 1, center=True)
        .over("meter_id", pl.col("ts").dt.hour())
    )


def check_spikes(grid: pl.DataFrame, *, rules: VeeRules = VeeRules()) -> pl.DataFrame:
    """Values far above the expected value.

    Uses the ``expected_m3`` column when the grid has one (e.g. a forecast backcast),
    else :func:`expected_baseline` computed without long zero runs; the expected value is
    never below the meter's median positive value (so the first use after a shutdown is
    not a spike).  See :class:`VeeRules` for the three conditions.
    """
    has_expected = "expected_m3" in grid.columns
    # Long zero runs (outages filled with 0, shutdowns) would drag the baseline to 0 and
    # make every first hour of use afterwards a "spike": they do not count towards it.
    z = grid.with_columns((pl.col("volume_m3") == 0).fill_null(False).alias("_z"))
    z = _runs(z, "_z")
    in_zero_run = pl.col("_z") & (pl.col("_len") >= rules.zero_run_min)
    base_src = z.with_columns(pl.when(~in_zero_run).then(pl.col("volume_m3")).alias("volume_m3"))
    baseline = expected_baseline(base_src, rules=rules)
    g = z.with_columns(baseline.alias("_base"))
    exp = pl.col("expected_m3").fill_null(pl.col("_base")) if has_expected else pl.col("_base")
    # Never expect less than the meter's median positive value: the first use after a
    # weekend or summer shutdown is not a spike.
    typical = pl.when(_judged(g) & (pl.col("volume_m3") > 0)).then(pl.col("volume_m3")).median().over("meter_id")
    g = g.with_columns(pl.max_horizontal(exp, typical).alias("_exp"))
    resid = pl.col("volume_m3") - pl.col("_exp")
    g = g.with_columns(
        (pl.when(_judged(g)).then(resid).abs().median().over("meter_id") * 1.4826).alias("_scale")
    )
    spike = (
        _judged(g)
        & (pl.col("volume_m3") > rules.spike_ratio * pl.col("_exp"))
        & (resid > rules.spike_z * pl.col("_scale"))
        & (resid >= rules.spike_min_excess)
    )
    if rules.spike_two_sided:
        dip = (
            _judged(g)
            & (pl.col("volume_m3") * rules.spike_ratio < pl.col("_exp"))
            & (-resid > rules.spike_z * pl.col("_scale"))
            & (-resid >= rules.spike_min_excess)
        )
        spike = spike | dip
    g = g.with_columns(spike.fill_null(False).alias("_f"))
    return _findings_from_flags(
        g,
        "_f",
        "spike",
        step=rules.step,
        value=pl.col("volume_m3").max(),
        expected=pl.col("_exp").mean(),
        detail=pl.format("value {} … {} against expected {}", _fmt(pl.col("volume_m3").min()),
                         _fmt(pl.col("volume_m3").max()), _fmt(pl.col("_exp").mean())),
    )


def check_negative(grid: pl.DataFrame, *, rules: VeeRules = VeeRules()) -> pl.DataFrame:
    """Negative consumption."""
    g = grid.with_columns((_judged(grid) & (pl.col("volume_m3") < 0)).fill_null(False).alias("_f"))
    return _findings_from_flags(
        g, "_f", "negative", step=rules.step, value=pl.col("volume_m3").min(),
        detail=pl.format("minimum {}", _fmt(pl.col("volume_m3").min())),
    )


def check_clipping(grid: pl.DataFrame, *, rules: VeeRules = VeeRules()) -> pl.DataFrame:
    """Intervals at the series maximum when it repeats ``clipping_min_repeats``+ times.

    A processing chain that caps values (e.g. at 10× the mean) leaves a flat ceiling the
    real series never touches that often.
    """
    v = pl.when(_judged(grid)).then(pl.col("volume_m3"))
    g = grid.with_columns(v.max().over("meter_id").alias("_max"))
    at_max = (pl.col("volume_m3") == pl.col("_max")) & (pl.col("_max") > 0) & _judged(grid)
    g = g.with_columns(at_max.fill_null(False).alias("_at"))
    # A ceiling far above the typical level; a meter that only ever reads 0.1–0.2 repeats
    # its maximum because of the register's resolution, not because of clipping.
    typical = pl.when(_judged(grid) & (pl.col("volume_m3") > 0)).then(pl.col("volume_m3")).median().over("meter_id")
    g = g.with_columns(
        (
            (pl.col("_at").sum().over("meter_id") >= rules.clipping_min_repeats)
            & (pl.col("_max") >= rules.clipping_min_ratio * typical)
        ).fill_null(False).alias("_clip")
    )
    g = g.with_columns((pl.col("_at") & pl.col("_clip")).alias("_f"))
    return _findings_from_flags(
        g, "_f", "clipping", step=rules.step, value=pl.col("_max").first(),
        detail=pl.format("at the series maximum {} ({} times in the series)",
                         _fmt(pl.col("_max").first()), pl.col("_at").sum()),
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
    need = ("volume_work_m3", "pressure_kpa", "temperature_c")
    if any(c not in grid.columns for c in need):
        return empty_findings()
    g = grid
    if meters is not None and meters.height:
        g = g.join(
            meters.select("meter_id", "std_temperature_c", "std_pressure_kpa"), on="meter_id", how="left"
        )
    else:
        g = g.with_columns(
            pl.lit(None, pl.Float64).alias("std_temperature_c"),
            pl.lit(None, pl.Float64).alias("std_pressure_kpa"),
        )
    t_std = pl.col("std_temperature_c").fill_null(rules.std_temperature_c) + 273.15
    p_std = pl.col("std_pressure_kpa").fill_null(rules.std_pressure_kpa)
    calc = (
        pl.col("volume_work_m3") * pl.col("pressure_kpa") / p_std * t_std / (pl.col("temperature_c") + 273.15)
    )
    g = g.with_columns(calc.alias("_calc"))
    diff = (pl.col("volume_m3") - pl.col("_calc")).abs()
    bad = (
        _judged(g)
        & pl.col("_calc").is_not_null()
        & (diff > rules.corrector_abs_tol + rules.corrector_rel_tol * pl.col("_calc").abs())
    )
    g = g.with_columns(bad.fill_null(False).alias("_f"))
    rel = ((pl.col("volume_m3").sum() / pl.col("_calc").sum() - 1) * 100)
    return _findings_from_flags(
        g, "_f", "corrector_mismatch", step=rules.step,
        value=pl.col("volume_m3").sum(), expected=pl.col("_calc").sum(),
        detail=pl.format("V_std {} vs V_work·P/P_std·T_std/T {} ({} %)", _fmt(pl.col("volume_m3").sum()),
                         _fmt(pl.col("_calc").sum()), _fmt(rel, 2)),
    )


def check_ranges(grid: pl.DataFrame, *, rules: VeeRules = VeeRules()) -> pl.DataFrame:
    """Gas pressure (kPa, absolute) and gas temperature (°C) outside the plausible range."""
    out = [empty_findings()]
    for col, rule, (lo, hi) in (
        ("pressure_kpa", "pressure_range", rules.pressure_kpa),
        ("temperature_c", "temperature_range", rules.temperature_c),
    ):
        if col not in grid.columns:
            continue
        bad = (pl.col(col) < lo) | (pl.col(col) > hi)
        g = grid.with_columns(bad.fill_null(False).alias("_f"))
        above = pl.col(col).max() > hi
        out.append(
            _findings_from_flags(
                g, "_f", rule, step=rules.step,
                value=pl.when(above).then(pl.col(col).max()).otherwise(pl.col(col).min()),
                expected=pl.when(above).then(pl.lit(hi)).otherwise(pl.lit(lo)),
                detail=pl.format("{} from {} to {}, allowed {}–{}", pl.lit(col), _fmt(pl.col(col).min()),
                                 _fmt(pl.col(col).max()), pl.lit(lo), pl.lit(hi)),
            )
        )
    return pl.concat(out)


# --- registers and raw deliveries ------------------------------------------------------


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
    mod = (
        pl.col("counter_modulus_m3") if "counter_modulus_m3" in registers.columns
        else pl.lit(None, pl.Float64)
    )
    r = (
        registers.filter(pl.col("register_m3").is_not_null())
        .unique(subset=["meter_id", "ts"], keep="first")
        .sort("meter_id", "ts")
        .with_columns(mod.cast(pl.Float64).alias("_mod"))
    )
    same = pl.col("meter_id") == pl.col("meter_id").shift(1)
    r = r.with_columns(
        pl.when(same).then(pl.col("register_m3") - pl.col("register_m3").shift(1)).alias("_d"),
        pl.when(same).then(pl.col("register_m3").shift(1)).alias("_prev"),
        pl.when(same).then(pl.col("ts").shift(1)).alias("_prev_ts"),
    )
    p95 = r.filter(pl.col("_d") > 0).group_by("meter_id").agg(pl.col("_d").quantile(0.95).alias("_p95"))
    r = r.join(p95, on="meter_id", how="left").with_columns(
        pl.max_horizontal(pl.lit(rules.register_min_step), pl.col("_p95") * rules.register_factor).alias("_lim")
    )
    back = r.filter(pl.col("_d") < 0)
    if back.height == 0:
        return empty_findings()
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
    d = deliveries.sort("meter_id", "ts").with_columns(
        pl.col("ts").dt.round(_interval(rules.every)).alias("_slot")
    )
    off = (pl.col("ts") - pl.col("_slot")).dt.total_microseconds()
    shift = off.abs() > tol_us
    if "received_at" in d.columns:
        ahead = (pl.col("ts") - pl.col("received_at")).dt.total_microseconds() > tol_us
        shift = shift | ahead.fill_null(False)
    d = d.with_columns(shift.alias("_f"), (off / 1e6).alias("_off_s"))
    brk = (pl.col("meter_id") != pl.col("meter_id").shift(1)) | (pl.col("_f") != pl.col("_f").shift(1))
    d = d.with_columns(brk.fill_null(True).cum_sum().alias("_run"))
    clock = (
        d.filter("_f")
        .group_by("_run", maintain_order=True)
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
    )
    value = "value" if "value" in d.columns else "ts"
    dup = (
        d.group_by("meter_id", "_slot")
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
    cast = dict(FINDINGS_SCHEMA)
    return clock.cast(cast), dups.cast(cast)  # type: ignore[arg-type]


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
        ``meter_id``, ``ts``, ``volume_m3``; only days with 24 valued hours are checked.
    daily
        The daily archive (``meter_id``, ``ts`` = UTC day start, ``volume_m3``), e.g.
        the one a corrector keeps itself; its day may start at any hour (each meter's
        first row sets the offset, e.g. the contract hour).
    registers
        ``meter_id``, ``ts``, ``register_m3`` (+ ``counter_modulus_m3``): the counter
        difference of day D is ``R(end of D) − R(start of D)``, rollover corrected.

    Returns
    -------
    polars.DataFrame
        ``sum_mismatch`` findings, one per day where any two available sums disagree
        beyond ``sum_abs_tol + sum_rel_tol × max``; the detail names all three.
    """
    # The day of a daily archive may start at any hour (a corrector's contract hour):
    # the offset of each meter's first daily row sets its day boundaries.
    offsets = (
        daily.group_by("meter_id").agg((pl.col("ts").first() - pl.col("ts").first().dt.truncate("1d")).alias("_off"))
        if daily is not None and daily.height
        else pl.DataFrame(schema={"meter_id": pl.String, "_off": pl.Duration("us")})
    )

    def day_of(frame: pl.DataFrame) -> pl.DataFrame:
        f = frame.join(offsets, on="meter_id", how="left").with_columns(
            pl.col("_off").fill_null(dt.timedelta(0))
        )
        return f.with_columns(((pl.col("ts") - pl.col("_off")).dt.truncate("1d") + pl.col("_off")).alias("day"))

    hsum = (
        day_of(hourly)
        .group_by("meter_id", "day")
        .agg(pl.col("volume_m3").sum().alias("hourly"), pl.col("volume_m3").count().alias("_n"))
        .filter(pl.col("_n") == 24)
        .drop("_n")
    )
    sums = hsum
    if daily is not None and daily.height:
        dd = daily.select("meter_id", pl.col("ts").alias("day"), pl.col("volume_m3").alias("daily"))
        sums = sums.join(dd, on=["meter_id", "day"], how="full", coalesce=True)
    else:
        sums = sums.with_columns(pl.lit(None, pl.Float64).alias("daily"))
    if registers is not None and registers.height:
        mod = (
            pl.col("counter_modulus_m3") if "counter_modulus_m3" in registers.columns
            else pl.lit(None, pl.Float64)
        )
        # Registers are read at (about) the full hour; a drifting clock is the clock rule's job.
        reg = day_of(
            registers.select("meter_id", pl.col("ts").dt.round("1h"), "register_m3", mod.cast(pl.Float64).alias("_mod"))
        )
        mid = reg.filter(pl.col("ts") == pl.col("day")).unique(subset=["meter_id", "day"], keep="first")
        nxt = mid.select("meter_id", (pl.col("day") - dt.timedelta(days=1)).alias("day"),
                         pl.col("register_m3").alias("_next"))
        cnt = mid.select("meter_id", "day", "register_m3", "_mod").join(nxt, on=["meter_id", "day"], how="inner").with_columns(
            (pl.col("_next") - pl.col("register_m3")).alias("counter")
        ).with_columns(
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


# --- all rules --------------------------------------------------------------------------


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
    """
    _require(series, ("meter_id", "ts", "volume_m3"), "series")
    if start is not None and end is not None and start >= end:
        raise AnalyticsError(f"empty or reversed period: start {start} is not before end {end}; swap them")
    grid = complete_grid(series, every=rules.every, start=start, end=end)
    if outdoor is not None and outdoor.height:
        _require(outdoor, ("meter_id", "ts", "temperature_c"), "outdoor")
        grid = grid.join(
            outdoor.select("meter_id", "ts", pl.col("temperature_c").alias("outdoor_c"))
            .unique(subset=["meter_id", "ts"], keep="first"),
            on=["meter_id", "ts"], how="left",
        )
    if expected is not None and expected.height:
        _require(expected, ("meter_id", "ts", "expected_m3"), "expected")
        grid = grid.join(
            expected.select("meter_id", "ts", "expected_m3").unique(subset=["meter_id", "ts"], keep="first"),
            on=["meter_id", "ts"], how="left",
        )
    grid = grid.sort("meter_id", "ts")
    parts = [check_gaps(grid, rules=rules), *check_zero_and_frozen(grid, rules=rules),
             check_spikes(grid, rules=rules), check_negative(grid, rules=rules),
             check_clipping(grid, rules=rules), check_corrector(grid, meters=meters, rules=rules),
             check_ranges(grid, rules=rules)]
    if registers is not None and registers.height:
        _require(registers, ("meter_id", "ts", "register_m3"), "registers")
        parts.append(check_counter(registers, rules=rules))
    if deliveries is not None and deliveries.height:
        _require(deliveries, ("meter_id", "ts"), "deliveries")
        parts.extend(check_clock(deliveries, rules=rules))
    if rules.step == dt.timedelta(hours=1) and (
        (daily is not None and daily.height) or (registers is not None and registers.height)
    ):
        parts.append(check_sums(series, daily=daily, registers=registers, rules=rules))
    return pl.concat([p.select(FINDINGS_SCHEMA.names()) for p in parts]).sort("meter_id", "ts", "rule")


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
