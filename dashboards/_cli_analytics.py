"""``askug vee …``, ``askug report …``, ``askug export …``, ``askug billing …`` and friends.

Registered into the main parser by :func:`dashboards.cli.build_parser`; commands use the
helpers of :mod:`dashboards.cli` (``Settings``, ``step``, ``done``, ``CommandError``).
"""

from __future__ import annotations

import argparse
from typing import Any


def register(sub: Any) -> None:
    """Add this module's sub-commands to the ``askug`` parser's sub-parsers ``sub``."""
    _ = (sub, argparse)
    _register_g(sub)  # --- G --- balance, limits, normalise
    _register_v(sub)  # --- V --- vee run | report | edit | audit
    _register_c(sub)  # --- C --- report; options of cube
    _register_e(sub)  # --- E --- export; billing run | history | schedule


# --- G ---------------------------------------------------------------------------------
# askug balance | limits | normalise: gas balance, limit discipline, weather normalisation.


# Bad arguments raise AnalyticsError, not CommandError: under `python -m dashboards.cli`
# the module is __main__ and a second import of dashboards.cli has another CommandError.
def _g_date(text: str, option: str) -> Any:
    import datetime as dt

    from analytics import AnalyticsError

    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise AnalyticsError(f"{option} must be a date like 2022-01-01, got {text!r}") from None


def _g_month(text: str) -> Any:
    import datetime as dt

    from analytics import AnalyticsError

    try:
        return dt.date.fromisoformat(text + "-01" if len(text) == 7 else text).replace(day=1)
    except ValueError:
        raise AnalyticsError(f"--month must look like 2022-01, got {text!r}") from None


def _g_export(frame: Any, out: str | None, title: str) -> None:
    """Write ``frame`` to ``out`` (format from the suffix) atomically; no partial file."""
    if not out:
        return
    from analytics._export import write_export
    from dashboards.cli import done

    summary = write_export(frame, out, title=title)
    done(f"{getattr(summary, 'rows', frame.height):,} rows → {out}")


def _g_print(frame: Any, title: str, limit: int = 15) -> None:
    from rich.table import Table

    from dashboards.cli import console

    table = Table(title=title, title_justify="left")
    for col in frame.columns:
        table.add_column(col, justify="right" if frame.schema[col].is_numeric() else "left")
    for row in frame.head(limit).iter_rows():
        table.add_row(*("" if v is None else f"{v:,.2f}" if isinstance(v, float) else str(v) for v in row))
    console.print(table)
    if frame.height > limit:
        console.print(f"  … {frame.height - limit} more rows (use --out to get them all)")


def cmd_balance(args: argparse.Namespace, settings: Any) -> None:
    """``askug balance``: metered inflow of each node against its consumers."""
    from analytics import balance_from_store, read_inflow_file
    from dashboards.cli import _open, done, step

    start = _g_date(args.start, "--start") if args.start else None
    end = _g_date(args.end, "--end") if args.end else None
    inflow = read_inflow_file(args.inflow) if args.inflow else None  # None: the store's node_inflow
    with _open(settings, read_only=settings.dsn is None) as store, step("balance"):
        frame = balance_from_store(store, inflow, freq=args.freq, start=start, end=end, node_ids=args.node)
    if frame.height == 0:
        from analytics import AnalyticsError

        raise AnalyticsError("no balance rows for that selection; check --start/--end and --node")
    _g_export(frame, args.out, f"Gas balance per node ({args.freq})")
    import polars as pl

    worst = frame.filter(pl.col("inflow_m3").is_not_null()).sort(
        pl.col("imbalance_pct").abs(), descending=True, nulls_last=True
    )
    _g_print(
        worst.select(
            "node_id", "period", "inflow_m3", "consumed_m3", "imbalance_m3", "imbalance_pct",
            "consumer_estimated_pct", "consumer_missing_pct",
        ),
        "largest imbalances (m³, % of inflow; estimated/missing % of consumer values)",
    )
    done(f"{frame.height:,} node-periods, {frame.get_column('node_id').n_unique()} nodes")


def cmd_limits(args: argparse.Namespace, settings: Any) -> None:
    """``askug limits``: actual against limits and plans, and the month-end forecast."""
    from analytics import limits_from_store, read_limits_file
    from dashboards.cli import _open, console, done, step

    month = _g_month(args.month)
    as_of = _g_date(args.as_of, "--as-of") if args.as_of else None
    with _open(settings, read_only=settings.dsn is None) as store:
        limits = None
        if args.limits:
            known = set(store.read("metering_points", columns=["meter_id"]).get_column("meter_id").to_list())
            limits = read_limits_file(args.limits, known_meters=known)
        with step("limits"):
            monthly, daily = limits_from_store(
                store, month=month, as_of=as_of, limits=limits, meter_ids=args.meter,
                use_forecasts=not args.no_forecasts,
            )
    _g_export(monthly, args.out, f"Limit discipline {month:%Y-%m}")
    statements = monthly.get_column("statement").drop_nulls().to_list()
    for line in statements[: args.top]:
        console.print(f"  [yellow]![/yellow] {line}")
    if len(statements) > args.top:
        console.print(f"  … {len(statements) - args.top} more (use --out or --top)")
    over_days = int(daily.get_column("over").sum()) if daily.height else 0
    counts = monthly.group_by("status").len().sort("status").iter_rows()
    done(
        f"{monthly.height} consumers in {month:%Y-%m}: "
        + ", ".join(f"{n} {s}" for s, n in counts)
        + f"; {over_days} gas days over the daily limit"
    )


def cmd_normalise(args: argparse.Namespace, settings: Any) -> None:
    """``askug normalise``: consumption at normal-year temperature by heating degree days."""
    import datetime as dt

    from analytics import aggregate_normalised, normalise_from_store
    from analytics._normalise import read_normal_file
    from dashboards.cli import _open, done, step
    from warehouse import load_meters

    def utc(text: str | None, option: str) -> dt.datetime | None:
        if not text:
            return None
        return dt.datetime.combine(_g_date(text, option), dt.time(), dt.UTC)

    normal = read_normal_file(args.normal) if args.normal else None
    with _open(settings, read_only=settings.dsn is None) as store, step("normalise"):
        per_meter = normalise_from_store(
            store, start=utc(args.start, "--start"), end=utc(args.end, "--end"), normal=normal,
            base_c=args.base, period=args.period, meter_ids=args.meter,
        )
        meters = load_meters(store)
    grouped = aggregate_normalised(per_meter, meters, by=args.by)
    _g_export(per_meter if args.per_meter else grouped, args.out, "Weather-normalised consumption")
    _g_print(grouped, f"normalised to the normal year (HDD base {args.base} °C), by {args.by}")
    done(f"{per_meter.get_column('meter_id').n_unique()} metering points normalised")


def _register_g(sub: Any) -> None:
    p = sub.add_parser(
        "balance",
        help="gas balance: metered inflow of each network node against the consumers under it",
        description="Metered inflow of each GDP/station (the store's node_inflow table, or --inflow) against "
        "the sum of the metering points in its subtree, per hour, gas day or gas month, in m³ and %, with the "
        "share of estimated and missing consumer data next to it.",
    )
    p.add_argument("--inflow", default=None, metavar="FILE", help="use this node inflow file instead of the stored "
                   "node_inflow (Parquet or CSV: node_id,ts,volume_m3[,quality])")
    p.add_argument("--freq", choices=["hour", "day", "month"], default="day", help="period (default: gas day)")
    p.add_argument("--start", default=None, help="first gas day, e.g. 2022-01-01 (default: all data)")
    p.add_argument("--end", default=None, help="gas day after the last one (exclusive)")
    p.add_argument("--node", action="append", default=None, metavar="NODE", help="only this node (repeatable)")
    p.add_argument("--out", default=None, help="write every row to this file (.csv .xlsx .json .xml .txt .dbf .pdf)")
    p.set_defaults(func=cmd_balance)

    p = sub.add_parser(
        "limits",
        help="limit discipline: actual vs contracted daily/monthly limits and plans, month-end forecast",
        description="Gas-month use of each consumer against its contracted limits and plan, and the forecast "
        "to the end of the month: 'consumer X will exceed its monthly limit by N m³ on day D'.",
    )
    p.add_argument("--month", required=True, help="gas month, e.g. 2022-01")
    p.add_argument("--as-of", default=None, help="first gas day to forecast (default: after the last data)")
    p.add_argument("--limits", default=None, help="limits CSV to use instead of the contracts table")
    p.add_argument("--meter", action="append", default=None, metavar="METER", help="only this metering point (repeatable)")
    p.add_argument("--no-forecasts", action="store_true", help="ignore stored forecasts; extrapolate by heating degree days")
    p.add_argument("--top", type=int, default=20, help="statements to print (default 20)")
    p.add_argument("--out", default=None, help="write the monthly status to this file (.csv .xlsx .pdf …)")
    p.set_defaults(func=cmd_limits)

    p = sub.add_parser(
        "normalise",
        help="weather normalisation: consumption at normal-year temperature by heating degree days",
        description="Fits daily use = base + coef × HDD per metering point and moves the weather-driven part "
        "to the normal year. Needs `askug rollup` first.",
    )
    p.add_argument("--start", default=None, help="first UTC day, e.g. 2022-01-01")
    p.add_argument("--end", default=None, help="UTC day after the last one (exclusive)")
    p.add_argument("--normal", default=None, help="normal-year CSV (day_of_year, temperature_c or hdd_normal); "
                   "default: the climatology of the stored weather")
    p.add_argument("--base", type=float, default=15.5, help="HDD balance temperature in °C (default 15.5)")
    p.add_argument("--period", choices=["day", "month", "total"], default="month", help="totals per (default month)")
    p.add_argument("--by", default="category", help="group: category, branch_id, company_id, node_id (default category)")
    p.add_argument("--meter", action="append", default=None, metavar="METER", help="only this metering point (repeatable)")
    p.add_argument("--per-meter", action="store_true", help="--out writes per metering point instead of per group")
    p.add_argument("--out", default=None, help="write the result to this file (.csv .xlsx .pdf …)")
    p.set_defaults(func=cmd_normalise)


# --- V ---------------------------------------------------------------------------------
# askug vee run | report | edit | audit: validation, estimation, editing with audit trail.


def _v_instant(text: str | None, option: str) -> Any:
    """``2022-01-05`` (00:00 UTC) or ``2022-01-05T10:00`` (UTC unless an offset is given)."""
    import datetime as dt

    # AnalyticsError, not CommandError: under `python -m dashboards.cli` the latter is a
    # different class from the one main() catches.
    from analytics.errors import AnalyticsError as CommandError

    if text is None:
        return None
    try:
        value = dt.datetime.fromisoformat(text)
    except ValueError:
        raise CommandError(f"{option} must be a date or time like 2022-01-05 or 2022-01-05T10:00, got {text!r}") from None
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def _v_period(args: argparse.Namespace) -> tuple[Any, Any]:
    from analytics.errors import AnalyticsError as CommandError

    start, end = _v_instant(args.start, "--start"), _v_instant(args.end, "--end")
    if start is not None and end is not None and start >= end:
        raise CommandError(f"--start {args.start} is not before --end {args.end}; swap them")
    return start, end


def cmd_vee_run(args: argparse.Namespace, settings: Any) -> None:
    """``askug vee run``: validate the hourly archive, store findings and estimates."""
    from analytics import run_vee
    from dashboards.cli import _open, done, step

    start, end = _v_period(args)
    with _open(settings) as store, step("vee") as progress:
        summary = run_vee(
            store, start, end, meter_ids=args.meter, user=args.user,
            estimate_values=not args.no_estimate, progress=progress,
        )
    found = ", ".join(f"{n} {rule}" for rule, n in summary.findings.items()) or "no findings"
    made = ", ".join(f"{n} {m}" for m, n in summary.estimates.items()) or "none"
    done(
        f"{summary.meters} metering points, {summary.intervals:,} hours: {found}; estimates: {made}; "
        f"{summary.marked_suspect} hours marked suspect; {summary.audit_rows} audit rows; {summary.seconds:.1f} s"
    )


def cmd_vee_report(args: argparse.Namespace, settings: Any) -> None:
    """``askug vee report``: quality shares per meter/branch/company and the findings."""
    from analytics import vee_report
    from dashboards.cli import _open, done, step

    start, end = _v_period(args)
    with _open(settings, read_only=settings.dsn is None) as store, step("report"):
        report = vee_report(
            store, level=args.level, start=start, end=end, company_id=args.company, branch_id=args.branch,
            meter_id=args.meter,
        )
    key = f"{args.level}_id"
    shares = report.summary.select(
        key, "meters", "intervals",
        *[(report.summary[f"{q}_share"] * 100).round(1).alias(f"{q} %")
          for q in ("valid", "suspect", "estimated", "edited", "missing")],
        "findings",
    )
    _g_print(shares, f"VEE report per {args.level}", limit=args.limit)
    if report.findings.height:
        cols = ["meter_id", "rule", "ts", "intervals", "quality", "severity", "detail"]
        shown = report.findings.select(cols)
        _g_print(shown.with_columns(shown["ts"].dt.strftime("%Y-%m-%d %H:%M")), "findings", limit=args.limit)
    if args.out:
        _g_export(report.summary, args.out, f"VEE report per {args.level}")
    if args.findings_out:
        _g_export(report.findings, args.findings_out, "VEE findings")
    done(f"{report.summary.height} {args.level}(s), {report.findings.height} findings")


def cmd_vee_edit(args: argparse.Namespace, settings: Any) -> None:
    """``askug vee edit``: replace hourly values with a reason (audited)."""
    from analytics import edit_values
    from analytics.errors import AnalyticsError as CommandError
    from dashboards.cli import _open, done, step

    start, end = _v_period(args)
    if start is None or end is None:
        raise CommandError("vee edit needs --start and --end")
    with _open(settings) as store, step("edit"):
        summary = edit_values(
            store, meter_id=args.meter, start=start, end=end, value_m3=args.value, reason=args.reason,
            user=args.user,
        )
    done(
        f"{summary.meter_id}: {summary.hours} hour(s) edited ({summary.old_total_m3:,.3f} → "
        f"{summary.new_total_m3:,.3f} m³), {summary.audit_rows} audit row(s) appended"
    )


def cmd_vee_audit(args: argparse.Namespace, settings: Any) -> None:
    """``askug vee audit``: the audit trail of edits and estimates."""
    import polars as pl

    from analytics import read_audit
    from dashboards.cli import _open, done

    start, end = _v_period(args)
    with _open(settings, read_only=settings.dsn is None) as store:
        trail = read_audit(store, meter_id=args.meter, start=start, end=end)
    if args.method:
        trail = trail.filter(pl.col("method") == args.method)
    shown = trail.select(
        "changed_at", "changed_by", "meter_id", "ts", "old_value", "new_value", "old_quality", "new_quality",
        "method", "reason",
    ).with_columns(pl.col("changed_at").dt.strftime("%Y-%m-%d %H:%M:%S"), pl.col("ts").dt.strftime("%Y-%m-%d %H:%M"))
    _g_print(shown, "audit trail", limit=args.limit)
    if args.out:
        _g_export(trail, args.out, "VEE audit trail")
    done(f"{trail.height} audit row(s)")


def _register_v(sub: Any) -> None:
    import getpass

    p = sub.add_parser("vee", help="VEE: validate, estimate, edit (with audit trail) and report data quality")
    vee = p.add_subparsers(dest="vee_command", required=True, metavar="VEE_COMMAND")

    def period(q: argparse.ArgumentParser) -> None:
        q.add_argument("--start", default=None, help="UTC start, e.g. 2022-01-05 or 2022-01-05T10:00")
        q.add_argument("--end", default=None, help="UTC end (exclusive)")

    q = vee.add_parser("run", help="validate the hourly archive; store findings, estimates and suspect marks")
    period(q)
    q.add_argument("--meter", action="append", default=None, metavar="METER", help="only this metering point (repeatable)")
    q.add_argument("--user", default="vee", help="name recorded in the audit trail for estimates (default vee)")
    q.add_argument("--no-estimate", action="store_true", help="store findings and suspect marks only")
    q.set_defaults(func=cmd_vee_run)

    q = vee.add_parser("report", help="share valid/suspect/estimated/edited/missing and the findings")
    period(q)
    q.add_argument("--level", choices=["meter", "branch", "company"], default="meter", help="group by (default meter)")
    q.add_argument("--company", default=None, help="only this company")
    q.add_argument("--branch", default=None, help="only this branch")
    q.add_argument("--meter", default=None, help="only this metering point")
    q.add_argument("--limit", type=int, default=20, help="rows shown on screen (default 20)")
    q.add_argument("--out", default=None, help="write the summary to this file (.csv .xlsx .pdf …)")
    q.add_argument("--findings-out", default=None, help="write the findings to this file")
    q.set_defaults(func=cmd_vee_report)

    q = vee.add_parser("edit", help="replace the hourly values of a metering point with a reason (audited)")
    period(q)
    q.add_argument("--meter", required=True, help="metering point")
    q.add_argument("--value", type=float, required=True, help="new consumption per hour, m³ at standard conditions")
    q.add_argument("--reason", required=True, help="why (kept in the audit trail)")
    q.add_argument("--user", default=getpass.getuser(), help="who edits (default: the login name)")
    q.set_defaults(func=cmd_vee_edit)

    q = vee.add_parser("audit", help="show the audit trail of edits and estimates")
    period(q)
    q.add_argument("--meter", default=None, help="only this metering point")
    q.add_argument("--method", default=None, help="only this method (manual, linear_interpolation, hdd_profile …)")
    q.add_argument("--limit", type=int, default=30, help="rows shown on screen (default 30)")
    q.add_argument("--out", default=None, help="write the trail to this file (.csv .xlsx .json …)")
    q.set_defaults(func=cmd_vee_audit)


# --- C ---------------------------------------------------------------------------------
# askug report: the universal report form; askug cube --grouping/--refresh (the command
# itself is dashboards.cli.cmd_cube).  Bad arguments raise AnalyticsError (see G's note).
def _c_date(text: str, option: str) -> Any:
    import datetime as dt

    from analytics import AnalyticsError

    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise AnalyticsError(f"{option} must be a date like 2022-01-01, got {text!r}") from None


def _c_list(values: list[str] | None) -> list[str]:
    """Repeatable, comma-separable option values → one list."""
    return [v.strip() for item in values or [] for v in item.split(",") if v.strip()]


def _c_print(frame: Any, title: str, columns: list[str], limit: int) -> None:
    import polars as pl
    from rich.table import Table

    from dashboards.cli import console

    table = Table(title=title, show_lines=False)
    for c in columns:
        table.add_column(c, justify="left" if frame.schema[c] == pl.String else "right")
    for row in frame.head(limit).iter_rows(named=True):
        cells = []
        for c in columns:
            v = row[c]
            cells.append("" if v is None else f"{v:,.3f}" if isinstance(v, float) else str(v))
        table.add_row(*cells, style="bold" if row.get("subtotal") else None)
    console.print(table)
    if frame.height > limit:
        console.print(f"  … {frame.height - limit:,} more rows (use --out to get all of them)")


def cmd_report(args: argparse.Namespace, settings: Any) -> None:
    """askug report: filter, group and subtotal; print it, or write it (PDF, CSV, XLSX, …)."""
    from pathlib import Path

    from analytics import PDF_MEASURES, ReportFilter, universal_report, write_report_pdf
    from analytics._export import write_export
    from dashboards.cli import _open, done, step

    flt = ReportFilter(
        start=_c_date(args.start, "--start"),
        end=_c_date(args.end, "--end"),
        companies=_c_list(args.company),
        branches=_c_list(args.branch),
        devices=_c_list(args.device),
        meters=_c_list(args.meter),
        resources=_c_list(args.resource),
        categories=_c_list(args.category),
        qualities=_c_list(args.quality),
    )
    group_by = _c_list([args.group_by])
    with _open(settings) as store, step("report"):
        report = universal_report(store, flt, group_by=group_by, engine=args.engine)
    title = args.title or f"Universal report by {' → '.join(group_by) or 'total'}; {flt.describe()}"
    if args.out:
        out = Path(args.out)
        if out.suffix.lower() == ".pdf":
            summary = write_report_pdf(report, out, title=title)
        else:
            summary = write_export(report, out, title=title)
        done(f"{report.height:,} report rows → {summary.path}")
        return
    groups = [c for c in report.columns if c in ("company_id", "branch_id", "resource", "category", "meter_id",
                                                 "year", "month", "day", "hour")]
    _c_print(report, title, ["level", *groups, *PDF_MEASURES], args.limit)


def _register_c(sub: Any) -> None:
    from analytics import REPORT_PARTS

    p = sub.add_parser(
        "report",
        help="the universal report: filter, group and subtotal consumption; print it or write PDF/CSV/XLSX/…",
        description="Filter metering points and gas days, group along any order of dimensions and "
        "gas-calendar parts with a subtotal at every level. Measures: volume (m³), energy (kWh), "
        "completeness, share estimated, min/avg/max pressure and temperature. Example: "
        "askug report --start 2022-01-01 --end 2022-02-01 --company C01 --group-by branch,category,day --out r.pdf",
    )
    p.add_argument("--start", required=True, help="first gas day, e.g. 2022-01-01")
    p.add_argument("--end", required=True, help="gas day after the last one (exclusive), e.g. 2022-02-01")
    p.add_argument("--group-by", default="company,branch",
                   help=f"comma-separated, coarse to fine, from {', '.join(REPORT_PARTS)} (default company,branch)")
    for option, what in (("company", "company id"), ("branch", "branch id"), ("device", "telemetry unit id"),
                         ("meter", "metering point id"), ("resource", "gas, water, electricity, heat"),
                         ("category", "household, industrial, municipal, commercial"),
                         ("quality", "count only values of this quality code: valid, suspect, estimated, edited")):
        p.add_argument(f"--{option}", action="append", metavar="ID" if "id" in what else "CODE",
                       help=f"keep this {what}; repeatable or comma-separated")
    p.add_argument("--out", default=None, help="write the report to this file (.pdf, .csv, .xlsx, .json, .xml, .txt, .dbf)")
    p.add_argument("--title", default=None, help="title printed on the PDF")
    p.add_argument("--engine", choices=("duckdb", "polars"), default="duckdb", help="engine of the pass over the hourly values")
    p.add_argument("--limit", type=int, default=40, help="rows to print without --out (default 40)")
    p.set_defaults(func=cmd_report)

    cube = sub.choices.get("cube")
    if cube is not None:
        from warehouse import GROUPINGS

        cube.add_argument("--refresh", nargs="+", metavar="DATE", default=None,
                          help="incremental refresh of the gas-day cube after late data for UTC days "
                               "START [END) (END default START + 1 day) instead of a full rebuild")
        cube.add_argument("--grouping", default=None,
                          help=f"then print one grouping of the gas-day cube: 1–5 or {', '.join(GROUPINGS)}")
        cube.add_argument("--level", default=None, help="with --grouping: only this level (total, company, …, hour)")
        cube.add_argument("--company", default=None, help="with --grouping: only this company")
        cube.add_argument("--engine", choices=("duckdb", "polars"), default="duckdb",
                          help="engine of the pass over the hourly archive (default duckdb)")
        cube.add_argument("--limit", type=int, default=40, help="rows of --grouping to print (default 40)")


def cube_options(args: argparse.Namespace) -> tuple[Any, Any]:
    """``(start, end)`` UTC datetimes of ``askug cube --refresh``, or ``(None, None)``."""
    import datetime as dt

    from analytics import AnalyticsError

    refresh = getattr(args, "refresh", None)
    if not refresh:
        return None, None
    if len(refresh) > 2:
        raise AnalyticsError("--refresh takes START [END], e.g. --refresh 2022-01-15")
    start = _c_date(refresh[0], "--refresh START")
    end = _c_date(refresh[1], "--refresh END") if len(refresh) == 2 else start + dt.timedelta(days=1)
    if end <= start:
        raise AnalyticsError(f"--refresh END {end} must be after START {start}")
    return (dt.datetime.combine(start, dt.time(), dt.UTC), dt.datetime.combine(end, dt.time(), dt.UTC))


def print_grouping(store: Any, args: argparse.Namespace) -> None:
    """``askug cube --grouping G``: print that grouping of the stored gas-day cube."""
    from warehouse import read_gas_cube
    from warehouse._cubes import grouping_hierarchy

    filters = {"company_id": args.company} if getattr(args, "company", None) else {}
    frame = read_gas_cube(store, grouping=args.grouping, level=args.level, **filters)
    frame = frame.with_columns(subtotal=frame.get_column("depth") < frame.get_column("depth").max())
    hierarchy = grouping_hierarchy(args.grouping)
    cols = ["level", *[{"company": "company_id", "branch": "branch_id"}.get(p, p) for p in hierarchy],
            "volume_m3", "energy_kwh", "completeness", "share_estimated"]
    _c_print(frame, f"gas-day cube, grouping {args.grouping}", cols, args.limit)


# --- E ---------------------------------------------------------------------------------
# askug export: a stored table to CSV/XLSX/DBF/PDF/JSON/XML/TXT, streamed in time windows.
# askug billing run | history | schedule: the 1C billing upload and its record.
# Bad arguments raise ExportError/BillingError (AnalyticsError; see G's note above).
def _e_day(text: str | None, option: str) -> Any:
    import datetime as dt

    from analytics import ExportError

    if text is None:
        return None
    try:
        return dt.datetime.combine(dt.date.fromisoformat(text), dt.time(), dt.UTC)
    except ValueError:
        raise ExportError(f"{option} must be a date like 2022-01-01, got {text!r}") from None


def _e_period(text: str) -> tuple[Any, Any]:
    """``--period 2022-01`` (a UTC month) or ``2022-01-05`` (a UTC day) → ``[start, end)``."""
    import datetime as dt

    from analytics import ExportError

    try:
        if len(text) == 7:
            first = dt.date.fromisoformat(text + "-01")
            last = (first + dt.timedelta(days=32)).replace(day=1)
        else:
            first = dt.date.fromisoformat(text)
            last = first + dt.timedelta(days=1)
    except ValueError:
        raise ExportError(
            f"--period must look like 2022-01 (a month) or 2022-01-05 (a day), got {text!r}"
        ) from None
    return (dt.datetime.combine(first, dt.time(), dt.UTC), dt.datetime.combine(last, dt.time(), dt.UTC))


def _e_list(values: list[str] | None) -> list[str] | None:
    out = [v.strip() for item in values or [] for v in item.split(",") if v.strip()]
    return out or None


def cmd_export(args: argparse.Namespace, settings: Any) -> None:
    """askug export TABLE --out FILE: stream a stored table to a file, atomically."""
    import datetime as dt

    from analytics import ExportError, write_export
    from analytics._export import iter_table
    from dashboards.cli import _open, done, step

    if args.period and (args.start or args.end):
        raise ExportError("give either --period or --start/--end, not both")
    if args.period:
        start, end = _e_period(args.period)
    else:
        start, end = _e_day(args.start, "--start"), _e_day(args.end, "--end")
        if start is not None and end is None:
            end = start + dt.timedelta(days=1)
    window = dt.timedelta(days=args.batch_days) if args.batch_days else None
    with _open(settings, read_only=False) as store, step("export") as progress:
        batches = iter_table(
            store, args.table, start=start, end=end, meter_ids=_e_list(args.meter),
            company_ids=_e_list(args.company), window=window, progress=progress,
        )
        summary = write_export(
            batches, args.out, args.format, title=args.title or f"askug {args.table}",
            columns=_e_list(args.columns), float_digits=args.digits,
        )
    extra = f", {summary.pages:,} page(s)" if summary.pages else ""
    guarded = f"; {summary.guarded_cells:,} formula-like cells made safe" if summary.guarded_cells else ""
    done(f"{summary.rows:,} rows → {summary.path} ({summary.fmt}, {summary.bytes:,} bytes{extra}){guarded}")


def cmd_billing_run(args: argparse.Namespace, settings: Any) -> None:
    """askug billing run: build the period's billing files and deliver them; record each."""
    import os

    from analytics._billing import run_billing
    from dashboards.cli import _open, done, step

    # The token is a secret: read from the environment here (the entry point), never
    # from the command line (visible in `ps`) and never recorded.
    token = os.environ.get("ASKUG_BILLING_TOKEN")
    headers = {"Authorization": f"Bearer {token}"} if token else None
    with _open(settings) as store, step("billing") as progress:
        uploads = run_billing(
            store, args.period, args.to, formats=_e_list(args.format) or ("xml", "csv"),
            company_ids=_e_list(args.company), force=args.force, headers=headers,
            timeout_s=args.timeout, progress=progress,
        )
    for u in uploads:
        volume = "no data" if u.volume_m3 is None else f"{u.volume_m3:,.3f} m³"
        done(f"{u.period} {u.fmt} r{u.revision}: {u.status} — {u.accounts:,} accounts, {volume}; {u.detail}")


def cmd_billing_history(args: argparse.Namespace, settings: Any) -> None:
    """askug billing history: what was sent, when, to where, with which checksum."""
    from analytics._billing import billing_history
    from dashboards.cli import _open

    with _open(settings, read_only=True) as store:
        frame = billing_history(store, period=args.period)
    cols = ["ts", "period", "fmt", "revision", "status", "accounts", "volume_m3", "file_name", "destination"]
    shown = frame.select(cols).with_columns(frame.get_column("ts").dt.strftime("%Y-%m-%d %H:%M"))
    _g_print(shown, "billing uploads (newest first)", limit=args.limit)


def cmd_billing_schedule(args: argparse.Namespace, settings: Any) -> None:
    """askug billing schedule: print the crontab line of the monthly billing run."""
    import shlex
    import shutil
    import sys
    from pathlib import Path

    from analytics import BillingError
    from dashboards.cli import console

    try:
        hour, minute = (int(x) for x in args.at.split(":"))
        if not (0 <= hour < 24 and 0 <= minute < 60):
            raise ValueError
    except ValueError:
        raise BillingError(f"--at must be a UTC time like 06:00, got {args.at!r}") from None
    days = args.days
    if not all(p.isdigit() and 1 <= int(p) <= 28 for p in days.replace("-", ",").split(",")):
        raise BillingError(f"--days must be days 1–28 like 2-10 or 3,5,8, got {days!r}")
    exe = shutil.which("askug") or str(Path(sys.argv[0]).resolve())
    store = "" if settings.dsn else f" --db {shlex.quote(str(Path(settings.db).resolve()))}"
    extra = "".join(f" --company {shlex.quote(c)}" for c in _e_list(args.company) or [])
    log = shlex.quote(args.log)
    line = (f"{minute} {hour} {days} * * {shlex.quote(exe)}{store} billing run --period previous "
            f"--to {shlex.quote(args.to)}{extra} >> {log} 2>&1")
    console.print("# askug billing: add to the crontab of the service user (crontab -e); times are the")
    console.print("# server's cron time zone (UTC recommended). Repeated runs re-send only changed data.")
    if settings.dsn:
        console.print("# PostgreSQL: set ASKUG_DSN (and ASKUG_BILLING_TOKEN for an endpoint) in the crontab.")
    print(line)


def _register_e(sub: Any) -> None:
    from analytics import EXPORT_FORMATS

    p = sub.add_parser(
        "export",
        help="stream a stored table to CSV, XLSX, DBF, PDF, JSON, JSON Lines, XML or TXT",
        description="Export a table in UTC time windows so memory stays bounded; the file is written "
        "under a temporary name and renamed when complete (a failure leaves no file). "
        "Example: askug export hourly --period 2022-01 --company C01 --out january.xlsx",
    )
    p.add_argument("table", help="hourly, daily, monthly or any stored table name (e.g. metering_points)")
    p.add_argument("--out", required=True, help="output file; the suffix picks the format unless --format is given")
    p.add_argument("--format", choices=EXPORT_FORMATS, default=None, help="output format (default: from --out)")
    p.add_argument("--period", default=None, help="a UTC month (2022-01) or day (2022-01-05)")
    p.add_argument("--start", default=None, help="first UTC day, e.g. 2022-01-01")
    p.add_argument("--end", default=None, help="UTC day after the last one (exclusive; default start + 1 day)")
    p.add_argument("--company", action="append", metavar="ID", help="keep this company; repeatable or comma-separated")
    p.add_argument("--meter", action="append", metavar="ID", help="keep this metering point; repeatable or comma-separated")
    p.add_argument("--columns", action="append", metavar="COL", help="columns to write, in order; comma-separated")
    p.add_argument("--title", default=None, help="title printed on PDF pages (and XLSX/XML metadata)")
    p.add_argument("--digits", type=int, default=None, help="decimals of floats in TXT/PDF/DBF (default: exact; PDF 3)")
    p.add_argument("--batch-days", type=int, default=None,
                   help="days per batch read from the store (default 1 for hourly tables, 31 otherwise)")
    p.set_defaults(func=cmd_export)

    billing = sub.add_parser(
        "billing",
        help="the billing upload: a gas month's consumption per account as 1C exchange XML and CSV",
        description="Build the period's consumption per account (metering point, gas days in local time), "
        "write it as the documented 1C exchange XML and CSV to a folder or POST it to an HTTP endpoint, "
        "and record what was sent. Re-running sends only changed data, as the next revision.",
    )
    bsub = billing.add_subparsers(dest="billing_command", required=True, metavar="ACTION")
    p = bsub.add_parser("run", help="build and deliver the period's billing files (idempotent)")
    p.add_argument("--period", required=True, help="billing month 2022-01, or 'previous' (for a scheduled run)")
    p.add_argument("--to", required=True, metavar="DIR|URL", help="an existing folder or an http(s):// endpoint (POST)")
    p.add_argument("--format", action="append", choices=("xml", "csv"), help="xml and/or csv (default both)")
    p.add_argument("--company", action="append", metavar="ID", help="bill only this company; repeatable")
    p.add_argument("--force", action="store_true", help="send even if the same rows were already delivered")
    p.add_argument("--timeout", type=float, default=30.0, help="HTTP timeout in seconds (default 30)")
    p.set_defaults(func=cmd_billing_run)

    p = bsub.add_parser("history", help="show the record of billing uploads")
    p.add_argument("--period", default=None, help="only this billing month, e.g. 2022-01")
    p.add_argument("--limit", type=int, default=30, help="rows to show (default 30)")
    p.set_defaults(func=cmd_billing_history)

    p = bsub.add_parser("schedule", help="print the crontab line that runs the billing upload every month")
    p.add_argument("--to", required=True, metavar="DIR|URL", help="destination of the scheduled runs")
    p.add_argument("--days", default="2-10",
                   help="days of the month to run, cron syntax (default 2-10: late data goes out as a new revision)")
    p.add_argument("--at", default="06:00", help="time of day, HH:MM in cron's time zone (default 06:00)")
    p.add_argument("--company", action="append", metavar="ID", help="bill only this company; repeatable")
    p.add_argument("--log", default="askug-billing.log", help="file the runs append their output to")
    p.set_defaults(func=cmd_billing_schedule)
