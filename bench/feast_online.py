"""Feast online store (Redis) push and read throughput against a raw Redis pipeline doing
the same writes and reads, in the same run: what Feast's layer costs over Redis itself."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import redis
from feast.data_source import PushMode
from rich.console import Console
from tqdm import tqdm

from bench.common import bench_stack, write_result
from core import feast_store
from core.card_state import CardState
from core.settings import REPO_ROOT

ROWS = int(os.environ.get("BENCH_FEAST_ROWS", "100000"))
PUSH_BATCH = 10_000
READS = int(os.environ.get("BENCH_FEAST_READS", "5000"))
FEATURES = ["card_window_state:state", "card_window_state:last_event_time"]


def frame(rows: int) -> pd.DataFrame:
    """Card states as the stream writes them: a blob of a few recent events each."""
    rng = np.random.default_rng(7)
    states = []
    for _ in range(rows):
        s = CardState()
        for j in range(int(rng.integers(1, 6))):
            s.insert(1_790_000_000_000 + j * 60_000, j, float(rng.gamma(2.0, 40.0)), "DE", f"m{j}", False)
        states.append(s)
    return pd.DataFrame({
        "card_id": [f"card-{i:07d}" for i in range(rows)],
        "state": [s.pack() for s in states],
        "last_event_time": [s.last_ts for s in states],
        "event_timestamp": pd.Timestamp.now(tz="UTC"),
    })


def feast_push(store: Any, df: pd.DataFrame) -> float:
    t0 = time.perf_counter()
    for start in tqdm(range(0, len(df), PUSH_BATCH), desc="feast push", leave=False):
        store.push("card_state_push", df.iloc[start:start + PUSH_BATCH], to=PushMode.ONLINE)
    return len(df) / (time.perf_counter() - t0)


def raw_push(client: redis.Redis, df: pd.DataFrame) -> float:
    """The same rows as one hash per card, pipelined per batch: Redis' own ceiling here."""
    t0 = time.perf_counter()
    cols = df[["card_id", "state", "last_event_time"]].itertuples(index=False)
    pipe = client.pipeline(transaction=False)
    for i, (card, state, last) in enumerate(cols, 1):
        pipe.hset(f"raw:{card}", mapping={"state": state, "last_event_time": int(last), "ts": 1})
        if i % PUSH_BATCH == 0:
            pipe.execute()
    pipe.execute()
    return len(df) / (time.perf_counter() - t0)


def latencies(fn: Any, keys: list[str]) -> np.ndarray:
    out = np.empty(len(keys))
    for i, key in enumerate(keys):
        t0 = time.perf_counter()
        fn(key)
        out[i] = time.perf_counter() - t0
    return out * 1000


def run(console: Console) -> list[dict[str, Any]]:
    with bench_stack(("redis",)) as stack, tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp) / "feature_repo"
        shutil.copytree(REPO_ROOT / "feature_repo", repo, ignore=shutil.ignore_patterns("data"))
        settings = stack.settings.model_copy(update={"data_dir": Path(tmp) / "data", "feature_repo": repo})
        client = redis.Redis(host=settings.host, port=settings.redis_port, db=settings.redis_db)
        client.flushdb()
        feast_store.apply(settings)
        store = feast_store.open_store(settings)
        df = frame(ROWS)
        console.print(f"pushing {ROWS:,} rows (batches of {PUSH_BATCH:,}) through Feast and raw Redis")
        feast_rows_s = feast_push(store, df)
        raw_rows_s = raw_push(client, df)

        keys = list(np.random.default_rng(1).choice(df["card_id"].to_numpy(), READS))
        console.print(f"reading {READS:,} single entities through Feast and raw Redis")
        feast_ms = latencies(lambda k: store.get_online_features(
            features=FEATURES, entity_rows=[{"card_id": k}]).to_dict(), keys)
        raw_ms = latencies(lambda k: client.hmget(f"raw:{k}", "state", "last_event_time"), keys)
        sample = store.get_online_features(features=FEATURES, entity_rows=[{"card_id": keys[0]}]).to_dict()
        row = df.set_index("card_id").loc[keys[0]]
        if sample["state"][0] != row["state"]:
            raise RuntimeError("Feast read back a different value than it was pushed")
        client.flushdb()

    push = write_result(
        "feast_push_throughput", "rows pushed to the online store per second", feast_rows_s, "rows/s",
        True, "raw Redis pipeline HSET, same rows", raw_rows_s,
        {"rows": ROWS, "batch_rows": PUSH_BATCH, "features": 2, "shared_stack": stack.shared})
    read = write_result(
        "feast_online_read", "single-entity get_online_features per second", 1000 / feast_ms.mean(),
        "reads/s", True, "raw Redis HMGET, same keys", 1000 / raw_ms.mean(),
        {"reads": READS, "features": 2,
         "feast_p50_ms": round(float(np.percentile(feast_ms, 50)), 3),
         "feast_p99_ms": round(float(np.percentile(feast_ms, 99)), 3),
         "raw_p50_ms": round(float(np.percentile(raw_ms, 50)), 3),
         "raw_p99_ms": round(float(np.percentile(raw_ms, 99)), 3), "shared_stack": stack.shared})
    return [push, read]
