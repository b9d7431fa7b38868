"""How wrong is the performance estimated before labels arrive (drift.estimate, CBPE)?

``estimate_error``: generated transactions (the live generator's world and fraud scenarios)
go through the stream's own backfill into an offline log. An XGBoost model is trained on the
generator's ground truth over the first 50 % of the time line and calibrated on the next
10 % (training.calibration, as ``train.py`` does); it flags the top 1 % of scores (the
threshold taken on the calibration period). The rest of the time line is cut into test
periods, each generated under one ``--drift-scenario``: none, amount_shift, travel_surge,
fraud_surge. For each, the recall, precision and AUC estimated from the calibrated scores
alone are compared with the realized ones on the ground truth, and whether the estimate's
95 % interval covers them.

The result's value is the estimated recall's mean absolute error over the test periods; its
baseline, in the same run, the error of what one says without an estimator: "recall is what
it was on the calibration period".

Env: BENCH_ESTIMATE_ROWS (default 200,000).
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import bench_stack, write_result
from core import feast_store
from core.contracts import decode

#: the test periods, in time order, and the scenario each is generated under
PERIODS = ("none", "amount_shift", "travel_surge", "fraud_surge")


def _generate(rows: int) -> tuple[list[bytes], dict[str, tuple[bool, str]], list[tuple[int, str]]]:
    from bench.feedback import generate

    # the scenario changes at 60 %, 70 %, 80 % and 90 % of the rows: (first event index, scenario)
    cuts = [(int(rows * (0.6 + 0.1 * i)), s) for i, s in enumerate(PERIODS)]
    events, truth = generate(rows, seed=5, scenarios=cuts)
    return events, truth, cuts


def run(console: Any) -> list[dict[str, Any]]:
    from sklearn.metrics import roc_auc_score

    from core.contracts import Transaction
    from drift.estimate import estimate
    from streaming import backfill
    from streaming.processor import ProcessorConfig
    from streaming.sinks import OfflineLog
    from training import calibration, models
    from training.dataset import load

    rows = int(os.environ.get("BENCH_ESTIMATE_ROWS", "200000"))
    with bench_stack(need=("redis",)) as stack, tempfile.TemporaryDirectory(prefix="bench-estimate-") as tmp:
        settings = feast_store.isolated_copy(stack.settings, Path(tmp))
        t0 = time.perf_counter()
        events, truth, cuts = _generate(rows)
        period_of = {}
        bounds = [c for c, _ in cuts] + [len(events)]
        for (start, name), end in zip(cuts, bounds[1:], strict=True):
            for raw in events[start:end]:
                period_of[decode(raw, Transaction).event_id] = name
        backfill.run(iter(events), len(events), OfflineLog(feast_store.offline_dir(settings, "")), ProcessorConfig(),
                     progress=False)
        ds = load(settings)
        df = ds.frame.sort_values("event_time", kind="stable").reset_index(drop=True)
        console.print(f"  {len(df):,} transactions with features in {time.perf_counter() - t0:.0f} s; training ...")
        y = df["event_id"].map(lambda e: truth.get(e, (False, "legit"))[0]).to_numpy(dtype=np.int8)
        period = df["event_id"].map(lambda e: period_of.get(e, "train")).to_numpy()
        X = df[ds.features].to_numpy(dtype=np.float32)  # noqa: N806
        train = np.flatnonzero(period == "train")
        fit, cal = train[: int(len(train) * 5 / 6)], train[int(len(train) * 5 / 6):]  # 50 % and 10 % of all
        model = models.fit("xgboost", X[fit], y[fit], X[cal], y[cal])
        calibrator, _ = calibration.choose(model.predict(X[cal]), y[cal])
        p_cal = calibrator(model.predict(X[cal]))
        threshold = float(np.quantile(p_cal, 0.99))  # the top 1 % on the calibration period
        known = float((p_cal[y[cal] == 1] >= threshold).mean())  # "recall is what it was"
        out: dict[str, Any] = {}
        for name in PERIODS:
            m = period == name
            p, truth_y = calibrator(model.predict(X[m])), y[m].astype(bool)
            flagged = p >= threshold
            est = estimate(p, flagged, seed=1)
            realized = {"recall": float(flagged[truth_y].mean()), "precision": float(truth_y[flagged].mean())
                        if flagged.any() else None, "auc": float(roc_auc_score(truth_y, p))}
            row: dict[str, Any] = {"rows": int(m.sum()), "fraud": int(truth_y.sum()),
                                   "expected_fraud": round(est["expected_fraud"], 1)}
            for k in ("recall", "precision", "auc"):
                e = est[k]
                row[k] = {"estimated": e["value"], "ci95": e["ci95"], "realized": realized[k],
                          "error": None if e["value"] is None or realized[k] is None else e["value"] - realized[k],
                          "covered": bool(e["ci95"] and realized[k] is not None
                                          and e["ci95"][0] <= realized[k] <= e["ci95"][1])}
            row["baseline_recall_error"] = known - realized["recall"]
            out[name] = row
            console.print(f"  {name:13s} fraud {row['fraud']:4d} (expected {row['expected_fraud']:7.1f})  recall "
                          f"est {row['recall']['estimated']:.3f} [{row['recall']['ci95'][0]:.2f}-"
                          f"{row['recall']['ci95'][1]:.2f}] realized {realized['recall']:.3f}  AUC est "
                          f"{row['auc']['estimated']:.3f} realized {realized['auc']:.3f}")
        mae = float(np.mean([abs(r["recall"]["error"]) for r in out.values()]))
        base = float(np.mean([abs(r["baseline_recall_error"]) for r in out.values()]))
        return [write_result(
            "estimate_error", "mean absolute error of the recall estimated before labels (4 test periods)", mae,
            "recall", False, "recall assumed unchanged since the calibration period", base,
            {"transactions": len(df), "calibration": calibrator.describe(), "threshold": threshold,
             "calibration_period_recall": known, "periods": out,
             "where": "each test period is generated under one drift scenario, in this order: "
                      + ", ".join(PERIODS)})]
