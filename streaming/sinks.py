"""Where the stream's outputs go: the Feast online store (coalesced per card, micro-batched)
and the append-only offline log (partitioned parquet). Both are synchronous and are run off
the event loop by the worker; both are idempotent (see streaming/processor.py)."""

from __future__ import annotations

import struct
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from core import storage


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

    def __init__(self, store: Any, feature_view: str = "card_window_state", join_key: str = "card_id",
                 replica_wait_ms: int | None = None) -> None:
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
        #: how long a cluster write waits for each master's replica to acknowledge it (``WAIT``):
        #: 200 ms, and always less than the socket timeout (a longer wait would fail the write)
        timeout_ms = 1000 * (self._socket_timeout() or 60)
        if replica_wait_ms is not None and replica_wait_ms >= timeout_ms:
            raise ValueError(f"replica_wait_ms={replica_wait_ms} is not shorter than the Redis socket timeout "
                             f"({timeout_ms:.0f} ms): a write would time out waiting for a replica")
        self.replica_wait_ms = replica_wait_ms if replica_wait_ms is not None else int(min(200, timeout_ms / 2))
        #: cluster writes that no replica acknowledged in time (on their master only)
        self.unreplicated_writes = 0

    def _socket_timeout(self) -> float | None:
        """The Redis client's socket timeout in seconds (None: none, or no Redis client)."""
        client = getattr(self, "client", None)
        manager = getattr(client, "nodes_manager", None)
        kwargs = manager.connection_kwargs if manager is not None else getattr(
            getattr(client, "connection_pool", None), "connection_kwargs", {})
        timeout = kwargs.get("socket_timeout")
        return float(timeout) if timeout else None

    def write(self, batch: OnlineBatch) -> None:
        if not batch.rows:
            return
        if self.layout is None:
            self._write_through_feast(batch)
            return
        import redis

        commands = self.layout.commands
        if isinstance(self.client, redis.RedisCluster):  # a cluster: keys live on several masters
            self._write_cluster(batch)
            return
        # One buffer of HSET (+ EXPIRE) commands, then their replies: redis-py's pipeline
        # costs twice as much per command in Python as the bytes themselves.
        packed = b"".join(commands(entity_id, blob, last, self.ttl) for entity_id, (blob, last) in batch.rows.items())
        replies = len(batch.rows) * (2 if self.ttl else 1)
        conn = self.client.connection_pool.get_connection()
        try:
            conn.send_packed_command([packed])
            _read_line_replies(conn, replies)
        except BaseException:
            conn.disconnect()  # replies may be left unread: never reuse it
            raise
        finally:
            self.client.connection_pool.release(conn)

    def _write_cluster(self, batch: OnlineBatch) -> None:
        """The same commands grouped by the master of each key's hash slot, each master's sent
        on one of its connections and followed by ``WAIT 1``, so that a write is on the master's
        replica (which a failover promotes) before the write returns, and so before the offsets
        of its records commit. The masters are written to at once, then their replies read.

        A master that is down, or a reply that says the slot moved (``MOVED``: a failover
        happened), fails the write after the client has re-read the cluster's layout: the
        worker retries the batch (idempotent) against the new master. A replica that does not
        acknowledge within ``replica_wait_ms`` (down, or none left after a failover) does not
        fail it: the write stands on its master alone, counted in ``unreplicated_writes``."""
        import redis
        from redis.crc import key_slot
        from redis.exceptions import RedisClusterException

        assert self.layout is not None
        layout, manager = self.layout, self.client.nodes_manager
        slots = manager.slots_cache
        commands, ttl = layout.commands, self.ttl
        per_node: dict[str, tuple[Any, list[bytes]]] = {}
        try:
            for entity_id, (blob, last) in batch.rows.items():
                key = layout.key(entity_id)
                owners = slots.get(key_slot(key))
                if not owners:
                    raise redis.ConnectionError("a hash slot has no master in the cluster's layout")
                node = owners[0]  # (the master first)
                per_node.setdefault(node.name, (node, []))[1].append(commands(entity_id, blob, last, ttl, key))
            sent: list[tuple[Any, Any, int]] = []
            try:
                for node, cmds in per_node.values():
                    pool = self.client.get_redis_connection(node).connection_pool
                    conn = pool.get_connection()
                    sent.append((pool, conn, len(cmds) * (2 if ttl else 1) + 1))
                    conn.send_packed_command([b"".join(cmds) + _WAIT % _bulk(str(self.replica_wait_ms).encode())])
                for _pool, conn, n in sent:
                    if _read_line_replies(conn, n) == b":0":
                        self.unreplicated_writes += 1
            except BaseException:
                for _pool, conn, _n in sent:
                    conn.disconnect()  # replies may be left unread: never reuse it
                raise
            finally:
                for pool, conn, _n in sent:
                    pool.release(conn)
        except (redis.ConnectionError, redis.TimeoutError, redis.ResponseError, RedisClusterException, OSError):
            try:  # (a failover moved the slots, or is under way: the retry routes by the new layout)
                manager.initialize()
            except Exception:  # noqa: BLE001, S110 - the cluster is still electing: the next retry re-reads it
                pass
            raise

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
        self._ts_field_bytes = self._ts_field.encode()
        # One format per HSET (+ EXPIRE): the fixed parts spelled out once. The arguments are
        # the key's length and bytes, then the timestamp's, the state value's and the
        # last-event-time value's, each as (length, bytes).
        self._hset = (b"*8\r\n$4\r\nHSET\r\n$%d\r\n%b\r\n" + _bulk(self._ts_field_bytes) + b"$%d\r\n%b\r\n"
                      + _bulk(self._state_field) + b"$%d\r\n%b%b\r\n" + _bulk(self._last_field)
                      + b"$%d\r\n\x20%b\r\n")
        self._seconds: dict[int, bytes] = {}  # (event times of a batch share their seconds)

    def commands(self, entity_id: str, blob: bytes, last_ms: int, ttl: int | None, key: bytes | None = None) -> bytes:
        """HSET of the entity's fields (and EXPIRE with a ttl), in Redis's wire protocol (the
        bytes redis-py would send, in a third of the time its pipeline takes). ``key``: the
        entity's ``key()``, when the caller has it already."""
        if key is None:
            raw = entity_id.encode()
            key = b"%b%b%b%b" % (self._head, len(raw).to_bytes(4, "little"), raw, self._project)
        seconds, ms = divmod(last_ms, 1000)
        head = self._seconds.get(seconds)
        if head is None:
            if len(self._seconds) > 4096:
                self._seconds.clear()
            head = self._seconds[seconds] = b"\x08" + _varint(seconds) if seconds else b""
        ts = head + _NANOS[ms]
        size = _varint(len(blob))
        last = _varint(last_ms)
        out = self._hset % (len(key), key, len(ts), ts, 1 + len(size) + len(blob), b"\x0a" + size, blob,
                            1 + len(last), last)
        if ttl:
            out += b"*3\r\n$6\r\nEXPIRE\r\n$%d\r\n%b\r\n%b" % (len(key), key, _bulk(str(int(ttl)).encode()))
        return out

    def key(self, entity_id: str) -> bytes:
        """The entity's Redis key, as Feast's ``_redis_key`` builds it."""
        raw = entity_id.encode()
        return b"%b%b%b%b" % (self._head, len(raw).to_bytes(4, "little"), raw, self._project)

    def fields(self, blob: bytes, last_ms: int) -> dict[Any, bytes]:
        """The protobufs spelled out (a third of the cost of building and serializing messages):
        ``Timestamp`` (seconds = 1, nanos = 2, zeros omitted) and Feast's ``Value`` oneof
        (bytes_val = 1, int64_val = 4, always present); tests/unit/test_online_layout.py checks
        them against the protobuf library's bytes."""
        seconds, ms = divmod(last_ms, 1000)
        ts = (b"\x08" + _varint(seconds) if seconds else b"") + (b"\x10" + _varint(ms * 1_000_000) if ms else b"")
        return {self._ts_field: ts, self._state_field: b"\x0a" + _varint(len(blob)) + blob,
                self._last_field: b"\x20" + _varint(last_ms)}


def online_server_id(store: Any) -> str | None:
    """The online store's Redis run_id (it changes when the server restarts, which can lose
    its last second of writes); None while it does not answer. Of a Redis Cluster, its masters'
    addresses and run_ids: a failover (a replica promoted in a dead master's place, which may
    lack the master's last writes) or a master's restart changes it too."""
    import redis
    from redis.exceptions import RedisClusterException

    client = store._get_provider().online_store._get_client(store.config.online_store)  # noqa: SLF001
    try:
        if isinstance(client, redis.RedisCluster):
            infos: Any = client.info("server", target_nodes=redis.RedisCluster.PRIMARIES)
            return ",".join(sorted(f"{node}={info.get('run_id')}" for node, info in infos.items())) or None
        info = client.info("server")
    except (redis.RedisError, RedisClusterException, OSError):
        return None
    return str(info["run_id"]) if "run_id" in info else None


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


def _varint(n: int) -> bytes:
    """A protobuf varint (a negative int64 as its 64-bit two's complement, 10 bytes)."""
    if n < 0:
        n += 1 << 64
    if n < 0x80:
        return bytes((n,))
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _read_line_replies(conn: Any, n: int) -> bytes:
    """Read the ``n`` replies of HSET and EXPIRE commands straight from the connection's socket:
    each is one line, an integer (``:1``) or an error (``-ERR ...``), so counting line ends is
    parsing them (redis-py's parser costs 2.5 µs of CPU per reply, this 0.1). The first error
    is raised as redis-py raises it; a closed connection or a reply that is not one line is
    a ``ConnectionError`` (the caller drops the connection either way). Returns the last
    reply's line (e.g. ``WAIT``'s count of replicas, ``:1``)."""
    import redis

    sock, buf, lines = conn._sock, bytearray(), 0  # noqa: SLF001 - the socket send_packed_command wrote to
    try:
        while lines < n:
            chunk = sock.recv(1 << 16)
            if not chunk:
                raise redis.ConnectionError("Redis closed the connection before it replied")
            start = max(0, len(buf) - 1)  # (a line end split between two chunks)
            buf += chunk
            lines += buf.count(b"\r\n", start)
    except OSError as exc:  # (a socket timeout too)
        raise redis.ConnectionError(f"reading replies from Redis: {exc}") from exc
    if lines != n or not buf.endswith(b"\r\n"):
        raise redis.ConnectionError(f"expected {n} one-line replies from Redis, got {lines} lines")
    if buf[0] != 0x3A or b"\n-" in buf:  # (":" starts an integer, "-" an error)
        for line in bytes(buf).split(b"\r\n"):
            if line[:1] == b"-":
                raise redis.ResponseError(line[1:].decode("utf-8", "replace"))
            if line[:1] != b":" and line:
                raise redis.ConnectionError(f"unexpected reply from Redis: {line[:80]!r}")
    return bytes(buf[buf.rfind(b"\n", 0, len(buf) - 2) + 1:-2])


def _bulk(value: bytes) -> bytes:
    return b"$%d\r\n%b\r\n" % (len(value), value)


#: ``WAIT 1 <ms>``: the replicas that acknowledged the connection's writes (at least one wanted)
_WAIT = b"*3\r\n$4\r\nWAIT\r\n$1\r\n1\r\n%b"

#: a Timestamp's nanos field for each millisecond (none for 0: protobuf omits zeros)
_NANOS = [b""] + [b"\x10" + _varint(ms * 1_000_000) for ms in range(1, 1000)]


class OfflineLog:
    """Appends rows as new parquet files under ``<root>/<dataset>/date=YYYY-MM-DD/``: the
    cost of an append does not depend on how much history there is."""

    def __init__(self, root: Path | str | Any, writer_id: str | None = None) -> None:
        from core import storage

        #: where the log lives (core.storage: a local folder or an object store URL)
        self.store = storage.root(root)
        #: the local folder (None in an object store)
        self.root: Path | None = None if self.store.remote else Path(self.store.url)
        self.writer_id = writer_id or uuid.uuid4().hex[:8]
        self._seq = 0

    @staticmethod
    def table(rows: list[Any]) -> pa.Table:
        """Rows (dicts with the same keys, made by one builder and so in the same order; or a
        ``streaming.processor.ValueRows``, which converts itself) as one Arrow table, for
        ``append_tables``."""
        if hasattr(rows, "table"):
            return rows.table()
        if rows[-1].keys() != rows[0].keys():  # (rows of other lengths: zip's strict refuses them)
            raise ValueError("offline rows of one batch must have the same keys in the same order")
        columns = zip(*(r.values() for r in rows), strict=True)  # (a third faster than by key)
        return pa.Table.from_pydict(dict(zip(rows[0], columns, strict=True)))

    def append(self, dataset: str, rows: list[Any]) -> int:
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
        written = 0
        for d, part in self.by_date(table):
            (self.store / dataset / f"date={d}").put_parquet(self._name(), part)
            written += part.num_rows
        return written

    @staticmethod
    def by_date(table: pa.Table) -> list[tuple[str, pa.Table]]:
        """The table with its ``event_timestamp`` column, split by UTC date of event time."""
        pc = pa.compute
        ts = pc.cast(table["event_time"], pa.timestamp("ms", tz="UTC"))
        table = table.append_column("event_timestamp", ts)
        day = pc.divide(table["event_time"], 86_400_000)  # (integer: event times are >= 0, from 2000 on)
        days = pc.unique(day).to_pylist()
        if len(days) == 1:
            return [(_date(days[0]), table)]
        return [(_date(d), table.filter(pc.equal(day, d))) for d in days]

    def new_file(self, dataset: str, date: str) -> tuple[Path, Path]:
        """A new file's hidden name to write and the name that makes it visible."""
        assert self.root is not None, "an object store has no hidden files"
        folder = self.root / dataset / f"date={date}"
        folder.mkdir(parents=True, exist_ok=True)
        name = self._name()
        return folder / f".{name}.tmp", folder / name

    def _name(self) -> str:
        self._seq += 1
        return f"part-{int(time.time() * 1000)}-{self.writer_id}-{self._seq:06d}.parquet"

    def remove_stale(self, older_than_s: float = 3600.0) -> int:
        """Delete hidden files a killed writer left (``kill -9`` mid-write): a live writer's
        are at most one checkpoint old. Returns how many."""
        if self.root is None:
            return 0  # (an object store has no half-written files to leave)
        cutoff, gone = time.time() - older_than_s, 0
        for f in self.root.glob("*/date=*/.part-*.tmp") if self.root.exists() else ():
            try:
                if f.stat().st_mtime < cutoff:
                    f.unlink()
                    gone += 1
            except FileNotFoundError:
                pass
        return gone


@dataclass
class _Staged:
    dataset: str
    date: str
    tmp: Path
    path: Path
    schema: pa.Schema
    writer: pq.ParquetWriter | None
    rows: int = 0
    #: chunks not yet written (a row group is written from ``ROW_GROUP_ROWS`` rows on)
    pending: list[pa.Table] = field(default_factory=list)
    pending_rows: int = 0

    def write_pending(self) -> None:
        if self.pending:
            self.writer.write_table(pa.concat_tables(self.pending))  # type: ignore[union-attr]
            self.pending, self.pending_rows = [], 0


class StagedOffline:
    """One checkpoint's offline rows, written while the checkpoint runs instead of at its end:
    ``add`` hands a chunk (an Arrow table) to a thread of its own, which appends it as a row
    group to a hidden file per (dataset, date); ``seal``, at the checkpoint, waits for it,
    closes, fsyncs and renames the files (then they are visible and durable, as with
    ``OfflineLog.append_tables``) and returns the rows written per dataset. Parquet encoding
    and compression release the GIL, so the stream loop keeps processing meanwhile and the
    checkpoint only waits for the last chunk.

    A failed write (a full disk) deletes the checkpoint's files at once and is raised by
    ``seal``; ``abort`` (a dropped checkpoint) deletes them too. Either way no hidden file
    outlives its checkpoint, and no row is visible before its checkpoint seals.

    Chunks are written as row groups of at least ``ROW_GROUP_ROWS`` rows (the rest at the
    seal): writing each 100 ms chunk as its own row group cost twice as much in all."""

    ROW_GROUP_ROWS = 8_192

    def __init__(self, log: OfflineLog) -> None:
        self.log = log
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="offline-writer")
        # (touched only in the writer thread)
        self._open: dict[tuple[str, str], _Staged] = {}
        self._closed: list[_Staged] = []
        self._error: BaseException | None = None

    def add(self, dataset: str, table: pa.Table) -> None:
        if table.num_rows:
            self._pool.submit(self._write, dataset, table)

    def seal(self) -> dict[str, int]:
        return self._pool.submit(self._seal).result()

    def abort(self) -> None:
        self._pool.submit(self._abort).result()

    def close(self) -> None:
        self.abort()
        self._pool.shutdown()

    # -- in the writer thread ------------------------------------------------------------
    def _write(self, dataset: str, table: pa.Table) -> None:
        if self._error is not None:
            return  # the checkpoint failed already: seal raises it
        try:
            for date, part in OfflineLog.by_date(table):
                f = self._open.get((dataset, date))
                if f is not None and part.schema != f.schema:
                    try:  # (e.g. a column all None in one chunk, typed null)
                        part = part.cast(f.schema)
                    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, ValueError, TypeError):
                        self._close(f)  # a file per schema: both are sealed together
                        f = None
                if f is None:
                    tmp, path = self.log.new_file(dataset, date)
                    f = self._open[(dataset, date)] = _Staged(dataset, date, tmp, path, part.schema, None)
                    f.writer = pq.ParquetWriter(tmp, part.schema, compression="zstd")
                f.pending.append(part)
                f.rows += part.num_rows
                f.pending_rows += part.num_rows
                if f.pending_rows >= self.ROW_GROUP_ROWS:
                    f.write_pending()
        except BaseException as exc:  # noqa: BLE001 - raised by seal
            self._discard()
            self._error = exc

    def _close(self, f: _Staged) -> None:
        del self._open[(f.dataset, f.date)]
        f.write_pending()
        f.writer.close()  # type: ignore[union-attr]
        self._closed.append(f)

    def _seal(self) -> dict[str, int]:
        written: dict[str, int] = {}
        try:
            if self._error is not None:
                raise self._error
            for f in list(self._open.values()):
                self._close(f)
            for f in self._closed:
                storage.fsync(f.tmp)  # the bytes are on disk before the name says they are
            for f in self._closed:
                f.tmp.rename(f.path)  # readers never see a half-written file
                written[f.dataset] = written.get(f.dataset, 0) + f.rows
            for folder in {f.path.parent for f in self._closed}:
                storage.fsync(folder)  # and the renames survive a power loss
            self._closed = []
            return written
        except BaseException:
            self._abort()
            raise

    def _abort(self) -> None:
        self._discard()
        self._error = None

    def _discard(self) -> None:
        for f in [*self._open.values(), *self._closed]:
            try:
                if f.writer is not None:
                    f.writer.close()
            except Exception:  # noqa: BLE001, S110 - (a full disk): the file goes anyway
                pass
            f.tmp.unlink(missing_ok=True)
        self._open, self._closed = {}, []


def _date(day: int) -> str:
    return datetime.fromtimestamp(day * 86_400, tz=UTC).strftime("%Y-%m-%d")


def read_dataset(root: Path | str | Any, dataset: str) -> pd.DataFrame:
    """All rows of an offline dataset (empty frame when there are none); ``root``: a folder
    or an object store URL (core.storage)."""
    from core import storage

    folder = storage.root(root) / dataset
    files = folder.files()
    if not files:
        return pd.DataFrame()
    fs = folder.fs
    return pd.concat([pq.read_table(f, filesystem=fs).to_pandas() for f in files], ignore_index=True)


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
