"""Batch scoring a day at a time: each ``date=`` folder of the offline log is one task (a
transaction's feature rows, their revisions and its raw event share its event time and so
its day), run in-process or on a Dask cluster (core/cluster.py) with the same code.

A task reads its day (only the columns and rows in range), keeps each transaction's latest
feature row, joins its raw fields, checks the rows as training does and scores them with
the model's ONNX graph; the rows equal ``training.dataset.load``'s for the same range. Event
ids that appear on more than one card are found first over the whole range (two columns of
the raw log) and left out, as ``load`` leaves them out.

Personalization scores the same way, a day of the click log per task, with
``training.dataset.load_clicks``' rows (a click's latest user-feature row joined with its
raw fields).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from core import storage
from training.dataset import (
    CLICK_COLUMNS,
    TXN_COLUMNS,
    _day,
    _read,
    check,
    click_fields_frame,
    join_clicks,
    join_transactions,
    txn_fields_frame,
)
from training.errors import DataError

FEATURES = "card_txn_features"
TRANSACTIONS = "transactions"
CLICK_FEATURES = "user_click_features"
CLICKS = "clicks"
#: per task: the feature log its days are the folders of
DAY_FOLDERS = {"fraud": FEATURES, "personalization": CLICK_FEATURES}
TIER_COLUMN = {"fraud": "risk_tier", "personalization": "tier"}


def days(root: Path | str | storage.Root, start_ms: int | None = None, end_ms: int | None = None,
         task: str = "fraud") -> list[str]:
    """The days of the feature log within [start, end) (its ``date=`` folders), oldest first."""
    folder = storage.root(root) / DAY_FOLDERS[task]
    found = [d.removeprefix("date=") for d in folder.dirs() if d.startswith("date=")]
    lo = _day(start_ms) if start_ms is not None else None
    hi = _day(end_ms) if end_ms is not None else None
    return [d for d in found if (lo is None or d >= lo) and (hi is None or d <= hi)]


def ambiguous_event_ids(root: Path | storage.Root, start_ms: int | None, end_ms: int | None,
                        place: Any = None) -> set[str]:
    """Event ids on more than one card within the range (two columns of the raw log). On a
    cluster (``place`` with a client) the days are read by the workers and the ids grouped
    by a Dask shuffle, so this process holds only the answer; else read here."""
    root = storage.root(root)
    if place is not None and place.client is not None:
        import dask.dataframe as dd

        todo = [(root, d, start_ms, end_ms) for d in storage.root(root / TRANSACTIONS).dirs()
                if d.startswith("date=") and _in_range(d.removeprefix("date="), start_ms, end_ms)]
        if not todo:
            return set()
        pairs = dd.from_map(_day_ids, todo, meta=pd.DataFrame({"event_id": pd.Series(dtype=object),
                                                               "card_id": pd.Series(dtype=object)}))
        counts = pairs.drop_duplicates(split_out=len(todo))["event_id"].value_counts(split_out=len(todo))
        return set(counts[counts > 1].index.compute())
    ids = _read(root / TRANSACTIONS, ["event_id", "card_id"], (start_ms, end_ms))
    if ids.empty:
        return set()
    cards = ids.drop_duplicates().groupby("event_id")["card_id"].nunique()
    return set(cards[cards > 1].index)


def _in_range(day: str, start_ms: int | None, end_ms: int | None) -> bool:
    return (start_ms is None or day >= _day(start_ms)) and (end_ms is None or day <= _day(end_ms))


def _day_ids(args: tuple[storage.Root, str, int | None, int | None]) -> pd.DataFrame:
    """The (event id, card id) pairs of one day of the raw transactions log."""
    root, day, start_ms, end_ms = args
    rng = _day_range(day.removeprefix("date="), start_ms, end_ms)
    ids = _read(root / TRANSACTIONS, ["event_id", "card_id"], rng)
    if ids.empty:
        return pd.DataFrame({"event_id": pd.Series(dtype=object), "card_id": pd.Series(dtype=object)})
    return ids[["event_id", "card_id"]].drop_duplicates().astype(object)


@dataclass(frozen=True)
class ScoreTask:
    """One day to score (everything a Dask worker needs, picklable)."""

    root: storage.Root
    day: str
    onnx: bytes
    features: tuple[str, ...]
    threshold: float
    high: float
    medium: float
    start_ms: int | None = None
    end_ms: int | None = None
    ambiguous: frozenset[str] = frozenset()
    #: a folder to write the day's scores to (``date=<day>/<name>.parquet``); None: returned
    parquet: str | None = None
    name: str = "scores"
    task: str = "fraud"


def day_rows(root: Path | str | storage.Root, day: str, start_ms: int | None, end_ms: int | None,
             ambiguous: frozenset[str] | set[str] = frozenset()) -> pd.DataFrame:
    """The training rows of one day of the log (``load``'s, restricted to the day)."""
    from streaming.sinks import latest_feature_rows

    root = storage.root(root)
    rng = _day_range(day, start_ms, end_ms)
    feats = _read(root / FEATURES, time_range=rng)  # (the date= partition prunes the other days)
    if feats.empty:
        return feats
    txns = _read(root / TRANSACTIONS, TXN_COLUMNS, rng)
    if txns.empty:
        raise DataError(f"no raw transactions under {root / TRANSACTIONS / f'date={day}'}: the offline log is "
                        "incomplete")
    df = join_transactions(latest_feature_rows(feats, "card_id"), txns)
    if ambiguous:
        df = df[~df["event_id"].isin(ambiguous)]
    df = df.sort_values(["event_time", "event_key"], kind="stable").reset_index(drop=True)
    for name, col in txn_fields_frame(df).items():
        df[name] = col
    df.attrs["raw_rows"] = len(feats)  # (feature rows read, revisions included)
    return df


def click_day_rows(root: Path | str | storage.Root, day: str, start_ms: int | None, end_ms: int | None
                   ) -> pd.DataFrame:
    """The personalization rows of one day of the click log (``load_clicks``', restricted to
    the day)."""
    from streaming.sinks import latest_feature_rows

    root = storage.root(root)
    rng = _day_range(day, start_ms, end_ms)
    feats = _read(root / CLICK_FEATURES, time_range=rng)
    if feats.empty:
        return feats
    clicks = _read(root / CLICKS, CLICK_COLUMNS, rng)
    if clicks.empty:
        raise DataError(f"no raw clicks under {root / CLICKS / f'date={day}'}: the offline log is incomplete")
    df = join_clicks(latest_feature_rows(feats, "user_id"), clicks)
    df = df.sort_values(["event_time", "event_key"], kind="stable").reset_index(drop=True)
    for name, col in click_fields_frame(df).items():
        df[name] = col
    return df


def _day_range(day: str, start_ms: int | None, end_ms: int | None) -> tuple[int, int]:
    lo = int(pd.Timestamp(day, tz="UTC").value // 1_000_000)
    return (max(lo, start_ms) if start_ms is not None else lo,
            min(lo + 86_400_000, end_ms) if end_ms is not None else lo + 86_400_000)


def scores_frame(task: str, df: pd.DataFrame, p: np.ndarray, threshold: float, high: float, medium: float
                 ) -> pd.DataFrame:
    """The scores of ``df``'s rows as written: ids, event time, probability, tier (and, for
    fraud, the decision at the model's threshold)."""
    when = pd.to_datetime(df["event_time"], unit="ms", utc=True)
    tier = np.where(p >= high, "high", np.where(p >= medium, "medium", "low"))
    if task == "fraud":
        return pd.DataFrame({"event_id": df["event_id"], "card_id": df["card_id"], "event_time": when,
                             "fraud_probability": p, "risk_tier": tier,
                             "decision": np.where(p >= threshold, "review", "approve")})
    return pd.DataFrame({"event_id": df["event_id"], "user_id": df["user_id"], "session_id": df["session_id"],
                         "event_time": when, "purchase_probability": p, "tier": tier})


def score_day(task: ScoreTask) -> pd.DataFrame:
    """One day's scores with tiers (and, for fraud, decisions); written to ``task.parquet``
    when set, and then an empty frame with the row count in ``attrs['rows']`` comes back."""
    from training import export

    fraud = task.task == "fraud"
    df = day_rows(task.root, task.day, task.start_ms, task.end_ms, task.ambiguous) if fraud else \
        click_day_rows(task.root, task.day, task.start_ms, task.end_ms)
    if df.empty:
        return pd.DataFrame()
    check(df, task.features)
    X = df[list(task.features)].to_numpy(dtype=np.float32)  # noqa: N806
    out = scores_frame(task.task, df, export.score(export.session(task.onnx), X), task.threshold, task.high,
                       task.medium)
    if task.parquet is None:
        return out
    folder = Path(task.parquet) / f"date={task.day}"
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{task.name}.parquet.tmp"
    out.to_parquet(tmp, index=False)
    tmp.rename(folder / f"{task.name}.parquet")  # (readers never see half a file; a rerun replaces it)
    written = pd.DataFrame(columns=out.columns)
    written.attrs.update(rows=len(out), tiers=out[TIER_COLUMN[task.task]].value_counts().to_dict())
    return written


def score(place: Any, root: Path | str | storage.Root, onnx: bytes, features: list[str], threshold: float,
          high: float, medium: float, start_ms: int | None = None, end_ms: int | None = None,
          parquet: Path | None = None, name: str = "scores", progress: bool = False, task: str = "fraud") -> Any:
    """Yield each day's scores as its task finishes (``place``: core.cluster.Place); ``task``:
    fraud (transactions) or personalization (clicks)."""
    root = storage.root(root)
    todo = days(root, start_ms, end_ms, task)
    if not todo:
        what = "transactions" if task == "fraud" else "clicks"
        raise DataError(f"no {what} in the offline store ({root / DAY_FOLDERS[task]}) for that time range: run "
                        "`make up` and let the generator run a few minutes, or backfill")
    ambiguous = frozenset(ambiguous_event_ids(root, start_ms, end_ms, place)) if task == "fraud" else frozenset()
    tasks = [ScoreTask(root, d, onnx, tuple(features), threshold, high, medium, start_ms, end_ms, ambiguous,
                       None if parquet is None else str(parquet), name, task) for d in todo]
    yield from place.results(score_day, tasks, progress=progress, desc="scoring days")
