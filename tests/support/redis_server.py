"""A real `redis-server` for tests: its own port, directory and append-only file.

Tests that need one are skipped, saying why, when `redis-server` is not on
this machine; `.ci/run` installs it, so in CI they always run.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisServer:
    """Restartable on the same port and data: kill -9 loses nothing it acknowledged
    (`appendfsync always`), as with the persistence docs/ recommend.

    With `snapshots=True` it keeps no append-only file, only the RDB file a `SAVE`
    writes: restarted after kill -9, it comes back as it was at the last `SAVE`, as a
    Redis that lost its last writes does (AOF `everysec` after a power cut, a failover
    to a replica that lagged)."""

    def __init__(self, directory: Path, *, snapshots: bool = False) -> None:
        self.directory = directory
        self.snapshots = snapshots
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        binary = shutil.which("redis-server")
        assert binary, "redis-server is not installed"
        self.directory.mkdir(parents=True, exist_ok=True)
        persistence = (
            ["--appendonly", "no"]
            if self.snapshots
            else ["--appendonly", "yes", "--appendfsync", "always"]
        )
        self.process = subprocess.Popen(
            [
                binary, "--port", str(self.port), "--bind", "127.0.0.1",
                "--dir", str(self.directory), "--save", "", *persistence,
            ],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start within 20 s")

    def kill(self) -> None:
        """kill -9: no shutdown, no final save."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
