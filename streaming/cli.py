"""``python -m streaming {worker,generate,features}``: the stream stage's commands.

Exit codes: 0 success, 1 a failure explained in one line, 2 bad usage.
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from datetime import datetime

import orjson
from rich.console import Console

from core.settings import StackSettings
from streaming.generators import cli as gen_cli
from streaming.settings import StreamingSettings


def parse_time(text: str) -> int:
    """Epoch ms from an integer or an ISO-8601 time (UTC when no zone is given)."""
    if text.isdigit():
        return int(text)
    when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if when.tzinfo is None:
        from datetime import UTC

        when = when.replace(tzinfo=UTC)
    return int(when.timestamp() * 1000)


def cmd_worker(args: argparse.Namespace, stack: StackSettings, console: Console) -> int:
    cfg = StreamingSettings()
    # The worker allocates a few dicts and lists per event, nearly all freed by reference
    # counting; the default collector (a young pass every 700 allocations, which also walks
    # every tracked object in its generation) took about a fifth of the per-event time here.
    gc.set_threshold(50_000, 20, 100)
    if cfg.engine == "quix":
        from streaming.quix_worker import QuixFeatureWorker

        QuixFeatureWorker(stack, cfg).run()
        return 0
    from streaming.worker import FeatureWorker

    FeatureWorker(stack, cfg).run()
    return 0


def cmd_features(args: argparse.Namespace, stack: StackSettings, console: Console) -> int:
    from core import feast_store
    from streaming.read import CardFeatureReader, UserFeatureReader

    at = parse_time(args.at) if args.at else None
    reader = CardFeatureReader if args.entity == "card" else UserFeatureReader
    read, = reader(feast_store.open_store(stack)).read([args.entity_id], at)
    out = {f"{args.entity}_id": read.card_id, "found": read.found, "at": at, "last_event_time": read.last_event_time,
           "features": read.features}
    sys.stdout.write(orjson.dumps(out, option=orjson.OPT_INDENT_2).decode() + "\n")
    return 0


def cmd_backfill(args: argparse.Namespace, stack: StackSettings, console: Console) -> int:
    from pathlib import Path

    from core import cluster, feast_store
    from streaming import backfill
    from streaming.processor import ProcessorConfig

    cfg = StreamingSettings()
    cluster_spec = cluster.parse(args.cluster or stack.cluster)
    proc_cfg = ProcessorConfig(cfg.allowed_lateness_ms, cfg.max_events_per_card, cfg.max_future_skew_ms)
    from core import storage

    out_dir = storage.root(args.output, stack.s3_endpoint or None) if args.output else \
        feast_store.offline_root(stack)
    started = time.monotonic()
    with cluster.connect(cluster_spec) as place:
        if args.parquet:
            # (a bucket per worker and a half: the last ones balance the others' differences)
            buckets = 1 if place.client is None else max(2, place.workers * 3 // 2)
            tasks = backfill.plan(args.kind, out_dir, proc_cfg, parquet=Path(args.parquet).resolve(), buckets=buckets)
        else:
            default = cfg.transactions_topic if args.kind == "transactions" else cfg.clicks_topic
            tasks = backfill.plan(args.kind, out_dir, proc_cfg, conn=stack, topic=args.topic or default)
        counts = backfill.run_tasks(place, tasks, progress=console.is_terminal)
    n = sum(v for k, v in counts.items() if k != "corrections_skipped_at_cap")
    console.print(f"backfilled {n:,} events into {out_dir} in {time.monotonic() - started:.1f} s "
                  f"({len(tasks)} task(s), {cluster_spec}): {counts}")
    return 0


def cmd_compact(args: argparse.Namespace, stack: StackSettings, console: Console) -> int:
    from core import feast_store, storage
    from streaming import compact

    root = storage.root(args.root) if args.root else feast_store.offline_root(stack)
    if not root.exists():
        raise ValueError(f"no offline log at {root}")
    for r in compact.compact(root, args.dataset):
        console.print(f"{r.dataset}: {r.folders} day folders, {r.files_before:,} files -> {r.files_after:,}, "
                      f"{r.rows_before:,} rows -> {r.rows_after:,} in the compacted folders")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m streaming", description=(
        "The stream stage: synthetic event generators, the feature worker (Faust or Quix Streams), and the read "
        "function that evaluates a card's window features at any time."))
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("worker", help="run a feature worker (join the consumer group); STREAMING_ENGINE=faust|quix "
                   "picks the engine")
    gen = sub.add_parser("generate", help="produce synthetic transactions and delayed ground truth")
    gen_cli.add_arguments(gen)
    feat = sub.add_parser("features", help="print an entity's window features as JSON")
    feat.add_argument("entity", choices=["card", "user"])
    feat.add_argument("entity_id", help="a card_id or user_id")
    feat.add_argument("--at", help="evaluate at this time (epoch ms or ISO-8601; default now)")
    back = sub.add_parser("backfill", help="recompute the offline feature log from a raw event log")
    back.add_argument("--kind", choices=["transactions", "clicks"], default="transactions")
    src = back.add_mutually_exclusive_group()
    src.add_argument("--topic", help="a Kafka topic, read from offset 0 (default: the transactions topic)")
    src.add_argument("--parquet", help="a parquet file or folder of events (offline 'transactions' or 'clicks')")
    back.add_argument("--output", help="offline root to append to: a folder or s3://bucket/prefix (default "
                      "STACK_OFFLINE_URL, else the feature repo's offline log)")
    back.add_argument("--cluster", help="where it runs: in-process, local:N (a local Dask cluster of N worker "
                      "processes, e.g. local:2), or tcp://host:port (a Dask scheduler whose workers can import this "
                      "project and reach Kafka and --output); default STACK_CLUSTER, else in-process. Each Kafka "
                      "partition, or bucket of the parquet log's entities, is one task")
    comp = sub.add_parser("compact", help="compact the offline log: one file per day folder, duplicates dropped "
                                          "as readers drop them (safe while the worker runs)")
    comp.add_argument("--dataset", action="append", help="only this dataset (repeatable; default all)")
    comp.add_argument("--root", help="offline root: a folder or s3://bucket/prefix (default STACK_OFFLINE_URL, "
                      "else the feature repo's offline log)")
    args = parser.parse_args(argv)
    console = Console(stderr=True, highlight=False, soft_wrap=True)
    handlers = {"worker": cmd_worker, "generate": gen_cli.run, "features": cmd_features,
                "backfill": cmd_backfill, "compact": cmd_compact}
    try:
        return handlers[args.command](args, StackSettings(), console)
    except ValueError as exc:
        console.print(f"[red]error:[/] {exc}")
        return 1
    except KeyboardInterrupt:
        return 130
