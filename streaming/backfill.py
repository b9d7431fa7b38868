"""Backfill: recompute the offline feature log from a raw event log with the stream's own
code (``streaming.processor.process``), in the order the stream would see the events.

- from Kafka (``--topic``, offset 0 to the current end of every partition): each partition
  in log order, exactly what a worker does, including its lateness decisions;
- from parquet (``--parquet``, e.g. the offline ``transactions`` dataset): per card in
  event-time order (the event-time truth; nothing is late).

Past one process (``--cluster``, core/cluster.py) the work is split into independent tasks
that run the same ``run``: one per Kafka partition (a partition's cards are its own, as in
the stream worker), or one per bucket of entities of the parquet log (each task reads the
log and keeps its bucket's entities). Each task appends its own files to the output; the
rows equal the single-process backfill's but for their revision numbers.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pandas as pd
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
from tqdm import tqdm

from core import kafka, storage
from core.card_state import EventState
from core.contracts import InvalidEvent, decode_versioned
from streaming.entities import CARD, USER, EntitySpec, event_row
from streaming.processor import Outcome, ProcessorConfig, ValueRows, feature_values, process
from streaming.sinks import OfflineLog

CHUNK = 50_000


def from_topic(conn: kafka.Kafka, topic: str, since_ms: int | None = None,
               timestamps: bool = False, partitions: list[int] | None = None) -> tuple[Iterator[Any], int]:
    """Every record of the topic up to its current end, partition by partition (with
    ``since_ms``: only those with a Kafka timestamp at or after it; with ``partitions``: only
    those). With ``timestamps``, (value, record timestamp in ms) pairs: the ingest time the
    worker judged them by."""
    consumer = Consumer(kafka.client_config(conn, {"group.id": f"backfill-{time.time_ns()}",
                                              "enable.auto.commit": False, "enable.partition.eof": True}))
    meta = consumer.list_topics(topic, timeout=10).topics.get(topic)
    if meta is None or meta.error is not None:
        raise ValueError(f"topic {topic!r} not found at {kafka.bootstrap(conn)}")
    ends = {}
    for p in meta.partitions if partitions is None else [p for p in meta.partitions if p in partitions]:
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


def from_parquet(path: Path, spec: EntitySpec = CARD,
                 bucket: tuple[int, int] | None = None) -> tuple[list[msgspec.Struct], int]:
    """The events of an offline event log, per entity in event-time order (duplicates of an
    event id once). With ``bucket`` (i, n): only the entities of bucket i of n (by a hash of
    the entity id that every process computes alike), read a file at a time, so a task
    holds its share only."""
    if not path.exists():
        raise ValueError(f"no such file or folder: {path}")
    files = sorted(path.rglob("*.parquet")) if path.is_dir() else [path]
    if not files:
        raise ValueError(f"no parquet files under {path}")
    frames = []
    for f in files:
        try:
            frame = pd.read_parquet(f)
        except (OSError, ValueError) as exc:
            raise ValueError(f"cannot read {f}: {str(exc).splitlines()[0]}") from None
        if bucket is not None and spec.join_key in frame.columns:
            frame = frame[entity_buckets(frame[spec.join_key], bucket[1]) == bucket[0]]
        frames.append(frame)
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
    feature_rows = ValueRows(spec)
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
        res = process(state, item, cfg, revision, spec, ingest_ms=ingest, row=feature_values)
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


def entity_buckets(ids: pd.Series, n: int) -> np.ndarray:
    """Each entity id's bucket out of ``n``: the same in every process and on every machine
    (pandas' hash of the values is a SipHash with a fixed key; Python's ``hash`` is not)."""
    return pd.util.hash_pandas_object(ids.astype(str), index=False).to_numpy() % n


@dataclass(frozen=True)
class Task:
    """One independent piece of a backfill: a Kafka partition, or a bucket of the parquet
    log's entities (everything a task needs, picklable for a Dask worker)."""

    kind: str  # transactions | clicks
    out: storage.Root  # the offline root the task appends to (a folder or an object store)
    cfg: ProcessorConfig
    conn: Any = None
    topic: str | None = None
    partition: int | None = None
    parquet: str | None = None
    bucket: tuple[int, int] | None = None

    @property
    def name(self) -> str:
        if self.topic is not None:
            return f"{self.topic}[{self.partition}]"
        return "all" if self.bucket is None else f"bucket {self.bucket[0]}/{self.bucket[1]}"


def spec_of(kind: str) -> EntitySpec:
    return CARD if kind == "transactions" else USER


def plan(kind: str, out: Path | str | storage.Root, cfg: ProcessorConfig, conn: kafka.Kafka | None = None,
         topic: str | None = None, parquet: Path | None = None, buckets: int = 1) -> list[Task]:
    """The tasks of a backfill: one per partition of the topic that holds records, or
    ``buckets`` buckets of the parquet log's entities (one task with all of them for 1)."""
    if parquet is not None:
        if not parquet.exists():
            raise ValueError(f"no such file or folder: {parquet}")
        if buckets <= 1:
            return [Task(kind, storage.root(out), cfg, parquet=str(parquet))]
        return [Task(kind, storage.root(out), cfg, parquet=str(parquet), bucket=(i, buckets)) for i in range(buckets)]
    assert conn is not None and topic is not None
    consumer = Consumer(kafka.client_config(conn, {"group.id": f"backfill-{time.time_ns()}",
                                                   "enable.auto.commit": False}))
    try:
        meta = consumer.list_topics(topic, timeout=10).topics.get(topic)
        if meta is None or meta.error is not None:
            raise ValueError(f"topic {topic!r} not found at {kafka.bootstrap(conn)}")
        filled = []
        for p in sorted(meta.partitions):
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            if high > low:
                filled.append(p)
    finally:
        consumer.close()
    return [Task(kind, storage.root(out), cfg, conn=conn, topic=topic, partition=p) for p in filled]


def run_task(task: Task, progress: bool = False) -> dict[str, int]:
    """One task, as a Dask worker (or this process) runs it: counts by outcome."""
    spec = spec_of(task.kind)
    events: Iterator[Any] | list[msgspec.Struct]
    if task.topic is not None:
        events, total = from_topic(task.conn, task.topic, timestamps=True, partitions=[task.partition or 0])
        writer = f"backfill-p{task.partition}"
    else:
        events, total = from_parquet(Path(task.parquet or ""), spec, task.bucket)
        writer = "backfill" if task.bucket is None else f"backfill-b{task.bucket[0]}"
    return run(iter(events), total, OfflineLog(task.out, writer_id=writer), task.cfg, progress=progress,
               spec=spec)


def run_tasks(place: Any, tasks: list[Task], progress: bool = False) -> dict[str, int]:
    """Every task on ``place`` (core.cluster.Place); the counts summed. In this process each
    task shows its own event bar, on a cluster one bar counts the finished tasks."""
    if place.client is None:
        results = (run_task(task, progress) for task in tasks)
    else:
        results = place.results(run_task, tasks, progress=progress, desc="backfill tasks")
    total: dict[str, int] = {}
    for counts in results:
        for k, v in counts.items():
            total[k] = total.get(k, 0) + v
    return total
