"""Run the collection services (MQTT, TCP, UDP, or all of them) as one process.

:class:`IngestService` wires one :class:`~ingest._transports._common.LandingWorker`
(its writer threads are the only ones that land batches: ``writers`` of them, 2 by
default on PostgreSQL, each handing its batches to a landing process of its own, see
:mod:`ingest._transports._writers`; 1 thread on DuckDB) to the transports asked for,
then serves until it is told to stop.  ``SIGTERM`` and ``SIGINT`` stop it gracefully: every transport
stops taking new input, what was received is committed and acknowledged, the MQTT
session is left in place at the broker (so nothing queued there is lost), and the
process exits 0.  A ``SIGKILL`` loses nothing acknowledged either: a unit is only
acknowledged after the commit, and whatever was not acknowledged is resent (TCP, UDP)
or redelivered by the broker (MQTT); the resends are counted as duplicates.

Logs are structured (one JSON object or ``key=value`` line per event, see
:func:`~ingest._transports._common.configure_logging`); every ``stats_every_s`` seconds
a ``stats`` event gives the process counters.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import signal
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from ingest._transports._common import LandingLike, LandingWorker, TransportStats, log_event
from ingest._transports.mqtt import MqttConfig, MqttService
from ingest._transports.tcp import Authenticator, TcpConfig, TcpService, authenticator
from ingest._transports.udp import UdpConfig, UdpService

__all__ = [
    "IngestService",
    "ServiceConfig",
    "landing_authenticator",
    "open_service",
    "resolve_writer_processes",
    "resolve_writers",
]

log = logging.getLogger("askug.ingest.service")


#: Landing writer threads of a service on PostgreSQL when ``ServiceConfig.writers`` is None.
DEFAULT_PG_WRITERS = 2
#: Most writer threads (the store's pool holds 8 connections; the others serve calls).
MAX_WRITERS = 6


@dataclasses.dataclass(frozen=True, kw_only=True)
class ServiceConfig:
    """Which transports to run (``None`` = off) and how the landing worker batches.

    ``writers`` is the number of landing writer threads (each with its own ``Landing``
    and connection); ``None`` means 2 on PostgreSQL and 1 on DuckDB, which has a single
    writer.  Two writers let one prepare a batch in Python while the other waits for
    PostgreSQL; more than the machine's cores buys nothing.  ``writer_processes`` runs
    each writer's landing in a child process of its own (see
    :mod:`ingest._transports._writers`); ``None`` means yes on PostgreSQL (the writers
    and the event loop then no longer share one interpreter lock), no on DuckDB, which
    only one process may write.  :func:`open_service` applies it.
    """

    mqtt: MqttConfig | None = None
    tcp: TcpConfig | None = None
    udp: UdpConfig | None = None
    max_batch: int = 20_000
    linger_s: float = 0.005
    stats_every_s: float = 30.0
    writers: int | None = None
    writer_processes: bool | None = None


class IngestService:
    """The transports asked for by ``config`` around one landing worker.

    Parameters
    ----------
    landing
        :class:`ingest.Landing` (or anything with its ``submit``, ``pending_commands``
        and ``mark_delivered``), or one per writer thread
        (:meth:`ingest.Landing.writers`); :func:`open_service` makes them from
        ``config.writers``.
    authenticate
        The TCP ident check (see :func:`ingest._transports.tcp.authenticator`); only
        needed with TCP.
    config
        What to run.

    Examples
    --------
    In a script (blocks until SIGTERM/SIGINT)::

        IngestService(landing, auth, ServiceConfig(tcp=TcpConfig(port=5020))).run()

    In a test (a background thread, stopped gracefully)::

        svc = IngestService(landing, auth, config).start_thread()
        ...  # svc.tcp.port, svc.udp.port
        svc.stop()
    """

    def __init__(
        self,
        landing: LandingLike | Sequence[LandingLike],
        authenticate: Authenticator | None = None,
        config: ServiceConfig = ServiceConfig(),
    ) -> None:
        if config.mqtt is None and config.tcp is None and config.udp is None:
            raise ValueError("ServiceConfig runs no transport; set mqtt, tcp and/or udp")
        if config.tcp is not None and authenticate is None:
            raise ValueError("the TCP transport needs an authenticate callable for ident frames")
        landings = list(landing) if isinstance(landing, Sequence) else [landing]
        if config.writers is not None and config.writers != len(landings):
            raise ValueError(
                f"ServiceConfig asks for {config.writers} writers but {len(landings)} landing(s) were "
                "given; pass one landing per writer (Landing.writers(n)) or use open_service"
            )
        self.config = config
        self.stats = TransportStats()
        self.worker = LandingWorker(landings, max_batch=config.max_batch, linger_s=config.linger_s, stats=self.stats)
        self.mqtt = MqttService(self.worker, config.mqtt) if config.mqtt is not None else None
        # ident checks on threads of their own when the store's pool can serve them
        # (PostgreSQL): a session's credential look-up then never waits for, or delays, a
        # landing round; DuckDB's one connection keeps them on the writer thread
        store = getattr(landings[0], "store", None)
        self._auth: ThreadPoolExecutor | None = None
        if config.tcp is not None and getattr(store, "backend", None) == "postgres":
            self._auth = ThreadPoolExecutor(max_workers=2, thread_name_prefix="askug-auth")
        self.tcp = (
            TcpService(self.worker, authenticate, config.tcp, auth_executor=self._auth)
            if config.tcp is not None and authenticate
            else None
        )
        self.udp = UdpService(self.worker, config.udp) if config.udp is not None else None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    # -- running ------------------------------------------------------------------------------
    def run(self, *, install_signals: bool = True, on_ready: Callable[[IngestService], None] | None = None) -> TransportStats:
        """Serve until SIGTERM/SIGINT (or :meth:`stop`); returns the process counters."""
        return asyncio.run(self._main(install_signals, on_ready))

    def start_thread(self, *, timeout: float = 15.0) -> IngestService:
        """Serve from a background thread (tests, embedding); returns once listening."""

        def target() -> None:
            try:
                self.run(install_signals=False)
            except BaseException as exc:  # noqa: BLE001 - reported by start_thread/stop
                self._error = exc
                self._ready.set()

        self._thread = threading.Thread(target=target, name="askug-ingest", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout) or self._error is not None:
            raise RuntimeError(f"ingest service did not start: {self._error!r}")
        return self

    def stop(self, *, timeout: float = 30.0) -> None:
        """Ask the service to stop gracefully and wait for it (thread mode)."""
        loop, ev = self._loop, self._stop
        if loop is not None and ev is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(ev.set)
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    async def _main(self, install_signals: bool, on_ready: Callable[[IngestService], None] | None) -> TransportStats:
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._stop = asyncio.Event()
        if install_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                with contextlib.suppress(NotImplementedError, RuntimeError):
                    loop.add_signal_handler(sig, self._on_signal, sig)
        self.worker.start()
        try:
            if self.tcp is not None:
                await self.tcp.start()
            if self.udp is not None:
                await self.udp.start()
            if self.mqtt is not None:
                self.mqtt.start()
            log_event(
                log,
                "service_ready",
                mqtt=self.config.mqtt.url.split("@")[-1] if self.config.mqtt else "off",
                tcp=self.tcp.port if self.tcp else "off",
                udp=self.udp.port if self.udp else "off",
                writers=self.worker.writers,
                writer_processes=[p for x in self.worker.landings if (p := getattr(x, "pid", None))] or "off",
                polars_threads=_polars_threads(),
            )
            self._ready.set()
            if on_ready is not None:
                on_ready(self)
            while not self._stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), self.config.stats_every_s)
                if not self._stop.is_set():
                    log_event(log, "stats", **self.stats.snapshot())
        finally:
            await self._shutdown()
        return self.stats

    def _on_signal(self, sig: int) -> None:
        log_event(log, "signal", name=signal.Signals(sig).name)
        if self._stop is not None:
            self._stop.set()

    async def _shutdown(self) -> None:
        log_event(log, "service_stopping")
        # 1. stop taking input and let each transport commit + ack what it holds
        if self.tcp is not None:
            await self.tcp.stop()
        if self.udp is not None:
            await self.udp.stop()
        if self.mqtt is not None:
            await asyncio.to_thread(self.mqtt.stop)
        # 2. flush the worker (anything still queued is committed), then end the
        #    writer processes, if the landings run in any
        await asyncio.to_thread(self.worker.stop)
        for landing in self.worker.landings:
            close = getattr(landing, "close", None)
            if close is not None:
                await asyncio.to_thread(close)
        if self._auth is not None:
            self._auth.shutdown(wait=False, cancel_futures=True)
        log_event(log, "service_stopped", **self.stats.snapshot())


def landing_authenticator(landing: Any, registry: Any) -> Authenticator:
    """The TCP ident check of a real :class:`ingest.Landing` and profile registry.

    It runs on whichever writer thread takes the call; it only borrows connections from
    the store's pool (never a writer's open transaction), so that is safe.
    """
    store = landing.store

    def registered(device_id: str) -> bool:
        rows = store.read("device_credentials", where={"device_id": [device_id]}, columns=["device_id"])
        return bool(rows.height)

    return authenticator(registry.decode, landing.verify, registered)


def open_service(
    store: Any,
    config: ServiceConfig,
    *,
    profile_dirs: Sequence[str | Path] = (),
    policy: Any = None,
) -> IngestService:
    """An :class:`IngestService` over ``store`` with the shipped + extra profile folders.

    The registry re-reads the folders while the service runs, so a profile file dropped
    into one of them is decoded without a restart.  ``config.writers`` landings (default
    2 on PostgreSQL, 1 on DuckDB) share the store's connection pool, the registry and one
    rate-limit book (:meth:`ingest.Landing.writers`).

    Raises
    ------
    IngestError
        ``config.writers`` is above 1 on a DuckDB store (single writer) or outside
        1–:data:`MAX_WRITERS`.
    """
    from ingest._device_profiles import ProfileRegistry
    from ingest._landing import EdgePolicy, Landing

    writers = resolve_writers(store, config.writers)
    processes = resolve_writer_processes(store, config.writer_processes)
    pol = policy if policy is not None else EdgePolicy()
    registry = ProfileRegistry(list(profile_dirs), max_frame_bytes=pol.max_frame_bytes)
    landings: list[Any] = Landing(store, registry, pol).writers(writers)
    auth = landing_authenticator(landings[0], registry) if config.tcp is not None else None
    if processes:
        landings = _writer_processes(store, landings, profile_dirs, pol)
    return IngestService(landings, auth, dataclasses.replace(config, writers=writers, writer_processes=processes))


def resolve_writer_processes(store: Any, processes: bool | None) -> bool:
    """Whether the landing writers run in processes of their own (see :class:`ServiceConfig`).

    Raises
    ------
    IngestError
        Writer processes asked for on a store no other process may write (DuckDB).
    """
    from ingest.errors import IngestError

    postgres = getattr(store, "backend", None) == "postgres"
    if processes is None:
        return postgres
    if processes and not postgres:
        raise IngestError(
            f"writer processes need a PostgreSQL store; the {getattr(store, 'backend', 'embedded')} store "
            "is written by this process only: use --writer-mode thread, or a PostgreSQL store (--dsn)"
        )
    return processes


def _writer_processes(store: Any, landings: Sequence[Any], profile_dirs: Sequence[str | Path], policy: Any) -> list[Any]:
    """One :class:`ProcessLanding` per writer, the children started side by side."""
    from ingest._transports._writers import LandingSpec, ProcessLanding

    dsn, variant = store.reopen_args()
    dirs = tuple(str(d) for d in profile_dirs)
    out = [ProcessLanding(x, LandingSpec(dsn, variant, dirs, policy, x.shard), start=False) for x in landings]
    try:
        for p in out:
            p.start()
        for p in out:
            p.wait_ready()
    except BaseException:
        for p in out:
            p.close(timeout=5)
        raise
    return out


def resolve_writers(store: Any, writers: int | None) -> int:
    """The number of landing writers for ``store``: ``writers``, or the store's default.

    Raises
    ------
    IngestError
        More than one writer on a single-writer store, or not 1–:data:`MAX_WRITERS`.
    """
    from ingest.errors import IngestError

    postgres = getattr(store, "backend", None) == "postgres"
    if writers is None:
        return DEFAULT_PG_WRITERS if postgres else 1
    if not 1 <= writers <= MAX_WRITERS:
        raise IngestError(f"--writers {writers}: give 1 to {MAX_WRITERS} landing writer threads (2 suit a 2-core server)")
    if writers > 1 and not postgres:
        raise IngestError(
            f"--writers {writers}: the {getattr(store, 'backend', 'embedded')} store has a single writer; "
            "use --writers 1, or a PostgreSQL store (--dsn) for parallel landing writers"
        )
    return writers


def _polars_threads() -> int:
    """Threads of polars' pool in this process (``askug ingest`` sets 1, see ``dashboards.cli``)."""
    import polars as pl

    return int(pl.thread_pool_size())
