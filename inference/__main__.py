"""python -m inference [serve|scorer]: the scoring API (uvicorn, uvloop, httptools, on
STACK_API_PORT), or the stream scorer that scores live transactions into ``scores``."""

import argparse
import logging
import signal
import sys

from core.settings import StackSettings
from inference.settings import InferenceSettings


def main() -> int:
    p = argparse.ArgumentParser(prog="python -m inference", description=__doc__)
    p.add_argument("command", nargs="?", default="serve", choices=["serve", "scorer"])
    p.add_argument("--share", type=float, default=1.0, help="scorer: share of transactions to score (0..1]")
    p.add_argument("--topic", default="transactions", help="scorer: topic to read")
    args = p.parse_args()
    stack = StackSettings()
    try:
        cfg = InferenceSettings()
    except ValueError as exc:
        print(f"error: {str(exc).splitlines()[-1].strip()}", file=sys.stderr)
        return 1
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.command == "scorer":
        from inference.stream_scorer import StreamScorer

        try:
            scorer = StreamScorer(stack, cfg, topic=args.topic, share=args.share)
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        signal.signal(signal.SIGTERM, lambda *_: scorer.stop.set())
        scorer.run(metrics_port=stack.scorer_metrics_port)
        return 0
    import uvicorn

    uvicorn.run("inference.app:factory", factory=True, host=stack.host, port=stack.api_port, loop="uvloop",
                http="httptools", log_level="warning", access_log=False, workers=cfg.workers,
                limit_concurrency=cfg.max_concurrency)
    return 0


if __name__ == "__main__":
    sys.exit(main())
