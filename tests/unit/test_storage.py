"""core/storage.py: where the offline log lives, by path or URL (no server: the object store
itself is tested in tests/integration/test_scale.py against a real S3-protocol server)."""

from __future__ import annotations

import pickle
from pathlib import Path

import pyarrow as pa
import pytest

from core import storage
from streaming.sinks import OfflineLog, read_dataset


def test_a_url_names_an_object_store_and_a_path_a_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STACK_S3_ENDPOINT", "http://127.0.0.1:9000")
    r = storage.root("s3://bucket/some/prefix/")
    assert r.remote and r.url == "s3://bucket/some/prefix" and r.path == "bucket/some/prefix"
    assert r.endpoint == "http://127.0.0.1:9000" and storage.root("s3://b", "http://x:1").endpoint == "http://x:1"
    assert (r / "card_txn_features").path == "bucket/some/prefix/card_txn_features"
    assert pickle.loads(pickle.dumps(r)) == r  # (Dask tasks carry it)
    with pytest.raises(ValueError, match="not a local folder"):
        _ = r.local
    local = storage.root(tmp_path / "x" / ".." / "log")
    assert not local.remote and local.local == tmp_path / "log" and storage.root(local) is local
    assert not local.exists() and local.files() == [] and local.dirs() == []


@pytest.mark.parametrize(("url", "why"), [("ftp://host/x", "scheme must be one of s3"), ("s3://", "names no bucket")])
def test_an_unusable_url_is_refused(url: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        storage.root(url)


def test_the_local_log_lists_its_files_and_days_and_hides_writes_in_progress(tmp_path: Path) -> None:
    log = OfflineLog(str(tmp_path))
    log.append_tables("ds", [pa.table({"event_time": [1_790_000_000_000, 1_790_100_000_000], "v": [1, 2]})])
    (tmp_path / "ds" / "date=2026-09-21" / ".part-x.parquet").write_bytes(b"half")
    root = storage.root(tmp_path) / "ds"
    assert root.dirs() == ["date=2026-09-21", "date=2026-09-22"]
    assert len(root.files()) == 2 and not any("/." in f for f in root.files())
    assert sorted(read_dataset(tmp_path, "ds")["v"]) == [1, 2]
