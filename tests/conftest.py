"""Shared fixtures: tokens, a standalone server in a subprocess, a Jupyter server
with the extension (pytest-jupyter), and a small WebSocket test client."""

from __future__ import annotations

import secrets
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

# The helpers are modules of their own; they are imported here for the fixtures,
# and names such as SECRET stay importable from here for older tests.
from .support.redis_cluster import RedisCluster
from .support.redis_server import RedisServer
from .support.standalone_server import StandaloneServer, free_port  # noqa: F401
from .support.tokens import SECRET, make_token
from .support.wsclient import TIMEOUT, WSClient

pytest_plugins = ["pytest_jupyter.jupyter_server"]


@pytest.fixture
def token() -> Callable[..., str]:
    return make_token


@pytest.fixture
def standalone(tmp_path: Path) -> Iterator[Callable[..., StandaloneServer]]:
    """Factory: `standalone("--Realtime.rate_limit=10")` starts a server."""
    servers: list[StandaloneServer] = []

    def start(*args: str) -> StandaloneServer:
        server = StandaloneServer(tmp_path / f"realtime{len(servers)}.db", list(args)).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.kill()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A real redis-server of this test's own (skipped where none is installed)."""
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed (.ci/run installs it)")
    server = RedisServer(tmp_path / "redis").start()
    yield server
    server.kill()


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisCluster]:
    """A real Redis Cluster (three masters, three replicas), once per session: tests
    share it, each under a prefix of its own. Skipped where redis-server is missing."""
    if shutil.which("redis-server") is None or shutil.which("redis-cli") is None:
        pytest.skip("redis-server and redis-cli are not installed (.ci/run installs them)")
    cluster = RedisCluster(tmp_path_factory.mktemp("redis-cluster"))
    try:
        yield cluster.start()
    finally:
        cluster.stop()


@pytest.fixture
def nodes(
    standalone: Callable[..., StandaloneServer], redis_server: RedisServer
) -> Callable[..., list[StandaloneServer]]:
    """Factory: `nodes(3)` starts three `nyo-realtime serve` processes sharing one Redis."""

    def start(count: int, *args: str) -> list[StandaloneServer]:
        return [standalone("--redis", redis_server.url, *args) for _ in range(count)]

    return start


@pytest.fixture
def cluster_nodes(
    standalone: Callable[..., StandaloneServer], redis_cluster: RedisCluster
) -> Callable[..., list[StandaloneServer]]:
    """As `nodes`, on the session's Redis Cluster, under a prefix of this test's own."""
    prefix = f"e2e-{secrets.token_hex(3)}"

    def start(count: int, *args: str) -> list[StandaloneServer]:
        return [
            standalone("--redis", redis_cluster.url, f"--Realtime.redis_prefix={prefix}", *args)
            for _ in range(count)
        ]

    return start


@pytest.fixture
def server(standalone: Callable[..., StandaloneServer]) -> StandaloneServer:
    return standalone()


@pytest.fixture
def connect() -> Iterator[Any]:
    """Factory for authenticated test clients; closes them all at the end."""
    clients: list[WSClient] = []

    async def _connect(
        url: str, token: str | None = None, *, authenticate: bool = True, **kw: Any
    ) -> WSClient:
        client = await WSClient.open(url, token, **kw)
        clients.append(client)
        if token is not None and authenticate:
            frame = await client.expect("authenticated", kw.get("timeout", TIMEOUT))
            client.connection_id = frame["connectionId"]
        return client

    yield _connect
    for client in clients:
        client.close()


@pytest.fixture
def jp_server_config(tmp_path: Path) -> dict[str, Any]:
    return {
        "ServerApp": {"jpserver_extensions": {"nyo_realtime_ext": True}},
        "Realtime": {"jwt_secret": SECRET, "db_path": str(tmp_path / "jupyter-realtime.db")},
    }


@pytest.fixture
def jupyter_url(
    jp_serverapp: Any, http_server_client: Any, jp_http_port: int, jp_base_url: str
) -> str:
    """http URL of the extension under the Jupyter test server (base_url is not '/')."""
    return f"http://localhost:{jp_http_port}{jp_base_url}nyo-realtime/"


@pytest.fixture
def jupyter_ws_url(jupyter_url: str) -> str:
    return jupyter_url.replace("http://", "ws://", 1) + "ws"
