"""Hermetic tests of the transports' shared parts: the landing worker, rate limit, server
frames, structured logs, the broker ACL writer and the sender's fault planning."""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ingest._decode import decode_server
from ingest._transports._common import (
    LandingWorker,
    RateLimiter,
    ack_frame,
    command_frame,
    configure_logging,
    log_event,
    serial_of,
)
from ingest._transports.broker import read_secrets_csv, write_broker_auth
from ingest._transports.mqtt import parse_mqtt_url
from ingest._wire import Packet
from ingest.errors import IngestError, IngestFileError


@dataclass
class _Outcome:
    status: str
    device_id: str | None
    counter: int | None
    reason: Any
    readings: int


class _Landing:
    """Records the batch sizes; fails the first ``fail`` calls (database down)."""

    def __init__(self, fail: int = 0, delay: float = 0.0) -> None:
        self.batches: list[int] = []
        self.fail = fail
        self.delay = delay
        self.thread_ids: set[int] = set()

    def submit(self, packets: Sequence[Packet]) -> list[_Outcome]:
        self.thread_ids.add(threading.get_ident())
        if self.fail:
            self.fail -= 1
            raise ConnectionError("database unreachable")
        time.sleep(self.delay)
        self.batches.append(len(packets))
        return [_Outcome("stored", "D1", i, None, 1) for i, _ in enumerate(packets)]

    def pending_commands(self, device_id: str) -> list[Any]:
        return []

    def mark_delivered(self, command_id: int, at: dt.datetime) -> None:
        return None


def _packets(n: int) -> list[Packet]:
    now = dt.datetime.now(dt.UTC)
    return [Packet(raw=bytes([i % 256]), transport="udp", received_at=now) for i in range(n)]


def test_worker_batches_jobs_and_splits_outcomes_in_order() -> None:
    landing = _Landing(delay=0.05)
    worker = LandingWorker(landing, linger_s=0.01).start()
    try:
        futures = [worker.submit(_packets(k)) for k in (1, 2, 3, 4, 5) * 10]
        results = [f.result(10) for f in futures]
    finally:
        worker.stop()
    assert [len(r) for r in results] == [1, 2, 3, 4, 5] * 10
    assert sum(landing.batches) == 150
    assert len(landing.batches) < 50  # jobs that queue up during a commit share the next one
    assert len(landing.thread_ids) == 1  # one thread owns the database
    assert worker.stats.snapshot()["stored"] == 150


def test_worker_retries_then_fails_the_round_without_committing() -> None:
    worker = LandingWorker(_Landing(fail=1), retries=2).start()
    try:
        assert len(worker.submit(_packets(3)).result(10)) == 3  # one failure, then it worked
    finally:
        worker.stop()
    worker = LandingWorker(_Landing(fail=5), retries=2).start()
    try:
        with pytest.raises(ConnectionError):
            worker.submit(_packets(3)).result(10)
        assert worker.stats.snapshot()["submit_failures"] == 2
    finally:
        worker.stop()


def test_worker_stop_flushes_what_is_queued() -> None:
    landing = _Landing(delay=0.02)
    worker = LandingWorker(landing).start()
    futures = [worker.submit(_packets(2)) for _ in range(20)]
    worker.stop()
    assert all(f.done() and len(f.result()) == 2 for f in futures)
    assert sum(landing.batches) == 40


def test_worker_runs_calls_on_its_thread() -> None:
    landing = _Landing()
    worker = LandingWorker(landing).start()
    try:
        worker.submit(_packets(1)).result(5)
        assert worker.call(threading.get_ident).result(5) in landing.thread_ids
        with pytest.raises(ZeroDivisionError):
            worker.call(lambda: 1 / 0).result(5)
    finally:
        worker.stop()


def test_rate_limiter_token_bucket() -> None:
    lim = RateLimiter(60)  # one a second, bursts of 60
    assert lim.allow("a", 60, now=0.0)
    assert not lim.allow("a", 1, now=0.0)
    assert lim.allow("b", 1, now=0.0)  # per key
    assert lim.allow("a", 1, now=1.01)
    assert not lim.allow("a", 1, now=1.02)
    assert RateLimiter(0).allow("x", 10**6)  # 0 = no limit


def test_server_frames_round_trip() -> None:
    ack = decode_server(ack_frame(123, 0xFFFFFFFF))
    assert (ack.kind, ack.serial, ack.acked_counter) == ("ack", 123, 0xFFFFFFFF)
    cmd = decode_server(command_frame(7, 42, {"kind": "valve", "payload": {"action": "close"}}))
    assert (cmd.kind, cmd.command_id, cmd.command) == ("command", 42, {"kind": "valve", "payload": {"action": "close"}})
    assert serial_of(ack_frame(99, 1)) == 99
    assert serial_of(b"{json") is None and serial_of(b"\x01\x00") is None


def test_structured_logs_json_and_kv() -> None:
    for style in ("json", "kv"):
        configure_logging(style=style)  # type: ignore[arg-type]
        root = logging.getLogger("askug")
        stream = io.StringIO()
        root.handlers[0].stream = stream  # type: ignore[attr-defined]
        log_event(logging.getLogger("askug.ingest.test"), "committed", packets=3, why="a b")
        line = stream.getvalue().strip()
        if style == "json":
            body = json.loads(line)
            assert (body["event"], body["packets"], body["why"], body["level"]) == ("committed", 3, "a b", "info")
        else:
            assert "event=committed" in line and "packets=3" in line and 'why="a b"' in line
    logging.getLogger("askug").handlers.clear()
    logging.getLogger("askug").propagate = True


def test_parse_mqtt_url() -> None:
    assert parse_mqtt_url("mqtt://u:p%40ss@broker:1884") == ("broker", 1884, "u", "p@ss")
    assert parse_mqtt_url("mqtt://127.0.0.1") == ("127.0.0.1", 1883, None, None)
    with pytest.raises(IngestError, match="not like mqtt://"):
        parse_mqtt_url("http://x")


def test_broker_auth_files(tmp_path: Path) -> None:
    csv = tmp_path / "s.csv"
    csv.write_text("device_id,secret\nD0000001,aaa\nD0000002,bbb\n")
    secrets = read_secrets_csv(csv)
    auth = write_broker_auth(tmp_path / "out", secrets, ingest_user="ing", ingest_password="pw", devices=["D0000002"])
    acl = auth.acl_file.read_text()
    assert "user D0000002\ntopic write askug/up/D0000002\ntopic read askug/down/D0000002" in acl
    assert "D0000001" not in acl and "user ing\ntopic read askug/up/#\ntopic write askug/down/#" in acl
    passwords = auth.password_file.read_text()
    assert passwords.startswith("ing:$") and "bbb" not in passwords  # hashed by mosquitto_passwd
    with pytest.raises(IngestError, match="no secret"):
        write_broker_auth(tmp_path / "o2", secrets, ingest_user="ing", ingest_password="pw", devices=["D0000003"])
    bad = tmp_path / "bad.csv"
    bad.write_text("id,secret\n")
    with pytest.raises(IngestFileError, match="line 1"):
        read_secrets_csv(bad)
