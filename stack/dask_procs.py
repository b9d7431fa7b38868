"""A ``dask scheduler`` with ``dask worker`` processes, as a deployment runs them (one thread
each, a memory limit each), for the tests and benchmarks that run batch work against a real
scheduler address (``--cluster tcp://...``)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from core.settings import REPO_ROOT
from stack import health


@contextmanager
def scheduler(workers: int = 1, memory_limit: str = "2GiB") -> Iterator[str]:
    """Its address for the block; the processes stopped after it (killed if they hang)."""
    port = health.free_port()
    address = f"tcp://127.0.0.1:{port}"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    dask = str(Path(sys.executable).parent / "dask")
    procs = [subprocess.Popen([dask, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    procs += [subprocess.Popen([dask, "worker", address, "--nthreads", "1", "--no-dashboard", "--memory-limit",
                                memory_limit], env=env, cwd=REPO_ROOT, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL) for _ in range(workers)]
    try:
        yield address
    finally:
        for proc in reversed(procs):
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
