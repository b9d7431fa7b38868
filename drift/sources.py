"""Where drift data comes from: the champion's training reference sample in MLflow, recent
scores from the ``scores`` topic, or parquet/CSV files."""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd

from core import kafka
from core.contracts import InvalidEvent, decode_score
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
    return pd.read_parquet(local), f"{name} v{mv.version} training reference", str(mv.run_id)


def recent_scores(conn: kafka.Kafka, topic: str, window_s: float, limit: int = 500_000, timeout_s: float = 60.0
                  ) -> pd.DataFrame:
    """Scores published within the last ``window_s`` seconds (the newest ``limit`` of them):
    their model inputs, score, decision and scoring time (``scored_at``, epoch ms)."""
    from confluent_kafka import Consumer, TopicPartition

    from stack import health

    if health.kafka(conn) is not None:
        raise DriftInputError(f"Kafka at {kafka.bootstrap(conn)} is not reachable (make up), or pass --current PATH")
    consumer = Consumer(kafka.client_config(conn, {"group.id": f"drift-{time.time_ns()}", "enable.auto.commit": False}))
    try:
        meta = consumer.list_topics(topic, timeout=10).topics.get(topic)
        if meta is None or meta.error is not None:
            raise DriftInputError(f"topic {topic!r} not found")
        since = int((time.time() - window_s) * 1000)
        starts = consumer.offsets_for_times([TopicPartition(topic, p, since) for p in meta.partitions], timeout=10)
        ends = {}
        assign = []
        for tp in starts:
            _, high = consumer.get_watermark_offsets(TopicPartition(topic, tp.partition), timeout=10)
            if tp.offset >= 0 and tp.offset < high:
                assign.append(tp)
                ends[tp.partition] = high
        rows: list[dict] = []
        invalid = 0  # records that break the scores contract: skipped (counted in the frame's attrs)
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
                        rec = decode_score(value)
                    except InvalidEvent:
                        invalid += 1
                        continue
                    rows.append({**rec.get("features", {}), "score": rec.get("fraud_probability"),
                                 "model_version": rec.get("model_version"), "event_id": rec.get("event_id"),
                                 "decision": rec.get("decision"), "scored_at": rec.get("scored_at")})
                    if len(rows) > 2 * limit:
                        del rows[:-limit]
    finally:
        consumer.close()
    if not rows:
        raise DriftInputError(f"no scores on {topic!r} in the last {window_s:.0f} s: is the scorer running "
                              "(make status)? Widen --window or pass --current PATH")
    df = pd.DataFrame(rows[-limit:])
    df.attrs["invalid_records"] = invalid
    return df
