"""CSV/XLSX corrector archive exports through a column mapping: good rows load, bad rows
are reported with their line numbers, the CLI stores them in one transaction."""

from __future__ import annotations

import csv
import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest

import ingest
import warehouse
from ingest import IngestFileError
from ingest._archive_files import (
    ArchiveMappingError,
    load_archive_mapping,
    read_archive_file,
    write_archive_import,
)

EXAMPLES = Path(ingest.__file__).parent / "examples"
CSV = EXAMPLES / "corrector-archive.csv"
MAPPING = EXAMPLES / "pollsoft-csv.toml"
DEVICES = {"D0001202": "M1202", "D0001203": "M1203"}
UTC = dt.UTC


def _rows() -> list[list[str]]:
    with CSV.open(encoding="utf-8", newline="") as fh:
        return list(csv.reader(fh, delimiter=";"))


def _write_csv(path: Path, rows: list[list[str]]) -> Path:
    with path.open("w", encoding="utf-8", newline="") as fh:
        csv.writer(fh, delimiter=";", lineterminator="\n").writerows(rows)
    return path


def test_example_file_loads_completely() -> None:
    r = read_archive_file(CSV, MAPPING, devices=DEVICES)
    assert r.errors == ()
    assert r.rows == 52 and r.good_rows == 52
    assert r.hourly_archive.height == 48 and r.daily_archive.height == 2 and r.events.height == 2
    # registers at every printed instant; interval means stay in the archive
    assert set(r.readings["channel"]) == {"volume_register_m3", "volume_work_register_m3"}
    assert r.readings.height == 2 * 48
    first = r.hourly_archive.row(0, named=True)
    # "01.03.2024 11:00" Moscow (UTC+3) closes the hour 10:00-11:00 local = 07:00 UTC
    assert first["meter_id"] == "M1202" and first["ts"] == dt.datetime(2024, 3, 1, 7, tzinfo=UTC)
    assert first["volume_m3"] == 12.0 and first["volume_work_m3"] == 3.372
    assert first["pressure_kpa"] == pytest.approx(351.2) and first["temperature_c"] == 4.25
    assert (first["quality"], first["source"]) == ("valid", "archive")
    day = r.daily_archive.row(0, named=True)
    assert day["device_id"] == "D0001202" and day["ts"] == dt.datetime(2024, 3, 1, 7, tzinfo=UTC)
    assert r.events.select("code", "severity").rows() == [("power_fail", "critical"), ("params_changed", "info")]
    reg = r.readings.filter(pl.col("channel") == "volume_register_m3").row(0, named=True)
    assert reg["ts"] == dt.datetime(2024, 3, 1, 8, tzinfo=UTC) and reg["received_at"] is None
    for name, frame in r.tables().items():
        warehouse.validate_frame(frame, warehouse.TABLES[name])


def test_bad_rows_are_reported_with_their_line_numbers_and_the_rest_loads(tmp_path: Path) -> None:
    rows = _rows()
    rows[3][0] = "31.02.2024 10:00"  # line 4: no such date
    rows[5][3] = "12,3x"  # line 6: not a number
    rows[7][2] = "Minute"  # line 8: unknown archive kind
    rows[9][1] = "9999"  # line 10: unknown device
    rows[11][3] = "-1,5"  # line 12: negative interval volume
    path = _write_csv(tmp_path / "bad.csv", rows)
    r = read_archive_file(path, MAPPING, devices=DEVICES)
    assert [e.line for e in r.errors] == [4, 6, 8, 10, 12]
    messages = [str(e) for e in r.errors]
    assert "does not match the format" in messages[0] and messages[0].startswith("line 4: Timestamp")
    assert "'12,3x' is not a number" in messages[1]
    assert "'Minute' is not one of" in messages[2]
    assert "unknown device 'D0009999'" in messages[3]
    assert "negative interval volume" in messages[4]
    assert r.rows == 52 and r.good_rows == 47
    assert r.hourly_archive.height == 43


def test_device_without_a_meter_is_a_row_error() -> None:
    r = read_archive_file(CSV, MAPPING, devices={"D0001202": "M1202", "D0001203": None})
    assert len(r.errors) == 24 and "no metering point" in r.errors[0].message
    assert r.daily_archive.height == 2  # daily rows are stored per device and need no meter


def test_xlsx_export_gives_the_same_frames(tmp_path: Path) -> None:
    import openpyxl

    book = openpyxl.Workbook()
    ws = book.active
    assert ws is not None
    for i, row in enumerate(_rows()):
        if i < 3:
            ws.append(row)
            continue
        cells: list[object] = [dt.datetime.strptime(row[0], "%d.%m.%Y %H:%M"), int(row[1]), row[2]]
        cells += [float(v.replace(",", ".")) if v else None for v in row[3:9]]
        cells += [int(row[9]) if row[9] else None, row[10] or None]
        ws.append(cells)
    path = tmp_path / "export.xlsx"
    book.save(path)
    x = read_archive_file(path, MAPPING, devices=DEVICES)
    c = read_archive_file(CSV, MAPPING, devices=DEVICES)
    assert x.errors == ()
    for name in ("hourly_archive", "daily_archive", "readings", "events"):
        assert getattr(x, name).equals(getattr(c, name)), name


def test_dst_fall_back_hours_stay_distinct(tmp_path: Path) -> None:
    mapping = tmp_path / "m.toml"
    mapping.write_text(
        'name = "berlin"\n[file]\ndelimiter = ","\ndecimal = "."\n'
        '[time]\ncolumn = "time"\nformat = "%Y-%m-%d %H:%M"\nzone = "Europe/Berlin"\nlabel = "start"\n'
        '[kind]\nkind = "hourly"\n[columns]\nvolume_m3 = "vol"\n'
    )
    data = "time,vol\n2023-10-29 01:00,1\n2023-10-29 02:00,2\n2023-10-29 02:00,3\n2023-10-29 03:00,4\n2023-03-26 02:30,5\n"
    (tmp_path / "f.csv").write_text(data)
    r = read_archive_file(tmp_path / "f.csv", mapping, devices={"D1": "M1"}, device_id="D1")
    assert [e.line for e in r.errors] == [6] and "does not exist" in r.errors[0].message
    ts = r.hourly_archive["ts"].to_list()
    assert ts == [dt.datetime(2023, 10, 28, 23, tzinfo=UTC), dt.datetime(2023, 10, 29, 0, tzinfo=UTC),
                  dt.datetime(2023, 10, 29, 1, tzinfo=UTC), dt.datetime(2023, 10, 29, 2, tzinfo=UTC)]  # fmt: skip


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('name = "x"\n[kind]\nkind = "hourly"\n', "time.column"),
        ('name = "x"\n[time]\ncolumn = "t"\nzone = "Mars/Olympus"\n[kind]\nkind = "hourly"\n', "not an IANA time zone"),
        ('name = "x"\n[time]\ncolumn = "t"\n[kind]\nkind = "weekly"\n', "kind.kind = 'weekly'"),
        ('name = "x"\n[time]\ncolumn = "t"\n[kind]\nkind = "hourly"\n[columns]\nflow = "q"\n', "unknown key 'flow'"),
        ('name = "x"\n[time]\ncolumn = "t"\n[kind]\nkind = "hourly"\n[file]\ndecimal = ";"\n', "file.decimal"),
        ('name = "x"\n[time]\ncolumn = "t"\n', "give kind.column"),
        ("name = [", "not valid TOML"),
    ],
)
def test_mapping_errors_name_the_file_and_key(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "m.toml"
    path.write_text(text)
    with pytest.raises(ArchiveMappingError) as err:
        load_archive_mapping(path)
    assert str(err.value).startswith(f"archive mapping {path}: ") and message in str(err.value)


def test_a_file_without_a_mapped_column_fails_as_a_whole(tmp_path: Path) -> None:
    rows = _rows()
    rows[2][3] = "Vstd"
    with pytest.raises(IngestFileError, match="has no column 'Vb m3'"):
        read_archive_file(_write_csv(tmp_path / "x.csv", rows), MAPPING)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[warehouse.Store]:
    s = warehouse.open_store(path=tmp_path / "x.duckdb")
    s.migrate()
    yield s
    s.close()


def test_write_is_one_transaction_and_idempotent(store: warehouse.Store) -> None:
    r = read_archive_file(CSV, MAPPING, devices=DEVICES)
    first = write_archive_import(store, r)
    assert first == {"hourly_archive": 48, "device_daily_archive": 2, "readings": 96, "events": 2}
    again = write_archive_import(store, r)
    assert again == {"hourly_archive": 0, "device_daily_archive": 0, "readings": 0, "events": 0}
    assert store.count("hourly_archive") == 48


def test_cli_import_archive(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from dashboards.cli import main

    db = tmp_path / "cli.duckdb"
    s = warehouse.open_store(path=db)
    s.migrate()
    s.write("devices", pl.DataFrame({"device_id": list(DEVICES), "kind": ["corrector"] * 2,
                                     "meter_id": list(DEVICES.values())}))  # fmt: skip
    s.close()
    rows = _rows()
    rows[4][5] = "abc"  # line 5
    path = _write_csv(tmp_path / "with-bad-row.csv", rows)
    assert main(["--db", str(db), "import-archive", str(path), "--mapping", str(MAPPING)]) == 0
    out = capsys.readouterr().err  # the CLI reports on stderr
    assert "with-bad-row.csv: line 5: p MPa: 'abc' is not a number" in out
    assert "51 of 52 rows loaded" in out and "47 hourly_archive" in out
    s = warehouse.open_store(path=db)
    try:
        assert s.count("hourly_archive") == 47 and s.count("events") == 2
    finally:
        s.close()
    assert main(["--db", str(db), "import-archive", str(path), "--mapping", str(tmp_path / "none.toml")]) == 1
    assert "cannot read it" in capsys.readouterr().err
