"""MqttSink against a real Mosquitto: every alert arrives once, on its topic, as JSON."""

from __future__ import annotations

import datetime as dt
import json
import socket
import threading
import time
import uuid
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
import polars as pl
import pytest

from anomalies import MqttSink, SinkUnavailableError, ThresholdRule

pytestmark = pytest.mark.integration

T0 = dt.datetime(2026, 1, 5, tzinfo=dt.UTC)
H = dt.timedelta(hours=1)
OUT = "outlet_pressure_kpa"


def _alerts() -> pl.DataFrame:
    nodes = ["GDP-0003", "GDP-0004"]
    limits = pl.DataFrame({"node_id": nodes, "channel": OUT, "min_value": 2.8, "max_value": 3.2})
    devices = pl.DataFrame({"device_id": ["U3", "U4"], "kind": "gdp_unit", "node_id": nodes})
    values = [3.0, 2.7, 2.41, 2.6, 3.0, 3.3]
    readings = pl.concat(
        pl.DataFrame(
            {
                "device_id": dev,
                "channel": OUT,
                "ts": [T0 + i * H for i in range(len(values))],
                "value": values,
                "quality": "valid",
            }
        )
        for dev in ("U3", "U4")
    )
    return ThresholdRule(limits=limits).detect(readings, devices)


class Subscriber:
    """A paho subscriber collecting messages under one topic filter."""

    def __init__(self, url: str, topic_filter: str) -> None:
        parts = urlsplit(url)
        self.messages: list[mqtt.MQTTMessage] = []
        self._subscribed = threading.Event()
        self._lock = threading.Lock()
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=f"test-sub-{uuid.uuid4().hex[:8]}"
        )
        self.client.on_subscribe = lambda *_: self._subscribed.set()
        self.client.on_message = self._on_message
        self.client.on_connect = lambda c, *_: c.subscribe(topic_filter, qos=1)
        assert parts.hostname and parts.port
        self.client.connect(parts.hostname, parts.port)
        self.client.loop_start()
        assert self._subscribed.wait(10), "no SUBACK from the broker"

    def _on_message(self, _c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append(msg)

    def wait_for(self, n: int, timeout: float = 10.0) -> list[mqtt.MQTTMessage]:
        """Messages received once ``n`` have arrived (or ``timeout`` seconds have passed)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.messages) >= n:
                    break
            time.sleep(0.05)
        time.sleep(0.2)  # a duplicate delivery would show up now
        with self._lock:
            return list(self.messages)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_mqtt_sink_publishes_one_json_message_per_alert(mqtt_url: str) -> None:
    alerts = _alerts()
    assert alerts.height == 4
    prefix = f"test/{uuid.uuid4().hex[:8]}/alerts"  # a topic of this test only
    sub = Subscriber(mqtt_url, f"{prefix}/#")
    try:
        assert MqttSink(mqtt_url, topic_prefix=prefix).send(alerts) == 4
        messages = sub.wait_for(4)
    finally:
        sub.close()
    assert len(messages) == 4
    got: dict[str, list[dict[str, object]]] = {m.topic: [] for m in messages}
    for m in messages:
        got[m.topic].append(json.loads(m.payload))
        assert m.qos == 1
    assert set(got) == {f"{prefix}/GDP-0003/{OUT}", f"{prefix}/GDP-0004/{OUT}"}
    payloads = sorted(
        (p for ps in got.values() for p in ps), key=lambda p: (p["object_id"], p["ts_start"])
    )
    assert [p["alert_id"] for p in payloads] == alerts.sort("object_id", "ts_start")[
        "alert_id"
    ].to_list()
    first = payloads[0]
    assert first["ts_start"] == "2026-01-05T01:00:00Z" and first["ts_end"] == "2026-01-05T03:00:00Z"
    assert first["message"] == "GDP-0003 outlet_pressure_kpa 2.41 kPa below min 2.8 kPa for 3 h"
    assert (first["severity"], first["state"], first["value"], first["threshold"]) == (
        "critical",
        "open",
        2.41,
        2.8,
    )


def test_mqtt_sink_with_nothing_to_send_does_not_connect(mqtt_url: str) -> None:
    assert MqttSink(mqtt_url).send(_alerts().clear()) == 0


def test_mqtt_sink_wrong_port_on_a_live_host(mqtt_url: str) -> None:
    parts = urlsplit(mqtt_url)
    with socket.socket() as s:
        s.bind((parts.hostname or "127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(SinkUnavailableError, match="connecting failed"):
        MqttSink(f"mqtt://{parts.hostname}:{port}", timeout_s=2).send(_alerts())
