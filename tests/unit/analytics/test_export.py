"""Streamed exports: every format read back and compared, formula injection, atomicity, memory."""

from __future__ import annotations

import datetime as dt
import io
import json
import re
import subprocess
import sys
import weakref
import xml.etree.ElementTree as ET
import zipfile
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import openpyxl
import polars as pl
import pytest
from dbfread import DBF

import analytics._export as export_module
import analytics._pdf_font as pdf_font
import analytics._xlsx as xlsx_module
from analytics import EXPORT_FORMATS, ExportError, write_export
from tests.unit.analytics._pdf_reader import read_pdf

UTC = dt.UTC
T0 = dt.datetime(2022, 1, 1, tzinfo=UTC)

RISKY = ["=SUM(A1:A2)", "+1", "-2+3", "@cmd", "\tx", "\rboom"]


def _frame(n: int = 7, offset: int = 0) -> pl.DataFrame:
    """A small frame covering every column kind, nulls, separators and quotes."""
    names = ['Flat 1, "Lenin" St', "line\nbreak", "plain", None, "ünïcode €", "a;b", "x"]
    return pl.DataFrame(
        {
            "meter_id": [f"m{offset + i:05d}" for i in range(n)],
            "ts": [T0 + dt.timedelta(hours=offset + i) for i in range(n)],
            "volume_m3": [None if i % 4 == 3 else round(1.25 * (offset + i) - 3.5, 3) for i in range(n)],
            "hours": [None if i % 5 == 4 else offset + i for i in range(n)],
            "complete": [None if i % 6 == 5 else i % 2 == 0 for i in range(n)],
            "day": [dt.date(2022, 1, 1) + dt.timedelta(days=i) for i in range(n)],
            "name": [names[i % len(names)] for i in range(n)],
        },
        schema_overrides={"ts": pl.Datetime("us", "UTC"), "hours": pl.Int64},
    )


def _batches(k: int = 3, n: int = 7) -> list[pl.DataFrame]:
    return [_frame(n, offset=i * n) for i in range(k)]


def _expected() -> pl.DataFrame:
    return pl.concat(_batches())


def _iso(value: dt.datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- read back, per format ------------------------------------------------------------
def test_csv_round_trip_via_polars(tmp_path: Path) -> None:
    out = tmp_path / "e.csv"
    summary = write_export(_batches(), out)
    assert summary.fmt == "csv" and summary.rows == 21 and summary.path == out
    back = pl.read_csv(out, schema=pl.Schema({c: pl.String for c in _expected().columns}))
    exp = _expected()
    assert back.get_column("meter_id").to_list() == exp.get_column("meter_id").to_list()
    assert back.get_column("ts").to_list() == [_iso(t) for t in exp.get_column("ts")]
    assert [None if v is None else float(v) for v in back.get_column("volume_m3")] == exp.get_column(
        "volume_m3"
    ).to_list()
    assert back.get_column("name").to_list() == exp.get_column("name").to_list()
    assert back.get_column("complete").to_list() == [
        None if v is None else str(v).lower() for v in exp.get_column("complete")
    ]
    assert back.get_column("day").to_list() == [d.isoformat() for d in exp.get_column("day")]


def test_json_array_and_lines_round_trip(tmp_path: Path) -> None:
    exp = _expected().with_columns(
        pl.col("ts").dt.strftime("%Y-%m-%dT%H:%M:%SZ"), pl.col("day").dt.strftime("%Y-%m-%d")
    )
    write_export(_batches(), tmp_path / "e.json")
    assert json.loads((tmp_path / "e.json").read_text("utf-8")) == exp.to_dicts()
    write_export(_batches(), tmp_path / "e.jsonl")
    lines = (tmp_path / "e.jsonl").read_text("utf-8").splitlines()
    assert [json.loads(line) for line in lines] == exp.to_dicts()


def test_json_of_no_rows_is_an_empty_array(tmp_path: Path) -> None:
    write_export([_frame(0)], tmp_path / "e.json")
    assert json.loads((tmp_path / "e.json").read_text()) == []


def test_xml_round_trip_via_elementtree(tmp_path: Path) -> None:
    frame = _expected().with_columns(pl.col("name").fill_null("<&>\"'\x01 ok"))
    summary = write_export(frame, tmp_path / "e.xml", title="Hourly <export>")
    root = ET.parse(tmp_path / "e.xml").getroot()
    assert root.tag == "export" and root.get("title") == "Hourly <export>"
    assert [c.get("name") for c in root.iter("column")] == frame.columns
    rows = root.find("rows")
    assert rows is not None and len(rows) == summary.rows == frame.height
    for row, exp in zip(rows, frame.iter_rows(named=True), strict=True):
        got = {child.tag: child.text for child in row}
        assert got["meter_id"] == exp["meter_id"]
        assert got["ts"] == _iso(exp["ts"])
        # XML 1.0 cannot carry \x01: it becomes U+FFFD; everything else round-trips.
        assert got["name"] == exp["name"].replace("\x01", "\ufffd")
        if exp["volume_m3"] is None:
            assert "volume_m3" not in got
        else:
            assert float(got["volume_m3"]) == exp["volume_m3"]


def test_xml_renames_columns_that_are_not_element_names(tmp_path: Path) -> None:
    frame = pl.DataFrame({"1st value": [1.0], "xml_thing": ["a"], "ok": ["b"]})
    summary = write_export(frame, tmp_path / "e.xml")
    assert summary.field_names == {"1st value": "_1st_value", "xml_thing": "_xml_thing"}
    row = ET.parse(tmp_path / "e.xml").getroot().find("rows/row")
    assert row is not None and [c.tag for c in row] == ["_1st_value", "_xml_thing", "ok"]


def test_xlsx_round_trip_via_openpyxl(tmp_path: Path) -> None:
    out = tmp_path / "e.xlsx"
    write_export(_batches(), out, title="t")
    book = openpyxl.load_workbook(out, read_only=True)
    sheet = book["data"]
    rows = list(sheet.iter_rows(values_only=True))
    exp = _expected()
    assert list(rows[0]) == exp.columns
    for got, want in zip(rows[1:], exp.iter_rows(), strict=True):
        meter, ts, vol, hours, complete, day, name = got
        assert meter == want[0]
        assert ts == want[1].replace(tzinfo=None)
        assert vol == want[2] and hours == want[3] and complete == want[4]
        assert day == dt.datetime.combine(want[5], dt.time())
        assert name == want[6]
    book.close()


def test_xlsx_continues_on_a_new_sheet_past_the_row_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(export_module, "_XLSX_MAX_ROWS", 6)  # header + 5 rows per sheet
    write_export(_frame(12), tmp_path / "e.xlsx")
    book = openpyxl.load_workbook(tmp_path / "e.xlsx", read_only=True)
    assert book.sheetnames == ["data", "data_2", "data_3"]
    ids = [r[0] for name in book.sheetnames for r in list(book[name].iter_rows(values_only=True))[1:]]
    assert ids == _frame(12).get_column("meter_id").to_list()
    book.close()


def _excel_text(value: str) -> str:
    """What Excel shows for a cell's stored text: it decodes the ``_xHHHH_`` escapes."""
    return re.sub(r"_x([0-9A-Fa-f]{4})_", lambda m: chr(int(m.group(1), 16)), value)


def _sheet_xml(path: Path, number: int = 1) -> ET.Element:
    with zipfile.ZipFile(path) as z:
        return ET.fromstring(z.read(f"xl/worksheets/sheet{number}.xml"))


_NS = "{http://schemas.openxmlformats.org/spreadsheetml/2006/main}"


def test_xlsx_sheet_split_inside_a_batch_keeps_rows_styles_and_headers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(export_module, "_XLSX_MAX_ROWS", 5)  # header + 4 rows per sheet
    frame = _frame(11).with_columns(strong=pl.int_range(0, 11) % 3 == 0)
    seen: list[int] = []
    summary = write_export([frame.slice(0, 6), frame.slice(6, 5)], tmp_path / "e.xlsx", emphasis="strong",
                           progress=seen.append)  # fmt: skip
    assert summary.rows == 11 and seen == [6, 11]
    book = openpyxl.load_workbook(tmp_path / "e.xlsx")
    assert book.sheetnames == ["data", "data_2", "data_3"]
    ids, bold = [], []
    for sheet in book.worksheets:
        assert [c.value for c in sheet[1]] == _frame(1).columns  # the header on every sheet
        assert all(c.font.b for c in sheet[1]) and sheet.freeze_panes == "A2"
        for row in sheet.iter_rows(min_row=2):
            ids.append(row[0].value)
            bold.append(row[0].font.b)
    assert [book[n].max_row for n in book.sheetnames] == [5, 5, 4]
    assert ids == frame.get_column("meter_id").to_list()
    assert bold == frame.get_column("strong").to_list()
    # read-only mode relies on <dimension>: full-width rows even where the last cells are null
    ro = openpyxl.load_workbook(tmp_path / "e.xlsx", read_only=True)
    assert [ro[n].max_row for n in ro.sheetnames] == [5, 5, 4]
    assert {len(r) for n in ro.sheetnames for r in ro[n].iter_rows(values_only=True)} == {7}
    ro.close()


def test_xlsx_a_sheet_filled_exactly_adds_no_empty_sheet(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(export_module, "_XLSX_MAX_ROWS", 5)
    write_export([_frame(4), _frame(4, offset=4)], tmp_path / "e.xlsx")
    book = openpyxl.load_workbook(tmp_path / "e.xlsx", read_only=True)
    assert book.sheetnames == ["data", "data_2"]
    assert [len(list(book[n].iter_rows())) for n in book.sheetnames] == [5, 5]
    book.close()


def test_xlsx_header_only_when_there_are_no_rows(tmp_path: Path) -> None:
    summary = write_export([], tmp_path / "e.xlsx", columns=["a", "b"])
    book = openpyxl.load_workbook(tmp_path / "e.xlsx")
    assert summary.rows == 0 and book.sheetnames == ["data"]
    assert [[c.value for c in row] for row in book["data"].iter_rows()] == [["a", "b"]]


def test_xlsx_styles_header_emphasis_widths_and_guard(tmp_path: Path) -> None:
    frame = pl.DataFrame(
        {
            "meter_id": ["=HYPERLINK(1)", "m2", "-3", None],
            "a_rather_long_column_name_over_forty_characters": [1.5, None, 2.5, 3.0],
            "ts": [T0, None, T0, T0],
            "day": [dt.date(2022, 1, 1), None, dt.date(2022, 1, 2), None],
            "subtotal": [False, True, True, False],
        }
    )
    summary = write_export(frame, tmp_path / "e.xlsx", emphasis="subtotal")
    assert summary.guarded_cells == 2
    book = openpyxl.load_workbook(tmp_path / "e.xlsx")
    sheet = book["data"]
    assert sheet.max_column == 4  # the emphasis column is not written
    for cell in sheet[1]:
        assert cell.font.b and cell.border.bottom.style == "thin"
    assert sheet.freeze_panes == "A2"
    widths = [sheet.column_dimensions[letter].width for letter in "ABCD"]
    assert widths == [10.7109375, 40.7109375, 10.7109375, 10.7109375]  # as xlsxwriter wrote them
    a2, a3, a4 = sheet["A2"], sheet["A3"], sheet["A4"]
    assert a2.value == "=HYPERLINK(1)" and a2.data_type == "s" and a2.quotePrefix and not a2.font.b
    assert a3.value == "m2" and not a3.quotePrefix and a3.font.b
    assert a4.value == "-3" and a4.quotePrefix and a4.font.b  # guarded and emphasised
    assert [c.font.b for c in sheet[3]] == [True] * 4  # nulls on an emphasised row: bold blanks
    assert sheet["B3"].value is None and sheet["C3"].value is None
    assert sheet["C2"].number_format == "yyyy-mm-dd hh:mm:ss" and sheet["C4"].font.b
    assert sheet["D2"].number_format == "yyyy-mm-dd" and sheet["D4"].number_format == "yyyy-mm-dd"
    assert not sheet["B2"].font.b and sheet["B4"].font.b
    assert sheet["B5"].value == 3.0
    row5 = _sheet_xml(tmp_path / "e.xlsx").findall(f"{_NS}sheetData/{_NS}row")[4]
    assert [c.get("r") for c in row5] == ["B5", "C5"]  # nulls on a plain row: no cell at all


def test_xlsx_datetimes_and_dates_read_back_equal(tmp_path: Path) -> None:
    moscow = [dt.datetime(2022, 3, 27, 2, 30, 15, tzinfo=dt.UTC) + dt.timedelta(seconds=s) for s in (0, 1, 86_399)]
    frame = pl.DataFrame(
        {
            "ts_utc": [T0 + dt.timedelta(seconds=37 * k + 0.5 * (k % 2)) for k in range(3)],
            "ts_msk": moscow,
            "naive": [dt.datetime(1999, 12, 31, 23, 59, 59), dt.datetime(2100, 2, 28, 12), None],
            "day": [dt.date(1900, 3, 1), dt.date(2022, 1, 31), dt.date(9999, 12, 31)],
        },
        schema_overrides={
            "ts_utc": pl.Datetime("ms", "UTC"),
            "ts_msk": pl.Datetime("ns", "Europe/Moscow"),
        },
    )
    write_export(frame, tmp_path / "e.xlsx")
    rows = list(openpyxl.load_workbook(tmp_path / "e.xlsx", read_only=True)["data"].iter_rows(values_only=True))[1:]
    for got, want in zip(rows, frame.iter_rows(), strict=True):
        for value, expected in zip(got[:2], want[:2], strict=True):
            # tz-aware columns are written as UTC wall time, exact to the millisecond
            assert value == expected.astimezone(dt.UTC).replace(tzinfo=None)
        assert got[2] == want[2]
        assert got[3] == dt.datetime.combine(want[3], dt.time())


def test_xlsx_floats_round_trip_exactly_and_nan_inf_as_before(tmp_path: Path) -> None:
    import random

    rng = random.Random(7)
    values = [0.1, 1 / 3, 2 / 3, -1e-300, 1e300, 5e-324, 123456789.123456789, 2.0**53 + 2, -0.0]
    values += [rng.uniform(-1e6, 1e6) for _ in range(200)] + [rng.random() * 10 ** rng.randint(-20, 20) for _ in range(200)]
    frame = pl.DataFrame({"x": values + [float("nan"), float("inf"), float("-inf"), None],
                          "n": list(range(len(values))) + [2**62, -(2**31), None, 0]})  # fmt: skip
    write_export(frame, tmp_path / "e.xlsx")
    book = openpyxl.load_workbook(tmp_path / "e.xlsx")
    got = [row[0] for row in book["data"].iter_rows(min_row=2, values_only=True)]
    assert got[: len(values)] == values and all(isinstance(v, float) for v in got[: len(values)])
    assert [repr(v) for v in got[: len(values)]] == [repr(v) for v in values]  # -0.0 too
    # NaN and null: no cell (xlsxwriter's export filled NaN to null); ±inf: Excel's #DIV/0!
    assert got[len(values):] == [None, "#DIV/0!", "#DIV/0!", None]
    assert book["data"].cell(len(values) + 3, 1).data_type == "e"
    ints = [row[1] for row in book["data"].iter_rows(min_row=2, values_only=True)]
    assert ints[-4:] == [2**62, -(2**31), None, 0] and ints[:3] == [0, 1, 2]


@pytest.mark.parametrize(
    "text",
    ["bell\x07", "\x00nul", "a\rb", "cr\r\nlf", "tab\tlf\n", "_x0041_", "_x0041_x0042_", "_x0041\x01",
     "__x005F_", "\ufffe\uffff", "<&>\"'", "x" * 40_000 + "\x01"],
)  # fmt: skip
def test_xlsx_control_characters_are_escaped_as_excel_does(tmp_path: Path, text: str) -> None:
    frame = pl.DataFrame({"t": [text, "plain", text], "n": [1, 2, 3]})
    summary = write_export(frame, tmp_path / "e.xlsx", title=text[:50])
    assert summary.truncated_cells == (2 if len(text) > 32_767 else 0)
    ET.fromstring(zipfile.ZipFile(tmp_path / "e.xlsx").read("docProps/core.xml"))  # well-formed
    _sheet_xml(tmp_path / "e.xlsx")  # well-formed XML 1.0
    book = openpyxl.load_workbook(tmp_path / "e.xlsx")
    got = [row[0] for row in book["data"].iter_rows(min_row=2, values_only=True)]
    want = text[:32_767]
    assert [_excel_text(v) for v in got] == [want, "plain", want]


def test_xlsx_long_text_is_cut_to_excels_limit(tmp_path: Path) -> None:
    frame = pl.DataFrame({"t": ["é" * 32_767, "é" * 32_768, "=" + "a" * 40_000], "u": ["ok", None, "x" * 50_000]})
    summary = write_export(frame, tmp_path / "e.xlsx")
    assert summary.truncated_cells == 3 and summary.guarded_cells == 1
    rows = list(openpyxl.load_workbook(tmp_path / "e.xlsx")["data"].iter_rows(min_row=2, values_only=True))
    assert [len(r[0]) for r in rows] == [32_767] * 3 and rows[2][0].startswith("=a")
    assert rows[0][1] == "ok" and rows[1][1] is None and len(rows[2][1]) == 32_767


def test_xlsx_title_and_package_parts(tmp_path: Path) -> None:
    title = "Потребление газа & <январь>"
    write_export(_batches(), tmp_path / "e.xlsx", title=title)
    book = openpyxl.load_workbook(tmp_path / "e.xlsx")
    assert book.properties.title == title
    write_export(_batches(), tmp_path / "plain.xlsx")
    assert openpyxl.load_workbook(tmp_path / "plain.xlsx").properties.title is None


def test_xlsx_refuses_more_columns_than_excel_has(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert export_module._XLSX_MAX_COLUMNS == 16_384
    assert [xlsx_module.column_letter(i) for i in (0, 25, 26, 701, 702, 16_383)] == ["A", "Z", "AA", "ZZ", "AAA", "XFD"]
    monkeypatch.setattr(export_module, "_XLSX_MAX_COLUMNS", 30)
    wide = pl.DataFrame({f"c{i}": [i] for i in range(31)})
    with pytest.raises(ExportError, match="at most 30 columns, the export has 31"):
        write_export(wide, tmp_path / "e.xlsx")
    assert list(tmp_path.iterdir()) == []
    write_export(wide.drop("c30"), tmp_path / "e.xlsx")
    book = openpyxl.load_workbook(tmp_path / "e.xlsx")
    assert book["data"]["AD1"].value == "c29" and book["data"]["AD2"].value == 29
    assert [c.value for c in book["data"][2]] == list(range(30))


def _zip_versions(path: Path) -> dict[str, int]:
    """Each entry's "version needed to extract" in its local header (45: ZIP64)."""
    data = path.read_bytes()
    with zipfile.ZipFile(path) as z:
        infos = z.infolist()
    out = {}
    for info in infos:
        at = info.header_offset
        assert data[at : at + 4] == b"PK\x03\x04"
        out[info.filename] = int.from_bytes(data[at + 4 : at + 6], "little")
    return out


def test_xlsx_uses_zip64_only_for_entries_that_need_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Excel has refused small entries with ZIP64 local headers; a >2 GB sheet needs them."""
    write_export(_batches(), tmp_path / "small.xlsx")
    assert set(_zip_versions(tmp_path / "small.xlsx").values()) == {20}
    monkeypatch.setattr(zipfile, "ZIP64_LIMIT", 3000)  # the sheet (~4.5 kB) is now "large"
    write_export(_batches(), tmp_path / "large.xlsx")
    versions = _zip_versions(tmp_path / "large.xlsx")
    assert versions.pop("xl/worksheets/sheet1.xml") == 45 and set(versions.values()) == {20}
    monkeypatch.undo()
    rows = list(openpyxl.load_workbook(tmp_path / "large.xlsx", read_only=True)["data"].iter_rows(values_only=True))
    assert len(rows) == 22 and rows[-1][0] == "m00020"


def test_xlsx_parts_follow_ecma_376(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What Excel and LibreOffice check: parts declared and related, elements in schema order."""
    monkeypatch.setattr(export_module, "_XLSX_MAX_ROWS", 15)
    write_export(_batches(), tmp_path / "e.xlsx", title="t")
    with zipfile.ZipFile(tmp_path / "e.xlsx") as z:
        names = set(z.namelist())
        assert z.testzip() is None
        parts = {n: ET.fromstring(z.read(n)) for n in names}  # every part is well-formed XML
    ct = "{http://schemas.openxmlformats.org/package/2006/content-types}"
    overrides = {e.get("PartName", "").lstrip("/") for e in parts["[Content_Types].xml"].iter(f"{ct}Override")}
    assert overrides == names - {"[Content_Types].xml", "_rels/.rels", "xl/_rels/workbook.xml.rels"}
    rel = "{http://schemas.openxmlformats.org/package/2006/relationships}Relationship"
    assert {e.get("Target") for e in parts["_rels/.rels"].iter(rel)} == {"xl/workbook.xml", "docProps/core.xml", "docProps/app.xml"}
    targets = {"xl/" + str(e.get("Target")) for e in parts["xl/_rels/workbook.xml.rels"].iter(rel)}
    assert targets == {"xl/styles.xml", "xl/worksheets/sheet1.xml", "xl/worksheets/sheet2.xml"}
    sheets = [e.get("name") for e in parts["xl/workbook.xml"].iter(f"{_NS}sheet")]
    assert sheets == ["data", "data_2"]
    # CT_Worksheet is a sequence: sheetPr?, dimension?, sheetViews?, sheetFormatPr?, cols*, sheetData, …
    order = ["sheetPr", "dimension", "sheetViews", "sheetFormatPr", "cols", "sheetData", "pageMargins"]
    for number, extent in ((1, "A1:G15"), (2, "A1:G8")):
        sheet = parts[f"xl/worksheets/sheet{number}.xml"]
        tags = [child.tag.removeprefix(_NS) for child in sheet]
        assert tags == sorted(tags, key=order.index) and "sheetData" in tags
        dimension = sheet.find(f"{_NS}dimension")
        assert dimension is not None and dimension.get("ref") == extent
        rows = sheet.findall(f"{_NS}sheetData/{_NS}row")
        assert [int(r.get("r", 0)) for r in rows] == list(range(1, len(rows) + 1))
        for row in rows:  # cells in column order, each in its own row
            refs = [c.get("r", "") for c in row]
            assert all(ref.endswith(row.get("r", "")) for ref in refs) and refs == sorted(refs, key=lambda r: (len(r), r))
    styles = parts["xl/styles.xml"]
    xfs = styles.find(f"{_NS}cellXfs")
    assert xfs is not None and len(xfs) == int(xfs.get("count", "-1")) == 9


def test_dbf_round_trip_via_dbfread(tmp_path: Path) -> None:
    out = tmp_path / "e.dbf"
    frame = _expected().with_columns(pl.col("name").str.replace_all("€", "E"))
    summary = write_export(frame, out)
    assert summary.field_names["meter_id"] == "METER_ID"
    table = DBF(str(out))
    assert table.encoding == "cp1251"
    fields = {f.name: (f.type, f.length, f.decimal_count) for f in table.fields}
    assert fields["VOLUME_M3"] == ("N", fields["VOLUME_M3"][1], 6)
    assert fields["COMPLETE"][0] == "L" and fields["DAY"][0] == "D" and fields["TS"][0] == "C"
    records = list(table)
    assert len(records) == len(table) == frame.height
    for rec, want in zip(records, frame.iter_rows(named=True), strict=True):
        assert rec["METER_ID"] == want["meter_id"]
        assert rec["TS"] == _iso(want["ts"])
        assert rec["VOLUME_M3"] == (None if want["volume_m3"] is None else pytest.approx(want["volume_m3"]))
        assert rec["HOURS"] == want["hours"]
        assert rec["COMPLETE"] == want["complete"]
        assert rec["DAY"] == want["day"]
        # dBase pads text with blanks; dbfread strips them, and null text reads as "";
        # characters outside the code page (cp1251 has no ü, ï) become "?".
        name = (want["name"] or "").encode("cp1251", errors="replace").decode("cp1251")
        assert rec["NAME"] == name.rstrip()


def test_dbf_cuts_long_text_and_maps_names(tmp_path: Path) -> None:
    frame = pl.DataFrame(
        {"a_very_long_column_name": ["x" * 300, "short"], "a_very_long_column_other": ["Привет", "ок"]}
    )
    summary = write_export(frame, tmp_path / "e.dbf", dbf_encoding="cp866")
    assert summary.truncated_cells == 1
    assert summary.field_names == {
        "a_very_long_column_name": "A_VERY_LON",
        "a_very_long_column_other": "A_VERY_L~2",
    }
    table = DBF(str(tmp_path / "e.dbf"))
    assert table.encoding == "cp866"
    records = list(table)
    assert records[0]["A_VERY_LON"] == "x" * 254
    assert [r["A_VERY_L~2"] for r in records] == ["Привет", "ок"]


def test_txt_is_fixed_width(tmp_path: Path) -> None:
    exp = _expected()
    write_export(_batches(), tmp_path / "e.txt", float_digits=2)
    lines = (tmp_path / "e.txt").read_text("utf-8").splitlines()
    assert len(lines) == 2 + exp.height
    rule = lines[1]
    spans = [(m.start(), m.end()) for m in re.finditer(r"-+", rule)]
    assert len(spans) == len(exp.columns)
    header = [lines[0][a:b].strip() for a, b in spans]
    assert header == exp.columns
    for line, want in zip(lines[2:], exp.iter_rows(named=True), strict=True):
        cells = [line[a:b].strip() for a, b in spans]
        assert cells[0] == want["meter_id"]
        assert cells[1] == _iso(want["ts"])
        assert cells[2] == ("" if want["volume_m3"] is None else f"{want['volume_m3']:.2f}")
        assert cells[6] == (want["name"] or "").replace("\n", " ")
        # numbers are right-aligned
        a, b = spans[3]
        assert want["hours"] is None or line[a:b].endswith(str(want["hours"]))


# --- PDF ----------------------------------------------------------------------------
def _pdf_check(path: Path) -> tuple[int, list[str]]:
    """Validate the file's structure and return (page count, text shown on the pages)."""
    doc = read_pdf(path)
    return doc.pages, doc.texts


def test_pdf_is_valid_paged_and_repeats_the_header(tmp_path: Path) -> None:
    frame = _frame(130)
    summary = write_export([frame.slice(0, 50), frame.slice(50)], tmp_path / "e.pdf", title="Hourly (UTC)")
    pages, texts = _pdf_check(tmp_path / "e.pdf")
    assert summary.pages == pages and pages >= 2
    assert texts.count("Hourly (UTC)") == pages
    assert texts.count("meter_id") == pages
    ids = [t for t in texts if re.fullmatch(r"m\d{5}", t)]
    assert ids == frame.get_column("meter_id").to_list()
    assert "-3.500" in texts  # floats with 3 decimals by default
    assert f"page {pages}  |" in " ".join(texts)


def test_pdf_emphasis_rows_are_bold_and_the_flag_is_not_printed(tmp_path: Path) -> None:
    frame = pl.DataFrame({"group": ["a", "total"], "volume_m3": [1.0, 1.0], "subtotal": [False, True]})
    summary = write_export(frame, tmp_path / "e.pdf", emphasis="subtotal")
    assert summary.columns == ("group", "volume_m3")
    doc = read_pdf(tmp_path / "e.pdf")
    assert "subtotal" not in doc.texts
    assert ("F2", "total") in doc.runs and ("F1", "a") in doc.runs
    assert doc.fonts["F1"].base_font.endswith("+DejaVuSansCondensed")
    assert doc.fonts["F2"].base_font.endswith("+DejaVuSansCondensed-Bold")


def test_pdf_cuts_wide_cells(tmp_path: Path) -> None:
    frame = pl.DataFrame({"name": ["W" * 200]})
    summary = write_export(frame, tmp_path / "e.pdf")
    _, texts = _pdf_check(tmp_path / "e.pdf")
    assert summary.truncated_cells == 1
    assert any(t.endswith("...") and t.startswith("WWW") for t in texts)


COMPANY = "ООО «Газпром межрегионгаз Север»"
BRANCHES = ["Филиал Север", "Филиал «Юг» №3", "Вологодский филиал"]
MIXED = "ГРП-7 №12: T=-5°C, V=12.5 m³ (Ёлкино)"


def _cyrillic_frame() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "company": [COMPANY] * 3,
            "branch": BRANCHES,
            "примечание": [MIXED, "plain Latin", None],
            "volume_m3": [1.5, 22.25, -3.0],
            "subtotal": [True, False, False],
        }
    )


def test_pdf_prints_cyrillic_names_exactly(tmp_path: Path) -> None:
    """Cyrillic titles, headers and cells come back exactly (searchable, copyable text)."""
    out = tmp_path / "e.pdf"
    summary = write_export(_cyrillic_frame(), out, title="Потребление газа по филиалам", emphasis="subtotal")
    doc = read_pdf(out)
    assert summary.rows == 3 and summary.truncated_cells == 0
    assert doc.texts.count("Потребление газа по филиалам") == doc.pages
    assert "примечание" in doc.texts
    assert ("F2", COMPANY) in doc.runs and ("F1", COMPANY) in doc.runs  # bold subtotal row
    for name in BRANCHES:
        assert name in doc.texts
    assert MIXED in doc.texts and "plain Latin" in doc.texts and "-3.000" in doc.texts
    assert not any("?" in t for t in doc.texts)
    title = re.search(rb"/Title <FEFF([0-9A-F]+)>", doc.info)
    assert title is not None
    assert bytes.fromhex(title.group(1).decode()).decode("utf-16-be") == "Потребление газа по филиалам"


def test_pdf_embeds_a_subset_of_dejavu_whose_glyphs_match_the_text(tmp_path: Path) -> None:
    """Only the glyphs used are embedded; the font's own cmap and widths agree with the PDF's."""
    from fontTools.ttLib import TTFont

    out = tmp_path / "e.pdf"
    write_export(_cyrillic_frame(), out, title="Отчёт")
    doc = read_pdf(out)
    shipped = resources.files("analytics").joinpath("fonts", "DejaVuSansCondensed.ttf").read_bytes()
    for res, info in doc.fonts.items():
        assert info.length1 < len(shipped) / 10, (res, info.length1)  # a subset, not the 680 kB file
        font = TTFont(io.BytesIO(info.font_file))
        order = font.getGlyphOrder()
        glyf = font["glyf"]
        drawn = {i for i, name in enumerate(order) if glyf[name].numberOfContours != 0}
        allowed = {0, *doc.codes[res]}  # .notdef, the glyphs shown and their components (Ё = Е + ¨)
        todo = [order[c] for c in allowed]
        while todo:
            glyph = glyf[todo.pop()]
            for part in glyph.getComponentNames(glyf) if glyph.isComposite() else []:
                if order.index(part) not in allowed:
                    allowed.add(order.index(part))
                    todo.append(part)
        assert drawn <= allowed  # no glyph outline beyond those
        assert len(drawn) < 120
        cmap = font.getBestCmap()
        blank = {order.index(cmap[32])} if 32 in cmap else set()  # the space has no outline
        assert doc.codes[res] <= drawn | blank  # every glyph shown is there
        scale = 1000 / font["head"].unitsPerEm
        for code, text in info.to_unicode.items():
            assert order[code] == cmap[ord(text)], (code, text)  # ToUnicode agrees with the font
            assert info.widths[code] == round(font["hmtx"][order[code]][0] * scale)


def test_pdf_glyph_codes_that_need_escaping_round_trip(tmp_path: Path) -> None:
    """Glyph ids whose bytes are ``(``, ``)``, ``\\``, CR or LF are escaped in the strings."""
    metrics = pdf_font.font_metrics("regular")
    special = {0x28, 0x29, 0x5C, 0x0D, 0x0A}
    printable = sorted(chr(cp) for cp in metrics.cmap if chr(cp).isprintable() and not chr(cp).isspace())
    low = [c for c in printable if metrics.cmap[ord(c)] & 0xFF in special][:15]
    high = [c for c in printable if metrics.cmap[ord(c)] >> 8 in special][:15]
    assert len(low) == len(high) == 15
    chars = low + high
    cells = ["".join(chars[k : k + 6]) for k in range(0, len(chars), 6)]
    out = tmp_path / "e.pdf"
    summary = write_export(pl.DataFrame({"a wide column so that nothing is cut": cells}), out)
    assert summary.truncated_cells == 0
    assert [t for t in read_pdf(out).texts if t in cells] == cells


def test_pdf_characters_outside_the_font_print_as_question_marks(tmp_path: Path) -> None:
    out = tmp_path / "e.pdf"
    write_export(pl.DataFrame({"x": ["漢字 ok", "line\nbreak\ttab", "a?b"]}), out)
    texts = read_pdf(out).texts
    assert "?? ok" in texts and "line break tab" in texts and "a?b" in texts


def test_pdf_cuts_wide_cyrillic_cells_to_their_column(tmp_path: Path) -> None:
    frame = pl.DataFrame({"name": ["Щ" * 200, "Ш" * 10], "n": [1, 2]})
    out = tmp_path / "e.pdf"
    summary = write_export(frame, out)
    doc = read_pdf(out)
    assert summary.truncated_cells == 1
    cut = next(t for t in doc.texts if t.endswith("..."))
    assert set(cut[:-3]) == {"Щ"} and "Ш" * 10 in doc.texts
    # The printed width (from the PDF's own /W) uses the column's room without passing
    # it: the room is the longest value's first 40 characters as printed in bold (or 40
    # digit widths + 10 % if wider, see _write_pdf); widths are DejaVu's, not Helvetica's.
    info = doc.fonts["F1"]
    code = next(c for c, t in info.to_unicode.items() if t == "Щ")
    dots = next(c for c, t in info.to_unicode.items() if t == ".")
    printed = (len(cut) - 3) * info.widths[code] + 3 * info.widths[dots]
    room = max(40 * 1.1 * pdf_font.PdfFont("regular").width("0"), pdf_font.PdfFont("bold").width("Щ" * 40))
    assert room - info.widths[code] < printed <= room


def test_pdf_widths_are_dejavus_own_as_fpdf2_measures_them() -> None:
    """Cross-check the advance widths against fpdf2's reading of the same TTF file."""
    from fpdf import FPDF

    for style, file in pdf_font.FONT_FILES.items():
        font = pdf_font.PdfFont(style)  # type: ignore[arg-type]
        pdf = FPDF(unit="pt")
        pdf.add_font("dv", fname=str(resources.files("analytics").joinpath("fonts", file)))
        pdf.set_font("dv", size=8)
        for text in (COMPANY, MIXED, "0123456789", "Филиал Юг"):
            mine = font.width(text) * 8 / 1000
            assert mine == pytest.approx(pdf.get_string_width(text), rel=2e-3), (style, text)


def test_the_fonts_and_their_licence_ship_inside_the_package() -> None:
    folder = resources.files("analytics").joinpath("fonts")
    for file in pdf_font.FONT_FILES.values():
        assert folder.joinpath(file).read_bytes()[:4] == b"\x00\x01\x00\x00"  # TrueType
    licence = folder.joinpath("LICENSE").read_text()
    assert "Bitstream Vera" in licence and "DejaVu changes are in public domain" in licence
    assert "Arev" in licence


def test_pdf_narrows_the_widest_columns_first() -> None:
    assert export_module._shrink_widths([10.0, 20.0], 100.0) == [10.0, 20.0]
    assert export_module._shrink_widths([10.0, 50.0, 200.0, 300.0], 160.0) == [10.0, 50.0, 50.0, 50.0]
    assert export_module._shrink_widths([40.0, 40.0], 60.0) == [30.0, 30.0]


# --- formula injection ----------------------------------------------------------------
def _risky() -> pl.DataFrame:
    return pl.DataFrame({"text": [*RISKY, "safe", "a=b"], "number": [-1.5, 2, 3, 4, 5, 6, 7, 8]})


@pytest.mark.parametrize("fmt", ["csv", "txt", "dbf"])
def test_formula_cells_get_an_apostrophe_in_spreadsheet_text_formats(tmp_path: Path, fmt: str) -> None:
    out = tmp_path / f"e.{fmt}"
    summary = write_export(_risky(), out)
    assert summary.guarded_cells == len(RISKY)
    if fmt == "csv":
        back = pl.read_csv(out).get_column("text").to_list()
        assert pl.read_csv(out).get_column("number").to_list()[0] == -1.5  # numbers untouched
    elif fmt == "dbf":
        back = [r["TEXT"] for r in DBF(str(out))]
        back = [b + (" " if v.endswith(" ") else "") for b, v in zip(back, [*RISKY, "safe", "a=b"], strict=True)]
    else:
        lines = out.read_text().splitlines()[2:]
        back = [line[:8].rstrip() for line in lines]
    for got, want in zip(back, [*RISKY, "safe", "a=b"], strict=True):
        if want in RISKY:
            assert got.startswith("'"), (got, want)
            if fmt != "txt":  # TXT turns tab/CR into spaces to keep one row per line
                assert got[1:] == want
        else:
            assert got == want


def test_formula_cells_in_xlsx_are_quote_prefixed_strings(tmp_path: Path) -> None:
    out = tmp_path / "e.xlsx"
    summary = write_export(_risky(), out)
    assert summary.guarded_cells == len(RISKY)
    book = openpyxl.load_workbook(out)  # not read-only: styles are needed
    sheet = book["data"]
    for i, want in enumerate([*RISKY, "safe", "a=b"], start=2):
        c = sheet.cell(row=i, column=1)
        # OOXML stores a CR in text as "_x000D_", which Excel decodes and openpyxl does not.
        value = c.value.replace("_x000D_", "\r") if isinstance(c.value, str) else c.value
        assert c.data_type == "s" and value == want  # a string, never a formula ("f")
        assert c.quotePrefix is (want in RISKY)
    assert sheet.cell(row=2, column=2).value == -1.5
    book.close()


@pytest.mark.parametrize("fmt", ["json", "jsonl", "xml", "pdf"])
def test_formula_cells_stay_exact_in_data_formats(tmp_path: Path, fmt: str) -> None:
    out = tmp_path / f"e.{fmt}"
    summary = write_export(_risky(), out)
    assert summary.guarded_cells == 0
    want = [*RISKY, "safe", "a=b"]
    if fmt == "json":
        assert [r["text"] for r in json.loads(out.read_text())] == want
    elif fmt == "jsonl":
        assert [json.loads(line)["text"] for line in out.read_text().splitlines()] == want
    elif fmt == "xml":
        assert [e.text for e in ET.parse(out).getroot().iter("text")] == want
    else:
        _, texts = _pdf_check(out)
        assert "=SUM(A1:A2)" in texts and "@cmd" in texts


# --- failures leave nothing behind ------------------------------------------------------
def _failing(after: int) -> Iterator[pl.DataFrame]:
    for i in range(after):
        yield _frame(20, offset=i * 20)
    raise RuntimeError("source failed mid-way")


@pytest.mark.parametrize("fmt", EXPORT_FORMATS)
def test_a_failed_export_leaves_no_partial_file(tmp_path: Path, fmt: str) -> None:
    out = tmp_path / f"e.{fmt}"
    with pytest.raises(RuntimeError, match="mid-way"):
        write_export(_failing(3), out)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("fmt", EXPORT_FORMATS)
def test_a_failed_export_keeps_the_previous_file(tmp_path: Path, fmt: str) -> None:
    out = tmp_path / f"e.{fmt}"
    out.write_bytes(b"previous")
    with pytest.raises(RuntimeError):
        write_export(_failing(2), out)
    assert out.read_bytes() == b"previous"
    assert [p.name for p in tmp_path.iterdir()] == [out.name]


def test_a_batch_with_other_columns_fails_cleanly(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="lacks columns"):
        write_export([_frame(3), _frame(3).drop("name")], tmp_path / "e.csv")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"fmt": "docx"}, "unknown export format 'docx'"),
        ({"columns": ["meter_id", "nope"]}, r"columns \['nope'\] are not in the data"),
        ({"emphasis": "nope"}, r"columns \['nope'\] are not in the data"),
    ],
)
def test_bad_arguments_name_the_problem(tmp_path: Path, kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ExportError, match=message):
        write_export(_frame(), tmp_path / "e.csv", **kwargs)
    assert list(tmp_path.iterdir()) == []


def test_bad_paths_and_types_name_the_problem(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="cannot tell the export format"):
        write_export(_frame(), tmp_path / "e.bin")
    with pytest.raises(ExportError, match="does not exist"):
        write_export(_frame(), tmp_path / "missing" / "e.csv")
    (tmp_path / "e.csv").write_text("x")
    with pytest.raises(ExportError, match="exists"):
        write_export(_frame(), tmp_path / "e.csv", overwrite=False)
    with pytest.raises(ExportError, match="flat export cannot hold"):
        write_export(pl.DataFrame({"a": [[1, 2]]}), tmp_path / "l.csv")
    with pytest.raises(ExportError, match="nothing to export"):
        write_export([], tmp_path / "n.csv")
    assert [p.name for p in tmp_path.iterdir()] == ["e.csv"]


def test_no_batches_with_columns_writes_a_header_only(tmp_path: Path) -> None:
    summary = write_export([], tmp_path / "e.csv", columns=["a", "b"])
    assert summary.rows == 0 and (tmp_path / "e.csv").read_text() == "a,b\n"


def test_columns_select_and_order(tmp_path: Path) -> None:
    summary = write_export(_frame(), tmp_path / "e.csv", columns=["volume_m3", "meter_id"])
    assert summary.columns == ("volume_m3", "meter_id")
    assert pl.read_csv(tmp_path / "e.csv").columns == ["volume_m3", "meter_id"]


def test_summary_checksum_and_progress(tmp_path: Path) -> None:
    import hashlib

    seen: list[int] = []
    summary = write_export(_batches(), tmp_path / "e.jsonl", progress=seen.append)
    assert seen == [7, 14, 21]
    data = (tmp_path / "e.jsonl").read_bytes()
    assert summary.sha256 == hashlib.sha256(data).hexdigest() and summary.bytes == len(data)


# --- bounded memory -------------------------------------------------------------------
@pytest.mark.parametrize("fmt", EXPORT_FORMATS)
def test_batches_are_released_as_the_export_goes(tmp_path: Path, fmt: str) -> None:
    """Many batches: at no point are more than a couple of earlier batches still alive."""
    refs: list[weakref.ref[pl.DataFrame]] = []
    alive_max = 0

    def source() -> Iterator[pl.DataFrame]:
        nonlocal alive_max
        for i in range(30):
            # DataFrames hold no reference cycles: refcounting frees them at once,
            # so no gc.collect() is needed (it would cost seconds here).
            alive_max = max(alive_max, sum(r() is not None for r in refs))
            batch = _frame(40, offset=i * 40)
            refs.append(weakref.ref(batch))
            yield batch
            del batch

    summary = write_export(source(), tmp_path / f"e.{fmt}")
    assert summary.rows == 30 * 40
    assert alive_max <= 2


_RSS_SCRIPT = """
import resource, sys, polars as pl
from analytics import write_export
fmt, batches, hold = sys.argv[1], int(sys.argv[2]), sys.argv[4] == "hold"
def batch(i):
    return pl.select(n=pl.int_range(i * 20_000, (i + 1) * 20_000)).select(
        meter_id=pl.format("meter-{}-of-a-rather-long-identifier-for-the-memory-test-{}", "n", "n").str.pad_end(200, "x"),
        volume_m3=pl.col("n").cast(pl.Float64) / 7,
    )
source = [batch(i) for i in range(batches)] if hold else (batch(i) for i in range(batches))
write_export(source, sys.argv[3], fmt)
# VmHWM, not ru_maxrss: ru_maxrss survives exec, so a child of a big pytest process
# would report the parent's size at fork instead of its own peak.
with open("/proc/self/status") as status:
    print(next(int(line.split()[1]) for line in status if line.startswith("VmHWM:")))
"""


def _peak_kib(tmp_path: Path, fmt: str, batches: int, *, hold: bool = False) -> int:
    run = subprocess.run(
        [sys.executable, "-c", _RSS_SCRIPT, fmt, str(batches), str(tmp_path / f"{batches}.{fmt}"),
         "hold" if hold else "stream"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return int(run.stdout.split()[-1])


@pytest.mark.parametrize("fmt", ["csv", "dbf"])
def test_peak_memory_does_not_grow_with_the_number_of_batches(tmp_path: Path, fmt: str) -> None:
    small, large = _peak_kib(tmp_path, fmt, 2), _peak_kib(tmp_path, fmt, 30)  # 40 k vs 600 k rows
    # The same 600 k rows held in memory at once cost ~130 MB more (checked by the
    # "hold" variant below); a streamed export grows by allocator noise only (~15 MB).
    assert large - small < 32 * 1024, (small, large)


def test_xlsx_peak_memory_is_bounded_on_a_200k_row_export(tmp_path: Path) -> None:
    """XLSX rows go through a temporary file and the zip stream: 200 k rows peak like 40 k.

    Measured: +13 MB from 40 k to 200 k rows (allocator warm-up: 600 k rows peak like
    200 k); the 200 k rows' sheet XML is ~65 MB, a shared-string table of their text ~45 MB.
    """
    small, large = _peak_kib(tmp_path, "xlsx", 2), _peak_kib(tmp_path, "xlsx", 10)
    assert large - small < 32 * 1024, (small, large)


def test_the_memory_check_would_see_rows_held_at_once(tmp_path: Path) -> None:
    """The yardstick of the test above: holding all batches does show up in the peak."""
    streamed, held = _peak_kib(tmp_path, "csv", 30), _peak_kib(tmp_path, "csv", 30, hold=True)
    assert held - streamed > 60 * 1024, (streamed, held)


_RSS_PDF_SCRIPT = """
import sys, polars as pl
import analytics._export as export
from analytics import write_export
batches, out, mode = int(sys.argv[1]), sys.argv[2], sys.argv[3]
held = []
if mode == "hold-pages":  # the yardstick: a writer that keeps every page, as fpdf2 does
    page = export._PdfWriter.page
    def keep(self, content, size):
        held.append(content)
        page(self, content, size)
    export._PdfWriter.page = keep
companies = [f"ООО «Газпром межрегионгаз {c}»" for c in ("Север", "Юг", "Восток", "Запад", "Центр")]
def batch(i):
    n = range(i * 10_000, (i + 1) * 10_000)
    return pl.DataFrame({
        "meter_id": [f"счётчик-{k:06d}" for k in n],
        "company": [companies[k % 5] for k in n],
        "branch": [f"Филиал №{k % 97} «Северо-Западный»" for k in n],
        "address": [f"г. Вологда, ул. Ленина, д. {k % 1000}, кв. {k % 13}" for k in n],
        "volume_m3": [k / 7 for k in n],
    })
write_export((batch(i) for i in range(batches)), out, "pdf", title="Потребление газа")
with open("/proc/self/status") as status:
    print(next(int(line.split()[1]) for line in status if line.startswith("VmHWM:")))
"""


@pytest.fixture(scope="module")
def pdf_peaks(tmp_path_factory: pytest.TempPathFactory) -> dict[str, int]:
    """Peak RSS (KiB) of Cyrillic PDF exports of 20 k and 60 k rows, and of 60 k rows with pages held."""
    folder = tmp_path_factory.mktemp("pdf-rss")
    peaks = {}
    for key, batches, mode in (("20k", 2, "stream"), ("60k", 6, "stream"), ("60k-held", 6, "hold-pages")):
        run = subprocess.run(
            [sys.executable, "-c", _RSS_PDF_SCRIPT, str(batches), str(folder / f"{key}.pdf"), mode],
            capture_output=True, text=True, timeout=120, check=True,
        )  # fmt: skip
        peaks[key] = int(run.stdout.split()[-1])
    return peaks


def test_pdf_peak_memory_does_not_grow_with_the_rows(pdf_peaks: dict[str, int]) -> None:
    """Pages are streamed: only the set of characters used grows, so 60 k rows peak like 20 k."""
    # Measured: +2…6 MB of allocator noise; the pages of those 40 k extra rows are ~25 MB.
    assert pdf_peaks["60k"] - pdf_peaks["20k"] < 16 * 1024, pdf_peaks


def test_the_pdf_memory_check_would_see_pages_held(pdf_peaks: dict[str, int]) -> None:
    """The yardstick of the test above: keeping every page does show up in the peak."""
    assert pdf_peaks["60k-held"] - pdf_peaks["60k"] > 16 * 1024, pdf_peaks
