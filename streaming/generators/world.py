"""The synthetic world: users with home countries, cards (some users hold several),
merchants with MCCs and locations, devices and IPs. Deterministic under a seed.

No single field gives fraud away: every country, MCC, IP range and channel that fraud uses
is also used by legitimate traffic.
"""

from __future__ import annotations

import itertools
import math
import random
from dataclasses import dataclass

from core.contracts import HIGH_RISK_MCCS

# country -> (lat, lon, currency)
COUNTRIES: dict[str, tuple[float, float, str]] = {
    "DE": (51.2, 10.4, "EUR"), "FR": (46.6, 2.2, "EUR"), "ES": (40.4, -3.7, "EUR"),
    "IT": (42.8, 12.5, "EUR"), "NL": (52.1, 5.3, "EUR"), "GB": (54.0, -2.0, "GBP"),
    "US": (39.8, -98.6, "USD"), "CA": (56.1, -106.3, "CAD"), "CH": (46.8, 8.2, "CHF"),
    "SE": (60.1, 18.6, "SEK"), "PL": (51.9, 19.1, "PLN"), "BR": (-14.2, -51.9, "BRL"),
    "JP": (36.2, 138.3, "JPY"), "AU": (-25.3, 133.8, "AUD"),
}
HOME_WEIGHTS = {"DE": 20, "FR": 15, "GB": 14, "US": 18, "ES": 8, "IT": 8, "NL": 5, "PL": 4,
                "CH": 2, "SE": 2, "CA": 2, "BR": 1, "JP": 0.5, "AU": 0.5}
# mcc -> (weight in legit traffic, log-normal mu, sigma of the amount)
MCCS: dict[str, tuple[float, float, float]] = {
    "5411": (30, 3.4, 0.7),   # grocery
    "5812": (15, 3.2, 0.6),   # restaurants
    "5541": (10, 3.7, 0.4),   # fuel
    "5999": (10, 3.6, 0.9),   # misc retail
    "5815": (6, 2.3, 0.8),    # digital goods
    "5816": (3, 2.6, 0.9),    # games
    "4111": (6, 2.5, 0.6),    # transport
    "7011": (2, 5.0, 0.7),    # hotels
    "5732": (3, 5.2, 0.9),    # electronics (high risk)
    "5944": (1, 5.6, 1.0),    # jewellery (high risk)
    "7995": (2, 3.8, 1.1),    # gambling (high risk)
    "4829": (1, 4.8, 1.0),    # wire transfer (high risk)
    "6051": (1, 4.9, 1.1),    # quasi-cash / crypto (high risk)
}
assert {m for m in MCCS if m in HIGH_RISK_MCCS} <= HIGH_RISK_MCCS


@dataclass(frozen=True)
class Card:
    card_id: str
    user_id: str
    home: str
    devices: tuple[str, ...]
    ip_prefix: str
    activity: float  # relative spend frequency


@dataclass(frozen=True)
class Merchant:
    merchant_id: str
    mcc: str
    country: str
    online: bool


class World:
    def __init__(self, seed: int, users: int = 2_000, merchants: int = 500,
                 dormant_share: float = 0.05) -> None:
        rng = random.Random(seed)
        self.rng = rng
        homes, weights = zip(*HOME_WEIGHTS.items(), strict=True)
        cards: list[Card] = []
        for u in range(users):
            home = rng.choices(homes, weights)[0]
            devices = tuple(f"dev-{rng.getrandbits(40):010x}" for _ in range(rng.choice([1, 1, 2, 3])))
            ip_prefix = f"{rng.randint(11, 223)}.{rng.randint(0, 255)}.{rng.randint(0, 255)}"
            for _ in range(rng.choices([1, 2, 3], [75, 20, 5])[0]):
                cards.append(Card(f"card-{rng.getrandbits(48):012x}", f"user-{u:06d}", home, devices,
                                  ip_prefix, rng.lognormvariate(0, 0.8)))
        n_dormant = max(1, int(len(cards) * dormant_share))
        self.dormant = cards[:n_dormant]        # never used by legit traffic
        self.cards = cards[n_dormant:]
        # cumulative, so that a weighted draw is a bisect, not a pass over every card
        self.card_cum_weights = list(itertools.accumulate(c.activity for c in self.cards))
        mccs, mcc_w = zip(*((m, v[0]) for m, v in MCCS.items()), strict=True)
        self.merchants = [Merchant(f"merch-{i:05d}", rng.choices(mccs, mcc_w)[0],
                                   rng.choices(homes, weights)[0], rng.random() < 0.35)
                          for i in range(merchants)]
        self.by_country: dict[str, list[Merchant]] = {}
        self.by_mcc: dict[str, list[Merchant]] = {}
        for m in self.merchants:
            self.by_country.setdefault(m.country, []).append(m)
            self.by_mcc.setdefault(m.mcc, []).append(m)
        for c in COUNTRIES:  # every country and MCC has at least one merchant
            self.by_country.setdefault(c, [self.merchants[0]])
        for mcc in MCCS:
            self.by_mcc.setdefault(mcc, [self.merchants[0]])

    def amount(self, mcc: str, scale: float = 1.0) -> float:
        _, mu, sigma = MCCS[mcc]
        return round(min(50_000.0, max(0.5, self.rng.lognormvariate(mu, sigma) * scale)), 2)

    def location(self, country: str) -> tuple[float, float]:
        lat, lon, _ = COUNTRIES[country]
        return (round(max(-90, min(90, lat + self.rng.gauss(0, 2))), 4),
                round(max(-180, min(180, lon + self.rng.gauss(0, 3))), 4))

    def ip(self, prefix: str | None = None) -> str:
        if prefix is None:
            prefix = f"{self.rng.randint(11, 223)}.{self.rng.randint(0, 255)}.{self.rng.randint(0, 255)}"
        return f"{prefix}.{self.rng.randint(1, 254)}"


def diurnal_weight(hour: int, weekend: bool) -> float:
    """Relative legit activity by UTC hour: low at night, peaks midday and evening."""
    base = 0.15 + 0.85 * math.exp(-((hour - 13) ** 2) / 18) + 0.4 * math.exp(-((hour - 19) ** 2) / 6)
    return base * (1.15 if weekend else 1.0)
