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

    def read(self, user_ids: list[str], at_ms: int | None = None) -> list[CardRead]:
        t = int(now_ms()) if at_ms is None else at_ms
        got = self.store.get_online_features(
            features=["user_click_state:state", "user_click_state:last_event_time"],
            entity_rows=[{"user_id": u} for u in user_ids]).to_dict()
        return [CardRead(u, user_features(UserState.unpack(blob), t), last is not None, last)
                for u, blob, last in zip(user_ids, got["state"], got["last_event_time"], strict=True)]


class CardFeatureReader:
    def __init__(self, store: Any) -> None:
        self.store = store

    def states(self, card_ids: list[str]) -> list[tuple[CardState, int | None]]:
        """One Feast call for all cards."""
        got = self.store.get_online_features(
            features=STATE_FEATURES, entity_rows=[{"card_id": c} for c in card_ids]).to_dict()
        return [(CardState.unpack(blob), last) for blob, last in zip(got["state"], got["last_event_time"],
                                                                      strict=True)]

    def read(self, card_ids: list[str], at_ms: int | None = None) -> list[CardRead]:
        t = int(now_ms()) if at_ms is None else at_ms
        return [CardRead(c, window_features(state, t), last is not None, last)
                for c, (state, last) in zip(card_ids, self.states(card_ids), strict=True)]

    def model_inputs(self, card_id: str, amount: float, at_ms: int) -> dict[str, float]:
        """Inputs for scoring a transaction of ``amount`` at ``at_ms`` before it is in the state."""
        (state, _), = self.states([card_id])
        return with_request(window_features(state, at_ms), amount, at_ms)
