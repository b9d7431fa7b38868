"""Soak: the real worker under a hostile steady load for a while, sampled every 2 s.

Load (``python -m bench soak --help`` for the knobs; env ``BENCH_SOAK_*`` for ``make bench``):

- a hot card at ``BENCH_SOAK_HOT_RATE`` transactions/s (1,000), one in ``BENCH_SOAK_LATE_EVERY``
  (200) dated ``BENCH_SOAK_LATE_MS`` (2 s) behind the card's newest: out-of-order corrections
  on a card at its event cap;
- a flood of ``BENCH_SOAK_FLOOD_RATE`` (800) transactions/s each on a card id never seen
  before;
- clicks at 200/s, and poison on both consumed topics (10 records/s each: not JSON, wrong
  fields), which must all be dead-lettered.

Reported over time (JSON and a PNG plot): the worker's resident memory, its consumer lag, the
freshness p99 (produce -> online, from its histogram) and its rate. Asserted (the benchmark
fails otherwise): every poison record dead-lettered; the lag drains within 90 s of the load
stopping; memory in the last quarter of the run grows by at most 2 KB per entity added since the
first quarter, plus 64 MB (state grows with the number of cards by design until they expire;
per card it stays bounded, and the hot card's state is capped). The baseline in the JSON is the
same worker's resident memory at the end of the first quarter.
"""

from __future__ import annotations

import argparse
import os
import random
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from confluent_kafka import Producer
from rich.console import Console

from bench.common import RESULTS, bench_stack, write_result
from bench.stream import Proc
from core import feast_store
from core.contracts import Click, Transaction, encode
from stack import health
from stack.topics import ensure_topics

SECONDS = float(os.environ.get("BENCH_SOAK_SECONDS", "90"))
HOT_RATE = int(os.environ.get("BENCH_SOAK_HOT_RATE", "1000"))
FLOOD_RATE = int(os.environ.get("BENCH_SOAK_FLOOD_RATE", "800"))
LATE_EVERY = int(os.environ.get("BENCH_SOAK_LATE_EVERY", "200"))
LATE_MS = int(os.environ.get("BENCH_SOAK_LATE_MS", "2000"))
CLICK_RATE, POISON_RATE, TICK = 200, 10, 0.1
POISON = [b"not json at all", b'{"schema_version": 1, "event_id": 7}', b"\xff\xfe", b"[]"]


def _txn(card: str, t: int, rng: random.Random) -> bytes:
    return encode(Transaction(
        event_id=uuid.uuid4().hex, event_time=t, card_id=card, user_id=f"u-{card}",
        merchant_id=f"m{rng.randrange(500)}",
        mcc=rng.choice(("5411", "5812", "7995", "4829")), amount=round(rng.uniform(1, 900), 2), currency="EUR",
        country=rng.choice(("DE", "FR", "NL", "US")), lat=0.0, lon=0.0, device_id="d", ip="10.0.0.1",
        channel="online"))


def _click(user: str, t: int, rng: random.Random) -> bytes:
    return encode(Click(event_id=uuid.uuid4().hex, event_time=t, user_id=user, session_id=f"s-{user}",
                        page=f"/p/{rng.randrange(50)}", action=rng.choice(("view", "add_to_cart", "purchase")),
                        dwell_ms=rng.randrange(100, 30_000), device="mobile", country="DE"))


class Load:
    """Produces the load in 0.1 s ticks on a thread; counts what it sent."""

    def __init__(self, bootstrap: str, txn_topic: str, click_topic: str, seconds: float) -> None:
        self.producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 10, "batch.size": 1_000_000,
                                  "queue.buffering.max.messages": 2_000_000})
        self.txn_topic, self.click_topic, self.seconds = txn_topic, click_topic, seconds
        self.sent = {"transactions": 0, "clicks": 0, "poison": 0, "late": 0}
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _send(self, topic: str, key: bytes, value: bytes) -> None:
        while True:
            try:
                self.producer.produce(topic, key=key, value=value)
                return
            except BufferError:
                self.producer.poll(0.05)

    def _run(self) -> None:
        rng = random.Random(5)
        start = time.monotonic()
        tick, hot_n = 0, 0
        while (now_s := time.monotonic()) - start < self.seconds:
            wall = int(time.time() * 1000)
            for i in range(int(HOT_RATE * TICK)):
                hot_n += 1
                late = LATE_EVERY and hot_n % LATE_EVERY == 0
                self._send(self.txn_topic, b"card-hot", _txn("card-hot", wall - (LATE_MS if late else 0) + i, rng))
                self.sent["late"] += bool(late)
            for _ in range(int(FLOOD_RATE * TICK)):
                card = f"card-{uuid.uuid4().hex[:16]}"
                self._send(self.txn_topic, card.encode(), _txn(card, wall, rng))
            for _ in range(int(CLICK_RATE * TICK)):
                user = f"user-{rng.randrange(20_000)}"
                self._send(self.click_topic, user.encode(), _click(user, wall, rng))
            for _ in range(max(1, int(POISON_RATE * TICK))):
                self._send(self.txn_topic, b"card-hot", rng.choice(POISON))
                self._send(self.click_topic, b"user-1", rng.choice(POISON))
            self.sent["transactions"] += int(HOT_RATE * TICK) + int(FLOOD_RATE * TICK)
            self.sent["clicks"] += int(CLICK_RATE * TICK)
            self.sent["poison"] += 2 * max(1, int(POISON_RATE * TICK))
            self.producer.poll(0)
            tick += 1
            time.sleep(max(0.0, start + tick * TICK - time.monotonic()))
            del now_s
        if self.producer.flush(120):
            raise RuntimeError("the load generator could not deliver every record")


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _p99(buckets: dict[float, float], prev: dict[float, float]) -> float | None:
    """p99 (upper bucket bound, s) of the observations between two histogram samples."""
    delta = sorted((le, buckets[le] - prev.get(le, 0.0)) for le in buckets)
    total = delta[-1][1] if delta else 0.0
    if total <= 0:
        return None
    for le, n in delta:
        if n >= 0.99 * total:
            return le
    return delta[-1][0]


def _sample(worker: Proc) -> dict[str, Any]:
    samples = health.prometheus_samples(f"http://127.0.0.1:{worker.port}/metrics") or {}
    buckets = {}
    for key, v in samples.items():
        if key.startswith("stream_feature_freshness_seconds_bucket"):
            le = key.split('le="')[1].split('"')[0]
            buckets[float("inf") if le == "+Inf" else float(le)] = v
    return {
        "rss_mb": _rss_mb(worker.proc.pid),
        "lag": sum(v for k, v in samples.items() if k.startswith("stream_consumer_lag")),
        "events_in": sum(v for k, v in samples.items() if k.startswith("stream_events_in_total")),
        "dead_letters": sum(v for k, v in samples.items() if k.startswith("stream_dead_letters_total")),
        "entities": sum(v for k, v in samples.items() if k.startswith("stream_state_entities")),
        "corrections": samples.get("stream_correction_rows_total", 0.0),
        "buckets": buckets,
    }


def soak(console: Console, seconds: float) -> dict[str, Any]:
    with bench_stack(("redis", "kafka")) as stack, tempfile.TemporaryDirectory(prefix="bench-soak-") as t:
        tmp = Path(t)
        settings = feast_store.isolated_copy(stack.settings, tmp)
        tag = uuid.uuid4().hex[:6]
        txn, clicks, dlq = f"soak-txn-{tag}", f"soak-clk-{tag}", f"soak-dlq-{tag}"
        ensure_topics(settings.kafka_bootstrap, [txn, clicks, dlq], 6)
        worker = Proc(settings, ["streaming", "worker"], txn, f"bench-soak-{tag}", tmp / "worker.log",
                      STREAMING_CLICKS_TOPIC=clicks, STREAMING_DEAD_LETTERS_TOPIC=dlq,
                      STREAMING_STATE_SWEEP_INTERVAL_S="2")
        deadline = time.monotonic() + 120
        while health.prometheus_values(f"http://127.0.0.1:{worker.port}/metrics") is None:
            if time.monotonic() > deadline or worker.proc.poll() is not None:
                raise RuntimeError(f"the worker did not start; see {worker.log}")
            time.sleep(0.5)
        time.sleep(5)  # joined its group
        load = Load(settings.kafka_bootstrap, txn, clicks, seconds)
        console.print(f"soak: {seconds:.0f} s of a hot card at {HOT_RATE:,}/s (1 in {LATE_EVERY} late by "
                      f"{LATE_MS} ms), {FLOOD_RATE:,}/s new cards, {CLICK_RATE}/s clicks, poison on both topics")
        t0 = time.monotonic()
        load.thread.start()
        series: list[dict[str, Any]] = []
        prev: dict[str, Any] | None = None
        drained_at = None
        while True:
            time.sleep(2)
            if worker.proc.poll() is not None:
                raise RuntimeError(f"the worker exited ({worker.proc.returncode}); see {worker.log}")
            s = _sample(worker)
            elapsed = time.monotonic() - t0
            row = {"t_s": round(elapsed, 1), "rss_mb": round(s["rss_mb"], 1), "lag": s["lag"],
                   "entities": s["entities"], "dead_letters": s["dead_letters"], "corrections": s["corrections"],
                   "rate": round((s["events_in"] - prev["events_in"]) / 2.0) if prev else None,
                   "freshness_p99_s": _p99(s["buckets"], prev["buckets"] if prev else {})}
            series.append(row)
            console.print(f"  {row['t_s']:6.1f} s  rss {row['rss_mb']:7.1f} MB  lag {row['lag']:8,.0f}  "
                          f"rate {row['rate'] or 0:6,}/s  p99 {row['freshness_p99_s']} s  "
                          f"entities {row['entities']:,.0f}")
            prev = s
            if not load.thread.is_alive() and drained_at is None and s["lag"] == 0 \
                    and s["events_in"] >= sum(load.sent[k] for k in ("transactions", "clicks", "poison")):
                drained_at = elapsed
                break
            if not load.thread.is_alive() and elapsed > seconds + 90:
                break
        worker.stop()
        del load.producer  # (destroyed before the temporary stack goes: no reconnect noise)
        quarter = max(1, len([r for r in series if r["t_s"] <= seconds]) // 4)
        early, late_rows = series[:quarter], series[-quarter:]
        base_rss, base_entities = early[-1]["rss_mb"], early[-1]["entities"]
        peak_rss = max(r["rss_mb"] for r in series)
        end_rss, end_entities = max(r["rss_mb"] for r in late_rows), late_rows[-1]["entities"]
        allowed = base_rss + 64 + 2 * max(0.0, end_entities - base_entities) / 1024
        p99s = [r["freshness_p99_s"] for r in series if r["freshness_p99_s"] is not None]
        summary = {"seconds": seconds, "sent": load.sent, "drained_s_after_load": None if drained_at is None
                   else round(drained_at - seconds, 1), "peak_rss_mb": peak_rss, "rss_after_first_quarter_mb": base_rss,
                   "rss_allowed_mb": round(allowed, 1), "max_lag": max(r["lag"] for r in series),
                   "freshness_p99_s_max": max(p99s) if p99s else None,
                   "freshness_p99_s_median": sorted(p99s)[len(p99s) // 2] if p99s else None,
                   "dead_letters": series[-1]["dead_letters"], "entities_end": end_entities}
        _plot(series, seconds, RESULTS / "soak.png")
        failures = []
        if series[-1]["dead_letters"] != load.sent["poison"]:
            failures.append(f"dead letters {series[-1]['dead_letters']:.0f} != poison sent {load.sent['poison']}")
        if drained_at is None:
            failures.append("the lag did not drain within 90 s of the load stopping")
        if end_rss > allowed:
            failures.append(f"memory grew past its bound: {end_rss:.0f} MB > {allowed:.0f} MB")
        summary["failures"] = failures
        return {"series": series, "summary": summary}


def _plot(series: list[dict[str, Any]], seconds: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [r["t_s"] for r in series]
    fig, axes = plt.subplots(4, 1, figsize=(8, 9), sharex=True)
    for ax, key, label in zip(axes, ("rss_mb", "lag", "freshness_p99_s", "rate"),
                              ("resident memory (MB)", "consumer lag (records)", "freshness p99 (s)",
                               "records/s"), strict=True):
        ax.plot(t, [r[key] if r[key] is not None else float("nan") for r in series])
        ax.set_ylabel(label)
        ax.axvline(seconds, color="grey", linestyle="--", linewidth=0.8)
        ax.grid(alpha=0.3)
    axes[-1].set_xlabel("seconds (dashed: the load stops)")
    fig.suptitle("soak: hot card with late events, new-card flood, poison records")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def run(console: Console, seconds: float = SECONDS) -> list[dict[str, Any]]:
    out = soak(console, seconds)
    s = out["summary"]
    result = write_result("soak", "peak resident memory of the worker", s["peak_rss_mb"], "MB", False,
                          "the same worker after the first quarter of the run", s["rss_after_first_quarter_mb"],
                          {**s, "hot_rate": HOT_RATE, "flood_rate": FLOOD_RATE, "late_every": LATE_EVERY,
                           "late_ms": LATE_MS, "click_rate": CLICK_RATE, "poison_rate_per_topic": POISON_RATE,
                           "series": out["series"], "plot": "bench/results/soak.png"})
    console.print(f"soak: drained {s['drained_s_after_load']} s after the load, max lag {s['max_lag']:,.0f}, "
                  f"freshness p99 median {s['freshness_p99_s_median']} s (max {s['freshness_p99_s_max']} s), "
                  f"peak RSS {s['peak_rss_mb']:.0f} MB; plot: bench/results/soak.png")
    if s["failures"]:
        raise SystemExit("error: soak bounds broken: " + "; ".join(s["failures"]))
    return [result]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=SECONDS, help="how long the load runs (default %(default)s)")
    run(Console(highlight=False), parser.parse_args().seconds)
