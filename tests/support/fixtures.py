"""Shared fixtures (imported by tests/conftest.py): a stream-produced dataset for training,
inference and the end-to-end loop."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from confluent_kafka import Producer

from core import feast_store
from core.contracts import FRAUD_FEEDBACK, TRANSACTIONS
from core.settings import StackSettings
from stack.topics import ensure_topics
from streaming.generators.clicks import ClickStream
from streaming.generators.transactions import GenConfig, TransactionStream
from streaming.sinks import read_dataset
from tests.support.stream import WorkerProcess, wait_for

N_TXNS = 6000
N_CLICKS = 4000


@dataclass
class StreamRun:
    """What the stream fixture built: the isolated repo's settings, its topics, the worker's
    app id (a worker started with it again resumes its state from the changelog) and the
    generator, which continues the same world and clock where the fixture stopped."""

    settings: StackSettings
    feedback: str
    transactions: str
    dead_letters: str
    clicks: str
    app_id: str
    stream: TransactionStream
    root: Path


@pytest.fixture(scope="session")
def stream_data(stream_run: StreamRun) -> tuple[StackSettings, str]:
    """(settings of an isolated repo holding the stream's offline log and online state,
    feedback topic)."""
    return stream_run.settings, stream_run.feedback


@pytest.fixture(scope="session")
def stream_run(feast_repo: StackSettings, kafka_bootstrap: str, mlflow_uri: str,
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[StreamRun]:
    """Generated transactions and clicks through Kafka and a real worker."""
    root = tmp_path_factory.mktemp("training")
    host, _, port = kafka_bootstrap.rpartition(":")
    settings = feast_store.isolated_copy(feast_repo, root, kafka_host=host, kafka_port=int(port))
    txn, fb, dlq, clk = (f"{p}-{uuid.uuid4().hex[:8]}" for p in ("txn", "fb", "dlq", "clk"))
    ensure_topics(kafka_bootstrap, [txn, fb, dlq, clk], partitions=3)
    # one purchase per card every hour or so: velocity rules fire on fraud scenarios
    stream = TransactionStream(GenConfig(seed=5, users=1500, events_per_s=0.5, fraud_rate=0.02,
                                         feedback_delay_ms=0, start_ms=1_790_000_000_000))
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "linger.ms": 5})
    n = 0
    for rec in _take(stream, N_TXNS):
        producer.produce(txn if rec.topic == TRANSACTIONS else fb if rec.topic == FRAUD_FEEDBACK else dlq,
                         key=rec.key, value=rec.value)
        n += rec.topic == TRANSACTIONS
    clicks = ClickStream(seed=6, users=300, sessions_per_s=0.5, start_ms=1_790_000_000_000)
    n_clicks = 0
    for rec in clicks:
        producer.produce(clk, key=rec.key, value=rec.value)
        n_clicks += 1
        if n_clicks >= N_CLICKS:
            break
    assert producer.flush(60) == 0
    del producer  # no client left retrying a broker that is gone at the end of the session
    app_id = f"t-{uuid.uuid4().hex[:6]}"
    worker = WorkerProcess(settings, app_id, txn, dlq, clk, root / "worker.log").start()
    try:
        def logged() -> int:
            df = read_dataset(feast_store.offline_dir(settings, ""), "transactions")
            return df["event_id"].nunique() if not df.empty else 0

        wait_for(lambda: logged() >= n, 240, "every transaction in the offline log", [worker])

        def clicks_logged() -> int:
            df = read_dataset(feast_store.offline_dir(settings, ""), "clicks")
            return df["event_id"].nunique() if not df.empty else 0

        wait_for(lambda: clicks_logged() >= n_clicks, 240, "every click in the offline log", [worker])
    finally:
        worker.stop()
    old = os.environ.get("MLFLOW_TRACKING_URI")
    os.environ["MLFLOW_TRACKING_URI"] = mlflow_uri
    yield StreamRun(settings, fb, txn, dlq, clk, app_id, stream, root)
    if old is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = old


def _take(stream: TransactionStream, n: int) -> list:
    out, count = [], 0
    for rec in stream:
        out.append(rec)
        count += rec.topic == TRANSACTIONS
        if count >= n:
            break
    return out + list(stream.drain())
