"""Collection transports: MQTT (via a broker), TCP and UDP services feeding landing.

See ``ingest/README.md`` ("Transports") for the wire protocols.  The public names are
re-exported by :mod:`ingest`.
"""

from ingest._transports._common import (
    LandingWorker,
    RateLimiter,
    TransportStats,
    ack_frame,
    command_frame,
    configure_logging,
)
from ingest._transports.broker import BrokerAuth, read_secrets_csv, write_broker_auth
from ingest._transports.mqtt import MqttConfig, MqttService
from ingest._transports.service import IngestService, ServiceConfig
from ingest._transports.tcp import TcpConfig, TcpService, authenticator
from ingest._transports.udp import UdpConfig, UdpService

__all__ = [
    "BrokerAuth",
    "IngestService",
    "LandingWorker",
    "MqttConfig",
    "MqttService",
    "RateLimiter",
    "ServiceConfig",
    "TcpConfig",
    "TcpService",
    "TransportStats",
    "UdpConfig",
    "UdpService",
    "ack_frame",
    "authenticator",
    "command_frame",
    "configure_logging",
    "read_secrets_csv",
    "write_broker_auth",
]
