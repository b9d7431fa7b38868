"""Backfill: recompute the offline feature log from a raw event log with the stream's own
code (``streaming.processor.process``), in the order the stream would see the events.

- from Kafka (``--topic``, offset 0 to the current end of every partition): each partition
  in log order, exactly what a worker does, including its lateness decisions;
- from parquet (``--parquet``, e.g. the offline ``transactions`` dataset): per card in
  event-time order (the event-time truth; nothing is late).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
from tqdm import tqdm

from core.card_state import CardState
from core.contracts import InvalidEvent, Transaction, decode
from streaming.processor import ProcessorConfig, process, transaction_row
from streaming.sinks import FEATURE_DATASET, TXN_DATASET, OfflineLog

CHUNK = 50_000


def from_topic(bootstrap: str, topic: str) -> tuple[Iterator[bytes], int]:
    """Every record of the topic up to its current end, partition by partition."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"backfill-{time.time_ns()}",
                         "enable.auto.commit": False, "enable.partition.eof": True})
    meta = consumer.list_topics(topic, timeout=10).topics.get(topic)
    if meta is None or meta.error is not None:
        raise ValueError(f"topic {topic!r} not found at {bootstrap}")
    ends = {}
    for p in meta.partitions:
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
        if high > low:
            ends[p] = (low, high)
    total = sum(h - lo for lo, h in ends.values())

    def records() -> Iterator[bytes]:
        try:
            for p, (_, high) in sorted(ends.items()):
                consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING)])
                while True:
                    msgs = consumer.consume(10_000, timeout=1.0)
                    done = False
                    for m in msgs:
                        if m.error() is None:
                            yield m.value()
                        if m.offset() is not None and m.offset() >= high - 1:
                            done = True
                    if done:
                        break
        finally:
            consumer.close()

    return records(), total


def from_parquet(path: Path) -> tuple[list[Transaction], int]:
    files = sorted(path.rglob("*.parquet")) if path.is_dir() else [path]
    if not files:
        raise ValueError(f"no parquet files under {path}")
    df = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True).drop_duplicates("event_id")
    df = df.sort_values(["card_id", "event_time", "event_key"])
    fields = [f for f in Transaction.__struct_fields__ if f != "schema_version"]
    txns = [Transaction(**{k: r[k] for k in fields}) for r in df[fields].to_dict("records")]
    return txns, len(txns)


def run(events: Iterator[bytes | Transaction], total: int, out: OfflineLog, cfg: ProcessorConfig,
        progress: bool = True) -> dict[str, int]:
    """Process every event and append its rows; returns counts by outcome."""
    states: dict[str, CardState] = {}
    txn_rows: list[dict] = []
    feature_rows: list[dict] = []
    counts = {"accepted": 0, "duplicate": 0, "too_late": 0, "invalid": 0}
    revision = time.time_ns() // 1000  # later than anything the stream wrote before
    for item in tqdm(events, total=total, desc="backfill", unit="ev", disable=not progress):
        if isinstance(item, Transaction):
            txn = item
        else:
            try:
                txn = decode(item, Transaction)
            except InvalidEvent:
                counts["invalid"] += 1
                continue
        state = states.setdefault(txn.card_id, CardState())
        res = process(state, txn, cfg, revision)
        counts[str(res.outcome)] += 1
        txn_rows.append(transaction_row(txn))
        feature_rows.extend(res.feature_rows)
        if len(feature_rows) >= CHUNK:
            out.append(TXN_DATASET, txn_rows)
            out.append(FEATURE_DATASET, feature_rows)
            txn_rows, feature_rows = [], []
    out.append(TXN_DATASET, txn_rows)
    out.append(FEATURE_DATASET, feature_rows)
    return counts
