"""Data quality of the current data against the reference, per column (before any drift
statistic: a broken feed is not a drifted population, and retraining on it would be wrong).

Checks, each with a severity in drift's scale (none/low/medium/high). A finding counts
(medium or high) only when chance cannot explain it: the current sample is small in the first
minutes of a stack, and one row in 40 is already 2.5 %. So each check has a null rate (what an
unchanged feed would show) and a finding is medium only when a one-sided binomial test rejects
that rate at ``P_VALUE`` (1e-4) and it affects at least 1 % of rows; high from 10 %; else low.

- ``schema``: a column the reference has and the current data lacks: high;
- ``dtype``: values that are not numbers where the reference has numbers (strings in a numeric
  column); null rate 0, so medium from 3 such rows and 0.1 %;
- ``missing``: missing values (NaN, null, infinite); null rate the reference's share (at least
  one in the reference's rows + 1);
- ``unseen_category``: values of a categorical column (``drift.stats.CATEGORICAL``: flags, hour
  of day) that the reference never had (a flag that is neither 0 nor 1, an hour of 24); null
  rate one in the reference's rows + 1;
- ``out_of_range``: values of any other column below the reference's minimum or above its
  maximum; null rate 2 / (reference rows + 1), the chance that a new draw of the same
  distribution falls outside the range of the reference's;
- ``new_category`` (``check_categories``): a value of the request's category columns (MCC,
  country, channel) that the reference never had, against the Good-Turing share of unseen
  values;
- ``constant``: a column at one value in every current row while it varies in the reference
  (a stuck sensor, a default filled in): medium when the reference's share of that value, to the
  power of the current rows, is under ``P_VALUE`` (and there are at least 20 rows).

Thresholds are deliberately coarse: these are failures of the feed, not subtle shifts.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from drift.stats import CATEGORICAL, SEVERITIES


@dataclass
class QualityIssue:
    column: str
    check: str
    severity: str
    detail: str
    #: rows concerned in the current data, and their share
    rows: int = 0
    share: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _numbers(col: pd.Series) -> tuple[np.ndarray, int]:
    """The column as floats, and how many present values were not numbers."""
    values = pd.to_numeric(col, errors="coerce")
    not_numbers = int((values.isna() & col.notna()).sum())
    return values.to_numpy(dtype=float), not_numbers


P_VALUE = 1e-4


def _severity(k: int, n: int, null_rate: float, min_share: float = 0.01) -> str:
    """Severity of k rows of n against what an unchanged feed shows (``null_rate``)."""
    if k == 0:
        return "none"
    from scipy.stats import binom

    share = k / max(1, n)
    if share < min_share or float(binom.sf(k - 1, n, min(1.0, null_rate))) >= P_VALUE:
        return "low"
    return "high" if share >= 0.10 else "medium"


def check(reference: pd.DataFrame, current: pd.DataFrame, columns: list[str]) -> list[QualityIssue]:
    """Every issue of ``columns`` (those the reference has) in ``current``; worst first."""
    issues: list[QualityIssue] = []
    n = len(current)
    for c in columns:
        if c not in reference.columns:
            continue
        if c not in current.columns:
            issues.append(QualityIssue(c, "schema", "high", "missing from the current data", n, 1.0))
            continue
        ref, _ = _numbers(reference[c])
        cur, not_numbers = _numbers(current[c])
        if not_numbers:
            issues.append(QualityIssue(c, "dtype", _severity(not_numbers, n, 0.0, 0.001) if not_numbers >= 3 else "low",
                                       f"{not_numbers} values are not numbers (e.g. {_example(current[c])!r})",
                                       not_numbers, not_numbers / max(1, n)))
        ref_ok, cur_ok = np.isfinite(ref), np.isfinite(cur)
        ref_missing = 1 - float(ref_ok.mean()) if len(ref) else 0.0
        missing = int(n - cur_ok.sum()) - not_numbers
        share = missing / max(1, n)
        if missing and share > ref_missing:
            issues.append(QualityIssue(c, "missing", _severity(missing, n, max(ref_missing, 1 / (len(ref) + 1))),
                                       f"{share:.1%} missing (reference {ref_missing:.1%})", missing, share))
        ref_v, cur_v = ref[ref_ok], cur[cur_ok]
        if not len(ref_v) or not len(cur_v):
            continue
        if c in CATEGORICAL:  # (counts, with few values too, are judged by their range)
            known = np.unique(ref_v)
            new = ~np.isin(cur_v, known)
            k = int(new.sum())
            if k:
                shown = ", ".join(f"{v:g}" for v in np.unique(cur_v[new])[:5])
                issues.append(QualityIssue(c, "unseen_category", _severity(k, len(cur_v), 1 / (len(ref_v) + 1)),
                                           f"{k} rows with values the reference never had: {shown}", k,
                                           k / len(cur_v)))
        else:
            lo, hi = float(ref_v.min()), float(ref_v.max())
            k = int(((cur_v < lo) | (cur_v > hi)).sum())
            if k:
                issues.append(QualityIssue(c, "out_of_range", _severity(k, len(cur_v), 2 / (len(ref_v) + 1)),
                                           f"{k / len(cur_v):.1%} of values outside the reference's [{lo:g}, {hi:g}]",
                                           k, k / len(cur_v)))
        if len(cur_v) >= 2 and cur_v.min() == cur_v.max() and ref_v.min() != ref_v.max():
            q = float(np.mean(ref_v == cur_v[0]))
            chance = q ** len(cur_v)
            issues.append(QualityIssue(c, "constant", "medium" if chance < P_VALUE and len(cur_v) >= 20 else "low",
                                       f"always {cur_v[0]:g} in the current data (varies in the reference; "
                                       f"{q:.0%} of its rows have it)", len(cur_v), 1.0))
    issues.sort(key=lambda i: -SEVERITIES.index(i.severity))
    return issues


def check_categories(reference: pd.DataFrame, current: pd.DataFrame, columns: list[str]) -> list[QualityIssue]:
    """``new_category``: values of the request's category columns (an MCC, a country, a
    channel; strings) that the reference never had. Many codes are rare, so an unchanged feed
    shows unseen ones at about the share of the reference's values seen only once (Good and
    Turing's estimate of the unseen mass): that is the null rate of the binomial test. A new
    category is a new pattern more often than a broken feed, so it does not hold the monitor's
    drift trigger back (not in ``FEED_BREAKING``)."""
    issues = []
    for c in columns:
        if c not in reference.columns or c not in current.columns:
            continue
        ref, cur = reference[c].dropna().astype(str), current[c].dropna().astype(str)
        if not len(ref) or not len(cur):
            continue
        counts = ref.value_counts()
        new = ~cur.isin(counts.index)
        k = int(new.sum())
        if not k:
            continue
        singletons = int((counts == 1).sum())
        null_rate = max(1, singletons) / (len(ref) + 1)
        top = cur[new].value_counts().head(5)
        shown = ", ".join(f"{v} ({n})" for v, n in top.items())
        issues.append(QualityIssue(c, "new_category", _severity(k, len(cur), null_rate),
                                   f"{k} rows with values the reference never had: {shown}", k, k / len(cur)))
    return issues


def _example(col: pd.Series) -> Any:
    bad = col[pd.to_numeric(col, errors="coerce").isna() & col.notna()]
    return bad.iloc[0] if len(bad) else None


#: checks that mean the feed itself is broken (no population to judge drift on or retrain on);
#: values out of range may be either a broken feed (units) or a real shift, so they are not
FEED_BREAKING = frozenset({"schema", "dtype", "missing", "unseen_category", "constant"})


def feed_broken(issues: list[QualityIssue]) -> list[QualityIssue]:
    """The issues at medium or high that mean a broken feed."""
    return [i for i in issues if i.check in FEED_BREAKING and i.severity in ("medium", "high")]


def worst(issues: list[QualityIssue]) -> str:
    return max((i.severity for i in issues), key=SEVERITIES.index, default="none")
