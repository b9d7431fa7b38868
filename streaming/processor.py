"""Per-event processing, pure and broker-free: update an entity's window state and say what
to write. The Faust worker, the batch backfill and the tests all call ``process``; what an
entity keeps and which features it has come from its spec (streaming/entities.py).

Delivery: at-least-once with idempotent effects. A replayed event (already in the state,
found by its event-id key) is not counted again, but its outputs are emitted again: the
online write overwrites the entity's state blob, and offline rows are keyed by
(entity id, event_key, revision), of which readers keep the highest revision.
"""

from __future__ import annotations

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


@dataclass(frozen=True)
class ProcessorConfig:
    #: an event older than its entity's newest event by more than this is too late for the
    #: windows (it still reaches the offline log, flagged)
    allowed_lateness_ms: int = 60_000
    #: events kept per entity (oldest dropped first) as a memory bound
    max_events_per_card: int = 5_000

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
            spec: EntitySpec = CARD) -> Result:
    """Apply one event to its entity's state (mutated in place)."""
    key = event_key(event.event_id)  # type: ignore[attr-defined]
    ts: int = event.event_time  # type: ignore[attr-defined]
    entity_id: str = getattr(event, spec.join_key)
    if state.contains(ts, key):
        # Re-emit its row only while the state still holds its whole 24 h past (replays
        # after a crash are recent); an older replay keeps the row written first.
        exact = state.trimmed_last_ts <= ts - DAY_MS
        i = state.prefix_len(ts, key, inclusive=False)
        rows = [feature_row(spec, entity_id, state, i, Outcome.ACCEPTED, revision)] if exact else []
        return Result(Outcome.DUPLICATE, rows, dirty=True)
    if state.last_ts and ts < state.last_ts - cfg.allowed_lateness_ms:
        # Log what its features would have been; the windows do not take it.
        view, i = state.with_event(ts, key, *spec.payload(event))
        return Result(Outcome.TOO_LATE, [feature_row(spec, entity_id, view, i, Outcome.TOO_LATE, revision)],
                      dirty=False)
    i = state.insert(ts, key, *spec.payload(event))
    rows = [feature_row(spec, entity_id, state, j, Outcome.ACCEPTED, revision) for j in range(i, len(state))]
    state.trim(state.last_ts - cfg.retention_ms, cfg.max_events_per_card)
    return Result(Outcome.ACCEPTED, rows, dirty=True)
