"""Prometheus metrics of a stream worker, on its own HTTP port (STREAMING_METRICS_PORT)."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from core.prom import single_process


class WorkerMetrics:
    def __init__(self) -> None:
        single_process()
        r = self.registry = CollectorRegistry()
        self.events_in = Counter("stream_events_in_total", "Records consumed", ["topic"], registry=r)
        self.events_out = Counter("stream_events_out_total", "Transactions by outcome", ["outcome"],
                                  registry=r)
        self.dead_letters = Counter("stream_dead_letters_total", "Records sent to dead-letters",
                                    ["topic"], registry=r)
        self.push_rows = Histogram("stream_push_batch_rows", "Cards per online push",
                                   buckets=(1, 10, 50, 100, 500, 1000, 5000, 20000), registry=r)
        self.checkpoint_seconds = Histogram("stream_checkpoint_sink_seconds", "Time a checkpoint (Quix engine) "
                                            "spends writing its sinks: the stream waits meanwhile",
                                            buckets=(.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5), registry=r)
        self.push_seconds = Histogram("stream_push_seconds", "Online push latency",
                                      buckets=(.001, .005, .01, .025, .05, .1, .25, .5, 1, 2.5), registry=r)
        self.newer_schema = Counter("stream_events_newer_schema_total", "Records of a newer schema version than "
                                    "this worker's (decoded by their known fields; upgrade the worker)", ["topic"],
                                    registry=r)
        self.corrections = Counter("stream_correction_rows_total", "Rows re-emitted for events whose \"before\" "
                                   "view an out-of-order event changed", registry=r)
        self.corrections_skipped = Counter("stream_corrections_skipped_total", "Later rows an out-of-order event "
                                           "did not correct because its entity was at its event cap", registry=r)
        self.corrections_pending = Gauge("stream_corrections_pending", "Entities whose out-of-order corrections "
                                         "are not yet all in the offline log (no record is acked meanwhile)",
                                         registry=r)
        self.skipped_revoked = Counter("stream_records_skipped_revoked_total", "Records of a batch taken before "
                                       "a rebalance whose partition was revoked meanwhile (left to its new owner; "
                                       "Faust engine)", registry=r)
        self.offline_rows = Counter("stream_offline_rows_total", "Rows appended offline", ["dataset"],
                                    registry=r)
        self.freshness = Histogram("stream_feature_freshness_seconds",
                                   "Event produced -> its card's features servable online",
                                   buckets=(.01, .025, .05, .1, .2, .3, .5, 1, 2, 5, 10), registry=r)
        self.sink_errors = Counter("stream_sink_errors_total", "Failed writes to a sink (retried with backoff; "
                                   "nothing is acked until they succeed)", ["sink"], registry=r)
        self.sink_stalled = Gauge("stream_sink_stalled", "1 while writes to this sink are failing and being "
                                  "retried", ["sink"], registry=r)
        self.resyncs = Counter("stream_online_resyncs_total", "Times the online store restarted (new Redis "
                               "run_id) and the worker rewrote every state it owns", registry=r)
        self.resync_rows = Counter("stream_online_resync_rows_total", "States rewritten by resyncs", registry=r)
        self.state_reads = Counter("stream_state_reads_total", "Entity states taken at their first event of a "
                                   "checkpoint (Quix engine), by source: kept (still decoded from an earlier "
                                   "checkpoint, its bytes equal to the committed ones) or store (read and "
                                   "decoded)", ["source"], registry=r)
        self.expired = Counter("stream_state_expired_total", "Quiet entities forgotten (table entry deleted, "
                               "changelog tombstone written)", ["entity"], registry=r)
        self.entities = Gauge("stream_state_entities", "Entities in this worker's state table (its partitions)",
                              ["entity"], registry=r)
        self.assigned = Gauge("stream_assigned_partitions", "Source partitions this worker owns",
                              registry=r)
        self.lag = Gauge("stream_consumer_lag", "Records behind the partition end", ["topic", "partition"],
                         registry=r)

    def count(self, events_out: dict[Any, Any], done: Any, topic: str) -> None:
        """Count what one record did (a ``streaming.processor.Applied``); ``events_out`` holds
        the pipeline's bound outcome counters."""
        if done.newer_schema:  # a producer upgraded before this worker: its new fields are ignored
            self.newer_schema.labels(topic).inc()
        if done.result is not None:
            events_out[done.result.outcome].inc()
            if done.result.skipped_corrections:
                self.corrections_skipped.inc(done.result.skipped_corrections)

    def serve(self, port: int, host: str = "127.0.0.1") -> None:
        if port:
            start_http_server(port, addr=host, registry=self.registry)
