"""Batch work past one process (issue 18), on real Kafka:

- ``scale_backfill``: the backfill of a pre-filled 6-partition transactions topic on a local
  Dask cluster of 1 and of 2 worker processes, against the in-process path in the same run
  (each in a fresh process; cluster start-up reported apart, not counted in the rate), with
  each process's peak RSS.
- ``scale_training``: ``train.py`` on an offline log of ``BENCH_SCALE_TRAIN_ROWS``
  transactions (default 1M over about six days), once in-process (the baseline: time per
  row, test AUC, peak RSS) and once on a Dask scheduler with two workers whose memory limit
  (``BENCH_SCALE_WORKER_MEMORY``, default 1GiB) is below what the in-process path needs for
  the same rows; each worker's peak RSS is read from the worker itself.
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
TRAIN_ROWS = int(os.environ.get("BENCH_SCALE_TRAIN_ROWS", "1000000"))
WORKER_MEMORY = os.environ.get("BENCH_SCALE_WORKER_MEMORY", "1GiB")
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


def train_one(args: list[str]) -> dict[str, Any]:
    """``train.py`` with ``args`` in this process (run fresh by ``run_training``): its exit
    code, wall time, test AUC and this process's peak RSS."""
    import contextlib
    import io
    import re

    from training.cli import run as cli

    out = io.StringIO()
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(out):
        code = cli(["train", *args])
    wall = time.perf_counter() - t0
    text = out.getvalue()
    auc = re.search(r"test AUC (\d\.\d+)", text)
    rows = re.search(r"labels: .*?: \d+ positive of ([\d,]+) training rows", text)
    return {"code": code, "seconds": wall, "auc": float(auc.group(1)) if auc else None,
            "train_rows": int(rows.group(1).replace(",", "")) if rows else None,
            "peak_rss_mb": round(_peak_rss_mb(), 1), "tail": text[-1500:]}


def run_training(console: Console) -> dict[str, Any]:
    from distributed import Client

    from bench.training import _prepare
    from core import feast_store
    from stack import dask_procs
    from stack.services import stack_env

    with bench_stack(need=("redis",)) as stack, tempfile.TemporaryDirectory(prefix="bench-scale-train-") as tmp:
        root = Path(tmp)
        settings = feast_store.isolated_copy(stack.settings, root)
        t0 = time.perf_counter()
        _prepare(settings, TRAIN_ROWS, console, events_per_s=2.0)
        console.print(f"  offline log of {TRAIN_ROWS:,} transactions ready in {time.perf_counter() - t0:.0f} s")
        env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), **stack_env(settings),
               "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}"}
        common = ["--model-type", "xgboost", "--labels", "rules", "--no-ground-truth", "--cv-folds", "0", "--force",
                  "--registered-name", "bench-scale"]
        runs: dict[str, Any] = {}

        def train(mode: str, extra: list[str]) -> dict[str, Any]:
            proc = subprocess.run([sys.executable, "-m", "bench.scale", "train", *common, "--output-dir",
                                   str(root / mode), *extra], cwd=REPO_ROOT, env=env, capture_output=True,
                                  text=True, timeout=7200)
            if proc.returncode != 0:
                raise RuntimeError(f"training {mode} failed: {proc.stderr[-2000:]}")
            r = json.loads(proc.stdout.strip().splitlines()[-1])
            if r["code"] != 0:
                raise RuntimeError(f"training {mode} exited {r['code']}: {r['tail']}")
            return r

        runs["in-process"] = train("in-process", [])
        with dask_procs.scheduler(2, WORKER_MEMORY) as address:
            r = train("dask", ["--cluster", address])
            with Client(address, timeout=30) as client:
                r["worker_peak_rss_mb"] = sorted(round(v, 1) for v in client.run(_peak_rss_mb).values())
            runs["dask-2-workers"] = r
        for mode, r in runs.items():
            r["us_per_row"] = r["seconds"] / TRAIN_ROWS * 1e6
            console.print(f"  {mode}: {r['seconds']:.1f} s ({r['us_per_row']:.1f} us/row), test AUC {r['auc']}, "
                          f"peak RSS {r['peak_rss_mb']} MB" + (f", workers {r['worker_peak_rss_mb']} MB"
                                                                if "worker_peak_rss_mb" in r else ""))
            r.pop("tail", None)
        here, there = runs["in-process"], runs["dask-2-workers"]
        params = {"transactions": TRAIN_ROWS, "worker_memory_limit": WORKER_MEMORY, "workers": 2, "runs": runs,
                  "auc_difference": round(abs(there["auc"] - here["auc"]), 4),
                  "fits_one_worker": here["peak_rss_mb"] < _bytes(WORKER_MEMORY) / 2**20,
                  "cores": os.cpu_count(), "model": "xgboost, rule labels, no CV, same time split",
                  "goal": "Dask completes within the workers' limit; test AUC within 0.002 of in-process"}
        return write_result("scale_training", "train.py wall time per row on 2 Dask workers", there["us_per_row"],
                            "us/row", False, "train.py in-process on the same rows", here["us_per_row"], params)


def _bytes(text: str) -> float:
    from dask.utils import parse_bytes

    return float(parse_bytes(text))


def run(console: Console) -> list[dict[str, Any]]:
    return [*run_backfill(console), run_training(console)]


def run_backfill(console: Console) -> list[dict[str, Any]]:
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
    if sys.argv[1] == "train":
        print(json.dumps(train_one(sys.argv[2:])))
    else:
        print(json.dumps(one(*sys.argv[1:5])))
