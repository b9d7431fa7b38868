"""Session fixtures that give tests real services.

Order of preference for each part:
1. an address from the environment (``KAFKA_BOOTSTRAP_SERVERS``, ``REDIS_URL``,
   ``MLFLOW_TRACKING_URI``): use that server;
2. otherwise: the project's own local stack (``stack.lifecycle.up``, the code ``make up``
   runs) on free ports in a temporary data dir, torn down at the end of the session.

Readiness is always awaited through the services' health probes, never slept.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest

from core.settings import REPO_ROOT, TOPICS, StackSettings
from stack import health, lifecycle
from tests.support.fixtures import stream_data, stream_run  # noqa: F401 - shared session fixtures


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "/integration/" in str(item.fspath):
            item.add_marker(pytest.mark.integration)
        elif "/e2e/" in str(item.fspath):
            item.add_marker(pytest.mark.e2e)
    # the end-to-end tests extend the shared stream (more events, retrained models): last
    items.sort(key=lambda item: "/e2e/" in str(item.fspath))


def local_settings(data_dir: Path) -> StackSettings:
    """A stack on free ports in its own data dir, sharing the Kafka jar cache."""
    names = ("kafka_port", "kafka_controller_port", "redis_port", "mlflow_port", "api_port", "worker_metrics_port",
             "scorer_metrics_port", "learner_metrics_port", "monitor_metrics_port", "prometheus_port",
             "feast_ui_port")
    ports: dict[str, Any] = dict(zip(names, health.free_ports(len(names)), strict=True))  # (distinct: one each)
    return StackSettings(
        **ports, data_dir=data_dir, kafka_heap="512m",
        topic_partitions=3, health_timeout_s=120,
    )


@contextlib.contextmanager
def own_services(tmp_path_factory: pytest.TempPathFactory, name: str, only: tuple[str, ...],
                 **update: object) -> Iterator[StackSettings]:
    """Some of the stack's services of a test's own (settings changed by ``update``), as
    ``make up`` starts them, torn down after."""
    settings = local_settings(tmp_path_factory.mktemp(name)).model_copy(update=update)
    lifecycle.up(settings, say=lambda _m: None, only=only)
    try:
        yield settings
    finally:
        lifecycle.down(settings, say=lambda _m: None)


@dataclass
class Endpoints:
    kafka_bootstrap: str
    redis_url: str
    mlflow_uri: str


@pytest.fixture(scope="session")
def endpoints(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Endpoints]:
    env_kafka = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    env_redis = os.environ.get("REDIS_URL")
    env_mlflow = os.environ.get("MLFLOW_TRACKING_URI")
    need = [name for name, have in (("kafka", env_kafka), ("redis", env_redis),
                                    ("mlflow", env_mlflow)) if not have]
    settings = local_settings(tmp_path_factory.mktemp("stack")) if need else None
    try:
        if settings is not None:
            lifecycle.up(settings, say=lambda _msg: None, only=need)
        yield Endpoints(
            kafka_bootstrap=env_kafka or settings.kafka_bootstrap,  # type: ignore[union-attr]
            redis_url=env_redis or settings.redis_url,  # type: ignore[union-attr]
            mlflow_uri=env_mlflow or settings.mlflow_uri,  # type: ignore[union-attr]
        )
    finally:
        if settings is not None:
            lifecycle.down(settings, say=lambda _msg: None)


@pytest.fixture(scope="session")
def kafka_bootstrap(endpoints: Endpoints) -> str:
    from stack.topics import ensure_topics

    ensure_topics(endpoints.kafka_bootstrap, TOPICS, partitions=3)
    return endpoints.kafka_bootstrap


@pytest.fixture(scope="session")
def redis_url(endpoints: Endpoints) -> str:
    return endpoints.redis_url


@pytest.fixture(scope="session")
def mlflow_uri(endpoints: Endpoints) -> str:
    return endpoints.mlflow_uri


def feast_settings(redis_url: str, data_dir: Path, repo: Path) -> StackSettings:
    url = urlparse(redis_url)
    # An external Redis is shared: give the tests their own logical db (15) unless told.
    db = int(url.path.strip("/") or 0) if not os.environ.get("REDIS_URL") else int(
        os.environ.get("STREAMFEAT_TEST_REDIS_DB", "15"))
    return StackSettings(host=url.hostname or "127.0.0.1", redis_port=url.port or 6379,
                         redis_db=db, data_dir=data_dir, feature_repo=repo)


@pytest.fixture(scope="session")
def feast_repo(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> StackSettings:
    """An isolated, applied copy of feature_repo/ (own registry, own Redis db).

    Returns the StackSettings that open it: ``core.feast_store.open_store(settings)``.
    """
    from core import feast_store

    root = tmp_path_factory.mktemp("feast")
    repo = root / "feature_repo"
    shutil.copytree(REPO_ROOT / "feature_repo", repo,
                    ignore=shutil.ignore_patterns("data", "__pycache__"))
    settings = feast_settings(redis_url, root / "data", repo)
    feast_store.apply(settings)
    return settings


@pytest.fixture
def unique_topic(kafka_bootstrap: str) -> str:
    from stack.topics import ensure_topics

    name = f"test-{uuid.uuid4().hex[:10]}"
    ensure_topics(kafka_bootstrap, [name], partitions=3)
    return name


@pytest.fixture(autouse=True)
def _stream_engine(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """A test parametrised with ``engine`` (faust, quix) runs its stream worker processes on
    that engine (they inherit STREAMING_ENGINE)."""
    params = getattr(request.node, "callspec", None)
    if params is not None and "engine" in params.params:
        monkeypatch.setenv("STREAMING_ENGINE", params.params["engine"])
