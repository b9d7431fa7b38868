"""Metrics, threshold choice, plots and ground-truth reports."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn import metrics as skm

METRIC_NAMES = ("auc", "pr_auc", "precision", "recall", "f1", "log_loss", "brier", "ece")


def choose_threshold(y: np.ndarray, p: np.ndarray, target_precision: float | None = None) -> float:
    """The threshold that maximises F1 on the precision-recall curve, or the lowest one
    (highest recall) whose precision reaches ``target_precision``."""
    if y.sum() == 0:
        return 0.5
    precision, recall, thresholds = skm.precision_recall_curve(y, p)
    precision, recall = precision[:-1], recall[:-1]  # the last point has no threshold
    if target_precision is not None:
        ok = np.flatnonzero(precision >= target_precision)
        if len(ok):
            return float(thresholds[ok[0]])
        return float(thresholds[-1])  # unreachable: the strictest threshold
    f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
    return float(thresholds[int(np.argmax(f1))])


def ece(y: np.ndarray, p: np.ndarray, bins: int = 10) -> float:
    """Expected calibration error over equal-width bins."""
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
    total = 0.0
    for b in range(bins):
        m = which == b
        if m.any():
            total += m.mean() * abs(p[m].mean() - y[m].mean())
    return float(total)


def compute(y: np.ndarray, p: np.ndarray, threshold: float) -> dict[str, float]:
    pred = p >= threshold
    two = len(np.unique(y)) == 2
    return {
        "auc": float(skm.roc_auc_score(y, p)) if two else float("nan"),
        "pr_auc": float(skm.average_precision_score(y, p)) if two else float("nan"),
        "precision": float(skm.precision_score(y, pred, zero_division=0)),
        "recall": float(skm.recall_score(y, pred, zero_division=0)),
        "f1": float(skm.f1_score(y, pred, zero_division=0)),
        "log_loss": float(skm.log_loss(y, np.clip(p, 1e-7, 1 - 1e-7), labels=[0, 1])),
        "brier": float(skm.brier_score_loss(y, p)),
        "ece": ece(y, p),
    }


def rolling(times_ms: np.ndarray, y: np.ndarray, p: np.ndarray, threshold: float) -> pd.DataFrame:
    """Metrics per time window of the test data: per day when it spans days, else per hour."""
    ts = pd.to_datetime(times_ms, unit="ms", utc=True)
    span = (ts.max() - ts.min()) if len(ts) else pd.Timedelta(0)
    freq = "D" if span >= pd.Timedelta(days=3) else "h"
    df = pd.DataFrame({"t": ts.floor(freq), "y": y, "p": p})
    rows = []
    for t, g in df.groupby("t"):
        yy, pp = g["y"].to_numpy(), g["p"].to_numpy()
        two = len(np.unique(yy)) == 2
        rows.append({"window": t, "rows": len(g), "fraud": int(yy.sum()),
                     "auc": skm.roc_auc_score(yy, pp) if two else np.nan,
                     "recall": skm.recall_score(yy, pp >= threshold, zero_division=0),
                     "precision": skm.precision_score(yy, pp >= threshold, zero_division=0)})
    return pd.DataFrame(rows)


def ground_truth_report(truth: pd.DataFrame, y_rules: np.ndarray, p: np.ndarray, threshold: float
                        ) -> dict[str, Any]:
    """How the model (trained on rule labels) and the rules themselves do on the injected
    fraud, overall and per scenario. ``truth`` is aligned with the rows (is_fraud may be NA
    for rows whose feedback has not arrived)."""
    known = truth["is_fraud"].notna().to_numpy()
    if not known.any():
        return {"rows_with_feedback": 0}
    gt = truth["is_fraud"].to_numpy()[known].astype(bool)
    scen = truth["scenario"].to_numpy()[known]
    pk, rk = p[known], y_rules[known].astype(bool)
    flagged = pk >= threshold
    out: dict[str, Any] = {"rows_with_feedback": int(known.sum()), "fraud": int(gt.sum()),
                           "model": {}, "rules": {}, "per_scenario": {}}
    if gt.any() and not gt.all():
        out["model"]["auc"] = float(skm.roc_auc_score(gt, pk))
        out["model"]["pr_auc"] = float(skm.average_precision_score(gt, pk))
    for who, pred in (("model", flagged), ("rules", rk)):
        out[who].update(precision=float(skm.precision_score(gt, pred, zero_division=0)),
                        recall=float(skm.recall_score(gt, pred, zero_division=0)),
                        f1=float(skm.f1_score(gt, pred, zero_division=0)))
    for s in sorted(set(scen[gt])):
        m = gt & (scen == s)
        out["per_scenario"][s] = {"fraud": int(m.sum()), "model_recall": float(flagged[m].mean()),
                                  "rules_recall": float(rk[m].mean())}
    legit = ~gt
    out["false_positive_rate"] = {"model": float(flagged[legit].mean()) if legit.any() else 0.0,
                                  "rules": float(rk[legit].mean()) if legit.any() else 0.0}
    return out


def score_psi(reference: np.ndarray, current: np.ndarray, bins: int = 10) -> float:
    """Population stability index of two sets of probabilities over equal-width bins on [0, 1]
    (Laplace-smoothed): quantile bins of a score piled up near 0 would make sub-0.001
    differences look like a shift. Feature PSI (quantile bins) is drift.stats.psi."""
    if not len(reference) or not len(current):
        return float("nan")
    edges = np.linspace(0.0, 1.0, bins + 1)
    r = np.histogram(np.clip(reference, 0.0, 1.0), edges)[0] + 0.5
    c = np.histogram(np.clip(current, 0.0, 1.0), edges)[0] + 0.5
    r, c = r / r.sum(), c / c.sum()
    return float(np.sum((c - r) * np.log(c / r)))


# -- plots -----------------------------------------------------------------------------
def plots(out: Path, y: np.ndarray, p: np.ndarray, threshold: float, features: list[str],
          importance: np.ndarray, contributions: np.ndarray | None, X: np.ndarray,  # noqa: N803
          roll: pd.DataFrame) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []

    def save(fig: Any, name: str) -> None:
        fig.tight_layout()
        path = out / name
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)

    cm = skm.confusion_matrix(y, p >= threshold, labels=[0, 1])
    fig, ax = plt.subplots(figsize=(4, 3.5))
    skm.ConfusionMatrixDisplay(cm, display_labels=["legit", "fraud"]).plot(ax=ax, colorbar=False)
    ax.set_title(f"threshold {threshold:.3f}")
    save(fig, "confusion_matrix.png")
    if len(np.unique(y)) == 2:
        fig, ax = plt.subplots(figsize=(4.5, 4))
        skm.RocCurveDisplay.from_predictions(y, p, ax=ax)
        save(fig, "roc.png")
        fig, ax = plt.subplots(figsize=(4.5, 4))
        skm.PrecisionRecallDisplay.from_predictions(y, p, ax=ax)
        save(fig, "pr.png")
        fig, ax = plt.subplots(figsize=(4.5, 4))
        from sklearn.calibration import CalibrationDisplay

        CalibrationDisplay.from_predictions(y, p, n_bins=10, strategy="quantile", ax=ax)
        save(fig, "calibration.png")
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.hist(p[y == 0], bins=50, alpha=0.6, label="legit", log=True)
    ax.hist(p[y == 1], bins=50, alpha=0.6, label="fraud", log=True)
    ax.axvline(threshold, color="k", ls="--", lw=1)
    ax.set_xlabel("fraud probability")
    ax.legend()
    save(fig, "score_distribution.png")
    if not roll.empty:
        fig, ax = plt.subplots(figsize=(7, 3.5))
        for col in ("auc", "recall", "precision"):
            ax.plot(roll["window"], roll[col], marker="o", label=col)
        ax.set_ylim(0, 1.05)
        ax.legend()
        ax.set_title("test metrics over time")
        fig.autofmt_xdate()
        save(fig, "rolling_metrics.png")
    order = np.argsort(importance)[::-1][:20]
    fig, ax = plt.subplots(figsize=(6, 5))
    ax.barh([features[i] for i in order][::-1], importance[order][::-1])
    ax.set_title("feature importance")
    save(fig, "feature_importance.png")
    if contributions is not None:
        mean_abs = np.abs(contributions).mean(axis=0)
        top = np.argsort(mean_abs)[::-1][:15]
        fig, ax = plt.subplots(figsize=(7, 5.5))
        rng = np.random.default_rng(0)
        for rank, j in enumerate(top[::-1]):
            v = X[:, j].astype(np.float64)
            lo, hi = np.nanpercentile(v, [2, 98]) if len(v) else (0, 1)
            colour = np.clip((v - lo) / (hi - lo if hi > lo else 1.0), 0, 1)
            ax.scatter(contributions[:, j], rank + rng.uniform(-0.3, 0.3, len(v)), c=colour, cmap="coolwarm",
                       s=4, alpha=0.5)
        ax.set_yticks(range(len(top)), [features[j] for j in top[::-1]])
        ax.axvline(0, color="grey", lw=0.8)
        ax.set_xlabel("contribution to the log-odds (red: high feature value)")
        ax.set_title("per-feature contributions (TreeSHAP)")
        save(fig, "contributions_summary.png")
    return written
