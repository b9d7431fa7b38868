"""The delayed ground truth (``fraud-feedback``): for honest evaluation only, never labels."""

from __future__ import annotations

import pandas as pd

from core.contracts import FRAUD_FEEDBACK, FraudFeedback, InvalidEvent, decode
from stack import health


def read(bootstrap: str, topic: str = FRAUD_FEEDBACK, since_ms: int | None = None) -> pd.DataFrame | None:
    """Every feedback record up to the topic's current end, or those published since
    ``since_ms`` (None when Kafka is unreachable or the topic does not exist)."""
    from streaming.backfill import from_topic

    if health.kafka(bootstrap) is not None:
        return None
    try:
        records, _ = from_topic(bootstrap, topic, since_ms)
    except ValueError:  # no such topic
        return None
    rows: list[tuple[str, bool, str]] = []
    for raw in records:
        try:
            fb = decode(raw, FraudFeedback)
        except InvalidEvent:
            continue
        rows.append((fb.event_id, fb.is_fraud, fb.scenario))
    df = pd.DataFrame(rows, columns=["event_id", "is_fraud", "scenario"])
    return df.drop_duplicates("event_id", keep="last")


def align(event_ids: pd.Series, truth: pd.DataFrame | None) -> pd.DataFrame:
    """Truth per row (NA where the feedback has not arrived)."""
    base = pd.DataFrame({"event_id": event_ids.to_numpy()})
    if truth is None or truth.empty:
        return base.assign(is_fraud=pd.NA, scenario=pd.NA)
    return base.merge(truth, on="event_id", how="left")
