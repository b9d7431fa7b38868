"""docker-compose.yml stays consistent with the local stack (no Docker engine needed)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from core.settings import REPO_ROOT, StackSettings

COMPOSE = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())


def _published(service: str) -> set[int]:
    return {int(str(p).split(":")[0]) for p in COMPOSE["services"][service].get("ports", [])}


def test_same_services_as_the_local_stack() -> None:
    from stack.services import SERVICES

    assert {"init", "prometheus", "grafana"} | set(SERVICES) <= set(COMPOSE["services"])


@pytest.mark.security
def test_only_the_api_is_published_and_on_loopback() -> None:
    published = {name: svc["ports"] for name, svc in COMPOSE["services"].items() if svc.get("ports")}
    assert published == {"inference-api": ["127.0.0.1:8000:8000"]}
    assert '--allowed-hosts "*"' not in COMPOSE["services"]["mlflow"]["command"][0]


@pytest.mark.security
def test_credentials_are_generated_and_infrastructure_asks_for_them() -> None:
    svc = COMPOSE["services"]
    assert svc["secrets"]["command"][:3] == ["python", "-m", "stack.secrets"]
    # requirepass: the config the secrets job writes for the profile (single unless set)
    assert "/data/secrets/redis-${STACK_PROFILE:-single}.conf" in svc["redis"]["command"]
    assert svc["grafana"]["environment"]["GF_AUTH_ANONYMOUS_ENABLED"] == "false"
    assert "GF_SECURITY_ADMIN_PASSWORD__FILE" in svc["grafana"]["environment"]
    prom = yaml.safe_load((REPO_ROOT / "deploy" / "prometheus.yml").read_text())
    api_job = next(j for j in prom["scrape_configs"] if j["job_name"] == "inference-api")
    assert api_job["authorization"]["credentials_file"] == "/data/secrets/prometheus-api-key"
    # the private signing key only where training runs; the API has the public half only
    signing = {n for n, s in svc.items() if any(str(v).startswith("signing-key:") for v in s.get("volumes", []))}
    assert signing == {"secrets", "drift-monitor", "online-learner"}


@pytest.mark.security
def test_services_restart_and_run_unprivileged_from_a_runtime_image() -> None:
    one_shot = {"secrets", "init", "seed"}
    for name, svc in COMPOSE["services"].items():
        assert (svc.get("restart") == "unless-stopped") != (name in one_shot), name
    docker = (REPO_ROOT / "Dockerfile").read_text()
    assert "\nUSER app\n" in docker and "requirements.runtime.lock" in docker
    ignored = (REPO_ROOT / ".dockerignore").read_text().split()
    assert {"feature_repo/data", ".data", "tests"} <= set(ignored)


@pytest.mark.security
def test_the_runtime_lock_pins_the_same_versions_without_test_tools() -> None:
    def pins(name: str) -> dict[str, str]:
        return dict(re.findall(r"^([A-Za-z0-9_.\-]+)==(\S+)", (REPO_ROOT / name).read_text(), re.M))

    runtime, full = pins("requirements.runtime.lock"), pins("requirements.lock")
    assert runtime and all(full.get(k) == v for k, v in runtime.items())
    assert not {"pytest", "hypothesis", "schemathesis", "ruff", "testcontainers"} & set(runtime)


def _compose_env(service: str) -> dict[str, str]:
    """The service's environment as compose gives it with no variable set (``${X:-d}`` is d)."""
    env = COMPOSE["services"][service]["environment"]
    return {k: re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", str(v)) for k, v in env.items()}


@pytest.mark.security
def test_kafka_is_the_local_sasl_broker_with_a_user_per_service(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """The compose broker runs the config the secrets job writes with the code ``make up``
    uses (stack/kafka_dist.py), SASL only, ACLs on; each service has its own Kafka user, the
    one the local stack gives it; the admin volume is mounted by secrets, init and kafka only."""
    from core import kafka
    from stack import secrets
    from stack.services import KAFKA_USERS

    svc = COMPOSE["services"]
    assert svc["kafka"]["image"].endswith(":3.9.1") and "environment" not in svc["kafka"]
    secrets_cmd = svc["secrets"]["command"]
    log_dir = secrets_cmd[secrets_cmd.index("--kafka-broker") + 1]
    assert f"kafka-data:{log_dir}" in svc["kafka"]["volumes"]
    for key, value in _compose_env("secrets").items():
        monkeypatch.setenv(key, value.replace("/data", str(tmp_path / "data")).replace(
            "/kafka-admin", str(tmp_path / "admin")).replace("/signing", str(tmp_path / "signing")))
    assert secrets.main(secrets_cmd[3:]) == 0
    written = {p.name for p in (tmp_path / "admin").iterdir()}
    command = svc["kafka"]["command"][0]
    for name in re.findall(r"\$\$A/([\w.-]+)", command):
        assert name in written, name
    props = dict(line.split("=", 1) for line in (tmp_path / "admin" / "server.properties").read_text().splitlines()
                 if "=" in line)
    assert props["listeners"] == "SASL_PLAINTEXT://0.0.0.0:19092,CONTROLLER://0.0.0.0:9093"
    assert props["advertised.listeners"] == "SASL_PLAINTEXT://kafka:19092"
    assert props["listener.security.protocol.map"] == "SASL_PLAINTEXT:SASL_PLAINTEXT,CONTROLLER:SASL_PLAINTEXT"
    assert props["authorizer.class.name"].endswith("StandardAuthorizer")
    assert props["super.users"] == "User:admin" and props["allow.everyone.if.no.acl.found"] == "false"
    assert int(props["num.partitions"]) == StackSettings().topic_partitions
    assert props["group.initial.rebalance.delay.ms"] == "0"
    # a password per service user, on the shared secrets volume; the admin's on its own
    assert {p.stem for p in (tmp_path / "data" / "secrets" / "kafka").iterdir()} == set(kafka.policy())
    assert (tmp_path / "admin" / "admin.password").exists()
    for name, user in {**KAFKA_USERS, "seed": "seeder"}.items():
        assert _compose_env(name)["STACK_KAFKA_USER"] == user, name
        assert _compose_env(name)["STACK_KAFKA_SASL"] == "true"
    # MLflow asks for a user; only the trainers are its admin
    from core import mlflow_auth
    from stack.services import MLFLOW_USERS

    assert "--app-name basic-auth" in svc["mlflow"]["command"][0]
    assert svc["mlflow"]["environment"]["MLFLOW_AUTH_CONFIG_PATH"].startswith("/data/secrets/mlflow/")
    for name in KAFKA_USERS:
        assert _compose_env(name).get("STACK_MLFLOW_USER", mlflow_auth.ADMIN) == MLFLOW_USERS.get(
            name, mlflow_auth.ADMIN), name
    assert {p.name for p in (tmp_path / "data" / "secrets" / "mlflow").iterdir()} == {
        "admin.password", "reader.password", "flask-secret", "basic_auth.ini"}
    admin_mounts = {n for n, s in svc.items() if any(str(v).startswith("kafka-admin:") for v in s.get("volumes", []))}
    assert admin_mounts == {"secrets", "init", "kafka", "kafka-2", "kafka-3"}


def test_the_cluster_profile_runs_three_kafka_nodes_configured_by_the_secrets_job(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``STACK_PROFILE=cluster docker compose --profile cluster up``: kafka-2 and kafka-3 run
    the configs the secrets job writes with ``make up``'s code; the services see three nodes."""
    from stack import secrets

    svc = COMPOSE["services"]
    assert svc["kafka-2"]["profiles"] == svc["kafka-3"]["profiles"] == ["cluster"]
    assert "profiles" not in svc["kafka"]
    assert COMPOSE["x-app-env"]["STACK_PROFILE"] == "${STACK_PROFILE:-single}"
    for key, value in _compose_env("secrets").items():
        monkeypatch.setenv(key, value.replace("/data", str(tmp_path / "data")).replace(
            "/kafka-admin", str(tmp_path / "admin")).replace("/signing", str(tmp_path / "signing")))
    monkeypatch.setenv("STACK_PROFILE", "cluster")
    cmd = svc["secrets"]["command"]
    assert secrets.main(cmd[3:]) == 0
    written = {p.name for p in (tmp_path / "admin").iterdir()}
    for i, name in enumerate(("kafka", "kafka-2", "kafka-3")):
        files = re.findall(r"\$\$A/([\w.-]+)", svc[name]["command"][0])
        assert set(files) <= written, files
        conf = next(f for f in files if f.startswith("server"))
        props = dict(line.split("=", 1) for line in (tmp_path / "admin" / conf).read_text().splitlines()
                     if "=" in line)
        port = 19092 + 2 * i
        assert props["node.id"] == str(i + 1)
        assert props["advertised.listeners"] == f"SASL_PLAINTEXT://{name}:{port}"
        assert f"localhost:{port}" in svc[name]["healthcheck"]["test"][1]
        assert props["controller.quorum.voters"] == "1@kafka:9093,2@kafka-2:9095,3@kafka-3:9097"
        assert props["default.replication.factor"] == "3" and props["min.insync.replicas"] == "2"
    assert StackSettings().kafka_bootstrap == "kafka:19092,kafka-2:19094,kafka-3:19096"
    # six Redis nodes, each on the config the secrets job wrote for it: the password, cluster
    # mode, the replicas' password for their master, and the node's own name to announce
    redis_nodes = ["redis", *(f"redis-{i}" for i in range(2, 7))]
    assert all(svc[n]["profiles"] == ["cluster"] for n in redis_nodes[1:]) and "profiles" not in svc["redis"]
    pw = (tmp_path / "data" / "secrets" / "redis-password").read_text().strip()
    for i, name in enumerate(redis_nodes):
        conf = svc[name]["command"][1].replace("${STACK_PROFILE:-single}", "cluster")
        assert conf == f"/data/secrets/redis-cluster{'' if i == 0 else f'-{i + 1}'}.conf"
        lines = (tmp_path / "data" / "secrets" / Path(conf).name).read_text().splitlines()
        assert {f"requirepass {pw}", f"masterauth {pw}", "cluster-enabled yes", f"cluster-announce-hostname {name}",
                "cluster-preferred-endpoint-type hostname"} <= set(lines)
        assert f"{name}-data:/data" in svc[name]["volumes"]
        assert name == "redis" or svc["init"]["depends_on"][name] == {"condition": "service_healthy", "required": False}
    assert StackSettings().redis_startup_nodes == [(n, 6379) for n in redis_nodes]
    assert StackSettings().redis_cluster
    # batch work goes to the profile's Dask scheduler; its workers are the profile's too
    assert StackSettings().cluster == "tcp://dask:8786"
    assert svc["dask"]["profiles"] == svc["dask-worker"]["profiles"] == ["cluster"]
    assert "tcp://dask:8786" in svc["dask-worker"]["command"]


def test_redis_persistence_matches_local_config() -> None:
    cmd = " ".join(COMPOSE["services"]["redis"]["command"])
    assert "--appendonly yes" in cmd and "--appendfsync everysec" in cmd and "--save " in cmd


def test_app_env_names_are_real_settings() -> None:
    fields = {f"STACK_{name.upper()}" for name in StackSettings.model_fields}
    text = (REPO_ROOT / "docker-compose.yml").read_text()
    used = set(re.findall(r"\b(STACK_[A-Z_]+)\b", text))
    assert used and used <= fields, used - fields


def test_app_services_build_the_one_dockerfile() -> None:
    built = [n for n, s in COMPOSE["services"].items() if "build" in s]
    assert built and all(COMPOSE["services"][n]["build"] == "." for n in built)
    assert (REPO_ROOT / "Dockerfile").exists()


def test_compose_seeds_a_history_like_make_up() -> None:
    """The seed job runs what `make up` runs between the stream worker and the rest (stack/seed.py)
    once the worker has started, and every service that would see the seeded past out of order
    (the live generators) or react to it (scorer, learner, monitor) starts only after it."""
    svc = COMPOSE["services"]
    seed = svc["seed"]
    assert seed["command"] == ["python", "-m", "stack.seed"]
    assert seed["depends_on"] == {"init": {"condition": "service_completed_successfully"},
                                  "stream-worker": {"condition": "service_started"}}
    assert seed["environment"]["STACK_SEED_HISTORY"] == "${STACK_SEED_HISTORY:-2d}"
    assert StackSettings().seed_history == "2d"
    assert "feast-data:/data" in seed["volumes"]  # seed.json: done once per stack
    after = {n for n, s in svc.items() if isinstance(s.get("depends_on"), dict) and s["depends_on"].get("seed") == {
        "condition": "service_completed_successfully"}}
    assert after == {"generator", "generator-clicks", "stream-scorer", "online-learner", "drift-monitor"}
    for name in after:  # what the x-app anchor gave them is kept
        assert svc[name]["depends_on"]["init"] == {"condition": "service_completed_successfully"}
    # the generators' world and rate are the seed's (settings defaults = the compose command)
    gen = svc["generator"]["command"]
    settings = StackSettings()
    assert float(gen[gen.index("--rate") + 1]) == settings.generator_rate
    assert int(gen[gen.index("--users") + 1]) == settings.generator_users
    import argparse

    from stack.seed import WORLD_SEED
    from streaming.generators import cli as generators

    parser = argparse.ArgumentParser()
    generators.add_arguments(parser)
    for name in ("generator", "generator-clicks"):
        args = parser.parse_args(svc[name]["command"][4:])
        assert args.world_seed == WORLD_SEED, name


@pytest.mark.parametrize("artifacts", ["", "s3://models/mlflow"])
def test_mlflow_keeps_artifacts_in_its_volume_or_the_object_store_named(
        artifacts: str, tmp_path: Path) -> None:
    """The compose MLflow command run by a real shell, with ``python`` a stand-in that prints
    what it was given: the artifact destination follows STACK_ARTIFACTS_URL, and the S3
    endpoint reaches MLflow's client only when one is named."""
    import stat
    import subprocess

    svc = COMPOSE["services"]["mlflow"]
    (tmp_path / "python").write_text('#!/bin/sh\nprintf "%s\\n" "$@"; echo "secret=$MLFLOW_FLASK_SERVER_SECRET_KEY"; '
                                     'echo "endpoint=$MLFLOW_S3_ENDPOINT_URL"\n')
    (tmp_path / "python").chmod(stat.S_IRWXU)
    secret = tmp_path / "flask-secret"
    secret.write_text("s3cret")
    # compose turns $$ into $ and substitutes the ${X:-} of the environment section
    command = svc["command"][0].replace("$$", "$").replace("/data/secrets/mlflow/flask-secret", str(secret))
    env = {"PATH": f"{tmp_path}:/usr/bin:/bin", "STACK_ARTIFACTS_URL": artifacts,
           "STACK_S3_ENDPOINT": "http://s3:9000" if artifacts else ""}
    assert set(env) - {"PATH"} <= set(svc["environment"])
    out = subprocess.run([*svc["entrypoint"], command], env=env, capture_output=True, text=True, check=True,
                         timeout=30).stdout.splitlines()
    assert out[out.index("--artifacts-destination") + 1] == (artifacts or "/data/mlflow/artifacts")
    assert out[-1] == ("endpoint=http://s3:9000" if artifacts else "endpoint=")
    assert {"--serve-artifacts", "basic-auth", "secret=s3cret"} <= set(out)
