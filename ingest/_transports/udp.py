"""The UDP collection service (asyncio) for NB-IoT units: one frame per datagram.

Every datagram is one uplink frame (the binary envelope of ``ingest/_wire.py``; the
unit's identity comes from the frame itself).  Datagrams that arrive together are handed
to the landing worker as one job; after the commit the server sends an ack datagram
(type 0x80, body = frame counter) for every stored or duplicate frame to the address it
came from, followed by the unit's queued downlink commands (type 0x81) if any.  A unit
that got no ack resends; the resend is counted as a duplicate.  Quarantined datagrams are
not acknowledged.  A datagram longer than ``max_frame_bytes`` is still handed to landing,
which quarantines it as oversized.  A device (by the serial in the header) that sends
more than ``frames_per_minute`` datagrams has the excess dropped unacknowledged.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import logging
from typing import Any, cast

from ingest._transports._common import (
    LandingLike,
    LandingWorker,
    RateLimiter,
    TransportStats,
    ack_frame,
    command_frame,
    log_event,
    pending_for,
    serial_of,
)
from ingest._transports.tcp import command_parts
from ingest._wire import MAX_FRAME_BYTES, Packet

__all__ = ["UdpConfig", "UdpService"]

log = logging.getLogger("askug.ingest.udp")

Address = tuple[str, int]


@dataclasses.dataclass(frozen=True, kw_only=True)
class UdpConfig:
    """Options of :class:`UdpService` (all keyword-only)."""

    host: str = "0.0.0.0"
    port: int = 5021
    max_frame_bytes: int = MAX_FRAME_BYTES
    frames_per_minute: float = 600.0
    downlink: bool = True


class UdpService(asyncio.DatagramProtocol):
    """Asyncio UDP endpoint feeding the landing worker; :meth:`start` inside a running loop."""

    def __init__(self, worker: LandingWorker, config: UdpConfig = UdpConfig()) -> None:
        self.worker = worker
        self.config = config
        self.stats: TransportStats = worker.stats
        self.limiter = RateLimiter(config.frames_per_minute)
        self.transport: asyncio.DatagramTransport | None = None
        self.port = config.port
        self._pending: list[tuple[bytes, Address]] = []
        self._flush_scheduled = False
        self._inflight: set[asyncio.Task[None]] = set()
        self._stopping = False

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(lambda: self, local_addr=(self.config.host, self.config.port))
        self.transport = transport
        self.port = int(transport.get_extra_info("sockname")[1])
        log_event(log, "udp_listening", host=self.config.host, port=self.port)

    async def stop(self, *, timeout: float = 20.0) -> None:
        """Take no more datagrams, commit and acknowledge the received ones, close."""
        self._stopping = True
        self._flush()
        if self._inflight:
            await asyncio.wait(list(self._inflight), timeout=timeout)
        if self.transport is not None:
            self.transport.close()
        log_event(log, "udp_stopped")

    # -- protocol callbacks (never raise) ---------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if self._stopping:
            return
        try:
            serial = serial_of(data)
            key = f"serial:{serial}" if serial is not None else f"addr:{addr[0]}"
            if not self.limiter.allow(key):
                self.stats.bump("rate_limited")
                return
            self._pending.append((bytes(data), (str(addr[0]), int(addr[1]))))
            if not self._flush_scheduled:
                self._flush_scheduled = True
                asyncio.get_running_loop().call_soon(self._flush)
        except Exception as exc:  # noqa: BLE001 - no datagram takes the service down
            log_event(log, "datagram_error", level=logging.ERROR, error=repr(exc)[:300])

    def error_received(self, exc: Exception) -> None:
        log_event(log, "udp_error", level=logging.WARNING, error=repr(exc)[:300])

    # -- batching ---------------------------------------------------------------------------------
    def _flush(self) -> None:
        self._flush_scheduled = False
        if not self._pending:
            return
        batch, self._pending = self._pending, []
        task = asyncio.get_running_loop().create_task(self._commit(batch))
        self._inflight.add(task)
        task.add_done_callback(self._inflight.discard)

    async def _commit(self, batch: list[tuple[bytes, Address]]) -> None:
        now = dt.datetime.now(dt.UTC)
        packets = [Packet(raw=raw, transport="udp", received_at=now) for raw, _ in batch]
        try:
            outcomes = await asyncio.wrap_future(self.worker.submit(packets))
        except Exception as exc:  # noqa: BLE001 - database down: no ack, the units resend
            log_event(log, "commit_failed", level=logging.ERROR, datagrams=len(batch), error=repr(exc)[:300])
            return
        now = dt.datetime.now(dt.UTC)
        devices: dict[str, tuple[int, Address]] = {}
        acked = 0
        for (raw, addr), o in zip(batch, outcomes, strict=True):
            if o.status in ("stored", "duplicate") and o.counter is not None:
                serial = serial_of(raw) or 0
                self._send(ack_frame(serial, int(o.counter), now=now), addr)
                acked += 1
                if o.device_id:
                    devices[str(o.device_id)] = (serial, addr)
        self.stats.bump("acked", acked)
        if self.config.downlink and devices and not self._stopping:
            with contextlib.suppress(Exception):
                await self._send_commands(devices)

    async def _send_commands(self, devices: dict[str, tuple[int, Address]]) -> None:
        now = dt.datetime.now(dt.UTC)
        found = await asyncio.wrap_future(self.worker.call_landing(lambda landing: pending_for(landing, devices)))
        sent: list[int] = []
        for device, commands in found.items():
            serial, addr = devices[device]
            for cmd in commands:
                cid, body = command_parts(cmd)
                self._send(command_frame(serial, cid, body, now=now), addr)
                sent.append(cid)
        if sent:

            def mark(landing: LandingLike) -> None:
                for cid in sent:
                    landing.mark_delivered(cid, now)

            await asyncio.wrap_future(self.worker.call_landing(mark))
            self.stats.bump("commands_sent", len(sent))

    def _send(self, data: bytes, addr: Address) -> None:
        if self.transport is not None and not self.transport.is_closing():
            with contextlib.suppress(OSError):
                self.transport.sendto(data, addr)
