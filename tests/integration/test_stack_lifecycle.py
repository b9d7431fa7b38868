"""`make up` semantics on a stack of its own: idempotent, self-healing, no data lost,
clear errors, and `make down` leaves no process behind."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from confluent_kafka import Consumer, Producer
from pydantic import SecretStr

from core.settings import REPO_ROOT, StackSettings
from stack import health, lifecycle
from stack.errors import StackError
from stack.services import stack_env
from stack.supervisor import Supervisor, orphans
from tests.conftest import local_settings

ONLY = ("redis", "kafka")


@pytest.fixture(scope="module")
def own_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackSettings]:
    settings = local_settings(tmp_path_factory.mktemp("own-stack"))
    lifecycle.up(settings, say=lambda _m: None, only=ONLY)
    yield settings
    lifecycle.down(settings, say=lambda _m: None)


def _pid(settings: StackSettings, name: str) -> int:
    return int(Supervisor(settings).processes()[name]["pid"])


def _wait_aof_has(settings: StackSettings, needle: bytes, timeout_s: float = 10) -> None:
    """appendfsync everysec: wait until the write is on disk, not a fixed sleep."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if any(needle in p.read_bytes() for p in (settings.data_dir / "redis").rglob("*.aof")):
            return
        time.sleep(0.05)
    raise AssertionError("write never reached the AOF")


def _stack_env(settings: StackSettings) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO_ROOT), **stack_env(settings)}


def test_second_up_reports_running_services(own_stack: StackSettings) -> None:
    said: list[str] = []
    lifecycle.up(own_stack, say=said.append, only=ONLY)
    assert any("redis: already running" in s for s in said)
    assert any("kafka: already running" in s for s in said)


def test_status_cli_shows_each_service(own_stack: StackSettings) -> None:
    out = subprocess.run([sys.executable, "-m", "stack", "status"], capture_output=True, text=True,
                         env=_stack_env(own_stack), cwd=REPO_ROOT, timeout=60)
    assert out.returncode == 0, out.stderr
    for name, port in (("redis", own_stack.redis_port), ("kafka", own_stack.kafka_port)):
        line = next(ln for ln in out.stdout.splitlines() if f" {name} " in ln)
        assert "RUNNING" in line and str(port) in line and " ok " in line


def _restarted_by_supervisord(settings: StackSettings, name: str, old: int, healthy: Callable[[], bool]) -> None:
    """Wait (no `make up`) for supervisord's autorestart to bring the process back healthy."""
    deadline = time.monotonic() + 120
    while _pid(settings, name) in (0, old, None) or not healthy():
        assert time.monotonic() < deadline, f"supervisord did not restart {name}"
        time.sleep(0.2)


def _healed_by_up(settings: StackSettings, name: str) -> None:
    """A service stopped for good (supervisord does not restart a STOPPED process) is
    started again by `make up` alone."""
    sup = Supervisor(settings)
    sup.stop_process(name)
    assert sup.processes()[name]["statename"] == "STOPPED"
    time.sleep(1)
    assert sup.processes()[name]["statename"] == "STOPPED"  # nothing else brings it back
    said: list[str] = []
    lifecycle.up(settings, say=said.append, only=ONLY)
    assert sup.processes()[name]["statename"] == "RUNNING", said


def test_killed_redis_comes_back_with_its_data(own_stack: StackSettings) -> None:
    client = redis.Redis(host=own_stack.host, port=own_stack.redis_port)
    client.set("survivor-key", "still-here")
    _wait_aof_has(own_stack, b"survivor-key")
    old = _pid(own_stack, "redis")
    os.kill(old, signal.SIGKILL)
    _restarted_by_supervisord(own_stack, "redis", old, lambda: health.redis(own_stack.redis_url) is None)
    assert client.get("survivor-key") == b"still-here"  # from its AOF
    _healed_by_up(own_stack, "redis")
    assert client.get("survivor-key") == b"still-here"


def test_killed_kafka_comes_back_with_its_data(own_stack: StackSettings, ) -> None:
    from stack.topics import ensure_topics

    ensure_topics(own_stack.kafka_bootstrap, ["survivors"], partitions=1)
    producer = Producer({"bootstrap.servers": own_stack.kafka_bootstrap, "acks": "all"})
    for i in range(100):
        producer.produce("survivors", value=str(i).encode())
    assert producer.flush(30) == 0
    old = _pid(own_stack, "kafka")
    os.kill(old, signal.SIGKILL)
    _restarted_by_supervisord(own_stack, "kafka", old, lambda: health.kafka(own_stack) is None)
    _healed_by_up(own_stack, "kafka")

    consumer = Consumer({"bootstrap.servers": own_stack.kafka_bootstrap, "group.id": "survivor-check",
                         "auto.offset.reset": "earliest"})
    consumer.subscribe(["survivors"])
    got: list[bytes] = []
    deadline = time.monotonic() + 60
    while len(got) < 100 and time.monotonic() < deadline:
        got += [m.value() for m in consumer.consume(100, timeout=0.5) if m.error() is None]
    consumer.close()
    assert sorted(int(v) for v in got) == list(range(100))


def test_killed_supervisor_leftovers_are_replaced(own_stack: StackSettings) -> None:
    sup = Supervisor(own_stack)
    os.kill(sup.pid(), signal.SIGKILL)  # children keep running without their supervisor
    assert orphans(own_stack)
    said: list[str] = []
    lifecycle.up(own_stack, say=said.append, only=ONLY)
    assert any("leftover" in s for s in said)
    assert sup.running()
    assert redis.Redis(host=own_stack.host, port=own_stack.redis_port).get("survivor-key") == b"still-here"


def test_port_in_use_is_one_clear_error(tmp_path: Path) -> None:
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        port = blocker.getsockname()[1]
        settings = local_settings(tmp_path).model_copy(update={"redis_port": port})
        with pytest.raises(StackError, match=rf"port {port} \(redis\).*STACK_REDIS_PORT"):
            lifecycle.up(settings, say=lambda _m: None, only=ONLY)
        env = {**_stack_env(settings), "STACK_REDIS_PORT": str(port)}
        out = subprocess.run([sys.executable, "-m", "stack", "up"], capture_output=True, text=True,
                             env=env, cwd=REPO_ROOT, timeout=120)
    assert out.returncode == 1
    assert out.stdout.strip().startswith("make up") and "error: port" in out.stdout
    assert "Traceback" not in out.stdout + out.stderr
    assert not Supervisor(settings).running()


def test_down_leaves_no_process(tmp_path_factory: pytest.TempPathFactory) -> None:
    settings = local_settings(tmp_path_factory.mktemp("down-stack"))
    lifecycle.up(settings, say=lambda _m: None, only=("redis",))
    assert orphans(settings)  # its processes name its data dir
    lifecycle.down(settings, say=lambda _m: None)
    assert not Supervisor(settings).running()
    assert orphans(settings) == []


@pytest.mark.security
def test_redis_asks_for_the_password_a_setting_gives(tmp_path_factory: pytest.TempPathFactory) -> None:
    """STACK_REDIS_PASSWORD: Redis refuses clients without it; the Feast store (the stream's
    and the API's path) works with it."""
    from core import feast_store

    settings = local_settings(tmp_path_factory.mktemp("redis-pw")).model_copy(
        update={"redis_password": SecretStr("s3cret-for-tests")})
    lifecycle.up(settings, say=lambda _m: None, only=("redis",))
    try:
        anonymous = redis.Redis(host=settings.host, port=settings.redis_port)
        with pytest.raises(redis.AuthenticationError):
            anonymous.ping()
        assert redis.Redis.from_url(settings.redis_url).ping()
        repo = feast_store.isolated_copy(settings, tmp_path_factory.mktemp("redis-pw-repo"))
        store = feast_store.open_store(repo)
        from streaming.read import CardFeatureReader

        assert CardFeatureReader(store).states(["nobody"])[0][1] is None  # a read through Feast, authenticated
        assert (settings.conf_dir / "redis.conf").stat().st_mode & 0o077 == 0
    finally:
        lifecycle.down(settings, say=lambda _m: None)
