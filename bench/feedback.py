"""Do models that learn from fraud feedback beat the model trained on rule labels alone?

``feedback_vs_rules``: generated transactions (the live generator's world and fraud scenarios,
including ``slow_drain``, which no rule describes) go through the stream's own backfill into
an offline log; the time-ordered rows are split into history (60%), a feedback window (20%)
and a test period (20%). On the test period, against the ground truth the generator
published on ``fraud-feedback``, at the same alert budget for every model (each flags the
same share of test transactions as the rules do), per scenario:

- ``rules``: the five labelling rules themselves;
- ``rule_trained``: XGBoost trained on rule labels over the history (what ``train.py`` does);
- ``warm_started``: that booster continued on the feedback window with the feedback as labels
  (``drift.warmstart.continue_booster``, what the online loop does every N labels);
- ``feedback_trained``: XGBoost trained on history + window with the feedback as labels;
- ``river_online``: the River learner of ``python -m drift learn``, progressively validated
  over the whole time line (predict, then learn), scored on the test period.

The result's value is the warm-started model's recall at the budget, its baseline the
rule-trained model's; the per-scenario table is in the params and a plot next to the JSON.

Env: BENCH_FEEDBACK_ROWS (default 200,000).
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import RESULTS, bench_stack, flag_top, write_result
from core import feast_store
from core.contracts import FRAUD_FEEDBACK, TRANSACTIONS, FraudFeedback, decode


def generate(rows: int, seed: int = 3, scenarios: list[tuple[int, str]] | tuple = ()
             ) -> tuple[list[bytes], dict[str, tuple[bool, str]]]:
    """``rows`` transactions of the live generator (raw records) and its ground truth (event id
    -> (is fraud, scenario)); ``scenarios``: (from the n-th transaction, drift scenario), in order."""
    from dataclasses import replace

    from streaming.generators.transactions import GenConfig, TransactionStream

    # the live generator's density: one purchase per card every hour or so
    stream = TransactionStream(GenConfig(seed=seed, users=max(2000, rows // 20), events_per_s=max(1.0, rows / 100_000),
                                         feedback_delay_ms=0, start_ms=1_790_000_000_000))
    events: list[bytes] = []
    truth: dict[str, tuple[bool, str]] = {}
    todo = list(scenarios)

    def take(rec: Any) -> None:
        if rec.topic == TRANSACTIONS:
            events.append(rec.value)
        elif rec.topic == FRAUD_FEEDBACK:
            fb = decode(rec.value, FraudFeedback)
            truth[fb.event_id] = (fb.is_fraud, fb.scenario)

    for rec in stream:
        if todo and len(events) >= todo[0][0]:
            stream.cfg = replace(stream.cfg, drift_scenario=todo.pop(0)[1])
        take(rec)
        if len(events) >= rows:
            break
    for rec in stream.drain():
        take(rec)
    return events, truth


def _river(X: np.ndarray, y: np.ndarray, test_from: int) -> np.ndarray:  # noqa: N803
    from drift.online import OnlineLearner

    learner = OnlineLearner()
    names = [f"f{i}" for i in range(X.shape[1])]
    out = np.zeros(len(X) - test_from)
    for i in range(len(X)):
        x = dict(zip(names, X[i].tolist(), strict=True))
        p = learner.step(x, bool(y[i]), "", 0.0, False)
        if i >= test_from:
            out[i - test_from] = p
    return out


def _plot(table: dict[str, dict[str, float]], models: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scenarios = list(table)
    fig, ax = plt.subplots(figsize=(9, 3.4))
    width = 0.8 / len(models)
    for i, m in enumerate(models):
        ax.bar(np.arange(len(scenarios)) + i * width, [table[s][m] for s in scenarios], width, label=m)
    ax.set_xticks(np.arange(len(scenarios)) + 0.4 - width / 2, scenarios, fontsize=8)
    ax.set_ylabel("recall at the rules' alert budget")
    ax.set_ylim(0, 1.25)
    ax.legend(fontsize=7, ncols=len(models), loc="upper center")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def run(console: Any) -> list[dict[str, Any]]:
    from sklearn.metrics import average_precision_score, roc_auc_score

    from drift.warmstart import continue_booster
    from streaming import backfill
    from streaming.processor import ProcessorConfig
    from streaming.sinks import OfflineLog
    from training import models
    from training.dataset import load
    from training.labels import label
    from training.pipeline import save_native

    rows = int(os.environ.get("BENCH_FEEDBACK_ROWS", "200000"))
    with bench_stack(need=("redis",)) as stack, tempfile.TemporaryDirectory(prefix="bench-feedback-") as tmp:
        root = Path(tmp)
        settings = feast_store.isolated_copy(stack.settings, root)
        t0 = time.perf_counter()
        events, truth = generate(rows)
        backfill.run(iter(events), len(events), OfflineLog(feast_store.offline_dir(settings, "")), ProcessorConfig(),
                     progress=False)
        ds = load(settings)
        df = ds.frame.sort_values("event_time", kind="stable").reset_index(drop=True)
        console.print(f"  {len(df):,} transactions with features in {time.perf_counter() - t0:.0f} s; training ...")
        gt = df["event_id"].map(lambda e: truth.get(e, (False, "legit")))
        y_true = np.array([g[0] for g in gt], dtype=np.int8)
        scenario = np.array([g[1] for g in gt])
        y_rules = label(df).y.astype(np.int8)
        rules_fired = y_rules.astype(bool)  # the rules as a detector: any fires on the transaction's window
        X = df[ds.features].to_numpy(dtype=np.float32)  # noqa: N806
        n = len(df)
        a, b = int(n * 0.6), int(n * 0.8)
        val = slice(int(a * 0.85), a)  # the history's last 15% stops the boosters early
        fit = slice(0, int(a * 0.85))

        rule_model = models.fit("xgboost", X[fit], y_rules[fit], X[val], y_rules[val])
        booster = save_native(rule_model, "xgboost", root)
        assert booster is not None
        warm, _, _ = continue_booster("xgboost", booster, X[a:b], y_true[a:b], extra_trees=100)
        stop = int(b - 0.15 * (b - a))  # the window's last 15% stops it early
        fb_model = models.fit("xgboost", np.concatenate([X[fit], X[a:stop]]),
                              np.concatenate([y_true[fit], y_true[a:stop]]), X[stop:b], y_true[stop:b])
        console.print("  River online learner over the whole time line ...")
        river_p = _river(X, y_true, b)

        test_y, test_s = y_true[b:].astype(bool), scenario[b:]
        rules_test = rules_fired[b:]
        budget = float(rules_test.mean())  # every model may flag as many test transactions as the rules
        scores = {"rule_trained": rule_model.predict(X[b:]), "warm_started": warm.predict(X[b:]),
                  "feedback_trained": fb_model.predict(X[b:]), "river_online": river_p}
        flagged = {"rules": rules_test, **{m: flag_top(p, budget) for m, p in scores.items()}}
        names = list(flagged)
        per_scenario: dict[str, dict[str, float]] = {}
        for s in sorted(set(test_s[test_y])):
            m = test_y & (test_s == s)
            per_scenario[str(s)] = {"fraud": int(m.sum()), **{k: float(f[m].mean()) for k, f in flagged.items()}}
        overall = {k: {"recall": float(f[test_y].mean()), "precision": float(test_y[f].mean()) if f.any() else 0.0,
                       "false_positive_rate": float(f[~test_y].mean())} for k, f in flagged.items()}
        for k, p in scores.items():
            overall[k].update(auc=float(roc_auc_score(test_y, p)), pr_auc=float(average_precision_score(test_y, p)))
        _plot({s: {k: v for k, v in t.items() if k != "fraud"} for s, t in per_scenario.items()}, names,
              RESULTS / "feedback_vs_rules.png")
        for k in names:
            console.print(f"  {k:17s} recall {overall[k]['recall']:.3f}  precision {overall[k]['precision']:.3f}"
                          + (f"  AUC {overall[k]['auc']:.3f}" if "auc" in overall[k] else ""))
        for s, t in per_scenario.items():
            console.print(f"    {s:20s} ({t['fraud']:4d} fraud) " + "  ".join(f"{k} {t[k]:.2f}" for k in names))
        return [write_result(
            "feedback_vs_rules", "recall on ground truth at the rules' alert budget (test period)",
            overall["warm_started"]["recall"], "recall", True, "XGBoost trained on rule labels only",
            overall["rule_trained"]["recall"],
            {"transactions": n, "history": a, "feedback_window": b - a, "test": n - b,
             "test_fraud": int(test_y.sum()), "alert_budget": budget, "overall": overall,
             "per_scenario": per_scenario, "plot": "bench/results/feedback_vs_rules.png"})]
