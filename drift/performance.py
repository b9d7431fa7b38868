"""Performance drift: how the served model does on the fraud feedback that has arrived for
its recent scores (AUC, recall at the served threshold), overall and over consecutive time
windows, against the champion's own ground-truth metrics at training.

Severity of a drop (champion minus recent): recall beyond ``recall_drop`` or AUC beyond
``auc_drop`` is medium, twice that is high, half of it low. With fewer than ``min_fraud``
fraud labels nothing is judged (severity none, with a note): a handful of frauds cannot
tell a drop from chance, and the Wilson interval of the recall shows how wide it is.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from drift.estimate import estimate

FLAGGED = ("review", "decline")


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    if n == 0:
        return 0.0, 1.0
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return float(max(0.0, centre - half)), float(min(1.0, centre + half))


def _metrics(y: np.ndarray, score: np.ndarray, flagged: np.ndarray) -> dict[str, Any]:
    y, flagged = y.astype(bool), flagged.astype(bool)
    fraud = int(y.sum())
    caught = int(flagged[y].sum())
    return {"rows": len(y), "fraud": fraud,
            "auc": float(roc_auc_score(y, score)) if 0 < fraud < len(y) else None,
            "recall": caught / fraud if fraud else None,
            "recall_ci95": wilson(caught, fraud) if fraud else None,
            "false_positive_rate": float(flagged[~y].mean()) if fraud < len(y) else None}


def _severity(drop: float | None, bound: float) -> str:
    if drop is None or drop <= bound / 2:
        return "none"
    return "low" if drop <= bound else "medium" if drop <= 2 * bound else "high"


def performance(scores: pd.DataFrame, truth: pd.DataFrame | None, champion: dict[str, Any] | None,
                windows: int = 4, recall_drop: float = 0.2, auc_drop: float = 0.05, min_fraud: int = 20,
                threshold: float = 0.5, positive: str = "fraud", budget: float | None = 0.01) -> dict[str, Any]:
    """``scores``: event_id, score and decision (or only score: flagged at ``threshold``), and
    scored_at (epoch ms) for the windows. ``truth``: event_id, is_fraud (the positive label:
    fraud, or a purchase for propensity), scenario.
    ``champion``: {"auc", "recall", "fraud_rate", "scenarios", "source"} or None.

    Besides the realized metrics on the labelled rows, ``estimated`` (overall and per window)
    holds the metrics estimated from the scores' calibrated probabilities over every score,
    labelled or not (drift.estimate; ``budget``: the share of rows an alert budget flags)."""
    out: dict[str, Any] = {"rows_labelled": 0, "severity": "none", "champion": champion, "windows": []}
    scored = scores[scores["score"].notna()] if "score" in scores else scores.iloc[:0]

    def flags(df: pd.DataFrame) -> np.ndarray:
        return (df["decision"].isin(FLAGGED).to_numpy() if "decision" in df
                else df["score"].astype(float).to_numpy() >= threshold)

    # estimated from the calibrated probabilities of every score in the window (drift.estimate),
    # labelled or not: known before the labels arrive
    if len(scored):
        out["estimated"] = estimate(scored["score"].astype(float).to_numpy(), flags(scored), budget)
        if "scored_at" in scored and scored["scored_at"].notna().any():
            t_all = scored["scored_at"].astype(float).to_numpy()
            edges = np.linspace(np.nanmin(t_all), np.nanmax(t_all) + 1, windows + 1)
            for lo, hi in zip(edges[:-1], edges[1:], strict=True):
                m = (t_all >= lo) & (t_all < hi)
                if m.any():
                    part = scored[m]
                    out["windows"].append({"from_ms": int(lo), "to_ms": int(hi), **_metrics(*([np.array([])] * 3)),
                                           "estimated": estimate(part["score"].astype(float).to_numpy(), flags(part),
                                                                 budget)})
    if truth is None or truth.empty or "event_id" not in scores:
        out["note"] = "no fraud feedback available" if positive == "fraud" else "no matured labels yet"
        return out
    joined = scored.merge(truth[["event_id", "is_fraud", "scenario"]], on="event_id", how="inner")
    if joined.empty:
        out["note"] = "no ground truth has arrived yet for the scores in the window"
        return out
    y = joined["is_fraud"].astype(bool).to_numpy()
    score = joined["score"].astype(float).to_numpy()
    flagged = flags(joined)
    out.update(rows_labelled=len(joined), **_metrics(y, score, flagged))
    out["fraud_rate"] = float(y.mean())
    scenario = joined["scenario"].astype(str).to_numpy()
    out["scenarios"] = {}
    for s in sorted(set(scenario[y])):
        m = y & (scenario == s)
        out["scenarios"][s] = {"fraud": int(m.sum()), "recall": float(flagged[m].mean())}
    if out["windows"]:  # the realized metrics of each window's labelled rows, beside the estimate
        t = joined["scored_at"].astype(float).to_numpy()
        for w in out["windows"]:
            m = (t >= w["from_ms"]) & (t < w["to_ms"])
            w.update(_metrics(y[m], score[m], flagged[m]))
    if not champion:
        out["note"] = "no champion ground-truth metrics to compare with"
        return out
    if out["fraud"] < min_fraud:
        out["note"] = f"only {out['fraud']} {positive} labels (at least {min_fraud} needed to judge a drop)"
        return out
    recall_d = champion["recall"] - out["recall"] if champion.get("recall") is not None else None
    auc_d = champion["auc"] - out["auc"] if champion.get("auc") is not None and out["auc"] is not None else None
    out["recall_drop"], out["auc_drop"] = recall_d, auc_d
    out["severity"] = max(_severity(recall_d, recall_drop), _severity(auc_d, auc_drop),
                          key=("none", "low", "medium", "high").index)
    return out


def purchase_labels(scores: pd.DataFrame, purchases: pd.DataFrame, window_ms: int, now_ms: int) -> pd.DataFrame:
    """Ground truth of purchase propensity: each scored click (``event_id``, ``user_id``,
    ``session_id``, ``event_time``) whose label window has passed by ``now_ms`` is positive
    when its session has a purchase in (event_time, event_time + window]; younger ones are
    left out (not known yet). The training labels' definition (training/labels.py; there a
    purchase in the same millisecond counts when it sorts after the click)."""
    matured = scores[scores["event_time"].astype("int64") + window_ms <= now_ms]
    rows = matured[["event_id", "user_id", "session_id", "event_time"]]
    hits = rows.merge(purchases.rename(columns={"event_time": "purchase_time"}), on=["user_id", "session_id"])
    dt = hits["purchase_time"].astype("int64") - hits["event_time"].astype("int64")
    bought = set(hits.loc[(dt > 0) & (dt <= window_ms), "event_id"])
    return pd.DataFrame({"event_id": rows["event_id"].to_numpy(),
                         "is_fraud": rows["event_id"].isin(bought).to_numpy(), "scenario": "purchase"})


def run_metrics(run_id: str, client: Any) -> tuple[dict[str, Any] | None, dict[str, str]]:
    """A training run's test metrics on its own labels (for purchase propensity these are
    ground truth: the purchases that followed) and its params and tags."""
    run = client.get_run(run_id)
    m, params = run.data.metrics, {**run.data.params, **run.data.tags}
    if m.get("test_auc") is None:
        return None, params
    return ({"auc": m["test_auc"], "recall": m.get("test_recall"), "scenarios": ["purchase"],
             "source": f"run {run_id[:8]} test set at training"}, params)


def champion_metrics(run_id: str, client: Any) -> dict[str, Any] | None:
    """The champion's ground-truth metrics at training (reports/ground_truth.json of its run)."""
    import json
    from pathlib import Path

    import mlflow

    try:
        local = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="reports/ground_truth.json")
        gt = json.loads(Path(local).read_text())
    except Exception:  # trained without ground truth (--no-ground-truth, or no feedback yet)
        return None
    model = gt.get("model") or {}
    if not gt.get("rows_with_feedback") or model.get("recall") is None:
        return None
    training = gt.get("training") or {}
    scenarios = set(gt.get("per_scenario", {})) | set(training.get("scenarios", []))  # test and training rows
    return {"auc": model.get("auc"), "recall": model["recall"], "fraud_rate": gt["fraud"] / gt["rows_with_feedback"],
            "scenarios": sorted(scenarios), "source": f"run {run_id[:8]} ground truth at training"}
