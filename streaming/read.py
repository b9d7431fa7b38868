"""The read function: a card's window features as of any time, from the Feast online store.

Inference, the CLI (``python -m streaming features card ID``) and the tests call this; the
stream and training use the same feature code (core/features.py) on the same state.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from core.card_state import CardState
from core.features import window_features, with_request
from core.user_features import UserState, user_features
from streaming.sinks import now_ms

STATE_FEATURES = ["card_window_state:state", "card_window_state:last_event_time"]


class OnlineStates:
    """Entity states from Feast's online store through its own online-store API: one
    ``online_read`` of the feature view (Feast's keys, serialization and registry), the
    rows ``get_online_features`` would fetch, without its per-call registry lookups,
    response building and type conversions (0.26 ms per card against 0.1 ms for the raw
    Redis read, measured here). Feast returns a state past the view's ttl as well (it only
    marks it), so nothing is filtered here either; ``tests/integration/test_feast_redis.py``
    checks both paths give the same rows."""

    def __init__(self, store: Any, feature_view: str, join_key: str) -> None:
        from feast.protos.feast.types.EntityKey_pb2 import EntityKey
        from feast.protos.feast.types.Value_pb2 import Value

        self.store, self.join_key = store, join_key
        self.view = store.get_feature_view(feature_view)
        self.provider = store._get_provider()  # noqa: SLF001 - Feast's read path below get_online_features
        self._key, self._value = EntityKey, Value

    def read(self, ids: list[str]) -> list[tuple[bytes | None, int | None]]:
        """(packed state, last event time) per id; (None, None) for one the store does not know."""
        keys = [self._key(join_keys=[self.join_key], entity_values=[self._value(string_val=i)]) for i in ids]
        rows = self.provider.online_read(config=self.store.config, table=self.view, entity_keys=keys,
                                         requested_features=["state", "last_event_time"])
        out: list[tuple[bytes | None, int | None]] = []
        for _, values in rows:
            state, last = (values or {}).get("state"), (values or {}).get("last_event_time")
            out.append((state.bytes_val if state is not None and state.HasField("bytes_val") else None,
                        last.int64_val if last is not None and last.HasField("int64_val") else None))
        return out


@dataclass(frozen=True)
class CardRead:
    card_id: str  # the entity id (a user id for UserFeatureReader)
    features: dict[str, float]
    #: False for a card the online store does not know (new, or quiet past the TTL)
    found: bool
    last_event_time: int | None


class UserFeatureReader:
    """A user's click features as of any time (feature service personalization_v1)."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self.online = OnlineStates(store, "user_click_state", "user_id")

    def read(self, user_ids: list[str], at_ms: int | None = None) -> list[CardRead]:
        t = int(now_ms()) if at_ms is None else at_ms
        return [CardRead(u, user_features(UserState.unpack(blob), t), last is not None, last)
                for u, (blob, last) in zip(user_ids, self.online.read(user_ids), strict=True)]


class CardFeatureReader:
    def __init__(self, store: Any) -> None:
        self.store = store
        self.online = OnlineStates(store, "card_window_state", "card_id")

    def states(self, card_ids: list[str]) -> list[tuple[CardState, int | None]]:
        """One online-store read for all cards."""
        return [(CardState.unpack(blob), last) for blob, last in self.online.read(card_ids)]

    def read(self, card_ids: list[str], at_ms: int | None = None) -> list[CardRead]:
        t = int(now_ms()) if at_ms is None else at_ms
        return [CardRead(c, window_features(state, t), last is not None, last)
                for c, (state, last) in zip(card_ids, self.states(card_ids), strict=True)]

    def model_inputs(self, card_id: str, amount: float, at_ms: int) -> dict[str, float]:
        """Inputs for scoring a transaction of ``amount`` at ``at_ms`` before it is in the state."""
        (state, _), = self.states([card_id])
        return with_request(window_features(state, at_ms), amount, at_ms)
