"""Per-card window state: the card's accepted events of the last 24 h (plus lateness),
sorted by (event_time, event-id hash), kept compactly.

Why raw events and not tiles: a card makes a handful of transactions a day (a burst makes
tens), so keeping each event is small and lets every window be evaluated *exactly* at any
read time, online and offline alike, with no tile-boundary error. The state is bounded by
``max_events`` (oldest dropped first, counted in ``dropped``).
"""

from __future__ import annotations

import copy
from bisect import bisect_left, bisect_right
from hashlib import blake2b
from typing import Any, Self

import msgspec

MINUTE_MS = 60_000
HOUR_MS = 60 * MINUTE_MS
DAY_MS = 24 * HOUR_MS


def event_key(event_id: str) -> int:
    """A stable 63-bit key of an event id, for dedupe and tie order (collision odds for the
    events of one card within a day: negligible)."""
    return int.from_bytes(blake2b(event_id.encode(), digest_size=8).digest()) >> 1


class EventState:
    """Events of one entity sorted by (event_time, event-id key), with payload columns named
    in ``PAYLOAD`` (one list each). Subclasses only name their columns."""

    PAYLOAD: tuple[str, ...] = ()
    __slots__ = ("ts", "key", "last_ts", "trimmed_last_ts", "dropped", "cache")

    def __init__(self) -> None:
        self.ts: list[int] = []
        self.key: list[int] = []
        for name in self.PAYLOAD:
            setattr(self, name, [])
        #: largest event time ever accepted (survives trimming); 0 when none
        self.last_ts = 0
        #: largest event time among trimmed events (for "seconds since last"); 0 when none
        self.trimmed_last_ts = 0
        self.dropped = 0
        #: sliding aggregates of a busy entity's windows kept between events (never packed; see
        #: ``core.features.WindowCache``): None until the stream enables it, dropped by an
        #: insert before its newest event (out of order), shifted by a trim
        self.cache: Any = None

    def _columns(self) -> list[list]:
        return [self.ts, self.key, *[getattr(self, n) for n in self.PAYLOAD]]

    def __len__(self) -> int:
        return len(self.ts)

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and self.pack() == other.pack()  # type: ignore[attr-defined]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({len(self)} events, last_ts={self.last_ts})"

    def prefix_len(self, ts: int, key: int, inclusive: bool) -> int:
        """How many events sort before (ts, key), or up to and including it."""
        lo, hi = bisect_left(self.ts, ts), bisect_right(self.ts, ts)
        keys = self.key[lo:hi]
        return lo + (bisect_right(keys, key) if inclusive else bisect_left(keys, key))

    def contains(self, ts: int, key: int) -> bool:
        lo, hi = bisect_left(self.ts, ts), bisect_right(self.ts, ts)
        return key in self.key[lo:hi]

    def insert(self, ts: int, key: int, *payload: object) -> int:
        """Insert in sorted position (payload in ``PAYLOAD`` order); return that position."""
        i = self.prefix_len(ts, key, inclusive=False)
        for col, value in zip(self._columns(), (ts, key, *payload), strict=True):
            col.insert(i, value)
        self.last_ts = max(self.last_ts, ts)
        if self.cache is not None and i < len(self.ts) - 1:
            self.cache = None  # (an event before others: the sliding windows start again)
        return i

    def with_event(self, ts: int, key: int, *payload: object) -> tuple[Self, int]:
        """A copy holding one more event (this state is untouched), and that event's position."""
        view = copy.copy(self)
        view.cache = None
        for name in ("ts", "key", *self.PAYLOAD):
            setattr(view, name, list(getattr(self, name)))
        return view, view.insert(ts, key, *payload)

    def without(self, ts: int, key: int) -> Self:
        """A copy without the event (ts, key) (this state is untouched; ``last_ts`` kept)."""
        view = copy.copy(self)
        view.cache = None
        i = self.prefix_len(ts, key, inclusive=False)
        for name in ("ts", "key", *self.PAYLOAD):
            col = getattr(self, name)
            setattr(view, name, col[:i] + col[i + 1:])
        return view

    def trim(self, horizon_ts: int, max_events: int) -> None:
        """Drop events at or before ``horizon_ts`` and beyond ``max_events`` (oldest first)."""
        expired = bisect_right(self.ts, horizon_ts)
        n = max(expired, len(self.ts) - max_events)
        if n <= 0:
            return
        self.dropped += max(0, len(self.ts) - expired - max_events)
        self.trimmed_last_ts = max(self.trimmed_last_ts, self.ts[n - 1])
        if self.cache is not None:
            self.cache.trim(self, n)  # (before the events go: it forgets what it counted of them)
        for col in self._columns():
            del col[:n]

    # -- compact wire form (Faust changelog and the Feast online store) ----------------
    #: the packed format: 2 = (2, ts, key, *payload, last_ts, trimmed_last_ts, dropped);
    #: format 1 (the first, unversioned) is the same tuple without the leading version. Both
    #: are read (golden format-1 states in tests/fixtures/golden); only the newest is written.
    FORMAT = 2

    def pack(self) -> bytes:
        return _ENC.encode((self.FORMAT, *self._columns(), self.last_ts, self.trimmed_last_ts, self.dropped))

    @classmethod
    def unpack(cls, raw: bytes | None) -> Self:
        state = cls()
        if raw:
            parts = _DEC.decode(raw)
            if isinstance(parts[0], int):  # versioned (format 2 on)
                if parts[0] > cls.FORMAT:
                    raise ValueError(f"state format {parts[0]} is newer than this code reads ({cls.FORMAT}): "
                                     "upgrade the worker and the API before writing with a newer one")
                parts = parts[1:]
            # format 1: the same fields with no version (its first element is the ts list)
            *cols, state.last_ts, state.trimmed_last_ts, state.dropped = parts
            state.ts, state.key = cols[0], cols[1]
            for name, col in zip(cls.PAYLOAD, cols[2:], strict=True):
                setattr(state, name, col)
        return state


class CardState(EventState):
    """A card's transactions: amount, country, merchant and high-risk-MCC flag."""

    PAYLOAD = ("amount", "country", "merchant", "risky")
    __slots__ = PAYLOAD
    amount: list[float]
    country: list[str]
    merchant: list[str]
    risky: list[bool]

    def _columns(self) -> list[list]:  # (per event: the generic one costs a generator)
        return [self.ts, self.key, self.amount, self.country, self.merchant, self.risky]


_ENC = msgspec.msgpack.Encoder()
_DEC = msgspec.msgpack.Decoder()
