"""A streaming XLSX (SpreadsheetML) writer whose rows are built with Polars expressions.

:func:`analytics.write_export` used xlsxwriter, which takes one Python call per cell
(1 M rows × 6 columns ≈ 2 minutes).  Here every batch's ``<row>`` elements are built
column-wise by Polars string expressions (as the CSV and XML exports do) and streamed
into the deflated zip entry ``xl/worksheets/sheetN.xml`` (by way of a temporary file,
see below); the small package parts
(content types, relationships, workbook, styles, document properties) are written when
the last sheet is complete.  Text is written as inline strings (no shared-string table),
so memory stays one batch whatever the number of rows.

The file follows ECMA-376 (Office Open XML, transitional): inside ``<worksheet>`` the
elements come in the schema's order (``dimension``, ``sheetViews``, ``sheetFormatPr``,
``cols``, ``sheetData``, ``pageMargins``).  ``<dimension>`` (the used range) comes
before the rows but is only known after the sheet's last row, and openpyxl's read-only
mode needs it (without it, rows whose last cells are empty come back short and
``max_row`` is unknown).  So a sheet's rows go first, as XML, to an unlinked temporary
file next to the output (what xlsxwriter's ``constant_memory`` mode did too); when the
sheet is complete, its zip entry is written: head with the dimension, the rows copied
from the file (1 MiB at a time), tail.  Memory stays one batch; disk holds one sheet's
uncompressed XML for the duration.

Cells
-----
* numbers: ``<c r="B2"><v>1.5</v></c>``, the shortest text that reads back as the same
  float (full round-trip precision); NaN is left empty; ±inf is an error cell
  ``#DIV/0!`` (what xlsxwriter's ``nan_inf_to_errors`` showed, without its ``1/0``
  formula);
* text: ``t="inlineStr"`` with ``xml:space="preserve"``; text that could run as a formula
  gets the quote-prefix style (Excel shows it as typed and never evaluates it); text over
  Excel's 32,767 characters is cut;
* date-times: Excel serial numbers (days since 1899-12-30, UTC wall time for tz-aware
  columns) with the ``yyyy-mm-dd hh:mm:ss`` format; dates likewise with ``yyyy-mm-dd``;
* booleans: ``t="b"``; nulls: no cell (a bold blank on an emphasised row).

Characters XML 1.0 cannot carry (C0 controls other than tab and LF, U+FFFE, U+FFFF) and
CR are escaped as Excel does, ``_xHHHH_`` (``"\\x01"`` → ``_x0001_``), and text that
would read as such an escape (a literal ``_x0041_``) has its ``_`` escaped as ``_x005F_``,
so Excel and LibreOffice show the original text.  (openpyxl does not decode these escapes: it reads ``_x0001_``.)
"""

from __future__ import annotations

import contextlib
import datetime as dt
import re
import shutil
import tempfile
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Final, Literal

import polars as pl

CellKind = Literal["text", "other", "number", "float", "bool", "datetime", "date"]

#: Excel's rows per sheet (header included).
MAX_ROWS: Final = 1_048_576
#: Excel's characters per cell.
MAX_TEXT: Final = 32_767
#: zlib level of the sheet entries: level 1 is ~2.5× faster than the default 6 and the
#: file only ~10 % larger (XML of repeated tags compresses well at any level).
COMPRESS_LEVEL: Final = 1

# Cell formats (``s`` attribute = index into ``cellXfs`` of STYLES_XML).
STYLE_HEADER: Final = 1
STYLE_BOLD: Final = 2
STYLE_QUOTED: Final = 3
STYLE_QUOTED_BOLD: Final = 4
STYLE_DATETIME: Final = 5
STYLE_DATETIME_BOLD: Final = 6
STYLE_DATE: Final = 7
STYLE_DATE_BOLD: Final = 8

_MAIN_NS: Final = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
_REL_NS: Final = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
_PKG_REL_NS: Final = "http://schemas.openxmlformats.org/package/2006/relationships"
_HEAD: Final = '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'

STYLES_XML: Final = (
    _HEAD + f'<styleSheet xmlns="{_MAIN_NS}">'
    '<numFmts count="2"><numFmt numFmtId="164" formatCode="yyyy-mm-dd hh:mm:ss"/>'
    '<numFmt numFmtId="165" formatCode="yyyy-mm-dd"/></numFmts>'
    '<fonts count="2">'
    '<font><sz val="11"/><name val="Calibri"/><family val="2"/></font>'
    '<font><b/><sz val="11"/><name val="Calibri"/><family val="2"/></font>'
    "</fonts>"
    '<fills count="2"><fill><patternFill patternType="none"/></fill>'
    '<fill><patternFill patternType="gray125"/></fill></fills>'
    '<borders count="2"><border><left/><right/><top/><bottom/><diagonal/></border>'
    '<border><left/><right/><top/><bottom style="thin"><color auto="1"/></bottom><diagonal/></border>'
    "</borders>"
    '<cellStyleXfs count="1"><xf numFmtId="0" fontId="0" fillId="0" borderId="0"/></cellStyleXfs>'
    '<cellXfs count="9">'
    '<xf numFmtId="0" fontId="0" fillId="0" borderId="0" xfId="0"/>'
    '<xf numFmtId="0" fontId="1" fillId="0" borderId="1" xfId="0" applyFont="1" applyBorder="1"/>'
    '<xf numFmtId="0" fontId="1" fillId="0" borderId="0" xfId="0" applyFont="1"/>'
    '<xf numFmtId="0" fontId="0" fillId="0" borderId="0" xfId="0" quotePrefix="1"/>'
    '<xf numFmtId="0" fontId="1" fillId="0" borderId="0" xfId="0" applyFont="1" quotePrefix="1"/>'
    '<xf numFmtId="164" fontId="0" fillId="0" borderId="0" xfId="0" applyNumberFormat="1"/>'
    '<xf numFmtId="164" fontId="1" fillId="0" borderId="0" xfId="0" applyNumberFormat="1" applyFont="1"/>'
    '<xf numFmtId="165" fontId="0" fillId="0" borderId="0" xfId="0" applyNumberFormat="1"/>'
    '<xf numFmtId="165" fontId="1" fillId="0" borderId="0" xfId="0" applyNumberFormat="1" applyFont="1"/>'
    "</cellXfs>"
    '<cellStyles count="1"><cellStyle name="Normal" xfId="0" builtinId="0"/></cellStyles>'
    '<dxfs count="0"/><tableStyles count="0"/></styleSheet>'
)

# Excel's escape of characters XML 1.0 cannot carry (and of CR, which parsers would turn
# into LF): "_xHHHH_".
_CONTROLS: Final = [chr(c) for c in (*range(0x09), 0x0B, 0x0C, *range(0x0D, 0x20))] + ["\ufffe", "\uffff"]
_ESCAPE_FROM: Final = ["&", "<", ">", *_CONTROLS]
_ESCAPE_TO: Final = ["&amp;", "&lt;", "&gt;", *(f"_x{ord(c):04X}_" for c in _CONTROLS)]
_NEEDS_ESCAPE: Final = r"[&<>\x00-\x08\x0B-\x1F\uFFFE\uFFFF]"
# Text Excel would misread: "_xHHHH" followed by "_" or by a character that is escaped
# as "_xHHHH_" (the "_" of the escape would close it).  Its "_" is escaped as "_x005F_".
_LITERAL_ESCAPE: Final = r"_x[0-9A-Fa-f]{4}[_\x00-\x08\x0B-\x1F\uFFFE\uFFFF]"
_LITERAL_ESCAPE_PY: Final = re.compile(r"_(?=x[0-9A-Fa-f]{4}[_\x00-\x08\x0B-\x1F\ufffe\uffff])")

#: Rows turned into XML at a time: a step's intermediate strings are several times its
#: rows' size, so big batches are cut (measured on 200 k rows in 50 k batches: peak
#: +33 MB over the source at 8 k rows per step, +54 MB at 16 k, +100 MB at 64 k; time within noise).
_ROWS_PER_STEP: Final = 8_192
_US_PER_DAY: Final = 86_400_000_000
_EXCEL_EPOCH_OFFSET: Final = 25_569  # days from 1899-12-30 to 1970-01-01


def column_letter(index: int) -> str:
    """Excel's column name of a 0-based index: 0 → ``A``, 25 → ``Z``, 26 → ``AA``."""
    name = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        name = chr(65 + rest) + name
    return name


def cell_kind(dtype: pl.DataType) -> CellKind:
    """How a column of this Polars type is written."""
    if dtype == pl.String or isinstance(dtype, (pl.Categorical, pl.Enum)):
        return "text"
    if dtype == pl.Boolean:
        return "bool"
    if isinstance(dtype, pl.Datetime):
        return "datetime"
    if dtype == pl.Date:
        return "date"
    if dtype in (pl.Float32, pl.Float64):
        return "float"
    if dtype.is_numeric():
        return "number"
    return "other"  # time of day, duration (ISO 8601), null: their text, never guarded


def _as_text(col: pl.Expr, dtype: pl.DataType) -> pl.Expr:
    """A text or "other" column as String: durations as ISO 8601 (``PT1H30M``)."""
    if isinstance(dtype, pl.Duration):
        return col.dt.to_string("iso")
    return col.cast(pl.String)


def escape_text(text: str) -> str:
    """Escape text for the content of a ``<t>`` element, as Excel does.

    ``&``, ``<``, ``>`` become entities; control characters, CR, U+FFFE and U+FFFF
    become ``_xHHHH_``; the ``_`` of text that Excel would read as such an escape
    (``_x0041_``) becomes ``_x005F_``, so the text reads back as it was.
    """
    text = _LITERAL_ESCAPE_PY.sub("_x005F_", text)
    for raw, escaped in zip(_ESCAPE_FROM, _ESCAPE_TO, strict=True):
        text = text.replace(raw, escaped)
    return text


def escape_text_expr(col: pl.Expr) -> pl.Expr:
    """:func:`escape_text` without its ``_x005F_`` step, vectorised (one pass).

    For text with no ``_xHHHH`` that Excel could misread (see :func:`escape_text`);
    the writer checks each batch and escapes the rare column that has one in Python.
    """
    return col.str.replace_many(_ESCAPE_FROM, _ESCAPE_TO)


def _plain_escape(text: str) -> str:
    """Escape text for the content of a document-property element (no ``_xHHHH_``).

    Characters XML 1.0 cannot carry become U+FFFD.
    """
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return re.sub(r"[\x00-\x08\x0B\x0C\x0E-\x1F\uFFFE\uFFFF]", "\ufffd", text)


def _col_width(name: str) -> str:
    """xlsxwriter's ``set_column(width=max(10, min(len + 2, 40)))`` as it wrote it."""
    width = max(10, min(len(name) + 2, 40))
    pixels = int(width * 7 + 0.5) + 5
    return f"{(pixels * 256 // 7) / 256:.16g}"


class XlsxStream:
    """Write rows to an ``.xlsx`` file, sheet after sheet, one batch at a time.

    Parameters
    ----------
    path
        The file to write (the caller makes the write atomic).
    columns
        Header names, in order; batches passed to :meth:`write` have these columns in
        this order (their names do not matter).
    kinds
        :func:`cell_kind` of each column.
    title
        The document's title property, or ``None``.
    guard
        A regular expression; text cells matching it get the quote-prefix style.
    max_rows
        Rows per sheet, header included (Excel's 1,048,576; smaller in tests); past it
        the rows continue on ``data_2``, ``data_3``…
    max_text
        Characters per text cell; longer text is cut.

    Call :meth:`close` after the last batch, or :meth:`abandon` on failure.
    """

    def __init__(
        self,
        path: Path,
        *,
        columns: Sequence[str],
        kinds: Sequence[CellKind],
        title: str | None,
        guard: str,
        max_rows: int = MAX_ROWS,
        max_text: int = MAX_TEXT,
    ) -> None:
        if max_rows < 2:
            raise ValueError("max_rows must leave room for the header and one row")
        self._columns = list(columns)
        self._kinds = list(kinds)
        self._title = title
        self._guard = guard
        self._max_rows = max_rows
        self._max_text = max_text
        self._letters = [column_letter(j) for j in range(len(self._columns))]
        self._zip = zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=COMPRESS_LEVEL)
        # The open sheet's rows, as XML, until the sheet is complete (see the module notes).
        self._body: IO[bytes] | None = None
        self._folder = path.parent
        self._entry: IO[bytes] | None = None
        self._sheets: list[str] = []
        self._next_row = 0  # next row number on the open sheet (1-based); 0: none open
        self._cols_xml = "".join(
            f'<col min="{j + 1}" max="{j + 1}" width="{_col_width(name)}" customWidth="1"/>'
            for j, name in enumerate(self._columns)
        )
        self._header_xml = "".join(
            f'<c r="{letter}1" s="{STYLE_HEADER}" t="inlineStr"><is><t xml:space="preserve">'
            f"{escape_text(name)}</t></is></c>"
            for letter, name in zip(self._letters, self._columns, strict=True)
        )

    # --- sheets -------------------------------------------------------------------------
    def _open_sheet(self) -> IO[bytes]:
        self._close_sheet()
        self._sheets.append("data" if not self._sheets else f"data_{len(self._sheets) + 1}")
        if self._body is None:
            # Unlinked at once (Linux): removed by the OS even if the process dies.
            self._body = tempfile.TemporaryFile(prefix=".askug-xlsx-", dir=self._folder)  # noqa: SIM115 (closed by close/abandon)
        self._next_row = 2
        return self._body

    def _close_sheet(self) -> None:
        """Write the open sheet's zip entry: head with its dimension, rows, tail."""
        body = self._body
        if body is None or self._next_row == 0:
            return
        number = len(self._sheets)
        last = f"{self._letters[-1]}{self._next_row - 1}"
        selected = ' tabSelected="1"' if number == 1 else ""
        head = (
            _HEAD + f'<worksheet xmlns="{_MAIN_NS}" xmlns:r="{_REL_NS}">'
            f'<dimension ref="A1:{last}"/>'
            f'<sheetViews><sheetView{selected} workbookViewId="0">'
            '<pane ySplit="1" topLeftCell="A2" activePane="bottomLeft" state="frozen"/>'
            '<selection pane="bottomLeft" activeCell="A2" sqref="A2"/>'
            "</sheetView></sheetViews>"
            f'<sheetFormatPr defaultRowHeight="15"/><cols>{self._cols_xml}</cols>'
            f'<sheetData><row r="1">{self._header_xml}</row>\n'
        )
        tail = (
            b"</sheetData>"
            b'<pageMargins left="0.7" right="0.7" top="0.75" bottom="0.75" header="0.3" footer="0.3"/>'
            b"</worksheet>"
        )
        start = head.encode("utf-8")
        size = len(start) + body.seek(0, 2) + len(tail)
        body.seek(0)
        # ZIP64 headers only when the entry needs them (as zipfile decides for a known
        # size, with its 5 % margin): Excel has refused small entries that carry them.
        large = size * 1.05 > zipfile.ZIP64_LIMIT
        self._entry = entry = self._zip.open(f"xl/worksheets/sheet{number}.xml", "w", force_zip64=large)
        entry.write(start)
        shutil.copyfileobj(body, entry, 1 << 20)
        entry.write(tail)
        entry.close()
        self._entry = None
        body.seek(0)
        body.truncate()
        self._next_row = 0

    # --- rows ---------------------------------------------------------------------------
    def write(self, batch: pl.DataFrame, emphasis: pl.Series | None = None) -> tuple[int, int]:
        """Append a batch's rows; ``emphasis`` (Boolean, same length) marks bold rows.

        Returns ``(guarded, truncated)``: text cells given the quote-prefix style, and
        text cells cut to ``max_text`` characters.
        """
        frame = batch.select(
            _as_text(pl.col(c), dtype).alias(f"c{j}") if self._kinds[j] in ("text", "other") else pl.col(c).alias(f"c{j}")
            for j, (c, dtype) in enumerate(batch.schema.items())
        )
        if emphasis is not None:
            frame = frame.with_columns(emphasis.cast(pl.Boolean).fill_null(False).alias("e"))
        guarded = truncated = 0
        offset = 0
        if self._next_row == 0 and frame.height == 0:
            self._open_sheet()
        while offset < frame.height:
            if self._next_row == 0 or self._next_row > self._max_rows:
                self._open_sheet()
            room = self._max_rows - self._next_row + 1
            part = frame.slice(offset, min(room, _ROWS_PER_STEP))
            g, t = self._write_rows(part, has_emphasis=emphasis is not None)
            guarded += g
            truncated += t
            offset += part.height
            self._next_row += part.height
        return guarded, truncated

    def _write_rows(self, part: pl.DataFrame, *, has_emphasis: bool) -> tuple[int, int]:
        text_cols = [f"c{j}" for j, k in enumerate(self._kinds) if k in ("text", "other")]
        guards = [f"c{j}" for j, k in enumerate(self._kinds) if k == "text"]
        # Which cells need the quote prefix, before the text is cut or escaped.
        frame = part.with_columns(
            pl.col(name).str.contains(self._guard).fill_null(False).alias(f"g_{name}") for name in guards
        )
        checks: list[pl.Expr] = [pl.col(f"g_{name}").sum().alias(f"{name}_g") for name in guards]
        for name in text_cols:
            value = pl.col(name)
            checks += [
                (value.str.len_chars() > self._max_text).sum().alias(f"{name}_t"),
                value.str.contains(_NEEDS_ESCAPE).any().alias(f"{name}_e"),
                value.str.contains(_LITERAL_ESCAPE).any().alias(f"{name}_x"),
            ]
        found = frame.select(checks).row(0, named=True) if checks else {}
        guarded = sum(int(found[f"{name}_g"] or 0) for name in guards)
        truncated = sum(int(found[f"{name}_t"] or 0) for name in text_cols)
        escaped: set[str] = set()
        for name in text_cols:
            if found[f"{name}_x"]:
                # Rare (text such as "_x0041_"): escape this column of this batch in Python.
                values = frame.get_column(name).to_list()
                cut = self._max_text
                frame = frame.with_columns(
                    pl.Series(name, [None if v is None else escape_text(v[:cut]) for v in values], dtype=pl.String)
                )
                escaped.add(name)

        row_no = pl.int_range(self._next_row, self._next_row + part.height, dtype=pl.Int64).cast(pl.String)
        frame = frame.with_columns(row_no.alias("r"))
        emph = pl.col("e") if has_emphasis else None
        cells: list[pl.Expr] = [pl.lit('<row r="'), pl.col("r"), pl.lit('">')]
        for j, kind in enumerate(self._kinds):
            name = f"c{j}"
            done = name in escaped
            cells.append(
                self._cell(
                    name,
                    kind,
                    self._letters[j],
                    emph,
                    cut=not done and int(found.get(f"{name}_t") or 0) > 0,
                    escape=not done and bool(found.get(f"{name}_e")),
                )
            )
        cells.append(pl.lit("</row>"))
        rows = frame.select(pl.concat_str(cells, ignore_nulls=True).alias("x"))
        assert self._body is not None
        # One line per row; quote_style="never" writes the text as is (no CSV quoting).
        rows.write_csv(self._body, include_header=False, quote_style="never")
        return guarded, truncated

    def _cell(
        self, name: str, kind: CellKind, letter: str, emph: pl.Expr | None, *, cut: bool, escape: bool
    ) -> pl.Expr:
        """One column's ``<c>`` elements (null where no cell is written).

        ``cut``: some text is longer than ``max_text``; ``escape``: some text has
        characters to escape (both checked per batch, to skip the work when not needed).
        """
        col = pl.col(name)
        start = pl.lit(f'<c r="{letter}')
        row = pl.col("r")

        def style(plain: int, bold: int) -> pl.Expr:
            plain_attr = pl.lit(f'" s="{plain}"' if plain else '"')
            if emph is None:
                return plain_attr
            return pl.when(emph).then(pl.lit(f'" s="{bold}"')).otherwise(plain_attr)

        if kind in ("number", "float"):
            value = col.fill_nan(None) if kind == "float" else col
            cell = pl.concat_str([start, row, style(0, STYLE_BOLD), pl.lit("><v>"), value.cast(pl.String), pl.lit("</v></c>")])
            if kind == "float":
                error = pl.concat_str([start, row, style(0, STYLE_BOLD), pl.lit(' t="e"><v>#DIV/0!</v></c>')])
                cell = pl.when(col.is_infinite()).then(error).otherwise(cell)
        elif kind == "bool":
            value = col.cast(pl.UInt8).cast(pl.String)
            cell = pl.concat_str([start, row, style(0, STYLE_BOLD), pl.lit(' t="b"><v>'), value, pl.lit("</v></c>")])
        elif kind == "datetime":
            micros = col.dt.epoch("us")
            days = micros.floordiv(_US_PER_DAY)
            serial = (days + _EXCEL_EPOCH_OFFSET).cast(pl.Float64) + (micros - days * _US_PER_DAY).cast(pl.Float64) / _US_PER_DAY
            # Excel counts a 29 Feb 1900 that never was: serials before 1 Mar 1900 are one less.
            serial = pl.when(serial < 61).then(serial - 1).otherwise(serial)
            cell = pl.concat_str(
                [start, row, style(STYLE_DATETIME, STYLE_DATETIME_BOLD), pl.lit("><v>"), serial.cast(pl.String), pl.lit("</v></c>")]
            )
        elif kind == "date":
            serial_days = col.cast(pl.Int32).cast(pl.Int64) + _EXCEL_EPOCH_OFFSET
            serial_days = pl.when(serial_days < 61).then(serial_days - 1).otherwise(serial_days)
            cell = pl.concat_str(
                [start, row, style(STYLE_DATE, STYLE_DATE_BOLD), pl.lit("><v>"), serial_days.cast(pl.String), pl.lit("</v></c>")]
            )
        else:
            value = col.str.slice(0, self._max_text) if cut else col
            if kind == "text":
                attr = pl.when(pl.col(f"g_{name}")).then(style(STYLE_QUOTED, STYLE_QUOTED_BOLD)).otherwise(style(0, STYLE_BOLD))
            else:
                attr = style(0, STYLE_BOLD)
            cell = pl.concat_str(
                [
                    start,
                    row,
                    attr,
                    pl.lit(' t="inlineStr"><is><t xml:space="preserve">'),
                    escape_text_expr(value) if escape else value,
                    pl.lit("</t></is></c>"),
                ]
            )
        if emph is not None:
            # A null on an emphasised row is a bold blank, so the whole row reads bold.
            blank = pl.when(emph).then(pl.concat_str([start, row, pl.lit(f'" s="{STYLE_BOLD}"/>')]))
            cell = pl.coalesce(cell, blank)
        return cell

    # --- the package --------------------------------------------------------------------
    def close(self) -> None:
        """Finish the last sheet and write the package parts; the file is complete."""
        if not self._sheets:
            self._open_sheet()
        self._close_sheet()
        if self._body is not None:
            self._body.close()
            self._body = None
        n = len(self._sheets)
        z = self._zip
        overrides = "".join(
            f'<Override PartName="/xl/worksheets/sheet{i}.xml" '
            'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/>'
            for i in range(1, n + 1)
        )
        z.writestr(
            "[Content_Types].xml",
            _HEAD + '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
            '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
            '<Default Extension="xml" ContentType="application/xml"/>'
            '<Override PartName="/docProps/app.xml" ContentType="application/vnd.openxmlformats-officedocument.extended-properties+xml"/>'
            '<Override PartName="/docProps/core.xml" ContentType="application/vnd.openxmlformats-package.core-properties+xml"/>'
            '<Override PartName="/xl/styles.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.styles+xml"/>'
            '<Override PartName="/xl/workbook.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/>'
            + overrides
            + "</Types>",
        )
        z.writestr(
            "_rels/.rels",
            _HEAD + f'<Relationships xmlns="{_PKG_REL_NS}">'
            f'<Relationship Id="rId1" Type="{_REL_NS}/officeDocument" Target="xl/workbook.xml"/>'
            '<Relationship Id="rId2" Type="http://schemas.openxmlformats.org/package/2006/relationships/metadata/core-properties" Target="docProps/core.xml"/>'
            f'<Relationship Id="rId3" Type="{_REL_NS}/extended-properties" Target="docProps/app.xml"/>'
            "</Relationships>",
        )
        sheets = "".join(
            f'<sheet name="{name}" sheetId="{i}" r:id="rId{i}"/>' for i, name in enumerate(self._sheets, start=1)
        )
        z.writestr(
            "xl/workbook.xml",
            _HEAD + f'<workbook xmlns="{_MAIN_NS}" xmlns:r="{_REL_NS}">'
            '<workbookPr/><bookViews><workbookView xWindow="240" yWindow="15" windowWidth="16095" windowHeight="9660"/></bookViews>'
            f"<sheets>{sheets}</sheets></workbook>",
        )
        rels = "".join(
            f'<Relationship Id="rId{i}" Type="{_REL_NS}/worksheet" Target="worksheets/sheet{i}.xml"/>'
            for i in range(1, n + 1)
        )
        z.writestr(
            "xl/_rels/workbook.xml.rels",
            _HEAD + f'<Relationships xmlns="{_PKG_REL_NS}">{rels}'
            f'<Relationship Id="rId{n + 1}" Type="{_REL_NS}/styles" Target="styles.xml"/></Relationships>',
        )
        z.writestr("xl/styles.xml", STYLES_XML)
        now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        title = f"<dc:title>{_plain_escape(self._title)}</dc:title>" if self._title else ""
        z.writestr(
            "docProps/core.xml",
            _HEAD + '<cp:coreProperties xmlns:cp="http://schemas.openxmlformats.org/package/2006/metadata/core-properties" '
            'xmlns:dc="http://purl.org/dc/elements/1.1/" xmlns:dcterms="http://purl.org/dc/terms/" '
            'xmlns:dcmitype="http://purl.org/dc/dcmitype/" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">'
            f'{title}<dc:creator>askug</dc:creator><dcterms:created xsi:type="dcterms:W3CDTF">{now}</dcterms:created>'
            f'<dcterms:modified xsi:type="dcterms:W3CDTF">{now}</dcterms:modified></cp:coreProperties>',
        )
        names = "".join(f"<vt:lpstr>{name}</vt:lpstr>" for name in self._sheets)
        z.writestr(
            "docProps/app.xml",
            _HEAD + '<Properties xmlns="http://schemas.openxmlformats.org/officeDocument/2006/extended-properties" '
            'xmlns:vt="http://schemas.openxmlformats.org/officeDocument/2006/docPropsVTypes">'
            "<Application>Microsoft Excel</Application><DocSecurity>0</DocSecurity><ScaleCrop>false</ScaleCrop>"
            '<HeadingPairs><vt:vector size="2" baseType="variant"><vt:variant><vt:lpstr>Worksheets</vt:lpstr></vt:variant>'
            f'<vt:variant><vt:i4>{n}</vt:i4></vt:variant></vt:vector></HeadingPairs>'
            f'<TitlesOfParts><vt:vector size="{n}" baseType="lpstr">{names}</vt:vector></TitlesOfParts>'
            "<LinksUpToDate>false</LinksUpToDate><SharedDoc>false</SharedDoc>"
            "<HyperlinksChanged>false</HyperlinksChanged><AppVersion>12.0000</AppVersion></Properties>",
        )
        z.close()

    def abandon(self) -> None:
        """Release the file after a failure (the caller deletes it); never raises."""
        for handle in (self._entry, self._body):
            if handle is not None:
                with contextlib.suppress(Exception):
                    handle.close()
        self._entry = self._body = None
        with contextlib.suppress(Exception):
            self._zip.close()
