"""Batch scoring a day at a time: each ``date=`` folder of the offline log is one task (a
transaction's feature rows, their revisions and its raw event share its event time and so
its day), run in-process or on a Dask cluster (core/cluster.py) with the same code.

A task reads its day (only the columns and rows in range), keeps each transaction's latest
feature row, joins its raw fields, checks the rows as training does and scores them with
the model's ONNX graph; the rows equal ``training.dataset.load``'s for the same range. Event
ids that appear on more than one card are found first over the whole range (two columns of
the raw log) and left out, as ``load`` leaves them out.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from training.dataset import TXN_COLUMNS, _day, _read, check, join_transactions, txn_fields_frame
from training.errors import DataError

FEATURES = "card_txn_features"
TRANSACTIONS = "transactions"


def days(root: Path, start_ms: int | None = None, end_ms: int | None = None) -> list[str]:
    """The days of the feature log within [start, end) (its ``date=`` folders), oldest first."""
    folder = root / FEATURES
    found = sorted(p.name.removeprefix("date=") for p in folder.glob("date=*") if p.is_dir()) if folder.exists() \
        else []
    lo = _day(start_ms) if start_ms is not None else None
    hi = _day(end_ms) if end_ms is not None else None
    return [d for d in found if (lo is None or d >= lo) and (hi is None or d <= hi)]


def ambiguous_event_ids(root: Path, start_ms: int | None, end_ms: int | None) -> set[str]:
    """Event ids on more than one card within the range (two columns of the raw log)."""
    ids = _read(root / TRANSACTIONS, ["event_id", "card_id"], (start_ms, end_ms))
    if ids.empty:
        return set()
    cards = ids.drop_duplicates().groupby("event_id")["card_id"].nunique()
    return set(cards[cards > 1].index)


@dataclass(frozen=True)
class ScoreTask:
    """One day to score (everything a Dask worker needs, picklable)."""

    root: str
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


def day_rows(root: Path, day: str, start_ms: int | None, end_ms: int | None,
             ambiguous: frozenset[str] | set[str] = frozenset()) -> pd.DataFrame:
    """The training rows of one day of the log (``load``'s, restricted to the day)."""
    from streaming.sinks import latest_feature_rows

    lo = int(pd.Timestamp(day, tz="UTC").value // 1_000_000)
    rng = (max(lo, start_ms) if start_ms is not None else lo,
           min(lo + 86_400_000, end_ms) if end_ms is not None else lo + 86_400_000)
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


def score_day(task: ScoreTask) -> pd.DataFrame:
    """One day's fraud scores with tiers and decisions (written to ``task.parquet`` when set;
    then an empty frame with the row count in ``attrs['rows']`` comes back)."""
    from training import export

    df = day_rows(Path(task.root), task.day, task.start_ms, task.end_ms, task.ambiguous)
    if df.empty:
        return pd.DataFrame()
    check(df, task.features)
    X = df[list(task.features)].to_numpy(dtype=np.float32)  # noqa: N806
    p = export.score(export.session(task.onnx), X)
    out = pd.DataFrame({"event_id": df["event_id"], "card_id": df["card_id"],
                        "event_time": pd.to_datetime(df["event_time"], unit="ms", utc=True), "fraud_probability": p,
                        "risk_tier": np.where(p >= task.high, "high", np.where(p >= task.medium, "medium", "low")),
                        "decision": np.where(p >= task.threshold, "review", "approve")})
    if task.parquet is None:
        return out
    folder = Path(task.parquet) / f"date={task.day}"
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{task.name}.parquet.tmp"
    out.to_parquet(tmp, index=False)
    tmp.rename(folder / f"{task.name}.parquet")  # (readers never see half a file; a rerun replaces it)
    written = pd.DataFrame(columns=out.columns)
    written.attrs.update(rows=len(out), tiers=out["risk_tier"].value_counts().to_dict())
    return written


def score(place: Any, root: Path, onnx: bytes, features: list[str], threshold: float, high: float, medium: float,
          start_ms: int | None = None, end_ms: int | None = None, parquet: Path | None = None, name: str = "scores",
          progress: bool = False) -> Any:
    """Yield each day's scores as its task finishes (``place``: core.cluster.Place)."""
    todo = days(root, start_ms, end_ms)
    if not todo:
        raise DataError(f"no transactions in the offline store ({root / FEATURES}) for that time range: run "
                        "`make up` and let the generator run a few minutes, or backfill")
    ambiguous = frozenset(ambiguous_event_ids(root, start_ms, end_ms))
    tasks = [ScoreTask(str(root), d, onnx, tuple(features), threshold, high, medium, start_ms, end_ms, ambiguous,
                       None if parquet is None else str(parquet), name) for d in todo]
    yield from place.results(score_day, tasks, progress=progress, desc="scoring days")
