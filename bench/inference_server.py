"""The inference app for the benchmark: ``--native PATH`` swaps the served ONNX session for the
native XGBoost model saved at PATH (same trees), so the baseline runs the same request path."""

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


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--native")
    p.add_argument("--workers", type=int, default=1)
    args = p.parse_args()
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
