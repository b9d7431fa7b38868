"""Baseline Faust agents for the stream benchmarks, run as their own worker processes:

- ``noop``: decode and validate each record, nothing else: the framework's ceiling;
- ``noop-take``: the same through ``Stream.noack_take`` batches (the worker's way);
- ``naive``: the same window state, but every event pushed to Feast on its own
  (``FeatureStore.push`` of a one-row DataFrame), no coalescing, no micro-batching;
- ``quix-noop``: a Quix Streams application that decodes and validates each record: the Quix
  engine's ceiling;
- ``quix-state``: the same with per-key state (RocksDB with its changelog topic): a list read
  and written back per record, keyed by card: the ceiling of a stateful Quix application;
- ``bare``: a confluent-kafka consumer, ``consume(5000)`` and a msgspec decode per record, no
  framework: the ceiling of Python on this machine.

``python -m bench.stream_baselines {noop,noop-take,naive,quix-noop,quix-state,bare}``;
settings as for ``python -m streaming worker``.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import faust
from prometheus_client import CollectorRegistry, Counter

from core import feast_store
from core.card_state import CardState
from core.contracts import InvalidEvent, Transaction, decode
from core.prom import single_process
from core.settings import StackSettings
from streaming.processor import ProcessorConfig, process
from streaming.settings import StreamingSettings
from streaming.sinks import FeastPushSink, OnlineBatch


def quix_noop(stack: StackSettings, cfg: StreamingSettings, events: Counter, stateful: bool = False) -> None:
    from quixstreams import Application

    app = Application(broker_address=stack.kafka_bootstrap, consumer_group=cfg.app_id, auto_offset_reset="earliest",
                      state_dir=str(stack.data_dir / "quix" / cfg.app_id), loglevel="WARNING")
    sdf = app.dataframe(app.topic(cfg.transactions_topic, key_deserializer="bytes", value_deserializer="bytes"))

    def handle(value: bytes) -> None:
        try:
            decode(value, Transaction)
        except InvalidEvent:
            pass
        events.inc()

    def handle_state(value: bytes, state: Any) -> None:
        try:
            txn = decode(value, Transaction)
        except InvalidEvent:
            events.inc()
            return
        seen = state.get("events", [])
        seen.append(txn.event_time)
        state.set("events", seen[-16:])
        events.inc()

    if stateful:
        sdf.update(handle_state, stateful=True)
    else:
        sdf.update(handle)
    app.run()


def bare(stack: StackSettings, cfg: StreamingSettings, events: Counter) -> None:
    """A consumer group of one, ``consume(5000)`` and a decode per record."""
    from confluent_kafka import Consumer

    c = Consumer({"bootstrap.servers": stack.kafka_bootstrap, "group.id": cfg.app_id,
                  "auto.offset.reset": "earliest", "enable.auto.commit": True})
    c.subscribe([cfg.transactions_topic])
    try:
        while True:
            msgs = c.consume(5000, timeout=0.5)
            for m in msgs:
                if m.error() is None:
                    try:
                        decode(m.value(), Transaction)
                    except InvalidEvent:
                        pass
            events.inc(len(msgs))
    finally:
        c.close()


#: events per batch of the ``noop-take`` agent (as the worker's ``STREAMING_TAKE_MAX``)
TAKE_MAX = 1_000


def main(mode: str) -> None:
    stack, cfg = StackSettings(), StreamingSettings()
    single_process()  # as the worker's metrics (core/prom.py)
    registry = CollectorRegistry()
    events = Counter("stream_events_in_total", "Records consumed", registry=registry)
    if mode in ("quix-noop", "quix-state", "bare"):
        from prometheus_client import start_http_server

        start_http_server(cfg.metrics_port, addr=stack.host, registry=registry)
        if mode == "bare":
            bare(stack, cfg, events)
        else:
            quix_noop(stack, cfg, events, stateful=mode == "quix-state")
        return
    (stack.data_dir / "faust" / cfg.app_id).mkdir(parents=True, exist_ok=True)
    app = faust.App(cfg.app_id, broker=f"kafka://{stack.kafka_bootstrap}", store="memory://",
                    topic_partitions=cfg.partitions, topic_replication_factor=1, web_enabled=False,
                    consumer_auto_offset_reset="earliest", stream_wait_empty=False,
                    datadir=str(stack.data_dir / "faust" / cfg.app_id))
    topic = app.topic(cfg.transactions_topic, key_type=bytes, value_type=bytes, key_serializer="raw",
                      value_serializer="raw")
    store = feast_store.open_store(stack)
    states: dict[str, CardState] = {}
    proc_cfg = ProcessorConfig(cfg.allowed_lateness_ms, cfg.max_events_per_card)

    async def noop(stream):  # type: ignore[no-untyped-def]
        async for value in stream:
            try:
                decode(value, Transaction)
            except InvalidEvent:
                pass
            events.inc()

    push = FeastPushSink(store)

    async def noop_take(stream):  # type: ignore[no-untyped-def]
        # the same, taking batches (``noack_take``), as the worker does: acked after each batch
        async for batch in stream.noack_take(TAKE_MAX, within=0.1):
            for event in batch:
                try:
                    decode(event.value, Transaction)
                except InvalidEvent:
                    pass
                events.inc()
            for event in batch:
                await stream.ack(event)

    async def naive(stream):  # type: ignore[no-untyped-def]
        async for value in stream:
            events.inc()
            try:
                txn = decode(value, Transaction)
            except InvalidEvent:
                continue
            state = states.setdefault(txn.card_id, CardState())
            process(state, txn, proc_cfg, 0)
            one = OnlineBatch()  # no coalescing, no batching: one push per event
            one.put(txn.card_id, state.pack(), state.last_ts, 0)
            push.write(one)

    app.agent(topic, name=f"bench-{mode}")({"noop": noop, "noop-take": noop_take, "naive": naive}[mode])
    logging.getLogger("feast").setLevel(logging.WARNING)
    from prometheus_client import start_http_server

    start_http_server(cfg.metrics_port, addr=stack.host, registry=registry)
    faust.Worker(app, loglevel="WARNING", quiet=True).execute_from_commandline()


if __name__ == "__main__":
    main(sys.argv[1])
