"""CSV and XLSX dumps of corrector archives (hourly, daily, events) through a column mapping.

Polling software exports a corrector's archives as spreadsheets whose layout differs
per vendor: separators, decimal commas, local time stamps that mark the end of the
interval, pressures in MPa, one file per device or one per export run.  A *mapping*
file (TOML, documented in ``ingest/README.md`` "Archive files"; an example ships in
``ingest/examples/``) says where each value is.  :func:`read_archive_file` turns a file
into the store's frames; a row that cannot be read becomes a :class:`RowError` with its
line number and the rest still loads.  :func:`write_archive_import` writes the good
rows in one transaction.

Times are converted to UTC; interval values are stamped with the interval start.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import math
import re
import tomllib
import zoneinfo
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Final, Literal

import polars as pl

from ingest.errors import IngestFileError
from warehouse._schemas import CHANNELS, SEVERITIES, TABLES

__all__ = [
    "ArchiveImport",
    "ArchiveMapping",
    "RowError",
    "load_archive_mapping",
    "read_archive_file",
    "write_archive_import",
]

#: Interval-archive columns a mapping may fill.
ARCHIVE_COLUMNS: Final = ("volume_m3", "volume_work_m3", "pressure_kpa", "temperature_c")
ArchiveKind = Literal["hourly", "daily", "events"]
_KINDS: Final = ("hourly", "daily", "events")
_NULLS: Final = frozenset({"", "-", "—", "–", "n/a", "na", "null", "none", "нет"})
_UTC_TS: Final = pl.Datetime("us", "UTC")
#: Where daily corrector archives go (the landing's table of daily device archives).
DAILY_TABLE: Final = "device_daily_archive"


class ArchiveMappingError(IngestFileError):
    """A column-mapping file is malformed; the message names the file and the problem."""


@dataclasses.dataclass(frozen=True, slots=True)
class _Target:
    column: str
    scale: float = 1.0


@dataclasses.dataclass(frozen=True, slots=True)
class ArchiveMapping:
    """Where an export keeps each value (see ``ingest/README.md``, "Archive files").

    Build it with :func:`load_archive_mapping`.
    """

    name: str
    delimiter: str = ";"
    decimal: str = ","
    encoding: str = "utf-8"
    header_row: int = 1
    sheet: str | None = None
    time_column: str = ""
    time_format: str = "%d.%m.%Y %H:%M"
    zone: str = "UTC"
    label: Literal["start", "end"] = "start"
    device_column: str | None = None
    device_id: str | None = None
    device_file_pattern: str | None = None
    device_format: str | None = None
    meter_column: str | None = None
    kind_column: str | None = None
    kind_values: Mapping[str, ArchiveKind] = dataclasses.field(default_factory=dict)
    kind: ArchiveKind | None = None
    columns: Mapping[str, _Target] = dataclasses.field(default_factory=dict)
    event_code_column: str | None = None
    event_text_column: str | None = None
    event_severity: str = "warning"
    event_codes: Mapping[str, tuple[str, str]] = dataclasses.field(default_factory=dict)
    source: Path | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class RowError:
    """A row that was not loaded: its line (CSV) or row (XLSX) number and why."""

    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


@dataclasses.dataclass(frozen=True)
class ArchiveImport:
    """What one archive file holds, as frames in the store's contracts.

    Attributes
    ----------
    hourly_archive
        ``hourly_archive`` rows (meter_id, ts = hour start UTC, volumes m³, pressure kPa,
        temperature °C, quality ``valid``, source ``archive``).
    daily_archive
        ``device_daily_archive`` rows (device_id, ts = day start UTC, …).
    readings
        ``readings`` rows of mapped channels (registers at the printed instant, UTC;
        ``received_at`` null as for every file import).
    events
        ``events`` rows.
    errors
        Rows not loaded, with line numbers.
    rows
        Data rows read (good + bad).
    """

    hourly_archive: pl.DataFrame
    daily_archive: pl.DataFrame
    readings: pl.DataFrame
    events: pl.DataFrame
    errors: tuple[RowError, ...]
    rows: int

    @property
    def good_rows(self) -> int:
        return self.rows - len(self.errors)

    def tables(self) -> dict[str, pl.DataFrame]:
        """The non-empty frames by table name."""
        out = {
            "hourly_archive": self.hourly_archive,
            DAILY_TABLE: self.daily_archive,
            "readings": self.readings,
            "events": self.events,
        }
        return {k: v for k, v in out.items() if v.height}


# --- mapping --------------------------------------------------------------------------


def _bad(path: Path | None, msg: str) -> ArchiveMappingError:
    return ArchiveMappingError(f"archive mapping {path or '(inline)'}: {msg}")


def _section(data: Mapping[str, Any], key: str, path: Path | None, allowed: tuple[str, ...]) -> dict[str, Any]:
    sec = data.get(key, {})
    if not isinstance(sec, dict):
        raise _bad(path, f"[{key}] must be a table")
    unknown = sorted(set(sec) - set(allowed))
    if unknown:
        raise _bad(path, f"[{key}]: unknown key {unknown[0]!r}; allowed keys are {', '.join(allowed)}")
    return sec


def _str(sec: Mapping[str, Any], key: str, where: str, path: Path | None, default: Any = None) -> Any:
    v = sec.get(key, default)
    if v is not None and not isinstance(v, str):
        raise _bad(path, f"{where}.{key} = {v!r} must be a string")
    return v


def parse_archive_mapping(data: Mapping[str, Any], *, source: Path | None = None) -> ArchiveMapping:
    """Build an :class:`ArchiveMapping` from a parsed TOML document (see :func:`load_archive_mapping`)."""
    path = source
    unknown = sorted(set(data) - {"name", "description", "file", "time", "device", "meter", "kind",
                                  "columns", "events"})  # fmt: skip
    if unknown:
        raise _bad(path, f"unknown section or key {unknown[0]!r}")
    name = data.get("name")
    if not isinstance(name, str) or not name:
        raise _bad(path, "name = '…' is required")
    f = _section(data, "file", path, ("delimiter", "decimal", "encoding", "header_row", "sheet"))
    t = _section(data, "time", path, ("column", "format", "zone", "label"))
    d = _section(data, "device", path, ("column", "id", "file_pattern", "format"))
    m = _section(data, "meter", path, ("column",))
    k = _section(data, "kind", path, ("column", "values", "kind"))
    c = _section(data, "columns", path, tuple(ARCHIVE_COLUMNS) + tuple(CHANNELS))
    e = _section(data, "events", path, ("code_column", "text_column", "severity", "codes"))
    delimiter = _str(f, "delimiter", "file", path, ";")
    if len(delimiter) != 1:
        raise _bad(path, f"file.delimiter {delimiter!r} must be one character")
    decimal = _str(f, "decimal", "file", path, ",")
    if decimal not in (",", "."):
        raise _bad(path, f"file.decimal {decimal!r} must be ',' or '.'")
    encoding = _str(f, "encoding", "file", path, "utf-8")
    try:
        "".encode(encoding)
    except LookupError:
        raise _bad(path, f"file.encoding {encoding!r} is not a known encoding (utf-8, cp1251, …)") from None
    header_row = f.get("header_row", 1)
    if not isinstance(header_row, int) or isinstance(header_row, bool) or header_row < 1:
        raise _bad(path, f"file.header_row {header_row!r} must be a line number >= 1")
    time_column = _str(t, "column", "time", path)
    if not time_column:
        raise _bad(path, "time.column (the column with the date and time) is required")
    zone = _str(t, "zone", "time", path, "UTC")
    try:
        zoneinfo.ZoneInfo(zone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise _bad(path, f"time.zone {zone!r} is not an IANA time zone (e.g. Europe/Moscow, UTC)") from None
    label = _str(t, "label", "time", path, "start")
    if label not in ("start", "end"):
        raise _bad(path, f"time.label {label!r} must be 'start' or 'end' (what the printed time marks)")
    fmt = _str(t, "format", "time", path, "%d.%m.%Y %H:%M")
    dev_sources = [x for x in ("column", "id", "file_pattern") if d.get(x)]
    if len(dev_sources) > 1:
        raise _bad(path, "give one of device.column, device.id and device.file_pattern")
    pattern = _str(d, "file_pattern", "device", path)
    if pattern is not None:
        try:
            if "device" not in re.compile(pattern).groupindex:
                raise _bad(path, "device.file_pattern needs a named group (?P<device>…)")
        except re.error as err:
            raise _bad(path, f"device.file_pattern is not a regular expression ({err})") from None
    dev_format = _str(d, "format", "device", path)
    if dev_format is not None:
        try:
            dev_format.format(serial=1)
        except (KeyError, IndexError, ValueError):
            raise _bad(path, f"device.format {dev_format!r} must contain {{serial}}, e.g. D{{serial:07d}}") from None
    kind_values_raw = k.get("values", {})
    if not isinstance(kind_values_raw, dict):
        raise _bad(path, "kind.values must be a table such as { \"Hour\" = \"hourly\" }")
    for key, v in kind_values_raw.items():
        if v not in _KINDS:
            raise _bad(path, f"kind.values.{key} = {v!r} must be one of {', '.join(_KINDS)}")
    fixed_kind = _str(k, "kind", "kind", path)
    if fixed_kind is not None and fixed_kind not in _KINDS:
        raise _bad(path, f"kind.kind = {fixed_kind!r} must be one of {', '.join(_KINDS)}")
    kind_column = _str(k, "column", "kind", path)
    if (kind_column is None) == (fixed_kind is None):
        raise _bad(path, "give kind.column (with kind.values) or a fixed kind.kind = 'hourly' | 'daily' | 'events'")
    if kind_column is not None and not kind_values_raw:
        raise _bad(path, "kind.column needs kind.values mapping the file's words to hourly/daily/events")
    columns: dict[str, _Target] = {}
    for target, spec in c.items():
        if isinstance(spec, str):
            columns[target] = _Target(spec)
        elif isinstance(spec, dict) and isinstance(spec.get("column"), str) and set(spec) <= {"column", "scale"}:
            scale = spec.get("scale", 1.0)
            if not isinstance(scale, int | float) or isinstance(scale, bool) or not math.isfinite(scale) or scale == 0:
                raise _bad(path, f"columns.{target}.scale {scale!r} must be a non-zero number")
            columns[target] = _Target(spec["column"], float(scale))
        else:
            raise _bad(path, f"columns.{target} must be a column name or {{ column = '…', scale = 1000 }}")
    severity = _str(e, "severity", "events", path, "warning")
    if severity not in SEVERITIES:
        raise _bad(path, f"events.severity {severity!r} is not one of {', '.join(SEVERITIES)}")
    codes: dict[str, tuple[str, str]] = {}
    codes_raw = e.get("codes", {})
    if not isinstance(codes_raw, dict):
        raise _bad(path, "events.codes must be a table")
    for key, spec in codes_raw.items():
        if not isinstance(spec, dict) or not isinstance(spec.get("code"), str) or not set(spec) <= {"code", "severity"}:
            raise _bad(path, f"events.codes.{key} must be {{ code = 'power_fail', severity = 'critical' }}")
        sev = spec.get("severity", severity)
        if sev not in SEVERITIES:
            raise _bad(path, f"events.codes.{key}.severity {sev!r} is not one of {', '.join(SEVERITIES)}")
        codes[str(key)] = (spec["code"], sev)
    return ArchiveMapping(
        name=name, delimiter=delimiter, decimal=decimal, encoding=encoding, header_row=header_row,
        sheet=_str(f, "sheet", "file", path), time_column=time_column, time_format=fmt, zone=zone,
        label=label, device_column=_str(d, "column", "device", path), device_id=_str(d, "id", "device", path),
        device_file_pattern=pattern, device_format=dev_format, meter_column=_str(m, "column", "meter", path),
        kind_column=kind_column, kind_values=dict(kind_values_raw), kind=fixed_kind, columns=columns,
        event_code_column=_str(e, "code_column", "events", path),
        event_text_column=_str(e, "text_column", "events", path), event_severity=severity,
        event_codes=codes, source=source,
    )  # fmt: skip


def load_archive_mapping(path: Path | str) -> ArchiveMapping:
    """Read a column-mapping TOML file.

    Raises
    ------
    ArchiveMappingError
        The file cannot be read or is malformed; the message names the file and the key.

    Examples
    --------
    >>> from pathlib import Path
    >>> import ingest
    >>> m = load_archive_mapping(Path(ingest.__file__).parent / "examples" / "pollsoft-csv.toml")
    >>> m.zone, m.label
    ('Europe/Moscow', 'end')
    """
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise _bad(path, f"cannot read it ({e.strerror or e})") from None
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise _bad(path, f"not valid TOML ({e})") from None
    return parse_archive_mapping(data, source=path)


# --- reading --------------------------------------------------------------------------


def _csv_rows(path: Path, m: ArchiveMapping) -> Iterator[tuple[int, list[Any]]]:
    try:
        handle = path.open(encoding=m.encoding, newline="")
    except OSError as e:
        raise IngestFileError(f"{path}: cannot read it ({e.strerror or e})") from None
    with handle:
        reader = csv.reader(handle, delimiter=m.delimiter)
        try:
            for row in reader:
                yield reader.line_num, list(row)
        except UnicodeDecodeError as e:
            raise IngestFileError(
                f"{path}: not {m.encoding} text near line {reader.line_num + 1} ({e.reason}); "
                "set file.encoding in the mapping (e.g. cp1251)"
            ) from None
        except csv.Error as e:
            raise IngestFileError(f"{path}: line {reader.line_num}: {e}") from None


def _xlsx_rows(path: Path, m: ArchiveMapping) -> Iterator[tuple[int, list[Any]]]:
    import zipfile

    import openpyxl

    try:
        book = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except (OSError, zipfile.BadZipFile, KeyError, ValueError) as e:
        raise IngestFileError(f"{path}: not a readable XLSX workbook ({e})") from None
    try:
        if m.sheet is not None and m.sheet not in book.sheetnames:
            sheets = ", ".join(book.sheetnames)
            raise IngestFileError(f"{path}: no sheet {m.sheet!r} (sheets: {sheets}); fix file.sheet")
        ws = book[m.sheet] if m.sheet is not None else book.worksheets[0]
        for i, row in enumerate(ws.iter_rows(values_only=True), start=1):
            yield i, list(row)
    finally:
        book.close()


class _RowProblem(Exception):
    pass


def _number(value: Any, m: ArchiveMapping, what: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool):
        raise _RowProblem(f"{what}: {value!r} is not a number")
    if isinstance(value, int | float):
        x = float(value)
    else:
        text = str(value).strip().replace("\u00a0", "").replace("\u202f", "")
        if text.lower() in _NULLS:
            return None
        if m.decimal == ",":
            text = text.replace(" ", "").replace(".", "").replace(",", ".") if "," in text else text.replace(" ", "")
        else:
            text = text.replace(" ", "").replace(",", "")
        try:
            x = float(text)
        except ValueError:
            raise _RowProblem(f"{what}: {value!r} is not a number") from None
    if not math.isfinite(x):
        raise _RowProblem(f"{what}: {value!r} is not a finite number")
    return x


def _time(
    value: Any, m: ArchiveMapping, zone: dt.tzinfo, seen: set[tuple[Any, ...]], key: tuple[Any, ...]
) -> dt.datetime:
    """The row's printed instant in UTC (local wall time resolved in the mapping's zone)."""
    if isinstance(value, dt.datetime):
        naive = value.replace(tzinfo=None) if value.tzinfo is None else None
        if naive is None:
            return value.astimezone(dt.UTC)
    elif isinstance(value, dt.date):
        naive = dt.datetime(value.year, value.month, value.day)
    else:
        text = "" if value is None else str(value).strip()
        if not text:
            raise _RowProblem(f"{m.time_column}: empty time")
        try:
            parsed = dt.datetime.strptime(text, m.time_format)
        except ValueError:
            raise _RowProblem(f"{m.time_column}: {text!r} does not match the format {m.time_format!r}") from None
        if parsed.tzinfo is not None:
            return parsed.astimezone(dt.UTC)
        naive = parsed
    # a repeated wall time (the hour the clocks go back) is the second occurrence
    fold = 1 if (*key, naive) in seen else 0
    seen.add((*key, naive))
    local = naive.replace(tzinfo=zone, fold=fold)
    utc = local.astimezone(dt.UTC)
    if utc.astimezone(zone).replace(tzinfo=None) != naive:
        raise _RowProblem(f"{m.time_column}: {naive} does not exist in {m.zone} (clocks went forward)")
    return utc


def _device_from_name(path: Path, m: ArchiveMapping) -> str | None:
    if m.device_id is not None:
        return m.device_id
    if m.device_file_pattern is not None:
        match = re.search(m.device_file_pattern, path.name)
        if match is None:
            raise IngestFileError(
                f"{path}: the file name does not match device.file_pattern {m.device_file_pattern!r}; "
                "rename the file or pass the device id"
            )
        return _device_text(match.group("device"), m)
    return None


def _device_text(value: Any, m: ArchiveMapping) -> str:
    if value is None or (isinstance(value, str) and not value.strip()):
        raise _RowProblem("no device id")
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = str(value).strip()
    if m.device_format is not None:
        try:
            return m.device_format.format(serial=int(text))
        except ValueError:
            raise _RowProblem(f"device serial {text!r} is not a whole number") from None
    return text


def read_archive_file(
    path: Path | str,
    mapping: ArchiveMapping | Path | str,
    *,
    devices: Mapping[str, str | None] | None = None,
    device_id: str | None = None,
) -> ArchiveImport:
    """Read a CSV or XLSX archive export through a column mapping.

    Parameters
    ----------
    path
        The export (``.csv``/``.txt`` read as CSV, ``.xlsx``/``.xlsm`` with openpyxl).
    mapping
        An :class:`ArchiveMapping` or the path of its TOML file.
    devices
        Known devices → their metering point (``None`` for a unit without one), e.g. from
        the ``devices`` table.  Given, rows of other devices are row errors; hourly rows
        need a metering point (or a ``[meter] column`` in the mapping).
    device_id
        The device the whole file belongs to (overrides the mapping's device source).

    Returns
    -------
    ArchiveImport
        The good rows as store frames (UTC, units in column names) and the bad rows
        with line numbers.

    Raises
    ------
    IngestFileError
        The file cannot be read at all, or its header lacks a mapped column.
    """
    path = Path(path)
    m = mapping if isinstance(mapping, ArchiveMapping) else load_archive_mapping(mapping)
    zone = zoneinfo.ZoneInfo(m.zone)
    if not path.exists():
        raise IngestFileError(f"{path}: no such file")
    suffix = path.suffix.lower()
    rows = _xlsx_rows(path, m) if suffix in (".xlsx", ".xlsm") else _csv_rows(path, m)
    file_device = device_id or _device_from_name(path, m)
    header: dict[str, int] | None = None
    hourly: list[dict[str, Any]] = []
    daily: list[dict[str, Any]] = []
    readings: list[tuple[str, str, dt.datetime, float]] = []
    events: list[tuple[str, dt.datetime, str, str, str]] = []
    errors: list[RowError] = []
    seen: set[tuple[Any, ...]] = set()
    count = 0
    for line, row in rows:
        if header is None:
            if line < m.header_row:
                continue
            header = {str(name).strip(): i for i, name in enumerate(row) if name is not None and str(name).strip()}
            _check_header(path, m, header, file_device)
            continue
        if all(v is None or (isinstance(v, str) and not v.strip()) for v in row):
            continue  # blank line
        count += 1
        try:
            _row(row, header, m, zone, seen, file_device, devices, hourly, daily, readings, events)
        except _RowProblem as e:
            errors.append(RowError(line, str(e)))
    if header is None:
        raise IngestFileError(f"{path}: no header at line {m.header_row}; check file.header_row in the mapping")
    return ArchiveImport(
        hourly_archive=_hourly_frame(hourly),
        daily_archive=_daily_frame(daily),
        readings=pl.DataFrame(
            readings, schema={"device_id": pl.String, "channel": pl.String, "ts": _UTC_TS, "value": pl.Float64},
            orient="row",
        )
        .with_columns(quality=pl.lit("valid"), received_at=pl.lit(None, dtype=_UTC_TS))
        .unique(subset=["device_id", "channel", "ts"], keep="first", maintain_order=True),
        events=pl.DataFrame(
            events, schema={"device_id": pl.String, "ts": _UTC_TS, "code": pl.String, "severity": pl.String,
                            "detail": pl.String}, orient="row",
        ).unique(subset=["device_id", "ts", "code"], keep="first", maintain_order=True),
        errors=tuple(errors),
        rows=count,
    )  # fmt: skip


def _check_header(path: Path, m: ArchiveMapping, header: Mapping[str, int], file_device: str | None) -> None:
    needed = [m.time_column, *(t.column for t in m.columns.values())]
    needed += [c for c in (m.kind_column, m.meter_column, m.event_code_column, m.event_text_column) if c]
    if file_device is None:
        if m.device_column is None:
            raise IngestFileError(
                f"{path}: the mapping names no device source and no device id was given; "
                "pass the device id (--device) or set device.column / device.id / device.file_pattern"
            )
        needed.append(m.device_column)
    missing = [c for c in needed if c not in header]
    if missing:
        raise IngestFileError(
            f"{path}: header line {m.header_row} has no column {missing[0]!r} (columns: {', '.join(header)}); "
            "fix the mapping or file.header_row"
        )


def _cell(row: list[Any], header: Mapping[str, int], name: str) -> Any:
    i = header[name]
    return row[i] if i < len(row) else None


def _row(
    row: list[Any], header: Mapping[str, int], m: ArchiveMapping, zone: dt.tzinfo, seen: set[tuple[Any, ...]],
    file_device: str | None, devices: Mapping[str, str | None] | None, hourly: list[dict[str, Any]],
    daily: list[dict[str, Any]], readings: list[tuple[str, str, dt.datetime, float]],
    events: list[tuple[str, dt.datetime, str, str, str]],
) -> None:  # fmt: skip
    device = file_device if file_device is not None else _device_text(_cell(row, header, m.device_column or ""), m)
    if devices is not None and device not in devices:
        raise _RowProblem(f"unknown device {device!r} (not in the devices table)")
    if m.kind is not None:
        kind: str = m.kind
    else:
        word = _cell(row, header, m.kind_column or "")
        word = "" if word is None else str(word).strip()
        if word not in m.kind_values:
            raise _RowProblem(f"{m.kind_column}: {word!r} is not one of {', '.join(map(repr, m.kind_values))}")
        kind = m.kind_values[word]
    instant = _time(_cell(row, header, m.time_column), m, zone, seen, (device, kind))
    if kind == "events":
        code_raw = _cell(row, header, m.event_code_column) if m.event_code_column else None
        text_raw = _cell(row, header, m.event_text_column) if m.event_text_column else None
        if isinstance(code_raw, float) and code_raw.is_integer():
            code_raw = int(code_raw)  # Excel stores 5 as 5.0
        code_key = "" if code_raw is None else str(code_raw).strip()
        text = "" if text_raw is None else str(text_raw).strip()
        if not code_key and not text:
            raise _RowProblem("an event row without a code or text")
        default = (f"code_{code_key}" if code_key else _slug(text), m.event_severity)
        code, severity = m.event_codes.get(code_key, default)
        events.append((device, instant, code, severity, text or code))
        return
    values = {}
    for target, t in m.columns.items():
        x = _number(_cell(row, header, t.column), m, t.column)
        values[target] = None if x is None else x * t.scale
    for col in ("volume_m3", "volume_work_m3"):
        v = values.get(col)
        if v is not None and v < 0:
            raise _RowProblem(f"{m.columns[col].column}: negative interval volume {v}")
    if kind == "hourly":
        start = instant - dt.timedelta(hours=1) if m.label == "end" else instant
    else:
        local = instant.astimezone(zone)
        start = (local - dt.timedelta(days=1)).astimezone(dt.UTC) if m.label == "end" else instant
    archive = {c: values.get(c) for c in ARCHIVE_COLUMNS}
    has_archive = any(c in m.columns for c in ARCHIVE_COLUMNS)
    if has_archive and kind == "hourly":
        meter = _cell(row, header, m.meter_column) if m.meter_column else None
        meter = str(meter).strip() if meter not in (None, "") else (devices or {}).get(device)
        if meter is None:
            raise _RowProblem(
                f"device {device!r} has no metering point for its hourly archive "
                "(set its meter in the devices table or map a [meter] column)"
            )
        hourly.append({"meter_id": meter, "ts": start, **archive})
    elif has_archive:
        daily.append({"device_id": device, "ts": start, **archive})
    for target, v in values.items():
        if target not in ARCHIVE_COLUMNS and v is not None:  # interval means stay in the archive
            readings.append((device, target, instant, v))


def _slug(text: str) -> str:
    return re.sub(r"[^0-9a-zA-Zа-яА-ЯёЁ]+", "_", text.strip().lower()).strip("_")[:40] or "event"


def _hourly_frame(rows: list[dict[str, Any]]) -> pl.DataFrame:
    schema: dict[str, Any] = {"meter_id": pl.String, "ts": _UTC_TS, **dict.fromkeys(ARCHIVE_COLUMNS, pl.Float64)}
    return pl.DataFrame(rows, schema=schema).with_columns(quality=pl.lit("valid"), source=pl.lit("archive"))


def _daily_frame(rows: list[dict[str, Any]]) -> pl.DataFrame:
    schema: dict[str, Any] = {"device_id": pl.String, "ts": _UTC_TS, **dict.fromkeys(ARCHIVE_COLUMNS, pl.Float64)}
    return pl.DataFrame(rows, schema=schema).with_columns(
        quality=pl.lit("valid"), received_at=pl.lit(None, dtype=_UTC_TS)
    )


def write_archive_import(store: Any, result: ArchiveImport) -> dict[str, int]:
    """Write an import's good rows in one transaction; returns new rows per table.

    Rows already stored (same natural key) are skipped, so importing a file twice
    stores nothing the second time.

    Raises
    ------
    IngestFileError
        Daily rows but the store has no ``device_daily_archive`` table (migrate it).
    """
    tables = result.tables()
    if DAILY_TABLE in tables and DAILY_TABLE not in TABLES:
        raise IngestFileError(f"the file has daily archive rows but this version has no {DAILY_TABLE} table")
    written: dict[str, int] = {}
    with store.transaction():
        for name, frame in tables.items():
            written[name] = int(store.write(name, frame))
    return written
