"""``python -m streaming generate``: produce synthetic transactions (and their delayed
ground truth) to Kafka, deterministic under --seed."""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Producer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from core import kafka
from core.contracts import CLICKS, FRAUD_FEEDBACK, TRANSACTIONS
from core.durations import duration_ms
from core.settings import StackSettings
from streaming.generators.clicks import ClickStream
from streaming.generators.transactions import DRIFT_SCENARIOS, GenConfig, Record, TransactionStream
from streaming.generators.world import diurnal_weight


def _number(kind: type, low: float, high: float | None = None, low_open: bool = False) -> Any:
    """An argparse type: a number of ``kind`` in [low, high] (or (low, high] with low_open)."""
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a{'n integer' if kind is int else ' number'}") from None
        if value != value or (value <= low if low_open else value < low) or (high is not None and value > high):
            bounds = f"{'>' if low_open else '>='} {low:g}" + (f" and <= {high:g}" if high is not None else "")
            raise argparse.ArgumentTypeError(f"{text} must be {bounds}")
        return value
    return parse


POSITIVE, SHARE = _number(float, 0, low_open=True), _number(float, 0, 1)


def _history(text: str) -> int:
    """A positive duration (2d, 36h, 90m) in ms."""
    try:
        ms = duration_ms(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if ms <= 0:
        raise argparse.ArgumentTypeError(f"{text} must be a positive duration (e.g. 2d, 36h, 90m)")
    return ms


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seed", type=int, default=None,
                   help="same seed, same events (default 42; a live generator picks a fresh one so that "
                        "a restart does not repeat event ids)")
    p.add_argument("--rate", type=POSITIVE, default=None,
                   help="live mode: about this many transactions per second (modulated by the daily "
                        "cycle), event time = now (default: as fast as possible, event time simulated "
                        "from --start at --sim-rate; simulated time never passes the wall clock: once it "
                        "catches up, the generator waits for it, as in live mode)")
    p.add_argument("--world-seed", type=int, default=42,
                   help="the simulated world: cards, users, their homes, devices and spend, merchants (default "
                        "42). --seed draws the events, so a restarted live generator (fresh --seed) continues "
                        "the same cards and users, and so does a seeded history")
    p.add_argument("--count", type=_number(int, 1), default=None, help="stop after this many transactions")
    p.add_argument("--duration", type=POSITIVE, default=None, help="stop after this many seconds")
    p.add_argument("--users", type=_number(int, 1), default=2_000)
    p.add_argument("--fraud-rate", type=SHARE, default=0.004,
                   help="share of transactions that start a fraud scenario (default 0.004)")
    p.add_argument("--late-rate", type=SHARE, default=0.0, help="share of events delivered late")
    p.add_argument("--max-delay-ms", type=_number(int, 0), default=30_000, help="how late a late event can be")
    p.add_argument("--bad-rate", type=SHARE, default=0.0, help="share of malformed records (for tests)")
    p.add_argument("--feedback-delay-s", type=_number(float, 0), default=60.0,
                   help="delay of the ground truth on fraud-feedback (event time)")
    p.add_argument("--feedback-mode", choices=["all", "approved"], default="all",
                   help="all: ground truth for every transaction; approved: like a bank, no chargeback for a "
                        "transaction the pipeline declined (its decisions are read from --decisions-topic, the "
                        "stream scorer's scores; exploration there approves a logged share of would-be "
                        "declines, INFERENCE_EXPLORE_SHARE). Needs --rate (live)")
    p.add_argument("--feedback-topic", default=None, help="override the ground-truth topic (default fraud-feedback)")
    p.add_argument("--decisions-topic", default="scores",
                   help="where the pipeline's decisions are published (default scores)")
    p.add_argument("--drift-scenario", choices=DRIFT_SCENARIOS, default="none")
    p.add_argument("--start", type=int, default=None,
                   help="first event time, epoch ms (default: live mode now; simulated with --count, far "
                        "enough back that the run ends about now; simulated with --duration only, 24 h ago)")
    p.add_argument("--history", type=_history, default=None, metavar="DURATION",
                   help="simulate the past: event time runs from DURATION ago (2d, 36h, 90m) to now, as fast "
                        "as possible at --sim-rate, and the run stops at now (records scheduled after now, "
                        "such as the ground truth of the last minute, are not sent)")
    p.add_argument("--sim-rate", type=POSITIVE, default=50.0,
                   help="event-time rate of legit traffic when not rate-limited (events/s)")
    p.add_argument("--kind", choices=["transactions", "clicks"], default="transactions",
                   help="transactions (with fraud scenarios and ground truth) or clickstream sessions")
    p.add_argument("--topic", default=None, help="override the topic (default: transactions or clicks)")


class Decisions:
    """The pipeline's decisions, read as they are published (scores of source "stream"), so
    that ground truth follows the bank: no chargeback for a declined transaction. A transaction
    not scored yet when its feedback is due counts as approved (and is counted)."""

    def __init__(self, conn: kafka.Kafka, topic: str, capacity: int = 2_000_000) -> None:
        import threading
        from collections import OrderedDict

        from confluent_kafka import Consumer

        self.declined: OrderedDict[str, bool] = OrderedDict()
        self.capacity, self.withheld, self.unknown, self.invalid = capacity, 0, 0, 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._consumer = Consumer(kafka.client_config(conn, {
            "group.id": f"generator-{time.time_ns()}", "auto.offset.reset": "latest", "enable.auto.commit": False}))
        since = int(time.time() * 1000) - 600_000  # decisions of the last 10 minutes, then the new ones

        def from_since(consumer: Any, partitions: list) -> None:
            for tp in partitions:
                tp.offset = since
            consumer.assign(consumer.offsets_for_times(partitions, timeout=10))

        self._consumer.subscribe([topic], on_assign=from_since)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        from core.contracts import InvalidEvent, decode_score

        while not self._stop.is_set():
            for m in self._consumer.consume(1000, 0.2):
                value = m.value()
                if m.error() is not None or value is None:
                    continue
                try:
                    r = decode_score(value)
                except InvalidEvent:
                    self.invalid += 1
                    continue
                if r["source"] == "stream":
                    with self._lock:
                        self.declined[str(r["event_id"])] = r["decision"] == "decline"
                        while len(self.declined) > self.capacity:
                            self.declined.popitem(last=False)

    def chargeable(self, rec: Record) -> bool:
        from core.contracts import FraudFeedback, decode

        eid = decode(rec.value, FraudFeedback).event_id
        with self._lock:
            declined = self.declined.get(eid)
        if declined is None:
            self.unknown += 1
            return True
        self.withheld += declined
        return not declined

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._consumer.close()


def _per_s(sim_rate: float, kind: str) -> float:
    """Expected events per second of event time: legit traffic follows the daily cycle, whose
    mean weight scales the rate; a click session makes about 6 clicks at a sixth of the rate."""
    mean_weight = sum(diurnal_weight(h, d >= 5) for h in range(24) for d in range(7)) / 168
    return sim_rate * mean_weight if kind == "transactions" else sim_rate


def expected_count(span_ms: int, sim_rate: float, kind: str, end_ms: int | None = None) -> float:
    """About how many main-topic events a simulated span of ``span_ms`` holds: over the daily
    cycle of the very hours it covers when it ends at ``end_ms``, else over an average week."""
    if end_ms is None:
        return span_ms / 1000 * _per_s(sim_rate, kind)
    from datetime import UTC, datetime

    total, t, start = 0.0, end_ms - span_ms, end_ms - span_ms
    while t < end_ms:
        step = min(end_ms, (t // 3_600_000 + 1) * 3_600_000) - t  # to the next full hour
        when = datetime.fromtimestamp(t / 1000, tz=UTC)
        total += step / 1000 * sim_rate * diurnal_weight(when.hour, when.weekday() >= 5)
        t += step
    return total if t > start else 0.0


def simulated_start(count: int | None, sim_rate: float, kind: str, now_ms: int) -> int:
    """The first event time of a simulated run so that it ends about now: its expected event-time
    span, or 24 h when only --duration bounds it."""
    if count is None:
        return now_ms - 24 * 3_600_000
    return now_ms - int(count / _per_s(sim_rate, kind) * 1000)


@dataclass
class Produced:
    """What a run sent: records per topic, and how many were not delivered."""
    per_topic: dict[str, int] = field(default_factory=dict)
    undelivered: int = 0


def run(args: argparse.Namespace, stack: StackSettings, console: Console) -> int:
    return 1 if generate(args, stack, console).undelivered else 0


def generate(args: argparse.Namespace, stack: StackSettings, console: Console) -> Produced:
    if args.count is None and args.duration is None and args.rate is None and args.history is None:
        raise SystemExit("error: give --count, --duration, --history or --rate (a live generator)")
    live = args.rate is not None
    end_ms: int | None = None  # with --history: the simulated range ends here (now)
    if args.history is not None:
        if live:
            raise SystemExit("error: --history simulates the past as fast as possible; it does not go with --rate "
                             "(live event time is now)")
        if args.start is not None:
            raise SystemExit("error: --history and --start both set the first event time: give one of them")
        end_ms = int(time.time() * 1000)
        args.start = end_ms - args.history
    if args.feedback_mode == "approved" and not live:
        raise SystemExit("error: --feedback-mode approved needs --rate: the decisions come from the live stream "
                         "scorer, which cannot keep up with simulated time")
    if args.start is None and not live:
        args.start = simulated_start(args.count, args.sim_rate, args.kind, int(time.time() * 1000))
    if args.seed is None:
        args.seed = int(time.time_ns() % 2**31) if live else 42
        console.print(f"seed {args.seed}")
    cfg = GenConfig(seed=args.seed, users=args.users, fraud_rate=args.fraud_rate, late_rate=args.late_rate,
                    max_delay_ms=args.max_delay_ms, bad_rate=args.bad_rate,
                    feedback_delay_ms=int(args.feedback_delay_s * 1000), drift_scenario=args.drift_scenario,
                    events_per_s=args.rate if live else args.sim_rate,
                    start_ms=args.start, world_seed=args.world_seed)
    stream = (TransactionStream(cfg) if args.kind == "transactions" else
              ClickStream(args.seed, args.users, sessions_per_s=(args.rate or args.sim_rate) / 6, start_ms=args.start,
                          world_seed=args.world_seed))
    main_topic = TRANSACTIONS if args.kind == "transactions" else CLICKS
    from stack import health

    problem = health.kafka(stack)
    if problem is not None:  # librdkafka would retry silently forever
        raise SystemExit(f"error: Kafka at {stack.kafka_bootstrap} is not reachable ({problem}): is the stack up "
                         "(make up)?")
    producer = Producer(kafka.client_config(stack, {"linger.ms": 10, "queue.buffering.max.messages": 500_000,
                                              "enable.idempotence": True}))
    n_txn, t0 = 0, time.monotonic()
    out = Produced()
    next_report = t0 + 30
    deadline = t0 + args.duration if args.duration else None
    with Progress(TextColumn("[bold]generate"), BarColumn(), TextColumn("{task.completed:,} txns"),
                  TextColumn("{task.fields[rate]:,.0f}/s"), TimeElapsedColumn(), console=console,
                  disable=not console.is_terminal) as progress:
        total = args.count
        if end_ms is not None and total is None:  # about how many the range holds
            total = int(expected_count(args.history, args.sim_rate, args.kind, end_ms))
        task = progress.add_task("gen", total=total, rate=0.0)

        decisions = Decisions(stack, args.decisions_topic) \
            if args.feedback_mode == "approved" and args.kind == "transactions" else None

        def send(rec) -> None:
            if decisions is not None and rec.topic == FRAUD_FEEDBACK and not decisions.chargeable(rec):
                return  # declined: a bank gets no chargeback for it
            topic = args.topic if args.topic and rec.topic == main_topic else rec.topic
            if rec.topic == FRAUD_FEEDBACK and args.feedback_topic:
                topic = args.feedback_topic
            out.per_topic[topic] = out.per_topic.get(topic, 0) + 1
            while True:
                try:
                    producer.produce(topic, key=rec.key, value=rec.value)
                    return
                except BufferError:
                    producer.poll(0.05)

        for rec in stream:
            if end_ms is not None and rec.event_time > end_ms:
                break  # the simulated past has reached now
            # Event time never runs ahead of the wall clock (the stream rejects events dated
            # beyond its skew allowance): live mode always waits, simulated time once caught up.
            if rec.event_time > time.time() * 1000:
                ahead = rec.event_time / 1000.0 - time.time()
                if ahead > 0:
                    producer.poll(0)
                    time.sleep(ahead)
            send(rec)
            if rec.topic == main_topic:
                n_txn += 1
                if n_txn % 1000 == 0 or live:
                    producer.poll(0)
                    progress.update(task, completed=n_txn, rate=n_txn / (time.monotonic() - t0))
                if not console.is_terminal and time.monotonic() >= next_report:  # a log line
                    next_report += 30
                    console.print(f"{n_txn:,} transactions, {n_txn / (time.monotonic() - t0):,.1f}/s, "
                                  f"{stream.stats}")
            if (args.count and n_txn >= args.count) or (deadline and time.monotonic() >= deadline):
                break
        unsent = 0
        if not live:
            limit = end_ms if end_ms is not None else time.time() * 1000
            for rec in stream.drain():
                if rec.event_time > limit:  # a scenario's rest would be future-dated
                    unsent += 1
                    continue
                send(rec)
        progress.update(task, completed=n_txn)
    left = producer.flush(60)
    if decisions is not None:
        decisions.close()
        console.print(f"feedback withheld for {decisions.withheld:,} declined transactions "
                      f"({decisions.unknown:,} without a decision yet were sent)")
    elapsed = time.monotonic() - t0
    console.print(f"produced {n_txn:,} {args.kind} in {elapsed:.1f} s ({n_txn / elapsed:,.0f}/s); "
                  f"{stream.stats}" + (f"; {unsent} scheduled records dated after now not sent" if unsent else ""))
    if left:
        console.print(f"[red]error:[/] {left} records were not delivered")
    out.undelivered = left
    return out
