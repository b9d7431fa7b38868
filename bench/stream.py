"""Stream benchmarks on real Kafka, Redis and Feast, with baselines from the same run:

- ``stream_throughput``: a topic pre-filled with transactions, consumed by the full worker
  (window state, changelog, online + offline writes), against the no-op Faust agent (the
  framework's ceiling) and the naive agent (one Feast push per event); plus a group of two
  workers, and each worker's peak RSS. The same run measures the bare confluent-kafka loop
  (Python's ceiling here), the Quix no-op and the Quix per-key-state no-op
  (``bench/stream_baselines.py``); their rates are in the JSON's params.
- ``stream_freshness_quix_<rate>``: at steady rates (5,000 and 10,000 events/s), time from
  produce to the event being visible in the card's state read through Feast, the Quix engine
  against the Faust engine.
- ``hotkey`` (bench/hotkey.py): the per-event cost on a busy card and one late event's stall.
- ``stream_engines``: every figure above from the one run, and each goal of the stream issue
  with what was measured and whether it is met.
- ``BENCH_STREAM_ONLY=push``: ``stream_freshness``: direct online writes against the public
  ``FeatureStore.push`` path, same worker.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
from confluent_kafka import Producer
from rich.console import Console

from bench.common import bench_stack, produce_all, write_result
from core import feast_store
from core.card_state import CardState, event_key
from core.contracts import TRANSACTIONS, Transaction, decode, encode
from core.settings import REPO_ROOT, StackSettings
from stack import health
from stack.services import stack_env
from stack.topics import ensure_topics
from streaming.generators.transactions import GenConfig, TransactionStream

EVENTS = int(os.environ.get("BENCH_STREAM_EVENTS", "1000000"))
USERS = int(os.environ.get("BENCH_STREAM_USERS", "80000"))
NAIVE_SECONDS = float(os.environ.get("BENCH_NAIVE_SECONDS", "30"))
#: the steady rates freshness is measured at (each engine at each)
FRESH_RATES = [int(r) for r in (os.environ.get("BENCH_FRESH_RATES") or os.environ.get("BENCH_FRESH_RATE")
                                or "5000,10000").split(",")]
FRESH_SECONDS = float(os.environ.get("BENCH_FRESH_SECONDS", "30"))
PARTITIONS = 6


def transactions(n: int, seed: int, users: int) -> list[tuple[bytes, bytes]]:
    out = []
    for rec in TransactionStream(GenConfig(seed=seed, users=users, start_ms=1_790_000_000_000)):
        if rec.topic == TRANSACTIONS:
            out.append((rec.key, rec.value))
            if len(out) >= n:
                return out
    return out


def produce(bootstrap: str, topic: str, records: list[tuple[bytes, bytes]]) -> None:
    produce_all(Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "batch.size": 1_000_000,
                          "queue.buffering.max.messages": 1_000_000}), topic, records)


class Proc:
    """A worker process (the real one, or a baseline agent) with its metrics endpoint."""

    def __init__(self, settings: StackSettings, module: list[str], topic: str, app_id: str, log: Path,
                 **extra_env: str) -> None:
        self.port = health.free_port()
        env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), **stack_env(settings), "STREAMING_APP_ID": app_id,
               "STREAMING_TRANSACTIONS_TOPIC": topic, "STREAMING_DEAD_LETTERS_TOPIC": "dead-letters",
               "STREAMING_PARTITIONS": str(PARTITIONS), "STREAMING_METRICS_PORT": str(self.port), **extra_env}
        self.proc = subprocess.Popen([sys.executable, "-m", *module], env=env, cwd=REPO_ROOT,
                                     stdout=log.open("ab"), stderr=subprocess.STDOUT)
        self.log = log

    def values(self) -> dict[str, float]:
        """One scrape of its metrics (a scrape costs the worker CPU: the benchmark polls
        4 times a second, once per poll, as a Prometheus would at most)."""
        return health.prometheus_values(f"http://127.0.0.1:{self.port}/metrics") or {}

    def count(self) -> float:
        return self.values().get("stream_events_in_total", 0.0)

    def peak_rss_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def cpu_s(self) -> float:
        """CPU seconds the process has used (all its threads)."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def measure(procs: list[Proc], total: int, until_s: float | None = None, offline: bool = False) -> dict:
    """Rate from the first consumed event to the last (or until ``until_s`` seconds)."""
    t_first = n_first = None
    cpu_first = 0.0
    deadline = time.monotonic() + 1800
    while time.monotonic() < deadline:
        for p in procs:
            if p.proc.poll() is not None:
                raise RuntimeError(f"worker exited ({p.proc.returncode}); see {p.log}")
        scraped = [p.values() for p in procs]
        n = sum(v.get("stream_events_in_total", 0.0) for v in scraped)
        now = time.monotonic()
        if t_first is None and n > 0:
            t_first, n_first, cpu_first = now, n, sum(p.cpu_s() for p in procs)
        if t_first is not None:
            rows = sum(v.get("stream_offline_rows_total", 0.0) for v in scraped)
            done = n >= total and (not offline or rows >= 2 * total)
            if done or (until_s and now - t_first >= until_s):
                cpu = sum(p.cpu_s() for p in procs) - cpu_first
                return {"events": n - n_first, "seconds": now - t_first,
                        "rate": (n - n_first) / max(now - t_first, 1e-9),
                        "cpu_us_per_event": round(cpu / max(n - n_first, 1) * 1e6, 1),
                        "peak_rss_mb": [round(p.peak_rss_mb(), 1) for p in procs]}
        time.sleep(0.25)
    raise RuntimeError("benchmark did not finish in 30 minutes")


def throughput(console: Console, settings: StackSettings, tmp: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    topic = f"bench-stream-{uuid.uuid4().hex[:6]}"
    ensure_topics(settings.kafka_bootstrap, [topic], PARTITIONS)
    console.print(f"generating and producing {EVENTS:,} transactions over ~{int(USERS * 1.3):,} cards")
    records = transactions(EVENTS, seed=7, users=USERS)
    cards_seen = len({k for k, _ in records})
    produce(settings.kafka_bootstrap, topic, records)
    del records
    results = {}
    quix = {"STREAMING_ENGINE": "quix"}
    runs = [("bare", ["bench.stream_baselines", "bare"], 1, {}),
            ("quix_state", ["bench.stream_baselines", "quix-state"], 1, {}),
            ("noop", ["bench.stream_baselines", "noop"], 1, {}),
            ("noop_take", ["bench.stream_baselines", "noop-take"], 1, {}),
            ("quix_noop", ["bench.stream_baselines", "quix-noop"], 1, {}),
            ("full", ["streaming", "worker"], 1, {}),
            ("full_quix", ["streaming", "worker"], 1, quix),
            ("full_x2", ["streaming", "worker"], 2, {}),
            ("full_quix_x2", ["streaming", "worker"], 2, quix),
            ("naive", ["bench.stream_baselines", "naive"], 1, {})]
    only = os.environ.get("BENCH_STREAM_RUNS")  # e.g. "noop,quix_noop,full,full_quix"
    if only:
        runs = [r for r in runs if r[0] in only.split(",")]
    for name, module, n, env in runs:
        console.print(f"{name}: {n} process(es) ...")
        app_id = f"bench-{name}-{uuid.uuid4().hex[:6]}"
        procs = [Proc(settings, module, topic, app_id, tmp / f"{name}-{i}.log", **env) for i in range(n)]
        try:
            results[name] = measure(procs, EVENTS, until_s=NAIVE_SECONDS if name == "naive" else None,
                                    offline=name.startswith("full"))
        finally:
            for p in procs:
                p.stop()
        console.print(f"  {results[name]['rate']:,.0f} events/s, {results[name]['cpu_us_per_event']} us CPU per "
                      f"event, peak RSS {results[name]['peak_rss_mb']} MB")
    params = {"events": EVENTS, "cards": int(USERS * 1.3), "partitions": PARTITIONS,
              **{f"{name}_events_s": round(r["rate"]) for name, r in results.items()},
              **{f"peak_rss_mb_{name}": r["peak_rss_mb"] for name, r in results.items()},
              # the workers' CPU (all threads) per event consumed: where a 2-core machine's time goes
              **{f"cpu_us_per_event_{name}": r["cpu_us_per_event"] for name, r in results.items()},
              "cards_seen": cards_seen,
              "measure": "events consumed / seconds from the first to the last event (offline log "
                         "flushed), worker start-up excluded"}
    # memory the states take: the full worker's peak RSS above its engine's no-op, per 100k cards
    for full, noop in (("full", "noop"), ("full_quix", "quix_noop")):
        if full in results and noop in results:
            above = results[full]["peak_rss_mb"][0] - results[noop]["peak_rss_mb"][0]
            params[f"rss_mb_per_100k_cards_{full}"] = round(above / cards_seen * 100_000, 1)
    out = []
    if "full" in results and "noop" in results:
        out.append(write_result("stream_throughput", "full pipeline events per second, one Faust worker",
                                results["full"]["rate"], "events/s", True, "no-op Faust agent (decode only)",
                                results["noop"]["rate"], params))
    if "full_quix" in results and "full" in results:
        out.append(write_result("stream_throughput_quix", "full pipeline events per second, one Quix worker",
                                results["full_quix"]["rate"], "events/s", True,
                                "full pipeline, one Faust worker", results["full"]["rate"], params))
    if "full_quix" in results and "quix_noop" in results:
        out.append(write_result("stream_throughput_quix_vs_noop", "full pipeline events per second, one Quix "
                                "worker", results["full_quix"]["rate"], "events/s", True,
                                "no-op Quix application (decode only)", results["quix_noop"]["rate"], params))
    if "full" in results and "naive" in results:
        out.append(write_result("stream_throughput_vs_naive", "full pipeline events per second, one worker",
                                results["full"]["rate"], "events/s", True, "naive agent: one Feast push per event",
                                results["naive"]["rate"], params))
    return out, params


def freshness_run(settings: StackSettings, tmp: Path, writer: str, console: Console, engine: str = "faust",
                  rate: int = 5000) -> dict:
    topic = f"bench-fresh-{uuid.uuid4().hex[:6]}"
    ensure_topics(settings.kafka_bootstrap, [topic], PARTITIONS)
    worker = Proc(settings, ["streaming", "worker"], topic, f"bench-fresh-{uuid.uuid4().hex[:6]}",
                  tmp / f"fresh-{writer}-{engine}-{rate}.log", STREAMING_ONLINE_WRITER=writer, STREAMING_ENGINE=engine)
    n = int(rate * FRESH_SECONDS)
    base = [decode(v, Transaction) for _, v in transactions(n, seed=9, users=USERS)]
    store = feast_store.open_store(settings)
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap, "linger.ms": 5})
    # ready: the worker owns its partitions (a first event round-trips)
    probe = base[0]
    deadline = time.monotonic() + 120
    while worker.count() == 0:
        producer.produce(topic, key=probe.card_id.encode(), value=encode(probe))
        producer.flush(5)
        if time.monotonic() > deadline or worker.proc.poll() is not None:
            raise RuntimeError(f"freshness worker not ready; see {worker.log}")
        time.sleep(0.5)
    before, cpu0, t_cpu0 = worker.values(), worker.cpu_s(), time.perf_counter()
    pending: dict[tuple[str, int], float] = {}
    lat: list[float] = []
    lock, stop = threading.Lock(), threading.Event()

    def checker() -> None:
        while not stop.is_set() or pending:
            with lock:
                items = list(pending.items())[:200]
            if not items:
                time.sleep(0.005)
                continue
            got = store.get_online_features(features=["card_window_state:state"],
                                            entity_rows=[{"card_id": c} for (c, _), _ in items]).to_dict()
            now = time.perf_counter()
            with lock:
                for ((card, key), t0), blob in zip(items, got["state"], strict=True):
                    if blob and key in CardState.unpack(blob).key:
                        lat.append(now - t0)
                        pending.pop((card, key), None)
            if stop.is_set() and time.perf_counter() - stop_t[0] > 30:
                break

    stop_t = [0.0]
    th = threading.Thread(target=checker, daemon=True)
    th.start()
    t_start = time.perf_counter()
    for i, txn in enumerate(base[1:], 1):
        due = t_start + i / rate
        while time.perf_counter() < due:
            time.sleep(0.0005)
        # a fresh id and time: the probe must find this very event, never an earlier run's
        txn = msgspec.structs.replace(txn, event_id=str(uuid.uuid4()), event_time=int(time.time() * 1000))
        producer.produce(topic, key=txn.card_id.encode(), value=encode(txn))
        if i % 25 == 0:
            with lock:
                pending[(txn.card_id, event_key(txn.event_id))] = time.perf_counter()
        if i % 500 == 0:
            producer.poll(0)
    producer.flush(30)
    achieved = (len(base) - 1) / (time.perf_counter() - t_start)
    stop_t[0] = time.perf_counter()
    stop.set()
    th.join(60)
    # where the worker's time went meanwhile: its CPU (a share of one core: the records, the
    # 100 ms online writes and the checkpoints share one thread), its checkpoints and online writes
    after, busy = worker.values(), (worker.cpu_s() - cpu0) / (time.perf_counter() - t_cpu0)
    worker.stop()

    def mean_ms(metric: str) -> tuple[int, float | None]:
        n = after.get(f"{metric}_count", 0.0) - before.get(f"{metric}_count", 0.0)
        total = after.get(f"{metric}_sum", 0.0) - before.get(f"{metric}_sum", 0.0)
        return int(n), round(total / n * 1000, 2) if n else None

    checkpoints, checkpoint_ms = mean_ms("stream_checkpoint_sink_seconds")
    pushes, push_ms = mean_ms("stream_push_seconds")
    arr = np.array(lat) * 1000
    console.print(f"  {engine} {writer} at {rate:,}/s: {achieved:,.0f} events/s produced, {len(arr)} samples, "
                  f"p50 {np.percentile(arr, 50):.1f} ms, p99 {np.percentile(arr, 99):.1f} ms, "
                  f"unseen {len(pending)}; worker CPU {busy:.2f} of a core, {pushes} online writes of "
                  f"{push_ms} ms, {checkpoints} checkpoints of {checkpoint_ms} ms (sinks) on average")
    return {"p50_ms": float(np.percentile(arr, 50)), "p99_ms": float(np.percentile(arr, 99)),
            "max_ms": float(arr.max()), "samples": len(arr), "unseen": len(pending),
            "achieved_rate": round(achieved), "worker_cpu_share_of_a_core": round(busy, 3),
            "online_writes": pushes, "online_write_mean_ms": push_ms,
            "checkpoints": checkpoints, "checkpoint_sink_mean_ms": checkpoint_ms}


def run(console: Console) -> list[dict[str, Any]]:
    """Every figure of the stream stage in one run (``BENCH_STREAM_ONLY``: ``throughput``,
    ``freshness``, or ``push``: direct online writes against ``FeatureStore.push``)."""
    from bench import hotkey

    mode = os.environ.get("BENCH_STREAM_ONLY")
    with bench_stack(("redis", "kafka")) as stack, tempfile.TemporaryDirectory(prefix="bench-stream-") as t:
        tmp = Path(t)
        settings = feast_store.isolated_copy(stack.settings, tmp)
        out, params = ([], {}) if mode in ("freshness", "push") else throughput(console, settings, tmp)
        if mode == "throughput":
            return out
        if mode == "push":
            rate = FRESH_RATES[0]
            console.print(f"freshness at {rate:,} events/s for {FRESH_SECONDS:.0f} s: direct writes and push")
            direct = freshness_run(settings, tmp, "direct", console, rate=rate)
            push = freshness_run(settings, tmp, "push", console, rate=rate)
            name = "stream_freshness" if rate == 5000 else f"stream_freshness_{rate}"
            out.append(write_result(
                name, "p99 produce -> visible through Feast online", direct["p99_ms"], "ms", False,
                "same worker writing through FeatureStore.push", push["p99_ms"],
                {"rate": rate, "seconds": FRESH_SECONDS, "direct": direct, "push": push,
                 "sample": "every 25th event, polled through get_online_features"}))
            return out
        fresh: dict[str, dict] = {}
        for rate in FRESH_RATES:
            console.print(f"freshness at {rate:,} events/s for {FRESH_SECONDS:.0f} s, each engine")
            quix = fresh[f"quix_{rate}"] = freshness_run(settings, tmp, "direct", console, "quix", rate)
            faust = fresh[f"faust_{rate}"] = freshness_run(settings, tmp, "direct", console, "faust", rate)
            out.append(write_result(
                f"stream_freshness_quix_{rate}", "p99 produce -> visible through Feast online, Quix engine",
                quix["p99_ms"], "ms", False, "the Faust engine, same rate", faust["p99_ms"],
                {"rate": rate, "seconds": FRESH_SECONDS, "quix": quix, "faust": faust,
                 "sample": "every 25th event, polled through get_online_features"}))
        if mode == "freshness":
            return out
        console.rule("hot key (in process)")
        hot = hotkey.run(console)
        out += hot
        out.append(summary(params, fresh, hot[0]["params"]))
        return out


def summary(params: dict[str, Any], fresh: dict[str, dict], hot: dict[str, Any]) -> dict[str, Any]:
    """``stream_engines``: every figure of the run in one JSON, and each of the stream
    issue's goals with what was measured and whether it is met."""
    def rate(name: str) -> float:
        return float(params.get(f"{name}_events_s") or 0)

    def ratio(a: float, b: float) -> float | None:
        return round(a / b, 3) if b else None

    quix, faust = rate("full_quix"), rate("full")
    goals = [
        ("Quix engine, one worker, full pipeline >= 20,000 events/s", quix, quix >= 20_000),
        ("Quix engine, 2-worker group >= 1.7x one worker", ratio(rate("full_quix_x2"), quix),
         (ratio(rate("full_quix_x2"), quix) or 0) >= 1.7),
        ("Faust engine, 2-worker group >= 1.7x one worker", ratio(rate("full_x2"), faust),
         (ratio(rate("full_x2"), faust) or 0) >= 1.7),
        ("Faust engine full pipeline >= 0.8 of its no-op agent", ratio(faust, rate("noop")),
         (ratio(faust, rate("noop")) or 0) >= 0.8),
        ("(also) Faust engine full pipeline >= 0.8 of a no-op agent taking batches as it does",
         ratio(faust, rate("noop_take")), (ratio(faust, rate("noop_take")) or 0) >= 0.8),
        *((f"{engine} engine freshness p99 <= {limit} ms at {r:,} events/s", fresh[f"{engine}_{r}"]["p99_ms"],
           fresh[f"{engine}_{r}"]["p99_ms"] <= limit)
          for r, limit in ((5000, 100), (10_000, 250)) for engine in ("quix", "faust") if f"{engine}_{r}" in fresh),
        *((f"per-event cost on a 5,000-event card within 2x of a 10-event card ({layout})", r, r <= 2.0)
          for layout, r in hot["ratio_5000_vs_10_events"].items()),
    ]
    figures = {**params, "freshness": fresh, "hotkey": hot,
               "goals": [{"goal": g, "measured": m, "met": bool(ok)} for g, m, ok in goals]}
    return write_result("stream_engines", "full pipeline events per second, one Quix worker (every figure of "
                        "the run in params)", quix, "events/s", True, "bare confluent-kafka loop with msgspec "
                        "decode (the ceiling of Python here)", rate("bare"), figures)
