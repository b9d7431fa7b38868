"""Train / validation / test splits: time-ordered by default, stratified random as an
option; with ``group`` no entity (``group_key``: a card for fraud, a user for
personalization) appears on both sides of any split."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from training.errors import DataError

METHODS = ("time", "stratified")


@dataclass
class Split:
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray


def _check_sizes(val_size: float, test_size: float) -> None:
    if not (0 < test_size < 1 and 0 < val_size < 1 and val_size + test_size < 0.9):
        raise DataError(f"bad split sizes: validation {val_size}, test {test_size} (each in (0, 1), "
                        "together below 0.9)")


def split(df: pd.DataFrame, y: np.ndarray, method: str = "time", val_size: float = 0.1,
          test_size: float = 0.1, group: bool = False, seed: int = 42, group_key: str = "card_id") -> Split:
    _check_sizes(val_size, test_size)
    n = len(df)
    if method not in METHODS:
        raise DataError(f"unknown split {method!r}; one of {', '.join(METHODS)}")
    if group:
        return _group_split(df, y, method, val_size, test_size, seed, group_key)
    idx = np.arange(n)
    if method == "time":
        order = np.argsort(df["event_time"].to_numpy(), kind="stable")
        n_test, n_val = round(n * test_size), round(n * val_size)
        return Split(order[: n - n_test - n_val], order[n - n_test - n_val: n - n_test], order[n - n_test:])
    strat = y if np.bincount(y, minlength=2).min() >= 3 else None
    rest, test = train_test_split(idx, test_size=test_size, stratify=strat, random_state=seed)
    strat_rest = y[rest] if strat is not None else None
    train, val = train_test_split(rest, test_size=val_size / (1 - test_size), stratify=strat_rest,
                                  random_state=seed)
    return Split(np.sort(train), np.sort(val), np.sort(test))


def _group_split(df: pd.DataFrame, y: np.ndarray, method: str, val_size: float, test_size: float,
                 seed: int, key: str = "card_id") -> Split:
    """Whole entities (cards, users) go to one side. ``time``: entities ordered by their first
    event (the newest are the test set); ``stratified``: shuffled, then assigned greedily so
    each side gets about its share of rows."""
    if key not in df:
        raise DataError(f"a group split needs the {key} column")
    cards = df[key].to_numpy()
    first = df.groupby(key, sort=False)["event_time"].min()
    if method == "time":
        order = first.sort_values(kind="stable").index.to_numpy()
    else:
        order = first.index.to_numpy()
        np.random.default_rng(seed).shuffle(order)
    sizes = df.groupby(key, sort=False).size().reindex(order).to_numpy()
    cum = np.cumsum(sizes) / sizes.sum()
    side = np.where(cum <= 1 - test_size - val_size, 0, np.where(cum <= 1 - test_size, 1, 2))
    card_side = dict(zip(order, side, strict=True))
    row_side = np.fromiter((card_side[c] for c in cards), dtype=np.int8, count=len(cards))
    parts = [np.flatnonzero(row_side == s) for s in (0, 1, 2)]
    if any(len(p) == 0 for p in parts):
        what = "cards" if key == "card_id" else "users" if key == "user_id" else f"{key} values"
        raise DataError(f"too few {what} for a group split; drop --group-split or add data")
    return Split(*parts)
