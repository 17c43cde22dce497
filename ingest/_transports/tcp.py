"""The TCP collection service (asyncio): identified sessions of length-prefixed frames.

Session protocol (see ``ingest/README.md``, "Transports"):

1. The unit connects and sends frames, each prefixed by its length (u32 big-endian).
2. The first frame is an **ident** frame (type 0x10, body = the unit's credential
   secret).  The server checks the credential (only its hash is stored); on failure it
   closes the session.  A first frame that does not decode, or names a unit that is not
   registered, is handed to landing (quarantined with its reason: truncated, bad_crc,
   unknown_device, …) before the session is closed.  A good ident is landed like any
   frame (its secret is not kept) and acknowledged.
3. Right after a good ident the server sends the unit's queued **downlink commands**
   (type 0x81) and marks them delivered; the unit confirms them later with a command-ack
   frame (type 0x11), which landing records.
4. The unit streams archive frames without waiting.  Whatever has arrived is handed to
   the landing worker as one job; after the commit the server sends one **ack** frame
   (type 0x80, body = the frame counter) per stored or duplicate frame.  Quarantined
   frames are not acknowledged.  A unit resends what was not acknowledged at its next
   session; resends are duplicates.

Limits: a session idle for ``idle_timeout_s`` is closed; a length above
``max_frame_bytes`` is refused (what arrived of that frame, up to the limit + 1 byte, is
quarantined as oversized and the session closed); a device sending more than
``frames_per_minute`` frames (token bucket shared by its sessions) has the excess dropped
unacknowledged and its session closed.  No input makes the service raise: every
handler catches, logs and closes that one session.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import logging
import struct
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, Future
from typing import Any, Final, Literal, cast

from ingest._transports._common import (
    LandingLike,
    LandingWorker,
    RateLimiter,
    TransportStats,
    ack_frame,
    command_frame,
    log_event,
    serial_of,
)
from ingest._wire import MAX_FRAME_BYTES, Frame, FrameError, Packet

__all__ = ["Authenticator", "TcpConfig", "TcpService", "Verdict", "authenticator", "command_parts"]

log = logging.getLogger("askug.ingest.tcp")
_LEN: Final = struct.Struct(">I")
#: Frames buffered per session before the server stops reading from that socket.
_HIGH_WATER: Final = 2_000

Verdict = Literal["ok", "reject", "quarantine"]
#: ``authenticate(raw ident bytes) -> (device_id, verdict, why)``; runs on the landing worker.
Authenticator = Callable[[bytes], tuple[str | None, Verdict, str]]


@dataclasses.dataclass(frozen=True, kw_only=True)
class TcpConfig:
    """Options of :class:`TcpService` (all keyword-only)."""

    host: str = "0.0.0.0"
    port: int = 5020
    idle_timeout_s: float = 60.0
    max_frame_bytes: int = MAX_FRAME_BYTES
    frames_per_minute: float = 600.0
    downlink: bool = True
    max_sessions: int = 20_000


def command_parts(command: Any) -> tuple[int, dict[str, Any]]:
    """``(command id, JSON-able dict)`` of a landing downlink command object."""
    cid = getattr(command, "command_id", None)
    if cid is None:
        cid = command.id
    body: dict[str, Any] = {}
    for name in ("kind", "command", "payload", "params", "parameters"):
        value = getattr(command, name, None)
        if value is not None:
            body[name] = value
    return int(cid), body


class TcpService:
    """Asyncio TCP server feeding the landing worker; start with :meth:`start` in a loop.

    Parameters
    ----------
    worker
        The shared :class:`LandingWorker` (its landings give ``pending_commands`` and
        ``mark_delivered``).
    authenticate
        Checks an ident frame's bytes: ``(device_id, ok, why)``; runs on the worker thread.
    config
        Limits and the address to listen on.
    """

    def __init__(
        self,
        worker: LandingWorker,
        authenticate: Authenticator,
        config: TcpConfig = TcpConfig(),
        *,
        auth_executor: Executor | None = None,
    ) -> None:
        self.worker = worker
        self.authenticate = authenticate
        #: where ident checks run: their own threads when the store's connections can be
        #: shared (PostgreSQL pool), so a session's credential look-up never holds up a
        #: landing round; else (DuckDB) between rounds on a writer thread
        self.auth_executor = auth_executor
        self.config = config
        self.stats: TransportStats = worker.stats
        self.limiter = RateLimiter(config.frames_per_minute)
        self.sessions: set[_Session] = set()
        self._server: asyncio.base_events.Server | None = None
        self.port: int = config.port

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _Session(self), self.config.host, self.config.port, reuse_address=True, backlog=1024
        )
        sock = self._server.sockets[0]
        self.port = int(sock.getsockname()[1])
        log_event(log, "tcp_listening", host=self.config.host, port=self.port)

    async def stop(self, *, timeout: float = 20.0) -> None:
        """Stop accepting, let every session commit and acknowledge what it has, close."""
        if self._server is not None:
            self._server.close()
        sessions = list(self.sessions)
        for s in sessions:
            s.drain_and_close()
        tasks = [s.task for s in sessions if s.task is not None]
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=timeout)
            for t in pending:
                t.cancel()
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5)
        log_event(log, "tcp_stopped", sessions=len(sessions))


class _Session(asyncio.Protocol):
    """One unit's connection: buffers frames from the socket, one task commits and acks."""

    def __init__(self, service: TcpService) -> None:
        self.service = service
        self.cfg = service.config
        self.transport: asyncio.Transport | None = None
        self.peer = "?"
        self.buf = bytearray()
        self.inbox: list[bytes] = []
        self.wakeup = asyncio.Event()
        self.eof = False
        self.closed = False
        self.draining = False
        self.paused = False
        self.oversize_target = 0  # >0: collecting an oversized frame up to this many bytes
        self.oversize_buf = bytearray()
        self.last_rx = 0.0
        self.task: asyncio.Task[None] | None = None
        self.device_id: str | None = None
        self.serial = 0

    # -- protocol callbacks (never raise) ---------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        loop = asyncio.get_running_loop()
        self.last_rx = loop.time()
        if len(self.service.sessions) >= self.cfg.max_sessions:
            log_event(log, "session_refused", level=logging.WARNING, peer=self.peer, why="too many sessions")
            self.transport.abort()
            self.closed = True
            return
        self.service.sessions.add(self)
        self.task = loop.create_task(self._run())

    def data_received(self, data: bytes) -> None:
        if self.closed or self.draining:
            return
        self.last_rx = asyncio.get_running_loop().time()
        if self.oversize_target:
            self._collect_oversized(data)
            return
        self.buf += data
        while len(self.buf) >= 4:
            (n,) = _LEN.unpack_from(self.buf)
            if n > self.cfg.max_frame_bytes:
                rest = bytes(self.buf[4:])
                self.buf.clear()
                self.oversize_target = self.cfg.max_frame_bytes + 1
                log_event(log, "frame_oversized", level=logging.WARNING, peer=self.peer, device=self.device_id, length=n)
                self._collect_oversized(rest)
                return
            if len(self.buf) < 4 + n:
                break
            self.inbox.append(bytes(self.buf[4 : 4 + n]))
            del self.buf[: 4 + n]
        if self.inbox:
            self.wakeup.set()
            if len(self.inbox) >= _HIGH_WATER and self.transport is not None and not self.paused:
                self.transport.pause_reading()
                self.paused = True

    def _collect_oversized(self, data: bytes) -> None:
        self.oversize_buf += data
        if len(self.oversize_buf) >= self.oversize_target:
            self._finish_oversized()

    def _finish_oversized(self) -> None:
        raw = bytes(self.oversize_buf[: self.oversize_target])
        self.oversize_buf.clear()
        self.oversize_target = 0
        self.inbox.append(raw)
        self.draining = True  # commit what we have (the oversized frame included), then close
        if self.transport is not None and not self.paused:
            self.transport.pause_reading()
            self.paused = True
        self.wakeup.set()

    def eof_received(self) -> bool:
        self.eof = True
        if self.oversize_target:
            self._finish_oversized()
        self.wakeup.set()
        return True  # keep the socket open for writing: the acks still have to go out

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.eof = True
        self.wakeup.set()

    def drain_and_close(self) -> None:
        """Graceful shutdown: read nothing more, commit and ack what is buffered, close."""
        self.draining = True
        if self.transport is not None and not self.paused and not self.closed:
            with contextlib.suppress(Exception):
                self.transport.pause_reading()
            self.paused = True
        self.wakeup.set()

    # -- the session task ---------------------------------------------------------------------
    def _write(self, data: bytes) -> None:
        if self.transport is not None and not self.closed and not self.transport.is_closing():
            self.transport.write(_LEN.pack(len(data)) + data)

    async def _next_frames(self) -> list[bytes] | None:
        """Frames that arrived, or None when the session is over (EOF, idle, shutdown)."""
        loop = asyncio.get_running_loop()
        while not self.inbox:
            if self.eof or self.closed or self.draining:
                return None
            self.wakeup.clear()
            left = self.cfg.idle_timeout_s - (loop.time() - self.last_rx)
            if left <= 0:
                log_event(log, "session_idle", peer=self.peer, device=self.device_id)
                return None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wakeup.wait(), left)
        frames, self.inbox = self.inbox, []
        if self.paused and not self.draining and self.transport is not None and not self.closed:
            self.transport.resume_reading()
            self.paused = False
        return frames

    async def _run(self) -> None:
        try:
            await self._session()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - one bad session never takes the service down
            log_event(log, "session_error", level=logging.ERROR, peer=self.peer, device=self.device_id, error=repr(exc)[:300])
        finally:
            await self._close()

    async def _close(self) -> None:
        # A frame cut off by the end of the connection is accounted (quarantined as truncated).
        if len(self.buf) > 4 and self.device_id is not None and not self.draining:
            cut = bytes(self.buf[4:])
            self.buf.clear()
            with contextlib.suppress(Exception):
                await asyncio.wrap_future(self.service.worker.submit([self._packet(cut)]))
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()
        self.service.sessions.discard(self)

    def _packet(self, raw: bytes) -> Packet:
        return Packet(raw=raw, transport="tcp", received_at=dt.datetime.now(dt.UTC), device_id=self.device_id)

    async def _session(self) -> None:
        worker = self.service.worker
        first = await self._next_frames()
        if not first:
            return
        ident = first[0]
        check = self.service.authenticate
        auth = self.service.auth_executor
        pending = auth.submit(check, ident) if auth is not None else worker.call(lambda: check(ident))
        device_id, verdict, why = await asyncio.wrap_future(pending)
        if verdict != "ok":
            self.service.stats.bump("rejected")
            log_event(log, "ident_rejected", level=logging.WARNING, peer=self.peer, device=device_id, why=why)
            if verdict == "quarantine":
                # landing quarantines it with its reason (truncated, bad_crc, unknown_device, …)
                pkt = Packet(raw=ident, transport="tcp", received_at=dt.datetime.now(dt.UTC))
                await asyncio.wrap_future(worker.submit([pkt]))
            return
        self.device_id = device_id
        self.serial = serial_of(ident) or 0
        log_event(log, "session_open", level=logging.DEBUG, peer=self.peer, device=device_id)
        if self.cfg.downlink:
            await self._send_commands()
        frames = first  # the ident is landed too (stored without its secret) and acknowledged
        while True:
            if frames and not await self._commit(frames):
                return
            more = await self._next_frames()
            if more is None:
                return
            frames = more

    async def _send_commands(self) -> None:
        worker = self.service.worker
        device = self.device_id
        assert device is not None
        commands: Sequence[Any] = await asyncio.wrap_future(
            worker.call_landing(lambda landing: landing.pending_commands(device))
        )
        if not commands:
            return
        now = dt.datetime.now(dt.UTC)
        sent: list[int] = []
        for cmd in commands:
            cid, body = command_parts(cmd)
            self._write(command_frame(self.serial, cid, body, now=now))
            sent.append(cid)

        def mark(landing: LandingLike) -> None:
            for cid in sent:
                landing.mark_delivered(cid, now)

        await asyncio.wrap_future(worker.call_landing(mark))
        self.service.stats.bump("commands_sent", len(sent))
        log_event(log, "commands_sent", device=device, ids=",".join(map(str, sent)))

    async def _commit(self, frames: list[bytes]) -> bool:
        """Submit frames, then ack the stored/duplicate ones; False ends the session."""
        assert self.device_id is not None
        allowed = len(frames)
        if not self.service.limiter.allow(self.device_id, len(frames)):
            allowed = 0
            while allowed < len(frames) and self.service.limiter.allow(self.device_id, 1):
                allowed += 1
            self.service.stats.bump("rate_limited", len(frames) - allowed)
            log_event(log, "rate_limited", level=logging.WARNING, device=self.device_id, dropped=len(frames) - allowed)
        packets = [self._packet(raw) for raw in frames[:allowed]]
        if packets:
            fut: Future[list[Any]] = self.service.worker.submit(packets)
            try:
                outcomes = await asyncio.wrap_future(fut)
            except Exception as exc:  # noqa: BLE001 - database down: no ack, the unit resends
                log_event(log, "commit_failed", level=logging.ERROR, device=self.device_id, error=repr(exc)[:300])
                return False
            now = dt.datetime.now(dt.UTC)
            acked = 0
            for o in outcomes:
                if o.status in ("stored", "duplicate") and o.counter is not None:
                    self._write(ack_frame(self.serial, int(o.counter), now=now))
                    acked += 1
            self.service.stats.bump("acked", acked)
        return allowed == len(frames)


def authenticator(
    decode: Callable[[bytes], Frame],
    verify: Callable[[str, bytes], bool],
    registered: Callable[[str], bool],
) -> Authenticator:
    """Build the ident check from ``registry.decode``, ``landing.verify`` and a registry lookup.

    Returns ``(device_id, verdict, why)``: ``ok``; ``quarantine`` when the ident did not
    decode or names an unregistered unit (landing then quarantines it with the reason
    and the packet is accounted); ``reject`` for a registered unit with a wrong secret or
    a first frame that is not an ident (nothing of it is stored).
    """

    def check(raw: bytes) -> tuple[str | None, Verdict, str]:
        try:
            frame = decode(raw)
        except FrameError as exc:
            return None, "quarantine", str(exc)
        if frame.kind != "ident":
            return frame.device_id, "reject", f"first frame is {frame.kind!r}, not ident"
        if verify(frame.device_id, frame.secret):
            return frame.device_id, "ok", "ok"
        if not registered(frame.device_id):
            return frame.device_id, "quarantine", "unknown device"
        return frame.device_id, "reject", "wrong secret"

    return check
