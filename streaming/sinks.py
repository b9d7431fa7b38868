"""Where the stream's outputs go: the Feast online store (coalesced per card, micro-batched)
and the append-only offline log (partitioned parquet). Both are synchronous and are run off
the event loop by the worker; both are idempotent (see streaming/processor.py)."""

from __future__ import annotations

import os
import struct
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq


class OnlineBatch:
    """Pending online writes, one per card (later writes of a card replace earlier ones)."""

    def __init__(self) -> None:
        self.rows: dict[str, tuple[bytes, int]] = {}
        self.first_seen_ms: dict[str, float] = {}  # produce time of the oldest pending event
        self.partitions: dict[str, int] = {}  # source partition (= its changelog partition)

    def put(self, card_id: str, packed: bytes, last_ts: int, produced_ms: float, partition: int = 0) -> None:
        self.rows[card_id] = (packed, last_ts)
        self.first_seen_ms.setdefault(card_id, produced_ms)
        self.partitions[card_id] = partition

    def __len__(self) -> int:
        return len(self.rows)


class FeastOnlineSink:
    """Writes entity states into Feast's online store, in Feast's own key and value format,
    so that ``get_online_features`` reads them as usual (streaming/read.py).

    ``FeatureStore.push`` converts a DataFrame row by row and re-reads the registry on every
    call, and Feast's Redis ``online_write_batch`` rebuilds each row's entity-key protobuf,
    timestamp and field hashes (about 45 µs per entity here). For a Redis online store this
    sink builds the same bytes itself (``RedisLayout``: the field hashes and key prefix once,
    then a few concatenations per entity) and sends one pipelined ``HSET`` (+ ``EXPIRE``
    with ``key_ttl_seconds``) per entity, which is what Feast's write does with
    ``skip_dedup``. tests/unit/test_online_layout.py checks the bytes against Feast's own
    functions, the integration tests read them back through Feast. Any other online store
    goes through Feast's provider.
    """

    def __init__(self, store: Any, feature_view: str = "card_window_state", join_key: str = "card_id") -> None:
        self.store = store
        self.join_key = join_key
        self.view = store.get_feature_view(feature_view)
        self.provider = store._get_provider()  # noqa: SLF001 - Feast's write path below push()
        online = store.config.online_store
        self.layout: RedisLayout | None = None
        if type(online).__name__ == "RedisOnlineStoreConfig" and getattr(online, "skip_dedup", False):
            from feast.infra.online_stores.redis import _versioned_fv_name

            self.layout = RedisLayout(store.config.project, _versioned_fv_name(self.view, store.config), join_key,
                                      store.config.entity_key_serialization_version)
            self.ttl = online.key_ttl_seconds
            self.client = self.provider.online_store._get_client(online)  # noqa: SLF001

    def write(self, batch: OnlineBatch) -> None:
        if not batch.rows:
            return
        if self.layout is None:
            self._write_through_feast(batch)
            return
        import redis

        commands = self.layout.commands
        if type(self.client) is not redis.Redis:  # a cluster: keys live on several nodes
            with self.client.pipeline(transaction=False) as pipe:
                for entity_id, (blob, last) in batch.rows.items():
                    key = self.layout.key(entity_id)
                    pipe.hset(key, mapping=self.layout.fields(blob, last))
                    if self.ttl:
                        pipe.expire(key, self.ttl)
                pipe.execute()
            return
        # One buffer of HSET (+ EXPIRE) commands, then their replies: redis-py's pipeline
        # costs twice as much per command in Python as the bytes themselves.
        packed = b"".join(commands(entity_id, blob, last, self.ttl) for entity_id, (blob, last) in batch.rows.items())
        replies = len(batch.rows) * (2 if self.ttl else 1)
        conn = self.client.connection_pool.get_connection()
        try:
            conn.send_packed_command([packed])
            errors = [r for r in (conn.read_response() for _ in range(replies)) if isinstance(r, Exception)]
        except BaseException:
            conn.disconnect()  # replies may be left unread: never reuse it
            raise
        finally:
            self.client.connection_pool.release(conn)
        if errors:
            raise errors[0]

    def _write_through_feast(self, batch: OnlineBatch) -> None:
        from feast.protos.feast.types.EntityKey_pb2 import EntityKey
        from feast.protos.feast.types.Value_pb2 import Value

        rows = []
        for entity_id, (blob, last) in batch.rows.items():
            key = EntityKey(join_keys=[self.join_key], entity_values=[Value(string_val=entity_id)])
            values = {"state": Value(bytes_val=blob), "last_event_time": Value(int64_val=last)}
            rows.append((key, values, datetime.fromtimestamp(last / 1000.0, tz=UTC), None))
        self.provider.online_write_batch(self.store.config, self.view, rows, None)


class RedisLayout:
    """Feast's Redis layout of one feature view with a single string join key and the
    features ``state`` (bytes) and ``last_event_time`` (int64, also the row's timestamp): the
    hash key is the serialized entity key (format ``version``) followed by the project; the
    fields are murmur3 hashes of ``view:feature`` and ``_ts:view``, the values serialized
    protobufs (feast.infra.online_stores.redis, .helpers, feast.infra.key_encoding_utils)."""

    def __init__(self, project: str, view: str, join_key: str, version: int = 3) -> None:
        from feast.infra.key_encoding_utils import serialize_entity_key
        from feast.infra.online_stores.helpers import _mmh3
        from feast.protos.feast.types.EntityKey_pb2 import EntityKey
        from feast.protos.feast.types.Value_pb2 import Value

        if version != 3:
            raise ValueError(f"entity_key_serialization_version {version} is not supported (3 is)")
        # serialize_entity_key(v3) = count, (type, len, name) per key, then (type, len, bytes)
        # per value: the part before the value's length is the same for every entity
        empty = serialize_entity_key(EntityKey(join_keys=[join_key], entity_values=[Value(string_val="")]), 3)
        self._head, self._project = empty[:-4], project.encode()
        if empty[-4:] != struct.pack("<I", 0):
            raise ValueError("unexpected Feast entity key layout")
        self._state_field = _mmh3(f"{view}:state")
        self._last_field = _mmh3(f"{view}:last_event_time")
        self._ts_field = f"_ts:{view}"
        self._value = Value
        from google.protobuf.timestamp_pb2 import Timestamp

        self._timestamp = Timestamp

    def commands(self, entity_id: str, blob: bytes, last_ms: int, ttl: int | None) -> bytes:
        """HSET of the entity's fields (and EXPIRE with a ttl), in Redis's wire protocol."""
        key = self.key(entity_id)
        fields = self.fields(blob, last_ms)
        parts = [b"*8\r\n$4\r\nHSET\r\n", _bulk(key)]
        for name, value in fields.items():
            parts += (_bulk(name.encode() if isinstance(name, str) else name), _bulk(value))
        if ttl:
            parts += (b"*3\r\n$6\r\nEXPIRE\r\n", _bulk(key), _bulk(str(int(ttl)).encode()))
        return b"".join(parts)

    def key(self, entity_id: str) -> bytes:
        raw = entity_id.encode()
        return b"".join((self._head, struct.pack("<I", len(raw)), raw, self._project))

    def fields(self, blob: bytes, last_ms: int) -> dict[Any, bytes]:
        seconds, ms = divmod(last_ms, 1000)
        return {self._ts_field: self._timestamp(seconds=seconds, nanos=ms * 1_000_000).SerializeToString(),
                self._state_field: self._value(bytes_val=blob).SerializeToString(),
                self._last_field: self._value(int64_val=last_ms).SerializeToString()}


def online_server_id(store: Any) -> str | None:
    """The online store's Redis run_id (it changes when the server restarts, which can lose
    its last second of writes); None while it does not answer. A cluster joins its nodes'."""
    import redis

    client = store._get_provider().online_store._get_client(store.config.online_store)  # noqa: SLF001
    try:
        info = client.info("server")
    except (redis.RedisError, OSError):
        return None
    if "run_id" in info:
        return str(info["run_id"])
    return ",".join(sorted(str(v.get("run_id")) for v in info.values() if isinstance(v, dict))) or None


class FeastPushSink:
    """The same writes through the public ``FeatureStore.push`` (DataFrame per batch)."""

    def __init__(self, store: Any, push_source: str = "card_state_push", join_key: str = "card_id") -> None:
        self.store = store
        self.push_source = push_source
        self.join_key = join_key

    def write(self, batch: OnlineBatch) -> None:
        from feast.data_source import PushMode

        if not batch.rows:
            return
        cards = list(batch.rows)
        states, last = zip(*(batch.rows[c] for c in cards), strict=True)
        df = pd.DataFrame({self.join_key: cards, "state": list(states), "last_event_time": list(last),
                           "event_timestamp": pd.to_datetime(list(last), unit="ms", utc=True)})
        self.store.push(self.push_source, df, to=PushMode.ONLINE)


def _bulk(value: bytes) -> bytes:
    return b"$%d\r\n%b\r\n" % (len(value), value)


class OfflineLog:
    """Appends rows as new parquet files under ``<root>/<dataset>/date=YYYY-MM-DD/``: the
    cost of an append does not depend on how much history there is."""

    def __init__(self, root: Path, writer_id: str | None = None) -> None:
        self.root = root
        self.writer_id = writer_id or uuid.uuid4().hex[:8]
        self._seq = 0

    @staticmethod
    def table(rows: list[dict[str, Any]]) -> pa.Table:
        """Rows (dicts with the same keys) as one Arrow table, for ``append_tables``."""
        return pa.Table.from_pydict({k: [r[k] for r in rows] for k in rows[0]})

    def append(self, dataset: str, rows: list[dict[str, Any]]) -> int:
        if not rows:
            return 0
        return self.append_tables(dataset, [self.table(rows)])

    def append_tables(self, dataset: str, tables: list[pa.Table]) -> int:
        """Append these tables' rows (converted earlier, e.g. a chunk at a time between
        checkpoints, so the checkpoint itself only writes): one file per date."""
        tables = [t for t in tables if t.num_rows]
        if not tables:
            return 0
        # (a chunk whose column was all None has it typed null: unified with the others)
        table = tables[0] if len(tables) == 1 else pa.concat_tables(tables, promote_options="default")
        ts = pa.compute.cast(table["event_time"], pa.timestamp("ms", tz="UTC"))
        table = table.append_column("event_timestamp", ts)
        day = pa.compute.strftime(ts, format="%Y-%m-%d")
        written = 0
        for d in pa.compute.unique(day).to_pylist():
            part = table.filter(pa.compute.equal(day, d))
            folder = self.root / dataset / f"date={d}"
            folder.mkdir(parents=True, exist_ok=True)
            self._seq += 1
            name = f"part-{int(time.time() * 1000)}-{self.writer_id}-{self._seq:06d}.parquet"
            tmp = folder / f".{name}.tmp"
            try:
                pq.write_table(part, tmp, compression="zstd")
                _fsync(tmp)  # the bytes are on disk before the name says they are
                tmp.rename(folder / name)  # readers never see a half-written file
            except BaseException:
                tmp.unlink(missing_ok=True)  # (a full disk: leave no partial file behind)
                raise
            _fsync(folder)  # and the rename itself survives a power loss
            written += part.num_rows
        return written


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_dataset(root: Path, dataset: str) -> pd.DataFrame:
    """All rows of an offline dataset (empty frame when there are none)."""
    folder = root / dataset
    files = sorted(p for p in folder.rglob("*.parquet")) if folder.exists() else []
    if not files:
        return pd.DataFrame()
    return pd.concat([pq.read_table(f).to_pandas() for f in files], ignore_index=True)


def latest_feature_rows(df: pd.DataFrame, join_key: str = "card_id") -> pd.DataFrame:
    """One row per (entity, event_key): an accepted row beats a too-late one, then the
    highest revision (corrections and replays append; readers keep the newest)."""
    if df.empty:
        return df
    ranked = df.assign(_accepted=(df["status"] == "accepted").astype(int))
    ranked = ranked.sort_values([join_key, "event_key", "_accepted", "revision"])
    return ranked.drop_duplicates([join_key, "event_key"], keep="last").drop(columns="_accepted")


def now_ms() -> float:
    return datetime.now(UTC).timestamp() * 1000.0
