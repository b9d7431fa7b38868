"""Per-card features.

Online: ``card_window_state`` holds each card's recent events (a compact blob written by the
stream through a push source); the read function ``streaming.read`` evaluates every window
feature from it as of the request time, so windows slide at read time.

Offline: ``card_txn_features`` is the append-only log (partitioned parquet) of, for every
transaction, the features as of just before it (model inputs) and just after it
(``after_*``, what rule labels describe), written by the same code.
"""

from datetime import timedelta

from entities import card
from feast import FeatureView, Field, FileSource, PushSource
from feast.types import Bytes, Float64, Int64, String

card_state_source = FileSource(
    name="card_state_source",
    path="data/offline/card_state",
    timestamp_field="event_timestamp",
    description="Not written: the card state lives online only (the offline truth is card_txn_features).",
)
card_state_push = PushSource(name="card_state_push", batch_source=card_state_source)

card_window_state = FeatureView(
    name="card_window_state",
    entities=[card],
    # Windows reach back 24 h; a card quiet for longer reads as empty (counts 0).
    ttl=timedelta(days=2),
    schema=[
        Field(name="state", dtype=Bytes, description="msgpack of the card's recent events"),
        Field(name="last_event_time", dtype=Int64, description="newest event time, epoch ms"),
    ],
    source=card_state_push,
    online=True,
)

WINDOW_FIELDS = [
    ("txn_count_1m", Int64), ("txn_count_5m", Int64), ("txn_count_1h", Int64), ("txn_count_24h", Int64),
    ("amount_sum_5m", Float64), ("amount_sum_1h", Float64), ("amount_avg_5m", Float64),
    ("amount_max_5m", Float64), ("amount_std_1h", Float64), ("unique_countries_5m", Int64),
    ("unique_countries_1h", Int64), ("unique_merchants_1h", Int64), ("has_high_risk_mcc", Int64),
    ("seconds_since_last_txn", Float64), ("amount_mean_24h", Float64), ("amount_std_24h", Float64),
    ("velocity_score", Float64), ("geo_diversity_score", Float64), ("amount_zscore_24h", Float64),
    ("hour_of_day", Int64), ("is_weekend", Int64),
]

card_txn_log = FileSource(
    name="card_txn_log",
    path="data/offline/card_txn_features",
    timestamp_field="event_timestamp",
    description="Append-only parquet, partitioned by date, written by the stream and the backfill.",
)

card_txn_features = FeatureView(
    name="card_txn_features",
    entities=[card],
    ttl=timedelta(days=2),
    schema=[Field(name=n, dtype=t) for n, t in WINDOW_FIELDS]
    + [Field(name=f"after_{n}", dtype=t) for n, t in WINDOW_FIELDS]
    + [Field(name="event_key", dtype=Int64), Field(name="status", dtype=String),
       Field(name="revision", dtype=Int64)],
    source=card_txn_log,
    online=False,
)
