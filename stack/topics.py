"""Create the pipeline's topics idempotently (and grow an unkeyed topic's partition count if
asked). A keyed topic is never grown: its records' partitions follow the key's hash, and each
entity's window state lives in the changelog partition of its source partition, so more
partitions would send a card's next events to a worker that does not hold its state."""

from __future__ import annotations

import time

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewPartitions, NewTopic

from core import kafka
from core.settings import KEYED_TOPICS
from stack.errors import StackError


def ensure_topics(conn: kafka.Kafka, names: tuple[str, ...] | list[str], partitions: int,
                  timeout_s: float = 30, keyed: frozenset[str] | set[str] = KEYED_TOPICS) -> dict[str, str]:
    """Return topic -> what happened ("created", "exists", "grown to N"). Raises StackError
    rather than grow a topic in ``keyed``."""
    admin = AdminClient(kafka.client_config(conn))
    for attempt in range(3):
        try:
            return _ensure(admin, names, partitions, timeout_s, keyed)
        except _Transient:
            if attempt == 2:
                raise
            time.sleep(1)
    raise AssertionError("unreachable")


class _Transient(StackError):
    """A request lost with its connection (with several brokers, librdkafka replaces the
    bootstrap connections by the brokers it learns of, and a request on one is lost): asked again."""


_TRANSIENT = {KafkaError._DESTROY_BROKER, KafkaError._TRANSPORT, KafkaError._TIMED_OUT,  # noqa: SLF001
              KafkaError.NOT_CONTROLLER, KafkaError.REQUEST_TIMED_OUT}


def _ensure(admin: AdminClient, names: tuple[str, ...] | list[str], partitions: int, timeout_s: float,
            keyed: frozenset[str] | set[str]) -> dict[str, str]:
    existing = admin.list_topics(timeout=timeout_s).topics
    result: dict[str, str] = {}
    missing = [n for n in names if n not in existing]
    if missing:
        # replication factor -1: the brokers' default.replication.factor (1, or 3 in the cluster profile)
        futures = admin.create_topics(
            [NewTopic(n, num_partitions=partitions, replication_factor=-1) for n in missing],
            operation_timeout=timeout_s)
        for name, fut in futures.items():
            try:
                fut.result()
                result[name] = "created"
            except KafkaException as exc:
                if exc.args and isinstance(exc.args[0], KafkaError) and exc.args[0].code() in _TRANSIENT:
                    raise _Transient(f"creating topic {name!r} failed: {exc}") from exc
                if "TOPIC_ALREADY_EXISTS" not in str(exc):
                    raise StackError(f"creating topic {name!r} failed: {exc}") from exc
                result[name] = "exists"
    grow = [n for n in names if n in existing and len(existing[n].partitions) < partitions]
    refused = [n for n in grow if n in keyed]
    if refused:
        have = ", ".join(f"{n} has {len(existing[n].partitions)}" for n in refused)
        raise StackError(f"refusing to grow keyed topics to {partitions} partitions ({have}): a key's partition "
                         "would change and the stream state of its entities would be on the wrong partition; "
                         "keep STACK_TOPIC_PARTITIONS as it was, or recreate the topics and rebuild the state "
                         "(make clean, then backfill)")
    if grow:
        for name, fut in admin.create_partitions([NewPartitions(n, partitions) for n in grow]).items():
            fut.result()
            result[name] = f"grown to {partitions}"
    for n in names:
        result.setdefault(n, "exists")
    return result
