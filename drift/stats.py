"""Drift statistics, vectorised (one pass per feature over sorted arrays, no per-row Python).

- Continuous features: two-sample Kolmogorov-Smirnov.
- Categorical and binary features: chi-square on the 2 x k contingency table, rare
  categories merged into one bin so that every expected count is at least 5.
- Every feature: PSI with quantile bins of the reference (smoothed), as an effect size.

Severity of a p-value as in seed 002: p >= a none, >= a/10 low, >= a/100 medium, else high.
PSI bands as in seed 004: < 0.1 healthy, 0.1-0.25 warning, >= 0.25 critical. With many
samples a negligible shift is still "significant", so a feature's effective severity is
capped at low while its PSI is healthy.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np
from scipy import stats

SEVERITIES = ("none", "low", "medium", "high")
Correction = Literal["none", "bonferroni", "bh"]
#: categorical by definition (binary flags, hour of day); other columns with at most
#: this many distinct integer values in the reference are treated as categorical too
CATEGORICAL = {"is_weekend", "has_high_risk_mcc", "mcc_high_risk", "channel_online", "channel_atm", "hour_of_day",
               "is_view", "is_add_to_cart", "is_purchase", "device_mobile", "device_tablet", "decision"}
MAX_CATEGORIES = 12


def severity(p: float, alpha: float) -> str:
    if p >= alpha:
        return "none"
    if p >= alpha / 10:
        return "low"
    if p >= alpha / 100:
        return "medium"
    return "high"


def psi_band(value: float) -> str:
    return "healthy" if value < 0.1 else "warning" if value < 0.25 else "critical"


def psi(reference: np.ndarray, current: np.ndarray, bins: int = 10, eps: float = 1e-4) -> float:
    """PSI over quantile bins of the reference, or over the values themselves when the
    reference has few distinct ones (flags, counts: quantile bins would collapse)."""
    values = np.unique(reference)
    if len(values) <= MAX_CATEGORIES:
        cats, inverse = np.unique(np.concatenate([reference, current]), return_inverse=True)
        r = np.bincount(inverse[: len(reference)], minlength=len(cats)).astype(float)
        c = np.bincount(inverse[len(reference):], minlength=len(cats)).astype(float)
    else:
        inner = np.unique(np.quantile(reference, np.linspace(0, 1, bins + 1)))[1:-1]
        r = np.bincount(np.searchsorted(inner, reference, side="right"), minlength=len(inner) + 1).astype(float)
        c = np.bincount(np.searchsorted(inner, current, side="right"), minlength=len(inner) + 1).astype(float)
    r, c = np.maximum(r / r.sum(), eps), np.maximum(c / c.sum(), eps)
    return float(np.sum((c - r) * np.log(c / r)))


def ks(reference: np.ndarray, current: np.ndarray) -> tuple[float, float]:
    res = stats.ks_2samp(reference, current, method="asymp")
    return float(res.statistic), float(res.pvalue)


def chi_square(reference: np.ndarray, current: np.ndarray) -> tuple[float, float, int]:
    """Chi-square of homogeneity; categories whose expected count would be under 5 are merged
    (smallest first) into one bin. Returns (statistic, p, bins used)."""
    cats, inverse = np.unique(np.concatenate([reference, current]), return_inverse=True)
    r = np.bincount(inverse[: len(reference)], minlength=len(cats)).astype(float)
    c = np.bincount(inverse[len(reference):], minlength=len(cats)).astype(float)
    order = np.argsort(r + c)  # rarest first
    r, c = r[order], c[order]
    n_r, n_c = r.sum(), c.sum()
    share_c = n_c / (n_r + n_c)
    # merge the rarest categories until the merged bin and every other bin expect >= 5
    k = 0
    while k < len(r) - 1:
        total = (r[: k + 1].sum() + c[: k + 1].sum())
        if min(total * share_c, total * (1 - share_c)) >= 5 or k == len(r) - 2:
            break
        k += 1
    r = np.concatenate([[r[: k + 1].sum()], r[k + 1:]]) if k else r
    c = np.concatenate([[c[: k + 1].sum()], c[k + 1:]]) if k else c
    keep = (r + c) > 0
    table = np.vstack([r[keep], c[keep]])
    if table.shape[1] < 2:
        return 0.0, 1.0, int(table.shape[1])
    stat, p, _, _ = stats.chi2_contingency(table, correction=False)
    return float(stat), float(p), int(table.shape[1])


def adjust(pvalues: np.ndarray, method: Correction) -> np.ndarray:
    """Bonferroni, or Benjamini-Hochberg (false discovery rate) adjusted p-values."""
    p = np.asarray(pvalues, dtype=float)
    m = len(p)
    if method == "none" or m == 0:
        return p
    if method == "bonferroni":
        return np.minimum(p * m, 1.0)
    order = np.argsort(p)
    ranked = p[order] * m / np.arange(1, m + 1)
    ranked = np.minimum.accumulate(ranked[::-1])[::-1]
    out = np.empty(m)
    out[order] = np.minimum(ranked, 1.0)
    return out


@dataclass
class FeatureDrift:
    feature: str
    test: str  # "ks" | "chi2"
    statistic: float
    p_value: float
    p_adjusted: float
    psi: float
    psi_band: str
    severity: str  # from the adjusted p-value, seed 002's bands
    effective: str  # capped at "low" while PSI is healthy
    n_reference: int
    n_current: int
    missing_current: int

    def to_dict(self) -> dict:
        return asdict(self)


def is_categorical(name: str, reference: np.ndarray) -> bool:
    if name in CATEGORICAL:
        return True
    finite = reference[np.isfinite(reference)]
    return bool(len(finite) and np.all(finite == np.round(finite)) and len(np.unique(finite)) <= MAX_CATEGORIES)


def compare(columns: list[str], reference: dict[str, np.ndarray], current: dict[str, np.ndarray], alpha: float,
            correction: Correction = "none") -> list[FeatureDrift]:
    rows = []
    for name in columns:
        ref = np.asarray(reference[name], dtype=float)
        cur_all = np.asarray(current[name], dtype=float)
        ref = ref[np.isfinite(ref)]
        cur = cur_all[np.isfinite(cur_all)]
        if len(ref) == 0 or len(cur) == 0:
            raise ValueError(f"feature {name!r} has no values in the {'reference' if len(ref) == 0 else 'current'} "
                             "data")
        if is_categorical(name, ref):
            stat, p, _ = chi_square(ref, cur)
            test = "chi2"
        else:
            stat, p = ks(ref, cur)
            test = "ks"
        value = psi(ref, cur)
        rows.append(FeatureDrift(name, test, stat, p, p, value, psi_band(value), "none", "none", len(ref), len(cur),
                                 int(len(cur_all) - len(cur))))
    adjusted = adjust(np.array([r.p_value for r in rows]), correction)
    for r, p in zip(rows, adjusted, strict=True):
        r.p_adjusted = float(p)
        r.severity = severity(r.p_adjusted, alpha)
        r.effective = r.severity if r.psi_band != "healthy" else min(r.severity, "low", key=SEVERITIES.index)
    return rows


def overall(rows: list[FeatureDrift], prediction: FeatureDrift | None) -> tuple[str, list[str]]:
    """The worst effective severity (the prediction's PSI band critical counts as high),
    and recommended actions."""
    worst = max([r.effective for r in rows] + ([prediction.effective] if prediction else ["none"]),
                key=SEVERITIES.index)
    if prediction is not None and prediction.psi_band == "critical":
        worst = "high"
    actions: list[str] = []
    drifted = [r.feature for r in rows if r.effective in ("medium", "high")]
    if drifted:
        actions.append(f"investigate the shifted features: {', '.join(drifted[:8])}"
                       + (" ..." if len(drifted) > 8 else ""))
    if prediction is not None and prediction.effective in ("medium", "high"):
        actions.append("prediction distribution moved: compare recent decisions and review rates with the reference")
    if worst in ("medium", "high"):
        actions.append("retrain on recent data (python training/train.py) and let the gate compare it with the "
                       "champion")
    elif worst == "low":
        actions.append("keep watching: small, statistically visible shifts")
    else:
        actions.append("no action needed")
    return worst, actions
