"""The MQTT collection service through a real Mosquitto (password file + per-device ACL)."""

from __future__ import annotations

import datetime as dt
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from ingest._device_profiles import ProfileRegistry
from ingest._send import FaultRates, Fleet, FleetSender
from ingest._stats import read_stats
from ingest._transports import IngestService, MqttConfig, ServiceConfig, write_broker_auth
from ingest._transports.service import open_service
from ingest._wire import Frame
from tests import _servers
from tests.integration._wire_fleet import check_ground_truth, small_fleet

pytestmark = pytest.mark.integration

SHIPPED_CONF = Path(__file__).parents[2] / "ingest" / "mosquitto" / "mosquitto.conf"


@pytest.fixture
def fleet_and_broker(pg_store: Any, tmp_path: Path) -> Iterator[tuple[Fleet, _servers.MosquittoServer]]:
    fleet = small_fleet(pg_store, tmp_path / "sim", meters=20, days=2, json_share=1.0)
    auth = write_broker_auth(tmp_path / "auth", {u.device_id: u.secret for u in fleet.units}, ingest_user="ingest", ingest_password="pw")
    broker = _servers.MosquittoServer(password_file=auth.password_file, acl_file=auth.acl_file, autosave_interval=1).start()
    try:
        yield fleet, broker
    finally:
        broker.stop()


def _service(store: Any, broker: _servers.MosquittoServer) -> IngestService:
    svc = open_service(store, ServiceConfig(mqtt=MqttConfig(url=f"mqtt://ingest:pw@127.0.0.1:{broker.port}", client_id="askug-ingest-test")))
    svc.start_thread()
    assert svc.mqtt is not None and svc.mqtt.wait_connected(10)
    return svc


def _publish(broker: _servers.MosquittoServer, user: str, password: str, topic: str, payloads: list[bytes]) -> list[bool]:
    """Publish as a unit; True per payload the broker acknowledged (PUBACK)."""
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"t-{user}-{time.monotonic_ns()}")
    c.username_pw_set(user, password)
    c.connect("127.0.0.1", broker.port)
    c.loop_start()
    try:
        infos = [c.publish(topic, p, qos=1) for p in payloads]
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not all(i.is_published() for i in infos):
            time.sleep(0.02)
        return [i.is_published() for i in infos]
    finally:
        c.disconnect()
        c.loop_stop()


def _wait(pred: Any, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.1)
    return False


def test_fleet_over_mqtt_with_acl_and_faults(pg_store: Any, fleet_and_broker: tuple[Fleet, _servers.MosquittoServer]) -> None:
    fleet, broker = fleet_and_broker
    assert any(u.profile == "mqtt-json" for u in fleet.units)  # the JSON unit rides along
    svc = _service(pg_store, broker)
    try:
        faults = FaultRates(resend=0.1, out_of_order=0.05, truncated=0.05, corrupted=0.05, replayed=0.05, unknown_device=0.05, clock_skew=0.05)
        sender = FleetSender(fleet, ProfileRegistry(), transport="mqtt", host="127.0.0.1", port=broker.port, faults=faults, concurrency=6, timeout_s=3, seed=2, mqtt_auth=True)
        report = sender.run()
    finally:
        svc.stop()
    verdict = check_ground_truth(pg_store, report)
    assert verdict.acked_readings > 500
    assert read_stats(pg_store).by_transport["mqtt"]["received"] >= len(report.packets) - 1


def test_acl_keeps_units_to_their_own_topics(pg_store: Any, fleet_and_broker: tuple[Fleet, _servers.MosquittoServer]) -> None:
    fleet, broker = fleet_and_broker
    a, b = fleet.units[0], fleet.units[1]
    reg = ProfileRegistry()
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    hour = now.replace(minute=0, second=0) - dt.timedelta(hours=1)
    frame = Frame(a.profile, a.device_id, 5, now, "archive", readings=(("volume_register_m3", hour, 1.0),))
    raw = reg.encode(frame)
    svc = _service(pg_store, broker)
    try:
        # unit b publishes unit a's frame on a's topic: the broker drops it (ACL)
        _publish(broker, b.device_id, b.secret, f"askug/up/{a.device_id}", [raw])
        # a wrong password is refused outright
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="intruder")
        c.username_pw_set(a.device_id, "wrong")
        rc: list[Any] = []
        c.on_connect = lambda *args: rc.append(args[3])
        c.connect("127.0.0.1", broker.port)
        c.loop_start()
        try:
            assert _wait(lambda: bool(rc), 5)
        finally:
            c.loop_stop()
        assert rc[0].is_failure
        # unit a on its own topic is stored
        assert _publish(broker, a.device_id, a.secret, f"askug/up/{a.device_id}", [raw]) == [True]
        assert _wait(lambda: read_stats(pg_store).received >= 1)
        time.sleep(0.5)
    finally:
        svc.stop()
    stats = read_stats(pg_store)
    assert (stats.received, stats.stored) == (1, 1)


def test_persistent_session_queues_while_the_service_is_down(pg_store: Any, fleet_and_broker: tuple[Fleet, _servers.MosquittoServer]) -> None:
    fleet, broker = fleet_and_broker
    unit = fleet.units[0]
    reg = ProfileRegistry()
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    hour = now.replace(minute=0, second=0) - dt.timedelta(hours=6)
    frames = [
        reg.encode(Frame(unit.profile, unit.device_id, 100 + i, now, "archive", readings=(("volume_register_m3", hour + dt.timedelta(hours=i), 10.0 + i),)))
        for i in range(5)
    ]
    svc = _service(pg_store, broker)
    svc.stop()  # graceful: the session stays at the broker
    assert _publish(broker, unit.device_id, unit.secret, f"askug/up/{unit.device_id}", frames) == [True] * 5
    time.sleep(2.5)  # let the broker save its database (autosave_interval 1 s) …
    broker.kill()  # … then crash it: the queued messages come back from persistence
    broker.start()
    svc = _service(pg_store, broker)
    try:
        assert _wait(lambda: read_stats(pg_store).stored >= 5, 15)
    finally:
        svc.stop()
    stats = read_stats(pg_store)
    assert (stats.received, stats.stored, stats.quarantined) == (5, 5, 0)


def test_service_reconnects_after_a_broker_crash(pg_store: Any, fleet_and_broker: tuple[Fleet, _servers.MosquittoServer]) -> None:
    fleet, broker = fleet_and_broker
    unit = fleet.units[0]
    reg = ProfileRegistry()
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    hour = now.replace(minute=0, second=0) - dt.timedelta(hours=2)
    raw = reg.encode(Frame(unit.profile, unit.device_id, 200, now, "archive", readings=(("volume_register_m3", hour, 5.0),)))
    svc = _service(pg_store, broker)
    try:
        time.sleep(2.5)  # the subscription is saved by the broker's autosave
        broker.kill()
        assert svc.mqtt is not None
        assert _wait(lambda: not svc.mqtt._connected.is_set(), 5)
        broker.start()
        assert svc.mqtt.wait_connected(15)
        assert _publish(broker, unit.device_id, unit.secret, f"askug/up/{unit.device_id}", [raw]) == [True]
        assert _wait(lambda: read_stats(pg_store).stored >= 1, 10)
    finally:
        svc.stop()


def test_shipped_mosquitto_conf_runs(tmp_path: Path) -> None:
    """The example configuration starts Mosquitto (paths and port swapped for the test's)."""
    auth = write_broker_auth(tmp_path, {"D0000001": "s1"}, ingest_user="askug-ingest", ingest_password="pw")
    port = _servers.free_port()
    text = SHIPPED_CONF.read_text()
    text = text.replace("listener 1883", f"listener {port} 127.0.0.1")
    text = text.replace("/etc/mosquitto/askug/passwords", str(auth.password_file)).replace("/etc/mosquitto/askug/acl", str(auth.acl_file))
    text = text.replace("/var/lib/mosquitto/", f"{tmp_path}/").replace("log_dest syslog", f"log_dest file {tmp_path}/m.log")
    assert "allow_anonymous false" in text and re.search(r"^persistence true$", text, re.MULTILINE)
    if subprocess.run(["id", "-u"], capture_output=True, text=True, check=False).stdout.strip() == "0":
        text += "user root\n"
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(text)
    proc = subprocess.Popen([_servers.MOSQUITTO_BIN, "-c", str(conf)], stderr=subprocess.PIPE)
    try:
        _servers.wait_for_port(port, what="Mosquitto (shipped conf)", log=tmp_path / "m.log", proc=proc)
        srv = _servers.MosquittoServer(port=port, root=tmp_path)
        assert _publish(srv, "D0000001", "s1", "askug/up/D0000001", [b"x"]) == [True]
    finally:
        proc.terminate()
        proc.wait(10)
        if proc.stderr is not None:
            proc.stderr.close()
