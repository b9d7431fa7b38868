"""The drift monitor's Prometheus metrics (``/metrics`` on ``STACK_MONITOR_METRICS_PORT``):
what each watched model's last check found, its retrains, and the two stores whose filling up
nothing else watches (the online store's memory, the offline log's disk).

- ``monitor_drift_severity{model}``: the last check's overall drift, 0 none, 1 low, 2 medium,
  3 high (absent until the first check, which comes one interval after start);
- ``monitor_performance_severity{model}``: the same for performance on the ground truth;
- ``monitor_champion_age_seconds{model}``: since the served champion was registered;
- ``monitor_checks_total{model,result}``: checks that ran (ok) or failed (error);
- ``monitor_retrains_total{model,gate}``: retrains by outcome (passed, refused, error,
  interrupted); ``monitor_retrain_failures_in_a_row{model}`` refused or failed in a row;
- ``monitor_last_check_timestamp_seconds{model}``;
- ``online_store_used_memory_bytes`` and ``online_store_memory_limit_bytes`` (Redis's
  ``maxmemory``, or the machine's memory when it has none), read at each scrape;
- ``offline_log_disk_free_bytes`` and ``offline_log_disk_total_bytes`` of the offline log's
  file system, at each scrape.
"""

from __future__ import annotations

import shutil
import time
from typing import Any

from core.settings import StackSettings

SEVERITY = {"none": 0, "low": 1, "medium": 2, "high": 3}


class MonitorMetrics:
    def __init__(self, stack: StackSettings) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge

        from core import feast_store
        from core.prom import single_process

        single_process()
        self.stack = stack
        r = self.registry = CollectorRegistry()
        self.drift = Gauge("monitor_drift_severity", "last check's overall drift: 0 none, 1 low, 2 medium, 3 high",
                           ["model"], registry=r)
        self.performance = Gauge("monitor_performance_severity", "last check's performance drift on ground truth "
                                 "(0 none .. 3 high)", ["model"], registry=r)
        self.checks = Counter("monitor_checks", "checks by result (ok, error)", ["model", "result"], registry=r)
        self.retrains = Counter("monitor_retrains", "retrains by gate outcome", ["model", "gate"], registry=r)
        self.in_a_row = Gauge("monitor_retrain_failures_in_a_row", "retrains refused or failed in a row", ["model"],
                              registry=r)
        self.last_check = Gauge("monitor_last_check_timestamp_seconds", "when the last check ended", ["model"],
                                registry=r)
        self._created: dict[str, float] = {}
        self.age = Gauge("monitor_champion_age_seconds", "since the served champion was registered", ["model"],
                         registry=r)
        self._offline = feast_store.offline_dir(stack, "")
        Gauge("online_store_used_memory_bytes", "Redis used_memory", registry=r).set_function(
            lambda: self._redis("used_memory"))
        Gauge("online_store_memory_limit_bytes", "Redis maxmemory, or the machine's memory without one",
              registry=r).set_function(lambda: self._redis("maxmemory") or self._redis("total_system_memory"))
        Gauge("offline_log_disk_free_bytes", "free space on the offline log's file system", registry=r
              ).set_function(lambda: self._disk()[1])
        Gauge("offline_log_disk_total_bytes", "size of the offline log's file system", registry=r
              ).set_function(lambda: self._disk()[0])
        self._client: Any = None

    def _redis(self, field: str) -> float:
        """A field of Redis's INFO memory (NaN when Redis does not answer: no false value); of
        a Redis Cluster, the sum over its masters (where the keys are)."""
        try:
            if self._client is None:
                self._client = self.stack.redis_client()
            if self.stack.redis_cluster:
                return cluster_memory(self._client.info("memory", target_nodes=self._client.PRIMARIES), field)
            return float(self._client.info("memory").get(field, 0) or 0)
        except Exception:  # noqa: BLE001 - a scrape reports NaN, never fails
            self._client = None
            return float("nan")

    def _disk(self) -> tuple[float, float]:
        path = self._offline
        while not path.exists() and path != path.parent:  # (before the first write: its parent's disk)
            path = path.parent
        try:
            usage = shutil.disk_usage(path)
        except OSError:
            return float("nan"), float("nan")
        return float(usage.total), float(usage.free)

    def observe(self, model: str, rec: dict[str, Any], failures_in_a_row: int) -> None:
        """One check's record (Monitor.once)."""
        ev = rec.get("evidence") or {}
        if ev.get("drift_status") in SEVERITY:
            self.drift.labels(model).set(SEVERITY[ev["drift_status"]])
        if ev.get("performance_severity") in SEVERITY:
            self.performance.labels(model).set(SEVERITY[ev["performance_severity"]])
        if ev.get("champion_age_s") is not None:
            created = float(rec.get("at_epoch", time.time())) - float(ev["champion_age_s"])
            if model not in self._created:
                self.age.labels(model).set_function(lambda: time.time() - self._created[model])
            self._created[model] = created
        if rec.get("action") in ("retrained", "interrupted"):
            self.retrains.labels(model, rec.get("gate") or "interrupted").inc()
        self.in_a_row.labels(model).set(failures_in_a_row)
        self.checks.labels(model, "ok").inc()
        self.last_check.labels(model).set(time.time())

    def failed(self, model: str) -> None:
        self.checks.labels(model, "error").inc()
        self.last_check.labels(model).set(time.time())

    def serve(self, port: int, host: str) -> None:
        from prometheus_client import start_http_server

        start_http_server(port, host, registry=self.registry)


def cluster_memory(infos: dict[str, dict], field: str) -> float:
    """A Redis Cluster's INFO memory ``field`` over its masters (``infos``: node ``host:port``
    -> its INFO): the sum, but a machine's memory (``total_system_memory``) once per host, as
    masters sharing a machine share its memory."""
    if field == "total_system_memory":
        per_host = {node.rsplit(":", 1)[0]: float(i.get(field, 0) or 0) for node, i in infos.items()}
        return float(sum(per_host.values()))
    return float(sum(float(i.get(field, 0) or 0) for i in infos.values()))
