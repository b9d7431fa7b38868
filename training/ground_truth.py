"""The delayed ground truth (``fraud-feedback``): for honest evaluation only, never labels."""

from __future__ import annotations

import pandas as pd

from core import kafka
from core.contracts import FRAUD_FEEDBACK, FraudFeedback, InvalidEvent, decode_score, decode_versioned
from stack import health


def read(conn: kafka.Kafka, topic: str = FRAUD_FEEDBACK, since_ms: int | None = None) -> pd.DataFrame | None:
    """Every feedback record up to the topic's current end, or those published since
    ``since_ms`` (None when Kafka is unreachable or the topic does not exist)."""
    from streaming.backfill import from_topic

    if health.kafka(conn) is not None:
        return None
    try:
        records, _ = from_topic(conn, topic, since_ms)
    except ValueError:  # no such topic
        return None
    rows: list[tuple[str, bool, str]] = []
    for raw in records:
        try:
            fb, _ = decode_versioned(raw, FraudFeedback)
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


def stream_scores(conn: kafka.Kafka, topic: str, since_ms: int | None = None) -> pd.DataFrame | None:
    """The pipeline's own scores (source "stream"), one row per event (the newest): its
    decision (a decline gets no chargeback), the probability that the outcome was observed
    (``label_probability``: below 1 for a would-be decline approved for exploration), the
    served version and probability, and the shadow challenger's. With ``since_ms``, only
    records published since. None when Kafka or the topic is absent."""

    from streaming.backfill import from_topic

    if health.kafka(conn) is not None:
        return None
    try:
        records, _ = from_topic(conn, topic, since_ms)
    except ValueError:
        return None
    rows = []
    for raw in records:
        try:
            r = decode_score(raw)
        except InvalidEvent:  # not the contract: skipped
            continue
        if r["source"] != "stream":
            continue
        shadow = r.get("shadow") or {}
        rows.append((str(r["event_id"]), str(r.get("card_id", "")), int(r.get("event_time", 0)),
                     str(r.get("model_version", "")), float(r.get("fraud_probability", float("nan"))),
                     r["decision"] == "decline", float(r.get("label_probability", 1.0)),
                     str(shadow.get("model_version", "")), float(shadow.get("fraud_probability", float("nan")))))
    df = pd.DataFrame(rows, columns=["event_id", "card_id", "event_time", "version", "p", "declined",
                                     "label_probability", "shadow_version", "shadow_p"])
    return df.drop_duplicates("event_id", keep="last").reset_index(drop=True)


def decisions(conn: kafka.Kafka, topic: str) -> pd.DataFrame | None:
    """Per event id: declined, and label_probability (stream_scores); None when there are none."""
    df = stream_scores(conn, topic)
    return None if df is None or df.empty else df[["event_id", "declined", "label_probability"]]
