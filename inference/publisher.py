"""Publishes scores to the ``scores`` topic.

Two guarantees, chosen by the caller:

- best effort (the API): never blocks or fails a request; the Kafka client's bounded queue, and
  a full queue, a record the client refuses at once (e.g. the topic does not exist) or a failed
  delivery drops the record and counts it (``inference_scores_dropped_total`` by reason:
  ``queue_full``, ``produce_failed``, ``delivery_failed``);
- at-least-once (the stream scorer, ``reliable=True``): ``acks=all`` with idempotence, a full
  queue waits instead of dropping, and :meth:`barrier` tells whether everything handed over
  since the last barrier was acknowledged, so the scorer commits its input offsets only then.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import orjson
from confluent_kafka import KafkaException, Producer

from core import kafka

log = logging.getLogger("inference.publisher")


class ScorePublisher:
    def __init__(self, conn: kafka.Kafka, topic: str, queue: int, on_drop: Any, reliable: bool = False) -> None:
        self.topic, self.on_drop, self.reliable = topic, on_drop, reliable
        self.failed = 0  # deliveries failed since the last barrier (reliable mode)
        self._warned = 0
        extra = ({"acks": "all", "enable.idempotence": True, "message.timeout.ms": 60_000} if reliable else
                 {"acks": "1", "message.timeout.ms": 30_000})
        self.producer = Producer(kafka.client_config(conn, {
            "linger.ms": 20, "queue.buffering.max.messages": queue, **extra,
            "error_cb": lambda err: log.warning("scores producer: %s", err)}))
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, name="scores-publisher", daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        while not self._stop.is_set():
            self.producer.poll(0.1)

    def publish(self, key: str, record: dict[str, Any]) -> None:
        value = orjson.dumps(record)
        while True:
            try:
                self.producer.produce(self.topic, key=key.encode(), value=value, on_delivery=self._delivered)
                return
            except BufferError:
                if not self.reliable:
                    self.on_drop("queue_full")
                    return
                self.producer.poll(0.1)  # backpressure: wait for room, never drop
            except KafkaException as exc:
                if self.reliable:  # the scorer stops before committing: its input is replayed
                    raise
                if self._warned < 3:
                    self._warned += 1
                    log.warning("scores producer refused a record for %s (dropped, counted): %s", self.topic, exc)
                self.on_drop("produce_failed")
                return

    def _delivered(self, err: Any, _msg: Any) -> None:
        if err is not None:
            with self._lock:
                self.failed += 1
            self.on_drop("delivery_failed")

    def barrier(self, timeout_s: float = 60.0) -> bool:
        """Wait until everything handed over so far is delivered or failed: True only if all of
        it was acknowledged (the failures are reset either way; the caller replays)."""
        left = self.producer.flush(timeout_s)
        with self._lock:
            ok = left == 0 and self.failed == 0
            self.failed = 0
        return ok

    def close(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        self._thread.join(timeout_s)
        self.producer.flush(timeout_s)
