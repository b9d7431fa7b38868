"""Where drift data comes from: the champion's training reference sample in MLflow, recent
scores from the ``scores`` topic, or parquet/CSV files."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from core import kafka
from core.contracts import REQUEST_FIELDS, Click, InvalidEvent, decode, decode_propensity, decode_score
from core.settings import StackSettings


class DriftInputError(Exception):
    """Missing reference, empty window, mismatched columns: one line for the user."""


def read_file(path: Path) -> pd.DataFrame:
    if not path.exists():
        raise DriftInputError(f"file not found: {path}")
    if path.suffix not in (".parquet", ".pq", ".csv"):
        raise DriftInputError(f"{path}: expected a .parquet or .csv file")
    try:
        return pd.read_parquet(path) if path.suffix != ".csv" else pd.read_csv(path)
    except (OSError, ValueError) as exc:  # corrupt or truncated file, unreadable CSV (pyarrow's are ValueErrors)
        raise DriftInputError(f"cannot read {path}: {str(exc).splitlines()[0]}") from None


def champion_reference(settings: StackSettings, name: str = "fraud-detector", alias: str = "champion"
                       ) -> tuple[pd.DataFrame, str, str]:
    """The reference sample logged by the champion's training run (features and score)."""
    import mlflow
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from training import tracking

    tracking.connect(settings, lambda _m: None)
    try:
        mv = MlflowClient().get_model_version_by_alias(name, alias)
    except MlflowException:
        raise DriftInputError(f"no {name}@{alias} in the registry to take a reference from: train one "
                              "(python training/train.py) or pass --reference PATH") from None
    try:
        local = mlflow.artifacts.download_artifacts(run_id=mv.run_id, artifact_path="drift/reference.parquet")
    except MlflowException:
        raise DriftInputError(f"{name} v{mv.version}'s run has no drift/reference.parquet; pass --reference PATH"
                              ) from None
    ref = pd.read_parquet(local)
    ref.attrs["model_version"] = str(mv.version)
    return ref, f"{name} v{mv.version} training reference", str(mv.run_id)


def _read_since(conn: kafka.Kafka, topic: str, since_ms: int, row: Callable[[bytes], dict | None], limit: int,
                timeout_s: float) -> tuple[list[dict], int]:
    """Rows of the records produced since ``since_ms`` up to the topic's end now (``row``
    gives None for a record to leave out, raises InvalidEvent for one breaking its contract:
    skipped and counted); the newest ``limit``. Returns (rows, invalid)."""
    from confluent_kafka import Consumer, TopicPartition

    from stack import health

    if health.kafka(conn) is not None:
        raise DriftInputError(f"Kafka at {kafka.bootstrap(conn)} is not reachable (make up), or pass --current PATH")
    consumer = Consumer(kafka.client_config(conn, {"group.id": f"drift-{time.time_ns()}", "enable.auto.commit": False}))
    rows: list[dict] = []
    invalid = 0
    try:
        meta = consumer.list_topics(topic, timeout=10).topics.get(topic)
        if meta is None or meta.error is not None:
            raise DriftInputError(f"topic {topic!r} not found")
        starts = consumer.offsets_for_times([TopicPartition(topic, p, since_ms) for p in meta.partitions], timeout=10)
        ends = {}
        assign = []
        for tp in starts:
            _, high = consumer.get_watermark_offsets(TopicPartition(topic, tp.partition), timeout=10)
            if tp.offset >= 0 and tp.offset < high:
                assign.append(tp)
                ends[tp.partition] = high
        if assign:
            consumer.assign(assign)
            done: set[int] = set()
            deadline = time.monotonic() + timeout_s
            while len(done) < len(ends) and time.monotonic() < deadline:
                for m in consumer.consume(5000, 0.5):
                    offset, part, value = m.offset(), m.partition(), m.value()
                    if m.error() is not None or offset is None or part is None or value is None:
                        continue
                    if offset >= ends[part] - 1:
                        done.add(part)
                    try:
                        r = row(value)
                    except InvalidEvent:
                        invalid += 1
                        continue
                    if r is not None:
                        rows.append(r)
                    if len(rows) > 2 * limit:
                        del rows[:-limit]
    finally:
        consumer.close()
    return rows[-limit:], invalid


def _fraud_row(value: bytes) -> dict:
    rec = decode_score(value)
    request = rec.get("request") or {}
    return {**rec.get("features", {}), "score": rec.get("fraud_probability"), "model_version": rec.get("model_version"),
            "event_id": rec.get("event_id"), "decision": rec.get("decision"), "scored_at": rec.get("scored_at"),
            **{f: request[f] for f in REQUEST_FIELDS if isinstance(request.get(f), str)}}


def _propensity_row(value: bytes) -> dict:
    rec = decode_propensity(value)
    return {**rec.get("features", {}), "score": rec.get("purchase_probability"),
            "model_version": rec.get("model_version"), "event_id": rec.get("event_id"), "user_id": rec["user_id"],
            "session_id": rec["session_id"], "event_time": rec["event_time"], "scored_at": rec.get("scored_at")}


def recent_scores(conn: kafka.Kafka, topic: str, window_s: float, limit: int = 500_000, timeout_s: float = 60.0,
                  task: str = "fraud") -> pd.DataFrame:
    """Scores published within the last ``window_s`` seconds (the newest ``limit`` of them):
    their model inputs, score and scoring time (``scored_at``, epoch ms); for fraud the
    decision, for personalization (the ``propensity-scores`` topic) the click's user, session
    and time."""
    since = int((time.time() - window_s) * 1000)
    rows, invalid = _read_since(conn, topic, since, _fraud_row if task == "fraud" else _propensity_row, limit,
                                timeout_s)
    if not rows:
        raise DriftInputError(f"no scores on {topic!r} in the last {window_s:.0f} s: is the scorer running "
                              "(make status)? Widen --window or pass --current PATH")
    df = pd.DataFrame(rows)
    df.attrs["invalid_records"] = invalid
    return df


def recent_purchases(conn: kafka.Kafka, topic: str, since_ms: int, limit: int = 2_000_000,
                     timeout_s: float = 60.0) -> pd.DataFrame:
    """The purchase clicks produced since ``since_ms`` (user, session, event time): the
    ground truth of purchase propensity, already in the click stream."""
    def purchase(value: bytes) -> dict | None:
        c = decode(value, Click)
        return ({"user_id": c.user_id, "session_id": c.session_id, "event_time": c.event_time}
                if c.action == "purchase" else None)

    rows, _ = _read_since(conn, topic, since_ms, purchase, limit, timeout_s)
    return pd.DataFrame(rows, columns=["user_id", "session_id", "event_time"])
