"""Where batch work runs (``--cluster``, default ``STACK_CLUSTER``): the same task graph on
three places.

- ``in-process``: Dask's synchronous scheduler in this process (today's single-process
  path, the default for data that fits one machine);
- ``local:N``: a ``distributed.LocalCluster`` of N worker processes on this machine, one
  thread each, started for the command and stopped after it (``local:N:4GiB`` sets each
  worker's memory limit; default: the machine's memory shared out);
- ``tcp://host:8786`` (or ``tls://``): a running Dask scheduler. Its workers must be able to
  import this project (``pip install .`` or ``PYTHONPATH``) and reach Kafka and the output
  path (a shared file system or an object store).

Code hands its independent tasks to ``Place.results`` and so does not care which place it
is.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

IN_PROCESS = "in-process"
_LOCAL = re.compile(r"local:(\d+)(?::(\d+(?:\.\d+)?\s*[KMGT]i?B))?", re.IGNORECASE)
_REMOTE = re.compile(r"(tcp|tls)://[^\s:/]+:\d+")


@dataclass(frozen=True)
class Cluster:
    """A parsed ``--cluster``: ``kind`` is in-process, local or remote."""

    kind: str
    workers: int = 1
    memory_limit: str | None = None
    address: str | None = None

    def __str__(self) -> str:
        if self.kind == "local":
            return f"local:{self.workers}" + (f":{self.memory_limit}" if self.memory_limit else "")
        return self.address or IN_PROCESS


def parse(spec: str | None) -> Cluster:
    """``in-process``, ``local:N[:MEM]`` or ``tcp://host:port``; ValueError with the forms
    otherwise."""
    text = (spec or IN_PROCESS).strip()
    if text.lower() in (IN_PROCESS, "none", ""):
        return Cluster("in-process")
    m = _LOCAL.fullmatch(text)
    if m:
        n = int(m.group(1))
        if not 1 <= n <= 256:
            raise ValueError(f"--cluster {text}: the number of local workers must be 1 to 256")
        return Cluster("local", n, m.group(2).replace(" ", "") if m.group(2) else None)
    if _REMOTE.fullmatch(text):
        return Cluster("remote", address=text)
    raise ValueError(f"--cluster {text!r} is not one of: in-process, local:N (e.g. local:2, local:2:4GiB), "
                     "tcp://host:port (a Dask scheduler)")


class Place:
    """Where ``compute`` runs the graph: no client (in-process) or a distributed client."""

    def __init__(self, cluster: Cluster, client: Any = None) -> None:
        self.cluster, self.client = cluster, client

    @property
    def workers(self) -> int:
        """How many worker processes run tasks side by side (1 in-process)."""
        if self.client is None:
            return 1
        return max(1, len(self.client.scheduler_info(n_workers=-1).get("workers", {})))

    def results(self, fn: Any, items: list[Any], progress: bool = False, desc: str = "tasks") -> Iterator[Any]:
        """``fn(item)`` for each item as one task each, yielded as they finish (in-process: in
        order, one after the other), with a bar counting finished tasks. A task that fails
        raises its error here, and the tasks not yet finished are cancelled."""
        from tqdm import tqdm

        bar = tqdm(total=len(items), desc=desc, unit="task", disable=not progress)
        try:
            if self.client is None:
                for item in items:
                    yield fn(item)
                    bar.update()
                return
            from distributed import as_completed

            futures = self.client.map(fn, items, pure=False)
            try:
                for future in as_completed(futures):
                    yield future.result()
                    bar.update()
            finally:
                self.client.cancel(futures)
        finally:
            bar.close()


@contextmanager
def connect(spec: str | Cluster | None, timeout_s: float = 20.0) -> Iterator[Place]:
    """The place to run on, for the block: a local cluster is started and stopped with it, a
    remote scheduler connected to (ValueError when it does not answer within ``timeout_s``)."""
    cluster = spec if isinstance(spec, Cluster) else parse(spec)
    if cluster.kind == "in-process":
        yield Place(cluster)
        return
    import logging

    from distributed import Client, LocalCluster

    for name in ("distributed", "distributed.nanny", "distributed.scheduler", "distributed.worker"):
        logging.getLogger(name).setLevel(logging.WARNING)
    # (a shuffle's start and end are logged as warnings: routine here, not a problem)
    logging.getLogger("distributed.shuffle").setLevel(logging.ERROR)
    if cluster.kind == "local":
        with LocalCluster(n_workers=cluster.workers, threads_per_worker=1, processes=True,
                          memory_limit=cluster.memory_limit or "auto", dashboard_address=":0",
                          silence_logs=logging.WARNING) as local, Client(local) as client:
            yield Place(cluster, client)
        return
    try:
        client = Client(cluster.address, timeout=timeout_s)
    except (OSError, TimeoutError) as exc:
        raise ValueError(f"no Dask scheduler answers at {cluster.address} ({type(exc).__name__})") from None
    try:
        if not client.scheduler_info(n_workers=-1).get("workers"):
            try:
                client.wait_for_workers(1, timeout=timeout_s)
            except TimeoutError:
                raise ValueError(f"the Dask scheduler at {cluster.address} has no workers") from None
        yield Place(cluster, client)
    finally:
        client.close()
