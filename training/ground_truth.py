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


def decisions(bootstrap: str, topic: str) -> pd.DataFrame | None:
    """The bank's decisions from the pipeline's own scores (source "stream"): per event id,
    whether it was declined (no chargeback can follow) and the probability that its outcome
    was observed (``label_probability``: below 1 for a would-be decline approved for
    exploration). None when Kafka or the topic is absent."""
    import orjson

    from streaming.backfill import from_topic

    if health.kafka(bootstrap) is not None:
        return None
    try:
        records, _ = from_topic(bootstrap, topic)
    except ValueError:
        return None
    rows: list[tuple[str, bool, float]] = []
    for raw in records:
        try:
            rec = orjson.loads(raw)
        except orjson.JSONDecodeError:
            continue
        if isinstance(rec, dict) and rec.get("source") == "stream" and "decision" in rec:
            rows.append((str(rec["event_id"]), rec["decision"] == "decline",
                         float(rec.get("label_probability", 1.0))))
    if not rows:
        return None
    df = pd.DataFrame(rows, columns=["event_id", "declined", "label_probability"])
    return df.drop_duplicates("event_id", keep="last")
