"""The Faust worker: consume transactions (by card) and clicks (by user), keep each entity's
window state in a changelog-backed Faust table, write features online (Feast/Redis) and
offline (parquet), dead-letter bad records. Run it with ``python -m streaming worker``;
several workers share one consumer group.

Records come in batches (``Stream.noack_take``: up to ``take_max`` of them, or what arrived
within ``take_within_s``): the agent's step (a coroutine resumption, the flush checks) runs
once per batch, Faust's consumer and stream still handle each record; a batch taken
before a rebalance may hold records of partitions revoked meanwhile, which are skipped (not
processed, not acked: their new owner processes them).

Delivery: at-least-once with idempotent effects. Events are acked (so their offsets can be
committed) only after the online writes, the offline rows and the table's changelog records
that cover them are durable, in that order. A replay after a crash finds its events in the
state recovered from the changelog and re-writes the same outputs instead of counting them
twice. The changelog never runs ahead of the offline log: a replayed event whose state
has since been trimmed could not re-emit its offline row.

Faults: a sink that fails (Redis down or hung, the offline log's disk full, the broker away)
is retried with backoff while nothing is acked; consumption stops at
``max_unacked_records``. At shutdown or a rebalance the worker waits ``give_up_after_s`` and
then exits (status 75) so that its restart replays what was not acked. When Redis restarts
(a new run_id; it may have lost its last second of writes) the worker rewrites every state
it owns. Quiet entities are forgotten after ``state_ttl_s`` (entry deleted, changelog
tombstone).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import faust
import orjson
from confluent_kafka import Producer

from core import feast_store, kafka
from core.contracts import DeadLetter, encode
from core.settings import StackSettings
from streaming.entities import CARD, USER, EntitySpec
from streaming.metrics import WorkerMetrics
from streaming.processor import (
    Outcome,
    ProcessorConfig,
    Revisions,
    ValueRows,
    apply_record,
    drain_corrections,
    feature_values,
)
from streaming.settings import StreamingSettings
from streaming.sinks import FeastOnlineSink, FeastPushSink, OfflineLog, OnlineBatch, now_ms, online_server_id

log = logging.getLogger("streaming.worker")


@dataclass
class Pipeline:
    """One event kind: its topic, its state table, and what is waiting to be written."""

    spec: EntitySpec
    topic_name: str
    topic: Any
    table: Any
    online: Any
    batch: OnlineBatch = field(default_factory=OnlineBatch)
    #: entity -> (packed state, partition) written online but not yet to the changelog
    changelog: dict[str, tuple[bytes, int]] = field(default_factory=dict)
    event_rows: list[dict[str, Any]] = field(default_factory=list)
    #: (``ValueRows``: made column-wise into Arrow)
    feature_rows: list[Any] = field(default_factory=list)
    events_in: Any = None
    events_out: dict[Outcome, Any] = field(default_factory=dict)
    #: entity -> its state, decoded once and kept until the next flush packs it (not per event)
    live: dict[str, Any] = field(default_factory=dict)
    #: entity -> (produce time of its oldest pending event, partition): to pack at the next flush
    dirty: dict[str, tuple[float, int]] = field(default_factory=dict)
    #: entity -> where its out-of-order corrections resume (streaming.processor.correction_rows)
    corrections: dict[str, tuple[int, int]] = field(default_factory=dict)
    #: source partition -> newest event time seen on it (when its quiet entities expire)
    watermark: dict[int, int] = field(default_factory=dict)


class FeatureWorker:
    def __init__(self, stack: StackSettings, cfg: StreamingSettings) -> None:
        self.stack, self.cfg = stack, cfg
        self.proc_cfg = ProcessorConfig(cfg.allowed_lateness_ms, cfg.max_events_per_card, cfg.max_future_skew_ms)
        self.metrics = WorkerMetrics()
        datadir = stack.data_dir / "faust" / cfg.app_id
        datadir.mkdir(parents=True, exist_ok=True)
        self.app = faust.App(
            cfg.app_id, broker=f"kafka://{stack.kafka_bootstrap}", store="memory://",
            topic_partitions=cfg.partitions, topic_replication_factor=stack.kafka_replication, web_enabled=False,
            broker_commit_interval=cfg.commit_interval_s, consumer_auto_offset_reset="earliest",
            stream_wait_empty=False, producer_acks=-1, table_standby_replicas=0,
            # Batch Faust's own sends (dead letters): its default is one produce request per
            # message (linger 0).
            producer_linger=0.01, producer_max_batch_size=1_048_576,
            broker_credentials=kafka.faust_credentials(stack),
            # Faust's own data dir (default: "<app id>-data" in the working directory)
            datadir=str(datadir),
        )
        self.dlq_topic = self._raw_topic(cfg.dead_letters_topic)
        # message.timeout.ms 0: a record is retried until delivered (a broker away for long
        # stalls the acks, it never drops a state); a permanent error fails the flush
        self._changelog_errors: list[tuple[str, int, bytes, bytes | None, str]] = []
        self._changelog = Producer(kafka.client_config(stack, {
            "acks": "all", "linger.ms": 5, "enable.idempotence": True, "queue.buffering.max.messages": 1_000_000,
            "message.timeout.ms": 0, "on_delivery": self._on_changelog_delivery}))
        store = self._store = feast_store.open_store(stack)
        self._online_id: str | None = None
        self._give_up_at: float | None = None  # set by a shutdown or a rebalance
        self.pipelines = [self._pipeline(CARD, cfg.transactions_topic, store)]
        if cfg.clicks_topic:
            self.pipelines.append(self._pipeline(USER, cfg.clicks_topic, store))
        self.offline = OfflineLog(feast_store.offline_root(stack))
        self.offline.remove_stale()  # (files a killed worker was writing)
        self._unacked: list[tuple[Any, Any]] = []  # (stream, event) waiting for durable outputs
        self._last_offline = time.monotonic()
        self._flush_lock = asyncio.Lock()
        self._revision = Revisions()
        self._positions: dict[Any, int] = {}
        #: the partitions this worker owns (records of others, taken before a rebalance, are skipped)
        self._owned: set[Any] = set()
        self._corrections_unwritten = 0  # entities whose correction rows are computed, not yet on disk
        self.metrics.corrections_pending.set_function(
            lambda: sum(len(p.corrections) for p in self.pipelines) + self._corrections_unwritten)
        self._register()

    def _raw_topic(self, name: str) -> Any:
        return self.app.topic(name, key_type=bytes, value_type=bytes, key_serializer="raw",
                              value_serializer="raw")

    def _pipeline(self, spec: EntitySpec, topic: str, store: Any) -> Pipeline:
        online = (FeastOnlineSink(store, spec.online_view, spec.join_key) if self.cfg.online_writer == "direct"
                  else FeastPushSink(store, spec.push_source, spec.join_key))
        table = self.app.Table(f"{spec.name}-state", default=None, key_type=str, value_type=bytes,
                               partitions=self.cfg.partitions)
        # label children bound once (labels() is a dict lookup under a lock, per event)
        return Pipeline(spec, topic, self._raw_topic(topic), table, online, feature_rows=ValueRows(spec),
                        events_in=self.metrics.events_in.labels(topic),
                        events_out={o: self.metrics.events_out.labels(f"{spec.name}:{o}") for o in Outcome})

    # -- wiring ----------------------------------------------------------------------
    def _register(self) -> None:
        app = self.app
        for p in self.pipelines:
            app.agent(p.topic, name=f"{p.spec.name}-features")(self._agent_for(p))
        app.timer(self.cfg.flush_interval_s)(self._on_timer)
        app.timer(5.0)(self._update_lag)
        app.timer(self.cfg.online_check_interval_s)(self._check_online)
        app.timer(self.cfg.state_sweep_interval_s)(self._sweep)
        # (Faust's Signal.connect is typed for handlers that take a signal= keyword)
        app.on_partitions_revoked.connect(self._on_revoked)  # type: ignore[arg-type]
        app.on_partitions_assigned.connect(self._on_assigned)  # type: ignore[arg-type]
        app.on_before_shutdown.connect(self._on_shutdown)  # type: ignore[arg-type]

    def _agent_for(self, p: Pipeline) -> Any:
        async def agent(stream: Any) -> None:
            # In batches (``noack_take``: up to take_max records, or what came within take_within_s):
            # the agent resumes once per batch instead of once per record.
            async for events in stream.noack_take(self.cfg.take_max, within=self.cfg.take_within_s):
                owned = self._owned
                for event in events:
                    # A batch taken before a rebalance may hold records of partitions this worker
                    # no longer owns: their new owner processes them (they are not acked here)
                    if event.message.tp in owned:
                        self._handle(p, event)
                        self._unacked.append((stream, event))
                    else:
                        self.metrics.skipped_revoked.inc()
                if len(self._unacked) >= self.cfg.max_unacked_records:
                    await self.flush(final=True)  # backpressure: write and ack before consuming on
                elif len(p.dirty) >= self.cfg.max_batch_rows:
                    await self.flush()
        agent.__name__ = agent.__qualname__ = f"{p.spec.name}_agent"
        return agent

    def _handle(self, p: Pipeline, event: Any) -> None:
        """Process one record (acked by a later offline flush)."""
        msg = event.message
        p.events_in.inc()
        self._positions[msg.tp] = msg.offset

        def state_of(entity_id: str) -> Any:  # decoded once per flush, kept in p.live
            state = p.live.get(entity_id)
            if state is None:
                state = p.live[entity_id] = p.spec.state_type.unpack(p.table.get(entity_id))
            return state

        key = msg.key if isinstance(msg.key, bytes | None) else bytes(msg.key)
        done = apply_record(p.spec, self.proc_cfg, event.value, key,
                            int(msg.timestamp * 1000) if msg.timestamp else None, state_of, p.corrections,
                            p.event_rows, p.feature_rows, next(self._revision))
        self.metrics.count(p.events_out, done, msg.topic)
        if done.dead_letter is not None:
            self._dead_letter(msg, done.dead_letter)
            return
        assert done.entity_id is not None and done.result is not None
        if done.event_time > p.watermark.get(msg.partition, 0):
            p.watermark[msg.partition] = done.event_time
        if done.result.dirty and done.entity_id not in p.dirty:
            # packed (table value, online write, changelog) once per flush, not per event
            p.dirty[done.entity_id] = (msg.timestamp * 1000.0 if msg.timestamp else now_ms(), msg.partition)

    def _write_changelog(self, p: Pipeline, states: dict[str, tuple[bytes, int]]) -> None:
        """One changelog record per entity per offline flush, in the table's own format (json
        key, raw value) and partition, so that Faust's recovery reads it as usual. Writing it
        per event through the Faust table held a worker at 2.7k events/s; this way it does 3.5k."""
        topic = p.table.changelog_topic.get_topic_name()
        for entity_id, (packed, partition) in states.items():
            key = orjson.dumps(entity_id)
            while True:
                try:
                    self._changelog.produce(topic, key=key, value=packed, partition=partition)
                    break
                except BufferError:
                    self._changelog.poll(0.05)
        self._changelog.poll(0)

    def _on_changelog_delivery(self, err: Any, msg: Any) -> None:
        if err is not None:  # kept to produce again: the flush is retried until all are delivered
            self._changelog_errors.append((msg.topic(), msg.partition(), msg.key(), msg.value(), str(err)))

    def _flush_changelog(self) -> None:
        """Every changelog record produced so far delivered (acks=all), or raise (the failed
        ones are produced again first, so a retry delivers them)."""
        left = self._changelog.flush(10)
        if self._changelog_errors:
            failed, self._changelog_errors = self._changelog_errors, []
            for topic, partition, key, value, _ in failed:
                self._changelog.produce(topic, key=key, value=value, partition=partition)
            raise RuntimeError(f"{len(failed)} changelog records failed ({failed[0][4]}); producing them again")
        if left:
            raise RuntimeError(f"{left} changelog records not yet delivered (is the broker away?)")

    async def _retrying(self, sink: str, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)`` off the event loop until it succeeds: a failing sink holds the flush
        (and so every ack) and is retried with backoff. Once a shutdown or a rebalance has
        waited ``give_up_after_s``, the worker exits (status 75): a restart replays every
        record that was not acked, as after kill -9."""
        loop = asyncio.get_running_loop()
        delay, failures = 0.1, 0
        while True:
            try:
                out = await loop.run_in_executor(None, fn, *args)
            except Exception as exc:  # noqa: BLE001 - any failure of a sink is retried the same way
                failures += 1
                self.metrics.sink_errors.labels(sink).inc()
                self.metrics.sink_stalled.labels(sink).set(1)
                if failures == 1 or failures % 20 == 0:
                    log.warning("%s write failed (%s: %s), attempt %d; retrying, nothing is acked meanwhile",
                                sink, type(exc).__name__, str(exc)[:300], failures)
                if self._give_up_at is not None and time.monotonic() >= self._give_up_at:
                    log.critical("%s still failing %.0f s into a shutdown or rebalance: exiting without acking "
                                 "(a restart replays the unacked records)", sink, self.cfg.give_up_after_s)
                    logging.shutdown()
                    os._exit(75)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            if failures:
                self.metrics.sink_stalled.labels(sink).set(0)
                log.warning("%s writes recovered after %d failed attempts", sink, failures)
            return out

    def _dead_letter(self, msg: Any, reason: str) -> None:
        payload = msg.value if isinstance(msg.value, bytes) else bytes(msg.value or b"")
        dl = DeadLetter(reason=reason, source_topic=msg.topic, partition=msg.partition, offset=msg.offset,
                        payload=payload[:10_000].decode("utf-8", "replace"), failed_at=int(now_ms()))
        self.dlq_topic.send_soon(key=msg.key, value=encode(dl))
        self.metrics.dead_letters.labels(msg.topic).inc()

    # -- flushing ----------------------------------------------------------------------
    async def _on_timer(self) -> None:
        await self.flush()

    async def flush(self, final: bool = False) -> None:
        """Write pending online state; every offline interval (or at the end) append the
        offline rows and ack the events whose outputs are now durable.

        Everything a flush writes and acks is taken in one step before its first await:
        events that arrive while it writes belong to the next flush, so no event is acked
        before its own online, offline and changelog writes are done."""
        async with self._flush_lock:
            for p in self.pipelines:  # each state changed since the last flush, packed once
                for entity_id, (produced, partition) in p.dirty.items():
                    state = p.live[entity_id]
                    packed = state.pack()
                    p.table.data[entity_id] = packed  # the table's value; its changelog: _write_changelog
                    # (Faust's memory store knows partitions only of entries it recovered: it drops
                    # the revoked ones by this, and the sweep tombstones in the right partition)
                    p.table.data._key_partition[entity_id] = partition  # noqa: SLF001
                    p.batch.put(entity_id, packed, state.last_ts, produced, partition)
                p.dirty, p.live = {}, {}
            batches = [(p, p.batch) for p in self.pipelines if len(p.batch)]
            for p, batch in batches:
                p.batch = OnlineBatch()
                p.changelog.update({e: (packed, batch.partitions[e]) for e, (packed, _) in batch.rows.items()})
            due = final or time.monotonic() - self._last_offline >= self.cfg.offline_flush_interval_s
            unacked: list[tuple[Any, Any]] = []
            offline: list[tuple[str, list[Any]]] = []
            changelog: list[tuple[Pipeline, dict[str, tuple[bytes, int]]]] = []
            if due:
                self._corrections(final)
            if due and self._unacked:
                unacked, self._unacked = self._unacked, []
                for p in self.pipelines:
                    offline += [(p.spec.event_dataset, p.event_rows), (p.spec.feature_dataset, p.feature_rows)]
                    changelog.append((p, p.changelog))
                    p.event_rows, p.feature_rows, p.changelog = [], ValueRows(p.spec), {}

            for p, batch in batches:
                t0 = time.perf_counter()
                await self._retrying("online", p.online.write, batch)
                self.metrics.push_seconds.observe(time.perf_counter() - t0)
                self.metrics.push_rows.observe(len(batch))
                done = now_ms()
                for produced in batch.first_seen_ms.values():
                    self.metrics.freshness.observe(max(0.0, (done - produced) / 1000.0))
            if not unacked:
                return
            for dataset, rows in offline:
                n = await self._retrying("offline", self.offline.append, dataset, rows)
                self.metrics.offline_rows.labels(dataset).inc(n)
            self._corrections_unwritten = 0
            # Only now the states that produced those rows go to the changelog, and it must
            # be durable before the events it covers are acked.
            for p, states in changelog:
                self._write_changelog(p, states)
            await self._retrying("changelog", self._flush_changelog)
            # dead letters (sent with Faust's producer, acks=all) delivered before their records' acks
            await self.app.producer.flush()
            self._last_offline = time.monotonic()
            if any(p.corrections for p in self.pipelines):
                # Some out-of-order corrections are still to write. Faust commits a partition up
                # to the end of the first run of acked offsets, past any unacked one, so holding
                # back only the late event would not keep it uncommitted: nothing is acked until
                # they are all durable (a few flushes); a crash meanwhile replays and redoes them.
                self._unacked[:0] = unacked
                return
            for stream, event in unacked:
                await stream.ack(event)

    def _corrections(self, final: bool) -> None:
        """Out-of-order corrections, coalesced per entity: at most ``max_corrections_per_flush``
        rows per flush (all of them when ``final``). An entity whose corrections are all
        written is done; while any entity's are not, no record is acked (below)."""
        budget = None if final else self.cfg.max_corrections_per_flush
        for p in self.pipelines:
            def state_of(entity_id: str, p: Pipeline = p) -> Any:
                return p.spec.state_type.unpack(p.table.get(entity_id))

            budget, written, touched = drain_corrections(p.spec, p.corrections, state_of, next(self._revision),
                                                         p.feature_rows, budget, feature_values)
            self._corrections_unwritten += touched
            self.metrics.corrections.inc(written)

    async def _on_revoked(self, app: Any, revoked: Any = None, **_: Any) -> None:
        self._owned = self._owned - set(revoked or ())  # (first: batches taken meanwhile skip them)
        self._give_up_at = time.monotonic() + self.cfg.give_up_after_s
        try:
            await self.flush(final=True)
        finally:
            self._give_up_at = None
        for tp in revoked or ():
            if self._positions.pop(tp, None) is not None:
                self.metrics.lag.remove(tp.topic, str(tp.partition))

    async def _on_assigned(self, app: Any, assigned: Any = None, **_: Any) -> None:
        self._owned = set(assigned or ())  # (the whole new assignment, sent before its records flow)
        mine = [tp for tp in (assigned or ()) if tp.topic == self.cfg.transactions_topic]
        self.metrics.assigned.set(len(mine))

    async def _on_shutdown(self, app: Any, **_: Any) -> None:
        log.info("shutdown: flushing pending writes")
        self._give_up_at = time.monotonic() + self.cfg.give_up_after_s
        await self.flush(final=True)

    def _owned_entries(self, p: Pipeline) -> list[tuple[str, bytes, int]]:
        """(entity, packed state, partition) of the table's entries in this worker's partitions."""
        owned = {tp.partition for tp in self.app.consumer.assignment() if tp.topic == p.topic_name}
        store = p.table.data
        return [(e, v, part) for e, v in list(store.data.items())
                if v is not None and (part := store._key_partition.get(e)) in owned]  # noqa: SLF001

    async def _check_online(self) -> None:
        """After Redis restarts (a new run_id) its last second of writes may be gone: rewrite
        every state this worker owns, so the online store equals the table again."""
        loop = asyncio.get_running_loop()
        server = await loop.run_in_executor(None, online_server_id, self._store)
        if server is None or server == self._online_id:
            return
        if self._online_id is not None:
            log.warning("the online store restarted (run_id %s -> %s): rewriting every owned state",
                        self._online_id, server)
            async with self._flush_lock:
                for p in self.pipelines:
                    await self._resync(p)
            self.metrics.resyncs.inc()
        self._online_id = server

    async def _resync(self, p: Pipeline, chunk: int = 5_000) -> None:
        items = self._owned_entries(p)
        unpack, now = p.spec.state_type.unpack, now_ms()
        for i in range(0, len(items), chunk):
            batch = OnlineBatch()
            for e, v, part in items[i:i + chunk]:
                batch.put(e, v, unpack(v).last_ts, now, part)
            await self._retrying("online", p.online.write, batch)
            self.metrics.resync_rows.inc(len(batch))

    async def _sweep(self) -> None:
        """Forget entities whose newest event is ``state_ttl_s`` older than their partition's
        newest: delete the entry and tombstone it in the changelog (so a recovery forgets it
        too). Redis forgets their keys by its own TTL."""
        ttl_ms = self.cfg.state_ttl_s * 1000
        loop = asyncio.get_running_loop()
        async with self._flush_lock:
            for p in self.pipelines:
                store = p.table.data
                busy = p.live.keys() | p.dirty.keys() | p.corrections.keys() | p.changelog.keys()
                items = [(e, v, part) for e, v, part in self._owned_entries(p)
                         if e not in busy and part in p.watermark]
                unpack, horizon = p.spec.state_type.unpack, dict(p.watermark)

                def quiet(items: list = items, unpack: Any = unpack, horizon: dict = horizon) -> list:
                    return [(e, v, part) for e, v, part in items if unpack(v).last_ts < horizon[part] - ttl_ms]

                expired = await loop.run_in_executor(None, quiet)
                topic = p.table.changelog_topic.get_topic_name()
                gone = 0
                for e, v, part in expired:
                    if store.data.get(e) is not v or e in p.live:  # touched meanwhile: keep it
                        continue
                    del store.data[e]
                    store._key_partition.pop(e, None)  # noqa: SLF001
                    self._changelog.produce(topic, key=orjson.dumps(e), value=None, partition=part)
                    gone += 1
                if gone:
                    await self._retrying("changelog", self._flush_changelog)
                    self.metrics.expired.labels(p.spec.name).inc(gone)
                    log.info("forgot %d quiet %s entities (tombstoned)", gone, p.spec.name)
                self.metrics.entities.labels(p.spec.name).set(len(store.data))

    async def _update_lag(self) -> None:
        """Lag per owned partition; a partition revoked meanwhile is skipped (a timer that
        raises would crash the worker)."""
        consumer = self.app.consumer
        owned = consumer.assignment()
        for tp, offset in list(self._positions.items()):
            if tp not in owned:
                self._positions.pop(tp, None)
                continue
            try:
                high = consumer.highwater(tp)
            except AssertionError:  # revoked between the two calls
                continue
            if high is not None:
                self.metrics.lag.labels(tp.topic, str(tp.partition)).set(max(0, high - offset - 1))

    def run(self) -> None:
        logging.getLogger("feast").setLevel(logging.WARNING)
        self.metrics.serve(self.cfg.metrics_port, self.stack.host)
        worker = faust.Worker(self.app, loglevel="INFO", quiet=True)
        worker.execute_from_commandline()
