"""The transaction stream: legit traffic with diurnal and weekly cycles, injected fraud
scenarios, out-of-order and late delivery, malformed records on request, drift switches,
and delayed ground truth. A pure generator of what to produce, in produce order; the CLI
sends it to Kafka."""

from __future__ import annotations

import heapq
import itertools
import math
import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

from core.contracts import FRAUD_FEEDBACK, TRANSACTIONS, Channel, FraudFeedback, Transaction, encode
from streaming.generators.scenarios import SCENARIO_WEIGHTS, SCENARIOS, Planned
from streaming.generators.world import COUNTRIES, World, diurnal_weight

DRIFT_SCENARIOS = ("none", "amount_shift", "travel_surge", "fraud_surge")


@dataclass(frozen=True)
class GenConfig:
    seed: int = 42
    #: the world (cards, their homes, devices and spend, merchants); None: ``seed``. A live
    #: generator restarted with a fresh ``seed`` keeps its world, so the cards it continues
    #: are the cards the history (and the stream state) already knows
    world_seed: int | None = None
    users: int = 2_000
    merchants: int = 500
    #: mean event-time rate of legit transactions (events per second of event time)
    events_per_s: float = 50.0
    #: fraction of legit events that start a fraud scenario
    fraud_rate: float = 0.004
    #: fraction of events delivered late, by up to max_delay_ms of event time
    late_rate: float = 0.0
    max_delay_ms: int = 30_000
    #: fraction of records replaced by malformed ones
    bad_rate: float = 0.0
    feedback_delay_ms: int = 60_000
    drift_scenario: str = "none"
    start_ms: int | None = None


@dataclass(frozen=True)
class Record:
    topic: str
    key: bytes
    value: bytes
    event_time: int


BAD_RECORDS = (
    b"{not json",
    b'{"event_id": "x"}',
    b'{"event_id":"00000000-0000-4000-8000-000000000000","event_time":1790000000000,"card_id":"c",'
    b'"user_id":"u","merchant_id":"m","mcc":"5411","amount":-5,"currency":"EUR","country":"DE",'
    b'"lat":0,"lon":0,"device_id":"d","ip":"10.0.0.1","channel":"pos"}',
    b'{"event_id":"00000000-0000-4000-8000-000000000001","event_time":1790000000000,"card_id":"c",'
    b'"user_id":"u","merchant_id":"m","mcc":"5411","amount":5,"currency":"XXX","country":"DE",'
    b'"lat":0,"lon":0,"device_id":"d","ip":"10.0.0.1","channel":"pos"}',
)


class TransactionStream:
    def __init__(self, cfg: GenConfig) -> None:
        if cfg.drift_scenario not in DRIFT_SCENARIOS:
            raise ValueError(f"unknown drift scenario {cfg.drift_scenario!r}; one of {DRIFT_SCENARIOS}")
        self.cfg = cfg
        world_seed = cfg.seed if cfg.world_seed is None else cfg.world_seed
        self.world = World(world_seed, cfg.users, cfg.merchants)
        if world_seed != cfg.seed:  # the same world, other events (and event ids)
            self.world.rng = random.Random(cfg.seed)
        self.rng = self.world.rng
        self.clock = cfg.start_ms if cfg.start_ms is not None else int(datetime.now(UTC).timestamp() * 1000)
        self._seq = itertools.count()
        self._pending: list[tuple[int, int, Transaction, bool, str]] = []  # fraud events to come
        self._out: list[tuple[int, int, Record]] = []  # records waiting for their produce time
        self.stats = {"legit": 0, "fraud": 0, "late": 0, "bad": 0, "feedback": 0, "scenarios": 0}
        self.dormant_used: set[str] = set()

    def _uuid(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def _txn(self, t: int, card, merchant_id: str, mcc: str, country: str, amount: float,
             device: str, ip: str, channel: Channel) -> Transaction:
        lat, lon = self.world.location(country)
        return Transaction(event_id=self._uuid(), event_time=t, card_id=card.card_id, user_id=card.user_id,
                           merchant_id=merchant_id, mcc=mcc, amount=amount, currency=COUNTRIES[country][2],
                           country=country, lat=lat, lon=lon, device_id=device, ip=ip, channel=channel)

    def _legit(self, t: int) -> Transaction:
        w, rng, drift = self.world, self.rng, self.cfg.drift_scenario
        card = rng.choices(w.cards, cum_weights=w.card_cum_weights)[0]
        travel = 0.25 if drift == "travel_surge" else 0.03
        country = card.home if rng.random() > travel else rng.choice(list(COUNTRIES))
        m = rng.choice(w.by_country[country])
        scale = 1.8 if drift == "amount_shift" else 1.0
        offline: list[Channel] = ["pos", "pos", "pos", "atm"]
        channel: Channel = "online" if m.online else rng.choice(offline)
        return self._txn(t, card, m.merchant_id, m.mcc, country, w.amount(m.mcc, scale),
                         rng.choice(card.devices), w.ip(card.ip_prefix), channel)

    def _start_scenario(self, t: int) -> None:
        names, weights = zip(*SCENARIO_WEIGHTS.items(), strict=True)
        name = self.rng.choices(names, weights)[0]
        when = datetime.fromtimestamp(t / 1000, tz=UTC)
        if name == "night_spend" and not (when.weekday() >= 5 and when.hour < 6):
            name = "account_takeover"
        pool = [c for c in self.world.dormant if c.card_id not in self.dormant_used]
        if name == "dormant_large" and pool:
            card = self.rng.choice(pool)
            self.dormant_used.add(card.card_id)
        else:
            card = self.rng.choices(self.world.cards, cum_weights=self.world.card_cum_weights)[0]
        plan: list[Planned] = SCENARIOS[name](self.world, card)
        self.stats["scenarios"] += 1
        for p in plan:
            txn = self._txn(t + p.offset_ms, card, p.merchant_id, p.mcc, p.country, p.amount, p.device_id,
                            p.ip, p.channel)
            heapq.heappush(self._pending, (txn.event_time, next(self._seq), txn, True, name))

    def _emit(self, txn: Transaction, is_fraud: bool, scenario: str) -> None:
        self.stats["fraud" if is_fraud else "legit"] += 1
        produce_at = txn.event_time
        if self.cfg.late_rate and self.rng.random() < self.cfg.late_rate:
            produce_at += self.rng.randint(1, self.cfg.max_delay_ms)
            self.stats["late"] += 1
        key = txn.card_id.encode()
        heapq.heappush(self._out, (produce_at, next(self._seq), Record(TRANSACTIONS, key, encode(txn),
                                                                       txn.event_time)))
        fb = FraudFeedback(event_id=txn.event_id, card_id=txn.card_id, event_time=txn.event_time,
                           is_fraud=is_fraud, scenario=scenario)
        heapq.heappush(self._out, (txn.event_time + self.cfg.feedback_delay_ms, next(self._seq),
                                   Record(FRAUD_FEEDBACK, key, encode(fb), txn.event_time)))

    def _gap_ms(self, t: int) -> int:
        when = datetime.fromtimestamp(t / 1000, tz=UTC)
        rate = self.cfg.events_per_s * diurnal_weight(when.hour, when.weekday() >= 5)
        return max(1, int(-math.log(1.0 - self.rng.random()) * 1000.0 / rate))

    def __iter__(self) -> Iterator[Record]:
        fraud_rate = self.cfg.fraud_rate * (4 if self.cfg.drift_scenario == "fraud_surge" else 1)
        while True:
            self.clock += self._gap_ms(self.clock)
            while self._pending and self._pending[0][0] <= self.clock:
                _, _, txn, fraud, name = heapq.heappop(self._pending)
                self._emit(txn, fraud, name)
            self._emit(self._legit(self.clock), False, "legit")
            if self.rng.random() < fraud_rate:
                self._start_scenario(self.clock)
            if self.cfg.bad_rate and self.rng.random() < self.cfg.bad_rate:
                self.stats["bad"] += 1
                yield Record(TRANSACTIONS, b"bad", self.rng.choice(BAD_RECORDS), self.clock)
            while self._out and self._out[0][0] <= self.clock:
                rec = heapq.heappop(self._out)[2]
                self.stats["feedback"] += rec.topic == FRAUD_FEEDBACK
                yield rec

    def drain(self) -> Iterator[Record]:
        """Everything still scheduled (fraud to come, late records, feedback), in order."""
        while self._pending:
            _, _, txn, fraud, name = heapq.heappop(self._pending)
            self._emit(txn, fraud, name)
        while self._out:
            rec = heapq.heappop(self._out)[2]
            self.stats["feedback"] += rec.topic == FRAUD_FEEDBACK
            yield rec

