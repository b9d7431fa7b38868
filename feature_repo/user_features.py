"""Per-user click features (personalization), the same design as the card features:
online, each user's recent clicks (``user_click_state``) evaluated at read time; offline,
the append-only log of before/after features per click (``user_click_features``)."""

from datetime import timedelta

from entities import user
from feast import FeatureView, Field, FileSource, PushSource
from feast.types import Bytes, Float64, Int64, String

user_state_source = FileSource(
    name="user_state_source",
    path="data/offline/user_state",
    timestamp_field="event_timestamp",
    description="Not written: the user state lives online only (the offline truth is user_click_features).",
)
user_state_push = PushSource(name="user_state_push", batch_source=user_state_source)

user_click_state = FeatureView(
    name="user_click_state",
    entities=[user],
    ttl=timedelta(days=2),
    schema=[
        Field(name="state", dtype=Bytes, description="msgpack of the user's recent clicks"),
        Field(name="last_event_time", dtype=Int64, description="newest click time, epoch ms"),
    ],
    source=user_state_push,
    online=True,
)

USER_FIELDS = [
    ("click_count_1h", Int64), ("click_count_24h", Int64), ("view_count_1h", Int64),
    ("add_to_cart_count_1h", Int64), ("purchase_count_24h", Int64), ("sessions_24h", Int64),
    ("dwell_avg_ms_1h", Float64), ("add_to_cart_rate_24h", Float64), ("purchase_rate_24h", Float64),
    ("seconds_since_last_click", Float64),
]

user_click_log = FileSource(
    name="user_click_log",
    path="data/offline/user_click_features",
    timestamp_field="event_timestamp",
    description="Append-only parquet, partitioned by date, written by the stream and the backfill.",
)

user_click_features = FeatureView(
    name="user_click_features",
    entities=[user],
    ttl=timedelta(days=2),
    schema=[Field(name=n, dtype=t) for n, t in USER_FIELDS]
    + [Field(name=f"after_{n}", dtype=t) for n, t in USER_FIELDS]
    + [Field(name="event_key", dtype=Int64), Field(name="status", dtype=String),
       Field(name="revision", dtype=Int64)],
    source=user_click_log,
    online=False,
)
