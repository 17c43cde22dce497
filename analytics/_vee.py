"""The VEE pipeline step and the VEE report.

:func:`run_vee` validates the stored hourly archive, stores the findings, writes
estimates (quality ``estimated``, source ``estimate``) with one audit row each that
names the method, and marks flagged hours ``suspect``.  It works in batches of metering
points so that memory stays bounded at 100 k meters × 1 year; each batch is one
transaction.  Running it twice changes nothing the second time: estimated and edited
hours are not judged again, and findings are keyed by (meter, rule, start).

:func:`quality_summary` and :func:`vee_report` give the share of valid, suspect,
estimated, edited and missing hours per metering point, branch or company, with the
findings next to it.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final, Literal

import numpy as np
import polars as pl

from analytics._edit import check_meters, check_period, write_changes
from analytics._estimate import ESTIMATES_SCHEMA, EstimationParams, LongGapEstimator, _estimate_grid
from analytics._vee_rules import (
    FINDINGS_SCHEMA,
    UTC_TS,
    VeeRules,
    _build_grid,
    _Grid,
    _lookup_codes,
    _np_bool,
    _null_index,
    _place,
    _ts_us,
    _validate_grid,
    complete_grid,
    flagged_intervals,
)
from analytics.errors import AnalyticsError
from warehouse import TABLES, Store

Level = Literal["meter", "branch", "company"]
LEVELS: Final = ("meter", "branch", "company")
_QUALITIES: Final = ("valid", "suspect", "estimated", "edited", "missing")
_ARCHIVE_EXTRA: Final = ("volume_work_m3", "pressure_kpa", "temperature_c")


@dataclass(frozen=True)
class VeeRunSummary:
    """What one :func:`run_vee` did.

    Attributes
    ----------
    meters
        Metering points validated.
    intervals
        Hourly intervals on the validated grid (present or absent).
    findings
        Findings per rule (found in this run; stored ones are not duplicated).
    estimates
        Estimated hours per method.
    marked_suspect
        Hours whose quality became ``suspect``.
    audit_rows
        Rows appended to the audit trail.
    seconds
        Wall time.
    """

    meters: int = 0
    intervals: int = 0
    findings: dict[str, int] = field(default_factory=dict)
    estimates: dict[str, int] = field(default_factory=dict)
    marked_suspect: int = 0
    audit_rows: int = 0
    seconds: float = 0.0


def run_vee(
    store: Store,
    start: dt.datetime | None = None,
    end: dt.datetime | None = None,
    *,
    rules: VeeRules | None = None,
    params: EstimationParams | None = None,
    meter_ids: list[str] | None = None,
    user: str = "vee",
    estimate_values: bool = True,
    long_gap: LongGapEstimator | None = None,
    long_gap_method: str = "custom_profile",
    batch_meters: int = 2_000,
    progress: Callable[[int, int], None] | None = None,
) -> VeeRunSummary:
    """Validate the hourly archive, store findings and estimates; the pipeline's VEE step.

    Parameters
    ----------
    store
        A migrated store with the hourly archive loaded.
    start, end
        Half-open UTC range to validate; absent hours inside it are gaps.  Default:
        each metering point's own first to last stored hour.
    rules, params
        Rule and estimation parameters (default :class:`VeeRules()`,
        :class:`EstimationParams()`).
    meter_ids
        Only these metering points (unknown ones raise :class:`AnalyticsError`).
    user
        Recorded as ``changed_by`` in the audit trail for estimates.
    estimate_values
        Write estimates (default).  False: findings and suspect marks only.
    long_gap, long_gap_method
        Optional estimator for long runs (see :func:`analytics.estimate`).
    batch_meters
        Metering points per batch (bounds memory: a year of hourly rows is ~9 k each).
    progress
        Called with ``(meters_done, meters_total)`` after each batch.

    Returns
    -------
    VeeRunSummary

    Raises
    ------
    AnalyticsError
        Reversed period, unknown metering points, or hourly (``every="1h"``) rules
        required.

    Notes
    -----
    Inputs besides the archive, when the store has them: the outdoor temperature of
    each meter's branch station (zero-run rule, heating-degree estimates), the stored
    forecast backcast as the expected value (spike rule), the ``volume_register_m3``
    readings with the device's ``counter_modulus_m3`` (counter regression/rollover,
    clock shift and duplicates, counter leg of the sum check) and the device daily
    archive (``device_daily_archive``, daily leg of the sum check).
    """
    started = time.perf_counter()
    rules = rules or VeeRules()
    params = params or EstimationParams()
    if rules.step != dt.timedelta(hours=1):
        raise AnalyticsError("run_vee validates the hourly archive; pass VeeRules(every='1h')")
    check_period(start, end)
    if start is not None:
        start = start.astimezone(dt.UTC)
    if end is not None:
        end = end.astimezone(dt.UTC)
    meters = store.read("metering_points")
    if meter_ids is not None:
        check_meters(store, list(meter_ids))
        meters = meters.filter(pl.col("meter_id").is_in(list(meter_ids)))
    ids = meters.get_column("meter_id").sort().to_list()
    devices = store.read("devices", columns=["device_id", "meter_id", "counter_modulus_m3"]).filter(
        pl.col("meter_id").is_not_null()
    )
    expected = _expected(store, start, end)
    stations = _stations(store, meters)
    findings: dict[str, int] = {}
    estimates: dict[str, int] = {}
    marked = audit_rows = intervals = validated = 0
    lo_changed: dt.datetime | None = None
    hi_changed: dt.datetime | None = None
    found_at = dt.datetime.now(dt.UTC)
    for i in range(0, len(ids), max(1, batch_meters)):
        batch = ids[i : i + batch_meters]
        hourly = store.read("hourly_archive", start=start, end=end, where={"meter_id": batch})
        if hourly.height:
            validated += hourly.get_column("meter_id").n_unique()
            out = _vee_batch(
                store, hourly, batch, meters=meters, devices=devices, stations=stations, expected=expected,
                start=start,
                end=end, rules=rules, params=params, user=user, estimate_values=estimate_values,
                long_gap=long_gap, long_gap_method=long_gap_method, found_at=found_at,
            )
            intervals += out.intervals
            marked += out.marked
            audit_rows += out.audit_rows
            for k, v in out.findings.items():
                findings[k] = findings.get(k, 0) + v
            for k, v in out.estimates.items():
                estimates[k] = estimates.get(k, 0) + v
            if out.changed is not None:
                lo, hi = out.changed
                lo_changed = lo if lo_changed is None else min(lo_changed, lo)
                hi_changed = hi if hi_changed is None else max(hi_changed, hi)
        if progress is not None:
            progress(min(i + batch_meters, len(ids)), len(ids))
    if lo_changed is not None and hi_changed is not None:
        # Outside the batch transactions: TimescaleDB refreshes aggregates on its own.
        store.refresh_rollups(start=lo_changed, end=hi_changed)
    return VeeRunSummary(
        meters=validated,
        intervals=intervals,
        findings=dict(sorted(findings.items())),
        estimates=dict(sorted(estimates.items())),
        marked_suspect=marked,
        audit_rows=audit_rows,
        seconds=time.perf_counter() - started,
    )


@dataclass
class _BatchResult:
    intervals: int = 0
    marked: int = 0
    audit_rows: int = 0
    findings: dict[str, int] = field(default_factory=dict)
    estimates: dict[str, int] = field(default_factory=dict)
    changed: tuple[dt.datetime, dt.datetime] | None = None


def _expected(store: Store, start: dt.datetime | None, end: dt.datetime | None) -> pl.DataFrame | None:
    """The latest stored backcast per meter as the expected hourly value, if any."""
    if store.count("forecasts") == 0:
        return None
    from analytics._expected import expected_consumption

    try:
        exp = expected_consumption(store, freq="hour", start=start, end=end)
    except ValueError:
        return None  # several models share a cutoff: fall back to the robust baseline
    return exp.select("meter_id", "ts", "expected_m3") if exp.height else None


def _vee_batch(
    store: Store,
    hourly: pl.DataFrame,
    batch: list[str],
    *,
    meters: pl.DataFrame,
    devices: pl.DataFrame,
    stations: pl.DataFrame,
    expected: pl.DataFrame | None,
    start: dt.datetime | None,
    end: dt.datetime | None,
    rules: VeeRules,
    params: EstimationParams,
    user: str,
    estimate_values: bool,
    long_gap: LongGapEstimator | None,
    long_gap_method: str,
    found_at: dt.datetime,
) -> _BatchResult:
    """VEE of one batch of meters: one grid, every rule, estimates, one transaction of writes."""
    lo = start or hourly.get_column("ts").min()
    hi = end or (hourly.get_column("ts").max() + dt.timedelta(hours=1))  # type: ignore[operator]
    assert isinstance(lo, dt.datetime) and isinstance(hi, dt.datetime)
    g = _build_grid(hourly, every=rules.every, start=start, end=end)
    extra = [_outdoor_on_grid(store, g, stations, lo, hi)]
    if expected is not None:
        exp = expected.filter(pl.col("meter_id").is_in(pl.Series(batch).implode()))
        if exp.height:
            extra.append(_place(g, exp, "expected_m3", "expected_m3"))
    g = g.with_frame(g.frame.with_columns(extra))
    registers, deliveries, daily = _device_inputs(store, devices, batch, lo, hi)
    found = _validate_grid(
        g, rules=rules, meters=meters.filter(pl.col("meter_id").is_in(pl.Series(batch).implode())),
        registers=registers, daily=daily, deliveries=deliveries,
    )
    result = _BatchResult(findings={str(r): int(n) for r, n in found.group_by("rule").len().iter_rows()})
    result.intervals = g.frame.height
    flags = flagged_intervals(found, every=rules.every)
    est = (
        _estimate_grid(g, flags, params=params, long_gap=long_gap, long_gap_method=long_gap_method,
                       registers=registers)
        if estimate_values
        else pl.DataFrame(schema=ESTIMATES_SCHEMA)
    )
    result.estimates = {str(k): int(v) for k, v in est.group_by("method").len().iter_rows()}
    # Hours to mark suspect: flagged, currently valid, and not estimated now.
    n = g.frame.height
    mark = np.zeros(n, dtype=bool)
    sus = flags.filter(pl.col("quality") == "suspect")
    pos = g.instants(sus.get_column("meter_id"), sus.get_column("ts"))
    mark[pos[pos >= 0]] = True
    est_pos = g.instants(est.get_column("meter_id"), est.get_column("ts"))
    mark[est_pos[est_pos >= 0]] = False
    if "quality" in g.frame.columns:
        mark &= _np_bool(g.frame, pl.col("present") & (pl.col("quality") == "valid"))
    else:
        mark &= _np_bool(g.frame, pl.col("present"))
    result.marked = int(mark.sum())
    stored_findings = found.with_columns(pl.lit(found_at).cast(UTC_TS).alias("found_at"))
    with store.transaction():
        if found.height:
            store.write("vee_findings", stored_findings)
        if est.height or result.marked:
            audit = est.select(
                "meter_id",
                "ts",
                pl.col("old_volume_m3").alias("old_value"),
                pl.col("volume_m3").alias("new_value"),
                "old_quality",
                pl.lit("estimated").alias("new_quality"),
                "method",
                pl.format("VEE: {}", pl.col("reason")).alias("reason"),
                pl.lit(user).alias("changed_by"),
            )
            rows, groups = _changed_rows(g, est, est_pos, mark)
            result.audit_rows = write_changes(store, rows, audit, groups=groups)
            ts = rows.get_column("ts")
            t0, t1 = ts.min(), ts.max()
            assert isinstance(t0, dt.datetime) and isinstance(t1, dt.datetime)
            result.changed = (t0, t1 + dt.timedelta(hours=1))
    return result


def _stations(store: Store, meters: pl.DataFrame) -> pl.DataFrame:
    """``meter_id`` → ``weather_station`` (its branch's station; null if none)."""
    branches = store.read("branches", columns=["branch_id", "weather_station"])
    return meters.select("meter_id", "branch_id").join(branches, on="branch_id", how="left").select(
        "meter_id", "weather_station"
    )


def _outdoor_on_grid(
    store: Store, g: _Grid, stations: pl.DataFrame, lo: dt.datetime, hi: dt.datetime
) -> pl.Series:
    """Outdoor temperature of each grid row: its branch station's hourly value (null if none).

    The same values as :func:`warehouse.load_meter_temperature`, placed by arithmetic
    (station row + hour offset) instead of a meter × hour join: the station series are
    read once per batch and put on their own complete grid over ``[lo, hi)``.
    """
    n = g.frame.height
    per_meter = pl.DataFrame({"meter_id": g.names}).join(stations, on="meter_id", how="left", maintain_order="left")
    names = per_meter.get_column("weather_station").drop_nulls().unique().sort()
    if names.len() == 0:
        return pl.Series("outdoor_c", [None] * n, dtype=pl.Float64)
    weather = store.read("weather", start=lo, end=hi, where={"station_id": names.to_list()},
                         columns=["station_id", "ts", "temperature_c"])
    if weather.height == 0:
        return pl.Series("outdoor_c", [None] * n, dtype=pl.Float64)
    w = _build_grid(weather.rename({"station_id": "meter_id"}), every="1h", start=lo, end=hi)
    st = _lookup_codes(per_meter.get_column("weather_station").fill_null(""), w.names)
    codes = g.codes()
    sc = st[codes]
    rel = _ts_us(g.frame.get_column("ts")) - w.lo[0]
    k = rel // w.step_us
    ok = (sc >= 0) & (rel >= 0) & (rel % w.step_us == 0) & (k < w.counts[0])
    src = np.where(ok, w.offset[np.where(sc >= 0, sc, 0)] + k, -1)
    return w.frame.get_column("temperature_c").gather(_null_index(src)).alias("outdoor_c")


def _device_inputs(
    store: Store, devices: pl.DataFrame, batch: list[str], lo: dt.datetime, hi: dt.datetime
) -> tuple[pl.DataFrame | None, pl.DataFrame | None, pl.DataFrame | None]:
    """Registers, raw deliveries and the device daily archive of the batch's meters."""
    dev = devices.filter(pl.col("meter_id").is_in(pl.Series(batch).implode())).sort("device_id")
    if dev.height == 0:
        return None, None, None
    registers = deliveries = daily = None
    ids = dev.get_column("device_id")
    raw = store.read(
        "readings",
        start=lo - dt.timedelta(hours=1),
        end=hi + dt.timedelta(hours=1),
        where={"device_id": ids.to_list(), "channel": ["volume_register_m3"]},
        columns=["device_id", "ts", "value", "received_at"],
    )
    if raw.height:
        # device → meter by runs of one device (the rows come sorted by device), not a join.
        idx = _null_index(_lookup_codes(raw.get_column("device_id"), ids))
        raw = raw.select(
            dev.get_column("meter_id").gather(idx).alias("meter_id"), "ts", "value", "received_at",
            dev.get_column("counter_modulus_m3").cast(pl.Float64).gather(idx).alias("counter_modulus_m3"),
        ).filter(pl.col("meter_id").is_not_null())
        registers = raw.select("meter_id", "ts", pl.col("value").alias("register_m3"), "counter_modulus_m3")
        deliveries = raw.select("meter_id", "ts", "value", "received_at").filter(
            (pl.col("ts") >= lo) & (pl.col("ts") < hi)
        )
    if "device_daily_archive" in TABLES:
        dd = store.read("device_daily_archive", start=lo, end=hi, where={"device_id": ids.to_list()},
                        columns=["device_id", "ts", "volume_m3"])
        if dd.height:
            daily = dd.join(dev.select("device_id", "meter_id"), on="device_id").select("meter_id", "ts", "volume_m3")
    return registers, deliveries, daily


#: Cost of one replace statement in rows rewritten (statement overhead ÷ per-row cost).
_STATEMENT_ROWS: Final = 20_000


def _changed_rows(
    g: _Grid, est: pl.DataFrame, est_pos: np.ndarray, mark: np.ndarray
) -> tuple[pl.DataFrame, np.ndarray]:
    """Archive rows to rewrite and the write group of each, with the changes applied.

    :func:`write_changes` replaces, per group, every stored row whose meter *and* hour
    are among the group's changed meters and hours, so the rows hold that whole cross
    product, changed or not.  Changed hours are scattered over the year: one group for
    the batch would rewrite nearly all of it, one group per meter costs a statement
    each.  Groups of ``k`` consecutive changed meters minimise statements × overhead +
    rewritten rows, with ``k ≈ √(statement cost ÷ changed hours per meter)``.
    """
    n = g.frame.height
    changed = mark.copy()
    ok = est_pos[est_pos >= 0]
    changed[ok] = True
    codes = g.codes()
    rows_changed = np.flatnonzero(changed)
    meters_changed = np.unique(codes[rows_changed])
    per_meter = max(1.0, rows_changed.size / max(1, meters_changed.size))
    k = int(max(1, min(meters_changed.size, round((_STATEMENT_ROWS / per_meter) ** 0.5))))
    group_of_meter = np.full(g.meters, -1, dtype=np.int64)
    group_of_meter[meters_changed] = np.arange(meters_changed.size) // k
    # Hour index of every row on one clock (the grid step), for "hour changed in group".
    ts = _ts_us(g.frame.get_column("ts"))
    hour = (ts - ts.min()) // g.step_us if n else ts
    grp_row = group_of_meter[codes]
    in_group = grp_row >= 0
    span = int(hour.max()) + 1 if n else 1
    hit = np.zeros((int(group_of_meter.max()) + 1) * span, dtype=bool)
    hit[grp_row[rows_changed] * span + hour[rows_changed]] = True
    touched = in_group & hit[np.where(in_group, grp_row * span + hour, 0)]
    rows = np.flatnonzero(touched & (_np_bool(g.frame, pl.col("present")) | changed))
    fr = g.frame[pl.Series(rows)]
    new_vol = np.full(n, np.nan)
    is_est = np.zeros(n, dtype=bool)
    if ok.size:
        new_vol[ok] = est.get_column("volume_m3").to_numpy()[est_pos >= 0]
        is_est[ok] = True
    quality = pl.col("quality") if "quality" in fr.columns else pl.lit("valid")
    source = pl.col("source") if "source" in fr.columns else pl.lit("register")
    out = fr.with_columns(
        pl.Series("_est", is_est[rows]), pl.Series("_new", new_vol[rows]), pl.Series("_mark", mark[rows]),
    ).select(
        g.names.gather(fr.get_column("_m")).alias("meter_id"),
        "ts",
        pl.when("_est").then(pl.col("_new")).otherwise(pl.col("volume_m3")).alias("volume_m3"),
        *[c for c in ("volume_work_m3", "pressure_kpa", "temperature_c") if c in fr.columns],
        pl.when("_est").then(pl.lit("estimated")).when("_mark").then(pl.lit("suspect"))
        .otherwise(quality).alias("quality"),
        pl.when("_est").then(pl.lit("estimate")).otherwise(source).alias("source"),
    )
    return out, grp_row[rows]


# --- the VEE report ---------------------------------------------------------------------


def quality_summary(
    series: pl.DataFrame,
    *,
    meters: pl.DataFrame | None = None,
    level: Level = "meter",
    every: str = "1h",
    start: dt.datetime | None = None,
    end: dt.datetime | None = None,
    findings: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """Share of valid, suspect, estimated, edited and missing intervals per group.

    Parameters
    ----------
    series
        ``meter_id``, ``ts`` (UTC), ``quality`` (and ``volume_m3``).  Intervals absent
        from the frame inside the period count as missing.
    meters
        ``meter_id``, ``branch_id``, ``company_id`` (e.g. :func:`warehouse.load_meters`);
        needed for ``level = "branch"`` or ``"company"``.
    level
        ``"meter"``, ``"branch"`` or ``"company"``.
    every, start, end
        Interval length and the period (default: each meter's own span).
    findings
        Findings to count per group (``findings`` column, and one column per severity).

    Returns
    -------
    polars.DataFrame
        One row per group: ``meters``, ``intervals``, counts ``valid`` … ``missing``
        and shares ``valid_share`` … ``missing_share`` (0 … 1), ``findings``,
        ``critical``, ``warning``, ``info``; sorted by the group key.
    """
    if level not in LEVELS:
        raise AnalyticsError(f"level must be one of {list(LEVELS)}, got {level!r}")
    check_period(start, end)
    key = f"{level}_id"
    grid = complete_grid(series.select("meter_id", "ts", "quality"), every=every, start=start, end=end)
    grid = grid.with_columns(pl.col("quality").fill_null("missing"))
    counts = grid.group_by("meter_id").agg(
        pl.len().alias("intervals"), *[(pl.col("quality") == q).sum().alias(q) for q in _QUALITIES]
    )
    f = findings if findings is not None else pl.DataFrame(schema=FINDINGS_SCHEMA)
    fc = f.group_by("meter_id").agg(
        pl.len().alias("findings"), *[(pl.col("severity") == s).sum().alias(s) for s in ("critical", "warning", "info")]
    )
    counts = counts.join(fc, on="meter_id", how="full", coalesce=True)
    if level != "meter":
        if meters is None or key not in meters.columns:
            raise AnalyticsError(f"level {level!r} needs a meters frame with meter_id and {key}")
        counts = counts.join(meters.select("meter_id", key), on="meter_id", how="left").with_columns(
            pl.col(key).fill_null("(unknown)")
        )
    num = ["intervals", *_QUALITIES, "findings", "critical", "warning", "info"]
    out = (
        counts.with_columns(pl.col(c).fill_null(0).cast(pl.Int64) for c in num)
        .group_by(key)
        .agg(pl.col("meter_id").n_unique().cast(pl.Int64).alias("meters"), *[pl.col(c).sum() for c in num])
        .with_columns(
            (pl.col(q) / pl.col("intervals")).fill_nan(None).alias(f"{q}_share") for q in _QUALITIES
        )
        .sort(key)
    )
    return out.select(key, "meters", "intervals", *_QUALITIES, *[f"{q}_share" for q in _QUALITIES],
                      "findings", "critical", "warning", "info")


@dataclass(frozen=True)
class VeeReport:
    """The VEE report: quality shares per group and the list of findings."""

    summary: pl.DataFrame
    findings: pl.DataFrame


def read_findings(
    store: Store,
    *,
    meter_ids: list[str] | None = None,
    start: dt.datetime | None = None,
    end: dt.datetime | None = None,
    rules: list[str] | None = None,
) -> pl.DataFrame:
    """Stored findings starting in ``[start, end)``, sorted by meter, time and rule."""
    check_period(start, end)
    where: dict[str, list[str]] = {}
    if meter_ids is not None:
        where["meter_id"] = list(meter_ids)
    if rules is not None:
        where["rule"] = list(rules)
    return store.read("vee_findings", start=start, end=end, where=where or None).sort("meter_id", "ts", "rule")


def vee_report(
    store: Store,
    *,
    level: Level = "meter",
    start: dt.datetime | None = None,
    end: dt.datetime | None = None,
    company_id: str | None = None,
    branch_id: str | None = None,
    meter_id: str | None = None,
    batch_meters: int = 5_000,
) -> VeeReport:
    """The VEE report per metering point, branch or company from the store.

    Parameters
    ----------
    level
        ``"meter"``, ``"branch"`` or ``"company"``.
    start, end
        UTC period; absent hours inside it count as missing (default: each meter's span).
    company_id, branch_id, meter_id
        Filters; an unknown value raises :class:`AnalyticsError`.

    Returns
    -------
    VeeReport
        ``summary`` (see :func:`quality_summary`) and ``findings`` (the stored findings
        of the selected meters in the period, with ``branch_id`` and ``company_id``).
    """
    from warehouse import load_meters

    check_period(start, end)
    directory = load_meters(store)
    for col, value in (("company_id", company_id), ("branch_id", branch_id), ("meter_id", meter_id)):
        if value is None:
            continue
        if value not in set(directory.get_column(col).to_list()):
            raise AnalyticsError(f"unknown {col.removesuffix('_id')} {value!r}; known: "
                                 f"{sorted(set(directory.get_column(col).to_list()))[:8]}")
        directory = directory.filter(pl.col(col) == value)
    ids = directory.get_column("meter_id").to_list()
    parts = []
    for i in range(0, len(ids), max(1, batch_meters)):
        batch = ids[i : i + batch_meters]
        parts.append(store.read("hourly_archive", start=start, end=end, where={"meter_id": batch},
                                columns=["meter_id", "ts", "quality"]))
    series = pl.concat(parts) if parts else pl.DataFrame(schema={"meter_id": pl.String, "ts": UTC_TS,
                                                                  "quality": pl.String})
    findings = read_findings(store, meter_ids=ids, start=start, end=end) if ids else pl.DataFrame(
        schema=TABLES["vee_findings"].schema)
    summary = quality_summary(series, meters=directory, level=level, start=start, end=end, findings=findings)
    findings = findings.join(directory.select("meter_id", "branch_id", "company_id"), on="meter_id", how="left")
    return VeeReport(summary=summary, findings=findings)
