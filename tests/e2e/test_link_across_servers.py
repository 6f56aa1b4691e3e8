"""Two Jupyter servers on one real redis-server, a kernel in each, as two users (issue
20): a slider `link`ed in both kernels moves in both, a late third kernel starts from
the current value, and concurrent drags end at one value everywhere."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from jupyter_client.asynchronous import AsyncKernelClient
from tornado.httpclient import AsyncHTTPClient

from ..support.kernels import Kernel, converged
from ..support.lab_e2e import TOKEN, free_port, wait_until_up

pytestmark = pytest.mark.timeout(300)

LINK = (
    "import ipywidgets as w, nyo_realtime_ext as rt\n"
    "slider = w.IntSlider(value={value}, max=10_000)\n"
    "linked = rt.link(slider, 'team:slider')\n"
)
SETTLED = "not linked._dirty and not linked._sending"
SHOWS_ENTRY = "slider.value == linked.state.get('link/value', {}).get('value')"


class JupyterServer:
    def __init__(self, base: Path, user: str, redis_url: str) -> None:
        self.base, self.user, self.port = base, user, free_port()
        self.runtime = base / "runtime"
        config = base / "config"
        config.mkdir(parents=True)
        (base / "root").mkdir()
        (config / "jupyter_server_config.json").write_text(
            json.dumps(
                {
                    "ServerApp": {"jpserver_extensions": {"nyo_realtime_ext": True}},
                    "Realtime": {
                        "redis_url": redis_url,
                        # Each server's kernels are its user, as on JupyterHub.
                        "kernel_user": user,
                        "jwt_secret": "s" * 32,
                    },
                }
            )
        )
        self.log = base / "server.log"
        env = {
            **os.environ,
            "JUPYTER_CONFIG_DIR": str(config),
            "JUPYTER_RUNTIME_DIR": str(self.runtime),
            "JUPYTER_PLATFORM_DIRS": "1",
            "PYTHONUNBUFFERED": "1",
        }
        env.pop("JUPYTERHUB_USER", None)
        args = [
            sys.executable, "-m", "jupyter_server", "--no-browser", f"--port={self.port}",
            "--ServerApp.ip=127.0.0.1", f"--ServerApp.token={TOKEN}",
            f"--ServerApp.root_dir={base / 'root'}",
        ]  # fmt: skip
        if os.geteuid() == 0:
            args.append("--allow-root")
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env)
        wait_until_up(self.url("api/status"), self.process, f"jupyter of {user}", self.log)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}/{path}?token={TOKEN}"

    async def fetch(self, path: str, method: str = "GET", body: Any = None) -> Any:
        response = await AsyncHTTPClient().fetch(
            self.url(path), method=method, body=None if body is None else json.dumps(body),
            allow_nonstandard_methods=True,
        )  # fmt: skip
        return json.loads(response.body) if response.body else None

    @asynccontextmanager
    async def kernel(self) -> AsyncIterator[Kernel]:
        kernel_id = (await self.fetch("api/kernels", "POST", {}))["id"]
        client = AsyncKernelClient()
        client.load_connection_file(str(self.runtime / f"kernel-{kernel_id}.json"))
        client.start_channels()
        try:
            await client.wait_for_ready(timeout=60)
            yield Kernel(kernel_id, client)
        finally:
            client.stop_channels()
            await self.fetch(f"api/kernels/{kernel_id}", "DELETE")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()


@pytest.fixture
def two_servers(tmp_path: Path, redis_server: Any) -> Iterator[tuple[JupyterServer, JupyterServer]]:
    servers = [JupyterServer(tmp_path / user, user, redis_server.url) for user in ("ada", "bob")]
    try:
        yield servers[0], servers[1]
    finally:
        for server in servers:
            server.stop()


async def test_a_linked_slider_across_two_jupyter_servers_on_one_redis(two_servers) -> None:
    ada_server, bob_server = two_servers
    async with ada_server.kernel() as ada, bob_server.kernel() as bob:
        await ada.run(LINK.format(value=5))
        assert (await ada.value("linked.state.client.user"))["userId"] == "ada"
        await bob.run(LINK.format(value=0))
        assert await bob.value("slider.value") == 5
        assert (await bob.value("linked.state.client.user"))["userId"] == "bob"

        await ada.run("slider.value = 42")
        await bob.wait_until("slider.value == 42")
        entry = await bob.value("linked.state.entry('link/value')")
        assert entry["from"]["userId"] == "ada"

        async with bob_server.kernel() as late:
            await late.run(LINK.format(value=1))
            assert await late.value("slider.value") == 42

        drag = "for i in range({start}, {start} + 300): slider.value = i\n"
        await ada.run(drag.format(start=1000))
        await bob.run(drag.format(start=5000))
        for kernel in (ada, bob):
            await kernel.wait_until(SETTLED)
        # Each hears of the other's last write in its own time: then both hold it.
        await converged([ada, bob], "linked.state.version('link/value')")
        for kernel in (ada, bob):
            await kernel.wait_until(SHOWS_ENTRY)
        ends = [await k.value("slider.value") for k in (ada, bob)]
        assert ends[0] == ends[1] and ends[0] in (1299, 5299)
