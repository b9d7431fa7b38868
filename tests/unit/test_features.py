"""Window features against the brute-force reference: boundaries, empty windows, decay,
late and out-of-order events, duplicates, lateness cut-off, and random sequences."""

from __future__ import annotations

import os
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from core.card_state import CardState, event_key
from core.contracts import Transaction
from core.features import WINDOW_FEATURES, window_features
from streaming.entities import CARD
from streaming.processor import Outcome, ProcessorConfig, correction_rows, process
from tests.support.reference import Ev, mismatches, reference_features, reference_request

T0 = 1_790_000_000_000


def txn(i: int, ts: int, amount: float = 10.0, country: str = "DE", merchant: str = "m1",
        mcc: str = "5411", card: str = "c1") -> Transaction:
    return Transaction(event_id=f"{i:032x}", event_time=ts, card_id=card, user_id="u1",
                       merchant_id=merchant, mcc=mcc, amount=amount, currency="EUR", country=country,
                       lat=0.0, lon=0.0, device_id="d1", ip="10.0.0.1", channel="pos")


def ev(t: Transaction) -> Ev:
    return Ev(t.event_time, event_key(t.event_id), t.amount, t.country, t.merchant_id, t.mcc)


def run(txns: list[Transaction], cfg: ProcessorConfig | None = None,
        deferred: tuple[int, int] | None = None) -> tuple[CardState, dict, list]:
    """Process in order. ``deferred`` = (events per flush, correction rows per flush): the
    worker's way, corrections coalesced and spread over flushes, drained at the end."""
    cfg = cfg or ProcessorConfig()
    state, rows, accepted = CardState(), {}, []
    revision = iter(range(10**9))
    pending: tuple[int, int] | None = None

    def keep(new_rows: list[dict]) -> None:
        for row in new_rows:
            # reader semantics: an accepted row beats a too-late one, then the highest revision
            old = rows.get(row["event_key"])
            if old is None or row["status"] == "accepted" or old["status"] != "accepted":
                rows[row["event_key"]] = row

    for n, t in enumerate(txns, 1):
        res = process(state, t, cfg, revision=next(revision), defer_corrections=deferred is not None,
                      pending=pending)
        if res.outcome is Outcome.ACCEPTED:
            accepted.append(t)
        keep(res.feature_rows)
        pending = res.correct_from
        if deferred is not None and pending is not None and n % deferred[0] == 0:
            fixed, pending = correction_rows(CARD, "c1", state, pending, next(revision), deferred[1])
            keep(fixed)
    if pending is not None:
        keep(correction_rows(CARD, "c1", state, pending, next(revision))[0])
    return state, rows, accepted


def test_window_includes_its_end_and_excludes_its_start() -> None:
    state, _, _ = run([txn(1, T0), txn(2, T0 + 60_000)])
    f = window_features(state, T0 + 60_000)
    assert f["txn_count_1m"] == 1  # the event exactly 1 min before is out: (t - 1m, t]
    assert f["txn_count_5m"] == 2
    assert window_features(state, T0 + 59_999)["txn_count_1m"] == 1


def test_quiet_card_decays_to_zero() -> None:
    state, _, _ = run([txn(i, T0 + i * 1000, amount=100) for i in range(6)])
    assert window_features(state, T0 + 5_000)["txn_count_5m"] == 6
    later = window_features(state, T0 + 2 * 3_600_000)
    assert later["txn_count_5m"] == 0 and later["txn_count_1h"] == 0 and later["amount_sum_5m"] == 0
    assert later["txn_count_24h"] == 6
    assert later["velocity_score"] == 0.0


def test_empty_state_reads_as_zeros_with_capped_recency() -> None:
    f = window_features(CardState(), T0)
    assert all(f[k] == 0 for k in WINDOW_FEATURES if k != "seconds_since_last_txn")
    assert f["seconds_since_last_txn"] == 604800.0


def test_duplicate_is_not_counted_twice_but_reemitted() -> None:
    state = CardState()
    cfg = ProcessorConfig()
    process(state, txn(1, T0), cfg, 0)
    again = process(state, txn(1, T0), cfg, 1)
    assert again.outcome is Outcome.DUPLICATE and again.dirty and len(again.feature_rows) == 1
    assert len(state) == 1


def test_out_of_order_event_corrects_later_rows() -> None:
    late = txn(3, T0 + 10_000, amount=50)
    _, rows, accepted = run([txn(1, T0), txn(2, T0 + 20_000, amount=7), late])
    row2 = rows[event_key(txn(2, 0).event_id)]
    assert row2["txn_count_1m"] == 2  # before event 2: events 1 and 3 (arrived later)
    assert row2["amount_sum_5m"] == 60.0
    assert len(accepted) == 3


def test_event_beyond_lateness_is_logged_but_not_windowed() -> None:
    cfg = ProcessorConfig(allowed_lateness_ms=5_000)
    state, rows, accepted = run([txn(1, T0 + 60_000), txn(2, T0)], cfg)
    assert len(state) == 1 and len(accepted) == 1
    assert rows[event_key(txn(2, 0).event_id)]["status"] == "too_late"


def test_state_is_trimmed_to_retention() -> None:
    state, _, _ = run([txn(1, T0), txn(2, T0 + 25 * 3_600_000)])
    assert len(state) == 1
    assert window_features(state, T0 + 25 * 3_600_000 + 1)["seconds_since_last_txn"] == 0.001


def test_pack_round_trip() -> None:
    state, _, _ = run([txn(i, T0 + i * 777, amount=i + 0.5, country="FR" if i % 2 else "DE")
                       for i in range(30)])
    assert CardState.unpack(state.pack()) == state
    assert CardState.unpack(None) == CardState()


@st.composite
def sequences(draw: st.DrawFn) -> tuple[list[Transaction], int]:
    n = draw(st.integers(1, 40))
    rng = random.Random(draw(st.integers(0, 2**32)))
    ts, out = T0, []
    for i in range(n):
        ts += rng.choice([0, 500, 20_000, 59_999, 60_000, 61_000, 299_999, 300_000, 3_000_000, 3_600_000,
                          40_000_000])
        out.append(txn(i, ts, amount=round(rng.uniform(1, 2000), 2), country=rng.choice("AB"),
                       merchant=rng.choice(["m1", "m2", "m3"]), mcc=rng.choice(["5411", "7995"])))
    # arrival order: mostly in order, some delayed by a few positions (out of order)
    order = sorted(range(n), key=lambda k: k + rng.choice([0, 0, 0, 1.5, 3.5]))
    if rng.random() < 0.3 and n > 1:  # an exact replay
        order.append(rng.randrange(n))
    return [out[k] for k in order], rng.randrange(0, 50_000_000)


@settings(max_examples=int(os.environ.get("HYPOTHESIS_EXAMPLES", "200")), deadline=None)
@given(sequences())
def test_random_sequences_match_the_reference(data: tuple[list[Transaction], int]) -> None:
    _check_against_reference(data)


@settings(max_examples=int(os.environ.get("HYPOTHESIS_EXAMPLES", "200")) // 2, deadline=None)
@given(sequences())
def test_the_vectorised_path_for_busy_cards_matches_the_reference(data: tuple[list[Transaction], int]) -> None:
    """Busy cards (VECTOR_FROM events in 24 h or more) take numpy sums: forced here for every
    window size, against the same brute force."""
    from unittest import mock

    from core import features

    with mock.patch.object(features, "VECTOR_FROM", 1):
        _check_against_reference(data)


@settings(max_examples=int(os.environ.get("HYPOTHESIS_EXAMPLES", "200")) // 2, deadline=None)
@given(sequences(), st.integers(1, 5), st.integers(0, 4))
def test_deferred_corrections_spread_over_flushes_give_the_same_rows(data: tuple[list[Transaction], int],
                                                                     every: int, limit: int) -> None:
    """The worker's path: an out-of-order event's corrections coalesced per card and written
    at most ``limit`` rows per flush (0: none until the end) still end equal to the brute force."""
    _check_against_reference(data, deferred=(every, limit))


def _check_against_reference(data: tuple[list[Transaction], int], deferred: tuple[int, int] | None = None) -> None:
    txns, probe = data
    cfg = ProcessorConfig(allowed_lateness_ms=120_000)
    state, rows, accepted = run(txns, cfg, deferred)
    events = [ev(t) for t in accepted]
    # the read function at any time equals the brute force over accepted events
    last = max(e.ts for e in events)
    t = last + probe - 25_000_000
    if t >= last - cfg.allowed_lateness_ms:  # the state keeps what such reads need
        assert mismatches(window_features(state, t), reference_features(events, t)) == []
    # every accepted event's latest offline row equals its exact before/after features
    for t_ in accepted:
        e = ev(t_)
        row = rows[e.key]
        want_before = reference_request(reference_features(events, e.ts, (e.ts, e.key)), e.amount, e.ts)
        want_after = reference_request(reference_features(events, e.ts, (e.ts, e.key), True), e.amount, e.ts)
        assert mismatches(row, want_before) == []
        assert mismatches({k[6:]: v for k, v in row.items() if k.startswith("after_")}, want_after) == []


@settings(max_examples=int(os.environ.get("HYPOTHESIS_EXAMPLES", "200")), deadline=None)
@given(sequences(), st.booleans())
def test_one_pass_rows_equal_the_two_view_definition(data: tuple[list[Transaction], int], busy: bool) -> None:
    """``event_row_features`` (the "after" view derived from the "before" one) against
    ``before_and_after`` (both views evaluated in full), on every event of the state, on both
    the exact-sum and the numpy path."""
    from unittest import mock

    from core import features

    state = run(data[0], ProcessorConfig(allowed_lateness_ms=120_000))[0]
    with mock.patch.object(features, "VECTOR_FROM", 1 if busy else 64):
        for i in range(len(state)):
            before, after = features.before_and_after(state, state.ts[i], state.key[i], state.amount[i])
            want = {**before, **{f"after_{k}": v for k, v in after.items()}}
            got = features.event_row_features(state, i)
            assert list(got) == list(want)  # the same columns in the same order
            assert mismatches(got, want, rel=1e-12) == []


def test_the_card_states_column_list_is_the_generic_one() -> None:
    """CardState spells its columns out (faster per event): the same lists, in PAYLOAD order."""
    from core.card_state import EventState

    state = run([txn(1, T0, 12.5, "FR", "m9", "7995")])[0]
    assert [id(c) for c in state._columns()] == [id(c) for c in EventState._columns(state)]


def test_equal_amounts_give_no_huge_z_score() -> None:
    """Three purchases of 0.35 and then one of 0.36: the 24 h deviation is 0 (float noise of
    1e-17 on one summation order), so the z-score is 0, not 1e14, on the read path and in the
    offline row alike (a crafted run of equal amounts could otherwise saturate the model)."""
    from core.card_state import event_key
    from core.features import event_row_features, with_request

    state = CardState()
    for i in range(3):
        state.insert(T0 + i * 1000, event_key(f"e-{i:08d}"), 0.35, "DE", "m1", False)
    t = T0 + 10_000
    read = with_request(window_features(state, t), 0.36, t)
    assert read["amount_std_24h"] < 1e-9 and read["amount_zscore_24h"] == 0.0
    state.insert(t, event_key("e-00000009"), 0.36, "DE", "m1", False)
    row = event_row_features(state, 3)
    assert row["amount_zscore_24h"] == 0.0 and abs(row["after_amount_zscore_24h"]) < 10


@settings(max_examples=int(os.environ.get("HYPOTHESIS_EXAMPLES", "200")), deadline=None)
@given(st.lists(st.integers(0, 3 * 86_400_000), max_size=6), st.integers(0, 4 * 86_400_000),
       st.integers(0, 3 * 86_400_000))
def test_the_quiet_path_gives_the_general_paths_values(offsets: list[int], trimmed: int, gap: int) -> None:
    """A card with no event in the 24 h before t takes a shortcut (``_window``'s quiet path):
    the same values, types and column order as the general path, with or without older
    events still held (lateness) or trimmed ones."""
    from core import features

    state = CardState()
    for n, off in enumerate(sorted(offsets)):
        state.insert(T0 + off, event_key(f"e-{n}"), 10.0 + n, "DE", f"m{n}", n % 2 == 0)
    state.trimmed_last_ts = T0 - trimmed if trimmed else 0
    t = (state.last_ts or T0) + 86_400_000 + gap  # every held event is 24 h or more before t
    for end in range(len(state) + 1):
        quick, quick_sets = features._window(state, t, end)
        general, general_sets = features._window(state, t, end, quiet_path=False)
        assert list(quick) == list(general)
        assert [(v, type(v)) for v in quick.values()] == [(v, type(v)) for v in general.values()]
        assert quick_sets == general_sets


@settings(max_examples=500, deadline=None)
@given(st.integers(946_684_800_000, 4_102_444_800_000))
def test_the_calendar_features_agree_with_datetime(t_ms: int) -> None:
    from datetime import UTC, datetime

    from core.features import calendar

    when = datetime.fromtimestamp(t_ms / 1000.0, tz=UTC)
    assert calendar(t_ms) == (when.hour, int(when.weekday() >= 5))


@settings(max_examples=int(os.environ.get("HYPOTHESIS_EXAMPLES", "200")) // 2, deadline=None)
@given(st.integers(0, 2**32), st.integers(20, 150), st.sampled_from([6, 12, 5_000]), st.booleans())
def test_a_busy_cards_sliding_windows_give_the_same_rows_as_recounting(seed: int, n: int, cap: int,
                                                                       burst: bool) -> None:
    """``WindowCache`` (a busy card's amounts array and distinct counts moved along from one
    event to the next) against the same run without it: every row equal to the bit, through
    bursts, gaps past every window, out-of-order events (which restart it), replays and trims
    to the event cap (which shift it)."""
    import dataclasses
    from unittest import mock

    from core import features

    rng = random.Random(seed)
    ts, txns = T0, []
    for i in range(n):
        ts += rng.choice([0, 1, 700, 20_000, 60_000] if burst else [0, 1_000, 59_999, 300_000, 3_600_000, 90_000_000])
        txns.append(txn(i, ts, amount=round(rng.uniform(1, 2000), 2), country=rng.choice("ABCDE"),
                        merchant=f"m{rng.randrange(8)}", mcc=rng.choice(["5411", "5411", "7995"])))
    order = sorted(range(n), key=lambda k: k + rng.choice([0, 0, 0, 0, 0, 0, 1.5, 4.5]))
    order += [rng.randrange(n) for _ in range(3)]  # replays
    cfg = ProcessorConfig(allowed_lateness_ms=120_000, max_events_per_card=cap)

    def rows(spec: object) -> tuple[list[dict], int]:
        state, out, cached = CardState(), [], 0
        for k in order:
            res = process(state, txns[k], cfg, revision=1, spec=spec, ingest_ms=txns[k].event_time)
            out += res.feature_rows
            cached += state.cache is not None
        return out, cached

    with mock.patch.object(features, "VECTOR_FROM", 4):
        got, cached = rows(CARD)
        want, none = rows(dataclasses.replace(CARD, window_cache=None))
    assert none == 0 and cached > 0
    assert got == want


@settings(max_examples=int(os.environ.get("HYPOTHESIS_EXAMPLES", "200")) // 2, deadline=None)
@given(sequences(), st.booleans())
def test_rows_made_column_wise_equal_the_dict_rows(data: tuple[list[Transaction], int], busy: bool) -> None:
    """The workers' offline rows (``feature_values`` into a ``ValueRows``, one float matrix to
    Arrow) equal the dict rows' table: every value, the column order and the int64/float64/
    string types, for accepted, too-late and corrected rows, on both window paths."""
    from unittest import mock

    from core import features
    from streaming.processor import ValueRows, feature_row, feature_values
    from streaming.sinks import OfflineLog

    txns, _ = data
    cfg = ProcessorConfig(allowed_lateness_ms=120_000)
    with mock.patch.object(features, "VECTOR_FROM", 1 if busy else 64):
        state_d, state_v = CardState(), CardState()
        dicts, values = [], ValueRows(CARD)
        for n, t in enumerate(txns):
            dicts += process(state_d, t, cfg, n, defer_corrections=n % 2 == 0).feature_rows
            values += process(state_v, t, cfg, n, defer_corrections=n % 2 == 0, row=feature_values).feature_rows
        # (a late view, as a too-late event's row is made, and the rows of every event in the state)
        late = txn(10_000, txns[0].event_time - 1, 3.5)
        view, i = state_d.with_event(late.event_time, event_key(late.event_id), 3.5, "C", "m1", False)
        dicts.append(feature_row(CARD, "c1", view, i, Outcome.TOO_LATE, 99))
        values.append(feature_values(CARD, "c1", view, i, Outcome.TOO_LATE, 99))
        dicts += correction_rows(CARD, "c1", state_d, (0, 0), 100)[0]
        values += correction_rows(CARD, "c1", state_v, (0, 0), 100, row=feature_values)[0]
    want, got = OfflineLog.table(dicts), OfflineLog.table(values)
    assert got.schema == want.schema
    assert got.equals(want)
    assert len(values) == len(dicts) > 0


def test_the_row_columns_are_the_served_views_and_their_after_twins() -> None:
    """Serving splits ``event_row_values`` at ``len(WINDOW_FEATURES + REQUEST_FEATURES)``."""
    from core.features import REQUEST_FEATURES, ROW_FEATURES, ROW_INT_FEATURES

    view = (*WINDOW_FEATURES, *REQUEST_FEATURES)
    assert ROW_FEATURES == (*view, *(f"after_{f}" for f in view))
    assert ROW_INT_FEATURES < set(ROW_FEATURES)
