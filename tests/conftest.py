"""Shared fixtures: tokens, a standalone server in a subprocess, a Jupyter server
with the extension (pytest-jupyter), and a small WebSocket test client."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest

from .redis_server import RedisServer
from .wsclient import WSClient

pytest_plugins = ["pytest_jupyter.jupyter_server"]

SECRET = "test-secret-that-is-long-enough-for-hs256!"


def make_token(sub: str = "ada", secret: str = SECRET, **claims: Any) -> str:
    payload: dict[str, Any] = {"sub": sub, "name": sub.title()}
    payload.update(claims)
    return jwt.encode(payload, secret, algorithm="HS256")


@pytest.fixture
def token() -> Callable[..., str]:
    return make_token


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class StandaloneServer:
    """`nyo-realtime serve` in a subprocess, restartable on the same port and database."""

    def __init__(self, db: Path, extra_args: list[str]) -> None:
        self.db = db
        self.port = free_port()
        self.extra_args = extra_args
        self.process: subprocess.Popen[str] | None = None

    @property
    def log_path(self) -> Path:
        return self.db.with_suffix(".log")

    def output(self) -> str:
        """Everything the server printed so far."""
        return self.log_path.read_text() if self.log_path.exists() else ""

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, *more_args: str) -> StandaloneServer:
        args = [
            sys.executable, "-m", "nyo_realtime_ext.server", "serve",
            "--port", str(self.port), "--jwt-secret", SECRET, "--db", str(self.db),
            *self.extra_args, *more_args,
        ]  # fmt: skip
        # A file, not a pipe: nobody reads a pipe while the test runs, and a
        # full one would freeze the server after enough log lines.
        with open(self.log_path, "a") as log:
            self.process = subprocess.Popen(
                args, stdout=log, stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )  # fmt: skip
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited: {self.output()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("server did not start within 30 s")

    def stop(self, sig: int | None = None) -> int | None:
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else None
        if sig is None:
            self.process.terminate()
        else:
            self.process.send_signal(sig)
        try:
            return self.process.wait(timeout=15)
        finally:
            if self.process.poll() is None:
                self.process.kill()

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


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


@pytest.fixture
def nodes(
    standalone: Callable[..., StandaloneServer], redis_server: RedisServer
) -> Callable[..., list[StandaloneServer]]:
    """Factory: `nodes(3)` starts three `nyo-realtime serve` processes sharing one Redis."""

    def start(count: int, *args: str) -> list[StandaloneServer]:
        return [standalone("--redis", redis_server.url, *args) for _ in range(count)]

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
            frame = await client.expect("authenticated")
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
