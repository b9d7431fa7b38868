"""Kafka with SASL/SCRAM and per-service ACLs (STACK_KAFKA_SASL, what docker-compose runs):
on a real broker started the way ``make up`` starts it, no client gets in without its
password, each service user can do only what core/kafka.py grants, the policy is applied
exactly, and the Faust worker runs under its own user."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient
from pydantic import SecretStr

from core import feast_store, kafka
from core.settings import TOPICS, StackSettings
from stack import kafka_acl
from stack.kafka_acl import binding
from streaming.read import CardFeatureReader
from tests.conftest import own_services
from tests.support.stream import Expected, WorkerProcess, generate, wait_for

pytestmark = pytest.mark.security


@pytest.fixture(scope="module")
def sasl(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackSettings]:
    with own_services(tmp_path_factory, "kafka-sasl", ("kafka",), kafka_sasl=True) as settings:
        yield settings


def as_user(settings: StackSettings, user: str, password: str | None = None) -> StackSettings:
    return settings.model_copy(update={"kafka_user": user,
                                       "kafka_password": SecretStr(password) if password else None})


def visible_topics(conf: dict) -> set[str] | KafkaException:
    try:
        return set(AdminClient(conf).list_topics(timeout=5).topics)
    except KafkaException as exc:
        return exc


def produce_error(settings: StackSettings, topic: str) -> KafkaError | None:
    errors: list[KafkaError | None] = []
    producer = Producer(kafka.client_config(settings, {"message.timeout.ms": 8000}))
    producer.produce(topic, key=b"k", value=b"{}", on_delivery=lambda err, _m: errors.append(err))
    producer.flush(15)
    assert len(errors) == 1, "no delivery report"
    return errors[0]


def consume_error(settings: StackSettings, topic: str, group: str) -> KafkaError | None:
    """The first error polling ``topic`` gives (None: it was readable and empty or not)."""
    consumer = Consumer(kafka.client_config(settings, {"group.id": group, "auto.offset.reset": "earliest"}))
    try:
        consumer.subscribe([topic])
        for _ in range(20):
            msg = consumer.poll(0.5)
            if msg is not None and msg.error() is not None:
                return msg.error()
        return None
    finally:
        consumer.close()


def test_a_client_without_the_password_gets_nothing(sasl: StackSettings) -> None:
    assert isinstance(visible_topics({"bootstrap.servers": sasl.kafka_bootstrap, "socket.timeout.ms": 3000}),
                      KafkaException)  # plaintext: the listener speaks SASL only
    wrong = as_user(sasl, "api", "not-the-password")
    assert isinstance(visible_topics(kafka.client_config(wrong)), KafkaException)
    assert set(TOPICS) <= visible_topics(kafka.client_config(sasl))  # the admin


def test_each_service_sees_and_does_only_what_the_policy_grants(sasl: StackSettings) -> None:
    for user, grants in kafka.policy().items():
        allowed = {g.name for g in grants if g.resource == "topic" and not g.prefixed}
        assert visible_topics(kafka.client_config(as_user(sasl, user))) == allowed, user
    # the one published service cannot inject events or ground truth
    api = as_user(sasl, "api")
    assert produce_error(api, "scores") is None
    for topic in ("transactions", "fraud-feedback"):
        err = produce_error(api, topic)
        assert err is not None and err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, topic
    # a generator cannot forge the pipeline's decisions; the learner writes nothing
    err = produce_error(as_user(sasl, "generator"), "scores")
    assert err is not None and err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    err = produce_error(as_user(sasl, "learner"), "fraud-feedback")
    assert err is not None and err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    # reads: the scorer does not see ground truth; the learner reads it
    err = consume_error(as_user(sasl, "scorer"), "fraud-feedback", "stream-scorer-t")
    assert err is not None and err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    assert consume_error(as_user(sasl, "learner"), "fraud-feedback", "online-learner-t") is None
    # and a group outside the user's prefix is refused
    err = consume_error(as_user(sasl, "learner"), "fraud-feedback", "someone-else")
    assert err is not None and err.code() == KafkaError.GROUP_AUTHORIZATION_FAILED


def test_the_seeder_writes_events_and_only_looks_at_the_worker_offsets(sasl: StackSettings) -> None:
    """The first run's seed (stack/seed.py, compose's seed job) runs as ``seeder``: it writes
    events, cannot read them or forge decisions, and reads the worker group's committed offsets
    (to wait for the worker), which a service that only reads the events cannot."""
    from confluent_kafka import TopicPartition

    from core.contracts import CLICKS, TRANSACTIONS
    from stack import seed
    from stack.errors import StackError

    seeder = seed.as_seeder(sasl)
    assert seeder.kafka_user == "seeder"
    assert produce_error(seeder, TRANSACTIONS) is None
    err = produce_error(seeder, "scores")
    assert err is not None and err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    err = consume_error(seeder, TRANSACTIONS, seed.WORKER_GROUP)
    assert err is not None and err.code() in (KafkaError.TOPIC_AUTHORIZATION_FAILED,
                                              KafkaError.GROUP_AUTHORIZATION_FAILED), err
    # the worker commits an offset for its group; the seeder sees it
    worker = Consumer(kafka.client_config(as_user(sasl, "worker"), {"group.id": seed.WORKER_GROUP}))
    try:
        high = worker.get_watermark_offsets(TopicPartition(TRANSACTIONS, 0), timeout=10)[1]
        worker.commit(offsets=[TopicPartition(TRANSACTIONS, 0, 1)], asynchronous=False)
    finally:
        worker.close()
    held, committed = seed._offsets(seeder, (TRANSACTIONS, CLICKS), seed.WORKER_GROUP, wait_s=30)
    assert held >= 1 and committed >= 1, (held, committed, high)
    with pytest.raises(StackError, match="cannot read the stream worker's offsets"):
        seed._offsets(as_user(sasl, "scorer"), (TRANSACTIONS,), seed.WORKER_GROUP, wait_s=2)


def test_the_policy_is_applied_exactly(sasl: StackSettings) -> None:
    """An ACL someone added by hand for a service user is removed by the next apply (make up /
    stack init); a second apply changes nothing."""
    api = as_user(sasl, "api")
    extra = binding("api", kafka.Grant("topic", "transactions", kafka.WRITE))
    admin = AdminClient(kafka.client_config(sasl))
    for fut in admin.create_acls([extra]).values():
        fut.result()
    assert produce_error(api, "transactions") is None  # the stray grant works...
    assert kafka_acl.apply(sasl)["acls deleted"] == 1
    err = produce_error(api, "transactions")  # ...until the policy is applied again
    assert err is not None and err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    assert kafka_acl.apply(sasl) == {"users": len(kafka.policy()), "acls created": 0, "acls deleted": 0}


def test_the_faust_worker_runs_under_its_own_user(sasl: StackSettings, feast_repo: StackSettings,
                                                  tmp_path: Path) -> None:
    """Events produced by the generator's user are consumed by the Faust worker as ``worker``
    (aiokafka with SCRAM, and its librdkafka changelog producer) and land in the online store."""
    worker_settings = feast_store.isolated_copy(
        feast_repo, tmp_path, kafka_port=sasl.kafka_port, kafka_sasl=True, kafka_user="worker",
        kafka_password=SecretStr(kafka.password(sasl, "worker")))
    records = generate(200, seed=91)
    exp = Expected.of(records)
    producer = Producer(kafka.client_config(as_user(sasl, "generator"), {"enable.idempotence": True}))
    for r in records:
        producer.produce("transactions", key=r.key, value=r.value)
    assert producer.flush(30) == 0
    worker = WorkerProcess(worker_settings, "streamfeat-features-sasl", "transactions", "dead-letters", "clicks",
                           tmp_path / "worker.log").start()
    try:
        wait_for(lambda: worker.metric("stream_events_in_total") >= len(records), 120, "the worker to consume",
                 [worker])
        reader = CardFeatureReader(feast_store.open_store(worker_settings))
        cards = sorted(exp.accepted)[:20]
        wait_for(lambda: all(ts is not None for _, ts in reader.states(cards)), 60, "online features",
                 [worker])
    finally:
        worker.stop()
    assert "AUTHORIZATION_FAILED" not in (tmp_path / "worker.log").read_text()
