"""Form the cluster profile's Redis Cluster out of its six nodes, once (``make up`` and the
docker-compose ``init`` job run it after the nodes answer; later runs find it formed).

Nodes 1-3 are the masters, with the 16,384 hash slots split in three equal ranges; nodes 4-6
replicate node 1, 2 and 3. The same steps as ``redis-cli --cluster create --cluster-replicas 1``
(MEET, ADDSLOTSRANGE, REPLICATE), done through redis-py so that no redis-cli is needed where
the init job runs; then it waits until every node reports the cluster ``ok`` and every replica's
link to its master is up. Each node keeps the cluster's layout in its ``nodes.conf``: a
restarted node rejoins by itself.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from typing import Any

from core.settings import StackSettings
from stack.errors import StackError

SLOTS = 16_384
MASTERS = 3


def slot_ranges(masters: int = MASTERS) -> list[tuple[int, int]]:
    """The hash slots of each master, as (first, last) ranges that cover every slot once."""
    bounds = [round(i * SLOTS / masters) for i in range(masters + 1)]
    return [(bounds[i], bounds[i + 1] - 1) for i in range(masters)]


def replica_of(node: int, masters: int = MASTERS) -> int | None:
    """Which master node ``node`` replicates (None: it is a master)."""
    return node - masters if node >= masters else None


def _info(reply: Any) -> dict[str, str]:
    """CLUSTER INFO's fields (redis-py parses the reply into a dict; raw, it is lines)."""
    if isinstance(reply, dict):
        return {str(k): str(v) for k, v in reply.items()}
    return dict(line.split(":", 1) for line in str(reply).splitlines() if ":" in line)


def _clients(settings: StackSettings, timeout_s: float | None = None) -> list[Any]:
    """A client per node (connections open on first use)."""
    import redis

    timeout_s = timeout_s or settings.redis_timeout_s
    return [redis.Redis(host=h, port=p, password=settings.redis_secret, socket_timeout=timeout_s,
                        socket_connect_timeout=timeout_s, decode_responses=True)
            for h, p in settings.redis_startup_nodes]


def state(settings: StackSettings) -> str | None:
    """None when every node sees the cluster ``ok`` with all six nodes and every slot
    assigned; else what is missing."""
    import redis

    for i, c in enumerate(_clients(settings)):
        try:
            info = _info(c.execute_command("CLUSTER INFO"))
        except redis.RedisError as exc:
            return f"node {i + 1}: {exc.__class__.__name__}"
        finally:
            c.close()
        if info.get("cluster_state") != "ok" or info.get("cluster_slots_assigned") != str(SLOTS) \
                or info.get("cluster_known_nodes") != str(settings.redis_nodes):
            return (f"node {i + 1}: state {info.get('cluster_state')}, {info.get('cluster_slots_assigned')} slots, "
                    f"{info.get('cluster_known_nodes')} nodes known")
    return None


def summary(settings: StackSettings) -> str:
    """One line on the cluster for ``make status``: its state, the masters serving slots,
    the replicas linked to them, and the nodes it sees down."""
    import redis

    for c in _clients(settings, timeout_s=2):
        try:
            info = _info(c.execute_command("CLUSTER INFO"))
            nodes = c.execute_command("CLUSTER NODES")
        except redis.RedisError:
            continue
        finally:
            c.close()
        if not isinstance(nodes, dict):
            return f"cluster {info.get('cluster_state')}"

        def where(address: str) -> str:
            return address.split("@")[0].rsplit(":", 1)[1] if not settings.redis_host else address.split("@")[0]

        up = {a: n for a, n in nodes.items() if "fail" not in n["flags"] and n.get("connected", True)}
        masters = sorted((where(a) for a, n in up.items() if "master" in n["flags"] and n["slots"]), key=str)
        replicas = sum(1 for n in up.values() if "slave" in n["flags"])
        down = sorted(where(a) for a in nodes if a not in up)
        if info.get("cluster_known_nodes") == "1":
            return "not formed yet (make up forms it)"
        return (f"cluster {info.get('cluster_state')}: masters {', '.join(masters)}; {replicas} replica(s)"
                + (f"; down: {', '.join(down)}" if down else ""))
    return ""


def ensure(settings: StackSettings, say: Callable[[str], None] = print, timeout_s: float | None = None) -> str:
    """Form the cluster if its nodes are fresh; wait until it is ``ok``. Returns what it did.
    Nodes that hold part of a cluster (some met, some not) or keys outside one are refused:
    that is a state to look at, not to paper over."""
    import redis

    timeout_s = timeout_s or settings.health_timeout_s
    clients = _clients(settings)
    try:
        infos = [_info(c.execute_command("CLUSTER INFO")) for c in clients]
        formed = [int(i.get("cluster_slots_assigned", 0)) > 0 or int(i.get("cluster_known_nodes", 1)) > 1
                  for i in infos]
        if all(formed):
            _wait(lambda: state(settings), timeout_s, "the Redis Cluster to be ok")
            return "formed already"
        if any(formed):
            partial = ", ".join(str(i + 1) for i, f in enumerate(formed) if f)
            raise StackError(f"Redis nodes {partial} of {settings.redis_nodes} already belong to a cluster and the "
                             "others do not: start the missing nodes' old data again, or 'make clean' and 'make up'")
        keys = [i + 1 for i, c in enumerate(clients) if c.dbsize()]
        if keys:
            raise StackError(f"Redis node(s) {keys} hold keys but belong to no cluster: 'make clean' and 'make up'")
        ids = [c.execute_command("CLUSTER MYID") for c in clients]
        first = clients[0]
        for host, port in settings.redis_startup_nodes[1:]:
            first.execute_command("CLUSTER MEET", socket.gethostbyname(host), port)
        for node, (lo, hi) in zip(clients[:MASTERS], slot_ranges(), strict=True):
            node.execute_command("CLUSTER ADDSLOTSRANGE", lo, hi)
        for i, c in enumerate(clients):
            master = replica_of(i)
            if master is None:
                continue

            def replicate(c: Any = c, master_id: str = ids[master]) -> str | None:
                try:  # (the replica learns of its master by gossip: "unknown node" until then)
                    c.execute_command("CLUSTER REPLICATE", master_id)
                except redis.ResponseError as exc:
                    return str(exc)
                return None

            _wait(replicate, timeout_s, f"Redis node {i + 1} to replicate node {master + 1}")
        _wait(lambda: state(settings), timeout_s, "the new Redis Cluster to be ok")

        def replicas_linked() -> str | None:
            for i, c in enumerate(clients):
                if replica_of(i) is not None and c.info("replication").get("master_link_status") != "up":
                    return f"node {i + 1}'s link to its master is not up"
            return None

        _wait(replicas_linked, timeout_s, "the replicas to sync")
        say(f"  redis cluster: formed, masters {', '.join(f'{h}:{p}' for h, p in settings.redis_startup_nodes[:3])} "
            f"(slots {', '.join(f'{lo}-{hi}' for lo, hi in slot_ranges())}), a replica each")
        return "formed"
    except redis.RedisError as exc:
        raise StackError(f"forming the Redis Cluster ({settings.redis_url_shown}): {exc}") from None
    finally:
        for c in clients:
            c.close()


def _wait(check: Callable[[], str | None], timeout_s: float, what: str) -> None:
    deadline, problem = time.monotonic() + timeout_s, None
    while time.monotonic() < deadline:
        problem = check()
        if problem is None:
            return
        time.sleep(0.2)
    raise StackError(f"timed out after {timeout_s:.0f} s waiting for {what}: {problem}")
