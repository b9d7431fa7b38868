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

from core import kafka
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
    return resolve_jars(POM, libs_dir(settings), f"Apache Kafka {kafka_version()}")


def resolve_jars(pom: Path, libs: Path, what: str) -> Path:
    """``mvn dependency:copy-dependencies`` of ``pom`` into ``libs`` (through a staging folder,
    so a failed or killed download is never taken for a complete one), once."""
    marker = libs.parent / ".complete"
    if marker.exists():
        return libs
    require_tool("java", "install a JDK 17+ (Debian: apt-get install openjdk-17-jre-headless)")
    mvn = require_tool("mvn", "install Maven (Debian: apt-get install maven)")
    staging = libs.parent / "libs.partial"
    shutil.rmtree(staging, ignore_errors=True)
    staging.parent.mkdir(parents=True, exist_ok=True)
    cmd = [mvn, "-q", "-B", "-f", str(pom), "dependency:copy-dependencies",
           f"-DoutputDirectory={staging}", "-DincludeScope=runtime"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stdout + proc.stderr).strip().splitlines()[-5:]
        raise StackError(f"Maven could not resolve {what} from Maven Central: {' | '.join(tail)}")
    shutil.rmtree(libs, ignore_errors=True)
    staging.rename(libs)
    marker.write_text(what)
    return libs


def new_cluster_id() -> str:
    """A random KRaft cluster id (base64url of 16 bytes). Like Kafka's own Uuid, never one
    starting with '-', which the storage tool's argument parser would take for an option."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


def sasl_properties(settings: StackSettings) -> list[str]:
    """Clients authenticate with SCRAM-SHA-512 (no password on the wire) and every request is
    authorised by ``StandardAuthorizer`` against ACLs (core/kafka.py: the policy); only
    ``admin`` is a super user. The controller listener takes PLAIN from ``admin`` alone
    (KRaft keeps SCRAM credentials in the metadata the controller serves, so the controller
    cannot use them itself)."""
    pw = kafka.password(settings, kafka.ADMIN)
    if not pw.replace("-", "").replace("_", "").isalnum():
        raise StackError("the Kafka admin password may hold only letters, digits, '-' and '_'")
    return [
        f"sasl.enabled.mechanisms={kafka.MECHANISM}",
        f"sasl.mechanism.inter.broker.protocol={kafka.MECHANISM}",
        "listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config="
        f'org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="{pw}";',
        "sasl.mechanism.controller.protocol=PLAIN",
        "listener.name.controller.sasl.enabled.mechanisms=PLAIN",
        "listener.name.controller.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule "
        f'required username="admin" password="{pw}" user_admin="{pw}";',
        "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        f"super.users=User:{kafka.ADMIN}",
        "allow.everyone.if.no.acl.found=false",
    ]


def server_properties(settings: StackSettings, log_dir: Path, node: int = 0) -> str:
    """Node ``node`` (0-based) of the stack's Kafka, both broker and controller, tuned for
    development: on loopback locally (``host``), advertised as ``kafka_host`` when set
    (docker-compose). One node, or three in the cluster profile: a quorum of three controllers
    (one may fail), every topic on all three brokers, and a write acknowledged by all
    (``acks=all``, which every producer here uses) only once two of them hold it, so one
    broker lost loses no acknowledged record."""
    h = settings.host
    peer, p, c = settings.kafka_node(node)
    rf = settings.kafka_replication
    isr = max(1, rf - 1)
    voters = ",".join(f"{i + 1}@{nh}:{nc}" for i, (nh, _, nc) in
                      enumerate(map(settings.kafka_node, range(settings.kafka_nodes))))
    proto = "SASL_PLAINTEXT" if settings.kafka_sasl else "PLAINTEXT"
    return "\n".join([
        "process.roles=broker,controller",
        f"node.id={node + 1}",
        f"controller.quorum.voters={voters}",
        f"listeners={proto}://{h}:{p},CONTROLLER://{h}:{c}",
        f"advertised.listeners={proto}://{peer}:{p}",
        "controller.listener.names=CONTROLLER",
        f"listener.security.protocol.map={proto}:{proto},CONTROLLER:{proto}",
        f"inter.broker.listener.name={proto}",
        *(sasl_properties(settings) if settings.kafka_sasl else []),
        f"log.dirs={log_dir}",
        f"num.partitions={settings.topic_partitions}",
        f"default.replication.factor={rf}",
        f"min.insync.replicas={isr}",
        "unclean.leader.election.enable=false",
        f"offsets.topic.replication.factor={rf}",
        "offsets.topic.num.partitions=12",
        f"transaction.state.log.replication.factor={rf}",
        f"transaction.state.log.min.isr={isr}",
        # A consumer group of one dev worker should not wait 3 s for more members.
        "group.initial.rebalance.delay.ms=0",
        "auto.create.topics.enable=false",
        "log.retention.hours=168",
        "",
    ])


def format_scram_args(settings: StackSettings) -> list[str]:
    """The admin's SCRAM credential, created with the storage (services' users are added by
    ``stack init`` over the admin connection)."""
    if not settings.kafka_sasl:
        return []
    return ["--add-scram", f"{kafka.MECHANISM}=[name={kafka.ADMIN},password={kafka.password(settings, kafka.ADMIN)}]"]


LOG4J = """log4j.rootLogger=INFO, stdout
log4j.appender.stdout=org.apache.log4j.ConsoleAppender
log4j.appender.stdout.layout=org.apache.log4j.PatternLayout
log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.org.apache.kafka=WARN
log4j.logger.kafka.request.logger=WARN
log4j.logger.state.change.logger=WARN
"""


def node_name(node: int) -> str:
    """The service (and data folder) of Kafka node ``node``: kafka, kafka-2, kafka-3."""
    return "kafka" if node == 0 else f"kafka-{node + 1}"


def cluster_id(settings: StackSettings) -> str:
    """The KRaft cluster id every node's storage is formatted with (made once, kept in the data)."""
    path = settings.data_dir / "kafka-cluster-id"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(new_cluster_id() + "\n")
    return path.read_text().strip()


def command(settings: StackSettings, node: int = 0) -> list[str]:
    """Node ``node``'s command line (nothing written: ``prepare`` writes what it needs)."""
    java = shutil.which("java") or "java"
    log4j = settings.conf_dir / "kafka-log4j.properties"
    props = settings.conf_dir / f"{node_name(node)}.properties"
    return [java, "-Xms256m", f"-Xmx{settings.kafka_heap}", "-XX:+UseG1GC",
            "-Djava.awt.headless=true", f"-Dlog4j.configuration=file:{log4j}",
            "-cp", f"{libs_dir(settings)}/*", MAIN_CLASS, str(props)]


def prepare(settings: StackSettings, node: int = 0) -> None:
    """Resolve jars, write configs, format storage once (``make up`` only); ``command`` is
    node ``node``'s command line."""
    name = node_name(node)
    data = settings.data_dir / name
    data.mkdir(parents=True, exist_ok=True)
    profile = data / "profile"  # the profile its storage was formatted for (none written before: single)
    formatted = (profile.read_text().strip() if profile.exists()
                 else "single" if (data / "meta.properties").exists() else settings.profile)
    if formatted != settings.profile:
        raise StackError(f"Kafka's storage in {data} belongs to the {formatted!r} profile, not "
                         f"{settings.profile!r} (its topics' replication and its controller quorum differ): set "
                         "STACK_PROFILE back, or 'make clean' (drops the stack's data) and 'make up' again")
    libs = ensure_jars(settings)
    if settings.kafka_sasl:  # the admin's password must exist before the broker's config
        from stack import secrets

        secrets.generate(settings)
    java = require_tool("java", "install a JDK 17+ (Debian: apt-get install openjdk-17-jre-headless)")
    settings.conf_dir.mkdir(parents=True, exist_ok=True)
    props = settings.conf_dir / f"{name}.properties"
    props.touch(mode=0o600)  # with SASL on it holds the admin password
    props.chmod(0o600)
    props.write_text(server_properties(settings, data, node))
    log4j = settings.conf_dir / "kafka-log4j.properties"
    log4j.write_text(LOG4J)
    classpath = f"{libs}/*"
    marker = data / "sasl-users"  # written when the storage was formatted with the admin's SCRAM user
    if not (data / "meta.properties").exists():
        profile.write_text(settings.profile + "\n")
        cluster_id_ = cluster_id(settings) if settings.kafka_nodes > 1 else new_cluster_id()
        proc = subprocess.run(
            [java, f"-Dlog4j.configuration=file:{log4j}", "-cp", classpath,
             "kafka.tools.StorageTool", "format", "-t", cluster_id_, "-c", str(props), *format_scram_args(settings)],
            capture_output=True, text=True)
        if proc.returncode != 0:
            raise StackError(f"formatting Kafka storage in {data} failed: {proc.stderr.strip()[-300:]}")
        if settings.kafka_sasl:
            marker.write_text(kafka.ADMIN + "\n")
    elif settings.kafka_sasl and not marker.exists():
        raise StackError(f"Kafka's storage in {data} was formatted without SASL, so it has no admin user: "
                         "unset STACK_KAFKA_SASL, or 'make clean' (drops the stack's data) and 'make up' again")
