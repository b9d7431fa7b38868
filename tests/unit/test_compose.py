"""docker-compose.yml stays consistent with the local stack (no Docker engine needed)."""

from __future__ import annotations

import re

import yaml

from core.settings import REPO_ROOT, StackSettings

COMPOSE = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())


def _published(service: str) -> set[int]:
    return {int(str(p).split(":")[0]) for p in COMPOSE["services"][service].get("ports", [])}


def test_same_services_as_the_local_stack() -> None:
    from stack.services import SERVICES

    assert {"init", "prometheus", "grafana"} | set(SERVICES) <= set(COMPOSE["services"])


def test_default_ports_match_settings() -> None:
    s = StackSettings()
    assert s.worker_metrics_port in _published("stream-worker")
    assert s.kafka_port in _published("kafka")
    assert s.redis_port in _published("redis")
    assert s.mlflow_port in _published("mlflow")


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
