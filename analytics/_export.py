"""Streamed exports: CSV, XLSX, DBF, PDF, JSON (array or lines), XML and TXT.

The input is an iterable of Polars frames (batches) with the same columns, so an export
of a million rows never holds more than one batch in memory (XLSX is streamed into its
zip entry: :mod:`analytics._xlsx`).  Three formats need the width of every column before the first row
can be written (DBF field lengths, TXT fixed width, PDF column layout); they spool the
batches, already turned into text, to an Arrow IPC file next to the output and write the
file in a second pass: memory stays one batch, disk holds the spool for the duration.

Every export is atomic: the file is written under a temporary name in the target folder,
flushed to disk and renamed over ``path`` only when complete, so a failed export leaves
no partial (or half-overwritten) output file.

Text cells that start with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return could
run as formulas when a spreadsheet opens the file (CSV/formula injection).  How each
format makes them safe (see ``analytics/README.md``):

* CSV, TXT, DBF: the cell is prefixed with an apostrophe ``'`` (the OWASP advice); a
  spreadsheet shows the text and never evaluates it.
* XLSX: the cell is written as an inline string cell (never a formula) with Excel's
  own "quote prefix" style; the value itself is unchanged.
* JSON, XML: values are typed strings, escaped by the format; no program evaluates
  them, so they are left unchanged (a data exchange must round-trip exactly).
* PDF: printed text, never evaluated; unchanged.

Numbers are never touched: only text columns can carry a formula.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import io
import os
import re
import tempfile
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal, get_args

import polars as pl

from analytics._pdf_font import PdfFont, pdf_text_string
from analytics._xlsx import XlsxStream, cell_kind
from analytics.errors import ExportError

ExportFormat = Literal["csv", "xlsx", "dbf", "pdf", "json", "jsonl", "xml", "txt"]
#: Every format :func:`write_export` writes (``jsonl`` is JSON Lines: one object per line).
EXPORT_FORMATS: Final[tuple[str, ...]] = get_args(ExportFormat)
#: First characters that make a text cell a potential spreadsheet formula.
FORMULA_PREFIXES: Final = ("=", "+", "-", "@", "\t", "\r")
#: Single-byte code pages a DBF can be written in, with their dBase language-driver id.
DBF_CODEPAGES: Final = {"cp1251": 0xC9, "cp866": 0x65, "cp1252": 0x03}

_FORMULA_RE: Final = r"^[=+\-@\t\r]"
_SPLIT_ROWS: Final = 50_000  # a single DataFrame is written in slices of this many rows
_SUFFIXES: Final = {".ndjson": "jsonl", ".jsonl": "jsonl", ".text": "txt"}


@dataclass(frozen=True)
class ExportSummary:
    """What :func:`write_export` wrote.

    Attributes
    ----------
    path
        The finished file.
    fmt
        Its format.
    rows
        Data rows written (header rows not counted).
    columns
        Column names, in order, as given (see ``field_names`` for renames).
    bytes
        File size.
    sha256
        SHA-256 of the file, hex.
    seconds
        Wall time of the export.
    guarded_cells
        Text cells made safe against formula injection (see the module docstring).
    truncated_cells
        Cells shortened to fit the format: DBF text over 254 bytes, XLSX text over
        32,767 characters, PDF cells wider than their column.
    pages
        PDF pages (``None`` for other formats).
    field_names
        Column → name in the file where the format forced a rename (DBF: 10 ASCII
        characters, unique; XML: a valid element name).
    """

    path: Path
    fmt: str
    rows: int
    columns: tuple[str, ...]
    bytes: int
    sha256: str
    seconds: float
    guarded_cells: int = 0
    truncated_cells: int = 0
    pages: int | None = None
    field_names: dict[str, str] = field(default_factory=dict)


@dataclass
class _Stats:
    rows: int = 0
    guarded: int = 0
    truncated: int = 0
    pages: int | None = None
    field_names: dict[str, str] = field(default_factory=dict)


def write_export(
    batches: Iterable[pl.DataFrame] | pl.DataFrame,
    path: str | Path,
    fmt: ExportFormat | str | None = None,
    *,
    title: str | None = None,
    columns: Sequence[str] | None = None,
    emphasis: str | None = None,
    float_digits: int | None = None,
    dbf_encoding: str = "cp1251",
    overwrite: bool = True,
    progress: Callable[[int], None] | None = None,
) -> ExportSummary:
    """Write batches of rows to one file in ``fmt``, streamed and atomically.

    Parameters
    ----------
    batches
        Frames with the same columns (the first one fixes names and dtypes; later ones
        are cast to them), or one frame (written in slices).  Time columns are written
        as ISO 8601; tz-aware ones in UTC with a ``Z`` (``2022-01-01T05:00:00Z``).
    path
        Output file.  Its folder must exist.  Written under a temporary name and renamed
        when complete: a failure leaves no partial file and keeps an older file intact.
    fmt
        One of :data:`EXPORT_FORMATS`; ``None`` takes it from the file suffix
        (``.csv``, ``.xlsx``, ``.dbf``, ``.pdf``, ``.json``, ``.jsonl``/``.ndjson``,
        ``.xml``, ``.txt``).
    title
        A title: printed at the top of every PDF page; the XLSX document's title
        property; the XML root's ``title`` attribute.  CSV, DBF, JSON and TXT are
        data-only and ignore it.
    columns
        Columns to write, in this order (default: all of the first batch).
    emphasis
        Name of a Boolean column marking rows to print in bold (e.g. subtotals of a
        report) in PDF and XLSX.  The column itself is not written in any format.
    float_digits
        Round floating-point values to this many decimals in text output (TXT, PDF;
        the PDF default is 3).  ``None`` writes the shortest exact representation.
        CSV, JSON, XML and XLSX keep full precision; DBF uses ``float_digits`` or 6.
    dbf_encoding
        DBF code page: ``cp1251`` (default; Russian Windows, what 1C and FoxPro read),
        ``cp866`` or ``cp1252``.  Characters outside it become ``?``.
    overwrite
        Replace an existing file (default).  With ``False`` an existing ``path`` is an error.
    progress
        Called with the number of rows written so far after each batch.

    Returns
    -------
    ExportSummary

    Raises
    ------
    ExportError
        Unknown format, missing folder, columns that are not in the data, batches whose
        columns differ, a column type the format cannot hold; no file is left behind.

    Examples
    --------
    >>> import polars as pl, tempfile, pathlib
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "m.csv"
    >>> write_export(pl.DataFrame({"meter_id": ["=1+2"], "volume_m3": [1.5]}), out).rows
    1
    >>> out.read_text()
    "meter_id,volume_m3\\n'=1+2,1.5\\n"
    """
    started = time.perf_counter()
    target = Path(path)
    kind = _resolve_format(target, fmt)
    if not target.parent.is_dir():
        raise ExportError(f"the folder of {target} does not exist; create it or choose another path")
    if target.is_dir():
        raise ExportError(f"{target} is a folder; give a file name such as {target / ('export.' + kind)}")
    if target.exists() and not overwrite:
        raise ExportError(f"{target} exists; remove it or allow overwriting")
    if emphasis is not None and columns is not None and emphasis in columns:
        raise ExportError(f"the emphasis column {emphasis!r} is not written; drop it from columns")
    stream = _Batches(_as_batches(batches), columns=columns, emphasis=emphasis)
    stats = _Stats()
    with _atomic(target) as tmp:
        writer = _WRITERS[kind]
        writer(stream, tmp, stats, _Options(title, float_digits, dbf_encoding, progress))
        size = tmp.stat().st_size
        digest = _sha256(tmp)
    return ExportSummary(
        path=target,
        fmt=kind,
        rows=stats.rows,
        columns=tuple(stream.columns),
        bytes=size,
        sha256=digest,
        seconds=time.perf_counter() - started,
        guarded_cells=stats.guarded,
        truncated_cells=stats.truncated,
        pages=stats.pages,
        field_names=stats.field_names,
    )


# --- shared plumbing -------------------------------------------------------------------
@dataclass(frozen=True)
class _Options:
    title: str | None
    float_digits: int | None
    dbf_encoding: str
    progress: Callable[[int], None] | None


def _resolve_format(path: Path, fmt: str | None) -> str:
    if fmt is None:
        suffix = path.suffix.lower()
        fmt = _SUFFIXES.get(suffix, suffix.lstrip("."))
        if fmt not in EXPORT_FORMATS:
            raise ExportError(
                f"cannot tell the export format from {path.name!r}; give one of "
                f"{', '.join(EXPORT_FORMATS)} or a file name ending in one of them"
            )
    fmt = fmt.lower()
    if fmt not in EXPORT_FORMATS:
        raise ExportError(f"unknown export format {fmt!r}; choose one of {', '.join(EXPORT_FORMATS)}")
    return fmt


def _as_batches(batches: Iterable[pl.DataFrame] | pl.DataFrame) -> Iterator[pl.DataFrame]:
    if isinstance(batches, pl.DataFrame):
        if batches.height == 0:
            yield batches
        for offset in range(0, batches.height, _SPLIT_ROWS):
            yield batches.slice(offset, _SPLIT_ROWS)
        return
    for batch in batches:
        if not isinstance(batch, pl.DataFrame):
            raise ExportError(f"batches must be Polars DataFrames, got {type(batch).__name__}")
        yield batch


class _Batches:
    """The batches, checked and cast to the first batch's schema.

    ``emphasis`` rows are reported through :attr:`last_emphasis` for the formats that
    use it; the column is removed from what the writers see.
    """

    def __init__(
        self, source: Iterator[pl.DataFrame], *, columns: Sequence[str] | None, emphasis: str | None
    ) -> None:
        self._source = source
        self._emphasis = emphasis
        self._first: pl.DataFrame | None = None
        self.last_emphasis: pl.Series | None = None
        first = next(source, None)
        if first is None:
            if columns is None:
                raise ExportError("nothing to export: no batches and no columns given")
            first = pl.DataFrame(schema={c: pl.String for c in columns})
        wanted = list(columns) if columns is not None else [c for c in first.columns if c != emphasis]
        missing = [c for c in wanted if c not in first.columns]
        if emphasis is not None and emphasis not in first.columns:
            missing.append(emphasis)
        if missing:
            raise ExportError(f"columns {missing} are not in the data; its columns are {first.columns}")
        if not wanted:
            raise ExportError("nothing to export: no columns selected")
        for name in wanted:
            dtype = first.schema[name]
            if isinstance(dtype, (pl.List, pl.Array, pl.Struct, pl.Object, pl.Binary)):
                raise ExportError(
                    f"column {name!r} has type {dtype}, which a flat export cannot hold; "
                    "flatten or drop it first"
                )
        self.columns = wanted
        self._take = wanted + ([emphasis] if emphasis is not None else [])
        self.schema = pl.Schema({c: first.schema[c] for c in wanted})
        self._full_schema = {c: first.schema[c] for c in self._take}
        self._first = first

    def __iter__(self) -> Iterator[pl.DataFrame]:
        if self._first is not None:
            first, self._first = self._first, None
            yield self._prepare(first)
        for batch in self._source:
            yield self._prepare(batch)

    def _prepare(self, batch: pl.DataFrame) -> pl.DataFrame:
        missing = [c for c in self._take if c not in batch.columns]
        if missing:
            raise ExportError(f"a batch lacks columns {missing}; every batch must have the same columns")
        exprs = []
        for name, dtype in self._full_schema.items():
            expr = pl.col(name)
            if batch.schema[name] != dtype:
                expr = expr.cast(dtype)
            exprs.append(expr)
        try:
            out = batch.select(exprs)
        except pl.exceptions.PolarsError as exc:
            raise ExportError(f"a batch's columns do not convert to the first batch's types: {exc}") from exc
        if self._emphasis is not None:
            self.last_emphasis = out.get_column(self._emphasis).cast(pl.Boolean).fill_null(False)
            out = out.drop(self._emphasis)
        return out


@contextlib.contextmanager
def _atomic(target: Path) -> Iterator[Path]:
    """Yield a temporary path next to ``target``; rename it over ``target`` on success."""
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _is_text(dtype: pl.DataType) -> bool:
    return dtype == pl.String or isinstance(dtype, (pl.Categorical, pl.Enum))


def _is_float(dtype: pl.DataType) -> bool:
    return dtype in (pl.Float32, pl.Float64)


def _guard(name: str) -> pl.Expr:
    """A text column with a ``'`` in front of cells that could run as a formula."""
    col = pl.col(name).cast(pl.String)
    return pl.when(col.str.contains(_FORMULA_RE)).then(pl.lit("'") + col).otherwise(col).alias(name)


def _count_guarded(batch: pl.DataFrame, names: Sequence[str]) -> int:
    if not names:
        return 0
    counts = batch.select(
        pl.sum_horizontal(pl.col(n).cast(pl.String).str.contains(_FORMULA_RE).sum() for n in names)
    )
    return int(counts.item() or 0)


def _text_expr(name: str, dtype: pl.DataType, *, float_digits: int | None) -> pl.Expr:
    """A column as text: ISO 8601 times (UTC ``Z``), NaN as null, booleans true/false."""
    col = pl.col(name)
    if isinstance(dtype, pl.Datetime):
        if dtype.time_zone is not None:
            return col.dt.convert_time_zone("UTC").dt.strftime("%Y-%m-%dT%H:%M:%S%.fZ").alias(name)
        return col.dt.strftime("%Y-%m-%dT%H:%M:%S%.f").alias(name)
    if dtype == pl.Date:
        return col.dt.strftime("%Y-%m-%d").alias(name)
    if _is_float(dtype):
        col = col.fill_nan(None)
        if float_digits is not None:
            return _fixed(col, float_digits).alias(name)
        return col.cast(pl.String).alias(name)
    return col.cast(pl.String).alias(name)


def _fixed(col: pl.Expr, digits: int) -> pl.Expr:
    """Fixed-point text with exactly ``digits`` decimals (inf stays ``inf``)."""
    rounded = col.round(digits)
    if digits == 0:
        return rounded.cast(pl.Int64, strict=False).cast(pl.String)
    scaled = (rounded.abs() * 10**digits).round(0)
    whole = (scaled // 10**digits).cast(pl.Int64, strict=False).cast(pl.String)
    frac = (scaled % 10**digits).cast(pl.Int64, strict=False).cast(pl.String).str.pad_start(digits, "0")
    sign = pl.when(rounded < 0).then(pl.lit("-")).otherwise(pl.lit(""))
    text = pl.concat_str([sign, whole, pl.lit("."), frac])
    # Values beyond Int64 (|x| > 9.2e18 / 10**digits) fall back to Polars' own text.
    return pl.when(whole.is_null() & col.is_not_null()).then(col.cast(pl.String)).otherwise(text)


def _text_batch(batch: pl.DataFrame, *, float_digits: int | None, guard: bool) -> tuple[pl.DataFrame, int]:
    """Every column as text (nulls stay null); text columns guarded when asked."""
    names = [n for n, t in batch.schema.items() if _is_text(t)]
    guarded = _count_guarded(batch, names) if guard else 0
    exprs = []
    for name, dtype in batch.schema.items():
        if _is_text(dtype):
            exprs.append(_guard(name) if guard else pl.col(name).cast(pl.String))
        else:
            exprs.append(_text_expr(name, dtype, float_digits=float_digits))
    return batch.select(exprs), guarded


def _tick(options: _Options, stats: _Stats) -> None:
    if options.progress is not None:
        options.progress(stats.rows)


# --- CSV -----------------------------------------------------------------------------
def _write_csv(stream: _Batches, tmp: Path, stats: _Stats, options: _Options) -> None:
    """RFC 4180 CSV, UTF-8, comma-separated, header row; nulls are empty cells."""
    with open(tmp, "wb") as fh:
        header = True
        for batch in stream:
            text_cols = [n for n, t in batch.schema.items() if _is_text(t)]
            stats.guarded += _count_guarded(batch, text_cols)
            exprs = []
            for name, dtype in batch.schema.items():
                if _is_text(dtype):
                    exprs.append(_guard(name))
                elif isinstance(dtype, (pl.Datetime, pl.Date)):
                    exprs.append(_text_expr(name, dtype, float_digits=None))
                elif _is_float(dtype):
                    exprs.append(pl.col(name).fill_nan(None))
                else:
                    exprs.append(pl.col(name))
            out = batch.select(exprs)
            if header or out.height:
                out.write_csv(fh, include_header=header)
            header = False
            stats.rows += out.height
            _tick(options, stats)


# --- JSON ----------------------------------------------------------------------------
def _json_batches(stream: _Batches) -> Iterator[tuple[pl.DataFrame, bytes]]:
    for batch in stream:
        exprs = []
        for name, dtype in batch.schema.items():
            if isinstance(dtype, (pl.Datetime, pl.Date)):
                exprs.append(_text_expr(name, dtype, float_digits=None))
            elif _is_float(dtype):
                exprs.append(pl.col(name).fill_nan(None))
            elif isinstance(dtype, (pl.Categorical, pl.Enum)):
                exprs.append(pl.col(name).cast(pl.String))
            else:
                exprs.append(pl.col(name))
        out = batch.select(exprs)
        buf = io.BytesIO()
        if out.height:
            out.write_ndjson(buf)
        yield out, buf.getvalue()


def _write_json(stream: _Batches, tmp: Path, stats: _Stats, options: _Options) -> None:
    """A JSON array of objects, one per row, keys in column order; nulls are ``null``."""
    with open(tmp, "wb") as fh:
        fh.write(b"[")
        sep = b"\n"
        for out, data in _json_batches(stream):
            if out.height:
                # JSON escapes newlines inside strings, so raw newlines only end records.
                fh.write(sep + data.rstrip(b"\n").replace(b"\n", b",\n"))
                sep = b",\n"
            stats.rows += out.height
            _tick(options, stats)
        fh.write(b"\n]\n")


def _write_jsonl(stream: _Batches, tmp: Path, stats: _Stats, options: _Options) -> None:
    """JSON Lines: one JSON object per line."""
    with open(tmp, "wb") as fh:
        for out, data in _json_batches(stream):
            fh.write(data)
            stats.rows += out.height
            _tick(options, stats)


# --- XML -----------------------------------------------------------------------------
_XML_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")
# Characters XML 1.0 forbids (C0 controls other than tab, LF, CR) and non-characters.
_XML_BAD = r"[\x00-\x08\x0B\x0C\x0E-\x1F\uFFFE\uFFFF]"


def xml_escape_expr(col: pl.Expr) -> pl.Expr:
    """Escape a text expression for XML content or attributes (vectorised).

    ``&``, ``<``, ``>`` and ``"`` become entities, CR becomes ``&#13;`` and tab/LF
    ``&#9;``/``&#10;`` (so parsers do not normalise them away), and characters XML 1.0
    cannot carry become U+FFFD.
    """
    return (
        col.str.replace_all("&", "&amp;", literal=True)
        .str.replace_all("<", "&lt;", literal=True)
        .str.replace_all(">", "&gt;", literal=True)
        .str.replace_all('"', "&quot;", literal=True)
        .str.replace_all("\r", "&#13;", literal=True)
        .str.replace_all("\t", "&#9;", literal=True)
        .str.replace_all("\n", "&#10;", literal=True)
        .str.replace_all(_XML_BAD, "\ufffd")
    )


def xml_escape(text: str) -> str:
    """The scalar twin of :func:`xml_escape_expr`."""
    out = (
        text.replace("&", "&amp;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace('"', "&quot;")
        .replace("\r", "&#13;")
        .replace("\t", "&#9;")
        .replace("\n", "&#10;")
    )
    return re.sub(_XML_BAD, "\ufffd", out)


def _xml_names(columns: Sequence[str]) -> list[str]:
    names: list[str] = []
    for col in columns:
        name = col if _XML_NAME.match(col) and not col.lower().startswith("xml") else ""
        if not name:
            name = re.sub(r"[^A-Za-z0-9_.\-]", "_", col)
            if not re.match(r"^[A-Za-z_]", name) or name.lower().startswith("xml"):
                name = "_" + name
        base, n = name, 1
        while name in names:
            n += 1
            name = f"{base}_{n}"
        names.append(name)
    return names


def _write_xml(stream: _Batches, tmp: Path, stats: _Stats, options: _Options) -> None:
    """``<export>`` with a ``<columns>`` schema and one ``<row>`` per row.

    Each column is a child element of ``<row>`` named after the column (made a valid
    XML name if needed; see ``field_names``); a null value has no element.
    """
    names = _xml_names(stream.columns)
    stats.field_names = {c: n for c, n in zip(stream.columns, names, strict=True) if c != n}
    with open(tmp, "wb") as fh:
        title = f' title="{xml_escape(options.title)}"' if options.title else ""
        created = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        head = [f'<?xml version="1.0" encoding="UTF-8"?>\n<export{title} created="{created}">\n<columns>\n']
        for col, name in zip(stream.columns, names, strict=True):
            head.append(
                f'<column name="{xml_escape(col)}" element="{name}" type="{stream.schema[col]}"/>\n'
            )
        head.append("</columns>\n<rows>\n")
        fh.write("".join(head).encode("utf-8"))
        for batch in stream:
            text, _ = _text_batch(batch, float_digits=None, guard=False)
            parts: list[pl.Expr] = [pl.lit("<row>")]
            for col, name in zip(stream.columns, names, strict=True):
                value = pl.lit(f"<{name}>") + xml_escape_expr(pl.col(col)) + pl.lit(f"</{name}>")
                parts.append(pl.when(pl.col(col).is_null()).then(pl.lit("")).otherwise(value))
            parts.append(pl.lit("</row>\n"))
            lines = text.select(pl.concat_str(parts).alias("x")).get_column("x")
            fh.write("".join(lines.to_list()).encode("utf-8"))
            stats.rows += batch.height
            _tick(options, stats)
        fh.write(b"</rows>\n</export>\n")


# --- XLSX ----------------------------------------------------------------------------
_XLSX_MAX_ROWS: Final = 1_048_576  # Excel's rows per sheet, header included (tests lower it)
_XLSX_MAX_TEXT: Final = 32_767  # Excel's characters per cell
_XLSX_MAX_COLUMNS: Final = 16_384  # Excel's columns per sheet (A … XFD)


def _write_xlsx(stream: _Batches, tmp: Path, stats: _Stats, options: _Options) -> None:
    """One sheet ``data`` (continued on ``data_2``… past Excel's 1,048,576 rows).

    Each batch becomes the sheet's ``<row>`` XML through Polars expressions and is
    streamed into the deflated zip entry (see :mod:`analytics._xlsx`), so memory stays
    one batch.  The header row is bold with a bottom border and frozen; numbers are
    numeric cells (NaN empty, ±inf the error ``#DIV/0!``), times are Excel date-times
    (UTC) with an ISO format, text is always an inline string cell (never a formula)
    and text that could run as one gets Excel's quote-prefix style; rows of the
    ``emphasis`` column are bold.
    """
    if len(stream.columns) > _XLSX_MAX_COLUMNS:
        raise ExportError(
            f"an XLSX sheet holds at most {_XLSX_MAX_COLUMNS:,} columns, the export has "
            f"{len(stream.columns):,}; select fewer columns or export CSV"
        )
    book = XlsxStream(
        tmp,
        columns=stream.columns,
        kinds=[cell_kind(dtype) for dtype in stream.schema.values()],
        title=options.title,
        guard=_FORMULA_RE,
        max_rows=_XLSX_MAX_ROWS,
        max_text=_XLSX_MAX_TEXT,
    )
    try:
        for batch in stream:
            guarded, truncated = book.write(batch, stream.last_emphasis)
            stats.guarded += guarded
            stats.truncated += truncated
            stats.rows += batch.height
            _tick(options, stats)
        book.close()
    except BaseException:
        # The caller (``_atomic``) deletes the unfinished file.
        book.abandon()
        raise


# --- two-pass formats: spool to Arrow IPC, then write --------------------------------
class _Spool:
    """Text batches on disk plus per-column maximum widths (characters) and longest values.

    The longest value lets the PDF measure a column with the font's real widths.
    """

    def __init__(self, folder: Path) -> None:
        fd, name = tempfile.mkstemp(prefix=".askug-export-", suffix=".arrows", dir=folder)
        os.close(fd)
        self.path = Path(name)
        self.widths: dict[str, int] = {}
        self.longest: dict[str, str] = {}
        self.rows = 0
        self._writer: Any = None
        self._sink: Any = None

    def add(self, text: pl.DataFrame, extra: pl.Series | None = None) -> None:
        import pyarrow as pa

        if extra is not None:
            text = text.with_columns(extra.alias("__emphasis__"))
        table = text.to_arrow()
        if self._writer is None:
            self._sink = pa.OSFile(str(self.path), "wb")
            self._writer = pa.ipc.new_stream(self._sink, table.schema)
        self._writer.write_table(table)
        if text.height:
            lengths = text.select(pl.col(c).str.len_chars().max() for c in text.columns if c != "__emphasis__")
            for name, value in lengths.row(0, named=True).items():
                if int(value or 0) > self.widths.get(name, 0):
                    self.widths[name] = int(value or 0)
                    column = text.get_column(name)
                    at = column.str.len_chars().arg_max()
                    if at is not None:
                        self.longest[name] = str(column[at])
        self.rows += text.height

    def finish(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._sink.close()

    def __iter__(self) -> Iterator[pl.DataFrame]:
        import pyarrow as pa

        if self._writer is None:
            return
        with pa.OSFile(str(self.path), "rb") as source:
            reader = pa.ipc.open_stream(source)
            for record_batch in reader:
                frame = pl.from_arrow(record_batch)
                assert isinstance(frame, pl.DataFrame)
                yield frame

    def remove(self) -> None:
        with contextlib.suppress(Exception):
            self.finish()
        self.path.unlink(missing_ok=True)


@contextlib.contextmanager
def _spooled(
    stream: _Batches, tmp: Path, *, float_digits: int | None, guard: bool, stats: _Stats
) -> Iterator[_Spool]:
    spool = _Spool(tmp.parent)
    try:
        for batch in stream:
            text, guarded = _text_batch(batch, float_digits=float_digits, guard=guard)
            stats.guarded += guarded
            spool.add(text, stream.last_emphasis)
        spool.finish()
        yield spool
    finally:
        spool.remove()


# --- TXT -----------------------------------------------------------------------------
def _write_txt(stream: _Batches, tmp: Path, stats: _Stats, options: _Options) -> None:
    """Fixed-width text, UTF-8: a header, a dashed rule, one line per row.

    Columns are separated by two spaces; numbers are right-aligned, everything else
    left-aligned; nulls are blank.  Tabs and line breaks inside a cell become spaces so
    every row stays one line.
    """
    numeric = {n for n, t in stream.schema.items() if t.is_numeric()}
    with _spooled(stream, tmp, float_digits=options.float_digits, guard=True, stats=stats) as spool:
        widths = {c: max(len(c), spool.widths.get(c, 0)) for c in stream.columns}
        with open(tmp, "wb") as fh:
            header = "  ".join(
                c.rjust(widths[c]) if c in numeric else c.ljust(widths[c]) for c in stream.columns
            )
            rule = "  ".join("-" * widths[c] for c in stream.columns)
            fh.write(f"{header.rstrip()}\n{rule}\n".encode())
            for text in spool:
                exprs = []
                for c in stream.columns:
                    cell = pl.col(c).fill_null("").str.replace_all(r"[\t\r\n]", " ")
                    exprs.append(cell.str.pad_start(widths[c]) if c in numeric else cell.str.pad_end(widths[c]))
                lines = text.select(pl.concat_str(exprs, separator="  ").str.strip_chars_end().alias("x"))
                body = "\n".join(lines.get_column("x").to_list())
                if body:
                    fh.write((body + "\n").encode("utf-8"))
                stats.rows += text.height
                _tick(options, stats)


# --- DBF (dBase III) -------------------------------------------------------------------
_DBF_MAX_TEXT: Final = 254
_DBF_MAX_NUMBER: Final = 20


def _dbf_field_names(columns: Sequence[str]) -> list[str]:
    """Upper-case ASCII names of at most 10 characters, unique (``~2``… on clashes)."""
    out: list[str] = []
    for col in columns:
        name = re.sub(r"[^A-Z0-9_]", "_", col.upper().encode("ascii", "replace").decode())[:10] or "FIELD"
        if not name[0].isalpha():
            name = ("F" + name)[:10]
        base, n = name, 1
        while name in out:
            n += 1
            suffix = f"~{n}"
            name = base[: 10 - len(suffix)] + suffix
        out.append(name)
    return out


def _write_dbf(stream: _Batches, tmp: Path, stats: _Stats, options: _Options) -> None:
    """dBase III (version 0x03) without memo fields, in a single-byte code page.

    Field types: text → ``C`` (up to 254 bytes, longer text is cut), integers → ``N``
    with 0 decimals, floats → ``N`` with ``float_digits`` (default 6) decimals,
    booleans → ``L``, dates → ``D``, date-times → ``C`` ISO 8601 text (dBase III has no
    date-time type).  Nulls are blank fields (``?`` for logicals).
    """
    encoding = options.dbf_encoding.lower()
    if encoding not in DBF_CODEPAGES:
        raise ExportError(f"DBF code page {encoding!r} is not supported; choose one of {', '.join(DBF_CODEPAGES)}")
    digits = 6 if options.float_digits is None else options.float_digits
    names = _dbf_field_names(stream.columns)
    stats.field_names = {c: n for c, n in zip(stream.columns, names, strict=True) if c != n}
    kinds: dict[str, str] = {}
    for c, t in stream.schema.items():
        if t == pl.Boolean:
            kinds[c] = "L"
        elif t == pl.Date:
            kinds[c] = "D"
        elif t.is_numeric():
            kinds[c] = "N"
        else:
            kinds[c] = "C"

    def dbf_text(batch: pl.DataFrame) -> pl.DataFrame:
        exprs = []
        for c, t in batch.schema.items():
            col = pl.col(c)
            if kinds[c] == "L":
                exprs.append(pl.when(col.is_null()).then(pl.lit("?")).when(col).then(pl.lit("T")).otherwise(pl.lit("F")).alias(c))
            elif kinds[c] == "D":
                exprs.append(col.dt.strftime("%Y%m%d").alias(c))
            elif _is_float(t):
                exprs.append(_fixed(col.fill_nan(None), digits).alias(c))
            elif kinds[c] == "N":
                exprs.append(col.cast(pl.String).alias(c))
            elif _is_text(t):
                exprs.append(_guard(c))
            else:
                exprs.append(_text_expr(c, t, float_digits=None))
        return batch.select(exprs)

    spool = _Spool(tmp.parent)
    try:
        text_names = [n for n, t in stream.schema.items() if _is_text(t)]
        for batch in stream:
            stats.guarded += _count_guarded(batch, text_names)
            text = dbf_text(batch)
            long = text.select(
                pl.sum_horizontal((pl.col(c).str.len_chars() > _DBF_MAX_TEXT).sum() for c in stream.columns if kinds[c] == "C")
            ).item() if any(kinds[c] == "C" for c in stream.columns) else 0
            stats.truncated += int(long or 0)
            spool.add(text)
        spool.finish()
        lengths: list[int] = []
        decimals: list[int] = []
        for c in stream.columns:
            width = spool.widths.get(c, 0)
            if kinds[c] == "C":
                lengths.append(max(1, min(width, _DBF_MAX_TEXT)))
                decimals.append(0)
            elif kinds[c] == "N":
                dec = digits if _is_float(stream.schema[c]) else 0
                width = max(width, dec + 2 if dec else 1)
                if width > _DBF_MAX_NUMBER:
                    raise ExportError(
                        f"column {c!r} has numbers {width} characters wide, more than a dBase "
                        f"numeric field holds ({_DBF_MAX_NUMBER}); use fewer float_digits or CSV"
                    )
                lengths.append(width)
                decimals.append(dec)
            elif kinds[c] == "L":
                lengths.append(1)
                decimals.append(0)
            else:
                lengths.append(8)
                decimals.append(0)
        record_len = 1 + sum(lengths)
        if record_len > 65_535:
            raise ExportError(f"a DBF record would be {record_len} bytes, over dBase's 65,535; export fewer columns")
        today = dt.date.today()
        header_len = 32 + 32 * len(names) + 1
        head = bytearray()
        head += bytes([0x03, today.year - 1900, today.month, today.day])
        head += spool.rows.to_bytes(4, "little")
        head += header_len.to_bytes(2, "little") + record_len.to_bytes(2, "little")
        head += bytes(17) + bytes([DBF_CODEPAGES[encoding]]) + bytes(2)
        for name, kind, length, dec in zip(names, kinds.values(), lengths, decimals, strict=True):
            head += name.encode("ascii").ljust(11, b"\x00") + kind.encode("ascii") + bytes(4)
            head += bytes([length, dec]) + bytes(14)
        head += b"\x0d"
        with open(tmp, "wb") as fh:
            fh.write(bytes(head))
            for text in spool:
                exprs: list[pl.Expr] = [pl.lit(" ")]
                for c, length in zip(stream.columns, lengths, strict=True):
                    cell = pl.col(c).fill_null("")
                    if kinds[c] == "N":
                        exprs.append(cell.str.pad_start(length))
                    else:
                        # Line breaks stay (dBase text may hold them); cut to the field width.
                        exprs.append(cell.str.slice(0, length).str.pad_end(length))
                records = text.select(pl.concat_str(exprs).alias("x")).get_column("x")
                fh.write("".join(records.to_list()).encode(encoding, errors="replace"))
                stats.rows += text.height
                _tick(options, stats)
            fh.write(b"\x1a")
    finally:
        spool.remove()


# --- PDF -----------------------------------------------------------------------------
_PAGE_PORTRAIT: Final = (595.28, 841.89)  # A4 in points
_MARGIN: Final = 36.0
_FONT_SIZE: Final = 8.0
_ROW_HEIGHT: Final = 11.0
_CELL_PAD: Final = 3.0
_MAX_COL_CHARS: Final = 40
_PDF_MEMO_ENTRIES: Final = 200_000  # placed cells remembered (repeated ids, times, values)
_PDF_MEMO_BYTES: Final = 4 << 20  # … and at most this much of their text and codes


class _PdfWriter:
    """A minimal PDF 1.4 writer that streams pages to a file.

    fpdf2 keeps every page in memory until ``output()``; a million-row table is ~20,000
    pages, so this writer emits each page as soon as it is full and keeps only the
    object offsets.  Text is set in DejaVu Sans Condensed (``/F1`` regular, ``/F2``
    bold), embedded as Type 0 fonts with 2-byte glyph codes, so any character the font
    has (Latin, Cyrillic, Greek, ``°``, ``³``, ``№`` …) prints and can be searched and
    copied (see :mod:`analytics._pdf_font`).  The glyphs used are only known after the
    last page, so the font objects (subset font file, widths, ToUnicode map) are written
    by :meth:`close`, after the pages, under the object numbers 3 and 4 the pages
    already refer to.  Content streams are Flate-compressed.
    """

    def __init__(self, fh: Any, *, title: str | None, fonts: tuple[PdfFont, PdfFont]) -> None:
        self._fh = fh
        self._fonts = fonts
        self._offsets: dict[int, int] = {}
        self._pages: list[int] = []
        self._next = 6  # 1 catalog, 2 pages, 3 font /F1, 4 font /F2, 5 info
        self._pos = 0
        self._write(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
        stamp = dt.datetime.now(dt.UTC).strftime("D:%Y%m%d%H%M%SZ")
        info = f"<< /Producer (askug) /CreationDate ({stamp})"
        if title:
            info += f" /Title {pdf_text_string(title)}"
        self._object(5, (info + " >>").encode("ascii"))

    def _write(self, data: bytes) -> None:
        self._fh.write(data)
        self._pos += len(data)

    def _object(self, number: int, body: bytes) -> None:
        self._offsets[number] = self._pos
        self._write(f"{number} 0 obj\n".encode() + body + b"\nendobj\n")

    def page(self, content: bytes, size: tuple[float, float]) -> None:
        # Level 4: on these pages (2-byte glyph codes) it is ~40 % faster than 6 and as small.
        data = zlib.compress(content, 4)
        page_no, content_no = self._next, self._next + 1
        self._next += 2
        self._object(
            content_no,
            f"<< /Length {len(data)} /Filter /FlateDecode >>\nstream\n".encode() + data + b"\nendstream",
        )
        self._object(
            page_no,
            (
                f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 {size[0]:.2f} {size[1]:.2f}] "
                f"/Resources << /Font << /F1 3 0 R /F2 4 0 R >> >> /Contents {content_no} 0 R >>"
            ).encode(),
        )
        self._pages.append(page_no)

    def close(self) -> int:
        for number, font in zip((3, 4), self._fonts, strict=True):
            type0, parts = font.objects(self._next)
            self._next += len(parts)
            for part_no, body in parts:
                self._object(part_no, body)
            self._object(number, type0)
        kids = " ".join(f"{n} 0 R" for n in self._pages)
        self._object(2, f"<< /Type /Pages /Kids [{kids}] /Count {len(self._pages)} >>".encode())
        self._object(1, b"<< /Type /Catalog /Pages 2 0 R >>")
        xref_at = self._pos
        count = self._next
        lines = [f"xref\n0 {count}\n", "0000000000 65535 f \n"]
        for n in range(1, count):
            lines.append(f"{self._offsets[n]:010d} 00000 n \n")
        lines.append(f"trailer\n<< /Size {count} /Root 1 0 R /Info 5 0 R >>\nstartxref\n{xref_at}\n%%EOF\n")
        self._write("".join(lines).encode())
        return len(self._pages)


def _shrink_widths(natural: list[float], usable: float) -> list[float]:
    """Column widths that fit ``usable`` points: the widest columns give up room first.

    Every column wider than a common cap is cut to it, so narrow columns (numbers, codes,
    headers) keep their natural width and long names are the ones shortened with ``...``
    (scaling every column alike would cut short numbers and headers too).
    """
    if sum(natural) <= usable:
        return list(natural)
    rest, left = usable, len(natural)
    cap = usable / left
    for width in sorted(natural):
        if width * left >= rest:
            cap = rest / left
            break
        rest -= width
        left -= 1
    return [min(width, cap) for width in natural]


def _write_pdf(stream: _Batches, tmp: Path, stats: _Stats, options: _Options) -> None:
    """A paged table: title and column header repeated on every page, page numbers.

    Column widths follow the widest value (up to 40 characters); A4 landscape is used
    when portrait is too narrow, and if even that is too narrow the widest columns are
    narrowed to a common width (:func:`_shrink_widths`).  A cell wider than its
    column is cut with ``...``, measured with the embedded font's real advance widths.
    Numbers are right-aligned; floats get ``float_digits`` (default 3) decimals.
    """
    digits = 3 if options.float_digits is None else options.float_digits
    numeric = [stream.schema[c].is_numeric() for c in stream.columns]
    regular, bold = PdfFont("regular"), PdfFont("bold")
    avg = regular.width("0")  # digit width, 1/1000 em
    dots_text = "..."
    with _spooled(stream, tmp, float_digits=digits, guard=False, stats=stats) as spool:
        natural = []
        for c in stream.columns:
            chars = min(_MAX_COL_CHARS, max(len(c), spool.widths.get(c, 0), 1))
            # 10 % slack: letters and separators are wider than the digit average; the
            # longest value is measured as printed in bold (a subtotal row may be).
            longest = bold.width(spool.longest.get(c, "")[:_MAX_COL_CHARS])
            room = max(bold.width(c), longest, chars * avg * 1.1)
            natural.append(room * _FONT_SIZE / 1000 + 2 * _CELL_PAD)
        total = sum(natural)
        size = _PAGE_PORTRAIT
        if total > size[0] - 2 * _MARGIN:
            size = (_PAGE_PORTRAIT[1], _PAGE_PORTRAIT[0])
        usable = size[0] - 2 * _MARGIN
        widths = _shrink_widths(natural, usable)
        x0 = [_MARGIN + sum(widths[:i]) for i in range(len(widths))]
        title = options.title or ""
        top = size[1] - _MARGIN
        title_h = 18.0 if title else 0.0
        header_y = top - title_h - _ROW_HEIGHT
        per_page = max(1, int((header_y - _MARGIN - 14.0) // _ROW_HEIGHT))
        created = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")

        def fit(value: str, width: float, font: PdfFont) -> tuple[bytes, float]:
            room = (width - 2 * _CELL_PAD) * 1000 / _FONT_SIZE
            used = font.width(value)
            if used <= room:
                return font.encode(value), used * _FONT_SIZE / 1000
            stats.truncated += 1
            dots = font.width(dots_text)
            room -= dots
            used = 0
            cut = len(value)
            advance = font.advance
            for k, char in enumerate(value):
                step = advance[char]
                if used + step > room:
                    cut = k
                    break
                used += step
            return font.encode(value[:cut] + dots_text), (used + dots) * _FONT_SIZE / 1000

        def cell(out: list[bytes], value: str, j: int, y: float, name: bytes, font: PdfFont) -> None:
            raw, width = fit(value, widths[j], font)
            x = x0[j] + widths[j] - _CELL_PAD - width if numeric[j] else x0[j] + _CELL_PAD
            out.append(b"BT " + name + b" %.2f %.2f Td (%s) Tj ET\n" % (x, y, raw))

        font1 = b"/F1 %.1f Tf" % _FONT_SIZE
        font2 = b"/F2 %.1f Tf" % _FONT_SIZE
        right = _MARGIN + sum(widths)

        def page_head(page_no: int) -> list[bytes]:
            out: list[bytes] = [b"0 g 0.5 w\n"]
            if title:
                out.append(b"BT /F2 12 Tf %.2f %.2f Td (%s) Tj ET\n" % (_MARGIN, top - 12, bold.encode(title)))
            out.append(b"0.9 g %.2f %.2f %.2f %.2f re f 0 g\n" % (_MARGIN, header_y - 3, right - _MARGIN, _ROW_HEIGHT))
            for j, c in enumerate(stream.columns):
                cell(out, c, j, header_y, font2, bold)
            out.append(b"%.2f %.2f m %.2f %.2f l S\n" % (_MARGIN, header_y - 3, right, header_y - 3))
            foot = regular.encode(f"page {page_no}  |  {created}")
            out.append(b"BT /F1 7 Tf %.2f %.2f Td (%s) Tj ET\n" % (_MARGIN, _MARGIN - 12, foot))
            return out

        with open(tmp, "wb") as fh:
            pdf = _PdfWriter(fh, title=options.title, fonts=(regular, bold))
            # (text, column, bold) → placed cell: repeated values are measured once.
            placed: dict[tuple[str, int, bool], tuple[bytes, bytes, bool]] = {}
            memo_bytes = 0
            page_no = 1
            content = page_head(page_no)
            on_page = 0
            for text in spool:
                flags = text.get_column("__emphasis__").to_list() if "__emphasis__" in text.columns else None
                for i, row in enumerate(text.select(stream.columns).iter_rows()):
                    if on_page == per_page:
                        pdf.page(b"".join(content), size)
                        page_no += 1
                        content = page_head(page_no)
                        on_page = 0
                    y = b"%.2f" % (header_y - _ROW_HEIGHT * (on_page + 1))
                    strong = bool(flags[i]) if flags is not None else False
                    name, font = (font2, bold) if strong else (font1, regular)
                    # One text object per row; each cell placed with an absolute Tm.
                    parts = [b"BT ", name, b"\n"]
                    for j, value in enumerate(row):
                        if not value:
                            continue
                        key = (value, j, strong)
                        hit = placed.get(key)
                        if hit is None:
                            before = stats.truncated
                            raw, width = fit(value, widths[j], font)
                            x = x0[j] + widths[j] - _CELL_PAD - width if numeric[j] else x0[j] + _CELL_PAD
                            hit = (b"1 0 0 1 %.2f " % x, b" Tm (" + raw + b") Tj\n", stats.truncated > before)
                            # Ids and times repeat; bound the memo by entries and by size
                            # (long unique cells would otherwise hold ~1 KB each).
                            memo_bytes += len(value) + len(hit[1])
                            if len(placed) >= _PDF_MEMO_ENTRIES or memo_bytes > _PDF_MEMO_BYTES:
                                placed.clear()
                                memo_bytes = len(value) + len(hit[1])
                            placed[key] = hit
                        elif hit[2]:
                            stats.truncated += 1
                        parts += (hit[0], y, hit[1])
                    parts.append(b"ET\n")
                    content += parts
                    on_page += 1
                stats.rows += text.height
                _tick(options, stats)
            y_end = header_y - _ROW_HEIGHT * on_page - 3
            content.append(b"%.2f %.2f m %.2f %.2f l S\n" % (_MARGIN, y_end, right, y_end))
            pdf.page(b"".join(content), size)
            stats.pages = pdf.close()


_WRITERS: Final[dict[str, Callable[[_Batches, Path, _Stats, _Options], None]]] = {
    "csv": _write_csv,
    "xlsx": _write_xlsx,
    "dbf": _write_dbf,
    "pdf": _write_pdf,
    "json": _write_json,
    "jsonl": _write_jsonl,
    "xml": _write_xml,
    "txt": _write_txt,
}


# --- exporting a stored table -----------------------------------------------------------
#: Short names of the archives for ``askug export``.
TABLE_ALIASES: Final = {"hourly": "hourly_archive", "daily": "daily_archive", "monthly": "monthly_archive"}


def iter_table(
    store: Any,
    table: str,
    *,
    start: dt.datetime | None = None,
    end: dt.datetime | None = None,
    meter_ids: Sequence[str] | None = None,
    company_ids: Sequence[str] | None = None,
    window: dt.timedelta | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Iterator[pl.DataFrame]:
    """Read a stored table in time windows, for :func:`write_export`.

    Parameters
    ----------
    store
        A :class:`warehouse.Store`.
    table
        A table name (:data:`warehouse.TABLES`) or ``hourly``/``daily``/``monthly``.
    start, end
        UTC ``[start, end)``; required for tables with a ``ts`` column (so an export
        never reads an unbounded range in one go), refused for the others.
    meter_ids, company_ids
        Keep these metering points / the metering points of these companies (tables
        with a ``meter_id`` column, or a ``device_id`` of a metering point's unit).
    window
        Time span of one batch (default one day for hourly tables and raw readings,
        31 days otherwise): what bounds memory.
    progress
        Called with ``(windows done, windows total)``.

    Yields
    ------
    polars.DataFrame
        Batches in the table's contract schema, in time order.

    Raises
    ------
    ExportError
        Unknown table, company or meter; a missing, reversed or empty range; no rows
        at all in the range (raised after the last batch, so :func:`write_export`
        leaves no file).
    """
    from warehouse import TABLES, load_meters

    name = TABLE_ALIASES.get(table, table)
    if name not in TABLES:
        raise ExportError(
            f"unknown table {table!r}; choose one of {', '.join([*TABLE_ALIASES, *TABLES])}"
        )
    schema = TABLES[name].schema
    where: dict[str, list[str]] = {}
    if meter_ids or company_ids:
        meters = load_meters(store)
        wanted = set(meters.get_column("meter_id").to_list())
        if company_ids:
            known = set(meters.get_column("company_id").to_list())
            unknown = sorted(set(company_ids) - known)
            if unknown:
                raise ExportError(f"unknown company {', '.join(unknown)}; known: {', '.join(sorted(known))}")
            wanted = set(meters.filter(pl.col("company_id").is_in(list(company_ids))).get_column("meter_id").to_list())
        if meter_ids:
            unknown = sorted(set(meter_ids) - set(meters.get_column("meter_id").to_list()))
            if unknown:
                raise ExportError(f"unknown metering point {', '.join(unknown[:5])}; see `askug export metering_points --out meters.csv`")
            wanted &= set(meter_ids)
        if "meter_id" in schema:
            where["meter_id"] = sorted(wanted)
        elif "device_id" in schema:
            devices = store.read("devices", columns=["device_id", "meter_id"])
            where["device_id"] = devices.filter(pl.col("meter_id").is_in(sorted(wanted))).get_column("device_id").to_list()
        else:
            raise ExportError(f"table {name!r} has no meter_id or device_id; drop --meter/--company for it")
    if "ts" not in schema:
        if start is not None or end is not None:
            raise ExportError(f"table {name!r} has no time column; drop the period for it")
        frame = store.read(name, where=where or None)
        if progress is not None:
            progress(1, 1)
        if frame.height == 0:
            raise ExportError(f"table {name!r} holds no rows to export" + (" for that filter" if where else ""))
        yield frame
        return
    if start is None or end is None:
        raise ExportError(f"table {name!r} is a time series: give the period (--start and --end, or --period)")
    if end < start:
        raise ExportError(f"the range is reversed: end {end:%Y-%m-%d} is before start {start:%Y-%m-%d}; swap them")
    if end == start:
        raise ExportError(f"the period {start:%Y-%m-%d} … {end:%Y-%m-%d} is empty (end is exclusive); widen it")
    fine = name in ("hourly_archive", "readings", "forecasts", "weather", "gas_cube", "device_hourly_archive")
    step = window or dt.timedelta(days=1 if fine else 31)
    if step <= dt.timedelta(0):
        raise ExportError("the export window must be positive")
    total = -(-(end - start) // step)
    rows = 0
    lo = start
    done = 0
    while lo < end:
        hi = min(lo + step, end)
        batch = store.read(name, start=lo, end=hi, where=where or None)
        done += 1
        if progress is not None:
            progress(done, total)
        if batch.height or (rows == 0 and hi >= end):
            rows += batch.height
            yield batch
        lo = hi
    if rows == 0:
        raise ExportError(
            f"no rows in {name} between {start:%Y-%m-%d %H:%M} and {end:%Y-%m-%d %H:%M} UTC"
            + (" for that filter" if where else "")
            + "; choose another period"
        )
