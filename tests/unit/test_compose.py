"""docker-compose.yml stays consistent with the local stack (no Docker engine needed)."""

from __future__ import annotations

import re

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
    env = COMPOSE["services"]["kafka"]["environment"]
    assert "HOST" not in env["KAFKA_LISTENERS"] and "localhost" not in env["KAFKA_ADVERTISED_LISTENERS"]
    assert '--allowed-hosts "*"' not in COMPOSE["services"]["mlflow"]["command"]


@pytest.mark.security
def test_credentials_are_generated_and_infrastructure_asks_for_them() -> None:
    svc = COMPOSE["services"]
    assert svc["secrets"]["command"] == ["python", "-m", "stack.secrets"]
    assert "/data/secrets/redis.conf" in svc["redis"]["command"]  # requirepass
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
    one_shot = {"secrets", "init"}
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


def test_kafka_matches_local_broker_settings() -> None:
    env = COMPOSE["services"]["kafka"]["environment"]
    assert COMPOSE["services"]["kafka"]["image"].endswith(":3.9.1")
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert env["KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS"] == "0"
    assert int(env["KAFKA_NUM_PARTITIONS"]) == StackSettings().topic_partitions


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
