"""Labels from matured ground truth, and the ground-truth gate.

**Maturity.** Fraud feedback (a chargeback) arrives days after the transaction. A row is
labelled only once the delay its feedback could still take has passed (``maturity_ms``): by
its feedback when one arrived, else as legit. Younger rows are *unknown* and are left out of
feedback training and of every ground-truth evaluation: "not reported yet" is never counted as
legit, and a young row already reported is left out too, because keeping only the young rows
that were reported would over-represent fraud in the newest traffic.

**Label modes** (``train.py --labels``):
- ``rules``: the rule labels of core.rules (the cold start);
- ``feedback``: matured ground truth only (unknown rows left out);
- ``combined``: matured ground truth where it exists, the rule label as a weak label on the
  unknown (young) rows, so the newest traffic still teaches the model something;
- ``auto``: ``rules`` until at least ``min_fraud`` matured fraud labels exist, then whichever of
  ``feedback`` and ``combined`` scores the higher ground-truth PR-AUC on the validation rows.

**The ground-truth gate.** With at least ``min_fraud`` matured fraud cases in the holdout, the
challenger must beat the champion there, with confidence: recall at the alert budget (the
share of traffic the team can review), with a paired bootstrap 95% interval on the recall
difference that must exclude zero. Precision at the budget, PR-AUC and card precision@k are
reported beside it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

DAY_MS = 86_400_000
LABEL_MODES = ("auto", "rules", "feedback", "combined")


@dataclass
class TruthLabels:
    """Ground truth per row: ``y`` (1 fraud, 0 legit) where ``known``, and why a row is unknown;
    ``w``: inverse-propensity weights for evaluation (1 / the probability the row's outcome
    was observed; 1 without selection)."""

    y: np.ndarray  # int8; meaningful where known
    known: np.ndarray  # bool
    scenario: np.ndarray  # object; "" where unknown
    summary: dict[str, int] = field(default_factory=dict)
    w: np.ndarray | None = None


def matured(event_time: np.ndarray, now_ms: int, maturity_ms: int) -> np.ndarray:
    """Rows whose feedback window has closed: no report can still arrive."""
    return np.asarray(event_time, dtype=np.int64) <= now_ms - maturity_ms


def known(event_time: np.ndarray, now_ms: int, maturity_ms: int, has: np.ndarray, declined: np.ndarray
          ) -> np.ndarray:
    """Rows whose outcome is known: matured, and either reported or not declined (a declined
    transaction gets no chargeback, so its silence says nothing)."""
    return matured(event_time, now_ms, maturity_ms) & (np.asarray(has, dtype=bool) | ~np.asarray(declined, dtype=bool))


def summary(event_time: np.ndarray, now_ms: int, maturity_ms: int, has: np.ndarray, fraud: np.ndarray,
            declined: np.ndarray) -> dict[str, int]:
    """What the ground truth says about these rows (``truth_labels``' summary)."""
    old = matured(event_time, now_ms, maturity_ms)
    has, declined = np.asarray(has, dtype=bool), np.asarray(declined, dtype=bool)
    ok = known(event_time, now_ms, maturity_ms, has, declined)
    return {"with_feedback": int(has.sum()), "matured_silent": int((old & ~has & ~declined).sum()),
            "declined_unlabelled": int((declined & ~has).sum()), "unknown_young": int((~old).sum()),
            "fraud": int((np.asarray(fraud, dtype=bool) & has)[ok].sum())}


def truth_labels(aligned: pd.DataFrame, event_time: np.ndarray, now_ms: int, maturity_ms: int,
                 declined: np.ndarray | None = None, label_probability: np.ndarray | None = None) -> TruthLabels:
    """``aligned``: per row, ``is_fraud`` (NA where no feedback arrived) and ``scenario``.

    Selection bias: a declined transaction gets no chargeback, so its silence says nothing;
    with ``declined`` (the bank's decisions) such rows stay unknown however old. A would-be
    decline approved for exploration was observed with ``label_probability`` (< 1): its weight
    in evaluation is the inverse."""
    has = aligned["is_fraud"].notna().to_numpy()
    fraud = aligned["is_fraud"].astype("boolean").fillna(False).to_numpy(dtype=bool)
    blind = np.zeros(len(has), dtype=bool) if declined is None else np.asarray(declined, dtype=bool)
    y = (fraud & has).astype(np.int8)
    scen = np.where(has, aligned["scenario"].fillna("").astype(str).to_numpy(), "")
    w = None if label_probability is None else 1.0 / np.clip(np.asarray(label_probability, dtype=np.float64),
                                                             1e-6, 1.0)
    return TruthLabels(y, known(event_time, now_ms, maturity_ms, has, blind), scen,
                       summary(event_time, now_ms, maturity_ms, has, fraud, blind), w)


def combined(truth: TruthLabels, rule_y: np.ndarray) -> np.ndarray:
    """Ground truth where known, the rule label (weak) elsewhere."""
    return np.where(truth.known, truth.y, np.asarray(rule_y, dtype=np.int8)).astype(np.int8)


# -- metrics at an alert budget ------------------------------------------------------------
def budget_threshold(p: np.ndarray, budget: float) -> float:
    """The score at or above which the top ``budget`` share of rows is flagged."""
    k = max(1, int(round(budget * len(p))))
    return float(np.sort(p)[::-1][min(k, len(p)) - 1])


def at_budget(y: np.ndarray, p: np.ndarray, budget: float, w: np.ndarray | None = None) -> dict[str, float]:
    """Recall and precision when the top ``budget`` share of rows is reviewed (``w``: inverse-
    propensity weights, so that an explored decline counts for the declines it stands for)."""
    w = np.ones(len(y)) if w is None else w
    flag = p >= budget_threshold(p, budget)
    fraud = y == 1
    tp = float(w[flag & fraud].sum())
    return {"recall": tp / max(1e-12, float(w[fraud].sum())), "precision": tp / max(1e-12, float(w[flag].sum())),
            "flagged": int(flag.sum())}


def card_precision_at_k(cards: np.ndarray, days: np.ndarray, y: np.ndarray, p: np.ndarray, k: int) -> float:
    """The fraud-detection handbook's metric: per day, the share of the k cards with the highest
    score that had a fraud that day, averaged over days."""
    df = pd.DataFrame({"card": cards, "day": days, "y": y, "p": p})
    per = df.groupby(["day", "card"]).agg(p=("p", "max"), y=("y", "max")).reset_index()
    vals = [g.nlargest(k, "p")["y"].mean() for _, g in per.groupby("day")]
    return float(np.mean(vals)) if vals else float("nan")


def paired_bootstrap(y: np.ndarray, p_new: np.ndarray, p_old: np.ndarray, budget: float, n_boot: int = 1000,
                     seed: int = 0, w: np.ndarray | None = None) -> tuple[float, float, float]:
    """(observed recall difference new - old at the budget, 2.5% and 97.5% bootstrap quantiles).
    Each model's budget threshold is fixed on the whole holdout; rows are resampled in pairs
    (the same rows for both models), so the interval is on the difference itself."""
    f_new = p_new >= budget_threshold(p_new, budget)
    f_old = p_old >= budget_threshold(p_old, budget)
    fraud = np.flatnonzero(y == 1)
    if len(fraud) == 0:
        return 0.0, 0.0, 0.0
    # recall only depends on the fraud rows: resample the holdout, keep its fraud rows' flags
    wf = np.ones(len(fraud)) if w is None else np.asarray(w, dtype=np.float64)[fraud]
    hit_new, hit_old = f_new[fraud] * wf, f_old[fraud] * wf
    rng = np.random.default_rng(seed)
    diffs = np.empty(n_boot)
    n, m = len(y), len(fraud)
    for b in range(n_boot):
        # rows drawn from the whole holdout; the fraud ones among them define recall
        draws = rng.binomial(n, m / n) if n > m else m
        idx = rng.integers(0, m, size=max(1, draws))
        diffs[b] = (hit_new[idx].sum() - hit_old[idx].sum()) / wf[idx].sum()
    observed = float((hit_new.sum() - hit_old.sum()) / wf.sum())
    lo, hi = np.quantile(diffs, [0.025, 0.975])
    return observed, float(lo), float(hi)


def report(y: np.ndarray, p: np.ndarray, budget: float, cards: np.ndarray, days: np.ndarray, k: int,
           w: np.ndarray | None = None) -> dict[str, float]:
    from sklearn import metrics as skm

    out: dict[str, float] = {**at_budget(y, p, budget, w), "fraud": int(y.sum()), "rows": len(y)}
    if 0 < y.sum() < len(y):
        out["pr_auc"] = float(skm.average_precision_score(y, p, sample_weight=w))
        out["auc"] = float(skm.roc_auc_score(y, p, sample_weight=w))
    out["card_precision_at_k"] = card_precision_at_k(cards, days, y, p, k)
    return out


@dataclass
class GroundTruthVerdict:
    decides: bool  # enough matured fraud in the holdout
    passed: bool
    detail: str
    evidence: dict[str, Any]


def gate(y: np.ndarray, p_new: np.ndarray, p_old: np.ndarray | None, budget: float, cards: np.ndarray,
         days: np.ndarray, min_fraud: int = 50, k: int = 50, n_boot: int = 1000, seed: int = 0,
         w: np.ndarray | None = None) -> GroundTruthVerdict:
    """Judge a challenger on the matured holdout (``y`` ground truth, rows already restricted to
    known ones; ``w`` their inverse-propensity weights) against the champion's scores on the
    same rows (None: no champion)."""
    fraud = int(y.sum())
    new = report(y, p_new, budget, cards, days, k, w)
    evidence: dict[str, Any] = {"budget": budget, "holdout_rows": len(y), "holdout_fraud": fraud, "challenger": new}
    if fraud < min_fraud:
        return GroundTruthVerdict(False, True, f"{fraud} matured fraud cases in the holdout (< {min_fraud}): "
                                               "ground truth does not decide yet", evidence)
    if p_old is None:
        return GroundTruthVerdict(True, True, f"no comparable champion; recall {new['recall']:.3f} at budget "
                                              f"{budget:.2%} on {fraud} fraud cases", evidence)
    old = report(y, p_old, budget, cards, days, k, w)
    diff, lo, hi = paired_bootstrap(y, p_new, p_old, budget, n_boot, seed, w)
    evidence.update(champion=old, recall_diff=diff, recall_diff_ci=[lo, hi])
    passed = lo > 0
    detail = (f"recall at budget {budget:.2%}: {new['recall']:.3f} vs champion {old['recall']:.3f} "
              f"(diff {diff:+.3f}, 95% CI [{lo:+.3f}, {hi:+.3f}]"
              + (", excludes zero" if passed else ", includes zero or below: not a confident win")
              + f"); precision {new['precision']:.3f} vs {old['precision']:.3f} on {fraud} fraud cases")
    return GroundTruthVerdict(True, passed, detail, evidence)
