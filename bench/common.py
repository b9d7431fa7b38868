"""The result format of ARCHITECTURE.md and the services a benchmark runs against."""

from __future__ import annotations

import contextlib
import os
import platform
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from core.settings import REPO_ROOT, StackSettings
from stack import health, lifecycle

RESULTS = REPO_ROOT / "bench" / "results"


def machine() -> dict[str, Any]:
    return {"platform": platform.platform(), "python": platform.python_version(),
            "cpus": os.cpu_count(), "processor": platform.processor() or platform.machine()}


def flag_top(p: Any, share: float) -> Any:
    """Flag the top ``share`` of scores (ties broken by order, so exactly that many): the same
    alert budget for every model a benchmark compares."""
    import numpy as np

    k = int(round(share * len(p)))
    flagged = np.zeros(len(p), bool)
    flagged[np.argsort(-np.asarray(p), kind="stable")[:k]] = True
    return flagged


def write_result(name: str, metric: str, value: float, unit: str, higher_is_better: bool,
                 baseline_name: str, baseline_value: float, params: dict[str, Any]) -> dict[str, Any]:
    """Write bench/results/<name>.json; ratio is value / baseline (>1 is better when
    higher_is_better, <1 is better otherwise)."""
    result = {
        "name": name, "metric": metric, "value": round(float(value), 3), "unit": unit,
        "higher_is_better": higher_is_better,
        "baseline": {"name": baseline_name, "value": round(float(baseline_value), 3)},
        "ratio": round(float(value / baseline_value), 3) if baseline_value else None,
        "params": params, "machine": machine(),
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    opts = orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY
    (RESULTS / f"{name}.json").write_bytes(orjson.dumps(result, option=opts))
    return result


def produce_all(producer: Any, topic: str, records: list[tuple[bytes, bytes]]) -> None:
    """Produce (key, value) pairs with a confluent Producer, waiting for queue space rather
    than failing, and flush; raise if anything was not delivered."""
    for key, value in records:
        while True:
            try:
                producer.produce(topic, key=key, value=value)
                break
            except BufferError:
                producer.poll(0.05)
    if producer.flush(120) != 0:
        raise RuntimeError(f"could not deliver every record to {topic}")


@dataclass(frozen=True)
class BenchStack:
    settings: StackSettings
    shared: bool  # True when the benchmark runs against the user's running `make up` stack


@contextlib.contextmanager
def bench_stack(need: tuple[str, ...] = ("redis", "kafka")) -> Iterator[BenchStack]:
    """The running `make up` stack when it is healthy (benchmarks then use their own topics
    and Redis db 14), else a temporary stack on free ports, removed afterwards."""
    default = StackSettings()
    healthy = (("kafka" not in need or health.kafka(default.kafka_bootstrap) is None)
               and ("redis" not in need or health.redis(default.redis_url) is None))
    if healthy:
        yield BenchStack(default.model_copy(update={"redis_db": 14}), shared=True)
        return
    with tempfile.TemporaryDirectory(prefix="streamfeat-bench-") as tmp:
        kafka, controller, redis, mlflow = health.free_ports(4)
        settings = StackSettings(kafka_port=kafka, kafka_controller_port=controller, redis_port=redis,
                                 mlflow_port=mlflow, data_dir=Path(tmp), topic_partitions=6)
        lifecycle.up(settings, say=lambda _m: None, only=need)
        try:
            yield BenchStack(settings, shared=False)
        finally:
            lifecycle.down(settings, say=lambda _m: None)
