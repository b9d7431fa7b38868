"""The live loop's scorer: consumes ``transactions`` (its own consumer group), scores a share
of them through the same ``Scorer`` as the API (features as of just before each transaction,
whatever the stream worker has written meanwhile) and publishes to ``scores``, so drift
checks and online learning always have fresh scores.

At-least-once: a batch's input offsets are committed only after every score of the batch is
acknowledged by Kafka (``acks=all``, idempotent producer); a failed delivery or an unreachable
feature store replays the batch (a replay may publish a score twice: consumers keep the
newest per event id). A bad record is counted and skipped (the stream worker dead-letters
it). The model is reloaded on a thread of its own, so a slow or unreachable MLflow never
stalls the consume loop past Kafka's poll interval. Counters are on ``/metrics``
(STACK_SCORER_METRICS_PORT)."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from confluent_kafka import Consumer

from core import feast_store, kafka, registry
from core.card_state import event_key
from core.contracts import TRANSACTIONS, InvalidEvent, Transaction, decode_versioned
from core.settings import StackSettings
from inference.model import ModelHolder
from inference.publisher import ScorePublisher
from inference.scoring import Scorer, Unavailable
from inference.settings import InferenceSettings
from streaming.read import CardFeatureReader

log = logging.getLogger("inference.stream_scorer")


class StreamScorer:
    def __init__(self, stack: StackSettings, cfg: InferenceSettings, topic: str = TRANSACTIONS,
                 share: float = 1.0, group: str = "stream-scorer", batch: int = 500,
                 start: str = "latest") -> None:
        if not 0 < share <= 1:
            raise ValueError(f"share must be in (0, 1], got {share}")
        self.stack, self.cfg, self.topic, self.share, self.batch = stack, cfg, topic, share, batch
        self.start = start
        self.holder = ModelHolder(cfg.model_name, cfg.model_alias, cfg.onnx_threads, cfg.shadow,
                                  verifier=registry.Verifier.of(stack))
        self.dropped = 0
        self.publisher = ScorePublisher(stack, cfg.scores_topic, cfg.scores_queue, self._drop, reliable=True)
        self.scorer = Scorer(self.holder, CardFeatureReader(feast_store.open_store(stack)), cfg, self.publisher)
        self.consumer = Consumer(kafka.client_config(stack, {"group.id": group, "auto.offset.reset": start,
                                                             "enable.auto.commit": False}))
        self.stop = threading.Event()
        #: set once the consumer group has given this scorer its partitions (a Consumer is
        #: not to be called from another thread while run() polls it)
        self.assigned = threading.Event()
        self.counts = {"consumed": 0, "scored": 0, "skipped": 0, "invalid": 0, "future": 0, "replayed": 0}
        self.metrics = ScorerMetrics(self)

    def _drop(self, _why: str) -> None:
        self.dropped += 1

    def _sampled(self, txn: Transaction) -> bool:
        return self.share >= 1 or (event_key(txn.event_id) % 10_000) < self.share * 10_000

    def _reloader(self) -> None:
        """Model reloads off the consume loop: MLflow down or slow delays a new model, never
        the consumer's polls."""
        while not self.stop.is_set():
            try:
                self.holder.reload()
            except Exception as exc:  # noqa: BLE001 - keep serving the last good model
                log.warning("model reload failed: %s: %s", type(exc).__name__, exc)
            self.stop.wait(max(self.cfg.poll_interval_s, 1.0))

    def _on_assign(self, consumer: Any, parts: list) -> None:
        """With ``start="latest"``, a partition the group has no offset for starts at its end
        as of now, resolved here: librdkafka would resolve "latest" only at its first fetch, so
        a record produced after ``assigned`` is set but before that fetch would be skipped."""
        if not parts:
            return
        if self.start == "latest":
            committed = consumer.committed(parts, timeout=10)
            for tp, done in zip(parts, committed, strict=True):
                if done.offset < 0:
                    tp.offset = consumer.get_watermark_offsets(tp, timeout=10, cached=False)[1]
            consumer.assign(parts)
        self.assigned.set()

    def run(self, metrics_port: int | None = None) -> None:
        from training import tracking

        tracking.connect(self.stack, log.info, check=False)
        if metrics_port:
            self.metrics.serve(metrics_port, self.stack.host)
        self.consumer.subscribe([self.topic], on_assign=self._on_assign)
        threading.Thread(target=self._reloader, name="model-reload", daemon=True).start()
        warned = 0.0
        try:
            while not self.stop.is_set():
                if self.holder.current is None:
                    if time.monotonic() - warned > 30:
                        log.warning("waiting for a model: %s", self.holder.last_error or "loading")
                        warned = time.monotonic()
                    self.stop.wait(1)
                    continue
                msgs = [m for m in self.consumer.consume(self.batch, 0.05) if m.error() is None]
                if not msgs:
                    continue
                txns = []
                for m in msgs:
                    self.counts["consumed"] += 1
                    try:
                        txn, _ = decode_versioned(m.value(), Transaction)
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
                        self._replay(msgs)
                        continue
                    if not self.publisher.barrier():
                        log.warning("scores not acknowledged by Kafka; replaying the batch")
                        self._replay(msgs)
                        continue
                    self.counts["scored"] += len(txns)
                self.consumer.commit(asynchronous=True)
        finally:
            self.consumer.close()
            self.publisher.close()

    def _replay(self, msgs: list[Any]) -> None:
        self.counts["replayed"] += len(msgs)
        self._rewind(msgs)
        self.stop.wait(2)

    def _rewind(self, msgs: list[Any]) -> None:
        from confluent_kafka import TopicPartition

        first: dict[int, int] = {}
        for m in msgs:
            first[m.partition()] = min(first.get(m.partition(), m.offset()), m.offset())
        for part, offset in first.items():
            self.consumer.seek(TopicPartition(self.topic, part, offset))


class ScorerMetrics:
    """The scorer's counters on Prometheus (``scorer_*``)."""

    def __init__(self, scorer: StreamScorer) -> None:
        from prometheus_client import CollectorRegistry, Gauge

        from core.prom import single_process

        single_process()
        self.registry = CollectorRegistry()
        records = Gauge("scorer_records_total", "Transactions by outcome: consumed, scored, skipped (not "
                        "sampled), invalid, future (dead-lettered by the worker), replayed (after a failure)",
                        ["outcome"], registry=self.registry)
        for outcome in scorer.counts:
            records.labels(outcome).set_function(lambda o=outcome: scorer.counts[o])
        Gauge("scorer_scores_failed_total", "Score deliveries that failed (their batch was replayed)",
              registry=self.registry).set_function(lambda: scorer.dropped)
        Gauge("scorer_model_loaded", "1 while a model is loaded", registry=self.registry).set_function(
            lambda: float(scorer.holder.current is not None))

    def serve(self, port: int, host: str) -> None:
        from prometheus_client import start_http_server

        start_http_server(port, addr=host, registry=self.registry)
