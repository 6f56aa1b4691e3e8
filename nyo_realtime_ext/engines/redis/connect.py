"""From `Realtime.redis_url` to redis-py clients: one Redis, a Cluster, or Sentinel.

- ``redis://``, ``rediss://``, ``unix://``: one server (redis-py's own URL rules).
- ``redis+cluster://[user:password@]host:port,host:port,...[?sharded=no]``: a Redis
  Cluster through redis-py's asyncio `RedisCluster`; any reachable node is enough to
  find the rest. Delivery uses sharded pub/sub (SPUBLISH, SSUBSCRIBE) on Redis >= 7
  unless ``sharded=no``.
- ``redis+sentinel://[user:password@]host:port,...[/service[/db]]``: the master that
  Sentinel names for ``service`` (default ``mymaster``); after a failover the next
  connection goes to the new master. The password is the data servers', sentinels are
  asked without one.

Every mode gives commands the same bounded pool (`redis_max_connections` plus the
reserve) and the same timeouts, so a Redis that stops answering is `unavailable`
within seconds whatever the mode.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote

import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import NoBackoff
from redis.exceptions import (
    ClusterError,
    ReadOnlyError,
    RedisClusterException,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

CLUSTER, SENTINEL = "redis+cluster", "redis+sentinel"
# The same in every mode: a dead server is noticed in seconds, not minutes.
TIMEOUTS: dict[str, Any] = {
    "socket_connect_timeout": 2,
    "socket_timeout": 5,
    "health_check_interval": 10,
}

# What means "Redis cannot serve this now" (not a bug in the request): the hub answers
# `unavailable` and the client retries. A cluster that is failing over answers
# CLUSTERDOWN / TRYAGAIN or has slots nobody serves; a Sentinel master that was
# demoted answers READONLY until the pool finds the new one.
UNAVAILABLE_ERRORS = (
    RedisConnectionError,
    RedisTimeoutError,
    OSError,
    ClusterError,
    TryAgainError,
    RedisClusterException,
    ReadOnlyError,
)
# What the client is told then (the engine's `EngineUnavailable`).
UNAVAILABLE = "the server cannot reach its engine (Redis); retry later"


@dataclass
class Target:
    """What a URL names, parsed."""

    mode: str  # "single", "cluster" or "sentinel"
    url: str
    hosts: list[tuple[str, int]] = field(default_factory=list)
    username: str | None = None
    password: str | None = None
    service: str = "mymaster"
    db: int = 0
    sharded: bool = True  # cluster only: sharded pub/sub where Redis has it


def parse(url: str) -> Target:
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ValueError(f"not a Redis URL: {url!r}")
    if scheme not in (CLUSTER, SENTINEL):
        return Target("single", url)
    rest, _, query = rest.partition("?")
    netloc, _, path = rest.partition("/")
    userinfo, at, hostlist = netloc.rpartition("@")
    username = password = None
    if at:
        user, colon, secret = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if colon else None
    hosts = []
    for item in filter(None, hostlist.split(",")):
        host, colon, port = item.rpartition(":")
        if not colon or not port.isdigit():
            raise ValueError(f"{scheme}:// wants host:port,host:port,...; got {item!r}")
        hosts.append((host.strip("[]"), int(port)))
    if not hosts:
        raise ValueError(f"{scheme}:// names no host:port")
    options = parse_qs(query)
    target = Target(
        "cluster" if scheme == CLUSTER else "sentinel",
        url,
        hosts,
        username,
        password,
        sharded=options.get("sharded", ["yes"])[0].lower() not in ("no", "0", "false"),
    )
    if scheme == SENTINEL:
        parts = [p for p in path.split("/") if p]
        if parts:
            target.service = unquote(parts[0])
        if len(parts) > 1:
            target.db = int(parts[1])
    elif path.strip("/"):
        raise ValueError("a Redis Cluster has only database 0: leave the path out")
    return target


def client_for(target: Target, max_connections: int) -> Any:
    """The client commands go through (`redis.asyncio.Redis` or `RedisCluster`)."""
    auth: dict[str, Any] = {"username": target.username, "password": target.password}
    if target.mode == "cluster":
        return RedisCluster(
            startup_nodes=[ClusterNode(host, port) for host, port in target.hosts],
            # A shard failing over leaves the others serving their channels.
            require_full_coverage=False,
            max_connections=max_connections,  # per cluster node
            **auth,
            **TIMEOUTS,
        )
    if target.mode == "sentinel":
        sentinel = Sentinel(
            target.hosts,
            sentinel_kwargs={"socket_connect_timeout": 2, "socket_timeout": 2},
        )
        return sentinel.master_for(
            target.service, max_connections=max_connections, db=target.db, **auth, **TIMEOUTS
        )
    pool = aioredis.ConnectionPool.from_url(target.url, max_connections=max_connections, **TIMEOUTS)
    return aioredis.Redis.from_pool(pool)


def node_client(
    target: Target,
    host: str,
    port: int,
    max_connections: int = 2,
    socket_timeout: float | None = None,
) -> aioredis.Redis:
    """A client of one cluster node: for the pub/sub connection kept to that shard
    (no socket timeout: a listener waits for messages as long as it takes), and for
    the pipelines of publishes, which redis-py's cluster client does not run."""
    return aioredis.Redis(
        host=host,
        port=port,
        username=target.username,
        password=target.password,
        socket_connect_timeout=2,
        socket_timeout=socket_timeout,
        health_check_interval=10,
        max_connections=max_connections,
        # A node that is gone fails at once (`unavailable`, the client retries) and
        # the topology is asked again, rather than three reconnects with backoff.
        retry=Retry(NoBackoff(), 0),
    )


async def drop_idle(client: Any) -> None:
    """After a connection error: drop the idle connections of a single or Sentinel
    client (they are likely broken too: Redis restarted, or the master moved), so the
    next command opens a fresh one. A cluster client re-learns the topology itself."""
    pool = getattr(client, "connection_pool", None)
    if pool is not None:
        await pool.disconnect(inuse_connections=False)
