"""Rule-based labels (core.rules) on the features as of just after each transaction."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from core.rules import RULE_INPUTS, RULE_NAMES, fired_matrix, rule_scores
from training.errors import DataError

log = logging.getLogger("training.labels")


@dataclass
class Labels:
    y: np.ndarray  # int8, 1 = fraud
    score: np.ndarray  # the weighted rule score
    fired: np.ndarray  # bool, rows x rules
    mode: str
    names: tuple[str, ...] = RULE_NAMES

    def rule_counts(self) -> dict[str, int]:
        return {name: int(self.fired[:, i].sum()) for i, name in enumerate(self.names)}

    def fired_names(self, row: int) -> list[str]:
        return [name for i, name in enumerate(self.names) if self.fired[row, i]]

    @property
    def rate(self) -> float:
        return float(self.y.mean()) if len(self.y) else 0.0


def after_view(df: pd.DataFrame) -> dict[str, np.ndarray]:
    """The rule inputs as of just after each transaction."""
    return {name: df[f"after_{name}"].to_numpy() for name in RULE_INPUTS}


def label(df: pd.DataFrame, fraud_rate: float | None = None, tie_key: str = "event_key") -> Labels:
    """Fraud when any rule fires; with ``fraud_rate`` the top fraction by rule score instead.

    Top-R never reaches below a score of 0: when fewer rows fire any rule than R asks for,
    only those are fraud (seed 002's pipeline labelled everything fraud in that case). Ties
    at the cut are broken by ``tie_key`` (deterministic, not by row order)."""
    fired = fired_matrix(after_view(df))
    score = rule_scores(fired)
    if fraud_rate is None:
        y = fired.any(axis=1)
        mode = "any rule"
    else:
        if not 0 < fraud_rate < 1:
            raise DataError(f"--fraud-rate must be in (0, 1), got {fraud_rate}")
        want = math.ceil(fraud_rate * len(df))
        positive = int((score > 0).sum())
        if positive < want:
            log.warning("only %d rows fire a rule, fewer than the %d that --fraud-rate %.4g asks for; "
                        "labelling only those", positive, want, fraud_rate)
            want = positive
        order = np.lexsort((df[tie_key].to_numpy(), -score))  # score desc, then tie key
        y = np.zeros(len(df), dtype=bool)
        y[order[:want]] = True
        mode = f"top {fraud_rate:.4g} by rule score"
    return Labels(y.astype(np.int8), score, fired, mode)


def describe(labels: Labels) -> str:
    head = f"{int(labels.y.sum())} positive of {len(labels.y)} ({labels.rate:.2%}, {labels.mode})"
    if not labels.names:
        return head
    return head + "; rules fired: " + ", ".join(f"{n} {c}" for n, c in labels.rule_counts().items())


def purchase_labels(df: pd.DataFrame, window_ms: int) -> Labels:
    """Personalization: a click is positive when its session has a purchase strictly after it
    and within ``window_ms`` (the label looks ahead; the features never do)."""
    order = np.lexsort((df["event_key"].to_numpy(), df["event_time"].to_numpy(), df["session_id"].to_numpy()))
    sess = df["session_id"].to_numpy()[order]
    t = df["event_time"].to_numpy()[order].astype(np.int64)
    purchases = np.flatnonzero(df["action"].to_numpy()[order] == "purchase")
    if len(purchases) == 0:
        y_sorted = np.zeros(len(t), dtype=bool)
    else:
        # the first purchase strictly after each click (in session, time, key order)
        k = np.searchsorted(purchases, np.arange(len(t)), side="right")
        j = purchases[np.minimum(k, len(purchases) - 1)]
        y_sorted = (k < len(purchases)) & (sess[j] == sess) & (t[j] - t <= window_ms)
    y = np.empty(len(t), dtype=np.int8)
    y[order] = y_sorted
    return Labels(y, y.astype(np.float64), np.zeros((len(y), 0), dtype=bool),
                  f"purchase in the session within {window_ms // 60_000} min", names=())
