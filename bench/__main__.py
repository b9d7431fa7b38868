"""``python -m bench [NAME ...]`` (``make bench`` / ``make bench NAME=x``): run benchmarks."""

from __future__ import annotations

import argparse
import importlib
import sys

from rich.console import Console

BENCHMARKS = {
    "kafka_throughput": "bench.kafka_throughput",
    "feast_online": "bench.feast_online",
    "stream": "bench.stream",
    "training": "bench.training",
    "inference": "bench.inference",
    "drift": "bench.drift",
    "feedback": "bench.feedback",
    "loop": "bench.loop",
    "hotkey": "bench.hotkey",
    "soak": "bench.soak",
    "estimate": "bench.estimate",
    "scale": "bench.scale",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=(
        "Run benchmarks; each writes bench/results/<name>.json with a baseline measured in "
        "the same run. Uses the running `make up` stack when healthy, else starts its own."))
    parser.add_argument("names", nargs="*", help=f"benchmarks to run (default all): {', '.join(BENCHMARKS)}")
    args = parser.parse_args(argv)
    console = Console(highlight=False, soft_wrap=True)
    unknown = [n for n in args.names if n not in BENCHMARKS]
    if unknown:
        console.print(f"[red]error:[/] unknown benchmark {', '.join(unknown)}; "
                      f"known: {', '.join(BENCHMARKS)}")
        return 1
    for name in args.names or list(BENCHMARKS):
        console.rule(name)
        for result in importlib.import_module(BENCHMARKS[name]).run(console):
            console.print(f"[bold]{result['name']}[/]: {result['value']:,} {result['unit']} "
                          f"vs {result['baseline']['name']} {result['baseline']['value']:,} "
                          f"(ratio {result['ratio']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
