"""Probability calibration chosen on the validation set, and its exact twin inside the
ONNX graph (so serving needs nothing but the graph)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import brier_score_loss, roc_auc_score


@dataclass
class Calibrator:
    method: str  # "isotonic" | "sigmoid" | "none"
    a: float = 0.0  # sigmoid: p' = 1 / (1 + exp(a * p + b))
    b: float = 0.0
    x: np.ndarray | None = None  # isotonic: piecewise-linear knots (clipped at the ends)
    y: np.ndarray | None = None

    def __call__(self, p: np.ndarray) -> np.ndarray:
        p = np.asarray(p, dtype=np.float64)
        if self.method == "sigmoid":
            return 1.0 / (1.0 + np.exp(self.a * p + self.b))
        if self.method == "isotonic":
            assert self.x is not None and self.y is not None
            return np.interp(np.clip(p, self.x[0], self.x[-1]), self.x, self.y)
        return p

    def describe(self) -> dict:
        out: dict = {"method": self.method}
        if self.method == "sigmoid":
            out.update(a=self.a, b=self.b)
        if self.method == "isotonic" and self.x is not None:
            out["knots"] = len(self.x)
        return out


def _fit(method: str, p: np.ndarray, y: np.ndarray) -> Calibrator:
    if method == "sigmoid":
        # Platt scaling on the raw probability, as sklearn's _SigmoidCalibration
        lr = LogisticRegression(C=1e6, max_iter=1000).fit(p.reshape(-1, 1), y)
        return Calibrator("sigmoid", a=-float(lr.coef_[0, 0]), b=-float(lr.intercept_[0]))
    iso = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(p, y)
    x, yy = np.asarray(iso.X_thresholds_, dtype=np.float64), np.asarray(iso.y_thresholds_, dtype=np.float64)
    if len(x) < 2:
        x, yy = np.array([0.0, 1.0]), np.array([yy[0] if len(yy) else 0.0] * 2)
    return Calibrator("isotonic", x=x, y=yy)


def choose(p_val: np.ndarray, y_val: np.ndarray, seed: int = 42, max_auc_loss: float = 5e-4,
           min_isotonic_positives: int = 1000) -> tuple[Calibrator, dict[str, float]]:
    """Fit isotonic and sigmoid on one half of the validation set, compare Brier scores on
    the other half (and the uncalibrated model), refit the winner on the whole set.

    Isotonic regression flattens scores into steps; ties cost ranking quality (AUC), so a
    method that loses more than ``max_auc_loss`` AUC on the held-out half is not chosen."""
    if y_val.sum() < 4 or (len(y_val) - y_val.sum()) < 4:
        return Calibrator("none"), {"none": float("nan")}
    rng = np.random.default_rng(seed)
    idx = rng.permutation(len(y_val))
    a, b = idx[: len(idx) // 2], idx[len(idx) // 2:]
    ranked = len(np.unique(y_val[b])) == 2
    auc_none = roc_auc_score(y_val[b], p_val[b]) if ranked else 0.0
    scores = {"none": float(brier_score_loss(y_val[b], p_val[b]))}
    # isotonic needs many positives to be more than a coarse staircase
    methods = ("isotonic", "sigmoid") if y_val.sum() >= min_isotonic_positives else ("sigmoid",)
    for method in methods:
        if y_val[a].min() == y_val[a].max():
            continue
        p_cal = _fit(method, p_val[a], y_val[a])(p_val[b])
        if ranked and roc_auc_score(y_val[b], p_cal) < auc_none - max_auc_loss:
            continue
        scores[method] = float(brier_score_loss(y_val[b], p_cal))
    best = min(scores, key=lambda k: scores[k])
    return (Calibrator("none") if best == "none" else _fit(best, p_val, y_val)), scores
