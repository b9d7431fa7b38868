"""Purchase propensity: the user's click windows from Feast online as of just before the
current click, the click's own fields, the ONNX score of ``purchase-propensity@champion``
(signed, gated and hot-reloaded like the fraud model: inference/model.py), a tier and
reasons. The same functions and column order as training (training/dataset.py
``load_clicks``: the offline log's "before" row of the click plus ``click_fields``), so a
click re-scored as of its own time gets the score its offline row gets."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from core.card_state import event_key
from core.model_inputs import PROPENSITY_FEATURES, click_fields
from core.user_features import UserState, user_features
from inference.model import ModelHolder, ServedModel
from inference.scoring import Unavailable, feature_reasons, now_ms, tier

_WORDS = {
    "click_count_1h": "clicks in the last hour", "click_count_24h": "clicks in the last 24 hours",
    "view_count_1h": "product views in the last hour", "add_to_cart_count_1h": "add-to-carts in the last hour",
    "purchase_count_24h": "purchases in the last 24 hours", "sessions_24h": "sessions in the last 24 hours",
    "dwell_avg_ms_1h": "average dwell time over the last hour (ms)",
    "add_to_cart_rate_24h": "add-to-carts per view over 24 hours", "purchase_rate_24h": "purchases per session "
    "over 24 hours", "seconds_since_last_click": "seconds since the previous click", "is_view": "this click is a view",
    "is_add_to_cart": "this click is an add-to-cart", "is_purchase": "this click is a purchase",
    "dwell_ms": "dwell time of this click (ms)", "device_mobile": "on a mobile", "device_tablet": "on a tablet",
}


@dataclass(frozen=True)
class PreparedClick:
    row: list[float]
    missing: bool  # the online store does not know the user
    last_event_time: int | None


def prepare_click(state: UserState, last_event_time: int | None, click: Any, t_ms: int) -> PreparedClick:
    """Model inputs of ``click`` read at ``t_ms``: the user's windows over the clicks sorting
    before it (its offline row's "before" view) and its own fields. A click the stream already
    holds (a retry, or re-scoring history) is left out of its own view; without an event_id
    every click at or before ``t_ms`` counts."""
    if click.event_id is None:
        before = None
    else:
        key = event_key(click.event_id)
        claimed = click.event_time
        if claimed is not None and claimed != t_ms and state.contains(claimed, key):
            state = state.without(claimed, key)
        before = state.prefix_len(t_ms, key, inclusive=False)
    merged = {**user_features(state, t_ms, before), **click_fields(click.action, click.dwell_ms, click.device)}
    return PreparedClick([float(merged[name]) for name in PROPENSITY_FEATURES], last_event_time is None,
                         last_event_time)


def reasons(model: ServedModel, row: np.ndarray, k: int) -> list[dict[str, str]]:
    """The inputs furthest from their training mean, weighted by the model's importance (the
    fraud model's heuristic; there are no rules for purchases)."""
    return feature_reasons(model, row, k, _WORDS)


class PropensityScorer:
    """The one propensity path (the HTTP API; ``python -m training score --task
    personalization`` scores the offline rows with the same graph)."""

    def __init__(self, holder: ModelHolder, reader: Any, cfg: Any, publisher: Any = None,
                 on_fetch: Any = None) -> None:
        self.holder, self.reader, self.cfg, self.publisher = holder, reader, cfg, publisher
        self.on_fetch = on_fetch or (lambda _s: None)

    def score(self, clicks: list[Any], at: list[int] | None = None, publish: bool = True,
              source: str = "api") -> list[dict[str, Any]]:
        """Score at the server's time (``at``: each click's read time instead, for re-scoring
        history); the request's event_time is recorded and a skew flagged, as for fraud."""
        t0 = time.perf_counter()
        model = self.holder.current  # one reference for the whole request
        if model is None:
            raise Unavailable(f"no purchase-propensity model loaded: {self.holder.last_error or 'loading'}")
        challenger = self.holder.challenger
        users = list(dict.fromkeys(c.user_id for c in clicks))
        f0 = time.perf_counter()
        try:
            read = dict(zip(users, self.reader.states(users), strict=True))  # one Feast call
        except Exception as exc:
            raise Unavailable(f"online feature store unavailable: {type(exc).__name__}: {exc}") from exc
        self.on_fetch(time.perf_counter() - f0)
        now = now_ms()
        times = at if at is not None else [now] * len(clicks)
        prepared = [prepare_click(*read[c.user_id], c, ti) for c, ti in zip(clicks, times, strict=True)]
        X = np.asarray([p.row for p in prepared], dtype=np.float32)  # noqa: N806
        probs = model.score(X)
        shadow = challenger.score(X) if challenger is not None else None
        bands = model.metadata.get("risk_bands", {})
        max_skew_ms = self.cfg.max_event_time_skew_s * 1000
        out = []
        for i, (c, p) in enumerate(zip(clicks, prepared, strict=True)):
            prob = float(probs[i])
            skew = (c.event_time - times[i]) if c.event_time is not None else None
            age = (now - p.last_event_time) if p.last_event_time is not None else None
            rec = {"event_id": c.event_id, "user_id": c.user_id, "session_id": c.session_id,
                   "purchase_probability": prob, "tier": tier(prob, bands), "model_version": model.version,
                   "reasons": reasons(model, X[i].astype(np.float64), self.cfg.reasons),
                   "feature_age_ms": age, "features_missing": p.missing,
                   "features_stale": age is not None and age > self.cfg.stale_after_s * 1000,
                   "shadow": ({"model_version": challenger.version, "purchase_probability": float(shadow[i])}
                              if shadow is not None and challenger is not None else None),
                   "scored_at": times[i], "event_time_skew_ms": skew,
                   "event_time_flagged": skew is not None and abs(skew) > max_skew_ms,
                   "latency_ms": (time.perf_counter() - t0) * 1000}
            out.append(rec)
            if self.publisher is not None and publish:
                self.publisher.publish(c.user_id, {
                    "event_id": c.event_id, "user_id": c.user_id, "session_id": c.session_id, "page": c.page,
                    "event_time": times[i], "claimed_event_time": c.event_time, "scored_at": now, "source": source,
                    "purchase_probability": prob, "model_name": model.name, "model_version": model.version,
                    "features": dict(zip(model.features, p.row, strict=True)), "shadow": rec["shadow"],
                    "latency_ms": rec["latency_ms"]})
        return out


class UserStates:
    """``states(user_ids)`` for the scorer: one Feast online read of the user view."""

    def __init__(self, store: Any) -> None:
        from streaming.read import OnlineStates

        self.online = OnlineStates(store, "user_click_state", "user_id")

    def states(self, user_ids: list[str]) -> list[tuple[UserState, int | None]]:
        return [(UserState.unpack(blob), last) for blob, last in self.online.read(user_ids)]

