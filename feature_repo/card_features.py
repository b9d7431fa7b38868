"""Per-card features written by the stream through a push source.

The offline side of the push source is the append-only feature log (parquet) that the
stream writes; training reads it point-in-time through Feast.
"""

from datetime import timedelta

from entities import card
from feast import FeatureView, Field, FileSource, PushSource
from feast.types import Float64, Int64

card_stats_log = FileSource(
    name="card_stats_log",
    path="data/card_stats.parquet",
    timestamp_field="event_timestamp",
    description="Append-only log of per-card feature rows (offline store).",
)

card_stats_push = PushSource(name="card_stats_push", batch_source=card_stats_log)

card_stats = FeatureView(
    name="card_stats",
    entities=[card],
    ttl=timedelta(days=2),
    schema=[
        Field(name="txn_count_5m", dtype=Int64),
        Field(name="amount_sum_5m", dtype=Float64),
    ],
    source=card_stats_push,
    online=True,
)
