"""The feature definitions: one pure implementation used by the stream, the read function
(online serving), the batch backfill and training. See ARCHITECTURE.md "Features".

A sliding window of length W evaluated at time t covers events with t - W < event_time <= t
(and, for the "before e" view, only events sorting before e). Every window is evaluated at
read time, so a quiet card's counts decay to 0.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Collection
from typing import Any

import numpy as np

from core.card_state import DAY_MS, HOUR_MS, MINUTE_MS, CardState

#: a card never seen (or quiet longer than this) reports this many seconds since its last txn
SECONDS_SINCE_CAP = 7 * 24 * 3600.0

WINDOW_FEATURES: tuple[str, ...] = (
    "txn_count_1m", "txn_count_5m", "txn_count_1h", "txn_count_24h",
    "amount_sum_5m", "amount_sum_1h", "amount_avg_5m", "amount_max_5m", "amount_std_1h",
    "unique_countries_5m", "unique_countries_1h", "unique_merchants_1h",
    "has_high_risk_mcc", "seconds_since_last_txn", "amount_mean_24h", "amount_std_24h",
    "velocity_score", "geo_diversity_score",
)
#: features that combine the window state with a request (an amount at a time)
REQUEST_FEATURES: tuple[str, ...] = ("amount_zscore_24h", "hour_of_day", "is_weekend")


def velocity_score(txn_count_5m: float) -> float:
    """In [0, 1): 1 - exp(-n/4) of the 5-minute count; above 0.8 from 7 transactions on."""
    return 1.0 - math.exp(-txn_count_5m / 4.0)


def geo_diversity_score(unique_countries_1h: int) -> float:
    """In [0, 1): 0 for one country in the hour, 0.63 for two, 0.86 for three, ..."""
    return 1.0 - math.exp(-(unique_countries_1h - 1)) if unique_countries_1h > 1 else 0.0


#: ``velocity_score`` of 0..63 (the same values, looked up)
_VELOCITY = [velocity_score(n) for n in range(64)]


def zscore(x: float, mean: float, std: float) -> float:
    """(x - mean) / std, and 0 when the deviation is no more than float noise (at most 1e-9 of
    the mean's size): equal amounts give a deviation of 0 or of 1e-17 depending on the order
    of the sums, and dividing by that noise would turn a one-cent difference into a z-score
    of 1e14, on one path and not the other."""
    return (x - mean) / std if std > 1e-9 * max(1.0, abs(mean)) else 0.0


def _std(values: list[float]) -> float:
    n = len(values)
    if n < 2:
        return 0.0
    mean = math.fsum(values) / n
    return math.sqrt(math.fsum((v - mean) ** 2 for v in values) / n)


#: from this many events in the 24 h window on, its sums and deviations are taken with numpy
#: (one array, sliced for 1 h and 5 min): a busy card's row costs ~0.1 ms instead of ~0.6 ms.
#: Below it, exact Python sums (faster for the few events a card usually has). Both agree to
#: ~1e-15 relative; a given state and time always take the same path.
VECTOR_FROM = 64


def window_features(state: CardState, t_ms: int, upto: int | None = None) -> dict[str, float]:
    """Window features at time ``t_ms`` over the first ``upto`` events of the state
    (default: every event at or before ``t_ms``)."""
    return _window(state, t_ms, bisect_right(state.ts, t_ms) if upto is None else upto)[0]


def _window(state: CardState, t_ms: int, end: int,
            quiet_path: bool = True) -> tuple[dict[str, float], tuple[Collection, Collection, Collection]]:
    """``window_features`` over the first ``end`` events, and the countries (5 min, 1 h) and
    merchants (1 h) it counted (sets, or a ``WindowCache``'s counts: read them, do not change
    them)."""
    ts, amount = state.ts, state.amount

    def start(width_ms: int) -> int:
        return bisect_right(ts, t_ms - width_ms, 0, end)

    s24h = start(DAY_MS)
    # A card with no event in the 24 h before t (its first of the day: the usual case) has
    # every window empty: the values the general path gives then (``_QUIET``, built by it;
    # tests/unit/test_features.py compares the two), at a third of its cost.
    last = ts[end - 1] if end else (state.trimmed_last_ts if 0 < state.trimmed_last_ts <= t_ms else None)
    if s24h == end and quiet_path:
        quiet = dict(_QUIET)
        if last is not None:
            quiet["seconds_since_last_txn"] = min(SECONDS_SINCE_CAP, (t_ms - last) / 1000.0)
        return quiet, (set(), set(), set())
    s1m, s5m, s1h = start(MINUTE_MS), start(5 * MINUTE_MS), start(HOUR_MS)
    n5m, n1h, n24h = end - s5m, end - s1h, end - s24h
    cache = state.cache
    if n24h >= VECTOR_FROM:
        a24 = (np.fromiter(amount[s24h:end], np.float64, n24h) if cache is None
               else cache.amounts(amount, s24h, end))
        a1 = a24[s1h - s24h:]
        a5 = a24[s5m - s24h:]
        sum5m, sum1h = float(a5.sum()), float(a1.sum())
        max5m = float(a5.max()) if n5m else 0.0
        std1h = float(a1.std()) if n1h >= 2 else 0.0
        mean24h, std24h = float(a24.mean()), float(a24.std())
    else:
        a5m, a1h, a24h = amount[s5m:end], amount[s1h:end], amount[s24h:end]
        sum5m, sum1h = math.fsum(a5m), math.fsum(a1h)
        max5m = max(a5m) if a5m else 0.0
        std1h = _std(a1h)
        mean24h = math.fsum(a24h) / n24h if n24h else 0.0
        std24h = _std(a24h)
    # (``last``: a trimmed event newer than t, only in a too-late event's view, says nothing about t)
    if cache is not None and n1h >= VECTOR_FROM:  # (the sliding counts of a busy card's windows)
        c5m, risky5m = cache.last_5m.move(state, s5m, end)
        c1h, m1h = cache.last_1h.move(state, s1h, end)
        risky = int(risky5m > 0)
    else:
        c1h, m1h = set(state.country[s1h:end]), set(state.merchant[s1h:end])
        c5m = c1h if s5m == s1h else set(state.country[s5m:end])  # (a burst: the same events)
        risky = int(any(state.risky[s5m:end]))
    uc1h = len(c1h)
    return {
        "txn_count_1m": end - s1m,
        "txn_count_5m": n5m,
        "txn_count_1h": n1h,
        "txn_count_24h": n24h,
        "amount_sum_5m": sum5m,
        "amount_sum_1h": sum1h,
        "amount_avg_5m": sum5m / n5m if n5m else 0.0,
        "amount_max_5m": max5m,
        "amount_std_1h": std1h,
        "unique_countries_5m": len(c5m),
        "unique_countries_1h": uc1h,
        "unique_merchants_1h": len(m1h),
        "has_high_risk_mcc": risky,
        "seconds_since_last_txn": (min(SECONDS_SINCE_CAP, (t_ms - last) / 1000.0)
                                   if last is not None else SECONDS_SINCE_CAP),
        "amount_mean_24h": mean24h,
        "amount_std_24h": std24h,
        "velocity_score": _VELOCITY[n5m] if n5m < 64 else velocity_score(n5m),
        "geo_diversity_score": geo_diversity_score(uc1h),
    }, (c5m, c1h, m1h)


#: the window features of a card never seen: every window empty (``_window``'s quiet path)
_QUIET = _window(CardState(), DAY_MS, 0, quiet_path=False)[0]


def with_request(features: dict[str, float], amount: float, t_ms: int) -> dict[str, float]:
    """Add the request features: the amount's z-score against the 24 h window in
    ``features`` and the UTC hour and weekend flag of ``t_ms``."""
    std = features["amount_std_24h"]
    hour, weekend = calendar(t_ms)
    return {
        **features,
        "amount_zscore_24h": zscore(amount, features["amount_mean_24h"], std),
        "hour_of_day": hour,
        "is_weekend": weekend,
    }


def calendar(t_ms: int) -> tuple[int, int]:
    """The UTC hour of ``t_ms`` and whether it is a Saturday or Sunday (1/0): what
    ``datetime.fromtimestamp(t_ms / 1000, UTC)`` says (tested), in integer arithmetic
    (1970-01-01 was a Thursday, weekday 3)."""
    t = int(t_ms)
    return t // HOUR_MS % 24, int((t // DAY_MS + 3) % 7 >= 5)


def before_and_after(state: CardState, ts: int, key: int, amount: float) -> tuple[dict, dict]:
    """Features of a transaction already in the state: as of just before it (model inputs)
    and just after it (what rule labels describe), each with its request features."""
    before = state.prefix_len(ts, key, inclusive=False)
    return (with_request(window_features(state, ts, before), amount, ts),
            with_request(window_features(state, ts, before + 1), amount, ts))


def _welford(n: float, mean: float, m2: float, x: float) -> tuple[float, float]:
    """(mean, sum of squared deviations) after adding x to n values with (mean, m2)."""
    mean2 = mean + (x - mean) / (n + 1)
    return mean2, m2 + (x - mean) * (x - mean2)


#: the offline row's feature columns, in ``event_row_values`` order: as of just before the
#: event (model inputs), then just after it (``after_`` names)
ROW_FEATURES: tuple[str, ...] = (*WINDOW_FEATURES, *REQUEST_FEATURES,
                                 *(f"after_{f}" for f in (*WINDOW_FEATURES, *REQUEST_FEATURES)))
#: the row features that are integers (counts, distinct counts, flags, the hour); the rest are floats
ROW_INT_FEATURES: frozenset[str] = frozenset(
    f"{prefix}{f}" for prefix in ("", "after_") for f in (
        "txn_count_1m", "txn_count_5m", "txn_count_1h", "txn_count_24h", "unique_countries_5m",
        "unique_countries_1h", "unique_merchants_1h", "has_high_risk_mcc", "hour_of_day", "is_weekend"))


def event_row_features(state: CardState, i: int) -> dict[str, float]:
    """The offline row of the state's i-th event as a dict (``event_row_values``, named by
    ``ROW_FEATURES``)."""
    return dict(zip(ROW_FEATURES, event_row_values(state, i), strict=True))


def event_row_values(state: CardState, i: int) -> tuple[float, ...]:
    """The offline row of the state's i-th event (``ROW_FEATURES`` order): its features as of
    just before it (model inputs) and just after it (``after_`` names), each with its request
    features. The same values as ``before_and_after`` (to ~1e-15 relative) at about half its
    cost: the windows are located once, and the "after" view is the "before" view plus this
    one event (counts + 1, sums + amount, max, sets, deviations by Welford's update). A tuple,
    not a dict: the stream builds its offline rows column-wise from these."""
    t, x = state.ts[i], state.amount[i]
    b, (countries5m, countries1h, merchants1h) = _window(state, t, i)
    n1m, n5m, n1h, n24h = b["txn_count_1m"], b["txn_count_5m"], b["txn_count_1h"], b["txn_count_24h"]
    sum5m, sum1h = b["amount_sum_5m"] + x, b["amount_sum_1h"] + x
    _, m2_1h = _welford(n1h, b["amount_sum_1h"] / n1h if n1h else 0.0, b["amount_std_1h"] ** 2 * n1h, x)
    mean24h, m2_24h = _welford(n24h, b["amount_mean_24h"], b["amount_std_24h"] ** 2 * n24h, x)
    country, merchant = state.country[i], state.merchant[i]
    after_c1h = len(countries1h) + (country not in countries1h)
    hour, weekend = calendar(t)
    std24h = math.sqrt(m2_24h / (n24h + 1)) if n24h else 0.0
    return (
        *b.values(),  # (``_window`` builds it in WINDOW_FEATURES order)
        zscore(x, b["amount_mean_24h"], b["amount_std_24h"]),
        hour,
        weekend,
        n1m + 1,
        n5m + 1,
        n1h + 1,
        n24h + 1,
        sum5m,
        sum1h,
        sum5m / (n5m + 1),
        max(b["amount_max_5m"], x) if n5m else x,
        math.sqrt(m2_1h / (n1h + 1)) if n1h else 0.0,
        len(countries5m) + (country not in countries5m),
        after_c1h,
        len(merchants1h) + (merchant not in merchants1h),
        int(bool(b["has_high_risk_mcc"]) or bool(state.risky[i])),
        0.0,
        mean24h,
        std24h,
        _VELOCITY[int(n5m) + 1] if n5m < 63 else velocity_score(n5m + 1),
        geo_diversity_score(after_c1h),
        zscore(x, mean24h, std24h),
        hour,
        weekend,
    )


class _Slide:
    """Counts of what one window holds, moved along a state's events (indices into its
    columns): countries and risky events (5 min), or countries and merchants (1 h)."""

    __slots__ = ("start", "end", "first", "second", "merchants")

    def __init__(self, merchants: bool) -> None:
        self.start = self.end = 0
        self.first: dict[str, int] = {}  # country -> events
        self.second: Any = {} if merchants else 0  # merchant -> events, or risky events
        self.merchants = merchants

    def move(self, state: CardState, start: int, end: int) -> tuple[Any, Any]:
        """The counts of events [start, end): moved from the last window when both its ends
        went forward (the usual case: a few events in, a few out), counted afresh if not."""
        if start < self.start or end < self.end or start >= self.end:
            self.start = self.end = start
            self.first, self.second = {}, ({} if self.merchants else 0)
        self._add(state, self.end, end, 1)
        self._add(state, self.start, start, -1)
        self.start, self.end = start, end
        return self.first, self.second

    def _add(self, state: CardState, lo: int, hi: int, sign: int) -> None:
        if lo >= hi:
            return
        first, countries = self.first, state.country
        for c in countries[lo:hi]:
            n = first.get(c, 0) + sign
            if n:
                first[c] = n
            else:
                del first[c]
        if not self.merchants:
            self.second += sign * sum(state.risky[lo:hi])
            return
        second = self.second
        for m in state.merchant[lo:hi]:
            n = second.get(m, 0) + sign
            if n:
                second[m] = n
            else:
                del second[m]

    def trim(self, state: CardState, n: int) -> None:
        """The state's first ``n`` events are about to go."""
        if self.start < n:
            self._add(state, self.start, min(n, self.end), -1)
        self.start, self.end = max(0, self.start - n), max(0, self.end - n)


class WindowCache:
    """A busy card's window aggregates kept from one event to the next (``EventState.cache``),
    so that its per-event cost does not grow with its history: the amounts as one numpy
    array (appended to, never rebuilt: the 24 h sums slice it) and the distinct countries,
    merchants and risky events of the 5 min and 1 h windows as counts moved along (a few
    events in and out per event). The same values as without it (the same numbers summed in
    the same order; counts are exact: tests/unit/test_features.py compares the two paths).

    Only the stream's states have one (``streaming.processor.process`` enables it from
    ``VECTOR_FROM`` events on): a state read for serving is unpacked once and read once.
    An event inserted before the newest drops it (it starts again), a trim shifts it."""

    __slots__ = ("buf", "base", "filled", "last_5m", "last_1h")

    def __init__(self) -> None:
        self.buf = np.empty(256, np.float64)
        self.base = 0  # buf[base:base + filled] mirrors the state's first ``filled`` amounts
        self.filled = 0
        self.last_5m = _Slide(merchants=False)
        self.last_1h = _Slide(merchants=True)

    def amounts(self, amount: list[float], start: int, end: int) -> np.ndarray:
        if end > self.filled:
            need = self.base + end
            if need > len(self.buf):
                grown = np.empty(max(2 * end, 256), np.float64)
                grown[:self.filled] = self.buf[self.base:self.base + self.filled]
                self.buf, self.base = grown, 0
            self.buf[self.base + self.filled:self.base + end] = amount[self.filled:end]
            self.filled = end
        return self.buf[self.base + start:self.base + end]

    def trim(self, state: CardState, n: int) -> None:
        """The state's first ``n`` events are about to go (``EventState.trim``)."""
        if n >= self.filled:
            self.base = self.filled = 0
        else:
            self.base, self.filled = self.base + n, self.filled - n
        self.last_5m.trim(state, n)
        self.last_1h.trim(state, n)
