"""The stack's generated configs and settings (pure logic, no servers)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from core import feast_store
from core.settings import REPO_ROOT, StackSettings
from stack import kafka_dist
from stack.services import Service, redis_conf
from stack.supervisor import render_conf


def test_settings_come_from_prefixed_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STACK_KAFKA_PORT", "19092")
    monkeypatch.setenv("STACK_REDIS_DB", "3")
    s = StackSettings()
    assert s.kafka_bootstrap == "127.0.0.1:19092"
    assert s.redis_url == "redis://127.0.0.1:6379/3"


def test_settings_reject_bad_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STACK_KAFKA_PORT", "70000")
    with pytest.raises(ValidationError, match="kafka_port"):
        StackSettings()


def test_two_services_on_one_port_are_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from core.settings import settings_error

    monkeypatch.setenv("STACK_API_PORT", "6066")  # the stream worker's metrics port
    with pytest.raises(ValidationError) as err:
        StackSettings()
    assert settings_error(err.value) == ("STACK_API_PORT and STACK_WORKER_METRICS_PORT are both 6066: every "
                                         "service needs a port of its own")
    monkeypatch.setenv("STACK_API_PORT", "6379")  # Redis's port, but Redis runs elsewhere: fine
    monkeypatch.setenv("STACK_REDIS_HOST", "redis.internal")
    assert StackSettings().api_port == 6379


def test_free_ports_are_distinct() -> None:
    from stack import health

    ports = health.free_ports(40)
    low, _ = health._ephemeral_range()  # noqa: SLF001
    assert len(set(ports)) == 40 and all(1024 <= p < low for p in ports)


def test_redis_persists_with_aof_every_second_and_no_snapshots(tmp_path: Path) -> None:
    conf = redis_conf(StackSettings(data_dir=tmp_path, redis_port=7001)).splitlines()
    assert "appendonly yes" in conf and "appendfsync everysec" in conf
    assert 'save ""' in conf and "port 7001" in conf and "bind 127.0.0.1" in conf


def test_kafka_is_one_kraft_node_on_loopback(tmp_path: Path) -> None:
    props = dict(line.split("=", 1) for line in kafka_dist.server_properties(
        StackSettings(kafka_port=19092, kafka_controller_port=19093, topic_partitions=4),
        tmp_path).splitlines() if line)
    assert props["process.roles"] == "broker,controller"
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093"
    assert props["group.initial.rebalance.delay.ms"] == "0"
    assert props["num.partitions"] == "4"
    assert props["log.dirs"] == str(tmp_path)


def test_the_cluster_profile_is_three_kraft_nodes_replicating_every_topic_three_times(tmp_path: Path) -> None:
    s = StackSettings(kafka_port=19092, kafka_controller_port=19093, profile="cluster")
    assert s.kafka_bootstrap == "127.0.0.1:19092,127.0.0.1:19094,127.0.0.1:19096"
    nodes = [dict(line.split("=", 1) for line in kafka_dist.server_properties(s, tmp_path, i).splitlines() if line)
             for i in range(3)]
    voters = "1@127.0.0.1:19093,2@127.0.0.1:19095,3@127.0.0.1:19097"
    for i, props in enumerate(nodes):
        assert props["node.id"] == str(i + 1) and props["controller.quorum.voters"] == voters
        assert props["listeners"] == f"PLAINTEXT://127.0.0.1:{19092 + 2 * i},CONTROLLER://127.0.0.1:{19093 + 2 * i}"
        assert props["default.replication.factor"] == props["offsets.topic.replication.factor"] == "3"
        assert props["transaction.state.log.replication.factor"] == "3"
        assert props["min.insync.replicas"] == props["transaction.state.log.min.isr"] == "2"
        assert props["unclean.leader.election.enable"] == "false"
    # docker-compose: node i is the host <kafka_host>-<i+1>
    c = StackSettings(kafka_host="kafka", kafka_port=19092, kafka_controller_port=19093, profile="cluster")
    assert c.kafka_bootstrap == "kafka:19092,kafka-2:19094,kafka-3:19096"
    # the single profile: one node, replication 1
    one = dict(line.split("=", 1) for line in kafka_dist.server_properties(
        StackSettings(kafka_port=19092, kafka_controller_port=19093), tmp_path).splitlines() if line)
    assert one["controller.quorum.voters"] == "1@127.0.0.1:19093"
    assert one["default.replication.factor"] == one["min.insync.replicas"] == "1"


def test_the_cluster_profile_sends_batch_work_to_its_dask_scheduler_unless_told_otherwise() -> None:
    from stack.services import all_services

    assert StackSettings().cluster == "in-process"
    c = StackSettings(profile="cluster", dask_port=18786)
    assert c.cluster == c.dask_address == "tcp://127.0.0.1:18786"
    assert StackSettings(profile="cluster", cluster="local:2").cluster == "local:2"
    assert [s.name for s in all_services(c, only=("dask",))] == ["dask-scheduler", "dask-worker-1", "dask-worker-2"]
    assert all_services(StackSettings(), only=("dask",)) == []
    worker = all_services(c, only=("dask",))[1]
    assert worker.command[worker.command.index("--memory-limit") + 1] == "2GiB"
    assert "tcp://127.0.0.1:18786" in worker.command and not any("PASSWORD" in k for k in worker.environment)


def test_the_cluster_profiles_nodes_need_free_ports_of_their_own() -> None:
    StackSettings(kafka_port=19092, kafka_controller_port=19093, api_port=19094)  # (single: no node there)
    with pytest.raises(ValidationError, match=r"STACK_KAFKA_PORT \+ 2 \(Kafka node 2 of the cluster profile\) and "
                       "STACK_API_PORT are both 19094"):
        StackSettings(kafka_port=19092, kafka_controller_port=19093, api_port=19094, profile="cluster")


def test_kafka_storage_of_one_profile_is_refused_by_the_other(tmp_path: Path) -> None:
    (tmp_path / "kafka").mkdir()
    (tmp_path / "kafka" / "meta.properties").write_text("cluster.id=x\n")  # formatted before profiles existed
    with pytest.raises(kafka_dist.StackError, match="belongs to the 'single' profile"):
        kafka_dist.prepare(StackSettings(data_dir=tmp_path, profile="cluster"))


def test_the_cluster_profile_is_a_redis_cluster_of_three_masters_with_a_replica_each(tmp_path: Path) -> None:
    from stack import redis_cluster
    from stack.services import all_services

    s = StackSettings(data_dir=tmp_path, redis_port=27000, profile="cluster", redis_password="pw")
    assert s.redis_cluster and s.redis_nodes == 6
    assert s.redis_startup_nodes == [("127.0.0.1", 27000 + i) for i in range(6)]
    assert s.redis_url_shown == "redis-cluster://:***@" + ",".join(f"127.0.0.1:{27000 + i}" for i in range(6))
    online = feast_store.repo_config(s).online_store
    assert online.redis_type == "redis_cluster"
    assert online.connection_string.startswith(",".join(f"127.0.0.1:{27000 + i}" for i in range(6)) + ",")
    assert "db=" not in online.connection_string  # (a cluster has database 0 only)
    nodes = all_services(s, only=("redis",))
    assert [n.name for n in nodes] == ["redis", "redis-2", "redis-3", "redis-4", "redis-5", "redis-6"]
    for i, node in enumerate(nodes):  # each its own port, cluster bus, data, nodes.conf and pid file
        assert node.ports == [(27000 + i, "STACK_REDIS_PORT"), (37000 + i, "STACK_REDIS_PORT")]
        assert node.prepare is not None
        node.prepare()  # (make up writes the config)
        conf = Path(node.command[1]).read_text().splitlines()
        assert {f"port {27000 + i}", f"dir {tmp_path / node.name}", "cluster-enabled yes",
                "cluster-config-file nodes.conf", "requirepass pw", "masterauth pw",
                f"pidfile {s.run_dir / node.name}.pid"} <= set(conf)
        assert not any(line.startswith("cluster-announce") for line in conf)  # (loopback: addresses suffice)
    # the slots split in three ranges covering each slot once; nodes 4-6 replicate 1-3
    ranges = redis_cluster.slot_ranges()
    assert ranges == [(0, 5460), (5461, 10922), (10923, 16383)]
    assert [redis_cluster.replica_of(i) for i in range(6)] == [None, None, None, 0, 1, 2]
    # the single profile is one node, as before
    single = StackSettings(data_dir=tmp_path / "single", redis_port=27000, redis_db=3)
    assert not single.redis_cluster and single.redis_startup_nodes == [("127.0.0.1", 27000)]
    assert feast_store.repo_config(single).online_store.redis_type == "redis"
    assert not any(line.startswith("cluster") for line in redis_conf(single).splitlines())
    assert [n.name for n in all_services(single, only=("redis",))] == ["redis"]


def test_a_redis_cluster_has_database_0_only_and_its_nodes_need_ports_of_their_own() -> None:
    with pytest.raises(ValidationError, match="STACK_REDIS_DB=3: a Redis Cluster .* has database 0 only"):
        StackSettings(profile="cluster", redis_db=3)
    StackSettings(redis_port=27000, api_port=27003)  # (single: no node there)
    with pytest.raises(ValidationError, match=r"STACK_REDIS_PORT \+ 3 \(Redis node 4 of the cluster profile\) and "
                       "STACK_API_PORT are both 27003"):
        StackSettings(redis_port=27000, api_port=27003, profile="cluster")
    with pytest.raises(ValidationError, match=r"STACK_REDIS_PORT \+ 10001 \(Redis node 2's cluster bus\) and "
                       "STACK_API_PORT are both 37001"):
        StackSettings(redis_port=27000, api_port=37001, profile="cluster")


def test_redis_data_of_one_profile_is_refused_by_the_other(tmp_path: Path) -> None:
    from stack.errors import StackError
    from stack.services import redis_service

    (tmp_path / "redis" / "appendonlydir").mkdir(parents=True)  # written before profiles existed
    with pytest.raises(StackError, match="Redis's data in .* belongs to the 'single' profile, not 'cluster'"):
        _prepare(redis_service(StackSettings(data_dir=tmp_path, profile="cluster")))
    _prepare(redis_service(StackSettings(data_dir=tmp_path)))  # (single: its own)
    assert (tmp_path / "redis" / "profile").read_text() == "single\n"


def _prepare(services: list) -> None:
    for svc in services:
        if svc.prepare is not None:
            svc.prepare()


def test_describing_the_services_writes_nothing_so_a_status_in_another_profile_claims_no_data(
        tmp_path: Path) -> None:
    """``make status`` and ``make down`` describe the services; only ``make up`` prepares them
    (configs, formatted storage, the profile marker). A status run with the other profile
    on a fresh data dir leaves it free for the profile that is then started."""
    from stack.errors import StackError
    from stack.services import all_services

    cluster = StackSettings(data_dir=tmp_path, profile="cluster", redis_port=27000, kafka_port=29092,
                            kafka_controller_port=29093)
    services = all_services(cluster, only=("kafka", "redis"))
    assert [s.name for s in services] == ["redis", *(f"redis-{i}" for i in range(2, 7)), "kafka", "kafka-2", "kafka-3"]
    assert all(s.prepare is not None for s in services)
    assert not tmp_path.exists() or not any(tmp_path.rglob("*"))  # nothing written
    single = StackSettings(data_dir=tmp_path, redis_port=27000)
    _prepare(all_services(single, only=("redis",)))  # the single profile takes the fresh dir
    assert (tmp_path / "redis" / "profile").read_text() == "single\n"
    with pytest.raises(StackError, match="belongs to the 'single' profile"):
        _prepare(all_services(cluster, only=("redis",)))
    # the description's command is the one make up's preparation returns
    kafka = all_services(cluster, only=("kafka",))[1]  # (kafka-2)
    assert kafka.command[-1] == str(cluster.conf_dir / "kafka-2.properties")


def test_kafka_version_is_pinned_in_the_pom() -> None:
    assert kafka_dist.kafka_version() == "3.9.1"


def test_supervisor_conf_escapes_percent_and_marks_processes(tmp_path: Path) -> None:
    settings = StackSettings(data_dir=tmp_path)
    svc = Service(name="x", command=["echo", "50%"], ports=[], probe=lambda: None,
                  environment={"A": "b%c"})
    conf = render_conf(settings, [svc])
    assert "command=echo 50%%" in conf
    assert 'A="b%%c"' in conf and f'STREAMFEAT_STACK_DIR="{tmp_path}"' in conf
    assert "autorestart=true" in conf and "stopasgroup=true" in conf


def test_feature_store_yaml_matches_the_default_settings() -> None:
    raw = yaml.safe_load((REPO_ROOT / "feature_repo" / "feature_store.yaml").read_text())
    cfg = feast_store.repo_config(StackSettings(data_dir=REPO_ROOT / ".data"))
    assert raw["project"] == cfg.project
    assert raw["online_store"]["connection_string"] == cfg.online_store.connection_string
    assert raw["online_store"]["key_ttl_seconds"] == cfg.online_store.key_ttl_seconds
    yaml_registry = (REPO_ROOT / "feature_repo" / raw["registry"]["path"]).resolve()
    assert yaml_registry == feast_store.registry_path(StackSettings()).resolve()
    assert raw["entity_key_serialization_version"] == cfg.entity_key_serialization_version


def test_cluster_ids_never_look_like_an_option() -> None:
    ids = [kafka_dist.new_cluster_id() for _ in range(5000)]  # ~1 in 64 would start with '-'
    assert all(len(i) == 22 and not i.startswith("-") for i in ids)
    assert len(set(ids)) == len(ids)


@pytest.mark.security
def test_a_redis_password_reaches_every_client_and_is_never_shown(tmp_path: Path) -> None:
    from core.feast_store import repo_config
    from stack.services import stack_env

    s = StackSettings(data_dir=tmp_path, redis_password="p@ss:w/rd")
    assert s.redis_url == "redis://:p%40ss%3Aw%2Frd@127.0.0.1:6379/0"
    assert "p@ss" not in s.redis_url_shown and ":***@" in s.redis_url_shown
    assert "requirepass p@ss:w/rd" in redis_conf(s).splitlines()
    assert repo_config(s).online_store.connection_string.endswith(",password=p@ss:w/rd")
    assert stack_env(s)["STACK_REDIS_PASSWORD"] == "p@ss:w/rd"  # the real value, not SecretStr's mask
    (tmp_path / "pw").write_text("from-a-file\n")
    assert StackSettings(redis_password_file=tmp_path / "pw").redis_secret == "from-a-file"
    assert "requirepass" not in redis_conf(StackSettings(data_dir=tmp_path))


@pytest.mark.security
def test_each_pipeline_service_gets_its_own_kafka_and_mlflow_user_and_no_operator_password(tmp_path: Path) -> None:
    from pydantic import SecretStr

    from stack.services import KAFKA_USERS, MLFLOW_USERS, SERVICES

    s = StackSettings(data_dir=tmp_path, kafka_sasl=True, kafka_password=SecretStr("operators"),
                      mlflow_password=SecretStr("operators-too"))
    apps = {name: make(s).environment for name, make in SERVICES.items()
            if name not in ("kafka", "redis", "mlflow", "dask", "prometheus", "feast-ui")}
    assert set(apps) == set(KAFKA_USERS)
    for name, env in apps.items():
        assert env["STACK_KAFKA_USER"] == KAFKA_USERS[name] and env["STACK_KAFKA_SASL"] == "True"
        assert env["STACK_MLFLOW_USER"] == MLFLOW_USERS.get(name, "admin")
        assert "STACK_KAFKA_PASSWORD" not in env and "STACK_MLFLOW_PASSWORD" not in env
    assert apps["inference-api"]["STACK_MLFLOW_USER"] == "reader" == apps["stream-scorer"]["STACK_MLFLOW_USER"]
    (tmp_path / "secrets" / "kafka").mkdir(parents=True)
    (tmp_path / "secrets" / "kafka" / "admin.password").write_text("admin-pw")
    props = kafka_dist.server_properties(s, tmp_path / "kafka").splitlines()
    assert {"super.users=User:admin", "allow.everyone.if.no.acl.found=false",
            "sasl.enabled.mechanisms=SCRAM-SHA-512"} <= set(props)
    assert not any(line.startswith("listeners=") and "PLAINTEXT://" in line.replace("SASL_PLAINTEXT", "")
                   for line in props)
