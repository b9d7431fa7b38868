"""Scoring a transaction: the card's window state from Feast online, the features as of just
before the transaction (the same functions and ordering as the offline log, so a retried or
historical request sees exactly its own "before" view), the model row, the ONNX score, the
decision and the reasons."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from core.card_state import CardState, event_key
from core.contracts import HIGH_RISK_MCCS
from core.features import (
    REQUEST_FEATURES,
    WINDOW_FEATURES,
    event_row_values,
    window_features,
    with_request,
)
from core.model_inputs import model_row
from core.rules import RULES
from inference.model import ModelHolder, ServedModel


@dataclass(frozen=True)
class Prepared:
    row: list[float]
    features: dict[str, float]
    after: dict[str, float]  # as of just after the transaction: what the rules look at
    missing: bool
    last_event_time: int | None


def prepare(state: CardState, last_event_time: int | None, txn: Any, t_ms: int) -> Prepared:
    """Model inputs of ``txn`` read at ``t_ms``: the card's windows as of just before the
    transaction. A retry of a transaction the stream already holds at another time (its
    claimed event time; live requests are read at server time) is left out of its own view.
    One window pass: the state with the transaction inserted, and the offline row's own
    function (``event_row_values``: the "before" view, and the "after" view the rules read
    derived from it), so the inputs are computed exactly as the offline log's."""
    key = event_key(txn.event_id)
    claimed = getattr(txn, "event_time", None)
    if claimed is not None and claimed != t_ms and state.contains(claimed, key):
        state = state.without(claimed, key)
    if state.contains(t_ms, key):  # a retry read at its own time: the state already holds it
        before = state.prefix_len(t_ms, key, inclusive=False)
        features = with_request(window_features(state, t_ms, before), txn.amount, t_ms)
        after = with_request(window_features(state, t_ms, before + 1), txn.amount, t_ms)
    else:
        view, i = state.with_event(t_ms, key, txn.amount, txn.country, txn.merchant_id, txn.mcc in HIGH_RISK_MCCS)
        row = event_row_values(view, i)  # (ROW_FEATURES: the _VIEW names, then their after_ twins; tested)
        features = dict(zip(_VIEW, row[:len(_VIEW)], strict=True))
        after = dict(zip(_VIEW, row[len(_VIEW):], strict=True))
    return Prepared(model_row(features, txn.amount, txn.mcc, txn.channel), features, after,
                    last_event_time is None, last_event_time)


_VIEW = WINDOW_FEATURES + REQUEST_FEATURES


def decide(p: float, threshold: float, decline_at: float) -> str:
    if p >= max(decline_at, threshold):
        return "decline"
    return "review" if p >= threshold else "approve"


def explore(decision: str, share: float, rng: random.Random) -> tuple[str, bool]:
    """Exploration: a would-be decline is approved with probability ``share`` (logged with the
    score as its label probability), so that the chargebacks of declined-looking traffic still
    reach training, weighted by the inverse. Returns (decision, explored)."""
    if decision == "decline" and share > 0 and rng.random() < share:
        return "approve", True
    return decision, False


def tier(p: float, bands: dict[str, float]) -> str:
    return "high" if p >= bands.get("high", 0.7) else "medium" if p >= bands.get("medium", 0.4) else "low"


_WORDS = {
    "txn_count_1m": "transactions in the last minute", "txn_count_5m": "transactions in the last 5 minutes",
    "txn_count_1h": "transactions in the last hour", "txn_count_24h": "transactions in the last 24 hours",
    "amount_sum_5m": "spent in the last 5 minutes", "amount_sum_1h": "spent in the last hour",
    "amount_avg_5m": "average amount over 5 minutes", "amount_max_5m": "largest amount in 5 minutes",
    "unique_countries_5m": "countries in 5 minutes", "unique_countries_1h": "countries in the last hour",
    "unique_merchants_1h": "merchants in the last hour", "seconds_since_last_txn": "seconds since the last purchase",
    "amount_zscore_24h": "amount vs the card's 24 h average (z-score)", "velocity_score": "velocity score",
    "geo_diversity_score": "geo diversity score", "amount": "amount", "hour_of_day": "hour of day (UTC)",
    "mcc_high_risk": "high-risk merchant category", "has_high_risk_mcc": "high-risk merchant in 5 minutes",
}


def reasons(model: ServedModel, row: np.ndarray, after: dict[str, float], k: int) -> list[dict[str, str]]:
    """Fired rules (on the view including this transaction) and the features furthest from
    their training mean, weighted by the model's importance: a cheap, documented heuristic
    (the ONNX graph has no per-row contributions)."""
    out = [{"kind": "rule", "name": r.name, "text": r.description} for r in RULES if bool(r.test(after))]
    return out + feature_reasons(model, row, k, _WORDS)


def feature_reasons(model: ServedModel, row: np.ndarray, k: int, words: dict[str, str]) -> list[dict[str, str]]:
    """The ``k`` inputs furthest from their training mean, weighted by the model's importance,
    in ``words`` (the fraud and the propensity reasons both)."""
    out: list[dict[str, str]] = []
    if k and len(model.weight) == len(row):
        dev = np.abs(row - model.mean) * model.weight
        for j in np.argsort(dev)[::-1][:k]:
            if dev[j] <= 0:
                break
            name = model.features[j]
            out.append({"kind": "feature", "name": name,
                        "text": f"{words.get(name, name)}: {row[j]:.4g} (usual {model.mean[j]:.3g})"})
    return out


def now_ms() -> int:
    return int(time.time() * 1000)


class Unavailable(Exception):
    """A dependency is down or no model is loaded: HTTP 503 with this detail."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class Scorer:
    """The one scoring path: the HTTP API and the stream scorer both call ``score``."""

    def __init__(self, holder: ModelHolder, reader: Any, cfg: Any, publisher: Any = None,
                 on_fetch: Any = None, on_decision: Any = None, on_skew: Any = None) -> None:
        self.holder, self.reader, self.cfg, self.publisher = holder, reader, cfg, publisher
        self.on_fetch = on_fetch or (lambda _s: None)
        self.on_skew = on_skew or (lambda: None)
        self.rng = random.Random()
        self.on_decision = on_decision or (lambda _d: None)

    def score(self, txns: list[Any], at: list[int] | None = None, publish: bool = True,
              source: str = "stream") -> list[dict[str, Any]]:
        """Score at the server's time (``at``: the read time of each transaction instead, for
        the pipeline's own events and authenticated re-scoring). A request's own event_time
        never chooses the read time: it is recorded, and a skew beyond the setting flagged.
        ``source`` is recorded with each published score: "stream" for the pipeline's own
        events (the only ones the online learner learns from), "api:<key name>", "rescore"."""
        t0 = time.perf_counter()
        model = self.holder.current  # one reference for the whole request: no mixed models
        if model is None:
            raise Unavailable(f"no model loaded: {self.holder.last_error or 'loading'}")
        challenger = self.holder.challenger
        cards = list(dict.fromkeys(t.card_id for t in txns))
        f0 = time.perf_counter()
        try:
            states = dict(zip(cards, self.reader.states(cards), strict=True))  # one Feast call
        except Exception as exc:  # Redis down, timeouts: a 503 with the reason, never a 500
            raise Unavailable(f"online feature store unavailable: {type(exc).__name__}: {exc}") from exc
        self.on_fetch(time.perf_counter() - f0)
        now = now_ms()
        times = at if at is not None else [now] * len(txns)
        prepared = [prepare(*states[t.card_id], t, ti) for t, ti in zip(txns, times, strict=True)]
        X = np.asarray([p.row for p in prepared], dtype=np.float32)  # noqa: N806
        probs = model.score(X)
        shadow = challenger.score(X) if challenger is not None else None
        bands = model.metadata.get("risk_bands", {})
        cfg = self.cfg
        out = []
        max_skew_ms = cfg.max_event_time_skew_s * 1000
        for i, (t, p) in enumerate(zip(txns, prepared, strict=True)):
            prob = float(probs[i])
            skew = (t.event_time - times[i]) if t.event_time is not None else None
            flagged = skew is not None and abs(skew) > max_skew_ms
            if flagged:
                self.on_skew()
            decision = decide(prob, model.threshold, cfg.decline_at)
            decision, explored = explore(decision, cfg.explore_share, self.rng)
            age = (now - p.last_event_time) if p.last_event_time is not None else None
            rec = {"event_id": t.event_id, "card_id": t.card_id, "fraud_probability": prob, "decision": decision,
                   "risk_tier": tier(prob, bands), "model_version": model.version,
                   "reasons": reasons(model, X[i].astype(np.float64), p.after, cfg.reasons),
                   "feature_age_ms": age, "features_missing": p.missing,
                   "features_stale": age is not None and age > cfg.stale_after_s * 1000,
                   "shadow": ({"model_version": challenger.version, "fraud_probability": float(shadow[i])}
                              if shadow is not None and challenger is not None else None),
                   "scored_at": times[i], "event_time_skew_ms": skew, "event_time_flagged": flagged,
                   "explored": explored,
                   "latency_ms": (time.perf_counter() - t0) * 1000}
            self.on_decision(decision)
            out.append(rec)
            if self.publisher is not None and publish:
                self.publisher.publish(t.card_id, {
                    "event_id": t.event_id, "card_id": t.card_id, "event_time": times[i],
                    "claimed_event_time": t.event_time, "scored_at": now, "source": source, "fraud_probability": prob,
                    "decision": decision, "explored": explored,
                    "label_probability": cfg.explore_share if explored else 1.0,
                    "model_name": model.name, "model_version": model.version,
                    "features": dict(zip(model.features, p.row, strict=True)),
                    # the request's categories (drift checks their data quality: a new MCC)
                    "request": {"mcc": t.mcc, "country": t.country, "channel": t.channel},
                    "shadow": rec["shadow"], "latency_ms": rec["latency_ms"]})
        return out
