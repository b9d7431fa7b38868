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
from typing import Any

import msgspec
import pandas as pd
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
from tqdm import tqdm

from core import kafka
from core.card_state import EventState
from core.contracts import InvalidEvent, decode_versioned
from streaming.entities import CARD, EntitySpec, event_row
from streaming.processor import Outcome, ProcessorConfig, process
from streaming.sinks import OfflineLog

CHUNK = 50_000


def from_topic(conn: kafka.Kafka, topic: str, since_ms: int | None = None,
               timestamps: bool = False) -> tuple[Iterator[Any], int]:
    """Every record of the topic up to its current end, partition by partition (with
    ``since_ms``: only those with a Kafka timestamp at or after it). With ``timestamps``,
    (value, record timestamp in ms) pairs: the ingest time the worker judged them by."""
    consumer = Consumer(kafka.client_config(conn, {"group.id": f"backfill-{time.time_ns()}",
                                              "enable.auto.commit": False, "enable.partition.eof": True}))
    meta = consumer.list_topics(topic, timeout=10).topics.get(topic)
    if meta is None or meta.error is not None:
        raise ValueError(f"topic {topic!r} not found at {kafka.bootstrap(conn)}")
    ends = {}
    for p in meta.partitions:
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
        if high > low:
            ends[p] = (low, high)
    if since_ms is not None and ends:
        found = consumer.offsets_for_times([TopicPartition(topic, p, since_ms) for p in ends], timeout=10)
        for tp in found:
            low, high = ends[tp.partition]
            if tp.offset < 0 or tp.offset >= high:  # nothing at or after since_ms
                del ends[tp.partition]
            else:
                ends[tp.partition] = (max(low, tp.offset), high)
    total = sum(h - lo for lo, h in ends.values())

    def records() -> Iterator[Any]:
        try:
            for p, (low, high) in sorted(ends.items()):
                consumer.assign([TopicPartition(topic, p, low if since_ms is not None else OFFSET_BEGINNING)])
                while True:
                    msgs = consumer.consume(10_000, timeout=1.0)
                    done = False
                    for m in msgs:
                        value, offset = m.value(), m.offset()
                        if m.error() is None and value is not None:
                            yield (value, m.timestamp()[1]) if timestamps else value
                        if offset is not None and offset >= high - 1:
                            done = True
                    if done:
                        break
        finally:
            consumer.close()

    return records(), total


def from_parquet(path: Path, spec: EntitySpec = CARD) -> tuple[list[msgspec.Struct], int]:
    if not path.exists():
        raise ValueError(f"no such file or folder: {path}")
    files = sorted(path.rglob("*.parquet")) if path.is_dir() else [path]
    if not files:
        raise ValueError(f"no parquet files under {path}")
    frames = []
    for f in files:
        try:
            frames.append(pd.read_parquet(f))
        except (OSError, ValueError) as exc:
            raise ValueError(f"cannot read {f}: {str(exc).splitlines()[0]}") from None
    df = pd.concat(frames, ignore_index=True)
    missing = sorted({"event_id", spec.join_key, "event_time", "event_key"} - set(df.columns))
    if missing:
        raise ValueError(f"{path} is not an offline {spec.event_dataset} log: no column(s) {', '.join(missing)}")
    df = df.drop_duplicates("event_id")
    df = df.sort_values([spec.join_key, "event_time", "event_key"])
    fields = [f for f in spec.event_type.__struct_fields__ if f != "schema_version"]
    events = [spec.event_type(**r) for r in df[fields].to_dict("records")]
    return events, len(events)


def run(events: Iterator[bytes | msgspec.Struct | tuple[bytes, int]], total: int, out: OfflineLog, cfg: ProcessorConfig,
        progress: bool = True, spec: EntitySpec = CARD) -> dict[str, int]:
    """Process every event and append its rows; returns counts by outcome. An item is an
    event, its raw bytes, or (raw bytes, ingest time in ms) as ``from_topic`` gives them
    with ``timestamps`` (without one, the ingest time is the wall clock now)."""
    states: dict[str, EventState] = {}
    event_rows: list[dict] = []
    feature_rows: list[dict] = []
    counts = {"accepted": 0, "duplicate": 0, "too_late": 0, "future": 0, "invalid": 0, "corrections_skipped_at_cap": 0}
    revision = time.time_ns() // 1000  # later than anything the stream wrote before

    def write() -> None:
        out.append(spec.event_dataset, event_rows)
        out.append(spec.feature_dataset, feature_rows)
        event_rows.clear()
        feature_rows.clear()

    for item in tqdm(events, total=total, desc="backfill", unit="ev", disable=not progress):
        ingest = None
        if isinstance(item, tuple):
            item, ingest = item
        if isinstance(item, bytes):
            try:
                item, _ = decode_versioned(item, spec.event_type)
            except InvalidEvent:
                counts["invalid"] += 1
                continue
        state = states.setdefault(getattr(item, spec.join_key), spec.state_type())
        res = process(state, item, cfg, revision, spec, ingest_ms=ingest)
        counts[str(res.outcome)] += 1
        counts["corrections_skipped_at_cap"] += res.skipped_corrections
        if res.outcome is Outcome.FUTURE:
            continue
        event_rows.append(event_row(item))
        feature_rows.extend(res.feature_rows)
        if len(feature_rows) >= CHUNK:
            write()
    write()
    return counts
