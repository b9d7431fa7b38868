"""Synthetic frames shared by the drift tests in process and through the CLI."""

from __future__ import annotations

import numpy as np
import pandas as pd


def scored(n: int, fraud: int, caught: int, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    is_fraud = np.zeros(n, bool)
    is_fraud[rng.choice(n, fraud, replace=False)] = True
    flagged = np.zeros(n, bool)
    flagged[np.flatnonzero(is_fraud)[:caught]] = True
    score = np.where(flagged, 0.9, np.where(is_fraud, 0.3, rng.random(n) * 0.4))
    scores = pd.DataFrame({"event_id": [f"e{i}" for i in range(n)], "score": score,
                           "decision": np.where(flagged, "decline", "approve"), "scored_at": np.arange(n) * 1000})
    truth = pd.DataFrame({"event_id": scores["event_id"], "is_fraud": is_fraud,
                          "scenario": np.where(is_fraud, "card_testing", "legit")})
    return scores, truth


def feed(n: int, rng: np.random.Generator) -> pd.DataFrame:
    online = (rng.random(n) < 0.3).astype(int)
    return pd.DataFrame({"amount": rng.lognormal(3, 1, n), "txn_count_5m": rng.poisson(1, n).astype(float),
                         "velocity_score": rng.random(n), "channel_online": online,
                         "channel_atm": ((rng.random(n) < 0.2) & (online == 0)).astype(int),
                         "mcc_high_risk": (rng.random(n) < 0.1).astype(int), "hour_of_day": rng.integers(0, 24, n)})
