"""Hot key: the stream's per-event cost on one busy card, and the longest stall one late event
causes, as a function of the card's history. In process (the worker's per-event path without
Kafka), so the numbers are the processing cost itself.

Measured in the same run:

- **before** (the earlier worker): the card's state unpacked and packed on every event,
  window sums in pure Python, and an out-of-order event's corrections (one row per later
  event of the card) written inline;
- **now** (streaming/worker.py): the live state kept between flushes and packed once per
  flush (every 100 events here, ~0.1 s at 1k events/s), numpy sums from
  ``core.features.VECTOR_FROM`` events on, where the card's windows also start to slide from
  one event to the next (``core.features.WindowCache``), and corrections coalesced per card and written at
  most ``STREAMING_MAX_CORRECTIONS_PER_FLUSH`` rows per flush; on a card at its event cap
  (whose windows already miss what the cap dropped) a late event's corrections are skipped
  and counted (``stream_corrections_skipped_total``).

Two layouts: history spread over 24 h (a busy merchant card), and a burst (1k events/s,
everything inside the 5-minute window: the worst case for the distinct counts).
"""

from __future__ import annotations

import time
from typing import Any
from unittest import mock

from rich.console import Console

from bench.common import write_result
from core import features
from core.card_state import CardState
from core.contracts import Transaction
from streaming.entities import CARD
from streaming.processor import ProcessorConfig, correction_rows, process

T0 = 1_790_000_000_000
CFG = ProcessorConfig(allowed_lateness_ms=60_000, max_events_per_card=5_000)
FLUSH_EVERY = 100
BUDGET = 200  # StreamingSettings.max_corrections_per_flush


def _txn(i: int, ts: int) -> Transaction:
    return Transaction(event_id=f"{i:032x}", event_time=ts, card_id="hot", user_id="u", merchant_id=f"m{i % 40}",
                       mcc="5411" if i % 9 else "7995", amount=float(5 + (i * 37) % 900) + 0.25,
                       currency="EUR", country=("DE", "FR", "NL", "US")[i % 4], lat=0.0, lon=0.0,
                       device_id="d", ip="10.0.0.1", channel="pos")


def _history(n: int, gap_ms: int) -> tuple[CardState, int]:
    state = CardState()
    for i in range(n):
        process(state, _txn(i, T0 + i * gap_ms), CFG, 0, ingest_ms=T0 + i * gap_ms)
    return state, T0 + n * gap_ms


def per_event_us(n: int, gap_ms: int, before: bool, events: int = 1_000) -> float:
    """Mean cost of one in-order event on a card holding ``n`` events."""
    state, t = _history(n, gap_ms)
    blob = state.pack()
    with mock.patch.object(features, "VECTOR_FROM", 10**9 if before else features.VECTOR_FROM):
        t0 = time.perf_counter()
        for k in range(events):
            ts = t + k * gap_ms
            txn = _txn(10**6 + k, ts)
            if before:
                s = CardState.unpack(blob)
                process(s, txn, CFG, k, ingest_ms=ts)
                blob = s.pack()
            else:
                process(state, txn, CFG, k, ingest_ms=ts, defer_corrections=True)
                if k % FLUSH_EVERY == 0:  # as the Faust worker's flush: packed, and decoded afresh
                    state = CardState.unpack(state.pack())  # after it (its sliding windows start again)
        return (time.perf_counter() - t0) / events * 1e6


def late_stall_ms(n: int, gap_ms: int, before: bool, late_ms: int = 55_000) -> tuple[float, int]:
    """The longest single step (ms) one event ``late_ms`` late causes on a card of ``n``
    events, and the rows it writes in total. "Before" wrote every correction inline, at the
    event cap too (an uncapped insert, then the trim to the cap, as the earlier code did)."""
    state, t = _history(n, gap_ms)
    late = _txn(10**7, t - late_ms)
    cfg = ProcessorConfig(CFG.allowed_lateness_ms, 10**9) if before else CFG
    with mock.patch.object(features, "VECTOR_FROM", 10**9 if before else features.VECTOR_FROM):
        t0 = time.perf_counter()
        res = process(state, late, cfg, 1, ingest_ms=t, defer_corrections=not before)
        if before:
            state.trim(0, CFG.max_events_per_card)
        steps, rows = [time.perf_counter() - t0], len(res.feature_rows)
        todo = res.correct_from
        while todo is not None:  # one slice per flush
            t0 = time.perf_counter()
            fixed, todo = correction_rows(CARD, "hot", state, todo, 2, BUDGET)
            steps.append(time.perf_counter() - t0)
            rows += len(fixed)
    return max(steps) * 1000, rows


def run(console: Console) -> list[dict[str, Any]]:
    layouts = {"spread_24h": 17_000, "burst_1k_per_s": 1}
    table: dict[str, Any] = {}
    for layout, gap in layouts.items():
        for n in (10, 1_000, 5_000):
            b, a = per_event_us(n, gap, True), per_event_us(n, gap, False)
            table[f"{layout}/{n}"] = {"before_us": round(b, 1), "now_us": round(a, 1)}
            console.print(f"{layout:15} history {n:>5}: {b:8.1f} us/event before, {a:8.1f} now")
    # the goal: a 5,000-event card's per-event cost within 2x of an ordinary (10-event) card's
    ratios = {layout: round(table[f"{layout}/5000"]["now_us"] / table[f"{layout}/10"]["now_us"], 2)
              for layout in layouts}
    console.print("per-event cost on a 5,000-event card vs a 10-event card: "
                  + ", ".join(f"{layout} {r}x" for layout, r in ratios.items()))
    # one event 55 s late on a card with 4,000 events in the last 40 s (under the 5,000-event
    # cap: deferred); and the card at its cap, where exact corrections would need the events
    # the cap dropped: before, they were written inline; now they are skipped and counted
    stall_before, rows_before = late_stall_ms(4_000, 10, True)
    stall_now, rows_now = late_stall_ms(4_000, 10, False)
    cap_before, cap_rows_before = late_stall_ms(5_000, 10, True, late_ms=30_000)
    cap_now, cap_rows = late_stall_ms(5_000, 10, False, late_ms=30_000)
    console.print(f"one event 55 s late on a card with 4,000 events in 40 s: longest stall "
                  f"{stall_before:.0f} ms before ({rows_before} rows at once), {stall_now:.0f} ms now "
                  f"({rows_now} rows, {BUDGET} per flush); 30 s late at the 5,000-event cap: {cap_before:.0f} ms "
                  f"before ({cap_rows_before} rows inline), "
                  f"{cap_now:.1f} ms now ({cap_rows} row: corrections skipped and counted)")
    params = {"per_event": table, "ratio_5000_vs_10_events": ratios, "flush_every_events": FLUSH_EVERY,
              "corrections_per_flush": BUDGET,
              "late": {"before_ms": round(stall_before, 1), "before_rows": rows_before,
                       "now_ms": round(stall_now, 1), "now_rows": rows_now},
              "late_at_cap": {"late_ms": 30_000, "before_ms": round(cap_before, 1), "before_rows": cap_rows_before,
                              "now_ms": round(cap_now, 1), "now_rows": cap_rows}}
    hot = table["spread_24h/5000"]
    return [
        write_result("hotkey", "per-event cost on a card with 5,000 events in 24 h", hot["now_us"], "us/event",
                     False, "before: unpack+pack per event, Python sums", hot["before_us"], params),
        write_result("hotkey_late_event", "longest stall from one event 55 s late on a card with 4,000 events "
                     "in 40 s", stall_now, "ms", False, "before: every correction inline", stall_before, params),
    ]
