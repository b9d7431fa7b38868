"""Fraud scenarios: each a named pattern over several transactions of one card.

``slow_drain`` is the pattern the rule labels do not describe (low velocity, one country per
five minutes, ordinary merchants): only behaviour over longer windows and ground truth
reveal it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from core.card_state import HOUR_MS, MINUTE_MS
from core.contracts import Channel
from streaming.generators.world import COUNTRIES, Card, World


@dataclass(frozen=True)
class Planned:
    """One transaction of a scenario, relative to the scenario's start."""

    offset_ms: int
    merchant_id: str
    mcc: str
    country: str
    amount: float
    device_id: str
    ip: str
    channel: Channel


Plan = Callable[[World, Card], list[Planned]]


def _foreign(world: World, home: str) -> str:
    return world.rng.choice([c for c in COUNTRIES if c != home])


def card_testing(world: World, card: Card) -> list[Planned]:
    rng, n = world.rng, world.rng.randint(8, 20)
    span = rng.randint(2, 4) * MINUTE_MS
    device, prefix = f"dev-{rng.getrandbits(40):010x}", None
    out = []
    for i in range(n):
        m = rng.choice(world.by_mcc[rng.choice(["5815", "5816", "5999"])])
        out.append(Planned(i * span // n, m.merchant_id, m.mcc, m.country, round(rng.uniform(0.5, 5), 2),
                           device, world.ip(prefix), "online"))
    return out


def account_takeover(world: World, card: Card) -> list[Planned]:
    rng = world.rng
    device = f"dev-{rng.getrandbits(40):010x}"
    countries = [_foreign(world, card.home) for _ in range(rng.randint(2, 3))]
    out, t = [], 0
    for i in range(rng.randint(3, 6)):
        country = countries[i % len(countries)]
        m = rng.choice(world.by_country[country])
        out.append(Planned(t, m.merchant_id, m.mcc, country, world.amount(m.mcc, 2.5), device,
                           world.ip(), "online"))
        t += rng.randint(30_000, 100_000)
    return out


def high_risk_merchant(world: World, card: Card) -> list[Planned]:
    rng = world.rng
    out = []
    for i in range(rng.randint(2, 4)):
        m = rng.choice(world.by_mcc[rng.choice(["7995", "4829", "6051", "5944"])])
        out.append(Planned(i * rng.randint(20_000, 80_000), m.merchant_id, m.mcc, m.country,
                           round(rng.uniform(450, 2_500), 2), rng.choice(card.devices),
                           world.ip(card.ip_prefix), "online"))
    return out


def night_spend(world: World, card: Card) -> list[Planned]:
    rng = world.rng
    out = []
    for i in range(rng.randint(2, 4)):
        m = rng.choice(world.merchants)
        out.append(Planned(i * rng.randint(60_000, 600_000), m.merchant_id, m.mcc, m.country,
                           world.amount(m.mcc, 3.0), f"dev-{rng.getrandbits(40):010x}", world.ip(), "online"))
    return out


def dormant_large(world: World, card: Card) -> list[Planned]:
    rng = world.rng
    m = rng.choice(world.by_mcc[rng.choice(["5732", "5944"])])
    return [Planned(0, m.merchant_id, m.mcc, m.country, round(rng.uniform(1_200, 6_000), 2),
                    f"dev-{rng.getrandbits(40):010x}", world.ip(), rng.choice(["pos", "online"]))]


def slow_drain(world: World, card: Card) -> list[Planned]:
    rng = world.rng
    country = _foreign(world, card.home)
    device = f"dev-{rng.getrandbits(40):010x}"
    out, t = [], 0
    for _ in range(rng.randint(4, 8)):
        m = rng.choice(world.by_country[country])
        out.append(Planned(t, m.merchant_id, m.mcc, country, round(rng.uniform(80, 320), 2), device,
                           world.ip(), "online"))
        t += rng.randint(15, 45) * MINUTE_MS
    return out


SCENARIOS: dict[str, Plan] = {
    "card_testing": card_testing,
    "account_takeover": account_takeover,
    "high_risk_merchant": high_risk_merchant,
    "night_spend": night_spend,
    "dormant_large": dormant_large,
    "slow_drain": slow_drain,
}
#: relative frequency of each scenario among injected fraud
SCENARIO_WEIGHTS = {"card_testing": 3, "account_takeover": 3, "high_risk_merchant": 2,
                    "night_spend": 1, "dormant_large": 1, "slow_drain": 2}
MAX_SCENARIO_SPAN_MS = 8 * HOUR_MS
