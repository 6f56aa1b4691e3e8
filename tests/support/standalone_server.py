"""`nyo-realtime serve` in a subprocess, for tests that need a real server."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from .tokens import SECRET


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
