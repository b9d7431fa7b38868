"""Kafka produce + consume throughput of small JSON events: confluent-kafka (librdkafka,
what our generators and tools use) against aiokafka (the client Faust runs on), same run.

This is an infrastructure ceiling: the stream processors cannot go faster than this.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from typing import Any

import orjson
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from rich.console import Console

from bench.common import bench_stack, produce_all, write_result
from stack.topics import ensure_topics

EVENTS = int(os.environ.get("BENCH_KAFKA_EVENTS", "1000000"))
PARTITIONS = 6


def make_events(n: int) -> list[tuple[bytes, bytes]]:
    """Transaction-shaped JSON (~230 bytes), serialised before timing starts."""
    out = []
    for i in range(n):
        card = f"card-{i % 50_000:06d}"
        ev = {"event_id": str(uuid.UUID(int=i)), "event_time": 1_790_000_000_000 + i, "card_id": card,
              "user_id": f"user-{i % 40_000}", "merchant_id": f"m-{i % 5_000}", "mcc": "5411",
              "amount": round(5 + (i % 997) * 0.37, 2), "currency": "EUR", "country": "DE",
              "schema_version": 1}
        out.append((card.encode(), orjson.dumps(ev)))
    return out


def confluent_run(bootstrap: str, topic: str, events: list[tuple[bytes, bytes]]) -> dict[str, float]:
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 10, "batch.size": 1_000_000,
                         "queue.buffering.max.messages": 1_000_000, "acks": "all"})
    t0 = time.perf_counter()
    produce_all(producer, topic, events)
    t_produce = time.perf_counter() - t0

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-{uuid.uuid4().hex[:8]}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False,
                         "fetch.max.bytes": 52_428_800})
    # Explicit assignment: measure fetching, not the consumer-group join.
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(PARTITIONS)])
    n = 0
    t1 = time.perf_counter()
    while n < len(events):
        for msg in consumer.consume(num_messages=10_000, timeout=1.0):
            if msg.error() is None:
                n += 1
        if time.perf_counter() - t1 > 300:
            raise RuntimeError(f"confluent consumer got {n} of {len(events)} events in 300 s")
    t_consume = time.perf_counter() - t1
    consumer.close()
    return {"produce_s": t_produce, "consume_s": t_consume}


async def _aiokafka_run(bootstrap: str, topic: str, events: list[tuple[bytes, bytes]]) -> dict[str, float]:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
    from aiokafka.structs import TopicPartition as AioTopicPartition

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=10, max_batch_size=1_000_000,
                                acks="all")
    await producer.start()
    t0 = time.perf_counter()
    for start in range(0, len(events), 10_000):
        futures = [await producer.send(topic, value=v, key=k) for k, v in events[start:start + 10_000]]
        await asyncio.gather(*futures)
    await producer.stop()
    t_produce = time.perf_counter() - t0

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                enable_auto_commit=False, max_partition_fetch_bytes=10_485_760)
    await consumer.start()
    parts = [AioTopicPartition(topic, p) for p in range(PARTITIONS)]
    consumer.assign(parts)
    await consumer.seek_to_beginning(*parts)
    n = 0
    t1 = time.perf_counter()
    while n < len(events):
        batches = await consumer.getmany(timeout_ms=1000, max_records=10_000)
        n += sum(len(b) for b in batches.values())
        if time.perf_counter() - t1 > 300:
            raise RuntimeError(f"aiokafka consumer got {n} of {len(events)} events in 300 s")
    t_consume = time.perf_counter() - t1
    await consumer.stop()
    return {"produce_s": t_produce, "consume_s": t_consume}


def run(console: Console) -> list[dict[str, Any]]:
    with bench_stack(("kafka",)) as stack:
        bootstrap = stack.settings.kafka_bootstrap
        console.print(f"generating {EVENTS:,} events; broker {bootstrap} (shared stack: {stack.shared})")
        events = make_events(EVENTS)
        size = sum(len(v) for _, v in events) / len(events)
        topics = [f"bench-confluent-{uuid.uuid4().hex[:6]}", f"bench-aiokafka-{uuid.uuid4().hex[:6]}"]
        ensure_topics(bootstrap, topics, PARTITIONS)
        try:
            console.print("confluent-kafka: produce then consume ...")
            fast = confluent_run(bootstrap, topics[0], events)
            console.print("aiokafka: produce then consume ...")
            base = asyncio.run(_aiokafka_run(bootstrap, topics[1], events))
        finally:
            AdminClient({"bootstrap.servers": bootstrap}).delete_topics(topics)

    def rate(r: dict[str, float]) -> float:
        return EVENTS / (r["produce_s"] + r["consume_s"])

    params = {"events": EVENTS, "avg_event_bytes": round(size, 1), "partitions": PARTITIONS,
              "acks": "all", "kafka": "3.9.1 KRaft, one node, loopback",
              "confluent_produce_events_s": round(EVENTS / fast["produce_s"]),
              "confluent_consume_events_s": round(EVENTS / fast["consume_s"]),
              "aiokafka_produce_events_s": round(EVENTS / base["produce_s"]),
              "aiokafka_consume_events_s": round(EVENTS / base["consume_s"]),
              "measure": "events / (time to produce all + time to consume all), one process each"}
    return [write_result("kafka_throughput", "produce+consume events per second", rate(fast),
                         "events/s", True, "aiokafka (Faust's client), same events",
                         rate(base), params)]
