"""Publishes every score to the ``scores`` topic without blocking the request: the Kafka
client's own bounded queue; a full queue drops the record and counts it."""

from __future__ import annotations

import logging
import threading
from typing import Any

import orjson
from confluent_kafka import Producer

from core import kafka

log = logging.getLogger("inference.publisher")


class ScorePublisher:
    def __init__(self, conn: kafka.Kafka, topic: str, queue: int, on_drop: Any) -> None:
        self.topic, self.on_drop = topic, on_drop
        self.producer = Producer(kafka.client_config(conn, {
            "linger.ms": 20, "acks": "1", "queue.buffering.max.messages": queue, "message.timeout.ms": 30_000,
            "error_cb": lambda err: log.warning("scores producer: %s", err)}))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, name="scores-publisher", daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        while not self._stop.is_set():
            self.producer.poll(0.1)

    def publish(self, key: str, record: dict[str, Any]) -> None:
        try:
            self.producer.produce(self.topic, key=key.encode(), value=orjson.dumps(record),
                                  on_delivery=self._delivered)
        except BufferError:
            self.on_drop("queue_full")

    def _delivered(self, err: Any, _msg: Any) -> None:
        if err is not None:
            self.on_drop("delivery_failed")

    def close(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        self._thread.join(timeout_s)
        self.producer.flush(timeout_s)
