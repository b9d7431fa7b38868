"""Prometheus metrics in this project's processes are per process, each in its own registry.

Importing Feast (``feast.metrics``, pulled in by opening a store) sets
``PROMETHEUS_MULTIPROC_DIR`` in the environment, and child processes inherit it: a process
that imports prometheus_client with it set gets the multi-process value class, where every
``inc()`` takes a lock, checks the pid and writes to an mmap file. Every service ``make up``
started (and every worker a benchmark or test started) ran that way; in the stream worker it
took about 9 % of the CPU. ``single_process()`` restores the in-memory values for the metrics
created after it, whatever the environment says (none of our registries aggregates across
processes: each process serves its own ``/metrics``)."""

from __future__ import annotations


def single_process() -> None:
    """Metrics created from now on keep their values in memory."""
    from prometheus_client import values

    values.ValueClass = values.MutexValue
