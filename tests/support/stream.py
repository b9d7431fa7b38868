"""Helpers for stream tests: produce generated events, run real worker processes, and the
reference semantics (which events count) derived from the raw records alone."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from confluent_kafka import Producer

from core.card_state import event_key
from core.contracts import TRANSACTIONS, InvalidEvent, Transaction, decode
from core.settings import REPO_ROOT, StackSettings
from stack import health
from stack.services import stack_env
from streaming.generators.transactions import GenConfig, Record, TransactionStream
from tests.support.reference import Ev

LATENESS_MS = 60_000


def generate(n: int, seed: int, **kw) -> list[Record]:
    """n transactions (plus malformed ones when bad_rate > 0), in produce order."""
    stream = TransactionStream(GenConfig(seed=seed, start_ms=1_790_000_000_000, **kw))
    out: list[Record] = []
    for rec in stream:
        if rec.topic == TRANSACTIONS:
            out.append(rec)
            if sum(1 for r in out if r.key != b"bad") >= n:
                break
    out += [r for r in stream.drain() if r.topic == TRANSACTIONS]
    return out


def produce(bootstrap: str, topic: str, records: list[Record]) -> None:
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "enable.idempotence": True})
    for r in records:
        p.produce(topic, key=r.key, value=r.value)
    assert p.flush(60) == 0


@dataclass
class Expected:
    """What must come out, from the records alone: per card, the events that count."""

    accepted: dict[str, list[Ev]] = field(default_factory=dict)
    too_late: int = 0
    bad: int = 0
    valid: int = 0

    @classmethod
    def of(cls, records: list[Record], lateness_ms: int = LATENESS_MS) -> Expected:
        exp, seen, newest = cls(), set(), {}
        for r in records:  # per-key order is produce order in Kafka
            try:
                t: Transaction = decode(r.value, Transaction)
            except InvalidEvent:
                exp.bad += 1
                continue
            if t.event_id in seen:
                continue
            seen.add(t.event_id)
            exp.valid += 1
            last = newest.get(t.card_id)
            if last is not None and t.event_time < last - lateness_ms:
                exp.too_late += 1
                continue
            newest[t.card_id] = max(last or 0, t.event_time)
            exp.accepted.setdefault(t.card_id, []).append(
                Ev(t.event_time, event_key(t.event_id), t.amount, t.country, t.merchant_id, t.mcc))
        return exp


class WorkerProcess:
    """``python -m streaming worker`` as a real process against the test stack."""

    def __init__(self, stack: StackSettings, app_id: str, topic: str, dlq: str, clicks: str, log: Path,
                 **env: str) -> None:
        self.metrics_port = health.free_port()
        self.env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), **stack_env(stack),
                    "STREAMING_APP_ID": app_id, "STREAMING_TRANSACTIONS_TOPIC": topic,
                    "STREAMING_DEAD_LETTERS_TOPIC": dlq, "STREAMING_CLICKS_TOPIC": clicks,
                    "STREAMING_PARTITIONS": "3",
                    "STREAMING_METRICS_PORT": str(self.metrics_port),
                    "STREAMING_ALLOWED_LATENESS_MS": str(LATENESS_MS),
                    "STREAMING_OFFLINE_FLUSH_INTERVAL_S": "0.5", **env}
        self.log = log
        self.proc: subprocess.Popen | None = None

    def start(self) -> WorkerProcess:
        self.proc = subprocess.Popen([sys.executable, "-m", "streaming", "worker"], cwd=REPO_ROOT,
                                     env=self.env, stdout=self.log.open("ab"), stderr=subprocess.STDOUT,
                                     start_new_session=True)
        return self

    def metric(self, name: str) -> float:
        """Sum of the metric's samples (0 while the worker does not answer)."""
        values = health.prometheus_values(f"http://127.0.0.1:{self.metrics_port}/metrics")
        return (values or {}).get(name, 0.0)

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
            self.proc.wait(60)

    def stop(self) -> None:
        self.kill(signal.SIGTERM)


def wait_for(cond: Callable[[], bool], timeout_s: float, what: str,
             workers: list[WorkerProcess] | tuple = ()) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        for w in workers:
            if w.proc is not None and w.proc.poll() is not None:
                raise AssertionError(f"worker exited ({w.proc.returncode}) while waiting for {what}; "
                                     f"log {w.log}:\n{w.log.read_text()[-3000:]}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(0.2)


def published(bootstrap: str, topic: str, want: set[str], check: Callable[[dict], None],
              timeout_s: float = 60) -> set[str]:
    """Read ``topic`` from the start until every event id in ``want`` was seen (or the time is
    up), calling ``check`` on each record; returns the ids seen."""
    import orjson
    from confluent_kafka import Consumer

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"check-{uuid.uuid4().hex[:6]}",
                         "auto.offset.reset": "earliest"})
    consumer.subscribe([topic])
    seen: set[str] = set()
    deadline = time.monotonic() + timeout_s
    try:
        while not want <= seen and time.monotonic() < deadline:
            for m in consumer.consume(100, 0.5):
                if m.error() is None:
                    rec = orjson.loads(m.value())
                    seen.add(rec["event_id"])
                    check(rec)
    finally:
        consumer.close()
    return seen
