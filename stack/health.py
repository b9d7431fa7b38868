"""Health probes: each answers None when the service is healthy, else a short reason."""

from __future__ import annotations

import random
import socket
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from core.settings import StackSettings


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        return sock.connect_ex((host, port)) == 0


def port_free(host: str, port: int) -> bool:
    """True when nothing listens on host:port and we could bind it."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_ports(n: int, host: str = "127.0.0.1") -> list[int]:
    """``n`` distinct free ports (``free_port`` may hand out one port twice while nothing has
    bound it yet)."""
    ports: list[int] = []
    while len(ports) < n:
        port = free_port(host)
        if port not in ports:
            ports.append(port)
    return ports


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def free_port(host: str = "127.0.0.1") -> int:
    """A free port below the kernel's ephemeral range: a port the kernel handed out with
    bind(0) can be taken by any client's outgoing connection before the server binds it
    (seen: Kafka failing to bind while other clients were busy)."""
    low, _ = _ephemeral_range()
    rng = random.Random()
    for _ in range(200):
        port = rng.randrange(max(1024, low - 12_000), low)
        if port_free(host, port):
            return port
    raise RuntimeError(f"no free port found below {low}")


def kafka(conn: str | StackSettings) -> str | None:
    """Healthy when the broker answers a metadata request (with the stack's credentials when
    SASL is on)."""
    from confluent_kafka.admin import AdminClient

    from core import kafka as kafka_conf

    addresses = [a.rpartition(":") for a in kafka_conf.bootstrap(conn).split(",")]
    if not any(port_open(host, int(port)) for host, _, port in addresses):
        return "port closed"
    try:
        md = AdminClient(kafka_conf.client_config(conn)).list_topics(timeout=3)
    except Exception as exc:  # noqa: BLE001 - any client error means "not healthy yet"
        return f"metadata request failed: {exc}"
    return None if md.brokers else "no broker in metadata"


def kafka_node(settings: StackSettings, node: int) -> str | None:
    """Healthy when node ``node`` of the cluster profile answers a metadata request itself and
    sees every node of the cluster as a broker."""
    from confluent_kafka.admin import AdminClient

    from core import kafka as kafka_conf

    host, port, _ = settings.kafka_node(node)
    if not port_open(host, port):
        return "port closed"
    try:
        md = AdminClient(kafka_conf.client_config(settings, {"bootstrap.servers": f"{host}:{port}"})).list_topics(
            timeout=3)
    except Exception as exc:  # noqa: BLE001 - any client error means "not healthy yet"
        return f"metadata request failed: {exc}"
    if len(md.brokers) < settings.kafka_nodes:
        return f"{len(md.brokers)} of {settings.kafka_nodes} brokers in its metadata"
    return None


def dask_workers(address: str, names: tuple[str, ...]) -> str | None:
    """Healthy when the Dask scheduler at ``address`` answers and has the named workers."""
    host, _, port = address.removeprefix("tcp://").rpartition(":")
    if not port_open(host, int(port)):
        return "port closed"
    from distributed import Client

    try:
        with Client(address, timeout=3) as client:
            have = {w.get("name") for w in client.scheduler_info(n_workers=-1).get("workers", {}).values()}
    except Exception as exc:  # noqa: BLE001 - any client error means "not healthy yet"
        return f"scheduler did not answer: {exc.__class__.__name__}"
    missing = [n for n in names if n not in have]
    return f"not registered with the scheduler: {', '.join(missing)}" if missing else None


def _pong(client: Any) -> str | None:
    try:
        ok = client.ping()
    except Exception as exc:  # noqa: BLE001
        return f"ping failed: {exc.__class__.__name__}"
    return None if ok else "no PONG"


def redis(url: str) -> str | None:
    """None when the Redis at ``url`` answers PING."""
    import redis as redis_lib

    return _pong(redis_lib.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=1))


def redis_node(host: str, port: int, password: str | None = None) -> str | None:
    """One Redis node answers PING (a cluster node too, before the cluster is formed)."""
    import redis as redis_lib

    return _pong(redis_lib.Redis(host=host, port=port, password=password, socket_timeout=2, socket_connect_timeout=1))


def http(url: str, token: str | None = None) -> str | None:
    """None when the URL answers 200 (with ``token``: as a bearer credential)."""
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(req, timeout=2) as resp:  # noqa: S310 - loopback URL
            return None if resp.status == 200 else f"HTTP {resp.status}"
    except (urllib.error.URLError, OSError) as exc:
        return f"{exc.__class__.__name__}: {getattr(exc, 'reason', exc)}"


def prometheus_samples(url: str) -> dict[str, float] | None:
    """Every sample at a Prometheus text endpoint, keyed as written (``name{label="v"}``; None
    when down)."""
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:  # noqa: S310 - loopback URL
            text = resp.read().decode()
    except (urllib.error.URLError, OSError):
        return None
    out: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        key, _, value = line.rpartition(" ")
        try:
            out[key] = float(value)
        except ValueError:
            continue
    return out


def prometheus_values(url: str) -> dict[str, float] | None:
    """Sum of every sample of each metric at a Prometheus text endpoint (None when down)."""
    samples = prometheus_samples(url)
    if samples is None:
        return None
    out: dict[str, float] = {}
    for key, value in samples.items():
        name = key.split("{", 1)[0]
        out[name] = out.get(name, 0.0) + value
    return out
