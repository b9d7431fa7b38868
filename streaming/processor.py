"""Per-event processing, pure and broker-free: update an entity's window state and say what
to write. The Faust worker, the batch backfill and the tests all call ``process``; what an
entity keeps and which features it has come from its spec (streaming/entities.py).

Event-time policy (the event's time is the producer's claim; the ingest time is the
pipeline's: the Kafka record's timestamp, never later than the worker's clock):

- an event dated more than ``max_future_skew_ms`` after its ingest time is rejected
  (``FUTURE``: the worker dead-letters it);
- the entity's watermark is its newest accepted event time *bounded by the ingest time*
  of the event being judged, so one record can move it at most to "now";
- an event older than the watermark by more than ``allowed_lateness_ms`` is too late for
  the windows (it still reaches the offline log, flagged);
- the state keeps the events of the last 24 h + lateness before the watermark.

Hence no single record can erase an entity's history or make later events late: an event
delivered within the allowed lateness of its ingest time is judged the same with or
without any other record (tests/unit/test_event_time.py checks this with Hypothesis).

Delivery: at-least-once with idempotent effects. A replayed event (already in the state,
found by its event-id key) is not counted again, but its outputs are emitted again: the
online write overwrites the entity's state blob, and offline rows are keyed by
(entity id, event_key, revision), of which readers keep the highest revision.
"""

from __future__ import annotations

import time
from bisect import bisect_right
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import msgspec
import numpy as np
import pyarrow as pa

from core import features
from core.card_state import DAY_MS, EventState, event_key
from core.contracts import SCHEMA_VERSION, InvalidEvent, decode_versioned
from streaming.entities import CARD, EntitySpec, event_row


class Outcome(StrEnum):
    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    TOO_LATE = "too_late"
    FUTURE = "future"


@dataclass(frozen=True)
class ProcessorConfig:
    #: an event older than its entity's newest event by more than this is too late for the
    #: windows (it still reaches the offline log, flagged)
    allowed_lateness_ms: int = 60_000
    #: events kept per entity (oldest dropped first) as a memory bound
    max_events_per_card: int = 5_000
    #: an event dated more than this after its ingest time is rejected (dead letters)
    max_future_skew_ms: int = 300_000

    @property
    def retention_ms(self) -> int:
        return DAY_MS + self.allowed_lateness_ms


@dataclass
class Result:
    outcome: Outcome
    #: feature rows for the offline log: this event, plus corrections of later events of
    #: the entity whose "before" view an out-of-order event changed (made by ``process``'s
    #: ``row``: dicts by default)
    feature_rows: list[Any]
    #: whether the entity's online state changed (or must be rewritten after a replay)
    dirty: bool
    #: with ``defer_corrections``: the (event_time, event_key) after which the entity's later
    #: events need corrected rows (see ``correction_rows``); None when none do
    correct_from: tuple[int, int] | None = None
    #: later events whose rows an out-of-order event on an entity at its event cap would have
    #: changed, left as they were (see ``process``)
    skipped_corrections: int = 0
    #: the event's key (``core.card_state.event_key`` of its id)
    key: int | None = None


def feature_row(spec: EntitySpec, entity_id: str, state: EventState, i: int, status: Outcome,
                revision: int) -> dict[str, Any]:
    """The offline feature row of the state's i-th event, as a dict (column -> value)."""
    return {spec.join_key: entity_id, "event_key": state.key[i], "event_time": state.ts[i],
            "status": status.value, "revision": revision, **spec.row_features(state, i)}


#: the offline row's leading columns (after the entity's join key), in ``feature_values`` order
ROW_META = ("event_key", "event_time", "status", "revision")
_META_TYPES = {"event_key": pa.int64(), "event_time": pa.int64(), "status": pa.string(), "revision": pa.int64()}


def feature_values(spec: EntitySpec, entity_id: str, state: EventState, i: int, status: Outcome,
                   revision: int) -> tuple[tuple, tuple[float, ...]]:
    """The same row as ``feature_row``, as (the join key and ``ROW_META`` values, the feature
    values in ``spec.row_names`` order): what the workers collect in ``ValueRows`` and turn
    into Arrow column-wise, with no dict per row."""
    return (entity_id, state.key[i], state.ts[i], status.value, revision), spec.row_values(state, i)


RowMaker = Callable[[EntitySpec, str, EventState, int, Outcome, int], Any]


class ValueRows(list):  # type: ignore[type-arg]
    """Offline feature rows of one entity kind made by ``feature_values``: a list, turned into
    one Arrow table column-wise (``table``), equal to ``OfflineLog.table`` of the same rows as
    dicts (tested): the features as one float64 matrix, the integer ones cast back."""

    def __init__(self, spec: EntitySpec) -> None:
        super().__init__()
        self.spec = spec

    def table(self) -> pa.Table:
        spec = self.spec
        meta, values = zip(*self, strict=True)
        ids, *rest = zip(*meta, strict=True)
        matrix = np.array(values, np.float64).T.copy()  # (a row per feature: each contiguous)
        columns = {spec.join_key: pa.array(ids, pa.string())}
        for name, column in zip(ROW_META, rest, strict=True):
            columns[name] = pa.array(column, _META_TYPES[name])
        for name, column in zip(spec.row_names, matrix, strict=True):
            columns[name] = pa.array(column.astype(np.int64) if name in spec.row_ints else column)
        return pa.table(columns)


def correction_rows(spec: EntitySpec, entity_id: str, state: EventState, after: tuple[int, int], revision: int,
                    limit: int | None = None, row: RowMaker = feature_row) -> tuple[list[Any], tuple[int, int] | None]:
    """Rows of the events sorting after ``after`` (whose "before" view an out-of-order event
    changed), at most ``limit`` of them: (rows, where to continue, or None when done)."""
    start = state.prefix_len(*after, inclusive=True)
    end = len(state) if limit is None else min(len(state), start + max(0, limit))
    rows = [row(spec, entity_id, state, j, Outcome.ACCEPTED, revision) for j in range(start, end)]
    if end >= len(state):
        return rows, None
    return rows, ((state.ts[end - 1], state.key[end - 1]) if end > start else after)


def drain_corrections(spec: EntitySpec, corrections: dict[str, tuple[int, int]],
                      state_of: Callable[[str], EventState], revision: int, rows: list[Any],
                      budget: int | None = None, row: RowMaker = feature_row) -> tuple[int | None, int, int]:
    """Write the coalesced corrections (entity -> where they resume) into ``rows``, at most
    ``budget`` rows (None: all); an entity whose corrections are all written leaves
    ``corrections``, the others resume later. Returns (budget left, rows, entities touched)."""
    written = touched = 0
    for entity_id, after in list(corrections.items()):
        if budget is not None and budget <= 0:
            break
        new, resume = correction_rows(spec, entity_id, state_of(entity_id), after, revision, budget, row)
        rows.extend(new)
        written, touched = written + len(new), touched + 1
        if budget is not None:
            budget -= max(1, len(new))
        if resume is None:
            del corrections[entity_id]
        else:
            corrections[entity_id] = resume
    return budget, written, touched


def _earliest(a: tuple[int, int] | None, b: tuple[int, int] | None) -> tuple[int, int] | None:
    return b if a is None else a if b is None else min(a, b)


def _trim_cuts_into(state: EventState, horizon_ts: int, max_events: int, after: tuple[int, int]) -> bool:
    """Would trimming drop an event the corrected rows after ``after`` still need (one in
    the 24 h before it)?"""
    n = max(bisect_right(state.ts, horizon_ts), len(state) - max_events)
    return n > 0 and state.ts[n - 1] > after[0] - DAY_MS


def process(state: EventState, event: msgspec.Struct, cfg: ProcessorConfig, revision: int,
            spec: EntitySpec = CARD, ingest_ms: int | None = None, defer_corrections: bool = False,
            pending: tuple[int, int] | None = None, row: RowMaker = feature_row) -> Result:
    """Apply one event to its entity's state (mutated in place). ``ingest_ms``: when the
    pipeline received it (default: the wall clock now).

    An out-of-order event changes the "before" view of the entity's later events: their rows
    are corrected (emitted again with this revision). Inline by default. With
    ``defer_corrections`` only the event's own row is returned, and ``correct_from`` is the
    entity's corrections still to write (``pending``, the caller's marker so far, merged with
    this event's), so that a caller (the worker) can coalesce them per entity and spread them
    over flushes (``correction_rows``) instead of stalling on a busy entity. They are written
    inline after all (and ``correct_from`` is None) when this event's trim would drop events
    they need. ``row`` makes the rows (``feature_row``: dicts; ``feature_values``)."""
    key = event_key(event.event_id)  # type: ignore[attr-defined]
    ts: int = event.event_time  # type: ignore[attr-defined]
    entity_id: str = getattr(event, spec.join_key)
    ingest = int(time.time() * 1000) if ingest_ms is None else ingest_ms
    if ts > ingest + cfg.max_future_skew_ms:
        return Result(Outcome.FUTURE, [], dirty=False, correct_from=pending, key=key)
    watermark = min(state.last_ts, ingest)
    if state.contains(ts, key):
        # Re-emit its row only while the state still holds its whole 24 h past (replays
        # after a crash are recent); an older replay keeps the row written first.
        exact = state.trimmed_last_ts <= ts - DAY_MS
        i = state.prefix_len(ts, key, inclusive=False)
        if not exact:
            return Result(Outcome.DUPLICATE, [], dirty=True, correct_from=pending, key=key)
        again = row(spec, entity_id, state, i, Outcome.ACCEPTED, revision)
        if defer_corrections:  # its later events' corrections may not have been written either
            # (not at the event cap, where its corrections were skipped the first time too)
            later = (ts, key) if i < len(state) - 1 and len(state) < cfg.max_events_per_card else None
            return Result(Outcome.DUPLICATE, [again], dirty=True, correct_from=_earliest(pending, later), key=key)
        return Result(Outcome.DUPLICATE, [again], dirty=True, key=key)
    if state.last_ts and ts < watermark - cfg.allowed_lateness_ms:
        # Log what its features would have been; the windows do not take it.
        view, i = state.with_event(ts, key, *spec.payload(event))
        return Result(Outcome.TOO_LATE, [row(spec, entity_id, view, i, Outcome.TOO_LATE, revision)],
                      dirty=False, correct_from=pending, key=key)
    i = state.insert(ts, key, *spec.payload(event))
    if state.cache is None and spec.window_cache is not None and len(state) >= features.VECTOR_FROM:
        state.cache = spec.window_cache()  # (a busy entity: its windows slide from here on)
    horizon = min(state.last_ts, ingest) - cfg.retention_ms
    n_later = len(state) - 1 - i
    # At its event cap an entity's windows already miss the events the cap dropped, and exact
    # corrections of its later rows would need them: an out-of-order event there is counted
    # online and gets its own row, its later events' rows are left as they were (counted).
    # Otherwise one late event on a card at 1,000 events/s would rewrite 5,000 rows.
    skipped = n_later if n_later and len(state) > cfg.max_events_per_card else 0
    if not defer_corrections:
        rows = [row(spec, entity_id, state, j, Outcome.ACCEPTED, revision)
                for j in range(i, len(state) - skipped)]
        state.trim(horizon, cfg.max_events_per_card)
        return Result(Outcome.ACCEPTED, rows, dirty=True, skipped_corrections=skipped, key=key)
    rows = [row(spec, entity_id, state, i, Outcome.ACCEPTED, revision)]
    todo = _earliest(pending, (ts, key) if n_later and not skipped else None)
    if todo is not None and _trim_cuts_into(state, horizon, cfg.max_events_per_card, todo):
        rows += correction_rows(spec, entity_id, state, todo, revision, row=row)[0]
        todo = None
    state.trim(horizon, cfg.max_events_per_card)
    return Result(Outcome.ACCEPTED, rows, dirty=True, correct_from=todo, skipped_corrections=skipped,
                  key=key)


class Revisions:
    """Revision numbers of offline rows (readers keep a row's highest): microseconds of the
    wall clock, strictly increasing within the process.

    A later writer of a row must number higher than every earlier one, also when it is
    another worker: after a rebalance the new owner of a partition corrects rows its previous
    owner wrote. A per-process counter started at the process's start time got this wrong
    (a worker started later numbered higher than an older one that took its partitions over
    afterwards, and the older one's corrections lost). The wall clock gets it right as long as
    the workers' clocks agree to better than a partition takes to move (seconds; NTP keeps
    them within milliseconds). The backfill numbers its rows the same way."""

    def __init__(self) -> None:
        self._last = 0

    def __iter__(self) -> Revisions:
        return self

    def __next__(self) -> int:
        self._last = max(self._last + 1, time.time_ns() // 1000)
        return self._last


@dataclass
class Applied:
    """What one raw record did (``apply_record``)."""

    entity_id: str | None
    result: Result | None
    #: why the record goes to dead letters; None when it does not
    dead_letter: str | None = None
    #: a producer of a newer schema version wrote it (decoded by the fields this code knows)
    newer_schema: bool = False
    event_time: int = 0


def apply_record(spec: EntitySpec, cfg: ProcessorConfig, value: bytes, key: bytes | None, timestamp_ms: int | None,
                 state_of: Callable[[str], EventState], corrections: dict[str, tuple[int, int]],
                 event_rows: list[dict[str, Any]], feature_rows: list[Any], revision: int) -> Applied:
    """One raw record as every engine handles it: decoded (a newer schema version by its known
    fields); its Kafka key must be its entity id (the state's partition is the key's); its
    ingest time is the record's timestamp, never later than this clock (a producer-set future
    timestamp cannot stretch the skew allowance); ``process`` with the entity's live state
    (``state_of``) and its corrections deferred and coalesced in ``corrections``; its rows
    appended (on a replay too: the first copy may not have reached the disk, and readers drop
    duplicates), its feature rows made by ``feature_values`` (``feature_rows``: a ``ValueRows``)."""
    try:
        ev, version = decode_versioned(value, spec.event_type)
    except InvalidEvent as exc:
        return Applied(None, None, str(exc))
    entity_id: str = getattr(ev, spec.join_key)
    newer = version > SCHEMA_VERSION
    if key != entity_id.encode():
        return Applied(entity_id, None, f"record key {key!r} is not the event's {spec.join_key} {entity_id!r}", newer)
    wall = int(time.time() * 1000)
    ingest = min(int(timestamp_ms), wall) if timestamp_ms else wall
    ts: int = ev.event_time  # type: ignore[attr-defined]
    pending = corrections.get(entity_id)
    result = process(state_of(entity_id), ev, cfg, revision, spec, ingest_ms=ingest, defer_corrections=True,
                     pending=pending, row=feature_values)
    if result.outcome is Outcome.FUTURE:
        return Applied(entity_id, result, f"event_time {ts} is {(ts - ingest) / 1000:.0f} s after its ingest time "
                       f"{ingest} (more than the allowed skew of {cfg.max_future_skew_ms // 1000} s)", newer, ts)
    event_rows.append(event_row(ev, result.key))
    feature_rows.extend(result.feature_rows)
    if result.correct_from is not None:
        corrections[entity_id] = result.correct_from
    elif pending is not None:  # written inline after all (a trim needed them now)
        del corrections[entity_id]
    return Applied(entity_id, result, None, newer, ts)
