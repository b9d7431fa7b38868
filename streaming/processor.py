"""Per-event processing, pure and broker-free: update an entity's window state and say what
to write. The Faust worker, the batch backfill and the tests all call ``process``; what an
entity keeps and which features it has come from its spec (streaming/entities.py).

Event-time policy (the event's time is the producer's claim; the ingest time is the
pipeline's: the Kafka record's timestamp, never later than the worker's clock):

- an event dated more than ``max_future_skew_ms`` after its ingest time is rejected
  (``FUTURE``: the worker dead-letters it);
- the entity's watermark is its newest accepted event time *bounded by the ingest time*
  of the event being judged, so one record can move it at most to "now";
- an event older than the watermark by more than ``allowed_lateness_ms`` is too late for
  the windows (it still reaches the offline log, flagged);
- the state keeps the events of the last 24 h + lateness before the watermark.

Hence no single record can erase an entity's history or make later events late: an event
delivered within the allowed lateness of its ingest time is judged the same with or
without any other record (tests/unit/test_event_time.py checks this with Hypothesis).

Delivery: at-least-once with idempotent effects. A replayed event (already in the state,
found by its event-id key) is not counted again, but its outputs are emitted again: the
online write overwrites the entity's state blob, and offline rows are keyed by
(entity id, event_key, revision), of which readers keep the highest revision.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import msgspec

from core.card_state import DAY_MS, EventState, event_key
from streaming.entities import CARD, EntitySpec


class Outcome(StrEnum):
    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    TOO_LATE = "too_late"
    FUTURE = "future"


@dataclass(frozen=True)
class ProcessorConfig:
    #: an event older than its entity's newest event by more than this is too late for the
    #: windows (it still reaches the offline log, flagged)
    allowed_lateness_ms: int = 60_000
    #: events kept per entity (oldest dropped first) as a memory bound
    max_events_per_card: int = 5_000
    #: an event dated more than this after its ingest time is rejected (dead letters)
    max_future_skew_ms: int = 300_000

    @property
    def retention_ms(self) -> int:
        return DAY_MS + self.allowed_lateness_ms


@dataclass
class Result:
    outcome: Outcome
    #: feature rows for the offline log: this event, plus corrections of later events of
    #: the entity whose "before" view an out-of-order event changed
    feature_rows: list[dict[str, Any]]
    #: whether the entity's online state changed (or must be rewritten after a replay)
    dirty: bool


def feature_row(spec: EntitySpec, entity_id: str, state: EventState, i: int, status: Outcome,
                revision: int) -> dict[str, Any]:
    before, after = spec.row_features(state, i)
    return {spec.join_key: entity_id, "event_key": state.key[i], "event_time": state.ts[i],
            "status": str(status), "revision": revision,
            **before, **{f"after_{k}": v for k, v in after.items()}}


def process(state: EventState, event: msgspec.Struct, cfg: ProcessorConfig, revision: int,
            spec: EntitySpec = CARD, ingest_ms: int | None = None) -> Result:
    """Apply one event to its entity's state (mutated in place). ``ingest_ms``: when the
    pipeline received it (default: the wall clock now)."""
    key = event_key(event.event_id)  # type: ignore[attr-defined]
    ts: int = event.event_time  # type: ignore[attr-defined]
    entity_id: str = getattr(event, spec.join_key)
    ingest = int(time.time() * 1000) if ingest_ms is None else ingest_ms
    if ts > ingest + cfg.max_future_skew_ms:
        return Result(Outcome.FUTURE, [], dirty=False)
    watermark = min(state.last_ts, ingest)
    if state.contains(ts, key):
        # Re-emit its row only while the state still holds its whole 24 h past (replays
        # after a crash are recent); an older replay keeps the row written first.
        exact = state.trimmed_last_ts <= ts - DAY_MS
        i = state.prefix_len(ts, key, inclusive=False)
        rows = [feature_row(spec, entity_id, state, i, Outcome.ACCEPTED, revision)] if exact else []
        return Result(Outcome.DUPLICATE, rows, dirty=True)
    if state.last_ts and ts < watermark - cfg.allowed_lateness_ms:
        # Log what its features would have been; the windows do not take it.
        view, i = state.with_event(ts, key, *spec.payload(event))
        return Result(Outcome.TOO_LATE, [feature_row(spec, entity_id, view, i, Outcome.TOO_LATE, revision)],
                      dirty=False)
    i = state.insert(ts, key, *spec.payload(event))
    rows = [feature_row(spec, entity_id, state, j, Outcome.ACCEPTED, revision) for j in range(i, len(state))]
    state.trim(min(state.last_ts, ingest) - cfg.retention_ms, cfg.max_events_per_card)
    return Result(Outcome.ACCEPTED, rows, dirty=True)
