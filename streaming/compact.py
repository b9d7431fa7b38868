"""Compact the offline log: the worker appends a file per dataset per flush (every 2 s), so a
day folder grows to tens of thousands of small files that every read has to open. Compaction
rewrites each day folder's files as one, keeping only what readers keep: for feature rows the
newest row per (entity, event_key) (an accepted row beats a too-late one, then the highest
revision), for raw events one row per event id.

Safe next to a running worker: only the files present when a folder's compaction starts are
replaced; the compacted file is written (and fsynced) before they are deleted, so a reader sees
the old files, or the new one, or both for a moment (readers drop the duplicates either way);
files the worker appends meanwhile are left for the next run. Idempotent. In an object store
(``STACK_OFFLINE_URL``) the compacted file is one PUT, invisible until complete, and the old
objects are deleted after it, so readers see the same as on disk.
Run it with ``python -m streaming compact`` (the drift monitor runs it on a schedule).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from core import storage
from streaming.entities import CARD, USER
from streaming.sinks import latest_feature_rows

#: dataset -> (kind, join key)
DATASETS = {CARD.event_dataset: ("events", CARD.join_key), CARD.feature_dataset: ("features", CARD.join_key),
            USER.event_dataset: ("events", USER.join_key), USER.feature_dataset: ("features", USER.join_key)}


@dataclass
class Compacted:
    dataset: str
    folders: int = 0
    files_before: int = 0
    files_after: int = 0
    rows_before: int = 0
    rows_after: int = 0


def compact_folder(folder: Path | Any, kind: str, join_key: str, min_files: int = 2) -> tuple[int, int, int, int]:
    """(files before, files after, rows before, rows after) for one day folder (a local path,
    or a ``core.storage.Root`` local or in an object store)."""

    where = storage.root(folder)
    fs = where.fs
    files = where.files(recursive=False)
    if len(files) < min_files:
        return len(files), len(files), 0, 0
    tables = [pq.read_table(f, filesystem=fs) for f in files]
    df = pa.concat_tables(tables, promote_options="default").to_pandas()
    before = len(df)
    if kind == "features":
        df = latest_feature_rows(df, join_key)
    else:
        df = df.drop_duplicates("event_id", keep="last")
    df = df.sort_values("event_time", kind="stable").reset_index(drop=True)
    table = pa.Table.from_pandas(df, preserve_index=False)
    name = f"part-{int(time.time() * 1000)}-compacted-{os.getpid()}.parquet"
    where.put_parquet(name, table)
    for f in files:  # only now: the compacted file holds what they held
        where.delete(f)
    if not where.remote:
        storage.fsync(where.local)  # (the deletions survive a power loss too)
    return len(files), 1, before, len(df)


def compact(root: Path | Any, datasets: list[str] | None = None, min_files: int = 2) -> list[Compacted]:
    """Compact every day folder of each dataset under the offline root ``root`` (a local
    path, or a ``core.storage.Root``/URL: ``core.feast_store.offline_root``)."""

    root = storage.root(root)
    out = []
    for dataset in datasets or list(DATASETS):
        if dataset not in DATASETS:
            raise ValueError(f"unknown dataset {dataset!r}; known: {', '.join(DATASETS)}")
        kind, join_key = DATASETS[dataset]
        result = Compacted(dataset)
        for day in (d for d in (root / dataset).dirs() if d.startswith("date=")):
            fb, fa, rb, ra = compact_folder(root / dataset / day, kind, join_key, min_files)
            result.folders += 1
            result.files_before += fb
            result.files_after += fa
            result.rows_before += rb
            result.rows_after += ra
        out.append(result)
    return out


def frame(results: list[Compacted]) -> pd.DataFrame:
    return pd.DataFrame([r.__dict__ for r in results])
