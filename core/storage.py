"""Where the offline log lives: a local folder (the default) or an object store, by URL
(``s3://bucket/prefix``), so that workers on several machines write one log and training,
batch scoring and the backfill read it wherever they run (issue 18).

Files go through pyarrow's file systems (its S3 client ships in the pyarrow wheel). An
S3-protocol server other than AWS (MinIO, Ceph, S3Proxy...) is named by ``STACK_S3_ENDPOINT``
(``http://host:port``); credentials come from the usual ``AWS_ACCESS_KEY_ID`` and
``AWS_SECRET_ACCESS_KEY``, the region from ``AWS_REGION`` (default us-east-1). With such an
endpoint the AWS client computes request checksums only where the protocol requires them
(``AWS_REQUEST_CHECKSUM_CALCULATION=when_required``, unless set): servers differ on the
newer checksum headers.

Writes are atomic on both: locally a hidden file renamed into place, on an object store one
PUT (a multipart upload is invisible until it completes).
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCHEMES = ("s3",)


@functools.lru_cache(maxsize=8)
def _s3(endpoint: str | None, region: str) -> Any:
    from pyarrow import fs

    if endpoint:
        os.environ.setdefault("AWS_REQUEST_CHECKSUM_CALCULATION", "when_required")
        os.environ.setdefault("AWS_RESPONSE_CHECKSUM_VALIDATION", "when_required")
    return fs.S3FileSystem(endpoint_override=endpoint or None, region=region,
                           access_key=os.environ.get("AWS_ACCESS_KEY_ID") or None,
                           secret_key=os.environ.get("AWS_SECRET_ACCESS_KEY") or None)


@dataclass(frozen=True)
class Root:
    """A folder of the offline log, local or in an object store (picklable: Dask tasks carry
    it and open the file system where they run)."""

    url: str  # an absolute local path, or s3://bucket/prefix
    endpoint: str | None = None

    @property
    def remote(self) -> bool:
        return "://" in self.url

    @property
    def fs(self) -> Any:
        from pyarrow import fs

        if not self.remote:
            return fs.LocalFileSystem()
        return _s3(self.endpoint, os.environ.get("AWS_REGION") or "us-east-1")

    @property
    def path(self) -> str:
        """The path within ``fs`` (bucket/prefix for S3)."""
        return self.url.split("://", 1)[1].strip("/") if self.remote else self.url

    @property
    def local(self) -> Path:
        if self.remote:
            raise ValueError(f"{self.url} is in an object store, not a local folder")
        return Path(self.url)

    def __truediv__(self, part: str) -> Root:
        return Root(f"{self.url.rstrip('/')}/{part}", self.endpoint)

    def __str__(self) -> str:
        return self.url

    def exists(self) -> bool:
        from pyarrow import fs

        return self.fs.get_file_info(self.path).type != fs.FileType.NotFound

    def files(self, suffix: str = ".parquet", recursive: bool = True) -> list[str]:
        """Every file below (``recursive=False``: in this folder itself), by path within
        ``fs``, sorted; hidden ones (a write in progress) left out."""
        from pyarrow import fs

        if not self.exists():
            return []
        infos = self.fs.get_file_info(fs.FileSelector(self.path, recursive=recursive))
        return sorted(i.path for i in infos if i.type == fs.FileType.File and i.path.endswith(suffix)
                      and not i.base_name.startswith("."))

    def put_parquet(self, name: str, table: Any) -> None:
        """Write ``table`` as the parquet file ``name`` in this folder, whole or not at all:
        in an object store one PUT (the object appears complete); locally a hidden file,
        fsynced, then renamed into place and the folder fsynced (so readers never see a part
        file and the name survives a power loss; a failed write leaves nothing behind)."""
        import pyarrow.parquet as pq

        if self.remote:
            with self.fs.open_output_stream(f"{self.path}/{name}") as out:
                pq.write_table(table, out, compression="zstd")
            return
        folder = self.local
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".{name}.tmp"
        try:
            pq.write_table(table, tmp, compression="zstd")
            fsync(tmp)  # the bytes are on disk before the name says they are
            tmp.rename(folder / name)
        except BaseException:
            tmp.unlink(missing_ok=True)  # (a full disk: leave no partial file behind)
            raise
        fsync(folder)  # and the rename itself survives a power loss

    def delete(self, path: str) -> None:
        """Delete the file at ``path`` (within ``fs``, as ``files()`` gives it)."""
        self.fs.delete_file(path)

    def dirs(self) -> list[str]:
        """The names of the folders right below."""
        from pyarrow import fs

        if not self.exists():
            return []
        infos = self.fs.get_file_info(fs.FileSelector(self.path, recursive=False))
        return sorted(i.base_name for i in infos if i.type == fs.FileType.Directory)


def fsync(path: Path) -> None:
    """fsync a local file or folder."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def root(where: str | Path | Root, endpoint: str | None = None) -> Root:
    """A Root from a path or URL (``STACK_S3_ENDPOINT`` when no endpoint is given); a
    ValueError for a scheme this project does not write to."""
    if isinstance(where, Root):
        return where
    text = str(where)
    if "://" in text:
        scheme, rest = text.split("://", 1)
        if scheme not in SCHEMES:
            raise ValueError(f"object store URL {text!r}: the scheme must be one of {', '.join(SCHEMES)} (or a "
                             "local path)")
        if not rest.strip("/"):
            raise ValueError(f"object store URL {text!r} names no bucket")
        return Root(f"{scheme}://{rest.strip('/')}", endpoint or os.environ.get("STACK_S3_ENDPOINT") or None)
    return Root(str(Path(text).resolve()))
