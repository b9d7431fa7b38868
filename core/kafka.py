"""Kafka client settings and the per-service access policy.

Two modes, chosen by ``STACK_KAFKA_SASL``:

- off (the local default): PLAINTEXT on loopback, as a developer's laptop expects;
- on (docker-compose sets it; ``STACK_KAFKA_SASL=true make up`` locally): the broker accepts
  only SASL/SCRAM-SHA-512 clients and authorises every request with Kafka's
  ``StandardAuthorizer`` against the ACLs below. Each service of the pipeline has its own user
  (``STACK_KAFKA_USER``) with only the operations it needs; ``admin`` (operators' tools, the
  ``init`` job, the broker itself) is the only super user. Passwords live one per file in
  ``<data_dir>/secrets/kafka/<user>.password`` (``stack/secrets.py`` creates them) unless
  ``STACK_KAFKA_PASSWORD`` is set.

Every Kafka client of the project takes its settings from :func:`client_config` (librdkafka)
or :func:`faust_credentials` (Faust/aiokafka), so none can be left on plaintext by mistake.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.settings import TOPICS, StackSettings

MECHANISM = "SCRAM-SHA-512"
ADMIN = "admin"

#: Kafka ACL operations used below (names as in kafka-acls.sh)
READ, WRITE, DESCRIBE, CREATE, ALL = "READ", "WRITE", "DESCRIBE", "CREATE", "ALL"


@dataclass(frozen=True)
class Grant:
    """ALLOW ``operation`` on a topic or consumer group, by exact name or by name prefix."""

    resource: str  # "topic" | "group"
    name: str
    operation: str
    prefixed: bool = False


def _topics(names: tuple[str, ...], op: str) -> list[Grant]:
    return [Grant("topic", n, op) for n in names]


def policy(app_id: str = "streamfeat-features") -> dict[str, list[Grant]]:
    """User -> what it may do. A user with no grant on a topic cannot even see that it exists.

    - ``worker`` (Faust): reads the event topics, owns its tables' changelog and internal
      topics (prefix ``app_id``), writes dead letters;
    - ``scorer``: reads transactions, writes scores and dead letters;
    - ``api``: writes scores (its decisions) and propensity scores, nothing else;
    - ``generator``: writes the event and feedback topics, reads decisions (approved mode);
    - ``seeder`` (the first run's simulated past, stack/seed.py): writes the event and feedback
      topics and may only look at the worker group's committed offsets (to wait for it);
    - ``learner``: reads scores and feedback;
    - ``monitor`` (the loop, training, drift checks, backfill): reads every pipeline topic.
    """
    return {
        "worker": [*_topics(("transactions", "clicks"), READ), *_topics(("dead-letters",), WRITE),
                   Grant("topic", app_id, ALL, prefixed=True), Grant("group", app_id, READ, prefixed=True),
                   # the Quix engine's changelog topics: changelog__<group>--<topic>--<store>
                   Grant("topic", f"changelog__{app_id}", ALL, prefixed=True)],
        "scorer": [*_topics(("transactions",), READ), *_topics(("scores", "dead-letters"), WRITE),
                   Grant("group", "stream-scorer", READ, prefixed=True)],
        "api": _topics(("scores", "propensity-scores"), WRITE),
        "generator": [*_topics(("transactions", "clicks", "fraud-feedback"), WRITE),
                      *_topics(("scores",), READ), Grant("group", "generator-", READ, prefixed=True)],
        "seeder": [*_topics(("transactions", "clicks", "fraud-feedback"), WRITE),
                   Grant("group", app_id, DESCRIBE)],
        "learner": [*_topics(("scores", "fraud-feedback"), READ),
                    Grant("group", "online-learner", READ, prefixed=True)],
        "monitor": [*_topics(TOPICS, READ), *(Grant("group", p, READ, prefixed=True)
                                             for p in ("drift-", "backfill-", "ground-truth-"))],
    }


def users() -> list[str]:
    return [ADMIN, *policy()]


def admin_dir(settings: StackSettings) -> Path:
    return settings.kafka_admin_dir or settings.data_dir / "secrets" / "kafka"


def password_path(settings: StackSettings, user: str) -> Path:
    if user == ADMIN:
        return admin_dir(settings) / f"{ADMIN}.password"
    return settings.data_dir / "secrets" / "kafka" / f"{user}.password"


def password(settings: StackSettings, user: str | None = None) -> str:
    """The password of ``user`` (default: this process's own user)."""
    user = user or settings.kafka_user
    if user == settings.kafka_user and settings.kafka_password is not None:
        pw = settings.kafka_password
        return pw.get_secret_value() if hasattr(pw, "get_secret_value") else str(pw)
    path = password_path(settings, user)
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        raise PermissionError(f"no Kafka password for user {user!r}: set STACK_KAFKA_PASSWORD or create "
                              f"{path} (python -m stack.secrets)") from None


#: where a client connects: a bare ``host:port`` (plaintext; tests and benchmarks against their
#: own broker) or the stack's settings (its address, and its credentials when SASL is on)
Kafka = str | StackSettings


def bootstrap(kafka: Kafka) -> str:
    return kafka if isinstance(kafka, str) else kafka.kafka_bootstrap


def client_config(kafka: Kafka, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """librdkafka (confluent-kafka) settings: bootstrap servers, and with SASL on, this
    process's user and password; ``extra`` is added as given."""
    conf: dict[str, Any] = {"bootstrap.servers": bootstrap(kafka)}
    if isinstance(kafka, StackSettings) and kafka.kafka_sasl:
        settings = kafka
        conf.update({"security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": MECHANISM,
                     "sasl.username": settings.kafka_user, "sasl.password": password(settings)})
    conf.update(extra or {})
    return conf


def faust_credentials(settings: StackSettings) -> Any:
    """``broker_credentials`` for a Faust app (None with SASL off)."""
    if not settings.kafka_sasl:
        return None
    import faust

    return faust.SASLCredentials(username=settings.kafka_user, password=password(settings),
                                 mechanism=MECHANISM)
