"""supervisord as the process supervisor of the local stack: config, start, update, stop.

Why supervisord: it restarts a crashed service, keeps one log file per service with
rotation, and has an XML-RPC API over a unix socket that ``make status`` reads.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
import xmlrpc.client
from pathlib import Path
from typing import Any

from core.settings import REPO_ROOT, StackSettings
from stack.errors import StackError
from stack.services import Service

STACK_MARKER = "STREAMFEAT_STACK_DIR"
#: supervisord gave up on the process (EXITED and BACKOFF are passing: autorestart retries)
GAVE_UP = "FATAL"


def _env_line(env: dict[str, str]) -> str:
    return ",".join(f'{k}="{v}"' for k, v in sorted(env.items()))


def render_conf(settings: StackSettings, services: list[Service]) -> str:
    run, logs = settings.run_dir, settings.logs_dir
    lines = [
        "[unix_http_server]", f"file={run / 'supervisor.sock'}", "chmod=0700", "",
        "[supervisord]", f"logfile={logs / 'supervisord.log'}", f"pidfile={run / 'supervisord.pid'}",
        f"childlogdir={logs}", f"directory={REPO_ROOT}", "nodaemon=false", "minfds=4096", "",
        "[rpcinterface:supervisor]",
        "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface", "",
        "[supervisorctl]", f"serverurl=unix://{run / 'supervisor.sock'}", "",
    ]
    for svc in services:
        env = {"PYTHONPATH": str(REPO_ROOT), "PYTHONUNBUFFERED": "1", **stack_marker(settings),
               **svc.environment}
        lines += [
            f"[program:{svc.name}]",
            f"command={shlex.join(svc.command).replace('%', '%%')}",
            f"directory={REPO_ROOT}",
            f"autostart={'true' if svc.infra else 'false'}", "autorestart=true",
            "startsecs=2", "startretries=5",
            f"stopwaitsecs={svc.stop_wait_s}", "stopasgroup=true", "killasgroup=true",
            "redirect_stderr=true", f"stdout_logfile={logs / (svc.name + '.log')}",
            "stdout_logfile_maxbytes=50MB", "stdout_logfile_backups=3",
            f"environment={_env_line(env).replace('%', '%%')}", "",
        ]
    return "\n".join(lines)


class Supervisor:
    """A handle on this stack's supervisord (one per data dir)."""

    def __init__(self, settings: StackSettings) -> None:
        self.settings = settings
        self.conf = settings.conf_dir / "supervisord.conf"
        self.sock = settings.run_dir / "supervisor.sock"
        self.pidfile = settings.run_dir / "supervisord.pid"

    # -- connection -------------------------------------------------------------------
    def _proxy(self) -> Any:
        from supervisor.xmlrpc import SupervisorTransport

        transport = SupervisorTransport(None, None, f"unix://{self.sock}")
        return xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport)

    def pid(self) -> int | None:
        try:
            pid = int(self.pidfile.read_text().strip())
            os.kill(pid, 0)
        except (OSError, ValueError):
            return None
        return pid

    def running(self) -> bool:
        if self.pid() is None or not self.sock.exists():
            return False
        try:
            self._proxy().supervisor.getState()
        except (OSError, xmlrpc.client.Fault):
            return False
        return True

    def processes(self) -> dict[str, dict[str, Any]]:
        """name -> supervisord's process info (statename, pid, start, ...)."""
        if not self.running():
            return {}
        return {p["name"]: p for p in self._proxy().supervisor.getAllProcessInfo()}

    # -- lifecycle --------------------------------------------------------------------
    def write_conf(self, services: list[Service]) -> None:
        for d in (self.settings.conf_dir, self.settings.run_dir, self.settings.logs_dir):
            d.mkdir(parents=True, exist_ok=True)
        self.conf.touch(mode=0o600)  # services' environments may hold secrets
        self.conf.chmod(0o600)
        self.conf.write_text(render_conf(self.settings, services))

    def start(self, services: list[Service]) -> None:
        self.write_conf(services)
        proc = subprocess.run([sys.executable, "-m", "supervisor.supervisord", "-c", str(self.conf)],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            raise StackError(f"supervisord did not start: {proc.stderr.strip() or proc.stdout.strip()}"
                             f" (log: {self.settings.logs_dir / 'supervisord.log'})")
        deadline = time.monotonic() + 15
        while not self.running():
            if time.monotonic() > deadline:
                raise StackError("supervisord started but its socket did not answer within 15 s "
                                 f"(log: {self.settings.logs_dir / 'supervisord.log'})")
            time.sleep(0.1)

    def update(self, services: list[Service]) -> list[str]:
        """Apply a changed config to a running supervisord, like ``supervisorctl update``."""
        self.write_conf(services)
        rpc = self._proxy().supervisor
        [[added, changed, removed]] = rpc.reloadConfig()
        for name in changed + removed:
            rpc.stopProcessGroup(name)
            rpc.removeProcessGroup(name)
        for name in added + changed:
            rpc.addProcessGroup(name)
        return sorted(added + changed)

    def start_process(self, name: str) -> None:
        try:
            self._proxy().supervisor.startProcess(name, False)
        except xmlrpc.client.Fault as fault:
            if "ALREADY_STARTED" not in fault.faultString:  # supervisord won the race
                raise StackError(f"supervisord could not start {name}: {fault.faultString}") from fault

    def stop_process(self, name: str) -> None:
        self._proxy().supervisor.stopProcess(name, True)

    def shutdown(self, timeout_s: float = 120) -> None:
        """Stop every service (TERM, then KILL after its stop wait) and supervisord itself."""
        pid = self.pid()
        if pid is None:
            return
        try:
            self._proxy().supervisor.shutdown()
        except (OSError, xmlrpc.client.Fault):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while _alive(pid):
            if time.monotonic() > deadline:
                raise StackError(f"supervisord (pid {pid}) still running after {timeout_s:.0f} s")
            time.sleep(0.1)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    # A zombie child of ours counts as gone.
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and ") Z " in stat.read_text())


def stack_marker(settings: StackSettings) -> dict[str, str]:
    """An environment entry every service of this stack inherits, so that its processes can
    be found even after a killed supervisord (process titles can be rewritten; environ is not)."""
    return {STACK_MARKER: str(settings.data_dir)}


def orphans(settings: StackSettings) -> list[tuple[int, str]]:
    """Processes of this stack: those whose environment carries this data dir's stack marker,
    and those named by a service's own pid file."""
    needle = f"{STACK_MARKER}={settings.data_dir}".encode() + b"\0"
    # pid -> the service name its cmdline must mention (guards against a reused pid)
    own = {int(p.read_text()): p.stem for p in settings.run_dir.glob("*.pid")
           if p.name != "supervisord.pid" and p.read_text().strip().isdigit()}
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            marked = needle in (entry / "environ").read_bytes() + b"\0"
            if not marked and int(entry.name) not in own:
                continue
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if not marked and own[int(entry.name)] not in cmd:
            continue
        if "supervisord" not in cmd and _alive(int(entry.name)):
            found.append((int(entry.name), cmd.strip()[:120]))
    return found


def kill_orphans(settings: StackSettings, timeout_s: float = 60) -> list[tuple[int, str]]:
    found = orphans(settings)
    for pid, _ in found:
        try:
            os.kill(pid, signal.SIGTERM)
        except OSError:
            pass
    deadline = time.monotonic() + timeout_s
    for pid, _ in found:
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)
    return found
