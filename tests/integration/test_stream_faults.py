"""The fault suite's stream cases (marker ``faults``): the real worker against a Redis that
hangs and then dies and comes back empty, an offline disk that fills up, a consumer group
that rebalances across three workers while one is killed, and quiet cards forgotten with a
changelog tombstone. After each, the online state and the offline log equal the brute force
over the raw records: nothing lost, nothing counted twice."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
import time
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from core import feast_store
from core.card_state import event_key
from core.contracts import Transaction, encode
from core.settings import StackSettings
from stack import health
from stack.topics import ensure_topics
from streaming.generators.transactions import Record
from tests.integration.test_stream import _check, _offline_keys, _wait_done
from tests.support.stream import Expected, WorkerProcess, generate, produce, wait_for

pytestmark = pytest.mark.faults


@pytest.fixture
def topics(kafka_bootstrap: str) -> tuple[str, str, str]:
    names = (f"txn-{uuid.uuid4().hex[:8]}", f"dlq-{uuid.uuid4().hex[:8]}", f"clk-{uuid.uuid4().hex[:8]}")
    ensure_topics(kafka_bootstrap, names, partitions=3)
    return names


def _redis(port: int, folder: Path) -> subprocess.Popen:
    """A Redis of the test's own with no persistence at all: killed, it comes back empty."""
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", str(folder)], stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while health.redis(f"redis://127.0.0.1:{port}/0") is not None:
        assert time.monotonic() < deadline, "redis did not start"
        time.sleep(0.05)
    return proc


def _repo(feast_repo: StackSettings, kafka_bootstrap: str, root: Path, **update: object) -> StackSettings:
    host, _, port = kafka_bootstrap.rpartition(":")
    return feast_store.isolated_copy(feast_repo, root, kafka_host=host, kafka_port=int(port), **update)


@pytest.mark.parametrize("engine", ["faust", "quix"])
def test_redis_hung_then_killed_and_back_empty_under_the_worker(
        engine: str, feast_repo: StackSettings, topics: tuple[str, str, str], kafka_bootstrap: str,
        tmp_path: Path) -> None:
    """Redis frozen (SIGSTOP: writes time out) while traffic flows, then killed and started
    again with nothing in it. The worker holds its acks and retries while Redis is away, and
    on the new run_id rewrites every state it owns: afterwards the online store equals the
    brute force for every card, including cards with no event after the restart."""
    port = health.free_port()
    (tmp_path / "redis").mkdir()
    redis = _redis(port, tmp_path / "redis")
    repo = _repo(feast_repo, kafka_bootstrap, tmp_path, redis_port=port, redis_db=0, redis_password=None,
                 redis_password_file=None, redis_timeout_s=0.5)
    records = generate(3000, seed=31, late_rate=0.02)
    exp = Expected.of(records)
    parts = [records[:1000], records[1000:2000], records[2000:]]
    worker = WorkerProcess(repo, f"t-{uuid.uuid4().hex[:6]}", *topics, tmp_path / "w.log",
                           STREAMING_ONLINE_CHECK_INTERVAL_S="0.5").start()
    try:
        produce(kafka_bootstrap, topics[0], parts[0])
        wait_for(lambda: worker.metric("stream_events_in_total") >= len(parts[0])
                 and worker.metric("stream_push_batch_rows_count") > 0, 120, "the first part online", [worker])
        time.sleep(1.5)  # the worker has read Redis's run_id
        os.kill(redis.pid, signal.SIGSTOP)  # hung: accepts, never answers
        try:
            produce(kafka_bootstrap, topics[0], parts[1])
            wait_for(lambda: worker.metric("stream_sink_stalled") == 1, 60, "the online sink to stall", [worker])
            time.sleep(1.5)  # (Faust commits what was acked before the stall within its 1 s interval)
            acked_while_hung = _committed(kafka_bootstrap, worker.env["STREAMING_APP_ID"], topics[0])
            time.sleep(2)
            assert _committed(kafka_bootstrap, worker.env["STREAMING_APP_ID"], topics[0]) == acked_while_hung
        finally:
            os.kill(redis.pid, signal.SIGCONT)
        wait_for(lambda: worker.metric("stream_sink_stalled") == 0, 60, "the online sink to recover", [worker])
        redis.kill()  # SIGKILL, and no persistence: everything online is gone
        redis.wait(10)
        produce(kafka_bootstrap, topics[0], parts[2])
        time.sleep(2)
        redis = _redis(port, tmp_path / "redis")
        wait_for(lambda: worker.metric("stream_online_resyncs_total") >= 1, 60, "the resync", [worker])
        _wait_done(repo, exp, [worker])
        wait_for(lambda: worker.metric("stream_sink_stalled") == 0, 60, "the online sink to recover", [worker])
        _check(repo, exp)
        assert worker.metric("stream_sink_errors_total") > 0
        assert worker.proc is not None and worker.proc.poll() is None  # rode it out, no restart
    finally:
        worker.stop()
        redis.kill()


def _committed(bootstrap: str, group: str, topic: str) -> int:
    """Offsets the group has committed on the topic, summed over its 3 partitions."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        got = c.committed([TopicPartition(topic, p) for p in range(3)], timeout=10)
        return sum(max(0, tp.offset) for tp in got)
    finally:
        c.close()


@pytest.mark.parametrize("engine", ["faust", "quix"])
def test_a_full_offline_disk_stalls_the_worker_and_loses_nothing(
        engine: str, repo_on_tmpfs: tuple[StackSettings, Path], topics: tuple[str, str, str], kafka_bootstrap: str,
        tmp_path: Path) -> None:
    """The offline log's disk fills up (a 4 MB tmpfs with a ballast file): appends fail with
    ENOSPC, the worker retries and acks nothing, leaves no partial file; once space is freed it
    writes everything and the log equals the brute force."""
    repo, ballast = repo_on_tmpfs
    records = generate(2000, seed=32, late_rate=0.02)
    exp = Expected.of(records)
    worker = WorkerProcess(repo, f"t-{uuid.uuid4().hex[:6]}", *topics, tmp_path / "w.log").start()
    try:
        produce(kafka_bootstrap, topics[0], records)
        # (not "all events consumed": while the disk is full Quix replays each dropped
        # checkpoint from the committed offsets, so how far it reads between retries varies)
        wait_for(lambda: worker.metric("stream_sink_stalled") == 1, 120, "the offline sink to stall", [worker])
        failed = worker.metric("stream_sink_errors_total")
        wait_for(lambda: worker.metric("stream_sink_errors_total") >= failed + 2, 60, "two more failed retries",
                 [worker])  # several retry cycles: still nothing acked
        assert worker.metric("stream_sink_stalled") == 1
        assert _committed(kafka_bootstrap, worker.env["STREAMING_APP_ID"], topics[0]) == 0
        offline = feast_store.offline_dir(repo, "")
        assert not [f for f in offline.rglob(".*.tmp")]  # no partial file left behind
        ballast.unlink()
        _wait_done(repo, exp, [worker])
        _check(repo, exp)
        wait_for(lambda: _committed(kafka_bootstrap, worker.env["STREAMING_APP_ID"], topics[0]) == len(records),
                 60, "the offsets committed", [worker])
        assert worker.metric('stream_sink_errors_total') > 0
    finally:
        worker.stop()


@pytest.fixture
def repo_on_tmpfs(feast_repo: StackSettings, kafka_bootstrap: str, tmp_path: Path):
    repo = _repo(feast_repo, kafka_bootstrap, tmp_path / "stack")
    offline = feast_store.offline_dir(repo, "")
    if offline.exists():
        shutil.rmtree(offline)
    offline.mkdir(parents=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(offline)], capture_output=True,
                             text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs to fill (needs root): {mounted.stderr.strip()}")
    try:
        ballast = offline / "ballast"
        with ballast.open("wb", buffering=0) as f:  # fill it to the last byte: the next write gets ENOSPC
            for chunk in (65536, 4096, 1):
                try:
                    while True:
                        f.write(b"\0" * chunk)
                except OSError:
                    pass
        yield repo, ballast
    finally:
        subprocess.run(["umount", "-l", str(offline)], check=False)


@pytest.mark.parametrize("engine", ["faust", "quix"])
def test_three_workers_rebalance_while_one_is_killed_under_traffic(
        engine: str, feast_repo: StackSettings, topics: tuple[str, str, str], kafka_bootstrap: str,
        tmp_path: Path) -> None:
    """Traffic flows the whole time (late events included) while the group goes from two
    workers to three, loses one to kill -9 mid-flush and gets a fourth: every rebalance
    flushes or replays, and the result equals the brute force."""
    repo = _repo(feast_repo, kafka_bootstrap, tmp_path)
    records = generate(6000, seed=33, late_rate=0.02, max_delay_ms=60_000)
    exp = Expected.of(records)
    app_id = f"t-{uuid.uuid4().hex[:6]}"

    def worker(i: int) -> WorkerProcess:
        return WorkerProcess(repo, app_id, *topics, tmp_path / f"w{i}.log").start()

    workers = [worker(0), worker(1)]
    done = threading.Event()

    def traffic() -> None:
        p = Producer({"bootstrap.servers": kafka_bootstrap, "linger.ms": 5, "enable.idempotence": True})
        for i, r in enumerate(records):
            p.produce(topics[0], key=r.key, value=r.value)
            if i % 100 == 99:
                p.flush(30)
                time.sleep(0.2)  # ~500 events/s, over about 12 s
        p.flush(60)
        done.set()

    sender = threading.Thread(target=traffic, daemon=True)
    try:
        wait_for(lambda: sum(w.metric("stream_assigned_partitions") for w in workers) == 3, 120,
                 "two workers to own the partitions", workers)
        sender.start()
        wait_for(lambda: sum(w.metric("stream_events_in_total") for w in workers) >= 1000, 60, "traffic", workers)
        workers.append(worker(2))  # a rebalance to three
        wait_for(lambda: workers[2].metric("stream_assigned_partitions") > 0, 120, "the third worker to join",
                 workers)
        workers[0].kill()  # kill -9, whatever it was doing
        workers.append(worker(3))
        sender.join(120)
        assert done.is_set()
        live = workers[1:]
        _wait_done(repo, exp, live)
        _check(repo, exp)
    finally:
        for w in workers:
            w.stop()


@pytest.mark.parametrize("engine", ["faust", "quix"])
def test_quiet_cards_are_forgotten_and_tombstoned(
        engine: str, feast_repo: StackSettings, topics: tuple[str, str, str], kafka_bootstrap: str,
        tmp_path: Path) -> None:
    """A card whose newest event is more than the state TTL (8 days) older than its partition's
    newest is deleted from the worker's state with a tombstone in the changelog; a restarted
    worker's recovery does not bring it back; an active card is kept. (Traffic on the busy card
    goes on throughout: the Quix engine runs its sweep between records.)"""
    repo = _repo(feast_repo, kafka_bootstrap, tmp_path)
    now = int(time.time() * 1000)
    day = 86_400_000

    def tx(i: int, card: str, t: int) -> Record:
        return Record(topics[0], card.encode(), encode(Transaction(
            event_id=f"q-{i:06d}", event_time=t, card_id=card, user_id="u", merchant_id="m", mcc="5411",
            amount=10.0, currency="EUR", country="DE", lat=0.0, lon=0.0, device_id="d", ip="10.0.0.1",
            channel="online")), t)

    old = [tx(i, "card-quiet", now - 10 * day + i * 1000) for i in range(3)]
    new = [tx(10 + i, "card-busy", now - 60_000 + i * 1000) for i in range(3)]
    p = Producer({"bootstrap.servers": kafka_bootstrap})
    for r in old + new:  # one partition: its newest event dates the quiet card as 10 days old
        p.produce(topics[0], key=r.key, value=r.value, partition=0)
    assert p.flush(30) == 0
    stop = threading.Event()

    def busy() -> None:
        for i in range(100, 10_000):
            if stop.wait(0.3):
                return
            r = tx(i, "card-busy", int(time.time() * 1000))
            p.produce(topics[0], key=r.key, value=r.value, partition=0)
            p.flush(10)

    ticker = threading.Thread(target=busy, daemon=True)
    ticker.start()
    app_id = f"t-{uuid.uuid4().hex[:6]}"
    env = {"STREAMING_STATE_SWEEP_INTERVAL_S": "0.5"}
    first = WorkerProcess(repo, app_id, *topics, tmp_path / "w1.log", **env).start()
    try:
        wait_for(lambda: first.metric("stream_state_expired_total") >= 1, 120, "the sweep", [first])
        first_six = {event_key(f"q-{i:06d}") for i in (0, 1, 2, 10, 11, 12)}
        wait_for(lambda: first_six <= _offline_keys(repo), 60, "the offline log", [first])
        assert first.metric("stream_state_expired_total") == 1
        wait_for(lambda: first.metric("stream_state_entities") == 1, 30, "the entity count", [first])
        time.sleep(2.5)  # a checkpoint (Quix) commits the deletion with its changelog tombstone
    finally:
        first.stop()
    latest = _changelog_states(kafka_bootstrap, app_id, ("card-quiet", "card-busy"))
    assert latest.get("card-quiet", b"missing") is None  # its last record is a tombstone
    assert latest.get("card-busy")  # the active card's state is there
    second = WorkerProcess(repo, app_id, *topics, tmp_path / "w2.log", **env).start()
    try:  # recovery from the changelog: one entity, the quiet card stays forgotten
        wait_for(lambda: second.metric("stream_assigned_partitions") > 0
                 and second.metric("stream_state_entities") == 1, 120, "the recovered table", [second])
        assert second.metric("stream_state_expired_total") == 0
    finally:
        stop.set()
        second.stop()


def _changelog_states(bootstrap: str, app_id: str, entities: tuple[str, ...]) -> dict[str, bytes | None]:
    """The last changelog record of each entity's state (None: a tombstone), whichever engine
    wrote it: Faust's ``<app>-card-state-changelog`` keyed by the JSON id, or Quix's
    ``changelog__<app>--…`` keyed by ``<id>|s``."""
    from confluent_kafka.admin import AdminClient

    names = [t for t in AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=10).topics
             if app_id in t and "changelog" in t and "user" not in t]
    assert names, f"no changelog topic of {app_id}"
    latest: dict[str, bytes | None] = {}
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"cl-{uuid.uuid4().hex[:6]}",
                  "auto.offset.reset": "earliest"})
    c.subscribe(names)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not (set(entities) <= latest.keys() and latest[entities[0]] is None):
        for m in c.consume(100, 0.5):
            if m.error() is None and m.key():
                key = m.key()
                entity = key[:-2].decode() if key.endswith(b"|s") else key.decode().strip('"')
                latest[entity] = m.value()
    c.close()
    return latest
