"""What the stream keeps per entity: one spec per event kind (transactions by card, clicks
by user). ``streaming.processor.process`` and the worker are generic over these."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgspec

from core.card_state import CardState, EventState, event_key
from core.contracts import HIGH_RISK_MCCS, Click, Transaction
from core.features import ROW_FEATURES, ROW_INT_FEATURES, WindowCache, event_row_values
from core.user_features import ACTIONS, USER_ROW_FEATURES, USER_ROW_INT_FEATURES, UserState, user_row_values

Features = dict[str, float]


@dataclass(frozen=True)
class EntitySpec:
    name: str
    event_type: type[msgspec.Struct]
    join_key: str  # the event field and Feast join key: card_id, user_id
    state_type: type[EventState]
    #: the event's payload columns, in the state's PAYLOAD order
    payload: Callable[[Any], tuple]
    #: the i-th event's row features: as of just before it (plain names) and just after it
    #: (``after_`` names), as values in ``row_names`` order
    row_values: Callable[[Any, int], tuple[float, ...]]
    row_names: tuple[str, ...]
    #: which of ``row_names`` are integers (the offline log's int64 columns; the rest are float64)
    row_ints: frozenset[str]
    online_view: str
    push_source: str
    event_dataset: str  # offline: the raw events
    feature_dataset: str  # offline: before/after features per event
    #: sliding window aggregates a busy entity's state keeps between events (``process``
    #: sets ``EventState.cache`` from ``VECTOR_FROM`` events on); None: none
    window_cache: Callable[[], Any] | None = None

    def row_features(self, state: Any, i: int) -> Features:
        """``row_values`` by name."""
        return dict(zip(self.row_names, self.row_values(state, i), strict=True))


CARD = EntitySpec(
    name="card", event_type=Transaction, join_key="card_id", state_type=CardState,
    payload=lambda t: (t.amount, t.country, t.merchant_id, t.mcc in HIGH_RISK_MCCS),
    row_values=event_row_values, row_names=ROW_FEATURES, row_ints=ROW_INT_FEATURES,
    online_view="card_window_state", push_source="card_state_push",
    event_dataset="transactions", feature_dataset="card_txn_features", window_cache=WindowCache,
)
USER = EntitySpec(
    name="user", event_type=Click, join_key="user_id", state_type=UserState,
    payload=lambda c: (ACTIONS[c.action], c.dwell_ms, event_key(c.session_id)),
    row_values=user_row_values, row_names=USER_ROW_FEATURES, row_ints=USER_ROW_INT_FEATURES,
    online_view="user_click_state", push_source="user_state_push",
    event_dataset="clicks", feature_dataset="user_click_features",
)


def event_row(event: msgspec.Struct, key: int | None = None) -> dict[str, Any]:
    """An event's fields as logged offline, plus its event_key (``key``, when known)."""
    row = msgspec.structs.asdict(event)
    row["event_key"] = event_key(row["event_id"]) if key is None else key
    row.pop("schema_version", None)
    return row
