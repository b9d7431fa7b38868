"""The live loop's scorer: consumes ``transactions`` (its own consumer group), scores a share
of them through the same ``Scorer`` as the API (features as of just before each transaction,
whatever the stream worker has written meanwhile) and publishes to ``scores``, so drift
checks and online learning always have fresh scores. At-least-once: offsets are committed
after the batch's scores are handed to the producer."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from confluent_kafka import Consumer

from core import feast_store, kafka, registry
from core.card_state import event_key
from core.contracts import TRANSACTIONS, InvalidEvent, Transaction, decode
from core.settings import StackSettings
from inference.model import ModelHolder
from inference.publisher import ScorePublisher
from inference.scoring import Scorer, Unavailable
from inference.settings import InferenceSettings
from streaming.read import CardFeatureReader

log = logging.getLogger("inference.stream_scorer")


class StreamScorer:
    def __init__(self, stack: StackSettings, cfg: InferenceSettings, topic: str = TRANSACTIONS,
                 share: float = 1.0, group: str = "stream-scorer", batch: int = 500) -> None:
        if not 0 < share <= 1:
            raise ValueError(f"share must be in (0, 1], got {share}")
        self.stack, self.cfg, self.topic, self.share, self.batch = stack, cfg, topic, share, batch
        self.holder = ModelHolder(cfg.model_name, cfg.model_alias, cfg.onnx_threads, cfg.shadow,
                                  verifier=registry.Verifier.of(stack))
        self.dropped = 0
        self.publisher = ScorePublisher(stack, cfg.scores_topic, cfg.scores_queue, self._drop)
        self.scorer = Scorer(self.holder, CardFeatureReader(feast_store.open_store(stack)), cfg, self.publisher)
        self.consumer = Consumer(kafka.client_config(stack, {"group.id": group, "auto.offset.reset": "latest",
                                                             "enable.auto.commit": False}))
        self.stop = threading.Event()
        self.counts = {"consumed": 0, "scored": 0, "skipped": 0, "invalid": 0, "future": 0}

    def _drop(self, _why: str) -> None:
        self.dropped += 1

    def _sampled(self, txn: Transaction) -> bool:
        return self.share >= 1 or (event_key(txn.event_id) % 10_000) < self.share * 10_000

    def run(self) -> None:
        from training import tracking

        tracking.connect(self.stack, log.info)
        self.consumer.subscribe([self.topic])
        next_reload = 0.0
        try:
            while not self.stop.is_set():
                if time.monotonic() >= next_reload:
                    self.holder.reload()
                    next_reload = time.monotonic() + max(self.cfg.poll_interval_s, 1.0)
                if self.holder.current is None:
                    log.warning("waiting for a model: %s", self.holder.last_error)
                    self.stop.wait(5)
                    next_reload = 0.0
                    continue
                msgs = [m for m in self.consumer.consume(self.batch, 0.05) if m.error() is None]
                if not msgs:
                    continue
                txns = []
                for m in msgs:
                    self.counts["consumed"] += 1
                    try:
                        txn = decode(m.value(), Transaction)
                    except InvalidEvent:
                        self.counts["invalid"] += 1  # the stream worker dead-letters it
                        continue
                    if txn.event_time > time.time() * 1000 + self.cfg.max_event_time_skew_s * 1000:
                        self.counts["future"] += 1  # the stream worker dead-letters it
                        continue
                    if self._sampled(txn):
                        txns.append(txn)
                    else:
                        self.counts["skipped"] += 1
                if txns:
                    try:
                        # the pipeline's own events: read as of each one's (checked) event time
                        self.scorer.score(txns, at=[t.event_time for t in txns])
                    except Unavailable as exc:  # retry the same records: do not commit
                        log.warning("%s; retrying in 2 s", exc.detail)
                        self._rewind(msgs)
                        self.stop.wait(2)
                        continue
                    self.counts["scored"] += len(txns)
                self.consumer.commit(asynchronous=True)
        finally:
            self.consumer.close()
            self.publisher.close()

    def _rewind(self, msgs: list[Any]) -> None:
        from confluent_kafka import TopicPartition

        first: dict[int, int] = {}
        for m in msgs:
            first[m.partition()] = min(first.get(m.partition(), m.offset()), m.offset())
        for part, offset in first.items():
            self.consumer.seek(TopicPartition(self.topic, part, offset))
