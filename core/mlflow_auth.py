"""MLflow authentication (``STACK_MLFLOW_AUTH``; docker-compose sets it).

The tracking server runs MLflow's basic-auth app: every request but ``/health`` needs a user
and password. Two users: ``admin`` (training, the monitor, the online learner and operators:
they log runs, register versions and move aliases) and ``reader`` (the API and the stream
scorer: default permission READ, so they load models but cannot register one or move
``champion``). Passwords live one per file in ``<data_dir>/secrets/mlflow/<user>.password``
(``stack/secrets.py`` creates them) unless ``STACK_MLFLOW_PASSWORD`` is set.
"""

from __future__ import annotations

import os
from pathlib import Path

from core.settings import StackSettings

ADMIN, READER = "admin", "reader"
USERS = (ADMIN, READER)


def secrets_dir(settings: StackSettings) -> Path:
    return settings.data_dir / "secrets" / "mlflow"


def password(settings: StackSettings, user: str | None = None) -> str:
    user = user or settings.mlflow_user
    if user == settings.mlflow_user and settings.mlflow_password is not None:
        pw = settings.mlflow_password
        return pw.get_secret_value() if hasattr(pw, "get_secret_value") else str(pw)
    path = secrets_dir(settings) / f"{user}.password"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        raise PermissionError(f"no MLflow password for user {user!r}: set STACK_MLFLOW_PASSWORD or create "
                              f"{path} (python -m stack.secrets)") from None


def use(settings: StackSettings) -> None:
    """Make this process's MLflow client authenticate as its user (MLflow reads these
    variables on each request). Nothing with auth off."""
    if settings.mlflow_auth:
        os.environ["MLFLOW_TRACKING_USERNAME"] = settings.mlflow_user
        os.environ["MLFLOW_TRACKING_PASSWORD"] = password(settings)


def server_config(settings: StackSettings, database: Path) -> str:
    """The basic-auth app's ini: users in ``database``; a user without a grant may READ."""
    return "\n".join([
        "[mlflow]",
        "default_permission = READ",
        f"database_uri = sqlite:///{database}",
        f"admin_username = {ADMIN}",
        f"admin_password = {password(settings, ADMIN)}",
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth",
        "grant_default_workspace_access = false",
        "",
    ])


def ensure_users(settings: StackSettings) -> list[str]:
    """As the admin, create ``reader`` (or reset its password to the file's); returns what
    was done."""
    from mlflow.exceptions import RestException
    from mlflow.server.auth.client import AuthServiceClient

    os.environ["MLFLOW_TRACKING_USERNAME"] = ADMIN
    os.environ["MLFLOW_TRACKING_PASSWORD"] = password(settings, ADMIN)
    try:
        client = AuthServiceClient(settings.mlflow_uri)
        try:
            client.create_user(READER, password(settings, READER))
            return [f"{READER} created"]
        except RestException as exc:
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
            client.update_user_password(READER, password(settings, READER))
            return [f"{READER} present"]
    finally:
        use(settings)  # back to this process's own user
