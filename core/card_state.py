"""Per-card window state: the card's accepted events of the last 24 h (plus lateness),
sorted by (event_time, event-id hash), kept compactly.

Why raw events and not tiles: a card makes a handful of transactions a day (a burst makes
tens), so keeping each event is small and lets every window be evaluated *exactly* at any
read time, online and offline alike, with no tile-boundary error. The state is bounded by
``max_events`` (oldest dropped first, counted in ``dropped``).
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from dataclasses import dataclass, field
from hashlib import blake2b

import msgspec

MINUTE_MS = 60_000
HOUR_MS = 60 * MINUTE_MS
DAY_MS = 24 * HOUR_MS


def event_key(event_id: str) -> int:
    """A stable 63-bit key of an event id, for dedupe and tie order (collision odds for the
    events of one card within a day: negligible)."""
    return int.from_bytes(blake2b(event_id.encode(), digest_size=8).digest()) >> 1


@dataclass(slots=True)
class CardState:
    ts: list[int] = field(default_factory=list)
    key: list[int] = field(default_factory=list)
    amount: list[float] = field(default_factory=list)
    country: list[str] = field(default_factory=list)
    merchant: list[str] = field(default_factory=list)
    risky: list[bool] = field(default_factory=list)
    #: largest event time ever accepted (survives trimming); 0 when none
    last_ts: int = 0
    #: largest event time among trimmed events (for seconds_since_last_txn); 0 when none
    trimmed_last_ts: int = 0
    dropped: int = 0

    def __len__(self) -> int:
        return len(self.ts)

    def prefix_len(self, ts: int, key: int, inclusive: bool) -> int:
        """How many events sort before (ts, key), or up to and including it."""
        lo, hi = bisect_left(self.ts, ts), bisect_right(self.ts, ts)
        keys = self.key[lo:hi]
        return lo + (bisect_right(keys, key) if inclusive else bisect_left(keys, key))

    def contains(self, ts: int, key: int) -> bool:
        lo, hi = bisect_left(self.ts, ts), bisect_right(self.ts, ts)
        return key in self.key[lo:hi]

    def insert(self, ts: int, key: int, amount: float, country: str, merchant: str,
               risky: bool) -> int:
        """Insert in sorted position; return that position."""
        i = self.prefix_len(ts, key, inclusive=False)
        self.ts.insert(i, ts)
        self.key.insert(i, key)
        self.amount.insert(i, amount)
        self.country.insert(i, country)
        self.merchant.insert(i, merchant)
        self.risky.insert(i, risky)
        self.last_ts = max(self.last_ts, ts)
        return i

    def trim(self, horizon_ts: int, max_events: int) -> None:
        """Drop events at or before ``horizon_ts`` and beyond ``max_events`` (oldest first)."""
        n = max(bisect_right(self.ts, horizon_ts), len(self.ts) - max_events)
        if n <= 0:
            return
        if len(self.ts) - bisect_right(self.ts, horizon_ts) > max_events:
            self.dropped += len(self.ts) - max_events - bisect_right(self.ts, horizon_ts)
        self.trimmed_last_ts = max(self.trimmed_last_ts, self.ts[n - 1])
        for col in (self.ts, self.key, self.amount, self.country, self.merchant, self.risky):
            del col[:n]

    # -- compact wire form (Faust changelog and the Feast online store) ----------------
    def pack(self) -> bytes:
        return _ENC.encode((self.ts, self.key, self.amount, self.country, self.merchant,
                            self.risky, self.last_ts, self.trimmed_last_ts, self.dropped))

    @classmethod
    def unpack(cls, raw: bytes | None) -> CardState:
        if not raw:
            return cls()
        ts, key, amount, country, merchant, risky, last, trimmed, dropped = _DEC.decode(raw)
        return cls(ts, key, amount, country, merchant, risky, last, trimmed, dropped)


_ENC = msgspec.msgpack.Encoder()
_DEC = msgspec.msgpack.Decoder()
