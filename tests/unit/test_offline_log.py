"""The offline log's writers: the one-shot append and the Quix engine's staged checkpoint
writer (rows written by a thread while the checkpoint runs, visible only once sealed)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from streaming.sinks import OfflineLog, StagedOffline, read_dataset

DAY1 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
DAY2 = DAY1 + 86_400_000


def _rows(n: int, t0: int, step: int = 1_000, **extra: object) -> list[dict]:
    return [{"card_id": f"c{i % 7}", "event_time": t0 + i * step, "amount": float(i), **extra} for i in range(n)]


def _visible(root: Path, dataset: str) -> pa.Table | None:
    df = read_dataset(root, dataset)
    return None if df.empty else df


def _hidden(root: Path) -> list[Path]:
    return list(root.rglob(".*.tmp"))


def test_staged_rows_are_invisible_until_sealed_then_equal_a_one_shot_append(tmp_path: Path) -> None:
    staged = StagedOffline(OfflineLog(tmp_path / "staged"))
    staged.ROW_GROUP_ROWS = 128  # (row groups written before the seal too)
    chunks = [_rows(300, DAY1 + 86_000_000), _rows(200, DAY2 + 5), _rows(50, DAY2 + 900_000)]  # 2 days
    try:
        for chunk in chunks:
            staged.add("txns", OfflineLog.table(chunk))
        staged._pool.submit(lambda: None).result()  # (the chunks are written)  # noqa: SLF001
        assert _visible(tmp_path / "staged", "txns") is None
        assert len(_hidden(tmp_path / "staged")) == 2  # one file per date
        assert staged.seal() == {"txns": 550}
        assert not _hidden(tmp_path / "staged")
        assert staged.seal() == {}  # the next checkpoint starts empty
    finally:
        staged.close()
    OfflineLog(tmp_path / "once").append("txns", [r for c in chunks for r in c])
    got, want = read_dataset(tmp_path / "staged", "txns"), read_dataset(tmp_path / "once", "txns")
    key = ["event_time", "card_id"]
    assert got.sort_values(key).reset_index(drop=True).equals(want.sort_values(key).reset_index(drop=True))
    files = sorted((tmp_path / "staged" / "txns").rglob("*.parquet"), key=lambda p: p.parent.name)
    assert [p.parent.name for p in files] == ["date=2026-01-01", "date=2026-01-02"]
    assert [pq.ParquetFile(p).num_row_groups for p in files] == [1, 2]  # day 2: 200 rows, then 50 at the seal


def test_an_aborted_checkpoint_leaves_nothing(tmp_path: Path) -> None:
    staged = StagedOffline(OfflineLog(tmp_path))
    try:
        staged.add("txns", OfflineLog.table(_rows(100, DAY1)))
        staged.abort()
        assert not _hidden(tmp_path) and _visible(tmp_path, "txns") is None
        staged.add("txns", OfflineLog.table(_rows(10, DAY1)))  # the replay
        assert staged.seal() == {"txns": 10}
    finally:
        staged.close()
    assert len(read_dataset(tmp_path, "txns")) == 10


def test_a_chunk_of_another_schema_goes_to_a_file_of_its_own_sealed_with_the_rest(tmp_path: Path) -> None:
    staged = StagedOffline(OfflineLog(tmp_path))
    try:
        staged.add("txns", OfflineLog.table(_rows(5, DAY1, note=None)))  # note: typed null
        staged.add("txns", OfflineLog.table(_rows(5, DAY1 + 10_000, note="x")))  # note: string
        staged.add("txns", OfflineLog.table(_rows(5, DAY1 + 20_000, note="y")))  # same file as the last
        assert staged.seal() == {"txns": 15}
    finally:
        staged.close()
    assert len(list(tmp_path.rglob("*.parquet"))) == 2
    df = read_dataset(tmp_path, "txns")
    assert sorted(df["note"].fillna("-")) == ["-"] * 5 + ["x"] * 5 + ["y"] * 5


def test_a_failed_write_deletes_the_checkpoint_files_and_seal_raises_it(tmp_path: Path) -> None:
    staged = StagedOffline(OfflineLog(tmp_path))
    try:
        staged.add("txns", OfflineLog.table(_rows(5, DAY1)))
        staged.add("txns", pa.table({"card_id": ["c"], "amount": [1.0]}))  # no event_time: fails
        staged.add("txns", OfflineLog.table(_rows(5, DAY1)))  # ignored: the checkpoint failed
        staged._pool.submit(lambda: None).result()  # noqa: SLF001
        assert not _hidden(tmp_path)  # deleted at the failure, not at the seal
        with pytest.raises(KeyError):
            staged.seal()
        assert _visible(tmp_path, "txns") is None
        staged.add("txns", OfflineLog.table(_rows(3, DAY1)))  # the next checkpoint works
        assert staged.seal() == {"txns": 3}
    finally:
        staged.close()


def test_stale_hidden_files_of_a_killed_writer_are_removed_fresh_ones_kept(tmp_path: Path) -> None:
    log = OfflineLog(tmp_path)
    old_tmp, _ = log.new_file("txns", "2026-01-01")
    new_tmp, _ = log.new_file("txns", "2026-01-01")
    old_tmp.write_bytes(b"PAR1")
    new_tmp.write_bytes(b"PAR1")
    an_hour_ago = time.time() - 3700
    os.utime(old_tmp, (an_hour_ago, an_hour_ago))
    assert log.remove_stale() == 1
    assert not old_tmp.exists() and new_tmp.exists()
