"""Point-in-time training data from the offline store.

The offline log ``card_txn_features`` (Feast feature view, feature service
``fraud_v1_training``) already holds, for every transaction, the card's features as of
just before it and just after it, computed by the same code as the stream. A training row
is therefore an exact point-in-time join by construction: the latest revision of the
transaction's own row (``streaming.sinks.latest_feature_rows``), joined on its event key
with the transaction's request fields from the ``transactions`` log. Feast's generic as-of
join (``get_historical_features``) would pick "the newest row at or before t" per card,
which is wrong for two transactions of one card in the same millisecond and ignores
revisions; the feature service still decides which features a model may use.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as pads

from core import feast_store, storage
from core.features import REQUEST_FEATURES, WINDOW_FEATURES
from core.model_inputs import MODEL_FEATURES, txn_fields
from core.settings import StackSettings
from training.errors import DataError

log = logging.getLogger("training.dataset")

RANGES: dict[str, tuple[float, float]] = {
    **{f: (0.0, np.inf) for f in WINDOW_FEATURES},
    "velocity_score": (0.0, 1.0), "geo_diversity_score": (0.0, 1.0), "has_high_risk_mcc": (0.0, 1.0),
    "hour_of_day": (0.0, 23.0), "is_weekend": (0.0, 1.0), "amount_zscore_24h": (-np.inf, np.inf),
    "amount": (0.0, 1e7),
}


@dataclass
class Dataset:
    frame: pd.DataFrame  # one row per transaction: ids, event_time, MODEL_FEATURES, after_*
    features: list[str]
    source: str
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def X(self) -> np.ndarray:  # noqa: N802 - the usual name
        return self.frame[self.features].to_numpy(dtype=np.float32)


def _day(ms: int) -> str:
    return pd.Timestamp(ms, unit="ms", tz="UTC").strftime("%Y-%m-%d")


def _read(folder: Path | str | storage.Root, columns: list[str] | None = None,
          time_range: tuple[int | None, int | None] = (None, None)) -> pd.DataFrame:
    """Rows of an offline dataset within [start, end) of event time, only ``columns``: the
    day folders outside the range are never opened (the ``date=`` partition is pruned) and
    within a file the row groups are skipped by their event_time statistics. ``folder``: a
    local folder or an object store URL (core.storage)."""
    where = storage.root(folder)
    files = where.files()
    if not files:
        return pd.DataFrame()
    part = pads.partitioning(pa.schema([("date", pa.string())]), flavor="hive")
    ds = pads.dataset(files, filesystem=where.fs, format="parquet", partitioning=part,
                      partition_base_dir=where.path, exclude_invalid_files=True)
    flt = None
    start, end = time_range
    if start is not None:
        flt = (pads.field("date") >= _day(start)) & (pads.field("event_time") >= start)
    if end is not None:
        cond = (pads.field("date") <= _day(end)) & (pads.field("event_time") < end)
        flt = cond if flt is None else flt & cond
    cols = [c for c in columns if c in ds.schema.names] if columns else None
    return ds.to_table(columns=cols, filter=flt).to_pandas()


def _recent_start(folder: Path | storage.Root, start_ms: int | None, end_ms: int | None, rows: int) -> int | None:
    """The event time from which about ``rows`` raw rows of the log lie in the range: read
    from the event_time column alone, so that ``max_samples`` does not load the whole log."""
    times = _read(folder, ["event_time"], (start_ms, end_ms))
    if len(times) <= rows:
        return start_ms
    return int(np.partition(times["event_time"].to_numpy(), len(times) - rows)[len(times) - rows])


def feature_service_features(settings: StackSettings, name: str) -> list[str]:
    """The features a feature service exposes (its offline ``*_training`` twin)."""
    store = feast_store.open_store(settings)
    wanted = name if name.endswith("_training") else f"{name}_training"
    try:
        service = store.get_feature_service(wanted)
    except Exception as exc:  # Feast raises its own not-found type
        known = sorted(s.name for s in store.list_feature_services())
        raise DataError(f"feature service {name!r} not found in the Feast registry (known: {', '.join(known)})"
                        ) from exc
    return [f.name for proj in service.feature_view_projections for f in proj.features]


def check_fraud_service(settings: StackSettings, feature_service: str) -> None:
    """A DataError unless the feature service exposes every input of the fraud model."""
    served = feature_service_features(settings, feature_service)
    missing = [f for f in WINDOW_FEATURES + REQUEST_FEATURES if f not in served]
    if missing:
        raise DataError(f"feature service {feature_service!r} lacks model inputs: {', '.join(missing)}")


def load(settings: StackSettings, *, feature_service: str = "fraud_v1", start_ms: int | None = None,
         end_ms: int | None = None, max_samples: int | None = None,
         offline_root: Path | str | storage.Root | None = None) -> Dataset:
    root = storage.root(offline_root or feast_store.offline_root(settings))
    check_fraud_service(settings, feature_service)
    df, n_raw, ambiguous = _fraud_rows(root, start_ms, end_ms, max_samples)
    if ambiguous:
        log.warning("%d rows carry an event id that also appears on another card; left out (ground truth joins "
                    "on the event id, so it cannot say which transaction it labels)", ambiguous)
    df = df.sort_values(["event_time", "event_key"], kind="stable").reset_index(drop=True)
    if max_samples is not None and len(df) > max_samples:
        df = df.iloc[-max_samples:].reset_index(drop=True)  # the most recent ones
    for name, col in txn_fields_frame(df).items():
        df[name] = col
    check(df, MODEL_FEATURES)
    summary = {"rows": len(df), "rows_in_log": n_raw, "cards": int(df["card_id"].nunique()),
               "start": pd.to_datetime(df["event_time"].min(), unit="ms", utc=True).isoformat(),
               "end": pd.to_datetime(df["event_time"].max(), unit="ms", utc=True).isoformat(),
               "too_late_rows": int((df["status"] == "too_late").sum()), "ambiguous_event_id_rows": ambiguous,
               "feature_service": feature_service}
    return Dataset(df, list(MODEL_FEATURES), str(root), summary)


def _fraud_rows(root: storage.Root, start_ms: int | None, end_ms: int | None, max_samples: int | None
                ) -> tuple[pd.DataFrame, int, int]:
    """Joined training rows in the range; with ``max_samples``, only the newest part of the log
    is read (widened until it holds enough rows after de-duplication)."""
    from streaming.sinks import latest_feature_rows

    want = None if max_samples is None else int(max_samples * 1.25) + 1_000
    while True:
        start = start_ms if want is None else _recent_start(root / "card_txn_features", start_ms, end_ms, want)
        feats = _read(root / "card_txn_features", time_range=(start, end_ms))
        if feats.empty:
            raise DataError(f"no transactions in the offline store ({root / 'card_txn_features'}) for that time "
                            "range: run `make up` and let the generator run a few minutes, or backfill with "
                            "`python -m streaming backfill --topic transactions`")
        n_raw = len(feats)
        feats = latest_feature_rows(feats, "card_id")
        txns = _read(root / "transactions", TXN_COLUMNS, (start, end_ms))
        if txns.empty:
            raise DataError(f"no raw transactions under {root / 'transactions'}: the offline log is incomplete")
        df = join_transactions(feats, txns)
        lost = len(feats) - len(df)
        df, ambiguous = drop_ambiguous_event_ids(df)
        if max_samples is None or want is None or len(df) >= max_samples or start == start_ms:
            break
        want *= 2  # revisions and duplicates took more than the margin: read further back
    if lost:
        log.warning("%d feature rows have no raw transaction (partial logs?); left out", lost)
    return df, n_raw, ambiguous


#: the raw transaction fields a training row takes from the ``transactions`` log
TXN_COLUMNS = ["event_id", "event_key", "card_id", "event_time", "mcc", "amount", "channel", "merchant_id", "country"]


def join_transactions(feats: pd.DataFrame, txns: pd.DataFrame) -> pd.DataFrame:
    """Each transaction's latest feature row (``feats``, de-duplicated already) joined on its
    key with its raw fields (``txns``, replays dropped): the point-in-time rows."""
    txns = txns.drop_duplicates(["card_id", "event_key"])
    return feats.drop(columns=[c for c in ("event_timestamp", "date") if c in feats]).merge(
        txns.drop(columns=["event_time"]), on=["card_id", "event_key"], how="inner", validate="one_to_one")


def drop_ambiguous_event_ids(df: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """Rows whose event id appears on more than one card (a producer bug or a crafted record:
    the stream keys state by card, so both were processed) are left out, all of them: feedback
    names the event id only. Returns the rest and how many were dropped."""
    cards = df.groupby("event_id")["card_id"].transform("nunique")
    bad = cards > 1
    return (df[~bad].reset_index(drop=True), int(bad.sum())) if bad.any() else (df, 0)


def txn_fields_frame(df: pd.DataFrame) -> pd.DataFrame:
    """The request fields of core.model_inputs, vectorised over a frame of transactions."""
    probe = txn_fields(1.0, "0000", "pos")
    from core.contracts import HIGH_RISK_MCCS

    out = pd.DataFrame({
        "amount": df["amount"].astype(np.float64),
        "mcc_high_risk": df["mcc"].isin(HIGH_RISK_MCCS).astype(np.float64),
        "channel_online": (df["channel"] == "online").astype(np.float64),
        "channel_atm": (df["channel"] == "atm").astype(np.float64),
    }, index=df.index)
    assert list(out.columns) == list(probe), "txn_fields and its vectorised twin disagree"
    return out


def check(df: pd.DataFrame, features: tuple[str, ...] | list[str]) -> None:
    """Clear errors for data a model must not be trained on."""
    absent = [f for f in features if f not in df.columns]
    if absent:
        raise DataError(f"offline rows lack features {', '.join(absent)}: written by an older stream version?")
    nulls = df[list(features)].isna().sum()
    if nulls.any():
        cols = ", ".join(f"{c} ({n})" for c, n in nulls[nulls > 0].items())
        raise DataError(f"null values in {cols}")
    values = df[list(features)].to_numpy(dtype=np.float64)
    if not np.isfinite(values).all():
        bad = [f for i, f in enumerate(features) if not np.isfinite(values[:, i]).all()]
        raise DataError(f"infinite values in {', '.join(bad)}")
    for name, (lo, hi) in RANGES.items():
        if name in df:
            col = df[name]
            bad = (col < lo) | (col > hi)
            if bad.any():
                raise DataError(f"{int(bad.sum())} rows with {name} outside [{lo}, {hi}] (e.g. {col[bad].iloc[0]})")
    dups = int(df.duplicated("event_id").sum())
    if dups:
        raise DataError(f"{dups} duplicate event ids after de-duplicating the offline log")


def load_clicks(settings: StackSettings, *, feature_service: str = "personalization_v1",
                start_ms: int | None = None, end_ms: int | None = None, max_samples: int | None = None,
                offline_root: Path | str | storage.Root | None = None) -> Dataset:
    """Personalization rows: per click, the user's features as of just before it (offline log
    ``user_click_features``) plus the click's own fields."""
    from core.model_inputs import PROPENSITY_FEATURES
    from core.user_features import USER_FEATURES
    from streaming.sinks import latest_feature_rows

    root = storage.root(offline_root or feast_store.offline_root(settings))
    served = feature_service_features(settings, feature_service)
    missing = [f for f in USER_FEATURES if f not in served]
    if missing:
        raise DataError(f"feature service {feature_service!r} lacks model inputs: {', '.join(missing)}")
    if max_samples is not None:  # only the newest part of the log (as for transactions)
        start_ms = _recent_start(root / "user_click_features", start_ms, end_ms, int(max_samples * 1.25) + 1_000)
    feats = _read(root / "user_click_features", time_range=(start_ms, end_ms))
    if feats.empty:
        raise DataError(f"no clicks in the offline store ({root / 'user_click_features'}): run `make up` and let "
                        "the click generator run, or backfill with `python -m streaming backfill --kind clicks`")
    n_raw = len(feats)
    clicks = _read(root / "clicks", CLICK_COLUMNS, (start_ms, end_ms))
    df = join_clicks(latest_feature_rows(feats, "user_id"), clicks)
    df = df.sort_values(["event_time", "event_key"], kind="stable").reset_index(drop=True)
    if max_samples is not None and len(df) > max_samples:
        df = df.iloc[-max_samples:].reset_index(drop=True)
    for name, col in click_fields_frame(df).items():
        df[name] = col
    check(df, PROPENSITY_FEATURES)
    summary = {"rows": len(df), "rows_in_log": n_raw, "users": int(df["user_id"].nunique()),
               "start": pd.to_datetime(df["event_time"].min(), unit="ms", utc=True).isoformat(),
               "end": pd.to_datetime(df["event_time"].max(), unit="ms", utc=True).isoformat(),
               "feature_service": feature_service}
    return Dataset(df, list(PROPENSITY_FEATURES), str(root), summary)


#: the raw click fields a personalization row takes from the ``clicks`` log
CLICK_COLUMNS = ["event_id", "event_key", "user_id", "session_id", "action", "dwell_ms", "device"]


def join_clicks(feats: pd.DataFrame, clicks: pd.DataFrame) -> pd.DataFrame:
    """Each click's latest feature row (de-duplicated already) joined on its key with its raw
    fields (replays dropped): the point-in-time personalization rows."""
    clicks = clicks.drop_duplicates(["user_id", "event_key"])
    return feats.drop(columns=[c for c in ("event_timestamp", "date") if c in feats]).merge(
        clicks, on=["user_id", "event_key"], how="inner", validate="one_to_one")


def click_fields_frame(df: pd.DataFrame) -> pd.DataFrame:
    """The click fields of core.model_inputs, vectorised over a frame of clicks."""
    from core.model_inputs import click_fields

    out = pd.DataFrame({
        "is_view": (df["action"] == "view").astype(np.float64),
        "is_add_to_cart": (df["action"] == "add_to_cart").astype(np.float64),
        "is_purchase": (df["action"] == "purchase").astype(np.float64),
        "dwell_ms": df["dwell_ms"].astype(np.float64),
        "device_mobile": (df["device"] == "mobile").astype(np.float64),
        "device_tablet": (df["device"] == "tablet").astype(np.float64)}, index=df.index)
    assert list(out.columns) == list(click_fields("view", 0, "mobile")), "click_fields and its twin disagree"
    return out
