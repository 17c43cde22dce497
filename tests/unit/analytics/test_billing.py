"""The billing upload: accounts per gas month, the 1C XML and CSV, delivery, the record, re-runs."""

from __future__ import annotations

import datetime as dt
import http.server
import io
import threading
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import polars as pl
import pytest

from analytics import (
    BILLING_SCHEMA,
    BillingError,
    billing_accounts,
    billing_csv,
    billing_history,
    billing_xml,
    run_billing,
)
from analytics._billing import XML_ELEMENTS, parse_period, period_bounds
from warehouse import Store, open_store

UTC = dt.UTC
NS = "{urn:askug:billing:1c:1}"
# After the end of March 2022 in every zone: the periods below are closed.
NOW = dt.datetime(2022, 4, 10, 6, tzinfo=UTC)


def _hours(start: dt.datetime, end: dt.datetime) -> pl.Series:
    return pl.datetime_range(start, end - dt.timedelta(hours=1), "1h", eager=True, time_zone="UTC")


def _build(path: Path) -> Store:
    """Two companies: Moscow (UTC+3, contract hour 10) and Berlin (DST, contract hour 6).

    * m1 (RU): 1.0 m³ every hour of Feb–Mar 2022; 3 hours of its March gas month are
      estimated, 2 edited, 1 suspect, 4 missing (null), 5 absent.
    * m2 (DE): 2.0 m³ every hour of March (DST month: 743 hours).
    * m3 (RU, name with XML and formula characters): no data in March.
    """
    s = open_store(path=path)
    s.migrate()
    s.write("companies", pl.DataFrame({
        "company_id": ["RU", "DE"], "name": ["Volga Gas", "Rhein Gas"],
        "time_zone": ["Europe/Moscow", "Europe/Berlin"], "contract_hour": [10, 6],
    }))  # fmt: skip
    s.write("branches", pl.DataFrame({
        "branch_id": ["B1", "B2"], "company_id": ["RU", "DE"], "name": ["Samara", "Köln"],
    }))  # fmt: skip
    s.write("metering_points", pl.DataFrame({
        "meter_id": ["m1", "m2", "m3"], "branch_id": ["B1", "B2", "B1"],
        "name": ["Flat 1", "Bäckerei", '=HYPERLINK("x") & <Co>'],
        "resource": ["gas", "gas", "gas"], "category": ["household", "commercial", "industrial"],
        "time_zone": ["Europe/Moscow", "Europe/Berlin", "Europe/Moscow"], "contract_hour": [10, 6, 10],
    }))  # fmt: skip
    s.write("contracts", pl.DataFrame({
        "meter_id": ["m1", "m1", "m2"],
        "valid_from": [dt.date(2021, 1, 1), dt.date(2022, 3, 1), dt.date(2022, 1, 1)],
        "valid_to": [dt.date(2022, 2, 28), None, None],
        "daily_limit_m3": [30.0, 30.0, None], "monthly_limit_m3": [700.0, 800.0, 2000.0],
        "monthly_plan_m3": [650.0, 750.0, None],
    }))  # fmt: skip
    ru_start, ru_end = period_bounds(dt.date(2022, 3, 1), "Europe/Moscow", 10)
    ts = _hours(dt.datetime(2022, 2, 1, tzinfo=UTC), ru_end + dt.timedelta(days=2))
    m1 = pl.DataFrame({"meter_id": "m1", "ts": ts, "volume_m3": 1.0, "quality": "valid", "source": "archive"})
    inside = (m1.get_column("ts") >= ru_start) & (m1.get_column("ts") < ru_end)
    first = int(inside.arg_true()[0])
    q = m1.get_column("quality").to_list()
    v: list[float | None] = m1.get_column("volume_m3").to_list()
    for k, quality in enumerate(["estimated"] * 3 + ["edited"] * 2 + ["suspect"] + ["missing"] * 4):
        q[first + 10 + k] = quality
        if quality == "missing":
            v[first + 10 + k] = None
    m1 = m1.with_columns(quality=pl.Series(q), volume_m3=pl.Series(v, dtype=pl.Float64))
    absent = list(range(first + 100, first + 105))
    m1 = m1.filter(~pl.int_range(pl.len()).is_in(absent))
    de_start, de_end = period_bounds(dt.date(2022, 3, 1), "Europe/Berlin", 6)
    m2 = pl.DataFrame({"meter_id": "m2", "ts": _hours(de_start, de_end), "volume_m3": 2.0,
                       "quality": "valid", "source": "archive"})  # fmt: skip
    s.write("hourly_archive", pl.concat([m1, m2]))
    return s


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = _build(tmp_path / "b.duckdb")
    try:
        yield s
    finally:
        s.close()


@pytest.fixture
def out(tmp_path: Path) -> Path:
    folder = tmp_path / "billing"
    folder.mkdir()
    return folder


# --- periods and accounts -------------------------------------------------------------------
def test_parse_period() -> None:
    today = dt.date(2022, 3, 15)
    assert parse_period("2022-01") == dt.date(2022, 1, 1)
    assert parse_period("previous", today=today) == dt.date(2022, 2, 1)
    assert parse_period("previous", today=dt.date(2022, 1, 2)) == dt.date(2021, 12, 1)
    assert parse_period("current", today=today) == dt.date(2022, 3, 1)
    for bad in ("2022", "2022-13", "Jan 2022", "2022-1-1-1"):
        with pytest.raises(BillingError, match="must look like 2022-01"):
            parse_period(bad)


def test_gas_month_bounds_follow_the_contract_hour_and_dst() -> None:
    start, end = period_bounds(dt.date(2022, 3, 1), "Europe/Moscow", 10)
    assert (start, end) == (dt.datetime(2022, 3, 1, 7, tzinfo=UTC), dt.datetime(2022, 4, 1, 7, tzinfo=UTC))
    start, end = period_bounds(dt.date(2022, 3, 1), "Europe/Berlin", 6)
    assert (start, end) == (dt.datetime(2022, 3, 1, 5, tzinfo=UTC), dt.datetime(2022, 4, 1, 4, tzinfo=UTC))
    assert (end - start) / dt.timedelta(hours=1) == 743


def test_accounts_sum_the_gas_month_by_quality(store: Store) -> None:
    acc = billing_accounts(store, "2022-03", now=NOW)
    assert acc.schema == BILLING_SCHEMA
    rows = {r["account"]: r for r in acc.iter_rows(named=True)}
    m1 = rows["m1"]
    assert m1["hours_expected"] == 744
    assert (m1["hours_estimated"], m1["hours_edited"], m1["hours_suspect"]) == (3, 2, 1)
    assert m1["hours_missing"] == 4 + 5  # null hours and absent hours
    assert m1["hours_valid"] == 744 - 3 - 2 - 1 - 9
    assert m1["volume_m3"] == pytest.approx(744 - 9)
    assert m1["period_start"] == "2022-03-01T10:00:00+03:00" and m1["period_end"] == "2022-04-01T10:00:00+03:00"
    # the contract in force on 1 March (not the one that ended in February)
    assert (m1["monthly_limit_m3"], m1["monthly_plan_m3"]) == (800.0, 750.0)
    m2 = rows["m2"]
    assert m2["hours_expected"] == m2["hours_valid"] == 743 and m2["hours_missing"] == 0
    assert m2["volume_m3"] == pytest.approx(2 * 743)
    assert m2["period_start"] == "2022-03-01T06:00:00+01:00" and m2["period_end"] == "2022-04-01T06:00:00+02:00"
    assert m2["monthly_plan_m3"] is None
    m3 = rows["m3"]  # no data: missing is null, never 0
    assert m3["volume_m3"] is None and m3["hours_missing"] == 744
    assert acc.get_column("account").to_list() == ["m2", "m1", "m3"]  # company, branch, account


def test_accounts_of_one_company(store: Store) -> None:
    acc = billing_accounts(store, "2022-03", company_ids=["DE"], now=NOW)
    assert acc.get_column("account").to_list() == ["m2"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"period": "2022-03", "company_ids": ["XX"]}, "unknown company XX; known companies: DE, RU"),
        ({"period": "2021-06"}, "no hourly consumption is stored for gas month 2021-06"),
        ({"period": "2022-04"}, r"gas month 2022-04 is not over until 2022-05-01 07:00 UTC"),
        ({"period": "22/03"}, "must look like 2022-01"),
    ],
)
def test_bad_input_names_the_problem(store: Store, kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(BillingError, match=message):
        billing_accounts(store, now=NOW, **kwargs)


# --- the files ------------------------------------------------------------------------------
def test_xml_follows_the_documented_schema(store: Store) -> None:
    acc = billing_accounts(store, "2022-03", now=NOW)
    data = billing_xml(acc, period="2022-03", upload_id="u1", revision=2, created_at=NOW)
    assert data.startswith(b'<?xml version="1.0" encoding="UTF-8"?>')
    root = ET.fromstring(data)
    assert root.tag == f"{NS}ФайлОбмена"
    assert root.attrib == {
        "ВерсияФормата": "1.0", "Идентификатор": "u1", "ДатаВыгрузки": "2022-04-10T06:00:00Z",
        "Период": "2022-03", "Ревизия": "2", "Источник": "askug", "Область": "all",
        "КоличествоСчетов": "3", "ИтогоОбъемМ3": f"{735 + 1486:.3f}",
    }  # fmt: skip
    accounts = root.findall(f"{NS}Счет")
    assert len(accounts) == 3
    for element, want in zip(accounts, acc.iter_rows(named=True), strict=True):
        tags = [child.tag.removeprefix(NS) for child in element]
        # documented order; null values have no element
        assert tags == [e for c, e in XML_ELEMENTS.items() if want[c] is not None]
        got = {child.tag.removeprefix(NS): child.text for child in element}
        assert got["ЛицевойСчет"] == want["account"]
        assert got["Наименование"] == want["account_name"]  # escaped and restored, unchanged
        if want["volume_m3"] is not None:
            assert got["ОбъемМ3"] == f"{want['volume_m3']:.3f}"
        assert int(got["ЧасовНетДанных"] or -1) == want["hours_missing"]


def test_csv_reads_back_and_guards_formulas(store: Store) -> None:
    acc = billing_accounts(store, "2022-03", now=NOW)
    data = billing_csv(acc)
    assert data == billing_csv(acc)  # nothing run-specific: same rows, same bytes
    back = pl.read_csv(io.BytesIO(data), separator=";", schema=BILLING_SCHEMA)
    assert back.drop("account_name").equals(acc.drop("account_name"))
    names = back.get_column("account_name").to_list()
    assert names[:2] == ["Bäckerei", "Flat 1"]
    assert names[2] == "'" + '=HYPERLINK("x") & <Co>'


# --- delivery, the record and re-runs ---------------------------------------------------
def test_folder_upload_is_recorded_and_idempotent(store: Store, out: Path) -> None:
    first = run_billing(store, "2022-03", out, now=NOW)
    assert [(u.fmt, u.status, u.revision) for u in first] == [("xml", "sent", 1), ("csv", "sent", 1)]
    assert sorted(p.name for p in out.iterdir()) == ["askug_billing_2022-03_r1.csv", "askug_billing_2022-03_r1.xml"]
    record = billing_history(store)
    assert record.height == 2 and set(record.get_column("status")) == {"sent"}
    assert record.get_column("destination").unique().to_list() == [str(out.resolve())]
    import hashlib

    for u in first:
        assert hashlib.sha256((out / u.file_name).read_bytes()).hexdigest() == u.file_sha256

    # the same rows again: nothing is sent, the attempt is recorded
    again = run_billing(store, "2022-03", out, now=NOW + dt.timedelta(hours=1))
    assert [(u.status, u.revision) for u in again] == [("unchanged", 1), ("unchanged", 1)]
    assert len(list(out.iterdir())) == 2

    # late data changes the rows: revision 2 replaces revision 1
    store.replace(
        "hourly_archive",
        pl.DataFrame({"meter_id": ["m2"], "ts": [dt.datetime(2022, 3, 10, tzinfo=UTC)], "volume_m3": [5.0],
                      "quality": ["edited"], "source": ["edit"]}),
        where={"meter_id": ["m2"], "ts": [dt.datetime(2022, 3, 10, tzinfo=UTC)]},
    )  # fmt: skip
    late = run_billing(store, "2022-03", out, formats=["xml"], now=NOW + dt.timedelta(hours=2))
    assert [(u.status, u.revision, u.file_name) for u in late] == [("sent", 2, "askug_billing_2022-03_r2.xml")]
    root = ET.parse(out / "askug_billing_2022-03_r2.xml").getroot()
    assert root.get("Ревизия") == "2" and root.get("ИтогоОбъемМ3") == f"{735 + 1486 + 3:.3f}"

    forced = run_billing(store, "2022-03", out, formats=["xml"], force=True, now=NOW + dt.timedelta(hours=3))
    assert [(u.status, u.revision) for u in forced] == [("sent", 3)]
    assert billing_history(store, period="2022-03").height == 6


def test_scope_is_part_of_the_name_and_the_rule(store: Store, out: Path) -> None:
    run_billing(store, "2022-03", out, formats=["csv"], now=NOW)
    de = run_billing(store, "2022-03", out, formats=["csv"], company_ids=["DE"], now=NOW)
    assert (de[0].status, de[0].revision, de[0].file_name) == ("sent", 1, "askug_billing_2022-03_DE_r1.csv")


def test_bad_destinations_write_nothing(store: Store, tmp_path: Path) -> None:
    with pytest.raises(BillingError, match="does not exist"):
        run_billing(store, "2022-03", tmp_path / "nope", now=NOW)
    with pytest.raises(BillingError, match="only folders and http"):
        run_billing(store, "2022-03", "ftp://example.org/x", now=NOW)
    with pytest.raises(BillingError, match="billing formats"):
        run_billing(store, "2022-03", tmp_path, formats=["pdf"], now=NOW)
    assert store.count("billing_uploads") == 0


def test_an_empty_period_leaves_no_file_and_no_record(store: Store, out: Path) -> None:
    with pytest.raises(BillingError, match="no hourly consumption"):
        run_billing(store, "2021-06", out, now=NOW)
    assert list(out.iterdir()) == [] and store.count("billing_uploads") == 0


# --- HTTP ---------------------------------------------------------------------------------
class _Receiver(http.server.BaseHTTPRequestHandler):
    received: ClassVar[list[tuple[dict[str, str], bytes]]] = []
    status = 201

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append((dict(self.headers), body))
        self.send_response(type(self).status)
        self.end_headers()
        self.wfile.write(b"stored")

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[tuple[str, type[_Receiver]]]:
    handler = type("Handler", (_Receiver,), {"received": [], "status": 201})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://user:secret@127.0.0.1:{server.server_address[1]}/billing/in?x=1", handler
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_http_upload_posts_each_file_and_records_it(store: Store, receiver: tuple[str, Any]) -> None:
    url, handler = receiver
    plain = url.replace("user:secret@", "")
    uploads = run_billing(store, "2022-03", plain, headers={"Authorization": "Bearer t0k"}, now=NOW)
    assert [(u.fmt, u.status) for u in uploads] == [("xml", "sent"), ("csv", "sent")]
    assert [u.detail for u in uploads] == ["HTTP 201: stored"] * 2
    (h_xml, body_xml), (h_csv, body_csv) = handler.received
    assert h_xml["Content-Type"] == "application/xml; charset=utf-8"
    assert h_csv["Content-Type"] == "text/csv; charset=utf-8"
    assert h_xml["Authorization"] == "Bearer t0k"
    assert h_xml["X-Askug-Period"] == "2022-03" and h_xml["X-Askug-Revision"] == "1"
    assert h_xml["X-Askug-Upload-Id"] == uploads[0].upload_id
    assert 'filename="askug_billing_2022-03_r1.xml"' in h_xml["Content-Disposition"]
    assert ET.fromstring(body_xml).get("Идентификатор") == uploads[0].upload_id
    assert body_csv == billing_csv(billing_accounts(store, "2022-03", now=NOW))
    again = run_billing(store, "2022-03", plain, now=NOW + dt.timedelta(hours=1))
    assert [u.status for u in again] == ["unchanged", "unchanged"] and len(handler.received) == 2


def test_http_failure_is_recorded_then_raised_and_retried(store: Store, receiver: tuple[str, Any]) -> None:
    url, handler = receiver
    handler.status = 503
    with pytest.raises(BillingError, match=r"HTTP 503.*the attempt is recorded") as info:
        run_billing(store, "2022-03", url, formats=["xml"], now=NOW)
    assert "secret" not in str(info.value)
    (headers, _), = handler.received
    assert headers["Authorization"] == "Basic dXNlcjpzZWNyZXQ="  # user:secret from the URL
    record = billing_history(store)
    assert record.get_column("status").to_list() == ["failed"]
    # credentials in the URL are never recorded
    assert "secret" not in record.get_column("destination")[0]
    assert record.get_column("destination")[0].endswith("/billing/in?x=1")
    handler.status = 200
    retry = run_billing(store, "2022-03", url, formats=["xml"], now=NOW + dt.timedelta(minutes=5))
    assert (retry[0].status, retry[0].revision) == ("sent", 1)  # a failed attempt uses no revision


def test_unreachable_endpoint_is_recorded(store: Store) -> None:
    import socket

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(BillingError, match="cannot reach"):
        run_billing(store, "2022-03", f"http://127.0.0.1:{port}/x", formats=["csv"], timeout_s=5, now=NOW)
    assert billing_history(store).get_column("status").to_list() == ["failed"]
