"""StoreSink, MqttSink errors and run_detection on an in-memory DuckDB store (no network)."""

from __future__ import annotations

import datetime as dt
import socket
from collections.abc import Iterator

import polars as pl
import pytest

from anomalies import (
    InvalidParameterError,
    MqttSink,
    SinkUnavailableError,
    StoreSink,
    ThresholdRule,
    run_detection,
)
from warehouse import Store, open_store

T0 = dt.datetime(2026, 1, 5, tzinfo=dt.UTC)
H = dt.timedelta(hours=1)
OUT = "outlet_pressure_kpa"


def _readings(values: list[float | None], start: dt.datetime = T0) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "device_id": "U-0003",
            "channel": OUT,
            "ts": [start + i * H for i in range(len(values))],
            "value": pl.Series(values, dtype=pl.Float64),
            "quality": "valid",
        }
    )


@pytest.fixture
def store() -> Iterator[Store]:
    with open_store(path=":memory:") as st:
        st.migrate()
        st.write(
            "companies",
            pl.DataFrame(
                {
                    "company_id": ["gc"],
                    "name": ["Gas Co"],
                    "time_zone": ["Europe/Moscow"],
                    "contract_hour": [10],
                }
            ),
        )
        st.write(
            "branches", pl.DataFrame({"branch_id": ["b1"], "company_id": ["gc"], "name": ["North"]})
        )
        st.write(
            "network_nodes",
            pl.DataFrame(
                {"node_id": ["GDP-0003"], "branch_id": ["b1"], "kind": ["gdp"], "name": ["GDP 3"]}
            ),
        )
        st.write(
            "devices",
            pl.DataFrame({"device_id": ["U-0003"], "kind": ["gdp_unit"], "node_id": ["GDP-0003"]}),
        )
        st.write(
            "gdp_channels",
            pl.DataFrame(
                {"node_id": ["GDP-0003"], "channel": [OUT], "min_value": [2.8], "max_value": [3.2]}
            ),
        )
        yield st


def test_run_detection_stores_alerts_once(store: Store) -> None:
    store.write("readings", _readings([3.0, 2.7, 2.41, 2.6, 3.0, 3.3]))
    alerts = run_detection(store)
    assert alerts["message"].to_list() == [
        "GDP-0003 outlet_pressure_kpa 2.41 kPa below min 2.8 kPa for 3 h",
        "GDP-0003 outlet_pressure_kpa 3.3 kPa above max 3.2 kPa for 1 h",
    ]
    assert store.count("alerts") == 2
    assert run_detection(store).equals(alerts)
    assert store.count("alerts") == 2
    assert store.read("alerts").sort("ts_start").equals(alerts)


def test_run_detection_time_window_and_no_sinks(store: Store) -> None:
    store.write("readings", _readings([3.0, 2.7, 2.41, 2.6, 3.0, 3.3]))
    alerts = run_detection(store, start=T0 + 4 * H, end=T0 + 10 * H, sinks=[])
    assert alerts["ts_start"].to_list() == [T0 + 5 * H]
    assert store.count("alerts") == 0


def test_store_sink_updates_a_growing_episode_and_keeps_its_state(store: Store) -> None:
    devices = store.read("devices")
    rule = ThresholdRule(limits=store.read("gdp_channels"))
    sink = StoreSink(store)
    first = rule.detect(_readings([3.0, 2.7, 2.6]), devices)
    assert sink.send(first) == 1
    assert sink.send(first) == 0
    # The dispatcher acknowledges it; then the episode goes on.
    acked = store.read("alerts").with_columns(pl.lit("acknowledged").alias("state"))
    store.replace("alerts", acked, where={"alert_id": acked["alert_id"].to_list()})
    grown = rule.detect(_readings([3.0, 2.7, 2.6, 2.5, 2.55]), devices)
    assert grown["alert_id"].to_list() == first["alert_id"].to_list()
    assert sink.send(grown) == 1
    row = store.read("alerts").row(0, named=True)
    assert row["state"] == "acknowledged"
    assert (row["ts_end"], row["value"]) == (T0 + 4 * H, 2.5)
    assert row["message"].endswith("2.5 kPa below min 2.8 kPa for 4 h")
    assert store.count("alerts") == 1


def test_mqtt_sink_rejects_bad_urls() -> None:
    for url in ("http://127.0.0.1:1883", "127.0.0.1:1883", "mqtt://127.0.0.1:99999"):
        with pytest.raises(InvalidParameterError, match="MqttSink url"):
            MqttSink(url).send(_alert_frame())


def test_mqtt_sink_unreachable_broker_is_a_clear_error() -> None:
    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(
        SinkUnavailableError, match=rf"MQTT broker at 127.0.0.1:{port}.*start the broker"
    ):
        MqttSink(f"mqtt://127.0.0.1:{port}", timeout_s=2).send(_alert_frame())


def test_mqtt_topic_is_sanitised() -> None:
    sink = MqttSink("mqtt://127.0.0.1:1883", topic_prefix="site/alerts")
    assert sink.topic("GDP/1+#", OUT) == f"site/alerts/GDP_1__/{OUT}"


def _alert_frame() -> pl.DataFrame:
    devices = pl.DataFrame({"device_id": ["U-0003"], "kind": ["gdp_unit"], "node_id": ["GDP-0003"]})
    limits = pl.DataFrame(
        {"node_id": ["GDP-0003"], "channel": [OUT], "min_value": [2.8], "max_value": [3.2]}
    )
    return ThresholdRule(limits=limits).detect(_readings([2.0]), devices)
