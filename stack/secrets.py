"""Credentials for a stack that is closed by default: ``python -m stack.secrets`` creates, once,
what is missing under ``<STACK_DATA_DIR>/secrets``:

- ``api-keys.json``: scoped API keys (operator: every scope; scoring-client: score;
  prometheus: metrics), and ``prometheus-api-key`` (Prometheus's scrape credential);
- ``model-signing.pub`` and the private key at ``STACK_MODEL_SIGNING_KEY_FILE`` (training
  only: docker-compose keeps it on a volume the API does not mount);
- ``redis-password`` and ``redis.conf`` (``requirepass``) when ``STACK_REDIS_PASSWORD_FILE``
  points there; ``grafana-admin-password``.

docker-compose runs it as its first job. Files other services' users must read (Redis,
Grafana and Prometheus run as their own users) are 0644 inside a volume no host port
exposes; private keys and the API key file are 0600.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
from pathlib import Path

from core import registry
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
    if pw_file is not None:
        _write(pw_file.parent / "redis.conf", f"requirepass {pw_file.read_text().strip()}\n", 0o644)
    if _write(out / "grafana-admin-password", secrets.token_urlsafe(18), 0o644):
        written.append("grafana-admin-password")
    return written


def main() -> int:
    settings = StackSettings()
    written = generate(settings)
    print(f"secrets in {settings.data_dir / 'secrets'}: " + (", ".join(written) + " created" if written
                                                              else "all present"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
