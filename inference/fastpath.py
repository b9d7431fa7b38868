"""``POST /v1/score`` without FastAPI's per-request machinery, and with the same contract.

FastAPI runs the route, the bearer dependency, ``json.loads`` then pydantic on Python objects,
and a Request and Response object per call; on this path that was about as much CPU as the
scoring itself. This ASGI layer answers a well-formed, authorised request itself:

- the same key check (``Keyring.check``: 401, 403 and 429 with the same bodies and headers);
- the same pydantic model, validated from the raw bytes (``Transaction.model_validate_json``);
- the same scoring call (the app's ``observed``: bounded pool, timeout 503, metrics).

Anything else (a body that does not validate, a content type that is not JSON, another
method) goes to the FastAPI route with the body replayed, so every refusal is exactly the
route's (the 422 texts, the OpenAPI document). The body limit stays outside this layer.

With ``observe(stage, seconds)`` an answered request reports ``parse`` (key check, body,
validation), ``await`` (the scoring call), ``send`` and ``server`` (from its arrival here to
the answer sent).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import orjson
from fastapi import HTTPException
from pydantic import ValidationError

from inference.auth import ApiKey, Keyring
from inference.scoring import Unavailable

log = logging.getLogger("inference")
ASGIApp = Callable[[Any, Any, Any], Awaitable[None]]
_JSON = (b"content-type", b"application/json")


def _is_json(headers: list[tuple[bytes, bytes]]) -> bool:
    """No content type, or application/json (with parameters): the types FastAPI reads as JSON
    that this layer takes; +json subtypes and the rest go to the route."""
    for name, value in headers:
        if name == b"content-type":
            return value.split(b";", 1)[0].strip().lower() == b"application/json"
    return True


def _bearer(headers: list[tuple[bytes, bytes]]) -> str | None:
    """The token of ``Authorization: Bearer <token>`` as FastAPI's HTTPBearer reads it."""
    for name, value in headers:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            return token if scheme.lower() == "bearer" and token else None
    return None


async def answer(send: Any, status: int, body: bytes, headers: Mapping[str, str] | None = None,
                 content_type: tuple[bytes, bytes] = _JSON) -> None:
    """A whole response, sent as plain ASGI messages (here and by the API's body limit)."""
    raw = [content_type, (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


class ScoreFastPath:
    """ASGI middleware: answers ``POST <path>`` with ``score(model, caller) -> JSON bytes``
    (see the module's doc); everything else passes through to ``app``."""

    def __init__(self, app: ASGIApp, path: str, model: Any, keyring: Keyring, scope_name: str,
                 score: Callable[[Any, ApiKey], Awaitable[bytes]], counts: dict[str, int] | None = None,
                 observe: Callable[[str, float], None] | None = None) -> None:
        self.app, self.path, self.model, self.keyring = app, path, model, keyring
        self.scope_name, self.score, self.observe = scope_name, score, observe
        #: requests this layer answered, and those it handed to the route (app.state.fast_path)
        self.counts = counts if counts is not None else {}
        self.counts.update(answered=0, to_route=0)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] != self.path:
            await self.app(scope, receive, send)
            return
        if scope["method"] != "POST" or not _is_json(scope["headers"]):
            self.counts["to_route"] += 1
            await self.app(scope, receive, send)
            return
        arrived = time.perf_counter()
        try:
            caller = self.keyring.check(_bearer(scope["headers"]), self.scope_name)
        except HTTPException as exc:  # what FastAPI's handler answers for the route's dependency
            await answer(send, exc.status_code, orjson.dumps({"detail": exc.detail}), exc.headers)
            return
        chunks = []
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        body = b"".join(chunks)
        try:
            txn = self.model.model_validate_json(body)
        except ValidationError:
            self.counts["to_route"] += 1
            await self.app(scope, _replay(body, receive), send)  # the route's 422, word for word
            return
        self.counts["answered"] += 1
        parsed = time.perf_counter()
        try:
            out = await self.score(txn, caller)
        except Unavailable as exc:
            await answer(send, 503, orjson.dumps({"detail": exc.detail}))
            return
        except Exception:
            log.exception("POST %s failed", self.path)
            await answer(send, 500, b"Internal Server Error",
                          content_type=(b"content-type", b"text/plain; charset=utf-8"))
            return
        scored = time.perf_counter()
        await answer(send, 200, out)
        if self.observe is not None:
            sent = time.perf_counter()
            for stage, seconds in (("parse", parsed - arrived), ("await", scored - parsed), ("send", sent - scored),
                                   ("server", sent - arrived)):
                self.observe(stage, seconds)


def _replay(body: bytes, receive: Any) -> Any:
    """A ``receive`` that gives the body already read, then the client's next messages."""
    sent = False

    async def again() -> Any:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return again
