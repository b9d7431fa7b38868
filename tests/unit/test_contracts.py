"""Event contracts: validated on produce and on consume, with readable reasons."""

from __future__ import annotations

import pytest

from core.contracts import Click, InvalidEvent, Transaction, decode, encode

GOOD = dict(event_id="0f8e2b9c-1111-4222-8333-444455556666", event_time=1_790_000_000_000, card_id="c1",
            user_id="u1", merchant_id="m1", mcc="5411", amount=12.5, currency="EUR", country="DE",
            lat=52.5, lon=13.4, device_id="d1", ip="10.1.2.3", channel="pos")


def test_round_trip() -> None:
    t = Transaction(**GOOD)
    assert decode(encode(t), Transaction) == t


@pytest.mark.parametrize("field,value,reason", [
    ("amount", -5.0, "amount"), ("amount", 2e6, "amount"), ("currency", "XXX", "currency"),
    ("mcc", "54x1", "mcc"), ("lat", 91.0, "lat"), ("event_time", 5, "event_time"),
])
def test_invalid_event_is_refused_on_produce_with_its_reason(field: str, value: object, reason: str) -> None:
    with pytest.raises(InvalidEvent, match=reason):
        encode(Transaction(**{**GOOD, field: value}))


@pytest.mark.parametrize("raw,reason", [
    (b"{not json", "malformed"), (b'{"event_id": "x"}', "event_id|missing"),
    (b'{' + b'"extra": 1, ' + encode(Transaction(**GOOD))[1:], "unknown field"),
    (encode(Transaction(**GOOD)).replace(b'"pos"', b'"fax"'), "channel"),
])
def test_invalid_record_is_refused_on_consume_with_its_reason(raw: bytes, reason: str) -> None:
    with pytest.raises(InvalidEvent, match=reason):
        decode(raw, Transaction)


def test_click_actions_are_a_closed_set() -> None:
    c = Click(event_id="0f8e2b9c-1111-4222-8333-444455556667", event_time=1_790_000_000_000, user_id="u1",
              session_id="s1", page="home", action="view", dwell_ms=10, device="mobile", country="DE")
    assert decode(encode(c), Click) == c
    with pytest.raises(InvalidEvent, match="action"):
        decode(encode(c).replace(b'"view"', b'"hover"'), Click)


def test_score_records_are_validated_for_their_consumers() -> None:
    import orjson

    from core.contracts import decode_score

    good = {"event_id": "evt-00000001", "card_id": "c1", "event_time": 1_790_000_000_000, "source": "stream",
            "fraud_probability": 0.25, "decision": "decline", "model_version": "3",
            "features": {"amount": 12.5, "txn_count_5m": None},
            "shadow": {"model_version": "4", "fraud_probability": 1}, "added_later": "ignored"}
    rec = decode_score(orjson.dumps(good))
    assert rec["features"] == {"amount": 12.5, "txn_count_5m": None} and rec["label_probability"] == 1.0
    assert rec["shadow"] == {"model_version": "4", "fraud_probability": 1.0} and "added_later" not in rec
    for bad, needle in [(b"not json", "JSON"), (b"[1]", "object"), ({**good, "fraud_probability": 1.5}, "<= 1"),
                        ({**good, "decision": "maybe"}, "decision"), ({**good, "features": ["a"]}, "features"),
                        ({k: v for k, v in good.items() if k != "event_id"}, "event_id"),
                        ({**good, "label_probability": 0}, "label_probability")]:
        raw = bad if isinstance(bad, bytes) else orjson.dumps(bad)
        with pytest.raises(InvalidEvent, match=needle):
            decode_score(raw)
