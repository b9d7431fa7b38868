"""Settings of the stream stage (env prefix ``STREAMING_``)."""

from __future__ import annotations

from typing import Literal

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class StreamingSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="STREAMING_", frozen=True, extra="forbid")

    #: the stream engine: "faust" (the default, the engine the system was specified with) or
    #: "quix" (Quix Streams: confluent-kafka, RocksDB state with changelog topics). Also
    #: read from STREAM_ENGINE
    engine: Literal["faust", "quix"] = Field("faust", validation_alias=AliasChoices("STREAMING_ENGINE",
                                                                                   "STREAM_ENGINE", "engine"))
    app_id: str = "streamfeat-features"
    transactions_topic: str = "transactions"
    #: empty: this worker does not process clicks
    clicks_topic: str = "clicks"
    dead_letters_topic: str = "dead-letters"
    #: flush pending online writes at least this often (and at max_batch_rows)
    flush_interval_s: float = Field(0.1, gt=0)
    max_batch_rows: int = Field(5_000, ge=1)
    #: the Faust engine takes records in batches of at most this many (``Stream.noack_take``),
    #: or what arrived within ``take_within_s``
    take_max: int = Field(500, ge=1)
    take_within_s: float = Field(0.01, gt=0)
    #: offline parquet files are written at most this often (bigger files, same guarantees)
    offline_flush_interval_s: float = Field(2.0, gt=0)
    allowed_lateness_ms: int = Field(60_000, ge=0)
    #: an event dated more than this after its ingest time goes to dead letters
    max_future_skew_ms: int = Field(300_000, ge=0)
    max_events_per_card: int = Field(5_000, ge=10)
    #: an out-of-order event's corrections (a row per later event of its card) are coalesced
    #: per card and written at most this many rows per offline flush, so one late event on a
    #: busy card never stalls the worker (its offset is acked once they are all durable)
    max_corrections_per_flush: int = Field(200, ge=1)
    #: a card (user) whose newest event is older than its partition's newest event by more
    #: than this is forgotten: its table entry is deleted and tombstoned in the changelog.
    #: At least 8 days: the longest window is 24 h and "seconds since last" is capped at
    #: 7 days, so a forgotten card's next features equal a remembered one's (for events at
    #: most a day behind their partition's newest)
    state_ttl_s: int = Field(8 * 86_400, ge=8 * 86_400)
    #: how often the worker looks for quiet entities to forget
    state_sweep_interval_s: float = Field(300.0, gt=0)
    #: how often the worker asks Redis whether it restarted (its run_id); after a restart
    #: (which can lose the last second of writes) it rewrites every state it owns
    online_check_interval_s: float = Field(5.0, gt=0)
    #: a failing sink (Redis down, disk full, broker away) is retried with backoff and nothing
    #: is acked meanwhile; at shutdown or a rebalance the worker gives up after this long and
    #: exits (status 75) so that a restart replays the unacked records
    give_up_after_s: float = Field(30.0, gt=0)
    #: backpressure: at this many consumed-but-unacked records the worker stops consuming
    #: until an offline flush acks them (bounds memory while a sink is down)
    max_unacked_records: int = Field(100_000, ge=100)
    #: the Quix engine keeps this many entities' states decoded from one checkpoint to the
    #: next (the others are read from RocksDB and decoded when their next event comes): 0
    #: turns it off. About 0.6 kB per ordinary card
    state_cache_entities: int = Field(200_000, ge=0)
    metrics_port: int = Field(6066, ge=0, le=65535)
    #: the worker's own Kafka consumer settings
    commit_interval_s: float = Field(1.0, gt=0)
    partitions: int = Field(6, ge=1)
    #: "direct": Feast's online store write path with protobuf rows built once per card;
    #: "push": the public FeatureStore.push API (slower; kept as the reference path)
    online_writer: Literal["direct", "push"] = "direct"
