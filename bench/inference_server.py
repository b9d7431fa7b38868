"""The inference app for the benchmark: ``--native PATH`` swaps the served ONNX session for the
native XGBoost model saved at PATH (same trees), so the baseline runs the same request path;
``--hello`` serves a bare ASGI app instead (reads the body, answers a fixed score-sized JSON)
on the same server and settings: the framework ceiling."""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import numpy as np
import uvicorn

from core.settings import StackSettings
from inference.app import create_app
from inference.settings import InferenceSettings


class _Native:
    """Looks like an ONNX session to ServedModel.score."""

    def __init__(self, path: str) -> None:
        import xgboost as xgb

        self.model = xgb.XGBClassifier()
        self.model.load_model(path)
        self.model.set_params(n_jobs=1)

    def run(self, _outputs: Any, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        return [self.model.predict_proba(next(iter(feeds.values())))[:, 1].astype(np.float32)]


#: about the size of a /v1/score answer
HELLO = (b'{"event_id":"hello","fraud_probability":0.01,"decision":"approve","model_version":"1",'
         b'"reasons":[],"tier":"low","latency_ms":0.1}')


async def hello(scope: Any, receive: Any, send: Any) -> None:
    """Bare ASGI: the request body read whole, a fixed JSON answer (``/ready`` too)."""
    if scope["type"] != "http":
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
        return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(HELLO)).encode())]})
    await send({"type": "http.response.body", "body": HELLO})


def bench_app() -> Any:
    """The served app, as ``main`` builds it (MLflow not polled): granian's factory target."""
    return create_app(StackSettings(), InferenceSettings(poll_interval_s=0))


def _granian(target: str, port: int, workers: int, factory: bool) -> None:
    from granian import Granian
    from granian.constants import Interfaces, Loops
    from granian.log import LogLevels

    Granian(target, address="127.0.0.1", port=port, interface=Interfaces.ASGI, workers=workers, loop=Loops.uvloop,
            factory=factory, log_level=LogLevels.warning, log_access=False,
            backpressure=InferenceSettings().max_concurrency).serve()


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--native")
    p.add_argument("--hello", action="store_true")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--server", choices=["uvicorn", "granian"], default="uvicorn")
    args = p.parse_args()
    if args.server == "granian":
        _granian("bench.inference_server:hello" if args.hello else "bench.inference_server:bench_app", args.port,
                 args.workers, factory=not args.hello)
        return
    if args.hello:
        uvicorn.run(hello, host="127.0.0.1", port=args.port, loop="uvloop", http="httptools", log_level="warning",
                    access_log=False, limit_concurrency=InferenceSettings().max_concurrency)
        return
    stack = StackSettings()
    app = create_app(stack, InferenceSettings(poll_interval_s=0))
    if args.native:
        inner = app.router.lifespan_context

        @contextlib.asynccontextmanager
        async def lifespan(a: Any) -> AsyncIterator[None]:
            async with inner(a):
                holder = a.state.holder
                holder.current = replace(holder.current, session=_Native(args.native))
                yield

        app.router.lifespan_context = lifespan
    if args.workers > 1:  # the factory path of `python -m inference` (ONNX only)
        uvicorn.run("inference.app:factory", factory=True, host="127.0.0.1", port=args.port, loop="uvloop",
                    http="httptools", log_level="warning", access_log=False, workers=args.workers,
                    limit_concurrency=InferenceSettings().max_concurrency)
        return
    uvicorn.run(app, host="127.0.0.1", port=args.port, loop="uvloop", http="httptools", log_level="warning",
                access_log=False, limit_concurrency=InferenceSettings().max_concurrency)


if __name__ == "__main__":
    main()
