"""Per-user click features (feature service ``personalization_v1``): the same read-time
windows as the card features, over a user's recent clicks.

Actions are coded 0 view, 1 add_to_cart, 2 purchase.
"""

from __future__ import annotations

from bisect import bisect_right

from core.card_state import DAY_MS, HOUR_MS, EventState
from core.features import SECONDS_SINCE_CAP

ACTIONS = {"view": 0, "add_to_cart": 1, "purchase": 2}

USER_FEATURES: tuple[str, ...] = (
    "click_count_1h", "click_count_24h", "view_count_1h", "add_to_cart_count_1h",
    "purchase_count_24h", "sessions_24h", "dwell_avg_ms_1h", "add_to_cart_rate_24h",
    "purchase_rate_24h", "seconds_since_last_click",
)
#: the offline row's feature columns: as of just before the click, then just after it
USER_ROW_FEATURES: tuple[str, ...] = (*USER_FEATURES, *(f"after_{f}" for f in USER_FEATURES))
#: the row features that are integers (counts); the rest are floats
USER_ROW_INT_FEATURES: frozenset[str] = frozenset(
    f"{prefix}{f}" for prefix in ("", "after_") for f in (
        "click_count_1h", "click_count_24h", "view_count_1h", "add_to_cart_count_1h", "purchase_count_24h",
        "sessions_24h"))


class UserState(EventState):
    """A user's clicks: action code, dwell time and session."""

    PAYLOAD = ("action", "dwell", "session")
    __slots__ = PAYLOAD
    action: list[int]
    dwell: list[int]
    session: list[int]


def user_features(state: UserState, t_ms: int, upto: int | None = None) -> dict[str, float]:
    """Window features at ``t_ms`` over the first ``upto`` clicks (default: all at or before t)."""
    end = bisect_right(state.ts, t_ms) if upto is None else upto
    s1h = bisect_right(state.ts, t_ms - HOUR_MS, 0, end)
    s24h = bisect_right(state.ts, t_ms - DAY_MS, 0, end)
    a1h, a24h = state.action[s1h:end], state.action[s24h:end]
    views_24h = a24h.count(0)
    sessions = len(set(state.session[s24h:end]))
    dwell = state.dwell[s1h:end]
    last = state.ts[end - 1] if end else (state.trimmed_last_ts if 0 < state.trimmed_last_ts <= t_ms else None)
    return {
        "click_count_1h": end - s1h,
        "click_count_24h": end - s24h,
        "view_count_1h": a1h.count(0),
        "add_to_cart_count_1h": a1h.count(1),
        "purchase_count_24h": a24h.count(2),
        "sessions_24h": sessions,
        "dwell_avg_ms_1h": sum(dwell) / len(dwell) if dwell else 0.0,
        "add_to_cart_rate_24h": a24h.count(1) / views_24h if views_24h else 0.0,
        "purchase_rate_24h": a24h.count(2) / sessions if sessions else 0.0,
        "seconds_since_last_click": (min(SECONDS_SINCE_CAP, (t_ms - last) / 1000.0)
                                     if last is not None else SECONDS_SINCE_CAP),
    }


def user_row_values(state: UserState, i: int) -> tuple[float, ...]:
    """The offline row of the state's i-th click (``USER_ROW_FEATURES`` order): its features as
    of just before it and just after it."""
    t = state.ts[i]
    return (*user_features(state, t, i).values(), *user_features(state, t, i + 1).values())
