"""Training benchmarks.

- ``train_1m``: 1M generated transactions, put into an offline log by the backfill (the stream's
  own code), then ``training/train.py --model-type xgboost --cv-folds 5`` end to end (point-in-time
  join, labels, xgboost with early stopping, baseline, calibration, 5-fold CV, ONNX with parity,
  MLflow) in a child process: wall time and the child's peak RSS. Baseline: the bare
  ``XGBClassifier.fit`` on the same training rows, so the ratio is the pipeline's cost over the fit.
- ``onnx_single_row_<type>``: ONNX Runtime vs native ``predict_proba``, one row (and 100 rows in
  the params), for every model type, trained on the same rows.
- ``onnx_export``: seconds to convert the xgboost model to ONNX (with calibration nodes and the
  checker) vs saving the native model (the pickle-free native format).

Env: BENCH_TRAIN_ROWS (default 1,000,000).
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import bench_stack, write_result
from core import feast_store
from core.settings import REPO_ROOT
from stack.services import stack_env


def _prepare(settings: Any, rows: int, console: Any, events_per_s: float | None = None) -> Any:
    from streaming import backfill
    from streaming.generators.transactions import GenConfig, TransactionStream
    from streaming.processor import ProcessorConfig
    from streaming.sinks import OfflineLog

    rate = events_per_s or max(1.0, rows / 200_000)
    stream = TransactionStream(GenConfig(seed=1, users=max(2000, rows // 20), events_per_s=rate,
                                         feedback_delay_ms=0, start_ms=1_790_000_000_000))
    events = []
    for rec in stream:
        if rec.topic == "transactions":
            events.append(rec.value)
            if len(events) >= rows:
                break
    console.print(f"  generated {len(events):,} transactions; backfilling the offline log ...")
    counts = backfill.run(iter(events), len(events), OfflineLog(feast_store.offline_dir(settings, "")),
                          ProcessorConfig(), progress=False)
    return counts


def _onnx_scorer(sess: Any) -> Any:
    from training import export

    def score(a: np.ndarray) -> Any:
        return sess.run([export.OUTPUT], {export.INPUT: a})

    return score


def _latency(fn: Any, X: np.ndarray, reps: int) -> float:  # noqa: N803
    fn(X)
    t0 = time.perf_counter()
    for _ in range(reps):
        fn(X)
    return (time.perf_counter() - t0) / reps * 1e6


def run(console: Any) -> list[dict[str, Any]]:
    from training import calibration, export, models
    from training.dataset import load
    from training.labels import label
    from training.splits import split

    rows = int(os.environ.get("BENCH_TRAIN_ROWS", "1000000"))
    results = []
    with bench_stack(need=("redis",)) as stack, tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        root = Path(tmp)
        settings = feast_store.isolated_copy(stack.settings, root)
        t0 = time.perf_counter()
        _prepare(settings, rows, console)
        console.print(f"  offline log ready in {time.perf_counter() - t0:.0f} s; training ...")

        env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), **stack_env(settings),
               "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}"}
        t0 = time.perf_counter()
        out = subprocess.run([sys.executable, "training/train.py", "--model-type", "xgboost", "--cv-folds", "5",
                              "--no-ground-truth", "--registered-name", "bench-fraud", "--output-dir",
                              str(root / "out"), "--force"], cwd=REPO_ROOT, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if out.returncode != 0:
            raise RuntimeError(f"train.py failed: {out.stderr.strip().splitlines()[-1:]}")
        peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024

        ds = load(settings)
        y = label(ds.frame).y
        sp = split(ds.frame, y)
        X = ds.X
        Xtr, ytr, Xva, yva = X[sp.train], y[sp.train], X[sp.val], y[sp.val]
        t0 = time.perf_counter()
        fitted = models.fit("xgboost", Xtr, ytr, Xva, yva)
        fit_s = time.perf_counter() - t0
        results.append(write_result(
            "train_1m", "end-to-end training wall time", wall, "s", False, "bare XGBClassifier.fit on the same rows",
            fit_s, {"transactions": len(ds.frame), "train_rows": len(sp.train), "cv_folds": 5,
                    "peak_rss_mb": round(peak_mb), "goal": "under 180 s and 4 GB"}))

        # ONNX vs native, every model type, on a sample of the same rows
        sample = np.random.default_rng(0).choice(len(Xtr), min(len(Xtr), 200_000), replace=False)
        for model_type in models.MODEL_TYPES:
            f = fitted if model_type == "xgboost" else models.fit(model_type, Xtr[sample], ytr[sample], Xva, yva)
            t0 = time.perf_counter()
            onnx_model = export.build(f, X.shape[1], calibration.Calibrator("none"), {"features": ds.features})
            export_s = time.perf_counter() - t0
            score = _onnx_scorer(export.session(onnx_model))
            one, hundred = Xva[:1], Xva[:100]
            if hasattr(f.estimator, "n_jobs"):  # a serving process scores one row on one thread
                f.estimator.set_params(n_jobs=1)
            onnx_1 = _latency(score, one, 2000)
            native_1 = _latency(f.estimator.predict_proba, one, 300)
            onnx_100 = _latency(score, hundred, 300)
            native_100 = _latency(f.estimator.predict_proba, hundred, 100)
            results.append(write_result(
                f"onnx_single_row_{model_type}", "single-row scoring latency", onnx_1, "us", False,
                "native predict_proba", native_1,
                {"batch_100_onnx_us": round(onnx_100, 1), "batch_100_native_us": round(native_100, 1),
                 "speedup_single_row": round(native_1 / onnx_1, 1), "goal": "ONNX >= 20x faster single-row",
                 "onnx_threads": 1}))
            if model_type == "xgboost":
                t0 = time.perf_counter()
                f.estimator.save_model(str(root / "native.ubj"))
                save_s = time.perf_counter() - t0
                results.append(write_result(
                    "onnx_export", "ONNX conversion time (xgboost)", export_s, "s", False,
                    "native save_model", save_s,
                    {"trees": f.estimator.get_booster().num_boosted_rounds(), "goal": "under 5 s (seed: 30 s)"}))
    return results
