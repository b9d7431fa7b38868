"""Brute-force reference of every window feature: filter the raw events, no bisect, no
state. Deliberately written apart from core/features.py so that the two can disagree."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import NamedTuple

from core.contracts import HIGH_RISK_MCCS

WINDOWS_MS = {"1m": 60_000, "5m": 300_000, "1h": 3_600_000, "24h": 86_400_000}


class Ev(NamedTuple):
    ts: int
    key: int
    amount: float
    country: str
    merchant: str
    mcc: str


def _pstd(xs: list[float]) -> float:
    if len(xs) < 2:
        return 0.0
    m = sum(xs) / len(xs)
    return math.sqrt(sum((x - m) ** 2 for x in xs) / len(xs))


def _seen(events: list, t: int, bound: tuple[int, int] | None, inclusive: bool) -> list:
    """Events at or before t, or (with bound) sorting before the bound (ts, key), or up to
    and including it."""
    if bound is None:
        return [e for e in events if e.ts <= t]
    if inclusive:
        return [e for e in events if (e.ts, e.key) <= bound]
    return [e for e in events if (e.ts, e.key) < bound]


def reference_features(events: list[Ev], t: int, bound: tuple[int, int] | None = None,
                       inclusive: bool = False) -> dict[str, float]:
    """Features at t over the events _seen() admits."""
    seen = _seen(events, t, bound, inclusive)
    seen.sort(key=lambda e: (e.ts, e.key))
    win = {name: [e for e in seen if t - w < e.ts <= t] for name, w in WINDOWS_MS.items()}
    a5 = [e.amount for e in win["5m"]]
    a1h = [e.amount for e in win["1h"]]
    a24 = [e.amount for e in win["24h"]]
    uc1h = len({e.country for e in win["1h"]})
    last = max((e.ts for e in seen), default=None)
    return {
        "txn_count_1m": len(win["1m"]), "txn_count_5m": len(win["5m"]),
        "txn_count_1h": len(win["1h"]), "txn_count_24h": len(win["24h"]),
        "amount_sum_5m": sum(a5), "amount_sum_1h": sum(a1h),
        "amount_avg_5m": sum(a5) / len(a5) if a5 else 0.0,
        "amount_max_5m": max(a5, default=0.0), "amount_std_1h": _pstd(a1h),
        "unique_countries_5m": len({e.country for e in win["5m"]}), "unique_countries_1h": uc1h,
        "unique_merchants_1h": len({e.merchant for e in win["1h"]}),
        "has_high_risk_mcc": int(any(e.mcc in HIGH_RISK_MCCS for e in win["5m"])),
        "seconds_since_last_txn": min(604800.0, (t - last) / 1000) if last is not None else 604800.0,
        "amount_mean_24h": sum(a24) / len(a24) if a24 else 0.0, "amount_std_24h": _pstd(a24),
        "velocity_score": 1 - math.exp(-len(win["5m"]) / 4),
        "geo_diversity_score": 1 - math.exp(-(uc1h - 1)) if uc1h > 1 else 0.0,
    }


def reference_request(features: dict[str, float], amount: float, t: int) -> dict[str, float]:
    when = datetime.fromtimestamp(t / 1000, tz=UTC)
    std = features["amount_std_24h"]
    mean = features["amount_mean_24h"]
    # a deviation of at most 1e-9 of the mean is float noise of equal amounts: no z-score
    return {**features, "amount_zscore_24h": (amount - mean) / std if std > 1e-9 * max(1.0, abs(mean)) else 0.0,
            "hour_of_day": when.hour, "is_weekend": int(when.weekday() >= 5)}


def mismatches(got: dict[str, float], want: dict[str, float], rel: float = 1e-9) -> list[str]:
    """Names whose values differ (ints exactly, floats to a relative 1e-9)."""
    bad = []
    for name, w in want.items():
        g = got.get(name)
        if g is None or not math.isclose(float(g), float(w), rel_tol=rel, abs_tol=1e-9):
            bad.append(f"{name}: got {g}, want {w}")
    return bad


class Click(NamedTuple):
    ts: int
    key: int
    action: str
    dwell: int
    session: str


def reference_user_features(clicks: list[Click], t: int, bound: tuple[int, int] | None = None,
                            inclusive: bool = False) -> dict[str, float]:
    seen = _seen(clicks, t, bound, inclusive)
    h1 = [c for c in seen if t - 3_600_000 < c.ts <= t]
    d1 = [c for c in seen if t - 86_400_000 < c.ts <= t]
    views = sum(c.action == "view" for c in d1)
    sessions = len({c.session for c in d1})
    last = max((c.ts for c in seen), default=None)
    return {
        "click_count_1h": len(h1), "click_count_24h": len(d1),
        "view_count_1h": sum(c.action == "view" for c in h1),
        "add_to_cart_count_1h": sum(c.action == "add_to_cart" for c in h1),
        "purchase_count_24h": sum(c.action == "purchase" for c in d1),
        "sessions_24h": sessions,
        "dwell_avg_ms_1h": sum(c.dwell for c in h1) / len(h1) if h1 else 0.0,
        "add_to_cart_rate_24h": sum(c.action == "add_to_cart" for c in d1) / views if views else 0.0,
        "purchase_rate_24h": sum(c.action == "purchase" for c in d1) / sessions if sessions else 0.0,
        "seconds_since_last_click": min(604800.0, (t - last) / 1000) if last is not None else 604800.0,
    }
