"""The first ``make up`` of a stack with no history gives it one: a simulated past
(``STACK_SEED_HISTORY``, default two days, ending now) through the same Kafka topics and the
same stream worker as live traffic, so that ``python training/train.py`` right after trains a
meaningful model and ``python drift_check.py`` compares like with like.

- The past uses the live generators' world (``--world-seed``), users and rate: the cards the
  live generator goes on with are the cards whose windows the history filled.
- It runs before the live generators start, so no seeded event arrives after a live event of
  its card (which the stream would count as too late).
- Done once: ``<data_dir>/seed.json`` records it. A stack whose ``transactions`` topic already
  holds records is not seeded (its history is real); the record says so.
- An interrupted seed (Ctrl-C, a failure) is recorded as such and not redone over the part
  already sent (two overlapping pasts would make no sense): each later ``make up`` says so,
  and ``make clean`` starts over.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from confluent_kafka import Consumer, KafkaException, TopicPartition
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from core import kafka
from core.contracts import CLICKS, TRANSACTIONS
from core.durations import duration_ms
from core.settings import StackSettings
from stack.errors import StackError

Say = Callable[[str], None]
#: the stream worker's consumer group (streaming/settings.py: STREAMING_APP_ID's default, which
#: `make up` does not change)
WORKER_GROUP = "streamfeat-features"
WORLD_SEED = 42


def as_seeder(settings: StackSettings) -> StackSettings:
    """The settings of the seed's own Kafka user (core/kafka.py: ``seeder`` writes the event and
    feedback topics and may only look at the worker group's offsets), as compose runs it."""
    return settings.model_copy(update={"kafka_user": "seeder", "kafka_password": None})


def marker(settings: StackSettings) -> Path:
    return settings.data_dir / "seed.json"


def _offsets(settings: StackSettings, topics: tuple[str, ...], group: str, wait_s: float = 60.0) -> tuple[int, int]:
    """(records in the topics, records the group has committed) summed over every partition.
    Retries while the broker's group coordinator is not ready yet (right after start)."""
    deadline = time.monotonic() + wait_s
    c = Consumer(kafka.client_config(settings, {"group.id": group, "enable.auto.commit": False}))
    try:
        while True:
            try:
                meta = c.list_topics(timeout=10)
                tps = [TopicPartition(t, p) for t in topics
                       for p in (meta.topics[t].partitions if t in meta.topics else {})]
                high = sum(c.get_watermark_offsets(tp, timeout=10, cached=False)[1] for tp in tps)
                done = sum(max(0, tp.offset) for tp in c.committed(tps, timeout=10))
                return high, done
            except KafkaException as exc:
                if time.monotonic() > deadline:
                    raise StackError(f"seeding history: cannot read the stream worker's offsets ({exc})") from None
                time.sleep(1.0)
    finally:
        c.close()


def _generate(settings: StackSettings, kind: str, history: str, console: Console) -> dict[str, int]:
    from streaming.generators import cli as gen

    parser = argparse.ArgumentParser()
    gen.add_arguments(parser)
    argv = ["--kind", kind, "--history", history, "--sim-rate", str(settings.generator_rate),
            "--seed", str(WORLD_SEED), "--world-seed", str(WORLD_SEED)]
    if kind == "transactions":
        argv += ["--users", str(settings.generator_users)]
    out = gen.generate(parser.parse_args(argv), settings, console)
    if out.undelivered:
        raise StackError(f"seeding history: {out.undelivered} {kind} records were not delivered to Kafka")
    return out.per_topic


def _wait_consumed(settings: StackSettings, say: Say, console: Console, stall_s: float = 180.0) -> float:
    """Until the stream worker has committed every seeded transaction and click (its features
    are online and in the offline log), with a progress bar; error when it stops moving."""
    topics = (TRANSACTIONS, CLICKS)
    high, done = _offsets(settings, topics, WORKER_GROUP)
    t0 = last_move = time.monotonic()
    with Progress(TextColumn("[bold]stream worker"), BarColumn(),
                  TextColumn("{task.completed:,}/{task.total:,} events"), TimeElapsedColumn(), console=console,
                  disable=not console.is_terminal) as progress:
        task = progress.add_task("features", total=high, completed=done)
        next_line = t0 + 15
        while done < high:
            time.sleep(0.5)
            now_done = _offsets(settings, topics, WORKER_GROUP)[1]
            if now_done != done:
                done, last_move = now_done, time.monotonic()
            progress.update(task, completed=done)
            if not console.is_terminal and time.monotonic() >= next_line:
                next_line += 15
                say(f"  seed: the stream worker has {done:,} of {high:,} events")
            if time.monotonic() - last_move > stall_s:
                raise StackError(f"seeding history: the stream worker made no progress for {stall_s:.0f} s "
                                 f"({done:,} of {high:,} events); log: "
                                 f"{settings.logs_dir / 'stream-worker.log'}")
    return time.monotonic() - t0


def ensure_history(settings: StackSettings, say: Say, console: Console | None = None) -> dict | None:
    """Seed the history once (see the module's doc); returns what was recorded, or None when
    seeding is off or was done before."""
    history_ms = duration_ms(settings.seed_history)
    path = marker(settings)
    if history_ms == 0:
        return None
    if path.exists():
        done = json.loads(path.read_text())
        if done.get("status") == "started":
            say(f"  seed: the history seeding of {done['at']} did not finish, so the stack holds part of it "
                "('make clean' then 'make up' seeds it again)")
        return None
    console = console or Console(highlight=False)
    record: dict = {"at": datetime.now(UTC).isoformat(timespec="seconds"), "history": settings.seed_history}
    held, _ = _offsets(settings, (TRANSACTIONS,), WORKER_GROUP)
    path.parent.mkdir(parents=True, exist_ok=True)
    if held:
        record.update(status="skipped", reason=f"the transactions topic already held {held:,} records")
        say(f"  seed: not seeding history ({record['reason']})")
    else:
        path.write_text(json.dumps({**record, "status": "started"}) + "\n")
        say(f"  seed: simulating the last {settings.seed_history} ({settings.generator_rate:g} transactions/s, "
            f"{settings.generator_users:,} users, world {WORLD_SEED}) through Kafka and the stream worker")
        t0 = time.monotonic()
        sent = _generate(settings, "transactions", settings.seed_history, console)
        sent.update(_generate(settings, "clicks", settings.seed_history, console))
        produced_s = time.monotonic() - t0
        worker_s = _wait_consumed(settings, say, console)
        record.update({"status": "done", "records": sent, "produce_s": round(produced_s, 1),
                       "worker_catch_up_s": round(worker_s, 1), "seconds": round(time.monotonic() - t0, 1)})
        say(f"  seed: {sent.get(TRANSACTIONS, 0):,} transactions, {sent.get(CLICKS, 0):,} clicks and "
            f"{sent.get('fraud-feedback', 0):,} ground-truth records in {record['seconds']:.0f} s")
    path.write_text(json.dumps(record, indent=2) + "\n")
    return record


def main(argv: list[str] | None = None) -> int:
    """``python -m stack.seed``: what ``make up`` does between the stream worker and the rest,
    for docker compose (its ``seed`` job) or by hand."""
    import sys

    from pydantic import ValidationError

    from core.settings import settings_error

    parser = argparse.ArgumentParser(
        prog="python -m stack.seed",
        description="Give a stack with no history a simulated past, once: STACK_SEED_HISTORY (default 2d, "
                    "0 to skip) of transactions, clicks and ground truth at the live generators' rate "
                    "(STACK_GENERATOR_RATE) and users (STACK_GENERATOR_USERS), ending now, through Kafka; "
                    "returns once the stream worker (group streamfeat-features) has committed all of it. "
                    "Recorded in <STACK_DATA_DIR>/seed.json: a later run does nothing, and neither does a "
                    "run on a stack whose transactions topic already holds records.")
    parser.parse_args(argv)
    try:
        settings = StackSettings()
        ensure_history(settings, lambda msg: print(msg, flush=True))
    except ValidationError as exc:
        print(f"error: {settings_error(exc)}", file=sys.stderr)
        return 1
    except (StackError, KafkaException, PermissionError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted; seed.json records the seed as started", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
