"""Multivariate drift: a domain classifier. A small gradient-boosted model learns to tell
reference rows from current rows on all features at once; on held-out rows its AUC is 0.5
when the two are the same population and rises with any difference it can use, including a
joint shift that no single feature shows (a correlation that changed sign, say).

- Every feature but the calendar ones (``CALENDAR``), up to ``max_rows`` rows per side (a
  random sample), equal weight per side.
- 2-fold cross-fitting: each half is scored by the model trained on the other half, so every
  row gets an out-of-sample score and the AUC uses them all.
- The AUC's 95 % interval by Hanley and McNeil's standard error.
- The features that separate most: the model's total gain, as shares.
- Severity: none while the interval's lower end is at or below 0.5 or the AUC is under
  ``medium_auc`` (0.6); medium from it, high from ``high_auc`` (0.75).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

MEDIUM_AUC = 0.6
HIGH_AUC = 0.75
#: calendar features are left out: their mix follows the window's hours (drift_check cuts the
#: reference to them, but falls back to the whole reference when too few rows match), and a
#: classifier tells a 1 h window from a day by the hour alone; the univariate table still
#: shows them
CALENDAR = frozenset({"hour_of_day", "is_weekend"})


@dataclass
class DomainDrift:
    auc: float
    low: float
    high: float
    severity: str
    rows_reference: int
    rows_current: int
    #: feature -> share of the classifier's gain, largest first (top 8)
    top_features: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def hanley_mcneil(auc: float, n_pos: int, n_neg: int) -> float:
    """The standard error of an AUC (Hanley & McNeil, 1982)."""
    q1, q2 = auc / (2 - auc), 2 * auc * auc / (1 + auc)
    var = (auc * (1 - auc) + (n_pos - 1) * (q1 - auc * auc) + (n_neg - 1) * (q2 - auc * auc)) / max(1, n_pos * n_neg)
    return math.sqrt(max(var, 0.0))


def _auc(y: np.ndarray, s: np.ndarray) -> float:
    from scipy.stats import rankdata

    ranks = rankdata(s)
    pos = y == 1
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def domain_classifier(columns: list[str], reference: dict[str, np.ndarray], current: dict[str, np.ndarray],
                      max_rows: int = 10_000, seed: int = 0, medium_auc: float = MEDIUM_AUC,
                      high_auc: float = HIGH_AUC) -> DomainDrift:
    import lightgbm as lgb

    columns = [c for c in columns if c not in CALENDAR]
    rng = np.random.default_rng(seed)

    def take(side: dict[str, np.ndarray]) -> np.ndarray:
        x = np.column_stack([np.asarray(side[c], dtype=float) for c in columns])
        return x[rng.choice(len(x), max_rows, replace=False)] if len(x) > max_rows else x

    xr, xc = take(reference), take(current)
    x = np.vstack([xr, xc])
    y = np.concatenate([np.zeros(len(xr), int), np.ones(len(xc), int)])
    # equal weight per side, so an unbalanced sample does not move the AUC's baseline
    w = np.where(y == 1, len(y) / (2 * len(xc)), len(y) / (2 * len(xr)))
    fold = rng.permutation(len(y)) % 2
    scores = np.empty(len(y))
    gain = np.zeros(len(columns))
    params = {"objective": "binary", "num_leaves": 15, "learning_rate": 0.1, "min_data_in_leaf": 20,
              "feature_fraction": 1.0, "verbose": -1, "num_threads": 2, "seed": seed, "deterministic": True}
    for k in (0, 1):
        train, test = fold != k, fold == k
        model = lgb.train(params, lgb.Dataset(x[train], y[train], weight=w[train]), num_boost_round=100)
        scores[test] = model.predict(x[test])
        gain += model.feature_importance("gain")
    auc = _auc(y, scores)
    se = hanley_mcneil(auc, len(xc), len(xr))
    low, high = max(0.0, auc - 1.96 * se), min(1.0, auc + 1.96 * se)
    severity = "none" if low <= 0.5 or auc < medium_auc else "high" if auc >= high_auc else "medium"
    total = gain.sum()
    top = {columns[i]: round(float(gain[i] / total), 3) for i in np.argsort(-gain)[:8] if total > 0 and gain[i] > 0}
    return DomainDrift(auc, low, high, severity, len(xr), len(xc), top)
