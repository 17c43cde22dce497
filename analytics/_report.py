"""The universal report form: filter, group, subtotal — as a frame and as a printable PDF.

A report picks metering points (by company, branch, telemetry unit, metering point,
resource, consumer category), a period of gas days and the quality codes to count,
then groups them along any order of dimensions and gas-calendar parts with a subtotal
at every level — the same engine and measures as the consolidated cube
(:func:`warehouse.rollup_hourly`; see ``analytics/README.md``), run on the selection.

The result is a "Table-GRID": one row per group and subtotal, in tree order (a subtotal
row precedes its children), with ``level``/``depth``/``subtotal`` saying what the row
is; rolled-up group columns are null.  :func:`write_report_pdf` prints it with the
subtotals in bold (through the streamed exporter, :func:`analytics.write_export`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Final, Literal

import polars as pl

from analytics._export import ExportSummary, write_export
from analytics.errors import AnalyticsError
from warehouse import CATEGORIES, QUALITY_CODES, ContractError, gas_cube_grouping, rollup_hourly

if TYPE_CHECKING:
    from warehouse import Store

#: What a report can group by: dimensions, then calendar parts of the gas day.
REPORT_PARTS: Final = ("company", "branch", "resource", "category", "meter", "year", "month", "day", "hour")
_RESOURCES: Final = ("gas", "water", "electricity", "heat")
_COLUMN: Final = {
    "company": "company_id", "branch": "branch_id", "resource": "resource", "category": "category",
    "meter": "meter_id", "year": "year", "month": "month", "day": "day", "hour": "hour",
}  # fmt: skip
#: Measure columns of a report, in order (the cube's measures).
REPORT_MEASURES: Final = (
    "meters", "volume_m3", "energy_kwh", "hours", "expected_hours", "completeness",
    "estimated_hours", "share_estimated",
    "pressure_kpa_min", "pressure_kpa_avg", "pressure_kpa_max",
    "temperature_c_min", "temperature_c_avg", "temperature_c_max",
)  # fmt: skip
#: Columns the PDF prints by default besides the group columns (a page is only so wide).
PDF_MEASURES: Final = ("meters", "volume_m3", "energy_kwh", "completeness", "share_estimated",
                       "pressure_kpa_avg", "temperature_c_avg")

Engine = Literal["duckdb", "polars"]


@dataclass(frozen=True)
class ReportFilter:
    """Which metering points, gas days and values a report covers.

    Attributes
    ----------
    start, end
        Gas days ``start <= gas_day < end`` (each company's own gas calendar).
    companies, branches, devices, meters
        Ids to keep (empty: all).  A device (telemetry unit) selects the metering
        point it is installed on.  Different lists combine with AND.
    resources, categories
        Resources (gas, water, …) and consumer categories to keep (empty: all).
    qualities
        Count only hourly values with these quality codes (empty: all); the others
        count as missing, so ``completeness`` shows their share.
    """

    start: dt.date
    end: dt.date
    companies: Sequence[str] = field(default_factory=tuple)
    branches: Sequence[str] = field(default_factory=tuple)
    devices: Sequence[str] = field(default_factory=tuple)
    meters: Sequence[str] = field(default_factory=tuple)
    resources: Sequence[str] = field(default_factory=tuple)
    categories: Sequence[str] = field(default_factory=tuple)
    qualities: Sequence[str] = field(default_factory=tuple)

    def describe(self) -> str:
        """One line for a report title: period and the non-empty filters."""
        parts = [f"gas days {self.start:%Y-%m-%d} – {self.end - dt.timedelta(days=1):%Y-%m-%d}"]
        for name in ("companies", "branches", "devices", "meters", "resources", "categories", "qualities"):
            values = list(getattr(self, name))
            if values:
                shown = ", ".join(values[:5]) + (f" (+{len(values) - 5})" if len(values) > 5 else "")
                parts.append(f"{name}: {shown}")
        return "; ".join(parts)


def _check_known(kind: str, given: Sequence[str], known: Sequence[str], fix: str) -> None:
    unknown = sorted(set(given) - set(known))
    if unknown:
        sample = ", ".join(sorted(known)[:8]) + (" …" if len(known) > 8 else "")
        raise AnalyticsError(f"unknown {kind} {unknown} in the report filter; known: {sample or 'none'}. {fix}")


def select_meters(store: Store, flt: ReportFilter) -> pl.DataFrame:
    """The metering points a filter selects: ``meter_id, company_id, branch_id, resource, category``.

    Raises
    ------
    AnalyticsError
        An unknown id or code in the filter, a reversed or empty period, or no
        metering point left after the filters.
    """
    if flt.end < flt.start:
        raise AnalyticsError(f"the period is reversed: start {flt.start} is after end {flt.end}; swap them")
    if flt.end == flt.start:
        raise AnalyticsError(
            f"the period {flt.start} … {flt.end} is empty (end is exclusive); "
            f"use an end after the start, e.g. {flt.start + dt.timedelta(days=1)}"
        )
    _check_known("resource(s)", flt.resources, _RESOURCES, "Use one of those.")
    _check_known("category(ies)", flt.categories, CATEGORIES, "Use one of those.")
    _check_known("quality code(s)", flt.qualities, QUALITY_CODES, "Use one of those.")
    branches = store.read("branches", columns=["branch_id", "company_id"])
    meters = store.read("metering_points", columns=["meter_id", "branch_id", "resource", "category"])
    directory = meters.join(branches, on="branch_id", how="inner")
    companies = store.read("companies", columns=["company_id"]).get_column("company_id").to_list()
    fix = "Check the id or drop that filter."
    _check_known("company(ies)", flt.companies, companies, fix)
    _check_known("branch(es)", flt.branches, branches.get_column("branch_id").to_list(), fix)
    _check_known("metering point(s)", flt.meters, directory.get_column("meter_id").to_list(), fix)
    keep = pl.lit(True)
    if flt.devices:
        devices = store.read("devices", columns=["device_id", "meter_id"])
        _check_known("device(s)", flt.devices, devices.get_column("device_id").to_list(), fix)
        chosen = devices.filter(pl.col("device_id").is_in(list(flt.devices)))
        no_meter = chosen.filter(pl.col("meter_id").is_null()).get_column("device_id").to_list()
        if no_meter:
            raise AnalyticsError(
                f"device(s) {no_meter} are not installed on a metering point (GDP units); "
                "filter by their branch instead"
            )
        keep &= pl.col("meter_id").is_in(chosen.get_column("meter_id").to_list())
    for values, col in (
        (flt.companies, "company_id"), (flt.branches, "branch_id"), (flt.meters, "meter_id"),
        (flt.resources, "resource"), (flt.categories, "category"),
    ):  # fmt: skip
        if values:
            keep &= pl.col(col).is_in(list(values))
    selected = directory.filter(keep)
    if selected.height == 0:
        raise AnalyticsError(f"no metering point matches the filter ({flt.describe()}); widen it")
    return selected.sort("meter_id")


def universal_report(
    store: Store,
    flt: ReportFilter,
    *,
    group_by: Sequence[str] = ("company", "branch"),
    engine: Engine = "duckdb",
) -> pl.DataFrame:
    """Run the universal report: filter, group along ``group_by`` and subtotal every level.

    Parameters
    ----------
    store
        The warehouse.
    flt
        Metering points, gas days and quality codes (:class:`ReportFilter`).
    group_by
        Parts of :data:`REPORT_PARTS`, coarse to fine, e.g. ``("company", "month",
        "branch")``; calendar parts (gas calendar) must run year → month → day → hour
        without gaps.  ``()`` gives only the grand total.
    engine
        ``"duckdb"`` or ``"polars"`` for the pass over the hourly values.

    Returns
    -------
    polars.DataFrame
        ``level`` (``total`` or the deepest group part of the row), ``depth``,
        ``subtotal`` (Boolean: not a finest-level row), the group columns
        (``company_id``, ``branch_id``, ``resource``, ``category``, ``meter_id``,
        ``year``, ``month``, ``day`` = day of month of the gas day, ``hour`` = hour of
        the gas day 0 … 24; null where rolled up), ``gas_day`` on day/hour rows,
        ``local_hour`` and ``ts`` (UTC) on hour rows of one company, then
        :data:`REPORT_MEASURES` (m³ at standard conditions, kWh, kPa, °C, shares 0..1).

    Raises
    ------
    AnalyticsError
        Bad filter (see :func:`select_meters`), unknown group part, or no hourly value
        at all for the selection in the period.

    Examples
    --------
    >>> flt = ReportFilter(dt.date(2022, 1, 1), dt.date(2022, 2, 1), companies=["C01"])  # doctest: +SKIP
    >>> universal_report(store, flt, group_by=["branch", "category", "day"])  # doctest: +SKIP
    """
    parts = list(group_by)
    bad = [p for p in parts if p not in REPORT_PARTS]
    if bad:
        raise AnalyticsError(f"cannot group by {bad}; use parts of {list(REPORT_PARTS)}")
    directory = select_meters(store, flt)
    companies = store.read("companies")
    meter_ids = directory.get_column("meter_id").to_list()

    def reader(lo: dt.datetime, hi: dt.datetime) -> pl.DataFrame:
        return store.read(
            "hourly_archive", start=lo, end=hi, where={"meter_id": meter_ids},
            columns=["meter_id", "ts", "volume_m3", "pressure_kpa", "temperature_c", "quality"],
        )  # fmt: skip

    try:
        cells, _ = rollup_hourly(
            reader, directory, companies, hierarchies=[parts], start=flt.start, end=flt.end,
            engine=engine, qualities=list(flt.qualities) or None, chunk_days=31,
        )  # fmt: skip
        grid = gas_cube_grouping(cells, parts) if parts else cells.with_columns(
            pl.lit("total").alias("level"), pl.lit(0, pl.Int8).alias("depth")
        )
    except ContractError as exc:
        raise AnalyticsError(f"cannot build the report: {exc}") from exc
    total = grid.filter(pl.col("depth") == 0)
    if total.height == 0 or total.get_column("hours").sum() == 0:
        raise AnalyticsError(
            f"no hourly values for the selection in the period ({flt.describe()}); "
            "check the period, the quality filter and that data is loaded"
        )
    return _table_grid(grid, parts)


def _table_grid(grid: pl.DataFrame, parts: Sequence[str]) -> pl.DataFrame:
    cols = [_COLUMN[p] for p in parts]
    deepest = len(parts)
    null_rolled = [
        pl.when(pl.col(c).cast(pl.String).is_in(["", "-1"])).then(None).otherwise(pl.col(c)).alias(c) for c in cols
    ]
    extra = [c for c in ("gas_day", "local_hour", "ts") if c in grid.columns]
    return grid.with_columns(null_rolled).select(
        "level",
        "depth",
        (pl.col("depth") < deepest).alias("subtotal"),
        *cols,
        *extra,
        *REPORT_MEASURES,
    )


def write_report_pdf(
    report: pl.DataFrame,
    path: str | Path,
    *,
    title: str | None = None,
    columns: Sequence[str] | None = None,
) -> ExportSummary:
    """Print a universal report (or any cube grouping frame) to a paged PDF, subtotals in bold.

    Parameters
    ----------
    report
        The frame of :func:`universal_report`.
    path
        The PDF file; written atomically (no partial file on failure).
    title
        Printed on every page (default "Universal report").
    columns
        Columns to print (default: the group columns and :data:`PDF_MEASURES`).

    Returns
    -------
    analytics.ExportSummary
    """
    if "subtotal" not in report.columns:
        raise AnalyticsError("the frame has no 'subtotal' column; pass the result of universal_report")
    if columns is None:
        groups = [c for c in report.columns if c in _COLUMN.values()]
        columns = ["level", *groups, *[c for c in PDF_MEASURES if c in report.columns]]
    indent = (pl.lit("  ").repeat_by(pl.col("depth")).list.join("") + pl.col("level")).alias("level")
    shares = [
        (pl.col(c) * 100).round(1).alias(c) for c in ("completeness", "share_estimated") if c in report.columns
    ]
    printable = report.with_columns(indent, *shares).rename(
        {c: f"{c}_pct" for c in ("completeness", "share_estimated") if c in report.columns}
    )
    cols = [f"{c}_pct" if c in ("completeness", "share_estimated") else c for c in columns]
    return write_export(
        printable, path, "pdf", title=title or "Universal report", columns=cols, emphasis="subtotal", float_digits=2
    )
