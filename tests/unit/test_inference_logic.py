"""Pure inference logic: decisions, tiers, the pre-transaction view, request validation."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from core.card_state import CardState, event_key
from core.features import window_features
from inference import scoring
from inference.schemas import EXAMPLE, Transaction
from inference.settings import InferenceSettings


@pytest.mark.parametrize(("p", "want"), [(0.1, "approve"), (0.5, "review"), (0.89, "review"), (0.9, "decline")])
def test_decision_bands(p: float, want: str) -> None:
    assert scoring.decide(p, threshold=0.5, decline_at=0.9) == want


def test_decline_never_below_the_threshold() -> None:
    assert scoring.decide(0.85, threshold=0.95, decline_at=0.8) == "approve"


def test_tiers() -> None:
    assert [scoring.tier(p, {"high": 0.7, "medium": 0.4}) for p in (0.1, 0.4, 0.69, 0.7)] == \
        ["low", "medium", "medium", "high"]


def _state(events: list[tuple[int, str]]) -> CardState:
    s = CardState()
    for ts, eid in events:
        s.insert(ts, event_key(eid), 10.0, "DE", "m1", False)
    return s


def test_a_retried_transaction_sees_its_own_before_view() -> None:
    t0 = 1_790_000_000_000
    txn = Transaction(**{**EXAMPLE, "event_id": "e-00000002", "event_time": t0 + 60_000})
    fresh = _state([(t0, "e-00000001")])
    again = _state([(t0, "e-00000001"), (t0 + 60_000, "e-00000002"), (t0 + 90_000, "e-00000003")])
    a = scoring.prepare(fresh, t0, txn, t0 + 60_000)
    b = scoring.prepare(again, t0 + 90_000, txn, t0 + 60_000)
    assert a.row == b.row  # later events and the transaction itself are not in its inputs
    assert a.features["txn_count_5m"] == 1 and a.after["txn_count_5m"] == 2
    assert len(fresh) == 1  # scoring never mutates the state it read


def test_a_new_card_reads_as_empty() -> None:
    p = scoring.prepare(CardState(), None, Transaction(**EXAMPLE), 1_790_000_000_000)
    assert p.missing and p.features["txn_count_24h"] == 0
    # 1_790_000_000 s is Monday 2026-09-21 14:13:20 UTC; no history: z-score 0
    assert p.features == {**window_features(CardState(), 1_790_000_000_000),
                          "amount_zscore_24h": 0.0, "hour_of_day": 14, "is_weekend": 0}
    assert all(p.features[k] == 0 for k in ("txn_count_5m", "txn_count_1h", "amount_sum_1h"))


@pytest.mark.parametrize("change", [{"amount": float("nan")}, {"amount": float("inf")}, {"amount": 0},
                                    {"currency": "ABC"}, {"extra": 1}, {"mcc": 5411}, {"event_time": 5}])
def test_bad_requests_are_rejected(change: dict) -> None:
    with pytest.raises(ValidationError):
        Transaction(**{**EXAMPLE, **change})


def test_production_needs_a_long_admin_token() -> None:
    with pytest.raises(ValidationError, match="INFERENCE_ADMIN_TOKEN"):
        InferenceSettings(production=True)
    assert InferenceSettings(production=True, admin_token="x" * 16).production


def test_fields_that_are_not_inputs_do_not_change_the_model_row() -> None:
    """Device, IP, user, merchant and coordinates of the transaction being scored are not
    model inputs: two transactions differing only there get the same row (and score); the
    amount, MCC and channel are inputs."""
    t0 = 1_790_000_000_000
    state = _state([(t0 - 60_000, "e-00000001"), (t0 - 30_000, "e-00000002")])
    base = Transaction(**{**EXAMPLE, "event_id": "e-00000009", "event_time": t0})
    other = base.model_copy(update={"device_id": "dev-99", "ip": "192.168.0.77", "user_id": "user-9",
                                    "merchant_id": "m-9999", "lat": -33.9, "lon": 151.2})
    row = scoring.prepare(state, t0, base, t0).row
    assert scoring.prepare(state, t0, other, t0).row == row
    for change in ({"amount": 999.0}, {"mcc": "7995"}, {"channel": "online"}):
        assert scoring.prepare(state, t0, base.model_copy(update=change), t0).row != row


def test_exploration_approves_the_logged_share_of_would_be_declines_only() -> None:
    import random

    rng = random.Random(1)
    outs = [scoring.explore("decline", 0.05, rng) for _ in range(20_000)]
    explored = sum(e for _, e in outs)
    assert 0.04 < explored / len(outs) < 0.06
    assert all(d == ("approve" if e else "decline") for d, e in outs)
    assert {scoring.explore(d, 0.5, rng) for d in ("approve", "review") for _ in range(50)} == {
        ("approve", False), ("review", False)}
    assert scoring.explore("decline", 0.0, rng) == ("decline", False)


def _two_pass(state: CardState, txn: Transaction, t_ms: int) -> tuple[dict, dict]:
    """The reference: the before view and the after view each from its own window pass."""
    from core.contracts import HIGH_RISK_MCCS
    from core.features import with_request

    key = event_key(txn.event_id)
    before = state.prefix_len(t_ms, key, inclusive=False)
    after_state, _ = state.with_event(t_ms, key, txn.amount, txn.country, txn.merchant_id, txn.mcc in HIGH_RISK_MCCS)
    return (with_request(window_features(state, t_ms, before), txn.amount, t_ms),
            with_request(window_features(after_state, t_ms, before + 1), txn.amount, t_ms))


def test_the_one_pass_view_equals_two_window_passes() -> None:
    """``prepare`` derives the after view (what the rules read) from the before view in one
    window pass: the same values as evaluating both views, on random cards and requests
    (amounts in cents, as the stream's own equivalence test draws them; equal amounts, whose
    deviation is float noise, included: core.features.zscore)."""
    import math

    from hypothesis import given, settings
    from hypothesis import strategies as st

    t0 = 1_790_000_000_000
    cents = st.integers(1, 500_000).map(lambda c: c / 100)
    event = st.tuples(st.integers(-2 * 86_400_000, 0), cents, st.sampled_from(["DE", "FR", "US"]),
                      st.sampled_from(["m1", "m2", "m3"]), st.booleans())

    @settings(max_examples=300, deadline=None)
    @given(st.lists(event, max_size=40), cents, st.sampled_from(["5411", "7995"]),
           st.sampled_from(["DE", "JP"]), st.integers(-5_000, 0))
    def check(events: list, amount: float, mcc: str, country: str, dt: int) -> None:
        state = CardState()
        for j, (off, amt, c, m, risky) in enumerate(events):
            state.insert(t0 + off, event_key(f"e-{j:08d}"), amt, c, m, risky)
        t = t0 + dt
        txn = Transaction(**{**EXAMPLE, "event_id": "e-99999999", "event_time": t, "amount": amount, "mcc": mcc,
                             "country": country})
        p = scoring.prepare(state, None, txn, t)
        want_before, want_after = _two_pass(state, txn, t)
        assert p.features.keys() == want_before.keys() and p.after.keys() == want_after.keys()
        for got, want in ((p.features, want_before), (p.after, want_after)):
            for k, v in want.items():
                assert math.isclose(got[k], v, rel_tol=1e-9, abs_tol=1e-9), (k, got[k], v)

    check()


def test_a_record_the_kafka_client_refuses_is_dropped_and_counted_not_a_failed_request() -> None:
    """Best effort (the API): a record librdkafka refuses at once (here: over message.max.bytes;
    live: a topic that does not exist) is dropped and counted, never a 500; at-least-once (the
    stream scorer) raises instead, so that it does not commit."""
    from confluent_kafka import KafkaException

    from inference.publisher import ScorePublisher

    drops: list[str] = []
    huge = {"blob": "x" * 2_000_000}
    best = ScorePublisher("127.0.0.1:1", "scores", 100, drops.append)
    reliable = ScorePublisher("127.0.0.1:1", "scores", 100, drops.append, reliable=True)
    try:
        best.publish("card-1", huge)
        assert drops == ["produce_failed"]
        with pytest.raises(KafkaException):
            reliable.publish("card-1", huge)
        assert drops == ["produce_failed"]
    finally:
        for p in (best, reliable):
            p.close(timeout_s=0.1)
