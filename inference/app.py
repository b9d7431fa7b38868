"""The scoring API: ``python -m inference`` (uvicorn, uvloop, httptools) on STACK_API_PORT."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException

from core import feast_store, registry
from core.model_inputs import PROPENSITY_FEATURES
from core.prom import single_process
from core.settings import StackSettings
from inference import auth, propensity, scoring
from inference.auth import ApiKey
from inference.coalesce import Coalescer
from inference.fastpath import ScoreFastPath, answer
from inference.model import ModelHolder
from inference.schemas import (
    BatchResponse,
    ClickContext,
    ModelInfo,
    Problem,
    PropensityBatch,
    PropensityScore,
    Score,
    Transaction,
    batch_request,
    click_batch,
)
from inference.scoring import Unavailable as ServiceUnavailable
from inference.settings import InferenceSettings
from streaming.read import CardFeatureReader

log = logging.getLogger("inference")
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0)
#: finer, down to 25 µs: a stage of a request can be that short
STAGE_BUCKETS = (0.000025, 0.00005, 0.0001, 0.0002, 0.0003, 0.0005, 0.00075, 0.001, 0.0015, 0.002, 0.003,
                 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.1, 0.25, 1.0)


class Metrics:
    def __init__(self) -> None:
        single_process()
        self.registry = r = CollectorRegistry()
        self.requests = Counter("inference_requests_total", "requests", ["endpoint", "status"], registry=r)
        self.latency = Histogram("inference_request_seconds", "request latency", ["endpoint"],
                                 buckets=LATENCY_BUCKETS, registry=r)
        self.decisions = Counter("inference_decisions_total", "decisions", ["decision"], registry=r)
        self.feature_fetch = Histogram("inference_feature_fetch_seconds", "Feast online read", buckets=LATENCY_BUCKETS,
                                       registry=r)
        #: where a single /v1/score request's time goes (inference/coalesce.py, inference/fastpath.py)
        self.stage = Histogram("inference_stage_seconds", "a /v1/score request's time by stage: parse (key, "
                               "body, validation), queue (until a lane takes it), pool_wait, score (the batch "
                               "on the pool), wake (the loop resuming the lane), await (the whole scoring "
                               "call), send, server (arrival to the answer sent)", ["stage"],
                               buckets=STAGE_BUCKETS, registry=r)
        self.model_version = Gauge("inference_model_version", "served model version", ["name", "alias"], registry=r)
        self.reloads = Counter("inference_reloads_total", "model reloads", ["result"], registry=r)
        self.dropped = Counter("inference_scores_dropped_total", "scores not published", ["reason"], registry=r)
        self.refusals = Counter("inference_model_refusals_total", "registry versions refused at load (unsigned, "
                                "bad_signature, tampered, ungated, features, threshold, promotion)", ["reason"],
                                registry=r)
        self.skewed = Counter("inference_event_time_skew_total",
                              "requests whose event_time is further from the server's time than allowed", registry=r)
        self._children: dict[tuple[Any, ...], Any] = {}

    def child(self, metric: Any, *labels: str) -> Any:
        """``metric.labels(*labels)``, looked up once: ``labels`` takes a lock and builds a key
        on every call, a few µs per request on the hot path."""
        key = (id(metric), *labels)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*labels)
        return found


class _TooLarge(StarletteHTTPException):
    """Raised from the body stream; an HTTPException so that FastAPI's body parsing lets it
    through (it turns any other error into a 400)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"body larger than {limit} bytes")


class BodyLimit:
    """413 for a body above the limit: a declared Content-Length is refused before anything
    reads it, and the bytes of a chunked (or understated) body are counted as they arrive.
    Plain ASGI: Starlette's BaseHTTPMiddleware costs a task and queue per request."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app, self.limit = app, limit

    async def _refuse(self, send: Any) -> None:
        await answer(send, 413, orjson.dumps({"detail": f"body larger than {self.limit} bytes"}),
                     {"connection": "close"})

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length":
                if not value.isdigit() or int(value) > self.limit:
                    await self._refuse(send)
                    return
                break
        seen, started = 0, False

        async def counted() -> Any:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise _TooLarge(self.limit)
            return message

        async def tracked(message: Any) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, tracked)
        except _TooLarge:
            if started:
                raise
            await self._refuse(send)


def create_app(stack: StackSettings | None = None, settings: InferenceSettings | None = None,
               store: Any = None) -> FastAPI:
    stack = stack or StackSettings()
    cfg = settings or InferenceSettings()
    metrics = Metrics()
    verifier = registry.Verifier.of(stack)
    holder = ModelHolder(cfg.model_name, cfg.model_alias, cfg.onnx_threads, cfg.shadow, verifier=verifier)
    # the purchase-propensity model: the same lifecycle (signed, gated, promoted, hot-reloaded,
    # shadow challenger); optional: /v1/propensity answers 503 with the reason until one exists
    prop_holder = ModelHolder(cfg.propensity_model_name, cfg.model_alias, cfg.onnx_threads, cfg.shadow,
                              verifier=verifier, features=PROPENSITY_FEATURES)
    holders = {"fraud": holder, "personalization": prop_holder}
    state: dict[str, Any] = {}
    counted: dict[tuple[str, str], int] = {}
    keys = auth.load_keys(cfg.api_keys.get_secret_value() if cfg.api_keys else None,
                          cfg.api_keys_file or stack.data_dir / "secrets" / "api-keys.json")
    if cfg.admin_token is not None:
        keys.append(auth.ApiKey(name="admin-token", key=cfg.admin_token.get_secret_value(), scopes=list(auth.SCOPES)))
    keyring = auth.Keyring(keys)
    need = {scope: auth.require(keyring, scope) for scope in auth.SCOPES}

    def reload_one(h: ModelHolder) -> tuple[bool, str]:
        changed, msg = h.reload()
        if h is prop_holder and h.current is None and not h.refusals:
            return changed, msg  # no propensity model registered: not a failed reload
        metrics.reloads.labels("changed" if changed else ("failed" if h.last_error else "unchanged")).inc()
        for reason, n in h.refusals.items():
            metrics.refusals.labels(reason).inc(n - counted.get((h.name, reason), 0))
            counted[h.name, reason] = n
        if h.current is not None:
            metrics.model_version.labels(h.name, h.alias).set(float(h.current.version))
        return changed, msg

    def reload() -> tuple[bool, str]:
        """Both models; the fraud model's outcome is the answer (the propensity model's is
        logged and shown by /v1/model?task=personalization)."""
        reload_one(prop_holder)
        return reload_one(holder)

    async def watch() -> None:
        while True:
            await asyncio.sleep(cfg.poll_interval_s)
            await asyncio.to_thread(reload)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        from training import tracking

        tracking.connect(stack, lambda m: log.info(m), check=False)
        store_ = store or feast_store.open_store(stack)
        state["reader"] = CardFeatureReader(store_)
        state["users"] = propensity.UserStates(store_)
        await asyncio.to_thread(reload)
        if holder.current is None:
            log.warning("no model yet (%s); /ready answers 503 until one is promoted", holder.last_error)
        if cfg.publish_scores:
            from inference.publisher import ScorePublisher

            state["publisher"] = ScorePublisher(stack, cfg.scores_topic, cfg.scores_queue,
                                                lambda why: metrics.dropped.labels(why).inc())
            state["prop_publisher"] = ScorePublisher(stack, cfg.propensity_topic, cfg.scores_queue,
                                                     lambda why: metrics.dropped.labels(why).inc())
        state["scorer"] = scoring.Scorer(holder, state["reader"], cfg, state.get("publisher"),
                                         on_fetch=metrics.feature_fetch.observe,
                                         on_decision=lambda d: metrics.child(metrics.decisions, d).inc(),
                                         on_skew=metrics.skewed.inc)
        state["propensity"] = propensity.PropensityScorer(prop_holder, state["users"], cfg,
                                                          state.get("prop_publisher"),
                                                          on_fetch=metrics.feature_fetch.observe)
        task = asyncio.create_task(watch()) if cfg.poll_interval_s > 0 else None
        yield
        if task:
            task.cancel()
        for name in ("publisher", "prop_publisher"):
            if name in state:
                state.pop(name).close()

    # /docs and /openapi.json are served below, behind the read scope
    app = FastAPI(title="streamfeat inference", version="1", docs_url=None, redoc_url=None, openapi_url=None,
                  lifespan=lifespan, description="Fraud scores from Feast online features and ONNX Runtime.",
                  responses={422: {"model": Problem}, 503: {"model": Problem}})
    app.state.holder, app.state.metrics, app.state.settings = holder, metrics, cfg
    app.state.propensity_holder = prop_holder

    @app.exception_handler(ServiceUnavailable)
    async def unavailable(_r: Request, exc: ServiceUnavailable) -> JSONResponse:
        return JSONResponse({"detail": exc.detail}, status_code=503)

    @app.exception_handler(RequestValidationError)
    async def invalid(_r: Request, exc: RequestValidationError) -> JSONResponse:
        parts = []
        for e in exc.errors()[:10]:
            where = ".".join(str(x) for x in e.get("loc", ()) if x != "body")
            parts.append(f"{where}: {e.get('msg')}" if where else str(e.get("msg")))
        return JSONResponse({"detail": "; ".join(parts)}, status_code=422)

    pool = ThreadPoolExecutor(cfg.io_threads, thread_name_prefix="score")

    def score_single(group: str, txns: list[Any]) -> list[Any]:
        return state["scorer"].score(txns, source=f"api:{group}")  # type: ignore[no-any-return]

    # single /v1/score requests scored together while earlier ones are on the pool
    def stage(name: str, seconds: float) -> None:
        metrics.child(metrics.stage, name).observe(seconds)

    coalescer = Coalescer(pool, score_single, max_batch=cfg.coalesce_max, lanes=cfg.score_lanes,
                          alone=(ServiceUnavailable,), observe=stage)
    app.state.coalescer = coalescer

    async def observed(endpoint: str, fn: Any = None, pending: Any = None) -> Any:
        """(``endpoint``: the route's path, the metrics' label the alert rules and dashboards
        filter on.) Run ``fn`` (Redis reads and ONNX) on the bounded pool, never on the event loop (or
        await ``pending``, work already on its way there): answer 503 when it is not done
        within ``request_timeout_s``. Counted by the status the client gets."""
        t0 = time.perf_counter()
        status = "200"
        try:
            work = pending if pending is not None else asyncio.get_running_loop().run_in_executor(pool, fn)
            return await asyncio.wait_for(work, cfg.request_timeout_s)
        except TimeoutError:
            status = "503"
            raise ServiceUnavailable(f"not answered within {cfg.request_timeout_s:g} s (online feature store "
                                     "slow or unreachable)") from None
        except ServiceUnavailable:
            status = "503"
            raise
        except Exception:
            status = "500"
            raise
        finally:
            metrics.child(metrics.requests, endpoint, status).inc()
            metrics.child(metrics.latency, endpoint).observe(time.perf_counter() - t0)

    def as_json(body: Any) -> Response:
        # scores are built from typed values by scoring.Scorer: serialise once with orjson
        # instead of validating them again into the response model
        return Response(orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY), media_type="application/json")

    def rescoring(name: str, path: str, scorer: str, field: str, noun: str, body: Any) -> Any:
        """An admin endpoint that scores a batch (``body``'s ``field``) each as of its own
        event_time with ``state[scorer]``, published only with ?publish=true."""
        async def rescore(req: Any, publish: bool = False) -> Response:
            items = getattr(req, field)
            if any(i.event_time is None for i in items):
                return JSONResponse({"detail": f"re-scoring needs every {noun}'s event_time"}, status_code=422)
            return as_json({"scores": await observed(path, lambda: state[scorer].score(
                items, at=[i.event_time for i in items], publish=publish, source="rescore"))})

        rescore.__annotations__["req"] = body
        rescore.__name__ = rescore.__qualname__ = name
        return rescore

    @app.post("/v1/score", response_model=Score, summary="Score one transaction (scope: score)")
    async def score(txn: Transaction, caller: ApiKey = need["score"]) -> Response:
        return as_json(await observed("/v1/score", pending=coalescer(caller.name, txn)))

    # The batch schema is built from the settings: its annotation is set on the functions
    # (a closure variable cannot be resolved from a postponed annotation).
    batch_model = batch_request(cfg.max_batch)

    async def score_batch(req: Any, caller: ApiKey = need["score"]) -> Response:
        return as_json({"scores": await observed("/v1/score/batch", lambda: state["scorer"].score(
            req.transactions, source=f"api:{caller.name}"))})

    score_batch.__annotations__["req"] = batch_model
    app.post("/v1/score/batch", response_model=BatchResponse,
             summary="Score up to INFERENCE_MAX_BATCH transactions (scope: score)")(score_batch)

    @app.post("/v1/propensity", response_model=PropensityScore,
              summary="Purchase propensity of the user's current click (scope: score)")
    async def score_propensity(click: ClickContext, caller: ApiKey = need["score"]) -> Response:
        return as_json(await observed("/v1/propensity", lambda: state["propensity"].score(
            [click], source=f"api:{caller.name}")[0]))

    click_model = click_batch(cfg.max_batch)

    app.post("/v1/admin/rescore/propensity", response_model=PropensityBatch, dependencies=[need["admin"]],
             summary="Re-score clicks as of their own event_time (scope: admin; published only with "
                     "?publish=true)")(rescoring(
                         "rescore_propensity", "/v1/admin/rescore/propensity", "propensity", "clicks", "click",
                         click_model))

    @app.get("/v1/features/card/{card_id}", dependencies=[need["features"]],
             summary="A card's window features as of now (or ?at=epoch ms) (scope: features)")
    def features(card_id: str, at: int | None = None) -> dict[str, Any]:
        if not 1 <= len(card_id) <= 64:
            return JSONResponse({"detail": "card_id must be 1..64 characters"}, status_code=422)  # type: ignore
        if at is not None and not 946_684_800_000 <= at <= 4_102_444_800_000:
            return JSONResponse({"detail": "at must be epoch ms between 2000 and 2100"},  # type: ignore
                                  status_code=422)
        try:
            read = state["reader"].read([card_id], at)[0]
        except Exception as exc:
            raise ServiceUnavailable(f"online feature store unavailable: {type(exc).__name__}: {exc}") from exc
        return {"card_id": card_id, "at": at or scoring.now_ms(), "found": read.found,
                "last_event_time": read.last_event_time, "features": read.features}

    @app.get("/v1/model", response_model=ModelInfo, dependencies=[need["read"]],
             summary="The served model (scope: read); ?task=personalization: the purchase-propensity model")
    def model_info(task: Literal["fraud", "personalization"] = "fraud") -> Any:
        h = holders[task]
        m = h.current
        if m is None:
            raise ServiceUnavailable(f"no model loaded: {h.last_error}")
        return ModelInfo(name=m.name, version=m.version, alias=m.alias, model_type=str(m.metadata.get("model_type")),
                         threshold=m.threshold, decline_at=cfg.decline_at, features=m.features, sha256=m.sha256,
                         metrics={k: v for k, v in m.tags.items() if k.startswith("test_")}, loaded_at=m.loaded_at,
                         challenger_version=h.challenger.version if h.challenger else None,
                         labels=m.metadata.get("label_mode"),
                         promotion={k: v for k, v in (h.promotion or {}).items() if k != "name"} or None)

    @app.get("/health", summary="Alive (no credentials)")
    def health() -> dict[str, str]:
        return {"status": "alive"}

    @app.get("/openapi.json", include_in_schema=False, dependencies=[need["read"]])
    def openapi() -> JSONResponse:
        return JSONResponse(app.openapi())

    @app.get("/docs", include_in_schema=False, dependencies=[need["read"]])
    def docs() -> Any:
        from fastapi.openapi.docs import get_swagger_ui_html

        # the page embeds the schema: the browser's fetch of /openapi.json would carry no key
        page = get_swagger_ui_html(openapi_url="/openapi.json", title="streamfeat inference")
        spec = orjson.dumps(app.openapi()).decode()
        return Response(page.body.decode().replace("url: '/openapi.json',", f"spec: {spec},"),  # type: ignore[union-attr]
                        media_type="text/html")

    @app.get("/ready", dependencies=[need["read"]], summary="Model loaded and Redis reachable (scope: read)")
    def ready() -> Any:
        if holder.current is None:
            return JSONResponse({"detail": f"no model loaded: {holder.last_error}"}, status_code=503)
        try:
            state["reader"].states(["__ready_probe__"])
        except Exception as exc:
            return JSONResponse({"detail": f"online feature store unavailable: {exc}"}, status_code=503)
        return {"status": "ready", "model_version": holder.current.version}

    @app.get("/metrics", dependencies=[need["metrics"]], summary="Prometheus metrics (scope: metrics)",
             response_class=Response)
    def prometheus() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    app.post("/v1/admin/rescore/batch", response_model=BatchResponse, dependencies=[need["admin"]],
             summary="Re-score transactions as of their own event_time (scope: admin; published only with "
                     "?publish=true, e.g. to replay history into the scores topic)")(
        rescoring("rescore_batch", "/v1/admin/rescore/batch", "scorer", "transactions", "transaction", batch_model))

    @app.post("/v1/admin/reload", summary="Reload the model alias now (scope: admin)", dependencies=[need["admin"]])
    def admin_reload() -> dict[str, Any]:
        changed, msg = reload()
        return {"changed": changed, "message": msg,
                "model_version": holder.current.version if holder.current else None,
                "propensity_model_version": prop_holder.current.version if prop_holder.current else None,
                "propensity_message": prop_holder.last_error}

    inner: Any = app
    if cfg.fast_path:
        async def fast_score(txn: Transaction, caller: ApiKey) -> bytes:
            return orjson.dumps(await observed("/v1/score", pending=coalescer(caller.name, txn)),
                                option=orjson.OPT_SERIALIZE_NUMPY)

        app.state.fast_path = {}
        inner = ScoreFastPath(app, path="/v1/score", model=Transaction, keyring=keyring, scope_name="score",
                              score=fast_score, counts=app.state.fast_path, observe=stage)
    # the body limit outermost, for every route; the fast path in front of FastAPI's own
    # middleware stack (errors, telemetry), which it does not need
    return Served(app, BodyLimit(inner, limit=cfg.max_body_bytes))  # type: ignore[return-value]


class Served:
    """The ASGI app uvicorn serves: ``asgi`` (the body limit, the fast path, then FastAPI),
    and otherwise the FastAPI app itself (``.state``, ``.openapi()``, ``.router``)."""

    def __init__(self, app: FastAPI, asgi: Any) -> None:
        self.fastapi, self.asgi = app, asgi

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.asgi(scope, receive, send)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.fastapi, name)


def factory() -> FastAPI:
    """For ``uvicorn --factory`` and multi-worker serving: settings from the environment."""
    return create_app()
