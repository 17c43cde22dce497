"""Gas balance over the network hierarchy: metered inflow of each node against its consumers.

**How inflow is metered.** A metering point in askug is a consumer; the gas that
enters a network node (a GDP, or a station feeding GDPs) is measured by the node's
*inlet* metering unit, whose telemetry unit reports an hourly archive like any other.
It is stored in the warehouse table ``node_inflow`` (``node_id``, ``ts`` UTC hour
start, ``volume_m3`` at standard conditions, ``quality``, ``source``), and
:func:`balance_from_store` reads it from there.  ``ingest.load_simulation`` fills it
from a simulation's ``inflow.parquet`` (``askug simulate`` writes one by default: the
true gas of the node's consumers plus losses, through a ±0.2 % inlet meter).  An
inflow that arrives outside the store (an act from the transmission company) can be
passed instead as the frame :data:`INFLOW_SCHEMA`, read from CSV or Parquet with
:func:`read_inflow_file`.

**What is balanced.** For every node and period, the inflow is compared with the sum
of *all* metering points in the node's subtree (its own consumers and those of every
node below it), so a station's balance covers the GDPs under it.  Next to it:
``children_inflow_m3``, the sum of the metered inflow of the node's direct children,
which separates losses on the station's own pipes from losses further down.
``imbalance_m3 = inflow_m3 − consumed_m3`` (positive: gas entered that no consumer
registered — losses, theft, a slow or tampered meter, missing data) and
``imbalance_pct`` relative to the inflow.  Every row shows how much of it rests on
estimated or missing consumer data, so a planner can tell a real loss from a data gap.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path
from typing import Final

import polars as pl

from analytics._periods import Bound, PeriodFreq, check_freq, check_range, data_range, zone_calendar
from analytics.errors import AnalyticsError
from warehouse import QUALITY_CODES, Store, load_consumption

UTC: Final = pl.Datetime("us", "UTC")

#: The node-inflow frame: metered gas into a network node per UTC hour.
INFLOW_SCHEMA: Final = pl.Schema(
    {"node_id": pl.String(), "ts": UTC, "volume_m3": pl.Float64(), "quality": pl.String()}
)

#: Columns (and dtypes) of the frame :func:`gas_balance` returns.
BALANCE_SCHEMA: Final = pl.Schema(
    {
        "node_id": pl.String(),
        "kind": pl.String(),  # gdp | station | section
        "parent_node_id": pl.String(),
        "period": pl.Date(),  # gas day (freq hour/day) or first day of the gas month
        "ts": UTC,  # UTC start of the period (hour, gas day or gas month) inside the range
        "hours": pl.Int32(),  # hours of the period inside the range
        "meters": pl.Int32(),  # metering points in the node's subtree
        "inflow_m3": pl.Float64(),  # metered inflow; null if no inflow hour has a value
        "consumed_m3": pl.Float64(),  # sum of the subtree's consumers; null if none has a value
        "imbalance_m3": pl.Float64(),  # inflow − consumed
        "imbalance_pct": pl.Float64(),  # 100 × imbalance / inflow (null when inflow ≤ 0)
        "children_inflow_m3": pl.Float64(),  # Σ inflow of direct child nodes (null: a leaf or a gap)
        "inflow_missing_hours": pl.Int32(),
        "inflow_estimated_pct": pl.Float64(),  # share of inflow hours that are estimated
        "consumer_missing_pct": pl.Float64(),  # share of meters × hours without a value
        "consumer_estimated_pct": pl.Float64(),  # share of meters × hours that are estimated
        "complete": pl.Boolean(),  # no missing inflow hour and no missing consumer value
    }
)

_ESTIMATED = ("estimated",)


def validate_inflow(frame: pl.DataFrame) -> pl.DataFrame:
    """Check a node-inflow frame and return it in :data:`INFLOW_SCHEMA`.

    ``quality`` may be left out (every value is then ``valid``; a null volume is
    ``missing``).  Raises :class:`AnalyticsError` naming the missing columns, a naive
    ``ts``, unknown quality codes, negative volumes or repeated ``(node_id, ts)``.
    """
    missing = [c for c in ("node_id", "ts", "volume_m3") if c not in frame.columns]
    if missing:
        raise AnalyticsError(
            f"node inflow needs columns node_id, ts, volume_m3 (quality optional); missing {missing}"
        )
    if "quality" not in frame.columns:
        frame = frame.with_columns(
            pl.when(pl.col("volume_m3").is_null()).then(pl.lit("missing")).otherwise(pl.lit("valid")).alias("quality")
        )
    ts_type = frame.schema["ts"]
    if not isinstance(ts_type, pl.Datetime) or ts_type.time_zone is None:
        raise AnalyticsError(
            f"node inflow column 'ts' must be a UTC-aware datetime, got {ts_type}; "
            "use .dt.replace_time_zone('UTC') if the values are UTC"
        )
    try:
        out = frame.select(
            pl.col("node_id").cast(pl.String),
            pl.col("ts").dt.convert_time_zone("UTC").dt.cast_time_unit("us"),
            pl.col("volume_m3").cast(pl.Float64),
            pl.col("quality").cast(pl.String),
        )
    except pl.exceptions.PolarsError as exc:
        raise AnalyticsError(f"node inflow has values of the wrong type: {exc}") from None
    problems = []
    if out.get_column("node_id").null_count() or out.get_column("ts").null_count():
        problems.append("null node_id or ts")
    bad_q = out.filter(~pl.col("quality").is_in(list(QUALITY_CODES))).get_column("quality").unique().to_list()
    if bad_q:
        problems.append(f"quality values {bad_q[:3]} outside {list(QUALITY_CODES)}")
    if out.filter(pl.col("volume_m3") < 0).height:
        problems.append("negative volume_m3 (inflow cannot be negative)")
    dup = out.filter(pl.struct("node_id", "ts").is_duplicated())
    if dup.height:
        first = dup.row(0, named=True)
        problems.append(f"{dup.height} rows repeat a (node_id, ts), e.g. {first['node_id']} at {first['ts']}")
    if problems:
        raise AnalyticsError("node inflow: " + "; ".join(problems) + "; fix the inflow data")
    return out


def read_inflow_file(path: str | Path) -> pl.DataFrame:
    """Read metered node inflow from a Parquet or CSV file (:data:`INFLOW_SCHEMA`).

    A CSV has a header ``node_id,ts,volume_m3[,quality]``; ``ts`` is ISO 8601 with ``Z``
    or an offset (UTC hour start); an empty volume is missing.

    Raises
    ------
    AnalyticsError
        The file is absent, unreadable, or a CSV line does not parse (the message gives
        the line number).
    """
    p = Path(path)
    if not p.is_file():
        raise AnalyticsError(f"inflow file {p} does not exist; pass the file with the nodes' metered inflow")
    if p.suffix.lower() == ".parquet":
        try:
            return validate_inflow(pl.read_parquet(p))
        except (OSError, pl.exceptions.PolarsError) as exc:
            raise AnalyticsError(f"inflow file {p} is not readable Parquet: {exc}") from None
    try:
        raw = pl.read_csv(p, infer_schema=False)
    except (OSError, pl.exceptions.PolarsError) as exc:
        raise AnalyticsError(f"inflow file {p} is not a readable CSV: {exc}") from None
    missing = [c for c in ("node_id", "ts", "volume_m3") if c not in raw.columns]
    if missing:
        raise AnalyticsError(f"{p} line 1: header lacks {missing}; expected node_id,ts,volume_m3[,quality]")
    parsed = raw.with_columns(
        pl.col("ts").str.to_datetime(time_zone="UTC", strict=False).alias("_ts"),
        pl.col("volume_m3").cast(pl.Float64, strict=False).alias("_v"),
    ).with_row_index("_line", offset=2)
    bad = parsed.filter(
        pl.col("_ts").is_null() | (pl.col("_v").is_null() & pl.col("volume_m3").is_not_null())
    )
    if bad.height:
        row = bad.row(0, named=True)
        what = (
            f"ts {row['ts']!r} is not an ISO 8601 UTC time such as 2022-01-01T05:00:00Z"
            if row["_ts"] is None
            else f"volume_m3 {row['volume_m3']!r} is not a number such as 12.5"
        )
        raise AnalyticsError(f"{p} line {row['_line']}: {what}; fix the value ({bad.height} bad line(s) in all)")
    frame = parsed.drop("ts", "volume_m3").rename({"_ts": "ts", "_v": "volume_m3"}).drop("_line")
    return validate_inflow(frame)


def node_closure(nodes: pl.DataFrame) -> pl.DataFrame:
    """Every (ancestor ``node_id``, descendant ``member``) pair of the network, self included.

    Raises :class:`AnalyticsError` for a parent that is not a node, or a cycle.
    """
    ids = nodes.get_column("node_id").to_list()
    parent = dict(zip(ids, nodes.get_column("parent_node_id").to_list(), strict=True))
    rows: list[tuple[str, str]] = []
    for node in ids:
        seen = {node}
        cur: str | None = node
        while cur is not None:
            rows.append((cur, node))
            nxt = parent.get(cur)
            if nxt is not None and nxt not in parent:
                raise AnalyticsError(
                    f"network node {cur} has parent {nxt}, which is not a node; fix network_nodes"
                )
            if nxt in seen:
                raise AnalyticsError(f"the network has a cycle through node {nxt}; fix parent_node_id")
            if nxt is not None:
                seen.add(nxt)
            cur = nxt
    return pl.DataFrame(rows, schema={"node_id": pl.String, "member": pl.String}, orient="row")


def gas_balance(
    consumption: pl.DataFrame,
    inflow: pl.DataFrame,
    *,
    nodes: pl.DataFrame,
    meters: pl.DataFrame,
    freq: PeriodFreq = "day",
    start: Bound | None = None,
    end: Bound | None = None,
) -> pl.DataFrame:
    """Balance each node's metered inflow against the consumers of its subtree.

    Parameters
    ----------
    consumption
        Hourly consumption (``warehouse.CONSUMPTION``): ``meter_id``, ``ts`` (UTC hour
        start), ``volume_m3`` (m³ at standard conditions, null = missing), ``quality``.
    inflow
        Hourly node inflow (:data:`INFLOW_SCHEMA`).
    nodes
        ``node_id``, ``parent_node_id``, ``kind``, and for gas periods the node's
        company ``time_zone`` and ``contract_hour`` (absent: UTC and 0).
    meters
        ``meter_id`` and the ``node_id`` feeding it.
    freq
        ``"hour"``, ``"day"`` (gas day) or ``"month"`` (gas month).
    start, end
        Half-open range: dates are gas days in each node's own calendar, datetimes are
        UTC hours.  Default: the hours the data covers.

    Returns
    -------
    polars.DataFrame
        :data:`BALANCE_SCHEMA`, one row per node and period, sorted by ``node_id`` and
        ``ts``.  Shares are in % of the values expected (meters × hours, or hours).

    Raises
    ------
    AnalyticsError
        Unknown ``freq``, a reversed or empty range, a node tree with a cycle or a
        dangling parent.

    Examples
    --------
    >>> table = gas_balance(hourly, inflow, nodes=nodes, meters=meters, freq="day")  # doctest: +SKIP
    """
    check_freq(freq)
    check_range(start, end)
    inflow = validate_inflow(inflow)
    if "time_zone" not in nodes.columns:
        nodes = nodes.with_columns(pl.lit("UTC").alias("time_zone"))
    if "contract_hour" not in nodes.columns:
        nodes = nodes.with_columns(pl.lit(0).alias("contract_hour"))
    nodes = nodes.with_columns(pl.col("contract_hour").cast(pl.Int8), pl.col("parent_node_id").cast(pl.String))
    if start is None or end is None:
        covered = data_range(consumption, inflow)
        if covered is None:
            raise AnalyticsError("no consumption and no inflow data to balance; load data or pass start/end")
        start = start if start is not None else covered[0]
        end = end if end is not None else covered[1]
        check_range(start, end)
    cal = zone_calendar(nodes, start, end, freq)
    zone = ["time_zone", "contract_hour"]
    node_cal = nodes.select("node_id", *zone).join(cal, on=zone).drop(zone)  # node, ts → period

    closure = node_closure(nodes)
    meter_node = meters.select("meter_id", pl.col("node_id").alias("member")).join(closure, on="member").drop("member")
    n_meters = meter_node.group_by("node_id").agg(pl.len().cast(pl.Int32).alias("meters"))

    cons = (
        consumption.lazy()
        .select("meter_id", "ts", "volume_m3", "quality")
        .join(meter_node.lazy(), on="meter_id")
        .join(node_cal.lazy(), on=["node_id", "ts"])
        .group_by("node_id", "period_ts")
        .agg(
            pl.col("volume_m3").sum().alias("_consumed"),
            pl.col("volume_m3").count().alias("_values"),
            (pl.col("volume_m3").is_not_null() & pl.col("quality").is_in(_ESTIMATED)).sum().alias("_estimated"),
        )
    )
    inf = (
        inflow.lazy()
        .join(node_cal.lazy(), on=["node_id", "ts"])
        .group_by("node_id", "period_ts")
        .agg(
            pl.col("volume_m3").sum().alias("_inflow"),
            pl.col("volume_m3").count().alias("_inflow_hours"),
            (pl.col("volume_m3").is_not_null() & pl.col("quality").is_in(_ESTIMATED)).sum().alias("_inflow_est"),
        )
    )
    # Periods are keyed by their UTC start: unique per node, also for freq="hour".
    skeleton = node_cal.lazy().group_by("node_id", "period_ts").agg(
        pl.col("period").first(), pl.col("period_hours").first().alias("hours")
    )
    inflow_full = skeleton.join(inf, on=["node_id", "period_ts"], how="left").with_columns(
        pl.when(pl.col("_inflow_hours") > 0).then(pl.col("_inflow")).alias("inflow_m3")
    )
    children = (
        nodes.lazy()
        .filter(pl.col("parent_node_id").is_not_null())
        .select(pl.col("node_id").alias("_child"), pl.col("parent_node_id").alias("node_id"))
        .join(inflow_full.select(pl.col("node_id").alias("_child"), "period_ts", "inflow_m3"), on="_child")
        .group_by("node_id", "period_ts")
        # a child without inflow makes the sum meaningless: null, not a partial sum
        .agg(pl.when(pl.col("inflow_m3").null_count() == 0).then(pl.col("inflow_m3").sum()).alias("children_inflow_m3"))
    )
    pct = 100.0
    expected = pl.col("meters").cast(pl.Int64) * pl.col("hours")
    out = (
        inflow_full.join(cons, on=["node_id", "period_ts"], how="left")
        .join(children, on=["node_id", "period_ts"], how="left")
        .join(n_meters.lazy(), on="node_id", how="left")
        .join(nodes.lazy().select("node_id", "kind", "parent_node_id"), on="node_id", how="left")
        .with_columns(
            pl.col("meters").fill_null(0),
            pl.col("_values").fill_null(0),
            pl.col("_estimated").fill_null(0),
            pl.col("_inflow_hours").fill_null(0),
            pl.col("_inflow_est").fill_null(0),
        )
        .with_columns(
            pl.when(pl.col("_values") > 0).then(pl.col("_consumed")).alias("consumed_m3"),
            (pl.col("hours") - pl.col("_inflow_hours")).cast(pl.Int32).alias("inflow_missing_hours"),
            (pct * pl.col("_inflow_est") / pl.col("hours")).alias("inflow_estimated_pct"),
            pl.when(expected > 0).then(pct * (expected - pl.col("_values")) / expected).alias("consumer_missing_pct"),
            pl.when(expected > 0).then(pct * pl.col("_estimated") / expected).alias("consumer_estimated_pct"),
        )
        .with_columns(
            (pl.col("inflow_m3") - pl.col("consumed_m3")).alias("imbalance_m3"), pl.col("period_ts").alias("ts")
        )
        .with_columns(
            pl.when(pl.col("inflow_m3") > 0).then(pct * pl.col("imbalance_m3") / pl.col("inflow_m3")).alias("imbalance_pct"),
            ((pl.col("inflow_missing_hours") == 0) & (pl.col("_values") == expected)).alias("complete"),
        )
        .select(list(BALANCE_SCHEMA))
        .sort("node_id", "ts")
        .collect()
    )
    return out.cast(dict(BALANCE_SCHEMA))  # type: ignore[arg-type]


def balance_from_store(
    store: Store,
    inflow: pl.DataFrame | None = None,
    *,
    freq: PeriodFreq = "day",
    start: Bound | None = None,
    end: Bound | None = None,
    node_ids: Sequence[str] | None = None,
) -> pl.DataFrame:
    """:func:`gas_balance` on the store's network, metering points, hourly archive and inflow.

    Parameters
    ----------
    store
        The warehouse (``network_nodes``, ``branches``, ``companies``,
        ``metering_points``, ``hourly_archive``, ``node_inflow``).
    inflow
        Metered node inflow (:data:`INFLOW_SCHEMA`, e.g. from :func:`read_inflow_file`)
        to use *instead of* the store's ``node_inflow`` table.  Default (None): the
        stored inflow.
    freq, start, end
        As in :func:`gas_balance`; each node uses its company's gas day.
    node_ids
        Only these nodes (their subtrees are still summed in full).

    Raises
    ------
    AnalyticsError
        An unknown node in ``node_ids``, a store without network nodes, no ``inflow``
        given and none stored, or the checks of :func:`gas_balance`.

    Examples
    --------
    >>> daily = balance_from_store(store, freq="day")  # doctest: +SKIP
    >>> acts = balance_from_store(store, read_inflow_file("acts.csv"), freq="month")  # doctest: +SKIP
    """
    check_freq(freq)
    check_range(start, end)
    companies = store.read("companies", columns=["company_id", "time_zone", "contract_hour"])
    branches = store.read("branches", columns=["branch_id", "company_id"])
    nodes = (
        store.read("network_nodes")
        .join(branches, on="branch_id", how="left")
        .join(companies, on="company_id", how="left")
        .with_columns(pl.col("time_zone").fill_null("UTC"), pl.col("contract_hour").fill_null(0))
    )
    if nodes.height == 0:
        raise AnalyticsError("the store has no network nodes; load the enterprise first (askug load)")
    if node_ids is not None:
        unknown = sorted(set(node_ids) - set(nodes.get_column("node_id").to_list()))
        if unknown:
            raise AnalyticsError(
                f"unknown network node(s) {unknown[:5]}; known nodes look like "
                f"{nodes.get_column('node_id').head(3).to_list()}"
            )
    meters = store.read("metering_points", columns=["meter_id", "node_id"])
    if inflow is None:
        # Without a range the whole table is read: its span decides the gas days below.
        lo, hi = _read_bounds(start, end)
        inflow = _stored_inflow(store, lo, hi)
    inflow = validate_inflow(inflow)
    if start is None and end is None and freq != "hour":
        # Whole gas days only: the data's first and last UTC days cut the gas days of
        # zones away from UTC, and a 7-hour "day" would read as a bad balance.
        covered = data_range(inflow)
        if covered is not None:
            start = covered[0].date() + dt.timedelta(days=1)
            end = (covered[1] - dt.timedelta(hours=1)).date()
            if end <= start:
                start, end = None, None
    lo, hi = _read_bounds(start, end)
    consumption = load_consumption(store, start=lo, end=hi)
    if lo is not None and hi is not None:
        inflow = inflow.filter(pl.col("ts").is_between(lo, hi, closed="left"))
    out = gas_balance(consumption, inflow, nodes=nodes, meters=meters, freq=freq, start=start, end=end)
    if node_ids is not None:
        out = out.filter(pl.col("node_id").is_in(list(node_ids)))
    return out


def _stored_inflow(store: Store, lo: dt.datetime | None, hi: dt.datetime | None) -> pl.DataFrame:
    """The store's ``node_inflow`` rows in ``[lo, hi)`` as :data:`INFLOW_SCHEMA`.

    Raises :class:`AnalyticsError` when the table holds no row at all (a range without
    inflow is not an error: its balance rows show the inflow as missing).
    """
    frame = store.read("node_inflow", start=lo, end=hi, columns=list(INFLOW_SCHEMA))
    if frame.height == 0 and store.count("node_inflow") == 0:
        raise AnalyticsError(
            "the store has no node inflow (table node_inflow is empty); load a simulation that has "
            "inflow.parquet (askug simulate writes it unless --no-inflow) or pass the inflow as a file "
            "(askug balance --inflow FILE)"
        )
    return frame


def _read_bounds(start: Bound | None, end: Bound | None) -> tuple[dt.datetime | None, dt.datetime | None]:
    """UTC hours to read so every gas day in ``[start, end)`` of any zone is covered."""
    margin = dt.timedelta(days=2)

    def to_utc(value: Bound | None, shift: dt.timedelta) -> dt.datetime | None:
        if value is None:
            return None
        if isinstance(value, dt.datetime):
            return value
        return dt.datetime.combine(value, dt.time(), dt.UTC) + shift

    return to_utc(start, -margin), to_utc(end, margin)
