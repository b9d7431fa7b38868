"""Real Apache Kafka: produce -> consume round trip, and consumer-group semantics."""

from __future__ import annotations

import time
import uuid

import orjson
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from core.settings import TOPICS


def _consume(consumer: Consumer, n: int, timeout_s: float = 60) -> list:
    got: list = []
    deadline = time.monotonic() + timeout_s
    while len(got) < n and time.monotonic() < deadline:
        for msg in consumer.consume(num_messages=1000, timeout=0.5):
            assert msg.error() is None, msg.error()
            got.append(msg)
    return got


def _consumer(bootstrap: str, group: str, **extra) -> Consumer:
    return Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                     "auto.offset.reset": "earliest", "enable.auto.commit": False, **extra})


def test_pipeline_topics_exist(kafka_bootstrap: str) -> None:
    topics = AdminClient({"bootstrap.servers": kafka_bootstrap}).list_topics(timeout=10).topics
    assert set(TOPICS) <= set(topics)


def test_round_trip_keeps_every_event_and_per_key_order(kafka_bootstrap: str, unique_topic: str) -> None:
    # idempotence, as every producer of the pipeline uses: without it a retried batch can land
    # after a later one (seen once in CI), and Kafka promises per-key order only with it
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "linger.ms": 5, "enable.idempotence": True})
    sent = [{"event_id": str(uuid.uuid4()), "card_id": f"c{i % 17}", "seq": i} for i in range(2000)]
    for ev in sent:
        producer.produce(unique_topic, key=ev["card_id"], value=orjson.dumps(ev))
    assert producer.flush(30) == 0

    consumer = _consumer(kafka_bootstrap, f"g-{uuid.uuid4().hex[:6]}")
    consumer.subscribe([unique_topic])
    msgs = _consume(consumer, len(sent))
    consumer.close()

    received = [orjson.loads(m.value()) for m in msgs]
    assert sorted(r["event_id"] for r in received) == sorted(e["event_id"] for e in sent)
    # Same key -> same partition -> produce order kept.
    by_card: dict[str, list[int]] = {}
    for r in received:
        by_card.setdefault(r["card_id"], []).append(r["seq"])
    assert all(seqs == sorted(seqs) for seqs in by_card.values())
    assert len({m.partition() for m in msgs}) > 1  # keys were spread over partitions


def test_consumer_group_commits_and_shares_partitions(kafka_bootstrap: str, unique_topic: str) -> None:
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    for i in range(300):
        producer.produce(unique_topic, key=f"k{i}", value=b"x")
    producer.flush(30)
    group = f"g-{uuid.uuid4().hex[:6]}"

    first = _consumer(kafka_bootstrap, group)
    first.subscribe([unique_topic])
    assert len(_consume(first, 300)) == 300
    first.commit(asynchronous=False)

    # A second member joins: the group rebalances and splits the 3 partitions.
    second = _consumer(kafka_bootstrap, group)
    second.subscribe([unique_topic])
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        first.poll(0.2)
        second.poll(0.2)
        a, b = first.assignment(), second.assignment()
        if a and b and len(a) + len(b) == 3:
            break
    parts_a = {tp.partition for tp in first.assignment()}
    parts_b = {tp.partition for tp in second.assignment()}
    assert parts_a and parts_b and not parts_a & parts_b and parts_a | parts_b == {0, 1, 2}

    # Committed offsets survive: the group does not see the 300 events again.
    committed = first.committed([TopicPartition(unique_topic, p) for p in parts_a], timeout=10)
    committed += second.committed([TopicPartition(unique_topic, p) for p in parts_b], timeout=10)
    assert sum(tp.offset for tp in committed) == 300
    first.close()
    second.close()


@pytest.mark.security
@pytest.mark.faults
def test_online_learner_joins_scores_and_feedback_from_kafka(kafka_bootstrap: str, tmp_path) -> None:
    """Scores and their delayed feedback (some arriving first) through real topics."""
    import json
    import threading
    import time
    import uuid

    import numpy as np
    import orjson
    from confluent_kafka import Producer

    from core.contracts import FraudFeedback, encode
    from drift.online import LearnerMetrics, run
    from stack import health
    from stack.topics import ensure_topics

    scores, feedback = f"scores-{uuid.uuid4().hex[:6]}", f"fb-{uuid.uuid4().hex[:6]}"
    ensure_topics(kafka_bootstrap, [scores, feedback], partitions=2)
    rng = np.random.default_rng(1)
    p = Producer({"bootstrap.servers": kafka_bootstrap, "linger.ms": 5})
    n = 1500
    for i in range(n):
        eid = f"evt-{i:08d}"
        fraud = bool(rng.random() < 0.2)
        rec = {"event_id": eid, "card_id": "card-1", "event_time": 1_790_000_000_000, "model_version": "1",
               "features": {"v": float(rng.normal(2.0 if fraud else 0.0, 1.0))},
               "fraud_probability": 0.5, "decision": "approve", "source": "stream"}
        fb = encode(FraudFeedback(event_id=eid, card_id="card-1", event_time=1_790_000_000_000, is_fraud=fraud,
                                  scenario="slow_drain" if fraud else "legit"))
        first, second = ((scores, orjson.dumps(rec)), (feedback, fb)) if i % 3 else ((feedback, fb),
                                                                                   (scores, orjson.dumps(rec)))
        p.produce(first[0], key=eid.encode(), value=first[1])
        p.produce(second[0], key=eid.encode(), value=second[1])
    for i in range(50):  # scores a caller asked the API for, with event ids of its choosing: never learned
        eid = f"forged-{i:08d}"
        p.produce(scores, key=eid.encode(), value=orjson.dumps({
            "event_id": eid, "card_id": "card-1", "event_time": 1_790_000_000_000, "model_version": "1",
            "features": {"v": 9.0}, "fraud_probability": 0.5, "decision": "approve", "source": "api:shop"}))
    # poison on both topics (reproduced: one non-JSON score crashed the learner, which then
    # restarted from the earliest offset and crashed again): skipped and counted
    poison = [b"not json", b"[1, 2]", b"{}", orjson.dumps({"event_id": "evt-00000001", "source": "stream"}),
              orjson.dumps({**rec, "fraud_probability": 7.0}), b"\xff\xfe"]
    for value in poison:
        p.produce(scores, key=b"x", value=value)
        p.produce(feedback, key=b"x", value=value)
        p.produce(feedback, key=eid.encode(), value=encode(FraudFeedback(
            event_id=eid, card_id="card-1", event_time=1_790_000_000_000, is_fraud=False, scenario="legit")))
    assert p.flush(30) == 0
    stop = threading.Event()
    out = tmp_path / "online.json"
    result: list = []
    port = health.free_port()
    metrics = LearnerMetrics(port)
    t = threading.Thread(target=lambda: result.append(run(kafka_bootstrap, scores, feedback, out, 0.5, stop,
                                                          metrics=metrics)))
    t.start()
    deadline = time.monotonic() + 60
    def done() -> bool:
        if not out.exists():
            return False
        rep = json.loads(out.read_text())
        return rep["labels"] >= n and rep["ignored_scores"] >= 50 and rep["invalid_records"] >= 2 * len(poison)

    while not done() and time.monotonic() < deadline:
        time.sleep(0.2)
    stop.set()
    t.join(30)
    report = json.loads(out.read_text())
    assert report["labels"] == n  # every label joined to its score, whichever came first
    assert report["ignored_scores"] == 50
    assert report["invalid_records"] == 2 * len(poison)
    assert report["online"]["auc"] > 0.8 and report["per_scenario"]["slow_drain"]["champion_recall"] == 0.0
    # the same numbers on the learner's Prometheus endpoint
    samples = health.prometheus_samples(f"http://127.0.0.1:{port}/metrics")
    assert samples is not None
    assert samples['online_labels_total{is_fraud="true"}'] + samples['online_labels_total{is_fraud="false"}'] == n
    assert samples['online_auc{model="online"}'] == pytest.approx(report["recent"]["online"]["auc"])
    assert samples['online_recall{model="champion",scenario="slow_drain"}'] == 0.0
    assert samples[f'online_invalid_records_total{{topic="{scores}"}}'] == len(poison)
    assert samples[f'online_invalid_records_total{{topic="{feedback}"}}'] == len(poison)


def test_from_topic_reads_everything_or_only_what_was_published_since(kafka_bootstrap: str,
                                                                      unique_topic: str) -> None:
    from streaming.backfill import from_topic

    p = Producer({"bootstrap.servers": kafka_bootstrap})
    old_ms = int(time.time() * 1000) - 3_600_000
    for i in range(30):  # an hour old, by their record timestamps
        p.produce(unique_topic, key=str(i).encode(), value=f"old-{i}".encode(), timestamp=old_ms + i)
    for i in range(20):
        p.produce(unique_topic, key=str(i).encode(), value=f"new-{i}".encode())
    assert p.flush(30) == 0
    records, total = from_topic(kafka_bootstrap, unique_topic)
    assert total == 50 and len(list(records)) == 50
    records, total = from_topic(kafka_bootstrap, unique_topic, since_ms=old_ms + 600_000)
    got = sorted(r.decode() for r in records)
    assert total == 20 and got == sorted(f"new-{i}" for i in range(20))
    records, total = from_topic(kafka_bootstrap, unique_topic, since_ms=int(time.time() * 1000) + 60_000)
    assert total == 0 and list(records) == []


@pytest.mark.security
def test_a_keyed_topic_is_never_grown(kafka_bootstrap: str) -> None:
    """Growing a keyed topic would move keys to partitions whose workers lack their state."""
    from stack.errors import StackError
    from stack.topics import ensure_topics

    keyed, plain = f"keyed-{uuid.uuid4().hex[:6]}", f"plain-{uuid.uuid4().hex[:6]}"
    ensure_topics(kafka_bootstrap, [keyed, plain], partitions=2, keyed={keyed})
    with pytest.raises(StackError, match="refusing to grow keyed topics"):
        ensure_topics(kafka_bootstrap, [keyed], partitions=4, keyed={keyed})
    assert ensure_topics(kafka_bootstrap, [plain], partitions=4, keyed={keyed}) == {plain: "grown to 4"}
    topics = AdminClient({"bootstrap.servers": kafka_bootstrap}).list_topics(timeout=10).topics
    assert len(topics[keyed].partitions) == 2 and len(topics[plain].partitions) == 4


def test_the_generator_withholds_ground_truth_for_declined_transactions(kafka_bootstrap: str, tmp_path) -> None:
    """--feedback-mode approved: like a bank, no chargeback for a transaction the pipeline
    declined. A stand-in for the stream scorer declines every other transaction on the decisions
    topic; none of those gets feedback, the approved ones do."""
    import os
    import subprocess
    import sys
    import threading

    from core.card_state import event_key
    from core.contracts import FraudFeedback, Transaction, decode
    from core.settings import REPO_ROOT
    from stack.topics import ensure_topics

    txn, fb, dec = (f"{p}-{uuid.uuid4().hex[:6]}" for p in ("txn", "fb", "dec"))
    ensure_topics(kafka_bootstrap, [txn, fb, dec], partitions=2)
    stop, assigned, declined = threading.Event(), threading.Event(), set()

    def scorer() -> None:  # decides each transaction as it arrives, as the stream scorer does
        c = _consumer(kafka_bootstrap, f"dec-{uuid.uuid4().hex[:6]}")
        c.subscribe([txn], on_assign=lambda _c, parts: assigned.set())
        p = Producer({"bootstrap.servers": kafka_bootstrap, "linger.ms": 5})
        while not stop.is_set():
            for m in c.consume(500, 0.1):
                t = decode(m.value(), Transaction)
                no = event_key(t.event_id) % 2 == 0
                if no:
                    declined.add(t.event_id)
                p.produce(dec, key=m.key(), value=orjson.dumps({
                    "event_id": t.event_id, "card_id": t.card_id, "event_time": t.event_time, "source": "stream",
                    "fraud_probability": 0.95 if no else 0.05, "decision": "decline" if no else "approve",
                    "model_version": "1", "features": {}}))
            p.poll(0)
        p.flush(10)
        c.close()

    thread = threading.Thread(target=scorer, daemon=True)
    thread.start()
    host, _, port = kafka_bootstrap.rpartition(":")
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "STACK_KAFKA_HOST": host, "STACK_KAFKA_PORT": port}
    try:
        # the stand-in decides from the first transaction on (the generator's own decisions
        # reader starts ten minutes back, so it needs no wait)
        assert assigned.wait(30), "the stand-in scorer was never assigned its partitions"
        out = subprocess.run([sys.executable, "-m", "streaming", "generate", "--rate", "150", "--duration", "12",
                              "--feedback-delay-s", "3", "--feedback-mode", "approved", "--decisions-topic", dec,
                              "--topic", txn, "--feedback-topic", fb, "--users", "300"], cwd=REPO_ROOT, env=env,
                             capture_output=True, text=True, timeout=120)
    finally:
        stop.set()
        thread.join(20)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert "feedback withheld for" in out.stdout + out.stderr
    c = _consumer(kafka_bootstrap, f"fbcheck-{uuid.uuid4().hex[:6]}")
    c.subscribe([fb])
    got = {decode(m.value(), FraudFeedback).event_id for m in _consume(c, 10_000, timeout_s=15)}
    c.close()
    assert got and declined, (len(got), len(declined))
    assert not got & declined  # no chargeback for a declined transaction


def test_a_simulated_history_ends_now_and_never_in_the_future(kafka_bootstrap: str) -> None:
    """generate --history 2h: event time runs from two hours ago to now, as fast as possible;
    nothing is dated after the run, not even a late scenario's rest or the ground truth of the
    last minute (the live stream rejects future-dated events, and drift would compare the live
    world with a future one)."""
    import os
    import subprocess
    import sys

    from core.contracts import FraudFeedback, Transaction, decode
    from core.settings import REPO_ROOT
    from stack.topics import ensure_topics
    from streaming.generators.cli import expected_count

    txn, fb = (f"{p}-{uuid.uuid4().hex[:6]}" for p in ("hist", "histfb"))
    ensure_topics(kafka_bootstrap, [txn, fb], partitions=2)
    host, _, port = kafka_bootstrap.rpartition(":")
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "STACK_KAFKA_HOST": host, "STACK_KAFKA_PORT": port}
    before = int(time.time() * 1000)
    out = subprocess.run([sys.executable, "-m", "streaming", "generate", "--history", "2h", "--sim-rate", "3",
                          "--users", "300", "--topic", txn, "--feedback-topic", fb, "--fraud-rate", "0.05"],
                         cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120)
    after = int(time.time() * 1000)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert time.time() * 1000 - before < 60_000  # simulated: it did not wait for two hours
    c = _consumer(kafka_bootstrap, f"hist-{uuid.uuid4().hex[:6]}")
    c.subscribe([txn, fb])
    got = _consume(c, 10**9, timeout_s=8)
    c.close()
    txns = [decode(m.value(), Transaction) for m in got if m.topic() == txn]
    truth = [decode(m.value(), FraudFeedback) for m in got if m.topic() == fb]
    legit = sum(not f.is_fraud for f in truth)  # (fraud scenarios come on top of the legit rate)
    expected = expected_count(2 * 3_600_000, 3, "transactions", before)  # (the daily cycle of those hours)
    assert 0.8 * expected < legit < 1.2 * expected, (legit, expected)
    times = [t.event_time for t in txns]
    assert min(times) >= before - 2 * 3_600_000 and max(times) <= after
    assert max(times) > before - 10 * 60_000  # the range reaches now
    assert any(f.is_fraud for f in truth) and {f.event_id for f in truth} <= {t.event_id for t in txns}
    assert "produced" in out.stdout + out.stderr
