"""Batch work past one process (issue 18), on real Kafka:

- ``scale_backfill``: the backfill of a pre-filled 6-partition transactions topic on a local
  Dask cluster of 1 and of 2 worker processes, against the in-process path in the same run
  (each in a fresh process; cluster start-up reported apart, not counted in the rate), with
  each process's peak RSS.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from rich.console import Console

from bench.common import bench_stack, write_result
from bench.stream import produce, transactions
from core.settings import REPO_ROOT

EVENTS = int(os.environ.get("BENCH_SCALE_EVENTS", "300000"))
USERS = int(os.environ.get("BENCH_SCALE_USERS", "80000"))
PARTITIONS = 6
MODES = ("in-process", "local:1", "local:2")


def _peak_rss_mb() -> float:
    """This process's peak RSS (VmHWM: ru_maxrss would carry the parent's over the exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def one(mode: str, bootstrap: str, topic: str, out: str) -> dict[str, Any]:
    """One backfill on ``mode`` (run in a fresh process by ``run``)."""
    from core import cluster
    from streaming import backfill
    from streaming.processor import ProcessorConfig

    t0 = time.perf_counter()
    with cluster.connect(mode) as place:
        started = time.perf_counter()
        tasks = backfill.plan("transactions", Path(out), ProcessorConfig(), conn=bootstrap, topic=topic)
        counts = backfill.run_tasks(place, tasks)
        seconds = time.perf_counter() - started
        workers = [] if place.client is None else sorted(place.client.run(_peak_rss_mb).values())
    return {"mode": mode, "seconds": seconds, "startup_s": started - t0, "events": sum(
        v for k, v in counts.items() if k != "corrections_skipped_at_cap"), "tasks": len(tasks),
        "driver_peak_rss_mb": round(_peak_rss_mb(), 1), "worker_peak_rss_mb": [round(w, 1) for w in workers]}


def run(console: Console) -> list[dict[str, Any]]:
    with bench_stack(("kafka",)) as stack, tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        from stack.topics import ensure_topics

        bootstrap = stack.settings.kafka_bootstrap
        topic = f"bench-scale-{uuid.uuid4().hex[:6]}"
        ensure_topics(bootstrap, [topic], PARTITIONS)
        console.print(f"producing {EVENTS:,} transactions over ~{int(USERS * 1.3):,} cards to {PARTITIONS} partitions")
        produce(bootstrap, topic, transactions(EVENTS, seed=7, users=USERS))
        results = {}
        for mode in MODES:
            proc = subprocess.run([sys.executable, "-m", "bench.scale", mode, bootstrap, topic,
                                   str(Path(tmp) / mode.replace(":", "-"))], cwd=REPO_ROOT, capture_output=True,
                                  text=True, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)}, timeout=3600)
            if proc.returncode != 0:
                raise RuntimeError(f"backfill on {mode} failed: {proc.stderr[-2000:]}")
            r = results[mode] = json.loads(proc.stdout.strip().splitlines()[-1])
            r["rate"] = r["events"] / r["seconds"]
            console.print(f"  {mode}: {r['rate']:,.0f} events/s ({r['events']:,} in {r['seconds']:.1f} s, start-up "
                          f"{r['startup_s']:.1f} s), peak RSS driver {r['driver_peak_rss_mb']} MB, workers "
                          f"{r['worker_peak_rss_mb']} MB")
        params = {"events": EVENTS, "cards": int(USERS * 1.3), "partitions": PARTITIONS, "runs": results,
                  "local_2_vs_local_1": round(results["local:2"]["rate"] / results["local:1"]["rate"], 3),
                  "cores": os.cpu_count(),
                  "measure": "events / seconds from the tasks' submission to their last result (cluster start-up "
                             "apart); Kafka runs on the same machine"}
        return [write_result("scale_backfill", "backfill events per second, local Dask cluster of 2 workers",
                             results["local:2"]["rate"], "events/s", True, "in-process backfill, same topic",
                             results["in-process"]["rate"], params)]


if __name__ == "__main__":
    print(json.dumps(one(*sys.argv[1:5])))
