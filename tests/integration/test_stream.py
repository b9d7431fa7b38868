"""The stream end to end on real Kafka, Redis and Feast: generated events -> Faust worker
processes -> the read function and the offline log equal a brute-force recomputation from
the raw records (0 mismatches); bad records are dead-lettered; kill -9 and restart loses and
doubles nothing; two workers share the load."""

from __future__ import annotations

import random
import time
import uuid
from pathlib import Path

import orjson
import pandas as pd
import pytest
from confluent_kafka import Consumer

from core import feast_store
from core.contracts import DeadLetter, Transaction, decode
from core.settings import REPO_ROOT, StackSettings
from stack import health
from stack.topics import ensure_topics
from streaming import backfill
from streaming.entities import CARD, event_row
from streaming.processor import ProcessorConfig
from streaming.read import CardFeatureReader
from streaming.sinks import OfflineLog, latest_feature_rows, read_dataset
from tests.support.reference import mismatches, reference_features, reference_request
from tests.support.stream import LATENESS_MS, Expected, WorkerProcess, generate, produce, wait_for

TXN_DATASET, FEATURE_DATASET = CARD.event_dataset, CARD.feature_dataset
#: both stream engines run the same exactness and fault tests (STREAMING_ENGINE)
ENGINES = ["faust", "quix"]


@pytest.fixture
def repo(feast_repo: StackSettings, kafka_bootstrap: str, tmp_path: Path) -> StackSettings:
    """A fresh applied copy of feature_repo/ (own offline log) on the session's services."""
    host, _, port = kafka_bootstrap.rpartition(":")
    return feast_store.isolated_copy(feast_repo, tmp_path, kafka_host=host, kafka_port=int(port))


@pytest.fixture
def topics(kafka_bootstrap: str) -> tuple[str, str, str]:
    """(transactions, dead letters, clicks), fresh for the test."""
    names = (f"txn-{uuid.uuid4().hex[:8]}", f"dlq-{uuid.uuid4().hex[:8]}", f"clk-{uuid.uuid4().hex[:8]}")
    ensure_topics(kafka_bootstrap, names, partitions=3)
    return names


def _offline_keys(settings: StackSettings) -> set[int]:
    df = read_dataset(feast_store.offline_dir(settings, ""), TXN_DATASET)
    return set(df["event_key"]) if not df.empty else set()


def _wait_done(settings: StackSettings, exp: Expected, workers: list[WorkerProcess]) -> None:
    want = {e.key for evs in exp.accepted.values() for e in evs}
    wait_for(lambda: want <= _offline_keys(settings), 180, "every accepted event in the offline log", workers)
    # out-of-order corrections are written over the next flushes (a few hundred rows each)
    wait_for(lambda: all(w.metric("stream_corrections_pending") == 0 for w in workers), 120,
             "the corrections written", workers)


def _check(settings: StackSettings, exp: Expected) -> None:
    reader = CardFeatureReader(feast_store.open_store(settings))
    cards = sorted(exp.accepted)
    all_ts = [e.ts for evs in exp.accepted.values() for e in evs]
    rng = random.Random(0)
    times = [max(all_ts) + 1, max(all_ts) + 90_000, min(all_ts) + (max(all_ts) - min(all_ts)) // 2,
             rng.randint(min(all_ts), max(all_ts)), max(all_ts) + 2 * 3_600_000]
    bad_online = []
    for t in times:
        for read in reader.read(cards, t):
            want = reference_features(exp.accepted[read.card_id], t)
            bad_online += [f"{read.card_id}@{t} {m}" for m in mismatches(read.features, want)]
            assert read.found
    assert bad_online == [], bad_online[:10]

    rows = latest_feature_rows(read_dataset(feast_store.offline_dir(settings, ""), FEATURE_DATASET))
    by_key = {(r["card_id"], r["event_key"]): r for r in rows.to_dict("records")}
    bad_offline = []
    for card, evs in exp.accepted.items():
        for e in evs:
            row = by_key[(card, e.key)]
            assert row["status"] == "accepted"
            before = reference_request(reference_features(evs, e.ts, (e.ts, e.key)), e.amount, e.ts)
            after = reference_request(reference_features(evs, e.ts, (e.ts, e.key), True), e.amount, e.ts)
            bad_offline += mismatches(row, before)
            bad_offline += mismatches({k[6:]: v for k, v in row.items() if k.startswith("after_")}, after)
    assert bad_offline == [], bad_offline[:10]
    n_accepted = sum(len(v) for v in exp.accepted.values())
    assert (rows["status"] == "accepted").sum() == n_accepted
    assert (rows["status"] == "too_late").sum() == exp.too_late
    txns = read_dataset(feast_store.offline_dir(settings, ""), TXN_DATASET)
    assert txns["event_id"].nunique() == exp.valid  # every valid record reached the offline log


@pytest.mark.parametrize("engine", ENGINES)
def test_features_online_and_offline_equal_the_brute_force(
        engine: str, repo: StackSettings, topics: tuple[str, str, str], kafka_bootstrap: str, tmp_path: Path) -> None:
    records = generate(4000, seed=11, late_rate=0.03, max_delay_ms=120_000, bad_rate=0.003, fraud_rate=0.01)
    exp = Expected.of(records)
    assert exp.too_late > 0 and exp.bad > 0  # the run exercises lateness and bad records
    produce(kafka_bootstrap, topics[0], records)
    worker = WorkerProcess(repo, f"t-{uuid.uuid4().hex[:6]}", *topics, tmp_path / "w.log").start()
    try:
        _wait_done(repo, exp, [worker])
        _check(repo, exp)
        wait_for(lambda: worker.metric("stream_dead_letters_total") >= exp.bad, 30, "dead-letter count",
                 [worker])
        assert worker.metric("stream_dead_letters_total") == exp.bad
    finally:
        worker.stop()

    # The batch backfill from the same topic runs the same code: identical feature rows.
    out = tmp_path / "backfill"
    events, total = backfill.from_topic(kafka_bootstrap, topics[0], timestamps=True)
    counts = backfill.run(events, total, OfflineLog(out), ProcessorConfig(LATENESS_MS), progress=False)
    assert counts["invalid"] == exp.bad and counts["too_late"] == exp.too_late
    stream_rows = latest_feature_rows(read_dataset(feast_store.offline_dir(repo, ""), FEATURE_DATASET))
    batch_rows = latest_feature_rows(read_dataset(out, FEATURE_DATASET))
    cols = [c for c in stream_rows.columns if c not in ("revision", "event_timestamp")]
    def ordered(df: pd.DataFrame) -> pd.DataFrame:
        return df[cols].sort_values(["card_id", "event_key"]).reset_index(drop=True)

    pd.testing.assert_frame_equal(ordered(stream_rows), ordered(batch_rows))

    consumer = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": "dlq-check",
                         "auto.offset.reset": "earliest"})
    consumer.subscribe([topics[1]])
    letters: list[DeadLetter] = []
    deadline_polls = 200
    while len(letters) < exp.bad and deadline_polls:
        deadline_polls -= 1
        letters += [decode(m.value(), DeadLetter) for m in consumer.consume(100, 0.2) if m.error() is None]
    consumer.close()
    assert len(letters) == exp.bad
    assert all(dl.reason and dl.source_topic == topics[0] and dl.offset >= 0 for dl in letters)
    assert any("currency" in dl.reason for dl in letters) or any("amount" in dl.reason for dl in letters) \
        or any("malformed" in dl.reason for dl in letters)


@pytest.mark.parametrize("engine", ["quix"])
def test_states_kept_decoded_across_checkpoints_give_the_brute_force(
        engine: str, repo: StackSettings, topics: tuple[str, str, str], kafka_bootstrap: str, tmp_path: Path) -> None:
    """The Quix engine keeps states decoded from one checkpoint to the next (taken only while
    RocksDB's committed bytes are the ones it packed): a second wave of events on the same
    cards, checkpoints later, takes most states from there, and every online and offline
    value still equals the brute force."""
    from stack import health

    records = generate(3000, seed=5, users=300, late_rate=0.02, max_delay_ms=120_000)
    exp = Expected.of(records)
    first, second = records[:1500], records[1500:]
    worker = WorkerProcess(repo, f"t-{uuid.uuid4().hex[:6]}", *topics, tmp_path / "w.log").start()
    try:
        produce(kafka_bootstrap, topics[0], first)
        # (its rows are visible once the checkpoint that holds them sealed them)
        wave = {e.key for evs in Expected.of(first).accepted.values() for e in evs}
        wait_for(lambda: wave <= _offline_keys(repo), 120, "the first wave's checkpoints", [worker])
        produce(kafka_bootstrap, topics[0], second)
        _wait_done(repo, exp, [worker])
        _check(repo, exp)
        samples = health.prometheus_samples(f"http://127.0.0.1:{worker.metrics_port}/metrics") or {}
    finally:
        worker.stop()
    kept = samples.get('stream_state_reads_total{source="kept"}', 0)
    store = samples.get('stream_state_reads_total{source="store"}', 0)
    assert kept > 200 and store >= 300, samples  # (every card's first read is from the store)


@pytest.mark.parametrize("engine", ENGINES)
def test_kill_9_and_restart_loses_and_doubles_nothing(
        engine: str, repo: StackSettings, topics: tuple[str, str, str], kafka_bootstrap: str, tmp_path: Path) -> None:
    records = generate(6000, seed=12, late_rate=0.01)
    exp = Expected.of(records)
    half = len(records) // 2
    produce(kafka_bootstrap, topics[0], records[:half])
    app_id = f"t-{uuid.uuid4().hex[:6]}"
    first = WorkerProcess(repo, app_id, *topics, tmp_path / "w1.log").start()
    wait_for(lambda: first.metric("stream_events_in_total") >= half // 2, 120, "the worker to get going",
             [first])
    first.kill()  # SIGKILL mid-stream: no flush, no commit
    produce(kafka_bootstrap, topics[0], records[half:])
    second = WorkerProcess(repo, app_id, *topics, tmp_path / "w2.log").start()
    try:
        _wait_done(repo, exp, [second])
        _check(repo, exp)
    finally:
        second.stop()


@pytest.mark.parametrize("engine", ENGINES)
def test_two_workers_share_the_partitions(
        engine: str, repo: StackSettings, topics: tuple[str, str, str], kafka_bootstrap: str, tmp_path: Path) -> None:
    records = generate(4000, seed=13)
    exp = Expected.of(records)
    app_id = f"t-{uuid.uuid4().hex[:6]}"
    workers = [WorkerProcess(repo, app_id, *topics, tmp_path / f"w{i}.log").start() for i in range(2)]
    try:
        wait_for(lambda: all(w.metric("stream_assigned_partitions") > 0 for w in workers)
                 and sum(w.metric("stream_assigned_partitions") for w in workers) == 3,
                 120, "both workers to own partitions", workers)
        produce(kafka_bootstrap, topics[0], records)
        _wait_done(repo, exp, workers)
        _check(repo, exp)
        assert all(w.metric("stream_events_in_total") > 0 for w in workers)
    finally:
        for w in workers:
            w.stop()


@pytest.mark.parametrize("engine", ENGINES)
def test_metrics_are_prometheus_text(engine: str, repo: StackSettings, topics: tuple[str, str, str],
                                     kafka_bootstrap: str, tmp_path: Path) -> None:
    records = generate(300, seed=14)
    produce(kafka_bootstrap, topics[0], records)
    app_id = f"t-{uuid.uuid4().hex[:6]}"
    worker = WorkerProcess(repo, app_id, *topics, tmp_path / "w.log").start()
    try:
        wait_for(lambda: worker.metric("stream_events_in_total") >= len(records), 120, "all events", [worker])
        wait_for(lambda: worker.metric("stream_feature_freshness_seconds_count") > 0, 30, "a push", [worker])
        assert worker.metric("stream_push_batch_rows_count") > 0
        url = f"http://127.0.0.1:{worker.metrics_port}/metrics"
        wait_for(lambda: "stream_consumer_lag" in (health.prometheus_values(url) or {}), 30,
                 "the lag gauge (updated every 5 s)", [worker])
        assert (health.prometheus_values(url) or {})["stream_consumer_lag"] >= 0
    finally:
        worker.stop()
    # the engine's data dir is under the stack's data dir, not left in the working directory
    assert (repo.data_dir / engine / app_id).is_dir() and not (REPO_ROOT / f"{app_id}-data").exists()
    assert not (REPO_ROOT / "state").exists()  # (Quix's default state dir)


def test_backfill_from_parquet_gives_the_event_time_truth(tmp_path: Path) -> None:
    """From the offline transactions log, per card in event-time order: nothing is late, and
    every row equals the brute force over all valid events."""
    records = generate(1500, seed=15, late_rate=0.05, max_delay_ms=120_000)
    exp = Expected.of(records, lateness_ms=10**12)  # event-time truth: nothing counts as late
    raw = tmp_path / "raw"
    log = OfflineLog(raw)
    log.append(TXN_DATASET, [event_row(decode(r.value, Transaction)) for r in records])
    txns, total = backfill.from_parquet(raw / TXN_DATASET)
    counts = backfill.run(iter(txns), total, OfflineLog(tmp_path / "out"), ProcessorConfig(LATENESS_MS),
                          progress=False)
    assert counts["too_late"] == 0 and counts["accepted"] == exp.valid
    rows = latest_feature_rows(read_dataset(tmp_path / "out", FEATURE_DATASET))
    by_key = {(r["card_id"], r["event_key"]): r for r in rows.to_dict("records")}
    bad = []
    for card, evs in exp.accepted.items():
        for e in evs:
            want = reference_request(reference_features(evs, e.ts, (e.ts, e.key)), e.amount, e.ts)
            bad += mismatches(by_key[(card, e.key)], want)
    assert bad == []


@pytest.mark.parametrize("engine", ENGINES)
def test_click_features_online_and_offline_equal_the_brute_force(
        engine: str, repo: StackSettings, topics: tuple[str, str, str], kafka_bootstrap: str, tmp_path: Path) -> None:
    from core.card_state import event_key
    from core.contracts import Click
    from streaming.generators.clicks import ClickStream
    from streaming.read import UserFeatureReader
    from tests.support.reference import Click as RefClick
    from tests.support.reference import reference_user_features

    stream = ClickStream(seed=21, users=200, sessions_per_s=0.5, start_ms=1_790_000_000_000)
    records = []
    for rec in stream:
        records.append(rec)
        if len(records) >= 3000:
            break
    produce(kafka_bootstrap, topics[2], records)
    ref: dict[str, list[RefClick]] = {}
    for r in records:
        c = decode(r.value, Click)
        ref.setdefault(c.user_id, []).append(RefClick(c.event_time, event_key(c.event_id), c.action, c.dwell_ms,
                                                      c.session_id))
    worker = WorkerProcess(repo, f"t-{uuid.uuid4().hex[:6]}", *topics, tmp_path / "w.log").start()
    offline = feast_store.offline_dir(repo, "")
    try:
        want = {e.key for evs in ref.values() for e in evs}
        wait_for(lambda: want <= set(read_dataset(offline, "clicks").get("event_key", [])), 180,
                 "every click in the offline log", [worker])
    finally:
        worker.stop()
    reader = UserFeatureReader(feast_store.open_store(repo))
    last = max(e.ts for evs in ref.values() for e in evs)
    bad = []
    for t in (last + 1, last - 1_800_000, last + 5_000_000):
        for read in reader.read(sorted(ref), t):
            bad += mismatches(read.features, reference_user_features(ref[read.card_id], t))
    rows = latest_feature_rows(read_dataset(offline, "user_click_features"), "user_id")
    by_key = {(r["user_id"], r["event_key"]): r for r in rows.to_dict("records")}
    for user, evs in ref.items():
        for e in evs:
            bad += mismatches(by_key[(user, e.key)], reference_user_features(evs, e.ts, (e.ts, e.key)))
    assert bad == [], bad[:10]
    assert len(rows) == len(want)


@pytest.mark.parametrize("engine", ENGINES)
def test_graceful_shutdown_flushes_pending_writes(
        engine: str, repo: StackSettings, topics: tuple[str, str, str], kafka_bootstrap: str, tmp_path: Path) -> None:
    """With the offline flush due only in an hour, only the shutdown flush can write the
    rows: SIGTERM must leave every processed event in the offline log."""
    records = generate(800, seed=16)
    exp = Expected.of(records)
    produce(kafka_bootstrap, topics[0], records)
    worker = WorkerProcess(repo, f"t-{uuid.uuid4().hex[:6]}", *topics, tmp_path / "w.log",
                           STREAMING_OFFLINE_FLUSH_INTERVAL_S="3600").start()
    wait_for(lambda: worker.metric("stream_events_in_total") >= len(records), 120, "all events consumed",
             [worker])
    assert not _offline_keys(repo)  # nothing flushed offline yet
    worker.stop()  # SIGTERM
    assert worker.proc is not None and worker.proc.returncode == 0
    want = {e.key for evs in exp.accepted.values() for e in evs}
    assert want <= _offline_keys(repo)


@pytest.mark.security
@pytest.mark.parametrize("engine", ENGINES)
def test_crafted_records_cannot_blind_a_card(
        engine: str, repo: StackSettings, topics: tuple[str, str, str], kafka_bootstrap: str, tmp_path: Path) -> None:
    """The attacks of issue 12 through a real worker: a record dated 30 years ahead, one
    dated 10 minutes ahead (a fast producer clock beyond the skew) and one keyed with another
    card go to dead letters with their reasons; the card's next 12 real transactions (900
    each, 4 countries) all count."""
    import time

    from core.contracts import encode
    from stack import health
    from streaming.generators.transactions import Record

    def rec(i: int, t: int, key: str = "card-victim", amount: float = 900.0, country: str = "DE") -> Record:
        tx = Transaction(event_id=f"attack-{i:08d}", event_time=t, card_id="card-victim", user_id="u-1",
                         merchant_id="m-1", mcc="5411", amount=amount, currency="EUR", country=country, lat=0.0,
                         lon=0.0, device_id="d-1", ip="10.0.0.1", channel="online")
        return Record(topics[0], key.encode(), encode(tx), t)

    now = int(time.time() * 1000)
    attacks = [rec(0, now - 60_000, amount=20.0), rec(1, 3_000_000_000_000), rec(2, now + 600_000),
               rec(3, now - 30_000, key="card-someone-else")]
    burst = [rec(10 + k, now + k * 1_000, country=["DE", "FR", "PL", "ES"][k % 4]) for k in range(12)]
    produce(kafka_bootstrap, topics[0], attacks + burst)
    worker = WorkerProcess(repo, f"t-{uuid.uuid4().hex[:6]}", *topics, tmp_path / "w.log").start()
    try:
        wait_for(lambda: worker.metric("stream_dead_letters_total") >= 3
                 and worker.metric("stream_events_in_total") >= len(attacks) + len(burst), 120,
                 "the records processed", [worker])
        samples = health.prometheus_samples(f"http://127.0.0.1:{worker.metrics_port}/metrics") or {}
        assert samples.get('stream_events_out_total{outcome="card:future"}') == 2
        read = CardFeatureReader(feast_store.open_store(repo))
        wait_for(lambda: read.read(["card-victim"], now + 12_000)[0].features["txn_count_5m"] == 13, 60,
                 "the burst online")
    finally:
        worker.stop()
    f = read.read(["card-victim"], now + 12_000)[0].features
    assert f["txn_count_5m"] == 13 and f["unique_countries_5m"] == 4 and f["amount_max_5m"] == 900.0
    consumer = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": f"dlq-{uuid.uuid4().hex[:6]}",
                         "auto.offset.reset": "earliest"})
    consumer.subscribe([topics[1]])
    letters: list[DeadLetter] = []
    for _ in range(100):
        letters += [decode(m.value(), DeadLetter) for m in consumer.consume(100, 0.2) if m.error() is None]
        if len(letters) >= 3:
            break
    consumer.close()
    reasons = sorted(dl.reason for dl in letters)
    assert len(reasons) == 3, reasons
    assert sum("after its ingest time" in r for r in reasons) == 2
    assert sum("record key b'card-someone-else' is not the event's card_id" in r for r in reasons) == 1


@pytest.mark.faults
def test_a_newer_producers_records_are_processed_not_dead_lettered(
        repo: StackSettings, topics: tuple[str, str, str], kafka_bootstrap: str, tmp_path: Path) -> None:
    """Reproduced: schema_version was Literal[1] with unknown fields forbidden, so a producer
    upgraded before the pipeline dead-lettered all of its traffic, with no alert. Now its records
    are processed by their known fields and counted (stream_events_newer_schema_total)."""
    from dataclasses import replace

    records = generate(300, seed=17)
    newer = []
    for i, r in enumerate(records):
        if i % 3 == 0:
            rec = orjson.loads(r.value)
            rec.update(schema_version=2, wallet_token=f"tok-{i}")
            r = replace(r, value=orjson.dumps(rec))
            newer.append(r)
        records[i] = r
    produce(kafka_bootstrap, topics[0], records)
    exp = Expected.of([r for r in records if r not in newer])  # (the reference decodes v1 only)
    worker = WorkerProcess(repo, f"t-{uuid.uuid4().hex[:6]}", *topics, tmp_path / "w.log").start()
    try:
        wait_for(lambda: worker.metric("stream_events_in_total") >= len(records), 120, "all events", [worker])
        wait_for(lambda: len(_offline_keys(repo)) >= exp.valid + len(newer), 60, "the offline log", [worker])
        assert worker.metric("stream_events_newer_schema_total") == len(newer)
        assert worker.metric("stream_dead_letters_total") == 0
    finally:
        worker.stop()


@pytest.mark.faults
@pytest.mark.parametrize(("engine", "how"), [("faust", "SIGKILL"), ("faust", "SIGTERM"), ("quix", "SIGKILL")])
def test_a_broker_killed_mid_stream_loses_and_doubles_nothing(
        engine: str, how: str, feast_repo: StackSettings, tmp_path_factory: pytest.TempPathFactory,
        tmp_path: Path) -> None:
    """The fault suite's broker case: the Kafka broker is killed (SIGKILL: a crash) or stopped
    cleanly (SIGTERM: a rolling restart) while the worker processes a stream with late events,
    and comes back (supervisord restarts it, as in ``make up``); the producer goes on.
    Afterwards the online state and the offline log equal the brute force over the records:
    nothing lost, nothing counted twice, every correction written."""
    import os
    import signal

    from stack.supervisor import Supervisor
    from tests.conftest import own_services

    with own_services(tmp_path_factory, f"broker-{how.lower()}", ("kafka",)) as ks:
        repo = feast_store.isolated_copy(feast_repo, tmp_path, kafka_port=ks.kafka_port)
        names = (f"txn-{uuid.uuid4().hex[:8]}", f"dlq-{uuid.uuid4().hex[:8]}", f"clk-{uuid.uuid4().hex[:8]}")
        ensure_topics(ks.kafka_bootstrap, names, partitions=3)
        records = generate(3000, seed=23, late_rate=0.03, max_delay_ms=60_000)
        exp = Expected.of(records)
        produce(ks.kafka_bootstrap, names[0], records[:1500])
        worker = WorkerProcess(repo, f"t-{uuid.uuid4().hex[:6]}", *names, tmp_path / "w.log").start()
        try:
            wait_for(lambda: worker.metric("stream_events_in_total") >= 500, 120, "the worker to get going",
                     [worker])
            pid = Supervisor(ks).processes()["kafka"]["pid"]
            os.kill(pid, getattr(signal, how))
            deadline = time.monotonic() + 120  # supervisord restarts it
            while Supervisor(ks).processes()["kafka"]["pid"] in (0, pid) or health.kafka(ks) is not None:
                assert time.monotonic() < deadline, "the broker did not come back"
                time.sleep(0.5)
            produce(ks.kafka_bootstrap, names[0], records[1500:])
            _wait_done(repo, exp, [worker])
            _check(repo, exp)
            assert worker.proc is not None and worker.proc.poll() is None  # rode it out, no restart
        finally:
            worker.stop()
