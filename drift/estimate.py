"""Performance before the labels arrive: confidence-based performance estimation (CBPE, as
NannyML's). Fraud feedback takes days to weeks; until then realized recall is unknown. If the
served probabilities are calibrated (the champion's are: drift is judged on its
``fraud_probability``, calibrated on its validation set at training, training/calibration.py),
each scored transaction is fraud with probability p, so the confusion matrix has an expected
value and a distribution:

- expected frauds = sum p; expected caught (true positives) = sum of p over the flagged;
  precision = caught / flagged; recall = caught / frauds; false-positive rate likewise;
- recall at the alert budget: the same when the top ``budget`` share of scores is flagged;
- AUC: the chance that a fraud outranks a legitimate transaction, with each pair weighted by
  p_i (1 - p_j) (ties count a half);
- 95 % intervals: labels drawn from the probabilities ``draws`` times, the metrics computed on
  each draw, their 2.5 and 97.5 percentiles (the spread of the realized metric if the
  calibration holds).

Where it fails: the estimate is only as good as the calibration. A shift that changes how
likely a given score is to be fraud (new fraud the model scores low, concept drift) is exactly
what it cannot see: it keeps estimating the old recall. It is marked "estimated" everywhere
and shown beside the realized metric once labels arrive (drift.performance).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.stats import rankdata


def expected_auc(p: np.ndarray, score: np.ndarray) -> float | None:
    """AUC expected when row i is fraud with probability p_i (independently)."""
    p = np.asarray(p, float)
    order = np.argsort(score, kind="stable")
    s, w_pos, w_neg = np.asarray(score, float)[order], p[order], 1 - p[order]
    # negative mass strictly below each row, and within its tie group (counted a half)
    starts = np.searchsorted(s, s, "left")
    ends = np.searchsorted(s, s, "right")
    cum_neg = np.concatenate([[0.0], np.cumsum(w_neg)])
    below = cum_neg[starts]
    tied = cum_neg[ends] - cum_neg[starts] - w_neg  # the others in its group
    num = float(np.sum(w_pos * (below + 0.5 * tied)))
    den = float(w_pos.sum() * w_neg.sum() - np.sum(w_pos * w_neg))
    return num / den if den > 0 else None


#: the intervals are drawn on at most this many rows (a random sample; the values use every
#: row): draws x rows booleans must fit in memory, and a sample's intervals are wider, so
#: conservative
MAX_DRAW_ROWS = 50_000


def estimate(p: np.ndarray, flagged: np.ndarray, budget: float | None = None, draws: int = 400,
             seed: int = 0) -> dict[str, Any]:
    """Estimated precision, recall, false-positive rate and AUC of rows with calibrated fraud
    probabilities ``p`` and the served decisions ``flagged``; recall at ``budget`` (a share of
    rows flagged by top score) when given. Each metric: {"value", "ci95"}."""
    p = np.clip(np.asarray(p, float), 0.0, 1.0)
    flagged = np.asarray(flagged, bool)
    n = len(p)
    out: dict[str, Any] = {"rows": n, "expected_fraud": float(p.sum()), "draws": draws}
    if n == 0:
        return out
    top = None
    if budget is not None:
        k = int(round(budget * n))
        top = np.zeros(n, bool)
        top[np.argsort(-p, kind="stable")[:k]] = True
        out["budget"] = budget
    rng = np.random.default_rng(seed)
    values = _values(p, flagged, top)
    if n > MAX_DRAW_ROWS:  # the intervals from a sample (wider: conservative), the values from all
        keep = np.sort(rng.choice(n, MAX_DRAW_ROWS, replace=False))
        p, flagged, top = p[keep], flagged[keep], (top[keep] if top is not None else None)
        n = MAX_DRAW_ROWS
        out["interval_rows"] = n
    y = rng.random((draws, n)) < p  # one labelling per row of y
    frauds = y.sum(1)
    caught = (y & flagged).sum(1)
    fp = (~y & flagged).sum(1)

    def ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
        return np.where(den > 0, num / np.maximum(den, 1), np.nan)

    def summary(point: float | None, sample: np.ndarray) -> dict[str, Any]:
        sample = sample[np.isfinite(sample)]
        ci = [float(np.percentile(sample, 2.5)), float(np.percentile(sample, 97.5))] if len(sample) else None
        return {"value": point, "ci95": ci}

    out["recall"] = summary(values["recall"], ratio(caught, frauds))
    out["precision"] = summary(values["precision"], ratio(caught, np.full(draws, int(flagged.sum()))))
    out["false_positive_rate"] = summary(values["false_positive_rate"], ratio(fp, n - frauds))
    if top is not None:
        out["recall_at_budget"] = summary(values["recall_at_budget"], ratio((y & top).sum(1), frauds))
    # AUC of each draw from the ranks (the scores are fixed, only the labels vary)
    ranks = rankdata(p)
    n_pos = frauds.astype(float)
    auc = np.where((n_pos > 0) & (n_pos < n),
                   (y @ ranks - n_pos * (n_pos + 1) / 2) / np.maximum(n_pos * (n - n_pos), 1), np.nan)
    out["auc"] = summary(values["auc"], auc)
    return out


def _values(p: np.ndarray, flagged: np.ndarray, top: np.ndarray | None) -> dict[str, float | None]:
    """The expected confusion matrix's metrics over every row."""
    e_fraud, e_caught = float(p.sum()), float(p[flagged].sum())
    e_flagged, e_legit = int(flagged.sum()), float((1 - p).sum())
    return {"recall": e_caught / e_fraud if e_fraud > 0 else None,
            "precision": e_caught / e_flagged if e_flagged else None,
            "false_positive_rate": float((1 - p[flagged]).sum()) / e_legit if e_legit > 0 else None,
            "recall_at_budget": (float(p[top].sum()) / e_fraud if e_fraud > 0 else None) if top is not None else None,
            "auc": expected_auc(p, p)}
