"""The event-time policy under attack (streaming/processor.py): future-dated, skewed,
duplicate, out-of-order events, property-tested with Hypothesis against a brute force
written from the policy's own text, and the attack that used to blind a card."""

from __future__ import annotations

import os
import random
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.card_state import DAY_MS, CardState
from core.features import window_features
from streaming.processor import Outcome, ProcessorConfig, process
from tests.support.reference import mismatches, reference_features
from tests.unit.test_features import ev, txn

T0 = 1_790_000_000_000
CFG = ProcessorConfig(allowed_lateness_ms=60_000, max_future_skew_ms=300_000)
EXAMPLES = int(os.environ.get("HYPOTHESIS_EXAMPLES", "200"))
pytestmark = pytest.mark.security


@dataclass(frozen=True)
class Arrival:
    """One record as the pipeline receives it: the event and its ingest time."""

    i: int  # event id number (a replay repeats one)
    ts: int
    ingest: int
    amount: float = 10.0
    country: str = "DE"


def policy(arrivals: list[Arrival], cfg: ProcessorConfig) -> tuple[list[Outcome], list[Arrival]]:
    """The policy as README states it, with no state beyond the list of accepted events:
    future beyond the skew is rejected; a record already held is a duplicate; the watermark is
    the newest accepted event time bounded by this record's ingest time; older than the
    watermark by more than the lateness is too late; events at or before a watermark minus
    24 h + lateness are no longer held."""
    accepted: list[Arrival] = []
    held: set[int] = set()
    outcomes = []
    for a in arrivals:
        newest = max((x.ts for x in accepted), default=None)
        if a.ts > a.ingest + cfg.max_future_skew_ms:
            outcomes.append(Outcome.FUTURE)
            continue
        if a.i in held:
            outcomes.append(Outcome.DUPLICATE)
            continue
        if newest is not None and a.ts < min(newest, a.ingest) - cfg.allowed_lateness_ms:
            outcomes.append(Outcome.TOO_LATE)
            continue
        outcomes.append(Outcome.ACCEPTED)
        accepted.append(a)
        held.add(a.i)
        horizon = min(max(x.ts for x in accepted), a.ingest) - cfg.retention_ms
        held = {x.i for x in accepted if x.i in held and x.ts > horizon}
    return outcomes, accepted


def run(arrivals: list[Arrival], cfg: ProcessorConfig = CFG) -> tuple[CardState, list[Outcome]]:
    state, outcomes = CardState(), []
    for rev, a in enumerate(arrivals):
        outcomes.append(process(state, txn(a.i, a.ts, a.amount, a.country), cfg, rev, ingest_ms=a.ingest).outcome)
    return state, outcomes


@st.composite
def legit_traffic(draw: st.DrawFn) -> list[Arrival]:
    """A card's honest traffic: ingest times advance; each event is delivered within the
    allowed lateness of its ingest time (or its producer clock runs fast within the skew);
    some records are replayed."""
    rng = random.Random(draw(st.integers(0, 2**32)))
    n = draw(st.integers(1, 30))
    ingest, out = T0, []
    for i in range(n):
        ingest += rng.choice([0, 1_000, 30_000, 59_000, 61_000, 300_000, 3_600_000, 30_000_000])
        ts = ingest - rng.choice([0, 0, 5_000, 30_000, CFG.allowed_lateness_ms]) \
            + rng.choice([0, 0, 0, 60_000, CFG.max_future_skew_ms])
        out.append(Arrival(i, ts, ingest, round(rng.uniform(1, 900), 2), rng.choice(["DE", "FR", "PL"])))
        if rng.random() < 0.1:  # a replay of an earlier record, received again now
            old = rng.choice(out)
            out.append(Arrival(old.i, old.ts, ingest, old.amount, old.country))
    return out


@st.composite
def with_attack(draw: st.DrawFn) -> tuple[list[Arrival], Arrival, int]:
    legit = draw(legit_traffic())
    pos = draw(st.integers(0, len(legit)))
    ingest = legit[pos - 1].ingest if pos else T0
    ts = draw(st.one_of(
        st.integers(946_684_800_000, 4_102_444_800_000),  # anything the contract admits
        st.integers(ingest - 2 * DAY_MS, ingest + 2 * DAY_MS),  # near now: skewed clocks
        st.sampled_from([ingest + CFG.max_future_skew_ms, ingest + CFG.max_future_skew_ms + 1, ingest - 1])))
    return legit, Arrival(10_000, ts, ingest, 999.0, "KP"), pos


@settings(max_examples=EXAMPLES, deadline=None)
@given(legit_traffic())
def test_the_processor_follows_the_policy_text(arrivals: list[Arrival]) -> None:
    state, outcomes = run(arrivals)
    want, accepted = policy(arrivals, CFG)
    assert outcomes == want
    t = arrivals[-1].ingest  # a read now
    evs = [ev(txn(a.i, a.ts, a.amount, a.country)) for a in accepted]
    assert mismatches(window_features(state, t), reference_features(evs, t)) == []


@settings(max_examples=EXAMPLES, deadline=None)
@given(with_attack())
def test_no_single_event_changes_how_honest_events_are_judged(data: tuple[list[Arrival], Arrival, int]) -> None:
    """Whatever its time, one extra record leaves every honest event's outcome as it was,
    and the windows read now hold the honest events plus, at most, that one record."""
    legit, attack, pos = data
    _, alone = run(legit)
    state, attacked = run([*legit[:pos], attack, *legit[pos:]])
    att_outcome = attacked.pop(pos)
    assert attacked == alone
    t = legit[-1].ingest
    honest = [ev(txn(a.i, a.ts, a.amount, a.country)) for a, o in zip(legit, alone, strict=True)
              if o is Outcome.ACCEPTED]
    extra = [ev(txn(attack.i, attack.ts, attack.amount, attack.country))] if att_outcome is Outcome.ACCEPTED else []
    assert mismatches(window_features(state, t), reference_features(honest + extra, t)) == []


def test_a_far_future_event_is_rejected_and_the_card_still_sees_a_burst() -> None:
    """The reproduced attack: one event dated decades ahead, then 12 real transactions of 900
    in 4 countries. It used to trim the card and make all 12 too late (txn_count_5m 0)."""
    now = T0
    state = CardState()
    assert process(state, txn(0, now - 3_600_000), CFG, 0, ingest_ms=now - 3_600_000).outcome is Outcome.ACCEPTED
    bomb = process(state, txn(1, 4_000_000_000_000), CFG, 1, ingest_ms=now)
    assert bomb.outcome is Outcome.FUTURE and not bomb.feature_rows and len(state) == 1
    for k in range(12):
        t = now + k * 5_000
        out = process(state, txn(2 + k, t, 900.0, ["DE", "FR", "PL", "ES"][k % 4]), CFG, 2 + k, ingest_ms=t + 200)
        assert out.outcome is Outcome.ACCEPTED
    f = window_features(state, now + 60_000)
    assert f["txn_count_5m"] == 12 and f["unique_countries_5m"] == 4 and f["txn_count_1h"] == 12


def test_a_producer_clock_five_minutes_fast_makes_no_later_event_late() -> None:
    state = CardState()
    fast = process(state, txn(0, T0 + 299_000), CFG, 0, ingest_ms=T0)  # within the skew: accepted
    assert fast.outcome is Outcome.ACCEPTED
    outs = [process(state, txn(1 + k, T0 + k * 1_000), CFG, 1 + k, ingest_ms=T0 + k * 1_000 + 50).outcome
            for k in range(10)]
    assert outs == [Outcome.ACCEPTED] * 10
    assert window_features(state, T0 + 10_000)["txn_count_1m"] == 10


def test_ingest_defaults_to_the_wall_clock() -> None:
    from streaming.processor import time as clock

    now = int(clock.time() * 1000)
    assert process(CardState(), txn(1, now + 3_600_000), CFG, 0).outcome is Outcome.FUTURE
    assert process(CardState(), txn(1, now - 3_600_000), CFG, 0).outcome is Outcome.ACCEPTED


def test_a_late_event_on_a_card_at_its_cap_corrects_nothing_and_says_so() -> None:
    """At the event cap a card's windows already miss what the cap dropped, and exact
    corrections would need it: the late event is counted and gets its own row; the rows of
    its later events are left (counted as skipped), the same inline (backfill) and deferred
    (worker), so a hot card's late events cost one row each, not one per later event."""
    cfg = ProcessorConfig(allowed_lateness_ms=60_000, max_events_per_card=50)
    t0 = T0
    for defer in (False, True):
        state = CardState()
        for i in range(60):
            process(state, txn(i, t0 + i * 1000), cfg, 0, ingest_ms=t0 + i * 1000, defer_corrections=defer)
        assert len(state) == 50
        late = process(state, txn(999, t0 + 55_500), cfg, 1, ingest_ms=t0 + 60_000, defer_corrections=defer)
        assert late.outcome == "accepted" and len(late.feature_rows) == 1
        assert late.skipped_corrections == 4 and late.correct_from is None
        assert len(state) == 50 and state.contains(t0 + 55_500, late.feature_rows[0]["event_key"])
    # below the cap the same late event corrects its 4 later events
    roomy = ProcessorConfig(allowed_lateness_ms=60_000, max_events_per_card=500)
    state = CardState()
    for i in range(60):
        process(state, txn(i, t0 + i * 1000), roomy, 0, ingest_ms=t0 + i * 1000)
    late = process(state, txn(999, t0 + 55_500), roomy, 1, ingest_ms=t0 + 60_000)
    assert len(late.feature_rows) == 5 and late.skipped_corrections == 0


def test_a_later_writer_numbers_its_rows_higher_even_in_an_older_process() -> None:
    """Reproduced in CI (three Quix workers, rebalances under traffic): a worker that took a
    partition over corrected a row its previous owner had written, but its revisions came
    from a counter started at its own (earlier) start time, so the stale row kept winning."""
    import time

    from streaming.processor import Revisions

    older = Revisions()
    next(older)
    time.sleep(0.01)
    newer = Revisions()  # a worker started later ...
    first = next(newer)  # ... writes a row first,
    time.sleep(0.002)
    assert next(older) > first  # the older worker, taking the partition over, writes after it
    many = [next(older) for _ in range(10_000)]
    assert many == sorted(set(many))  # strictly increasing within a process
