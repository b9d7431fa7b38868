"""S3Proxy from Maven Central: a real S3-protocol server on a local folder, for the object
store path of the offline log (core/storage.py) without AWS. Pinned in
``stack/s3proxy/pom.xml``; started by the tests (``start``), or by hand:

    python -m stack.s3proxy --port 9000 --dir .data/s3   # then STACK_S3_ENDPOINT=http://127.0.0.1:9000
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from pathlib import Path

from core.settings import StackSettings
from stack import health
from stack.errors import StackError
from stack.kafka_dist import require_tool, resolve_jars

POM = Path(__file__).resolve().parent / "s3proxy" / "pom.xml"
MAIN_CLASS = "org.gaul.s3proxy.Main"
#: the credentials of the local server (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY for clients)
ACCESS_KEY, SECRET_KEY = "streamfeat", "streamfeat-local-secret"


def version() -> str:
    match = re.search(r"<s3proxy.version>([^<]+)</s3proxy.version>", POM.read_text())
    if not match:
        raise StackError(f"no <s3proxy.version> in {POM}")
    return match.group(1)


def ensure_jars(settings: StackSettings) -> Path:
    return resolve_jars(POM, settings.cache_dir / f"s3proxy-{version()}" / "libs", f"S3Proxy {version()}")


def start(settings: StackSettings, port: int, folder: Path, log: Path | None = None,
          timeout_s: float = 60.0) -> subprocess.Popen:
    """S3Proxy on 127.0.0.1:``port`` keeping buckets as folders under ``folder`` (its
    ``filesystem-nio2`` store); returns once it answers."""
    libs = ensure_jars(settings)
    java = require_tool("java", "install a JDK 17+ (Debian: apt-get install openjdk-17-jre-headless)")
    folder.mkdir(parents=True, exist_ok=True)
    conf = folder.parent / f"s3proxy-{port}.properties"
    conf.write_text("\n".join([
        f"s3proxy.endpoint=http://127.0.0.1:{port}", "s3proxy.authorization=aws-v2-or-v4",
        f"s3proxy.identity={ACCESS_KEY}", f"s3proxy.credential={SECRET_KEY}",
        "jclouds.provider=filesystem-nio2", f"jclouds.filesystem.basedir={folder}",
        "jclouds.identity=local", "jclouds.credential=local", ""]))
    out = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115 - the child keeps it
    proc = subprocess.Popen([java, "-Xmx256m", "-cp", f"{libs}/*", MAIN_CLASS, "--properties", str(conf)],
                            stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise StackError(f"S3Proxy exited with {proc.returncode} at start" + (f"; see {log}" if log else ""))
        if health.port_open("127.0.0.1", port):
            return proc
        time.sleep(0.2)
    proc.kill()
    raise StackError(f"S3Proxy did not answer on port {port} within {timeout_s:.0f} s")


def main() -> None:
    from core.cli_exit import exit_now

    parser = argparse.ArgumentParser(prog="python -m stack.s3proxy", description=(
        "A local S3-protocol server (S3Proxy, from Maven Central) keeping buckets as folders: point "
        "STACK_S3_ENDPOINT at it and STACK_OFFLINE_URL at s3://<bucket>/<prefix>."))
    parser.add_argument("--port", type=int, default=9000)
    parser.add_argument("--dir", type=Path, default=Path(".data/s3"), help="where the buckets live")

    def run() -> int:
        args = parser.parse_args()
        try:
            proc = start(StackSettings(), args.port, args.dir.resolve())
        except (StackError, OSError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        print(f"S3Proxy on http://127.0.0.1:{args.port} (access key {ACCESS_KEY}, secret {SECRET_KEY}); Ctrl-C stops")
        try:
            return proc.wait()
        except KeyboardInterrupt:
            proc.terminate()
            return 0

    exit_now(run())


if __name__ == "__main__":
    main()
