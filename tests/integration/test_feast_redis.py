"""Feast through its Redis online store: apply, write, get_online_features, read function."""

from __future__ import annotations

import pytest
import redis

from core import feast_store
from core.card_state import CardState
from core.settings import StackSettings
from streaming.read import CardFeatureReader
from streaming.sinks import FeastOnlineSink, OnlineBatch

T0 = 1_790_000_000_000


def test_apply_registers_the_repo(feast_repo: StackSettings) -> None:
    store = feast_store.open_store(feast_repo)
    assert {fv.name for fv in store.list_feature_views()} >= {"card_window_state", "card_txn_features",
                                                             "user_click_state", "user_click_features"}
    assert {"fraud_v1", "fraud_v1_training", "personalization_v1", "personalization_v1_training"} <= {
        fs.name for fs in store.list_feature_services()}
    assert {"card", "user", "merchant"} <= {e.name for e in store.list_entities()}


def _state(n: int, start: int = T0) -> CardState:
    s = CardState()
    for i in range(n):
        s.insert(start + i * 10_000, i, 20.0 + i, "DE" if i % 2 else "FR", f"m{i}", i == 0)
    return s


def test_written_state_reads_back_through_feast_and_redis(feast_repo: StackSettings) -> None:
    store = feast_store.open_store(feast_repo)
    batch = OnlineBatch()
    for card, n in (("card-a", 3), ("card-b", 7)):
        batch.put(card, _state(n).pack(), _state(n).last_ts, 0)
    FeastOnlineSink(store).write(batch)

    got = store.get_online_features(features=store.get_feature_service("fraud_v1"),
                                    entity_rows=[{"card_id": "card-a"}, {"card_id": "card-zz"}]).to_dict()
    assert CardState.unpack(got["state"][0]) == _state(3)
    assert got["last_event_time"] == [T0 + 20_000, None]
    client = redis.Redis(host=feast_repo.host, port=feast_repo.redis_port, db=feast_repo.redis_db)
    assert client.dbsize() >= 2  # the values live in Redis itself

    reader = CardFeatureReader(store)
    a, b, new = reader.read(["card-a", "card-b", "card-new"], T0 + 80_000)
    assert (a.found, b.found, new.found) == (True, True, False)
    assert a.features["txn_count_1m"] == 0 and a.features["txn_count_5m"] == 3
    assert b.features["txn_count_1m"] == 4 and b.features["amount_max_5m"] == 26.0
    assert new.features["txn_count_24h"] == 0  # a new card reads as empty, not as an error


def test_last_write_wins_within_the_same_second(feast_repo: StackSettings) -> None:
    """Feast's timestamp check (second resolution) is off: a card's second update within one
    second must not be dropped."""
    store = feast_store.open_store(feast_repo)
    sink = FeastOnlineSink(store)
    for n in (1, 2):
        batch = OnlineBatch()
        batch.put("card-same-second", _state(n, T0).pack(), _state(n, T0).last_ts, 0)
        sink.write(batch)
    (read,) = CardFeatureReader(store).read(["card-same-second"], T0 + 60_000)
    assert read.features["txn_count_5m"] == 2


def test_online_keys_expire_after_the_ttl(feast_repo: StackSettings) -> None:
    """Reproduced: keys never expired (no key_ttl_seconds), so the online store grew with every
    card ever seen. Every write now (re)sets the key's TTL (STACK_REDIS_KEY_TTL_S)."""
    short = feast_repo.model_copy(update={"redis_key_ttl_s": 300})
    store = feast_store.open_store(short)
    client = redis.Redis(host=feast_repo.host, port=feast_repo.redis_port, db=feast_repo.redis_db)
    before = set(client.keys())
    batch = OnlineBatch()
    batch.put("card-ttl", _state(2).pack(), _state(2).last_ts, 0)
    FeastOnlineSink(store).write(batch)
    new = set(client.keys()) - before
    assert new and all(0 < client.ttl(k) <= 300 for k in new)
    assert feast_store.repo_config(StackSettings()).online_store.key_ttl_seconds == 8 * 86_400


def test_a_refused_write_raises_and_the_next_one_lands(feast_repo: StackSettings) -> None:
    """The sink sends its commands as one buffer: an error reply must raise (the worker
    retries it), not pass silently, and the connection must stay usable."""
    store = feast_store.open_store(feast_repo)
    sink = FeastOnlineSink(store)
    assert sink.layout is not None  # the direct path is the one under test
    client = redis.Redis(host=feast_repo.host, port=feast_repo.redis_port, db=feast_repo.redis_db)
    client.set(sink.layout.key("card-blocked"), b"not a hash")
    batch = OnlineBatch()
    batch.put("card-fine", _state(2).pack(), _state(2).last_ts, 0)
    batch.put("card-blocked", _state(3).pack(), _state(3).last_ts, 0)
    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        sink.write(batch)
    client.delete(sink.layout.key("card-blocked"))
    sink.write(batch)
    (fine, blocked) = CardFeatureReader(store).read(["card-fine", "card-blocked"], T0 + 60_000)
    assert (fine.features["txn_count_5m"], blocked.features["txn_count_5m"]) == (2, 3)


def test_the_online_state_read_equals_get_online_features(feast_repo: StackSettings) -> None:
    """The readers go through Feast's online-store API (``OnlineStates``): the same rows as the
    public ``get_online_features``, for known, unknown and past-the-ttl (quiet 3 days) cards."""
    from streaming.read import STATE_FEATURES, OnlineStates

    store = feast_store.open_store(feast_repo)
    quiet = _state(2, T0 - 3 * 86_400_000)
    batch = OnlineBatch()
    batch.put("card-r1", _state(4).pack(), _state(4).last_ts, 0)
    batch.put("card-quiet-3d", quiet.pack(), quiet.last_ts, 0)
    FeastOnlineSink(store).write(batch)
    ids = ["card-r1", "card-unknown", "card-quiet-3d"]
    got = store.get_online_features(features=STATE_FEATURES, entity_rows=[{"card_id": c} for c in ids]).to_dict()
    assert OnlineStates(store, "card_window_state", "card_id").read(ids) == list(
        zip(got["state"], got["last_event_time"], strict=True))
    assert got["state"][1] is None and got["state"][2] is not None
