"""Settings for the local stack: where each service listens and where its data lives.

One pydantic-settings class per service (STYLE.md point 5). Every field can be set with an
environment variable of the documented prefix, e.g. ``STACK_KAFKA_PORT=19092``. Nothing here
reads the environment at import time: build the settings in the entry point and pass them in.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent

#: Topics the pipeline uses. Created idempotently by ``make up`` with ``topic_partitions``.
TOPICS: tuple[str, ...] = ("transactions", "clicks", "fraud-feedback", "dead-letters", "scores",
                           "propensity-scores")
#: Topics whose records are keyed by an entity whose stream state follows the partition:
#: their partition count is never grown in place (stack/topics.py).
KEYED_TOPICS: frozenset[str] = frozenset({"transactions", "clicks"})


class StackSettings(BaseSettings):
    """Addresses, ports and paths of the local stack (env prefix ``STACK_``)."""

    model_config = SettingsConfigDict(env_prefix="STACK_", frozen=True, extra="forbid")

    host: str = "127.0.0.1"
    #: where clients reach each service, when not on ``host`` (docker-compose sets these)
    kafka_host: str | None = None
    redis_host: str | None = None
    mlflow_host: str | None = None
    kafka_port: int = Field(9092, ge=1, le=65535)
    kafka_controller_port: int = Field(9093, ge=1, le=65535)
    kafka_heap: str = "1g"
    #: SASL/SCRAM-SHA-512 with per-service ACLs (core/kafka.py); off: PLAINTEXT on loopback
    kafka_sasl: bool = False
    #: this process's Kafka user with SASL on; the pipeline's services each get their own
    kafka_user: str = "admin"
    #: its password; unset: read from <data_dir>/secrets/kafka/<user>.password
    kafka_password: SecretStr | None = None
    #: where the admin password and the broker's SASL config live (default
    #: <data_dir>/secrets/kafka; docker-compose: a volume only secrets, init and kafka mount)
    kafka_admin_dir: Path | None = None
    #: the stream worker's engine in `make up` (STACK_STREAM_ENGINE or STREAM_ENGINE): "faust"
    #: (the default) or "quix" (Quix Streams); `make status` shows it
    stream_engine: Literal["faust", "quix"] = Field(
        "faust", validation_alias=AliasChoices("STACK_STREAM_ENGINE", "STREAM_ENGINE", "stream_engine"))
    #: "single" (the default): one Kafka broker. "cluster": three Kafka nodes in KRaft (each a
    #: broker and a controller; replication factor 3, min.insync.replicas 2), node i on
    #: ``kafka_port + 2i`` and ``kafka_controller_port + 2i`` (9092, 9094, 9096 by default);
    #: and a Redis Cluster of six nodes (three masters, a replica each) on ``redis_port + i``
    #: (6379 to 6384; their cluster bus 10000 above), its database 0 only
    profile: Literal["single", "cluster"] = "single"
    redis_port: int = Field(6379, ge=1, le=65535)
    #: the Feast project: it names the registry's objects and is part of every online key, so
    #: two projects on one Redis never see each other's rows (tests give each its own)
    feast_project: str = Field("streamfeat", pattern=r"^[A-Za-z0-9_]+$")
    redis_db: int = Field(0, ge=0, le=15)
    #: Redis password (or a file holding it, e.g. a Docker secret); unset: no password on loopback
    redis_password: SecretStr | None = None
    redis_password_file: Path | None = None
    #: every Redis client's socket and connect timeout: a Redis that accepts and never answers
    #: (stopped, swapping, partitioned) fails a call within this instead of hanging it
    redis_timeout_s: float = Field(2.0, gt=0, le=60)
    #: online keys expire this long after their last write (0: never). Default 8 days: past
    #: the 7-day cap of seconds_since_last_txn, so an expired card reads exactly as a
    #: remembered one (every window empty, recency at its cap)
    redis_key_ttl_s: int = Field(8 * 86_400, ge=0)
    mlflow_port: int = Field(5000, ge=1, le=65535)
    #: explicit local use: a sqlite registry in <data_dir>/mlflow-local instead of the tracking
    #: server (never chosen silently: an unreachable server is an error otherwise)
    mlflow_local: bool = False
    #: MLflow's basic-auth app: every request but /health needs a user (core/mlflow_auth.py)
    mlflow_auth: bool = False
    #: this process's MLflow user with auth on: "admin" trains and promotes; the API and the
    #: stream scorer get "reader" (read only: they cannot move an alias)
    mlflow_user: str = "admin"
    #: its password; unset: read from <data_dir>/secrets/mlflow/<user>.password
    mlflow_password: SecretStr | None = None
    api_port: int = Field(8000, ge=1, le=65535)
    topic_partitions: int = Field(6, ge=1, le=256)
    #: the stream worker's Prometheus port, and the live generator's rate in transactions per
    #: second (0: no generator); the click generator runs at the same rate
    worker_metrics_port: int = Field(6066, ge=1, le=65535)
    generator_rate: float = Field(2.0, ge=0)
    #: the stream scorer's Prometheus port (python -m inference scorer)
    scorer_metrics_port: int = Field(6067, ge=1, le=65535)
    #: the online learner's Prometheus port (python -m drift learn)
    learner_metrics_port: int = Field(6068, ge=1, le=65535)
    #: the drift monitor's Prometheus port (python -m drift monitor)
    monitor_metrics_port: int = Field(6069, ge=1, le=65535)
    #: Prometheus (make up: Debian's prometheus package), its rules in deploy/prometheus/
    prometheus_port: int = Field(9099, ge=1, le=65535)
    #: the Feast UI over the registry (python -m stack.feast_ui)
    feast_ui_port: int = Field(8888, ge=1, le=65535)
    #: users of the live generator (about 1.3 cards each): 5,000 at 2 txn/s is one purchase per
    #: card every hour or so, so velocity rules fire on fraud scenarios, not on ordinary traffic
    generator_users: int = Field(5_000, ge=1)
    #: the simulated past the first `make up` gives a stack with no history (``2d``, ``36h``;
    #: 0: none), at the live generator's rate and users and in its world, so that a model can
    #: be trained at once and drift compares like with like (stack/seed.py)
    seed_history: str = "2d"
    #: where batch work (backfill) runs: in-process, local:N (a local Dask cluster of N worker
    #: processes) or tcp://host:port (a Dask scheduler); the commands' --cluster overrides it
    cluster: str = "in-process"
    #: the cluster profile's Dask scheduler (its workers: ``dask_workers`` processes of one
    #: thread and ``dask_worker_memory`` each); where it is reached, when not on ``host``
    dask_port: int = Field(8786, ge=1, le=65535)
    dask_host: str | None = None
    dask_workers: int = Field(2, ge=1, le=64)
    dask_worker_memory: str = Field("2GiB", pattern=r"^\d+(\.\d+)?\s*[KMGT]i?B$")
    #: the offline log in an object store (``s3://bucket/prefix``, core/storage.py), written by
    #: every stream worker and backfill task and read by training and batch scoring wherever
    #: they run; empty: the local folder under feature_repo/data/offline
    offline_url: str = ""
    #: an S3-protocol server other than AWS (``http://host:port``: MinIO, Ceph, S3Proxy)
    s3_endpoint: str = ""
    #: MLflow's artifact store in an object store (``s3://bucket/prefix``): the models, their
    #: ONNX graphs and the drift reference samples. The MLflow server writes there and serves
    #: every client's artifact reads and writes (clients need no object-store credentials);
    #: empty: <data_dir>/mlflow/artifacts
    artifacts_url: str = ""
    data_dir: Path = REPO_ROOT / ".data"
    cache_dir: Path = REPO_ROOT / ".cache"
    feature_repo: Path = REPO_ROOT / "feature_repo"
    health_timeout_s: float = Field(90.0, gt=0)
    #: Ed25519 key pair that signs what training approves (core/registry.py); default
    #: <data_dir>/secrets/model-signing.{key,pub}, created on first use. The API needs only
    #: the public half.
    model_signing_key_file: Path | None = None
    model_verify_key_file: Path | None = None

    @field_validator("cluster")
    @classmethod
    def _a_cluster(cls, value: str) -> str:
        from core.cluster import parse

        return str(parse(value))

    @field_validator("offline_url", "artifacts_url")
    @classmethod
    def _a_url(cls, value: str) -> str:
        from core.storage import root

        if value:
            root(value)  # (a scheme this project cannot write to is refused here)
        return value

    @field_validator("seed_history")
    @classmethod
    def _a_duration(cls, value: str) -> str:
        from core.durations import duration_ms

        try:
            duration_ms(value)
        except ValueError:
            raise ValueError("not a duration: give one like 2d, 36h or 90m, or 0 for none") from None
        return value.strip()

    @model_validator(mode="after")
    def _cluster_profile_runs_batch_work_on_its_scheduler(self) -> StackSettings:
        """In the cluster profile batch work goes to the stack's Dask scheduler unless
        ``cluster`` is set."""
        if self.profile == "cluster" and "cluster" not in self.model_fields_set:
            object.__setattr__(self, "cluster", self.dask_address)  # (frozen: set once, while validating)
        return self

    @property
    def dask_address(self) -> str:
        """The cluster profile's Dask scheduler."""
        return f"tcp://{self.dask_host or self.host}:{self.dask_port}"

    @model_validator(mode="after")
    def _distinct_ports(self) -> StackSettings:
        """Two services on one port: the second cannot start (one clear error instead)."""
        seen: dict[int, str] = {}  # port -> who has it
        for name in type(self).model_fields:
            service = name.removesuffix("_controller_port").removesuffix("_port")
            if name.endswith("_port") and not getattr(self, f"{service}_host", None):  # (not a remote server's)
                port = getattr(self, name)
                ports = [(port, f"STACK_{name.upper()}")]
                if name.startswith("kafka_"):  # (the cluster profile's other nodes: +2, +4)
                    ports += [(port + 2 * i, f"STACK_{name.upper()} + {2 * i} (Kafka node {i + 1} of the cluster "
                               "profile)") for i in range(1, self.kafka_nodes)]
                if name == "redis_port" and self.redis_cluster:  # (the other nodes, and every node's bus)
                    ports += [(port + i, f"STACK_REDIS_PORT + {i} (Redis node {i + 1} of the cluster profile)")
                              for i in range(1, self.redis_nodes)]
                    ports += [(port + i + 10_000, f"STACK_REDIS_PORT + {i + 10_000} (Redis node {i + 1}'s cluster "
                               "bus)") for i in range(self.redis_nodes)]
                for port, label in ports:
                    if port in seen:
                        raise ValueError(f"{seen[port]} and {label} are both {port}: "
                                         "every service needs a port of its own")
                    seen[port] = label
        return self

    @model_validator(mode="after")
    def _redis_cluster_has_database_0_only(self) -> StackSettings:
        if self.redis_cluster and self.redis_db != 0:
            raise ValueError(f"STACK_REDIS_DB={self.redis_db}: a Redis Cluster (STACK_PROFILE=cluster) has database "
                             "0 only; projects are kept apart by STACK_FEAST_PROJECT (part of every online key)")
        return self

    @property
    def redis_cluster(self) -> bool:
        """Whether the online store is a Redis Cluster (the cluster profile)."""
        return self.profile == "cluster"

    @property
    def redis_nodes(self) -> int:
        """How many Redis nodes the stack runs: 1, or 6 in the cluster profile (nodes 1-3 the
        masters, 4-6 a replica of node 1, 2 and 3 each)."""
        return 6 if self.redis_cluster else 1

    def redis_node(self, i: int) -> tuple[str, int]:
        """Where Redis node ``i`` (0-based) is reached: (host, port). With ``redis_host`` set
        (docker-compose) node i > 0 is the host ``<redis_host>-<i+1>`` on the same port."""
        host = self.redis_host or self.host
        if i and self.redis_host:
            return f"{self.redis_host}-{i + 1}", self.redis_port
        return host, self.redis_port + i

    @property
    def kafka_nodes(self) -> int:
        """How many Kafka nodes the stack runs: 1, or 3 in the cluster profile."""
        return 3 if self.profile == "cluster" else 1

    def kafka_node(self, i: int) -> tuple[str, int, int]:
        """Where node ``i`` (0-based) is reached: (host, broker port, controller port). With
        ``kafka_host`` set (docker-compose) node i > 0 is the host ``<kafka_host>-<i+1>``."""
        host = self.kafka_host or self.host
        if i and self.kafka_host:
            host = f"{self.kafka_host}-{i + 1}"
        return host, self.kafka_port + 2 * i, self.kafka_controller_port + 2 * i

    @property
    def kafka_replication(self) -> int:
        """Replication factor of every topic (and min.insync.replicas is one less, at least 1)."""
        return self.kafka_nodes

    @property
    def kafka_bootstrap(self) -> str:
        return ",".join(f"{host}:{port}" for host, port, _ in map(self.kafka_node, range(self.kafka_nodes)))

    @property
    def redis_secret(self) -> str | None:
        if self.redis_password is not None:  # (a str when set through model_copy, unvalidated)
            pw = self.redis_password
            return pw.get_secret_value() if isinstance(pw, SecretStr) else str(pw)
        if self.redis_password_file is not None:
            return self.redis_password_file.read_text().strip()
        return None

    def _redis_url(self, secret: str | None) -> str:
        auth = f":{quote(secret, safe='*')}@" if secret else ""
        return f"redis://{auth}{self.redis_host or self.host}:{self.redis_port}/{self.redis_db}"

    @property
    def redis_startup_nodes(self) -> list[tuple[str, int]]:
        """Every Redis node (host, port): a cluster client starts from any of them."""
        return [self.redis_node(i) for i in range(self.redis_nodes)]

    def redis_client(self, timeout_s: float | None = None) -> Any:
        """A client of the online store's Redis: ``redis.Redis`` on ``redis_url``, or in the
        cluster profile ``redis.RedisCluster`` (keys routed to their slot's master, the
        topology refreshed after a failover); socket and connect timeouts ``redis_timeout_s``."""
        import redis

        timeout = timeout_s or self.redis_timeout_s
        if not self.redis_cluster:
            return redis.Redis.from_url(self.redis_url, socket_timeout=timeout, socket_connect_timeout=timeout)
        from redis.cluster import ClusterNode

        return redis.RedisCluster(startup_nodes=[ClusterNode(h, p) for h, p in self.redis_startup_nodes],
                                  password=self.redis_secret, socket_timeout=timeout,
                                  socket_connect_timeout=timeout)

    @property
    def redis_url(self) -> str:
        return self._redis_url(self.redis_secret)

    @property
    def redis_url_shown(self) -> str:
        """redis_url fit to print (password masked); in the cluster profile its nodes."""
        if self.redis_cluster:
            nodes = ",".join(f"{h}:{p}" for h, p in self.redis_startup_nodes)
            return f"redis-cluster://{':***@' if self.redis_secret else ''}{nodes}"
        return self._redis_url("***" if self.redis_secret else None)

    @property
    def mlflow_uri(self) -> str:
        return f"http://{self.mlflow_host or self.host}:{self.mlflow_port}"

    @property
    def logs_dir(self) -> Path:
        return self.data_dir / "logs"

    @property
    def conf_dir(self) -> Path:
        return self.data_dir / "conf"

    @property
    def run_dir(self) -> Path:
        return self.data_dir / "run"


def settings_error(exc: Exception, prefix: str = "STACK_") -> str:
    """One line for a settings ValidationError: which variable, its value, what is wrong."""
    errors: list = getattr(exc, "errors", lambda: [])()
    if not errors:
        return str(exc).splitlines()[0]
    first = errors[0]
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    if not first.get("loc"):  # a check across settings: its message names them
        return f"{str(first.get('msg', 'invalid')).removeprefix('Value error, ')}{more}"
    name = prefix + ".".join(str(p) for p in first.get("loc", ())).upper()
    return f"{name}={first.get('input')!s}: {first.get('msg', 'invalid')}{more}"
