"""Warm-started challengers: continue the champion's booster (XGBoost ``xgb_model``,
LightGBM ``init_model``, from the booster file its training run logged) on the recent window
labelled by fraud feedback, calibrate and pick the threshold on part of it, and let the same
gate judge it against the champion on a recent holdout. A passing model is registered as
``challenger`` (``promote=True`` also makes it champion)."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from core.settings import StackSettings
from training import calibration, evaluate, export, feedback, gate, models, tracking
from training.errors import DataError, TrainingError


@dataclass
class WarmStartResult:
    champion_version: str
    trees_before: int
    trees_after: int
    metrics: dict[str, float]
    champion_metrics: dict[str, float]
    gate: gate.GateResult
    parity: dict[str, float]
    version: str | None
    rows: dict[str, int]
    promoted: bool = False
    ground_truth: str = ""


def labelled_window(scores: pd.DataFrame, truth: pd.DataFrame) -> pd.DataFrame:
    """Scored inputs joined to their ground truth (one row per event)."""
    feats = pd.json_normalize(scores["features"].tolist()) if "features" in scores else scores
    df = pd.concat([scores[["event_id", "event_time"]].reset_index(drop=True), feats.reset_index(drop=True)], axis=1)
    return df.drop_duplicates("event_id").merge(truth[["event_id", "is_fraud"]], on="event_id", how="inner")


def continue_booster(model_type: str, booster: Path, X: np.ndarray, y: np.ndarray,  # noqa: N803
                     extra_trees: int = 50, seed: int = 42) -> tuple[Any, int, int]:
    """Add ``extra_trees`` to a saved booster (XGBoost JSON via ``xgb_model``, LightGBM text
    via ``init_model``) fitted on (X, y). Returns the model wrapper the exporter takes and the
    trees before and after. LightGBM thresholds are rounded to float32 as in training, so the
    ONNX graph matches the continued booster exactly."""
    pos = max(1, int(y.sum()))
    if model_type == "xgboost":
        import xgboost as xgb

        est = xgb.XGBClassifier(n_estimators=extra_trees, learning_rate=0.05, max_depth=6, tree_method="hist",
                                scale_pos_weight=(len(y) - pos) / pos, random_state=seed, n_jobs=2)
        est.fit(X, y, xgb_model=str(booster))
        before = xgb.Booster(model_file=str(booster)).num_boosted_rounds()
        after = est.get_booster().num_boosted_rounds()
        # onnxmltools divides the trees by n_estimators to count classes: with only the new
        # trees counted, a binary model converted as a 2-class one (scores off by up to 0.3)
        est.set_params(n_estimators=after)
        return models._Xgb(est), before, after  # noqa: SLF001
    if model_type == "lightgbm":
        import lightgbm as lgb

        est = lgb.LGBMClassifier(n_estimators=extra_trees, learning_rate=0.05, scale_pos_weight=(len(y) - pos) / pos,
                                 random_state=seed, n_jobs=2, verbose=-1)
        est.fit(X, y, init_model=str(booster))
        est._Booster = models.float32_thresholds(est.booster_)  # noqa: SLF001
        before = lgb.Booster(model_file=str(booster)).num_trees()
        return models._Lgbm(est), before, est.booster_.num_trees()  # noqa: SLF001
    raise TrainingError(f"warm starts apply to boosters (xgboost, lightgbm), not {model_type}")


def warm_start(settings: StackSettings, name: str, window: pd.DataFrame, extra_trees: int = 50,
               gate_cfg: gate.GateConfig | None = None, promote: bool | None = None, seed: int = 42,
               min_fraud: int = 50) -> WarmStartResult:
    """Continue the champion on ``window`` and judge it; a passing model is registered as
    challenger and, with ``promote`` None (the default), promoted when ground truth decided
    (at least ``min_fraud`` fraud cases in the holdout) and it won there with confidence."""
    import mlflow
    from mlflow import MlflowClient

    tracking.connect(settings, lambda _m: None)
    champ = tracking.load(name, tracking.CHAMPION)
    if champ is None:
        raise TrainingError(f"no {name}@champion to warm-start from")
    model_type = champ.metadata.get("model_type")
    if model_type not in ("xgboost", "lightgbm"):
        raise TrainingError(f"warm starts apply to boosters, the champion is {model_type}")
    run_id = MlflowClient().get_model_version(name, champ.version).run_id
    try:
        folder = Path(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="native"))
    except Exception:
        raise TrainingError(f"{name} v{champ.version} logged no native booster; retrain it first") from None
    booster = next(iter(folder.iterdir()))
    missing = [f for f in champ.features if f not in window]
    if missing:
        raise DataError(f"the labelled window lacks features {', '.join(missing)}")
    df = window.sort_values("event_time", kind="stable").reset_index(drop=True)
    y = df["is_fraud"].astype(np.int8).to_numpy()
    if y.sum() < 20:
        raise DataError(f"only {int(y.sum())} fraud labels in the window (minimum 20)")
    X = df[champ.features].to_numpy(dtype=np.float32)  # noqa: N806
    n = len(df)
    a, b = int(n * 0.6), int(n * 0.8)  # time-ordered: learn, calibrate, hold out
    if min(y[:a].sum(), y[a:b].sum(), y[b:].sum()) == 0:
        raise DataError("a part of the time-ordered window has no fraud label; wait for more feedback")
    fitted, before, after = continue_booster(model_type, booster, X[:a], y[:a], extra_trees, seed)
    cal, _ = calibration.choose(fitted.predict(X[a:b]), y[a:b], seed)
    threshold = evaluate.choose_threshold(y[a:b], cal(fitted.predict(X[a:b])))
    p_hold = cal(fitted.predict(X[b:]))
    metrics = evaluate.compute(y[b:], p_hold, threshold)
    p_champ = export.score(export.session(champ.onnx), X[b:])
    champ_metrics = evaluate.compute(y[b:], p_champ, champ.threshold)
    verdict = gate.evaluate(metrics, None, champ_metrics, gate_cfg or gate.GateConfig(),
                            psi_vs_champion=evaluate.score_psi(p_champ, p_hold))
    # the one ground-truth gate every challenger meets (training/feedback.py): the window's
    # labels are matured feedback, so with enough fraud it decides, with confidence
    flagged = p_champ >= champ.threshold
    budget = float(flagged.mean()) if flagged.any() else float(y[b:].mean())
    ids = df["event_id"].to_numpy()[b:]
    gt = feedback.gate(y[b:], p_hold, p_champ, budget, ids, (df["event_time"].to_numpy()[b:] // feedback.DAY_MS),
                       min_fraud=min_fraud, seed=seed)
    verdict = gate.with_ground_truth(verdict, gt.decides, gt.passed, gt.detail)
    metadata = {**champ.metadata, "threshold": threshold, "calibration": cal.describe(),
                "importance": [float(v) for v in fitted.importance()], "warm_started_from": champ.version,
                "label_mode": "fraud feedback (ground truth)"}
    onnx_model = export.build(fitted, len(champ.features), cal, metadata)
    parity = export.parity(onnx_model, fitted, cal, X[b:])
    version, promoted = None, False
    with mlflow.start_run(experiment_id=tracking.experiment("warm-starts", settings)):
        mlflow.set_tags({"warm_started_from": champ.version, "gate": verdict.verdict, "model_type": model_type})
        mlflow.log_metrics({**{f"holdout_{k}": v for k, v in metrics.items() if np.isfinite(v)},
                            **{f"champion_{k}": v for k, v in champ_metrics.items() if np.isfinite(v)}})
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "gate.json"
            import json

            path.write_text(json.dumps(verdict.to_dict(), indent=2))
            mlflow.log_artifact(str(path), "reports")
        if verdict.passed:
            uri = tracking.log_onnx(onnx_model, X[b:b + 5], p_hold[:5])
            version = tracking.register(uri, name, {"onnx_sha256": export.sha256(onnx_model), "gate": "passed",
                                                    "warm_started_from": champ.version,
                                                    "test_auc": f"{metrics['auc']:.4f}",
                                                    "test_f1": f"{metrics['f1']:.4f}"},
                                        onnx_model.SerializeToString(), settings)
            if promote if promote is not None else gt.decides:
                tracking.promote(name, version, f"warm start from v{champ.version} passed the gate", settings,
                                 expected=champ.version, evidence={"labels": "feedback", "gate": "passed",
                                                                   "ground_truth": gt.detail})
                promoted = True
    return WarmStartResult(champ.version, before, after, metrics, champ_metrics, verdict, parity, version,
                           {"learn": a, "calibrate": b - a, "holdout": n - b, "fraud": int(y.sum())}, promoted,
                           gt.detail)
