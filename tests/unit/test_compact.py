"""Offline log compaction: one file per day folder, and readers see exactly what they saw."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from streaming.compact import compact
from streaming.sinks import OfflineLog, latest_feature_rows, read_dataset

DAY = 86_400_000
T0 = 1_790_000_000_000


def _rows(n: int, revision: int, status: str = "accepted", shift: int = 0) -> list[dict]:
    return [{"card_id": f"c{i % 7}", "event_key": i, "event_time": T0 + (i % 2) * DAY + i * 1000,
             "status": status, "revision": revision, "txn_count_5m": i + shift} for i in range(n)]


def test_compaction_keeps_what_readers_keep_in_one_file_per_day(tmp_path: Path) -> None:
    log = OfflineLog(tmp_path)
    log.append("card_txn_features", _rows(40, 1))
    log.append("card_txn_features", _rows(10, 5, shift=100))  # corrections: higher revision wins
    log.append("card_txn_features", _rows(5, 9, status="too_late", shift=500))  # accepted beats too-late
    events = [{"event_id": f"e{i}", "card_id": "c1", "event_time": T0 + (i % 2) * DAY, "amount": 1.0 * i}
              for i in range(30)]
    log.append("transactions", events)
    log.append("transactions", events[:12])  # a replay
    want_features = latest_feature_rows(read_dataset(tmp_path, "card_txn_features"))
    want_events = read_dataset(tmp_path, "transactions").drop_duplicates("event_id")

    results = {r.dataset: r for r in compact(tmp_path)}
    feats, txns = results["card_txn_features"], results["transactions"]
    assert (feats.folders, feats.files_before, feats.files_after) == (2, 6, 2)
    assert (feats.rows_before, feats.rows_after) == (55, 40)
    assert (txns.rows_before, txns.rows_after) == (42, 30)
    for dataset in ("card_txn_features", "transactions"):
        for folder in (tmp_path / dataset).glob("date=*"):
            assert len([p for p in folder.iterdir()]) == 1  # no temp file left either

    def same(a: pd.DataFrame, b: pd.DataFrame, key: list[str]) -> None:
        cols = sorted(set(a.columns) - {"date"})
        pd.testing.assert_frame_equal(a[cols].sort_values(key).reset_index(drop=True),
                                      b[cols].sort_values(key).reset_index(drop=True), check_dtype=False)

    got = latest_feature_rows(read_dataset(tmp_path, "card_txn_features"))
    same(got, want_features, ["card_id", "event_key"])
    assert got.set_index("event_key").loc[3, "txn_count_5m"] == 103  # revision 5, not 1 nor the too-late 9
    same(read_dataset(tmp_path, "transactions").drop_duplicates("event_id"), want_events, ["event_id"])
    # appends after a compaction are kept, and a second run folds them in
    log.append("card_txn_features", _rows(3, 20, shift=1000))
    again = {r.dataset: r for r in compact(tmp_path)}["card_txn_features"]
    assert (again.files_before, again.files_after) == (4, 2)
    assert latest_feature_rows(read_dataset(tmp_path, "card_txn_features")).set_index("event_key").loc[
        1, "txn_count_5m"] == 1001
