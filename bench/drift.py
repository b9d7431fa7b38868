"""Drift benchmark.

- ``drift_1m``: reference and current of 1M rows x 30 features (18 continuous, 6 counts, 6
  flags; a third of them shifted by various amounts), every test of ``drift.stats.compare``
  (KS or chi-square, PSI, Benjamini-Hochberg): wall time. Baseline, in the same run: the naive
  per-feature loop a data scientist would write with scipy and numpy (``ks_2samp``,
  ``chi2_contingency`` on ``np.unique`` counts, ``np.quantile`` + ``np.histogram`` PSI). The
  two must agree: the largest KS statistic and PSI differences are in the params.

- ``drift_quality_1m``: the data-quality checks (``drift.quality.check``: schema, dtype,
  missing, unseen categories, range, constant) on the same frames. Baseline: a pandas loop
  per column (``isna``, Python sets of values, ``between``).
- ``drift_domain_classifier``: the multivariate check (``drift.multivariate``: LightGBM
  domain classifier, 2-fold cross-fitted, on 10,000 sampled rows a side). Baseline: the same
  classifier on every row with a 70/30 split (what one writes first, no sampling).
- ``drift_check_1m``: the whole check but I/O: the three above, the five segments' statistics
  (at most 20,000 sampled rows a side each) and the performance estimate on 1M scores
  (intervals drawn on a 50,000-row sample); against the naive versions of the five; goal under 5 s.
- ``drift_segments_1m``, ``drift_estimate_1m``: those two parts alone, against the naive scipy
  loop on every row of each segment, and the same 400 draws in a Python loop with sklearn.

Env: BENCH_DRIFT_ROWS (default 1,000,000).
"""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np

from bench.common import write_result

FEATURES = 30


def data(rows: int, seed: int = 0) -> tuple[list[str], dict[str, np.ndarray], dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    cols, ref, cur = [], {}, {}
    for i in range(FEATURES):
        shift = (0.0, 0.02, 0.1, 0.5)[i % 4] if i % 3 else 0.0  # a third unshifted, the rest by 2-50%
        kind = "flag" if i % 5 == 0 else "count" if i % 5 == 1 else "amount"
        name = f"{kind}_{i}"
        if kind == "flag":
            ref[name] = (rng.random(rows) < 0.1).astype(float)
            cur[name] = (rng.random(rows) < 0.1 * (1 + shift)).astype(float)
        elif kind == "count":
            ref[name] = rng.poisson(1.0, rows).astype(float)
            cur[name] = rng.poisson(1.0 * (1 + shift), rows).astype(float)
        else:
            ref[name] = rng.lognormal(3.0, 1.0, rows)
            cur[name] = rng.lognormal(3.0 + shift, 1.0, rows)
        cols.append(name)
    return cols, ref, cur


def naive(cols: list[str], ref: dict[str, np.ndarray], cur: dict[str, np.ndarray]) -> dict[str, tuple[float, float]]:
    """What one would write first: scipy per feature, no shared sorting, no threads."""
    from scipy import stats as ss

    out = {}
    for c in cols:
        r, k = ref[c], cur[c]
        if len(np.unique(r)) <= 12:
            cats = np.unique(np.concatenate([r, k]))
            table = np.array([[np.sum(r == v) for v in cats], [np.sum(k == v) for v in cats]], dtype=float)
            stat = ss.chi2_contingency(table[:, table.sum(0) > 0], correction=False)[0]
            pr, pc = table[0] / table[0].sum(), table[1] / table[1].sum()
        else:
            stat = ss.ks_2samp(r, k).statistic
            edges = np.quantile(r, np.linspace(0, 1, 11))
            edges[0], edges[-1] = -np.inf, np.inf
            pr = np.histogram(r, edges)[0] / len(r)
            pc = np.histogram(k, edges)[0] / len(k)
        pr, pc = np.maximum(pr, 1e-4), np.maximum(pc, 1e-4)
        out[c] = (float(stat), float(np.sum((pc - pr) * np.log(pc / pr))))
    return out


def run(console: Any) -> list[dict[str, Any]]:
    from drift import stats

    rows = int(os.environ.get("BENCH_DRIFT_ROWS", "1000000"))
    cols, ref, cur = data(rows)
    console.print(f"  {rows:,} rows x {len(cols)} features on each side; vectorised compare ...")
    stats.compare(cols[:2], {c: ref[c][:1000] for c in cols[:2]}, {c: cur[c][:1000] for c in cols[:2]}, 0.05)
    t0 = time.perf_counter()
    result = stats.compare(cols, ref, cur, 0.05, "bh")
    fast = time.perf_counter() - t0
    console.print(f"  {fast:.2f} s; naive scipy loop ...")
    t0 = time.perf_counter()
    slow = naive(cols, ref, cur)
    baseline = time.perf_counter() - t0
    # KS statistics and continuous PSI must match; chi-square differs where we merge rare
    # categories (the naive loop does not, so its expected counts can fall under 5)
    ks_diff = max(abs(r.statistic - slow[r.feature][0]) for r in result if r.test == "ks")
    psi_diff = max(abs(r.psi - slow[r.feature][1]) for r in result if r.test == "ks")
    shifted = [r.feature for r in result if r.effective in ("medium", "high")]
    import pandas as pd

    from drift import quality
    from drift.multivariate import domain_classifier

    ref_df, cur_df = pd.DataFrame(ref), pd.DataFrame(cur)
    console.print(f"  {baseline:.2f} s; data quality ...")
    t0 = time.perf_counter()
    issues = quality.check(ref_df, cur_df, cols)
    q_fast = time.perf_counter() - t0
    t0 = time.perf_counter()
    naive_issues = naive_quality(ref_df, cur_df, cols)
    q_slow = time.perf_counter() - t0
    console.print(f"  {q_fast:.2f} s vs naive {q_slow:.2f} s; domain classifier ...")
    t0 = time.perf_counter()
    domain = domain_classifier(cols, ref, cur)
    d_fast = time.perf_counter() - t0
    t0 = time.perf_counter()
    naive_auc = naive_domain(cols, ref, cur)
    d_slow = time.perf_counter() - t0
    console.print(f"  {d_fast:.2f} s (AUC {domain.auc:.3f}) vs every row {d_slow:.2f} s (AUC {naive_auc:.3f})")
    import argparse

    from drift.cli import segment_drift
    from drift.estimate import estimate

    rng = np.random.default_rng(1)
    for df in (ref_df, cur_df):  # the segments' flags: channel and MCC risk group
        online = rng.random(len(df)) < 0.3
        df["channel_online"], df["channel_atm"] = online.astype(float), (~online & (rng.random(len(df)) < 0.2))
        df["mcc_high_risk"] = (rng.random(len(df)) < 0.1).astype(float)
    seg_args = argparse.Namespace(significance_level=0.05, correction="bh", wasserstein_threshold=0.1,
                                  js_threshold=0.1, seed=0)
    t0 = time.perf_counter()
    segments = segment_drift(ref_df, cur_df, cols, seg_args)
    s_fast = time.perf_counter() - t0
    t0 = time.perf_counter()
    naive_segments(ref_df, cur_df, cols)
    s_slow = time.perf_counter() - t0
    p = rng.beta(0.3, 20, rows)  # a window of 1M calibrated scores
    t0 = time.perf_counter()
    est = estimate(p, p >= 0.05, budget=0.01)
    e_fast = time.perf_counter() - t0
    t0 = time.perf_counter()
    naive_estimate(p, p >= 0.05)
    e_slow = time.perf_counter() - t0
    console.print(f"  segments {s_fast:.2f} s ({len(segments)}) vs every row {s_slow:.2f} s; performance estimate "
                  f"on {rows:,} scores {e_fast:.2f} s vs a loop of draws {e_slow:.2f} s")
    common = {"rows": rows, "features": len(cols), "threads": os.cpu_count()}
    return [write_result(
        "drift_1m", "wall time of every drift test on 1M x 30 features", fast, "s", False,
        "naive per-feature scipy loop", baseline,
        {"rows": rows, "features": len(cols), "threads": os.cpu_count(), "tests": {t: sum(r.test == t for r in result)
                                                                                   for t in ("ks", "chi2")},
         "flagged_medium_or_high": len(shifted), "max_ks_statistic_difference": ks_diff,
         "max_continuous_psi_difference": psi_diff, "goal_s": 5.0}),
        write_result("drift_quality_1m", "wall time of the data-quality checks on 1M x 30 features", q_fast, "s",
                     False, "pandas loop per column", q_slow,
                     {**common, "issues": len(issues), "naive_issues": naive_issues}),
        write_result("drift_domain_classifier", "wall time of the domain classifier (10k sampled rows a side)",
                     d_fast, "s", False, "the same classifier on every row, 70/30 split", d_slow,
                     {**common, "auc": domain.auc, "auc_interval": [domain.low, domain.high],
                      "naive_auc": naive_auc, "top_features": domain.top_features}),
        write_result("drift_segments_1m", "wall time of the five segments' statistics (20k sampled rows a side)",
                     s_fast, "s", False, "the naive scipy loop on every row of each segment", s_slow,
                     {**common, "segments": len(segments)}),
        write_result("drift_estimate_1m", "wall time of the performance estimate on 1M scores (intervals on 50k)",
                     e_fast, "s", False, "the same 400 draws on the same 50k rows in a Python loop with sklearn",
                     e_slow, {**common, "interval_rows": est.get("interval_rows")}),
        write_result("drift_check_1m", "wall time of the whole check (statistics, quality, domain classifier, "
                     "segments, performance estimate) on 1M x 30 features", fast + q_fast + d_fast + s_fast + e_fast,
                     "s", False, "the naive versions of the five", baseline + q_slow + d_slow + s_slow + e_slow,
                     {**common, "goal_s": 5.0, "segments": len(segments),
                      "parts_s": {"statistics": fast, "quality": q_fast, "domain_classifier": d_fast,
                                  "segments": s_fast, "performance_estimate": e_fast},
                      "estimate_interval_rows": est.get("interval_rows")})]


def naive_segments(ref: Any, cur: Any, cols: list[str]) -> None:
    """Each segment's rows filtered with pandas, then the naive scipy loop on all of them."""
    for flag, value in (("channel_online", 1), ("channel_atm", 1), ("channel_online", 0), ("mcc_high_risk", 1),
                        ("mcc_high_risk", 0)):
        r, c = ref[ref[flag] == value], cur[cur[flag] == value]
        naive(cols, {k: r[k].to_numpy() for k in cols}, {k: c[k].to_numpy() for k in cols})


def naive_estimate(p: np.ndarray, flagged: np.ndarray, draws: int = 400, rows: int = 50_000) -> None:
    """The same label draws on the same sample size, one draw at a time with sklearn's metrics."""
    from sklearn.metrics import precision_score, recall_score, roc_auc_score

    rng = np.random.default_rng(0)
    keep = rng.choice(len(p), rows, replace=False)
    q, f = p[keep], flagged[keep]
    for _ in range(draws):
        y = rng.random(rows) < q
        recall_score(y, f), precision_score(y, f, zero_division=0), roc_auc_score(y, q)


def naive_quality(ref: Any, cur: Any, cols: list[str]) -> int:
    """Per column with pandas and Python sets: missing share, values not seen, range."""
    issues = 0
    for c in cols:
        issues += int(cur[c].isna().mean() > ref[c].isna().mean())
        if ref[c].nunique() <= 12:
            issues += int(bool(set(cur[c].dropna().tolist()) - set(ref[c].dropna().tolist())))
        else:
            issues += int((~cur[c].between(ref[c].min(), ref[c].max())).mean() > 0.01)
        issues += int(cur[c].nunique() == 1 and ref[c].nunique() > 1)
    return issues


def naive_domain(cols: list[str], ref: dict[str, np.ndarray], cur: dict[str, np.ndarray]) -> float:
    import lightgbm as lgb
    from sklearn.metrics import roc_auc_score

    x = np.vstack([np.column_stack([ref[c] for c in cols]), np.column_stack([cur[c] for c in cols])])
    y = np.concatenate([np.zeros(len(ref[cols[0]])), np.ones(len(cur[cols[0]]))])
    test = np.random.default_rng(0).random(len(y)) < 0.3
    params = {"objective": "binary", "num_leaves": 15, "learning_rate": 0.1, "verbose": -1, "num_threads": 2}
    model = lgb.train(params, lgb.Dataset(x[~test], y[~test]), num_boost_round=100)
    return float(roc_auc_score(y[test], model.predict(x[test])))
