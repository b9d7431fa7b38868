"""Create the topics and apply the Feast repo against running services (no supervisord).

The docker-compose ``init`` job runs this; ``make up`` does the same after starting the
local services (``stack.lifecycle.up``).
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from core import feast_store, mlflow_auth
from core.settings import TOPICS, StackSettings
from stack import kafka_acl, secrets
from stack.errors import StackError
from stack.topics import ensure_topics


def initialise(settings: StackSettings, say: Callable[[str], None] = print,
               kafka: bool = True, redis: bool = True, mlflow: bool = True) -> None:
    """Topics need Kafka; the Feast apply needs Redis (its online store). Credentials that are
    missing (API keys, the model signing key pair) are created first (stack/secrets.py), so
    that the API finds its keys from the start."""
    written = secrets.generate(settings)
    say(f"  secrets: {', '.join(written) or 'present'} in {settings.data_dir / 'secrets'}")
    if kafka:
        created = ensure_topics(settings, TOPICS, settings.topic_partitions)
        say("  topics: " + ", ".join(f"{t} ({what})" for t, what in created.items()))
        if settings.kafka_sasl:
            applied = kafka_acl.apply(settings)
            say("  kafka access: SASL/SCRAM, " + ", ".join(f"{v} {k}" for k, v in applied.items()))
    if mlflow and settings.artifacts_url:
        say(f"  mlflow artifacts: {_artifact_store(settings)}")
    if mlflow and settings.mlflow_auth:
        say("  mlflow users: " + ", ".join(mlflow_auth.ensure_users(settings)))
    if redis:
        if settings.redis_cluster:
            from stack import redis_cluster

            done = redis_cluster.ensure(settings, say)
            if done != "formed":
                say(f"  redis cluster: {done} ({settings.redis_nodes} nodes)")
        feast_store.apply(settings)
        say(f"  feast: applied {settings.feature_repo} (registry {feast_store.registry_path(settings)})")


def _artifact_store(settings: StackSettings) -> str:
    """MLflow's object store is reachable and its bucket exists (else the first training run
    would fail to log its model): the URL, or a StackError saying what is wrong."""
    from core import storage

    where = storage.root(settings.artifacts_url, settings.s3_endpoint or None)
    bucket = where.path.split("/", 1)[0]
    try:
        from pyarrow import fs

        found = where.fs.get_file_info(bucket).type != fs.FileType.NotFound
    except OSError as exc:
        raise StackError(f"STACK_ARTIFACTS_URL={settings.artifacts_url}: the object store does not answer "
                         f"({str(exc).splitlines()[0]}); check STACK_S3_ENDPOINT and the AWS credentials") from None
    if not found:
        raise StackError(f"STACK_ARTIFACTS_URL={settings.artifacts_url}: no bucket {bucket!r} there: create it first")
    return settings.artifacts_url


def main() -> int:
    try:
        initialise(StackSettings())
    except StackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
