"""The fault test: a few hundred units, ~50,000 readings over MQTT with faults, while the
broker and then the ingest service are killed and restarted mid-stream.

Afterwards: no acknowledged reading lost, none stored twice, every bad packet quarantined
exactly once with the right reason, and ``received = stored + duplicates + quarantined``
exactly (see :func:`tests.integration._wire_fleet.check_ground_truth`).

* The ingest service runs as its own process (``askug ingest mqtt``) and is killed with
  SIGKILL in the middle of a wave of sessions, then started again: messages it had not
  acknowledged are redelivered by the broker (persistent session) and counted as
  duplicates when they had been committed; units that got no ack resend.
* The broker is killed with SIGKILL between two waves, once its autosave (1 s) has
  written the ingest service's session, and started again on the same port and data
  folder.  (A broker crash loses what it had accepted but not yet saved; units resend
  good frames because they wait for the application ack after the commit — a garbage
  packet lost that way would never be quarantined, so the test kills it at a point where
  everything sent so far has been landed.)
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from ingest._device_profiles import ProfileRegistry
from ingest._send import FaultRates, FleetSender
from ingest._stats import read_stats
from ingest._transports import write_broker_auth
from tests import _servers
from tests.integration._wire_fleet import check_ground_truth, small_fleet

pytestmark = pytest.mark.integration

ASKUG = str(Path(sys.executable).with_name("askug"))


class _Service:
    """``askug ingest mqtt`` as a child process that the test can kill -9 and restart."""

    def __init__(self, dsn: str, url: str, log: Path) -> None:
        self.cmd = [ASKUG, "--dsn", dsn, "ingest", "mqtt", "--url", url, "--client-id", "askug-ingest-faults", "--log-format", "json", "--stats-every", "5"]
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        out = self.log.open("ab")
        self.proc = subprocess.Popen(self.cmd, stdout=out, stderr=out, env={**os.environ, "COLUMNS": "200"})
        out.close()
        self.starts += 1

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def terminate(self) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode


def _wait_log(path: Path, text: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and text in path.read_text(errors="replace"):
            return True
        time.sleep(0.1)
    return False


def _quiet(store: Any, *, seconds: float, timeout: float) -> None:
    """Wait until landing's received counter has not moved for ``seconds``."""
    last, since = -1, time.monotonic()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        now = read_stats(store).received
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= seconds:
            return
        time.sleep(0.2)


def test_faults_with_broker_and_service_killed_mid_stream(pg_databases: Any, tmp_path: Path) -> None:
    from warehouse._postgres import PostgresStore

    name = pg_databases.create(template=pg_databases.migrated_template())
    dsn = pg_databases.dsn(name)
    store = PostgresStore(dsn)
    broker: _servers.MosquittoServer | None = None
    service: _Service | None = None
    try:
        fleet = small_fleet(store, tmp_path / "sim", meters=220, days=7, seed=21, json_share=0.3)
        assert len(fleet.units) >= 200
        secrets = {u.device_id: u.secret for u in fleet.units}
        auth = write_broker_auth(tmp_path / "auth", secrets, ingest_user="askug-ingest", ingest_password="ingest-pw")
        broker = _servers.MosquittoServer(password_file=auth.password_file, acl_file=auth.acl_file, autosave_interval=1).start()
        service = _Service(dsn, f"mqtt://askug-ingest:ingest-pw@127.0.0.1:{broker.port}", tmp_path / "ingest.log")
        service.start()
        # its first subscription creates the persistent session; wait for it (and the autosave)
        assert _wait_log(tmp_path / "ingest.log", '"event": "mqtt_subscribed"', 60)
        # `askug ingest` runs polars' pool on one thread: the other core is PostgreSQL's
        assert '"polars_threads": 1' in (tmp_path / "ingest.log").read_text()
        time.sleep(1.5)

        faults = FaultRates(resend=0.10, out_of_order=0.05, truncated=0.02, corrupted=0.01, replayed=0.01, unknown_device=0.01, clock_skew=0.005, drift=0.02)
        sender = FleetSender(
            fleet, ProfileRegistry(), transport="mqtt", host="127.0.0.1", port=broker.port, faults=faults,
            concurrency=16, timeout_s=3.0, rounds=6, seed=21, mqtt_auth=True, session_hours=48,
        )  # fmt: skip
        events: list[str] = []
        marks: list[tuple[str, float]] = []
        killer: list[threading.Thread] = []

        def crash_broker() -> None:  # all sessions paused; everything sent so far landed
            assert broker is not None
            _quiet(store, seconds=1.5, timeout=30)
            broker.kill()  # SIGKILL
            events.append("broker")
            marks.append(("broker killed", time.time()))
            time.sleep(0.5)
            broker.start()

        def crash_service() -> None:
            assert service is not None

            def crash() -> None:
                time.sleep(0.5)  # mid-stream: sessions are publishing and being committed
                service.kill()  # SIGKILL
                events.append("service")
                marks.append(("service killed", time.time()))
                time.sleep(1.0)
                service.start()

            t = threading.Thread(target=crash)
            t.start()
            killer.append(t)

        report = sender.run(hooks=[(0.3, crash_broker), (0.6, crash_service)])
        for t in killer:
            t.join()
        assert events == ["broker", "service"]
        _quiet(store, seconds=2.0, timeout=60)
        assert service.terminate() == 0  # graceful SIGTERM: commit, ack, exit 0
        assert service.starts == 2

        bad = report.bad_packets()
        q = set(store.read("quarantine")["sha256"].to_list())
        lost = [p for p in report.packets if p.sha256 in bad and p.sha256 not in q]
        assert not lost, (marks, [(p.device_id, p.counter, p.fault, p.sent_at) for p in lost])
        verdict = check_ground_truth(store, report)
        s = report.summary()
        print(s, read_stats(store))
        assert 40_000 <= verdict.acked_readings <= 65_000, s
        assert report.failed_sessions > 0 or s["rounds"] > 0  # the kills did interrupt sessions
        by_fault = s["by_fault"]
        good = len(report.good)
        assert by_fault["resend"] >= 0.07 * good and by_fault["out_of_order"] >= 0.03 * good, by_fault
        assert by_fault["truncated"] >= 0.01 * good and by_fault.get("corrupted", 0) >= 0.004 * good, by_fault
        assert by_fault.get("replayed", 0) > 0 and by_fault.get("unknown_device", 0) > 0, by_fault
        stats = read_stats(store)
        assert stats.duplicates >= by_fault["resend"]
        log = (tmp_path / "ingest.log").read_text()
        assert '"event": "mqtt_disconnected"' in log and '"event": "signal"' in log
    finally:
        if service is not None:
            service.kill()
        if broker is not None:
            broker.stop()
        store.close()
        pg_databases.drop(name)
