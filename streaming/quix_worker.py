"""The Quix Streams engine (``STREAMING_ENGINE=quix``): the same pure ``process()``, entity
specs, online and offline sinks and read function as the Faust worker, on Quix Streams
(confluent-kafka, RocksDB state with changelog topics, checkpoints).

How it maps onto Quix:

- each event kind is a StreamingDataFrame over its topic (raw bytes), with one stateful
  ``update`` per record; the entity's state lives in Quix's state store (RocksDB, backed by a
  changelog topic) as our packed bytes;
- a state is decoded once per checkpoint (kept in ``live``) and packed once per change,
  when it is written online (every ``flush_interval_s``) or at the latest in the sink's
  ``flush``, which Quix calls at every checkpoint before it produces the changelogs and
  commits the offsets; a state packed at a checkpoint stays decoded for the next ones
  (``kept``, up to ``state_cache_entities``), taken again only while RocksDB's committed
  bytes are exactly those it packed; offline rows are converted to Arrow (column-wise,
  ``ValueRows``) at the same 100 ms steps and
  handed to a writer thread that appends them to the checkpoint's hidden files (one per
  dataset and date) while the loop goes on; the checkpoint seals them (fsync, rename): so a
  record's offset is committed only after its online write, its offline rows (fsynced) and
  its dead letter (acks=all, flushed) are durable, and the changelog holds the state that
  produced them;
- between checkpoints the states changed since the last online write are written online
  every ``flush_interval_s`` (100 ms), so freshness does not wait for a checkpoint (the
  online store may run ahead of the committed offsets, as with Faust: a replay rewrites the
  same states); a failed write there is left to the checkpoint, which writes every state;
- a failing sink (Redis, disk, broker) raises ``SinkBackpressureError``: Quix drops the
  checkpoint (its state changes too), pauses the partitions, seeks back to the committed
  offsets and processes them again after ``retry_after``;
- out-of-order corrections are coalesced per entity and computed at most
  ``max_corrections_per_flush`` rows per 100 ms step, the rest at the checkpoint (which
  commits its offsets whole, so they are all written within it; at the event cap they are
  skipped and counted);
- maintenance runs between records, as Quix has no timers: every
  ``online_check_interval_s`` the Redis run_id is read and, when it changed (a restart that
  may have lost writes), every owned state is rewritten online from the state store; every
  ``state_sweep_interval_s`` the store is scanned and entities quiet for ``state_ttl_s`` are
  deleted in the current checkpoint (Quix writes their changelog tombstones). A scan reads
  and unpacks every owned state (an unpack alone is about 2 µs; the scan was not timed).

Delivery: at-least-once with idempotent effects, as for the Faust worker.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition
from quixstreams import Application, message_context
from quixstreams.kafka.configuration import ConnectionConfig
from quixstreams.sinks import BaseSink, SinkBackpressureError
from quixstreams.state.rocksdb import RocksDBOptions

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
from streaming.sinks import (
    FeastOnlineSink,
    FeastPushSink,
    OfflineLog,
    OnlineBatch,
    StagedOffline,
    now_ms,
    online_server_id,
)

log = logging.getLogger("streaming.quix")

STATE_KEY = b"s"  # (keys go through the same dumps as values: bytes)


def _raw(value: Any) -> Any:
    return value


def committed(tx: Any, key: bytes | None) -> bytes | None:
    """The entity's state as committed in RocksDB (not the transaction's changes): the store
    partition's own read, by Quix's key (the message key, ``|``, the state key)."""
    if key is None:
        return None
    return tx._partition.get_or_create_column_family("default").get(key + b"|" + STATE_KEY)  # noqa: SLF001


@dataclass
class QuixPipeline:
    spec: EntitySpec
    topic_name: str
    online: Any
    #: entity -> (its decoded state, (Quix's store transaction, the state's key prefix),
    #: partition, produce time of the oldest pending event): decoded once per checkpoint,
    #: packed at its end
    live: dict[str, tuple[Any, Any, int, float]] = field(default_factory=dict)
    #: entity -> produce time of its oldest event not yet written online (written every
    #: flush_interval_s, between checkpoints, like the Faust worker's online flushes)
    unwritten: dict[str, float] = field(default_factory=dict)
    #: entity -> its state packed, as last put into Quix's state (dropped when it changes):
    #: packed and stored between checkpoints with the online writes, so that a checkpoint
    #: only packs what changed since
    packed: dict[str, bytes] = field(default_factory=dict)
    corrections: dict[str, tuple[int, int]] = field(default_factory=dict)
    event_rows: list[dict[str, Any]] = field(default_factory=list)
    #: (``ValueRows``: made column-wise into Arrow)
    feature_rows: list[Any] = field(default_factory=list)
    #: the checkpoint's offline rows, converted to Arrow at the 100 ms steps and written by a
    #: thread of their own as they come (visible once the checkpoint seals them)
    staged: Any = None
    events_in: Any = None
    events_out: dict[Outcome, Any] = field(default_factory=dict)
    #: the StreamingDataFrame (its stream id names its state store)
    sdf: Any = None
    #: source partition -> newest event time seen on it (when its quiet entities expire)
    watermark: dict[int, int] = field(default_factory=dict)
    #: entity -> (its state decoded, its packed bytes) as this worker last packed it at a
    #: checkpoint: taken instead of a decode when RocksDB's committed value is still exactly
    #: those bytes (one read, no Quix transaction layers, no unpack); so a dropped or
    #: abandoned checkpoint, or a partition that moved and came back, can never serve a state
    #: that is not the committed one. At most ``cache_size`` entities (the older half goes)
    kept: dict[str, tuple[Any, bytes]] = field(default_factory=dict)
    cache_size: int = 0

    def reset(self, dropped: bool) -> None:
        """After a checkpoint: sealed, or ``dropped`` (its offline files deleted)."""
        if not dropped and self.cache_size:
            kept, packed = self.kept, self.packed
            for entity_id, (st, _, _, _) in self.live.items():
                if entity_id in packed:  # (the others did not change: their bytes are not at hand)
                    kept[entity_id] = (st, packed[entity_id])
            if len(kept) > self.cache_size:
                self.kept = dict(itertools.islice(kept.items(), len(kept) - self.cache_size // 2, None))
        self.live, self.corrections, self.event_rows, self.feature_rows = {}, {}, [], ValueRows(self.spec)
        self.unwritten, self.packed = {}, {}
        if dropped:
            self.staged.abort()

    def pack(self, entity_id: str) -> bytes:
        """The entity's state packed, and put into Quix's state (once per change)."""
        packed = self.packed.get(entity_id)
        if packed is None:
            st, (tx, prefix), _, _ = self.live[entity_id]
            packed = self.packed[entity_id] = st.pack()
            tx.set(STATE_KEY, packed, prefix=prefix)
        return packed

    def convert_rows(self) -> None:
        """The offline rows so far as Arrow tables, handed to the offline writer (a chunk at a
        time, between checkpoints)."""
        for dataset, rows in ((self.spec.event_dataset, self.event_rows), (self.spec.feature_dataset,
                                                                            self.feature_rows)):
            if rows:
                self.staged.add(dataset, OfflineLog.table(rows))
        self.event_rows, self.feature_rows = [], ValueRows(self.spec)


class QuixFeatureWorker:
    def __init__(self, stack: StackSettings, cfg: StreamingSettings) -> None:
        self.stack, self.cfg = stack, cfg
        self.proc_cfg = ProcessorConfig(cfg.allowed_lateness_ms, cfg.max_events_per_card, cfg.max_future_skew_ms)
        self.metrics = WorkerMetrics()
        self._client_id = f"{cfg.app_id}-{uuid.uuid4().hex[:8]}"  # finds this member in the group
        conn = kafka.client_config(stack, {})
        state_dir = stack.data_dir / "quix" / cfg.app_id
        state_dir.mkdir(parents=True, exist_ok=True)
        self.app = Application(
            broker_address=ConnectionConfig.from_librdkafka_dict(conn, ignore_extras=True),
            consumer_group=cfg.app_id, auto_offset_reset="earliest",
            # a checkpoint (state, sinks, offsets) as often as the Faust worker's offline flush
            commit_interval=cfg.offline_flush_interval_s, state_dir=str(state_dir),
            # our states are packed bytes already: stored as they are
            rocksdb_options=RocksDBOptions(dumps=_raw, loads=_raw),
            loglevel="WARNING", processing_guarantee="at-least-once",
            consumer_extra_config={"client.id": self._client_id},
            producer_extra_config={"acks": "all", "enable.idempotence": True},
        )
        self._dlq = Producer(kafka.client_config(stack, {"acks": "all", "enable.idempotence": True,
                                                         "linger.ms": 5}))
        store = self._store = feast_store.open_store(stack)
        self.offline = OfflineLog(feast_store.offline_root(stack))
        self.offline.remove_stale()  # (files a killed worker was writing)
        self._revision = Revisions()
        self.pipelines = [self._pipeline(CARD, cfg.transactions_topic, store)]
        if cfg.clicks_topic:
            self.pipelines.append(self._pipeline(USER, cfg.clicks_topic, store))
        self.metrics.corrections_pending.set_function(lambda: sum(len(p.corrections) for p in self.pipelines))
        self._stop = threading.Event()
        self._last_online = time.monotonic()
        #: the online store's Redis run_id as last seen; when it changes, every state is rewritten
        self._online_id: str | None = None
        self._next_check = 0.0
        self._next_sweep = time.monotonic() + cfg.state_sweep_interval_s

    def _pipeline(self, spec: EntitySpec, topic_name: str, store: Any) -> QuixPipeline:
        online = (FeastOnlineSink(store, spec.online_view, spec.join_key) if self.cfg.online_writer == "direct"
                  else FeastPushSink(store, spec.push_source, spec.join_key))
        p = QuixPipeline(spec, topic_name, online, feature_rows=ValueRows(spec),
                         cache_size=self.cfg.state_cache_entities,
                         events_in=self.metrics.events_in.labels(topic_name),
                         events_out={o: self.metrics.events_out.labels(f"{spec.name}:{o}") for o in Outcome},
                         staged=StagedOffline(self.offline))
        topic = self.app.topic(topic_name, key_deserializer="bytes", value_deserializer="bytes")
        sdf = self.app.dataframe(topic)
        # The state store is ours to open per entity (``state_of``): a stateful ``update``
        # would build a State for every record, though one per entity per checkpoint is used.
        sdf.register_store()
        sdf = sdf.update(self._handler_for(p, sdf), metadata=True)
        sdf.sink(_CheckpointSink(self, p))
        p.sdf = sdf
        return p

    # -- per record --------------------------------------------------------------------
    def _handler_for(self, p: QuixPipeline, sdf: Any) -> Any:
        context = sdf.processing_context
        reads_kept, reads_store = (self.metrics.state_reads.labels(source) for source in ("kept", "store"))

        def handle(value: bytes, key: bytes | None, timestamp: int, headers: Any) -> None:
            ctx = message_context()
            p.events_in.inc()
            produced = float(timestamp or now_ms())

            def state_of(entity_id: str) -> Any:  # decoded once per checkpoint, kept in p.live
                held = p.live.get(entity_id)
                if held is None:
                    # (what Quix's stateful functions get, without a State object per entity: the
                    # record's key prefixes the state)
                    tx = context.checkpoint.get_store_transaction(stream_id=sdf.stream_id, partition=ctx.partition)
                    kept = p.kept.pop(entity_id, None)
                    if kept is not None and committed(tx, key) == kept[1]:
                        st = kept[0]
                        reads_kept.inc()
                    else:
                        st = p.spec.state_type.unpack(tx.get(STATE_KEY, prefix=key))
                        reads_store.inc()
                    held = p.live[entity_id] = (st, (tx, key), ctx.partition, produced)
                return held[0]

            done = apply_record(p.spec, self.proc_cfg, value, key, timestamp, state_of, p.corrections,
                                p.event_rows, p.feature_rows, next(self._revision))
            self.metrics.count(p.events_out, done, ctx.topic)
            if done.dead_letter is not None:
                self._dead_letter(ctx, key, value, done.dead_letter)
                return
            assert done.entity_id is not None and done.result is not None
            if done.event_time > p.watermark.get(ctx.partition, 0):
                p.watermark[ctx.partition] = done.event_time
            if done.result.dirty:
                p.unwritten.setdefault(done.entity_id, produced)
                p.packed.pop(done.entity_id, None)
            now = time.monotonic()
            if now - self._last_online >= self.cfg.flush_interval_s:
                self._write_online_between_checkpoints()
            if now >= self._next_check or now >= self._next_sweep:
                self._maintain(now)

        return handle

    # -- maintenance, between records (Quix has no timers: it runs at the next record) ---
    def _maintain(self, now: float) -> None:
        if now >= self._next_check:
            self._next_check = now + self.cfg.online_check_interval_s
            server = online_server_id(self._store)
            if server is not None and server != self._online_id:
                if self._online_id is None or self._resync():
                    self._online_id = server  # (a failed resync is tried again at the next check)
        if now >= self._next_sweep:
            self._next_sweep = now + self.cfg.state_sweep_interval_s
            self._sweep()

    def _owned(self, p: QuixPipeline) -> list[tuple[int, Any]]:
        """This worker's state store partitions of the pipeline: (partition, store partition)."""
        store = self.app._state_manager.get_store(p.sdf.stream_id)  # noqa: SLF001
        return sorted(store.partitions.items())

    @staticmethod
    def _entries(store_partition: Any) -> Any:
        """(entity id bytes, packed state) of every committed state in a store partition (Quix
        keys a state by its message key, ``|`` and the state key)."""
        suffix = b"|" + STATE_KEY
        for key, value in store_partition.iter_items(b""):
            if key.endswith(suffix):
                yield key[:-len(suffix)], value

    def _resync(self, chunk: int = 5_000) -> bool:
        """After Redis restarts (a new run_id) its last second of writes may be gone: rewrite
        every state this worker owns (the committed ones from the store, the ones changed
        since at the next online write). False when a write failed."""
        log.warning("the online store restarted (new run_id): rewriting every owned state")
        written = 0
        try:
            for p in self.pipelines:
                unpack, now = p.spec.state_type.unpack, now_ms()
                for entity_id in p.live:  # newer than the store: written with the next online write
                    p.unwritten.setdefault(entity_id, now)
                for partition, store_partition in self._owned(p):
                    batch = OnlineBatch()
                    for key, packed in self._entries(store_partition):
                        entity_id = key.decode()
                        if entity_id not in p.live:
                            batch.put(entity_id, packed, unpack(packed).last_ts, now, partition)
                        if len(batch) >= chunk:
                            p.online.write(batch)
                            written, batch = written + len(batch), OnlineBatch()
                    p.online.write(batch)
                    written += len(batch)
        except Exception as exc:  # noqa: BLE001 - tried again at the next check
            self.metrics.sink_errors.labels("online").inc()
            log.warning("resync failed (%s: %s); tried again in %.0f s", type(exc).__name__, str(exc)[:300],
                        self.cfg.online_check_interval_s)
            return False
        finally:
            self.metrics.resync_rows.inc(written)
        self.metrics.resyncs.inc()
        return True

    def _sweep(self) -> None:
        """Forget entities whose newest event is ``state_ttl_s`` older than their partition's
        newest: delete the state in this checkpoint (Quix writes the changelog tombstone with
        it, so a recovery forgets it too). Redis forgets their keys by its own TTL."""
        ttl_ms = self.cfg.state_ttl_s * 1000
        checkpoint = self.app._processing_context.checkpoint  # noqa: SLF001
        for p in self.pipelines:
            unpack, kept, gone = p.spec.state_type.unpack, 0, 0
            for partition, store_partition in self._owned(p):
                newest = p.watermark.get(partition)
                if newest is None:  # nothing seen on it yet: no notion of "quiet"
                    kept += sum(1 for _ in self._entries(store_partition))
                    continue
                tx = None
                for key, packed in self._entries(store_partition):
                    if key.decode() in p.live or unpack(packed).last_ts >= newest - ttl_ms:
                        kept += 1
                        continue
                    if tx is None:
                        tx = checkpoint.get_store_transaction(stream_id=p.sdf.stream_id, partition=partition)
                    tx.as_state(prefix=key).delete(STATE_KEY)
                    p.kept.pop(key.decode(), None)
                    gone += 1
            if gone:
                self.metrics.expired.labels(p.spec.name).inc(gone)
                log.info("forgot %d quiet %s entities (tombstoned)", gone, p.spec.name)
            self.metrics.entities.labels(p.spec.name).set(kept)

    def _dead_letter(self, ctx: Any, key: bytes | None, value: bytes | None, reason: str) -> None:
        payload = value or b""
        dl = DeadLetter(reason=reason, source_topic=ctx.topic, partition=ctx.partition, offset=ctx.offset,
                        payload=payload[:10_000].decode("utf-8", "replace"), failed_at=int(now_ms()))
        while True:
            try:
                self._dlq.produce(self.cfg.dead_letters_topic, key=key, value=encode(dl))
                break
            except BufferError:
                self._dlq.poll(0.05)
        self.metrics.dead_letters.labels(ctx.topic).inc()

    def _corrections(self, p: QuixPipeline, budget: int | None) -> None:
        """Out-of-order corrections, coalesced per entity: at most ``budget`` rows (None: all,
        at the checkpoint, which commits its offsets whole). Spread over the 100 ms steps, a
        late event on a busy card does not stall the checkpoint; an entity whose corrections
        resume later is corrected again from the earliest point a later event needs."""
        _, written, _ = drain_corrections(p.spec, p.corrections, lambda e: p.live[e][0], next(self._revision),
                                          p.feature_rows, budget, feature_values)
        self.metrics.corrections.inc(written)

    def _write_online_between_checkpoints(self) -> None:
        self._last_online = time.monotonic()
        for p in self.pipelines:
            if p.corrections:
                self._corrections(p, self.cfg.max_corrections_per_flush)
            p.convert_rows()
            if not p.unwritten:
                continue
            batch = OnlineBatch()
            for entity_id, produced in p.unwritten.items():
                st, _, partition, _ = p.live[entity_id]
                batch.put(entity_id, p.pack(entity_id), st.last_ts, produced, partition)
            try:
                self._write_online(p, batch)
            except Exception as exc:  # noqa: BLE001 - the checkpoint writes every state again, or backs off
                self.metrics.sink_errors.labels("online").inc()
                log.warning("online write failed (%s: %s); the checkpoint retries it", type(exc).__name__,
                            str(exc)[:300])
                continue
            p.unwritten = {}

    def _write_online(self, p: QuixPipeline, batch: OnlineBatch, fresh: dict[str, float] | None = None) -> None:
        """Write the batch; freshness is observed for ``fresh`` (entity -> produce time of its
        oldest event not yet online; default: the batch's own)."""
        t0 = time.perf_counter()
        p.online.write(batch)
        self.metrics.push_seconds.observe(time.perf_counter() - t0)
        self.metrics.push_rows.observe(len(batch))
        done = now_ms()
        for produced in (batch.first_seen_ms if fresh is None else fresh).values():
            self.metrics.freshness.observe(max(0.0, (done - produced) / 1000.0))

    # -- per checkpoint ----------------------------------------------------------------
    def flush(self, p: QuixPipeline) -> None:
        """Everything the checkpoint's records produced, durable before Quix writes the
        changelogs and commits: states packed (into Quix's state), online rows, offline rows,
        dead letters. A failure is Quix backpressure: the checkpoint is dropped and redone."""
        t0 = time.perf_counter()
        try:
            self._corrections(p, None)  # what the 100 ms steps left
            batch = OnlineBatch()
            for entity_id, produced in p.unwritten.items():  # (the others are online already)
                st, _, partition, _ = p.live[entity_id]
                batch.put(entity_id, p.pack(entity_id), st.last_ts, produced, partition)
            if len(batch):
                self._write_online(p, batch)
            p.convert_rows()
            for dataset, n in p.staged.seal().items():
                self.metrics.offline_rows.labels(dataset).inc(n)
            left = self._dlq.flush(30)
            if left:
                raise RuntimeError(f"{left} dead letters not delivered")
        except Exception as exc:  # noqa: BLE001 - any sink failure: redo the checkpoint later
            self.metrics.sink_errors.labels("checkpoint").inc()
            self.metrics.sink_stalled.labels("checkpoint").set(1)
            log.warning("checkpoint write failed (%s: %s); Quix replays it from the committed offsets",
                        type(exc).__name__, str(exc)[:300])
            p.reset(dropped=True)
            raise SinkBackpressureError(retry_after=1.0) from exc
        self.metrics.sink_stalled.labels("checkpoint").set(0)
        self.metrics.checkpoint_seconds.observe(time.perf_counter() - t0)
        p.reset(dropped=False)

    def _lag_loop(self) -> None:
        """Every 2 s: this member's partitions (from the group's description) and their lag
        against the group's committed offsets, with clients of its own (Quix's consumer
        belongs to its thread)."""
        from confluent_kafka.admin import AdminClient

        conf = kafka.client_config(self.stack, {})
        admin = AdminClient(conf)
        c = Consumer({**conf, "group.id": self.cfg.app_id, "enable.auto.commit": False})
        try:
            while not self._stop.wait(2.0):
                try:
                    group = admin.describe_consumer_groups([self.cfg.app_id])[self.cfg.app_id].result(timeout=5)
                    mine = [tp for m in group.members if m.client_id == self._client_id
                            for tp in (m.assignment.topic_partitions if m.assignment else [])]
                    self.metrics.assigned.set(sum(1 for tp in mine if tp.topic == self.cfg.transactions_topic))
                    if not mine:
                        continue
                    for tp in c.committed([TopicPartition(tp.topic, tp.partition) for tp in mine], timeout=5):
                        _, high = c.get_watermark_offsets(tp, timeout=5, cached=False)
                        self.metrics.lag.labels(tp.topic, str(tp.partition)).set(max(0, high - max(tp.offset, 0)))
                except Exception as exc:  # noqa: BLE001 - a metrics probe never stops the worker
                    log.debug("lag probe failed: %s", exc)
        finally:
            c.close()

    def run(self) -> None:
        logging.getLogger("feast").setLevel(logging.WARNING)
        self.metrics.serve(self.cfg.metrics_port, self.stack.host)
        threading.Thread(target=self._lag_loop, name="lag", daemon=True).start()
        try:
            self.app.run()
        finally:
            self._stop.set()
            self._dlq.flush(30)


class _CheckpointSink(BaseSink):
    """Quix calls ``flush`` at every checkpoint, before it produces the changelogs and
    commits the offsets; ``add`` per record (the handler has kept what it needs)."""

    def __init__(self, worker: QuixFeatureWorker, p: QuixPipeline) -> None:
        super().__init__()
        self.worker, self.p = worker, p

    def add(self, *args: Any, **kwargs: Any) -> None:
        return None

    def flush(self) -> None:
        self.worker.flush(self.p)

    def on_paused(self) -> None:
        self.p.reset(dropped=True)  # the checkpoint is dropped: its records are processed again

    def setup(self) -> None:
        return None

