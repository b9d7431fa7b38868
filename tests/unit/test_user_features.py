"""Click features against the brute-force reference, through the generic processor."""

from __future__ import annotations

import random

from core.card_state import event_key
from core.contracts import Click
from core.user_features import UserState, user_features
from streaming.entities import USER
from streaming.generators.clicks import ClickStream
from streaming.processor import Outcome, ProcessorConfig, process
from tests.support.reference import Click as RefClick
from tests.support.reference import mismatches, reference_user_features


def test_generated_sessions_match_the_reference() -> None:
    from core.contracts import decode

    stream = ClickStream(seed=3, users=20, sessions_per_s=0.02, start_ms=1_790_000_000_000)
    clicks: list[Click] = []
    for rec in stream:
        clicks.append(decode(rec.value, Click))
        if len(clicks) >= 600:
            break
    states: dict[str, UserState] = {}
    rows = {}
    cfg = ProcessorConfig()
    for i, c in enumerate(clicks):
        res = process(states.setdefault(c.user_id, UserState()), c, cfg, i, USER)
        assert res.outcome is Outcome.ACCEPTED
        rows.update({(r["user_id"], r["event_key"]): r for r in res.feature_rows})
    ref: dict[str, list[RefClick]] = {}
    for c in clicks:
        ref.setdefault(c.user_id, []).append(RefClick(c.event_time, event_key(c.event_id), c.action, c.dwell_ms,
                                                      c.session_id))
    assert any(c.action == "purchase" for c in clicks) and len(ref) > 5
    bad = []
    rng = random.Random(1)
    for user, evs in ref.items():
        t = rng.choice(evs).ts + rng.randint(0, 4_000_000)
        bad += mismatches(user_features(states[user], t), reference_user_features(evs, t))
        for e in evs:
            row = rows[(user, e.key)]
            bad += mismatches(row, reference_user_features(evs, e.ts, (e.ts, e.key)))
            after = {k[6:]: v for k, v in row.items() if k.startswith("after_")}
            bad += mismatches(after, reference_user_features(evs, e.ts, (e.ts, e.key), True))
    assert bad == []


def test_click_rows_made_column_wise_equal_the_dict_rows() -> None:
    """The workers' click rows (``feature_values`` into a ``ValueRows``) equal the dict rows'
    table: values, column order and types."""
    from core.contracts import decode
    from streaming.processor import ValueRows, feature_values
    from streaming.sinks import OfflineLog

    stream = ClickStream(seed=5, users=10, sessions_per_s=0.02, start_ms=1_790_000_000_000)
    clicks = [decode(rec.value, Click) for rec, _ in zip(stream, range(300), strict=False)]
    cfg = ProcessorConfig()
    dicts, values = [], ValueRows(USER)
    states_d: dict[str, UserState] = {}
    states_v: dict[str, UserState] = {}
    for i, c in enumerate(clicks):
        dicts += process(states_d.setdefault(c.user_id, UserState()), c, cfg, i, USER).feature_rows
        values += process(states_v.setdefault(c.user_id, UserState()), c, cfg, i, USER, row=feature_values).feature_rows
    want, got = OfflineLog.table(dicts), OfflineLog.table(values)
    assert got.schema == want.schema and got.equals(want) and got.num_rows == len(clicks)
