"""The universal report form: filters, grouping with subtotals, bad input, the PDF."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest

from analytics import AnalyticsError, ReportFilter, universal_report, write_report_pdf
from warehouse import Store, open_store

UTC = dt.UTC
START = dt.datetime(2022, 1, 10, tzinfo=UTC)
DAYS = 4


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    path = tmp_path_factory.mktemp("report") / "r.duckdb"
    with open_store(path=path) as s:
        s.migrate()
        s.write("companies", pl.DataFrame({
            "company_id": ["RU", "UK"], "name": ["ru", "uk"],
            "time_zone": ["Europe/Moscow", "Europe/London"], "contract_hour": [10, 5],
        }))  # fmt: skip
        s.write("branches", pl.DataFrame({
            "branch_id": ["B1", "B2", "B3"], "company_id": ["RU", "RU", "UK"], "name": ["1", "2", "3"],
        }))  # fmt: skip
        meters = pl.DataFrame({
            "meter_id": ["m1", "m2", "m3", "m4"], "branch_id": ["B1", "B1", "B2", "B3"],
            "resource": ["gas", "gas", "gas", "water"],
            "category": ["household", "industrial", "household", "commercial"],
        })  # fmt: skip
        s.write("metering_points", meters.with_columns(
            name=pl.col("meter_id"), time_zone=pl.lit("Europe/Moscow"), contract_hour=pl.lit(10)))
        s.write("devices", pl.DataFrame({
            "device_id": ["d1", "d2", "g1"], "kind": ["household_unit", "corrector", "gdp_unit"],
            "meter_id": ["m1", "m2", None], "node_id": [None, None, "N1"],
        }))  # fmt: skip
        ts = pl.datetime_range(START, START + dt.timedelta(days=DAYS, hours=-1), "1h", eager=True, time_zone="UTC")
        parts = []
        for i, m in enumerate(["m1", "m2", "m3", "m4"]):
            q = ["valid"] * len(ts)
            if m == "m2":
                q[30:34] = ["estimated"] * 4
            parts.append(pl.DataFrame({
                "meter_id": m, "ts": ts, "volume_m3": [float(i + 1)] * len(ts), "quality": q, "source": "archive",
            }))  # fmt: skip
        s.write("hourly_archive", pl.concat(parts))
        yield s


def period(**kw: object) -> ReportFilter:
    return ReportFilter(start=dt.date(2022, 1, 10), end=dt.date(2022, 1, 13), **kw)  # type: ignore[arg-type]


def test_group_and_subtotal(store: Store) -> None:
    report = universal_report(store, period(), group_by=["company", "branch", "day"])
    assert report.row(0, named=True)["level"] == "total"
    assert report.columns[:6] == ["level", "depth", "subtotal", "company_id", "branch_id", "day"]
    total = report.filter(pl.col("level") == "total").get_column("volume_m3").item()
    for level in ("company", "branch", "day"):
        assert report.filter(pl.col("level") == level).get_column("volume_m3").sum() == pytest.approx(total)
    companies = report.filter(pl.col("level") == "company")
    assert companies.get_column("branch_id").null_count() == companies.height  # rolled up → null
    assert report.filter(pl.col("level") == "day").get_column("subtotal").any() is False
    # RU gas days 10, 11 and 12 January (from 07:00 UTC): 3 × 24 hours × 2 meters expected
    b1 = report.filter((pl.col("level") == "branch") & (pl.col("branch_id") == "B1")).row(0, named=True)
    assert b1["expected_hours"] == 2 * 3 * 24
    assert b1["meters"] == 2


def test_filters_combine(store: Store) -> None:
    by_category = universal_report(store, period(categories=["household"]), group_by=["meter"])
    meters = by_category.filter(pl.col("level") == "meter").get_column("meter_id").to_list()
    assert meters == ["m1", "m3"]
    by_device = universal_report(store, period(devices=["d2"]), group_by=["meter"])
    assert by_device.filter(pl.col("level") == "meter").get_column("meter_id").to_list() == ["m2"]
    both = universal_report(store, period(companies=["RU"], resources=["gas"], branches=["B1"]), group_by=[])
    assert both.get_column("meters").item() == 2


def test_quality_filter_and_share_estimated(store: Store) -> None:
    all_values = universal_report(store, period(meters=["m2"]), group_by=["meter"])
    row = all_values.filter(pl.col("level") == "meter").row(0, named=True)
    assert row["estimated_hours"] == 4 and row["share_estimated"] == pytest.approx(4 / row["hours"])
    only_est = universal_report(store, period(meters=["m2"], qualities=["estimated"]), group_by=["meter"])
    row = only_est.filter(pl.col("level") == "meter").row(0, named=True)
    assert row["hours"] == 4 and row["volume_m3"] == pytest.approx(4 * 2.0)
    assert row["completeness"] == pytest.approx(4 / (3 * 24))


def test_engines_agree(store: Store) -> None:
    a = universal_report(store, period(), group_by=["resource", "category", "month"])
    b = universal_report(store, period(), group_by=["resource", "category", "month"], engine="polars")
    assert a.equals(b)


@pytest.mark.parametrize(
    ("flt", "group_by", "message"),
    [
        (period(companies=["XX"]), ["company"], "unknown company"),
        (period(meters=["nope"]), ["meter"], "unknown metering point"),
        (period(devices=["g1"]), ["meter"], "not installed on a metering point"),
        (period(devices=["zz"]), ["meter"], "unknown device"),
        (period(resources=["oil"]), ["meter"], "unknown resource"),
        (period(qualities=["great"]), ["meter"], "unknown quality"),
        (period(companies=["UK"], categories=["industrial"]), ["meter"], "no metering point matches"),
        (ReportFilter(dt.date(2022, 1, 12), dt.date(2022, 1, 10)), ["meter"], "reversed"),
        (ReportFilter(dt.date(2022, 1, 12), dt.date(2022, 1, 12)), ["meter"], "empty"),
        (ReportFilter(dt.date(2023, 1, 1), dt.date(2023, 2, 1)), ["meter"], "no hourly values"),
        (period(), ["weekday"], "cannot group by"),
        (period(), ["company", "day", "month"], "coarse to fine"),
    ],
)
def test_bad_input_is_a_clear_error(store: Store, flt: ReportFilter, group_by: list[str], message: str) -> None:
    with pytest.raises(AnalyticsError, match=message):
        universal_report(store, flt, group_by=group_by)


def test_pdf(store: Store, tmp_path: Path) -> None:
    report = universal_report(store, period(), group_by=["company", "branch", "day"])
    out = tmp_path / "report.pdf"
    summary = write_report_pdf(report, out, title="Consumption by branch")
    assert out.read_bytes().startswith(b"%PDF") and summary.rows == report.height
    assert summary.pages is not None and summary.pages >= 1
    with pytest.raises(AnalyticsError, match="subtotal"):
        write_report_pdf(report.drop("subtotal"), tmp_path / "bad.pdf")
    assert not (tmp_path / "bad.pdf").exists()


def test_pdf_prints_cyrillic_groups_with_bold_subtotals(store: Store, tmp_path: Path) -> None:
    """Russian company and branch names print exactly (read back as text); subtotals are bold."""
    from tests.unit.analytics._pdf_reader import read_pdf

    names = {"RU": "ООО «Газпром межрегионгаз Вологда»", "UK": "Gas UK Ltd", "B1": "Филиал №1 (Череповец)",
             "B2": "Филиал Север", "B3": "London branch"}  # fmt: skip
    report = universal_report(store, period(), group_by=["company", "branch"]).with_columns(
        pl.col("company_id").replace(names), pl.col("branch_id").replace(names)
    )
    out = tmp_path / "report.pdf"
    columns = ["level", "company_id", "branch_id", "meters", "volume_m3", "completeness"]
    summary = write_report_pdf(report, out, title="Потребление газа, м³ — январь 2022", columns=columns)
    doc = read_pdf(out)
    assert summary.rows == report.height and summary.truncated_cells == 0
    assert doc.texts.count("Потребление газа, м³ — январь 2022") == doc.pages
    # Company rows are subtotals (bold, /F2); branch rows are the finest level (regular, /F1).
    assert ("F2", names["RU"]) in doc.runs and ("F1", names["RU"]) in doc.runs
    assert ("F1", "Филиал №1 (Череповец)") in doc.runs and ("F1", "Филиал Север") in doc.runs
    assert ("F2", "Филиал Север") not in doc.runs
    assert ("F2", "  company") in doc.runs and ("F1", "    branch") in doc.runs
    # With every default column the table is wider than the page: the long names are cut,
    # the headers and numbers keep their width.
    wide = write_report_pdf(report, tmp_path / "wide.pdf", title="Потребление газа")
    texts = read_pdf(tmp_path / "wide.pdf").texts
    cut = [t for t in texts if t.endswith("...")]
    assert wide.truncated_cells == len(cut) > 0 and all(t.startswith("ООО «Газпром") for t in cut)
    assert {"meters", "completeness_pct", "share_estimated_pct", "temperature_c_avg", "4492.80"} <= set(texts)
