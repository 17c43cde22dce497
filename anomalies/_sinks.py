"""Where alerts go: the warehouse's ``alerts`` table and MQTT topics."""

from __future__ import annotations

import abc
import datetime as dt
import json
import threading
import uuid
from typing import Any
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as mqtt
import polars as pl
from paho.mqtt.enums import CallbackAPIVersion

from anomalies._base import check_frame
from anomalies.errors import InvalidParameterError, SinkError, SinkUnavailableError
from warehouse import Store
from warehouse._schemas import ALERTS


class AlertSink(abc.ABC):
    """Receives alerts (``alerts`` contract frames) and delivers them somewhere."""

    @abc.abstractmethod
    def send(self, alerts: pl.DataFrame) -> int:
        """Deliver ``alerts``; return how many were delivered (or newly stored)."""


class StoreSink(AlertSink):
    """Store alerts in the warehouse's ``alerts`` table.

    New ``alert_id`` values are inserted.  An alert already stored whose episode has
    grown (later ``ts_end``, worse ``value``, other severity or message) is updated in
    place and **keeps its lifecycle state** (acknowledged stays acknowledged);
    unchanged alerts are left alone, so re-sending is a no-op.

    Parameters
    ----------
    store
        An open, migrated store.
    """

    def __init__(self, store: Store) -> None:
        self.store = store

    def send(self, alerts: pl.DataFrame) -> int:
        """Insert new alerts and update grown episodes; return the number of rows stored or updated."""
        alerts = check_frame(alerts, ALERTS, "alerts").unique(
            subset=["alert_id"], keep="last", maintain_order=True
        )
        if alerts.height == 0:
            return 0
        ids = alerts.get_column("alert_id").to_list()
        stored = self.store.read("alerts", where={"alert_id": ids})
        fresh = alerts.join(stored.select("alert_id"), on="alert_id", how="anti")
        mutable = ["ts_end", "value", "threshold", "severity", "message"]
        merged = alerts.join(
            stored.select("alert_id", "state"), on="alert_id", how="inner", suffix="_stored"
        )
        changed = (
            merged.join(stored.select("alert_id", *mutable), on="alert_id", suffix="_old")
            .filter(pl.any_horizontal(pl.col(c).ne_missing(pl.col(f"{c}_old")) for c in mutable))
            .with_columns(pl.col("state_stored").alias("state"))
            .select(ALERTS.schema.names())
        )
        with self.store.transaction():
            n = self.store.write("alerts", fresh)
            if changed.height:
                self.store.replace(
                    "alerts", changed, where={"alert_id": changed.get_column("alert_id").to_list()}
                )
        return n + changed.height


class MqttSink(AlertSink):
    """Publish one JSON message per alert to an MQTT broker (QoS 1, waits for PUBACK).

    The topic is ``<topic_prefix>/<object_id>/<channel>`` (``/``, ``+`` and ``#`` in
    the ids are replaced by ``_``).  The payload is the alert's row as a JSON object,
    times in ISO 8601 UTC (``2026-01-05T03:00:00Z``).  Each :meth:`send` opens one
    connection, publishes, waits for every PUBACK and disconnects.

    Parameters
    ----------
    url
        ``mqtt://[user[:password]@]host[:port]`` (port 1883 by default) or
        ``mqtts://…`` (TLS with the system CAs, port 8883 by default).
    topic_prefix
        Topic root of the alerts.
    timeout_s
        Seconds to wait for the connection and for the PUBACKs.
    client_id
        MQTT client id (default: ``askug-alerts-<random>``).
    """

    def __init__(
        self,
        url: str,
        *,
        topic_prefix: str = "askug/alerts",
        timeout_s: float = 10.0,
        client_id: str | None = None,
    ) -> None:
        self.url = url
        self.topic_prefix = topic_prefix
        self.timeout_s = timeout_s
        self.client_id = client_id

    def _endpoint(self) -> tuple[str, int, bool, str | None, str | None]:
        parts = urlsplit(self.url)
        if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
            raise InvalidParameterError(
                f"MqttSink url: expected mqtt://host:port or mqtts://host:port, got {self.url!r}"
            )
        try:
            port = parts.port or (8883 if parts.scheme == "mqtts" else 1883)
        except ValueError as exc:
            raise InvalidParameterError(f"MqttSink url: bad port in {self.url!r}: {exc}") from None
        user = unquote(parts.username) if parts.username else None
        password = unquote(parts.password) if parts.password else None
        return parts.hostname, port, parts.scheme == "mqtts", user, password

    def topic(self, object_id: str, channel: str | None) -> str:
        """The topic an alert about ``object_id``/``channel`` is published on."""
        clean = str.maketrans({"/": "_", "+": "_", "#": "_"})
        return (
            f"{self.topic_prefix}/{object_id.translate(clean)}/{(channel or '-').translate(clean)}"
        )

    def send(self, alerts: pl.DataFrame) -> int:
        """Publish every alert and wait for the broker's PUBACKs; return the number published.

        Raises
        ------
        SinkUnavailableError
            The broker cannot be reached or refuses the connection.
        SinkError
            A PUBACK did not arrive within ``timeout_s``.
        """
        alerts = check_frame(alerts, ALERTS, "alerts")
        host, port, tls, user, password = self._endpoint()
        if alerts.height == 0:
            return 0
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.client_id or f"askug-alerts-{uuid.uuid4().hex[:12]}",
            protocol=mqtt.MQTTv311,
        )
        client.connect_timeout = self.timeout_s
        if tls:
            client.tls_set()
        if user is not None:
            client.username_pw_set(user, password)
        connected = threading.Event()
        outcome: dict[str, Any] = {}

        def on_connect(_c: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
            outcome["reason"] = reason
            connected.set()

        client.on_connect = on_connect
        where = f"{host}:{port}"
        try:
            client.connect(host, port, keepalive=max(int(self.timeout_s) * 2, 10))
        except OSError as exc:
            raise SinkUnavailableError(
                f"MqttSink: expected an MQTT broker at {where} ({self.url}), but connecting failed: "
                f"{exc}; start the broker or fix the URL"
            ) from exc
        client.loop_start()
        try:
            if not connected.wait(self.timeout_s):
                raise SinkUnavailableError(
                    f"MqttSink: connected to {where} but got no CONNACK within {self.timeout_s} s; "
                    f"is it an MQTT broker?"
                )
            reason = outcome["reason"]
            if reason.is_failure:
                raise SinkUnavailableError(
                    f"MqttSink: the broker at {where} refused the connection: {reason}; check the "
                    f"credentials in the URL and the broker's ACL"
                )
            pending = []
            for row in alerts.iter_rows(named=True):
                payload = json.dumps({k: _jsonable(v) for k, v in row.items()}, ensure_ascii=False)
                info = client.publish(self.topic(row["object_id"], row["channel"]), payload, qos=1)
                pending.append((row["alert_id"], info))
            for alert, info in pending:
                try:
                    info.wait_for_publish(self.timeout_s)
                except (RuntimeError, ValueError) as exc:
                    raise SinkError(
                        f"MqttSink: publishing alert {alert} to {where} failed: {exc}"
                    ) from exc
                if not info.is_published():
                    raise SinkError(
                        f"MqttSink: no PUBACK from {where} within {self.timeout_s} s for alert {alert}; "
                        f"the broker may be overloaded — retry, alerts are idempotent"
                    )
            return len(pending)
        finally:
            client.disconnect()
            client.loop_stop()


def _jsonable(v: Any) -> Any:
    if isinstance(v, dt.datetime):
        return v.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")
    return v
