"""The click stream: sessions of a user walking a funnel (view -> add_to_cart -> purchase),
with dwell times, devices and a daily cycle. Deterministic under a seed; keyed by user_id."""

from __future__ import annotations

import heapq
import itertools
import math
import random
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

from core.contracts import CLICKS, Action, Click, Device, encode
from streaming.generators.transactions import Record
from streaming.generators.world import HOME_WEIGHTS, diurnal_weight

PAGES = ("home", "search", "category", "product", "product", "product", "reviews", "cart", "deals")


class ClickStream:
    def __init__(self, seed: int = 42, users: int = 2_000, sessions_per_s: float = 5.0,
                 start_ms: int | None = None, cart_rate: float = 0.25, purchase_rate: float = 0.35,
                 world_seed: int | None = None) -> None:
        """``world_seed`` (None: ``seed``) draws the users (home, device, propensity); ``seed``
        the sessions, so a restarted live generator keeps its users."""
        self.rng = random.Random(seed if world_seed is None else world_seed)
        homes, weights = zip(*HOME_WEIGHTS.items(), strict=True)
        devices: list[Device] = ["mobile", "mobile", "desktop", "tablet"]
        self.users = [(f"user-{u:06d}", self.rng.choices(homes, weights)[0],
                       self.rng.choice(devices),
                       self.rng.betavariate(2, 5)) for u in range(users)]  # propensity per user
        if world_seed is not None and world_seed != seed:
            self.rng = random.Random(seed)
        self.sessions_per_s = sessions_per_s
        self.cart_rate, self.purchase_rate = cart_rate, purchase_rate
        self.clock = start_ms if start_ms is not None else int(datetime.now(UTC).timestamp() * 1000)
        self._out: list[tuple[int, int, Record]] = []
        self._seq = itertools.count()
        self.stats = {"sessions": 0, "clicks": 0, "purchases": 0}

    def _session(self, t: int) -> None:
        user_id, country, device, propensity = self.rng.choice(self.users)
        session_id = f"s-{self.rng.getrandbits(48):012x}"
        self.stats["sessions"] += 1
        for _ in range(self.rng.randint(1, 12)):
            dwell = int(self.rng.lognormvariate(9.5, 0.8))  # ~13 s median
            self._click(t, user_id, session_id, self.rng.choice(PAGES), "view", dwell, device, country)
            t += dwell
            if self.rng.random() < self.cart_rate * (0.5 + propensity):
                self._click(t, user_id, session_id, "product", "add_to_cart", 0, device, country)
                t += 2_000
                if self.rng.random() < self.purchase_rate * (0.5 + propensity):
                    self._click(t, user_id, session_id, "checkout", "purchase", 0, device, country)
                    self.stats["purchases"] += 1
                    return

    def _click(self, t: int, user_id: str, session_id: str, page: str, action: Action, dwell: int,
               device: Device, country: str) -> None:
        ev = Click(event_id=str(uuid.UUID(int=self.rng.getrandbits(128), version=4)), event_time=t,
                   user_id=user_id, session_id=session_id, page=page, action=action,
                   dwell_ms=min(dwell, 3_600_000), device=device, country=country)
        heapq.heappush(self._out, (t, next(self._seq), Record(CLICKS, user_id.encode(), encode(ev), t)))
        self.stats["clicks"] += 1

    def __iter__(self) -> Iterator[Record]:
        while True:
            when = datetime.fromtimestamp(self.clock / 1000, tz=UTC)
            rate = self.sessions_per_s * diurnal_weight(when.hour, when.weekday() >= 5)
            self.clock += max(1, int(-math.log(1.0 - self.rng.random()) * 1000.0 / rate))
            self._session(self.clock)
            while self._out and self._out[0][0] <= self.clock:
                yield heapq.heappop(self._out)[2]

    def drain(self) -> Iterator[Record]:
        while self._out:
            yield heapq.heappop(self._out)[2]
