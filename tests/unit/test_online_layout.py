"""The online sink's Redis bytes are Feast's own (key, field hashes, value and timestamp
protobufs), so that ``get_online_features`` reads what the stream writes."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from feast.infra.online_stores.helpers import _mmh3, _redis_key
from feast.protos.feast.types.EntityKey_pb2 import EntityKey
from feast.protos.feast.types.Value_pb2 import Value
from feast.utils import make_tzaware
from google.protobuf.timestamp_pb2 import Timestamp
from hypothesis import given
from hypothesis import strategies as st
from redis.connection import PythonRespSerializer

from streaming.sinks import RedisLayout


def feast_fields(view: str, blob: bytes, last_ms: int) -> dict:
    """What feast.infra.online_stores.redis.online_write_batch hsets for one row."""
    ts = Timestamp()
    ts.FromDatetime(make_tzaware(datetime.fromtimestamp(last_ms / 1000.0, tz=UTC)))
    values = {"state": Value(bytes_val=blob), "last_event_time": Value(int64_val=last_ms)}
    return {f"_ts:{view}": ts.SerializeToString(),
            **{_mmh3(f"{view}:{name}"): v.SerializeToString() for name, v in values.items()}}


@given(entity_id=st.text(max_size=40), blob=st.binary(max_size=300),
       last_ms=st.one_of(st.integers(min_value=0, max_value=4_102_444_800_000), st.sampled_from([0, 1, 999, 1000])))
def test_keys_and_fields_are_feasts(entity_id: str, blob: bytes, last_ms: int) -> None:
    layout = RedisLayout("proj_x", "card_window_state", "card_id")
    want_key = _redis_key("proj_x", EntityKey(join_keys=["card_id"], entity_values=[Value(string_val=entity_id)]), 3)
    assert layout.key(entity_id) == want_key
    assert layout.fields(blob, last_ms) == feast_fields("card_window_state", blob, last_ms)


def test_other_serialization_versions_are_refused() -> None:
    with pytest.raises(ValueError, match="not supported"):
        RedisLayout("p", "v", "card_id", version=2)


@given(entity_id=st.text(max_size=20), blob=st.binary(max_size=100), last_ms=st.integers(0, 4_102_444_800_000),
       ttl=st.sampled_from([None, 0, 691_200]))
def test_commands_are_redis_wire_protocol(entity_id: str, blob: bytes, last_ms: int, ttl: int | None) -> None:
    """The sink sends the commands as one buffer: the bytes redis-py itself would send."""
    layout = RedisLayout("p", "card_window_state", "card_id")
    pack = PythonRespSerializer(6000, lambda v: v.encode() if isinstance(v, str) else v).pack
    key = layout.key(entity_id)
    args = [x for kv in layout.fields(blob, last_ms).items() for x in kv]
    want = b"".join(pack("HSET", key, *args))
    if ttl:
        want += b"".join(pack("EXPIRE", key, str(ttl)))
    assert layout.commands(entity_id, blob, last_ms, ttl) == want
    assert layout.commands(entity_id, blob, last_ms, ttl, key) == want  # (the key given, as the cluster write does)


@given(n=st.integers(min_value=-(2 ** 63), max_value=2 ** 63 - 1), blob=st.binary(max_size=2_000))
def test_the_spelled_out_protobufs_are_the_librarys(n: int, blob: bytes) -> None:
    from streaming.sinks import _varint

    assert b"\x20" + _varint(n) == Value(int64_val=n).SerializeToString()
    assert b"\x0a" + _varint(len(blob)) + blob == Value(bytes_val=blob).SerializeToString()
    if n >= 0:
        seconds, nanos = divmod(n, 1_000_000_000)
        want = Timestamp(seconds=seconds, nanos=nanos).SerializeToString()
        got = (b"\x08" + _varint(seconds) if seconds else b"") + (b"\x10" + _varint(nanos) if nanos else b"")
        assert got == want


class _Chunks:
    """A socket that hands out the given chunks, then end of stream."""

    def __init__(self, *chunks: bytes) -> None:
        self._sock, self.chunks = self, list(chunks)

    def recv(self, _size: int) -> bytes:
        return self.chunks.pop(0) if self.chunks else b""


def test_one_line_replies_are_counted_across_chunks_and_errors_raised() -> None:
    import redis

    from streaming.sinks import _read_line_replies

    # a line end split between chunks; the last reply is returned (a cluster write's WAIT count)
    assert _read_line_replies(_Chunks(b":1\r\n:0", b"\r", b"\n:1\r\n"), 3) == b":1"
    assert _read_line_replies(_Chunks(b":1\r\n:1\r\n:0\r\n"), 3) == b":0"
    assert _read_line_replies(_Chunks(b":12\r\n"), 1) == b":12"
    with pytest.raises(redis.ResponseError, match="^WRONGTYPE Operation"):
        _read_line_replies(_Chunks(b":1\r\n-WRONGTYPE Operation against a key\r\n:1\r\n"), 3)
    with pytest.raises(redis.ResponseError, match="^OOM"):
        _read_line_replies(_Chunks(b"-OOM command not allowed\r\n"), 1)
    with pytest.raises(redis.ConnectionError, match="closed the connection"):
        _read_line_replies(_Chunks(b":1\r\n"), 2)
    with pytest.raises(redis.ConnectionError, match="expected 1 one-line replies"):
        _read_line_replies(_Chunks(b":1\r\n:1\r\n"), 1)
    with pytest.raises(redis.ConnectionError, match="unexpected reply"):
        _read_line_replies(_Chunks(b"$1\r\n"), 1)
