"""Per-transaction processing, pure and broker-free: update a card's window state and say
what to write. The Faust agent, the batch backfill and the tests all call ``process``.

Delivery: at-least-once with idempotent effects. A replayed event (already in the state,
found by its event-id key) is not counted again, but its outputs are emitted again: the
online write overwrites the card's state blob, and offline rows are keyed by
(card_id, event_key, revision), of which readers keep the highest revision.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from core.card_state import DAY_MS, CardState, event_key
from core.contracts import HIGH_RISK_MCCS, Transaction
from core.features import before_and_after


class Outcome(StrEnum):
    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    TOO_LATE = "too_late"


@dataclass(frozen=True)
class ProcessorConfig:
    #: an event older than the card's newest event by more than this is too late for the
    #: windows (it still reaches the offline log, flagged)
    allowed_lateness_ms: int = 60_000
    #: events kept per card (oldest dropped first) as a memory bound
    max_events_per_card: int = 5_000

    @property
    def retention_ms(self) -> int:
        return DAY_MS + self.allowed_lateness_ms


@dataclass
class Result:
    outcome: Outcome
    #: feature rows for the offline log: this event, plus corrections of later events of
    #: the card whose "before" view an out-of-order event changed
    feature_rows: list[dict[str, Any]]
    #: whether the card's online state changed (or must be rewritten after a replay)
    dirty: bool


def transaction_row(txn: Transaction) -> dict[str, Any]:
    """The request fields of a transaction, as logged offline (joined to feature rows by
    (card_id, event_key))."""
    return {"event_id": txn.event_id, "event_key": event_key(txn.event_id), "card_id": txn.card_id,
            "event_time": txn.event_time, "user_id": txn.user_id, "merchant_id": txn.merchant_id,
            "mcc": txn.mcc, "amount": txn.amount, "currency": txn.currency, "country": txn.country,
            "lat": txn.lat, "lon": txn.lon, "device_id": txn.device_id, "ip": txn.ip,
            "channel": txn.channel}


def feature_row(card_id: str, state: CardState, i: int, status: Outcome, revision: int) -> dict[str, Any]:
    before, after = before_and_after(state, state.ts[i], state.key[i], state.amount[i])
    return {"card_id": card_id, "event_key": state.key[i], "event_time": state.ts[i],
            "status": str(status), "revision": revision,
            **before, **{f"after_{k}": v for k, v in after.items()}}


def process(state: CardState, txn: Transaction, cfg: ProcessorConfig, revision: int) -> Result:
    """Apply one transaction to its card's state (mutated in place)."""
    key = event_key(txn.event_id)
    risky = txn.mcc in HIGH_RISK_MCCS
    if state.contains(txn.event_time, key):
        # Re-emit its row only while the state still holds its whole 24 h past (replays
        # after a crash are recent); an older replay keeps the row written first.
        exact = state.trimmed_last_ts <= txn.event_time - DAY_MS
        i = state.prefix_len(txn.event_time, key, inclusive=False)
        rows = [feature_row(txn.card_id, state, i, Outcome.ACCEPTED, revision)] if exact else []
        return Result(Outcome.DUPLICATE, rows, dirty=True)
    if state.last_ts and txn.event_time < state.last_ts - cfg.allowed_lateness_ms:
        # Log what its features would have been; the windows do not take it.
        view = copy.deepcopy(state)
        i = view.insert(txn.event_time, key, txn.amount, txn.country, txn.merchant_id, risky)
        return Result(Outcome.TOO_LATE, [feature_row(txn.card_id, view, i, Outcome.TOO_LATE, revision)],
                      dirty=False)
    i = state.insert(txn.event_time, key, txn.amount, txn.country, txn.merchant_id, risky)
    rows = [feature_row(txn.card_id, state, j, Outcome.ACCEPTED, revision)
            for j in range(i, len(state))]
    state.trim(state.last_ts - cfg.retention_ms, cfg.max_events_per_card)
    return Result(Outcome.ACCEPTED, rows, dirty=True)
