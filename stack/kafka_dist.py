"""Apache Kafka from Maven Central: resolve the pinned broker jars, format KRaft storage.

The release is pinned in ``stack/kafka/pom.xml``; Maven copies the broker and its runtime
dependencies into ``<cache_dir>/kafka-<version>/libs`` once. No tarball, no Docker.
"""

from __future__ import annotations

import base64
import re
import shutil
import subprocess
import uuid
from pathlib import Path

from core.settings import StackSettings
from stack.errors import StackError

POM = Path(__file__).resolve().parent / "kafka" / "pom.xml"
MAIN_CLASS = "kafka.Kafka"


def kafka_version() -> str:
    """The Kafka release pinned in the pom (single source of truth)."""
    match = re.search(r"<kafka.version>([^<]+)</kafka.version>", POM.read_text())
    if not match:
        raise StackError(f"no <kafka.version> in {POM}")
    return match.group(1)


def libs_dir(settings: StackSettings) -> Path:
    return settings.cache_dir / f"kafka-{kafka_version()}" / "libs"


def require_tool(name: str, hint: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise StackError(f"'{name}' not found on PATH: {hint}")
    return path


def ensure_jars(settings: StackSettings) -> Path:
    """Resolve the Kafka jars into the cache unless a complete copy is there already."""
    libs = libs_dir(settings)
    marker = libs.parent / ".complete"
    if marker.exists():
        return libs
    require_tool("java", "install a JDK 17+ (Debian: apt-get install openjdk-17-jre-headless)")
    mvn = require_tool("mvn", "install Maven (Debian: apt-get install maven)")
    staging = libs.parent / "libs.partial"
    shutil.rmtree(staging, ignore_errors=True)
    staging.parent.mkdir(parents=True, exist_ok=True)
    cmd = [mvn, "-q", "-B", "-f", str(POM), "dependency:copy-dependencies",
           f"-DoutputDirectory={staging}", "-DincludeScope=runtime"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stdout + proc.stderr).strip().splitlines()[-5:]
        raise StackError("Maven could not resolve Apache Kafka "
                         f"{kafka_version()} from Maven Central: {' | '.join(tail)}")
    shutil.rmtree(libs, ignore_errors=True)
    staging.rename(libs)
    marker.write_text(kafka_version())
    return libs


def new_cluster_id() -> str:
    """A random KRaft cluster id (base64url of 16 bytes). Like Kafka's own Uuid, never one
    starting with '-', which the storage tool's argument parser would take for an option."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


def server_properties(settings: StackSettings, log_dir: Path) -> str:
    """One node that is both broker and controller, on loopback, tuned for development."""
    h, p, c = settings.host, settings.kafka_port, settings.kafka_controller_port
    return "\n".join([
        "process.roles=broker,controller",
        "node.id=1",
        f"controller.quorum.voters=1@{h}:{c}",
        f"listeners=PLAINTEXT://{h}:{p},CONTROLLER://{h}:{c}",
        f"advertised.listeners=PLAINTEXT://{h}:{p}",
        "controller.listener.names=CONTROLLER",
        "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "inter.broker.listener.name=PLAINTEXT",
        f"log.dirs={log_dir}",
        f"num.partitions={settings.topic_partitions}",
        "offsets.topic.replication.factor=1",
        "offsets.topic.num.partitions=12",
        "transaction.state.log.replication.factor=1",
        "transaction.state.log.min.isr=1",
        # A consumer group of one dev worker should not wait 3 s for more members.
        "group.initial.rebalance.delay.ms=0",
        "auto.create.topics.enable=false",
        "log.retention.hours=168",
        "",
    ])


LOG4J = """log4j.rootLogger=INFO, stdout
log4j.appender.stdout=org.apache.log4j.ConsoleAppender
log4j.appender.stdout.layout=org.apache.log4j.PatternLayout
log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.org.apache.kafka=WARN
log4j.logger.kafka.request.logger=WARN
log4j.logger.state.change.logger=WARN
"""


def prepare(settings: StackSettings) -> list[str]:
    """Resolve jars, write configs, format storage once; return the broker's command line."""
    libs = ensure_jars(settings)
    java = require_tool("java", "install a JDK 17+ (Debian: apt-get install openjdk-17-jre-headless)")
    data = settings.data_dir / "kafka"
    data.mkdir(parents=True, exist_ok=True)
    settings.conf_dir.mkdir(parents=True, exist_ok=True)
    props = settings.conf_dir / "kafka.properties"
    props.write_text(server_properties(settings, data))
    log4j = settings.conf_dir / "kafka-log4j.properties"
    log4j.write_text(LOG4J)
    classpath = f"{libs}/*"
    if not (data / "meta.properties").exists():
        cluster_id = new_cluster_id()
        proc = subprocess.run(
            [java, f"-Dlog4j.configuration=file:{log4j}", "-cp", classpath,
             "kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(props)],
            capture_output=True, text=True)
        if proc.returncode != 0:
            raise StackError(f"formatting Kafka storage in {data} failed: {proc.stderr.strip()[-300:]}")
    return [java, "-Xms256m", f"-Xmx{settings.kafka_heap}", "-XX:+UseG1GC",
            "-Djava.awt.headless=true", f"-Dlog4j.configuration=file:{log4j}",
            "-cp", classpath, MAIN_CLASS, str(props)]
