"""Landing writers in processes of their own (PostgreSQL): :class:`ProcessLanding`.

A collection service has one event loop (sessions, acknowledgements) and ``writers``
landing writers.  As threads of one Python process they share its interpreter lock:
while one writer decodes a batch and builds its COPY payloads, the other writer and
the event loop wait for the lock, and a writer that has just committed waits for the
loop to acknowledge ~60 sessions before it can start its next round.  On 2 cores
that kept 1.6–1.7 of them busy.  :class:`ProcessLanding` runs a writer's
``Landing.submit`` in a child process instead (its own interpreter, store and
connection); the writer thread only hands the packets over a pipe and waits for the
outcomes with the lock released.  Measured with ``bench/ingest_throughput.py``: the
TCP service kept 1.85 instead of 1.62 cores busy and reached 0.54 × the COPY ceiling
instead of 0.46 × (runs of record; 0.57 against 0.46 in an interleaved A/B on a quiet
machine), see ``ingest/README.md``, "Writer processes".

Everything else a transport asks of a landing (ident checks, pending downlink
commands, deliveries) stays in the service process, on ``local``, a plain
:class:`ingest.Landing` on the service's store: those are short reads and writes
outside a batch.

Failure handling: a child that dies (killed, out of memory) fails the round it was
landing; the writer retries the round (``LandingWorker`` ``retries``) on a fresh child,
so nothing acknowledged is lost and nothing is stored twice (a batch that did commit
before the child died comes back as duplicates).  An exception inside the child's
``submit`` (the database is down) fails the round the same way, with the child's
message.  A child whose service process dies sees its pipe close and exits.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import signal
import threading
import traceback
from collections.abc import Sequence
from multiprocessing.connection import Connection
from typing import Any, Final

from ingest.errors import IngestError

__all__ = ["LandingSpec", "ProcessLanding", "WriterProcessError"]

#: Seconds a child may take to import landing and connect before start-up fails.
START_TIMEOUT_S: Final = 120.0


class WriterProcessError(IngestError):
    """A landing writer process could not start, died, or failed a round."""


@dataclasses.dataclass(frozen=True)
class LandingSpec:
    """What a child process needs to build its :class:`ingest.Landing`.

    ``dsn`` is the service store's connection string (it may hold a password: it is
    passed to the child over a pipe, never logged); ``profile_dirs`` are the extra
    profile folders (the child's registry re-reads them as the service's does).
    """

    dsn: str = dataclasses.field(repr=False)
    variant: str
    profile_dirs: tuple[str, ...]
    policy: Any  # ingest.EdgePolicy
    shard: int


def _child_main(conn: Connection, spec: LandingSpec) -> None:
    """A writer process: build the landing, then land each batch the pipe brings.

    It ignores SIGINT and SIGTERM: Ctrl+C in a terminal (or a stop signal sent to the
    whole process group) reaches it too, and the service, stopping gracefully, still
    needs it to land what is queued; the service ends it after that (``None`` on the
    pipe), and a service that is gone closes the pipe.
    """
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    try:
        from ingest._device_profiles import ProfileRegistry
        from ingest._landing import Landing
        from warehouse._postgres import PostgresStore

        store = PostgresStore(spec.dsn, variant=spec.variant, max_connections=2)  # type: ignore[arg-type]
        registry = ProfileRegistry(list(spec.profile_dirs), max_frame_bytes=spec.policy.max_frame_bytes)
        landing = Landing(store, registry, spec.policy, shard=spec.shard)
    except BaseException as exc:  # noqa: BLE001 - reported to the service, which fails to start
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
        return
    conn.send(("ready", os.getpid()))
    while True:
        try:
            packets = conn.recv()
        except (EOFError, OSError):
            break  # the service process is gone or closed the pipe
        if packets is None:
            break
        try:
            reply: tuple[str, Any] = ("ok", landing.submit(packets))
        except Exception as exc:  # noqa: BLE001 - the round fails in the service, which retries
            last = traceback.format_exception_only(type(exc), exc)[-1].strip()
            reply = ("error", last)
        try:
            conn.send(reply)
        except (BrokenPipeError, OSError):
            break
    store.close()


class ProcessLanding:
    """A landing whose ``submit`` runs in a child process; the rest runs on ``local``.

    Parameters
    ----------
    local
        An :class:`ingest.Landing` on the service's own store: pending downlink
        commands and deliveries use it (:func:`~ingest._transports.service.open_service`
        builds the TCP ident check on the first writer's ``local`` directly).
    spec
        How the child builds its own landing (see :class:`LandingSpec`).
    start
        Start the child now (default) and wait until it is connected; else at the
        first ``submit``.

    Raises
    ------
    WriterProcessError
        The child could not start (its message says why: e.g. the database refused
        the connection).
    """

    def __init__(self, local: Any, spec: LandingSpec, *, start: bool = True) -> None:
        self.local = local
        self.spec = spec
        self._proc: Any = None
        self._conn: Connection | None = None
        self._lock = threading.Lock()
        self._starts = 0
        if start:
            self.start()
            self.wait_ready()

    # -- what transports read ------------------------------------------------------------
    @property
    def store(self) -> Any:
        return self.local.store

    @property
    def shard(self) -> int:
        return self.spec.shard

    @property
    def restarts(self) -> int:
        """Children started after the first (each replaced one that died)."""
        return max(0, self._starts - 1)

    @property
    def pid(self) -> int | None:
        """The child's process id (None before it started)."""
        return None if self._proc is None else int(self._proc.pid)

    def pending_commands(self, device_id: str) -> list[Any]:
        return list(self.local.pending_commands(device_id))

    def mark_delivered(self, command_id: int, at: Any) -> None:
        self.local.mark_delivered(command_id, at)

    # -- the child -------------------------------------------------------------------------
    def start(self) -> None:
        """Spawn the child (a fresh interpreter: safe next to threads and polars' pool)."""
        ctx = multiprocessing.get_context("spawn")
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=_child_main, args=(child, self.spec), name=f"askug-landing-shard{self.spec.shard}", daemon=True)
        proc.start()
        child.close()
        self._proc, self._conn = proc, parent
        self._starts += 1

    def wait_ready(self, timeout: float = START_TIMEOUT_S) -> None:
        """Wait until the child has connected to the store.

        Raises
        ------
        WriterProcessError
            It reported an error, exited, or was not ready within ``timeout`` seconds.
        """
        conn = self._conn
        assert conn is not None, "start() first"
        if not conn.poll(timeout):
            self._kill()
            raise WriterProcessError(f"landing writer process did not start within {timeout:.0f} s")
        try:
            kind, value = conn.recv()
        except (EOFError, OSError) as exc:
            code = self._kill()
            raise WriterProcessError(f"landing writer process exited while starting (exit code {code})") from exc
        if kind != "ready":
            self._kill()
            raise WriterProcessError(f"landing writer process could not start: {value}")

    def submit(self, packets: Sequence[Any]) -> list[Any]:
        """Land ``packets`` in the child; one outcome each, in order.

        Raises
        ------
        WriterProcessError
            The child failed the batch (its message) or died; a dead child is replaced
            at the next call, so the worker's retry lands the round on a fresh one.
        """
        with self._lock:
            if self._conn is None or self._proc is None or not self._proc.is_alive():
                self._kill()  # a child that died between batches (None: not started or already gone)
                self.start()
                self.wait_ready()
            conn = self._conn
            assert conn is not None
            try:
                conn.send(list(packets))
                kind, value = conn.recv()
            except (EOFError, OSError) as exc:
                code = self._kill()
                raise WriterProcessError(
                    f"landing writer process (shard {self.spec.shard}) died during a batch (exit code {code}); "
                    "the batch is retried on a new one"
                ) from exc
        if kind != "ok":
            raise WriterProcessError(f"landing writer process failed the batch: {value}")
        return list(value)

    def close(self, timeout: float = 30.0) -> None:
        """Let the child finish and exit (after the worker has flushed its rounds)."""
        with self._lock:
            conn, proc = self._conn, self._proc
            if conn is not None:
                try:
                    conn.send(None)
                except OSError:
                    pass
            if proc is not None:
                proc.join(timeout)
            self._kill()

    def _kill(self) -> int | None:
        """End the child if it still runs; its exit code."""
        proc, conn = self._proc, self._conn
        self._proc = self._conn = None
        if conn is not None:
            conn.close()
        if proc is None:
            return None
        if proc.is_alive():
            proc.kill()
        proc.join(10)
        code = proc.exitcode
        proc.close()
        return None if code is None else int(code)
