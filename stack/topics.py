"""Create the pipeline's topics idempotently (and grow their partition count if asked)."""

from __future__ import annotations

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewPartitions, NewTopic

from stack.errors import StackError


def ensure_topics(bootstrap: str, names: tuple[str, ...] | list[str], partitions: int,
                  timeout_s: float = 30) -> dict[str, str]:
    """Return topic -> what happened ("created", "exists", "grown to N")."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    existing = admin.list_topics(timeout=timeout_s).topics
    result: dict[str, str] = {}
    missing = [n for n in names if n not in existing]
    if missing:
        futures = admin.create_topics(
            [NewTopic(n, num_partitions=partitions, replication_factor=1) for n in missing],
            operation_timeout=timeout_s)
        for name, fut in futures.items():
            try:
                fut.result()
                result[name] = "created"
            except KafkaException as exc:
                if "TOPIC_ALREADY_EXISTS" not in str(exc):
                    raise StackError(f"creating topic {name!r} failed: {exc}") from exc
                result[name] = "exists"
    grow = [n for n in names if n in existing and len(existing[n].partitions) < partitions]
    if grow:
        for name, fut in admin.create_partitions([NewPartitions(n, partitions) for n in grow]).items():
            fut.result()
            result[name] = f"grown to {partitions}"
    for n in names:
        result.setdefault(n, "exists")
    return result
