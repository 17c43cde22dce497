"""The MQTT collection service: a persistent QoS 1 subscriber that acks after the commit.

* Uplink: units publish frames (binary envelope or JSON, per their profile) to
  ``askug/up/<device_id>`` with QoS 1.  The broker's ACL lets a unit publish only to its
  own topic, so the topic is the unit's identity (``Packet.device_id``).
* The service connects with MQTT 5, a fixed client id, ``clean_start=False`` and a long
  session expiry: the broker keeps the subscription and queues messages while the
  service is down or restarting.  ``manual_ack=True``: a message is acknowledged
  (PUBACK) only after the landing worker committed it.  Until then the broker holds it
  and redelivers it after a reconnect; a redelivered message that was already committed
  is counted as a duplicate.  ``Receive Maximum`` lets many unacknowledged messages be
  in flight, so one commit covers thousands of messages.
* After each commit the service publishes an ack frame (type 0x80, body = the frame
  counter) to ``askug/down/<device_id>`` for every stored or duplicate frame, then the
  unit's queued downlink commands (type 0x81, QoS 1) to the same topic.
* The client reconnects by itself when the broker goes away (backoff up to
  ``reconnect_max_s``) and subscribes again on every connect.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import queue
import threading
import time
import urllib.parse
from collections.abc import Sequence
from concurrent.futures import Future
from typing import Any, Final

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from ingest._transports._common import (
    LandingLike,
    LandingWorker,
    TransportStats,
    ack_frame,
    command_frame,
    log_event,
    pending_for,
    serial_of,
)
from ingest._transports.tcp import command_parts
from ingest._wire import Packet
from ingest.errors import IngestError

__all__ = ["DOWNLINK_PREFIX", "UPLINK_PREFIX", "MqttConfig", "MqttService", "parse_mqtt_url"]

log = logging.getLogger("askug.ingest.mqtt")
UPLINK_PREFIX: Final = "askug/up/"
DOWNLINK_PREFIX: Final = "askug/down/"


@dataclasses.dataclass(frozen=True, kw_only=True)
class MqttConfig:
    """Options of :class:`MqttService` (all keyword-only).

    ``url`` is ``mqtt://[user:password@]host[:port]``; ``client_id`` must stay the same
    across restarts (it names the persistent session at the broker).
    """

    url: str = "mqtt://127.0.0.1:1883"
    client_id: str = "askug-ingest"
    topic: str = UPLINK_PREFIX + "+"
    receive_maximum: int = 20_000
    session_expiry_s: int = 7 * 24 * 3600
    max_batch: int = 20_000
    ack_qos: int = 0
    downlink: bool = True
    reconnect_max_s: float = 5.0
    keepalive_s: int = 30


def parse_mqtt_url(url: str) -> tuple[str, int, str | None, str | None]:
    """``(host, port, username, password)`` of ``mqtt://[user:password@]host[:port]``."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("mqtt", "tcp") or not parts.hostname:
        raise IngestError(f"MQTT URL {url!r} is not like mqtt://user:password@host:1883; fix the --mqtt/--to value")
    user = urllib.parse.unquote(parts.username) if parts.username else None
    password = urllib.parse.unquote(parts.password) if parts.password else None
    try:
        port = parts.port or 1883
    except ValueError:
        raise IngestError(f"MQTT URL {url!r} has a bad port; use e.g. mqtt://127.0.0.1:1883") from None
    return parts.hostname, port, user, password


@dataclasses.dataclass(slots=True)
class _Msg:
    mid: int
    qos: int
    generation: int
    device_id: str | None
    raw: bytes


class MqttService:
    """Persistent-session subscriber feeding the landing worker (threads: paho, pump, acker)."""

    def __init__(self, worker: LandingWorker, config: MqttConfig = MqttConfig()) -> None:
        self.worker = worker
        self.config = config
        self.stats: TransportStats = worker.stats
        host, port, user, password = parse_mqtt_url(config.url)
        self.host, self.port = host, port
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=config.client_id,
            protocol=mqtt.MQTTv5,
            manual_ack=True,
        )
        if user is not None:
            self.client.username_pw_set(user, password)
        self.client.reconnect_delay_set(min_delay=1, max_delay=max(1, int(config.reconnect_max_s)))
        self.client.max_inflight_messages_set(1000)
        self.client.max_queued_messages_set(0)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self._lock = threading.Condition()
        self._buffer: list[_Msg] = []
        self._generation = 0
        self._connected = threading.Event()
        self._stopping = threading.Event()
        self._fifo: queue.SimpleQueue[tuple[list[_Msg], Future[list[Any]]] | None] = queue.SimpleQueue()
        self._pump: threading.Thread | None = None
        self._acker: threading.Thread | None = None
        self.connects = 0

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self) -> MqttService:
        """Connect (in the background: a broker that is not up yet is retried) and serve."""
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = self.config.session_expiry_s
        props.ReceiveMaximum = max(1, min(self.config.receive_maximum, 65535))
        self.client.connect_async(
            self.host, self.port, keepalive=self.config.keepalive_s, clean_start=False, properties=props
        )
        self.client.loop_start()
        self._pump = threading.Thread(target=self._pump_loop, name="askug-mqtt-pump", daemon=True)
        self._acker = threading.Thread(target=self._ack_loop, name="askug-mqtt-ack", daemon=True)
        self._pump.start()
        self._acker.start()
        log_event(log, "mqtt_starting", host=self.host, port=self.port, client_id=self.config.client_id)
        return self

    def wait_connected(self, timeout: float = 10.0) -> bool:
        return self._connected.wait(timeout)

    def stop(self, *, timeout: float = 20.0) -> None:
        """Take no new messages, commit and ack the received ones, disconnect (session kept)."""
        self._stopping.set()
        with self._lock:
            self._lock.notify_all()
        if self._pump is not None:
            self._pump.join(timeout)
        self._fifo.put(None)
        if self._acker is not None:
            self._acker.join(timeout)
        # give paho a moment to write the last PUBACKs before the DISCONNECT
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline and self.client.want_write():
            time.sleep(0.01)
        self.client.disconnect()
        self.client.loop_stop()
        log_event(log, "mqtt_stopped", **self.stats.snapshot())

    # -- paho callbacks (network thread; never raise) ---------------------------------------------
    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        if getattr(reason, "is_failure", False):
            log_event(log, "mqtt_connect_failed", level=logging.ERROR, reason=str(reason))
            return
        with self._lock:
            self._generation += 1
            self.connects += 1
        # ready (``wait_connected``) once the broker confirmed the subscription
        client.subscribe(self.config.topic, qos=1)
        log_event(
            log,
            "mqtt_connected",
            session_present=bool(getattr(flags, "session_present", False)),
            generation=self._generation,
        )

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int, reasons: Any, properties: Any) -> None:
        if any(getattr(r, "is_failure", False) for r in reasons or ()):
            log_event(log, "mqtt_subscribe_refused", level=logging.ERROR, topic=self.config.topic, reasons=str(reasons))
            return
        self._connected.set()
        log_event(log, "mqtt_subscribed", topic=self.config.topic)

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        with self._lock:
            self._generation += 1  # acks of messages received on the old connection are void
        self._connected.clear()
        if not self._stopping.is_set():
            log_event(log, "mqtt_disconnected", level=logging.WARNING, reason=str(reason))

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        try:
            if self._stopping.is_set():
                return  # not acknowledged: the broker redelivers it to the next session
            topic = message.topic
            device = topic[len(UPLINK_PREFIX) :] if topic.startswith(UPLINK_PREFIX) else None
            msg = _Msg(message.mid, message.qos, self._generation, device or None, bytes(message.payload))
            with self._lock:
                self._buffer.append(msg)
                if len(self._buffer) == 1:
                    self._lock.notify()
        except Exception as exc:  # noqa: BLE001 - never let a message kill the network thread
            log_event(log, "message_error", level=logging.ERROR, error=repr(exc)[:300])

    # -- pump: buffer -> landing worker -------------------------------------------------------------
    def _pump_loop(self) -> None:
        while True:
            with self._lock:
                while not self._buffer and not self._stopping.is_set():
                    self._lock.wait(0.5)
                batch = self._buffer[: self.config.max_batch]
                del self._buffer[: len(batch)]
            if not batch:
                if self._stopping.is_set():
                    return
                continue
            received = dt.datetime.now(dt.UTC)
            packets = [Packet(raw=m.raw, transport="mqtt", received_at=received, device_id=m.device_id) for m in batch]
            self._fifo.put((batch, self.worker.submit(packets)))
            if self._stopping.is_set():
                with self._lock:
                    if not self._buffer:
                        return

    # -- acker: commit outcomes -> PUBACK + ack frames + downlink, in order -------------------------
    def _ack_loop(self) -> None:
        while True:
            item = self._fifo.get()
            if item is None:
                return
            batch, fut = item
            try:
                outcomes = fut.result()
            except Exception as exc:  # noqa: BLE001 - not committed: no PUBACK; reconnect to get them again
                log_event(log, "commit_failed", level=logging.ERROR, messages=len(batch), error=repr(exc)[:300])
                self._force_redelivery()
                continue
            try:
                self._acknowledge(batch, outcomes)
            except Exception as exc:  # noqa: BLE001
                log_event(log, "ack_error", level=logging.ERROR, error=repr(exc)[:300])

    def _force_redelivery(self) -> None:
        # MQTT redelivers unacknowledged QoS 1 messages only on a new connection.
        if not self._stopping.is_set():
            try:
                self.client.reconnect()
            except Exception as exc:  # noqa: BLE001 - the network loop keeps retrying anyway
                log_event(log, "reconnect_failed", level=logging.WARNING, error=repr(exc)[:200])

    def _acknowledge(self, batch: Sequence[_Msg], outcomes: Sequence[Any]) -> None:
        with self._lock:
            generation = self._generation
        live = self._connected.is_set()
        acked = 0
        now = dt.datetime.now(dt.UTC)
        devices: dict[str, int] = {}
        for m, o in zip(batch, outcomes, strict=True):
            if live and m.generation == generation:
                self.client.ack(m.mid, m.qos)
            if o.status in ("stored", "duplicate") and o.counter is not None and o.device_id:
                device = str(o.device_id)
                serial = serial_of(m.raw) or 0
                self.client.publish(DOWNLINK_PREFIX + device, ack_frame(serial, int(o.counter), now=now), qos=self.config.ack_qos)
                acked += 1
                devices[device] = serial
        self.stats.bump("acked", acked)
        if self.config.downlink and devices:
            self._send_commands(devices)

    def _send_commands(self, devices: dict[str, int]) -> None:
        found = self.worker.call_landing(lambda landing: pending_for(landing, devices)).result()
        if not found:
            return
        now = dt.datetime.now(dt.UTC)
        sent: list[int] = []
        for device, commands in found.items():
            for cmd in commands:
                cid, body = command_parts(cmd)
                self.client.publish(DOWNLINK_PREFIX + device, command_frame(devices[device], cid, body, now=now), qos=1)
                sent.append(cid)

        def mark(landing: LandingLike) -> None:
            for cid in sent:
                landing.mark_delivered(cid, now)

        self.worker.call_landing(mark).result()
        self.stats.bump("commands_sent", len(sent))
        log_event(log, "commands_sent", devices=len(found), commands=len(sent))

