"""Hermetic tests of parallel landing writers: the multi-writer ``LandingWorker`` (with a
fake landing), the shared rate-limit book and ``Landing.writers`` (on the embedded store)."""

from __future__ import annotations

import datetime as dt
import itertools
import threading
import time
from collections.abc import Sequence
from typing import Any

import pytest

from ingest._landing import EdgePolicy, Landing, RateBook
from ingest._transports._common import LandingWorker, WorkerStopped
from ingest._transports.service import IngestService, ServiceConfig, resolve_writers
from ingest._transports.udp import UdpConfig
from ingest._wire import Packet, Reason
from ingest.errors import IngestError
from tests.unit.ingest.test_landing import NOW, JsonRegistry, packet, store  # noqa: F401 - fixture
from tests.unit.ingest.test_transport_common import _Outcome
from warehouse import Store


class _Landing:
    """Echoes each packet's first byte as its outcome's counter; records who ran it."""

    busy = 0
    most_busy = 0
    lock = threading.Lock()

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.threads: set[str] = set()
        self.batches: list[int] = []

    def submit(self, packets: Sequence[Packet]) -> list[_Outcome]:
        self.threads.add(threading.current_thread().name)
        cls = _Landing  # class-wide counters, also for subclasses
        with cls.lock:
            cls.busy += 1
            cls.most_busy = max(cls.most_busy, cls.busy)
        try:
            time.sleep(self.delay)
        finally:
            with cls.lock:
                cls.busy -= 1
        self.batches.append(len(packets))
        return [_Outcome("stored", "D1", int.from_bytes(p.raw, "big"), None, 1) for p in packets]

    def pending_commands(self, device_id: str) -> list[Any]:
        return []

    def mark_delivered(self, command_id: int, at: dt.datetime) -> None:
        return None


def _job(first: int, n: int) -> list[Packet]:
    now = dt.datetime.now(dt.UTC)
    return [Packet(raw=(first + i).to_bytes(4, "big"), transport="udp", received_at=now) for i in range(n)]


@pytest.fixture(autouse=True)
def _reset_busy() -> None:
    _Landing.busy = _Landing.most_busy = 0


def test_each_job_gets_its_own_outcomes_in_order_from_either_writer() -> None:
    landings = [_Landing(delay=0.02), _Landing(delay=0.02)]
    worker = LandingWorker(landings, max_batch=6, linger_s=0.002).start()
    try:
        assert worker.writers == 2
        jobs = [_job(1000 * k, 1 + k % 5) for k in range(60)]
        futures = [worker.submit(j) for j in jobs]
        results = [f.result(20) for f in futures]
    finally:
        worker.stop()
    for job, outcomes in zip(jobs, results, strict=True):
        assert [o.counter for o in outcomes] == [int.from_bytes(p.raw, "big") for p in job]
    assert sum(sum(x.batches) for x in landings) == sum(len(j) for j in jobs)
    # both writers worked, each only ever on its own landing, and at the same time
    assert all(x.batches for x in landings)
    assert landings[0].threads == {"askug-landing-0"} and landings[1].threads == {"askug-landing-1"}
    assert _Landing.most_busy == 2
    assert worker.stats.snapshot()["stored"] == sum(len(j) for j in jobs)


def test_two_writers_overlap_slow_rounds() -> None:
    """Rounds of 1 job that each wait 50 ms take about half as long on two writers."""
    elapsed = {}
    for writers in (1, 2):
        worker = LandingWorker([_Landing(delay=0.05) for _ in range(writers)], max_batch=1, linger_s=0).start()
        try:
            t = time.perf_counter()
            for f in [worker.submit(_job(k, 1)) for k in range(16)]:
                f.result(20)
            elapsed[writers] = time.perf_counter() - t
        finally:
            worker.stop()
    assert elapsed[1] >= 16 * 0.05
    assert elapsed[2] < 0.75 * elapsed[1]


def test_rounds_of_two_writers_are_staggered_under_a_trickle() -> None:
    """A free writer does not grab each job as it comes while the other commits: rounds
    start about half a round apart and take many jobs each, and still overlap."""
    starts: list[float] = []

    class _Timed(_Landing):
        def submit(self, packets: Sequence[Packet]) -> list[_Outcome]:
            starts.append(time.monotonic())
            return super().submit(packets)

    worker = LandingWorker([_Timed(delay=0.2), _Timed(delay=0.2)], linger_s=0.005, max_linger_s=0.5).start()
    futures = []
    try:
        t_end = time.monotonic() + 1.6
        k = 0
        while time.monotonic() < t_end:  # one single-packet job every 5 ms
            futures.append(worker.submit(_job(k, 1)))
            k += 1
            time.sleep(0.005)
        for f in futures:
            f.result(10)
    finally:
        worker.stop()
    gaps = [b - a for a, b in itertools.pairwise(starts)][3:]  # after the average settled
    assert gaps and min(gaps) > 0.06, gaps
    assert len(starts) <= 20 < len(futures) / 5
    assert _Landing.most_busy == 2


def test_a_burst_is_split_between_idle_writers() -> None:
    """Jobs that arrive at once (every TCP session answering the last round's acks) land
    on both idle writers in parallel, not in one round while the other idles."""
    landings = [_Landing(delay=0.2), _Landing(delay=0.2)]
    worker = LandingWorker(landings, linger_s=0.02).start()
    try:
        futures = [worker.submit(_job(10 * k, 2)) for k in range(40)]
        for f in futures:
            f.result(10)
    finally:
        worker.stop()
    assert [x.batches for x in landings] == [[40], [40]]
    assert _Landing.most_busy == 2


def test_stop_flushes_every_queued_job_on_all_writers() -> None:
    landings = [_Landing(delay=0.01), _Landing(delay=0.01)]
    worker = LandingWorker(landings, max_batch=4).start()
    futures = [worker.submit(_job(10 * k, 2)) for k in range(40)]
    worker.stop()
    assert all(f.done() and len(f.result()) == 2 for f in futures)
    assert sum(sum(x.batches) for x in landings) == 80
    late = worker.submit(_job(0, 1))  # after stop: refused, not silently dropped
    with pytest.raises(WorkerStopped):
        late.result(1)


def test_calls_run_on_a_writer_with_that_writers_landing() -> None:
    landings = [_Landing(delay=0.01), _Landing(delay=0.01)]
    worker = LandingWorker(landings).start()
    try:
        # keep both writers busy so the calls are spread between rounds of either
        subs = [worker.submit(_job(k, 1)) for k in range(20)]
        calls = [worker.call_landing(lambda landing: (landing, threading.current_thread().name)) for _ in range(20)]
        for sub in subs:
            sub.result(10)
        for call in calls:
            landing, thread = call.result(10)
            assert thread == f"askug-landing-{[id(x) for x in landings].index(id(landing))}"
        assert worker.call(lambda: 42).result(5) == 42
        with pytest.raises(ZeroDivisionError):
            worker.call_landing(lambda landing: 1 / 0).result(5)
    finally:
        worker.stop()


def test_a_single_landing_still_means_one_writer() -> None:
    landing = _Landing()
    worker = LandingWorker(landing).start()
    try:
        assert worker.writers == 1 and worker.landing is landing
        assert len(worker.submit(_job(1, 3)).result(5)) == 3
    finally:
        worker.stop()
    assert landing.threads == {"askug-landing"}
    with pytest.raises(ValueError, match="at least one landing"):
        LandingWorker([])


def test_service_checks_writers_against_the_landings() -> None:
    config = ServiceConfig(udp=UdpConfig(host="127.0.0.1", port=0), writers=2)
    with pytest.raises(ValueError, match="2 writers but 1 landing"):
        IngestService(_Landing(), None, config)
    svc = IngestService([_Landing(), _Landing()], None, config)
    assert svc.worker.writers == 2


# --- the shared rate-limit book ----------------------------------------------------------------
def test_rate_book_counts_reserves_and_releases() -> None:
    book = RateBook()
    book.reserve({"D1": [10.0, 20.0, 30.0], "D2": [10.0]})
    assert book.count("D1", 30.0) == 3 and book.count("D1", 75.0) == 2  # 10 s is over a minute old
    assert book.count("D2", 30.0) == 1 and book.count("D3", 30.0) == 0
    book.release({"D1": [20.0], "D2": [10.0]})
    assert book.count("D1", 30.0) == 2 and book.count("D2", 30.0) == 0
    book.reserve({"D1": [200.0]})  # forgets what is a minute older than the newest
    assert book.count("D1", 200.0) == 1


def test_rate_book_counts_frames_received_after_the_one_being_landed() -> None:
    """A frame that lands after frames received later than it (a retried round) still
    counts them: the most frames in any minute that contains it, not only the minute
    up to it (the old count let 18 frames of a unit through a limit of 12)."""
    book = RateBook()
    book.reserve({"D1": [30.0, 40.0, 50.0]})
    assert book.count("D1", 0.0) == 3  # the minute (-10, 50] holds them all
    assert book.count("D1", -20.0) == 1  # (-30, 30] is the fullest minute around -20
    assert book.count("D1", 100.0) == 1  # (40, 100] holds 50 only; 40 is over a minute before 100
    assert book.count("D1", 0.0, extra=[5.0, 70.0]) == 4  # the batch's own times count too


def test_a_late_landed_frame_cannot_exceed_the_rate(store: Store) -> None:  # noqa: F811
    landing = Landing(store, JsonRegistry(), EdgePolicy(max_frames_per_minute=3))
    late = [packet(i, [(i, float(i))], received=NOW + dt.timedelta(seconds=30 + 10 * i)) for i in range(1, 4)]
    assert [o.status for o in landing.submit(late)] == ["stored"] * 3
    early = packet(9, [(9, 9.0)], received=NOW + dt.timedelta(seconds=5))  # received first, landed last
    out = landing.submit([early])[0]
    assert out.status == "quarantined" and out.reason == Reason.OVERSIZED


def test_writers_share_the_rate_book_and_have_their_own_shards(store: Store) -> None:  # noqa: F811
    class _Pg:  # Landing.writers only needs a PostgreSQL store's backend name here
        backend = "postgres"

    a, b, c = Landing(_Pg(), JsonRegistry(), shard=5).writers(3)  # type: ignore[arg-type]
    assert a.rate is b.rate is c.rate and a.security is b.security
    assert (a.shard, b.shard, c.shard) == (5, 69, 133)
    assert a.store is b.store and a.registry is b.registry and a.policy is b.policy
    with pytest.raises(IngestError, match="single writer"):
        Landing(store, JsonRegistry()).writers(2)
    assert Landing(store, JsonRegistry()).writers(1)[0].store is store
    with pytest.raises(IngestError, match="single writer"):
        resolve_writers(store, 2)
    assert resolve_writers(store, None) == 1 and resolve_writers(_Pg(), None) == 2
    with pytest.raises(IngestError, match="1 to"):
        resolve_writers(_Pg(), 0)


def test_a_unit_gets_the_rate_limit_once_across_landings(store: Store) -> None:  # noqa: F811
    """Two landings on one book: frames of one unit count once, whichever lands them."""
    policy = EdgePolicy(max_frames_per_minute=4)
    book = RateBook()
    first = Landing(store, JsonRegistry(), policy, rate=book)
    second = Landing(store, JsonRegistry(), policy, shard=first.shard + 64, rate=book)
    batch = [packet(i, [(i, float(i))], received=NOW + dt.timedelta(seconds=i)) for i in range(1, 7)]
    out = first.submit(batch[:3]) + second.submit(batch[3:])
    assert [o.status for o in out] == ["stored"] * 4 + ["quarantined"] * 2
    assert {o.reason for o in out[4:]} == {Reason.OVERSIZED}
    # a landing with a book of its own would have taken them all (the bug this prevents)
    alone = Landing(store, JsonRegistry(), policy)
    assert [o.status for o in alone.submit([packet(20, [(20, 20.0)], received=NOW + dt.timedelta(seconds=7))])] == ["stored"]
    stats = first.stats()
    assert stats.balanced and (stats.stored, stats.quarantined) == (5, 2)


def test_a_batch_that_does_not_commit_releases_its_rate(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    from warehouse import _landing as wl

    book = RateBook()
    landing = Landing(store, JsonRegistry(), EdgePolicy(max_frames_per_minute=2), rate=book)

    def boom(*_: object) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(wl, "write_batch", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        landing.submit([packet(1, [(0, 1.0)]), packet(2, [(1, 2.0)], received=NOW + dt.timedelta(seconds=1))])
    assert book.count("D1", NOW.timestamp() + 1) == 0
    monkeypatch.undo()
    out = landing.submit([packet(1, [(0, 1.0)]), packet(2, [(1, 2.0)], received=NOW + dt.timedelta(seconds=1))])
    assert [o.status for o in out] == ["stored", "stored"]
    assert book.count("D1", NOW.timestamp() + 1) == 2


def test_cli_refuses_parallel_writers_on_duckdb(tmp_path: Any, capfd: pytest.CaptureFixture[str]) -> None:
    from dashboards.cli import main

    db = str(tmp_path / "one.duckdb")
    assert main(["--db", db, "migrate"]) == 0
    capfd.readouterr()
    assert main(["--db", db, "ingest", "tcp", "--port", "45999", "--host", "127.0.0.1", "--writers", "2"]) == 1
    out = "".join(capfd.readouterr())
    assert "--writers 2: the duckdb store has a single writer; use --writers 1" in " ".join(out.split())


@pytest.mark.parametrize(
    ("argv", "threads"),
    [
        (["--dsn", "postgresql:///x", "ingest", "tcp", "--port", "5020"], "1"),
        (["-v", "ingest", "serve", "--tcp-port", "1"], "1"),
        (["--db", "a.duckdb", "ingest", "mqtt", "--url", "mqtt://h"], "1"),
        (["ingest", "stats"], None),
        (["quarantine", "list"], None),
        (["report", "--group", "ingest", "udp"], None),
    ],
)
def test_service_commands_run_polars_on_one_thread(monkeypatch: pytest.MonkeyPatch, argv: list[str], threads: str | None) -> None:
    import os

    from dashboards.cli import _service_env

    monkeypatch.delenv("POLARS_MAX_THREADS", raising=False)
    _service_env(argv)
    assert os.environ.get("POLARS_MAX_THREADS") == threads
    monkeypatch.setenv("POLARS_MAX_THREADS", "3")  # the operator's setting wins
    _service_env(argv)
    assert os.environ["POLARS_MAX_THREADS"] == "3"


class _Recording(_Landing):
    """Also records the devices of every packet it landed, in order."""

    def __init__(self, delay: float = 0.0) -> None:
        super().__init__(delay)
        self.devices: list[str | None] = []
        self.values: list[int] = []

    def submit(self, packets: Sequence[Packet]) -> list[_Outcome]:
        self.devices.extend(p.device_id for p in packets)
        self.values.extend(int.from_bytes(p.raw, "big") for p in packets)
        return super().submit(packets)


def _unit_job(device: str, first: int, n: int) -> list[Packet]:
    now = dt.datetime.now(dt.UTC)
    return [Packet(raw=(first + i).to_bytes(4, "big"), transport="mqtt", received_at=now, device_id=device) for i in range(n)]


def test_each_unit_lands_on_one_writer_in_queue_order() -> None:
    """Landing locks a unit's row for a whole batch: a unit's jobs all go to one writer,
    so the two writers never wait for each other, and they commit in order."""
    landings = [_Recording(delay=0.01), _Recording(delay=0.01)]
    worker = LandingWorker(landings, max_batch=5, linger_s=0.002).start()
    devices = [f"D{k:07d}" for k in range(12)]
    try:
        futures = [worker.submit(_unit_job(devices[k % 12], 100 * k, 2)) for k in range(96)]
        for f in futures:
            f.result(20)
    finally:
        worker.stop()
    seen = [set(x.devices) for x in landings]
    assert seen[0] and seen[1] and not seen[0] & seen[1]
    assert seen[0] | seen[1] == set(devices)
    # within a writer, each unit's packets are in the order they were queued
    for x in landings:
        for d in devices:
            mine = [v for v, dev in zip(x.values, x.devices, strict=True) if dev == d]
            assert mine == sorted(mine)


def test_a_job_of_several_units_is_split_by_writer_and_answered_in_its_order() -> None:
    """An MQTT or UDP batch holds many units: each writer gets its units' packets, and the
    job's future has one outcome per packet in the job's order once both parts commit."""
    landings = [_Recording(delay=0.02), _Recording(delay=0.02)]
    worker = LandingWorker(landings, linger_s=0.002).start()
    now = dt.datetime.now(dt.UTC)
    job = [Packet(raw=k.to_bytes(4, "big"), transport="mqtt", received_at=now, device_id=f"D{k % 9:07d}") for k in range(60)]
    try:
        outcomes = worker.submit(job).result(20)
    finally:
        worker.stop()
    assert [o.counter for o in outcomes] == list(range(60))
    assert all(x.devices for x in landings)
    assert not set(landings[0].devices) & set(landings[1].devices)


def test_a_failed_part_fails_the_whole_job() -> None:
    class _Broken(_Landing):
        def submit(self, packets: Sequence[Packet]) -> list[_Outcome]:
            raise RuntimeError("database down")

    worker = LandingWorker([_Landing(), _Broken()], retries=1).start()
    now = dt.datetime.now(dt.UTC)
    job = [Packet(raw=k.to_bytes(4, "big"), transport="mqtt", received_at=now, device_id=f"D{k:07d}") for k in range(20)]
    try:
        with pytest.raises(RuntimeError, match="database down"):
            worker.submit(job).result(20)
    finally:
        worker.stop()
