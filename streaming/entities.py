"""What the stream keeps per entity: one spec per event kind (transactions by card, clicks
by user). ``streaming.processor.process`` and the worker are generic over these."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgspec

from core.card_state import CardState, EventState, event_key
from core.contracts import HIGH_RISK_MCCS, Click, Transaction
from core.features import before_and_after
from core.user_features import ACTIONS, UserState, user_features

Features = dict[str, float]


@dataclass(frozen=True)
class EntitySpec:
    name: str
    event_type: type[msgspec.Struct]
    join_key: str  # the event field and Feast join key: card_id, user_id
    state_type: type[EventState]
    #: the event's payload columns, in the state's PAYLOAD order
    payload: Callable[[Any], tuple]
    #: features as of just before and just after the i-th event of the state
    row_features: Callable[[Any, int], tuple[Features, Features]]
    online_view: str
    push_source: str
    event_dataset: str  # offline: the raw events
    feature_dataset: str  # offline: before/after features per event


def _card_rows(state: CardState, i: int) -> tuple[Features, Features]:
    return before_and_after(state, state.ts[i], state.key[i], state.amount[i])


def _user_rows(state: UserState, i: int) -> tuple[Features, Features]:
    before = state.prefix_len(state.ts[i], state.key[i], inclusive=False)
    return user_features(state, state.ts[i], before), user_features(state, state.ts[i], before + 1)


CARD = EntitySpec(
    name="card", event_type=Transaction, join_key="card_id", state_type=CardState,
    payload=lambda t: (t.amount, t.country, t.merchant_id, t.mcc in HIGH_RISK_MCCS),
    row_features=_card_rows, online_view="card_window_state", push_source="card_state_push",
    event_dataset="transactions", feature_dataset="card_txn_features",
)
USER = EntitySpec(
    name="user", event_type=Click, join_key="user_id", state_type=UserState,
    payload=lambda c: (ACTIONS[c.action], c.dwell_ms, event_key(c.session_id)),
    row_features=_user_rows, online_view="user_click_state", push_source="user_state_push",
    event_dataset="clicks", feature_dataset="user_click_features",
)


def event_row(event: msgspec.Struct) -> dict[str, Any]:
    """An event's fields as logged offline, plus its event_key."""
    row = msgspec.structs.asdict(event)
    row["event_key"] = event_key(row["event_id"])
    row.pop("schema_version", None)
    return row
