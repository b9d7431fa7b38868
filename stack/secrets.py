"""Credentials for a stack that is closed by default: ``python -m stack.secrets`` creates, once,
what is missing under ``<STACK_DATA_DIR>/secrets``:

- ``api-keys.json``: scoped API keys (operator: every scope; scoring-client: score;
  prometheus: metrics), and ``prometheus-api-key`` (Prometheus's scrape credential);
- ``model-signing.pub`` and the private key at ``STACK_MODEL_SIGNING_KEY_FILE`` (training
  only: docker-compose keeps it on a volume the API does not mount);
- ``redis-password`` and the Redis node's config ``redis-single.conf`` (``requirepass``)
  when ``STACK_REDIS_PASSWORD_FILE`` points there; in the cluster profile the six nodes'
  ``redis-cluster.conf``, ``redis-cluster-2.conf`` .. ``-6.conf`` (``requirepass`` and the
  node's cluster settings, stack/services.py); ``grafana-admin-password``;
- with ``STACK_KAFKA_SASL`` on, a Kafka password per service user (``kafka/<user>.password``)
  and the admin's (in ``STACK_KAFKA_ADMIN_DIR``); ``--kafka-broker LOG_DIR`` also writes there
  what the upstream Kafka image needs to run the same broker as ``make up``
  (``server.properties``, ``cluster-id``, ``admin-scram``, and ``admin-client.properties``
  for its health check);
- with ``STACK_MLFLOW_AUTH`` on, MLflow's users' passwords (``mlflow/admin.password``,
  ``mlflow/reader.password``), the server's ``flask-secret`` and its ``basic_auth.ini``.

docker-compose runs it as its first job. Files other services' users must read (Redis,
Grafana and Prometheus run as their own users) are 0644 inside a volume no host port
exposes; private keys and the API key file are 0600.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
from pathlib import Path

from core import kafka, mlflow_auth, registry
from core.settings import StackSettings
from inference.auth import SCOPES, ApiKey


def _write(path: Path, text: str, mode: int) -> bool:
    if path.exists():
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, mode)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(path, mode)  # umask-proof
    return True


def generate(settings: StackSettings) -> list[str]:
    """Create what is missing; returns the names of the files written."""
    out = settings.data_dir / "secrets"
    written = []
    keys = [ApiKey(name="operator", key=secrets.token_urlsafe(32), scopes=list(SCOPES)),
            ApiKey(name="scoring-client", key=secrets.token_urlsafe(32), scopes=["score"], rate_per_s=2000),
            ApiKey(name="prometheus", key=secrets.token_urlsafe(32), scopes=["metrics"])]
    if _write(out / "api-keys.json", json.dumps([k.model_dump() for k in keys], indent=2), 0o600):
        written.append("api-keys.json")
        _write(out / "prometheus-api-key", keys[2].key, 0o644)
    private, public = registry.key_paths(settings)
    if not private.exists() and not public.exists():
        written.append(private.name)
    registry.ensure_keys(settings)
    if public.exists():
        os.chmod(public, 0o644)
    pw_file = settings.redis_password_file
    if pw_file is not None and _write(pw_file, secrets.token_urlsafe(24), 0o644):
        written.append(pw_file.name)
    if pw_file is not None:  # docker-compose's Redis node(s): redis-<profile>[-<n>].conf
        from stack.services import redis_cluster_lines

        pw = pw_file.read_text().strip()
        for i in range(settings.redis_nodes):
            name = f"redis-{settings.profile}.conf" if i == 0 else f"redis-{settings.profile}-{i + 1}.conf"
            _write(pw_file.parent / name, "\n".join([f"requirepass {pw}", *redis_cluster_lines(settings, i), ""]),
                   0o644)
    if _write(out / "grafana-admin-password", secrets.token_urlsafe(18), 0o644):
        written.append("grafana-admin-password")
    if settings.mlflow_auth:
        folder = mlflow_auth.secrets_dir(settings)
        for user in mlflow_auth.USERS:
            if _write(folder / f"{user}.password", secrets.token_urlsafe(24), 0o600):
                written.append(f"mlflow/{user}.password")
        if _write(folder / "flask-secret", secrets.token_urlsafe(32), 0o600):
            written.append("mlflow/flask-secret")
        ini = mlflow_auth.server_config(settings, settings.data_dir / "mlflow" / "basic_auth.db")
        if _write(folder / "basic_auth.ini", ini, 0o600):
            written.append("mlflow/basic_auth.ini")
    if settings.kafka_sasl:
        for user in kafka.users():
            if _write(kafka.password_path(settings, user), secrets.token_urlsafe(24), 0o600):
                written.append(f"kafka/{user}.password")
    return written


def kafka_broker_files(settings: StackSettings, log_dir: Path) -> list[str]:
    """The broker config of ``make up`` for the upstream image (docker-compose's kafka
    service): 0644, since that image runs as its own user, on a volume only the secrets, init
    and kafka containers mount."""
    from stack import kafka_dist

    folder = kafka.admin_dir(settings)
    pw = kafka.password(settings, kafka.ADMIN)
    files = {  # (node i > 0 of the cluster profile: server-<i+1>.properties)
        **{("server.properties" if i == 0 else f"server-{i + 1}.properties"):
           kafka_dist.server_properties(settings, log_dir, i) for i in range(settings.kafka_nodes)},
        "admin-scram": kafka_dist.format_scram_args(settings)[1],
        "admin-client.properties": (f"security.protocol=SASL_PLAINTEXT\nsasl.mechanism={kafka.MECHANISM}\n"
                                    "sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule "
                                    f'required username="{kafka.ADMIN}" password="{pw}";\n'),
    }
    written = [name for name, text in files.items() if _write(folder / name, text, 0o644)]
    if _write(folder / "cluster-id", kafka_dist.new_cluster_id(), 0o644):
        written.append("cluster-id")
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stack.secrets", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kafka-broker", type=Path, metavar="LOG_DIR",
                        help="also write the SASL broker's config for the upstream Kafka image, with this log dir")
    args = parser.parse_args(argv)
    settings = StackSettings()
    written = generate(settings)
    if args.kafka_broker is not None:
        if not settings.kafka_sasl:
            print("error: --kafka-broker needs STACK_KAFKA_SASL=true", file=sys.stderr)
            return 2
        written += kafka_broker_files(settings, args.kafka_broker)
    print(f"secrets in {settings.data_dir / 'secrets'}: " + (", ".join(written) + " created" if written
                                                              else "all present"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
