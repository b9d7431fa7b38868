"""``python -m stack {up,down,status,logs,clean}``: the local stack, as ``make`` runs it.

Exit codes: 0 success, 1 a failure explained in one line (plus a log tail where useful),
2 bad usage. Settings come from ``STACK_*`` environment variables (see README).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time

from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from core.settings import StackSettings, settings_error
from stack import lifecycle
from stack.errors import StackError

console = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 160)


def _say(msg: str) -> None:
    console.print(msg)


def cmd_up(settings: StackSettings, _: argparse.Namespace) -> None:
    t0 = time.monotonic()
    console.print(f"[bold]make up[/]: data in {settings.data_dir}")
    lifecycle.up(settings, _say)
    console.print(f"[green]stack healthy[/] in {time.monotonic() - t0:.1f} s")
    cmd_status(settings, _)


def cmd_down(settings: StackSettings, _: argparse.Namespace) -> None:
    lifecycle.down(settings, _say)


#: what `make status` adds for a healthy service, read from its own endpoints
DETAILS = {"stream-worker": lifecycle.stream_detail, "inference-api": lifecycle.api_detail,
           "online-learner": lifecycle.learner_detail, "redis": lifecycle.redis_detail}


def alert_lines(found: list[dict] | None) -> list[str]:
    """What `make status` says of Prometheus's alerts (its /api/v1/alerts list, None when it
    does not answer): how many fire, the names of those pending, then one line per firing alert
    with its severity and summary."""
    if found is None:
        return ["alerts: Prometheus does not answer"]
    firing = [a for a in found if a.get("state") == "firing"]
    pending = sorted({str(a.get("labels", {}).get("alertname")) for a in found if a.get("state") != "firing"})
    lines = [f"alerts: {len(firing)} firing" + (f"; pending: {', '.join(pending)}" if pending else "")]
    for a in firing:
        labels = a.get("labels", {})
        lines.append(f"  [red]{labels.get('alertname')}[/] ({labels.get('severity', '-')}): "
                     f"{a.get('annotations', {}).get('summary', '')}")
    return lines


def cmd_status(settings: StackSettings, _: argparse.Namespace) -> None:
    table = Table(title="streamfeat local stack")
    for col in ("service", "port", "state", "pid", "uptime", "health", "detail"):
        table.add_column(col)
    rows = lifecycle.status(settings)
    for r in rows:
        up = f"{r.uptime_s:.0f} s" if r.uptime_s is not None else "-"
        colour = "green" if r.health == "ok" else "red"
        detail = DETAILS[r.name](settings) if r.health == "ok" and r.name in DETAILS else ""
        table.add_row(r.name, r.ports, r.state, str(r.pid or "-"), up, f"[{colour}]{r.health}[/]", detail)
    console.print(table)
    console.print(f"profile: {settings.profile}   logs: {settings.logs_dir}   kafka: {settings.kafka_bootstrap}"
                  f"{f' (replication {settings.kafka_replication})' if settings.kafka_nodes > 1 else ''}   "
                  f"redis: {settings.redis_url_shown}   batch work: {settings.cluster}")
    prometheus = f"http://{settings.host}:{settings.prometheus_port}"
    console.print(f"MLflow UI: {settings.mlflow_uri}   Feast UI: http://{settings.host}:{settings.feast_ui_port}"
                  f"/p/{settings.feast_project}/feature-view   Prometheus: {prometheus}/alerts")
    console.print(f"dashboards: {prometheus}/consoles/index.html (stream, scoring API, models and drift)")
    for line in alert_lines(lifecycle.alerts(settings)):
        console.print(line, highlight=False)
    from drift.monitor import last_decisions

    decisions = last_decisions(settings)
    if decisions:
        console.print("last monitor decisions (python -m drift audit for more):")
        for rec in decisions:
            extra = f", labels {rec['labels']}" if rec.get("labels") else ""
            extra += f", gate {rec['gate']}" if rec.get("gate") else ""
            extra += f", v{rec['version']}" if rec.get("version") else ""
            console.print(f"  {rec['at']}  {rec.get('model_name', '-')}  triggers: "
                          f"{', '.join(rec.get('triggers', [])) or 'none'}  action: {rec['action']}{extra}")
    live = settings.data_dir / "monitor" / "live.json"
    if live.exists():
        import json

        rep = json.loads(live.read_text())
        champ = rep.get("champion") or {}
        if "recall" in champ:
            console.print(f"served model on live matured ground truth: v{champ['version']} recall "
                          f"{champ['recall']:.3f}, precision {champ['precision']:.3f} at budget {rep['budget']:.2%} "
                          f"({champ['fraud']} fraud in {champ['rows']:,} matured rows)")
        ch = rep.get("challenger")
        if ch:
            console.print(f"  shadow challenger v{ch['version']}: {ch['detail']}")
        elif rep.get("note"):
            console.print(f"served model on live ground truth: {rep['note']}")


def cmd_logs(settings: StackSettings, args: argparse.Namespace) -> None:
    files = [str(p) for p in lifecycle.log_files(settings)]
    if not files:
        raise StackError(f"no logs in {settings.logs_dir}: has 'make up' run?")
    tail = shutil.which("tail") or "tail"
    os.execv(tail, [tail, "-n", str(args.lines), *(["-F"] if args.follow else []), *files])


def cmd_clean(settings: StackSettings, _: argparse.Namespace) -> None:
    lifecycle.down(settings, _say)
    offline = settings.feature_repo / "data"
    shutil.rmtree(settings.data_dir, ignore_errors=True)
    shutil.rmtree(offline, ignore_errors=True)
    console.print(f"removed {settings.data_dir} and {offline}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m stack",
        description="Run the local streaming feature store stack: Apache Kafka (KRaft), Redis, "
                    "MLflow and the Feast registry, under supervisord. Ports and paths come from "
                    "STACK_* environment variables (STACK_KAFKA_PORT, STACK_REDIS_PORT, ...).")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("up", help="install what is missing, start everything, wait until healthy")
    sub.add_parser("down", help="stop every service; data is kept")
    sub.add_parser("status", help="each service with its port, state and health")
    logs = sub.add_parser("logs", help="tail the service logs")
    logs.add_argument("-n", "--lines", type=int, default=40)
    logs.add_argument("--no-follow", dest="follow", action="store_false")
    sub.add_parser("clean", help="stop everything and delete the data dir and the offline log")
    args = parser.parse_args(argv)
    handlers = {"up": cmd_up, "down": cmd_down, "status": cmd_status, "logs": cmd_logs,
                "clean": cmd_clean}
    try:
        settings = StackSettings()
    except ValidationError as exc:
        print(f"error: {settings_error(exc)}", file=sys.stderr)
        return 1
    try:
        handlers[args.command](settings, args)
    except StackError as exc:
        console.print(f"[red]error:[/] {exc}")
        return 1
    except KeyboardInterrupt:
        return 130
    return 0
