"""Billing upload and streamed export on PostgreSQL with a simulated enterprise."""

from __future__ import annotations

import datetime as dt
import http.server
import json
import threading
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import polars as pl
import pytest

from analytics import billing_accounts, billing_history, iter_table, run_billing, write_export

pytestmark = pytest.mark.integration

NS = "{urn:askug:billing:1c:1}"
NOW = dt.datetime(2022, 3, 1, tzinfo=dt.UTC)


@pytest.fixture
def loaded(pg_store: Any, small_simulation: Path) -> Any:
    from ingest import load_simulation

    load_simulation(pg_store, small_simulation)
    return pg_store


class _Receiver(http.server.BaseHTTPRequestHandler):
    received: ClassVar[list[bytes]] = []

    def do_POST(self) -> None:
        type(self).received.append(self.rfile.read(int(self.headers["Content-Length"])))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def endpoint() -> Iterator[tuple[str, type[_Receiver]]]:
    handler = type("Handler", (_Receiver,), {"received": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/1c", handler
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_billing_on_postgres_folder_and_http(loaded: Any, tmp_path: Path, endpoint: tuple[str, Any]) -> None:
    accounts = billing_accounts(loaded, "2022-01", now=NOW)
    meters = loaded.read("metering_points")
    assert accounts.height == meters.height
    # the gas month starts at each point's contract hour, local time: hours before it
    # belong to December's gas month
    from analytics._billing import period_bounds

    starts = pl.DataFrame(
        [(m, period_bounds(dt.date(2022, 1, 1), tz, h)[0]) for m, tz, h in
         meters.select("meter_id", "time_zone", "contract_hour").iter_rows()],
        schema={"meter_id": pl.String, "start": pl.Datetime("us", "UTC")}, orient="row",
    )  # fmt: skip
    hourly = loaded.read("hourly_archive").join(starts, on="meter_id").filter(
        (pl.col("ts") >= pl.col("start")) & (pl.col("quality") != "missing")
    )
    assert accounts.get_column("volume_m3").sum() == pytest.approx(
        hourly.get_column("volume_m3").sum(), rel=1e-6, abs=0.02
    )
    uploads = run_billing(loaded, "2022-01", tmp_path, now=NOW)
    assert [(u.fmt, u.status, u.revision) for u in uploads] == [("xml", "sent", 1), ("csv", "sent", 1)]
    root = ET.parse(tmp_path / "askug_billing_2022-01_r1.xml").getroot()
    assert len(root.findall(f"{NS}Счет")) == accounts.height
    again = run_billing(loaded, "2022-01", tmp_path, now=NOW + dt.timedelta(hours=1))
    assert [u.status for u in again] == ["unchanged", "unchanged"]

    url, handler = endpoint
    sent = run_billing(loaded, "2022-01", url, formats=["xml"], now=NOW + dt.timedelta(hours=2))
    assert sent[0].status == "sent" and len(handler.received) == 1
    assert ET.fromstring(handler.received[0]).get("КоличествоСчетов") == str(accounts.height)
    record = billing_history(loaded, period="2022-01")
    assert record.height == 5
    assert set(record.get_column("destination")) == {str(tmp_path.resolve()), url}


def test_streamed_export_from_postgres(loaded: Any, tmp_path: Path) -> None:
    start = dt.datetime(2022, 1, 1, tzinfo=dt.UTC)
    end = start + dt.timedelta(days=3)
    windows: list[int] = []
    summary = write_export(
        iter_table(loaded, "hourly", start=start, end=end, progress=lambda d, t: windows.append(t)),
        tmp_path / "h.jsonl",
    )
    assert windows == [3, 3, 3]
    stored = loaded.read("hourly_archive", start=start, end=end)
    assert summary.rows == stored.height > 0
    rows = [json.loads(line) for line in (tmp_path / "h.jsonl").read_text().splitlines()]
    assert {r["meter_id"] for r in rows} == set(stored.get_column("meter_id").to_list())
