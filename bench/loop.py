"""``make bench NAME=loop``: does the learning loop, on ground truth, serve better decisions day
after day, through the real monitor, ``train.py``, gate, registry and signed promotions?

Simulated days, driven by event time (the code reads the data's own clock: training reads the
offline log up to the simulated "now" with ``--end`` and judges label maturity against the
newest event it sees):

- the generator's world for ``BENCH_LOOP_DAYS`` days (default 8; ``BENCH_LOOP_TXNS_PER_DAY``,
  default 20,000; ``BENCH_LOOP_FRAUD_RATE``, default 0.004), ``amount_shift`` drift from the
  middle day on, and ``slow_drain`` fraud
  that no rule describes; the stream's own backfill writes the offline log;
- **a bank's feedback**: each day, the served model (the rules before the first champion)
  declines the top ``BENCH_LOOP_BUDGET`` share of traffic (default: the rules' flag rate over
  the whole period, at least 0.5%);
  a declined transaction gets no chargeback, except a random 5% of would-be declines approved
  for exploration (their probability logged); fraud on approved transactions is charged back
  0.5 to 2.5 days later (uniform); the decisions go to a scores topic as the stream scorer
  publishes them;
- **the loop**: at each day's end ``drift.monitor.Monitor.once()`` retrains with train.py's
  defaults (``--labels auto``, ``--label-maturity 60h``), the gate judges on matured ground
  truth when it can, and a winner is promoted;
- in the same run, **baselines**: the rules alone; a loop restricted to rule labels (its own
  registered model, trained and gated on rule labels each day); an **oracle** trained each day
  on all matured truth (every fraud charged back, declined or not).

Each model is then judged on the *next* day's traffic against the full truth, at the same
alert budget: recall and precision per day. The result's value is the served champion's recall
on the last day; its baseline the rule-label loop's; the oracle's and the rules' are in params,
with every promotion's next-day recall change and a plot next to the JSON.

Goals (issue 11): last-day served recall >= 0.80 and >= 0.95 of the oracle's; no promotion of a
model that is worse on ground truth than the one it replaced.
"""

from __future__ import annotations

import heapq
import json
import os
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import RESULTS, bench_stack, flag_top, write_result
from core import feast_store
from core.contracts import FRAUD_FEEDBACK, TRANSACTIONS, FraudFeedback, decode, encode

DAY = 86_400_000
EXPLORE = 0.05


def _generate(days: int, per_day: int, start_ms: int) -> tuple[list[bytes], dict[str, tuple[bool, str]]]:
    from dataclasses import replace

    from streaming.generators.transactions import GenConfig, TransactionStream

    rate = per_day / 86_400
    stream = TransactionStream(GenConfig(seed=11, users=max(2000, days * per_day // 20), events_per_s=rate,
                                         feedback_delay_ms=0, start_ms=start_ms,
                                         fraud_rate=float(os.environ.get("BENCH_LOOP_FRAUD_RATE", "0.004"))))
    events: list[bytes] = []
    truth: dict[str, tuple[bool, str]] = {}
    shift_at = start_ms + (days // 2) * DAY
    end = start_ms + days * DAY
    for rec in stream:
        if rec.event_time >= shift_at and stream.cfg.drift_scenario == "none":
            stream.cfg = replace(stream.cfg, drift_scenario="amount_shift")  # the drift in the middle
        if rec.event_time >= end:
            break
        if rec.topic == TRANSACTIONS:
            events.append(rec.value)
        elif rec.topic == FRAUD_FEEDBACK:
            fb = decode(rec.value, FraudFeedback)
            truth[fb.event_id] = (fb.is_fraud, fb.scenario)
    for rec in stream.drain():
        if rec.topic == FRAUD_FEEDBACK:
            fb = decode(rec.value, FraudFeedback)
            truth[fb.event_id] = (fb.is_fraud, fb.scenario)
    return events, truth


def _scores(name: str, X: np.ndarray) -> np.ndarray | None:  # noqa: N803
    from training import export, tracking

    champ = tracking.load(name, tracking.CHAMPION)
    return None if champ is None else export.score(export.session(champ.onnx), X)


def _judge(y: np.ndarray, p: np.ndarray, budget: float) -> dict[str, float]:
    f = flag_top(p, budget)
    return {"recall": float(f[y].mean()) if y.any() else float("nan"),
            "precision": float(y[f].mean()) if f.any() else 0.0}


def _plot(days: list[int], series: dict[str, list[float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 3.4))
    for name, values in series.items():
        ax.plot(days, values, marker="o", label=name)
    ax.set_xlabel("simulated day (judged on the next day's traffic)")
    ax.set_ylabel("recall at the alert budget")
    ax.set_ylim(0, 1.05)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def run(console: Any) -> list[dict[str, Any]]:
    import orjson
    from confluent_kafka import Producer

    from core.model_inputs import MODEL_FEATURES
    from drift.monitor import Monitor, MonitorSettings
    from stack.topics import ensure_topics
    from streaming import backfill
    from streaming.processor import ProcessorConfig
    from streaming.sinks import OfflineLog
    from training import export, tracking
    from training.config import TrainConfig
    from training.dataset import load
    from training.errors import DataError
    from training.feedback import paired_bootstrap
    from training.labels import label
    from training.pipeline import train

    n_days = int(os.environ.get("BENCH_LOOP_DAYS", "8"))
    per_day = int(os.environ.get("BENCH_LOOP_TXNS_PER_DAY", "20000"))
    rng = np.random.default_rng(5)
    with bench_stack(need=("redis", "kafka", "mlflow")) as stack, \
            tempfile.TemporaryDirectory(prefix="bench-loop-") as tmp:
        root = Path(tmp)
        settings = feast_store.isolated_copy(stack.settings, root)
        tracking.connect(settings, lambda _m: None)
        tag = uuid.uuid4().hex[:6]
        fb_topic, oracle_topic, scores_topic = f"loop-fb-{tag}", f"loop-oracle-fb-{tag}", f"loop-scores-{tag}"
        ensure_topics(settings.kafka_bootstrap, [fb_topic, oracle_topic, scores_topic], partitions=3)
        served, rules_loop, oracle = f"loop-served-{tag}", f"loop-rules-{tag}", f"loop-oracle-{tag}"
        start = (int(time.time() * 1000) // DAY - n_days - 1) * DAY  # midnight, days ago: all in the past
        t0 = time.perf_counter()
        events, truth = _generate(n_days, per_day, start)
        backfill.run(iter(events), len(events), OfflineLog(feast_store.offline_dir(settings, "")), ProcessorConfig(),
                     progress=False)
        ds = load(settings)
        df = ds.frame
        X = ds.X  # noqa: N806
        y = np.array([truth.get(e, (False, ""))[0] for e in df["event_id"]], dtype=bool)
        scen = np.array([truth.get(e, (False, "legit"))[1] for e in df["event_id"]])
        rules = label(df).y.astype(bool)
        day = ((df["event_time"].to_numpy() - start) // DAY).astype(int)
        budget = float(os.environ.get("BENCH_LOOP_BUDGET") or max(0.005, float(rules.mean())))
        console.print(f"  {len(df):,} transactions over {n_days} days ({y.sum():,} fraud) in "
                      f"{time.perf_counter() - t0:.0f} s; alert budget {budget:.2%}")
        producer = Producer({"bootstrap.servers": settings.kafka_bootstrap, "linger.ms": 20,
                             "queue.buffering.max.messages": 1_000_000})
        pending: list[tuple[int, str, bytes]] = []  # chargebacks in arrival order: (arrival, topic, record)
        delays = rng.uniform(0.5 * DAY, 2.5 * DAY, len(df)).astype(np.int64)
        event_ids, cards, times = df["event_id"].to_numpy(), df["card_id"].to_numpy(), df["event_time"].to_numpy()
        rows: list[dict[str, Any]] = []
        promotions: list[dict[str, Any]] = []
        last_served = None
        args = ["--cv-folds", "0", "--test-size", "0.2", "--label-maturity", "60h", "--alert-budget", f"{budget:.6f}",
                "--min-auc", "0.6", "--max-ece", "0.1"]
        for d in range(n_days):
            idx = np.flatnonzero(day == d)
            # the bank decides today's transactions with what serves today (rules before a champion)
            p_served = _scores(served, X[idx])
            declined = rules[idx] if p_served is None else flag_top(p_served, budget)
            explored = declined & (rng.random(len(idx)) < EXPLORE)
            declined &= ~explored
            prob = np.where(explored, EXPLORE, 1.0)
            for j, i in enumerate(idx):
                rec = {"event_id": event_ids[i], "card_id": cards[i], "event_time": int(times[i]), "source": "stream",
                       "model_version": str(last_served) if last_served is not None else "rules",
                       "decision": "decline" if declined[j] else "approve", "label_probability": float(prob[j]),
                       "fraud_probability": float(p_served[j]) if p_served is not None else float(rules[i]),
                       "features": dict(zip(MODEL_FEATURES, X[i].tolist(), strict=True))}
                producer.produce(scores_topic, key=cards[i].encode(), value=orjson.dumps(rec))
                if y[i]:  # fraud: charged back later, unless declined; the oracle hears of all of it
                    fb = encode(FraudFeedback(event_id=event_ids[i], card_id=cards[i], event_time=int(times[i]),
                                              is_fraud=True, scenario=str(scen[i])))
                    arrival = int(times[i] + delays[i])
                    heapq.heappush(pending, (arrival, oracle_topic, fb))
                    if not declined[j]:
                        heapq.heappush(pending, (arrival, fb_topic, fb))
            now = start + (d + 1) * DAY
            while pending and pending[0][0] <= now:
                _, topic, fb = heapq.heappop(pending)
                producer.produce(topic, value=fb)
            assert producer.flush(120) == 0
            end_iso = datetime.fromtimestamp(now / 1000, tz=UTC).isoformat()
            # the loop: the real monitor's scheduled retrain (train.py --labels auto, ground-truth gate)
            monitor = Monitor(settings, MonitorSettings(
                model_name=served, retrain_every_s=0.001, cooldown_s=0, feedback_topic=fb_topic,
                scores_topic=scores_topic, window_s=DAY / 1000, train_args=[*args, "--end", end_iso],
                train_timeout_s=1800))
            rec = monitor.once()
            common = {"end_ms": now, "cv_folds": 0, "test_size": 0.2, "min_auc": 0.6, "max_ece": 0.1,
                      "label_maturity_ms": int(2.5 * DAY), "alert_budget": budget}
            for cfg in (TrainConfig(registered_name=rules_loop, labels="rules", ground_truth=False, **common),
                        TrainConfig(registered_name=oracle, labels="feedback", feedback_topic=oracle_topic,
                                    scores_topic="", force=True, min_feedback_fraud=1, **common)):
                try:
                    train(settings, cfg, say=lambda _m: None)
                except DataError as exc:  # e.g. the oracle before any truth has matured
                    console.print(f"  day {d + 1}: {cfg.registered_name} not trained: {exc}")
            if d + 1 >= n_days:
                break
            nxt = np.flatnonzero(day == d + 1)
            yt = y[nxt]
            row: dict[str, Any] = {"day": d + 1, "transactions": len(nxt), "fraud": int(yt.sum()),
                                   "action": rec["action"], "labels": rec.get("labels"), "gate": rec.get("gate"),
                                   "served_version": tracking.alias_version(served, tracking.CHAMPION)}
            for name, p in (("served", _scores(served, X[nxt])), ("rule_label_loop", _scores(rules_loop, X[nxt])),
                            ("oracle", _scores(oracle, X[nxt])), ("rules", rules[nxt].astype(float))):
                row[name] = _judge(yt, p, budget) if p is not None else {"recall": float("nan"), "precision": 0.0}
            slow = yt & (scen[nxt] == "slow_drain")
            p_now = _scores(served, X[nxt])
            row["served_slow_drain_recall"] = (float(flag_top(p_now, budget)[slow].mean())
                                               if slow.any() and p_now is not None else None)
            if rec.get("error"):
                row["error"] = rec["error"]
                console.print(f"  day {d + 1}: the monitor's retrain failed: {rec['error']}")
            gate_file = settings.data_dir / "monitor" / "last-run" / "gate.json"
            if rec.get("gate") == "refused" and gate_file.exists():
                reasons = [f"{c['name']}: {c['detail']}" for c in json.loads(gate_file.read_text())["checks"]
                           if not c["passed"]]
                row["refused_because"] = reasons
                console.print(f"  day {d + 1}: the gate refused: {'; '.join(reasons)}")
            if last_served is not None and row["served_version"] != last_served:
                before = tracking.load(served, None, last_served)
                p_old = export.score(export.session(before.onnx), X[nxt]) if before else None
                if p_old is not None and p_now is not None:
                    diff, lo, hi = paired_bootstrap(yt.astype(np.int8), p_now, p_old, budget, seed=d)
                    promotions.append({"day": d + 1, "from": last_served, "to": row["served_version"],
                                       "labels": rec.get("labels"), "next_day_recall_diff": diff, "ci": [lo, hi],
                                       "worse": hi < 0})
            last_served = row["served_version"]
            rows.append(row)
            console.print(f"  day {d + 1}: served v{row['served_version']} ({rec['action']}, labels "
                          f"{rec.get('labels')}, gate {rec.get('gate')}) recall {row['served']['recall']:.3f} "
                          f"precision {row['served']['precision']:.3f} | rule-label loop "
                          f"{row['rule_label_loop']['recall']:.3f} | oracle {row['oracle']['recall']:.3f} | rules "
                          f"{row['rules']['recall']:.3f}")
        del producer
        days = [r["day"] for r in rows]
        _plot(days, {k: [r[k]["recall"] for r in rows] for k in ("served", "rule_label_loop", "oracle", "rules")},
              RESULTS / "loop.png")
        last = rows[-1]
        goals = {"served_recall_at_least_0_80": last["served"]["recall"] >= 0.80,
                 "served_at_least_0_95_of_oracle": last["served"]["recall"] >= 0.95 * last["oracle"]["recall"],
                 "no_worse_promotion": not any(p["worse"] for p in promotions)}
        console.print(f"  goals: {goals}")
        return [write_result(
            "loop", "served champion's ground-truth recall at the alert budget on the last simulated day",
            last["served"]["recall"], "recall", True, "the same loop restricted to rule labels",
            last["rule_label_loop"]["recall"],
            {"days": n_days, "transactions_per_day": per_day, "alert_budget": budget, "exploration": EXPLORE,
             "feedback_delay_days": [0.5, 2.5], "label_maturity_days": 2.5, "drift": "amount_shift from the middle day",
             "oracle_recall_last_day": last["oracle"]["recall"], "rules_recall_last_day": last["rules"]["recall"],
             "goals": goals, "per_day": rows, "promotions": promotions, "plot": "bench/results/loop.png"})]
