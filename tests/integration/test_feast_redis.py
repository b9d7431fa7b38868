"""Feast through its Redis online store: apply, push, get_online_features."""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd
import redis
from feast.data_source import PushMode

from core import feast_store
from core.settings import StackSettings


def test_apply_registers_the_repo(feast_repo: StackSettings) -> None:
    store = feast_store.open_store(feast_repo)
    assert {fv.name for fv in store.list_feature_views()} >= {"card_stats"}
    assert "fraud_v1" in {fs.name for fs in store.list_feature_services()}
    assert "card" in {e.name for e in store.list_entities()}


def test_push_then_read_through_redis(feast_repo: StackSettings) -> None:
    store = feast_store.open_store(feast_repo)
    now = pd.Timestamp(datetime.now(UTC))
    df = pd.DataFrame({
        "card_id": ["card-a", "card-b"],
        "txn_count_5m": [3, 7],
        "amount_sum_5m": [12.5, 990.0],
        "event_timestamp": [now, now],
    })
    store.push("card_stats_push", df, to=PushMode.ONLINE)

    got = store.get_online_features(
        features=store.get_feature_service("fraud_v1"),
        entity_rows=[{"card_id": "card-a"}, {"card_id": "card-b"}, {"card_id": "card-unknown"}],
    ).to_dict()
    assert got["txn_count_5m"] == [3, 7, None]
    assert got["amount_sum_5m"] == [12.5, 990.0, None]

    # The values live in Redis itself (the online store is real, not in-process).
    client = redis.Redis(host=feast_repo.host, port=feast_repo.redis_port, db=feast_repo.redis_db)
    assert client.dbsize() >= 2


def test_newer_push_wins_and_older_is_ignored(feast_repo: StackSettings) -> None:
    store = feast_store.open_store(feast_repo)
    t1 = pd.Timestamp("2026-01-01T00:00:10Z")
    t0 = pd.Timestamp("2026-01-01T00:00:00Z")
    for ts, count in ((t1, 5), (t0, 1)):  # the older row arrives last
        store.push("card_stats_push", pd.DataFrame({
            "card_id": ["card-order"], "txn_count_5m": [count], "amount_sum_5m": [1.0],
            "event_timestamp": [ts]}), to=PushMode.ONLINE)
    got = store.get_online_features(features=["card_stats:txn_count_5m"],
                                    entity_rows=[{"card_id": "card-order"}]).to_dict()
    assert got["txn_count_5m"] == [5]
