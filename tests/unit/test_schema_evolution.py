"""Schema evolution: golden records and states of every version stay readable, a newer
producer's records are not dead-lettered (issue 13: a producer upgraded first dead-lettered
100% of traffic), and the packed state format is versioned."""

from __future__ import annotations

import json

import msgspec
import orjson
import pytest

from core.card_state import CardState, event_key
from core.contracts import SCHEMA_VERSION, Click, FraudFeedback, InvalidEvent, Transaction, decode, decode_versioned
from core.settings import REPO_ROOT
from core.user_features import UserState

GOLDEN = REPO_ROOT / "tests" / "fixtures" / "golden"
T0 = 1_790_000_000_000


@pytest.mark.parametrize(("name", "cls"), [("transaction_v1.json", Transaction), ("click_v1.json", Click),
                                           ("fraud_feedback_v1.json", FraudFeedback)])
def test_golden_v1_events_decode_to_what_they_say(name: str, cls: type) -> None:
    raw = (GOLDEN / name).read_bytes()
    event, version = decode_versioned(raw, cls)
    assert version == 1 and event == decode(raw, cls)
    assert msgspec.structs.asdict(event) == json.loads(raw)


def test_a_newer_producers_records_decode_with_their_known_fields() -> None:
    golden = json.loads((GOLDEN / "transaction_v1.json").read_bytes())
    newer = {**golden, "schema_version": SCHEMA_VERSION + 1, "wallet_token": "tok-1", "risk_hint": 3}
    event, version = decode_versioned(orjson.dumps(newer), Transaction)
    assert version == SCHEMA_VERSION + 1 and event == decode((GOLDEN / "transaction_v1.json").read_bytes(),
                                                              Transaction)
    with pytest.raises(InvalidEvent, match="amount"):  # the known fields keep their rules
        decode_versioned(orjson.dumps({**newer, "amount": -5}), Transaction)
    with pytest.raises(InvalidEvent, match="unknown field"):  # this version: strict
        decode_versioned(orjson.dumps({**golden, "wallet_token": "tok-1"}), Transaction)
    with pytest.raises(InvalidEvent):
        decode_versioned(orjson.dumps({**golden, "schema_version": 0}), Transaction)
    with pytest.raises(InvalidEvent):  # decode() stays strict: one version only
        decode(orjson.dumps(newer), Transaction)


def _golden_card() -> CardState:
    c = CardState()
    for i, (dt, amt, ctry, m, r) in enumerate([(0, 12.5, "DE", "m1", False), (30_000, 900.0, "FR", "m2", True),
                                               (95_000, 7.25, "DE", "m1", False)]):
        c.insert(T0 + dt, event_key(f"golden-{i:04d}"), amt, ctry, m, r)
    c.trimmed_last_ts, c.dropped = T0 - 3_600_000, 2
    return c


def _golden_user() -> UserState:
    u = UserState()
    for i, (dt, a, d, s) in enumerate([(0, 0, 1200, 7), (5_000, 1, 300, 7), (60_000, 2, 50, 9)]):
        u.insert(T0 + dt, event_key(f"golden-u-{i:04d}"), a, d, s)
    return u


@pytest.mark.parametrize(("name", "cls", "expected"), [("card_state_v1.hex", CardState, _golden_card),
                                                       ("user_state_v1.hex", UserState, _golden_user)])
def test_format_1_states_still_unpack_and_repack_as_the_current_format(name: str, cls: type, expected) -> None:
    raw = bytes.fromhex((GOLDEN / name).read_text().strip())
    state = cls.unpack(raw)
    want = expected()
    assert state == want and state.last_ts == want.last_ts and state.dropped == want.dropped
    assert state.trimmed_last_ts == want.trimmed_last_ts
    repacked = state.pack()
    assert repacked != raw and msgspec.msgpack.decode(repacked)[0] == cls.FORMAT
    assert cls.unpack(repacked) == want


def test_a_state_from_a_newer_format_is_refused_with_the_fix() -> None:
    parts = list(msgspec.msgpack.decode(_golden_card().pack()))
    parts[0] = CardState.FORMAT + 1
    with pytest.raises(ValueError, match="newer than this code reads"):
        CardState.unpack(msgspec.msgpack.encode(parts))
