"""The rule-based fraud labels of ARCHITECTURE.md, in one place.

Each rule is named and reads a mapping of features (a dict for one transaction, or a
DataFrame for many: the same expression works on scalars and on columns). Labels use the
features as of just after the transaction (``after_*`` in the offline log); inference uses
the same rules on the pre-transaction view to explain a score.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Rule:
    name: str
    #: the weight of seed 002's training pipeline; a row's rule score is the sum of the
    #: weights of the rules it fires
    weight: float
    description: str
    test: Callable[[Mapping[str, Any]], Any]


RULES: tuple[Rule, ...] = (
    Rule("high_velocity", 0.4, "more than 5 transactions in 5 minutes (velocity score above 0.8)",
         lambda f: (f["velocity_score"] > 0.8) & (f["txn_count_5m"] > 5)),
    Rule("geo_hopping", 0.3, "more than 2 countries in 5 minutes (geo diversity above 0.7)",
         lambda f: (f["geo_diversity_score"] > 0.7) & (f["unique_countries_5m"] > 2)),
    Rule("high_risk_merchant", 0.2, "high-risk merchant with an average above 500 in 5 minutes",
         lambda f: (f["has_high_risk_mcc"] > 0) & (f["amount_avg_5m"] > 500)),
    Rule("night_weekend", 0.1, "weekend spend before 6 am (UTC)",
         lambda f: (f["is_weekend"] > 0) & (f["hour_of_day"] < 6)),
    Rule("large_single", 0.3, "one purchase above 1000 with no other in 5 minutes",
         lambda f: (f["amount_max_5m"] > 1000) & (f["txn_count_5m"] == 1)),
)
RULE_NAMES = tuple(r.name for r in RULES)
RULE_INPUTS = ("velocity_score", "txn_count_5m", "geo_diversity_score", "unique_countries_5m",
               "has_high_risk_mcc", "amount_avg_5m", "is_weekend", "hour_of_day", "amount_max_5m")


def fired(features: Mapping[str, Any]) -> list[str]:
    """Names of the rules one transaction's features fire."""
    return [r.name for r in RULES if bool(r.test(features))]


def fired_matrix(columns: Mapping[str, Any]) -> np.ndarray:
    """Boolean matrix (rows x rules) over columns of features (a DataFrame or dict of arrays)."""
    return np.column_stack([np.asarray(r.test(columns), dtype=bool) for r in RULES])


def rule_scores(matrix: np.ndarray) -> np.ndarray:
    return matrix.astype(np.float64) @ np.array([r.weight for r in RULES])
