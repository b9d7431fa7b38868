"""Drift statistics, vectorised (one pass per feature over sorted arrays, no per-row Python).

- Continuous features: two-sample Kolmogorov-Smirnov.
- Categorical and binary features: chi-square on the 2 x k contingency table, rare
  categories merged into one bin so that every expected count is at least 5.
- Every feature: PSI with quantile bins of the reference (smoothed), as an effect size.

Severity of a p-value as in seed 002: p >= a none, >= a/10 low, >= a/100 medium, else high.
PSI bands as in seed 004: < 0.1 healthy, 0.1-0.25 warning, >= 0.25 critical.

With many samples a negligible shift is still "significant", so a feature's effective
severity is capped at low unless the shift is *material*: its effect size reaches a threshold
or its PSI is not healthy. PSI alone misses real shifts (a quarter-standard-deviation shift,
or amounts 30 % higher, have PSI about 0.07), so the effect size is one that scales with the
feature, as Evidently judges samples of more than 1,000 rows:

- continuous: the Wasserstein (earth mover's) distance between the two samples in units of
  the reference's standard deviation (at least 0.001, as Evidently): a shift of the mean by
  d standard deviations is d; ``WASSERSTEIN_MATERIAL`` 0.1 by default;
- categorical: the Jensen-Shannon distance of the category shares (natural log, so between
  0 and 0.83, as scipy and Evidently); ``JENSEN_SHANNON_MATERIAL`` 0.1 by default.

Both thresholds are settings (``compare``'s arguments, drift_check's ``--wasserstein-threshold``
and ``--js-threshold``, the monitor's ``MONITOR_WASSERSTEIN_THRESHOLD``/``..._JS_THRESHOLD``).
"""

from __future__ import annotations

import os
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
#: a shift is material from this Wasserstein distance (in reference standard deviations) on
WASSERSTEIN_MATERIAL = 0.1
#: a shift of a categorical feature is material from this Jensen-Shannon distance on
JENSEN_SHANNON_MATERIAL = 0.1


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


def _sorted(x: np.ndarray) -> np.ndarray:
    return x if len(x) < 2 or bool(np.all(x[1:] >= x[:-1])) else np.sort(x)


def _distinct(sorted_x: np.ndarray) -> np.ndarray:
    return sorted_x[np.concatenate([[True], sorted_x[1:] != sorted_x[:-1]])] if len(sorted_x) else sorted_x


def _counts(sorted_x: np.ndarray, cats: np.ndarray) -> np.ndarray:
    """How many of ``sorted_x`` equal each of ``cats`` (two binary searches per category)."""
    return (np.searchsorted(sorted_x, cats, "right") - np.searchsorted(sorted_x, cats, "left")).astype(float)


def psi(reference: np.ndarray, current: np.ndarray, bins: int = 10, eps: float = 1e-4) -> float:
    """PSI over quantile bins of the reference, or over the values themselves when the
    reference has few distinct ones (flags, counts: quantile bins would collapse).
    Bin counts come from binary searches into the sorted arrays: O(bins log n)."""
    ref, cur = _sorted(np.asarray(reference, float)), _sorted(np.asarray(current, float))
    values = _distinct(ref)
    if len(values) <= MAX_CATEGORIES:
        cats = np.union1d(values, _distinct(cur))
        r, c = _counts(ref, cats), _counts(cur, cats)
    else:
        # the reference's quantiles (linear interpolation, as np.quantile) read off the sorted array
        pos = np.linspace(0, 1, bins + 1)[1:-1] * (len(ref) - 1)
        lo = np.floor(pos).astype(int)
        inner = np.unique(ref[lo] + (pos - lo) * (ref[np.minimum(lo + 1, len(ref) - 1)] - ref[lo]))
        cut_r = np.concatenate([[0], np.searchsorted(ref, inner, "right"), [len(ref)]])
        cut_c = np.concatenate([[0], np.searchsorted(cur, inner, "right"), [len(cur)]])
        r, c = np.diff(cut_r).astype(float), np.diff(cut_c).astype(float)
    r, c = np.maximum(r / r.sum(), eps), np.maximum(c / c.sum(), eps)
    return float(np.sum((c - r) * np.log(c / r)))


def ks(reference: np.ndarray, current: np.ndarray) -> tuple[float, float]:
    """Two-sample KS (two-sided) with Smirnov's asymptotic p-value, as scipy's
    ``ks_2samp(method="asymp")``, computed from sorted arrays: the largest gap between the two
    empirical CDFs, which can only occur at an observed value."""
    d, p, _ = ks_and_wasserstein(reference, current)
    return d, p


def ks_and_wasserstein(reference: np.ndarray, current: np.ndarray) -> tuple[float, float, float]:
    """``ks`` and, from the same merge, the Wasserstein distance (as scipy's
    ``wasserstein_distance``): the area between the two empirical CDFs."""
    ref, cur = _sorted(np.asarray(reference, float)), _sorted(np.asarray(current, float))
    n1, n2 = len(ref), len(cur)
    # merge the two sorted runs (a stable argsort of two runs is a merge), count each side
    # cumulatively, and read the gap at the last position of every run of equal values
    merged = np.concatenate([ref, cur])
    order = np.argsort(merged, kind="stable")
    values = merged[order]
    seen_ref = np.cumsum(order < n1)
    seen_cur = np.arange(1, n1 + n2 + 1) - seen_ref
    last = np.concatenate([values[1:] != values[:-1], [True]])
    gap = np.abs(seen_ref / n1 - seen_cur / n2)
    d = float(np.max(gap[last]))
    # between consecutive merged values the gap is the one after the left value (within a run
    # of equal values the width is 0)
    w = float(np.dot(gap[:-1], np.diff(values)))
    m, n = sorted([float(n1), float(n2)], reverse=True)
    en = np.round(m * n / (m + n))
    # the exact finite-n distribution costs ~0.35 s per call at n = 500k; beyond 100k effective
    # samples its limit (Kolmogorov's) is within 0.7% relative and errs on the large side
    p = float(np.clip(stats.kstwobign.sf(np.sqrt(en) * d) if en > 100_000 else stats.kstwo.sf(d, en), 0, 1))
    return d, p, w


def wasserstein_effect(reference: np.ndarray, w: float) -> float:
    """A Wasserstein distance in units of the reference's standard deviation (at least 0.001,
    as Evidently's normalization, so that a constant reference does not divide by 0)."""
    return w / max(float(np.std(reference)), 0.001)


def jensen_shannon(reference: np.ndarray, current: np.ndarray) -> float:
    """Jensen-Shannon distance (natural log) between the category shares of two samples, as
    ``scipy.spatial.distance.jensenshannon``: 0 for the same shares, at most sqrt(ln 2)."""
    ref, cur = _sorted(np.asarray(reference, float)), _sorted(np.asarray(current, float))
    cats = np.union1d(_distinct(ref), _distinct(cur))
    p, q = _counts(ref, cats), _counts(cur, cats)
    p, q = p / p.sum(), q / q.sum()
    m = (p + q) / 2

    def kl(a: np.ndarray) -> float:
        nz = a > 0
        return float(np.sum(a[nz] * np.log(a[nz] / m[nz])))

    return float(np.sqrt(max(0.0, (kl(p) + kl(q)) / 2)))


def chi_square(reference: np.ndarray, current: np.ndarray) -> tuple[float, float, int]:
    """Chi-square of homogeneity; categories whose expected count would be under 5 are merged
    (smallest first) into one bin. Returns (statistic, p, bins used)."""
    ref, cur = _sorted(np.asarray(reference, float)), _sorted(np.asarray(current, float))
    cats = np.union1d(_distinct(ref), _distinct(cur))
    r, c = _counts(ref, cats), _counts(cur, cats)
    order = np.argsort(r + c)  # rarest first
    r, c = r[order], c[order]
    n_r, n_c = r.sum(), c.sum()
    share_c = n_c / (n_r + n_c)
    # merge the rarest categories until the merged bin and every other bin expect >= 5 on
    # both sides (the bins are in increasing size: the next one is the smallest left)
    def enough(total: float) -> bool:
        return min(total * share_c, total * (1 - share_c)) >= 5

    k = 0
    while k < len(r) - 1:
        merged = r[: k + 1].sum() + c[: k + 1].sum()
        if (enough(merged) and enough(r[k + 1] + c[k + 1])) or k == len(r) - 2:
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
    effective: str  # capped at "low" unless the shift is material
    n_reference: int
    n_current: int
    missing_current: int
    #: the effect size: Wasserstein distance in reference standard deviations ("wasserstein")
    #: or Jensen-Shannon distance ("jensen_shannon")
    effect: float = 0.0
    effect_measure: str = "wasserstein"
    #: the effect reached its threshold, or PSI is not healthy: the severity counts in full
    material: bool = False

    def to_dict(self) -> dict:
        return asdict(self)


def is_categorical(name: str, reference: np.ndarray) -> bool:
    if name in CATEGORICAL:
        return True
    values = _distinct(_sorted(reference[np.isfinite(reference)]))
    return bool(len(values) and len(values) <= MAX_CATEGORIES and np.all(values == np.round(values)))


def _one(name: str, reference: np.ndarray, current: np.ndarray) -> FeatureDrift:
    """Every statistic of one feature from one sort of each side."""
    cur_all = np.asarray(current, dtype=float)
    ref = np.asarray(reference, dtype=float)
    ref = np.sort(ref[np.isfinite(ref)])
    cur = np.sort(cur_all[np.isfinite(cur_all)])
    if len(ref) == 0 or len(cur) == 0:
        raise ValueError(f"feature {name!r} has no values in the {'reference' if len(ref) == 0 else 'current'} data")
    if is_categorical(name, ref):
        stat, p, _ = chi_square(ref, cur)
        test, effect, measure = "chi2", jensen_shannon(ref, cur), "jensen_shannon"
    else:
        stat, p, w = ks_and_wasserstein(ref, cur)
        test, effect, measure = "ks", wasserstein_effect(ref, w), "wasserstein"
    value = psi(ref, cur)
    return FeatureDrift(name, test, stat, p, p, value, psi_band(value), "none", "none", len(ref), len(cur),
                        int(len(cur_all) - len(cur)), effect, measure)


def compare(columns: list[str], reference: dict[str, np.ndarray], current: dict[str, np.ndarray], alpha: float,
            correction: Correction = "none", threads: int | None = None,
            wasserstein_threshold: float = WASSERSTEIN_MATERIAL,
            js_threshold: float = JENSEN_SHANNON_MATERIAL) -> list[FeatureDrift]:
    """Compare every column; features run on a thread pool (numpy's sorts and binary searches
    release the GIL), one per core by default. A feature's effective severity is its severity
    when the shift is material (effect size at its threshold, or PSI not healthy), else at
    most low."""
    from concurrent.futures import ThreadPoolExecutor

    workers = max(1, min(len(columns), threads or os.cpu_count() or 1))
    if workers == 1:
        rows = [_one(c, reference[c], current[c]) for c in columns]
    else:
        with ThreadPoolExecutor(workers) as pool:
            rows = list(pool.map(lambda c: _one(c, reference[c], current[c]), columns))
    adjusted = adjust(np.array([r.p_value for r in rows]), correction)
    for r, p in zip(rows, adjusted, strict=True):
        r.p_adjusted = float(p)
        r.severity = severity(r.p_adjusted, alpha)
        threshold = js_threshold if r.effect_measure == "jensen_shannon" else wasserstein_threshold
        r.material = r.effect >= threshold or r.psi_band != "healthy"
        r.effective = r.severity if r.material else min(r.severity, "low", key=SEVERITIES.index)
    return rows


def overall(rows: list[FeatureDrift], prediction: FeatureDrift | None) -> tuple[str, list[str]]:
    """The worst effective severity (the prediction's PSI band critical counts as high when its
    test finds a shift too), and recommended actions."""
    worst = max([r.effective for r in rows] + ([prediction.effective] if prediction else ["none"]),
                key=SEVERITIES.index)
    # a critical PSI of the score is high drift when the test finds the shift too: on a few
    # dozen scores PSI is critical by noise alone (its expected value is about bins/n)
    if prediction is not None and prediction.psi_band == "critical" and prediction.severity != "none":
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
