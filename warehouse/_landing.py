"""Warehouse side of telemetry landing: the SQL that :class:`ingest.Landing` runs.

Only the warehouse talks SQL, so landing's reads (device registry rows under a lock,
known packet hashes, stored frame counters, the register readings around a batch) and
its one-transaction write of a whole batch live here, for both stores:

PostgreSQL
    Every table of the batch is ``COPY``-ed in PostgreSQL's *binary* format (built with
    numpy from the frame's columns, see :func:`binary_copy`: no text to parse on the
    server) into a per-connection temporary staging table (``ON COMMIT DELETE ROWS``),
    then moved with ``INSERT … SELECT … ORDER BY key ON CONFLICT …``.
    The two big tables take a shortcut when their rows are new, which is the common case
    (units send what is new): ``readings`` and the ``hourly_archive`` rows after each
    meter's latest stored hour (:data:`PG_LAST_HOUR`; the hours up to it are re-derived
    from stored readings and may exist) are first COPYed straight into the table under
    a savepoint; a key conflict
    (a re-sent hour, late data) rolls back to the savepoint and the rows take the staged
    ``ON CONFLICT`` path, so the result is the same either way, exactly once.  After a
    conflict the shortcut is skipped for a few batches (:data:`DIRECT_BACKOFF`).
    Raw packet bytes are TOAST-compressed with lz4 where the server has it (cheaper
    than pglz).  Device registry rows are locked ``FOR UPDATE`` in key order, so two
    services landing frames of the same unit serialise instead of double-counting.
DuckDB
    The frames are registered as Arrow views and inserted with anti-joins on the natural
    key (the big tables carry no key index, see ``sql/duckdb/001_core.sql``); one writer.

Every function here must be called inside ``store.transaction()``; nothing commits on
its own.  Callers pass frames in the contracts of :mod:`warehouse._schemas`.
"""

from __future__ import annotations

import datetime as dt
import itertools
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
import polars as pl

from warehouse._schemas import spec, validate_frame
from warehouse._store import Store

# --- SQL (PostgreSQL) ---------------------------------------------------------------------
PG_LOCK_DEVICES: Final = """
SELECT c.device_id, c.profile, c.serial, coalesce(d.kind, c.kind) AS kind, c.device_group,
       d.meter_id, d.counter_modulus_m3, s.last_counter
FROM device_credentials c
LEFT JOIN devices d ON d.device_id = c.device_id
LEFT JOIN device_counters s ON s.device_id = c.device_id
WHERE c.device_id = ANY(%s::text[])
ORDER BY c.device_id
FOR UPDATE OF c"""
PG_KNOWN_PACKETS: Final = (
    "SELECT sha256, status FROM raw_packets WHERE sha256 = ANY(%s::text[])"
)
PG_STORED_COUNTERS: Final = """
SELECT r.device_id, r.counter, r.sha256
FROM raw_packets r
JOIN unnest(%s::text[], %s::bigint[]) AS b(device_id, counter)
  ON r.device_id = b.device_id AND r.counter = b.counter
WHERE r.status = 'stored'"""
PG_REGISTER_CONTEXT: Final = """
WITH b AS (
    SELECT * FROM unnest(%(dev)s::text[], %(chan)s::text[], %(lo)s::timestamptz[],
                         %(hi)s::timestamptz[]) AS b(device_id, channel, lo, hi)
)
SELECT b.device_id, b.channel, p.ts, p.value, p.quality, true AS is_prev
FROM b CROSS JOIN LATERAL (
    SELECT r.ts, r.value, r.quality FROM readings r
    WHERE r.device_id = b.device_id AND r.channel = b.channel
      AND r.ts < b.lo AND r.ts >= b.lo - %(lookback)s::interval
    ORDER BY r.ts DESC LIMIT %(history)s) p
UNION ALL
SELECT b.device_id, b.channel, r.ts, r.value, r.quality, false
FROM b JOIN readings r
  ON r.device_id = b.device_id AND r.channel = b.channel AND r.ts >= b.lo AND r.ts <= b.hi
UNION ALL
SELECT b.device_id, b.channel, n.ts, n.value, n.quality, false
FROM b CROSS JOIN LATERAL (
    SELECT r.ts, r.value, r.quality FROM readings r
    WHERE r.device_id = b.device_id AND r.channel = b.channel
      AND r.ts > b.hi AND r.ts <= b.hi + %(lookback)s::interval
    ORDER BY r.ts LIMIT 1) n"""
PG_CREDENTIAL_HASH: Final = "SELECT secret_hash FROM device_credentials WHERE device_id = %s"
DUCKDB_CREDENTIAL_HASH: Final = "SELECT secret_hash FROM device_credentials WHERE device_id = ?"
#: The pending downlink commands of some units, on the partial index
#: ``downlink_commands_pending``; the columns of :data:`PENDING_COMMAND_COLUMNS`.
PG_PENDING_COMMANDS: Final = """
SELECT command_id, device_id, kind, payload, status, created_at, delivered_at, acknowledged_at, attempts
FROM downlink_commands
WHERE device_id = ANY(%s::text[]) AND status IN ('queued', 'delivered')
ORDER BY command_id"""
PENDING_COMMAND_COLUMNS: Final = (
    "command_id", "device_id", "kind", "payload", "status", "created_at", "delivered_at", "acknowledged_at", "attempts",
)
#: Each metering point's latest stored hour: a batch's hours after it cannot be stored yet.
PG_LAST_HOUR: Final = """
SELECT m.meter_id, h.ts
FROM unnest(%s::text[]) AS m(meter_id) CROSS JOIN LATERAL (
    SELECT a.ts FROM hourly_archive a WHERE a.meter_id = m.meter_id ORDER BY a.ts DESC LIMIT 1) h"""
PG_ENSURE_PARTITIONS: Final = "SELECT askug_ensure_partitions(%s, %s::timestamptz[])"
PG_CREATE_STAGE: Final = (
    "CREATE TEMP TABLE IF NOT EXISTS {stage} (LIKE {table} INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
)
PG_COPY_STAGE: Final = "COPY {stage} ({cols}) FROM STDIN (FORMAT binary)"
PG_COPY_DIRECT: Final = "COPY {table} ({cols}) FROM STDIN (FORMAT binary)"
PG_HAS_LZ4: Final = (
    "SELECT 'lz4' = ANY(enumvals) FROM pg_settings WHERE name = 'default_toast_compression'"
)
PG_LZ4: Final = "SET default_toast_compression = 'lz4'"
PG_INSERT_RAW: Final = (
    "INSERT INTO raw_packets ({cols}) SELECT {cols} FROM {stage} ORDER BY sha256 "
    "ON CONFLICT DO NOTHING RETURNING sha256"
)
PG_INSERT_NOTHING: Final = (
    "INSERT INTO {table} ({cols}) SELECT {cols} FROM {stage} ORDER BY {key} "
    "ON CONFLICT DO NOTHING"
)
# One upsert for the hours of a batch, derived from registers (source 'register') and
# the correctors' own archive (source 'archive'; the caller keeps only the archive row
# where both give an hour).  A corrector's archive is the billing record: it replaces a
# stored register-derived hour.  A register-derived hour replaces a stored one only if
# that one is register-derived too and was missing or suspect (a gap healing by late data).
PG_UPSERT_HOURLY: Final = """
INSERT INTO hourly_archive ({cols}) SELECT {cols} FROM {stage} ORDER BY meter_id, ts
ON CONFLICT (meter_id, ts) DO UPDATE SET
    volume_m3 = EXCLUDED.volume_m3, volume_work_m3 = EXCLUDED.volume_work_m3,
    pressure_kpa = EXCLUDED.pressure_kpa, temperature_c = EXCLUDED.temperature_c,
    quality = EXCLUDED.quality, source = EXCLUDED.source
WHERE hourly_archive.source = 'register'
  AND (EXCLUDED.source = 'archive'
       OR (hourly_archive.quality IN ('missing', 'suspect')
           AND (hourly_archive.volume_m3 IS DISTINCT FROM EXCLUDED.volume_m3
                OR hourly_archive.quality IS DISTINCT FROM EXCLUDED.quality)))"""
SQL_UPSERT_COUNTERS: Final = """
INSERT INTO device_counters ({cols}) SELECT {cols} FROM {stage}
ON CONFLICT (device_id) DO UPDATE SET
    last_counter = greatest(device_counters.last_counter, EXCLUDED.last_counter),
    last_device_time = greatest(device_counters.last_device_time, EXCLUDED.last_device_time),
    last_received_at = greatest(device_counters.last_received_at, EXCLUDED.last_received_at),
    frames = device_counters.frames + EXCLUDED.frames"""
SQL_UPSERT_STATS: Final = """
INSERT INTO ingest_counters ({cols}) SELECT {cols} FROM {stage}
ON CONFLICT (day, transport, outcome, reason, shard) DO UPDATE SET
    packets = ingest_counters.packets + EXCLUDED.packets,
    readings = ingest_counters.readings + EXCLUDED.readings"""
PG_ACK_COMMANDS: Final = """
UPDATE downlink_commands c SET status = 'acknowledged', acknowledged_at = a.at
FROM unnest(%s::bigint[], %s::text[], %s::timestamptz[]) AS a(command_id, device_id, at)
WHERE c.command_id = a.command_id AND c.device_id = a.device_id
  AND c.status IN ('queued', 'delivered')"""
PG_MARK_REPROCESSED: Final = (
    "UPDATE quarantine SET reprocessed_at = %s WHERE sha256 = ANY(%s::text[])"
)
PG_RAW_STORED: Final = """
UPDATE raw_packets r SET status = 'stored', device_id = u.device_id, profile = u.profile,
    counter = u.counter
FROM unnest(%s::text[], %s::text[], %s::text[], %s::bigint[]) AS u(sha256, device_id, profile, counter)
WHERE r.sha256 = u.sha256"""
PG_QUARANTINE_REASON: Final = """
UPDATE quarantine q SET reason = u.reason, detail = u.detail
FROM unnest(%s::text[], %s::text[], %s::text[]) AS u(sha256, reason, detail)
WHERE q.sha256 = u.sha256"""

# --- SQL (DuckDB) -------------------------------------------------------------------------
DUCKDB_LOCK_DEVICES: Final = """
SELECT c.device_id, c.profile, c.serial, coalesce(d.kind, c.kind) AS kind, c.device_group,
       d.meter_id, d.counter_modulus_m3, s.last_counter
FROM device_credentials c
LEFT JOIN devices d ON d.device_id = c.device_id
LEFT JOIN device_counters s ON s.device_id = c.device_id
WHERE c.device_id IN (SELECT unnest(?::VARCHAR[]))
ORDER BY c.device_id"""
DUCKDB_KNOWN_PACKETS: Final = (
    "SELECT sha256, status FROM raw_packets WHERE sha256 IN (SELECT unnest(?::VARCHAR[]))"
)
DUCKDB_STORED_COUNTERS: Final = """
SELECT r.device_id, r.counter, r.sha256 FROM raw_packets r
WHERE r.status = 'stored' AND r.device_id IN (SELECT unnest(?::VARCHAR[]))
  AND r.counter IN (SELECT unnest(?::BIGINT[]))"""
DUCKDB_REGISTER_WINDOW: Final = """
SELECT r.device_id, r.channel, r.ts, r.value, r.quality
FROM readings r
WHERE r.device_id IN (SELECT unnest(?::VARCHAR[])) AND r.channel IN (SELECT unnest(?::VARCHAR[]))
  AND r.ts >= ? AND r.ts <= ?"""
DUCKDB_ANTI_INSERT: Final = (
    'INSERT INTO "{table}" ({cols}) SELECT {cols} FROM {stage} s '
    'WHERE NOT EXISTS (SELECT 1 FROM "{table}" t WHERE {match})'
)
DUCKDB_DELETE_REPLACEABLE: Final = """
DELETE FROM hourly_archive h USING {stage} s
WHERE h.meter_id = s.meter_id AND h.ts = s.ts AND h.ts BETWEEN ? AND ?
  AND h.source = 'register' {extra}"""
DUCKDB_ACK_COMMANDS: Final = """
UPDATE downlink_commands SET status = 'acknowledged', acknowledged_at = a.at
FROM {stage} a
WHERE downlink_commands.command_id = a.command_id AND downlink_commands.device_id = a.device_id
  AND downlink_commands.status IN ('queued', 'delivered')"""
DUCKDB_MARK_REPROCESSED: Final = (
    "UPDATE quarantine SET reprocessed_at = ? WHERE sha256 IN (SELECT unnest(?::VARCHAR[]))"
)
DUCKDB_RAW_STORED: Final = """
UPDATE raw_packets SET status = 'stored', device_id = u.device_id, profile = u.profile,
    counter = u.counter
FROM {stage} u WHERE raw_packets.sha256 = u.sha256"""
DUCKDB_QUARANTINE_REASON: Final = """
UPDATE quarantine SET reason = u.reason, detail = u.detail FROM {stage} u
WHERE quarantine.sha256 = u.sha256"""

#: Schema of the device rows :func:`lock_devices` returns.
DEVICE_STATE_SCHEMA: Final = pl.Schema(
    {
        "device_id": pl.String,
        "profile": pl.String,
        "serial": pl.Int64,
        "kind": pl.String,
        "device_group": pl.String,
        "meter_id": pl.String,
        "counter_modulus_m3": pl.Float64,
        "last_counter": pl.Int64,
    }
)
REGISTER_CONTEXT_SCHEMA: Final = pl.Schema(
    {  # type: ignore[arg-type]  # polars' stubs reject a dict mixing dtype classes and instances
        "device_id": pl.String,
        "channel": pl.String,
        "ts": pl.Datetime("us", "UTC"),
        "value": pl.Float64,
        "quality": pl.String,
        "is_prev": pl.Boolean,
    }
)


@dataclass
class LandingRows:
    """Everything one batch writes, as frames in the tables' contracts (may be empty).

    ``hourly_register`` rows come from registers (source ``register``), ``hourly_archive``
    rows from a corrector's own archive (source ``archive``); ``acks`` has columns
    ``command_id``, ``device_id``, ``at``.
    """

    quarantine: pl.DataFrame | None = None
    readings: pl.DataFrame | None = None
    hourly_register: pl.DataFrame | None = None
    hourly_archive: pl.DataFrame | None = None
    events: pl.DataFrame | None = None
    device_daily_archive: pl.DataFrame | None = None
    device_counters: pl.DataFrame | None = None
    ingest_counters: pl.DataFrame | None = None
    acks: pl.DataFrame | None = None
    extra: dict[str, Any] = field(default_factory=dict)


# --- reads under the batch's transaction ---------------------------------------------------
def credential_hash(store: Store, device_id: str) -> str | None:
    """The stored ``secret_hash`` of one registered unit (None when it is not registered).

    One indexed row by a plain query: a TCP ident is checked on the landing thread, so
    this look-up sits between batches and must be cheap.
    """
    if store.backend == "postgres":
        rows = _pg_rows(store, PG_CREDENTIAL_HASH, [device_id])
    else:
        rows = _duck(store).execute(DUCKDB_CREDENTIAL_HASH, [device_id]).fetchall()
    return str(rows[0][0]) if rows else None


def pending_commands(store: Store, device_ids: Sequence[str]) -> list[dict[str, Any]] | None:
    """The pending (queued or delivered) downlink commands of ``device_ids``, oldest first.

    One indexed query without building a frame: a TCP session asks for its unit's
    commands on the landing thread right after its ident, so this sits between batches
    and must be cheap (about a tenth of a generic ``store.read``).  Rows are dicts of
    :data:`PENDING_COMMAND_COLUMNS`, times in UTC.  None on a store without this
    fast path (DuckDB): read ``downlink_commands`` there.
    """
    if store.backend != "postgres":
        return None
    out = []
    for row in _pg_rows(store, PG_PENDING_COMMANDS, [list(device_ids)]):
        r = dict(zip(PENDING_COMMAND_COLUMNS, row, strict=True))
        for k in ("created_at", "delivered_at", "acknowledged_at"):
            if r[k] is not None:
                r[k] = r[k].astimezone(dt.UTC)
        out.append(r)
    return out


def lock_devices(store: Store, device_ids: Sequence[str]) -> pl.DataFrame:
    """Registry rows (+ reference data and counter state) of ``device_ids``, locked.

    Unregistered ids are absent.  On PostgreSQL the credential rows stay locked
    ``FOR UPDATE`` until the transaction ends, so concurrent batches of one unit
    serialise; DuckDB has a single writer.
    """
    ids = sorted(set(device_ids))
    if not ids:
        return pl.DataFrame(schema=DEVICE_STATE_SCHEMA)
    if store.backend == "postgres":
        rows = _pg_rows(store, PG_LOCK_DEVICES, [ids])
    else:
        rows = _duck(store).execute(DUCKDB_LOCK_DEVICES, [ids]).fetchall()
    return pl.DataFrame(rows, schema=DEVICE_STATE_SCHEMA, orient="row")


def known_packets(store: Store, shas: Sequence[str]) -> dict[str, str]:
    """``{sha256: status}`` of the given packet hashes already in ``raw_packets``."""
    keys = sorted(set(shas))
    if not keys:
        return {}
    if store.backend == "postgres":
        rows = _pg_rows(store, PG_KNOWN_PACKETS, [keys])
    else:
        rows = _duck(store).execute(DUCKDB_KNOWN_PACKETS, [keys]).fetchall()
    return {str(s): str(st) for s, st in rows}


def stored_counters(
    store: Store, pairs: Sequence[tuple[str, int]]
) -> dict[tuple[str, int], str]:
    """``{(device_id, counter): sha256}`` of stored frames among ``pairs``."""
    uniq = sorted(set(pairs))
    if not uniq:
        return {}
    devs = [d for d, _ in uniq]
    counters = [c for _, c in uniq]
    if store.backend == "postgres":
        rows = _pg_rows(store, PG_STORED_COUNTERS, [devs, counters])
    else:
        rows = _duck(store).execute(
            DUCKDB_STORED_COUNTERS, [sorted(set(devs)), sorted(set(counters))]
        ).fetchall()
    wanted = set(uniq)
    return {(str(d), int(c)): str(s) for d, c, s in rows if (d, c) in wanted}


def register_context(
    store: Store, spans: pl.DataFrame, *, lookback: dt.timedelta, history: int = 24
) -> pl.DataFrame:
    """Stored register readings around each span of a batch.

    Parameters
    ----------
    spans
        ``device_id``, ``channel``, ``lo``, ``hi`` (UTC): the first and last reading
        instant of that series in the batch.
    lookback
        How far before ``lo`` (after ``hi``) to look for the neighbouring stored reading.
    history
        How many stored readings before ``lo`` to return: they give the plausibility
        check of a small batch the unit's recent rates.

    Returns
    -------
    polars.DataFrame
        ``device_id, channel, ts, value, quality, is_prev``: the last ``history`` stored
        readings before ``lo`` (the oldest of them flagged ``is_prev``), every stored
        reading in ``[lo, hi]`` and the first one after ``hi``.
    """
    if spans.height == 0:
        return pl.DataFrame(schema=REGISTER_CONTEXT_SCHEMA)
    if store.backend == "postgres":
        rows = _pg_rows(
            store,
            PG_REGISTER_CONTEXT,
            {
                "dev": spans["device_id"].to_list(),
                "chan": spans["channel"].to_list(),
                "lo": spans["lo"].to_list(),
                "hi": spans["hi"].to_list(),
                "lookback": lookback,
                "history": history,
            },
        )
        return _oldest_is_prev(pl.DataFrame(rows, schema=REGISTER_CONTEXT_SCHEMA, orient="row"))
    lo = spans["lo"].min()
    hi = spans["hi"].max()
    assert isinstance(lo, dt.datetime) and isinstance(hi, dt.datetime)
    got = pl.from_arrow(
        _duck(store)
        .sql(
            DUCKDB_REGISTER_WINDOW,
            params=[
                spans["device_id"].unique().to_list(),
                spans["channel"].unique().to_list(),
                lo - lookback,
                hi + lookback,
            ],
        )
        .to_arrow_table()
    )
    assert isinstance(got, pl.DataFrame)
    window = got.cast({"ts": pl.Datetime("us", "UTC")}).join(
        spans, on=["device_id", "channel"], how="inner"
    )
    prev = (
        window.filter(pl.col("ts") < pl.col("lo"))
        .sort("ts")
        .group_by("device_id", "channel", maintain_order=True)
        .tail(history)
        .with_columns(pl.lit(True).alias("is_prev"))
    )
    inside = window.filter(pl.col("ts").is_between(pl.col("lo"), pl.col("hi"))).with_columns(
        pl.lit(False).alias("is_prev")
    )
    after = (
        window.filter(pl.col("ts") > pl.col("hi"))
        .sort("ts")
        .group_by("device_id", "channel")
        .first()
        .with_columns(pl.lit(False).alias("is_prev"))
    )
    cols = list(REGISTER_CONTEXT_SCHEMA)
    return _oldest_is_prev(pl.concat([prev.select(cols), inside.select(cols), after.select(cols)]))


def _oldest_is_prev(frame: pl.DataFrame) -> pl.DataFrame:
    """Of the readings before a span, only the oldest stays ``is_prev`` (it opens the
    first recomputed hour); the others are context the hours are recomputed from."""
    oldest = pl.col("ts") == pl.col("ts").filter(pl.col("is_prev")).min().over("device_id", "channel")
    return frame.with_columns((pl.col("is_prev") & oldest).alias("is_prev"))


# --- writes ----------------------------------------------------------------------------------
def insert_raw_packets(store: Store, frame: pl.DataFrame) -> set[str]:
    """Insert ``raw_packets`` rows whose hash is new; return the hashes inserted.

    A hash another writer committed first is not returned: the caller counts that
    packet as a duplicate.
    """
    t = spec("raw_packets")
    data = validate_frame(frame, t).unique("sha256", keep="first", maintain_order=True)
    if data.height == 0:
        return set()
    if store.backend == "postgres":
        with store.connection() as conn:  # type: ignore[attr-defined]
            _pg_lz4(store, conn)
            stage = _pg_stage(conn, "raw_packets", data)
            cols = _cols(list(t.schema))
            rows = conn.execute(PG_INSERT_RAW.format(cols=cols, stage=stage)).fetchall()
        return {str(r[0]) for r in rows}
    con = _duck(store)
    known = known_packets(store, data["sha256"].to_list())
    new = data.filter(~pl.col("sha256").is_in(list(known)))
    _duck_insert(con, "raw_packets", new, ("sha256",))
    return set(new["sha256"].to_list())


def write_batch(store: Store, rows: LandingRows) -> None:
    """Write the rest of a batch (everything but ``raw_packets``) inside the transaction."""
    if store.backend == "postgres":
        _pg_write(store, rows)
    else:
        _duck_write(store, rows)


def mark_packets_stored(store: Store, frame: pl.DataFrame) -> None:
    """Reprocess stored these packets: ``raw_packets`` rows become ``stored`` with the
    decoded ``device_id``, ``profile`` and ``counter`` (columns of ``frame``, + ``sha256``)."""
    if frame.height == 0:
        return
    if store.backend == "postgres":
        with store.connection() as conn:  # type: ignore[attr-defined]
            conn.execute(
                PG_RAW_STORED,
                [frame[c].to_list() for c in ("sha256", "device_id", "profile", "counter")],
            )
    else:
        con = _duck(store)
        with _duck_view(con, frame) as stage:
            con.execute(DUCKDB_RAW_STORED.format(stage=stage))


def mark_reprocessed(store: Store, shas: Sequence[str], at: dt.datetime) -> None:
    """Set ``quarantine.reprocessed_at`` of packets a reprocess stored."""
    if not shas:
        return
    if store.backend == "postgres":
        with store.connection() as conn:  # type: ignore[attr-defined]
            conn.execute(PG_MARK_REPROCESSED, [at, list(shas)])
    else:
        _duck(store).execute(DUCKDB_MARK_REPROCESSED, [at, list(shas)])


def update_quarantine_reasons(store: Store, frame: pl.DataFrame) -> None:
    """Change ``reason``/``detail`` of quarantined packets (``sha256, reason, detail``)."""
    if frame.height == 0:
        return
    if store.backend == "postgres":
        with store.connection() as conn:  # type: ignore[attr-defined]
            conn.execute(
                PG_QUARANTINE_REASON,
                [frame["sha256"].to_list(), frame["reason"].to_list(), frame["detail"].to_list()],
            )
    else:
        con = _duck(store)
        with _duck_view(con, frame) as stage:
            con.execute(DUCKDB_QUARANTINE_REASON.format(stage=stage))


# --- PostgreSQL ------------------------------------------------------------------------------


def _pg_rows(store: Store, query: str, params: Any) -> list[tuple[Any, ...]]:
    with store.connection() as conn:  # type: ignore[attr-defined]
        return list(conn.execute(query, params).fetchall())


def _cols(cols: Sequence[str]) -> str:
    return ", ".join(f'"{c}"' for c in cols)


def _pg_stage(conn: Any, table: str, frame: pl.DataFrame) -> str:
    """COPY ``frame`` (already in ``table``'s contract) into the staging table of ``table``."""
    from warehouse._postgres import made

    stage = f"askug_land_{table}"
    # Created once per connection (a round trip saved per table and batch); the store
    # forgets it when a transaction rolls back, which takes a table made in it along.
    known = made(None, conn)
    if stage not in known:
        conn.execute(PG_CREATE_STAGE.format(stage=stage, table=table))
        known.add(stage)
    _pg_copy(conn, PG_COPY_STAGE.format(stage=stage, cols=_cols(frame.columns)), frame)
    return stage


def _pg_copy(conn: Any, statement: str, frame: pl.DataFrame) -> None:
    payload = binary_copy(frame)
    with conn.cursor() as cur, cur.copy(statement) as copy:
        view = memoryview(payload)
        for i in range(0, len(view), 1 << 22):
            copy.write(view[i : i + (1 << 22)])


#: After a key conflict on the direct COPY of a table, this many batches take the
#: staged path straight away (a stream of re-sent data would otherwise pay twice).
DIRECT_BACKOFF: Final = 8
_direct_skip: weakref.WeakKeyDictionary[Any, dict[str, int]] = weakref.WeakKeyDictionary()


def _pg_insert_new(store: Store, conn: Any, table: str, data: pl.DataFrame, staged: str) -> None:
    """Insert rows that are most likely new: straight COPY under a savepoint, else staged.

    ``staged`` is the ``INSERT … SELECT … ON CONFLICT`` statement (with ``{stage}``)
    that takes the rows from the staging table when the straight COPY hits a key that is
    already stored; the savepoint undoes the partial COPY, so the outcome is the same.
    The straight COPY goes into each month's partition where it is known to exist (see
    :func:`_direct_targets`).
    """
    import psycopg

    skip = _direct_skip.setdefault(store, {})
    if skip.get(table, 0) <= 0:
        for attempt in range(2):
            targets = _direct_targets(store, table, data, partitions=attempt == 0)
            try:
                with conn.transaction():  # a savepoint inside the batch's transaction
                    for target, part in targets:
                        _pg_copy(conn, PG_COPY_DIRECT.format(table=target, cols=_cols(part.columns)), part)
                return
            except psycopg.errors.UniqueViolation:
                skip[table] = DIRECT_BACKOFF
                break
            except psycopg.errors.UndefinedTable:
                if attempt or all(t == table for t, _ in targets):
                    raise
                # a partition was dropped under the service: forget the partitions known
                # (the next batch checks and makes them again) and go through the
                # parent, which routes the rows (to the DEFAULT partition if need be)
                from warehouse._postgres import forget_made

                forget_made(store)
    else:
        skip[table] -= 1
    stage = _pg_stage(conn, table, data)
    conn.execute(staged.format(stage=stage))


def _direct_targets(
    store: Store, table: str, data: pl.DataFrame, *, partitions: bool = True
) -> list[tuple[str, pl.DataFrame]]:
    """Where the straight COPY of ``data`` goes: ``(table or partition, rows)`` pairs.

    Plain variant: the rows of each month whose partition this process made or saw
    committed (:func:`warehouse._postgres.made`) are COPYed into that partition
    (``readings_p202611``) rather than through the parent, which saves PostgreSQL the
    per-row partition routing (about 6 % of a COPY's CPU, see ``ingest/README.md``);
    PostgreSQL still checks every row against the partition's bounds.  Other months,
    other tables and the other variants go through the table itself.
    """
    if not partitions or table not in LANDING_PARTITIONED or getattr(store, "variant", None) != "plain":
        return [(table, data)]
    from warehouse._postgres import made

    known = made(store)
    spans = _month_spans(data.get_column("ts"))
    if not spans:
        return [(table, data)]
    if len(spans) == 1:
        first = spans[0][0]
        return [(f"{table}_p{first:%Y%m}" if (table, first) in known else table, data)]
    out: list[tuple[str, pl.DataFrame]] = []
    rest = pl.Series([False]).new_from_index(0, data.height)
    for month, mask in spans:
        if (table, month) in known:
            out.append((f"{table}_p{month:%Y%m}", data.filter(mask)))
        else:
            rest = rest | mask
    return out + [(table, data.filter(rest))] if rest.any() else out


def _month_spans(ts: pl.Series) -> list[tuple[dt.datetime, pl.Series]]:
    """The UTC months of a null-free timestamp column, each with the mask of its rows
    (the mask is all-true when there is one month; no months when it is empty).

    Month starts are computed from the column's minimum and maximum only, and each row
    is matched by two integer comparisons (``dt.truncate("1mo")`` on every row costs
    ~10× more on a landing batch).  A batch spanning many months (a backlog) takes the
    per-row path.
    """
    lo, hi = ts.min(), ts.max()
    if not isinstance(lo, dt.datetime) or not isinstance(hi, dt.datetime):
        return []
    starts = [dt.datetime(lo.year, lo.month, 1, tzinfo=dt.UTC)]
    while starts[-1] <= hi and len(starts) <= _MONTH_SPANS_MAX:
        m = starts[-1]
        starts.append(dt.datetime(m.year + m.month // 12, m.month % 12 + 1, 1, tzinfo=dt.UTC))
    if starts[-1] <= hi:  # more than _MONTH_SPANS_MAX months
        month = ts.dt.truncate("1mo")
        return [(m, month == m) for m in month.unique().sort().to_list()]
    if len(starts) == 2:
        return [(starts[0], pl.Series([True]).new_from_index(0, len(ts)))]
    phys = ts.dt.cast_time_unit("us").to_physical()
    bounds = [int(m.timestamp()) * 1_000_000 for m in starts]
    spans = [(m, (phys >= a) & (phys < b)) for m, a, b in zip(starts, bounds, bounds[1:], strict=False)]
    return [(m, mask) for m, mask in spans if mask.any()]


#: A batch spanning more months than this finds them row by row (see :func:`_month_spans`).
_MONTH_SPANS_MAX: Final = 6


def _pg_lz4(store: Store, conn: Any) -> None:
    """Compress the TOASTed values (raw packet bytes) this connection writes with lz4 if possible."""
    has = _lz4.get(store)
    if has is None:
        row = conn.execute(PG_HAS_LZ4).fetchone()
        has = _lz4[store] = bool(row and row[0])
    if not has:
        return
    from warehouse._postgres import made

    known = made(None, conn)
    if "lz4" not in known:  # a session setting: once per connection
        conn.execute(PG_LZ4)
        known.add("lz4")


_lz4: weakref.WeakKeyDictionary[Any, bool] = weakref.WeakKeyDictionary()


def _pg_ensure_partitions(store: Store, conn: Any, table: str, frame: pl.DataFrame) -> None:
    """Plain variant: create the monthly partitions a batch needs (idempotent, in the
    batch's transaction, so a rolled-back batch leaves no half-made partition behind).

    Two writers that need the same new month race: the second waits for the first's
    advisory lock, but its re-check can still miss the partition the first just
    committed (the backend's catalog cache is refreshed only when it next locks a
    relation, here the parent in ``CREATE TABLE … PARTITION OF``) and fail with
    *DuplicateTable*.  The call runs under a savepoint and is repeated once: by then the
    cache is fresh and the partition is seen.
    """
    if getattr(store, "variant", None) != "plain":
        return
    from warehouse._postgres import made

    known = made(store)
    months = [m for m, _ in _month_spans(frame.get_column("ts")) if (table, m) not in known]
    if months:
        _ensure_months(conn, table, months)


def _ensure_months(conn: Any, table: str, months: Sequence[dt.datetime]) -> None:
    """``askug_ensure_partitions`` under a savepoint of the open transaction, repeated
    once on *DuplicateTable* (see :func:`_pg_ensure_partitions`)."""
    import psycopg

    try:
        with conn.transaction():
            conn.execute(PG_ENSURE_PARTITIONS, [table, list(months)])
    except psycopg.errors.DuplicateTable:
        conn.execute(PG_ENSURE_PARTITIONS, [table, list(months)])


#: Partitioned tables landing writes (plain PostgreSQL variant).
LANDING_PARTITIONED: Final = ("readings", "hourly_archive", "events")


def prepare_partitions(store: Store, lo: dt.datetime, hi: dt.datetime) -> None:
    """Plain PostgreSQL: make the monthly partitions of ``[lo, hi]`` for the tables
    landing writes, in a short transaction of their own, BEFORE the batch's transaction.

    Creating a partition takes an ACCESS EXCLUSIVE lock on the parent table.  Made
    inside a batch's transaction (after its COPYs and look-ups), two writers that both
    reach a new month deadlock: each holds the parent's row lock from its own batch and
    waits for the other (one is aborted and retried, a stall at every month boundary).
    Made here, a writer holds no lock on the tables while it waits.  The batch still
    checks its own partitions inside its transaction (cheap when they exist), so a
    month this range missed is created there, as before.  An empty partition left by a
    batch that then rolls back is harmless.  Elsewhere (DuckDB, TimescaleDB) a no-op.
    """
    if store.backend != "postgres" or getattr(store, "variant", None) != "plain":
        return
    first = dt.datetime(lo.year, lo.month, 1, tzinfo=dt.UTC)
    months = []
    while first <= hi:
        months.append(first)
        first = dt.datetime(first.year + first.month // 12, first.month % 12 + 1, 1, tzinfo=dt.UTC)
    from warehouse._postgres import made

    # Months made (committed) before are skipped: this is a transaction and 3 function
    # calls per batch otherwise.  Only a committed month is remembered, so a batch never
    # skips a partition another writer's open transaction is still making.
    known = made(store)
    todo = {t: [m for m in months if (t, m) not in known] for t in LANDING_PARTITIONED}
    if not any(todo.values()):
        return
    with store.connection() as conn, conn.transaction():  # type: ignore[attr-defined]
        for table, missing in todo.items():
            if missing:
                _ensure_months(conn, table, missing)
    known.update((t, m) for t, missing in todo.items() for m in missing)


def _prepared(name: str, frame: pl.DataFrame | None) -> pl.DataFrame | None:
    if frame is None or frame.height == 0:
        return None
    t = spec(name)
    return _first_per_key_sorted(validate_frame(frame, t), list(t.key))


def _first_per_key_sorted(data: pl.DataFrame, key: list[str]) -> pl.DataFrame:
    """The first row of each key (in the frame's order), sorted by the key.

    The same result as ``unique(key, keep="first", maintain_order=True).sort(key)``,
    about 5× faster on a batch: a stable sort puts each key's first row first in its
    run, and the rows equal to their predecessor are dropped (rarely any).  Rows already
    in key order (landing hands over its readings and register hours so) are not
    sorted: checking the order costs a fraction of sorting.
    """
    if data.height < 2:
        return data
    ordered = pl.lit(True)
    for k in reversed(key):
        prev = pl.col(k).shift(1)
        ordered = (pl.col(k) > prev) | ((pl.col(k) == prev) & ordered)
    # (a null key compares as out of order, except on the first row)
    if not data.select((ordered.fill_null(False) | (pl.int_range(pl.len()) == 0)).all()).item():
        data = data.sort(key, maintain_order=True)
    repeat = pl.all_horizontal([pl.col(k).eq_missing(pl.col(k).shift(1)) for k in key]) & (pl.int_range(pl.len()) > 0)
    if data.select(repeat.any()).item():
        data = data.filter(~repeat)
    return data


def merge_hourly(register: pl.DataFrame | None, archive: pl.DataFrame | None) -> pl.DataFrame | None:
    """The hours of a batch in one frame: archive rows, plus register-derived ones for
    hours the archive does not give (the corrector's archive is the billing record)."""
    parts = [f for f in (archive, register) if f is not None and f.height]
    if not parts:
        return None
    t = spec("hourly_archive")
    key = list(t.key)
    frames = [validate_frame(f, t) for f in parts]
    if len(frames) == 1:
        return _first_per_key_sorted(frames[0], key)
    # The archive (correctors) covers few metering points: only their register hours
    # are sorted together with it; the others (usually in order already) are merged in.
    archive, register = frames
    touched = register.get_column("meter_id").is_in(archive.get_column("meter_id").unique().implode())
    both = _first_per_key_sorted(pl.concat([archive, register.filter(touched)]), key)
    rest = _first_per_key_sorted(register.filter(~touched), key)
    if rest.height == 0:
        return both
    # the two share no metering point: a stable sort on it alone interleaves them in
    # (meter_id, ts) order (a sort on both keys costs ~6×, polars' merge_sorted ~2×)
    return pl.concat([rest, both]).sort("meter_id", maintain_order=True)


def _pg_write(store: Store, rows: LandingRows) -> None:
    with store.connection() as conn:  # type: ignore[attr-defined]
        simple = (
            ("quarantine", rows.quarantine),
            ("events", rows.events),
            ("device_daily_archive", rows.device_daily_archive),
        )
        for name, frame in simple:
            data = _prepared(name, frame)
            if data is None:
                continue
            if name == "events":
                _pg_ensure_partitions(store, conn, name, data)
            t = spec(name)
            stage = _pg_stage(conn, name, data)
            conn.execute(
                PG_INSERT_NOTHING.format(
                    table=name, cols=_cols(list(t.schema)), stage=stage, key=_cols(t.key)
                )
            )
        data = _prepared("readings", rows.readings)
        if data is not None:
            _pg_ensure_partitions(store, conn, "readings", data)
            t = spec("readings")
            cols = _cols(list(t.schema))
            insert = PG_INSERT_NOTHING.format(table="readings", cols=cols, stage="{stage}", key=_cols(t.key))
            _pg_insert_new(store, conn, "readings", data, insert)
        data = merge_hourly(rows.hourly_register, rows.hourly_archive)
        if data is not None:
            _pg_ensure_partitions(store, conn, "hourly_archive", data)
            upsert = PG_UPSERT_HOURLY.format(cols=_cols(list(spec("hourly_archive").schema)), stage="{stage}")
            # Hours up to each metering point's latest stored hour may be stored already
            # (re-derived from the stored readings before the batch, closed by this
            # batch's first reading, or the corrector's own archive record), and so may
            # the first hour of the batch: they take the upsert. The hours after it are
            # new unless another writer got there first, and try the straight COPY.
            meters = data.get_column("meter_id").unique().to_list()
            last = pl.DataFrame(
                conn.execute(PG_LAST_HOUR, [meters]).fetchall(),
                schema={"meter_id": pl.String, "last_ts": pl.Datetime("us", "UTC")},
                orient="row",
            )
            first = (
                data.select("meter_id", "ts")
                .join(last, on="meter_id", how="left", maintain_order="left")
                .select(
                    (
                        (pl.col("meter_id") != pl.col("meter_id").shift(1)).fill_null(True)
                        | (pl.col("ts") <= pl.col("last_ts")).fill_null(False)
                    ).alias("first")
                )
                .to_series()
            )
            edge = data.filter(first)
            rest = data.filter(~first)
            if edge.height > max(LATE_PROBE_MIN, LATE_PROBE_PER_METER * len(meters)):
                edge, rest = _late_hours_split(conn, edge, rest)
            if edge.height:
                stage = _pg_stage(conn, "hourly_archive", edge)
                conn.execute(upsert.format(stage=stage))
            if rest.height:
                if edge.height:
                    conn.execute(f"DELETE FROM {stage}")  # the fallback below reuses the staging table
                _pg_insert_new(store, conn, "hourly_archive", rest, upsert)
        for name, frame, query in (
            ("device_counters", rows.device_counters, SQL_UPSERT_COUNTERS),
            ("ingest_counters", rows.ingest_counters, SQL_UPSERT_STATS),
        ):
            data = _prepared(name, frame)
            if data is None:
                continue
            stage = _pg_stage(conn, name, data)
            conn.execute(query.format(cols=_cols(list(spec(name).schema)), stage=stage))
        if rows.acks is not None and rows.acks.height:
            conn.execute(
                PG_ACK_COMMANDS,
                [
                    rows.acks["command_id"].to_list(),
                    rows.acks["device_id"].to_list(),
                    rows.acks["at"].to_list(),
                ],
            )


#: More hours than this before the meters' latest stored hours (and more than
#: :data:`LATE_PROBE_PER_METER` per meter) make a batch look up which of them are stored.
LATE_PROBE_MIN: Final = 500
#: An in-order batch re-derives at most ~25 hours per meter before its latest stored
#: hour (the register context, see :func:`register_context`); far more is late data.
LATE_PROBE_PER_METER: Final = 48
PG_STORED_HOURS: Final = """
SELECT h.meter_id, h.ts
FROM unnest(%s::text[], %s::timestamptz[], %s::timestamptz[]) AS m(meter_id, lo, hi)
JOIN hourly_archive h ON h.meter_id = m.meter_id AND h.ts >= m.lo AND h.ts <= m.hi"""


def _late_hours_split(conn: Any, edge: pl.DataFrame, rest: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Late data: of the hours before the meters' latest stored hours, only those that
    are stored take the upsert; the others join the straight COPY.

    A unit's older frames landing after its newer ones (a resend, a backlog from another
    path) put all their hours before the latest stored one.  Taken through the staged
    ``ON CONFLICT DO UPDATE`` they cost about three times a straight COPY per row, yet
    most are new.  One look-up per meter (its span of such hours) finds the stored
    ones; the rest are COPYed like new hours (a key another writer stored meanwhile
    still makes that COPY fall back to the upsert, as always).
    """
    spans = edge.group_by("meter_id").agg(pl.col("ts").min().alias("lo"), pl.col("ts").max().alias("hi"))
    stored = pl.DataFrame(
        conn.execute(
            PG_STORED_HOURS,
            [spans["meter_id"].to_list(), spans["lo"].to_list(), spans["hi"].to_list()],
        ).fetchall(),
        schema={"meter_id": pl.String, "ts": pl.Datetime("us", "UTC")},
        orient="row",
    )
    known = edge.join(stored, on=["meter_id", "ts"], how="semi", maintain_order="left")
    new = edge.join(stored, on=["meter_id", "ts"], how="anti", maintain_order="left")
    return known, pl.concat([new, rest]).sort("meter_id", "ts")


# --- binary COPY -----------------------------------------------------------------------------
_PG_EPOCH_US: Final = 946_684_800_000_000  # 2000-01-01 UTC in unix microseconds
_PG_EPOCH_DAYS: Final = 10_957
_COPY_HEADER: Final = b"PGCOPY\n\xff\r\n\x00" + bytes(8)  # signature, flags, extension
_COPY_TRAILER: Final = b"\xff\xff"


def _fixed_column(s: pl.Series) -> tuple[np.ndarray[Any, Any], str] | None:
    """Values (nulls as 0) and big-endian numpy format of a fixed-width column; None = text.

    Each polars call on a Series costs ~0.1 ms whatever its length, which is most of the
    work for the small frames of a small landing round: casts and null fills are only
    made when the column needs them.
    """
    d = s.dtype
    nulls = s.null_count() > 0
    if isinstance(d, pl.Datetime):  # timestamptz: microseconds since 2000-01-01 UTC
        if d.time_unit != "us":
            s = s.cast(pl.Datetime("us", d.time_zone))
        phys = s.to_physical()
        return (phys.fill_null(0) if nulls else phys).to_numpy() - _PG_EPOCH_US, ">i8"
    if d == pl.Date:
        phys = s.to_physical()
        return (phys.fill_null(0) if nulls else phys).to_numpy().astype(np.int64) - _PG_EPOCH_DAYS, ">i4"
    if d == pl.Boolean:
        return s.fill_null(False).cast(pl.UInt8).to_numpy(), "u1"
    target, fmt, zero = _FIXED.get(d, (None, "", 0))
    if target is None:
        if d == pl.String:
            return None
        raise TypeError(f"no binary COPY encoding for a {d} column")
    if d != target:
        s = s.cast(target)
    return (s.fill_null(zero) if nulls else s).to_numpy(), fmt


#: dtype → (the dtype sent, its big-endian numpy format, null placeholder)
_FIXED: Final[dict[Any, tuple[Any, str, float | int]]] = {
    pl.Float64: (pl.Float64, ">f8", 0.0),
    pl.Float32: (pl.Float64, ">f8", 0.0),
    pl.Int64: (pl.Int64, ">i8", 0),
    pl.UInt32: (pl.Int64, ">i8", 0),
    pl.Int32: (pl.Int32, ">i4", 0),
    pl.UInt16: (pl.Int32, ">i4", 0),
    pl.Int16: (pl.Int16, ">i2", 0),  # TINYINT columns are smallint on PostgreSQL
    pl.Int8: (pl.Int16, ">i2", 0),
    pl.UInt8: (pl.Int16, ">i2", 0),
}
#: Text columns up to this many rows are dictionary-encoded in Python (fewer polars calls).
_SMALL_TEXT: Final = 2048
#: A longer text column with at most one run of equal values per this many rows is
#: coded run by run.
_RUNS_PER_ROW: Final = 8


def _one_chunk(s: pl.Series) -> pl.Series:
    return s if s.n_chunks() == 1 else s.rechunk()


class _CopyColumn:
    """One column ready for :func:`binary_copy`: values, numpy format and field lengths.

    Text is dictionary-encoded (``values`` are codes into ``texts``), which suits the
    low-cardinality text of telemetry (device ids, channels, qualities).
    """

    __slots__ = ("fmt", "lengths", "texts", "values")

    def __init__(self, s: pl.Series) -> None:
        fixed = _fixed_column(s)
        self.texts: np.ndarray[Any, Any] | None = None
        nulls = s.null_count() > 0
        if fixed is not None:
            self.values, self.fmt = fixed
            self.lengths = np.full(len(s), np.dtype(self.fmt).itemsize, dtype=np.int64)
        else:
            if len(s) <= _SMALL_TEXT:
                codes, uniq = _dictionary(s.to_list())
            else:
                # Telemetry text comes in runs (a device's rows, a channel's): only the
                # runs' first values are coded in Python, far fewer than the rows.
                starts = np.flatnonzero((s != s.shift(1)).fill_null(True).to_numpy())
                if len(starts) * _RUNS_PER_ROW <= len(s):
                    head_codes, uniq = _dictionary(s.gather(starts).to_list())
                    codes = np.repeat(head_codes, np.diff(np.append(starts, len(s))))
                else:
                    uniq = s.drop_nulls().unique(maintain_order=True).to_list()
                    codes = s.cast(pl.Enum(uniq)).to_physical().fill_null(0).to_numpy()
            encoded = [u.encode("utf-8") for u in uniq] or [b""]
            sizes = np.array([len(e) for e in encoded], dtype=np.int64)
            # numpy's S type drops trailing NUL bytes; PostgreSQL text never holds one
            self.texts = np.array(encoded, dtype=f"S{max(1, int(sizes.max()))}")
            self.values, self.fmt = codes, "S"
            self.lengths = sizes[codes]
        if nulls:
            self.lengths = np.where(s.is_null().to_numpy(), -1, self.lengths)


def _dictionary(items: list[str | None]) -> tuple[np.ndarray[Any, Any], list[str]]:
    """Codes of ``items`` (None → 0) into the list of their distinct values, in order seen."""
    index: dict[str, int] = {}
    codes = np.fromiter(
        (0 if v is None else index.setdefault(v, len(index)) for v in items), dtype=np.int64, count=len(items)
    )
    return codes, list(index)


def binary_copy(frame: pl.DataFrame) -> bytes:
    """``frame`` as a ``COPY … (FORMAT binary)`` payload, built with numpy from columns.

    Rows whose fields have the same lengths share one packed record layout, so each such
    group is written with a handful of whole-column numpy assignments; the groups follow
    each other (the row order inside a group is kept).  Column types must match the
    target's: String → text, Float64 → float8, Int64 → bigint, Int32 → integer,
    Int16/Int8 → smallint, Boolean → boolean, Date → date, Datetime → timestamptz.
    """
    n = frame.height
    cols = [_CopyColumn(_one_chunk(frame.get_column(c))) for c in frame.columns]
    if n == 0:
        return _COPY_HEADER + _COPY_TRAILER
    key = np.zeros(n, dtype=np.int64)
    for c in cols:
        if c.fmt == "S" or bool((c.lengths < 0).any()):
            key = key * (int(c.lengths.max()) + 2) + (c.lengths + 1)
    shapes, group = np.unique(key, return_inverse=True)
    group = group.reshape(-1).astype(np.uint16 if len(shapes) < 65536 else np.int64)
    order = np.argsort(group, kind="stable")
    bounds = np.searchsorted(group[order], np.arange(len(shapes) + 1))
    out = [_COPY_HEADER]
    for g in range(len(shapes)):
        rows = order[bounds[g] : bounds[g + 1]]
        first = int(rows[0])
        layout: list[tuple[str, str]] = [("n", ">i2")]
        for i, c in enumerate(cols):
            size = int(c.lengths[first])
            layout.append((f"l{i}", ">i4"))
            if size > 0:
                layout.append((f"d{i}", f"S{size}" if c.fmt == "S" else c.fmt))
        rec = np.empty(len(rows), dtype=np.dtype(layout))
        rec["n"] = len(cols)
        for i, c in enumerate(cols):
            size = int(c.lengths[first])
            rec[f"l{i}"] = size
            if size > 0:
                rec[f"d{i}"] = c.texts[c.values[rows]] if c.texts is not None else c.values[rows]
        out.append(rec.tobytes())
    out.append(_COPY_TRAILER)
    return b"".join(out)


# --- DuckDB ----------------------------------------------------------------------------------
_duck_names = itertools.count()


def _duck(store: Store) -> Any:
    return store.connection  # type: ignore[attr-defined]


class _duck_view:
    """Register a frame as a uniquely named Arrow view for the duration of a block."""

    def __init__(self, con: Any, frame: pl.DataFrame) -> None:
        self.con = con
        self.frame = frame
        self.name = f"askug_land_{next(_duck_names)}"

    def __enter__(self) -> str:
        self.con.register(self.name, self.frame.to_arrow())
        return self.name

    def __exit__(self, *exc: object) -> None:
        self.con.unregister(self.name)


def _duck_insert(con: Any, table: str, frame: pl.DataFrame | None, key: Sequence[str]) -> None:
    if frame is None or frame.height == 0:
        return
    cols = _cols(list(spec(table).schema))
    match = " AND ".join(f't."{k}" = s."{k}"' for k in key)
    params: list[Any] = []
    if "ts" in key:
        match += " AND t.ts BETWEEN ? AND ?"
        params = [frame["ts"].min(), frame["ts"].max()]
    with _duck_view(con, frame) as stage:
        con.execute(
            DUCKDB_ANTI_INSERT.format(table=table, cols=cols, stage=stage, match=match), params
        )


def _duck_write(store: Store, rows: LandingRows) -> None:
    con = _duck(store)
    for name, frame in (
        ("quarantine", rows.quarantine),
        ("readings", rows.readings),
        ("events", rows.events),
        ("device_daily_archive", rows.device_daily_archive),
    ):
        _duck_insert(con, name, _prepared(name, frame), spec(name).key)
    for frame, extra in (
        (rows.hourly_register, "AND h.quality IN ('missing', 'suspect')"),
        (rows.hourly_archive, ""),
    ):
        data = _prepared("hourly_archive", frame)
        if data is None:
            continue
        with _duck_view(con, data) as stage:
            con.execute(
                DUCKDB_DELETE_REPLACEABLE.format(stage=stage, extra=extra),
                [data["ts"].min(), data["ts"].max()],
            )
        _duck_insert(con, "hourly_archive", data, ("meter_id", "ts"))
    for name, frame, query in (
        ("device_counters", rows.device_counters, SQL_UPSERT_COUNTERS),
        ("ingest_counters", rows.ingest_counters, SQL_UPSERT_STATS),
    ):
        data = _prepared(name, frame)
        if data is None:
            continue
        with _duck_view(con, data) as stage:
            con.execute(query.format(cols=_cols(list(spec(name).schema)), stage=stage))
    if rows.acks is not None and rows.acks.height:
        with _duck_view(con, rows.acks) as stage:
            con.execute(DUCKDB_ACK_COMMANDS.format(stage=stage))


# --- downlink commands -----------------------------------------------------------------------
PG_QUEUE_COMMAND: Final = """
INSERT INTO downlink_commands (device_id, kind, payload, status, created_at, attempts)
VALUES (%s, %s, %s, 'queued', %s, 0) RETURNING command_id"""
DUCKDB_QUEUE_COMMAND: Final = """
INSERT INTO downlink_commands (device_id, kind, payload, status, created_at, attempts)
VALUES (?, ?, ?, 'queued', ?, 0) RETURNING command_id"""
PG_MARK_DELIVERED: Final = """
UPDATE downlink_commands SET status = 'delivered', delivered_at = %s, attempts = attempts + 1
WHERE command_id = %s AND status IN ('queued', 'delivered') RETURNING command_id"""
DUCKDB_MARK_DELIVERED: Final = """
UPDATE downlink_commands SET status = 'delivered', delivered_at = ?, attempts = attempts + 1
WHERE command_id = ? AND status IN ('queued', 'delivered') RETURNING command_id"""
PG_CANCEL_COMMAND: Final = """
UPDATE downlink_commands SET status = 'cancelled'
WHERE command_id = %s AND status IN ('queued', 'delivered') RETURNING command_id"""
DUCKDB_CANCEL_COMMAND: Final = """
UPDATE downlink_commands SET status = 'cancelled'
WHERE command_id = ? AND status IN ('queued', 'delivered') RETURNING command_id"""


def queue_command(
    store: Store, *, device_id: str, kind: str, payload: str, created_at: dt.datetime
) -> int:
    """Insert a queued downlink command and return its id (from the table's sequence)."""
    with store.transaction():
        if store.backend == "postgres":
            rows = _pg_rows(store, PG_QUEUE_COMMAND, [device_id, kind, payload, created_at])
        else:
            rows = _duck(store).execute(
                DUCKDB_QUEUE_COMMAND, [device_id, kind, payload, created_at]
            ).fetchall()
    return int(rows[0][0])


def mark_command_delivered(store: Store, command_id: int, at: dt.datetime) -> bool:
    """Record a delivery (a redelivery counts another attempt); False if not pending."""
    with store.transaction():
        if store.backend == "postgres":
            rows = _pg_rows(store, PG_MARK_DELIVERED, [at, command_id])
        else:
            rows = _duck(store).execute(DUCKDB_MARK_DELIVERED, [at, command_id]).fetchall()
    return bool(rows)


def cancel_command(store: Store, command_id: int) -> bool:
    """Cancel a command that was not acknowledged yet; False if it was not pending."""
    with store.transaction():
        if store.backend == "postgres":
            rows = _pg_rows(store, PG_CANCEL_COMMAND, [command_id])
        else:
            rows = _duck(store).execute(DUCKDB_CANCEL_COMMAND, [command_id]).fetchall()
    return bool(rows)
