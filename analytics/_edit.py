"""VEE editing: replace hourly values with a reason, and the append-only audit trail.

Every change VEE makes to the hourly archive — a metrologist's edit or the pipeline's
estimate — is written together with one ``audit_trail`` row per interval (who, when,
why, old and new value and quality, method) in the same transaction: either both are
stored or neither.  Nothing here ever updates or deletes an audit row; PostgreSQL
refuses it with a trigger as well (``warehouse/sql/postgres/004_vee.sql``).  A wrong
edit is corrected by a new edit, and both stay in the trail.
"""

from __future__ import annotations

import datetime as dt
import math
import uuid
from dataclasses import dataclass
from typing import Final

import numpy as np
import polars as pl

from analytics.errors import AnalyticsError
from warehouse import Store, validate_frame

UTC_TS: Final = pl.Datetime("us", "UTC")
_HOUR: Final = dt.timedelta(hours=1)


@dataclass(frozen=True)
class EditSummary:
    """What an edit changed.

    Attributes
    ----------
    meter_id
        The metering point.
    hours
        Hourly intervals written (quality ``edited``).
    audit_rows
        Rows appended to the audit trail (one per hour).
    old_total_m3, new_total_m3
        Sum of the replaced values (nulls count as 0) and of the new values, m³.
    """

    meter_id: str
    hours: int
    audit_rows: int
    old_total_m3: float
    new_total_m3: float


def _utc(ts: dt.datetime, name: str) -> dt.datetime:
    if ts.tzinfo is None:
        raise AnalyticsError(f"{name} {ts} has no time zone; pass an aware datetime (UTC), e.g. 2022-01-05T10:00Z")
    return ts.astimezone(dt.UTC)


def check_period(start: dt.datetime | None, end: dt.datetime | None) -> None:
    """Raise :class:`AnalyticsError` for a reversed or empty ``[start, end)``."""
    if start is not None and end is not None and _utc(start, "start") >= _utc(end, "end"):
        raise AnalyticsError(
            f"empty or reversed period: start {start.isoformat()} is not before end {end.isoformat()}; "
            "give the earlier instant as start"
        )


def check_meters(store: Store, meter_ids: list[str]) -> None:
    """Raise :class:`AnalyticsError` naming metering points the store does not know."""
    known = store.read("metering_points", where={"meter_id": meter_ids}, columns=["meter_id"])
    unknown = sorted(set(meter_ids) - set(known.get_column("meter_id").to_list()))
    if unknown:
        raise AnalyticsError(
            f"unknown metering point(s) {unknown[:5]}; list the known ones with "
            "`askug vee report --level meter` or check the spelling"
        )


def edit_values(
    store: Store,
    *,
    meter_id: str,
    start: dt.datetime,
    end: dt.datetime,
    value_m3: float,
    reason: str,
    user: str,
    now: dt.datetime | None = None,
) -> EditSummary:
    """Replace the hourly consumption of one metering point over ``[start, end)``.

    Every hour in the range gets ``volume_m3 = value_m3``, quality ``edited`` and source
    ``edit`` (pressure, temperature and working volume are kept), and one audit row.

    Parameters
    ----------
    store
        A migrated store.
    meter_id
        The metering point.
    start, end
        Half-open UTC range, on whole hours.
    value_m3
        New consumption per hour, m³ at standard conditions (≥ 0).
    reason
        Why (required; goes into the audit trail), e.g. "meter replaced, value from
        the customer's reading".
    user
        Who made the edit.
    now
        Audit timestamp (default: the current UTC time).

    Returns
    -------
    EditSummary

    Raises
    ------
    AnalyticsError
        Unknown metering point, reversed or empty range, a range off the hour grid,
        a negative or non-finite value, an empty reason or user.

    Examples
    --------
    >>> edit_values(store, meter_id="M1", start=t0, end=t0 + dt.timedelta(hours=3),
    ...             value_m3=1.2, reason="customer reading", user="ivanova")  # doctest: +SKIP
    """
    if not reason or not reason.strip():
        raise AnalyticsError("an edit needs a reason (it is kept in the audit trail); pass --reason TEXT")
    if not user or not user.strip():
        raise AnalyticsError("an edit needs the user making it; pass --user NAME")
    if not math.isfinite(value_m3) or value_m3 < 0:
        raise AnalyticsError(f"the new value must be a finite number ≥ 0 m³, got {value_m3}")
    start, end = _utc(start, "start"), _utc(end, "end")
    check_period(start, end)
    for name, ts in (("start", start), ("end", end)):
        if ts.minute or ts.second or ts.microsecond:
            raise AnalyticsError(f"{name} {ts.isoformat()} is not on a whole hour; edits replace whole hours")
    check_meters(store, [meter_id])
    hours = pl.datetime_range(start, end, "1h", closed="left", eager=True, time_zone="UTC").cast(UTC_TS)
    old = store.read("hourly_archive", start=start, end=end, where={"meter_id": [meter_id]})
    new = (
        pl.DataFrame({"meter_id": meter_id, "ts": hours})
        .join(old, on=["meter_id", "ts"], how="left")
        .with_columns(
            pl.col("volume_m3").alias("old_value"),
            pl.col("quality").fill_null("missing").alias("old_quality"),
            pl.lit(float(value_m3)).alias("volume_m3"),
            pl.lit("edited").alias("quality"),
            pl.lit("edit").alias("source"),
        )
    )
    audit = new.select(
        "meter_id",
        "ts",
        "old_value",
        pl.col("volume_m3").alias("new_value"),
        "old_quality",
        pl.lit("edited").alias("new_quality"),
        pl.lit("manual").alias("method"),
        pl.lit(reason.strip()).alias("reason"),
        pl.lit(user.strip()).alias("changed_by"),
    )
    write_changes(store, new, audit, now=now)
    store.refresh_rollups(start=start, end=end)
    return EditSummary(
        meter_id=meter_id,
        hours=new.height,
        audit_rows=audit.height,
        old_total_m3=float(new.get_column("old_value").fill_null(0.0).sum()),
        new_total_m3=float(new.get_column("volume_m3").sum()),
    )


def write_changes(
    store: Store,
    rows: pl.DataFrame,
    audit: pl.DataFrame,
    *,
    now: dt.datetime | None = None,
    groups: np.ndarray | None = None,
) -> int:
    """Store changed hourly rows and their audit rows in one transaction.

    Parameters
    ----------
    rows
        Full ``hourly_archive`` rows.  Every stored row whose meter is in ``rows`` and
        whose hour is in ``rows`` is deleted first (one statement, not one per meter),
        so ``rows`` must hold every stored row of that meter × hour cross product,
        changed or not.
    groups
        Optional write group of each row: then the cross product is taken per group
        (one delete-and-insert per group), so scattered changes need not rewrite the
        meters' whole span; ``rows`` must hold each group's cross product.
    audit
        ``meter_id``, ``ts``, ``old_value``, ``new_value``, ``old_quality``,
        ``new_quality``, ``method``, ``reason``, ``changed_by``; ``audit_id``,
        ``changed_at``, ``table_name`` and ``column_name`` are filled in here.

    Returns
    -------
    int
        Audit rows appended.
    """
    if rows.height == 0:
        return 0
    stamp = _utc(now, "now") if now is not None else dt.datetime.now(dt.UTC)
    data = validate_frame(rows, "hourly_archive")
    trail = validate_frame(
        audit.with_columns(
            pl.Series("audit_id", [uuid.uuid4().hex for _ in range(audit.height)], dtype=pl.String),
            pl.lit("hourly_archive").alias("table_name"),
            pl.lit("volume_m3").alias("column_name"),
            pl.lit(stamp).cast(UTC_TS).alias("changed_at"),
        ),
        "audit_trail",
    )
    if groups is None:
        parts = [data]
    else:
        parts = list(data.with_columns(pl.Series("_g", groups)).partition_by("_g", include_key=False))
    with store.transaction():
        for part in parts:
            where = {
                "meter_id": part.get_column("meter_id").unique().to_list(),
                "ts": part.get_column("ts").unique().sort().to_list(),
            }
            store.replace("hourly_archive", part, where=where)
        if trail.height:
            store.write("audit_trail", trail)
    return trail.height


def read_audit(
    store: Store,
    *,
    meter_id: str | None = None,
    start: dt.datetime | None = None,
    end: dt.datetime | None = None,
) -> pl.DataFrame:
    """The audit trail, oldest change first.

    Parameters
    ----------
    meter_id
        Only this metering point (unknown ones raise :class:`AnalyticsError`).
    start, end
        Only changes to intervals ``start <= ts < end`` (UTC).

    Returns
    -------
    polars.DataFrame
        The ``audit_trail`` table: ``meter_id``, ``ts`` (the interval), ``old_value``,
        ``new_value`` (m³), ``old_quality``, ``new_quality``, ``method``, ``reason``,
        ``changed_by``, ``changed_at`` (UTC) …, sorted by ``changed_at``, ``meter_id``, ``ts``.
    """
    check_period(start, end)
    if meter_id is not None:
        check_meters(store, [meter_id])
    where = {"meter_id": [meter_id]} if meter_id is not None else None
    return store.read("audit_trail", start=start, end=end, where=where).sort("changed_at", "meter_id", "ts")
