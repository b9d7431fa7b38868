"""The delayed ground truth (``fraud-feedback``): for honest evaluation only, never labels."""

from __future__ import annotations

import time

import pandas as pd
from confluent_kafka import Consumer, TopicPartition

from core.contracts import FRAUD_FEEDBACK, FraudFeedback, InvalidEvent, decode
from stack import health


def read(bootstrap: str, topic: str = FRAUD_FEEDBACK, timeout_s: float = 120.0) -> pd.DataFrame | None:
    """Every feedback record up to the topic's current end (None when Kafka is unreachable)."""
    if health.kafka(bootstrap) is not None:
        return None
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"training-gt-{time.time_ns()}",
                         "enable.auto.commit": False, "enable.partition.eof": False})
    try:
        meta = consumer.list_topics(topic, timeout=10).topics.get(topic)
        if meta is None or meta.error is not None:
            return None
        ends: dict[int, int] = {}
        assign = []
        for p in meta.partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            if high > low:
                ends[p] = high
                assign.append(TopicPartition(topic, p, low))
        consumer.assign(assign)
        rows: list[tuple[str, bool, str]] = []
        done: set[int] = set()
        deadline = time.monotonic() + timeout_s
        while len(done) < len(ends) and time.monotonic() < deadline:
            for m in consumer.consume(10_000, 0.5):
                if m.error() is not None:
                    continue
                if m.offset() >= ends[m.partition()] - 1:
                    done.add(m.partition())
                try:
                    fb = decode(m.value(), FraudFeedback)
                except InvalidEvent:
                    continue
                rows.append((fb.event_id, fb.is_fraud, fb.scenario))
    finally:
        consumer.close()
    df = pd.DataFrame(rows, columns=["event_id", "is_fraud", "scenario"])
    return df.drop_duplicates("event_id", keep="last")


def align(event_ids: pd.Series, truth: pd.DataFrame | None) -> pd.DataFrame:
    """Truth per row (NA where the feedback has not arrived)."""
    base = pd.DataFrame({"event_id": event_ids.to_numpy()})
    if truth is None or truth.empty:
        return base.assign(is_fraud=pd.NA, scenario=pd.NA)
    return base.merge(truth, on="event_id", how="left")
