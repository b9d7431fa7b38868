"""Our processes keep Prometheus values in memory even when Feast (or a parent process that
imported Feast) has set PROMETHEUS_MULTIPROC_DIR."""

from __future__ import annotations

import os
import subprocess
import sys

from core.settings import REPO_ROOT

PROBE = """
import prometheus_client.values as v
assert v.ValueClass is not v.MutexValue, "the probe needs the multi-process mode on"
from streaming.metrics import WorkerMetrics
m = WorkerMetrics()
m.events_in.labels("t").inc(3)
print(type(m.events_in.labels("t")._value).__name__, m.events_in.labels("t")._value.get())
"""


def test_worker_metrics_stay_in_memory_under_an_inherited_multiprocess_dir(tmp_path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["MutexValue", "3.0"]
    assert list(tmp_path.iterdir()) == []  # no mmap files
