"""MLflow with authentication (STACK_MLFLOW_AUTH, what docker-compose runs): on a real tracking
server started the way ``make up`` starts it, nothing but /health answers without a user, the
API's read-only user loads the champion but cannot move it or register a version, and only the
trainers' admin can."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from pydantic import SecretStr

from core import mlflow_auth
from core.settings import StackSettings
from tests.conftest import own_services
from training import tracking

pytestmark = pytest.mark.security
NAME = "fraud-detector"


@pytest.fixture(scope="module")
def authed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackSettings]:
    with own_services(tmp_path_factory, "mlflow-auth", ("mlflow",), mlflow_auth=True) as settings:
        yield settings


@pytest.fixture(autouse=True)
def _own_env(monkeypatch: pytest.MonkeyPatch, authed: StackSettings) -> None:
    """The client's credentials and URI live in the environment: restore it after each test."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", authed.mlflow_uri)
    for var in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        monkeypatch.delenv(var, raising=False)


def status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:  # noqa: S310 - loopback
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_nothing_but_health_answers_without_a_user(authed: StackSettings) -> None:
    assert status(f"{authed.mlflow_uri}/health") == 200
    assert status(f"{authed.mlflow_uri}/api/2.0/mlflow/registered-models/search") == 401
    assert status(f"{authed.mlflow_uri}/api/2.0/mlflow/experiments/search?max_results=1") == 401
    wrong = authed.model_copy(update={"mlflow_user": "reader", "mlflow_password": SecretStr("guess")})
    tracking.connect(wrong)
    with pytest.raises(MlflowException, match="401|nauthenticated|credentials"):
        MlflowClient().search_registered_models()


def test_only_the_trainers_can_register_and_move_champion(authed: StackSettings) -> None:
    tracking.connect(authed)  # admin: what training and the monitor run as
    admin = MlflowClient()
    admin.create_registered_model(NAME)
    exp = admin.create_experiment("auth-test")
    run = admin.create_run(exp).info.run_id
    source = f"runs:/{run}/model"
    v1 = admin.create_model_version(NAME, source=source, run_id=run)
    admin.set_registered_model_alias(NAME, "champion", v1.version)

    reader = authed.model_copy(update={"mlflow_user": mlflow_auth.READER})
    tracking.connect(reader)  # what the API and the stream scorer run as
    client = MlflowClient()
    assert client.get_model_version_by_alias(NAME, "champion").version == v1.version
    with pytest.raises(MlflowException, match="PERMISSION_DENIED|403"):
        client.set_registered_model_alias(NAME, "champion", v1.version)
    with pytest.raises(MlflowException, match="PERMISSION_DENIED|403"):
        client.create_model_version(NAME, source=source, run_id=run)
    with pytest.raises(MlflowException, match="PERMISSION_DENIED|403"):
        client.delete_registered_model_alias(NAME, "champion")
    tracking.connect(authed)
    assert MlflowClient().get_model_version_by_alias(NAME, "champion").version == v1.version


def test_with_auth_on_an_unreachable_server_is_an_error_not_a_local_registry(authed: StackSettings) -> None:
    """No silent fallback to a local sqlite registry: with auth on, the URI is the server's."""
    import os

    from stack import health
    from training.errors import TrainingError

    del os.environ["MLFLOW_TRACKING_URI"]
    down = authed.model_copy(update={"mlflow_port": health.free_port()})
    with pytest.raises(TrainingError, match="no MLflow tracking server answers"):
        tracking.connect(down, say=lambda _m: None)
    assert tracking.connect(down, say=lambda _m: None, check=False) == down.mlflow_uri  # services retry
    assert not (down.data_dir / "mlflow-local").exists()
