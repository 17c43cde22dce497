"""Load a simulator output directory (format ``askug-sim/1``) into a store.

The whole directory is checked before anything is written; then everything is written
in one store transaction, so a failure leaves the store as it was.  The optional
``inflow.parquet`` (the metered inflow of the network nodes) lands in ``node_inflow``.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import polars as pl

from ingest._counters import REGISTER_CHANNELS, readings_to_hourly
from ingest._simulator import FORMAT, LABEL_COLUMNS, TRUTH_SCHEMA
from ingest.errors import IngestFileError
from warehouse import REFERENCE_TABLES, TABLES, ContractError, Store, TableSpec, validate_frame

Progress = Callable[[int, int], None]

_OFFSET: Final = re.compile(r"(Z|[+-]\d{2}:?\d{2})$")
#: Source code of the inflow rows a simulation directory holds: the hourly archive of
#: each node's inlet meter, as its telemetry unit would deliver it.
INFLOW_SOURCE: Final = "archive"
#: The columns of ``inflow.parquet``: ``node_inflow`` without ``source`` (which the
#: loader sets to :data:`INFLOW_SOURCE`); a file may also carry its own ``source``.
INFLOW_FILE_SCHEMA: Final = pl.Schema({c: t for c, t in TABLES["node_inflow"].schema.items() if c != "source"})

#: Foreign keys checked between the reference files: (table, column, parent table, parent column).
_REFERENCES: Final = (
    ("branches", "company_id", "companies", "company_id"),
    ("network_nodes", "branch_id", "branches", "branch_id"),
    ("network_nodes", "parent_node_id", "network_nodes", "node_id"),
    ("metering_points", "branch_id", "branches", "branch_id"),
    ("metering_points", "node_id", "network_nodes", "node_id"),
    ("devices", "meter_id", "metering_points", "meter_id"),
    ("devices", "node_id", "network_nodes", "node_id"),
    ("contracts", "meter_id", "metering_points", "meter_id"),
    ("gdp_channels", "node_id", "network_nodes", "node_id"),
)


@dataclass(frozen=True)
class LoadSummary:
    """What :func:`load_simulation` stored.

    Attributes
    ----------
    rows
        Rows newly stored per table (``hourly_archive`` and ``node_inflow`` included).
    duplicates
        Rows skipped per table because their natural key was already stored or
        repeated in the input.
    seconds
        Wall time, validation included.
    """

    rows: dict[str, int] = field(default_factory=dict)
    duplicates: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def duplicates_skipped(self) -> int:
        """All skipped rows, every table."""
        return sum(self.duplicates.values())


def load_simulation(
    store: Store, directory: str | Path, *, progress: Progress | None = None, lookback: dt.timedelta = dt.timedelta(days=3)
) -> LoadSummary:
    """Validate a simulator output directory and load it into ``store`` atomically.

    Parameters
    ----------
    store
        A migrated store (:func:`warehouse.open_store` then ``migrate()``).
    directory
        A directory written by :func:`ingest.simulate` (layout in ``ingest/README.md``).
    progress
        Called as ``progress(done, total)`` after each readings part.
    lookback
        How far before a part's first reading to look for the last stored register of
        each device (incremental loads); a device silent for longer starts afresh.

    Returns
    -------
    LoadSummary
        Rows stored and duplicates skipped per table, and the wall time.

    Raises
    ------
    IngestFileError
        A file is missing or malformed; the message names the file, the CSV line where
        it applies, the problem and the fix.  Nothing was written.

    Notes
    -----
    Order of writing: reference tables in :data:`warehouse.REFERENCE_TABLES` order,
    ``weather``, ``node_inflow`` (when the manifest lists ``files.inflow``), then per
    readings part its ``readings`` and the ``hourly_archive`` rows derived from them
    (:func:`ingest.readings_to_hourly`), then ``events``.  Loading the same directory
    twice stores everything once.  All timestamps are UTC.
    """
    t0 = time.perf_counter()
    root = Path(directory)
    manifest = _read_manifest(root)
    files = manifest["files"]
    reference = {table: _read_reference_csv(root, files["reference"][table], TABLES[table]) for table in REFERENCE_TABLES}
    _check_references(files["reference"], reference)
    for name in (files["weather"], files["events"], *files["readings"]):
        _check_parquet_schema(root, name)
    for name in files.get("truth", []):
        _check_parquet_schema(root, name, TRUTH_SCHEMA)
    _check_csv_header(root, files["labels"], LABEL_COLUMNS)
    inflow = _read_inflow(root, files["inflow"], reference["network_nodes"]) if "inflow" in files else None

    # Everything read from the store happens before the transaction: the rows stored
    # earlier are what an incremental load continues from.
    # One read-only transaction gives a consistent snapshot (and, on DuckDB 2.0, a clean
    # connection: a pending fetchone result from an earlier call would block reads).
    previous: list[pl.DataFrame | None] = []
    with store.transaction():
        devices = pl.concat([reference["devices"], store.read("devices")]).unique(
            subset=["device_id"], keep="first", maintain_order=True
        )
        known = devices.select("device_id")
        for name in files["readings"]:
            firsts = _first_registers(root, name, known)
            previous.append(_previous_registers(store, firsts, lookback))

    rows: dict[str, int] = {}
    dups: dict[str, int] = {}

    def write(table: str, frame: pl.DataFrame, source: str) -> None:
        try:
            stored = store.write(table, frame)
        except ContractError as exc:
            raise IngestFileError(f"{source}: {exc}; regenerate the file with ingest.simulate") from exc
        rows[table] = rows.get(table, 0) + stored
        dups[table] = dups.get(table, 0) + frame.height - stored

    total = len(files["readings"])
    with store.transaction():
        for table in REFERENCE_TABLES:
            write(table, reference[table], files["reference"][table])
        write("weather", pl.read_parquet(root / files["weather"]), files["weather"])
        if inflow is not None:
            write("node_inflow", inflow, files["inflow"])
        for k, name in enumerate(files["readings"]):
            part = pl.read_parquet(root / name)
            write("readings", part, name)
            try:
                hourly = readings_to_hourly(part, devices, previous=previous[k])
            except ContractError as exc:
                raise IngestFileError(f"{name}: cannot derive hourly consumption: {exc}") from exc
            write("hourly_archive", hourly, name)
            if progress is not None:
                progress(k + 1, total)
        write("events", pl.read_parquet(root / files["events"]), files["events"])
    return LoadSummary(rows=rows, duplicates=dups, seconds=time.perf_counter() - t0)


def _first_registers(root: Path, name: str, known: pl.DataFrame) -> pl.DataFrame:
    """First register timestamp per device and channel of a part; checks its device ids."""
    frame = (
        pl.scan_parquet(root / name)
        .select("device_id", "channel", "ts")
        .group_by("device_id", "channel")
        .agg(pl.col("ts").min().alias("first"))
        .collect()
    )
    unknown = frame.join(known, on="device_id", how="anti")
    if unknown.height:
        raise _fail(name, f"device_id {unknown['device_id'].sort()[0]!r} is not in the devices table",
                    "list every device in reference/devices.csv")
    return frame.filter(pl.col("channel").is_in(REGISTER_CHANNELS))


def _previous_registers(store: Store, first: pl.DataFrame, lookback: dt.timedelta) -> pl.DataFrame | None:
    """The last stored register of each device and channel before its first reading in a part."""
    if first.height == 0:
        return None
    start_of_part = first["first"].min()
    end_of_firsts = first["first"].max()
    assert isinstance(start_of_part, dt.datetime) and isinstance(end_of_firsts, dt.datetime)
    stored = store.read(
        "readings",
        start=start_of_part - lookback,
        end=end_of_firsts,
        where={"device_id": first["device_id"].unique().to_list(), "channel": list(REGISTER_CHANNELS)},
        columns=["device_id", "channel", "ts", "value"],
    )
    if stored.height == 0:
        return None
    return (
        stored.join(first, on=["device_id", "channel"])
        .filter(pl.col("ts") < pl.col("first"))
        .sort("ts")
        .group_by("device_id", "channel")
        .last()
        .select("device_id", "channel", "ts", "value")
    )


# --- validation -------------------------------------------------------------------------


def _fail(name: str, problem: str, fix: str, line: int | None = None) -> IngestFileError:
    where = f"{name} line {line}" if line is not None else name
    return IngestFileError(f"{where}: {problem}; {fix}")


def _path(root: Path, name: Any, what: str) -> Path:
    if not isinstance(name, str) or not name or Path(name).is_absolute() or ".." in Path(name).parts:
        raise _fail("manifest.json", f"{what} path {name!r} is not a relative path inside the directory",
                    "list files relative to the directory")
    path = root / name
    if not path.is_file():
        raise _fail(name, f"listed in manifest.json as {what} but missing from {root}",
                    "copy the whole directory or re-run ingest.simulate")
    return path


def _read_manifest(root: Path) -> dict[str, Any]:
    path = root / "manifest.json"
    if not root.is_dir():
        raise _fail(str(root), "is not a directory", "pass the directory ingest.simulate wrote")
    if not path.is_file():
        raise _fail("manifest.json", f"missing in {root}", "pass the directory ingest.simulate wrote")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise _fail("manifest.json", f"not valid JSON ({exc.msg})", "re-run ingest.simulate", exc.lineno) from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        got = manifest.get("format") if isinstance(manifest, dict) else None
        raise _fail("manifest.json", f"format {got!r} is not {FORMAT!r}", f"write the directory with ingest.simulate ({FORMAT})")
    files = manifest.get("files")
    if not isinstance(files, dict):
        raise _fail("manifest.json", "has no 'files' object", "re-run ingest.simulate")
    ref = files.get("reference")
    if not isinstance(ref, dict) or set(ref) != set(REFERENCE_TABLES):
        raise _fail("manifest.json", f"files.reference must list {list(REFERENCE_TABLES)}", "re-run ingest.simulate")
    for table, name in ref.items():
        _path(root, name, f"reference table {table}")
    for key in ("weather", "events", "labels"):
        _path(root, files.get(key), key)
    if "inflow" in files:
        _path(root, files["inflow"], "inflow")
    parts = files.get("readings")
    if not isinstance(parts, list):
        raise _fail("manifest.json", "files.readings must be a list of part files", "re-run ingest.simulate")
    for name in (*parts, *files.get("truth", [])):
        _path(root, name, "readings part")
    return manifest


def _check_csv_header(root: Path, name: str, expected: tuple[str, ...]) -> list[str]:
    with (root / name).open(encoding="utf-8", newline="") as fh:
        header = fh.readline().rstrip("\r\n").split(",")
    if header != list(expected):
        raise _fail(name, f"header {header} differs from the expected columns {list(expected)}",
                    "write exactly these columns in this order", 1)
    return header


def _read_reference_csv(root: Path, name: str, t: TableSpec) -> pl.DataFrame:
    _check_csv_header(root, name, tuple(t.schema))
    try:
        raw = pl.read_csv(root / name, infer_schema=False, encoding="utf8")
    except (pl.exceptions.PolarsError, UnicodeDecodeError) as exc:
        first = str(exc).splitlines()[0]
        raise _fail(name, f"cannot be parsed as CSV ({first})", "write RFC 4180 CSV in UTF-8") from exc
    columns = []
    for col, dtype in t.schema.items():
        s = raw.get_column(col)
        if s.dtype != pl.String:  # pragma: no cover - infer_schema=False gives strings
            s = s.cast(pl.String)
        present = s.is_not_null()
        hint = ""
        if dtype == pl.String:
            parsed = s
        elif isinstance(dtype, pl.Datetime):
            parsed = s.str.to_datetime(time_zone="UTC", strict=False, time_unit="us")
            parsed = pl.select(pl.when(s.str.contains(_OFFSET.pattern)).then(parsed)).to_series()
            hint = "an ISO-8601 UTC timestamp such as 2022-01-01T00:00:00Z"
        elif dtype == pl.Date:
            parsed = s.str.to_date("%Y-%m-%d", strict=False)
            hint = "a date such as 2022-01-31"
        elif dtype.is_integer():
            parsed = s.str.strip_chars().cast(pl.Int64, strict=False)
            info = {pl.Int8: 127, pl.Int16: 32767, pl.Int32: 2**31 - 1}.get(dtype)  # type: ignore[call-overload]
            if info is not None:
                parsed = pl.select(pl.when(parsed.abs() <= info).then(parsed)).to_series()
            hint = f"an integer that fits {dtype}"
        elif dtype.is_float():
            parsed = s.str.strip_chars().cast(pl.Float64, strict=False)
            hint = "a number such as 12.5"
        else:  # pragma: no cover - no other dtypes in reference tables
            parsed = s
        bad = (present & parsed.is_null()).arg_true()
        if bad.len():
            i = int(bad[0])
            raise _fail(name, f"column {col!r} value {s[i]!r} is not {hint}", f"fix the value to {hint}", i + 2)
        if col in t.not_null:
            nulls = parsed.is_null().arg_true()
            if nulls.len():
                raise _fail(name, f"column {col!r} is empty", "fill in the required value", int(nulls[0]) + 2)
        if col in t.choices:
            outside = (parsed.is_not_null() & ~parsed.is_in(list(t.choices[col]))).arg_true()
            if outside.len():
                i = int(outside[0])
                raise _fail(name, f"column {col!r} value {s[i]!r} is not one of {list(t.choices[col])}",
                            "use one of the allowed values", i + 2)
        columns.append(parsed.alias(col).cast(dtype))
    frame = pl.DataFrame(columns)
    dup = frame.select(t.key).is_duplicated().arg_true()
    if dup.len():
        raise _fail(name, f"key {list(t.key)} repeated", "keep one row per key", int(dup[0]) + 2)
    try:
        return validate_frame(frame, t)
    except ContractError as exc:
        raise _fail(name, str(exc), "fix the file to match the contract") from exc


def _read_inflow(root: Path, name: str, nodes: pl.DataFrame) -> pl.DataFrame:
    """Read and check ``inflow.parquet``; return it in the ``node_inflow`` contract.

    Checked before anything is written: the columns and dtypes (:data:`INFLOW_FILE_SCHEMA`,
    optionally with ``source``), nodes that exist in ``network_nodes``, one row per node
    and hour, no negative volume, and the contract's nulls and quality codes.
    """
    try:
        columns = pl.read_parquet_schema(root / name)
    except (pl.exceptions.PolarsError, OSError) as exc:
        first = str(exc).splitlines()[0]
        raise _fail(name, f"is not a readable Parquet file ({first})", "re-run ingest.simulate") from exc
    _check_parquet_schema(root, name, TABLES["node_inflow"].schema if "source" in columns else INFLOW_FILE_SCHEMA)
    frame = pl.read_parquet(root / name)
    if "source" not in frame.columns:
        frame = frame.with_columns(pl.lit(INFLOW_SOURCE, dtype=pl.String).alias("source"))
    try:
        frame = validate_frame(frame, "node_inflow")  # nulls in node_id/ts/quality/source, quality codes
    except ContractError as exc:
        raise _fail(name, str(exc), "fix the file to match the node_inflow contract") from exc
    unknown = frame.filter(~pl.col("node_id").is_in(nodes.get_column("node_id").implode()))
    if unknown.height:
        raise _fail(name, f"node_id {unknown['node_id'].sort()[0]!r} is not in the network_nodes table",
                    "list every node in reference/network_nodes.csv or drop its inflow rows")
    dup = frame.filter(pl.struct("node_id", "ts").is_duplicated())
    if dup.height:
        row = dup.sort("node_id", "ts").row(0, named=True)
        raise _fail(name, f"{dup.height} rows repeat a (node_id, ts), e.g. {row['node_id']} at {row['ts']:%Y-%m-%dT%H:%M}Z",
                    "keep one inflow value per node and hour")
    negative = frame.filter(pl.col("volume_m3") < 0)
    if negative.height:
        row = negative.row(0, named=True)
        raise _fail(name, f"volume_m3 {row['volume_m3']} of {row['node_id']} at {row['ts']:%Y-%m-%dT%H:%M}Z is negative",
                    "inflow cannot be negative: write the metered volume, or null with quality 'missing'")
    return frame


def _check_references(names: dict[str, str], frames: dict[str, pl.DataFrame]) -> None:
    for table, col, parent, pcol in _REFERENCES:
        child = frames[table].get_column(col)
        known = frames[parent].get_column(pcol)
        bad = (child.is_not_null() & ~child.is_in(known.implode())).arg_true()
        if bad.len():
            i = int(bad[0])
            raise _fail(names[table], f"{col} {child[i]!r} is not in {names[parent]}",
                        f"add it to {parent} or correct the {col}", i + 2)


def _check_parquet_schema(root: Path, name: str, schema: pl.Schema | None = None) -> None:
    if schema is None:
        table = "readings" if name.startswith("readings/") else Path(name).stem
        if table not in TABLES:
            raise _fail(name, "is not a known table file", "name Parquet files after their table")
        schema = TABLES[table].schema
    try:
        got = pl.read_parquet_schema(root / name)
    except (pl.exceptions.PolarsError, OSError) as exc:
        first = str(exc).splitlines()[0]
        raise _fail(name, f"is not a readable Parquet file ({first})", "re-run ingest.simulate") from exc
    want = dict(schema)
    if dict(got) != want:
        diff = [f"{c}: {got.get(c, 'absent')} (expected {want.get(c, 'no such column')})"
                for c in dict.fromkeys([*want, *got]) if got.get(c) != want.get(c)]
        raise _fail(name, "schema differs from the contract: " + "; ".join(diff),
                    "write the contract's columns and dtypes (warehouse.TABLES)")
