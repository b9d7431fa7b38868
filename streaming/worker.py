"""The Faust worker: consume transactions, keep per-card window state in a changelog-backed
Faust table, write features online (Feast/Redis) and offline (parquet), dead-letter bad
records. Run it with ``python -m streaming worker``; several workers share one group.

Delivery: at-least-once with idempotent effects. Events are acked (so their offsets can be
committed) only after both sinks hold their outputs; Faust flushes the changelog before it
commits. A replay after a crash finds its events in the recovered state and re-writes the
same outputs instead of counting them twice.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from typing import Any

import faust

from core import feast_store
from core.card_state import CardState
from core.contracts import DeadLetter, InvalidEvent, Transaction, decode, encode
from core.settings import StackSettings
from streaming.metrics import WorkerMetrics
from streaming.processor import Outcome, ProcessorConfig, process, transaction_row
from streaming.settings import StreamingSettings
from streaming.sinks import (
    FEATURE_DATASET,
    TXN_DATASET,
    FeastOnlineSink,
    FeastPushSink,
    OfflineLog,
    OnlineBatch,
    now_ms,
)

log = logging.getLogger("streaming.worker")


class FeatureWorker:
    def __init__(self, stack: StackSettings, cfg: StreamingSettings) -> None:
        self.stack, self.cfg = stack, cfg
        self.proc_cfg = ProcessorConfig(cfg.allowed_lateness_ms, cfg.max_events_per_card)
        self.metrics = WorkerMetrics()
        self.app = faust.App(
            cfg.app_id, broker=f"kafka://{stack.kafka_bootstrap}", store="memory://",
            topic_partitions=cfg.partitions, topic_replication_factor=1, web_enabled=False,
            broker_commit_interval=cfg.commit_interval_s, consumer_auto_offset_reset="earliest",
            stream_wait_empty=False, producer_acks=-1, table_standby_replicas=0,
            # Batch changelog and dead-letter sends: one produce request per message (the
            # default, linger 0) cost more than all the feature work.
            producer_linger=0.01, producer_max_batch_size=1_048_576,
        )
        self.txn_topic = self.app.topic(cfg.transactions_topic, key_type=bytes, value_type=bytes,
                                        key_serializer="raw", value_serializer="raw")
        self.dlq_topic = self.app.topic(cfg.dead_letters_topic, key_type=bytes, value_type=bytes,
                                        key_serializer="raw", value_serializer="raw")
        self.table = self.app.Table("card-state", default=None, key_type=str, value_type=bytes,
                                    partitions=cfg.partitions)
        store = feast_store.open_store(stack)
        self.online = FeastOnlineSink(store) if cfg.online_writer == "direct" else FeastPushSink(store)
        self.offline = OfflineLog(feast_store.offline_dir(stack, "").parent / "offline")
        self._batch = OnlineBatch()
        self._txn_rows: list[dict[str, Any]] = []
        self._feature_rows: list[dict[str, Any]] = []
        self._unacked: list[tuple[Any, Any]] = []  # (stream, event) waiting for durable outputs
        self._last_offline = time.monotonic()
        self._flush_lock = asyncio.Lock()
        self._revision = itertools.count(int(time.time() * 1000) * 1000)
        self._positions: dict[Any, int] = {}
        # label children bound once (labels() is a dict lookup under a lock, per event)
        self._events_in = self.metrics.events_in.labels(cfg.transactions_topic)
        self._events_out = {o: self.metrics.events_out.labels(str(o)) for o in Outcome}
        self._register()

    # -- wiring ----------------------------------------------------------------------
    def _register(self) -> None:
        app = self.app
        app.agent(self.txn_topic, name="card-features")(self._agent)
        app.timer(self.cfg.flush_interval_s)(self._on_timer)
        app.timer(5.0)(self._update_lag)
        app.on_partitions_revoked.connect(self._on_revoked)
        app.on_partitions_assigned.connect(self._on_assigned)
        app.on_before_shutdown.connect(self._on_shutdown)

    async def _agent(self, stream: Any) -> None:
        s = stream.noack()
        async for event in s.events():
            self._handle(event)
            self._unacked.append((s, event))
            if len(self._batch) >= self.cfg.max_batch_rows:
                await self.flush()

    def _handle(self, event: Any) -> None:
        msg = event.message
        self._events_in.inc()
        self._positions[msg.tp] = msg.offset
        try:
            txn = decode(event.value, Transaction)
        except InvalidEvent as exc:
            self._dead_letter(msg, str(exc))
            return
        state = CardState.unpack(self.table.get(txn.card_id))
        result = process(state, txn, self.proc_cfg, next(self._revision))
        self._events_out[result.outcome].inc()
        # Logged again on a replay too: its first copy may not have reached the disk
        # (readers drop duplicate event ids).
        self._txn_rows.append(transaction_row(txn))
        self._feature_rows.extend(result.feature_rows)
        if result.dirty:
            packed = state.pack()
            self.table[txn.card_id] = packed
            self._batch.put(txn.card_id, packed, state.last_ts,
                            msg.timestamp * 1000.0 if msg.timestamp else now_ms())

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
        offline rows and ack the events whose outputs are now durable."""
        async with self._flush_lock:
            loop = asyncio.get_running_loop()
            if len(self._batch):
                batch, self._batch = self._batch, OnlineBatch()
                t0 = time.perf_counter()
                await loop.run_in_executor(None, self.online.write, batch)
                self.metrics.push_seconds.observe(time.perf_counter() - t0)
                self.metrics.push_rows.observe(len(batch))
                done = now_ms()
                for produced in batch.first_seen_ms.values():
                    self.metrics.freshness.observe(max(0.0, (done - produced) / 1000.0))
            due = time.monotonic() - self._last_offline >= self.cfg.offline_flush_interval_s
            if not (due or final) or not self._unacked:
                return
            txn_rows, self._txn_rows = self._txn_rows, []
            feature_rows, self._feature_rows = self._feature_rows, []
            unacked, self._unacked = self._unacked, []
            n_txn = await loop.run_in_executor(None, self.offline.append, TXN_DATASET, txn_rows)
            n_feat = await loop.run_in_executor(None, self.offline.append, FEATURE_DATASET, feature_rows)
            self.metrics.offline_rows.labels(TXN_DATASET).inc(n_txn)
            self.metrics.offline_rows.labels(FEATURE_DATASET).inc(n_feat)
            self._last_offline = time.monotonic()
            for stream, event in unacked:
                await stream.ack(event)

    async def _on_revoked(self, app: Any, revoked: Any = None, **_: Any) -> None:
        await self.flush(final=True)
        for tp in revoked or ():
            if self._positions.pop(tp, None) is not None:
                self.metrics.lag.remove(tp.topic, str(tp.partition))

    async def _on_assigned(self, app: Any, assigned: Any = None, **_: Any) -> None:
        mine = [tp for tp in (assigned or ()) if tp.topic == self.cfg.transactions_topic]
        self.metrics.assigned.set(len(mine))

    async def _on_shutdown(self, app: Any, **_: Any) -> None:
        log.info("shutdown: flushing pending writes")
        await self.flush(final=True)

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
