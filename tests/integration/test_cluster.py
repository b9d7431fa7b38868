"""The cluster profile (STACK_PROFILE=cluster) on real processes: three Kafka nodes in KRaft
and a Redis Cluster of six nodes as ``make up`` starts them, every topic on three replicas
with min.insync.replicas 2, and one broker and one Redis master killed for good while the
stream runs: nothing lost, nothing doubled, the features exact, the consumer group's lag
drained; the broker and the Redis node, started again, catch up."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import threading
import time
import uuid
import xmlrpc.client
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource
from pydantic import ValidationError

from core import feast_store
from core.settings import StackSettings
from stack import health, lifecycle, redis_cluster
from stack.supervisor import Supervisor
from stack.topics import ensure_topics
from tests.conftest import local_settings
from tests.integration.test_stream import _check, _wait_done
from tests.support.stream import Expected, WorkerProcess, generate, produce, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.faults]


def _port_block(n: int) -> int:
    """A free port p with p .. p+n-1 all free (the cluster's nodes sit at +2 and +4)."""
    rng = random.Random()
    for _ in range(500):
        p = rng.randrange(20_000, 40_000)
        if all(health.port_free("127.0.0.1", p + i) for i in range(n)):
            return p
    raise RuntimeError("no block of free ports")


def _cluster_settings(data_dir: Path, **update: object) -> StackSettings:
    """``local_settings`` in the cluster profile, its Kafka and Redis nodes on free blocks of
    ports that none of the other services' ports falls in (the settings refuse a clash:
    other blocks)."""
    settings = local_settings(data_dir)
    for _ in range(20):
        base = _port_block(6)
        redis = _port_block(6)
        if not all(health.port_free("127.0.0.1", redis + 10_000 + i) for i in range(6)):
            continue  # (each Redis node's cluster bus)
        try:
            return StackSettings(**{**settings.model_dump(exclude={"cluster"}), "profile": "cluster",
                                    "kafka_port": base, "kafka_controller_port": base + 1, "redis_port": redis,
                                    **update})
        except ValidationError:
            continue
    raise RuntimeError("no block of ports clear of the other services'")


@contextlib.contextmanager
def _cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackSettings]:
    settings = _cluster_settings(tmp_path_factory.mktemp("cluster"), kafka_heap="384m", cluster="in-process")
    lifecycle.up(settings, say=lambda _m: None, only=("kafka", "redis"))
    try:
        yield settings
    finally:
        lifecycle.down(settings, say=lambda _m: None)


def _partitions(bootstrap: str, topic: str) -> list:
    md = AdminClient({"bootstrap.servers": bootstrap}).list_topics(topic, timeout=10)
    return list(md.topics[topic].partitions.values())


def _trickle(bootstrap: str, topic: str, records: list, undelivered: list[int]) -> None:
    """Produce ``records`` a hundred a second (acks=all, idempotent), then flush; appends how
    many were not delivered."""
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "enable.idempotence": True, "acks": "all"})
    for i in range(0, len(records), 100):
        for r in records[i:i + 100]:
            p.produce(topic, key=r.key, value=r.value)
        p.poll(0)
        time.sleep(1.0)
    undelivered.append(p.flush(90))


def _lag(bootstrap: str, group: str, topic: str) -> int:
    """Records of ``topic`` not yet committed by ``group``."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        parts = [TopicPartition(topic, p.id) for p in _partitions(bootstrap, topic)]
        committed = c.committed(parts, timeout=10)
        lag = 0
        for tp in committed:
            _, high = c.get_watermark_offsets(tp, timeout=10)
            lag += high - max(tp.offset, 0)
        return lag
    finally:
        c.close()


def _crash(sup: Supervisor, name: str) -> None:
    """``kill -9`` the service ``name`` and keep it down: supervisord restarts a process that
    exits on its own, so it is then stopped through supervisord until it says STOPPED. (Between
    the kill and supervisord's restart the process is EXITED, and a stop then answers
    NOT_RUNNING; the restarted process, up for a moment, is stopped on the next round.)"""
    os.kill(sup.processes()[name]["pid"], signal.SIGKILL)
    deadline = time.monotonic() + 30
    while (state := sup.processes()[name]["statename"]) != "STOPPED":
        if time.monotonic() > deadline:
            raise AssertionError(f"{name} is {state} 30 s after its kill, not STOPPED")
        with contextlib.suppress(xmlrpc.client.Fault):  # (NOT_RUNNING: not restarted yet)
            sup.stop_process(name)
        time.sleep(0.05)


def _redis_masters(settings: StackSettings) -> list[int]:
    """Ports of the live masters that serve slots, as a live node sees them (CLUSTER NODES)."""
    import redis

    for host, port in settings.redis_startup_nodes:
        try:
            nodes = redis.Redis(host=host, port=port, socket_timeout=2).execute_command("CLUSTER NODES")
        except redis.RedisError:
            continue
        return sorted(int(address.split("@")[0].rsplit(":", 1)[1]) for address, node in nodes.items()
                      if "master" in node["flags"] and "fail" not in node["flags"] and node["slots"])
    return []


@pytest.mark.parametrize("engine", ["faust", "quix"])
def test_one_broker_and_one_redis_master_lost_mid_stream_loses_and_doubles_nothing(
        engine: str, feast_repo: StackSettings, tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> None:
    with _cluster(tmp_path_factory) as ks:
        assert ks.kafka_bootstrap.count(",") == 2
        sup = Supervisor(ks)
        assert {"kafka", "kafka-2", "kafka-3", "redis", *(f"redis-{i}" for i in range(2, 7))} <= set(sup.processes())
        assert redis_cluster.state(ks) is None  # formed by make up: six nodes, every slot, ok
        masters = _redis_masters(ks)
        assert masters == [ks.redis_port, ks.redis_port + 1, ks.redis_port + 2]
        repo = feast_store.isolated_copy(feast_repo, tmp_path, profile="cluster", kafka_port=ks.kafka_port,
                                         kafka_controller_port=ks.kafka_controller_port, redis_host=None,
                                         redis_port=ks.redis_port, redis_db=0)
        assert repo.redis_cluster and feast_store.repo_config(repo).online_store.redis_type == "redis_cluster"
        names = (f"txn-{uuid.uuid4().hex[:8]}", f"dlq-{uuid.uuid4().hex[:8]}", f"clk-{uuid.uuid4().hex[:8]}")
        ensure_topics(ks, names, partitions=3)
        # every topic (ours, the stack's own) on three replicas, all in sync
        def replicated(topic: str) -> bool:
            parts = _partitions(ks.kafka_bootstrap, topic)  # (a broker may not know a new topic for a moment)
            return len(parts) == 3 and all(len(p.replicas) == 3 and len(p.isrs) == 3 for p in parts)

        wait_for(lambda: replicated(names[0]) and replicated("transactions"), 30,
                 "every partition on three replicas in sync")
        res = ConfigResource(ConfigResource.Type.TOPIC, names[0])
        admin = AdminClient({"bootstrap.servers": ks.kafka_bootstrap})  # (alive until its answer is in)

        def min_isr() -> str | None:
            try:  # (a broker the new topic's metadata has not reached yet answers "unknown topic")
                return admin.describe_configs([res])[res].result(timeout=30)["min.insync.replicas"].value
            except Exception:  # noqa: BLE001
                return None

        seen: list[str | None] = []
        wait_for(lambda: seen.append(min_isr()) or seen[-1] is not None, 30, "the topic's configuration")
        assert seen[-1] == "2"

        records = generate(3000, seed=29, late_rate=0.03, max_delay_ms=60_000)
        exp = Expected.of(records)
        produce(ks.kafka_bootstrap, names[0], records[:1000])
        app_id = f"t-{uuid.uuid4().hex[:6]}"
        undelivered: list[int] = []
        worker = WorkerProcess(repo, app_id, *names, tmp_path / "w.log").start()
        try:
            # steady first: the first thousand processed (the worker's own topics made, the group settled)
            wait_for(lambda: worker.metric("stream_events_in_total") >= 1000, 120, "the worker to get going",
                     [worker])
            # then the rest streams in over about ten seconds (acks=all), and a broker dies meanwhile
            feed = threading.Thread(target=_trickle, args=(ks.kafka_bootstrap, names[0], records[1000:], undelivered))
            feed.start()
            wait_for(lambda: worker.metric("stream_events_in_total") >= 1300, 60, "the stream to run", [worker])
            assert all(len(p.replicas) == 3 for p in _partitions(ks.kafka_bootstrap, "__consumer_offsets"))
            # the node leading most of the topic's partitions crashes (kill -9) and stays down
            leaders = [p.leader for p in _partitions(ks.kafka_bootstrap, names[0])]
            victim = max(set(leaders), key=leaders.count)
            name = "kafka" if victim == 1 else f"kafka-{victim}"
            _crash(sup, name)
            wait_for(lambda: all(p.leader != victim and len(p.isrs) == 2
                                 for p in _partitions(ks.kafka_bootstrap, names[0])), 60,
                     "new leaders and a shrunk ISR")
            # then the second Redis master (a third of the cards' states) crashes and stays down:
            # its replica takes over once the cluster's node timeout has passed
            assert worker.metric("stream_events_in_total") < len(records)
            _crash(sup, "redis-2")
            try:
                wait_for(lambda: _redis_masters(ks) == [ks.redis_port, ks.redis_port + 2, ks.redis_port + 4],
                         90, "the replica of the lost master promoted")
            except AssertionError as e:
                states = {n: p["statename"] for n, p in sup.processes().items() if n.startswith("redis")}
                raise AssertionError(f"{e}; masters {_redis_masters(ks)}, nodes {states}") from None
            # (make status says so once the nodes agree: a node may call the cluster down for a moment)
            p, said = ks.redis_port, [""]
            want = f"cluster ok: masters {p}, {p + 2}, {p + 4}; 2 replica(s); down: {p + 1}"
            try:
                wait_for(lambda: said.append(lifecycle.redis_detail(ks)) or said[-1] == want, 30, "make status")
            except AssertionError:
                raise AssertionError(f"make status says {said[-1]!r}, not {want!r}") from None
            # the rest is delivered (2 replicas in sync) and processed with one broker gone
            feed.join(120)
            assert not feed.is_alive() and undelivered == [0]
            _wait_done(repo, exp, [worker])
            _check(repo, exp)
            wait_for(lambda: _lag(ks.kafka_bootstrap, app_id, names[0]) == 0, 120, "the group's lag drained",
                     [worker])
            assert worker.proc is not None and worker.proc.poll() is None  # rode it out, no restart
            # the node comes back and catches up: every partition in sync on three replicas again
            sup.start_process(name)
            wait_for(lambda: all(len(p.isrs) == 3 for p in _partitions(ks.kafka_bootstrap, names[0])), 120,
                     "the restarted broker back in sync")
            # and so does the Redis node, as the new master's replica: six nodes, every slot, ok
            sup.start_process("redis-2")
            wait_for(lambda: redis_cluster.state(ks) is None, 60, "the Redis node back in the cluster")
            assert _redis_masters(ks) == [ks.redis_port, ks.redis_port + 2, ks.redis_port + 4]
            _check(repo, exp)  # (still exact, read through the new layout)
        finally:
            worker.stop()


def test_the_profiles_dask_scheduler_and_workers_run_batch_work(tmp_path_factory: pytest.TempPathFactory) -> None:
    """``make up`` in the cluster profile starts a Dask scheduler and its workers under
    supervisord; batch work's default place is that scheduler, and its tasks run on the
    workers (each of them), in their own processes."""
    from core.cluster import connect

    settings = _cluster_settings(tmp_path_factory.mktemp("dask"), dask_port=health.free_port(),
                                 dask_worker_memory="1GiB")
    lifecycle.up(settings, say=lambda _m: None, only=("dask",))
    try:
        assert settings.cluster == f"tcp://127.0.0.1:{settings.dask_port}"
        states = {r.name: (r.state, r.health) for r in lifecycle.status(settings, only=("dask",))}
        assert states == {n: ("RUNNING", "ok") for n in ("dask-scheduler", "dask-worker-1", "dask-worker-2")}
        with connect(settings.cluster) as where:
            assert where.workers == 2
            pids = set(where.results(_pid_after, [0.5] * 6))
        assert len(pids) == 2 and os.getpid() not in pids
    finally:
        lifecycle.down(settings, say=lambda _m: None)


def _pid_after(seconds: float) -> int:
    import time

    time.sleep(seconds)
    return os.getpid()


def test_online_writes_to_the_redis_cluster_are_routed_by_slot_and_on_a_replica_when_they_return(
        tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> None:
    """The stream's online sink on ``make up``'s Redis Cluster: each state lands on its slot's
    master and is read back through Feast; every master's replica holds the same keys by the
    time the write returns (WAIT); with a replica down the write still succeeds on its master
    and is counted as unreplicated."""
    import redis

    from streaming.read import OnlineStates
    from streaming.sinks import FeastOnlineSink, OnlineBatch

    settings = _cluster_settings(tmp_path_factory.mktemp("rc"))
    lifecycle.up(settings, say=lambda _m: None, only=("redis",))
    try:
        repo = feast_store.isolated_copy(settings, tmp_path)
        store = feast_store.open_store(repo)
        assert FeastOnlineSink(store).replica_wait_ms == 200  # (the default)
        with pytest.raises(ValueError, match="not shorter than the Redis socket timeout"):
            FeastOnlineSink(store, replica_wait_ms=int(settings.redis_timeout_s * 1000))
        # (a longer wait here: on a loaded machine a live replica can take longer than 200 ms to
        # acknowledge, and only a replica that is down should fail to)
        sink = FeastOnlineSink(store, replica_wait_ms=int(settings.redis_timeout_s * 1000) - 500)
        assert isinstance(sink.client, redis.RedisCluster)

        def batch(n: int, tag: bytes) -> OnlineBatch:
            b = OnlineBatch()
            for i in range(n):
                b.put(f"card-{i}", tag + b"%d" % i, 1_700_000_000_000 + i, 0.0)
            return b

        sink.write(batch(3000, b"a"))
        rows = OnlineStates(store, "card_window_state", "card_id").read([f"card-{i}" for i in range(3000)])
        assert rows == [(b"a%d" % i, 1_700_000_000_000 + i) for i in range(3000)]
        nodes = [redis.Redis(host=h, port=p) for h, p in settings.redis_startup_nodes]
        sizes = [n.dbsize() for n in nodes]
        assert all(500 < size < 1500 for size in sizes[:3]) and sum(sizes[:3]) == 3000  # spread over the masters
        assert sizes[3:] == sizes[:3]  # and on each one's replica already
        assert sink.unreplicated_writes == 0
        port = settings.redis_port
        assert lifecycle.redis_detail(settings) == f"cluster ok: masters {port}, {port + 1}, {port + 2}; 3 replica(s)"
        # a replica down: the write stands on its master alone, and says so
        sup = Supervisor(settings)
        sup.stop_process("redis-4")
        wait_for(lambda: lifecycle.redis_detail(settings).endswith(f"; 2 replica(s); down: {port + 3}"), 30,
                 "make status to show the replica down")
        sink.write(batch(3000, b"b"))
        assert sink.unreplicated_writes == 1  # (the first master's; the others were acknowledged)
        rows = OnlineStates(store, "card_window_state", "card_id").read(["card-0", "card-2999"])
        assert rows == [(b"b0", 1_700_000_000_000), (b"b2999", 1_700_000_002_999)]
    finally:
        lifecycle.down(settings, say=lambda _m: None)
