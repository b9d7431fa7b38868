"""Scoped API credentials and per-key rate limits.

Every endpoint but ``/health`` needs a bearer key with the endpoint's scope:

| scope | endpoints |
|---|---|
| ``score`` | ``POST /v1/score``, ``POST /v1/score/batch`` |
| ``features`` | ``GET /v1/features/card/{id}`` |
| ``read`` | ``GET /v1/model``, ``/ready``, ``/docs``, ``/openapi.json`` |
| ``metrics`` | ``GET /metrics`` |
| ``admin`` | ``/v1/admin/*`` (reload, historical re-scoring) |

Keys come from ``INFERENCE_API_KEYS`` (JSON) and the file ``INFERENCE_API_KEYS_FILE``
(default ``<STACK_DATA_DIR>/secrets/api-keys.json``, written by ``make up`` through
``python -m stack.secrets``), each ``{"name", "key", "scopes", "rate_per_s"}``;
``INFERENCE_ADMIN_TOKEN`` is one more key with every scope. Only the keys' sha256 digests
are kept in memory. A key over its rate gets 429 with ``Retry-After``. With no key
configured at all, everything but ``/health`` answers 401.
"""

from __future__ import annotations

import hashlib
import threading
import time
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, HTTPException
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field, TypeAdapter

SCOPES = ("score", "features", "read", "metrics", "admin")


class ApiKey(BaseModel):
    name: Annotated[str, Field(min_length=1, max_length=64)]
    key: Annotated[str, Field(min_length=16)]
    scopes: list[str]
    #: requests per second (bursts up to one second's worth); 0: unlimited
    rate_per_s: float = Field(0.0, ge=0)


_KEYS = TypeAdapter(list[ApiKey])


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def load_keys(inline: str | None, path: Path | None) -> list[ApiKey]:
    """Keys from a JSON string and a JSON file (a missing file gives none); a bad entry is a
    ValueError naming it."""
    out: list[ApiKey] = []
    if inline:
        out += _KEYS.validate_json(inline)
    if path is not None and path.exists():
        out += _KEYS.validate_json(path.read_bytes())
    for k in out:
        unknown = set(k.scopes) - set(SCOPES)
        if unknown:
            raise ValueError(f"API key {k.name!r}: unknown scopes {sorted(unknown)} (known: {', '.join(SCOPES)})")
    return out


def key_with(path: Path, scope: str) -> str | None:
    """A key from the file that has ``scope`` (for the project's own tools: make status)."""
    try:
        return next((k.key for k in load_keys(None, path) if scope in k.scopes), None)
    except ValueError:
        return None


class _Bucket:
    def __init__(self, rate: float) -> None:
        self.rate, self.tokens, self.at = rate, rate, time.monotonic()

    def take(self) -> float:
        """0 when allowed, else seconds until a token is available."""
        now = time.monotonic()
        self.tokens = min(self.rate, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.rate


class Keyring:
    def __init__(self, keys: list[ApiKey]) -> None:
        self.keys = {digest(k.key): k for k in keys}
        self._buckets = {k.name: _Bucket(k.rate_per_s) for k in keys if k.rate_per_s > 0}
        self._lock = threading.Lock()

    def check(self, presented: str | None, scope: str) -> ApiKey:
        if not self.keys:
            raise HTTPException(401, "no API keys are configured (INFERENCE_API_KEYS or INFERENCE_API_KEYS_FILE)",
                                headers={"WWW-Authenticate": "Bearer"})
        if presented is None:
            raise HTTPException(401, "an API key is required (Authorization: Bearer <key>)",
                                headers={"WWW-Authenticate": "Bearer"})
        key = self.keys.get(digest(presented))
        if key is None:
            raise HTTPException(403, "unknown API key")
        if scope not in key.scopes:
            raise HTTPException(403, f"API key {key.name!r} lacks the {scope!r} scope")
        bucket = self._buckets.get(key.name)
        if bucket is not None:
            with self._lock:
                wait = bucket.take()
            if wait:
                raise HTTPException(429, f"API key {key.name!r} is over its {key.rate_per_s:g} requests/s",
                                    headers={"Retry-After": str(max(1, round(wait + 0.5)))})
        return key


def require(keyring: Keyring, scope: str) -> Any:
    """A FastAPI dependency: the caller's key, which must have ``scope``."""
    bearer = HTTPBearer(auto_error=False)

    # async: a plain ``def`` dependency is run on a worker thread by FastAPI, one thread hop
    # per request for a hash and a dict lookup
    async def dependency(creds: HTTPAuthorizationCredentials | None = Depends(bearer)) -> ApiKey:  # noqa: B008
        return keyring.check(creds.credentials if creds else None, scope)

    return Depends(dependency)
