"""Bring the stack up (idempotently), report its status, take it down.

Used by ``python -m stack`` (``make up/down/status``) and by the test fixtures, so tests
exercise the very start-up path users run.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path

from core.settings import StackSettings
from stack import health, seed
from stack.errors import StackError
from stack.init import initialise
from stack.services import Service, all_services
from stack.supervisor import GAVE_UP, Supervisor, kill_orphans

Say = Callable[[str], None]


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    ports: str
    state: str
    pid: int | None
    uptime_s: float | None
    health: str  # "ok" or the probe's reason
    detail: str = ""


def _log_tail(settings: StackSettings, name: str, lines: int = 8) -> str:
    log = settings.logs_dir / f"{name}.log"
    if not log.exists():
        return ""
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


def _foreign_ports(services: list[Service], settings: StackSettings) -> list[str]:
    return [f"port {port} ({svc.name}) is already in use by another process; free it or set {env}"
            for svc in services for port, env in svc.ports if not health.port_free(settings.host, port)]


def wait_healthy(settings: StackSettings, services: list[Service], sup: Supervisor,
                 say: Say) -> None:
    """Poll every probe until all pass; fail fast on a service supervisord gave up on."""
    pending = {svc.name: svc for svc in services}
    reasons: dict[str, str] = {}
    deadline = time.monotonic() + settings.health_timeout_s
    while pending:
        procs = sup.processes()
        for name, svc in list(pending.items()):
            state = procs.get(name, {}).get("statename", "MISSING")
            if state == GAVE_UP:
                raise StackError(f"{name} failed to start (supervisord gave up after 5 tries); log: "
                                 f"{settings.logs_dir / (name + '.log')}\n{_log_tail(settings, name)}")
            # Healthy means the probe passes *and* supervisord counts the process as
            # started (past startsecs), so a second `up` finds it RUNNING, not STARTING.
            reason = svc.probe() if state == "RUNNING" else f"supervisord state {state}"
            if reason is None:
                say(f"  {name}: healthy")
                del pending[name]
            else:
                reasons[name] = reason
        if pending and time.monotonic() > deadline:
            name = next(iter(pending))
            raise StackError(
                f"{name} did not become healthy within {settings.health_timeout_s:.0f} s "
                f"({reasons.get(name)}); log: {settings.logs_dir / (name + '.log')}\n"
                f"{_log_tail(settings, name)}")
        if pending:
            time.sleep(0.25)


def _ensure_started(settings: StackSettings, sup: Supervisor, services: list[Service],
                    autostarted: set[str], say: Say) -> None:
    procs = sup.processes()
    for svc in services:
        state = procs.get(svc.name, {}).get("statename")
        if state == "RUNNING":
            say(f"  {svc.name}: already running (pid {procs[svc.name]['pid']})")
        elif state in ("STARTING", "BACKOFF") or svc.name in autostarted:
            say(f"  {svc.name}: starting (supervisord)")
        else:
            problems = _foreign_ports([svc], settings)
            if problems:
                raise StackError(problems[0])
            say(f"  {svc.name}: was {(state or 'not configured').lower()}, starting")
            sup.start_process(svc.name)


def up(settings: StackSettings, say: Say = print, only: Collection[str] | None = None) -> None:
    """Start what is not running, wait for health, create topics, apply the Feast repo, then
    start the pipeline's own services (stream worker, generator) and wait for them too.

    ``only`` limits the stack to some services (the test fixtures use it when another
    part comes from the environment); topics need kafka, the Feast apply needs redis.
    """
    services = all_services(settings, only)
    for svc in services:
        if svc.prepare is not None:
            svc.prepare()
    names = {s.name for s in services}
    infra = [s for s in services if s.infra]
    apps = [s for s in services if not s.infra]
    sup = Supervisor(settings)
    if sup.running():
        changed = set(sup.update(services))
        _ensure_started(settings, sup, infra, changed, say)
    else:
        left = kill_orphans(settings)
        for pid, cmd in left:
            say(f"  stopped a leftover process of this stack (pid {pid}): {cmd[:60]}")
        problems = _foreign_ports(services, settings)
        if problems:
            raise StackError("; ".join(problems))
        say(f"  starting supervisord with {', '.join(s.name for s in infra)}")
        sup.start(services)
    wait_healthy(settings, infra, sup, say)
    initialise(settings, say, kafka="kafka" in names, redis="redis" in names, mlflow="mlflow" in names)
    if apps:
        # the stream worker first: a stack with no history gets its simulated past before the
        # live generators (and the consumers of scores and feedback) start (stack/seed.py); the
        # API and the Feast UI consume nothing, so they start with it (the API down for the
        # seed's minutes would raise ApiDown on every first run)
        first = [s for s in apps if s.name in ("stream-worker", "inference-api", "feast-ui")]
        if any(s.name == "stream-worker" for s in first) and "kafka" in names:
            _ensure_started(settings, sup, first, set(), say)
            wait_healthy(settings, first, sup, say)
            seed.ensure_history(seed.as_seeder(settings), say)
        else:
            first = []  # nothing to seed: everything starts together below
        rest = [s for s in apps if s not in first]
        _ensure_started(settings, sup, rest, set(), say)
        wait_healthy(settings, rest, sup, say)


def down(settings: StackSettings, say: Say = print) -> None:
    sup = Supervisor(settings)
    if sup.running():
        say("  stopping every service and supervisord")
        sup.shutdown()
    left = kill_orphans(settings)
    for pid, cmd in left:
        say(f"  stopped a leftover process (pid {pid}): {cmd[:60]}")
    say("  stack is down (data kept in " + str(settings.data_dir) + "; 'make clean' removes it)")


def status(settings: StackSettings, only: Collection[str] | None = None) -> list[ServiceStatus]:
    sup = Supervisor(settings)
    procs = sup.processes()
    rows = []
    now = time.time()
    for svc in all_services(settings, only):
        info = procs.get(svc.name, {})
        state = info.get("statename", "STOPPED" if not procs else "MISSING")
        pid = info.get("pid") or None
        uptime = now - info["start"] if state == "RUNNING" and info.get("start") else None
        reason = svc.probe() if state == "RUNNING" else "not running"
        rows.append(ServiceStatus(svc.name, ",".join(str(p) for p, _ in svc.ports), state, pid,
                                  uptime, reason or "ok"))
    return rows


def stream_detail(settings: StackSettings, sample_s: float = 1.0) -> str:
    """The stream worker's throughput, lag, dead letters and freshness, from its metrics."""
    url = f"http://{settings.host}:{settings.worker_metrics_port}/metrics"
    first = health.prometheus_values(url)
    if first is None:
        return ""
    time.sleep(sample_s)
    now = health.prometheus_values(url) or first
    rate = (now.get("stream_events_in_total", 0) - first.get("stream_events_in_total", 0)) / sample_s
    fresh_n = now.get("stream_feature_freshness_seconds_count", 0)
    fresh = now.get("stream_feature_freshness_seconds_sum", 0) / fresh_n if fresh_n else 0.0
    return (f"{settings.stream_engine}: {rate:,.0f} ev/s, {now.get('stream_events_in_total', 0):,.0f} in, "
            f"lag {now.get('stream_consumer_lag', 0):,.0f}, dead letters "
            f"{now.get('stream_dead_letters_total', 0):,.0f}, mean freshness {fresh * 1000:,.0f} ms")


def learner_detail(settings: StackSettings) -> str:
    """Labels learned and the online learner's AUC next to the champion's, from its metrics."""
    samples = health.prometheus_samples(f"http://{settings.host}:{settings.learner_metrics_port}/metrics")
    if samples is None:
        return ""
    labels = sum(v for k, v in samples.items() if k.startswith("online_labels_total{"))
    auc = {k.split('model="', 1)[1].split('"', 1)[0]: v for k, v in samples.items() if k.startswith("online_auc{")}
    out = f"{labels:,.0f} labels learned"
    if auc:
        out += ", AUC " + ", ".join(f"{k} {v:.3f}" for k, v in sorted(auc.items(), reverse=True))
    return out


def redis_detail(settings: StackSettings) -> str:
    """The cluster profile's Redis Cluster in one line (nothing for a single Redis)."""
    if not settings.redis_cluster:
        return ""
    from stack import redis_cluster

    return redis_cluster.summary(settings)


def api_detail(settings: StackSettings) -> str:
    """The served model (from /ready), or why none is served yet."""
    import json
    import urllib.error
    import urllib.request

    from inference.auth import key_with

    url = f"http://{settings.host}:{settings.api_port}/ready"
    key = key_with(settings.data_dir / "secrets" / "api-keys.json", "read")
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {key}"} if key else {})
    try:
        with urllib.request.urlopen(req, timeout=2) as resp:
            return f"serving model v{json.loads(resp.read())['model_version']}"
    except urllib.error.HTTPError as exc:
        try:
            return "not ready: " + str(json.loads(exc.read()).get("detail", ""))[:80]
        except ValueError:
            return f"not ready (HTTP {exc.code})"
    except (OSError, ValueError):
        return ""


def log_files(settings: StackSettings) -> list[Path]:
    return sorted(settings.logs_dir.glob("*.log"))


def alerts(settings: StackSettings) -> list[dict] | None:
    """Prometheus's alerts (firing and pending), or None when it does not answer."""
    import json
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://{settings.host}:{settings.prometheus_port}/api/v1/alerts",
                                    timeout=2) as resp:
            return list(json.loads(resp.read())["data"]["alerts"])
    except (OSError, ValueError, KeyError):
        return None
