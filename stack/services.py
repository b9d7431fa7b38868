"""The services of the local stack: how each starts, which ports it owns, how it is probed.

Later stages (generators, stream workers, inference API, monitor) add their entries here so
that ``make up`` runs the whole system.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from pydantic import SecretStr

from core import mlflow_auth
from core.settings import REPO_ROOT, StackSettings
from stack import health, kafka_dist
from stack.errors import StackError


@dataclass(frozen=True)
class Service:
    name: str
    command: list[str]
    #: (port, env var that moves it) pairs this service listens on
    ports: list[tuple[int, str]]
    probe: Callable[[], str | None]
    environment: dict[str, str] = field(default_factory=dict)
    #: seconds supervisord waits after TERM before KILL
    stop_wait_s: int = 30
    #: a pid file the service writes itself (for services that rewrite their environ)
    pidfile: Path | None = None
    #: infrastructure starts with supervisord; the pipeline's own services are started by
    #: ``make up`` once topics and the Feast registry exist
    infra: bool = True
    #: what must be on disk before the service starts (its config, formatted storage, the
    #: profile its data belongs to), written by ``make up`` only: describing the services for
    #: ``make status`` or ``make down`` touches no data (a status in another profile would
    #: otherwise claim a fresh data dir for it)
    prepare: Callable[[], None] | None = None


def redis_node_name(i: int) -> str:
    """Redis node ``i``'s service name: ``redis``, then ``redis-2`` .. ``redis-6`` (cluster profile)."""
    return "redis" if i == 0 else f"redis-{i + 1}"


def redis_conf(settings: StackSettings, node: int = 0) -> str:
    """AOF with fsync every second (a restart loses at most ~1 s, which Kafka can replay);
    RDB snapshots off, because fork-and-dump causes latency spikes on the hot path.

    In the cluster profile each node is cluster-enabled with its own ``nodes.conf``; a master
    unreachable for ``cluster-node-timeout`` (5 s) is replaced by its replica, and the other
    masters' slots keep serving meanwhile (``cluster-require-full-coverage no``: one shard
    down fails only its own cards' reads and writes)."""
    name = redis_node_name(node)
    data = settings.data_dir / name
    port = settings.redis_node(node)[1]
    return "\n".join([
        f"bind {settings.host}",
        f"port {port}",
        "protected-mode yes",
        "daemonize no",
        f"dir {data}",
        # Redis rewrites its process title over its environ, so it records its own pid.
        f"pidfile {settings.run_dir / f'{name}.pid'}",
        "appendonly yes",
        "appendfsync everysec",
        'save ""',
        "maxmemory-policy noeviction",
        'logfile ""',
        *([f"requirepass {settings.redis_secret}"] if settings.redis_secret else []),
        *redis_cluster_lines(settings, node),
        "",
    ])


def redis_cluster_lines(settings: StackSettings, node: int) -> list[str]:
    """Node ``node``'s cluster settings (none in the single profile); docker-compose's nodes
    get the same from the secrets job."""
    if not settings.redis_cluster:
        return []
    lines = ["cluster-enabled yes", "cluster-config-file nodes.conf", "cluster-node-timeout 5000",
             "cluster-require-full-coverage no",
             # (a replica promotes itself however long its master was gone: with one replica per
             # master the alternative is a shard down until someone intervenes)
             "cluster-replica-validity-factor 0",
             *([f"masterauth {settings.redis_secret}"] if settings.redis_secret else [])]
    if settings.redis_host:  # (docker-compose: clients reach each node by its service name)
        lines += [f"cluster-announce-hostname {settings.redis_node(node)[0]}",
                  "cluster-preferred-endpoint-type hostname"]
    return lines


def redis_service(settings: StackSettings) -> list[Service]:
    """Redis: one node, or in the cluster profile six (``redis``, ``redis-2`` .. ``redis-6``;
    ``make up`` then forms the cluster, stack/redis_cluster.py). A node's data belongs to the
    profile it was first started in: the other one is refused (a cluster node's keys are
    spread by slot, a single one's are not)."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise StackError("redis-server not found: run 'make up' (it installs Debian's "
                         "redis-server) or 'apt-get install redis-server'")
    nodes = []
    for i in range(settings.redis_nodes):
        name = redis_node_name(i)
        host, port = settings.redis_node(i)
        nodes.append(Service(
            name=name,
            command=[binary, str(settings.conf_dir / f"{name}.conf")],
            ports=[(port, "STACK_REDIS_PORT"), *([(port + 10_000, "STACK_REDIS_PORT")] if settings.redis_cluster
                                                else [])],
            probe=partial(health.redis_node, host, port, settings.redis_secret),
            pidfile=settings.run_dir / f"{name}.pid",
            prepare=partial(_prepare_redis_node, settings, i),
        ))
    return nodes


def _prepare_redis_node(settings: StackSettings, i: int) -> None:
    """Node ``i``'s data dir (refused when it belongs to the other profile) and config."""
    name = redis_node_name(i)
    data = settings.data_dir / name
    data.mkdir(parents=True, exist_ok=True)
    marker = data / "profile"  # (none written before profiles: single)
    formatted = (marker.read_text().strip() if marker.exists()
                 else "single" if (data / "appendonlydir").exists() else settings.profile)
    if formatted != settings.profile:
        raise StackError(f"Redis's data in {data} belongs to the {formatted!r} profile, not {settings.profile!r} "
                         "(a cluster spreads keys over its masters by slot): set STACK_PROFILE back, or "
                         "'make clean' (drops the stack's data) and 'make up' again")
    marker.write_text(settings.profile + "\n")
    settings.conf_dir.mkdir(parents=True, exist_ok=True)
    conf = settings.conf_dir / f"{name}.conf"
    conf.touch(mode=0o600)  # it may hold the password
    conf.chmod(0o600)
    conf.write_text(redis_conf(settings, i))


def kafka_services(settings: StackSettings) -> list[Service]:
    """Kafka's node(s): ``kafka``, and in the cluster profile also ``kafka-2`` and ``kafka-3``;
    each is healthy when its own broker answers and sees every node of the cluster."""
    nodes = []
    for i in range(settings.kafka_nodes):
        _, port, controller = settings.kafka_node(i)
        probe: Callable[[], str | None] = (partial(health.kafka_node, settings, i) if settings.kafka_nodes > 1
                                           else partial(health.kafka, settings))
        nodes.append(Service(
            name=kafka_dist.node_name(i),
            command=kafka_dist.command(settings, i),
            ports=[(port, "STACK_KAFKA_PORT"), (controller, "STACK_KAFKA_CONTROLLER_PORT")],
            probe=probe,
            stop_wait_s=60,
            prepare=partial(kafka_dist.prepare, settings, i),
        ))
    return nodes


def dask_services(settings: StackSettings) -> list[Service]:
    """The cluster profile's Dask scheduler and its ``dask_workers`` workers (one thread and
    ``dask_worker_memory`` each; the project importable): where batch work goes by default in
    that profile (``STACK_CLUSTER``). None in the single profile."""
    if settings.profile != "cluster":
        return []
    dask = str(Path(sys.executable).parent / "dask")
    env = {"PYTHONPATH": str(REPO_ROOT)}  # (tasks carry their settings from the command that sent them)
    services = [Service(
        name="dask-scheduler",
        command=[dask, "scheduler", "--host", settings.host, "--port", str(settings.dask_port), "--no-dashboard"],
        ports=[(settings.dask_port, "STACK_DASK_PORT")],
        probe=partial(health.dask_workers, settings.dask_address, ()), environment=env)]
    for i in range(1, settings.dask_workers + 1):
        name = f"dask-worker-{i}"
        services.append(Service(
            name=name,
            command=[dask, "worker", settings.dask_address, "--name", name, "--nthreads", "1", "--no-dashboard",
                     "--memory-limit", settings.dask_worker_memory, "--host", settings.host],
            ports=[], probe=partial(health.dask_workers, settings.dask_address, (name,)), environment=env))
    return services


def mlflow_service(settings: StackSettings) -> Service:
    data = settings.data_dir / "mlflow"
    (data / "artifacts").mkdir(parents=True, exist_ok=True)
    auth_env: dict[str, str] = {}
    if settings.mlflow_auth:  # core/mlflow_auth.py: users and passwords from the secrets
        from stack import secrets

        secrets.generate(settings)
        folder = mlflow_auth.secrets_dir(settings)
        auth_env = {"MLFLOW_AUTH_CONFIG_PATH": str(folder / "basic_auth.ini"),
                    "MLFLOW_FLASK_SERVER_SECRET_KEY": (folder / "flask-secret").read_text().strip()}
    store_env: dict[str, str] = {}
    if settings.artifacts_url and settings.s3_endpoint:  # (boto3, like pyarrow's client in core/storage.py:
        store_env = {"MLFLOW_S3_ENDPOINT_URL": settings.s3_endpoint,  # checksums only where required)
                     "AWS_REQUEST_CHECKSUM_CALCULATION": "when_required",
                     "AWS_RESPONSE_CHECKSUM_VALIDATION": "when_required"}
    return Service(
        name="mlflow",
        command=[sys.executable, "-m", "mlflow", "server",
                 "--backend-store-uri", f"sqlite:///{data / 'mlflow.db'}",
                 "--artifacts-destination", settings.artifacts_url or str(data / "artifacts"), "--serve-artifacts",
                 "--host", settings.host, "--port", str(settings.mlflow_port), "--workers", "1",
                 *(["--app-name", "basic-auth"] if settings.mlflow_auth else [])],
        ports=[(settings.mlflow_port, "STACK_MLFLOW_PORT")],
        probe=lambda: health.http(f"{settings.mlflow_uri}/health"),
        # Job execution runs a pool of huey workers for GenAI jobs we never submit.
        environment={"MLFLOW_HOME": str(data), "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", **auth_env,
                     **store_env},
    )


#: alert rules, shared by `make up`'s Prometheus and docker-compose's
ALERT_RULES = REPO_ROOT / "deploy" / "prometheus" / "alerts.yml"
#: what Prometheus scrapes: job (the service's name) -> the settings field of its metrics port
SCRAPED = {"stream-worker": "worker_metrics_port", "stream-scorer": "scorer_metrics_port",
           "online-learner": "learner_metrics_port", "drift-monitor": "monitor_metrics_port",
           "inference-api": "api_port"}


def prometheus_conf(settings: StackSettings) -> str:
    """Every service of the stack every 5 s (the API's /metrics with the key that has only the
    metrics scope), and the alert rules of deploy/prometheus/alerts.yml."""
    import json

    jobs = [{"job_name": "prometheus",
             "static_configs": [{"targets": [f"{settings.host}:{settings.prometheus_port}"]}]}]
    for job, port_field in SCRAPED.items():
        target = f"{settings.host}:{getattr(settings, port_field)}"
        cfg: dict = {"job_name": job, "static_configs": [{"targets": [target]}]}
        if job == "inference-api":
            cfg["authorization"] = {"type": "Bearer",
                                    "credentials_file": str(settings.data_dir / "secrets" / "prometheus-api-key")}
        jobs.append(cfg)
    conf = {"global": {"scrape_interval": "5s", "evaluation_interval": "5s"},
            "rule_files": [str(ALERT_RULES)], "scrape_configs": jobs}
    return json.dumps(conf, indent=2) + "\n"  # (YAML is a superset of JSON)


def prometheus_service(settings: StackSettings) -> Service:
    binary = shutil.which("prometheus")
    if binary is None:
        raise StackError("prometheus not found: run 'make up' (it installs Debian's prometheus) or "
                         "'apt-get install --no-install-recommends prometheus'")
    from stack import secrets

    secrets.generate(settings)  # its scrape credential for the API
    data = settings.data_dir / "prometheus"
    data.mkdir(parents=True, exist_ok=True)
    settings.conf_dir.mkdir(parents=True, exist_ok=True)
    conf = settings.conf_dir / "prometheus.yml"
    conf.write_text(prometheus_conf(settings))
    from stack import consoles

    pages, libraries = consoles.write(settings.conf_dir)  # make up's dashboards (stack/consoles.py)
    url = f"http://{settings.host}:{settings.prometheus_port}"
    return Service(
        name="prometheus",
        command=[binary, f"--config.file={conf}", f"--storage.tsdb.path={data}",
                 f"--web.listen-address={settings.host}:{settings.prometheus_port}",
                 "--storage.tsdb.retention.time=7d", f"--web.external-url={url}",
                 f"--web.console.templates={pages}", f"--web.console.libraries={libraries}"],
        ports=[(settings.prometheus_port, "STACK_PROMETHEUS_PORT")],
        probe=lambda: health.http(f"{url}/-/ready"),
    )


#: each pipeline service's Kafka user (core/kafka.py: what it may do, with SASL on)
KAFKA_USERS = {"stream-worker": "worker", "generator": "generator", "generator-clicks": "generator",
               "inference-api": "api", "stream-scorer": "scorer", "drift-monitor": "monitor",
               "online-learner": "learner"}
#: services that only load models get MLflow's read-only user (the rest are the pipeline's
#: trainers: admin)
MLFLOW_USERS = {"inference-api": mlflow_auth.READER, "stream-scorer": mlflow_auth.READER}


def _pipeline(settings: StackSettings, name: str, args: list[str], port_setting: str | None = None,
              health_path: str = "/metrics", env: dict[str, str] | None = None) -> Service:
    """One of the pipeline's own services, ``python -m <args>`` with the stack's settings in its
    environment (and its own Kafka user): healthy when its HTTP endpoint on ``port_setting``
    answers, or, with no port, while supervisord keeps it RUNNING."""
    ports: list[tuple[int, str]] = []
    probe: Callable[[], str | None] = lambda: None  # noqa: E731
    if port_setting:
        port = getattr(settings, port_setting)
        url = f"http://{settings.host}:{port}{health_path}"
        ports = [(port, f"STACK_{port_setting.upper()}")]
        probe = lambda: health.http(url)  # noqa: E731
    environment = {**stack_env(settings), "STACK_KAFKA_USER": KAFKA_USERS[name],
                   "STACK_MLFLOW_USER": MLFLOW_USERS.get(name, mlflow_auth.ADMIN), **(env or {})}
    for operators_own in ("STACK_KAFKA_PASSWORD", "STACK_MLFLOW_PASSWORD"):
        environment.pop(operators_own, None)
    return Service(name=name, command=[sys.executable, "-m", *args], ports=ports, probe=probe,
                   environment=environment, infra=False)


def worker_service(settings: StackSettings) -> Service:
    return _pipeline(settings, "stream-worker", ["streaming", "worker"], "worker_metrics_port",
                     env={"STREAMING_METRICS_PORT": str(settings.worker_metrics_port),
                          "STREAMING_PARTITIONS": str(settings.topic_partitions),
                          "STREAMING_ENGINE": settings.stream_engine})


def generator_service(settings: StackSettings) -> Service:
    return _pipeline(settings, "generator", ["streaming", "generate", "--rate", str(settings.generator_rate),
                                             "--users", str(settings.generator_users)])


def click_generator_service(settings: StackSettings) -> Service:
    return _pipeline(settings, "generator-clicks",
                     ["streaming", "generate", "--kind", "clicks", "--rate", str(settings.generator_rate)])


def inference_service(settings: StackSettings) -> Service:
    """The scoring API. Healthy when alive; /ready (model loaded) turns green once a model is
    promoted (python training/train.py), which `make status` shows."""
    return _pipeline(settings, "inference-api", ["inference"], "api_port", health_path="/health")


def scorer_service(settings: StackSettings) -> Service:
    """Scores live transactions into the `scores` topic (for drift checks and online learning)."""
    return _pipeline(settings, "stream-scorer", ["inference", "scorer"], "scorer_metrics_port")


def monitor_service(settings: StackSettings) -> Service:
    """The continuous loop: drift and feedback checks, retrain triggers, audit log; metrics on
    STACK_MONITOR_METRICS_PORT."""
    return _pipeline(settings, "drift-monitor", ["drift", "monitor"], "monitor_metrics_port")


def learner_service(settings: StackSettings) -> Service:
    """The online learner in shadow: joins feedback to scores, learns with River, warm-starts
    booster challengers; metrics on STACK_LEARNER_METRICS_PORT."""
    return _pipeline(settings, "online-learner", ["drift", "learn"], "learner_metrics_port")


def feast_ui_service(settings: StackSettings) -> Service:
    """The Feast UI (inside the feast wheel) over the applied registry; healthy once it serves
    its page."""
    url = f"http://{settings.host}:{settings.feast_ui_port}/"
    env = {k: v for k, v in stack_env(settings).items()  # (it needs Redis and the registry, no Kafka or MLflow)
           if k not in ("STACK_KAFKA_PASSWORD", "STACK_MLFLOW_PASSWORD")}
    return Service(name="feast-ui", command=[sys.executable, "-m", "stack.feast_ui"],
                   ports=[(settings.feast_ui_port, "STACK_FEAST_UI_PORT")], probe=lambda: health.http(url),
                   environment=env, infra=False)


def stack_env(settings: StackSettings) -> dict[str, str]:
    """The stack's settings as STACK_* variables, so the pipeline's processes see the same
    ports and paths as the stack that started them."""
    env = {}
    for name, value in settings.model_dump().items():
        if value is not None:
            env[f"STACK_{name.upper()}"] = value.get_secret_value() if isinstance(value, SecretStr) else str(value)
    return env


SERVICES: dict[str, Callable[[StackSettings], Service | list[Service]]] = {
    "redis": redis_service,  # (its nodes: only=("redis",) names them all)
    "kafka": kafka_services,  # (its nodes: only=("kafka",) names them all)
    "mlflow": mlflow_service,
    "dask": dask_services,  # (the cluster profile's scheduler and workers; none in the single profile)
    "stream-worker": worker_service,
    "generator": generator_service,
    "generator-clicks": click_generator_service,
    "inference-api": inference_service,
    "stream-scorer": scorer_service,
    "drift-monitor": monitor_service,
    "online-learner": learner_service,
    "prometheus": prometheus_service,
    "feast-ui": feast_ui_service,
}


def all_services(settings: StackSettings, only: Collection[str] | None = None) -> list[Service]:
    """The services in start order (storage first), or just those named in ``only``."""
    unknown = set(only or ()) - set(SERVICES)
    if unknown:
        raise StackError(f"unknown service(s): {', '.join(sorted(unknown))}")
    services: list[Service] = []
    for name, make in SERVICES.items():
        if only is None or name in only:
            made = make(settings)
            services.extend(made if isinstance(made, list) else [made])
    if settings.generator_rate == 0:
        services = [s for s in services if not s.name.startswith("generator")]
    return services
